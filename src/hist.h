/* hist.h — a log-linear latency histogram (HdrHistogram-style).
 *
 * Fixed memory, O(1) record, at most 1 % relative error on any percentile,
 * values from 0 up to 2^40 (in whatever unit the caller records; sluice and
 * sluice-load record microseconds). Histograms with the same layout merge by
 * adding counts, so per-worker histograms are summed on read.
 *
 * Not thread-safe: one writer; readers on other threads take a snapshot with
 * sl_hist_merge() into their own copy and accept a slightly torn view.
 */
#ifndef SL_HIST_H
#define SL_HIST_H

#include <stddef.h>
#include <stdint.h>

/* Layout: values below 2^(SUB_BITS+1) have a bucket each (exact); above, every
 * power of two [2^m, 2^(m+1)) is split into 2^SUB_BITS equal buckets, so a
 * bucket is at most 1/128 of its lower bound wide: <= 0.79 % error. */
#define SL_HIST_SUB_BITS 7
#define SL_HIST_MAX_BITS 40
#define SL_HIST_MAX_VALUE ((UINT64_C(1) << SL_HIST_MAX_BITS) - 1)
#define SL_HIST_BUCKETS ((SL_HIST_MAX_BITS - SL_HIST_SUB_BITS + 1) << SL_HIST_SUB_BITS)

typedef struct sl_hist {
	uint64_t total; /* number of recorded values */
	uint64_t sum;   /* sum of recorded values (for the mean) */
	uint64_t min;   /* UINT64_MAX while empty */
	uint64_t max;
	uint64_t counts[SL_HIST_BUCKETS];
} sl_hist_t;

void sl_hist_init(sl_hist_t *h);

/* Empties h while readers on other threads may be merging it: they see
 * some old counts or none, never garbage. */
void sl_hist_reset(sl_hist_t *h);

/* Records one value; values above 2^40-1 are clamped to it. */
void sl_hist_record(sl_hist_t *h, uint64_t value);

/* dst += src. */
void sl_hist_merge(sl_hist_t *dst, const sl_hist_t *src);

/* The value at percentile p (0..100]: the smallest recorded bucket whose
 * cumulative count reaches p % of total, reported as that bucket's upper
 * bound clamped to [min, max]. 0 when empty. */
uint64_t sl_hist_percentile(const sl_hist_t *h, double p);

/* Mean of recorded values, 0 when empty. */
double sl_hist_mean(const sl_hist_t *h);

/* How many recorded values are <= value (exact at bucket bounds, within the
 * histogram's resolution elsewhere): for Prometheus `le` buckets. */
uint64_t sl_hist_count_le(const sl_hist_t *h, uint64_t value);

#endif
