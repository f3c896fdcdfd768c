/* cluster.h — one limit for many replicas (--redis-url): this replica's
 * lease on the cluster's slots, kept in Redis.
 *
 * Runs on the main thread's loop, never on a request's path: a timer every
 * SL_CLUSTER_TICK_MS reads the admission counters, asks the lease controller
 * (lease.h) whether to talk to Redis, sends the one script (cluster.lua)
 * through hiredis's libuv adapter, and sets the admission limit (admit.h) to
 * what the controller allows. Workers see only that limit, and, under the
 * closed fallback, a flag that makes them answer 503 cluster_unavailable.
 *
 * Redis I/O: the host name is resolved with uv_getaddrinfo (hiredis would
 * block the loop); every command is guarded by a timer (hiredis 0.14 has no
 * timeouts for asynchronous commands): past it the connection is dropped,
 * which fails every command on it, and a new one is made after a backoff.
 * On a graceful stop the replica's record is deleted, so its slots go to the
 * others at once instead of after the TTL.
 */
#ifndef SL_CLUSTER_H
#define SL_CLUSTER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "lease.h"

#define SL_CLUSTER_TICK_MS 20

typedef struct sl_server sl_server_t;
struct redisAsyncContext;

/* What /proxy-metrics and /proxy-health show (any thread). */
typedef struct sl_cluster_stats {
	sl_cluster_state_t state;
	uint32_t replicas; /* live replicas at the last answer, this one included */
	uint32_t lease;    /* slots this replica may use now */
	uint32_t limit;    /* N, for all replicas */
	uint64_t lease_changes, redis_errors, redis_commands;
} sl_cluster_stats_t;

typedef struct sl_cluster {
	uv_loop_t *loop;
	sl_server_t *server;
	char *host, *user, *password; /* from the URL */
	int port, db;
	char key[320]; /* the Redis key: sluice:{cluster key}:leases */
	char id[128];  /* this replica: host name, pid, a random part */
	sl_lease_t lease;
	struct redisAsyncContext *ac; /* NULL while not connected */
	bool connected;               /* the connect callback said so */
	bool resolving;
	uv_getaddrinfo_t gai;
	uv_timer_t tick;  /* SL_CLUSTER_TICK_MS: the controller's clock */
	uv_timer_t guard; /* the command (or connect) in flight: its timeout */
	uint64_t reconnect_at;
	uint32_t reconnect_backoff_ms;
	uint32_t applied_limit;
	uint64_t applied_fence; /* ms (uv_now) the lease's trust ends, 0: none */
	sl_cluster_state_t applied_state;
	bool stopping;
	uint64_t command_timeout_ms;
	/* published for other threads */
	_Atomic int pub_state;
	_Atomic uint32_t pub_replicas, pub_lease, pub_limit;
	_Atomic uint64_t pub_changes, pub_errors, pub_commands;
} sl_cluster_t;

/* Starts the controller on loop (the main thread's) for server, whose
 * settings carry redis_url (already checked by config.c). The admission
 * limit is 0 until Redis first answers: requests queue. Returns 0, or -1
 * with err set. */
int sl_cluster_start(sl_cluster_t *c, uv_loop_t *loop, sl_server_t *server, char *err, size_t errlen);

/* A new N (SIGHUP). */
void sl_cluster_set_limit(sl_cluster_t *c, uint32_t limit);

/* Ends it: deletes this replica's record (best effort, bounded by the
 * command timeout) and closes every handle; the loop then ends. */
void sl_cluster_stop(sl_cluster_t *c);

/* A copy of the published figures (any thread). */
void sl_cluster_get_stats(const sl_cluster_t *c, sl_cluster_stats_t *out);

/* Parses redis://[[user]:password@]host[:port][/db] into its parts (heap
 * strings the caller frees; user and password may be NULL). Returns 0, or
 * -1 with one sentence in err. */
int sl_cluster_parse_url(const char *url, char **host, int *port, char **user, char **password, int *db, char *err,
                         size_t errlen);

#endif
