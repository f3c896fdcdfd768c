/* retry.h — the one failure funnel (SPEC §5): after a failed attempt, decide
 * whether to try again (and after how long) or which status to answer.
 *
 * Pure functions of the attempt's facts, so every rule is unit-tested here
 * and the client only acts on the verdict. The safety rule is absolute:
 * nothing the client sent once is delivered to the upstream twice.
 *   - Never retry once any response byte reached the client.
 *   - Idempotent methods (GET HEAD OPTIONS PUT DELETE TRACE) are retried
 *     after any failure, if the request body can be replayed.
 *   - Other methods (POST, PATCH, ...) only when the request certainly did
 *     not reach the upstream: the connect failed, or nothing was written.
 * A pooled connection that failed before the upstream could have read the
 * request (the write failed, or EOF or a reset came while request bytes were
 * still unsent) was stale: closed by the upstream while idle. It is replaced
 * once for free (no backoff, not counted against max_retries or in
 * requests.retries). A failure after the whole request went out is an
 * ordinary one, retried within max_retries if at all: the upstream may have
 * worked on it.
 * A read timeout is not retried unless --retry-on-timeout: against an
 * upstream that is already too slow, a second attempt doubles its load. No
 * attempt starts, and no backoff waits, past the request's deadline
 * (--request-timeout).
 * An upstream's Retry-After on a 503 (RFC 9110 §10.2.3) is the floor of the
 * backoff: sluice never asks again sooner than the upstream said. A floor
 * past the request's deadline, or longer than read_timeout (more patience
 * than sluice gives any one answer), is not waited for: the 503 is relayed,
 * Retry-After and all, for the client to decide.
 * Whether a retry may start at all under load is the retry budget's call
 * (budget.h), asked only once this funnel says "again after a backoff".
 */
#ifndef SL_RETRY_H
#define SL_RETRY_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "upstream.h"

typedef struct sl_attempt {
	sl_up_error_t kind;      /* what failed */
	int status;              /* the upstream's status, for SL_UP_ERROR_STATUS */
	bool reused;             /* the connection came from the pool */
	bool request_written;    /* some request byte may have reached the upstream */
	bool request_sent;       /* the whole request was handed to the kernel */
	bool response_relayed;   /* some response byte reached the client */
	bool idempotent;         /* the method may be repeated */
	bool body_replayable;    /* every request body byte consumed so far is still held */
	bool stale_retry_used;   /* the free stale-connection retry was taken */
	int retries_done;        /* retries already made (backoff attempts) */
	int64_t time_left_ms;    /* until the request's deadline; INT64_MAX without one */
	uint64_t retry_after_ms; /* the upstream's Retry-After on a 503, as ms from now; 0: none */
} sl_attempt_t;

typedef enum {
	SL_RETRY_NOW,     /* stale pooled connection: again at once, free */
	SL_RETRY_BACKOFF, /* again after delay_ms (counts as a retry) */
	SL_RETRY_ANSWER   /* no more attempts: answer `status` */
} sl_retry_action_t;

typedef struct sl_retry_verdict {
	sl_retry_action_t action;
	uint64_t delay_ms;
	int status; /* for ANSWER: 502, 504, or the upstream's own 5xx */
} sl_retry_verdict_t;

bool sl_retry_is_idempotent(int method);

/* Whether a failure of this kind (or status) counts against the upstream:
 * for retries and the circuit breaker. */
bool sl_retry_is_upstream_failure(sl_up_error_t kind, int status);

/* The decision. rand01 is a uniform random number in [0, 1) for jitter. */
sl_retry_verdict_t sl_retry_decide(const sl_config_t *cfg, const sl_attempt_t *a, double rand01);

/* Full jitter (see retry.c): uniform in [0, min(max, factor * 2^n)] seconds,
 * as milliseconds. n counts retries from 0. */
uint64_t sl_retry_backoff_ms(const sl_config_t *cfg, int n, double rand01);

/* Parses a Retry-After value (RFC 9110 §10.2.3): delta-seconds, or an
 * HTTP-date in any of its three formats (§5.6.7), read against now_unix
 * (seconds since the epoch, the wall clock: the only clock a date can be
 * compared with). Returns true with *ms set (0 for a date already past;
 * capped at one day), false when the value is neither. */
bool sl_retry_after_parse(const char *v, size_t len, int64_t now_unix, uint64_t *ms);

#endif
