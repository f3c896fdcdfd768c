/* target.c — URL parsing, the one name resolution, and request formatting.
 *
 * The request is built once: request line, Host (as written in the URL),
 * User-Agent, the user's headers in order, Content-Length when there is a
 * body (or the method normally has one), Connection: close with
 * --no-keepalive, then the body. A user header replaces our Host or
 * User-Agent. */
#include "target.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <netinet/in.h>
#include <openssl/ssl.h>
#include <uv.h>

#include "tls.h"

static int do_error(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int do_error(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

/* A growable string for the one-time formatting; failures stick in `oom`. */
typedef struct {
	char *p;
	size_t len, cap;
	bool oom;
} strbuf_t;

static void do_append(strbuf_t *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 512;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void do_appendf(strbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void do_appendf(strbuf_t *b, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		b->oom = true;
	else
		do_append(b, tmp, (size_t)n);
}

/* Does the user's header list name this header? */
static const char *do_find_header(const sl_load_opts_t *o, const char *name)
{
	size_t n = strlen(name);
	for (size_t i = 0; i < o->nheaders; i++)
		if (!strncasecmp(o->headers[i], name, n) && o->headers[i][n] == ':')
			return o->headers[i] + n + 1;
	return NULL;
}

typedef struct {
	char host[256]; /* without brackets */
	char port[8];
	const char *authority; /* as written, for Host */
	size_t authority_len;
	const char *path; /* from '/' or '?', up to '#' */
	size_t path_len;
	bool tls; /* https:// */
} url_t;

static int do_parse_url(url_t *u, const char *url, char *err, size_t errlen)
{
	memset(u, 0, sizeof(*u));
	u->tls = strncasecmp(url, "https://", 8) == 0;
	if (!u->tls && strncasecmp(url, "http://", 7) != 0) {
		if (strstr(url, "://"))
			return do_error(err, errlen, "--url must be an http:// or https:// URL, not '%s'.", url);
		return do_error(err, errlen, "--url must look like http[s]://host[:port][/path], not '%s'.", url);
	}
	const char *a = url + (u->tls ? 8 : 7);
	size_t alen = strcspn(a, "/?#");
	u->authority = a;
	u->authority_len = alen;
	if (memchr(a, '@', alen))
		return do_error(err, errlen, "--url must not carry user information, in '%s'.", url);
	const char *host = a, *port = NULL;
	size_t hlen;
	if (alen && a[0] == '[') {
		const char *close = memchr(a, ']', alen);
		if (!close)
			return do_error(err, errlen, "--url has an unterminated [IPv6] host, in '%s'.", url);
		host = a + 1;
		hlen = (size_t)(close - host);
		if (close + 1 < a + alen) {
			if (close[1] != ':')
				return do_error(err, errlen, "--url has junk after its [IPv6] host, in '%s'.", url);
			port = close + 2;
		}
	} else {
		const char *colon = memchr(a, ':', alen);
		hlen = colon ? (size_t)(colon - a) : alen;
		if (colon)
			port = colon + 1;
	}
	if (hlen == 0 || hlen >= sizeof(u->host))
		return do_error(err, errlen, "--url has no usable host, in '%s'.", url);
	memcpy(u->host, host, hlen);
	if (port) {
		size_t plen = (size_t)(a + alen - port);
		unsigned long v = 0;
		bool ok = plen >= 1 && plen <= 5;
		for (size_t i = 0; ok && i < plen; i++) {
			ok = port[i] >= '0' && port[i] <= '9';
			v = v * 10 + (unsigned long)(port[i] - '0');
		}
		if (!ok || v < 1 || v > 65535)
			return do_error(err, errlen, "--url has a bad port (1 to 65535), in '%s'.", url);
		snprintf(u->port, sizeof(u->port), "%lu", v);
	} else {
		strcpy(u->port, u->tls ? "443" : "80");
	}
	u->path = a + alen;
	u->path_len = strcspn(u->path, "#");
	for (size_t i = 0; i < u->path_len; i++)
		if ((unsigned char)u->path[i] <= ' ' || u->path[i] == 0x7f)
			return do_error(err, errlen,
			                "--url must not contain spaces or control characters (encode them).");
	return 0;
}

static int do_resolve(sl_load_target_t *t, const url_t *u, char *err, size_t errlen)
{
	uv_loop_t loop;
	uv_getaddrinfo_t req;
	struct addrinfo hints;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	int rc = uv_loop_init(&loop);
	if (rc)
		return do_error(err, errlen, "cannot start an event loop: %s.", uv_strerror(rc));
	/* without a callback uv_getaddrinfo() runs synchronously */
	rc = uv_getaddrinfo(&loop, &req, NULL, u->host, u->port, &hints);
	uv_loop_close(&loop);
	if (rc)
		return do_error(err, errlen, "cannot resolve '%s': %s.", u->host, uv_strerror(rc));
	memcpy(&t->addr, req.addrinfo->ai_addr, req.addrinfo->ai_addrlen);
	uv_freeaddrinfo(req.addrinfo);
	char ip[INET6_ADDRSTRLEN] = "?";
	if (t->addr.ss_family == AF_INET6) {
		uv_ip6_name((struct sockaddr_in6 *)&t->addr, ip, sizeof(ip));
		snprintf(t->addr_text, sizeof(t->addr_text), "[%s]:%s", ip, u->port);
	} else {
		uv_ip4_name((struct sockaddr_in *)&t->addr, ip, sizeof(ip));
		snprintf(t->addr_text, sizeof(t->addr_text), "%s:%s", ip, u->port);
	}
	return 0;
}

static bool do_has_body_method(const char *m)
{
	return !strcmp(m, "POST") || !strcmp(m, "PUT") || !strcmp(m, "PATCH");
}

int sl_load_target_init(sl_load_target_t *t, const sl_load_opts_t *o, char *err, size_t errlen)
{
	memset(t, 0, sizeof(*t));
	url_t u;
	if (do_parse_url(&u, o->url, err, errlen) || do_resolve(t, &u, err, errlen))
		return -1;

	if (u.tls) {
		if (o->insecure && o->cacert)
			return do_error(err, errlen, "--insecure and --cacert contradict each other: give one.");
		char why[512];
		t->tls = sl_tls_client_ctx(o->cacert, o->insecure, "--cacert", why, sizeof why);
		if (t->tls == NULL)
			return do_error(err, errlen, "%s.", why);
		snprintf(t->tls_name, sizeof t->tls_name, "%s", u.host);
	} else if (o->insecure || o->cacert) {
		return do_error(err, errlen, "%s applies to an https:// URL.", o->insecure ? "--insecure" : "--cacert");
	}
	t->head = !strcmp(o->method, "HEAD");
	t->keepalive = o->keepalive;
	const char *conn = do_find_header(o, "Connection");
	if (conn && strcasestr(conn, "close"))
		t->keepalive = false;

	strbuf_t b = {0};
	do_appendf(&b, "%s ", o->method);
	if (u.path_len == 0 || u.path[0] != '/')
		do_append(&b, "/", 1);
	do_append(&b, u.path, u.path_len);
	do_append(&b, " HTTP/1.1\r\n", 11);
	if (!do_find_header(o, "Host")) {
		do_append(&b, "Host: ", 6);
		do_append(&b, u.authority, u.authority_len);
		do_append(&b, "\r\n", 2);
	}
	if (!do_find_header(o, "User-Agent"))
		do_append(&b, "User-Agent: sluice-load\r\n", 25);
	for (size_t i = 0; i < o->nheaders; i++) {
		/* normalised to "Name: value" with the value's outer blanks trimmed */
		const char *h = o->headers[i], *colon = strchr(h, ':');
		const char *v = colon + 1, *end = v + strlen(v);
		while (*v == ' ' || *v == '\t')
			v++;
		while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		do_append(&b, h, (size_t)(colon - h));
		do_append(&b, ": ", 2);
		do_append(&b, v, (size_t)(end - v));
		do_append(&b, "\r\n", 2);
	}
	if (o->body || do_has_body_method(o->method))
		do_appendf(&b, "Content-Length: %zu\r\n", o->body_len);
	if (!o->keepalive && !conn)
		do_append(&b, "Connection: close\r\n", 19);
	do_append(&b, "\r\n", 2);
	if (o->body_len)
		do_append(&b, o->body, o->body_len);
	if (b.oom) {
		free(b.p);
		return do_error(err, errlen, "out of memory formatting the request.");
	}
	t->request = b.p;
	t->request_len = b.len;
	return 0;
}

void sl_load_target_dispose(sl_load_target_t *t)
{
	free(t->request);
	t->request = NULL;
	if (t->tls)
		SSL_CTX_free(t->tls);
	t->tls = NULL;
}
