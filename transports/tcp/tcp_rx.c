/* Receive: a per-conn power-of-two ring filled with readv (two iovecs
 * across the wrap), frames parsed in place.
 *
 * - A frame whose data_len is at most inline_threshold ("small") is handed
 *   up pointing into the ring; if it straddles the wrap it is first copied
 *   to the conn's scratch buffer. The ring is at least twice the largest
 *   small frame, so a full ring always holds a complete frame.
 * - A larger frame: once its prefix (header, ext, app header) is in, the
 *   prefix is copied to scratch and RX_ASSIGN asks the owner for a
 *   destination. The data bytes already in the ring are copied there and
 *   the rest is read straight into it, with the ring appended as the last
 *   iovecs of each readv so the frames behind it arrive in the same call
 *   (only once the destination's iovecs hold all of the rest: one of more
 *   than TCP_RX_IOV segments is read TCP_RX_IOV at a time).
 *   If the owner declines, a frame fully and contiguously in the ring is
 *   delivered in place; otherwise a buffer of our own receives it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/uio.h>

#include "transports/tcp/tcp.h"

static uint32_t ring_size(const tcp_conn *c)
{
    return c->ring_mask + 1;
}

static void ring_copy_out(const tcp_conn *c, uint64_t pos, void *dst, size_t len)
{
    uint32_t off = (uint32_t)(pos & c->ring_mask);
    size_t first = ring_size(c) - off;
    if (first > len)
        first = len;
    memcpy(dst, c->ring + off, first);
    memcpy((uint8_t *)dst + first, c->ring, len - first);
}

static uint32_t le16(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}
static uint32_t le32(const uint8_t *p)
{
    return le16(p) | le16(p + 2) << 16;
}

/* How many complete small frames start at `pos` (at most 255). Reads only
 * the raw length fields: it is a hint for `more`, and a malformed header
 * merely stops the count - px_frame_decode() judges it when its turn comes. */
static uint32_t count_complete_at(const tcp_conn *c, uint64_t pos)
{
    uint32_t n = 0;
    uint8_t copy[PX_FRAME_HDR_LEN];
    uint64_t threshold = tcp_host(c)->inline_threshold;
    while (n < 255 && c->wr - pos >= PX_FRAME_HDR_LEN) {
        /* Read in place; only a header that wraps is copied out. */
        uint32_t off = (uint32_t)(pos & c->ring_mask);
        const uint8_t *h = c->ring + off;
        if (off + PX_FRAME_HDR_LEN > ring_size(c)) {
            ring_copy_out(c, pos, copy, sizeof copy);
            h = copy;
        }
        uint64_t data = le32(h + 12);
        if (data > threshold)
            break;
        uint64_t total = PX_FRAME_HDR_LEN + le16(h + 28) + le16(h + 6) + data;
        if (c->wr - pos < total)
            break;
        pos += total;
        n++;
    }
    return n;
}

/* `more` for the frame that ends at c->rd: a lower bound on the complete
 * frames behind it (the chassis counts it once per batch, then down). */
static uint32_t count_complete(px_tp_conn *pc)
{
    tcp_conn *c = (tcp_conn *)(void *)pc;
    return count_complete_at(c, c->rd);
}

/* The lending rule (the chassis's): bytes handed up in place - the ring,
 * scratch, our own buffer - stay valid until the sends made in those
 * upcalls have left. Before any of it is reused (the ring by a read,
 * scratch by the next straddled frame or large prefix, the own buffer by
 * the next declined frame) the queue is flushed and what still points
 * there is copied aside. Then nothing points into the own buffer: a huge
 * one is given back. Returns 0, -1 when the conn is gone. */
static int reclaim(tcp_conn *c)
{
    if (px_tpc_reclaim(&c->base) < 0)
        return -1;
    if (c->own_cap > TCP_OWN_KEEP && c->rx_mode != RX_OWN) {
        free(c->own);
        c->own = NULL;
        c->own_cap = 0;
        px_tpc_lendable(&c->base, LEND_OWN, NULL, 0);
    }
    return 0;
}

/* Hand up a frame that is entirely in the ring at c->rd. */
static int deliver_in_place(tcp_conn *c, const px_frame_hdr *h, uint64_t prefix, void *cookie)
{
    uint64_t total = prefix + h->data_len;
    uint32_t off = (uint32_t)(c->rd & c->ring_mask);
    const uint8_t *base = c->ring + off;
    if (off + total > ring_size(c)) {
        if (reclaim(c) < 0) /* scratch may hold the last straddled frame */
            return -1;
        ring_copy_out(c, c->rd, c->scratch, total); /* small: fits in scratch */
        base = c->scratch;
        c->n_straddled++;
    }
    /* Consumed before the upcall; lent until this conn's sends have left. */
    c->rd += total;
    px_tpc_lent(&c->base);
    px_tp_rx rx = {
        .hdr = *h,
        .app_hdr = base + PX_FRAME_HDR_LEN + h->ext_len,
        .data = base + prefix,
        .more = px_tpc_more(&c->base, count_complete),
        .owner_cookie = cookie,
    };
    return px_tpc_frame(&c->base, &rx);
}

/* Place `len` bytes (src NULL: already placed by readv) into the large
 * frame's destination. */
static void dst_consume(tcp_conn *c, const uint8_t *src, size_t len)
{
    c->rx_left -= len;
    px_iov_put(c->rx.dst, c->rx.dst_count, &c->dst_idx, &c->dst_off, src, len);
}

static int rx_finish_large(tcp_conn *c)
{
    px_tp_rx rx = c->rx;
    if (c->rx_mode == RX_OWN) {
        rx.data = c->own;
        rx.dst = NULL;
        rx.dst_count = 0;
    }
    c->rx_mode = RX_RING;
    px_tpc_more_reset(&c->base);
    rx.more = px_tpc_more(&c->base, count_complete);
    /* Its prefix (scratch) and, when declined, its data (our own buffer)
     * are lent to this upcall: see reclaim(). */
    px_tpc_lent(&c->base);
    return px_tpc_frame(&c->base, &rx);
}

static int own_reserve(tcp_conn *c, size_t len)
{
    if (c->own_cap >= len)
        return 0;
    free(c->own);
    c->own = malloc(len);
    c->own_cap = c->own ? len : 0;
    px_tpc_lendable(&c->base, LEND_OWN, c->own, c->own_cap);
    return c->own ? 0 : -1;
}

static int rx_begin_large(tcp_conn *c, const px_frame_hdr *h, uint64_t prefix)
{
    /* The prefix moves to scratch so the ring can be drained into dst while
     * app_hdr stays valid until FRAME. A response queued from the last
     * large frame may still point at its prefix there (out.header =
     * in.header): reclaim first. */
    if (reclaim(c) < 0)
        return -1;
    uint8_t *pre = c->scratch + c->tp->scratch_size; /* not the half a straddled frame may hold */
    ring_copy_out(c, c->rd, pre, prefix);
    c->rx = (px_tp_rx){.hdr = *h, .app_hdr = pre + PX_FRAME_HDR_LEN + h->ext_len};
    px_tpc_more_reset(&c->base);
    int declined;
    if (px_tpc_rx_assign(&c->base, &c->rx, &declined) < 0)
        return -1;
    if (!declined) {
        c->rx_mode = RX_DIRECT;
    } else {
        uint64_t total = prefix + h->data_len;
        uint32_t off = (uint32_t)(c->rd & c->ring_mask);
        if (c->wr - c->rd >= total && off + total <= ring_size(c))
            return deliver_in_place(c, h, prefix, c->rx.owner_cookie);
        if (own_reserve(c, h->data_len) < 0)
            return px_tpc_fail(&c->base, -PX_ENOMEM);
        c->own_iov = (px_iov){.base = c->own, .len = h->data_len};
        c->rx.dst = &c->own_iov;
        c->rx.dst_count = 1;
        c->rx_mode = RX_OWN;
    }
    c->rd += prefix;
    c->dst_idx = 0;
    c->dst_off = 0;
    c->rx_left = h->data_len;
    uint64_t have = c->wr - c->rd;
    if (have > c->rx_left)
        have = c->rx_left;
    uint32_t off = (uint32_t)(c->rd & c->ring_mask);
    uint64_t first = ring_size(c) - off < have ? ring_size(c) - off : have;
    dst_consume(c, c->ring + off, first);
    dst_consume(c, c->ring, have - first);
    c->rd += have;
    return c->rx_left ? 0 : rx_finish_large(c);
}

/* Deliver every complete frame in the ring; start a large one. */
static int parse(tcp_conn *c)
{
    const px_tp_host *host = tcp_host(c);
    while (c->rx_mode == RX_RING && !c->rx_paused && c->wr - c->rd >= PX_FRAME_HDR_LEN) {
        uint64_t avail = c->wr - c->rd;
        uint32_t off = (uint32_t)(c->rd & c->ring_mask);
        uint8_t tmp[PX_FRAME_HDR_LEN];
        const uint8_t *p = c->ring + off;
        if (off + PX_FRAME_HDR_LEN > ring_size(c)) {
            ring_copy_out(c, c->rd, tmp, sizeof tmp);
            p = tmp;
        }
        px_frame_hdr h;
        int rc = px_frame_decode(p, PX_FRAME_HDR_LEN, &host->limits, &h);
        if (rc)
            return px_tpc_fail(&c->base, rc);
        uint64_t prefix = (uint64_t)PX_FRAME_HDR_LEN + h.ext_len + h.hdr_len;
        if (h.data_len > host->inline_threshold) {
            if (avail < prefix)
                break;
            if (rx_begin_large(c, &h, prefix) < 0)
                return -1;
        } else {
            if (avail < prefix + h.data_len)
                break;
            if (deliver_in_place(c, &h, prefix, NULL) < 0)
                return -1;
        }
    }
    /* An empty ring restarts at offset 0, so the next frames rarely wrap. */
    if (c->rd == c->wr)
        c->rd = c->wr = 0;
    return 0;
}

static int ring_iov(const tcp_conn *c, struct iovec *iov, size_t *want)
{
    uint64_t room = ring_size(c) - (c->wr - c->rd);
    if (room == 0)
        return 0;
    uint32_t w = (uint32_t)(c->wr & c->ring_mask);
    uint64_t first = ring_size(c) - w < room ? ring_size(c) - w : room;
    iov[0] = (struct iovec){c->ring + w, first};
    *want += room;
    if (room == first)
        return 1;
    iov[1] = (struct iovec){c->ring, room - first};
    return 2;
}

/* The unfilled part of the large frame's destination, up to TCP_RX_IOV
 * segments. */
static int dst_iov(const tcp_conn *c, struct iovec *iov, size_t *want)
{
    int cnt = 0;
    uint64_t left = c->rx_left;
    size_t off = c->dst_off;
    for (uint32_t i = c->dst_idx; i < c->rx.dst_count && left && cnt < TCP_RX_IOV; i++) {
        size_t len = c->rx.dst[i].len - off;
        if (len > left)
            len = left;
        if (len)
            iov[cnt++] = (struct iovec){(uint8_t *)c->rx.dst[i].base + off, len};
        left -= len;
        *want += len;
        off = 0;
    }
    return cnt;
}

static int on_bytes(tcp_conn *c, size_t n)
{
    c->base.rx_bytes += n;
    px_tpc_mark_hot(&c->base); /* a busy-polling context reads it without the loop */
    if (c->rx_mode != RX_RING) {
        size_t d = n < c->rx_left ? n : (size_t)c->rx_left;
        dst_consume(c, NULL, d);
        n -= d;
        c->wr += n; /* whatever followed the frame landed in the ring */
        if (c->rx_left == 0 && rx_finish_large(c) < 0)
            return -1;
    } else {
        c->wr += n;
    }
    return parse(c);
}

/* Paused between frames: bytes still go into the ring (parsed after the
 * resume), so a peer's EOF is still seen; once the ring is full the socket
 * fills, the peer meets flow control, and a probe timer watches for its
 * hang-up instead. Frames a peer sent before dying that we had no room
 * for then are lost with it. Returns 0, -1 when the conn is gone. */
static int read_paused(tcp_conn *c)
{
    struct iovec iov[2];
    size_t want = 0;
    int cnt = ring_iov(c, iov, &want);
    if (cnt == 0) {
        const px_tp_host *h = tcp_host(c);
        tcp_watch(c); /* no more reading */
        if (!h->ops->timer_active(h, &c->probe))
            h->ops->timer_start(h, &c->probe, 250000, 250000);
        return 0;
    }
    ssize_t n = readv(c->fd, iov, cnt);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR
                   ? 0
                   : px_tpc_disconnect(&c->base, tcp_err(errno));
    if (n == 0)
        return px_tpc_disconnect(&c->base, -PX_ECONNRESET);
    c->base.rx_bytes += (size_t)n;
    c->wr += (size_t)n;
    return 0;
}

void tcp_rx_probe_cb(px_tp_watch *w, void *arg)
{
    tcp_conn *c = arg;
    struct pollfd p = {.fd = c->fd, .events = POLLRDHUP};
    if (poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)))
        px_tpc_disconnect(&c->base, -PX_ECONNRESET);
}

static int read_burst(tcp_conn *c)
{
    for (int i = 0; i < TCP_READS_BURST; i++) {
        if (c->rx_paused && c->rx_mode == RX_RING)
            return read_paused(c);
        if (reclaim(c) < 0)
            return -1;
        struct iovec iov[TCP_RX_IOV + 2];
        size_t want = 0;
        int cnt = c->rx_mode != RX_RING ? dst_iov(c, iov, &want) : 0;
        /* The ring takes what follows the frame, so it goes behind the
         * destination only when that holds all the frame's rest: a
         * destination of more than TCP_RX_IOV segments is read in turns. */
        if (c->rx_mode == RX_RING || want == c->rx_left)
            cnt += ring_iov(c, iov + cnt, &want);
        if (cnt == 0)
            return px_tpc_fail(&c->base, -PX_EMSGSIZE); /* cannot happen: see the ring sizing */
        ssize_t n = readv(c->fd, iov, cnt);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return px_tpc_disconnect(&c->base, tcp_err(errno));
        }
        if (n == 0) {
            /* EOF between frames is a clean close; inside one, data is lost. */
            int mid = c->rx_mode != RX_RING || c->wr != c->rd;
            return px_tpc_disconnect(&c->base, mid ? -PX_ECONNRESET : -PX_EDISCONNECTED);
        }
        if (on_bytes(c, (size_t)n) < 0)
            return -1;
        /* A short read drained the socket: skip the EAGAIN round trip. */
        if ((size_t)n < want)
            return 0;
    }
    return 0;
}

int tcp_rx_read(tcp_conn *c)
{
    c->in_rx = 1;
    if (read_burst(c) < 0)
        return -1; /* closed, maybe freed: hands off */
    c->in_rx = 0;
    return 0;
}

int tcp_rx_resume(px_tp_conn *pc)
{
    tcp_conn *c = (tcp_conn *)(void *)pc;
    if (c->in_rx || c->rx_paused || c->state != TCP_OPEN)
        return 0;
    const px_tp_host *h = tcp_host(c);
    h->ops->timer_stop(h, &c->probe);
    tcp_watch(c);
    c->in_rx = 1;
    if (parse(c) < 0)
        return -1;
    c->in_rx = 0;
    return tcp_rx_read(c);
}
