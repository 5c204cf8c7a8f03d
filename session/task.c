/* The task cache; see task.h. */
#include <stdlib.h>
#include <string.h>

#include "session/layer.h"
#include "session/task.h"

#define SLAB_TASKS 64

/* One slab of tasks; owned by the cache, freed with the context. */
typedef struct task_slab {
    struct task_slab *next;
    px_task tasks[SLAB_TASKS];
} task_slab;

void task_cache_fini(task_cache *tc)
{
    while (tc->slabs) {
        task_slab *s = tc->slabs;
        tc->slabs = s->next;
        free(s);
    }
}

static int grow(task_cache *tc)
{
    task_slab *s = calloc(1, sizeof(*s));
    if (!s)
        return -1;
    s->next = tc->slabs;
    tc->slabs = s;
    tc->n_slabs++;
    for (int i = SLAB_TASKS - 1; i >= 0; i--) {
        s->tasks[i].send.tp_next = (px_tp_send *)(void *)tc->free; /* send is first */
        tc->free = &s->tasks[i];
    }
    return 0;
}

px_task *task_get(px_ctx *ctx)
{
    task_cache *tc = &layer_of(ctx)->tasks;
    if (!tc->free && grow(tc) < 0)
        return NULL;
    px_task *t = tc->free;
    tc->free = (px_task *)(void *)t->send.tp_next;
    /* Only what every task relies on starts at zero: the caller-owned part of
     * the send request and the task's own state. rx_msg (200 bytes) is set
     * up by the receive side, which alone uses it; transport-owned fields
     * are the transport's to set. */
    memset(&t->send, 0, offsetof(px_tp_send, tp_next));
    t->send.cookie = t;
    px_list_init(&t->link);
    t->conn = NULL;
    t->msg = NULL;
    t->buf = NULL;
    t->kind = t->state = t->in_transport = t->released = 0;
    t->inplace_hdr = t->inplace_data = t->silent = t->auto_answered = 0;
    t->short_reply = t->app_assigned = t->rx_into_app = 0;
    t->reason = 0;
    t->peer_id = 0;
    t->gen = t->gen + 1 ? t->gen + 1 : 1;
    return t;
}

void task_put(px_ctx *ctx, px_task *t)
{
    task_cache *tc = &layer_of(ctx)->tasks;
    t->state = TS_FREE;
    t->send.tp_next = (px_tp_send *)(void *)tc->free;
    tc->free = t;
}
