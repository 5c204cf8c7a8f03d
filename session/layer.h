/* The session layer's per-context state; see layer.c. */
#ifndef PX_SESSION_LAYER_H
#define PX_SESSION_LAYER_H

#include <stddef.h>
#include <string.h>

#include "core/ctx.h"
#include "session/task.h"

typedef struct px_layer {
    task_cache tasks;
    px_list orphans;   /* px_session.server_link: server sessions of unbound servers */
    void **quarantine; /* debug builds: retired handles, a ring */
    unsigned n_quarantined;
    px_list conns;        /* every px_conn of the context (px_conn.layer_link) */
    px_conn_stats closed; /* the counters of its connections already freed */
    uint64_t conns_opened, conns_closed;
    px_list links;         /* client links others may join (px_nexus.layer_link) */
    uint64_t links_opened; /* every link the context made or accepted */
    uint64_t links_open;
} px_layer;

/* Create the context's layer state if it has none. Returns 0; -PX_ENOMEM. */
int layer_ensure(px_ctx *ctx);
/* The context's layer state (layer_ensure() ran before). Inline: every
 * task taken and given back asks for it. */
static inline px_layer *layer_of(px_ctx *ctx)
{
    return ctx->layer_priv;
}

/* A zeroed task with gen bumped, or NULL when memory is exhausted. Inline,
 * as is task_put(): every message takes a task and gives it back, and a
 * call each way cost more than the work. */
static inline px_task *task_get(px_ctx *ctx)
{
    task_cache *tc = &layer_of(ctx)->tasks;
    if (__builtin_expect(!tc->free, 0) && task_cache_grow(tc) < 0)
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

static inline void task_put(px_ctx *ctx, px_task *t)
{
    task_cache *tc = &layer_of(ctx)->tasks;
    t->state = TS_FREE;
    t->send.tp_next = (px_tp_send *)(void *)tc->free;
    tc->free = t;
}

#endif
