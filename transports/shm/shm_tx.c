/* Send: frames are written straight from the caller's buffers into the tx
 * ring (one copy) inside send() when the ring has room and nothing is
 * queued ahead; otherwise the request waits in a FIFO linked through
 * tp_next (no allocation) and is written when the consumer frees room
 * (it writes our eventfd if we advertised prod_wait). SEND_COMPLETE is
 * always delivered later, from the loop hooks; for a CMA frame only once
 * the receiver has acknowledged reading the caller's buffers.
 *
 * Per-request private state (the transport owns these while it holds the
 * request):
 *   tp_priv[0]  mode (low byte: TX_*), TX_HEAD_DONE, TX_PINNED
 *   tp_priv[1]  chunked: data segment index of the cursor; inline and
 *               TX_BOUNCED: the copied body (app header + data)
 *   tp_priv[2]  chunked: offset in that segment
 *   tp_priv[3]  CMA: the ack count that completes it (0: none needed)
 *   tp_done     chunked: data bytes written
 */
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "plexus/error.h"
#include "transports/shm/shm.h"
#include "transports/shm/shm_tx.h"

static void fifo_push(px_tp_send **head, px_tp_send **tail, px_tp_send *s)
{
    s->tp_next = NULL;
    if (*tail)
        (*tail)->tp_next = s;
    else
        *head = s;
    *tail = s;
}

static px_tp_send *fifo_pop(px_tp_send **head, px_tp_send **tail)
{
    px_tp_send *s = *head;
    *head = s->tp_next;
    if (!*head)
        *tail = NULL;
    s->tp_next = NULL;
    return s;
}

/* Publish sealed records; wake the consumer if it said it sleeps. */
void shm_tx_publish(shm_conn *c)
{
    shm_ring_publish(&c->tx);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    uint32_t *f = &c->tx.ctl->cons_sleep;
    if (__atomic_load_n(f, __ATOMIC_RELAXED) && __atomic_exchange_n(f, 0, __ATOMIC_ACQ_REL))
        shm_wake_peer(c);
}

static uint32_t inline_len(const px_tp_send *s)
{
    return PX_FRAME_HDR_LEN + s->hdr.hdr_len + s->hdr.data_len;
}

/* Small enough to travel as one record: at most a quarter of the ring, so
 * several are in flight at once. */
static int fits_inline(const shm_conn *c, const px_tp_send *s)
{
    return (uint64_t)PX_FRAME_HDR_LEN + s->hdr.hdr_len + s->hdr.data_len + SHM_REC_HDR <=
           c->tx.size / 4;
}

static int write_inline(shm_conn *c, px_tp_send *s)
{
    uint32_t len = inline_len(s);
    uint8_t *p;
    int rc = shm_ring_reserve(&c->tx, len, &p);
    if (rc)
        return rc;
    px_frame_encode(&s->hdr, p);
    p += PX_FRAME_HDR_LEN;
    if (s->tp_priv[0] & TX_BOUNCED)
        memcpy(p, (const void *)(uintptr_t)s->tp_priv[1], len - PX_FRAME_HDR_LEN);
    else
        px_tp_send_copy_body(s, p);
    shm_ring_commit(&c->tx, len, SHM_REC_FRAME);
    c->stats.tx_inline++;
    return 1;
}

/* 1: all of it is in the ring; 0: part of it; -PX_EAGAIN: none of it. */
static int write_one(shm_conn *c, px_tp_send *s)
{
    if ((s->tp_priv[0] & TX_MODE) == 0)
        s->tp_priv[0] |= fits_inline(c, s) ? TX_INLINE : TX_BULK;
    if ((s->tp_priv[0] & TX_MODE) == TX_INLINE)
        return write_inline(c, s);
    return shm_bulk_write(c, s);
}

/* Does the send point into memory we may reuse once the upcall returns
 * (the rx ring, the prefix scratch, our own rx buffer)? */
static int points_into_rx(const shm_conn *c, const px_tp_send *s)
{
    size_t scratch = PX_FRAME_HDR_LEN + PX_FRAME_MAX_EXT + c->tp->host.limits.max_hdr;
    return px_tp_send_points_into(s, c->rx.data, c->rx.size) ||
           px_tp_send_points_into(s, c->scratch, scratch) ||
           px_tp_send_points_into(s, c->own, c->own_cap);
}

/* Copy an inline frame's body aside so it no longer depends on receive
 * memory. Returns 0, or -PX_ENOMEM. */
static int bounce(px_tp_send *s)
{
    size_t body = (size_t)s->hdr.hdr_len + s->hdr.data_len;
    uint8_t *b = malloc(body ? body : 1);
    if (!b)
        return -PX_ENOMEM;
    px_tp_send_copy_body(s, b);
    s->tp_priv[1] = (uintptr_t)b;
    s->tp_priv[0] |= TX_BOUNCED;
    return 0;
}

static void bounce_free(px_tp_send *s)
{
    if (!(s->tp_priv[0] & TX_BOUNCED))
        return;
    free((void *)(uintptr_t)s->tp_priv[1]);
    s->tp_priv[0] &= ~(uint64_t)TX_BOUNCED;
}

/* A request that could not be written at once and points into our receive
 * memory (typically a response echoing an in-place request). An inline one
 * is copied aside: holding the receive ring until it leaves would deadlock
 * two peers that both echo into full rings. A large one (rare: in-place
 * deliveries are small) holds the rx ring until it has been written. */
static void maybe_pin(shm_conn *c, px_tp_send *s)
{
    if (!points_into_rx(c, s))
        return;
    if ((s->tp_priv[0] & TX_MODE) == 0)
        s->tp_priv[0] |= fits_inline(c, s) ? TX_INLINE : TX_BULK;
    if ((s->tp_priv[0] & TX_MODE) == TX_INLINE && bounce(s) == 0) {
        c->stats.tx_bounced++;
        return;
    }
    s->tp_priv[0] |= TX_PINNED;
    c->rx_pins++;
}

static void unpin(shm_conn *c, px_tp_send *s)
{
    if (!(s->tp_priv[0] & TX_PINNED))
        return;
    s->tp_priv[0] &= ~(uint64_t)TX_PINNED;
    if (--c->rx_pins == 0)
        shm_rx_unpin(c);
}

static void to_done(shm_conn *c, px_tp_send *s)
{
    /* A CMA frame is read from the caller's memory until the peer acks it:
     * one made from our receive memory keeps that memory (the pin) until
     * then, or the next frame received there would overwrite what the
     * peer is still to read. */
    if (!s->tp_priv[3])
        unpin(c, s);
    bounce_free(s);
    fifo_push(&c->done, &c->done_tail, s);
    shm_mark_work(c);
    /* Waiting for an ack: the prepare hook must arm prod_wait before the
     * loop sleeps, which it does for awake conns only. */
    if (s->tp_priv[3])
        shm_mark_hot(c);
}

int shm_tx_flush(shm_conn *c)
{
    int wrote = 0;
    for (int round = 0; c->txq && round < 2; round++) {
        while (c->txq) {
            int rc = write_one(c, c->txq);
            if (rc < 0 && rc != -PX_EAGAIN) {
                if (wrote)
                    shm_tx_publish(c);
                return shm_fail(c, rc);
            }
            if (rc == 1 || rc == 0)
                wrote = 1;
            if (rc != 1)
                break;
            to_done(c, fifo_pop(&c->txq, &c->txq_tail));
        }
        if (wrote)
            shm_tx_publish(c);
        /* Out of room: ask to be woken; if room came meanwhile, go on. */
        if (c->txq && !shm_tx_arm_wait(c))
            break;
    }
    return 0;
}

/* Validate and take the peer's CMA ack count. */
static int refresh_acked(shm_conn *c)
{
    if (c->cma_acked == c->cma_sent)
        return 0;
    uint64_t a = __atomic_load_n(&c->tx.ctl->acked, __ATOMIC_ACQUIRE);
    if (a < c->cma_acked || a > c->cma_sent)
        return -PX_EPROTO;
    c->cma_acked = a;
    return 0;
}

int shm_tx_complete(shm_conn *c)
{
    int rc = refresh_acked(c);
    if (rc)
        return shm_fail(c, rc);
    while (c->done && c->done->tp_priv[3] <= c->cma_acked) {
        px_tp_send *s = fifo_pop(&c->done, &c->done_tail);
        unpin(c, s);
        s->status = 0;
        if (shm_upcall(c, PX_TP_EV_SEND_COMPLETE, s, NULL) < 0)
            return -1;
    }
    return 0;
}

int shm_tx_fail_all(shm_conn *c, int status)
{
    (void)refresh_acked(c); /* best effort: what was read is complete */
    while (c->done) {
        px_tp_send *s = fifo_pop(&c->done, &c->done_tail);
        s->status = s->tp_priv[3] <= c->cma_acked ? 0 : status;
        if (shm_upcall(c, PX_TP_EV_SEND_COMPLETE, s, NULL) < 0)
            return -1;
    }
    c->rx_pins = 0;
    while (c->txq) {
        px_tp_send *s = fifo_pop(&c->txq, &c->txq_tail);
        bounce_free(s);
        s->status = status;
        if (shm_upcall(c, PX_TP_EV_SEND_COMPLETE, s, NULL) < 0)
            return -1;
    }
    return 0;
}

int shm_tx_waiting(const shm_conn *c)
{
    return c->txq || (c->done && c->done_tail->tp_priv[3] > c->cma_acked);
}

int shm_tx_arm_wait(shm_conn *c)
{
    shm_ring_ctl *ctl = c->tx.ctl;
    __atomic_store_n(&ctl->prod_wait, 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (c->txq && __atomic_load_n(&ctl->tail, __ATOMIC_ACQUIRE) != c->tx.cached)
        return 1;
    if (c->cma_sent != c->cma_acked &&
        __atomic_load_n(&ctl->acked, __ATOMIC_ACQUIRE) != c->cma_acked) {
        shm_mark_work(c);
        return 1;
    }
    return 0;
}

int shm_tx_send(px_tp_conn *pc, px_tp_send *req)
{
    shm_conn *c = (shm_conn *)pc;
    if (c->closed || c->closing)
        return -PX_ECLOSED;
    if (c->state == SHM_PENDING || c->state == SHM_HANDSHAKE)
        return -PX_ENOTCONN;
    if (c->state == SHM_DEAD)
        return -PX_EDISCONNECTED;
    int rc = px_tp_send_check(req, SHM_MAX_IOV);
    if (rc)
        return rc;
    req->tp_next = NULL;
    req->tp_done = 0;
    req->status = 0;
    memset(req->tp_priv, 0, sizeof req->tp_priv);
    if (c->state == SHM_OPEN && !c->txq) {
        rc = write_one(c, req);
        if (rc >= 0)
            shm_tx_publish(c);
        if (rc == 1) {
            if (req->tp_priv[3]) /* CMA: read from its memory until acked */
                maybe_pin(c, req);
            to_done(c, req);
            return 0;
        }
        if (rc < 0 && rc != -PX_EAGAIN)
            shm_defer_fail(c, rc); /* the request fails with the conn */
    }
    fifo_push(&c->txq, &c->txq_tail, req);
    maybe_pin(c, req);
    if (c->state == SHM_OPEN) {
        shm_mark_work(c);
        shm_mark_hot(c);
    }
    return 0;
}
