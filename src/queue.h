/* queue.h — the admission queue's policy (SPEC §4, §11; issue 15): who
 * waits, in what order, and who is turned away, as a pure function of the
 * events it is told about and the time it is given. No lock, no clock, no
 * libuv: admit.c owns the slots and the lock and calls this with
 * uv_hrtime(); the unit tests call it with a virtual clock.
 *
 * What it decides:
 *   - Fair queueing (fq_codel's idea, requests instead of packets): each
 *     entry has a key (the client's address, a header's value, or the one
 *     key of an unfair queue); the keys with queued entries are served
 *     round-robin, oldest first within a key. Each request costs one slot,
 *     so deficit round robin with a quantum of one is plain round robin.
 *     With one key this is exactly the FIFO queue of HAProxy's queue.c.
 *   - Room: at most max_queue entries, at most max_per_key of one key.
 *     When the queue is full, a newcomer whose key, once joined, would
 *     still have fewer entries than the fattest key takes the place of that
 *     key's newest entry (fq_codel drops from the fattest flow), so a flood
 *     cannot push the others out; at a tie the newcomer is refused, so
 *     keys invented per request cannot make the queue churn.
 *   - The adaptive policy (SL_QUEUE_ADAPTIVE), two rules on the measured
 *     slot hold time H, an EWMA of the holds the owner reports:
 *       prediction: a newcomer whose predicted wait, its position times
 *         H / limit, exceeds its budget (queue_timeout, or what is left of
 *         its request_timeout) is refused at once (SL_QUEUE_HOPELESS)
 *         rather than after the wait. The position is its place in line,
 *         or less under round robin: (its key's entries + 1) x keys;
 *       standing queue (the CoDel rule of Facebook's "Fail at Scale",
 *         ACM Queue, 2015): once the queue has not
 *         been empty for an interval, an entry that has waited longer
 *         than a short target is dropped when its turn comes instead of
 *         served. Target and interval are in units of the hold time, not
 *         5 ms and 100 ms: target = max(H, 4 H / limit) (a served request
 *         waits about one service time more at most), interval = 4 x
 *         target; here H is also at least the time since a slot last
 *         changed hands (stalled departures show before any hold ends,
 *         and a larger H drops less). An entry is dropped only when the
 *         queue is losing requests anyway, and only to make way for
 *         fresher work that keeps the slots busy: the queue lost one (a
 *         newcomer refused or displaced, a waiter whose client left or
 *         whose queue_timeout passed) within the interval, something was
 *         queued within the target, and more than max(2 x limit, 16)
 *         entries wait behind it. A queue that stands but loses nobody
 *         (clients in a closed loop, patient enough for the wait) is left
 *         alone: dropping there would only turn waits the clients accept
 *         into 503s, at no gain in goodput. Without that rule a burst that drained
 *         slowly would be dropped and the slots left idle (the simulator
 *         in tests/unit/test_queue.c measured it: with one slot and bursty
 *         arrivals the goodput fell below FIFO's).
 *     Both stay silent until SL_QUEUE_MIN_SAMPLES holds have been seen
 *     (cold start): with no estimate nothing is predicted or dropped.
 *
 * Cost: push, pop and remove are O(1) but for the fattest-key heap,
 * O(log keys); a key exists only while it has entries, so keys <= entries
 * <= max_queue (memory is bounded by the queue). Keys are compared by a
 * 64-bit keyed hash (random key per process): two keys whose hashes collide
 * share a place in the rotation, which nobody can aim at without the key.
 *
 * Times are ns of one monotonic clock (uv_hrtime() in sluice), compared by
 * signed differences (deadline.h's rule).
 */
#ifndef SL_QUEUE_H
#define SL_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "list.h"

/* Holds seen before the hold time is trusted (cold start). */
#define SL_QUEUE_MIN_SAMPLES 8

typedef enum {
	SL_QUEUE_FIFO,    /* no prediction, no standing-queue drops: issue 3's queue */
	SL_QUEUE_ADAPTIVE /* both (above) */
} sl_queue_policy_t;

typedef struct sl_queue_flow sl_queue_flow_t;

/* One waiting request, embedded in the owner's waiter. */
typedef struct sl_queue_entry {
	sl_list_t link;        /* in its key's FIFO while queued; the owner's to use otherwise */
	sl_queue_flow_t *flow; /* NULL when not queued */
	uint64_t key;          /* set by the owner before push: sl_queue_key(), or 0 (the one key) */
	uint64_t budget_ns;    /* set by the owner before push: the longest wait worth having; 0: no limit */
	uint64_t queued_at;    /* set by push: now */
	uint64_t predicted_ns; /* set by push when it answers SL_QUEUE_HOPELESS: the predicted wait */
} sl_queue_entry_t;

typedef struct sl_queue_params {
	sl_queue_policy_t policy;
	uint32_t max_queue;   /* entries in all */
	uint32_t max_per_key; /* entries of one key; 0: max_queue */
} sl_queue_params_t;

typedef struct sl_queue_stats {
	uint32_t queued, keys;
	uint64_t predicted;      /* refused at push: SL_QUEUE_HOPELESS */
	uint64_t standing_drops; /* dropped at pop under a standing queue */
	uint64_t displaced;      /* gave their place to a lighter key's newcomer */
	uint64_t samples;        /* holds reported */
	uint64_t hold_ns;        /* the hold-time estimate (EWMA), 0 before any sample */
} sl_queue_stats_t;

typedef struct sl_queue {
	sl_queue_params_t p;
	uint32_t queued;
	uint32_t nflows;
	sl_list_t ring; /* keys with entries, in serving order */
	/* keys by hash: chained buckets, a power of two, grown (never shrunk) */
	sl_queue_flow_t **buckets;
	uint32_t nbuckets;
	/* keys by entries: a max-heap, for the fattest */
	sl_queue_flow_t **heap;
	uint32_t heap_cap;
	sl_queue_flow_t *spare; /* emptied keys kept for reuse (a few) */
	uint32_t nspare;
	uint64_t seed;
	/* the hold time */
	double hold_ns; /* EWMA */
	uint64_t samples;
	uint64_t last_change;    /* a slot was last taken or given back (sl_queue_note_slot, pop) */
	uint64_t nonempty_since; /* when the queue last went from empty to not */
	uint64_t last_push;      /* when an entry was last queued */
	uint64_t last_loss;      /* when the queue last lost one: refused, displaced, withdrawn */
	bool lost;               /* ... ever */
	uint64_t predicted, standing_drops, displaced;
} sl_queue_t;

/* seed: the hash key for sl_queue_key (any value; random in sluice). */
void sl_queue_init(sl_queue_t *q, const sl_queue_params_t *p, uint64_t seed);
void sl_queue_dispose(sl_queue_t *q);

/* New parameters (SIGHUP). Entries beyond a lowered bound stay queued. */
void sl_queue_set_params(sl_queue_t *q, const sl_queue_params_t *p);

/* The key of a fair-queueing value (an address, a header's value). */
uint64_t sl_queue_key(const sl_queue_t *q, const void *data, size_t len);

typedef enum {
	SL_QUEUE_ADDED,   /* queued; *displaced may name an entry pushed out for it */
	SL_QUEUE_FULL,    /* no room (the queue, or its key's share): not queued */
	SL_QUEUE_HOPELESS /* not queued: e->predicted_ns exceeds e->budget_ns */
} sl_queue_verdict_t;

/* Queues e (e->key and e->budget_ns set) at now; `limit` is the slots in
 * force (0: fenced, no prediction). *displaced is set to NULL, or to the
 * entry removed to make room: its owner answers it 503 queue_full. */
sl_queue_verdict_t sl_queue_push(sl_queue_t *q, sl_queue_entry_t *e, uint64_t now, uint32_t limit,
                                 sl_queue_entry_t **displaced);

/* Removes and returns the next entry to give a slot to (NULL: none). With
 * `expired` non-NULL the standing-queue rule applies: *expired true means
 * the entry waited past the target and is to be answered 503 queue_timeout,
 * not served; call again for the next. NULL expired: the next, whatever
 * its wait (the breaker flushing the queue). Counts as a slot change. */
sl_queue_entry_t *sl_queue_pop(sl_queue_t *q, uint64_t now, uint32_t limit, bool *expired);

/* Removes a queued entry at now (its client left, its timer fired: a
 * loss, see above). Harmless on an entry not queued. */
void sl_queue_remove(sl_queue_t *q, sl_queue_entry_t *e, uint64_t now);

/* A slot was taken or given back at now (pop counts its own). */
void sl_queue_note_slot(sl_queue_t *q, uint64_t now);

/* A slot was held held_ns (> 0): a sample of the hold time. */
void sl_queue_note_hold(sl_queue_t *q, uint64_t held_ns);

/* The hold-time estimate at now (ns; 0 while unknown: too few samples). */
uint64_t sl_queue_hold_estimate(const sl_queue_t *q, uint64_t now);

void sl_queue_get_stats(const sl_queue_t *q, sl_queue_stats_t *out);

#endif
