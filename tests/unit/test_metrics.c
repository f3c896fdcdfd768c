/* test_metrics.c — per-worker counters summed on read: outcomes, the 60 s
 * outcome window, and the recent-latency window (a spike shows at once and
 * is gone from "recent" a minute later, never from since-start). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "metrics.h"

#define SEC 1000ull /* ms */

static sl_metrics_t *new_metrics(void)
{
	sl_metrics_t *m = malloc(sizeof *m);
	assert_non_null(m);
	sl_metrics_init(m);
	return m;
}

static sl_metrics_sum_t *sum_at(const sl_metrics_t *const *ms, int n, uint64_t now_ms)
{
	sl_metrics_sum_t *sum = malloc(sizeof *sum);
	assert_non_null(sum);
	sl_metrics_sum_init(sum);
	for (int i = 0; i < n; i++)
		sl_metrics_add(ms[i], sum, now_ms);
	return sum;
}

static void test_outcomes_and_window(void **state)
{
	(void)state;
	sl_metrics_t *m = new_metrics();
	uint64_t t0 = 1000 * SEC;
	for (int i = 0; i < 5; i++) {
		sl_metrics_begin(m);
		sl_metrics_end(m, SL_OUTCOME_SUCCESS, 200, t0);
	}
	sl_metrics_begin(m);
	sl_metrics_end(m, SL_OUTCOME_FAILED, 504, t0 + 30 * SEC);
	sl_metrics_begin(m);
	sl_metrics_rejected(m, SL_REJECT_QUEUE_FULL, t0 + 30 * SEC);

	const sl_metrics_t *one[] = {m};
	sl_metrics_sum_t *s = sum_at(one, 1, t0 + 30 * SEC);
	assert_int_equal(s->total, 7);
	assert_int_equal(s->success, 5);
	assert_int_equal(s->failed, 1);
	assert_int_equal(s->timeouts, 1);
	assert_int_equal(s->rejected, 1);
	assert_int_equal(s->rejected_by[SL_REJECT_QUEUE_FULL], 1);
	assert_int_equal(s->window_ok, 5);
	assert_int_equal(s->window_fail, 1);
	assert_int_equal(s->window_rejected, 1);
	free(s);

	/* 70 s later the five successes have left the window, not the totals */
	s = sum_at(one, 1, t0 + 70 * SEC);
	assert_int_equal(s->success, 5);
	assert_int_equal(s->window_ok, 0);
	assert_int_equal(s->window_fail, 1);
	free(s);
	free(m);
}

static void test_recent_latency_follows_a_spike(void **state)
{
	(void)state;
	sl_metrics_t *m = new_metrics();
	const sl_metrics_t *one[] = {m};
	uint64_t t0 = 5000 * SEC;

	/* an hour of fast answers, 2 ms */
	for (uint64_t t = 0; t < 3600; t++)
		for (int i = 0; i < 10; i++)
			sl_metrics_latency(m, 2000, t0 + t * SEC);
	uint64_t now = t0 + 3600 * SEC;
	/* then 30 s of slow ones, 800 ms */
	for (uint64_t t = 0; t < 30; t++)
		for (int i = 0; i < 10; i++)
			sl_metrics_latency(m, 800000, now + t * SEC);
	now += 30 * SEC;

	sl_metrics_sum_t *s = sum_at(one, 1, now);
	/* since start: 300 slow among 36,300 — the median does not move */
	assert_int_equal(s->latency_us.total, 36300);
	assert_true(sl_hist_percentile(&s->latency_us, 50) < 2100);
	/* recent: the 300 slow ones and the fast ones of the 20-30 s before */
	assert_true(s->recent_latency_us.total >= 300 && s->recent_latency_us.total <= 600);
	assert_true(sl_hist_percentile(&s->recent_latency_us, 50) > 790000);
	assert_true(s->recent_latency_us.max == 800000);
	free(s);

	/* a quiet minute later nothing is recent any more */
	s = sum_at(one, 1, now + 61 * SEC);
	assert_int_equal(s->recent_latency_us.total, 0);
	assert_int_equal(sl_hist_percentile(&s->recent_latency_us, 99), 0);
	assert_int_equal(s->latency_us.total, 36300);
	free(s);

	/* a slot reused after a quiet spell holds only the new period */
	sl_metrics_latency(m, 5000, now + 600 * SEC);
	s = sum_at(one, 1, now + 600 * SEC);
	assert_int_equal(s->recent_latency_us.total, 1);
	assert_int_equal(s->recent_latency_us.max, 5000);
	assert_int_equal(s->recent_latency_us.min, 5000);
	free(s);
	free(m);
}

static void test_recent_window_edges(void **state)
{
	(void)state;
	sl_metrics_t *m = new_metrics();
	const sl_metrics_t *one[] = {m};
	uint64_t t0 = 7000 * SEC; /* a slot boundary: 7000 s is a multiple of 10 */
	sl_metrics_queue_wait(m, 100, t0);
	/* still recent 59.999 s later (the window spans the last 50-60 s) */
	sl_metrics_sum_t *s = sum_at(one, 1, t0 + 59 * SEC + 999);
	assert_int_equal(s->recent_queue_wait_us.total, 1);
	free(s);
	s = sum_at(one, 1, t0 + 60 * SEC);
	assert_int_equal(s->recent_queue_wait_us.total, 0);
	assert_int_equal(s->queue_wait_us.total, 1);
	free(s);
	free(m);
}

static void test_workers_are_summed(void **state)
{
	(void)state;
	sl_metrics_t *a = new_metrics(), *b = new_metrics();
	uint64_t now = 100 * SEC;
	sl_metrics_latency(a, 1000, now);
	sl_metrics_latency(b, 3000, now);
	sl_metrics_latency(b, 5000, now - 20 * SEC);
	const sl_metrics_t *two[] = {a, b};
	sl_metrics_sum_t *s = sum_at(two, 2, now);
	assert_int_equal(s->recent_latency_us.total, 3);
	assert_int_equal(s->recent_latency_us.min, 1000);
	assert_int_equal(s->recent_latency_us.max, 5000);
	assert_int_equal(s->recent_latency_us.sum, 9000);
	assert_int_equal(s->latency_us.total, 3);
	free(s);
	free(a);
	free(b);
}

/* Every reason and kind has its name: a reason added to the enum without
 * one would print "(null)" in the metrics and the access log. */
static void test_every_reason_and_kind_is_named(void **state)
{
	for (int i = 0; i < SL_REJECT_COUNT; i++) {
		assert_non_null(sl_reject_name((sl_reject_t)i));
		for (int j = 0; j < i; j++)
			assert_string_not_equal(sl_reject_name((sl_reject_t)i), sl_reject_name((sl_reject_t)j));
	}
	for (int i = 0; i < SL_EK_COUNT; i++)
		assert_non_null(sl_error_kind_name((sl_error_kind_t)i));
	assert_string_equal(sl_reject_name(SL_REJECT_CLUSTER_UNAVAILABLE), "cluster_unavailable");
	assert_string_equal(sl_error_kind_name(SL_EK_QUEUE_FULL + SL_REJECT_CLUSTER_UNAVAILABLE),
	                    "cluster_unavailable");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_outcomes_and_window),
	    cmocka_unit_test(test_recent_latency_follows_a_spike),
	    cmocka_unit_test(test_recent_window_edges),
	    cmocka_unit_test(test_workers_are_summed),
	    cmocka_unit_test(test_every_reason_and_kind_is_named),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
