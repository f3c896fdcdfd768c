/* cluster.c — see cluster.h. */
#include "cluster.h"

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "metrics.h"
#include "worker.h"

extern const char sl_cluster_lua[]; /* src/cluster.lua, compiled in */

#define RECONNECT_MIN_MS 100
#define RECONNECT_MAX_MS 2000

static sl_log_limit_t redis_log_limit;

static uint64_t now_ms(const sl_cluster_t *c)
{
	return uv_now(c->loop);
}

/* ---- the URL ----------------------------------------------------------------- */

static char *dup_n(const char *s, size_t n)
{
	char *d = sl_malloc(n + 1);
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

int sl_cluster_parse_url(const char *url, char **host, int *port, char **user, char **password, int *db, char *err,
                         size_t errlen)
{
	*host = *user = *password = NULL;
	*port = 6379;
	*db = 0;
	const char *p = url;
	if (strncmp(p, "redis://", 8) != 0)
		return sl_errorf(-1, err, errlen,
		                 "--redis-url must look like redis://[:password@]host[:port][/db], got \"%.60s\"", url);
	p += 8;
	const char *at = strrchr(p, '@');
	if (at) {
		const char *colon = memchr(p, ':', (size_t)(at - p));
		if (!colon)
			return sl_errorf(-1, err, errlen,
			                 "--redis-url: the part before '@' must be :password or user:password");
		if (colon > p)
			*user = dup_n(p, (size_t)(colon - p));
		*password = dup_n(colon + 1, (size_t)(at - colon - 1));
		p = at + 1;
	}
	const char *end = p + strcspn(p, "/");
	const char *hs = p, *he;
	const char *port_at = NULL;
	if (*p == '[') {
		he = memchr(p, ']', (size_t)(end - p));
		if (!he)
			goto bad;
		hs = p + 1;
		if (he + 1 < end) {
			if (he[1] != ':')
				goto bad;
			port_at = he + 2;
		}
	} else {
		const char *colon = memchr(p, ':', (size_t)(end - p));
		he = colon ? colon : end;
		if (colon)
			port_at = colon + 1;
	}
	if (he == hs)
		goto bad;
	if (port_at) {
		char *stop;
		long v = strtol(port_at, &stop, 10);
		if (port_at == end || stop != end || v < 1 || v > 65535)
			goto bad;
		*port = (int)v;
	}
	if (*end == '/' && end[1] != '\0') {
		char *stop;
		long v = strtol(end + 1, &stop, 10);
		if (*stop != '\0' || v < 0 || v > 1000000)
			goto bad;
		*db = (int)v;
	}
	*host = dup_n(hs, (size_t)(he - hs));
	return 0;
bad:
	free(*user);
	free(*password);
	*user = *password = NULL;
	return sl_errorf(-1, err, errlen,
	                 "--redis-url must look like redis://[:password@]host[:port][/db], got \"%.60s\"", url);
}

/* ---- applying the controller's word ----------------------------------------- */

static void do_publish(sl_cluster_t *c, uint64_t now)
{
	atomic_store_explicit(&c->pub_state, (int)sl_lease_state(&c->lease, now), memory_order_relaxed);
	atomic_store_explicit(&c->pub_replicas, c->lease.replicas, memory_order_relaxed);
	atomic_store_explicit(&c->pub_lease, c->applied_limit, memory_order_relaxed);
	atomic_store_explicit(&c->pub_limit, c->lease.limit, memory_order_relaxed);
	atomic_store_explicit(&c->pub_changes, c->lease.changes, memory_order_relaxed);
	atomic_store_explicit(&c->pub_errors, c->lease.errors, memory_order_relaxed);
}

static void do_log_state(sl_cluster_t *c, sl_cluster_state_t from, sl_cluster_state_t to, uint32_t limit)
{
	switch (to) {
	case SL_CLUSTER_OK:
		sl_info("cluster: on a lease of %u of %u slots (%u replicas)%s", c->lease.held, c->lease.limit,
		        c->lease.replicas, from == SL_CLUSTER_STARTING ? "" : ": Redis answers again");
		break;
	case SL_CLUSTER_DEGRADED:
		sl_warn("cluster: Redis unreachable and the lease lapsed: static fallback, %u slots (%u / %u replicas "
		        "last seen)",
		        limit, c->lease.limit, c->lease.replicas ? c->lease.replicas : 1);
		break;
	case SL_CLUSTER_UNAVAILABLE:
		sl_warn("cluster: Redis unreachable and the lease lapsed: closed fallback, answering 503 "
		        "cluster_unavailable");
		break;
	case SL_CLUSTER_REACQUIRING:
		sl_warn("cluster: the lease lapsed (was this process paused?): asking again");
		break;
	case SL_CLUSTER_STARTING: break;
	}
}

static void do_apply(sl_cluster_t *c)
{
	uint64_t now = now_ms(c);
	sl_server_t *s = c->server;
	uint32_t limit = sl_lease_local_limit(&c->lease, now);
	sl_cluster_state_t state = sl_lease_state(&c->lease, now);
	if (limit != c->applied_limit) {
		c->applied_limit = limit;
		sl_admit_set_limits(&s->admit, limit, (uint32_t)sl_server_config(s)->max_queue_size);
	}
	/* after the limit: a fence lifted must not admit on the old limit */
	uint64_t fence =
	    sl_lease_state(&c->lease, now) == SL_CLUSTER_OK ? c->lease.valid_until - c->lease.ttl_ms / 4 : 0;
	if (fence != c->applied_fence) {
		c->applied_fence = fence;
		sl_admit_set_fence(&s->admit, fence * 1000000u);
	}
	if (state != c->applied_state) {
		do_log_state(c, c->applied_state, state, limit);
		c->applied_state = state;
		bool closed = state == SL_CLUSTER_UNAVAILABLE;
		atomic_store(&s->cluster_closed, closed);
		if (closed) {
			uint32_t n = sl_admit_reject_all(&s->admit, SL_REJECT_CLUSTER_UNAVAILABLE);
			if (n)
				sl_info("released %u queued requests with 503 cluster_unavailable", n);
		}
	}
	do_publish(c, now);
}

/* ---- Redis ---------------------------------------------------------------------- */

static void do_connect(sl_cluster_t *c);

static void do_redis_error(sl_cluster_t *c, const char *what)
{
	uint64_t held_back = 0;
	if (sl_log_limit_pass(&redis_log_limit, now_ms(c), &held_back))
		sl_warn("cluster: Redis %s:%d: %s%s", c->host, c->port, what, held_back ? " (and more since)" : "");
}

/* Drops the connection (failing whatever is in flight on it) and plans the
 * next one after a backoff. */
static void do_drop(sl_cluster_t *c)
{
	uv_timer_stop(&c->guard);
	redisAsyncContext *ac = c->ac;
	c->ac = NULL;
	c->connected = false;
	c->reconnect_backoff_ms = c->reconnect_backoff_ms ? c->reconnect_backoff_ms * 2 : RECONNECT_MIN_MS;
	if (c->reconnect_backoff_ms > RECONNECT_MAX_MS)
		c->reconnect_backoff_ms = RECONNECT_MAX_MS;
	c->reconnect_at = now_ms(c) + c->reconnect_backoff_ms;
	if (ac)
		redisAsyncFree(ac); /* calls the pending callbacks with no reply */
	if (c->lease.in_flight) {
		sl_lease_failed(&c->lease, now_ms(c));
		do_apply(c);
	}
}

static void on_guard(uv_timer_t *t)
{
	sl_cluster_t *c = t->data;
	do_redis_error(c, c->connected ? "no answer in time" : "cannot connect in time");
	do_drop(c);
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
	sl_cluster_t *c = privdata;
	redisReply *reply = r;
	if (!c->lease.in_flight || ac != c->ac)
		return; /* the connection is being dropped: do_drop accounts for it */
	if (!c->stopping)
		uv_timer_stop(&c->guard); /* (when stopping, it bounds the release that follows) */
	uint64_t now = now_ms(c);
	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 6) {
		do_redis_error(c, reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "an unexpected answer");
		sl_lease_failed(&c->lease, now);
		do_apply(c);
		return;
	}
	long long v[6];
	for (int i = 0; i < 6; i++) {
		if (reply->element[i]->type != REDIS_REPLY_INTEGER) {
			do_redis_error(c, "an unexpected answer");
			sl_lease_failed(&c->lease, now);
			do_apply(c);
			return;
		}
		v[i] = reply->element[i]->integer;
	}
	c->reconnect_backoff_ms = 0;
	c->lease.epoch = (uint64_t)v[5];
	sl_lease_granted(&c->lease, now, (uint32_t)v[0], (uint32_t)v[1], (uint32_t)v[2], v[4] != 0, (uint64_t)v[3]);
	do_apply(c);
}

static void do_send(sl_cluster_t *c, const sl_lease_request_t *req)
{
	char floor[16], demand[16], ttl[24], limit[16], epoch[24], keys[2][340];
	snprintf(epoch, sizeof epoch, "%llu", (unsigned long long)c->lease.epoch);
	snprintf(keys[0], sizeof keys[0], "%.300s:epoch", c->key);
	snprintf(keys[1], sizeof keys[1], "%.300s:fence", c->key);
	snprintf(floor, sizeof floor, "%u", req->floor);
	snprintf(demand, sizeof demand, "%u", req->demand);
	snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)c->lease.ttl_ms);
	snprintf(limit, sizeof limit, "%u", c->lease.limit);
	const char *argv[] = {"EVAL",
	                      sl_cluster_lua,
	                      "3",
	                      c->key,
	                      keys[0],
	                      keys[1],
	                      c->id,
	                      floor,
	                      demand,
	                      ttl,
	                      limit,
	                      epoch,
	                      req->on_static ? "1" : "0"};
	if (redisAsyncCommandArgv(c->ac, on_reply, c, 13, argv, NULL) != REDIS_OK) {
		sl_lease_failed(&c->lease, now_ms(c));
		do_drop(c);
		return;
	}
	atomic_fetch_add_explicit(&c->pub_commands, 1, memory_order_relaxed);
	sl_lease_sent(&c->lease, now_ms(c), req);
	uv_timer_start(&c->guard, on_guard, c->command_timeout_ms, 0);
}

static void on_connected(const redisAsyncContext *ac, int status)
{
	sl_cluster_t *c = ac->data;
	if (ac != c->ac)
		return;
	if (status != REDIS_OK) {
		/* hiredis frees the context after this callback */
		c->ac = NULL;
		do_redis_error(c, ac->errstr[0] ? ac->errstr : "cannot connect");
		do_drop(c);
		return;
	}
	c->connected = true;
	if (!c->lease.in_flight)
		uv_timer_stop(&c->guard);
}

static void on_disconnected(const redisAsyncContext *ac, int status)
{
	sl_cluster_t *c = ac->data;
	if (ac != c->ac)
		return;
	/* hiredis frees the context after this callback */
	c->ac = NULL;
	if (!c->stopping)
		do_redis_error(c, ac->errstr[0] ? ac->errstr : "connection closed");
	do_drop(c);
	if (c->stopping && !uv_is_closing((uv_handle_t *)&c->guard))
		uv_close((uv_handle_t *)&c->guard, NULL); /* the release is done: the loop can end */
}

static void do_open(sl_cluster_t *c, const char *ip)
{
	redisAsyncContext *ac = redisAsyncConnect(ip, c->port);
	if (ac == NULL || ac->err) {
		do_redis_error(c, ac ? ac->errstr : "out of memory");
		if (ac)
			redisAsyncFree(ac);
		do_drop(c);
		return;
	}
	ac->data = c;
	if (redisLibuvAttach(ac, c->loop) != REDIS_OK) {
		redisAsyncFree(ac);
		do_drop(c);
		return;
	}
	c->ac = ac;
	redisAsyncSetConnectCallback(ac, on_connected);
	redisAsyncSetDisconnectCallback(ac, on_disconnected);
	/* queued until connected, sent before anything else */
	if (c->password) {
		if (c->user)
			redisAsyncCommand(ac, NULL, NULL, "AUTH %s %s", c->user, c->password);
		else
			redisAsyncCommand(ac, NULL, NULL, "AUTH %s", c->password);
	}
	if (c->db)
		redisAsyncCommand(ac, NULL, NULL, "SELECT %d", c->db);
	uv_timer_start(&c->guard, on_guard, c->command_timeout_ms, 0);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	sl_cluster_t *c = req->data;
	c->resolving = false;
	if (c->stopping) {
		uv_freeaddrinfo(res);
		return;
	}
	char ip[INET6_ADDRSTRLEN] = "";
	if (status == 0 && res) {
		if (res->ai_family == AF_INET6)
			uv_ip6_name((struct sockaddr_in6 *)res->ai_addr, ip, sizeof ip);
		else
			uv_ip4_name((struct sockaddr_in *)res->ai_addr, ip, sizeof ip);
	}
	uv_freeaddrinfo(res);
	if (!ip[0]) {
		do_redis_error(c, status ? uv_strerror(status) : "no address");
		do_drop(c);
		return;
	}
	do_open(c, ip);
}

static void do_connect(sl_cluster_t *c)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	c->gai.data = c;
	c->resolving = true;
	if (uv_getaddrinfo(c->loop, &c->gai, on_resolved, c->host, NULL, &hints) != 0) {
		c->resolving = false;
		do_drop(c);
	}
}

/* ---- the clock ------------------------------------------------------------------- */

static void on_tick(uv_timer_t *t)
{
	sl_cluster_t *c = t->data;
	uint64_t now = now_ms(c);
	if (!c->ac && !c->resolving && now >= c->reconnect_at)
		do_connect(c);
	sl_admit_stats_t st;
	sl_admit_get_stats(&c->server->admit, &st);
	sl_lease_request_t req;
	if (sl_lease_tick(&c->lease, now, st.active, st.queued, &req)) {
		if (c->connected)
			do_send(c, &req);
		else if (!c->ac && !c->resolving)
			sl_lease_failed(&c->lease, now); /* Redis cannot be asked: that is an answer too */
	}
	do_apply(c);
}

int sl_cluster_start(sl_cluster_t *c, uv_loop_t *loop, sl_server_t *server, char *err, size_t errlen)
{
	const sl_config_t *cfg = server->cfg;
	memset(c, 0, sizeof *c);
	c->loop = loop;
	c->server = server;
	if (sl_cluster_parse_url(cfg->redis_url, &c->host, &c->port, &c->user, &c->password, &c->db, err, errlen) < 0)
		return -1;
	if (cfg->cluster_key)
		snprintf(c->key, sizeof c->key, "sluice:{%s}:leases", cfg->cluster_key);
	else
		snprintf(c->key, sizeof c->key, "sluice:{%s:%d}:leases", cfg->target_host, cfg->target_port);
	char host[64] = "sluice";
	gethostname(host, sizeof host - 1);
	snprintf(c->id, sizeof c->id, "%s:%d:%08x", host, (int)getpid(), (unsigned)(uv_hrtime() * 2654435761u));
	uint64_t ttl = sl_config_ms(cfg->cluster_lease_ttl);
	sl_lease_init(&c->lease, (uint32_t)cfg->max_concurrent_requests, ttl,
	              cfg->cluster_fallback == SL_FALLBACK_CLOSED);
	c->command_timeout_ms = ttl / 8 < 100 ? 100 : ttl / 8 > 1000 ? 1000 : ttl / 8;
	c->applied_limit = 0;
	c->applied_state = SL_CLUSTER_STARTING;
	sl_admit_set_limits(&server->admit, 0, (uint32_t)cfg->max_queue_size); /* until Redis answers */
	uv_timer_init(loop, &c->tick);
	uv_timer_init(loop, &c->guard);
	c->tick.data = c->guard.data = c;
	do_publish(c, now_ms(c));
	do_connect(c);
	uv_timer_start(&c->tick, on_tick, SL_CLUSTER_TICK_MS, SL_CLUSTER_TICK_MS);
	sl_info("cluster: %u slots shared through Redis %s:%d as %s (lease TTL %g s, fallback %s)", c->lease.limit,
	        c->host, c->port, c->key, cfg->cluster_lease_ttl,
	        cfg->cluster_fallback == SL_FALLBACK_CLOSED ? "closed" : "static");
	return 0;
}

void sl_cluster_set_limit(sl_cluster_t *c, uint32_t limit)
{
	sl_lease_set_limit(&c->lease, limit);
}

static void on_released(redisAsyncContext *ac, void *r, void *privdata)
{
	sl_cluster_t *c = privdata;
	if (c->ac == ac)
		redisAsyncDisconnect(ac); /* flushes, then on_disconnected */
}

static void on_stop_guard(uv_timer_t *t)
{
	sl_cluster_t *c = t->data;
	redisAsyncContext *ac = c->ac;
	c->ac = NULL;
	if (ac)
		redisAsyncFree(ac);
	uv_close((uv_handle_t *)&c->guard, NULL);
}

void sl_cluster_stop(sl_cluster_t *c)
{
	c->stopping = true;
	uv_timer_stop(&c->tick);
	uv_close((uv_handle_t *)&c->tick, NULL);
	uv_timer_stop(&c->guard);
	if (c->resolving)
		uv_cancel((uv_req_t *)&c->gai);
	if (c->ac && c->connected) {
		/* our slots go back now rather than after the TTL */
		redisAsyncCommand(c->ac, on_released, c, "HDEL %s %s", c->key, c->id);
		uv_timer_start(&c->guard, on_stop_guard, c->command_timeout_ms, 0);
		return;
	}
	on_stop_guard(&c->guard);
}

void sl_cluster_get_stats(const sl_cluster_t *c, sl_cluster_stats_t *out)
{
	out->state = (sl_cluster_state_t)atomic_load_explicit(&c->pub_state, memory_order_relaxed);
	out->replicas = atomic_load_explicit(&c->pub_replicas, memory_order_relaxed);
	out->lease = atomic_load_explicit(&c->pub_lease, memory_order_relaxed);
	out->limit = atomic_load_explicit(&c->pub_limit, memory_order_relaxed);
	out->lease_changes = atomic_load_explicit(&c->pub_changes, memory_order_relaxed);
	out->redis_errors = atomic_load_explicit(&c->pub_errors, memory_order_relaxed);
	out->redis_commands = atomic_load_explicit(&c->pub_commands, memory_order_relaxed);
}
