/* test_load_opts.c — sluice-load's command line (tools/load/opts.c): the
 * short forms and their attached values, the URL as an argument and given
 * twice, durations with units (sums and fractions included, which would take
 * too long to run for real), and how --max-concurrent settles against
 * --concurrent and --rate. Every outcome is disposed so LSan sees no leak. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "opts.h"

#define MAX_ARGS 32

/* Parses "sluice-load" followed by the NULL-terminated list into *o; the
 * caller disposes. Returns the outcome; err holds the complaint. */
static int parse(sl_load_opts_t *o, char *err, const char *first, ...)
{
	char *argv[MAX_ARGS + 1] = {"sluice-load"};
	int argc = 1;
	va_list ap;
	va_start(ap, first);
	for (const char *s = first; s; s = va_arg(ap, const char *)) {
		assert_true(argc < MAX_ARGS);
		argv[argc++] = (char *)s;
	}
	va_end(ap);
	argv[argc] = NULL;
	err[0] = '\0';
	return sl_load_opts_parse(o, argc, argv, err, 512);
}

/* The duration `text` means `seconds` to --duration, -z and -d alike. */
static void expect_duration(const char *text, double seconds)
{
	const char *flags[] = {"--duration", "-z", "-d"};
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
		sl_load_opts_t o;
		char err[512];
		int rc = parse(&o, err, flags[i], text, "http://h/", NULL);
		if (rc != SL_LOAD_OPTS_RUN)
			fail_msg("%s %s: %s", flags[i], text, err);
		assert_true(o.duration > seconds * (1 - 1e-12) && o.duration < seconds * (1 + 1e-12));
		assert_int_equal(o.total_requests, 0);
		sl_load_opts_dispose(&o);
	}
}

/* The command line is refused with a sentence that contains `want`. */
static void expect_refused(const char *want, const char *first, ...)
{
	char *argv[MAX_ARGS + 1] = {"sluice-load"};
	int argc = 1;
	va_list ap;
	va_start(ap, first);
	for (const char *s = first; s; s = va_arg(ap, const char *))
		argv[argc++] = (char *)s;
	va_end(ap);
	sl_load_opts_t o;
	char err[512] = "";
	assert_int_equal(sl_load_opts_parse(&o, argc, argv, err, sizeof(err)), SL_LOAD_OPTS_ERROR);
	sl_load_opts_dispose(&o);
	if (!strstr(err, want))
		fail_msg("'%s' lacks '%s'", err, want);
	assert_true(strlen(err) > 0 && err[strlen(err) - 1] == '.' && !strchr(err, '\n'));
}

static void test_durations(void **state)
{
	expect_duration("2", 2); /* plain numbers are seconds, as ever */
	expect_duration("0.25", 0.25);
	expect_duration("2s", 2);
	expect_duration("1.5s", 1.5);
	expect_duration("500ms", 0.5);
	expect_duration("1m", 60);
	expect_duration("1h", 3600);
	expect_duration("1m30s", 90);
	expect_duration("1h0m0.5s", 3600.5);
	expect_duration(".5m", 30);
}

static void test_bad_durations(void **state)
{
	expect_refused("-z must be a duration such as 2s", "-z", "5x", "http://h/", NULL);
	expect_refused("'2 s'", "--duration", "2 s", "http://h/", NULL);
	expect_refused("'1.2.3s'", "-z", "1.2.3s", "http://h/", NULL);
	expect_refused("'-1s'", "-d", "-1s", "http://h/", NULL);
	expect_refused("'1S'", "-d", "1S", "http://h/", NULL);
	expect_refused("'s'", "-d", "s", "http://h/", NULL);
	expect_refused("'1e3s'", "-d", "1e3s", "http://h/", NULL);
	expect_refused("-z must be above 0", "-z", "0ms", "http://h/", NULL);
	expect_refused("--duration must be above 0", "--duration", "0", "http://h/", NULL);
	expect_refused("-z must be above 0 and at most", "-z", "3000h", "http://h/", NULL);
	expect_refused("--timeout must be a duration", "--timeout", "soon", "http://h/", NULL);
}

static void test_timeout_takes_units(void **state)
{
	sl_load_opts_t o;
	char err[512];
	assert_int_equal(parse(&o, err, "--timeout", "250ms", "http://h/", NULL), SL_LOAD_OPTS_RUN);
	assert_true(o.timeout > 0.2499 && o.timeout < 0.2501);
	sl_load_opts_dispose(&o);
	assert_int_equal(parse(&o, err, "--timeout=2m", "http://h/", NULL), SL_LOAD_OPTS_RUN);
	assert_true(o.timeout == 120);
	sl_load_opts_dispose(&o);
}

static void test_short_forms(void **state)
{
	sl_load_opts_t o;
	char err[512];
	assert_int_equal(parse(&o, err, "-c", "7", "-n", "70", "-m", "PUT", "-H", "A: 1", "-H", "B: 2", "-j", "-q",
	                       "50", "http://h/x", NULL),
	                 SL_LOAD_OPTS_RUN);
	assert_int_equal(o.concurrent, 7);
	assert_int_equal(o.total_requests, 70);
	assert_string_equal(o.method, "PUT");
	assert_int_equal(o.nheaders, 2);
	assert_string_equal(o.headers[0], "A: 1");
	assert_string_equal(o.headers[1], "B: 2");
	assert_true(o.json);
	assert_true(o.rate == 50);
	assert_string_equal(o.url, "http://h/x");
	sl_load_opts_dispose(&o);

	/* attached, with and without '=', and the URL first */
	assert_int_equal(parse(&o, err, "http://h/", "-c12", "-n=5", "-r2.5", "-mHEAD", "-HX: y", NULL),
	                 SL_LOAD_OPTS_RUN);
	assert_int_equal(o.concurrent, 12);
	assert_int_equal(o.total_requests, 5);
	assert_true(o.rate == 2.5);
	assert_string_equal(o.method, "HEAD");
	assert_string_equal(o.headers[0], "X: y");
	sl_load_opts_dispose(&o);

	/* the long forms are as they were, repeated ones last-wins */
	assert_int_equal(parse(&o, err, "--url", "http://a/", "--url", "http://b/", "--concurrent=3", NULL),
	                 SL_LOAD_OPTS_RUN);
	assert_string_equal(o.url, "http://b/");
	assert_int_equal(o.concurrent, 3);
	sl_load_opts_dispose(&o);
}

static void test_bad_short_forms_and_urls(void **state)
{
	expect_refused("-c needs a value", "http://h/", "-c", NULL);
	expect_refused("-c must be an integer", "-c", "ten", "http://h/", NULL);
	expect_refused("--concurrent must be an integer", "--concurrent", "ten", "http://h/", NULL);
	expect_refused("unknown option '-t'", "-t", "5", "http://h/", NULL);
	expect_refused("unknown option '-'", "-", "http://h/", NULL);
	expect_refused("-j takes no value", "-j1", "http://h/", NULL);
	expect_refused("-H must look like 'Name: value'", "-H", "nocolon", "http://h/", NULL);
	expect_refused("the URL is given twice ('http://a/' and 'http://b/')", "http://a/", "http://b/", NULL);
	expect_refused("the URL is given twice ('http://a/' and 'http://b/')", "--url", "http://a/", "http://b/", NULL);
	expect_refused("the URL is given twice ('http://b/' and 'http://a/')", "http://a/", "--url", "http://b/", NULL);
	expect_refused("a URL is required", "-c", "2", NULL);
}

static void test_max_concurrent(void **state)
{
	sl_load_opts_t o;
	char err[512];
	/* a closed loop has no cap */
	assert_int_equal(parse(&o, err, "http://h/", NULL), SL_LOAD_OPTS_RUN);
	assert_int_equal(o.max_concurrent, 0);
	sl_load_opts_dispose(&o);
	/* the open loop's default, raised to -c if that is higher */
	assert_int_equal(parse(&o, err, "-q", "10", "http://h/", NULL), SL_LOAD_OPTS_RUN);
	assert_int_equal(o.concurrent, 10);
	assert_int_equal(o.max_concurrent, 1000);
	sl_load_opts_dispose(&o);
	assert_int_equal(parse(&o, err, "-q", "10", "-c", "1500", "http://h/", NULL), SL_LOAD_OPTS_RUN);
	assert_int_equal(o.max_concurrent, 1500);
	sl_load_opts_dispose(&o);
	/* a cap below the default -c lowers it; below an explicit -c is refused */
	assert_int_equal(parse(&o, err, "-q", "10", "--max-concurrent", "4", "http://h/", NULL), SL_LOAD_OPTS_RUN);
	assert_int_equal(o.concurrent, 4);
	assert_int_equal(o.max_concurrent, 4);
	sl_load_opts_dispose(&o);
	expect_refused("--max-concurrent 4 is below --concurrent 5", "-q", "10", "-c", "5", "--max-concurrent", "4",
	               "http://h/", NULL);
	expect_refused("--max-concurrent applies only with --rate", "--max-concurrent", "4", "http://h/", NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_durations),
	    cmocka_unit_test(test_bad_durations),
	    cmocka_unit_test(test_timeout_takes_units),
	    cmocka_unit_test(test_short_forms),
	    cmocka_unit_test(test_bad_short_forms_and_urls),
	    cmocka_unit_test(test_max_concurrent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
