/* Unit tests for pool.c: idle connections of several workers under one
 * process-wide bound, kept lazily (twice the bound at most; the excess is
 * what sl_upstream_tend_pool trims). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "pool.h"

static void test_two_workers_share_one_bound(void **state)
{
	atomic_uint shared = 0;
	sl_pool_t a, b;
	sl_pool_init(&a, &shared, 3);
	sl_pool_init(&b, &shared, 3);
	sl_list_t links[8];
	for (int i = 0; i < 4; i++)
		assert_true(sl_pool_put(&a, &links[i]));
	assert_int_equal(sl_pool_excess(&a), 1);
	assert_int_equal(sl_pool_excess(&b), 1); /* the same count for both */
	assert_true(sl_pool_put(&b, &links[4]));
	assert_true(sl_pool_put(&b, &links[5]));
	assert_false(sl_pool_put(&b, &links[6])); /* twice the bound: refused */
	assert_int_equal(atomic_load(&shared), 6);
	assert_int_equal(a.nidle, 4);
	assert_int_equal(b.nidle, 2);
	/* the most recent is reused first, the oldest trimmed first */
	assert_ptr_equal(sl_pool_take(&a), &links[3]);
	assert_ptr_equal(sl_pool_oldest(&a), &links[0]);
	sl_pool_remove(&a, &links[0]);
	assert_int_equal(sl_pool_excess(&b), 1);
	assert_ptr_equal(sl_pool_take(&b), &links[5]);
	assert_int_equal(sl_pool_excess(&b), 0);
	assert_int_equal(atomic_load(&shared), 3);
	assert_int_equal(a.reused + b.reused, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_two_workers_share_one_bound),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
