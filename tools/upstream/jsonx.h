/* jsonx.h — JSON values from raw request bytes. Requests may carry any octet
 * in their target or header values, but JSON strings must be UTF-8, so the
 * echo and the request log go through here rather than json_stringn(). */
#ifndef SL_UP_JSONX_H
#define SL_UP_JSONX_H

#include <stddef.h>

#include <jansson.h>

/* A new JSON string holding len bytes of s. Valid UTF-8 is kept as is; when
 * the bytes are not valid UTF-8 every byte >= 0x80 becomes '?'. Returns a new
 * reference, or NULL when out of memory. */
json_t *sl_up_json_bytes(const char *s, size_t len);

/* Serialises v compactly into a malloc'd buffer (caller frees) and stores its
 * length in *len. Steals the reference to v. Returns NULL on failure. */
char *sl_up_json_take(json_t *v, size_t *len);

#endif
