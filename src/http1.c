/* http1.c — see http1.h.
 *
 * Phases of a parser:
 *   PH_HEAD      head bytes: each is line-checked here (do_scan_head), then
 *                given to llhttp, which stops at the end of the head (its
 *                on_headers_complete always answers "no body")
 *   PH_BODY      the body, delimited here: BODY_NONE, BODY_LENGTH,
 *                BODY_CHUNKED (chunk_state walks RFC 9112 §7.1 byte by
 *                byte, data in bulk) or BODY_EOF
 *   PH_UPGRADED  the message was the last HTTP on the connection
 * A message ends in do_complete; the next head starts a new message (the
 * finished one stays readable in p->msg until then).
 *
 * llhttp reports each piece of the head as it sees it; the pieces are copied
 * into msg.store so the connection's read buffer can be reused at once. The
 * head is bounded by max_head, so a peer cannot grow the store without limit.
 * Callbacks never free the parser's owner; they return PAUSE and the owner
 * acts once execute() has returned.
 */
#include "http1.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { PH_HEAD, PH_BODY, PH_UPGRADED };
enum { BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_EOF };

/* Chunked framing (RFC 9112 §7.1):
 *   chunk      = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   chunk-ext  = *( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )
 *   trailer-section = *( field-line CRLF ) CRLF
 * BWS before the CRLF of a chunk line is not in the grammar; servers send it
 * ("5 \r\n") and nginx and HAProxy accept it, so responses may carry it and
 * requests may not. */
enum {
	CK_SIZE0,   /* first hex digit of a chunk size */
	CK_SIZE,    /* more digits, or what follows them */
	CK_SIZE_WS, /* BWS after the size */
	CK_NAME0,   /* BWS, then an extension name */
	CK_NAME,    /* in the name */
	CK_NAME_WS, /* BWS after the name */
	CK_VAL0,    /* BWS, then a value */
	CK_VAL,     /* in a token value */
	CK_VAL_WS,  /* BWS after a value */
	CK_QUOTED,  /* in a quoted-string value */
	CK_QPAIR,   /* after a backslash in it */
	CK_QEND,    /* after its closing quote */
	CK_LF,      /* the LF ending a chunk line */
	CK_DATA,    /* chunk data: `left` bytes */
	CK_DATA_CR, /* the CRLF after the data */
	CK_DATA_LF,
	TR_LINE0, /* start of a trailer line, or the CR of the empty line */
	TR_NAME,
	TR_VALUE,
	TR_LF,
	TR_END_LF
};

#define MAX_CHUNK_LINE 4096 /* bytes of a chunk-size line with its extensions */

/* Head bytes that need a look: controls (CR, LF and HT among them) and DEL. */
static const uint8_t head_special[256] = {
    [0x00 ... 0x1f] = 1,
    [0x7f] = 1,
};

/* tchar of RFC 9110 §5.6.2. */
static const uint8_t tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1,         ['&'] = 1,         ['\''] = 1,
    ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1,         ['^'] = 1,         ['_'] = 1,
    ['`'] = 1, ['|'] = 1, ['~'] = 1, ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
};

static inline sl_http1_t *parser_of(llhttp_t *l)
{
	return (sl_http1_t *)l;
}

static int err_status(const sl_http1_t *p, int request_status)
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

/* A framing or syntax error: 400 for a request, 502 for a response. */
static int do_bad(sl_http1_t *p, const char *why)
{
	sl_http1_fail(p, err_status(p, 400), why);
	return SL_HTTP1_ERROR;
}

/* ---- llhttp: the head ------------------------------------------------------ */

static int on_target(llhttp_t *l, const char *at, size_t len)
{
	sl_http1_t *p = parser_of(l);
	if (p->msg.target_len == 0)
		p->msg.target = (uint32_t)p->msg.store.len;
	p->msg.target_len += (uint32_t)len;
	sl_buf_append(&p->msg.store, at, len);
	return 0;
}

static int on_header_field(llhttp_t *l, const char *at, size_t len)
{
	sl_http1_t *p = parser_of(l);
	sl_http_msg_t *m = &p->msg;
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
	sl_buf_append(&m->store, at, len);
	return 0;
}

static int on_header_field_complete(llhttp_t *l)
{
	sl_http1_t *p = parser_of(l);
	if (!p->field_open)
		return sl_http1_fail(p, err_status(p, 400), "empty header name");
	p->field_open = false;
	sl_http_header_t *h = &p->msg.headers[p->msg.nheaders - 1];
	const char *name = p->msg.store.base + h->name;
	if (h->name_len == 0)
		return sl_http1_fail(p, err_status(p, 400), "empty header name");
	if (memchr(name, ' ', h->name_len)) /* llhttp lets "Na me" and "Name :" through (not HTAB) */
		return sl_http1_fail(p, err_status(p, 400), "whitespace in header name");
	h->value = (uint32_t)p->msg.store.len;
	return 0;
}

static int on_header_value(llhttp_t *l, const char *at, size_t len)
{
	sl_http1_t *p = parser_of(l);
	p->msg.headers[p->msg.nheaders - 1].value_len += (uint32_t)len;
	sl_buf_append(&p->msg.store, at, len);
	return 0;
}

/* llhttp stops here: it records the framing facts and delimits no body
 * (1 = skip body); sluice checks the head once llhttp has returned. */
static int on_headers_complete(llhttp_t *l)
{
	sl_http1_t *p = parser_of(l);
	sl_http_msg_t *m = &p->msg;
	p->head_done = true;
	p->flags = l->flags;
	p->left = l->content_length;
	m->major = l->http_major;
	m->minor = l->http_minor;
	m->method = l->method;
	m->status = l->status_code;
	return 1;
}

static llhttp_settings_t settings;

static void do_init_settings(void)
{
	llhttp_settings_init(&settings);
	settings.on_url = on_target;
	settings.on_status = on_target;
	settings.on_header_field = on_header_field;
	settings.on_header_field_complete = on_header_field_complete;
	settings.on_header_value = on_header_value;
	settings.on_headers_complete = on_headers_complete;
}

/* ---- message checks (RFC 9112 §3, §6) --------------------------------------- */

static bool name_is(const sl_http_msg_t *m, const sl_http_header_t *h, const char *name, size_t len)
{
	return h->name_len == len && strncasecmp(m->store.base + h->name, name, len) == 0;
}

/* The value without trailing whitespace (llhttp keeps it; leading is gone). */
static size_t value_len(const sl_http_msg_t *m, const sl_http_header_t *h)
{
	const char *v = m->store.base + h->value;
	size_t n = h->value_len;
	while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	return n;
}

static bool value_is(const sl_http_msg_t *m, const sl_http_header_t *h, const char *want)
{
	size_t n = value_len(m, h);
	return n == strlen(want) && strncasecmp(m->store.base + h->value, want, n) == 0;
}

/* The authority a request is for: an absolute-form target's own (its Host
 * header is then replaced, RFC 9112 §3.2.2), else the Host header's. */
static int do_find_host(sl_http1_t *p, const sl_http_header_t *host)
{
	sl_http_msg_t *m = &p->msg;
	const char *t = m->store.base + m->target;
	size_t n = m->target_len;
	m->has_host = false;
	if (m->method != HTTP_CONNECT && n > 0 && t[0] != '/' && !(n == 1 && t[0] == '*')) {
		size_t i = 0; /* scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) */
		while (i < n &&
		       (isalpha((unsigned char)t[i]) ||
		        (i > 0 && (isdigit((unsigned char)t[i]) || t[i] == '+' || t[i] == '-' || t[i] == '.'))))
			i++;
		if (i == 0 || n - i < 3 || memcmp(t + i, "://", 3) != 0)
			return sl_http1_fail(p, 400, "malformed request-target");
		size_t a = i + 3, e = a;
		while (e < n && t[e] != '/' && t[e] != '?' && t[e] != '#')
			e++;
		if (e == a)
			return sl_http1_fail(p, 400, "request-target without a host");
		if (memchr(t + a, '@', e - a))
			return sl_http1_fail(p, 400, "userinfo in the request-target");
		m->host = m->target + (uint32_t)a;
		m->host_len = (uint32_t)(e - a);
		m->has_host = true;
	} else if (host) {
		m->host = host->value;
		m->host_len = (uint32_t)value_len(m, host);
		m->has_host = true;
	}
	return 0;
}

/* The checks llhttp leaves to the application, for requests. */
static int do_check_request(sl_http1_t *p)
{
	sl_http_msg_t *m = &p->msg;
	if (m->major == 0)
		return sl_http1_fail(p, 400, "malformed request line");
	if (m->major != 1 || m->minor > 1)
		return sl_http1_fail(p, 505, "unsupported HTTP version");
	const sl_http_header_t *host = NULL;
	int hosts = 0;
	for (uint32_t i = 0; i < m->nheaders; i++) {
		const sl_http_header_t *h = &m->headers[i];
		if (name_is(m, h, "host", 4)) {
			hosts++;
			host = h;
		} else if (name_is(m, h, "expect", 6)) {
			if (!value_is(m, h, "100-continue"))
				return sl_http1_fail(p, 417, "unsupported expectation");
			m->expect_continue = m->minor >= 1;
		}
	}
	if (hosts > 1 || (hosts == 0 && m->minor >= 1))
		return sl_http1_fail(p, 400, hosts ? "repeated Host header" : "missing Host header");
	if (m->method == HTTP_CONNECT && (p->flags & (F_CONTENT_LENGTH | F_TRANSFER_ENCODING)))
		return sl_http1_fail(p, 400, "CONNECT with a body");
	if (m->minor == 0 && (p->flags & F_TRANSFER_ENCODING)) /* RFC 9112 §6.1 */
		return sl_http1_fail(p, 400, "Transfer-Encoding in an HTTP/1.0 request");
	return do_find_host(p, host);
}

/* Facts of any message: framing, names, version, status. */
static int do_check_message(sl_http1_t *p)
{
	sl_http_msg_t *m = &p->msg;
	if (p->flags & F_CONTENT_LENGTH) {
		if (p->left > INT64_MAX)
			return sl_http1_fail(p, err_status(p, p->max_body > 0 ? 413 : 400), "Content-Length too large");
		m->content_length = (int64_t)p->left;
	}
	m->chunked = (p->flags & F_CHUNKED) != 0;
	int te = 0;
	for (uint32_t i = 0; i < m->nheaders; i++) {
		const sl_http_header_t *h = &m->headers[i];
		if (name_is(m, h, "transfer-encoding", 17) && (++te > 1 || !value_is(m, h, "chunked")))
			/* Only chunked is decoded: another coding would reach the
			 * peer undone, or undo the length the message claims. */
			return sl_http1_fail(p, err_status(p, 501), "unsupported transfer coding");
	}
	if (p->is_request)
		return do_check_request(p);
	if (m->major != 1)
		return sl_http1_fail(p, 502, "unsupported HTTP version from upstream");
	if (m->status < 100 || m->status > 599)
		return sl_http1_fail(p, 502, "status code out of range");
	return 0;
}

/* How this message's body is delimited (RFC 9112 §6.3). */
static uint8_t body_of(const sl_http1_t *p)
{
	const sl_http_msg_t *m = &p->msg;
	if (!p->is_request && (m->status < 200 || m->status == 204 || m->status == 304))
		return BODY_NONE;
	if (m->chunked)
		return BODY_CHUNKED;
	if (m->content_length >= 0)
		return m->content_length > 0 ? BODY_LENGTH : BODY_NONE;
	return p->is_request ? BODY_NONE : BODY_EOF;
}

static void do_set_body(sl_http1_t *p, uint8_t body)
{
	sl_http_msg_t *m = &p->msg;
	bool ka = m->minor >= 1 ? !(p->flags & F_CONNECTION_CLOSE) : (p->flags & F_CONNECTION_KEEP_ALIVE) != 0;
	if (m->minor == 0 && (p->flags & F_TRANSFER_ENCODING))
		ka = false; /* RFC 9112 §6.1: close after it */
	p->body = body;
	p->eof_body = body == BODY_EOF;
	m->keep_alive = ka && !p->eof_body;
	p->left = body == BODY_LENGTH ? (uint64_t)m->content_length : 0;
	p->chunk_state = CK_SIZE0;
	p->chunk_size = 0;
	p->head_len = 0; /* now counts chunk-line and trailer bytes */
}

/* ---- the head -------------------------------------------------------------- */

static void do_begin_message(sl_http1_t *p)
{
	sl_http_msg_t *m = &p->msg;
	llhttp_reset(&p->llhttp);
	m->store.len = 0;
	m->nheaders = 0;
	m->target = m->target_len = 0;
	m->host = m->host_len = 0;
	m->content_length = -1;
	m->status = 0;
	m->chunked = m->keep_alive = m->expect_continue = m->has_host = false;
	p->line_len = p->line_no = 0;
	p->spaces = 0;
	p->cr = p->head_done = p->field_open = p->upgrade = p->eof_body = false;
	p->flags = 0;
}

/* The bytes of x that are control characters or DEL (< 0x20 or 0x7f), and
 * with `space` also SP, as their high bits: eight head bytes at a time (the
 * "hasless" and "haszero" tricks of Bit Twiddling Hacks). A borrow can mark
 * a byte after a marked one, never before, so the lowest mark is exact. */
static inline uint64_t special_bytes(uint64_t x, bool space)
{
	const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
	uint64_t del = x ^ (0x7f * ones), sp = x ^ (0x20 * ones);
	uint64_t m = ((x - 0x20 * ones) & ~x) | ((del - ones) & ~del);
	if (space)
		m |= (sp - ones) & ~sp;
	return m & highs;
}

/* The index of the first byte from i on that is a control character or DEL
 * (or, with `space`, SP), or len. */
static inline size_t next_special(const uint8_t *d, size_t i, size_t len, bool space)
{
	for (; i + 8 <= len; i += 8) {
		uint64_t x;
		memcpy(&x, d + i, 8);
		uint64_t m = special_bytes(x, space);
		if (m)
			return i + (size_t)(__builtin_ctzll(m) >> 3);
	}
	while (i < len && !head_special[d[i]] && !(space && d[i] == ' '))
		i++;
	return i;
}

/* A head line ended (its CRLF seen). Returns 1 at the empty line that ends
 * the head, 0 to go on, -1 on error. */
static int do_line_end(sl_http1_t *p)
{
	if (p->line_len == 0)
		return p->line_no > 0 ? 1 : 0; /* or an empty line before the start line (RFC 9112 §2.2) */
	if (p->line_no == 0 && p->is_request && p->spaces != 2) {
		do_bad(p, "malformed request line");
		return -1;
	}
	p->line_no++;
	p->line_len = 0;
	return 0;
}

/* Checks head bytes before llhttp sees them. Stops after the LF of the empty
 * line that ends the head (*end set); *n is how many bytes are head. Plain
 * bytes are skipped a word at a time; only CR, HT, SP in the start line and
 * the first byte of a line get a closer look. */
static int do_scan_head(sl_http1_t *p, const uint8_t *d, size_t len, size_t *n, bool *end)
{
	size_t i = 0;
	int r = 0;
	if (p->cr && len > 0) { /* the previous piece ended with CR */
		if (d[0] != '\n')
			return do_bad(p, "CR not followed by LF in the head");
		p->cr = false;
		i = 1;
		if ((r = do_line_end(p)) < 0)
			return SL_HTTP1_ERROR;
	}
	while (r == 0 && i < len) {
		size_t start = i;
		if (p->line_no == 0) {
			/* SP counted; HTAB only in a reason phrase */
			while ((i = next_special(d, i, len, true)) < len &&
			       (d[i] == ' ' || (d[i] == '\t' && !p->is_request))) {
				if (d[i++] == ' ' && p->spaces < 255)
					p->spaces++;
			}
		} else {
			if (p->line_len == 0 && (d[i] == ' ' || d[i] == '\t'))
				return do_bad(p, "obsolete line folding");
			while ((i = next_special(d, i, len, false)) < len && d[i] == '\t')
				i++;
		}
		p->line_len += (uint32_t)(i - start);
		if (i == len)
			break;
		if (d[i] != '\r')
			return do_bad(p, d[i] == '\n' ? "LF without CR in the head" : "control character in the head");
		if (i + 1 == len) {
			p->cr = true;
			i++;
			break;
		}
		if (d[i + 1] != '\n')
			return do_bad(p, "CR not followed by LF in the head");
		i += 2;
		if ((r = do_line_end(p)) < 0)
			return SL_HTTP1_ERROR;
	}
	*end = r == 1;
	*n = i;
	if (p->head_len + i > p->max_head) {
		sl_http1_fail(p, err_status(p, 431), "head too large");
		return SL_HTTP1_ERROR;
	}
	p->head_len += (uint32_t)i;
	return SL_HTTP1_OK;
}

static int do_complete(sl_http1_t *p);

/* The head is complete: check it, tell the owner, set up the body. */
static int do_head_complete(sl_http1_t *p)
{
	if (do_check_message(p) != 0)
		return SL_HTTP1_ERROR;
	uint8_t body = body_of(p);
	do_set_body(p, body);
	int r = p->cb->on_head(p);
	if (r == SL_HTTP1_FAIL)
		return SL_HTTP1_ERROR;
	if (r == SL_HTTP1_SKIP_BODY || r == SL_HTTP1_UPGRADE) {
		p->upgrade = r == SL_HTTP1_UPGRADE;
		do_set_body(p, BODY_NONE);
	}
	p->phase = PH_BODY;
	return r == SL_HTTP1_PAUSE ? SL_HTTP1_PAUSED : SL_HTTP1_OK;
}

static int do_head(sl_http1_t *p, const char *data, size_t len, size_t *used)
{
	if (p->head_len == 0 && !p->cr)
		do_begin_message(p);
	size_t n = 0;
	bool end = false;
	*used = 0;
	if (do_scan_head(p, (const uint8_t *)data, len, &n, &end) != SL_HTTP1_OK)
		return SL_HTTP1_ERROR;
	llhttp_errno_t err = llhttp_execute(&p->llhttp, data, n);
	if (err != HPE_OK && err != HPE_PAUSED_UPGRADE) {
		if (p->error_status == 0)
			sl_http1_fail(p, err_status(p, 400), llhttp_get_error_reason(&p->llhttp));
		return SL_HTTP1_ERROR;
	}
	*used = n;
	if (!end)
		return SL_HTTP1_OK;
	if (!p->head_done)
		return do_bad(p, "malformed head");
	return do_head_complete(p);
}

/* ---- the body -------------------------------------------------------------- */

static int do_chunk_line_byte(sl_http1_t *p, uint8_t ch)
{
	bool lenient = !p->is_request;
	bool ws = ch == ' ' || ch == '\t';
	switch (p->chunk_state) {
	case CK_SIZE0:
	case CK_SIZE: {
		int v = ch >= '0' && ch <= '9'                     ? ch - '0'
		        : (ch | 0x20) >= 'a' && (ch | 0x20) <= 'f' ? (ch | 0x20) - 'a' + 10
		                                                   : -1;
		if (v >= 0) {
			if (p->chunk_size > (INT64_MAX >> 4))
				return do_bad(p, "chunk size too large");
			p->chunk_size = p->chunk_size << 4 | (uint64_t)v;
			p->chunk_state = CK_SIZE;
			return SL_HTTP1_OK;
		}
		if (p->chunk_state == CK_SIZE0)
			return do_bad(p, "invalid chunk size");
		if (ch == ';')
			p->chunk_state = CK_NAME0;
		else if (ws)
			p->chunk_state = CK_SIZE_WS;
		else if (ch == '\r')
			p->chunk_state = CK_LF;
		else
			return do_bad(p, "invalid chunk size");
		return SL_HTTP1_OK;
	}
	case CK_SIZE_WS:
	case CK_NAME_WS:
	case CK_VAL_WS:
		if (ws)
			return SL_HTTP1_OK;
		if (ch == ';')
			p->chunk_state = CK_NAME0;
		else if (ch == '=' && p->chunk_state == CK_NAME_WS)
			p->chunk_state = CK_VAL0;
		else if (ch == '\r' && lenient)
			p->chunk_state = CK_LF;
		else
			return do_bad(p, "invalid chunk extension");
		return SL_HTTP1_OK;
	case CK_NAME0:
		if (ws)
			return SL_HTTP1_OK;
		if (!tchar[ch])
			return do_bad(p, "invalid chunk extension");
		p->chunk_state = CK_NAME;
		return SL_HTTP1_OK;
	case CK_NAME:
	case CK_VAL:
		if (tchar[ch])
			return SL_HTTP1_OK;
		if (ch == ';')
			p->chunk_state = CK_NAME0;
		else if (ch == '=' && p->chunk_state == CK_NAME)
			p->chunk_state = CK_VAL0;
		else if (ws)
			p->chunk_state = p->chunk_state == CK_NAME ? CK_NAME_WS : CK_VAL_WS;
		else if (ch == '\r')
			p->chunk_state = CK_LF;
		else
			return do_bad(p, "invalid chunk extension");
		return SL_HTTP1_OK;
	case CK_VAL0:
		if (ws)
			return SL_HTTP1_OK;
		if (ch == '"')
			p->chunk_state = CK_QUOTED;
		else if (tchar[ch])
			p->chunk_state = CK_VAL;
		else
			return do_bad(p, "invalid chunk extension");
		return SL_HTTP1_OK;
	case CK_QUOTED: /* qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text */
		if (ch == '"')
			p->chunk_state = CK_QEND;
		else if (ch == '\\')
			p->chunk_state = CK_QPAIR;
		else if (ch != '\t' && head_special[ch])
			return do_bad(p, "invalid chunk extension");
		return SL_HTTP1_OK;
	case CK_QPAIR:
		if (ch != '\t' && head_special[ch])
			return do_bad(p, "invalid chunk extension");
		p->chunk_state = CK_QUOTED;
		return SL_HTTP1_OK;
	case CK_QEND:
		if (ch == ';')
			p->chunk_state = CK_NAME0;
		else if (ws)
			p->chunk_state = CK_VAL_WS;
		else if (ch == '\r')
			p->chunk_state = CK_LF;
		else
			return do_bad(p, "invalid chunk extension");
		return SL_HTTP1_OK;
	case CK_LF:
		if (ch != '\n')
			return do_bad(p, "CR not followed by LF in a chunk line");
		p->head_len = 0;
		if (p->chunk_size == 0) {
			p->chunk_state = TR_LINE0;
		} else {
			p->left = p->chunk_size;
			p->chunk_state = CK_DATA;
		}
		return SL_HTTP1_OK;
	case CK_DATA_CR:
		if (ch != '\r')
			return do_bad(p, "chunk data not followed by CRLF");
		p->chunk_state = CK_DATA_LF;
		return SL_HTTP1_OK;
	case CK_DATA_LF:
		if (ch != '\n')
			return do_bad(p, "chunk data not followed by CRLF");
		p->chunk_state = CK_SIZE0;
		p->chunk_size = 0;
		return SL_HTTP1_OK;
	/* Trailer fields are checked like head lines, then dropped: sluice
	 * forwards none (RFC 9110 §6.5.1 lets a proxy discard them). */
	case TR_LINE0:
		if (ch == '\r')
			p->chunk_state = TR_END_LF;
		else if (tchar[ch])
			p->chunk_state = TR_NAME;
		else
			return do_bad(p, "invalid trailer field");
		return SL_HTTP1_OK;
	case TR_NAME:
		if (ch == ':')
			p->chunk_state = TR_VALUE;
		else if (!tchar[ch])
			return do_bad(p, "invalid trailer field");
		return SL_HTTP1_OK;
	case TR_VALUE:
		if (ch == '\r')
			p->chunk_state = TR_LF;
		else if (ch != '\t' && head_special[ch])
			return do_bad(p, "invalid trailer field");
		return SL_HTTP1_OK;
	case TR_LF:
		if (ch != '\n')
			return do_bad(p, "CR not followed by LF in a trailer field");
		p->chunk_state = TR_LINE0;
		return SL_HTTP1_OK;
	default: /* TR_END_LF */
		if (ch != '\n')
			return do_bad(p, "CR not followed by LF after the trailer section");
		return do_complete(p);
	}
}

static int do_chunked(sl_http1_t *p, const char *data, size_t len, size_t *used)
{
	size_t i = 0;
	while (i < len && p->phase == PH_BODY) {
		if (p->chunk_state == CK_DATA) {
			size_t take = len - i < p->left ? len - i : (size_t)p->left;
			p->left -= take;
			if (p->left == 0)
				p->chunk_state = CK_DATA_CR;
			int r = p->cb->on_body(p, data + i, take);
			i += take;
			if (r == SL_HTTP1_FAIL) {
				*used = i;
				return SL_HTTP1_ERROR;
			}
			continue;
		}
		bool trailer = p->chunk_state >= TR_LINE0;
		if (++p->head_len > (trailer ? p->max_head : MAX_CHUNK_LINE)) {
			*used = i;
			sl_http1_fail(p, err_status(p, trailer ? 431 : 400), "chunk line or trailer section too large");
			return SL_HTTP1_ERROR;
		}
		int r = do_chunk_line_byte(p, (uint8_t)data[i++]);
		if (r != SL_HTTP1_OK) {
			*used = i;
			return r;
		}
	}
	*used = i;
	return SL_HTTP1_OK;
}

static int do_complete(sl_http1_t *p)
{
	p->phase = p->upgrade ? PH_UPGRADED : PH_HEAD;
	p->head_len = 0;
	switch (p->cb->on_complete(p)) {
	case SL_HTTP1_PAUSE: return SL_HTTP1_PAUSED;
	case SL_HTTP1_FAIL: return SL_HTTP1_ERROR;
	default: return SL_HTTP1_OK;
	}
}

static int do_body(sl_http1_t *p, const char *data, size_t len, size_t *used)
{
	*used = 0;
	switch (p->body) {
	case BODY_NONE: return do_complete(p);
	case BODY_LENGTH: {
		size_t take = len < p->left ? len : (size_t)p->left;
		p->left -= take;
		*used = take;
		if (take > 0 && p->cb->on_body(p, data, take) == SL_HTTP1_FAIL)
			return SL_HTTP1_ERROR;
		return p->left == 0 ? do_complete(p) : SL_HTTP1_OK;
	}
	case BODY_EOF:
		*used = len;
		if (len > 0 && p->cb->on_body(p, data, len) == SL_HTTP1_FAIL)
			return SL_HTTP1_ERROR;
		return SL_HTTP1_OK;
	default: return do_chunked(p, data, len, used);
	}
}

/* ---- the parser's interface -------------------------------------------------- */

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
	p->phase = PH_HEAD;
	p->head_len = 0;
	p->cr = false;
	p->paused = false;
	p->error_status = 0;
	p->error = NULL;
}

void sl_http1_dispose(sl_http1_t *p)
{
	sl_buf_dispose(&p->msg.store);
	free(p->msg.headers);
	p->msg.headers = NULL;
	p->msg.nheaders = p->msg.headers_cap = 0;
}

int sl_http1_execute(sl_http1_t *p, const char *data, size_t len, size_t *consumed)
{
	size_t off = 0;
	int r = SL_HTTP1_OK;
	p->paused = false;
	while (r == SL_HTTP1_OK) {
		size_t n;
		if (p->phase == PH_UPGRADED) {
			r = SL_HTTP1_PAUSED; /* what follows is not HTTP: the owner takes it */
			break;
		}
		if (p->phase == PH_HEAD) {
			if (off == len)
				break;
			r = do_head(p, data + off, len - off, &n);
		} else {
			bool pending = p->body == BODY_NONE || (p->body == BODY_LENGTH && p->left == 0);
			if (off == len && !pending)
				break;
			r = do_body(p, data + off, len - off, &n);
		}
		off += n;
	}
	*consumed = r == SL_HTTP1_ERROR ? 0 : off;
	p->paused = r == SL_HTTP1_PAUSED;
	return r;
}

int sl_http1_finish(sl_http1_t *p)
{
	if (p->phase == PH_UPGRADED || (p->phase == PH_HEAD && p->head_len == 0 && !p->cr))
		return SL_HTTP1_OK;
	if (p->phase == PH_BODY && (p->body == BODY_EOF || p->body == BODY_NONE))
		return do_complete(p) == SL_HTTP1_ERROR ? SL_HTTP1_ERROR : SL_HTTP1_OK;
	if (p->error_status == 0) {
		p->error_status = err_status(p, 400);
		p->error = "connection closed inside a message";
	}
	return SL_HTTP1_ERROR;
}

bool sl_http1_needs_eof(const sl_http1_t *p)
{
	return p->eof_body;
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

/* Never copied from a message: hop-by-hop (RFC 9110 §7.6.1: Connection,
 * Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade, Transfer-Encoding,
 * Expect, and the names Connection lists), or written by the builder itself
 * from what was parsed (Content-Length). Switched on the length first: this
 * runs for every header of every message. */
static bool is_not_copied(const sl_http_msg_t *m, const sl_http_header_t *h, bool has_connection)
{
	const char *n = m->store.base + h->name;
	bool hop;
	switch (h->name_len) {
	case 2: hop = strncasecmp(n, "te", 2) == 0; break;
	case 6: hop = strncasecmp(n, "expect", 6) == 0; break;
	case 7: hop = strncasecmp(n, "trailer", 7) == 0 || strncasecmp(n, "upgrade", 7) == 0; break;
	case 10: hop = strncasecmp(n, "connection", 10) == 0 || strncasecmp(n, "keep-alive", 10) == 0; break;
	case 14: hop = strncasecmp(n, "content-length", 14) == 0; break;
	case 16: hop = strncasecmp(n, "proxy-connection", 16) == 0; break;
	case 17: hop = strncasecmp(n, "transfer-encoding", 17) == 0; break;
	default: hop = false; break;
	}
	if (hop)
		return true;
	return has_connection && is_connection_listed(m, n, h->name_len);
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
 * into *merged_a / *merged_b for the caller to extend. A request's Host and
 * names with '_' are left out (see sl_http1_build_request). */
static void do_copy_headers(const sl_http_msg_t *m, sl_buf_t *out, const char *merge_a, sl_buf_t *merged_a,
                            const char *merge_b, sl_buf_t *merged_b, bool *saw_xfp, bool request)
{
	bool has_connection = sl_http_msg_find(m, "connection") != NULL;
	size_t la = merge_a ? strlen(merge_a) : 0, lb = strlen(merge_b);
	for (uint32_t i = 0; i < m->nheaders; i++) {
		const sl_http_header_t *h = &m->headers[i];
		if (request && (name_is(m, h, "host", 4) || memchr(m->store.base + h->name, '_', h->name_len)))
			continue;
		if (is_not_copied(m, h, has_connection))
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

/* The framing header of a built head, from the parsed facts only. */
static void do_append_framing(sl_buf_t *out, sl_framing_t framing, int64_t length)
{
	if (framing == SL_FRAME_CHUNKED) {
		sl_buf_appends(out, "Transfer-Encoding: chunked\r\n");
	} else if (framing == SL_FRAME_LENGTH && length >= 0) {
		char digits[24], *d = digits + sizeof digits;
		uint64_t v = (uint64_t)length;
		do
			*--d = (char)('0' + v % 10);
		while ((v /= 10) != 0);
		sl_buf_append(out, "Content-Length: ", 16);
		sl_buf_append(out, d, (size_t)(digits + sizeof digits - d));
		sl_buf_append(out, "\r\n", 2);
	}
}

sl_framing_t sl_http1_request_framing(const sl_http_msg_t *req)
{
	if (req->chunked)
		return SL_FRAME_CHUNKED;
	return req->content_length >= 0 ? SL_FRAME_LENGTH : SL_FRAME_NONE;
}

void sl_http1_build_request(const sl_http_msg_t *req, const char *client_ip, const char *default_host,
                            sl_framing_t framing, bool https, sl_buf_t *out)
{
	const char *method = sl_http_method_name(req->method);
	sl_buf_appends(out, method);
	sl_buf_append(out, " ", 1);
	sl_buf_append(out, req->store.base + req->target, req->target_len);
	sl_buf_append(out, " HTTP/1.1\r\n", 11);
	if (req->has_host || default_host) {
		sl_buf_append(out, "Host: ", 6);
		if (req->has_host)
			sl_buf_append(out, req->store.base + req->host, req->host_len);
		else
			sl_buf_appends(out, default_host);
		sl_buf_append(out, "\r\n", 2);
	}
	sl_buf_t xff = {0}, via = {0};
	bool saw_xfp = false;
	do_copy_headers(req, out, "x-forwarded-for", &xff, "via", &via, &saw_xfp, true);
	do_append_list(out, "X-Forwarded-For", &xff, client_ip);
	if (!saw_xfp)
		sl_buf_appends(out, https ? "X-Forwarded-Proto: https\r\n" : "X-Forwarded-Proto: http\r\n");
	do_append_list(out, "Via", &via, req->minor == 0 ? "1.0 sluice" : "1.1 sluice");
	do_append_framing(out, framing, req->content_length);
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
	char status[] = "HTTP/1.1 000 "; /* the parser admits 100..599 only */
	status[9] = (char)('0' + resp->status / 100 % 10);
	status[10] = (char)('0' + resp->status / 10 % 10);
	status[11] = (char)('0' + resp->status % 10);
	sl_buf_append(out, status, sizeof status - 1);
	sl_buf_append(out, reason, reason_len);
	sl_buf_append(out, "\r\n", 2);
	sl_buf_t via = {0};
	do_copy_headers(resp, out, NULL, NULL, "via", &via, NULL, false);
	do_append_list(out, "Via", &via, resp->minor == 0 ? "1.0 sluice" : "1.1 sluice");
	sl_buf_dispose(&via);
	if (resp->status >= 200) {
		do_append_framing(out, framing, resp->content_length);
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
