/* deadline.h — a connection's one timer, moved only when it must be.
 *
 * A connection re-arms its timeout at every phase change and most moves
 * push the deadline later. Restarting a libuv timer is a heap removal and
 * insertion each time, so a later deadline is only recorded: when the timer
 * fires early it re-arms itself for what is left (nginx does the same). An
 * earlier deadline, or a different callback, restarts the timer at once.
 * The callback therefore always runs at or after the deadline last set.
 */
#ifndef SL_DEADLINE_H
#define SL_DEADLINE_H

#include <stdint.h>
#include <uv.h>

typedef struct sl_deadline {
	uv_timer_t timer; /* timer.data belongs to the owner */
	uint64_t due;     /* loop time the callback is wanted at */
	uint64_t armed;   /* loop time the timer will fire at */
	uv_timer_cb cb;
} sl_deadline_t;

static inline void sl_deadline__fire(uv_timer_t *t)
{
	sl_deadline_t *d = (sl_deadline_t *)t; /* timer is the first member */
	uint64_t now = uv_now(t->loop);
	if (now < d->due) {
		d->armed = d->due;
		uv_timer_start(t, sl_deadline__fire, d->due - now, 0);
		return;
	}
	d->cb(t);
}

static inline void sl_deadline_init(sl_deadline_t *d, uv_loop_t *loop, void *owner)
{
	uv_timer_init(loop, &d->timer);
	d->timer.data = owner;
	d->due = d->armed = 0;
	d->cb = NULL;
}

/* Calls cb(&d->timer) ms from now (loop time). */
static inline void sl_deadline_set(sl_deadline_t *d, uint64_t ms, uv_timer_cb cb)
{
	uint64_t now = uv_now(d->timer.loop);
	d->due = now + ms;
	if (!uv_is_active((uv_handle_t *)&d->timer) || d->cb != cb || d->due < d->armed) {
		d->cb = cb;
		d->armed = d->due;
		uv_timer_start(&d->timer, sl_deadline__fire, ms, 0);
	}
}

static inline void sl_deadline_stop(sl_deadline_t *d)
{
	uv_timer_stop(&d->timer);
}

#endif
