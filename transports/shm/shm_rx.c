/* Receive: drain the rx ring a batch at a time, frames parsed and handed
 * up in place.
 *
 * A FRAME record is delivered pointing into the ring; when its data is
 * over inline_threshold the owner is first offered rx_assign and, if it
 * gives a buffer, the data is copied there. The record is released (tail
 * published) once the frame upcall returns: sends made inside it do not
 * point into the ring any more by then (send copies a small frame into
 * the other ring and copies a large one aside; a send the owner holds it
 * copies aside itself). Large frames (CMA, chunked) are in shm_bulk.c.
 */
#include <stdlib.h>
#include <string.h>

#include "transports/shm/shm.h"
#include "transports/shm/shm_rx.h"

void shm_rx_release(shm_conn *c)
{
    shm_ring_release(&c->rx);
}

void shm_rx_wake_producer(shm_conn *c)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    uint32_t *f = &c->rx.ctl->prod_wait;
    if (__atomic_load_n(f, __ATOMIC_RELAXED) && __atomic_exchange_n(f, 0, __ATOMIC_ACQ_REL))
        shm_wake_peer(c);
}

static uint32_t count_more(px_tp_conn *pc)
{
    shm_conn *c = (shm_conn *)(void *)pc;
    return shm_ring_count_after(&c->rx, c->rx.pos, 255);
}

uint32_t shm_rx_more(shm_conn *c)
{
    return px_tpc_more(&c->base, count_more);
}

/* Copy `len` bytes into the large frame's destination at the cursor. */
void shm_rx_dst_copy(shm_conn *c, const uint8_t *src, size_t len)
{
    c->rx_left -= len;
    px_iov_put(c->rxf.dst, c->rxf.dst_count, &c->dst_idx, &c->dst_off, src, len);
}

int shm_rx_own_reserve(shm_conn *c, size_t len)
{
    if (c->own_cap < len) {
        free(c->own);
        c->own = malloc(len ? len : 1);
        c->own_cap = c->own ? len : 0;
        px_tpc_lendable(&c->base, LEND_OWN, c->own, c->own_cap);
        if (!c->own)
            return -PX_ENOMEM;
    }
    c->own_iov = (px_iov){.base = c->own, .len = len};
    return 0;
}

void shm_rx_own_trim(shm_conn *c)
{
    /* Keep a modest fallback buffer for next time; give back a huge one
     * (no send points into it: see the top of this file). */
    if (c->own_cap > SHM_OWN_KEEP) {
        free(c->own);
        c->own = NULL;
        c->own_cap = 0;
        px_tpc_lendable(&c->base, LEND_OWN, NULL, 0);
    }
}

/* Ask the owner where a large frame's data goes. Sets c->rxf.dst (the
 * owner's, or our own buffer when declined, with *own set). 0, or -1 when
 * the conn is gone. */
int shm_rx_assign(shm_conn *c, int *own)
{
    /* Only a frame over the inline threshold is offered (a bulk record
     * may be smaller: the threshold is the owner's, the bulk size the
     * ring's, and a hostile peer sends what it likes); a smaller one is
     * delivered in place from our own buffer. */
    int declined = 1;
    if (c->rxf.hdr.data_len > shm_host(c)->inline_threshold &&
        px_tpc_rx_assign(&c->base, &c->rxf, &declined) < 0)
        return -1;
    *own = declined;
    if (declined) {
        if (shm_rx_own_reserve(c, c->rxf.hdr.data_len) < 0)
            return px_tpc_fail(&c->base, -PX_ENOMEM);
        c->rxf.dst = &c->own_iov;
        c->rxf.dst_count = 1;
    }
    c->dst_idx = 0;
    c->dst_off = 0;
    c->rx_left = c->rxf.hdr.data_len;
    return 0;
}

/* Deliver the frame in c->rx whose data is in its dst (own: our buffer). */
int shm_rx_deliver_assigned(shm_conn *c, int own)
{
    px_tp_rx rx = c->rxf;
    if (own) {
        rx.data = c->own;
        rx.dst = NULL;
        rx.dst_count = 0;
    } else {
        rx.data = NULL;
    }
    rx.more = shm_rx_more(c);
    if (px_tpc_frame(&c->base, &rx) < 0)
        return -1;
    shm_rx_own_trim(c);
    return 0;
}

/* A FRAME record: header, app header, data, all in the ring. */
static int rx_inline_frame(shm_conn *c, const px_frame_hdr *h, const uint8_t *p, uint32_t len)
{
    if (h->ext_len || len != PX_FRAME_HDR_LEN + (uint64_t)h->hdr_len + h->data_len)
        return px_tpc_fail(&c->base, -PX_EPROTO);
    const uint8_t *app = p + PX_FRAME_HDR_LEN, *data = app + h->hdr_len;
    shm_ring_consume(&c->rx, len);
    c->stats.rx_inline++;
    c->rxf = (px_tp_rx){.hdr = *h, .app_hdr = app};
    if (h->data_len > shm_host(c)->inline_threshold) {
        int declined;
        if (px_tpc_rx_assign(&c->base, &c->rxf, &declined) < 0)
            return -1;
        if (!declined) {
            c->dst_idx = 0;
            c->dst_off = 0;
            c->rx_left = h->data_len;
            shm_rx_dst_copy(c, data, h->data_len);
            if (shm_rx_deliver_assigned(c, 0) < 0)
                return -1;
            shm_rx_release(c);
            return 0;
        }
    }
    px_tp_rx rx = c->rxf;
    rx.data = data;
    rx.dst = NULL;
    rx.dst_count = 0;
    rx.more = shm_rx_more(c);
    if (px_tpc_frame(&c->base, &rx) < 0)
        return -1;
    shm_rx_release(c);
    return 0;
}

static int rx_record(shm_conn *c, uint16_t kind, const uint8_t *p, uint32_t len)
{
    if (kind == SHM_REC_CHUNK)
        return shm_bulk_rx_chunk(c, p, len);
    if (c->rx_mode != RX_RING)
        return px_tpc_fail(&c->base, -PX_EPROTO); /* a chunked frame was cut short */
    px_frame_hdr h;
    int rc = len < PX_FRAME_HDR_LEN
                 ? -PX_EPROTO
                 : px_frame_decode(p, PX_FRAME_HDR_LEN, &shm_host(c)->limits, &h);
    if (rc)
        return px_tpc_fail(&c->base, rc);
    switch (kind) {
    case SHM_REC_FRAME:
        return rx_inline_frame(c, &h, p, len);
    case SHM_REC_CMA:
        return shm_bulk_rx_cma(c, &h, p, len);
    case SHM_REC_CHUNKED:
        return shm_bulk_rx_chunked(c, &h, p, len);
    default:
        return px_tpc_fail(&c->base, -PX_EPROTO);
    }
}

/* Tell the producer whether we take records as they come (see
 * shm_ring_ctl.cons_polls); written only when it changes. */
static void say_polls(shm_conn *c)
{
    unsigned polls = c->tp->polling;
    if (c->rx_polls_said != polls) {
        c->rx_polls_said = polls;
        __atomic_store_n(&c->rx.ctl->cons_polls, polls, __ATOMIC_RELAXED);
    }
}

int shm_rx_drain(shm_conn *c)
{
    if (c->state != SHM_OPEN)
        return 0;
    say_polls(c);
    c->in_rx = 1;
    int n = 0;
    /* Paused, only the rest of a chunked frame in progress is taken. */
    while (n < SHM_RX_BATCH && (!c->rx_paused || c->rx_mode == RX_CHUNKS)) {
        uint16_t kind;
        const uint8_t *p;
        uint32_t len;
        int rc = shm_ring_peek(&c->rx, &kind, &p, &len);
        if (rc == 0)
            break;
        if (rc < 0) {
            c->in_rx = 0;
            return px_tpc_fail(&c->base, rc);
        }
        c->base.rx_bytes += SHM_REC_HDR + (uint64_t)len;
        if (rx_record(c, kind, p, len) < 0)
            return -1; /* gone: hands off */
        n++;
        if (kind == SHM_REC_CMA || kind == SHM_REC_CHUNKED) {
            /* A bulk move takes long: let the sends it answered complete
             * (and free their buffers) before the next one, rather than
             * after a whole batch of them. */
            if (shm_ring_nonempty(&c->rx))
                px_tpc_mark_dirty(&c->base); /* ...and come back from the loop */
            break;
        }
    }
    c->in_rx = 0;
    if (n) {
        shm_rx_wake_producer(c);
        if (n == SHM_RX_BATCH)
            px_tpc_mark_hot(&c->base);
    }
    return n;
}
