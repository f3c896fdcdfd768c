/* admin.c — see admin.h. Every answer is built from one snapshot of the
 * process (report.h), taken on the worker that serves it. */
#include "admin.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"
#include "worker.h"

extern const char sl_dashboard_html[];
extern const size_t sl_dashboard_html_len;

static void do_respond(int status, const char *type, const char *body, size_t len, bool head_only, bool keep_alive,
                       const char *extra, sl_buf_t *out)
{
	sl_http1_build_local(status, type, body, len, keep_alive, extra, out);
	if (head_only)
		out->len -= len;
}

static void do_json(int status, json_t *body, bool head_only, bool keep_alive, const char *extra, sl_buf_t *out)
{
	char *text = body ? json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
	json_decref(body);
	if (!text) { /* jansson is out of memory: say so rather than crash */
		do_respond(500, "application/json", "{\"error\":\"out_of_memory\"}\n", 26, head_only, false, NULL, out);
		return;
	}
	size_t len = strlen(text);
	text = sl_realloc(text, len + 2);
	text[len++] = '\n';
	do_respond(status, "application/json", text, len, head_only, keep_alive, extra, out);
	free(text);
}

static bool path_is(const char *path, size_t len, const char *want)
{
	return len == strlen(want) && memcmp(path, want, len) == 0;
}

void sl_admin_respond(sl_worker_t *w, const sl_http_msg_t *req, bool keep_alive, sl_buf_t *out)
{
	size_t len;
	const char *path = sl_http_msg_target(req, &len);
	const char *q = memchr(path, '?', len);
	if (q)
		len = (size_t)(q - path);
	bool head = req->method == HTTP_HEAD;
	if (req->method != HTTP_GET && !head) {
		do_json(405, json_pack("{s:s}", "error", "method_not_allowed"), false, keep_alive,
		        "Allow: GET, HEAD\r\n", out);
		return;
	}
	if (path_is(path, len, "/proxy-dashboard")) {
		do_respond(200, "text/html; charset=utf-8", sl_dashboard_html, sl_dashboard_html_len, head, keep_alive,
		           NULL, out);
		return;
	}
	bool health = path_is(path, len, "/proxy-health"), metrics = path_is(path, len, "/proxy-metrics");
	bool prometheus = path_is(path, len, "/proxy-metrics/prometheus");
	if (!health && !metrics && !prometheus) {
		do_json(404, json_pack("{s:s}", "error", "not_found"), head, keep_alive, NULL, out);
		return;
	}
	sl_snapshot_t *snap = sl_snapshot_take(w->server);
	if (health) {
		/* 503 while draining: a readiness probe takes the replica out of
		 * rotation; liveness probes use a path that stays 200 */
		do_json(snap->draining ? 503 : 200, sl_report_health(snap), head, keep_alive, NULL, out);
	} else if (metrics) {
		do_json(200, sl_report_json(snap), head, keep_alive, NULL, out);
	} else {
		sl_buf_t text = {0};
		sl_report_prometheus(snap, &text);
		do_respond(200, "text/plain; version=0.0.4; charset=utf-8", text.base, text.len, head, keep_alive, NULL,
		           out);
		sl_buf_dispose(&text);
	}
	free(snap);
}
