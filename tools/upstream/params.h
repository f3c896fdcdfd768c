/* params.h — the query parameters that choose how sluice-upstream answers one
 * request (SPEC §10), parsed from the request-target into one struct.
 *
 * Pure string work: no I/O, no allocation, no shared state. Whether a
 * fail_times budget still applies is failmap.h's business, not this file's. */
#ifndef SL_UP_PARAMS_H
#define SL_UP_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SL_UP_KEY_MAX 64 /* fail_times keys are truncated to this many bytes */

typedef enum {
	SL_UP_FAIL_NONE,
	SL_UP_FAIL_RESET,    /* RST right after the request head */
	SL_UP_FAIL_CLOSE,    /* FIN without any response */
	SL_UP_FAIL_HANG,     /* never answer */
	SL_UP_FAIL_TRUNCATE, /* promise Content-Length, send half, close */
} sl_up_fail_t;

typedef struct sl_up_params {
	uint64_t delay_ms;       /* before the response head; 0 = none */
	int status;              /* 0 = not given (200) */
	int64_t size;            /* body bytes; -1 = not given ("ok\n") */
	uint32_t chunks;         /* 0 = not given */
	uint64_t chunk_delay_ms; /* between two of the `chunks` */
	sl_up_fail_t fail;
	int64_t fail_times; /* -1 = not given: fail/status always apply */
	char key[SL_UP_KEY_MAX];
	size_t key_len;
	bool chunked;
	bool echo;
	bool conn_close; /* connection=close */
	bool http10;
	bool nolength;
	bool early; /* early=103 */
	/* Extra response headers, each already "Name: Value\r\n", in the
	 * caller's scratch buffer. */
	const char *extra;
	size_t extra_len;
	const char *error; /* name of the first bad parameter, else NULL */
} sl_up_params_t;

/* Sets every field to "not given". */
void sl_up_params_init(sl_up_params_t *p);

/* Parses the query string q (the bytes after '?', not NUL-terminated) into
 * *p, which must have been initialised. URL-decoded header= values are
 * written to scratch, which must hold at least 2 * len + 2 bytes (the
 * worst case of "a:" expanding to "a: \r\n"). Unknown parameters are
 * ignored. Returns 0, or -1 with p->error naming the offending parameter. */
int sl_up_params_parse(sl_up_params_t *p, const char *q, size_t len, char *scratch);

/* Bytes of scratch that sl_up_params_parse() may need for a query of len. */
static inline size_t sl_up_params_scratch(size_t len)
{
	return 2 * len + 2;
}

#endif
