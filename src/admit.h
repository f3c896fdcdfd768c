/* admit.h — admission control (SPEC §4): max_concurrent_requests slots for
 * the whole process, and a bounded FIFO queue of requests waiting for one.
 *
 * One mutex guards the slot count and the queue; it is held for a few
 * pointer moves, never across I/O. The model is HAProxy's queue.c:
 *   - a slot is taken directly only when nobody is queued, so a newcomer
 *     never overtakes a waiter, whichever worker either arrived on;
 *   - a released slot is *handed* to the oldest waiter (the slot count does
 *     not drop and rise again), so the limit is exact at every instant: a
 *     granted waiter already counts as active before its worker wakes.
 * A grant (or a rejection of queued requests, when the breaker opens) is put
 * on the waiter's worker's inbox and that worker's loop is woken with
 * uv_async_send; the worker then calls back each waiter on its own thread.
 *
 * Who waits and who is served next is queue.c's policy (issue 15): FIFO by
 * default, round robin across fair-queueing keys, and under the adaptive
 * policy a wait predicted from the measured hold time (a hopeless newcomer
 * is refused at once) and drops under a standing queue. admit.c gives it
 * the clock (uv_hrtime) and the hold samples (sl_admit_release_held).
 */
#ifndef SL_ADMIT_H
#define SL_ADMIT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "list.h"
#include "queue.h"

typedef enum {
	SL_ADMIT_GRANTED,  /* the caller holds a slot: release it when done */
	SL_ADMIT_QUEUED,   /* waiting: the waiter's callback will say what happened */
	SL_ADMIT_FULL,     /* the queue is full: answer 503 queue_full */
	SL_ADMIT_REJECTED, /* (callback only) flushed from the queue: w->reason says why */
	SL_ADMIT_HOPELESS, /* (acquire only) adaptive: the predicted wait, w->e.predicted_ns, exceeds
	                      w->e.budget_ns: answer 503 queue_timeout at once */
	SL_ADMIT_EXPIRED,  /* (callback only) adaptive: dropped when its turn came under a standing
	                      queue, having waited past the target: answer 503 queue_timeout */
	SL_ADMIT_DISPLACED /* (callback only) the queue was full and a lighter key's newcomer took its
	                      place: answer 503 queue_full */
} sl_admit_result_t;

typedef struct sl_admit_inbox sl_admit_inbox_t;
typedef struct sl_admit_waiter sl_admit_waiter_t;
typedef void (*sl_admit_cb)(sl_admit_waiter_t *w, sl_admit_result_t result);

struct sl_admit_waiter {
	sl_queue_entry_t e; /* e.link: in the queue, then in the inbox; guarded by the mutex. The caller
	                       sets e.key and e.budget_ns before each acquire; e.queued_at is uv_hrtime()
	                       when queued */
	sl_admit_inbox_t *inbox;
	sl_admit_cb cb;
	sl_admit_result_t result;
	int reason; /* with SL_ADMIT_REJECTED: the caller's code given to sl_admit_reject_all */
	int where;  /* internal: nowhere / queued / in the inbox */
};

/* A worker's end of the hand-off. */
struct sl_admit_inbox {
	uv_async_t async;
	sl_list_t ready; /* granted or rejected waiters; guarded by the mutex */
	struct sl_admit *admit;
};

typedef struct sl_admit_stats {
	uint32_t limit, max_queue;
	uint32_t cap; /* the adaptive limit (UINT32_MAX: none); slots in use stay under min(limit, cap) */
	uint32_t active, queued;
	uint32_t peak_active, peak_queued;
	sl_queue_stats_t q; /* the queue policy's counters (queue.h) */
} sl_admit_stats_t;

typedef struct sl_admit {
	pthread_mutex_t lock;
	sl_queue_t queue; /* the waiters (queue.h) */
	uint32_t limit, max_queue;
	uint32_t active; /* under the lock, like every field here (sl_admit_get_stats copies them) */
	uint32_t peak_active, peak_queued;
	sl_queue_policy_t policy;
	uint32_t max_per_key;
	uint64_t fence_ns; /* 0: none; from this uv_hrtime() on, nothing is admitted (a lease's trust ends) */
	uint32_t cap;      /* the adaptive limit (adaptive.h), UINT32_MAX when off: admits under min(limit, cap) */
} sl_admit_t;

void sl_admit_init(sl_admit_t *a, uint32_t limit, uint32_t max_queue);
void sl_admit_dispose(sl_admit_t *a);

/* New limits (SIGHUP). A raised limit grants queued waiters at once; a
 * lowered one takes effect as slots are released. */
void sl_admit_set_limits(sl_admit_t *a, uint32_t limit, uint32_t max_queue);

/* The queue's policy (--queue-policy) and the share of one fair-queueing
 * key (--max-queue-per-key, 0: the whole queue); at start and on SIGHUP.
 * Until called: FIFO, no share. */
void sl_admit_set_queue_policy(sl_admit_t *a, sl_queue_policy_t policy, uint32_t max_per_key);

/* The fair-queueing key of a value (an address, a header's value), for
 * w->e.key; any thread. */
uint64_t sl_admit_key(const sl_admit_t *a, const void *data, size_t len);

/* From fence_ns (uv_hrtime) on, the limit is 0 until a new fence or limit
 * is set (0: no fence): the cluster lease's self-fencing, applied on the
 * admission path itself so that no thread admits on a lapsed lease. */
void sl_admit_set_fence(sl_admit_t *a, uint64_t fence_ns);

/* The adaptive limit (--adaptive-limit, adaptive.h) under `limit`, which
 * stays the operator's ceiling or the cluster lease: admission keeps slots
 * in use under min(limit, cap). UINT32_MAX: no cap. A raised cap grants
 * queued waiters at once; a lowered one cuts nothing in flight, it admits
 * fewer until below. */
void sl_admit_set_cap(sl_admit_t *a, uint32_t cap);

/* A worker's inbox, on its loop (before the loop runs). */
int sl_admit_inbox_init(sl_admit_inbox_t *in, sl_admit_t *a, uv_loop_t *loop);
void sl_admit_inbox_close(sl_admit_inbox_t *in);

/* Asks for a slot. GRANTED, FULL and HOPELESS are answered at once; QUEUED
 * means w->cb runs later on the inbox's loop with GRANTED, REJECTED,
 * EXPIRED or DISPLACED (never from inside this call). w->e.key and
 * w->e.budget_ns must be set (0 and 0: the one key, no prediction). */
sl_admit_result_t sl_admit_acquire(sl_admit_t *a, sl_admit_waiter_t *w, sl_admit_inbox_t *in, sl_admit_cb cb);

/* Gives a slot back; it goes to the next waiter if there is one. */
void sl_admit_release(sl_admit_t *a);

/* The same, for a slot held held_ns (> 0): a sample of the hold time that
 * the adaptive queue predicts waits from. One lock for both. */
void sl_admit_release_held(sl_admit_t *a, uint64_t held_ns);

/* A hold-time sample alone, for a slot given back later (its answer is
 * still being written to a slow client). */
void sl_admit_note_hold(sl_admit_t *a, uint64_t held_ns);

/* Withdraws a waiter (its client left, or it waited too long); no callback
 * will come. Returns SL_ADMIT_GRANTED when a slot had been handed to it and
 * not yet delivered (the caller now holds that slot), the result of a
 * rejection that was on its way (REJECTED, EXPIRED, DISPLACED), and
 * SL_ADMIT_QUEUED otherwise (it was still
 * waiting, or not waiting at all: a second cancel, or one after the
 * callback ran, hands nothing over again). */
sl_admit_result_t sl_admit_cancel(sl_admit_t *a, sl_admit_waiter_t *w);

/* Rejects every queued waiter (the breaker opened, the cluster became
 * unavailable); each gets `reason` in w->reason. Returns how many. */
uint32_t sl_admit_reject_all(sl_admit_t *a, int reason);

/* A consistent copy of the counters. */
void sl_admit_get_stats(sl_admit_t *a, sl_admit_stats_t *out);

#endif
