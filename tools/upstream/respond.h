/* respond.h — writing one response on a connection: the head (one snprintf
 * into the connection's out buffer), the body in framed pieces with
 * backpressure, 103 Early Hints.
 *
 * Bodies are never materialised: the a..z pattern is sliced from one static
 * table, so a 100 GB response costs no more memory than a 3-byte one. Each
 * batch (at most one slice) is offered to uv_try_write() first; what the
 * socket does not take goes to uv_write(), and the write callback continues.
 * At most one write is outstanding per connection. */
#ifndef SL_UP_RESPOND_H
#define SL_UP_RESPOND_H

#include <stddef.h>

#include "conn-t.h"

/* Fills the pattern table. Call once, before any worker starts. */
void sl_up_respond_init(void);

/* Decides the response to the current request from c->params, the method
 * and the client's version: status (0 = 200), content type, body (buf/len,
 * or NULL for the default/pattern body), framing, segments. owned, if not
 * NULL, is a malloc'd buffer the response frees when done. */
void sl_up_respond_plan(sl_up_conn_t *c, int status, const char *ctype, const char *buf, size_t len, char *owned);

/* Writes "103 Early Hints" now (before a delay, if any). */
void sl_up_respond_early(sl_up_conn_t *c);

/* Writes "100 Continue" if the socket takes it at once; it is only a hint
 * (the client sends the body after a timeout anyway), so never queued. */
void sl_up_respond_continue(sl_up_conn_t *c);

/* Builds the head of the planned response and starts writing (state WRITE).
 * Ends in sl_up_conn_response_done() or sl_up_conn_abort(). */
void sl_up_respond_start(sl_up_conn_t *c);

/* Continues writing the body; a no-op while a write is outstanding. */
void sl_up_respond_pump(sl_up_conn_t *c);

/* Frees what the planned response owns. Safe to call twice. */
void sl_up_respond_dispose(sl_up_conn_t *c);

#endif
