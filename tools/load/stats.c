/* stats.c — initialising and summing the per-thread counters of stats.h. */
#include "stats.h"

#include <string.h>

void sl_load_stats_init(sl_load_stats_t *s)
{
	memset(s, 0, sizeof(*s));
	sl_hist_init(&s->latency_us);
	atomic_init(&s->pub_done, 0);
	atomic_init(&s->pub_errors, 0);
	atomic_init(&s->pub_late, 0);
	atomic_init(&s->pub_connections, 0);
}

void sl_load_stats_merge(sl_load_stats_t *dst, const sl_load_stats_t *src)
{
	sl_hist_merge(&dst->latency_us, &src->latency_us);
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

const char *sl_load_stats_err_name(sl_load_err_t kind)
{
	static const char *const names[SL_LOAD_ERR_COUNT] = {"connect", "timeout", "reset", "other"};
	return kind < SL_LOAD_ERR_COUNT ? names[kind] : "?";
}
