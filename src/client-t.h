/* client-t.h — the types of a client connection and of the request it
 * carries, shared by client.c (the connection) and forward.c (the request).
 * Types only; the functions are in client.h and forward.h.
 *
 * What belongs where is the struct it lives in:
 *   sl_client_t   the connection, for as long as it is open: socket, timer,
 *                 input buffer (only while not idle), state, peer address.
 *                 An idle keep-alive connection is this and nothing more.
 *   sl_request_t  from the first byte of a request head until the
 *                 connection is idle again (pipelined requests reuse it),
 *                 taken from and returned to a per-worker free list: the
 *                 parser, the heads being built, the replay buffer, the
 *                 admission waiter, and two parts zeroed at their start:
 *     .r         one request (zeroed when its head arrives)
 *     .a         one attempt at the upstream (zeroed when it starts)
 */
#ifndef SL_CLIENT_T_H
#define SL_CLIENT_T_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "admit.h"
#include "buf.h"
#include "deadline.h"
#include "http1.h"
#include "retry.h"
#include "list.h"
#include "upstream.h"
#include "worker.h"

/* States of a client connection. Each has its handlers (client.c's state
 * table); sl_client_set_state checks the transition in debug builds. */
typedef enum {
	CL_HEAD,    /* reading a request head, or idle between keep-alive requests */
	CL_LOCAL,   /* an /proxy-* request: its body is read and dropped, then answered */
	CL_QUEUED,  /* waiting in the admission queue; the body stays unread */
	CL_WAIT,    /* holding a slot, waiting for an upstream connection */
	CL_BACKOFF, /* an attempt failed; the next starts after a pause (slot kept) */
	CL_FORWARD, /* request going out, body streaming, answer coming back */
	CL_TUNNEL,  /* a 2xx to CONNECT: raw bytes both ways */
	CL_DISCARD, /* answered already: the rest of the request is read and dropped */
	CL_LINGER,  /* final answer written, FIN sent: input drained until the peer closes */
	CL_CLOSED,  /* uv_close called; freed when both handles have closed */
	CL_NSTATES
} cl_state_t;

typedef enum { EV_NONE, EV_HEAD, EV_COMPLETE } cl_event_t;

typedef struct sl_request {
	sl_http1_t parser; /* the connection's requests, parsed one after another */
	sl_buf_t out;      /* heads being built */
	sl_buf_t replay;   /* request body kept for a retry */
	sl_admit_waiter_t waiter;
	uv_shutdown_t shutdown_req;
	uint8_t event;                /* cl_event_t: what the parser paused on */
	uint32_t ip_of;               /* the IPv4 address `ip` holds (0: none; IPv6 is written each time) */
	char ip[INET6_ADDRSTRLEN];    /* the client's address, for X-Forwarded-For and the log */
	struct {                      /* one request: zeroed when the connection starts reading its head */
		uint64_t started_ns;  /* uv_hrtime at the head, for latency */
		uint64_t queue_ns;    /* time spent in the admission queue */
		uint64_t upstream_ns; /* uv_hrtime when the first attempt started */
		uint64_t slot_ns;     /* uv_hrtime when it got its slot, for the hold time (0: a tunnel's) */
		uint64_t body_bytes;  /* request body bytes received */
		uint64_t bytes_out;   /* response body bytes sent, for the access log */
		int status;           /* status sent (or being sent) to the client */
		int attempts;         /* attempts started */
		int retries;          /* retries after backoff */
		sl_framing_t req_framing, resp_framing;
		bool ended;              /* sl_forward_end ran: slot, breaker, outcome and log are settled */
		bool has_slot;           /* holds an admission slot */
		bool counted;            /* an outcome is owed (sl_metrics_begin called) */
		bool keep_alive;         /* the connection may carry another request after this one */
		bool request_done;       /* the whole request has been read */
		bool response_started;   /* a byte of the answer reached the client: no retry now */
		bool interim_sent;       /* a 1xx of this request reached the client */
		bool continue_sent;      /* sluice's own 100 Continue */
		bool head_pending;       /* the response head waits in `out` for the first body bytes */
		bool replay_ok;          /* every body byte sent so far is in `replay` */
		bool probe;              /* the circuit breaker's half-open probe */
		bool breaker_told;       /* the breaker has this request's verdict */
		bool connect;            /* CONNECT: a tunnel if the upstream agrees */
		bool tunnel_up_eof;      /* tunnel: the upstream has sent everything */
		bool tunnel_client_eof;  /* tunnel: the client has sent everything (FIN follows its bytes) */
		bool tunnel_counted;     /* tunnel: counts in the server's open tunnels (max_tunnels) */
		bool tunnel_queued;      /* tunnel: client bytes wait for a slot in the admission queue */
		bool tunnel_awaiting;    /* tunnel: client bytes went up, no upstream byte since */
		bool stale_retry_used;   /* the free retry on a stale pooled connection */
		bool retrying;           /* counted in the retry budget's retries in progress (budget.h) */
		bool signalled;          /* an attempt gave the adaptive limit an overload signal: not a sample */
		uint64_t ttfb_us;        /* --adaptive-limit: the last attempt's time to its answer's head */
		bool outcome_pending;    /* answered to a half-closed client: counted when the linger ends */
		uint8_t pending_outcome; /* sl_outcome_t, for then */
		uint8_t error;           /* sl_error_kind_t: why it ended badly, for the access log */
		uint64_t deadline;       /* loop ms by which the answer's head must be out (0: none) */
		uint64_t tunnel_last;    /* tunnel: loop ms of the last byte either way */
	} r;
	struct {                       /* one attempt: zeroed when it starts */
		sl_upconn_t *up;       /* NULL once the exchange ended or was dropped */
		bool up_backlogged;    /* the upstream's queue is full: stop reading the client */
		bool req_head_pending; /* the request head waits in `out` for this read's body bytes */
		bool status_retry;     /* a 502/503/504 head was refused to retry: `retry` holds the decision */
		uint64_t started_us;   /* --adaptive-limit: uv_hrtime µs the attempt started */
		sl_retry_verdict_t retry;
	} a;
} sl_request_t;

typedef struct sl_client {
	uv_tcp_t tcp;
	sl_deadline_t timer;
	sl_worker_t *w;
	sl_list_t link;      /* in the worker's list of connections */
	sl_request_t *req;   /* NULL while idle */
	char *in;            /* SL_CLIENT_BUF bytes read but not parsed; NULL while idle */
	uint64_t head_start; /* loop ms: first byte of this request's head (or accept) */
	uint64_t last_read;  /* loop ms */
	uint64_t last_write; /* loop ms of the last write progress */
	uint32_t in_off, in_len;
	struct sockaddr_in6 peer; /* or a sockaddr_in: the client's address */
	uint16_t flushing_slots;  /* ended requests' slots held until the write queue drains */
	uint8_t state;            /* cl_state_t */
	bool served;              /* a request has ended on it: an idle keep-alive connection now */
	bool admin_listener;      /* accepted on the admin port */
	bool reading;
	bool eof;             /* the client will send nothing more */
	bool parsing;         /* inside the parse loop: it sends a pending request head when done */
	bool shut;            /* uv_shutdown issued */
	bool shut_done;       /* ... and completed */
	bool write_failed;    /* the client is gone: closing from the timer */
	bool tls_fed;         /* TLS: a byte of the handshake arrived (a failure then counts) */
	ssize_t tls_eof;      /* TLS: the transport ended while decrypted input still waited (0: not) */
	sl_tls_t *tls;        /* HTTPS on the listen port: the stream under the parser, or NULL */
	sl_defer_t tls_defer; /* TLS: decrypt what waited for room, from the next turn */
} sl_client_t;

#endif
