/* The receive side of a connection: frames from the transport become
 * on_msg deliveries, response matches, receipts and cancels.
 *
 * Small messages are delivered in place: msg->in points into the
 * transport's receive buffer, valid during on_msg and until the sends made
 * from inside it have left (the transport keeps it until then). A message
 * the application keeps after on_msg returns is copied out ("detached")
 * into a pool buffer first, so it stays valid until released. Large ones
 * were read straight into their destination (RX_ASSIGN) and never move.
 *
 * Every pool buffer a connection's received data occupies counts in
 * c->rx_held; past max_rx_held_bytes the transport is told to stop
 * delivering (rx_pause) until the application lets go of half of it.
 */
#include <string.h>

#include "core/log.h"
#include "plexus/error.h"
#include "session/internal.h"
#include "session/layer.h"
#include "session/task.h"

static void protocol_error(px_conn *c, const char *why)
{
    char who[PX_CONN_DESCR];
    conn_describe(c, who, sizeof(who));
    PX_LOGW("%s: protocol error from the peer: %s; closing the connection", who, why);
    if (c->session && c->announced)
        session_event(c->session, PX_EV_CONN_ERROR, c, -PX_EPROTO, NULL, 0);
    conn_die(c, -PX_EPROTO);
}

static px_msg_type msg_type_of(uint8_t ft)
{
    return ft == PX_FT_REQUEST ? PX_MSG_REQUEST : PX_MSG_ONEWAY;
}

/* ---- buffers held for received data ------------------------------------------ */

static void set_paused(px_conn *c, int paused)
{
    if (!c->nx || !c->tp || !c->tp->ops->rx_pause || c->state == CS_DEAD || c->rx_paused == paused)
        return;
    if (paused)
        PX_LOGD("holding %llu bytes of received data (max_rx_held_bytes %llu): pausing reads",
                (unsigned long long)c->rx_held, (unsigned long long)c->ctx->opts.max_rx_held_bytes);
    nexus_pause(c, paused); /* reads stop on the link, for every connection on it */
}

static px_buf *held_get(px_conn *c, size_t len)
{
    px_buf *b = px_buf_get(&c->ctx->bufs, len);
    if (!b)
        return NULL;
    b->next = NULL;
    c->rx_held += b->cap;
    if (!c->rx_paused && c->rx_held >= c->ctx->opts.max_rx_held_bytes)
        set_paused(c, 1);
    return b;
}

/* Return a chain of buffers; c is NULL for a response whose connection is
 * gone (nothing to account for then). */
static void held_put(px_ctx *ctx, px_conn *c, px_buf **chain)
{
    while (*chain) {
        px_buf *next = (*chain)->next;
        if (c)
            c->rx_held -= (*chain)->cap;
        px_buf_put(&ctx->bufs, *chain);
        *chain = next;
    }
    if (c && c->rx_paused && c->rx_held < c->ctx->opts.max_rx_held_bytes / 2)
        set_paused(c, 0);
}

/* Copy whatever of `m`'s delivery still points into the transport's
 * buffer into a pool buffer owned by the task. */
static int detach(px_conn *c, px_task *t, px_msg *m)
{
    size_t hdr = t->inplace_hdr ? m->in.header_len : 0;
    size_t data = t->inplace_data ? m->in.data_len : 0;
    if (hdr + data == 0)
        return 0;
    px_buf *b = held_get(c, hdr + data);
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
    b->next = t->buf; /* a direct buffer may already hold the data: keep both */
    t->buf = b;
    t->inplace_hdr = t->inplace_data = 0;
    c->stats.rx_detached++;
    return 0;
}

void rx_release(px_conn *c, px_task *t)
{
    px_list_del(&t->link);
    held_put(c->ctx, c, &t->buf);
    /* A stale px_msg of this delivery must not pass for a live one. */
    msg_priv_of(&t->rx_msg)->state = MS_IDLE;
    task_put(c->ctx, t);
}

void tx_task_finish(px_ctx *ctx, px_task *t)
{
    held_put(ctx, t->conn, &t->buf);
    t->state = TS_FREE;
    if (!t->in_transport)
        task_put(ctx, t);
}

/* The connection is being freed while the application still holds
 * responses: they keep their buffers until released, unaccounted. */
void rx_orphan_responses(px_conn *c)
{
    px_list *n;
    while ((n = px_list_pop_front(&c->resp_held)) != NULL)
        PX_CONTAINER_OF(n, px_task, link)->conn = NULL;
}

/* ---- requests and one-way messages -------------------------------------------- */

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
    t->msg = m;
    /* Field by field, not a memset of the whole message: the part of priv[]
     * the library does not use need not be cleared for every frame. */
    m->out = (px_msg_vec){0};
    m->in =
        (px_msg_vec){.header = (void *)app_hdr, .header_len = h->hdr_len, .data_len = h->data_len};
    m->flags = (h->flags & PX_FF_RECEIPT) ? PX_MSG_RECEIPT : 0;
    m->type = msg_type_of(h->type);
    m->timeout_ms = 0;
    m->reserved = 0;
    m->sn = h->id;
    m->user_context = NULL;
    m->in_iov[0] = (px_iov){0};
    t->inplace_hdr = h->hdr_len != 0;
    msg_priv *mp = msg_priv_of(m);
    *mp = (msg_priv){0};
    mp->state = MS_DELIVERED;
    mp->conn = c;
    mp->task = t;
    t->peer_id = h->id;
    return t;
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

/* Answer for the application a request it still holds (we close, or the
 * requester canceled): px_send_response() then says `reason`, and the
 * application releases the message when it is done with it. */
static void auto_answer(px_conn *c, px_task *t, int reason)
{
    t->released = 1;
    t->auto_answered = 1;
    t->reason = reason;
    if (c->tp && rx_respond_error(c, t, reason) < 0)
        t->in_transport = 0;
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
        conn_send_id_frame(c, PX_FT_RECEIPT, h->id);
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

/* The requester gave up on request `id`: answer it for the application
 * (which stops working on it) unless it is answered already. */
static void peer_canceled(px_conn *c, uint64_t id)
{
    for (px_list *n = c->held.next; n != &c->held; n = n->next) {
        px_task *t = PX_CONTAINER_OF(n, px_task, link);
        if (t->rx_msg.type != PX_MSG_REQUEST || t->peer_id != id)
            continue;
        if (t->state != TS_DELIVERED || t->released)
            return; /* its answer is on the way */
        auto_answer(c, t, -PX_ECANCELED);
        px_session *s = c->session;
        if (c->state != CS_DEAD && s->ops->on_msg_canceled)
            s->ops->on_msg_canceled(c, &t->rx_msg, s->user);
        return;
    }
    /* Answered and gone already: nothing to do. */
}

/* ---- responses and receipts ----------------------------------------------------- */

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

static void after_answer(px_conn *c)
{
    if (c->state == CS_DEAD)
        return;
    conn_pump(c);
    conn_check_drained(c);
}

static void response(px_conn *c, px_tp_rx *rx)
{
    const px_frame_hdr *h = &rx->hdr;
    px_task *t = take_answered(c, h, TS_AWAIT_RESPONSE);
    if (!t) {
        if (conn_tomb_take(c, h->id))
            return; /* the late answer to a request whose slot had expired */
        protocol_error(c, "response to no request of ours");
        return;
    }
    c->requests_out--;
    c->stats.responses_recv++;
    c->stats.bytes_recv += h->hdr_len + (uint64_t)h->data_len;
    t->rx_into_app = 0;
    px_msg *m = t->msg;
    if (t->state == TS_CANCELED || h->aux || t->short_reply) {
        int canceled = t->state == TS_CANCELED;
        int reason = canceled ? t->reason : t->short_reply ? -PX_ESHORTBUF : peer_failure(h->aux);
        if (canceled)
            c->n_canceled--;
        tx_task_finish(c->ctx, t);
        if (m) /* NULL: canceled and completed already */
            conn_complete_error(c, m, reason);
        after_answer(c);
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
            after_answer(c);
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
    px_list_push_back(&c->resp_held, &t->link);
    conn_notify_msg(c, m, (int)rx->more);
    if (c->state != CS_DEAD && mp->state == MS_RESPONSE_HELD && mp->task == t &&
        detach(c, t, m) < 0)
        conn_die(c, -PX_ENOMEM);
    after_answer(c);
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
    after_answer(c);
}

static int established_like(const px_conn *c)
{
    return c->state == CS_ESTABLISHED || c->state == CS_CLOSING || c->state == CS_FIN_SENT ||
           c->state == CS_PEER_FIN;
}

void conn_rx_frame(px_conn *c, px_tp_rx *rx)
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
    case PX_FT_CANCEL:
        peer_canceled(c, rx->hdr.id);
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
    default:
        protocol_error(c, "unknown frame type");
    }
}

/* ---- where large data lands --------------------------------------------------- */

/* A pool buffer as the single destination segment of `t`'s data. */
static int land_in_pool(px_conn *c, px_task *t, px_tp_rx *rx)
{
    px_buf *b = held_get(c, rx->hdr.data_len);
    if (!b)
        return -1;
    b->next = t->buf;
    t->buf = b;
    t->rx_iov.base = b->data;
    t->rx_iov.len = rx->hdr.data_len;
    t->rx_iov.mr = b->mr; /* registered when it is large: an RDMA READ lands there */
    return 0;
}

static int assign_response(px_conn *c, px_tp_rx *rx)
{
    const px_frame_hdr *h = &rx->hdr;
    px_task *t = conn_slot_find(c, h->id);
    if (!t || t->kind != TASK_TX || t->state == TS_AWAIT_RECEIPT)
        return 1; /* conn_rx_frame sorts it out: a late answer, or a protocol error */
    px_msg *m = t->state == TS_AWAIT_RESPONSE ? t->msg : NULL; /* NULL: canceled */
    if (m && m->in.iov_count && vec_room(&m->in) >= h->data_len) {
        rx->dst = m->in.iov;
        rx->dst_count = m->in.iov_count;
        t->rx_into_app = 1; /* a cancel now waits until it has landed */
        return 0;
    }
    /* Plexus memory: none offered, too short (reported as ESHORTBUF when
     * the frame is complete), or a canceled request's discarded reply. */
    if (land_in_pool(c, t, rx) < 0)
        return 1;
    t->short_reply = m && m->in.iov_count != 0;
    if (m && !t->short_reply) {
        m->in_iov[0] = t->rx_iov;
        m->in.iov = m->in_iov;
        m->in.iov_count = 1;
    }
    rx->dst = &t->rx_iov;
    rx->dst_count = 1;
    return 0;
}

/* The application's vector, checked: it must exist and cover the data.
 * A short one is refused (and said so), never trusted. */
static int app_vector_ok(px_conn *c, const px_msg *m, uint64_t len)
{
    if (!m->in.iov_count || !m->in.iov)
        return 0;
    if (m->in.iov_count > c->ctx->opts.max_iov || vec_room(&m->in) < len) {
        PX_LOGW("assign_data_in_buf gave %u segments of %llu bytes for a %llu-byte message "
                "(max_iov %u): refused, the message goes to a plexus buffer",
                m->in.iov_count, (unsigned long long)vec_room(&m->in), (unsigned long long)len,
                c->ctx->opts.max_iov);
        return 0;
    }
    return 1;
}

/* Pick where a large frame's data goes before it is read. */
int rx_assign(px_conn *c, px_tp_rx *rx)
{
    const px_frame_hdr *h = &rx->hdr;
    if (!established_like(c))
        return 1;
    if (h->type == PX_FT_RESPONSE)
        return assign_response(c, rx);
    if (h->type != PX_FT_REQUEST && h->type != PX_FT_ONEWAY)
        return 1;
    px_task *t = rx_task_new(c, h, rx->app_hdr);
    if (!t)
        return 1;
    px_msg *m = &t->rx_msg;
    px_session *s = c->session;
    if (s->ops->assign_data_in_buf && s->ops->assign_data_in_buf(c, m, s->user) == 0 &&
        app_vector_ok(c, m, h->data_len)) {
        rx->dst = m->in.iov;
        rx->dst_count = m->in.iov_count;
        t->app_assigned = 1;
    } else {
        /* No buffer from the application, or one too short to trust. */
        if (land_in_pool(c, t, rx) < 0) {
            rx_release(c, t);
            return 1;
        }
        m->in_iov[0] = t->rx_iov;
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
        s->ops->on_msg_error(c, &t->rx_msg, PX_DIR_IN, reason, s->user);
    rx_release(c, t);
}

/* Answer every delivered request the application still holds with an
 * error, so the peer's requests all complete. */
void rx_fail_held(px_conn *c, int reason)
{
    for (px_list *n = c->held.next; n != &c->held; n = n->next) {
        px_task *t = PX_CONTAINER_OF(n, px_task, link);
        if (t->rx_msg.type != PX_MSG_REQUEST || t->state != TS_DELIVERED || t->released)
            continue;
        auto_answer(c, t, -PX_ESHUTDOWN);
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
        s->ops->on_msg_error(c, m, PX_DIR_OUT, -PX_EDISCONNECTED, s->user);
    }
    rx_release(c, t);
}
