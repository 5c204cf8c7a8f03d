/* The transport's observer for one connection: every upward event of the
 * link lands here and is routed to the connection's send or receive side.
 * (Sharing one link among the connections of several sessions, by channel
 * id, would fan out from here.) */
#include "plexus/error.h"
#include "session/internal.h"

static void ctl_sent(px_conn *c, int which)
{
    c->ctl_busy[which] = 0;
    /* Our FIN_ACK has left after the peer's FIN: the exchange is over. */
    if (which == 1 && c->state == CS_PEER_FIN)
        conn_closed(c);
}

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

int nexus_notify(void *self, int event, void *data)
{
    px_conn *c = self;
    c->ctx->activity++;
    switch (event) {
    case PX_TP_EV_CONNECTED:
        if (c->state == CS_CONNECTING)
            session_conn_connected(c);
        return 0;
    case PX_TP_EV_RX_ASSIGN:
        c->rx_events++;
        return rx_assign(c, data);
    case PX_TP_EV_FRAME:
        c->rx_events++;
        if (c->state != CS_DEAD)
            rx_frame(c, data);
        return 0;
    case PX_TP_EV_SEND_COMPLETE:
        send_complete(c, data);
        return 0;
    case PX_TP_EV_ERROR:
        if (c->session && c->announced && c->state != CS_DEAD)
            session_event(c->session, PX_EV_CONN_ERROR, c, *(int *)data, NULL, 0);
        return 0;
    case PX_TP_EV_DISCONNECTED:
        conn_die(c, *(int *)data);
        return 0;
    default:
        return 0;
    }
}
