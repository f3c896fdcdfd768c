/* report.h — what sluice-load prints: the closing table (stdout), the same
 * as one JSON object with --json (stdout), and the live progress line
 * (stderr, on a terminal only). */
#ifndef SL_LOAD_REPORT_H
#define SL_LOAD_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "opts.h"
#include "stats.h"

typedef struct sl_load_summary {
	const sl_load_opts_t *opts;
	const char *addr_text;        /* the resolved address */
	const sl_load_stats_t *stats; /* merged over all threads */
	double elapsed_s;             /* start to the last response */
	unsigned threads;
	bool interrupted;
} sl_load_summary_t;

/* Open loop: requests sent late plus those never sent (0 in a closed loop). */
uint64_t sl_load_report_behind(const sl_load_stats_t *st);

/* The success rate, 0..1 (0 when nothing was sent). */
double sl_load_report_success_rate(const sl_load_stats_t *st);

void sl_load_report_text(FILE *out, const sl_load_summary_t *s);

/* 0, or -1 when the JSON could not be built or written. */
int sl_load_report_json(FILE *out, const sl_load_summary_t *s);

/* One line, rewritten in place: elapsed time, requests done, the rate over
 * the last interval, errors; in the open loop also the connections and how
 * many requests are behind schedule. */
void sl_load_report_progress(FILE *out, double elapsed_s, const sl_load_progress_t *p, double rate, bool open_loop);

/* Erases the progress line. */
void sl_load_report_progress_clear(FILE *out);

#endif
