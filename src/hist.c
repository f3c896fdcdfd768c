/* hist.c — the log-linear latency histogram of hist.h.
 *
 * Indexing (S = SL_HIST_SUB_BITS = 7): let m be the position of the highest
 * set bit of (v | 2^(S+1)-1), so m >= S; shift = m - S. Then
 *
 *     index = (shift << S) + (v >> shift)
 *
 * For v < 2^(S+1) shift is 0 and the index is v itself: one exact bucket per
 * value. For larger v, v >> shift lies in [2^S, 2^(S+1)), so each power of two
 * gets 2^S buckets of width 2^shift, and consecutive powers tile the index
 * space without gaps: the last index of shift s is (s << S) + 2^(S+1) - 1,
 * the first of shift s+1 is ((s+1) << S) + 2^S, one more. The largest value,
 * 2^40-1, lands on SL_HIST_BUCKETS - 1. One clz, one shift, one add: O(1).
 *
 * Invariants: total == sum of counts; min/max are the exact extremes of the
 * recorded (clamped) values; min == UINT64_MAX and max == 0 while empty.
 */
#include "hist.h"
#include "stat.h"

#include <math.h>
#include <string.h>

#define SUB_COUNT (1u << SL_HIST_SUB_BITS)            /* buckets per power of two */
#define EXACT_LIMIT (UINT64_C(2) << SL_HIST_SUB_BITS) /* values below this are exact */

static inline unsigned do_index(uint64_t v)
{
	unsigned shift = (unsigned)(63 - __builtin_clzll(v | (EXACT_LIMIT - 1))) - SL_HIST_SUB_BITS;
	return (shift << SL_HIST_SUB_BITS) + (unsigned)(v >> shift);
}

/* The smallest value that maps to bucket i. */
static uint64_t do_lower(unsigned i)
{
	if (i < EXACT_LIMIT)
		return i;
	unsigned shift = (i >> SL_HIST_SUB_BITS) - 1;
	uint64_t sub = (i & (SUB_COUNT - 1)) + SUB_COUNT;
	return sub << shift;
}

/* The largest value that maps to bucket i. */
static uint64_t do_upper(unsigned i)
{
	if (i < EXACT_LIMIT)
		return i;
	unsigned shift = (i >> SL_HIST_SUB_BITS) - 1;
	return do_lower(i) + (UINT64_C(1) << shift) - 1;
}

void sl_hist_init(sl_hist_t *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

/* One writer; readers on other threads merge a snapshot while it records.
 * Relaxed atomic loads and stores make that well-defined (and compile to
 * plain moves): a reader may see a count without its sum, never garbage. */
#define LOAD SL_LOAD
#define STORE SL_STORE

void sl_hist_record(sl_hist_t *h, uint64_t value)
{
	if (value > SL_HIST_MAX_VALUE)
		value = SL_HIST_MAX_VALUE;
	unsigned i = do_index(value);
	STORE(h->counts[i], h->counts[i] + 1);
	STORE(h->total, h->total + 1);
	STORE(h->sum, h->sum + value);
	if (value < h->min)
		STORE(h->min, value);
	if (value > h->max)
		STORE(h->max, value);
}

void sl_hist_reset(sl_hist_t *h)
{
	for (unsigned i = 0; i < SL_HIST_BUCKETS; i++)
		STORE(h->counts[i], 0);
	STORE(h->total, 0);
	STORE(h->sum, 0);
	STORE(h->min, UINT64_MAX);
	STORE(h->max, 0);
}

void sl_hist_merge(sl_hist_t *dst, const sl_hist_t *src)
{
	uint64_t total = 0;
	for (unsigned i = 0; i < SL_HIST_BUCKETS; i++) {
		uint64_t n = LOAD(src->counts[i]);
		dst->counts[i] += n;
		total += n;
	}
	if (total == 0)
		return;
	/* the bucket counts are the truth; total follows them exactly */
	dst->total += total;
	dst->sum += LOAD(src->sum);
	uint64_t min = LOAD(src->min), max = LOAD(src->max);
	if (min < dst->min)
		dst->min = min;
	if (max > dst->max)
		dst->max = max;
}

uint64_t sl_hist_percentile(const sl_hist_t *h, double p)
{
	if (h->total == 0)
		return 0;
	if (!(p > 0)) /* also catches NaN */
		return h->min;
	if (p >= 100)
		return h->max;
	/* rank = ceil(p% of total), at least 1; the small epsilon keeps 99 % of
	 * 100 at 99 although 0.99 * 100 is 99.00000000000001 in binary. */
	double exact = p / 100.0 * (double)h->total;
	uint64_t rank = (uint64_t)ceil(exact - exact * 1e-12);
	if (rank < 1)
		rank = 1;
	uint64_t seen = 0;
	unsigned last = do_index(h->max);
	for (unsigned i = do_index(h->min); i <= last; i++) {
		seen += h->counts[i];
		if (seen >= rank) {
			uint64_t v = do_upper(i);
			if (v > h->max)
				v = h->max;
			if (v < h->min)
				v = h->min;
			return v;
		}
	}
	return h->max; /* unreachable while total == sum of counts */
}

double sl_hist_mean(const sl_hist_t *h)
{
	return h->total ? (double)h->sum / (double)h->total : 0.0;
}

/* Counts the whole bucket that holds `value`: exact when value is the upper
 * bound of its bucket (or is exact, < 256), and the extremes are exact too. */
uint64_t sl_hist_count_le(const sl_hist_t *h, uint64_t value)
{
	if (h->total == 0 || value < h->min)
		return 0;
	if (value >= h->max)
		return h->total;
	uint64_t n = 0;
	unsigned last = do_index(value);
	for (unsigned i = do_index(h->min); i <= last; i++)
		n += h->counts[i];
	return n;
}
