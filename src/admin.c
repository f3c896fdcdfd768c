/* admin.c — see admin.h. Figures are summed over all workers on each call
 * (relaxed reads of per-worker counters), so an answer may lag a request or
 * two behind, never more. */
#include "admin.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "worker.h"

static void do_sum(const sl_server_t *s, sl_metrics_sum_t *sum)
{
	memset(sum, 0, sizeof *sum);
	uint64_t now = uv_hrtime() / 1000000;
	for (int i = 0; i < s->nworkers; i++)
		sl_metrics_add(&s->workers[i].metrics, sum, now);
}

/* "unhealthy" while the breaker is open, "degraded" while fewer than 80 % of
 * the last minute's forwarded requests succeeded, else "healthy". */
static const char *health_status(const sl_metrics_sum_t *sum, sl_breaker_state_t breaker)
{
	if (breaker == SL_BREAKER_OPEN)
		return "unhealthy";
	uint64_t done = sum->window_ok + sum->window_fail;
	if (done > 0 && sum->window_ok * 100 < done * 80)
		return "degraded";
	return "healthy";
}

static json_t *health_json(sl_server_t *s)
{
	sl_metrics_sum_t sum;
	sl_admit_stats_t adm;
	do_sum(s, &sum);
	sl_admit_get_stats(&s->admit, &adm);
	sl_breaker_state_t breaker = sl_breaker_state(&s->breaker);
	return json_pack("{s:s, s:s, s:I, s:I}", "status", health_status(&sum, breaker), "circuit_state",
	                 sl_breaker_state_name(breaker), "active", (json_int_t)adm.active, "queued",
	                 (json_int_t)adm.queued);
}

static void do_json_response(int status, json_t *body, bool head_only, bool keep_alive, const char *extra,
                             sl_buf_t *out)
{
	sl_buf_t b = {0};
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	sl_buf_appends(&b, text);
	sl_buf_append(&b, "\n", 1);
	free(text);
	sl_http1_build_local(status, "application/json", b.base, b.len, keep_alive, extra, out);
	if (head_only)
		out->len -= b.len;
	sl_buf_dispose(&b);
}

void sl_admin_respond(sl_worker_t *w, const sl_http_msg_t *req, bool keep_alive, sl_buf_t *out)
{
	size_t len;
	const char *target = sl_http_msg_target(req, &len);
	const char *q = memchr(target, '?', len);
	if (q)
		len = (size_t)(q - target);
	bool head = req->method == HTTP_HEAD;
	if (req->method != HTTP_GET && !head) {
		do_json_response(405, json_pack("{s:s}", "error", "method_not_allowed"), false, keep_alive,
		                 "Allow: GET, HEAD\r\n", out);
		return;
	}
	if (len == 13 && memcmp(target, "/proxy-health", 13) == 0) {
		do_json_response(200, health_json(w->server), head, keep_alive, NULL, out);
		return;
	}
	do_json_response(404, json_pack("{s:s}", "error", "not_found"), head, keep_alive, NULL, out);
}
