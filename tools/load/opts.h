/* opts.h — sluice-load's command line (SPEC §9) folded into one validated
 * struct. Nothing here touches the network; target.h turns the URL, method,
 * headers and body into the bytes that are sent. */
#ifndef SL_LOAD_OPTS_H
#define SL_LOAD_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sl_load_opts {
	const char *url;         /* points into argv */
	unsigned concurrent;     /* connections, across all threads; with --rate, where they start */
	unsigned max_concurrent; /* with --rate, they may grow up to this (>= concurrent); else 0 */
	uint64_t total_requests; /* 0 when running for --duration */
	double duration;         /* seconds; 0 when running for --total-requests */
	double timeout;          /* seconds, per request (connect included) */
	double rate;             /* requests per second, open loop; 0 = closed loop */
	const char *method;      /* points into argv or a literal */
	const char **headers;    /* "Name: value" strings pointing into argv; owned array */
	size_t nheaders;
	char *body; /* owned; NULL when there is no body */
	size_t body_len;
	bool keepalive;
	bool insecure;      /* https://: do not verify the server's certificate */
	const char *cacert; /* https://: verify against this PEM CA file, not the system store; NULL */
	bool json;
	unsigned threads;        /* event-loop threads */
	double min_success_rate; /* 0..1; below it the exit status is 1 */
} sl_load_opts_t;

/* Outcomes of sl_load_opts_parse(). */
#define SL_LOAD_OPTS_RUN 0   /* opts are valid: run */
#define SL_LOAD_OPTS_DONE 1  /* --help or --version was printed: exit 0 */
#define SL_LOAD_OPTS_ERROR 2 /* err holds one sentence: exit 2 */

/* Parses argv into *o (which it initialises; release with
 * sl_load_opts_dispose() whatever the outcome). On error writes one sentence,
 * without a trailing newline, into err. */
int sl_load_opts_parse(sl_load_opts_t *o, int argc, char **argv, char *err, size_t errlen);

void sl_load_opts_dispose(sl_load_opts_t *o);

#endif
