/**
 * @file
 * plexus — the context: one event loop per thread.
 *
 * A px_ctx owns a libev loop, its timers, its task and buffer pools and every
 * server, connection and timer created on it. All of those objects are used
 * from the thread that drives the context (px_ctx_run, px_ctx_run_timeout,
 * px_ctx_poll, px_ctx_arm), one thread at a time, and every callback
 * plexus makes (session events, messages, timers, posted functions) runs
 * on that thread from inside one of those four calls.
 *
 * Thread-safe, from any thread: px_ctx_stop(), px_ctx_post() and
 * px_ctx_post_node(), and waiting for the fd px_ctx_fd() returned to
 * become readable (another thread may poll it; px_ctx_fd, px_ctx_arm,
 * px_ctx_timeout and px_ctx_poll themselves belong to the driving
 * thread). Nothing else is, with one exception: a session may have
 * connections on several contexts (px_connect(s, ctx2) from ctx2's
 * thread, and portals; see session.h), each driven by its own context's
 * thread. Every one of them needs the context
 * alive: px_ctx_destroy() refuses posts from when it begins and waits for
 * those already under way, but cannot protect a call made after it
 * returned.
 *
 * Driving the context from the application's own loop (epoll, poll, or a
 * libev loop of its own) instead of px_ctx_run():
 *
 *     int fd = px_ctx_fd(ctx);               // add to your epoll set, EPOLLIN
 *     for (;;) {
 *         if (px_ctx_arm(ctx) == 0)          // nothing pending: may sleep
 *             epoll_wait(ep, evs, n, px_ctx_timeout(ctx));
 *         px_ctx_poll(ctx);                  // whatever woke us, or the work arm saw
 *     }
 *
 * px_ctx_arm() is the step that makes the sleep safe: like the loop itself
 * before it blocks, it finishes the iteration's work, flushes sends, lets
 * the transports arm their wake-ups (shm's peer then writes its eventfd,
 * which the fd contains) and brings libev's epoll set up to date; it says
 * 1 instead when there is work the fd would never announce. The fd alone
 * does not announce timers: sleep at most px_ctx_timeout().
 *
 * In a libev application (the context's loop cannot be ev_embed'ded: only
 * its fds would be served, not its timers, posts or prepare work), watch
 * the fd with an ev_io (EV_READ) and arm from an ev_prepare:
 *
 *     prepare_cb:
 *         ev_timer_stop(loop, &tm);
 *         if (px_ctx_arm(ctx) != 0) {
 *             ev_idle_start(loop, &idle);         // do not sleep: poll again
 *         } else {
 *             ev_idle_stop(loop, &idle);
 *             int ms = px_ctx_timeout(ctx);
 *             if (ms >= 0) {
 *                 ev_timer_set(&tm, ms / 1e3, 0.);
 *                 ev_timer_start(loop, &tm);
 *             }
 *         }
 *     io_cb, idle_cb, tm's callback: px_ctx_poll(ctx);
 *
 * (tools/examples/epoll_loop.c is the epoll version, complete.)
 */
#ifndef PLEXUS_CONTEXT_H
#define PLEXUS_CONTEXT_H

#include "plexus/api.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef PX_CTX_DECLARED /* one typedef however many headers name it (C99) */
/** Defined where px_ctx is declared: one typedef however many headers name it (C99). */
#define PX_CTX_DECLARED
/** A context: one event loop, driven by one thread at a time (opaque). */
typedef struct px_ctx px_ctx;
#endif
/** A timer on a context (opaque). */
typedef struct px_timer px_timer;

/** Options of a context. Zero-initialise, then set what you need: every zero
 * field means "the default" given in its comment. Copied at creation. */
typedef struct px_ctx_opts {
    /** Busy-poll the transports for this many microseconds before the loop
     * sleeps (polling mode). 0: never spin, sleep at once (default). */
    uint32_t poll_us;
    /** Maximum requests in flight per connection (the task pool size).
     * Default 512. */
    uint32_t queue_depth;
    /** Bytes of sends that may wait behind a full queue per connection
     * before sends return -PX_EAGAIN. Default 64 MiB. */
    uint64_t max_queued_bytes;
    /** Largest message data (sum of a message's iovecs) accepted either way.
     * Default 64 MiB; at most 4 GiB - 1. */
    uint64_t max_msg_size;
    /** Largest application header. Default 4096; at most 65535. */
    uint32_t max_header_size;
    /** Largest number of data iovecs in one message. Default 64, minimum 16. */
    uint32_t max_iov;
    /** Messages at most this large are delivered in place from the transport's
     * receive buffer; larger ones are read straight into their destination.
     * Default 16 KiB. */
    uint32_t inline_threshold;
    /** Maximum sessions a server on this context accepts. Default 16384. */
    uint32_t max_sessions;
    /** Bytes of freed receive buffers (for messages above the inline
     * threshold) kept for reuse rather than returned to the system. A fresh
     * buffer must be faulted in, which costs more than copying into it: keep
     * at least the largest message times the messages in flight. Default
     * 256 MiB. */
    uint64_t buf_cache_bytes;
    /** Liveness of every connection: a side that sent nothing for this many
     * milliseconds sends a keepalive; a connection that heard nothing from
     * its peer for 3 intervals is ended with -PX_ETIMEDOUT (a hung or
     * stopped peer, a vanished host). Any byte received counts as hearing
     * the peer, so a large message still arriving over a slow link keeps
     * it alive. The two sides agree at the handshake: each sends at the
     * shorter of their intervals, so a live peer is never declared dead.
     * Default 5000; PX_KEEPALIVE_OFF turns this side's check off (it still
     * answers a peer that checks). */
    uint32_t keepalive_ms;
    /** A connection must complete its handshake within this many
     * milliseconds (the transport's connect, HELLO and the server's
     * decision in on_new_session), else it ends with -PX_ETIMEDOUT, on
     * either side: a peer that never introduces itself cannot hold a
     * connection. Default 10000. */
    uint32_t handshake_timeout_ms;
    /** Default for px_msg.timeout_ms of requests that leave it 0: a request
     * not answered within this many milliseconds of px_send_request() ends
     * with on_msg_error(-PX_ETIMEDOUT). Default 0: no timeout. */
    uint32_t request_timeout_ms;
    /** Bytes of received data plexus may hold in its own buffers for one
     * connection: large messages being received, and delivered messages
     * the application has not yet released or answered. Past it plexus
     * stops reading that connection until the application lets go of some,
     * so a peer that sends faster than we consume is slowed down (the
     * transport's flow control) instead of growing our memory. One message
     * is always admitted when less than this is held, so the bound is this
     * plus one max_msg_size. Default 64 MiB. */
    uint64_t max_rx_held_bytes;
    /** 1: connections of different sessions on this context to the same
     * URI share one transport link (a nexus), each on a channel of its
     * own; 0 (default): every connection has a link of its own. Server
     * sides take shared links whatever this says. A connection on a shared
     * link that ends alone (px_conn_disconnect, a protocol error, a
     * rejected handshake) leaves the others running; the link's death ends
     * every connection on it, each with its own exactly-once completions.
     * Two connections of one session never share a link. */
    uint32_t share_links;
    /** With share_links: keep a link this many milliseconds after its last
     * connection closed gracefully, for the next px_connect to the same URI
     * to reuse. Default 0: close it at once. A server closes an unused link
     * after its handshake_timeout_ms, which bounds what this buys. */
    uint32_t link_linger_ms;
} px_ctx_opts;

/** px_ctx_opts.keepalive_ms: this side checks no liveness. */
#define PX_KEEPALIVE_OFF UINT32_MAX

/** The options a context created with `in` (NULL: all defaults) would use:
 * `in` copied to `out` with every zero replaced by its default (`out` may
 * be `in`).
 * @param in the options as given, or NULL
 * @param[out] out the options resolved
 * @return 0; -PX_EINVAL for `out` NULL or a field outside
 * px_ctx_opts_limits(), as px_ctx_create() would refuse it. */
PX_API int px_ctx_opts_resolve(const px_ctx_opts *in, px_ctx_opts *out);

/** The smallest (*lo) and largest (*hi) value each field may take once
 * resolved: px_ctx_create() refuses any other. A field without a limit
 * has its type's maximum in *hi. Either pointer may be NULL.
 * @param[out] lo the smallest values, or NULL
 * @param[out] hi the largest values, or NULL */
PX_API void px_ctx_opts_limits(px_ctx_opts *lo, px_ctx_opts *hi);

/** Create a context. `opts` may be NULL for all defaults. On success *out
 * owns a new context, which the calling thread (or whichever thread later
 * runs it exclusively) drives.
 * @param opts the options (copied), or NULL
 * @param[out] out the new context
 * @return 0; -PX_EINVAL for an option out of range; -PX_ENOMEM;
 * -PX_EMFILE/-PX_ENFILE when its wake-up fd cannot be created. */
PX_API int px_ctx_create(const px_ctx_opts *opts, px_ctx **out);

/** Destroy a context. Every server must have been unbound and every client
 * session closed and torn down first, else -PX_EBUSY and nothing is freed.
 * Server-side sessions still ending (their server unbound) are ended here
 * at once, as px_conn_disconnect() would: their outstanding messages fail
 * and their last events (CONN_DISCONNECTED, CONN_TEARDOWN,
 * SESSION_TEARDOWN) are delivered from inside this call. Pending posted
 * work is dropped (its functions are not called). Not from inside a
 * callback.
 * @param ctx the context
 * @return 0; -PX_EBUSY (nothing freed); -PX_EINVAL for ctx NULL. */
PX_API int px_ctx_destroy(px_ctx *ctx);

/** Run the loop until px_ctx_stop().
 * @param ctx the context
 * @return 0 when stopped; -PX_EBUSY if the context is already running
 * (re-entered from a callback). */
PX_API int px_ctx_run(px_ctx *ctx);

/** Run the loop until px_ctx_stop() or `timeout_ms` elapsed (-1: forever).
 * @param ctx the context
 * @param timeout_ms the longest to run, in milliseconds, or -1
 * @return 0 when stopped, -PX_ETIMEDOUT when the time ran out. */
PX_API int px_ctx_run_timeout(px_ctx *ctx, int timeout_ms);

/** One bounded, non-blocking iteration: polls the transports (their
 * busy-polled connections), runs deferred callbacks, flushes sends, and
 * returns. The loop itself (ready fds, due timers, posts) runs in it on
 * every 64th call, so busy polling spends few syscalls, and always on the
 * first call after px_ctx_arm() returned 0 (the application slept and
 * woke) or while no transport is in use.
 * This is the call for busy-polling applications and for those driving the
 * context from their own loop (px_ctx_fd).
 * @param ctx the context
 * @return the number of events handled (0: nothing was ready), or
 * -PX_EBUSY when re-entered. */
PX_API int px_ctx_poll(px_ctx *ctx);

/** Make px_ctx_run() return after the current iteration (at once, if called
 * while it is not running: the next px_ctx_run returns without waiting).
 * Any thread; async-signal-safe is not promised. It also wakes a thread
 * sleeping on px_ctx_fd(), but only px_ctx_run()/px_ctx_run_timeout() act
 * on it.
 * @param ctx the context
 * @return 0. */
PX_API int px_ctx_stop(px_ctx *ctx);

/** A file descriptor that is readable while the context has work for
 * px_ctx_poll(): a socket or other fd one of its watchers waits on is
 * ready, or another thread posted (px_ctx_post*), stopped, or woke it (an
 * inproc peer's send). It is libev's epoll fd, so it is pollable and
 * level-triggered: it stays readable until px_ctx_poll() has handled what
 * made it so. Add it to your own epoll/poll set for reading and follow the
 * pattern at the top of this header: px_ctx_arm() before you sleep on it,
 * px_ctx_timeout() as your timeout (timers do not make it readable), and
 * px_ctx_poll() when you wake. Owned by the context; do not close it or
 * read it. The same for the context's whole life.
 * @param ctx the context
 * @return the fd; -PX_EOPNOTSUPP when the context's loop does not use
 * libev's epoll backend (LIBEV_FLAGS in the environment chose another, or
 * the kernel is older than libev will embed epoll on); -PX_ENOMEM. */
PX_API int px_ctx_fd(px_ctx *ctx);

/** Get ready to sleep on px_ctx_fd(): run the work the loop runs before it
 * blocks (deferred completions, flushing queued sends, the transports'
 * "about to sleep" step that arms their wake-ups, such as shm's), bring the
 * fd up to date, and collect what is ready without waiting. Callbacks may
 * run inside it, on the calling thread, as in px_ctx_poll().
 * The px_ctx_poll() after a sleep always runs the whole loop once (fds,
 * timers, posts).
 * @param ctx the context
 * @return 0 when it is safe to sleep on the fd (for at most
 * px_ctx_timeout() ms); 1 when it is not: work is pending that the fd
 * would not announce (something arm itself just handled may have more to
 * do, deferred work, a post or stop not yet handled, a transport's sends
 * to flush or its busy-polled connections awake, or, with
 * px_ctx_opts.poll_us, less than poll_us since px_ctx_poll() last did
 * work), so call px_ctx_poll() and arm again. A 0 stays true until the
 * thread next calls into the context (any callback or API call may queue
 * work: arm again after it). -PX_EINVAL; -PX_EBUSY when re-entered
 * (from a callback, or while px_ctx_run runs); px_ctx_fd()'s error when
 * there is no fd. */
PX_API int px_ctx_arm(px_ctx *ctx);

/** How long the application may sleep on px_ctx_fd(), in milliseconds, for
 * epoll_wait/poll.
 * Every timer of the context counts: px_timer's, the transports' and the
 * session layer's (keepalives, handshake and close deadlines, request
 * timeouts). Call it after px_ctx_arm() returned 0, just before sleeping:
 * it is exact then and changes only when the context runs.
 * @param ctx the context
 * @return 0 when work is pending (as px_ctx_arm() would return 1)
 * or a timer is due; else the time until the context's earliest timer is
 * due, rounded up to a whole millisecond (as the loop rounds its own
 * sleep, so a timer is never found not yet due on waking), at most
 * INT_MAX; -1 when no timer is running: sleep until the fd is readable.
 * -PX_EINVAL for ctx NULL. */
PX_API int px_ctx_timeout(px_ctx *ctx);

/** Run fn(arg) on the context's thread, soon (within the next px_ctx_run
 * iteration or px_ctx_poll that runs the loop), in posting order per
 * posting thread. Any thread. Allocates one small node per call (freed
 * just before fn runs); px_ctx_post_node() is the allocation-free form.
 * Work still posted when the context is destroyed is dropped (fn is not
 * called).
 * @param ctx the context
 * @param fn the function to run
 * @param arg its argument
 * @return 0; -PX_EINVAL; -PX_ENOMEM; -PX_ECLOSED when the context is being
 * destroyed. */
PX_API int px_ctx_post(px_ctx *ctx, void (*fn)(void *arg), void *arg);

/** The caller's storage for one px_ctx_post_node() (opaque). */
typedef struct px_post_node {
    /** plexus's; do not touch */
    union {
        void *p[4];    /**< opaque */
        uint64_t u[4]; /**< opaque */
    } opaque_;
} px_post_node;

/** px_ctx_post() without allocating: the queue links `node` itself (an
 * intrusive lock-free queue: one atomic exchange per post, no lock, no
 * allocation). The node is the caller's, and must stay valid and untouched
 * from this call until fn(arg) has started running (or the context is
 * destroyed, which drops it); from inside fn, or after, it may be posted
 * again or freed. A node may be in one post at a time. Any thread; same
 * order, return values and drop-at-destroy as px_ctx_post() (never
 * -PX_ENOMEM).
 * @param ctx the context
 * @param node the caller's storage for this post
 * @param fn the function to run
 * @param arg its argument
 * @return as px_ctx_post(), never -PX_ENOMEM. */
PX_API int px_ctx_post_node(px_ctx *ctx, px_post_node *node, void (*fn)(void *arg), void *arg);

/** A timer's callback. Timers: a px_timer is owned by the context it was created on; its
 * callback runs on that context's thread. Restarting a running timer
 * re-arms it.
 * @param timer the timer that fired
 * @param arg the pointer given to px_timer_create() */
typedef void (*px_timer_cb)(px_timer *timer, void *arg);

/** Create a timer (stopped).
 * @param ctx the context it belongs to
 * @param cb what runs when it fires
 * @param arg passed to cb
 * @param[out] out the new timer
 * @return 0 and *out; -PX_ENOMEM. */
PX_API int px_timer_create(px_ctx *ctx, px_timer_cb cb, void *arg, px_timer **out);
/** Fire after `after_us`, then every `repeat_us` (0: once).
 * @param t the timer
 * @param after_us microseconds until it first fires
 * @param repeat_us microseconds between later firings, or 0
 * @return 0. */
PX_API int px_timer_start(px_timer *t, uint64_t after_us, uint64_t repeat_us);
/** Stop a timer; stopping a stopped timer is fine.
 * @param t the timer
 * @return 0. */
PX_API int px_timer_stop(px_timer *t);
/** Stops and frees. May be called from the timer's own callback.
 * @param t the timer */
PX_API void px_timer_destroy(px_timer *t);

/** Monotonic time in nanoseconds, the clock all plexus timing uses.
 * @return nanoseconds since an arbitrary start. */
PX_API uint64_t px_now_ns(void);

#ifdef __cplusplus
}
#endif
#endif
