/* io.c — see io.h. */
#include "io.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"

typedef struct {
	uv_write_t req;
	char data[];
} queued_write_t;

static void on_written(uv_write_t *req, int status)
{
	(void)status;
	sl_io_write_done(req);
}

int sl_io_write(uv_stream_t *s, const uv_buf_t *bufs, unsigned n, uv_write_cb cb, bool *wrote)
{
	size_t total = 0;
	for (unsigned i = 0; i < n; i++)
		total += bufs[i].len;
	if (total == 0)
		return 0;
	int r = uv_try_write(s, bufs, n);
	size_t done = 0;
	if (r >= 0)
		done = (size_t)r;
	else if (r != UV_EAGAIN)
		return r;
	if (done > 0 && wrote)
		*wrote = true;
	if (done == total)
		return 0;
	queued_write_t *q = sl_malloc(sizeof *q + (total - done));
	size_t off = 0, skip = done;
	for (unsigned i = 0; i < n; i++) {
		size_t len = bufs[i].len;
		if (skip >= len) {
			skip -= len;
			continue;
		}
		memcpy(q->data + off, bufs[i].base + skip, len - skip);
		off += len - skip;
		skip = 0;
	}
	uv_buf_t rest = uv_buf_init(q->data, (unsigned)off);
	r = uv_write(&q->req, s, &rest, 1, cb ? cb : on_written);
	if (r != 0) {
		free(q);
		return r;
	}
	if (wrote)
		*wrote = true;
	return 0;
}

void sl_io_write_done(uv_write_t *req)
{
	free((queued_write_t *)req);
}
