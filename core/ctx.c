/* The context: a libev loop plus the machinery every object on it shares
 * (transport instances, deferred work, polling mode), and the calls that
 * let an application drive it from its own loop (px_ctx_fd, px_ctx_arm,
 * px_ctx_timeout). Timers are core/timer.c, cross-thread wake-ups
 * core/wake.c. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/ctx.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/opts.h"
#include "core/tp_host.h"
#include "plexus/error.h"

static void run_deferred(px_ctx *ctx)
{
    /* Deferred work may defer more; a bounded number of rounds keeps one
     * iteration from spinning forever, and the idle watcher picks up the
     * rest on the next one. */
    for (int round = 0; round < 64 && !px_list_empty(&ctx->deferred); round++) {
        px_list batch;
        px_list_init(&batch);
        px_list_splice_back(&batch, &ctx->deferred);
        px_list *n;
        while ((n = px_list_pop_front(&batch)) != NULL) {
            px_deferred *d = PX_CONTAINER_OF(n, px_deferred, link);
            ctx->activity++;
            d->fn(d);
        }
    }
    if (px_list_empty(&ctx->deferred))
        ev_idle_stop(ctx->loop, &ctx->idle_w);
}

static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    px_ctx *ctx = w->data;
    ctx->in_prepare = 1;
    run_deferred(ctx);
    ctx->in_prepare = 0;
}

static void on_idle(struct ev_loop *loop, ev_idle *w, int revents)
{
    run_deferred(w->data);
}

/* Large pool buffers are registered regions (see core/buf.h). */
static int register_pool_buf(void *arg, void *addr, size_t len, px_mr **out)
{
    int rc = px_mem_register(arg, addr, len, out);
    if (rc == 0)
        (*out)->pooled = 1;
    return rc;
}

static void init_host(px_ctx *ctx, px_tp_host *h)
{
    h->ops = &px_tp_host_table;
    h->priv = ctx;
    h->limits.max_hdr = ctx->opts.max_header_size;
    h->limits.max_data = (uint32_t)ctx->opts.max_msg_size;
    h->inline_threshold = ctx->opts.inline_threshold;
    h->pass_nonblocking = &ctx->pass_nonblocking;
}

/* The loop: libev's epoll backend, whose fd px_ctx_fd() hands out. Where
 * epoll cannot be had (LIBEV_FLAGS chose another backend, an old kernel
 * where libev will not embed epoll) any backend runs the context, and
 * px_ctx_fd() says -PX_EOPNOTSUPP. */
static struct ev_loop *new_loop(void)
{
    struct ev_loop *loop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOSIGMASK);
    return loop ? loop : ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
}

static void init_watchers(px_ctx *ctx)
{
    ev_prepare_init(&ctx->prepare_w, on_prepare);
    ctx->prepare_w.data = ctx;
    /* Before any transport's own prepare watcher: sends made by deferred
     * completions then leave in this same iteration's flush. */
    ev_set_priority(&ctx->prepare_w, EV_MAXPRI);
    ev_prepare_start(ctx->loop, &ctx->prepare_w);
    ev_unref(ctx->loop);

    ev_idle_init(&ctx->idle_w, on_idle);
    ctx->idle_w.data = ctx;
    ev_set_priority(&ctx->idle_w, EV_MAXPRI);
    px_ctx_timers_init(ctx);
}

int px_ctx_create(const px_ctx_opts *opts, px_ctx **out)
{
    if (!out)
        return -PX_EINVAL;
    px_ctx *ctx = calloc(1, sizeof(*ctx));
    if (!ctx)
        return -PX_ENOMEM;
    int rc = px_ctx_opts_resolve(opts, &ctx->opts);
    if (rc < 0) {
        free(ctx);
        return rc;
    }
    ctx->loop = new_loop();
    if (!ctx->loop) {
        free(ctx);
        return -PX_EMFILE;
    }
    ev_set_userdata(ctx->loop, ctx);
    ctx->io_dirty = 1; /* the wake-up fd's watcher, started next */
    rc = px_ctx_wake_init(ctx);
    if (rc < 0) {
        ev_loop_destroy(ctx->loop);
        free(ctx);
        return rc;
    }
    ctx->backend_fd = -1;
    px_bufpool_init(&ctx->bufs, (size_t)ctx->opts.buf_cache_bytes);
    px_bufpool_set_registrar(&ctx->bufs, &(px_buf_registrar){.min_len = PX_CTX_BUF_REG_MIN,
                                                             .reg = register_pool_buf,
                                                             .dereg = px_mem_deregister,
                                                             .arg = ctx});
    px_list_init(&ctx->regions);
    px_list_init(&ctx->deferred);
    init_watchers(ctx);
    *out = ctx;
    return 0;
}

int px_ctx_destroy(px_ctx *ctx)
{
    if (!ctx)
        return -PX_EINVAL;
    if (ctx->n_objects)
        return -PX_EBUSY;
    if (ctx->running)
        return -PX_EBUSY;
    px_ctx_wake_close(ctx); /* posts are refused from here on */
    /* What the application no longer owns (server sessions of unbound
     * servers) ends now; its teardown runs as deferred work. */
    for (int round = 0; round < 1000 && ctx->layer_quiesce; round++) {
        if (ctx->layer_quiesce(ctx->layer_priv) == 0)
            break;
        run_deferred(ctx);
    }
    /* Work deferred by objects already gone still refers to them: run it. */
    run_deferred(ctx);
    px_mem_forget_all(ctx); /* pool buffers' too: they are freed last */

    for (unsigned i = 0; i < ctx->n_tps; i++)
        ctx->tps[i].ops->fini(ctx->tps[i].tp);
    if (ctx->layer_fini)
        ctx->layer_fini(ctx->layer_priv);
    px_ctx_wake_fini(ctx); /* drops what is still posted */
    px_ctx_timers_fini(ctx);
    ev_ref(ctx->loop);
    ev_prepare_stop(ctx->loop, &ctx->prepare_w);
    ev_idle_stop(ctx->loop, &ctx->idle_w);
    ev_loop_destroy(ctx->loop);
    px_bufpool_fini(&ctx->bufs);
    free(ctx);
    return 0;
}

/* Every libev pass goes through here: it applies the watchers' fd changes
 * to the epoll set before it polls, so those made before it are applied;
 * those its callbacks make set io_dirty again. */
static void loop_run(px_ctx *ctx, int flags)
{
    ctx->io_dirty = 0;
    ev_run(ctx->loop, flags);
}

/* One non-blocking pass: the transports' own polling (no syscall for shm,
 * one read per active connection for tcp), then work deferred by what it
 * delivered. libev (an epoll_wait, ~10x a ring check) runs once every
 * POLL_LOOP_EVERY passes, busy or idle, so new connections, timers, posts
 * and quiet fds are still served while a spin notices the peer within a
 * ring check; and on the first pass after px_ctx_arm() let the
 * application sleep, which woke for something only libev can see. Returns
 * the events handled. */
#define POLL_LOOP_EVERY 64

static int poll_once(px_ctx *ctx)
{
    uint64_t before = ctx->activity;
    int n = 0;
    for (unsigned i = 0; i < ctx->n_tps; i++)
        n += px_tpc_poll(ctx->tps[i].tp);
    if (!px_list_empty(&ctx->deferred))
        run_deferred(ctx);
    if (ctx->run_loop_next || ++ctx->polls_since_loop >= POLL_LOOP_EVERY || ctx->n_tps == 0) {
        ctx->run_loop_next = 0;
        ctx->polls_since_loop = 0;
        ctx->pass_nonblocking = 1;
        loop_run(ctx, EVRUN_NOWAIT);
        ctx->pass_nonblocking = 0;
    }
    return n + (int)(ctx->activity - before);
}

static int stop_requested(px_ctx *ctx)
{
    return atomic_load_explicit(&ctx->stop_req, memory_order_acquire);
}

/* Spin for up to poll_us of idleness, then sleep once in the loop. The
 * run's timeout may fire in a spin's libev pass: its ev_break ends only
 * that pass, so the spin stops on the flag itself, and the loop is not
 * entered to sleep (it would wait for whatever timer came next). */
static void iterate(px_ctx *ctx, const int *timed_out)
{
    if (ctx->opts.poll_us) {
        uint64_t budget = (uint64_t)ctx->opts.poll_us * 1000u;
        uint64_t idle_since = px_now_ns();
        while (!stop_requested(ctx) && !*timed_out) {
            if (poll_once(ctx) > 0)
                idle_since = px_now_ns();
            else if (px_now_ns() - idle_since >= budget)
                break;
        }
        if (stop_requested(ctx) || *timed_out)
            return;
    }
    loop_run(ctx, EVRUN_ONCE);
}

static void on_run_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    *(int *)w->data = 1;
    ev_break(loop, EVBREAK_ALL);
}

int px_ctx_run_timeout(px_ctx *ctx, int timeout_ms)
{
    if (!ctx)
        return -PX_EINVAL;
    if (ctx->running)
        return -PX_EBUSY;
    ctx->running = 1;
    int timed_out = 0;
    ev_timer tw;
    /* The loop's clock stands where it last ran, perhaps long ago: a
     * timeout counted from there would expire at once. */
    ev_now_update(ctx->loop);
    if (timeout_ms >= 0) {
        ev_timer_init(&tw, on_run_timeout, timeout_ms / 1000.0, 0.);
        tw.data = &timed_out;
        ev_timer_start(ctx->loop, &tw);
    }
    while (!stop_requested(ctx) && !timed_out)
        iterate(ctx, &timed_out);
    if (timeout_ms >= 0)
        ev_timer_stop(ctx->loop, &tw);
    atomic_store_explicit(&ctx->stop_req, 0, memory_order_release);
    ctx->running = 0;
    return timed_out ? -PX_ETIMEDOUT : 0;
}

int px_ctx_run(px_ctx *ctx)
{
    return px_ctx_run_timeout(ctx, -1);
}

int px_ctx_poll(px_ctx *ctx)
{
    if (!ctx)
        return -PX_EINVAL;
    if (ctx->running)
        return -PX_EBUSY;
    ctx->running = 1;
    int n = poll_once(ctx);
    ctx->running = 0;
    if (n > 0 && ctx->opts.poll_us)
        ctx->last_busy_ns = px_now_ns();
    return n;
}

/* ---- driving the context from the application's own loop ------------------------ */

/* libev hands its backend fd to one public place: an ev_embed watcher,
 * started on another loop, watches the embedded loop's backend fd with its
 * ev_io member, whose fd field ev.h declares readable. A throwaway outer
 * loop on the poll backend (no fd of its own) is enough: starting the
 * watcher only records the fd in that loop's tables, which never reach
 * the kernel because the loop never runs; stopping and destroying it
 * touches nothing of ours. */
static int find_backend_fd(struct ev_loop *loop)
{
    if (ev_backend(loop) != EVBACKEND_EPOLL || !(ev_embeddable_backends() & EVBACKEND_EPOLL)) {
        PX_LOGW("px_ctx_fd: the context's loop is not on libev's embeddable epoll backend "
                "(LIBEV_FLAGS? backend %#x): no fd to offer",
                ev_backend(loop));
        return -PX_EOPNOTSUPP;
    }
    struct ev_loop *outer = ev_loop_new(EVBACKEND_POLL | EVFLAG_NOENV | EVFLAG_NOSIGMASK);
    if (!outer)
        outer = ev_loop_new(EVFLAG_NOENV | EVFLAG_NOSIGMASK);
    if (!outer)
        return -PX_ENOMEM;
    ev_embed e;
    ev_embed_init(&e, NULL, loop);
    ev_embed_start(outer, &e);
    int fd = e.io.fd;
    ev_embed_stop(outer, &e);
    ev_loop_destroy(outer);
    return fd >= 0 ? fd : -PX_EOPNOTSUPP;
}

int px_ctx_fd(px_ctx *ctx)
{
    if (!ctx)
        return -PX_EINVAL;
    if (ctx->backend_fd != -1)
        return ctx->backend_fd;
    int fd = find_backend_fd(ctx->loop);
    if (fd >= 0 || fd == -PX_EOPNOTSUPP) /* the answer for the context's life */
        ctx->backend_fd = fd;
    return fd;
}

/* Events handled so far, the context's and every instance's upcalls. */
static uint64_t progress_mark(const px_ctx *ctx)
{
    uint64_t m = ctx->activity;
    for (unsigned i = 0; i < ctx->n_tps; i++)
        m += ctx->tps[i].tp->nevents;
    return m;
}

/* Work only a libev pass dispatches: an event libev holds pending, a post,
 * async or stop signalled and not yet handled, a due timer. */
static int loop_work_pending(px_ctx *ctx)
{
    if (ev_pending_count(ctx->loop) || px_ctx_wake_pending(ctx))
        return 1;
    uint64_t at = px_ctx_next_timer_ns(ctx);
    return at && at <= px_now_ns();
}

/* Is there work the loop would do without waiting for the kernel? What
 * keeps px_ctx_run() from sleeping: deferred work, a transport's events to
 * deliver or sends to flush, or loop_work_pending. */
static int work_pending(px_ctx *ctx)
{
    if (!px_list_empty(&ctx->deferred))
        return 1;
    for (unsigned i = 0; i < ctx->n_tps; i++)
        if (px_tpc_has_work(ctx->tps[i].tp))
            return 1;
    return loop_work_pending(ctx);
}

/* Polling mode: px_ctx_run() spins poll_us of idleness before sleeping,
 * and so does an application loop that arms. */
static int still_spinning(const px_ctx *ctx)
{
    return ctx->opts.poll_us &&
           px_now_ns() - ctx->last_busy_ns < (uint64_t)ctx->opts.poll_us * 1000u;
}

/* libev's prepare phase, by hand: the context's watcher first (EV_MAXPRI:
 * deferred work), then each instance's (flushes, hot conns, the prepare op
 * with may_block set: shm raises its "going to sleep" flag). */
static void prepare_phase(px_ctx *ctx)
{
    if (!px_list_empty(&ctx->deferred)) {
        ctx->in_prepare = 1;
        run_deferred(ctx);
        ctx->in_prepare = 0;
    }
    for (unsigned i = 0; i < ctx->n_tps; i++)
        px_tpc_prepare_now(ctx->tps[i].tp);
}

/* What the loop does before it blocks, without blocking: the prepare
 * phase, then, when an fd watcher changed since libev last ran, a libev
 * pass that applies the changes to the epoll set (only ev_run does it:
 * fd_reify) and collects what is ready without waiting (it runs the
 * prepare phase itself then). The application may sleep only if nothing
 * happened, nothing is left and the epoll set is up to date. Without fd
 * changes no syscall is made. */
static int arm_pass(px_ctx *ctx)
{
    uint64_t before = progress_mark(ctx);
    ctx->tp_awake = 0;
    ctx->pass_nonblocking = 0;
    if (!ctx->io_dirty)
        prepare_phase(ctx);
    if (ctx->io_dirty)
        loop_run(ctx, EVRUN_NOWAIT);
    return progress_mark(ctx) != before || ctx->tp_awake || ctx->io_dirty || work_pending(ctx);
}

int px_ctx_arm(px_ctx *ctx)
{
    if (!ctx)
        return -PX_EINVAL;
    int fd = px_ctx_fd(ctx);
    if (fd < 0)
        return fd;
    if (ctx->running)
        return -PX_EBUSY;
    int busy = still_spinning(ctx) || work_pending(ctx);
    if (!busy) {
        ctx->running = 1;
        busy = arm_pass(ctx);
        ctx->running = 0;
    }
    /* After a sleep, or for a post or timer, the next poll runs libev. */
    if (!busy || loop_work_pending(ctx))
        ctx->run_loop_next = 1;
    return busy;
}

int px_ctx_timeout(px_ctx *ctx)
{
    if (!ctx)
        return -PX_EINVAL;
    if (work_pending(ctx))
        return 0;
    uint64_t at = px_ctx_next_timer_ns(ctx);
    if (!at)
        return -1;
    uint64_t now = px_now_ns();
    if (at <= now)
        return 0;
    /* Rounded up, as libev rounds its own epoll timeout: waking a little
     * early would find the timer not yet due and spin until it is. */
    uint64_t ms = (at - now + 999999u) / 1000000u;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

void px_ctx_defer(px_ctx *ctx, px_deferred *d)
{
    if (!px_list_unlinked(&d->link))
        return;
    px_list_push_back(&ctx->deferred, &d->link);
    if (!ev_is_active(&ctx->idle_w))
        ev_idle_start(ctx->loop, &ctx->idle_w);
}

void px_ctx_undefer(px_deferred *d)
{
    px_list_del(&d->link);
}

int px_ctx_instance(px_ctx *ctx, const px_transport *ops, px_ctx_tp **out)
{
    for (unsigned i = 0; i < ctx->n_tps; i++) {
        if (ctx->tps[i].ops == ops) {
            *out = &ctx->tps[i];
            return 0;
        }
    }
    if (ctx->n_tps == PX_CTX_MAX_TP)
        return -PX_ETOOMANY;
    px_ctx_tp *slot = &ctx->tps[ctx->n_tps];
    slot->slot = ctx->n_tps;
    init_host(ctx, &slot->host);
    int rc = ops->init(&slot->host, &slot->tp);
    if (rc < 0) {
        PX_LOGW("transport %s: init failed: %s", ops->name, px_strerror(rc));
        return rc;
    }
    slot->ops = ops;
    ops->get_caps(slot->tp, &slot->caps);
    ctx->n_tps++;
    px_mem_register_with(ctx, slot);
    *out = slot;
    return 0;
}
