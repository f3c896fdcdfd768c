/* client.c — see client.h.
 *
 * States of a client connection:
 *   HEAD     reading a request head (or idle between keep-alive requests)
 *   QUEUED   head parsed, waiting in the admission queue for a slot; the
 *            parser is paused with any body bytes still in c->in
 *   WAIT     holding a slot, waiting for an upstream connection
 *   BACKOFF  an attempt failed and another follows after a pause (the slot
 *            is kept)
 *   FORWARD  head sent upstream; the body streams as it arrives; the
 *            response is relayed as it arrives
 *   LOCAL    an /proxy-* request: its body is read and dropped, then sluice
 *            answers itself
 *   DISCARD  sluice has answered (a 503 rejection): the rest of the request
 *            is read and dropped so the connection can carry the next one
 *   TUNNEL   the upstream accepted a CONNECT: bytes are relayed raw both ways
 *            until both sides have closed (the slot is held meanwhile)
 *   LINGER   a final answer is written: FIN sent, input drained until the
 *            peer closes or a short timer ends, so the peer reads the answer
 *            rather than a reset
 *   CLOSED   uv_close called; freed when both handles have closed
 *
 * Input: c->in holds bytes read but not yet parsed. The parser stops (pauses)
 * at the end of each head and each message, so pipelined requests wait there
 * in order, and the body of a request waiting for an upstream stays unread.
 * Reading stops when c->in is full or the upstream is backlogged, which is
 * what bounds memory per connection whatever the body size.
 *
 * Nothing here frees the connection inside a parser callback: the callbacks
 * record an event and pause; do_parse acts once llhttp has returned.
 */
#include "client.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accesslog.h"
#include "admin.h"
#include "admit.h"
#include "breaker.h"
#include "retry.h"
#include "buf.h"
#include "deadline.h"
#include "io.h"
#include "log.h"
#include "worker.h"

#define SL_LINGER_MS 2000

typedef enum {
	CL_HEAD,
	CL_QUEUED,
	CL_WAIT,
	CL_BACKOFF,
	CL_FORWARD,
	CL_LOCAL,
	CL_DISCARD,
	CL_TUNNEL,
	CL_LINGER,
	CL_CLOSED
} cl_state_t;
typedef enum { EV_NONE, EV_HEAD, EV_COMPLETE } cl_event_t;

struct sl_client {
	uv_tcp_t tcp;
	sl_deadline_t timer;
	uv_shutdown_t shutdown_req;
	sl_worker_t *w;
	sl_list_t link;
	sl_http1_t parser;
	sl_upconn_t *up;
	sl_admit_waiter_t waiter;
	char *in; /* SL_CLIENT_BUF bytes, NULL while idle */
	uint32_t in_off, in_len;
	cl_state_t state;
	cl_event_t event;
	int handles;
	sl_buf_t out; /* heads being built */
	char ip[INET6_ADDRSTRLEN];
	uint64_t head_start; /* loop ms: first byte of this request (or accept) */
	uint64_t last_read;  /* loop ms */
	uint64_t last_write; /* loop ms of the last write progress */
	uint64_t started_ns; /* uv_hrtime at the request head, for latency */
	uint64_t head_bytes; /* bytes of the current head so far */
	uint64_t body_bytes; /* request body bytes received */
	uint32_t served;     /* responses completed on this connection */
	int status;          /* status sent for the current request */
	sl_framing_t req_framing, resp_framing;
	bool admin_listener; /* accepted on the admin port */
	bool keep_alive;     /* this request allows another after it */
	bool reading;
	bool up_backlogged; /* the upstream's queue is full: stop reading */
	bool eof;
	bool request_done;
	bool response_started;
	bool interim_sent; /* a 1xx of this request reached the client */
	bool continue_sent;
	bool counted;          /* sl_metrics_begin called for this request */
	bool stale_retry_used; /* the free retry on a stale pooled connection */
	bool replay_ok;        /* every body byte sent so far is in `replay` */
	bool probe;            /* the circuit breaker's half-open probe */
	bool breaker_told;     /* the breaker has this request's verdict */
	int retries;           /* retries after backoff so far */
	sl_buf_t replay;       /* request body kept for a retry */
	uint64_t bytes_out;    /* response body bytes sent, for the access log */
	uint64_t queue_ns;     /* time spent in the admission queue */
	uint64_t upstream_ns;  /* uv_hrtime when the first attempt started */
	int attempts;
	bool connect;          /* the request is CONNECT: a tunnel if the upstream agrees */
	bool tunnel_up_eof;    /* tunnel: the upstream has sent everything */
	bool head_pending;     /* the response head waits in `out` for the first body bytes */
	bool req_head_pending; /* the request head waits in `out` for this read's body bytes */
	bool parsing;          /* inside do_parse: it sends a pending request head when done */
	bool shut;             /* uv_shutdown issued on the client connection */
	bool shut_done;        /* ... and completed */
	bool write_failed;     /* closing from the timer */
	bool has_slot;         /* this request holds an admission slot */
	bool drain_slot;       /* a finished response still flushing holds a slot */
};

static void do_parse(sl_client_t *c);
static void do_update_reading(sl_client_t *c);
static void do_close(sl_client_t *c);
static void do_linger(sl_client_t *c);
static void do_arm_timer(sl_client_t *c);
static void on_timer(uv_timer_t *t);
static void do_tunnel_read(sl_client_t *c, ssize_t nread);

/* ---- helpers --------------------------------------------------------------- */

static const sl_config_t *cfg_of(const sl_client_t *c)
{
	return c->w->cfg;
}

static uint64_t now_ms(const sl_client_t *c)
{
	return uv_now(&c->w->loop);
}

static sl_admit_t *admit_of(const sl_client_t *c)
{
	return &c->w->server->admit;
}

static size_t client_queue(const sl_client_t *c)
{
	return uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp);
}

static void on_written(uv_write_t *req, int status)
{
	sl_client_t *c = req->handle->data;
	sl_io_write_done(req);
	if (c->state == CL_CLOSED)
		return;
	if (status != 0) {
		do_close(c);
		return;
	}
	c->last_write = now_ms(c);
	if (c->up && client_queue(c) <= SL_LOW_WATER)
		sl_upstream_resume(c->up);
	if (c->drain_slot && client_queue(c) == 0) {
		c->drain_slot = false;
		sl_admit_release(admit_of(c));
	}
}

/* Writes to the client; returns true when its queue is past the high-water
 * mark. A failed write closes the connection on the next turn. */
static bool do_write(sl_client_t *c, const uv_buf_t *bufs, unsigned n)
{
	if (c->state == CL_CLOSED)
		return false;
	if (client_queue(c) == 0)
		c->last_write = now_ms(c);
	if (c->write_failed)
		return true;
	int err = sl_io_write((uv_stream_t *)&c->tcp, bufs, n, on_written, NULL);
	if (err != 0) {
		/* The client is gone. We may be inside the upstream's parser, so
		 * the connection closes from the timer on the next loop turn. */
		sl_debug("write to client %s failed: %s", c->ip, uv_strerror(err));
		c->write_failed = true;
		c->keep_alive = false;
		sl_deadline_set(&c->timer, 0, on_timer);
		return true;
	}
	return client_queue(c) > SL_HIGH_WATER;
}

/* Writes the pending response head (if any) and bufs in one system call:
 * a small response leaves in a single write rather than head, then body. */
static bool do_write_with_head(sl_client_t *c, const uv_buf_t *bufs, unsigned n)
{
	if (!c->head_pending)
		return do_write(c, bufs, n);
	uv_buf_t all[4];
	all[0] = uv_buf_init(c->out.base, (unsigned)c->out.len);
	for (unsigned i = 0; i < n && i < 3; i++)
		all[i + 1] = bufs[i];
	c->head_pending = false;
	bool backlogged = do_write(c, all, n + 1);
	c->out.len = 0;
	return backlogged;
}

static bool do_write_out(sl_client_t *c)
{
	uv_buf_t b = uv_buf_init(c->out.base, (unsigned)c->out.len);
	bool backlogged = do_write(c, &b, 1);
	c->out.len = 0;
	return backlogged;
}

/* The request's slot goes back (to the oldest waiter, if any). Slot held by a
 * response that is still flushing to a slow client: kept until it drains,
 * because a slot is held until the response has been relayed (SPEC §4). */
static void do_release_slot(sl_client_t *c, bool wait_for_flush)
{
	if (!c->has_slot)
		return;
	c->has_slot = false;
	if (wait_for_flush && client_queue(c) > 0 && !c->drain_slot) {
		c->drain_slot = true;
		return;
	}
	sl_admit_release(admit_of(c));
}

/* Tells the breaker how the upstream did for this request, once. A request
 * that ended for the client's reasons gives no verdict. */
static void do_tell_breaker(sl_client_t *c, bool upstream_ok)
{
	if (c->breaker_told)
		return;
	c->breaker_told = true;
	sl_server_t *s = c->w->server;
	if (sl_breaker_record(&s->breaker, upstream_ok, c->probe, now_ms(c))) {
		uint32_t n = sl_admit_reject_all(&s->admit);
		if (n)
			sl_info("released %u queued requests with 503 circuit_open", n);
	}
}

static const char *const outcome_names[] = {"success", "failed", "rejected"};

static void do_log_request(sl_client_t *c, const char *outcome)
{
	if (c->w->access_log.fd < 0)
		return;
	uint64_t now = uv_hrtime();
	size_t target_len;
	const char *target = sl_http_msg_target(&c->parser.msg, &target_len);
	sl_access_entry_t e = {
	    .client_ip = c->ip,
	    .method = sl_http_method_name(c->parser.msg.method),
	    .target = target,
	    .target_len = target_len,
	    .minor = c->parser.msg.minor,
	    .status = c->status,
	    .bytes = c->bytes_out,
	    .total_ms = (double)(now - c->started_ns) / 1e6,
	    .queue_ms = (double)c->queue_ns / 1e6,
	    .upstream_ms = c->upstream_ns ? (double)(now - c->upstream_ns) / 1e6 : 0,
	    .attempts = c->attempts,
	    .outcome = outcome,
	};
	sl_access_log_write(&c->w->access_log, &e);
}

/* The request ends as one SPEC §8 outcome; its slot is released. */
static void do_count_end(sl_client_t *c, sl_outcome_t outcome)
{
	if (c->probe && !c->breaker_told) {
		c->breaker_told = true;
		sl_breaker_abandon_probe(&c->w->server->breaker);
	}
	do_release_slot(c, c->state != CL_CLOSED);
	if (!c->counted)
		return;
	c->counted = false;
	sl_metrics_end(&c->w->metrics, outcome, c->status, now_ms(c));
	do_log_request(c, outcome_names[outcome]);
	uint64_t us = (uv_hrtime() - c->started_ns) / 1000;
	if (!c->connect) /* a tunnel's lifetime is not a response time */
		sl_metrics_latency(&c->w->metrics, us, now_ms(c));
	sl_debug("%s %s -> %d in %llu ms", c->ip, sl_http_method_name(c->parser.msg.method), c->status,
	         (unsigned long long)(us / 1000));
}

/* ---- local answers ----------------------------------------------------------- */

static const char *error_code(int status)
{
	switch (status) {
	case 400: return "bad_request";
	case 408: return "request_timeout";
	case 413: return "body_too_large";
	case 417: return "expectation_failed";
	case 431: return "header_too_large";
	case 501: return "not_implemented";
	case 502: return "bad_gateway";
	case 504: return "gateway_timeout";
	case 505: return "version_not_supported";
	default: return "error";
	}
}

/* Answers with a small JSON error. close: the request was not read whole (or
 * cannot be trusted), so the connection ends after the answer. */
static void do_respond_error(sl_client_t *c, int status, const char *detail, bool close)
{
	char body[512], text[256];
	sl_json_escape(detail ? detail : sl_http_reason(status), text, sizeof text);
	int n = snprintf(body, sizeof body, "{\"error\":\"%s\",\"status\":%d,\"message\":\"%s\"}\n", error_code(status),
	                 status, text);
	if (n < 0 || n >= (int)sizeof body)
		n = (int)strlen(body);
	c->status = status;
	if (close)
		c->keep_alive = false;
	c->out.len = 0;
	c->bytes_out = (uint64_t)n;
	sl_http1_build_local(status, "application/json", body, (size_t)n, c->keep_alive,
	                     (c->keep_alive && c->parser.msg.minor == 0) ? "Connection: keep-alive\r\n" : NULL,
	                     &c->out);
	do_write_out(c);
	c->response_started = true;
}

/* A 503 of SPEC §4, answered at once. A bodiless or small request is read to
 * its end and dropped so the connection stays usable; a large body is not
 * worth reading just to refuse it: the connection closes instead. */
static void do_reject(sl_client_t *c, sl_reject_t why)
{
	static const char *const messages[] = {
	    "too many requests are waiting for the upstream; retry later",
	    "the request waited too long for the upstream; retry later",
	    "the upstream is failing and requests are paused; retry later",
	};
	const sl_http_msg_t *req = &c->parser.msg;
	bool small = !req->chunked && req->content_length <= 65536;
	char body[256], headers[64];
	int n = snprintf(body, sizeof body, "{\"error\":\"%s\",\"status\":503,\"message\":\"%s\"}\n",
	                 sl_reject_name(why), messages[why]);
	uint32_t retry_after =
	    why == SL_REJECT_CIRCUIT_OPEN ? sl_breaker_retry_after(&c->w->server->breaker, now_ms(c)) : 1;
	snprintf(headers, sizeof headers, "Retry-After: %u\r\n%s", retry_after,
	         (small && c->keep_alive && req->minor == 0) ? "Connection: keep-alive\r\n" : "");
	if (!small)
		c->keep_alive = false;
	c->status = 503;
	c->bytes_out = (uint64_t)n;
	c->out.len = 0;
	sl_http1_build_local(503, "application/json", body, (size_t)n, c->keep_alive, headers, &c->out);
	do_write_out(c);
	c->response_started = true;
	if (c->counted) {
		c->counted = false;
		sl_metrics_rejected(&c->w->metrics, why, now_ms(c));
		do_log_request(c, sl_reject_name(why));
	}
	if (small) {
		c->state = CL_DISCARD;
		do_arm_timer(c);
	} else {
		do_linger(c);
	}
}

/* ---- request lifecycle -------------------------------------------------------- */

/* Back to reading the next request (keep-alive), or close. */
static void do_request_finished(sl_client_t *c)
{
	c->up = NULL;
	c->served++;
	if (!c->keep_alive || c->w->draining || !c->request_done || (c->eof && c->in_len == c->in_off)) {
		do_linger(c);
		return;
	}
	c->state = CL_HEAD;
	c->event = EV_NONE;
	c->head_bytes = c->body_bytes = 0;
	c->request_done = c->response_started = c->continue_sent = c->interim_sent = false;
	c->up_backlogged = false;
	c->head_start = c->last_read = now_ms(c);
	do_arm_timer(c);
	do_parse(c);
	if (c->state == CL_HEAD && c->eof) {
		do_linger(c); /* half-closed and nothing complete left to answer */
		return;
	}
	if (c->state == CL_HEAD && c->in_len == c->in_off && c->in) {
		/* Idle: give the buffers back; an idle connection costs none. */
		sl_worker_put_buffer(c->w, c->in);
		c->in = NULL;
		c->in_off = c->in_len = 0;
		sl_buf_dispose(&c->replay);
	}
	do_update_reading(c);
}

static void do_send_continue(sl_client_t *c)
{
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
	const sl_http_msg_t *req = &c->parser.msg;
	if (c->continue_sent || !req->expect_continue || c->request_done || (req->content_length <= 0 && !req->chunked))
		return;
	c->continue_sent = true;
	uv_buf_t b = uv_buf_init((char *)cont, sizeof cont - 1);
	do_write(c, &b, 1);
}

/* Bytes to the upstream, after the request head when it is still waiting:
 * a POST whose body came with its head leaves in one system call. */
static int do_send_up(sl_client_t *c, const uv_buf_t *bufs, unsigned n)
{
	if (!c->req_head_pending)
		return sl_upstream_send(c->up, bufs, n);
	c->req_head_pending = false;
	const sl_http_msg_t *req = &c->parser.msg;
	sl_up_expect_t expect = c->connect                 ? SL_UP_EXPECT_TUNNEL
	                        : req->method == HTTP_HEAD ? SL_UP_EXPECT_NO_BODY
	                                                   : SL_UP_EXPECT_BODY;
	int r = sl_upstream_send_head(c->up, c->out.base, c->out.len, bufs, n, expect);
	c->out.len = 0;
	return r;
}

/* Sends the request head now if no body bytes are coming in this turn. */
static void do_flush_request_head(sl_client_t *c)
{
	if (!c->req_head_pending)
		return;
	if (c->up == NULL || c->state != CL_FORWARD) {
		c->req_head_pending = false; /* the attempt was abandoned */
		return;
	}
	if (do_send_up(c, NULL, 0) > 0)
		c->up_backlogged = true;
}

/* Body bytes to the upstream, framed as the request head said. */
static int do_send_body(sl_client_t *c, const char *at, size_t len)
{
	if (c->req_framing == SL_FRAME_CHUNKED) {
		char size_line[24];
		int n = snprintf(size_line, sizeof size_line, "%zx\r\n", len);
		uv_buf_t bufs[3] = {uv_buf_init(size_line, (unsigned)n), uv_buf_init((char *)at, (unsigned)len),
		                    uv_buf_init((char *)"\r\n", 2)};
		return do_send_up(c, bufs, 3);
	}
	uv_buf_t b = uv_buf_init((char *)at, (unsigned)len);
	return do_send_up(c, &b, 1);
}

static void do_finish_request_body(sl_client_t *c)
{
	static const char last_chunk[] = "0\r\n\r\n";
	if (c->req_framing == SL_FRAME_CHUNKED) {
		uv_buf_t b = uv_buf_init((char *)last_chunk, sizeof last_chunk - 1);
		if (do_send_up(c, &b, 1) > 0)
			c->up_backlogged = true;
	} else {
		do_flush_request_head(c);
	}
	sl_upstream_request_done(c->up);
}

/* The upstream connection is ready: send the head, let the body flow. The
 * head goes out with the first body bytes (a retry's replayed body, or what
 * the parser finds in this read), or alone at the end of this turn. */
static void do_send_head(sl_client_t *c)
{
	const sl_http_msg_t *req = &c->parser.msg;
	c->state = CL_FORWARD;
	c->req_framing = sl_http1_request_framing(req);
	c->out.len = 0;
	sl_http1_build_request(req, c->ip, c->w->target_authority, c->req_framing, &c->out);
	c->req_head_pending = true;
	if (c->connect) {
		do_flush_request_head(c);
		/* Bytes after a CONNECT head belong to the tunnel: they wait in
		 * c->in until the upstream has said yes. */
		sl_upstream_request_done(c->up);
		do_update_reading(c);
		return;
	}
	if (c->replay.len > 0 && do_send_body(c, c->replay.base, c->replay.len) > 0) /* a retry */
		c->up_backlogged = true;
	if (c->request_done)
		do_finish_request_body(c);
	else
		do_send_continue(c);
	if (!c->parsing)
		do_flush_request_head(c);
	do_update_reading(c);
}

static void do_start_upstream(sl_client_t *c)
{
	c->attempts++;
	if (c->upstream_ns == 0)
		c->upstream_ns = uv_hrtime();
	c->state = CL_WAIT;
	c->up = sl_upstream_acquire(c->w, c);
	if (sl_upstream_is_ready(c->up))
		do_send_head(c);
	do_arm_timer(c);
}

/* A queued request got its answer from the admission queue. */
static void do_admitted(sl_client_t *c, sl_admit_result_t result)
{
	c->queue_ns = uv_hrtime() - c->waiter.queued_at;
	sl_metrics_queue_wait(&c->w->metrics, c->queue_ns / 1000, now_ms(c));
	if (result != SL_ADMIT_GRANTED) {
		do_reject(c, SL_REJECT_CIRCUIT_OPEN);
		return;
	}
	c->has_slot = true;
	do_start_upstream(c);
}

static void on_admitted(sl_admit_waiter_t *waiter, sl_admit_result_t result)
{
	sl_client_t *c = (sl_client_t *)((char *)waiter - offsetof(sl_client_t, waiter));
	do_admitted(c, result);
	if (c->state == CL_FORWARD || c->state == CL_DISCARD)
		do_parse(c);
	do_update_reading(c);
}

static bool is_admin_path(const sl_client_t *c)
{
	if (c->admin_listener)
		return true;
	if (cfg_of(c)->admin_port != 0)
		return false;
	size_t len;
	const char *t = sl_http_msg_target(&c->parser.msg, &len);
	return len >= 7 && memcmp(t, "/proxy-", 7) == 0;
}

static void do_request_head(sl_client_t *c)
{
	const sl_http_msg_t *req = &c->parser.msg;
	c->keep_alive = req->keep_alive && !c->w->draining;
	c->started_ns = uv_hrtime();
	c->status = 0;
	if (is_admin_path(c)) {
		c->state = CL_LOCAL;
		return;
	}
	int64_t max_body = cfg_of(c)->max_body_size;
	if (max_body > 0 && req->content_length > max_body) {
		do_respond_error(c, 413, "request body larger than max_body_size", true);
		do_linger(c);
		return;
	}
	c->counted = true;
	sl_metrics_begin(&c->w->metrics);
	c->connect = req->method == HTTP_CONNECT;
	if (c->connect)
		c->keep_alive = false; /* after anything but a tunnel, what follows may be tunnel bytes */
	c->tunnel_up_eof = false;
	c->retries = c->attempts = 0;
	c->bytes_out = c->queue_ns = c->upstream_ns = 0;
	c->stale_retry_used = c->breaker_told = false;
	c->replay_ok = true;
	c->replay.len = 0;
	sl_breaker_verdict_t verdict = sl_breaker_allow(&c->w->server->breaker, now_ms(c));
	c->probe = verdict == SL_BREAKER_PROBE;
	if (verdict == SL_BREAKER_REJECT) {
		do_reject(c, SL_REJECT_CIRCUIT_OPEN);
		return;
	}
	switch (sl_admit_acquire(admit_of(c), &c->waiter, &c->w->admit_inbox, on_admitted)) {
	case SL_ADMIT_GRANTED:
		c->has_slot = true;
		do_start_upstream(c);
		break;
	case SL_ADMIT_QUEUED:
		c->state = CL_QUEUED;
		do_arm_timer(c);
		break;
	default: do_reject(c, SL_REJECT_QUEUE_FULL); break;
	}
}

/* The whole request has been read. */
static void do_request_complete(sl_client_t *c)
{
	c->request_done = true;
	if (c->state == CL_DISCARD) {
		do_request_finished(c);
		return;
	}
	if (c->state == CL_LOCAL) {
		c->out.len = 0;
		sl_admin_respond(c->w, &c->parser.msg, c->keep_alive, &c->out);
		do_write_out(c);
		c->response_started = true;
		do_request_finished(c);
		return;
	}
	if (c->up && sl_upstream_is_ready(c->up))
		do_finish_request_body(c);
}

/* ---- parser callbacks (record and pause; act in do_parse) ----------------------- */

static int on_req_head(sl_http1_t *p)
{
	sl_client_t *c = p->data;
	c->event = EV_HEAD;
	return SL_HTTP1_PAUSE;
}

static int on_req_body(sl_http1_t *p, const char *at, size_t len)
{
	sl_client_t *c = p->data;
	c->body_bytes += len;
	if (c->state == CL_LOCAL || c->state == CL_DISCARD)
		return SL_HTTP1_CONTINUE;
	int64_t max_body = cfg_of(c)->max_body_size;
	if (max_body > 0 && c->body_bytes > (uint64_t)max_body)
		return sl_http1_fail(p, 413, "request body larger than max_body_size");
	if (c->state != CL_FORWARD || c->up == NULL)
		return SL_HTTP1_CONTINUE;
	if (c->replay_ok) {
		if (c->replay.len + len <= (uint64_t)cfg_of(c)->retry_buffer_size) {
			sl_buf_append(&c->replay, at, len);
		} else {
			c->replay_ok = false; /* too large to replay: no retry once sent */
			sl_buf_dispose(&c->replay);
		}
	}
	if (do_send_body(c, at, len) > 0)
		c->up_backlogged = true;
	return SL_HTTP1_CONTINUE;
}

static int on_req_complete(sl_http1_t *p)
{
	sl_client_t *c = p->data;
	c->event = EV_COMPLETE;
	return SL_HTTP1_PAUSE;
}

static const sl_http1_callbacks_t request_callbacks = {on_req_head, on_req_body, on_req_complete};

static void do_parse_error(sl_client_t *c)
{
	int status = c->parser.error_status ? c->parser.error_status : 400;
	sl_debug("bad request from %s: %d %s", c->ip, status, c->parser.error ? c->parser.error : "");
	if (c->up) {
		/* The upstream has part of a request: it must never see it end. */
		sl_upstream_abort(c->up);
		c->up = NULL;
	}
	if (!c->response_started)
		do_respond_error(c, status, c->parser.error, true);
	do_count_end(c, SL_OUTCOME_FAILED);
	do_linger(c);
}

static void do_parse_input(sl_client_t *c);

/* Runs the parser over buffered input for as long as the state allows; a
 * request head it released waits until then for body bytes to join it. */
static void do_parse(sl_client_t *c)
{
	bool nested = c->parsing;
	c->parsing = true;
	do_parse_input(c);
	if (nested)
		return;
	c->parsing = false;
	do_flush_request_head(c);
}

static void do_parse_input(sl_client_t *c)
{
	for (;;) {
		bool in_head = c->state == CL_HEAD;
		bool in_body = (c->state == CL_FORWARD || c->state == CL_LOCAL || c->state == CL_DISCARD) &&
		               !c->request_done && !(c->connect && c->state == CL_FORWARD);
		/* A paused parser may still owe an event with no byte left (the
		 * end of a bodiless message right after its head). */
		if ((!in_head && !in_body) || (c->in_off >= c->in_len && !c->parser.paused))
			break;
		size_t n;
		const char *at = c->in ? c->in + c->in_off : "";
		int r = sl_http1_execute(&c->parser, at, c->in_len - c->in_off, &n);
		c->in_off += (uint32_t)n;
		if (in_head)
			c->head_bytes += n;
		if (r == SL_HTTP1_ERROR) {
			do_parse_error(c);
			return;
		}
		if (r == SL_HTTP1_PAUSED) {
			cl_event_t ev = c->event;
			c->event = EV_NONE;
			if (ev == EV_HEAD)
				do_request_head(c);
			else if (ev == EV_COMPLETE)
				do_request_complete(c);
			if (c->state == CL_CLOSED || c->state == CL_LINGER)
				return;
		}
	}
	if (c->in_off == c->in_len)
		c->in_off = c->in_len = 0;
}

/* ---- reading ------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	sl_client_t *c = h->data;
	if (c->state == CL_LINGER) {
		buf->base = c->w->read_buf; /* discarded */
		buf->len = SL_READ_BUF_SIZE;
		return;
	}
	if (c->in == NULL)
		c->in = sl_worker_get_buffer(c->w);
	if (c->in_off > 0 && c->in_len == SL_CLIENT_BUF) {
		memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
		c->in_len -= c->in_off;
		c->in_off = 0;
	}
	buf->base = c->in + c->in_len;
	buf->len = SL_CLIENT_BUF - c->in_len;
}

static void do_client_gone(sl_client_t *c)
{
	if (c->up) {
		sl_upstream_abort(c->up);
		c->up = NULL;
	}
	do_count_end(c, SL_OUTCOME_FAILED);
	do_close(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	sl_client_t *c = s->data;
	if (c->state == CL_CLOSED || nread == 0)
		return;
	if (c->state == CL_LINGER) {
		if (nread == UV_EOF) {
			c->eof = true; /* close once the answer is out (on_shutdown) */
			uv_read_stop(s);
			c->reading = false;
			if (c->shut_done)
				do_close(c);
		} else if (nread < 0) {
			do_close(c);
		}
		return;
	}
	if (c->state == CL_TUNNEL) {
		do_tunnel_read(c, nread);
		return;
	}
	if (nread < 0) {
		c->eof = true;
		uv_read_stop(s);
		c->reading = false;
		/* The peer will send nothing more. A client that pipelined whole
		 * requests and half-closed still gets its answers; otherwise a
		 * request in progress is abandoned, so the upstream stops working
		 * for a client that has given up (and a partial head is dropped). */
		if (c->state != CL_HEAD && c->request_done && c->in_len > c->in_off)
			return;
		do_client_gone(c);
		return;
	}
	c->last_read = now_ms(c);
	if (c->state == CL_HEAD && c->head_bytes == 0 && c->in_len == c->in_off) {
		c->head_start = c->last_read;
		do_arm_timer(c);
	}
	c->in_len += (uint32_t)nread;
	do_parse(c);
	do_update_reading(c);
}

static void do_update_reading(sl_client_t *c)
{
	if (c->state == CL_CLOSED)
		return;
	bool room = c->in_len - c->in_off < SL_CLIENT_BUF;
	bool want = !c->eof && (c->state == CL_LINGER || (!c->up_backlogged && room));
	if (want && !c->reading)
		uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	else if (!want && c->reading)
		uv_read_stop((uv_stream_t *)&c->tcp);
	c->reading = want;
}

/* ---- timers ---------------------------------------------------------------------- */

static void do_arm_ms(sl_client_t *c, uint64_t ms)
{
	if (c->write_failed)
		return; /* the close is already due */
	sl_deadline_set(&c->timer, ms, on_timer);
}

/* What the connection is waiting for decides which timeout applies. */
static void do_arm_timer(sl_client_t *c)
{
	const sl_config_t *cfg = cfg_of(c);
	switch (c->state) {
	case CL_HEAD:
		if (c->served > 0 && c->head_bytes == 0 && c->in_len == c->in_off)
			do_arm_ms(c, sl_config_ms(cfg->client_idle_timeout));
		else
			do_arm_ms(c, sl_config_ms(cfg->client_header_timeout));
		break;
	case CL_LINGER: do_arm_ms(c, SL_LINGER_MS); break;
	case CL_QUEUED: do_arm_ms(c, sl_config_ms(cfg->queue_timeout)); break;
	case CL_BACKOFF: break; /* armed with the backoff delay by the funnel */
	case CL_CLOSED: break;
	default:
		do_arm_ms(c, sl_config_ms(cfg->client_idle_timeout < cfg->write_timeout ? cfg->client_idle_timeout
		                                                                        : cfg->write_timeout));
		break;
	}
}

static bool expired(const sl_client_t *c, uint64_t base, double limit_s)
{
	return now_ms(c) - base >= sl_config_ms(limit_s);
}

static void on_timer(uv_timer_t *t)
{
	sl_client_t *c = t->data;
	const sl_config_t *cfg = cfg_of(c);
	if (c->write_failed) {
		do_client_gone(c);
		return;
	}
	switch (c->state) {
	case CL_HEAD: {
		bool idle = c->served > 0 && c->head_bytes == 0 && c->in_len == c->in_off;
		if (idle) {
			if (expired(c, c->last_read > c->head_start ? c->last_read : c->head_start,
			            cfg->client_idle_timeout))
				do_close(c);
			else
				do_arm_timer(c);
		} else if (expired(c, c->head_start, cfg->client_header_timeout)) {
			do_respond_error(c, 408, "request head not received in time", true);
			do_linger(c);
		} else {
			do_arm_ms(c, sl_config_ms(cfg->client_header_timeout) - (now_ms(c) - c->head_start));
		}
		break;
	}
	case CL_QUEUED: {
		uint64_t waited = (uv_hrtime() - c->waiter.queued_at) / 1000000,
		         limit = sl_config_ms(cfg->queue_timeout);
		if (waited < limit) {
			do_arm_ms(c, limit - waited);
			break;
		}
		sl_admit_result_t r = sl_admit_cancel(admit_of(c), &c->waiter);
		if (r == SL_ADMIT_QUEUED) {
			c->queue_ns = waited * 1000000;
			sl_metrics_queue_wait(&c->w->metrics, waited * 1000, now_ms(c));
			do_reject(c, SL_REJECT_QUEUE_TIMEOUT);
		} else {
			do_admitted(c, r); /* a slot reached it just in time */
		}
		if (c->state == CL_FORWARD || c->state == CL_DISCARD)
			do_parse(c);
		do_update_reading(c);
		break;
	}
	case CL_TUNNEL:
		if (client_queue(c) > 0 && expired(c, c->last_write, cfg->write_timeout)) {
			do_count_end(c, SL_OUTCOME_FAILED);
			do_close(c);
		} else {
			do_arm_ms(c, sl_config_ms(cfg->write_timeout));
		}
		break;
	case CL_BACKOFF:
		do_start_upstream(c);
		if (c->state == CL_FORWARD)
			do_parse(c);
		do_update_reading(c);
		break;
	case CL_WAIT:
	case CL_FORWARD:
	case CL_LOCAL:
	case CL_DISCARD:
		if (client_queue(c) > 0 && expired(c, c->last_write, cfg->write_timeout)) {
			sl_debug("client %s stalled reading the response", c->ip);
			do_client_gone(c);
		} else if (!c->request_done && !c->up_backlogged && c->state != CL_WAIT &&
		           expired(c, c->last_read, cfg->client_idle_timeout)) {
			/* The client stopped sending its body. */
			if (c->up) {
				sl_upstream_abort(c->up);
				c->up = NULL;
			}
			if (!c->response_started)
				do_respond_error(c, 408, "request body not received in time", true);
			do_count_end(c, SL_OUTCOME_FAILED);
			do_linger(c);
		} else {
			do_arm_timer(c);
		}
		break;
	case CL_LINGER: do_close(c); break;
	case CL_CLOSED: break;
	}
}

/* ---- closing ---------------------------------------------------------------------- */

static void on_closed(uv_handle_t *h)
{
	sl_client_t *c = h->data;
	if (--c->handles > 0)
		return;
	sl_worker_t *w = c->w;
	sl_http1_dispose(&c->parser);
	sl_buf_dispose(&c->out);
	sl_buf_dispose(&c->replay);
	if (c->in)
		sl_worker_put_buffer(w, c->in);
	free(c);
	w->nclients--;
	atomic_fetch_sub_explicit(&w->server->connections, 1, memory_order_relaxed);
	sl_worker_maybe_finish(w);
}

static void do_close(sl_client_t *c)
{
	if (c->state == CL_CLOSED)
		return;
	if (c->up) {
		sl_upstream_abort(c->up);
		c->up = NULL;
	}
	if (c->state == CL_QUEUED && sl_admit_cancel(admit_of(c), &c->waiter) == SL_ADMIT_GRANTED)
		c->has_slot = true; /* handed over as the client left: give it back */
	do_count_end(c, SL_OUTCOME_FAILED);
	if (c->drain_slot) {
		c->drain_slot = false;
		sl_admit_release(admit_of(c));
	}
	c->state = CL_CLOSED;
	sl_list_remove(&c->link);
	uv_close((uv_handle_t *)&c->timer.timer, on_closed);
	uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	sl_client_t *c = req->data;
	c->shut_done = true;
	if (c->state == CL_CLOSED)
		return;
	/* Everything written is out; a lingering connection whose peer has
	 * also finished can go now. */
	if (status != 0 || (c->state == CL_LINGER && c->eof))
		do_close(c);
}

/* FIN to the client once what is queued has been written (once only). */
static bool do_shutdown_write(sl_client_t *c)
{
	if (c->shut)
		return true;
	c->shut = true;
	c->shutdown_req.data = c;
	return uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) == 0;
}

/* Final answer written: send FIN after it, then drain input briefly, so
 * the peer reads the answer rather than a reset. */
static void do_linger(sl_client_t *c)
{
	if (c->state == CL_CLOSED || c->state == CL_LINGER)
		return;
	if (c->up) {
		sl_upstream_abort(c->up);
		c->up = NULL;
	}
	c->state = CL_LINGER;
	if (!do_shutdown_write(c) || (c->shut_done && c->eof)) {
		do_close(c);
		return;
	}
	do_arm_timer(c);
	do_update_reading(c);
}

/* ---- CONNECT tunnels -------------------------------------------------------------- */

/* Bytes read from the client go to the upstream as they are. */
static void do_tunnel_forward(sl_client_t *c)
{
	if (c->up && c->in_len > c->in_off) {
		uv_buf_t b = uv_buf_init(c->in + c->in_off, c->in_len - c->in_off);
		if (sl_upstream_send(c->up, &b, 1) > 0)
			c->up_backlogged = true;
	}
	c->in_off = c->in_len = 0;
}

/* Both sides have closed their direction: the tunnel is done. */
static void do_tunnel_end(sl_client_t *c)
{
	do_count_end(c, SL_OUTCOME_SUCCESS);
	do_linger(c);
}

static void do_tunnel_read(sl_client_t *c, ssize_t nread)
{
	if (nread < 0) {
		c->eof = true;
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = false;
		if (nread != UV_EOF) { /* reset: nothing more to relay either way */
			do_count_end(c, SL_OUTCOME_SUCCESS);
			do_close(c);
			return;
		}
		if (c->up)
			sl_upstream_shutdown(c->up); /* pass the half-close on */
		if (c->tunnel_up_eof)
			do_tunnel_end(c);
		return;
	}
	c->last_read = now_ms(c);
	c->in_len += (uint32_t)nread;
	do_tunnel_forward(c);
	do_update_reading(c);
}

void sl_client_on_tunnel_open(sl_client_t *c)
{
	c->state = CL_TUNNEL;
	c->request_done = true;
	do_arm_timer(c);
	do_tunnel_forward(c); /* what the client sent after its CONNECT head */
	do_update_reading(c);
}

void sl_client_on_tunnel_eof(sl_client_t *c)
{
	c->tunnel_up_eof = true;
	if (!do_shutdown_write(c)) {
		do_count_end(c, SL_OUTCOME_SUCCESS);
		do_close(c);
		return;
	}
	if (c->eof)
		do_tunnel_end(c);
}

/* ---- upstream events ------------------------------------------------------------- */

void sl_client_on_upstream_ready(sl_client_t *c)
{
	do_send_head(c);
	if (c->state == CL_FORWARD)
		do_parse(c);
	do_update_reading(c);
}

void sl_client_on_upstream_info(sl_client_t *c, const sl_http_msg_t *resp)
{
	/* Every interim answer goes on, in order, to a client that can parse
	 * one (RFC 9110 §15.2); none to HTTP/1.0. A 100 Continue after sluice
	 * sent its own would only repeat it. */
	if (c->parser.msg.minor == 0 || (resp->status == 100 && c->continue_sent))
		return;
	c->out.len = 0;
	sl_http1_build_response(resp, &c->parser.msg, SL_FRAME_NONE, true, &c->out);
	do_write_out(c);
	c->response_started = true; /* bytes of this exchange reached the client: no retry now */
	c->interim_sent = true;
}

/* The facts of a failed attempt, for the failure funnel (retry.c). */
static sl_attempt_t attempt_of(const sl_client_t *c, sl_up_error_t kind, int status, bool reused, bool written)
{
	sl_attempt_t a = {
	    .kind = kind,
	    .status = status,
	    .reused = reused,
	    .request_written = written,
	    .response_relayed = c->response_started,
	    .idempotent = sl_retry_is_idempotent(c->parser.msg.method),
	    .body_replayable = c->replay_ok,
	    .stale_retry_used = c->stale_retry_used,
	    .retries_done = c->retries,
	};
	return a;
}

int sl_client_on_upstream_head(sl_client_t *c, const sl_http_msg_t *resp)
{
	const sl_http_msg_t *req = &c->parser.msg;
	if (resp->status == 502 || resp->status == 503 || resp->status == 504) {
		/* The upstream says it failed: try again rather than relay, if the
		 * funnel allows (it will decide the same way in on_upstream_error). */
		sl_attempt_t a = attempt_of(c, SL_UP_ERROR_STATUS, resp->status, false, true);
		if (sl_retry_decide(cfg_of(c), &a, 0.5).action != SL_RETRY_ANSWER)
			return -1;
	}
	/* The verdict is in before any byte of the answer reaches the client,
	 * so a client that reacts to it already meets the breaker's new state. */
	do_tell_breaker(c, !sl_retry_is_upstream_failure(SL_UP_ERROR_STATUS, resp->status));
	c->status = resp->status;
	if (c->connect && resp->status < 300) {
		c->resp_framing = SL_FRAME_CLOSE; /* raw bytes follow */
		c->out.len = 0;
		sl_http1_build_response(resp, req, SL_FRAME_NONE, true, &c->out);
		c->response_started = true;
		if (do_write_out(c) && c->up)
			sl_upstream_pause(c->up);
		return 0;
	}
	/* The framing the client gets is the one the parser established; a
	 * Content-Length on HEAD and 304 answers describes the resource. */
	if (resp->status == 204)
		c->resp_framing = SL_FRAME_NONE;
	else if (req->method == HTTP_HEAD || resp->status == 304 || resp->content_length >= 0)
		c->resp_framing = SL_FRAME_LENGTH;
	else if (req->minor >= 1)
		c->resp_framing = SL_FRAME_CHUNKED;
	else
		c->resp_framing = SL_FRAME_CLOSE;
	if (c->resp_framing == SL_FRAME_CLOSE || !c->request_done || c->w->draining)
		c->keep_alive = false;
	c->out.len = 0;
	sl_http1_build_response(resp, req, c->resp_framing, c->keep_alive, &c->out);
	c->response_started = true;
	c->head_pending = true; /* written with the first body bytes, or at the end of this read */
	return 0;
}

void sl_client_flush(sl_client_t *c)
{
	if (c->head_pending && do_write_with_head(c, NULL, 0) && c->up)
		sl_upstream_pause(c->up);
}

bool sl_client_on_upstream_body(sl_client_t *c, const char *at, size_t len)
{
	c->bytes_out += len;
	if (c->resp_framing == SL_FRAME_CHUNKED) {
		char size_line[24];
		int n = snprintf(size_line, sizeof size_line, "%zx\r\n", len);
		uv_buf_t bufs[3] = {uv_buf_init(size_line, (unsigned)n), uv_buf_init((char *)at, (unsigned)len),
		                    uv_buf_init((char *)"\r\n", 2)};
		return do_write_with_head(c, bufs, 3);
	}
	uv_buf_t b = uv_buf_init((char *)at, (unsigned)len);
	return do_write_with_head(c, &b, 1);
}

void sl_client_on_upstream_done(sl_client_t *c)
{
	static const char last_chunk[] = "0\r\n\r\n";
	c->up = NULL;
	if (c->resp_framing == SL_FRAME_CHUNKED) {
		uv_buf_t b = uv_buf_init((char *)last_chunk, sizeof last_chunk - 1);
		do_write_with_head(c, &b, 1);
	} else {
		do_write_with_head(c, NULL, 0);
	}
	do_tell_breaker(c, !sl_retry_is_upstream_failure(SL_UP_ERROR_STATUS, c->status));
	do_count_end(c, c->status < 500 ? SL_OUTCOME_SUCCESS : SL_OUTCOME_FAILED);
	do_request_finished(c);
}

/* The client end of the failure funnel: retry, or give the final answer. */
void sl_client_on_upstream_error(sl_client_t *c, const sl_up_failure_t *f)
{
	c->up = NULL;
	if (c->head_pending) {
		/* A head whose answer failed before any of it was written (a
		 * framing error right behind it): the client gets a clean answer
		 * (or a retry). */
		c->head_pending = false;
		c->out.len = 0;
		c->response_started = c->interim_sent;
	}
	sl_debug("upstream %s for %s (attempt %d): %s", sl_up_error_name(f->kind), c->ip, c->retries + 1,
	         f->uv_err ? uv_strerror(f->uv_err) : "");
	sl_attempt_t a = attempt_of(c, f->kind, f->status, f->reused, f->request_written);
	sl_retry_verdict_t v = sl_retry_decide(cfg_of(c), &a, sl_worker_random(c->w));
	switch (v.action) {
	case SL_RETRY_NOW:
		c->stale_retry_used = true;
		sl_metrics_retry(&c->w->metrics); /* an extra attempt, if a free one */
		do_start_upstream(c);
		return;
	case SL_RETRY_BACKOFF:
		c->retries++;
		sl_metrics_retry(&c->w->metrics);
		c->state = CL_BACKOFF;
		do_arm_ms(c, v.delay_ms);
		return;
	case SL_RETRY_ANSWER: break;
	}
	do_tell_breaker(c, !sl_retry_is_upstream_failure(f->kind, f->status));
	if (c->state == CL_TUNNEL) {
		/* An open tunnel that idled out or was reset upstream has done its
		 * job: like a client's reset, that ends it, not fails it. */
		do_count_end(c, SL_OUTCOME_SUCCESS);
		do_close(c);
		return;
	}
	if (c->response_started) {
		/* Part of the response is out: the only honest signal left is to
		 * cut the connection, so the client sees a truncated message. */
		do_count_end(c, SL_OUTCOME_FAILED);
		do_close(c);
		return;
	}
	bool timeout = v.status == 504;
	do_respond_error(c, v.status, timeout ? "upstream timed out" : "upstream failed", !c->request_done);
	do_count_end(c, SL_OUTCOME_FAILED);
	if (c->request_done)
		do_request_finished(c);
	else
		do_linger(c);
}

void sl_client_on_upstream_drain(sl_client_t *c)
{
	if (!c->up_backlogged)
		return;
	c->up_backlogged = false;
	do_parse(c);
	do_update_reading(c);
}

/* ---- accepting and draining ---------------------------------------------------- */

void sl_client_accept(sl_worker_t *w, uv_stream_t *listener, bool admin)
{
	sl_client_t *c = sl_calloc(1, sizeof *c);
	c->w = w;
	uv_tcp_init(&w->loop, &c->tcp);
	sl_deadline_init(&c->timer, &w->loop, c);
	c->tcp.data = c;
	c->handles = 2;
	c->admin_listener = admin;
	sl_list_insert_tail(&w->clients, &c->link);
	w->nclients++;
	int held = atomic_fetch_add_explicit(&w->server->connections, 1, memory_order_relaxed);
	if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0 || held >= w->cfg->max_connections) {
		c->state = CL_HEAD;
		do_close(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	struct sockaddr_storage peer;
	int len = sizeof peer;
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&peer, &len) == 0) {
		if (peer.ss_family == AF_INET6)
			uv_ip6_name((struct sockaddr_in6 *)&peer, c->ip, sizeof c->ip);
		else
			uv_ip4_name((struct sockaddr_in *)&peer, c->ip, sizeof c->ip);
	} else {
		strcpy(c->ip, "unknown");
	}
	sl_http1_init(&c->parser, true, &request_callbacks, c, (size_t)w->cfg->max_header_size);
	c->parser.max_body = w->cfg->max_body_size;
	c->state = CL_HEAD;
	c->head_start = c->last_read = now_ms(c);
	do_arm_timer(c);
	do_update_reading(c);
}

void sl_client_drain_all(sl_worker_t *w, bool force)
{
	sl_list_t *pos, *tmp;
	sl_list_foreach_safe(pos, tmp, &w->clients)
	{
		sl_client_t *c = sl_list_entry(pos, sl_client_t, link);
		if (force || (c->state == CL_HEAD && c->head_bytes == 0 && c->in_len == c->in_off))
			do_close(c);
		else
			c->keep_alive = false;
	}
}
