/* worker.c — one sluice-load thread: a libuv loop, its connections, its
 * share of the requests, its counters.
 *
 * A connection is free (on the `idle` list when its socket is open, on
 * `cold` when closed) or busy with exactly one request. do_pump() is the one
 * place that starts requests: it pairs the next due request with a free
 * connection, preferring an open one, until it runs out of either. It runs
 * at start, when a connection becomes free, and (open loop) when the pace
 * timer says the next request is due.
 *
 * Open loop: a request that is due while no connection is free gets a new
 * one, up to the worker's share of --max-concurrent (`maxconns`); the
 * `conns` array is allocated at that size up front so that a connection
 * never moves (libuv holds pointers to its handles), and calloc leaves the
 * unused tail untouched. Only at the cap does a due request stay due: the
 * worker is then `behind`, and every request it sends until the schedule
 * is ahead again (the next one not yet due) counts as late. Its latency is
 * measured from when it was due, so the wait counts (no coordinated
 * omission).
 *
 * Socket states: CLOSED -> CONNECTING -> OPEN -> CLOSING -> CLOSED. A busy
 * connection that fails is closed; on_close() returns it to `cold`, and the
 * next request on it connects again.
 *
 * Per request, in the steady closed loop: one read(), one llhttp_execute(),
 * one clock read, one write() by uv_try_write(), no allocation, no timer
 * operation — timeouts are found by one sweep timer that scans the
 * connections a few times per --timeout.
 *
 * Invariants: inflight == number of busy connections; a connection is on a
 * list iff it is free and its socket is OPEN (idle) or CLOSED (cold);
 * nconns <= maxconns, and conns[nconns..maxconns) were never used.
 */
#include "worker.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/timerfd.h>
#endif

#include <llhttp.h>
#include <uv.h>

#include "buf.h"
#include "io.h"
#include "tls.h"

#define READ_BUF_SIZE 65536

typedef enum { SOCK_CLOSED, SOCK_CONNECTING, SOCK_OPEN, SOCK_CLOSING } sock_state_t;

typedef struct conn conn_t;

struct conn {
	uv_tcp_t tcp;
	uv_connect_t connect_req;
	uv_write_t write_req;
	llhttp_t parser;
	sl_load_worker_t *w;
	conn_t *prev, *next;  /* on a free list */
	conn_t **list;        /* which free list, NULL while busy or closing */
	uint64_t intended_ns; /* latency counts from here */
	uint64_t deadline_ns; /* --timeout */
	sock_state_t sock;
	uint16_t status;
	bool busy;     /* carries a request */
	bool writing;  /* a uv_write() of the request is pending */
	bool done;     /* the response is complete */
	bool keep;     /* ...and allows the connection to be reused */
	sl_tls_t *tls; /* https://: the stream over this connection (src/tls.h) */
};

struct sl_load_worker {
	const sl_load_plan_t *plan;
	unsigned index;
	sl_load_worker_done_cb done_cb;
	void *done_arg;
	uv_thread_t thread;
	uv_loop_t loop;
	uv_timer_t sweep;    /* timeouts and interruption */
	uv_timer_t pace;     /* open loop: the next request is due (whole ms) */
	uv_poll_t pace_poll; /* ...or a timerfd, to the ns, where there is one */
	int pace_fd;         /* -1 without */
	uv_buf_t request;
	conn_t *conns;   /* maxconns of them, the first nconns in use */
	unsigned nconns; /* closed loop: fixed; open loop: grows up to maxconns */
	unsigned maxconns;
	unsigned lost;     /* connections that could not even be initialised */
	conn_t *idle;      /* free, socket open: used first */
	conn_t *cold;      /* free, socket closed */
	uint64_t issued;   /* requests started */
	uint64_t limit;    /* requests this worker may start */
	uint64_t inflight; /* busy connections */
	uint64_t pace_due; /* what the pace timer is armed for; 0 when not */
	double ns_per_req; /* open loop: schedule spacing of the whole run */
	bool pumping;      /* do_pump() is on the stack */
	bool behind;       /* open loop: a due request found every allowed connection busy */
	bool finishing;    /* all done: handles are closing */
	sl_load_stats_t stats;
	/* open loop, for the progress line: when the oldest request still
	 * waiting for a connection was due; 0 when none is */
	_Atomic uint64_t pub_wait_since;
	char rbuf[READ_BUF_SIZE]; /* every read of this thread lands here, parsed at once */
	sl_buf_t tls_out;         /* https://: what this thread's streams send, flushed at once */
	char plain[16384];        /* https://: one record decrypted, parsed at once */
};

static atomic_int interrupted;

static void do_pump(sl_load_worker_t *w, uint64_t now);
static void do_send(conn_t *c);
static int on_headers_complete(llhttp_t *p);
static int on_message_complete(llhttp_t *p);

static const llhttp_settings_t parser_settings = {
    .on_headers_complete = on_headers_complete,
    .on_message_complete = on_message_complete,
};

/* --- free lists ----------------------------------------------------------- */

static void do_list_push(conn_t **list, conn_t *c)
{
	c->prev = NULL;
	c->next = *list;
	if (*list)
		(*list)->prev = c;
	*list = c;
	c->list = list;
}

static void do_list_remove(conn_t *c)
{
	if (!c->list)
		return;
	if (c->prev)
		c->prev->next = c->next;
	else
		*c->list = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	c->list = NULL;
}

/* --- outcomes ------------------------------------------------------------- */

static sl_load_err_t do_classify(int uv_err)
{
	switch (uv_err) {
	case UV_ECONNRESET:
	case UV_EPIPE:
	case UV_ECONNABORTED:
	case UV_EOF: return SL_LOAD_ERR_RESET;
	case UV_ETIMEDOUT: return SL_LOAD_ERR_TIMEOUT;
	default: return SL_LOAD_ERR_OTHER;
	}
}

static void on_close(uv_handle_t *h)
{
	conn_t *c = h->data;
	sl_load_worker_t *w = c->w;
	c->sock = SOCK_CLOSED;
	c->writing = false;
	sl_tls_free(c->tls);
	c->tls = NULL;
	if (w->finishing)
		return;
	do_list_push(&w->cold, c);
	do_pump(w, uv_hrtime());
}

static void do_close(conn_t *c)
{
	if (c->sock == SOCK_CLOSED || c->sock == SOCK_CLOSING)
		return;
	do_list_remove(c);
	c->sock = SOCK_CLOSING;
	uv_close((uv_handle_t *)&c->tcp, on_close);
}

/* The request on c has ended: c is free again, open or closing. */
static void do_release(conn_t *c, bool close)
{
	c->busy = false;
	c->w->inflight--;
	if (close || c->sock != SOCK_OPEN)
		do_close(c);
	else
		do_list_push(&c->w->idle, c);
}

static void do_fail(conn_t *c, sl_load_err_t kind)
{
	sl_load_stats_error(&c->w->stats, kind);
	do_release(c, true);
	do_pump(c->w, uv_hrtime());
}

static void do_complete(conn_t *c, bool must_close)
{
	sl_load_worker_t *w = c->w;
	uint64_t now = uv_hrtime();
	sl_load_stats_response(&w->stats, c->status, (now - c->intended_ns) / 1000);
	do_release(c, must_close || c->writing || !c->keep || !w->plan->keepalive);
	do_pump(w, now);
}

/* --- parsing -------------------------------------------------------------- */

static int on_headers_complete(llhttp_t *p)
{
	conn_t *c = p->data;
	return c->w->plan->head ? 1 : 0; /* 1: no body follows */
}

static int on_message_complete(llhttp_t *p)
{
	conn_t *c = p->data;
	/* interim responses (100 Continue, 103 Early Hints) precede the real one */
	if (p->status_code >= 100 && p->status_code < 200 && p->status_code != 101)
		return 0;
	c->done = true;
	c->status = p->status_code;
	c->keep = llhttp_should_keep_alive(p);
	return HPE_PAUSED; /* stop right after it: anything more is not ours */
}

/* --- socket callbacks ----------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	conn_t *c = h->data;
	buf->base = c->w->rbuf;
	buf->len = sizeof(c->w->rbuf);
}

/* Response bytes (plain or decrypted), or the end (nread < 0). */
static void do_input(conn_t *c, const char *data, ssize_t nread)
{
	if (nread > 0) {
		c->w->stats.bytes += (uint64_t)nread;
		if (!c->busy) { /* bytes nobody asked for: the connection is unusable */
			do_close(c);
			return;
		}
		llhttp_errno_t e = llhttp_execute(&c->parser, data, (size_t)nread);
		if (e == HPE_PAUSED) {
			bool extra = llhttp_get_error_pos(&c->parser) != data + nread;
			llhttp_resume(&c->parser);
			do_complete(c, extra);
		} else if (e != HPE_OK) {
			do_fail(c, SL_LOAD_ERR_OTHER);
		}
		return;
	}
	if (nread == 0)
		return;
	if (!c->busy) { /* the server closed an idle keep-alive connection */
		do_close(c);
		return;
	}
	if (nread == UV_EOF) {
		llhttp_finish(&c->parser); /* completes a close-delimited body */
		if (c->done)
			do_complete(c, true);
		else
			do_fail(c, SL_LOAD_ERR_RESET);
		return;
	}
	do_fail(c, do_classify((int)nread));
}

/* --- https:// --------------------------------------------------------------- */

static void on_tls_write(uv_write_t *req, int status)
{
	conn_t *c = req->handle->data;
	sl_io_write_done(req);
	c->writing = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > 0;
	if (status < 0 && status != UV_ECANCELED && c->busy && c->sock == SOCK_OPEN)
		do_fail(c, do_classify(status));
}

/* Writes what the stream produced; false (the request failed) if it cannot. */
static bool do_tls_flush(conn_t *c)
{
	int rc = sl_tls_flush(c->tls, (uv_stream_t *)&c->tcp, on_tls_write, NULL);
	if (rc == 0) {
		c->writing = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > 0;
		return true;
	}
	c->w->tls_out.len = 0;
	if (c->busy)
		do_fail(c, do_classify(rc));
	else
		do_close(c);
	return false;
}

static void do_tls_read(conn_t *c, ssize_t nread, const char *data)
{
	if (nread < 0 && !sl_tls_handshake_done(c->tls)) {
		if (c->busy)
			do_fail(c, SL_LOAD_ERR_CONNECT);
		else
			do_close(c);
		return;
	}
	if (nread < 0) {
		do_input(c, NULL, nread);
		return;
	}
	sl_tls_feed(c->tls, data, (size_t)nread);
	if (!sl_tls_handshake_done(c->tls)) {
		int r = sl_tls_handshake(c->tls);
		if (!do_tls_flush(c))
			return;
		if (r == SL_TLS_FAILED) {
			if (c->busy)
				do_fail(c, SL_LOAD_ERR_CONNECT); /* counted as a connect error, as a refusal */
			else
				do_close(c);
			return;
		}
		if (r == 0)
			return;
		if (c->busy)
			do_send(c); /* the request waited for the handshake */
	}
	while (c->sock == SOCK_OPEN && c->tls) {
		ssize_t n = sl_tls_read(c->tls, c->w->plain, sizeof c->w->plain);
		if (!do_tls_flush(c))
			return;
		if (n == 0)
			return;
		if (n < 0) { /* close_notify: an EOF; a broken record: a reset */
			do_input(c, NULL, n == SL_TLS_CLOSED ? UV_EOF : UV_ECONNRESET);
			return;
		}
		do_input(c, c->w->plain, n);
	}
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	conn_t *c = s->data;
	if (nread == 0)
		return;
	if (c->tls) {
		do_tls_read(c, nread, buf->base);
		return;
	}
	do_input(c, buf->base, nread);
}

static void on_write(uv_write_t *req, int status)
{
	conn_t *c = req->data;
	c->writing = false;
	if (status == 0 || status == UV_ECANCELED)
		return;
	if (c->busy && c->sock == SOCK_OPEN)
		do_fail(c, do_classify(status));
}

static void on_connect(uv_connect_t *req, int status)
{
	conn_t *c = req->data;
	if (c->sock != SOCK_CONNECTING) /* closed meanwhile (timeout, interrupt) */
		return;
	if (status < 0) {
		do_fail(c, SL_LOAD_ERR_CONNECT);
		return;
	}
	c->sock = SOCK_OPEN;
	uv_tcp_nodelay(&c->tcp, 1);
	llhttp_init(&c->parser, HTTP_RESPONSE, &parser_settings);
	c->parser.data = c;
	int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	if (rc) {
		do_fail(c, SL_LOAD_ERR_OTHER);
		return;
	}
	if (c->w->plan->tls) { /* the request goes once the handshake is done */
		c->tls = sl_tls_new_client(c->w->plan->tls, c->w->plan->tls_name, NULL, &c->w->tls_out);
		int r = sl_tls_handshake(c->tls);
		if (do_tls_flush(c) && r == SL_TLS_FAILED)
			do_fail(c, SL_LOAD_ERR_CONNECT);
		return;
	}
	do_send(c);
}

/* --- starting requests ---------------------------------------------------- */

static void do_send(conn_t *c)
{
	sl_load_worker_t *w = c->w;
	c->done = false;
	if (c->tls) {
		if (sl_tls_write(c->tls, &w->request, 1) != 0) {
			w->tls_out.len = 0;
			do_fail(c, SL_LOAD_ERR_OTHER);
			return;
		}
		do_tls_flush(c);
		return;
	}
	int n = uv_try_write((uv_stream_t *)&c->tcp, &w->request, 1);
	if (n == (int)w->request.len)
		return;
	if (n == UV_EAGAIN)
		n = 0;
	if (n < 0) {
		do_fail(c, do_classify(n));
		return;
	}
	/* the rest (a large body, a full socket buffer) goes the slow way; the
	 * request bytes are immutable, so they need no copy */
	uv_buf_t rest = uv_buf_init(w->request.base + n, w->request.len - (size_t)n);
	c->write_req.data = c;
	int rc = uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &rest, 1, on_write);
	if (rc) {
		do_fail(c, do_classify(rc));
		return;
	}
	c->writing = true;
}

static void do_connect(conn_t *c)
{
	sl_load_worker_t *w = c->w;
	int rc = uv_tcp_init(&w->loop, &c->tcp);
	if (rc) {
		/* no handle, so nothing to close: this connection is out of the
		 * game (uv_tcp_init only allocates; this does not happen in practice) */
		sl_load_stats_error(&w->stats, SL_LOAD_ERR_OTHER);
		c->busy = false;
		w->inflight--;
		if (++w->lost == w->maxconns)
			w->limit = w->issued;
		return;
	}
	c->tcp.data = c;
	c->connect_req.data = c;
	c->sock = SOCK_CONNECTING;
	rc = uv_tcp_connect(&c->connect_req, &c->tcp, w->plan->addr, on_connect);
	if (rc)
		do_fail(c, SL_LOAD_ERR_CONNECT);
}

/* Open loop: a request is due and every connection is busy, but the cap
 * allows one more. Its socket opens when the request is dispatched on it. */
static conn_t *do_grow(sl_load_worker_t *w)
{
	conn_t *c = &w->conns[w->nconns++];
	c->w = w;
	c->tcp.data = c;
	w->stats.connections = w->nconns;
	atomic_store_explicit(&w->stats.pub_connections, w->nconns, memory_order_relaxed);
	return c;
}

/* c is free; give it the request that was due at `intended`. */
static void do_dispatch(conn_t *c, uint64_t intended, uint64_t now)
{
	sl_load_worker_t *w = c->w;
	do_list_remove(c);
	c->busy = true;
	c->intended_ns = intended;
	c->deadline_ns = now + w->plan->timeout_ns;
	w->inflight++;
	w->issued++;
	if (c->sock == SOCK_OPEN)
		do_send(c);
	else
		do_connect(c);
}

static uint64_t do_intended(const sl_load_worker_t *w, uint64_t k)
{
	double j = (double)k * w->plan->threads + w->index; /* place in the whole run's schedule */
	return w->plan->start_ns + (uint64_t)(j * w->ns_per_req);
}

/* How many of this worker's requests are due before the end but not sent. */
static uint64_t do_count_unsent(const sl_load_worker_t *w)
{
	double x = ((double)(w->plan->end_ns - w->plan->start_ns) / w->ns_per_req - w->index) / w->plan->threads;
	uint64_t n = x > 0 ? (uint64_t)ceil(x) : 0; /* estimate; fixed up exactly below */
	while (n > 0 && do_intended(w, n - 1) >= w->plan->end_ns)
		n--;
	while (do_intended(w, n) < w->plan->end_ns)
		n++;
	return n > w->issued ? n - w->issued : 0;
}

static void on_pace(uv_timer_t *t)
{
	sl_load_worker_t *w = t->data;
	w->pace_due = 0;
	do_pump(w, uv_hrtime());
}

static void on_pace_fd(uv_poll_t *p, int status, int events)
{
	sl_load_worker_t *w = p->data;
	uint64_t expirations;
	if (read(w->pace_fd, &expirations, sizeof(expirations)) < 0) /* EAGAIN: re-armed meanwhile */
		return;
	w->pace_due = 0;
	do_pump(w, uv_hrtime());
}

/* Wakes the worker when the next request is due. libuv's timers count whole
 * milliseconds, which would add up to 1 ms of our own lateness to every
 * open-loop latency; a timerfd on the clock uv_hrtime() reads (monotonic)
 * fires within microseconds. */
static void do_arm_pace(sl_load_worker_t *w, uint64_t due, uint64_t now)
{
	if (w->pace_due == due)
		return;
	w->pace_due = due;
#ifdef __linux__
	if (w->pace_fd >= 0) {
		struct itimerspec its = {
		    .it_value = {.tv_sec = (time_t)(due / 1000000000), .tv_nsec = (long)(due % 1000000000)}};
		if (timerfd_settime(w->pace_fd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
			return;
	}
#endif
	uint64_t ms = (due - now + 999999) / 1000000;
	uv_timer_start(&w->pace, on_pace, ms, 0);
}

static void do_open_pace_fd(sl_load_worker_t *w)
{
	w->pace_fd = -1;
#ifdef __linux__
	if (w->ns_per_req <= 0)
		return;
	int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (fd < 0)
		return;
	if (uv_poll_init(&w->loop, &w->pace_poll, fd) != 0) {
		close(fd);
		return;
	}
	w->pace_poll.data = w;
	w->pace_fd = fd;
	uv_poll_start(&w->pace_poll, UV_READABLE, on_pace_fd);
#endif
}

static void do_finish(sl_load_worker_t *w)
{
	w->finishing = true;
	uv_close((uv_handle_t *)&w->sweep, NULL);
	uv_close((uv_handle_t *)&w->pace, NULL);
	if (w->pace_fd >= 0)
		uv_close((uv_handle_t *)&w->pace_poll, NULL);
	for (unsigned i = 0; i < w->nconns; i++)
		do_close(&w->conns[i]);
}

/* Starts every request that is due and has a free connection; finishes the
 * worker when nothing is left to start or wait for. Re-entrant calls (a
 * request failing synchronously inside it) return at once: the outer loop
 * carries on. */
static void do_pump(sl_load_worker_t *w, uint64_t now)
{
	if (w->pumping || w->finishing)
		return;
	w->pumping = true;
	while (w->issued < w->limit) {
		uint64_t due = now;
		if (w->ns_per_req > 0) {
			due = do_intended(w, w->issued);
			if (due >= w->plan->end_ns) {
				w->limit = w->issued;
				break;
			}
			if (due > now) {
				w->behind = false; /* caught up with the schedule */
				do_arm_pace(w, due, now);
				break;
			}
		} else if (now >= w->plan->end_ns) {
			w->limit = w->issued;
			break;
		}
		conn_t *c = w->idle ? w->idle : w->cold;
		if (!c && w->nconns < w->maxconns)
			c = do_grow(w);
		if (!c) {
			/* open loop, every connection allowed is busy: the request
			 * waits for one to come free, and past the end what is
			 * still due is reported as unsent rather than prolonging
			 * the run */
			if (w->ns_per_req > 0) {
				w->behind = true;
				if (now >= w->plan->end_ns) {
					w->stats.unsent = do_count_unsent(w);
					w->limit = w->issued;
				}
			}
			break;
		}
		if (w->behind) {
			w->stats.late++;
			atomic_store_explicit(&w->stats.pub_late, w->stats.late, memory_order_relaxed);
		}
		do_dispatch(c, due, now);
	}
	w->pumping = false;
	uint64_t waiting = w->behind && w->issued < w->limit ? do_intended(w, w->issued) : 0;
	atomic_store_explicit(&w->pub_wait_since, waiting, memory_order_relaxed);
	if (w->issued >= w->limit && w->inflight == 0)
		do_finish(w);
}

/* Interrupted: requests in flight are dropped without being counted. */
static void do_stop(sl_load_worker_t *w)
{
	w->limit = w->issued;
	for (unsigned i = 0; i < w->nconns; i++) {
		conn_t *c = &w->conns[i];
		if (c->busy) {
			c->busy = false;
			w->inflight--;
			do_close(c);
		}
	}
	do_pump(w, uv_hrtime());
}

static void on_sweep(uv_timer_t *t)
{
	sl_load_worker_t *w = t->data;
	if (atomic_load_explicit(&interrupted, memory_order_relaxed)) {
		do_stop(w);
		return;
	}
	uint64_t now = uv_hrtime();
	for (unsigned i = 0; i < w->nconns && !w->finishing; i++) {
		conn_t *c = &w->conns[i];
		if (c->busy && now >= c->deadline_ns) /* a connect that takes too long is a connect error */
			do_fail(c, c->sock == SOCK_CONNECTING ? SL_LOAD_ERR_CONNECT : SL_LOAD_ERR_TIMEOUT);
	}
}

/* --- the thread ----------------------------------------------------------- */

static void on_thread(void *arg)
{
	sl_load_worker_t *w = arg;
	int rc = uv_loop_init(&w->loop);
	if (rc) {
		fprintf(stderr, "sluice-load: cannot start an event loop: %s.\n", uv_strerror(rc));
		w->done_cb(w->done_arg);
		return;
	}
	uv_timer_init(&w->loop, &w->sweep);
	uv_timer_init(&w->loop, &w->pace);
	w->sweep.data = w->pace.data = w;
	do_open_pace_fd(w);
	/* a timeout is noticed within 1/20 of itself (at most 100 ms) late */
	uint64_t sweep_ms = w->plan->timeout_ns / 20000000;
	sweep_ms = sweep_ms < 1 ? 1 : sweep_ms > 100 ? 100 : sweep_ms;
	uv_timer_start(&w->sweep, on_sweep, sweep_ms, sweep_ms);
	do_pump(w, uv_hrtime());
	uv_run(&w->loop, UV_RUN_DEFAULT);
	uv_loop_close(&w->loop);
	if (w->pace_fd >= 0)
		close(w->pace_fd);
	w->done_cb(w->done_arg);
}

sl_load_worker_t *sl_load_worker_new(const sl_load_plan_t *plan, unsigned index, sl_load_worker_done_cb done, void *arg)
{
	sl_load_worker_t *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	unsigned t = plan->threads;
	w->plan = plan;
	w->index = index;
	w->done_cb = done;
	w->done_arg = arg;
	w->pace_fd = -1;
	w->request = uv_buf_init((char *)plan->request, (unsigned)plan->request_len);
	/* every T-th request of the run, starting with the index-th */
	w->limit = plan->total ? (plan->total > index ? (plan->total - index + t - 1) / t : 0) : UINT64_MAX;
	w->nconns = plan->connections / t + (index < plan->connections % t);
	w->maxconns = w->nconns;
	if (plan->rate > 0) {
		w->ns_per_req = 1e9 / plan->rate;
		/* split like the connections, so the shares add up to the cap */
		unsigned share = plan->max_connections / t + (index < plan->max_connections % t);
		if (share > w->maxconns)
			w->maxconns = share;
	}
	if (w->maxconns > w->limit)
		w->maxconns = (unsigned)w->limit;
	if (w->nconns > w->maxconns)
		w->nconns = w->maxconns;
	sl_load_stats_init(&w->stats);
	w->stats.connections = w->nconns;
	atomic_init(&w->stats.pub_connections, w->nconns);
	atomic_init(&w->pub_wait_since, 0);
	w->conns = calloc(w->maxconns ? w->maxconns : 1, sizeof(*w->conns));
	if (!w->conns) {
		free(w);
		return NULL;
	}
	for (unsigned i = w->nconns; i-- > 0;) {
		w->conns[i].w = w;
		w->conns[i].tcp.data = &w->conns[i];
		do_list_push(&w->cold, &w->conns[i]);
	}
	return w;
}

int sl_load_worker_start(sl_load_worker_t *w)
{
	return uv_thread_create(&w->thread, on_thread, w);
}

void sl_load_worker_join(sl_load_worker_t *w)
{
	uv_thread_join(&w->thread);
}

const sl_load_stats_t *sl_load_worker_stats(const sl_load_worker_t *w)
{
	return &w->stats;
}

void sl_load_worker_free(sl_load_worker_t *w)
{
	if (!w)
		return;
	free(w->conns);
	sl_buf_dispose(&w->tls_out);
	free(w);
}

void sl_load_worker_progress(const sl_load_worker_t *w, uint64_t now, sl_load_progress_t *p)
{
	const sl_load_stats_t *st = &w->stats;
	p->done += atomic_load_explicit(&st->pub_done, memory_order_relaxed);
	p->errors += atomic_load_explicit(&st->pub_errors, memory_order_relaxed);
	p->connections += atomic_load_explicit(&st->pub_connections, memory_order_relaxed);
	p->behind += atomic_load_explicit(&st->pub_late, memory_order_relaxed);
	/* the requests waiting now: this worker's share of the schedule from
	 * the oldest one's due time to now (nothing is due at or after the end) */
	uint64_t since = atomic_load_explicit(&w->pub_wait_since, memory_order_relaxed);
	uint64_t until = now < w->plan->end_ns ? now : w->plan->end_ns - 1;
	if (since && until >= since)
		p->behind += (uint64_t)((double)(until - since) / (w->ns_per_req * w->plan->threads)) + 1;
}

void sl_load_worker_interrupt(void)
{
	atomic_store_explicit(&interrupted, 1, memory_order_relaxed);
}

bool sl_load_worker_interrupted(void)
{
	return atomic_load_explicit(&interrupted, memory_order_relaxed) != 0;
}
