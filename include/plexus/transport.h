/**
 * @file
 * plexus — the transport plugin interface.
 *
 * A transport moves frames between two endpoints and reports what happens
 * to the owner of each endpoint (the session layer) through typed upcalls;
 * it knows nothing of sessions, requests or responses. This header, with
 * the ones it includes, is all a transport includes: a plugin builds
 * against the installed headers alone.
 *
 * The parts:
 *   - the vtable a transport fills (px_transport), one `static const`
 *     table at the end of its main file;
 *   - what travels down (px_tp_send) and up (px_tp_rx, px_tp_upcalls);
 *   - the host services the context lends each instance (px_tp_host):
 *     logging, fd watching, timers, a cross-thread wake, memory-region
 *     handles - no libev type and no core header;
 *   - the chassis (px_tpc_*): the discipline every transport needs the
 *     same way - upcall depth and deferred free, deferred events, the
 *     end-of-iteration flush, busy-poll lists, listener bookkeeping, the
 *     send FIFO and its completions, `more` counting, RX_ASSIGN checks and
 *     the lending rule - so a transport adds only its sockets, rings or
 *     queue pairs.
 *
 * Built-in transports are compiled in; others are shared objects named
 * `libplexus-<scheme>.so` in $PX_PLUGIN_DIR (else the installed plugin
 * directory), exporting `int px_transport_plugin_init(void)` that calls
 * px_transport_register().
 *
 * Threading: an instance (px_tp) belongs to one context and is only ever
 * called on that context's thread; it makes its upcalls on the same
 * thread, never from inside the owner's call into it (send, connect,
 * listen, accept, close, rx_pause), except where an op says otherwise.
 * Only px_tp_host.ops->async_send() may be called from another thread.
 */
#ifndef PLEXUS_TRANSPORT_H
#define PLEXUS_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "plexus/api.h"
#include "plexus/error.h"
#include "plexus/frame.h"
#include "plexus/log.h"
#include "plexus/memory.h"
#include "plexus/uri.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef PX_CTX_DECLARED /* one typedef however many headers name it (C99) */
/** Defined where px_ctx is declared: one typedef however many headers name it (C99). */
#define PX_CTX_DECLARED
/** A context: one event loop per thread (plexus/context.h). */
typedef struct px_ctx px_ctx;
#endif
typedef struct px_tp px_tp;                   /**< one transport instance per context */
typedef struct px_tp_listener px_tp_listener; /**< a bound address */
typedef struct px_tp_conn px_tp_conn;         /**< one link to a peer */
typedef struct px_tp_send px_tp_send;         /**< a frame to send */
typedef struct px_tp_host px_tp_host;         /**< what the context lends an instance */

/* ---- small building blocks --------------------------------------------------- */

/** An intrusive doubly-linked list node (a head is a node linked to itself),
 * for the chassis's lists. */
typedef struct px_tp_link {
    /** The previous and the next node (the node itself when on no list). @{ */
    struct px_tp_link *prev, *next;
    /** @} */
} px_tp_link;

/** A node (or head) linked to itself: on no list (an empty list).
 * @param l the node or head */
static inline void px_tp_link_init(px_tp_link *l)
{
    l->prev = l->next = l;
}
/** Add n at the end of the list headed by h.
 * @param h the list's head
 * @param n a node on no list */
static inline void px_tp_link_push(px_tp_link *h, px_tp_link *n)
{
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}
/** Take n off its list; it is left linked to itself (removing it again is
 * harmless).
 * @param n the node */
static inline void px_tp_link_del(px_tp_link *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

/** A FIFO of sends, linked through px_tp_send.tp_next: queueing a send never
 * allocates. Value type; {NULL, NULL} is empty. */
typedef struct px_tp_fifo {
    /** The first and the last send, NULL when empty. @{ */
    px_tp_send *head, *tail;
    /** @} */
} px_tp_fifo;

/* ---- what travels -------------------------------------------------------------- */

/** A frame to send. Owned by the caller (the session layer) from send()
 * until its completion (see send()); the memory `app_hdr` and `data` point
 * to likewise. The transport owns the `tp_*` fields while it holds the
 * request. */
struct px_tp_send {
    px_frame_hdr hdr;       /**< ext_len is the transport's to set */
    const void *app_hdr;    /**< hdr.hdr_len bytes */
    const px_iov *data;     /**< hdr.data_len bytes across data_count segments */
    uint32_t data_count;    /**< segments in data */
    const px_iov *reply;    /**< REQUEST only, optional: where the response should
                               land, for transports that write it there
                               (PX_TP_CAP_REPLY_DIRECT) */
    uint32_t reply_count;   /**< segments in reply */
    void *cookie;           /**< the caller's */
    int status;             /**< set before the completion: 0 or -PX_E... */
    uint32_t owner_checked; /**< nonzero: the owner built this send from a message it
                               validated (segments present and adding up to
                               hdr.data_len, a well-formed header), so
                               px_tp_send_check() checks only what is the
                               transport's own (max_iov); 0: it checks all */
    /* transport-private */
    px_tp_send *tp_next;               /**< transport-private: the FIFO's link (px_tp_fifo) */
    uint64_t tp_done;                  /**< transport-private */
    uint8_t tp_wire[PX_FRAME_HDR_LEN]; /**< transport-private: room for the encoded header */
    uint64_t tp_priv[4];               /**< transport-private */
    void *tp_bounce;                   /**< the chassis's: a copy this send was re-pointed to */
};

/** A received frame. */
typedef struct px_tp_rx {
    px_frame_hdr hdr;    /**< the frame's header, decoded */
    const void *app_hdr; /**< hdr.hdr_len bytes */
    const void *data;    /**< in place: hdr.data_len contiguous bytes; NULL if assigned */
    px_iov *dst;         /**< rx_assign: filled by the owner */
    uint32_t dst_count;  /**< rx_assign: segments in dst, filled by the owner */
    uint32_t more;       /**< frame: a hint, complete frames already received after this
                          * one (a malformed one among them ends the conn instead) */
    void *owner_cookie;  /**< rx_assign -> frame: the owner's, carried through */
} px_tp_rx;

/** The owner's upcalls, one function per event. `self` is the owner's
 * pointer given with the table. Every one runs on the context's thread,
 * from the loop (never inside the owner's own call into the transport);
 * inside it the owner may send, close the conn, pause it, and so on. */
typedef struct px_tp_upcalls {
    /** connect() finished: the link carries frames. */
    void (*connected)(void *self);
    /** A frame over the inline threshold is arriving; rx->hdr and app_hdr
     * are valid. Fill rx->dst/dst_count to receive straight into it and
     * return 0, or return nonzero to have it delivered in place. */
    int (*rx_assign)(void *self, px_tp_rx *rx);
    /** A frame: rx and the bytes it points to are valid during the call
     * and lent until the sends made during it have left (the lending rule,
     * kept by the chassis: px_tpc_reclaim). */
    void (*frame)(void *self, px_tp_rx *rx);
    /** A send that returned PX_TP_QUEUED is finished: 0, or the error. */
    void (*send_done)(void *self, px_tp_send *s, int status);
    /** Sends refused with -PX_EAGAIN may be retried now. */
    void (*room)(void *self);
    /** A protocol error from the peer; disconnected follows. */
    void (*error)(void *self, int reason);
    /** The link is gone; every send not yet finished has had its send_done
     * (with an error) before this. Close the conn. */
    void (*disconnected)(void *self, int reason);
} px_tp_upcalls;

/** A conn's owner: where its upcalls go. */
typedef struct px_tp_owner {
    const px_tp_upcalls *up; /**< the upcalls */
    void *self;              /**< passed to each of them */
} px_tp_owner;

/** A listener's owner: new_conn offers a conn to accept() or reject(). */
typedef struct px_tp_listen_owner {
    /** A peer connected: accept() or reject() the conn. */
    void (*new_conn)(void *self, px_tp_conn *c);
    void *self; /**< passed to new_conn */
} px_tp_listen_owner;

/* ---- host services --------------------------------------------------------------- */

/** Opaque storage for a host watcher, embedded in the transport's structs
 * (so watching allocates nothing). Initialise it with the host's *_init,
 * release it with *_fini. */
typedef struct px_tp_watch {
    _Alignas(8) unsigned char opaque[96]; /**< the host's */
} px_tp_watch;

#define PX_TP_READ  1 /**< io events: the fd is readable */
#define PX_TP_WRITE 2 /**< io events: the fd is writable */

/** An fd watcher's callback.
 * @param w the watcher
 * @param revents PX_TP_READ and/or PX_TP_WRITE: what the fd is ready for
 * @param arg the pointer given to io_init */
typedef void (*px_tp_io_cb)(px_tp_watch *w, int revents, void *arg);
/** A timer's or a wake-up's callback.
 * @param w the watcher
 * @param arg the pointer given to timer_init or async_init */
typedef void (*px_tp_timer_cb)(px_tp_watch *w, void *arg);

/** What the context lends a transport instance. Every function runs on the
 * context's thread, except async_send. (Logging is px_tp_log() below: it
 * is needed before any instance exists, by check_uri.) */
typedef struct px_tp_host_ops {
    /** Watch fd for PX_TP_READ/PX_TP_WRITE; io_set changes the events (0
     * stops watching). */
    void (*io_init)(const px_tp_host *h, px_tp_watch *w, int fd, px_tp_io_cb cb, void *arg);
    /** Change the events an fd watcher waits for (0 stops watching). */
    void (*io_set)(const px_tp_host *h, px_tp_watch *w, int events);
    /** Release an fd watcher. */
    void (*io_fini)(const px_tp_host *h, px_tp_watch *w);
    /** One-shot or repeating timers; microseconds. */
    void (*timer_init)(const px_tp_host *h, px_tp_watch *w, px_tp_timer_cb cb, void *arg);
    /** Fire after `after_us`, then every `repeat_us` (0: once). */
    void (*timer_start)(const px_tp_host *h, px_tp_watch *w, uint64_t after_us, uint64_t repeat_us);
    /** Stop a timer. */
    void (*timer_stop)(const px_tp_host *h, px_tp_watch *w);
    /** Nonzero while the timer is started. */
    int (*timer_active)(const px_tp_host *h, const px_tp_watch *w);
    /** Release a timer. */
    void (*timer_fini)(const px_tp_host *h, px_tp_watch *w);
    /** A wake-up another thread may send: cb runs on the context's thread
     * soon after (several sends may coalesce into one call). */
    void (*async_init)(const px_tp_host *h, px_tp_watch *w, px_tp_timer_cb cb, void *arg);
    /** Send the wake-up: from any thread. */
    void (*async_send)(px_tp_watch *w);
    /** Release a wake-up. */
    void (*async_fini)(const px_tp_host *h, px_tp_watch *w);
    /** This transport's handle of a memory region (what its mem_register
     * gave), or NULL. */
    void *(*mr_handle)(const px_tp_host *h, const px_mr *mr);
} px_tp_host_ops;

/** What the context lends a transport instance (px_tp.host). */
struct px_tp_host {
    const px_tp_host_ops *ops; /**< the services */
    void *priv;                /**< the context's */
    px_frame_limits limits;    /**< what a frame's lengths are checked against */
    uint32_t inline_threshold; /**< px_ctx_opts.inline_threshold: larger frames go to rx_assign */
    /** Nonzero while the current loop pass cannot block (the context is
     * busy-polling and will poll again): the prepare op need not arm
     * wake-ups then. Zero when the loop may sleep after the pass. */
    const int *pass_nonblocking;
};

/** A line to plexus's log (PX_LOG, px_log_set_hook), at `level`.
 * @param level the message's level
 * @param file the source file it comes from
 * @param line the line in it
 * @param fmt printf format of the message, then its arguments */
PX_API void px_tp_log(px_log_level level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/** px_tp_log() from here (the caller's file and line).
 * @param level the message's level
 * @param ... printf format and arguments */
#define PX_TP_LOG(level, ...) px_tp_log((level), __FILE__, __LINE__, __VA_ARGS__)

/* ---- the chassis' objects ----------------------------------------------------------- */

/** The common head of an instance: the transport embeds it first in its own
 * struct and sets it up with px_tpc_init(). Owned by the transport. */
struct px_tp {
    const struct px_transport *ops; /**< the transport's table */
    const px_tp_host *host;         /**< what the context lends it */
    /* chassis-private */
    /** Chassis-private: every conn and every listener not yet freed. @{ */
    px_tp_link conns, listeners;
    /** @} */
    px_tp_link deferred; /**< conns with an event to deliver from the loop */
    px_tp_link dirty;    /**< conns to flush at the end of the iteration */
    px_tp_link hot;      /**< conns poll() services: active recently */
    /** Chassis-private: the loop watchers that flush and poll before the loop sleeps. @{ */
    px_tp_watch prepare, idle;
    /** @} */
    int in_progress;  /**< chassis-private: deferred work and flushes are running */
    uint64_t nevents; /**< upcalls made: poll()'s measure of activity */
};

#define PX_TPC_LEND_MAX 3 /**< regions a conn may lend to upcalls */

/** The common head of every transport connection; the transport embeds it
 * first in its own struct and sets it up with px_tpc_conn_init(). Owned
 * by the transport; freed (conn_free) by the chassis once closed and no
 * upcall of it is on the stack. */
struct px_tp_conn {
    const struct px_transport *ops; /**< the transport's table */
    px_tp *tp;                      /**< the instance it belongs to */
    px_tp_owner owner;              /**< where its upcalls go */
    /** Bytes received from the peer so far, counted as they arrive (not when
     * a frame completes): the owner's liveness check reads it. */
    uint64_t rx_bytes;
    /* chassis-private */
    px_tp_fifo sends; /**< accepted (PX_TP_QUEUED) and not yet finished, in order */
    /** Chassis-private: its places on the instance's lists (all, deferred,
     * dirty, hot) and on its listener's offer list. @{ */
    px_tp_link link, defer_link, dirty_link, hot_link, lst_link;
    /** @} */
    px_tp_listener *lst; /**< offering listener, until accept/reject */
    unsigned depth;      /**< upcalls of this conn on the stack */
    /** Chassis-private: closed (close() was called), dead (the link is
     * gone), a room upcall is owed, lent memory awaits px_tpc_reclaim. @{ */
    unsigned closed : 1, dead : 1, want_room : 1, lent : 1;
    /** @} */
    /** Chassis-private: the event px_tpc_defer() queued, and its reason. @{ */
    int defer_event, defer_reason;
    /** @} */
    unsigned idle_polls; /**< chassis-private: polls on the hot list that found nothing */
    uint32_t more_left;  /**< chassis-private: the `more` count left (px_tpc_more) */
    /** Chassis-private: the memory frames are lent from (px_tpc_lendable). */
    struct {
        const void *base; /**< the region's first byte */
        size_t len;       /**< its bytes (0: none) */
    } lendable[PX_TPC_LEND_MAX];
};

/** The common head of every listener; the transport embeds it first in
 * its own struct and sets it up with px_tpc_listener_init(). */
struct px_tp_listener {
    const struct px_transport *ops; /**< the transport's table */
    px_tp *tp;                      /**< the instance it belongs to */
    px_tp_listen_owner owner;       /**< who is offered its conns */
    /* chassis-private */
    /** Chassis-private: its place on the instance's list, and the conns on
     * offer. @{ */
    px_tp_link link, pending;
    /** @} */
    /** Chassis-private: upcalls of it on the stack, and whether it is
     * closed. @{ */
    unsigned depth, closed;
    /** @} */
};

/* ---- the vtable ------------------------------------------------------------------------- */

/* What a transport can do; filled by get_caps. */
#define PX_TP_CAP_RX_DIRECT    (1u << 0) /**< honours rx_assign for large frames */
#define PX_TP_CAP_ZCOPY_SEND   (1u << 1) /**< sends from the caller's buffers */
#define PX_TP_CAP_REPLY_DIRECT (1u << 2) /**< writes responses into px_tp_send.reply */
#define PX_TP_CAP_ONE_COPY     (1u << 4) /**< large data moves with one copy (CMA, RDMA) */

/** What a transport can do; filled by get_caps. */
typedef struct px_tp_caps {
    uint32_t flags;      /**< PX_TP_CAP_* */
    uint32_t max_iov;    /**< data segments per send */
    uint32_t max_inline; /**< frames this small go inline/in place */
    uint64_t max_msg;    /**< largest data_len */
    uint32_t rkey_len;   /**< bytes rkey_pack writes (0: no remote keys) */
} px_tp_caps;

/* send() results besides errors. */
#define PX_TP_SENT   0 /**< done now: the frame was copied, no send_done follows */
#define PX_TP_QUEUED 1 /**< accepted: send_done follows exactly once, in order */

/** The version of px_transport a transport is built against (px_transport.abi).
 * 3: px_transport.options. */
#define PX_TRANSPORT_ABI 3

/** @struct px_tp_option
 * One URI option a transport accepts (scheme://...?name=value), described
 * for px-info and the documentation; check_uri stays the judge of what is
 * accepted. Every string is static. */
#define PX_TP_OPT_CONNECT 1u /**< it has an effect in a connect URI */
#define PX_TP_OPT_LISTEN  2u /**< ... in a listen (bind) URI */
typedef struct px_tp_option {
    const char *name;    /**< "nodelay"; NULL ends a table */
    const char *values;  /**< what it takes: "0|1", "<bytes>" */
    const char *def;     /**< the default, as text: "1", "the kernel's" */
    const char *example; /**< one value check_uri accepts for it: "0" */
    unsigned where;      /**< PX_TP_OPT_CONNECT | PX_TP_OPT_LISTEN */
    const char *doc;     /**< what it does, one line */
} px_tp_option;

/** Every op returns 0 (or a count) or -PX_E..., never blocks, and is
 * mandatory unless marked optional: px_transport_register() refuses a
 * table that lacks one. "Owner" ops are called by the session layer,
 * "chassis" ops by px_tpc_* on the transport's behalf. */
typedef struct px_transport {
    uint32_t abi;               /**< PX_TRANSPORT_ABI */
    const char *name;           /**< "tcp" */
    const char *const *schemes; /**< NULL-terminated: {"tcp", "unix", NULL} */

    /* -- the instance -- */
    /** One per context, created on first use: allocate the transport's
     * struct (px_tp first), px_tpc_init() it. -PX_ENOMEM, or the
     * transport's own reason it cannot run here. */
    int (*init)(const px_tp_host *host, px_tp **out);
    /** Every listener and conn was closed first; px_tpc_fini(), then free. */
    void (*fini)(px_tp *tp);
    /** What the instance can do (px_tp_caps). */
    void (*get_caps)(px_tp *tp, px_tp_caps *out);
    /** Check a URI for connect (listener 0) or listen (1) without touching
     * the network or a resolver: host, port, path, options. 0 or the
     * error connect()/listen() would give (-PX_EBADHOST, -PX_EBADPORT,
     * -PX_EBADPATH, -PX_EBADOPT, ...), logged with what is wrong. */
    int (*check_uri)(const px_uri *uri, int listener);

    /* -- owner: listeners -- */
    /** Bind; new_conn follows on `owner` for each peer (px_tpc_offer). */
    int (*listen)(px_tp *tp, const px_uri *uri, const px_tp_listen_owner *owner,
                  px_tp_listener **out);
    /** The bound address as a URI (the real port). Returns its length. */
    int (*listener_uri)(px_tp_listener *l, char *buf, size_t len);
    /** Stop at once: no new_conn after this returns; conns offered and not
     * yet accepted are closed. Then px_tpc_listener_close(). */
    void (*listener_close)(px_tp_listener *l);

    /* -- owner: connections -- */
    /** Start connecting: connected or disconnected follows on `owner`. */
    int (*connect)(px_tp *tp, const px_uri *uri, const px_tp_owner *owner, px_tp_conn **out);
    /** Take an offered conn: its upcalls now go to `owner`. -PX_EINVAL when
     * it is no longer on offer. Starts with px_tpc_accept(). */
    int (*accept)(px_tp_conn *c, const px_tp_owner *owner);
    /** Refuse an offered conn (the reason, where the transport can carry
     * it); it is closed and freed. */
    void (*reject)(px_tp_conn *c, int reason);
    /** A frame. Returns PX_TP_SENT (copied: the caller's memory is free at
     * once and no send_done follows), PX_TP_QUEUED (px_tpc_queue()d; it
     * leaves in call order and send_done follows exactly once), -PX_EAGAIN
     * (no room now: nothing was taken, and room follows once a retry may
     * succeed), or another error (nothing was taken). Check it first with
     * px_tp_send_check(). */
    int (*send)(px_tp_conn *c, px_tp_send *s);
    /** Close and stop at once: no upcall is made from inside this call and
     * none after it. Every send the transport accepted and did not finish
     * is moved to *unfinished (status -PX_ECLOSED) for the caller to
     * complete, and the memory they point to is not touched after close
     * returns (hardware queues included). Safe from inside any upcall of
     * this conn; the chassis frees it once none is on the stack. Ends with
     * px_tpc_close(). */
    void (*close)(px_tp_conn *c, px_tp_fifo *unfinished);
    /** The peer's address as a URI. Returns its length. */
    int (*peer_uri)(px_tp_conn *c, char *buf, size_t len);
    /** Stop (1) or resume (0) delivering frames: a frame being received
     * completes, then no rx_assign/frame follows until resumed and the
     * transport stops reading (the peer meets flow control); frames
     * buffered meanwhile are delivered after resuming, from the loop. */
    void (*rx_pause)(px_tp_conn *c, int paused);

    /* -- chassis: the loop's work for this transport -- */
    /** Free a conn's / listener's memory (the chassis calls it when none of
     * its upcalls is on the stack). */
    void (*conn_free)(px_tp_conn *c);
    /** As conn_free, for a listener. */
    void (*listener_free)(px_tp_listener *l);
    /** Stop every watcher of a conn whose link is gone (px_tpc_disconnect). */
    void (*stop_io)(px_tp_conn *c);
    /** End of iteration, for a conn px_tpc_mark_dirty() named: write what
     * is queued. 0, or -1 when the conn is gone (an upcall closed it). */
    int (*flush)(px_tp_conn *c);
    /** Optional: work px_tpc_defer(c, PX_TPC_KICK, 0) asked for. 0 or -1. */
    int (*kick)(px_tp_conn *c);
    /** Optional: busy-poll a conn on the hot list (no syscall where the
     * transport can avoid one). Returns >0 when something happened, 0
     * when nothing did, -1 when the conn is gone. */
    int (*service)(px_tp_conn *c);
    /** Optional: before the loop may sleep (may_block) or between busy
     * polls: arm wake-ups, spin. Nonzero keeps the loop from sleeping. */
    int (*prepare)(px_tp *tp, int may_block);

    /* -- memory (optional, as a set) -- */
    /** Register a region (an RDMA MR; an shm memfd to share); *handle is
     * the transport's, found later with host->ops->mr_handle(). Called for
     * every region of the context, also those made before this instance. */
    int (*mem_register)(px_tp *tp, const px_mr *mr, void **handle);
    /** Deregister what mem_register made (its handle). */
    void (*mem_deregister)(px_tp *tp, void *handle);
    /** Optional, with mem_register: write the remote key of a registered
     * region (for a descriptor in a frame's ext) / read one back. Returns
     * bytes written/read, or -PX_ENOSPC / -PX_EPROTO. */
    int (*rkey_pack)(px_tp *tp, void *handle, void *buf, size_t len);
    /** The other half of rkey_pack: read a remote key back from a frame. */
    int (*rkey_unpack)(px_tp *tp, const void *buf, size_t len, uint64_t *rkey);

    /* -- description (optional) -- */
    /** The URI options check_uri accepts, ended by an entry whose name is
     * NULL (a table of that entry alone: the transport takes none); NULL:
     * not described. Every option named here is accepted by check_uri
     * with its example value where `where` says it has an effect. */
    const px_tp_option *options;
} px_transport;

/* ---- the registry ---------------------------------------------------------------------- */

/** Add a transport (thread-safe).
 * @param ops the transport's table (static: kept by pointer)
 * @return 0; -PX_EINVAL for a table missing a mandatory op or with the
 * wrong abi; -PX_EEXIST when one of its schemes is taken; -PX_ETOOMANY. */
PX_API int px_transport_register(const px_transport *ops);

/** The transport serving `scheme`, loading `libplexus-<scheme>.so` from
 * $PX_PLUGIN_DIR (else the installed plugin directory) if none is
 * registered. Either failure is logged.
 * @param scheme the URI scheme, "tcp"
 * @param[out] out its transport
 * @return 0 and *out; -PX_ENOTBUILT for a scheme plexus knows but this
 * build lacks (rdma without rdma-core); -PX_EBADSCHEME. */
PX_API int px_transport_lookup(const char *scheme, const px_transport **out);

/** Where plugins are loaded from: $PX_PLUGIN_DIR when set and not empty,
 * else the installed plugin directory (`<libdir>/plexus`).
 * @return the directory. */
PX_API const char *px_transport_plugin_dir(void);

/** As px_transport_lookup(), NULL for none, without logging that none
 * does (a plugin not found is said at PX_LOG_DEBUG with the loader's
 * reason; one found that fails to load, at PX_LOG_WARN).
 * @param scheme the URI scheme
 * @return its transport, or NULL. */
PX_API const px_transport *px_transport_find(const char *scheme);

/** Parse `uri` and have its transport check it for connect (listener 0) or
 * listen (1), without network or resolver.
 * @param uri the URI
 * @param listener 0: for connect; 1: for listen
 * @return 0 or the URI's error, logged with what is wrong. */
PX_API int px_transport_check_uri(const char *uri, int listener);

/** Call fn for every registered transport (the built-in ones, and the
 * plugins loaded so far: px_transport_find() loads one), in registration
 * order. fn may be NULL, to count them.
 * @param fn called with each transport and `arg`, or NULL
 * @param arg passed to fn
 * @return how many. */
PX_API int px_transport_foreach(void (*fn)(const px_transport *ops, void *arg), void *arg);

/* ---- helpers for transports ------------------------------------------------------------- */

/** Check a send: segments present and adding up to hdr.data_len, at most
 * max_iov of them, a header the peer's decoder would accept. Sets
 * hdr.version and hdr.ext_len = 0 (a transport that uses ext sets it
 * after). With s->owner_checked set only the count against max_iov is
 * checked: the owner vouches for the rest.
 * @param s the send
 * @param max_iov the most data segments the transport takes
 * @return 0; -PX_EINVAL; -PX_ETOOMANY. */
PX_API int px_tp_send_check(px_tp_send *s, uint32_t max_iov);

/** Place `len` bytes at the cursor (*idx, *off) of a destination vector and
 * advance it; with src NULL only advance (the bytes were put there by a
 * scatter read).
 * @param iov the destination vector
 * @param count its segments
 * @param[in,out] idx the cursor's segment
 * @param[in,out] off the cursor's offset in it
 * @param src the bytes, or NULL
 * @param len how many
 * @return the bytes that did not fit (0 normally). */
PX_API size_t px_iov_put(const px_iov *iov, uint32_t count, uint32_t *idx, size_t *off,
                         const void *src, size_t len);

/** Copy a send's application header then its data segments, contiguously,
 * to dst (hdr.hdr_len + hdr.data_len bytes): into a ring, or aside.
 * @param s the send
 * @param[out] dst room for hdr.hdr_len + hdr.data_len bytes */
PX_API void px_tp_send_copy_body(const px_tp_send *s, void *dst);

/** The memory behind a region: its memfd and the offset of px_mr_addr() in
 * it.
 * @param mr the region
 * @param[out] fd its memfd (the region's own descriptor, not a duplicate)
 * @param[out] offset where px_mr_addr() lies in it
 * @return 0, or -PX_ENOENT for plain registered memory (no fd); -PX_EINVAL
 * for a NULL argument. */
PX_API int px_mr_fd(const px_mr *mr, int *fd, uint64_t *offset);
/** A number naming the region, unique in this process and never reused (a
 * peer may cache mappings by it).
 * @param mr the region
 * @return its number. */
PX_API uint64_t px_mr_id(const px_mr *mr);

/** Add a send at the end of a FIFO.
 * @param f the FIFO
 * @param s the send (its tp_next is the FIFO's) */
static inline void px_tp_fifo_push(px_tp_fifo *f, px_tp_send *s)
{
    s->tp_next = NULL;
    if (f->tail)
        f->tail->tp_next = s;
    else
        f->head = s;
    f->tail = s;
}

/** Take the first send off a FIFO.
 * @param f the FIFO
 * @return the send, or NULL when the FIFO is empty. */
static inline px_tp_send *px_tp_fifo_pop(px_tp_fifo *f)
{
    px_tp_send *s = f->head;
    if (s) {
        f->head = s->tp_next;
        if (!f->head)
            f->tail = NULL;
        s->tp_next = NULL;
    }
    return s;
}

/** Move all of `from` to the end of `to`.
 * @param to the FIFO that grows
 * @param from the FIFO emptied */
static inline void px_tp_fifo_append(px_tp_fifo *to, px_tp_fifo *from)
{
    if (!from->head)
        return;
    if (to->tail)
        to->tail->tp_next = from->head;
    else
        to->head = from->head;
    to->tail = from->tail;
    from->head = from->tail = NULL;
}

/* ---- the chassis ------------------------------------------------------------------------------
 * The rules every transport keeps, in one place. Functions that make an
 * upcall return -1 when the conn was closed from inside it (it may be
 * freed: the caller returns at once without touching it), else 0. */

/** The instance: lists and the loop hooks.
 * @param tp the instance (the head of the transport's struct)
 * @param ops the transport's table
 * @param host what the context lends it (init's argument) */
PX_API void px_tpc_init(px_tp *tp, const px_transport *ops, const px_tp_host *host);
/** Undo px_tpc_init() (the fini op, before freeing).
 * @param tp the instance */
PX_API void px_tpc_fini(px_tp *tp);

/** A new conn (the transport's struct is zeroed; px_tp_conn first).
 * @param c the conn
 * @param tp its instance */
PX_API void px_tpc_conn_init(px_tp_conn *c, px_tp *tp);
/** A new listener (the transport's struct is zeroed; px_tp_listener first).
 * @param l the listener
 * @param tp its instance
 * @param owner who is offered its conns (listen's argument) */
PX_API void px_tpc_listener_init(px_tp_listener *l, px_tp *tp, const px_tp_listen_owner *owner);

/** Upcalls, with the depth bookkeeping that lets an owner close the conn
 * from inside any of them. This one: connected.
 * @param c the conn
 * @return 0; -1 when the conn was closed from inside. */
PX_API int px_tpc_connected(px_tp_conn *c);
/** The frame upcall, with the same bookkeeping as px_tpc_connected().
 * @param c the conn
 * @param rx the frame
 * @return 0; -1 when the conn was closed from inside. */
PX_API int px_tpc_frame(px_tp_conn *c, px_tp_rx *rx);
/** rx_assign, checked: the owner's vector must exist and cover the data,
 * else the conn fails with -PX_ESHORTBUF (its memory is never trusted).
 * *declined: 1 when the owner wants the frame in place.
 * @param c the conn
 * @param rx the arriving frame (rx->dst, dst_count filled by the owner)
 * @param[out] declined 1 when the owner wants the frame in place, else 0
 * @return 0; -1 when the conn is gone (closed from inside, or failed). */
PX_API int px_tpc_rx_assign(px_tp_conn *c, px_tp_rx *rx, int *declined);
/** The head of the send FIFO is finished: pop it and make its send_done.
 * @param c the conn
 * @param status 0, or the send's error
 * @return 0; -1 when the conn was closed from inside. */
PX_API int px_tpc_complete_head(px_tp_conn *c, int status);
/** The link is gone: stop_io, a send_done(-PX_EDISCONNECTED) for every
 * queued send, then disconnected(reason).
 * @param c the conn
 * @param reason why, -PX_E...
 * @return always -1. */
PX_API int px_tpc_disconnect(px_tp_conn *c, int reason);
/** A protocol error: error(reason), then px_tpc_disconnect().
 * @param c the conn
 * @param reason why, -PX_E...
 * @return always -1. */
PX_API int px_tpc_fail(px_tp_conn *c, int reason);

/** The send FIFO: a send the transport returns PX_TP_QUEUED for.
 * @param c the conn
 * @param s the send */
PX_API void px_tpc_queue(px_tp_conn *c, px_tp_send *s);
/** A send refused with -PX_EAGAIN: room follows (px_tpc_room()).
 * @param c the conn
 * @return -PX_EAGAIN, for send to return. */
PX_API int px_tpc_refuse(px_tp_conn *c);
/** There is room again: make the room upcall if a send was refused.
 * @param c the conn
 * @return 0; -1 when the conn was closed from inside. */
PX_API int px_tpc_room(px_tp_conn *c);

/* What px_tpc_defer() (below) delivers from the loop. */
#define PX_TP_EV_CONNECTED    1 /**< px_tpc_defer(): the connected upcall */
#define PX_TP_EV_DISCONNECTED 2 /**< px_tpc_defer(): disconnected (reason) */
#define PX_TP_EV_ERROR        3 /**< px_tpc_defer(): error (reason), then disconnected */
#define PX_TPC_KICK           4 /**< px_tpc_defer(): the transport's kick op */
/** Work from the loop rather than from inside the owner's call:
 * PX_TP_EV_CONNECTED, PX_TP_EV_DISCONNECTED (reason), PX_TP_EV_ERROR
 * (reason, then disconnected) or PX_TPC_KICK (the transport's kick op).
 * @param c the conn
 * @param event PX_TP_EV_* or PX_TPC_KICK
 * @param reason the reason of a DISCONNECTED or ERROR, else 0 */
PX_API void px_tpc_defer(px_tp_conn *c, int event, int reason);
/** Flush the conn at the end of this iteration (the flush op).
 * @param c the conn */
PX_API void px_tpc_mark_dirty(px_tp_conn *c);
/** Service the conn on every poll until it has been idle a while.
 * @param c the conn */
PX_API void px_tpc_mark_hot(px_tp_conn *c);
/** Take it off the hot list now (it sleeps on its wake-up).
 * @param c the conn */
PX_API void px_tpc_cool(px_tp_conn *c);
/** Has the conn been idle on the hot list long enough to cool? (service
 * ops ask, then cool it when its wake-up is armed.)
 * @param c the conn
 * @return nonzero when it has. */
PX_API int px_tpc_hot_idle(const px_tp_conn *c);
/** Call fn for every hot conn (a prepare op arming wake-ups, say): fn
 * returns 1 to keep it hot, 0 to cool it, -1 when it closed it (gone);
 * the walk stops early when fn returns 2.
 * @param tp the instance
 * @param fn called with each hot conn and `arg`
 * @param arg passed to fn
 * @return how many stay hot. */
PX_API int px_tpc_hot_each(px_tp *tp, int (*fn)(px_tp_conn *c, void *arg), void *arg);
/** Busy-poll the instance: deferred events, flushes, hot conns. (The
 * context calls it; a transport need not.)
 * @param tp the instance
 * @return the events handled. */
PX_API int px_tpc_poll(px_tp *tp);
/** The `more` hint of the next frame: a count of the complete frames known
 * to follow, made by count(c) once per batch and counted down.
 * @param c the conn
 * @param count counts the complete frames received and not yet delivered
 * @return the hint for px_tp_rx.more. */
PX_API uint32_t px_tpc_more(px_tp_conn *c, uint32_t (*count)(px_tp_conn *c));
/** Forget the `more` count (the next px_tpc_more() counts afresh).
 * @param c the conn */
PX_API void px_tpc_more_reset(px_tp_conn *c);

/** Listeners: offer a conn to the owner (new_conn).
 * @param l the listener
 * @param c the new conn
 * @return 0; -1 when the listener was closed from inside. */
PX_API int px_tpc_offer(px_tp_listener *l, px_tp_conn *c);
/** accept()/reject() bookkeeping: off the offer list, the new owner set.
 * @param c the conn on offer
 * @param owner its new owner
 * @return 0; -PX_EINVAL when the conn is not on offer. */
PX_API int px_tpc_accept(px_tp_conn *c, const px_tp_owner *owner);
/** listener_close() bookkeeping: closes every conn still on offer and frees
 * the listener when no upcall of it is on the stack.
 * @param l the listener */
PX_API void px_tpc_listener_close(px_tp_listener *l);
/** close() bookkeeping: moves the unfinished sends out, stops the conn's
 * chassis work, frees it when no upcall is on the stack.
 * @param c the conn
 * @param[out] unfinished receives the sends not finished */
PX_API void px_tpc_close(px_tp_conn *c, px_tp_fifo *unfinished);

/** The lending rule. A transport says once which memory of a conn it
 * delivers frames from in place (its ring, scratch, its own buffer;
 * region 0..PX_TPC_LEND_MAX-1, len 0 to drop one), marks a frame as lent
 * when it delivers one in place (px_tpc_lent), and calls px_tpc_reclaim()
 * before it reuses any of that memory: the conn is flushed, and every
 * queued send still pointing into lent memory is copied aside (the send
 * is re-pointed to the copy, freed at its completion). Never waiting:
 * two peers that both echo into full buffers would deadlock.
 * px_tpc_reclaim() returns 0, -1 when the conn is gone.
 * @param c the conn
 * @param region which of its PX_TPC_LEND_MAX regions
 * @param base the region's first byte
 * @param len its bytes, 0 to drop it */
PX_API void px_tpc_lendable(px_tp_conn *c, unsigned region, const void *base, size_t len);
/** A frame was delivered in place from lendable memory (the lending rule,
 * px_tpc_lendable()).
 * @param c the conn */
static inline void px_tpc_lent(px_tp_conn *c)
{
    c->lent = 1;
}
/** Before reusing lendable memory: flush the conn and copy aside every
 * queued send still pointing into it (the lending rule, px_tpc_lendable()).
 * @param c the conn
 * @return 0, -1 when the conn is gone. */
PX_API int px_tpc_reclaim(px_tp_conn *c);
/** Does a send point into the conn's lendable memory? (For a transport
 * that must copy such a send before it returns, as shm does for one it
 * reads by CMA later: px_tpc_bounce().)
 * @param c the conn
 * @param s the send
 * @return 1 when it does, else 0. */
PX_API int px_tpc_points_into_lent(const px_tp_conn *c, const px_tp_send *s);
/** Copy a send's header and data aside and re-point it there (freed when
 * it completes or is returned unfinished).
 * @param s the send
 * @return 0 or -PX_ENOMEM. */
PX_API int px_tpc_bounce(px_tp_send *s);
/** Free what px_tpc_bounce() made (the chassis does, at completion).
 * @param s the send */
PX_API void px_tpc_unbounce(px_tp_send *s);

#ifdef __cplusplus
}
#endif
#endif
