/* The session layer's internals: tasks, connections, sessions, servers.
 *
 * Ownership in one place:
 *   px_server  owned by the application (bind/unbind); owns its listener.
 *   px_session owned by the application on the client side (create/close),
 *              by its server side connections on the server side (freed
 *              after the last one is torn down); owns its connections.
 *   px_conn    owned by its session; owns its transport link, its task
 *              pools and every task in them; freed after
 *              PX_EV_CONN_TEARDOWN has been delivered.
 *   px_task    pool element of a connection: the bookkeeping of one
 *              message in flight (tx) or delivered and held (rx).
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

/* ---- tasks ------------------------------------------------------------- */

enum task_kind { TASK_TX = 1, TASK_RX = 2 };

enum task_state {
    TS_FREE = 0,
    TS_AWAIT_RESPONSE, /* tx request sent (or being sent); msg set */
    TS_CANCELED,       /* tx request canceled: the response is discarded */
    TS_AWAIT_RECEIPT,  /* tx one-way with receipt */
    TS_SENDING,        /* tx one-way without receipt, until send complete */
    TS_DELIVERED,      /* rx: handed to the application, not yet answered/released */
    TS_RESPONDING,     /* rx request: response handed to the transport */
};

typedef struct px_task {
    px_tp_send send; /* send.cookie == this task */
    px_list link;    /* tx: conn->awaiting; rx: conn->held */
    struct px_conn *conn;
    px_msg *msg;   /* tx: the application's message; rx: &rx_msg */
    px_msg rx_msg; /* rx: what the application sees */
    px_buf *buf;   /* rx: copy of detached or directly received data */
    px_iov rx_iov; /* rx: the single data segment plexus points in.iov at */
    uint32_t gen;  /* bumped at each reuse: part of the wire id */
    uint8_t kind;
    uint8_t state;
    uint8_t in_transport;  /* send handed to the transport, completion pending */
    uint8_t released;      /* rx: the application let go (released or responded) */
    uint8_t inplace_hdr;   /* the delivered header still points into the transport */
    uint8_t inplace_data;  /* the delivered data still points into the transport */
    uint8_t silent;        /* rx: answered by plexus with an error; no callback */
    uint8_t auto_answered; /* rx: answered at close while the application holds it */
    uint8_t short_reply;   /* tx: the reply did not fit the application's vector */
    uint8_t app_assigned;  /* rx: data goes to memory from assign_data_in_buf */
    uint64_t peer_id;      /* rx: the peer's id of this message */
} px_task;

/* The library's view of an application px_msg's priv[] area. */
typedef struct msg_priv {
    px_list link;         /* conn->pending while waiting for a task */
    struct px_conn *conn; /* set while the message is the library's */
    px_task *task;        /* tx task once sent; rx task for delivered ones */
    px_ctx *ctx;
    uint64_t bytes; /* header + data, counted against the byte limit */
    uint32_t state; /* MS_* */
    uint32_t frame_type;
    px_iov *app_in_iov;    /* the reply vector the application set, restored */
    uint32_t app_in_count; /* when it releases the response */
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

typedef struct px_conn {
    struct px_session *session;
    px_ctx *ctx;
    px_list session_link;
    int client;
    int state;

    px_ctx_tp *ctp;
    px_tp_conn *tp; /* NULL once closed */
    char uri[PX_URI_MAX];

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
    uint32_t requests_out; /* tx requests not yet answered (incl. canceled) */
    uint32_t peer_depth;   /* requests the peer accepts in flight */
    uint64_t peer_max_msg;
    uint32_t peer_max_hdr, peer_max_iov;
    uint64_t next_sn;

    px_list cancels; /* canceled application messages awaiting their error */
    px_deferred cancel_d;

    struct px_server *server; /* server side, until the HELLO names a session */
    px_msg *delivering;       /* the rx message inside on_msg right now */
    px_task *assigning;       /* rx task between RX_ASSIGN and its FRAME */
    int graceful;             /* ends as CLOSED rather than DISCONNECTED */
    int connect_failed;       /* the transport refused to start connecting */
    int abort_queued;         /* px_conn_disconnect() waits for the loop */
    int announced;            /* CONN_ESTABLISHED was delivered */
    int hello_seen;
    int ack_then_close; /* server: reject/redirect answer in flight */
    px_deferred announce_d;
    int close_reason;
    px_deferred teardown_d;
    px_deferred drain_d;
    ev_timer close_timer;

    px_tp_send hs_send; /* the HELLO / HELLO_ACK / FIN frame in flight */
    uint8_t hs_buf[8192];
    px_iov hs_iov;
    px_tp_send ctl_send[3]; /* FIN, FIN_ACK, KEEPALIVE */
    int ctl_busy[3];

    /* Liveness: frames sent and received so far, and what the keepalive
     * timer saw of them at its last tick. */
    uint64_t tx_frames, rx_frames;
    uint64_t tx_seen, rx_seen;
    unsigned quiet_ticks; /* ticks in a row with nothing received */
    ev_timer keepalive;

    px_conn_stats stats;
} px_conn;

/* ---- sessions and servers ---------------------------------------------- */

enum sess_state { SS_NEW = 1, SS_DECIDING, SS_ESTABLISHED, SS_REJECTED, SS_CLOSING };

typedef struct px_session {
    px_ctx *ctx;
    const px_session_ops *ops;
    void *user;
    int client;
    int state;
    uint64_t token;
    px_list conns; /* px_conn.session_link */
    unsigned n_conns;
    struct px_server *server; /* server side: where it was accepted, NULL after unbind */
    px_list server_link;
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
    px_list unattached; /* connections before their HELLO (px_conn.session_link) */
    unsigned n_sessions;
    uint64_t next_token;
} px_server;

/* ---- across files ------------------------------------------------------ */

struct px_hello;

/* conn.c */
int conn_create(px_session *s, px_ctx *ctx, int client, px_conn **out);
void conn_free_unused(px_conn *c);
void conn_start_connect(px_conn *c, const char *uri);
void conn_established(px_conn *c, uint32_t peer_depth, uint64_t peer_max_msg, uint32_t peer_max_hdr,
                      uint32_t peer_max_iov);
int conn_check_out(px_conn *c, const px_msg *m, uint64_t *data_len);
void conn_pump(px_conn *c);
void conn_tx_done(px_conn *c, px_task *t, int status);
void conn_check_drained(px_conn *c);
void conn_on_fin(px_conn *c);
void conn_closed(px_conn *c);
void conn_die(px_conn *c, int reason);
void conn_send_ctl(px_conn *c, int type);
int conn_send_hs(px_conn *c, int type, size_t len);
void conn_complete_error(px_conn *c, px_msg *m, int reason);
void conn_complete_delivered(px_conn *c, px_msg *m);
void conn_slot_release(px_conn *c, px_task *t);
px_task *conn_slot_find(px_conn *c, uint64_t id);

/* msg.c */
void conn_init_cancels(px_conn *c);
void conn_flush_cancels(px_conn *c);

/* nexus.c: the transport observer of a connection */
int nexus_notify(void *self, int event, void *data);

/* rx.c */
void rx_frame(px_conn *c, px_tp_rx *rx);
int rx_assign(px_conn *c, px_tp_rx *rx);
void rx_fail_held(px_conn *c, int reason);
void rx_free_held(px_conn *c);
void rx_abandon_assign(px_conn *c, int reason);
void rx_release(px_conn *c, px_task *t);
int rx_respond_error(px_conn *c, px_task *t, int reason);
void rx_response_sent(px_conn *c, px_task *t, int status);
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

/* server.c */
void server_offer(struct px_server *srv, px_conn *c, const struct px_hello *h);
void server_join(struct px_server *srv, px_conn *c, uint64_t token);
void server_session_gone(struct px_server *srv, px_session *s);

/* Every frame this connection sends goes through here: the keepalive
 * counts them to know when the link has been quiet. */
static inline int conn_tp_send(px_conn *c, px_tp_send *s)
{
    c->tx_frames++;
    return c->tp->ops->send(c->tp, s);
}

static inline void conn_notify_msg(px_conn *c, px_msg *m, int more)
{
    px_session *s = c->session;
    if (s->ops->on_msg)
        s->ops->on_msg(c, m, more, s->user);
}

#endif
