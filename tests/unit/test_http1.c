/* Unit tests for http1.c: strict parsing beyond llhttp, and the heads that
 * sluice builds (hop-by-hop removal, X-Forwarded-*, Via, framing). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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
	          "X-Secret: 1\r\nKeep-Alive: 300\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n"
	          "Upgrade: h2c\r\nX-Forwarded-For: 10.0.0.1\r\nVia: 1.1 edge\r\nX-Keep: yes\r\n"
	          "Trailer: X-T\r\n\r\n"),
	    0);
	sl_buf_t out = {0};
	sl_http1_build_request(&p.msg, "192.0.2.7", SL_FRAME_AS_IS, &out);
	assert_memory_equal(out.base, "GET http://example.org/x?y=1 HTTP/1.1\r\n", 39);
	assert_true(has_line(&out, "Host: example.org"));
	assert_true(has_line(&out, "X-Keep: yes"));
	assert_true(has_line(&out, "X-Forwarded-For: 10.0.0.1, 192.0.2.7"));
	assert_true(has_line(&out, "X-Forwarded-Proto: http"));
	assert_true(has_line(&out, "Via: 1.1 edge, 1.1 sluice"));
	const char *gone[] = {"connection", "x-secret", "keep-alive", "proxy-connection",
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
	sl_http1_build_request(&p.msg, "::1", SL_FRAME_CHUNKED, &out);
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
	sl_http1_build_response(&resp.msg, &req.msg, SL_FRAME_AS_IS, true, &out);
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
	    cmocka_unit_test(test_json_escape),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
