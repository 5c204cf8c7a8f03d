/* px-perf client — the tests.
 *
 * A worker is one thread with its own px_ctx and its share of the
 * connections (one session each). A timed phase keeps `window` operations
 * in flight, each new one on the next connection (round-robin), refilled
 * from the completion callback of the one before. Everything a phase
 * touches (slots, payload buffer, histogram) exists before it starts, so
 * the timed loop never allocates. The wall time of a phase runs from its
 * first send to its last completion; for one-way messages that last
 * completion is a round trip on every connection after the final message
 * (FIFO order per connection), so the rate counts messages the server has
 * actually received, not merely handed to the kernel.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "perf.h"

enum phase_kind { K_LAT, K_RR, K_ONEWAY, K_BW };

static const char *const kind_name[] = {"lat", "rate-rr", "rate-oneway", "bw"};

struct worker;

/* One operation in flight. The px_msg is first so a message converts back. */
struct slot {
    px_msg msg;
    px_iov iov;
    struct perf_hdr hdr;
    uint64_t t0;
    int ctl; /* a STATS or barrier request, not part of the measurement */
};

struct phase {
    enum phase_kind kind;
    size_t size;
    unsigned window;
    uint64_t target;      /* operations to complete; 0: until the deadline */
    uint64_t duration_ns; /* when target == 0 */
    int record;           /* 0 in warmup */
};

struct worker {
    unsigned id;
    px_ctx *ctx;
    px_session **sessions;
    px_conn **conns;
    unsigned n_conns, rr;
    unsigned established, teardowns;
    int setup_failed, setup_reason;

    void *buf; /* the payload every send points at */
    size_t buf_len;
    px_mr *mr;
    struct slot *slots; /* the window */
    unsigned n_slots;
    struct slot *ctl; /* one per connection */
    unsigned ctl_left;
    struct perf_stats stats; /* the last STATS reply */

    /* the running phase */
    struct phase ph;
    uint64_t issued, completed, outstanding, deadline;
    uint64_t t_start, t_end;
    int stopping, in_barrier;
    uint64_t bad_len, errors;
    int first_error;
    struct perf_hist hist;
    _Atomic uint64_t progress;
    pthread_t tid;
};

/* --one-session: every worker's connections belong to one session (made
 * by worker 0, on its context), whose callbacks all carry worker 0 as
 * their user pointer; the worker a connection belongs to is the one whose
 * context drives it. Set before any connection exists. */
static px_session *shared_session;
static struct worker *all_workers;
static unsigned n_all_workers;

static struct worker *owner(px_conn *c, void *user)
{
    if (!shared_session)
        return user;
    px_ctx *ctx = px_conn_ctx(c);
    for (unsigned i = 0; i < n_all_workers; i++)
        if (all_workers[i].ctx == ctx)
            return &all_workers[i];
    return user;
}

/* ---- issuing and completing ---------------------------------------------- */

static void fail(struct worker *w, int reason)
{
    if (w->errors++ == 0)
        w->first_error = reason;
}

static uint32_t data_op(enum phase_kind k)
{
    return k == K_LAT || k == K_RR ? PERF_OP_ECHO : PERF_OP_SINK;
}

static int issue(struct worker *w, struct slot *s)
{
    px_conn *c = w->conns[w->rr++ % w->n_conns];
    s->hdr = (struct perf_hdr){.magic = PERF_MAGIC, .op = data_op(w->ph.kind), .len = w->ph.size};
    s->iov = (px_iov){.base = w->buf, .len = w->ph.size, .mr = w->mr};
    memset(&s->msg.out, 0, sizeof(s->msg.out));
    memset(&s->msg.in, 0, sizeof(s->msg.in)); /* replies land in plexus memory */
    s->msg.out.header = &s->hdr;
    s->msg.out.header_len = sizeof(s->hdr);
    s->msg.out.iov = &s->iov;
    s->msg.out.iov_count = w->ph.size ? 1 : 0;
    s->msg.flags = 0;
    if (w->ph.kind != K_ONEWAY) /* one-way rows have no latency */
        s->t0 = px_now_ns();
    int rc = w->ph.kind == K_ONEWAY ? px_send_msg(c, &s->msg) : px_send_request(c, &s->msg);
    if (rc != 0) {
        fail(w, rc);
        return rc;
    }
    w->issued++;
    w->outstanding++;
    return 0;
}

/* The clock is read only where a figure needs it: a row counted in
 * operations and without latency (one-way) reads it twice, not per
 * message, so the tool's own cost stays out of the library's. */
static int more_to_issue(const struct worker *w, uint64_t *now)
{
    if (w->stopping)
        return 0;
    if (w->ph.target)
        return w->issued < w->ph.target;
    if (!*now)
        *now = px_now_ns();
    return *now < w->deadline;
}

static void send_ctl(struct worker *w, unsigned ci, uint32_t op)
{
    struct slot *s = &w->ctl[ci];
    s->ctl = 1;
    s->hdr = (struct perf_hdr){.magic = PERF_MAGIC, .op = op, .len = 0};
    memset(&s->msg.out, 0, sizeof(s->msg.out));
    memset(&s->msg.in, 0, sizeof(s->msg.in));
    s->msg.out.header = &s->hdr;
    s->msg.out.header_len = sizeof(s->hdr);
    int rc = px_send_request(w->conns[ci], &s->msg);
    if (rc != 0) {
        fail(w, rc);
        px_ctx_stop(w->ctx);
        return;
    }
    w->ctl_left++;
}

/* The last operation of the phase completed. One-way messages still need
 * the barrier: one empty round trip per connection. */
static void phase_drained(struct worker *w, uint64_t now)
{
    if (w->ph.kind == K_ONEWAY && !w->in_barrier && w->errors == 0) {
        w->in_barrier = 1;
        for (unsigned i = 0; i < w->n_conns; i++)
            send_ctl(w, i, PERF_OP_ECHO);
        return;
    }
    w->t_end = now;
    px_ctx_stop(w->ctx);
}

static void complete(struct worker *w, struct slot *s, int ok)
{
    uint64_t now = 0; /* read when first needed */
    if (ok && w->ph.record && w->ph.kind != K_ONEWAY) {
        now = px_now_ns();
        perf_hist_record(&w->hist, now - s->t0);
    }
    w->completed++;
    w->outstanding--;
    atomic_store_explicit(&w->progress, w->completed, memory_order_relaxed);
    if (w->errors == 0 && more_to_issue(w, &now)) {
        if (issue(w, s) == 0)
            return;
    }
    w->stopping = 1;
    if (w->outstanding == 0)
        phase_drained(w, now ? now : px_now_ns());
}

static void ctl_done(struct worker *w, px_msg *m)
{
    const struct perf_hdr *h = &((struct slot *)m)->hdr;
    if (h->op == PERF_OP_STATS) {
        if (m->in.header_len == sizeof(struct perf_stats) &&
            ((const struct perf_stats *)m->in.header)->magic == PERF_MAGIC)
            memcpy(&w->stats, m->in.header, sizeof(w->stats));
        else
            fail(w, -PX_EPROTO);
    } else if (m->in.data_len != 0) {
        fail(w, -PX_EPROTO);
    }
    px_release_response(m);
    if (--w->ctl_left == 0) {
        if (w->in_barrier) {
            w->t_end = px_now_ns();
            w->in_barrier = 0;
        }
        px_ctx_stop(w->ctx);
    }
}

/* Replies are checked for length: a library that dropped or truncated data
 * must not produce a figure. */
static void on_msg(px_conn *c, px_msg *m, int more_in_batch, void *user)
{
    struct worker *w = owner(c, user);
    struct slot *s = (struct slot *)m;
    if (m->type != PX_MSG_RESPONSE) {
        px_release_msg(m); /* the server never sends us anything else */
        return;
    }
    if (s->ctl) {
        ctl_done(w, m);
        return;
    }
    uint64_t want = data_op(w->ph.kind) == PERF_OP_ECHO ? w->ph.size : 0;
    int ok = m->in.data_len == want;
    if (!ok) {
        w->bad_len++;
        fail(w, -PX_EPROTO);
    }
    px_release_response(m);
    complete(w, s, ok);
}

static void on_send_complete(px_conn *c, px_msg *m, void *user)
{
    complete(owner(c, user), (struct slot *)m, 1);
}

static void on_msg_error(px_conn *c, px_msg *m, px_msg_dir dir, int reason, void *user)
{
    struct worker *w = owner(c, user);
    struct slot *s = (struct slot *)m;
    fail(w, reason);
    if (s->ctl) {
        if (--w->ctl_left == 0)
            px_ctx_stop(w->ctx);
        return;
    }
    complete(w, s, 0);
}

static void on_session_event(px_session *sess, const px_event *ev, void *user)
{
    struct worker *w = ev->conn ? owner(ev->conn, user) : user;
    switch (ev->type) {
    case PX_EV_CONN_ESTABLISHED:
        if (++w->established == w->n_conns)
            px_ctx_stop(w->ctx);
        break;
    case PX_EV_SESSION_REJECTED:
    case PX_EV_CONN_DISCONNECTED:
    case PX_EV_CONN_ERROR:
        if (!w->setup_failed) {
            w->setup_failed = 1;
            w->setup_reason = ev->reason ? ev->reason : -PX_ENOTCONN;
        }
        px_ctx_stop(w->ctx);
        break;
    case PX_EV_CONN_TEARDOWN:
        /* A connection that never came up can end with no DISCONNECTED
         * before it (seen for an unresolvable host): treat it as one. */
        if (w->established < w->n_conns && !w->setup_failed) {
            w->setup_failed = 1;
            w->setup_reason = ev->reason ? ev->reason : -PX_ENOTCONN;
            px_ctx_stop(w->ctx);
        }
        break;
    case PX_EV_SESSION_TEARDOWN:
        if (++w->teardowns == w->n_conns)
            px_ctx_stop(w->ctx);
        break;
    default:
        break;
    }
}

static const px_session_ops client_ops = {
    .on_session_event = on_session_event,
    .on_msg = on_msg,
    .on_msg_send_complete = on_send_complete,
    .on_msg_error = on_msg_error,
};

/* ---- phases --------------------------------------------------------------- */

static void phase_begin(struct worker *w, const struct phase *ph)
{
    w->ph = *ph;
    w->issued = w->completed = w->outstanding = 0;
    w->stopping = w->in_barrier = 0;
    w->bad_len = w->errors = 0;
    w->first_error = 0;
    w->ctl_left = 0;
    atomic_store(&w->progress, 0);
    perf_hist_reset(&w->hist);
}

static void *phase_thread(void *arg)
{
    struct worker *w = arg;
    unsigned n = w->ph.window;
    if (w->ph.target && w->ph.target < n)
        n = (unsigned)w->ph.target;
    w->t_start = px_now_ns();
    w->deadline = w->t_start + w->ph.duration_ns;
    for (unsigned i = 0; i < n; i++) {
        w->slots[i].ctl = 0;
        if (issue(w, &w->slots[i]) != 0)
            break;
    }
    if (w->outstanding == 0) /* nothing could be sent at all */
        return NULL;
    px_ctx_run(w->ctx);
    return NULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Run the phase on every worker, each on its own thread, while this thread
 * shows progress. */
static void run_phase(struct worker *ws, unsigned n, const struct phase *ph, const char *what,
                      int progress)
{
    for (unsigned i = 0; i < n; i++) {
        phase_begin(&ws[i], ph);
        pthread_create(&ws[i].tid, NULL, phase_thread, &ws[i]);
    }
    double t0 = now_s(), next = t0 + 1;
    for (unsigned i = 0; i < n; i++) {
        while (progress && pthread_tryjoin_np(ws[i].tid, NULL) != 0) {
            struct timespec ts = {0, 50 * 1000 * 1000};
            nanosleep(&ts, NULL);
            double t = now_s();
            if (t < next)
                continue;
            uint64_t done = 0;
            for (unsigned j = 0; j < n; j++)
                done += atomic_load_explicit(&ws[j].progress, memory_order_relaxed);
            /* On a terminal the line is redrawn each second; into a file
             * or pipe a line every 5 s. */
            int tty = isatty(2);
            fprintf(stderr,
                    tty ? "\r%-40s %6.1f s  %12llu ops  %10.0f ops/s   "
                        : "%s %.1f s %llu ops %.0f ops/s\n",
                    what, t - t0, (unsigned long long)done, done / (t - t0));
            next = t + (tty ? 1 : 5);
        }
        if (!progress)
            pthread_join(ws[i].tid, NULL);
    }
    if (progress && now_s() - t0 >= 1 && isatty(2))
        fprintf(stderr, "\r%-100s\r", "");
}

/* ---- setup and teardown ------------------------------------------------------ */

static int wait_setup(struct worker *w)
{
    uint64_t until = px_now_ns() + 10ull * 1000 * 1000 * 1000;
    while (w->established < w->n_conns && !w->setup_failed) {
        uint64_t now = px_now_ns();
        if (now >= until)
            return -PX_ETIMEDOUT;
        px_ctx_run_timeout(w->ctx, (int)((until - now) / 1000000) + 1);
    }
    return w->setup_failed ? w->setup_reason : 0;
}

static int worker_setup(struct worker *w, const struct perf_opts *o, size_t buf_len,
                        unsigned n_slots)
{
    px_ctx_opts copts = {.poll_us = o->poll_us};
    if (n_slots > 512)
        copts.queue_depth = n_slots;
    int rc = px_ctx_create(&copts, &w->ctx);
    if (rc != 0)
        return rc;
    w->sessions = calloc(w->n_conns, sizeof(*w->sessions));
    w->conns = calloc(w->n_conns, sizeof(*w->conns));
    w->ctl = calloc(w->n_conns, sizeof(*w->ctl));
    w->slots = calloc(n_slots, sizeof(*w->slots));
    w->n_slots = n_slots;
    if (!w->sessions || !w->conns || !w->ctl || !w->slots)
        return -PX_ENOMEM;
    /* --mem alloc: shareable registered memory, so transports that can
     * move it without CMA or a registration (shm's shared pool) get the
     * chance; plain malloc otherwise, what an application has by default. */
    w->buf_len = buf_len ? buf_len : 1;
    w->mr = NULL;
    if (o->mem_alloc) {
        rc = px_mem_alloc(w->ctx, w->buf_len, &w->buf, &w->mr);
        if (rc != 0)
            return rc;
    } else {
        w->buf = malloc(w->buf_len);
        if (!w->buf)
            return -PX_ENOMEM;
    }
    memset(w->buf, 0x5a, w->buf_len); /* fault the pages in before timing */
    for (unsigned i = 0; i < w->n_conns; i++) {
        px_session_params p = {.uri = o->uri, .ops = &client_ops, .user = w};
        if (o->one_session && !shared_session) {
            rc = px_session_create(w->ctx, &p, &shared_session);
            w->sessions[i] = shared_session; /* worker 0 closes it */
        } else if (!o->one_session) {
            rc = px_session_create(w->ctx, &p, &w->sessions[i]);
        }
        /* This thread drives every context during setup, so it may connect
         * on each (one thread at a time per context). */
        if (rc == 0)
            rc = px_connect(o->one_session ? shared_session : w->sessions[i], w->ctx, &w->conns[i]);
        if (rc != 0)
            return rc;
    }
    return wait_setup(w);
}

/* --one-session: close the session from its own context's thread (this
 * one, between phases) and drive every context until it is torn down, for
 * 3 s at most: its connections on the others close there. */
static void shared_session_close(struct worker *ws, unsigned n)
{
    ws[0].teardowns = 0;
    if (px_session_close(shared_session) == 0) {
        uint64_t until = px_now_ns() + 3000ull * 1000 * 1000;
        while (ws[0].teardowns == 0 && px_now_ns() < until)
            for (unsigned i = 0; i < n; i++)
                px_ctx_run_timeout(ws[i].ctx, 1);
    }
    ws[0].sessions[0] = NULL;
    shared_session = NULL;
}

static void worker_teardown(struct worker *w)
{
    if (!w->ctx)
        return;
    unsigned open = 0;
    for (unsigned i = 0; i < w->n_conns; i++)
        if (w->sessions && w->sessions[i] && px_session_close(w->sessions[i]) == 0)
            open++;
    w->teardowns = 0;
    w->n_conns = open;
    /* Until every session has ended, for 3 s at most: a run may also end
     * early on a stop an interrupt requested meanwhile. */
    uint64_t until = px_now_ns() + 3000ull * 1000 * 1000;
    for (uint64_t now = px_now_ns(); w->teardowns < open && now < until; now = px_now_ns())
        px_ctx_run_timeout(w->ctx, (int)((until - now) / 1000000) + 1);
    if (w->mr)
        px_mem_free(w->mr);
    else
        free(w->buf);
    px_ctx_destroy(w->ctx);
    free(w->sessions);
    free(w->conns);
    free(w->ctl);
    free(w->slots);
}

/* A STATS round trip on worker 0's first connection, from this thread while
 * no phase runs. */
static int server_stats(struct worker *w, struct perf_stats *out)
{
    w->errors = 0;
    w->ctl_left = 0;
    send_ctl(w, 0, PERF_OP_STATS);
    if (w->ctl_left)
        px_ctx_run_timeout(w->ctx, 10000);
    if (w->errors || w->ctl_left)
        return w->errors ? w->first_error : -PX_ETIMEDOUT;
    *out = w->stats;
    return 0;
}

static uint64_t cpu_us_self(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* ---- the rows --------------------------------------------------------------- */

static const size_t lat_sizes[] = {64, 4096};
static const size_t rate_sizes[] = {64};
static const size_t bw_sizes[] = {64 << 10, 1 << 20, 16 << 20};

struct row_spec {
    enum phase_kind kind;
    size_t size;
    unsigned window;
};

/* Each test's rows in turn (all request/reply rows, then all one-way
 * rows, ...), so each gets one table. */
static unsigned build_rows(const struct perf_opts *o, struct row_spec *rows)
{
    static const struct {
        unsigned bit;
        enum phase_kind kind;
        const size_t *sizes;
        int n_sizes;
        unsigned window; /* 0: always 1 */
    } tests[] = {
        {PERF_TEST_LAT, K_LAT, lat_sizes, 2, 0},
        {PERF_TEST_RR, K_RR, rate_sizes, 1, 64},
        {PERF_TEST_ONEWAY, K_ONEWAY, rate_sizes, 1, 64},
        {PERF_TEST_BW, K_BW, bw_sizes, 3, 8},
    };
    unsigned n = 0;
    for (size_t t = 0; t < sizeof tests / sizeof tests[0]; t++) {
        if (!(o->tests & tests[t].bit))
            continue;
        const size_t *sz = o->n_sizes ? o->sizes : tests[t].sizes;
        int nsz = o->n_sizes ? o->n_sizes : tests[t].n_sizes;
        unsigned win = !tests[t].window ? 1 : o->window ? o->window : tests[t].window;
        for (int i = 0; i < nsz; i++)
            rows[n++] = (struct row_spec){tests[t].kind, sz[i], win};
    }
    return n;
}

static int check_phase(struct worker *ws, unsigned n, const char *what)
{
    for (unsigned i = 0; i < n; i++) {
        if (ws[i].errors == 0)
            continue;
        if (ws[i].bad_len)
            fprintf(stderr, "px-perf: %s: %llu replies had the wrong length\n", what,
                    (unsigned long long)ws[i].bad_len);
        fprintf(stderr, "px-perf: %s: %llu operations failed: %s\n", what,
                (unsigned long long)ws[i].errors, px_strerror(ws[i].first_error));
        return 1;
    }
    return 0;
}

/* The server's own count must match ours: a figure is printed only for
 * messages the server really saw. */
static int check_server(const struct perf_stats *a, const struct perf_stats *b,
                        const struct row_spec *r, uint64_t msgs, unsigned n_conns)
{
    uint64_t req = b->requests - a->requests, ow = b->oneway - a->oneway;
    uint64_t owb = b->oneway_bytes - a->oneway_bytes;
    int ok = b->bad == a->bad;
    if (r->kind == K_ONEWAY)
        ok = ok && ow == msgs && owb == msgs * r->size && req == n_conns + 1;
    else
        ok = ok && req == msgs + 1 && ow == 0;
    if (!ok)
        fprintf(stderr,
                "px-perf: %s %zu: the server's counts disagree (requests %llu, one-way %llu "
                "(%llu bytes), bad %llu; the client completed %llu). Is another client using "
                "this server?\n",
                kind_name[r->kind], r->size, (unsigned long long)req, (unsigned long long)ow,
                (unsigned long long)owb, (unsigned long long)(b->bad - a->bad),
                (unsigned long long)msgs);
    return ok ? 0 : 1;
}

static struct phase make_phase(const struct perf_opts *o, const struct row_spec *r, int warm)
{
    struct phase ph = {.kind = r->kind, .size = r->size, .window = r->window, .record = !warm};
    uint64_t per = o->threads;
    if (o->iters) {
        uint64_t it = warm ? o->warmup_iters : o->iters;
        ph.target = it / per ? it / per : 1;
    } else {
        ph.duration_ns = (uint64_t)((warm ? o->warmup_s : o->duration) * 1e9);
    }
    return ph;
}

static int warm_wanted(const struct perf_opts *o)
{
    return o->iters ? o->warmup_iters > 0 : o->warmup_s > 0;
}

volatile sig_atomic_t perf_interrupted;
static struct worker *sig_workers; /* whose contexts a signal stops */
static unsigned sig_n_workers;

/* px_ctx_stop is an atomic store and a libev async send, both safe here. */
static void on_interrupt(int sig)
{
    perf_interrupted = 1;
    for (unsigned i = 0; i < sig_n_workers; i++)
        if (sig_workers[i].ctx)
            px_ctx_stop(sig_workers[i].ctx);
}

static void catch_interrupts(struct worker *ws, unsigned n)
{
    sig_workers = ws;
    sig_n_workers = n;
    struct sigaction sa = {.sa_handler = on_interrupt};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* 0: the row is printed; 1: it failed; 2: interrupted (nothing printed). */
static int run_row(const struct perf_opts *o, struct worker *ws, const struct row_spec *r)
{
    char what[64];
    int progress = !o->quiet && (o->progress || isatty(2));
    snprintf(what, sizeof(what), "%s %zu B window %u", kind_name[r->kind], r->size, r->window);
    if (warm_wanted(o)) {
        struct phase warm = make_phase(o, r, 1);
        run_phase(ws, o->threads, &warm, what, progress);
        if (perf_interrupted)
            return 2;
        if (check_phase(ws, o->threads, what))
            return 1;
    }
    struct perf_stats s0 = {0}, s1 = {0};
    int rc = server_stats(&ws[0], &s0);
    uint64_t cpu0 = cpu_us_self();
    struct phase ph = make_phase(o, r, 0);
    if (rc == 0) {
        run_phase(ws, o->threads, &ph, what, progress);
        if (perf_interrupted)
            return 2;
        if (check_phase(ws, o->threads, what))
            return 1;
    }
    uint64_t cpu1 = cpu_us_self();
    if (rc == 0)
        rc = server_stats(&ws[0], &s1);
    if (perf_interrupted)
        return 2;
    if (rc != 0) {
        fprintf(stderr, "px-perf: STATS from the server failed: %s\n", px_strerror(rc));
        return 1;
    }

    struct perf_hist all;
    perf_hist_reset(&all);
    uint64_t msgs = 0, ns = 0;
    for (unsigned i = 0; i < o->threads; i++) {
        perf_hist_merge(&all, &ws[i].hist);
        msgs += ws[i].completed;
        if (ws[i].t_end - ws[i].t_start > ns)
            ns = ws[i].t_end - ws[i].t_start;
    }
    if (check_server(&s0, &s1, r, msgs, o->conns))
        return 1;
    struct perf_row row = {
        .test = kind_name[r->kind],
        .size = r->size,
        .window = r->window,
        .msgs = msgs,
        .seconds = ns / 1e9,
        .has_lat = r->kind != K_ONEWAY,
        .p50_us = perf_hist_quantile(&all, 0.5) / 1e3,
        .p99_us = perf_hist_quantile(&all, 0.99) / 1e3,
        .p999_us = perf_hist_quantile(&all, 0.999) / 1e3,
        .max_us = all.max_ns / 1e3,
        .mean_us = all.count ? all.sum_ns / 1e3 / all.count : 0,
        .cpu_client_us = msgs ? (double)(cpu1 - cpu0) / msgs : 0,
        .cpu_server_us = msgs ? (double)(s1.cpu_us - s0.cpu_us) / msgs : 0,
        .hist = &all,
    };
    perf_out_row(o, &row);
    return 0;
}

int perf_client_main(const struct perf_opts *o)
{
    struct row_spec rows[4 * PERF_MAX_SIZES];
    unsigned n_rows = build_rows(o, rows);
    size_t max_size = 0;
    unsigned max_win = 1;
    for (unsigned i = 0; i < n_rows; i++) {
        if (rows[i].size > max_size)
            max_size = rows[i].size;
        if (rows[i].window > max_win)
            max_win = rows[i].window;
    }
    if (o->cpu >= 0 && perf_pin_cpu(o->cpu) != 0)
        return 1;

    struct worker *ws = calloc(o->threads, sizeof(*ws));
    if (!ws)
        return 1;
    int rc = 0, status = 0;
    all_workers = ws;
    n_all_workers = o->threads;
    for (unsigned i = 0; i < o->threads && rc == 0; i++) {
        ws[i].id = i;
        /* Connections are dealt to the threads like cards. */
        ws[i].n_conns = o->conns / o->threads + (i < o->conns % o->threads);
        rc = worker_setup(&ws[i], o, max_size, max_win);
    }
    if (rc != 0) {
        fprintf(stderr, "px-perf: cannot reach %s: %s\n", o->uri, px_strerror(rc));
        status = 1;
    } else {
        struct perf_run_info info = {.uri = o->uri,
                                     .conns = o->conns,
                                     .threads = o->threads,
                                     .one_session = o->one_session,
                                     .poll_us = o->poll_us,
                                     .cpu = o->cpu,
                                     .mem_alloc = o->mem_alloc,
                                     .server_cpu = o->server_cpu,
                                     .pinning = o->pinning};
        perf_out_begin(o, &info);
        catch_interrupts(ws, o->threads);
        unsigned done = 0;
        for (; done < n_rows && status == 0 && !perf_interrupted; done++)
            status = run_row(o, ws, &rows[done]);
        if (status == 2 || (status == 0 && perf_interrupted)) {
            done -= status == 2;
            perf_out_end(o, 1);
            fprintf(stderr, "px-perf: interrupted: %u of %u rows done\n", done, n_rows);
            status = 130;
        } else if (status == 0) {
            perf_out_end(o, 0);
        }
    }
    if (shared_session)
        shared_session_close(ws, o->threads);
    for (unsigned i = 0; i < o->threads; i++)
        worker_teardown(&ws[i]);
    free(ws);
    return status;
}
