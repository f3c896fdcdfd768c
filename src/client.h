/* client.h — the client side of a connection: read requests, forward them
 * through an upstream exchange, relay the responses, keep the connection
 * alive between requests.
 *
 * The sl_client_on_upstream_* functions are the upstream exchange's events;
 * upstream.c calls them from libuv callbacks only, never from inside a call
 * the client made into it.
 */
#ifndef SL_CLIENT_H
#define SL_CLIENT_H

#include <stdbool.h>
#include <uv.h>

#include "http1.h"
#include "upstream.h"

typedef struct sl_worker sl_worker_t;
typedef struct sl_client sl_client_t;

/* Accepts one connection from a listener. admin: the listener is the admin
 * port, where every path is a /proxy-* endpoint. */
void sl_client_accept(sl_worker_t *w, uv_stream_t *listener, bool admin);

/* Shutdown: close idle keep-alive connections and make busy ones close after
 * their current response (force: close every connection now). */
void sl_client_drain_all(sl_worker_t *w, bool force);

void sl_client_on_upstream_ready(sl_client_t *c);
void sl_client_on_upstream_info(sl_client_t *c, const sl_http_msg_t *resp);  /* a 1xx */
int sl_client_on_upstream_head(sl_client_t *c, const sl_http_msg_t *resp);   /* 0 or -1 */
bool sl_client_on_upstream_body(sl_client_t *c, const char *at, size_t len); /* true: backlogged */
void sl_client_on_upstream_done(sl_client_t *c);
void sl_client_on_upstream_error(sl_client_t *c, const sl_up_failure_t *f);
void sl_client_on_upstream_drain(sl_client_t *c);
void sl_client_flush(sl_client_t *c);          /* end of an upstream read: write what waits */
void sl_client_on_tunnel_open(sl_client_t *c); /* a 2xx to CONNECT: raw bytes both ways from now */
void sl_client_on_tunnel_eof(sl_client_t *c);  /* the upstream half-closed the tunnel */

#endif
