/* lease.c — see lease.h. Every function is pure over (the struct, now). */
#include "lease.h"

const char *sl_cluster_state_name(sl_cluster_state_t s)
{
	static const char *const names[] = {"starting", "ok", "reacquiring", "degraded", "unavailable"};
	return names[s];
}

void sl_lease_init(sl_lease_t *l, uint32_t limit, uint64_t ttl_ms, bool closed)
{
	*l = (sl_lease_t){.limit = limit, .ttl_ms = ttl_ms, .closed = closed, .fair = limit};
}

void sl_lease_set_limit(sl_lease_t *l, uint32_t limit)
{
	l->limit = limit;
}

static uint32_t min32(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

static uint32_t max32(uint32_t a, uint32_t b)
{
	return a > b ? a : b;
}

/* The lease is trusted until a quarter of the TTL before it lapses. */
static bool trusted(const sl_lease_t *l, uint64_t now)
{
	return l->valid_until != 0 && now + l->ttl_ms / 4 < l->valid_until;
}

/* The lease as far as we may use it: a request in flight, or one whose
 * answer was lost, may have shrunk it to its floor. */
static uint32_t usable(const sl_lease_t *l)
{
	return (l->in_flight || l->unconfirmed) ? min32(l->held, l->cap) : l->held;
}

/* Slots worth asking for at demand d: half again as many, so a rising load
 * does not need a round trip per request. */
static uint32_t with_headroom(const sl_lease_t *l, uint32_t d)
{
	uint64_t want = d == 0 ? 0 : (uint64_t)d + (d / 2 > 0 ? d / 2 : 1);
	return want > l->limit ? l->limit : (uint32_t)want;
}

uint32_t sl_lease_local_limit(const sl_lease_t *l, uint64_t now)
{
	if (trusted(l, now)) {
		uint32_t n = usable(l);
		/* over our fair share while others wait: admit no more than it */
		return l->contended ? min32(n, l->fair) : n;
	}
	if (!l->redis_down)
		return 0; /* starting, or the lease lapsed while Redis answers: ask first */
	if (l->closed)
		return 0;
	return l->replicas ? max32(1, l->limit / l->replicas) : 1;
}

sl_cluster_state_t sl_lease_state(const sl_lease_t *l, uint64_t now)
{
	if (trusted(l, now))
		return SL_CLUSTER_OK;
	if (l->redis_down)
		return l->closed ? SL_CLUSTER_UNAVAILABLE : SL_CLUSTER_DEGRADED;
	return l->ever_answered ? SL_CLUSTER_REACQUIRING : SL_CLUSTER_STARTING;
}

bool sl_lease_tick(sl_lease_t *l, uint64_t now, uint32_t active, uint32_t queued, sl_lease_request_t *req)
{
	uint32_t demand = active + queued;
	if (demand > l->peak)
		l->peak = demand;
	if (l->in_flight || now < l->next_try)
		return false;
	uint32_t want = with_headroom(l, l->peak);
	uint32_t held = usable(l), local = sl_lease_local_limit(l, now);
	uint64_t since = now - l->sent_at;
	bool ok = trusted(l, now), send = false;
	if (!ok) {
		send = true; /* no lease to use: ask */
	} else if (since >= l->ttl_ms / 3 || l->redis_down) {
		send = true; /* heartbeat: renew; or try again (after the backoff) until Redis answers */
	} else if (queued > 0 && local == held && active >= held && held < l->limit) {
		/* starving: every leased slot is busy */
		send = since >= (l->contended && held >= l->fair ? SL_LEASE_FAIR_GAP_MS : SL_LEASE_MIN_GAP_MS);
	} else if (l->contended && held > l->fair && active < held) {
		send = since >= SL_LEASE_OVERFAIR_GAP_MS; /* over the fair share: give back what came free */
	} else if (held > l->limit / (l->replicas > 1 ? l->replicas : 2)) {
		/* more than an even split: learn soon whether others want slots */
		send = since >= SL_LEASE_FAIR_GAP_MS;
	}
	if (ok && held > with_headroom(l, demand)) { /* spare slots, by the demand of now */
		if (l->spare_since == 0) {
			l->spare_since = now;
			l->spare_peak = demand;
		} else if (demand > l->spare_peak) {
			l->spare_peak = demand;
		}
		uint64_t after = l->contended ? SL_LEASE_SPARE_BUSY_MS : SL_LEASE_SPARE_IDLE_MS;
		if (now - l->spare_since >= after && since >= SL_LEASE_MIN_GAP_MS) {
			send = true;
			want = with_headroom(l, l->spare_peak); /* the demand of the spare period, not of before */
		}
	} else {
		l->spare_since = 0;
	}
	if (!send)
		return false;
	uint32_t target = l->contended ? min32(want, l->fair) : want;
	req->demand = want;
	req->on_static = !ok && l->redis_down && !l->closed;
	/* keep what we use and want (never more than we hold); without a
	 * lease, claim exactly what is in use */
	req->floor = ok ? max32(active, min32(held, target)) : active;
	return true;
}

void sl_lease_sent(sl_lease_t *l, uint64_t now, const sl_lease_request_t *req)
{
	l->in_flight = true;
	l->cap = req->floor;
	l->sent_at = now;
	l->peak = 0;
}

void sl_lease_granted(sl_lease_t *l, uint64_t now, uint32_t lease, uint32_t fair, uint32_t replicas, bool contended,
                      uint64_t ttl_ms)
{
	(void)now;
	if (lease != l->held)
		l->changes++;
	l->held = lease;
	l->fair = fair;
	l->replicas = replicas;
	l->contended = contended;
	/* counted from the send: Redis's expiry is later than that */
	l->valid_until = l->sent_at + ttl_ms;
	l->in_flight = l->unconfirmed = l->redis_down = false;
	l->ever_answered = true;
	l->backoff_ms = 0;
	l->next_try = 0;
	l->spare_since = 0;
}

void sl_lease_failed(sl_lease_t *l, uint64_t now)
{
	l->in_flight = false;
	l->unconfirmed = true; /* Redis may have recorded our floor */
	l->redis_down = true;
	l->errors++;
	l->backoff_ms =
	    l->backoff_ms == 0 ? SL_LEASE_BACKOFF_MIN_MS : min32(2 * l->backoff_ms, SL_LEASE_BACKOFF_MAX_MS);
	l->next_try = now + l->backoff_ms;
}
