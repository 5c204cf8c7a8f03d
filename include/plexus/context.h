/* plexus — the context: one event loop per thread.
 *
 * A px_ctx owns a libev loop, its timers, its task and buffer pools and every
 * server, connection and timer created on it. All of those objects are used
 * from the thread that runs the context; only px_ctx_stop() and
 * px_ctx_post() may be called from any thread.
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
#define PX_CTX_DECLARED
typedef struct px_ctx px_ctx;
#endif
typedef struct px_timer px_timer;

/* Options of a context. Zero-initialise, then set what you need: every zero
 * field means "the default" given in its comment. Copied at creation. */
typedef struct px_ctx_opts {
    /* Busy-poll the transports for this many microseconds before the loop
     * sleeps (polling mode). 0: never spin, sleep at once (default). */
    uint32_t poll_us;
    /* Maximum requests in flight per connection (the task pool size).
     * Default 512. */
    uint32_t queue_depth;
    /* Bytes of sends that may wait behind a full queue per connection
     * before sends return -PX_EAGAIN. Default 64 MiB. */
    uint64_t max_queued_bytes;
    /* Largest message data (sum of a message's iovecs) accepted either way.
     * Default 64 MiB; at most 4 GiB - 1. */
    uint64_t max_msg_size;
    /* Largest application header. Default 4096; at most 65535. */
    uint32_t max_header_size;
    /* Largest number of data iovecs in one message. Default 64, minimum 16. */
    uint32_t max_iov;
    /* Messages at most this large are delivered in place from the transport's
     * receive buffer; larger ones are read straight into their destination.
     * Default 16 KiB. */
    uint32_t inline_threshold;
    /* Maximum sessions a server on this context accepts. Default 16384. */
    uint32_t max_sessions;
    /* Bytes of freed receive buffers (for messages above the inline
     * threshold) kept for reuse rather than returned to the system. A fresh
     * buffer must be faulted in, which costs more than copying into it: keep
     * at least the largest message times the messages in flight. Default
     * 256 MiB. */
    uint64_t buf_cache_bytes;
    /* Liveness of every connection: a side that sent nothing for this many
     * milliseconds sends a keepalive; a connection that heard nothing from
     * its peer for 3 intervals is ended with -PX_ETIMEDOUT (a hung or
     * stopped peer, a vanished host). Any byte received counts as hearing
     * the peer, so a large message still arriving over a slow link keeps
     * it alive. The two sides agree at the handshake: each sends at the
     * shorter of their intervals, so a live peer is never declared dead.
     * Default 5000; PX_KEEPALIVE_OFF turns this side's check off (it still
     * answers a peer that checks). */
    uint32_t keepalive_ms;
    /* A connection must complete its handshake within this many
     * milliseconds (the transport's connect, HELLO and the server's
     * decision in on_new_session), else it ends with -PX_ETIMEDOUT, on
     * either side: a peer that never introduces itself cannot hold a
     * connection. Default 10000. */
    uint32_t handshake_timeout_ms;
    /* Default for px_msg.timeout_ms of requests that leave it 0: a request
     * not answered within this many milliseconds of px_send_request() ends
     * with on_msg_error(-PX_ETIMEDOUT). Default 0: no timeout. */
    uint32_t request_timeout_ms;
    /* Bytes of received data plexus may hold in its own buffers for one
     * connection: large messages being received, and delivered messages
     * the application has not yet released or answered. Past it plexus
     * stops reading that connection until the application lets go of some,
     * so a peer that sends faster than we consume is slowed down (the
     * transport's flow control) instead of growing our memory. One message
     * is always admitted when less than this is held, so the bound is this
     * plus one max_msg_size. Default 64 MiB. */
    uint64_t max_rx_held_bytes;
} px_ctx_opts;

#define PX_KEEPALIVE_OFF UINT32_MAX

/* The options a context created with `in` (NULL: all defaults) would use:
 * `in` copied to `out` with every zero replaced by its default (`out` may
 * be `in`). Returns 0; -PX_EINVAL for `out` NULL or a field outside
 * px_ctx_opts_limits(), as px_ctx_create() would refuse it. */
PX_API int px_ctx_opts_resolve(const px_ctx_opts *in, px_ctx_opts *out);

/* The smallest (*lo) and largest (*hi) value each field may take once
 * resolved: px_ctx_create() refuses any other. A field without a limit
 * has its type's maximum in *hi. Either pointer may be NULL. */
PX_API void px_ctx_opts_limits(px_ctx_opts *lo, px_ctx_opts *hi);

/* Create a context. `opts` may be NULL for all defaults. On success *out
 * owns a new context, which the calling thread (or whichever thread later
 * runs it exclusively) drives.
 * Returns 0; -PX_EINVAL for an option out of range; -PX_ENOMEM;
 * -PX_EMFILE/-PX_ENFILE when its wake-up fd cannot be created. */
PX_API int px_ctx_create(const px_ctx_opts *opts, px_ctx **out);

/* Destroy a context. Every server must have been unbound and every client
 * session closed and torn down first, else -PX_EBUSY and nothing is freed.
 * Server-side sessions still ending (their server unbound) are ended here
 * at once, as px_conn_disconnect() would: their outstanding messages fail
 * and their last events (CONN_DISCONNECTED, CONN_TEARDOWN,
 * SESSION_TEARDOWN) are delivered from inside this call. Pending posted
 * work is dropped (its functions are not called). Not from inside a
 * callback. */
PX_API int px_ctx_destroy(px_ctx *ctx);

/* Run the loop until px_ctx_stop(). Returns 0 when stopped; -PX_EBUSY if the
 * context is already running (re-entered from a callback). */
PX_API int px_ctx_run(px_ctx *ctx);

/* Run the loop until px_ctx_stop() or `timeout_ms` elapsed (-1: forever).
 * Returns 0 when stopped, -PX_ETIMEDOUT when the time ran out. */
PX_API int px_ctx_run_timeout(px_ctx *ctx, int timeout_ms);

/* One bounded, non-blocking iteration: polls the transports, runs ready
 * callbacks and due timers, flushes sends, and returns. Returns the number
 * of events handled (0: nothing was ready), or -PX_EBUSY when re-entered.
 * This is the call for busy-polling applications. */
PX_API int px_ctx_poll(px_ctx *ctx);

/* Make px_ctx_run() return after the current iteration. Any thread;
 * async-signal-safe is not promised. Returns 0. */
PX_API int px_ctx_stop(px_ctx *ctx);

/* A file descriptor that becomes readable when the context has work: add it
 * to your own loop (poll/epoll/another libev loop) and call px_ctx_poll()
 * when it fires. Owned by the context; do not close it.
 * Not available yet: returns -PX_ENOSYS (drive the context with
 * px_ctx_poll() from your loop's idle/timer hook meanwhile). */
PX_API int px_ctx_fd(px_ctx *ctx);

/* Run fn(arg) on the context's thread, soon, in posting order. Any thread.
 * Allocates a small node per call. Returns 0; -PX_ENOMEM; -PX_ECLOSED when
 * the context is being destroyed. */
PX_API int px_ctx_post(px_ctx *ctx, void (*fn)(void *arg), void *arg);

/* Timers. A px_timer is owned by the context it was created on; its
 * callback runs on that context's thread. Restarting a running timer
 * re-arms it. */
typedef void (*px_timer_cb)(px_timer *timer, void *arg);

/* Returns 0 and *out; -PX_ENOMEM. */
PX_API int px_timer_create(px_ctx *ctx, px_timer_cb cb, void *arg, px_timer **out);
/* Fire after `after_us`, then every `repeat_us` (0: once). Returns 0. */
PX_API int px_timer_start(px_timer *t, uint64_t after_us, uint64_t repeat_us);
/* Returns 0; stopping a stopped timer is fine. */
PX_API int px_timer_stop(px_timer *t);
/* Stops and frees. May be called from the timer's own callback. */
PX_API void px_timer_destroy(px_timer *t);

/* Monotonic time in nanoseconds, the clock all plexus timing uses. */
PX_API uint64_t px_now_ns(void);

#ifdef __cplusplus
}
#endif
#endif
