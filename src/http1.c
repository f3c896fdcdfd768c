/* http1.c — see http1.h.
 *
 * llhttp reports each piece of the head as it sees it; the pieces are copied
 * into msg.store so the connection's read buffer can be reused at once. The
 * head is bounded by max_head, so a peer cannot grow the store without limit.
 * Callbacks run inside llhttp_execute(): they never free the parser's owner;
 * they return PAUSE and the owner acts once execute() has returned.
 */
#include "http1.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static inline sl_http1_t *parser_of(llhttp_t *l)
{
	return (sl_http1_t *)l;
}

static int head_error_status(const sl_http1_t *p, int request_status)
{
	return p->is_request ? request_status : 502;
}

int sl_http1_fail(sl_http1_t *p, int status, const char *why)
{
	if (p->error_status == 0) {
		p->error_status = status;
		p->error = why;
	}
	return SL_HTTP1_FAIL;
}

static int do_store(sl_http1_t *p, const char *at, size_t len)
{
	if (p->msg.store.len + len > p->max_head) {
		sl_http1_fail(p, head_error_status(p, 431), "head too large");
		return -1;
	}
	sl_buf_append(&p->msg.store, at, len);
	return 0;
}

static int on_message_begin(llhttp_t *l)
{
	sl_http1_t *p = parser_of(l);
	sl_http_msg_t *m = &p->msg;
	m->store.len = 0;
	m->nheaders = 0;
	m->target = m->target_len = 0;
	m->content_length = -1;
	m->chunked = m->keep_alive = m->expect_continue = false;
	m->status = 0;
	p->in_trailers = false;
	p->value_seen = p->field_open = false;
	return 0;
}

static int on_target(llhttp_t *l, const char *at, size_t len)
{
	sl_http1_t *p = parser_of(l);
	if (p->msg.target_len == 0)
		p->msg.target = (uint32_t)p->msg.store.len;
	p->msg.target_len += (uint32_t)len;
	return do_store(p, at, len);
}

static int on_header_field(llhttp_t *l, const char *at, size_t len)
{
	sl_http1_t *p = parser_of(l);
	sl_http_msg_t *m = &p->msg;
	if (p->in_trailers)
		return 0;
	sl_http_header_t *h = m->nheaders ? &m->headers[m->nheaders - 1] : NULL;
	if (!p->field_open) {
		p->field_open = true;
		if (m->nheaders == m->headers_cap) {
			m->headers_cap = m->headers_cap ? m->headers_cap * 2 : 16;
			m->headers = sl_realloc(m->headers, m->headers_cap * sizeof *m->headers);
		}
		h = &m->headers[m->nheaders++];
		h->name = (uint32_t)m->store.len;
		h->name_len = h->value = h->value_len = 0;
	}
	h->name_len += (uint32_t)len;
	return do_store(p, at, len);
}

static int on_header_field_complete(llhttp_t *l)
{
	sl_http1_t *p = parser_of(l);
	if (p->in_trailers)
		return 0;
	p->field_open = false;
	sl_http_header_t *h = &p->msg.headers[p->msg.nheaders - 1];
	const char *name = p->msg.store.base + h->name;
	if (memchr(name, ' ', h->name_len) || memchr(name, '\t', h->name_len))
		return sl_http1_fail(p, head_error_status(p, 400), "whitespace in header name");
	h->value = (uint32_t)p->msg.store.len;
	p->value_seen = false;
	return 0;
}

/* llhttp hands a value over in one piece per execute() call, except when an
 * obsolete line fold (CRLF followed by SP/HT) continues it. A second piece is
 * therefore a fold when it starts inside the data, or at its start right
 * after a previous call that ended with CRLF. */
static bool is_fold(const sl_http1_t *p, const char *at)
{
	if (at > p->exec_at + 1)
		return at[-2] == '\r' && at[-1] == '\n';
	if (at == p->exec_at + 1)
		return p->tail[1] == '\r' && at[-1] == '\n';
	return p->tail[0] == '\r' && p->tail[1] == '\n';
}

static int on_header_value(llhttp_t *l, const char *at, size_t len)
{
	sl_http1_t *p = parser_of(l);
	if (p->in_trailers)
		return 0;
	if (p->value_seen && is_fold(p, at))
		return sl_http1_fail(p, head_error_status(p, 400), "obsolete line folding");
	p->value_seen = true;
	p->msg.headers[p->msg.nheaders - 1].value_len += (uint32_t)len;
	return do_store(p, at, len);
}

static bool value_is(const sl_http_msg_t *m, const sl_http_header_t *h, const char *want)
{
	const char *v = m->store.base + h->value;
	size_t n = h->value_len;
	while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	return n == strlen(want) && strncasecmp(v, want, n) == 0;
}

static bool name_is(const sl_http_msg_t *m, const sl_http_header_t *h, const char *name, size_t len)
{
	return h->name_len == len && strncasecmp(m->store.base + h->name, name, len) == 0;
}

/* The checks llhttp leaves to the application (RFC 9112 §3.2, §6.1). */
static int do_check_request(sl_http1_t *p)
{
	sl_http_msg_t *m = &p->msg;
	if (m->major == 0)
		return sl_http1_fail(p, 400, "malformed request line");
	if (m->major != 1 || m->minor > 1)
		return sl_http1_fail(p, 505, "unsupported HTTP version");
	int hosts = 0, te = 0;
	for (uint32_t i = 0; i < m->nheaders; i++) {
		const sl_http_header_t *h = &m->headers[i];
		if (name_is(m, h, "host", 4)) {
			hosts++;
		} else if (name_is(m, h, "transfer-encoding", 17)) {
			if (++te > 1 || !value_is(m, h, "chunked"))
				return sl_http1_fail(p, 501, "unsupported transfer coding");
		} else if (name_is(m, h, "expect", 6)) {
			if (!value_is(m, h, "100-continue"))
				return sl_http1_fail(p, 417, "unsupported expectation");
			m->expect_continue = m->minor >= 1;
		}
	}
	if (hosts > 1 || (hosts == 0 && m->minor >= 1))
		return sl_http1_fail(p, 400, hosts ? "repeated Host header" : "missing Host header");
	return 0;
}

static int on_headers_complete(llhttp_t *l)
{
	sl_http1_t *p = parser_of(l);
	sl_http_msg_t *m = &p->msg;
	p->in_trailers = true;
	m->major = l->http_major;
	m->minor = l->http_minor;
	m->method = l->method;
	m->status = l->status_code;
	m->content_length = (l->flags & F_CONTENT_LENGTH) ? (int64_t)l->content_length : -1;
	m->chunked = (l->flags & F_CHUNKED) != 0;
	m->keep_alive = llhttp_should_keep_alive(l);
	if (p->is_request) {
		if (do_check_request(p) != 0)
			return -1;
	} else if (m->major != 1) {
		return sl_http1_fail(p, 502, "unsupported HTTP version from upstream");
	}
	switch (p->cb->on_head(p)) {
	case SL_HTTP1_PAUSE: return HPE_PAUSED;
	case SL_HTTP1_SKIP_BODY: return 1;
	case SL_HTTP1_UPGRADE: return 2;
	case SL_HTTP1_FAIL: return -1;
	default: return 0;
	}
}

static int on_chunk_header(llhttp_t *l)
{
	sl_http1_t *p = parser_of(l);
	p->chunk_left = l->content_length;
	return 0;
}

/* llhttp 8 skips the two bytes after a chunk's data without looking at
 * them, so "5\r\nhelloXX0\r\n\r\n" would pass as a complete body: a
 * request smuggling vector. Check them here, across execute() calls. */
static bool do_check_crlf(sl_http1_t *p, const char *at, const char *end)
{
	for (; p->crlf_need > 0 && at < end; at++, p->crlf_need--)
		if (*at != (p->crlf_need == 2 ? '\r' : '\n'))
			return false;
	return true;
}

static int on_body(llhttp_t *l, const char *at, size_t len)
{
	sl_http1_t *p = parser_of(l);
	if (p->msg.chunked) {
		p->chunk_left -= len < p->chunk_left ? len : p->chunk_left;
		if (p->chunk_left == 0) {
			p->crlf_need = 2;
			if (!do_check_crlf(p, at + len, p->exec_end)) {
				sl_http1_fail(p, head_error_status(p, 400), "chunk data not followed by CRLF");
				return HPE_USER;
			}
		}
	}
	return p->cb->on_body(p, at, len) == SL_HTTP1_FAIL ? HPE_USER : 0;
}

static int on_message_complete(llhttp_t *l)
{
	sl_http1_t *p = parser_of(l);
	switch (p->cb->on_complete(p)) {
	case SL_HTTP1_PAUSE: return HPE_PAUSED;
	case SL_HTTP1_FAIL: return HPE_USER;
	default: return 0;
	}
}

static llhttp_settings_t settings;

static void do_init_settings(void)
{
	llhttp_settings_init(&settings);
	settings.on_message_begin = on_message_begin;
	settings.on_url = on_target;
	settings.on_status = on_target;
	settings.on_header_field = on_header_field;
	settings.on_header_field_complete = on_header_field_complete;
	settings.on_header_value = on_header_value;
	settings.on_headers_complete = on_headers_complete;
	settings.on_body = on_body;
	settings.on_chunk_header = on_chunk_header;
	settings.on_message_complete = on_message_complete;
}

void sl_http1_init(sl_http1_t *p, bool is_request, const sl_http1_callbacks_t *cb, void *data, size_t max_head)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, do_init_settings);
	memset(p, 0, sizeof *p);
	llhttp_init(&p->llhttp, is_request ? HTTP_REQUEST : HTTP_RESPONSE, &settings);
	p->cb = cb;
	p->data = data;
	p->max_head = max_head;
	p->is_request = is_request;
	p->msg.content_length = -1;
}

void sl_http1_reset(sl_http1_t *p)
{
	llhttp_init(&p->llhttp, p->is_request ? HTTP_REQUEST : HTTP_RESPONSE, &settings);
	p->paused = false;
	p->error_status = 0;
	p->error = NULL;
	p->tail[0] = p->tail[1] = 0;
	p->crlf_need = 0;
}

void sl_http1_dispose(sl_http1_t *p)
{
	sl_buf_dispose(&p->msg.store);
	free(p->msg.headers);
	p->msg.headers = NULL;
	p->msg.nheaders = p->msg.headers_cap = 0;
}

static void do_remember_tail(sl_http1_t *p, const char *data, size_t n)
{
	if (n >= 2) {
		p->tail[0] = data[n - 2];
		p->tail[1] = data[n - 1];
	} else if (n == 1) {
		p->tail[0] = p->tail[1];
		p->tail[1] = data[0];
	}
}

int sl_http1_execute(sl_http1_t *p, const char *data, size_t len, size_t *consumed)
{
	if (p->paused) {
		if (llhttp_get_errno(&p->llhttp) == HPE_PAUSED_UPGRADE)
			llhttp_resume_after_upgrade(&p->llhttp);
		else
			llhttp_resume(&p->llhttp);
		p->paused = false;
	}
	p->exec_at = data;
	p->exec_end = data + len;
	if (p->crlf_need > 0 && !do_check_crlf(p, data, data + len)) {
		*consumed = 0;
		sl_http1_fail(p, head_error_status(p, 400), "chunk data not followed by CRLF");
		return SL_HTTP1_ERROR;
	}
	llhttp_errno_t err = llhttp_execute(&p->llhttp, data, len);
	if (err == HPE_OK) {
		*consumed = len;
		do_remember_tail(p, data, len);
		return SL_HTTP1_OK;
	}
	if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
		*consumed = (size_t)(llhttp_get_error_pos(&p->llhttp) - data);
		do_remember_tail(p, data, *consumed);
		p->paused = true;
		return SL_HTTP1_PAUSED;
	}
	*consumed = 0;
	if (p->error_status == 0) {
		p->error_status = head_error_status(p, 400);
		p->error = llhttp_get_error_reason(&p->llhttp);
	}
	return SL_HTTP1_ERROR;
}

int sl_http1_finish(sl_http1_t *p)
{
	if (p->paused)
		return SL_HTTP1_OK;
	llhttp_errno_t err = llhttp_finish(&p->llhttp);
	if (err == HPE_OK || err == HPE_PAUSED) /* PAUSED: on_complete asked to stop */
		return SL_HTTP1_OK;
	if (p->error_status == 0) {
		p->error_status = head_error_status(p, 400);
		p->error = "connection closed inside a message";
	}
	return SL_HTTP1_ERROR;
}

bool sl_http1_needs_eof(const sl_http1_t *p)
{
	return llhttp_message_needs_eof(&p->llhttp);
}

const char *sl_http_msg_target(const sl_http_msg_t *m, size_t *len)
{
	*len = m->target_len;
	return m->store.base + m->target;
}

const sl_http_header_t *sl_http_msg_find(const sl_http_msg_t *m, const char *name)
{
	size_t len = strlen(name);
	for (uint32_t i = 0; i < m->nheaders; i++)
		if (name_is(m, &m->headers[i], name, len))
			return &m->headers[i];
	return NULL;
}

const char *sl_http_method_name(int method)
{
	return llhttp_method_name((llhttp_method_t)method);
}

/* ---- building heads ---------------------------------------------------- */

static const struct {
	const char *name;
	size_t len;
} hop_by_hop[] = {
    {"connection", 10}, {"keep-alive", 10}, {"proxy-connection", 16},  {"te", 2},
    {"trailer", 7},     {"upgrade", 7},     {"transfer-encoding", 17}, {"expect", 6},
};

/* Whether the comma-separated Connection values name this header. */
static bool is_connection_listed(const sl_http_msg_t *m, const char *name, size_t len)
{
	for (uint32_t i = 0; i < m->nheaders; i++) {
		const sl_http_header_t *h = &m->headers[i];
		if (!name_is(m, h, "connection", 10))
			continue;
		const char *v = m->store.base + h->value, *end = v + h->value_len;
		while (v < end) {
			while (v < end && (*v == ' ' || *v == '\t' || *v == ','))
				v++;
			const char *tok = v;
			while (v < end && *v != ',' && *v != ' ' && *v != '\t')
				v++;
			if ((size_t)(v - tok) == len && strncasecmp(tok, name, len) == 0)
				return true;
		}
	}
	return false;
}

static bool is_hop_by_hop(const sl_http_msg_t *m, const sl_http_header_t *h, bool has_connection)
{
	for (size_t i = 0; i < sizeof hop_by_hop / sizeof hop_by_hop[0]; i++)
		if (name_is(m, h, hop_by_hop[i].name, hop_by_hop[i].len))
			return true;
	return has_connection && is_connection_listed(m, m->store.base + h->name, h->name_len);
}

static void do_append_header(sl_buf_t *out, const sl_http_msg_t *m, const sl_http_header_t *h)
{
	sl_buf_reserve(out, h->name_len + h->value_len + 4);
	char *w = out->base + out->len;
	memcpy(w, m->store.base + h->name, h->name_len);
	w += h->name_len;
	*w++ = ':';
	*w++ = ' ';
	memcpy(w, m->store.base + h->value, h->value_len);
	w += h->value_len;
	*w++ = '\r';
	*w++ = '\n';
	out->len = (size_t)(w - out->base);
}

/* Appends the end-to-end headers of m; values of the list-valued headers
 * named merge_a / merge_b (X-Forwarded-For, Via) are not copied but joined
 * into *merged_a / *merged_b for the caller to extend. */
static void do_copy_headers(const sl_http_msg_t *m, sl_buf_t *out, const char *merge_a, sl_buf_t *merged_a,
                            const char *merge_b, sl_buf_t *merged_b, bool *saw_xfp)
{
	bool has_connection = sl_http_msg_find(m, "connection") != NULL;
	size_t la = merge_a ? strlen(merge_a) : 0, lb = strlen(merge_b);
	for (uint32_t i = 0; i < m->nheaders; i++) {
		const sl_http_header_t *h = &m->headers[i];
		if (is_hop_by_hop(m, h, has_connection))
			continue;
		sl_buf_t *merged = NULL;
		if (merge_a && name_is(m, h, merge_a, la))
			merged = merged_a;
		else if (name_is(m, h, merge_b, lb))
			merged = merged_b;
		if (merged) {
			if (merged->len)
				sl_buf_append(merged, ", ", 2);
			sl_buf_append(merged, m->store.base + h->value, h->value_len);
			continue;
		}
		if (saw_xfp && name_is(m, h, "x-forwarded-proto", 17))
			*saw_xfp = true;
		do_append_header(out, m, h);
	}
}

static void do_append_list(sl_buf_t *out, const char *name, sl_buf_t *list, const char *mine)
{
	sl_buf_appends(out, name);
	sl_buf_append(out, ": ", 2);
	if (list->len) {
		sl_buf_append(out, list->base, list->len);
		sl_buf_append(out, ", ", 2);
	}
	sl_buf_appends(out, mine);
	sl_buf_append(out, "\r\n", 2);
}

void sl_http1_build_request(const sl_http_msg_t *req, const char *client_ip, sl_framing_t framing, sl_buf_t *out)
{
	const char *method = sl_http_method_name(req->method);
	sl_buf_appends(out, method);
	sl_buf_append(out, " ", 1);
	sl_buf_append(out, req->store.base + req->target, req->target_len);
	sl_buf_append(out, " HTTP/1.1\r\n", 11);
	sl_buf_t xff = {0}, via = {0};
	bool saw_xfp = false;
	do_copy_headers(req, out, "x-forwarded-for", &xff, "via", &via, &saw_xfp);
	do_append_list(out, "X-Forwarded-For", &xff, client_ip);
	if (!saw_xfp)
		sl_buf_appends(out, "X-Forwarded-Proto: http\r\n");
	do_append_list(out, "Via", &via, req->minor == 0 ? "1.0 sluice" : "1.1 sluice");
	if (framing == SL_FRAME_CHUNKED)
		sl_buf_appends(out, "Transfer-Encoding: chunked\r\n");
	sl_buf_append(out, "\r\n", 2);
	sl_buf_dispose(&xff);
	sl_buf_dispose(&via);
}

void sl_http1_build_response(const sl_http_msg_t *resp, const sl_http_msg_t *req, sl_framing_t framing, bool keep_alive,
                             sl_buf_t *out)
{
	size_t reason_len = resp->target_len;
	const char *reason = resp->store.base + resp->target;
	if (reason_len == 0) {
		reason = sl_http_reason(resp->status);
		reason_len = strlen(reason);
	}
	char status[] = "HTTP/1.1 000 "; /* llhttp accepts three-digit codes only */
	status[9] = (char)('0' + resp->status / 100 % 10);
	status[10] = (char)('0' + resp->status / 10 % 10);
	status[11] = (char)('0' + resp->status % 10);
	sl_buf_append(out, status, sizeof status - 1);
	sl_buf_append(out, reason, reason_len);
	sl_buf_append(out, "\r\n", 2);
	sl_buf_t via = {0};
	do_copy_headers(resp, out, NULL, NULL, "via", &via, NULL);
	do_append_list(out, "Via", &via, resp->minor == 0 ? "1.0 sluice" : "1.1 sluice");
	sl_buf_dispose(&via);
	if (resp->status >= 200) {
		if (framing == SL_FRAME_CHUNKED)
			sl_buf_appends(out, "Transfer-Encoding: chunked\r\n");
		if (!keep_alive)
			sl_buf_appends(out, "Connection: close\r\n");
		else if (req->minor == 0)
			sl_buf_appends(out, "Connection: keep-alive\r\n");
	}
	sl_buf_append(out, "\r\n", 2);
}

void sl_http1_build_local(int status, const char *content_type, const char *body, size_t body_len, bool keep_alive,
                          const char *extra_headers, sl_buf_t *out)
{
	sl_buf_printf(out,
	              "HTTP/1.1 %d %s\r\nServer: sluice\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	              "Cache-Control: no-store\r\n%s%s\r\n",
	              status, sl_http_reason(status), content_type, body_len, extra_headers ? extra_headers : "",
	              keep_alive ? "" : "Connection: close\r\n");
	sl_buf_append(out, body, body_len);
}
