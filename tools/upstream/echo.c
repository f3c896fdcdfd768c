/* echo.c — see echo.h. */
#include "echo.h"

#include <inttypes.h>
#include <stdio.h>

#include "jsonx.h"

char *sl_up_echo_json(const sl_up_req_view_t *req, size_t *len)
{
	json_t *hdrs = json_array();
	for (size_t i = 0; hdrs && i < req->nhdrs; i++) {
		const sl_up_hdr_t *h = &req->hdrs[i];
		json_array_append_new(hdrs, json_pack("[o o]", sl_up_json_bytes(req->store + h->name_off, h->name_len),
		                                      sl_up_json_bytes(req->store + h->value_off, h->value_len)));
	}
	char version[16], fnv[17];
	snprintf(version, sizeof version, "%d.%d", req->http_major, req->http_minor);
	snprintf(fnv, sizeof fnv, "%016" PRIx64, req->body_fnv1a);
	return sl_up_json_take(json_pack("{s:s s:o s:s s:o s:I s:s}", "method", req->method, "target",
	                                 sl_up_json_bytes(req->target, req->target_len), "version", version, "headers",
	                                 hdrs, "body_bytes", (json_int_t)req->body_bytes, "body_fnv1a", fnv),
	                       len);
}
