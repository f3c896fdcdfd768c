/* upstream.h — one exchange with the upstream: connect (or reuse a pooled
 * connection), send the request, parse the response, hand it to its owner.
 *
 * An sl_upconn_t is an upstream TCP connection. While it has an owner it
 * carries that owner's exchange, reporting through the event table the owner
 * gave at acquire (h2o's httpclient does the same): upstream.c knows nothing
 * of clients, so the exchange can be driven by a test, a health check or a
 * drain as well as by a client request. Between exchanges it idles in the
 * worker's pool, still reading so that a close by the upstream removes it at
 * once. Every failure goes through one place (do_fail) that detaches the
 * owner, closes the connection and reports an sl_up_failure_t — never from
 * inside a call the owner made, always from a libuv callback, so the owner is
 * never re-entered.
 *
 * Timers (one per connection, re-armed per phase, checked lazily): connect
 * timeout; write timeout while request bytes are queued; read timeout once
 * the request is sent (for the head and between body reads, paused while the
 * client is the slow side); pool idle timeout while pooled.
 */
#ifndef SL_UPSTREAM_H
#define SL_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "http1.h"

typedef struct sl_worker sl_worker_t;
typedef struct sl_upconn sl_upconn_t;

typedef enum {
	SL_UP_RESOLVE,         /* the target name did not resolve */
	SL_UP_CONNECT,         /* connection refused / unreachable */
	SL_UP_CONNECT_TIMEOUT, /* connect_timeout passed */
	SL_UP_WRITE,           /* writing the request failed */
	SL_UP_WRITE_TIMEOUT,   /* a request write stalled for write_timeout */
	SL_UP_CLOSED,          /* closed or reset before any response byte */
	SL_UP_READ_TIMEOUT,    /* read_timeout passed waiting for the response */
	SL_UP_BAD_RESPONSE,    /* the response did not parse */
	SL_UP_TRUNCATED,       /* closed, reset or timed out inside the response */
	SL_UP_ERROR_STATUS     /* answered 502/503/504 and the client chose to retry */
} sl_up_error_t;

typedef struct sl_up_failure {
	sl_up_error_t kind;
	int uv_err;           /* the libuv error behind it, or 0 */
	bool reused;          /* the connection came from the pool */
	bool request_written; /* some request byte may have reached the upstream */
	bool request_sent;    /* the whole request was handed to the kernel */
	int status;           /* for SL_UP_ERROR_STATUS */
	/* The target address the connection used or tried last; NULL when none
	 * was picked (resolve failures). Valid during the error event only. */
	const struct sockaddr *addr;
} sl_up_failure_t;

const char *sl_up_error_name(sl_up_error_t kind);
bool sl_up_error_is_timeout(sl_up_error_t kind);

/* What an exchange tells its owner. Each runs from a libuv callback, never
 * inside a call the owner made into this module (ready and error included:
 * a new connection reports them from a later loop turn). */
typedef struct sl_upstream_events {
	void (*ready)(void *owner);                           /* connected: send the request */
	void (*info)(void *owner, const sl_http_msg_t *resp); /* an interim (1xx) answer */
	/* The final answer's head: 0 to take the answer, -1 to refuse it (the
	 * exchange then fails as SL_UP_ERROR_STATUS: the owner will retry). */
	int (*head)(void *owner, const sl_http_msg_t *resp);
	/* Answer body bytes (raw tunnel bytes once a tunnel is open); true when
	 * the owner is backlogged: reading stops until sl_upstream_resume. */
	bool (*body)(void *owner, const char *at, size_t len);
	void (*flush)(void *owner); /* end of one read of the answer */
	/* The answer is complete; the connection is back in the pool or closed,
	 * and detached from the owner. */
	void (*done)(void *owner);
	void (*error)(void *owner, const sl_up_failure_t *f); /* failed; closed and detached */
	void (*drain)(void *owner);       /* the request bytes queued fell below the low-water mark */
	void (*tunnel_open)(void *owner); /* a 2xx to CONNECT: raw bytes both ways from now */
	void (*tunnel_eof)(void *owner);  /* the upstream half-closed the tunnel */
} sl_upstream_events_t;

/* Gets a connection for an exchange reported to (ev, owner): a pooled one
 * (returned ready: sl_upstream_is_ready) or a new one (connecting; ev->ready
 * or ev->error follows). ev must outlive the exchange. */
sl_upconn_t *sl_upstream_acquire(sl_worker_t *w, const sl_upstream_events_t *ev, void *owner);
bool sl_upstream_is_ready(const sl_upconn_t *up);

/* What the response to a request looks like. */
typedef enum {
	SL_UP_EXPECT_BODY,    /* framed by its head */
	SL_UP_EXPECT_NO_BODY, /* a response to HEAD */
	SL_UP_EXPECT_TUNNEL   /* a response to CONNECT: a 2xx opens a tunnel */
} sl_up_expect_t;

/* Starts an exchange on a ready connection: resets the response parser and
 * writes the head, followed in the same system call by up to three buffers
 * of body (nbody may be 0). Returns as sl_upstream_send. */
int sl_upstream_send_head(sl_upconn_t *up, const char *head, size_t len, const uv_buf_t *body, unsigned nbody,
                          sl_up_expect_t expect);

/* Tunnel (after a 2xx to CONNECT): the client sent EOF; pass it on with a
 * half-close, once the queued bytes are written. */
void sl_upstream_shutdown(sl_upconn_t *up);

/* Writes request body bytes. Returns 0, 1 when the upstream is backlogged
 * (stop reading the client until ev->drain), or < 0 when the connection
 * failed (reported asynchronously). */
int sl_upstream_send(sl_upconn_t *up, const uv_buf_t *bufs, unsigned n);

/* The whole request has been written: the read timeout starts. */
void sl_upstream_request_done(sl_upconn_t *up);

/* Client backpressure: stop / resume reading the response (or the tunnel). */
void sl_upstream_pause(sl_upconn_t *up);
void sl_upstream_resume(sl_upconn_t *up);

/* The answer must begin by deadline_ms (loop time; 0: no deadline): past
 * it, the exchange fails as a connect timeout (still connecting) or a read
 * timeout (waiting for the answer). Once the answer has begun, only
 * read_timeout between reads applies (--request-timeout). */
void sl_upstream_set_deadline(sl_upconn_t *up, uint64_t deadline_ms);

/* Gives the exchange to another owner, which gets every event from now on
 * (a drain taking over a request whose client left); reading resumes if the
 * old owner had paused it, and the deadline no longer applies. */
void sl_upstream_hand_over(sl_upconn_t *up, const sl_upstream_events_t *ev, void *owner);

/* Forgets the owner and closes the connection (client gone, or the
 * exchange abandoned). No event follows. */
void sl_upstream_abort(sl_upconn_t *up);

/* Once a second: closes this worker's idle connections that the process
 * keeps beyond pool_maxsize, if they have been idle a second (pool.h), and
 * opens connections until `warm_target` are idle or on their way
 * (pool_connections: warm connections ready before the first request). */
void sl_upstream_tend_pool(sl_worker_t *w, uint32_t warm_target);

/* Shutdown: close every idle pooled connection (all = every connection). */
void sl_upstream_close_pool(sl_worker_t *w);
void sl_upstream_close_all(sl_worker_t *w);

#endif
