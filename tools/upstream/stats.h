/* stats.h — sluice-upstream's process-wide counters behind GET /__stats.
 *
 * Every function is safe from any worker thread: each counter is one C11
 * atomic (relaxed; the numbers are read by tests, not used to synchronise),
 * so counting costs a handful of uncontended atomic adds per request.
 * Requests to the test-support endpoints (/__stats, /__reset, /__log) are not
 * counted by the caller. */
#ifndef SL_UP_STATS_H
#define SL_UP_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A connection was accepted / closed. */
void sl_up_stats_conn_open(void);
void sl_up_stats_conn_close(void);

/* Takes back sl_up_stats_conn_open() for a connection whose first request
 * was a test-support endpoint, so that looking at the numbers does not
 * change them. The caller then does not call sl_up_stats_conn_close(). */
void sl_up_stats_conn_uncount(void);

/* A request head was received: requests and inflight go up (and the peak).
 * Returns inflight now, this request included. */
long sl_up_stats_request(void);

/* n request body bytes arrived. */
void sl_up_stats_body(uint64_t n);

/* A counted request left: its response was fully written (responded) or its
 * connection ended first. inflight goes down; responses up if responded. */
void sl_up_stats_request_done(bool responded);

/* Zeroes the totals; peak_inflight becomes the current inflight. The gauges
 * (open_connections, inflight) keep their values. */
void sl_up_stats_reset(void);

/* The counters as a JSON object in a malloc'd buffer (caller frees); its
 * length in *len. NULL when out of memory. */
char *sl_up_stats_json(size_t *len);

#endif
