/* pool.h — idle upstream connections, ready for reuse.
 *
 * Connections are owned by upstream.c; the pool only links the idle ones and
 * counts. Each worker keeps its own idle list (a connection belongs to one
 * loop), but pool_maxsize bounds the idle connections of the whole process,
 * through one shared count. The bound is kept lazily: a returned connection
 * stays as long as the process holds fewer than twice pool_maxsize idle, and
 * each worker closes its own that have been idle a second while the count is
 * above pool_maxsize (sl_upstream_tend_pool). A strict bound at every instant
 * (or a per-worker share) made one worker close a connection that another
 * opened a moment later, whenever admission handed slots unevenly between
 * workers: at full load the idle count brushes the bound with every hand-off.
 * Reuse takes the most recently returned connection first (it is the least
 * likely to have been closed by the upstream's own idle timeout), while the
 * idle timeout closes the oldest ones. The counters have one writer (the
 * worker) and may be read from other threads with SL_LOAD (stat.h); the
 * shared count is an atomic.
 */
#ifndef SL_POOL_H
#define SL_POOL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "list.h"

typedef struct sl_pool {
	sl_list_t idle; /* most recently returned first */
	uint32_t nidle;
	atomic_uint *shared_idle; /* idle connections of every worker */
	uint32_t max_idle;        /* pool_maxsize: the bound on *shared_idle */
	uint64_t created;         /* connections opened */
	uint64_t reused;          /* requests sent on a pooled connection */
	uint32_t open;            /* connections open (idle or busy) */
} sl_pool_t;

/* A worker's pool; shared_idle is the process's count (any thread). */
void sl_pool_init(sl_pool_t *p, atomic_uint *shared_idle, uint32_t max_idle);

/* Unlinks and returns the most recently returned idle link, or NULL. */
sl_list_t *sl_pool_take(sl_pool_t *p);

/* Links an idle connection. Returns false when the process already keeps
 * twice max_idle idle connections: the caller closes it instead. */
bool sl_pool_put(sl_pool_t *p, sl_list_t *link);

/* Unlinks an idle connection that closed or timed out. */
void sl_pool_remove(sl_pool_t *p, sl_list_t *link);

/* How many idle connections the process keeps beyond max_idle (any thread). */
uint32_t sl_pool_excess(const sl_pool_t *p);

/* This worker's oldest idle link (the one to close first), or NULL. */
sl_list_t *sl_pool_oldest(sl_pool_t *p);

#endif
