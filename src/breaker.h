/* breaker.h — the circuit breaker (SPEC §5), one for the process.
 *
 *   closed    requests flow; circuit_breaker_threshold consecutive failed
 *             requests (counted after their retries) open it
 *   open      every request is answered 503 circuit_open at once, without
 *             touching the upstream, for circuit_breaker_timeout
 *   half_open one probe request goes through, the rest still get 503; the
 *             probe's success closes the breaker, its failure reopens it
 *
 * The closed state is read without the lock (an atomic load), so a healthy
 * upstream costs the hot path nothing; transitions take the lock. now_ms is
 * the caller's loop time: workers' loop times differ by milliseconds either
 * way, so the breaker compares times only as signed differences (the clock
 * rule of deadline.h).
 */
#ifndef SL_BREAKER_H
#define SL_BREAKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum { SL_BREAKER_CLOSED, SL_BREAKER_OPEN, SL_BREAKER_HALF_OPEN } sl_breaker_state_t;

typedef enum {
	SL_BREAKER_ALLOW, /* go ahead */
	SL_BREAKER_PROBE, /* go ahead as the half-open probe: report its outcome */
	SL_BREAKER_REJECT /* answer 503 circuit_open */
} sl_breaker_verdict_t;

typedef struct sl_breaker {
	pthread_mutex_t lock;
	int state;                     /* sl_breaker_state_t; atomic */
	uint32_t consecutive_failures; /* atomic */
	uint32_t threshold;
	uint64_t timeout_ms;
	uint64_t opened_at_ms; /* when it last opened */
	uint64_t opened_total; /* atomic */
	bool probe_in_flight;
} sl_breaker_t;

void sl_breaker_init(sl_breaker_t *b, uint32_t threshold, double timeout_s);
void sl_breaker_dispose(sl_breaker_t *b);
void sl_breaker_configure(sl_breaker_t *b, uint32_t threshold, double timeout_s);

/* May a new request go to the upstream? A PROBE verdict must be settled:
 * by sl_breaker_record(probe = true) or sl_breaker_abandon_probe(). */
sl_breaker_verdict_t sl_breaker_allow(sl_breaker_t *b, uint64_t now_ms);

/* A request's final outcome towards the upstream (after its retries).
 * Returns true when this failure opened the breaker: the caller then
 * rejects the queued requests. */
bool sl_breaker_record(sl_breaker_t *b, bool success, bool probe, uint64_t now_ms);

/* A probe ended with no verdict (refused by admission, its client left):
 * let another probe go. */
void sl_breaker_abandon_probe(sl_breaker_t *b);

/* The state as a reader should see it at now_ms: an open breaker whose
 * timeout has passed reads half_open (the next request is the probe), even
 * if no request has come to make it so. */
sl_breaker_state_t sl_breaker_state(const sl_breaker_t *b, uint64_t now_ms);
const char *sl_breaker_state_name(sl_breaker_state_t s);
uint32_t sl_breaker_failures(const sl_breaker_t *b);
uint64_t sl_breaker_opened_total(const sl_breaker_t *b);

/* Seconds until a probe may go (for Retry-After), at least 1. */
uint32_t sl_breaker_retry_after(sl_breaker_t *b, uint64_t now_ms);

#endif
