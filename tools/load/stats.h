/* stats.h — what one sluice-load thread counts, and the sum of all of them.
 *
 * Each worker thread owns one sl_load_stats_t and is its only writer; the
 * recording functions are inline because they run once per request. Other
 * threads read only the two `pub_*` atomics (for the progress line) until the
 * worker has finished; then the main thread merges everything.
 *
 * Counting rules: every request that was sent ends as exactly one of success
 * (a final response 2xx/3xx) or failed (any other status, or an error);
 * total = success + failed. Latency (µs) is recorded for every final
 * response, whatever its status, and for no error. Open loop only: `late`
 * requests are among those sent, `unsent` ones are not; both are behind
 * schedule because --max-concurrent connections were all busy. */
#ifndef SL_LOAD_STATS_H
#define SL_LOAD_STATS_H

#include <stdatomic.h>
#include <stdint.h>

#include "hist.h"

typedef enum {
	SL_LOAD_ERR_CONNECT, /* refused, unreachable, or not made within --timeout */
	SL_LOAD_ERR_TIMEOUT, /* --timeout passed before the response was complete */
	SL_LOAD_ERR_RESET,   /* reset, or closed before the response was complete */
	SL_LOAD_ERR_OTHER,   /* malformed response, any other socket error */
	SL_LOAD_ERR_COUNT
} sl_load_err_t;

#define SL_LOAD_STATUS_MAX 1000 /* llhttp accepts three-digit codes */

typedef struct sl_load_stats {
	sl_hist_t latency_us;
	sl_hist_t success_latency_us; /* the successes' alone (2xx/3xx): what was served, not the fast refusals */
	/* the latencies' running mean and sum of squared deviations from it
	 * (Welford), for an exact standard deviation: the histogram's buckets
	 * would blur a spread much narrower than the latency itself, and a
	 * plain sum of squares loses it to cancellation */
	double latency_mean_us;
	double latency_m2;
	uint64_t success;
	uint64_t failed;
	uint64_t bytes;       /* every byte received, heads included */
	uint64_t unsent;      /* open loop: due before the end, never sent (not in total) */
	uint64_t late;        /* open loop: sent behind schedule, every connection allowed being busy */
	uint64_t connections; /* connections the run had (open loop: grown to), not all open at once */
	uint64_t errors[SL_LOAD_ERR_COUNT];
	uint64_t status[SL_LOAD_STATUS_MAX];
	/* published for the progress line; relaxed, one writer */
	_Atomic uint64_t pub_done;
	_Atomic uint64_t pub_errors;
	_Atomic uint64_t pub_late;
	_Atomic uint64_t pub_connections;
} sl_load_stats_t;

/* What the progress line shows, summed over the workers while they run. */
typedef struct sl_load_progress {
	uint64_t done;        /* requests ended, success or failure */
	uint64_t errors;      /* ...of them, by an error rather than a status */
	uint64_t connections; /* as sl_load_stats_t.connections */
	uint64_t behind;      /* open loop: sent late so far, plus due now and waiting */
} sl_load_progress_t;

void sl_load_stats_init(sl_load_stats_t *s);

/* dst += src (not the pub_* fields). */
void sl_load_stats_merge(sl_load_stats_t *dst, const sl_load_stats_t *src);

/* The sample standard deviation of the recorded latencies, µs (0 for fewer
 * than two). */
double sl_load_stats_stddev_us(const sl_load_stats_t *s);

/* Names of the error kinds, as in the report and the JSON keys. */
const char *sl_load_stats_err_name(sl_load_err_t kind);

static inline void sl_load_stats_publish(sl_load_stats_t *s)
{
	atomic_store_explicit(&s->pub_done, s->success + s->failed, memory_order_relaxed);
}

static inline void sl_load_stats_response(sl_load_stats_t *s, unsigned status, uint64_t latency_us)
{
	sl_hist_record(&s->latency_us, latency_us);
	double x = (double)latency_us, d = x - s->latency_mean_us;
	s->latency_mean_us += d / (double)s->latency_us.total;
	s->latency_m2 += d * (x - s->latency_mean_us);
	s->status[status < SL_LOAD_STATUS_MAX ? status : 0]++;
	if (status >= 200 && status < 400) {
		s->success++;
		sl_hist_record(&s->success_latency_us, latency_us);
	} else
		s->failed++;
	sl_load_stats_publish(s);
}

static inline void sl_load_stats_error(sl_load_stats_t *s, sl_load_err_t kind)
{
	s->errors[kind]++;
	s->failed++;
	atomic_store_explicit(&s->pub_errors, atomic_load_explicit(&s->pub_errors, memory_order_relaxed) + 1,
	                      memory_order_relaxed);
	sl_load_stats_publish(s);
}

#endif
