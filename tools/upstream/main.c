/* main.c — sluice-upstream start-up and shutdown: parse the command line,
 * open one SO_REUSEPORT listening socket per worker, start the workers, wait
 * for SIGTERM or SIGINT on the main thread's own loop, then stop and join
 * every worker so that everything is freed (the tests run this under LSan).
 *
 * Exit status: 0 after a signal, 1 if the server could not start, 2 for a
 * bad command line. */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include <uv.h>

#include "options.h"
#include "respond.h"
#include "worker.h"

static struct {
	uv_loop_t loop;
	uv_signal_t sigterm, sigint;
	sl_up_worker_t **workers;
	int nworkers;
	bool stopping;
} M;

static void on_signal(uv_signal_t *s, int signum)
{
	if (M.stopping)
		return;
	M.stopping = true;
	for (int i = 0; i < M.nworkers; i++)
		sl_up_worker_stop(M.workers[i]);
	uv_close((uv_handle_t *)&M.sigterm, NULL);
	uv_close((uv_handle_t *)&M.sigint, NULL);
}

static void do_free_workers(void)
{
	for (int i = 0; i < M.nworkers; i++)
		sl_up_worker_free(M.workers[i]);
	free(M.workers);
	M.workers = NULL;
	M.nworkers = 0;
}

/* Opens the sockets and starts the workers. Returns 0, or -1 after printing
 * why; workers already started are left in M for the caller to stop. */
long sl_up_max_inflight;

static int do_start(const sl_up_options_t *o)
{
	sl_up_max_inflight = o->max_inflight;
	char err[256];
	int port = o->port;
	M.workers = calloc((size_t)o->workers, sizeof *M.workers);
	if (!M.workers) {
		fprintf(stderr, "sluice-upstream: out of memory\n");
		return -1;
	}
	for (int i = 0; i < o->workers; i++) {
		/* With --port 0 the first socket picks the port, the rest share it. */
		int fd = sl_up_listen_fd(o->host, port, &port, err, sizeof err);
		if (fd < 0) {
			fprintf(stderr, "sluice-upstream: %s\n", err);
			return -1;
		}
		sl_up_worker_t *w = sl_up_worker_new(fd, (uint64_t)(o->idle_timeout * 1000 + 0.5));
		if (!w) {
			fprintf(stderr, "sluice-upstream: cannot set up worker %d\n", i);
			return -1;
		}
		M.workers[M.nworkers++] = w;
		if (sl_up_worker_start(w) < 0) {
			fprintf(stderr, "sluice-upstream: cannot start worker thread %d\n", i);
			return -1;
		}
	}
	fprintf(stderr, "sluice-upstream: listening on %s:%d with %d worker%s\n", o->host, port, o->workers,
	        o->workers == 1 ? "" : "s");
	return 0;
}

int main(int argc, char **argv)
{
	sl_up_options_t o;
	char err[256];
	switch (sl_up_options_parse(&o, argc, argv, err, sizeof err)) {
	case SL_UP_OPTIONS_DONE: return 0;
	case SL_UP_OPTIONS_ERROR: fprintf(stderr, "sluice-upstream: %s.\n", err); return 2;
	}

	/* A client that vanishes mid-write must cost an EPIPE, not the process. */
	signal(SIGPIPE, SIG_IGN);
	sl_up_respond_init();

	/* Signals first: a SIGTERM that arrives once the port accepts
	 * connections must already find its handler. */
	uv_loop_init(&M.loop);
	uv_signal_init(&M.loop, &M.sigterm);
	uv_signal_init(&M.loop, &M.sigint);
	uv_signal_start(&M.sigterm, on_signal, SIGTERM);
	uv_signal_start(&M.sigint, on_signal, SIGINT);

	int status = 0;
	if (do_start(&o) < 0) {
		status = 1;
		M.stopping = true;
		for (int i = 0; i < M.nworkers; i++)
			sl_up_worker_stop(M.workers[i]);
		uv_close((uv_handle_t *)&M.sigterm, NULL);
		uv_close((uv_handle_t *)&M.sigint, NULL);
	}
	uv_run(&M.loop, UV_RUN_DEFAULT);
	do_free_workers();
	uv_loop_close(&M.loop);
	return status;
}
