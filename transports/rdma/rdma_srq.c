/* The shared receive queue of a device (rdma://...?srq=1).
 *
 * Per-connection receive queues cost (rq + 4) buffers for every
 * connection, idle or not. With srq=1 the connections of a context on one
 * device draw from one pool of RDMA_SRQ_BUFS buffers instead, and each
 * keeps only its send slots: memory follows the traffic, not the number of
 * connections. Flow control stays the same credit window per connection
 * (UCX's way): the windows together may promise more than the pool holds,
 * so a burst from many peers at once can find it empty, and then the
 * device's RNR retry (infinite) holds the senders back until buffers come
 * back. That, and a receiver that holds buffers (paused, or slow to
 * release), slowing every peer on the device, is the price.
 *
 * Created with the first srq=1 connection on a device, freed with the
 * instance. A buffer is on the SRQ, or held by exactly one connection
 * (queued for delivery, delivered in place, or waiting to be reposted);
 * a connection's end gives every buffer it holds back (rdma_srq_reclaim).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "transports/rdma/rdma.h"

static void srq_free(rdma_srq *s)
{
    if (!s)
        return;
    if (s->srq)
        ibv_destroy_srq(s->srq);
    if (s->mr)
        ibv_dereg_mr(s->mr);
    free(s->mem);
    free(s->rwr);
    free(s->rsge);
    free(s);
}

static rdma_srq *srq_new(rdma_dev *d, uint32_t buf_len)
{
    uint32_t n = RDMA_SRQ_BUFS;
    if (d->attr.max_srq_wr <= 0) {
        PX_TP_LOG(PX_LOG_WARN, "rdma: %s has no shared receive queue (srq=1 is not available)",
                  ibv_get_device_name(d->verbs->device));
        return NULL;
    }
    if ((uint32_t)d->attr.max_srq_wr < n)
        n = (uint32_t)d->attr.max_srq_wr;
    rdma_srq *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->n = n;
    s->buf_len = buf_len;
    s->rwr = calloc(n, sizeof *s->rwr);
    s->rsge = calloc(n, sizeof *s->rsge);
    if (!s->rwr || !s->rsge || posix_memalign((void **)&s->mem, 4096, (size_t)n * buf_len) != 0) {
        s->mem = NULL;
        srq_free(s);
        return NULL;
    }
    struct ibv_srq_init_attr a = {.attr = {.max_wr = n, .max_sge = 1}};
    s->mr = ibv_reg_mr(d->pd, s->mem, (size_t)n * buf_len, IBV_ACCESS_LOCAL_WRITE);
    s->srq = s->mr ? ibv_create_srq(d->pd, &a) : NULL;
    if (!s->srq) {
        PX_TP_LOG(PX_LOG_WARN, "rdma: creating a shared receive queue of %u buffers: %m", n);
        srq_free(s);
        return NULL;
    }
    uint32_t all[RDMA_SRQ_BUFS];
    for (uint32_t i = 0; i < n; i++)
        all[i] = i;
    if (rdma_srq_post(s, all, n) < 0) {
        srq_free(s);
        return NULL;
    }
    return s;
}

int rdma_srq_get(rdma_tp *tp, int dev, uint32_t buf_len, rdma_srq **out)
{
    rdma_dev *d = &tp->devs[dev];
    if (!d->srq) {
        d->srq = srq_new(d, buf_len);
        if (!d->srq)
            return -PX_EOPNOTSUPP;
    }
    *out = d->srq;
    return 0;
}

int rdma_srq_post(rdma_srq *s, const uint32_t *bufs, uint32_t n)
{
    if (!n)
        return 0;
    for (uint32_t i = 0; i < n; i++) {
        s->rsge[i] = (struct ibv_sge){.addr = (uintptr_t)(s->mem + (size_t)bufs[i] * s->buf_len),
                                      .length = s->buf_len,
                                      .lkey = s->mr->lkey};
        s->rwr[i] = (struct ibv_recv_wr){.wr_id = WR_ID(WR_RECV, bufs[i]),
                                         .sg_list = &s->rsge[i],
                                         .num_sge = 1,
                                         .next = i + 1 < n ? &s->rwr[i + 1] : NULL};
    }
    struct ibv_recv_wr *bad;
    int rc = ibv_post_srq_recv(s->srq, s->rwr, &bad);
    if (rc) {
        PX_TP_LOG(PX_LOG_WARN, "rdma: posting %u buffers to the shared receive queue: %s", n,
                  strerror(rc));
        return -1;
    }
    return 0;
}

/* Every buffer of the pool the conn holds goes back: those waiting for
 * delivery or a rendezvous, those waiting to be reposted, and those its
 * QP took whose completions are still in its CQ (the QP is destroyed
 * first, so no more arrive). */
void rdma_srq_reclaim(rdma_conn *c)
{
    rdma_srq *s = c->srq;
    if (!s)
        return;
    (void)rdma_srq_post(s, c->repost, c->nrepost);
    c->nrepost = 0;
    for (uint32_t k = 0; k < c->rxq_n; k++)
        c->repost[c->nrepost++] = c->rxq[(c->rxq_head + k) % c->nrecv].buf;
    c->rxq_n = 0;
    (void)rdma_srq_post(s, c->repost, c->nrepost);
    c->nrepost = 0;
    if (c->rdv.active) {
        (void)rdma_srq_post(s, &c->rdv.ent.buf, 1);
        rdma_rx_drop(c);
    }
    struct ibv_wc wc[32];
    int n;
    while (c->cq && (n = ibv_poll_cq(c->cq, 32, wc)) > 0) {
        uint32_t bufs[32], nb = 0;
        for (int i = 0; i < n; i++)
            if (WR_KIND(wc[i].wr_id) == WR_RECV && WR_SEQ(wc[i].wr_id) < s->n)
                bufs[nb++] = (uint32_t)WR_SEQ(wc[i].wr_id);
        (void)rdma_srq_post(s, bufs, nb);
    }
}

void rdma_srq_fini(rdma_tp *tp)
{
    for (int d = 0; d < tp->ndev; d++) {
        srq_free(tp->devs[d].srq);
        tp->devs[d].srq = NULL;
    }
}
