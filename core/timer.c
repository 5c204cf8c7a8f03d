/* Timers on the context, and the clock.
 *
 * Every timer of a context (px_timer, the transports' host timers, the
 * session layer's) is a px_ctimer in the context's own pairing heap: libev
 * keeps its timers in a heap it does not show, and px_ctx_timeout() must
 * know the earliest deadline. One libev timer (timer_w) is armed for a
 * moment no later than the heap's root; when it fires, every due timer
 * runs and it is armed again. A pairing heap because its nodes are
 * intrusive: starting a timer never allocates. */
#include <stdlib.h>
#include <time.h>

#include "core/ctx.h"
#include "plexus/error.h"

/* Owned by the context's user; lives from px_timer_create to px_timer_destroy. */
struct px_timer {
    px_ctimer t;
    px_timer_cb cb;
    void *arg;
};

uint64_t px_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the pairing heap ------------------------------------------------------------ */

static int earlier(const px_ctimer *a, const px_ctimer *b)
{
    return a->at_ns < b->at_ns || (a->at_ns == b->at_ns && a->seq < b->seq);
}

/* Two roots (no siblings, no parent) into one. */
static px_ctimer *meld(px_ctimer *a, px_ctimer *b)
{
    if (!a)
        return b;
    if (!b)
        return a;
    if (earlier(b, a)) {
        px_ctimer *t = a;
        a = b;
        b = t;
    }
    b->prev = a;
    b->next = a->child;
    if (a->child)
        a->child->prev = b;
    a->child = b;
    return a;
}

/* The children of a removed node, melded in two passes (left to right in
 * pairs, then the pairs right to left), iteratively: a long sibling list
 * must not recurse. */
static px_ctimer *merge_pairs(px_ctimer *first)
{
    px_ctimer *pairs = NULL; /* melded pairs, last first, linked by next */
    while (first) {
        px_ctimer *a = first, *b = first->next;
        first = b ? b->next : NULL;
        a->next = a->prev = NULL;
        if (b)
            b->next = b->prev = NULL;
        px_ctimer *m = meld(a, b);
        m->next = pairs;
        pairs = m;
    }
    px_ctimer *root = NULL;
    while (pairs) {
        px_ctimer *n = pairs->next;
        pairs->next = NULL;
        root = meld(root, pairs);
        pairs = n;
    }
    return root;
}

static void heap_insert(px_ctx *ctx, px_ctimer *t)
{
    t->child = t->next = t->prev = NULL;
    ctx->timer_root = meld(ctx->timer_root, t);
    ctx->n_timers++;
}

static void heap_remove(px_ctx *ctx, px_ctimer *t)
{
    if (t == ctx->timer_root) {
        ctx->timer_root = merge_pairs(t->child);
    } else {
        if (t->prev->child == t)
            t->prev->child = t->next; /* first child: prev is the parent */
        else
            t->prev->next = t->next;
        if (t->next)
            t->next->prev = t->prev;
        ctx->timer_root = meld(ctx->timer_root, merge_pairs(t->child));
    }
    t->child = t->next = t->prev = NULL;
    ctx->n_timers--;
}

/* ---- the libev timer that wakes the loop for the root ----------------------------- */

/* Arm timer_w for the root when it is earlier than what timer_w waits for.
 * A later root (the earliest stopped) leaves it early: it fires, finds
 * nothing due and is armed again, which costs less than re-arming on every
 * stop of a request's timer. libev counts `after` from its cached clock,
 * which lags: take our clock first and update libev's after, so libev's
 * deadline is never before ours (firing early would wake twice). */
static void arm_master(px_ctx *ctx)
{
    px_ctimer *root = ctx->timer_root;
    if (!root || (ctx->timer_armed_at && ctx->timer_armed_at <= root->at_ns))
        return;
    uint64_t now = px_now_ns();
    ev_now_update(ctx->loop);
    double after = root->at_ns > now ? (double)(root->at_ns - now) / 1e9 : 0.;
    ctx->timer_armed_at = root->at_ns;
    ev_timer_stop(ctx->loop, &ctx->timer_w);
    ev_timer_set(&ctx->timer_w, after, 0.);
    ev_timer_start(ctx->loop, &ctx->timer_w);
}

/* Run every due timer once. A callback may start, stop or free any timer,
 * itself included. At most the timers that existed on entry run, so one
 * restarting itself with no delay waits for the next iteration. */
static void on_master(struct ev_loop *loop, ev_timer *w, int revents)
{
    px_ctx *ctx = w->data;
    ctx->timer_armed_at = 0;
    uint64_t now = px_now_ns();
    for (unsigned budget = ctx->n_timers; budget && ctx->timer_root; budget--) {
        px_ctimer *t = ctx->timer_root;
        if (t->at_ns > now)
            break;
        heap_remove(ctx, t);
        if (t->repeat_ns) {
            /* After a stall, the next tick counts from now: no burst. */
            t->at_ns = t->at_ns + t->repeat_ns > now ? t->at_ns + t->repeat_ns : now + t->repeat_ns;
            t->seq = ctx->timer_seq++;
            heap_insert(ctx, t);
        } else {
            t->active = 0;
        }
        ctx->activity++;
        t->fn(t);
    }
    arm_master(ctx);
}

void px_ctx_timers_init(px_ctx *ctx)
{
    ev_timer_init(&ctx->timer_w, on_master, 0., 0.);
    ctx->timer_w.data = ctx;
}

void px_ctx_timers_fini(px_ctx *ctx)
{
    ev_timer_stop(ctx->loop, &ctx->timer_w);
}

uint64_t px_ctx_next_timer_ns(const px_ctx *ctx)
{
    return ctx->timer_root ? ctx->timer_root->at_ns : 0;
}

/* ---- px_ctimer -------------------------------------------------------------------- */

void px_ctimer_init(px_ctx *ctx, px_ctimer *t, void (*fn)(px_ctimer *t))
{
    *t = (px_ctimer){.ctx = ctx, .fn = fn};
}

void px_ctimer_start(px_ctimer *t, uint64_t after_ns, uint64_t repeat_ns)
{
    px_ctx *ctx = t->ctx;
    if (t->active)
        heap_remove(ctx, t);
    t->at_ns = px_now_ns() + after_ns;
    t->repeat_ns = repeat_ns;
    t->seq = ctx->timer_seq++;
    t->active = 1;
    heap_insert(ctx, t);
    arm_master(ctx);
}

void px_ctimer_stop(px_ctimer *t)
{
    if (!t->active)
        return;
    heap_remove(t->ctx, t);
    t->active = 0;
}

/* ---- px_timer, the application's --------------------------------------------------- */

static void on_timer(px_ctimer *ct)
{
    px_timer *t = PX_CONTAINER_OF(ct, px_timer, t);
    t->cb(t, t->arg);
}

int px_timer_create(px_ctx *ctx, px_timer_cb cb, void *arg, px_timer **out)
{
    if (!ctx || !cb || !out)
        return -PX_EINVAL;
    px_timer *t = calloc(1, sizeof(*t));
    if (!t)
        return -PX_ENOMEM;
    px_ctimer_init(ctx, &t->t, on_timer);
    t->cb = cb;
    t->arg = arg;
    *out = t;
    return 0;
}

int px_timer_start(px_timer *t, uint64_t after_us, uint64_t repeat_us)
{
    if (!t)
        return -PX_EINVAL;
    px_ctimer_start(&t->t, after_us * 1000u, repeat_us * 1000u);
    return 0;
}

int px_timer_stop(px_timer *t)
{
    if (!t)
        return -PX_EINVAL;
    px_ctimer_stop(&t->t);
    return 0;
}

void px_timer_destroy(px_timer *t)
{
    if (!t)
        return;
    px_ctimer_stop(&t->t);
    free(t);
}
