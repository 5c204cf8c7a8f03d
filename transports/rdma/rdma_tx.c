/* Send: eager SENDs from registered slots, rendezvous requests, credits,
 * and the post list the flush hands to the device in one call.
 *
 * A frame that fits the peer's receive buffer is copied into the next send
 * slot and is the caller's again at once (PX_TP_SENT): that one copy is
 * cheaper than registering small buffers, and it lets the SEND go inline
 * when the QP allows. A larger one goes by rendezvous: a request (RTS)
 * naming the data's segments and remote keys leaves by SEND, the peer
 * RDMA-READs the data straight into its destination and answers DONE, and
 * only then is the send complete (PX_TP_QUEUED, in the chassis's FIFO). Data
 * in a registered region is read where it is; plain memory is copied once
 * into a registered bounce buffer first.
 *
 * Work requests are built as sends are made and posted by the flush at the
 * end of the loop iteration, receives first: one doorbell per pass. Only
 * one SEND in RDMA_SIGNAL asks for a completion (and the last of a batch
 * when slots run low), which frees every slot before it: sends on one QP
 * complete in order.
 */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include "transports/rdma/rdma.h"

static rdma_conn *CONN(px_tp_conn *p)
{
    return (rdma_conn *)(void *)p;
}

static uint32_t slots_free(const rdma_conn *c)
{
    return c->opts.sq - (uint32_t)(c->slot_seq - c->slot_done);
}

static void put_wire(uint8_t *p, unsigned kind, uint32_t aux)
{
    p[0] = (uint8_t)kind;
    p[1] = 0;
    p[2] = p[3] = 0; /* credits: filled in by the flush */
    uint32_t le = htole32(aux);
    memcpy(p + 4, &le, 4);
}

/* Can a send be taken now? Slots and credits, one of each kept for the
 * DONE of a rendezvous the peer may be sending us. */
static int can_send(const rdma_conn *c)
{
    return c->state == RC_OPEN && slots_free(c) >= 2 && c->peer_credits >= 2 &&
           c->nswr + 2 <= c->opts.sq + c->max_reads;
}

/* A refused sender may retry now only if a send would be taken. */
static int tx_room(rdma_conn *c)
{
    return can_send(c) ? px_tpc_room(&c->base) : 0;
}

/* Take the next slot for a SEND of `len` bytes already written there. */
static void queue_send(rdma_conn *c, uint32_t len)
{
    uint64_t seq = c->slot_seq++;
    struct ibv_sge *sg = &c->ssge[c->nswr];
    struct ibv_send_wr *wr = &c->swr[c->nswr++];
    *sg = (struct ibv_sge){
        .addr = (uintptr_t)rdma_slot(c, seq), .length = len, .lkey = c->mem_mr->lkey};
    *wr = (struct ibv_send_wr){
        .wr_id = WR_ID(WR_SEND, seq),
        .sg_list = sg,
        .num_sge = 1,
        .opcode = IBV_WR_SEND,
        .send_flags = len <= c->max_inline ? IBV_SEND_INLINE : 0,
    };
    px_tpc_mark_dirty(&c->base);
    px_tpc_mark_hot(&c->base); /* its completion (and the credits back) are polled */
}

void rdma_tx_read(rdma_conn *c, uint64_t laddr, uint32_t lkey, uint64_t raddr, uint32_t rkey,
                  uint32_t len, int signalled)
{
    struct ibv_sge *sg = &c->ssge[c->nswr];
    struct ibv_send_wr *wr = &c->swr[c->nswr++];
    *sg = (struct ibv_sge){.addr = laddr, .length = len, .lkey = lkey};
    *wr = (struct ibv_send_wr){
        .wr_id = WR_ID(WR_READ, 0),
        .sg_list = sg,
        .num_sge = 1,
        .opcode = IBV_WR_RDMA_READ,
        .send_flags = signalled ? IBV_SEND_SIGNALED : 0,
        .wr.rdma = {.remote_addr = raddr, .rkey = rkey},
    };
    px_tpc_mark_dirty(&c->base);
}

/* ---- eager ---------------------------------------------------------------------------- */

static int send_eager(rdma_conn *c, px_tp_send *s, uint32_t len)
{
    uint8_t *p = rdma_slot(c, c->slot_seq);
    put_wire(p, RW_DATA, 0);
    px_frame_encode(&s->hdr, p + RDMA_WIRE_HDR);
    px_tp_send_copy_body(s, p + RDMA_WIRE_HDR + PX_FRAME_HDR_LEN);
    c->peer_credits--;
    queue_send(c, len);
    c->n_eager_tx++;
    return PX_TP_SENT;
}

/* ---- rendezvous --------------------------------------------------------------------- */

/* The send's data as remote segments: where it is, when every segment
 * lies in a region registered with this device; else copied once into a
 * bounce buffer (kept in tp_priv[0] until DONE). Returns the count, or
 * -PX_ENOMEM. */
static int rdv_segments(rdma_conn *c, px_tp_send *s, uint64_t *addr, uint32_t *len, uint32_t *key)
{
    int direct = s->data_count <= RDMA_RDV_MAX_SEG;
    for (uint32_t i = 0; direct && i < s->data_count; i++)
        direct = rdma_mr_of(c, s->data[i].mr) != NULL && s->data[i].len <= UINT32_MAX;
    int n = 0;
    if (direct) {
        for (uint32_t i = 0; i < s->data_count; i++) {
            if (!s->data[i].len)
                continue;
            addr[n] = (uintptr_t)s->data[i].base;
            len[n] = (uint32_t)s->data[i].len;
            key[n] = rdma_mr_of(c, s->data[i].mr)->rkey;
            n++;
        }
        s->tp_priv[0] = 0;
        return n;
    }
    rdma_buf *b = rdma_pool_get(c->tp, c->dev, s->hdr.data_len);
    if (!b)
        return -PX_ENOMEM;
    size_t off = 0;
    for (uint32_t i = 0; i < s->data_count; i++) {
        memcpy(b->addr + off, s->data[i].base, s->data[i].len);
        off += s->data[i].len;
    }
    s->tp_priv[0] = (uintptr_t)b;
    addr[0] = (uintptr_t)b->addr;
    len[0] = s->hdr.data_len;
    key[0] = b->mr->rkey;
    c->n_bounced++;
    return 1;
}

static void put_desc(uint8_t *p, uint32_t seq, int n, const uint64_t *addr, const uint32_t *len,
                     const uint32_t *key)
{
    uint32_t v = htole32((uint32_t)n);
    memcpy(p, &v, 4);
    v = htole32(seq);
    memcpy(p + 4, &v, 4);
    for (int i = 0; i < n; i++) {
        uint8_t *e = p + 8 + 16 * i;
        uint64_t a = htole64(addr[i]);
        memcpy(e, &a, 8);
        v = htole32(len[i]);
        memcpy(e + 8, &v, 4);
        v = htole32(key[i]);
        memcpy(e + 12, &v, 4);
    }
}

static void release_bounce(rdma_conn *c, px_tp_send *s)
{
    if (s->tp_priv[0]) {
        rdma_pool_put(c->tp, (rdma_buf *)(uintptr_t)s->tp_priv[0]);
        s->tp_priv[0] = 0;
    }
}

static int send_rdv(rdma_conn *c, px_tp_send *s)
{
    uint64_t addr[RDMA_RDV_MAX_SEG];
    uint32_t len[RDMA_RDV_MAX_SEG], key[RDMA_RDV_MAX_SEG];
    uint32_t rts = RDMA_WIRE_HDR + PX_FRAME_HDR_LEN + 8 + 16 * RDMA_RDV_MAX_SEG + s->hdr.hdr_len;
    if (rts > c->peer_buf) {
        PX_TP_LOG(PX_LOG_WARN, "rdma: a %u-byte header does not fit the peer's %u-byte buffers",
                  s->hdr.hdr_len, c->peer_buf);
        return -PX_EMSGSIZE;
    }
    int n = rdv_segments(c, s, addr, len, key);
    if (n < 0)
        return n;
    uint32_t seq = c->rdv_seq++;
    s->tp_priv[1] = seq;
    s->hdr.ext_len = (uint16_t)(8 + 16 * n);
    uint8_t *p = rdma_slot(c, c->slot_seq);
    put_wire(p, RW_RTS, 0);
    px_frame_encode(&s->hdr, p + RDMA_WIRE_HDR);
    uint8_t *ext = p + RDMA_WIRE_HDR + PX_FRAME_HDR_LEN;
    put_desc(ext, seq, n, addr, len, key);
    if (s->hdr.hdr_len)
        memcpy(ext + s->hdr.ext_len, s->app_hdr, s->hdr.hdr_len);
    c->peer_credits--;
    queue_send(c, RDMA_WIRE_HDR + PX_FRAME_HDR_LEN + s->hdr.ext_len + s->hdr.hdr_len);
    px_tpc_queue(&c->base, s);
    c->n_rdv_tx++;
    return PX_TP_QUEUED;
}

int rdma_tx_send(px_tp_conn *pc, px_tp_send *s)
{
    rdma_conn *c = CONN(pc);
    if (pc->closed)
        return -PX_ECLOSED;
    if (c->state == RC_PENDING)
        return -PX_ENOTCONN;
    if (c->state == RC_DEAD)
        return -PX_EDISCONNECTED;
    int rc = px_tp_send_check(s, RDMA_MAX_IOV);
    if (rc)
        return rc;
    /* Not yet connected, out of slots or out of credits: room follows. */
    if (!can_send(c))
        return px_tpc_refuse(pc);
    uint64_t len = RDMA_WIRE_HDR + px_frame_len(&s->hdr);
    if (len <= c->peer_buf && len <= c->buf_len)
        return send_eager(c, s, (uint32_t)len);
    return send_rdv(c, s);
}

/* ---- what the peer tells us --------------------------------------------------------- */

int rdma_tx_slots_done(rdma_conn *c, uint64_t seq)
{
    if (seq >= c->slot_seq || seq < c->slot_done)
        return px_tpc_fail(&c->base, -PX_EIO); /* not ours: the device is confused */
    c->slot_done = seq + 1;
    return tx_room(c);
}

int rdma_tx_credits(rdma_conn *c, uint32_t n)
{
    if (!n)
        return 0;
    if ((uint64_t)c->peer_credits + n > c->peer_window) {
        PX_TP_LOG(PX_LOG_WARN, "rdma: the peer granted %u credits over its window of %u", n,
                  c->peer_window);
        return px_tpc_fail(&c->base, -PX_EPROTO);
    }
    c->peer_credits += n;
    if (c->dones_waiting)
        px_tpc_mark_dirty(&c->base);
    return tx_room(c);
}

int rdma_tx_rdv_done(rdma_conn *c, uint32_t seq)
{
    px_tp_send *s = c->base.sends.head;
    if (!s || (uint32_t)s->tp_priv[1] != seq) {
        PX_TP_LOG(PX_LOG_WARN,
                  "rdma: the peer finished rendezvous %u, which is not the next "
                  "one outstanding",
                  seq);
        return px_tpc_fail(&c->base, -PX_EPROTO);
    }
    release_bounce(c, s);
    return px_tpc_complete_head(&c->base, 0);
}

void rdma_tx_release_all(rdma_conn *c)
{
    for (px_tp_send *s = c->base.sends.head; s; s = s->tp_next)
        release_bounce(c, s);
}

int rdma_tx_done_msg(rdma_conn *c, uint32_t seq)
{
    if (c->dones_waiting >= c->nrecv)
        return px_tpc_fail(&c->base, -PX_EPROTO); /* more rendezvous than credits allow */
    c->dones[(c->dones_head + c->dones_waiting++) % c->nrecv] = seq;
    px_tpc_mark_dirty(&c->base);
    return 0;
}

/* ---- the flush ---------------------------------------------------------------------- */

int rdma_post_receives(rdma_conn *c)
{
    if (!c->nrepost)
        return 0;
    if (c->srq) {
        if (rdma_srq_post(c->srq, c->repost, c->nrepost) < 0)
            return c->state == RC_OPEN ? px_tpc_disconnect(&c->base, -PX_EIO) : -PX_EIO;
        c->nrepost = 0;
        c->owed += c->owed_next;
        c->owed_next = 0;
        return 0;
    }
    for (uint32_t i = 0; i < c->nrepost; i++) {
        uint32_t b = c->repost[i];
        c->rsge[i] = (struct ibv_sge){
            .addr = (uintptr_t)rdma_rbuf(c, b), .length = c->buf_len, .lkey = c->mem_mr->lkey};
        c->rwr[i] = (struct ibv_recv_wr){.wr_id = WR_ID(WR_RECV, b),
                                         .sg_list = &c->rsge[i],
                                         .num_sge = 1,
                                         .next = i + 1 < c->nrepost ? &c->rwr[i + 1] : NULL};
    }
    struct ibv_recv_wr *bad;
    int rc = ibv_post_recv(c->qp, c->rwr, &bad);
    if (rc) {
        PX_TP_LOG(PX_LOG_WARN, "rdma: posting %u receives failed: %s", c->nrepost, strerror(rc));
        return c->state == RC_OPEN ? px_tpc_disconnect(&c->base, rdma_err(rc)) : rdma_err(rc);
    }
    c->nrepost = 0;
    c->owed += c->owed_next;
    c->owed_next = 0;
    return 0;
}

/* DONEs waiting for a credit, then a CREDIT message when half the window
 * is owed and nothing else is leaving to carry it. */
static void queue_control(rdma_conn *c)
{
    while (c->dones_waiting && c->peer_credits > 0 && slots_free(c) > 0 &&
           c->nswr < c->opts.sq + c->max_reads) {
        uint32_t seq = c->dones[c->dones_head];
        c->dones_head = (c->dones_head + 1) % c->nrecv;
        c->dones_waiting--;
        put_wire(rdma_slot(c, c->slot_seq), RW_DONE, seq);
        c->peer_credits--;
        queue_send(c, RDMA_WIRE_HDR);
    }
    int sending = 0;
    for (uint32_t i = 0; i < c->nswr && !sending; i++)
        sending = c->swr[i].opcode == IBV_WR_SEND;
    uint32_t half = c->opts.rq / 2 ? c->opts.rq / 2 : 1;
    if (!sending && c->owed >= half && slots_free(c) > 0 &&
        c->nswr < c->opts.sq + c->max_reads + 2) {
        put_wire(rdma_slot(c, c->slot_seq), RW_CREDIT, 0);
        queue_send(c, RDMA_WIRE_HDR);
        c->n_credit_tx++;
    }
}

/* Credits owed ride on the first SEND; signal as the header says. */
static void finish_batch(rdma_conn *c)
{
    int first = 1, last_send = -1;
    for (uint32_t i = 0; i < c->nswr; i++) {
        struct ibv_send_wr *wr = &c->swr[i];
        wr->next = i + 1 < c->nswr ? &c->swr[i + 1] : NULL;
        if (wr->opcode != IBV_WR_SEND)
            continue;
        if (first && c->owed) {
            uint16_t le = htole16((uint16_t)(c->owed > 0xffff ? 0xffff : c->owed));
            memcpy((uint8_t *)(uintptr_t)wr->sg_list->addr + 2, &le, 2);
            c->owed -= le16toh(le);
        }
        first = 0;
        last_send = (int)i;
        if (++c->unsignalled >= RDMA_SIGNAL) {
            wr->send_flags |= IBV_SEND_SIGNALED;
            c->unsignalled = 0;
        }
    }
    uint32_t low = c->opts.sq / 2 < RDMA_SIGNAL ? c->opts.sq / 2 : RDMA_SIGNAL;
    if (last_send >= 0 && c->unsignalled && slots_free(c) <= low) {
        c->swr[last_send].send_flags |= IBV_SEND_SIGNALED;
        c->unsignalled = 0;
    }
}

int rdma_tx_flush(px_tp_conn *pc)
{
    rdma_conn *c = CONN(pc);
    if (c->state != RC_OPEN || pc->closed || !c->qp)
        return 0;
    if (rdma_post_receives(c) < 0)
        return -1;
    queue_control(c);
    if (!c->nswr)
        return 0;
    finish_batch(c);
    struct ibv_send_wr *bad;
    int rc = ibv_post_send(c->qp, c->swr, &bad);
    c->nswr = 0;
    if (rc) {
        PX_TP_LOG(PX_LOG_WARN, "rdma: posting sends failed: %s", strerror(rc));
        return px_tpc_disconnect(pc, rdma_err(rc));
    }
    return 0;
}
