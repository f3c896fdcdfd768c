/* metrics.c — see metrics.h. */
#include "metrics.h"

#include <string.h>

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
/* Single writer: an increment needs no locked instruction. */
#define BUMP(x, n) STORE(x, LOAD(x) + (n))

void sl_metrics_init(sl_metrics_t *m)
{
	memset(m, 0, sizeof *m);
}

void sl_metrics_begin(sl_metrics_t *m)
{
	BUMP(m->active, 1);
	BUMP(m->total, 1);
}

void sl_metrics_end(sl_metrics_t *m, sl_outcome_t outcome, int status, uint64_t now_ms)
{
	BUMP(m->active, (uint64_t)-1);
	uint64_t sec = now_ms / 1000;
	unsigned slot = (unsigned)(sec % SL_METRICS_WINDOW);
	if (LOAD(m->win_sec[slot]) != sec) {
		STORE(m->win_ok[slot], 0);
		STORE(m->win_fail[slot], 0);
		STORE(m->win_sec[slot], sec);
	}
	switch (outcome) {
	case SL_OUTCOME_SUCCESS:
		BUMP(m->success, 1);
		BUMP(m->win_ok[slot], 1);
		break;
	case SL_OUTCOME_FAILED:
		BUMP(m->failed, 1);
		BUMP(m->win_fail[slot], 1);
		break;
	case SL_OUTCOME_REJECTED:
		BUMP(m->rejected, 1);
		break;
	}
	if (status == 504)
		BUMP(m->timeouts, 1);
}

void sl_metrics_add(const sl_metrics_t *m, sl_metrics_sum_t *sum, uint64_t now_ms)
{
	sum->active += LOAD(m->active);
	sum->total += LOAD(m->total);
	sum->success += LOAD(m->success);
	sum->failed += LOAD(m->failed);
	sum->rejected += LOAD(m->rejected);
	sum->timeouts += LOAD(m->timeouts);
	sum->retries += LOAD(m->retries);
	uint64_t sec = now_ms / 1000;
	for (unsigned i = 0; i < SL_METRICS_WINDOW; i++) {
		uint64_t s = LOAD(m->win_sec[i]);
		if (s + SL_METRICS_WINDOW > sec && s <= sec) {
			sum->window_ok += LOAD(m->win_ok[i]);
			sum->window_fail += LOAD(m->win_fail[i]);
		}
	}
}
