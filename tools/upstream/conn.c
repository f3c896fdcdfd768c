/* conn.c — see conn.h.
 *
 * States (conn-t.h): RX -> [DELAY] -> WRITE -> [GAP -> WRITE ...] -> RX (keep
 * alive) or LINGER -> CLOSING. HANG and a reset go straight to CLOSING when
 * the client leaves. The one timer serves whichever of idle / delay / gap /
 * linger the state needs.
 *
 * Parsing: llhttp runs over in[in_off..in_len). on_message_complete pauses
 * it; do_parse() then dispatches the request. If the response finishes at
 * once (the common case: uv_try_write takes it all) the loop simply goes on
 * with the next pipelined request; otherwise the write callback or a timer
 * ends in sl_up_conn_response_done(), which re-enters do_parse(). The
 * `parsing` flag keeps llhttp from being re-entered from its own callbacks.
 *
 * Hot path per request: no allocation (hbuf and the buffers live as long as
 * the connection), one reqlog mutex hold, a few atomic adds, one snprintf. */
#include "conn.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "echo.h"
#include "failmap.h"
#include "reqlog.h"
#include "respond.h"
#include "options.h"
#include "stats.h"

#define LINGER_MS 2000 /* after our FIN, how long we drain input before closing */
#define HBUF_INITIAL 2048

static atomic_uint_fast64_t next_conn_id = 1;

static int on_message_begin(llhttp_t *p);
static int on_url(llhttp_t *p, const char *at, size_t len);
static int on_header_field(llhttp_t *p, const char *at, size_t len);
static int on_header_field_complete(llhttp_t *p);
static int on_header_value(llhttp_t *p, const char *at, size_t len);
static int on_header_value_complete(llhttp_t *p);
static int on_headers_complete(llhttp_t *p);
static int on_body(llhttp_t *p, const char *at, size_t len);
static int on_message_complete(llhttp_t *p);

/* No lenient flags are ever set: malformed requests get a 400. */
static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void do_parse(sl_up_conn_t *c);
static void do_close(sl_up_conn_t *c);

void sl_up_conns_init(sl_up_conns_t *set, uint64_t idle_timeout_ms)
{
	sl_list_init(&set->list);
	set->idle_timeout_ms = idle_timeout_ms;
}

/* Lifecycle ---------------------------------------------------------------- */

static void on_close(uv_handle_t *h)
{
	sl_up_conn_t *c = h->data;
	if (--c->closes_pending > 0)
		return;
	sl_up_respond_dispose(c);
	free(c->hbuf);
	free(c);
}

/* Closes at once: both handles, the request (if counted) leaves inflight. */
static void do_close(sl_up_conn_t *c)
{
	if (c->state == SL_UP_CLOSING)
		return;
	c->state = SL_UP_CLOSING;
	if (c->req_counted && !c->req_answered)
		sl_up_stats_request_done(false);
	c->req_counted = c->req_answered = false;
	if (c->open_counted)
		sl_up_stats_conn_close();
	sl_list_remove(&c->node);
	c->closes_pending = 2;
	uv_close((uv_handle_t *)&c->tcp, on_close);
	uv_close((uv_handle_t *)&c->timer, on_close);
}

void sl_up_conn_abort(sl_up_conn_t *c)
{
	do_close(c);
}

/* fail=reset: SO_LINGER {1, 0} makes close(2) send RST instead of FIN. */
static void do_reset(sl_up_conn_t *c)
{
	uv_os_fd_t fd;
	if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0) {
		struct linger l = {.l_onoff = 1, .l_linger = 0};
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
	}
	do_close(c);
}

static void do_read_start(sl_up_conn_t *c);
static void on_timer(uv_timer_t *t);

static void on_shutdown(uv_shutdown_t *req, int status)
{
	sl_up_conn_t *c = req->data;
	if (c->state == SL_UP_CLOSING)
		return;
	if (status < 0 || c->eof) {
		do_close(c);
		return;
	}
	/* Drain what the client still sends until it closes too: closing with
	 * unread input would turn our FIN into an RST and could destroy the
	 * response before the client has read it. */
	uv_timer_start(&c->timer, on_timer, LINGER_MS, 0);
	do_read_start(c);
}

/* Ends the connection after everything written so far: FIN, then LINGER. */
static void do_graceful_close(sl_up_conn_t *c)
{
	c->state = SL_UP_LINGER;
	c->in_off = c->in_len = 0; /* unanswered pipelined input is dropped */
	uv_timer_stop(&c->timer);
	if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) < 0)
		do_close(c);
}

static void on_timer(uv_timer_t *t)
{
	sl_up_conn_t *c = t->data;
	switch (c->state) {
	case SL_UP_RX: /* idle keep-alive connection */ do_close(c); break;
	case SL_UP_DELAY:
		if (c->params.fail == SL_UP_FAIL_RESET)
			do_reset(c);
		else if (c->params.fail == SL_UP_FAIL_CLOSE)
			do_graceful_close(c);
		else
			sl_up_respond_start(c);
		break;
	case SL_UP_GAP:
		c->state = SL_UP_WRITE;
		sl_up_respond_pump(c);
		break;
	case SL_UP_LINGER: do_close(c); break;
	default: break;
	}
}

/* Starts the one timer for a waiting state, or closes if the client is gone:
 * a request whose client left is not worth waiting for. */
static void do_wait(sl_up_conn_t *c, sl_up_state_t state, uint64_t ms)
{
	if (c->eof) {
		do_close(c);
		return;
	}
	c->state = state;
	uv_timer_start(&c->timer, on_timer, ms, 0);
}

void sl_up_conn_gap(sl_up_conn_t *c, uint64_t ms)
{
	do_wait(c, SL_UP_GAP, ms);
}

static void do_idle(sl_up_conn_t *c)
{
	if (c->conns->idle_timeout_ms)
		uv_timer_start(&c->timer, on_timer, c->conns->idle_timeout_ms, 0);
}

/* Reading ------------------------------------------------------------------ */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	sl_up_conn_t *c = h->data;
	if (c->in_off == c->in_len) {
		c->in_off = c->in_len = 0;
	} else if (c->in_off > 0) {
		memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
		c->in_len -= c->in_off;
		c->in_off = 0;
	}
	*buf = uv_buf_init(c->in + c->in_len, (unsigned)(SL_UP_IN_CAP - c->in_len));
}

static void do_eof(sl_up_conn_t *c)
{
	c->eof = true;
	c->reading = false;
	uv_read_stop((uv_stream_t *)&c->tcp);
	switch (c->state) {
	case SL_UP_WRITE: break; /* finish the response (half-close); response_done closes */
	default:
		/* RX: idle or part of a request, nothing to answer. Otherwise
		 * waiting, hanging or lingering: the client is gone. */
		do_close(c);
		break;
	}
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	sl_up_conn_t *c = s->data;
	if (n == 0)
		return;
	if (n < 0) {
		if (n == UV_EOF)
			do_eof(c);
		else
			do_close(c);
		return;
	}
	if (c->state == SL_UP_LINGER || c->state == SL_UP_HANG)
		return; /* discarded: the buffer is reused in place */
	c->in_len += (size_t)n;
	if (c->state == SL_UP_RX)
		do_parse(c);
	/* Pipelined input piles up while a response is under way; a full buffer
	 * stops reading, which pushes back on the client through TCP. */
	if (c->state != SL_UP_CLOSING && c->reading && c->in_len - c->in_off >= SL_UP_IN_CAP) {
		uv_read_stop(s);
		c->reading = false;
	}
}

static void do_read_start(sl_up_conn_t *c)
{
	if (c->reading || c->eof)
		return;
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
		do_close(c);
		return;
	}
	c->reading = true;
}

int sl_up_conn_accept(uv_stream_t *listener, sl_up_conns_t *set)
{
	sl_up_conn_t *c = malloc(sizeof *c);
	if (!c)
		return UV_ENOMEM;
	memset(c, 0, offsetof(sl_up_conn_t, in));
	uv_tcp_init(listener->loop, &c->tcp);
	uv_timer_init(listener->loop, &c->timer);
	c->tcp.data = c->timer.data = c->wreq.data = c->sreq.data = c;
	c->conns = set;
	sl_list_insert_tail(&set->list, &c->node);
	c->state = SL_UP_RX;
	int err = uv_accept(listener, (uv_stream_t *)&c->tcp);
	if (err < 0) {
		do_close(c);
		return err;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	c->id = atomic_fetch_add_explicit(&next_conn_id, 1, memory_order_relaxed);
	llhttp_init(&c->parser, HTTP_REQUEST, &settings);
	c->parser.data = c;
	sl_up_stats_conn_open();
	c->open_counted = true;
	do_read_start(c);
	if (c->state == SL_UP_RX)
		do_idle(c);
	return 0;
}

void sl_up_conns_close_all(sl_up_conns_t *set)
{
	while (!sl_list_empty(&set->list))
		do_close(sl_list_entry(set->list.next, sl_up_conn_t, node));
}

/* Parsing ------------------------------------------------------------------ */

/* Makes room for len more bytes in hbuf, up to limit in all.
 * Returns 0, or -1 when full. */
static int do_reserve(sl_up_conn_t *c, size_t len, size_t limit)
{
	if (c->hlen + len > c->hcap) {
		size_t cap = c->hcap ? c->hcap : HBUF_INITIAL;
		while (cap < c->hlen + len)
			cap *= 2;
		if (cap > limit)
			cap = limit;
		if (c->hlen + len > cap)
			return -1;
		char *nb = realloc(c->hbuf, cap);
		if (!nb)
			return -1;
		c->hbuf = nb;
		c->hcap = (uint32_t)cap;
	}
	return 0;
}

/* Appends to hbuf, growing it up to limit. Returns 0, or -1 when full. */
static int do_store(sl_up_conn_t *c, const char *at, size_t len, size_t limit)
{
	if (do_reserve(c, len, limit) < 0)
		return -1;
	memcpy(c->hbuf + c->hlen, at, len);
	c->hlen += (uint32_t)len;
	return 0;
}

static int do_head_full(sl_up_conn_t *c)
{
	c->err_status = 431;
	return -1;
}

static int on_message_begin(llhttp_t *p)
{
	sl_up_conn_t *c = p->data;
	c->in_request = true;
	c->in_field = false;
	c->hlen = c->url_len = c->nhdrs = 0;
	c->body_bytes = 0;
	c->fnv = SL_UP_FNV1A_INIT;
	c->want_fnv = c->bad_param = false;
	c->err_status = 0;
	c->log_seq = 0;
	c->endpoint = SL_UP_EP_NONE;
	if (c->conns->idle_timeout_ms)
		uv_timer_stop(&c->timer);
	return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
	sl_up_conn_t *c = p->data;
	if (do_store(c, at, len, SL_UP_HEAD_MAX) < 0)
		return do_head_full(c);
	c->url_len += (uint32_t)len;
	return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
	sl_up_conn_t *c = p->data;
	if (!c->in_field) {
		if (c->nhdrs == SL_UP_MAX_HEADERS)
			return do_head_full(c);
		c->in_field = true;
		c->hdrs[c->nhdrs].name_off = c->hlen;
		c->hdrs[c->nhdrs].name_len = 0;
	}
	if (do_store(c, at, len, SL_UP_HEAD_MAX) < 0)
		return do_head_full(c);
	c->hdrs[c->nhdrs].name_len += (uint32_t)len;
	return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
	sl_up_conn_t *c = p->data;
	c->in_field = false;
	c->hdrs[c->nhdrs].value_off = c->hlen;
	c->hdrs[c->nhdrs].value_len = 0;
	return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
	sl_up_conn_t *c = p->data;
	if (do_store(c, at, len, SL_UP_HEAD_MAX) < 0)
		return do_head_full(c);
	c->hdrs[c->nhdrs].value_len += (uint32_t)len;
	return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
	sl_up_conn_t *c = p->data;
	c->nhdrs++;
	return 0;
}

static void do_view(const sl_up_conn_t *c, sl_up_req_view_t *v)
{
	v->method = llhttp_method_name((llhttp_method_t)c->parser.method);
	v->target = c->hbuf;
	v->target_len = c->url_len;
	v->store = c->hbuf;
	v->hdrs = c->hdrs;
	v->nhdrs = c->nhdrs;
	v->http_major = c->parser.http_major;
	v->http_minor = c->parser.http_minor;
	v->body_bytes = c->body_bytes;
	v->body_fnv1a = c->fnv;
}

/* The path of the target, with an absolute-form scheme://authority removed
 * (requests may come through a forward proxy). */
static void do_path(const char *t, size_t len, const char **path, size_t *plen)
{
	if ((len > 7 && !strncasecmp(t, "http://", 7)) || (len > 8 && !strncasecmp(t, "https://", 8))) {
		const char *auth = memchr(t, '/', len) + 2;
		const char *slash = memchr(auth, '/', len - (size_t)(auth - t));
		const char *q = memchr(auth, '?', len - (size_t)(auth - t));
		const char *start = slash && (!q || slash < q) ? slash : (q ? q : t + len);
		len -= (size_t)(start - t);
		t = start;
	}
	const char *q = memchr(t, '?', len);
	*path = t;
	*plen = q ? (size_t)(q - t) : len;
}

static sl_up_endpoint_t do_endpoint(const sl_up_conn_t *c)
{
	const char *path;
	size_t len;
	if (c->url_len < 6)
		return SL_UP_EP_NONE;
	do_path(c->hbuf, c->url_len, &path, &len);
	if (len < 3 || path[1] != '_' || path[2] != '_')
		return SL_UP_EP_NONE;
	int m = c->parser.method;
	if (m == HTTP_GET && len == 8 && !memcmp(path, "/__stats", 8))
		return SL_UP_EP_STATS;
	if (m == HTTP_POST && len == 8 && !memcmp(path, "/__reset", 8))
		return SL_UP_EP_RESET;
	if (m == HTTP_GET && len == 6 && !memcmp(path, "/__log", 6))
		return SL_UP_EP_LOG;
	return SL_UP_EP_NONE;
}

static bool do_expects_continue(const sl_up_conn_t *c)
{
	if (!(c->parser.flags & F_CHUNKED) && c->parser.content_length == 0)
		return false;
	for (uint32_t i = 0; i < c->nhdrs; i++) {
		const sl_up_hdr_t *h = &c->hdrs[i];
		if (h->name_len == 6 && !strncasecmp(c->hbuf + h->name_off, "expect", 6))
			return h->value_len == 12 && !strncasecmp(c->hbuf + h->value_off, "100-continue", 12);
	}
	return false;
}

/* Reads the query into c->params and applies the fail_times budget. */
static void do_params(sl_up_conn_t *c)
{
	sl_up_params_t *p = &c->params;
	sl_up_params_init(p);
	const char *q = c->url_len ? memchr(c->hbuf, '?', c->url_len) : NULL;
	if (!q)
		return;
	size_t qlen = c->url_len - (size_t)(q + 1 - c->hbuf);
	/* Scratch for decoded header= values goes after the stored head. */
	size_t need = sl_up_params_scratch(qlen);
	size_t q_off = (size_t)(q + 1 - c->hbuf);
	if (do_reserve(c, need, 4 * SL_UP_HEAD_MAX) < 0) { /* moves hbuf */
		c->bad_param = true;
		p->error = "query";
		return;
	}
	if (sl_up_params_parse(p, c->hbuf + q_off, qlen, c->hbuf + c->hlen) < 0) {
		c->bad_param = true;
		return;
	}
	if (p->fail_times >= 0 && sl_up_failmap_hit(p->key, p->key_len) > (uint64_t)p->fail_times) {
		/* The budget is spent: serve normally from now on. */
		p->fail = SL_UP_FAIL_NONE;
		p->status = 0;
	}
}

static int on_headers_complete(llhttp_t *p)
{
	sl_up_conn_t *c = p->data;
	c->keep_alive = llhttp_should_keep_alive(p) && !p->upgrade;
	c->endpoint = do_endpoint(c);
	if (c->endpoint == SL_UP_EP_NONE) {
		sl_up_req_view_t v;
		do_view(c, &v);
		long inflight = sl_up_stats_request();
		c->req_counted = true;
		c->log_seq = sl_up_reqlog_add(c->id, (double)uv_hrtime() / 1e6, &v);
		do_params(c);
		if (sl_up_max_inflight > 0 && inflight > sl_up_max_inflight) {
			/* over capacity: 429 at once, whatever the query asked */
			sl_up_params_init(&c->params);
			c->params.status = 429;
		}
	} else {
		sl_up_params_init(&c->params);
		if (c->nreq == 0 && c->open_counted) {
			/* A connection opened to look at the stats is not counted. */
			sl_up_stats_conn_uncount();
			c->open_counted = false;
		}
	}
	c->nreq++;
	c->want_fnv = c->params.echo;
	if (!c->bad_param && c->params.fail == SL_UP_FAIL_RESET && c->params.delay_ms == 0) {
		do_reset(c);
		return -1; /* stops the parser; do_parse() sees CLOSING */
	}
	if (do_expects_continue(c))
		sl_up_respond_continue(c);
	return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
	sl_up_conn_t *c = p->data;
	c->body_bytes += len;
	if (c->req_counted)
		sl_up_stats_body(len);
	if (c->want_fnv)
		c->fnv = sl_up_fnv1a(c->fnv, at, len);
	return 0;
}

static int on_message_complete(llhttp_t *p)
{
	return HPE_PAUSED; /* one request at a time: do_parse() dispatches it */
}

/* Answering ---------------------------------------------------------------- */

static void do_simple(sl_up_conn_t *c, int status, const char *ctype, const char *body, size_t len, char *owned)
{
	sl_up_respond_plan(c, status, ctype, body, len, owned);
	sl_up_respond_start(c);
}

static void do_endpoint_answer(sl_up_conn_t *c)
{
	size_t len = 0;
	char *body = NULL;
	switch (c->endpoint) {
	case SL_UP_EP_STATS: body = sl_up_stats_json(&len); break;
	case SL_UP_EP_LOG: body = sl_up_reqlog_json(&len); break;
	default:
		sl_up_stats_reset();
		sl_up_reqlog_clear();
		do_simple(c, 200, NULL, "ok\n", 3, NULL);
		return;
	}
	if (!body)
		do_simple(c, 500, NULL, "out of memory\n", 14, NULL);
	else
		do_simple(c, 200, "application/json", body, len, body);
}

/* The current request is complete (its body read): answer it. */
static void do_dispatch(sl_up_conn_t *c)
{
	sl_up_params_t *p = &c->params;
	c->in_request = false;
	if (c->log_seq && c->body_bytes)
		sl_up_reqlog_body(c->log_seq, c->body_bytes);
	if (c->endpoint != SL_UP_EP_NONE) {
		do_endpoint_answer(c);
		return;
	}
	if (c->bad_param) {
		char msg[96];
		int n = snprintf(msg, sizeof msg, "bad query parameter: %s\n", p->error);
		char *body = malloc((size_t)n);
		sl_up_params_init(p); /* answer plainly, whatever else was asked */
		if (body) {
			memcpy(body, msg, (size_t)n);
			do_simple(c, 400, NULL, body, (size_t)n, body);
		} else {
			do_simple(c, 400, NULL, "bad query parameter\n", 20, NULL);
		}
		return;
	}
	switch (p->fail) {
	case SL_UP_FAIL_HANG:
		if (c->eof) {
			do_close(c);
			return;
		}
		/* Input is discarded from now on, so reading never stops and the
		 * client's close is seen. */
		c->state = SL_UP_HANG;
		c->in_off = c->in_len = 0;
		do_read_start(c);
		return;
	case SL_UP_FAIL_CLOSE:
	case SL_UP_FAIL_RESET: /* reset with a delay; without one it happened at the head */
		if (p->delay_ms)
			do_wait(c, SL_UP_DELAY, p->delay_ms);
		else
			do_graceful_close(c);
		return;
	default: break;
	}
	if (p->echo) {
		sl_up_req_view_t v;
		size_t len;
		do_view(c, &v);
		char *body = sl_up_echo_json(&v, &len);
		if (body)
			sl_up_respond_plan(c, p->status, "application/json", body, len, body);
		else
			sl_up_respond_plan(c, 500, NULL, "out of memory\n", 14, NULL);
	} else {
		sl_up_respond_plan(c, p->status, NULL, NULL, 0, NULL);
	}
	if (p->early)
		sl_up_respond_early(c);
	if (c->state == SL_UP_CLOSING)
		return;
	if (p->delay_ms)
		do_wait(c, SL_UP_DELAY, p->delay_ms);
	else
		sl_up_respond_start(c);
}

/* A request the parser rejected: 400 (or 431) and close. */
static void do_bad_request(sl_up_conn_t *c)
{
	int status = c->err_status ? c->err_status : 400;
	c->in_request = false;
	c->keep_alive = false;
	sl_up_params_init(&c->params);
	if (status == 431)
		do_simple(c, 431, NULL, "request head too large\n", 23, NULL);
	else
		do_simple(c, 400, NULL, "bad request\n", 12, NULL);
}

static void do_parse(sl_up_conn_t *c)
{
	if (c->parsing)
		return; /* the loop below is on the stack and will go on */
	c->parsing = true;
	while (c->state == SL_UP_RX && c->in_off < c->in_len) {
		const char *start = c->in + c->in_off;
		llhttp_errno_t e = llhttp_execute(&c->parser, start, c->in_len - c->in_off);
		if (e == HPE_OK) {
			c->in_off = c->in_len;
			break;
		}
		if (c->state == SL_UP_CLOSING)
			break; /* fail=reset from a callback */
		if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) {
			c->in_off = (size_t)(llhttp_get_error_pos(&c->parser) - c->in);
			if (e == HPE_PAUSED) {
				llhttp_resume(&c->parser);
			} else {
				/* CONNECT or Upgrade: answered like any request, then
				 * closed, since what follows is not HTTP. */
				c->keep_alive = false;
				c->params.conn_close = true;
				llhttp_resume_after_upgrade(&c->parser);
			}
			if (!c->in_request)
				continue; /* an upgrade pause after the message was handled */
			do_dispatch(c);
			continue;
		}
		do_bad_request(c);
		break;
	}
	c->parsing = false;
	if (c->state != SL_UP_RX)
		return;
	if (c->in_off == c->in_len) {
		c->in_off = c->in_len = 0;
		if (c->eof)
			do_graceful_close(c);
		else
			do_read_start(c);
	}
}

void sl_up_conn_response_ending(sl_up_conn_t *c)
{
	if (c->req_counted && !c->req_answered) {
		sl_up_stats_request_done(!c->resp.truncate);
		c->req_answered = true;
	}
}

void sl_up_conn_response_done(sl_up_conn_t *c)
{
	sl_up_conn_response_ending(c);
	c->req_counted = c->req_answered = false;
	sl_up_respond_dispose(c);
	if (c->resp.close_after) {
		do_graceful_close(c);
		return;
	}
	c->state = SL_UP_RX;
	do_idle(c);
	do_parse(c);
}
