/* admit.c — see admit.h.
 *
 * Invariants (under the lock):
 *   active  = slots held, including those handed to waiters whose worker has
 *             not run their callback yet;
 *   queued  = waiters in `queue`; queued <= max_queue;
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
	if (a->queued > a->peak_queued)
		a->peak_queued = a->queued;
}

/* Must be called with the lock held: moves the oldest waiter to its
 * worker's inbox with `result` and wakes that worker. */
static void do_hand_out(sl_admit_t *a, sl_admit_result_t result)
{
	sl_admit_waiter_t *w = sl_list_entry(a->queue.next, sl_admit_waiter_t, link);
	sl_list_remove(&w->link);
	a->queued--;
	w->result = result;
	w->where = IN_INBOX;
	sl_list_insert_tail(&w->inbox->ready, &w->link);
	uv_async_send(&w->inbox->async);
}

static uint32_t do_limit(const sl_admit_t *a)
{
	uint32_t limit = a->limit < a->cap ? a->limit : a->cap;
	return a->fence_ns && uv_hrtime() >= a->fence_ns ? 0 : limit;
}

void sl_admit_set_cap(sl_admit_t *a, uint32_t cap)
{
	pthread_mutex_lock(&a->lock);
	a->cap = cap;
	uint32_t eff = do_limit(a);
	while (a->active < eff && !sl_list_empty(&a->queue)) {
		a->active++;
		do_hand_out(a, SL_ADMIT_GRANTED);
	}
	do_note_peaks(a);
	pthread_mutex_unlock(&a->lock);
}

void sl_admit_set_fence(sl_admit_t *a, uint64_t fence_ns)
{
	pthread_mutex_lock(&a->lock);
	a->fence_ns = fence_ns;
	uint32_t limit = do_limit(a);
	while (a->active < limit && !sl_list_empty(&a->queue)) {
		a->active++;
		do_hand_out(a, SL_ADMIT_GRANTED);
	}
	do_note_peaks(a);
	pthread_mutex_unlock(&a->lock);
}

void sl_admit_init(sl_admit_t *a, uint32_t limit, uint32_t max_queue)
{
	memset(a, 0, sizeof *a);
	pthread_mutex_init(&a->lock, NULL);
	sl_list_init(&a->queue);
	a->limit = limit;
	a->max_queue = max_queue;
	a->cap = UINT32_MAX;
}

void sl_admit_dispose(sl_admit_t *a)
{
	pthread_mutex_destroy(&a->lock);
}

void sl_admit_set_limits(sl_admit_t *a, uint32_t limit, uint32_t max_queue)
{
	pthread_mutex_lock(&a->lock);
	a->limit = limit;
	a->max_queue = max_queue;
	uint32_t eff = do_limit(a);
	while (a->active < eff && !sl_list_empty(&a->queue)) {
		a->active++;
		do_hand_out(a, SL_ADMIT_GRANTED);
	}
	do_note_peaks(a);
	pthread_mutex_unlock(&a->lock);
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
		sl_admit_waiter_t *w = sl_list_entry(in->ready.next, sl_admit_waiter_t, link);
		sl_list_remove(&w->link);
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
	pthread_mutex_lock(&a->lock);
	if (sl_list_empty(&a->queue) && a->active < do_limit(a)) {
		a->active++;
		r = SL_ADMIT_GRANTED;
	} else if (a->queued >= a->max_queue) {
		r = SL_ADMIT_FULL;
	} else {
		w->inbox = in;
		w->cb = cb;
		w->queued_at = uv_hrtime();
		w->where = IN_QUEUE;
		sl_list_insert_tail(&a->queue, &w->link);
		a->queued++;
		r = SL_ADMIT_QUEUED;
	}
	do_note_peaks(a);
	pthread_mutex_unlock(&a->lock);
	return r;
}

void sl_admit_release(sl_admit_t *a)
{
	pthread_mutex_lock(&a->lock);
	if (a->active == 0) { /* a slot released twice: a bug, but never an underflow */
		pthread_mutex_unlock(&a->lock);
		sl_error("admission: a slot was released that nobody held");
		return;
	}
	if (!sl_list_empty(&a->queue) && a->active <= do_limit(a))
		do_hand_out(a, SL_ADMIT_GRANTED); /* the slot changes hands; active stays */
	else
		a->active--;
	pthread_mutex_unlock(&a->lock);
}

sl_admit_result_t sl_admit_cancel(sl_admit_t *a, sl_admit_waiter_t *w)
{
	sl_admit_result_t r;
	pthread_mutex_lock(&a->lock);
	switch (w->where) {
	case IN_QUEUE:
		sl_list_remove(&w->link);
		a->queued--;
		r = SL_ADMIT_QUEUED;
		break;
	case IN_INBOX:
		sl_list_remove(&w->link);
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
	pthread_mutex_lock(&a->lock);
	while (!sl_list_empty(&a->queue)) {
		sl_list_entry(a->queue.next, sl_admit_waiter_t, link)->reason = reason;
		do_hand_out(a, SL_ADMIT_REJECTED);
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
	out->queued = a->queued;
	out->peak_active = a->peak_active;
	out->peak_queued = a->peak_queued;
	pthread_mutex_unlock(&a->lock);
}
