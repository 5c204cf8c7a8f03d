/* The transport chassis: the discipline every transport keeps the same
 * way, written once (see include/plexus/transport.h, "the chassis").
 *
 * Lists: an instance keeps every conn and listener, the conns with an
 * event to deliver from the loop (deferred), those to flush at the end of
 * the iteration (dirty) and those busy-polled (hot). Its loop hooks are a
 * prepare watcher, started only while there is work, which flushes and
 * busy-polls, and an idle watcher that keeps the loop's poll from sleeping
 * while a transport says it must stay awake.
 *
 * Upcalls go through wrappers that count the conn's depth: an owner may
 * close the conn from inside any upcall; close only marks it, and the
 * outermost wrapper frees it (the transport's conn_free op) on the way
 * out. A wrapper that returns -1 means "closed, maybe freed: hands off".
 */
#include <ev.h>
#include <stdlib.h>
#include <string.h>

#include "core/ctx.h"
#include "core/log.h"
#include "plexus/transport.h"

#define HOT_IDLE 64 /* idle services before a hot conn may cool */

_Static_assert(sizeof(ev_prepare) <= sizeof(px_tp_watch), "px_tp_watch too small");
_Static_assert(sizeof(ev_idle) <= sizeof(px_tp_watch), "px_tp_watch too small");

/* ---- lists ---------------------------------------------------------------------- */

#define OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

static int link_empty(const px_tp_link *h)
{
    return h->next == h;
}
static px_tp_link *link_pop(px_tp_link *h)
{
    if (link_empty(h))
        return NULL;
    px_tp_link *n = h->next;
    px_tp_link_del(n);
    return n;
}
/* Move every node of `from` to the end of `to`. */
static void link_splice(px_tp_link *to, px_tp_link *from)
{
    if (link_empty(from))
        return;
    from->next->prev = to->prev;
    to->prev->next = from->next;
    from->prev->next = to;
    to->prev = from->prev;
    px_tp_link_init(from);
}

static struct ev_loop *loop_of(const px_tp *tp)
{
    return ((px_ctx *)tp->host->priv)->loop;
}

static ev_prepare *prep_of(px_tp *tp)
{
    return (ev_prepare *)(void *)tp->prepare.opaque;
}
static ev_idle *idle_of(px_tp *tp)
{
    return (ev_idle *)(void *)tp->idle.opaque;
}

/* ---- the instance and its loop hooks ---------------------------------------------- */

/* Have the prepare watcher flush and poll before the loop sleeps. Armed
 * from inside the context's own prepare watcher (deferred work: a close,
 * a completion sending the next frame), a watcher started now would miss
 * this iteration's prepare phase and the loop would sleep until its next
 * timer with the work undone: the idle watcher keeps that poll from
 * blocking, and the next iteration runs it. */
static void arm(px_tp *tp)
{
    struct ev_loop *loop = loop_of(tp);
    px_ctx *ctx = tp->host->priv;
    if (!ev_is_active(prep_of(tp))) {
        ev_prepare_start(loop, prep_of(tp));
        if (ctx->in_prepare && !ev_is_active(idle_of(tp))) {
            ev_idle_start(loop, idle_of(tp));
            ctx->tp_awake = 1;
        }
    }
}

static void run_conn_deferred(px_tp_conn *c);

/* Deferred events and flushes until neither has work (bounded: the idle
 * watcher picks up the rest). Lists are popped one conn at a time, so an
 * upcall may close any conn (close unlinks it) or queue more work. */
static void progress(px_tp *tp)
{
    tp->in_progress = 1;
    for (int round = 0; round < 64; round++) {
        if (link_empty(&tp->deferred) && link_empty(&tp->dirty))
            break;
        px_tp_link *n;
        while ((n = link_pop(&tp->deferred)))
            run_conn_deferred(OF(n, px_tp_conn, defer_link));
        px_tp_link batch;
        px_tp_link_init(&batch);
        link_splice(&batch, &tp->dirty);
        while ((n = link_pop(&batch))) {
            px_tp_conn *c = OF(n, px_tp_conn, dirty_link);
            if (!c->closed && !c->dead)
                c->ops->flush(c);
        }
    }
    tp->in_progress = 0;
}

static int service(px_tp_conn *c)
{
    int r = c->ops->service(c);
    if (r > 0)
        c->idle_polls = 0;
    else if (r == 0)
        c->idle_polls++;
    return r;
}

/* Service every hot conn once. Returns how many had something to do. */
static int service_hot(px_tp *tp)
{
    if (!tp->ops->service)
        return 0;
    int busy = 0;
    px_tp_link todo;
    px_tp_link_init(&todo);
    link_splice(&todo, &tp->hot);
    px_tp_link *n;
    while ((n = link_pop(&todo))) {
        px_tp_conn *c = OF(n, px_tp_conn, hot_link);
        px_tp_link_push(&tp->hot, &c->hot_link);
        busy += service(c) > 0;
    }
    return busy;
}

/* Before the loop may sleep: finish the iteration's work, busy-poll the
 * hot conns, then let the transport arm its wake-ups. The hot conns are
 * serviced here, not from the idle watcher: libev runs idle watchers only
 * when nothing else is pending, so a timer or a busy fd due on every
 * iteration would starve them, while prepare runs on every iteration. */
static void prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    px_tp *tp = OF((void *)w, px_tp, prepare);
    progress(tp);
    if (tp->ops->prepare && service_hot(tp))
        progress(tp);
    int may_block = !(tp->host->pass_nonblocking && *tp->host->pass_nonblocking);
    int awake = tp->ops->prepare ? tp->ops->prepare(tp, may_block) : 0;
    if (awake || !link_empty(&tp->deferred) || !link_empty(&tp->dirty)) {
        if (!ev_is_active(idle_of(tp)))
            ev_idle_start(loop, idle_of(tp));
        /* The loop will not sleep: nor may an application (px_ctx_arm). */
        ((px_ctx *)tp->host->priv)->tp_awake = 1;
    } else if (!tp->ops->prepare || link_empty(&tp->hot)) {
        ev_prepare_stop(loop, w);
    }
}

/* Active only to keep the loop's poll from blocking while there is work:
 * the next iteration's prepare does it. */
static void idle_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
    px_tp *tp = OF((void *)w, px_tp, idle);
    ev_idle_stop(loop, w);
    arm(tp);
}

void px_tpc_init(px_tp *tp, const px_transport *ops, const px_tp_host *host)
{
    tp->ops = ops;
    tp->host = host;
    px_tp_link_init(&tp->conns);
    px_tp_link_init(&tp->listeners);
    px_tp_link_init(&tp->deferred);
    px_tp_link_init(&tp->dirty);
    px_tp_link_init(&tp->hot);
    tp->in_progress = 0;
    tp->nevents = 0;
    ev_prepare_init(prep_of(tp), prepare_cb);
    ev_idle_init(idle_of(tp), idle_cb);
    /* libev grows its watcher arrays on a watcher's first start: do it now,
     * so the data path never allocates for it. */
    struct ev_loop *loop = loop_of(tp);
    ev_prepare_start(loop, prep_of(tp));
    ev_prepare_stop(loop, prep_of(tp));
    ev_idle_start(loop, idle_of(tp));
    ev_idle_stop(loop, idle_of(tp));
}

void px_tpc_fini(px_tp *tp)
{
    if (!link_empty(&tp->conns) || !link_empty(&tp->listeners))
        PX_LOGE("%s: fini with connections or listeners still open (leaked)", tp->ops->name);
    ev_prepare_stop(loop_of(tp), prep_of(tp));
    ev_idle_stop(loop_of(tp), idle_of(tp));
}

void px_tpc_prepare_now(px_tp *tp)
{
    if (ev_is_active(prep_of(tp)))
        prepare_cb(loop_of(tp), prep_of(tp), EV_PREPARE);
}

/* The idle watcher does not count: it says what the last prepare pass
 * found, which px_ctx_arm asks afresh (tp_awake). */
int px_tpc_has_work(const px_tp *tp)
{
    return !link_empty(&tp->deferred) || !link_empty(&tp->dirty);
}

int px_tpc_poll(px_tp *tp)
{
    if (tp->in_progress)
        return 0; /* re-entered from an upcall: the outer call finishes the work */
    uint64_t before = tp->nevents;
    progress(tp);
    service_hot(tp);
    progress(tp);
    return (int)(tp->nevents - before);
}

/* ---- conns and upcalls ------------------------------------------------------------------ */

void px_tpc_conn_init(px_tp_conn *c, px_tp *tp)
{
    c->ops = tp->ops;
    c->tp = tp;
    px_tp_link_init(&c->defer_link);
    px_tp_link_init(&c->dirty_link);
    px_tp_link_init(&c->hot_link);
    px_tp_link_init(&c->lst_link);
    px_tp_link_push(&tp->conns, &c->link);
}

static void free_tp_conn(px_tp_conn *c)
{
    px_tp_link_del(&c->link);
    c->ops->conn_free(c);
}

static void enter(px_tp_conn *c)
{
    c->depth++;
    c->tp->nevents++;
}

/* -1 when the conn was closed meanwhile (freed if we were the outermost). */
static int leave(px_tp_conn *c)
{
    if (--c->depth == 0 && c->closed) {
        free_tp_conn(c);
        return -1;
    }
    return c->closed ? -1 : 0;
}

int px_tpc_connected(px_tp_conn *c)
{
    enter(c);
    c->owner.up->connected(c->owner.self);
    return leave(c);
}

int px_tpc_frame(px_tp_conn *c, px_tp_rx *rx)
{
    enter(c);
    c->owner.up->frame(c->owner.self, rx);
    return leave(c);
}

/* The owner's vector must exist and cover the frame's data: it is never
 * trusted blindly. */
static int dst_covers(const px_tp_rx *rx)
{
    if (!rx->dst || rx->dst_count == 0)
        return 0;
    uint64_t sum = 0;
    for (uint32_t i = 0; i < rx->dst_count; i++) {
        if (rx->dst[i].len && !rx->dst[i].base)
            return 0;
        sum += rx->dst[i].len;
    }
    return sum >= rx->hdr.data_len;
}

int px_tpc_rx_assign(px_tp_conn *c, px_tp_rx *rx, int *declined)
{
    enter(c);
    int r = c->owner.up->rx_assign(c->owner.self, rx);
    if (leave(c) < 0)
        return -1;
    *declined = r != 0;
    if (r == 0 && !dst_covers(rx)) {
        PX_LOGE("%s: rx_assign gave a buffer shorter than %u bytes", c->ops->name,
                rx->hdr.data_len);
        return px_tpc_fail(c, -PX_ESHORTBUF);
    }
    return 0;
}

int px_tpc_complete_head(px_tp_conn *c, int status)
{
    px_tp_send *s = px_tp_fifo_pop(&c->sends);
    if (s->tp_bounce) /* rare: a send that pointed into lent memory */
        px_tpc_unbounce(s);
    s->status = status;
    enter(c);
    c->owner.up->send_done(c->owner.self, s, status);
    return leave(c);
}

static void unlink_work(px_tp_conn *c)
{
    px_tp_link_del(&c->defer_link);
    px_tp_link_del(&c->dirty_link);
    px_tp_link_del(&c->hot_link);
}

int px_tpc_disconnect(px_tp_conn *c, int reason)
{
    if (c->dead || c->closed)
        return -1;
    c->dead = 1;
    c->ops->stop_io(c);
    unlink_work(c);
    /* Queued frames can no longer leave: finish them before the owner hears
     * of the disconnect, so it sees every send end exactly once. */
    while (c->sends.head)
        if (px_tpc_complete_head(c, -PX_EDISCONNECTED) < 0)
            return -1;
    enter(c);
    c->owner.up->disconnected(c->owner.self, reason);
    leave(c);
    return -1;
}

int px_tpc_fail(px_tp_conn *c, int reason)
{
    if (c->dead || c->closed)
        return -1;
    PX_LOGD("%s: protocol error %s; closing the connection", c->ops->name, px_errname(reason));
    enter(c);
    c->owner.up->error(c->owner.self, reason);
    if (leave(c) < 0)
        return -1;
    return px_tpc_disconnect(c, reason);
}

void px_tpc_queue(px_tp_conn *c, px_tp_send *s)
{
    s->status = 0;
    px_tp_fifo_push(&c->sends, s);
}

int px_tpc_refuse(px_tp_conn *c)
{
    c->want_room = 1;
    return -PX_EAGAIN;
}

int px_tpc_room(px_tp_conn *c)
{
    if (!c->want_room || c->dead || c->closed)
        return 0;
    c->want_room = 0;
    enter(c);
    c->owner.up->room(c->owner.self);
    return leave(c);
}

/* ---- work from the loop ------------------------------------------------------------------ */

void px_tpc_defer(px_tp_conn *c, int event, int reason)
{
    if (c->closed)
        return;
    /* A pending end is never downgraded to a kick. */
    if (!(event == PX_TPC_KICK && c->defer_event && c->defer_event != PX_TPC_KICK)) {
        c->defer_event = event;
        c->defer_reason = reason;
    }
    px_tp_link_del(&c->defer_link);
    px_tp_link_push(&c->tp->deferred, &c->defer_link);
    arm(c->tp);
}

static void run_conn_deferred(px_tp_conn *c)
{
    int ev = c->defer_event;
    c->defer_event = 0;
    if (c->closed || (c->dead && ev != PX_TP_EV_DISCONNECTED))
        return;
    switch (ev) {
    case PX_TP_EV_CONNECTED:
        px_tpc_connected(c);
        break;
    case PX_TP_EV_DISCONNECTED:
        px_tpc_disconnect(c, c->defer_reason);
        break;
    case PX_TP_EV_ERROR:
        px_tpc_fail(c, c->defer_reason);
        break;
    case PX_TPC_KICK:
        if (c->ops->kick)
            c->ops->kick(c);
        break;
    default:
        break;
    }
}

void px_tpc_mark_dirty(px_tp_conn *c)
{
    if (c->dirty_link.next == &c->dirty_link && !c->closed && !c->dead) {
        px_tp_link_push(&c->tp->dirty, &c->dirty_link);
        arm(c->tp);
    }
}

void px_tpc_mark_hot(px_tp_conn *c)
{
    c->idle_polls = 0;
    if (c->hot_link.next == &c->hot_link && !c->closed && !c->dead) {
        px_tp_link_push(&c->tp->hot, &c->hot_link);
        /* Only a transport with a before-sleep hook needs the loop's help
         * for hot conns; the others are only busy-polled. */
        if (c->tp->ops->prepare)
            arm(c->tp);
    }
}

void px_tpc_cool(px_tp_conn *c)
{
    px_tp_link_del(&c->hot_link);
}

int px_tpc_hot_each(px_tp *tp, int (*fn)(px_tp_conn *c, void *arg), void *arg)
{
    int kept = 0, stop = 0;
    px_tp_link todo;
    px_tp_link_init(&todo);
    link_splice(&todo, &tp->hot);
    px_tp_link *n;
    while ((n = link_pop(&todo))) {
        px_tp_conn *c = OF(n, px_tp_conn, hot_link);
        if (stop) {
            px_tp_link_push(&tp->hot, &c->hot_link);
            kept++;
            continue;
        }
        px_tp_link_push(&tp->hot, &c->hot_link); /* fn may cool or close it */
        int r = fn(c, arg);
        if (r == 0)
            px_tp_link_del(&c->hot_link);
        else if (r > 0)
            kept++;
        stop = r == 2;
    }
    return kept;
}

int px_tpc_hot_idle(const px_tp_conn *c)
{
    return c->idle_polls >= HOT_IDLE;
}

uint32_t px_tpc_more(px_tp_conn *c, uint32_t (*count)(px_tp_conn *c))
{
    if (c->more_left)
        c->more_left--;
    else
        c->more_left = count(c);
    return c->more_left;
}

void px_tpc_more_reset(px_tp_conn *c)
{
    c->more_left = 0;
}

/* ---- listeners ---------------------------------------------------------------------------- */

void px_tpc_listener_init(px_tp_listener *l, px_tp *tp, const px_tp_listen_owner *owner)
{
    l->ops = tp->ops;
    l->tp = tp;
    l->owner = *owner;
    px_tp_link_init(&l->pending);
    px_tp_link_push(&tp->listeners, &l->link);
}

static void free_listener(px_tp_listener *l)
{
    px_tp_link_del(&l->link);
    l->ops->listener_free(l);
}

int px_tpc_offer(px_tp_listener *l, px_tp_conn *c)
{
    c->lst = l;
    px_tp_link_push(&l->pending, &c->lst_link);
    /* The conn is not touched after this: the owner may accept, reject or
     * keep it, or close the listener (which closes it). */
    l->depth++;
    l->tp->nevents++;
    l->owner.new_conn(l->owner.self, c);
    if (--l->depth == 0 && l->closed) {
        free_listener(l);
        return -1;
    }
    return l->closed ? -1 : 0;
}

int px_tpc_accept(px_tp_conn *c, const px_tp_owner *owner)
{
    if (!c->lst || c->closed)
        return -PX_EINVAL;
    px_tp_link_del(&c->lst_link);
    c->lst = NULL;
    c->owner = *owner;
    return 0;
}

void px_tpc_listener_close(px_tp_listener *l)
{
    if (l->closed)
        return;
    l->closed = 1;
    px_tp_link *n;
    while ((n = link_pop(&l->pending))) {
        px_tp_conn *c = OF(n, px_tp_conn, lst_link);
        px_tp_fifo none = {0};
        c->lst = NULL;
        c->ops->close(c, &none); /* offered conns have sent nothing */
    }
    if (l->depth == 0)
        free_listener(l);
}

void px_tpc_close(px_tp_conn *c, px_tp_fifo *unfinished)
{
    if (c->closed)
        return;
    c->closed = 1;
    px_tp_link_del(&c->lst_link);
    c->lst = NULL;
    unlink_work(c);
    px_tp_send *s;
    while ((s = px_tp_fifo_pop(&c->sends))) {
        px_tpc_unbounce(s);
        s->status = -PX_ECLOSED;
        if (unfinished)
            px_tp_fifo_push(unfinished, s);
    }
    if (c->depth == 0)
        free_tp_conn(c);
}

/* ---- the lending rule ---------------------------------------------------------------------- */

void px_tpc_lendable(px_tp_conn *c, unsigned region, const void *base, size_t len)
{
    if (region < PX_TPC_LEND_MAX) {
        c->lendable[region].base = base;
        c->lendable[region].len = base ? len : 0;
    }
}

static int overlaps(const void *p, size_t len, const void *lo, size_t size)
{
    const uint8_t *b = p, *l = lo;
    return len && l && b < l + size && b + len > l;
}

int px_tpc_points_into_lent(const px_tp_conn *c, const px_tp_send *s)
{
    for (unsigned r = 0; r < PX_TPC_LEND_MAX; r++) {
        const void *lo = c->lendable[r].base;
        size_t size = c->lendable[r].len;
        if (!size)
            continue;
        if (overlaps(s->app_hdr, s->hdr.hdr_len, lo, size))
            return 1;
        for (uint32_t i = 0; i < s->data_count; i++)
            if (overlaps(s->data[i].base, s->data[i].len, lo, size))
                return 1;
    }
    return 0;
}

int px_tpc_bounce(px_tp_send *s)
{
    if (s->tp_bounce)
        return 0;
    size_t body = (size_t)s->hdr.hdr_len + s->hdr.data_len;
    px_iov *iov = malloc(sizeof(*iov) + (body ? body : 1));
    if (!iov)
        return -PX_ENOMEM;
    uint8_t *copy = (uint8_t *)(iov + 1);
    px_tp_send_copy_body(s, copy);
    *iov = (px_iov){.base = copy + s->hdr.hdr_len, .len = s->hdr.data_len};
    s->app_hdr = s->hdr.hdr_len ? copy : NULL;
    s->data = iov;
    s->data_count = s->hdr.data_len ? 1 : 0;
    s->tp_bounce = iov;
    return 0;
}

void px_tpc_unbounce(px_tp_send *s)
{
    free(s->tp_bounce);
    s->tp_bounce = NULL;
}

int px_tpc_reclaim(px_tp_conn *c)
{
    if (!c->lent)
        return 0;
    if (c->sends.head && c->ops->flush(c) < 0)
        return -1;
    for (px_tp_send *s = c->sends.head; s; s = s->tp_next)
        if (!s->tp_bounce && px_tpc_points_into_lent(c, s) && px_tpc_bounce(s) < 0)
            return px_tpc_fail(c, -PX_ENOMEM);
    c->lent = 0;
    return 0;
}
