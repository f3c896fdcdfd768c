/* conn-t.h — the client connection's types, shared by its two halves:
 * conn.c (reading, parsing, lifecycle) and respond.c (writing a response).
 * Types only; the functions are in conn.h and respond.h.
 *
 * One connection handles one request at a time: when a request is complete
 * the parser is paused, later pipelined bytes wait in `in`, and parsing
 * resumes only once the response has been fully written. That keeps
 * responses in order without any queue. */
#ifndef SL_UP_CONN_T_H
#define SL_UP_CONN_T_H

#include <stdbool.h>
#include <stdint.h>

#include <llhttp.h>
#include <uv.h>

#include "http-t.h"
#include "list.h"
#include "params.h"

#define SL_UP_IN_CAP 16384         /* read buffer; pipelined requests wait here */
#define SL_UP_OUT_CAP 8192         /* response head plus chunk framing */
#define SL_UP_MAX_HEADERS 128      /* more: 431 */
#define SL_UP_HEAD_MAX (64 * 1024) /* request-target + headers; more: 431 */

typedef enum {
	SL_UP_RX,      /* idle, or reading a request */
	SL_UP_DELAY,   /* request complete, waiting delay_ms (timer) */
	SL_UP_WRITE,   /* writing the response */
	SL_UP_GAP,     /* between two chunks, waiting chunk_delay_ms (timer) */
	SL_UP_HANG,    /* fail=hang: never answering; input is discarded */
	SL_UP_LINGER,  /* our side shut down; input discarded until EOF (timer) */
	SL_UP_CLOSING, /* uv_close() called; memory freed in the close callbacks */
} sl_up_state_t;

typedef enum {
	SL_UP_FRAME_LENGTH,  /* Content-Length */
	SL_UP_FRAME_CHUNKED, /* Transfer-Encoding: chunked */
	SL_UP_FRAME_CLOSE,   /* delimited by closing the connection */
} sl_up_framing_t;

typedef enum { SL_UP_EP_NONE, SL_UP_EP_STATS, SL_UP_EP_RESET, SL_UP_EP_LOG } sl_up_endpoint_t;

/* The response being written. The body is cut into segments (the chunks=N
 * chunks, or 64 KiB chunked frames, or one segment), each segment into
 * slices of at most one write. */
typedef struct sl_up_resp {
	int status;
	const char *ctype;
	sl_up_framing_t framing;
	bool no_body;       /* HEAD, 204, 304: the head only */
	bool close_after;   /* the connection ends with this response */
	bool truncate;      /* fail=truncate: stop after `limit` body bytes */
	bool text;          /* chunk i is "data: chunk i\n\n" */
	bool explicit_segs; /* chunks=N: size is spread over nseg segments */
	bool http10;        /* status line says HTTP/1.0 */
	const char *buf;    /* body bytes, or NULL for the a..z pattern */
	char *owned;        /* malloc'd body (buf points into it), freed at the end */
	uint64_t size;      /* body bytes in total (not for text) */
	uint64_t limit;     /* body bytes actually sent (truncate) */
	uint64_t sent;      /* body bytes sent so far */
	uint64_t nseg, seg; /* segments; the current one */
	uint64_t seg_len, seg_off;
	uint64_t gap_ms;
	size_t head_len; /* bytes of head at the start of conn.out */
	bool head_sent;
	bool in_seg;    /* the current segment has started */
	bool seg_ended; /* the last batch ended a segment */
	bool body_done; /* the last batch ended the body */
} sl_up_resp_t;

typedef struct sl_up_conns sl_up_conns_t;

typedef struct sl_up_conn {
	uv_tcp_t tcp;
	uv_timer_t timer; /* one timer, re-armed per phase: idle, delay, gap, linger */
	uv_write_t wreq;  /* at most one write is outstanding */
	uv_shutdown_t sreq;
	sl_list_t node; /* in conns->list */
	sl_up_conns_t *conns;
	uint64_t id;
	sl_up_state_t state;
	int closes_pending; /* handle close callbacks still to come */
	bool reading;       /* uv_read_start() is active */
	bool eof;           /* the client has shut down its side */
	bool writing;       /* wreq is outstanding */
	bool parsing;       /* inside the parse loop: do not re-enter it */
	bool open_counted;  /* sl_up_stats_conn_open() applies to us */
	bool req_counted;   /* the current request is counted in stats */
	bool req_answered;  /* ...and already left inflight: its last bytes are being written */
	uint64_t nreq;      /* request heads received on this connection */

	llhttp_t parser;
	/* The current request. */
	bool in_request; /* its first byte has been parsed */
	bool in_field;   /* inside a header name */
	bool keep_alive;
	bool want_fnv;
	bool bad_param;
	int err_status; /* set by a callback that stops the parser (431) */
	sl_up_endpoint_t endpoint;
	char *hbuf; /* request-target, header names and values; then scratch */
	uint32_t hlen, hcap;
	uint32_t url_len; /* the target is hbuf[0..url_len) */
	uint32_t nhdrs;
	sl_up_hdr_t hdrs[SL_UP_MAX_HEADERS];
	uint64_t body_bytes;
	uint64_t fnv;
	uint64_t log_seq;
	sl_up_params_t params;
	sl_up_resp_t resp;

	size_t in_off, in_len; /* unparsed input is in[in_off..in_len) */
	/* Buffers last: accept zeroes only what comes before them. */
	char in[SL_UP_IN_CAP];
	char out[SL_UP_OUT_CAP];
} sl_up_conn_t;

#endif
