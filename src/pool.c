/* pool.c — see pool.h. */
#include "pool.h"

#include "stat.h"

void sl_pool_init(sl_pool_t *p, atomic_uint *shared_idle, uint32_t max_idle)
{
	sl_list_init(&p->idle);
	p->nidle = 0;
	p->shared_idle = shared_idle;
	p->max_idle = max_idle;
	p->created = p->reused = 0;
	p->open = 0;
}

static void do_unlink(sl_pool_t *p, sl_list_t *link)
{
	sl_list_remove(link);
	SL_BUMP(p->nidle, -1);
	atomic_fetch_sub_explicit(p->shared_idle, 1, memory_order_relaxed);
}

sl_list_t *sl_pool_take(sl_pool_t *p)
{
	if (sl_list_empty(&p->idle))
		return NULL;
	sl_list_t *link = p->idle.next;
	do_unlink(p, link);
	SL_BUMP(p->reused, 1);
	return link;
}

bool sl_pool_put(sl_pool_t *p, sl_list_t *link)
{
	/* Reserve a place in the process's count first: two workers returning
	 * connections at once cannot both take the last one. */
	if (atomic_fetch_add_explicit(p->shared_idle, 1, memory_order_relaxed) >= 2 * p->max_idle) {
		atomic_fetch_sub_explicit(p->shared_idle, 1, memory_order_relaxed);
		return false;
	}
	sl_list_insert_head(&p->idle, link);
	SL_BUMP(p->nidle, 1);
	return true;
}

void sl_pool_remove(sl_pool_t *p, sl_list_t *link)
{
	do_unlink(p, link);
}

uint32_t sl_pool_excess(const sl_pool_t *p)
{
	unsigned n = atomic_load_explicit(p->shared_idle, memory_order_relaxed);
	return n > p->max_idle ? n - p->max_idle : 0;
}

sl_list_t *sl_pool_oldest(sl_pool_t *p)
{
	return sl_list_empty(&p->idle) ? NULL : p->idle.prev;
}
