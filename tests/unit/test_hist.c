/* test_hist.c — the log-linear histogram: exact counts, percentile accuracy
 * on known distributions, merge, count_le at bucket bounds, extremes,
 * clamping and the empty histogram. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>
#include <math.h>

#include "hist.h"

static sl_hist_t *new_hist(void)
{
	sl_hist_t *h = malloc(sizeof(*h));
	assert_non_null(h);
	sl_hist_init(h);
	return h;
}

/* |got - want| <= 1 % of want */
static void assert_within_1pct(uint64_t got, double want)
{
	double err = fabs((double)got - want) / want;
	if (err > 0.01)
		fail_msg("got %llu, want %.1f (error %.3f %%)", (unsigned long long)got, want, err * 100);
}

static void test_empty(void **state)
{
	sl_hist_t *h = new_hist();
	assert_int_equal(h->total, 0);
	assert_int_equal(sl_hist_percentile(h, 50), 0);
	assert_int_equal(sl_hist_percentile(h, 100), 0);
	assert_true(sl_hist_mean(h) == 0.0);
	assert_int_equal(sl_hist_count_le(h, 0), 0);
	assert_int_equal(sl_hist_count_le(h, UINT64_MAX), 0);
	assert_true(h->min == UINT64_MAX);
	assert_int_equal(h->max, 0);
	free(h);
}

static void test_exact_small_values(void **state)
{
	sl_hist_t *h = new_hist();
	/* below 256 every value has its own bucket: percentiles are exact */
	for (uint64_t v = 1; v <= 200; v++)
		sl_hist_record(h, v);
	assert_int_equal(h->total, 200);
	assert_int_equal(h->sum, 200 * 201 / 2);
	assert_int_equal(h->min, 1);
	assert_int_equal(h->max, 200);
	assert_int_equal(sl_hist_percentile(h, 50), 100);
	assert_int_equal(sl_hist_percentile(h, 99), 198);
	assert_int_equal(sl_hist_percentile(h, 99.5), 199);
	assert_int_equal(sl_hist_percentile(h, 100), 200);
	assert_int_equal(sl_hist_percentile(h, 0.1), 1);
	assert_true(fabs(sl_hist_mean(h) - 100.5) < 1e-9);
	for (uint64_t v = 1; v <= 200; v++)
		assert_int_equal(sl_hist_count_le(h, v), v);
	free(h);
}

static void test_counts_exact(void **state)
{
	sl_hist_t *h = new_hist();
	uint64_t n = 0;
	for (uint64_t v = 0; v < 2000000; v += 7, n++)
		sl_hist_record(h, v);
	assert_int_equal(h->total, n);
	uint64_t sum = 0;
	for (unsigned i = 0; i < SL_HIST_BUCKETS; i++)
		sum += h->counts[i];
	assert_int_equal(sum, n);
	assert_int_equal(sl_hist_count_le(h, UINT64_MAX), n);
	free(h);
}

static void test_uniform_percentiles(void **state)
{
	sl_hist_t *h = new_hist();
	/* 1..1,000,000 µs once each: percentile p is p * 10,000 */
	for (uint64_t v = 1; v <= 1000000; v++)
		sl_hist_record(h, v);
	static const double ps[] = {1, 10, 25, 50, 75, 90, 95, 99, 99.9, 99.99};
	for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++)
		assert_within_1pct(sl_hist_percentile(h, ps[i]), ps[i] * 10000);
	assert_true(fabs(sl_hist_mean(h) - 500000.5) < 1e-6);
	free(h);
}

static void test_exponential_percentiles(void **state)
{
	sl_hist_t *h = new_hist();
	/* a deterministic exponential distribution, mean 5000: quantile q is
	 * -5000 ln(1 - q); the sample is spread evenly over q, so its percentiles
	 * are known exactly */
	const int n = 200000;
	for (int i = 0; i < n; i++) {
		double q = (i + 0.5) / n;
		sl_hist_record(h, (uint64_t)llround(-5000.0 * log(1.0 - q)));
	}
	static const double ps[] = {10, 50, 90, 95, 99, 99.9};
	for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++)
		assert_within_1pct(sl_hist_percentile(h, ps[i]), -5000.0 * log(1.0 - ps[i] / 100));
	free(h);
}

static void test_relative_error_everywhere(void **state)
{
	/* a single value, whatever its size, is reported within 1 % (here
	 * exactly, since percentiles clamp to [min, max]); two values pin the
	 * bucket's upper bound instead */
	for (uint64_t v = 1; v < SL_HIST_MAX_VALUE; v = v * 3 / 2 + 1) {
		sl_hist_t *h = new_hist();
		sl_hist_record(h, v);
		sl_hist_record(h, SL_HIST_MAX_VALUE);
		uint64_t got = sl_hist_percentile(h, 50);
		assert_true(got >= v);
		assert_within_1pct(got, (double)v);
		free(h);
	}
}

static void test_min_max_mean(void **state)
{
	sl_hist_t *h = new_hist();
	sl_hist_record(h, 123456);
	sl_hist_record(h, 7);
	sl_hist_record(h, 99999999);
	assert_int_equal(h->min, 7);
	assert_int_equal(h->max, 99999999);
	assert_true(fabs(sl_hist_mean(h) - (123456.0 + 7 + 99999999) / 3) < 1e-6);
	/* percentiles never leave [min, max] */
	assert_int_equal(sl_hist_percentile(h, 100), 99999999);
	assert_int_equal(sl_hist_percentile(h, 1), 7);
	assert_within_1pct(sl_hist_percentile(h, 50), 123456);
	free(h);
}

static void test_clamping(void **state)
{
	sl_hist_t *h = new_hist();
	sl_hist_record(h, UINT64_MAX);
	sl_hist_record(h, SL_HIST_MAX_VALUE + 1);
	sl_hist_record(h, 0);
	assert_int_equal(h->total, 3);
	assert_int_equal(h->max, SL_HIST_MAX_VALUE);
	assert_int_equal(h->min, 0);
	assert_int_equal(h->counts[SL_HIST_BUCKETS - 1], 2);
	assert_int_equal(h->counts[0], 1);
	assert_int_equal(sl_hist_percentile(h, 99), SL_HIST_MAX_VALUE);
	/* the top bucket is [255 * 2^32, 2^40 - 1]; just below it, only the 0 */
	assert_int_equal(sl_hist_count_le(h, (UINT64_C(255) << 32) - 1), 1);
	assert_int_equal(sl_hist_count_le(h, SL_HIST_MAX_VALUE - 1), 3);
	free(h);
}

static void test_count_le_bounds(void **state)
{
	sl_hist_t *h = new_hist();
	/* 1000..1003 share a bucket (width 4 between 512 and 1024); 999 is the
	 * upper bound of the one below, 1004 the lower bound of the one above */
	for (uint64_t v = 995; v <= 1010; v++)
		sl_hist_record(h, v);
	assert_int_equal(sl_hist_count_le(h, 994), 0);
	assert_int_equal(sl_hist_count_le(h, 999), 5);
	assert_int_equal(sl_hist_count_le(h, 1003), 9);
	assert_int_equal(sl_hist_count_le(h, 1007), 13);
	assert_int_equal(sl_hist_count_le(h, 1010), 16);
	/* inside a bucket the count is that bucket's upper bound's: within resolution */
	assert_int_equal(sl_hist_count_le(h, 1001), 9);
	free(h);

	/* Prometheus-style bounds: values spread widely, counted at bucket edges */
	h = new_hist();
	for (uint64_t v = 1; v <= 100000; v++)
		sl_hist_record(h, v);
	static const uint64_t bounds[] = {255, 511, 1023, 4095, 65535};
	for (size_t i = 0; i < sizeof(bounds) / sizeof(bounds[0]); i++)
		assert_int_equal(sl_hist_count_le(h, bounds[i]), bounds[i]);
	/* 5000 µs is not a bucket bound: within 1 % */
	assert_within_1pct(sl_hist_count_le(h, 5000), 5000);
	free(h);
}

static void test_merge(void **state)
{
	sl_hist_t *a = new_hist(), *b = new_hist(), *all = new_hist(), *sum = new_hist();
	for (uint64_t v = 1; v <= 50000; v++) {
		sl_hist_record(v % 2 ? a : b, v * 3);
		sl_hist_record(all, v * 3);
	}
	sl_hist_merge(sum, a);
	sl_hist_merge(sum, b);
	assert_int_equal(sum->total, all->total);
	assert_int_equal(sum->sum, all->sum);
	assert_int_equal(sum->min, 3);
	assert_int_equal(sum->max, 150000);
	assert_memory_equal(sum->counts, all->counts, sizeof(all->counts));
	assert_int_equal(sl_hist_percentile(sum, 99), sl_hist_percentile(all, 99));

	/* merging an empty histogram changes nothing, into an empty one copies */
	sl_hist_t *empty = new_hist();
	sl_hist_merge(sum, empty);
	assert_int_equal(sum->min, 3);
	assert_int_equal(sum->total, 50000);
	sl_hist_merge(empty, a);
	assert_int_equal(empty->total, a->total);
	assert_int_equal(empty->min, a->min);
	assert_int_equal(empty->max, a->max);
	free(a), free(b), free(all), free(sum), free(empty);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_empty),
	    cmocka_unit_test(test_exact_small_values),
	    cmocka_unit_test(test_counts_exact),
	    cmocka_unit_test(test_uniform_percentiles),
	    cmocka_unit_test(test_exponential_percentiles),
	    cmocka_unit_test(test_relative_error_everywhere),
	    cmocka_unit_test(test_min_max_mean),
	    cmocka_unit_test(test_clamping),
	    cmocka_unit_test(test_count_le_bounds),
	    cmocka_unit_test(test_merge),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
