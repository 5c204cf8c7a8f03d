/* The shared-memory transport: shm://name.
 *
 * This file holds the instance, the connection life cycle (listen, connect,
 * accept, reject, close), the watchers of the rendezvous socket and the
 * eventfd, and the before-sleep hook (prepare): it spins a little on the
 * awake conns, then puts each idle one to sleep, advertising it in the
 * ring so the peer knows to write our eventfd. Upcalls, deferred events,
 * the end-of-iteration flush and busy polling are the chassis's; service()
 * drains an awake conn without any syscall. The rendezvous is in
 * shm_rdv.c, the ring in shm_ring.c, send in shm_tx.c, receive in
 * shm_rx.c, large frames in shm_bulk.c.
 *
 * Liveness: the rendezvous socket stays connected for the life of the
 * connection, so a peer that dies (even by SIGKILL) is seen as EOF. A peer
 * that hangs while alive is not detected here: the session layer's
 * keepalive covers that.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "transports/shm/shm.h"

static shm_tp *TP(px_tp *p)
{
    return (shm_tp *)(void *)p;
}
static shm_conn *CONN(px_tp_conn *p)
{
    return (shm_conn *)(void *)p;
}
static shm_listener *LST(px_tp_listener *p)
{
    return (shm_listener *)(void *)p;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- statistics and the end of a conn ------------------------------------------- */

static void stats_add(shm_stats *to, const shm_stats *s)
{
    to->tx_inline += s->tx_inline;
    to->tx_bounced += s->tx_bounced;
    to->tx_cma += s->tx_cma;
    to->tx_pool += s->tx_pool;
    to->rx_pool += s->rx_pool;
    to->pool_announced += s->pool_announced;
    to->pool_mapped += s->pool_mapped;
    to->tx_chunked += s->tx_chunked;
    to->rx_inline += s->rx_inline;
    to->rx_cma += s->rx_cma;
    to->rx_chunked += s->rx_chunked;
    to->wakes_sent += s->wakes_sent;
}

static void shm_conn_free(px_tp_conn *pc)
{
    shm_conn *c = CONN(pc);
    shm_stats *s = &c->stats;
    if (c->state != SHM_HANDSHAKE)
        PX_TP_LOG(PX_LOG_INFO,
                  "shm: conn %s pid %d closed: sent %llu inline, %llu cma, %llu pool, %llu "
                  "chunked; received %llu inline, %llu cma, %llu pool, %llu chunked; %llu "
                  "wake-ups",
                  c->name, (int)c->peer_pid, (unsigned long long)s->tx_inline,
                  (unsigned long long)s->tx_cma, (unsigned long long)s->tx_pool,
                  (unsigned long long)s->tx_chunked, (unsigned long long)s->rx_inline,
                  (unsigned long long)s->rx_cma, (unsigned long long)s->rx_pool,
                  (unsigned long long)s->rx_chunked, (unsigned long long)s->wakes_sent);
    stats_add(&c->tp->stats, s);
    shm_rdv_unmap(c);
    shm_pool_free(c);
    if (c->sock >= 0)
        close(c->sock);
    if (c->efd_self >= 0)
        close(c->efd_self);
    if (c->efd_peer >= 0)
        close(c->efd_peer);
    free(c->scratch);
    free(c->own);
    free(c);
}

void shm_wake_peer(shm_conn *c)
{
    uint64_t one = 1;
    c->stats.wakes_sent++;
    /* EAGAIN means the counter is already non-zero: the peer will wake. */
    if (write(c->efd_peer, &one, sizeof one) < 0 && errno != EAGAIN)
        PX_TP_LOG(PX_LOG_DEBUG, "shm: eventfd write: %s", strerror(errno));
}

static void watchers_stop(shm_conn *c)
{
    const px_tp_host *h = shm_host(c);
    h->ops->io_fini(h, &c->sio);
    h->ops->io_fini(h, &c->eio);
    h->ops->timer_stop(h, &c->hs_timer);
}

/* The link is gone (px_tpc_disconnect). The mapping stays until close:
 * frames delivered in place may still be referenced. */
static void shm_stop_io(px_tp_conn *pc)
{
    shm_conn *c = CONN(pc);
    c->state = SHM_DEAD;
    watchers_stop(c);
    shm_tx_close_gate(c); /* the queued sends are about to go back */
    /* The peer learns now (EOF), not when our owner gets round to close:
     * it may be waiting on us for room or acks. */
    if (c->sock >= 0)
        shutdown(c->sock, SHUT_RDWR);
}

/* ---- the data path from the loop ----------------------------------------------------- */

/* Receive, then send and complete. >0 when something happened, 0 when
 * nothing did, -1 when the conn is gone. */
static int conn_service(shm_conn *c)
{
    if (c->state != SHM_OPEN)
        return 0;
    uint64_t before = c->tp->base.nevents;
    if (!c->in_rx && shm_rx_drain(c) < 0)
        return -1;
    if (shm_tx_flush(&c->base) < 0)
        return -1;
    return c->tp->base.nevents != before;
}

static int rx_ready(shm_conn *c)
{
    return (!c->rx_paused || c->rx_mode == RX_CHUNKS) && shm_ring_nonempty(&c->rx);
}

/* Advertise that we are about to sleep, then look once more (the Dekker
 * half of the wake-up protocol in shm.h). Returns 1 when the conn can
 * sleep: every wake-up it needs is armed. */
static int try_sleep(shm_conn *c)
{
    if (c->state != SHM_OPEN)
        return 1;
    shm_ring_ctl *ctl = c->rx.ctl;
    __atomic_store_n(&ctl->cons_sleep, 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (rx_ready(c)) {
        __atomic_store_n(&ctl->cons_sleep, 0, __ATOMIC_RELAXED);
        return 0;
    }
    if (shm_tx_waiting(c) && shm_tx_arm_wait(c))
        return 0;
    return 1;
}

/* The service op: busy-polling an awake conn. After a while without work
 * it goes to sleep (its eventfd wakes it through the loop), so thousands
 * of idle conns cost nothing here. */
static int shm_service(px_tp_conn *pc)
{
    shm_conn *c = CONN(pc);
    int r = conn_service(c);
    if (r == 0 && px_tpc_hot_idle(pc) && try_sleep(c))
        px_tpc_cool(pc);
    return r;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static int has_rx(px_tp_conn *pc, void *found)
{
    shm_conn *c = CONN(pc);
    if (c->state == SHM_OPEN && rx_ready(c)) {
        *(int *)found = 1;
        return 2; /* keep, and stop looking */
    }
    return 1;
}

static int service_one(px_tp_conn *pc, void *arg)
{
    return conn_service(CONN(pc)) < 0 ? -1 : 1;
}

static int sleep_or_keep(px_tp_conn *pc, void *awake)
{
    if (try_sleep(CONN(pc)))
        return 0;
    *(int *)awake = 1;
    return 1;
}

/* Spin up to spin_us on the awake conns before sleeping: a peer that
 * answers within that time costs no wake-up on either side. */
static int spin(shm_tp *tp)
{
    if (!tp->spin_us || tp->base.hot.next == &tp->base.hot)
        return 0;
    uint64_t end = now_ns() + (uint64_t)tp->spin_us * 1000u;
    int found = 0;
    do {
        px_tpc_hot_each(&tp->base, has_rx, &found);
        if (found)
            return 1;
        cpu_relax();
    } while (now_ns() < end);
    return 0;
}

/* Before the loop may sleep: spin, then arm every awake conn's wake-ups
 * (cooling those that can sleep). In a busy-polling context's non-blocking
 * pass nothing needs a wake-up yet: arming one would cost the peer an
 * eventfd write. Nonzero keeps the loop awake. */
static int shm_prepare(px_tp *ptp, int may_block)
{
    shm_tp *tp = TP(ptp);
    tp->polling = !may_block || tp->spin_us != 0;
    if (!may_block)
        return 0;
    int awake = 0;
    if (spin(tp)) {
        px_tpc_hot_each(ptp, service_one, NULL);
        awake = 1;
    }
    px_tpc_hot_each(ptp, sleep_or_keep, &awake);
    return awake;
}

static void eio_cb(px_tp_watch *w, int revents, void *arg)
{
    shm_conn *c = arg;
    uint64_t v;
    while (read(c->efd_self, &v, sizeof v) < 0 && errno == EINTR)
        ;
    px_tpc_mark_hot(&c->base);
    conn_service(c);
}

int shm_peer_gone(shm_conn *c, int reason)
{
    /* What it wrote before dying is still delivered... */
    for (int i = 0; i < 1024 && c->state == SHM_OPEN && !c->in_rx; i++) {
        int n = shm_rx_drain(c);
        if (n < 0)
            return -1;
        if (n == 0)
            break;
    }
    /* ...and what it acked is finished. */
    if (c->state == SHM_OPEN && shm_tx_complete(c) < 0)
        return -1;
    if (c->state != SHM_OPEN)
        return -1;
    return px_tpc_disconnect(&c->base, reason);
}

/* After the rendezvous the socket carries only shared-pool announcements
 * (read eagerly here, or when a record names a new region), then EOF. */
static void sio_open(shm_conn *c)
{
    if (c->in_rx)
        return; /* the outer drain finishes; the watcher fires again */
    int err;
    int rc = shm_pool_rx_sock(c, &err);
    if (rc < 0) {
        px_tpc_fail(&c->base, rc);
    } else if (rc == 1) {
        int mid = c->rx_mode != RX_RING || c->base.sends.head;
        shm_peer_gone(c, err ? shm_err(err) : mid ? -PX_ECONNRESET : -PX_EDISCONNECTED);
    }
}

/* ---- connections ---------------------------------------------------------------------- */

/* The listener's list of conns still in the rendezvous (not the chassis's:
 * they are not offered yet). */
static void hs_add(shm_listener *l, shm_conn *c)
{
    px_tp_link *n = &c->hs_link, *head = &l->handshakes;
    n->prev = head->prev;
    n->next = head;
    head->prev->next = n;
    head->prev = n;
}

static void hs_del(shm_conn *c)
{
    px_tp_link *n = &c->hs_link;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

static shm_conn *hs_conn(px_tp_link *n)
{
    return (shm_conn *)(void *)((char *)n - offsetof(shm_conn, hs_link));
}

static void drop_handshake(shm_conn *c)
{
    hs_del(c);
    watchers_stop(c);
    px_tpc_close(&c->base, NULL);
}

/* Offer a conn whose rendezvous is done. */
static void offer(shm_listener *l, shm_conn *c)
{
    const px_tp_host *h = shm_host(c);
    hs_del(c);
    c->state = SHM_PENDING;
    h->ops->io_set(h, &c->sio, 0);
    h->ops->timer_stop(h, &c->hs_timer);
    px_tpc_offer(&l->base, &c->base);
}

static void sio_cb(px_tp_watch *w, int revents, void *arg)
{
    shm_conn *c = arg;
    int rc;
    switch (c->state) {
    case SHM_HANDSHAKE:
        rc = shm_rdv_server_hello(c);
        if (rc < 0) {
            PX_TP_LOG(PX_LOG_WARN, "shm: %s: refusing a client: %s", c->name, px_strerror(rc));
            drop_handshake(c);
        } else if (rc > 0) {
            offer(c->lst, c);
        }
        return;
    case SHM_CONNECTING:
        rc = shm_rdv_client_reply(c);
        if (rc < 0) {
            px_tpc_disconnect(&c->base, rc);
        } else if (rc > 0) {
            shm_conn_opened(c);
            px_tpc_connected(&c->base);
        }
        return;
    case SHM_OPEN:
        sio_open(c);
        return;
    default:
        shm_host(c)->ops->io_set(shm_host(c), w, 0);
        return;
    }
}

static void hs_timer_cb(px_tp_watch *w, void *arg)
{
    shm_conn *c = arg;
    if (c->state == SHM_HANDSHAKE) {
        PX_TP_LOG(PX_LOG_WARN, "shm: %s: a client did not complete the rendezvous in time",
                  c->name);
        drop_handshake(c);
    }
}

void shm_conn_opened(shm_conn *c)
{
    const px_tp_host *h = shm_host(c);
    c->state = SHM_OPEN;
    h->ops->io_init(h, &c->eio, c->efd_self, eio_cb, c);
    h->ops->io_set(h, &c->eio, PX_TP_READ);
    h->ops->io_set(h, &c->sio, PX_TP_READ);
    px_tpc_lendable(&c->base, LEND_RING, c->rx.data, c->rx.size);
    if (c->opts.spin_us > c->tp->spin_us)
        c->tp->spin_us = c->opts.spin_us;
    px_tpc_mark_hot(&c->base);
}

static shm_conn *conn_new(shm_tp *tp, int sock, const char *name, const shm_opts *o)
{
    shm_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    const px_tp_host *h = tp->base.host;
    size_t scratch = PX_FRAME_HDR_LEN + PX_FRAME_MAX_EXT + h->limits.max_hdr;
    c->scratch = malloc(scratch);
    if (!c->scratch) {
        free(c);
        return NULL;
    }
    px_tpc_conn_init(&c->base, &tp->base);
    px_tpc_lendable(&c->base, LEND_SCRATCH, c->scratch, scratch);
    c->tp = tp;
    c->sock = sock;
    c->efd_self = c->efd_peer = -1;
    c->opts = *o;
    c->rx_mode = RX_RING;
    c->hs_link.prev = c->hs_link.next = &c->hs_link;
    snprintf(c->name, sizeof c->name, "%s", name);
    h->ops->io_init(h, &c->sio, sock, sio_cb, c);
    h->ops->timer_init(h, &c->hs_timer, hs_timer_cb, c);
    return c;
}

static int check_name(const px_uri *uri)
{
    if (uri->host[0] || uri->port != -1) {
        PX_TP_LOG(PX_LOG_WARN, "shm://: takes a name, not a host or port (shm://my-service)");
        return -PX_EBADHOST;
    }
    if (!uri->path[0]) {
        PX_TP_LOG(PX_LOG_WARN, "shm://: no name given (shm://my-service)");
        return -PX_EBADPATH;
    }
    if (strlen(uri->path) > SHM_NAME_MAX) {
        PX_TP_LOG(PX_LOG_WARN, "shm://%s: the name is over %u bytes", uri->path, SHM_NAME_MAX);
        return -PX_ENAMETOOLONG;
    }
    return 0;
}

static int shm_check_uri(const px_uri *uri, int listener)
{
    shm_opts o;
    int rc = check_name(uri);
    return rc ? rc : shm_opts_parse(uri, listener, &o);
}

static int shm_connect(px_tp *ptp, const px_uri *uri, const px_tp_owner *owner, px_tp_conn **out)
{
    shm_tp *tp = TP(ptp);
    shm_opts o;
    int rc = check_name(uri);
    if (rc == 0)
        rc = shm_opts_parse(uri, 0, &o);
    if (rc)
        return rc;
    shm_conn *c = conn_new(tp, -1, uri->path, &o);
    if (!c)
        return -PX_ENOMEM;
    c->base.owner = *owner;
    c->state = SHM_CONNECTING;
    /* Whatever happens, the owner hears it from the loop. */
    rc = shm_rdv_connect(c);
    if (rc) {
        px_tpc_defer(&c->base, PX_TP_EV_DISCONNECTED, rc);
    } else {
        const px_tp_host *h = ptp->host;
        h->ops->io_init(h, &c->sio, c->sock, sio_cb, c); /* the socket exists only now */
        h->ops->io_set(h, &c->sio, PX_TP_READ);
    }
    *out = &c->base;
    return 0;
}

static int shm_accept(px_tp_conn *pc, const px_tp_owner *owner)
{
    shm_conn *c = CONN(pc);
    if (c->state != SHM_PENDING)
        return -PX_EINVAL;
    int rc = px_tpc_accept(pc, owner);
    if (rc < 0)
        return rc;
    rc = shm_rdv_server_reply(c, 0);
    shm_conn_opened(c);
    if (rc)
        px_tpc_defer(pc, PX_TP_EV_DISCONNECTED, rc);
    return 0;
}

static void shm_close(px_tp_conn *pc, px_tp_fifo *unfinished)
{
    shm_conn *c = CONN(pc);
    if (pc->closed)
        return;
    watchers_stop(c);
    shm_tx_close(c, unfinished);
    px_tpc_close(pc, unfinished);
}

static void shm_reject(px_tp_conn *pc, int reason)
{
    shm_conn *c = CONN(pc);
    if (c->state == SHM_PENDING && !pc->closed)
        (void)shm_rdv_server_reply(c, reason < 0 ? -reason : PX_ECONNREFUSED);
    shm_close(pc, NULL);
}

static int shm_peer_uri(px_tp_conn *pc, char *buf, size_t len)
{
    shm_conn *c = CONN(pc);
    return snprintf(buf, len, "shm://%s?pid=%d", c->name, (int)c->peer_pid);
}

/* Paused, the drain stops at the next frame boundary and the ring fills
 * (the producer then waits for room); resumed, the loop drains it. */
static void shm_rx_pause(px_tp_conn *pc, int paused)
{
    shm_conn *c = CONN(pc);
    if (pc->closed || c->rx_paused == (unsigned)!!paused)
        return;
    c->rx_paused = !!paused;
    if (!paused && c->state == SHM_OPEN) {
        px_tpc_mark_hot(pc);
        px_tpc_mark_dirty(pc);
    }
}

/* ---- listeners ------------------------------------------------------------------------- */

static void shm_listener_free(px_tp_listener *pl)
{
    free(LST(pl));
}

static void pause_cb(px_tp_watch *w, void *arg)
{
    shm_listener *l = arg;
    const px_tp_host *h = l->tp->base.host;
    h->ops->io_set(h, &l->io, PX_TP_READ);
}

/* At most one line a second per listener: whoever makes accept fail (any
 * local uid can connect) must not be able to fill the log. */
static int may_warn(shm_listener *l)
{
    double now = (double)now_ns() / 1e9;
    if (now - l->warned_at < 1.0)
        return 0;
    l->warned_at = now;
    return 1;
}

/* Out of descriptors (or memory): the connection stays in the backlog and
 * the socket stays readable, so stop watching it briefly instead of
 * spinning on it. */
static void accept_backoff(shm_listener *l, int err)
{
    const px_tp_host *h = l->tp->base.host;
    if (may_warn(l))
        PX_TP_LOG(PX_LOG_WARN, "shm: %s: accept: %s; pausing the listener for 100 ms", l->name,
                  strerror(err));
    h->ops->io_set(h, &l->io, 0);
    h->ops->timer_start(h, &l->pause, 100000, 0);
}

/* The uid check comes first, before any state is kept for the peer: a
 * process of another user costs one accept and one close. */
static int peer_allowed(shm_listener *l, int fd)
{
    uid_t uid;
    if (shm_rdv_peer_uid(fd, &uid) < 0)
        return 0;
    if (shm_uid_allowed(&l->opts, getuid(), uid))
        return 1;
    if (may_warn(l))
        PX_TP_LOG(PX_LOG_WARN,
                  "shm: %s: refusing a client running as uid %u (allowed: ours%s; see "
                  "?allow_uid=)",
                  l->name, (unsigned)uid, l->opts.has_allow_uid ? " and allow_uid" : "");
    return 0;
}

static void accept_cb(px_tp_watch *w, int revents, void *arg)
{
    shm_listener *l = arg;
    const px_tp_host *h = l->tp->base.host;
    for (int i = 0; i < 256; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                accept_backoff(l, errno);
            else if (errno != EAGAIN && errno != EWOULDBLOCK && may_warn(l))
                PX_TP_LOG(PX_LOG_WARN, "shm: %s: accept: %s", l->name, strerror(errno));
            return;
        }
        if (!peer_allowed(l, fd)) {
            close(fd);
            continue;
        }
        shm_conn *c = conn_new(l->tp, fd, l->name, &l->opts);
        if (!c) {
            close(fd);
            accept_backoff(l, ENOMEM);
            return;
        }
        c->is_server = 1;
        c->state = SHM_HANDSHAKE;
        c->lst = l;
        hs_add(l, c);
        h->ops->io_set(h, &c->sio, PX_TP_READ);
        h->ops->timer_start(h, &c->hs_timer, SHM_HS_TIMEOUT, 0);
    }
}

static int shm_listen(px_tp *ptp, const px_uri *uri, const px_tp_listen_owner *owner,
                      px_tp_listener **out)
{
    shm_tp *tp = TP(ptp);
    int rc = check_name(uri);
    if (rc)
        return rc;
    shm_listener *l = calloc(1, sizeof *l);
    if (!l)
        return -PX_ENOMEM;
    rc = shm_opts_parse(uri, 1, &l->opts);
    if (rc == 0)
        rc = shm_rdv_listen(uri->path, &l->fd);
    if (rc) {
        free(l);
        return rc;
    }
    snprintf(l->name, sizeof l->name, "%s", uri->path);
    px_tpc_listener_init(&l->base, ptp, owner);
    l->tp = tp;
    l->handshakes.prev = l->handshakes.next = &l->handshakes;
    const px_tp_host *h = ptp->host;
    h->ops->io_init(h, &l->io, l->fd, accept_cb, l);
    h->ops->timer_init(h, &l->pause, pause_cb, l);
    h->ops->io_set(h, &l->io, PX_TP_READ);
    *out = &l->base;
    return 0;
}

static int shm_listener_uri(px_tp_listener *pl, char *buf, size_t len)
{
    return snprintf(buf, len, "shm://%s", LST(pl)->name);
}

static void shm_listener_close(px_tp_listener *pl)
{
    shm_listener *l = LST(pl);
    if (pl->closed)
        return;
    const px_tp_host *h = l->tp->base.host;
    h->ops->io_fini(h, &l->io);
    h->ops->timer_stop(h, &l->pause);
    close(l->fd);
    while (l->handshakes.next != &l->handshakes)
        drop_handshake(hs_conn(l->handshakes.next));
    px_tpc_listener_close(pl);
}

/* ---- the instance -------------------------------------------------------------------------- */

static int shm_init(const px_tp_host *host, px_tp **out)
{
    if (!host)
        return -PX_EINVAL;
    shm_tp *tp = calloc(1, sizeof *tp);
    if (!tp)
        return -PX_ENOMEM;
    px_tpc_init(&tp->base, &px_shm_transport, host);
    *out = &tp->base;
    return 0;
}

static void shm_fini(px_tp *ptp)
{
    shm_tp *tp = TP(ptp);
    shm_stats *s = &tp->stats;
    if (s->tx_inline + s->rx_inline + s->tx_cma + s->rx_cma + s->tx_pool + s->rx_pool +
        s->tx_chunked + s->rx_chunked)
        PX_TP_LOG(PX_LOG_INFO,
                  "shm: totals: sent %llu inline, %llu cma, %llu pool, %llu chunked; received "
                  "%llu inline, %llu cma, %llu pool, %llu chunked; %llu wake-ups",
                  (unsigned long long)s->tx_inline, (unsigned long long)s->tx_cma,
                  (unsigned long long)s->tx_pool, (unsigned long long)s->tx_chunked,
                  (unsigned long long)s->rx_inline, (unsigned long long)s->rx_cma,
                  (unsigned long long)s->rx_pool, (unsigned long long)s->rx_chunked,
                  (unsigned long long)s->wakes_sent);
    px_tpc_fini(ptp);
    free(tp);
}

static void shm_get_caps(px_tp *ptp, px_tp_caps *out)
{
    *out = (px_tp_caps){
        .flags = PX_TP_CAP_RX_DIRECT | PX_TP_CAP_ONE_COPY,
        .max_iov = SHM_MAX_IOV,
        .max_inline = ptp->host->inline_threshold,
        .max_msg = UINT32_MAX,
    };
}

static const char *const shm_schemes[] = {"shm", NULL};

/* What shm_opts_parse() accepts (shm_rdv.c). A listener's options apply to
 * every conn it accepts. */
static const px_tp_option shm_options[] = {
    {"allow_uid", "<uid>|any", "own uid only", "any", PX_TP_OPT_CONNECT | PX_TP_OPT_LISTEN,
     "also trust this user (any: every user); a client also looks for the server under it"},
    {"cma", "0|1", "1 (0 when PX_SHM_CMA=0)", "0", PX_TP_OPT_CONNECT | PX_TP_OPT_LISTEN,
     "move large data with one copy by process_vm_readv to a receiver that may sleep (one that "
     "busy-polls gets it chunked through the ring, which is faster); 0 on either side turns it "
     "off"},
    {"ring", "<bytes> power of two, 256 KiB..64 MiB", "262144", "1048576", PX_TP_OPT_CONNECT,
     "the size of each direction's ring in the segment the client creates (a listener ignores it)"},
    {"spin_us", "<us> 0..1000000", "0", "50", PX_TP_OPT_CONNECT | PX_TP_OPT_LISTEN,
     "busy-poll the rings this long before the loop sleeps (the largest of any conn applies)"},
    {"pid", "<pid>", "none", "1", PX_TP_OPT_CONNECT,
     "informational, as peer_uri() writes it: accepted and ignored (connect only)"},
    {NULL, NULL, NULL, NULL, 0, NULL},
};

const px_transport px_shm_transport = {
    .abi = PX_TRANSPORT_ABI,
    .name = "shm",
    .schemes = shm_schemes,
    .init = shm_init,
    .fini = shm_fini,
    .get_caps = shm_get_caps,
    .check_uri = shm_check_uri,
    .listen = shm_listen,
    .listener_uri = shm_listener_uri,
    .listener_close = shm_listener_close,
    .connect = shm_connect,
    .accept = shm_accept,
    .reject = shm_reject,
    .send = shm_tx_send,
    .close = shm_close,
    .peer_uri = shm_peer_uri,
    .rx_pause = shm_rx_pause,
    .conn_free = shm_conn_free,
    .listener_free = shm_listener_free,
    .stop_io = shm_stop_io,
    .flush = shm_tx_flush,
    .service = shm_service,
    .prepare = shm_prepare,
    .options = shm_options,
};
