/* report.h — what the process looks like right now, and the two renderings
 * of it that the admin endpoints serve: the /proxy-metrics JSON (SPEC §8,
 * with the Python service's fields for migration) and the Prometheus text
 * exposition format 0.0.4.
 *
 * A snapshot sums every worker's counters and histograms (relaxed reads: no
 * lock on any worker's hot path) and copies the admission, breaker and pool
 * figures. It is taken on the thread that serves the request.
 */
#ifndef SL_REPORT_H
#define SL_REPORT_H

#include <jansson.h>

#include "admit.h"
#include "breaker.h"
#include "buf.h"
#include "cluster.h"
#include "config.h"
#include "metrics.h"

typedef struct sl_server sl_server_t;

typedef struct sl_snapshot {
	const sl_config_t *cfg;
	double uptime_s;
	sl_metrics_sum_t sum;
	sl_admit_stats_t admit;
	sl_breaker_state_t breaker_state;
	uint32_t consecutive_failures;
	uint64_t breaker_opened_total;
	uint64_t pool_idle, pool_open, pool_created, pool_reused;
	uint64_t connections;            /* client connections held */
	uint64_t tunnels_open;           /* CONNECT tunnels open (max_tunnels) */
	uint64_t access_log_dropped;     /* lines dropped (disk too slow) */
	uint64_t limit_reached;          /* times max_connections was reached (episodes) */
	uint64_t tls_handshake_failures; /* client TLS handshakes that failed */
	bool draining;                   /* SIGTERM came: finishing what is in flight */
	bool has_cluster;                /* --redis-url */
	sl_cluster_stats_t cluster;
	struct {                     /* the process, as Prometheus' process collector reports it */
		double cpu_seconds;  /* user + system */
		double start_time_s; /* Unix time of the start */
		uint64_t resident_bytes, virtual_bytes;
		uint64_t open_fds, max_fds;
	} process;
} sl_snapshot_t;

/* A new snapshot (heap: it holds two histograms); free() it. */
sl_snapshot_t *sl_snapshot_take(sl_server_t *s);

/* "draining" (after SIGTERM), "unhealthy" (breaker open), "degraded"
 * (under 80 % success in the last 60 s) or "healthy". */
const char *sl_snapshot_status(const sl_snapshot_t *snap);

/* success / (total - rejected - client_closed), 1 when nothing was forwarded yet. */
double sl_snapshot_success_rate(const sl_snapshot_t *snap);

json_t *sl_report_health(const sl_snapshot_t *snap);
json_t *sl_report_json(const sl_snapshot_t *snap);
void sl_report_prometheus(const sl_snapshot_t *snap, sl_buf_t *out);

#endif
