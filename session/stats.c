/* Counters over many connections: a context's (every connection on it,
 * client or server side) and a server's (those it accepted). Each sums
 * the counters of its connections open now with those its connections
 * left behind when they were freed; the gauges of px_conn_stats (in
 * flight, queued now) are over the open ones only. Reading walks the open
 * connections: a call for monitoring, not for the data path. */
#include <string.h>

#include "plexus/error.h"
#include "session/internal.h"
#include "session/layer.h"

/* Every counter of px_conn_stats, by name: a field added there is summed
 * here only when it is listed, so list it. */
#define PX_CONN_COUNTERS(X)                                                                        \
    X(requests_sent)                                                                               \
    X(responses_recv)                                                                              \
    X(requests_recv)                                                                               \
    X(responses_sent)                                                                              \
    X(oneway_sent)                                                                                 \
    X(oneway_recv)                                                                                 \
    X(bytes_sent)                                                                                  \
    X(bytes_recv)                                                                                  \
    X(rx_direct)                                                                                   \
    X(rx_detached)                                                                                 \
    X(eagain)
#define PX_CONN_GAUGES(X)                                                                          \
    X(in_flight)                                                                                   \
    X(queued)                                                                                      \
    X(queued_bytes)

static void add_counters(px_conn_stats *into, const px_conn_stats *c)
{
#define ADD(f) into->f += c->f;
    PX_CONN_COUNTERS(ADD)
#undef ADD
}

static void add_open(px_stats_sum *into, const px_conn *c)
{
    px_conn_stats s;
    if (px_conn_get_stats(c, &s) != 0)
        return;
    add_counters(&into->conn, &s);
#define ADD(f) into->conn.f += s.f;
    PX_CONN_GAUGES(ADD)
#undef ADD
    into->conns_open++;
}

/* The server a connection counts for: the one it came in on. That is its
 * session's, or the portal it joined the session through, or, before its
 * HELLO, the one that accepted it (NULL once that server is gone). */
static px_server *server_of(const px_conn *c)
{
    if (c->via_portal)
        return c->portal;
    if (c->session)
        return c->session->server;
    return c->server;
}

void stats_conn_made(px_conn *c)
{
    px_layer *l = layer_of(c->ctx);
    px_list_push_back(&l->conns, &c->layer_link);
    l->conns_opened++;
}

void stats_conn_unmade(px_conn *c)
{
    px_list_del(&c->layer_link);
    layer_of(c->ctx)->conns_opened--;
}

void stats_conn_freed(px_conn *c)
{
    px_conn_stats s;
    if (px_conn_get_stats(c, &s) != 0)
        return;
    px_layer *l = layer_of(c->ctx);
    px_list_del(&c->layer_link);
    add_counters(&l->closed, &s);
    l->conns_closed++;
    px_server *srv = server_of(c);
    if (srv && !c->client) {
        add_counters(&srv->closed, &s);
        srv->conns_closed++;
    }
}

static void sum_closed(px_stats_sum *out, const px_conn_stats *closed, uint64_t opened,
                       uint64_t n_closed)
{
    memset(out, 0, sizeof(*out));
    add_counters(&out->conn, closed);
    out->conns_opened = opened;
    out->conns_closed = n_closed;
}

int px_ctx_get_conn_stats(px_ctx *ctx, px_stats_sum *out)
{
    if (!ctx || !out)
        return -PX_EINVAL;
    px_layer *l = layer_of(ctx);
    if (!l) { /* no session was ever made here */
        memset(out, 0, sizeof(*out));
        return 0;
    }
    sum_closed(out, &l->closed, l->conns_opened, l->conns_closed);
    for (px_list *n = l->conns.next; n != &l->conns; n = n->next)
        add_open(out, PX_CONTAINER_OF(n, px_conn, layer_link));
    out->links_open = l->links_open;
    out->links_opened = l->links_opened;
    return 0;
}

/* Call fn for every open connection that came in on the server: those of
 * its sessions that joined here (not through a portal: those are on
 * other servers, maybe other threads), those that joined other servers'
 * sessions through it, then those still before their HELLO. All are on
 * the server's context. */
static void each_server_conn(const px_server *srv, void (*fn)(px_conn *c, void *arg), void *arg)
{
    for (const px_list *n = srv->sessions.next; n != &srv->sessions; n = n->next) {
        px_session *s = PX_CONTAINER_OF(n, px_session, server_link);
        pthread_mutex_lock(&s->lock);
        for (px_list *m = s->conns.next; m != &s->conns; m = m->next) {
            px_conn *c = PX_CONTAINER_OF(m, px_conn, session_link);
            if (!c->via_portal)
                fn(c, arg);
        }
        pthread_mutex_unlock(&s->lock);
    }
    for (px_list *m = srv->portal_conns.next; m != &srv->portal_conns; m = m->next)
        fn(PX_CONTAINER_OF(m, px_conn, portal_link), arg);
    for (px_list *m = srv->unattached.next; m != &srv->unattached; m = m->next)
        fn(PX_CONTAINER_OF(m, px_conn, session_link), arg);
}

static void add_open_fn(px_conn *c, void *arg)
{
    add_open(arg, c);
}

int px_server_get_stats(const px_server *srv, px_stats_sum *out)
{
    if (!srv || !out)
        return -PX_EINVAL;
    sum_closed(out, &srv->closed, srv->conns_opened, srv->conns_closed);
    each_server_conn(srv, add_open_fn, out);
    for (const px_list *n = srv->links.next; n != &srv->links; n = n->next)
        out->links_open++;
    out->links_opened = srv->links_opened;
    return 0;
}

typedef struct listing {
    px_conn **out;
    size_t max, n;
} listing;

static void list_fn(px_conn *c, void *arg)
{
    listing *l = arg;
    if (l->n < l->max)
        l->out[l->n] = c;
    l->n++;
}

int px_server_list_conns(const px_server *srv, px_conn **conns, size_t max, size_t *n_open)
{
    if (!srv || !n_open || (max && !conns))
        return -PX_EINVAL;
    listing l = {conns, max, 0};
    each_server_conn(srv, list_fn, &l);
    *n_open = l.n;
    return 0;
}
