/* breaker.c — see breaker.h. */
#include "breaker.h"

#include <stdio.h>

#include "config.h"
#include "deadline.h"
#include "log.h"

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)

void sl_breaker_init(sl_breaker_t *b, uint32_t threshold, double timeout_s)
{
	pthread_mutex_init(&b->lock, NULL);
	b->state = SL_BREAKER_CLOSED;
	b->consecutive_failures = 0;
	b->opened_at_ms = 0;
	b->opened_total = 0;
	b->probe_in_flight = false;
	sl_breaker_configure(b, threshold, timeout_s);
}

void sl_breaker_dispose(sl_breaker_t *b)
{
	pthread_mutex_destroy(&b->lock);
}

void sl_breaker_configure(sl_breaker_t *b, uint32_t threshold, double timeout_s)
{
	pthread_mutex_lock(&b->lock);
	b->threshold = threshold ? threshold : 1;
	b->timeout_ms = sl_config_ms(timeout_s);
	pthread_mutex_unlock(&b->lock);
}

sl_breaker_verdict_t sl_breaker_allow(sl_breaker_t *b, uint64_t now_ms)
{
	if (LOAD(b->state) == SL_BREAKER_CLOSED)
		return SL_BREAKER_ALLOW;
	sl_breaker_verdict_t v = SL_BREAKER_REJECT;
	pthread_mutex_lock(&b->lock);
	switch (b->state) {
	case SL_BREAKER_CLOSED: v = SL_BREAKER_ALLOW; break;
	case SL_BREAKER_OPEN:
		if (sl_ms_left(now_ms, b->opened_at_ms, b->timeout_ms) > 0)
			break;
		STORE(b->state, SL_BREAKER_HALF_OPEN);
		sl_info("circuit breaker half-open: sending one probe request");
		/* fall through */
	case SL_BREAKER_HALF_OPEN:
		if (!b->probe_in_flight) {
			b->probe_in_flight = true;
			v = SL_BREAKER_PROBE;
		}
		break;
	}
	pthread_mutex_unlock(&b->lock);
	return v;
}

static void do_open(sl_breaker_t *b, uint64_t now_ms, const char *why)
{
	STORE(b->state, SL_BREAKER_OPEN);
	b->opened_at_ms = now_ms;
	b->probe_in_flight = false;
	STORE(b->opened_total, b->opened_total + 1);
	sl_warn("circuit breaker opened: %s; requests get 503 for %.3g s", why, (double)b->timeout_ms / 1000.0);
}

bool sl_breaker_record(sl_breaker_t *b, bool success, bool probe, uint64_t now_ms)
{
	if (success && !probe && LOAD(b->consecutive_failures) == 0 && LOAD(b->state) == SL_BREAKER_CLOSED)
		return false; /* the common case: nothing to change, no lock */
	bool opened = false;
	pthread_mutex_lock(&b->lock);
	if (success) {
		STORE(b->consecutive_failures, 0);
		if (probe || b->state == SL_BREAKER_HALF_OPEN) {
			if (b->state != SL_BREAKER_CLOSED)
				sl_info("circuit breaker closed: the probe request succeeded");
			STORE(b->state, SL_BREAKER_CLOSED);
			b->probe_in_flight = false;
		}
	} else {
		STORE(b->consecutive_failures, b->consecutive_failures + 1);
		if (probe && b->state == SL_BREAKER_HALF_OPEN) {
			do_open(b, now_ms, "the probe request failed");
			opened = true;
		} else if (b->state == SL_BREAKER_CLOSED && b->consecutive_failures >= b->threshold) {
			char why[64];
			snprintf(why, sizeof why, "%u consecutive failed requests", b->consecutive_failures);
			do_open(b, now_ms, why);
			opened = true;
		}
	}
	pthread_mutex_unlock(&b->lock);
	return opened;
}

void sl_breaker_abandon_probe(sl_breaker_t *b)
{
	pthread_mutex_lock(&b->lock);
	b->probe_in_flight = false;
	pthread_mutex_unlock(&b->lock);
}

sl_breaker_state_t sl_breaker_state(const sl_breaker_t *b, uint64_t now_ms)
{
	sl_breaker_t *m = (sl_breaker_t *)b;
	sl_breaker_state_t s = (sl_breaker_state_t)LOAD(m->state);
	if (s != SL_BREAKER_OPEN)
		return s;
	pthread_mutex_lock(&m->lock);
	if (m->state == SL_BREAKER_OPEN && sl_ms_left(now_ms, m->opened_at_ms, m->timeout_ms) == 0)
		s = SL_BREAKER_HALF_OPEN;
	pthread_mutex_unlock(&m->lock);
	return s;
}

const char *sl_breaker_state_name(sl_breaker_state_t s)
{
	static const char *const names[] = {"closed", "open", "half_open"};
	return names[s];
}

uint32_t sl_breaker_failures(const sl_breaker_t *b)
{
	return LOAD(((sl_breaker_t *)b)->consecutive_failures);
}

uint64_t sl_breaker_opened_total(const sl_breaker_t *b)
{
	return LOAD(((sl_breaker_t *)b)->opened_total);
}

uint32_t sl_breaker_retry_after(sl_breaker_t *b, uint64_t now_ms)
{
	pthread_mutex_lock(&b->lock);
	uint64_t left = b->state == SL_BREAKER_OPEN ? sl_ms_left(now_ms, b->opened_at_ms, b->timeout_ms) : 0;
	pthread_mutex_unlock(&b->lock);
	uint32_t s = (uint32_t)((left + 999) / 1000);
	return s ? s : 1;
}
