/* The context's internals, for the session layer and core.
 *
 * A px_ctx is owned by the application (px_ctx_create/destroy) and owns its
 * libev loop, its transport instances, its buffer pool and its deferred
 * work queue. Everything here is used on the context's thread only, except
 * the post queue (guarded by post_lock) and stop_req (atomic).
 */
#ifndef PX_CORE_CTX_H
#define PX_CORE_CTX_H

#include <pthread.h>
#include <ev.h>

#include "core/buf.h"
#include "core/list.h"
#include "plexus/context.h"
#include "plexus/transport.h"

#define PX_CTX_MAX_TP 8
/* Pool buffers this large are registered with the transports (core/buf.h):
 * the size where one copy costs more than a registration amortised over a
 * cached buffer's reuses, and where RDMA reads instead of sending inline. */
#define PX_CTX_BUF_REG_MIN ((size_t)64 << 10)

/* Work to run on the context's thread at the end of the current loop
 * iteration (before the loop sleeps): used to deliver completions outside
 * the API call that caused them. The node is embedded in its owner, so
 * deferring never allocates; a node already queued is not queued twice. */
typedef struct px_deferred {
    px_list link;
    void (*fn)(struct px_deferred *d);
} px_deferred;

/* One transport instance of a context, with the host table it was given
 * (its own: `slot` says which px_mr.tp_handle[] is its). */
typedef struct px_ctx_tp {
    const px_transport *ops;
    px_tp *tp;
    px_tp_host host;
    unsigned slot;
    px_tp_caps caps; /* asked once, when the instance starts */
} px_ctx_tp;

/* The instance a host table belongs to. */
static inline px_ctx_tp *px_ctx_tp_of(const px_tp_host *h)
{
    return PX_CONTAINER_OF((void *)h, px_ctx_tp, host);
}

struct px_ctx {
    struct ev_loop *loop;
    px_ctx_opts opts;
    px_bufpool bufs;

    px_ctx_tp tps[PX_CTX_MAX_TP];
    unsigned n_tps;
    px_list regions; /* px_mr.link: every memory region, registered with every instance */

    px_list deferred; /* px_deferred, FIFO */
    ev_prepare prepare_w;
    ev_idle idle_w;   /* keeps the loop from sleeping while work is deferred */
    ev_async async_w; /* wakes the loop for posts and stop */

    pthread_mutex_t post_lock;
    px_list posted; /* struct post nodes, guarded by post_lock */
    int closing;    /* guarded by post_lock: posts are refused */

    int stop_req; /* atomic */
    int running;
    uint64_t activity;         /* bumped by every event handled: polling mode's progress signal */
    unsigned polls_since_loop; /* polling passes since libev last ran */
    int pass_nonblocking;      /* px_tp_host.pass_nonblocking points here */
    int in_prepare;     /* the context's prepare watcher is running (see the chassis's arm) */
    unsigned n_objects; /* servers + sessions alive on this context */

    /* State an upper layer keeps per context (the session layer's task
     * cache), freed by layer_fini at destroy. Core never looks inside.
     * layer_quiesce, at destroy, starts ending what the layer still has
     * that the application no longer owns and returns how many objects are
     * left (destroy runs deferred work until it says 0). */
    void *layer_priv;
    void (*layer_fini)(void *layer_priv);
    unsigned (*layer_quiesce)(void *layer_priv);
};

/* The context's instance of transport `ops`, created on first use (and
 * given every memory region of the context). Returns 0; -PX_ETOOMANY; the
 * transport's init error. The caller found `ops` in the registry: core
 * does not call up into it. */
int px_ctx_instance(px_ctx *ctx, const px_transport *ops, px_ctx_tp **out);

/* Queue d to run at the end of this iteration (no-op if already queued). */
void px_ctx_defer(px_ctx *ctx, px_deferred *d);
/* Remove d if queued. */
void px_ctx_undefer(px_deferred *d);
static inline void px_deferred_init(px_deferred *d, void (*fn)(px_deferred *))
{
    px_list_init(&d->link);
    d->fn = fn;
}

/* Count of live servers and client sessions (what the application owns):
 * px_ctx_destroy refuses while nonzero. */
static inline void px_ctx_ref(px_ctx *ctx)
{
    ctx->n_objects++;
}
static inline void px_ctx_unref(px_ctx *ctx)
{
    ctx->n_objects--;
}

#endif
