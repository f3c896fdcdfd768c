/* resolve.h — the upstream's addresses, kept fresh for one worker's loop.
 *
 * The target name is looked up with uv_getaddrinfo (on libuv's thread pool,
 * never blocking the loop) at start, every refresh interval after that, and
 * soon after a connect failure, because in Kubernetes a service's address can
 * change under a long-running proxy. A numeric address is parsed once and
 * never looked up. Connections use the addresses in turn (round robin). While
 * no address is known yet, callers wait in a list and are called back when
 * the first lookup ends.
 */
#ifndef SL_RESOLVE_H
#define SL_RESOLVE_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "list.h"

#define SL_RESOLVE_MAX 8

typedef struct sl_resolve_waiter sl_resolve_waiter_t;
typedef void (*sl_resolve_cb)(sl_resolve_waiter_t *w, int status);

struct sl_resolve_waiter {
	sl_list_t link;
	sl_resolve_cb cb;
};

typedef struct sl_resolver {
	uv_loop_t *loop;
	char *host;
	char port[8];
	struct sockaddr_storage addrs[SL_RESOLVE_MAX];
	int naddrs;
	unsigned next;
	bool numeric;
	bool in_flight;
	bool closing;
	int last_status; /* of the last lookup: 0 or a UV_EAI_* code */
	uint64_t refresh_ms;
	uint64_t last_lookup; /* loop time of the last lookup start */
	uv_getaddrinfo_t req;
	uv_timer_t timer;
	sl_list_t waiters;
} sl_resolver_t;

/* Starts the first lookup (unless host is numeric). Returns 0 or a uv error. */
int sl_resolver_init(sl_resolver_t *r, uv_loop_t *loop, const char *host, int port, uint64_t refresh_ms);

/* 0 when addresses are known; UV_EAGAIN while the first lookup is still
 * running (then wait); the lookup's error when it failed. */
int sl_resolver_status(const sl_resolver_t *r);

/* Where a new connection starts in the address list: each one further than
 * the last, so that connections spread over the addresses (round robin). */
unsigned sl_resolver_first(sl_resolver_t *r);

/* Copies address number i (modulo their count, which a refresh may change)
 * into *out and returns 0, or returns sl_resolver_status(). A connection
 * tries first, first + 1, ... when one fails. */
int sl_resolver_pick(const sl_resolver_t *r, unsigned i, struct sockaddr_storage *out);

/* Calls w->cb(w, status) once the lookup in flight ends. Never synchronous. */
void sl_resolver_wait(sl_resolver_t *r, sl_resolve_waiter_t *w, sl_resolve_cb cb);
void sl_resolver_cancel(sl_resolve_waiter_t *w);

/* A connect failed: look the name up again unless that happened within the
 * last second. */
void sl_resolver_refresh(sl_resolver_t *r);

/* Stops timers and lookups; waiters get UV_ECANCELED. */
void sl_resolver_close(sl_resolver_t *r);

/* "1.2.3.4:80" or "[::1]:80" for an IPv4 or IPv6 address ("unknown" for
 * anything else), into out (SL_ADDR_STRLEN bytes); returns out. */
#define SL_ADDR_STRLEN (INET6_ADDRSTRLEN + 8)
const char *sl_addr_format(const struct sockaddr *sa, char *out);

#endif
