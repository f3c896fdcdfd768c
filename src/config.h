/* config.h — sluice's settings: command-line flags and the JSON config file
 * folded into one validated struct.
 *
 * Every option of SPEC §2 has one row in a table inside config.c (name, type,
 * range, default, help). The same table drives the command-line parser, the
 * JSON file reader, --help, --check-config and the `config` object that the
 * metrics endpoint renders, so a new option is added in exactly one place.
 *
 * Precedence: built-in defaults < JSON file (--config) < command line.
 */
#ifndef SL_CONFIG_H
#define SL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

typedef enum { SL_LOG_ERROR, SL_LOG_WARN, SL_LOG_INFO, SL_LOG_DEBUG } sl_log_level_t;

/* --client-abort: what a client leaving mid-request does to its upstream
 * exchange. */
typedef enum {
	SL_ABORT_DRAIN, /* keep the slot, read and drop the answer, pool the connection */
	SL_ABORT_CANCEL /* close the upstream connection and release the slot at once */
} sl_abort_t;

/* --cluster-fallback */
typedef enum { SL_FALLBACK_STATIC, SL_FALLBACK_CLOSED } sl_fallback_t;

/* --fair-queue-key, parsed */
typedef enum { SL_FAIR_NONE, SL_FAIR_IP, SL_FAIR_HEADER } sl_fair_key_t;

/* --access-log-format */
typedef enum { SL_ACCESS_TEXT, SL_ACCESS_JSON } sl_access_format_t;

typedef struct sl_config {
	char *config_file; /* --config, NULL if none */
	char *listen_host;
	int listen_port;
	char *target_host; /* required */
	int target_port;
	bool target_tls;          /* the target speaks HTTPS */
	char *target_tls_ca;      /* PEM CA file; NULL: the system store */
	char *target_tls_sni;     /* SNI and the name checked; NULL: target_host */
	bool target_tls_insecure; /* no certificate verification */
	char *tls_cert, *tls_key; /* PEM files: HTTPS on the listen port; NULL: plain HTTP */
	double connect_timeout;   /* all durations in seconds, fractions allowed */
	double read_timeout;
	double write_timeout;
	int max_concurrent_requests; /* alias --max-concurrent */
	int max_queue_size;
	double queue_timeout;
	int queue_policy;            /* sl_queue_policy_t (queue.h): fifo, adaptive */
	char *fair_queue_key;        /* "none", "ip" or "header:NAME", as given */
	sl_fair_key_t fair_key_kind; /* ... parsed by the checks */
	const char *fair_key_header; /* SL_FAIR_HEADER: NAME, inside fair_queue_key */
	int max_queue_per_key;       /* 0: the whole queue */
	int pool_maxsize;
	double pool_idle_timeout;
	int pool_connections; /* at most pool_maxsize */
	int max_retries;
	bool retry_on_timeout;       /* retry (idempotent requests) after a read timeout too */
	double retry_backoff_factor; /* alias --retry-backoff */
	double retry_backoff_max;
	int64_t retry_buffer_size; /* bytes of request body kept for replay */
	int circuit_breaker_threshold;
	double circuit_breaker_timeout;
	double request_timeout; /* arrival to answer head: queue, attempts, backoff; 0 = none */
	sl_abort_t client_abort;
	double tunnel_release_after; /* a quiet tunnel gives its slot back after this */
	int max_tunnels;             /* CONNECT tunnels open at once */
	double client_header_timeout;
	double client_idle_timeout;
	int64_t max_header_size;
	int64_t max_body_size; /* 0 = no limit */
	int max_connections;
	int workers;     /* default: online CPUs */
	int admin_port;  /* 0 = none: /proxy-* served on the main port */
	bool reuse_port; /* share listen_port with another process on purpose */
	double shutdown_timeout;
	char *access_log; /* NULL = none, "-" = stdout */
	sl_access_format_t access_log_format;
	char *redis_url;          /* NULL: no cluster; the limit is this process's alone */
	char *cluster_key;        /* NULL: target_host:target_port */
	double cluster_lease_ttl; /* seconds */
	sl_fallback_t cluster_fallback;
	/* overload control (issue 15): the retry budget and the adaptive limit */
	int retry_budget_percent;    /* retries in progress at most this % of active + queued ... */
	int retry_budget_min;        /* ... or this many, whichever is larger */
	bool adaptive_limit;         /* lower the effective limit below max_concurrent_requests on overload */
	int min_concurrent_requests; /* the adaptive limit's floor, at most max_concurrent_requests */
	sl_log_level_t log_level;
	bool check_config;
} sl_config_t;

/* What sl_config_load() asks the caller to do next. */
typedef enum {
	SL_CONFIG_RUN = 0,  /* settings valid: start the proxy */
	SL_CONFIG_EXIT = 1, /* --help/--version/--check-config printed: exit 0 */
	SL_CONFIG_ERROR = 2 /* err holds one sentence naming the problem: exit 2 */
} sl_config_result_t;

/* Fills *cfg from defaults, then the --config file (if given), then argv.
 * Prints --help/--version/--check-config output to stdout itself. On error
 * writes a single sentence (no trailing newline) naming the option into err.
 * *cfg need not be initialised. On SL_CONFIG_RUN cfg owns its strings; release
 * them with sl_config_dispose(). On EXIT and ERROR nothing is left to release
 * (disposing anyway is harmless: dispose is idempotent). */
sl_config_result_t sl_config_load(sl_config_t *cfg, int argc, char **argv, char *err, size_t errlen);

/* What --check-config reads beyond flags and the config file: the files the
 * settings name (TLS certificate, key, CA), read as the start would read
 * them. The program that links the module reading them sets it before
 * sl_config_load (config.c stays free of OpenSSL); it returns 0, or -1 with
 * one sentence in err, and --check-config then exits 2. NULL: nothing more. */
typedef int (*sl_config_files_check_fn)(const sl_config_t *cfg, char *err, size_t errlen);
void sl_config_set_files_check(sl_config_files_check_fn fn);

/* Re-reads cfg->config_file for SIGHUP into *out (not cfg: the workers may
 * still read it), keeping the command-line values (they still override the
 * file). Returns 0, or -1 with err set and *out untouched. The caller
 * disposes the old settings once nobody reads them. */
int sl_config_reload(const sl_config_t *cfg, int argc, char **argv, sl_config_t *out, char *err, size_t errlen);

/* The effective settings as a JSON object keyed like the config file
 * (listen_port, target_host, ...). New reference, caller decrefs. */
json_t *sl_config_to_json(const sl_config_t *cfg);

/* Frees the strings owned by cfg. */
void sl_config_dispose(sl_config_t *cfg);

/* Seconds (double) to whole milliseconds for libuv timers, rounding up so a
 * positive duration never becomes 0. Called on every timer re-arm, hence
 * inline and libm-free: the 0.999999 (rather than 1) absorbs binary rounding,
 * so 1.1 s (1100.0000000000002 ms) stays 1100. */
static inline uint64_t sl_config_ms(double seconds)
{
	if (!(seconds > 0)) /* also NaN */
		return 0;
	if (seconds >= 1e12)
		return (uint64_t)1e15;
	uint64_t ms = (uint64_t)(seconds * 1000.0 + 0.999999);
	return ms ? ms : 1;
}

#endif
