/* Receive: frames handed up in order from pre-posted buffers, the
 * rendezvous RDMA READ, reposting and credit return.
 *
 * A receive completion is looked at once on arrival: the credits it
 * carries count at once (even while delivery is paused), CREDIT and DONE
 * messages are consumed there, and DATA and RTS wait in arrival order on
 * rxq. Delivery takes them in order. A DATA frame is handed up in place
 * from its buffer (or, over the inline threshold, copied into the owner's
 * rx_assign destination). An RTS starts the rendezvous: the data is READ
 * straight into the destination when it lies in registered memory, else
 * into a registered bounce buffer and copied out; meanwhile the frames
 * behind it wait (order is the contract). A buffer goes back to the device
 * only after its frame upcall has returned, and its credit with it: a peer
 * whose frames we hold (paused, or behind a rendezvous) runs out of credits
 * and waits, which is the flow control.
 *
 * No send ever points into a receive buffer once its upcall has returned:
 * eager sends are copied into send slots, and a rendezvous send only reads
 * registered regions in place (plain memory, such as a delivered frame, is
 * copied into a bounce buffer), so buffers are reposted without a reclaim.
 */
#include <endian.h>
#include <string.h>

#include "transports/rdma/rdma.h"

static rdma_conn *CONN(px_tp_conn *p)
{
    return (rdma_conn *)(void *)p;
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return le32toh(v);
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return le64toh(v);
}

/* The buffer goes back at the next flush (at once when the list is full:
 * a peer flooding CREDITs into a shared queue); `credit`: it held a
 * message the peer spent a credit on. 0, or -1 when the conn is gone. */
static int repost(rdma_conn *c, uint32_t buf, int credit)
{
    if (c->nrepost == c->nrecv && rdma_post_receives(c) < 0)
        return -1;
    c->repost[c->nrepost++] = buf;
    c->owed_next += credit ? 1u : 0u;
    px_tpc_mark_dirty(&c->base);
    return 0;
}

int rdma_rx_arrived(rdma_conn *c, uint32_t buf, uint32_t len)
{
    if (buf >= rdma_nbufs(c))
        return px_tpc_fail(&c->base, -PX_EIO);
    const uint8_t *p = rdma_rbuf(c, buf);
    unsigned kind = len >= RDMA_WIRE_HDR ? p[0] : 0;
    if (len < RDMA_WIRE_HDR || p[1] != 0 || kind < RW_DATA || kind > RW_CREDIT) {
        PX_TP_LOG(PX_LOG_WARN, "rdma: a malformed %u-byte message from the peer", len);
        return px_tpc_fail(&c->base, -PX_EPROTO);
    }
    uint16_t credits;
    memcpy(&credits, p + 2, 2);
    if (rdma_tx_credits(c, le16toh(credits)) < 0)
        return -1;
    switch (kind) {
    case RW_CREDIT:
        if (len != RDMA_WIRE_HDR)
            return px_tpc_fail(&c->base, -PX_EPROTO);
        return repost(c, buf, 0);
    case RW_DONE:
        if (len != RDMA_WIRE_HDR)
            return px_tpc_fail(&c->base, -PX_EPROTO);
        if (repost(c, buf, 1) < 0)
            return -1;
        return rdma_tx_rdv_done(c, get32(p + 4));
    default:
        if (c->rxq_n == c->nrecv) { /* more than its window (a shared queue lets it) */
            PX_TP_LOG(PX_LOG_WARN, "rdma: the peer sent over its window of %u", c->opts.rq);
            return px_tpc_fail(&c->base, -PX_EPROTO);
        }
        c->rxq[(c->rxq_head + c->rxq_n++) % c->nrecv] = (rdma_rxent){.buf = buf, .len = len};
        return 0;
    }
}

/* The `more` hint: DATA frames queued behind this one, up to an RTS (whose
 * data is not here yet). */
static uint32_t count_more(px_tp_conn *pc)
{
    rdma_conn *c = CONN(pc);
    uint32_t n = 0;
    while (n < c->rxq_n && n < 255) {
        const rdma_rxent *e = &c->rxq[(c->rxq_head + n) % c->nrecv];
        if (rdma_rbuf(c, e->buf)[0] != RW_DATA)
            break;
        n++;
    }
    return n;
}

/* The frame header behind the transport header, checked. 0 or -1 (failed). */
static int frame_of(rdma_conn *c, const rdma_rxent *e, px_frame_hdr *h)
{
    const uint8_t *f = rdma_rbuf(c, e->buf) + RDMA_WIRE_HDR;
    uint32_t flen = e->len - RDMA_WIRE_HDR;
    int rc = flen < PX_FRAME_HDR_LEN
                 ? -PX_EPROTO
                 : px_frame_decode(f, PX_FRAME_HDR_LEN, &rdma_host(c)->limits, h);
    if (rc)
        return px_tpc_fail(&c->base, rc);
    return 0;
}

static int deliver_data(rdma_conn *c, const rdma_rxent *e)
{
    px_frame_hdr h;
    if (frame_of(c, e, &h) < 0)
        return -1;
    if (h.ext_len || e->len - RDMA_WIRE_HDR != px_frame_len(&h))
        return px_tpc_fail(&c->base, -PX_EPROTO);
    const uint8_t *app = rdma_rbuf(c, e->buf) + RDMA_WIRE_HDR + PX_FRAME_HDR_LEN;
    const uint8_t *data = app + h.hdr_len;
    px_tp_rx rx = {.hdr = h, .app_hdr = app, .data = data};
    c->n_eager_rx++;
    if (h.data_len > rdma_host(c)->inline_threshold) {
        int declined;
        if (px_tpc_rx_assign(&c->base, &rx, &declined) < 0)
            return -1;
        if (!declined) {
            uint32_t idx = 0;
            size_t off = 0;
            px_iov_put(rx.dst, rx.dst_count, &idx, &off, data, h.data_len);
            rx.data = NULL;
        }
    }
    if (rx.data) {
        rx.dst = NULL;
        rx.dst_count = 0;
    }
    rx.more = px_tpc_more(&c->base, count_more);
    if (px_tpc_frame(&c->base, &rx) < 0)
        return -1;
    return repost(c, e->buf, 1);
}

/* ---- rendezvous ------------------------------------------------------------------- */

/* Read the descriptor of an RTS into c->rdv. 0, or -PX_EPROTO. */
static int parse_desc(rdma_conn *c, const px_frame_hdr *h, const uint8_t *ext)
{
    rdma_rdv_in *r = &c->rdv;
    if (h->ext_len < 8)
        return -PX_EPROTO;
    uint32_t n = get32(ext);
    if (n < 1 || n > RDMA_RDV_MAX_SEG || h->ext_len != 8 + 16 * n)
        return -PX_EPROTO;
    r->nseg = n;
    r->seq = get32(ext + 4);
    uint64_t sum = 0;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *s = ext + 8 + 16 * i;
        r->raddr[i] = get64(s);
        r->rlen[i] = get32(s + 8);
        r->rkey[i] = get32(s + 12);
        if (!r->rlen[i])
            return -PX_EPROTO;
        sum += r->rlen[i];
    }
    return sum == h->data_len ? 0 : -PX_EPROTO;
}

static int dst_registered(const rdma_conn *c, const px_tp_rx *rx)
{
    for (uint32_t i = 0; i < rx->dst_count; i++)
        if (rx->dst[i].len && !rdma_mr_of(c, rx->dst[i].mr))
            return 0;
    return 1;
}

/* Post READs while the device allows more outstanding. */
static void rdv_pump(rdma_conn *c)
{
    rdma_rdv_in *r = &c->rdv;
    const px_iov *ld = r->bounce ? &r->land : r->rx.dst;
    while (r->left && r->reads_out < c->max_reads && c->nswr < c->opts.sq + c->max_reads) {
        while (r->loff == ld[r->lidx].len) {
            r->lidx++;
            r->loff = 0;
        }
        uint64_t n = r->rlen[r->rseg] - r->roff;
        if (n > ld[r->lidx].len - r->loff)
            n = ld[r->lidx].len - r->loff;
        if (n > RDMA_READ_MAX)
            n = RDMA_READ_MAX;
        uint32_t lkey = r->bounce ? r->bounce->mr->lkey : rdma_mr_of(c, ld[r->lidx].mr)->lkey;
        rdma_tx_read(c, (uintptr_t)ld[r->lidx].base + r->loff, lkey, r->raddr[r->rseg] + r->roff,
                     r->rkey[r->rseg], (uint32_t)n, 1);
        r->reads_out++;
        r->left -= n;
        r->loff += n;
        r->roff += n;
        if (r->roff == r->rlen[r->rseg]) {
            r->rseg++;
            r->roff = 0;
        }
    }
}

static int use_bounce(rdma_conn *c)
{
    rdma_rdv_in *r = &c->rdv;
    r->bounce = rdma_pool_get(c->tp, c->dev, r->rx.hdr.data_len);
    if (!r->bounce)
        return px_tpc_fail(&c->base, -PX_ENOMEM);
    r->land = (px_iov){.base = r->bounce->addr, .len = r->rx.hdr.data_len};
    return 0;
}

static int start_rdv(rdma_conn *c, const rdma_rxent *e)
{
    px_frame_hdr h;
    if (frame_of(c, e, &h) < 0)
        return -1;
    const uint8_t *ext = rdma_rbuf(c, e->buf) + RDMA_WIRE_HDR + PX_FRAME_HDR_LEN;
    if (!h.data_len ||
        e->len - RDMA_WIRE_HDR != (uint64_t)PX_FRAME_HDR_LEN + h.ext_len + h.hdr_len ||
        parse_desc(c, &h, ext) < 0) {
        PX_TP_LOG(PX_LOG_WARN, "rdma: a malformed rendezvous request from the peer");
        return px_tpc_fail(&c->base, -PX_EPROTO);
    }
    rdma_rdv_in *r = &c->rdv;
    const uint8_t *app = ext + h.ext_len;
    h.ext_len = 0; /* the descriptor is ours, not the owner's */
    r->rx = (px_tp_rx){.hdr = h, .app_hdr = app};
    r->ent = *e;
    r->active = 1;
    r->rseg = r->lidx = 0;
    r->roff = r->loff = 0;
    r->left = h.data_len;
    r->reads_out = 0;
    r->bounce = NULL;
    int declined = 1;
    if (h.data_len > rdma_host(c)->inline_threshold &&
        px_tpc_rx_assign(&c->base, &r->rx, &declined) < 0)
        return -1;
    r->own = declined;
    if ((declined || !dst_registered(c, &r->rx)) && use_bounce(c) < 0)
        return -1;
    rdv_pump(c);
    return 0;
}

static int finish_rdv(rdma_conn *c)
{
    rdma_rdv_in *r = &c->rdv;
    px_tp_rx rx = r->rx;
    rdma_buf *b = r->bounce;
    if (r->own) {
        rx.data = b->addr;
        rx.dst = NULL;
        rx.dst_count = 0;
    } else {
        if (b) {
            uint32_t idx = 0;
            size_t off = 0;
            px_iov_put(rx.dst, rx.dst_count, &idx, &off, b->addr, rx.hdr.data_len);
        }
        rx.data = NULL;
    }
    rdma_rxent ent = r->ent;
    r->active = 0;
    r->bounce = NULL;
    c->n_rdv_rx++;
    if (rdma_tx_done_msg(c, r->seq) < 0) {
        rdma_pool_put(c->tp, b);
        return -1;
    }
    rx.more = px_tpc_more(&c->base, count_more);
    /* Delivered in place from the bounce buffer: a send the owner holds
     * past the upcall must copy from it first (the lending rule). */
    rdma_tp *tp = c->tp; /* the conn may be gone after the upcall */
    int own = r->own;
    if (own)
        px_tpc_lendable(&c->base, 1, b->addr, rx.hdr.data_len);
    int rc = px_tpc_frame(&c->base, &rx);
    if (rc == 0 && own)
        px_tpc_lendable(&c->base, 1, NULL, 0);
    rdma_pool_put(tp, b); /* in-place data was lent for the upcall only */
    if (rc < 0 || repost(c, ent.buf, 1) < 0)
        return -1;
    return rdma_rx_deliver(c);
}

int rdma_rx_read_done(rdma_conn *c)
{
    rdma_rdv_in *r = &c->rdv;
    if (!r->active || !r->reads_out)
        return px_tpc_fail(&c->base, -PX_EIO);
    r->reads_out--;
    if (r->left) {
        rdv_pump(c);
        return 0;
    }
    return r->reads_out ? 0 : finish_rdv(c);
}

void rdma_rx_drop(rdma_conn *c)
{
    if (c->rdv.active) {
        rdma_pool_put(c->tp, c->rdv.bounce);
        c->rdv.bounce = NULL;
        c->rdv.active = 0;
    }
}

/* ---- delivery ----------------------------------------------------------------------- */

int rdma_rx_deliver(rdma_conn *c)
{
    if (c->in_rx || c->state != RC_OPEN || c->base.closed)
        return 0;
    c->in_rx = 1;
    while (c->rxq_n && !c->rx_paused && !c->rdv.active) {
        rdma_rxent e = c->rxq[c->rxq_head];
        c->rxq_head = (c->rxq_head + 1) % c->nrecv;
        c->rxq_n--;
        int rc = rdma_rbuf(c, e.buf)[0] == RW_DATA ? deliver_data(c, &e) : start_rdv(c, &e);
        if (rc < 0)
            return -1; /* gone: hands off */
    }
    c->in_rx = 0;
    return 0;
}

int rdma_rx_resume(px_tp_conn *pc)
{
    rdma_conn *c = CONN(pc);
    if (pc->closed || c->state != RC_OPEN)
        return 0;
    if (rdma_rx_deliver(c) < 0)
        return -1;
    if (c->disc_pending && !c->rxq_n && !pc->closed)
        return px_tpc_disconnect(pc, c->disc_pending);
    return 0;
}
