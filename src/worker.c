/* worker.c — see worker.h.
 *
 * Shutdown has two phases, driven by the main thread through w->wake:
 *   drain: close the listeners (new connections are refused), close idle
 *          keep-alive connections and pooled upstream connections, let every
 *          request in progress finish; the loop ends when nothing is left.
 *   stop:  the shutdown timeout passed: close everything now.
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

#define SL_RESOLVE_REFRESH_MS 30000
#define SL_POOL_TEND_MS 1000

static void on_connection(uv_stream_t *listener, int status)
{
	sl_worker_t *w = listener->data;
	if (status != 0) {
		sl_warn("accept failed: %s", uv_strerror(status));
		return;
	}
	sl_client_accept(w, listener, listener == (uv_stream_t *)&w->admin_listener);
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
}

static void do_close_listeners(sl_worker_t *w)
{
	if (w->has_listener) {
		uv_close((uv_handle_t *)&w->listener, NULL);
		w->has_listener = false;
	}
	if (w->has_admin) {
		uv_close((uv_handle_t *)&w->admin_listener, NULL);
		w->has_admin = false;
	}
}

void sl_worker_maybe_finish(sl_worker_t *w)
{
	if (w->draining && w->nclients == 0 && sl_list_empty(&w->upconns))
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
}

static void on_wake(uv_async_t *a)
{
	sl_worker_t *w = a->data;
	do_apply_config(w);
	int phase = atomic_load(&w->server->shutdown_phase);
	if (phase >= 1 && !w->draining) {
		w->draining = true;
		uv_timer_stop(&w->pool_timer);
		do_close_listeners(w);
		sl_upstream_close_pool(w);
		sl_client_drain_all(w, false);
	}
	if (phase >= 2 && !w->stopping) {
		w->stopping = true;
		sl_client_drain_all(w, true);
		sl_upstream_close_all(w);
	}
	sl_worker_maybe_finish(w);
}

int sl_worker_bind(sl_worker_t *w, sl_server_t *s, int id, char *err, size_t errlen)
{
	memset(w, 0, sizeof *w);
	w->id = id;
	w->server = s;
	w->cfg = s->cfg;
	w->admin_fd = -1;
	w->listen_fd = sl_listener_bind(s->cfg->listen_host, s->cfg->listen_port, true, err, errlen);
	if (w->listen_fd < 0)
		return -1;
	if (id == 0 && s->cfg->admin_port) {
		w->admin_fd = sl_listener_bind(s->cfg->listen_host, s->cfg->admin_port, false, err, errlen);
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
	w->rng = uv_hrtime() ^ ((uint64_t)(w->id + 1) * UINT64_C(0x9E3779B97F4A7C15));
	if (w->rng == 0)
		w->rng = 1;
	sl_pool_init(&w->pool, &w->server->pool_idle, (uint32_t)cfg->pool_maxsize);
	w->warm_target = share_of(cfg->pool_connections, w->id, w->server->nworkers);
	w->read_buf = sl_malloc(SL_READ_BUF_SIZE);
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
	while (w->nfree_bufs > 0)
		free(w->free_bufs[--w->nfree_bufs]);
	sl_client_free_requests(w);
}
