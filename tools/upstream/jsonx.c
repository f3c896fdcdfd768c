/* jsonx.c — see jsonx.h. */
#include "jsonx.h"

#include <stdlib.h>
#include <string.h>

json_t *sl_up_json_bytes(const char *s, size_t len)
{
	json_t *v = json_stringn(s, len);
	if (v)
		return v;
	/* Invalid UTF-8 (or an embedded NUL, which jansson accepts): fall back
	 * to a lossy ASCII copy. Rare, so a temporary allocation is fine. */
	char *tmp = malloc(len ? len : 1);
	if (!tmp)
		return NULL;
	for (size_t i = 0; i < len; i++)
		tmp[i] = (unsigned char)s[i] >= 0x80 ? '?' : s[i];
	v = json_stringn(tmp, len);
	free(tmp);
	return v;
}

char *sl_up_json_take(json_t *v, size_t *len)
{
	if (!v)
		return NULL;
	/* 15 digits keep t_ms to the microsecond without binary noise. */
	char *s = json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(15));
	json_decref(v);
	if (s)
		*len = strlen(s);
	return s;
}
