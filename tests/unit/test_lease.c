/* Unit tests for lease.c, in virtual time: each rule of the controller, then
 * a simulated cluster (replicas, a Redis that runs the script's arithmetic,
 * requests that come and go, answers that are slow or lost) that checks the
 * one promise: while Redis answers, the replicas never use more than N
 * slots together. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lease.h"

#define N 10
#define TTL 2000

/* A request the test expects the controller to send at now. */
static sl_lease_request_t expect_send(sl_lease_t *l, uint64_t now, uint32_t active, uint32_t queued)
{
	sl_lease_request_t req;
	assert_true(sl_lease_tick(l, now, active, queued, &req));
	sl_lease_sent(l, now, &req);
	return req;
}

static void expect_quiet(sl_lease_t *l, uint64_t now, uint32_t active, uint32_t queued)
{
	sl_lease_request_t req;
	assert_false(sl_lease_tick(l, now, active, queued, &req));
}

static void test_starts_with_nothing_and_asks_at_once(void **state)
{
	sl_lease_t l;
	sl_lease_init(&l, N, TTL, false);
	assert_int_equal(sl_lease_state(&l, 0), SL_CLUSTER_STARTING);
	assert_int_equal(sl_lease_local_limit(&l, 0), 0); /* requests queue until Redis answers */
	sl_lease_request_t r = expect_send(&l, 0, 0, 3);
	assert_int_equal(r.floor, 0);
	assert_int_equal(r.demand, 4); /* 3 wanted, with headroom */
	expect_quiet(&l, 5, 0, 3);     /* one request at a time */
	sl_lease_granted(&l, 5, 4, 4, 1, false, TTL);
	assert_int_equal(sl_lease_state(&l, 5), SL_CLUSTER_OK);
	assert_int_equal(sl_lease_local_limit(&l, 5), 4);
	assert_int_equal(l.changes, 1);
}

static void test_heartbeat_every_third_of_the_ttl(void **state)
{
	sl_lease_t l;
	sl_lease_init(&l, N, TTL, false);
	expect_send(&l, 0, 0, 2);
	sl_lease_granted(&l, 1, 3, 3, 1, false, TTL);
	expect_quiet(&l, TTL / 3 - 1, 2, 0);
	sl_lease_request_t r = expect_send(&l, TTL / 3, 2, 0);
	assert_int_equal(r.floor, 3); /* keeps what it holds and wants */
	sl_lease_granted(&l, TTL / 3 + 1, 3, 3, 1, false, TTL);
	assert_int_equal(l.valid_until, TTL / 3 + TTL); /* from the send, not the answer */
}

static void test_starving_asks_soon_then_slowly_at_its_fair_share(void **state)
{
	sl_lease_t l;
	sl_lease_init(&l, N, TTL, false);
	expect_send(&l, 0, 0, 1);
	sl_lease_granted(&l, 1, 2, 2, 2, false, TTL);
	/* both slots busy, requests queued: ask again after the minimum gap */
	expect_quiet(&l, SL_LEASE_MIN_GAP_MS - 1, 2, 5);
	sl_lease_request_t r = expect_send(&l, SL_LEASE_MIN_GAP_MS, 2, 5);
	assert_int_equal(r.floor, 2);
	assert_true(r.demand >= 7);
	/* contended, at its fair share: ask only every SL_LEASE_FAIR_GAP_MS */
	uint64_t t = SL_LEASE_MIN_GAP_MS + 1;
	sl_lease_granted(&l, t, 5, 5, 2, true, TTL);
	expect_quiet(&l, t + SL_LEASE_MIN_GAP_MS, 5, 5);
	expect_quiet(&l, SL_LEASE_MIN_GAP_MS + SL_LEASE_FAIR_GAP_MS - 1, 5, 5);
	expect_send(&l, SL_LEASE_MIN_GAP_MS + SL_LEASE_FAIR_GAP_MS, 5, 5);
}

static void test_shrinking_is_our_own_choice_made_first(void **state)
{
	sl_lease_t l;
	sl_lease_init(&l, N, TTL, false);
	expect_send(&l, 0, 0, 8);
	sl_lease_granted(&l, 1, 8, 8, 2, true, TTL);
	/* others want slots: fair share falls to 4 at the next answer */
	sl_lease_request_t r = expect_send(&l, TTL / 3, 8, 0);
	sl_lease_granted(&l, TTL / 3 + 1, r.floor, 4, 2, true, TTL);
	assert_int_equal(l.held, 8);                                /* all 8 are in use */
	assert_int_equal(sl_lease_local_limit(&l, TTL / 3 + 1), 4); /* but no more are admitted */
	/* 5 of them finish: give back down to the fair share, what is in use
	 * permitting */
	uint64_t t = TTL / 3 + 1 + SL_LEASE_OVERFAIR_GAP_MS;
	r = expect_send(&l, t, 3, 0);
	assert_int_equal(r.floor, 4);
	/* while that request is out, nothing is admitted past its floor */
	assert_int_equal(sl_lease_local_limit(&l, t), 4);
	sl_lease_granted(&l, t + 1, 4, 4, 2, true, TTL);
	assert_int_equal(l.held, 4);
	/* 1 in use, fair share 1: down to it, never below what is in use */
	sl_lease_granted(&l, t + 2, 4, 1, 2, true, TTL);
	r = expect_send(&l, t + 2 + SL_LEASE_OVERFAIR_GAP_MS, 3, 0);
	assert_int_equal(r.floor, 3);
}

static void test_spare_slots_go_back_soon_when_others_want_them(void **state)
{
	sl_lease_t l;
	sl_lease_init(&l, N, TTL, false);
	expect_send(&l, 0, 0, 6);
	sl_lease_granted(&l, 1, 5, 5, 2, true, TTL); /* an even split: no need to poll */
	/* the load moved away: after SL_LEASE_SPARE_BUSY_MS the slots go back */
	expect_quiet(&l, 10, 0, 0);
	expect_quiet(&l, 10 + SL_LEASE_SPARE_BUSY_MS - 1, 0, 0);
	sl_lease_request_t r = expect_send(&l, 10 + SL_LEASE_SPARE_BUSY_MS, 0, 0);
	assert_int_equal(r.floor, 0);
	assert_int_equal(r.demand, 0);
	/* the slots are as good as given back: a burst that comes meanwhile
	 * waits for the answer rather than use them */
	assert_int_equal(sl_lease_local_limit(&l, 11 + SL_LEASE_SPARE_BUSY_MS), 0);
}

static void test_more_than_an_even_split_polls_to_learn_of_others(void **state)
{
	sl_lease_t l;
	sl_lease_init(&l, N, 60000, false);
	expect_send(&l, 0, 0, 20);
	sl_lease_granted(&l, 1, 10, 10, 3, false, 60000); /* all of it, nobody else asked yet */
	/* busy, nothing queued, not known to be contended: still ask every
	 * SL_LEASE_FAIR_GAP_MS, so the others' demand reaches it soon */
	expect_quiet(&l, SL_LEASE_FAIR_GAP_MS - 1, 10, 0);
	expect_send(&l, SL_LEASE_FAIR_GAP_MS, 10, 0);
}

static void test_spare_is_judged_by_the_demand_of_now(void **state)
{
	sl_lease_t l;
	sl_lease_init(&l, N, TTL, false);
	expect_send(&l, 0, 0, 4);
	sl_lease_granted(&l, 1, 5, 5, 2, true, TTL);
	expect_quiet(&l, 50, 5, 0); /* busy: the peak since the last request is 5 */
	/* the load left: spare at once, though the old peak was 5, and the
	 * request gives back down to the demand of the spare period */
	expect_quiet(&l, 60, 0, 0);
	expect_quiet(&l, 100, 1, 0);
	sl_lease_request_t r = expect_send(&l, 60 + SL_LEASE_SPARE_BUSY_MS, 0, 0);
	assert_int_equal(r.demand, 2); /* 1, with headroom */
	assert_int_equal(r.floor, 2);
}

static void test_spare_slots_are_kept_a_while_when_nobody_wants_them(void **state)
{
	sl_lease_t l;
	sl_lease_init(&l, N, 60000, false);
	expect_send(&l, 0, 0, 2);
	sl_lease_granted(&l, 1, 3, 3, 1, false, 60000);
	/* a trickle of requests: the slot it needs now and then stays */
	for (uint64_t t = 100; t < SL_LEASE_SPARE_IDLE_MS; t += 100)
		expect_quiet(&l, t, (t / 100) % 5 == 0 ? 1 : 0, 0);
	expect_send(&l, SL_LEASE_SPARE_IDLE_MS + 200, 0, 0);
}

static void test_a_lost_answer_keeps_the_floor(void **state)
{
	sl_lease_t l;
	sl_lease_init(&l, N, TTL, false);
	expect_send(&l, 0, 0, 8);
	sl_lease_granted(&l, 1, 8, 8, 2, true, TTL);
	sl_lease_granted(&l, 2, 8, 2, 2, true, TTL); /* fair share 2 now */
	sl_lease_request_t r = expect_send(&l, 2 + SL_LEASE_OVERFAIR_GAP_MS, 2, 0);
	assert_int_equal(r.floor, 2);
	sl_lease_failed(&l, 110);
	/* Redis may have recorded 2: no more than that until it answers again */
	assert_int_equal(sl_lease_local_limit(&l, 110), 2);
	assert_int_equal(sl_lease_state(&l, 110), SL_CLUSTER_OK); /* the lease itself still holds */
	assert_true(l.redis_down);
	/* backoff doubles */
	expect_quiet(&l, 110 + SL_LEASE_BACKOFF_MIN_MS - 1, 2, 0);
	expect_send(&l, 110 + SL_LEASE_BACKOFF_MIN_MS, 2, 0);
	sl_lease_failed(&l, 300);
	assert_int_equal(l.next_try, 300 + 2 * SL_LEASE_BACKOFF_MIN_MS);
	assert_int_equal(l.errors, 2);
}

static void test_fence_then_static_share_never_n(void **state)
{
	sl_lease_t l;
	sl_lease_init(&l, N, TTL, false);
	expect_send(&l, 0, 0, 4);
	sl_lease_granted(&l, 1, 4, 4, 3, false, TTL);
	sl_lease_request_t r = expect_send(&l, TTL / 3, 4, 0);
	(void)r;
	sl_lease_failed(&l, TTL / 3 + 100);
	/* trusted until a quarter of the TTL before it lapses */
	assert_int_equal(sl_lease_state(&l, TTL - TTL / 4 - 1), SL_CLUSTER_OK);
	assert_int_equal(sl_lease_state(&l, TTL - TTL / 4), SL_CLUSTER_DEGRADED);
	assert_int_equal(sl_lease_local_limit(&l, TTL), N / 3); /* floor(N / replicas last seen) */
	/* a replica that never saw Redis answer: 1, never N */
	sl_lease_t fresh;
	sl_lease_init(&fresh, N, TTL, false);
	expect_send(&fresh, 0, 0, 1);
	sl_lease_failed(&fresh, 50);
	assert_int_equal(sl_lease_state(&fresh, 50), SL_CLUSTER_DEGRADED);
	assert_int_equal(sl_lease_local_limit(&fresh, 50), 1);
	/* back: the first request claims what is in use, nothing more */
	r = expect_send(&l, TTL + 5000, 3, 6);
	assert_int_equal(r.floor, 3);
	sl_lease_granted(&l, TTL + 5001, 5, 5, 3, true, TTL);
	assert_int_equal(sl_lease_state(&l, TTL + 5001), SL_CLUSTER_OK);
}

static void test_closed_fallback_admits_nothing(void **state)
{
	sl_lease_t l;
	sl_lease_init(&l, N, TTL, true);
	expect_send(&l, 0, 0, 4);
	sl_lease_granted(&l, 1, 4, 4, 2, false, TTL);
	expect_send(&l, TTL / 3, 1, 0);
	sl_lease_failed(&l, TTL / 3 + 1);
	assert_int_equal(sl_lease_local_limit(&l, TTL / 3 + 2), 2); /* the lease is still good: its floor */
	assert_int_equal(sl_lease_state(&l, TTL), SL_CLUSTER_UNAVAILABLE);
	assert_int_equal(sl_lease_local_limit(&l, TTL), 0);
}

static void test_a_paused_replica_asks_again_before_admitting(void **state)
{
	sl_lease_t l;
	sl_lease_init(&l, N, TTL, false);
	expect_send(&l, 0, 0, 4);
	sl_lease_granted(&l, 1, 4, 4, 2, false, TTL);
	/* nothing ran for 3 TTLs (SIGSTOP): Redis gave our slots away */
	uint64_t t = 3 * TTL;
	assert_int_equal(sl_lease_state(&l, t), SL_CLUSTER_REACQUIRING);
	assert_int_equal(sl_lease_local_limit(&l, t), 0); /* not the static share: Redis answers */
	sl_lease_request_t r = expect_send(&l, t, 4, 2);
	assert_int_equal(r.floor, 4); /* what is really in use */
}

/* ---- a simulated cluster ------------------------------------------------------- */

#define REPLICAS 3
#define STEPS 200000

typedef struct {
	uint32_t lease;
	uint64_t expiry;
	uint32_t demand;
	bool live;
} record_t;

/* The script's arithmetic (cluster.lua), in C: the simulation's Redis. */
static void script(record_t rec[REPLICAS], int id, uint64_t now, const sl_lease_request_t *req, uint32_t *lease,
                   uint32_t *fair, uint32_t *replicas, bool *contended)
{
	uint32_t others = 0, live = 1, demands[REPLICAS], ids[REPLICAS], n = 0;
	demands[n] = req->demand;
	ids[n++] = (uint32_t)id;
	for (int i = 0; i < REPLICAS; i++) {
		if (i == id)
			continue;
		if (rec[i].live && rec[i].expiry <= now)
			rec[i].live = false;
		if (!rec[i].live)
			continue;
		others += rec[i].lease;
		live++;
		demands[n] = rec[i].demand;
		ids[n++] = (uint32_t)i;
	}
	for (uint32_t a = 0; a < n; a++) /* sort by (demand, id) */
		for (uint32_t b = a + 1; b < n; b++)
			if (demands[b] < demands[a] || (demands[b] == demands[a] && ids[b] < ids[a])) {
				uint32_t t = demands[a];
				demands[a] = demands[b];
				demands[b] = t;
				t = ids[a];
				ids[a] = ids[b];
				ids[b] = t;
			}
	uint32_t left = N, wanted = 0;
	*fair = 0;
	for (uint32_t k = 0; k < n; k++) {
		uint32_t share = left / (n - k), give = demands[k] < share ? demands[k] : share;
		if (k == n - 1)
			give = demands[k] < left ? demands[k] : left;
		if (ids[k] == (uint32_t)id)
			*fair = give;
		left -= give;
		wanted += demands[k];
	}
	uint32_t free_slots = others > N ? 0 : N - others;
	uint32_t l = req->demand;
	if (*fair < l)
		l = *fair;
	if (free_slots < l)
		l = free_slots;
	if (l < req->floor)
		l = req->floor;
	rec[id] = (record_t){.lease = l, .expiry = now + TTL, .demand = req->demand, .live = true};
	*lease = l < free_slots ? l : free_slots; /* a floor beyond what is free is recorded, not handed out */
	*replicas = live;
	*contended = wanted > N;
}

typedef struct {
	sl_lease_t lease;
	uint32_t active, queued;
	uint32_t ends[64]; /* remaining ms of each request in progress */
	bool pending;      /* a request to Redis in flight */
	sl_lease_request_t req;
	uint64_t arrives; /* when it reaches Redis */
	bool run;         /* it will be run (else lost on the way) */
	uint64_t answer_at;
	bool answer_lost;
	uint32_t a_lease, a_fair, a_replicas;
	bool a_contended;
	bool answered; /* the script ran; the answer travels */
} sim_replica_t;

static uint32_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return (uint32_t)(*s >> 32);
}

static void test_simulated_cluster_never_exceeds_n(void **state)
{
	uint64_t seed = 0x9E3779B97F4A7C15ull;
	record_t rec[REPLICAS] = {0};
	sim_replica_t r[REPLICAS];
	memset(r, 0, sizeof r);
	for (int i = 0; i < REPLICAS; i++)
		sl_lease_init(&r[i].lease, N, TTL, false);
	uint32_t peak = 0, served = 0;
	for (uint64_t now = 1; now < STEPS; now++) {
		/* load: each replica's arrival rate jumps every 300 ms */
		for (int i = 0; i < REPLICAS; i++) {
			uint32_t phase = (uint32_t)((now / 300) * 2654435761u + (uint64_t)i * 40503u) % 4;
			uint32_t per_mille = phase == 0 ? 0 : phase == 1 ? 20 : phase == 2 ? 80 : 300;
			if (rnd(&seed) % 1000 < per_mille)
				r[i].queued++;
		}
		uint32_t total_active = 0;
		for (int i = 0; i < REPLICAS; i++) {
			sim_replica_t *x = &r[i];
			/* requests in progress end */
			for (uint32_t k = 0; k < x->active;) {
				if (--x->ends[k] == 0) {
					x->ends[k] = x->ends[--x->active];
					served++;
				} else {
					k++;
				}
			}
			/* admission up to the local limit */
			uint32_t limit = sl_lease_local_limit(&x->lease, now);
			while (x->queued > 0 && x->active < limit && x->active < 64) {
				x->queued--;
				x->ends[x->active++] = 20 + rnd(&seed) % 200;
			}
			if (x->queued > 200)
				x->queued = 200; /* clients give up */
			/* Redis traffic: 1-40 ms each way, 1 % lost before, 1 % after the script */
			if (x->pending && !x->answered && now >= x->arrives) {
				if (x->run)
					script(rec, i, now, &x->req, &x->a_lease, &x->a_fair, &x->a_replicas,
					       &x->a_contended);
				x->answered = true;
			}
			if (x->pending && x->answered && now >= x->answer_at) {
				x->pending = x->answered = false;
				if (x->run && !x->answer_lost)
					sl_lease_granted(&x->lease, now, x->a_lease, x->a_fair, x->a_replicas,
					                 x->a_contended, TTL);
				else
					sl_lease_failed(&x->lease, now);
			}
			if (!x->pending && sl_lease_tick(&x->lease, now, x->active, x->queued, &x->req)) {
				sl_lease_sent(&x->lease, now, &x->req);
				x->pending = true;
				x->arrives = now + 1 + rnd(&seed) % 40;
				x->answer_at = x->arrives + 1 + rnd(&seed) % 40;
				x->run = rnd(&seed) % 100 != 0;
				x->answer_lost = rnd(&seed) % 100 == 0;
			}
			total_active += x->active;
		}
		if (total_active > peak)
			peak = total_active;
		assert_true(total_active <= N);
	}
	assert_int_equal(peak, N);   /* the limit is reached... */
	assert_true(served > 10000); /* ...and work gets done */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_starts_with_nothing_and_asks_at_once),
	    cmocka_unit_test(test_heartbeat_every_third_of_the_ttl),
	    cmocka_unit_test(test_starving_asks_soon_then_slowly_at_its_fair_share),
	    cmocka_unit_test(test_shrinking_is_our_own_choice_made_first),
	    cmocka_unit_test(test_spare_slots_go_back_soon_when_others_want_them),
	    cmocka_unit_test(test_more_than_an_even_split_polls_to_learn_of_others),
	    cmocka_unit_test(test_spare_is_judged_by_the_demand_of_now),
	    cmocka_unit_test(test_spare_slots_are_kept_a_while_when_nobody_wants_them),
	    cmocka_unit_test(test_a_lost_answer_keeps_the_floor),
	    cmocka_unit_test(test_fence_then_static_share_never_n),
	    cmocka_unit_test(test_closed_fallback_admits_nothing),
	    cmocka_unit_test(test_a_paused_replica_asks_again_before_admitting),
	    cmocka_unit_test(test_simulated_cluster_never_exceeds_n),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
