/* Unit tests for budget.c: the percent/min rule (Envoy's retry_budget) and
 * the token bucket (gRPC's retry throttling). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "budget.h"

static void test_allowance_is_the_larger_of_percent_and_min(void **state)
{
	assert_int_equal(sl_budget_allowance(0, 20, 3), 3);
	assert_int_equal(sl_budget_allowance(10, 20, 3), 3);   /* 2 < 3 */
	assert_int_equal(sl_budget_allowance(100, 20, 3), 20); /* 20 % of 100 */
	assert_int_equal(sl_budget_allowance(149, 20, 3), 29); /* rounded down */
	assert_int_equal(sl_budget_allowance(1000, 0, 0), 0);  /* no retries at all */
	assert_int_equal(sl_budget_allowance(1000, 100, 0), 1000);
	assert_int_equal(sl_budget_allowance(4000000000u, 100, 0), 4000000000u); /* no overflow */
}

static void test_retries_in_progress_stay_under_the_allowance(void **state)
{
	sl_budget_t b;
	sl_budget_init(&b);
	/* 50 requests: 20 % is 10 */
	for (int i = 0; i < 10; i++)
		assert_true(sl_budget_try_retry(&b, false, 50, 20, 3));
	assert_false(sl_budget_try_retry(&b, false, 50, 20, 3));
	assert_int_equal(sl_budget_retrying(&b), 10);
	/* a request already retrying asks again: the same retry in progress */
	assert_true(sl_budget_try_retry(&b, true, 50, 20, 3));
	/* more load, more room */
	assert_true(sl_budget_try_retry(&b, false, 100, 20, 3));
	sl_budget_retry_done(&b);
	sl_budget_retry_done(&b);
	assert_true(sl_budget_try_retry(&b, false, 50, 20, 3));
	/* the minimum holds whatever the load */
	sl_budget_t small;
	sl_budget_init(&small);
	for (int i = 0; i < 3; i++)
		assert_true(sl_budget_try_retry(&small, false, 1, 20, 3));
	assert_false(sl_budget_try_retry(&small, false, 1, 20, 3));
}

static void test_bucket_steps(void **state)
{
	assert_int_equal(sl_budget_bucket_step(10000, true), 9000);
	assert_int_equal(sl_budget_bucket_step(9000, false), 9100);
	assert_int_equal(sl_budget_bucket_step(10000, false), 10000); /* never above 10 */
	assert_int_equal(sl_budget_bucket_step(500, true), 0);        /* never below 0 */
	assert_true(sl_budget_bucket_allows(5001));
	assert_false(sl_budget_bucket_allows(5000)); /* half or less: throttled */
}

/* gRPC's example: 10 tokens, a storm of failures. Five failures leave five
 * tokens: no more retries, whatever the percent rule says; 0.1 per answer
 * brings retries back after enough successes. */
static void test_bucket_throttles_a_failure_storm_and_recovers(void **state)
{
	sl_budget_t b;
	sl_budget_init(&b);
	int allowed = 0;
	for (int i = 0; i < 100; i++) {
		sl_budget_record(&b, true);
		if (sl_budget_try_retry(&b, false, 1000, 100, 1000)) {
			allowed++;
			sl_budget_retry_done(&b);
		}
	}
	assert_int_equal(allowed, 4); /* 9, 8, 7, 6 tokens left: then 5 and below */
	assert_true(sl_budget_throttled(&b));
	/* from 0: 51 answers reach 5.1 tokens */
	for (int i = 0; i < 50; i++)
		sl_budget_record(&b, false);
	assert_true(sl_budget_throttled(&b));
	sl_budget_record(&b, false);
	assert_false(sl_budget_throttled(&b));
	assert_true(sl_budget_try_retry(&b, false, 10, 20, 3));
	/* a retrying request is stopped by the bucket too */
	sl_budget_record(&b, true);
	assert_false(sl_budget_try_retry(&b, true, 10, 20, 3));
}

/* Alternating success and failure: a 50 % failure rate drains the bucket
 * (each failure takes 1, each answer gives 0.1), a 5 % one does not. */
static void test_bucket_judges_the_failure_rate(void **state)
{
	sl_budget_t b;
	sl_budget_init(&b);
	for (int i = 0; i < 200; i++)
		sl_budget_record(&b, i % 2 == 0);
	assert_true(sl_budget_throttled(&b));
	sl_budget_init(&b);
	for (int i = 0; i < 2000; i++)
		sl_budget_record(&b, i % 20 == 0);
	assert_false(sl_budget_throttled(&b));
	assert_true(sl_budget_tokens(&b) > 9.0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_allowance_is_the_larger_of_percent_and_min),
	    cmocka_unit_test(test_retries_in_progress_stay_under_the_allowance),
	    cmocka_unit_test(test_bucket_steps),
	    cmocka_unit_test(test_bucket_throttles_a_failure_storm_and_recovers),
	    cmocka_unit_test(test_bucket_judges_the_failure_rate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
