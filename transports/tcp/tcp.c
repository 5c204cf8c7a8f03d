/* The stream-socket transport: tcp:// and unix://.
 *
 * This file holds the instance, the connection life cycle (listen, connect,
 * accept, reject, close), the upcall discipline and the once-per-iteration
 * hook (an ev_prepare) that delivers deferred events and flushes sends.
 * Receive is in tcp_rx.c, send in tcp_tx.c, addresses in tcp_addr.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "plexus/error.h"
#include "transports/builtin.h"
#include "transports/tcp/tcp.h"

static tcp_tp *TP(px_tp *p)
{
    return (tcp_tp *)(void *)p;
}
static tcp_conn *CONN(px_tp_conn *p)
{
    return (tcp_conn *)p;
}
static tcp_listener *LST(px_tp_listener *p)
{
    return (tcp_listener *)p;
}

/* ---- upcalls and the loop hook ------------------------------------------ */

static void conn_free(tcp_conn *c)
{
    px_list_del(&c->link);
    free(c->ring);
    free(c->scratch);
    free(c->own);
    free(c);
}

int tcp_upcall(tcp_conn *c, int ev, void *data, int *ret)
{
    c->in_upcall++;
    c->tp->nevents++;
    int r = c->base.obs.notify(c->base.obs.self, ev, data);
    if (ret)
        *ret = r;
    if (--c->in_upcall == 0 && c->closed) {
        conn_free(c);
        return -1;
    }
    return c->closed ? -1 : 0;
}

/* The prepare watcher runs only while there is work, so an idle loop pays
 * nothing for it. */
static void arm_prepare(tcp_tp *tp)
{
    if (!ev_is_active(&tp->prep))
        ev_prepare_start(tp->host.loop, &tp->prep);
}

void tcp_mark_dirty(tcp_conn *c)
{
    if (px_list_unlinked(&c->dirty_link)) {
        px_list_push_back(&c->tp->dirty, &c->dirty_link);
        arm_prepare(c->tp);
    }
}

static void defer_event(tcp_conn *c, int ev, int reason)
{
    c->defer_ev = ev;
    c->defer_reason = reason;
    px_list_push_back(&c->tp->deferred, &c->defer_link);
    arm_prepare(c->tp);
}

static void stop_io(tcp_conn *c)
{
    struct ev_loop *loop = c->tp->host.loop;
    ev_io_stop(loop, &c->rio);
    ev_io_stop(loop, &c->wio);
    ev_timer_stop(loop, &c->probe);
    px_list_del(&c->dirty_link);
    px_list_del(&c->defer_link);
    px_list_del(&c->hot_link);
}

int tcp_disconnect(tcp_conn *c, int reason)
{
    c->state = TCP_DEAD;
    stop_io(c);
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    /* Queued frames can no longer leave: fail them before the owner hears
     * of the disconnect, so it sees every send end exactly once. */
    if (tcp_tx_fail_all(c, -PX_EDISCONNECTED) < 0)
        return -1;
    tcp_upcall(c, PX_TP_EV_DISCONNECTED, &reason, NULL);
    return -1;
}

int tcp_fail(tcp_conn *c, int reason)
{
    PX_LOGD("tcp: conn %p: protocol error %d", (void *)c, reason);
    if (tcp_upcall(c, PX_TP_EV_ERROR, &reason, NULL) < 0)
        return -1;
    return tcp_disconnect(c, reason);
}

static void conn_open(tcp_conn *c)
{
    c->state = TCP_OPEN;
    ev_io_stop(c->tp->host.loop, &c->wio);
    ev_io_start(c->tp->host.loop, &c->rio);
    if (c->txq)
        tcp_mark_dirty(c);
}

static void run_deferred(tcp_conn *c)
{
    if (c->defer_ev == PX_TP_EV_CONNECTED) {
        conn_open(c);
        tcp_upcall(c, PX_TP_EV_CONNECTED, NULL, NULL);
    } else if (c->defer_ev == TCP_EV_RESUME) {
        tcp_rx_resume(c);
    } else {
        tcp_disconnect(c, c->defer_reason);
    }
}

/* Deliver deferred events and flush until neither has work. The lists are
 * popped one conn at a time, so upcalls may close any conn (close unlinks
 * it) or queue more work (picked up by the next round). */
static void tcp_progress(tcp_tp *tp)
{
    tp->in_progress = 1;
    while (!px_list_empty(&tp->deferred) || !px_list_empty(&tp->dirty)) {
        px_list *n;
        while ((n = px_list_pop_front(&tp->deferred)))
            run_deferred(PX_CONTAINER_OF(n, tcp_conn, defer_link));
        tcp_tx_flush_dirty(tp);
    }
    tp->in_progress = 0;
    ev_prepare_stop(tp->host.loop, &tp->prep);
}

static void prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    tcp_progress(PX_CONTAINER_OF(w, tcp_tp, prep));
}

/* ---- connections --------------------------------------------------------- */

static void wio_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    tcp_conn *c = PX_CONTAINER_OF(w, tcp_conn, wio);
    if (c->state != TCP_CONNECTING) {
        tcp_tx_flush(c);
        return;
    }
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        tcp_disconnect(c, tcp_err(err));
        return;
    }
    conn_open(c);
    tcp_upcall(c, PX_TP_EV_CONNECTED, NULL, NULL);
}

static tcp_conn *conn_new(tcp_tp *tp, int fd)
{
    tcp_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->ring = malloc(tp->ring_size);
    c->scratch = malloc(2 * (size_t)tp->scratch_size);
    if (!c->ring || !c->scratch) {
        free(c->ring);
        free(c->scratch);
        free(c);
        return NULL;
    }
    c->base.ops = &px_tcp_transport;
    c->base.tp = (px_tp *)(void *)tp;
    c->tp = tp;
    c->fd = fd;
    c->ring_mask = tp->ring_size - 1;
    c->rx_mode = RX_RING;
    px_list_init(&c->dirty_link);
    px_list_init(&c->defer_link);
    px_list_init(&c->hot_link);
    px_list_init(&c->lst_link);
    px_list_push_back(&tp->conns, &c->link);
    ev_io_init(&c->rio, tcp_rx_cb, fd, EV_READ);
    ev_io_init(&c->wio, wio_cb, fd, EV_WRITE);
    ev_init(&c->probe, tcp_rx_probe_cb);
    return c;
}

static int tcp_connect(px_tp *ptp, const px_uri *uri, const px_observer *obs, px_tp_conn **out)
{
    tcp_tp *tp = TP(ptp);
    tcp_sockaddr sa;
    tcp_opts o;
    int rc = tcp_addr_from_uri(uri, 0, &sa);
    if (rc == 0)
        rc = tcp_opts_parse(uri, &o);
    if (rc)
        return rc;
    int fd = socket(sa.u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return tcp_err(errno);
    tcp_opts_apply(fd, sa.u.sa.sa_family, &o);
    tcp_conn *c = conn_new(tp, fd);
    if (!c) {
        close(fd);
        return -PX_ENOMEM;
    }
    c->base.obs = *obs;
    c->state = TCP_CONNECTING;
    c->peer = sa;
    /* Whatever connect() says, the owner hears it from the loop. */
    if (connect(fd, &sa.u.sa, sa.len) == 0)
        defer_event(c, PX_TP_EV_CONNECTED, 0);
    else if (errno == EINPROGRESS || errno == EINTR)
        ev_io_start(tp->host.loop, &c->wio);
    else if (errno == EAGAIN && sa.u.sa.sa_family == AF_UNIX)
        defer_event(c, PX_TP_EV_DISCONNECTED, -PX_ECONNREFUSED); /* backlog full */
    else
        defer_event(c, PX_TP_EV_DISCONNECTED, tcp_err(errno));
    *out = &c->base;
    return 0;
}

static int tcp_accept(px_tp_conn *pc, const px_observer *obs)
{
    tcp_conn *c = CONN(pc);
    if (c->state != TCP_PENDING || c->closed)
        return -PX_EINVAL;
    px_list_del(&c->lst_link);
    c->lst = NULL;
    c->base.obs = *obs;
    conn_open(c);
    return 0;
}

static void tcp_close(px_tp_conn *pc)
{
    tcp_conn *c = CONN(pc);
    if (c->closed)
        return;
    c->closed = 1;
    px_list_del(&c->lst_link);
    stop_io(c);
    if (c->fd >= 0) {
        /* Frames still queued will never leave: this is an abort, and the
         * peer should hear so at once (a reset) rather than wait behind
         * data it may have no room to read. A close after the FIN exchange
         * has nothing queued and ends with a plain FIN. */
        if (c->txq) {
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            (void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        close(c->fd);
        c->fd = -1;
    }
    /* Hold a reference so SEND_COMPLETE upcalls below cannot free us. */
    c->in_upcall++;
    if (c->state != TCP_PENDING)
        tcp_tx_drain_closed(c);
    if (--c->in_upcall == 0)
        conn_free(c);
}

static void tcp_reject(px_tp_conn *pc, int reason)
{
    /* A stream socket cannot carry a reason: the peer sees EOF. */
    tcp_close(pc);
}

static int tcp_peer_uri(px_tp_conn *pc, char *buf, size_t len)
{
    return tcp_addr_to_uri(&CONN(pc)->peer, buf, len);
}

/* Paused, the reader stops at the next frame boundary (tcp_rx.c); resumed,
 * what was buffered meanwhile is delivered from the loop, never from
 * inside this call. */
static void tcp_rx_pause(px_tp_conn *pc, int paused)
{
    tcp_conn *c = CONN(pc);
    if (c->closed || c->rx_paused == (unsigned)!!paused)
        return;
    c->rx_paused = !!paused;
    if (!paused && c->state == TCP_OPEN && px_list_unlinked(&c->defer_link))
        defer_event(c, TCP_EV_RESUME, 0);
}

/* ---- listeners ------------------------------------------------------------ */

static void listener_free(tcp_listener *l)
{
    px_list_del(&l->link);
    free(l);
}

static void pause_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    tcp_listener *l = PX_CONTAINER_OF(w, tcp_listener, pause);
    ev_io_start(loop, &l->io);
}

/* Out of descriptors: the pending connection stays in the backlog and the
 * listener stays readable, so stop watching it briefly instead of spinning. */
static void accept_backoff(tcp_listener *l, int err)
{
    PX_LOGW("tcp: accept: %s; pausing the listener for 100 ms", strerror(err));
    ev_io_stop(l->tp->host.loop, &l->io);
    ev_timer_set(&l->pause, 0.1, 0.);
    ev_timer_start(l->tp->host.loop, &l->pause);
}

/* Offer one accepted socket. Returns -1 when the listener was closed. */
static int offer(tcp_listener *l, int fd, const tcp_sockaddr *peer)
{
    tcp_opts_apply(fd, l->addr.u.sa.sa_family, &l->opts);
    tcp_conn *c = conn_new(l->tp, fd);
    if (!c) {
        PX_LOGW("tcp: out of memory for an incoming connection");
        close(fd);
        return 0;
    }
    c->state = TCP_PENDING;
    c->peer = *peer;
    c->lst = l;
    px_list_push_back(&l->pending, &c->lst_link);
    /* The conn is not touched after this: the owner may accept, reject or
     * keep it, or close the listener (which closes it). */
    l->in_upcall++;
    l->tp->nevents++;
    l->base.obs.notify(l->base.obs.self, PX_TP_EV_NEW_CONN, &c->base);
    if (--l->in_upcall == 0 && l->closed) {
        listener_free(l);
        return -1;
    }
    return l->closed ? -1 : 0;
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    tcp_listener *l = PX_CONTAINER_OF(w, tcp_listener, io);
    for (int i = 0; i < 256; i++) {
        tcp_sockaddr peer;
        peer.len = sizeof peer.u;
        int fd = accept4(l->fd, &peer.u.sa, &peer.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                accept_backoff(l, errno);
            else if (errno != EAGAIN && errno != EWOULDBLOCK)
                PX_LOGW("tcp: accept: %s", strerror(errno));
            return;
        }
        if (offer(l, fd, &peer) < 0)
            return;
    }
}

/* A unix socket file nobody listens on is left over from a dead process:
 * take it over. One that answers belongs to a live server: leave it. */
static int unix_stale(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0 || !S_ISSOCK(st.st_mode))
        return 0;
    /* Non-blocking: a live server with a full backlog must not stall us. */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    if (n >= sizeof un.sun_path) { /* bind refuses such a path anyway */
        close(fd);
        return 0;
    }
    memcpy(un.sun_path, path, n + 1);
    int stale = connect(fd, (struct sockaddr *)&un, sizeof un) < 0 && errno == ECONNREFUSED;
    close(fd);
    return stale;
}

static int bind_listen(int fd, tcp_sockaddr *sa)
{
    int rc = bind(fd, &sa->u.sa, sa->len);
    if (rc < 0 && errno == EADDRINUSE && sa->u.sa.sa_family == AF_UNIX &&
        unix_stale(sa->u.un.sun_path)) {
        PX_LOGI("tcp: removing stale socket %s", sa->u.un.sun_path);
        unlink(sa->u.un.sun_path);
        rc = bind(fd, &sa->u.sa, sa->len);
    }
    if (rc < 0 || listen(fd, 4096) < 0)
        return tcp_err(errno);
    /* Learn the real port when 0 was asked for. */
    if (sa->u.sa.sa_family != AF_UNIX) {
        sa->len = sizeof sa->u;
        if (getsockname(fd, &sa->u.sa, &sa->len) < 0)
            return tcp_err(errno);
    }
    return 0;
}

static int tcp_listen(px_tp *ptp, const px_uri *uri, const px_observer *obs, px_tp_listener **out)
{
    tcp_tp *tp = TP(ptp);
    tcp_listener *l = calloc(1, sizeof *l);
    if (!l)
        return -PX_ENOMEM;
    int rc = tcp_addr_from_uri(uri, 1, &l->addr);
    if (rc == 0)
        rc = tcp_opts_parse(uri, &l->opts);
    if (rc) {
        free(l);
        return rc;
    }
    int family = l->addr.u.sa.sa_family;
    l->fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l->fd < 0) {
        rc = tcp_err(errno);
        free(l);
        return rc;
    }
    int one = 1;
    if (family != AF_UNIX)
        (void)setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    rc = bind_listen(l->fd, &l->addr);
    if (rc) {
        close(l->fd);
        free(l);
        return rc;
    }
    struct stat st;
    if (family == AF_UNIX && stat(l->addr.u.un.sun_path, &st) == 0) {
        l->unix_dev = st.st_dev;
        l->unix_ino = st.st_ino;
    }
    l->base.ops = &px_tcp_transport;
    l->base.tp = ptp;
    l->base.obs = *obs;
    l->tp = tp;
    px_list_init(&l->pending);
    px_list_push_back(&tp->listeners, &l->link);
    ev_io_init(&l->io, accept_cb, l->fd, EV_READ);
    ev_init(&l->pause, pause_cb);
    ev_io_start(tp->host.loop, &l->io);
    *out = &l->base;
    return 0;
}

static int tcp_listener_uri(px_tp_listener *pl, char *buf, size_t len)
{
    return tcp_addr_to_uri(&LST(pl)->addr, buf, len);
}

static void tcp_listener_close(px_tp_listener *pl)
{
    tcp_listener *l = LST(pl);
    if (l->closed)
        return;
    l->closed = 1;
    ev_io_stop(l->tp->host.loop, &l->io);
    ev_timer_stop(l->tp->host.loop, &l->pause);
    /* Only unlink the file if it is still the socket we created. */
    struct stat st;
    if (l->addr.u.sa.sa_family == AF_UNIX && stat(l->addr.u.un.sun_path, &st) == 0 &&
        st.st_dev == l->unix_dev && st.st_ino == l->unix_ino)
        unlink(l->addr.u.un.sun_path);
    close(l->fd);
    px_list *n;
    while ((n = px_list_first(&l->pending)))
        tcp_close(&PX_CONTAINER_OF(n, tcp_conn, lst_link)->base);
    if (l->in_upcall == 0)
        listener_free(l);
}

/* ---- the instance ---------------------------------------------------------- */

static uint32_t pow2_at_least(uint64_t x)
{
    uint32_t p = 1;
    while (p < x && p < (1u << 31))
        p <<= 1;
    return p;
}

static int tcp_init(const px_tp_host *host, px_tp **out)
{
    if (!host || !host->loop)
        return -PX_EINVAL;
    tcp_tp *tp = calloc(1, sizeof *tp);
    if (!tp)
        return -PX_ENOMEM;
    tp->host = *host;
    /* Every frame delivered in place must fit in the ring twice over, so a
     * full ring always holds a complete frame and reading never stalls. */
    uint64_t small = (uint64_t)PX_FRAME_HDR_LEN + PX_FRAME_MAX_EXT + host->limits.max_hdr +
                     host->inline_threshold;
    tp->scratch_size = (uint32_t)small;
    tp->ring_size = pow2_at_least(small * 2 > TCP_RING_MIN ? small * 2 : TCP_RING_MIN);
    px_list_init(&tp->deferred);
    px_list_init(&tp->dirty);
    px_list_init(&tp->hot);
    px_list_init(&tp->conns);
    px_list_init(&tp->listeners);
    ev_prepare_init(&tp->prep, prepare_cb);
    *out = (px_tp *)(void *)tp;
    return 0;
}

static void tcp_fini(px_tp *ptp)
{
    tcp_tp *tp = TP(ptp);
    if (!px_list_empty(&tp->conns) || !px_list_empty(&tp->listeners))
        PX_LOGE("tcp: fini with connections or listeners still open (leaked)");
    ev_prepare_stop(tp->host.loop, &tp->prep);
    free(tp);
}

static void tcp_get_caps(px_tp *ptp, px_tp_caps *out)
{
    tcp_tp *tp = TP(ptp);
    *out = (px_tp_caps){
        .flags = PX_TP_CAP_RX_DIRECT | PX_TP_CAP_ZCOPY_SEND | PX_TP_CAP_POLL,
        .max_iov = TCP_MAX_IOV,
        .max_inline = tp->host.inline_threshold,
        .max_msg = UINT32_MAX,
    };
}

/* Busy-poll: deliver deferred events, flush, and read the conns that had
 * data recently (a conn cools down after TCP_HOT_IDLE empty reads, so
 * thousands of idle conns cost nothing here; the loop's watchers still
 * catch them). */
static int tcp_poll(px_tp *ptp)
{
    tcp_tp *tp = TP(ptp);
    if (tp->in_progress)
        return 0; /* re-entered from an upcall: the outer call finishes the work */
    uint64_t before = tp->nevents;
    tcp_progress(tp);
    px_list todo;
    px_list_init(&todo);
    px_list_splice_back(&todo, &tp->hot);
    px_list *n;
    while ((n = px_list_pop_front(&todo))) {
        tcp_conn *c = PX_CONTAINER_OF(n, tcp_conn, hot_link);
        px_list_push_back(&tp->hot, &c->hot_link);
        c->idle_polls++; /* tcp_rx_read() resets it when bytes arrive */
        if (c->in_rx || c->state != TCP_OPEN || tcp_rx_read(c) < 0)
            continue;
        if (c->idle_polls >= TCP_HOT_IDLE)
            px_list_del(&c->hot_link);
    }
    tcp_progress(tp);
    return (int)(tp->nevents - before);
}

static const char *const tcp_schemes[] = {"tcp", "unix", NULL};

const px_transport px_tcp_transport = {
    .abi = PX_TRANSPORT_ABI,
    .name = "tcp",
    .schemes = tcp_schemes,
    .init = tcp_init,
    .fini = tcp_fini,
    .get_caps = tcp_get_caps,
    .listen = tcp_listen,
    .listener_uri = tcp_listener_uri,
    .listener_close = tcp_listener_close,
    .connect = tcp_connect,
    .accept = tcp_accept,
    .reject = tcp_reject,
    .send = tcp_tx_send,
    .close = tcp_close,
    .peer_uri = tcp_peer_uri,
    .check_uri = tcp_check_uri,
    .rx_pause = tcp_rx_pause,
    .poll = tcp_poll,
};
