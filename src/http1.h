/* http1.h — HTTP/1.x messages: the only module that talks to llhttp.
 *
 * A parser (sl_http1_t) turns bytes from one connection into messages: the
 * head is collected into an sl_http_msg_t (request-target or reason phrase,
 * header names and values, framing facts), the body is handed out in pieces
 * as it arrives, never buffered. Strictness is llhttp's (no lenient flag) plus
 * the checks llhttp leaves to us: obsolete line folding, whitespace before
 * the colon, a request Transfer-Encoding other than "chunked", a missing or
 * repeated Host, unknown HTTP versions.
 *
 * The builders write the heads sluice sends: hop-by-hop headers (Connection
 * and the names it lists, Keep-Alive, Proxy-Connection, TE, Trailer,
 * Upgrade, Transfer-Encoding, Expect) are dropped, framing is re-stated by
 * the caller's choice, X-Forwarded-For / X-Forwarded-Proto / Via are added.
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
	int method; /* llhttp_method_t, requests */
	int status; /* responses */
	uint8_t major, minor;
	int64_t content_length; /* -1 when absent */
	bool chunked;           /* Transfer-Encoding: chunked */
	bool keep_alive;        /* llhttp's verdict for this message */
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
	void *data;           /* owner */
	size_t max_head;      /* bytes of head storage before 431 (502 for responses) */
	int error_status;     /* after SL_HTTP1_ERROR: 400, 413, 431, 501, 502, 505 ... */
	const char *error;    /* after SL_HTTP1_ERROR: static text for logs */
	const char *exec_at;  /* start of the data being executed, for fold detection */
	const char *exec_end; /* its end */
	uint64_t chunk_left;  /* data bytes left in the current chunk */
	int crlf_need;        /* bytes of a chunk's closing CRLF still to check */
	char tail[2];         /* last two bytes of the previous execute's data */
	bool in_trailers;     /* header callbacks after the head are trailers: ignored */
	bool field_open;      /* a header name is being received */
	bool value_seen;      /* a piece of the current header value was seen */
	bool paused;          /* llhttp is paused and must be resumed before executing */
	bool is_request;
};

/* Prepares p for a connection. callbacks must outlive p. */
void sl_http1_init(sl_http1_t *p, bool is_request, const sl_http1_callbacks_t *cb, void *data, size_t max_head);

/* Starts over for a new message on a reused connection; keeps the storage. */
void sl_http1_reset(sl_http1_t *p);

/* Frees the message storage. */
void sl_http1_dispose(sl_http1_t *p);

/* Parses up to len bytes. *consumed tells how many were used: all of them
 * for SL_HTTP1_OK, up to the pausing event for SL_HTTP1_PAUSED. On
 * SL_HTTP1_ERROR p->error_status says what to answer. A paused parser
 * resumes on the next call. */
int sl_http1_execute(sl_http1_t *p, const char *data, size_t len, size_t *consumed);

/* The peer closed: completes a close-delimited message (SL_HTTP1_OK, with
 * on_complete called) or reports a truncated one (SL_HTTP1_ERROR). */
int sl_http1_finish(sl_http1_t *p);

/* Whether the message being parsed ends only when the connection closes. */
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

/* How a built head frames the body that follows. */
typedef enum {
	SL_FRAME_AS_IS,   /* keep Content-Length as received, add nothing */
	SL_FRAME_CHUNKED, /* add Transfer-Encoding: chunked */
	SL_FRAME_CLOSE    /* body delimited by closing the connection */
} sl_framing_t;

/* The request head for the upstream: request line (target as received, so
 * absolute-form stays absolute), end-to-end headers, X-Forwarded-For (client
 * appended), X-Forwarded-Proto (kept, or "http"), Via, framing. Appends to out. */
void sl_http1_build_request(const sl_http_msg_t *req, const char *client_ip, sl_framing_t framing, sl_buf_t *out);

/* The response head for the client. keep_alive decides the Connection
 * header: "close" when false, "keep-alive" for an HTTP/1.0 client when true. */
void sl_http1_build_response(const sl_http_msg_t *resp, const sl_http_msg_t *req, sl_framing_t framing, bool keep_alive,
                             sl_buf_t *out);

/* A complete small response generated by sluice itself (errors, admin). */
void sl_http1_build_local(int status, const char *content_type, const char *body, size_t body_len, bool keep_alive,
                          const char *extra_headers, sl_buf_t *out);

#endif
