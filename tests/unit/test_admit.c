/* Unit tests for admit.c: slots, the FIFO queue, hand-off across loops, and
 * the races between a hand-off and a waiter leaving. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "admit.h"

typedef struct {
	sl_admit_waiter_t w;
	int id;
	int calls;
	sl_admit_result_t result;
} waiter_t;

static int order[64];
static int norder;

static void on_result(sl_admit_waiter_t *aw, sl_admit_result_t result)
{
	waiter_t *w = (waiter_t *)aw;
	w->calls++;
	w->result = result;
	order[norder++] = w->id;
}

typedef struct {
	uv_loop_t loop;
	sl_admit_t admit;
	sl_admit_inbox_t inbox;
} fixture_t;

static int setup(void **state)
{
	fixture_t *f = calloc(1, sizeof *f);
	uv_loop_init(&f->loop);
	sl_admit_init(&f->admit, 2, 3);
	sl_admit_inbox_init(&f->inbox, &f->admit, &f->loop);
	norder = 0;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture_t *f = *state;
	sl_admit_inbox_close(&f->inbox);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	uv_loop_close(&f->loop);
	sl_admit_dispose(&f->admit);
	free(f);
	return 0;
}

static sl_admit_result_t acquire(fixture_t *f, waiter_t *w, int id)
{
	memset(w, 0, sizeof *w);
	w->id = id;
	return sl_admit_acquire(&f->admit, &w->w, &f->inbox, on_result);
}

static sl_admit_stats_t stats(fixture_t *f)
{
	sl_admit_stats_t s;
	sl_admit_get_stats(&f->admit, &s);
	return s;
}

static void test_grant_queue_full(void **state)
{
	fixture_t *f = *state;
	waiter_t w[6];
	assert_int_equal(acquire(f, &w[0], 0), SL_ADMIT_GRANTED);
	assert_int_equal(acquire(f, &w[1], 1), SL_ADMIT_GRANTED);
	assert_int_equal(acquire(f, &w[2], 2), SL_ADMIT_QUEUED);
	assert_int_equal(acquire(f, &w[3], 3), SL_ADMIT_QUEUED);
	assert_int_equal(acquire(f, &w[4], 4), SL_ADMIT_QUEUED);
	assert_int_equal(acquire(f, &w[5], 5), SL_ADMIT_FULL);
	sl_admit_stats_t s = stats(f);
	assert_int_equal(s.active, 2);
	assert_int_equal(s.queued, 3);
	assert_int_equal(s.peak_queued, 3);
	/* nothing is called back from inside acquire */
	assert_int_equal(norder, 0);
	/* drain: release all, in order */
	for (int i = 0; i < 5; i++) {
		sl_admit_release(&f->admit);
		uv_run(&f->loop, UV_RUN_NOWAIT);
	}
	assert_int_equal(norder, 3);
	assert_int_equal(order[0], 2);
	assert_int_equal(order[1], 3);
	assert_int_equal(order[2], 4);
	s = stats(f);
	assert_int_equal(s.active, 0);
	assert_int_equal(s.queued, 0);
	assert_int_equal(s.peak_active, 2);
}

static void test_handoff_keeps_slot_counted(void **state)
{
	fixture_t *f = *state;
	waiter_t a, b, c;
	acquire(f, &a, 0);
	acquire(f, &b, 1);
	assert_int_equal(acquire(f, &c, 2), SL_ADMIT_QUEUED);
	sl_admit_release(&f->admit);
	/* handed to c before c's loop ran: still 2 active, nobody queued */
	sl_admit_stats_t s = stats(f);
	assert_int_equal(s.active, 2);
	assert_int_equal(s.queued, 0);
	/* a newcomer cannot take a slot meanwhile */
	waiter_t d;
	assert_int_equal(acquire(f, &d, 3), SL_ADMIT_QUEUED);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(c.calls, 1);
	assert_int_equal(c.result, SL_ADMIT_GRANTED);
	assert_int_equal(d.calls, 0);
}

static void test_cancel_waiting(void **state)
{
	fixture_t *f = *state;
	waiter_t a, b, c, d;
	acquire(f, &a, 0);
	acquire(f, &b, 1);
	acquire(f, &c, 2);
	acquire(f, &d, 3);
	assert_int_equal(sl_admit_cancel(&f->admit, &c.w), SL_ADMIT_QUEUED);
	assert_int_equal(stats(f).queued, 1);
	sl_admit_release(&f->admit);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	/* c left: the slot went to d, c is never called */
	assert_int_equal(c.calls, 0);
	assert_int_equal(d.calls, 1);
	assert_int_equal(d.result, SL_ADMIT_GRANTED);
}

/* The race of issue 3: a slot is handed to the head of the queue while it
 * times out or its client leaves, before its loop delivered the grant. */
static void test_cancel_after_handoff_returns_the_slot(void **state)
{
	fixture_t *f = *state;
	waiter_t a, b, c, d;
	acquire(f, &a, 0);
	acquire(f, &b, 1);
	acquire(f, &c, 2);
	acquire(f, &d, 3);
	sl_admit_release(&f->admit); /* handed to c, not yet delivered */
	assert_int_equal(sl_admit_cancel(&f->admit, &c.w), SL_ADMIT_GRANTED);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(c.calls, 0); /* withdrawn from the inbox: no callback */
	/* c owns the slot now; giving it back hands it on to d */
	sl_admit_release(&f->admit);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(d.calls, 1);
	assert_int_equal(d.result, SL_ADMIT_GRANTED);
	assert_int_equal(stats(f).active, 2);
}

/* A second cancel, or one after the callback ran, hands nothing over again:
 * a request that ends twice (the queue timer, then its end) must not get a
 * second slot to give back (issue 11). A release nobody holds is refused. */
static void test_cancel_twice_hands_nothing_twice(void **state)
{
	fixture_t *f = *state;
	waiter_t a, b, c;
	acquire(f, &a, 0);
	acquire(f, &b, 1);
	acquire(f, &c, 2);
	sl_admit_release(&f->admit); /* handed to c */
	assert_int_equal(sl_admit_cancel(&f->admit, &c.w), SL_ADMIT_GRANTED);
	assert_int_equal(sl_admit_cancel(&f->admit, &c.w), SL_ADMIT_QUEUED);
	sl_admit_release(&f->admit); /* c's slot */
	assert_int_equal(stats(f).active, 1);
	assert_int_equal(acquire(f, &c, 3), SL_ADMIT_GRANTED);
	sl_admit_release(&f->admit);
	sl_admit_release(&f->admit);
	sl_admit_release(&f->admit); /* one too many: refused, no underflow */
	assert_int_equal(stats(f).active, 0);
	uv_run(&f->loop, UV_RUN_NOWAIT);
}

static void test_reject_all(void **state)
{
	fixture_t *f = *state;
	waiter_t a, b, c, d;
	acquire(f, &a, 0);
	acquire(f, &b, 1);
	acquire(f, &c, 2);
	acquire(f, &d, 3);
	assert_int_equal(sl_admit_reject_all(&f->admit, 7), 2);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(c.result, SL_ADMIT_REJECTED);
	assert_int_equal(d.result, SL_ADMIT_REJECTED);
	assert_int_equal(c.w.reason, 7); /* the caller's reason reaches every waiter */
	assert_int_equal(d.w.reason, 7);
	sl_admit_stats_t s = stats(f);
	assert_int_equal(s.queued, 0);
	assert_int_equal(s.active, 2);
}

static void test_raising_limit_admits_queued_at_once(void **state)
{
	fixture_t *f = *state;
	waiter_t w[5];
	for (int i = 0; i < 5; i++)
		acquire(f, &w[i], i);
	sl_admit_set_limits(&f->admit, 4, 3);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(w[2].result, SL_ADMIT_GRANTED);
	assert_int_equal(w[3].result, SL_ADMIT_GRANTED);
	assert_int_equal(w[4].calls, 0);
	assert_int_equal(stats(f).active, 4);
	/* lowering: no new slot until active falls below the new limit */
	sl_admit_set_limits(&f->admit, 2, 3);
	sl_admit_release(&f->admit);
	sl_admit_release(&f->admit);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(w[4].calls, 0);
	assert_int_equal(stats(f).active, 2);
	sl_admit_release(&f->admit);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(w[4].result, SL_ADMIT_GRANTED);
}

/* Past the fence (a cluster lease no longer trusted) nothing is admitted:
 * not a newcomer, not a waiter a release would have handed a slot to. */
static void test_fence_admits_nothing_past_it(void **state)
{
	fixture_t *f = *state;
	waiter_t w[4];
	assert_int_equal(acquire(f, &w[0], 0), SL_ADMIT_GRANTED);
	sl_admit_set_fence(&f->admit, uv_hrtime() - 1);          /* already past */
	assert_int_equal(acquire(f, &w[1], 1), SL_ADMIT_QUEUED); /* one place of two free, yet queued */
	sl_admit_release(&f->admit);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(w[1].calls, 0);
	assert_int_equal(stats(f).active, 0);
	/* a fence in the future changes nothing yet; lifting it admits at once */
	sl_admit_set_fence(&f->admit, uv_hrtime() + 60 * UINT64_C(1000000000));
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(w[1].result, SL_ADMIT_GRANTED);
	assert_int_equal(acquire(f, &w[2], 2), SL_ADMIT_GRANTED);
	sl_admit_set_fence(&f->admit, 0);
	assert_int_equal(stats(f).active, 2);
}

/* Fair queueing through admit: a full queue gives the fattest key's newest
 * place to a lighter key's newcomer, whose worker is told DISPLACED (a
 * cancel racing it gets DISPLACED too); the adaptive policy refuses a
 * hopeless newcomer at once, and never before 8 holds were measured. */
static void test_queue_policy_through_admit(void **state)
{
	fixture_t *f = *state;
	waiter_t w[8];
	sl_admit_set_queue_policy(&f->admit, SL_QUEUE_FIFO, 0);
	assert_int_equal(acquire(f, &w[0], 0), SL_ADMIT_GRANTED);
	assert_int_equal(acquire(f, &w[1], 1), SL_ADMIT_GRANTED);
	for (int i = 2; i < 5; i++) { /* key 0: three queued, the queue (3) full */
		assert_int_equal(acquire(f, &w[i], i), SL_ADMIT_QUEUED);
	}
	memset(&w[5], 0, sizeof w[5]);
	w[5].id = 5;
	w[5].w.e.key = sl_admit_key(&f->admit, "b", 1);
	assert_int_equal(sl_admit_acquire(&f->admit, &w[5].w, &f->inbox, on_result), SL_ADMIT_QUEUED);
	assert_int_equal(sl_admit_cancel(&f->admit, &w[4].w), SL_ADMIT_DISPLACED); /* on its way: cancel says so */
	memset(&w[6], 0, sizeof w[6]);
	w[6].w.e.key = sl_admit_key(&f->admit, "c", 1);
	assert_int_equal(sl_admit_acquire(&f->admit, &w[6].w, &f->inbox, on_result), SL_ADMIT_QUEUED);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(w[3].calls, 1);
	assert_int_equal(w[3].result, SL_ADMIT_DISPLACED);
	assert_int_equal(w[4].calls, 0);
	sl_admit_stats_t s = stats(f);
	assert_int_equal(s.queued, 3);
	assert_int_equal(s.q.keys, 3);
	assert_int_equal(s.q.displaced, 2);
	/* round robin: key 0's oldest, then b, then c */
	sl_admit_release(&f->admit);
	sl_admit_release(&f->admit);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(w[2].result, SL_ADMIT_GRANTED);
	assert_int_equal(w[5].result, SL_ADMIT_GRANTED);
	assert_int_equal(w[6].calls, 0);

	/* adaptive: 7 holds of 1 s are not enough to predict; the 8th is */
	sl_admit_set_queue_policy(&f->admit, SL_QUEUE_ADAPTIVE, 0);
	for (int i = 0; i < 7; i++)
		sl_admit_note_hold(&f->admit, 1000000000);
	memset(&w[7], 0, sizeof w[7]);
	w[7].w.e.budget_ns = 100000000; /* 100 ms; 2 places x 1 s / 2 slots = 1 s predicted */
	assert_int_equal(sl_admit_acquire(&f->admit, &w[7].w, &f->inbox, on_result), SL_ADMIT_QUEUED);
	assert_int_equal(sl_admit_cancel(&f->admit, &w[7].w), SL_ADMIT_QUEUED);
	sl_admit_note_hold(&f->admit, 1000000000);
	assert_int_equal(sl_admit_acquire(&f->admit, &w[7].w, &f->inbox, on_result), SL_ADMIT_HOPELESS);
	assert_int_equal(w[7].w.e.predicted_ns, 1000000000);
	assert_int_equal(stats(f).q.predicted, 1);
	sl_admit_release(&f->admit);
	sl_admit_release(&f->admit);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(w[6].result, SL_ADMIT_GRANTED);
	sl_admit_release(&f->admit);
	assert_int_equal(stats(f).active, 0);
}

/* Several threads, each with its own loop, hammering one admit: the limit
 * is never exceeded and every slot comes back. */
#define STRESS_THREADS 4
#define STRESS_ROUNDS 3000
#define STRESS_LIMIT 3
/* On a loaded box the threads may run one after another and never contend:
 * they go on past STRESS_ROUNDS until the queue path ran this often. */
#define STRESS_MIN_QUEUED 50
#define STRESS_MAX_ROUNDS 1000000

static int stress_queued; /* all threads, atomic */

typedef struct {
	sl_admit_t *admit;
	uv_loop_t loop;
	sl_admit_inbox_t inbox;
	sl_admit_waiter_t w;
	int granted, full, queued, over_limit;
	bool got;
} stress_t;

static void on_stress(sl_admit_waiter_t *w, sl_admit_result_t r)
{
	stress_t *t = (stress_t *)((char *)w - offsetof(stress_t, w));
	t->got = true;
	assert_int_equal(r, SL_ADMIT_GRANTED);
}

static void do_hold(stress_t *t)
{
	sl_admit_stats_t s;
	sl_admit_get_stats(t->admit, &s);
	if (s.active > STRESS_LIMIT)
		t->over_limit++;
	t->granted++;
	/* hold it a moment, so that the others queue; now and then long enough
	 * for another thread to be scheduled even when the cores are busy */
	if (t->granted % 8 == 0)
		usleep(20);
	else
		sched_yield();
	sl_admit_release(t->admit);
}

static void stress_main(void *arg)
{
	stress_t *t = arg;
	for (int i = 0; i < STRESS_ROUNDS || (i < STRESS_MAX_ROUNDS &&
	                                      __atomic_load_n(&stress_queued, __ATOMIC_RELAXED) < STRESS_MIN_QUEUED);
	     i++) {
		switch (sl_admit_acquire(t->admit, &t->w, &t->inbox, on_stress)) {
		case SL_ADMIT_GRANTED: do_hold(t); break;
		case SL_ADMIT_QUEUED:
			t->queued++;
			__atomic_add_fetch(&stress_queued, 1, __ATOMIC_RELAXED);
			t->got = false;
			if (i % 7 == 0) {
				/* leave the queue, racing the other threads' releases */
				sl_admit_result_t r = sl_admit_cancel(t->admit, &t->w);
				if (r == SL_ADMIT_GRANTED)
					do_hold(t); /* a slot reached it first: it is ours */
				break;
			}
			while (!t->got)
				uv_run(&t->loop, UV_RUN_ONCE);
			do_hold(t);
			break;
		default: t->full++; break;
		}
	}
}

static void test_threads_never_exceed_limit(void **state)
{
	sl_admit_t admit;
	sl_admit_init(&admit, STRESS_LIMIT, 2);
	stress_t t[STRESS_THREADS];
	uv_thread_t th[STRESS_THREADS];
	memset(t, 0, sizeof t);
	for (int i = 0; i < STRESS_THREADS; i++) {
		t[i].admit = &admit;
		uv_loop_init(&t[i].loop);
		sl_admit_inbox_init(&t[i].inbox, &admit, &t[i].loop);
	}
	for (int i = 0; i < STRESS_THREADS; i++)
		uv_thread_create(&th[i], stress_main, &t[i]);
	int granted = 0, full = 0, queued = 0;
	for (int i = 0; i < STRESS_THREADS; i++) {
		uv_thread_join(&th[i]);
		assert_int_equal(t[i].over_limit, 0);
		granted += t[i].granted;
		full += t[i].full;
		queued += t[i].queued;
	}
	assert_true(queued >= STRESS_MIN_QUEUED); /* the queue path ran, not only direct grants */
	sl_admit_stats_t s;
	sl_admit_get_stats(&admit, &s);
	assert_int_equal(s.active, 0);
	assert_int_equal(s.queued, 0);
	assert_true(s.peak_active <= STRESS_LIMIT);
	assert_true(granted > 0);
	for (int i = 0; i < STRESS_THREADS; i++) {
		sl_admit_inbox_close(&t[i].inbox);
		uv_run(&t[i].loop, UV_RUN_DEFAULT);
		uv_loop_close(&t[i].loop);
	}
	sl_admit_dispose(&admit);
	(void)full;
	print_message("stress: %d granted, %d queued, %d rejected as full\n", granted, queued, full);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_grant_queue_full, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_handoff_keeps_slot_counted, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cancel_waiting, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cancel_after_handoff_returns_the_slot, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cancel_twice_hands_nothing_twice, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reject_all, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fence_admits_nothing_past_it, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_raising_limit_admits_queued_at_once, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_queue_policy_through_admit, setup, teardown),
	    cmocka_unit_test(test_threads_never_exceed_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
