/* reason.h — the standard reason phrase of an HTTP status code, shared by
 * sluice and sluice-upstream. An unknown code gets its class ("Server
 * Error"); the phrase is informative only, clients go by the code. */
#ifndef SL_REASON_H
#define SL_REASON_H

const char *sl_http_reason(int status);

#endif
