/* libFuzzer target for http1.c: the request parser and the response parser
 * on arbitrary bytes fed in arbitrary pieces, and a differential property on
 * what parsed: each message is forwarded the way sluice forwards it (head
 * from the builders, body re-framed from the parsed framing), and the
 * forwarded bytes, parsed again, must give the same messages with the same
 * boundaries: the same methods or statuses, targets and bodies, no more and
 * no fewer. Build with `make fuzz`; run for example
 *   make fuzz-run   (60 s; new inputs go to build-fuzz/corpus, seeds stay in tests/fuzz/corpus)
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "http1.h"

#define MAX_MSGS 64

typedef struct {
	int kind; /* method (requests) or status (responses) */
	uint32_t target_len;
	uint64_t body_len;
	uint64_t body_hash;
} seen_t;

typedef struct {
	sl_buf_t fwd; /* what sluice would send on */
	seen_t msgs[MAX_MSGS];
	int nmsgs; /* completed */
	int heads;
	sl_framing_t framing;
	uint64_t body_len, body_hash;
	bool stop; /* a CONNECT: what follows is not HTTP */
	bool forward;
	char target[64];
} sink_t;

static uint64_t fnv(uint64_t h, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)p[i]) * 1099511628211u;
	return h;
}

static int on_head(sl_http1_t *p)
{
	sink_t *s = p->data;
	s->heads++;
	s->body_len = 0;
	s->body_hash = 14695981039346656037u;
	if (!s->forward)
		return SL_HTTP1_CONTINUE;
	const sl_http_msg_t *m = &p->msg;
	if (p->is_request) {
		s->framing = sl_http1_request_framing(m);
		sl_http1_build_request(m, "127.0.0.1", "target:8000", s->framing, false, &s->fwd);
	} else {
		if (m->status < 200 || m->status == 204)
			s->framing = SL_FRAME_NONE;
		else if (m->status == 304 || m->content_length >= 0)
			s->framing = SL_FRAME_LENGTH;
		else
			s->framing = SL_FRAME_CHUNKED;
		sl_http_msg_t req = {0};
		req.minor = 1;
		sl_http1_build_response(m, &req, s->framing, true, &s->fwd);
	}
	return (s->heads % 3) == 0 ? SL_HTTP1_PAUSE : SL_HTTP1_CONTINUE;
}

static int on_body(sl_http1_t *p, const char *at, size_t len)
{
	sink_t *s = p->data;
	s->body_len += len;
	s->body_hash = fnv(s->body_hash, at, len);
	if (s->forward && len > 0) {
		if (s->framing == SL_FRAME_CHUNKED)
			sl_buf_printf(&s->fwd, "%zx\r\n", len);
		sl_buf_append(&s->fwd, at, len);
		if (s->framing == SL_FRAME_CHUNKED)
			sl_buf_append(&s->fwd, "\r\n", 2);
	}
	return SL_HTTP1_CONTINUE;
}

static int on_complete(sl_http1_t *p)
{
	sink_t *s = p->data;
	const sl_http_msg_t *m = &p->msg;
	if (s->forward && s->framing == SL_FRAME_CHUNKED)
		sl_buf_append(&s->fwd, "0\r\n\r\n", 5);
	if (s->nmsgs < MAX_MSGS) {
		seen_t *e = &s->msgs[s->nmsgs++];
		e->kind = p->is_request ? m->method : m->status;
		e->target_len = p->is_request ? m->target_len : 0;
		e->body_len = s->body_len;
		e->body_hash = s->body_hash;
	}
	if (p->is_request && m->method == HTTP_CONNECT)
		s->stop = true;
	return ((sink_t *)p->data)->heads & 1 ? SL_HTTP1_PAUSE : SL_HTTP1_CONTINUE;
}

static const sl_http1_callbacks_t cbs = {on_head, on_body, on_complete};

/* Parses data in pieces of `step`; returns whether it parsed without error. */
static bool run(sink_t *sink, const uint8_t *data, size_t size, bool is_request, size_t step, bool eof)
{
	sl_http1_t p;
	sl_http1_init(&p, is_request, &cbs, sink, 4096);
	size_t off = 0;
	int guard = 0;
	bool ok = true;
	while ((off < size || p.paused) && !sink->stop && guard++ < 100000 && sink->nmsgs < MAX_MSGS) {
		size_t len = size - off < step ? size - off : step;
		size_t n;
		int r = sl_http1_execute(&p, (const char *)data + off, len, &n);
		if (r == SL_HTTP1_ERROR) {
			ok = false;
			break;
		}
		off += n;
		if (r == SL_HTTP1_PAUSED && n == 0 && !p.paused)
			break; /* upgraded */
	}
	if (ok && eof && !sink->stop && sl_http1_finish(&p) != SL_HTTP1_OK)
		ok = false;
	sl_http1_dispose(&p);
	return ok;
}

static void check(const uint8_t *data, size_t size, bool is_request, size_t step)
{
	sink_t first = {0}, again = {0};
	first.forward = true;
	run(&first, data, size, is_request, step, true);
	/* What sluice forwarded, parsed in one piece: the same messages. A
	 * message cut by an error upstream of this point stays incomplete. */
	bool ok = run(&again, (const uint8_t *)first.fwd.base, first.fwd.len, is_request, first.fwd.len + 1, false);
	if (!ok) {
		fprintf(stderr, "forwarded bytes do not parse: %.*s\n",
		        (int)(first.fwd.len < 400 ? first.fwd.len : 400), first.fwd.base);
		abort();
	}
	if (again.nmsgs != first.nmsgs) {
		fprintf(stderr, "message count %d forwarded as %d\n", first.nmsgs, again.nmsgs);
		abort();
	}
	for (int i = 0; i < first.nmsgs; i++) {
		seen_t *a = &first.msgs[i], *b = &again.msgs[i];
		if (a->kind != b->kind || a->target_len != b->target_len || a->body_len != b->body_len ||
		    a->body_hash != b->body_hash) {
			fprintf(stderr, "message %d changed when forwarded\n", i);
			abort();
		}
	}
	sl_buf_dispose(&first.fwd);
	sl_buf_dispose(&again.fwd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t step = (size_t)(data[0] % 64) + 1;
	check(data + 1, size - 1, (data[0] & 0x80) == 0, step);
	return 0;
}
