/* main.c — start-up, signals, workers, shutdown.
 *
 * The main thread parses the settings, binds every listening socket (so a
 * port in use fails before anything starts), starts the workers, then only
 * waits for signals: SIGTERM/SIGINT begin a graceful drain bounded by
 * shutdown_timeout; a second signal, or the timeout, closes everything.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "buf.h"
#include "cluster.h"
#include "config.h"
#include "log.h"
#include "tls.h"
#include "worker.h"

typedef struct {
	sl_server_t server;
	int argc;
	char **argv;
	struct retired { /* replaced settings a worker may still read */
		sl_config_t *cfg;
		uint64_t gen; /* cfg_gen while it was in force */
	} * retired;
	int nretired;
	uv_loop_t *loop;
	uv_signal_t sigterm, sigint, sighup, sigusr1;
	uv_timer_t shutdown_timer;
	uv_async_t worker_exited;
	sl_config_t *first_cfg;         /* the settings at start (static storage) */
	sl_cluster_t cluster;           /* with --redis-url: the lease (server.cluster points here) */
	sl_tls_listener_t tls_listener; /* with --tls-cert (server.tls_listener points here) */
} sl_main_t;

static void do_close_main_handles(sl_main_t *m)
{
	if (m->server.cluster)
		sl_cluster_stop(m->server.cluster); /* our slots go back to the other replicas now */
	uv_close((uv_handle_t *)&m->sigterm, NULL);
	uv_close((uv_handle_t *)&m->sigint, NULL);
	uv_close((uv_handle_t *)&m->sigusr1, NULL);
	uv_close((uv_handle_t *)&m->sighup, NULL);
	uv_close((uv_handle_t *)&m->shutdown_timer, NULL);
	uv_close((uv_handle_t *)&m->worker_exited, NULL);
}

static void do_phase(sl_main_t *m, int phase)
{
	atomic_store(&m->server.shutdown_phase, phase);
	for (int i = 0; i < m->server.nworkers; i++)
		sl_worker_signal(&m->server.workers[i]);
}

static void on_shutdown_timeout(uv_timer_t *t)
{
	sl_main_t *m = t->data;
	sl_warn("shutdown timeout reached: closing the remaining connections");
	do_phase(m, 2);
}

/* Settings that belong to sockets and threads made at start: a reload keeps
 * the running values and says that a restart is needed. */
static void do_keep_restart_only(sl_config_t *next, const sl_config_t *cur)
{
	char **strs[] = {&next->listen_host,    &next->target_host, &next->access_log,
	                 &next->redis_url,      &next->cluster_key, &next->target_tls_ca,
	                 &next->target_tls_sni, &next->tls_cert,    &next->tls_key};
	char *const olds[] = {cur->listen_host,    cur->target_host, cur->access_log,
	                      cur->redis_url,      cur->cluster_key, cur->target_tls_ca,
	                      cur->target_tls_sni, cur->tls_cert,    cur->tls_key};
	const char *const snames[] = {"listen_host",   "target_host",    "access_log", "redis_url", "cluster_key",
	                              "target_tls_ca", "target_tls_sni", "tls_cert",   "tls_key"};
	for (int i = 0; i < 9; i++) {
		bool same =
		    (*strs[i] == NULL && olds[i] == NULL) || (*strs[i] && olds[i] && strcmp(*strs[i], olds[i]) == 0);
		if (same)
			continue;
		sl_warn("SIGHUP: %s changed; it takes effect after a restart", snames[i]);
		free(*strs[i]);
		*strs[i] = olds[i] ? sl_strdup(olds[i]) : NULL;
	}
	int *ints[] = {&next->listen_port, &next->target_port, &next->workers, &next->admin_port,
	               (int *)&next->cluster_fallback};
	const int oldi[] = {cur->listen_port, cur->target_port, cur->workers, cur->admin_port,
	                    (int)cur->cluster_fallback};
	const char *const inames[] = {"listen_port", "target_port", "workers", "admin_port", "cluster_fallback"};
	for (int i = 0; i < 5; i++) {
		if (*ints[i] != oldi[i]) {
			sl_warn("SIGHUP: %s changed; it takes effect after a restart", inames[i]);
			*ints[i] = oldi[i];
		}
	}
	bool *bools[] = {&next->target_tls, &next->target_tls_insecure};
	const bool oldb[] = {cur->target_tls, cur->target_tls_insecure};
	const char *const bnames[] = {"target_tls", "target_tls_insecure"};
	for (int i = 0; i < 2; i++) {
		if (*bools[i] != oldb[i]) {
			sl_warn("SIGHUP: %s changed; it takes effect after a restart", bnames[i]);
			*bools[i] = oldb[i];
		}
	}
	if (next->reuse_port != cur->reuse_port) {
		sl_warn("SIGHUP: reuse_port changed; it takes effect after a restart");
		next->reuse_port = cur->reuse_port;
	}
	if (next->cluster_lease_ttl != cur->cluster_lease_ttl) {
		sl_warn("SIGHUP: cluster_lease_ttl changed; it takes effect after a restart");
		next->cluster_lease_ttl = cur->cluster_lease_ttl;
	}
}

static void do_dispose_config(sl_main_t *m, sl_config_t *cfg)
{
	if (cfg == m->first_cfg)
		return; /* static: only its strings, at exit */
	sl_config_dispose(cfg);
	free(cfg);
}

/* Frees the retired settings that every worker has moved past: a worker
 * that reported generation g reads settings of generation g or newer. */
static void do_free_retired(sl_main_t *m)
{
	uint64_t oldest = UINT64_MAX;
	for (int i = 0; i < m->server.nworkers; i++) {
		uint64_t g = __atomic_load_n(&m->server.workers[i].applied_gen, __ATOMIC_ACQUIRE);
		if (g < oldest)
			oldest = g;
	}
	int kept = 0;
	for (int i = 0; i < m->nretired; i++) {
		if (m->retired[i].gen < oldest)
			do_dispose_config(m, m->retired[i].cfg);
		else
			m->retired[kept++] = m->retired[i];
	}
	m->nretired = kept;
}

/* SIGHUP: re-read --config; apply limits, timeouts, retry and breaker
 * settings without dropping a connection or a queued request. A bad file is
 * reported and changes nothing. */
static void do_reload(sl_main_t *m)
{
	sl_server_t *s = &m->server;
	sl_config_t *cur = s->cfg;
	if (!cur->config_file) {
		sl_warn("SIGHUP: no --config file to reload");
		return;
	}
	char err[512];
	sl_config_t *next = sl_calloc(1, sizeof *next);
	if (sl_config_reload(cur, m->argc, m->argv, next, err, sizeof err) != 0) {
		sl_error("SIGHUP: %s; keeping the current settings", err);
		free(next);
		return;
	}
	do_keep_restart_only(next, cur);
	__atomic_store_n(&sl_log_level, next->log_level, __ATOMIC_RELAXED);
	sl_breaker_configure(&s->breaker, (uint32_t)next->circuit_breaker_threshold, next->circuit_breaker_timeout);
	sl_adaptive_configure(&s->adaptive, next);
	do_free_retired(m);
	uint64_t gen = __atomic_load_n(&s->cfg_gen, __ATOMIC_RELAXED);
	__atomic_store_n(&s->cfg, next, __ATOMIC_RELEASE);
	__atomic_store_n(&s->cfg_gen, gen + 1, __ATOMIC_RELEASE);
	/* a raised limit admits queued requests at once; with a cluster, the
	 * lease decides the local limit and N goes to the controller */
	if (s->cluster) {
		sl_cluster_set_limit(s->cluster, (uint32_t)next->max_concurrent_requests);
		sl_admit_set_limits(&s->admit, s->cluster->applied_limit, (uint32_t)next->max_queue_size);
	} else {
		sl_admit_set_limits(&s->admit, (uint32_t)next->max_concurrent_requests, (uint32_t)next->max_queue_size);
	}
	sl_admit_set_queue_policy(&s->admit, (sl_queue_policy_t)next->queue_policy, (uint32_t)next->max_queue_per_key);
	m->retired = sl_realloc(m->retired, (size_t)(m->nretired + 1) * sizeof *m->retired);
	m->retired[m->nretired++] = (struct retired){cur, gen};
	for (int i = 0; i < s->nworkers; i++)
		sl_worker_signal(&s->workers[i]);
	sl_info("SIGHUP: configuration reloaded from %s (limit %d, queue %d)", next->config_file,
	        next->max_concurrent_requests, next->max_queue_size);
}

/* SIGUSR1 (as nginx) and SIGHUP: the access log was rotated; write to a
 * new file at the configured path. */
static void do_reopen_logs(sl_main_t *m)
{
	const char *path = m->server.cfg->access_log;
	char err[512];
	if (m->server.access_log_fd < 0 || path == NULL || strcmp(path, "-") == 0)
		return;
	if (sl_access_log_reopen(path, m->server.access_log_fd, err, sizeof err) != 0)
		sl_error("%s; still writing to the old file", err);
	else
		sl_info("access log reopened: %s", path);
}

/* SIGHUP: re-read --tls-cert and --tls-key (a renewal replaced them); new
 * connections get the new certificate, open ones keep theirs. A bad file
 * keeps the old certificate. */
static void do_reload_certificate(sl_main_t *m)
{
	const sl_config_t *cfg = m->server.cfg;
	if (m->server.tls_listener == NULL)
		return;
	char err[512];
	if (sl_tls_listener_reload(m->server.tls_listener, cfg->tls_cert, cfg->tls_key, err, sizeof err) != 0)
		sl_error("SIGHUP: %s; keeping the current certificate", err);
	else
		sl_info("SIGHUP: certificate reloaded from %s", cfg->tls_cert);
}

static void on_signal(uv_signal_t *s, int signum)
{
	sl_main_t *m = s->data;
	if (signum == SIGHUP || signum == SIGUSR1) {
		if (signum == SIGHUP) {
			do_reload(m);
			do_reload_certificate(m);
		}
		do_reopen_logs(m);
		return;
	}
	if (atomic_load(&m->server.shutdown_phase) == 0) {
		sl_info("%s: draining (up to %g s)", signum == SIGTERM ? "SIGTERM" : "SIGINT",
		        m->server.cfg->shutdown_timeout);
		do_phase(m, 1);
		uv_timer_start(&m->shutdown_timer, on_shutdown_timeout, sl_config_ms(m->server.cfg->shutdown_timeout),
		               0);
	} else {
		do_phase(m, 2);
	}
}

static void on_worker_exited(uv_async_t *a)
{
	sl_main_t *m = a->data;
	/* async sends coalesce: count the workers that really ended */
	if (atomic_load(&m->server.workers_exited) == m->server.nworkers)
		do_close_main_handles(m);
}

/* --check-config reads the TLS files as the start does (sl_config_set_files_check). */
static int check_tls_files(const sl_config_t *cfg, char *err, size_t errlen)
{
	if (cfg->target_tls) {
		SSL_CTX *ctx =
		    sl_tls_client_ctx(cfg->target_tls_ca, cfg->target_tls_insecure, "--target-tls-ca", err, errlen);
		if (ctx == NULL)
			return -1;
		SSL_CTX_free(ctx);
	}
	if (cfg->tls_cert) {
		sl_tls_listener_t l;
		if (sl_tls_listener_init(&l, cfg->tls_cert, cfg->tls_key, err, errlen) != 0)
			return -1;
		sl_tls_listener_dispose(&l);
	}
	return 0;
}

int main(int argc, char **argv)
{
	static sl_config_t cfg;
	char err[512];
	sl_config_set_files_check(check_tls_files);
	switch (sl_config_load(&cfg, argc, argv, err, sizeof err)) {
	case SL_CONFIG_EXIT: return 0;
	case SL_CONFIG_ERROR: fprintf(stderr, "sluice: %s\n", err); return 2;
	case SL_CONFIG_RUN: break;
	}
	sl_log_level = cfg.log_level;
	signal(SIGPIPE, SIG_IGN);

	static sl_main_t m;
	m.argc = argc;
	m.argv = argv;
	m.loop = uv_default_loop();
	m.server.cfg = m.first_cfg = &cfg;
	m.server.nworkers = cfg.workers;
	m.server.workers = sl_calloc((size_t)cfg.workers, sizeof(sl_worker_t));
	m.server.start_ms = uv_hrtime() / 1000000;
	uv_timeval64_t tv;
	if (uv_gettimeofday(&tv) == 0)
		m.server.start_wall_s = (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
	m.server.worker_exited = &m.worker_exited;
	sl_admit_init(&m.server.admit, (uint32_t)cfg.max_concurrent_requests, (uint32_t)cfg.max_queue_size);
	sl_admit_set_queue_policy(&m.server.admit, (sl_queue_policy_t)cfg.queue_policy,
	                          (uint32_t)cfg.max_queue_per_key);
	sl_breaker_init(&m.server.breaker, (uint32_t)cfg.circuit_breaker_threshold, cfg.circuit_breaker_timeout);
	sl_budget_init(&m.server.budget);
	sl_adaptive_init(&m.server.adaptive, &m.server.admit, &cfg);
	m.server.access_log_fd = -1;
	/* TLS before any socket: a bad certificate or CA file is a bad
	 * configuration (exit 2), named like one. */
	if (cfg.target_tls) {
		m.server.tls_client_ctx =
		    sl_tls_client_ctx(cfg.target_tls_ca, cfg.target_tls_insecure, "--target-tls-ca", err, sizeof err);
		if (m.server.tls_client_ctx == NULL) {
			fprintf(stderr, "sluice: %s\n", err);
			return 2;
		}
		if (cfg.target_tls_insecure)
			sl_warn("--target-tls-insecure: the upstream's certificate is not verified; anyone on the path "
			        "can read and change the traffic");
	}
	if (cfg.tls_cert) {
		if (sl_tls_listener_init(&m.tls_listener, cfg.tls_cert, cfg.tls_key, err, sizeof err) != 0) {
			fprintf(stderr, "sluice: %s\n", err);
			return 2;
		}
		m.server.tls_listener = &m.tls_listener;
	}
	if (cfg.access_log && (m.server.access_log_fd = sl_access_log_open(cfg.access_log, err, sizeof err)) < 0) {
		fprintf(stderr, "sluice: %s\n", err);
		return 1;
	}
	/* Signals are ours before the port listens: a SIGTERM that comes as
	 * soon as the port answers is a graceful stop, not a kill. */
	uv_async_init(m.loop, &m.worker_exited, on_worker_exited);
	m.worker_exited.data = &m;
	uv_timer_init(m.loop, &m.shutdown_timer);
	m.shutdown_timer.data = &m;
	uv_signal_t *sigs[] = {&m.sigterm, &m.sigint, &m.sighup, &m.sigusr1};
	int signums[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1};
	for (int i = 0; i < 4; i++) {
		uv_signal_init(m.loop, sigs[i]);
		sigs[i]->data = &m;
		uv_signal_start(sigs[i], on_signal, signums[i]);
	}
	for (int i = 0; i < cfg.workers; i++) {
		if (sl_worker_bind(&m.server.workers[i], &m.server, i, err, sizeof err) != 0) {
			fprintf(stderr, "sluice: %s\n", err);
			return 1;
		}
	}
	/* The cluster's lease before any request: the local limit is 0 until
	 * Redis first answers. */
	if (cfg.redis_url) {
		if (sl_cluster_start(&m.cluster, m.loop, &m.server, err, sizeof err) != 0) {
			fprintf(stderr, "sluice: %s\n", err);
			return 1;
		}
		m.server.cluster = &m.cluster;
	}
	/* Every worker is ready before any runs: a running worker reads the
	 * others' counters for the admin endpoints. */
	for (int i = 0; i < cfg.workers; i++) {
		int e = sl_worker_prepare(&m.server.workers[i]);
		if (e != 0) {
			fprintf(stderr, "sluice: cannot start worker %d: %s\n", i, uv_strerror(e));
			return 1;
		}
	}
	for (int i = 0; i < cfg.workers; i++) {
		int e = sl_worker_start(&m.server.workers[i]);
		if (e != 0) {
			fprintf(stderr, "sluice: cannot start worker %d: %s\n", i, uv_strerror(e));
			return 1;
		}
	}
	sl_info("listening on %s:%d%s, forwarding to %s%s:%d with %d workers", cfg.listen_host, cfg.listen_port,
	        cfg.tls_cert ? " (HTTPS)" : "", cfg.target_tls ? "https://" : "", cfg.target_host, cfg.target_port,
	        cfg.workers);
	if (cfg.admin_port)
		sl_info("admin endpoints on %s:%d", cfg.listen_host, cfg.admin_port);

	uv_run(m.loop, UV_RUN_DEFAULT);

	for (int i = 0; i < cfg.workers; i++)
		sl_worker_join(&m.server.workers[i]);
	uv_loop_close(m.loop);
	sl_adaptive_dispose(&m.server.adaptive);
	free(m.server.workers);
	sl_admit_dispose(&m.server.admit);
	sl_breaker_dispose(&m.server.breaker);
	if (m.server.tls_client_ctx)
		SSL_CTX_free(m.server.tls_client_ctx);
	sl_tls_listener_dispose(&m.tls_listener);
	if (m.server.access_log_fd > STDERR_FILENO)
		close(m.server.access_log_fd);
	do_dispose_config(&m, m.server.cfg);
	for (int i = 0; i < m.nretired; i++)
		do_dispose_config(&m, m.retired[i].cfg);
	free(m.retired);
	sl_config_dispose(&cfg);
	sl_info("stopped");
	return 0;
}
