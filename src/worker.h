/* worker.h — the process and its event-loop threads.
 *
 * sl_server_t is the process: settings, workers, process-wide limits. Each
 * sl_worker_t owns one libuv loop on its own thread with its own listening
 * socket (SO_REUSEPORT: the kernel spreads connections), its own upstream
 * pool, resolver, counters and free lists. Connections never move between
 * workers, so the connection, its request and its upstream exchange belong
 * to one thread and take no lock. What is shared, and how:
 *   - admission (slots and queue): admit.c's mutex; grants reach a waiter's
 *     worker through its inbox (uv_async);
 *   - the circuit breaker: an atomic load while closed, a mutex for
 *     transitions;
 *   - the client-connection count: one atomic;
 *   - counters: one writer each (the worker), summed by the admin endpoints
 *     with relaxed loads (stat.h);
 *   - the settings: a pointer swapped by SIGHUP (sl_server_config), taken by
 *     each worker when woken, with a generation main uses to free old ones;
 *   - shutdown phases: an atomic and a wake-up (uv_async).
 */
#ifndef SL_WORKER_H
#define SL_WORKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "accesslog.h"
#include "adaptive.h"
#include "admit.h"
#include "breaker.h"
#include "budget.h"
#include "config.h"
#include "list.h"
#include "metrics.h"
#include "pool.h"
#include "resolve.h"
#include "tls.h"

#define SL_READ_BUF_SIZE (64 * 1024)
#define SL_CLIENT_BUF (16 * 1024) /* a client connection's input buffer */
#define SL_FREE_BUFS 64           /* idle client buffers kept for reuse */
#define SL_FREE_REQS 64           /* idle request structs (client-t.h) kept for reuse */
/* Above this many bytes queued towards one side, stop reading the other. */
#define SL_HIGH_WATER (256 * 1024)
#define SL_LOW_WATER (64 * 1024)
#define SL_TLS_PLAIN_BUF (16 * 1024) /* one TLS record's plaintext at most */

typedef struct sl_server sl_server_t;

/* Work put off to the next loop turn (a TLS stream holding input its owner
 * had no room for when room came back): runs once, from the worker's idle
 * handle, unless cancelled. Zero-initialised, then sl_defer_init. */
typedef struct sl_defer {
	sl_list_t link;
	void (*fn)(struct sl_defer *d);
} sl_defer_t;

typedef struct sl_worker {
	uv_loop_t loop;
	uv_thread_t thread;
	int id;
	sl_server_t *server;
	const sl_config_t *cfg;
	int listen_fd, admin_fd; /* bound by main, opened into the loop by the worker */
	uv_tcp_t listener, admin_listener;
	bool has_listener, has_admin;
	uv_async_t wake;              /* main -> worker: shutdown phases */
	uv_timer_t pool_timer;        /* once a second: trims the pool, keeps pool_connections open */
	uint32_t warm_target;         /* this worker's share of pool_connections */
	uint32_t warming;             /* warm connections still connecting */
	sl_admit_inbox_t admit_inbox; /* slots handed to this worker's queued requests */
	sl_pool_t pool;
	sl_resolver_t resolver;
	char target_authority[300]; /* "host:port" of the target: Host for requests that name none */
	sl_list_t clients;          /* every open client connection */
	sl_list_t upconns;          /* every open upstream connection */
	uint32_t nclients;          /* client connections on the main port */
	uint32_t nadmin;            /* ... and on the admin port */
	bool accept_paused;         /* max_connections: a connection waits on `listener`, unaccepted */
	bool admin_paused;          /* the admin allowance: one waits on `admin_listener` */
	bool done;                  /* draining, and nothing of ours is left (counted in workers_done) */
	bool draining;              /* stop accepting, finish in-flight requests */
	bool stopping;              /* close everything now */
	bool closed;                /* loop handles closed, loop is ending */
	char *read_buf;             /* shared by upstream connections: parsed in full on each read */
	sl_metrics_t metrics;
	sl_access_log_t access_log;
	uint64_t rng;                  /* xorshift state for retry jitter */
	char *free_bufs[SL_FREE_BUFS]; /* client input buffers, for reuse */
	int nfree_bufs;
	struct sl_request *free_reqs[SL_FREE_REQS]; /* request structs, for reuse (client.c) */
	int nfree_reqs;
	uint64_t applied_gen; /* cfg_gen when this worker last took the settings (atomic) */
	uv_idle_t defer_idle; /* runs `deferred` (sl_worker_defer) */
	sl_list_t deferred;
	sl_buf_t tls_out;                /* TLS output of this thread's streams, empty between calls (tls.h) */
	char *tls_plain;                 /* decrypted upstream bytes, parsed in full on each read */
	SSL_SESSION *tls_session;        /* the upstream session to resume on the next connection */
	uint64_t tls_handshake_failures; /* client handshakes that failed (plain HTTP to the TLS port, ...) */
} sl_worker_t;

struct sl_server {
	sl_config_t *cfg; /* the settings in force: read with sl_server_config() */
	uint64_t cfg_gen; /* bumped (atomic) after each new cfg is published */
	int nworkers;
	sl_worker_t *workers;
	uint64_t start_ms;                  /* uv_hrtime at start, in ms */
	double start_wall_s;                /* Unix time at start, for process_start_time_seconds */
	atomic_int connections;             /* client connections held, all workers (admin port: not counted) */
	atomic_int admin_connections;       /* admin-port connections: their own small allowance */
	atomic_uint_fast64_t limit_reached; /* times max_connections was reached (episodes) */
	atomic_bool at_limit;               /* accepting paused at max_connections: logged once per episode */
	atomic_int paused_listeners;        /* listeners paused for want of room: closes wake their workers */
	atomic_int workers_done;    /* draining workers with nothing left (worker 0 then closes the admin port) */
	atomic_uint pool_idle;      /* idle upstream connections, all workers (pool.h) */
	atomic_int tunnels;         /* CONNECT tunnels open (or being opened), all workers */
	sl_admit_t admit;           /* slots and queue, all workers */
	sl_breaker_t breaker;       /* the circuit breaker, all workers */
	sl_budget_t budget;         /* the retry budget, all workers (budget.h) */
	sl_adaptive_t adaptive;     /* the adaptive limit, all workers (adaptive.h): a cap on `admit` */
	struct sl_cluster *cluster; /* --redis-url: the lease on the cluster's slots (main thread), or NULL */
	atomic_bool cluster_closed; /* the closed fallback is on: answer 503 cluster_unavailable */
	atomic_int shutdown_phase;  /* 0 running, 1 draining, 2 stopping */
	atomic_int workers_exited;
	int access_log_fd;               /* -1: no access log */
	uv_async_t *worker_exited;       /* worker -> main */
	SSL_CTX *tls_client_ctx;         /* --target-tls: the context of upstream connections, or NULL */
	sl_tls_listener_t *tls_listener; /* --tls-cert: the listen port's certificate, or NULL */
};

/* The settings in force (SIGHUP may replace them; any thread). */
static inline const sl_config_t *sl_server_config(sl_server_t *s)
{
	return __atomic_load_n(&s->cfg, __ATOMIC_ACQUIRE);
}

/* Binds the listening sockets (one per worker, SO_REUSEPORT) so that a port
 * in use is reported before any thread starts. Returns 0 or -errno. */
int sl_worker_bind(sl_worker_t *w, sl_server_t *s, int id, char *err, size_t errlen);

/* Sets up the worker's loop, handles and counters (main thread, before any
 * worker runs). Then sl_worker_start() starts its thread. */
int sl_worker_prepare(sl_worker_t *w);
int sl_worker_start(sl_worker_t *w);

/* From the main thread: enter shutdown phase (1 drain, 2 stop now). */
void sl_worker_signal(sl_worker_t *w);

/* Joins the thread and frees the loop. */
void sl_worker_join(sl_worker_t *w);

/* A client input buffer (SL_CLIENT_BUF bytes) from the worker's free list
 * or the heap; put back when the connection goes idle. */
char *sl_worker_get_buffer(sl_worker_t *w);
void sl_worker_put_buffer(sl_worker_t *w, char *buf);

void sl_defer_init(sl_defer_t *d, void (*fn)(sl_defer_t *d));
/* Runs d->fn from the next loop turn (once, however often asked). */
void sl_worker_defer(sl_worker_t *w, sl_defer_t *d);
void sl_defer_cancel(sl_defer_t *d);

/* A uniform random number in [0, 1), from the worker's own generator. */
double sl_worker_random(sl_worker_t *w);

/* From the worker's own thread: the client or upstream count fell; exit the
 * loop if draining and nothing is left. */
void sl_worker_maybe_finish(sl_worker_t *w);

/* From the worker's own thread: one of its client connections closed
 * (admin: an admin-port one). Gives its place back, wakes listeners paused
 * at the limit, and ends the loop if draining and nothing is left. */
void sl_worker_connection_closed(sl_worker_t *w, bool admin);

#endif
