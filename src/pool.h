/* pool.h — one worker's idle upstream connections, ready for reuse.
 *
 * Connections are owned by upstream.c; the pool only links the idle ones and
 * counts. Reuse takes the most recently returned connection first (it is the
 * least likely to have been closed by the upstream's own idle timeout), while
 * the idle timeout closes the oldest ones. Each worker holds its share of
 * pool_maxsize, so the process keeps at most pool_maxsize idle connections
 * and the hot path takes no lock. The counters have one writer (the worker)
 * and may be read from other threads with SL_LOAD (stat.h).
 */
#ifndef SL_POOL_H
#define SL_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "list.h"

typedef struct sl_pool {
	sl_list_t idle; /* most recently returned first */
	uint32_t nidle;
	uint32_t max_idle; /* this worker's share of pool_maxsize */
	uint64_t created;  /* connections opened */
	uint64_t reused;   /* requests sent on a pooled connection */
	uint32_t open;     /* connections open (idle or busy) */
} sl_pool_t;

void sl_pool_init(sl_pool_t *p, uint32_t max_idle);

/* Unlinks and returns the most recently returned idle link, or NULL. */
sl_list_t *sl_pool_take(sl_pool_t *p);

/* Links an idle connection. Returns false when the pool is full: the caller
 * closes it instead. */
bool sl_pool_put(sl_pool_t *p, sl_list_t *link);

/* Unlinks an idle connection that closed or timed out. */
void sl_pool_remove(sl_pool_t *p, sl_list_t *link);

#endif
