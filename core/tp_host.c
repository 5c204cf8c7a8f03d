/* The host services a context lends each transport instance (the
 * px_tp_host_ops table of include/plexus/transport.h): libev behind an
 * interface that names no libev type, plus logging and the lookup of a
 * transport's handle of a memory region. */
#include <ev.h>
#include <stdarg.h>

#include "core/ctx.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/tp_host.h"

typedef struct host_io {
    ev_io io;
    px_tp_io_cb cb;
    void *arg;
    int events; /* EV_READ|EV_WRITE being watched, 0 when stopped */
} host_io;

/* The context's own timers and wake-ups (core/timer.c, core/wake.c), not
 * libev's: the context must know its next deadline (px_ctx_timeout) and
 * wake a thread sleeping on px_ctx_fd(), which ev_timer and ev_async
 * cannot. */
typedef struct host_timer {
    px_ctimer timer;
    px_tp_timer_cb cb;
    void *arg;
} host_timer;

typedef struct host_async {
    px_ctx_async async;
    px_tp_timer_cb cb;
    void *arg;
} host_async;

_Static_assert(sizeof(host_io) <= sizeof(px_tp_watch), "px_tp_watch too small for ev_io");
_Static_assert(sizeof(host_timer) <= sizeof(px_tp_watch), "px_tp_watch too small for a timer");
_Static_assert(sizeof(host_async) <= sizeof(px_tp_watch), "px_tp_watch too small for an async");

static struct ev_loop *loop_of(const px_tp_host *h)
{
    return ((px_ctx *)h->priv)->loop;
}

void px_tp_log(px_log_level level, const char *file, int line, const char *fmt, ...)
{
    if (__atomic_load_n(&px_log_level_cur, __ATOMIC_RELAXED) > (int)level)
        return;
    va_list ap;
    va_start(ap, fmt);
    px_log_vwrite(level, file, line, fmt, ap);
    va_end(ap);
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    host_io *h = (host_io *)(void *)w;
    int ev = (revents & EV_READ ? PX_TP_READ : 0) | (revents & EV_WRITE ? PX_TP_WRITE : 0);
    h->cb((px_tp_watch *)(void *)h, ev, h->arg);
}

static void io_init(const px_tp_host *host, px_tp_watch *w, int fd, px_tp_io_cb cb, void *arg)
{
    host_io *h = (host_io *)(void *)w;
    ev_io_init(&h->io, io_cb, fd, 0);
    h->cb = cb;
    h->arg = arg;
    h->events = 0;
}

/* The epoll set now differs from the watchers until libev's next pass
 * (px_ctx_arm must make one before the application sleeps). */
static void io_changed(const px_tp_host *host)
{
    ((px_ctx *)host->priv)->io_dirty = 1;
}

static void io_set(const px_tp_host *host, px_tp_watch *w, int events)
{
    host_io *h = (host_io *)(void *)w;
    int ev = (events & PX_TP_READ ? EV_READ : 0) | (events & PX_TP_WRITE ? EV_WRITE : 0);
    if (h->events == ev)
        return;
    io_changed(host);
    ev_io_stop(loop_of(host), &h->io);
    h->events = ev;
    if (!ev)
        return;
    ev_io_set(&h->io, h->io.fd, ev);
    ev_io_start(loop_of(host), &h->io);
}

static void io_fini(const px_tp_host *host, px_tp_watch *w)
{
    host_io *h = (host_io *)(void *)w;
    if (h->events)
        io_changed(host);
    ev_io_stop(loop_of(host), &h->io);
    h->events = 0;
}

static void timer_cb(px_ctimer *t)
{
    host_timer *h = PX_CONTAINER_OF(t, host_timer, timer);
    h->cb((px_tp_watch *)(void *)h, h->arg);
}

static void timer_init(const px_tp_host *host, px_tp_watch *w, px_tp_timer_cb cb, void *arg)
{
    host_timer *h = (host_timer *)(void *)w;
    px_ctimer_init(host->priv, &h->timer, timer_cb);
    h->cb = cb;
    h->arg = arg;
}

static void timer_start(const px_tp_host *host, px_tp_watch *w, uint64_t after_us,
                        uint64_t repeat_us)
{
    host_timer *h = (host_timer *)(void *)w;
    px_ctimer_start(&h->timer, after_us * 1000u, repeat_us * 1000u);
}

static void timer_stop(const px_tp_host *host, px_tp_watch *w)
{
    px_ctimer_stop(&((host_timer *)(void *)w)->timer);
}

static int timer_active(const px_tp_host *host, const px_tp_watch *w)
{
    return px_ctimer_active(&((const host_timer *)(const void *)w)->timer);
}

static void async_cb(px_ctx_async *a)
{
    host_async *h = PX_CONTAINER_OF(a, host_async, async);
    h->cb((px_tp_watch *)(void *)h, h->arg);
}

static void async_init(const px_tp_host *host, px_tp_watch *w, px_tp_timer_cb cb, void *arg)
{
    host_async *h = (host_async *)(void *)w;
    px_ctx_async_init(host->priv, &h->async, async_cb);
    h->cb = cb;
    h->arg = arg;
}

/* Any thread: the context is found through the watcher itself. */
static void async_send(px_tp_watch *w)
{
    px_ctx_async_send(&((host_async *)(void *)w)->async);
}

static void async_fini(const px_tp_host *host, px_tp_watch *w)
{
    px_ctx_async_fini(&((host_async *)(void *)w)->async);
}

static void *mr_handle(const px_tp_host *host, const px_mr *mr)
{
    return mr ? mr->tp_handle[px_ctx_tp_of(host)->slot] : NULL;
}

const px_tp_host_ops px_tp_host_table = {
    .io_init = io_init,
    .io_set = io_set,
    .io_fini = io_fini,
    .timer_init = timer_init,
    .timer_start = timer_start,
    .timer_stop = timer_stop,
    .timer_active = timer_active,
    .timer_fini = timer_stop,
    .async_init = async_init,
    .async_send = async_send,
    .async_fini = async_fini,
    .mr_handle = mr_handle,
};
