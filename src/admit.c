/* admit.c — see admit.h.
 *
 * Invariants (under the lock):
 *   active  = slots held, including those handed to waiters whose worker has
 *             not run their callback yet;
 *   queue.queued = waiters in `queue`; at most max_queue of them are let in;
 *   a waiter is in exactly one place: nowhere, the queue, or one inbox.
 */
#include "admit.h"

#include <string.h>

#include "log.h"

enum { IN_NOTHING, IN_QUEUE, IN_INBOX };

static void do_note_peaks(sl_admit_t *a)
{
	if (a->active > a->peak_active)
		a->peak_active = a->active;
	if (a->queue.queued > a->peak_queued)
		a->peak_queued = a->queue.queued;
}

/* Must be called with the lock held: puts w (out of the queue already) on
 * its worker's inbox with `result` and wakes that worker. */
static void do_hand_out(sl_admit_waiter_t *w, sl_admit_result_t result)
{
	w->result = result;
	w->where = IN_INBOX;
	sl_list_insert_tail(&w->inbox->ready, &w->e.link);
	uv_async_send(&w->inbox->async);
}

static uint32_t do_limit(const sl_admit_t *a, uint64_t now)
{
	uint32_t limit = a->limit < a->cap ? a->limit : a->cap; /* the adaptive limit under the ceiling */
	return a->fence_ns && now >= a->fence_ns ? 0 : limit;
}

/* Must be called with the lock held and a slot to give (counted in
 * active): hands it to the next waiter, after answering those the queue
 * policy drops instead (a standing queue). Returns false when nobody was
 * left to take it: the caller still has the slot. */
static bool do_grant_next(sl_admit_t *a, uint64_t now)
{
	bool expired;
	sl_queue_entry_t *e;
	while ((e = sl_queue_pop(&a->queue, now, do_limit(a, now), &expired)) != NULL) {
		sl_admit_waiter_t *w = sl_list_entry(e, sl_admit_waiter_t, e);
		if (!expired) {
			do_hand_out(w, SL_ADMIT_GRANTED);
			return true;
		}
		do_hand_out(w, SL_ADMIT_EXPIRED);
	}
	return false;
}

/* Must be called with the lock held: fills free slots from the queue. */
static void do_fill(sl_admit_t *a, uint64_t now)
{
	uint32_t limit = do_limit(a, now);
	while (a->active < limit && a->queue.queued > 0) {
		a->active++;
		if (!do_grant_next(a, now))
			a->active--;
	}
	do_note_peaks(a);
}

void sl_admit_set_cap(sl_admit_t *a, uint32_t cap)
{
	pthread_mutex_lock(&a->lock);
	a->cap = cap;
	do_fill(a, uv_hrtime());
	pthread_mutex_unlock(&a->lock);
}

void sl_admit_set_fence(sl_admit_t *a, uint64_t fence_ns)
{
	pthread_mutex_lock(&a->lock);
	a->fence_ns = fence_ns;
	do_fill(a, uv_hrtime());
	pthread_mutex_unlock(&a->lock);
}

static void do_queue_params(sl_admit_t *a, sl_queue_params_t *p)
{
	p->policy = a->policy;
	p->max_queue = a->max_queue;
	p->max_per_key = a->max_per_key;
}

void sl_admit_init(sl_admit_t *a, uint32_t limit, uint32_t max_queue)
{
	memset(a, 0, sizeof *a);
	pthread_mutex_init(&a->lock, NULL);
	a->limit = limit;
	a->max_queue = max_queue;
	a->cap = UINT32_MAX;
	a->policy = SL_QUEUE_FIFO;
	sl_queue_params_t p;
	do_queue_params(a, &p);
	uint64_t seed = 0;
	if (uv_random(NULL, NULL, &seed, sizeof seed, 0, NULL) != 0)
		seed = uv_hrtime() * 0x9e3779b97f4a7c15ULL; /* no entropy source: still varies per run */
	sl_queue_init(&a->queue, &p, seed);
}

void sl_admit_dispose(sl_admit_t *a)
{
	sl_queue_dispose(&a->queue);
	pthread_mutex_destroy(&a->lock);
}

void sl_admit_set_limits(sl_admit_t *a, uint32_t limit, uint32_t max_queue)
{
	pthread_mutex_lock(&a->lock);
	a->limit = limit;
	a->max_queue = max_queue;
	sl_queue_params_t p;
	do_queue_params(a, &p);
	sl_queue_set_params(&a->queue, &p);
	do_fill(a, uv_hrtime());
	pthread_mutex_unlock(&a->lock);
}

void sl_admit_set_queue_policy(sl_admit_t *a, sl_queue_policy_t policy, uint32_t max_per_key)
{
	pthread_mutex_lock(&a->lock);
	a->policy = policy;
	a->max_per_key = max_per_key;
	sl_queue_params_t p;
	do_queue_params(a, &p);
	sl_queue_set_params(&a->queue, &p);
	pthread_mutex_unlock(&a->lock);
}

uint64_t sl_admit_key(const sl_admit_t *a, const void *data, size_t len)
{
	return sl_queue_key(&a->queue, data, len); /* the seed is set once, before any thread runs */
}

static void on_inbox(uv_async_t *async)
{
	sl_admit_inbox_t *in = async->data;
	sl_admit_t *a = in->admit;
	/* One at a time: a callback may cancel or queue other waiters. */
	for (;;) {
		pthread_mutex_lock(&a->lock);
		if (sl_list_empty(&in->ready)) {
			pthread_mutex_unlock(&a->lock);
			return;
		}
		sl_admit_waiter_t *w = sl_list_entry(in->ready.next, sl_admit_waiter_t, e.link);
		sl_list_remove(&w->e.link);
		w->where = IN_NOTHING;
		pthread_mutex_unlock(&a->lock);
		w->cb(w, w->result);
	}
}

int sl_admit_inbox_init(sl_admit_inbox_t *in, sl_admit_t *a, uv_loop_t *loop)
{
	sl_list_init(&in->ready);
	in->admit = a;
	in->async.data = in;
	return uv_async_init(loop, &in->async, on_inbox);
}

void sl_admit_inbox_close(sl_admit_inbox_t *in)
{
	uv_close((uv_handle_t *)&in->async, NULL);
}

sl_admit_result_t sl_admit_acquire(sl_admit_t *a, sl_admit_waiter_t *w, sl_admit_inbox_t *in, sl_admit_cb cb)
{
	sl_admit_result_t r;
	uint64_t now = uv_hrtime();
	pthread_mutex_lock(&a->lock);
	uint32_t limit = do_limit(a, now);
	if (a->queue.queued == 0 && a->active < limit) {
		a->active++;
		sl_queue_note_slot(&a->queue, now);
		r = SL_ADMIT_GRANTED;
	} else {
		w->inbox = in;
		w->cb = cb;
		sl_queue_entry_t *displaced;
		switch (sl_queue_push(&a->queue, &w->e, now, limit, &displaced)) {
		case SL_QUEUE_ADDED:
			w->where = IN_QUEUE;
			r = SL_ADMIT_QUEUED;
			if (displaced)
				do_hand_out(sl_list_entry(displaced, sl_admit_waiter_t, e), SL_ADMIT_DISPLACED);
			break;
		case SL_QUEUE_HOPELESS: r = SL_ADMIT_HOPELESS; break;
		default: r = SL_ADMIT_FULL; break;
		}
	}
	do_note_peaks(a);
	pthread_mutex_unlock(&a->lock);
	return r;
}

static void do_release(sl_admit_t *a, uint64_t held_ns)
{
	uint64_t now = uv_hrtime();
	pthread_mutex_lock(&a->lock);
	if (a->active == 0) { /* a slot released twice: a bug, but never an underflow */
		pthread_mutex_unlock(&a->lock);
		sl_error("admission: a slot was released that nobody held");
		return;
	}
	sl_queue_note_slot(&a->queue, now);
	sl_queue_note_hold(&a->queue, held_ns);
	/* the slot changes hands (active stays), unless the limit was lowered */
	if (!(a->queue.queued > 0 && a->active <= do_limit(a, now) && do_grant_next(a, now)))
		a->active--;
	pthread_mutex_unlock(&a->lock);
}

void sl_admit_release(sl_admit_t *a)
{
	do_release(a, 0);
}

void sl_admit_release_held(sl_admit_t *a, uint64_t held_ns)
{
	do_release(a, held_ns);
}

void sl_admit_note_hold(sl_admit_t *a, uint64_t held_ns)
{
	pthread_mutex_lock(&a->lock);
	sl_queue_note_hold(&a->queue, held_ns);
	pthread_mutex_unlock(&a->lock);
}

sl_admit_result_t sl_admit_cancel(sl_admit_t *a, sl_admit_waiter_t *w)
{
	sl_admit_result_t r;
	pthread_mutex_lock(&a->lock);
	switch (w->where) {
	case IN_QUEUE:
		sl_queue_remove(&a->queue, &w->e, uv_hrtime());
		r = SL_ADMIT_QUEUED;
		break;
	case IN_INBOX:
		sl_list_remove(&w->e.link);
		r = w->result;
		break;
	default: r = SL_ADMIT_QUEUED; break; /* not waiting: nothing to hand back */
	}
	w->where = IN_NOTHING;
	pthread_mutex_unlock(&a->lock);
	return r;
}

uint32_t sl_admit_reject_all(sl_admit_t *a, int reason)
{
	uint32_t n = 0;
	uint64_t now = uv_hrtime();
	pthread_mutex_lock(&a->lock);
	sl_queue_entry_t *e;
	while ((e = sl_queue_pop(&a->queue, now, 0, NULL)) != NULL) {
		sl_admit_waiter_t *w = sl_list_entry(e, sl_admit_waiter_t, e);
		w->reason = reason;
		do_hand_out(w, SL_ADMIT_REJECTED);
		n++;
	}
	pthread_mutex_unlock(&a->lock);
	return n;
}

void sl_admit_get_stats(sl_admit_t *a, sl_admit_stats_t *out)
{
	pthread_mutex_lock(&a->lock);
	out->limit = a->limit;
	out->cap = a->cap;
	out->max_queue = a->max_queue;
	out->active = a->active;
	out->queued = a->queue.queued;
	out->peak_active = a->peak_active;
	out->peak_queued = a->peak_queued;
	sl_queue_get_stats(&a->queue, &out->q);
	pthread_mutex_unlock(&a->lock);
}
