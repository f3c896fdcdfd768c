/* limit.h — the adaptive limit (--adaptive-limit): how many requests the
 * upstream is given at once, between --min-concurrent-requests and the
 * operator's max_concurrent_requests, learnt from what the upstream says.
 *
 * AIMD on explicit signals, as TCP does with losses:
 *   - an overload signal (a 429 or 503, with or without Retry-After; a
 *     connect refused or timed out; a read timeout) multiplies the limit by
 *     0.9 at once, at most once per median hold time, and only for a
 *     request that started after the last cut (one admitted under the old,
 *     higher limit is old news: TCP's one reduction per window);
 *   - the time to first byte rising well above its long-run average
 *     (Netflix's Gradient2: the average of a decision window above 1.5 times
 *     the long-run one, while the limit was reached) cuts it the same way;
 *   - otherwise, once per decision window (the median hold time, at least
 *     SL_LIMIT_MIN_WINDOW_US) in which the limit was actually reached (a
 *     request had to wait for a slot) and nothing signalled, it grows by one.
 * It never probes for a minimum round-trip time (Envoy's gradient
 * controller drops to a few slots for minutes to measure one, which an
 * upstream whose answers take minutes cannot afford): it starts at the
 * ceiling, so with a healthy upstream it changes nothing. Requests whose
 * client left are not samples; neither are answers that were signals.
 *
 * A pure function of (events, now): no clock, no thread, no I/O; the caller
 * (adaptive.c) serialises the calls and applies the limit to admission.
 * Times are microseconds of any one monotonic clock.
 */
#ifndef SL_LIMIT_H
#define SL_LIMIT_H

#include <stdbool.h>
#include <stdint.h>

#define SL_LIMIT_DECREASE 0.9             /* multiplicative decrease */
#define SL_LIMIT_TOLERANCE 1.5            /* TTFB this many times its long-run average is a signal */
#define SL_LIMIT_MIN_WINDOW_US 10000      /* decisions at most every 10 ms, however fast the upstream */
#define SL_LIMIT_TTFB_MIN_SAMPLES 8       /* a window's TTFB is judged from this many answers */
#define SL_LIMIT_LONG_SAMPLES 200.0       /* the long-run TTFB average spans about this many answers */
#define SL_LIMIT_HOLD_WEIGHT (1.0 / 32.0) /* the median hold estimate follows the last ~32 samples */

typedef struct sl_limit {
	double min, max; /* the range: --min-concurrent-requests .. max_concurrent_requests */
	double limit;    /* in [min, max]; the integer part is applied */
	uint64_t window_start, window_end, last_cut; /* window_end: its length fixed when it opens */
	bool cut_ever;
	/* the decision window so far */
	bool w_signal, w_reached;
	uint32_t w_samples, w_ttfb_n;
	double w_ttfb_sum_us;
	/* what the window is judged against */
	double log2_hold; /* running average of log2(hold µs): its 2^ is the median of a lognormal hold */
	bool has_hold;
	double ttfb_long_us;  /* long-run average TTFB; 0 until the first judged window */
	uint64_t ttfb_long_n; /* answers it has seen: judged against only from SL_LIMIT_LONG_SAMPLES on */
	/* for tests and the note */
	uint64_t decisions, increases, cuts;
} sl_limit_t;

/* Starts at max (nothing learnt: the operator's ceiling), window at now. */
void sl_limit_init(sl_limit_t *l, uint32_t min, uint32_t max, uint64_t now_us);

/* A new range (SIGHUP): the limit is clamped into it. */
void sl_limit_set_range(sl_limit_t *l, uint32_t min, uint32_t max);

/* An overload signal from the upstream for a request (attempt) that
 * started at started_us. Returns the limit now. */
uint32_t sl_limit_on_signal(sl_limit_t *l, uint64_t now_us, uint64_t started_us);

/* A request ended with an answer that was no signal, its client still
 * there: it held its slot hold_us, and its answer's head came ttfb_us after
 * its attempt started (0: no head, e.g. a reset). Returns the limit now. */
uint32_t sl_limit_on_sample(sl_limit_t *l, uint64_t now_us, uint64_t hold_us, uint64_t ttfb_us);

/* The limit was reached: a request had to wait for a slot (or found the
 * queue full). Returns the limit now. */
uint32_t sl_limit_on_reached(sl_limit_t *l, uint64_t now_us);

/* The limit as applied: the integer part, within [min, max]. */
uint32_t sl_limit_value(const sl_limit_t *l);

/* The median hold time estimate in µs (0 before the first sample). */
uint64_t sl_limit_median_hold_us(const sl_limit_t *l);

#endif
