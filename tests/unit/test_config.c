/* test_config.c — sl_config: defaults, every kind of error and its message,
 * precedence (defaults < file < command line), aliases, --x=y, reload and the
 * JSON rendering. Temporary files live under /tmp and are removed by each
 * test; every configuration is disposed so LSan sees no leak. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

#define MAX_ARGS 32

/* argv for sl_config_load: "sluice" followed by the NULL-terminated list. */
typedef struct {
	int argc;
	char *argv[MAX_ARGS + 1];
} args_t;

static args_t make_args(const char *first, va_list ap)
{
	args_t a = {.argc = 1};
	a.argv[0] = "sluice";
	for (const char *s = first; s; s = va_arg(ap, const char *)) {
		assert_true(a.argc < MAX_ARGS);
		a.argv[a.argc++] = (char *)s;
	}
	a.argv[a.argc] = NULL;
	return a;
}

static sl_config_result_t load(sl_config_t *cfg, char *err, const char *first, ...)
{
	va_list ap;
	va_start(ap, first);
	args_t a = make_args(first, ap);
	va_end(ap);
	err[0] = '\0';
	return sl_config_load(cfg, a.argc, a.argv, err, 512);
}

/* Expects the command line to be refused with exactly `want`. */
static void expect_error(const char *want, const char *first, ...)
{
	va_list ap;
	va_start(ap, first);
	args_t a = make_args(first, ap);
	va_end(ap);
	sl_config_t cfg;
	char err[512] = "";
	assert_int_equal(sl_config_load(&cfg, a.argc, a.argv, err, sizeof err), SL_CONFIG_ERROR);
	assert_string_equal(err, want);
	assert_null(cfg.target_host); /* nothing left behind to free */
	sl_config_dispose(&cfg);      /* and disposing again is harmless */
}

/* Writes text to a new file under /tmp; returns its malloc'ed name. */
static char *write_temp(const char *text)
{
	char *path = strdup("/tmp/sluice-test-config-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	size_t len = strlen(text);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
	return path;
}

static void rewrite(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void drop_temp(char *path)
{
	unlink(path);
	free(path);
}

/* Expects the file to be refused with "config file PATH: " + want. */
static void expect_file_error(const char *text, const char *want)
{
	char *path = write_temp(text);
	sl_config_t cfg;
	char err[512], full[1024];
	assert_int_equal(load(&cfg, err, "--config", path, "--target-host", "up", NULL), SL_CONFIG_ERROR);
	snprintf(full, sizeof full, "config file %s: %s", path, want);
	assert_string_equal(err, full);
	sl_config_dispose(&cfg);
	drop_temp(path);
}

/* Runs sl_config_load with stdout sent to a file; returns what it printed. */
static char *capture_stdout(sl_config_result_t *result, const char *first, ...)
{
	va_list ap;
	va_start(ap, first);
	args_t a = make_args(first, ap);
	va_end(ap);
	char *path = write_temp("");
	fflush(stdout);
	int saved = dup(STDOUT_FILENO);
	assert_non_null(freopen(path, "w", stdout));
	sl_config_t cfg;
	char err[512];
	*result = sl_config_load(&cfg, a.argc, a.argv, err, sizeof err);
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	clearerr(stdout);
	sl_config_dispose(&cfg);

	FILE *f = fopen(path, "r");
	assert_non_null(f);
	static char out[16384];
	size_t n = fread(out, 1, sizeof out - 1, f);
	out[n] = '\0';
	fclose(f);
	drop_temp(path);
	return out;
}

/* ---- defaults ---- */

static void test_defaults(void **state)
{
	sl_config_t cfg;
	char err[512];
	assert_int_equal(load(&cfg, err, "--target-host", "up.example", NULL), SL_CONFIG_RUN);
	assert_null(cfg.config_file);
	assert_string_equal(cfg.listen_host, "0.0.0.0");
	assert_int_equal(cfg.listen_port, 8080);
	assert_string_equal(cfg.target_host, "up.example");
	assert_int_equal(cfg.target_port, 8000);
	assert_true(cfg.connect_timeout == 10);
	assert_true(cfg.read_timeout == 120);
	assert_true(cfg.write_timeout == 60);
	assert_int_equal(cfg.max_concurrent_requests, 50);
	assert_int_equal(cfg.max_queue_size, 100);
	assert_true(cfg.queue_timeout == 30);
	assert_int_equal(cfg.pool_maxsize, 50);
	assert_true(cfg.pool_idle_timeout == 60);
	assert_int_equal(cfg.pool_connections, 0);
	assert_int_equal(cfg.max_retries, 2);
	assert_true(cfg.retry_backoff_factor == 0.5);
	assert_true(cfg.retry_backoff_max == 2);
	assert_int_equal(cfg.retry_buffer_size, 65536);
	assert_int_equal(cfg.circuit_breaker_threshold, 5);
	assert_true(cfg.circuit_breaker_timeout == 60);
	assert_true(cfg.client_header_timeout == 10);
	assert_true(cfg.client_idle_timeout == 60);
	assert_int_equal(cfg.max_header_size, 32768);
	assert_int_equal(cfg.max_body_size, 0);
	assert_int_equal(cfg.max_connections, 10000);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	assert_int_equal(cfg.workers, cpus < 1 ? 1 : cpus > 256 ? 256 : cpus);
	assert_int_equal(cfg.admin_port, 0);
	assert_true(cfg.shutdown_timeout == 30);
	assert_null(cfg.access_log);
	assert_int_equal(cfg.log_level, SL_LOG_INFO);
	assert_false(cfg.check_config);
	sl_config_dispose(&cfg);
	assert_null(cfg.target_host);
	sl_config_dispose(&cfg);
}

/* ---- command line ---- */

static void test_every_option_on_the_command_line(void **state)
{
	sl_config_t cfg;
	char err[512];
	assert_int_equal(load(&cfg, err, "--listen-host", "127.0.0.1", "--listen-port=9090", "--target-host=u",
	                      "--target-port", "3128", "--connect-timeout", "1.5", "--read-timeout=300",
	                      "--write-timeout", "0.25", "--max-concurrent-requests", "7", "--max-queue-size", "0",
	                      "--queue-timeout", "2", "--pool-maxsize", "9", "--pool-idle-timeout", "5",
	                      "--pool-connections", "9", "--max-retries", "0", "--retry-backoff-factor", "0",
	                      "--retry-backoff-max", "1", "--retry-buffer-size", "0", NULL),
	                 SL_CONFIG_RUN);
	assert_string_equal(cfg.listen_host, "127.0.0.1");
	assert_int_equal(cfg.listen_port, 9090);
	assert_string_equal(cfg.target_host, "u");
	assert_int_equal(cfg.target_port, 3128);
	assert_true(cfg.connect_timeout == 1.5);
	assert_true(cfg.read_timeout == 300);
	assert_true(cfg.write_timeout == 0.25);
	assert_int_equal(cfg.max_concurrent_requests, 7);
	assert_int_equal(cfg.max_queue_size, 0);
	assert_true(cfg.queue_timeout == 2);
	assert_int_equal(cfg.pool_maxsize, 9);
	assert_true(cfg.pool_idle_timeout == 5);
	assert_int_equal(cfg.pool_connections, 9);
	assert_int_equal(cfg.max_retries, 0);
	assert_true(cfg.retry_backoff_factor == 0);
	assert_true(cfg.retry_backoff_max == 1);
	assert_int_equal(cfg.retry_buffer_size, 0);
	sl_config_dispose(&cfg);

	assert_int_equal(load(&cfg, err, "--target-host", "u", "--circuit-breaker-threshold", "3",
	                      "--circuit-breaker-timeout", "0.5", "--client-header-timeout", "4",
	                      "--client-idle-timeout", "6", "--max-header-size", "1024", "--max-body-size",
	                      "10000000000", "--max-connections", "1", "--workers", "256", "--admin-port", "9091",
	                      "--shutdown-timeout", "0", "--access-log", "-", "--log-level", "debug", NULL),
	                 SL_CONFIG_RUN);
	assert_int_equal(cfg.circuit_breaker_threshold, 3);
	assert_true(cfg.circuit_breaker_timeout == 0.5);
	assert_true(cfg.client_header_timeout == 4);
	assert_true(cfg.client_idle_timeout == 6);
	assert_int_equal(cfg.max_header_size, 1024);
	assert_int_equal(cfg.max_body_size, 10000000000LL);
	assert_int_equal(cfg.max_connections, 1);
	assert_int_equal(cfg.workers, 256);
	assert_int_equal(cfg.admin_port, 9091);
	assert_true(cfg.shutdown_timeout == 0);
	assert_string_equal(cfg.access_log, "-");
	assert_int_equal(cfg.log_level, SL_LOG_DEBUG);
	sl_config_dispose(&cfg);
}

static void test_aliases_and_equals_form(void **state)
{
	sl_config_t cfg;
	char err[512];
	assert_int_equal(load(&cfg, err, "--target-host=u", "--max-concurrent", "11", "--retry-backoff=0.75", NULL),
	                 SL_CONFIG_RUN);
	assert_int_equal(cfg.max_concurrent_requests, 11);
	assert_true(cfg.retry_backoff_factor == 0.75);
	sl_config_dispose(&cfg);

	/* Repeated options: the last one wins, whichever spelling it uses. */
	assert_int_equal(load(&cfg, err, "--target-host", "a", "--max-concurrent-requests=3", "--max-concurrent=4",
	                      "--target-host", "b", NULL),
	                 SL_CONFIG_RUN);
	assert_int_equal(cfg.max_concurrent_requests, 4);
	assert_string_equal(cfg.target_host, "b");
	sl_config_dispose(&cfg);
}

static void test_missing_target(void **state)
{
	expect_error("--target-host is required (the upstream to forward to)", NULL);
	expect_error("--target-host is required (the upstream to forward to)", "--listen-port", "1", NULL);
	expect_error("--target-host must be a non-empty string, got \"\"", "--target-host=", NULL);
}

static void test_unknown_and_positional(void **state)
{
	expect_error("unknown option --bogus (see --help)", "--target-host", "u", "--bogus", NULL);
	expect_error("unknown option --bogus (see --help)", "--bogus=1", "--target-host", "u", NULL);
	expect_error("unknown option -x (see --help)", "-x", NULL);
	expect_error("unknown option --max_queue_size; did you mean --max-queue-size?", "--max_queue_size", "1", NULL);
	expect_error("unknown option --zzz (see --help)", "--zzz", "1", NULL);
	expect_error("unexpected argument \"up\": options start with -- (see --help)", "--target-host", "u", "up",
	             NULL);
	expect_error("unexpected argument \"--\": options start with -- (see --help)", "--", NULL);
	expect_error("--check-config takes no value", "--target-host", "u", "--check-config=yes", NULL);
	/* Messages stay one line and short whatever was typed. */
	expect_error("unknown option --a?b (see --help)", "--a\nb=1", NULL);
	expect_error("--log-level must be one of error, warn, info, debug, got "
	             "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...\"",
	             "--target-host", "u", "--log-level",
	             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", NULL);
}

static void test_missing_value(void **state)
{
	expect_error("--read-timeout needs a value (a number of seconds between 0.001 and 86400)", "--target-host", "u",
	             "--read-timeout", NULL);
	expect_error("--workers needs a value (an integer between 1 and 256)", "--workers", "--target-host", "u", NULL);
	expect_error("--config needs a value (a non-empty string)", "--target-host", "u", "--config", NULL);
}

static void test_bad_durations(void **state)
{
	const char *bad[] = {"abc", "10s", "", " 10", "inf", "nan", "0x10", "0", "-1", "86400.5", "1e9", "0.0009"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char want[256], arg[64];
		snprintf(want, sizeof want,
		         "--read-timeout must be a number of seconds between 0.001 and 86400, got \"%s\"", bad[i]);
		snprintf(arg, sizeof arg, "--read-timeout=%s", bad[i]);
		expect_error(want, "--target-host", "u", arg, NULL);
	}
	/* Where 0 means "do not wait", 0 is fine but negative is not. */
	expect_error("--shutdown-timeout must be a number of seconds between 0 and 86400, got \"-1\"", "--target-host",
	             "u", "--shutdown-timeout", "-1", NULL);
	expect_error("--retry-backoff must be a number of seconds between 0 and 86400, got \"x\"", "--target-host", "u",
	             "--retry-backoff", "x", NULL);
	sl_config_t cfg;
	char err[512];
	assert_int_equal(load(&cfg, err, "--target-host", "u", "--read-timeout", "86400", "--connect-timeout", "1e-3",
	                      "--write-timeout", "2.5e1", NULL),
	                 SL_CONFIG_RUN);
	assert_true(cfg.read_timeout == 86400);
	assert_true(cfg.connect_timeout == 0.001);
	assert_true(cfg.write_timeout == 25);
	sl_config_dispose(&cfg);
}

static void test_bad_integers(void **state)
{
	expect_error("--workers must be an integer between 1 and 256, got \"0\"", "--target-host", "u", "--workers",
	             "0", NULL);
	expect_error("--workers must be an integer between 1 and 256, got \"257\"", "--target-host", "u", "--workers",
	             "257", NULL);
	expect_error("--workers must be an integer between 1 and 256, got \"1.5\"", "--target-host", "u", "--workers",
	             "1.5", NULL);
	expect_error("--workers must be an integer between 1 and 256, got \"4x\"", "--target-host", "u", "--workers",
	             "4x", NULL);
	expect_error("--max-concurrent must be an integer between 1 and 1000000, got \"0\"", "--target-host", "u",
	             "--max-concurrent", "0", NULL);
	expect_error("--max-queue-size must be an integer between 0 and 1000000, got \"-1\"", "--target-host", "u",
	             "--max-queue-size", "-1", NULL);
	expect_error("--max-retries must be an integer between 0 and 10, got \"11\"", "--target-host", "u",
	             "--max-retries", "11", NULL);
	expect_error("--listen-port must be a port number between 1 and 65535, got \"0\"", "--target-host", "u",
	             "--listen-port", "0", NULL);
	expect_error("--target-port must be a port number between 1 and 65535, got \"65536\"", "--target-host", "u",
	             "--target-port", "65536", NULL);
	expect_error("--max-header-size must be a number of bytes between 1024 and 1048576, got "
	             "\"1023\"",
	             "--target-host", "u", "--max-header-size", "1023", NULL);
	expect_error("--retry-buffer-size must be a number of bytes between 0 and 67108864, got "
	             "\"67108865\"",
	             "--target-host", "u", "--retry-buffer-size", "67108865", NULL);
	expect_error("--max-body-size must be a number of bytes, 0 or more, got "
	             "\"99999999999999999999\"",
	             "--target-host", "u", "--max-body-size", "99999999999999999999", NULL);
	expect_error("--max-connections must be an integer between 1 and 1000000, got \"0\"", "--target-host", "u",
	             "--max-connections", "0", NULL);
	expect_error("--admin-port must be a port number between 1 and 65535, got \"0\"", "--target-host", "u",
	             "--admin-port", "0", NULL);
	expect_error("--log-level must be one of error, warn, info, debug, got \"verbose\"", "--target-host", "u",
	             "--log-level", "verbose", NULL);
}

static void test_across_options(void **state)
{
	expect_error("--pool-connections (51) must not exceed --pool-maxsize (50)", "--target-host", "u",
	             "--pool-connections", "51", NULL);
	expect_error("--admin-port must differ from --listen-port (both are 8080)", "--target-host", "u",
	             "--admin-port", "8080", NULL);
	expect_error("--admin-port must differ from --listen-port (both are 9000)", "--target-host", "u",
	             "--admin-port", "9000", "--listen-port", "9000", NULL);
}

/* ---- config file ---- */

static void test_file_then_command_line(void **state)
{
	char *path = write_temp("{\n"
	                        "  \"target_host\": \"from-file\",\n"
	                        "  \"target_port\": 8888,\n"
	                        "  \"read_timeout\": 300,\n"
	                        "  \"write_timeout\": 1.5,\n"
	                        "  \"max_concurrent\": 100,\n"
	                        "  \"retry_backoff\": 0.25,\n"
	                        "  \"max_queue_size\": 200,\n"
	                        "  \"access_log\": \"/tmp/a.log\",\n"
	                        "  \"admin_port\": null,\n"
	                        "  \"log_level\": \"warn\"\n"
	                        "}\n");
	sl_config_t cfg;
	char err[512];
	/* --config last: the command line still wins whatever its order. */
	assert_int_equal(load(&cfg, err, "--max-queue-size", "5", "--read-timeout=7", "--config", path, NULL),
	                 SL_CONFIG_RUN);
	assert_string_equal(cfg.config_file, path);
	assert_string_equal(cfg.target_host, "from-file");
	assert_int_equal(cfg.target_port, 8888);
	assert_true(cfg.read_timeout == 7);
	assert_true(cfg.write_timeout == 1.5);
	assert_int_equal(cfg.max_concurrent_requests, 100);
	assert_true(cfg.retry_backoff_factor == 0.25);
	assert_int_equal(cfg.max_queue_size, 5);
	assert_string_equal(cfg.access_log, "/tmp/a.log");
	assert_int_equal(cfg.admin_port, 0);
	assert_int_equal(cfg.log_level, SL_LOG_WARN);
	assert_int_equal(cfg.listen_port, 8080); /* untouched by both: default */
	sl_config_dispose(&cfg);
	drop_temp(path);
}

static void test_file_errors(void **state)
{
	expect_file_error("{\n  \"listen_port\": 8080,\n  \"target_port\": 80,,\n}\n",
	                  "invalid JSON at line 3, column 21: string or '}' expected near ','");
	expect_file_error("{\"a\": 1, \"a\": 2}",
	                  "invalid JSON at line 1, column 12: duplicate object key near '\"a\"'");
	expect_file_error("", "invalid JSON at line 1, column 0: '[' or '{' expected near end of file");
	expect_file_error("[1, 2]", "the top level must be a JSON object");
	expect_file_error("{\"bogus\": 1}",
	                  "unknown key \"bogus\" at line 1 (see --help; keys are the option names with '_' for '-')");
	expect_file_error("{\n\"max-queue-size\": 1}",
	                  "unknown key \"max-queue-size\" at line 2; did you mean \"max_queue_size\"?");
	expect_file_error("{\"config\": \"/etc/other.json\"}", "\"config\" can only be given on the command line");
	expect_file_error("{\"check_config\": true}", "\"check_config\" can only be given on the command line");
	expect_file_error("{\"max_concurrent\": 1, \"max_concurrent_requests\": 2}",
	                  "\"max_concurrent\" and \"max_concurrent_requests\" set the same option");
	expect_file_error("{\"workers\": 1.5}", "workers (--workers) must be an integer between 1 and 256, got 1.5");
	expect_file_error("{\"workers\": 2.0}", "workers (--workers) must be an integer between 1 and 256, got 2.0");
	expect_file_error("{\"listen_port\": \"8080\"}", "listen_port (--listen-port) must be a port "
	                                                 "number between 1 and 65535, got \"8080\"");
	expect_file_error("{\"listen_port\": null}", "listen_port (--listen-port) must be a port "
	                                             "number between 1 and 65535, got null");
	expect_file_error("{\"read_timeout\": \"10s\"}",
	                  "read_timeout (--read-timeout) must be a number of seconds between 0.001 and "
	                  "86400, got \"10s\"");
	expect_file_error("{\"read_timeout\": 0}",
	                  "read_timeout (--read-timeout) must be a number of seconds between 0.001 and "
	                  "86400, got 0");
	expect_file_error("{\"target_host\": 5}", "target_host (--target-host) must be a non-empty string, got 5");
	expect_file_error("{\"target_host\": null}",
	                  "target_host (--target-host) must be a non-empty string, got null");
	expect_file_error("{\"log_level\": \"loud\"}", "log_level (--log-level) must be one of error, "
	                                               "warn, info, debug, got \"loud\"");
	expect_file_error("{\"retry_backoff\": -1}", "retry_backoff (--retry-backoff) must be a number "
	                                             "of seconds between 0 and 86400, got -1");
	expect_file_error("{\"max_body_size\": -5}", "max_body_size (--max-body-size) must be a number "
	                                             "of bytes, 0 or more, got -5");
	expect_file_error("{\"access_log\": [\"a\"]}",
	                  "access_log (--access-log) must be a non-empty string, got [\"a\"]");
}

static void test_file_unreadable(void **state)
{
	expect_error("cannot read config file /nonexistent/sluice.json: No such file or directory", "--config",
	             "/nonexistent/sluice.json", "--target-host", "u", NULL);
	expect_error("cannot read config file /tmp: Is a directory", "--config=/tmp", "--target-host", "u", NULL);
}

static void test_pool_connections_across_layers(void **state)
{
	char *path = write_temp("{\"target_host\": \"u\", \"pool_connections\": 20}");
	sl_config_t cfg;
	char err[512];
	assert_int_equal(load(&cfg, err, "--config", path, "--pool-maxsize", "10", NULL), SL_CONFIG_ERROR);
	assert_string_equal(err, "--pool-connections (20) must not exceed --pool-maxsize (10)");
	assert_int_equal(load(&cfg, err, "--config", path, "--pool-maxsize", "20", NULL), SL_CONFIG_RUN);
	assert_int_equal(cfg.pool_connections, 20);
	sl_config_dispose(&cfg);
	drop_temp(path);
}

/* ---- reload ---- */

static void test_reload_keeps_command_line(void **state)
{
	char *path = write_temp("{\"target_host\": \"one\", \"read_timeout\": 5, \"max_retries\": 1}");
	args_t a = {.argc = 5, .argv = {"sluice", "--config", path, "--max-retries", "3", NULL}};
	sl_config_t cfg, next;
	char err[512];
	assert_int_equal(sl_config_load(&cfg, a.argc, a.argv, err, sizeof err), SL_CONFIG_RUN);
	assert_string_equal(cfg.target_host, "one");
	assert_int_equal(cfg.max_retries, 3);

	rewrite(path, "{\"target_host\": \"two\", \"read_timeout\": 9, \"max_retries\": 0}");
	assert_int_equal(sl_config_reload(&cfg, a.argc, a.argv, &next, err, sizeof err), 0);
	assert_string_equal(next.target_host, "two");
	assert_true(next.read_timeout == 9);
	assert_int_equal(next.max_retries, 3); /* the command line still overrides */
	assert_string_equal(cfg.target_host, "one");
	sl_config_dispose(&cfg);
	cfg = next;

	/* A broken file leaves *out exactly as it was. */
	rewrite(path, "{\"target_host\": \"three\", \"read_timeout\": }");
	memset(&next, 0xA5, sizeof next);
	sl_config_t before = next;
	assert_int_equal(sl_config_reload(&cfg, a.argc, a.argv, &next, err, sizeof err), -1);
	assert_memory_equal(&next, &before, sizeof next);
	char want[512];
	snprintf(want, sizeof want, "config file %s: invalid JSON at line 1, column 42: ", path);
	assert_true(strncmp(err, want, strlen(want)) == 0);

	rewrite(path, "{\"target_host\": \"three\", \"read_timeout\": 0}");
	assert_int_equal(sl_config_reload(&cfg, a.argc, a.argv, &next, err, sizeof err), -1);
	assert_memory_equal(&next, &before, sizeof next);
	assert_string_equal(cfg.target_host, "two");

	/* A key gone from the file goes back to its default. */
	rewrite(path, "{\"target_host\": \"four\"}");
	assert_int_equal(sl_config_reload(&cfg, a.argc, a.argv, &next, err, sizeof err), 0);
	assert_string_equal(next.target_host, "four");
	assert_true(next.read_timeout == 120);
	sl_config_dispose(&cfg);
	sl_config_dispose(&next);
	drop_temp(path);
}

/* ---- rendering ---- */

static void test_to_json_round_trip(void **state)
{
	char *path = write_temp("{\"target_host\": \"h\", \"read_timeout\": 0.1, \"max_body_size\": "
	                        "5000000000, \"access_log\": \"-\", \"log_level\": \"debug\"}");
	sl_config_t first, second;
	char err[512];
	assert_int_equal(load(&first, err, "--config", path, "--admin-port", "9999", "--write-timeout", "1.1",
	                      "--workers", "3", NULL),
	                 SL_CONFIG_RUN);
	json_t *obj = sl_config_to_json(&first);
	assert_non_null(obj);
	assert_string_equal(json_string_value(json_object_get(obj, "config")), path);
	assert_int_equal(json_integer_value(json_object_get(obj, "admin_port")), 9999);
	assert_true(json_real_value(json_object_get(obj, "read_timeout")) == 0.1);
	assert_string_equal(json_string_value(json_object_get(obj, "log_level")), "debug");
	assert_null(json_object_get(obj, "check_config"));
	assert_int_equal(json_object_size(obj), 54); /* every setting of SPEC §2 built so far + retry_buffer_size */

	/* The file cannot name itself, so "config" is the one key to drop. */
	json_object_del(obj, "config");
	char *copy = write_temp("");
	assert_int_equal(json_dump_file(obj, copy, JSON_INDENT(2)), 0);
	json_decref(obj);
	assert_int_equal(load(&second, err, "--config", copy, NULL), SL_CONFIG_RUN);

	json_t *a = sl_config_to_json(&first), *b = sl_config_to_json(&second);
	json_object_del(a, "config");
	json_object_del(b, "config");
	assert_true(json_equal(a, b));
	json_decref(a);
	json_decref(b);
	assert_true(second.read_timeout == first.read_timeout);
	assert_true(second.write_timeout == 1.1);
	assert_int_equal(second.max_body_size, 5000000000LL);
	assert_int_equal(second.admin_port, 9999);
	assert_int_equal(second.workers, 3);
	sl_config_dispose(&first);
	sl_config_dispose(&second);

	/* Unset optional settings render as null and read back as unset. */
	assert_int_equal(load(&first, err, "--target-host", "h", NULL), SL_CONFIG_RUN);
	obj = sl_config_to_json(&first);
	assert_true(json_is_null(json_object_get(obj, "config")));
	assert_true(json_is_null(json_object_get(obj, "access_log")));
	assert_true(json_is_null(json_object_get(obj, "admin_port")));
	json_object_del(obj, "config");
	assert_int_equal(json_dump_file(obj, copy, 0), 0);
	json_decref(obj);
	assert_int_equal(load(&second, err, "--config", copy, NULL), SL_CONFIG_RUN);
	assert_null(second.access_log);
	assert_int_equal(second.admin_port, 0);
	sl_config_dispose(&first);
	sl_config_dispose(&second);
	drop_temp(copy);
	drop_temp(path);
}

/* ---- --help, --version, --check-config ---- */

static void test_help_and_version(void **state)
{
	sl_config_result_t r;
	const char *out = capture_stdout(&r, "--help", NULL);
	assert_int_equal(r, SL_CONFIG_EXIT);
	const char *flags[] = {"--config FILE",
	                       "--target-host HOST",
	                       "--max-concurrent-requests N",
	                       "alias --max-concurrent",
	                       "alias --retry-backoff",
	                       "--retry-buffer-size BYTES",
	                       "[default 65536]",
	                       "--check-config",
	                       "-h, --help",
	                       "-V, --version",
	                       "[required]",
	                       "the number of CPUs"};
	for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
		if (!strstr(out, flags[i]))
			fail_msg("--help lacks \"%s\":\n%s", flags[i], out);
	for (const char *line = out; *line;) {
		const char *nl = strchr(line, '\n');
		assert_non_null(nl);
		assert_true(nl - line <= 80);
		line = nl + 1;
	}

	/* Help wins over everything else on the line, even errors. */
	out = capture_stdout(&r, "--bogus", "-h", NULL);
	assert_int_equal(r, SL_CONFIG_EXIT);
	assert_non_null(strstr(out, "Usage: sluice"));

	out = capture_stdout(&r, "--version", NULL);
	assert_int_equal(r, SL_CONFIG_EXIT);
	assert_string_equal(out, "sluice " SL_VERSION "\n");
	out = capture_stdout(&r, "-V", NULL);
	assert_string_equal(out, "sluice " SL_VERSION "\n");
}

static void test_check_config(void **state)
{
	sl_config_result_t r;
	const char *out = capture_stdout(&r, "--target-host", "u", "--check-config", "--read-timeout", "0.1", NULL);
	assert_int_equal(r, SL_CONFIG_EXIT);
	json_error_t jerr;
	json_t *obj = json_loads(out, 0, &jerr); /* the JSON alone: "configuration OK" is on stderr */
	assert_non_null(obj);
	assert_string_equal(json_string_value(json_object_get(obj, "target_host")), "u");
	assert_true(json_real_value(json_object_get(obj, "read_timeout")) == 0.1);
	json_decref(obj);
	assert_non_null(strstr(out, "\"read_timeout\": 0.1,"));

	out = capture_stdout(&r, "--check-config", NULL);
	assert_int_equal(r, SL_CONFIG_ERROR);
	assert_string_equal(out, "");
}

static void test_ms(void **state)
{
	assert_int_equal(sl_config_ms(0), 0);
	assert_int_equal(sl_config_ms(-1), 0);
	assert_int_equal(sl_config_ms(0.0001), 1);
	assert_int_equal(sl_config_ms(0.001), 1);
	assert_int_equal(sl_config_ms(0.0015), 2);
	assert_int_equal(sl_config_ms(1.1), 1100);
	assert_int_equal(sl_config_ms(0.3), 300);
	assert_int_equal(sl_config_ms(120), 120000);
	assert_int_equal(sl_config_ms(86400), 86400000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_every_option_on_the_command_line),
	    cmocka_unit_test(test_aliases_and_equals_form),
	    cmocka_unit_test(test_missing_target),
	    cmocka_unit_test(test_unknown_and_positional),
	    cmocka_unit_test(test_missing_value),
	    cmocka_unit_test(test_bad_durations),
	    cmocka_unit_test(test_bad_integers),
	    cmocka_unit_test(test_across_options),
	    cmocka_unit_test(test_file_then_command_line),
	    cmocka_unit_test(test_file_errors),
	    cmocka_unit_test(test_file_unreadable),
	    cmocka_unit_test(test_pool_connections_across_layers),
	    cmocka_unit_test(test_reload_keeps_command_line),
	    cmocka_unit_test(test_to_json_round_trip),
	    cmocka_unit_test(test_help_and_version),
	    cmocka_unit_test(test_check_config),
	    cmocka_unit_test(test_ms),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
