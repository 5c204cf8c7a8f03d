/**
 * @file
 * plexus — servers, sessions, connections and messages.
 *
 * Object model (Accelio's, made simpler):
 *   server   a URI bound on a context; new sessions arrive in on_new_session.
 *   session  a client's association with one server, carrying user data and
 *            the private data sent at setup. It has one or more connections.
 *   conn     one connection of a session, bound to one context (thread); all
 *            its callbacks run on that context's thread.
 *   msg      what travels: `out` is what this side sends, `in` what it
 *            receives (a request on the responder, the reply on the
 *            requester, a one-way message on its receiver).
 *
 * Lifetime: every object ends asynchronously. px_conn_close() and
 * px_session_close() start a graceful end; the object is freed after the
 * last event about it (PX_EV_CONN_TEARDOWN / PX_EV_SESSION_TEARDOWN) has
 * been delivered and its callback has returned.
 *
 * The exactly-once rule: every request you send ends in exactly one of
 * {on_msg with its response, on_msg_error}; every one-way message in exactly
 * one of {on_msg_send_complete, on_msg_delivered (with PX_MSG_RECEIPT),
 * on_msg_error}; every response you send in exactly one of
 * {on_msg_send_complete, on_msg_error}. Also when the peer dies.
 */
#ifndef PLEXUS_SESSION_H
#define PLEXUS_SESSION_H

#include "plexus/api.h"

#include <stddef.h>
#include <stdint.h>

#include "plexus/memory.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef PX_CTX_DECLARED /* one typedef however many headers name it (C99) */
/** Defined where px_ctx is declared: one typedef however many headers name it (C99). */
#define PX_CTX_DECLARED
/** A context: one event loop per thread (plexus/context.h). */
typedef struct px_ctx px_ctx;
#endif
/** A server: a URI bound on a context (opaque). */
typedef struct px_server px_server;
/** A session: a client's association with one server (opaque). */
typedef struct px_session px_session;
/** A connection of a session, bound to one context (opaque). */
typedef struct px_conn px_conn;
/** A message (struct px_msg). */
typedef struct px_msg px_msg;

/* ---- messages ---------------------------------------------------------- */

/** What a delivered message is (px_msg.type). */
typedef enum px_msg_type {
    PX_MSG_NONE = 0,     /**< not a delivered message */
    PX_MSG_REQUEST = 1,  /**< delivered to the responder */
    PX_MSG_RESPONSE = 2, /**< delivered to the requester, in its own px_msg */
    PX_MSG_ONEWAY = 3,   /**< delivered to the receiver of px_send_msg() */
} px_msg_type;

/* Flags in px_msg.flags, set by the sender. */
#define PX_MSG_RECEIPT (1u << 0) /**< one-way: report on_msg_delivered, not send_complete */

/** One direction of a message: an application header and a data vector.
 * When you fill it (out, or in for the reply's landing place) the memory
 * it points to is yours and must stay valid until the message completes.
 * When plexus fills it (a delivered message) it points into plexus-owned
 * memory valid until you release the message (px_release_msg,
 * px_release_response) or, for a request, until its response completes. */
typedef struct px_msg_vec {
    void *header;        /**< the application header */
    uint32_t header_len; /**< its bytes */
    uint32_t iov_count;  /**< data segments in iov */
    px_iov *iov;         /**< the data */
    uint64_t data_len;   /**< delivered: total data bytes; ignored on send */
} px_msg_vec;

/** A message. For sends the struct is yours: allocate it as you like and
 * keep it untouched until its completion callback; an idle message may be
 * reused or reset entirely (all-zero priv means idle). Delivered requests
 * and one-way messages are plexus's: read them, fill `out` of a request and
 * px_send_response() it, but never free them. A delivered message you still
 * hold when its connection ends gets no callback (it is not one you sent);
 * it stays readable until PX_EV_CONN_TEARDOWN, and px_send_response() on it
 * then returns -PX_ENOTCONN. */
struct px_msg {
    px_msg_vec out;   /**< what this side sends */
    px_msg_vec in;    /**< what it receives (the request, the reply, the one-way message) */
    uint32_t flags;   /**< PX_MSG_* */
    px_msg_type type; /**< set by plexus on delivery */
    /** Requests: give up if no response came within this many milliseconds
     * of px_send_request(): on_msg_error(-PX_ETIMEDOUT), handled as a
     * cancel (px_cancel). 0: the context's request_timeout_ms. */
    uint32_t timeout_ms;
    uint32_t reserved;  /**< 0 */
    uint64_t sn;        /**< serial number, set by plexus when sent */
    void *user_context; /**< yours; plexus never reads it */
    px_iov in_iov[1];   /**< where plexus points in.iov for a single-segment delivery */
    uint64_t priv[12];  /**< plexus-internal state; do not touch */
};

/* ---- events ------------------------------------------------------------ */

/** What happened to a session or connection (px_event.type). */
typedef enum px_event_type {
    PX_EV_SESSION_ESTABLISHED = 1, /**< client: the server accepted */
    PX_EV_SESSION_REJECTED,        /**< client: reason + the server's user data */
    PX_EV_SESSION_REDIRECTED,      /**< client: the server sent us elsewhere; data = URI */
    PX_EV_CONN_ESTABLISHED,        /**< both sides: the connection carries messages */
    PX_EV_CONN_CLOSED,             /**< graceful close finished (either side began it) */
    PX_EV_CONN_DISCONNECTED,       /**< connection lost; reason says why */
    PX_EV_CONN_ERROR,              /**< protocol error from the peer; DISCONNECTED follows */
    PX_EV_CONN_TEARDOWN,           /**< last event of a connection; freed after it */
    PX_EV_SESSION_TEARDOWN,        /**< last event of a session; freed after it */
} px_event_type;

/** The name of an event type.
 * @param type the event type
 * @return "PX_EV_CONN_CLOSED", ..., or "PX_EV_?" (a static string). */
PX_API const char *px_event_name(px_event_type type);

/** An event of a session or of one of its connections (on_session_event). */
typedef struct px_event {
    px_event_type type; /**< what happened */
    px_conn *conn;      /**< connection events; NULL for session events */
    int reason;         /**< 0, or -PX_E... saying why */
    const void *data;   /**< REJECTED: the server's data; REDIRECTED: the URI */
    size_t data_len;    /**< valid during the callback only */
} px_event;

/** What a server learns of a new session, valid during on_new_session. */
typedef struct px_new_session {
    const char *uri;          /**< the server URI the client reached */
    const char *peer;         /**< the peer's address, e.g. "tcp://127.0.0.1:5123" */
    const void *private_data; /**< the client's setup data */
    size_t private_len;       /**< its bytes */
} px_new_session;

/** Which way an ended message was going, for on_msg_error. */
typedef enum px_msg_dir {
    /** A message you sent: a request, a one-way message or a response. */
    PX_DIR_OUT = 1,
    /** A message you were receiving into memory you supplied in
     * assign_data_in_buf (msg->in.iov): it will not be delivered, and that
     * memory is yours again. msg is plexus's delivery, not one of yours. */
    PX_DIR_IN = 2,
} px_msg_dir;

/** Callbacks. All run on the thread of the context of the connection
 * concerned; `user` is the session's user pointer (px_session_set_user).
 * Inside them you may send, respond, release, cancel and close; you may not
 * destroy the context or run it recursively. Unused members may be NULL.
 *
 * A session with connections on several threads: some of its callbacks
 * (events of the handshake, of a close, of a connection's death) run while
 * plexus holds that session's lock, so inside a callback never wait for
 * another thread that may be calling into the same session; hand such
 * work to that thread (px_ctx_post) instead. */
typedef struct px_session_ops {
    /** An event of the session or of one of its connections (px_event). */
    void (*on_session_event)(px_session *s, const px_event *ev, void *user);
    /** Server only. Call px_session_accept/reject/redirect, now or later; a
     * session left undecided keeps its first connection waiting. */
    void (*on_new_session)(px_session *s, const px_new_session *req, void *user);
    /** A request, a response (in your own px_msg) or a one-way message.
     * more_in_batch: further messages of this connection are already here
     * and follow at once, so you may coalesce work until it is 0. */
    void (*on_msg)(px_conn *c, px_msg *msg, int more_in_batch, void *user);
    /** A PX_MSG_RECEIPT one-way message reached the peer's application. */
    void (*on_msg_delivered)(px_conn *c, px_msg *msg, void *user);
    /** The transport no longer needs the buffers of a one-way message
     * (without receipt) or of a response you sent. */
    void (*on_msg_send_complete)(px_conn *c, px_msg *msg, void *user);
    /** The message ended without success. dir == PX_DIR_OUT: one you sent;
     * reason is -PX_EDISCONNECTED, -PX_ECANCELED, -PX_ETIMEDOUT,
     * -PX_EFLUSHED, -PX_EREJECTED, -PX_ESHORTBUF, -PX_EPEER, ... and the
     * px_msg is yours again. dir == PX_DIR_IN: an incoming message (type
     * REQUEST or ONEWAY) whose data was being received into memory you gave
     * in assign_data_in_buf when the connection died; it is never
     * delivered, and that memory is yours again. */
    void (*on_msg_error)(px_conn *c, px_msg *msg, px_msg_dir dir, int reason, void *user);
    /** A message with msg->in.data_len bytes of data (above the inline
     * threshold) is arriving; msg->in.header is already valid. Point
     * msg->in.iov/iov_count at your memory (at least data_len bytes in all)
     * and return 0 to receive straight into it, or return nonzero to let
     * plexus supply a buffer. A too-short vector is refused, never trusted. */
    int (*assign_data_in_buf)(px_conn *c, px_msg *msg, void *user);
    /** Responder: the requester gave up on a request you hold (px_cancel or
     * its timeout). plexus has already answered it with -PX_ECANCELED, so
     * stop working on it: px_send_response() on it now returns
     * -PX_ECANCELED; px_release_msg() it when you are done with it. */
    void (*on_msg_canceled)(px_conn *c, px_msg *req, void *user);
} px_session_ops;

/* ---- server ------------------------------------------------------------ */

/** Bind `uri` on `ctx`. ops and user are copied/kept for every session the
 * server accepts. Without on_new_session every session is accepted (with
 * no data). Port 0 picks a free port: read it back with px_server_uri().
 * Context thread only.
 * @param ctx the context the server and its sessions live on
 * @param uri where to listen, e.g. "tcp://0.0.0.0:7000" (options: @ref uri_options)
 * @param ops the callbacks of every session the server accepts
 * @param user the user pointer of every session it accepts
 * @param[out] out the new server
 * @return 0 and *out; -PX_EBADURI/-PX_EBADSCHEME/-PX_EBADHOST/-PX_EBADPORT/
 * -PX_EBADPATH/-PX_EBADOPT for the URI; -PX_ENOTBUILT for a transport this
 * build lacks; -PX_EADDRINUSE; -PX_EACCES; -PX_ENOMEM. */
PX_API int px_server_bind(px_ctx *ctx, const char *uri, const px_session_ops *ops, void *user,
                          px_server **out);

/** The URI actually bound (with the real port), NUL-terminated into buf.
 * @param srv the server
 * @param[out] buf where the URI goes
 * @param len bytes of buf
 * @return its length; -PX_ENOSPC when buf is too small. */
PX_API int px_server_uri(const px_server *srv, char *buf, size_t len);

/** Stop listening, free the server and close every session it accepted
 * gracefully (px_session_close): their in-flight work drains and their
 * events, down to SESSION_TEARDOWN, still arrive. Context thread only.
 * @param srv the server
 * @return 0. */
PX_API int px_server_unbind(px_server *srv);

/** As px_server_unbind(), but every session it accepted is disconnected
 * abruptly (px_conn_disconnect): outstanding messages fail with
 * -PX_EFLUSHED. Context thread only.
 * @param srv the server
 * @return 0. */
PX_API int px_server_disconnect(px_server *srv);

/* ---- session ----------------------------------------------------------- */

/** What a client session is made with (px_session_create). */
typedef struct px_session_params {
    const char *uri;           /**< the server to reach */
    const px_session_ops *ops; /**< kept by pointer: must outlive the session */
    void *user;                /**< passed to every callback */
    const void *private_data;  /**< copied; delivered to on_new_session */
    size_t private_len;        /**< at most 4096 */
} px_session_params;

/** Create a client session on `ctx`. No network traffic yet: the first
 * px_connect() performs the handshake, but the URI is checked in full now
 * (scheme, host, port, path, every option) without resolving names.
 * @param ctx the session's context
 * @param params the server's URI (options: @ref uri_options), the callbacks, user data
 * @param[out] out the new session
 * @return 0 and *out; -PX_EINVAL; -PX_EMSGSIZE for private data over 4096
 * bytes; the URI errors of px_server_bind(); -PX_ENOMEM. */
PX_API int px_session_create(px_ctx *ctx, const px_session_params *params, px_session **out);

/** Open a connection of session `s`, driven by context `ctx`. Messages may
 * be sent on it at once; they are queued until it is established.
 * PX_EV_CONN_ESTABLISHED (and, the first time, PX_EV_SESSION_ESTABLISHED)
 * follow, or PX_EV_SESSION_REJECTED / PX_EV_CONN_DISCONNECTED.
 *
 * One session may have connections on several contexts (one per thread,
 * say): call px_connect(s, ctx2, ...) from the thread of `ctx2`, which
 * drives that connection; the session's own context is the one it was
 * created on. Connections made before the session is established wait
 * for the first one's handshake (one session on the server, however many
 * connect at once), then dial. Once established, further connections go
 * to the portals the server named, in turn, or else where the session was
 * accepted. A connection's callbacks (on_msg and the rest, and its
 * PX_EV_CONN_* events) run on its context's thread; the session's own
 * events (PX_EV_SESSION_*) on the session's context's thread. The
 * application's callbacks of one session may therefore run on several
 * threads at once. A context whose connections belong to another
 * context's session is busy (px_ctx_destroy: -PX_EBUSY) until they are
 * torn down; keep running it until then.
 *
 * With px_ctx_opts.share_links on `ctx`, the connection travels on a link
 * `ctx` already has to the same URI, if one carries no connection of `s`
 * (a channel of that link is its own); else it dials a link of its own.
 * A connection on a shared link behaves as on a link of its own: its
 * messages, events, close and px_conn_disconnect are its own, and the
 * others on the link go on. Only the link's death (the peer gone, a
 * transport error) ends them all, each with its own completions.
 * @param s   a client session
 * @param ctx the context (and thread) to drive the connection; the caller's
 * @param out the new connection
 * @return 0 and *out; -PX_EINVAL; -PX_ECLOSED for a closing session;
 *         -PX_EREJECTED after a reject; -PX_ENOMEM. */
PX_API int px_connect(px_session *s, px_ctx *ctx, px_conn **out);

/** Server side: decide a session offered to on_new_session.
 *
 * Portals (px_session_accept): URIs of other servers of this process,
 * typically one per context and thread, bound with px_server_bind() like
 * any server. The client spreads its further connections of the session
 * across them in turn; each such connection is driven by its portal's
 * context, and its callbacks (the session's ops and user pointer, not the
 * portal server's) run on that context's thread. The session itself stays
 * on the context that accepted it (its PX_EV_SESSION_* events run there),
 * and that context stays busy (px_ctx_destroy: -PX_EBUSY) until the
 * session is torn down. A portal server unbound ends the connections that
 * joined through it; the session goes on with its others. At most 64
 * portals (or redirect URIs), each a URI this build can connect to, all of
 * them and `data` within one 8 KiB handshake frame.
 *
 * data is copied and delivered with PX_EV_SESSION_ESTABLISHED /
 * PX_EV_SESSION_REJECTED.
 * @param s         the session offered to on_new_session
 * @param portals   servers for its further connections (NULL when none)
 * @param n_portals how many
 * @param data      accept data for the client (may be NULL)
 * @param len       its length, at most 4096
 * @return 0; -PX_EALREADY if decided before; -PX_EINVAL (also for a NULL
 *         or empty portal, or more than 64); -PX_EMSGSIZE for data over
 *         4096 bytes or portals and data over the handshake frame; a
 *         portal URI's own error (-PX_EBADURI, -PX_EBADSCHEME, ...). */
PX_API int px_session_accept(px_session *s, const char *const *portals, size_t n_portals,
                             const void *data, size_t len);
/** Server side: refuse a session offered to on_new_session; the client
 * hears PX_EV_SESSION_REJECTED with `reason` and `data`.
 * @param s      the session offered
 * @param reason a negative PX_E* code for the client
 * @param data   reject data for the client (may be NULL)
 * @param len    its length, at most 4096
 * @return 0; -PX_EALREADY if decided before; -PX_EINVAL (also for a
 *         reason >= 0); -PX_EMSGSIZE for data over 4096 bytes. */
PX_API int px_session_reject(px_session *s, int reason, const void *data, size_t len);
/** Server side: send the client elsewhere; it re-dials uris[0] with the
 * messages queued on its connection (PX_EV_SESSION_REDIRECTED).
 * @param s      the session offered
 * @param uris   where to go: well-formed URIs, at most 64
 * @param n_uris how many, at least one
 * @return 0; -PX_EALREADY if decided before; -PX_EINVAL; -PX_EMSGSIZE
 *         when they do not fit the handshake frame; a URI's own error. */
PX_API int px_session_redirect(px_session *s, const char *const *uris, size_t n_uris);

/** Gracefully close every connection of the session (in-flight work drains
 * first, then the peer is told), then deliver PX_EV_SESSION_TEARDOWN and
 * free it. Closing a session already torn down is detected in debug
 * builds, which keep freed handles poisoned (-PX_ECLOSED); in release
 * builds that is a use after free.
 * Lifetime: a client session (rejected, redirected, disconnected or not)
 * lives until you close it. A server session ends by itself after its last
 * connection, with PX_EV_SESSION_TEARDOWN; closing it there is optional.
 * Redirects are followed by plexus: the connection re-dials the first URI
 * given, with the messages queued on it, after PX_EV_SESSION_REDIRECTED.
 * @param s the session
 * @return 0; -PX_EALREADY when closing already; -PX_ECLOSED for a session
 * already torn down (debug builds). */
PX_API int px_session_close(px_session *s);

/** Set the user pointer every callback of the session receives.
 * @param s the session
 * @param user the new pointer */
PX_API void px_session_set_user(px_session *s, void *user);
/** The session's user pointer.
 * @param s the session
 * @return the user pointer (px_session_params.user, the server's `user`
 * for a session it accepted, or what px_session_set_user() set); NULL for
 * a handle that is not a live session. */
PX_API void *px_session_user(const px_session *s);

/* ---- connection -------------------------------------------------------- */

/** Graceful close: new sends fail with -PX_ESHUTDOWN, in-flight requests
 * and queued sends complete, then the peer is told and
 * PX_EV_CONN_CLOSED, PX_EV_CONN_TEARDOWN follow. Called before the
 * connection is established, it waits for the handshake, lets the queued
 * messages go, then closes.
 * @param c the connection
 * @return 0; -PX_EALREADY; -PX_ECLOSED for a connection already torn down
 * (debug builds, as px_session_close). */
PX_API int px_conn_close(px_conn *c);

/** Abrupt close: outstanding work completes at once with -PX_EFLUSHED,
 * then PX_EV_CONN_DISCONNECTED, PX_EV_CONN_TEARDOWN.
 * @param c the connection
 * @return 0. */
PX_API int px_conn_disconnect(px_conn *c);

/** The session a connection belongs to.
 * @param c the connection
 * @return its session; NULL for a handle that is not a live connection. */
PX_API px_session *px_conn_session(const px_conn *c);
/** The context that drives a connection (its callbacks run on its thread).
 * @param c the connection
 * @return its context; NULL for a handle that is not a live connection. */
PX_API px_ctx *px_conn_ctx(const px_conn *c);

/** The peer's address as a URI into buf.
 * @param c the connection
 * @param[out] buf where the URI goes, NUL-terminated
 * @param len bytes of buf
 * @return its length; -PX_ENOSPC; -PX_ENOTCONN before the transport
 * connected. */
PX_API int px_conn_peer(const px_conn *c, char *buf, size_t len);

/** A connection's counters (px_conn_get_stats). */
typedef struct px_conn_stats {
    /** Requests sent, responses received, requests received, responses sent. @{ */
    uint64_t requests_sent, responses_recv, requests_recv, responses_sent;
    /** @} */
    /** One-way messages sent, received. @{ */
    uint64_t oneway_sent, oneway_recv;
    /** @} */
    /** Bytes sent, received: application header + data. @{ */
    uint64_t bytes_sent, bytes_recv;
    /** @} */
    uint64_t in_flight; /**< requests awaiting a response now */
    /** Sends waiting behind a full queue now: how many, their bytes. @{ */
    uint64_t queued, queued_bytes;
    /** @} */
    uint64_t rx_direct;   /**< messages read straight into their destination */
    uint64_t rx_detached; /**< in-place deliveries copied because the app kept them */
    uint64_t eagain;      /**< sends refused with -PX_EAGAIN */
} px_conn_stats;

/** A connection's counters.
 * @param c the connection
 * @param[out] out the counters now
 * @return 0. */
PX_API int px_conn_get_stats(const px_conn *c, px_conn_stats *out);

/** Counters over many connections. `conn` sums every counter of
 * px_conn_stats over the connections open now and those already gone;
 * its gauges (in_flight, queued, queued_bytes) are over the open ones. */
typedef struct px_stats_sum {
    px_conn_stats conn;    /**< the sums (gauges: over the open connections) */
    uint64_t conns_open;   /**< now */
    uint64_t conns_opened; /**< since the context, or the server, was made */
    uint64_t conns_closed; /**< freed (after their CONN_TEARDOWN) */
    uint64_t links_open;   /**< transport links open now (fewer than conns_open where
                                connections share links: px_ctx_opts.share_links) */
    uint64_t links_opened; /**< transport links made or accepted */
} px_stats_sum;

/** Every connection of the context, client and server side. Context thread
 * only (it walks the open connections).
 * @param ctx the context
 * @param[out] out the sums
 * @return 0; -PX_EINVAL. */
PX_API int px_ctx_get_conn_stats(px_ctx *ctx, px_stats_sum *out);

/** The connections the server accepted (those that have not said HELLO
 * yet included). Context thread only.
 * @param srv the server
 * @param[out] out the sums
 * @return 0; -PX_EINVAL. */
PX_API int px_server_get_stats(const px_server *srv, px_stats_sum *out);

/** The server's open connections: up to `max` of them into conns (each
 * good for px_conn_get_stats, px_conn_peer, ... until its
 * CONN_TEARDOWN), and how many there are into *n_open (may be more than
 * max: call again with a larger array). Context thread only.
 * @param srv the server
 * @param[out] conns room for `max` connections
 * @param max how many conns holds
 * @param[out] n_open how many connections are open
 * @return 0; -PX_EINVAL. */
PX_API int px_server_list_conns(const px_server *srv, px_conn **conns, size_t max, size_t *n_open);

/* ---- sending ----------------------------------------------------------- */

/** Send a request. req->out is sent; the response arrives in on_msg with
 * msg == req, msg->type == PX_MSG_RESPONSE and msg->in filled: into your
 * req->in.iov if you pointed it at memory (it must be large enough, else
 * on_msg_error -PX_ESHORTBUF), else into plexus memory. Either way call
 * px_release_response(req) afterwards.
 * On any error the message is untouched and no callback comes.
 * @param c the connection
 * @param req the request: yours, untouched until its response or error
 * @return 0; -PX_EAGAIN (queue and byte limit full: nothing was sent);
 * -PX_EMSGSIZE (header or data over the limits); -PX_ETOOMANY (too many
 * iovecs); -PX_ESHUTDOWN (closing); -PX_ENOTCONN (disconnected);
 * -PX_EINVAL. */
PX_API int px_send_request(px_conn *c, px_msg *req);

/** Answer a delivered request: fill req->out, then call this, in on_msg or
 * later. Completion: on_msg_send_complete(req) or on_msg_error(req); the
 * request is recycled after that callback. On any error the request stays
 * yours: answer it otherwise or px_release_msg() it, else the requester
 * waits.
 * @param req the delivered request, its `out` filled
 * @return 0; errors as px_send_request() (-PX_EMSGSIZE: over the
 * requester's limits), -PX_EALREADY when already answered, -PX_ECANCELED
 * when the requester canceled it and -PX_ESHUTDOWN when the connection is
 * closing (plexus answered it for you in both cases). */
PX_API int px_send_response(px_msg *req);

/** Send a one-way message.
 * @param c the connection
 * @param msg the message: yours, untouched until its completion
 * (on_msg_send_complete, on_msg_delivered with PX_MSG_RECEIPT, or
 * on_msg_error)
 * @return as px_send_request(). */
PX_API int px_send_msg(px_conn *c, px_msg *msg);

/** Give back the reply buffers of a completed request (after on_msg with
 * PX_MSG_RESPONSE). The px_msg is yours again.
 * @param req the request whose response was delivered
 * @return 0; -PX_EINVAL. */
PX_API int px_release_response(px_msg *req);

/** Give back a delivered one-way message. For a delivered request you will
 * not answer, this answers it with an error (-PX_EPEER reaches the
 * requester).
 * @param msg the delivered message
 * @return 0; -PX_EINVAL. */
PX_API int px_release_msg(px_msg *msg);

/** Cancel an outstanding request: on_msg_error -PX_ECANCELED follows from
 * the loop (never inside this call), and no response will be delivered (a
 * late one is discarded). The responder is told (a CANCEL frame: its
 * on_msg_canceled runs and plexus answers for it), so the request's place
 * in the connection's queue depth is freed within a round trip; a
 * responder that never answers loses it after three keepalive intervals.
 * Your reply buffers (req->in.iov) are yours again once on_msg_error has
 * run: plexus never writes into them afterwards. When the response is
 * already arriving into them, on_msg_error waits until it has landed; on
 * a transport that writes responses directly into them (RDMA), it waits
 * for the response itself or for the connection's end, whichever first.
 * @param req the request
 * @return 0; -PX_EALREADY when it completed (or was canceled) already;
 * -PX_EINVAL for a message that is not an outstanding request (one never
 * sent, or a one-way message). */
PX_API int px_cancel(px_msg *req);

#ifdef __cplusplus
}
#endif
#endif
