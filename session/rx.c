/* The receive side of a connection: frames from the transport become
 * on_msg deliveries, response matches and receipts.
 *
 * Small messages are delivered in place: msg->in points into the
 * transport's receive buffer, valid during on_msg and until the sends made
 * from inside it have left (the transport keeps it until then). A message
 * the application keeps after on_msg returns is copied out ("detached")
 * into a pool buffer first, so it stays valid until released. Large ones
 * were read straight into their destination (RX_ASSIGN) and never move.
 */
#include <string.h>

#include "core/log.h"
#include "plexus/error.h"
#include "session/internal.h"
#include "session/task.h"

static void protocol_error(px_conn *c, const char *why)
{
    PX_LOGW("protocol error from peer: %s; closing the connection", why);
    if (c->session && c->announced)
        session_event(c->session, PX_EV_CONN_ERROR, c, -PX_EPROTO, NULL, 0);
    conn_die(c, -PX_EPROTO);
}

static px_msg_type msg_type_of(uint8_t ft)
{
    return ft == PX_FT_REQUEST ? PX_MSG_REQUEST : PX_MSG_ONEWAY;
}

/* Copy whatever of `m`'s delivery still points into the transport's
 * buffer into a pool buffer owned by the task. */
static int detach(px_conn *c, px_task *t, px_msg *m)
{
    size_t hdr = t->inplace_hdr ? m->in.header_len : 0;
    size_t data = t->inplace_data ? m->in.data_len : 0;
    if (hdr + data == 0)
        return 0;
    px_buf *b = px_buf_get(&c->ctx->bufs, hdr + data);
    if (!b)
        return -PX_ENOMEM;
    if (hdr) {
        memcpy(b->data, m->in.header, hdr);
        m->in.header = b->data;
    }
    if (data) {
        memcpy(b->data + hdr, m->in_iov[0].base, data);
        m->in_iov[0].base = b->data + hdr;
    }
    if (t->buf) /* a direct buffer already holds the data: keep both */
        b->next = t->buf;
    t->buf = b;
    t->inplace_hdr = t->inplace_data = 0;
    c->stats.rx_detached++;
    return 0;
}

static void put_bufs(px_conn *c, px_task *t)
{
    while (t->buf) {
        px_buf *next = t->buf->next;
        px_buf_put(&c->ctx->bufs, t->buf);
        t->buf = next;
    }
}

void rx_release(px_conn *c, px_task *t)
{
    px_list_del(&t->link);
    put_bufs(c, t);
    task_put(c->ctx, t);
}

/* A new rx task set up as the delivery of frame `h`. */
static px_task *rx_task_new(px_conn *c, const px_frame_hdr *h, const void *app_hdr)
{
    px_task *t = task_get(c->ctx);
    if (!t)
        return NULL;
    t->kind = TASK_RX;
    t->conn = c;
    t->state = TS_DELIVERED;
    px_msg *m = &t->rx_msg;
    memset(m, 0, sizeof(*m));
    t->msg = m;
    m->type = msg_type_of(h->type);
    m->sn = h->id;
    m->flags = (h->flags & PX_FF_RECEIPT) ? PX_MSG_RECEIPT : 0;
    m->in.header = (void *)app_hdr;
    m->in.header_len = h->hdr_len;
    m->in.data_len = h->data_len;
    t->inplace_hdr = h->hdr_len != 0;
    msg_priv *mp = msg_priv_of(m);
    mp->state = MS_DELIVERED;
    mp->conn = c;
    mp->task = t;
    t->peer_id = h->id;
    return t;
}

static void send_receipt(px_conn *c, uint64_t id)
{
    px_task *t = task_get(c->ctx);
    if (!t) {
        conn_die(c, -PX_ENOMEM);
        return;
    }
    t->kind = TASK_TX;
    t->conn = c;
    t->state = TS_FREE; /* nothing to wait for but the transport */
    t->send.hdr.version = PX_WIRE_VERSION;
    t->send.hdr.type = PX_FT_RECEIPT;
    t->send.hdr.id = id;
    t->in_transport = 1;
    c->tx_in_transport++;
    if (conn_tp_send(c, &t->send) < 0) {
        c->tx_in_transport--;
        task_put(c->ctx, t);
        conn_die(c, -PX_EDISCONNECTED);
    }
}

/* Answer a delivered request with an error status (no data). */
int rx_respond_error(px_conn *c, px_task *t, int reason)
{
    px_tp_send *s = &t->send;
    memset(&s->hdr, 0, sizeof(s->hdr));
    s->hdr.version = PX_WIRE_VERSION;
    s->hdr.type = PX_FT_RESPONSE;
    s->hdr.id = t->peer_id;
    s->hdr.aux = (uint32_t)-reason;
    s->app_hdr = NULL;
    s->data = NULL;
    s->data_count = 0;
    t->state = TS_RESPONDING;
    t->silent = 1;
    t->in_transport = 1;
    return c->tp ? conn_tp_send(c, s) : -PX_ENOTCONN;
}

static void deliver(px_conn *c, px_tp_rx *rx)
{
    const px_frame_hdr *h = &rx->hdr;
    int request = h->type == PX_FT_REQUEST;
    if (request && c->rx_requests >= 2 * c->ctx->opts.queue_depth) {
        protocol_error(c, "more requests in flight than the depth we granted");
        return;
    }
    px_task *t = rx->owner_cookie;
    if (!t) {
        t = rx_task_new(c, h, rx->app_hdr);
        if (!t) {
            conn_die(c, -PX_ENOMEM);
            return;
        }
        px_msg *m = &t->rx_msg;
        m->in_iov[0].base = (void *)rx->data;
        m->in_iov[0].len = h->data_len;
        m->in.iov = m->in_iov;
        m->in.iov_count = h->data_len ? 1 : 0;
        t->inplace_data = h->data_len != 0;
    } else {
        c->assigning = NULL;
        c->stats.rx_direct++;
        t->rx_msg.in.header = (void *)rx->app_hdr;
    }
    px_msg *m = &t->rx_msg;
    px_list_push_back(&c->held, &t->link);
    if (request) {
        c->rx_requests++;
        c->stats.requests_recv++;
    } else {
        c->stats.oneway_recv++;
    }
    c->stats.bytes_recv += h->hdr_len + (uint64_t)h->data_len;

    if (request && c->state != CS_ESTABLISHED && c->state != CS_PEER_FIN) {
        /* We are closing: the request is answered, never delivered. */
        rx_respond_error(c, t, -PX_ESHUTDOWN);
        return;
    }
    c->delivering = m;
    conn_notify_msg(c, m, (int)rx->more);
    c->delivering = NULL;
    if (c->state == CS_DEAD)
        return; /* died inside the callback: teardown frees the task */

    if (!request && (m->flags & PX_MSG_RECEIPT))
        send_receipt(c, h->id);
    if (t->released && !t->in_transport) {
        rx_release(c, t);
        return;
    }
    /* Kept: an unanswered request or an unreleased message. A request
     * answered inside on_msg keeps its in-place data until its response has
     * left, which the transport guarantees. */
    if (t->state == TS_DELIVERED && !t->released && detach(c, t, m) < 0)
        conn_die(c, -PX_ENOMEM);
}

/* Scatter `len` bytes into the application's reply vector. */
static int scatter(const px_msg_vec *v, const void *src, size_t len)
{
    const uint8_t *p = src;
    for (uint32_t i = 0; i < v->iov_count && len; i++) {
        size_t n = v->iov[i].len < len ? v->iov[i].len : len;
        memcpy(v->iov[i].base, p, n);
        p += n;
        len -= n;
    }
    return len ? -PX_ESHORTBUF : 0;
}

static uint64_t vec_room(const px_msg_vec *v)
{
    uint64_t room = 0;
    for (uint32_t i = 0; i < v->iov_count; i++)
        room += v->iov[i].len;
    return room;
}

/* The reason a responder gave (RESPONSE aux, from the wire): one of our
 * codes, or -PX_EPEER for anything we do not know. Checked before any
 * arithmetic, since the peer chooses the value. */
static int peer_failure(uint32_t aux)
{
    return aux > 0 && aux < 2u * PX_EBASE ? -(int)aux : -PX_EPEER;
}

/* Finish a request whose response arrived: t leaves `awaiting`. */
static px_task *take_answered(px_conn *c, const px_frame_hdr *h, int want_state)
{
    px_task *t = conn_slot_find(c, h->id);
    if (!t || t->kind != TASK_TX ||
        (t->state != want_state && !(want_state == TS_AWAIT_RESPONSE && t->state == TS_CANCELED)))
        return NULL;
    conn_slot_release(c, t);
    px_list_del(&t->link);
    return t;
}

void tx_task_finish(px_ctx *ctx, px_task *t)
{
    while (t->buf) {
        px_buf *next = t->buf->next;
        px_buf_put(&ctx->bufs, t->buf);
        t->buf = next;
    }
    t->state = TS_FREE;
    if (!t->in_transport)
        task_put(ctx, t);
}

static void response(px_conn *c, px_tp_rx *rx)
{
    const px_frame_hdr *h = &rx->hdr;
    px_task *t = take_answered(c, h, TS_AWAIT_RESPONSE);
    if (!t) {
        protocol_error(c, "response to no request of ours");
        return;
    }
    c->requests_out--;
    c->stats.responses_recv++;
    c->stats.bytes_recv += h->hdr_len + (uint64_t)h->data_len;
    px_msg *m = t->msg;
    if (t->state == TS_CANCELED || h->aux || t->short_reply) {
        int reason = t->short_reply ? -PX_ESHORTBUF : peer_failure(h->aux);
        int canceled = t->state == TS_CANCELED;
        tx_task_finish(c->ctx, t);
        if (!canceled)
            conn_complete_error(c, m, reason);
        conn_pump(c);
        conn_check_drained(c);
        return;
    }
    m->type = PX_MSG_RESPONSE;
    m->in.header = (void *)rx->app_hdr;
    m->in.header_len = h->hdr_len;
    m->in.data_len = h->data_len;
    t->inplace_hdr = h->hdr_len != 0;
    if (rx->data && m->in.iov_count) { /* in place, into the application's vector */
        if (scatter(&m->in, rx->data, h->data_len) < 0) {
            tx_task_finish(c->ctx, t);
            conn_complete_error(c, m, -PX_ESHORTBUF);
            conn_pump(c);
            return;
        }
    } else if (rx->data) {
        m->in_iov[0].base = (void *)rx->data;
        m->in_iov[0].len = h->data_len;
        m->in.iov = m->in_iov;
        m->in.iov_count = h->data_len ? 1 : 0;
        t->inplace_data = h->data_len != 0;
    } else {
        c->stats.rx_direct++;
    }
    msg_priv *mp = msg_priv_of(m);
    mp->state = MS_RESPONSE_HELD;
    t->state = TS_DELIVERED;
    conn_notify_msg(c, m, (int)rx->more);
    if (c->state != CS_DEAD && mp->state == MS_RESPONSE_HELD && mp->task == t &&
        detach(c, t, m) < 0)
        conn_die(c, -PX_ENOMEM);
    if (c->state != CS_DEAD) {
        conn_pump(c);
        conn_check_drained(c);
    }
}

static void receipt(px_conn *c, px_tp_rx *rx)
{
    px_task *t = take_answered(c, &rx->hdr, TS_AWAIT_RECEIPT);
    if (!t) {
        protocol_error(c, "receipt for no message of ours");
        return;
    }
    px_msg *m = t->msg;
    tx_task_finish(c->ctx, t);
    conn_complete_delivered(c, m);
    conn_pump(c);
    conn_check_drained(c);
}

static int established_like(const px_conn *c)
{
    return c->state == CS_ESTABLISHED || c->state == CS_CLOSING || c->state == CS_FIN_SENT ||
           c->state == CS_PEER_FIN;
}

void rx_frame(px_conn *c, px_tp_rx *rx)
{
    uint8_t type = rx->hdr.type;
    if (type == PX_FT_KEEPALIVE) /* any state: it only proves the peer lives */
        return;
    if (type == PX_FT_HELLO || type == PX_FT_HELLO_ACK) {
        if (!rx->data && rx->hdr.data_len) {
            protocol_error(c, "handshake too large");
            return;
        }
        if (type == PX_FT_HELLO && !c->client && c->state == CS_HANDSHAKE && !c->hello_seen)
            session_on_hello(c, rx->data, rx->hdr.data_len);
        else if (type == PX_FT_HELLO_ACK && c->client && c->state == CS_HANDSHAKE)
            session_on_hello_ack(c, rx->data, rx->hdr.data_len);
        else
            protocol_error(c, "unexpected handshake frame");
        return;
    }
    if (!established_like(c)) {
        protocol_error(c, "message before the handshake");
        return;
    }
    switch (type) {
    case PX_FT_REQUEST:
    case PX_FT_ONEWAY:
        deliver(c, rx);
        break;
    case PX_FT_RESPONSE:
        response(c, rx);
        break;
    case PX_FT_RECEIPT:
        receipt(c, rx);
        break;
    case PX_FT_FIN:
        if (c->state == CS_PEER_FIN)
            protocol_error(c, "second FIN");
        else
            conn_on_fin(c);
        break;
    case PX_FT_FIN_ACK:
        if (c->state == CS_FIN_SENT)
            conn_closed(c);
        else
            protocol_error(c, "FIN_ACK without FIN");
        break;
    case PX_FT_CANCEL: /* we answer anyway; the requester discards it */
        break;
    default:
        protocol_error(c, "unknown frame type");
    }
}

/* Pick where a large frame's data goes before it is read. */
int rx_assign(px_conn *c, px_tp_rx *rx)
{
    const px_frame_hdr *h = &rx->hdr;
    if (!established_like(c))
        return 1;
    if (h->type == PX_FT_RESPONSE) {
        px_task *t = conn_slot_find(c, h->id);
        if (!t || t->kind != TASK_TX || t->state == TS_AWAIT_RECEIPT)
            return 1; /* rx_frame reports the protocol error */
        px_msg *m = t->state == TS_AWAIT_RESPONSE ? t->msg : NULL; /* NULL: canceled */
        if (m && m->in.iov_count && vec_room(&m->in) >= h->data_len) {
            rx->dst = m->in.iov;
            rx->dst_count = m->in.iov_count;
            return 0;
        }
        /* Plexus memory: none offered, too short (reported as ESHORTBUF when
         * the frame is complete), or a canceled request's discarded reply. */
        px_buf *b = px_buf_get(&c->ctx->bufs, h->data_len);
        if (!b)
            return 1;
        b->next = NULL;
        t->buf = b;
        t->short_reply = m && m->in.iov_count != 0;
        t->rx_iov.base = b->data;
        t->rx_iov.len = h->data_len;
        if (m && !t->short_reply) {
            m->in_iov[0] = t->rx_iov;
            m->in.iov = m->in_iov;
            m->in.iov_count = 1;
        }
        rx->dst = &t->rx_iov;
        rx->dst_count = 1;
        return 0;
    }
    if (h->type != PX_FT_REQUEST && h->type != PX_FT_ONEWAY)
        return 1;
    px_task *t = rx_task_new(c, h, rx->app_hdr);
    if (!t)
        return 1;
    px_msg *m = &t->rx_msg;
    px_session *s = c->session;
    if (s->ops->assign_data_in_buf && s->ops->assign_data_in_buf(c, m, s->user) == 0 &&
        m->in.iov_count && m->in.iov && m->in.iov_count <= c->ctx->opts.max_iov &&
        vec_room(&m->in) >= h->data_len) {
        rx->dst = m->in.iov;
        rx->dst_count = m->in.iov_count;
        t->app_assigned = 1;
    } else {
        /* No buffer from the application, or one too short to trust. */
        px_buf *b = px_buf_get(&c->ctx->bufs, h->data_len);
        if (!b) {
            task_put(c->ctx, t);
            return 1;
        }
        b->next = NULL;
        t->buf = b;
        m->in_iov[0].base = b->data;
        m->in_iov[0].len = h->data_len;
        m->in.iov = m->in_iov;
        m->in.iov_count = 1;
        rx->dst = m->in.iov;
        rx->dst_count = 1;
    }
    rx->owner_cookie = t;
    c->assigning = t;
    return 0;
}

/* The link died while a large message was being read into its
 * destination: free what plexus lent, and tell the application when the
 * memory was its own (assign_data_in_buf), so it can take it back. */
void rx_abandon_assign(px_conn *c, int reason)
{
    px_task *t = c->assigning;
    if (!t)
        return;
    c->assigning = NULL;
    px_session *s = c->session;
    if (t->app_assigned && s->ops->on_msg_error)
        s->ops->on_msg_error(c, &t->rx_msg, reason, s->user);
    put_bufs(c, t);
    task_put(c->ctx, t);
}

/* Answer every delivered request the application still holds with an
 * error, so the peer's requests all complete. */
void rx_fail_held(px_conn *c, int reason)
{
    for (px_list *n = c->held.next; n != &c->held; n = n->next) {
        px_task *t = PX_CONTAINER_OF(n, px_task, link);
        if (t->rx_msg.type != PX_MSG_REQUEST || t->state != TS_DELIVERED || t->released)
            continue;
        t->released = 1;
        t->auto_answered = 1;
        if (c->tp && rx_respond_error(c, t, reason) < 0)
            t->in_transport = 0;
    }
}

void rx_free_held(px_conn *c)
{
    px_list *n;
    while ((n = px_list_first(&c->held)) != NULL) {
        px_task *t = PX_CONTAINER_OF(n, px_task, link);
        rx_release(c, t);
    }
}

/* The transport finished sending a response (or an error answer). */
void rx_response_sent(px_conn *c, px_task *t, int status)
{
    t->in_transport = 0;
    c->rx_requests--;
    px_msg *m = &t->rx_msg;
    int silent = t->silent;
    if (!silent)
        c->stats.responses_sent++;
    if (t->auto_answered) {
        /* The application may still hold it: freed at release or teardown. */
        t->state = TS_DELIVERED;
        return;
    }
    if (silent) {
        rx_release(c, t);
        return;
    }
    /* The callback comes before the task is recycled: m lives inside it. */
    msg_priv_of(m)->state = MS_IDLE;
    px_session *s = c->session;
    if (status == 0) {
        if (s->ops->on_msg_send_complete)
            s->ops->on_msg_send_complete(c, m, s->user);
    } else if (s->ops->on_msg_error) {
        s->ops->on_msg_error(c, m, -PX_EDISCONNECTED, s->user);
    }
    rx_release(c, t);
}
