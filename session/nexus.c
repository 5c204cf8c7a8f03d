/* The link between the session layer and one transport connection (the
 * nexus): every upcall of the link lands here and is routed, by the frame
 * header's channel, to a connection's send or receive side. One link may
 * carry the connections of several sessions (px_ctx_opts.share_links); a
 * link with one connection on it behaves exactly as a private one.
 *
 * Every frame leaves through conn_tp_send(), which stamps the channel,
 * keeps the connection's queue of frames the transport refused
 * (-PX_EAGAIN) until the link's room upcall, and completes frames the
 * transport copied at once (PX_TP_SENT) from the loop.
 *
 * Leaving a link others still use: frames the transport holds point into
 * the connection (and its tasks and the application's buffers), so the
 * connection waits, as `leaving`, until the transport is done with them
 * before it dies; an abrupt end first sends RESET on its channel so that
 * the peer's connection ends too. The link's own death ends every
 * connection on it, each completing its own messages exactly once. */
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "plexus/error.h"
#include "session/internal.h"
#include "session/layer.h"

enum { CTL_FIN, CTL_FIN_ACK, CTL_KEEPALIVE, CTL_RESET };

static const px_tp_upcalls nexus_upcalls;

/* ---- which connection a send or a frame is for ---------------------------- */

/* Control frames carry their connection, tagged, as cookie
 * (conn_ctl_cookie); the others their task, which knows its connection. */
static px_conn *conn_of_send(const px_tp_send *s)
{
    uintptr_t v = (uintptr_t)s->cookie;
    if (v & PX_CONN_COOKIE_TAG)
        return (px_conn *)(v & ~(uintptr_t)PX_CONN_COOKIE_TAG);
    return ((px_task *)s->cookie)->conn;
}

static px_conn *new_server_conn(px_nexus *nx, uint32_t channel);

/* The connection a frame is for. A server link's first connection takes
 * the channel of the first frame; a HELLO on a channel nobody has is a
 * new connection (server side). NULL: nobody (a straggler of a connection
 * that has left, dropped). */
__attribute__((noinline)) static px_conn *route_walk(px_nexus *nx, const px_frame_hdr *h)
{
    px_conn *c;
    for (px_list *n = nx->conns.next; n != &nx->conns; n = n->next) {
        c = PX_CONTAINER_OF(n, px_conn, nexus_link);
        if (c->channel == h->channel || c->channel == PX_CHAN_UNBOUND) {
            c->channel = h->channel;
            return nx->last = c;
        }
    }
    if (!nx->client && h->type == PX_FT_HELLO && !nx->dead)
        return nx->last = new_server_conn(nx, h->channel);
    return NULL;
}

/* The message path: the connection the last frame went to (the walk, out
 * of line, only when the link's channels take turns). */
static inline px_conn *route(px_nexus *nx, const px_frame_hdr *h)
{
    px_conn *c = nx->last;
    if (__builtin_expect(c && c->channel == h->channel, 1))
        return c;
    return route_walk(nx, h);
}

/* ---- the link's life ------------------------------------------------------- */

static void idle_fired(px_ctimer *t);

static px_nexus *nexus_new(px_ctx *ctx, px_ctx_tp *ctp, int client)
{
    px_nexus *nx = calloc(1, sizeof(*nx));
    if (!nx)
        return NULL;
    nx->ctx = ctx;
    nx->ctp = ctp;
    nx->client = client;
    px_list_init(&nx->conns);
    px_list_init(&nx->layer_link);
    px_ctimer_init(ctx, &nx->idle, idle_fired);
    px_layer *l = layer_of(ctx);
    l->links_opened++;
    l->links_open++;
    return nx;
}

static void nexus_free(px_nexus *nx)
{
    if (nx->walking) { /* a fan-out walk is on the stack: it frees it */
        nx->doomed = 1;
        return;
    }
    px_ctimer_stop(&nx->idle);
    px_list_del(&nx->layer_link);
    layer_of(nx->ctx)->links_open--;
    free(nx->uri);
    free(nx);
}

/* Close the transport (nothing of it runs after this); what it gives back
 * is `unfinished`'s, or, with NULL, goes to the connection it belongs to. */
static void close_link(px_nexus *nx, px_tp_fifo *unfinished)
{
    nx->dead = 1;
    nx->shareable = 0;
    px_list_del(&nx->layer_link);
    px_tp_conn *tp = nx->tp;
    nx->tp = NULL;
    if (!tp)
        return;
    px_tp_fifo back = {0};
    tp->ops->close(tp, &back);
    px_tp_send *s;
    while ((s = px_tp_fifo_pop(&back)) != NULL) {
        px_conn *c = conn_of_send(s);
        c->tp_held--;
        px_tp_fifo_push(unfinished ? unfinished : &c->link_unfinished, s);
    }
    for (px_list *n = nx->conns.next; n != &nx->conns; n = n->next)
        PX_CONTAINER_OF(n, px_conn, nexus_link)->tp = NULL;
}

static void attach(px_nexus *nx, px_conn *c, uint32_t channel)
{
    c->nx = nx;
    c->tp = nx->tp;
    c->ctp = nx->ctp;
    c->channel = channel;
    c->visit = nx->visit; /* reached by the next walk, not skipped as if by this one */
    px_list_push_back(&nx->conns, &c->nexus_link);
    nx->n_conns++;
    px_ctimer_stop(&nx->idle);
}

static void detach(px_conn *c)
{
    px_nexus *nx = c->nx;
    if (c->rx_paused)
        nexus_pause(c, 0);
    if (c->leaving) {
        c->leaving = 0;
        nx->n_leaving--;
    }
    px_list_del(&c->nexus_link);
    nx->n_conns--;
    if (nx->last == c)
        nx->last = NULL;
    c->nx = NULL;
    c->tp = NULL;
}

/* Nobody on it: a client's lingers for the next connect, a server's waits
 * for a HELLO as a fresh one does; then it closes. */
static void idle_fired(px_ctimer *t)
{
    px_nexus *nx = PX_CONTAINER_OF(t, px_nexus, idle);
    if (nx->n_conns)
        return;
    close_link(nx, NULL);
    nexus_free(nx);
}

static int session_on(const px_nexus *nx, const px_session *s)
{
    for (const px_list *n = nx->conns.next; n != &nx->conns; n = n->next)
        if (PX_CONTAINER_OF(n, px_conn, nexus_link)->session == s)
            return 1;
    return 0;
}

/* A shared link of the context to `uri` that c may join. */
static px_nexus *find_shared(px_conn *c, px_ctx_tp *ctp, const char *uri)
{
    px_layer *l = layer_of(c->ctx);
    for (px_list *n = l->links.next; n != &l->links; n = n->next) {
        px_nexus *nx = PX_CONTAINER_OF(n, px_nexus, layer_link);
        if (nx->shareable && nx->ctp == ctp && nx->next_chan != PX_CHAN_UNBOUND &&
            nx->n_conns < PX_LINK_MAX_CONNS && strcmp(nx->uri, uri) == 0 &&
            !session_on(nx, c->session))
            return nx;
    }
    return NULL;
}

/* A connection that joined a link already up hears `connected` from the
 * loop, as if its own connect had finished. */
static void join_fn(px_deferred *d)
{
    px_conn *c = PX_CONTAINER_OF(d, px_conn, join_d);
    if (c->state == CS_CONNECTING && c->nx && c->nx->connected)
        session_conn_connected(c);
}

int nexus_connect(px_conn *c, const char *uri, const px_uri *u)
{
    const px_transport *ops = NULL;
    px_ctx_tp *ctp = NULL;
    int rc = px_transport_lookup(u->scheme, &ops);
    if (rc == 0)
        rc = px_ctx_instance(c->ctx, ops, &ctp);
    if (rc < 0)
        return rc;
    int share = c->ctx->opts.share_links != 0;
    px_nexus *nx = share ? find_shared(c, ctp, uri) : NULL;
    if (nx) {
        attach(nx, c, nx->next_chan++);
        if (nx->connected)
            px_ctx_defer(c->ctx, &c->join_d);
        return 0;
    }
    nx = nexus_new(c->ctx, ctp, 1);
    if (!nx)
        return -PX_ENOMEM;
    px_tp_owner owner = {&nexus_upcalls, nx};
    rc = ctp->ops->connect(ctp->tp, u, &owner, &nx->tp);
    if (rc < 0) {
        nexus_free(nx);
        return rc;
    }
    attach(nx, c, 0);
    nx->next_chan = 1;
    if (share && (nx->uri = strdup(uri)) != NULL) {
        nx->shareable = 1;
        px_list_push_back(&layer_of(c->ctx)->links, &nx->layer_link);
    }
    return 0;
}

int nexus_accept(px_server *srv, px_tp_conn *tp, px_conn *c)
{
    px_nexus *nx = nexus_new(srv->ctx, srv->ctp, 0);
    if (!nx)
        return -PX_ENOMEM;
    px_tp_owner owner = {&nexus_upcalls, nx};
    if (tp->ops->accept(tp, &owner) < 0) {
        nexus_free(nx);
        return -PX_ECONNABORTED;
    }
    nx->tp = tp;
    nx->connected = 1;
    nx->server = srv;
    px_list_push_back(&srv->links, &nx->layer_link);
    srv->links_opened++;
    attach(nx, c, PX_CHAN_UNBOUND);
    return 0;
}

static px_conn *new_server_conn(px_nexus *nx, uint32_t channel)
{
    if (!nx->server)
        return NULL; /* unbound: nobody to take it */
    if (nx->n_conns >= PX_LINK_MAX_CONNS) {
        if (!nx->warned)
            PX_LOGW("server %s: a link carries %u connections already: refusing more on it",
                    nx->server->uri, nx->n_conns);
        nx->warned = 1;
        return NULL;
    }
    px_conn *c = server_conn_new(nx->server);
    if (!c)
        return NULL;
    attach(nx, c, channel);
    server_conn_start(nx->server, c);
    return c;
}

void nexus_server_gone(px_nexus *nx)
{
    nx->server = NULL;
    px_list_del(&nx->layer_link);
    if (nx->n_conns == 0) {
        close_link(nx, NULL);
        nexus_free(nx);
    }
}

void nexus_close_unused(px_list *links)
{
    px_list *n = links->next;
    while (n != links) {
        px_nexus *nx = PX_CONTAINER_OF(n, px_nexus, layer_link);
        n = n->next;
        if (nx->n_conns == 0) {
            close_link(nx, NULL);
            nexus_free(nx);
        }
    }
}

/* Tell the peer's connection on this channel that ours is gone (else
 * the link's traffic would keep it alive). Not through conn_tp_send: it
 * must not wait behind the frames we drop. Refused for room: retried on
 * the link's room upcall. */
static void send_reset(px_conn *c)
{
    px_tp_send *s = &c->ctl_send[CTL_RESET];
    if (c->reset_state == 2 || c->channel == PX_CHAN_UNBOUND)
        return;
    memset(s, 0, sizeof(*s));
    s->hdr.version = PX_WIRE_VERSION;
    s->hdr.type = PX_FT_RESET;
    s->hdr.channel = c->channel;
    s->cookie = conn_ctl_cookie(c);
    int rc = c->tp->ops->send(c->tp, s);
    c->reset_state = rc == -PX_EAGAIN ? 1 : 2;
    if (rc == PX_TP_QUEUED) {
        c->ctl_busy[CTL_RESET] = 1;
        c->tp_held++;
    }
    /* PX_TP_SENT: gone already; another error: the link is failing, and
     * its death ends the peer's connection too */
}

static void each_conn(px_nexus *nx, void (*fn)(px_conn *c, int arg), int arg);
static void conn_link_died(px_conn *c, int reason);

/* c waits as leaving (1), or no longer (0); the link counts them. */
static void set_leaving(px_conn *c, int on)
{
    if (c->leaving == on)
        return;
    c->leaving = on;
    if (c->nx)
        c->nx->n_leaving += on ? 1u : -1u;
}

static int must_wait(const px_conn *c)
{
    return c->tp_held != 0 || c->reset_state == 1;
}

/* A leaving connection whose last frame the transport let go of. */
static void leave_if_done(px_conn *c)
{
    if (c->leaving && !must_wait(c)) {
        set_leaving(c, 0);
        conn_die(c, c->leave_reason);
    }
}

int nexus_leave(px_conn *c, px_tp_fifo *unfinished)
{
    px_nexus *nx = c->nx;
    px_tp_fifo_append(unfinished, &c->link_unfinished);
    if (nx->dead) {
        detach(c);
        if (nx->n_conns == 0)
            nexus_free(nx);
        return 0;
    }
    if (nx->n_conns - nx->n_leaving > 1) { /* others stay on it */
        if (!c->graceful && !c->peer_reset && nx->connected)
            send_reset(c); /* (before connected the peer has nothing on this channel) */
        if (must_wait(c)) {
            set_leaving(c, 1);
            return 1;
        }
        detach(c);
        return 0;
    }
    /* Its last user: after a graceful close with nothing held, a shared
     * client link lingers, a server link waits for another HELLO. */
    uint32_t ms = nx->client ? (nx->shareable ? c->ctx->opts.link_linger_ms : 0)
                             : (nx->server ? c->ctx->opts.handshake_timeout_ms : 0);
    if (c->graceful && ms && nx->n_conns == 1) {
        if (must_wait(c)) { /* the link is kept only once it holds nothing of ours */
            set_leaving(c, 1);
            return 1;
        }
        detach(c);
        px_ctimer_start(&nx->idle, (uint64_t)ms * 1000000u, 0);
        return 0;
    }
    /* It closes; those still on it are leaving, waiting for frames the
     * close gives back to each: they end now too. */
    set_leaving(c, 0);
    close_link(nx, NULL);
    px_tp_fifo_append(unfinished, &c->link_unfinished);
    detach(c);
    if (nx->n_conns == 0)
        nexus_free(nx);
    else
        each_conn(nx, conn_link_died, 0);
    return 0;
}

void nexus_pause(px_conn *c, int paused)
{
    px_nexus *nx = c->nx;
    c->rx_paused = paused;
    int was = nx->paused;
    nx->paused += paused ? 1 : -1;
    if (nx->tp && nx->tp->ops->rx_pause && (was == 0) != (nx->paused == 0))
        nx->tp->ops->rx_pause(nx->tp, nx->paused != 0);
}

/* ---- sends ----------------------------------------------------------------- */

static void ctl_sent(px_conn *c, int which)
{
    c->ctl_busy[which] = 0;
    /* Our FIN_ACK has left after the peer's FIN: the exchange is over. */
    if (which == CTL_FIN_ACK && c->state == CS_PEER_FIN)
        conn_closed(c);
}

/* A frame of ours is finished (status 0, or why not): the control frame,
 * handshake or task it belongs to hears of it. */
static void send_complete(px_conn *c, px_tp_send *s)
{
    if (s == &c->hs_send) {
        session_hs_sent(c, s->status);
        return;
    }
    if (s >= &c->ctl_send[0] && s <= &c->ctl_send[CTL_RESET]) {
        ctl_sent(c, (int)(s - c->ctl_send));
        return;
    }
    px_task *t = s->cookie;
    if (t->kind == TASK_TX)
        conn_tx_done(c, t, s->status);
    else
        rx_response_sent(c, t, s->status);
    /* The steady state (established, nothing waiting) tests and goes on:
     * this runs once per frame sent. */
    if (c->state == CS_DEAD || c->leaving)
        return;
    if (!px_list_empty(&c->pending))
        conn_pump(c);
    if (c->state == CS_CLOSING || c->state == CS_PEER_FIN)
        conn_check_drained(c);
}

/* Frames the transport copied at once complete here, from the loop: never
 * inside the call that sent them. From the loop, only those there when it
 * began (`all` 0): an application that sends again from each completion
 * adds to the FIFO as fast as this empties it, and would hold the loop
 * here for as long as it kept on (no receive, no timer, no flush). What
 * it adds waits for the next round: the transport's send deferred this
 * again. A death inside a completion drains the FIFO (conn_finish_sends,
 * `all` 1), and the pop here then ends. */
static void complete_copied(px_conn *c, int all)
{
    const px_tp_send *last = c->sent.tail;
    px_tp_send *s;
    while ((s = px_tp_fifo_pop(&c->sent)) != NULL) {
        int was_last = s == last;
        s->status = 0;
        send_complete(c, s);
        if (was_last && !all)
            break;
    }
}

static void sent_fn(px_deferred *d)
{
    complete_copied(PX_CONTAINER_OF(d, px_conn, sent_d), 0);
}

void conn_init_sends(px_conn *c)
{
    px_deferred_init(&c->sent_d, sent_fn);
    px_deferred_init(&c->join_d, join_fn);
    px_list_init(&c->nexus_link);
}

/* Hold a refused frame, in order. What it points into may be bytes the
 * transport lent us in place, which it will reuse: the lending rule says
 * such a frame is copied aside (the chassis's bounce) before it waits. */
static int hold(px_conn *c, px_tp_send *s)
{
    if (!s->tp_bounce && px_tpc_points_into_lent(c->tp, s) && px_tpc_bounce(s) < 0)
        return -PX_ENOMEM;
    px_tp_fifo_push(&c->blocked, s);
    return 0;
}

static int transport_send(px_conn *c, px_tp_send *s)
{
    int rc = c->tp->ops->send(c->tp, s);
    if (rc == PX_TP_SENT) {
        if (s->tp_bounce)
            px_tpc_unbounce(s); /* a copy we made while it waited */
        px_tp_fifo_push(&c->sent, s);
        px_ctx_defer(c->ctx, &c->sent_d);
        return 0;
    }
    if (rc == PX_TP_QUEUED) {
        c->tp_held++;
        return 0;
    }
    return rc;
}

int conn_tp_send(px_conn *c, px_tp_send *s)
{
    if (c->leaving)
        return -PX_ENOTCONN;
    c->tx_frames++;
    s->hdr.channel = c->channel;
    if (c->blocked.head) /* behind the frames already waiting */
        return hold(c, s);
    int rc = transport_send(c, s);
    return rc == -PX_EAGAIN ? hold(c, s) : rc;
}

/* The link has room again: what waits goes, in order, then the messages
 * waiting for room of the session's own. */
static void conn_room(px_conn *c)
{
    px_tp_send *s;
    if (c->leaving) {
        if (c->reset_state == 1)
            send_reset(c);
        leave_if_done(c);
        return;
    }
    /* Off the queue before the transport links it into its own (both use
     * tp_next); back at the front if refused again. */
    while (c->state != CS_DEAD && (s = px_tp_fifo_pop(&c->blocked)) != NULL) {
        int rc = transport_send(c, s);
        if (rc == -PX_EAGAIN) {
            s->tp_next = c->blocked.head;
            c->blocked.head = s;
            if (!c->blocked.tail)
                c->blocked.tail = s;
            return; /* another room upcall follows */
        }
        if (rc < 0) {
            px_tpc_unbounce(s);
            s->status = rc;
            send_complete(c, s);
        }
    }
    /* The steady state (established, nothing waiting) tests and goes on:
     * this runs once per frame sent. */
    if (c->state == CS_DEAD || c->leaving)
        return;
    if (!px_list_empty(&c->pending))
        conn_pump(c);
    if (c->state == CS_CLOSING || c->state == CS_PEER_FIN)
        conn_check_drained(c);
}

void conn_finish_sends(px_conn *c, px_tp_fifo *unfinished)
{
    complete_copied(c, 1); /* these left */
    px_ctx_undefer(&c->sent_d);
    px_ctx_undefer(&c->join_d);
    for (px_tp_send *s = c->blocked.head; s; s = s->tp_next)
        s->status = -PX_ECLOSED; /* held by us: they never left */
    px_tp_fifo_append(unfinished, &c->blocked);
    px_tp_send *s;
    while ((s = px_tp_fifo_pop(unfinished)) != NULL) {
        px_tpc_unbounce(s);
        send_complete(c, s); /* status as the transport said: done, or not */
    }
}

/* ---- the upcalls, fanned out --------------------------------------------- */

/* Call fn on every connection on the link, each once, though fn may end
 * any of them, or the link. */
static void each_conn(px_nexus *nx, void (*fn)(px_conn *c, int arg), int arg)
{
    unsigned visit = ++nx->visit;
    nx->walking++;
    for (;;) {
        px_conn *next = NULL;
        for (px_list *l = nx->conns.next; l != &nx->conns && !next; l = l->next) {
            px_conn *c = PX_CONTAINER_OF(l, px_conn, nexus_link);
            if (c->visit != visit)
                next = c;
        }
        if (!next)
            break;
        next->visit = visit;
        fn(next, arg);
    }
    if (--nx->walking == 0 && nx->doomed)
        nexus_free(nx);
}

static void conn_connected(px_conn *c, int arg)
{
    (void)arg;
    if (c->state == CS_CONNECTING)
        session_conn_connected(c);
}

static void on_connected(void *self)
{
    px_nexus *nx = self;
    nx->ctx->activity++;
    nx->connected = 1;
    each_conn(nx, conn_connected, 0);
}

static int on_rx_assign(void *self, px_tp_rx *rx)
{
    px_nexus *nx = self;
    px_conn *c = route(nx, &rx->hdr);
    nx->ctx->activity++;
    if (!c || c->leaving)
        return 1; /* in place, and dropped by on_frame */
    c->rx_events++;
    return rx_assign(c, rx);
}

/* A frame off the message path: for nobody, for a connection leaving or
 * dead, or a RESET. */
__attribute__((noinline)) static void frame_aside(px_conn *c, px_tp_rx *rx)
{
    if (!c) {
        PX_LOGD("a frame (type %u) for channel %u, which nobody has: dropped",
                (unsigned)rx->hdr.type, (unsigned)rx->hdr.channel);
        return;
    }
    if (c->leaving)
        return;
    c->rx_events++;
    if (c->state == CS_DEAD)
        return;
    c->peer_reset = 1; /* a RESET */
    conn_die(c, -PX_ECONNRESET);
}

static void on_frame(void *self, px_tp_rx *rx)
{
    px_nexus *nx = self;
    px_conn *c = route(nx, &rx->hdr);
    nx->ctx->activity++;
    if (__builtin_expect(!c || c->leaving || c->state == CS_DEAD || rx->hdr.type == PX_FT_RESET,
                         0)) {
        frame_aside(c, rx);
        return;
    }
    c->rx_events++;
    conn_rx_frame(c, rx);
}

static void on_send_done(void *self, px_tp_send *s, int status)
{
    px_nexus *nx = self;
    px_conn *c = conn_of_send(s);
    nx->ctx->activity++;
    c->tp_held--;
    s->status = status;
    send_complete(c, s); /* c is freed only from the loop, never inside this */
    if (__builtin_expect(c->leaving, 0))
        leave_if_done(c);
}

static void conn_room_fn(px_conn *c, int arg)
{
    (void)arg;
    conn_room(c);
}

static void on_room(void *self)
{
    each_conn(self, conn_room_fn, 0);
}

static void conn_error(px_conn *c, int reason)
{
    if (c->session && c->announced && c->state != CS_DEAD && !c->leaving)
        session_event(c->session, PX_EV_CONN_ERROR, c, reason, NULL, 0);
}

static void on_error(void *self, int reason)
{
    each_conn(self, conn_error, reason);
}

static void conn_link_died(px_conn *c, int reason)
{
    int why = c->leaving ? c->leave_reason : reason;
    set_leaving(c, 0);
    c->reset_state = 2; /* nothing more goes out */
    conn_die(c, why);
}

/* The link is gone: it closes once, each connection takes back its own
 * frames, and every one of them ends. */
void nexus_abort(px_nexus *nx, int reason)
{
    close_link(nx, NULL);
    if (nx->n_conns == 0) {
        nexus_free(nx);
        return;
    }
    each_conn(nx, conn_link_died, reason);
}

static void on_disconnected(void *self, int reason)
{
    nexus_abort(self, reason);
}

static const px_tp_upcalls nexus_upcalls = {
    .connected = on_connected,
    .rx_assign = on_rx_assign,
    .frame = on_frame,
    .send_done = on_send_done,
    .room = on_room,
    .error = on_error,
    .disconnected = on_disconnected,
};
