/* conn.h — one accepted client connection of sluice-upstream: reading,
 * request parsing (llhttp, strict), choosing the response from the query,
 * keep-alive, pipelining, and closing.
 *
 * Owns each connection's memory: allocated on accept, freed in the last
 * handle close callback, never inside a callback still using it.
 * Client EOF is read as a half-close while a response is being written (it is
 * finished, then the connection closes) but as the client going away while
 * the response waits on a timer (delay_ms, chunk_delay_ms) or hangs: the
 * connection is closed at once, as a proxy would see a cancelled request. */
#ifndef SL_UP_CONN_H
#define SL_UP_CONN_H

#include <stdint.h>

#include <uv.h>

#include "conn-t.h"
#include "list.h"

/* The connections of one worker loop. */
struct sl_up_conns {
	sl_list_t list;
	uint64_t idle_timeout_ms; /* 0 = keep idle connections forever */
};

void sl_up_conns_init(sl_up_conns_t *set, uint64_t idle_timeout_ms);

/* Accepts one pending connection from listener (on the same loop) into set.
 * Returns 0, or a negative libuv error (nothing is left allocated). */
int sl_up_conn_accept(uv_stream_t *listener, sl_up_conns_t *set);

/* Closes every connection in set at once (shutdown). Their memory is freed
 * by the loop's close callbacks, so the loop must run afterwards. */
void sl_up_conns_close_all(sl_up_conns_t *set);

/* For respond.c ------------------------------------------------------------ */

/* The last bytes of the response are about to be written: the request
 * leaves inflight now, before the write. Once they are written the client
 * may send its next request, possibly to another worker thread; counting
 * after the write would let that thread see both for a moment, and a
 * proxy's exact limit would read as limit + 1. */
void sl_up_conn_response_ending(sl_up_conn_t *c);

/* The response has been fully written (or, for fail=truncate, all of it
 * that will be): count it, then keep the connection alive or close it. */
void sl_up_conn_response_done(sl_up_conn_t *c);

/* Waits ms before respond.c continues the body (state GAP), unless the client
 * is gone already, in which case the connection is closed. */
void sl_up_conn_gap(sl_up_conn_t *c, uint64_t ms);

/* Closes the connection now (a write failed, the client went away). */
void sl_up_conn_abort(sl_up_conn_t *c);

#endif
