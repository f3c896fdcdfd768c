/* Unit tests for limit.c: the adaptive limit, in virtual time.
 *
 * A small discrete-event simulator stands in for sluice's admission (slots
 * up to the controller's limit, a FIFO queue) and for an upstream of
 * capacity C that either answers 429 beyond C requests in flight (at once),
 * or slows down past C (every request's service time stretched by
 * in-flight / C when it starts). Arrivals are Poisson or bursty, service
 * times lognormal, from a seeded generator: every run is the same.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "limit.h"

/* ---- random numbers ---- */

static uint64_t rng = 0x9e3779b97f4a7c15u;

static double uniform(void)
{
	rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
	return (double)((rng * 0x2545f4914f6cdd1du) >> 11) / 9007199254740992.0;
}

static double exponential(double mean)
{
	return -mean * log(1.0 - uniform());
}

static double lognormal(double median, double sigma)
{
	double u1 = uniform(), u2 = uniform();
	double z = sqrt(-2.0 * log(u1 > 0 ? u1 : 1e-12)) * cos(2 * M_PI * u2);
	return median * exp(sigma * z);
}

/* ---- the simulated world ---- */

enum { MODEL_429, MODEL_SLOW };
#define MAXQ 400
#define MAXEV 4096

typedef struct {
	uint64_t at, started;
	bool signal;
	uint64_t ttfb;
} ev_t;

typedef struct {
	sl_limit_t l;
	int model;
	double capacity;   /* C: the upstream's own concurrency */
	double service_us; /* median service time */
	double sigma;      /* lognormal spread */
	uint32_t active;   /* slots held (sluice) */
	uint32_t inflight; /* requests the upstream is serving (429s are not) */
	uint32_t queued;   /* waiting for a slot */
	ev_t ev[MAXEV];    /* completions, unsorted (small) */
	int nev;
	uint64_t now;
	uint64_t answers, answers_429;
	uint32_t max_seen, min_seen;
} sim_t;

static void sim_init(sim_t *s, int model, double capacity, uint32_t min, uint32_t max)
{
	memset(s, 0, sizeof *s);
	rng = 0x9e3779b97f4a7c15u;
	s->model = model;
	s->capacity = capacity;
	s->service_us = 50000;
	s->sigma = 0.5;
	sl_limit_init(&s->l, min, max, 0);
	s->min_seen = UINT32_MAX;
}

static void sim_note_limit(sim_t *s)
{
	uint32_t v = sl_limit_value(&s->l);
	if (v > s->max_seen)
		s->max_seen = v;
	if (v < s->min_seen)
		s->min_seen = v;
}

/* A slot was granted: the request goes to the upstream. */
static void sim_start(sim_t *s)
{
	s->active++;
	ev_t e = {.started = s->now};
	if (s->model == MODEL_429 && s->inflight >= (uint32_t)s->capacity) {
		e.signal = true;
		e.at = s->now + 200; /* a 429 comes back at once */
	} else {
		double t = lognormal(s->service_us, s->sigma);
		if (s->model == MODEL_SLOW && s->inflight + 1 > s->capacity)
			t *= (s->inflight + 1) / s->capacity;
		e.at = s->now + (uint64_t)t;
		e.ttfb = (uint64_t)t;
		s->inflight++;
	}
	assert_true(s->nev < MAXEV);
	s->ev[s->nev++] = e;
}

static void sim_admit_waiting(sim_t *s)
{
	while (s->queued > 0 && s->active < sl_limit_value(&s->l)) {
		s->queued--;
		sim_start(s);
	}
}

static void sim_complete(sim_t *s, int i)
{
	ev_t e = s->ev[i];
	s->ev[i] = s->ev[--s->nev];
	s->active--;
	s->answers++;
	if (e.signal) {
		s->answers_429++;
		sl_limit_on_signal(&s->l, s->now, e.started);
	} else {
		s->inflight--;
		sl_limit_on_sample(&s->l, s->now, s->now - e.started, e.ttfb);
	}
	sim_note_limit(s);
	sim_admit_waiting(s);
}

static void sim_arrive(sim_t *s)
{
	if (s->queued == 0 && s->active < sl_limit_value(&s->l)) {
		sim_start(s);
		return;
	}
	sl_limit_on_reached(&s->l, s->now);
	sim_note_limit(s);
	if (s->queued < MAXQ)
		s->queued++; /* else rejected: queue_full */
	sim_admit_waiting(s);
}

/* Runs until `until` with arrivals every exponential(mean_gap_us) (bursty:
 * the rate alternates between 3x and 0.33x every 300 ms). */
static void sim_run(sim_t *s, uint64_t until, double mean_gap_us, bool bursty)
{
	double next_arrival = (double)s->now + exponential(mean_gap_us);
	while (s->now < until) {
		int first = -1;
		for (int i = 0; i < s->nev; i++)
			if (first < 0 || s->ev[i].at < s->ev[first].at)
				first = i;
		if (first >= 0 && s->ev[first].at <= (uint64_t)next_arrival) {
			s->now = s->ev[first].at;
			sim_complete(s, first);
		} else {
			s->now = (uint64_t)next_arrival;
			sim_arrive(s);
			double gap = mean_gap_us;
			if (bursty)
				gap *= (s->now / 300000) % 2 ? 3.0 : 1.0 / 3.0;
			next_arrival += exponential(gap);
		}
		uint32_t v = sl_limit_value(&s->l);
		assert_true(v >= (uint32_t)s->l.min && v <= (uint32_t)s->l.max);
	}
}

/* Share of the time steps [from, until) in ms at which the limit lies within
 * [lo, hi]: sampled every ms while running. */
static double sim_share_within(sim_t *s, uint64_t until, double gap, bool bursty, uint32_t lo, uint32_t hi)
{
	uint64_t in = 0, n = 0;
	while (s->now < until) {
		sim_run(s, s->now + 1000, gap, bursty);
		uint32_t v = sl_limit_value(&s->l);
		in += v >= lo && v <= hi;
		n++;
	}
	return n ? (double)in / (double)n : 0;
}

/* Decisions until the limit is within [lo, hi], running at most max_decisions. */
static long sim_decisions_until(sim_t *s, double gap, bool bursty, uint32_t lo, uint32_t hi, uint64_t max_decisions)
{
	uint64_t d0 = s->l.decisions + s->l.cuts;
	while (s->l.decisions + s->l.cuts - d0 < max_decisions) {
		uint32_t v = sl_limit_value(&s->l);
		if (v >= lo && v <= hi)
			return (long)(s->l.decisions + s->l.cuts - d0);
		sim_run(s, s->now + 1000, gap, bursty);
	}
	return -1;
}

/* ---- the tests ---- */

/* Capacity 20, ceiling 100, twice the arrivals the upstream can serve
 * (Poisson): from the ceiling to C +- 20 % within a bounded number of
 * decisions, then it stays there; 429s are a small share of answers. */
static void check_converges_429(bool bursty)
{
	static sim_t s;
	sim_init(&s, MODEL_429, 20, 1, 100);
	double gap = 50000.0 / (20 * 2); /* 2x overload */
	long d = sim_decisions_until(&s, gap, bursty, 16, 24, 200);
	printf("    429 model%s: C=20 reached in %ld decisions (%llu cuts)\n", bursty ? ", bursty" : "", d,
	       (unsigned long long)s.l.cuts);
	assert_true(d >= 0 && d <= 60);
	uint64_t a0 = s.answers, r0 = s.answers_429;
	double share = sim_share_within(&s, s.now + 20000000, gap, bursty, 16, 24);
	double r429 = (double)(s.answers_429 - r0) / (double)(s.answers - a0);
	printf("    then 20 s: limit within C +- 20 %% %.1f %% of the time, 429s %.2f %% of answers, range "
	       "%u..%u\n",
	       share * 100, r429 * 100, s.min_seen, s.max_seen);
	assert_true(share >= 0.95);
	assert_true(r429 < 0.05);
	assert_true(s.max_seen <= 100 && s.min_seen >= 1);
}

static void test_converges_to_capacity_poisson(void **state)
{
	check_converges_429(false);
}

static void test_converges_to_capacity_bursty(void **state)
{
	check_converges_429(true);
}

/* C halves: the limit follows down within a few decisions; C comes back:
 * it recovers. */
static void test_follows_capacity_down_and_up(void **state)
{
	static sim_t s;
	sim_init(&s, MODEL_429, 20, 1, 100);
	double gap = 50000.0 / 40;
	sim_run(&s, 10000000, gap, false);
	assert_true(sl_limit_value(&s.l) >= 16 && sl_limit_value(&s.l) <= 24);
	s.capacity = 10;
	long down = sim_decisions_until(&s, gap, false, 8, 12, 100);
	printf("    C 20 -> 10: within 10 +- 20 %% after %ld decisions\n", down);
	assert_true(down >= 0 && down <= 10);
	sim_run(&s, s.now + 10000000, gap, false);
	s.capacity = 20;
	long up = sim_decisions_until(&s, gap, false, 16, 24, 200);
	printf("    C 10 -> 20: within 20 +- 20 %% after %ld decisions\n", up);
	assert_true(up >= 0 && up <= 30);
}

/* The floor and the ceiling hold whatever happens: an upstream that
 * refuses everything (capacity 0) takes the limit to min, never below. */
static void test_never_below_min_nor_above_max(void **state)
{
	static sim_t s;
	sim_init(&s, MODEL_429, 0, 3, 50);
	sim_run(&s, 5000000, 1000, false);
	assert_int_equal(sl_limit_value(&s.l), 3);
	assert_true(s.min_seen >= 3);
	/* a healthy upstream with room to spare: the limit stays at the ceiling */
	sim_init(&s, MODEL_429, 1000, 3, 50);
	sim_run(&s, 5000000, 50000.0 / 100, false);
	assert_int_equal(sl_limit_value(&s.l), 50);
	assert_int_equal(s.min_seen, 50);
	/* a new range clamps it */
	sl_limit_set_range(&s.l, 3, 40);
	assert_int_equal(sl_limit_value(&s.l), 40);
}

/* An upstream that slows down instead of refusing: when its capacity falls
 * from 40 to 10 under a limit of 40, the time to first byte quadruples and
 * the limit comes down by a quarter or more within a few decisions. */
static void test_rising_ttfb_cuts(void **state)
{
	static sim_t s;
	sim_init(&s, MODEL_SLOW, 40, 1, 40);
	double gap = 50000.0 / 60; /* 1.5x of what 40 slots serve */
	sim_run(&s, 5000000, gap, false);
	assert_int_equal(sl_limit_value(&s.l), 40); /* no false alarm from lognormal noise */
	s.capacity = 10;
	long d = sim_decisions_until(&s, gap, false, 1, 30, 40);
	printf("    slowdown C 40 -> 10: limit <= 30 after %ld decisions (now %u)\n", d, sl_limit_value(&s.l));
	assert_true(d >= 0 && d <= 10);
}

/* Noisy but steady TTFB (lognormal, sigma 1) at the limit: Gradient2's
 * tolerance of 1.5 keeps false cuts rare. */
static void test_steady_noise_is_not_a_signal(void **state)
{
	static sim_t s;
	sim_init(&s, MODEL_SLOW, 1000, 1, 40);
	s.sigma = 1.0;
	double share = sim_share_within(&s, 30000000, 50000.0 / 60, false, 32, 40);
	printf("    steady noise: limit >= 80 %% of the ceiling %.1f %% of the time (%llu cuts in %llu decisions)\n",
	       share * 100, (unsigned long long)s.l.cuts, (unsigned long long)s.l.decisions);
	assert_true(share >= 0.9);
}

/* A signal from a request admitted before the last cut does not cut again;
 * a fresh one after the median hold does; growth needs the limit reached
 * and a clean window. */
static void test_rules_one_by_one(void **state)
{
	sl_limit_t l;
	sl_limit_init(&l, 1, 100, 0);
	for (int i = 0; i < 10; i++) /* median hold 100 ms */
		sl_limit_on_sample(&l, 1000 + i, 100000, 0);
	assert_int_equal(sl_limit_value(&l), 100); /* not reached: no growth (and at the ceiling anyway) */
	assert_int_equal(sl_limit_on_signal(&l, 2000, 1500), 90);
	assert_int_equal(sl_limit_on_signal(&l, 3000, 1800), 90);   /* started before the cut */
	assert_int_equal(sl_limit_on_signal(&l, 50000, 40000), 90); /* within one median hold of it */
	assert_int_equal(sl_limit_on_signal(&l, 103000, 60000), 81);
	/* a clean window with the limit reached: +1 */
	sl_limit_on_reached(&l, 110000);
	sl_limit_on_sample(&l, 150000, 100000, 0);
	assert_int_equal(sl_limit_on_reached(&l, 210000), 82); /* the window closed at 203 ms */
	/* a window with a signal that did not cut: no growth */
	sl_limit_on_signal(&l, 220000, 100); /* old request */
	sl_limit_on_sample(&l, 250000, 100000, 0);
	assert_int_equal(sl_limit_on_reached(&l, 320000), 82);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rules_one_by_one),
	    cmocka_unit_test(test_converges_to_capacity_poisson),
	    cmocka_unit_test(test_converges_to_capacity_bursty),
	    cmocka_unit_test(test_follows_capacity_down_and_up),
	    cmocka_unit_test(test_never_below_min_nor_above_max),
	    cmocka_unit_test(test_rising_ttfb_cuts),
	    cmocka_unit_test(test_steady_noise_is_not_a_signal),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
