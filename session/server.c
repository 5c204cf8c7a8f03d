/* Servers: a bound listener, the connections that have not said HELLO
 * yet, and the sessions accepted here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "plexus/error.h"
#include "session/handshake.h"
#include "session/internal.h"
#include "session/layer.h"

static void on_new_conn(void *self, px_tp_conn *tp)
{
    px_server *srv = self;
    px_conn *c;
    srv->ctx->activity++;
    if (conn_create(NULL, srv->ctx, 0, &c) < 0) {
        tp->ops->reject(tp, -PX_ENOMEM);
        return;
    }
    px_tp_owner owner = {&nexus_upcalls, c};
    if (tp->ops->accept(tp, &owner) < 0) {
        tp->ops->reject(tp, -PX_ECONNABORTED);
        conn_free_unused(c);
        return;
    }
    c->tp = tp;
    c->ctp = srv->ctp;
    c->server = srv;
    srv->conns_opened++;
    snprintf(c->uri, sizeof(c->uri), "%s", srv->uri); /* a server conn names its server */
    conn_accepted(c);
    px_list_push_back(&srv->unattached, &c->session_link);
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
    /* Tokens need not be secret (the transport authenticates); they must
     * not repeat across restarts of a server at the same address. */
    srv->next_token = (px_now_ns() << 16) | 1;
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
    if (!abrupt) {
        px_session_close(s);
        return;
    }
    s->closing = 1;
    for (px_list *n = s->conns.next; n != &s->conns; n = n->next)
        px_conn_disconnect(PX_CONTAINER_OF(n, px_conn, session_link));
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
    while ((n = px_list_first(&srv->sessions)) != NULL) {
        px_session *s = PX_CONTAINER_OF(n, px_session, server_link);
        s->server = NULL;
        layer_adopt_orphan(srv->ctx, s);
        end_session(s, abrupt);
    }
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

static void attach(px_session *s, px_conn *c)
{
    px_list_del(&c->session_link);
    c->session = s;
    px_list_push_back(&s->conns, &c->session_link);
    s->n_conns++;
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
    s->token = srv->next_token++;
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

/* A HELLO that names an established session: another connection of it. */
void server_join(px_server *srv, px_conn *c, uint64_t token)
{
    for (px_list *n = srv->sessions.next; n != &srv->sessions; n = n->next) {
        px_session *s = PX_CONTAINER_OF(n, px_session, server_link);
        if (s->token != token || s->state != SS_ESTABLISHED || s->closing)
            continue;
        attach(s, c);
        session_accept_conn(s, c);
        return;
    }
    PX_LOGI("server %s: a connection names an unknown session; refusing", srv->uri);
    conn_die(c, -PX_ENOENT);
}
