/* Unit tests for retry.c: the safety rules of SPEC §5 and the backoff. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "retry.h"

static sl_config_t cfg(void)
{
	sl_config_t c;
	memset(&c, 0, sizeof c);
	c.max_retries = 2;
	c.retry_backoff_factor = 0.5;
	c.retry_backoff_max = 2;
	return c;
}

static sl_attempt_t get_failed(sl_up_error_t kind)
{
	sl_attempt_t a = {.kind = kind,
	                  .request_written = true,
	                  .idempotent = true,
	                  .body_replayable = true,
	                  .time_left_ms = INT64_MAX};
	return a;
}

static void test_idempotent_methods(void **state)
{
	assert_true(sl_retry_is_idempotent(HTTP_GET));
	assert_true(sl_retry_is_idempotent(HTTP_HEAD));
	assert_true(sl_retry_is_idempotent(HTTP_OPTIONS));
	assert_true(sl_retry_is_idempotent(HTTP_PUT));
	assert_true(sl_retry_is_idempotent(HTTP_DELETE));
	assert_true(sl_retry_is_idempotent(HTTP_TRACE));
	assert_false(sl_retry_is_idempotent(HTTP_POST));
	assert_false(sl_retry_is_idempotent(HTTP_PATCH));
	assert_false(sl_retry_is_idempotent(HTTP_CONNECT));
}

static void test_get_retried_after_any_failure(void **state)
{
	sl_config_t c = cfg();
	c.retry_on_timeout = true; /* read timeouts too (see below) */
	sl_up_error_t kinds[] = {SL_UP_CONNECT,      SL_UP_CONNECT_TIMEOUT, SL_UP_WRITE,    SL_UP_CLOSED,
	                         SL_UP_READ_TIMEOUT, SL_UP_BAD_RESPONSE,    SL_UP_TRUNCATED};
	for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
		sl_attempt_t a = get_failed(kinds[i]);
		assert_int_equal(sl_retry_decide(&c, &a, 0.5).action, SL_RETRY_BACKOFF);
	}
	sl_attempt_t a = get_failed(SL_UP_ERROR_STATUS);
	a.status = 503;
	assert_int_equal(sl_retry_decide(&c, &a, 0.5).action, SL_RETRY_BACKOFF);
}

static void test_post_only_when_not_delivered(void **state)
{
	sl_config_t c = cfg();
	sl_attempt_t a = get_failed(SL_UP_CLOSED);
	a.idempotent = false;
	sl_retry_verdict_t v = sl_retry_decide(&c, &a, 0.5);
	assert_int_equal(v.action, SL_RETRY_ANSWER);
	assert_int_equal(v.status, 502);
	a.kind = SL_UP_READ_TIMEOUT;
	v = sl_retry_decide(&c, &a, 0.5);
	assert_int_equal(v.action, SL_RETRY_ANSWER);
	assert_int_equal(v.status, 504);
	a.kind = SL_UP_ERROR_STATUS;
	a.status = 503;
	v = sl_retry_decide(&c, &a, 0.5);
	assert_int_equal(v.action, SL_RETRY_ANSWER);
	assert_int_equal(v.status, 503); /* the upstream's own answer is relayed */
	/* certainly not delivered: connect failures, or nothing written */
	a.kind = SL_UP_CONNECT;
	assert_int_equal(sl_retry_decide(&c, &a, 0.5).action, SL_RETRY_BACKOFF);
	a.kind = SL_UP_CONNECT_TIMEOUT;
	assert_int_equal(sl_retry_decide(&c, &a, 0.5).action, SL_RETRY_BACKOFF);
	a.kind = SL_UP_CLOSED;
	a.request_written = false;
	assert_int_equal(sl_retry_decide(&c, &a, 0.5).action, SL_RETRY_BACKOFF);
}

static void test_never_after_response_bytes(void **state)
{
	sl_config_t c = cfg();
	sl_attempt_t a = get_failed(SL_UP_TRUNCATED);
	a.response_relayed = true;
	assert_int_equal(sl_retry_decide(&c, &a, 0.5).action, SL_RETRY_ANSWER);
}

static void test_unreplayable_body_never_retried(void **state)
{
	sl_config_t c = cfg();
	sl_attempt_t a = get_failed(SL_UP_CONNECT); /* even a connect failure */
	a.body_replayable = false;
	assert_int_equal(sl_retry_decide(&c, &a, 0.5).action, SL_RETRY_ANSWER);
}

static void test_stale_connection_retry_is_free_once(void **state)
{
	sl_config_t c = cfg();
	c.max_retries = 0;
	sl_attempt_t a = get_failed(SL_UP_CLOSED);
	a.reused = true;
	a.idempotent = false;
	a.request_written = false; /* the pooled connection died before the request */
	assert_int_equal(sl_retry_decide(&c, &a, 0.5).action, SL_RETRY_NOW);
	a.stale_retry_used = true;
	assert_int_equal(sl_retry_decide(&c, &a, 0.5).action, SL_RETRY_ANSWER);
	/* a POST that may have been written on the stale connection: never */
	a.stale_retry_used = false;
	a.request_written = true;
	assert_int_equal(sl_retry_decide(&c, &a, 0.5).action, SL_RETRY_ANSWER);
}

/* A GET whose whole request went out before the close: the upstream may
 * have worked on it, so it is an ordinary retry (none with max_retries 0),
 * never a free resend (issue 11: 2 copies with --max-retries 0). */
static void test_close_after_the_request_went_out_is_not_stale(void **state)
{
	sl_config_t c = cfg();
	c.max_retries = 0;
	sl_attempt_t a = get_failed(SL_UP_CLOSED);
	a.reused = true;
	a.idempotent = true;
	a.request_written = a.request_sent = true;
	assert_int_equal(sl_retry_decide(&c, &a, 0.5).action, SL_RETRY_ANSWER);
	c.max_retries = 2;
	assert_int_equal(sl_retry_decide(&c, &a, 0.5).action, SL_RETRY_BACKOFF);
	a.request_sent = false; /* EOF while bytes were still queued: stale */
	assert_int_equal(sl_retry_decide(&c, &a, 0.5).action, SL_RETRY_NOW);
}

/* A read timeout is retried only with --retry-on-timeout; connect failures
 * and timeouts still are (issue 12). */
static void test_read_timeout_retried_only_when_asked(void **state)
{
	sl_config_t c = cfg();
	sl_attempt_t a = get_failed(SL_UP_READ_TIMEOUT);
	sl_retry_verdict_t v = sl_retry_decide(&c, &a, 0.5);
	assert_int_equal(v.action, SL_RETRY_ANSWER);
	assert_int_equal(v.status, 504);
	c.retry_on_timeout = true;
	assert_int_equal(sl_retry_decide(&c, &a, 0.5).action, SL_RETRY_BACKOFF);
	c.retry_on_timeout = false;
	a.kind = SL_UP_CONNECT_TIMEOUT;
	assert_int_equal(sl_retry_decide(&c, &a, 0.5).action, SL_RETRY_BACKOFF);
}

/* No attempt and no backoff past the request's deadline. */
static void test_no_retry_past_the_deadline(void **state)
{
	sl_config_t c = cfg();
	c.retry_backoff_factor = 1.0;
	sl_attempt_t a = get_failed(SL_UP_CONNECT);
	a.time_left_ms = 0;
	assert_int_equal(sl_retry_decide(&c, &a, 0.5).action, SL_RETRY_ANSWER);
	a.time_left_ms = 400; /* the backoff would be 500 ms */
	assert_int_equal(sl_retry_decide(&c, &a, 0.5).action, SL_RETRY_ANSWER);
	a.time_left_ms = 600;
	sl_retry_verdict_t v = sl_retry_decide(&c, &a, 0.5);
	assert_int_equal(v.action, SL_RETRY_BACKOFF);
	assert_int_equal(v.delay_ms, 500);
	a.kind = SL_UP_CLOSED; /* a stale connection, too, only in time */
	a.reused = true;
	a.request_written = false;
	a.time_left_ms = -1;
	assert_int_equal(sl_retry_decide(&c, &a, 0.5).action, SL_RETRY_ANSWER);
}

static void test_max_retries_and_statuses(void **state)
{
	sl_config_t c = cfg();
	sl_attempt_t a = get_failed(SL_UP_READ_TIMEOUT);
	a.retries_done = 2;
	sl_retry_verdict_t v = sl_retry_decide(&c, &a, 0.5);
	assert_int_equal(v.action, SL_RETRY_ANSWER);
	assert_int_equal(v.status, 504);
	a.kind = SL_UP_CONNECT_TIMEOUT;
	assert_int_equal(sl_retry_decide(&c, &a, 0.5).status, 504);
	a.kind = SL_UP_CONNECT;
	assert_int_equal(sl_retry_decide(&c, &a, 0.5).status, 502);
	a.kind = SL_UP_BAD_RESPONSE;
	assert_int_equal(sl_retry_decide(&c, &a, 0.5).status, 502);
	/* a 500 is the upstream's answer, not a failure: relayed, never retried */
	a = get_failed(SL_UP_ERROR_STATUS);
	a.status = 500;
	assert_false(sl_retry_is_upstream_failure(SL_UP_ERROR_STATUS, 500));
	assert_int_equal(sl_retry_decide(&c, &a, 0.5).action, SL_RETRY_ANSWER);
}

static void test_backoff_full_jitter_capped(void **state)
{
	sl_config_t c = cfg();
	/* the cap doubles: 0.5, 1, 2, then stays at retry_backoff_max */
	assert_int_equal(sl_retry_backoff_ms(&c, 0, 0.999999), 500);
	assert_int_equal(sl_retry_backoff_ms(&c, 1, 0.999999), 1000);
	assert_int_equal(sl_retry_backoff_ms(&c, 2, 0.999999), 2000);
	assert_int_equal(sl_retry_backoff_ms(&c, 3, 0.999999), 2000);
	assert_int_equal(sl_retry_backoff_ms(&c, 60, 0.999999), 2000);
	assert_int_equal(sl_retry_backoff_ms(&c, 1, 0.0), 0);
	assert_int_equal(sl_retry_backoff_ms(&c, 1, 0.25), 250);
	sl_attempt_t a = get_failed(SL_UP_CLOSED);
	a.retries_done = 1;
	sl_retry_verdict_t v = sl_retry_decide(&c, &a, 0.5);
	assert_int_equal(v.action, SL_RETRY_BACKOFF);
	assert_int_equal(v.delay_ms, 500);
}

/* RFC 9110 §10.2.3: delta-seconds or an HTTP-date, in its three forms. */
static void test_retry_after_parse(void **state)
{
	uint64_t ms = 7;
	int64_t now = 784111777; /* Sun, 06 Nov 1994 08:49:37 GMT */
	assert_true(sl_retry_after_parse("120", 3, now, &ms));
	assert_int_equal(ms, 120000);
	assert_true(sl_retry_after_parse(" 0 ", 3, now, &ms));
	assert_int_equal(ms, 0);
	assert_true(sl_retry_after_parse("99999999999999999999", 20, now, &ms));
	assert_int_equal(ms, 86400000); /* capped at a day, no overflow */
	const char *fix = "Sun, 06 Nov 1994 08:49:47 GMT";
	assert_true(sl_retry_after_parse(fix, strlen(fix), now, &ms));
	assert_int_equal(ms, 10000);
	const char *rfc850 = "Sunday, 06-Nov-94 08:49:39 GMT";
	assert_true(sl_retry_after_parse(rfc850, strlen(rfc850), now, &ms));
	assert_int_equal(ms, 2000);
	const char *asc = "Sun Nov  6 08:49:40 1994";
	assert_true(sl_retry_after_parse(asc, strlen(asc), now, &ms));
	assert_int_equal(ms, 3000);
	const char *past = "Sun, 06 Nov 1994 08:00:00 GMT";
	assert_true(sl_retry_after_parse(past, strlen(past), now, &ms));
	assert_int_equal(ms, 0);
	assert_false(sl_retry_after_parse("", 0, now, &ms));
	assert_false(sl_retry_after_parse("-1", 2, now, &ms));
	assert_false(sl_retry_after_parse("1.5", 3, now, &ms));
	assert_false(sl_retry_after_parse("soon", 4, now, &ms));
	assert_false(sl_retry_after_parse("Sun, 06 Nov 1994 08:49:47 PST", 29, now, &ms));
}

/* The upstream's Retry-After is the backoff's floor; a floor past the
 * deadline, or above read_timeout, is not waited for. */
static void test_retry_after_is_the_backoff_floor(void **state)
{
	sl_config_t c = cfg();
	c.read_timeout = 120;
	sl_attempt_t a = get_failed(SL_UP_ERROR_STATUS);
	a.status = 503;
	a.retry_after_ms = 3000;
	sl_retry_verdict_t v = sl_retry_decide(&c, &a, 0.5);
	assert_int_equal(v.action, SL_RETRY_BACKOFF);
	assert_int_equal(v.delay_ms, 3000); /* not the 250 ms the jitter drew */
	a.retry_after_ms = 100;             /* below the draw: the draw stands */
	assert_int_equal(sl_retry_decide(&c, &a, 0.5).delay_ms, 250);
	a.retry_after_ms = 3000;
	a.time_left_ms = 2500; /* the floor passes the deadline: answer now */
	v = sl_retry_decide(&c, &a, 0.5);
	assert_int_equal(v.action, SL_RETRY_ANSWER);
	assert_int_equal(v.status, 503);
	a.time_left_ms = INT64_MAX;
	a.retry_after_ms = 121000; /* more patience than read_timeout */
	assert_int_equal(sl_retry_decide(&c, &a, 0.5).action, SL_RETRY_ANSWER);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_idempotent_methods),
	    cmocka_unit_test(test_get_retried_after_any_failure),
	    cmocka_unit_test(test_post_only_when_not_delivered),
	    cmocka_unit_test(test_never_after_response_bytes),
	    cmocka_unit_test(test_unreplayable_body_never_retried),
	    cmocka_unit_test(test_stale_connection_retry_is_free_once),
	    cmocka_unit_test(test_read_timeout_retried_only_when_asked),
	    cmocka_unit_test(test_no_retry_past_the_deadline),
	    cmocka_unit_test(test_close_after_the_request_went_out_is_not_stale),
	    cmocka_unit_test(test_max_retries_and_statuses),
	    cmocka_unit_test(test_backoff_full_jitter_capped),
	    cmocka_unit_test(test_retry_after_parse),
	    cmocka_unit_test(test_retry_after_is_the_backoff_floor),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
