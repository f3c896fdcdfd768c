/* stats.c — see stats.h. Gauges are signed so that a reset racing with a
 * close can never wrap them around. */
#include "stats.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

static struct {
	atomic_int_fast64_t connections, open_connections;
	atomic_int_fast64_t requests, inflight, peak_inflight;
	atomic_int_fast64_t bytes_received, responses;
} S;

#define ADD(field, n) atomic_fetch_add_explicit(&S.field, (n), memory_order_relaxed)
#define GET(field) ((int64_t)atomic_load_explicit(&S.field, memory_order_relaxed))
#define SET(field, v) atomic_store_explicit(&S.field, (v), memory_order_relaxed)

void sl_up_stats_conn_open(void)
{
	ADD(connections, 1);
	ADD(open_connections, 1);
}

void sl_up_stats_conn_close(void)
{
	ADD(open_connections, -1);
}

void sl_up_stats_conn_uncount(void)
{
	ADD(connections, -1);
	ADD(open_connections, -1);
}

long sl_up_stats_request(void)
{
	ADD(requests, 1);
	int_fast64_t now = ADD(inflight, 1) + 1;
	int_fast64_t peak = atomic_load_explicit(&S.peak_inflight, memory_order_relaxed);
	while (now > peak && !atomic_compare_exchange_weak_explicit(&S.peak_inflight, &peak, now, memory_order_relaxed,
	                                                            memory_order_relaxed))
		;
	return (long)now;
}

void sl_up_stats_body(uint64_t n)
{
	ADD(bytes_received, (int_fast64_t)n);
}

void sl_up_stats_request_done(bool responded)
{
	ADD(inflight, -1);
	if (responded)
		ADD(responses, 1);
}

void sl_up_stats_reset(void)
{
	SET(connections, 0);
	SET(requests, 0);
	SET(bytes_received, 0);
	SET(responses, 0);
	SET(peak_inflight, GET(inflight));
}

char *sl_up_stats_json(size_t *len)
{
	char *s = malloc(512);
	if (!s)
		return NULL;
	int n = snprintf(s, 512,
	                 "{\"connections\":%" PRId64 ",\"open_connections\":%" PRId64 ",\"requests\":%" PRId64
	                 ",\"inflight\":%" PRId64 ",\"peak_inflight\":%" PRId64 ",\"bytes_received\":%" PRId64
	                 ",\"responses\":%" PRId64 "}",
	                 GET(connections), GET(open_connections), GET(requests), GET(inflight), GET(peak_inflight),
	                 GET(bytes_received), GET(responses));
	*len = (size_t)n;
	return s;
}
