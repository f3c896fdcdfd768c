/* lease.h — this replica's share of a cluster-wide limit (--redis-url), as
 * a pure controller: a function of (events, now), no I/O and no clock of
 * its own, so every rule is tested in virtual time (tests/unit/test_lease.c).
 * cluster.c feeds it and carries out what it says.
 *
 * The model. N slots (max_concurrent_requests) are shared by every replica
 * with the same cluster key. Redis holds one record per replica: the slots
 * leased to it, their expiry (Redis's own TIME plus the lease TTL) and its
 * demand. A script (cluster.lua) changes a replica's record atomically and
 * never lets the leases of the live replicas add up to more than N. A
 * replica admits locally up to its lease, so a request's path never touches
 * Redis; the controller decides when to talk to Redis:
 *   - heartbeat: every TTL/3 (renews the lease: expiry moves on);
 *   - starving: requests are queued and every leased slot is busy: ask for
 *     more at once (then at most every SL_LEASE_MIN_GAP_MS; every
 *     SL_LEASE_FAIR_GAP_MS once we hold our fair share, to learn of slots
 *     the others give back);
 *   - spare: the lease exceeds what demand has needed for a while (short
 *     when other replicas want slots, long when nobody does, so a steady
 *     trickle of requests does not pay a round trip each): give back;
 *   - over its fair share (max-min fair over the replicas' demands, as the
 *     script computes it): admit no more than the fair share and give back
 *     slots as they come free;
 *   - holding more than an even split (N / replicas): every
 *     SL_LEASE_FAIR_GAP_MS, to learn soon that others want slots (a replica
 *     hears of the others' demand only in answers to its own requests).
 *
 * Safety: Redis's record of our lease is never below what we may be using.
 * A request carries `floor`, the least lease we can accept: our local limit
 * while the request is in flight (so nothing is admitted past it), at least
 * the slots in use. The script grants max(floor, what is fair and free), so
 * shrinking is always our own choice, made before Redis hears of it. After
 * a request whose answer was lost, the local limit stays at that floor until
 * Redis answers again (it may have recorded it).
 *
 * Self-fencing: a lease is trusted until its expiry minus TTL/4, counted
 * from the moment its request was sent (so never later than Redis's own
 * expiry). Past that, with Redis unreachable, the fallback applies: static
 * (floor(N / replicas last seen), at least 1) or closed (no slot at all);
 * with Redis reachable but the lease lost (a replica paused past its TTL),
 * nothing is admitted until a new lease arrives.
 */
#ifndef SL_LEASE_H
#define SL_LEASE_H

#include <stdbool.h>
#include <stdint.h>

#define SL_LEASE_MIN_GAP_MS 10       /* between two requests that ask for more */
#define SL_LEASE_FAIR_GAP_MS 200     /* ... when we already hold our fair share: to learn of slots freed */
#define SL_LEASE_SPARE_BUSY_MS 250   /* give back spare slots this soon when others want them */
#define SL_LEASE_SPARE_IDLE_MS 5000  /* ... and this late when nobody does */
#define SL_LEASE_OVERFAIR_GAP_MS 100 /* between two requests that give back slots over the fair share */
#define SL_LEASE_BACKOFF_MIN_MS 100  /* after a failed request, doubling ... */
#define SL_LEASE_BACKOFF_MAX_MS 1000 /* ... up to this */

typedef enum {
	SL_CLUSTER_STARTING,    /* no answer from Redis yet: nothing admitted, requests queue */
	SL_CLUSTER_OK,          /* on a lease */
	SL_CLUSTER_REACQUIRING, /* the lease lapsed while Redis answers (we were paused): nothing admitted */
	SL_CLUSTER_DEGRADED,    /* Redis unreachable, fallback static: floor(N / replicas) */
	SL_CLUSTER_UNAVAILABLE, /* Redis unreachable, fallback closed: 503 cluster_unavailable */
} sl_cluster_state_t;

/* "starting", "ok", "reacquiring", "degraded", "unavailable". */
const char *sl_cluster_state_name(sl_cluster_state_t s);

/* What to ask Redis for. */
typedef struct sl_lease_request {
	uint32_t floor;  /* the least lease to record: our local limit until the answer */
	uint32_t demand; /* slots we could use: busy + queued at their recent peak, with headroom */
	bool on_static;  /* we admit on the static fallback now: slots Redis does not know of */
} sl_lease_request_t;

typedef struct sl_lease {
	/* settings */
	uint32_t limit;  /* N, for all replicas together */
	uint64_t ttl_ms; /* lease lifetime in Redis */
	bool closed;     /* fallback closed (else static) */
	/* the lease */
	uint32_t held;        /* slots Redis recorded for us at the last answer */
	uint64_t valid_until; /* local ms after which the lease is not trusted; 0: none yet */
	uint32_t fair;        /* our fair share at the last answer (N before any) */
	uint32_t replicas;    /* live replicas at the last answer, us included (0: none yet) */
	bool contended;       /* at the last answer, the replicas wanted more than N */
	/* requests */
	bool in_flight;    /* a request is out */
	bool unconfirmed;  /* a request's answer was lost: Redis may hold `cap` for us */
	uint32_t cap;      /* the floor of the last request not yet answered */
	uint64_t sent_at;  /* local ms the request in flight (or the last one) was sent */
	uint64_t next_try; /* after a failure: not before this */
	uint32_t backoff_ms;
	bool redis_down; /* the last request failed: fallbacks apply once the lease lapses */
	bool ever_answered;
	/* demand */
	uint32_t peak;        /* highest demand since the last request */
	uint64_t spare_since; /* local ms since the lease has exceeded demand (0: it has not) */
	uint32_t spare_peak;  /* highest demand since spare_since */
	uint64_t epoch;       /* Redis's epoch at the last answer (0: none): a new one means Redis lost the records */
	/* counters (for the metrics) */
	uint64_t changes; /* answers that changed the lease */
	uint64_t errors;  /* failed requests */
} sl_lease_t;

/* limit: N; ttl_ms: the lease TTL; closed: the closed fallback. */
void sl_lease_init(sl_lease_t *l, uint32_t limit, uint64_t ttl_ms, bool closed);

/* A new N (SIGHUP): used from the next request on. */
void sl_lease_set_limit(sl_lease_t *l, uint32_t limit);

/* Observes the replica at now (ms, monotonic): `active` slots in use and
 * `queued` requests waiting. Returns true, with *req filled in, when a
 * request should go to Redis now; the caller sends it and calls
 * sl_lease_sent(). */
bool sl_lease_tick(sl_lease_t *l, uint64_t now, uint32_t active, uint32_t queued, sl_lease_request_t *req);

/* The request went out at now. */
void sl_lease_sent(sl_lease_t *l, uint64_t now, const sl_lease_request_t *req);

/* Redis answered the request in flight: our lease is `lease`, our fair
 * share `fair`, `replicas` are live (us included), `contended` whether
 * they want more than N; the record lives ttl_ms from when Redis ran it. */
void sl_lease_granted(sl_lease_t *l, uint64_t now, uint32_t lease, uint32_t fair, uint32_t replicas, bool contended,
                      uint64_t ttl_ms);

/* The request in flight failed (an error, a timeout, a lost connection):
 * Redis may or may not have run it. */
void sl_lease_failed(sl_lease_t *l, uint64_t now);

/* The admission limit to apply locally at now. */
uint32_t sl_lease_local_limit(const sl_lease_t *l, uint64_t now);

/* The cluster state at now. */
sl_cluster_state_t sl_lease_state(const sl_lease_t *l, uint64_t now);

#endif
