/* client.c — see client.h.
 *
 * The state table. Every state of a connection (client-t.h) has a row:
 * what its timer means, what reading means (parse, relay a tunnel, or
 * discard while lingering), how the client's EOF is taken, and which states
 * may follow. Events dispatch through the row; nothing switches over flags
 * to find out where a connection is.
 *
 * Input: c->in holds bytes read but not yet parsed. The parser stops (pauses)
 * at the end of each head and each message, so pipelined requests wait there
 * in order, and the body of a request waiting for an upstream stays unread.
 * Reading stops when c->in is full or the upstream is backlogged, which is
 * what bounds memory per connection whatever the body size.
 *
 * Memory: an idle keep-alive connection holds only its sl_client_t. The
 * input buffer and the sl_request_t (parser, heads, replay buffer, waiter)
 * come from the worker's free lists when a request's first byte arrives and
 * go back when the connection is idle again.
 *
 * Nothing here frees the connection inside a parser callback: the callbacks
 * record an event and pause; the parse loop acts once the parser returned.
 *
 * TLS (--tls-cert): the connection's stream (tls.h) sits between the socket
 * and c->in. Ciphertext is read into the worker's scratch buffer and fed in;
 * plaintext is decrypted into c->in as far as it has room and goes to the
 * state's read handler exactly as plain bytes do. What does not fit waits in
 * the stream; when room comes back (sl_client_update_reading) it is
 * decrypted from the next loop turn (sl_worker_defer), before new reads.
 * Writes are encrypted and flushed through sl_io_write, so the write queue
 * is the backpressure for both. The handshake runs within
 * client_header_timeout; a failed one closes the connection and is counted.
 */
#include "client.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "io.h"
#include "log.h"
#include "stat.h"
#include "tls.h"
#include "worker.h"

#define SL_LINGER_MS 2000

static void on_timer(uv_timer_t *t);
static void do_close_now(sl_client_t *c);

/* A write failed: the client is gone. A request in progress is abandoned
 * (its answer drained or its upstream connection closed); else just close. */
static void do_client_gone(sl_client_t *c)
{
	if (c->req && !c->req->r.ended && c->req->r.counted && c->state != CL_CLOSED)
		sl_forward_abandon(c, SL_OUTCOME_CLIENT_CLOSED);
	else
		do_close_now(c);
}

/* ---- the state table ------------------------------------------------------ */

static void head_timer(sl_client_t *c);
static void head_eof(sl_client_t *c, ssize_t err);
static void head_arm(sl_client_t *c);
static void body_arm(sl_client_t *c);
static void discard_timer(sl_client_t *c);
static void linger_timer(sl_client_t *c);
static void linger_eof(sl_client_t *c, ssize_t err);
static void linger_arm(sl_client_t *c);
static void no_arm(sl_client_t *c);
static void closed_eof(sl_client_t *c, ssize_t err);
static void parse_read(sl_client_t *c, ssize_t nread);
static void linger_read(sl_client_t *c, ssize_t nread);

typedef struct cl_state_ops {
	const char *name;
	void (*timer)(sl_client_t *c);            /* the connection's timer fired */
	void (*arm)(sl_client_t *c);              /* set the timer for this state's timeout */
	void (*read)(sl_client_t *c, ssize_t n);  /* n bytes were appended to c->in (n > 0) */
	void (*eof)(sl_client_t *c, ssize_t err); /* the client sent EOF (UV_EOF) or failed */
	uint16_t next;                            /* states that may follow (bit per state) */
} cl_state_ops_t;

#define TO(s) (1u << (s))
#define ANY_END (TO(CL_HEAD) | TO(CL_DISCARD) | TO(CL_LINGER) | TO(CL_CLOSED))

static const cl_state_ops_t states[CL_NSTATES] = {
    [CL_HEAD] = {"head", head_timer, head_arm, parse_read, head_eof,
                 TO(CL_LOCAL) | TO(CL_QUEUED) | TO(CL_WAIT) | ANY_END},
    [CL_LOCAL] = {"local", sl_forward_body_timer, body_arm, parse_read, sl_forward_client_eof, ANY_END},
    [CL_QUEUED] = {"queued", sl_forward_queued_timer, sl_forward_queued_arm, parse_read, sl_forward_client_eof,
                   TO(CL_WAIT) | ANY_END},
    [CL_WAIT] = {"wait", sl_forward_body_timer, body_arm, parse_read, sl_forward_client_eof,
                 TO(CL_FORWARD) | TO(CL_BACKOFF) | TO(CL_WAIT) | ANY_END},
    [CL_BACKOFF] = {"backoff", sl_forward_backoff_timer, no_arm, parse_read, sl_forward_client_eof,
                    TO(CL_WAIT) | ANY_END},
    [CL_FORWARD] = {"forward", sl_forward_body_timer, body_arm, parse_read, sl_forward_client_eof,
                    TO(CL_WAIT) | TO(CL_BACKOFF) | TO(CL_TUNNEL) | ANY_END},
    [CL_TUNNEL] = {"tunnel", sl_forward_tunnel_timer, sl_forward_tunnel_arm, sl_forward_tunnel_read,
                   sl_forward_tunnel_read, TO(CL_LINGER) | TO(CL_CLOSED)},
    [CL_DISCARD] = {"discard", discard_timer, body_arm, parse_read, closed_eof, ANY_END},
    [CL_LINGER] = {"linger", linger_timer, linger_arm, linger_read, linger_eof, TO(CL_CLOSED)},
    [CL_CLOSED] = {"closed", NULL, no_arm, NULL, NULL, 0},
};

void sl_client_set_state(sl_client_t *c, cl_state_t s)
{
#ifndef NDEBUG
	if (c->state != s && !(states[c->state].next & TO(s))) {
		sl_error("client state %s -> %s is not a transition", states[c->state].name, states[s].name);
		abort();
	}
#endif
	c->state = (uint8_t)s;
}

/* ---- helpers --------------------------------------------------------------- */

static const sl_config_t *cfg_of(const sl_client_t *c)
{
	return c->w->cfg;
}

uint64_t sl_client_now(const sl_client_t *c)
{
	return uv_now(&c->w->loop);
}

size_t sl_client_queue(const sl_client_t *c)
{
	return uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp);
}

static bool is_idle(const sl_client_t *c)
{
	/* nothing buffered, and nothing of a head parsed */
	return c->in_len == c->in_off && (c->req == NULL || c->req->parser.head_len == 0);
}

static void on_written(uv_write_t *req, int status)
{
	sl_client_t *c = req->handle->data;
	sl_io_write_done(req);
	if (c->state == CL_CLOSED)
		return;
	if (status != 0) {
		do_client_gone(c);
		return;
	}
	c->last_write = sl_client_now(c);
	sl_request_t *q = c->req;
	if (q && q->a.up && sl_client_queue(c) <= SL_LOW_WATER)
		sl_upstream_resume(q->a.up);
	if (c->flushing_slots && sl_client_queue(c) == 0)
		sl_forward_release_flushing(c);
}

bool sl_client_write(sl_client_t *c, const uv_buf_t *bufs, unsigned n)
{
	if (c->state == CL_CLOSED)
		return false;
	if (sl_client_queue(c) == 0)
		c->last_write = sl_client_now(c);
	if (c->write_failed)
		return true;
	int err;
	if (c->tls) {
		err = !sl_tls_handshake_done(c->tls) || sl_tls_write(c->tls, bufs, n) != 0
		          ? UV_EPROTO
		          : sl_tls_flush(c->tls, (uv_stream_t *)&c->tcp, on_written, NULL);
		c->w->tls_out.len = 0; /* nothing of a failed write is left for another stream */
	} else {
		err = sl_io_write((uv_stream_t *)&c->tcp, bufs, n, on_written, NULL);
	}
	if (err != 0) {
		/* The client is gone. We may be inside the upstream's parser, so
		 * the connection closes from the timer on the next loop turn. */
		sl_debug("write to client %s failed: %s", c->req ? c->req->ip : "?", uv_strerror(err));
		c->write_failed = true;
		if (c->req)
			c->req->r.keep_alive = false;
		sl_deadline_set(&c->timer, 0, on_timer);
		return true;
	}
	return sl_client_queue(c) > SL_HIGH_WATER;
}

bool sl_client_write_out(sl_client_t *c)
{
	sl_buf_t *out = &c->req->out;
	uv_buf_t b = uv_buf_init(out->base, (unsigned)out->len);
	bool backlogged = sl_client_write(c, &b, 1);
	out->len = 0;
	return backlogged;
}

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

void sl_client_respond_error(sl_client_t *c, int status, const char *detail, bool close)
{
	sl_request_t *q = c->req;
	char body[512], text[256];
	sl_json_escape(detail ? detail : sl_http_reason(status), text, sizeof text);
	int n = snprintf(body, sizeof body, "{\"error\":\"%s\",\"status\":%d,\"message\":\"%s\"}\n", error_code(status),
	                 status, text);
	if (n < 0 || n >= (int)sizeof body)
		n = (int)strlen(body);
	q->r.status = status;
	if (close)
		q->r.keep_alive = false;
	q->out.len = 0;
	q->r.bytes_out = (uint64_t)n;
	sl_http1_build_local(status, "application/json", body, (size_t)n, q->r.keep_alive,
	                     (q->r.keep_alive && q->parser.msg.minor == 0) ? "Connection: keep-alive\r\n" : NULL,
	                     &q->out);
	sl_client_write_out(c);
	q->r.response_started = true;
}

/* ---- the request's memory ------------------------------------------------- */

static const sl_http1_callbacks_t request_callbacks;

/* The peer's address as text. IPv4 by hand: inet_ntop goes through
 * snprintf, which cost more than the rest of a request's bookkeeping. */
static void do_format_peer(const sl_client_t *c, char *out, size_t len)
{
	if (c->peer.sin6_family == AF_INET) {
		const uint8_t *a = (const uint8_t *)&((const struct sockaddr_in *)&c->peer)->sin_addr;
		char *w = out;
		for (int i = 0; i < 4; i++) {
			unsigned v = a[i];
			if (v >= 100)
				*w++ = (char)('0' + v / 100);
			if (v >= 10)
				*w++ = (char)('0' + v / 10 % 10);
			*w++ = (char)('0' + v % 10);
			*w++ = i < 3 ? '.' : '\0';
		}
	} else if (c->peer.sin6_family != AF_INET6 || uv_ip6_name(&c->peer, out, len) != 0) {
		snprintf(out, len, "unknown");
	}
}

/* A request struct for c, from the worker's free list, with the parser
 * ready for a head and the client's address written out. */
static sl_request_t *do_take_request(sl_client_t *c)
{
	sl_worker_t *w = c->w;
	sl_request_t *q;
	if (w->nfree_reqs > 0) {
		q = w->free_reqs[--w->nfree_reqs];
		q->parser.data = c;
		q->parser.max_head = (size_t)cfg_of(c)->max_header_size;
		sl_http1_reset(&q->parser);
	} else {
		q = sl_calloc(1, sizeof *q);
		sl_http1_init(&q->parser, true, &request_callbacks, c, (size_t)cfg_of(c)->max_header_size);
	}
	q->parser.max_body = cfg_of(c)->max_body_size;
	memset(&q->r, 0, sizeof q->r);
	memset(&q->a, 0, sizeof q->a);
	q->out.len = q->replay.len = 0;
	uint32_t v4 = c->peer.sin6_family == AF_INET ? ((const struct sockaddr_in *)&c->peer)->sin_addr.s_addr : 0;
	if (v4 == 0 || q->ip_of != v4) { /* most connections come from a few addresses */
		do_format_peer(c, q->ip, sizeof q->ip);
		q->ip_of = v4;
	}
	return q;
}

static void do_free_request(sl_request_t *q)
{
	sl_http1_dispose(&q->parser);
	sl_buf_dispose(&q->out);
	sl_buf_dispose(&q->replay);
	free(q);
}

/* The connection is idle (or closed): its request struct and input buffer
 * go back to the worker. A large replay buffer is not kept. */
static void do_put_request(sl_client_t *c)
{
	sl_worker_t *w = c->w;
	if (c->in) {
		sl_worker_put_buffer(w, c->in);
		c->in = NULL;
		c->in_off = c->in_len = 0;
	}
	sl_request_t *q = c->req;
	if (!q)
		return;
	c->req = NULL;
	if (q->replay.cap > 2 * SL_CLIENT_BUF)
		sl_buf_dispose(&q->replay);
	if (w->nfree_reqs < SL_FREE_REQS)
		w->free_reqs[w->nfree_reqs++] = q;
	else
		do_free_request(q);
}

void sl_client_free_requests(sl_worker_t *w)
{
	while (w->nfree_reqs > 0)
		do_free_request(w->free_reqs[--w->nfree_reqs]);
}

/* ---- timers ------------------------------------------------------------------ */

void sl_client_arm(sl_client_t *c, uint64_t ms)
{
	if (c->write_failed)
		return; /* the close is already due */
	sl_deadline_set(&c->timer, ms, on_timer);
}

void sl_client_arm_within(sl_client_t *c, uint64_t ms)
{
	if (!c->write_failed)
		sl_deadline_cap(&c->timer, ms, on_timer);
}

void sl_client_rearm(sl_client_t *c)
{
	states[c->state].arm(c);
}

static void on_timer(uv_timer_t *t)
{
	sl_client_t *c = t->data;
	if (c->write_failed) {
		do_client_gone(c);
		return;
	}
	if (states[c->state].timer)
		states[c->state].timer(c);
}

static void no_arm(sl_client_t *c)
{
	(void)c; /* BACKOFF: armed with the delay by the funnel; CLOSED: nothing */
}

static void head_arm(sl_client_t *c)
{
	const sl_config_t *cfg = cfg_of(c);
	bool idle = c->served && is_idle(c);
	sl_client_arm(c, sl_config_ms(idle ? cfg->client_idle_timeout : cfg->client_header_timeout));
}

static void head_timer(sl_client_t *c)
{
	const sl_config_t *cfg = cfg_of(c);
	if (c->served && is_idle(c)) {
		uint64_t since = sl_ms_between(c->head_start, c->last_read) > 0 ? c->last_read : c->head_start;
		if (sl_deadline_passed(&c->timer, since, sl_config_ms(cfg->client_idle_timeout), on_timer))
			do_close_now(c);
	} else if (sl_deadline_passed(&c->timer, c->head_start, sl_config_ms(cfg->client_header_timeout), on_timer)) {
		if (c->req == NULL) { /* nothing of a request arrived: nobody to answer */
			if (c->tls && c->tls_fed && !sl_tls_handshake_done(c->tls))
				SL_BUMP(c->w->tls_handshake_failures, 1); /* a handshake that stalled */
			do_close_now(c);
			return;
		}
		sl_client_respond_error(c, 408, "request head not received in time", true);
		sl_client_linger(c);
	}
}

/* While a body may still be coming: a stalled write, or a body that stopped. */
static void body_arm(sl_client_t *c)
{
	const sl_config_t *cfg = cfg_of(c);
	double s = cfg->client_idle_timeout < cfg->write_timeout ? cfg->client_idle_timeout : cfg->write_timeout;
	sl_client_arm(c, sl_config_ms(s));
}

/* DISCARD: answered already; what is left is a stalled peer. */
static void discard_timer(sl_client_t *c)
{
	const sl_config_t *cfg = cfg_of(c);
	if (sl_client_queue(c) > 0 &&
	    sl_ms_left(sl_client_now(c), c->last_write, sl_config_ms(cfg->write_timeout)) == 0)
		do_close_now(c);
	else if (sl_ms_left(sl_client_now(c), c->last_read, sl_config_ms(cfg->client_idle_timeout)) == 0)
		sl_client_linger(c);
	else
		body_arm(c);
}

static void linger_arm(sl_client_t *c)
{
	sl_client_arm(c, SL_LINGER_MS);
}

static void linger_timer(sl_client_t *c)
{
	sl_forward_settle(c, true); /* no reset came: it had what it asked for */
	do_close_now(c);
}

/* ---- parsing ------------------------------------------------------------------ */

static int on_req_head(sl_http1_t *p)
{
	sl_client_t *c = p->data;
	c->req->event = EV_HEAD;
	return SL_HTTP1_PAUSE;
}

static int on_req_body(sl_http1_t *p, const char *at, size_t len)
{
	return sl_forward_body(p->data, at, len);
}

static int on_req_complete(sl_http1_t *p)
{
	sl_client_t *c = p->data;
	c->req->event = EV_COMPLETE;
	return SL_HTTP1_PAUSE;
}

static const sl_http1_callbacks_t request_callbacks = {on_req_head, on_req_body, on_req_complete};

static void do_parse_error(sl_client_t *c)
{
	sl_request_t *q = c->req;
	int status = q->parser.error_status ? q->parser.error_status : 400;
	sl_debug("bad request from %s: %d %s", q->ip, status, q->parser.error ? q->parser.error : "");
	if (!q->r.response_started)
		sl_client_respond_error(c, status, q->parser.error, true);
	if (c->state == CL_HEAD || c->state == CL_DISCARD || c->state == CL_LOCAL)
		sl_client_linger(c); /* nothing was counted, or it ended already */
	else {                       /* the upstream has part of a request: it must never see it end */
		q->r.error = SL_EK_BAD_REQUEST;
		sl_forward_end(c, SL_OUTCOME_FAILED, 0, q->r.response_started ? SL_END_CUT : SL_END_ANSWERED);
	}
}

static bool in_body(const sl_client_t *c)
{
	const sl_request_t *q = c->req;
	switch (c->state) {
	case CL_FORWARD: return !q->r.request_done && !q->r.connect;
	case CL_LOCAL:
	case CL_DISCARD: return !q->r.request_done;
	default: return false;
	}
}

static void do_parse_input(sl_client_t *c)
{
	for (;;) {
		bool in_head = c->state == CL_HEAD;
		sl_request_t *q = c->req;
		/* A paused parser may still owe an event with no byte left (the
		 * end of a bodiless message right after its head). */
		if ((!in_head && !in_body(c)) || (c->in_off >= c->in_len && !q->parser.paused))
			break;
		size_t n;
		const char *at = c->in ? c->in + c->in_off : "";
		int r = sl_http1_execute(&q->parser, at, c->in_len - c->in_off, &n);
		c->in_off += (uint32_t)n;
		if (r == SL_HTTP1_ERROR) {
			do_parse_error(c);
			return;
		}
		if (r == SL_HTTP1_PAUSED) {
			cl_event_t ev = (cl_event_t)q->event;
			q->event = EV_NONE;
			if (ev == EV_HEAD)
				sl_forward_head(c);
			else if (ev == EV_COMPLETE)
				sl_forward_complete(c);
			if (c->state == CL_CLOSED || c->state == CL_LINGER || c->req != q)
				return;
		}
	}
	if (c->in_off == c->in_len)
		c->in_off = c->in_len = 0;
}

void sl_client_parse(sl_client_t *c)
{
	if (c->req == NULL)
		return;
	bool nested = c->parsing;
	c->parsing = true;
	do_parse_input(c);
	if (nested)
		return;
	c->parsing = false;
	if (c->req)
		sl_forward_flush_request_head(c);
}

/* ---- reading -------------------------------------------------------------------- */

/* The free room at the end of the input buffer (taken from the worker's
 * free list if the connection has none), after moving a parsed-past
 * prefix away when the buffer is full. Plain reads and decrypted TLS land
 * there alike. */
static size_t do_in_room(sl_client_t *c)
{
	if (c->in == NULL)
		c->in = sl_worker_get_buffer(c->w);
	if (c->in_off > 0 && c->in_len == SL_CLIENT_BUF) {
		memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
		c->in_len -= c->in_off;
		c->in_off = 0;
	}
	return SL_CLIENT_BUF - c->in_len;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	sl_client_t *c = h->data;
	if (c->state == CL_LINGER || c->tls) { /* discarded, or ciphertext: fed to the stream at once */
		buf->base = c->w->read_buf;
		buf->len = SL_READ_BUF_SIZE;
		return;
	}
	buf->len = do_in_room(c);
	buf->base = c->in + c->in_len;
}

static void do_tls_read(sl_client_t *c, ssize_t nread, const char *data);

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	sl_client_t *c = s->data;
	if (c->state == CL_CLOSED || nread == 0)
		return;
	if (c->tls) {
		do_tls_read(c, nread, buf->base);
		return;
	}
	if (nread < 0) {
		c->eof = true;
		uv_read_stop(s);
		c->reading = false;
		states[c->state].eof(c, nread);
		return;
	}
	c->last_read = sl_client_now(c);
	states[c->state].read(c, nread);
}

/* ---- TLS ------------------------------------------------------------------------ */

/* The end of the client's input, through the state's handler. */
static void do_input_end(sl_client_t *c, ssize_t err)
{
	c->eof = true;
	if (c->reading)
		uv_read_stop((uv_stream_t *)&c->tcp);
	c->reading = false;
	states[c->state].eof(c, err);
}

/* Writes what the stream produced (handshake, alerts); false when the
 * client is gone (closed here). */
static bool do_tls_flush(sl_client_t *c)
{
	if (sl_tls_flush(c->tls, (uv_stream_t *)&c->tcp, on_written, NULL) == 0)
		return true;
	do_client_gone(c);
	return false;
}

/* Decrypts into c->in while it has room and the state reads, handing each
 * piece to the state's read handler as plain bytes are. */
static void do_tls_pump(sl_client_t *c)
{
	while (c->state != CL_CLOSED && c->state != CL_LINGER && !c->eof) {
		if (c->req && c->req->a.up_backlogged)
			break; /* as a plain connection stops reading */
		size_t room = do_in_room(c);
		if (room == 0)
			break; /* waits in the stream until the parser makes room */
		ssize_t n = sl_tls_read(c->tls, c->in + c->in_len, room);
		if (!do_tls_flush(c))
			return;
		if (n == 0)
			break;
		if (n < 0) {
			if (n == SL_TLS_FAILED)
				sl_debug("TLS from client failed: %s", sl_tls_reason(c->tls));
			/* close_notify is an EOF; a broken record a reset */
			do_input_end(c, n == SL_TLS_CLOSED ? UV_EOF : UV_ECONNRESET);
			return;
		}
		c->last_read = sl_client_now(c);
		states[c->state].read(c, n);
	}
	if (c->tls_eof && c->state != CL_CLOSED && !c->eof && !sl_tls_has_input(c->tls)) {
		/* The transport ended without close_notify: as nginx, an EOF
		 * (requests are framed; a short one fails in the parser). */
		ssize_t e = c->tls_eof;
		c->tls_eof = 0;
		do_input_end(c, e);
	}
}

static void on_tls_defer(sl_defer_t *d)
{
	sl_client_t *c = (sl_client_t *)((char *)d - offsetof(sl_client_t, tls_defer));
	do_tls_pump(c);
}

static void do_tls_handshake_failed(sl_client_t *c, const char *why)
{
	SL_BUMP(c->w->tls_handshake_failures, 1);
	char peer[INET6_ADDRSTRLEN];
	do_format_peer(c, peer, sizeof peer);
	sl_debug("TLS handshake with client %s failed: %s", peer, why);
	do_close_now(c);
}

static void do_tls_read(sl_client_t *c, ssize_t nread, const char *data)
{
	if (nread < 0) {
		if (!sl_tls_handshake_done(c->tls)) {
			if (c->tls_fed)
				do_tls_handshake_failed(c, nread == UV_EOF ? "the client closed the connection"
				                                           : uv_strerror((int)nread));
			else
				do_close_now(c); /* connected and left: a port probe, not a failure */
			return;
		}
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = false;
		c->tls_eof = nread;
		if (c->state == CL_LINGER) {
			do_input_end(c, nread);
			return;
		}
		do_tls_pump(c);
		return;
	}
	if (c->state == CL_LINGER)
		return; /* after our close_notify: read and dropped */
	c->tls_fed = true;
	sl_tls_feed(c->tls, data, (size_t)nread);
	if (!sl_tls_handshake_done(c->tls)) {
		int r = sl_tls_handshake(c->tls);
		if (!do_tls_flush(c))
			return;
		if (r == SL_TLS_FAILED) {
			do_tls_handshake_failed(c, sl_tls_reason(c->tls));
			return;
		}
		if (r == 0)
			return;
	}
	do_tls_pump(c);
}

/* HEAD, LOCAL, QUEUED, WAIT, BACKOFF, FORWARD, DISCARD: bytes for the parser. */
static void parse_read(sl_client_t *c, ssize_t nread)
{
	if (c->state == CL_HEAD && is_idle(c)) {
		c->head_start = c->last_read;
		sl_client_rearm(c);
	}
	if (c->req == NULL)
		c->req = do_take_request(c);
	c->in_len += (uint32_t)nread;
	sl_client_parse(c);
	sl_client_update_reading(c);
}

static void linger_read(sl_client_t *c, ssize_t nread)
{
	(void)c;
	(void)nread; /* read into the worker's scratch buffer and dropped */
}

/* EOF between requests or inside a head: nothing more will come. */
static void head_eof(sl_client_t *c, ssize_t err)
{
	do_close_now(c);
}

static void linger_eof(sl_client_t *c, ssize_t err)
{
	sl_forward_settle(c, err == UV_EOF);
	if (err != UV_EOF || c->shut_done)
		do_close_now(c); /* else on_shutdown closes once the answer is out */
}

/* DISCARD: the request ended already; its rest will not come. */
static void closed_eof(sl_client_t *c, ssize_t err)
{
	do_close_now(c);
}

void sl_client_update_reading(sl_client_t *c)
{
	if (c->state == CL_CLOSED)
		return;
	bool room = c->in_len - c->in_off < SL_CLIENT_BUF;
	bool backlogged = c->req && c->req->a.up_backlogged;
	bool want = !c->eof && (c->state == CL_LINGER || (!backlogged && room));
	if (c->tls) {
		if (want && c->state != CL_LINGER && sl_tls_has_input(c->tls))
			sl_worker_defer(c->w, &c->tls_defer); /* what waited for room, before new reads */
		else if (want && c->tls_eof && c->state != CL_LINGER)
			sl_worker_defer(c->w, &c->tls_defer); /* the end of input, once what waited is parsed */
		if (c->tls_eof)
			want = false; /* the transport has ended */
	}
	if (want && !c->reading) {
		int err = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
		if (err != 0) {
			sl_debug("cannot read from client: %s", uv_strerror(err));
			sl_client_close(c);
			return;
		}
	} else if (!want && c->reading) {
		uv_read_stop((uv_stream_t *)&c->tcp);
	}
	c->reading = want;
}

/* ---- between requests ------------------------------------------------------------ */

/* Back to reading the next request, or linger when none can follow. */
static void do_next_request(sl_client_t *c)
{
	sl_request_t *q = c->req;
	if (!q->r.keep_alive || (c->w->draining && !c->admin_listener) || (c->eof && c->in_len == c->in_off)) {
		sl_client_linger(c);
		return;
	}
	sl_client_set_state(c, CL_HEAD);
	memset(&q->r, 0, sizeof q->r);
	q->event = EV_NONE;
	c->head_start = c->last_read = sl_client_now(c);
	sl_client_rearm(c);
	sl_client_parse(c);
	if (c->state == CL_HEAD && c->eof) {
		sl_client_linger(c); /* half-closed and nothing complete left to answer */
		return;
	}
	if (c->state == CL_HEAD && is_idle(c))
		do_put_request(c); /* idle: an idle connection costs its sl_client_t only */
	sl_client_update_reading(c);
}

void sl_client_next(sl_client_t *c)
{
	c->served = true;
	if (c->write_failed) {
		sl_client_close(c);
		return;
	}
	if (c->req->r.request_done) {
		do_next_request(c);
		return;
	}
	/* Answered before its body was read (a rejection): read the rest and
	 * drop it, if it is small enough to be worth keeping the connection. */
	if (!c->req->r.keep_alive || c->w->draining) {
		sl_client_linger(c);
		return;
	}
	sl_client_set_state(c, CL_DISCARD);
	sl_client_rearm(c);
	sl_client_parse(c);
	if (c->state == CL_DISCARD)
		sl_client_update_reading(c);
}

void sl_client_resume(sl_client_t *c)
{
	do_next_request(c);
}

/* ---- closing ---------------------------------------------------------------------- */

static void on_closed(uv_handle_t *h)
{
	sl_client_t *c = h->data;
	sl_worker_t *w = c->w;
	bool admin = c->admin_listener;
	do_put_request(c);
	sl_tls_free(c->tls);
	free(c);
	sl_worker_connection_closed(w, admin);
}

/* The socket is closed (its pending writes and shutdown have had their
 * callbacks); the timer goes next, then the connection. */
static void on_tcp_closed(uv_handle_t *h)
{
	sl_client_t *c = h->data;
	uv_close((uv_handle_t *)&c->timer.timer, on_closed);
}

/* Closes without any accounting left to do. */
static void do_close_now(sl_client_t *c)
{
	if (c->state == CL_CLOSED)
		return;
	if (c->req && !c->req->r.ended && (c->req->r.counted || c->req->r.has_slot || c->state == CL_QUEUED)) {
		if (c->w->stopping)
			c->req->r.error = SL_EK_SHUTDOWN;
		sl_forward_end(c, SL_OUTCOME_FAILED, 0, SL_END_CLOSING);
		if (c->state == CL_CLOSED)
			return;
	}
	sl_forward_settle(c, !c->write_failed);
	sl_forward_release_flushing(c);
	sl_client_set_state(c, CL_CLOSED);
	sl_list_remove(&c->link);
	sl_defer_cancel(&c->tls_defer);
	sl_deadline_stop(&c->timer);
	uv_close((uv_handle_t *)&c->tcp, on_tcp_closed);
}

void sl_client_close(sl_client_t *c)
{
	do_close_now(c);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	sl_client_t *c = req->data;
	c->shut_done = true;
	if (c->state == CL_CLOSED)
		return;
	/* Everything written is out; a lingering connection whose peer has
	 * also finished can go now. */
	if (status != 0)
		sl_forward_settle(c, false);
	if (status != 0 || (c->state == CL_LINGER && c->eof))
		do_close_now(c);
}

bool sl_client_shutdown_write(sl_client_t *c)
{
	if (c->shut)
		return true;
	c->shut = true;
	c->req->shutdown_req.data = c;
	if (c->tls && sl_tls_handshake_done(c->tls)) {
		sl_tls_close_notify(c->tls); /* the TLS end of the answer, then the FIN */
		if (sl_tls_flush(c->tls, (uv_stream_t *)&c->tcp, on_written, NULL) != 0)
			return false;
	}
	return uv_shutdown(&c->req->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) == 0;
}

void sl_client_linger(sl_client_t *c)
{
	if (c->state == CL_CLOSED || c->state == CL_LINGER)
		return;
	if (c->req == NULL || !sl_client_shutdown_write(c)) {
		do_close_now(c);
		return;
	}
	sl_client_set_state(c, CL_LINGER);
	if (c->shut_done && c->eof) {
		do_close_now(c);
		return;
	}
	sl_client_rearm(c);
	sl_client_update_reading(c);
}

/* ---- accepting and draining ---------------------------------------------------- */

void sl_client_accept(sl_worker_t *w, uv_stream_t *listener, bool admin)
{
	sl_client_t *c = sl_calloc(1, sizeof *c);
	c->w = w;
	uv_tcp_init(&w->loop, &c->tcp);
	sl_deadline_init(&c->timer, &w->loop, c);
	c->tcp.data = c;
	c->admin_listener = admin;
	c->state = CL_HEAD;
	sl_defer_init(&c->tls_defer, on_tls_defer);
	if (!admin && w->server->tls_listener)
		c->tls = sl_tls_new_server(w->server->tls_listener, &w->tls_out);
	sl_list_insert_tail(&w->clients, &c->link);
	if (admin)
		w->nadmin++;
	else
		w->nclients++;
	if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
		do_close_now(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	int len = sizeof c->peer;
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->peer, &len) != 0)
		c->peer.sin6_family = AF_UNSPEC;
	c->head_start = c->last_read = sl_client_now(c);
	sl_client_rearm(c);
	sl_client_update_reading(c);
}

void sl_client_drain_all(sl_worker_t *w, bool force, bool admin)
{
	sl_list_t *pos, *tmp;
	sl_list_foreach_safe(pos, tmp, &w->clients)
	{
		sl_client_t *c = sl_list_entry(pos, sl_client_t, link);
		if (c->admin_listener && !admin)
			continue;
		if (force || (c->state == CL_HEAD && is_idle(c)))
			do_close_now(c);
		else if (c->req)
			c->req->r.keep_alive = false;
	}
}
