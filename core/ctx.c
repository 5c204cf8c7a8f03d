/* The context: a libev loop plus the machinery every object on it shares
 * (transport instances, deferred work, cross-thread posts, polling mode). */
#include <stdlib.h>
#include <string.h>

#include "core/ctx.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/opts.h"
#include "core/tp_host.h"
#include "plexus/error.h"

/* A unit of work handed over from another thread; freed after it ran. */
struct post {
    px_list link;
    void (*fn)(void *arg);
    void *arg;
};

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

static void run_posts(px_ctx *ctx)
{
    px_list batch;
    px_list_init(&batch);
    pthread_mutex_lock(&ctx->post_lock);
    px_list_splice_back(&batch, &ctx->posted);
    pthread_mutex_unlock(&ctx->post_lock);
    px_list *n;
    while ((n = px_list_pop_front(&batch)) != NULL) {
        struct post *p = PX_CONTAINER_OF(n, struct post, link);
        ctx->activity++;
        p->fn(p->arg);
        free(p);
    }
}

static void on_async(struct ev_loop *loop, ev_async *w, int revents)
{
    px_ctx *ctx = w->data;
    run_posts(ctx);
    if (__atomic_load_n(&ctx->stop_req, __ATOMIC_ACQUIRE))
        ev_break(loop, EVBREAK_ALL);
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
    ctx->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    if (!ctx->loop) {
        free(ctx);
        return -PX_EMFILE;
    }
    ev_set_userdata(ctx->loop, ctx);
    px_bufpool_init(&ctx->bufs, (size_t)ctx->opts.buf_cache_bytes);
    px_bufpool_set_registrar(&ctx->bufs, &(px_buf_registrar){.min_len = PX_CTX_BUF_REG_MIN,
                                                             .reg = register_pool_buf,
                                                             .dereg = px_mem_deregister,
                                                             .arg = ctx});
    px_list_init(&ctx->regions);
    px_list_init(&ctx->deferred);
    px_list_init(&ctx->posted);
    pthread_mutex_init(&ctx->post_lock, NULL);

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

    ev_async_init(&ctx->async_w, on_async);
    ctx->async_w.data = ctx;
    ev_async_start(ctx->loop, &ctx->async_w);
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
    pthread_mutex_lock(&ctx->post_lock);
    ctx->closing = 1;
    pthread_mutex_unlock(&ctx->post_lock);
    /* What the application no longer owns (server sessions of unbound
     * servers) ends now; its teardown runs as deferred work. */
    for (int round = 0; round < 1000 && ctx->layer_quiesce; round++) {
        if (ctx->layer_quiesce(ctx->layer_priv) == 0)
            break;
        run_deferred(ctx);
    }
    /* Work deferred by objects already gone still refers to them: run it. */
    run_deferred(ctx);
    px_list *n;
    while ((n = px_list_pop_front(&ctx->posted)) != NULL)
        free(PX_CONTAINER_OF(n, struct post, link));
    px_mem_forget_all(ctx); /* pool buffers' too: they are freed last */

    for (unsigned i = 0; i < ctx->n_tps; i++)
        ctx->tps[i].ops->fini(ctx->tps[i].tp);
    if (ctx->layer_fini)
        ctx->layer_fini(ctx->layer_priv);
    ev_ref(ctx->loop);
    ev_prepare_stop(ctx->loop, &ctx->prepare_w);
    ev_async_stop(ctx->loop, &ctx->async_w);
    ev_idle_stop(ctx->loop, &ctx->idle_w);
    ev_loop_destroy(ctx->loop);
    px_bufpool_fini(&ctx->bufs);
    pthread_mutex_destroy(&ctx->post_lock);
    free(ctx);
    return 0;
}

/* One non-blocking pass: the transports' own polling (no syscall for shm,
 * one read per active connection for tcp), then work deferred by what it
 * delivered. libev (an epoll_wait, ~10x a ring check) runs once every
 * POLL_LOOP_EVERY passes, busy or idle, so new connections, timers, posts
 * and quiet fds are still served while a spin notices the peer within a
 * ring check. Returns the events handled. */
#define POLL_LOOP_EVERY 64

static int poll_once(px_ctx *ctx)
{
    uint64_t before = ctx->activity;
    int n = 0;
    for (unsigned i = 0; i < ctx->n_tps; i++)
        n += px_tpc_poll(ctx->tps[i].tp);
    if (!px_list_empty(&ctx->deferred))
        run_deferred(ctx);
    if (++ctx->polls_since_loop >= POLL_LOOP_EVERY || ctx->n_tps == 0) {
        ctx->polls_since_loop = 0;
        ctx->pass_nonblocking = 1;
        ev_run(ctx->loop, EVRUN_NOWAIT);
        ctx->pass_nonblocking = 0;
    }
    return n + (int)(ctx->activity - before);
}

static int stop_requested(px_ctx *ctx)
{
    return __atomic_load_n(&ctx->stop_req, __ATOMIC_ACQUIRE);
}

/* Spin for up to poll_us of idleness, then sleep once in the loop. */
static void iterate(px_ctx *ctx)
{
    if (ctx->opts.poll_us) {
        uint64_t budget = (uint64_t)ctx->opts.poll_us * 1000u;
        uint64_t idle_since = px_now_ns();
        while (!stop_requested(ctx)) {
            if (poll_once(ctx) > 0)
                idle_since = px_now_ns();
            else if (px_now_ns() - idle_since >= budget)
                break;
        }
        if (stop_requested(ctx))
            return;
    }
    ev_run(ctx->loop, EVRUN_ONCE);
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
        iterate(ctx);
    if (timeout_ms >= 0)
        ev_timer_stop(ctx->loop, &tw);
    __atomic_store_n(&ctx->stop_req, 0, __ATOMIC_RELEASE);
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
    return n;
}

int px_ctx_stop(px_ctx *ctx)
{
    if (!ctx)
        return -PX_EINVAL;
    __atomic_store_n(&ctx->stop_req, 1, __ATOMIC_RELEASE);
    ev_async_send(ctx->loop, &ctx->async_w);
    return 0;
}

int px_ctx_fd(px_ctx *ctx)
{
    if (!ctx)
        return -PX_EINVAL;
    /* libev does not expose its backend fd; an embeddable fd needs our
     * own epoll set around it, which is not built yet. */
    return -PX_ENOSYS;
}

int px_ctx_post(px_ctx *ctx, void (*fn)(void *arg), void *arg)
{
    if (!ctx || !fn)
        return -PX_EINVAL;
    struct post *p = malloc(sizeof(*p));
    if (!p)
        return -PX_ENOMEM;
    p->fn = fn;
    p->arg = arg;
    pthread_mutex_lock(&ctx->post_lock);
    if (ctx->closing) {
        pthread_mutex_unlock(&ctx->post_lock);
        free(p);
        return -PX_ECLOSED;
    }
    px_list_push_back(&ctx->posted, &p->link);
    pthread_mutex_unlock(&ctx->post_lock);
    ev_async_send(ctx->loop, &ctx->async_w);
    return 0;
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
