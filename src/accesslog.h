/* accesslog.h — one line per request (--access-log), never blocking a loop.
 *
 * Each worker appends lines to its own buffer; the buffer is written with
 * uv_fs_write on libuv's thread pool when it passes 32 KiB or 200 ms after
 * its first line, while new lines go to a second buffer; lines that arrive
 * during a write go out as soon as it completes. If the disk cannot keep up
 * and 1 MiB is waiting, further lines are dropped and counted, rather than
 * growing memory or stalling requests; the lines of a write that fails are
 * counted the same way (a short write is completed). Text format (space
 * separated, key=value after the quoted request):
 *
 *   2026-11-27T10:00:00.123Z 10.0.0.7 "GET /v1/chat HTTP/1.1" 200 5120
 *   total_ms=812.4 queue_ms=3.1 upstream_ms=809.0 attempts=1 outcome=success error=-
 *
 * (on one line). bytes is the response body size sent to the client. In the
 * request target, '"', '\' and bytes outside printable ASCII are written as
 * \xHH, as nginx does, so a line always splits the same way. JSON format
 * (--access-log-format json): one object per line with the same fields:
 *
 *   {"time":"2026-11-27T10:00:00.123Z","client":"10.0.0.7","method":"GET",
 *    "target":"/v1/chat","protocol":"HTTP/1.1","status":200,"bytes":5120,
 *    "total_ms":812.4,"queue_ms":3.1,"upstream_ms":809.0,"attempts":1,
 *    "outcome":"success","error":null}
 *
 * where the target's bytes outside printable ASCII are \u00HH escapes.
 *
 * Log rotation: after the file is renamed, SIGUSR1 (or SIGHUP) makes the
 * main thread open the path anew and dup3() it onto the descriptor the
 * workers write to; a write in progress finishes in the old file, the next
 * one lands in the new file, and no worker has to be told.
 */
#ifndef SL_ACCESSLOG_H
#define SL_ACCESSLOG_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "config.h"

typedef struct sl_access_entry {
	const char *client_ip;
	const char *method;
	const char *target;
	size_t target_len;
	int minor; /* HTTP/1.minor */
	int status;
	uint64_t bytes;
	double total_ms, queue_ms, upstream_ms;
	int attempts;
	const char *outcome;
	const char *error; /* sl_error_kind_name(): "-" when none */
} sl_access_entry_t;

typedef struct sl_access_log {
	uv_loop_t *loop;
	uv_file fd; /* -1: logging off */
	sl_buf_t pending;
	sl_buf_t writing;
	size_t written;         /* bytes of `writing` already written */
	uint64_t pending_lines; /* lines in each buffer, counted as dropped if lost */
	uint64_t writing_lines;
	uv_fs_t req;
	uv_timer_t timer;
	bool in_flight;
	bool closing;
	bool stalled;              /* dropping lines (said once per stall) */
	sl_access_format_t format; /* the worker sets it from the settings */
	uint64_t dropped;          /* lines dropped or lost to a failed write (stat.h: read by any thread) */
} sl_access_log_t;

/* Opens PATH for appending ("-" is stdout). Returns the descriptor, or -1
 * with err set. */
int sl_access_log_open(const char *path, char *err, size_t errlen);

/* Reopens PATH onto FD (after a rotation). Returns 0, or -1 with err set
 * and FD left as it was. Nothing to do for stdout. */
int sl_access_log_reopen(const char *path, int fd, char *err, size_t errlen);

/* A worker's writer; fd < 0 disables it. */
void sl_access_log_init(sl_access_log_t *log, uv_loop_t *loop, uv_file fd);
void sl_access_log_write(sl_access_log_t *log, const sl_access_entry_t *e);

/* Writes what is left (synchronously: the loop is ending; after the write
 * in flight, if any, has finished, from its callback, so the two never
 * interleave) and closes the timer. */
void sl_access_log_close(sl_access_log_t *log);

#endif
