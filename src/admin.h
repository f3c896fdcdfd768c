/* admin.h — the /proxy-* endpoints that sluice answers itself (SPEC §8).
 * They never wait for an admission slot and are not counted as requests. */
#ifndef SL_ADMIN_H
#define SL_ADMIN_H

#include <stdbool.h>

#include "buf.h"
#include "http1.h"

typedef struct sl_worker sl_worker_t;

/* Builds the complete response to req (an admin path) into out. */
void sl_admin_respond(sl_worker_t *w, const sl_http_msg_t *req, bool keep_alive, sl_buf_t *out);

#endif
