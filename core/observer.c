/* Observer fan-out; see observer.h. */
#include "core/observer.h"

void px_observer_list_init(px_observer_list *l)
{
    px_list_init(&l->head);
    l->cursor_next = NULL;
}

void px_observer_subscribe(px_observer_list *l, px_observer_node *n, px_observer obs)
{
    n->obs = obs;
    px_list_push_back(&l->head, &n->link);
}

static px_observer_node *node_after(px_observer_list *l, px_observer_node *n)
{
    px_list *next = n->link.next;
    return next == &l->head ? NULL : PX_CONTAINER_OF(next, px_observer_node, link);
}

/* Unsubscribing the node notify would visit next moves the cursor past it,
 * so an observer may drop itself or any other observer mid-notify. */
void px_observer_unsubscribe(px_observer_list *l, px_observer_node *n)
{
    if (px_list_unlinked(&n->link))
        return;
    if (l->cursor_next == n)
        l->cursor_next = node_after(l, n);
    px_list_del(&n->link);
}

/* Not re-entrant for one list: a notify from inside notify would take over
 * the single cursor. Transport events are never nested that way. */
int px_observer_list_notify(px_observer_list *l, int event, void *data)
{
    int count = 0;
    px_list *first = px_list_first(&l->head);
    l->cursor_next = first ? PX_CONTAINER_OF(first, px_observer_node, link) : NULL;
    while (l->cursor_next) {
        px_observer_node *n = l->cursor_next;
        l->cursor_next = node_after(l, n);
        px_observer_notify(&n->obs, event, data);
        count++;
    }
    return count;
}
