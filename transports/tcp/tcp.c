/* The stream-socket transport: tcp:// and unix://.
 *
 * This file holds the instance, the connection life cycle (listen, connect,
 * accept, reject, close) and the socket watcher. Receive is in tcp_rx.c,
 * send in tcp_tx.c, addresses in tcp_addr.c; upcalls, deferred events, the
 * end-of-iteration flush and the lending rule are the chassis's.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "transports/tcp/tcp.h"

static tcp_tp *TP(px_tp *p)
{
    return (tcp_tp *)(void *)p;
}
static tcp_conn *CONN(px_tp_conn *p)
{
    return (tcp_conn *)(void *)p;
}
static tcp_listener *LST(px_tp_listener *p)
{
    return (tcp_listener *)(void *)p;
}

/* ---- the socket watcher ---------------------------------------------------------- */

/* Read while open (unless paused with a full ring: tcp_rx.c stops it);
 * write interest only while connecting or while the socket is full. */
void tcp_watch(tcp_conn *c)
{
    if (c->fd < 0)
        return;
    int ev = 0;
    if (c->state == TCP_CONNECTING)
        ev = PX_TP_WRITE;
    else if (c->state == TCP_OPEN)
        ev = (c->rx_paused && c->wr - c->rd > c->ring_mask ? 0 : PX_TP_READ) |
             (c->want_w ? PX_TP_WRITE : 0);
    tcp_host(c)->ops->io_set(tcp_host(c), &c->io, ev);
}

static void conn_open(tcp_conn *c)
{
    c->state = TCP_OPEN;
    tcp_watch(c);
    if (c->base.sends.head)
        px_tpc_mark_dirty(&c->base);
}

/* connect() finished (from the watcher): tell the owner. */
static void connect_done(tcp_conn *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        px_tpc_disconnect(&c->base, tcp_err(err));
        return;
    }
    conn_open(c);
    px_tpc_connected(&c->base);
}

static void conn_io_cb(px_tp_watch *w, int revents, void *arg)
{
    tcp_conn *c = arg;
    if (c->state == TCP_CONNECTING) {
        connect_done(c);
        return;
    }
    if ((revents & PX_TP_WRITE) && tcp_tx_flush(&c->base) < 0)
        return;
    if ((revents & PX_TP_READ) && !c->in_rx)
        tcp_rx_read(c);
}

/* ---- connections ------------------------------------------------------------------ */

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
    px_tpc_conn_init(&c->base, &tp->base);
    px_tpc_lendable(&c->base, LEND_RING, c->ring, tp->ring_size);
    px_tpc_lendable(&c->base, LEND_SCRATCH, c->scratch, 2 * (size_t)tp->scratch_size);
    c->tp = tp;
    c->fd = fd;
    c->ring_mask = tp->ring_size - 1;
    c->rx_mode = RX_RING;
    const px_tp_host *h = tp->base.host;
    h->ops->io_init(h, &c->io, fd, conn_io_cb, c);
    h->ops->timer_init(h, &c->probe, tcp_rx_probe_cb, c);
    return c;
}

static void tcp_conn_free(px_tp_conn *pc)
{
    tcp_conn *c = CONN(pc);
    free(c->ring);
    free(c->scratch);
    free(c->own);
    free(c);
}

/* The link is gone (px_tpc_disconnect): no more watching, no socket. */
static void tcp_stop_io(px_tp_conn *pc)
{
    tcp_conn *c = CONN(pc);
    const px_tp_host *h = tcp_host(c);
    c->state = TCP_DEAD;
    h->ops->io_fini(h, &c->io);
    h->ops->timer_stop(h, &c->probe);
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
}

static int tcp_connect(px_tp *ptp, const px_uri *uri, const px_tp_owner *owner, px_tp_conn **out)
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
    c->base.owner = *owner;
    c->state = TCP_CONNECTING;
    c->peer = sa;
    /* Whatever connect() says, the owner hears it from the loop. */
    if (connect(fd, &sa.u.sa, sa.len) == 0) {
        conn_open(c);
        px_tpc_defer(&c->base, PX_TP_EV_CONNECTED, 0);
    } else if (errno == EINPROGRESS || errno == EINTR) {
        tcp_watch(c);
    } else if (errno == EAGAIN && sa.u.sa.sa_family == AF_UNIX) {
        px_tpc_defer(&c->base, PX_TP_EV_DISCONNECTED, -PX_ECONNREFUSED); /* backlog full */
    } else {
        px_tpc_defer(&c->base, PX_TP_EV_DISCONNECTED, tcp_err(errno));
    }
    *out = &c->base;
    return 0;
}

static int tcp_accept(px_tp_conn *pc, const px_tp_owner *owner)
{
    tcp_conn *c = CONN(pc);
    int rc = px_tpc_accept(pc, owner);
    if (rc < 0)
        return rc;
    conn_open(c);
    return 0;
}

static void tcp_close(px_tp_conn *pc, px_tp_fifo *unfinished)
{
    tcp_conn *c = CONN(pc);
    if (pc->closed)
        return;
    const px_tp_host *h = tcp_host(c);
    h->ops->io_fini(h, &c->io);
    h->ops->timer_stop(h, &c->probe);
    if (c->fd >= 0) {
        /* Frames still queued will never leave: this is an abort, and the
         * peer should hear so at once (a reset) rather than wait behind
         * data it may have no room to read. A close after the FIN exchange
         * has nothing queued and ends with a plain FIN. */
        if (pc->sends.head) {
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            (void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        close(c->fd);
        c->fd = -1;
    }
    px_tpc_close(pc, unfinished);
}

static void tcp_reject(px_tp_conn *pc, int reason)
{
    /* A stream socket cannot carry a reason: the peer sees EOF. */
    tcp_close(pc, NULL);
}

static int tcp_peer_uri(px_tp_conn *pc, char *buf, size_t len)
{
    return tcp_addr_to_uri(&CONN(pc)->peer, buf, len);
}

/* Paused, the reader stops at the next frame boundary (tcp_rx.c); resumed,
 * what was buffered meanwhile is delivered from the loop (kick), never
 * from inside this call. */
static void tcp_rx_pause(px_tp_conn *pc, int paused)
{
    tcp_conn *c = CONN(pc);
    if (pc->closed || c->rx_paused == (unsigned)!!paused)
        return;
    c->rx_paused = !!paused;
    if (!paused && c->state == TCP_OPEN)
        px_tpc_defer(pc, PX_TPC_KICK, 0);
}

/* Busy-poll one conn of the hot list: read it without waiting for the
 * loop. It cools after a while without bytes; the watcher still sees it. */
static int tcp_service(px_tp_conn *pc)
{
    tcp_conn *c = CONN(pc);
    if (c->in_rx || c->state != TCP_OPEN)
        return 0;
    uint64_t before = pc->rx_bytes;
    if (tcp_rx_read(c) < 0)
        return -1;
    if (pc->rx_bytes != before)
        return 1;
    if (px_tpc_hot_idle(pc))
        px_tpc_cool(pc);
    return 0;
}

/* ---- listeners ---------------------------------------------------------------------- */

static void tcp_listener_free(px_tp_listener *pl)
{
    free(LST(pl));
}

static void pause_cb(px_tp_watch *w, void *arg)
{
    tcp_listener *l = arg;
    const px_tp_host *h = l->tp->base.host;
    h->ops->io_set(h, &l->io, PX_TP_READ);
}

/* Out of descriptors: the pending connection stays in the backlog and the
 * listener stays readable, so stop watching it briefly instead of spinning. */
static void accept_backoff(tcp_listener *l, int err)
{
    const px_tp_host *h = l->tp->base.host;
    PX_TP_LOG(PX_LOG_WARN, "tcp: accept: %s; pausing the listener for 100 ms", strerror(err));
    h->ops->io_set(h, &l->io, 0);
    h->ops->timer_start(h, &l->pause, 100000, 0);
}

/* Offer one accepted socket. Returns -1 when the listener was closed. */
static int offer(tcp_listener *l, int fd, const tcp_sockaddr *peer)
{
    tcp_opts_apply(fd, l->addr.u.sa.sa_family, &l->opts);
    tcp_conn *c = conn_new(l->tp, fd);
    if (!c) {
        PX_TP_LOG(PX_LOG_WARN, "tcp: out of memory for an incoming connection");
        close(fd);
        return 0;
    }
    c->state = TCP_PENDING;
    c->peer = *peer;
    return px_tpc_offer(&l->base, &c->base);
}

static void accept_cb(px_tp_watch *w, int revents, void *arg)
{
    tcp_listener *l = arg;
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
                PX_TP_LOG(PX_LOG_WARN, "tcp: accept: %s", strerror(errno));
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
        PX_TP_LOG(PX_LOG_INFO, "tcp: removing stale socket %s", sa->u.un.sun_path);
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

static int tcp_listen(px_tp *ptp, const px_uri *uri, const px_tp_listen_owner *owner,
                      px_tp_listener **out)
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
    px_tpc_listener_init(&l->base, ptp, owner);
    l->tp = tp;
    const px_tp_host *h = ptp->host;
    h->ops->io_init(h, &l->io, l->fd, accept_cb, l);
    h->ops->timer_init(h, &l->pause, pause_cb, l);
    h->ops->io_set(h, &l->io, PX_TP_READ);
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
    if (pl->closed)
        return;
    const px_tp_host *h = l->tp->base.host;
    h->ops->io_fini(h, &l->io);
    h->ops->timer_stop(h, &l->pause);
    /* Only unlink the file if it is still the socket we created. */
    struct stat st;
    if (l->addr.u.sa.sa_family == AF_UNIX && stat(l->addr.u.un.sun_path, &st) == 0 &&
        st.st_dev == l->unix_dev && st.st_ino == l->unix_ino)
        unlink(l->addr.u.un.sun_path);
    close(l->fd);
    px_tpc_listener_close(pl);
}

/* ---- the instance -------------------------------------------------------------------- */

static uint32_t pow2_at_least(uint64_t x)
{
    uint32_t p = 1;
    while (p < x && p < (1u << 31))
        p <<= 1;
    return p;
}

static int tcp_init(const px_tp_host *host, px_tp **out)
{
    if (!host)
        return -PX_EINVAL;
    tcp_tp *tp = calloc(1, sizeof *tp);
    if (!tp)
        return -PX_ENOMEM;
    px_tpc_init(&tp->base, &px_tcp_transport, host);
    /* Every frame delivered in place must fit in the ring twice over, so a
     * full ring always holds a complete frame and reading never stalls. */
    uint64_t small = (uint64_t)PX_FRAME_HDR_LEN + PX_FRAME_MAX_EXT + host->limits.max_hdr +
                     host->inline_threshold;
    tp->scratch_size = (uint32_t)small;
    tp->ring_size = pow2_at_least(small * 2 > TCP_RING_MIN ? small * 2 : TCP_RING_MIN);
    *out = &tp->base;
    return 0;
}

static void tcp_fini(px_tp *ptp)
{
    px_tpc_fini(ptp);
    free(TP(ptp));
}

static void tcp_get_caps(px_tp *ptp, px_tp_caps *out)
{
    *out = (px_tp_caps){
        .flags = PX_TP_CAP_RX_DIRECT | PX_TP_CAP_ZCOPY_SEND,
        .max_iov = TCP_MAX_IOV,
        .max_inline = ptp->host->inline_threshold,
        .max_msg = UINT32_MAX,
    };
}

static const char *const tcp_schemes[] = {"tcp", "unix", NULL};

/* What tcp_opts_parse() accepts (tcp_addr.c), for both schemes; a listener
 * applies them to every socket it accepts. */
static const px_tp_option tcp_options[] = {
    {"nodelay", "0|1", "1", "0", PX_TP_OPT_CONNECT | PX_TP_OPT_LISTEN,
     "TCP_NODELAY: 1 sends small frames at once, 0 lets Nagle batch them (no effect on unix://)"},
    {"sndbuf", "<bytes> 1..2^30", "the kernel's", "1048576", PX_TP_OPT_CONNECT | PX_TP_OPT_LISTEN,
     "SO_SNDBUF: the socket's send buffer (the kernel may double or cap it)"},
    {"rcvbuf", "<bytes> 1..2^30", "the kernel's", "1048576", PX_TP_OPT_CONNECT | PX_TP_OPT_LISTEN,
     "SO_RCVBUF: the socket's receive buffer (the kernel may double or cap it)"},
    {NULL, NULL, NULL, NULL, 0, NULL},
};

const px_transport px_tcp_transport = {
    .abi = PX_TRANSPORT_ABI,
    .name = "tcp",
    .schemes = tcp_schemes,
    .init = tcp_init,
    .fini = tcp_fini,
    .get_caps = tcp_get_caps,
    .check_uri = tcp_check_uri,
    .listen = tcp_listen,
    .listener_uri = tcp_listener_uri,
    .listener_close = tcp_listener_close,
    .connect = tcp_connect,
    .accept = tcp_accept,
    .reject = tcp_reject,
    .send = tcp_tx_send,
    .close = tcp_close,
    .peer_uri = tcp_peer_uri,
    .rx_pause = tcp_rx_pause,
    .conn_free = tcp_conn_free,
    .listener_free = tcp_listener_free,
    .stop_io = tcp_stop_io,
    .flush = tcp_tx_flush,
    .kick = tcp_rx_resume,
    .service = tcp_service,
    .options = tcp_options,
};
