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

void sl_log_write(sl_log_level_t level, const char *fmt, ...)
{
	char line[1024];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = (int)strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
	n += snprintf(line + n, sizeof line - (size_t)n, ".%03ldZ sluice %s: ", ts.tv_nsec / 1000000,
	              level_names[level]);
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
