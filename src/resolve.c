/* resolve.c — see resolve.h. */
#include "resolve.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"

static void do_lookup(sl_resolver_t *r);

static void do_wake_waiters(sl_resolver_t *r, int status)
{
	while (!sl_list_empty(&r->waiters)) {
		sl_resolve_waiter_t *w = sl_list_entry(r->waiters.next, sl_resolve_waiter_t, link);
		sl_list_remove(&w->link);
		w->cb(w, status);
	}
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	sl_resolver_t *r = req->data;
	r->in_flight = false;
	if (status == 0) {
		int n = 0;
		for (struct addrinfo *ai = res; ai && n < SL_RESOLVE_MAX; ai = ai->ai_next) {
			if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
				continue;
			memcpy(&r->addrs[n++], ai->ai_addr, ai->ai_addrlen);
		}
		if (n > 0)
			r->naddrs = n;
		else
			status = UV_EAI_NODATA;
	}
	uv_freeaddrinfo(res);
	if (r->closing) {
		do_wake_waiters(r, UV_ECANCELED);
		return;
	}
	if (status != 0)
		sl_warn("cannot resolve upstream %s: %s%s", r->host, uv_strerror(status),
		        r->naddrs ? " (keeping the previous addresses)" : "");
	r->last_status = status;
	do_wake_waiters(r, r->naddrs ? 0 : status);
}

static void do_lookup(sl_resolver_t *r)
{
	if (r->in_flight || r->numeric || r->closing)
		return;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	r->last_lookup = uv_now(r->loop);
	int err = uv_getaddrinfo(r->loop, &r->req, on_resolved, r->host, r->port, &hints);
	if (err) {
		r->last_status = err;
		do_wake_waiters(r, r->naddrs ? 0 : err);
		return;
	}
	r->in_flight = true;
}

static void on_refresh_timer(uv_timer_t *t)
{
	do_lookup(t->data);
}

int sl_resolver_init(sl_resolver_t *r, uv_loop_t *loop, const char *host, int port, uint64_t refresh_ms)
{
	memset(r, 0, sizeof *r);
	r->loop = loop;
	r->host = sl_strdup(host);
	snprintf(r->port, sizeof r->port, "%d", port);
	r->refresh_ms = refresh_ms;
	r->req.data = r;
	sl_list_init(&r->waiters);
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&r->addrs[0];
	struct sockaddr_in *a4 = (struct sockaddr_in *)&r->addrs[0];
	if (uv_ip4_addr(host, port, a4) == 0 || uv_ip6_addr(host, port, a6) == 0) {
		r->numeric = true;
		r->naddrs = 1;
	}
	uv_timer_init(loop, &r->timer);
	r->timer.data = r;
	if (!r->numeric) {
		uv_timer_start(&r->timer, on_refresh_timer, refresh_ms, refresh_ms);
		do_lookup(r);
	}
	return 0;
}

int sl_resolver_status(const sl_resolver_t *r)
{
	if (r->naddrs == 0)
		return r->in_flight ? UV_EAGAIN : (r->last_status ? r->last_status : UV_EAI_NONAME);
	return 0;
}

unsigned sl_resolver_first(sl_resolver_t *r)
{
	return r->next++;
}

int sl_resolver_pick(const sl_resolver_t *r, unsigned i, struct sockaddr_storage *out)
{
	int status = sl_resolver_status(r);
	if (status == 0)
		*out = r->addrs[i % (unsigned)r->naddrs];
	return status;
}

void sl_resolver_wait(sl_resolver_t *r, sl_resolve_waiter_t *w, sl_resolve_cb cb)
{
	w->cb = cb;
	sl_list_insert_tail(&r->waiters, &w->link);
	do_lookup(r);
}

void sl_resolver_cancel(sl_resolve_waiter_t *w)
{
	sl_list_remove(&w->link);
}

void sl_resolver_refresh(sl_resolver_t *r)
{
	if (!r->numeric && uv_now(r->loop) - r->last_lookup >= 1000)
		do_lookup(r);
}

void sl_resolver_close(sl_resolver_t *r)
{
	r->closing = true;
	if (r->in_flight)
		uv_cancel((uv_req_t *)&r->req);
	uv_close((uv_handle_t *)&r->timer, NULL);
	do_wake_waiters(r, UV_ECANCELED);
	free(r->host);
	r->host = NULL;
}

const char *sl_addr_format(const struct sockaddr *sa, char *out)
{
	char ip[INET6_ADDRSTRLEN];
	if (sa && sa->sa_family == AF_INET && uv_ip4_name((const struct sockaddr_in *)sa, ip, sizeof ip) == 0)
		snprintf(out, SL_ADDR_STRLEN, "%s:%u", ip, ntohs(((const struct sockaddr_in *)sa)->sin_port));
	else if (sa && sa->sa_family == AF_INET6 && uv_ip6_name((const struct sockaddr_in6 *)sa, ip, sizeof ip) == 0)
		snprintf(out, SL_ADDR_STRLEN, "[%s]:%u", ip, ntohs(((const struct sockaddr_in6 *)sa)->sin6_port));
	else
		snprintf(out, SL_ADDR_STRLEN, "unknown");
	return out;
}
