/* retry.c — see retry.h.
 *
 * Jitter: full jitter, delay = uniform(0, min(cap, base * 2^n)). When an
 * upstream fails, every client retries at once; spreading the retries over
 * the whole window (rather than keeping half of it fixed, as "equal jitter"
 * does) breaks that synchronisation best and, in AWS's published comparison,
 * does the least total work while finishing as soon as the alternatives.
 * The SPEC's formula is the cap of each delay.
 */
#include "retry.h"

#include <math.h>

#include "http1.h"

bool sl_retry_is_idempotent(int method)
{
	switch (method) {
	case HTTP_GET:
	case HTTP_HEAD:
	case HTTP_OPTIONS:
	case HTTP_PUT:
	case HTTP_DELETE:
	case HTTP_TRACE: return true;
	default: return false;
	}
}

bool sl_retry_is_upstream_failure(sl_up_error_t kind, int status)
{
	if (kind == SL_UP_ERROR_STATUS)
		return status == 502 || status == 503 || status == 504;
	return true;
}

uint64_t sl_retry_backoff_ms(const sl_config_t *cfg, int n, double rand01)
{
	double cap = cfg->retry_backoff_factor * ldexp(1.0, n < 30 ? n : 30);
	if (cap > cfg->retry_backoff_max)
		cap = cfg->retry_backoff_max;
	return (uint64_t)llround(cap * rand01 * 1000.0);
}

/* Whether the request certainly did not reach the upstream. */
static bool never_delivered(const sl_attempt_t *a)
{
	switch (a->kind) {
	case SL_UP_RESOLVE:
	case SL_UP_CONNECT:
	case SL_UP_CONNECT_TIMEOUT: return true;
	default: return !a->request_written;
	}
}

static int answer_status(const sl_attempt_t *a)
{
	if (a->kind == SL_UP_ERROR_STATUS)
		return a->status;
	return sl_up_error_is_timeout(a->kind) ? 504 : 502;
}

sl_retry_verdict_t sl_retry_decide(const sl_config_t *cfg, const sl_attempt_t *a, double rand01)
{
	sl_retry_verdict_t v = {.action = SL_RETRY_ANSWER, .status = answer_status(a)};
	if (a->response_relayed || !sl_retry_is_upstream_failure(a->kind, a->status))
		return v;
	/* A body that was sent and not kept cannot be sent again, whatever
	 * failed; otherwise a request that never arrived is always safe to
	 * repeat, and one that may have arrived only if its method allows. */
	if (!a->body_replayable || !(never_delivered(a) || a->idempotent))
		return v;
	if (a->kind == SL_UP_READ_TIMEOUT && !cfg->retry_on_timeout)
		return v;
	if (a->time_left_ms <= 0)
		return v;
	bool stale = a->reused && !a->request_sent && (a->kind == SL_UP_CLOSED || a->kind == SL_UP_WRITE);
	if (stale && !a->stale_retry_used) {
		v.action = SL_RETRY_NOW;
		return v;
	}
	if (a->retries_done >= cfg->max_retries)
		return v;
	uint64_t delay = sl_retry_backoff_ms(cfg, a->retries_done, rand01);
	if ((int64_t)delay >= a->time_left_ms)
		return v; /* the next attempt could not even start in time */
	v.action = SL_RETRY_BACKOFF;
	v.delay_ms = delay;
	return v;
}
