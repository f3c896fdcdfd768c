/* report.c — rendering sl_load_summary_t as a table or as JSON.
 *
 * Times are kept in microseconds and shown in milliseconds; the success rate
 * is 0..1 in JSON and a percentage in the table. Percentiles and the text
 * histogram's counts come from the log-linear histogram (within 1 %); min,
 * max, the mean and the standard deviation are exact. */
#include "report.h"

#include <jansson.h>
#include <math.h>

static const double percentiles[] = {50, 90, 95, 99, 99.9};
static const char *const percentile_names[] = {"p50", "p90", "p95", "p99", "p99.9"};
static const char *const percentile_keys[] = {"p50", "p90", "p95", "p99", "p999"};
#define NPERCENTILES (sizeof(percentiles) / sizeof(percentiles[0]))

static uint64_t do_total(const sl_load_stats_t *st)
{
	return st->success + st->failed;
}

uint64_t sl_load_report_behind(const sl_load_stats_t *st)
{
	return st->late + st->unsent;
}

double sl_load_report_success_rate(const sl_load_stats_t *st)
{
	uint64_t total = do_total(st);
	return total ? (double)st->success / (double)total : 0.0;
}

static double do_rps(const sl_load_summary_t *s)
{
	return s->elapsed_s > 0 ? (double)do_total(s->stats) / s->elapsed_s : 0.0;
}

static double do_ms(uint64_t us)
{
	return (double)us / 1000.0;
}

#define HIST_ROWS 10
#define HIST_BAR 40 /* marks for the fullest row */

/* The response-time histogram as hey and oha print it: HIST_ROWS rows of
 * equal width from the fastest to the slowest response, each row its upper
 * bound (ms), its count and a bar scaled to the fullest row. A response
 * lands in the row of its log-linear bucket's upper bound, so near a row's
 * bound the split is within the buckets' 0.8 %. */
static void do_print_histogram(FILE *out, const sl_hist_t *h)
{
	uint64_t upper[HIST_ROWS], count[HIST_ROWS], most = 0, prev_le = 0;
	int rows = 0;
	for (int i = 0; i < HIST_ROWS; i++) {
		uint64_t bound = h->min + (h->max - h->min) * (uint64_t)(i + 1) / HIST_ROWS;
		if (rows > 0 && bound == upper[rows - 1])
			continue; /* a spread of under HIST_ROWS µs has fewer rows */
		uint64_t le = sl_hist_count_le(h, bound);
		upper[rows] = bound;
		count[rows] = le - prev_le;
		prev_le = le;
		if (count[rows] > most)
			most = count[rows];
		rows++;
	}
	int width = snprintf(NULL, 0, "%llu", (unsigned long long)most);
	fprintf(out, "\nResponse time histogram (ms)\n");
	for (int i = 0; i < rows; i++) {
		/* a row with any response shows at least one mark */
		uint64_t marks = count[i] ? (count[i] * HIST_BAR + most / 2) / most : 0;
		if (count[i] && marks == 0)
			marks = 1;
		fprintf(out, "  %10.3f [%*llu] |", do_ms(upper[i]), width, (unsigned long long)count[i]);
		for (uint64_t k = 0; k < marks; k++)
			fputs("\u25a0", out); /* ■, as hey and oha draw it */
		fputc('\n', out);
	}
}

static void do_describe_load(FILE *out, const sl_load_summary_t *s)
{
	const sl_load_opts_t *o = s->opts;
	if (o->rate > 0)
		fprintf(out, "  open loop at %g req/s, %u connections growing up to %u as needed, on %u thread%s, ",
		        o->rate, o->concurrent, o->max_concurrent, s->threads, s->threads == 1 ? "" : "s");
	else
		fprintf(out, "  closed loop, %u connections on %u thread%s, ", o->concurrent, s->threads,
		        s->threads == 1 ? "" : "s");
	if (o->total_requests)
		fprintf(out, "%llu requests", (unsigned long long)o->total_requests);
	else
		fprintf(out, "for %g s", o->duration);
	fprintf(out, "%s\n", o->keepalive ? "" : ", no keep-alive");
}

void sl_load_report_text(FILE *out, const sl_load_summary_t *s)
{
	const sl_load_stats_t *st = s->stats;
	const sl_hist_t *h = &st->latency_us;
	fprintf(out, "sluice-load %s %s (%s)\n", s->opts->method, s->opts->url, s->addr_text);
	do_describe_load(out, s);
	if (s->interrupted)
		fprintf(out, "  interrupted: requests in flight were not counted\n");
	fprintf(out, "\n");
	fprintf(out, "Requests sent    %llu\n", (unsigned long long)do_total(st));
	fprintf(out, "  success        %llu  (2xx/3xx)\n", (unsigned long long)st->success);
	fprintf(out, "  failed         %llu\n", (unsigned long long)st->failed);
	if (st->late)
		fprintf(out,
		        "  sent late      %llu  (behind schedule: every connection --max-concurrent allows was busy)\n",
		        (unsigned long long)st->late);
	if (st->unsent)
		fprintf(out, "  not sent       %llu  (due by the end, but every connection was busy)\n",
		        (unsigned long long)st->unsent);
	if (sl_load_report_behind(st))
		fprintf(out,
		        "Behind schedule  %llu of %llu  (--max-concurrent %u reached: raise it to keep the rate)\n",
		        (unsigned long long)sl_load_report_behind(st), (unsigned long long)(do_total(st) + st->unsent),
		        s->opts->max_concurrent);
	fprintf(out, "Success rate     %.2f %%\n", 100.0 * sl_load_report_success_rate(st));
	fprintf(out, "Duration         %.3f s\n", s->elapsed_s);
	fprintf(out, "Requests/s       %.1f\n", do_rps(s));
	fprintf(out, "Bytes received   %llu\n", (unsigned long long)st->bytes);
	if (s->opts->rate > 0)
		fprintf(out, "Connections      %llu  (from %u, at most %u)\n", (unsigned long long)st->connections,
		        s->opts->concurrent, s->opts->max_concurrent);

	fprintf(out, "\nResponse time (ms)\n");
	if (h->total == 0) {
		fprintf(out, "  (no responses)\n");
	} else {
		fprintf(out, "  avg     %10.3f\n", sl_hist_mean(h) / 1000.0);
		fprintf(out, "  stddev  %10.3f\n", sl_load_stats_stddev_us(st) / 1000.0);
		fprintf(out, "  min     %10.3f\n", do_ms(h->min));
		fprintf(out, "  max     %10.3f\n", do_ms(h->max));
		for (size_t i = 0; i < NPERCENTILES; i++)
			fprintf(out, "  %-7s %10.3f\n", percentile_names[i],
			        do_ms(sl_hist_percentile(h, percentiles[i])));
		do_print_histogram(out, h);
	}

	fprintf(out, "\nStatus codes\n");
	bool any = false;
	for (unsigned code = 0; code < SL_LOAD_STATUS_MAX; code++) {
		if (!st->status[code])
			continue;
		fprintf(out, "  %-7u %llu\n", code, (unsigned long long)st->status[code]);
		any = true;
	}
	if (!any)
		fprintf(out, "  (none)\n");

	fprintf(out, "\nErrors\n");
	for (int k = 0; k < SL_LOAD_ERR_COUNT; k++)
		fprintf(out, "  %-7s %llu\n", sl_load_stats_err_name(k), (unsigned long long)st->errors[k]);
	fflush(out);
}

/* Milliseconds with microsecond precision, without binary noise in print. */
static json_t *do_json_ms(double ms)
{
	return json_real(round(ms * 1000.0) / 1000.0);
}

int sl_load_report_json(FILE *out, const sl_load_summary_t *s)
{
	const sl_load_stats_t *st = s->stats;
	const sl_hist_t *h = &st->latency_us;
	json_t *o = json_object();
	json_t *codes = json_object();
	json_t *errors = json_object();
	if (!o || !codes || !errors) {
		json_decref(o), json_decref(codes), json_decref(errors);
		return -1;
	}
	json_object_set_new(o, "url", json_string(s->opts->url));
	json_object_set_new(o, "method", json_string(s->opts->method));
	json_object_set_new(o, "concurrent", json_integer(s->opts->concurrent));
	json_object_set_new(o, "threads", json_integer(s->threads));
	json_object_set_new(o, "rate", s->opts->rate > 0 ? json_real(s->opts->rate) : json_null());
	json_object_set_new(o, "total", json_integer((json_int_t)do_total(st)));
	json_object_set_new(o, "success", json_integer((json_int_t)st->success));
	json_object_set_new(o, "failed", json_integer((json_int_t)st->failed));
	json_object_set_new(o, "unsent", json_integer((json_int_t)st->unsent));
	json_object_set_new(o, "late", json_integer((json_int_t)st->late));
	json_object_set_new(o, "behind_schedule", json_integer((json_int_t)sl_load_report_behind(st)));
	json_object_set_new(o, "max_concurrent",
	                    s->opts->rate > 0 ? json_integer(s->opts->max_concurrent) : json_null());
	json_object_set_new(o, "connections", json_integer((json_int_t)st->connections));
	json_object_set_new(o, "success_rate", json_real(sl_load_report_success_rate(st)));
	json_object_set_new(o, "requests_per_second", json_real(round(do_rps(s) * 100) / 100));
	json_object_set_new(o, "duration_seconds", json_real(round(s->elapsed_s * 1e6) / 1e6));
	json_object_set_new(o, "bytes_received", json_integer((json_int_t)st->bytes));
	json_object_set_new(o, "responses", json_integer((json_int_t)h->total));
	json_object_set_new(o, "avg_response_time", do_json_ms(sl_hist_mean(h) / 1000.0));
	json_object_set_new(o, "stddev_response_time", do_json_ms(sl_load_stats_stddev_us(st) / 1000.0));
	json_object_set_new(o, "min_response_time", do_json_ms(h->total ? do_ms(h->min) : 0));
	json_object_set_new(o, "max_response_time", do_json_ms(do_ms(h->max)));
	for (size_t i = 0; i < NPERCENTILES; i++)
		json_object_set_new(o, percentile_keys[i], do_json_ms(do_ms(sl_hist_percentile(h, percentiles[i]))));
	/* the successes alone: the latency of what was served, which the fast
	 * refusals of an overloaded proxy would otherwise hide */
	const sl_hist_t *ok = &st->success_latency_us;
	json_object_set_new(o, "success_p50", do_json_ms(do_ms(sl_hist_percentile(ok, 50))));
	json_object_set_new(o, "success_p99", do_json_ms(do_ms(sl_hist_percentile(ok, 99))));
	for (unsigned code = 0; code < SL_LOAD_STATUS_MAX; code++) {
		if (!st->status[code])
			continue;
		char key[8];
		snprintf(key, sizeof(key), "%u", code);
		json_object_set_new(codes, key, json_integer((json_int_t)st->status[code]));
	}
	json_object_set_new(o, "status_codes", codes);
	for (int k = 0; k < SL_LOAD_ERR_COUNT; k++)
		json_object_set_new(errors, sl_load_stats_err_name(k), json_integer((json_int_t)st->errors[k]));
	json_object_set_new(o, "errors", errors);
	json_object_set_new(o, "interrupted", json_boolean(s->interrupted));
	int rc = json_dumpf(o, out, JSON_INDENT(2) | JSON_REAL_PRECISION(12));
	json_decref(o);
	if (rc == 0 && fputc('\n', out) != EOF && fflush(out) == 0)
		return 0;
	return -1;
}

void sl_load_report_progress(FILE *out, double elapsed_s, const sl_load_progress_t *p, double rate, bool open_loop)
{
	fprintf(out, "\r[%6.1fs] %llu requests, %.0f req/s, %llu errors", elapsed_s, (unsigned long long)p->done, rate,
	        (unsigned long long)p->errors);
	if (open_loop)
		fprintf(out, ", %llu connections, %llu behind schedule", (unsigned long long)p->connections,
		        (unsigned long long)p->behind);
	fputs("\033[K", out);
	fflush(out);
}

void sl_load_report_progress_clear(FILE *out)
{
	fputs("\r\033[K", out);
	fflush(out);
}
