/* The RDMA verbs transport: rdma://host:port.
 *
 * This file holds the instance (every RDMA device opened with a protection
 * domain, so regions register once per domain; one rdma_cm event channel
 * in the loop), the connection life cycle over rdma_cm (resolve address and
 * route, connect with our setup data in the CM private data, accept,
 * reject, close), and what CM events mean for a conn. The verbs resources
 * and the CQ are in rdma_qp.c, send in rdma_tx.c, receive in rdma_rx.c,
 * memory in rdma_mem.c.
 *
 * Liveness: rdma_cm tells us when the peer disconnects or dies (the kernel
 * sends the disconnect for a killed process); the transport acts on that
 * event itself, since a QP whose peer vanished may stay in RTS for a long
 * time. A peer that hangs while alive is the session layer's keepalive's.
 *
 * Close: a conn whose last SENDs are still on the wire lingers (without an
 * owner, making no upcall) until they complete, the peer disconnects, or
 * two seconds pass, so a graceful close's last frames are not dropped
 * with the QP. A conn with a rendezvous in flight (the device may still
 * read or write the owner's memory) is torn down at once instead: QP to
 * the error state and destroyed before close returns.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transports/rdma/rdma.h"

#define LINGER_US 2000000u

static rdma_tp *TP(px_tp *p)
{
    return (rdma_tp *)(void *)p;
}
static rdma_conn *CONN(px_tp_conn *p)
{
    return (rdma_conn *)(void *)p;
}
static rdma_listener *LST(px_tp_listener *p)
{
    return (rdma_listener *)(void *)p;
}

#define CONTAINER(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

/* ---- setup data ------------------------------------------------------------------- */

static void priv_make(const rdma_conn *c, rdma_priv *p)
{
    *p = (rdma_priv){.magic = htole32(RDMA_PRIV_MAGIC),
                     .version = RDMA_PRIV_VER,
                     .credits = htole32(c->opts.rq),
                     .buf_len = htole32(c->buf_len)};
}

/* The peer's setup data: its window and buffer size. 0 or -PX_EPROTO. */
static int priv_take(rdma_conn *c, const void *data, size_t len)
{
    rdma_priv p;
    if (!data || len < sizeof p) {
        PX_TP_LOG(PX_LOG_WARN,
                  "rdma: the peer sent %zu bytes of setup data, not a plexus "
                  "peer's",
                  len);
        return -PX_EPROTO;
    }
    memcpy(&p, data, sizeof p);
    uint32_t credits = le32toh(p.credits), buf = le32toh(p.buf_len);
    if (le32toh(p.magic) != RDMA_PRIV_MAGIC || p.version != RDMA_PRIV_VER) {
        PX_TP_LOG(PX_LOG_WARN, "rdma: the peer's setup data is not plexus's (version %u)",
                  p.version);
        return p.version != RDMA_PRIV_VER && le32toh(p.magic) == RDMA_PRIV_MAGIC ? -PX_EVERSION
                                                                                 : -PX_EPROTO;
    }
    if (credits < 2 || credits > 65535 || buf < 1024 || buf > (64u << 20)) {
        PX_TP_LOG(PX_LOG_WARN,
                  "rdma: the peer's setup data is out of range (%u credits, "
                  "%u-byte buffers)",
                  credits, buf);
        return -PX_EPROTO;
    }
    c->peer_credits = c->peer_window = credits;
    c->peer_buf = buf;
    return 0;
}

static struct rdma_conn_param conn_param(const rdma_conn *c, rdma_priv *p, uint8_t resp,
                                         uint8_t init)
{
    priv_make(c, p);
    return (struct rdma_conn_param){
        .private_data = p,
        .private_data_len = sizeof *p,
        .responder_resources = resp,
        .initiator_depth = init,
        .retry_count = 7,
        .rnr_retry_count = 7, /* a backstop only: credits keep receivers from running dry */
    };
}

/* ---- connections --------------------------------------------------------------------- */

static void linger_cb(px_tp_watch *w, void *arg);

static rdma_conn *conn_new(rdma_tp *tp, const rdma_opts *opts)
{
    rdma_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    px_tpc_conn_init(&c->base, &tp->base);
    c->tp = tp;
    c->idc = (rdma_idctx){.is_listener = 0, .obj = c};
    c->dev = -1;
    c->opts = *opts;
    px_tp_link_init(&c->lst_wait);
    px_tp_link_init(&c->linger_link);
    const px_tp_host *h = tp->base.host;
    h->ops->timer_init(h, &c->linger_timer, linger_cb, c);
    return c;
}

/* Everything of a conn that is not the chassis's, for conn_free and for
 * the end of lingering. */
static void conn_destroy(rdma_conn *c)
{
    const px_tp_host *h = rdma_host(c);
    rdma_qp_destroy(c);
    if (c->id) {
        rdma_destroy_id(c->id);
        c->id = NULL;
    }
    rdma_qp_free(c);
    h->ops->timer_fini(h, &c->linger_timer);
    if (c->n_eager_tx + c->n_rdv_tx + c->n_eager_rx + c->n_rdv_rx)
        PX_TP_LOG(PX_LOG_INFO,
                  "rdma: conn closed: sent %llu eager, %llu rendezvous (%llu bounced), %llu "
                  "credit-only; received %llu eager, %llu rendezvous",
                  (unsigned long long)c->n_eager_tx, (unsigned long long)c->n_rdv_tx,
                  (unsigned long long)c->n_bounced, (unsigned long long)c->n_credit_tx,
                  (unsigned long long)c->n_eager_rx, (unsigned long long)c->n_rdv_rx);
    free(c);
}

static void linger_end(rdma_conn *c)
{
    px_tp_link_del(&c->linger_link);
    rdma_host(c)->ops->timer_stop(rdma_host(c), &c->linger_timer);
    conn_destroy(c);
}

static void linger_cb(px_tp_watch *w, void *arg)
{
    linger_end(arg);
}

void rdma_linger_check(rdma_conn *c)
{
    if (c->lingering == 2 && c->slot_done >= c->slot_seq)
        linger_end(c);
}

/* The chassis is done with the conn: free it, or let it linger until its
 * last SENDs have left. */
static void rtp_conn_free(px_tp_conn *pc)
{
    rdma_conn *c = CONN(pc);
    if (c->lingering == 1 && c->qp && c->slot_done < c->slot_seq) {
        c->lingering = 2;
        px_tp_link_push(&c->tp->lingering, &c->linger_link);
        rdma_host(c)->ops->timer_start(rdma_host(c), &c->linger_timer, LINGER_US, 0);
        return;
    }
    conn_destroy(c);
}

/* The link is gone (px_tpc_disconnect): the device lets go of every
 * buffer before the owner hears of the sends it loses. */
static void rtp_stop_io(px_tp_conn *pc)
{
    rdma_conn *c = CONN(pc);
    c->state = RC_DEAD;
    rdma_qp_destroy(c);
    if (c->cq_watched)
        rdma_host(c)->ops->io_set(rdma_host(c), &c->cq_io, 0);
    rdma_tx_release_all(c);
    rdma_rx_drop(c);
    c->nswr = 0;
}

/* Can the conn's last SENDs be left to finish after close? Only when the
 * device holds nothing of the owner's: no rendezvous either way. Then
 * post what is built, with a signalled SEND last, so we learn when all
 * have left. */
static int linger_start(rdma_conn *c)
{
    if (c->state != RC_OPEN || !c->qp || c->base.sends.head || c->rdv.active)
        return 0;
    if (c->nswr == 0 && c->slot_done >= c->slot_seq)
        return 0;
    if (c->slot_seq - c->slot_done < c->opts.sq && c->nswr < c->opts.sq + c->max_reads + 2) {
        uint8_t *p = rdma_slot(c, c->slot_seq);
        memset(p, 0, RDMA_WIRE_HDR);
        p[0] = RW_CREDIT;
        uint64_t seq = c->slot_seq++;
        c->ssge[c->nswr] = (struct ibv_sge){
            .addr = (uintptr_t)p, .length = RDMA_WIRE_HDR, .lkey = c->mem_mr->lkey};
        c->swr[c->nswr] = (struct ibv_send_wr){.wr_id = WR_ID(WR_SEND, seq),
                                               .sg_list = &c->ssge[c->nswr],
                                               .num_sge = 1,
                                               .opcode = IBV_WR_SEND,
                                               .send_flags = IBV_SEND_SIGNALED};
        c->nswr++;
    }
    if (c->nswr) {
        for (uint32_t i = 0; i < c->nswr; i++)
            c->swr[i].next = i + 1 < c->nswr ? &c->swr[i + 1] : NULL;
        struct ibv_send_wr *bad;
        int rc = ibv_post_send(c->qp, c->swr, &bad);
        c->nswr = 0;
        if (rc)
            return 0;
    }
    c->lingering = 1;
    return 1;
}

static void rtp_close(px_tp_conn *pc, px_tp_fifo *unfinished)
{
    rdma_conn *c = CONN(pc);
    if (pc->closed)
        return;
    if (c->lst) { /* accepted by the CM, never offered */
        px_tp_link_del(&c->lst_wait);
        c->lst = NULL;
    }
    if (!linger_start(c)) {
        rdma_qp_destroy(c);
        if (c->cq_watched)
            rdma_host(c)->ops->io_set(rdma_host(c), &c->cq_io, 0);
    }
    rdma_tx_release_all(c);
    rdma_rx_drop(c);
    px_tpc_close(pc, unfinished);
}

static void rtp_reject(px_tp_conn *pc, int reason)
{
    /* Established already: the peer sees a disconnect. */
    rtp_close(pc, NULL);
}

static int rtp_peer_uri(px_tp_conn *pc, char *buf, size_t len)
{
    rdma_conn *c = CONN(pc);
    struct sockaddr *sa = c->id ? rdma_get_peer_addr(c->id) : NULL;
    if (!sa || sa->sa_family == AF_UNSPEC)
        return snprintf(buf, len, "rdma://");
    return rdma_addr_to_uri(sa, buf, len);
}

static void rtp_rx_pause(px_tp_conn *pc, int paused)
{
    rdma_conn *c = CONN(pc);
    if (pc->closed || c->rx_paused == (unsigned)!!paused)
        return;
    c->rx_paused = !!paused;
    if (!paused && c->state == RC_OPEN)
        px_tpc_defer(pc, PX_TPC_KICK, 0);
}

static int rtp_service(px_tp_conn *pc)
{
    rdma_conn *c = CONN(pc);
    if (pc->closed || c->state != RC_OPEN)
        return 0;
    int n = rdma_cq_poll(c);
    if (n != 0)
        return n < 0 ? -1 : 1;
    if (px_tpc_hot_idle(pc))
        px_tpc_cool(pc);
    return 0;
}

static int rtp_connect(px_tp *ptp, const px_uri *uri, const px_tp_owner *owner, px_tp_conn **out)
{
    rdma_tp *tp = TP(ptp);
    struct sockaddr_storage sa;
    rdma_opts o;
    int rc = rdma_addr_from_uri(uri, 0, &sa);
    if (rc == 0)
        rc = rdma_opts_parse(uri, &o);
    if (rc)
        return rc;
    rdma_conn *c = conn_new(tp, &o);
    if (!c)
        return -PX_ENOMEM;
    c->base.owner = *owner;
    c->state = RC_RESOLVING;
    if (rdma_create_id(tp->cm, &c->id, &c->idc, RDMA_PS_TCP) < 0) {
        rc = rdma_err(errno);
        c->id = NULL;
        px_tpc_close(&c->base, NULL);
        return rc;
    }
    /* Whatever resolution says, the owner hears it from the loop. */
    if (rdma_resolve_addr(c->id, NULL, (struct sockaddr *)&sa, RDMA_CM_TIMEOUT) < 0) {
        int e = errno;
        PX_TP_LOG(PX_LOG_WARN, "rdma://%s:%d: address resolution: %s", uri->host, uri->port,
                  strerror(e));
        px_tpc_defer(&c->base, PX_TP_EV_DISCONNECTED, rdma_err(e));
    }
    *out = &c->base;
    return 0;
}

static int rtp_accept(px_tp_conn *pc, const px_tp_owner *owner)
{
    rdma_conn *c = CONN(pc);
    int rc = px_tpc_accept(pc, owner);
    if (rc < 0)
        return rc;
    c->state = RC_OPEN;
    /* Frames that arrived while on offer, and the peer's leaving after them. */
    if (c->rxq_n || c->disc_pending)
        px_tpc_defer(pc, PX_TPC_KICK, 0);
    px_tpc_mark_dirty(pc);
    return 0;
}

/* ---- CM events ------------------------------------------------------------------------ */

/* A CM event copied out, so it is acknowledged before we act on it: a
 * conn closed from inside an upcall destroys its cm_id, which waits for
 * its events to be acknowledged. */
typedef struct cm_ev {
    enum rdma_cm_event_type type;
    int status;
    struct rdma_cm_id *id, *listen_id;
    uint8_t priv[256];
    size_t priv_len;
    uint8_t initiator_depth, responder_resources;
} cm_ev;

static void conn_discard(rdma_conn *c)
{
    rtp_close(&c->base, NULL);
}

static int fail_connect(rdma_conn *c, int reason, const char *what, int status)
{
    PX_TP_LOG(PX_LOG_INFO, "rdma: connect: %s (status %d)", what, status);
    if (c->base.closed || c->state == RC_DEAD)
        return 0;
    return px_tpc_disconnect(&c->base, reason);
}

static void on_route_resolved(rdma_conn *c)
{
    int rc = rdma_qp_create(c);
    if (rc) {
        px_tpc_disconnect(&c->base, rc);
        return;
    }
    rdma_priv p;
    struct rdma_conn_param cp = conn_param(c, &p, (uint8_t)c->max_reads, (uint8_t)c->max_reads);
    if (rdma_connect(c->id, &cp) < 0) {
        px_tpc_disconnect(&c->base, rdma_err(errno));
        return;
    }
    c->state = RC_CONNECTING;
}

static void on_established(rdma_conn *c, const cm_ev *ev)
{
    if (c->lst) { /* server: offer it to the listener's owner */
        rdma_listener *l = c->lst;
        px_tp_link_del(&c->lst_wait);
        c->lst = NULL;
        c->state = RC_PENDING;
        px_tpc_offer(&l->base, &c->base);
        return;
    }
    int rc = priv_take(c, ev->priv, ev->priv_len);
    if (rc) {
        px_tpc_disconnect(&c->base, rc);
        return;
    }
    c->state = RC_OPEN;
    if (px_tpc_connected(&c->base) < 0)
        return;
    px_tpc_mark_dirty(&c->base);
    px_tpc_mark_hot(&c->base);
    px_tpc_room(&c->base); /* sends refused while connecting may go now (last: it may close) */
}

/* The link is gone under an open (or offered) conn. */
static void link_lost(rdma_conn *c, int reason, const char *why)
{
    PX_TP_LOG(PX_LOG_INFO, "rdma: %s", why);
    if (c->lst) { /* nobody owns it yet */
        conn_discard(c);
        return;
    }
    if (c->state == RC_DEAD || c->base.closed)
        return;
    /* What the peer sent before it went is in our CQ (its SENDs completed
     * before its disconnect left): deliver it first, as a stream delivers
     * the bytes before its EOF. On offer, the frames wait for accept, and
     * the disconnect with them (rdma_rx_resume). Paused, they are lost
     * with the link, as a paused stream's unread bytes are: the owner may
     * be waiting for this very end to let go of what it holds. */
    c->disc_pending = reason;
    if (rdma_cq_poll(c) < 0)
        return;
    if (c->state == RC_OPEN && !c->base.closed)
        px_tpc_disconnect(&c->base, reason);
}

static void conn_event(rdma_conn *c, const cm_ev *ev)
{
    if (c->lingering) {
        if (ev->type == RDMA_CM_EVENT_DISCONNECTED || ev->type == RDMA_CM_EVENT_DEVICE_REMOVAL)
            linger_end(c);
        return;
    }
    switch (ev->type) {
    case RDMA_CM_EVENT_ADDR_RESOLVED:
        if (rdma_resolve_route(c->id, RDMA_CM_TIMEOUT) < 0)
            px_tpc_disconnect(&c->base, rdma_err(errno));
        break;
    case RDMA_CM_EVENT_ROUTE_RESOLVED:
        on_route_resolved(c);
        break;
    case RDMA_CM_EVENT_ESTABLISHED:
        on_established(c, ev);
        break;
    case RDMA_CM_EVENT_ADDR_ERROR:
        fail_connect(c, -PX_EHOSTUNREACH, "address resolution failed", ev->status);
        break;
    case RDMA_CM_EVENT_ROUTE_ERROR:
        fail_connect(c, -PX_ENETUNREACH, "route resolution failed", ev->status);
        break;
    case RDMA_CM_EVENT_UNREACHABLE:
        fail_connect(c, -PX_EHOSTUNREACH, "the peer is unreachable", ev->status);
        break;
    case RDMA_CM_EVENT_REJECTED:
        fail_connect(c, -PX_ECONNREFUSED, "refused (no listener, or rejected)", ev->status);
        break;
    case RDMA_CM_EVENT_CONNECT_ERROR:
        fail_connect(c, -PX_ECONNREFUSED, "connection setup failed", ev->status);
        break;
    case RDMA_CM_EVENT_DISCONNECTED:
        link_lost(c, -PX_EDISCONNECTED, "the peer disconnected");
        break;
    case RDMA_CM_EVENT_DEVICE_REMOVAL:
        link_lost(c, -PX_ENETUNREACH, "the RDMA device was removed");
        break;
    default:
        break; /* TIMEWAIT_EXIT, ADDR_CHANGE, ...: nothing to do */
    }
}

static void on_connect_request(rdma_listener *l, const cm_ev *ev)
{
    struct rdma_cm_id *id = ev->id;
    rdma_conn *c = l->base.closed ? NULL : conn_new(l->tp, &l->opts);
    if (!c) {
        rdma_reject(id, NULL, 0);
        rdma_destroy_id(id);
        return;
    }
    c->id = id;
    id->context = &c->idc;
    c->state = RC_CONNECTING;
    c->lst = l;
    px_tp_link_push(&l->waiting, &c->lst_wait);
    int rc = priv_take(c, ev->priv, ev->priv_len);
    if (rc == 0)
        rc = rdma_qp_create(c);
    if (rc == 0) {
        rdma_priv p;
        uint8_t resp = ev->initiator_depth < c->max_reads ? ev->initiator_depth : c->max_reads;
        uint8_t init =
            ev->responder_resources < c->max_reads ? ev->responder_resources : c->max_reads;
        struct rdma_conn_param cp = conn_param(c, &p, resp, init);
        if (rdma_accept(id, &cp) < 0) {
            PX_TP_LOG(PX_LOG_WARN, "rdma: accepting a connection: %m");
            rc = -PX_EIO;
        }
    }
    if (rc) {
        rdma_reject(id, NULL, 0);
        conn_discard(c);
    }
}

static void listener_event(rdma_listener *l, const cm_ev *ev)
{
    if (ev->type == RDMA_CM_EVENT_CONNECT_REQUEST)
        on_connect_request(l, ev);
    else if (ev->type == RDMA_CM_EVENT_DEVICE_REMOVAL)
        PX_TP_LOG(PX_LOG_WARN, "rdma: a listener's device was removed: it accepts no more");
}

static void dispatch(const cm_ev *ev)
{
    struct rdma_cm_id *owner_id =
        ev->type == RDMA_CM_EVENT_CONNECT_REQUEST ? ev->listen_id : ev->id;
    rdma_idctx *ic = owner_id ? owner_id->context : NULL;
    if (!ic)
        return;
    if (ic->is_listener)
        listener_event(ic->obj, ev);
    else
        conn_event(ic->obj, ev);
}

static void cm_cb(px_tp_watch *w, int revents, void *arg)
{
    rdma_tp *tp = arg;
    for (int i = 0; i < 64; i++) {
        struct rdma_cm_event *e;
        if (rdma_get_cm_event(tp->cm, &e) < 0)
            return;
        cm_ev ev = {.type = e->event, .status = e->status, .id = e->id, .listen_id = e->listen_id};
        if (e->event == RDMA_CM_EVENT_CONNECT_REQUEST || e->event == RDMA_CM_EVENT_ESTABLISHED ||
            e->event == RDMA_CM_EVENT_REJECTED) {
            ev.priv_len = e->param.conn.private_data_len;
            if (ev.priv_len > sizeof ev.priv)
                ev.priv_len = sizeof ev.priv;
            if (e->param.conn.private_data)
                memcpy(ev.priv, e->param.conn.private_data, ev.priv_len);
            else
                ev.priv_len = 0;
            ev.initiator_depth = e->param.conn.initiator_depth;
            ev.responder_resources = e->param.conn.responder_resources;
        }
        rdma_ack_cm_event(e);
        dispatch(&ev);
    }
}

/* ---- listeners -------------------------------------------------------------------------- */

static void rtp_listener_free(px_tp_listener *pl)
{
    free(LST(pl));
}

static int rtp_listen(px_tp *ptp, const px_uri *uri, const px_tp_listen_owner *owner,
                      px_tp_listener **out)
{
    rdma_tp *tp = TP(ptp);
    rdma_listener *l = calloc(1, sizeof *l);
    if (!l)
        return -PX_ENOMEM;
    int rc = rdma_addr_from_uri(uri, 1, &l->addr);
    if (rc == 0)
        rc = rdma_opts_parse(uri, &l->opts);
    if (rc) {
        free(l);
        return rc;
    }
    l->idc = (rdma_idctx){.is_listener = 1, .obj = l};
    px_tp_link_init(&l->waiting);
    if (rdma_create_id(tp->cm, &l->id, &l->idc, RDMA_PS_TCP) < 0) {
        rc = rdma_err(errno);
        free(l);
        return rc;
    }
    if (rdma_bind_addr(l->id, (struct sockaddr *)&l->addr) < 0 || rdma_listen(l->id, 1024) < 0) {
        int e = errno;
        PX_TP_LOG(PX_LOG_WARN, "rdma://%s:%d: %s%s", uri->host, uri->port, strerror(e),
                  e == EADDRNOTAVAIL || e == ENODEV ? " (no RDMA device has this address)" : "");
        rdma_destroy_id(l->id);
        free(l);
        return rdma_err(e);
    }
    struct sockaddr *bound = rdma_get_local_addr(l->id);
    if (bound)
        memcpy(&l->addr, bound,
               bound->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                            : sizeof(struct sockaddr_in));
    px_tpc_listener_init(&l->base, ptp, owner);
    l->tp = tp;
    *out = &l->base;
    return 0;
}

static int rtp_listener_uri(px_tp_listener *pl, char *buf, size_t len)
{
    return rdma_addr_to_uri((struct sockaddr *)&LST(pl)->addr, buf, len);
}

static void rtp_listener_close(px_tp_listener *pl)
{
    rdma_listener *l = LST(pl);
    if (pl->closed)
        return;
    while (l->waiting.next != &l->waiting)
        conn_discard(CONTAINER(l->waiting.next, rdma_conn, lst_wait));
    rdma_destroy_id(l->id);
    l->id = NULL;
    px_tpc_listener_close(pl);
}

/* ---- the instance ------------------------------------------------------------------------ */

static void devs_close(rdma_tp *tp)
{
    for (int d = 0; d < tp->ndev; d++)
        if (tp->devs[d].pd && ibv_dealloc_pd(tp->devs[d].pd))
            PX_TP_LOG(PX_LOG_WARN, "rdma: a protection domain is still in use at the end "
                                   "(a memory region not deregistered?)");
    free(tp->devs);
    tp->devs = NULL;
    if (tp->devlist)
        rdma_free_devices(tp->devlist);
    tp->devlist = NULL;
    tp->ndev = 0;
}

static int devs_open(rdma_tp *tp)
{
    int n = 0;
    tp->devlist = rdma_get_devices(&n);
    if (!tp->devlist || n <= 0) {
        PX_TP_LOG(PX_LOG_WARN, "rdma: no RDMA device on this host (ibv_devices lists none)");
        return -PX_EADDRNOTAVAIL;
    }
    tp->devs = calloc((size_t)n, sizeof *tp->devs);
    if (!tp->devs)
        return -PX_ENOMEM;
    tp->ndev = n;
    for (int d = 0; d < n; d++) {
        rdma_dev *dv = &tp->devs[d];
        dv->verbs = tp->devlist[d];
        if (ibv_query_device(dv->verbs, &dv->attr) == 0)
            dv->pd = ibv_alloc_pd(dv->verbs);
        if (!dv->pd) {
            PX_TP_LOG(PX_LOG_WARN, "rdma: cannot use device %s: %m",
                      ibv_get_device_name(dv->verbs->device));
            return -PX_EIO;
        }
    }
    return 0;
}

static void rtp_fini(px_tp *ptp)
{
    rdma_tp *tp = TP(ptp);
    while (tp->lingering.next != &tp->lingering)
        linger_end(CONTAINER(tp->lingering.next, rdma_conn, linger_link));
    px_tpc_fini(ptp);
    rdma_srq_fini(tp);
    if (tp->cm) {
        ptp->host->ops->io_fini(ptp->host, &tp->cm_io);
        rdma_destroy_event_channel(tp->cm);
    }
    rdma_pool_fini(tp);
    devs_close(tp);
    free(tp);
}

static int rtp_init(const px_tp_host *host, px_tp **out)
{
    if (!host)
        return -PX_EINVAL;
    rdma_tp *tp = calloc(1, sizeof *tp);
    if (!tp)
        return -PX_ENOMEM;
    px_tpc_init(&tp->base, &px_rdma_transport, host);
    px_tp_link_init(&tp->lingering);
    int rc = devs_open(tp);
    if (rc == 0) {
        tp->cm = rdma_create_event_channel();
        if (!tp->cm) {
            PX_TP_LOG(PX_LOG_WARN, "rdma: no rdma_cm here (rdma_create_event_channel: %m; is "
                                   "rdma_ucm loaded?)");
            rc = -PX_EADDRNOTAVAIL;
        }
    }
    if (rc == 0) {
        int fl = fcntl(tp->cm->fd, F_GETFL);
        (void)fcntl(tp->cm->fd, F_SETFL, fl | O_NONBLOCK);
        tp->pool.free = calloc((size_t)tp->ndev * RDMA_POOL_CLASSES, sizeof *tp->pool.free);
        if (!tp->pool.free)
            rc = -PX_ENOMEM;
    }
    if (rc) {
        if (tp->cm)
            rdma_destroy_event_channel(tp->cm);
        tp->cm = NULL;
        rdma_pool_fini(tp);
        devs_close(tp);
        px_tpc_fini(&tp->base);
        free(tp);
        return rc;
    }
    host->ops->io_init(host, &tp->cm_io, tp->cm->fd, cm_cb, tp);
    host->ops->io_set(host, &tp->cm_io, PX_TP_READ);
    *out = &tp->base;
    return 0;
}

static void rtp_get_caps(px_tp *ptp, px_tp_caps *out)
{
    *out = (px_tp_caps){
        .flags = PX_TP_CAP_RX_DIRECT | PX_TP_CAP_ZCOPY_SEND | PX_TP_CAP_ONE_COPY,
        .max_iov = RDMA_MAX_IOV,
        .max_inline = ptp->host->inline_threshold,
        .max_msg = UINT32_MAX,
        .rkey_len = 4,
    };
}

static const char *const rdma_schemes[] = {"rdma", NULL};

const px_transport px_rdma_transport = {
    .abi = PX_TRANSPORT_ABI,
    .name = "rdma",
    .schemes = rdma_schemes,
    .init = rtp_init,
    .fini = rtp_fini,
    .get_caps = rtp_get_caps,
    .check_uri = rdma_check_uri,
    .listen = rtp_listen,
    .listener_uri = rtp_listener_uri,
    .listener_close = rtp_listener_close,
    .connect = rtp_connect,
    .accept = rtp_accept,
    .reject = rtp_reject,
    .send = rdma_tx_send,
    .close = rtp_close,
    .peer_uri = rtp_peer_uri,
    .rx_pause = rtp_rx_pause,
    .conn_free = rtp_conn_free,
    .listener_free = rtp_listener_free,
    .stop_io = rtp_stop_io,
    .flush = rdma_tx_flush,
    .kick = rdma_rx_resume,
    .service = rtp_service,
    .mem_register = rdma_mem_register,
    .mem_deregister = rdma_mem_deregister,
    .rkey_pack = rdma_rkey_pack,
    .rkey_unpack = rdma_rkey_unpack,
    .options = rdma_options,
};
