/* Timers on the context's loop, and the clock. */
#include <stdlib.h>
#include <time.h>

#include "core/ctx.h"
#include "plexus/error.h"

/* Owned by the context's user; lives from px_timer_create to px_timer_destroy. */
struct px_timer {
    ev_timer w;
    px_ctx *ctx;
    px_timer_cb cb;
    void *arg;
};

uint64_t px_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    px_timer *t = w->data;
    t->ctx->activity++;
    t->cb(t, t->arg);
}

int px_timer_create(px_ctx *ctx, px_timer_cb cb, void *arg, px_timer **out)
{
    if (!ctx || !cb || !out)
        return -PX_EINVAL;
    px_timer *t = calloc(1, sizeof(*t));
    if (!t)
        return -PX_ENOMEM;
    ev_timer_init(&t->w, on_timer, 0., 0.);
    t->w.data = t;
    t->ctx = ctx;
    t->cb = cb;
    t->arg = arg;
    *out = t;
    return 0;
}

int px_timer_start(px_timer *t, uint64_t after_us, uint64_t repeat_us)
{
    if (!t)
        return -PX_EINVAL;
    ev_timer_stop(t->ctx->loop, &t->w);
    ev_timer_set(&t->w, (double)after_us / 1e6, (double)repeat_us / 1e6);
    ev_timer_start(t->ctx->loop, &t->w);
    return 0;
}

int px_timer_stop(px_timer *t)
{
    if (!t)
        return -PX_EINVAL;
    ev_timer_stop(t->ctx->loop, &t->w);
    return 0;
}

void px_timer_destroy(px_timer *t)
{
    if (!t)
        return;
    ev_timer_stop(t->ctx->loop, &t->w);
    free(t);
}
