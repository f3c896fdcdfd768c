/* budget.h — the retry budget: how many retries may be under way at once,
 * whatever each request's own max_retries allows (SPEC §2, issue 15).
 *
 * Two rules, both of which must allow a retry:
 *   - Envoy's retry_budget: retries in progress stay fewer than
 *     max(retry_budget_min, retry_budget_percent % of active + queued
 *     requests). It scales with the load and bounds the extra load a
 *     failing upstream gets to a fraction of the real one.
 *   - gRPC's retry throttling (A6): a bucket of 10 tokens; a failed attempt
 *     takes one, an answered one gives 0.1 back, and no retry starts while
 *     the bucket holds half or less. It judges the upstream by the outcome
 *     of attempts, whatever their duration: in a storm of fast failures
 *     the percent rule alone still lets a retry follow each of them, the
 *     bucket stops them after five.
 * A request counts as retrying from its first retry until it ends (its
 * slot stays held during the backoff: a retry takes a slot like any
 * request). A refused retry answers with the failure it had.
 *
 * Shared by every worker: the counters are atomics (a compare-and-swap per
 * retry, and per answered attempt only while the bucket is not full, so a
 * healthy upstream costs one relaxed load per request). The rules
 * themselves are pure functions, unit-tested without threads.
 */
#ifndef SL_BUDGET_H
#define SL_BUDGET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define SL_BUDGET_TOKENS_MILLI 10000 /* gRPC's max_tokens, 10, in thousandths */
#define SL_BUDGET_RATIO_MILLI 100    /* gRPC's token_ratio, 0.1: given back per answered attempt */
#define SL_BUDGET_FAILURE_MILLI 1000 /* taken per failed attempt */

typedef struct sl_budget {
	atomic_int retrying;     /* requests with a retry under way, all workers */
	atomic_int milli_tokens; /* the bucket, in thousandths of a token */
} sl_budget_t;

/* Retries that may be under way with `requests` active + queued:
 * max(min, percent % of requests), rounded down. */
uint32_t sl_budget_allowance(uint32_t requests, uint32_t percent, uint32_t min);

/* The bucket after one attempt's outcome: a failure takes a token (never
 * below 0), an answer gives 0.1 back (never above 10). In thousandths. */
int sl_budget_bucket_step(int milli_tokens, bool failed);

/* Whether the bucket lets a retry start: more than half of it is left. */
bool sl_budget_bucket_allows(int milli_tokens);

/* A full bucket, nobody retrying. */
void sl_budget_init(sl_budget_t *b);

/* An attempt's outcome (any thread): failed = an upstream failure of
 * SPEC §5 (sl_retry_is_upstream_failure), not a stale pooled connection. */
void sl_budget_record(sl_budget_t *b, bool failed);

/* Asks to start a retry (any thread). `retrying`: the request is already
 * counted in progress (a second retry of the same request asks the bucket
 * only). requests: active + queued now. Returns true when the retry may
 * start; a request newly counted must call sl_budget_retry_done once it
 * ends. */
bool sl_budget_try_retry(sl_budget_t *b, bool retrying, uint32_t requests, uint32_t percent, uint32_t min);

/* Whether the bucket stops every retry now (any thread): lets a caller
 * skip gathering what sl_budget_try_retry would need. */
bool sl_budget_throttled(sl_budget_t *b);

/* A request counted by sl_budget_try_retry ended. */
void sl_budget_retry_done(sl_budget_t *b);

/* Retries under way and tokens left, for the metrics (relaxed reads). */
uint32_t sl_budget_retrying(sl_budget_t *b);
double sl_budget_tokens(sl_budget_t *b);

#endif
