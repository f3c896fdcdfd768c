/* options.c — see options.h. */
#include "options.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WORKERS 256

static const char usage[] = "usage: sluice-upstream [options]\n"
                            "\n"
                            "A fast HTTP/1.1 test upstream whose answer each request chooses by query\n"
                            "parameters (delay_ms, status, size, chunked, chunks, chunk_delay_ms, fail,\n"
                            "fail_times, key, echo, connection, http10, nolength, header, early).\n"
                            "GET /__stats, POST /__reset and GET /__log are for tests.\n"
                            "\n"
                            "  --host ADDR           address to listen on (default 127.0.0.1)\n"
                            "  --port N              port to listen on (default 8000)\n"
                            "  --workers N           event-loop threads, each with its own\n"
                            "                        SO_REUSEPORT socket (default 1)\n"
                            "  --idle-timeout SEC    close keep-alive connections idle this long\n"
                            "                        (default 0: never)\n"
                            "  --max-inflight N      answer 429 at once to a request that finds N\n"
                            "                        others in flight (an upstream with a capacity);\n"
                            "                        0, the default, means no limit\n"
                            "  --help                print this and exit\n";

static int do_int(const char *v, long min, long max, int *out)
{
	char *end;
	errno = 0;
	long n = strtol(v, &end, 10);
	if (errno || end == v || *end || n < min || n > max)
		return -1;
	*out = (int)n;
	return 0;
}

int sl_up_options_parse(sl_up_options_t *o, int argc, char **argv, char *err, size_t errlen)
{
	o->host = "127.0.0.1";
	o->port = 8000;
	o->workers = 1;
	o->idle_timeout = 0;
	o->max_inflight = 0;

	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
			fputs(usage, stdout);
			return SL_UP_OPTIONS_DONE;
		}
		if (strncmp(arg, "--", 2) != 0) {
			snprintf(err, errlen, "unexpected argument '%s' (see --help)", arg);
			return SL_UP_OPTIONS_ERROR;
		}
		const char *name = arg + 2, *eq = strchr(name, '='), *value;
		size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
		if (eq) {
			value = eq + 1;
		} else if (i + 1 < argc) {
			value = argv[++i];
		} else {
			snprintf(err, errlen, "option '%s' needs a value", arg);
			return SL_UP_OPTIONS_ERROR;
		}
#define IS(lit) (nlen == sizeof(lit) - 1 && !strncmp(name, lit, nlen))
		if (IS("host")) {
			if (!*value) {
				snprintf(err, errlen, "--host needs an address");
				return SL_UP_OPTIONS_ERROR;
			}
			o->host = value;
		} else if (IS("port")) {
			if (do_int(value, 0, 65535, &o->port) < 0) {
				snprintf(err, errlen, "--port must be an integer from 0 to 65535, not '%s'", value);
				return SL_UP_OPTIONS_ERROR;
			}
		} else if (IS("workers")) {
			if (do_int(value, 1, MAX_WORKERS, &o->workers) < 0) {
				snprintf(err, errlen, "--workers must be an integer from 1 to %d, not '%s'",
				         MAX_WORKERS, value);
				return SL_UP_OPTIONS_ERROR;
			}
		} else if (IS("idle-timeout")) {
			char *end;
			errno = 0;
			double d = strtod(value, &end);
			if (errno || end == value || *end || !isfinite(d) || d < 0 || d > 1e6) {
				snprintf(err, errlen,
				         "--idle-timeout must be a number of seconds from 0 to 1000000, not '%s'",
				         value);
				return SL_UP_OPTIONS_ERROR;
			}
			o->idle_timeout = d;
		} else if (IS("max-inflight")) {
			int n;
			if (do_int(value, 0, 1000000, &n) < 0) {
				snprintf(err, errlen, "--max-inflight must be an integer from 0 to 1000000, not '%s'",
				         value);
				return SL_UP_OPTIONS_ERROR;
			}
			o->max_inflight = n;
		} else {
			snprintf(err, errlen, "unknown option '--%.*s' (see --help)", (int)nlen, name);
			return SL_UP_OPTIONS_ERROR;
		}
#undef IS
	}
	return SL_UP_OPTIONS_RUN;
}
