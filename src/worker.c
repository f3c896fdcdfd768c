/* worker.c — see worker.h.
 *
 * Shutdown has two phases, driven by the main thread through w->wake:
 *   drain: close the main listener (new connections are refused), close idle
 *          keep-alive connections and pooled upstream connections, let every
 *          request in progress finish; a worker's loop ends when nothing is
 *          left. The admin port (worker 0's) keeps answering until every
 *          worker is done, so probes and scrapes see the drain.
 *   stop:  the shutdown timeout passed: close everything now.
 *
 * At max_connections a worker stops accepting instead of accepting and
 * closing (HAProxy's maxconn): libuv stops polling a listener whose
 * connection callback did not accept, so further connections wait in the
 * kernel's backlog. A close anywhere wakes the paused workers; the admin
 * port has its own small allowance outside the limit.
 */
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "client.h"
#include "listener.h"
#include "log.h"
#include "upstream.h"

#include <openssl/ssl.h>

#define SL_RESOLVE_REFRESH_MS 30000
#define SL_POOL_TEND_MS 1000
#define SL_ADMIN_CONNECTIONS 64 /* admin-port connections, outside max_connections */

/* Takes a place for one more connection, or false when there is none. */
static bool do_reserve(atomic_int *count, int limit)
{
	if (atomic_fetch_add_explicit(count, 1, memory_order_relaxed) < limit)
		return true;
	atomic_fetch_sub_explicit(count, 1, memory_order_relaxed);
	return false;
}

static void do_mark_limit(sl_worker_t *w)
{
	sl_server_t *s = w->server;
	bool was = false;
	if (atomic_compare_exchange_strong(&s->at_limit, &was, true)) {
		atomic_fetch_add_explicit(&s->limit_reached, 1, memory_order_relaxed);
		sl_warn("max_connections (%d) reached: new connections wait in the kernel's backlog until some close "
		        "(the admin port has its own %d)",
		        w->cfg->max_connections, SL_ADMIN_CONNECTIONS);
	}
}

/* Accepts the connection waiting on listener if there is room; otherwise
 * leaves it there, which pauses the listener (libuv) until
 * do_resume_accept. */
static void do_accept_or_pause(sl_worker_t *w, uv_tcp_t *listener)
{
	sl_server_t *s = w->server;
	bool admin = listener == &w->admin_listener;
	atomic_int *count = admin ? &s->admin_connections : &s->connections;
	int limit = admin ? SL_ADMIN_CONNECTIONS : w->cfg->max_connections;
	if (do_reserve(count, limit)) {
		sl_client_accept(w, (uv_stream_t *)listener, admin);
		return;
	}
	/* Paused first, then checked again: a close between the two sees the
	 * flag and wakes us, so no wake-up is lost. */
	bool *paused = admin ? &w->admin_paused : &w->accept_paused;
	*paused = true;
	atomic_fetch_add_explicit(&s->paused_listeners, 1, memory_order_seq_cst);
	if (do_reserve(count, limit)) {
		*paused = false;
		atomic_fetch_sub_explicit(&s->paused_listeners, 1, memory_order_relaxed);
		sl_client_accept(w, (uv_stream_t *)listener, admin);
		return;
	}
	if (!admin)
		do_mark_limit(w);
}

/* A paused listener whose connection still waits: accept it now if a place
 * came free. */
static void do_resume_accept(sl_worker_t *w)
{
	sl_server_t *s = w->server;
	if (w->accept_paused && w->has_listener && do_reserve(&s->connections, w->cfg->max_connections)) {
		w->accept_paused = false;
		atomic_fetch_sub_explicit(&s->paused_listeners, 1, memory_order_relaxed);
		sl_client_accept(w, (uv_stream_t *)&w->listener, false);
	}
	if (w->admin_paused && w->has_admin && do_reserve(&s->admin_connections, SL_ADMIN_CONNECTIONS)) {
		w->admin_paused = false;
		atomic_fetch_sub_explicit(&s->paused_listeners, 1, memory_order_relaxed);
		sl_client_accept(w, (uv_stream_t *)&w->admin_listener, true);
	}
}

static void on_connection(uv_stream_t *listener, int status)
{
	sl_worker_t *w = listener->data;
	if (status != 0) {
		sl_warn("accept failed: %s", uv_strerror(status));
		return;
	}
	do_accept_or_pause(w, (uv_tcp_t *)listener);
}

void sl_worker_connection_closed(sl_worker_t *w, bool admin)
{
	sl_server_t *s = w->server;
	if (admin) {
		w->nadmin--;
		atomic_fetch_sub_explicit(&s->admin_connections, 1, memory_order_relaxed);
	} else {
		w->nclients--;
		int now = atomic_fetch_sub_explicit(&s->connections, 1, memory_order_relaxed) - 1;
		int max = w->cfg->max_connections;
		bool was = true;
		if (now < max - max / 10 && atomic_load_explicit(&s->at_limit, memory_order_relaxed) &&
		    atomic_compare_exchange_strong(&s->at_limit, &was, false))
			sl_info("below max_connections (%d) again: accepting", max);
	}
	if (atomic_load_explicit(&s->paused_listeners, memory_order_seq_cst) > 0) {
		do_resume_accept(w);
		/* Other workers' paused main listeners; not while shutting down,
		 * when they are being closed (and a finished worker's wake-up
		 * handle is gone). */
		if (!admin && atomic_load(&s->shutdown_phase) == 0)
			for (int i = 0; i < s->nworkers; i++)
				if (&s->workers[i] != w)
					uv_async_send(&s->workers[i].wake);
	}
	sl_worker_maybe_finish(w);
}

static void do_close_loop_handles(sl_worker_t *w)
{
	if (w->closed)
		return;
	w->closed = true;
	sl_resolver_close(&w->resolver);
	uv_close((uv_handle_t *)&w->pool_timer, NULL);
	sl_admit_inbox_close(&w->admit_inbox);
	sl_access_log_close(&w->access_log);
	uv_close((uv_handle_t *)&w->wake, NULL);
	uv_close((uv_handle_t *)&w->defer_idle, NULL);
}

static void do_close_listener(sl_worker_t *w, uv_tcp_t *t, bool *has, bool *paused)
{
	if (!*has)
		return;
	if (*paused) {
		*paused = false;
		atomic_fetch_sub_explicit(&w->server->paused_listeners, 1, memory_order_relaxed);
	}
	uv_close((uv_handle_t *)t, NULL);
	*has = false;
}

void sl_worker_maybe_finish(sl_worker_t *w)
{
	sl_server_t *s = w->server;
	if (!w->draining || w->closed || w->nclients > 0 || !sl_list_empty(&w->upconns))
		return;
	if (!w->done) { /* nothing of ours is left: say so once */
		w->done = true;
		if (atomic_fetch_add(&s->workers_done, 1) + 1 == s->nworkers && w->id != 0 &&
		    s->workers[0].admin_fd >= 0 && atomic_load(&s->shutdown_phase) < 2)
			uv_async_send(&s->workers[0].wake); /* the last one: worker 0 may close the admin port */
	}
	/* Worker 0 keeps the admin port until every worker is done (or the
	 * shutdown timeout forces the end). */
	if (w->has_admin && !w->stopping && atomic_load(&s->workers_done) < s->nworkers)
		return;
	do_close_listener(w, &w->admin_listener, &w->has_admin, &w->admin_paused);
	sl_client_drain_all(w, true, true);
	do_close_loop_handles(w);
}

/* Worker i's part of a process-wide count: the remainder goes to the first
 * workers, so the parts add up exactly. */
static uint32_t share_of(int total, int i, int n)
{
	return (uint32_t)(total / n + (i < total % n ? 1 : 0));
}

static void on_pool_timer(uv_timer_t *t)
{
	sl_worker_t *w = t->data;
	sl_upstream_tend_pool(w, w->warm_target);
}

/* SIGHUP published new settings: take them on this worker's thread. */
static void do_apply_config(sl_worker_t *w)
{
	/* The generation first: main publishes the settings, then bumps it, so
	 * the settings read next are at least that new (main frees retired
	 * ones by it). */
	uint64_t gen = __atomic_load_n(&w->server->cfg_gen, __ATOMIC_ACQUIRE);
	const sl_config_t *cfg = sl_server_config(w->server);
	__atomic_store_n(&w->applied_gen, gen, __ATOMIC_RELEASE);
	if (cfg == w->cfg)
		return;
	w->cfg = cfg;
	int n = w->server->nworkers;
	w->pool.max_idle = (uint32_t)cfg->pool_maxsize; /* the process's bound */
	w->warm_target = share_of(cfg->pool_connections, w->id, n);
	w->access_log.format = cfg->access_log_format;
}

static void on_wake(uv_async_t *a)
{
	sl_worker_t *w = a->data;
	do_apply_config(w);
	int phase = atomic_load(&w->server->shutdown_phase);
	if (phase >= 1 && !w->draining) {
		w->draining = true;
		uv_timer_stop(&w->pool_timer);
		do_close_listener(w, &w->listener, &w->has_listener, &w->accept_paused);
		sl_upstream_close_pool(w);
		sl_client_drain_all(w, false, false);
	}
	if (phase >= 2 && !w->stopping) {
		w->stopping = true;
		do_close_listener(w, &w->admin_listener, &w->has_admin, &w->admin_paused);
		sl_client_drain_all(w, true, true);
		sl_upstream_close_all(w);
	}
	if (!w->closed)
		do_resume_accept(w); /* a close on another worker made room */
	sl_worker_maybe_finish(w);
}

int sl_worker_bind(sl_worker_t *w, sl_server_t *s, int id, char *err, size_t errlen)
{
	memset(w, 0, sizeof *w);
	w->id = id;
	w->server = s;
	w->cfg = s->cfg;
	w->admin_fd = -1;
	/* Worker 0 checks that no other process listens on the port first: the
	 * workers' SO_REUSEPORT sockets would share it silently. */
	if (id == 0 && !s->cfg->reuse_port &&
	    sl_listener_probe(s->cfg->listen_host, s->cfg->listen_port, "--listen-port", err, errlen) < 0)
		return -1;
	w->listen_fd =
	    sl_listener_bind(s->cfg->listen_host, s->cfg->listen_port, SL_LISTEN_WORKER, "--listen-port", err, errlen);
	if (w->listen_fd < 0)
		return -1;
	if (id == 0 && s->cfg->admin_port) {
		w->admin_fd = sl_listener_bind(s->cfg->listen_host, s->cfg->admin_port, SL_LISTEN_ALONE, "--admin-port",
		                               err, errlen);
		if (w->admin_fd < 0)
			return -1;
	}
	return 0;
}

static int do_open_listener(sl_worker_t *w, uv_tcp_t *t, int fd)
{
	uv_tcp_init(&w->loop, t);
	t->data = w;
	int err = uv_tcp_open(t, fd);
	if (err == 0)
		err = uv_listen((uv_stream_t *)t, 4096, on_connection);
	return err;
}

static void worker_main(void *arg)
{
	sl_worker_t *w = arg;
	uv_run(&w->loop, UV_RUN_DEFAULT);
	atomic_fetch_add(&w->server->workers_exited, 1);
	uv_async_send(w->server->worker_exited);
}

int sl_worker_prepare(sl_worker_t *w)
{
	const sl_config_t *cfg = w->cfg;
	int err = uv_loop_init(&w->loop);
	if (err)
		return err;
	w->loop.data = w;
	sl_list_init(&w->clients);
	sl_list_init(&w->upconns);
	sl_metrics_init(&w->metrics);
	sl_access_log_init(&w->access_log, &w->loop, w->server->access_log_fd);
	w->access_log.format = cfg->access_log_format;
	w->rng = uv_hrtime() ^ ((uint64_t)(w->id + 1) * UINT64_C(0x9E3779B97F4A7C15));
	if (w->rng == 0)
		w->rng = 1;
	sl_pool_init(&w->pool, &w->server->pool_idle, (uint32_t)cfg->pool_maxsize);
	w->warm_target = share_of(cfg->pool_connections, w->id, w->server->nworkers);
	w->read_buf = sl_malloc(SL_READ_BUF_SIZE);
	if (w->server->tls_client_ctx)
		w->tls_plain = sl_malloc(SL_TLS_PLAIN_BUF);
	sl_list_init(&w->deferred);
	uv_idle_init(&w->loop, &w->defer_idle);
	w->defer_idle.data = w;
	uv_async_init(&w->loop, &w->wake, on_wake);
	sl_admit_inbox_init(&w->admit_inbox, &w->server->admit, &w->loop);
	w->wake.data = w;
	sl_resolver_init(&w->resolver, &w->loop, cfg->target_host, cfg->target_port, SL_RESOLVE_REFRESH_MS);
	bool v6 = strchr(cfg->target_host, ':') != NULL;
	if (cfg->target_port == 80)
		snprintf(w->target_authority, sizeof w->target_authority, v6 ? "[%s]" : "%s", cfg->target_host);
	else
		snprintf(w->target_authority, sizeof w->target_authority, v6 ? "[%s]:%d" : "%s:%d", cfg->target_host,
		         cfg->target_port);
	uv_timer_init(&w->loop, &w->pool_timer);
	w->pool_timer.data = w;
	uv_timer_start(&w->pool_timer, on_pool_timer, 0, SL_POOL_TEND_MS);
	if ((err = do_open_listener(w, &w->listener, w->listen_fd)) != 0)
		return err;
	w->has_listener = true;
	if (w->admin_fd >= 0) {
		if ((err = do_open_listener(w, &w->admin_listener, w->admin_fd)) != 0)
			return err;
		w->has_admin = true;
	}
	return 0;
}

int sl_worker_start(sl_worker_t *w)
{
	return uv_thread_create(&w->thread, worker_main, w);
}

char *sl_worker_get_buffer(sl_worker_t *w)
{
	return w->nfree_bufs > 0 ? w->free_bufs[--w->nfree_bufs] : sl_malloc(SL_CLIENT_BUF);
}

void sl_worker_put_buffer(sl_worker_t *w, char *buf)
{
	if (w->nfree_bufs < SL_FREE_BUFS)
		w->free_bufs[w->nfree_bufs++] = buf;
	else
		free(buf);
}

void sl_defer_init(sl_defer_t *d, void (*fn)(sl_defer_t *d))
{
	sl_list_init(&d->link);
	d->fn = fn;
}

static void on_defer_idle(uv_idle_t *h)
{
	sl_worker_t *w = h->data;
	/* What runs now may defer again: that waits for the next turn. */
	sl_list_t now;
	sl_list_init(&now);
	if (!sl_list_empty(&w->deferred)) {
		now.next = w->deferred.next;
		now.prev = w->deferred.prev;
		now.next->prev = now.prev->next = &now;
		sl_list_init(&w->deferred);
	}
	while (!sl_list_empty(&now)) {
		sl_defer_t *d = sl_list_entry(now.next, sl_defer_t, link);
		sl_list_remove(&d->link);
		d->fn(d);
	}
	if (sl_list_empty(&w->deferred))
		uv_idle_stop(&w->defer_idle);
}

void sl_worker_defer(sl_worker_t *w, sl_defer_t *d)
{
	if (d->link.next != &d->link)
		return; /* already due */
	sl_list_insert_tail(&w->deferred, &d->link);
	uv_idle_start(&w->defer_idle, on_defer_idle);
}

void sl_defer_cancel(sl_defer_t *d)
{
	sl_list_remove(&d->link);
}

double sl_worker_random(sl_worker_t *w)
{
	/* xorshift64*: plenty for jitter, and no lock or syscall */
	uint64_t x = w->rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	w->rng = x;
	return (double)((x * UINT64_C(2685821657736338717)) >> 11) / 9007199254740992.0;
}

void sl_worker_signal(sl_worker_t *w)
{
	uv_async_send(&w->wake);
}

void sl_worker_join(sl_worker_t *w)
{
	uv_thread_join(&w->thread);
	uv_loop_close(&w->loop);
	free(w->read_buf);
	w->read_buf = NULL;
	free(w->tls_plain);
	sl_buf_dispose(&w->tls_out);
	if (w->tls_session)
		SSL_SESSION_free(w->tls_session);
	while (w->nfree_bufs > 0)
		free(w->free_bufs[--w->nfree_bufs]);
	sl_client_free_requests(w);
}
