/* Unit tests for breaker.c: the closed -> open -> half_open state machine. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "breaker.h"
#include "log.h"

static void test_opens_after_threshold_consecutive_failures(void **state)
{
	sl_breaker_t b;
	sl_breaker_init(&b, 3, 10.0);
	assert_int_equal(sl_breaker_allow(&b, 0), SL_BREAKER_ALLOW);
	assert_false(sl_breaker_record(&b, false, false, 1));
	assert_false(sl_breaker_record(&b, false, false, 2));
	assert_false(sl_breaker_record(&b, true, false, 3)); /* a success resets the run */
	assert_int_equal(sl_breaker_failures(&b), 0);
	assert_false(sl_breaker_record(&b, false, false, 4));
	assert_false(sl_breaker_record(&b, false, false, 5));
	assert_true(sl_breaker_record(&b, false, false, 6)); /* third in a row: opens */
	assert_int_equal(sl_breaker_state(&b, 6), SL_BREAKER_OPEN);
	assert_int_equal(sl_breaker_opened_total(&b), 1);
	assert_int_equal(sl_breaker_allow(&b, 7), SL_BREAKER_REJECT);
	assert_int_equal(sl_breaker_retry_after(&b, 6), 10);
	/* further failures while open do not reopen it */
	assert_false(sl_breaker_record(&b, false, false, 8));
	assert_int_equal(sl_breaker_opened_total(&b), 1);
	sl_breaker_dispose(&b);
}

static void test_half_open_lets_exactly_one_probe(void **state)
{
	sl_breaker_t b;
	sl_breaker_init(&b, 1, 1.0);
	assert_true(sl_breaker_record(&b, false, false, 1000));
	assert_int_equal(sl_breaker_allow(&b, 1999), SL_BREAKER_REJECT);
	assert_int_equal(sl_breaker_allow(&b, 2000), SL_BREAKER_PROBE);
	assert_int_equal(sl_breaker_state(&b, 2000), SL_BREAKER_HALF_OPEN);
	assert_int_equal(sl_breaker_allow(&b, 2001), SL_BREAKER_REJECT);
	assert_int_equal(sl_breaker_allow(&b, 2002), SL_BREAKER_REJECT);
	/* the probe fails: open again, for a full timeout from now */
	assert_true(sl_breaker_record(&b, false, true, 2100));
	assert_int_equal(sl_breaker_state(&b, 2100), SL_BREAKER_OPEN);
	assert_int_equal(sl_breaker_opened_total(&b), 2);
	assert_int_equal(sl_breaker_allow(&b, 3000), SL_BREAKER_REJECT);
	assert_int_equal(sl_breaker_allow(&b, 3100), SL_BREAKER_PROBE);
	/* the probe succeeds: closed, everything flows */
	assert_false(sl_breaker_record(&b, true, true, 3200));
	assert_int_equal(sl_breaker_state(&b, 3200), SL_BREAKER_CLOSED);
	assert_int_equal(sl_breaker_allow(&b, 3201), SL_BREAKER_ALLOW);
	assert_int_equal(sl_breaker_allow(&b, 3202), SL_BREAKER_ALLOW);
	sl_breaker_dispose(&b);
}

static void test_abandoned_probe_frees_the_probe_place(void **state)
{
	sl_breaker_t b;
	sl_breaker_init(&b, 1, 1.0);
	sl_breaker_record(&b, false, false, 0);
	assert_int_equal(sl_breaker_allow(&b, 1000), SL_BREAKER_PROBE);
	assert_int_equal(sl_breaker_allow(&b, 1001), SL_BREAKER_REJECT);
	sl_breaker_abandon_probe(&b); /* its client left before any verdict */
	assert_int_equal(sl_breaker_allow(&b, 1002), SL_BREAKER_PROBE);
	sl_breaker_dispose(&b);
}

/* Each worker passed its own loop time: a worker a few ms behind the one
 * that opened the breaker saw 2^64 ms elapsed and probed at once (issue 11).
 * Times now come from one clock and are compared as signed differences, so
 * a time read "before" the opening is simply not late enough. */
static void test_open_interval_survives_an_earlier_time(void **state)
{
	sl_breaker_t b;
	sl_breaker_init(&b, 1, 0.25);
	assert_true(sl_breaker_record(&b, false, false, 10000));
	assert_int_equal(sl_breaker_allow(&b, 9997), SL_BREAKER_REJECT);
	assert_int_equal(sl_breaker_allow(&b, 10249), SL_BREAKER_REJECT);
	assert_int_equal(sl_breaker_retry_after(&b, 9997), 1);
	assert_int_equal(sl_breaker_allow(&b, 10250), SL_BREAKER_PROBE);
	sl_breaker_dispose(&b);
}

/* Without traffic an open breaker still turns half_open for readers once
 * its timeout has passed: the next request will be the probe. */
static void test_reads_half_open_after_the_timeout_without_traffic(void **state)
{
	sl_breaker_t b;
	sl_breaker_init(&b, 1, 1.0);
	sl_breaker_record(&b, false, false, 5000);
	assert_int_equal(sl_breaker_state(&b, 5999), SL_BREAKER_OPEN);
	assert_int_equal(sl_breaker_state(&b, 6000), SL_BREAKER_HALF_OPEN);
	assert_int_equal(sl_breaker_state(&b, 4000), SL_BREAKER_OPEN);
	sl_breaker_dispose(&b);
}

static void test_state_names(void **state)
{
	assert_string_equal(sl_breaker_state_name(SL_BREAKER_CLOSED), "closed");
	assert_string_equal(sl_breaker_state_name(SL_BREAKER_OPEN), "open");
	assert_string_equal(sl_breaker_state_name(SL_BREAKER_HALF_OPEN), "half_open");
}

int main(void)
{
	sl_log_level = SL_LOG_ERROR; /* transitions log at info/warn */
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_opens_after_threshold_consecutive_failures),
	    cmocka_unit_test(test_half_open_lets_exactly_one_probe),
	    cmocka_unit_test(test_abandoned_probe_frees_the_probe_place),
	    cmocka_unit_test(test_open_interval_survives_an_earlier_time),
	    cmocka_unit_test(test_reads_half_open_after_the_timeout_without_traffic),
	    cmocka_unit_test(test_state_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
