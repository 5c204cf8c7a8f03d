/* mt_client URI [THREADS] [N] [POLL_US] — one session with a connection on each of
 * THREADS threads (default 4), each thread running its own context and
 * sending N echo requests (default 100000), 16 in flight. Against
 * mt_server, the connections land on the server's threads in turn.
 * Prints each thread's rate and the total. POLL_US as for mt_server.
 *
 *   mt_client tcp://127.0.0.1:7430 4 100000
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <plexus/plexus.h>

#define MAX_THREADS 64
#define WINDOW      16

struct worker {
    px_ctx *ctx; /* worker 0's is the session's own, driven by main() */
    px_conn *conn;
    pthread_t thread;
    px_msg req[WINDOW];
    px_iov iov[WINDOW];
    char data[WINDOW][32];
    long sent, done, total;
    int failed;
    double seconds;
};

static struct worker workers[MAX_THREADS];
static int n_workers;
static px_session *session;
static atomic_int finished; /* workers whose requests are all answered */
static atomic_int quit;     /* the session is torn down: workers may stop */

static void send_one(struct worker *w, int slot)
{
    w->iov[slot].base = w->data[slot];
    w->iov[slot].len = (size_t)snprintf(w->data[slot], sizeof(w->data[slot]), "%ld", w->sent);
    memset(&w->req[slot], 0, sizeof(w->req[slot]));
    w->req[slot].out.iov = &w->iov[slot];
    w->req[slot].out.iov_count = 1;
    int rc = px_send_request(w->conn, &w->req[slot]);
    if (rc != 0) {
        fprintf(stderr, "px_send_request: %s\n", px_strerror(rc));
        w->failed = 1;
        return;
    }
    w->sent++;
}

/* Each connection is on its own worker's context (set before the threads
 * start, so any thread may read it). */
static struct worker *worker_of(px_conn *c)
{
    px_ctx *ctx = px_conn_ctx(c);
    for (int i = 0; i < n_workers; i++)
        if (workers[i].ctx == ctx)
            return &workers[i];
    abort();
}

/* A response, on the thread of the connection that sent its request. */
static void on_msg(px_conn *c, px_msg *m, int more_in_batch, void *user)
{
    struct worker *w = worker_of(c);
    int slot = (int)(m - w->req);
    px_release_response(m);
    if (++w->done == w->total) {
        atomic_fetch_add(&finished, 1);
        px_ctx_stop(w->ctx); /* run_share's wait ends now */
        return;
    }
    if (w->sent < w->total && !w->failed)
        send_one(w, slot);
}

static void on_msg_error(px_conn *c, px_msg *m, px_msg_dir dir, int reason, void *user)
{
    struct worker *w = worker_of(c);
    fprintf(stderr, "request failed: %s\n", px_strerror(reason));
    w->failed = 1;
    px_ctx_stop(w->ctx);
    if (++w->done == w->total)
        atomic_fetch_add(&finished, 1);
}

static void on_session_event(px_session *s, const px_event *ev, void *user)
{
    if (ev->type == PX_EV_SESSION_REJECTED || ev->type == PX_EV_CONN_DISCONNECTED)
        fprintf(stderr, "connection failed: %s\n", px_strerror(ev->reason));
    if (ev->type == PX_EV_SESSION_TEARDOWN) /* on the session's own thread */
        atomic_store(&quit, 1);
}

static const px_session_ops ops = {
    .on_msg = on_msg, .on_msg_error = on_msg_error, .on_session_event = on_session_event};

/* One thread's share: connect on its own context, send, wait. */
static void run_share(struct worker *w)
{
    int rc = px_connect(session, w->ctx, &w->conn);
    if (rc != 0) {
        fprintf(stderr, "px_connect: %s\n", px_strerror(rc));
        w->failed = 1;
        atomic_fetch_add(&finished, 1);
        return;
    }
    uint64_t t0 = px_now_ns();
    for (int i = 0; i < WINDOW && w->sent < w->total; i++)
        send_one(w, i);
    while (w->done < w->total && !w->failed)
        px_ctx_run_timeout(w->ctx, 100);
    w->seconds = (double)(px_now_ns() - t0) / 1e9;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    run_share(w);
    /* Keep the context running until the session is gone: closing it ends
     * this thread's connection here. */
    while (!atomic_load(&quit))
        px_ctx_run_timeout(w->ctx, 10);
    px_ctx_run_timeout(w->ctx, 10);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: mt_client URI [THREADS] [N] [POLL_US]\n");
        return 2;
    }
    n_workers = argc > 2 ? atoi(argv[2]) : 4;
    long n = argc > 3 ? atol(argv[3]) : 100000;
    px_ctx_opts opts = {.poll_us = argc > 4 ? (uint32_t)atoi(argv[4]) : 0};
    if (n_workers < 1 || n_workers > MAX_THREADS || n < 1) {
        fprintf(stderr, "mt_client: THREADS must be 1..%d, N at least 1\n", MAX_THREADS);
        return 2;
    }
    for (int i = 0; i < n_workers; i++) {
        workers[i].total = n;
        int rc = px_ctx_create(&opts, &workers[i].ctx);
        if (rc != 0) {
            fprintf(stderr, "px_ctx_create: %s\n", px_strerror(rc));
            return 1;
        }
    }
    px_session_params p = {.uri = argv[1], .ops = &ops};
    int rc = px_session_create(workers[0].ctx, &p, &session);
    if (rc != 0) {
        fprintf(stderr, "px_session_create(%s): %s\n", argv[1], px_strerror(rc));
        return 1;
    }
    for (int i = 1; i < n_workers; i++)
        pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]);
    run_share(&workers[0]); /* the session's own thread does a share too */
    while (atomic_load(&finished) < n_workers)
        px_ctx_run_timeout(workers[0].ctx, 10);
    px_session_close(session); /* from its own thread */
    while (!atomic_load(&quit))
        px_ctx_run_timeout(workers[0].ctx, 10);

    double rate = 0;
    int failed = 0;
    for (int i = 0; i < n_workers; i++) {
        if (i > 0)
            pthread_join(workers[i].thread, NULL);
        struct worker *w = &workers[i];
        double r = w->seconds > 0 ? (double)w->done / w->seconds : 0;
        printf("thread %d: %ld requests in %.3f s, %.0f req/s\n", i, w->done, w->seconds, r);
        rate += r;
        failed |= w->failed;
    }
    printf("total: %.0f req/s over %d threads\n", rate, n_workers);
    for (int i = 0; i < n_workers; i++) {
        rc = px_ctx_destroy(workers[i].ctx);
        if (rc != 0) {
            fprintf(stderr, "px_ctx_destroy: %s\n", px_strerror(rc));
            failed = 1;
        }
    }
    return failed ? 1 : 0;
}
