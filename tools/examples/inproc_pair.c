/* inproc_pair [N [SIZE]] — a server and a client in one process, on two
 * threads, talking over inproc://: N echo requests of SIZE bytes, checked,
 * and the average round trip.
 *
 *   PX_PLUGIN_DIR=/usr/local/lib/plexus inproc_pair 10000 4096
 *
 * inproc:// is a plugin (libplexus-inproc.so), loaded by scheme from
 * $PX_PLUGIN_DIR or plexus's installed plugin directory. Each context
 * belongs to the thread that runs it; only px_ctx_stop() and px_ctx_post()
 * cross threads.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <plexus/plexus.h>

#define NAME "inproc://inproc-pair"

/* ---- the server thread: echo every request from its own bytes ---------------------- */

struct server {
    px_ctx *ctx;
    px_server *srv;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int state; /* 0 starting, 1 serving, -1 failed */
};

static void on_new_session(px_session *s, const px_new_session *req, void *user)
{
    px_session_accept(s, NULL, 0, NULL, 0);
}

/* The response is the request's own data, sent before the callback
 * returns (the bytes are valid until then; plexus copies what it must). */
static void on_request(px_conn *c, px_msg *req, int more_in_batch, void *user)
{
    req->out = (px_msg_vec){.iov = req->in.iov, .iov_count = req->in.iov_count};
    if (px_send_response(req) != 0)
        px_release_msg(req); /* answers with an error */
}

static const px_session_ops server_ops = {
    .on_new_session = on_new_session,
    .on_msg = on_request,
};

static void server_ready(struct server *sv, int state)
{
    pthread_mutex_lock(&sv->lock);
    sv->state = state;
    pthread_cond_signal(&sv->cond);
    pthread_mutex_unlock(&sv->lock);
}

static void *server_main(void *arg)
{
    struct server *sv = arg;
    int rc = px_ctx_create(NULL, &sv->ctx);
    if (rc == 0)
        rc = px_server_bind(sv->ctx, NAME, &server_ops, NULL, &sv->srv);
    if (rc != 0) {
        fprintf(stderr, "inproc_pair: serving %s: %s\n", NAME, px_strerror(rc));
        if (sv->ctx)
            px_ctx_destroy(sv->ctx);
        server_ready(sv, -1);
        return NULL;
    }
    server_ready(sv, 1);
    px_ctx_run(sv->ctx); /* until the client's thread stops it */
    px_server_unbind(sv->srv);
    px_ctx_destroy(sv->ctx);
    return NULL;
}

/* ---- the client: one request at a time ---------------------------------------------- */

struct client {
    px_ctx *ctx;
    px_conn *conn;
    px_msg req;
    px_iov iov;
    unsigned char *data;
    size_t size;
    long sent, total;
    int failed;
};

static void send_next(struct client *cl)
{
    memset(cl->data, (int)(cl->sent & 0xff), cl->size);
    cl->iov = (px_iov){.base = cl->data, .len = cl->size};
    memset(&cl->req, 0, sizeof(cl->req));
    cl->req.out = (px_msg_vec){.iov = &cl->iov, .iov_count = 1};
    int rc = px_send_request(cl->conn, &cl->req);
    if (rc != 0) {
        fprintf(stderr, "px_send_request: %s\n", px_strerror(rc));
        cl->failed = 1;
        px_ctx_stop(cl->ctx);
        return;
    }
    cl->sent++;
}

/* The echo must be what was sent. */
static int echo_matches(const struct client *cl, const px_msg *m)
{
    size_t got = 0;
    int want = (int)((cl->sent - 1) & 0xff);
    for (uint32_t i = 0; i < m->in.iov_count; i++) {
        const unsigned char *p = m->in.iov[i].base;
        for (size_t j = 0; j < m->in.iov[i].len; j++)
            if (p[j] != want)
                return 0;
        got += m->in.iov[i].len;
    }
    return got == cl->size;
}

static void on_response(px_conn *c, px_msg *m, int more_in_batch, void *user)
{
    struct client *cl = user;
    int ok = echo_matches(cl, m);
    px_release_response(m);
    if (!ok) {
        fprintf(stderr, "inproc_pair: response %ld is not the request's echo\n", cl->sent);
        cl->failed = 1;
        px_ctx_stop(cl->ctx);
    } else if (cl->sent < cl->total) {
        send_next(cl);
    } else {
        px_ctx_stop(cl->ctx);
    }
}

static void on_msg_error(px_conn *c, px_msg *m, px_msg_dir dir, int reason, void *user)
{
    struct client *cl = user;
    fprintf(stderr, "request failed: %s\n", px_strerror(reason));
    cl->failed = 1;
    px_ctx_stop(cl->ctx);
}

static void on_event(px_session *s, const px_event *ev, void *user)
{
    struct client *cl = user;
    if (ev->type == PX_EV_CONN_DISCONNECTED || ev->type == PX_EV_SESSION_REJECTED) {
        fprintf(stderr, "inproc_pair: connection failed: %s\n", px_strerror(ev->reason));
        cl->failed = 1;
    }
    if (ev->type == PX_EV_SESSION_TEARDOWN)
        px_ctx_stop(cl->ctx);
}

static const px_session_ops client_ops = {
    .on_session_event = on_event,
    .on_msg = on_response,
    .on_msg_error = on_msg_error,
};

int main(int argc, char **argv)
{
    struct client cl = {.total = argc > 1 ? atol(argv[1]) : 10000,
                        .size = argc > 2 ? strtoul(argv[2], NULL, 10) : 64};
    if (cl.total < 1 || cl.size < 1) {
        fprintf(stderr, "usage: inproc_pair [N [SIZE]]\n");
        return 2;
    }
    struct server sv = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    pthread_t th;
    if (pthread_create(&th, NULL, server_main, &sv) != 0)
        return 1;
    pthread_mutex_lock(&sv.lock);
    while (sv.state == 0)
        pthread_cond_wait(&sv.cond, &sv.lock);
    pthread_mutex_unlock(&sv.lock);
    if (sv.state < 0) {
        pthread_join(th, NULL);
        return 1;
    }

    cl.data = malloc(cl.size);
    px_session *s = NULL;
    px_session_params p = {.uri = NAME, .ops = &client_ops, .user = &cl};
    int rc = cl.data ? px_ctx_create(NULL, &cl.ctx) : -PX_ENOMEM;
    if (rc == 0)
        rc = px_session_create(cl.ctx, &p, &s);
    if (rc == 0)
        rc = px_connect(s, cl.ctx, &cl.conn);
    if (rc != 0) {
        fprintf(stderr, "inproc_pair: %s: %s\n", NAME, px_strerror(rc));
        cl.failed = 1;
    } else {
        uint64_t t0 = px_now_ns();
        send_next(&cl);
        px_ctx_run(cl.ctx);
        uint64_t ns = px_now_ns() - t0;
        if (!cl.failed)
            printf("%ld echoes of %zu bytes over %s: %.2f us per round trip\n", cl.total, cl.size,
                   NAME, ns / 1e3 / cl.total);
        px_session_close(s);
        px_ctx_run(cl.ctx);
    }
    if (cl.ctx)
        px_ctx_destroy(cl.ctx);
    px_ctx_stop(sv.ctx);
    pthread_join(th, NULL);
    free(cl.data);
    return cl.failed;
}
