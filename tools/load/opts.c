/* opts.c — sluice-load's flags: one table of options, `--name value` and
 * `--name=value` forms, the short forms wrk, hey and oha users type (`-c 10`,
 * `-c10`), the URL as the one positional argument, durations with units;
 * every value checked with a one-sentence complaint.
 *
 * The URL, method and header syntax is checked here; the URL's meaning
 * (scheme, host, port) is target.c's. A repeated option is taken at its
 * last value, as before short forms existed; only the URL is refused twice
 * when one copy is positional, because a stray word before the URL is far
 * more likely a typo than a wish. */
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
/* With --rate, connections are added while requests are due and every one
 * is busy. A thousand carries 1,000 req/s at 1 s of latency, and 10,000 at
 * 100 ms, which is more than one loopback box does; beyond it a slow
 * target is more likely broken than busy, and the shortfall says so. */
#define DEFAULT_MAX_CONCURRENT 1000
#define MAX_THREADS 1024
#define MAX_BODY_FILE (256u << 20) /* the body is sent from memory */

enum {
	O_URL,
	O_CONCURRENT,
	O_MAX_CONCURRENT,
	O_TOTAL,
	O_DURATION,
	O_TIMEOUT,
	O_RATE,
	O_METHOD,
	O_HEADER,
	O_BODY,
	O_BODY_FILE,
	O_NO_KEEPALIVE,
	O_INSECURE,
	O_CACERT,
	O_JSON,
	O_THREADS,
	O_MIN_SUCCESS,
	O_HELP,
	O_VERSION,
};

/* The short letters follow wrk, hey and oha where they agree with each
 * other and with what the letter means here:
 *
 *   -c -n -z -m -H -D -h      as in hey and oha (-D: the body from a file)
 *   -j                        --json, as in oha
 *   -d                        duration, as in wrk, NOT the body as in hey and
 *                             oha: issue 13 asks for wrk's meaning, and a
 *                             hey user's body fails loudly as a bad
 *                             duration, while a wrk user's "-d 30s" read as
 *                             a body would quietly send "30s" for the
 *                             default 100 requests. --body has no short
 *                             form.
 *   -q -r                     the rate across the whole run, as oha's -q;
 *                             hey's -q is per worker, and oha's -r is its
 *                             redirect limit (sluice-load follows no
 *                             redirects, so the letter is free here)
 *
 * No -t: hey and oha mean the timeout, wrk means the thread count, and
 * both exist here; whichever we picked, a command copied from the other
 * tool would run with a silently different setup. No -T (wrk's timeout,
 * hey's and oha's Content-Type) for the same reason. */
/* clang-format off */
static const struct option_row {
	const char *name;
	const char *shorts; /* short letters, NULL for none */
	int id;
	bool takes_value;
} options[] = {
	{"url", NULL, O_URL, true},
	{"concurrent", "c", O_CONCURRENT, true},
	{"max-concurrent", NULL, O_MAX_CONCURRENT, true},
	{"total-requests", "n", O_TOTAL, true},
	{"duration", "zd", O_DURATION, true},
	{"timeout", NULL, O_TIMEOUT, true},
	{"rate", "qr", O_RATE, true},
	{"method", "m", O_METHOD, true},
	{"header", "H", O_HEADER, true},
	{"body", NULL, O_BODY, true},
	{"body-file", "D", O_BODY_FILE, true},
	{"no-keepalive", NULL, O_NO_KEEPALIVE, false},
	{"insecure", "k", O_INSECURE, false},
	{"cacert", NULL, O_CACERT, true},
	{"json", "j", O_JSON, false},
	{"threads", NULL, O_THREADS, true},
	{"min-success-rate", NULL, O_MIN_SUCCESS, true},
	{"help", "h", O_HELP, false},
	{"version", NULL, O_VERSION, false},
};
/* clang-format on */

static const char usage[] = "usage: sluice-load [options] URL\n"
                            "       sluice-load --url URL [options]\n"
                            "\n"
                            "  URL, --url URL          http[s]://host[:port][/path?query] (required, once)\n"
                            "  -c, --concurrent N      connections, across all threads (default 10);\n"
                            "                          with --rate, the number to start with\n"
                            "  --max-concurrent N      with --rate, open more connections while a\n"
                            "                          request is due and all are busy, up to N\n"
                            "                          (default 1000, or -c if higher); requests\n"
                            "                          that still wait are reported behind schedule\n"
                            "  -n, --total-requests N  requests to send (default 100)\n"
                            "  -z, -d, --duration D    or: send for this long instead\n"
                            "  --timeout D             per-request limit, connect included (default 30s)\n"
                            "  -q, -r, --rate RPS      open loop at this constant rate (requests/s, whole\n"
                            "                          run); latency counts from each request's\n"
                            "                          scheduled start\n"
                            "  -m, --method M          request method (default GET)\n"
                            "  -H, --header 'K: V'     extra request header, repeatable\n"
                            "  --body STR              request body (no short form: -d is the duration)\n"
                            "  -D, --body-file F       request body read from a file\n"
                            "  --no-keepalive          a new connection for every request (https: a full\n"
                            "                          TLS handshake each time)\n"
                            "  -k, --insecure          https: do not verify the server's certificate\n"
                            "  --cacert FILE           https: verify against this PEM CA file instead of\n"
                            "                          the system store\n"
                            "  -j, --json              print one JSON object instead of the table\n"
                            "  --threads N             event-loop threads (default: CPUs)\n"
                            "  --min-success-rate R    exit 1 when the success rate (0..1) is lower\n"
                            "  -h, --help, --version\n"
                            "\n"
                            "A duration D is a number with a unit, ms, s, m or h (500ms, 2s, 1.5m, 1h,\n"
                            "1m30s); a plain number is seconds. A short option takes its value as the\n"
                            "next argument or attached to it: -c 10, -c10. There is no -t: hey and oha\n"
                            "mean the timeout by it, wrk the threads; write --timeout or --threads.\n"
                            "\n"
                            "Exit status: 0; 1 when no request succeeded or the success rate is below\n"
                            "--min-success-rate; 2 on bad arguments.\n";

/* Writes the message into err and returns SL_LOAD_OPTS_ERROR. */
#define do_error(err, errlen, ...) sl_errorf(SL_LOAD_OPTS_ERROR, err, errlen, __VA_ARGS__)

/* `flag` is the option as the user wrote it ("--concurrent" or "-c"), so
 * the complaint names what they typed. */
static int do_parse_uint(const char *flag, const char *s, uint64_t min, uint64_t max, uint64_t *out, char *err,
                         size_t errlen)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (*s == '\0' || *s == '-' || *s == '+' || *end != '\0' || errno || v < min || v > max)
		return do_error(err, errlen, "%s must be an integer from %llu to %llu, not '%s'.", flag,
		                (unsigned long long)min, (unsigned long long)max, s);
	*out = v;
	return SL_LOAD_OPTS_RUN;
}

/* A finite number in [min, max]; with open_min, strictly above min. */
static int do_parse_double(const char *flag, const char *s, double min, bool open_min, double max, double *out,
                           char *err, size_t errlen)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	bool ok = *s != '\0' && *end == '\0' && !errno && isfinite(v) && v <= max && (open_min ? v > min : v >= min);
	if (!ok) {
		if (open_min)
			return do_error(err, errlen, "%s must be a number above %g, not '%s'.", flag, min, s);
		return do_error(err, errlen, "%s must be a number from %g to %g, not '%s'.", flag, min, max, s);
	}
	*out = v;
	return SL_LOAD_OPTS_RUN;
}

#define MAX_SECONDS 1e7

/* One "<number><unit>" term of a duration, in seconds; advances *p. False
 * when there is no number, it is malformed ("1.2.3"), or the unit is not
 * one of ms, s, m, h. Digits only: signs, exponents and hex are the plain
 * number's business. */
static bool do_duration_term(const char **p, double *seconds)
{
	size_t n = strspn(*p, "0123456789.");
	char num[32], *end;
	if (n == 0 || n >= sizeof(num))
		return false;
	memcpy(num, *p, n);
	num[n] = '\0';
	double v = strtod(num, &end);
	if (*end != '\0')
		return false;
	const char *unit = *p + n;
	size_t u = strspn(unit, "abcdefghijklmnopqrstuvwxyz");
	double scale;
	if (u == 2 && !strncmp(unit, "ms", 2))
		scale = 1e-3;
	else if (u == 1 && (*unit == 's' || *unit == 'm' || *unit == 'h'))
		scale = *unit == 's' ? 1 : *unit == 'm' ? 60 : 3600;
	else
		return false;
	*seconds = v * scale;
	*p = unit + u;
	return true;
}

/* A duration in seconds: a plain number as these options always took
 * ("2", "0.5"), or terms with units as wrk, hey and oha take them ("500ms",
 * "1.5s", "1m", "1h", and sums such as "1m30s"). Above 0, at most
 * MAX_SECONDS. */
static int do_parse_duration(const char *flag, const char *s, double *out, char *err, size_t errlen)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (*s == '\0' || *end != '\0' || errno) {
		const char *p = s;
		v = 0;
		do {
			double term;
			if (!do_duration_term(&p, &term))
				return do_error(
				    err, errlen,
				    "%s must be a duration such as 2s, 500ms, 1m or 1.5h (a plain number is "
				    "seconds), not '%s'.",
				    flag, s);
			v += term;
		} while (*p != '\0');
	}
	if (!isfinite(v) || !(v > 0) || v > MAX_SECONDS)
		return do_error(err, errlen, "%s must be above 0 and at most %.0f s, not '%s'.", flag, MAX_SECONDS, s);
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

static int do_check_header(const char *flag, const char *h, char *err, size_t errlen)
{
	const char *colon = strchr(h, ':');
	if (!colon || !is_token(h, (size_t)(colon - h)))
		return do_error(err, errlen, "%s must look like 'Name: value', not '%s'.", flag, h);
	if (strpbrk(h, "\r\n"))
		return do_error(err, errlen, "%s must not contain a line break.", flag);
	size_t n = (size_t)(colon - h);
	if ((n == 14 && !strncasecmp(h, "Content-Length", n)) || (n == 17 && !strncasecmp(h, "Transfer-Encoding", n)))
		return do_error(err, errlen, "%s must not set %.*s: sluice-load frames the body itself.", flag, (int)n,
		                h);
	return SL_LOAD_OPTS_RUN;
}

static int do_read_file(sl_load_opts_t *o, const char *flag, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return do_error(err, errlen, "%s cannot open '%s': %s.", flag, path, strerror(errno));
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	while (buf) {
		if (len == cap) {
			char *bigger = cap >= MAX_BODY_FILE ? NULL : realloc(buf, cap * 2);
			if (!bigger) {
				free(buf);
				fclose(f);
				return do_error(err, errlen, "%s '%s' is larger than %u MiB.", flag, path,
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
		return do_error(err, errlen, "%s cannot read '%s'.", flag, path);
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

/* Reads the option at argv[*i] (which starts with '-'): `--name value`,
 * `--name=value`, `-x value`, `-xvalue` or `-x=value`. Sets *row, *value
 * (NULL for a flag without one) and flag (the option as typed, for
 * complaints); steps *i past a separate value. */
static int do_read_option(int argc, char **argv, int *i, const struct option_row **row, const char **value, char *flag,
                          size_t flaglen, char *err, size_t errlen)
{
	const char *arg = argv[*i], *attached = NULL;
	*row = NULL;
	*value = NULL;
	if (arg[1] == '-') {
		const char *name = arg + 2;
		const char *eq = strchr(name, '=');
		size_t namelen = eq ? (size_t)(eq - name) : strlen(name);
		for (size_t k = 0; k < sizeof(options) / sizeof(options[0]); k++)
			if (strlen(options[k].name) == namelen && !strncmp(options[k].name, name, namelen))
				*row = &options[k];
		if (!*row)
			return do_error(err, errlen, "unknown option '%.*s' (see --help).", (int)namelen + 2, arg);
		snprintf(flag, flaglen, "--%s", (*row)->name);
		attached = eq ? eq + 1 : NULL;
	} else {
		for (size_t k = 0; arg[1] != '\0' && k < sizeof(options) / sizeof(options[0]); k++)
			if (options[k].shorts && strchr(options[k].shorts, arg[1]))
				*row = &options[k];
		if (!*row)
			return do_error(err, errlen, "unknown option '%s' (see --help).", arg);
		snprintf(flag, flaglen, "-%c", arg[1]);
		if (arg[2] != '\0') /* -c10, and -c=10 as Go's flag package (hey) allows */
			attached = arg[2] == '=' ? arg + 3 : arg + 2;
	}
	if (!(*row)->takes_value) {
		if (attached)
			return do_error(err, errlen, "%s takes no value.", flag);
		return SL_LOAD_OPTS_RUN;
	}
	if (attached)
		*value = attached;
	else if (*i + 1 < argc)
		*value = argv[++*i];
	else
		return do_error(err, errlen, "%s needs a value.", flag);
	return SL_LOAD_OPTS_RUN;
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

	bool have_total = false, have_body = false, have_concurrent = false, have_max = false;
	const char *body_file = NULL, *url_opt = NULL, *url_arg = NULL;
	char body_flag[64] = "";
	uint64_t u;
	int rc;
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		if (arg[0] != '-') {
			if (url_arg)
				return do_error(err, errlen,
				                "the URL is given twice ('%s' and '%s'): give one, as an argument or "
				                "with --url.",
				                url_arg, arg);
			url_arg = arg;
			continue;
		}
		const struct option_row *row;
		const char *value;
		char flag[64];
		if ((rc = do_read_option(argc, argv, &i, &row, &value, flag, sizeof(flag), err, errlen)))
			return rc;

		switch (row->id) {
		case O_URL: url_opt = value; break;
		case O_CONCURRENT:
			if ((rc = do_parse_uint(flag, value, 1, MAX_CONCURRENT, &u, err, errlen)))
				return rc;
			o->concurrent = (unsigned)u;
			have_concurrent = true;
			break;
		case O_MAX_CONCURRENT:
			if ((rc = do_parse_uint(flag, value, 1, MAX_CONCURRENT, &u, err, errlen)))
				return rc;
			o->max_concurrent = (unsigned)u;
			have_max = true;
			break;
		case O_TOTAL:
			if ((rc = do_parse_uint(flag, value, 1, UINT64_C(1) << 50, &o->total_requests, err, errlen)))
				return rc;
			have_total = true;
			break;
		case O_DURATION:
			if ((rc = do_parse_duration(flag, value, &o->duration, err, errlen)))
				return rc;
			break;
		case O_TIMEOUT:
			if ((rc = do_parse_duration(flag, value, &o->timeout, err, errlen)))
				return rc;
			break;
		case O_RATE:
			if ((rc = do_parse_double(flag, value, 0, true, 1e8, &o->rate, err, errlen)))
				return rc;
			break;
		case O_METHOD:
			if (!is_token(value, strlen(value)))
				return do_error(err, errlen, "%s must be an HTTP method token, not '%s'.", flag, value);
			o->method = value;
			break;
		case O_HEADER:
			if ((rc = do_check_header(flag, value, err, errlen)))
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
			snprintf(body_flag, sizeof(body_flag), "%s", flag);
			break;
		case O_NO_KEEPALIVE: o->keepalive = false; break;
		case O_INSECURE: o->insecure = true; break;
		case O_CACERT: o->cacert = value; break;
		case O_JSON: o->json = true; break;
		case O_THREADS:
			if ((rc = do_parse_uint(flag, value, 1, MAX_THREADS, &u, err, errlen)))
				return rc;
			o->threads = (unsigned)u;
			break;
		case O_MIN_SUCCESS:
			if ((rc = do_parse_double(flag, value, 0, false, 1, &o->min_success_rate, err, errlen)))
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

	if (url_opt && url_arg)
		return do_error(err, errlen,
		                "the URL is given twice ('%s' and '%s'): give one, as an argument or with --url.",
		                url_opt, url_arg);
	o->url = url_opt ? url_opt : url_arg;
	if (!o->url)
		return do_error(err, errlen, "a URL is required, as an argument or with --url (see --help).");
	if (have_total && o->duration > 0)
		return do_error(err, errlen, "--total-requests and --duration cannot be used together.");
	if (!have_total && o->duration == 0)
		o->total_requests = 100;
	if (have_max && o->rate == 0)
		return do_error(err, errlen,
		                "--max-concurrent applies only with --rate (a closed loop keeps its --concurrent "
		                "connections).");
	if (o->rate == 0)
		o->max_concurrent = 0;
	else if (!have_max)
		o->max_concurrent = o->concurrent > DEFAULT_MAX_CONCURRENT ? o->concurrent : DEFAULT_MAX_CONCURRENT;
	else if (o->max_concurrent < o->concurrent && have_concurrent)
		return do_error(err, errlen,
		                "--max-concurrent %u is below --concurrent %u: raise the one or lower the other.",
		                o->max_concurrent, o->concurrent);
	else if (o->max_concurrent < o->concurrent)
		o->concurrent = o->max_concurrent; /* the default 10 starts lower under a lower cap */
	if (body_file && (rc = do_read_file(o, body_flag, body_file, err, errlen)))
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
