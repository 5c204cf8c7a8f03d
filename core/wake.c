/* Wake-ups from other threads: posts (px_ctx_post, px_ctx_post_node), the
 * transports' async watchers, px_ctx_stop.
 *
 * Each producer queues its work, then calls px_ctx_wake(), which writes
 * the context's eventfd only when wake_pending goes from 0 to 1. The loop
 * watches the eventfd with an ev_io, so both px_ctx_run() and an
 * application sleeping on px_ctx_fd() (libev's epoll fd, which contains
 * it) wake. The loop reads the eventfd, clears wake_pending, then runs
 * what was queued: a producer that queued after the clear sees 0 and
 * writes again, one that queued before has its work seen by this run
 * (the clear is an RMW that reads, and synchronizes with, every earlier
 * producer's exchange).
 *
 * Posts go through an intrusive Vyukov MPSC queue (lock-free: one
 * exchange per push, no allocation, FIFO per producer). The async
 * watchers, few and unqueued by px_ctx_async_fini, go on a mutex-guarded
 * list instead: a node in the middle of a Vyukov queue cannot be taken
 * out. */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/ctx.h"
#include "core/log.h"
#include "plexus/error.h"

_Static_assert(sizeof(px_post_item) <= sizeof(px_post_node), "px_post_node too small");
_Static_assert(_Alignof(px_post_item) <= _Alignof(px_post_node), "px_post_node misaligned");

/* Posts the loop runs per wake-up at most: a function that posts itself
 * again must not keep one iteration from ending. */
#define POSTS_PER_WAKE 1024

static px_post_item *item_of(px_post_node *n)
{
    return (px_post_item *)(void *)n;
}

/* ---- the MPSC queue (Dmitry Vyukov's intrusive node-based queue) -------------------- */

static void mpsc_push(px_ctx *ctx, px_post_item *n)
{
    atomic_store_explicit(&n->next, NULL, memory_order_relaxed);
    px_post_item *prev = atomic_exchange_explicit(&ctx->post_head, n, memory_order_acq_rel);
    atomic_store_explicit(&prev->next, n, memory_order_release);
}

/* The oldest item, detached (nothing refers to it any more: its owner may
 * reuse it at once), or NULL: empty, or a producer is between its exchange
 * and its link; that producer's px_ctx_wake() follows, so the loop comes
 * back. The loop's thread only. */
static px_post_item *mpsc_pop(px_ctx *ctx)
{
    px_post_item *tail = ctx->post_tail;
    px_post_item *next = atomic_load_explicit(&tail->next, memory_order_acquire);
    if (tail == &ctx->post_stub) {
        if (!next)
            return NULL;
        ctx->post_tail = tail = next;
        next = atomic_load_explicit(&next->next, memory_order_acquire);
    }
    if (next) {
        ctx->post_tail = next;
        return tail;
    }
    if (tail != atomic_load_explicit(&ctx->post_head, memory_order_acquire))
        return NULL;
    /* tail is the last item: put the stub behind it so it can leave. */
    mpsc_push(ctx, &ctx->post_stub);
    next = atomic_load_explicit(&tail->next, memory_order_acquire);
    if (!next)
        return NULL;
    ctx->post_tail = next;
    return tail;
}

static void run_posts(px_ctx *ctx)
{
    px_post_item *it;
    for (int n = 0; n < POSTS_PER_WAKE; n++) {
        if (!(it = mpsc_pop(ctx)))
            return;
        /* Read before the call: fn may reuse its node. */
        void (*fn)(void *) = it->fn;
        void *arg = it->arg;
        ctx->activity++;
        fn(arg);
    }
    px_ctx_wake(ctx); /* more may wait: come back next iteration */
}

/* ---- the async watchers -------------------------------------------------------------- */

void px_ctx_async_init(px_ctx *ctx, px_ctx_async *a, void (*fn)(px_ctx_async *a))
{
    px_list_init(&a->link);
    a->ctx = ctx;
    a->fn = fn;
}

void px_ctx_async_send(px_ctx_async *a)
{
    px_ctx *ctx = a->ctx;
    pthread_mutex_lock(&ctx->async_lock);
    int queue = px_list_unlinked(&a->link);
    if (queue)
        px_list_push_back(&ctx->async_ready, &a->link);
    pthread_mutex_unlock(&ctx->async_lock);
    if (queue)
        px_ctx_wake(ctx);
}

void px_ctx_async_fini(px_ctx_async *a)
{
    pthread_mutex_lock(&a->ctx->async_lock);
    px_list_del(&a->link);
    pthread_mutex_unlock(&a->ctx->async_lock);
}

/* One at a time, unlinked under the lock before its call: a callback may
 * fini any watcher or send its own again. Those sent while this runs wait
 * for the next wake-up (theirs), so the loop always ends. */
static void run_asyncs(px_ctx *ctx)
{
    px_list batch;
    px_list_init(&batch);
    pthread_mutex_lock(&ctx->async_lock);
    px_list_splice_back(&batch, &ctx->async_ready);
    pthread_mutex_unlock(&ctx->async_lock);
    for (;;) {
        pthread_mutex_lock(&ctx->async_lock);
        px_list *n = px_list_pop_front(&batch);
        pthread_mutex_unlock(&ctx->async_lock);
        if (!n)
            return;
        ctx->activity++;
        PX_CONTAINER_OF(n, px_ctx_async, link)->fn(PX_CONTAINER_OF(n, px_ctx_async, link));
    }
}

/* ---- the eventfd ---------------------------------------------------------------------- */

void px_ctx_wake(px_ctx *ctx)
{
    if (atomic_exchange_explicit(&ctx->wake_pending, 1, memory_order_acq_rel))
        return; /* already signalled, not yet handled */
    uint64_t one = 1;
    while (write(ctx->wake_fd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
}

static void on_wake(struct ev_loop *loop, ev_io *w, int revents)
{
    px_ctx *ctx = w->data;
    uint64_t v;
    while (read(ctx->wake_fd, &v, sizeof(v)) < 0 && errno == EINTR)
        ;
    atomic_exchange_explicit(&ctx->wake_pending, 0, memory_order_acq_rel);
    run_asyncs(ctx);
    run_posts(ctx);
    if (atomic_load_explicit(&ctx->stop_req, memory_order_acquire))
        ev_break(loop, EVBREAK_ALL);
}

int px_ctx_wake_init(px_ctx *ctx)
{
    ctx->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (ctx->wake_fd < 0)
        return errno == ENFILE ? -PX_ENFILE : errno == ENOMEM ? -PX_ENOMEM : -PX_EMFILE;
    atomic_init(&ctx->post_stub.next, NULL);
    atomic_init(&ctx->post_head, &ctx->post_stub);
    ctx->post_tail = &ctx->post_stub;
    pthread_mutex_init(&ctx->async_lock, NULL);
    px_list_init(&ctx->async_ready);
    ev_io_init(&ctx->wake_w, on_wake, ctx->wake_fd, EV_READ);
    ctx->wake_w.data = ctx;
    ev_io_start(ctx->loop, &ctx->wake_w);
    return 0;
}

/* What px_ctx_post() allocated (the caller-owned nodes are the caller's). */
static void run_heap_post(void *arg);

void px_ctx_wake_close(px_ctx *ctx)
{
    atomic_store_explicit(&ctx->closing, 1, memory_order_seq_cst);
    while (atomic_load_explicit(&ctx->posters, memory_order_seq_cst))
        sched_yield(); /* a post between its check and its wake: a few instructions */
}

void px_ctx_wake_fini(px_ctx *ctx)
{
    px_post_item *it;
    /* No producer is left (px_ctx_wake_close), so the queue is whole. */
    while ((it = mpsc_pop(ctx)) != NULL)
        if (it->fn == run_heap_post)
            free(it->arg);
    ev_io_stop(ctx->loop, &ctx->wake_w);
    close(ctx->wake_fd);
    pthread_mutex_destroy(&ctx->async_lock);
}

/* ---- the public calls ----------------------------------------------------------------- */

/* Enter a producer's call: 0, or -PX_ECLOSED once destroy has begun (it
 * then waits for those that entered). */
static int producer_enter(px_ctx *ctx)
{
    atomic_fetch_add_explicit(&ctx->posters, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&ctx->closing, memory_order_seq_cst)) {
        atomic_fetch_sub_explicit(&ctx->posters, 1, memory_order_release);
        return -PX_ECLOSED;
    }
    return 0;
}

static void producer_leave(px_ctx *ctx)
{
    atomic_fetch_sub_explicit(&ctx->posters, 1, memory_order_release);
}

int px_ctx_post_node(px_ctx *ctx, px_post_node *node, void (*fn)(void *arg), void *arg)
{
    if (!ctx || !node || !fn)
        return -PX_EINVAL;
    int rc = producer_enter(ctx);
    if (rc < 0)
        return rc;
    px_post_item *it = item_of(node);
    it->fn = fn;
    it->arg = arg;
    mpsc_push(ctx, it);
    px_ctx_wake(ctx);
    producer_leave(ctx);
    return 0;
}

/* A px_ctx_post(): the node and what to call, freed before the call. */
struct heap_post {
    px_post_node node;
    void (*fn)(void *arg);
    void *arg;
};

static void run_heap_post(void *arg)
{
    struct heap_post *p = arg;
    void (*fn)(void *) = p->fn;
    void *fn_arg = p->arg;
    free(p);
    fn(fn_arg);
}

int px_ctx_post(px_ctx *ctx, void (*fn)(void *arg), void *arg)
{
    if (!ctx || !fn)
        return -PX_EINVAL;
    struct heap_post *p = malloc(sizeof(*p));
    if (!p)
        return -PX_ENOMEM;
    p->fn = fn;
    p->arg = arg;
    int rc = px_ctx_post_node(ctx, &p->node, run_heap_post, p);
    if (rc < 0)
        free(p);
    return rc;
}

int px_ctx_stop(px_ctx *ctx)
{
    if (!ctx)
        return -PX_EINVAL;
    if (producer_enter(ctx) < 0)
        return 0; /* being destroyed: nothing runs to stop */
    atomic_store_explicit(&ctx->stop_req, 1, memory_order_release);
    px_ctx_wake(ctx);
    producer_leave(ctx);
    return 0;
}
