/* deadline.h — the clock rule, and a connection's one timer, moved only
 * when it must be.
 *
 * The clock rule. Every time is milliseconds of the one monotonic clock: a
 * worker's loop time (uv_now(): libuv reads the clock once per loop
 * iteration, so it costs nothing), or sl_clock_ms() outside a loop. Times
 * read on different threads (the breaker is opened by one worker and
 * checked by all) differ by their readers' staleness, in either direction.
 * So every comparison of two times is a signed difference (sl_ms_between,
 * sl_ms_left), never an unsigned subtraction: that one wraps to 2^64 ms when
 * the later time happens to have been read first, and a breaker opened by
 * one worker looked long expired to another a few ms behind it.
 *
 * The timer. A connection re-arms its timeout at every phase change and most
 * moves push the deadline later. Restarting a libuv timer is a heap removal
 * and insertion each time, so a later deadline is only recorded: when the
 * timer fires early it re-arms itself for what is left (nginx does the
 * same). An earlier deadline, or a different callback, restarts the timer at
 * once. The callback therefore always runs at or after the deadline last set.
 */
#ifndef SL_DEADLINE_H
#define SL_DEADLINE_H

#include <stdint.h>
#include <uv.h>

/* The process-wide monotonic clock, in ms (any thread). */
static inline uint64_t sl_clock_ms(void)
{
	return uv_hrtime() / 1000000;
}

/* to - from in ms, negative when `to` is earlier. */
static inline int64_t sl_ms_between(uint64_t from, uint64_t to)
{
	return (int64_t)(to - from);
}

/* The ms left, as of now, until limit_ms after since: 0 once it passed. */
static inline uint64_t sl_ms_left(uint64_t now, uint64_t since, uint64_t limit_ms)
{
	int64_t left = (int64_t)limit_ms - sl_ms_between(since, now);
	return left > 0 ? (uint64_t)left : 0;
}

typedef struct sl_deadline {
	uv_timer_t timer; /* timer.data belongs to the owner */
	uint64_t due;     /* loop time the callback is wanted at */
	uint64_t armed;   /* loop time the timer will fire at */
	uv_timer_cb cb;
} sl_deadline_t;

static inline void sl_deadline__fire(uv_timer_t *t)
{
	sl_deadline_t *d = (sl_deadline_t *)t; /* timer is the first member */
	int64_t early = sl_ms_between(uv_now(t->loop), d->due);
	if (early > 0) {
		d->armed = d->due;
		uv_timer_start(t, sl_deadline__fire, (uint64_t)early, 0);
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
	if (!uv_is_active((uv_handle_t *)&d->timer) || d->cb != cb || sl_ms_between(d->armed, d->due) < 0) {
		d->cb = cb;
		d->armed = d->due;
		uv_timer_start(&d->timer, sl_deadline__fire, ms, 0);
	}
}

static inline void sl_deadline_stop(sl_deadline_t *d)
{
	uv_timer_stop(&d->timer);
}

/* Brings the deadline forward to ms from now if it is due later than that
 * (or not set); never pushes it back. */
static inline void sl_deadline_cap(sl_deadline_t *d, uint64_t ms, uv_timer_cb cb)
{
	uint64_t due = uv_now(d->timer.loop) + ms;
	if (!uv_is_active((uv_handle_t *)&d->timer) || d->cb != cb || sl_ms_between(due, d->due) > 0)
		sl_deadline_set(d, ms, cb);
}

/* The lazy-timeout step, for a timer callback: true when limit_ms has
 * passed since `since` (loop time); otherwise d is re-armed with cb for what
 * is left and false returned. */
static inline bool sl_deadline_passed(sl_deadline_t *d, uint64_t since, uint64_t limit_ms, uv_timer_cb cb)
{
	uint64_t left = sl_ms_left(uv_now(d->timer.loop), since, limit_ms);
	if (left == 0)
		return true;
	sl_deadline_set(d, left, cb);
	return false;
}

#endif
