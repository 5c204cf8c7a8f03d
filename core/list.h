/* Intrusive doubly-linked list: the node lives inside the element, so
 * queueing never allocates. A head is a node linked to itself when empty. */
#ifndef PX_CORE_LIST_H
#define PX_CORE_LIST_H

#include <stddef.h>

typedef struct px_list {
    struct px_list *prev, *next;
} px_list;

#define PX_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static inline void px_list_init(px_list *h)
{
    h->prev = h->next = h;
}
static inline int px_list_empty(const px_list *h)
{
    return h->next == h;
}
/* A node that is in no list (after px_list_init or px_list_del). */
static inline int px_list_unlinked(const px_list *n)
{
    return n->next == n;
}
static inline void px_list_insert_between(px_list *n, px_list *prev, px_list *next)
{
    n->prev = prev;
    n->next = next;
    prev->next = n;
    next->prev = n;
}
static inline void px_list_push_back(px_list *h, px_list *n)
{
    px_list_insert_between(n, h->prev, h);
}
static inline void px_list_push_front(px_list *h, px_list *n)
{
    px_list_insert_between(n, h, h->next);
}
static inline void px_list_del(px_list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}
static inline px_list *px_list_first(const px_list *h)
{
    return px_list_empty(h) ? NULL : h->next;
}
static inline px_list *px_list_pop_front(px_list *h)
{
    px_list *n = px_list_first(h);
    if (n)
        px_list_del(n);
    return n;
}
/* Move every node of `from` to the end of `to`; `from` ends empty. */
static inline void px_list_splice_back(px_list *to, px_list *from)
{
    if (px_list_empty(from))
        return;
    from->next->prev = to->prev;
    to->prev->next = from->next;
    from->prev->next = to;
    to->prev = from->prev;
    px_list_init(from);
}

#endif
