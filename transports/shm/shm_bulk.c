/* Large frames: those over a quarter of the ring.
 *
 * CMA (one copy): the sender writes a CMA record - the frame header with a
 * descriptor in its ext bytes (the (addr, len) of each of its data
 * segments), then the app header - and keeps the request. The receiver
 * asks the owner for a destination (RX_ASSIGN) and process_vm_readv()s the
 * sender's segments straight into it, then counts the record in the ack
 * word, which completes the send (the caller's buffers are not reusable
 * before). The word also gates the sender's memory, so that nothing is
 * read from it once the sender has closed (shm_ring.h). The receiver says in its control block
 * whether it may read the sender (cma_ok, decided by a probe at the rendezvous).
 *
 * Pool (one memcpy): when every data segment lies in px_mem_alloc()
 * memory, the record is the same CMA record, its descriptor flagged
 * DESC_POOL and naming (region id, offset, length) instead of addresses;
 * the receiver copies from its mapping of the region (shm_pool.c) and acks
 * like CMA. It needs no ptrace permission, so it is used whether or not
 * CMA is.
 *
 * Chunked (two copies, always possible): a CHUNKED record carries the
 * header and app header, then CHUNK records carry the data, written as the
 * ring frees up; the receiver copies each chunk into the destination.
 * Used when CMA is not permitted (EPERM: ptrace policy, another uid),
 * forced off (?cma=0, PX_SHM_CMA=0), or the send has too many segments
 * for a descriptor.
 *
 * Descriptor (ext bytes, host order: both ends are on this machine):
 *   u32 nseg, u32 flags, then nseg x {u64 addr, u64 len}
 *   (flags DESC_POOL: nseg x {u64 region id, u64 offset, u64 len}).
 */
#include <errno.h>
#include <string.h>
#include <sys/uio.h>

#include "transports/shm/shm.h"
#include "transports/shm/shm_rx.h"
#include "transports/shm/shm_tx.h"

#define DESC_HDR  8u
#define DESC_SEG  16u
#define CMA_IOV   1024 /* IOV_MAX */
#define POOL_SEG  24u
#define DESC_POOL 1u /* descriptor flag: segments name pool regions */

/* ---- sender ------------------------------------------------------------------ */

static uint32_t nonempty_segs(const px_tp_send *s)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->data_count; i++)
        n += s->data[i].len != 0;
    return n;
}

static int peer_polls(const shm_conn *c)
{
    return __atomic_load_n(&c->tx.ctl->cons_polls, __ATOMIC_RELAXED) != 0;
}

static int use_cma(shm_conn *c, const px_tp_send *s)
{
    if (c->cma_off || nonempty_segs(s) > SHM_CMA_MAX_SEG)
        return 0;
    if (__atomic_load_n(&c->tx.ctl->cma_ok, __ATOMIC_ACQUIRE) == SHM_CMA_YES)
        return 1;
    if (!c->cma_warned) {
        c->cma_warned = 1;
        PX_TP_LOG(PX_LOG_INFO,
                  "shm: conn %s pid %d: large messages go chunked through the ring (CMA %s)",
                  c->name, (int)c->peer_pid, c->cma_off ? "disabled" : "not permitted");
    }
    return 0;
}

/* A descriptor segment for one data segment: where the peer finds it. */
static void put_pool_seg(uint8_t *d, const px_iov *v)
{
    int fd;
    uint64_t base;
    (void)px_mr_fd(v->mr, &fd, &base); /* checked by shm_pool_tx_ready() */
    uint64_t off = base + (uint64_t)((uintptr_t)v->base - (uintptr_t)px_mr_addr(v->mr));
    shm_pool_seg sg = {px_mr_id(v->mr), off, v->len};
    memcpy(d, &sg, sizeof sg);
}

static void put_cma_seg(uint8_t *d, const px_iov *v)
{
    cma_seg sg = {(uint64_t)(uintptr_t)v->base, v->len};
    memcpy(d, &sg, sizeof sg);
}

/* The record for a large frame whose data the peer fetches itself: the
 * frame header, a descriptor (count and flags, then one segment per nonempty data
 * segment), the application header. Shared-pool segments name a region
 * and offset; CMA segments our address. */
static int write_desc(shm_conn *c, px_tp_send *s, uint32_t flags)
{
    int pool = flags == DESC_POOL;
    uint32_t seg_len = pool ? POOL_SEG : DESC_SEG;
    uint32_t nseg = nonempty_segs(s);
    uint32_t ext = DESC_HDR + nseg * seg_len;
    uint32_t len = PX_FRAME_HDR_LEN + ext + s->hdr.hdr_len;
    uint8_t *p;
    int rc = shm_ring_reserve(&c->tx, len, &p);
    if (rc)
        return rc;
    px_frame_hdr h = s->hdr;
    h.ext_len = (uint16_t)ext;
    px_frame_encode(&h, p);
    uint8_t *d = p + PX_FRAME_HDR_LEN;
    uint32_t hd[2] = {nseg, flags};
    memcpy(d, hd, sizeof hd);
    d += DESC_HDR;
    for (uint32_t i = 0; i < s->data_count; i++) {
        if (!s->data[i].len)
            continue;
        (pool ? put_pool_seg : put_cma_seg)(d, &s->data[i]);
        d += seg_len;
    }
    if (s->hdr.hdr_len)
        memcpy(d, s->app_hdr, s->hdr.hdr_len);
    shm_ring_commit(&c->tx, len, SHM_REC_CMA);
    s->tp_priv[3] = ++c->cma_sent;
    if (pool)
        c->stats.tx_pool++;
    else
        c->stats.tx_cma++;
    PX_TP_LOG(PX_LOG_DEBUG, "shm: %s: %u bytes %s", c->name, s->hdr.data_len,
              pool ? "from the shared pool" : "by CMA");
    return 1;
}

/* Copy up to `len` data bytes from the request's cursor to `out`. */
static void copy_from_cursor(px_tp_send *s, uint8_t *out, uint32_t len)
{
    uint64_t idx = s->tp_priv[1], off = s->tp_priv[2];
    while (len) {
        const px_iov *v = &s->data[idx];
        size_t k = v->len - off;
        if (k == 0) {
            idx++;
            off = 0;
            continue;
        }
        if (k > len)
            k = len;
        memcpy(out, (const uint8_t *)v->base + off, k);
        out += k;
        off += k;
        len -= (uint32_t)k;
    }
    s->tp_priv[1] = idx;
    s->tp_priv[2] = off;
}

static int write_chunked(shm_conn *c, px_tp_send *s)
{
    uint8_t *p;
    int rc;
    int progress = 0;
    if (!(s->tp_priv[0] & TX_HEAD_DONE)) {
        uint32_t len = PX_FRAME_HDR_LEN + s->hdr.hdr_len;
        rc = shm_ring_reserve(&c->tx, len, &p);
        if (rc)
            return rc;
        px_frame_encode(&s->hdr, p);
        if (s->hdr.hdr_len)
            memcpy(p + PX_FRAME_HDR_LEN, s->app_hdr, s->hdr.hdr_len);
        shm_ring_commit(&c->tx, len, SHM_REC_CHUNKED);
        s->tp_priv[0] |= TX_HEAD_DONE;
        progress = 1;
    }
    /* Chunks of an eighth of the ring keep both sides busy at once. */
    uint32_t chunk = c->tx.size / 8 - SHM_REC_HDR;
    while (s->tp_done < s->hdr.data_len) {
        uint64_t left = s->hdr.data_len - s->tp_done;
        uint32_t n = left < chunk ? (uint32_t)left : chunk;
        rc = shm_ring_reserve(&c->tx, n, &p);
        if (rc == -PX_EAGAIN)
            return progress ? 0 : rc;
        if (rc)
            return rc;
        copy_from_cursor(s, p, n);
        shm_ring_commit(&c->tx, n, SHM_REC_CHUNK);
        s->tp_done += n;
        progress = 1;
        /* Let the receiver start on it while we copy the next. */
        shm_tx_publish(c);
    }
    c->stats.tx_chunked++;
    PX_TP_LOG(PX_LOG_DEBUG, "shm: %s: %u bytes chunked", c->name, s->hdr.data_len);
    return 1;
}

int shm_bulk_write(shm_conn *c, px_tp_send *s)
{
    uint64_t mode = s->tp_priv[0] & TX_MODE;
    if (mode == TX_BULK) {
        /* Decided once: a pool frame's regions are announced now, before
         * its record can be published. A consumer that busy-polls takes
         * chunks through the ring as fast as we write them, and two copies
         * of cache-sized chunks beat one process_vm_readv, which pins and
         * copies page by page (1 MiB: 45 against 13 GB/s here); one that
         * sleeps between records would need a wake-up per chunk, so it
         * gets CMA. */
        mode = shm_pool_tx_ready(c, s) ? TX_POOL
               : peer_polls(c)         ? TX_CHUNKED
               : use_cma(c, s)         ? TX_CMA
                                       : TX_CHUNKED;
        s->tp_priv[0] = (s->tp_priv[0] & ~(uint64_t)TX_MODE) | mode;
    }
    if (mode == TX_POOL)
        return write_desc(c, s, DESC_POOL);
    return mode == TX_CMA ? write_desc(c, s, 0) : write_chunked(c, s);
}

/* ---- receiver ------------------------------------------------------------------ */

/* The descriptor's flags (0 or DESC_POOL), or -1 when it has no header
 * or unknown flags. */
int shm_desc_flags(const px_frame_hdr *h, const uint8_t *ext)
{
    if (h->ext_len < DESC_HDR || h->data_len == 0)
        return -1;
    uint32_t hd[2];
    memcpy(hd, ext, sizeof hd);
    return hd[1] == 0 || hd[1] == DESC_POOL ? (int)hd[1] : -1;
}

/* Parse and check a pool descriptor, copied out of the ring once. */
int shm_desc_parse_pool(const px_frame_hdr *h, const uint8_t *ext, shm_pool_seg *segs,
                        uint32_t *nseg)
{
    uint32_t n;
    memcpy(&n, ext, sizeof n);
    if (n == 0 || n > SHM_POOL_NSEG || h->ext_len != DESC_HDR + n * POOL_SEG)
        return -PX_EPROTO;
    memcpy(segs, ext + DESC_HDR, n * sizeof *segs);
    uint64_t sum = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (segs[i].len == 0 || segs[i].len > h->data_len)
            return -PX_EPROTO;
        sum += segs[i].len;
    }
    if (sum != h->data_len)
        return -PX_EPROTO;
    *nseg = n;
    return 0;
}

/* Parse and check the descriptor; segments copied out of the ring once. */
int shm_desc_parse_cma(const px_frame_hdr *h, const uint8_t *ext, cma_seg *segs, uint32_t *nseg)
{
    uint32_t hd[2];
    memcpy(hd, ext, sizeof hd);
    uint32_t n = hd[0];
    if (n == 0 || n > SHM_CMA_MAX_SEG || h->ext_len != DESC_HDR + n * DESC_SEG)
        return -PX_EPROTO;
    memcpy(segs, ext + DESC_HDR, n * sizeof *segs);
    uint64_t sum = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (segs[i].len == 0 || segs[i].len > h->data_len ||
            segs[i].addr + segs[i].len < segs[i].addr)
            return -PX_EPROTO;
        sum += segs[i].len;
    }
    if (sum != h->data_len)
        return -PX_EPROTO;
    *nseg = n;
    return 0;
}

/* process_vm_readv the peer's segments into dst, resuming partial reads.
 * 0, or an errno. */
static int cma_read(pid_t pid, const cma_seg *segs, uint32_t nseg, const px_iov *dst, uint32_t ndst,
                    uint64_t total)
{
    uint32_t ri = 0, li = 0;
    uint64_t roff = 0, loff = 0;
    while (total) {
        struct iovec liov[CMA_IOV], riov[SHM_CMA_MAX_SEG];
        int nl = 0, nr = 0;
        uint64_t want = 0;
        for (uint32_t i = ri; i < nseg; i++) {
            uint64_t o = i == ri ? roff : 0;
            riov[nr++] = (struct iovec){(void *)(uintptr_t)(segs[i].addr + o), segs[i].len - o};
            want += segs[i].len - o;
        }
        uint64_t lw = 0;
        for (uint32_t i = li; i < ndst && nl < CMA_IOV && lw < want; i++) {
            uint64_t o = i == li ? loff : 0;
            uint64_t k = dst[i].len - o;
            if (k > want - lw)
                k = want - lw;
            if (k)
                liov[nl++] = (struct iovec){(uint8_t *)dst[i].base + o, k};
            lw += k;
        }
        ssize_t n = process_vm_readv(pid, liov, (unsigned long)nl, riov, (unsigned long)nr, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno;
        if (n == 0)
            return EFAULT;
        total -= (uint64_t)n;
        /* Advance both cursors by n. */
        for (uint64_t m = (uint64_t)n; m;) {
            uint64_t k = segs[ri].len - roff < m ? segs[ri].len - roff : m;
            roff += k;
            m -= k;
            if (roff == segs[ri].len) {
                ri++;
                roff = 0;
            }
        }
        for (uint64_t m = (uint64_t)n; m;) {
            uint64_t k = dst[li].len - loff < m ? dst[li].len - loff : m;
            loff += k;
            m -= k;
            if (loff == dst[li].len) {
                li++;
                loff = 0;
            }
        }
    }
    return 0;
}

static int cma_error(shm_conn *c, int e)
{
    if (e == ESRCH)
        return shm_peer_gone(c, -PX_ECONNRESET); /* it died: the socket's EOF says so later */
    PX_TP_LOG(PX_LOG_WARN, "shm: conn %s pid %d: process_vm_readv: %s", c->name, (int)c->peer_pid,
              strerror(e));
    return px_tpc_fail(&c->base, e == EPERM ? -PX_EPERM : -PX_EPROTO);
}

/* The peer closed its gate (shm_ring.h, the ack word): its unfinished
 * sends are back in its owner's hands, their memory maybe reused. Nothing
 * from it is delivered any more. */
static int gate_closed(shm_conn *c)
{
    PX_TP_LOG(PX_LOG_DEBUG, "shm: conn %s: the peer closed with frames still to read", c->name);
    return px_tpc_disconnect(&c->base, -PX_ECONNRESET);
}

/* Before reading the peer's memory: OPEN -> READING. 0, or -1 when the
 * conn is gone (the gate was closed, or the word is corrupt). */
static int gate_enter(shm_conn *c)
{
    uint64_t *word = &c->rx.ctl->acked;
    uint64_t open = shm_ack_word(c->cma_done, SHM_GATE_OPEN);
    uint64_t seen = open;
    if (__atomic_compare_exchange_n(word, &seen, shm_ack_word(c->cma_done, SHM_GATE_READING), 0,
                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return 0;
    if (seen == shm_ack_word(c->cma_done, SHM_GATE_CLOSED))
        return gate_closed(c);
    return px_tpc_fail(&c->base, -PX_EPROTO);
}

/* After the read: READING -> OPEN, acked one more (the sender's buffers
 * are free). 0, or -1 when the gate was closed under the read: what was
 * read may be torn, and is dropped. */
static int gate_leave(shm_conn *c)
{
    uint64_t *word = &c->rx.ctl->acked;
    uint64_t seen = shm_ack_word(c->cma_done, SHM_GATE_READING);
    if (__atomic_compare_exchange_n(word, &seen, shm_ack_word(c->cma_done + 1, SHM_GATE_OPEN), 0,
                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        c->cma_done++;
        return 0;
    }
    if (seen == shm_ack_word(c->cma_done, SHM_GATE_CLOSED))
        return gate_closed(c);
    return px_tpc_fail(&c->base, -PX_EPROTO);
}

/* The data is read and acked (before the upcall): deliver. */
static int bulk_rx_done(shm_conn *c, int own)
{
    c->base.rx_bytes += c->rxf.hdr.data_len;
    shm_rx_wake_producer(c);
    if (shm_rx_deliver_assigned(c, own) < 0)
        return -1;
    shm_rx_release(c);
    return 0;
}

/* Copy the segments (already mapped) into the destination. */
static void pool_copy(shm_conn *c, const shm_pool_seg *segs, const uint8_t *const *src, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        shm_rx_dst_copy(c, src[i], segs[i].len);
}

/* A descriptor record, checked: take it off the ring (its app header
 * stays readable until the record is released) and ask the owner where
 * the data goes. 0, or -1 when the conn is gone. */
static int bulk_rx_begin(shm_conn *c, const px_frame_hdr *h, const uint8_t *rec, uint32_t len,
                         int *own)
{
    shm_ring_consume(&c->rx, len);
    c->rxf = (px_tp_rx){.hdr = *h, .app_hdr = rec + PX_FRAME_HDR_LEN + h->ext_len};
    return shm_rx_assign(c, own);
}

static int rx_pool(shm_conn *c, const px_frame_hdr *h, const uint8_t *rec, uint32_t len)
{
    shm_pool_seg segs[SHM_POOL_NSEG];
    const uint8_t *src[SHM_POOL_NSEG];
    uint32_t nseg;
    int rc = shm_desc_parse_pool(h, rec + PX_FRAME_HDR_LEN, segs, &nseg);
    if (rc)
        return px_tpc_fail(&c->base, rc);
    int own;
    if (bulk_rx_begin(c, h, rec, len, &own) < 0)
        return -1;
    /* Mapped after the upcall, copied at once: nothing can evict between. */
    rc = shm_pool_rx_map(c, segs, nseg, src);
    if (rc)
        return px_tpc_fail(&c->base, rc);
    if (gate_enter(c) < 0)
        return -1;
    pool_copy(c, segs, src, nseg);
    if (gate_leave(c) < 0)
        return -1;
    c->stats.rx_pool++;
    return bulk_rx_done(c, own);
}

int shm_bulk_rx_cma(shm_conn *c, const px_frame_hdr *h, const uint8_t *rec, uint32_t len)
{
    cma_seg segs[SHM_CMA_MAX_SEG];
    uint32_t nseg;
    if (len != PX_FRAME_HDR_LEN + (uint64_t)h->ext_len + h->hdr_len)
        return px_tpc_fail(&c->base, -PX_EPROTO);
    int flags = shm_desc_flags(h, rec + PX_FRAME_HDR_LEN);
    if (flags < 0)
        return px_tpc_fail(&c->base, -PX_EPROTO);
    if (flags == DESC_POOL)
        return rx_pool(c, h, rec, len);
    /* We said whether it may send these; it must have listened. */
    if (__atomic_load_n(&c->rx.ctl->cma_ok, __ATOMIC_RELAXED) != SHM_CMA_YES || c->cma_off)
        return px_tpc_fail(&c->base, -PX_EPROTO);
    int rc = shm_desc_parse_cma(h, rec + PX_FRAME_HDR_LEN, segs, &nseg);
    if (rc)
        return px_tpc_fail(&c->base, rc);
    int own;
    if (bulk_rx_begin(c, h, rec, len, &own) < 0)
        return -1;
    if (gate_enter(c) < 0)
        return -1;
    rc = cma_read(c->peer_pid, segs, nseg, c->rxf.dst, c->rxf.dst_count, h->data_len);
    if (rc)
        return cma_error(c, rc);
    if (gate_leave(c) < 0)
        return -1;
    c->stats.rx_cma++;
    return bulk_rx_done(c, own);
}

int shm_bulk_rx_chunked(shm_conn *c, const px_frame_hdr *h, const uint8_t *rec, uint32_t len)
{
    uint32_t prefix = PX_FRAME_HDR_LEN + h->hdr_len;
    if (h->ext_len || h->data_len == 0 || len != prefix)
        return px_tpc_fail(&c->base, -PX_EPROTO);
    /* The ring is released chunk by chunk; app_hdr must last until FRAME. */
    memcpy(c->scratch, rec, prefix);
    shm_ring_consume(&c->rx, len);
    shm_rx_release(c);
    c->rxf = (px_tp_rx){.hdr = *h, .app_hdr = c->scratch + PX_FRAME_HDR_LEN};
    int own;
    if (shm_rx_assign(c, &own) < 0)
        return -1;
    c->rx_mode = RX_CHUNKS;
    px_tpc_more_reset(&c->base);
    c->dst_own = own;
    return 0;
}

int shm_bulk_rx_chunk(shm_conn *c, const uint8_t *rec, uint32_t len)
{
    if (c->rx_mode != RX_CHUNKS || len == 0 || len > c->rx_left)
        return px_tpc_fail(&c->base, -PX_EPROTO);
    shm_rx_dst_copy(c, rec, len);
    shm_ring_consume(&c->rx, len);
    shm_rx_release(c);
    if (c->rx_left)
        return 0;
    c->rx_mode = RX_RING;
    c->stats.rx_chunked++;
    return shm_rx_deliver_assigned(c, c->dst_own);
}
