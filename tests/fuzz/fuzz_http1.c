/* libFuzzer target for http1.c: the request parser and the response parser
 * on arbitrary bytes fed in arbitrary pieces, and the head builders on
 * whatever parsed. Build with `make fuzz`; run for example
 *   make fuzz-run   (60 s; new inputs go to build-fuzz/corpus, seeds stay in tests/fuzz/corpus)
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "buf.h"
#include "http1.h"

typedef struct {
	sl_buf_t out;
	int heads;
} sink_t;

static int on_head(sl_http1_t *p)
{
	sink_t *s = p->data;
	s->heads++;
	s->out.len = 0;
	if (p->is_request)
		sl_http1_build_request(&p->msg, "127.0.0.1", p->msg.chunked ? SL_FRAME_CHUNKED : SL_FRAME_AS_IS,
		                       &s->out);
	else
		sl_http1_build_response(&p->msg, &p->msg, SL_FRAME_CHUNKED, s->heads & 1, &s->out);
	return (s->heads % 3) == 0 ? SL_HTTP1_PAUSE : SL_HTTP1_CONTINUE;
}

static int on_body(sl_http1_t *p, const char *at, size_t len)
{
	(void)p;
	volatile char sum = 0; /* touch every byte the parser hands out */
	for (size_t i = 0; i < len; i++)
		sum ^= at[i];
	(void)sum;
	return SL_HTTP1_CONTINUE;
}

static int on_complete(sl_http1_t *p)
{
	return ((sink_t *)p->data)->heads & 1 ? SL_HTTP1_PAUSE : SL_HTTP1_CONTINUE;
}

static const sl_http1_callbacks_t cbs = {on_head, on_body, on_complete};

static void run(const uint8_t *data, size_t size, bool is_request, size_t step)
{
	sink_t sink = {0};
	sl_http1_t p;
	sl_http1_init(&p, is_request, &cbs, &sink, 4096);
	size_t off = 0;
	int guard = 0;
	while (off < size && guard++ < 100000) {
		size_t len = size - off < step ? size - off : step;
		size_t n;
		int r = sl_http1_execute(&p, (const char *)data + off, len, &n);
		if (r == SL_HTTP1_ERROR)
			break;
		off += n;
	}
	sl_http1_finish(&p);
	sl_http1_dispose(&p);
	sl_buf_dispose(&sink.out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t step = (size_t)(data[0] % 64) + 1;
	run(data + 1, size - 1, (data[0] & 0x80) == 0, step);
	return 0;
}
