/* buf.h — a growable byte buffer for building heads and small bodies.
 * Growth doubles; a buffer is reused across requests (len reset to 0) so the
 * steady state allocates nothing. Out of memory aborts: sluice cannot serve
 * anyone once malloc fails, and pretending otherwise only hides it. */
#ifndef SL_BUF_H
#define SL_BUF_H

#include <stddef.h>
#include <string.h>

typedef struct sl_buf {
	char *base;
	size_t len;
	size_t cap;
} sl_buf_t;

/* Makes room for `extra` more bytes (the slow path of the two below). */
void sl_buf_grow(sl_buf_t *b, size_t extra);

static inline void sl_buf_reserve(sl_buf_t *b, size_t extra)
{
	if (b->len + extra > b->cap)
		sl_buf_grow(b, extra);
}

/* Heads are built from many short pieces: appending is inline. */
static inline void sl_buf_append(sl_buf_t *b, const void *data, size_t len)
{
	sl_buf_reserve(b, len);
	memcpy(b->base + b->len, data, len);
	b->len += len;
}

void sl_buf_appends(sl_buf_t *b, const char *s); /* NUL-terminated */
void sl_buf_printf(sl_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sl_buf_dispose(sl_buf_t *b);

/* Writes the one-sentence message into err (errlen bytes, cut to fit) and
 * returns `code`, so a parser can `return sl_errorf(-1, err, errlen, ...)`. */
int sl_errorf(int code, char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Copies s into out (always NUL-terminated, cut to fit) with the characters
 * JSON strings cannot hold as they are escaped. */
void sl_json_escape(const char *s, char *out, size_t outlen);

/* Allocation helpers that abort on failure (see above). */
void *sl_malloc(size_t n);
void *sl_calloc(size_t n, size_t size);
void *sl_realloc(void *p, size_t n);
char *sl_strdup(const char *s);

#endif
