/* Servers: a bound listener, the connections that have not said HELLO
 * yet, and the sessions accepted here. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "plexus/error.h"
#include "session/handshake.h"
#include "session/internal.h"
#include "session/layer.h"

px_conn *server_conn_new(px_server *srv)
{
    px_conn *c;
    if (conn_create(NULL, srv->ctx, 0, &c) < 0)
        return NULL;
    c->server = srv;
    srv->conns_opened++;
    snprintf(c->uri, sizeof(c->uri), "%s", srv->uri); /* a server conn names its server */
    return c;
}

void server_conn_start(px_server *srv, px_conn *c)
{
    conn_accepted(c);
    px_list_push_back(&srv->unattached, &c->session_link);
}

static void on_new_conn(void *self, px_tp_conn *tp)
{
    px_server *srv = self;
    srv->ctx->activity++;
    px_conn *c = server_conn_new(srv);
    if (!c) {
        tp->ops->reject(tp, -PX_ENOMEM);
        return;
    }
    int rc = nexus_accept(srv, tp, c);
    if (rc < 0) {
        tp->ops->reject(tp, rc);
        srv->conns_opened--;
        conn_free_unused(c);
        return;
    }
    server_conn_start(srv, c);
}

int px_server_bind(px_ctx *ctx, const char *uri, const px_session_ops *ops, void *user,
                   px_server **out)
{
    if (!ctx || !uri || !ops || !out)
        return -PX_EINVAL;
    int rc = px_transport_check_uri(uri, 1);
    if (rc < 0)
        return rc;
    if (layer_ensure(ctx) < 0)
        return -PX_ENOMEM;
    px_uri u;
    rc = px_uri_parse(uri, &u);
    if (rc < 0)
        return rc;
    px_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return -PX_ENOMEM;
    srv->ctx = ctx;
    srv->ops = *ops;
    srv->user = user;
    px_list_init(&srv->sessions);
    px_list_init(&srv->unattached);
    px_list_init(&srv->portal_conns);
    px_list_init(&srv->links);
    const px_transport *tops = NULL;
    rc = px_transport_lookup(u.scheme, &tops);
    if (rc == 0)
        rc = px_ctx_instance(ctx, tops, &srv->ctp);
    if (rc == 0) {
        px_tp_listen_owner owner = {on_new_conn, srv};
        rc = srv->ctp->ops->listen(srv->ctp->tp, &u, &owner, &srv->listener);
    }
    if (rc == 0) {
        rc = srv->ctp->ops->listener_uri(srv->listener, srv->uri, sizeof(srv->uri));
        if (rc > 0)
            rc = 0;
        else if (rc == 0)
            rc = -PX_EIO;
        if (rc < 0)
            srv->ctp->ops->listener_close(srv->listener);
    }
    if (rc < 0) {
        free(srv);
        return rc;
    }
    px_ctx_ref(ctx);
    *out = srv;
    return 0;
}

int px_server_uri(const px_server *srv, char *buf, size_t len)
{
    if (!srv || !buf)
        return -PX_EINVAL;
    size_t n = strlen(srv->uri);
    if (n + 1 > len)
        return -PX_ENOSPC;
    memcpy(buf, srv->uri, n + 1);
    return (int)n;
}

/* End one session of a server going away: gracefully or abruptly. One
 * still being decided is refused (the client hears -PX_ESHUTDOWN). */
static void end_session(px_session *s, int abrupt)
{
    if (s->state == SS_DECIDING) {
        px_session_reject(s, -PX_ESHUTDOWN, NULL, 0);
        return;
    }
    session_end_all(s, abrupt ? END_ABORT : END_CLOSE);
}

/* The connections that joined another server's session here end with
 * this server (their session goes on with its others). */
static void end_portal_conns(px_server *srv, int abrupt)
{
    px_list *n;
    while ((n = px_list_pop_front(&srv->portal_conns)) != NULL) {
        px_conn *c = PX_CONTAINER_OF(n, px_conn, portal_link);
        c->portal = NULL;
        if (abrupt)
            px_conn_disconnect(c);
        else
            px_conn_close(c);
    }
}

/* Stop listening and free the server; its sessions end on their own and,
 * until then, belong to the context (px_ctx_destroy finishes them). */
static int server_close(px_server *srv, int abrupt)
{
    if (!srv)
        return -PX_EINVAL;
    srv->ctp->ops->listener_close(srv->listener);
    /* Connections that never said HELLO have nobody to belong to. */
    px_list *n;
    while ((n = px_list_pop_front(&srv->unattached)) != NULL) {
        px_conn *c = PX_CONTAINER_OF(n, px_conn, session_link);
        c->server = NULL;
        conn_die(c, -PX_ESHUTDOWN);
    }
    end_portal_conns(srv, abrupt);
    while ((n = px_list_first(&srv->sessions)) != NULL) {
        px_session *s = PX_CONTAINER_OF(n, px_session, server_link);
        s->server = NULL;
        layer_adopt_orphan(srv->ctx, s);
        end_session(s, abrupt);
    }
    /* Its links take no new connections; unused ones close now. */
    while ((n = px_list_first(&srv->links)) != NULL)
        nexus_server_gone(PX_CONTAINER_OF(n, px_nexus, layer_link));
    px_ctx_unref(srv->ctx);
    free(srv);
    return 0;
}

int px_server_unbind(px_server *srv)
{
    return server_close(srv, 0);
}

int px_server_disconnect(px_server *srv)
{
    return server_close(srv, 1);
}

void server_session_gone(px_server *srv, px_session *s)
{
    px_list_del(&s->server_link);
    srv->n_sessions--;
}

/* Put a connection into its session. */
static void attach(px_session *s, px_conn *c)
{
    pthread_mutex_lock(&s->lock);
    px_list_del(&c->session_link);
    c->session = s;
    px_list_push_back(&s->conns, &c->session_link);
    s->n_conns++;
    pthread_mutex_unlock(&s->lock);
}

/* Session tokens are unique in the process (a connection may name its
 * session on any server of it, through a portal) and do not repeat
 * across restarts. They need not be secret: the transport
 * authenticates. */
static uint64_t next_token(void)
{
    static _Atomic uint64_t seq;
    uint64_t t = atomic_load(&seq);
    while (t == 0) {
        uint64_t start = (px_now_ns() << 16) | 1;
        if (atomic_compare_exchange_weak(&seq, &t, start))
            t = start;
    }
    return atomic_fetch_add(&seq, 1);
}

/* A HELLO for a new session: offer it to the application. */
void server_offer(px_server *srv, px_conn *c, const px_hello *h)
{
    px_session *s = session_new(srv->ctx, &srv->ops, srv->user, 0);
    if (!s) {
        conn_die(c, -PX_ENOMEM);
        return;
    }
    s->ops = &s->ops_copy;
    s->ops_copy = srv->ops;
    s->server = srv;
    s->token = next_token();
    s->state = SS_DECIDING;
    s->first = c;
    px_list_push_back(&srv->sessions, &s->server_link);
    srv->n_sessions++;
    attach(s, c);
    if (srv->n_sessions > srv->ctx->opts.max_sessions) {
        PX_LOGW("server %s: session limit %u reached; rejecting", srv->uri,
                srv->ctx->opts.max_sessions);
        px_session_reject(s, -PX_ETOOMANY, NULL, 0);
        return;
    }
    if (!s->ops->on_new_session) {
        px_session_accept(s, NULL, 0, NULL, 0);
        return;
    }
    char peer[PX_URI_MAX] = "";
    if (c->tp)
        c->tp->ops->peer_uri(c->tp, peer, sizeof(peer));
    px_new_session req = {
        .uri = srv->uri,
        .peer = peer,
        .private_data = h->priv,
        .private_len = h->priv_len,
    };
    s->ops->on_new_session(s, &req, s->user);
}

/* ---- portals: sessions any server of the process takes connections for -- */

/* Sessions accepted with portals (px_session.portal_reg). Lock order:
 * the registry, then a session's lock. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static px_list registry = {&registry, &registry};

void portal_register(px_session *s)
{
    pthread_mutex_lock(&registry_lock);
    px_list_push_back(&registry, &s->portal_reg);
    pthread_mutex_unlock(&registry_lock);
}

void portal_unregister(px_session *s)
{
    pthread_mutex_lock(&registry_lock);
    px_list_del(&s->portal_reg); /* a no-op if it never was */
    pthread_mutex_unlock(&registry_lock);
}

/* Whether a connection may join the session now. Caller holds its lock. */
static int joinable(const px_session *s)
{
    return s->state == SS_ESTABLISHED && !s->closing && !s->torn;
}

/* The session of another server (on any context) that the token names,
 * with c attached to it; NULL if there is none to join. */
static px_session *join_elsewhere(px_server *srv, px_conn *c, uint64_t token)
{
    px_session *found = NULL;
    pthread_mutex_lock(&registry_lock);
    for (px_list *n = registry.next; n != &registry && !found; n = n->next) {
        px_session *s = PX_CONTAINER_OF(n, px_session, portal_reg);
        if (s->token != token)
            continue;
        pthread_mutex_lock(&s->lock);
        if (joinable(s)) {
            c->via_portal = 1; /* before it is in the session's list, read by its server's stats */
            c->portal = srv;
            attach(s, c); /* from here on it keeps the session alive */
            found = s;
        }
        pthread_mutex_unlock(&s->lock);
        break;
    }
    pthread_mutex_unlock(&registry_lock);
    return found;
}

/* A HELLO that names an established session: another connection of it,
 * accepted here or, through a portal, on another server of the
 * process. */
void server_join(px_server *srv, px_conn *c, uint64_t token)
{
    for (px_list *n = srv->sessions.next; n != &srv->sessions; n = n->next) {
        px_session *s = PX_CONTAINER_OF(n, px_session, server_link);
        if (s->token != token)
            continue;
        pthread_mutex_lock(&s->lock);
        int ok = joinable(s);
        if (ok)
            attach(s, c);
        pthread_mutex_unlock(&s->lock);
        if (!ok)
            break;
        session_accept_conn(s, c);
        return;
    }
    px_session *s = join_elsewhere(srv, c, token);
    if (!s) {
        PX_LOGI("server %s: a connection names an unknown session; refusing", srv->uri);
        conn_die(c, -PX_ENOENT);
        return;
    }
    px_list_push_back(&srv->portal_conns, &c->portal_link);
    if (c->ctx != s->ctx) { /* its context's px_ctx_destroy waits for it */
        px_ctx_ref(c->ctx);
        c->ctx_ref = 1;
    }
    c->server = NULL;
    session_accept_conn(s, c);
}
