/* forward.c — see forward.h.
 *
 * A request's path through this file:
 *   sl_forward_head      local (/proxy-*), 413, breaker, admission:
 *                        granted -> do_start_attempt; queued -> QUEUED
 *                        (on_admitted later); full or open -> do_reject
 *   do_start_attempt     WAIT: a pooled connection (ready at once) or a new
 *                        one (events.ready later) -> do_send_head -> FORWARD
 *   sl_forward_body      body bytes: kept for replay while they fit, framed
 *                        and written to the upstream
 *   on_up_head/body/done the answer, relayed as it arrives; done -> end
 *   on_up_error          the client end of the failure funnel (retry.c):
 *                        again now (stale connection), after a backoff
 *                        (BACKOFF), or the final answer -> end
 *   sl_forward_end       the one end (forward.h)
 *   sl_forward_abandon   the client left: the answer is drained (the slot
 *                        kept until the upstream is done) or the upstream
 *                        connection closed, per --client-abort
 * The upstream exchange reports through `events` (upstream.h) with the
 * connection as owner; it is dropped (sl_upstream_abort) or handed to a
 * drain (drain_events) only here.
 *
 * A CONNECT tunnel holds a slot only while an exchange goes through it: it
 * keeps the CONNECT's slot until the tunnel has been quiet for
 * tunnel_release_after after an upstream byte, and asks admission again
 * (queued like any request, its bytes unread meanwhile) when the client
 * sends more.
 */
#include "forward.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "accesslog.h"
#include "admin.h"
#include "breaker.h"
#include "budget.h"
#include "client.h"
#include "log.h"
#include "retry.h"
#include "worker.h"

static const sl_upstream_events_t events;
static void do_start_attempt(sl_client_t *c);
static void do_tunnel_forward(sl_client_t *c);
static void do_tunnel_client_done(sl_client_t *c);

/* Bytes of an abandoned answer read before its upstream connection is closed
 * instead: an upstream that is sending has mostly done its work. */
#define DRAIN_MAX_BYTES (4u << 20)

static const sl_config_t *cfg_of(const sl_client_t *c)
{
	return c->w->cfg;
}

static sl_admit_t *admit_of(const sl_client_t *c)
{
	return &c->w->server->admit;
}

/* Parse what is buffered, then read as the state allows: after anything
 * that may have changed what the connection waits for. */
static void do_parse_and_read(sl_client_t *c)
{
	if (c->state == CL_FORWARD || c->state == CL_DISCARD)
		sl_client_parse(c);
	sl_client_update_reading(c);
}

/* The attempt's exchange is abandoned: close that upstream connection and
 * forget it (no event follows). */
static void do_drop_upstream(sl_client_t *c)
{
	sl_request_t *q = c->req;
	if (q->a.up) {
		sl_upstream_abort(q->a.up);
		q->a.up = NULL;
	}
	q->a.up_backlogged = false;
}

/* ---- the end of a request -------------------------------------------------- */

/* The upstream's verdict on this request, once, before any byte of the
 * answer reaches the client (so a client that reacts to it already meets the
 * breaker's new state). */
static void do_tell_breaker(sl_client_t *c, bool upstream_ok)
{
	sl_request_t *q = c->req;
	if (q->r.breaker_told)
		return;
	q->r.breaker_told = true;
	sl_server_t *s = c->w->server;
	if (sl_breaker_record(&s->breaker, upstream_ok, q->r.probe, sl_client_now(c))) {
		uint32_t n = sl_admit_reject_all(&s->admit, SL_REJECT_CIRCUIT_OPEN);
		if (n)
			sl_info("released %u queued requests with 503 circuit_open", n);
	}
}

/* The slot goes back (to the next waiter, if any); kept while the answer
 * is still queued for a slow client, because a slot is held until the answer
 * has been relayed (SPEC §4). */
static void do_release_slot(sl_client_t *c, bool wait_for_flush, bool sample)
{
	sl_request_t *q = c->req;
	if (!q->r.has_slot)
		return;
	q->r.has_slot = false;
	/* the hold time the adaptive queue predicts from: until the answer is
	 * out of the upstream's hands (a slow client's flush is not counted);
	 * a request cut short by its client says nothing of the upstream's pace */
	uint64_t held = sample && q->r.slot_ns ? uv_hrtime() - q->r.slot_ns : 0;
	if (wait_for_flush && sl_client_queue(c) > 0) {
		c->flushing_slots++;
		if (held)
			sl_admit_note_hold(admit_of(c), held);
		return;
	}
	sl_admit_release_held(admit_of(c), held);
}

void sl_forward_release_flushing(sl_client_t *c)
{
	for (; c->flushing_slots > 0; c->flushing_slots--)
		sl_admit_release(admit_of(c));
}

static void do_log(sl_client_t *c, const char *outcome)
{
	if (c->w->access_log.fd < 0)
		return;
	sl_request_t *q = c->req;
	uint64_t now = uv_hrtime();
	size_t target_len;
	const char *target = sl_http_msg_target(&q->parser.msg, &target_len);
	sl_access_entry_t e = {
	    .client_ip = q->ip,
	    .method = sl_http_method_name(q->parser.msg.method),
	    .target = target,
	    .target_len = target_len,
	    .minor = q->parser.msg.minor,
	    .status = q->r.status,
	    .bytes = q->r.bytes_out,
	    .total_ms = (double)(now - q->r.started_ns) / 1e6,
	    .queue_ms = (double)q->r.queue_ns / 1e6,
	    .upstream_ms = q->r.upstream_ns ? (double)(now - q->r.upstream_ns) / 1e6 : 0,
	    .attempts = q->r.attempts,
	    .outcome = outcome,
	    .error = sl_error_kind_name((sl_error_kind_t)q->r.error),
	};
	sl_access_log_write(&c->w->access_log, &e);
}

static const char *const outcome_names[] = {"success", "failed", "rejected", "client_closed"};

/* The outcome in the metrics and the access log, once per request. */
static void do_count(sl_client_t *c, sl_outcome_t outcome, sl_reject_t why)
{
	sl_request_t *q = c->req;
	if (!q->r.counted)
		return;
	q->r.counted = false;
	uint64_t now = sl_client_now(c);
	if (outcome == SL_OUTCOME_REJECTED) {
		q->r.error = (uint8_t)(SL_EK_QUEUE_FULL + why);
		sl_metrics_rejected(&c->w->metrics, why, now);
		do_log(c, sl_reject_name(why));
		return;
	}
	if (outcome == SL_OUTCOME_CLIENT_CLOSED) {
		q->r.status = 499; /* the access log's word for it, as nginx's */
		q->r.error = SL_EK_CLIENT_CLOSED;
	} else if (outcome == SL_OUTCOME_SUCCESS) {
		q->r.error = SL_EK_NONE; /* an earlier attempt's failure was rescued */
	}
	sl_metrics_end(&c->w->metrics, outcome, q->r.status, now);
	do_log(c, outcome_names[outcome]);
	uint64_t us = (uv_hrtime() - q->r.started_ns) / 1000;
	if (!q->r.connect && outcome != SL_OUTCOME_CLIENT_CLOSED) /* not response times */
		sl_metrics_latency(&c->w->metrics, us, now);
	sl_debug("%s %s -> %d in %llu ms", q->ip, sl_http_method_name(q->parser.msg.method), q->r.status,
	         (unsigned long long)(us / 1000));
}

void sl_forward_settle(sl_client_t *c, bool delivered)
{
	sl_request_t *q = c->req;
	if (q == NULL || !q->r.outcome_pending)
		return;
	q->r.outcome_pending = false;
	do_count(c, delivered ? (sl_outcome_t)q->r.pending_outcome : SL_OUTCOME_CLIENT_CLOSED, 0);
}

/* A request that ended with an upstream answer, its client still there and
 * no overload signal given, is a sample for the adaptive limit (adaptive.h):
 * how long it held its slot, how long its answer's head took. */
static void do_adaptive_sample(sl_client_t *c, sl_outcome_t outcome)
{
	sl_request_t *q = c->req;
	sl_adaptive_t *ad = &c->w->server->adaptive;
	if (!sl_adaptive_on(ad) || q->r.signalled || q->r.connect || q->r.upstream_ns == 0 ||
	    (outcome != SL_OUTCOME_SUCCESS && outcome != SL_OUTCOME_FAILED) || q->r.error == SL_EK_CLIENT_STALLED ||
	    q->r.error == SL_EK_CLIENT_TIMEOUT)
		return; /* a client that left or dawdled says nothing about the upstream */
	uint64_t now_us = uv_hrtime() / 1000;
	sl_adaptive_sample(ad, now_us, now_us - q->r.upstream_ns / 1000, q->r.ttfb_us);
}

/* An overload signal for the adaptive limit: the attempt's answer or
 * failure says the upstream has more than it can take. */
static void do_adaptive_signal(sl_client_t *c)
{
	sl_request_t *q = c->req;
	sl_adaptive_t *ad = &c->w->server->adaptive;
	if (!sl_adaptive_on(ad))
		return;
	q->r.signalled = true;
	sl_adaptive_signal(ad, uv_hrtime() / 1000, q->a.started_us);
}

void sl_forward_end(sl_client_t *c, sl_outcome_t outcome, sl_reject_t why, sl_end_t how)
{
	sl_request_t *q = c->req;
	if (!q->r.ended) {
		q->r.ended = true;
		do_drop_upstream(c);
		if ((c->state == CL_QUEUED || q->r.tunnel_queued) &&
		    sl_admit_cancel(admit_of(c), &q->waiter) == SL_ADMIT_GRANTED)
			q->r.has_slot = true; /* handed over as it ended: give it back */
		if (c->state == CL_TUNNEL && q->r.has_slot)
			sl_metrics_tunnel_active(&c->w->metrics, -1);
		if (q->r.tunnel_counted)
			atomic_fetch_sub_explicit(&c->w->server->tunnels, 1, memory_order_relaxed);
		if (q->r.retrying) {
			q->r.retrying = false;
			sl_budget_retry_done(&c->w->server->budget);
		}
		do_adaptive_sample(c, outcome);
		if (q->r.probe && !q->r.breaker_told) {
			q->r.breaker_told = true; /* no verdict: another request may probe */
			sl_breaker_abandon_probe(&c->w->server->breaker);
		}
		do_release_slot(c, how == SL_END_ANSWERED,
		                outcome == SL_OUTCOME_SUCCESS || outcome == SL_OUTCOME_FAILED);
		if (q->r.counted && how == SL_END_ANSWERED && outcome != SL_OUTCOME_REJECTED && c->eof &&
		    c->in_len == c->in_off) {
			/* Answered to a client that half-closed: whether the answer
			 * reached it is known when the connection ends (a reset in
			 * reply is a client that had gone). sl_forward_settle counts. */
			q->r.outcome_pending = true;
			q->r.pending_outcome = (uint8_t)outcome;
		} else {
			do_count(c, outcome, why);
		}
	}
	switch (how) {
	case SL_END_ANSWERED: sl_client_next(c); break;
	case SL_END_CUT: sl_client_close(c); break;
	case SL_END_CLOSING: break;
	}
}

/* ---- a client that leaves --------------------------------------------------------- */

/* An abandoned request's answer, read to its end and dropped while it keeps
 * the request's slot: the upstream is still working on it, and the slot
 * counts what the upstream is doing (--client-abort drain). The exchange
 * reports here once handed over; its connection goes back to the pool when
 * the answer ends. */
typedef struct sl_drain {
	sl_worker_t *w;
	sl_upconn_t *up;
	uint64_t bytes;
	uint64_t slot_ns; /* the request's, for the hold time */
	bool too_long;    /* past DRAIN_MAX_BYTES: closed at the end of this read */
} sl_drain_t;

static void do_drain_end(sl_drain_t *d)
{
	sl_admit_release_held(&d->w->server->admit, d->slot_ns ? uv_hrtime() - d->slot_ns : 0);
	sl_metrics_draining(&d->w->metrics, -1);
	free(d);
}

static int on_drain_head(void *owner, const sl_http_msg_t *resp)
{
	return 0; /* whatever it is: nobody retries an answer nobody reads */
}

static bool on_drain_body(void *owner, const char *at, size_t len)
{
	sl_drain_t *d = owner;
	d->bytes += len;
	if (d->bytes > DRAIN_MAX_BYTES)
		d->too_long = true;
	return d->too_long; /* stop reading: closed once this read has been parsed */
}

static void on_drain_flush(void *owner)
{
	sl_drain_t *d = owner;
	if (d->too_long) {
		sl_upstream_abort(d->up);
		do_drain_end(d);
	}
}

static void on_drain_done(void *owner)
{
	do_drain_end(owner);
}

static void on_drain_error(void *owner, const sl_up_failure_t *f)
{
	do_drain_end(owner);
}

static void on_drain_nothing(void *owner)
{
	(void)owner;
}

static void on_drain_info(void *owner, const sl_http_msg_t *resp)
{
	(void)owner;
}

static const sl_upstream_events_t drain_events = {
    .ready = on_drain_nothing,
    .info = on_drain_info,
    .head = on_drain_head,
    .body = on_drain_body,
    .flush = on_drain_flush,
    .done = on_drain_done,
    .error = on_drain_error,
    .drain = on_drain_nothing,
    .tunnel_open = on_drain_nothing,
    .tunnel_eof = on_drain_nothing,
};

/* Whether the upstream has the whole request and may still be working on
 * it: only then is there an answer worth waiting for. A request whose body
 * was still coming cannot be finished by the upstream. */
static bool is_drainable(const sl_client_t *c)
{
	const sl_request_t *q = c->req;
	return cfg_of(c)->client_abort == SL_ABORT_DRAIN && c->state == CL_FORWARD && !q->r.connect && q->r.has_slot &&
	       q->r.request_done && q->a.up && !q->a.req_head_pending && sl_upstream_is_ready(q->a.up);
}

void sl_forward_abandon(sl_client_t *c, sl_outcome_t outcome)
{
	sl_request_t *q = c->req;
	if (!q->r.ended && is_drainable(c)) {
		sl_drain_t *d = sl_calloc(1, sizeof *d);
		d->w = c->w;
		d->up = q->a.up;
		d->slot_ns = q->r.slot_ns;
		q->a.up = NULL;
		q->r.has_slot = false; /* the drain holds it now */
		sl_metrics_draining(&c->w->metrics, 1);
		sl_upstream_hand_over(d->up, &drain_events, d);
	}
	sl_forward_end(c, outcome, 0, SL_END_CUT);
}

/* ---- local answers ------------------------------------------------------------ */

/* A 503 of SPEC §4, answered at once. A bodiless or small request is read to
 * its end and dropped (DISCARD) so the connection stays usable; a large body
 * is not worth reading just to refuse it: the connection closes instead. */
static void do_reject_predicted(sl_client_t *c, sl_reject_t why, uint64_t predicted_ms)
{
	static const char *const messages[SL_REJECT_COUNT] = {
	    [SL_REJECT_QUEUE_FULL] = "too many requests are waiting for the upstream; retry later",
	    [SL_REJECT_QUEUE_TIMEOUT] = "the request waited too long for the upstream; retry later",
	    [SL_REJECT_CIRCUIT_OPEN] = "the upstream is failing and requests are paused; retry later",
	    [SL_REJECT_TUNNEL_LIMIT] = "too many tunnels are open; retry later",
	    [SL_REJECT_CLUSTER_UNAVAILABLE] = "the cluster's shared limit cannot be reached; retry later",
	};
	sl_request_t *q = c->req;
	const sl_http_msg_t *req = &q->parser.msg;
	bool small = !req->chunked && req->content_length <= 65536;
	char body[320], headers[64];
	int n;
	uint32_t retry_after =
	    why == SL_REJECT_CIRCUIT_OPEN ? sl_breaker_retry_after(&c->w->server->breaker, sl_client_now(c)) : 1;
	if (predicted_ms) {
		/* refused at once by the adaptive queue: come back when the queue
		 * ahead of it should have gone (seconds, rounded up) */
		n = snprintf(body, sizeof body,
		             "{\"error\":\"%s\",\"status\":503,\"message\":\"%s\",\"predicted\":true,"
		             "\"predicted_wait_ms\":%llu}\n",
		             sl_reject_name(why),
		             "the request would wait longer for the upstream than its deadline allows; retry later",
		             (unsigned long long)predicted_ms);
		retry_after = (uint32_t)((predicted_ms + 999) / 1000);
	} else {
		n = snprintf(body, sizeof body, "{\"error\":\"%s\",\"status\":503,\"message\":\"%s\"}\n",
		             sl_reject_name(why), messages[why]);
	}
	if (!small)
		q->r.keep_alive = false;
	snprintf(headers, sizeof headers, "Retry-After: %u\r\n%s", retry_after,
	         (q->r.keep_alive && req->minor == 0) ? "Connection: keep-alive\r\n" : "");
	q->r.status = 503;
	q->r.bytes_out = (uint64_t)n;
	q->out.len = 0;
	sl_http1_build_local(503, "application/json", body, (size_t)n, q->r.keep_alive, headers, &q->out);
	sl_client_write_out(c);
	q->r.response_started = true;
	sl_forward_end(c, SL_OUTCOME_REJECTED, why, SL_END_ANSWERED);
}

static void do_reject(sl_client_t *c, sl_reject_t why)
{
	do_reject_predicted(c, why, 0);
}

/* Why a waiter that was not granted is answered 503 (admit.h's results). */
static sl_reject_t reject_reason(const sl_admit_waiter_t *w, sl_admit_result_t result)
{
	switch (result) {
	case SL_ADMIT_EXPIRED: return SL_REJECT_QUEUE_TIMEOUT; /* a standing queue dropped it */
	case SL_ADMIT_DISPLACED: return SL_REJECT_QUEUE_FULL;  /* a lighter key took its place */
	default: return (sl_reject_t)w->reason;                /* the breaker opened, or the cluster closed */
	}
}

/* ---- sending the request -------------------------------------------------------- */

/* One piece of a body as it goes on: as is, or as one chunk. Fills bufs
 * (3 at most) and returns how many; size_line holds the chunk size. */
static unsigned do_frame(sl_framing_t framing, const char *at, size_t len, char size_line[20], uv_buf_t bufs[3])
{
	if (framing != SL_FRAME_CHUNKED) {
		bufs[0] = uv_buf_init((char *)at, (unsigned)len);
		return 1;
	}
	int n = snprintf(size_line, 20, "%zx\r\n", len);
	bufs[0] = uv_buf_init(size_line, (unsigned)n);
	bufs[1] = uv_buf_init((char *)at, (unsigned)len);
	bufs[2] = uv_buf_init((char *)"\r\n", 2);
	return 3;
}

static const char last_chunk[] = "0\r\n\r\n";

/* Bytes to the upstream, after the request head when it is still waiting:
 * a POST whose body came with its head leaves in one system call. n <= 3. */
static int do_send_up(sl_client_t *c, const uv_buf_t *bufs, unsigned n)
{
	sl_request_t *q = c->req;
	if (!q->a.req_head_pending)
		return sl_upstream_send(q->a.up, bufs, n);
	q->a.req_head_pending = false;
	const sl_http_msg_t *req = &q->parser.msg;
	sl_up_expect_t expect = q->r.connect               ? SL_UP_EXPECT_TUNNEL
	                        : req->method == HTTP_HEAD ? SL_UP_EXPECT_NO_BODY
	                                                   : SL_UP_EXPECT_BODY;
	int r = sl_upstream_send_head(q->a.up, q->out.base, q->out.len, bufs, n, expect);
	q->out.len = 0;
	return r;
}

void sl_forward_flush_request_head(sl_client_t *c)
{
	sl_request_t *q = c->req;
	if (!q->a.req_head_pending)
		return;
	if (q->a.up == NULL || c->state != CL_FORWARD) {
		q->a.req_head_pending = false; /* the attempt was abandoned */
		return;
	}
	if (do_send_up(c, NULL, 0) > 0)
		q->a.up_backlogged = true;
}

/* Body bytes to the upstream, framed as the request head said. */
static void do_send_body(sl_client_t *c, const char *at, size_t len)
{
	sl_request_t *q = c->req;
	char size_line[20];
	uv_buf_t bufs[3];
	unsigned n = do_frame(q->r.req_framing, at, len, size_line, bufs);
	if (do_send_up(c, bufs, n) > 0)
		q->a.up_backlogged = true;
}

static void do_finish_request_body(sl_client_t *c)
{
	sl_request_t *q = c->req;
	if (q->r.req_framing == SL_FRAME_CHUNKED) {
		uv_buf_t b = uv_buf_init((char *)last_chunk, sizeof last_chunk - 1);
		if (do_send_up(c, &b, 1) > 0)
			q->a.up_backlogged = true;
	} else {
		sl_forward_flush_request_head(c);
	}
	sl_upstream_request_done(q->a.up);
}

/* sluice answers 100 Continue itself, once an upstream connection is ready. */
static void do_send_continue(sl_client_t *c)
{
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
	sl_request_t *q = c->req;
	const sl_http_msg_t *req = &q->parser.msg;
	if (q->r.continue_sent || !req->expect_continue || q->r.request_done ||
	    (req->content_length <= 0 && !req->chunked))
		return;
	q->r.continue_sent = true;
	uv_buf_t b = uv_buf_init((char *)cont, sizeof cont - 1);
	sl_client_write(c, &b, 1);
}

/* The upstream connection is ready: send the head, let the body flow. The
 * head goes out with the first body bytes (a retry's replayed body, or what
 * the parser finds in this read), or alone at the end of this turn. */
static void do_send_head(sl_client_t *c)
{
	sl_request_t *q = c->req;
	const sl_http_msg_t *req = &q->parser.msg;
	sl_client_set_state(c, CL_FORWARD);
	q->r.req_framing = sl_http1_request_framing(req);
	q->out.len = 0;
	sl_http1_build_request(req, q->ip, c->w->target_authority, q->r.req_framing, c->tls != NULL, &q->out);
	q->a.req_head_pending = true;
	if (q->r.connect) {
		sl_forward_flush_request_head(c);
		/* Bytes after a CONNECT head belong to the tunnel: they wait in
		 * c->in until the upstream has said yes. */
		sl_upstream_request_done(q->a.up);
		sl_client_update_reading(c);
		return;
	}
	if (q->replay.len > 0) /* a retry */
		do_send_body(c, q->replay.base, q->replay.len);
	if (q->r.request_done)
		do_finish_request_body(c);
	else
		do_send_continue(c);
	if (!c->parsing)
		sl_forward_flush_request_head(c);
	sl_client_update_reading(c);
}

static void do_start_attempt(sl_client_t *c)
{
	sl_request_t *q = c->req;
	memset(&q->a, 0, sizeof q->a);
	q->r.attempts++;
	uint64_t now_ns = 0;
	if (q->r.upstream_ns == 0)
		q->r.upstream_ns = now_ns = uv_hrtime();
	if (sl_adaptive_on(&c->w->server->adaptive))
		q->a.started_us = (now_ns ? now_ns : uv_hrtime()) / 1000;
	sl_client_set_state(c, CL_WAIT);
	q->a.up = sl_upstream_acquire(c->w, &events, c);
	sl_upstream_set_deadline(q->a.up, q->r.deadline);
	if (sl_upstream_is_ready(q->a.up))
		do_send_head(c);
	sl_client_rearm(c);
}

/* A queued request got its answer from the admission queue. */
static void do_admitted(sl_client_t *c, sl_admit_result_t result)
{
	sl_request_t *q = c->req;
	q->r.queue_ns = uv_hrtime() - q->waiter.e.queued_at;
	sl_metrics_queue_wait(&c->w->metrics, q->r.queue_ns / 1000, sl_client_now(c));
	if (result != SL_ADMIT_GRANTED) {
		do_reject(c, reject_reason(&q->waiter, result));
		return;
	}
	q->r.has_slot = true;
	q->r.slot_ns = q->r.connect ? 0 : uv_hrtime(); /* a tunnel's hold says nothing of the upstream's pace */
	if (q->r.deadline && sl_ms_left(sl_client_now(c), q->r.deadline, 0) == 0) {
		do_reject(c, SL_REJECT_QUEUE_TIMEOUT); /* the slot came too late: never sent */
		return;
	}
	do_start_attempt(c);
}

/* A tunnel's client bytes got a slot (or the breaker refused them). */
static void do_tunnel_admitted(sl_client_t *c, sl_admit_result_t result)
{
	sl_request_t *q = c->req;
	q->r.tunnel_queued = false;
	if (result != SL_ADMIT_GRANTED) {
		sl_forward_end(c, SL_OUTCOME_REJECTED, reject_reason(&q->waiter, result), SL_END_CUT);
		return;
	}
	q->r.has_slot = true;
	sl_metrics_tunnel_active(&c->w->metrics, 1);
	do_tunnel_forward(c);
	if (c->state == CL_TUNNEL) /* not ended by a FIN that followed the bytes */
		sl_client_update_reading(c);
}

static void on_admitted(sl_admit_waiter_t *waiter, sl_admit_result_t result)
{
	sl_request_t *q = (sl_request_t *)((char *)waiter - offsetof(sl_request_t, waiter));
	sl_client_t *c = q->parser.data;
	if (c->state == CL_TUNNEL) {
		do_tunnel_admitted(c, result);
		return;
	}
	do_admitted(c, result);
	if (c->state != CL_CLOSED)
		do_parse_and_read(c);
}

/* ---- the request's events ---------------------------------------------------------- */

/* The request's fair-queueing key (--fair-queue-key) into its waiter:
 * the client's address, a header's value (a missing header is the empty
 * value, one key of its own), or 0, the one key of an unfair queue. */
static void do_queue_key(sl_client_t *c)
{
	sl_request_t *q = c->req;
	const sl_config_t *cfg = cfg_of(c);
	switch (cfg->fair_key_kind) {
	case SL_FAIR_IP: q->waiter.e.key = sl_admit_key(admit_of(c), q->ip, strlen(q->ip)); break;
	case SL_FAIR_HEADER: {
		const sl_http_header_t *h = sl_http_msg_find(&q->parser.msg, cfg->fair_key_header);
		q->waiter.e.key = h ? sl_admit_key(admit_of(c), sl_http_msg_str(&q->parser.msg, h->value), h->value_len)
		                    : sl_admit_key(admit_of(c), "", 0);
		break;
	}
	default: q->waiter.e.key = 0; break;
	}
}

/* The longest wait worth having, in ms, for the adaptive queue's
 * prediction: queue_timeout, or what is left of request_timeout. */
static uint64_t queue_budget_ms(const sl_client_t *c)
{
	const sl_request_t *q = c->req;
	uint64_t budget = sl_config_ms(cfg_of(c)->queue_timeout);
	if (q->r.deadline) {
		uint64_t left = sl_ms_left(sl_client_now(c), q->r.deadline, 0);
		if (left < budget)
			budget = left ? left : 1;
	}
	return budget;
}

static bool is_admin_path(const sl_client_t *c)
{
	if (c->admin_listener)
		return true;
	if (cfg_of(c)->admin_port != 0)
		return false;
	size_t len;
	const char *t = sl_http_msg_target(&c->req->parser.msg, &len);
	return len >= 7 && memcmp(t, "/proxy-", 7) == 0;
}

void sl_forward_head(sl_client_t *c)
{
	sl_request_t *q = c->req;
	const sl_http_msg_t *req = &q->parser.msg;
	q->r.keep_alive = req->keep_alive && (!c->w->draining || c->admin_listener); /* scrapes go on */
	q->r.started_ns = uv_hrtime();
	q->replay.len = 0;
	if (is_admin_path(c)) {
		sl_client_set_state(c, CL_LOCAL);
		sl_client_rearm(c);
		return;
	}
	int64_t max_body = cfg_of(c)->max_body_size;
	if (max_body > 0 && req->content_length > max_body) {
		sl_client_respond_error(c, 413, "request body larger than max_body_size", true);
		sl_client_linger(c);
		return;
	}
	q->r.counted = true;
	sl_metrics_begin(&c->w->metrics);
	q->r.connect = req->method == HTTP_CONNECT;
	q->r.replay_ok = true;
	uint64_t timeout = sl_config_ms(cfg_of(c)->request_timeout);
	q->r.deadline = timeout ? sl_client_now(c) + timeout : 0;
	if (q->r.connect) {
		q->r.keep_alive = false; /* after anything but a tunnel, what follows may be tunnel bytes */
		if (atomic_fetch_add_explicit(&c->w->server->tunnels, 1, memory_order_relaxed) >=
		    cfg_of(c)->max_tunnels) {
			atomic_fetch_sub_explicit(&c->w->server->tunnels, 1, memory_order_relaxed);
			do_reject(c, SL_REJECT_TUNNEL_LIMIT);
			return;
		}
		q->r.tunnel_counted = true;
	}
	if (atomic_load_explicit(&c->w->server->cluster_closed, memory_order_relaxed)) {
		do_reject(c, SL_REJECT_CLUSTER_UNAVAILABLE); /* --cluster-fallback closed, Redis gone */
		return;
	}
	sl_breaker_verdict_t verdict = sl_breaker_allow(&c->w->server->breaker, sl_client_now(c));
	q->r.probe = verdict == SL_BREAKER_PROBE;
	if (verdict == SL_BREAKER_REJECT) {
		do_reject(c, SL_REJECT_CIRCUIT_OPEN);
		return;
	}
	do_queue_key(c);
	q->waiter.e.budget_ns = queue_budget_ms(c) * 1000000;
	switch (sl_admit_acquire(admit_of(c), &q->waiter, &c->w->admit_inbox, on_admitted)) {
	case SL_ADMIT_GRANTED:
		q->r.has_slot = true;
		q->r.slot_ns = q->r.connect ? 0 : uv_hrtime();
		do_start_attempt(c);
		break;
	case SL_ADMIT_QUEUED:
		sl_adaptive_reached(&c->w->server->adaptive);
		sl_client_set_state(c, CL_QUEUED);
		sl_client_rearm(c);
		break;
	case SL_ADMIT_HOPELESS:
		sl_adaptive_reached(&c->w->server->adaptive); /* the limit was reached: a queue stood */
		do_reject_predicted(c, SL_REJECT_QUEUE_TIMEOUT, (q->waiter.e.predicted_ns + 999999) / 1000000);
		break;
	default:
		sl_adaptive_reached(&c->w->server->adaptive);
		do_reject(c, SL_REJECT_QUEUE_FULL);
		break;
	}
}

int sl_forward_body(sl_client_t *c, const char *at, size_t len)
{
	sl_request_t *q = c->req;
	q->r.body_bytes += len;
	if (c->state == CL_LOCAL || c->state == CL_DISCARD)
		return SL_HTTP1_CONTINUE;
	int64_t max_body = cfg_of(c)->max_body_size;
	if (max_body > 0 && q->r.body_bytes > (uint64_t)max_body)
		return sl_http1_fail(&q->parser, 413, "request body larger than max_body_size");
	if (c->state != CL_FORWARD || q->a.up == NULL)
		return SL_HTTP1_CONTINUE;
	if (q->r.replay_ok) {
		if (q->replay.len + len <= (uint64_t)cfg_of(c)->retry_buffer_size) {
			sl_buf_append(&q->replay, at, len);
		} else {
			q->r.replay_ok = false; /* too large to replay: no retry once sent */
			sl_buf_dispose(&q->replay);
		}
	}
	do_send_body(c, at, len);
	return SL_HTTP1_CONTINUE;
}

void sl_forward_complete(sl_client_t *c)
{
	sl_request_t *q = c->req;
	q->r.request_done = true;
	switch (c->state) {
	case CL_DISCARD: sl_client_resume(c); break;
	case CL_LOCAL:
		q->out.len = 0;
		sl_admin_respond(c->w, &q->parser.msg, q->r.keep_alive, &q->out);
		sl_client_write_out(c);
		q->r.response_started = true;
		sl_forward_end(c, SL_OUTCOME_SUCCESS, 0, SL_END_ANSWERED); /* not counted: no outcome */
		break;
	default:
		if (q->a.up && sl_upstream_is_ready(q->a.up))
			do_finish_request_body(c);
		break;
	}
}

/* Whether the whole request has arrived: read, or waiting in c->in whole
 * (a request waiting for its upstream connection is not parsed further). */
static bool request_arrived(const sl_client_t *c)
{
	const sl_request_t *q = c->req;
	const sl_http_msg_t *req = &q->parser.msg;
	if (q->r.request_done || (!req->chunked && req->content_length <= 0))
		return true;
	return !req->chunked && c->state != CL_FORWARD && (uint64_t)(c->in_len - c->in_off) >= q->parser.left;
}

void sl_forward_client_eof(sl_client_t *c, ssize_t err)
{
	switch (c->state) {
	case CL_LOCAL: sl_forward_end(c, SL_OUTCOME_FAILED, 0, SL_END_CUT); return; /* not counted */
	case CL_QUEUED: /* withdrawn at once, never sent (HAProxy's abortonclose) */
		sl_forward_abandon(c, SL_OUTCOME_CLIENT_CLOSED);
		return;
	default:
		/* A FIN after a whole request is not an abort: many clients
		 * half-close once they have sent it, and the answer still goes
		 * out (if it cannot be delivered, the failed write ends it). A
		 * reset, or a FIN inside the request, is the client leaving. */
		if (err == UV_EOF && request_arrived(c))
			return;
		sl_forward_abandon(c, SL_OUTCOME_CLIENT_CLOSED);
	}
}

/* ---- the answer ------------------------------------------------------------------- */

/* Writes the pending response head (if any) and bufs (3 at most) in one
 * system call: a small answer leaves in a single write. */
static bool do_write_with_head(sl_client_t *c, const uv_buf_t *bufs, unsigned n)
{
	sl_request_t *q = c->req;
	if (!q->r.head_pending)
		return sl_client_write(c, bufs, n);
	uv_buf_t all[4];
	all[0] = uv_buf_init(q->out.base, (unsigned)q->out.len);
	for (unsigned i = 0; i < n; i++)
		all[i + 1] = bufs[i];
	q->r.head_pending = false;
	bool backlogged = sl_client_write(c, all, n + 1);
	q->out.len = 0;
	return backlogged;
}

static void on_up_ready(void *owner)
{
	sl_client_t *c = owner;
	do_send_head(c);
	do_parse_and_read(c);
}

static void on_up_info(void *owner, const sl_http_msg_t *resp)
{
	sl_client_t *c = owner;
	sl_request_t *q = c->req;
	/* Every interim answer goes on, in order, to a client that can parse
	 * one (RFC 9110 §15.2); none to HTTP/1.0. A 100 Continue after sluice
	 * sent its own would only repeat it. */
	if (q->parser.msg.minor == 0 || (resp->status == 100 && q->r.continue_sent))
		return;
	q->out.len = 0;
	sl_http1_build_response(resp, &q->parser.msg, SL_FRAME_NONE, true, &q->out);
	sl_client_write_out(c);
	q->r.response_started = true; /* bytes of this exchange reached the client: no retry now */
	q->r.interim_sent = true;
}

/* The facts of a failed attempt, for the failure funnel (retry.c). */
static sl_attempt_t attempt_of(const sl_client_t *c, const sl_up_failure_t *f)
{
	const sl_request_t *q = c->req;
	sl_attempt_t a = {
	    .kind = f->kind,
	    .status = f->status,
	    .reused = f->reused,
	    .request_written = f->request_written,
	    .request_sent = f->request_sent,
	    .response_relayed = q->r.response_started,
	    .idempotent = sl_retry_is_idempotent(q->parser.msg.method),
	    .body_replayable = q->r.replay_ok,
	    .stale_retry_used = q->r.stale_retry_used,
	    .retries_done = q->r.retries,
	    .time_left_ms = q->r.deadline ? sl_ms_between(sl_client_now(c), q->r.deadline) : INT64_MAX,
	};
	return a;
}

/* The retry budget's word (budget.h) on a retry the funnel wants: a refused
 * one answers with the failure it had. */
static sl_retry_verdict_t do_budget(sl_client_t *c, sl_retry_verdict_t v)
{
	if (v.action != SL_RETRY_BACKOFF)
		return v;
	sl_request_t *q = c->req;
	sl_server_t *s = c->w->server;
	const sl_config_t *cfg = cfg_of(c);
	uint32_t requests = 0;
	if (!q->r.retrying && !sl_budget_throttled(&s->budget)) {
		sl_admit_stats_t st;
		sl_admit_get_stats(&s->admit, &st);
		requests = st.active + st.queued;
	}
	if (sl_budget_try_retry(&s->budget, q->r.retrying, requests, (uint32_t)cfg->retry_budget_percent,
	                        (uint32_t)cfg->retry_budget_min)) {
		q->r.retrying = true;
		return v;
	}
	sl_metrics_budget_exhausted(&c->w->metrics);
	v.action = SL_RETRY_ANSWER;
	return v;
}

/* The upstream's Retry-After on a 503, as ms from now (0: none, or not
 * readable). */
static uint64_t retry_after_of(const sl_http_msg_t *resp)
{
	const sl_http_header_t *h = sl_http_msg_find(resp, "retry-after");
	uint64_t ms = 0;
	if (h && !sl_retry_after_parse(sl_http_msg_str(resp, h->value), h->value_len, (int64_t)time(NULL), &ms))
		ms = 0;
	return ms;
}

static int on_up_head(void *owner, const sl_http_msg_t *resp)
{
	sl_client_t *c = owner;
	sl_request_t *q = c->req;
	const sl_http_msg_t *req = &q->parser.msg;
	bool failed = sl_retry_is_upstream_failure(SL_UP_ERROR_STATUS, resp->status);
	sl_budget_record(&c->w->server->budget, failed);
	if (sl_adaptive_on(&c->w->server->adaptive) && q->a.started_us) { /* (on since the attempt began) */
		q->r.ttfb_us = uv_hrtime() / 1000 - q->a.started_us;
		if (resp->status == 429 || resp->status == 503)
			do_adaptive_signal(c);
	}
	if (failed) {
		/* The upstream says it failed: try again rather than relay, if the
		 * funnel allows (it will decide the same way in on_up_error). */
		sl_up_failure_t f = {.kind = SL_UP_ERROR_STATUS, .status = resp->status, .request_written = true};
		sl_attempt_t a = attempt_of(c, &f);
		if (resp->status == 503)
			a.retry_after_ms = retry_after_of(resp);
		sl_retry_verdict_t v = do_budget(c, sl_retry_decide(cfg_of(c), &a, sl_worker_random(c->w)));
		if (v.action != SL_RETRY_ANSWER) {
			/* decided once: the answer is dropped, so on_up_error must not
			 * decide again (a new backoff draw could no longer fit the
			 * deadline, leaving nothing to answer with) */
			q->a.status_retry = true;
			q->a.retry = v;
			return -1;
		}
	}
	do_tell_breaker(c, !sl_retry_is_upstream_failure(SL_UP_ERROR_STATUS, resp->status));
	q->r.status = resp->status;
	if (q->r.connect && resp->status < 300) {
		q->r.resp_framing = SL_FRAME_CLOSE; /* raw bytes follow */
		q->out.len = 0;
		sl_http1_build_response(resp, req, SL_FRAME_NONE, true, &q->out);
		q->r.response_started = true;
		if (sl_client_write_out(c) && q->a.up)
			sl_upstream_pause(q->a.up);
		return 0;
	}
	/* The framing the client gets is the one the parser established; a
	 * Content-Length on HEAD and 304 answers describes the resource. */
	if (resp->status == 204)
		q->r.resp_framing = SL_FRAME_NONE;
	else if (req->method == HTTP_HEAD || resp->status == 304 || resp->content_length >= 0)
		q->r.resp_framing = SL_FRAME_LENGTH;
	else if (req->minor >= 1)
		q->r.resp_framing = SL_FRAME_CHUNKED;
	else
		q->r.resp_framing = SL_FRAME_CLOSE;
	if (q->r.resp_framing == SL_FRAME_CLOSE || !q->r.request_done || c->w->draining)
		q->r.keep_alive = false;
	q->out.len = 0;
	sl_http1_build_response(resp, req, q->r.resp_framing, q->r.keep_alive, &q->out);
	q->r.response_started = true;
	q->r.head_pending = true; /* written with the first body bytes, or at the end of this read */
	return 0;
}

static bool on_up_body(void *owner, const char *at, size_t len)
{
	sl_client_t *c = owner;
	sl_request_t *q = c->req;
	q->r.bytes_out += len;
	if (c->state == CL_TUNNEL) { /* the upstream answered: the quiet time starts now */
		q->r.tunnel_awaiting = false;
		q->r.tunnel_last = sl_client_now(c);
		if (q->r.has_slot)
			sl_client_arm_within(c, sl_config_ms(cfg_of(c)->tunnel_release_after));
	}
	char size_line[20];
	uv_buf_t bufs[3];
	unsigned n = do_frame(q->r.resp_framing, at, len, size_line, bufs);
	return do_write_with_head(c, bufs, n);
}

static void on_up_flush(void *owner)
{
	sl_client_t *c = owner;
	if (do_write_with_head(c, NULL, 0) && c->req->a.up)
		sl_upstream_pause(c->req->a.up);
}

static void on_up_done(void *owner)
{
	sl_client_t *c = owner;
	sl_request_t *q = c->req;
	q->a.up = NULL;
	if (q->r.resp_framing == SL_FRAME_CHUNKED) {
		uv_buf_t b = uv_buf_init((char *)last_chunk, sizeof last_chunk - 1);
		do_write_with_head(c, &b, 1);
	} else {
		do_write_with_head(c, NULL, 0);
	}
	do_tell_breaker(c, !sl_retry_is_upstream_failure(SL_UP_ERROR_STATUS, q->r.status));
	sl_forward_end(c, q->r.status < 500 ? SL_OUTCOME_SUCCESS : SL_OUTCOME_FAILED, 0, SL_END_ANSWERED);
}

/* The kind of an upstream attempt's failure, as the access log and the
 * metrics name it. */
static sl_error_kind_t kind_of(const sl_up_failure_t *f)
{
	switch (f->kind) {
	case SL_UP_RESOLVE: return SL_EK_DNS;
	case SL_UP_CONNECT: return f->uv_err == UV_ECONNREFUSED ? SL_EK_CONNECT_REFUSED : SL_EK_CONNECT;
	case SL_UP_CONNECT_TIMEOUT: return SL_EK_CONNECT_TIMEOUT;
	case SL_UP_WRITE:
		return f->uv_err == UV_ECONNRESET || f->uv_err == UV_EPIPE ? SL_EK_UPSTREAM_RESET
		                                                           : SL_EK_UPSTREAM_WRITE;
	case SL_UP_WRITE_TIMEOUT: return SL_EK_UPSTREAM_WRITE_TIMEOUT;
	case SL_UP_CLOSED: return f->uv_err == UV_ECONNRESET ? SL_EK_UPSTREAM_RESET : SL_EK_UPSTREAM_CLOSED;
	case SL_UP_READ_TIMEOUT: return SL_EK_READ_TIMEOUT;
	case SL_UP_BAD_RESPONSE: return SL_EK_BAD_RESPONSE;
	case SL_UP_TRUNCATED: return SL_EK_TRUNCATED;
	case SL_UP_ERROR_STATUS: return SL_EK_UPSTREAM_STATUS;
	}
	return SL_EK_BAD_RESPONSE;
}

/* One warn line per kind per second, process-wide, however many requests
 * fail the same way: an upstream that refuses 5,000 requests a second must
 * not turn stderr into the bottleneck. */
static sl_log_limit_t upstream_log_limit[SL_EK_UPSTREAM_COUNT];

/* Says at warn what failed, where, for which request, and what follows. */
static void do_log_failure(sl_client_t *c, const sl_up_failure_t *f, sl_error_kind_t kind, sl_retry_action_t next)
{
	sl_request_t *q = c->req;
	uint64_t held_back = 0;
	if (!sl_log_enabled(SL_LOG_WARN) ||
	    !sl_log_limit_pass(&upstream_log_limit[kind - SL_EK_DNS], sl_client_now(c), &held_back))
		return;
	char where[SL_ADDR_STRLEN], detail[48] = "", more[64] = "";
	if (f->kind == SL_UP_ERROR_STATUS)
		snprintf(detail, sizeof detail, " (status %d)", f->status);
	else if (f->uv_err && f->uv_err != UV_EOF)
		snprintf(detail, sizeof detail, " (%s)", uv_strerror(f->uv_err));
	if (held_back)
		snprintf(more, sizeof more, "; %llu more like it since the last such line",
		         (unsigned long long)held_back);
	size_t target_len;
	const char *target = sl_http_msg_target(&q->parser.msg, &target_len);
	sl_warn("upstream %s%s at %s: %s %.*s%s from %s, attempt %d, %s%s", sl_error_kind_name(kind), detail,
	        f->addr ? sl_addr_format(f->addr, where) : c->w->target_authority,
	        sl_http_method_name(q->parser.msg.method), (int)(target_len > 200 ? 200 : target_len), target,
	        target_len > 200 ? "..." : "", q->ip, q->r.attempts, next == SL_RETRY_ANSWER ? "answered" : "retrying",
	        more);
}

/* The client end of the failure funnel: retry, or give the final answer. */
static void on_up_error(void *owner, const sl_up_failure_t *f)
{
	sl_client_t *c = owner;
	sl_request_t *q = c->req;
	q->a.up = NULL;
	q->a.up_backlogged = false;
	if (q->r.head_pending) {
		/* A head whose answer failed before any of it was written (a
		 * framing error right behind it): the client gets a clean answer
		 * (or a retry). */
		q->r.head_pending = false;
		q->out.len = 0;
		q->r.response_started = q->r.interim_sent;
	}
	sl_attempt_t a = attempt_of(c, f);
	sl_retry_verdict_t v;
	if (f->kind == SL_UP_ERROR_STATUS && q->a.status_retry) {
		v = q->a.retry; /* decided (and budgeted) at the head */
	} else {
		v = sl_retry_decide(cfg_of(c), &a, sl_worker_random(c->w));
		if (v.action != SL_RETRY_NOW && c->state != CL_TUNNEL)
			sl_budget_record(&c->w->server->budget, true);
		v = do_budget(c, v);
	}
	sl_error_kind_t kind = kind_of(f);
	if (c->state != CL_TUNNEL && v.action != SL_RETRY_NOW) {
		/* Not a stale pooled connection (the upstream's idle close: routine)
		 * nor a tunnel's end: a failure worth a line and a count. */
		bool past_deadline = q->r.deadline && sl_ms_left(sl_client_now(c), q->r.deadline, 0) == 0;
		q->r.error = (uint8_t)(f->kind == SL_UP_READ_TIMEOUT && past_deadline ? SL_EK_REQUEST_TIMEOUT : kind);
		sl_metrics_upstream_failure(&c->w->metrics, kind);
		do_log_failure(c, f, kind, v.action);
		if (kind == SL_EK_CONNECT_REFUSED || kind == SL_EK_CONNECT_TIMEOUT || kind == SL_EK_READ_TIMEOUT)
			do_adaptive_signal(c);
	} else {
		sl_debug("upstream %s for %s %s from %s (attempt %d): %s", sl_error_kind_name(kind),
		         sl_http_method_name(q->parser.msg.method),
		         c->state == CL_TUNNEL ? "tunnel" : "stale connection", q->ip, q->r.attempts,
		         f->uv_err ? uv_strerror(f->uv_err) : "");
	}
	switch (v.action) {
	case SL_RETRY_NOW: /* a stale pooled connection: free, not a retry */
		q->r.stale_retry_used = true;
		do_start_attempt(c);
		do_parse_and_read(c);
		return;
	case SL_RETRY_BACKOFF:
		q->r.retries++;
		sl_metrics_retry(&c->w->metrics);
		sl_client_set_state(c, CL_BACKOFF);
		sl_client_arm(c, v.delay_ms);
		return;
	case SL_RETRY_ANSWER: break;
	}
	do_tell_breaker(c, !sl_retry_is_upstream_failure(f->kind, f->status));
	if (c->state == CL_TUNNEL) {
		/* An open tunnel that idled out or was reset upstream has done its
		 * job: like a client's reset, that ends it, not fails it. */
		sl_forward_end(c, SL_OUTCOME_SUCCESS, 0, SL_END_CUT);
		return;
	}
	if (q->r.response_started) {
		/* Part of the answer is out: the only honest signal left is to cut
		 * the connection, so the client sees a truncated message. */
		sl_forward_end(c, SL_OUTCOME_FAILED, 0, SL_END_CUT);
		return;
	}
	sl_client_respond_error(c, v.status, v.status == 504 ? "upstream timed out" : "upstream failed",
	                        !q->r.request_done);
	sl_forward_end(c, SL_OUTCOME_FAILED, 0, SL_END_ANSWERED);
}

static void on_up_drain(void *owner)
{
	sl_client_t *c = owner;
	if (!c->req->a.up_backlogged)
		return;
	c->req->a.up_backlogged = false;
	sl_client_parse(c);
	sl_client_update_reading(c);
}

/* ---- CONNECT tunnels ------------------------------------------------------------ */

/* Bytes read from the client go to the upstream as they are, while the
 * tunnel holds a slot; without one they wait in c->in for the grant. */
static void do_tunnel_forward(sl_client_t *c)
{
	sl_request_t *q = c->req;
	if (c->in_len == c->in_off || !q->r.has_slot)
		return;
	if (q->a.up) {
		uv_buf_t b = uv_buf_init(c->in + c->in_off, c->in_len - c->in_off);
		if (sl_upstream_send(q->a.up, &b, 1) > 0)
			q->a.up_backlogged = true;
		q->r.tunnel_awaiting = true;
		q->r.tunnel_last = sl_client_now(c);
	}
	c->in_off = c->in_len = 0;
	if (q->r.tunnel_client_eof)
		do_tunnel_client_done(c);
}

/* The client half-closed and its bytes have gone up: pass the FIN on (after
 * them); the tunnel ends once the upstream has closed its side too. */
static void do_tunnel_client_done(sl_client_t *c)
{
	sl_request_t *q = c->req;
	if (q->a.up)
		sl_upstream_shutdown(q->a.up);
	if (q->r.tunnel_up_eof)
		sl_forward_end(c, SL_OUTCOME_SUCCESS, 0, SL_END_ANSWERED);
}

/* Client bytes on a tunnel that gave its slot back: ask admission again.
 * Returns false when the tunnel ended (the queue is full). */
static bool do_tunnel_acquire(sl_client_t *c)
{
	sl_request_t *q = c->req;
	if (q->r.has_slot || q->r.tunnel_queued)
		return true;
	q->waiter.e.budget_ns = 0; /* a tunnel's bytes are not predicted: they wait up to queue_timeout */
	switch (sl_admit_acquire(admit_of(c), &q->waiter, &c->w->admit_inbox, on_admitted)) {
	case SL_ADMIT_GRANTED:
		q->r.has_slot = true;
		sl_metrics_tunnel_active(&c->w->metrics, 1);
		return true;
	case SL_ADMIT_QUEUED:
		q->r.tunnel_queued = true;
		sl_client_rearm(c);
		return true;
	default: /* FULL (HOPELESS needs a budget) */
		sl_forward_end(c, SL_OUTCOME_REJECTED, SL_REJECT_QUEUE_FULL, SL_END_CUT);
		return false;
	}
}

static void on_tunnel_open(void *owner)
{
	sl_client_t *c = owner;
	sl_client_set_state(c, CL_TUNNEL);
	c->req->r.request_done = true;
	c->req->r.tunnel_last = sl_client_now(c); /* the 2xx was the answer: quiet from here */
	sl_metrics_tunnel_active(&c->w->metrics, 1);
	sl_client_rearm(c);
	do_tunnel_forward(c); /* what the client sent after its CONNECT head */
	sl_client_update_reading(c);
}

static void on_tunnel_eof(void *owner)
{
	sl_client_t *c = owner;
	c->req->r.tunnel_up_eof = true;
	if (!sl_client_shutdown_write(c))
		sl_forward_end(c, SL_OUTCOME_SUCCESS, 0, SL_END_CUT);
	else if (c->eof) /* both sides have closed their direction: done */
		sl_forward_end(c, SL_OUTCOME_SUCCESS, 0, SL_END_ANSWERED);
}

void sl_forward_tunnel_read(sl_client_t *c, ssize_t nread)
{
	sl_request_t *q = c->req;
	if (nread < 0) {
		if (nread != UV_EOF) { /* reset: nothing more to relay either way */
			sl_forward_end(c, SL_OUTCOME_SUCCESS, 0, SL_END_CUT);
			return;
		}
		q->r.tunnel_client_eof = true;
		if (c->in_len == c->in_off) /* else the FIN follows the bytes waiting for a slot */
			do_tunnel_client_done(c);
		return;
	}
	c->in_len += (uint32_t)nread;
	if (!do_tunnel_acquire(c))
		return;
	do_tunnel_forward(c);
	if (c->state == CL_TUNNEL)
		sl_client_update_reading(c);
}

static const sl_upstream_events_t events = {
    .ready = on_up_ready,
    .info = on_up_info,
    .head = on_up_head,
    .body = on_up_body,
    .flush = on_up_flush,
    .done = on_up_done,
    .error = on_up_error,
    .drain = on_up_drain,
    .tunnel_open = on_tunnel_open,
    .tunnel_eof = on_tunnel_eof,
};

/* ---- timers -------------------------------------------------------------------------- */

/* How long a queued request may still wait: queue_timeout, or less if its
 * deadline comes first. */
static uint64_t queue_time_left(const sl_client_t *c)
{
	const sl_request_t *q = c->req;
	uint64_t left =
	    sl_ms_left(uv_hrtime() / 1000000, q->waiter.e.queued_at / 1000000, sl_config_ms(cfg_of(c)->queue_timeout));
	if (q->r.deadline) {
		uint64_t until = sl_ms_left(sl_client_now(c), q->r.deadline, 0);
		if (until < left)
			left = until;
	}
	return left;
}

void sl_forward_queued_arm(sl_client_t *c)
{
	sl_client_arm(c, queue_time_left(c));
}

void sl_forward_queued_timer(sl_client_t *c)
{
	sl_request_t *q = c->req;
	uint64_t now_ns = uv_hrtime();
	uint64_t left = queue_time_left(c);
	if (left > 0) {
		sl_client_arm(c, left);
		return;
	}
	uint64_t waited = (now_ns - q->waiter.e.queued_at) / 1000000;
	sl_admit_result_t r = sl_admit_cancel(admit_of(c), &q->waiter);
	if (r == SL_ADMIT_QUEUED) {
		q->r.queue_ns = waited * 1000000;
		sl_metrics_queue_wait(&c->w->metrics, waited * 1000, sl_client_now(c));
		do_reject(c, SL_REJECT_QUEUE_TIMEOUT);
	} else {
		do_admitted(c, r); /* a slot reached it just in time */
	}
	if (c->state != CL_CLOSED)
		do_parse_and_read(c);
}

void sl_forward_backoff_timer(sl_client_t *c)
{
	do_start_attempt(c);
	do_parse_and_read(c);
}

static bool write_stalled(const sl_client_t *c)
{
	return sl_client_queue(c) > 0 &&
	       sl_ms_left(sl_client_now(c), c->last_write, sl_config_ms(cfg_of(c)->write_timeout)) == 0;
}

void sl_forward_body_timer(sl_client_t *c)
{
	sl_request_t *q = c->req;
	if (write_stalled(c)) {
		sl_debug("client %s stalled reading the answer", q->ip);
		q->r.error = SL_EK_CLIENT_STALLED;
		sl_forward_abandon(c, SL_OUTCOME_FAILED);
	} else if (!q->r.request_done && !q->a.up_backlogged && c->state != CL_WAIT &&
	           sl_ms_left(sl_client_now(c), c->last_read, sl_config_ms(cfg_of(c)->client_idle_timeout)) == 0) {
		/* The client stopped sending its body. */
		q->r.error = SL_EK_CLIENT_TIMEOUT;
		do_drop_upstream(c);
		if (!q->r.response_started)
			sl_client_respond_error(c, 408, "request body not received in time", true);
		sl_forward_end(c, SL_OUTCOME_FAILED, 0, SL_END_ANSWERED);
	} else {
		sl_client_rearm(c);
	}
}

void sl_forward_tunnel_arm(sl_client_t *c)
{
	const sl_config_t *cfg = cfg_of(c);
	uint64_t release = sl_config_ms(cfg->tunnel_release_after), write = sl_config_ms(cfg->write_timeout);
	sl_client_arm(c, release < write ? release : write);
}

void sl_forward_tunnel_timer(sl_client_t *c)
{
	sl_request_t *q = c->req;
	const sl_config_t *cfg = cfg_of(c);
	uint64_t now = sl_client_now(c), next = sl_config_ms(cfg->write_timeout);
	if (write_stalled(c)) {
		q->r.error = SL_EK_CLIENT_STALLED;
		sl_forward_end(c, SL_OUTCOME_FAILED, 0, SL_END_CUT);
		return;
	}
	if (q->r.tunnel_queued) {
		uint64_t left = sl_ms_left(uv_hrtime() / 1000000, q->waiter.e.queued_at / 1000000,
		                           sl_config_ms(cfg->queue_timeout));
		if (left == 0) { /* the tunnel's bytes waited too long for a slot */
			sl_forward_end(c, SL_OUTCOME_REJECTED, SL_REJECT_QUEUE_TIMEOUT, SL_END_CUT);
			return;
		}
		next = left < next ? left : next;
	} else if (q->r.has_slot && !q->r.tunnel_awaiting) {
		uint64_t left = sl_ms_left(now, q->r.tunnel_last, sl_config_ms(cfg->tunnel_release_after));
		if (left == 0) { /* answered and quiet: the upstream has nothing of ours to work on */
			q->r.has_slot = false;
			sl_metrics_tunnel_active(&c->w->metrics, -1);
			sl_admit_release(admit_of(c));
		} else if (left < next) {
			next = left;
		}
	}
	sl_client_arm(c, next ? next : 1);
}
