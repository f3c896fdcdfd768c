/* metrics.h — per-worker request counters, summed on read.
 *
 * Each worker writes only its own sl_metrics_t (plain loads and relaxed
 * atomic stores: no lock, no read-modify-write on the hot path); readers on
 * any thread sum all workers with relaxed loads and accept a view that may be
 * a few requests stale. Outcomes follow SPEC §8: every forwarded request ends
 * as exactly one of success (upstream status < 500), failed (an upstream 5xx,
 * sluice's own 502/504, a stalled client), rejected (a 503 of §4) or
 * client_closed (the client left before its answer ended: not the upstream's
 * doing, so neither in the success rate nor in health).
 */
#ifndef SL_METRICS_H
#define SL_METRICS_H

#include <stdint.h>

#include "hist.h"

#define SL_METRICS_WINDOW 60 /* seconds of history for rates */

/* Recent latency: SL_RECENT_SLOTS histograms of SL_RECENT_SLOT_S seconds
 * each, reused in turn. A read merges the current slot and the ones before
 * it that are still inside the window, so "recent" spans the last 50-60 s
 * and a spike shows at once and fades a minute later (the since-start
 * histograms barely move after a day of traffic). */
#define SL_RECENT_SLOT_S 10
#define SL_RECENT_SLOTS (SL_METRICS_WINDOW / SL_RECENT_SLOT_S)

typedef struct sl_recent_hist {
	uint64_t epoch[SL_RECENT_SLOTS]; /* which 10 s period a slot holds, +1 (0: never used) */
	sl_hist_t slot[SL_RECENT_SLOTS];
} sl_recent_hist_t;

typedef enum { SL_OUTCOME_SUCCESS, SL_OUTCOME_FAILED, SL_OUTCOME_REJECTED, SL_OUTCOME_CLIENT_CLOSED } sl_outcome_t;

/* Why a request was rejected (SPEC §4), for outcome REJECTED. */
typedef enum {
	SL_REJECT_QUEUE_FULL,
	SL_REJECT_QUEUE_TIMEOUT,
	SL_REJECT_CIRCUIT_OPEN,
	SL_REJECT_TUNNEL_LIMIT,
	SL_REJECT_CLUSTER_UNAVAILABLE,
	SL_REJECT_COUNT
} sl_reject_t;

const char *sl_reject_name(sl_reject_t why);

/* Why a request ended badly: the access log's error= (as Envoy's response
 * flags or HAProxy's termination state). The first SL_EK_UPSTREAM_COUNT
 * kinds after NONE are one upstream attempt's failure, also counted per
 * attempt in sluice_upstream_failures_total; the rest are sluice's or the
 * client's. */
typedef enum {
	SL_EK_NONE,
	SL_EK_DNS,             /* the target name did not resolve */
	SL_EK_CONNECT_REFUSED, /* the target refused the connection */
	SL_EK_CONNECT,         /* another connect error (unreachable, ...) */
	SL_EK_CONNECT_TIMEOUT, /* connect_timeout passed */
	SL_EK_UPSTREAM_WRITE,  /* writing the request failed */
	SL_EK_UPSTREAM_WRITE_TIMEOUT,
	SL_EK_UPSTREAM_RESET,  /* reset before any response byte */
	SL_EK_UPSTREAM_CLOSED, /* closed before any response byte */
	SL_EK_READ_TIMEOUT,    /* read_timeout passed waiting for the upstream */
	SL_EK_BAD_RESPONSE,    /* the response did not parse, or broke the rules */
	SL_EK_TRUNCATED,       /* the response ended early (closed, reset, timed out) */
	SL_EK_UPSTREAM_STATUS, /* a 502/503/504 from the upstream */
	SL_EK_REQUEST_TIMEOUT, /* --request-timeout passed */
	SL_EK_CLIENT_CLOSED,   /* the client left first */
	SL_EK_CLIENT_TIMEOUT,  /* the client stopped sending its body (408) */
	SL_EK_CLIENT_STALLED,  /* the client stopped reading its answer */
	SL_EK_BAD_REQUEST,     /* the request broke the rules after it was forwarded */
	SL_EK_QUEUE_FULL,      /* the rejections, as their reason */
	SL_EK_QUEUE_TIMEOUT,
	SL_EK_CIRCUIT_OPEN,
	SL_EK_TUNNEL_LIMIT,
	SL_EK_CLUSTER_UNAVAILABLE,
	SL_EK_SHUTDOWN, /* cut by the end of a shutdown */
	SL_EK_COUNT
} sl_error_kind_t;

_Static_assert(SL_EK_CLUSTER_UNAVAILABLE - SL_EK_QUEUE_FULL == SL_REJECT_CLUSTER_UNAVAILABLE,
               "the rejection kinds follow sl_reject_t's order");

#define SL_EK_UPSTREAM_COUNT SL_EK_UPSTREAM_STATUS /* SL_EK_DNS .. SL_EK_UPSTREAM_STATUS */

/* The kind's name ("upstream_reset"); "-" for NONE. */
const char *sl_error_kind_name(sl_error_kind_t kind);

typedef struct sl_metrics {
	uint64_t total;
	uint64_t success;
	uint64_t failed;
	uint64_t rejected;
	uint64_t client_closed;
	uint64_t timeouts; /* answered 504 */
	uint64_t retries;
	uint64_t retries_budget_exhausted; /* retries the funnel wanted and the retry budget refused */
	uint64_t rejected_by[SL_REJECT_COUNT];
	uint64_t by_class[5];                             /* final statuses sent to clients: 1xx (none) .. 5xx */
	uint64_t upstream_failures[SL_EK_UPSTREAM_COUNT]; /* failed attempts, by kind - 1 */
	uint64_t draining;       /* gauge: abandoned requests whose answer is read away, holding their slot */
	uint64_t tunnels_active; /* gauge: CONNECT tunnels holding a slot now */
	/* one slot per second: which second it holds, and its outcomes */
	uint64_t win_sec[SL_METRICS_WINDOW];
	uint64_t win_ok[SL_METRICS_WINDOW];
	uint64_t win_fail[SL_METRICS_WINDOW];
	uint64_t win_rejected[SL_METRICS_WINDOW];
	sl_hist_t latency_us;    /* forwarded requests: head received -> response complete */
	sl_hist_t queue_wait_us; /* requests that waited in the queue */
	sl_recent_hist_t recent_latency_us;
	sl_recent_hist_t recent_queue_wait_us;
} sl_metrics_t;

typedef struct sl_metrics_sum {
	uint64_t total, success, failed, rejected, client_closed, timeouts, retries;
	uint64_t retries_budget_exhausted;
	uint64_t rejected_by[SL_REJECT_COUNT];
	uint64_t by_class[5];
	uint64_t upstream_failures[SL_EK_UPSTREAM_COUNT];
	uint64_t draining, tunnels_active;
	uint64_t window_ok, window_fail, window_rejected; /* outcomes of the last 60 s */
	sl_hist_t latency_us;
	sl_hist_t queue_wait_us;
	sl_hist_t recent_latency_us; /* the last 50-60 s */
	sl_hist_t recent_queue_wait_us;
} sl_metrics_sum_t;

void sl_metrics_init(sl_metrics_t *m);

/* A forwarded request starts / ends (owner thread only). */
void sl_metrics_begin(sl_metrics_t *m);
/* status: the final status sent (counted by class unless outcome is
 * client_closed: nothing, or nothing whole, was sent). */
void sl_metrics_end(sl_metrics_t *m, sl_outcome_t outcome, int status, uint64_t now_ms);
void sl_metrics_rejected(sl_metrics_t *m, sl_reject_t why, uint64_t now_ms);
void sl_metrics_latency(sl_metrics_t *m, uint64_t us, uint64_t now_ms);
void sl_metrics_retry(sl_metrics_t *m);
/* A retry the failure funnel wanted was refused by the retry budget. */
void sl_metrics_budget_exhausted(sl_metrics_t *m);
/* One upstream attempt failed this way (kind: SL_EK_DNS .. SL_EK_UPSTREAM_STATUS). */
void sl_metrics_upstream_failure(sl_metrics_t *m, sl_error_kind_t kind);
/* Gauges (owner thread only): n is +1 or -1. */
void sl_metrics_draining(sl_metrics_t *m, int n);
void sl_metrics_tunnel_active(sl_metrics_t *m, int n);
void sl_metrics_queue_wait(sl_metrics_t *m, uint64_t us, uint64_t now_ms);

/* Prepares an empty sum (it holds four histograms: allocate it, ~140 KB). */
void sl_metrics_sum_init(sl_metrics_sum_t *sum);

/* Adds m into *sum (any thread). */
void sl_metrics_add(const sl_metrics_t *m, sl_metrics_sum_t *sum, uint64_t now_ms);

#endif
