/* log.h — leveled diagnostics to stderr, one line each, safe from any thread.
 * The level is a process-wide setting; messages above it cost one compare. */
#ifndef SL_LOG_H
#define SL_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

extern sl_log_level_t sl_log_level;

void sl_log_write(sl_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define SL_TIMESTAMP_LEN 24 /* "2026-11-27T10:00:00.123Z" */

/* Writes the current UTC time as ISO 8601 with milliseconds into out
 * (SL_TIMESTAMP_LEN + 1 bytes, NUL-terminated); returns SL_TIMESTAMP_LEN.
 * The date and time of day are formatted once per second per thread. Any
 * thread. */
size_t sl_timestamp(char *out);

/* A rate limit for one kind of line: at most one a second, process-wide,
 * with a count of the lines held back. Zero-initialised. */
typedef struct sl_log_limit {
	uint64_t second;    /* the second (of now_ms / 1000) of the last line written, +1 (atomic) */
	uint64_t held_back; /* lines held back since (atomic) */
} sl_log_limit_t;

/* Whether a line of this kind may be written at now_ms (a monotonic loop
 * time; any thread): true for the first call in each second, with
 * *held_back set to the lines held back since the last one; false (and the
 * line counted as held back) otherwise. */
bool sl_log_limit_pass(sl_log_limit_t *l, uint64_t now_ms, uint64_t *held_back);

/* Whether lines of this level are written. The level may change on SIGHUP
 * while workers log: it is always read atomically, here. */
#define sl_log_enabled(level) ((int)(level) <= (int)__atomic_load_n(&sl_log_level, __ATOMIC_RELAXED))

#define sl_log(level, ...)                                  \
	do {                                                \
		if (sl_log_enabled(level))                  \
			sl_log_write((level), __VA_ARGS__); \
	} while (0)
#define sl_error(...) sl_log(SL_LOG_ERROR, __VA_ARGS__)
#define sl_warn(...) sl_log(SL_LOG_WARN, __VA_ARGS__)
#define sl_info(...) sl_log(SL_LOG_INFO, __VA_ARGS__)
#define sl_debug(...) sl_log(SL_LOG_DEBUG, __VA_ARGS__)

#endif
