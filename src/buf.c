/* buf.c — see buf.h. */
#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void do_oom(size_t n)
{
	fprintf(stderr, "sluice: out of memory allocating %zu bytes\n", n);
	abort();
}

void *sl_malloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL)
		do_oom(n);
	return p;
}

void *sl_calloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (p == NULL)
		do_oom(n * size);
	return p;
}

void *sl_realloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (p == NULL)
		do_oom(n);
	return p;
}

void sl_buf_grow(sl_buf_t *b, size_t extra)
{
	if (b->len + extra <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra)
		cap *= 2;
	b->base = sl_realloc(b->base, cap);
	b->cap = cap;
}

void sl_buf_appends(sl_buf_t *b, const char *s)
{
	sl_buf_append(b, s, strlen(s));
}

void sl_buf_printf(sl_buf_t *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n <= 0)
		return;
	sl_buf_reserve(b, (size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(b->base + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void sl_buf_dispose(sl_buf_t *b)
{
	free(b->base);
	b->base = NULL;
	b->len = b->cap = 0;
}

void sl_json_escape(const char *s, char *out, size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	for (; *s && o + 7 < outlen; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\') {
			out[o++] = '\\';
			out[o++] = (char)ch;
		} else if (ch < 0x20) {
			memcpy(out + o, "\\u00", 4);
			out[o + 4] = hex[ch >> 4];
			out[o + 5] = hex[ch & 15];
			o += 6;
		} else {
			out[o++] = (char)ch;
		}
	}
	if (outlen)
		out[o] = '\0';
}

char *sl_strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	return memcpy(sl_malloc(n), s, n);
}

int sl_errorf(int code, char *err, size_t errlen, const char *fmt, ...)
{
	if (errlen > 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return code;
}
