/* A connection's verbs resources and its completion queue.
 *
 * Each conn has its own CQ and completion channel (one fd in the loop),
 * an RC QP made with rdma_create_qp(), and one registered block of slot
 * memory: sq send slots, then rq + RDMA_SPARE receive buffers, buf_len
 * bytes each. The CQ holds every send, READ and receive work request the
 * QP can have outstanding, so it cannot overflow.
 *
 * The CQ is drained with ibv_poll_cq; the channel wakes the loop: get the
 * event, re-arm, then poll again, so a completion that lands between the
 * last poll and the arm is not slept on. Events are acknowledged in
 * batches.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "transports/rdma/rdma.h"

#define CQ_BATCH     32
#define CQ_ACK_BATCH 64

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static int find_dev(const rdma_conn *c)
{
    for (int d = 0; d < c->tp->ndev; d++)
        if (c->tp->devs[d].verbs == c->id->verbs)
            return d;
    return -1;
}

static uint32_t umin(uint32_t a, uint32_t b)
{
    return a < b ? a : b;
}

/* One buffer holds the largest rendezvous request (headers, descriptor,
 * application header) whatever eager size was asked for. */
static uint32_t buf_len_for(const rdma_conn *c)
{
    uint64_t need = (uint64_t)RDMA_WIRE_HDR + PX_FRAME_HDR_LEN + PX_FRAME_MAX_EXT +
                    rdma_host(c)->limits.max_hdr;
    uint64_t len = c->opts.eager > need ? c->opts.eager : need;
    return (uint32_t)((len + 63) & ~(uint64_t)63);
}

static void cq_cb(px_tp_watch *w, int revents, void *arg);

static int make_cq(rdma_conn *c, const rdma_dev *d)
{
    c->chan = ibv_create_comp_channel(c->id->verbs);
    if (!c->chan || set_nonblock(c->chan->fd) < 0)
        return rdma_err(errno);
    c->cq_len = c->opts.sq + c->max_reads + c->nrecv + 8;
    if (d->attr.max_cqe > 0 && c->cq_len > (uint32_t)d->attr.max_cqe)
        return -PX_ENOMEM;
    c->cq = ibv_create_cq(c->id->verbs, (int)c->cq_len, c, c->chan, 0);
    if (!c->cq)
        return rdma_err(errno);
    if (ibv_req_notify_cq(c->cq, 0))
        return -PX_EIO;
    const px_tp_host *h = rdma_host(c);
    h->ops->io_init(h, &c->cq_io, c->chan->fd, cq_cb, c);
    h->ops->io_set(h, &c->cq_io, PX_TP_READ);
    c->cq_watched = 1;
    return 0;
}

static int make_qp(rdma_conn *c, const rdma_dev *d)
{
    struct ibv_qp_init_attr a = {
        .send_cq = c->cq,
        .recv_cq = c->cq,
        .qp_type = IBV_QPT_RC,
        .sq_sig_all = 0,
        .srq = c->srq ? c->srq->srq : NULL,
        .cap =
            {
                .max_send_wr = c->opts.sq + c->max_reads + 2,
                .max_recv_wr = c->srq ? 0 : c->nrecv,
                .max_send_sge = 1,
                .max_recv_sge = c->srq ? 0 : 1,
                .max_inline_data = c->opts.inline_sz,
            },
    };
    if (rdma_create_qp(c->id, d->pd, &a) < 0) {
        /* Some devices give no inline data at all: ask again without. */
        a.cap.max_inline_data = 0;
        if (rdma_create_qp(c->id, d->pd, &a) < 0) {
            int e = errno;
            PX_TP_LOG(PX_LOG_WARN,
                      "rdma: creating a queue pair (%u send, %u receive WRs) "
                      "failed: %s",
                      a.cap.max_send_wr, a.cap.max_recv_wr, strerror(e));
            return rdma_err(e);
        }
    }
    c->qp = c->id->qp;
    c->max_inline = a.cap.max_inline_data;
    return 0;
}

static int make_mem(rdma_conn *c, const rdma_dev *d)
{
    size_t nbuf = (size_t)c->opts.sq + (c->srq ? 0 : c->nrecv);
    c->mem_len = nbuf * c->buf_len;
    if (posix_memalign((void **)&c->mem, 4096, c->mem_len) != 0) {
        c->mem = NULL;
        return -PX_ENOMEM;
    }
    c->mem_mr = ibv_reg_mr(d->pd, c->mem, c->mem_len, IBV_ACCESS_LOCAL_WRITE);
    if (!c->mem_mr) {
        PX_TP_LOG(PX_LOG_WARN,
                  "rdma: registering %zu bytes of buffers failed: %m (is the "
                  "locked-memory limit, ulimit -l, too low?)",
                  c->mem_len);
        return rdma_err(errno);
    }
    uint32_t nwr = c->opts.sq + c->max_reads + 2;
    c->swr = calloc(nwr, sizeof *c->swr);
    c->ssge = calloc(nwr, sizeof *c->ssge);
    c->rwr = calloc(c->nrecv, sizeof *c->rwr);
    c->rsge = calloc(c->nrecv, sizeof *c->rsge);
    c->rxq = calloc(c->nrecv, sizeof *c->rxq);
    c->repost = calloc(c->nrecv, sizeof *c->repost);
    c->dones = calloc(c->nrecv, sizeof *c->dones);
    if (!c->swr || !c->ssge || !c->rwr || !c->rsge || !c->rxq || !c->repost || !c->dones)
        return -PX_ENOMEM;
    return 0;
}

/* Before the peer can send: its first SENDs must find buffers (the
 * window it is told of at setup). */
static int post_all_receives(rdma_conn *c)
{
    for (uint32_t i = 0; i < c->nrecv; i++)
        c->repost[i] = i;
    c->nrepost = c->nrecv;
    c->owed_next = 0;
    return rdma_post_receives(c);
}

int rdma_qp_create(rdma_conn *c)
{
    c->dev = find_dev(c);
    if (c->dev < 0) {
        PX_TP_LOG(PX_LOG_WARN, "rdma: the route goes through a device this context did not "
                               "open (was it added after the context started?)");
        return -PX_EADDRNOTAVAIL;
    }
    const rdma_dev *d = &c->tp->devs[c->dev];
    c->max_reads = umin(RDMA_MAX_READS, (uint32_t)d->attr.max_qp_init_rd_atom);
    c->max_reads = umin(c->max_reads, (uint32_t)d->attr.max_qp_rd_atom);
    if (c->max_reads == 0)
        c->max_reads = 1;
    c->opts.sq = umin(c->opts.sq, (uint32_t)d->attr.max_qp_wr - c->max_reads - 2);
    c->opts.rq = umin(c->opts.rq, (uint32_t)d->attr.max_qp_wr - RDMA_SPARE);
    c->nrecv = c->opts.rq + RDMA_SPARE;
    c->buf_len = buf_len_for(c);
    int rc = 0;
    if (c->opts.srq) {
        /* The pool's buffer size is the first conn's: all of a context's
         * conns need the same room for headers. */
        rc = rdma_srq_get(c->tp, c->dev, c->buf_len, &c->srq);
        if (rc == 0)
            c->buf_len = c->srq->buf_len;
    }
    if (rc == 0)
        rc = make_cq(c, d);
    if (rc == 0)
        rc = make_qp(c, d);
    if (rc == 0)
        rc = make_mem(c, d);
    if (rc == 0 && !c->srq)
        rc = post_all_receives(c);
    /* Frames are delivered in place from the receive buffers: a send the
     * owner holds past the upcall copies from them first. */
    if (rc == 0)
        px_tpc_lendable(&c->base, 0, rdma_rbuf(c, 0), (size_t)rdma_nbufs(c) * c->buf_len);
    return rc;
}

void rdma_qp_destroy(rdma_conn *c)
{
    if (!c->qp)
        return;
    /* In the error state the QP executes nothing more and answers no
     * remote READ; once destroyed, the device holds none of our memory. */
    struct ibv_qp_attr a = {.qp_state = IBV_QPS_ERR};
    (void)ibv_modify_qp(c->qp, &a, IBV_QP_STATE);
    if (c->state != RC_RESOLVING)
        (void)rdma_disconnect(c->id);
    rdma_destroy_qp(c->id);
    c->qp = NULL;
    rdma_srq_reclaim(c);
}

void rdma_qp_free(rdma_conn *c)
{
    const px_tp_host *h = rdma_host(c);
    if (c->cq_watched) {
        h->ops->io_fini(h, &c->cq_io);
        c->cq_watched = 0;
    }
    if (c->cq) {
        if (c->cq_unacked)
            ibv_ack_cq_events(c->cq, c->cq_unacked);
        c->cq_unacked = 0;
        ibv_destroy_cq(c->cq);
        c->cq = NULL;
    }
    if (c->chan) {
        ibv_destroy_comp_channel(c->chan);
        c->chan = NULL;
    }
    if (c->mem_mr) {
        ibv_dereg_mr(c->mem_mr);
        c->mem_mr = NULL;
    }
    free(c->mem);
    free(c->swr);
    free(c->ssge);
    free(c->rwr);
    free(c->rsge);
    free(c->rxq);
    free(c->repost);
    free(c->dones);
    c->dones = NULL;
    c->mem = NULL;
    c->swr = NULL;
    c->ssge = NULL;
    c->rwr = NULL;
    c->rsge = NULL;
    c->rxq = NULL;
    c->repost = NULL;
}

/* ---- completions ------------------------------------------------------------------- */

/* Why a failed work completion ends the link, in plexus's words. */
static int wc_reason(enum ibv_wc_status st)
{
    switch (st) {
    case IBV_WC_RETRY_EXC_ERR:
    case IBV_WC_RNR_RETRY_EXC_ERR:
        return -PX_ETIMEDOUT;
    case IBV_WC_REM_ACCESS_ERR:
    case IBV_WC_REM_INV_REQ_ERR:
    case IBV_WC_LOC_PROT_ERR:
    case IBV_WC_LOC_LEN_ERR:
    case IBV_WC_REM_OP_ERR:
        return -PX_EPROTO;
    case IBV_WC_WR_FLUSH_ERR:
        return -PX_ECONNRESET;
    default:
        return -PX_EIO;
    }
}

/* A receive completion whose buffer no frame will use: back to the
 * shared queue (a conn's own buffers die with it). */
static void recv_unused(rdma_conn *c, const struct ibv_wc *wc)
{
    uint32_t b = (uint32_t)WR_SEQ(wc->wr_id);
    if (c->srq && WR_KIND(wc->wr_id) == WR_RECV && b < c->srq->n)
        (void)rdma_srq_post(c->srq, &b, 1);
}

static int wc_failed(rdma_conn *c, const struct ibv_wc *wc)
{
    recv_unused(c, wc);
    if (c->state == RC_DEAD || c->base.closed)
        return 0; /* the flush of a link already gone */
    int reason = wc_reason(wc->status);
    PX_TP_LOG(wc->status == IBV_WC_WR_FLUSH_ERR ? PX_LOG_INFO : PX_LOG_WARN,
              "rdma: %s work request failed: %s (vendor error 0x%x)",
              WR_KIND(wc->wr_id) == WR_RECV   ? "receive"
              : WR_KIND(wc->wr_id) == WR_READ ? "RDMA READ"
                                              : "send",
              ibv_wc_status_str(wc->status), wc->vendor_err);
    if (reason == -PX_EPROTO)
        return px_tpc_fail(&c->base, reason);
    return px_tpc_disconnect(&c->base, reason);
}

/* A closed conn lingering to let its last SENDs leave: only count them. */
static void linger_wc(rdma_conn *c, const struct ibv_wc *wc)
{
    if (wc->status == IBV_WC_SUCCESS && WR_KIND(wc->wr_id) == WR_SEND)
        c->slot_done = WR_SEQ(wc->wr_id) + 1;
    recv_unused(c, wc);
}

static int handle_wc(rdma_conn *c, const struct ibv_wc *wc)
{
    if (c->base.closed) {
        linger_wc(c, wc);
        return 0;
    }
    if (wc->status != IBV_WC_SUCCESS)
        return wc_failed(c, wc);
    switch (WR_KIND(wc->wr_id)) {
    case WR_RECV:
        c->base.rx_bytes += wc->byte_len;
        return rdma_rx_arrived(c, (uint32_t)WR_SEQ(wc->wr_id), wc->byte_len);
    case WR_SEND:
        return rdma_tx_slots_done(c, WR_SEQ(wc->wr_id));
    case WR_READ:
        return rdma_rx_read_done(c);
    default:
        return px_tpc_fail(&c->base, -PX_EIO);
    }
}

int rdma_cq_poll(rdma_conn *c)
{
    if (!c->cq || !c->qp)
        return 0;
    struct ibv_wc wc[CQ_BATCH];
    int total = 0;
    for (;;) {
        int n = ibv_poll_cq(c->cq, CQ_BATCH, wc);
        if (n < 0)
            return c->base.closed ? 0 : px_tpc_disconnect(&c->base, -PX_EIO);
        for (int i = 0; i < n; i++)
            if (handle_wc(c, &wc[i]) < 0)
                return -1;
        total += n;
        if (n < CQ_BATCH)
            break;
    }
    if (c->base.closed)
        return total;
    /* Frames arrived (or a rendezvous finished): hand them up in order,
     * then the flush reposts their buffers and returns the credits. */
    if (total) {
        px_tpc_mark_hot(&c->base); /* a busy-polling context polls it without the loop */
        if (rdma_rx_deliver(c) < 0)
            return -1;
        px_tpc_mark_dirty(&c->base);
    }
    return total;
}

static void cq_cb(px_tp_watch *w, int revents, void *arg)
{
    rdma_conn *c = arg;
    struct ibv_cq *cq;
    void *ctx;
    while (ibv_get_cq_event(c->chan, &cq, &ctx) == 0)
        c->cq_unacked++;
    if (c->cq_unacked >= CQ_ACK_BATCH) {
        ibv_ack_cq_events(c->cq, c->cq_unacked);
        c->cq_unacked = 0;
    }
    if (ibv_req_notify_cq(c->cq, 0) && !c->base.closed) {
        px_tpc_disconnect(&c->base, -PX_EIO);
        return;
    }
    if (rdma_cq_poll(c) < 0)
        return;
    if (c->base.closed)
        rdma_linger_check(c);
}
