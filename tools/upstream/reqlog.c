/* reqlog.c — see reqlog.h.
 *
 * Request seq lives in ring[(seq - 1) % CAP]. Entries from `first` to
 * `next - 1` are visible; older ones were overwritten or cleared.
 * Invariant: next - first <= CAP. All fields are guarded by `lock`. */
#include "reqlog.h"

#include <pthread.h>
#include <string.h>

#include "jsonx.h"

#define TARGET_MAX 1024 /* longer targets are cut */
#define NAME_MAX_ 128   /* longer header names are cut */
#define VALUE_MAX 512   /* longer header values are cut */
#define HDRS_MAX 48     /* later headers are dropped */
#define DATA_MAX 4096   /* target + names + values; headers that do not fit are dropped */

typedef struct entry {
	uint64_t seq;
	uint64_t conn;
	double t_ms;
	uint64_t body_bytes;
	const char *method; /* static string from llhttp */
	uint16_t target_len;
	uint16_t nhdrs;
	uint16_t lens[HDRS_MAX][2]; /* name, value lengths; bytes follow the target in data */
	char data[DATA_MAX];
} entry_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static entry_t ring[SL_UP_REQLOG_CAP];
static uint64_t next = 1, first = 1;

static size_t min_sz(size_t a, size_t b)
{
	return a < b ? a : b;
}

uint64_t sl_up_reqlog_add(uint64_t conn_id, double t_ms, const sl_up_req_view_t *req)
{
	pthread_mutex_lock(&lock);
	uint64_t seq = next++;
	if (next - first > SL_UP_REQLOG_CAP)
		first = next - SL_UP_REQLOG_CAP;
	entry_t *e = &ring[(seq - 1) % SL_UP_REQLOG_CAP];
	e->seq = seq;
	e->conn = conn_id;
	e->t_ms = t_ms;
	e->body_bytes = 0;
	e->method = req->method;
	size_t used = min_sz(req->target_len, TARGET_MAX);
	memcpy(e->data, req->target, used);
	e->target_len = (uint16_t)used;
	size_t n = 0;
	for (size_t i = 0; i < req->nhdrs && n < HDRS_MAX; i++) {
		const sl_up_hdr_t *h = &req->hdrs[i];
		size_t nl = min_sz(h->name_len, NAME_MAX_), vl = min_sz(h->value_len, VALUE_MAX);
		if (used + nl + vl > DATA_MAX)
			break;
		memcpy(e->data + used, req->store + h->name_off, nl);
		memcpy(e->data + used + nl, req->store + h->value_off, vl);
		used += nl + vl;
		e->lens[n][0] = (uint16_t)nl;
		e->lens[n][1] = (uint16_t)vl;
		n++;
	}
	e->nhdrs = (uint16_t)n;
	pthread_mutex_unlock(&lock);
	return seq;
}

void sl_up_reqlog_body(uint64_t seq, uint64_t body_bytes)
{
	pthread_mutex_lock(&lock);
	entry_t *e = &ring[(seq - 1) % SL_UP_REQLOG_CAP];
	if (seq >= first && e->seq == seq)
		e->body_bytes = body_bytes;
	pthread_mutex_unlock(&lock);
}

void sl_up_reqlog_clear(void)
{
	pthread_mutex_lock(&lock);
	first = next;
	pthread_mutex_unlock(&lock);
}

/* Renders one entry; must be called with the lock held. */
static json_t *do_entry(const entry_t *e)
{
	json_t *hdrs = json_array();
	size_t off = e->target_len;
	for (size_t i = 0; i < e->nhdrs; i++) {
		size_t nl = e->lens[i][0], vl = e->lens[i][1];
		json_array_append_new(hdrs, json_pack("[o o]", sl_up_json_bytes(e->data + off, nl),
		                                      sl_up_json_bytes(e->data + off + nl, vl)));
		off += nl + vl;
	}
	return json_pack("{s:I s:I s:s s:o s:o s:I s:f}", "seq", (json_int_t)e->seq, "conn", (json_int_t)e->conn,
	                 "method", e->method, "target", sl_up_json_bytes(e->data, e->target_len), "headers", hdrs,
	                 "body_bytes", (json_int_t)e->body_bytes, "t_ms", e->t_ms);
}

char *sl_up_reqlog_json(size_t *len)
{
	json_t *arr = json_array();
	if (!arr)
		return NULL;
	/* Rendering under the lock stalls logging workers for about a
	 * millisecond per call; /__log is a test endpoint, so that is fine. */
	pthread_mutex_lock(&lock);
	for (uint64_t s = first; s < next; s++)
		json_array_append_new(arr, do_entry(&ring[(s - 1) % SL_UP_REQLOG_CAP]));
	pthread_mutex_unlock(&lock);
	return sl_up_json_take(arr, len);
}
