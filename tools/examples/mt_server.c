/* mt_server URI [THREADS] [POLL_US] — an echo server with THREADS worker threads
 * (default 4), each running its own context and server. The first binds
 * URI and accepts every session with all of them as portals, so a client's
 * connections spread over the threads; each connection is served on its
 * thread. SIGINT or SIGTERM prints the requests each thread answered.
 *
 *   mt_server tcp://127.0.0.1:7430 4
 *   mt_client tcp://127.0.0.1:7430 4 100000
 *
 * POLL_US > 0 has each context busy-poll that long before it sleeps
 * (px_ctx_opts.poll_us; default 0: sleep at once).
 *
 * The other workers bind next to URI: port 0 for tcp://, "-N" after the
 * path or name for unix:// and shm://.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <plexus/plexus.h>

#define MAX_THREADS 64
#define URI_LEN     1100

struct worker {
    px_ctx *ctx;
    px_server *srv;
    pthread_t thread;
    char uri[URI_LEN];
    atomic_ullong answered;
};

static struct worker workers[MAX_THREADS];
static const char *portals[MAX_THREADS];
static int n_workers;

/* Echo: runs on the thread of the connection's context. */
static void on_msg(px_conn *c, px_msg *m, int more_in_batch, void *user)
{
    struct worker *w = user;
    m->out.header = m->in.header;
    m->out.header_len = m->in.header_len;
    m->out.iov = m->in.iov;
    m->out.iov_count = m->in.iov_count;
    if (px_send_response(m) == 0)
        atomic_fetch_add_explicit(&w->answered, 1, memory_order_relaxed);
}

/* Only the first server sees new sessions: it hands out every worker. */
static void on_new_session(px_session *s, const px_new_session *req, void *user)
{
    int rc = px_session_accept(s, portals, (size_t)n_workers, NULL, 0);
    if (rc != 0)
        fprintf(stderr, "px_session_accept: %s\n", px_strerror(rc));
}

/* The session's ops are the first server's, its user pointer too: find the
 * worker by the context the connection runs on instead. */
static void on_msg_any(px_conn *c, px_msg *m, int more_in_batch, void *user)
{
    px_ctx *ctx = px_conn_ctx(c);
    for (int i = 0; i < n_workers; i++)
        if (workers[i].ctx == ctx) {
            on_msg(c, m, more_in_batch, &workers[i]);
            return;
        }
}

static const px_session_ops ops = {.on_new_session = on_new_session, .on_msg = on_msg_any};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    px_ctx_run(w->ctx);
    return NULL;
}

/* Where worker i binds, beside the URI the first one was given. */
static void worker_uri(const char *uri, int i, char *out, size_t len)
{
    const char *colon = strrchr(uri, ':');
    if (i == 0)
        snprintf(out, len, "%s", uri);
    else if (strncmp(uri, "tcp://", 6) == 0 && colon && colon > uri + 5)
        snprintf(out, len, "%.*s:0", (int)(colon - uri), uri);
    else
        snprintf(out, len, "%s-%d", uri, i);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: mt_server URI [THREADS] [POLL_US]\n");
        return 2;
    }
    n_workers = argc > 2 ? atoi(argv[2]) : 4;
    px_ctx_opts opts = {.poll_us = argc > 3 ? (uint32_t)atoi(argv[3]) : 0};
    if (n_workers < 1 || n_workers > MAX_THREADS) {
        fprintf(stderr, "mt_server: THREADS must be 1..%d\n", MAX_THREADS);
        return 2;
    }
    /* Signals go to the main thread's sigwait, not to a worker. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    for (int i = 0; i < n_workers; i++) {
        struct worker *w = &workers[i];
        char bind[URI_LEN];
        worker_uri(argv[1], i, bind, sizeof(bind));
        int rc = px_ctx_create(&opts, &w->ctx);
        if (rc == 0)
            rc = px_server_bind(w->ctx, bind, &ops, w, &w->srv);
        if (rc == 0 && px_server_uri(w->srv, w->uri, sizeof(w->uri)) < 0)
            rc = -PX_ENOSPC;
        if (rc != 0) {
            fprintf(stderr, "mt_server: bind %s: %s\n", bind, px_strerror(rc));
            return 1;
        }
    }
    /* The first connection of a session comes to worker 0; the client
     * sends the next ones to the portals in turn, from the first: list
     * worker 0 last, so n connections land on n different threads. */
    for (int i = 0; i < n_workers; i++)
        portals[i] = workers[(i + 1) % n_workers].uri;
    for (int i = 0; i < n_workers; i++)
        pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]);
    printf("listening on %s\nthreads: %d\n", workers[0].uri, n_workers);
    fflush(stdout);

    int sig;
    sigwait(&sigs, &sig);
    for (int i = 0; i < n_workers; i++)
        px_ctx_stop(workers[i].ctx);
    unsigned long long total = 0;
    for (int i = 0; i < n_workers; i++) {
        pthread_join(workers[i].thread, NULL);
        unsigned long long n = atomic_load(&workers[i].answered);
        printf("thread %d (%s): %llu requests\n", i, workers[i].uri, n);
        total += n;
    }
    printf("total: %llu requests\n", total);
    /* Abruptly: the clients have what they asked for, or hear the end. */
    for (int i = 0; i < n_workers; i++)
        px_server_disconnect(workers[i].srv);
    for (int i = 0; i < n_workers; i++) /* let the portals' connections go */
        px_ctx_run_timeout(workers[i].ctx, 10);
    for (int i = 0; i < n_workers; i++)
        px_ctx_run_timeout(workers[i].ctx, 10);
    return 0;
}
