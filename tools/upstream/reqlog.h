/* reqlog.h — the request log behind GET /__log: the most recent
 * SL_UP_REQLOG_CAP requests in arrival order.
 *
 * A fixed ring of fixed-size entries (no allocation after start-up). Each
 * request costs one short mutex hold to copy its target and headers, cut to
 * the entry's size, so the log is cheap enough to stay on in benchmarks.
 * Sequence numbers never restart, not even on sl_up_reqlog_clear(), so a
 * late sl_up_reqlog_body() can never land in someone else's entry. */
#ifndef SL_UP_REQLOG_H
#define SL_UP_REQLOG_H

#include <stddef.h>
#include <stdint.h>

#include "http-t.h"

#define SL_UP_REQLOG_CAP 1000

/* Records a request whose head just arrived on connection conn_id, at
 * monotonic time t_ms. Returns its sequence number (>= 1). */
uint64_t sl_up_reqlog_add(uint64_t conn_id, double t_ms, const sl_up_req_view_t *req);

/* Sets the body byte count of request seq, if it is still in the ring. */
void sl_up_reqlog_body(uint64_t seq, uint64_t body_bytes);

/* Forgets every entry. */
void sl_up_reqlog_clear(void);

/* The log as a JSON array in a malloc'd buffer (caller frees); its length in
 * *len. NULL when out of memory. */
char *sl_up_reqlog_json(size_t *len);

#endif
