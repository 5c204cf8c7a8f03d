/* inproc://name — messages between contexts of one process, as a plugin.
 *
 * Built as libplexus-inproc.so against the installed plexus headers alone
 * (it includes nothing of plexus but <plexus/transport.h>) and loaded by
 * scheme from $PX_PLUGIN_DIR or plexus's plugin directory: the proof that
 * a transport can be written from outside.
 *
 * A connection is two ends, each owned by its own context (thread), joined
 * by a link both point to. A frame is not copied: the sender's px_tp_send
 * itself goes to the other end's inbox, and the receiver delivers it in
 * place from the sender's memory (one contiguous segment; several are
 * gathered into the receiving end's buffer, and a large one lands where
 * the owner's rx_assign says, in one copy). Once the receiver's upcall has
 * returned, the send goes back to its own end's "done" inbox and completes
 * there, on the sender's thread. A send made inside that upcall from the
 * bytes it was given is fine: they stay valid until then; one the owner
 * holds past it is copied aside by the owner (the lending rule: the
 * frame's ranges are the receiving conn's lendable memory during the
 * upcall).
 *
 * A sender that closes while the other end's thread is delivering one of
 * its frames waits for that upcall to return (its owner frees the memory
 * after close). Two contexts driven by one thread cannot wait so: there,
 * closing one's session from inside the other's callback for a frame it
 * sent leaves that callback reading memory the first may free.
 *
 * Threads: every inbox and the pointers between the two ends are guarded
 * by the link's mutex; a push wakes the other end's context with the
 * host's async wake (no syscall while one is pending). A connect is a
 * request queued to the listener, whose context creates the server end on
 * its own thread.
 *
 * Backpressure: an inbox holds at most INBOX_MAX frames; past it send
 * refuses with -PX_EAGAIN, and the room upcall follows once the receiver
 * has drained it to half.
 *
 * The plugin's one global is the table of bound names (a mutex and a
 * list), as nng's inproc has.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <plexus/transport.h>

#define INBOX_MAX   256u
#define INPROC_NAME 128u

typedef struct inproc_tp {
    px_tp base; /* first */
} inproc_tp;

struct inproc_conn;

/* The shared part of a connection. Freed by the end that drops the last
 * reference (each end holds one, a queued connect request one more). */
typedef struct inproc_link {
    pthread_mutex_t lock;
    pthread_cond_t delivered; /* signalled when an end finishes delivering */
    int refs;
    struct inproc_conn *end[2]; /* 0: client, 1: server; NULL once that end closed */
    /* The other end's frame that end i is delivering right now (its
     * upcall reads the sender's memory), and on which thread. */
    px_tp_send *delivering[2];
    pthread_t delivering_thread[2];
} inproc_link;

/* What one end receives, guarded by the link's lock. Frames and dones are
 * px_tp_sends linked through tp_priv[0] and tp_priv[1]: their tp_next
 * belongs to the sender's chassis FIFO. */
typedef struct inbox {
    px_tp_send *frames, *frames_tail;
    px_tp_send *dones, *dones_tail;
    unsigned n_frames;
    int want_room; /* this end was refused: the other end's inbox was full */
    int room;      /* ... and it has drained since */
    int peer_gone; /* the other end closed */
    int accepted;  /* client: the server took the connection (1) or refused it (-1) */
} inbox;

/* One end. Owned by the transport; freed by the chassis once closed. */
typedef struct inproc_conn {
    px_tp_conn base; /* first */
    inproc_tp *tp;
    inproc_link *lk;
    int side; /* 0 client, 1 server */
    int open, dead, paused, in_rx;
    unsigned queued_after; /* frames left in the inbox when the last one was taken */
    inbox in;
    px_tp_watch wake;
    uint8_t *gather; /* frames of several segments, gathered */
    size_t gather_cap;
    char name[INPROC_NAME + 1];
} inproc_conn;

/* A client waiting for its server end: queued to the listener (names_lock),
 * holding a reference to the link. */
typedef struct request {
    inproc_link *lk;
    struct request *next;
} request;

/* A bound name: connect requests queue here for the listener's context. */
typedef struct inproc_listener {
    px_tp_listener base; /* first */
    inproc_tp *tp;
    char name[INPROC_NAME + 1];
    px_tp_watch wake;
    request *requests; /* guarded by names_lock */
    struct inproc_listener *next_bound;
} inproc_listener;

extern const px_transport inproc_transport;

static pthread_mutex_t names_lock = PTHREAD_MUTEX_INITIALIZER;
static inproc_listener *names; /* every bound listener */

static const px_tp_host *host_of(const inproc_conn *c)
{
    return c->tp->base.host;
}

/* ---- inbox lists (the link's lock held) ----------------------------------------------- */

/* The links live in tp_priv as integers: a pointer stored through a
 * punned uint64_t lvalue would break strict aliasing. */
enum { PRIV_NEXT_FRAME = 0, PRIV_NEXT_DONE = 1 };

static px_tp_send *priv_next(const px_tp_send *s, int slot)
{
    return (px_tp_send *)(uintptr_t)s->tp_priv[slot];
}

static void set_priv_next(px_tp_send *s, int slot, px_tp_send *next)
{
    s->tp_priv[slot] = (uint64_t)(uintptr_t)next;
}

static void push_frame(inbox *b, px_tp_send *s)
{
    set_priv_next(s, PRIV_NEXT_FRAME, NULL);
    if (b->frames_tail)
        set_priv_next(b->frames_tail, PRIV_NEXT_FRAME, s);
    else
        b->frames = s;
    b->frames_tail = s;
    b->n_frames++;
}

static px_tp_send *pop_frame(inbox *b)
{
    px_tp_send *s = b->frames;
    if (s) {
        b->frames = priv_next(s, PRIV_NEXT_FRAME);
        if (!b->frames)
            b->frames_tail = NULL;
        b->n_frames--;
    }
    return s;
}

static void push_done(inbox *b, px_tp_send *s)
{
    set_priv_next(s, PRIV_NEXT_DONE, NULL);
    if (b->dones_tail)
        set_priv_next(b->dones_tail, PRIV_NEXT_DONE, s);
    else
        b->dones = s;
    b->dones_tail = s;
}

static inproc_conn *peer_of(const inproc_conn *c)
{
    return c->lk->end[!c->side];
}

/* Wake an end's context (under the link's lock, so it cannot go away). */
static void wake(inproc_conn *c)
{
    if (c)
        host_of(c)->ops->async_send(&c->wake);
}

static void link_drop(inproc_link *lk)
{
    pthread_mutex_lock(&lk->lock);
    int last = --lk->refs == 0;
    pthread_mutex_unlock(&lk->lock);
    if (last) {
        pthread_cond_destroy(&lk->delivered);
        pthread_mutex_destroy(&lk->lock);
        free(lk);
    }
}

/* ---- receiving ------------------------------------------------------------------------- */

/* Gather several segments into our buffer. NULL when out of memory. */
static const void *gather(inproc_conn *c, const px_tp_send *s)
{
    uint32_t len = s->hdr.data_len;
    if (c->gather_cap < len) {
        free(c->gather);
        c->gather = malloc(len);
        c->gather_cap = c->gather ? len : 0;
        px_tpc_lendable(&c->base, 2, c->gather, c->gather_cap);
        if (!c->gather)
            return NULL;
    }
    px_tp_send_copy_body(
        &(px_tp_send){.hdr = {.data_len = len}, .data = s->data, .data_count = s->data_count},
        c->gather);
    return c->gather;
}

/* Deliver one of the peer's frames. 0, or -1 when the conn is gone. */
/* The `more` hint: what the inbox held after the frame being delivered
 * (read under the link's lock as it was taken). */
static uint32_t count_more(px_tp_conn *pc)
{
    unsigned n = ((inproc_conn *)(void *)pc)->queued_after;
    return n > 255 ? 255 : n;
}

static int deliver(inproc_conn *c, px_tp_send *s)
{
    px_tp_rx rx = {.hdr = s->hdr, .app_hdr = s->app_hdr};
    uint32_t len = s->hdr.data_len;
    if (len > host_of(c)->inline_threshold) {
        int declined;
        if (px_tpc_rx_assign(&c->base, &rx, &declined) < 0)
            return -1;
        if (!declined) { /* one copy, into the owner's memory */
            uint32_t idx = 0;
            size_t off = 0;
            for (uint32_t i = 0; i < s->data_count; i++)
                px_iov_put(rx.dst, rx.dst_count, &idx, &off, s->data[i].base, s->data[i].len);
            rx.data = NULL;
            goto up;
        }
    }
    unsigned segs = 0;
    for (uint32_t i = 0; i < s->data_count; i++)
        if (s->data[i].len) {
            segs++;
            rx.data = s->data[i].base;
        }
    if (segs > 1 && !(rx.data = gather(c, s)))
        return px_tpc_fail(&c->base, -PX_ENOMEM);
    rx.dst = NULL;
    rx.dst_count = 0;
up:
    /* Lent during the upcall: the sender's header and data (or our copy). */
    px_tpc_lendable(&c->base, 0, rx.data, rx.data ? len : 0);
    px_tpc_lendable(&c->base, 1, s->app_hdr, s->hdr.hdr_len);
    c->base.rx_bytes += PX_FRAME_HDR_LEN + (uint64_t)s->hdr.hdr_len + len;
    rx.more = px_tpc_more(&c->base, count_more);
    if (px_tpc_frame(&c->base, &rx) < 0)
        return -1;
    px_tpc_lendable(&c->base, 0, NULL, 0);
    px_tpc_lendable(&c->base, 1, NULL, 0);
    return 0;
}

/* The frame being delivered goes back to its sender (done), under the
 * link's lock; a sender closing meanwhile waits for this. */
static void hand_back(inproc_conn *c)
{
    inproc_link *lk = c->lk;
    px_tp_send *s = lk->delivering[c->side];
    if (!s)
        return;
    lk->delivering[c->side] = NULL;
    inproc_conn *p = peer_of(c);
    if (p) {
        push_done(&p->in, s);
        wake(p);
    }
    pthread_cond_broadcast(&lk->delivered);
}

/* Take the next frame, handing the last one back to its sender, and tell
 * the sender when its refused sends may go again. */
static px_tp_send *next_frame(inproc_conn *c)
{
    inproc_link *lk = c->lk;
    pthread_mutex_lock(&lk->lock);
    hand_back(c);
    inproc_conn *p = peer_of(c);
    px_tp_send *s = c->open && !c->paused ? pop_frame(&c->in) : NULL;
    if (s) {
        lk->delivering[c->side] = s;
        lk->delivering_thread[c->side] = pthread_self();
        c->queued_after = c->in.n_frames;
    }
    if (p && p->in.want_room && c->in.n_frames <= INBOX_MAX / 2) {
        p->in.want_room = 0;
        p->in.room = 1;
        wake(p);
    }
    pthread_mutex_unlock(&lk->lock);
    return s;
}

/* Everything the inbox holds, in order: the server's answer to our
 * connect, dones (our sends finished), frames (unless paused), room, the
 * peer's end. Returns >0 when something happened, 0 when nothing did, -1
 * when the conn is gone. */
static int service_inbox(inproc_conn *c)
{
    if (c->dead || c->in_rx || c->base.closed)
        return 0;
    inproc_link *lk = c->lk;
    int work = 0;
    pthread_mutex_lock(&lk->lock);
    int accepted = c->in.accepted;
    c->in.accepted = 0;
    px_tp_send *done = c->in.dones;
    c->in.dones = c->in.dones_tail = NULL;
    pthread_mutex_unlock(&lk->lock);

    if (accepted < 0)
        return px_tpc_disconnect(&c->base, -PX_ECONNREFUSED);
    if (accepted > 0 && !c->open) {
        c->open = 1;
        work++;
        if (px_tpc_connected(&c->base) < 0)
            return -1;
    }
    for (px_tp_send *s = done, *next; s; s = next) {
        next = priv_next(s, PRIV_NEXT_DONE);
        work++;
        if (px_tpc_complete_head(&c->base, s->status) < 0)
            return -1;
    }
    c->in_rx = 1;
    for (px_tp_send *s = next_frame(c); s; s = next_frame(c)) {
        work++;
        s->status = 0;
        if (deliver(c, s) < 0)
            return -1; /* gone: leave_link handed it back */
    }
    c->in_rx = 0;

    pthread_mutex_lock(&lk->lock);
    int room = c->in.room;
    c->in.room = 0;
    int gone = c->in.peer_gone && !c->in.frames;
    pthread_mutex_unlock(&lk->lock);
    if (room && px_tpc_room(&c->base) < 0)
        return -1;
    if (gone && c->open)
        return px_tpc_disconnect(&c->base, -PX_EDISCONNECTED);
    if (gone && c->side == 0) /* the server end closed before accepting us */
        return px_tpc_disconnect(&c->base, -PX_ECONNREFUSED);
    if (work)
        px_tpc_mark_hot(&c->base);
    return work > 0;
}

static void conn_wake_cb(px_tp_watch *w, void *arg)
{
    service_inbox(arg);
}

/* The service op (busy-polling a hot conn): the inbox, without the loop. */
static int inproc_service(px_tp_conn *pc)
{
    int r = service_inbox((inproc_conn *)(void *)pc);
    if (r == 0 && px_tpc_hot_idle(pc))
        px_tpc_cool(pc); /* its wake-up still comes through the loop */
    return r;
}

/* The kick op: resume after rx_pause(0). */
static int inproc_kick(px_tp_conn *pc)
{
    return service_inbox((inproc_conn *)(void *)pc) < 0 ? -1 : 0;
}

/* ---- sending ---------------------------------------------------------------------------- */

static int inproc_send(px_tp_conn *pc, px_tp_send *s)
{
    inproc_conn *c = (inproc_conn *)(void *)pc;
    if (pc->closed)
        return -PX_ECLOSED;
    if (c->dead)
        return -PX_EDISCONNECTED;
    if (!c->open)
        return -PX_ENOTCONN;
    int rc = px_tp_send_check(s, 1024);
    if (rc)
        return rc;
    /* An echo from the bytes of the frame being delivered: those are the
     * peer's, handed back before this send is read. */
    if (px_tpc_points_into_lent(pc, s) && px_tpc_bounce(s) < 0)
        return -PX_ENOMEM;
    inproc_link *lk = c->lk;
    pthread_mutex_lock(&lk->lock);
    inproc_conn *p = peer_of(c);
    if (!p || c->in.peer_gone) {
        pthread_mutex_unlock(&lk->lock);
        return -PX_EDISCONNECTED; /* the peer's end is closing: disconnected follows */
    }
    if (p->in.n_frames >= INBOX_MAX) {
        c->in.want_room = 1;
        pthread_mutex_unlock(&lk->lock);
        return px_tpc_refuse(pc);
    }
    px_tpc_queue(pc, s); /* done when the peer has delivered it */
    push_frame(&p->in, s);
    wake(p);
    pthread_mutex_unlock(&lk->lock);
    return PX_TP_QUEUED;
}

/* Nothing is written at the end of an iteration: frames go at send(). */
static int inproc_flush(px_tp_conn *pc)
{
    return 0;
}

/* ---- ends of a connection ------------------------------------------------------------------ */

static inproc_conn *conn_new(inproc_tp *tp, inproc_link *lk, int side, const char *name)
{
    inproc_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    px_tpc_conn_init(&c->base, &tp->base);
    c->tp = tp;
    c->lk = lk;
    c->side = side;
    snprintf(c->name, sizeof c->name, "%s", name);
    const px_tp_host *h = tp->base.host;
    h->ops->async_init(h, &c->wake, conn_wake_cb, c);
    return c;
}

static void inproc_conn_free(px_tp_conn *pc)
{
    inproc_conn *c = (inproc_conn *)(void *)pc;
    free(c->gather);
    free(c);
}

/* Leave the link: the peer hears we are gone; the peer's frames still in
 * our inbox go back to it as not delivered. Our own sends in its inbox stay
 * ours: the chassis returns or fails them, so they are taken out first. */
static void leave_link(inproc_conn *c, int status)
{
    inproc_link *lk = c->lk;
    if (!lk)
        return;
    pthread_mutex_lock(&lk->lock);
    /* The peer reading one of our frames on its thread: our owner frees
     * that memory once we return, so wait for it (a frame upcall does not
     * block). On our own thread it is below us on the stack: nothing to
     * wait for, and the owner must not free what that upcall still reads
     * (see the file's comment). */
    while (lk->delivering[!c->side] &&
           !pthread_equal(lk->delivering_thread[!c->side], pthread_self()))
        pthread_cond_wait(&lk->delivered, &lk->lock);
    hand_back(c); /* closed from inside the upcall of the peer's frame */
    lk->end[c->side] = NULL;
    inproc_conn *p = lk->end[!c->side];
    px_tp_send *s;
    while ((s = pop_frame(&c->in)) != NULL) {
        s->status = status;
        if (p)
            push_done(&p->in, s);
    }
    if (p) {
        /* Ours, not yet delivered: out of its inbox. */
        px_tp_send *keep = NULL, *keep_tail = NULL;
        unsigned n = 0;
        while ((s = pop_frame(&p->in)) != NULL) {
            int mine = 0;
            for (px_tp_send *q = c->base.sends.head; q && !mine; q = q->tp_next)
                mine = q == s;
            if (mine)
                continue;
            set_priv_next(s, PRIV_NEXT_FRAME, NULL);
            if (keep_tail)
                set_priv_next(keep_tail, PRIV_NEXT_FRAME, s);
            else
                keep = s;
            keep_tail = s;
            n++;
        }
        p->in.frames = keep;
        p->in.frames_tail = keep_tail;
        p->in.n_frames = n;
        p->in.peer_gone = 1;
        wake(p);
    }
    pthread_mutex_unlock(&lk->lock);
    c->lk = NULL;
    link_drop(lk);
}

static void inproc_stop_io(px_tp_conn *pc)
{
    inproc_conn *c = (inproc_conn *)(void *)pc;
    c->dead = 1;
}

static void inproc_close(px_tp_conn *pc, px_tp_fifo *unfinished)
{
    inproc_conn *c = (inproc_conn *)(void *)pc;
    if (pc->closed)
        return;
    leave_link(c, -PX_EDISCONNECTED);
    host_of(c)->ops->async_fini(host_of(c), &c->wake);
    px_tpc_close(pc, unfinished);
}

static int inproc_peer_uri(px_tp_conn *pc, char *buf, size_t len)
{
    return snprintf(buf, len, "inproc://%s", ((inproc_conn *)(void *)pc)->name);
}

static void inproc_rx_pause(px_tp_conn *pc, int paused)
{
    inproc_conn *c = (inproc_conn *)(void *)pc;
    if (pc->closed || c->paused == !!paused)
        return;
    c->paused = !!paused;
    if (!paused)
        px_tpc_defer(pc, PX_TPC_KICK, 0);
}

/* ---- listeners and connecting ------------------------------------------------------------- */

static inproc_listener *bound(const char *name)
{
    for (inproc_listener *l = names; l; l = l->next_bound)
        if (strcmp(l->name, name) == 0)
            return l;
    return NULL;
}

/* Tell the client its connection was taken (1) or refused (-1). */
static void answer(inproc_link *lk, int how)
{
    pthread_mutex_lock(&lk->lock);
    inproc_conn *cl = lk->end[0];
    if (cl) {
        cl->in.accepted = how;
        wake(cl);
    }
    pthread_mutex_unlock(&lk->lock);
}

/* The listener's context: a server end for each request, offered. */
static void listener_wake_cb(px_tp_watch *w, void *arg)
{
    inproc_listener *l = arg;
    for (;;) {
        pthread_mutex_lock(&names_lock);
        request *r = l->requests;
        if (r)
            l->requests = r->next;
        pthread_mutex_unlock(&names_lock);
        if (!r)
            return;
        inproc_link *lk = r->lk;
        free(r);
        inproc_conn *sv = conn_new(l->tp, lk, 1, l->name);
        if (!sv) {
            answer(lk, -1);
            link_drop(lk);
            continue;
        }
        pthread_mutex_lock(&lk->lock);
        int client_there = lk->end[0] != NULL;
        if (client_there)
            lk->end[1] = sv; /* the request's reference is the server end's now */
        pthread_mutex_unlock(&lk->lock);
        if (!client_there) {
            sv->lk = NULL;
            link_drop(lk);
            host_of(sv)->ops->async_fini(host_of(sv), &sv->wake);
            px_tpc_close(&sv->base, NULL);
            continue;
        }
        if (px_tpc_offer(&l->base, &sv->base) < 0)
            return; /* the listener was closed from inside */
    }
}

static int check_name(const px_uri *uri)
{
    if (uri->host[0] || uri->port != -1 || !uri->path[0] || uri->path[0] == '/') {
        PX_TP_LOG(PX_LOG_WARN, "inproc://: takes a name (inproc://my-service)");
        return uri->path[0] ? -PX_EBADHOST : -PX_EBADPATH;
    }
    if (strlen(uri->path) > INPROC_NAME) {
        PX_TP_LOG(PX_LOG_WARN, "inproc://%s: the name is over %u bytes", uri->path, INPROC_NAME);
        return -PX_ENAMETOOLONG;
    }
    if (uri->n_opts) {
        PX_TP_LOG(PX_LOG_WARN, "inproc://%s: unknown option '%s' (inproc takes none)", uri->path,
                  uri->opts[0].key);
        return -PX_EBADOPT;
    }
    return 0;
}

static int inproc_check_uri(const px_uri *uri, int listener)
{
    return check_name(uri);
}

static int inproc_connect(px_tp *ptp, const px_uri *uri, const px_tp_owner *owner, px_tp_conn **out)
{
    int rc = check_name(uri);
    if (rc)
        return rc;
    inproc_link *lk = calloc(1, sizeof *lk);
    request *r = calloc(1, sizeof *r);
    inproc_conn *c = lk && r ? conn_new((inproc_tp *)(void *)ptp, lk, 0, uri->path) : NULL;
    if (!c) {
        free(lk);
        free(r);
        return -PX_ENOMEM;
    }
    pthread_mutex_init(&lk->lock, NULL);
    pthread_cond_init(&lk->delivered, NULL);
    lk->refs = 2; /* the client end, and the request (later the server end) */
    lk->end[0] = c;
    c->base.owner = *owner;
    r->lk = lk;
    pthread_mutex_lock(&names_lock);
    inproc_listener *l = bound(uri->path);
    if (l) {
        r->next = l->requests;
        l->requests = r;
        l->tp->base.host->ops->async_send(&l->wake);
    }
    pthread_mutex_unlock(&names_lock);
    if (!l) {
        free(r);
        lk->refs = 1;
        px_tpc_defer(&c->base, PX_TP_EV_DISCONNECTED, -PX_ECONNREFUSED);
    }
    *out = &c->base;
    return 0;
}

static int inproc_accept(px_tp_conn *pc, const px_tp_owner *owner)
{
    inproc_conn *c = (inproc_conn *)(void *)pc;
    int rc = px_tpc_accept(pc, owner);
    if (rc < 0)
        return rc;
    c->open = 1;
    answer(c->lk, 1);
    return 0;
}

static void inproc_reject(px_tp_conn *pc, int reason)
{
    inproc_conn *c = (inproc_conn *)(void *)pc;
    if (c->lk)
        answer(c->lk, -1);
    inproc_close(pc, NULL);
}

static int inproc_listen(px_tp *ptp, const px_uri *uri, const px_tp_listen_owner *owner,
                         px_tp_listener **out)
{
    int rc = check_name(uri);
    if (rc)
        return rc;
    inproc_listener *l = calloc(1, sizeof *l);
    if (!l)
        return -PX_ENOMEM;
    snprintf(l->name, sizeof l->name, "%s", uri->path);
    pthread_mutex_lock(&names_lock);
    if (bound(l->name)) {
        pthread_mutex_unlock(&names_lock);
        free(l);
        return -PX_EADDRINUSE;
    }
    px_tpc_listener_init(&l->base, ptp, owner);
    l->tp = (inproc_tp *)(void *)ptp;
    ptp->host->ops->async_init(ptp->host, &l->wake, listener_wake_cb, l);
    l->next_bound = names;
    names = l;
    pthread_mutex_unlock(&names_lock);
    *out = &l->base;
    return 0;
}

static int inproc_listener_uri(px_tp_listener *pl, char *buf, size_t len)
{
    return snprintf(buf, len, "inproc://%s", ((inproc_listener *)(void *)pl)->name);
}

static void inproc_listener_close(px_tp_listener *pl)
{
    inproc_listener *l = (inproc_listener *)(void *)pl;
    if (pl->closed)
        return;
    pthread_mutex_lock(&names_lock);
    for (inproc_listener **pp = &names; *pp; pp = &(*pp)->next_bound)
        if (*pp == l) {
            *pp = l->next_bound;
            break;
        }
    request *r = l->requests;
    l->requests = NULL;
    pthread_mutex_unlock(&names_lock);
    while (r) { /* clients still waiting: refused */
        request *next = r->next;
        answer(r->lk, -1);
        link_drop(r->lk);
        free(r);
        r = next;
    }
    const px_tp_host *h = l->tp->base.host;
    h->ops->async_fini(h, &l->wake);
    px_tpc_listener_close(pl);
}

static void inproc_listener_free(px_tp_listener *pl)
{
    free(pl);
}

/* ---- the instance ------------------------------------------------------------------------ */

static int inproc_init(const px_tp_host *host, px_tp **out)
{
    inproc_tp *tp = calloc(1, sizeof *tp);
    if (!tp)
        return -PX_ENOMEM;
    px_tpc_init(&tp->base, &inproc_transport, host);
    *out = &tp->base;
    return 0;
}

static void inproc_fini(px_tp *ptp)
{
    px_tpc_fini(ptp);
    free(ptp);
}

static void inproc_get_caps(px_tp *ptp, px_tp_caps *out)
{
    *out = (px_tp_caps){
        .flags = PX_TP_CAP_RX_DIRECT | PX_TP_CAP_ZCOPY_SEND,
        .max_iov = 1024,
        .max_inline = ptp->host->inline_threshold,
        .max_msg = UINT32_MAX,
    };
}

static const char *const inproc_schemes[] = {"inproc", NULL};

/* check_name() refuses every option. */
static const px_tp_option inproc_options[] = {
    {NULL, NULL, NULL, NULL, 0, NULL},
};

const px_transport inproc_transport = {
    .abi = PX_TRANSPORT_ABI,
    .name = "inproc",
    .schemes = inproc_schemes,
    .init = inproc_init,
    .fini = inproc_fini,
    .get_caps = inproc_get_caps,
    .check_uri = inproc_check_uri,
    .listen = inproc_listen,
    .listener_uri = inproc_listener_uri,
    .listener_close = inproc_listener_close,
    .connect = inproc_connect,
    .accept = inproc_accept,
    .reject = inproc_reject,
    .send = inproc_send,
    .close = inproc_close,
    .peer_uri = inproc_peer_uri,
    .rx_pause = inproc_rx_pause,
    .conn_free = inproc_conn_free,
    .listener_free = inproc_listener_free,
    .stop_io = inproc_stop_io,
    .flush = inproc_flush,
    .kick = inproc_kick,
    .service = inproc_service,
    .options = inproc_options,
};

/* The plugin's entry point: plexus calls it after loading the library. */
__attribute__((visibility("default"))) int px_transport_plugin_init(void);
int px_transport_plugin_init(void)
{
    return px_transport_register(&inproc_transport);
}
