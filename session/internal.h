/* The session layer's internals: tasks, connections, sessions, servers.
 *
 * Ownership in one place:
 *   px_server  owned by the application (bind/unbind); owns its listener.
 *   px_session owned by the application on the client side (create/close),
 *              by its server side connections on the server side (freed
 *              after the last one is torn down); owns its connections.
 *   px_conn    owned by its session; owns its transport link and every
 *              task it has taken from the context's cache; freed after
 *              PX_EV_CONN_TEARDOWN has been delivered.
 *   px_task    from the context's cache (task.c): the bookkeeping of one
 *              message in flight (tx) or delivered and held (rx).
 *   layer      the per-context state of this layer (task cache, server
 *              sessions whose server is gone, the debug quarantine of
 *              freed handles); owned by the context, freed at destroy.
 */
#ifndef PX_SESSION_INTERNAL_H
#define PX_SESSION_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/ctx.h"
#include "core/list.h"
#include "plexus/session.h"
#include "plexus/transport.h"
#include "session/handshake.h"

/* ---- tasks ------------------------------------------------------------- */

enum task_kind { TASK_TX = 1, TASK_RX = 2 };

enum task_state {
    TS_FREE = 0,
    TS_AWAIT_RESPONSE, /* tx request sent (or being sent); msg set */
    TS_CANCELED,       /* tx request given up (cancel, timeout): the answer is discarded;
                          msg is NULL, or set while its reply still lands in the app's
                          memory (completed when it has) */
    TS_AWAIT_RECEIPT,  /* tx one-way with receipt */
    TS_SENDING,        /* tx one-way without receipt, until send complete */
    TS_DELIVERED,      /* rx: handed to the application, not yet answered/released */
    TS_RESPONDING,     /* rx request: response handed to the transport */
};

typedef struct px_task {
    px_tp_send send; /* send.cookie == this task */
    px_list link;    /* tx: conn->awaiting, then conn->resp_held; rx: conn->held */
    struct px_conn *conn;
    px_msg *msg;   /* tx: the application's message; rx: &rx_msg */
    px_msg rx_msg; /* rx: what the application sees */
    px_buf *buf;   /* copies of detached or directly received data (a chain) */
    px_iov rx_iov; /* rx: the single data segment plexus points in.iov at */
    uint32_t gen;  /* bumped at each reuse: part of the wire id */
    uint8_t kind;
    uint8_t state;
    uint8_t in_transport;  /* send handed to the transport, completion pending */
    uint8_t released;      /* rx: the application let go (released or responded) */
    uint8_t inplace_hdr;   /* the delivered header still points into the transport */
    uint8_t inplace_data;  /* the delivered data still points into the transport */
    uint8_t silent;        /* rx: answered by plexus with an error; no callback */
    uint8_t auto_answered; /* rx: answered by plexus while the application holds it */
    uint8_t short_reply;   /* tx: the reply did not fit the application's vector */
    uint8_t app_assigned;  /* rx: data goes to memory from assign_data_in_buf */
    uint8_t rx_into_app;   /* tx: the response is landing in the app's in.iov now */
    int32_t reason;        /* rx auto_answered: what px_send_response says;
                              tx TS_CANCELED: the error the application gets */
    uint32_t cancel_tick;  /* tx TS_CANCELED: the conn's tick when given up */
    uint64_t peer_id;      /* rx: the peer's id of this message */
} px_task;

/* The library's view of an application px_msg's priv[] area. */
typedef struct msg_priv {
    px_list link;         /* conn->pending while waiting for a task; conn->cancels */
    struct px_conn *conn; /* set while the message is the library's */
    px_task *task;        /* tx task once sent; rx task for delivered ones */
    px_ctx *ctx;
    uint64_t bytes;       /* header + data, counted against the byte limit */
    uint64_t deadline_ns; /* requests with a timeout: px_now_ns() to give up at; else 0 */
    uint32_t state;       /* MS_* */
    uint32_t frame_type;
    int32_t reason;        /* MS_CANCELED: the error its completion carries */
    uint32_t app_in_count; /* the reply vector the application set, restored */
    px_iov *app_in_iov;    /* when it releases the response */
} msg_priv;

enum msg_state {
    MS_IDLE = 0,
    MS_PENDING,
    MS_IN_FLIGHT,
    MS_RESPONSE_HELD,
    MS_DELIVERED,
    MS_CANCELED,
};

_Static_assert(sizeof(msg_priv) <= sizeof(((px_msg *)0)->priv), "px_msg.priv too small");

static inline msg_priv *msg_priv_of(px_msg *m)
{
    return (msg_priv *)(void *)m->priv;
}

/* The message whose msg_priv.link is `n`. */
static inline px_msg *msg_of_link(px_list *n)
{
    return PX_CONTAINER_OF((void *)PX_CONTAINER_OF(n, msg_priv, link), px_msg, priv);
}

/* ---- links (the nexus) ------------------------------------------------- */

/* One transport link and the connections that travel on it, each on a
 * channel of its own (the frame header's `channel`). The transport's
 * upcalls land on the nexus and are routed to a connection by channel.
 * Owned by the connections on it: made by the first one (a client's
 * connect, a server's accept), freed when the link is closed and nobody
 * is on it, or after link_linger_ms with nobody on it (client), or after
 * handshake_timeout_ms with nobody on it (server). Context thread only. */
typedef struct px_nexus {
    px_ctx *ctx;
    px_ctx_tp *ctp;
    px_tp_conn *tp; /* NULL once closed */
    int client;
    int connected;      /* client: the transport said connected */
    int shareable;      /* client: further connections may join (in the layer's list) */
    int dead;           /* the link is gone: its connections are ending */
    int paused;         /* connections on it that asked for reads to stop */
    int warned;         /* server: the too-many-connections warning was logged */
    uint32_t next_chan; /* client: the channel the next joiner gets */
    px_list conns;      /* px_conn.nexus_link */
    unsigned n_conns;
    unsigned n_leaving;       /* ... of which leaving (px_conn.leaving) */
    unsigned visit;           /* the fan-out walk in progress (px_conn.visit) */
    unsigned walking;         /* fan-out walks on the stack: it is freed after them */
    int doomed;               /* nobody on it and closed: free when the walks end */
    struct px_conn *last;     /* the connection the last frame went to (a cache) */
    struct px_server *server; /* server side: where it was accepted, NULL after unbind */
    px_list layer_link;       /* client: the layer's shareable links; server: srv->links */
    px_ctimer idle;           /* nobody on it: linger (client) or wait for a HELLO (server) */
    char *uri;                /* shareable: what it was dialled with (the sharing key) */
} px_nexus;

/* ---- connections ------------------------------------------------------- */

enum conn_state {
    CS_CONNECTING = 1, /* transport connecting (client) */
    CS_HANDSHAKE,      /* HELLO sent (client) or awaited/decided (server) */
    CS_ESTABLISHED,
    CS_CLOSING,  /* local close: draining our work before FIN */
    CS_FIN_SENT, /* waiting for FIN_ACK */
    CS_PEER_FIN, /* the peer sent FIN: draining before FIN_ACK */
    CS_DEAD,     /* transport gone; teardown deferred */
};

/* Handles the application holds carry a magic: a call on one already torn
 * down is told -PX_ECLOSED (debug builds keep the memory, poisoned). */
#define PX_CONN_MAGIC 0x636f6e6eu /* "conn" */
#define PX_SESS_MAGIC 0x73657373u /* "sess" */
#define PX_DEAD_MAGIC 0x64656164u /* "dead" */

#define PX_CANCEL_TOMBS 64 /* ids of expired canceled requests remembered per conn */

typedef struct px_conn {
    uint32_t magic;
    struct px_session *session;
    px_ctx *ctx;
    px_list session_link;
    px_list layer_link; /* the context's list of every connection (stats.c) */
    int client;
    int state;

    px_ctx_tp *ctp;
    px_tp_conn *tp; /* the link's transport while on it; NULL once off it */
    char uri[PX_URI_MAX];
    /* The link it travels on, and its channel there (PX_CHAN_UNBOUND: a
     * server connection before its first frame). tp_held counts its
     * frames the transport holds (accepted, not yet done): it may leave
     * a link others still use only when none are. */
    px_nexus *nx;
    px_list nexus_link;
    uint32_t channel;
    uint32_t tp_held;
    int leaving;                /* ending on a shared link, waiting for tp_held to reach 0 */
    int leave_reason;           /* ... with this reason */
    int peer_reset;             /* the peer said RESET: it needs none from us */
    int reset_state;            /* our RESET on a shared link: 0 none, 1 refused (retried on room),
                                   2 handed to the transport */
    unsigned visit;             /* the last fan-out walk of its link that reached it */
    px_tp_fifo link_unfinished; /* its frames a dead link gave back */
    px_deferred join_d;         /* client: joined a link already connected */

    /* Requests and receipt-wanting one-way messages awaiting an answer are
     * found from the wire id = gen << 32 | slot; slots[] has queue_depth
     * entries and slot_free is a stack of the unused ones. */
    px_task **slots;
    uint32_t *slot_free;
    uint32_t n_slots, n_free;
    uint32_t tx_in_transport; /* tx frames the transport holds: capped at queue_depth */
    uint32_t rx_requests;     /* delivered requests not yet fully answered */
    px_list pending;          /* application px_msg waiting (msg_priv.link), FIFO */
    uint64_t pending_bytes;
    px_list awaiting;      /* tx tasks awaiting a response or receipt, in send order */
    px_list held;          /* rx tasks the application holds */
    px_list resp_held;     /* tx tasks of responses the application holds */
    uint32_t requests_out; /* tx requests whose slot is taken (incl. canceled) */
    uint32_t n_canceled;   /* ... of which given up, awaiting the peer's answer */
    uint64_t *tombs;       /* ids of canceled requests whose slot expired, a ring */
    uint32_t tomb_next;
    uint32_t peer_depth; /* requests the peer accepts in flight */
    uint64_t peer_max_msg;
    uint32_t peer_max_hdr, peer_max_iov;
    uint32_t peer_keepalive_ms; /* the peer's interval, PX_KEEPALIVE_OFF, or 0: not known */
    int peer_known;             /* the peer's limits are known (handshake done) */
    uint64_t next_sn;
    unsigned limit_warned; /* a refused send was logged (once per conn) */

    px_list cancels; /* given-up application messages awaiting their error */
    px_deferred cancel_d;
    px_ctimer req_timer;   /* the earliest request deadline */
    uint64_t req_deadline; /* what req_timer is armed for (0: not armed) */

    struct px_server *server; /* server side, until the HELLO names a session */
    /* Server side: the portal server this connection joined its session
     * through (same context as the connection; its session lives on
     * another), NULL otherwise or once that server is gone; in its
     * portal_conns list by portal_link. */
    struct px_server *portal;
    px_list portal_link;
    int via_portal;      /* server side: joined through a portal (counts for it, not its session's
                            server) */
    int queued;          /* client: waits for the session's handshake before dialling */
    int ctx_ref;         /* holds a reference on ctx: not the session's own context */
    px_msg *delivering;  /* the rx message inside on_msg right now */
    px_task *assigning;  /* rx task between RX_ASSIGN and its FRAME */
    int graceful;        /* ends as CLOSED rather than DISCONNECTED */
    int connect_failed;  /* the transport refused to start connecting */
    int abort_queued;    /* px_conn_disconnect() waits for the loop */
    int close_requested; /* px_conn_close() before establishment */
    int announced;       /* CONN_ESTABLISHED was delivered */
    int hello_seen;
    int ack_then_close; /* server: reject/redirect answer in flight */
    px_deferred announce_d;
    int close_reason;
    px_deferred teardown_d;
    px_deferred drain_d;
    px_ctimer deadline; /* the handshake's, then the graceful close's */

    /* Frames on their way out (session/nexus.c): those the transport
     * refused, in order, until its room upcall; those it copied at once,
     * completed from the loop. */
    px_tp_fifo blocked, sent;
    px_deferred sent_d;

    px_tp_send hs_send; /* the HELLO / HELLO_ACK frame in flight */
    uint8_t hs_buf[PX_HS_BUF];
    px_iov hs_iov;
    px_tp_send ctl_send[4]; /* FIN, FIN_ACK, KEEPALIVE, RESET */
    int ctl_busy[4];

    /* Liveness (and housekeeping: canceled slots expire on its ticks). */
    px_ctimer tick;
    uint32_t tick_ms;
    uint32_t ticks;
    uint64_t tx_frames, tx_seen; /* frames sent, and as of the last tick */
    uint64_t rx_events, rx_seen; /* upcalls and bytes received, as of the last tick */
    double heard_at;             /* loop time we last heard the peer */

    /* Received data held in plexus buffers (max_rx_held_bytes). */
    uint64_t rx_held;
    int rx_paused;

    px_conn_stats stats;
} px_conn;

/* ---- sessions and servers ---------------------------------------------- */

enum sess_state { SS_NEW = 1, SS_DECIDING, SS_ESTABLISHED, SS_REJECTED, SS_CLOSING };

/* A session may span contexts: a client's connections made with
 * px_connect(s, other_ctx), a server's joined through portals. Each
 * connection is still driven by its own context's thread only; what they
 * share of the session (the fields marked [lock]) is guarded by `lock`, a
 * recursive mutex because plexus may call back into the application while
 * holding it (and the application back into plexus). Work one context's
 * thread needs done on another's connections is posted to that context
 * (session.c: session_kick), and each post holds the session alive. */
typedef struct px_session {
    uint32_t magic;
    px_ctx *ctx; /* its own context: decisions, px_session_close, teardown run there */
    const px_session_ops *ops;
    void *user;
    int client;
    int state;
    uint64_t token;
    pthread_mutex_t lock;
    px_list conns;    /* [lock] px_conn.session_link */
    unsigned n_conns; /* [lock] */
    /* Client: the connection doing the session's handshake while none has
     * completed it; the others wait (px_conn.queued). [lock] */
    struct px_conn *leader;
    char target[PX_URI_MAX]; /* client: where the session was accepted [lock] */
    /* The portals of an accepted session (the server's px_session_accept
     * list; a client spreads its further connections across them). [lock] */
    char **portals;
    unsigned n_portals, next_portal;
    unsigned posts;     /* [lock] kicks posted to other contexts, not yet run */
    int end_op;         /* [lock] 0, or END_CLOSE / END_ABORT: applied to every conn */
    int torn;           /* [lock] the teardown is scheduled: nothing joins any more */
    int ctx_ref;        /* holds a reference on ctx (a server session with portals) */
    px_list portal_reg; /* in the process-wide portal registry (server.c) */
    px_post_node teardown_node;
    struct px_server *server; /* server side: where it was accepted, NULL after unbind */
    px_list server_link;      /* server->sessions, or the layer's orphans after unbind */
    char uri[PX_URI_MAX];
    uint8_t *priv_data;
    size_t priv_len;
    /* server side, while deciding: the connection that brought it */
    px_conn *first;
    px_session_ops ops_copy;
    int closing;
    px_deferred teardown_d;
} px_session;

typedef struct px_server {
    px_ctx *ctx;
    px_session_ops ops;
    void *user;
    px_ctx_tp *ctp;
    px_tp_listener *listener;
    char uri[PX_URI_MAX];
    px_list sessions;
    px_list unattached;   /* connections before their HELLO (px_conn.session_link) */
    px_list portal_conns; /* connections that joined a session of another server here */
    px_list links;        /* its links that are open (px_nexus.layer_link) */
    uint64_t links_opened;
    unsigned n_sessions;
    px_conn_stats closed; /* the counters of its connections already freed */
    uint64_t conns_opened, conns_closed;
} px_server;

/* ---- across files ------------------------------------------------------ */

struct px_hello;

/* stats.c: a connection joins its context's counters when made and
 * leaves its counters behind (its context's, its server's) when freed. */
void stats_conn_made(px_conn *c);
void stats_conn_unmade(px_conn *c); /* never used: as if never made */
void stats_conn_freed(px_conn *c);

/* conn.c */
int conn_create(px_session *s, px_ctx *ctx, int client, px_conn **out);
void conn_free_unused(px_conn *c);
void conn_start_connect(px_conn *c, const char *uri);
/* A client connection waiting for its session's handshake (another
 * connection's) before it dials; the handshake deadline runs already. */
void conn_wait_session(px_conn *c, const char *uri);
void conn_accepted(px_conn *c);
void conn_established(px_conn *c, uint32_t peer_depth, uint64_t peer_max_msg, uint32_t peer_max_hdr,
                      uint32_t peer_max_iov, uint32_t peer_keepalive_ms);
int conn_check_out(px_conn *c, const px_msg *m, uint64_t *data_len);
void conn_pump(px_conn *c);
void conn_tx_done(px_conn *c, px_task *t, int status);
void conn_check_drained(px_conn *c);
void conn_on_fin(px_conn *c);
void conn_closed(px_conn *c);
void conn_die(px_conn *c, int reason);
void conn_send_ctl(px_conn *c, int type);
int conn_send_hs(px_conn *c, int type, size_t len);
void conn_send_id_frame(px_conn *c, int type, uint64_t id);
void conn_complete_error(px_conn *c, px_msg *m, int reason);
void conn_complete_delivered(px_conn *c, px_msg *m);
void conn_slot_release(px_conn *c, px_task *t);
px_task *conn_slot_find(px_conn *c, uint64_t id);
int conn_tomb_take(px_conn *c, uint64_t id);
int conn_handle_check(const px_conn *c);
/* Who a connection is, for the log: its URI, and a server's peer. */
#define PX_CONN_DESCR (2 * PX_URI_MAX + 64)
void conn_describe(const px_conn *c, char *buf, size_t len);

/* msg.c */
void conn_init_cancels(px_conn *c);
void conn_flush_cancels(px_conn *c);
void conn_give_up(px_conn *c, px_msg *m, int reason);
void conn_expire_canceled(px_conn *c);
void conn_arm_deadline(px_conn *c, uint64_t deadline_ns);

/* A control frame's send cookie: its connection, tagged (a task's is the
 * task, untagged). Set by whoever fills the send. */
#define PX_CONN_COOKIE_TAG 1u
static inline void *conn_ctl_cookie(px_conn *c)
{
    return (void *)((uintptr_t)c | PX_CONN_COOKIE_TAG);
}

/* nexus.c: the transport's owner for a connection */
#define PX_CHAN_UNBOUND UINT32_MAX
/* The most connections one link carries: a client opens another link past
 * it; a server drops the HELLO of a peer that opens more channels (its
 * handshake then times out on its side). */
#define PX_LINK_MAX_CONNS 1024u
/* A client connection's link to c->uri: one of the context's shared links
 * when sharing is on and one carries no connection of c's session, else
 * a new one (connect). 0, or the transport's error. */
int nexus_connect(px_conn *c, const char *uri, const px_uri *u);
/* A server's accepted link with its first connection c. 0 or error. */
int nexus_accept(struct px_server *srv, px_tp_conn *tp, px_conn *c);
/* c leaves its link (it is ending): the link closes when c was its last
 * user (or lingers, after a graceful close), and what the transport gave
 * back of c's frames goes into *unfinished. Returns 0; 1 when c must wait
 * for the transport to finish frames of its first (c->leaving is set and
 * conn_die runs again when they are done). */
int nexus_leave(px_conn *c, px_tp_fifo *unfinished);
/* End the link and every connection on it (as if the transport died). */
void nexus_abort(px_nexus *nx, int reason);
/* A connection asks for reads on its link to stop (1) or go on (0). */
void nexus_pause(px_conn *c, int paused);
/* Its server is unbound: the link takes no new connections. */
void nexus_server_gone(px_nexus *nx);
/* Close the links of a list (px_nexus.layer_link) that nobody is on. */
void nexus_close_unused(px_list *links);
void conn_init_sends(px_conn *c);
/* Every frame this connection sends goes through here (the keepalive
 * counts them; refused ones wait in order). 0 or the transport's error. */
int conn_tp_send(px_conn *c, px_tp_send *s);
/* Complete what a closed transport gave back, and what we held. */
void conn_finish_sends(px_conn *c, px_tp_fifo *unfinished);

/* rx.c */
void conn_rx_frame(px_conn *c, px_tp_rx *rx);
int rx_assign(px_conn *c, px_tp_rx *rx);
void rx_fail_held(px_conn *c, int reason);
void rx_free_held(px_conn *c);
void rx_abandon_assign(px_conn *c, int reason);
void rx_release(px_conn *c, px_task *t);
int rx_respond_error(px_conn *c, px_task *t, int reason);
void rx_response_sent(px_conn *c, px_task *t, int status);
void rx_orphan_responses(px_conn *c);
void tx_task_finish(px_ctx *ctx, px_task *t);

/* session.c */
px_session *session_new(px_ctx *ctx, const px_session_ops *ops, void *user, int client);
void session_event(px_session *s, px_event_type type, px_conn *c, int reason, const void *data,
                   size_t len);
void session_conn_connected(px_conn *c);
void session_conn_gone(px_session *s, px_conn *c);
void session_on_hello(px_conn *c, const void *body, size_t len);
void session_on_hello_ack(px_conn *c, const void *body, size_t len);
void session_hs_sent(px_conn *c, int status);
int session_accept_conn(px_session *s, px_conn *c);
int session_handle_check(const px_session *s);
enum { END_CLOSE = 1, END_ABORT = 2 };
/* End every connection of the session (close or abort), those on other
 * contexts from their own threads. The session's own thread. */
void session_end_all(px_session *s, int op);
/* A client connection ended (its transport is gone). */
void session_conn_died(px_conn *c);
/* Have `ctx`'s thread look at the session's connections there (start the
 * queued, apply end_op). Caller holds s->lock. */
void session_kick(px_session *s, px_ctx *ctx);

/* server.c */
void server_offer(struct px_server *srv, px_conn *c, const struct px_hello *h);
void server_join(struct px_server *srv, px_conn *c, uint64_t token);
void server_session_gone(struct px_server *srv, px_session *s);
/* A server connection for one of srv's links (before its HELLO), and its
 * start once it is on the link. */
px_conn *server_conn_new(struct px_server *srv);
void server_conn_start(struct px_server *srv, px_conn *c);
/* The process-wide registry of sessions accepted with portals, which a
 * server of this process on any context may take connections for. */
void portal_register(px_session *s);
void portal_unregister(px_session *s);

/* layer.c: the per-context state of the session layer */
/* Server sessions whose server was unbound: px_ctx_destroy ends them. */
void layer_adopt_orphan(px_ctx *ctx, px_session *s);
/* Free a connection's or session's memory, or, in debug builds, keep it
 * poisoned so a stale handle is recognised (PX_DEAD_MAGIC). */
void layer_retire(px_ctx *ctx, void *obj, uint32_t *magic, size_t size);

static inline void conn_notify_msg(px_conn *c, px_msg *m, int more)
{
    px_session *s = c->session;
    if (s->ops->on_msg)
        s->ops->on_msg(c, m, more, s->user);
}

#endif
