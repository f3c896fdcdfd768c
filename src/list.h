/* list.h — an intrusive, circular, doubly linked list (libuv's QUEUE idea).
 * A node is embedded in the object it links; insertion and removal allocate
 * nothing and are O(1). An empty list (or an unlinked node) points to itself. */
#ifndef SL_LIST_H
#define SL_LIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct sl_list {
	struct sl_list *next, *prev;
} sl_list_t;

#define sl_list_entry(node, type, member) ((type *)((char *)(node)-offsetof(type, member)))

static inline void sl_list_init(sl_list_t *l)
{
	l->next = l->prev = l;
}

static inline bool sl_list_empty(const sl_list_t *l)
{
	return l->next == l;
}

static inline void sl_list_insert_tail(sl_list_t *l, sl_list_t *n)
{
	n->prev = l->prev;
	n->next = l;
	l->prev->next = n;
	l->prev = n;
}

static inline void sl_list_insert_head(sl_list_t *l, sl_list_t *n)
{
	n->next = l->next;
	n->prev = l;
	l->next->prev = n;
	l->next = n;
}

/* Unlinks n and leaves it pointing to itself, so a second remove is harmless. */
static inline void sl_list_remove(sl_list_t *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->next = n->prev = n;
}

#define sl_list_foreach_safe(pos, tmp, head) \
	for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head); (pos) = (tmp), (tmp) = (pos)->next)

#endif
