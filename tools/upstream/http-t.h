/* http-t.h — types describing one received request, shared by the connection
 * (which fills them while llhttp parses), the echo renderer and the request
 * log (which read them). Types only. */
#ifndef SL_UP_HTTP_T_H
#define SL_UP_HTTP_T_H

#include <stddef.h>
#include <stdint.h>

/* One header line as offsets into the connection's head store, so the store
 * may grow (realloc) while later headers are still arriving. */
typedef struct sl_up_hdr {
	uint32_t name_off, name_len;
	uint32_t value_off, value_len;
} sl_up_hdr_t;

/* A read-only view of a received request; every pointer is borrowed from
 * the connection and valid only until its next request begins. */
typedef struct sl_up_req_view {
	const char *method; /* static string from llhttp */
	const char *target; /* raw request-target, not NUL-terminated */
	size_t target_len;
	const char *store; /* base that the header offsets are relative to */
	const sl_up_hdr_t *hdrs;
	size_t nhdrs;
	int http_major, http_minor;
	uint64_t body_bytes;
	uint64_t body_fnv1a;
} sl_up_req_view_t;

#endif
