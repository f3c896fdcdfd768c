/* echo.h — the echo=1 response body: the request as JSON, and the FNV-1a 64
 * hash its body_fnv1a field is computed with. */
#ifndef SL_UP_ECHO_H
#define SL_UP_ECHO_H

#include <stddef.h>
#include <stdint.h>

#include "http-t.h"

#define SL_UP_FNV1A_INIT 0xcbf29ce484222325ULL

/* Folds len bytes into the running FNV-1a 64 hash h; returns the new hash. */
static inline uint64_t sl_up_fnv1a(uint64_t h, const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* {"method", "target", "version", "headers": [[name, value], ...],
 *  "body_bytes", "body_fnv1a": 16 hex digits} in a malloc'd buffer (caller
 * frees); its length in *len. NULL when out of memory. */
char *sl_up_echo_json(const sl_up_req_view_t *req, size_t *len);

#endif
