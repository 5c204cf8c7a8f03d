/* px-perf server — the responder.
 *
 * ECHO requests are answered with their own data: the response's vector is
 * the request's delivered vector, which plexus keeps valid until the
 * response completes, so the echo costs no copy and no allocation. SINK
 * requests get an empty reply; one-way messages are counted. Every
 * message's header and length are checked; mismatches are counted as bad
 * and reported to the client, which then refuses to print a figure.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "perf.h"

static volatile sig_atomic_t stop_requested;
static struct perf_stats counters;

/* STATS replies in flight each need their header until send-complete; two
 * clients asking at once must not overwrite each other's, hence a ring. */
#define STATS_RING 16
static struct perf_stats stats_ring[STATS_RING];
static unsigned stats_next;

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
        struct perf_stats *st = &stats_ring[stats_next++ % STATS_RING];
        *st = counters;
        st->magic = PERF_MAGIC;
        st->cpu_us = cpu_us_self();
        req->out.header = st;
        req->out.header_len = sizeof(*st);
    }
    counters.requests++;
    int rc = px_send_response(req);
    if (rc != 0) {
        fprintf(stderr, "px-perf server: px_send_response: %s\n", px_strerror(rc));
        counters.bad++;
    }
}

static void on_msg(px_conn *c, px_msg *m, int more_in_batch, void *user)
{
    const struct perf_hdr *h = valid_hdr(m);
    if (m->type == PX_MSG_ONEWAY) {
        if (h && h->op == PERF_OP_SINK) {
            counters.oneway++;
            counters.oneway_bytes += m->in.data_len;
        } else {
            counters.bad++;
        }
        px_release_msg(m);
        return;
    }
    if (!h) {
        counters.bad++;
        px_release_msg(m); /* answers with an error: the client fails loudly */
        return;
    }
    answer(m, h);
}

static void on_new_session(px_session *s, const px_new_session *req, void *user)
{
    px_session_accept(s, NULL, 0, NULL, 0);
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

int perf_server_main(const struct perf_opts *o)
{
    px_ctx *ctx;
    px_server *srv;
    px_timer *timer;
    char bound[1024];
    if (o->server_cpu >= 0 && perf_pin_cpu(o->server_cpu) != 0)
        return 1;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    px_ctx_opts copts = {.poll_us = o->poll_us};
    int rc = px_ctx_create(&copts, &ctx);
    if (rc == 0)
        rc = px_server_bind(ctx, o->uri, &server_ops, NULL, &srv);
    if (rc != 0) {
        fprintf(stderr, "px-perf server: %s: %s\n", o->uri, px_strerror(rc));
        return 1;
    }
    px_server_uri(srv, bound, sizeof(bound));
    /* The local mode and scripts read the real URI (port 0) from this line. */
    printf("px-perf server listening on %s\n", bound);
    fflush(stdout);

    px_timer_create(ctx, check_stop, ctx, &timer);
    px_timer_start(timer, 100000, 100000);
    px_ctx_run(ctx);

    px_timer_destroy(timer);
    px_server_unbind(srv);
    /* Sessions of clients still connected keep the context busy; the process
     * is ending anyway, so -PX_EBUSY here is not worth waiting for. */
    px_ctx_destroy(ctx);
    return 0;
}
