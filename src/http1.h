/* http1.h — HTTP/1.x messages: the only module that talks to llhttp.
 *
 * A parser (sl_http1_t) turns bytes from one connection into messages: the
 * head is collected into an sl_http_msg_t (request-target or reason phrase,
 * header names and values, framing facts), the body is handed out in pieces
 * as it arrives, never buffered.
 *
 * Who parses what. llhttp 8.1 parses heads only; it is lenient where a
 * proxy must not be (a CR followed by any byte ends a line, chunk framing
 * is not checked after the data, status codes of one or two digits pass),
 * and too strict where RFC 9112 is not (chunk extensions). So:
 *   - every head byte passes sluice's own line check before llhttp sees it
 *     (CR only before LF, no bare LF, no control character or DEL, no
 *     obsolete line folding, exactly two spaces in a request line, the
 *     size limit), and llhttp is given exactly the bytes of one head;
 *   - the body is delimited here: Content-Length, chunked (RFC 9112 §7.1,
 *     extensions and trailer fields checked and dropped) or, for a
 *     response, the connection's close (§6.3);
 *   - the head's framing facts are checked here (§6.1, §6.3): a
 *     Transfer-Encoding other than "chunked", Content-Length beyond 2^63-1,
 *     a CONNECT with a body, Transfer-Encoding in HTTP/1.0, status codes
 *     outside 100..599, empty header names, absolute-form targets with
 *     userinfo. Requests fail with 400/413/431/501/505, responses with 502.
 * Responses 1xx, 204 and 304, and a response the owner marks as bodiless
 * (to HEAD) end at their head whatever they announce.
 *
 * The builders write the heads sluice sends. Framing is never copied: the
 * Content-Length and Transfer-Encoding a built head carries come from the
 * framing the parser established (sl_framing_t), so the peer delimits the
 * body exactly where sluice did. Hop-by-hop headers (Connection and the
 * names it lists, Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade,
 * Transfer-Encoding, Expect) are dropped; Connection cannot remove Host or
 * the framing. X-Forwarded-For / X-Forwarded-Proto / Via are added.
 */
#ifndef SL_HTTP1_H
#define SL_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

#include "buf.h"
#include "reason.h"

typedef struct sl_http_header {
	uint32_t name; /* offsets into sl_http_msg_t.store */
	uint32_t name_len;
	uint32_t value;
	uint32_t value_len;
} sl_http_header_t;

typedef struct sl_http_msg {
	sl_buf_t store;            /* target/reason, header names and values */
	sl_http_header_t *headers; /* in received order */
	uint32_t nheaders;
	uint32_t headers_cap;
	uint32_t target; /* request-target (requests) or reason phrase (responses) */
	uint32_t target_len;
	uint32_t host;     /* requests: the authority the request is for, offset into store: */
	uint32_t host_len; /* the absolute-form target's, else the Host header's (RFC 9112 §3.2.2) */
	int method;        /* llhttp_method_t, requests */
	int status;        /* responses: 100..599 */
	uint8_t major, minor;
	int64_t content_length; /* -1 when absent; the parsed value, never above INT64_MAX */
	bool chunked;           /* Transfer-Encoding: chunked */
	bool has_host;          /* requests: host/host_len are set */
	bool keep_alive;        /* the connection may carry another message after this one */
	bool expect_continue;   /* request carries Expect: 100-continue */
} sl_http_msg_t;

/* What sl_http1_execute() reports. */
enum { SL_HTTP1_OK = 0, SL_HTTP1_PAUSED = 1, SL_HTTP1_ERROR = -1 };

/* What callbacks return to steer the parser. */
enum {
	SL_HTTP1_CONTINUE = 0,
	SL_HTTP1_PAUSE = 1,     /* stop after this event; execute() returns PAUSED */
	SL_HTTP1_SKIP_BODY = 2, /* on_head of a response to HEAD: no body follows */
	SL_HTTP1_UPGRADE = 3,   /* on_head of a 2xx to CONNECT: raw bytes follow the head */
	SL_HTTP1_FAIL = -1      /* the callback set an error with sl_http1_fail() */
};

typedef struct sl_http1 sl_http1_t;

typedef struct sl_http1_callbacks {
	int (*on_head)(sl_http1_t *p);                             /* head complete in p->msg */
	int (*on_body)(sl_http1_t *p, const char *at, size_t len); /* de-chunked body bytes */
	int (*on_complete)(sl_http1_t *p);                         /* message complete */
} sl_http1_callbacks_t;

struct sl_http1 {
	llhttp_t llhttp; /* first: callbacks cast back to sl_http1_t */
	sl_http_msg_t msg;
	const sl_http1_callbacks_t *cb;
	void *data;          /* owner */
	size_t max_head;     /* bytes of a head (or of a trailer section) before 431 (502 for responses) */
	int64_t max_body;    /* requests: a Content-Length above it fails 413 (0: no limit) */
	int error_status;    /* after SL_HTTP1_ERROR: 400, 413, 431, 501, 502, 505 ... */
	const char *error;   /* after SL_HTTP1_ERROR: static text for logs */
	uint64_t left;       /* body: bytes left of the Content-Length or of the chunk */
	uint64_t chunk_size; /* chunked: the size being read */
	uint32_t head_len;   /* bytes of this head (or chunk line, or trailer section) so far */
	uint32_t line_len;   /* bytes of the current head line */
	uint32_t line_no;    /* head line being scanned (0: start line) */
	uint16_t flags;      /* llhttp's framing flags (F_*) for this head */
	uint8_t spaces;      /* spaces in the start line (saturates) */
	uint8_t phase;       /* head, body, upgraded (see http1.c) */
	uint8_t body;        /* how the body is delimited */
	uint8_t chunk_state; /* where in the chunked framing */
	bool cr;             /* the last head byte was CR: LF must follow */
	bool head_done;      /* llhttp reported the end of the head */
	bool field_open;     /* a header name is being received */
	bool upgrade;        /* no HTTP after this message: raw bytes follow */
	bool eof_body;       /* this message's body ends when the connection closes */
	bool paused;         /* execute() returned PAUSED: call it again, even with no bytes */
	bool is_request;
};

/* Prepares p for a connection. callbacks must outlive p. */
void sl_http1_init(sl_http1_t *p, bool is_request, const sl_http1_callbacks_t *cb, void *data, size_t max_head);

/* Starts over for a new message on a reused connection; keeps the storage. */
void sl_http1_reset(sl_http1_t *p);

/* Frees the message storage. */
void sl_http1_dispose(sl_http1_t *p);

/* Parses up to len bytes. *consumed tells how many were used: all of them
 * for SL_HTTP1_OK, up to the pausing event for SL_HTTP1_PAUSED (after a
 * message that UPGRADEd, nothing more is consumed: the rest is raw). On
 * SL_HTTP1_ERROR p->error_status says what to answer. A paused parser
 * resumes on the next call, which may owe an event with no byte left (the
 * end of a bodiless message right after its paused head). */
int sl_http1_execute(sl_http1_t *p, const char *data, size_t len, size_t *consumed);

/* The peer closed: completes a close-delimited message (SL_HTTP1_OK, with
 * on_complete called) or reports a truncated one (SL_HTTP1_ERROR). */
int sl_http1_finish(sl_http1_t *p);

/* Whether the message being parsed (or just completed) ends only when the
 * connection closes. */
bool sl_http1_needs_eof(const sl_http1_t *p);

/* Called from a callback to fail parsing with this status. Returns SL_HTTP1_FAIL. */
int sl_http1_fail(sl_http1_t *p, int status, const char *why);

/* Header access. Name comparison is case-insensitive. */
const char *sl_http_msg_target(const sl_http_msg_t *m, size_t *len);
const sl_http_header_t *sl_http_msg_find(const sl_http_msg_t *m, const char *name);
static inline const char *sl_http_msg_str(const sl_http_msg_t *m, uint32_t off)
{
	return m->store.base + off;
}
const char *sl_http_method_name(int method);

/* How the body after a built head is delimited. The builders write the
 * framing headers from this and the parsed message, never from headers. */
typedef enum {
	SL_FRAME_NONE,    /* no body and no framing header (1xx, 204, a request without body) */
	SL_FRAME_LENGTH,  /* Content-Length: the parsed value (also as metadata on HEAD and 304 answers) */
	SL_FRAME_CHUNKED, /* Transfer-Encoding: chunked */
	SL_FRAME_CLOSE    /* body delimited by closing the connection (responses to HTTP/1.0) */
} sl_framing_t;

/* The framing a request is forwarded with: as the client delimited it. */
sl_framing_t sl_http1_request_framing(const sl_http_msg_t *req);

/* The request head for the upstream: request line (target as received, so
 * absolute-form stays absolute), Host (the authority the request is for;
 * default_host when the request named none, as an HTTP/1.0 one may),
 * end-to-end headers (names with '_' dropped, as nginx does: CGI-style
 * upstreams read them as the '-' names sluice sets), X-Forwarded-For (client
 * appended), X-Forwarded-Proto (kept, or "https" when the client came over
 * TLS, else "http"), Via, framing. Appends to out. */
void sl_http1_build_request(const sl_http_msg_t *req, const char *client_ip, const char *default_host,
                            sl_framing_t framing, bool https, sl_buf_t *out);

/* The response head for the client. keep_alive decides the Connection
 * header: "close" when false, "keep-alive" for an HTTP/1.0 client when true. */
void sl_http1_build_response(const sl_http_msg_t *resp, const sl_http_msg_t *req, sl_framing_t framing, bool keep_alive,
                             sl_buf_t *out);

/* A complete small response generated by sluice itself (errors, admin). */
void sl_http1_build_local(int status, const char *content_type, const char *body, size_t body_len, bool keep_alive,
                          const char *extra_headers, sl_buf_t *out);

#endif
