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

#include <ctype.h>
#include <math.h>
#include <string.h>
#include <time.h>

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
	if (a->retry_after_ms > delay) { /* the upstream said when: not sooner */
		if (a->retry_after_ms > sl_config_ms(cfg->read_timeout))
			return v;
		delay = a->retry_after_ms;
	}
	if ((int64_t)delay >= a->time_left_ms)
		return v; /* the next attempt could not even start in time */
	v.action = SL_RETRY_BACKOFF;
	v.delay_ms = delay;
	return v;
}

/* Retry-After is a wait, never a schedule: a day is beyond any deadline. */
#define RETRY_AFTER_MAX_S 86400

bool sl_retry_after_parse(const char *v, size_t len, int64_t now_unix, uint64_t *ms)
{
	while (len && (v[len - 1] == ' ' || v[len - 1] == '\t'))
		len--;
	while (len && (*v == ' ' || *v == '\t'))
		v++, len--;
	if (len == 0 || len > 64)
		return false;
	if (isdigit((unsigned char)v[0])) { /* delta-seconds = 1*DIGIT */
		uint64_t s = 0;
		for (size_t i = 0; i < len; i++) {
			if (!isdigit((unsigned char)v[i]))
				return false;
			if (s < RETRY_AFTER_MAX_S)
				s = s * 10 + (uint64_t)(v[i] - '0');
		}
		*ms = (s < RETRY_AFTER_MAX_S ? s : RETRY_AFTER_MAX_S) * 1000;
		return true;
	}
	/* IMF-fixdate, then the obsolete RFC 850 and asctime forms (§5.6.7:
	 * a recipient accepts all three). strptime reads names in the C
	 * locale, which is the only one sluice runs in. */
	static const char *const formats[] = {"%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT",
	                                      "%a %b %e %H:%M:%S %Y"};
	char buf[65];
	memcpy(buf, v, len);
	buf[len] = '\0';
	for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
		struct tm tm;
		memset(&tm, 0, sizeof tm);
		const char *end = strptime(buf, formats[i], &tm);
		if (end == NULL || *end != '\0')
			continue;
		int64_t at = (int64_t)timegm(&tm);
		int64_t s = at - now_unix;
		*ms = s <= 0 ? 0 : (uint64_t)(s < RETRY_AFTER_MAX_S ? s : RETRY_AFTER_MAX_S) * 1000;
		return true;
	}
	return false;
}
