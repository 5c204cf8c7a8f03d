/* The shared-memory transport: shm://name.
 *
 * This file holds the instance, the connection life cycle (listen, connect,
 * accept, reject, close), the upcall discipline, and the loop hooks: an
 * ev_prepare that delivers deferred events, completes sends and puts idle
 * conns to sleep (advertising it in the ring so the peer knows to write our
 * eventfd), and an ev_idle that keeps the loop from blocking while there is
 * work. poll() drains the awake ("hot") conns without any syscall.
 * The rendezvous is in shm_rdv.c, the ring in shm_ring.c, send in
 * shm_tx.c, receive in shm_rx.c, large frames in shm_bulk.c.
 *
 * Liveness: the rendezvous socket stays connected for the life of the
 * connection, so a peer that dies (even by SIGKILL) is seen as EOF. A peer
 * that hangs while alive is not detected here: the session layer's
 * keepalive covers that.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "plexus/error.h"
#include "transports/builtin.h"
#include "transports/shm/shm.h"

static shm_tp *TP(px_tp *p)
{
    return (shm_tp *)(void *)p;
}
static shm_conn *CONN(px_tp_conn *p)
{
    return (shm_conn *)p;
}
static shm_listener *LST(px_tp_listener *p)
{
    return (shm_listener *)p;
}

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

/* ---- upcalls and the loop hooks -------------------------------------------- */

static void conn_free(shm_conn *c)
{
    shm_stats *s = &c->stats;
    if (c->state != SHM_HANDSHAKE)
        PX_LOGI("shm: conn %s pid %d closed: sent %llu inline, %llu cma, %llu pool, %llu chunked; "
                "received %llu inline, %llu cma, %llu pool, %llu chunked; %llu wake-ups",
                c->name, (int)c->peer_pid, (unsigned long long)s->tx_inline,
                (unsigned long long)s->tx_cma, (unsigned long long)s->tx_pool,
                (unsigned long long)s->tx_chunked, (unsigned long long)s->rx_inline,
                (unsigned long long)s->rx_cma, (unsigned long long)s->rx_pool,
                (unsigned long long)s->rx_chunked, (unsigned long long)s->wakes_sent);
    stats_add(&c->tp->stats, s);
    px_list_del(&c->link);
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

int shm_upcall(shm_conn *c, int ev, void *data, int *ret)
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

/* The prepare watcher runs only while some conn is awake or has work, so
 * an idle loop pays nothing for it. */
static void arm_prepare(shm_tp *tp)
{
    if (!ev_is_active(&tp->prep))
        ev_prepare_start(tp->host.loop, &tp->prep);
}

void shm_mark_work(shm_conn *c)
{
    if (px_list_unlinked(&c->work_link)) {
        px_list_push_back(&c->tp->work, &c->work_link);
        arm_prepare(c->tp);
    }
}

void shm_mark_hot(shm_conn *c)
{
    c->idle_polls = 0;
    if (px_list_unlinked(&c->hot_link)) {
        px_list_push_back(&c->tp->hot, &c->hot_link);
        arm_prepare(c->tp);
    }
}

void shm_wake_peer(shm_conn *c)
{
    uint64_t one = 1;
    c->stats.wakes_sent++;
    /* EAGAIN means the counter is already non-zero: the peer will wake. */
    if (write(c->efd_peer, &one, sizeof one) < 0 && errno != EAGAIN)
        PX_LOGD("shm: eventfd write: %s", strerror(errno));
}

static void defer_event(shm_conn *c, int ev, int reason)
{
    c->defer_ev = ev;
    c->defer_reason = reason;
    px_list_del(&c->defer_link);
    px_list_push_back(&c->tp->deferred, &c->defer_link);
    arm_prepare(c->tp);
}

static void stop_io(shm_conn *c)
{
    struct ev_loop *loop = c->tp->host.loop;
    ev_io_stop(loop, &c->sio);
    ev_io_stop(loop, &c->eio);
    ev_timer_stop(loop, &c->hs_timer);
    px_list_del(&c->work_link);
    px_list_del(&c->defer_link);
    px_list_del(&c->hot_link);
}

int shm_disconnect(shm_conn *c, int reason)
{
    if (c->state == SHM_DEAD)
        return -1;
    c->state = SHM_DEAD;
    stop_io(c);
    /* The mapping stays until close(): frames delivered in place may still
     * be referenced. Queued sends can no longer leave: fail them before the
     * owner hears of the disconnect, so it sees every send end exactly once. */
    if (shm_tx_fail_all(c, -PX_EDISCONNECTED) < 0)
        return -1;
    shm_upcall(c, PX_TP_EV_DISCONNECTED, &reason, NULL);
    return -1;
}

int shm_fail(shm_conn *c, int reason)
{
    PX_LOGW("shm: conn %s pid %d: protocol error (%s); closing it", c->name, (int)c->peer_pid,
            px_strerror(reason));
    if (c->state == SHM_DEAD)
        return -1;
    if (shm_upcall(c, PX_TP_EV_ERROR, &reason, NULL) < 0)
        return -1;
    return shm_disconnect(c, reason);
}

/* A send() found the ring corrupt: the owner hears of it from the loop. */
static void run_deferred(shm_conn *c)
{
    int ev = c->defer_ev;
    c->defer_ev = 0;
    if (ev == PX_TP_EV_CONNECTED)
        shm_upcall(c, PX_TP_EV_CONNECTED, NULL, NULL);
    else if (ev == PX_TP_EV_ERROR)
        shm_fail(c, c->defer_reason);
    else if (ev == PX_TP_EV_DISCONNECTED)
        shm_disconnect(c, c->defer_reason);
}

/* Receive, send, complete. Returns -1 when the conn is gone. */
static int conn_service(shm_conn *c)
{
    if (c->state != SHM_OPEN)
        return 0;
    if (!c->in_rx && shm_rx_drain(c) < 0)
        return -1;
    if (c->txq && shm_tx_flush(c) < 0)
        return -1;
    return shm_tx_complete(c);
}

/* Deliver deferred events and complete/flush sends until neither has work
 * (bounded: the idle watcher picks up the rest). Lists are popped one conn
 * at a time, so upcalls may close any conn or queue more work. */
static void shm_progress(shm_tp *tp)
{
    tp->in_progress = 1;
    for (int round = 0; round < 64; round++) {
        if (px_list_empty(&tp->deferred) && px_list_empty(&tp->work))
            break;
        px_list *n;
        while ((n = px_list_pop_front(&tp->deferred)))
            run_deferred(PX_CONTAINER_OF(n, shm_conn, defer_link));
        px_list batch;
        px_list_init(&batch);
        px_list_splice_back(&batch, &tp->work);
        while ((n = px_list_pop_front(&batch)))
            conn_service(PX_CONTAINER_OF(n, shm_conn, work_link));
    }
    tp->in_progress = 0;
}

/* Service every awake conn once. Returns how many had something to do. */
static int service_hot(shm_tp *tp)
{
    int busy = 0;
    px_list todo;
    px_list_init(&todo);
    px_list_splice_back(&todo, &tp->hot);
    px_list *n;
    while ((n = px_list_pop_front(&todo))) {
        shm_conn *c = PX_CONTAINER_OF(n, shm_conn, hot_link);
        px_list_push_back(&tp->hot, &c->hot_link);
        uint64_t before = tp->nevents;
        if (conn_service(c) < 0)
            continue;
        if (tp->nevents != before) {
            c->idle_polls = 0;
            busy++;
        } else {
            c->idle_polls++;
        }
    }
    return busy;
}

static int rx_ready(shm_conn *c)
{
    return c->rx_pins == 0 && (!c->rx_paused || c->rx_mode == RX_CHUNKS) &&
           shm_ring_nonempty(&c->rx);
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

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Spin up to spin_us on the awake conns before sleeping: a peer that
 * answers within that time costs no wake-up on either side. */
static int spin(shm_tp *tp)
{
    if (!tp->spin_us || px_list_empty(&tp->hot))
        return 0;
    uint64_t end = now_ns() + (uint64_t)tp->spin_us * 1000u;
    do {
        for (px_list *n = tp->hot.next; n != &tp->hot; n = n->next) {
            shm_conn *c = PX_CONTAINER_OF(n, shm_conn, hot_link);
            if (c->state == SHM_OPEN && rx_ready(c))
                return 1;
        }
        cpu_relax();
    } while (now_ns() < end);
    return 0;
}

static void keep_awake(shm_tp *tp)
{
    if (!ev_is_active(&tp->idle))
        ev_idle_start(tp->host.loop, &tp->idle);
}

static void prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    shm_tp *tp = PX_CONTAINER_OF(w, shm_tp, prep);
    shm_progress(tp);
    if (tp->host.pass_nonblocking && *tp->host.pass_nonblocking) {
        /* A busy-polling context's non-blocking pass: it polls again, so
         * nothing needs a wake-up yet (arming one would cost the peer an
         * eventfd write). */
        return;
    }
    int need = 0;
    if (spin(tp)) {
        service_hot(tp);
        shm_progress(tp);
        need = 1;
    }
    px_list todo;
    px_list_init(&todo);
    px_list_splice_back(&todo, &tp->hot);
    px_list *n;
    while ((n = px_list_pop_front(&todo))) {
        shm_conn *c = PX_CONTAINER_OF(n, shm_conn, hot_link);
        if (!try_sleep(c)) {
            px_list_push_back(&tp->hot, &c->hot_link);
            need = 1;
        }
    }
    if (need || !px_list_empty(&tp->work) || !px_list_empty(&tp->deferred))
        keep_awake(tp);
    else
        ev_prepare_stop(loop, w);
}

static void idle_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
    shm_tp *tp = PX_CONTAINER_OF(w, shm_tp, idle);
    ev_idle_stop(loop, w);
    service_hot(tp);
    shm_progress(tp);
    arm_prepare(tp); /* decides whether to sleep */
}

/* ---- connections ------------------------------------------------------------- */

static void drop_handshake(shm_conn *c)
{
    px_list_del(&c->lst_link);
    stop_io(c);
    conn_free(c);
}

static void eio_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    shm_conn *c = PX_CONTAINER_OF(w, shm_conn, eio);
    uint64_t v;
    while (read(c->efd_self, &v, sizeof v) < 0 && errno == EINTR)
        ;
    shm_mark_hot(c);
    conn_service(c);
}

/* The peer is gone. What it wrote before dying is still delivered. */
static void peer_gone(shm_conn *c, int err)
{
    if (c->in_rx)
        return; /* the outer drain finishes; the watcher fires again */
    for (int i = 0; i < 1024 && c->state == SHM_OPEN; i++) {
        int n = shm_rx_drain(c);
        if (n < 0)
            return;
        if (n == 0)
            break;
    }
    if (c->state != SHM_OPEN)
        return;
    int mid = c->rx_mode != RX_RING || shm_tx_waiting(c) || c->done;
    shm_disconnect(c, err ? shm_err(err) : mid ? -PX_ECONNRESET : -PX_EDISCONNECTED);
}

/* After the rendezvous the socket carries only shared-pool announcements
 * (read eagerly here, or when a record names a new region), then EOF. */
static void sio_open(shm_conn *c)
{
    int err;
    int rc = shm_pool_rx_sock(c, &err);
    if (rc < 0)
        shm_fail(c, rc);
    else if (rc == 1)
        peer_gone(c, err);
}

/* Offer a conn whose rendezvous is done. Returns -1 when the listener was
 * closed from inside. */
static int offer(shm_listener *l, shm_conn *c)
{
    c->state = SHM_PENDING;
    ev_io_stop(l->tp->host.loop, &c->sio);
    ev_timer_stop(l->tp->host.loop, &c->hs_timer);
    l->in_upcall++;
    l->tp->nevents++;
    l->base.obs.notify(l->base.obs.self, PX_TP_EV_NEW_CONN, &c->base);
    if (--l->in_upcall == 0 && l->closed) {
        px_list_del(&l->link);
        free(l);
        return -1;
    }
    return 0;
}

static void sio_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    shm_conn *c = PX_CONTAINER_OF(w, shm_conn, sio);
    int rc;
    switch (c->state) {
    case SHM_HANDSHAKE:
        rc = shm_rdv_server_hello(c);
        if (rc < 0) {
            PX_LOGW("shm: %s: refusing a client: %s", c->name, px_strerror(rc));
            drop_handshake(c);
        } else if (rc > 0) {
            offer(c->lst, c);
        }
        return;
    case SHM_CONNECTING:
        rc = shm_rdv_client_reply(c);
        if (rc < 0) {
            shm_disconnect(c, rc);
        } else if (rc > 0) {
            shm_conn_opened(c);
            shm_upcall(c, PX_TP_EV_CONNECTED, NULL, NULL);
        }
        return;
    case SHM_OPEN:
        sio_open(c);
        return;
    default:
        ev_io_stop(loop, w);
        return;
    }
}

static void hs_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    shm_conn *c = PX_CONTAINER_OF(w, shm_conn, hs_timer);
    if (c->state == SHM_HANDSHAKE) {
        PX_LOGW("shm: %s: a client did not complete the rendezvous in time", c->name);
        drop_handshake(c);
    }
}

void shm_conn_opened(shm_conn *c)
{
    c->state = SHM_OPEN;
    ev_io_set(&c->eio, c->efd_self, EV_READ);
    ev_io_start(c->tp->host.loop, &c->eio);
    ev_io_start(c->tp->host.loop, &c->sio);
    if (c->opts.spin_us > c->tp->spin_us)
        c->tp->spin_us = c->opts.spin_us;
    shm_mark_hot(c);
    if (c->txq)
        shm_mark_work(c);
}

static shm_conn *conn_new(shm_tp *tp, int sock, const char *name, const shm_opts *o)
{
    shm_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    size_t scratch = PX_FRAME_HDR_LEN + PX_FRAME_MAX_EXT + tp->host.limits.max_hdr;
    c->scratch = malloc(scratch);
    if (!c->scratch) {
        free(c);
        return NULL;
    }
    c->base.ops = &px_shm_transport;
    c->base.tp = (px_tp *)(void *)tp;
    c->tp = tp;
    c->sock = sock;
    c->efd_self = c->efd_peer = -1;
    c->opts = *o;
    c->rx_mode = RX_RING;
    snprintf(c->name, sizeof c->name, "%s", name);
    px_list_init(&c->work_link);
    px_list_init(&c->defer_link);
    px_list_init(&c->hot_link);
    px_list_init(&c->lst_link);
    px_list_push_back(&tp->conns, &c->link);
    ev_io_init(&c->sio, sio_cb, sock, EV_READ);
    ev_init(&c->eio, eio_cb);
    ev_init(&c->hs_timer, hs_timer_cb);
    return c;
}

static int check_name(const px_uri *uri)
{
    if (uri->host[0] || uri->port != -1) {
        PX_LOGW("shm://: takes a name, not a host or port (shm://my-service)");
        return -PX_EBADHOST;
    }
    if (!uri->path[0]) {
        PX_LOGW("shm://: no name given (shm://my-service)");
        return -PX_EBADPATH;
    }
    if (strlen(uri->path) > SHM_NAME_MAX) {
        PX_LOGW("shm://%s: the name is over %u bytes", uri->path, SHM_NAME_MAX);
        return -PX_ENAMETOOLONG;
    }
    return 0;
}

static int shm_connect(px_tp *ptp, const px_uri *uri, const px_observer *obs, px_tp_conn **out)
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
    c->base.obs = *obs;
    c->state = SHM_CONNECTING;
    /* Whatever happens, the owner hears it from the loop. */
    rc = shm_rdv_connect(c);
    if (rc)
        defer_event(c, PX_TP_EV_DISCONNECTED, rc);
    else
        ev_io_start(tp->host.loop, &c->sio);
    *out = &c->base;
    return 0;
}

static int shm_accept(px_tp_conn *pc, const px_observer *obs)
{
    shm_conn *c = CONN(pc);
    if (c->state != SHM_PENDING || c->closed)
        return -PX_EINVAL;
    px_list_del(&c->lst_link);
    c->lst = NULL;
    c->base.obs = *obs;
    int rc = shm_rdv_server_reply(c, 0);
    shm_conn_opened(c);
    if (rc)
        defer_event(c, PX_TP_EV_DISCONNECTED, rc);
    return 0;
}

static void shm_close(px_tp_conn *pc)
{
    shm_conn *c = CONN(pc);
    if (c->closed || c->closing)
        return;
    c->closing = 1;
    px_list_del(&c->lst_link);
    stop_io(c);
    /* Hold a reference so the SEND_COMPLETE upcalls below cannot free us;
     * `closed` is set only after them, so each one returns normally and
     * every queued send gets its completion. */
    c->in_upcall++;
    if (c->state != SHM_PENDING && c->state != SHM_HANDSHAKE)
        shm_tx_fail_all(c, -PX_ECLOSED);
    c->closed = 1;
    if (--c->in_upcall == 0)
        conn_free(c);
}

static void shm_reject(px_tp_conn *pc, int reason)
{
    shm_conn *c = CONN(pc);
    if (c->state == SHM_PENDING && !c->closed)
        (void)shm_rdv_server_reply(c, reason < 0 ? -reason : PX_ECONNREFUSED);
    shm_close(pc);
}

/* Paused, the drain stops at the next frame boundary and the ring fills
 * (the producer then waits for room); resumed, the loop drains it. */
static void shm_rx_pause(px_tp_conn *pc, int paused)
{
    shm_conn *c = CONN(pc);
    if (c->closed || c->rx_paused == (unsigned)!!paused)
        return;
    c->rx_paused = !!paused;
    if (!paused && c->state == SHM_OPEN) {
        shm_mark_hot(c);
        shm_mark_work(c);
    }
}

static int shm_check_uri(const px_uri *uri, int listener)
{
    shm_opts o;
    int rc = check_name(uri);
    return rc ? rc : shm_opts_parse(uri, listener, &o);
}

static int shm_peer_uri(px_tp_conn *pc, char *buf, size_t len)
{
    shm_conn *c = CONN(pc);
    return snprintf(buf, len, "shm://%s?pid=%d", c->name, (int)c->peer_pid);
}

void shm_defer_fail(shm_conn *c, int reason)
{
    if (c->state == SHM_OPEN && c->defer_ev == 0)
        defer_event(c, PX_TP_EV_ERROR, reason);
}

/* ---- listeners ---------------------------------------------------------------- */

static void pause_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    shm_listener *l = PX_CONTAINER_OF(w, shm_listener, pause);
    ev_io_start(loop, &l->io);
}

/* At most one line a second per listener: whoever makes accept fail (any
 * local uid can connect) must not be able to fill the log. */
static int may_warn(shm_listener *l)
{
    double now = ev_now(l->tp->host.loop);
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
    if (may_warn(l))
        PX_LOGW("shm: %s: accept: %s; pausing the listener for 100 ms", l->name, strerror(err));
    ev_io_stop(l->tp->host.loop, &l->io);
    ev_timer_set(&l->pause, 0.1, 0.);
    ev_timer_start(l->tp->host.loop, &l->pause);
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
        PX_LOGW("shm: %s: refusing a client running as uid %u (allowed: ours%s; see ?allow_uid=)",
                l->name, (unsigned)uid, l->opts.has_allow_uid ? " and allow_uid" : "");
    return 0;
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    shm_listener *l = PX_CONTAINER_OF(w, shm_listener, io);
    for (int i = 0; i < 256; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                accept_backoff(l, errno);
            else if (errno != EAGAIN && errno != EWOULDBLOCK && may_warn(l))
                PX_LOGW("shm: %s: accept: %s", l->name, strerror(errno));
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
        px_list_push_back(&l->pending, &c->lst_link);
        ev_io_start(loop, &c->sio);
        ev_timer_set(&c->hs_timer, SHM_HS_TIMEOUT, 0.);
        ev_timer_start(loop, &c->hs_timer);
    }
}

static int shm_listen(px_tp *ptp, const px_uri *uri, const px_observer *obs, px_tp_listener **out)
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
    l->base.ops = &px_shm_transport;
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

static int shm_listener_uri(px_tp_listener *pl, char *buf, size_t len)
{
    return snprintf(buf, len, "shm://%s", LST(pl)->name);
}

static void shm_listener_close(px_tp_listener *pl)
{
    shm_listener *l = LST(pl);
    if (l->closed)
        return;
    l->closed = 1;
    ev_io_stop(l->tp->host.loop, &l->io);
    ev_timer_stop(l->tp->host.loop, &l->pause);
    close(l->fd);
    px_list *n;
    while ((n = px_list_first(&l->pending))) {
        shm_conn *c = PX_CONTAINER_OF(n, shm_conn, lst_link);
        if (c->state == SHM_HANDSHAKE)
            drop_handshake(c);
        else
            shm_close(&c->base);
    }
    if (l->in_upcall == 0) {
        px_list_del(&l->link);
        free(l);
    }
}

/* ---- the instance ------------------------------------------------------------- */

static int shm_init(const px_tp_host *host, px_tp **out)
{
    if (!host || !host->loop)
        return -PX_EINVAL;
    shm_tp *tp = calloc(1, sizeof *tp);
    if (!tp)
        return -PX_ENOMEM;
    tp->host = *host;
    px_list_init(&tp->deferred);
    px_list_init(&tp->work);
    px_list_init(&tp->hot);
    px_list_init(&tp->conns);
    px_list_init(&tp->listeners);
    ev_prepare_init(&tp->prep, prepare_cb);
    ev_idle_init(&tp->idle, idle_cb);
    /* libev grows its watcher arrays on a watcher's first start: do it now,
     * so the data path never allocates for it later. */
    ev_idle_start(tp->host.loop, &tp->idle);
    ev_idle_stop(tp->host.loop, &tp->idle);
    ev_prepare_start(tp->host.loop, &tp->prep);
    ev_prepare_stop(tp->host.loop, &tp->prep);
    *out = (px_tp *)(void *)tp;
    return 0;
}

static void shm_fini(px_tp *ptp)
{
    shm_tp *tp = TP(ptp);
    if (!px_list_empty(&tp->conns) || !px_list_empty(&tp->listeners))
        PX_LOGE("shm: fini with connections or listeners still open (leaked)");
    shm_stats *s = &tp->stats;
    if (s->tx_inline + s->rx_inline + s->tx_cma + s->rx_cma + s->tx_pool + s->rx_pool +
        s->tx_chunked + s->rx_chunked)
        PX_LOGI("shm: totals: sent %llu inline, %llu cma, %llu pool, %llu chunked; received %llu "
                "inline, %llu cma, %llu pool, %llu chunked; %llu wake-ups",
                (unsigned long long)s->tx_inline, (unsigned long long)s->tx_cma,
                (unsigned long long)s->tx_pool, (unsigned long long)s->tx_chunked,
                (unsigned long long)s->rx_inline, (unsigned long long)s->rx_cma,
                (unsigned long long)s->rx_pool, (unsigned long long)s->rx_chunked,
                (unsigned long long)s->wakes_sent);
    ev_prepare_stop(tp->host.loop, &tp->prep);
    ev_idle_stop(tp->host.loop, &tp->idle);
    free(tp);
}

static void shm_get_caps(px_tp *ptp, px_tp_caps *out)
{
    shm_tp *tp = TP(ptp);
    *out = (px_tp_caps){
        .flags = PX_TP_CAP_RX_DIRECT | PX_TP_CAP_POLL | PX_TP_CAP_ONE_COPY,
        .max_iov = SHM_MAX_IOV,
        .max_inline = tp->host.inline_threshold,
        .max_msg = UINT32_MAX,
    };
}

/* Busy-poll: deferred events, sends, and every awake conn's rings - no
 * syscall unless a peer is asleep and needs waking. A conn that stays empty
 * for SHM_HOT_IDLE passes goes to sleep (its eventfd wakes it through the
 * loop), so thousands of idle conns cost nothing here. */
static int shm_poll(px_tp *ptp)
{
    shm_tp *tp = TP(ptp);
    if (tp->in_progress)
        return 0; /* re-entered from an upcall: the outer call finishes the work */
    uint64_t before = tp->nevents;
    shm_progress(tp);
    service_hot(tp);
    shm_progress(tp);
    px_list todo;
    px_list_init(&todo);
    px_list_splice_back(&todo, &tp->hot);
    px_list *n;
    while ((n = px_list_pop_front(&todo))) {
        shm_conn *c = PX_CONTAINER_OF(n, shm_conn, hot_link);
        if (c->idle_polls < SHM_HOT_IDLE || !try_sleep(c))
            px_list_push_back(&tp->hot, &c->hot_link);
    }
    return (int)(tp->nevents - before);
}

static const char *const shm_schemes[] = {"shm", NULL};

const px_transport px_shm_transport = {
    .abi = PX_TRANSPORT_ABI,
    .name = "shm",
    .schemes = shm_schemes,
    .init = shm_init,
    .fini = shm_fini,
    .get_caps = shm_get_caps,
    .listen = shm_listen,
    .listener_uri = shm_listener_uri,
    .listener_close = shm_listener_close,
    .connect = shm_connect,
    .accept = shm_accept,
    .reject = shm_reject,
    .send = shm_tx_send,
    .close = shm_close,
    .peer_uri = shm_peer_uri,
    .check_uri = shm_check_uri,
    .rx_pause = shm_rx_pause,
    .poll = shm_poll,
};
