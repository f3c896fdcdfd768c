/* tls.c — see tls.h. */
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "io.h"

struct sl_tls {
	SSL *ssl;
	BIO *in;             /* memory BIO: ciphertext fed, not yet consumed */
	sl_buf_t *out;       /* the thread's output buffer (the write BIO appends to it) */
	SSL_SESSION **cache; /* client: the thread's resumable session slot */
	bool done;           /* handshake finished */
	bool failed;         /* a fatal error: nothing more to do but close */
	bool peer_closed;    /* close_notify received */
	bool notified;       /* close_notify sent */
	char reason[160];
};

static const unsigned char alpn_http11[] = "\x08http/1.1";

/* ---- the output BIO: appends to the borrowed buffer ------------------------ */

static BIO_METHOD *out_method;
static pthread_once_t out_once = PTHREAD_ONCE_INIT;

static int out_write(BIO *b, const char *data, int len)
{
	sl_buf_append(BIO_get_data(b), data, (size_t)len);
	return len;
}

static long out_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)b;
	(void)num;
	(void)ptr;
	return cmd == BIO_CTRL_FLUSH ? 1 : 0; /* written at once: a flush always succeeds */
}

static int out_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static void do_make_method(void)
{
	out_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "sluice output");
	BIO_meth_set_write(out_method, out_write);
	BIO_meth_set_ctrl(out_method, out_ctrl);
	BIO_meth_set_create(out_method, out_create);
}

/* ---- errors ------------------------------------------------------------------ */

/* The first queued OpenSSL error as a short reason ("wrong version number"),
 * or fallback; empties the thread's error queue. */
static void do_error_text(char *out, size_t len, const char *fallback)
{
	unsigned long e = ERR_get_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;
	if (r)
		snprintf(out, len, "%s", r);
	else if (e)
		ERR_error_string_n(e, out, len);
	else
		snprintf(out, len, "%s", fallback);
	ERR_clear_error();
}

static void do_fail(sl_tls_t *t, int ssl_ret, int err)
{
	t->failed = true;
	if (t->reason[0])
		return;
	long v = SSL_get_verify_result(t->ssl);
	if (!SSL_is_server(t->ssl) && v != X509_V_OK) {
		snprintf(t->reason, sizeof t->reason, "certificate verify failed: %s",
		         X509_verify_cert_error_string(v));
		ERR_clear_error();
		return;
	}
	if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
		snprintf(t->reason, sizeof t->reason, "unexpected end of input");
	else
		do_error_text(t->reason, sizeof t->reason, "handshake failed");
	(void)ssl_ret;
}

/* ---- contexts ------------------------------------------------------------------ */

static void do_common(SSL_CTX *ctx)
{
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	/* An idle connection keeps no record buffers (nginx does the same). */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
}

static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
	sl_tls_t *t = SSL_get_app_data(ssl);
	if (t == NULL || t->cache == NULL)
		return 0;
	if (*t->cache)
		SSL_SESSION_free(*t->cache);
	*t->cache = sess; /* the reference is ours now */
	return 1;
}

SSL_CTX *sl_tls_client_ctx(const char *ca_file, bool insecure, const char *ca_option, char *err, size_t errlen)
{
	pthread_once(&out_once, do_make_method);
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL) {
		char why[160];
		do_error_text(why, sizeof why, "out of memory");
		sl_errorf(-1, err, errlen, "cannot set up TLS: %s", why);
		return NULL;
	}
	do_common(ctx);
	SSL_CTX_set_alpn_protos(ctx, alpn_http11, sizeof alpn_http11 - 1);
	/* Sessions go to the stream's cache (per worker), never OpenSSL's
	 * internal store, which a client does not search anyway. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, on_new_session);
	if (insecure) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
		return ctx;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (ca_file) {
		if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
			char why[160];
			do_error_text(why, sizeof why, strerror(errno));
			sl_errorf(-1, err, errlen, "%s %s cannot be loaded (%s); give a readable PEM CA file",
			          ca_option, ca_file, why);
			SSL_CTX_free(ctx);
			return NULL;
		}
	} else {
		/* The system store as its bundle file (Debian's ca-certificates:
		 * /etc/ssl/certs/ca-certificates.crt, or $SSL_CERT_FILE), read
		 * whole now. Not the hashed directory of
		 * SSL_CTX_set_default_verify_paths: that is searched lazily, with
		 * opendir and file reads inside a handshake, blocking a worker's
		 * event loop on the disk whenever an issuer is not in memory. */
		const char *file = getenv(X509_get_default_cert_file_env());
		if (file == NULL || *file == '\0')
			file = X509_get_default_cert_file();
		if (SSL_CTX_load_verify_locations(ctx, file, NULL) != 1) {
			char why[160];
			do_error_text(why, sizeof why, strerror(errno));
			sl_errorf(-1, err, errlen,
			          "the system's CA store %s cannot be loaded (%s); install ca-certificates or pass %s",
			          file, why, ca_option);
			SSL_CTX_free(ctx);
			return NULL;
		}
	}
	return ctx;
}

static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                   unsigned int inlen, void *arg)
{
	(void)ssl;
	(void)arg;
	unsigned char *sel;
	if (SSL_select_next_proto(&sel, outlen, alpn_http11, sizeof alpn_http11 - 1, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK; /* h2 only, say: no ALPN, and HTTP/1.1 anyway */
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

/* OpenSSL's pem_password_cb: no pass phrase (0 bytes), noted in *u. */
static int on_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	*(bool *)u = true;
	return 0;
}

static SSL_CTX *do_server_ctx(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
	pthread_once(&out_once, do_make_method);
	FILE *f = fopen(cert_file, "r");
	if (f == NULL)
		return (void)sl_errorf(-1, err, errlen, "--tls-cert %s cannot be read: %s", cert_file, strerror(errno)),
		       NULL;
	fclose(f);
	if ((f = fopen(key_file, "r")) == NULL)
		return (void)sl_errorf(-1, err, errlen, "--tls-key %s cannot be read: %s", key_file, strerror(errno)),
		       NULL;
	fclose(f);
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL)
		return (void)sl_errorf(-1, err, errlen, "cannot set up TLS: out of memory"), NULL;
	do_common(ctx);
	SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_alpn_select_cb(ctx, on_alpn, NULL);
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"sluice", 6);
	/* Resumption by ticket only, as nginx's default: OpenSSL's internal
	 * server cache is a locked hash scanned every 255 connections, and
	 * costs more per new connection than the resumptions it would add (TLS
	 * 1.2 clients without tickets do full handshakes). The chain is the
	 * one in the file: building one from the store on every full handshake
	 * is work for nothing (nginx sets the same mode). */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_AUTO_CLEAR |
	                                        SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_set_mode(ctx, SSL_MODE_NO_AUTO_CHAIN);
	/* An encrypted key would make OpenSSL ask for a pass phrase on the
	 * terminal (a hang at start, a stuck SIGHUP): refuse it instead. */
	bool asked = false;
	SSL_CTX_set_default_passwd_cb(ctx, on_passphrase);
	SSL_CTX_set_default_passwd_cb_userdata(ctx, &asked);
	char why[160];
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
		do_error_text(why, sizeof why, "no certificate");
		sl_errorf(-1, err, errlen, "--tls-cert %s holds no usable PEM certificate (%s)", cert_file, why);
	} else if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
		do_error_text(why, sizeof why, "no key");
		if (asked)
			sl_errorf(-1, err, errlen,
			          "--tls-key %s is encrypted; give sluice an unencrypted key (openssl pkey -in %s -out "
			          "NEW.key)",
			          key_file, key_file);
		else if (strstr(why, "mismatch"))
			sl_errorf(-1, err, errlen, "--tls-key %s does not match the certificate in --tls-cert %s",
			          key_file, cert_file);
		else
			sl_errorf(-1, err, errlen, "--tls-key %s holds no usable PEM private key (%s)", key_file, why);
	} else if (SSL_CTX_check_private_key(ctx) != 1) {
		ERR_clear_error();
		sl_errorf(-1, err, errlen, "--tls-key %s does not match the certificate in --tls-cert %s", key_file,
		          cert_file);
	} else {
		return ctx;
	}
	SSL_CTX_free(ctx);
	return NULL;
}

int sl_tls_listener_init(sl_tls_listener_t *l, const char *cert_file, const char *key_file, char *err, size_t errlen)
{
	l->ctx = do_server_ctx(cert_file, key_file, err, errlen);
	if (l->ctx == NULL)
		return -1;
	pthread_mutex_init(&l->mu, NULL);
	return 0;
}

int sl_tls_listener_reload(sl_tls_listener_t *l, const char *cert_file, const char *key_file, char *err, size_t errlen)
{
	SSL_CTX *next = do_server_ctx(cert_file, key_file, err, errlen);
	if (next == NULL)
		return -1;
	pthread_mutex_lock(&l->mu);
	SSL_CTX *old = l->ctx;
	l->ctx = next;
	pthread_mutex_unlock(&l->mu);
	SSL_CTX_free(old); /* connections made with it hold their own reference */
	return 0;
}

void sl_tls_listener_dispose(sl_tls_listener_t *l)
{
	if (l->ctx == NULL)
		return;
	SSL_CTX_free(l->ctx);
	l->ctx = NULL;
	pthread_mutex_destroy(&l->mu);
}

/* ---- streams --------------------------------------------------------------------- */

static sl_tls_t *do_new(SSL_CTX *ctx, sl_buf_t *out)
{
	sl_tls_t *t = sl_calloc(1, sizeof *t);
	t->out = out;
	t->ssl = SSL_new(ctx);
	t->in = BIO_new(BIO_s_mem());
	BIO *w = BIO_new(out_method);
	if (t->ssl == NULL || t->in == NULL || w == NULL) {
		fprintf(stderr, "sluice: out of memory (TLS)\n");
		abort();
	}
	/* An empty input BIO means "more later", never end of file. */
	BIO_set_mem_eof_return(t->in, -1);
	BIO_set_data(w, out);
	SSL_set_bio(t->ssl, t->in, w);
	SSL_set_app_data(t->ssl, t);
	return t;
}

sl_tls_t *sl_tls_new_client(SSL_CTX *ctx, const char *name, SSL_SESSION **cache, sl_buf_t *out)
{
	sl_tls_t *t = do_new(ctx, out);
	t->cache = cache;
	SSL_set_connect_state(t->ssl);
	unsigned char ip[16];
	bool is_ip = inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;
	if (is_ip) {
		X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), name);
	} else {
		SSL_set_tlsext_host_name(t->ssl, name);
		SSL_set1_host(t->ssl, name);
	}
	if (cache && *cache && SSL_SESSION_is_resumable(*cache))
		SSL_set_session(t->ssl, *cache);
	return t;
}

sl_tls_t *sl_tls_new_server(sl_tls_listener_t *l, sl_buf_t *out)
{
	pthread_mutex_lock(&l->mu);
	sl_tls_t *t = do_new(l->ctx, out); /* SSL_new takes its own reference to the context */
	pthread_mutex_unlock(&l->mu);
	SSL_set_accept_state(t->ssl);
	return t;
}

void sl_tls_free(sl_tls_t *t)
{
	if (t == NULL)
		return;
	/* OpenSSL drops the session of a connection freed without a complete
	 * shutdown, so a pooled connection's idle close would cost the next one
	 * its resumption. As nginx (ngx_ssl_shutdown), a connection that did
	 * not fail counts as shut down; a failed one still loses its session. */
	if (t->done && !t->failed)
		SSL_set_shutdown(t->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
	SSL_free(t->ssl); /* and both BIOs */
	free(t);
}

void sl_tls_feed(sl_tls_t *t, const char *data, size_t len)
{
	BIO_write(t->in, data, (int)len);
}

int sl_tls_handshake(sl_tls_t *t)
{
	if (t->done)
		return 1;
	if (t->failed)
		return SL_TLS_FAILED;
	ERR_clear_error();
	int r = SSL_do_handshake(t->ssl);
	if (r == 1) {
		t->done = true;
		return 1;
	}
	int e = SSL_get_error(t->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	do_fail(t, r, e);
	return SL_TLS_FAILED;
}

bool sl_tls_handshake_done(const sl_tls_t *t)
{
	return t->done;
}

ssize_t sl_tls_read(sl_tls_t *t, char *buf, size_t len)
{
	if (t->failed)
		return SL_TLS_FAILED;
	if (t->peer_closed)
		return SL_TLS_CLOSED;
	ERR_clear_error();
	int n = SSL_read(t->ssl, buf, (int)(len > INT32_MAX ? INT32_MAX : len));
	if (n > 0)
		return n;
	int e = SSL_get_error(t->ssl, n);
	switch (e) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE: return 0;
	case SSL_ERROR_ZERO_RETURN: t->peer_closed = true; return SL_TLS_CLOSED;
	default: do_fail(t, n, e); return SL_TLS_FAILED;
	}
}

bool sl_tls_has_input(const sl_tls_t *t)
{
	return !t->failed && (BIO_ctrl_pending(t->in) > 0 || SSL_pending(t->ssl) > 0);
}

int sl_tls_write(sl_tls_t *t, const uv_buf_t *bufs, unsigned n)
{
	if (t->failed || t->notified)
		return SL_TLS_FAILED;
	for (unsigned i = 0; i < n; i++) {
		if (bufs[i].len == 0)
			continue;
		ERR_clear_error();
		/* The output BIO takes everything: a write is whole or fails. */
		int r = SSL_write(t->ssl, bufs[i].base, (int)bufs[i].len);
		if (r <= 0) {
			do_fail(t, r, SSL_get_error(t->ssl, r));
			return SL_TLS_FAILED;
		}
	}
	return 0;
}

void sl_tls_close_notify(sl_tls_t *t)
{
	if (t->notified || t->failed || !t->done)
		return;
	t->notified = true;
	ERR_clear_error();
	SSL_shutdown(t->ssl); /* 0: sent, the peer's not yet read; we do not wait for it */
	ERR_clear_error();
}

int sl_tls_flush(sl_tls_t *t, uv_stream_t *s, uv_write_cb cb, bool *wrote)
{
	sl_buf_t *o = t->out;
	if (o->len == 0)
		return 0;
	uv_buf_t b = uv_buf_init(o->base, (unsigned)o->len);
	o->len = 0; /* sl_io_write copies what the kernel does not take */
	return sl_io_write(s, &b, 1, cb, wrote);
}

sl_buf_t *sl_tls_output(sl_tls_t *t)
{
	return t->out;
}

bool sl_tls_clean(const sl_tls_t *t)
{
	return t->done && !t->failed && !t->peer_closed && !t->notified && BIO_ctrl_pending(t->in) == 0 &&
	       SSL_pending(t->ssl) == 0;
}

bool sl_tls_resumed(const sl_tls_t *t)
{
	return SSL_session_reused(t->ssl) == 1;
}

const char *sl_tls_reason(const sl_tls_t *t)
{
	return t->reason[0] ? t->reason : "TLS failure";
}
