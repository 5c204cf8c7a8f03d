/* A connection: the send path, completions, liveness, graceful close and
 * death.
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
#include "session/layer.h"
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
        s->ops->on_msg_error(c, m, PX_DIR_OUT, reason, s->user);
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

/* ---- handles and names ---------------------------------------------------- */

int conn_handle_check(const px_conn *c)
{
    if (!c)
        return -PX_EINVAL;
    if (c->magic == PX_DEAD_MAGIC)
        return -PX_ECLOSED;
    return c->magic == PX_CONN_MAGIC ? 0 : -PX_EINVAL;
}

/* "client connection tcp://10.0.0.1:7000" (the URI dialled), or
 * "server tcp://0.0.0.0:7000: connection from tcp://10.0.0.2:41000". */
void conn_describe(const px_conn *c, char *buf, size_t len)
{
    char peer[PX_URI_MAX] = "(unknown peer)";
    if (!c->client && c->tp)
        c->tp->ops->peer_uri(c->tp, peer, sizeof(peer));
    if (c->client)
        snprintf(buf, len, "client connection %s", c->uri);
    else
        snprintf(buf, len, "server %s: connection from %s", c->uri, peer);
}

/* Connection events are worth a line at INFO: who, what, why. */
static void log_event(const px_conn *c, const char *what, int reason)
{
    if (__atomic_load_n(&px_log_level_cur, __ATOMIC_RELAXED) > PX_LOG_INFO)
        return;
    char who[PX_CONN_DESCR];
    conn_describe(c, who, sizeof(who));
    if (reason)
        PX_LOGI("%s: %s: %s (%s)", who, what, px_errname(reason), px_strerror(reason));
    else
        PX_LOGI("%s: %s", who, what);
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

/* A canceled request whose slot expired before the responder answered:
 * its late answer is discarded, not a protocol error. */
static void tomb_add(px_conn *c, uint64_t id)
{
    if (!c->tombs && !(c->tombs = calloc(PX_CANCEL_TOMBS, sizeof(*c->tombs))))
        return; /* a late answer will then end the connection: still bounded */
    c->tombs[c->tomb_next++ % PX_CANCEL_TOMBS] = id;
}

int conn_tomb_take(px_conn *c, uint64_t id)
{
    for (unsigned i = 0; c->tombs && i < PX_CANCEL_TOMBS; i++) {
        if (c->tombs[i] == id) {
            c->tombs[i] = 0; /* wire ids are never 0: gen starts at 1 */
            return 1;
        }
    }
    return 0;
}

/* Give up the slot of a request canceled long ago whose responder never
 * answered: the queue depth it took is free again. */
static void expire_slot(px_conn *c, px_task *t)
{
    px_list_del(&t->link);
    conn_slot_release(c, t);
    tomb_add(c, t->send.hdr.id);
    c->requests_out--;
    c->n_canceled--;
    PX_LOGD("a canceled request's responder never answered: its slot is free again");
    tx_task_finish(c->ctx, t);
}

void conn_expire_canceled(px_conn *c)
{
    px_list *n = c->awaiting.next;
    while (c->n_canceled && n != &c->awaiting) {
        px_task *t = PX_CONTAINER_OF(n, px_task, link);
        n = n->next;
        if (t->state == TS_CANCELED && !t->rx_into_app &&
            c->ticks - t->cancel_tick >= PX_KEEPALIVE_MISSES)
            expire_slot(c, t);
    }
}

/* ---- timers: the handshake/close deadline, the liveness tick --------------- */

static void on_deadline(px_ctimer *t)
{
    px_conn *c = PX_CONTAINER_OF(t, px_conn, deadline);
    char who[PX_CONN_DESCR];
    conn_describe(c, who, sizeof(who));
    if (c->leaving) {
        PX_LOGW("%s: the shared link has held its last frames for %.0f s; ending the link", who,
                CLOSE_TIMEOUT_S);
        nexus_abort(c->nx, -PX_ETIMEDOUT);
        return;
    }
    if (c->state == CS_CONNECTING || c->state == CS_HANDSHAKE)
        PX_LOGW("%s: handshake not complete after handshake_timeout_ms %u; ending it", who,
                c->ctx->opts.handshake_timeout_ms);
    else
        PX_LOGW("%s: graceful close timed out after %.0f s; disconnecting", who, CLOSE_TIMEOUT_S);
    conn_die(c, -PX_ETIMEDOUT);
}

static void deadline_start(px_conn *c, double seconds)
{
    px_ctimer_start(&c->deadline, (uint64_t)(seconds * 1e9), 0);
}

static uint32_t own_keepalive(const px_conn *c)
{
    return c->ctx->opts.keepalive_ms;
}

/* The tick: the shorter of the two sides' keepalive intervals, so each side
 * hears from the other well within its own check (3 of its intervals). With
 * both checks off it still ticks, slowly, to expire canceled slots. */
static uint32_t tick_interval(const px_conn *c)
{
    uint32_t own = own_keepalive(c), peer = c->peer_keepalive_ms;
    uint32_t t = own;
    if (peer && peer != PX_KEEPALIVE_OFF && (t == PX_KEEPALIVE_OFF || peer < t))
        t = peer;
    return t == PX_KEEPALIVE_OFF ? PX_DEF_KEEPALIVE_MS : t;
}

static int someone_checks(const px_conn *c)
{
    return own_keepalive(c) != PX_KEEPALIVE_OFF ||
           (c->peer_keepalive_ms && c->peer_keepalive_ms != PX_KEEPALIVE_OFF);
}

/* Every tick: what arrived since the last one (any byte, any upcall)
 * proves the peer alive; a deliberate pause of our reading does too. */
static void on_tick(px_ctimer *t)
{
    px_conn *c = PX_CONTAINER_OF(t, px_conn, tick);
    double now = ev_now(c->ctx->loop);
    c->ticks++;
    uint64_t rx = c->rx_events + (c->tp ? c->tp->rx_bytes : 0);
    if (rx != c->rx_seen || c->rx_paused || (c->nx && c->nx->paused)) {
        c->rx_seen = rx;
        c->heard_at = now;
    }
    uint32_t own = own_keepalive(c);
    if (own != PX_KEEPALIVE_OFF && now - c->heard_at >= PX_KEEPALIVE_MISSES * (own / 1000.0)) {
        char who[PX_CONN_DESCR];
        conn_describe(c, who, sizeof(who));
        PX_LOGW("%s: nothing heard from the peer for %u keepalive intervals (%u ms); "
                "disconnecting",
                who, PX_KEEPALIVE_MISSES, own);
        conn_die(c, -PX_ETIMEDOUT);
        return;
    }
    if (c->n_canceled) {
        uint32_t before = c->n_canceled;
        conn_expire_canceled(c);
        if (c->n_canceled != before) { /* depth came back: what waits may go */
            conn_pump(c);
            conn_check_drained(c);
            if (c->state == CS_DEAD)
                return;
        }
    }
    if (someone_checks(c) && c->tx_frames == c->tx_seen && c->tp && c->state != CS_CONNECTING)
        conn_send_ctl(c, PX_FT_KEEPALIVE);
    c->tx_seen = c->tx_frames;
}

static void tick_start(px_conn *c)
{
    uint32_t ms = tick_interval(c);
    if (px_ctimer_active(&c->tick) && ms == c->tick_ms)
        return;
    c->tick_ms = ms;
    px_ctimer_start(&c->tick, (uint64_t)ms * 1000000u, (uint64_t)ms * 1000000u);
}

/* ---- creation ------------------------------------------------------------ */

static void teardown_fn(px_deferred *d);
static void drain_fn(px_deferred *d);

static void announce(px_conn *c)
{
    if (c->announced || c->state == CS_DEAD)
        return;
    c->announced = 1;
    log_event(c, "established", 0);
    session_event(c->session, PX_EV_CONN_ESTABLISHED, c, 0, NULL, 0);
}

static void announce_fn(px_deferred *d)
{
    announce(PX_CONTAINER_OF(d, px_conn, announce_d));
}

static void begin_close(px_conn *c)
{
    c->state = CS_CLOSING;
    deadline_start(c, CLOSE_TIMEOUT_S);
    px_ctx_defer(c->ctx, &c->drain_d);
}

/* The handshake succeeded: the peer's limits are known and messages flow.
 * The client learns it from a transport upcall and is told at once; the
 * server decides inside on_new_session, so its event waits for the loop. */
void conn_established(px_conn *c, uint32_t peer_depth, uint64_t peer_max_msg, uint32_t peer_max_hdr,
                      uint32_t peer_max_iov, uint32_t peer_keepalive_ms)
{
    c->peer_depth = peer_depth;
    c->peer_max_msg = peer_max_msg;
    c->peer_max_hdr = peer_max_hdr;
    c->peer_max_iov = peer_max_iov;
    c->peer_keepalive_ms = peer_keepalive_ms;
    c->peer_known = 1;
    c->state = CS_ESTABLISHED;
    px_ctimer_stop(&c->deadline);
    tick_start(c);
    if (c->client)
        announce(c);
    else
        px_ctx_defer(c->ctx, &c->announce_d);
    if (c->state != CS_ESTABLISHED)
        return;
    /* Closed before it came up: what was queued still goes, then it ends. */
    if (c->close_requested)
        begin_close(c);
    conn_pump(c);
}

void conn_free_unused(px_conn *c)
{
    stats_conn_unmade(c);
    px_ctimer_stop(&c->tick);
    px_ctimer_stop(&c->deadline);
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
    c->magic = PX_CONN_MAGIC;
    c->n_free = c->n_slots;
    c->session = s;
    c->ctx = ctx;
    c->client = client;
    c->peer_depth = 1;
    px_list_init(&c->session_link);
    px_list_init(&c->layer_link);
    px_list_init(&c->portal_link);
    px_list_init(&c->pending);
    px_list_init(&c->awaiting);
    px_list_init(&c->held);
    px_list_init(&c->resp_held);
    px_deferred_init(&c->teardown_d, teardown_fn);
    px_deferred_init(&c->drain_d, drain_fn);
    px_deferred_init(&c->announce_d, announce_fn);
    conn_init_cancels(c);
    conn_init_sends(c);
    px_ctimer_init(ctx, &c->deadline, on_deadline);
    px_ctimer_init(ctx, &c->tick, on_tick);
    c->heard_at = ev_now(ctx->loop);
    tick_start(c);
    stats_conn_made(c);
    *out = c;
    return 0;
}

/* Server side: the transport handed us an accepted link. */
void conn_accepted(px_conn *c)
{
    c->state = CS_HANDSHAKE;
    deadline_start(c, c->ctx->opts.handshake_timeout_ms / 1000.0);
}

void conn_wait_session(px_conn *c, const char *uri)
{
    snprintf(c->uri, sizeof(c->uri), "%s", uri);
    c->state = CS_CONNECTING; /* with no transport yet */
    c->heard_at = ev_now(c->ctx->loop);
    deadline_start(c, c->ctx->opts.handshake_timeout_ms / 1000.0);
}

void conn_start_connect(px_conn *c, const char *uri)
{
    px_uri u;
    int rc = px_uri_parse(uri, &u);
    if (rc == 0)
        rc = nexus_connect(c, uri, &u);
    snprintf(c->uri, sizeof(c->uri), "%s", uri);
    c->state = CS_CONNECTING;
    c->heard_at = ev_now(c->ctx->loop);
    c->rx_seen = c->rx_events;
    deadline_start(c, c->ctx->opts.handshake_timeout_ms / 1000.0);
    if (rc < 0) {
        /* Reported like any failed connect (DISCONNECTED with the reason,
         * then TEARDOWN), from the loop, not from inside px_connect(). */
        c->close_reason = rc;
        c->connect_failed = 1;
        px_ctx_defer(c->ctx, &c->teardown_d);
    }
}

/* ---- the send path ------------------------------------------------------- */

/* Say once per connection which limit a send broke: the error code alone
 * does not tell whose limit or which one. */
static int refuse(px_conn *c, int rc, const char *what, uint64_t value, const char *limit,
                  uint64_t max, int peers)
{
    if (!c->limit_warned) {
        c->limit_warned = 1;
        PX_LOGW("send refused (%s): %s %llu is over %s%s (%llu); further refusals on this "
                "connection are not logged",
                px_errname(rc), what, (unsigned long long)value, peers ? "the peer's " : "", limit,
                (unsigned long long)max);
    }
    return rc;
}

static int check_vec(const px_msg_vec *v, uint64_t *bytes)
{
    if (v->header_len && !v->header)
        return -PX_EINVAL;
    if (v->iov_count && !v->iov)
        return -PX_EINVAL;
    uint64_t total = 0;
    for (uint32_t i = 0; i < v->iov_count; i++) {
        if (v->iov[i].len && !v->iov[i].base)
            return -PX_EINVAL;
        total += v->iov[i].len;
    }
    *bytes = total;
    return 0;
}

/* Validate against our limits and, once known, the peer's (even a limit of
 * 0: a peer that accepts no data gets none). */
int conn_check_out(px_conn *c, const px_msg *m, uint64_t *data_len)
{
    const px_ctx_opts *o = &c->ctx->opts;
    int rc = check_vec(&m->out, data_len);
    if (rc < 0)
        return rc;
    if (m->out.iov_count > o->max_iov)
        return refuse(c, -PX_ETOOMANY, "iovec count", m->out.iov_count, "max_iov", o->max_iov, 0);
    if (m->out.header_len > o->max_header_size)
        return refuse(c, -PX_EMSGSIZE, "header length", m->out.header_len, "max_header_size",
                      o->max_header_size, 0);
    if (*data_len > o->max_msg_size)
        return refuse(c, -PX_EMSGSIZE, "data length", *data_len, "max_msg_size", o->max_msg_size,
                      0);
    if (!c->peer_known)
        return 0;
    if (m->out.header_len > c->peer_max_hdr)
        return refuse(c, -PX_EMSGSIZE, "header length", m->out.header_len, "max_header_size",
                      c->peer_max_hdr, 1);
    if (*data_len > c->peer_max_msg)
        return refuse(c, -PX_EMSGSIZE, "data length", *data_len, "max_msg_size", c->peer_max_msg,
                      1);
    return 0;
}

static int send_state_error(const px_conn *c)
{
    if (c->leaving)
        return -PX_ENOTCONN;
    switch (c->state) {
    case CS_CONNECTING:
    case CS_HANDSHAKE:
        return c->close_requested ? -PX_ESHUTDOWN : 0;
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
    t->send.owner_checked = 1; /* conn_check_out() passed, just before */
    if (needs_slot(type, m)) {
        slot_take(c, t);
        px_list_push_back(&c->awaiting, &t->link);
        t->state = type == PX_FT_REQUEST ? TS_AWAIT_RESPONSE : TS_AWAIT_RECEIPT;
        if (type == PX_FT_REQUEST) {
            c->requests_out++;
            t->send.reply = m->in.iov;
            t->send.reply_count = m->in.iov_count;
            /* A transport that writes the response straight into these
             * buffers (an RDMA WRITE) may do so until the response frame
             * comes: from now on a cancel or timeout waits for it, or for
             * the connection's end, before the buffers are the app's. */
            if (m->in.iov_count && (c->ctp->caps.flags & PX_TP_CAP_REPLY_DIRECT))
                t->rx_into_app = 1;
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
    /* A connection leaving a shared link (c->leaving) sends nothing more:
     * conn_tp_send refuses, and what is launched fails at once. */
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

static uint64_t request_deadline(const px_conn *c, const px_msg *m)
{
    uint32_t ms = m->timeout_ms ? m->timeout_ms : c->ctx->opts.request_timeout_ms;
    return ms ? px_now_ns() + (uint64_t)ms * 1000000u : 0;
}

static int submit(px_conn *c, px_msg *m, uint32_t type)
{
    int rc = conn_handle_check(c);
    if (rc < 0)
        return rc;
    if (!m)
        return -PX_EINVAL;
    msg_priv *mp = msg_priv_of(m);
    if (mp->state != MS_IDLE)
        return -PX_EBUSY;
    rc = send_state_error(c);
    if (rc < 0)
        return rc;
    uint64_t data_len;
    rc = conn_check_out(c, m, &data_len);
    if (rc < 0)
        return rc;
    if (type == PX_FT_REQUEST) {
        uint64_t room;
        rc = check_vec(&m->in, &room);
        if (rc == 0 && m->in.iov_count > c->ctx->opts.max_iov)
            rc = -PX_ETOOMANY;
        if (rc < 0)
            return rc;
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
    if (type == PX_FT_REQUEST)
        mp->deadline_ns = request_deadline(c, m);
    if (direct) {
        rc = launch(c, m);
        if (rc < 0) {
            memset(mp, 0, sizeof(*mp));
            return rc;
        }
    } else {
        mp->state = MS_PENDING;
        px_list_push_back(&c->pending, &mp->link);
        c->pending_bytes += mp->bytes;
        c->stats.queued_bytes = c->pending_bytes;
    }
    if (mp->deadline_ns)
        conn_arm_deadline(c, mp->deadline_ns);
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

/* A frame that is only an id (RECEIPT, CANCEL): it needs a send request of
 * its own for as long as the transport holds it, so it takes a task. */
void conn_send_id_frame(px_conn *c, int type, uint64_t id)
{
    if (!c->tp)
        return;
    px_task *t = task_get(c->ctx);
    if (!t) {
        conn_die(c, -PX_ENOMEM);
        return;
    }
    t->kind = TASK_TX;
    t->conn = c;
    t->state = TS_FREE; /* nothing to wait for but the transport */
    t->send.hdr.version = PX_WIRE_VERSION;
    t->send.hdr.type = (uint8_t)type;
    t->send.hdr.id = id;
    t->in_transport = 1;
    c->tx_in_transport++;
    if (conn_tp_send(c, &t->send) < 0) {
        c->tx_in_transport--;
        task_put(c->ctx, t);
        conn_die(c, -PX_EDISCONNECTED);
    }
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

/* Nothing of ours is outstanding: our sends have left, our requests are
 * answered, and so are the peer's requests we were given (the application
 * answers them within the close timeout, or plexus does then). A canceled
 * request does not count: its answer may never come. */
static int drained(const px_conn *c)
{
    if (!px_list_empty(&c->pending) || c->tx_in_transport != 0 || c->rx_requests != 0)
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
    deadline_start(c, CLOSE_TIMEOUT_S);
    fail_pending(c, -PX_ESHUTDOWN);
    conn_check_drained(c);
}

int px_conn_close(px_conn *c)
{
    int rc = conn_handle_check(c);
    if (rc < 0)
        return rc;
    switch (c->state) {
    case CS_ESTABLISHED:
        begin_close(c);
        return 0;
    case CS_CONNECTING:
    case CS_HANDSHAKE:
        /* Not up yet: it closes once established, after what is queued has
         * gone (or fails with the connection if it never comes up). */
        if (c->close_requested)
            return -PX_EALREADY;
        c->close_requested = 1;
        return 0;
    default:
        return -PX_EALREADY;
    }
}

int px_conn_disconnect(px_conn *c)
{
    int rc = conn_handle_check(c);
    if (rc < 0)
        return rc;
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
        int state = t->state, why = state == TS_CANCELED ? t->reason : reason;
        if (state == TS_AWAIT_RESPONSE || state == TS_CANCELED)
            c->requests_out--;
        if (state == TS_CANCELED)
            c->n_canceled--;
        tx_task_finish(c->ctx, t); /* with a reply buffer it may have been lent */
        if (m)                     /* NULL: canceled, and told so already */
            conn_complete_error(c, m, why);
    }
}

/* The link is gone (or we abort): close the transport, complete every
 * outstanding message with an error, in order, report, and queue the
 * teardown. Safe from inside transport upcalls. */
static void stop_timers(px_conn *c)
{
    px_ctimer_stop(&c->deadline);
    px_ctimer_stop(&c->tick);
    px_ctimer_stop(&c->req_timer);
    px_ctx_undefer(&c->drain_d);
}

void conn_die(px_conn *c, int reason)
{
    if (c->state == CS_DEAD || c->leaving)
        return;
    px_tp_fifo unfinished = {0};
    if (c->nx && nexus_leave(c, &unfinished)) {
        /* Off a link others use, with frames of ours the transport still
         * holds (they point into us): we end once it is done with them,
         * or, if it never is, with the whole link. */
        c->leave_reason = reason;
        stop_timers(c);
        deadline_start(c, CLOSE_TIMEOUT_S);
        return;
    }
    int graceful = c->graceful;
    c->state = CS_DEAD;
    c->close_reason = reason;
    if (c->client)
        session_conn_died(c);
    stop_timers(c);
    conn_finish_sends(c, &unfinished); /* what the link gave back completes now */
    px_ctx_undefer(&c->announce_d);
    if (!c->session) {
        log_event(c, "ended before its handshake", reason);
        goto queue;
    }
    px_ctx_undefer(&c->cancel_d);
    conn_flush_cancels(c);
    int msg_reason = graceful ? -PX_EFLUSHED : reason ? reason : -PX_EDISCONNECTED;
    if (msg_reason == -PX_ECONNRESET || msg_reason == -PX_EPIPE)
        msg_reason = -PX_EDISCONNECTED;
    rx_abandon_assign(c, msg_reason);
    fail_awaiting(c, msg_reason);
    fail_pending(c, msg_reason);
    rx_fail_held(c, msg_reason);
    log_event(c, graceful ? "closed" : "disconnected", graceful ? 0 : reason);
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

/* What a dead connection still holds that its session or server may
 * count or own: settled while the session surely lives. */
static void release_conn(px_conn *c)
{
    stats_conn_freed(c);
    rx_free_held(c);
    rx_orphan_responses(c);
}

static void free_conn(px_conn *c)
{
    free(c->slots);
    free(c->slot_free);
    free(c->tombs);
    if (c->ctx_ref)
        px_ctx_unref(c->ctx);
    layer_retire(c->ctx, c, &c->magic, sizeof(*c));
}

static void teardown_fn(px_deferred *d)
{
    px_conn *c = PX_CONTAINER_OF(d, px_conn, teardown_d);
    if (c->state != CS_DEAD) {
        /* px_conn_disconnect(), or a connect the transport refused. */
        conn_die(c, c->connect_failed ? c->close_reason : -PX_EFLUSHED);
        return; /* conn_die queued us again */
    }
    px_session *s = c->session;
    if (s) {
        /* A client learns even of a connection that never came up. */
        if (c->announced || c->client)
            session_event(s, PX_EV_CONN_TEARDOWN, c, c->close_reason, NULL, 0);
    }
    px_list_del(&c->portal_link); /* its portal server's list, if in one */
    release_conn(c);
    /* Last: once it has left its session, another thread may tear the
     * session down at any moment. */
    if (s)
        session_conn_gone(s, c);
    else
        px_list_del(&c->session_link); /* the server's unattached list */
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
    s->cookie = conn_ctl_cookie(c);
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
    s->cookie = conn_ctl_cookie(c);
    c->hs_iov.base = c->hs_buf;
    c->hs_iov.len = len;
    s->data = &c->hs_iov;
    s->data_count = 1;
    return conn_tp_send(c, s);
}

/* ---- small accessors ------------------------------------------------------ */

px_session *px_conn_session(const px_conn *c)
{
    return conn_handle_check(c) == 0 ? c->session : NULL;
}

px_ctx *px_conn_ctx(const px_conn *c)
{
    return conn_handle_check(c) == 0 ? c->ctx : NULL;
}

int px_conn_peer(const px_conn *c, char *buf, size_t len)
{
    int rc = conn_handle_check(c);
    if (rc < 0)
        return rc;
    if (!buf)
        return -PX_EINVAL;
    if (!c->tp || c->state == CS_CONNECTING)
        return -PX_ENOTCONN;
    return c->tp->ops->peer_uri(c->tp, buf, len);
}

int px_conn_get_stats(const px_conn *c, px_conn_stats *out)
{
    int rc = conn_handle_check(c);
    if (rc < 0)
        return rc;
    if (!out)
        return -PX_EINVAL;
    *out = c->stats;
    out->in_flight = c->requests_out - c->n_canceled; /* canceled ones have completed */
    out->queued = 0;
    for (px_list *n = c->pending.next; n != &c->pending; n = n->next)
        out->queued++;
    out->queued_bytes = c->pending_bytes;
    return 0;
}
