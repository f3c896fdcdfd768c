/* Unit tests for http1.c: strict parsing beyond llhttp, and the heads that
 * sluice builds (hop-by-hop removal, X-Forwarded-*, Via, framing). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "http1.h"

typedef struct {
	int heads, completes;
	size_t body;
} counts_t;

static int on_head(sl_http1_t *p)
{
	((counts_t *)p->data)->heads++;
	return SL_HTTP1_CONTINUE;
}

static int on_body(sl_http1_t *p, const char *at, size_t len)
{
	((counts_t *)p->data)->body += len;
	return SL_HTTP1_CONTINUE;
}

static int on_complete(sl_http1_t *p)
{
	((counts_t *)p->data)->completes++;
	return SL_HTTP1_PAUSE;
}

static const sl_http1_callbacks_t cbs = {on_head, on_body, on_complete};

/* Parses text fed in two pieces split at `split`; returns the error status
 * (0 when the message completed). */
static int parse_split(sl_http1_t *p, counts_t *c, const char *text, size_t split)
{
	memset(c, 0, sizeof *c);
	sl_http1_init(p, true, &cbs, c, 8192);
	size_t len = strlen(text), off = 0, n;
	size_t ends[2] = {split, len};
	for (int i = 0; i < 2; i++) {
		while (off < ends[i]) {
			int r = sl_http1_execute(p, text + off, ends[i] - off, &n);
			off += n;
			if (r == SL_HTTP1_ERROR)
				return p->error_status;
			if (c->completes)
				return 0;
		}
	}
	return c->completes ? 0 : -1;
}

static int parse(sl_http1_t *p, counts_t *c, const char *text)
{
	return parse_split(p, c, text, strlen(text));
}

static void test_obs_fold_rejected_at_every_split(void **state)
{
	const char *folded = "GET / HTTP/1.1\r\nHost: a\r\nX-Long: part one\r\n part two\r\nY: z\r\n\r\n";
	const char *fine = "GET / HTTP/1.1\r\nHost: a\r\nX-Long: part one  part two\r\nY: z\r\n\r\n";
	sl_http1_t p;
	counts_t c;
	for (size_t split = 1; split < strlen(folded); split++) {
		assert_int_equal(parse_split(&p, &c, folded, split), 400);
		sl_http1_dispose(&p);
	}
	for (size_t split = 1; split < strlen(fine); split++) {
		assert_int_equal(parse_split(&p, &c, fine, split), 0);
		const sl_http_header_t *h = sl_http_msg_find(&p.msg, "x-long");
		assert_non_null(h);
		assert_int_equal(h->value_len, strlen("part one  part two"));
		assert_memory_equal(sl_http_msg_str(&p.msg, h->value), "part one  part two", h->value_len);
		sl_http1_dispose(&p);
	}
}

static void test_chunk_crlf_checked_at_every_split(void **state)
{
	const char *bad = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n";
	const char *good = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	                   "5;ext=1\r\nhello\r\n3\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n";
	sl_http1_t p;
	counts_t c;
	for (size_t split = 1; split < strlen(bad); split++) {
		assert_int_equal(parse_split(&p, &c, bad, split), 400);
		sl_http1_dispose(&p);
	}
	for (size_t split = 1; split < strlen(good); split++) {
		assert_int_equal(parse_split(&p, &c, good, split), 0);
		assert_int_equal(c.body, 8);
		assert_null(sl_http_msg_find(&p.msg, "x-trailer"));
		sl_http1_dispose(&p);
	}
}

static void test_strict_request_checks(void **state)
{
	static const struct {
		const char *text;
		int status;
	} cases[] = {
	    {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},
	    {"GET / HTTP/1.1\r\n\r\n", 400},
	    {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
	    {"POST / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n", 417},
	    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400},
	    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
	    {"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400},
	    {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
	    {"GET /\r\n\r\n", 400},
	    {"GET / HTTP/1.0\r\n\r\n", 0},
	    {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		sl_http1_t p;
		counts_t c;
		int got = parse(&p, &c, cases[i].text);
		if (got != cases[i].status)
			fail_msg("case %zu (%s): got %d, want %d", i, cases[i].text, got, cases[i].status);
		sl_http1_dispose(&p);
	}
}

static void test_head_limit(void **state)
{
	sl_http1_t p;
	counts_t c = {0};
	sl_http1_init(&p, true, &cbs, &c, 64);
	const char *text =
	    "GET /a-rather-long-target HTTP/1.1\r\nHost: example\r\nX-Pad: 0123456789012345678901234567\r\n\r\n";
	size_t n;
	assert_int_equal(sl_http1_execute(&p, text, strlen(text), &n), SL_HTTP1_ERROR);
	assert_int_equal(p.error_status, 431);
	sl_http1_dispose(&p);
}

static void test_expect_and_framing_facts(void **state)
{
	sl_http1_t p;
	counts_t c;
	assert_int_equal(
	    parse(&p, &c,
	          "POST /u HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nTransfer-Encoding: chunked\r\n\r\n"
	          "3\r\nabc\r\n0\r\n\r\n"),
	    0);
	assert_true(p.msg.expect_continue);
	assert_true(p.msg.chunked);
	assert_int_equal(p.msg.content_length, -1);
	assert_int_equal(c.body, 3);
	sl_http1_dispose(&p);
}

static bool has_line(const sl_buf_t *b, const char *line)
{
	size_t n = strlen(line);
	for (size_t i = 0; i + n <= b->len; i++)
		if ((i == 0 || b->base[i - 1] == '\n') && memcmp(b->base + i, line, n) == 0 && i + n + 1 < b->len &&
		    b->base[i + n] == '\r')
			return true;
	return false;
}

static bool has_name(const sl_buf_t *b, const char *name)
{
	size_t n = strlen(name);
	for (size_t i = 0; i + n < b->len; i++)
		if ((i == 0 || b->base[i - 1] == '\n') && strncasecmp(b->base + i, name, n) == 0 &&
		    b->base[i + n] == ':')
			return true;
	return false;
}

static void test_request_head_rewrite(void **state)
{
	sl_http1_t p;
	counts_t c;
	assert_int_equal(
	    parse(&p, &c,
	          "GET http://example.org/x?y=1 HTTP/1.1\r\nHost: example.org\r\nConnection: keep-alive, X-Secret\r\n"
	          "Connection: X-Hop-1234\r\nX-Hop-1234: 1\r\nX-Secret: 1\r\nKeep-Alive: 300\r\nProxy-Connection: "
	          "keep-alive\r\nTE: trailers\r\n"
	          "Upgrade: h2c\r\nX-Forwarded-For: 10.0.0.1\r\nVia: 1.1 edge\r\nX-Keep: yes\r\n"
	          "Trailer: X-T\r\n\r\n"),
	    0);
	sl_buf_t out = {0};
	sl_http1_build_request(&p.msg, "192.0.2.7", NULL, SL_FRAME_NONE, false, &out);
	assert_memory_equal(out.base, "GET http://example.org/x?y=1 HTTP/1.1\r\n", 39);
	assert_true(has_line(&out, "Host: example.org"));
	assert_true(has_line(&out, "X-Keep: yes"));
	assert_true(has_line(&out, "X-Forwarded-For: 10.0.0.1, 192.0.2.7"));
	assert_true(has_line(&out, "X-Forwarded-Proto: http"));
	assert_true(has_line(&out, "Via: 1.1 edge, 1.1 sluice"));
	const char *gone[] = {"connection", "x-secret", "x-hop-1234", "keep-alive",       "proxy-connection",
	                      "te",         "upgrade",  "trailer",    "transfer-encoding"};
	for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++)
		if (has_name(&out, gone[i]))
			fail_msg("%s was forwarded", gone[i]);
	assert_memory_equal(out.base + out.len - 4, "\r\n\r\n", 4);
	sl_buf_dispose(&out);
	sl_http1_dispose(&p);
}

static void test_chunked_request_reframed(void **state)
{
	sl_http1_t p;
	counts_t c;
	assert_int_equal(
	    parse(&p, &c,
	          "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nX-Forwarded-Proto: https\r\n\r\n"
	          "0\r\n\r\n"),
	    0);
	sl_buf_t out = {0};
	sl_http1_build_request(&p.msg, "::1", NULL, SL_FRAME_CHUNKED, false, &out);
	assert_true(has_line(&out, "Transfer-Encoding: chunked"));
	assert_true(has_line(&out, "X-Forwarded-Proto: https"));
	assert_true(has_line(&out, "X-Forwarded-For: ::1"));
	sl_buf_dispose(&out);
	sl_http1_dispose(&p);
}

static void test_response_head(void **state)
{
	sl_http1_t req, resp;
	counts_t c1, c2 = {0};
	assert_int_equal(parse(&req, &c1, "GET / HTTP/1.0\r\n\r\n"), 0);
	sl_http1_init(&resp, false, &cbs, &c2, 8192);
	const char *text = "HTTP/1.1 200 Fine\r\nConnection: X-Hop\r\nX-Hop: 1\r\nContent-Length: 2\r\n\r\nok";
	size_t n;
	assert_int_equal(sl_http1_execute(&resp, text, strlen(text), &n), SL_HTTP1_PAUSED);
	assert_int_equal(resp.msg.status, 200);
	assert_int_equal(resp.msg.content_length, 2);
	sl_buf_t out = {0};
	sl_http1_build_response(&resp.msg, &req.msg, SL_FRAME_LENGTH, true, &out);
	assert_memory_equal(out.base, "HTTP/1.1 200 Fine\r\n", 19);
	assert_true(has_line(&out, "Content-Length: 2"));
	assert_true(has_line(&out, "Connection: keep-alive"));
	assert_true(has_line(&out, "Via: 1.1 sluice"));
	assert_false(has_name(&out, "x-hop"));
	out.len = 0;
	sl_http1_build_response(&resp.msg, &req.msg, SL_FRAME_CHUNKED, false, &out);
	assert_true(has_line(&out, "Transfer-Encoding: chunked"));
	assert_true(has_line(&out, "Connection: close"));
	sl_buf_dispose(&out);
	sl_http1_dispose(&req);
	sl_http1_dispose(&resp);
}

static void test_bad_response_is_502(void **state)
{
	sl_http1_t resp;
	counts_t c = {0};
	sl_http1_init(&resp, false, &cbs, &c, 8192);
	const char *text = "HTTP/1.1 2x0 Nope\r\n\r\n";
	size_t n;
	assert_int_equal(sl_http1_execute(&resp, text, strlen(text), &n), SL_HTTP1_ERROR);
	assert_int_equal(resp.error_status, 502);
	sl_http1_dispose(&resp);
}

/* ---- issue 10: framing that cannot be read two ways ---------------------- */

typedef struct {
	int heads, completes;
	size_t body;
	int first_status; /* status of the first response head */
	bool skip;        /* answer SKIP_BODY to every head (a response to HEAD) */
} stream_t;

static int on_s_head(sl_http1_t *p)
{
	stream_t *s = p->data;
	if (s->heads++ == 0)
		s->first_status = p->msg.status;
	return s->skip ? SL_HTTP1_SKIP_BODY : SL_HTTP1_CONTINUE;
}

static int on_s_body(sl_http1_t *p, const char *at, size_t len)
{
	((stream_t *)p->data)->body += len;
	return SL_HTTP1_CONTINUE;
}

static int on_s_complete(sl_http1_t *p)
{
	((stream_t *)p->data)->completes++;
	return SL_HTTP1_PAUSE;
}

static const sl_http1_callbacks_t stream_cbs = {on_s_head, on_s_body, on_s_complete};

/* Parses a whole stream of messages fed in two pieces split at `split`.
 * Returns the error status, or 0; *left is the number of bytes never
 * consumed (the parser stopped: an upgrade). */
static int parse_stream(sl_http1_t *p, stream_t *s, bool is_request, const char *text, size_t len, size_t split,
                        int64_t max_body)
{
	bool skip = s->skip;
	memset(s, 0, sizeof *s);
	s->skip = skip;
	sl_http1_init(p, is_request, &stream_cbs, s, 8192);
	p->max_body = max_body;
	size_t off = 0, n;
	size_t ends[2] = {split, len};
	for (int i = 0; i < 2; i++) {
		while (off < ends[i] || p->paused) {
			int r = sl_http1_execute(p, text + off, ends[i] - off, &n);
			off += n;
			if (r == SL_HTTP1_ERROR)
				return p->error_status;
			if (r == SL_HTTP1_OK && n == 0 && !p->paused)
				break;
		}
	}
	return 0;
}

static void expect_every_split(bool is_request, const char *text, int want, int completes)
{
	size_t len = strlen(text);
	for (size_t split = 0; split <= len; split++) {
		sl_http1_t p;
		stream_t s = {0};
		int got = parse_stream(&p, &s, is_request, text, len, split, 0);
		if (got != want || (want == 0 && s.completes != completes))
			fail_msg("split %zu of %s: got %d (%d complete), want %d (%d complete)", split, text, got,
			         s.completes, want, completes);
		sl_http1_dispose(&p);
	}
}

static void test_cr_must_precede_lf_everywhere(void **state)
{
	static const char *const bad[] = {
	    "GET / HTTP/1.1\r\nHost: t\r\n\rZGET /SMUGGLED HTTP/1.1\r\nHost: t\r\n\r\n",
	    "GET / HTTP/1.1\r\nHost: t\rX: b\r\n\r\n",
	    "GET / HTTP/1.1\nHost: t\n\n",
	    "GET / HTTP/1.1\r\nHost: t\r\nX: a\r\r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\r;ABCD\r\nhello\r\n0\r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\rXhello\r\n0\r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;a\rb\r\nhello\r\n0\r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\rX\r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nT: a\rb\r\n\r\n",
	    "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nT: a\r\n\rX",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		expect_every_split(true, bad[i], 400, 0);
	/* CR inside a body is data */
	expect_every_split(true, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\na\rb", 0, 1);
	expect_every_split(
	    true, "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\na\rb\r\n0\r\n\r\n", 0, 1);
	/* an empty line before a request line is ignored (RFC 9112 §2.2) */
	expect_every_split(true, "\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n", 0, 1);
}

static void test_request_framing_refusals(void **state)
{
	static const struct {
		const char *text;
		int status;
	} cases[] = {
	    {"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", 400},
	    {"GET / HTTP/1.1\r\nHost: t\r\nX:\r\n b\r\n\r\n", 400},
	    {"POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n0\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 18446744073709551615\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 9223372036854775808\r\n\r\n", 400},
	    {"GET / HTTP/1.1\r\nHost: t\r\n: x\r\n\r\n", 400},
	    {"GET / HTTP/1.1\r\nHost: t\r\n:\r\n\r\n", 400},
	    {"GET  / HTTP/1.1\r\nHost: t\r\n\r\n", 400},
	    {"GET /\x7f HTTP/1.1\r\nHost: t\r\n\r\n", 400},
	    {"GET / HTTP/1.1\r\nHost: t\r\nX: a\x7f\r\n\r\n", 400},
	    {"GET / HTTP/1.1\r\nHost: t\r\nX: a\x01\r\n\r\n", 400},
	    {"CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\nContent-Length: 40\r\n\r\n", 400},
	    {"CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
	    {"GET http://user@good.example/ HTTP/1.1\r\nHost: good.example\r\n\r\n", 400},
	    {"GET http:///x HTTP/1.1\r\nHost: t\r\n\r\n", 400},
	    {"GET x HTTP/1.1\r\nHost: t\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;a \r\nhello\r\n0\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;\r\nhello\r\n0\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n;a\r\nhello\r\n0\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n", 400},
	    {"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nT\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n T: x\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n: x\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\"b\r\nhello\r\n0\r\n\r\n", 400},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		expect_every_split(true, cases[i].text, cases[i].status, 0);
	/* with --max-body-size, a length beyond any limit is 413 */
	sl_http1_t p;
	stream_t s = {0};
	const char *huge = "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 18446744073709551615\r\n\r\n";
	assert_int_equal(parse_stream(&p, &s, true, huge, strlen(huge), 0, 1000), 413);
	sl_http1_dispose(&p);
}

static void test_valid_chunk_extensions_accepted(void **state)
{
	static const char *const good[] = {
	    "5;a=b;c=d\r\nhello\r\n0\r\n\r\n",
	    "5 ;a=b\r\nhello\r\n0\r\n\r\n",
	    "5;a = b ;c\r\nhello\r\n0;last\r\n\r\n",
	    "5;a=\"q \\\" ; x\"\r\nhello\r\n0\r\n\r\n",
	    "0005\r\nhello\r\n0000\r\nA: b\r\nC-D:  e f\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		char text[256];
		snprintf(text, sizeof text, "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n%s",
		         good[i]);
		expect_every_split(true, text, 0, 1);
		sl_http1_t p;
		stream_t s = {0};
		assert_int_equal(parse_stream(&p, &s, true, text, strlen(text), 0, 0), 0);
		assert_int_equal(s.body, 5);
		sl_http1_dispose(&p);
	}
}

static void test_response_framing(void **state)
{
	static const struct {
		const char *text;
		int status, completes;
	} cases[] = {
	    {"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n", 502, 0},
	    {"HTTP/1.1 0 OK\r\nContent-Length: 0\r\n\r\n", 502, 0},
	    {"HTTP/1.1 099 OK\r\nContent-Length: 0\r\n\r\n", 502, 0},
	    {"HTTP/1.1 600 OK\r\nContent-Length: 0\r\n\r\n", 502, 0},
	    {"HTTP/1.1 200 O\rK\r\nContent-Length: 0\r\n\r\n", 502, 0},
	    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 502, 0},
	    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 502, 0},
	    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc", 502, 0},
	    {"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n", 502, 0},
	    {"HTTP/1.1 200 OK\r\nX: a\x01\r\nContent-Length: 0\r\n\r\n", 502, 0},
	    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", 0, 1},
	    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\t;a=b \r\nhello\r\n0\r\n\r\n", 0, 1},
	    {"HTTP/1.1 200 Fine\tthanks\r\nContent-Length: 0\r\n\r\n", 0, 1},
	    /* 1xx, 204 and 304 end at their head whatever they announce */
	    {"HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\n\r\n", 0, 1},
	    {"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 1},
	    {"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </b>\r\n\r\n"
	     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
	     0, 3},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		expect_every_split(false, cases[i].text, cases[i].status, cases[i].completes);

	/* A 100 announcing a body: the bytes after its head are the next head. */
	const char *inject = "HTTP/1.1 100 Continue\r\nContent-Length: 58\r\n\r\n"
	                     "HTTP/1.1 200 OK\r\nX-Injected: 1\r\nContent-Length: 5\r\n\r\nPWNED";
	sl_http1_t p;
	stream_t s = {0};
	assert_int_equal(parse_stream(&p, &s, false, inject, strlen(inject), 0, 0), 0);
	assert_int_equal(s.heads, 2);
	assert_int_equal(s.first_status, 100);
	assert_int_equal(p.msg.status, 200);
	assert_int_equal(s.body, 5);
	sl_http1_dispose(&p);

	/* A 204 with a length: its "body" is left over, not taken as one. */
	const char *nc = "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nPWNED";
	size_t n;
	sl_http1_init(&p, false, &stream_cbs, &s, 8192);
	memset(&s, 0, sizeof s);
	assert_int_equal(sl_http1_execute(&p, nc, strlen(nc), &n), SL_HTTP1_PAUSED);
	assert_int_equal(n, strlen(nc) - 5);
	assert_int_equal(s.body, 0);
	sl_http1_dispose(&p);

	/* HTTP/1.0 with Transfer-Encoding: decoded, never reused (RFC 9112 §6.1) */
	const char *old =
	    "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n2\r\nok\r\n0\r\n\r\n";
	assert_int_equal(parse_stream(&p, &s, false, old, strlen(old), 0, 0), 0);
	assert_int_equal(s.body, 2);
	assert_false(p.msg.keep_alive);
	sl_http1_dispose(&p);

	/* A response to HEAD ends at its head, and so do the bodiless ones. */
	s.skip = true;
	const char *head = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
	assert_int_equal(parse_stream(&p, &s, false, head, strlen(head), 0, 0), 0);
	assert_int_equal(s.completes, 1);
	assert_true(p.msg.keep_alive);
	assert_false(sl_http1_needs_eof(&p));
	sl_http1_dispose(&p);
}

static void test_framing_is_rebuilt_not_copied(void **state)
{
	sl_http1_t p;
	counts_t c;
	sl_buf_t out = {0};
	/* Connection cannot remove the framing or the Host; a length is re-stated. */
	assert_int_equal(parse(&p, &c,
	                       "POST / HTTP/1.1\r\nHost: t\r\nConnection: Content-Length, Host, Transfer-Encoding\r\n"
	                       "Content-Length: 0005\r\nX_Forwarded_For: 6.6.6.6\r\n\r\nhello"),
	                 0);
	sl_http1_build_request(&p.msg, "192.0.2.7", "target:8000", sl_http1_request_framing(&p.msg), false, &out);
	assert_true(has_line(&out, "Content-Length: 5"));
	assert_true(has_line(&out, "Host: t"));
	assert_true(has_line(&out, "X-Forwarded-For: 192.0.2.7"));
	assert_false(has_name(&out, "x_forwarded_for"));
	assert_false(has_name(&out, "connection"));
	sl_http1_dispose(&p);

	/* absolute-form: Host is the target's authority (RFC 9112 §3.2.2) */
	out.len = 0;
	assert_int_equal(parse(&p, &c, "GET http://good.example:81/x HTTP/1.1\r\nHost: evil.example\r\n\r\n"), 0);
	sl_http1_build_request(&p.msg, "192.0.2.7", "target:8000", sl_http1_request_framing(&p.msg), false, &out);
	assert_true(has_line(&out, "Host: good.example:81"));
	assert_null(memmem(out.base, out.len, "evil", 4));
	assert_false(has_name(&out, "content-length"));
	sl_http1_dispose(&p);

	/* HTTP/1.0 without Host: the target's */
	out.len = 0;
	assert_int_equal(parse(&p, &c, "GET /x HTTP/1.0\r\n\r\n"), 0);
	sl_http1_build_request(&p.msg, "192.0.2.7", "target:8000", sl_http1_request_framing(&p.msg), false, &out);
	assert_true(has_line(&out, "Host: target:8000"));
	assert_memory_equal(out.base, "GET /x HTTP/1.1\r\n", 17);
	sl_http1_dispose(&p);

	/* A response: the same for its framing; 1xx and 204 carry none. */
	sl_http1_t req, resp;
	counts_t c1, c2 = {0};
	assert_int_equal(parse(&req, &c1, "GET / HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
	sl_http1_init(&resp, false, &cbs, &c2, 8192);
	const char *text = "HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello";
	size_t n;
	assert_int_equal(sl_http1_execute(&resp, text, strlen(text), &n), SL_HTTP1_PAUSED);
	out.len = 0;
	sl_http1_build_response(&resp.msg, &req.msg, SL_FRAME_LENGTH, true, &out);
	assert_true(has_line(&out, "Content-Length: 5"));
	out.len = 0;
	sl_http1_build_response(&resp.msg, &req.msg, SL_FRAME_NONE, true, &out);
	assert_false(has_name(&out, "content-length"));
	assert_false(has_name(&out, "transfer-encoding"));
	sl_buf_dispose(&out);
	sl_http1_dispose(&req);
	sl_http1_dispose(&resp);
}

static void test_json_escape(void **state)
{
	char out[32];
	sl_json_escape("a\"b\\c\n", out, sizeof out);
	assert_string_equal(out, "a\\\"b\\\\c\\u000a");
	sl_json_escape("0123456789012345678901234567890123456789", out, 12);
	assert_true(strlen(out) < 12);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_obs_fold_rejected_at_every_split),
	    cmocka_unit_test(test_chunk_crlf_checked_at_every_split),
	    cmocka_unit_test(test_strict_request_checks),
	    cmocka_unit_test(test_head_limit),
	    cmocka_unit_test(test_expect_and_framing_facts),
	    cmocka_unit_test(test_request_head_rewrite),
	    cmocka_unit_test(test_chunked_request_reframed),
	    cmocka_unit_test(test_response_head),
	    cmocka_unit_test(test_bad_response_is_502),
	    cmocka_unit_test(test_cr_must_precede_lf_everywhere),
	    cmocka_unit_test(test_request_framing_refusals),
	    cmocka_unit_test(test_valid_chunk_extensions_accepted),
	    cmocka_unit_test(test_response_framing),
	    cmocka_unit_test(test_framing_is_rebuilt_not_copied),
	    cmocka_unit_test(test_json_escape),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
