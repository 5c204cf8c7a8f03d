/* The transport's owner for one connection: every upcall of the link lands
 * here (px_tp_upcalls) and is routed to the connection's send or receive
 * side. Every frame leaves through conn_tp_send(), which keeps the one
 * queue of frames the transport refused (-PX_EAGAIN) until its room
 * upcall, and completes frames the transport copied at once (PX_TP_SENT)
 * from the loop. (Sharing one link among the connections of several
 * sessions, by channel id, would fan out from here.) */
#include "plexus/error.h"
#include "session/internal.h"

static void ctl_sent(px_conn *c, int which)
{
    c->ctl_busy[which] = 0;
    /* Our FIN_ACK has left after the peer's FIN: the exchange is over. */
    if (which == 1 && c->state == CS_PEER_FIN)
        conn_closed(c);
}

/* A frame of ours is finished (status 0, or why not): the control frame,
 * handshake or task it belongs to hears of it. */
static void send_complete(px_conn *c, px_tp_send *s)
{
    if (s == &c->hs_send) {
        session_hs_sent(c, s->status);
        return;
    }
    if (s >= &c->ctl_send[0] && s <= &c->ctl_send[2]) {
        ctl_sent(c, (int)(s - c->ctl_send));
        return;
    }
    px_task *t = s->cookie;
    if (t->kind == TASK_TX)
        conn_tx_done(c, t, s->status);
    else
        rx_response_sent(c, t, s->status);
    if (c->state != CS_DEAD) {
        conn_pump(c);
        conn_check_drained(c);
    }
}

/* Frames the transport copied at once complete here, from the loop: never
 * inside the call that sent them. */
static void sent_fn(px_deferred *d)
{
    px_conn *c = PX_CONTAINER_OF(d, px_conn, sent_d);
    px_tp_send *s;
    while ((s = px_tp_fifo_pop(&c->sent)) != NULL) {
        s->status = 0;
        send_complete(c, s);
    }
}

void conn_init_sends(px_conn *c)
{
    px_deferred_init(&c->sent_d, sent_fn);
}

/* Hold a refused frame, in order. What it points into may be bytes the
 * transport lent us in place, which it will reuse: the lending rule says
 * such a frame is copied aside (the chassis's bounce) before it waits. */
static int hold(px_conn *c, px_tp_send *s)
{
    if (!s->tp_bounce && px_tpc_points_into_lent(c->tp, s) && px_tpc_bounce(s) < 0)
        return -PX_ENOMEM;
    px_tp_fifo_push(&c->blocked, s);
    return 0;
}

static int transport_send(px_conn *c, px_tp_send *s)
{
    int rc = c->tp->ops->send(c->tp, s);
    if (rc == PX_TP_SENT) {
        px_tpc_unbounce(s); /* a copy we made while it waited, if any */
        px_tp_fifo_push(&c->sent, s);
        px_ctx_defer(c->ctx, &c->sent_d);
        return 0;
    }
    return rc == PX_TP_QUEUED ? 0 : rc;
}

int conn_tp_send(px_conn *c, px_tp_send *s)
{
    c->tx_frames++;
    if (c->blocked.head) /* behind the frames already waiting */
        return hold(c, s);
    int rc = transport_send(c, s);
    return rc == -PX_EAGAIN ? hold(c, s) : rc;
}

/* The transport has room again: what waits goes, in order, then the
 * messages waiting for room of the session's own. */
static void on_room(void *self)
{
    px_conn *c = self;
    px_tp_send *s;
    /* Off the queue before the transport links it into its own (both use
     * tp_next); back at the front if refused again. */
    while (c->state != CS_DEAD && (s = px_tp_fifo_pop(&c->blocked)) != NULL) {
        int rc = transport_send(c, s);
        if (rc == -PX_EAGAIN) {
            s->tp_next = c->blocked.head;
            c->blocked.head = s;
            if (!c->blocked.tail)
                c->blocked.tail = s;
            return; /* another room upcall follows */
        }
        if (rc < 0) {
            px_tpc_unbounce(s);
            s->status = rc;
            send_complete(c, s);
        }
    }
    if (c->state != CS_DEAD) {
        conn_pump(c);
        conn_check_drained(c);
    }
}

void conn_finish_sends(px_conn *c, px_tp_fifo *unfinished)
{
    sent_fn(&c->sent_d); /* these left */
    px_ctx_undefer(&c->sent_d);
    for (px_tp_send *s = c->blocked.head; s; s = s->tp_next)
        s->status = -PX_ECLOSED; /* held by us: they never left */
    px_tp_fifo_append(unfinished, &c->blocked);
    px_tp_send *s;
    while ((s = px_tp_fifo_pop(unfinished)) != NULL) {
        px_tpc_unbounce(s);
        send_complete(c, s); /* status as the transport said: done, or not */
    }
}

static void on_connected(void *self)
{
    px_conn *c = self;
    c->ctx->activity++;
    if (c->state == CS_CONNECTING)
        session_conn_connected(c);
}

static int on_rx_assign(void *self, px_tp_rx *rx)
{
    px_conn *c = self;
    c->ctx->activity++;
    c->rx_events++;
    return rx_assign(c, rx);
}

static void on_frame(void *self, px_tp_rx *rx)
{
    px_conn *c = self;
    c->ctx->activity++;
    c->rx_events++;
    if (c->state != CS_DEAD)
        conn_rx_frame(c, rx);
}

static void on_send_done(void *self, px_tp_send *s, int status)
{
    px_conn *c = self;
    c->ctx->activity++;
    s->status = status;
    send_complete(c, s);
}

static void on_error(void *self, int reason)
{
    px_conn *c = self;
    if (c->session && c->announced && c->state != CS_DEAD)
        session_event(c->session, PX_EV_CONN_ERROR, c, reason, NULL, 0);
}

static void on_disconnected(void *self, int reason)
{
    conn_die(self, reason);
}

const px_tp_upcalls nexus_upcalls = {
    .connected = on_connected,
    .rx_assign = on_rx_assign,
    .frame = on_frame,
    .send_done = on_send_done,
    .room = on_room,
    .error = on_error,
    .disconnected = on_disconnected,
};
