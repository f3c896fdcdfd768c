/* respond.c — see respond.h.
 *
 * A response is written as a sequence of batches built by do_fill(): at most
 * [head and/or chunk-size line (conn.out)] [one body slice] [frame end],
 * three iovecs, so uv_write() never allocates for its buffer list. After each
 * batch do_after_batch() decides: done, wait for the next chunk, or go on.
 * Every path ends in sl_up_conn_response_done() or sl_up_conn_abort(). */
#include "respond.h"

#include "reason.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"

#define SLICE (256 * 1024)        /* body bytes per batch at most */
#define FRAME (64 * 1024)         /* chunk size for chunked=1 without chunks= */
#define PUMP_BUDGET (1024 * 1024) /* synchronous bytes before yielding to the loop */
#define HEAD_ROOM 128             /* out bytes kept free for framing after the head */

/* 'a' + i % 26 for i in [0, SLICE + 26): any body slice [off, off + n) with
 * n <= SLICE is pattern + off % 26. */
static char pattern[SLICE + 26];

static const char early_hints[] = "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n";
static const char continue_100[] = "HTTP/1.1 100 Continue\r\n\r\n";

void sl_up_respond_init(void)
{
	for (size_t i = 0; i < sizeof pattern; i++)
		pattern[i] = (char)('a' + i % 26);
}

static bool is_client10(const sl_up_conn_t *c)
{
	return c->parser.http_major < 1 || (c->parser.http_major == 1 && c->parser.http_minor == 0);
}

void sl_up_respond_plan(sl_up_conn_t *c, int status, const char *ctype, const char *buf, size_t len, char *owned)
{
	sl_up_resp_t *r = &c->resp;
	const sl_up_params_t *p = &c->params;

	memset(r, 0, sizeof *r);
	r->status = status ? status : 200;
	r->ctype = ctype ? ctype : "text/plain";
	r->owned = owned;
	r->limit = UINT64_MAX;
	r->http10 = p->http10;
	if (p->fail == SL_UP_FAIL_TRUNCATE) {
		r->truncate = true;
		r->framing = SL_UP_FRAME_LENGTH;
		r->size = p->size >= 0 ? (uint64_t)p->size : 1000;
		r->limit = r->size / 2;
		r->close_after = true;
	} else {
		if (buf) {
			r->buf = buf;
			r->size = len;
		} else if (p->size >= 0) {
			r->size = (uint64_t)p->size;
		} else if (p->chunks) {
			r->text = true;
			r->ctype = "text/event-stream";
		} else {
			r->buf = "ok\n";
			r->size = 3;
		}
		if (p->http10 || p->nolength)
			r->framing = SL_UP_FRAME_CLOSE;
		else if (p->chunked || p->chunks)
			/* An HTTP/1.0 client cannot read chunked framing. */
			r->framing = is_client10(c) ? SL_UP_FRAME_CLOSE : SL_UP_FRAME_CHUNKED;
		else
			r->framing = SL_UP_FRAME_LENGTH;
	}
	r->no_body = c->parser.method == HTTP_HEAD || r->status == 204 || r->status == 304;
	if (!c->keep_alive || p->conn_close || r->framing == SL_UP_FRAME_CLOSE)
		r->close_after = true;

	if (r->no_body) {
		r->nseg = 0;
	} else if (p->chunks && !r->truncate) {
		r->nseg = p->chunks;
		r->gap_ms = p->chunk_delay_ms;
		r->explicit_segs = true;
	} else if (r->framing == SL_UP_FRAME_CHUNKED) {
		r->nseg = (r->size + FRAME - 1) / FRAME;
	} else {
		r->nseg = r->size ? 1 : 0;
	}
}

void sl_up_respond_dispose(sl_up_conn_t *c)
{
	free(c->resp.owned);
	c->resp.owned = NULL;
	c->resp.buf = NULL;
}

/* Bytes in segment r->seg (not for text segments). chunks=N spreads size
 * evenly, the first size % N segments one byte longer. */
static uint64_t do_seg_len(const sl_up_resp_t *r)
{
	if (r->explicit_segs)
		return r->size / r->nseg + (r->seg < r->size % r->nseg ? 1 : 0);
	if (r->framing == SL_UP_FRAME_CHUNKED) {
		uint64_t left = r->size - (uint64_t)r->seg * FRAME;
		return left < FRAME ? left : FRAME;
	}
	return r->size;
}

/* Builds the next batch into bufs (up to 3) and advances the response as if
 * it had been written. Returns the number of bufs; *total gets their bytes. */
static unsigned do_fill(sl_up_conn_t *c, uv_buf_t *bufs, size_t *total)
{
	sl_up_resp_t *r = &c->resp;
	bool chunked = r->framing == SL_UP_FRAME_CHUNKED;
	size_t olen = 0, dlen = 0;
	const char *data = NULL, *tail = NULL;

	r->seg_ended = false;
	if (!r->head_sent) {
		olen = r->head_len;
		r->head_sent = true;
	}
	if (r->no_body) {
		r->body_done = true;
	} else if (r->seg < r->nseg) {
		if (!r->in_seg) {
			r->in_seg = true;
			r->seg_off = 0;
			if (r->text) {
				/* Frame, text and frame end all fit in out. */
				char text[48];
				int tl = snprintf(text, sizeof text, "data: chunk %" PRIu64 "\n\n", r->seg);
				if (chunked)
					olen += (size_t)sprintf(c->out + olen, "%x\r\n%s\r\n", tl, text);
				else
					olen += (size_t)sprintf(c->out + olen, "%s", text);
				r->seg_len = r->seg_off = (uint64_t)tl;
			} else {
				r->seg_len = do_seg_len(r);
				if (chunked && r->seg_len)
					olen += (size_t)sprintf(c->out + olen, "%" PRIx64 "\r\n", r->seg_len);
			}
		}
		if (!r->text && r->seg_off < r->seg_len) {
			uint64_t n = r->seg_len - r->seg_off;
			if (n > SLICE)
				n = SLICE;
			if (r->limit - r->sent < n)
				n = r->limit - r->sent;
			data = r->buf ? r->buf + r->sent : pattern + r->sent % 26;
			dlen = (size_t)n;
			r->seg_off += n;
			r->sent += n;
		}
		if (r->truncate && r->sent >= r->limit) {
			r->body_done = true;
		} else if (r->seg_off == r->seg_len) {
			r->in_seg = false;
			r->seg++;
			r->seg_ended = true;
			if (chunked && !r->text && r->seg_len)
				tail = "\r\n";
		}
	}
	if (!r->no_body && !r->body_done && r->seg == r->nseg) {
		r->body_done = true;
		if (chunked)
			tail = tail ? "\r\n0\r\n\r\n" : "0\r\n\r\n";
	}

	unsigned nb = 0;
	*total = 0;
	if (olen)
		bufs[nb++] = uv_buf_init(c->out, (unsigned)olen);
	if (dlen)
		bufs[nb++] = uv_buf_init((char *)data, (unsigned)dlen);
	if (tail)
		bufs[nb++] = uv_buf_init((char *)tail, (unsigned)strlen(tail));
	for (unsigned i = 0; i < nb; i++)
		*total += bufs[i].len;
	return nb;
}

/* After a batch is written: true if the pump must stop here (the response
 * is done, or waits for its next chunk). */
static bool do_after_batch(sl_up_conn_t *c)
{
	sl_up_resp_t *r = &c->resp;
	if (r->body_done) {
		sl_up_conn_response_done(c);
		return true;
	}
	if (r->seg_ended && r->gap_ms) {
		sl_up_conn_gap(c, r->gap_ms);
		return true;
	}
	return false;
}

static void on_write(uv_write_t *req, int status)
{
	sl_up_conn_t *c = req->data;
	c->writing = false;
	if (c->state == SL_UP_CLOSING)
		return; /* cancelled by uv_close() */
	if (status < 0) {
		sl_up_conn_abort(c);
		return;
	}
	if (c->state != SL_UP_WRITE)
		return; /* a 100/103 hint written while the request waits */
	if (do_after_batch(c))
		return;
	sl_up_respond_pump(c);
}

/* Writes bufs: first with uv_try_write() when try_first, the rest with
 * uv_write(). Returns 1 if all was written now, 0 if on_write() will
 * continue, -1 if the connection was aborted. Precondition: !c->writing. */
static int do_send(sl_up_conn_t *c, uv_buf_t *bufs, unsigned nb, size_t total, bool try_first)
{
	if (try_first) {
		int n = uv_try_write((uv_stream_t *)&c->tcp, bufs, nb);
		if (n == UV_EAGAIN)
			n = 0;
		else if (n < 0) {
			sl_up_conn_abort(c);
			return -1;
		}
		if ((size_t)n == total)
			return 1;
		size_t skip = (size_t)n;
		while (skip >= bufs->len) {
			skip -= bufs->len;
			bufs++;
			nb--;
		}
		bufs->base += skip;
		bufs->len -= skip;
	}
	c->writing = true;
	int err = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, nb, on_write);
	if (err) {
		c->writing = false;
		sl_up_conn_abort(c);
		return -1;
	}
	return 0;
}

/* Sends a static interim response unless another write is outstanding:
 * interim responses are hints, and a queue of writes would cost more. */
static void do_hint(sl_up_conn_t *c, const char *s, size_t len)
{
	if (c->writing)
		return;
	uv_buf_t b = uv_buf_init((char *)s, (unsigned)len);
	do_send(c, &b, 1, len, true);
}

void sl_up_respond_early(sl_up_conn_t *c)
{
	do_hint(c, early_hints, sizeof early_hints - 1);
}

void sl_up_respond_continue(sl_up_conn_t *c)
{
	do_hint(c, continue_100, sizeof continue_100 - 1);
}

void sl_up_respond_start(sl_up_conn_t *c)
{
	sl_up_resp_t *r = &c->resp;
	const sl_up_params_t *p = &c->params;
	const char *version = r->http10 ? "HTTP/1.0" : "HTTP/1.1";
	const char *conn = r->close_after   ? "Connection: close\r\n"
	                   : is_client10(c) ? "Connection: keep-alive\r\n"
	                                    : "";
	const size_t cap = SL_UP_OUT_CAP - HEAD_ROOM;
	int n;

	if (r->status == 204 || r->status == 304 || r->framing == SL_UP_FRAME_CLOSE)
		n = snprintf(c->out, cap, "%s %d %s\r\nServer: sluice-upstream\r\nContent-Type: %s\r\n%s", version,
		             r->status, sl_http_reason(r->status), r->ctype, conn);
	else if (r->framing == SL_UP_FRAME_CHUNKED)
		n = snprintf(c->out, cap,
		             "%s %d %s\r\nServer: sluice-upstream\r\nContent-Type: %s\r\n"
		             "Transfer-Encoding: chunked\r\n%s",
		             version, r->status, sl_http_reason(r->status), r->ctype, conn);
	else
		n = snprintf(c->out, cap,
		             "%s %d %s\r\nServer: sluice-upstream\r\nContent-Type: %s\r\n"
		             "Content-Length: %" PRIu64 "\r\n%s",
		             version, r->status, sl_http_reason(r->status), r->ctype, r->size, conn);
	size_t len = (size_t)n;
	/* Extra headers that would not fit are dropped: the query that asks
	 * for them is at most 64 KiB, the head buffer 8 KiB. */
	if (p->extra_len && len + p->extra_len + 2 <= cap) {
		memcpy(c->out + len, p->extra, p->extra_len);
		len += p->extra_len;
	}
	c->out[len++] = '\r';
	c->out[len++] = '\n';
	r->head_len = len;
	c->state = SL_UP_WRITE;
	sl_up_respond_pump(c);
}

void sl_up_respond_pump(sl_up_conn_t *c)
{
	size_t budget = 0;
	while (c->state == SL_UP_WRITE && !c->writing) {
		uv_buf_t bufs[3];
		size_t total;
		unsigned nb = do_fill(c, bufs, &total);
		if (c->resp.body_done)
			sl_up_conn_response_ending(c);
		if (total) {
			/* Past the budget, uv_write() still writes at once but calls
			 * back on the next loop turn: other connections get a go. */
			int rc = do_send(c, bufs, nb, total, budget < PUMP_BUDGET);
			if (rc <= 0)
				return;
			budget += total;
		}
		if (do_after_batch(c))
			return;
	}
}
