/* metrics.c — see metrics.h. */
#include "metrics.h"

#include <string.h>

#include "stat.h"

#define LOAD SL_LOAD
#define STORE SL_STORE
#define BUMP SL_BUMP
/* An outcome counter: released after the total it follows (see sl_metrics_add). */
#define BUMP_OUTCOME(x) __atomic_store_n(&(x), LOAD(x) + 1, __ATOMIC_RELEASE)
#define LOAD_OUTCOME(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)

/* `make METRICS=off` builds sluice with per-request counting compiled out,
 * only to measure what counting costs (bench/metrics-cost.sh). */
#ifdef SL_NO_METRICS
#define SL_METRICS_OFF 1
#else
#define SL_METRICS_OFF 0
#endif

const char *sl_reject_name(sl_reject_t why)
{
	static const char *const names[SL_REJECT_COUNT] = {
	    [SL_REJECT_QUEUE_FULL] = "queue_full",
	    [SL_REJECT_QUEUE_TIMEOUT] = "queue_timeout",
	    [SL_REJECT_CIRCUIT_OPEN] = "circuit_open",
	    [SL_REJECT_TUNNEL_LIMIT] = "tunnel_limit",
	    [SL_REJECT_CLUSTER_UNAVAILABLE] = "cluster_unavailable",
	};
	return names[why];
}

const char *sl_error_kind_name(sl_error_kind_t kind)
{
	static const char *const names[SL_EK_COUNT] = {
	    "-",
	    "dns_error",
	    "connect_refused",
	    "connect_error",
	    "connect_timeout",
	    "upstream_write_error",
	    "upstream_write_timeout",
	    "upstream_reset",
	    "upstream_closed",
	    "read_timeout",
	    "bad_response",
	    "truncated",
	    "upstream_status",
	    "request_timeout",
	    "client_closed",
	    "client_timeout",
	    "client_stalled",
	    "bad_request",
	    "queue_full",
	    "queue_timeout",
	    "circuit_open",
	    "tunnel_limit",
	    "cluster_unavailable",
	    "shutdown",
	};
	return names[kind];
}

void sl_metrics_init(sl_metrics_t *m)
{
	memset(m, 0, sizeof *m);
	sl_hist_init(&m->latency_us);
	sl_hist_init(&m->queue_wait_us);
	for (unsigned i = 0; i < SL_RECENT_SLOTS; i++) {
		sl_hist_init(&m->recent_latency_us.slot[i]);
		sl_hist_init(&m->recent_queue_wait_us.slot[i]);
	}
}

void sl_metrics_rejected(sl_metrics_t *m, sl_reject_t why, uint64_t now_ms)
{
	if (SL_METRICS_OFF) {
		(void)m;
		return;
	}
	BUMP(m->rejected_by[why], 1);
	sl_metrics_end(m, SL_OUTCOME_REJECTED, 503, now_ms);
}

void sl_metrics_draining(sl_metrics_t *m, int n)
{
	BUMP(m->draining, (uint64_t)(int64_t)n);
}

void sl_metrics_tunnel_active(sl_metrics_t *m, int n)
{
	BUMP(m->tunnels_active, (uint64_t)(int64_t)n);
}

void sl_metrics_retry(sl_metrics_t *m)
{
	if (SL_METRICS_OFF) {
		(void)m;
		return;
	}
	BUMP(m->retries, 1);
}

void sl_metrics_budget_exhausted(sl_metrics_t *m)
{
	BUMP(m->retries_budget_exhausted, 1);
}

void sl_metrics_upstream_failure(sl_metrics_t *m, sl_error_kind_t kind)
{
	if (kind >= SL_EK_DNS && kind <= SL_EK_UPSTREAM_STATUS)
		BUMP(m->upstream_failures[kind - SL_EK_DNS], 1);
}

/* Which 10 s period now is in, counted from 1 (an epoch of 0 is "unused"). */
static uint64_t recent_period(uint64_t now_ms)
{
	return now_ms / 1000 / SL_RECENT_SLOT_S + 1;
}

/* The slot for now, emptied first when it still holds an older period. */
static sl_hist_t *recent_slot(sl_recent_hist_t *r, uint64_t now_ms)
{
	uint64_t period = recent_period(now_ms);
	unsigned i = (unsigned)(period % SL_RECENT_SLOTS);
	if (r->epoch[i] != period) {
		sl_hist_reset(&r->slot[i]);
		STORE(r->epoch[i], period);
	}
	return &r->slot[i];
}

static void recent_merge(const sl_recent_hist_t *r, sl_hist_t *into, uint64_t now_ms)
{
	uint64_t period = recent_period(now_ms);
	for (unsigned i = 0; i < SL_RECENT_SLOTS; i++) {
		uint64_t e = LOAD(r->epoch[i]);
		if (e != 0 && e <= period && e + SL_RECENT_SLOTS > period)
			sl_hist_merge(into, &r->slot[i]);
	}
}

void sl_metrics_latency(sl_metrics_t *m, uint64_t us, uint64_t now_ms)
{
	if (SL_METRICS_OFF) {
		(void)m, (void)us, (void)now_ms;
		return;
	}
	sl_hist_record(&m->latency_us, us);
	sl_hist_record(recent_slot(&m->recent_latency_us, now_ms), us);
}

void sl_metrics_queue_wait(sl_metrics_t *m, uint64_t us, uint64_t now_ms)
{
	if (SL_METRICS_OFF) {
		(void)m, (void)us, (void)now_ms;
		return;
	}
	sl_hist_record(&m->queue_wait_us, us);
	sl_hist_record(recent_slot(&m->recent_queue_wait_us, now_ms), us);
}

void sl_metrics_begin(sl_metrics_t *m)
{
	if (SL_METRICS_OFF) {
		(void)m;
		return;
	}
	BUMP(m->total, 1);
}

void sl_metrics_end(sl_metrics_t *m, sl_outcome_t outcome, int status, uint64_t now_ms)
{
	if (SL_METRICS_OFF) {
		(void)m;
		return;
	}
	uint64_t sec = now_ms / 1000;
	unsigned slot = (unsigned)(sec % SL_METRICS_WINDOW);
	if (LOAD(m->win_sec[slot]) != sec) {
		STORE(m->win_ok[slot], 0);
		STORE(m->win_fail[slot], 0);
		STORE(m->win_rejected[slot], 0);
		STORE(m->win_sec[slot], sec);
	}
	switch (outcome) {
	case SL_OUTCOME_SUCCESS:
		BUMP_OUTCOME(m->success);
		BUMP(m->win_ok[slot], 1);
		break;
	case SL_OUTCOME_FAILED:
		BUMP_OUTCOME(m->failed);
		BUMP(m->win_fail[slot], 1);
		break;
	case SL_OUTCOME_REJECTED:
		BUMP_OUTCOME(m->rejected);
		BUMP(m->win_rejected[slot], 1);
		break;
	case SL_OUTCOME_CLIENT_CLOSED: BUMP_OUTCOME(m->client_closed); break; /* not the upstream's: no window */
	}
	if (status == 504 && outcome == SL_OUTCOME_FAILED)
		BUMP(m->timeouts, 1);
	if (outcome != SL_OUTCOME_CLIENT_CLOSED && status >= 100 && status <= 599)
		BUMP(m->by_class[status / 100 - 1], 1);
}

void sl_metrics_sum_init(sl_metrics_sum_t *sum)
{
	memset(sum, 0, sizeof *sum);
	sl_hist_init(&sum->latency_us);
	sl_hist_init(&sum->queue_wait_us);
	sl_hist_init(&sum->recent_latency_us);
	sl_hist_init(&sum->recent_queue_wait_us);
}

void sl_metrics_add(const sl_metrics_t *m, sl_metrics_sum_t *sum, uint64_t now_ms)
{
	sl_hist_merge(&sum->latency_us, &m->latency_us);
	sl_hist_merge(&sum->queue_wait_us, &m->queue_wait_us);
	recent_merge(&m->recent_latency_us, &sum->recent_latency_us, now_ms);
	recent_merge(&m->recent_queue_wait_us, &sum->recent_queue_wait_us, now_ms);
	/* Outcomes before the total: a request is counted in total before its
	 * outcome, so read in this order total >= success + failed + rejected
	 * holds in every sum, however the worker runs meanwhile. */
	sum->success += LOAD_OUTCOME(m->success);
	sum->failed += LOAD_OUTCOME(m->failed);
	sum->rejected += LOAD_OUTCOME(m->rejected);
	sum->client_closed += LOAD_OUTCOME(m->client_closed);
	sum->total += LOAD(m->total);
	sum->timeouts += LOAD(m->timeouts);
	sum->retries += LOAD(m->retries);
	sum->retries_budget_exhausted += LOAD(m->retries_budget_exhausted);
	sum->draining += LOAD(m->draining);
	sum->tunnels_active += LOAD(m->tunnels_active);
	for (int i = 0; i < SL_REJECT_COUNT; i++)
		sum->rejected_by[i] += LOAD(m->rejected_by[i]);
	for (int i = 0; i < 5; i++)
		sum->by_class[i] += LOAD(m->by_class[i]);
	for (int i = 0; i < SL_EK_UPSTREAM_COUNT; i++)
		sum->upstream_failures[i] += LOAD(m->upstream_failures[i]);
	uint64_t sec = now_ms / 1000;
	for (unsigned i = 0; i < SL_METRICS_WINDOW; i++) {
		uint64_t s = LOAD(m->win_sec[i]);
		if (s + SL_METRICS_WINDOW > sec && s <= sec) {
			sum->window_ok += LOAD(m->win_ok[i]);
			sum->window_fail += LOAD(m->win_fail[i]);
			sum->window_rejected += LOAD(m->win_rejected[i]);
		}
	}
}
