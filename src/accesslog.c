/* accesslog.c — see accesslog.h. */
#include "accesslog.h"
#include "log.h"
#include "stat.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FLUSH_BYTES (32 * 1024)
#define FLUSH_MS 200
#define MAX_PENDING (1024 * 1024)

int sl_access_log_open(const char *path, char *err, size_t errlen)
{
	if (strcmp(path, "-") == 0)
		return STDOUT_FILENO;
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		snprintf(err, errlen, "cannot open access log %s: %s", path, strerror(errno));
	return fd;
}

int sl_access_log_reopen(const char *path, int fd, char *err, size_t errlen)
{
	if (strcmp(path, "-") == 0)
		return 0;
	int nfd = sl_access_log_open(path, err, errlen);
	if (nfd < 0)
		return -1;
	int r = dup3(nfd, fd, O_CLOEXEC);
	if (r < 0)
		snprintf(err, errlen, "cannot reopen access log %s: %s", path, strerror(errno));
	close(nfd);
	return r < 0 ? -1 : 0;
}

static void do_flush(sl_access_log_t *log);
static void on_written(uv_fs_t *req);

/* The lines being written are lost: count them, say so once per stall. */
static void do_lose_writing(sl_access_log_t *log, int err)
{
	SL_BUMP(log->dropped, log->writing_lines);
	if (!log->stalled)
		sl_warn("access log: a write failed (%s): %llu lines lost (counted in /proxy-metrics "
		        "access_log.dropped_lines)",
		        uv_strerror(err), (unsigned long long)log->writing_lines);
	log->stalled = true;
	log->writing.len = 0;
	log->writing_lines = 0;
}

/* Writes what is left of `writing`; false if it could not even start. */
static bool do_write_rest(sl_access_log_t *log)
{
	uv_buf_t b = uv_buf_init(log->writing.base + log->written, (unsigned)(log->writing.len - log->written));
	int err = uv_fs_write(log->loop, &log->req, log->fd, &b, 1, -1, on_written);
	if (err != 0) {
		do_lose_writing(log, err);
		return false;
	}
	log->in_flight = true;
	return true;
}

/* The loop is ending: a last synchronous write of what is pending, then
 * the buffer goes. Never while a write is in flight: a line longer than
 * PIPE_BUF written beside another would interleave with it (a FIFO, or a
 * pipe to a log shipper, takes partial writes). */
static void do_write_last(sl_access_log_t *log)
{
	if (log->fd >= 0 && log->pending.len > 0) {
		uv_fs_t req;
		uv_buf_t b = uv_buf_init(log->pending.base, (unsigned)log->pending.len);
		uv_fs_write(NULL, &req, log->fd, &b, 1, -1, NULL);
		uv_fs_req_cleanup(&req);
	}
	sl_buf_dispose(&log->pending);
}

static void on_written(uv_fs_t *req)
{
	sl_access_log_t *log = req->data;
	ssize_t result = req->result;
	uv_fs_req_cleanup(req);
	log->in_flight = false;
	if (result < 0) {
		do_lose_writing(log, (int)result);
	} else {
		log->written += (size_t)result;
		if (log->written < log->writing.len && result > 0 && do_write_rest(log))
			return; /* a short write: the rest goes next */
		if (log->written < log->writing.len)
			do_lose_writing(log, UV_EIO);
	}
	log->writing.len = 0;
	log->writing_lines = 0;
	if (log->stalled && log->pending.len < MAX_PENDING / 2) {
		log->stalled = false;
		sl_info("access log: writing again after %llu dropped lines",
		        (unsigned long long)SL_LOAD(log->dropped));
	}
	if (log->closing) {
		do_write_last(log); /* now that nothing else is writing */
		sl_buf_dispose(&log->writing);
		return;
	}
	do_flush(log); /* what came in meanwhile, at once */
}

static void do_flush(sl_access_log_t *log)
{
	if (log->in_flight || log->pending.len == 0)
		return;
	sl_buf_t t = log->writing;
	log->writing = log->pending;
	log->pending = t;
	log->pending.len = 0;
	log->writing_lines = log->pending_lines;
	log->pending_lines = 0;
	log->written = 0;
	do_write_rest(log);
}

static void on_timer(uv_timer_t *t)
{
	do_flush(t->data);
}

void sl_access_log_init(sl_access_log_t *log, uv_loop_t *loop, uv_file fd)
{
	memset(log, 0, sizeof *log);
	log->loop = loop;
	log->fd = fd;
	log->req.data = log;
	uv_timer_init(loop, &log->timer);
	log->timer.data = log;
}

/* Appends the target so that it cannot break the line's structure: '"',
 * '\\' and bytes outside printable ASCII as \xHH (text, as nginx) or
 * \u00HH (JSON, which must stay valid UTF-8). The parser lets no control
 * byte through; this does not rely on it. */
static void do_escape(sl_buf_t *b, const char *s, size_t n, bool json)
{
	size_t run = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\')
			continue;
		sl_buf_append(b, s + run, i - run);
		sl_buf_printf(b, json ? "\\u%04x" : "\\x%02X", ch);
		run = i + 1;
	}
	sl_buf_append(b, s + run, n - run);
}

void sl_access_log_write(sl_access_log_t *log, const sl_access_entry_t *e)
{
	if (log->fd < 0)
		return;
	if (log->pending.len > MAX_PENDING) {
		if (!log->stalled)
			sl_warn("access log: writes are not keeping up, dropping lines "
			        "(counted in /proxy-metrics access_log.dropped_lines)");
		log->stalled = true;
		SL_BUMP(log->dropped, 1);
		return;
	}
	char when[SL_TIMESTAMP_LEN + 1];
	sl_timestamp(when);
	bool was_empty = log->pending.len == 0;
	log->pending_lines++;
	size_t target_len = e->target_len > 2048 ? 2048 : e->target_len;
	if (log->format == SL_ACCESS_JSON) {
		sl_buf_printf(&log->pending, "{\"time\":\"%s\",\"client\":\"%s\",\"method\":\"%s\",\"target\":\"", when,
		              e->client_ip, e->method);
		do_escape(&log->pending, e->target, target_len, true);
		sl_buf_printf(&log->pending,
		              "\",\"protocol\":\"HTTP/1.%d\",\"status\":%d,\"bytes\":%llu,\"total_ms\":%.1f,"
		              "\"queue_ms\":%.1f,\"upstream_ms\":%.1f,\"attempts\":%d,\"outcome\":\"%s\",\"error\":",
		              e->minor, e->status, (unsigned long long)e->bytes, e->total_ms, e->queue_ms,
		              e->upstream_ms, e->attempts, e->outcome);
		if (strcmp(e->error, "-") == 0)
			sl_buf_printf(&log->pending, "null}\n");
		else
			sl_buf_printf(&log->pending, "\"%s\"}\n", e->error);
	} else {
		sl_buf_printf(&log->pending, "%s %s \"%s ", when, e->client_ip, e->method);
		do_escape(&log->pending, e->target, target_len, false);
		sl_buf_printf(
		    &log->pending,
		    " HTTP/1.%d\" %d %llu total_ms=%.1f queue_ms=%.1f upstream_ms=%.1f attempts=%d outcome=%s "
		    "error=%s\n",
		    e->minor, e->status, (unsigned long long)e->bytes, e->total_ms, e->queue_ms, e->upstream_ms,
		    e->attempts, e->outcome, e->error);
	}
	if (log->pending.len >= FLUSH_BYTES)
		do_flush(log);
	else if (was_empty && !log->in_flight)
		uv_timer_start(&log->timer, on_timer, FLUSH_MS, 0);
}

void sl_access_log_close(sl_access_log_t *log)
{
	log->closing = true;
	uv_close((uv_handle_t *)&log->timer, NULL);
	if (log->in_flight)
		return; /* on_written writes the rest once that write is done */
	do_write_last(log);
	sl_buf_dispose(&log->writing);
}
