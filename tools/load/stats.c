/* stats.c — initialising and summing the per-thread counters of stats.h,
 * and the latencies' standard deviation from them. */
#include "stats.h"

#include <math.h>
#include <string.h>

void sl_load_stats_init(sl_load_stats_t *s)
{
	memset(s, 0, sizeof(*s));
	sl_hist_init(&s->latency_us);
	sl_hist_init(&s->success_latency_us);
	atomic_init(&s->pub_done, 0);
	atomic_init(&s->pub_errors, 0);
	atomic_init(&s->pub_late, 0);
	atomic_init(&s->pub_connections, 0);
}

/* Chan et al.'s pairwise update: the mean and squared deviations of two
 * sets combined, from each set's own (before the counts are merged). */
static void do_merge_spread(sl_load_stats_t *dst, const sl_load_stats_t *src)
{
	double na = (double)dst->latency_us.total, nb = (double)src->latency_us.total;
	if (nb == 0)
		return;
	double d = src->latency_mean_us - dst->latency_mean_us, n = na + nb;
	dst->latency_mean_us += d * nb / n;
	dst->latency_m2 += src->latency_m2 + d * d * na * nb / n;
}

void sl_load_stats_merge(sl_load_stats_t *dst, const sl_load_stats_t *src)
{
	do_merge_spread(dst, src);
	sl_hist_merge(&dst->latency_us, &src->latency_us);
	sl_hist_merge(&dst->success_latency_us, &src->success_latency_us);
	dst->success += src->success;
	dst->failed += src->failed;
	dst->bytes += src->bytes;
	dst->unsent += src->unsent;
	dst->late += src->late;
	dst->connections += src->connections;
	for (int i = 0; i < SL_LOAD_ERR_COUNT; i++)
		dst->errors[i] += src->errors[i];
	for (int i = 0; i < SL_LOAD_STATUS_MAX; i++)
		dst->status[i] += src->status[i];
}

double sl_load_stats_stddev_us(const sl_load_stats_t *s)
{
	uint64_t n = s->latency_us.total;
	return n > 1 && s->latency_m2 > 0 ? sqrt(s->latency_m2 / (double)(n - 1)) : 0.0;
}

const char *sl_load_stats_err_name(sl_load_err_t kind)
{
	static const char *const names[SL_LOAD_ERR_COUNT] = {"connect", "timeout", "reset", "other"};
	return kind < SL_LOAD_ERR_COUNT ? names[kind] : "?";
}
