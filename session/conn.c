/* A connection: the send path, completions, graceful close and death.
 *
 * A send goes straight to the transport when the connection is established
 * and has room (a free request slot, fewer than queue_depth frames in the
 * transport, the peer's depth respected); otherwise it waits in `pending`,
 * up to max_queued_bytes, after which it is refused with -PX_EAGAIN.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/opts.h"
#include "plexus/error.h"
#include "session/handshake.h"
#include "session/internal.h"
#include "session/task.h"

#define CLOSE_TIMEOUT_S 10.0

/* ---- completions to the application ------------------------------------ */

static void msg_idle(px_msg *m)
{
    msg_priv *mp = msg_priv_of(m);
    mp->state = MS_IDLE;
    mp->conn = NULL;
    mp->task = NULL;
}

void conn_complete_error(px_conn *c, px_msg *m, int reason)
{
    msg_idle(m);
    px_session *s = c->session;
    if (s->ops->on_msg_error)
        s->ops->on_msg_error(c, m, reason, s->user);
}

static void complete_sent(px_conn *c, px_msg *m)
{
    msg_idle(m);
    px_session *s = c->session;
    if (s->ops->on_msg_send_complete)
        s->ops->on_msg_send_complete(c, m, s->user);
}

void conn_complete_delivered(px_conn *c, px_msg *m)
{
    msg_idle(m);
    px_session *s = c->session;
    if (s->ops->on_msg_delivered)
        s->ops->on_msg_delivered(c, m, s->user);
}

/* ---- request slots ------------------------------------------------------ */

static void slot_take(px_conn *c, px_task *t)
{
    uint32_t slot = c->slot_free[--c->n_free];
    c->slots[slot] = t;
    t->send.hdr.id = (uint64_t)t->gen << 32 | slot;
}

void conn_slot_release(px_conn *c, px_task *t)
{
    uint32_t slot = (uint32_t)t->send.hdr.id;
    c->slots[slot] = NULL;
    c->slot_free[c->n_free++] = slot;
}

px_task *conn_slot_find(px_conn *c, uint64_t id)
{
    uint32_t slot = (uint32_t)id;
    if (slot >= c->n_slots)
        return NULL;
    px_task *t = c->slots[slot];
    return t && t->gen == (uint32_t)(id >> 32) ? t : NULL;
}

/* ---- creation ------------------------------------------------------------ */

static void on_close_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    px_conn *c = w->data;
    PX_LOGW("graceful close timed out; disconnecting");
    conn_die(c, -PX_ETIMEDOUT);
}

static void teardown_fn(px_deferred *d);
static void drain_fn(px_deferred *d);

/* Liveness, every keepalive interval: a link that sent nothing since the
 * last tick sends a KEEPALIVE, so the peer always hears something; a link
 * that heard nothing for PX_KEEPALIVE_MISSES ticks has a dead or hung peer
 * (a stopped process, a cable pulled without a reset) and is ended. */
static void on_keepalive(struct ev_loop *loop, ev_timer *w, int revents)
{
    px_conn *c = w->data;
    if (c->rx_frames != c->rx_seen) {
        c->rx_seen = c->rx_frames;
        c->quiet_ticks = 0;
    } else if (++c->quiet_ticks >= PX_KEEPALIVE_MISSES) {
        PX_LOGW("%s: nothing heard from the peer for %u keepalive intervals; disconnecting",
                c->uri[0] ? c->uri : "connection", c->quiet_ticks);
        conn_die(c, -PX_ETIMEDOUT);
        return;
    }
    if (c->tx_frames == c->tx_seen && c->tp && c->state != CS_CONNECTING)
        conn_send_ctl(c, PX_FT_KEEPALIVE);
    c->tx_seen = c->tx_frames;
}

static void keepalive_start(px_conn *c)
{
    uint32_t ms = c->ctx->opts.keepalive_ms;
    if (ms == PX_KEEPALIVE_OFF)
        return;
    ev_timer_init(&c->keepalive, on_keepalive, ms / 1000.0, ms / 1000.0);
    c->keepalive.data = c;
    ev_timer_start(c->ctx->loop, &c->keepalive);
}

static void announce(px_conn *c)
{
    if (c->announced || c->state == CS_DEAD)
        return;
    c->announced = 1;
    session_event(c->session, PX_EV_CONN_ESTABLISHED, c, 0, NULL, 0);
}

static void announce_fn(px_deferred *d)
{
    announce(PX_CONTAINER_OF(d, px_conn, announce_d));
}

/* The handshake succeeded: the peer's limits are known and messages flow.
 * The client learns it from a transport upcall and is told at once; the
 * server decides inside on_new_session, so its event waits for the loop. */
void conn_established(px_conn *c, uint32_t peer_depth, uint64_t peer_max_msg, uint32_t peer_max_hdr,
                      uint32_t peer_max_iov)
{
    c->peer_depth = peer_depth;
    c->peer_max_msg = peer_max_msg;
    c->peer_max_hdr = peer_max_hdr;
    c->peer_max_iov = peer_max_iov;
    c->state = CS_ESTABLISHED;
    if (c->client)
        announce(c);
    else
        px_ctx_defer(c->ctx, &c->announce_d);
    if (c->state == CS_ESTABLISHED)
        conn_pump(c);
}

void conn_free_unused(px_conn *c)
{
    free(c->slots);
    free(c->slot_free);
    free(c);
}

int conn_create(px_session *s, px_ctx *ctx, int client, px_conn **out)
{
    px_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return -PX_ENOMEM;
    c->n_slots = ctx->opts.queue_depth;
    c->slots = calloc(c->n_slots, sizeof(*c->slots));
    c->slot_free = malloc(c->n_slots * sizeof(*c->slot_free));
    if (!c->slots || !c->slot_free) {
        free(c->slots);
        free(c->slot_free);
        free(c);
        return -PX_ENOMEM;
    }
    for (uint32_t i = 0; i < c->n_slots; i++)
        c->slot_free[i] = c->n_slots - 1 - i;
    c->n_free = c->n_slots;
    c->session = s;
    c->ctx = ctx;
    c->client = client;
    c->peer_depth = 1;
    px_list_init(&c->session_link);
    px_list_init(&c->pending);
    px_list_init(&c->awaiting);
    px_list_init(&c->held);
    px_deferred_init(&c->teardown_d, teardown_fn);
    px_deferred_init(&c->drain_d, drain_fn);
    px_deferred_init(&c->announce_d, announce_fn);
    conn_init_cancels(c);
    ev_timer_init(&c->close_timer, on_close_timeout, CLOSE_TIMEOUT_S, 0.);
    c->close_timer.data = c;
    ev_timer_init(&c->keepalive, on_keepalive, 0., 0.);
    keepalive_start(c);
    *out = c;
    return 0;
}

void conn_start_connect(px_conn *c, const char *uri)
{
    px_uri u;
    int rc = px_uri_parse(uri, &u);
    if (rc == 0)
        rc = px_ctx_transport(c->ctx, u.scheme, &c->ctp);
    if (rc == 0) {
        px_observer obs = {nexus_notify, c};
        px_tp_conn *tp = NULL;
        rc = c->ctp->ops->connect(c->ctp->tp, &u, &obs, &tp);
        if (rc == 0)
            c->tp = tp;
    }
    snprintf(c->uri, sizeof(c->uri), "%s", uri);
    c->state = CS_CONNECTING;
    if (rc < 0) {
        /* Reported like any failed connect (DISCONNECTED with the reason,
         * then TEARDOWN), from the loop, not from inside px_connect(). */
        c->close_reason = rc;
        c->connect_failed = 1;
        px_ctx_defer(c->ctx, &c->teardown_d);
    }
}

/* ---- the send path ------------------------------------------------------- */

static int check_vec(const px_msg_vec *v, uint32_t max_hdr, uint64_t max_msg, uint32_t max_iov,
                     uint64_t *bytes)
{
    if (v->header_len && !v->header)
        return -PX_EINVAL;
    if (v->iov_count && !v->iov)
        return -PX_EINVAL;
    if (v->header_len > max_hdr)
        return -PX_EMSGSIZE;
    if (v->iov_count > max_iov)
        return -PX_ETOOMANY;
    uint64_t total = 0;
    for (uint32_t i = 0; i < v->iov_count; i++) {
        if (v->iov[i].len && !v->iov[i].base)
            return -PX_EINVAL;
        total += v->iov[i].len;
    }
    if (total > max_msg)
        return -PX_EMSGSIZE;
    *bytes = total;
    return 0;
}

/* Validate against our limits and, once known, the peer's. */
int conn_check_out(px_conn *c, const px_msg *m, uint64_t *data_len)
{
    const px_ctx_opts *o = &c->ctx->opts;
    uint32_t max_hdr = o->max_header_size, max_iov = o->max_iov;
    uint64_t max_msg = o->max_msg_size;
    if (c->peer_max_msg) {
        max_hdr = max_hdr < c->peer_max_hdr ? max_hdr : c->peer_max_hdr;
        max_msg = max_msg < c->peer_max_msg ? max_msg : c->peer_max_msg;
    }
    return check_vec(&m->out, max_hdr, max_msg, max_iov, data_len);
}

static int send_state_error(const px_conn *c)
{
    switch (c->state) {
    case CS_CONNECTING:
    case CS_HANDSHAKE:
    case CS_ESTABLISHED:
        return 0;
    case CS_CLOSING:
    case CS_FIN_SENT:
    case CS_PEER_FIN:
        return -PX_ESHUTDOWN;
    default:
        return -PX_ENOTCONN;
    }
}

static int needs_slot(uint32_t type, const px_msg *m)
{
    return type == PX_FT_REQUEST || (m->flags & PX_MSG_RECEIPT);
}

static int has_room(const px_conn *c, uint32_t type, const px_msg *m)
{
    if (c->state != CS_ESTABLISHED && c->state != CS_CLOSING)
        return 0;
    if (c->tx_in_transport >= c->n_slots)
        return 0;
    if (needs_slot(type, m) && c->n_free == 0)
        return 0;
    if (type == PX_FT_REQUEST && c->requests_out >= c->peer_depth)
        return 0;
    return 1;
}

/* Hand a message to the transport. On error nothing of it remains. */
static int launch(px_conn *c, px_msg *m)
{
    msg_priv *mp = msg_priv_of(m);
    px_task *t = task_get(c->ctx);
    if (!t)
        return -PX_ENOMEM;
    uint32_t type = mp->frame_type;
    t->kind = TASK_TX;
    t->conn = c;
    t->msg = m;
    px_frame_hdr *h = &t->send.hdr;
    h->version = PX_WIRE_VERSION;
    h->type = (uint8_t)type;
    h->hdr_len = (uint16_t)m->out.header_len;
    h->data_len = (uint32_t)(mp->bytes - m->out.header_len);
    if (type == PX_FT_ONEWAY && (m->flags & PX_MSG_RECEIPT))
        h->flags = PX_FF_RECEIPT;
    t->send.app_hdr = m->out.header;
    t->send.data = m->out.iov;
    t->send.data_count = m->out.iov_count;
    if (needs_slot(type, m)) {
        slot_take(c, t);
        px_list_push_back(&c->awaiting, &t->link);
        t->state = type == PX_FT_REQUEST ? TS_AWAIT_RESPONSE : TS_AWAIT_RECEIPT;
        if (type == PX_FT_REQUEST) {
            c->requests_out++;
            t->send.reply = m->in.iov;
            t->send.reply_count = m->in.iov_count;
        }
    } else {
        h->id = ++c->next_sn;
        t->state = TS_SENDING;
    }
    m->sn = h->id;
    mp->state = MS_IN_FLIGHT;
    mp->task = t;
    t->in_transport = 1;
    c->tx_in_transport++;
    int rc = conn_tp_send(c, &t->send);
    if (rc < 0) {
        c->tx_in_transport--;
        if (needs_slot(type, m)) {
            px_list_del(&t->link);
            conn_slot_release(c, t);
            if (type == PX_FT_REQUEST)
                c->requests_out--;
        }
        task_put(c->ctx, t);
        return rc;
    }
    if (type == PX_FT_REQUEST)
        c->stats.requests_sent++;
    else
        c->stats.oneway_sent++;
    c->stats.bytes_sent += mp->bytes;
    return 0;
}

/* Move waiting messages to the transport while there is room. */
void conn_pump(px_conn *c)
{
    px_list *n;
    while ((n = px_list_first(&c->pending)) != NULL) {
        px_msg *m = msg_of_link(n);
        msg_priv *mp = msg_priv_of(m);
        if (!has_room(c, mp->frame_type, m))
            break;
        px_list_del(n);
        c->pending_bytes -= mp->bytes;
        uint64_t data_len;
        int rc = conn_check_out(c, m, &data_len); /* the peer's limits are known only now */
        if (rc == 0)
            rc = launch(c, m);
        if (rc < 0)
            conn_complete_error(c, m, rc);
    }
    c->stats.queued_bytes = c->pending_bytes;
}

static int submit(px_conn *c, px_msg *m, uint32_t type)
{
    if (!c || !m)
        return -PX_EINVAL;
    msg_priv *mp = msg_priv_of(m);
    if (mp->state != MS_IDLE)
        return -PX_EBUSY;
    int rc = send_state_error(c);
    if (rc < 0)
        return rc;
    uint64_t data_len;
    rc = conn_check_out(c, m, &data_len);
    if (rc < 0)
        return rc;
    if (type == PX_FT_REQUEST) {
        uint64_t room;
        const px_ctx_opts *o = &c->ctx->opts;
        rc = check_vec(&m->in, UINT32_MAX, UINT64_MAX, o->max_iov, &room);
        if (rc < 0)
            return rc == -PX_EMSGSIZE ? -PX_EINVAL : rc;
    }
    uint64_t bytes = m->out.header_len + data_len;
    int direct = px_list_empty(&c->pending) && has_room(c, type, m);
    if (!direct && c->pending_bytes + bytes > c->ctx->opts.max_queued_bytes) {
        c->stats.eagain++;
        return -PX_EAGAIN; /* the message is left exactly as it was given */
    }
    memset(mp, 0, sizeof(*mp));
    px_list_init(&mp->link);
    mp->conn = c;
    mp->ctx = c->ctx;
    mp->bytes = bytes;
    mp->frame_type = type;
    mp->app_in_iov = m->in.iov;
    mp->app_in_count = m->in.iov_count;
    if (direct) {
        rc = launch(c, m);
        if (rc < 0)
            memset(mp, 0, sizeof(*mp));
        return rc;
    }
    mp->state = MS_PENDING;
    px_list_push_back(&c->pending, &mp->link);
    c->pending_bytes += mp->bytes;
    c->stats.queued_bytes = c->pending_bytes;
    return 0;
}

int px_send_request(px_conn *c, px_msg *req)
{
    return submit(c, req, PX_FT_REQUEST);
}

int px_send_msg(px_conn *c, px_msg *msg)
{
    return submit(c, msg, PX_FT_ONEWAY);
}

/* ---- completions from the transport -------------------------------------- */

void conn_tx_done(px_conn *c, px_task *t, int status)
{
    t->in_transport = 0;
    c->tx_in_transport--;
    switch (t->state) {
    case TS_SENDING: {
        px_msg *m = t->msg;
        task_put(c->ctx, t);
        if (status == 0)
            complete_sent(c, m);
        else
            conn_complete_error(c, m, -PX_EDISCONNECTED);
        break;
    }
    case TS_FREE: /* answered before the transport let go of it */
        task_put(c->ctx, t);
        break;
    default: /* awaiting an answer: death flushes it if status != 0 */
        break;
    }
}

/* ---- graceful close ------------------------------------------------------ */

/* Nothing of ours is outstanding. A canceled request does not count: its
 * answer may never come, and the peer answers it at its own close. */
static int drained(const px_conn *c)
{
    if (!px_list_empty(&c->pending) || c->tx_in_transport != 0)
        return 0;
    for (const px_list *n = c->awaiting.next; n != &c->awaiting; n = n->next)
        if (PX_CONTAINER_OF(n, px_task, link)->state != TS_CANCELED)
            return 0;
    return 1;
}

void conn_check_drained(px_conn *c)
{
    if (c->state == CS_CLOSING && drained(c)) {
        rx_fail_held(c, -PX_ESHUTDOWN);
        c->state = CS_FIN_SENT;
        conn_send_ctl(c, PX_FT_FIN);
    } else if (c->state == CS_PEER_FIN && drained(c) && !c->ctl_busy[1]) {
        rx_fail_held(c, -PX_ESHUTDOWN);
        conn_send_ctl(c, PX_FT_FIN_ACK);
    }
}

static void drain_fn(px_deferred *d)
{
    conn_check_drained(PX_CONTAINER_OF(d, px_conn, drain_d));
}

static void fail_pending(px_conn *c, int reason)
{
    px_list *n;
    while ((n = px_list_pop_front(&c->pending)) != NULL) {
        px_msg *m = msg_of_link(n);
        c->pending_bytes -= msg_priv_of(m)->bytes;
        conn_complete_error(c, m, reason);
    }
    c->stats.queued_bytes = 0;
}

void conn_on_fin(px_conn *c)
{
    if (c->state == CS_FIN_SENT) { /* both closed at once */
        conn_send_ctl(c, PX_FT_FIN_ACK);
        return;
    }
    c->state = CS_PEER_FIN;
    ev_timer_start(c->ctx->loop, &c->close_timer);
    fail_pending(c, -PX_ESHUTDOWN);
    conn_check_drained(c);
}

int px_conn_close(px_conn *c)
{
    if (!c)
        return -PX_EINVAL;
    switch (c->state) {
    case CS_ESTABLISHED:
        c->state = CS_CLOSING;
        ev_timer_start(c->ctx->loop, &c->close_timer);
        px_ctx_defer(c->ctx, &c->drain_d);
        return 0;
    case CS_CONNECTING:
    case CS_HANDSHAKE:
        /* Nothing was exchanged yet: end it as a closed connection. */
        c->close_reason = -PX_ESHUTDOWN;
        c->state = CS_CLOSING;
        c->graceful = 1;
        px_ctx_defer(c->ctx, &c->teardown_d);
        return 0;
    default:
        return -PX_EALREADY;
    }
}

int px_conn_disconnect(px_conn *c)
{
    if (!c)
        return -PX_EINVAL;
    if (c->state == CS_DEAD || c->abort_queued)
        return -PX_EALREADY;
    /* Completions must not run inside this call: die from the loop. */
    c->abort_queued = 1;
    px_ctx_defer(c->ctx, &c->teardown_d);
    return 0;
}

/* ---- death and teardown --------------------------------------------------- */

static void fail_awaiting(px_conn *c, int reason)
{
    px_list *n;
    while ((n = px_list_pop_front(&c->awaiting)) != NULL) {
        px_task *t = PX_CONTAINER_OF(n, px_task, link);
        conn_slot_release(c, t);
        px_msg *m = t->msg;
        int state = t->state;
        if (state == TS_AWAIT_RESPONSE || state == TS_CANCELED)
            c->requests_out--;
        tx_task_finish(c->ctx, t); /* with a reply buffer it may have been lent */
        if (state != TS_CANCELED)
            conn_complete_error(c, m, reason);
    }
}

/* The link is gone (or we abort): close the transport, complete every
 * outstanding message with an error, in order, report, and queue the
 * teardown. Safe from inside transport upcalls. */
void conn_die(px_conn *c, int reason)
{
    if (c->state == CS_DEAD)
        return;
    int graceful = c->graceful;
    c->state = CS_DEAD;
    c->close_reason = reason;
    ev_timer_stop(c->ctx->loop, &c->close_timer);
    ev_timer_stop(c->ctx->loop, &c->keepalive);
    px_ctx_undefer(&c->drain_d);
    if (c->tp) {
        px_tp_conn *tp = c->tp;
        c->tp = NULL;
        tp->ops->close(tp); /* queued sends complete here with an error */
    }
    px_ctx_undefer(&c->announce_d);
    if (!c->session)
        goto queue;
    px_ctx_undefer(&c->cancel_d);
    conn_flush_cancels(c);
    int msg_reason = graceful ? -PX_EFLUSHED : reason ? reason : -PX_EDISCONNECTED;
    if (msg_reason == -PX_ECONNRESET || msg_reason == -PX_EPIPE)
        msg_reason = -PX_EDISCONNECTED;
    rx_abandon_assign(c, msg_reason);
    fail_awaiting(c, msg_reason);
    fail_pending(c, msg_reason);
    rx_fail_held(c, msg_reason);
    if (c->announced || c->client)
        session_event(c->session, graceful ? PX_EV_CONN_CLOSED : PX_EV_CONN_DISCONNECTED, c,
                      graceful ? 0 : reason, NULL, 0);
queue:
    px_ctx_defer(c->ctx, &c->teardown_d);
}

/* Called graceful when the FIN exchange finished. */
void conn_closed(px_conn *c)
{
    c->graceful = 1;
    conn_die(c, 0);
}

static void free_conn(px_conn *c)
{
    rx_free_held(c);
    free(c->slots);
    free(c->slot_free);
    free(c);
}

static void teardown_fn(px_deferred *d)
{
    px_conn *c = PX_CONTAINER_OF(d, px_conn, teardown_d);
    if (c->state != CS_DEAD) {
        /* px_conn_disconnect(), or a close before the handshake ended. */
        conn_die(c, c->graceful || c->connect_failed ? c->close_reason : -PX_EFLUSHED);
        return; /* conn_die queued us again */
    }
    px_session *s = c->session;
    if (s) {
        /* A client learns even of a connection that never came up. */
        if (c->announced || c->client)
            session_event(s, PX_EV_CONN_TEARDOWN, c, c->close_reason, NULL, 0);
    }
    px_list_del(&c->session_link); /* the session's list, or the server's unattached one */
    if (s)
        session_conn_gone(s, c); /* may queue the session's teardown */
    free_conn(c);
}

/* ---- control frames ------------------------------------------------------- */

void conn_send_ctl(px_conn *c, int type)
{
    int i = type == PX_FT_FIN ? 0 : type == PX_FT_FIN_ACK ? 1 : 2;
    if (!c->tp || c->ctl_busy[i])
        return;
    px_tp_send *s = &c->ctl_send[i];
    memset(s, 0, sizeof(*s));
    s->hdr.version = PX_WIRE_VERSION;
    s->hdr.type = (uint8_t)type;
    c->ctl_busy[i] = 1;
    if (conn_tp_send(c, s) < 0) {
        c->ctl_busy[i] = 0;
        conn_die(c, -PX_EDISCONNECTED);
    }
}

int conn_send_hs(px_conn *c, int type, size_t len)
{
    px_tp_send *s = &c->hs_send;
    memset(s, 0, sizeof(*s));
    s->hdr.version = PX_WIRE_VERSION;
    s->hdr.type = (uint8_t)type;
    s->hdr.data_len = (uint32_t)len;
    c->hs_iov.base = c->hs_buf;
    c->hs_iov.len = len;
    s->data = &c->hs_iov;
    s->data_count = 1;
    return conn_tp_send(c, s);
}

/* ---- small accessors ------------------------------------------------------ */

px_session *px_conn_session(const px_conn *c)
{
    return c ? c->session : NULL;
}

px_ctx *px_conn_ctx(const px_conn *c)
{
    return c ? c->ctx : NULL;
}

int px_conn_peer(const px_conn *c, char *buf, size_t len)
{
    if (!c || !buf)
        return -PX_EINVAL;
    if (!c->tp || c->state == CS_CONNECTING)
        return -PX_ENOTCONN;
    return c->tp->ops->peer_uri(c->tp, buf, len);
}

int px_conn_get_stats(const px_conn *c, px_conn_stats *out)
{
    if (!c || !out)
        return -PX_EINVAL;
    *out = c->stats;
    out->in_flight = c->requests_out;
    out->queued = 0;
    for (px_list *n = c->pending.next; n != &c->pending; n = n->next)
        out->queued++;
    out->queued_bytes = c->pending_bytes;
    return 0;
}
