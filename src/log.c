/* log.c — see log.h. Each line is formatted into one buffer and written with
 * a single write(2), so lines from different workers never interleave. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

sl_log_level_t sl_log_level = SL_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

size_t sl_timestamp(char *out)
{
	static __thread time_t cached_sec = -1;
	static __thread char cached[20]; /* "2026-11-27T10:00:00" */
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec != cached_sec) {
		struct tm tm;
		gmtime_r(&ts.tv_sec, &tm);
		if (strftime(cached, sizeof cached, "%Y-%m-%dT%H:%M:%S", &tm) != 19)
			memcpy(cached, "0000-00-00T00:00:00", sizeof cached);
		cached_sec = ts.tv_sec;
	}
	unsigned ms = (unsigned)(ts.tv_nsec / 1000000);
	memcpy(out, cached, 19);
	out[19] = '.';
	out[20] = (char)('0' + ms / 100);
	out[21] = (char)('0' + ms / 10 % 10);
	out[22] = (char)('0' + ms % 10);
	out[23] = 'Z';
	out[24] = '\0';
	return SL_TIMESTAMP_LEN;
}

void sl_log_write(sl_log_level_t level, const char *fmt, ...)
{
	char line[1024];
	int n = (int)sl_timestamp(line);
	n += snprintf(line + n, sizeof line - (size_t)n, " sluice %s: ", level_names[level]);
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
	va_end(ap);
	n = (m < 0) ? n : n + m;
	if (n > (int)sizeof line - 2)
		n = (int)sizeof line - 2;
	line[n++] = '\n';
	ssize_t r = write(STDERR_FILENO, line, (size_t)n);
	(void)r;
}

bool sl_log_limit_pass(sl_log_limit_t *l, uint64_t now_ms, uint64_t *held_back)
{
	uint64_t sec = now_ms / 1000 + 1, last = __atomic_load_n(&l->second, __ATOMIC_RELAXED);
	/* one thread wins each new second; the others count themselves held back */
	if (last >= sec ||
	    !__atomic_compare_exchange_n(&l->second, &last, sec, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
		__atomic_fetch_add(&l->held_back, 1, __ATOMIC_RELAXED);
		return false;
	}
	*held_back = __atomic_exchange_n(&l->held_back, 0, __ATOMIC_RELAXED);
	return true;
}
