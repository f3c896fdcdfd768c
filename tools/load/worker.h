/* worker.h — one sluice-load thread: a libuv loop driving many connections.
 *
 * The run is described once by an sl_load_plan_t, shared read-only by all
 * workers; worker i of T takes every T-th request of the global sequence
 * (closed loop: its share of --total-requests; open loop: requests i, i+T,
 * i+2T... of the schedule start + j / rate, so each thread paces rate / T)
 * and its share of the connections, and in the open loop its share of
 * max_connections to grow into: the threads grow independently, so
 * together they never exceed it. */
#ifndef SL_LOAD_WORKER_H
#define SL_LOAD_WORKER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "stats.h"

typedef struct sl_load_plan {
	const struct sockaddr *addr; /* resolved once, at start */
	const char *request;         /* pre-formatted, never modified */
	size_t request_len;
	bool head;                /* responses to HEAD carry no body */
	bool keepalive;           /* false: a new connection per request */
	struct ssl_ctx_st *tls;   /* https://: every connection does a full TLS handshake first; NULL: http */
	const char *tls_name;     /* https://: SNI and the name checked */
	unsigned threads;         /* T */
	unsigned connections;     /* across all threads; open loop: to start with */
	unsigned max_connections; /* open loop: may grow up to this; closed loop: == connections */
	uint64_t total;           /* requests; 0 when running for a duration */
	uint64_t start_ns;        /* uv_hrtime() epoch of the run and of the schedule */
	uint64_t end_ns;          /* duration: nothing is started at or after it; else UINT64_MAX */
	uint64_t timeout_ns;
	double rate; /* requests per second across all threads; 0 = closed loop */
} sl_load_plan_t;

typedef struct sl_load_worker sl_load_worker_t;

/* Called on a worker's thread when it has finished (before its thread ends). */
typedef void (*sl_load_worker_done_cb)(void *arg);

/* Allocates worker `index` of plan->threads; NULL when out of memory. */
sl_load_worker_t *sl_load_worker_new(const sl_load_plan_t *plan, unsigned index, sl_load_worker_done_cb done,
                                     void *arg);

/* Starts the worker's thread. 0 or a negative libuv error. */
int sl_load_worker_start(sl_load_worker_t *w);

/* Waits for the worker's thread to end. */
void sl_load_worker_join(sl_load_worker_t *w);

/* The worker's counters: pub_* at any time, the rest after join. */
const sl_load_stats_t *sl_load_worker_stats(const sl_load_worker_t *w);

void sl_load_worker_free(sl_load_worker_t *w);

/* Adds the worker's live counts, as of `now` (uv_hrtime()), into *p: callable
 * from any thread while it runs; relaxed, so a count may lag a little. */
void sl_load_worker_progress(const sl_load_worker_t *w, uint64_t now, sl_load_progress_t *p);

/* Asks every worker to stop soon: nothing new is sent, requests in flight
 * are abandoned uncounted. Async-signal-safe (one atomic store). */
void sl_load_worker_interrupt(void);

/* Was sl_load_worker_interrupt() called? */
bool sl_load_worker_interrupted(void);

#endif
