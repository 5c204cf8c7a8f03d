/* epoll_loop [URI] [N] [--rounds R] [--size BYTES] — a plexus client driven
 * from the application's own epoll loop: px_ctx_fd() in an epoll set,
 * px_ctx_arm() before each sleep, px_ctx_timeout() as the sleep's timeout,
 * px_ctx_poll() on waking. No px_ctx_run(). It sends N requests, one at a
 * time, and prints the mean round trip.
 *
 *   epoll_loop                               (its own echo server, on a thread, tcp://127.0.0.1)
 *   epoll_loop tcp://127.0.0.1:7420 10000    (a running server: hello_server, say)
 *   epoll_loop --rounds 3                    (A B A B A B: this loop, then px_ctx_run)
 *
 * With --rounds R the same connection alternates R rounds of N requests
 * driven by the epoll loop (A) with R rounds driven by px_ctx_run (B), and
 * prints both means and their ratio: two figures from one interleaved run.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <plexus/plexus.h>

/* ---- an echo server on its own thread (when no URI is given) ----------------------- */

/* Owned by main; the thread creates, runs and destroys the context. */
struct server {
    px_ctx *ctx;
    px_server *srv;
    char uri[256];
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int state; /* 0 starting, 1 serving, -1 failed */
};

static void on_request(px_conn *c, px_msg *req, int more_in_batch, void *user)
{
    req->out = (px_msg_vec){.iov = req->in.iov, .iov_count = req->in.iov_count};
    if (px_send_response(req) != 0)
        px_release_msg(req); /* answers with an error */
}

static const px_session_ops server_ops = {.on_msg = on_request};

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
        rc = px_server_bind(sv->ctx, "tcp://127.0.0.1:0", &server_ops, NULL, &sv->srv);
    if (rc == 0 && px_server_uri(sv->srv, sv->uri, sizeof(sv->uri)) <= 0)
        rc = -PX_ENAMETOOLONG;
    if (rc != 0) {
        fprintf(stderr, "epoll_loop: server: %s\n", px_strerror(rc));
        server_ready(sv, -1);
        return NULL;
    }
    server_ready(sv, 1);
    px_ctx_run(sv->ctx); /* until server_end, posted from main */
    px_ctx_destroy(sv->ctx);
    return NULL;
}

/* Posted to the server's thread (px_ctx_post is the call that crosses). */
static void server_end(void *arg)
{
    struct server *sv = arg;
    px_server_unbind(sv->srv);
    px_ctx_stop(sv->ctx);
}

/* ---- the client ------------------------------------------------------------------------ */

struct client {
    px_ctx *ctx;
    px_conn *conn;
    px_msg req; /* one request at a time, reused */
    px_iov iov;
    char *data;
    size_t size;
    long done, target;
    int by_run; /* this round is px_ctx_run's: stop it when done */
    int failed, gone;
};

static void send_next(struct client *cl)
{
    memset(&cl->req, 0, sizeof(cl->req));
    cl->iov = (px_iov){.base = cl->data, .len = cl->size};
    cl->req.out = (px_msg_vec){.iov = &cl->iov, .iov_count = 1};
    int rc = px_send_request(cl->conn, &cl->req);
    if (rc != 0) {
        fprintf(stderr, "px_send_request: %s\n", px_strerror(rc));
        cl->failed = 1;
        px_ctx_stop(cl->ctx); /* a px_ctx_run round ends too */
    }
}

static void on_response(px_conn *c, px_msg *m, int more_in_batch, void *user)
{
    struct client *cl = user;
    px_release_response(m);
    if (++cl->done < cl->target)
        send_next(cl);
    else if (cl->by_run)
        px_ctx_stop(cl->ctx);
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
        fprintf(stderr, "epoll_loop: connection failed: %s\n", px_strerror(ev->reason));
        cl->failed = 1;
    }
    if (ev->type == PX_EV_SESSION_TEARDOWN) {
        cl->gone = 1;
        px_ctx_stop(cl->ctx);
    }
}

static const px_session_ops client_ops = {
    .on_session_event = on_event,
    .on_msg = on_response,
    .on_msg_error = on_msg_error,
};

/* ---- the application's loop --------------------------------------------------------------- */

/* What an application's own loop does with a context: arm, sleep on the fd
 * for at most the context's timeout (only when arm says nothing is
 * pending), poll. Here until *stop_flag or *count reaches `until`;
 * returns how many times it slept. */
static long epoll_drive(px_ctx *ctx, int ep, const int *stop_flag, const long *count, long until)
{
    long sleeps = 0;
    while (!*stop_flag && *count < until) {
        if (px_ctx_arm(ctx) == 0) {
            struct epoll_event ev;
            epoll_wait(ep, &ev, 1, px_ctx_timeout(ctx));
            sleeps++;
        }
        px_ctx_poll(ctx);
    }
    return sleeps;
}

/* N round trips, one at a time; returns the mean in microseconds. */
static double round_trips(struct client *cl, int ep, long n, int by_run, long *sleeps)
{
    cl->target = cl->done + n;
    cl->by_run = by_run;
    uint64_t t0 = px_now_ns();
    send_next(cl);
    if (by_run)
        px_ctx_run(cl->ctx);
    else
        *sleeps = epoll_drive(cl->ctx, ep, &cl->failed, &cl->done, cl->target);
    return (double)(px_now_ns() - t0) / 1e3 / (double)n;
}

static int usage(void)
{
    fprintf(stderr, "usage: epoll_loop [URI] [N] [--rounds R] [--size BYTES]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *uri = NULL;
    long n = 10000, rounds = 0;
    struct client cl = {.size = 64};
    int have_n = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atol(argv[++i]);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc)
            cl.size = strtoul(argv[++i], NULL, 10);
        else if (argv[i][0] != '-' && !uri && strstr(argv[i], "://"))
            uri = argv[i];
        else if (argv[i][0] != '-' && !have_n && (have_n = 1))
            n = atol(argv[i]);
        else
            return usage();
    }
    if (n < 1 || rounds < 0 || cl.size < 1)
        return usage();

    struct server sv = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    pthread_t th;
    if (!uri) {
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
        uri = sv.uri;
    }

    /* The client's context, its fd in our epoll set. */
    px_session *s = NULL;
    px_session_params p = {.uri = uri, .ops = &client_ops, .user = &cl};
    int ep = epoll_create1(EPOLL_CLOEXEC);
    cl.data = calloc(1, cl.size);
    int rc = cl.data && ep >= 0 ? px_ctx_create(NULL, &cl.ctx) : -PX_ENOMEM;
    int fd = rc == 0 ? px_ctx_fd(cl.ctx) : rc;
    struct epoll_event ev = {.events = EPOLLIN};
    if (fd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
        rc = fd < 0 ? fd : -PX_EBADF;
    if (rc == 0)
        rc = px_session_create(cl.ctx, &p, &s);
    if (rc == 0)
        rc = px_connect(s, cl.ctx, &cl.conn);
    if (rc != 0) {
        fprintf(stderr, "epoll_loop: %s: %s\n", uri, px_strerror(rc));
        return 1;
    }

    long sleeps = 0;
    round_trips(&cl, ep, 100, 0, &sleeps); /* warm-up: connecting, first buffers */
    printf("epoll_loop: %s, %zu-byte requests, %ld per round\n", uri, cl.size, n);
    if (rounds == 0) {
        double us = round_trips(&cl, ep, n, 0, &sleeps);
        if (!cl.failed)
            printf("px_ctx_fd loop: %.2f us per round trip (%.2f epoll_wait sleeps per round "
                   "trip)\n",
                   us, (double)sleeps / (double)n);
    }
    double sum_fd = 0, sum_run = 0;
    for (long r = 0; r < rounds && !cl.failed; r++) {
        double a = round_trips(&cl, ep, n, 0, &sleeps);
        double b = round_trips(&cl, ep, n, 1, &sleeps);
        sum_fd += a;
        sum_run += b;
        printf("round %ld: px_ctx_fd loop %.2f us, px_ctx_run %.2f us\n", r + 1, a, b);
    }
    if (rounds > 0 && !cl.failed)
        printf("mean of %ld rounds: px_ctx_fd loop %.2f us, px_ctx_run %.2f us per round trip; "
               "ratio fd/run %.3f\n",
               rounds, sum_fd / rounds, sum_run / rounds, sum_fd / sum_run);

    /* Close gracefully, still from our loop, until the session's last event. */
    px_session_close(s);
    long none = 0;
    epoll_drive(cl.ctx, ep, &cl.gone, &none, 1);
    px_ctx_destroy(cl.ctx);
    close(ep);
    free(cl.data);
    if (sv.ctx) {
        px_ctx_post(sv.ctx, server_end, &sv);
        pthread_join(th, NULL);
    }
    return cl.failed;
}
