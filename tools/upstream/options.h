/* options.h — sluice-upstream's command line (SPEC §10) folded into one
 * validated struct. */
#ifndef SL_UP_OPTIONS_H
#define SL_UP_OPTIONS_H

#include <stddef.h>

typedef struct sl_up_options {
	const char *host; /* points into argv or a literal */
	int port;
	int workers;
	double idle_timeout; /* seconds; 0 = never close idle connections */
	long max_inflight;   /* 0 = none; else a request beyond this many in flight is answered 429 at once */
} sl_up_options_t;

/* --max-inflight, for the connections of every worker (set before they start). */
extern long sl_up_max_inflight;

/* Outcomes of sl_up_options_parse(). */
#define SL_UP_OPTIONS_RUN 0   /* valid: run */
#define SL_UP_OPTIONS_DONE 1  /* --help was printed: exit 0 */
#define SL_UP_OPTIONS_ERROR 2 /* err holds one sentence: exit 2 */

/* Parses argv (`--name value` or `--name=value`) into *o. On error writes
 * one sentence, without a trailing newline, into err. */
int sl_up_options_parse(sl_up_options_t *o, int argc, char **argv, char *err, size_t errlen);

#endif
