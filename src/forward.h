/* forward.h — what happens to a request once its head has been parsed:
 * answered locally (/proxy-*), rejected (breaker, admission), queued,
 * attempted at the upstream and retried through the failure funnel, its
 * answer relayed (or its CONNECT tunnelled), and its end.
 *
 * A request ends in one place, sl_forward_end: whatever the path (answered,
 * rejected, failed, timed out, client gone, tunnel closed, shutdown), that
 * function releases the slot, settles the breaker (a verdict, or the probe
 * given back), counts the outcome, writes the access-log line and hands the
 * connection on. Nothing else releases a slot or settles a probe.
 *
 * client.c calls these from its parser callbacks, its read callback and its
 * state table; the connection services they use are in client.h.
 */
#ifndef SL_FORWARD_H
#define SL_FORWARD_H

#include <stdbool.h>
#include <sys/types.h>

#include "client-t.h"
#include "metrics.h"

/* How the connection goes on after a request ended. */
typedef enum {
	SL_END_ANSWERED, /* an answer went (or is going) out: keep-alive decides (sl_client_next) */
	SL_END_CUT,      /* no whole answer can be given, or the client is gone: close now */
	SL_END_CLOSING   /* the connection is being closed already */
} sl_end_t;

/* The request's end (see above). why: the rejection reason for
 * SL_OUTCOME_REJECTED, else ignored. Runs its accounting once; later calls
 * only move the connection on. */
void sl_forward_end(sl_client_t *c, sl_outcome_t outcome, sl_reject_t why, sl_end_t how);

/* The head of c->req has been parsed: decide what to do with it. */
void sl_forward_head(sl_client_t *c);

/* Request body bytes from the parser. Returns an SL_HTTP1_* verdict. */
int sl_forward_body(sl_client_t *c, const char *at, size_t len);

/* The client's write queue drained (or the connection closes): the slots of
 * ended requests that waited for it go back. */
void sl_forward_release_flushing(sl_client_t *c);

/* The request has been read whole. */
void sl_forward_complete(sl_client_t *c);

/* End of a parse pass: a request head held back for body bytes goes out. */
void sl_forward_flush_request_head(sl_client_t *c);

/* The client sent EOF (err UV_EOF) or its connection failed, while a
 * request was in progress. */
void sl_forward_client_eof(sl_client_t *c, ssize_t err);

/* Tunnel: bytes read from the client (nread > 0), or its EOF / error. */
void sl_forward_tunnel_read(sl_client_t *c, ssize_t nread);

/* The client is gone (EOF, reset, a failed write) or will not read
 * (stalled writes) while its request is in progress: with
 * --client-abort drain and a request the upstream has whole, the answer is
 * read away while the slot stays held; otherwise the upstream connection is
 * closed. Then the request ends as `outcome` and the connection closes. */
void sl_forward_abandon(sl_client_t *c, sl_outcome_t outcome);

/* A lingering connection ends: a request answered after its client
 * half-closed is counted now, as delivered (the peer closed in turn, or the
 * linger ran out) or as client_closed (the peer reset: it had gone). */
void sl_forward_settle(sl_client_t *c, bool delivered);

/* Timer handlers of the request's states (client.c's state table). */
void sl_forward_queued_timer(sl_client_t *c);  /* QUEUED: queue_timeout, or the request's deadline */
void sl_forward_queued_arm(sl_client_t *c);    /* QUEUED: the timer for it */
void sl_forward_backoff_timer(sl_client_t *c); /* BACKOFF: the next attempt */
void sl_forward_body_timer(sl_client_t *c);    /* LOCAL, WAIT, FORWARD: stalled writes, a stalled body */
void sl_forward_tunnel_timer(sl_client_t *c);  /* TUNNEL: stalled writes, the slot given back, the queue */
void sl_forward_tunnel_arm(sl_client_t *c);    /* TUNNEL: the timer for the above */

#endif
