/* client.h — the client connection: accept, read and parse requests, write
 * answers, keep the connection alive between requests, linger, close.
 *
 * What happens to a request once its head is parsed (local answer,
 * rejection, admission, attempts at the upstream, relaying the answer, the
 * end of the request) is forward.c's; the connection services below are
 * what forward.c uses of the connection. Types: client-t.h.
 */
#ifndef SL_CLIENT_H
#define SL_CLIENT_H

#include <stdbool.h>
#include <uv.h>

#include "client-t.h"

/* Accepts the connection waiting on a listener; the caller has counted it
 * (server->connections or ->admin_connections: worker.c decides whether
 * there is room). admin: the listener is the admin port, where every path
 * is a /proxy-* endpoint. */
void sl_client_accept(sl_worker_t *w, uv_stream_t *listener, bool admin);

/* Shutdown: close idle keep-alive connections and make busy ones close after
 * their current answer (force: close every connection now). Admin-port
 * connections are left alone unless admin: the endpoints answer through the
 * drain, until the process exits. */
void sl_client_drain_all(sl_worker_t *w, bool force, bool admin);

/* Frees the worker's spare request structs (the loop has ended). */
void sl_client_free_requests(sl_worker_t *w);

/* ---- connection services for forward.c -------------------------------- */

/* Moves to state s. Debug builds abort on a transition the state table does
 * not list. */
void sl_client_set_state(sl_client_t *c, cl_state_t s);

/* The worker loop's time, ms. */
uint64_t sl_client_now(const sl_client_t *c);

/* Bytes queued towards the client and not yet written. */
size_t sl_client_queue(const sl_client_t *c);

/* Writes to the client (copying what the kernel does not take at once).
 * Returns true when the client's queue is past the high-water mark. A failed
 * write closes the connection from the timer on the next loop turn. */
bool sl_client_write(sl_client_t *c, const uv_buf_t *bufs, unsigned n);

/* Writes c->req->out and empties it; returns as sl_client_write. */
bool sl_client_write_out(sl_client_t *c);

/* Answers with sluice's own small JSON error for `status`. close: the
 * connection ends after it (the request was not read whole, or cannot be
 * trusted). */
void sl_client_respond_error(sl_client_t *c, int status, const char *detail, bool close);

/* Arms the connection's timer ms from now, with the state's handler. */
void sl_client_arm(sl_client_t *c, uint64_t ms);

/* Brings the timer forward to ms from now if it is due later; never
 * pushes it back (for a deadline that only matters if it comes first). */
void sl_client_arm_within(sl_client_t *c, uint64_t ms);

/* Arms the timer with the current state's own timeout. */
void sl_client_rearm(sl_client_t *c);

/* After a request ended with an answer: the next request on this connection
 * (keep-alive, pipelining), the rest of this one read and dropped first
 * (DISCARD), or linger and close. */
void sl_client_next(sl_client_t *c);

/* DISCARD is over (the rejected request has been read): go on as above. */
void sl_client_resume(sl_client_t *c);

/* The final answer is written: FIN after it, then drain input briefly so the
 * peer reads the answer rather than a reset. */
void sl_client_linger(sl_client_t *c);

/* Closes now. A request still in progress ends as failed. */
void sl_client_close(sl_client_t *c);

/* FIN to the client once its queue is written; false if it cannot be sent
 * (the connection is gone). Once only. */
bool sl_client_shutdown_write(sl_client_t *c);

/* Runs the parser over buffered input while the state allows. */
void sl_client_parse(sl_client_t *c);

/* Starts or stops reading as the state, the input buffer and upstream
 * backpressure allow. */
void sl_client_update_reading(sl_client_t *c);

#endif
