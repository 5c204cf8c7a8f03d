/* Fan-out of one observable's events to several observers (a nexus shared
 * by the connections of several sessions). The nodes are embedded in the
 * observers; an observer may unsubscribe itself, or another, from inside
 * notify. Single-threaded. */
#ifndef PX_CORE_OBSERVER_H
#define PX_CORE_OBSERVER_H

#include "core/list.h"
#include "plexus/transport.h"

typedef struct px_observer_node {
    px_list link;
    px_observer obs;
} px_observer_node;

typedef struct px_observer_list {
    px_list head;
    px_observer_node *cursor_next; /* the node notify visits next, kept valid on unsubscribe */
} px_observer_list;

void px_observer_list_init(px_observer_list *l);
void px_observer_subscribe(px_observer_list *l, px_observer_node *n, px_observer obs);
void px_observer_unsubscribe(px_observer_list *l, px_observer_node *n);
/* Notify every observer in subscription order; returns how many. */
int px_observer_list_notify(px_observer_list *l, int event, void *data);

static inline int px_observer_notify(const px_observer *o, int event, void *data)
{
    return o->notify(o->self, event, data);
}

#endif
