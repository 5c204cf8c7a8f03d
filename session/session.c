/* Sessions: creation, the handshake decisions, events and teardown. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "plexus/error.h"
#include "session/handshake.h"
#include "session/internal.h"
#include "session/layer.h"

static void session_teardown_fn(px_deferred *d);
static void next_target(px_session *s, char *out, size_t len);

px_session *session_new(px_ctx *ctx, const px_session_ops *ops, void *user, int client)
{
    px_session *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->magic = PX_SESS_MAGIC;
    s->ctx = ctx;
    s->ops = ops;
    s->user = user;
    s->client = client;
    s->state = SS_NEW;
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    int rc = pthread_mutex_init(&s->lock, &attr);
    pthread_mutexattr_destroy(&attr);
    if (rc != 0) {
        free(s);
        return NULL;
    }
    px_list_init(&s->conns);
    px_list_init(&s->server_link);
    px_list_init(&s->portal_reg);
    px_deferred_init(&s->teardown_d, session_teardown_fn);
    if (client) /* the application's: px_ctx_destroy waits for it */
        px_ctx_ref(ctx);
    return s;
}

int session_handle_check(const px_session *s)
{
    if (!s)
        return -PX_EINVAL;
    if (s->magic == PX_DEAD_MAGIC)
        return -PX_ECLOSED;
    return s->magic == PX_SESS_MAGIC ? 0 : -PX_EINVAL;
}

const char *px_event_name(px_event_type type)
{
    switch (type) {
#define EV_NAME(t)                                                                                 \
    case t:                                                                                        \
        return #t;
        EV_NAME(PX_EV_SESSION_ESTABLISHED)
        EV_NAME(PX_EV_SESSION_REJECTED)
        EV_NAME(PX_EV_SESSION_REDIRECTED)
        EV_NAME(PX_EV_CONN_ESTABLISHED)
        EV_NAME(PX_EV_CONN_CLOSED)
        EV_NAME(PX_EV_CONN_DISCONNECTED)
        EV_NAME(PX_EV_CONN_ERROR)
        EV_NAME(PX_EV_CONN_TEARDOWN)
        EV_NAME(PX_EV_SESSION_TEARDOWN)
#undef EV_NAME
    }
    return "PX_EV_?";
}

void session_event(px_session *s, px_event_type type, px_conn *c, int reason, const void *data,
                   size_t len)
{
    if (!s->ops->on_session_event)
        return;
    px_event ev = {.type = type, .conn = c, .reason = reason, .data = data, .data_len = len};
    s->ops->on_session_event(s, &ev, s->user);
}

/* ---- client side ---------------------------------------------------------- */

int px_session_create(px_ctx *ctx, const px_session_params *p, px_session **out)
{
    if (!ctx || !p || !p->uri || !p->ops || !out)
        return -PX_EINVAL;
    if (p->private_len > PX_HS_MAX_PRIV)
        return -PX_EMSGSIZE;
    if (p->private_len && !p->private_data)
        return -PX_EINVAL;
    int rc = px_transport_check_uri(p->uri, 0);
    if (rc < 0)
        return rc;
    if (strlen(p->uri) >= PX_URI_MAX)
        return -PX_EBADURI;
    if (layer_ensure(ctx) < 0)
        return -PX_ENOMEM;
    px_session *s = session_new(ctx, p->ops, p->user, 1);
    if (!s)
        return -PX_ENOMEM;
    snprintf(s->uri, sizeof(s->uri), "%s", p->uri);
    if (p->private_len) {
        s->priv_data = malloc(p->private_len);
        if (!s->priv_data) {
            px_ctx_unref(ctx);
            free(s);
            return -PX_ENOMEM;
        }
        memcpy(s->priv_data, p->private_data, p->private_len);
        s->priv_len = p->private_len;
    }
    *out = s;
    return 0;
}

int px_connect(px_session *s, px_ctx *ctx, px_conn **out)
{
    int rc = session_handle_check(s);
    if (rc < 0)
        return rc;
    if (!ctx || !out || !s->client)
        return -PX_EINVAL;
    if (ctx != s->ctx && layer_ensure(ctx) < 0)
        return -PX_ENOMEM;
    px_conn *c;
    rc = conn_create(s, ctx, 1, &c);
    if (rc < 0)
        return rc;
    char target[PX_URI_MAX];
    pthread_mutex_lock(&s->lock);
    rc = s->closing ? -PX_ECLOSED : s->state == SS_REJECTED ? -PX_EREJECTED : 0;
    if (rc == 0) {
        px_list_push_back(&s->conns, &c->session_link);
        s->n_conns++;
        if (s->state == SS_ESTABLISHED) {
            next_target(s, target, sizeof(target));
        } else if (!s->leader) {
            s->leader = c; /* it makes the session; the others wait for it */
            snprintf(target, sizeof(target), "%s", s->uri);
        } else {
            c->queued = 1;
        }
    }
    pthread_mutex_unlock(&s->lock);
    if (rc < 0) { /* closed or rejected from another thread meanwhile */
        conn_free_unused(c);
        return rc;
    }
    if (ctx != s->ctx) { /* px_ctx_destroy(ctx) waits for this connection */
        px_ctx_ref(ctx);
        c->ctx_ref = 1;
    }
    if (c->queued)
        conn_wait_session(c, s->uri);
    else
        conn_start_connect(c, target);
    *out = c;
    return 0;
}

/* Where the next connection of an established client session goes: the
 * portals in turn, else where the session was accepted. Caller holds the
 * lock. */
static void next_target(px_session *s, char *out, size_t len)
{
    if (s->n_portals)
        snprintf(out, len, "%s", s->portals[s->next_portal++ % s->n_portals]);
    else
        snprintf(out, len, "%s", s->target);
}

/* Keep the portals the server named (copied: the frame goes away). A
 * client short of memory for them connects where the session was
 * accepted instead. Caller holds the lock. */
static void keep_portals(px_session *s, const px_hello_ack *a)
{
    if (a->n_uris == 0 || s->portals)
        return;
    char **p = calloc(a->n_uris, sizeof(*p));
    for (unsigned i = 0; p && i < a->n_uris; i++) {
        p[i] = malloc((size_t)a->uri_lens[i] + 1);
        if (!p[i]) {
            while (i--)
                free(p[i]);
            free(p);
            p = NULL;
            break;
        }
        memcpy(p[i], a->uris[i], a->uri_lens[i]);
        p[i][a->uri_lens[i]] = 0;
    }
    if (!p) {
        PX_LOGW("session %s: no memory for its portals; connecting to the server itself", s->uri);
        return;
    }
    s->portals = p;
    s->n_portals = a->n_uris;
}

static void free_portals(px_session *s)
{
    for (unsigned i = 0; i < s->n_portals; i++)
        free(s->portals[i]);
    free(s->portals);
    s->portals = NULL;
    s->n_portals = 0;
}

/* Kick every context (once) that has a connection of the session for
 * which want(c) holds. Caller holds the lock. */
static void kick_where(px_session *s, int (*want)(const px_conn *c, const px_session *s))
{
    for (px_list *n = s->conns.next; n != &s->conns; n = n->next) {
        px_conn *c = PX_CONTAINER_OF(n, px_conn, session_link);
        if (!want(c, s))
            continue;
        int seen = 0;
        for (px_list *m = s->conns.next; m != n && !seen; m = m->next) {
            px_conn *d = PX_CONTAINER_OF(m, px_conn, session_link);
            seen = d->ctx == c->ctx && want(d, s);
        }
        if (!seen)
            session_kick(s, c->ctx);
    }
}

static int is_queued(const px_conn *c, const px_session *s)
{
    (void)s;
    return c->queued;
}

/* The session's handshake is decided (accepted or rejected): the waiting
 * connections go on, each on its own thread. Caller holds the lock. */
static void release_queued(px_session *s)
{
    s->leader = NULL;
    kick_where(s, is_queued);
}

void session_conn_died(px_conn *c)
{
    px_session *s = c->session;
    pthread_mutex_lock(&s->lock);
    if (s->leader == c) {
        /* It never completed the handshake: the next waiting one tries. */
        s->leader = NULL;
        for (px_list *n = s->conns.next; n != &s->conns; n = n->next) {
            px_conn *q = PX_CONTAINER_OF(n, px_conn, session_link);
            if (q->queued && q->state != CS_DEAD) {
                s->leader = q;
                session_kick(s, q->ctx);
                break;
            }
        }
    }
    pthread_mutex_unlock(&s->lock);
}

/* The transport connected: introduce ourselves. */
void session_conn_connected(px_conn *c)
{
    px_session *s = c->session;
    const px_ctx_opts *o = &c->ctx->opts;
    pthread_mutex_lock(&s->lock); /* the token: set by whichever thread's connection made it */
    uint64_t token = s->token;
    pthread_mutex_unlock(&s->lock);
    px_hello h = {
        .min_version = PX_WIRE_VERSION,
        .max_version = PX_WIRE_VERSION,
        .queue_depth = o->queue_depth,
        .max_msg = o->max_msg_size,
        .max_hdr = o->max_header_size,
        .max_iov = o->max_iov,
        .keepalive_ms = o->keepalive_ms,
        .token = token,
        .uri = c->uri,
        .uri_len = (uint16_t)strlen(c->uri),
        .priv = s->priv_data,
        .priv_len = (uint16_t)s->priv_len,
    };
    c->state = CS_HANDSHAKE;
    int len = px_hello_encode(&h, c->hs_buf, sizeof(c->hs_buf));
    if (len < 0 || conn_send_hs(c, PX_FT_HELLO, (size_t)len) < 0)
        conn_die(c, len < 0 ? len : -PX_EDISCONNECTED);
}

static void redirect(px_conn *c, const char *uri, size_t len)
{
    char target[PX_URI_MAX];
    snprintf(target, sizeof(target), "%.*s", (int)len, uri);
    session_event(c->session, PX_EV_SESSION_REDIRECTED, NULL, -PX_EREDIRECTED, target, len);
    if (c->state == CS_DEAD)
        return;
    if (c->nx->n_conns > 1 && c->tp_held) {
        /* Frames of ours (the HELLO among them, which the new address
         * needs) are still the shared link's: go no further. */
        conn_die(c, -PX_EREDIRECTED);
        return;
    }
    px_tp_fifo unfinished = {0};
    c->peer_reset = 1; /* the server ends its side of this channel itself */
    nexus_leave(c, &unfinished);
    c->peer_reset = 0;
    /* Our HELLO arrived (this is its answer), even where the transport had
     * not yet said so: it is not a failure of the connection, which goes
     * on at the new address with the same handshake buffer. */
    for (px_tp_send *s = unfinished.head; s; s = s->tp_next)
        if (s == &c->hs_send)
            s->status = 0;
    conn_finish_sends(c, &unfinished);
    conn_start_connect(c, target);
}

void session_on_hello_ack(px_conn *c, const void *body, size_t len)
{
    px_session *s = c->session;
    px_hello_ack a;
    int rc = px_hello_ack_decode(body, len, &a);
    if (rc < 0) {
        PX_LOGW("malformed handshake answer from %s", c->uri);
        conn_die(c, rc);
        return;
    }
    switch (a.status) {
    case PX_HS_ACCEPT: {
        pthread_mutex_lock(&s->lock);
        int first = s->state != SS_ESTABLISHED;
        if (first) {
            s->state = SS_ESTABLISHED;
            s->token = a.token;
            snprintf(s->target, sizeof(s->target), "%s", c->uri);
            keep_portals(s, &a);
            release_queued(s);
        }
        pthread_mutex_unlock(&s->lock);
        if (first) {
            session_event(s, PX_EV_SESSION_ESTABLISHED, NULL, 0, a.data, a.data_len);
            if (c->state == CS_DEAD)
                return;
        }
        conn_established(c, a.queue_depth, a.max_msg, a.max_hdr, a.max_iov, a.keepalive_ms);
        break;
    }
    case PX_HS_REJECT:
        pthread_mutex_lock(&s->lock);
        s->state = SS_REJECTED;
        release_queued(s);
        pthread_mutex_unlock(&s->lock);
        session_event(s, PX_EV_SESSION_REJECTED, NULL, a.reason, a.data, a.data_len);
        conn_die(c, -PX_EREJECTED);
        break;
    default:
        redirect(c, a.uris[0], a.uri_lens[0]);
        break;
    }
}

/* ---- server side ---------------------------------------------------------- */

static int send_ack(px_conn *c, const px_hello_ack *a)
{
    int len = px_hello_ack_encode(a, c->hs_buf, sizeof(c->hs_buf));
    if (len < 0)
        return len;
    return conn_send_hs(c, PX_FT_HELLO_ACK, (size_t)len);
}

static void fill_limits(px_hello_ack *a, const px_conn *c, uint64_t token)
{
    const px_ctx_opts *o = &c->ctx->opts;
    a->version = PX_WIRE_VERSION;
    a->queue_depth = o->queue_depth;
    a->max_msg = o->max_msg_size;
    a->max_hdr = o->max_header_size;
    a->max_iov = o->max_iov;
    a->keepalive_ms = o->keepalive_ms;
    a->token = token;
}

/* Decide for the connection that brought the session (or joined it). */
static int decide(px_session *s, px_conn *c, int status, int reason, const void *data, size_t len,
                  const char *const *uris, size_t n_uris)
{
    px_hello_ack a = {.status = (uint16_t)status, .reason = reason};
    fill_limits(&a, c, s->token);
    a.data = data;
    a.data_len = (uint16_t)len;
    a.n_uris = (uint16_t)n_uris;
    for (size_t i = 0; i < n_uris; i++) {
        a.uris[i] = uris[i];
        a.uri_lens[i] = (uint16_t)strlen(uris[i]);
    }
    if (!c->tp)
        return -PX_ENOTCONN;
    int rc = send_ack(c, &a);
    if (rc < 0)
        return rc;
    if (status == PX_HS_ACCEPT)
        conn_established(c, c->peer_depth, c->peer_max_msg, c->peer_max_hdr, c->peer_max_iov,
                         c->peer_keepalive_ms);
    else
        c->ack_then_close = 1;
    return 0;
}

/* URIs a client is sent to dial, with `data_len` bytes of application
 * data beside them: each one well formed (and, when they are servers of
 * this process, `local`, one this build could connect to as given), and
 * all of it within one handshake frame. 0; -PX_EINVAL for a NULL, too
 * many or too long; -PX_EMSGSIZE when they do not fit; the URI's own
 * error. */
static int check_uris(const char *const *uris, size_t n, int at_least_one, size_t data_len,
                      int local)
{
    if (n > PX_HS_MAX_URIS || (n && !uris) || (at_least_one && n == 0))
        return -PX_EINVAL;
    size_t frame = PX_HS_ACK_FIXED + data_len;
    for (size_t i = 0; i < n; i++) {
        if (!uris[i])
            return -PX_EINVAL;
        size_t len = strlen(uris[i]);
        if (len == 0 || len >= PX_HS_MAX_URI_LEN || len >= PX_URI_MAX)
            return -PX_EINVAL;
        px_uri u;
        int rc = local ? px_transport_check_uri(uris[i], 0) : px_uri_parse(uris[i], &u);
        if (rc < 0)
            return rc;
        frame += PX_HS_URI_OVERHEAD + len;
    }
    return frame <= PX_HS_BUF ? 0 : -PX_EMSGSIZE;
}

static int check_decidable(px_session *s, const void *data, size_t len)
{
    int rc = session_handle_check(s);
    if (rc < 0)
        return rc;
    if (s->client)
        return -PX_EINVAL;
    if (s->state != SS_DECIDING)
        return -PX_EALREADY;
    if (len > PX_HS_MAX_PRIV)
        return -PX_EMSGSIZE;
    if (len && !data)
        return -PX_EINVAL;
    return 0;
}

int px_session_accept(px_session *s, const char *const *portals, size_t n_portals, const void *data,
                      size_t len)
{
    int rc = check_decidable(s, data, len);
    if (rc < 0)
        return rc;
    rc = check_uris(portals, n_portals, 0, len, 1);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&s->lock);
    s->state = SS_ESTABLISHED;
    pthread_mutex_unlock(&s->lock);
    if (n_portals) {
        /* Its connections may now come in on any server of this process,
         * on any context: the session keeps its own context alive. */
        portal_register(s);
        px_ctx_ref(s->ctx);
        s->ctx_ref = 1;
    }
    return decide(s, s->first, PX_HS_ACCEPT, 0, data, len, portals, n_portals);
}

int session_accept_conn(px_session *s, px_conn *c)
{
    return decide(s, c, PX_HS_ACCEPT, 0, NULL, 0, NULL, 0);
}

int px_session_reject(px_session *s, int reason, const void *data, size_t len)
{
    int rc = check_decidable(s, data, len);
    if (rc < 0)
        return rc;
    if (reason >= 0)
        return -PX_EINVAL;
    s->state = SS_REJECTED;
    return decide(s, s->first, PX_HS_REJECT, reason, data, len, NULL, 0);
}

int px_session_redirect(px_session *s, const char *const *uris, size_t n_uris)
{
    int rc = check_decidable(s, NULL, 0);
    if (rc < 0)
        return rc;
    rc = check_uris(uris, n_uris, 1, 0, 0);
    if (rc < 0)
        return rc;
    s->state = SS_REJECTED;
    return decide(s, s->first, PX_HS_REDIRECT, 0, NULL, 0, uris, n_uris);
}

/* A HELLO reached a server connection. */
void session_on_hello(px_conn *c, const void *body, size_t len)
{
    px_server *srv = c->server;
    px_hello h;
    c->hello_seen = 1;
    int rc = px_hello_decode(body, len, &h);
    if (rc < 0 || !srv) {
        PX_LOGW("malformed handshake from a client: %s", px_strerror(rc));
        conn_die(c, rc < 0 ? rc : -PX_ECLOSED);
        return;
    }
    c->peer_depth = h.queue_depth;
    c->peer_max_msg = h.max_msg;
    c->peer_max_hdr = h.max_hdr;
    c->peer_max_iov = h.max_iov;
    c->peer_keepalive_ms = h.keepalive_ms;
    if (h.token) {
        server_join(srv, c, h.token);
        return;
    }
    server_offer(srv, c, &h);
}

/* ---- teardown ---------------------------------------------------------------- */

static void session_free(px_session *s)
{
    portal_unregister(s);
    if (s->server)
        server_session_gone(s->server, s);
    else
        px_list_del(&s->server_link); /* the orphans, after its server went */
    if (s->client || s->ctx_ref)
        px_ctx_unref(s->ctx);
    free(s->priv_data);
    free_portals(s);
    pthread_mutex_destroy(&s->lock);
    layer_retire(s->ctx, s, &s->magic, sizeof(*s));
}

static void session_teardown_fn(px_deferred *d)
{
    px_session *s = PX_CONTAINER_OF(d, px_session, teardown_d);
    session_event(s, PX_EV_SESSION_TEARDOWN, NULL, 0, NULL, 0);
    session_free(s);
}

/* Whether the session is to be torn down now: no connection left, no
 * kick still on its way, and nobody who could make another (a server's,
 * or a closing client's). Marks it so. Caller holds the lock. */
static int teardown_due(px_session *s)
{
    if (s->n_conns || s->posts || s->torn || (s->client && !s->closing))
        return 0;
    s->torn = 1;
    return 1;
}

static void teardown_post_fn(void *arg)
{
    px_session *s = arg;
    px_ctx_defer(s->ctx, &s->teardown_d);
}

/* Tear the session down on its own thread; `here` is the calling one's
 * context. */
static void schedule_teardown(px_session *s, px_ctx *here)
{
    if (here == s->ctx)
        px_ctx_defer(s->ctx, &s->teardown_d);
    else if (px_ctx_post_node(s->ctx, &s->teardown_node, teardown_post_fn, s) < 0)
        PX_LOGE("session %s: its context is gone before its teardown", s->uri);
}

void session_conn_gone(px_session *s, px_conn *c)
{
    pthread_mutex_lock(&s->lock);
    px_list_del(&c->session_link);
    s->n_conns--;
    if (s->first == c)
        s->first = NULL;
    int due = teardown_due(s);
    pthread_mutex_unlock(&s->lock);
    if (due)
        schedule_teardown(s, c->ctx);
}

/* ---- work for another context's connections ------------------------------ */

typedef struct session_kick_work {
    px_session *s;
    px_ctx *ctx;
} session_kick_work;

/* On ctx's thread: what a connection there waits for has happened. */
static void visit_conn(px_session *s, px_conn *c)
{
    if (c->queued && c->state != CS_DEAD) {
        char target[PX_URI_MAX];
        if (s->end_op) {
            c->queued = 0;
            conn_die(c, -PX_ECLOSED);
            return;
        } else if (s->state == SS_REJECTED) {
            c->queued = 0;
            conn_die(c, -PX_EREJECTED);
        } else if (s->state == SS_ESTABLISHED) {
            c->queued = 0;
            next_target(s, target, sizeof(target));
            conn_start_connect(c, target);
        } else if (s->leader == c) {
            c->queued = 0;
            conn_start_connect(c, s->uri);
        }
    }
    if (s->end_op == END_ABORT)
        px_conn_disconnect(c);
    else if (s->end_op == END_CLOSE)
        px_conn_close(c);
}

static void kick_fn(void *arg)
{
    session_kick_work *k = arg;
    px_session *s = k->s;
    px_ctx *ctx = k->ctx;
    free(k);
    pthread_mutex_lock(&s->lock);
    for (px_list *n = s->conns.next; n != &s->conns; n = n->next) {
        px_conn *c = PX_CONTAINER_OF(n, px_conn, session_link);
        if (c->ctx == ctx)
            visit_conn(s, c);
    }
    s->posts--;
    int due = teardown_due(s);
    pthread_mutex_unlock(&s->lock);
    if (due)
        schedule_teardown(s, ctx);
}

void session_kick(px_session *s, px_ctx *ctx)
{
    session_kick_work *k = malloc(sizeof(*k));
    if (k) {
        k->s = s;
        k->ctx = ctx;
        s->posts++;
        if (px_ctx_post(ctx, kick_fn, k) == 0)
            return;
        s->posts--;
        free(k);
    }
    PX_LOGE("session %s: could not reach a context of its connections", s->uri);
}

static int is_remote(const px_conn *c, const px_session *s)
{
    return c->ctx != s->ctx;
}

void session_end_all(px_session *s, int op)
{
    pthread_mutex_lock(&s->lock);
    s->closing = 1;
    s->end_op = op;
    for (px_list *n = s->conns.next; n != &s->conns; n = n->next) {
        px_conn *c = PX_CONTAINER_OF(n, px_conn, session_link);
        if (c->ctx == s->ctx)
            visit_conn(s, c);
    }
    kick_where(s, is_remote);
    int due = teardown_due(s);
    pthread_mutex_unlock(&s->lock);
    if (due)
        schedule_teardown(s, s->ctx);
}

int px_session_close(px_session *s)
{
    int rc = session_handle_check(s);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&s->lock);
    int already = s->closing;
    pthread_mutex_unlock(&s->lock);
    if (already)
        return -PX_EALREADY;
    session_end_all(s, END_CLOSE);
    return 0;
}

void px_session_set_user(px_session *s, void *user)
{
    if (session_handle_check(s) == 0)
        s->user = user;
}

void *px_session_user(const px_session *s)
{
    return session_handle_check(s) == 0 ? s->user : NULL;
}

/* The handshake frame left (or failed). */
void session_hs_sent(px_conn *c, int status)
{
    if (c->state == CS_DEAD)
        return;
    if (status < 0) {
        conn_die(c, status);
        return;
    }
    if (c->ack_then_close) /* rejected or redirected: the answer is out */
        conn_die(c, -PX_EREJECTED);
}
