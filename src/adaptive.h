/* adaptive.h — the adaptive limit at work (--adaptive-limit): feeds the
 * controller (limit.h) with what the workers see, and applies its limit to
 * admission as a cap under max_concurrent_requests (or the cluster lease):
 * slots in use stay under min(that, the adaptive limit).
 *
 * Shared by every worker. Off, each entry point is one relaxed load. On,
 * the controller is behind its own mutex, taken once per request that
 * ends (a sample) and once per overload signal, for a few arithmetic steps;
 * the admission lock is taken inside it only when the integer limit
 * changes (lock order: this one, then admission's). "The limit was
 * reached" is an atomic flag the workers set without the lock (only when
 * not already set) and the controller takes at its next event.
 */
#ifndef SL_ADAPTIVE_H
#define SL_ADAPTIVE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "admit.h"
#include "config.h"
#include "limit.h"

typedef struct sl_adaptive {
	atomic_bool on;      /* --adaptive-limit */
	atomic_bool reached; /* a request had to wait for a slot since the controller last looked */
	atomic_uint limit;   /* the controller's limit, published for the metrics */
	pthread_mutex_t lock;
	sl_limit_t ctl; /* under the lock */
	sl_admit_t *admit;
	uint32_t applied; /* the cap last given to admission (under the lock) */
} sl_adaptive_t;

/* Starts at max_concurrent_requests (main thread, before the workers). */
void sl_adaptive_init(sl_adaptive_t *ad, sl_admit_t *admit, const sl_config_t *cfg);
void sl_adaptive_dispose(sl_adaptive_t *ad);

/* New settings (SIGHUP): on/off and the range; the limit is clamped into
 * it (turned off: admission's cap is lifted). */
void sl_adaptive_configure(sl_adaptive_t *ad, const sl_config_t *cfg);

static inline bool sl_adaptive_on(sl_adaptive_t *ad)
{
	return atomic_load_explicit(&ad->on, memory_order_relaxed);
}

/* An overload signal (429/503 head, connect refused or timed out, read
 * timeout) for an attempt that started at started_us (uv_hrtime µs). */
void sl_adaptive_signal(sl_adaptive_t *ad, uint64_t now_us, uint64_t started_us);

/* A request ended with an answer, its client still there, no signal:
 * hold_us it held its slot, ttfb_us until its answer's head (0: none). */
void sl_adaptive_sample(sl_adaptive_t *ad, uint64_t now_us, uint64_t hold_us, uint64_t ttfb_us);

/* A request had to queue for a slot, or found the queue full. */
static inline void sl_adaptive_reached(sl_adaptive_t *ad)
{
	if (sl_adaptive_on(ad) && !atomic_load_explicit(&ad->reached, memory_order_relaxed))
		atomic_store_explicit(&ad->reached, true, memory_order_relaxed);
}

#endif
