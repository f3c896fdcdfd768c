/* report.c — see report.h. */
#include "report.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "deadline.h"
#include "log.h"
#include "stat.h"
#include "worker.h"

/* Open descriptors: the entries of /proc/self/fd, less the one reading it. */
static uint64_t count_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return 0;
	uint64_t n = 0;
	for (struct dirent *e; (e = readdir(d)) != NULL;)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n > 0 ? n - 1 : 0;
}

/* What Prometheus' standard process collector reports, from libuv where it
 * has it and /proc where it does not. */
static void do_process_stats(const sl_server_t *s, sl_snapshot_t *snap)
{
	uv_rusage_t ru;
	if (uv_getrusage(&ru) == 0)
		snap->process.cpu_seconds = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
		                            (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
	size_t rss = 0;
	if (uv_resident_set_memory(&rss) == 0)
		snap->process.resident_bytes = rss;
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long long pages = 0;
	if (f && fscanf(f, "%llu", &pages) == 1)
		snap->process.virtual_bytes = pages * (uint64_t)sysconf(_SC_PAGESIZE);
	if (f)
		fclose(f);
	snap->process.open_fds = count_open_fds();
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		snap->process.max_fds = rl.rlim_cur == RLIM_INFINITY ? 0 : (uint64_t)rl.rlim_cur;
	snap->process.start_time_s = s->start_wall_s;
}

sl_snapshot_t *sl_snapshot_take(sl_server_t *s)
{
	sl_snapshot_t *snap = sl_calloc(1, sizeof *snap);
	uint64_t now_ms = uv_hrtime() / 1000000;
	snap->cfg = sl_server_config(s);
	snap->uptime_s = (double)(now_ms - s->start_ms) / 1000.0;
	sl_metrics_sum_init(&snap->sum);
	for (int i = 0; i < s->nworkers; i++) {
		sl_worker_t *w = &s->workers[i];
		sl_metrics_add(&w->metrics, &snap->sum, now_ms);
		snap->pool_idle += SL_LOAD(w->pool.nidle);
		snap->pool_open += SL_LOAD(w->pool.open);
		snap->pool_created += SL_LOAD(w->pool.created);
		snap->pool_reused += SL_LOAD(w->pool.reused);
		snap->access_log_dropped += SL_LOAD(w->access_log.dropped);
		snap->tls_handshake_failures += SL_LOAD(w->tls_handshake_failures);
	}
	sl_admit_get_stats(&s->admit, &snap->admit);
	snap->breaker_state = sl_breaker_state(&s->breaker, sl_clock_ms());
	snap->consecutive_failures = sl_breaker_failures(&s->breaker);
	snap->breaker_opened_total = sl_breaker_opened_total(&s->breaker);
	int conns = atomic_load_explicit(&s->connections, memory_order_relaxed);
	snap->connections = conns > 0 ? (uint64_t)conns : 0;
	int tunnels = atomic_load_explicit(&s->tunnels, memory_order_relaxed);
	snap->tunnels_open = tunnels > 0 ? (uint64_t)tunnels : 0;
	snap->limit_reached = atomic_load_explicit(&s->limit_reached, memory_order_relaxed);
	snap->draining = atomic_load(&s->shutdown_phase) >= 1;
	snap->has_cluster = s->cluster != NULL;
	if (s->cluster)
		sl_cluster_get_stats(s->cluster, &snap->cluster);
	do_process_stats(s, snap);
	return snap;
}

const char *sl_snapshot_status(const sl_snapshot_t *snap)
{
	if (snap->draining)
		return "draining";
	if (snap->breaker_state == SL_BREAKER_OPEN)
		return "unhealthy";
	uint64_t done = snap->sum.window_ok + snap->sum.window_fail;
	if (done > 0 && snap->sum.window_ok * 100 < done * 80)
		return "degraded";
	return "healthy";
}

double sl_snapshot_success_rate(const sl_snapshot_t *snap)
{
	/* SPEC §8: success / (total - rejected - client_closed). metrics.c
	 * reads the total last, so it covers the outcomes; the clamps only guard
	 * that invariant. */
	uint64_t total = snap->sum.total, success = snap->sum.success;
	uint64_t not_forwarded = snap->sum.rejected + snap->sum.client_closed;
	uint64_t forwarded = total > not_forwarded ? total - not_forwarded : 0;
	if (forwarded == 0)
		return 1.0;
	return success >= forwarded ? 1.0 : (double)success / (double)forwarded;
}

/* Requests completed per second over the last minute (or since start). */
static double throughput_rps(const sl_snapshot_t *snap)
{
	double window = snap->uptime_s < SL_METRICS_WINDOW ? snap->uptime_s : SL_METRICS_WINDOW;
	uint64_t n = snap->sum.window_ok + snap->sum.window_fail + snap->sum.window_rejected;
	return window >= 1.0 ? (double)n / window : (double)n;
}

static double ms(uint64_t us)
{
	return (double)us / 1000.0;
}

static double round3(double v)
{
	return round(v * 1000.0) / 1000.0;
}

static json_t *hist_ms_json(const sl_hist_t *h)
{
	return json_pack("{s:f, s:f, s:f, s:f, s:f, s:I}", "avg", round3(sl_hist_mean(h) / 1000.0), "p50",
	                 ms(sl_hist_percentile(h, 50)), "p95", ms(sl_hist_percentile(h, 95)), "p99",
	                 ms(sl_hist_percentile(h, 99)), "max", ms(h->total ? h->max : 0), "count",
	                 (json_int_t)h->total);
}

json_t *sl_report_health(const sl_snapshot_t *snap)
{
	json_t *h = json_pack("{s:s, s:s, s:I, s:I}", "status", sl_snapshot_status(snap), "circuit_state",
	                      sl_breaker_state_name(snap->breaker_state), "active", (json_int_t)snap->admit.active,
	                      "queued", (json_int_t)snap->admit.queued);
	if (snap->has_cluster)
		json_object_set_new(h, "cluster", json_string(sl_cluster_state_name(snap->cluster.state)));
	return h;
}

/* The limit admission applies now: max_concurrent_requests (or the
 * cluster lease), lowered by the adaptive limit when that is on. */
static uint32_t effective_limit(const sl_snapshot_t *snap)
{
	return snap->admit.cap < snap->admit.limit ? snap->admit.cap : snap->admit.limit;
}

/* The cluster object of /proxy-metrics (with --redis-url). */
static json_t *cluster_json(const sl_snapshot_t *snap)
{
	const sl_cluster_stats_t *c = &snap->cluster;
	return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "state", sl_cluster_state_name(c->state),
	                 "replicas", (json_int_t)c->replicas, "lease", (json_int_t)c->lease, "in_use",
	                 (json_int_t)snap->admit.active, "limit", (json_int_t)c->limit, "lease_changes",
	                 (json_int_t)c->lease_changes, "redis_errors", (json_int_t)c->redis_errors, "redis_commands",
	                 (json_int_t)c->redis_commands);
}

/* The Python service's `metrics` object, so existing monitors keep working. */
static json_t *legacy_json(const sl_snapshot_t *snap)
{
	const sl_metrics_sum_t *m = &snap->sum;
	uint32_t limit = snap->admit.limit, active = snap->admit.active;
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:b, s:I, s:I, s:I}", "total_requests",
	                 (json_int_t)m->total, "successful_requests", (json_int_t)m->success, "failed_requests",
	                 (json_int_t)m->failed, "timeout_requests", (json_int_t)m->timeouts, "active_requests",
	                 (json_int_t)active, "queue_rejected", (json_int_t)m->rejected_by[SL_REJECT_QUEUE_FULL],
	                 "success_rate", round3(sl_snapshot_success_rate(snap) * 100.0), "avg_response_time",
	                 sl_hist_mean(&m->latency_us) / 1e6, "p95_response_time",
	                 (double)sl_hist_percentile(&m->latency_us, 95) / 1e6, "circuit_open",
	                 snap->breaker_state == SL_BREAKER_OPEN, "consecutive_failures",
	                 (json_int_t)snap->consecutive_failures, "queue_size", (json_int_t)snap->admit.queued,
	                 "available_slots", (json_int_t)(active < limit ? limit - active : 0));
}

json_t *sl_report_json(const sl_snapshot_t *snap)
{
	const sl_metrics_sum_t *m = &snap->sum;
	char ts[SL_TIMESTAMP_LEN + 1], target[300];
	sl_timestamp(ts);
	json_t *rejected_by = json_object();
	for (int i = 0; i < SL_REJECT_COUNT; i++)
		json_object_set_new(rejected_by, sl_reject_name((sl_reject_t)i),
		                    json_integer((json_int_t)m->rejected_by[i]));
	json_t *config = sl_config_to_json(snap->cfg);
	snprintf(target, sizeof target, "%s:%d", snap->cfg->target_host, snap->cfg->target_port);
	json_object_set_new(config, "target", json_string(target));
	json_t *root = json_pack(
	    "{s:s, s:s, s:f, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}, s:f, s:f, s:o, s:o,"
	    " s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I}, s:{s:I, s:I, s:I, s:I}, s:{s:s, s:I, s:I},"
	    " s:{s:I}, s:{s:I, s:I}, s:{s:i, s:o, s:o}, s:o, s:o}",
	    "status", sl_snapshot_status(snap), "timestamp", ts, "uptime_seconds", round3(snap->uptime_s), "requests",
	    "total", (json_int_t)m->total, "success", (json_int_t)m->success, "failed", (json_int_t)m->failed,
	    "rejected", (json_int_t)m->rejected, "client_closed", (json_int_t)m->client_closed, "timeouts",
	    (json_int_t)m->timeouts, "retries", (json_int_t)m->retries, "circuit_open_rejections",
	    (json_int_t)m->rejected_by[SL_REJECT_CIRCUIT_OPEN], "rejected_by", rejected_by, "success_rate",
	    sl_snapshot_success_rate(snap), "throughput_rps", round3(throughput_rps(snap)), "latency_ms",
	    hist_ms_json(&m->latency_us), "queue_wait_ms", hist_ms_json(&m->queue_wait_us), "concurrency", "active",
	    (json_int_t)snap->admit.active, "max", (json_int_t)snap->admit.limit, "queued",
	    (json_int_t)snap->admit.queued, "max_queue", (json_int_t)snap->admit.max_queue, "peak_active",
	    (json_int_t)snap->admit.peak_active, "peak_queued", (json_int_t)snap->admit.peak_queued, "draining",
	    (json_int_t)m->draining, "pool", "idle", (json_int_t)snap->pool_idle, "open", (json_int_t)snap->pool_open,
	    "created", (json_int_t)snap->pool_created, "reused", (json_int_t)snap->pool_reused, "circuit_breaker",
	    "state", sl_breaker_state_name(snap->breaker_state), "consecutive_failures",
	    (json_int_t)snap->consecutive_failures, "opened_total", (json_int_t)snap->breaker_opened_total,
	    "connections", "clients", (json_int_t)snap->connections, "tunnels", "open", (json_int_t)snap->tunnels_open,
	    "active", (json_int_t)m->tunnels_active, "recent", "window_seconds", SL_METRICS_WINDOW, "latency_ms",
	    hist_ms_json(&m->recent_latency_us), "queue_wait_ms", hist_ms_json(&m->recent_queue_wait_us), "config",
	    config, "metrics", legacy_json(snap));
	json_t *responses = json_object(), *failures = json_object();
	for (int i = 0; i < 5; i++) {
		char cls[4] = {(char)('1' + i), 'x', 'x', '\0'};
		json_object_set_new(responses, cls, json_integer((json_int_t)m->by_class[i]));
	}
	for (int i = 0; i < SL_EK_UPSTREAM_COUNT; i++)
		json_object_set_new(failures, sl_error_kind_name((sl_error_kind_t)(SL_EK_DNS + i)),
		                    json_integer((json_int_t)m->upstream_failures[i]));
	json_object_set_new(json_object_get(root, "concurrency"), "effective_limit",
	                    json_integer((json_int_t)effective_limit(snap)));
	json_object_set_new(json_object_get(root, "requests"), "retries_budget_exhausted",
	                    json_integer((json_int_t)m->retries_budget_exhausted));
	json_object_set_new(root, "version", json_string(SL_VERSION));
	if (snap->has_cluster)
		json_object_set_new(root, "cluster", cluster_json(snap));
	/* the queue policy's own figures (issue 15: queue.h) */
	const sl_queue_stats_t *qs = &snap->admit.q;
	double hold_ms = qs->samples >= SL_QUEUE_MIN_SAMPLES ? round3((double)qs->hold_ns / 1e6) : 0;
	json_object_set_new(root, "queue",
	                    json_pack("{s:I, s:f, s:I, s:I, s:I, s:I}", "keys", (json_int_t)qs->keys, "hold_ms",
	                              hold_ms, "hold_samples", (json_int_t)qs->samples, "predicted_rejections",
	                              (json_int_t)qs->predicted, "standing_drops", (json_int_t)qs->standing_drops,
	                              "displaced", (json_int_t)qs->displaced));
	json_object_set_new(root, "responses", responses);
	json_object_set_new(root, "upstream_failures", failures);
	json_object_set_new(json_object_get(root, "connections"), "limit_reached",
	                    json_integer((json_int_t)snap->limit_reached));
	json_object_set_new(json_object_get(root, "connections"), "tls_handshake_failures",
	                    json_integer((json_int_t)snap->tls_handshake_failures));
	json_object_set_new(root, "process",
	                    json_pack("{s:f, s:I, s:I, s:I, s:I, s:f}", "cpu_seconds",
	                              round3(snap->process.cpu_seconds), "resident_memory_bytes",
	                              (json_int_t)snap->process.resident_bytes, "virtual_memory_bytes",
	                              (json_int_t)snap->process.virtual_bytes, "open_fds",
	                              (json_int_t)snap->process.open_fds, "max_fds", (json_int_t)snap->process.max_fds,
	                              "start_time_seconds", round3(snap->process.start_time_s)));
	json_object_set_new(root, "access_log",
	                    json_pack("{s:b, s:I}", "enabled", snap->cfg->access_log != NULL, "dropped_lines",
	                              (json_int_t)snap->access_log_dropped));
	return root;
}

/* ---- Prometheus ------------------------------------------------------------ */

static void do_family(sl_buf_t *out, const char *name, const char *type, const char *help)
{
	sl_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The shortest text that reads back as the same double: counters as
 * integers, 0.1 as "0.1" (not %.17g's 0.10000000000000001). */
static const char *number(double v, char buf[32])
{
	if (v == floor(v) && fabs(v) < 9007199254740992.0) {
		snprintf(buf, 32, "%.0f", v);
		return buf;
	}
	for (int digits = 6; digits <= 17; digits++) {
		snprintf(buf, 32, "%.*g", digits, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	return buf;
}

static void do_sample(sl_buf_t *out, const char *name, const char *labels, double value)
{
	char num[32];
	if (labels && *labels)
		sl_buf_printf(out, "%s{%s} %s\n", name, labels, number(value, num));
	else
		sl_buf_printf(out, "%s %s\n", name, number(value, num));
}

static void do_metric(sl_buf_t *out, const char *name, const char *type, const char *help, double value)
{
	do_family(out, name, type, help);
	do_sample(out, name, NULL, value);
}

/* A state as a gauge family: one sample per state, 1 for the current one. */
static void do_states(sl_buf_t *out, const char *name, const char *help, const char *const *names, int n, int current)
{
	do_family(out, name, "gauge", help);
	for (int i = 0; i < n; i++) {
		char label[48];
		snprintf(label, sizeof label, "state=\"%s\"", names[i]);
		do_sample(out, name, label, i == current);
	}
}

/* Bucket bounds in seconds, from fast answers to LLM-style minutes. */
static const double bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                1,     2.5,    5,     10,   30,    60,   120, 300};

static void do_histogram(sl_buf_t *out, const char *name, const char *help, const sl_hist_t *h)
{
	do_family(out, name, "histogram", help);
	char bucket[128], label[32];
	snprintf(bucket, sizeof bucket, "%s_bucket", name);
	for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++) {
		snprintf(label, sizeof label, "le=\"%g\"", bounds[i]);
		do_sample(out, bucket, label, (double)sl_hist_count_le(h, (uint64_t)llround(bounds[i] * 1e6)));
	}
	do_sample(out, bucket, "le=\"+Inf\"", (double)h->total);
	char num[32];
	sl_buf_printf(out, "%s_sum %s\n%s_count %llu\n", name, number((double)h->sum / 1e6, num), name,
	              (unsigned long long)h->total);
}

void sl_report_prometheus(const sl_snapshot_t *snap, sl_buf_t *out)
{
	const sl_metrics_sum_t *m = &snap->sum;
	do_family(out, "sluice_requests_total", "counter",
	          "Client requests to forward, by how they ended (rejected: a 503 of admission or the breaker).");
	do_sample(out, "sluice_requests_total", "outcome=\"success\"", (double)m->success);
	do_sample(out, "sluice_requests_total", "outcome=\"failed\"", (double)m->failed);
	do_sample(out, "sluice_requests_total", "outcome=\"rejected\"", (double)m->rejected);
	do_sample(out, "sluice_requests_total", "outcome=\"client_closed\"", (double)m->client_closed);
	do_family(out, "sluice_rejections_total", "counter",
	          "Requests answered 503 without reaching the upstream, by reason.");
	for (int i = 0; i < SL_REJECT_COUNT; i++) {
		char label[48];
		snprintf(label, sizeof label, "reason=\"%s\"", sl_reject_name((sl_reject_t)i));
		do_sample(out, "sluice_rejections_total", label, (double)m->rejected_by[i]);
	}
	do_family(out, "sluice_responses_total", "counter",
	          "Final answers sent to clients for requests to forward, by status class.");
	for (int i = 0; i < 5; i++) {
		char label[16];
		snprintf(label, sizeof label, "code=\"%dxx\"", i + 1);
		do_sample(out, "sluice_responses_total", label, (double)m->by_class[i]);
	}
	do_family(out, "sluice_upstream_failures_total", "counter",
	          "Upstream attempts that failed, by kind (a stale pooled connection replaced is not counted).");
	for (int i = 0; i < SL_EK_UPSTREAM_COUNT; i++) {
		char label[48];
		snprintf(label, sizeof label, "kind=\"%s\"", sl_error_kind_name((sl_error_kind_t)(SL_EK_DNS + i)));
		do_sample(out, "sluice_upstream_failures_total", label, (double)m->upstream_failures[i]);
	}
	do_metric(out, "sluice_timeouts_total", "counter", "Requests answered 504 Gateway Timeout.",
	          (double)m->timeouts);
	do_metric(out, "sluice_retries_total", "counter", "Extra upstream attempts made after a failed one.",
	          (double)m->retries);
	do_metric(out, "sluice_retries_budget_exhausted_total", "counter",
	          "Retries the failure funnel wanted and the retry budget refused (the failure was answered).",
	          (double)m->retries_budget_exhausted);
	do_histogram(out, "sluice_request_duration_seconds",
	             "Time from the request head to the complete response, forwarded requests.", &m->latency_us);
	do_histogram(out, "sluice_queue_wait_seconds", "Time requests waited in the admission queue.",
	             &m->queue_wait_us);
	do_metric(out, "sluice_active_requests", "gauge", "Requests holding an admission slot.",
	          (double)snap->admit.active);
	do_metric(out, "sluice_max_concurrent_requests", "gauge", "The admission limit.", (double)snap->admit.limit);
	do_metric(out, "sluice_concurrency_effective_limit", "gauge",
	          "The limit applied now: the admission limit, lowered by the adaptive limit (--adaptive-limit).",
	          (double)effective_limit(snap));
	do_metric(out, "sluice_queued_requests", "gauge", "Requests waiting for a slot.", (double)snap->admit.queued);
	do_metric(out, "sluice_max_queue_size", "gauge", "Places in the admission queue.",
	          (double)snap->admit.max_queue);
	do_metric(out, "sluice_peak_active_requests", "gauge", "Most slots held at once since start.",
	          (double)snap->admit.peak_active);
	do_metric(out, "sluice_peak_queued_requests", "gauge", "Longest queue since start.",
	          (double)snap->admit.peak_queued);
	do_metric(out, "sluice_queue_predicted_rejections_total", "counter",
	          "Requests answered 503 queue_timeout at once: their predicted wait exceeded their deadline.",
	          (double)snap->admit.q.predicted);
	do_metric(out, "sluice_queue_standing_drops_total", "counter",
	          "Queued requests answered 503 queue_timeout under a standing queue (waited past the target).",
	          (double)snap->admit.q.standing_drops);
	do_metric(out, "sluice_queue_displaced_total", "counter",
	          "Queued requests answered 503 queue_full to make room for a key with fewer queued.",
	          (double)snap->admit.q.displaced);
	do_metric(out, "sluice_queue_keys", "gauge", "Fair-queueing keys with queued requests.",
	          (double)snap->admit.q.keys);
	do_metric(out, "sluice_queue_hold_seconds", "gauge",
	          "The measured slot hold time the adaptive queue predicts from (0 until 8 holds were seen).",
	          snap->admit.q.samples >= SL_QUEUE_MIN_SAMPLES ? (double)snap->admit.q.hold_ns / 1e9 : 0);
	do_metric(out, "sluice_draining_requests", "gauge",
	          "Requests whose client left, holding their slot until the upstream's answer ends.",
	          (double)m->draining);
	do_metric(out, "sluice_tunnels_open", "gauge", "CONNECT tunnels open.", (double)snap->tunnels_open);
	do_metric(out, "sluice_tunnels_active", "gauge", "CONNECT tunnels holding an admission slot.",
	          (double)m->tunnels_active);
	do_metric(out, "sluice_pool_idle_connections", "gauge", "Idle upstream connections kept for reuse.",
	          (double)snap->pool_idle);
	do_metric(out, "sluice_pool_open_connections", "gauge", "Open upstream connections, idle or busy.",
	          (double)snap->pool_open);
	do_metric(out, "sluice_pool_connections_created_total", "counter", "Upstream connections opened.",
	          (double)snap->pool_created);
	do_metric(out, "sluice_pool_connections_reused_total", "counter", "Requests sent on a pooled connection.",
	          (double)snap->pool_reused);
	const char *breaker_states[] = {sl_breaker_state_name(SL_BREAKER_CLOSED),
	                                sl_breaker_state_name(SL_BREAKER_OPEN),
	                                sl_breaker_state_name(SL_BREAKER_HALF_OPEN)};
	do_states(out, "sluice_circuit_breaker_state", "1 for the breaker's current state, 0 for the others.",
	          breaker_states, 3, (int)snap->breaker_state - SL_BREAKER_CLOSED);
	do_metric(out, "sluice_circuit_breaker_consecutive_failures", "gauge",
	          "Failed requests in a row, counted after their retries.", (double)snap->consecutive_failures);
	do_metric(out, "sluice_circuit_breaker_opened_total", "counter", "Times the breaker opened.",
	          (double)snap->breaker_opened_total);
	do_metric(out, "sluice_client_connections", "gauge", "Client connections held.", (double)snap->connections);
	do_metric(out, "sluice_connection_limit_reached_total", "counter",
	          "Times max_connections was reached and accepting paused.", (double)snap->limit_reached);
	do_metric(out, "sluice_tls_handshake_failures_total", "counter",
	          "Client connections closed because their TLS handshake failed (plain HTTP to the HTTPS port, ...).",
	          (double)snap->tls_handshake_failures);
	do_metric(out, "sluice_draining", "gauge", "1 after SIGTERM, while in-flight requests finish.",
	          snap->draining ? 1 : 0);
	do_metric(out, "sluice_access_log_dropped_lines_total", "counter",
	          "Access log lines dropped because the disk did not keep up.", (double)snap->access_log_dropped);
	do_metric(out, "sluice_uptime_seconds", "gauge", "Seconds since sluice started.", snap->uptime_s);
	if (snap->has_cluster) {
		const sl_cluster_stats_t *c = &snap->cluster;
		const char *cluster_states[SL_CLUSTER_UNAVAILABLE + 1];
		for (int st = 0; st <= SL_CLUSTER_UNAVAILABLE; st++)
			cluster_states[st] = sl_cluster_state_name((sl_cluster_state_t)st);
		do_states(out, "sluice_cluster_state", "1 for the cluster lease's current state, 0 for the others.",
		          cluster_states, SL_CLUSTER_UNAVAILABLE + 1, (int)c->state);
		do_metric(out, "sluice_cluster_replicas", "gauge",
		          "Live replicas sharing the limit, this one included.", (double)c->replicas);
		do_metric(out, "sluice_cluster_lease_slots", "gauge", "Slots this replica may use now.",
		          (double)c->lease);
		do_metric(out, "sluice_cluster_slots_in_use", "gauge", "Slots this replica uses now.",
		          (double)snap->admit.active);
		do_metric(out, "sluice_cluster_limit", "gauge", "The limit shared by all replicas.", (double)c->limit);
		do_metric(out, "sluice_cluster_lease_changes_total", "counter",
		          "Answers from Redis that changed the lease.", (double)c->lease_changes);
		do_metric(out, "sluice_cluster_redis_errors_total", "counter",
		          "Lease requests to Redis that failed (error, timeout, lost connection).",
		          (double)c->redis_errors);
		do_metric(out, "sluice_cluster_redis_commands_total", "counter", "Lease requests sent to Redis.",
		          (double)c->redis_commands);
	}
	do_family(out, "sluice_build_info", "gauge", "Always 1; the version of this sluice as a label.");
	sl_buf_printf(out, "sluice_build_info{version=\"%s\"} 1\n", SL_VERSION);
	do_metric(out, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
	          round(snap->process.cpu_seconds * 1000.0) / 1000.0);
	do_metric(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
	          (double)snap->process.resident_bytes);
	do_metric(out, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
	          (double)snap->process.virtual_bytes);
	do_metric(out, "process_open_fds", "gauge", "Number of open file descriptors.", (double)snap->process.open_fds);
	do_metric(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
	          (double)snap->process.max_fds);
	do_metric(out, "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.",
	          round(snap->process.start_time_s * 1000.0) / 1000.0);
}
