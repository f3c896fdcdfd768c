/* adaptive.c — see adaptive.h. */
#include "adaptive.h"

/* Must be called with the lock held: passes a changed limit on. */
static void do_apply(sl_adaptive_t *ad, uint32_t limit)
{
	atomic_store_explicit(&ad->limit, limit, memory_order_relaxed);
	if (limit != ad->applied) {
		ad->applied = limit;
		sl_admit_set_cap(ad->admit, limit);
	}
}

/* Must be called with the lock held: the flag set by the workers. */
static void do_take_reached(sl_adaptive_t *ad, uint64_t now_us)
{
	if (atomic_load_explicit(&ad->reached, memory_order_relaxed) &&
	    atomic_exchange_explicit(&ad->reached, false, memory_order_relaxed))
		sl_limit_on_reached(&ad->ctl, now_us);
}

void sl_adaptive_init(sl_adaptive_t *ad, sl_admit_t *admit, const sl_config_t *cfg)
{
	pthread_mutex_init(&ad->lock, NULL);
	ad->admit = admit;
	ad->applied = UINT32_MAX;
	atomic_init(&ad->reached, false);
	atomic_init(&ad->on, false);
	atomic_init(&ad->limit, (unsigned)cfg->max_concurrent_requests);
	sl_limit_init(&ad->ctl, (uint32_t)cfg->min_concurrent_requests, (uint32_t)cfg->max_concurrent_requests,
	              uv_hrtime() / 1000);
	sl_adaptive_configure(ad, cfg);
}

void sl_adaptive_dispose(sl_adaptive_t *ad)
{
	pthread_mutex_destroy(&ad->lock);
}

void sl_adaptive_configure(sl_adaptive_t *ad, const sl_config_t *cfg)
{
	pthread_mutex_lock(&ad->lock);
	if (cfg->adaptive_limit && !atomic_load_explicit(&ad->on, memory_order_relaxed))
		/* turned on (again): what it learnt before it was off is stale;
		 * start over at the ceiling, as at start */
		sl_limit_init(&ad->ctl, (uint32_t)cfg->min_concurrent_requests, (uint32_t)cfg->max_concurrent_requests,
		              uv_hrtime() / 1000);
	else
		sl_limit_set_range(&ad->ctl, (uint32_t)cfg->min_concurrent_requests,
		                   (uint32_t)cfg->max_concurrent_requests);
	atomic_store_explicit(&ad->on, cfg->adaptive_limit, memory_order_relaxed);
	if (cfg->adaptive_limit) {
		do_apply(ad, sl_limit_value(&ad->ctl));
	} else {
		atomic_store_explicit(&ad->limit, (unsigned)cfg->max_concurrent_requests, memory_order_relaxed);
		if (ad->applied != UINT32_MAX) {
			ad->applied = UINT32_MAX;
			sl_admit_set_cap(ad->admit, UINT32_MAX);
		}
	}
	pthread_mutex_unlock(&ad->lock);
}

void sl_adaptive_signal(sl_adaptive_t *ad, uint64_t now_us, uint64_t started_us)
{
	if (!sl_adaptive_on(ad))
		return;
	pthread_mutex_lock(&ad->lock);
	do_take_reached(ad, now_us);
	do_apply(ad, sl_limit_on_signal(&ad->ctl, now_us, started_us));
	pthread_mutex_unlock(&ad->lock);
}

void sl_adaptive_sample(sl_adaptive_t *ad, uint64_t now_us, uint64_t hold_us, uint64_t ttfb_us)
{
	if (!sl_adaptive_on(ad))
		return;
	pthread_mutex_lock(&ad->lock);
	do_take_reached(ad, now_us);
	do_apply(ad, sl_limit_on_sample(&ad->ctl, now_us, hold_us, ttfb_us));
	pthread_mutex_unlock(&ad->lock);
}
