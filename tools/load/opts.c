/* opts.c — sluice-load's flags: one table of options, `--name value` and
 * `--name=value` forms, every value checked with a one-sentence complaint.
 *
 * The URL, method and header syntax is checked here; the URL's meaning
 * (scheme, host, port) is target.c's. */
#include "opts.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "buf.h"

#define MAX_CONCURRENT 100000
#define MAX_THREADS 1024
#define MAX_BODY_FILE (256u << 20) /* the body is sent from memory */

enum {
	O_URL,
	O_CONCURRENT,
	O_TOTAL,
	O_DURATION,
	O_TIMEOUT,
	O_RATE,
	O_METHOD,
	O_HEADER,
	O_BODY,
	O_BODY_FILE,
	O_NO_KEEPALIVE,
	O_JSON,
	O_THREADS,
	O_MIN_SUCCESS,
	O_HELP,
	O_VERSION,
};

/* clang-format off */
static const struct option_row {
	const char *name;
	int id;
	bool takes_value;
} options[] = {
	{"url", O_URL, true},
	{"concurrent", O_CONCURRENT, true},
	{"total-requests", O_TOTAL, true},
	{"duration", O_DURATION, true},
	{"timeout", O_TIMEOUT, true},
	{"rate", O_RATE, true},
	{"method", O_METHOD, true},
	{"header", O_HEADER, true},
	{"body", O_BODY, true},
	{"body-file", O_BODY_FILE, true},
	{"no-keepalive", O_NO_KEEPALIVE, false},
	{"json", O_JSON, false},
	{"threads", O_THREADS, true},
	{"min-success-rate", O_MIN_SUCCESS, true},
	{"help", O_HELP, false},
	{"version", O_VERSION, false},
};
/* clang-format on */

static const char usage[] = "usage: sluice-load --url URL [options]\n"
                            "\n"
                            "  --url URL               http://host[:port][/path?query] (required)\n"
                            "  --concurrent N          connections, across all threads (default 10)\n"
                            "  --total-requests N      requests to send (default 100)\n"
                            "  --duration SEC          or: send for this long instead\n"
                            "  --timeout SEC           per-request limit, connect included (default 30)\n"
                            "  --rate RPS              open loop at this constant rate; latency counts\n"
                            "                          from each request's scheduled start\n"
                            "  --method M              request method (default GET)\n"
                            "  --header 'K: V'         extra request header, repeatable\n"
                            "  --body STR              request body\n"
                            "  --body-file F           request body read from a file\n"
                            "  --no-keepalive          a new connection for every request\n"
                            "  --json                  print one JSON object instead of the table\n"
                            "  --threads N             event-loop threads (default: CPUs)\n"
                            "  --min-success-rate R    exit 1 when the success rate (0..1) is lower\n"
                            "  --help, --version\n"
                            "\n"
                            "Exit status: 0; 1 when no request succeeded or the success rate is below\n"
                            "--min-success-rate; 2 on bad arguments.\n";

/* Writes the message into err and returns SL_LOAD_OPTS_ERROR. */
#define do_error(err, errlen, ...) sl_errorf(SL_LOAD_OPTS_ERROR, err, errlen, __VA_ARGS__)

static int do_parse_uint(const char *name, const char *s, uint64_t min, uint64_t max, uint64_t *out, char *err,
                         size_t errlen)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (*s == '\0' || *s == '-' || *s == '+' || *end != '\0' || errno || v < min || v > max)
		return do_error(err, errlen, "--%s must be an integer from %llu to %llu, not '%s'.", name,
		                (unsigned long long)min, (unsigned long long)max, s);
	*out = v;
	return SL_LOAD_OPTS_RUN;
}

/* A finite number in [min, max]; with open_min, strictly above min. */
static int do_parse_double(const char *name, const char *s, double min, bool open_min, double max, double *out,
                           char *err, size_t errlen)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	bool ok = *s != '\0' && *end == '\0' && !errno && isfinite(v) && v <= max && (open_min ? v > min : v >= min);
	if (!ok) {
		if (open_min)
			return do_error(err, errlen, "--%s must be a number above %g, not '%s'.", name, min, s);
		return do_error(err, errlen, "--%s must be a number from %g to %g, not '%s'.", name, min, max, s);
	}
	*out = v;
	return SL_LOAD_OPTS_RUN;
}

/* RFC 9110 token characters: methods and header names. */
static bool is_token(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (!(ch >= 'a' && ch <= 'z') && !(ch >= 'A' && ch <= 'Z') && !(ch >= '0' && ch <= '9') &&
		    !strchr("!#$%&'*+-.^_`|~", ch))
			return false;
	}
	return true;
}

static int do_check_header(const char *h, char *err, size_t errlen)
{
	const char *colon = strchr(h, ':');
	if (!colon || !is_token(h, (size_t)(colon - h)))
		return do_error(err, errlen, "--header must look like 'Name: value', not '%s'.", h);
	if (strpbrk(h, "\r\n"))
		return do_error(err, errlen, "--header must not contain a line break.");
	size_t n = (size_t)(colon - h);
	if ((n == 14 && !strncasecmp(h, "Content-Length", n)) || (n == 17 && !strncasecmp(h, "Transfer-Encoding", n)))
		return do_error(err, errlen, "--header must not set %.*s: sluice-load frames the body itself.", (int)n,
		                h);
	return SL_LOAD_OPTS_RUN;
}

static int do_read_file(sl_load_opts_t *o, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return do_error(err, errlen, "--body-file cannot open '%s': %s.", path, strerror(errno));
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	while (buf) {
		if (len == cap) {
			char *bigger = cap >= MAX_BODY_FILE ? NULL : realloc(buf, cap * 2);
			if (!bigger) {
				free(buf);
				fclose(f);
				return do_error(err, errlen, "--body-file '%s' is larger than %u MiB.", path,
				                MAX_BODY_FILE >> 20);
			}
			buf = bigger;
			cap *= 2;
		}
		size_t n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	bool failed = !buf || ferror(f);
	fclose(f);
	if (failed) {
		free(buf);
		return do_error(err, errlen, "--body-file cannot read '%s'.", path);
	}
	o->body = buf;
	o->body_len = len;
	return SL_LOAD_OPTS_RUN;
}

static unsigned do_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

int sl_load_opts_parse(sl_load_opts_t *o, int argc, char **argv, char *err, size_t errlen)
{
	memset(o, 0, sizeof(*o));
	o->concurrent = 10;
	o->timeout = 30;
	o->method = "GET";
	o->keepalive = true;
	o->threads = do_cpus();
	o->headers = calloc((size_t)argc + 1, sizeof(*o->headers));
	if (!o->headers)
		return do_error(err, errlen, "out of memory.");

	bool have_total = false, have_body = false;
	const char *body_file = NULL;
	uint64_t u;
	int rc;
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		if (strncmp(arg, "--", 2) != 0)
			return do_error(err, errlen, "unexpected argument '%s' (options start with --; see --help).",
			                arg);
		const char *name = arg + 2, *value = NULL;
		const char *eq = strchr(name, '=');
		size_t namelen = eq ? (size_t)(eq - name) : strlen(name);
		const struct option_row *row = NULL;
		for (size_t k = 0; k < sizeof(options) / sizeof(options[0]); k++)
			if (strlen(options[k].name) == namelen && !strncmp(options[k].name, name, namelen))
				row = &options[k];
		if (!row)
			return do_error(err, errlen, "unknown option '%.*s' (see --help).", (int)namelen + 2, arg);
		if (row->takes_value) {
			if (eq)
				value = eq + 1;
			else if (i + 1 < argc)
				value = argv[++i];
			else
				return do_error(err, errlen, "--%s needs a value.", row->name);
		} else if (eq) {
			return do_error(err, errlen, "--%s takes no value.", row->name);
		}

		switch (row->id) {
		case O_URL: o->url = value; break;
		case O_CONCURRENT:
			if ((rc = do_parse_uint(row->name, value, 1, MAX_CONCURRENT, &u, err, errlen)))
				return rc;
			o->concurrent = (unsigned)u;
			break;
		case O_TOTAL:
			if ((rc = do_parse_uint(row->name, value, 1, UINT64_C(1) << 50, &o->total_requests, err,
			                        errlen)))
				return rc;
			have_total = true;
			break;
		case O_DURATION:
			if ((rc = do_parse_double(row->name, value, 0, true, 1e7, &o->duration, err, errlen)))
				return rc;
			break;
		case O_TIMEOUT:
			if ((rc = do_parse_double(row->name, value, 0, true, 1e7, &o->timeout, err, errlen)))
				return rc;
			break;
		case O_RATE:
			if ((rc = do_parse_double(row->name, value, 0, true, 1e8, &o->rate, err, errlen)))
				return rc;
			break;
		case O_METHOD:
			if (!is_token(value, strlen(value)))
				return do_error(err, errlen, "--method must be an HTTP method token, not '%s'.", value);
			o->method = value;
			break;
		case O_HEADER:
			if ((rc = do_check_header(value, err, errlen)))
				return rc;
			o->headers[o->nheaders++] = value;
			break;
		case O_BODY:
			if (have_body)
				return do_error(err, errlen,
				                "--body and --body-file may be given only once, and not both.");
			have_body = true;
			o->body_len = strlen(value);
			o->body = malloc(o->body_len + 1);
			if (!o->body)
				return do_error(err, errlen, "out of memory.");
			memcpy(o->body, value, o->body_len + 1);
			break;
		case O_BODY_FILE:
			if (have_body)
				return do_error(err, errlen,
				                "--body and --body-file may be given only once, and not both.");
			have_body = true;
			body_file = value;
			break;
		case O_NO_KEEPALIVE: o->keepalive = false; break;
		case O_JSON: o->json = true; break;
		case O_THREADS:
			if ((rc = do_parse_uint(row->name, value, 1, MAX_THREADS, &u, err, errlen)))
				return rc;
			o->threads = (unsigned)u;
			break;
		case O_MIN_SUCCESS:
			if ((rc = do_parse_double(row->name, value, 0, false, 1, &o->min_success_rate, err, errlen)))
				return rc;
			break;
		case O_HELP: fputs(usage, stdout); return SL_LOAD_OPTS_DONE;
		case O_VERSION:
#ifdef SL_VERSION
			puts("sluice-load " SL_VERSION);
#else
			puts("sluice-load");
#endif
			return SL_LOAD_OPTS_DONE;
		}
	}

	if (!o->url)
		return do_error(err, errlen, "--url is required (see --help).");
	if (have_total && o->duration > 0)
		return do_error(err, errlen, "--total-requests and --duration cannot be used together.");
	if (!have_total && o->duration == 0)
		o->total_requests = 100;
	if (body_file && (rc = do_read_file(o, body_file, err, errlen)))
		return rc;
	/* no more threads than connections (or requests) to give them */
	if (o->threads > o->concurrent)
		o->threads = o->concurrent;
	if (o->total_requests && o->threads > o->total_requests)
		o->threads = (unsigned)o->total_requests;
	return SL_LOAD_OPTS_RUN;
}

void sl_load_opts_dispose(sl_load_opts_t *o)
{
	free(o->headers);
	free(o->body);
	o->headers = NULL;
	o->body = NULL;
}
