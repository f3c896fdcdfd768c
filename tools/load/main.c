/* main.c — sluice-load: parse, resolve, run the worker threads, show
 * progress, report, choose the exit status.
 *
 * Exit status: 0; 1 when no request succeeded or the success rate is below
 * --min-success-rate; 2 on bad arguments (one sentence on stderr). SIGINT or
 * SIGTERM stops the run early and still reports; a second one kills. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <uv.h>

#include "opts.h"
#include "report.h"
#include "target.h"
#include "worker.h"

/* Shared between the workers' done callbacks and the main thread. */
typedef struct {
	uv_mutex_t lock;
	uv_cond_t cond;
	unsigned finished;
	uint64_t last_ns; /* when the last worker finished */
} run_state_t;

static void on_worker_done(void *arg)
{
	run_state_t *rs = arg;
	uint64_t now = uv_hrtime();
	uv_mutex_lock(&rs->lock);
	rs->finished++;
	if (now > rs->last_ns)
		rs->last_ns = now;
	uv_cond_signal(&rs->cond);
	uv_mutex_unlock(&rs->lock);
}

static void on_signal(int sig)
{
	sl_load_worker_interrupt();
	signal(sig, SIG_DFL); /* a second one ends us the hard way */
}

/* Many connections need many descriptors: lift the soft limit if needed. */
static void do_raise_fd_limit(unsigned connections)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)connections + 64;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
		rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* Waits for every worker, drawing the progress line once a second if asked
 * (with the open loop's shortfall when the run has a rate). */
static void do_wait(run_state_t *rs, sl_load_worker_t **workers, unsigned n, uint64_t start_ns, bool progress,
                    bool open_loop)
{
	uint64_t last_done = 0, last_ns = start_ns;
	uv_mutex_lock(&rs->lock);
	while (rs->finished < n) {
		if (!progress) {
			uv_cond_wait(&rs->cond, &rs->lock);
			continue;
		}
		if (uv_cond_timedwait(&rs->cond, &rs->lock, 1000000000) != UV_ETIMEDOUT)
			continue;
		uint64_t now = uv_hrtime();
		sl_load_progress_t p = {0};
		for (unsigned i = 0; i < n; i++)
			sl_load_worker_progress(workers[i], now, &p);
		double rate = (double)(p.done - last_done) * 1e9 / (double)(now - last_ns);
		sl_load_report_progress(stderr, (double)(now - start_ns) / 1e9, &p, rate, open_loop);
		last_done = p.done;
		last_ns = now;
	}
	uv_mutex_unlock(&rs->lock);
	if (progress)
		sl_load_report_progress_clear(stderr);
}

int main(int argc, char **argv)
{
	sl_load_opts_t opts;
	sl_load_target_t target;
	char err[512];
	int rc = sl_load_opts_parse(&opts, argc, argv, err, sizeof(err));
	if (rc != SL_LOAD_OPTS_RUN) {
		if (rc == SL_LOAD_OPTS_ERROR)
			fprintf(stderr, "sluice-load: %s\n", err);
		sl_load_opts_dispose(&opts);
		return rc == SL_LOAD_OPTS_DONE ? 0 : 2;
	}
	if (sl_load_target_init(&target, &opts, err, sizeof(err))) {
		fprintf(stderr, "sluice-load: %s\n", err);
		sl_load_target_dispose(&target);
		sl_load_opts_dispose(&opts);
		return 2;
	}

	signal(SIGPIPE, SIG_IGN); /* a peer's reset is an error to count, not death */
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	/* the closed loop keeps its connections; the open loop may grow them */
	unsigned max_connections = opts.rate > 0 ? opts.max_concurrent : opts.concurrent;
	do_raise_fd_limit(max_connections);

	sl_load_plan_t plan = {
	    .addr = (const struct sockaddr *)&target.addr,
	    .request = target.request,
	    .request_len = target.request_len,
	    .head = target.head,
	    .keepalive = target.keepalive,
	    .tls = target.tls,
	    .tls_name = target.tls_name,
	    .threads = opts.threads,
	    .connections = opts.concurrent,
	    .max_connections = max_connections,
	    .total = opts.total_requests,
	    .timeout_ns = (uint64_t)(opts.timeout * 1e9),
	    .rate = opts.rate,
	    .end_ns = UINT64_MAX,
	};
	run_state_t rs = {0};
	uv_mutex_init(&rs.lock);
	uv_cond_init(&rs.cond);
	sl_load_worker_t **workers = calloc(plan.threads, sizeof(*workers));
	bool ok = workers != NULL;
	for (unsigned i = 0; ok && i < plan.threads; i++)
		ok = (workers[i] = sl_load_worker_new(&plan, i, on_worker_done, &rs)) != NULL;
	sl_load_stats_t *sum = ok ? malloc(sizeof(*sum)) : NULL;
	int status = 1;
	if (!sum) {
		fprintf(stderr, "sluice-load: out of memory.\n");
		goto out;
	}
	sl_load_stats_init(sum);

	/* the schedule starts now: a worker reads the plan only once started */
	plan.start_ns = uv_hrtime();
	if (opts.duration > 0)
		plan.end_ns = plan.start_ns + (uint64_t)(opts.duration * 1e9);
	unsigned started = 0;
	for (; started < plan.threads; started++)
		if ((rc = sl_load_worker_start(workers[started]))) {
			fprintf(stderr, "sluice-load: cannot start a thread: %s.\n", uv_strerror(rc));
			sl_load_worker_interrupt();
			break;
		}
	do_wait(&rs, workers, started, plan.start_ns, isatty(STDERR_FILENO), opts.rate > 0);
	for (unsigned i = 0; i < started; i++) {
		sl_load_worker_join(workers[i]);
		sl_load_stats_merge(sum, sl_load_worker_stats(workers[i]));
	}
	if (started < plan.threads)
		goto out;

	uint64_t end_ns = rs.last_ns > plan.start_ns ? rs.last_ns : plan.start_ns;
	sl_load_summary_t summary = {
	    .opts = &opts,
	    .addr_text = target.addr_text,
	    .stats = sum,
	    .elapsed_s = (double)(end_ns - plan.start_ns) / 1e9,
	    .threads = plan.threads,
	    .interrupted = sl_load_worker_interrupted(),
	};
	if (opts.json)
		rc = sl_load_report_json(stdout, &summary);
	else
		sl_load_report_text(stdout, &summary), rc = 0;
	if (rc)
		fprintf(stderr, "sluice-load: cannot write the report.\n");
	else if (sum->success > 0 && sl_load_report_success_rate(sum) >= opts.min_success_rate)
		status = 0;

out:
	for (unsigned i = 0; workers && i < plan.threads; i++)
		sl_load_worker_free(workers[i]);
	free(workers);
	free(sum);
	uv_cond_destroy(&rs.cond);
	uv_mutex_destroy(&rs.lock);
	sl_load_target_dispose(&target);
	sl_load_opts_dispose(&opts);
	return status;
}
