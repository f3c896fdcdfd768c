/* target.h — where sluice-load sends, and exactly what: the URL resolved
 * once at start, and the request formatted once, shared read-only by every
 * connection of every thread for the whole run. */
#ifndef SL_LOAD_TARGET_H
#define SL_LOAD_TARGET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "opts.h"

typedef struct sl_load_target {
	struct sockaddr_storage addr; /* the first address the name resolved to */
	char addr_text[64];           /* that address as text, for the report */
	char *request;                /* owned: head and body, ready to write */
	size_t request_len;
	bool head;              /* a HEAD request: responses carry no body */
	bool keepalive;         /* false with --no-keepalive or a 'Connection: close' header */
	struct ssl_ctx_st *tls; /* https://: the context of every connection (src/tls.h); NULL for http:// */
	char tls_name[256];     /* https://: the host, sent as SNI and checked in the certificate */
} sl_load_target_t;

/* Parses o->url (http:// or https://; an IPv4, [IPv6] or name host; port
 * 80 or 443 by default; path and query kept, fragment dropped), resolves the host
 * (blocking) and formats the request. 0 on success; otherwise -1 with one
 * sentence in err. Release with sl_load_target_dispose() either way. */
int sl_load_target_init(sl_load_target_t *t, const sl_load_opts_t *o, char *err, size_t errlen);

void sl_load_target_dispose(sl_load_target_t *t);

#endif
