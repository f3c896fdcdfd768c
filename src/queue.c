/* queue.c — see queue.h.
 *
 * Invariants:
 *   a key (flow) exists iff it has entries: it is then in `ring`, in its
 *   hash bucket and in `heap` at heap_idx; n = its entries;
 *   queued = the sum of n = entries whose `flow` is set;
 *   nonempty_since is meaningful only while queued > 0.
 */
#include "queue.h"

#include <stdlib.h>
#include <string.h>

struct sl_queue_flow {
	sl_list_t entries; /* oldest first */
	sl_list_t ring;    /* in q->ring */
	sl_queue_flow_t *hnext;
	uint64_t key;
	uint32_t n;
	uint32_t heap_idx;
};

#define MAX_SPARE 64
#define EWMA_SHIFT 3 /* each hold moves the estimate 1/8 of the way */

/* ---- the hold time ------------------------------------------------------- */

static int64_t ns_between(uint64_t from, uint64_t to)
{
	return (int64_t)(to - from);
}

uint64_t sl_queue_hold_estimate(const sl_queue_t *q, uint64_t now)
{
	if (q->samples < SL_QUEUE_MIN_SAMPLES)
		return 0;
	uint64_t h = (uint64_t)q->hold_ns;
	/* While requests wait, no slot changing hands for `gap` means every
	 * holder has held at least that long: the departures have slowed down
	 * more than the average of finished holds can show yet. */
	int64_t gap = ns_between(q->last_change, now);
	if (q->queued > 0 && gap > 0 && (uint64_t)gap > h)
		h = (uint64_t)gap;
	return h ? h : 1;
}

void sl_queue_note_slot(sl_queue_t *q, uint64_t now)
{
	q->last_change = now;
}

void sl_queue_note_hold(sl_queue_t *q, uint64_t held_ns)
{
	if (held_ns == 0)
		return;
	if (q->samples++ == 0)
		q->hold_ns = (double)held_ns;
	else
		q->hold_ns += ((double)held_ns - q->hold_ns) / (1 << EWMA_SHIFT);
}

/* The standing-queue target: max(H, 4 H / limit) (queue.h says why). */
static uint64_t standing_target(uint64_t h, uint32_t limit)
{
	uint64_t per_departure4 = 4 * h / (limit ? limit : 1);
	return per_departure4 > h ? per_departure4 : h;
}

/* ---- keys ------------------------------------------------------------------ */

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

uint64_t sl_queue_key(const sl_queue_t *q, const void *data, size_t len)
{
	/* FNV-1a from a keyed basis, then a keyed finaliser: cheap, well
	 * spread; not a cryptographic MAC (see queue.h on collisions). */
	const unsigned char *p = data;
	uint64_t h = 0xcbf29ce484222325ULL ^ q->seed;
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	h = mix64(h ^ mix64(q->seed + len));
	return h ? h : 1; /* 0 is the key of an unfair queue */
}

static sl_queue_flow_t *do_find(const sl_queue_t *q, uint64_t key)
{
	if (q->nbuckets == 0)
		return NULL;
	for (sl_queue_flow_t *f = q->buckets[key & (q->nbuckets - 1)]; f; f = f->hnext)
		if (f->key == key)
			return f;
	return NULL;
}

/* Doubles the bucket array (16 at first) and rehashes: amortised O(1). On
 * failure the chains just get longer. */
static void do_grow_buckets(sl_queue_t *q)
{
	uint32_t n = q->nbuckets ? q->nbuckets * 2 : 16;
	sl_queue_flow_t **b = calloc(n, sizeof *b);
	if (!b)
		return;
	sl_list_t *pos, *tmp;
	sl_list_foreach_safe(pos, tmp, &q->ring)
	{
		sl_queue_flow_t *f = sl_list_entry(pos, sl_queue_flow_t, ring);
		f->hnext = b[f->key & (n - 1)];
		b[f->key & (n - 1)] = f;
	}
	free(q->buckets);
	q->buckets = b;
	q->nbuckets = n;
}

/* ---- the fattest key: a max-heap by entries ---------------------------- */

static void heap_set(sl_queue_t *q, uint32_t i, sl_queue_flow_t *f)
{
	q->heap[i] = f;
	f->heap_idx = i;
}

static void heap_up(sl_queue_t *q, uint32_t i)
{
	sl_queue_flow_t *f = q->heap[i];
	while (i > 0) {
		uint32_t parent = (i - 1) / 2;
		if (q->heap[parent]->n >= f->n)
			break;
		heap_set(q, i, q->heap[parent]);
		i = parent;
	}
	heap_set(q, i, f);
}

static void heap_down(sl_queue_t *q, uint32_t i)
{
	sl_queue_flow_t *f = q->heap[i];
	for (;;) {
		uint32_t l = 2 * i + 1, r = l + 1, big = i;
		uint32_t big_n = f->n;
		if (l < q->nflows && q->heap[l]->n > big_n) {
			big = l;
			big_n = q->heap[l]->n;
		}
		if (r < q->nflows && q->heap[r]->n > big_n)
			big = r;
		if (big == i)
			break;
		heap_set(q, i, q->heap[big]);
		i = big;
	}
	heap_set(q, i, f);
}

/* ---- keys coming and going --------------------------------------------- */

static sl_queue_flow_t *do_new_flow(sl_queue_t *q, uint64_t key)
{
	if (q->nflows + 1 > q->heap_cap) {
		uint32_t cap = q->heap_cap ? q->heap_cap * 2 : 16;
		sl_queue_flow_t **h = realloc(q->heap, cap * sizeof *h);
		if (!h)
			return NULL;
		q->heap = h;
		q->heap_cap = cap;
	}
	sl_queue_flow_t *f = q->spare;
	if (f) {
		q->spare = f->hnext;
		q->nspare--;
	} else if (!(f = malloc(sizeof *f))) {
		return NULL;
	}
	if (q->nflows + 1 > q->nbuckets)
		do_grow_buckets(q);
	memset(f, 0, sizeof *f);
	sl_list_init(&f->entries);
	f->key = key;
	sl_list_insert_tail(&q->ring, &f->ring); /* a new key is served after those waiting */
	if (q->nbuckets) {
		sl_queue_flow_t **b = &q->buckets[key & (q->nbuckets - 1)];
		f->hnext = *b;
		*b = f;
	}
	q->nflows++;
	heap_set(q, q->nflows - 1, f); /* n = 0: a leaf; raised as entries come */
	return f;
}

static void do_drop_flow(sl_queue_t *q, sl_queue_flow_t *f)
{
	sl_list_remove(&f->ring);
	if (q->nbuckets) {
		sl_queue_flow_t **b = &q->buckets[f->key & (q->nbuckets - 1)];
		while (*b && *b != f)
			b = &(*b)->hnext;
		if (*b)
			*b = f->hnext;
	}
	uint32_t i = f->heap_idx, last = --q->nflows;
	if (i != last) {
		sl_queue_flow_t *moved = q->heap[last];
		heap_set(q, i, moved);
		heap_down(q, i);
		heap_up(q, moved->heap_idx);
	}
	if (q->nspare < MAX_SPARE) {
		f->hnext = q->spare;
		q->spare = f;
		q->nspare++;
	} else {
		free(f);
	}
}

/* Unlinks e from its key (the key goes when it empties). */
static void do_unlink(sl_queue_t *q, sl_queue_entry_t *e)
{
	sl_queue_flow_t *f = e->flow;
	sl_list_remove(&e->link);
	e->flow = NULL;
	q->queued--;
	if (--f->n == 0)
		do_drop_flow(q, f);
	else
		heap_down(q, f->heap_idx);
}

/* The queue lost a request (refused, displaced, withdrawn) at now. */
static void do_note_loss(sl_queue_t *q, uint64_t now)
{
	q->last_loss = now;
	q->lost = true;
}

/* ---- the interface ---------------------------------------------------------- */

void sl_queue_init(sl_queue_t *q, const sl_queue_params_t *p, uint64_t seed)
{
	memset(q, 0, sizeof *q);
	q->p = *p;
	q->seed = seed;
	sl_list_init(&q->ring);
}

void sl_queue_dispose(sl_queue_t *q)
{
	while (!sl_list_empty(&q->ring)) {
		sl_queue_flow_t *f = sl_list_entry(q->ring.next, sl_queue_flow_t, ring);
		sl_list_remove(&f->ring);
		free(f);
	}
	while (q->spare) {
		sl_queue_flow_t *f = q->spare;
		q->spare = f->hnext;
		free(f);
	}
	free(q->buckets);
	free(q->heap);
	memset(q, 0, sizeof *q);
	sl_list_init(&q->ring);
}

void sl_queue_set_params(sl_queue_t *q, const sl_queue_params_t *p)
{
	q->p = *p;
}

sl_queue_verdict_t sl_queue_push(sl_queue_t *q, sl_queue_entry_t *e, uint64_t now, uint32_t limit,
                                 sl_queue_entry_t **displaced)
{
	*displaced = NULL;
	uint32_t per_key = q->p.max_per_key && q->p.max_per_key < q->p.max_queue ? q->p.max_per_key : q->p.max_queue;
	sl_queue_flow_t *f = do_find(q, e->key);
	uint32_t mine = f ? f->n : 0;
	if (mine >= per_key) {
		do_note_loss(q, now);
		return SL_QUEUE_FULL;
	}
	/* the average of finished holds, not the stalled-departures bound of
	 * sl_queue_hold_estimate: a holder's long hold says little about the
	 * holds of those after it (conservative) */
	uint64_t h = q->p.policy == SL_QUEUE_ADAPTIVE && e->budget_ns && limit && q->samples >= SL_QUEUE_MIN_SAMPLES
	                 ? (uint64_t)q->hold_ns
	                 : 0;
	if (h) {
		/* Position: everyone queued, or fewer when round robin serves this
		 * key's next entry after one of each other key per round. */
		uint64_t keys = q->nflows + (f ? 0 : 1);
		uint64_t pos = (uint64_t)q->queued + 1;
		if ((uint64_t)(mine + 1) * keys < pos)
			pos = (uint64_t)(mine + 1) * keys;
		uint64_t predicted = pos * h / limit;
		if (predicted > e->budget_ns) {
			e->predicted_ns = predicted;
			q->predicted++;
			do_note_loss(q, now);
			return SL_QUEUE_HOPELESS;
		}
	}
	if (q->queued >= q->p.max_queue) {
		sl_queue_flow_t *fat = q->nflows ? q->heap[0] : NULL;
		do_note_loss(q, now); /* one goes, either way */
		/* Displace only when the newcomer's key, once joined, still has
		 * fewer than the fattest: with a tie after joining (every key
		 * holding one, as when a client invents a key per request) a swap
		 * would only trade places, and the queue would churn at the
		 * flood's arrival rate, evicting a light client as readily as any. */
		if (!fat || fat->n <= mine + 1)
			return SL_QUEUE_FULL; /* this key is (one of) the fattest: the newcomer is the one refused */
		sl_queue_entry_t *victim = sl_list_entry(fat->entries.prev, sl_queue_entry_t, link);
		do_unlink(q, victim);
		q->displaced++;
		*displaced = victim;
	}
	if (!f && !(f = do_new_flow(q, e->key)))
		return SL_QUEUE_FULL; /* out of memory: refuse rather than break the bounds */
	sl_list_insert_tail(&f->entries, &e->link);
	e->flow = f;
	e->queued_at = now;
	f->n++;
	heap_up(q, f->heap_idx);
	if (q->queued++ == 0)
		q->nonempty_since = now;
	q->last_push = now;
	return SL_QUEUE_ADDED;
}

sl_queue_entry_t *sl_queue_pop(sl_queue_t *q, uint64_t now, uint32_t limit, bool *expired)
{
	if (sl_list_empty(&q->ring))
		return NULL;
	bool drop = false;
	sl_queue_flow_t *f = sl_list_entry(q->ring.next, sl_queue_flow_t, ring);
	sl_queue_entry_t *e = sl_list_entry(f->entries.next, sl_queue_entry_t, link);
	if (expired && q->p.policy == SL_QUEUE_ADAPTIVE) {
		uint64_t h = sl_queue_hold_estimate(q, now);
		if (h) {
			uint64_t target = standing_target(h, limit);
			int64_t standing = ns_between(q->nonempty_since, now), waited = ns_between(e->queued_at, now);
			/* ... and only while the queue loses requests anyway (a loss
			 * within the interval), to make way for fresher work that
			 * keeps the slots busy: something queued within the target,
			 * more than max(2 limit, 16) entries behind it; else dropping
			 * would only turn an accepted wait into a 503 or leave a slot
			 * idle (queue.h) */
			int64_t fresh = ns_between(q->last_push, now), since_loss = ns_between(q->last_loss, now);
			uint32_t keep = 2 * limit > 16 ? 2 * limit : 16;
			drop = standing > 0 && (uint64_t)standing >= 4 * target && waited > 0 &&
			       (uint64_t)waited > target && q->lost && since_loss >= 0 &&
			       (uint64_t)since_loss <= 4 * target && fresh >= 0 && (uint64_t)fresh <= target &&
			       q->queued > keep;
		}
	}
	/* the key goes to the back of the rotation (or away, emptied) */
	sl_list_remove(&f->ring);
	sl_list_insert_tail(&q->ring, &f->ring);
	do_unlink(q, e);
	q->last_change = now;
	if (expired) {
		*expired = drop;
		if (drop)
			q->standing_drops++;
	}
	return e;
}

void sl_queue_remove(sl_queue_t *q, sl_queue_entry_t *e, uint64_t now)
{
	if (e->flow) {
		do_unlink(q, e);
		do_note_loss(q, now);
	}
}

void sl_queue_get_stats(const sl_queue_t *q, sl_queue_stats_t *out)
{
	out->queued = q->queued;
	out->keys = q->nflows;
	out->predicted = q->predicted;
	out->standing_drops = q->standing_drops;
	out->displaced = q->displaced;
	out->samples = q->samples;
	out->hold_ns = (uint64_t)q->hold_ns;
}
