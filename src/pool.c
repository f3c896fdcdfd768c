/* pool.c — see pool.h. */
#include "pool.h"

#include "stat.h"

void sl_pool_init(sl_pool_t *p, uint32_t max_idle)
{
	sl_list_init(&p->idle);
	p->nidle = 0;
	p->max_idle = max_idle;
	p->created = p->reused = 0;
	p->open = 0;
}

sl_list_t *sl_pool_take(sl_pool_t *p)
{
	if (sl_list_empty(&p->idle))
		return NULL;
	sl_list_t *link = p->idle.next;
	sl_list_remove(link);
	SL_BUMP(p->nidle, -1);
	SL_BUMP(p->reused, 1);
	return link;
}

bool sl_pool_put(sl_pool_t *p, sl_list_t *link)
{
	if (p->nidle >= p->max_idle)
		return false;
	sl_list_insert_head(&p->idle, link);
	SL_BUMP(p->nidle, 1);
	return true;
}

void sl_pool_remove(sl_pool_t *p, sl_list_t *link)
{
	sl_list_remove(link);
	SL_BUMP(p->nidle, -1);
}
