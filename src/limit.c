/* limit.c — see limit.h.
 *
 * The median hold time is estimated as the geometric mean of recent holds
 * (a running average of their log2): for lognormal holds, the usual shape
 * of service times, that is the median, and a few very long requests (an
 * LLM answer among quick ones) do not drag it as they would a mean. It
 * costs one log2 per sample.
 */
#include "limit.h"

#include <math.h>

static double clamp(const sl_limit_t *l, double v)
{
	return v < l->min ? l->min : v > l->max ? l->max : v;
}

static uint64_t window_us(const sl_limit_t *l)
{
	uint64_t hold = sl_limit_median_hold_us(l);
	return hold > SL_LIMIT_MIN_WINDOW_US ? hold : SL_LIMIT_MIN_WINDOW_US;
}

static void do_new_window(sl_limit_t *l, uint64_t now_us)
{
	l->window_start = now_us;
	l->window_end = now_us + window_us(l); /* one exp2 per window, not per event */
	l->w_signal = l->w_reached = false;
	l->w_samples = l->w_ttfb_n = 0;
	l->w_ttfb_sum_us = 0;
}

void sl_limit_init(sl_limit_t *l, uint32_t min, uint32_t max, uint64_t now_us)
{
	*l = (sl_limit_t){.min = min, .max = max, .limit = max};
	do_new_window(l, now_us);
}

void sl_limit_set_range(sl_limit_t *l, uint32_t min, uint32_t max)
{
	l->min = min;
	l->max = max < min ? min : max;
	l->limit = clamp(l, l->limit);
}

uint32_t sl_limit_value(const sl_limit_t *l)
{
	return (uint32_t)clamp(l, floor(l->limit));
}

uint64_t sl_limit_median_hold_us(const sl_limit_t *l)
{
	return l->has_hold ? (uint64_t)exp2(l->log2_hold) : 0;
}

/* The one decrease: x0.9, at most once per median hold time. Returns
 * whether it cut. */
static bool do_cut(sl_limit_t *l, uint64_t now_us)
{
	if (l->cut_ever && (int64_t)(now_us - l->last_cut) < (int64_t)sl_limit_median_hold_us(l))
		return false;
	l->limit = clamp(l, l->limit * SL_LIMIT_DECREASE);
	l->last_cut = now_us;
	l->cut_ever = true;
	l->cuts++;
	do_new_window(l, now_us); /* the next window judges the new limit */
	return true;
}

/* Closes the window if it has lasted long enough, deciding on it. */
static void do_maybe_decide(sl_limit_t *l, uint64_t now_us)
{
	if ((int64_t)(now_us - l->window_end) < 0)
		return;
	l->decisions++;
	bool judged = l->w_ttfb_n >= SL_LIMIT_TTFB_MIN_SAMPLES;
	double short_us = judged ? l->w_ttfb_sum_us / l->w_ttfb_n : 0;
	/* The first answers are the quickest of their cohort (everything started
	 * together): a baseline is trusted only once it has seen enough. */
	bool rising =
	    judged && l->ttfb_long_n >= SL_LIMIT_LONG_SAMPLES && short_us > SL_LIMIT_TOLERANCE * l->ttfb_long_us;
	if (judged) {
		l->ttfb_long_n +=
		    l->w_ttfb_n; /* the long-run average follows, slowly: ~SL_LIMIT_LONG_SAMPLES answers */
		double w = l->w_ttfb_n / SL_LIMIT_LONG_SAMPLES;
		l->ttfb_long_us =
		    l->ttfb_long_us > 0 ? l->ttfb_long_us + (short_us - l->ttfb_long_us) * (w < 1 ? w : 1) : short_us;
	}
	bool reached = l->w_reached, clean = !l->w_signal && !rising && l->w_samples > 0;
	if (rising && reached && do_cut(l, now_us))
		return;
	if (reached && clean && l->limit < l->max) {
		l->limit = clamp(l, floor(l->limit) + 1);
		l->increases++;
	}
	do_new_window(l, now_us);
}

uint32_t sl_limit_on_signal(sl_limit_t *l, uint64_t now_us, uint64_t started_us)
{
	do_maybe_decide(l, now_us);
	l->w_signal = true;
	if (!l->cut_ever || (int64_t)(started_us - l->last_cut) >= 0)
		do_cut(l, now_us);
	return sl_limit_value(l);
}

uint32_t sl_limit_on_sample(sl_limit_t *l, uint64_t now_us, uint64_t hold_us, uint64_t ttfb_us)
{
	double lh = log2((double)(hold_us ? hold_us : 1));
	l->log2_hold = l->has_hold ? l->log2_hold + (lh - l->log2_hold) * SL_LIMIT_HOLD_WEIGHT : lh;
	l->has_hold = true;
	do_maybe_decide(l, now_us);
	l->w_samples++;
	if (ttfb_us) {
		l->w_ttfb_n++;
		l->w_ttfb_sum_us += (double)ttfb_us;
	}
	return sl_limit_value(l);
}

uint32_t sl_limit_on_reached(sl_limit_t *l, uint64_t now_us)
{
	do_maybe_decide(l, now_us);
	l->w_reached = true;
	return sl_limit_value(l);
}
