#include <stdlib.h>
#include <string.h>

#include "session/task.h"

#define SLAB_TASKS 64

/* One slab of tasks; owned by the cache, freed with the context. */
typedef struct slab {
    struct slab *next;
    px_task tasks[SLAB_TASKS];
} slab;

/* The per-context cache (ctx->layer_priv). */
typedef struct task_cache {
    slab *slabs;
    px_task *free; /* threaded through task.send.tp_next */
    size_t n_slabs;
} task_cache;

static void cache_fini(void *priv)
{
    task_cache *tc = priv;
    while (tc->slabs) {
        slab *s = tc->slabs;
        tc->slabs = s->next;
        free(s);
    }
    free(tc);
}

static task_cache *cache_of(px_ctx *ctx)
{
    if (!ctx->layer_priv) {
        task_cache *tc = calloc(1, sizeof(*tc));
        if (!tc)
            return NULL;
        ctx->layer_priv = tc;
        ctx->layer_fini = cache_fini;
    }
    return ctx->layer_priv;
}

static int grow(task_cache *tc)
{
    slab *s = calloc(1, sizeof(*s));
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
    task_cache *tc = cache_of(ctx);
    if (!tc || (!tc->free && grow(tc) < 0))
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
    t->short_reply = t->app_assigned = 0;
    t->peer_id = 0;
    t->gen = t->gen + 1 ? t->gen + 1 : 1;
    return t;
}

void task_put(px_ctx *ctx, px_task *t)
{
    task_cache *tc = ctx->layer_priv;
    t->state = TS_FREE;
    t->send.tp_next = (px_tp_send *)(void *)tc->free;
    tc->free = t;
}
