/* Send: the chassis's FIFO of the caller's px_tp_send requests (linked
 * through tp_next, so queueing never allocates), flushed once per loop
 * iteration by the chassis's end-of-iteration hook. One flush gathers every
 * queued frame - wire header, app header, data segments - into one sendmsg
 * straight from the caller's memory (message combining), resuming partial
 * writes through tp_done. When the socket takes less than it was offered
 * the conn is "full": write interest is armed, new sends are refused with
 * -PX_EAGAIN, and the room upcall follows once the queue has drained. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "transports/tcp/tcp.h"

static uint64_t frame_bytes(const px_tp_send *s)
{
    return px_frame_len(&s->hdr);
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

/* Fill iov from the head of the queue on, up to and including `last`. A
 * frame may be cut short when iov fills; the rest goes in the next
 * sendmsg. */
static int gather(const tcp_conn *c, struct iovec *iov, size_t *want, const px_tp_send *last)
{
    int cnt = 0;
    *want = 0;
    for (const px_tp_send *s = c->base.sends.head; s && cnt < TCP_TX_IOV;
         s = s == last ? NULL : s->tp_next) {
        uint64_t skip = s->tp_done;
        if (!add_seg(iov, &cnt, want, s->tp_wire, PX_FRAME_HDR_LEN, &skip))
            break;
        if (s->hdr.hdr_len && !add_seg(iov, &cnt, want, s->app_hdr, s->hdr.hdr_len, &skip))
            break;
        for (uint32_t i = 0; i < s->data_count; i++)
            if (s->data[i].len && !add_seg(iov, &cnt, want, s->data[i].base, s->data[i].len, &skip))
                return cnt;
    }
    return cnt;
}

/* `n` bytes were written: complete every frame they finish (its memory is
 * the caller's again). *ended is set once `last` is finished: compared
 * before its completion, after which the caller may reuse it at once. -1
 * when the conn is gone. */
static int advance(tcp_conn *c, size_t n, const px_tp_send *last, int *ended)
{
    while (n) {
        px_tp_send *s = c->base.sends.head;
        uint64_t left = frame_bytes(s) - s->tp_done;
        if (n < left) {
            s->tp_done += n;
            return 0;
        }
        n -= left;
        *ended = s == last;
        if (px_tpc_complete_head(&c->base, 0) < 0)
            return -1;
    }
    return 0;
}

static void set_full(tcp_conn *c, int full)
{
    if (c->full == (unsigned)full)
        return;
    c->full = full;
    c->want_w = full;
    tcp_watch(c);
}

int tcp_tx_flush(px_tp_conn *pc)
{
    tcp_conn *c = (tcp_conn *)(void *)pc;
    if (c->state != TCP_OPEN)
        return 0; /* a connecting conn flushes once open */
    struct iovec iov[TCP_TX_IOV];
    /* Only the frames queued when the flush began: an owner that sends
     * again from each completion would otherwise keep it writing for as
     * long as the socket takes it, and the loop would receive nothing
     * meanwhile. What it queues goes in the next flush (it marked the conn
     * dirty again). */
    const px_tp_send *last = c->base.sends.tail;
    int ended = 0;
    while (c->base.sends.head && !ended) {
        size_t want;
        int cnt = gather(c, iov, &want, last);
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)cnt};
        /* sendmsg, not writev: MSG_NOSIGNAL keeps SIGPIPE away. */
        ssize_t n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                set_full(c, 1);
                return 0;
            }
            return px_tpc_disconnect(pc, errno == EPIPE ? -PX_ECONNRESET : tcp_err(errno));
        }
        if (advance(c, (size_t)n, last, &ended) < 0)
            return -1;
        if ((size_t)n < want) {
            /* A short write means the socket buffer is full: wait for room
             * rather than spend a syscall on the EAGAIN. */
            set_full(c, 1);
            return 0;
        }
    }
    set_full(c, 0);
    return c->base.sends.head ? 0 : px_tpc_room(pc);
}

int tcp_tx_send(px_tp_conn *pc, px_tp_send *s)
{
    tcp_conn *c = (tcp_conn *)(void *)pc;
    if (pc->closed)
        return -PX_ECLOSED;
    if (c->state == TCP_PENDING)
        return -PX_ENOTCONN;
    if (c->state == TCP_DEAD)
        return -PX_EDISCONNECTED;
    int rc = px_tp_send_check(s, TCP_MAX_IOV);
    if (rc)
        return rc;
    if (c->full)
        return px_tpc_refuse(pc);
    px_frame_encode(&s->hdr, s->tp_wire);
    s->tp_done = 0;
    px_tpc_queue(pc, s);
    /* Flushed by the chassis at the end of the iteration; a connecting conn
     * flushes once open. */
    if (c->state == TCP_OPEN)
        px_tpc_mark_dirty(pc);
    return PX_TP_QUEUED;
}
