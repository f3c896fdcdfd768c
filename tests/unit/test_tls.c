/* test_tls.c — the TLS stream (src/tls.c) with no socket: a client and a
 * server stream connected back to back in memory, each one's output fed to
 * the other. Certificates are made with the openssl command line into a
 * temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/ssl.h>

#include "tls.h"

static char dir[] = "/tmp/sluice-test-tls.XXXXXX";
static char ca[256], cert[256], key[256], other_key[256];

static int run(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	return system(cmd);
}

static int setup(void **state)
{
	(void)state;
	if (!mkdtemp(dir))
		return -1;
	snprintf(ca, sizeof ca, "%s/ca.crt", dir);
	snprintf(cert, sizeof cert, "%s/leaf.crt", dir);
	snprintf(key, sizeof key, "%s/leaf.key", dir);
	snprintf(other_key, sizeof other_key, "%s/other.key", dir);
	int r = run("cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
	            "-subj /CN=unit-CA -keyout ca.key -out ca.crt >/dev/null 2>&1 && "
	            "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > leaf.ext && "
	            "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost "
	            "-keyout leaf.key -out leaf.csr >/dev/null 2>&1 && "
	            "openssl x509 -req -in leaf.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
	            "-extfile leaf.ext -out leaf.crt >/dev/null 2>&1 && "
	            "openssl genpkey -algorithm ec -pkeyopt ec_paramgen_curve:P-256 -out other.key >/dev/null 2>&1",
	            dir);
	return r == 0 ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	run("rm -rf %s", dir);
	return 0;
}

/* A connected pair and their output buffers. */
typedef struct {
	sl_buf_t cout, sout;
	sl_tls_t *c, *s;
	sl_tls_listener_t l;
	SSL_CTX *cctx;
} pair_t;

/* Moves each side's output to the other until nothing moves. */
static void shuttle(pair_t *p)
{
	for (int i = 0; i < 50; i++) {
		bool moved = false;
		if (p->cout.len) {
			sl_tls_feed(p->s, p->cout.base, p->cout.len);
			p->cout.len = 0;
			moved = true;
		}
		if (!sl_tls_handshake_done(p->s))
			sl_tls_handshake(p->s);
		if (p->sout.len) {
			sl_tls_feed(p->c, p->sout.base, p->sout.len);
			p->sout.len = 0;
			moved = true;
		}
		if (!sl_tls_handshake_done(p->c))
			sl_tls_handshake(p->c);
		if (!moved)
			return;
	}
}

static void open_pair(pair_t *p, const char *name, SSL_SESSION **cache)
{
	memset(p, 0, sizeof *p);
	char err[512];
	assert_int_equal(sl_tls_listener_init(&p->l, cert, key, err, sizeof err), 0);
	p->cctx = sl_tls_client_ctx(ca, false, "--cacert", err, sizeof err);
	assert_non_null(p->cctx);
	p->c = sl_tls_new_client(p->cctx, name, cache, &p->cout);
	p->s = sl_tls_new_server(&p->l, &p->sout);
	assert_int_equal(sl_tls_handshake(p->c), 0); /* the ClientHello, then wait */
	shuttle(p);
}

static void close_pair(pair_t *p)
{
	sl_tls_free(p->c);
	sl_tls_free(p->s);
	SSL_CTX_free(p->cctx);
	sl_tls_listener_dispose(&p->l);
	sl_buf_dispose(&p->cout);
	sl_buf_dispose(&p->sout);
}

/* Reads everything the stream has into out; returns the count. */
static size_t drain(sl_tls_t *t, char *out, size_t cap, size_t step)
{
	size_t got = 0;
	for (;;) {
		ssize_t n = sl_tls_read(t, out + got, cap - got < step ? cap - got : step);
		if (n <= 0)
			return got;
		got += (size_t)n;
	}
}

static void test_handshake_and_data_both_ways(void **state)
{
	(void)state;
	pair_t p;
	open_pair(&p, "localhost", NULL);
	assert_true(sl_tls_handshake_done(p.c));
	assert_true(sl_tls_handshake_done(p.s));
	uv_buf_t req[2] = {uv_buf_init("GET / HTTP/1.1\r\n", 16), uv_buf_init("Host: x\r\n\r\n", 11)};
	assert_int_equal(sl_tls_write(p.c, req, 2), 0);
	assert_true(p.cout.len > 27); /* ciphertext, not the plaintext */
	shuttle(&p);
	char buf[256];
	size_t n = drain(p.s, buf, sizeof buf, sizeof buf);
	assert_int_equal(n, 27);
	assert_memory_equal(buf, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
	uv_buf_t resp = uv_buf_init("HTTP/1.1 200 OK\r\n\r\n", 19);
	assert_int_equal(sl_tls_write(p.s, &resp, 1), 0);
	shuttle(&p);
	assert_int_equal(drain(p.c, buf, sizeof buf, sizeof buf), 19);
	assert_true(sl_tls_clean(p.c) && sl_tls_clean(p.s));
	close_pair(&p);
}

static void test_a_small_buffer_leaves_the_rest_waiting(void **state)
{
	(void)state;
	pair_t p;
	open_pair(&p, "127.0.0.1", NULL); /* an IP name, checked as an IP */
	assert_true(sl_tls_handshake_done(p.c));
	static char big[40000];
	memset(big, 'z', sizeof big);
	uv_buf_t b = uv_buf_init(big, sizeof big);
	assert_int_equal(sl_tls_write(p.s, &b, 1), 0);
	shuttle(&p);
	static char got[40000];
	assert_int_equal(sl_tls_read(p.c, got, 1000), 1000);
	assert_true(sl_tls_has_input(p.c)); /* the rest waits in the stream */
	assert_false(sl_tls_clean(p.c));    /* not fit for the pool */
	size_t n = 1000 + drain(p.c, got + 1000, sizeof got - 1000, 3000);
	assert_int_equal(n, sizeof big);
	assert_false(sl_tls_has_input(p.c));
	assert_memory_equal(got, big, sizeof big);
	close_pair(&p);
}

static void test_wrong_name_fails_with_the_reason(void **state)
{
	(void)state;
	pair_t p;
	open_pair(&p, "wrong.example", NULL);
	assert_false(sl_tls_handshake_done(p.c));
	assert_int_equal(sl_tls_handshake(p.c), SL_TLS_FAILED);
	assert_non_null(strstr(sl_tls_reason(p.c), "certificate verify failed"));
	assert_non_null(strstr(sl_tls_reason(p.c), "hostname mismatch"));
	close_pair(&p);
}

static void test_close_notify_ends_the_stream(void **state)
{
	(void)state;
	pair_t p;
	open_pair(&p, "localhost", NULL);
	sl_tls_close_notify(p.s);
	assert_true(p.sout.len > 0);
	shuttle(&p);
	char buf[64];
	assert_int_equal(sl_tls_read(p.c, buf, sizeof buf), SL_TLS_CLOSED);
	assert_false(sl_tls_clean(p.c));
	uv_buf_t b = uv_buf_init("x", 1);
	assert_int_equal(sl_tls_write(p.s, &b, 1), SL_TLS_FAILED); /* nothing after our own close_notify */
	close_pair(&p);
}

static void test_second_connection_resumes(void **state)
{
	(void)state;
	SSL_SESSION *cache = NULL;
	pair_t p;
	open_pair(&p, "localhost", &cache);
	assert_false(sl_tls_resumed(p.c));
	char buf[64];
	sl_tls_read(p.c, buf, sizeof buf); /* TLS 1.3 tickets arrive after the handshake */
	assert_non_null(cache);
	/* the second connection to the same listener (same ticket keys) */
	pair_t q;
	memset(&q, 0, sizeof q);
	q.c = sl_tls_new_client(p.cctx, "localhost", &cache, &q.cout);
	q.s = sl_tls_new_server(&p.l, &q.sout);
	sl_tls_handshake(q.c);
	shuttle(&q);
	assert_true(sl_tls_handshake_done(q.c));
	assert_true(sl_tls_resumed(q.c));
	sl_tls_free(q.c);
	sl_tls_free(q.s);
	sl_buf_dispose(&q.cout);
	sl_buf_dispose(&q.sout);
	close_pair(&p);
	SSL_SESSION_free(cache);
}

static void test_garbage_fails_the_server_handshake(void **state)
{
	(void)state;
	pair_t p;
	memset(&p, 0, sizeof p);
	char err[512];
	assert_int_equal(sl_tls_listener_init(&p.l, cert, key, err, sizeof err), 0);
	p.s = sl_tls_new_server(&p.l, &p.sout);
	const char *plain = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	sl_tls_feed(p.s, plain, strlen(plain));
	assert_int_equal(sl_tls_handshake(p.s), SL_TLS_FAILED);
	assert_non_null(strstr(sl_tls_reason(p.s), "http request"));
	sl_tls_free(p.s);
	sl_tls_listener_dispose(&p.l);
	sl_buf_dispose(&p.sout);
}

static void test_listener_files_named_and_reload_keeps_old(void **state)
{
	(void)state;
	sl_tls_listener_t l;
	char err[512];
	assert_int_equal(sl_tls_listener_init(&l, cert, other_key, err, sizeof err), -1);
	assert_non_null(strstr(err, "does not match"));
	assert_non_null(strstr(err, other_key));
	assert_int_equal(sl_tls_listener_init(&l, "/nonexistent.pem", key, err, sizeof err), -1);
	assert_non_null(strstr(err, "--tls-cert /nonexistent.pem cannot be read"));
	assert_int_equal(sl_tls_listener_init(&l, cert, key, err, sizeof err), 0);
	SSL_CTX *before = l.ctx;
	assert_int_equal(sl_tls_listener_reload(&l, cert, other_key, err, sizeof err), -1);
	assert_ptr_equal(l.ctx, before);
	assert_int_equal(sl_tls_listener_reload(&l, cert, key, err, sizeof err), 0);
	assert_ptr_not_equal(l.ctx, NULL);
	sl_tls_listener_dispose(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_handshake_and_data_both_ways),
	    cmocka_unit_test(test_a_small_buffer_leaves_the_rest_waiting),
	    cmocka_unit_test(test_wrong_name_fails_with_the_reason),
	    cmocka_unit_test(test_close_notify_ends_the_stream),
	    cmocka_unit_test(test_second_connection_resumes),
	    cmocka_unit_test(test_garbage_fails_the_server_handshake),
	    cmocka_unit_test(test_listener_files_named_and_reload_keeps_old),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
