/* params.c — see params.h. The query is walked once, pair by pair; numbers are
 * parsed from the raw bytes (digits need no decoding) and only key= and
 * header= values are URL-decoded, so the common case costs a few compares. */
#include "params.h"

#include <string.h>

#define MAX_DELAY_MS 86400000ULL /* one day */
#define MAX_SIZE (1LL << 50)
#define MAX_CHUNKS 1000000
#define MAX_FAIL_TIMES 1000000000LL

void sl_up_params_init(sl_up_params_t *p)
{
	memset(p, 0, sizeof *p);
	p->size = -1;
	p->fail_times = -1;
}

/* Parses a decimal number of at most max from exactly len bytes.
 * Returns 0, or -1 on anything but digits, or on overflow. */
static int do_number(const char *s, size_t len, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	if (len == 0 || len > 19)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > max)
		return -1;
	*out = v;
	return 0;
}

/* "1"/"true"/"yes" or "0"/"false"/"no"; -1 for anything else. */
static int do_flag(const char *s, size_t len)
{
	if ((len == 1 && s[0] == '1') || (len == 4 && !memcmp(s, "true", 4)) || (len == 3 && !memcmp(s, "yes", 3)))
		return 1;
	if ((len == 1 && s[0] == '0') || (len == 5 && !memcmp(s, "false", 5)) || (len == 2 && !memcmp(s, "no", 2)))
		return 0;
	return -1;
}

static int do_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* URL-decodes len bytes of s into dst (form rules: '+' is a space).
 * Returns the decoded length, or -1 on a malformed %-escape. */
static long do_decode(const char *s, size_t len, char *dst)
{
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '%') {
			int hi, lo;
			if (i + 2 >= len || (hi = do_hex(s[i + 1])) < 0 || (lo = do_hex(s[i + 2])) < 0)
				return -1;
			dst[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else {
			dst[o++] = s[i] == '+' ? ' ' : s[i];
		}
	}
	return (long)o;
}

static bool is_tchar(unsigned char c)
{
	/* RFC 9110 token characters. */
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Appends one header=Name:Value as "Name: Value\r\n" at p->extra's end.
 * The value may not contain CR, LF or NUL: a test asking for response
 * splitting gets a 400 rather than a corrupt stream. */
static int do_header(sl_up_params_t *p, const char *v, size_t len, char *scratch)
{
	char *dst = scratch + p->extra_len;
	long n = do_decode(v, len, dst);
	if (n < 0)
		return -1;
	char *colon = memchr(dst, ':', (size_t)n);
	if (!colon || colon == dst)
		return -1;
	size_t name_len = (size_t)(colon - dst);
	for (size_t i = 0; i < name_len; i++)
		if (!is_tchar((unsigned char)dst[i]))
			return -1;
	const char *val = colon + 1;
	size_t val_len = (size_t)n - name_len - 1;
	while (val_len && (*val == ' ' || *val == '\t'))
		val++, val_len--;
	for (size_t i = 0; i < val_len; i++)
		if (val[i] == '\r' || val[i] == '\n' || val[i] == '\0')
			return -1;
	/* Shift the value right by one to make room for the space after ':'. */
	memmove(dst + name_len + 2, val, val_len);
	dst[name_len] = ':';
	dst[name_len + 1] = ' ';
	dst[name_len + 2 + val_len] = '\r';
	dst[name_len + 3 + val_len] = '\n';
	p->extra_len += name_len + 4 + val_len;
	p->extra = scratch;
	return 0;
}

#define IS(lit) (nlen == sizeof(lit) - 1 && !memcmp(name, lit, sizeof(lit) - 1))

/* Applies one name=value pair. Returns 0, or -1 if the value is bad. */
static int do_pair(sl_up_params_t *p, const char *name, size_t nlen, const char *v, size_t vlen, char *scratch)
{
	uint64_t n;
	int f;

	if (IS("delay_ms"))
		return do_number(v, vlen, MAX_DELAY_MS, &p->delay_ms);
	if (IS("status")) {
		if (do_number(v, vlen, 599, &n) || n < 200)
			return -1;
		p->status = (int)n;
		return 0;
	}
	if (IS("size")) {
		if (do_number(v, vlen, MAX_SIZE, &n))
			return -1;
		p->size = (int64_t)n;
		return 0;
	}
	if (IS("chunks")) {
		if (do_number(v, vlen, MAX_CHUNKS, &n) || n == 0)
			return -1;
		p->chunks = (uint32_t)n;
		return 0;
	}
	if (IS("chunk_delay_ms"))
		return do_number(v, vlen, MAX_DELAY_MS, &p->chunk_delay_ms);
	if (IS("fail_times")) {
		if (do_number(v, vlen, MAX_FAIL_TIMES, &n))
			return -1;
		p->fail_times = (int64_t)n;
		return 0;
	}
	if (IS("fail")) {
		if (vlen == 5 && !memcmp(v, "reset", 5))
			p->fail = SL_UP_FAIL_RESET;
		else if (vlen == 5 && !memcmp(v, "close", 5))
			p->fail = SL_UP_FAIL_CLOSE;
		else if (vlen == 4 && !memcmp(v, "hang", 4))
			p->fail = SL_UP_FAIL_HANG;
		else if (vlen == 8 && !memcmp(v, "truncate", 8))
			p->fail = SL_UP_FAIL_TRUNCATE;
		else
			return -1;
		return 0;
	}
	if (IS("key")) {
		/* Decode in scratch past the extra headers, then keep a copy: a
		 * later header= may reuse that scratch. */
		char *tmp = scratch + p->extra_len;
		long k = do_decode(v, vlen, tmp);
		if (k < 0)
			return -1;
		p->key_len = (size_t)k < SL_UP_KEY_MAX ? (size_t)k : SL_UP_KEY_MAX;
		memcpy(p->key, tmp, p->key_len);
		return 0;
	}
	if (IS("connection")) {
		if (vlen == 5 && !memcmp(v, "close", 5))
			p->conn_close = true;
		else if (vlen == 10 && !memcmp(v, "keep-alive", 10))
			p->conn_close = false;
		else
			return -1;
		return 0;
	}
	if (IS("early")) {
		if (vlen != 3 || memcmp(v, "103", 3))
			return -1;
		p->early = true;
		return 0;
	}
	if (IS("header"))
		return do_header(p, v, vlen, scratch);

	bool *flag = IS("chunked")    ? &p->chunked
	             : IS("echo")     ? &p->echo
	             : IS("http10")   ? &p->http10
	             : IS("nolength") ? &p->nolength
	                              : NULL;
	if (!flag)
		return 0; /* unknown: cache-busters and the like are fine */
	if ((f = do_flag(v, vlen)) < 0)
		return -1;
	*flag = f;
	return 0;
}

int sl_up_params_parse(sl_up_params_t *p, const char *q, size_t len, char *scratch)
{
	const char *end = q + len;
	while (q < end) {
		const char *amp = memchr(q, '&', (size_t)(end - q));
		const char *pair_end = amp ? amp : end;
		const char *eq = memchr(q, '=', (size_t)(pair_end - q));
		const char *name = q;
		size_t nlen = (size_t)((eq ? eq : pair_end) - q);
		const char *v = eq ? eq + 1 : pair_end;
		size_t vlen = (size_t)(pair_end - v);
		if (nlen && do_pair(p, name, nlen, v, vlen, scratch) < 0) {
			static const char *const names[] = {
			    "delay_ms",   "status",  "size", "chunks",     "chunk_delay_ms",
			    "fail_times", "fail",    "key",  "connection", "early",
			    "header",     "chunked", "echo", "http10",     "nolength",
			};
			p->error = "query";
			for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
				if (strlen(names[i]) == nlen && !memcmp(names[i], name, nlen))
					p->error = names[i];
			return -1;
		}
		q = pair_end + 1;
	}
	return 0;
}
