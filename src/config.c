/* config.c — the option table and everything it drives: command-line parsing,
 * the JSON config file, defaults, validation, --help, --check-config and the
 * JSON rendering of the effective settings.
 *
 * A configuration is built in layers onto a scratch struct: defaults, then the
 * file named by --config, then the command-line values in argv order, then the
 * checks that involve two options. Defaults are written as command-line text
 * and go through the same parser as argv, so a default can never fall outside
 * its own range. argv is scanned once before anything else, so --config may
 * come anywhere and a mistyped flag is reported before the file is opened.
 *
 * Invariant: the caller's struct only ever receives a complete, validated
 * configuration. Every failure releases the scratch struct, so a bad file on
 * SIGHUP leaves the running settings alone and leaks nothing.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <uv.h>

#include "buf.h"
#include "cluster.h"

#ifndef SL_VERSION
#define SL_VERSION "0.0.0"
#endif

typedef enum {
	OPT_CONFIG,  /* the file itself: read before all other values */
	OPT_STRING,  /* host or path: non-empty text */
	OPT_PORT,    /* int, 1..65535 */
	OPT_COUNT,   /* int within [min, max] */
	OPT_BYTES,   /* int64_t within [min, max] */
	OPT_SECONDS, /* double within [min, max] */
	OPT_CHOICE,  /* an enum, by one of the row's `choices` names */
	OPT_BOOL,    /* a setting: a flag without value on the command line, true/false in the file */
	OPT_FLAG,    /* an action (--check-config): set by its presence; takes no value */
	OPT_HELP,
	OPT_VERSION,
} opt_type_t;

enum {
	OPT_CLI_ONLY = 1 << 0, /* refused as a key of the config file */
	OPT_OPTIONAL = 1 << 1, /* default "none"; null in JSON (file or rendering) */
	OPT_REQUIRED = 1 << 2, /* no default, must be set somewhere */
	OPT_CPUS = 1 << 3,     /* default: the number of online CPUs */
};

typedef struct {
	const char *name;  /* command-line spelling without "--"; '_' for '-' in the file */
	const char *alias; /* second accepted spelling (the Python service's), or NULL */
	char short_name;   /* -h, -V, or 0 */
	opt_type_t type;
	unsigned flags;
	size_t offset;              /* of the value in sl_config_t */
	double min, max;            /* inclusive range of numeric values */
	const char *def;            /* default as command-line text; NULL: none, required or computed */
	const char *arg;            /* placeholder for the value in --help */
	const char *help;           /* meaning, as in SPEC §2 */
	const char *const *choices; /* OPT_CHOICE: the names, in enum order, NULL-terminated */
} opt_t;

#define FIELD(f) offsetof(sl_config_t, f)
#define NO_MAX ((double)INT64_MAX)
#define DAY 86400.0

static const char *const level_names[] = {"error", "warn", "info", "debug", NULL};
static const char *const abort_names[] = {"drain", "cancel", NULL};
static const char *const access_format_names[] = {"text", "json", NULL};
static const char *const fallback_names[] = {"static", "closed", NULL};
static const char *const queue_policy_names[] = {"fifo", "adaptive", NULL}; /* sl_queue_policy_t's order */

/* Durations that may be 0 are those where 0 means "do not wait" rather than
 * "fail at once": backoffs and the shutdown drain; or "none": the request
 * timeout. */
/* clang-format off */
/* Only OPT_CHOICE rows name their choices; the others leave the field out. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const opt_t options[] = {
	{"config", NULL, 0, OPT_CONFIG, OPT_CLI_ONLY | OPT_OPTIONAL, FIELD(config_file), 0, 0, NULL,
	 "FILE", "JSON config file (see examples/proxy_config.json)"},
	{"listen-host", NULL, 0, OPT_STRING, 0, FIELD(listen_host), 0, 0, "0.0.0.0", "HOST",
	 "address to listen on"},
	{"listen-port", NULL, 0, OPT_PORT, 0, FIELD(listen_port), 1, 65535, "8080", "PORT",
	 "port to listen on"},
	{"target-host", NULL, 0, OPT_STRING, OPT_REQUIRED, FIELD(target_host), 0, 0, NULL, "HOST",
	 "upstream host name or address, re-resolved for new connections"},
	{"target-port", NULL, 0, OPT_PORT, 0, FIELD(target_port), 1, 65535, "8000", "PORT",
	 "upstream port"},
	{"target-tls", NULL, 0, OPT_BOOL, 0, FIELD(target_tls), 0, 0, NULL, NULL,
	 "the target speaks HTTPS: TLS 1.2 or later, certificate verified against the system store"},
	{"target-tls-ca", NULL, 0, OPT_STRING, OPT_OPTIONAL, FIELD(target_tls_ca), 0, 0, NULL, "FILE",
	 "verify the target's certificate against this PEM CA file instead of the system store"},
	{"target-tls-sni", NULL, 0, OPT_STRING, OPT_OPTIONAL, FIELD(target_tls_sni), 0, 0, NULL, "NAME",
	 "server name sent (SNI) and checked in the target's certificate; none: the target host"},
	{"target-tls-insecure", NULL, 0, OPT_BOOL, 0, FIELD(target_tls_insecure), 0, 0, NULL, NULL,
	 "do not verify the target's certificate (logged as a warning at start)"},
	{"tls-cert", NULL, 0, OPT_STRING, OPT_OPTIONAL, FIELD(tls_cert), 0, 0, NULL, "FILE",
	 "serve HTTPS on the listen port with this PEM certificate (chain after it); re-read on SIGHUP"},
	{"tls-key", NULL, 0, OPT_STRING, OPT_OPTIONAL, FIELD(tls_key), 0, 0, NULL, "FILE",
	 "the PEM private key of --tls-cert; re-read on SIGHUP"},
	{"connect-timeout", NULL, 0, OPT_SECONDS, 0, FIELD(connect_timeout), 0.001, DAY, "10", "SEC",
	 "limit on establishing an upstream connection"},
	{"read-timeout", NULL, 0, OPT_SECONDS, 0, FIELD(read_timeout), 0.001, DAY, "120", "SEC",
	 "limit on waiting for the upstream: for the response head, and between any two body reads"},
	{"write-timeout", NULL, 0, OPT_SECONDS, 0, FIELD(write_timeout), 0.001, DAY, "60", "SEC",
	 "limit on a stalled write to either side"},
	{"max-concurrent-requests", "max-concurrent", 0, OPT_COUNT, 0, FIELD(max_concurrent_requests),
	 1, 1000000, "50", "N", "requests in flight to the upstream at once, across all workers"},
	{"max-queue-size", NULL, 0, OPT_COUNT, 0, FIELD(max_queue_size), 0, 1000000, "100", "N",
	 "requests waiting for a slot; beyond it, reject at once with 503"},
	{"queue-timeout", NULL, 0, OPT_SECONDS, 0, FIELD(queue_timeout), 0.001, DAY, "30", "SEC",
	 "longest wait in the queue before a 503"},
	{"queue-policy", NULL, 0, OPT_CHOICE, 0, FIELD(queue_policy), 0, 0, "adaptive", "fifo|adaptive",
	 "adaptive: refuse at once (503 queue_timeout, \"predicted\") a request whose wait, predicted from the "
	 "measured slot hold time, exceeds queue_timeout or what is left of request_timeout, and under a queue "
	 "that stays standing serve or drop those that waited past a target scaled to the hold time (CoDel); "
	 "fifo: neither", queue_policy_names},
	{"fair-queue-key", NULL, 0, OPT_STRING, 0, FIELD(fair_queue_key), 0, 0, "none", "none|ip|header:NAME",
	 "serve the queue round-robin across keys: the client's address (ip) or a request header's value; a "
	 "full queue gives the newest place of the key with the most queued to a key with fewer"},
	{"max-queue-per-key", NULL, 0, OPT_COUNT, OPT_OPTIONAL, FIELD(max_queue_per_key), 1, 1000000, NULL, "N",
	 "queued requests of one --fair-queue-key key; beyond it 503 queue_full; none: the whole queue"},
	{"pool-maxsize", NULL, 0, OPT_COUNT, 0, FIELD(pool_maxsize), 0, 100000, "50", "N",
	 "idle upstream connections kept for reuse"},
	{"pool-idle-timeout", NULL, 0, OPT_SECONDS, 0, FIELD(pool_idle_timeout), 0.001, DAY, "60",
	 "SEC", "idle upstream connections closed after this"},
	{"pool-connections", NULL, 0, OPT_COUNT, 0, FIELD(pool_connections), 0, 100000, "0", "N",
	 "upstream connections kept open and warm, at most --pool-maxsize"},
	{"max-retries", NULL, 0, OPT_COUNT, 0, FIELD(max_retries), 0, 10, "2", "N",
	 "extra attempts after a failed one"},
	{"retry-on-timeout", NULL, 0, OPT_BOOL, 0, FIELD(retry_on_timeout), 0, 0, NULL, NULL,
	 "also retry idempotent requests after a read timeout (by default a read timeout is answered 504 at "
	 "once)"},
	{"request-timeout", NULL, 0, OPT_SECONDS, 0, FIELD(request_timeout), 0, DAY, "0", "SEC",
	 "the whole request from arrival to the answer's head: queue wait, attempts and backoff; 504 "
	 "when it passes; 0 means none"},
	{"retry-backoff-factor", "retry-backoff", 0, OPT_SECONDS, 0, FIELD(retry_backoff_factor), 0,
	 DAY, "0.5", "SEC", "base of the exponential backoff between attempts (with jitter)"},
	{"retry-backoff-max", NULL, 0, OPT_SECONDS, 0, FIELD(retry_backoff_max), 0, DAY, "2", "SEC",
	 "cap of one backoff"},
	{"retry-buffer-size", NULL, 0, OPT_BYTES, 0, FIELD(retry_buffer_size), 0, 64 << 20, "65536",
	 "BYTES", "request-body bytes kept to replay a retry; a larger body is not retried once sent"},
	{"circuit-breaker-threshold", NULL, 0, OPT_COUNT, 0, FIELD(circuit_breaker_threshold), 1,
	 1000000, "5", "N", "consecutive failed requests that open the breaker"},
	{"circuit-breaker-timeout", NULL, 0, OPT_SECONDS, 0, FIELD(circuit_breaker_timeout), 0.001,
	 DAY, "60", "SEC", "time open before a half-open probe"},
	{"client-abort", NULL, 0, OPT_CHOICE, 0, FIELD(client_abort), 0, 0, "drain", "drain|cancel",
	 "a client leaving mid-request: keep the slot until the upstream's answer ends, then pool the "
	 "connection (drain), or close the upstream connection at once (cancel)", abort_names},
	{"tunnel-release-after", NULL, 0, OPT_SECONDS, 0, FIELD(tunnel_release_after), 0, DAY, "1", "SEC",
	 "a CONNECT tunnel gives its slot back once the upstream answered and it was quiet this long"},
	{"max-tunnels", NULL, 0, OPT_COUNT, 0, FIELD(max_tunnels), 1, 1000000, "1000", "N",
	 "CONNECT tunnels open at once; beyond it 503 tunnel_limit"},
	{"client-header-timeout", NULL, 0, OPT_SECONDS, 0, FIELD(client_header_timeout), 0.001, DAY,
	 "10", "SEC", "a client must send a full request head within this"},
	{"client-idle-timeout", NULL, 0, OPT_SECONDS, 0, FIELD(client_idle_timeout), 0.001, DAY, "60",
	 "SEC", "idle keep-alive client connections closed after this"},
	{"max-header-size", NULL, 0, OPT_BYTES, 0, FIELD(max_header_size), 1024, 1 << 20, "32768",
	 "BYTES", "larger request heads get 431"},
	{"max-body-size", NULL, 0, OPT_BYTES, 0, FIELD(max_body_size), 0, NO_MAX, "0", "BYTES",
	 "larger request bodies get 413; 0 means no limit"},
	{"max-connections", NULL, 0, OPT_COUNT, 0, FIELD(max_connections), 1, 1000000, "10000", "N",
	 "client connections held at once"},
	{"workers", NULL, 0, OPT_COUNT, OPT_CPUS, FIELD(workers), 1, 256, NULL, "N",
	 "event-loop threads"},
	{"admin-port", NULL, 0, OPT_PORT, OPT_OPTIONAL, FIELD(admin_port), 1, 65535, NULL, "PORT",
	 "serve the /proxy-* endpoints on this port only (then the main port forwards every path)"},
	{"reuse-port", NULL, 0, OPT_BOOL, 0, FIELD(reuse_port), 0, 0, NULL, NULL,
	 "let another process share the listen port (zero-downtime restarts); without it a port in use "
	 "stops the start"},
	{"shutdown-timeout", NULL, 0, OPT_SECONDS, 0, FIELD(shutdown_timeout), 0, DAY, "30", "SEC",
	 "on SIGTERM/SIGINT: stop accepting, drain in-flight requests up to this long, exit 0"},
	{"access-log", NULL, 0, OPT_STRING, OPT_OPTIONAL, FIELD(access_log), 0, 0, NULL, "PATH",
	 "one line per request ('-' for stdout)"},
	{"access-log-format", NULL, 0, OPT_CHOICE, 0, FIELD(access_log_format), 0, 0, "text", "text|json",
	 "access log line format: text, or one JSON object per line", access_format_names},
	{"log-level", NULL, 0, OPT_CHOICE, 0, FIELD(log_level), 0, 0, "info", "LEVEL",
	 "error, warn, info or debug", level_names},
	{"check-config", NULL, 0, OPT_FLAG, OPT_CLI_ONLY, FIELD(check_config), 0, 0, NULL, NULL,
	 "validate flags and file, print the effective settings as JSON, exit 0 (or 2 if invalid)"},
	{"redis-url", NULL, 0, OPT_STRING, OPT_OPTIONAL, FIELD(redis_url), 0, 0, NULL,
	 "URL", "share max_concurrent_requests with every replica of the same --cluster-key through Redis: "
	 "redis://[[user]:password@]host[:port][/db]"},
	{"cluster-key", NULL, 0, OPT_STRING, OPT_OPTIONAL, FIELD(cluster_key), 0, 0, NULL, "NAME",
	 "replicas with the same key share one limit; none: target_host:target_port"},
	{"cluster-lease-ttl", NULL, 0, OPT_SECONDS, 0, FIELD(cluster_lease_ttl), 0.5, 3600, "10", "SEC",
	 "lifetime of this replica's lease in Redis; a replica that stops renewing loses its slots after it"},
	{"cluster-fallback", NULL, 0, OPT_CHOICE, 0, FIELD(cluster_fallback), 0, 0, "static", "static|closed",
	 "Redis unreachable and the lease lapsed: admit floor(N / replicas last seen) (static) or nothing, "
	 "answering 503 cluster_unavailable (closed)", fallback_names},
	/* overload control (issue 15) */
	{"retry-budget-percent", NULL, 0, OPT_COUNT, 0, FIELD(retry_budget_percent), 0, 100, "20", "P",
	 "retries in progress at most P % of active + queued requests (or --retry-budget-min, whichever is "
	 "larger)"},
	{"retry-budget-min", NULL, 0, OPT_COUNT, 0, FIELD(retry_budget_min), 0, 1000000, "3", "N",
	 "retries that may always be in progress, whatever the load"},
	{"adaptive-limit", NULL, 0, OPT_BOOL, 0, FIELD(adaptive_limit), 0, 0, NULL, NULL,
	 "lower the effective limit below --max-concurrent-requests on upstream overload signals (429/503, "
	 "connect failures, timeouts, a rising time to first byte) and raise it again when they stop"},
	{"min-concurrent-requests", NULL, 0, OPT_COUNT, 0, FIELD(min_concurrent_requests), 1, 1000000, "1", "N",
	 "floor of the adaptive limit, at most --max-concurrent-requests"},
	{"help", NULL, 'h', OPT_HELP, OPT_CLI_ONLY, 0, 0, 0, NULL, NULL, "print this help and exit"},
	{"version", NULL, 'V', OPT_VERSION, OPT_CLI_ONLY, 0, 0, 0, NULL, NULL,
	 "print the version and exit"},
};
#pragma GCC diagnostic pop
/* clang-format on */

#define N_OPTIONS (sizeof options / sizeof options[0])

/* ---- small helpers ---- */

/* Writes the message into err and returns -1, so callers can `return fail(...)`. */
#define fail(err, errlen, ...) sl_errorf(-1, err, errlen, __VA_ARGS__)

static void *field(sl_config_t *cfg, const opt_t *o)
{
	return (char *)cfg + o->offset;
}

static const void *const_field(const sl_config_t *cfg, const opt_t *o)
{
	return (const char *)cfg + o->offset;
}

static bool takes_value(const opt_t *o)
{
	return o->type != OPT_FLAG && o->type != OPT_BOOL && o->type != OPT_HELP && o->type != OPT_VERSION;
}

/* Whether a row is a setting (in the file and in sl_config_to_json()):
 * everything but the actions. --config is rendered (operators want to see
 * which file is in force) but not read back. */
static bool is_setting(const opt_t *o)
{
	return takes_value(o) || o->type == OPT_BOOL;
}

/* What a valid value looks like, for "must be ..." and "needs a value (...)". */
static const char *describe(const opt_t *o, char *buf, size_t len)
{
	switch (o->type) {
	case OPT_PORT: snprintf(buf, len, "a port number between %.0f and %.0f", o->min, o->max); break;
	case OPT_COUNT: snprintf(buf, len, "an integer between %.0f and %.0f", o->min, o->max); break;
	case OPT_BYTES:
		if (o->max >= NO_MAX)
			snprintf(buf, len, "a number of bytes, %.0f or more", o->min);
		else
			snprintf(buf, len, "a number of bytes between %.0f and %.0f", o->min, o->max);
		break;
	case OPT_SECONDS: snprintf(buf, len, "a number of seconds between %g and %g", o->min, o->max); break;
	case OPT_CHOICE: {
		int n = snprintf(buf, len, "one of");
		for (size_t i = 0; o->choices[i] && n > 0 && (size_t)n < len; i++)
			n += snprintf(buf + n, len - (size_t)n, "%s %s", i ? "," : "", o->choices[i]);
		break;
	}
	case OPT_BOOL: snprintf(buf, len, "true or false"); break;
	default: snprintf(buf, len, "a non-empty string"); break;
	}
	return buf;
}

/* `key` as written in a file matches `name` with '_' in place of each '-'. */
static bool key_matches(const char *key, const char *name)
{
	for (; *key && *name; key++, name++)
		if (*key != (*name == '-' ? '_' : *name))
			return false;
	return *key == *name;
}

static const opt_t *find_by_key(const char *key)
{
	for (size_t i = 0; i < N_OPTIONS; i++)
		if (key_matches(key, options[i].name) || (options[i].alias && key_matches(key, options[i].alias)))
			return &options[i];
	return NULL;
}

static const opt_t *find_by_flag(const char *name, size_t len)
{
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const char *a = options[i].alias;
		if ((strlen(options[i].name) == len && memcmp(options[i].name, name, len) == 0) ||
		    (a && strlen(a) == len && memcmp(a, name, len) == 0))
			return &options[i];
	}
	return NULL;
}

static const opt_t *find_by_short(char c)
{
	for (size_t i = 0; i < N_OPTIONS; i++)
		if (c && options[i].short_name == c)
			return &options[i];
	return NULL;
}

/* Text the user typed, made safe for a one-line message: at most n bytes of
 * s (60 at most), control characters as '?', "..." when cut short. */
static const char *printable(const char *s, size_t n, char *buf, size_t len)
{
	size_t max = len - 4 < 60 ? len - 4 : 60, i;
	for (i = 0; i < n && s[i] && i < max; i++)
		buf[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
	strcpy(buf + i, i < n && s[i] ? "..." : "");
	return buf;
}

/* Edit distance (insertions, deletions, substitutions, and swaps of two
 * neighbours: Damerau's optimal string alignment) between a and b, where
 * '_' and '-' are the same letter; at most 64 bytes each, more is "far". */
static size_t edit_distance(const char *a, size_t la, const char *b)
{
	size_t lb = strlen(b);
	if (la > 64 || lb > 64)
		return SIZE_MAX;
	size_t d[65][65];
	for (size_t i = 0; i <= la; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= la; i++) {
		for (size_t j = 1; j <= lb; j++) {
			char x = a[i - 1] == '_' ? '-' : a[i - 1], y = b[j - 1] == '_' ? '-' : b[j - 1];
			size_t best = d[i - 1][j - 1] + (x != y);
			if (d[i - 1][j] + 1 < best)
				best = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < best)
				best = d[i][j - 1] + 1;
			if (i > 1 && j > 1 && x == (b[j - 2] == '_' ? '-' : b[j - 2]) &&
			    (a[i - 2] == '_' ? '-' : a[i - 2]) == y && d[i - 2][j - 2] + 1 < best)
				best = d[i - 2][j - 2] + 1;
			d[i][j] = best;
		}
	}
	return d[la][lb];
}

/* The option a mistyped name most likely meant, or NULL: the nearest name or
 * alias within a third of its length (at least 1, at most 3 edits), or the
 * one it starts (a name cut short, as "--max-queue"). */
static const opt_t *nearest_option(const char *typed, size_t len)
{
	const opt_t *best = NULL;
	size_t best_d = SIZE_MAX;
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const char *names[2] = {options[i].name, options[i].alias};
		for (int k = 0; k < 2 && names[k]; k++) {
			size_t d = edit_distance(typed, len, names[k]);
			char head[65];
			if (len >= 4 && len < strlen(names[k]) && len < sizeof head) {
				snprintf(head, sizeof head, "%.*s", (int)len, names[k]);
				if (edit_distance(typed, len, head) == 0 && d > 1)
					d = 1; /* a name cut short: as near as one typo */
			}
			if (d < best_d) {
				best_d = d;
				best = &options[i];
			}
		}
	}
	size_t limit = len / 3 < 1 ? 1 : len / 3 > 3 ? 3 : len / 3;
	return best_d <= limit ? best : NULL;
}

/* " (did you mean --x?)" for a mistyped flag, or " (see --help)". */
static const char *suggest_flag(const char *typed, size_t len, char *buf, size_t buflen)
{
	const opt_t *o = nearest_option(typed, len);
	if (o)
		snprintf(buf, buflen, "; did you mean --%s?", o->name);
	else
		snprintf(buf, buflen, " (see --help)");
	return buf;
}

/* The same for a key of the config file, spelled with '_'. */
static const char *suggest_key(const char *typed, char *buf, size_t buflen)
{
	const opt_t *o = nearest_option(typed, strlen(typed));
	if (!o || (o->flags & OPT_CLI_ONLY)) {
		snprintf(buf, buflen, " (see --help; keys are the option names with '_' for '-')");
		return buf;
	}
	int n = snprintf(buf, buflen, "; did you mean \"");
	for (const char *p = o->name; *p && (size_t)n + 4 < buflen; p++)
		buf[n++] = *p == '-' ? '_' : *p;
	snprintf(buf + n, buflen - (size_t)n, "\"?");
	return buf;
}

/* The line of text on which "key": appears first, or 0 if not found
 * (jansson reports no positions for valid input). */
static int line_of_key(const char *text, size_t len, const char *key)
{
	size_t klen = strlen(key);
	int line = 1;
	for (size_t i = 0; i < len; i++) {
		if (text[i] == '\n')
			line++;
		else if (text[i] == '"' && i + klen + 1 < len && memcmp(text + i + 1, key, klen) == 0 &&
		         text[i + 1 + klen] == '"') {
			size_t j = i + klen + 2;
			while (j < len && (text[j] == ' ' || text[j] == '\t' || text[j] == '\r' || text[j] == '\n'))
				j++;
			if (j < len && text[j] == ':')
				return line;
		}
	}
	return 0;
}

/* ---- storing one value: shared by defaults, argv and the file ---- */

/* Each store_* returns 0, or -1 when the value is out of range; the caller
 * words the message, because only it knows where the value came from. */

static int store_integer(sl_config_t *cfg, const opt_t *o, long long v)
{
	if ((double)v < o->min || (double)v > o->max)
		return -1;
	if (o->type == OPT_BYTES)
		*(int64_t *)field(cfg, o) = v;
	else
		*(int *)field(cfg, o) = (int)v;
	return 0;
}

static int store_seconds(sl_config_t *cfg, const opt_t *o, double v)
{
	if (!isfinite(v) || v < o->min || v > o->max)
		return -1;
	*(double *)field(cfg, o) = v;
	return 0;
}

static int store_string(sl_config_t *cfg, const opt_t *o, const char *s)
{
	if (s[0] == '\0')
		return -1;
	/* The value ends up in JSON (metrics, --check-config), which must be UTF-8;
	 * jansson checks that while building the string. */
	json_t *probe = json_string(s);
	if (!probe)
		return -1;
	json_decref(probe);
	char *copy = strdup(s);
	if (!copy)
		return -1;
	char **slot = field(cfg, o);
	free(*slot);
	*slot = copy;
	return 0;
}

/* Enums are stored as int (every sl_*_t enum of config.h is int-sized). */
static int store_choice(sl_config_t *cfg, const opt_t *o, const char *s)
{
	for (int i = 0; o->choices[i]; i++)
		if (strcmp(s, o->choices[i]) == 0) {
			*(int *)field(cfg, o) = i;
			return 0;
		}
	return -1;
}

/* Parses command-line text (or a row's default) as the value of o. Whole
 * text only: "10s" or " 10" is refused rather than half-read. */
static int store_text(sl_config_t *cfg, const opt_t *o, const char *text)
{
	char *end;
	switch (o->type) {
	case OPT_PORT:
	case OPT_COUNT:
	case OPT_BYTES: {
		if (!(text[0] >= '0' && text[0] <= '9') && text[0] != '-' && text[0] != '+')
			return -1;
		errno = 0;
		long long v = strtoll(text, &end, 10);
		if (errno != 0 || *end != '\0')
			return -1;
		return store_integer(cfg, o, v);
	}
	case OPT_SECONDS: {
		/* Plain decimal notation only: strtod would also take "inf", "nan"
		 * and hexadecimal, none of which anyone means as a timeout. */
		if (text[0] == '\0' || strspn(text, "0123456789.eE+-") != strlen(text))
			return -1;
		double v = strtod(text, &end);
		if (*end != '\0')
			return -1;
		return store_seconds(cfg, o, v);
	}
	case OPT_CHOICE: return store_choice(cfg, o, text);
	case OPT_CONFIG:
	case OPT_STRING: return store_string(cfg, o, text);
	default: return -1;
	}
}

/* Stores a value from the config file: integers for counts, bytes and ports,
 * any number for durations, strings for the rest. null is "none", and only
 * for the options whose default is none, so --check-config output can be
 * read back as a config file. */
static int store_json(sl_config_t *cfg, const opt_t *o, json_t *v)
{
	if (json_is_null(v) && (o->flags & OPT_OPTIONAL)) {
		if (o->type == OPT_STRING) {
			char **slot = field(cfg, o);
			free(*slot);
			*slot = NULL;
		} else {
			*(int *)field(cfg, o) = 0;
		}
		return 0;
	}
	switch (o->type) {
	case OPT_PORT:
	case OPT_COUNT:
	case OPT_BYTES: return json_is_integer(v) ? store_integer(cfg, o, json_integer_value(v)) : -1;
	case OPT_SECONDS: return json_is_number(v) ? store_seconds(cfg, o, json_number_value(v)) : -1;
	case OPT_CHOICE: return json_is_string(v) ? store_choice(cfg, o, json_string_value(v)) : -1;
	case OPT_BOOL:
		if (!json_is_boolean(v))
			return -1;
		*(bool *)field(cfg, o) = json_is_true(v);
		return 0;
	case OPT_STRING: return json_is_string(v) ? store_string(cfg, o, json_string_value(v)) : -1;
	default: return -1;
	}
}

/* ---- the layers ---- */

static int apply_defaults(sl_config_t *cfg, char *err, size_t errlen)
{
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const opt_t *o = &options[i];
		if (o->flags & OPT_CPUS) {
			unsigned n = uv_available_parallelism();
			*(int *)field(cfg, o) = n < 1 ? 1 : n > (unsigned)o->max ? (int)o->max : (int)n;
		} else if (o->def && store_text(cfg, o, o->def) < 0) {
			return fail(err, errlen, "built-in default \"%s\" of --%s is invalid", o->def, o->name);
		}
	}
	return 0;
}

/* Reads the whole file into a NUL-terminated buffer (caller frees). Our own
 * read loop, not json_load_file(), so a directory or an I/O error is reported
 * with its strerror instead of as a JSON syntax error at end of file. */
static char *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fail(err, errlen, "cannot read config file %s: %s", path, strerror(errno));
		return NULL;
	}
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	int error = buf ? 0 : ENOMEM;
	while (!error) {
		errno = 0;
		n += fread(buf + n, 1, cap - n - 1, f);
		if (ferror(f))
			error = errno ? errno : EIO;
		else if (feof(f))
			break;
		else if (n == cap - 1) {
			char *bigger = realloc(buf, cap * 2);
			if (!bigger)
				error = ENOMEM;
			else {
				buf = bigger;
				cap *= 2;
			}
		}
	}
	fclose(f);
	if (error) {
		free(buf);
		fail(err, errlen, "cannot read config file %s: %s", path, strerror(error));
		return NULL;
	}
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* A JSON value as the user wrote it, for "got ..." in messages. */
static void show_json(json_t *v, char *buf, size_t len)
{
	char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	if (!text) {
		snprintf(buf, len, "an unprintable value");
		return;
	}
	if (strlen(text) > 60)
		snprintf(buf, len, "%.57s...", text);
	else
		snprintf(buf, len, "%s", text);
	free(text);
}

static int load_file(sl_config_t *cfg, const char *path, bool *set, char *err, size_t errlen)
{
	free(cfg->config_file);
	cfg->config_file = strdup(path);
	if (!cfg->config_file)
		return fail(err, errlen, "out of memory reading config file %s", path);
	size_t len;
	char *text = read_file(path, &len, err, errlen);
	if (!text)
		return -1;
	json_error_t jerr;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		free(text);
		return fail(err, errlen, "config file %s: invalid JSON at line %d, column %d: %s", path, jerr.line,
		            jerr.column, jerr.text);
	}

	int rc = 0;
	const char *seen_key[N_OPTIONS] = {0};
	const char *key;
	json_t *value;
	if (!json_is_object(root)) {
		rc = fail(err, errlen, "config file %s: the top level must be a JSON object", path);
		goto done;
	}
	json_object_foreach(root, key, value)
	{
		const opt_t *o = find_by_key(key);
		if (!o) {
			char shown[64], hint[96], where[32] = "";
			int line = line_of_key(text, len, key);
			if (line > 0)
				snprintf(where, sizeof where, " at line %d", line);
			rc = fail(err, errlen, "config file %s: unknown key \"%s\"%s%s", path,
			          printable(key, SIZE_MAX, shown, sizeof shown), where,
			          suggest_key(key, hint, sizeof hint));
			goto done;
		}
		if (o->flags & OPT_CLI_ONLY) {
			rc = fail(err, errlen, "config file %s: \"%s\" can only be given on the command line", path,
			          key);
			goto done;
		}
		/* An alias and its option in one object: JSON keys have no order,
		 * so neither can be said to override the other. */
		size_t idx = (size_t)(o - options);
		if (seen_key[idx]) {
			rc = fail(err, errlen, "config file %s: \"%s\" and \"%s\" set the same option", path,
			          seen_key[idx], key);
			goto done;
		}
		seen_key[idx] = key;
		set[idx] = true;
		if (store_json(cfg, o, value) < 0) {
			char want[96], got[64], flag[64];
			snprintf(flag, sizeof flag, "%s", key);
			for (char *p = flag; *p; p++)
				if (*p == '_')
					*p = '-';
			show_json(value, got, sizeof got);
			rc = fail(err, errlen, "config file %s: %s (--%s) must be %s, got %s", path, key, flag,
			          describe(o, want, sizeof want), got);
			goto done;
		}
	}
done:
	json_decref(root);
	free(text);
	return rc;
}

/* One option as written on the command line. */
typedef struct {
	const opt_t *opt;
	const char *spelled; /* as typed, e.g. "--max-concurrent", without "=value" */
	int spelled_len;
	const char *value; /* NULL for options that take none */
} cli_arg_t;

/* Reads the option at argv[*i], and its value, which is either after '=' or
 * the next argument. Advances *i past both even on error, so a caller can
 * keep scanning for --help. Returns 0, or -1 with err set. */
static int next_cli_arg(int argc, char **argv, int *i, cli_arg_t *a, char *err, size_t errlen)
{
	const char *arg = argv[(*i)++];
	char shown[64];
	memset(a, 0, sizeof *a);
	a->spelled = arg;
	a->spelled_len = (int)strlen(arg);
	if (arg[0] == '-' && arg[1] != '-' && arg[1] != '\0') {
		a->opt = arg[2] == '\0' ? find_by_short(arg[1]) : NULL;
		if (!a->opt)
			return fail(err, errlen, "unknown option %s (see --help)",
			            printable(arg, SIZE_MAX, shown, sizeof shown));
		return 0;
	}
	if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0')
		return fail(err, errlen, "unexpected argument \"%s\": options start with -- (see --help)",
		            printable(arg, SIZE_MAX, shown, sizeof shown));
	const char *eq = strchr(arg, '=');
	if (eq)
		a->spelled_len = (int)(eq - arg);
	a->opt = find_by_flag(arg + 2, (size_t)a->spelled_len - 2);
	if (!a->opt) {
		char hint[96];
		return fail(err, errlen, "unknown option %s%s",
		            printable(arg, (size_t)a->spelled_len, shown, sizeof shown),
		            suggest_flag(arg + 2, (size_t)a->spelled_len - 2, hint, sizeof hint));
	}
	if (!takes_value(a->opt)) {
		if (eq)
			return fail(err, errlen, "%.*s takes no value", a->spelled_len, arg);
		return 0;
	}
	if (eq) {
		a->value = eq + 1;
		return 0;
	}
	/* "--read-timeout --workers 4" is a forgotten value, not a timeout of
	 * "--workers"; no valid value starts with "--". */
	if (*i >= argc || strncmp(argv[*i], "--", 2) == 0) {
		char want[96];
		return fail(err, errlen, "%s needs a value (%s)", arg, describe(a->opt, want, sizeof want));
	}
	a->value = argv[(*i)++];
	return 0;
}

typedef struct {
	bool help, version;
	const char *config; /* the last --config, or NULL */
} cli_scan_t;

/* Checks the shape of argv (known options, values present, no positional
 * arguments) and picks out --help, --version and --config. Reports the first
 * problem but keeps scanning, since --help should work on any command line. */
static int scan_cli(int argc, char **argv, cli_scan_t *s, char *err, size_t errlen)
{
	int rc = 0;
	char scratch[256];
	memset(s, 0, sizeof *s);
	for (int i = 1; i < argc;) {
		cli_arg_t a;
		if (next_cli_arg(argc, argv, &i, &a, rc ? scratch : err, rc ? sizeof scratch : errlen) < 0) {
			rc = -1;
			continue;
		}
		if (a.opt->type == OPT_HELP)
			s->help = true;
		else if (a.opt->type == OPT_VERSION)
			s->version = true;
		else if (a.opt->type == OPT_CONFIG)
			s->config = a.value;
	}
	return rc;
}

static int apply_cli(sl_config_t *cfg, int argc, char **argv, bool *set, char *err, size_t errlen)
{
	for (int i = 1; i < argc;) {
		cli_arg_t a;
		if (next_cli_arg(argc, argv, &i, &a, err, errlen) < 0)
			return -1;
		set[a.opt - options] = true;
		switch (a.opt->type) {
		case OPT_CONFIG: /* already read, before every other value */
		case OPT_HELP:
		case OPT_VERSION: break;
		case OPT_FLAG:
		case OPT_BOOL: *(bool *)field(cfg, a.opt) = true; break;
		default:
			if (store_text(cfg, a.opt, a.value) < 0) {
				char want[96], shown[64];
				return fail(err, errlen, "%.*s must be %s, got \"%s\"", a.spelled_len, a.spelled,
				            describe(a.opt, want, sizeof want),
				            printable(a.value, SIZE_MAX, shown, sizeof shown));
			}
		}
	}
	return 0;
}

/* The target as people write it: a host name or address, "host:port",
 * "[v6]:port", or an http:// URL without a path. Rewrites target_host to the
 * bare host and takes the port it names, which a --target-port given too must
 * agree with (set_port: --target-port was given). */
static int normalize_target(sl_config_t *cfg, bool set_port, char *err, size_t errlen)
{
	char *t = cfg->target_host, shown[64], *end;
	const char *host = t, *port = NULL;
	size_t host_len;
	printable(t, SIZE_MAX, shown, sizeof shown);
	char *scheme = strstr(t, "://");
	if (scheme) {
		bool https = (size_t)(scheme - t) == 5 && strncasecmp(t, "https", 5) == 0;
		if (!https && ((size_t)(scheme - t) != 4 || strncasecmp(t, "http", 4) != 0))
			return fail(
			    err, errlen,
			    "--target-host \"%s\": sluice forwards HTTP, so the schemes it takes are http:// and "
			    "https://",
			    shown);
		if (https)
			cfg->target_tls = true;
		host = scheme + 3;
		char *slash = strchr(host, '/');
		if (slash) {
			if (slash[1] != '\0') {
				char auth[64];
				return fail(err, errlen,
				            "--target-host \"%s\" has a path, but each request keeps its own path: use "
				            "--target-host %s",
				            shown, printable(host, (size_t)(slash - host), auth, sizeof auth));
			}
			*slash = '\0';
		}
	}
	if (strpbrk(host, "/@?#") || host[0] == '\0')
		return fail(err, errlen,
		            "--target-host \"%s\" is not a host: give a name or address, \"host:port\" or "
		            "\"http://host:port\"",
		            shown);
	if (host[0] == '[') { /* [v6] or [v6]:port */
		const char *close = strchr(host, ']');
		if (!close || (close[1] != '\0' && close[1] != ':'))
			return fail(err, errlen,
			            "--target-host \"%s\": an IPv6 address in brackets is [address] or [address]:port",
			            shown);
		port = close[1] == ':' ? close + 2 : NULL;
		host_len = (size_t)(close - host - 1);
		host++;
	} else {
		const char *colon = strchr(host, ':');
		if (colon && !strchr(colon + 1, ':')) { /* one colon: host:port; more: a bare IPv6 address */
			port = colon + 1;
			host_len = (size_t)(colon - host);
		} else {
			host_len = strlen(host);
		}
	}
	if (host_len == 0)
		return fail(err, errlen, "--target-host \"%s\" names no host", shown);
	if (port) {
		errno = 0;
		long p = strtol(port, &end, 10);
		if (port[0] < '0' || port[0] > '9' || *end != '\0' || errno || p < 1 || p > 65535)
			return fail(err, errlen,
			            "--target-host \"%s\": the port after ':' must be a number between 1 and 65535",
			            shown);
		if (set_port && p != cfg->target_port)
			return fail(err, errlen,
			            "--target-host \"%s\" names port %ld but --target-port is %d: give the port once",
			            shown, p, cfg->target_port);
		cfg->target_port = (int)p;
	} else if (scheme && !set_port) {
		cfg->target_port = cfg->target_tls ? 443 : 80; /* no port: the scheme's, as everywhere else */
	}
	if (host == t && host_len == strlen(t))
		return 0;
	memmove(t, host, host_len);
	t[host_len] = '\0';
	return 0;
}

/* --fair-queue-key: none, ip or header:NAME, NAME a header name (RFC 9110
 * §5.1 token). Sets fair_key_kind and fair_key_header. */
static int check_fair_key(sl_config_t *cfg, char *err, size_t errlen)
{
	const char *v = cfg->fair_queue_key;
	cfg->fair_key_header = NULL;
	if (strcmp(v, "none") == 0) {
		cfg->fair_key_kind = SL_FAIR_NONE;
		return 0;
	}
	if (strcmp(v, "ip") == 0) {
		cfg->fair_key_kind = SL_FAIR_IP;
		return 0;
	}
	static const char tchar[] = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
	if (strncmp(v, "header:", 7) == 0 && v[7] != '\0' && strspn(v + 7, tchar) == strlen(v + 7)) {
		cfg->fair_key_kind = SL_FAIR_HEADER;
		cfg->fair_key_header = v + 7;
		return 0;
	}
	char shown[64];
	return fail(err, errlen,
	            "--fair-queue-key must be none, ip or header:NAME with NAME a header name (e.g. "
	            "header:X-Api-Key), got \"%s\"",
	            printable(v, SIZE_MAX, shown, sizeof shown));
}

/* The rules that involve more than one option, checked on the merged result
 * so it does not matter which layer set which half. */
static int check_across(sl_config_t *cfg, const bool *set, char *err, size_t errlen)
{
	if (!cfg->target_host)
		return fail(err, errlen, "--target-host is required (the upstream to forward to)");
	size_t port_row = 0;
	while (options[port_row].offset != FIELD(target_port) || options[port_row].type != OPT_PORT)
		port_row++;
	if (normalize_target(cfg, set[port_row], err, errlen) < 0)
		return -1;
	if (cfg->pool_connections > cfg->pool_maxsize)
		return fail(err, errlen, "--pool-connections (%d) must not exceed --pool-maxsize (%d)",
		            cfg->pool_connections, cfg->pool_maxsize);
	if (cfg->min_concurrent_requests > cfg->max_concurrent_requests)
		return fail(err, errlen,
		            "--min-concurrent-requests (%d) must not exceed --max-concurrent-requests (%d): lower it, "
		            "or raise the ceiling",
		            cfg->min_concurrent_requests, cfg->max_concurrent_requests);
	if (cfg->redis_url) {
		char *host, *user, *password;
		int port, db;
		if (sl_cluster_parse_url(cfg->redis_url, &host, &port, &user, &password, &db, err, errlen) < 0)
			return -1;
		free(host);
		free(user);
		free(password);
	}
	if (check_fair_key(cfg, err, errlen) < 0)
		return -1;
	if (cfg->admin_port != 0 && cfg->admin_port == cfg->listen_port)
		return fail(err, errlen, "--admin-port must differ from --listen-port (both are %d)", cfg->admin_port);
	if (!cfg->target_tls && (cfg->target_tls_ca || cfg->target_tls_sni || cfg->target_tls_insecure))
		return fail(err, errlen, "--%s applies to an HTTPS target: add --target-tls",
		            cfg->target_tls_ca    ? "target-tls-ca"
		            : cfg->target_tls_sni ? "target-tls-sni"
		                                  : "target-tls-insecure");
	if (cfg->target_tls_ca && cfg->target_tls_insecure)
		return fail(err, errlen,
		            "--target-tls-ca and --target-tls-insecure contradict each other: verify "
		            "against the CA, or not at all");
	if ((cfg->tls_cert == NULL) != (cfg->tls_key == NULL))
		return fail(err, errlen,
		            "--%s needs --%s too: HTTPS on the listen port takes both the certificate and "
		            "its key",
		            cfg->tls_cert ? "tls-cert" : "tls-key", cfg->tls_cert ? "tls-key" : "tls-cert");
	return 0;
}

/* Defaults, then the file (NULL for none), then argv, then the cross-checks.
 * On success *cfg owns its strings; on failure it is released and zeroed. */
static int build(sl_config_t *cfg, const char *file, int argc, char **argv, char *err, size_t errlen)
{
	memset(cfg, 0, sizeof *cfg);
	bool set[N_OPTIONS] = {false}; /* given in the file or on the command line */
	if (apply_defaults(cfg, err, errlen) < 0 || (file && load_file(cfg, file, set, err, errlen) < 0) ||
	    apply_cli(cfg, argc, argv, set, err, errlen) < 0 || check_across(cfg, set, err, errlen) < 0) {
		sl_config_dispose(cfg);
		return -1;
	}
	return 0;
}

/* ---- output ---- */

#define HELP_COLUMN 34
#define HELP_WIDTH 80

/* Length of the next line of text: as much as fits in room, broken at a space
 * outside "[...]" so a default is never split from its value. */
static size_t line_length(const char *text, size_t room)
{
	size_t n = strlen(text), cut = 0;
	if (n <= room)
		return n;
	int depth = 0;
	for (size_t i = 0; i <= room; i++) {
		if (text[i] == '[')
			depth++;
		else if (text[i] == ']')
			depth--;
		else if (text[i] == ' ' && depth == 0)
			cut = i;
	}
	return cut ? cut : room;
}

/* Prints "  left   text", the text word-wrapped in its own column. */
static void print_wrapped(FILE *out, const char *left, const char *text)
{
	int used = fprintf(out, "  %s", left);
	if (used >= HELP_COLUMN - 1) {
		fputc('\n', out);
		used = 0;
	}
	fprintf(out, "%*s", HELP_COLUMN - used, "");
	while (*text) {
		size_t n = line_length(text, HELP_WIDTH - HELP_COLUMN);
		fprintf(out, "%.*s\n", (int)n, text);
		text += n;
		while (*text == ' ')
			text++;
		if (*text)
			fprintf(out, "%*s", HELP_COLUMN, "");
	}
}

static void print_help(FILE *out)
{
	fputs("Usage: sluice --target-host HOST [OPTION]...\n"
	      "Forward HTTP/1.1 to one slow or fragile upstream and keep it healthy under load:\n"
	      "pooled connections, bounded concurrency and queue, retries, a circuit breaker.\n"
	      "\n"
	      "Every option that takes a value, except --config, may also be set in the JSON\n"
	      "config file, named with '_' for '-' (\"max_queue_size\"); the command line\n"
	      "overrides the file. SEC values are seconds and accept fractions (0.5).\n"
	      "\n"
	      "Options:\n",
	      out);
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const opt_t *o = &options[i];
		char left[64], text[512];
		int n = o->short_name ? snprintf(left, sizeof left, "-%c, --%s", o->short_name, o->name)
		                      : snprintf(left, sizeof left, "--%s", o->name);
		if (o->arg)
			snprintf(left + n, sizeof left - (size_t)n, " %s", o->arg);
		n = snprintf(text, sizeof text, "%s", o->help);
		if (o->alias)
			n += snprintf(text + n, sizeof text - (size_t)n, "; alias --%s", o->alias);
		if (o->def)
			snprintf(text + n, sizeof text - (size_t)n, " [default %s]", o->def);
		else if (o->flags & OPT_CPUS)
			snprintf(text + n, sizeof text - (size_t)n, " [default: the number of CPUs, %u here]",
			         uv_available_parallelism());
		else if (o->flags & OPT_REQUIRED)
			snprintf(text + n, sizeof text - (size_t)n, " [required]");
		else if (o->flags & OPT_OPTIONAL)
			snprintf(text + n, sizeof text - (size_t)n, " [default none]");
		print_wrapped(out, left, text);
	}
}

/* --check-config's report. Reals are printed with 15 significant digits so
 * 0.1 reads "0.1", which still parses back to the same double. */
static void print_effective(const sl_config_t *cfg)
{
	json_t *obj = sl_config_to_json(cfg);
	char *text = obj ? json_dumps(obj, JSON_INDENT(2) | JSON_REAL_PRECISION(15)) : NULL;
	/* stdout holds the JSON alone, so `--check-config | jq` works */
	printf("%s\n", text ? text : "{}");
	free(text);
	json_decref(obj);
	fflush(stdout);
	fputs("sluice: configuration OK\n", stderr);
}

/* ---- public interface ---- */

static sl_config_files_check_fn files_check;

void sl_config_set_files_check(sl_config_files_check_fn fn)
{
	files_check = fn;
}

sl_config_result_t sl_config_load(sl_config_t *cfg, int argc, char **argv, char *err, size_t errlen)
{
	cli_scan_t scan;
	int rc = scan_cli(argc, argv, &scan, err, errlen);
	memset(cfg, 0, sizeof *cfg);
	if (scan.help || scan.version) {
		if (scan.help)
			print_help(stdout);
		else
			printf("sluice %s\n", SL_VERSION);
		fflush(stdout);
		if (errlen > 0)
			err[0] = '\0';
		return SL_CONFIG_EXIT;
	}
	if (rc < 0 || build(cfg, scan.config, argc, argv, err, errlen) < 0)
		return SL_CONFIG_ERROR;
	if (!cfg->check_config)
		return SL_CONFIG_RUN;
	if (files_check && files_check(cfg, err, errlen) < 0) {
		sl_config_dispose(cfg);
		return SL_CONFIG_ERROR;
	}
	print_effective(cfg);
	sl_config_dispose(cfg);
	if (errlen > 0)
		err[0] = '\0';
	return SL_CONFIG_EXIT;
}

int sl_config_reload(const sl_config_t *cfg, int argc, char **argv, sl_config_t *out, char *err, size_t errlen)
{
	cli_scan_t scan;
	sl_config_t fresh;
	if (scan_cli(argc, argv, &scan, err, errlen) < 0 ||
	    build(&fresh, cfg->config_file, argc, argv, err, errlen) < 0)
		return -1;
	*out = fresh;
	return 0;
}

json_t *sl_config_to_json(const sl_config_t *cfg)
{
	json_t *obj = json_object();
	if (!obj)
		return NULL;
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const opt_t *o = &options[i];
		if (!is_setting(o))
			continue;
		char key[64];
		snprintf(key, sizeof key, "%s", o->name);
		for (char *p = key; *p; p++)
			if (*p == '-')
				*p = '_';
		const void *v = const_field(cfg, o);
		json_t *j;
		switch (o->type) {
		case OPT_PORT:
		case OPT_COUNT:
			j = (o->flags & OPT_OPTIONAL) && *(const int *)v == 0 ? json_null()
			                                                      : json_integer(*(const int *)v);
			break;
		case OPT_BYTES: j = json_integer(*(const int64_t *)v); break;
		case OPT_SECONDS: j = json_real(*(const double *)v); break;
		case OPT_CHOICE: j = json_string(o->choices[*(const int *)v]); break;
		case OPT_BOOL: j = json_boolean(*(const bool *)v); break;
		default: j = *(char *const *)v ? json_string(*(char *const *)v) : json_null(); break;
		}
		if (json_object_set_new(obj, key, j) < 0) {
			json_decref(obj);
			return NULL;
		}
	}
	return obj;
}

void sl_config_dispose(sl_config_t *cfg)
{
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const opt_t *o = &options[i];
		if (o->type == OPT_STRING || o->type == OPT_CONFIG) {
			char **slot = field(cfg, o);
			free(*slot);
			*slot = NULL;
		}
	}
}
