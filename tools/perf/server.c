/* px-perf server — the responder.
 *
 * ECHO requests are answered with their own data: the response's vector is
 * the request's delivered vector, which plexus keeps valid until the
 * response completes, so the echo costs no copy and no allocation. SINK
 * requests get an empty reply; one-way messages are counted. Every
 * message's header and length are checked; mismatches are counted as bad
 * and reported to the client, which then refuses to print a figure.
 *
 * --threads N: N contexts, each with its own server and thread; the first
 * binds the URI and accepts every session with all N as portals, so a
 * client whose session has several connections (px-perf client
 * --one-session) spreads them over the threads. Each thread counts in a
 * tally of its own (one writer: no atomic read-modify-write on the
 * message path); a STATS reply sums them.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "perf.h"

static volatile sig_atomic_t stop_requested;

/* One thread's counts: written by that thread only, read by whichever
 * answers a STATS. */
struct tally {
    _Atomic uint64_t requests, oneway, oneway_bytes, bad;
};

/* A server thread: its context, server and tally. Owned by
 * perf_server_main, which outlives every thread. */
struct srv_thread {
    px_ctx *ctx;
    px_server *srv;
    px_timer *timer;
    pthread_t tid;
    char uri[1100];
    struct tally tally;
};

static struct srv_thread *threads;
static unsigned n_threads;
static const char **portals; /* every thread's URI, the first one last */
static _Thread_local struct tally *mine;

static void count(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static uint64_t sum_of(size_t offset)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < n_threads; i++)
        n += atomic_load_explicit((_Atomic uint64_t *)((char *)&threads[i].tally + offset),
                                  memory_order_relaxed);
    return n;
}

/* STATS replies in flight each need their header until send-complete; two
 * clients asking at once must not overwrite each other's, hence a ring. */
#define STATS_RING 16
static struct perf_stats stats_ring[STATS_RING];
static atomic_uint stats_next;

static void on_signal(int sig)
{
    stop_requested = 1;
}

/* px_ctx_stop() is not async-signal-safe: a timer turns the flag into a stop. */
static void check_stop(px_timer *t, void *ctx)
{
    if (stop_requested)
        px_ctx_stop(ctx);
}

static uint64_t cpu_us_self(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static const struct perf_hdr *valid_hdr(const px_msg *m)
{
    const struct perf_hdr *h = m->in.header;
    if (m->in.header_len != sizeof(*h) || h == NULL || h->magic != PERF_MAGIC)
        return NULL;
    if (h->op != PERF_OP_STATS && h->len != m->in.data_len)
        return NULL;
    return h;
}

static void answer(px_msg *req, const struct perf_hdr *h)
{
    memset(&req->out, 0, sizeof(req->out));
    if (h->op == PERF_OP_ECHO) {
        req->out.iov = req->in.iov;
        req->out.iov_count = req->in.iov_count;
    } else if (h->op == PERF_OP_STATS) {
        struct perf_stats *st = &stats_ring[atomic_fetch_add(&stats_next, 1) % STATS_RING];
        memset(st, 0, sizeof(*st));
        st->requests = sum_of(offsetof(struct tally, requests)); /* this one not yet */
        st->oneway = sum_of(offsetof(struct tally, oneway));
        st->oneway_bytes = sum_of(offsetof(struct tally, oneway_bytes));
        st->bad = sum_of(offsetof(struct tally, bad));
        st->magic = PERF_MAGIC;
        st->cpu_us = cpu_us_self();
        req->out.header = st;
        req->out.header_len = sizeof(*st);
    }
    count(&mine->requests, 1);
    int rc = px_send_response(req);
    if (rc != 0) {
        fprintf(stderr, "px-perf server: px_send_response: %s\n", px_strerror(rc));
        count(&mine->bad, 1);
    }
}

static void on_msg(px_conn *c, px_msg *m, int more_in_batch, void *user)
{
    const struct perf_hdr *h = valid_hdr(m);
    if (m->type == PX_MSG_ONEWAY) {
        if (h && h->op == PERF_OP_SINK) {
            count(&mine->oneway, 1);
            count(&mine->oneway_bytes, m->in.data_len);
        } else {
            count(&mine->bad, 1);
        }
        px_release_msg(m);
        return;
    }
    if (!h) {
        count(&mine->bad, 1);
        px_release_msg(m); /* answers with an error: the client fails loudly */
        return;
    }
    answer(m, h);
}

static void on_new_session(px_session *s, const px_new_session *req, void *user)
{
    int rc = n_threads > 1 ? px_session_accept(s, portals, n_threads, NULL, 0)
                           : px_session_accept(s, NULL, 0, NULL, 0);
    if (rc != 0)
        fprintf(stderr, "px-perf server: px_session_accept: %s\n", px_strerror(rc));
}

static void on_msg_error(px_conn *c, px_msg *m, px_msg_dir dir, int reason, void *user)
{
    /* A response lost because the client went away: normal at its exit. */
    if (reason != -PX_EDISCONNECTED && reason != -PX_EFLUSHED)
        fprintf(stderr, "px-perf server: response failed: %s\n", px_strerror(reason));
}

static const px_session_ops server_ops = {
    .on_new_session = on_new_session,
    .on_msg = on_msg,
    .on_msg_error = on_msg_error,
};

/* Where thread i binds, beside the URI the first one was given: port 0
 * for tcp:// and rdma://, a "-i" suffix for path- and name-addressed
 * transports. */
static void thread_uri(const char *uri, unsigned i, char *out, size_t len)
{
    const char *colon = strrchr(uri, ':');
    int has_port = (strncmp(uri, "tcp://", 6) == 0 || strncmp(uri, "rdma://", 7) == 0) && colon &&
                   colon[1] != '/';
    const char *query = colon ? strchr(colon, '?') : NULL;
    if (i == 0)
        snprintf(out, len, "%s", uri);
    else if (has_port)
        snprintf(out, len, "%.*s:0%s", (int)(colon - uri), uri, query ? query : "");
    else
        snprintf(out, len, "%s-%u", uri, i);
}

static int thread_up(struct srv_thread *t, const char *uri, const struct perf_opts *o)
{
    px_ctx_opts copts = {.poll_us = o->poll_us};
    int rc = px_ctx_create(&copts, &t->ctx);
    if (rc == 0)
        rc = px_server_bind(t->ctx, uri, &server_ops, NULL, &t->srv);
    if (rc == 0 && px_server_uri(t->srv, t->uri, sizeof(t->uri)) <= 0)
        rc = -PX_ENOSPC;
    if (rc == 0)
        rc = px_timer_create(t->ctx, check_stop, t->ctx, &t->timer);
    if (rc == 0)
        rc = px_timer_start(t->timer, 100000, 100000);
    if (rc != 0)
        fprintf(stderr, "px-perf server: %s: %s\n", uri, px_strerror(rc));
    return rc;
}

static void *thread_main(void *arg)
{
    struct srv_thread *t = arg;
    mine = &t->tally;
    px_ctx_run(t->ctx);
    return NULL;
}

int perf_server_main(const struct perf_opts *o)
{
    if (o->server_cpu >= 0 && perf_pin_cpu(o->server_cpu) != 0)
        return 1;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    n_threads = o->threads ? o->threads : 1;
    threads = calloc(n_threads, sizeof(*threads));
    portals = calloc(n_threads, sizeof(*portals));
    if (!threads || !portals)
        return 1;
    for (unsigned i = 0; i < n_threads; i++) {
        char uri[1100];
        thread_uri(o->uri, i, uri, sizeof(uri));
        if (thread_up(&threads[i], uri, o) != 0)
            return 1;
    }
    for (unsigned i = 0; i < n_threads; i++)
        portals[i] = threads[(i + 1) % n_threads].uri;
    /* The local mode and scripts read the real URI (port 0) from this line. */
    printf("px-perf server listening on %s\n", threads[0].uri);
    fflush(stdout);
    if (n_threads > 1) /* not on stdout: the local mode reads one line there */
        fprintf(stderr, "px-perf server: %u threads; sessions accepted with portals %s ...\n",
                n_threads, threads[1].uri);

    for (unsigned i = 1; i < n_threads; i++)
        pthread_create(&threads[i].tid, NULL, thread_main, &threads[i]);
    mine = &threads[0].tally;
    px_ctx_run(threads[0].ctx); /* until a signal; each thread's timer stops its own */
    for (unsigned i = 1; i < n_threads; i++)
        pthread_join(threads[i].tid, NULL);

    for (unsigned i = 0; i < n_threads; i++) {
        px_timer_destroy(threads[i].timer);
        px_server_unbind(threads[i].srv);
    }
    /* Sessions of clients still connected keep the contexts busy; the
     * process is ending anyway, so -PX_EBUSY here is not worth waiting for. */
    for (unsigned i = 0; i < n_threads; i++)
        px_ctx_destroy(threads[i].ctx);
    free(threads);
    free(portals);
    return 0;
}
