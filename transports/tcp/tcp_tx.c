/* Send: a per-conn FIFO of the caller's px_tp_send requests (linked through
 * tp_next, so queueing never allocates), flushed once per loop iteration by
 * the instance's prepare hook. One flush gathers every queued frame - wire
 * header, app header, data segments - into one sendmsg straight from the
 * caller's memory (message combining), resuming partial writes through
 * tp_done. Write interest is armed only when the socket is full. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/log.h"
#include "plexus/error.h"
#include "transports/tcp/tcp.h"

static uint64_t frame_bytes(const px_tp_send *s)
{
    return px_frame_len(&s->hdr);
}

/* A frame whose body was copied aside keeps it at tp_priv[0] (see
 * tcp_tx_unlend): app header and data, contiguous. */
static uint8_t *bounce_of(const px_tp_send *s)
{
    return (uint8_t *)(uintptr_t)s->tp_priv[0];
}

static void bounce_free(px_tp_send *s)
{
    free(bounce_of(s));
    s->tp_priv[0] = 0;
}

/* Append [base, base+len) minus the first *skip bytes. Returns 0 when iov
 * is full. */
static int add_seg(struct iovec *iov, int *cnt, size_t *want, const void *base, size_t len,
                   uint64_t *skip)
{
    if (*skip >= len) {
        *skip -= len;
        return 1;
    }
    if (*cnt == TCP_TX_IOV)
        return 0;
    iov[*cnt].iov_base = (char *)base + *skip;
    iov[*cnt].iov_len = len - *skip;
    *want += len - *skip;
    *skip = 0;
    (*cnt)++;
    return 1;
}

/* Fill iov from the head of the queue on. A frame may be cut short when
 * iov fills; the rest goes in the next sendmsg. */
static int gather(tcp_conn *c, struct iovec *iov, size_t *want)
{
    int cnt = 0;
    *want = 0;
    for (px_tp_send *s = c->txq; s && cnt < TCP_TX_IOV; s = s->tp_next) {
        uint64_t skip = s->tp_done;
        if (!add_seg(iov, &cnt, want, s->tp_wire, PX_FRAME_HDR_LEN, &skip))
            break;
        if (bounce_of(s)) {
            if (!add_seg(iov, &cnt, want, bounce_of(s), frame_bytes(s) - PX_FRAME_HDR_LEN, &skip))
                break;
            continue;
        }
        if (s->hdr.hdr_len && !add_seg(iov, &cnt, want, s->app_hdr, s->hdr.hdr_len, &skip))
            break;
        for (uint32_t i = 0; i < s->data_count; i++)
            if (s->data[i].len && !add_seg(iov, &cnt, want, s->data[i].base, s->data[i].len, &skip))
                return cnt;
    }
    return cnt;
}

/* Move frames covered by `n` written bytes to the done list. */
static void advance(tcp_conn *c, size_t n)
{
    while (c->txq) {
        px_tp_send *s = c->txq;
        uint64_t left = frame_bytes(s) - s->tp_done;
        if (n < left) {
            s->tp_done += n;
            return;
        }
        n -= left;
        s->tp_done += left;
        bounce_free(s);
        c->txq = s->tp_next;
        if (!c->txq)
            c->txq_tail = NULL;
        s->tp_next = NULL;
        s->status = 0;
        if (c->done_tail)
            c->done_tail->tp_next = s;
        else
            c->done = s;
        c->done_tail = s;
    }
}

/* SEND_COMPLETE for written frames, in order. The owner may send (appends
 * to txq) or close from inside. */
static int complete_done(tcp_conn *c)
{
    while (c->done) {
        px_tp_send *s = c->done;
        c->done = s->tp_next;
        if (!c->done)
            c->done_tail = NULL;
        s->tp_next = NULL;
        if (tcp_upcall(c, PX_TP_EV_SEND_COMPLETE, s, NULL) < 0)
            return -1;
    }
    return 0;
}

int tcp_tx_fail_all(tcp_conn *c, int status)
{
    if (complete_done(c) < 0)
        return -1;
    while (c->txq) {
        px_tp_send *s = c->txq;
        c->txq = s->tp_next;
        if (!c->txq)
            c->txq_tail = NULL;
        s->tp_next = NULL;
        bounce_free(s);
        s->status = status;
        if (tcp_upcall(c, PX_TP_EV_SEND_COMPLETE, s, NULL) < 0)
            return -1;
    }
    return 0;
}

/* close(): the conn is already marked closed, so tcp_upcall() would stop
 * after one event; the caller holds in_upcall so nothing frees it. */
void tcp_tx_drain_closed(tcp_conn *c)
{
    while (c->done || c->txq) {
        px_tp_send *s = c->done ? c->done : c->txq;
        if (s == c->done) {
            c->done = s->tp_next;
            if (!c->done)
                c->done_tail = NULL;
        } else {
            c->txq = s->tp_next;
            if (!c->txq)
                c->txq_tail = NULL;
            bounce_free(s);
            s->status = -PX_ECLOSED;
        }
        s->tp_next = NULL;
        c->tp->nevents++;
        c->base.obs.notify(c->base.obs.self, PX_TP_EV_SEND_COMPLETE, s);
    }
}

static void want_write(tcp_conn *c)
{
    if (!ev_is_active(&c->wio))
        ev_io_start(c->tp->host.loop, &c->wio);
}

int tcp_tx_flush(tcp_conn *c)
{
    struct iovec iov[TCP_TX_IOV];
    while (c->txq) {
        size_t want;
        int cnt = gather(c, iov, &want);
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)cnt};
        /* sendmsg, not writev: MSG_NOSIGNAL keeps SIGPIPE away. */
        ssize_t n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                want_write(c);
                break;
            }
            return tcp_disconnect(c, errno == EPIPE ? -PX_ECONNRESET : tcp_err(errno));
        }
        advance(c, (size_t)n);
        if ((size_t)n < want) {
            /* A short write means the socket buffer is full: wait for room
             * rather than spend a syscall on the EAGAIN. */
            want_write(c);
            break;
        }
    }
    if (!c->txq && ev_is_active(&c->wio))
        ev_io_stop(c->tp->host.loop, &c->wio);
    return complete_done(c);
}

/* Every place a frame is delivered in place from: the ring, scratch (a
 * straddled frame, a large frame's prefix) and our own buffer (a large
 * frame the owner declined). */
static int points_into_rx(const tcp_conn *c, const px_tp_send *s)
{
    return px_tp_send_points_into(s, c->ring, (size_t)c->ring_mask + 1) ||
           px_tp_send_points_into(s, c->scratch, 2 * (size_t)c->tp->scratch_size) ||
           px_tp_send_points_into(s, c->own, c->own_cap);
}

/* Only frames made from in-place deliveries that the socket would not take
 * yet get here: rare, so a plain allocation is fine. */
int tcp_tx_unlend(tcp_conn *c)
{
    for (px_tp_send *s = c->txq; s; s = s->tp_next) {
        if (bounce_of(s) || !points_into_rx(c, s))
            continue;
        size_t body = frame_bytes(s) - PX_FRAME_HDR_LEN;
        uint8_t *b = malloc(body ? body : 1);
        if (!b)
            return -PX_ENOMEM;
        px_tp_send_copy_body(s, b);
        s->tp_priv[0] = (uintptr_t)b;
        c->n_unlent++;
    }
    return 0;
}

void tcp_tx_flush_dirty(tcp_tp *tp)
{
    px_list *n;
    while ((n = px_list_pop_front(&tp->dirty))) {
        tcp_conn *c = PX_CONTAINER_OF(n, tcp_conn, dirty_link);
        if (c->state == TCP_OPEN && !ev_is_active(&c->wio))
            tcp_tx_flush(c);
    }
}

int tcp_tx_send(px_tp_conn *pc, px_tp_send *req)
{
    tcp_conn *c = (tcp_conn *)pc;
    if (c->closed)
        return -PX_ECLOSED;
    if (c->state == TCP_PENDING)
        return -PX_ENOTCONN;
    if (c->state == TCP_DEAD)
        return -PX_EDISCONNECTED;
    int rc = px_tp_send_check(req, TCP_MAX_IOV);
    if (rc)
        return rc;
    px_frame_encode(&req->hdr, req->tp_wire);
    req->tp_next = NULL;
    req->tp_priv[0] = 0; /* no bounce copy */
    req->tp_done = 0;
    req->status = 0;
    if (c->txq_tail)
        c->txq_tail->tp_next = req;
    else
        c->txq = req;
    c->txq_tail = req;
    /* Flushed by the prepare hook; a connecting conn flushes once open, a
     * blocked one when its write watcher fires. */
    if (c->state == TCP_OPEN && !ev_is_active(&c->wio))
        tcp_mark_dirty(c);
    return 0;
}
