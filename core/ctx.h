/* The context's internals, for the session layer and core.
 *
 * A px_ctx is owned by the application (px_ctx_create/destroy) and owns its
 * libev loop, its transport instances, its buffer pool, its deferred work
 * queue and its timer heap. Everything here is used on the context's thread
 * only, except what px_ctx_post*, px_ctx_stop and the transports' async
 * wake-ups touch from other threads: the post queue's head (atomic), the
 * async list (guarded by async_lock), wake_pending, posters, closing and
 * stop_req (atomics), and writing wake_fd.
 */
#ifndef PX_CORE_CTX_H
#define PX_CORE_CTX_H

#include <pthread.h>
#include <stdatomic.h>
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

/* A timer on the context (core/timer.c). Every timer plexus runs on a
 * context is one of these: px_timer, the transports' host timers, the
 * session layer's deadlines and ticks. They live in the context's own heap,
 * not libev's, because libev cannot say when its next timer is due and
 * px_ctx_timeout() must; one libev timer is armed for the heap's earliest.
 * Embedded in its owner, which keeps it alive while it is active (stopping
 * it, or its callback having run once for a one-shot, ends that). */
typedef struct px_ctimer {
    struct px_ctimer *child, *next, *prev; /* pairing-heap links (prev: parent or left sibling) */
    px_ctx *ctx;
    uint64_t at_ns;     /* when due, px_now_ns() clock */
    uint64_t repeat_ns; /* 0: one-shot */
    uint64_t seq;       /* start order: equal deadlines fire first started first */
    int active;
    void (*fn)(struct px_ctimer *t);
} px_ctimer;

void px_ctimer_init(px_ctx *ctx, px_ctimer *t, void (*fn)(px_ctimer *t));
/* (Re)start: due after_ns from now, then every repeat_ns (0: once). */
void px_ctimer_start(px_ctimer *t, uint64_t after_ns, uint64_t repeat_ns);
/* Stopping a stopped timer is fine. */
void px_ctimer_stop(px_ctimer *t);
static inline int px_ctimer_active(const px_ctimer *t)
{
    return t->active;
}
/* When the earliest active timer is due (px_now_ns() clock), or 0: none. */
uint64_t px_ctx_next_timer_ns(const px_ctx *ctx);
void px_ctx_timers_init(px_ctx *ctx);
void px_ctx_timers_fini(px_ctx *ctx);

/* A wake-up another thread sends the context (core/wake.c): the transports'
 * host async watchers. Embedded in its owner; between px_ctx_async_init and
 * px_ctx_async_fini it may be sent from any thread, and fn runs on the
 * context's thread, once per burst of sends. */
typedef struct px_ctx_async {
    px_list link; /* on ctx->async_ready while queued; guarded by async_lock */
    px_ctx *ctx;
    void (*fn)(struct px_ctx_async *a);
} px_ctx_async;

void px_ctx_async_init(px_ctx *ctx, px_ctx_async *a, void (*fn)(px_ctx_async *a));
void px_ctx_async_send(px_ctx_async *a); /* any thread */
void px_ctx_async_fini(px_ctx_async *a); /* context's thread; a queued send is dropped */

/* A post's node, the inside of the public px_post_node (core/wake.c). */
typedef struct px_post_item {
    _Atomic(struct px_post_item *) next;
    void (*fn)(void *arg);
    void *arg;
} px_post_item;

/* The wake-up fd and the post queue (core/wake.c): created, drained,
 * closed. px_ctx_wake() makes the context's fd readable (any thread). */
int px_ctx_wake_init(px_ctx *ctx);
void px_ctx_wake_fini(px_ctx *ctx);
void px_ctx_wake(px_ctx *ctx);
/* Refuse new posts and wait for those under way (px_ctx_destroy). */
void px_ctx_wake_close(px_ctx *ctx);

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
    ev_idle idle_w; /* keeps the loop from sleeping while work is deferred */

    /* Timers (core/timer.c): a pairing heap of px_ctimer, and the one libev
     * timer armed for a moment no later than its root. */
    px_ctimer *timer_root;
    unsigned n_timers;
    uint64_t timer_seq;
    uint64_t timer_armed_at; /* what timer_w is armed for; 0: not armed */
    ev_timer timer_w;

    /* Wake-ups from other threads (core/wake.c): an eventfd in the loop,
     * written when wake_pending goes 0 -> 1 and read, then cleared, by the
     * loop. It, not ev_async, because ev_async writes its fd only while
     * the loop sleeps inside ev_run(), and an application sleeping on
     * px_ctx_fd() is not in ev_run(). */
    int wake_fd;
    ev_io wake_w;
    atomic_int wake_pending;
    atomic_int closing;     /* px_ctx_destroy has begun: posts are refused */
    atomic_uint posters;    /* px_ctx_post*() and px_ctx_stop() calls under way */
    char pad_producers[64]; /* keeps the producers' line off the consumer's */
    /* Posts: an intrusive Vyukov MPSC queue. Producers swap post_head;
     * the loop alone pops from post_tail. post_stub keeps it never empty. */
    _Atomic(px_post_item *) post_head;
    char pad_consumer[64];
    px_post_item *post_tail;
    px_post_item post_stub;
    pthread_mutex_t async_lock;
    px_list async_ready; /* px_ctx_async sent and not yet run; guarded by async_lock */

    atomic_int stop_req;
    int running;
    int backend_fd;        /* px_ctx_fd(): libev's epoll fd; -1 before asked, <-1 an error */
    int run_loop_next;     /* the next px_ctx_poll runs libev: the application slept, or arm saw
                              work only libev dispatches (a post, a due timer) */
    int io_dirty;          /* an fd watcher changed since libev last applied changes (fd_reify) */
    int tp_awake;          /* a transport's prepare kept the loop awake (px_ctx_arm reads it) */
    uint64_t last_busy_ns; /* polling mode under px_ctx_arm: last px_ctx_poll that did work */
    uint64_t activity;     /* bumped by every event handled: polling mode's progress signal */
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

/* A post, an async or a stop was signalled and not yet handled. */
static inline int px_ctx_wake_pending(px_ctx *ctx)
{
    return atomic_load_explicit(&ctx->wake_pending, memory_order_acquire);
}

/* The chassis (core/tp_chassis.c): an instance has events to deliver or
 * sends to flush before the loop may sleep. */
int px_tpc_has_work(const px_tp *tp);
/* Run the instance's prepare watcher by hand, as libev would before
 * blocking, if it is active (px_ctx_arm without a libev pass). */
void px_tpc_prepare_now(px_tp *tp);

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
