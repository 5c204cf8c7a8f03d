/* Send: a frame goes straight from the caller's buffers into the tx ring
 * inside send(). A small one is copied into one record and is done at
 * once (PX_TP_SENT); records become visible in groups (tx_publish_soon:
 * one head store and one fence for up to SHM_PUBLISH_BATCH of them). A
 * large one is written as a CMA or pool descriptor and stays in the
 * chassis's send FIFO (PX_TP_QUEUED) until the receiver acknowledges it
 * has read the caller's memory; to a receiver that busy-polls, or where
 * CMA is not permitted, its data follows in chunks as the ring frees up
 * (the conn's `partial` send, the FIFO's tail). When the ring has no room the send is
 * refused with -PX_EAGAIN; the consumer writes our eventfd once it frees
 * room (we advertised prod_wait), and the room upcall follows.
 *
 * The lending rule: a large send made from our receive memory would be
 * read by the peer after we reuse that memory, so it is copied aside
 * first (px_tpc_bounce). A small one is copied into the ring anyway.
 *
 * Per-request private state (the transport owns these while it holds the
 * request):
 *   tp_priv[0]  mode (low byte: TX_*), TX_HEAD_DONE
 *   tp_priv[1]  chunked: data segment index of the cursor
 *   tp_priv[2]  chunked: offset in that segment
 *   tp_priv[3]  CMA/pool: the ack count that completes it (0: none needed)
 *   tp_done     chunked: data bytes written
 */
#include <sched.h>
#include <string.h>
#include <time.h>

#include "transports/shm/shm.h"
#include "transports/shm/shm_tx.h"

/* Publish sealed records; wake the consumer if it said it sleeps. */
void shm_tx_publish(shm_conn *c)
{
    c->tx_unpublished = 0;
    shm_ring_publish(&c->tx);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    uint32_t *f = &c->tx.ctl->cons_sleep;
    if (__atomic_load_n(f, __ATOMIC_RELAXED) && __atomic_exchange_n(f, 0, __ATOMIC_ACQ_REL))
        shm_wake_peer(c);
}

/* A small record just written. The first of a loop pass is published at
 * once, and so is any while the consumer sleeps: the consumer starts on it
 * while we write the next (holding it to the end of the pass would
 * serialise the two sides, and cost a lone round trip its latency). The
 * others are published together, by the flush or once SHM_PUBLISH_BATCH
 * have gathered (a pass may write thousands, and the consumer would wait
 * idle for all of them): one head store and one fence for the lot, and
 * the consumer's copy of the line moves once. The sleep flag is read
 * without the fence: the next publish makes the full check, so a consumer
 * falling asleep meanwhile is still woken. */
static void tx_publish_soon(shm_conn *c)
{
    if (!c->tx_pass_published || ++c->tx_unpublished >= SHM_PUBLISH_BATCH ||
        __atomic_load_n(&c->tx.ctl->cons_sleep, __ATOMIC_RELAXED)) {
        shm_tx_publish(c);
        c->tx_pass_published = 1;
    }
    px_tpc_mark_dirty(&c->base); /* the flush publishes the rest, ends the pass */
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
    px_tp_send_copy_body(s, p + PX_FRAME_HDR_LEN);
    shm_ring_commit(&c->tx, len, SHM_REC_FRAME);
    c->stats.tx_inline++;
    return 1;
}

/* Room may have come since we last looked: the consumer moved its tail. */
static int tail_moved(const shm_conn *c)
{
    return __atomic_load_n(&c->tx.ctl->tail, __ATOMIC_ACQUIRE) != c->tx.cached;
}

/* No room: ask the consumer to wake us, and have the owner wait for the
 * room upcall. If room came while we armed, 1: try again now. */
static int refuse_for_room(shm_conn *c)
{
    if (c->tx_unpublished) /* the consumer frees room only from what it sees */
        shm_tx_publish(c);
    if (shm_tx_arm_wait(c))
        return 1;
    px_tpc_mark_hot(&c->base); /* the prepare hook keeps the wake-up armed */
    return px_tpc_refuse(&c->base);
}

/* A large send: a CMA/pool descriptor (queued until acked), or a chunked
 * frame (queued; maybe `partial`). */
static int write_bulk(shm_conn *c, px_tp_send *s)
{
    if (!s->tp_bounce && px_tpc_points_into_lent(&c->base, s)) {
        int rc = px_tpc_bounce(s);
        if (rc)
            return rc;
        c->stats.tx_bounced++;
    }
    s->tp_priv[0] = TX_BULK;
    int rc = shm_bulk_write(c, s);
    if (rc < 0) {
        px_tpc_unbounce(s); /* refused: the caller's again */
        return rc;
    }
    px_tpc_queue(&c->base, s);
    if (rc == 0)
        c->partial = s;
    shm_tx_publish(c);
    /* It finishes on the peer's ack or on room for the rest: a conn that
     * had cooled must arm that wake-up before the loop sleeps (the prepare
     * hook does, for hot conns), or the completion waits for other news. */
    px_tpc_mark_hot(&c->base);
    return PX_TP_QUEUED;
}

int shm_tx_send(px_tp_conn *pc, px_tp_send *s)
{
    shm_conn *c = (shm_conn *)(void *)pc;
    if (pc->closed)
        return -PX_ECLOSED;
    if (c->state == SHM_DEAD)
        return -PX_EDISCONNECTED;
    if (c->state != SHM_OPEN)
        return -PX_ENOTCONN;
    int rc = px_tp_send_check(s, SHM_MAX_IOV);
    if (rc)
        return rc;
    if (c->partial) /* frames leave in order: behind the one being written */
        return px_tpc_refuse(pc);
    int small = fits_inline(c, s);
    if (!small) {
        /* Only a send the transport keeps uses these: a small one is the
         * caller's again when send() returns. */
        s->tp_done = 0;
        memset(s->tp_priv, 0, sizeof s->tp_priv);
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        rc = small ? write_inline(c, s) : write_bulk(c, s);
        if (rc == PX_TP_QUEUED && !small)
            return PX_TP_QUEUED;
        if (rc == 1) {
            tx_publish_soon(c);
            return PX_TP_SENT;
        }
        if (rc != -PX_EAGAIN) {
            if (rc < 0 && rc != -PX_ENOMEM)
                px_tpc_defer(pc, PX_TP_EV_ERROR, rc); /* the ring is corrupt */
            return rc;
        }
        if (refuse_for_room(c) != 1)
            return -PX_EAGAIN;
    }
    return px_tpc_refuse(pc);
}

/* Validate and take the peer's CMA ack count. */
static int refresh_acked(shm_conn *c)
{
    if (c->cma_acked == c->cma_sent)
        return 0;
    uint64_t a = shm_ack_count(__atomic_load_n(&c->tx.ctl->acked, __ATOMIC_ACQUIRE));
    if (a < c->cma_acked || a > c->cma_sent)
        return -PX_EPROTO;
    c->cma_acked = a;
    return 0;
}

/* A queued send is finished once it is all in the ring and, for a CMA or
 * pool descriptor, acked. */
static int finished(const shm_conn *c, const px_tp_send *s)
{
    return s != c->partial && s->tp_priv[3] <= c->cma_acked;
}

int shm_tx_complete(shm_conn *c)
{
    int rc = refresh_acked(c);
    if (rc)
        return px_tpc_fail(&c->base, rc);
    while (c->base.sends.head && finished(c, c->base.sends.head))
        if (px_tpc_complete_head(&c->base, 0) < 0)
            return -1;
    return 0;
}

int shm_tx_flush(px_tp_conn *pc)
{
    shm_conn *c = (shm_conn *)(void *)pc;
    if (c->state != SHM_OPEN)
        return 0;
    if (c->tx_unpublished)
        shm_tx_publish(c);
    c->tx_pass_published = 0;
    if (c->partial) {
        int rc = shm_bulk_write(c, c->partial);
        if (rc < 0 && rc != -PX_EAGAIN)
            return px_tpc_fail(pc, rc);
        if (rc == 1)
            c->partial = NULL;
        shm_tx_publish(c);
        if (c->partial && shm_tx_arm_wait(c))
            px_tpc_mark_dirty(pc); /* room came meanwhile: go on from the loop */
    }
    if (shm_tx_complete(c) < 0)
        return -1;
    if (!c->partial && pc->want_room && tail_moved(c))
        return px_tpc_room(pc);
    return 0;
}

int shm_tx_waiting(const shm_conn *c)
{
    const px_tp_send *tail = c->base.sends.tail;
    return c->partial || c->base.want_room || (tail && tail->tp_priv[3] > c->cma_acked);
}

int shm_tx_arm_wait(shm_conn *c)
{
    shm_ring_ctl *ctl = c->tx.ctl;
    __atomic_store_n(&ctl->prod_wait, 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if ((c->partial || c->base.want_room) && tail_moved(c))
        return 1;
    if (c->cma_sent != c->cma_acked &&
        shm_ack_count(__atomic_load_n(&ctl->acked, __ATOMIC_ACQUIRE)) != c->cma_acked) {
        px_tpc_mark_dirty(&c->base);
        return 1;
    }
    return 0;
}

/* How long close waits for a peer in the middle of reading our memory. A
 * peer stopped there longer gets the gate closed under it (see the ack
 * word in shm_ring.h): it drops what it read. */
#define GATE_WAIT_NS 200000000ull

void shm_tx_close_gate(shm_conn *c)
{
    if (!c->tx.ctl || c->cma_sent == c->cma_acked)
        return; /* no ring yet, or nothing of ours left to read */
    uint64_t *word = &c->tx.ctl->acked;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        uint64_t w = __atomic_load_n(word, __ATOMIC_ACQUIRE);
        unsigned gate = (unsigned)(w & SHM_GATE_MASK);
        if (gate == SHM_GATE_CLOSED)
            return;
        clock_gettime(CLOCK_MONOTONIC, &t);
        uint64_t waited = (uint64_t)(t.tv_sec - t0.tv_sec) * 1000000000ull + (uint64_t)t.tv_nsec -
                          (uint64_t)t0.tv_nsec;
        if (gate == SHM_GATE_OPEN || waited > GATE_WAIT_NS) {
            uint64_t closed = shm_ack_word(shm_ack_count(w), SHM_GATE_CLOSED);
            if (__atomic_compare_exchange_n(word, &w, closed, 0, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE))
                return;
            continue;
        }
        sched_yield(); /* a read in progress: it ends in a copy's time */
    }
}

void shm_tx_close(shm_conn *c, px_tp_fifo *unfinished)
{
    /* Frames sent in this loop pass were reported sent: the peer sees them. */
    if (c->tx_unpublished && c->state == SHM_OPEN)
        shm_tx_publish(c);
    shm_tx_close_gate(c); /* the peer may read on even if we failed the link */
    /* What the peer has read is finished: it goes back with status 0. */
    (void)refresh_acked(c);
    px_tp_fifo *done = unfinished;
    while (done && c->base.sends.head && finished(c, c->base.sends.head)) {
        px_tp_send *s = px_tp_fifo_pop(&c->base.sends);
        px_tpc_unbounce(s);
        s->status = 0;
        px_tp_fifo_push(done, s);
    }
    c->partial = NULL;
}
