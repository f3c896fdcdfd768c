/* upstream.c — see upstream.h.
 *
 * States of a connection:
 *   RESOLVING  waiting for the first address of the target name
 *   CONNECTING uv_tcp_connect in flight
 *   HANDSHAKE  --target-tls: connected, the TLS handshake under way (within
 *              connect_timeout: a handshake that stalls is a connect timeout,
 *              one that fails is a connect failure)
 *   ACTIVE     attached to an owner: request going out, response coming in;
 *              after a 2xx to CONNECT, a tunnel: raw bytes both ways
 *   IDLE       in the pool, reading only to notice a close
 *   CLOSING    uv_close called; freed when both handles have closed
 * Invariant: up->owner != NULL while ACTIVE, and while RESOLVING/CONNECTING
 * unless the connection is being opened to keep the pool warm.
 *
 * TLS (tls.h): with --target-tls every connection carries a stream. Reads
 * feed it ciphertext and the plaintext goes through do_input, the same path
 * plain bytes take; writes are encrypted and flushed through sl_io_write, so
 * the write queue is the backpressure either way. The peer's close_notify is
 * the end of the stream; a TCP EOF without it ends a response framed by the
 * close as truncated. An idle pooled connection may still receive TLS
 * records that carry no data (TLS 1.3 session tickets); any data, alert or
 * EOF closes it.
 */
#include "upstream.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "deadline.h"
#include "io.h"
#include "log.h"
#include "stat.h"
#include "tls.h"
#include "worker.h"

#define SL_POOL_TRIM_IDLE_MS 1000 /* idle this long: not needed now (pool.h) */

typedef enum { UP_RESOLVING, UP_CONNECTING, UP_HANDSHAKE, UP_ACTIVE, UP_IDLE, UP_CLOSING } up_state_t;

struct sl_upconn {
	uv_tcp_t tcp;
	sl_deadline_t timer;
	uv_connect_t connect_req;
	sl_resolve_waiter_t rwait;
	sl_worker_t *w;
	const sl_upstream_events_t *ev;
	void *owner; /* NULL: detached (pooled, warming, or abandoned) */
	sl_list_t pool_link;
	sl_list_t all_link;
	sl_http1_t parser;
	up_state_t state;
	int handles;             /* handles still open: tcp, timer */
	uint64_t last_read;      /* loop ms of the last response bytes (or request end) */
	uint64_t last_write;     /* loop ms of the last write progress */
	sl_up_failure_t pending; /* a failure waiting to be reported */
	bool has_pending;
	bool reused;
	bool request_written;
	bool request_done;
	bool response_started;
	bool response_done;
	bool paused;           /* owner backpressure: not reading */
	sl_up_expect_t expect; /* what the response looks like */
	bool tunnel;           /* CONNECT succeeded: bytes are relayed raw */
	bool shut;             /* tunnel: our write side is shut down */
	uv_shutdown_t shutdown_req;
	bool extra_bytes; /* bytes after the response: connection unusable */
	bool tcp_open;
	bool warming;         /* opened by sl_upstream_tend_pool, for the pool */
	int addr_tries;       /* addresses of the target tried by this connect */
	unsigned addr_first;  /* sl_resolver_first(): where this connect started */
	bool replacing;       /* the socket of a failed address is closing */
	int error_status;     /* a 502/503/504 the owner declined, to retry */
	uint64_t deadline;    /* loop ms by which the answer must have begun (0: none) */
	sl_tls_t *tls;        /* --target-tls: the stream over this connection, or NULL */
	sl_defer_t tls_defer; /* decrypt what waited while the owner was backlogged */
	ssize_t tls_eof;      /* the transport's end, seen while input still waited (0: none) */
	union {               /* the target address connected to (or tried last); family 0: none yet */
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
	} addr;
};

static void do_fail(sl_upconn_t *up, sl_up_error_t kind, int uv_err);
static void do_tls_failed(sl_upconn_t *up, const char *why, sl_up_error_t kind, int uv_err);
static void do_close(sl_upconn_t *up);
static void on_written_cb(uv_write_t *req, int status);

const char *sl_up_error_name(sl_up_error_t kind)
{
	static const char *const names[] = {"resolve", "connect",      "connect_timeout", "write",     "write_timeout",
	                                    "closed",  "read_timeout", "bad_response",    "truncated", "error_status"};
	return names[kind];
}

bool sl_up_error_is_timeout(sl_up_error_t kind)
{
	return kind == SL_UP_CONNECT_TIMEOUT || kind == SL_UP_READ_TIMEOUT || kind == SL_UP_WRITE_TIMEOUT;
}

/* ---- response parsing -------------------------------------------------- */

static int on_resp_head(sl_http1_t *p)
{
	sl_upconn_t *up = p->data;
	int status = p->msg.status;
	if (status == 101)
		return sl_http1_fail(p, 502, "upstream switched protocols");
	if (status < 200) {
		up->ev->info(up->owner, &p->msg);
		return SL_HTTP1_CONTINUE;
	}
	if (up->ev->head(up->owner, &p->msg) != 0) {
		up->error_status = status; /* the owner will retry instead */
		return sl_http1_fail(p, 502, "retrying after the upstream's own error status");
	}
	if (up->expect == SL_UP_EXPECT_TUNNEL && status < 300)
		return SL_HTTP1_UPGRADE;
	return up->expect == SL_UP_EXPECT_NO_BODY ? SL_HTTP1_SKIP_BODY : SL_HTTP1_CONTINUE;
}

static int on_resp_body(sl_http1_t *p, const char *at, size_t len)
{
	sl_upconn_t *up = p->data;
	if (up->ev->body(up->owner, at, len))
		sl_upstream_pause(up);
	return SL_HTTP1_CONTINUE;
}

static int on_resp_complete(sl_http1_t *p)
{
	sl_upconn_t *up = p->data;
	if (p->msg.status < 200)
		return SL_HTTP1_CONTINUE; /* the final response follows on the same parser */
	up->response_done = true;
	return SL_HTTP1_PAUSE;
}

static const sl_http1_callbacks_t response_callbacks = {on_resp_head, on_resp_body, on_resp_complete};

/* ---- timers -------------------------------------------------------------- */

static void on_timer(uv_timer_t *t);
static bool do_try_next_address(sl_upconn_t *up);

/* Whether the owner's deadline still applies: until the answer begins. */
static bool deadline_applies(const sl_upconn_t *up)
{
	return up->deadline != 0 && !up->response_started && up->state != UP_IDLE;
}

/* Keeps the timer no later than the owner's deadline, whatever else it waits for. */
static void do_cap_by_deadline(sl_upconn_t *up)
{
	if (deadline_applies(up))
		sl_deadline_cap(&up->timer, sl_ms_left(uv_now(&up->w->loop), up->deadline, 0), on_timer);
}

static void do_arm(sl_upconn_t *up, uint64_t ms)
{
	sl_deadline_set(&up->timer, ms, on_timer);
	do_cap_by_deadline(up);
}

/* Lazy timeout: the deadline moves with activity without touching the timer
 * heap on every read; the timer re-arms itself for what is left. */
static void do_check(sl_upconn_t *up, uint64_t base, double limit_s, sl_up_error_t kind)
{
	if (sl_deadline_passed(&up->timer, base, sl_config_ms(limit_s), on_timer))
		do_fail(up, kind, UV_ETIMEDOUT);
}

static void on_timer(uv_timer_t *t)
{
	sl_upconn_t *up = t->data;
	const sl_config_t *cfg = up->w->cfg;
	uint64_t now = uv_now(&up->w->loop);
	if (up->has_pending) {
		up->has_pending = false;
		do_fail(up, up->pending.kind, up->pending.uv_err);
		return;
	}
	if (deadline_applies(up) && sl_ms_left(now, up->deadline, 0) == 0) {
		/* The request's own deadline (--request-timeout) came first. */
		do_fail(up, up->state == UP_ACTIVE ? SL_UP_READ_TIMEOUT : SL_UP_CONNECT_TIMEOUT, UV_ETIMEDOUT);
		return;
	}
	switch (up->state) {
	case UP_RESOLVING: do_fail(up, SL_UP_CONNECT_TIMEOUT, UV_ETIMEDOUT); break;
	case UP_CONNECTING:
		/* An address that swallows SYNs (a dead IPv6 route, a firewall
		 * drop) gets its full connect_timeout, then the next one gets
		 * the same, as nginx gives each upstream server. */
		if (do_try_next_address(up))
			do_arm(up, sl_config_ms(cfg->connect_timeout));
		else
			do_fail(up, SL_UP_CONNECT_TIMEOUT, UV_ETIMEDOUT);
		break;
	case UP_HANDSHAKE: /* TCP connected: say it was TLS that stalled */
		do_tls_failed(up, "not finished within connect_timeout", SL_UP_CONNECT_TIMEOUT, UV_ETIMEDOUT);
		break;
	case UP_IDLE:
		if (sl_deadline_passed(&up->timer, up->last_read, sl_config_ms(cfg->pool_idle_timeout), on_timer))
			do_close(up);
		break;
	case UP_ACTIVE:
		if (up->tunnel) {
			/* a tunnel may idle for read_timeout with no byte either way */
			uint64_t last =
			    sl_ms_between(up->last_write, up->last_read) > 0 ? up->last_read : up->last_write;
			do_check(up, up->paused ? now : last, cfg->read_timeout, SL_UP_TRUNCATED);
		} else if (uv_stream_get_write_queue_size((uv_stream_t *)&up->tcp) > 0) {
			do_check(up, up->last_write, cfg->write_timeout, SL_UP_WRITE_TIMEOUT);
		} else if (!up->request_done || up->paused) {
			/* The owner (the client) is the slow side; its own timers govern. */
			up->last_read = now;
			do_arm(up, sl_config_ms(cfg->read_timeout));
		} else {
			do_check(up, up->last_read, cfg->read_timeout,
			         up->response_started ? SL_UP_TRUNCATED : SL_UP_READ_TIMEOUT);
		}
		break;
	case UP_CLOSING: break;
	}
	if (up->state != UP_CLOSING)
		do_cap_by_deadline(up);
}

/* ---- lifecycle ----------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
	sl_upconn_t *up = h->data;
	if (--up->handles > 0)
		return;
	sl_worker_t *w = up->w;
	sl_http1_dispose(&up->parser);
	sl_tls_free(up->tls);
	free(up);
	sl_worker_maybe_finish(w);
}

static void do_close(sl_upconn_t *up)
{
	if (up->state == UP_CLOSING)
		return;
	if (up->state == UP_IDLE)
		sl_pool_remove(&up->w->pool, &up->pool_link);
	if (up->state == UP_RESOLVING)
		sl_resolver_cancel(&up->rwait);
	if (up->warming) {
		up->warming = false;
		up->w->warming--;
	}
	up->state = UP_CLOSING;
	up->owner = NULL;
	sl_defer_cancel(&up->tls_defer);
	sl_list_remove(&up->all_link);
	SL_BUMP(up->w->pool.open, -1);
	uv_close((uv_handle_t *)&up->timer.timer, on_handle_closed);
	if (up->tcp_open)
		uv_close((uv_handle_t *)&up->tcp, on_handle_closed);
	else if (!up->replacing) /* else on_socket_replaced accounts for it */
		up->handles--;
}

/* The one failure funnel: detach, close, report to the owner. */
static void do_fail(sl_upconn_t *up, sl_up_error_t kind, int uv_err)
{
	if (up->state == UP_CLOSING)
		return;
	void *owner = up->owner;
	const sl_upstream_events_t *ev = up->ev;
	if (up->has_pending) {
		/* A failure seen first (a write that failed inside the owner's
		 * call) is the cause; the EOF or reset read since is its echo. */
		kind = up->pending.kind;
		uv_err = up->pending.uv_err;
	}
	sl_up_failure_t f = {
	    .kind = kind,
	    .uv_err = uv_err,
	    .reused = up->reused,
	    .request_written = up->request_written,
	    .request_sent = up->request_done && kind != SL_UP_WRITE && up->tcp_open &&
	                    uv_stream_get_write_queue_size((uv_stream_t *)&up->tcp) == 0,
	    .status = up->error_status,
	    .addr = up->addr.sa.sa_family ? &up->addr.sa : NULL,
	};
	if (kind == SL_UP_CONNECT || kind == SL_UP_CONNECT_TIMEOUT)
		sl_resolver_refresh(&up->w->resolver);
	do_close(up);
	if (owner)
		ev->error(owner, &f);
}

/* Reports a failure from the next loop turn, so that an owner calling into
 * this module never sees its own callback run underneath it. */
static void do_fail_later(sl_upconn_t *up, sl_up_error_t kind, int uv_err)
{
	if (up->has_pending || up->state == UP_CLOSING)
		return;
	up->has_pending = true;
	up->pending.kind = kind;
	up->pending.uv_err = uv_err;
	do_arm(up, 0);
}

/* Puts a connection with no exchange into the pool, or closes it when the
 * pool is full or the worker is shutting down. */
static void do_park(sl_upconn_t *up)
{
	sl_worker_t *w = up->w;
	up->owner = NULL;
	if (!w->draining && sl_pool_put(&w->pool, &up->pool_link)) {
		up->state = UP_IDLE;
		up->last_read = uv_now(&w->loop);
		do_arm(up, sl_config_ms(w->cfg->pool_idle_timeout));
	} else {
		do_close(up);
	}
}

/* The response is complete: pool the connection if it can carry another
 * exchange, then tell the owner. Runs after llhttp_execute returned. */
static void do_finish(sl_upconn_t *up)
{
	void *owner = up->owner;
	const sl_upstream_events_t *ev = up->ev;
	/* A connection that carried a CONNECT is never reused, whatever the
	 * answer: the upstream may still take what follows for the tunnel. */
	bool reusable = up->request_done && !up->extra_bytes && up->parser.msg.keep_alive &&
	                !sl_http1_needs_eof(&up->parser) && !up->paused && up->expect != SL_UP_EXPECT_TUNNEL &&
	                (up->tls == NULL || sl_tls_clean(up->tls));
	if (reusable)
		do_park(up);
	else
		do_close(up);
	ev->done(owner);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	sl_upconn_t *up = h->data;
	buf->base = up->w->read_buf;
	buf->len = SL_READ_BUF_SIZE;
}

/* Response bytes (plain, or decrypted), or the end of input (nread < 0). */
static void do_input(sl_upconn_t *up, const char *data, ssize_t nread)
{
	uv_stream_t *s = (uv_stream_t *)&up->tcp;
	if (up->state == UP_IDLE) {
		/* A pooled connection must stay silent: EOF, reset or stray bytes
		 * all mean it can no longer be used. */
		do_close(up);
		return;
	}
	if (up->tunnel) {
		if (nread == UV_EOF) {
			uv_read_stop(s);
			up->ev->tunnel_eof(up->owner);
		} else if (nread < 0) {
			do_fail(up, SL_UP_TRUNCATED, (int)nread);
		} else {
			up->last_read = uv_now(&up->w->loop);
			if (up->ev->body(up->owner, data, (size_t)nread))
				sl_upstream_pause(up);
		}
		return;
	}
	if (nread < 0) {
		if (nread == UV_EOF && up->response_started && sl_http1_needs_eof(&up->parser) &&
		    sl_http1_finish(&up->parser) == SL_HTTP1_OK && up->response_done) {
			up->extra_bytes = true; /* closed: not reusable */
			do_finish(up);
			return;
		}
		do_fail(up, up->response_started ? SL_UP_TRUNCATED : SL_UP_CLOSED, (int)nread);
		return;
	}
	up->last_read = uv_now(&up->w->loop);
	up->response_started = true;
	size_t consumed;
	int r = sl_http1_execute(&up->parser, data, (size_t)nread, &consumed);
	if (r == SL_HTTP1_ERROR) {
		if (up->error_status) {
			do_fail(up, SL_UP_ERROR_STATUS, 0);
			return;
		}
		sl_debug("bad response from upstream: %s", up->parser.error ? up->parser.error : "?");
		do_fail(up, SL_UP_BAD_RESPONSE, 0);
		return;
	}
	if (up->response_done && up->expect == SL_UP_EXPECT_TUNNEL && up->parser.msg.status < 300) {
		/* CONNECT succeeded: whatever follows the head is tunnel data */
		up->tunnel = true;
		void *owner = up->owner;
		up->ev->tunnel_open(owner);
		if (consumed < (size_t)nread && up->owner == owner &&
		    up->ev->body(owner, data + consumed, (size_t)nread - consumed))
			sl_upstream_pause(up);
		return;
	}
	if (up->response_done) {
		if (consumed < (size_t)nread)
			up->extra_bytes = true;
		do_finish(up);
	} else if (up->owner) {
		up->ev->flush(up->owner); /* a head whose body has not come yet */
	}
}

/* ---- TLS ------------------------------------------------------------------- */

static sl_log_limit_t tls_log_limit;

/* Writes what the stream produced (handshake, alerts, records); wrote:
 * where to record that bytes left (the request's flag, or a scratch one:
 * handshake bytes are not request bytes). */
static int do_tls_flush(sl_upconn_t *up, bool *wrote)
{
	bool scratch = false;
	return sl_tls_flush(up->tls, (uv_stream_t *)&up->tcp, on_written_cb, wrote ? wrote : &scratch);
}

/* The handshake failed or the transport ended during it: a connect failure,
 * with the reason at warn (one line a second). */
static void do_tls_failed(sl_upconn_t *up, const char *why, sl_up_error_t kind, int uv_err)
{
	uint64_t held_back = 0;
	if (sl_log_enabled(SL_LOG_WARN) && sl_log_limit_pass(&tls_log_limit, uv_now(&up->w->loop), &held_back)) {
		char where[SL_ADDR_STRLEN];
		sl_warn("TLS handshake with upstream %s (%s) failed: %s%s",
		        up->addr.sa.sa_family ? sl_addr_format(&up->addr.sa, where) : up->w->target_authority,
		        up->w->cfg->target_tls_sni ? up->w->cfg->target_tls_sni : up->w->cfg->target_host, why,
		        held_back ? " (and others since the last such line)" : "");
	}
	do_fail(up, kind, uv_err);
}

static void do_ready(sl_upconn_t *up);

/* Decrypts what was fed, while the owner takes it: through do_input, as
 * plain bytes go. A pooled connection must yield nothing. */
static void do_tls_pump(sl_upconn_t *up)
{
	sl_worker_t *w = up->w;
	while ((up->state == UP_ACTIVE && !up->paused) || up->state == UP_IDLE) {
		ssize_t n = sl_tls_read(up->tls, w->tls_plain, SL_TLS_PLAIN_BUF);
		int err = do_tls_flush(up, NULL); /* a read may answer (an alert, a key update) */
		if (err != 0) {
			do_fail(up, up->response_started ? SL_UP_TRUNCATED : SL_UP_CLOSED, err);
			return;
		}
		if (n == 0)
			break;
		if (up->state == UP_IDLE) {
			do_close(up); /* data, an alert or close_notify: no longer usable */
			return;
		}
		if (n > 0) {
			do_input(up, w->tls_plain, n);
			continue;
		}
		if (n == SL_TLS_FAILED)
			sl_debug("TLS from upstream failed: %s", sl_tls_reason(up->tls));
		/* close_notify is the end of the stream; a broken record is a reset */
		do_input(up, NULL, n == SL_TLS_CLOSED ? UV_EOF : UV_EPROTO);
		return;
	}
	if (up->tls_eof && up->state == UP_ACTIVE && !up->paused) {
		/* The transport ended without close_notify: fine for a tunnel,
		 * for HTTP a truncation unless the framing was complete anyway. */
		ssize_t e = up->tls_eof;
		up->tls_eof = 0;
		do_input(up, NULL, up->tunnel || e != UV_EOF ? e : UV_EPROTO);
	}
}

static void on_tls_defer(sl_defer_t *d)
{
	sl_upconn_t *up = (sl_upconn_t *)((char *)d - offsetof(sl_upconn_t, tls_defer));
	do_tls_pump(up);
}

static void do_tls_read(sl_upconn_t *up, ssize_t nread, const char *data)
{
	if (nread < 0) {
		if (up->state == UP_HANDSHAKE) {
			do_tls_failed(up,
			              nread == UV_EOF ? "the upstream closed the connection" : uv_strerror((int)nread),
			              SL_UP_CONNECT, UV_EPROTO);
			return;
		}
		if (up->state == UP_IDLE) {
			do_close(up);
			return;
		}
		uv_read_stop((uv_stream_t *)&up->tcp);
		up->tls_eof = nread;
		do_tls_pump(up);
		return;
	}
	sl_tls_feed(up->tls, data, (size_t)nread);
	if (up->state == UP_HANDSHAKE) {
		int r = sl_tls_handshake(up->tls);
		int err = do_tls_flush(up, NULL);
		if (r == SL_TLS_FAILED) {
			do_tls_failed(up, sl_tls_reason(up->tls), SL_UP_CONNECT, UV_EPROTO);
			return;
		}
		if (err != 0) {
			do_fail(up, SL_UP_CONNECT, err);
			return;
		}
		if (r == 0)
			return;
		do_ready(up);
	}
	do_tls_pump(up);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	sl_upconn_t *up = s->data;
	if (nread == 0 || up->state == UP_CLOSING)
		return;
	if (up->tls) {
		do_tls_read(up, nread, buf->base);
		return;
	}
	do_input(up, buf->base, nread);
}

/* Connected (and through the handshake): to the owner, or to the pool. */
static void do_ready(sl_upconn_t *up)
{
	if (up->warming) {
		up->warming = false;
		up->w->warming--;
		do_park(up);
		return;
	}
	up->state = UP_ACTIVE;
	up->ev->ready(up->owner);
}

static void do_start(sl_upconn_t *up)
{
	int err = uv_read_start((uv_stream_t *)&up->tcp, on_alloc, on_read);
	if (err != 0) {
		do_fail(up, SL_UP_CONNECT, err);
		return;
	}
	sl_worker_t *w = up->w;
	if (w->server->tls_client_ctx == NULL) {
		do_ready(up);
		return;
	}
	const sl_config_t *cfg = w->cfg;
	up->tls =
	    sl_tls_new_client(w->server->tls_client_ctx, cfg->target_tls_sni ? cfg->target_tls_sni : cfg->target_host,
	                      &w->tls_session, &w->tls_out);
	up->state = UP_HANDSHAKE;
	do_arm(up, sl_config_ms(cfg->connect_timeout)); /* the handshake's own connect_timeout, as nginx */
	int r = sl_tls_handshake(up->tls);              /* the ClientHello */
	err = do_tls_flush(up, NULL);
	if (r == SL_TLS_FAILED)
		do_tls_failed(up, sl_tls_reason(up->tls), SL_UP_CONNECT, UV_EPROTO);
	else if (err != 0)
		do_fail(up, SL_UP_CONNECT, err);
}

static void do_connect(sl_upconn_t *up);

static void on_socket_replaced(uv_handle_t *h)
{
	sl_upconn_t *up = h->data;
	up->replacing = false;
	if (up->state != UP_CONNECTING) {
		on_handle_closed(h); /* closed meanwhile: account for the old socket */
		return;
	}
	uv_tcp_init(&up->w->loop, &up->tcp);
	up->tcp_open = true;
	uv_tcp_nodelay(&up->tcp, 1);
	up->tcp.data = up;
	do_connect(up);
}

/* The name has several addresses (IPv6 and IPv4, say): when one fails,
 * the connection tries the next on a fresh socket. False when none is
 * left. */
static bool do_try_next_address(sl_upconn_t *up)
{
	if (++up->addr_tries >= up->w->resolver.naddrs)
		return false;
	up->tcp_open = false;
	up->replacing = true;
	uv_close((uv_handle_t *)&up->tcp, on_socket_replaced);
	return true;
}

static void on_connect(uv_connect_t *req, int status)
{
	sl_upconn_t *up = req->data;
	if (up->state != UP_CONNECTING)
		return; /* closed meanwhile (status is UV_ECANCELED) */
	if (up->replacing)
		return; /* the socket a connect timeout gave up on (UV_ECANCELED) */
	if (status != 0) {
		if (sl_log_enabled(SL_LOG_DEBUG)) {
			char where[SL_ADDR_STRLEN];
			sl_debug("upstream connect to %s failed: %s", sl_addr_format(&up->addr.sa, where),
			         uv_strerror(status));
		}
		/* a refusal is quick: the next address shares the deadline */
		if (!do_try_next_address(up))
			do_fail(up, SL_UP_CONNECT, status);
		return;
	}
	sl_deadline_stop(&up->timer);
	do_start(up);
}

static void do_connect(sl_upconn_t *up)
{
	struct sockaddr_storage addr;
	if (up->addr_tries == 0)
		up->addr_first = sl_resolver_first(&up->w->resolver);
	int err = sl_resolver_pick(&up->w->resolver, up->addr_first + (unsigned)up->addr_tries, &addr);
	if (err != 0) {
		do_fail(up, SL_UP_RESOLVE, err);
		return;
	}
	memcpy(&up->addr, &addr, addr.ss_family == AF_INET6 ? sizeof up->addr.in6 : sizeof up->addr.in);
	up->state = UP_CONNECTING;
	err = uv_tcp_connect(&up->connect_req, &up->tcp, (struct sockaddr *)&addr, on_connect);
	if (err != 0)
		do_fail(up, SL_UP_CONNECT, err);
}

static void on_resolved(sl_resolve_waiter_t *wt, int status)
{
	sl_upconn_t *up = (sl_upconn_t *)((char *)wt - offsetof(sl_upconn_t, rwait));
	if (status != 0) {
		do_fail(up, SL_UP_RESOLVE, status);
		return;
	}
	do_connect(up);
}

static void on_deferred_connect(uv_timer_t *t)
{
	sl_upconn_t *up = t->data;
	if (up->has_pending) {
		on_timer(t);
		return;
	}
	do_arm(up, sl_config_ms(up->w->cfg->connect_timeout));
	if (sl_resolver_status(&up->w->resolver) == UV_EAGAIN) {
		up->state = UP_RESOLVING;
		sl_resolver_wait(&up->w->resolver, &up->rwait, on_resolved);
		return;
	}
	do_connect(up);
}

/* A new connection, connecting from the next loop turn: the caller gets
 * it first and every outcome arrives as a callback. */
static sl_upconn_t *do_open(sl_worker_t *w, const sl_upstream_events_t *ev, void *owner)
{
	sl_upconn_t *up = sl_calloc(1, sizeof *up);
	up->w = w;
	up->ev = ev;
	up->owner = owner;
	up->handles = 2;
	up->state = UP_CONNECTING;
	sl_list_init(&up->pool_link);
	sl_list_insert_tail(&w->upconns, &up->all_link);
	uv_tcp_init(&w->loop, &up->tcp);
	uv_tcp_nodelay(&up->tcp, 1);
	up->tcp_open = true;
	sl_deadline_init(&up->timer, &w->loop, up);
	up->tcp.data = up->connect_req.data = up;
	sl_http1_init(&up->parser, false, &response_callbacks, up, (size_t)w->cfg->max_header_size * 2);
	sl_defer_init(&up->tls_defer, on_tls_defer);
	SL_BUMP(w->pool.created, 1);
	SL_BUMP(w->pool.open, 1);
	sl_deadline_set(&up->timer, 0, on_deferred_connect);
	return up;
}

sl_upconn_t *sl_upstream_acquire(sl_worker_t *w, const sl_upstream_events_t *ev, void *owner)
{
	sl_list_t *link = sl_pool_take(&w->pool);
	if (link == NULL)
		return do_open(w, ev, owner);
	sl_upconn_t *up = sl_list_entry(link, sl_upconn_t, pool_link);
	up->state = UP_ACTIVE;
	up->ev = ev;
	up->owner = owner;
	up->deadline = 0;
	up->reused = true;
	return up;
}

void sl_upstream_tend_pool(sl_worker_t *w, uint32_t warm_target)
{
	if (w->draining)
		return;
	/* Over pool_maxsize in all: close this worker's connections that have
	 * been idle a second (not needed now), oldest first. */
	uint64_t now = uv_now(&w->loop);
	while (sl_pool_excess(&w->pool) > 0) { /* read anew: another worker may be trimming too */
		sl_list_t *link = sl_pool_oldest(&w->pool);
		if (link == NULL)
			break;
		sl_upconn_t *up = sl_list_entry(link, sl_upconn_t, pool_link);
		if (sl_ms_between(up->last_read, now) < SL_POOL_TRIM_IDLE_MS)
			break;
		do_close(up);
	}
	while (w->pool.nidle + w->warming < warm_target) {
		sl_upconn_t *up = do_open(w, NULL, NULL);
		up->warming = true;
		w->warming++;
	}
}

bool sl_upstream_is_ready(const sl_upconn_t *up)
{
	return up->state == UP_ACTIVE;
}

int sl_upstream_send_head(sl_upconn_t *up, const char *head, size_t len, const uv_buf_t *body, unsigned nbody,
                          sl_up_expect_t expect)
{
	sl_worker_t *w = up->w;
	up->request_written = up->request_done = false;
	up->response_started = up->response_done = up->extra_bytes = false;
	up->has_pending = false;
	up->error_status = 0;
	up->expect = expect;
	sl_http1_reset(&up->parser);
	up->last_write = up->last_read = uv_now(&w->loop);
	do_arm(up, sl_config_ms(w->cfg->write_timeout));
	uv_buf_t bufs[4];
	bufs[0] = uv_buf_init((char *)head, (unsigned)len);
	for (unsigned i = 0; i < nbody && i < 3; i++)
		bufs[i + 1] = body[i];
	return sl_upstream_send(up, bufs, 1 + (nbody < 3 ? nbody : 3));
}

static void on_written_cb(uv_write_t *req, int status)
{
	sl_upconn_t *up = req->handle->data;
	sl_io_write_done(req);
	if (up->state == UP_CLOSING)
		return;
	if (status != 0) {
		do_fail(up, up->state == UP_HANDSHAKE ? SL_UP_CONNECT : SL_UP_WRITE, status);
		return;
	}
	up->last_write = uv_now(&up->w->loop);
	if (up->owner && uv_stream_get_write_queue_size((uv_stream_t *)&up->tcp) <= SL_LOW_WATER)
		up->ev->drain(up->owner);
}

int sl_upstream_send(sl_upconn_t *up, const uv_buf_t *bufs, unsigned n)
{
	if (up->state != UP_ACTIVE || up->has_pending)
		return -1;
	if (up->tunnel)
		up->last_read = uv_now(&up->w->loop); /* activity either way keeps a tunnel open */
	int err;
	if (up->tls) {
		err = sl_tls_write(up->tls, bufs, n) != 0 ? UV_EPROTO : do_tls_flush(up, &up->request_written);
		up->w->tls_out.len = 0; /* a failed write may leave part of a record: not for the next stream */
	} else {
		err = sl_io_write((uv_stream_t *)&up->tcp, bufs, n, on_written_cb, &up->request_written);
	}
	if (err != 0) {
		do_fail_later(up, SL_UP_WRITE, err);
		return -1;
	}
	return uv_stream_get_write_queue_size((uv_stream_t *)&up->tcp) > SL_HIGH_WATER;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	(void)req;
	(void)status; /* a failure shows up as a read error or the close */
}

void sl_upstream_shutdown(sl_upconn_t *up)
{
	if (up->state != UP_ACTIVE || up->shut)
		return;
	up->shut = true;
	up->shutdown_req.data = up;
	if (up->tls) {
		sl_tls_close_notify(up->tls); /* the TLS half-close, before the TCP one */
		bool scratch = false;
		if (sl_tls_flush(up->tls, (uv_stream_t *)&up->tcp, on_written_cb, &scratch) != 0) {
			do_fail_later(up, SL_UP_TRUNCATED, UV_EPIPE);
			return;
		}
	}
	int err = uv_shutdown(&up->shutdown_req, (uv_stream_t *)&up->tcp, on_shutdown);
	if (err != 0) /* the connection is already failing: say so from the next turn */
		do_fail_later(up, SL_UP_TRUNCATED, err);
}

void sl_upstream_request_done(sl_upconn_t *up)
{
	if (up->state != UP_ACTIVE)
		return;
	up->request_done = true;
	up->last_read = uv_now(&up->w->loop);
	if (!up->has_pending)
		do_arm(up, sl_config_ms(up->w->cfg->read_timeout));
}

void sl_upstream_pause(sl_upconn_t *up)
{
	if (up->paused || up->state != UP_ACTIVE)
		return;
	up->paused = true;
	uv_read_stop((uv_stream_t *)&up->tcp);
}

void sl_upstream_resume(sl_upconn_t *up)
{
	if (!up->paused || up->state != UP_ACTIVE)
		return;
	up->paused = false;
	up->last_read = uv_now(&up->w->loop);
	if (up->tls && (sl_tls_has_input(up->tls) || up->tls_eof)) {
		sl_worker_defer(up->w, &up->tls_defer); /* decrypted from the next turn, before new reads */
		if (up->tls_eof)
			return; /* the transport has ended: nothing more to read */
	}
	int err = uv_read_start((uv_stream_t *)&up->tcp, on_alloc, on_read);
	if (err != 0)
		do_fail_later(up, up->response_started ? SL_UP_TRUNCATED : SL_UP_CLOSED, err);
}

void sl_upstream_set_deadline(sl_upconn_t *up, uint64_t deadline_ms)
{
	up->deadline = deadline_ms; /* the timer takes it at the next phase (do_arm): a new connection's
	                               first timer is its deferred connect, which must not be replaced */
	if (up->state == UP_ACTIVE && !up->has_pending)
		do_cap_by_deadline(up);
}

void sl_upstream_hand_over(sl_upconn_t *up, const sl_upstream_events_t *ev, void *owner)
{
	up->ev = ev;
	up->owner = owner;
	up->deadline = 0;
	sl_upstream_resume(up);
}

void sl_upstream_abort(sl_upconn_t *up)
{
	up->owner = NULL;
	do_close(up);
}

void sl_upstream_close_pool(sl_worker_t *w)
{
	sl_list_t *link;
	while ((link = sl_pool_take(&w->pool)) != NULL) {
		sl_upconn_t *up = sl_list_entry(link, sl_upconn_t, pool_link);
		up->state = UP_ACTIVE; /* already unlinked from the pool */
		do_close(up);
	}
}

void sl_upstream_close_all(sl_worker_t *w)
{
	sl_upstream_close_pool(w);
	sl_list_t *pos, *tmp;
	sl_list_foreach_safe(pos, tmp, &w->upconns)
	{
		sl_upconn_t *up = sl_list_entry(pos, sl_upconn_t, all_link);
		do_fail(up, SL_UP_CLOSED, UV_ECANCELED);
	}
}
