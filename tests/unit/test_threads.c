/* Many threads, one session: a server whose sessions spread over portal
 * servers on other contexts and threads, and a client session with
 * connections on two contexts. Every callback checks that it runs on the
 * thread of the context it belongs to; the counts are atomics, since
 * callbacks of one session run on several threads. Run for tcp://, unix://
 * and shm://; under ThreadSanitizer in CI. */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "plexus/plexus.h"
#include "px_check.h"

#define N_WORKERS 3 /* the front server and two portals */
#define N_CONNS   5
#define N_REQS    20

static const char *const schemes[] = {"tcp", "unix", "shm"};

static _Thread_local px_ctx *running; /* the context this thread drives */
static atomic_int anomalies;

static void anomaly(const char *what)
{
    fprintf(stderr, "test_threads: %s\n", what);
    atomic_fetch_add(&anomalies, 1);
}

static void bind_uri(int scheme, int i, char *out, size_t len)
{
    if (scheme == 0)
        snprintf(out, len, "%s://127.0.0.1:0", schemes[scheme]);
    else if (scheme == 1)
        snprintf(out, len, "%s:///tmp/px-threads-%d-%d.sock", schemes[scheme], (int)getpid(), i);
    else
        snprintf(out, len, "%s://px-threads-%d-%d", schemes[scheme], (int)getpid(), i);
}

/* ---- a context driven by a thread of its own ----------------------------- */

struct worker {
    px_ctx *ctx;
    pthread_t thread;
    atomic_int quit;
    px_server *srv;
    char uri[256];
    atomic_ullong served;   /* requests its thread answered */
    atomic_int stats_ready; /* stats below, read on its thread */
    px_stats_sum stats;
    void (*each_pass)(struct worker *w); /* or NULL */
    void *arg;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    running = w->ctx;
    while (!atomic_load(&w->quit)) {
        px_ctx_run_timeout(w->ctx, 5);
        if (w->each_pass)
            w->each_pass(w);
    }
    return NULL;
}

static void worker_start(struct worker *w)
{
    ck_assert_int_eq(pthread_create(&w->thread, NULL, worker_main, w), 0);
}

static void worker_join(struct worker *w)
{
    atomic_store(&w->quit, 1);
    px_ctx_stop(w->ctx);
    ck_assert_int_eq(pthread_join(w->thread, NULL), 0);
}

static void read_stats_fn(void *arg)
{
    struct worker *w = arg;
    if (running != w->ctx)
        anomaly("a post ran on another context's thread");
    px_server_get_stats(w->srv, &w->stats);
    atomic_store(&w->stats_ready, 1);
}

/* A server's counters may be read on its own thread only: ask it. */
static void worker_stats(struct worker *w, px_ctx *here)
{
    atomic_store(&w->stats_ready, 0);
    ck_assert_int_eq(px_ctx_post(w->ctx, read_stats_fn, w), 0);
    while (!atomic_load(&w->stats_ready))
        px_ctx_run_timeout(here, 1);
}

/* ---- the server: echo, counting per thread -------------------------------- */

static struct worker workers[N_WORKERS];
static const char *portal_uris[N_WORKERS - 1];
static atomic_int new_sessions, server_conns_up, server_sessions_torn;

static void check_thread(px_conn *c, const char *cb)
{
    if (px_conn_ctx(c) != running) {
        char why[128];
        snprintf(why, sizeof why, "%s ran off its connection's thread", cb);
        anomaly(why);
    }
}

static void server_on_msg(px_conn *c, px_msg *m, int more, void *user)
{
    check_thread(c, "server on_msg");
    for (int i = 0; i < N_WORKERS; i++)
        if (workers[i].ctx == running)
            atomic_fetch_add(&workers[i].served, 1);
    m->out.header = m->in.header;
    m->out.header_len = m->in.header_len;
    m->out.iov = m->in.iov;
    m->out.iov_count = m->in.iov_count;
    if (px_send_response(m) != 0)
        anomaly("px_send_response failed");
}

static void server_on_new_session(px_session *s, const px_new_session *req, void *user)
{
    atomic_fetch_add(&new_sessions, 1);
    int n = *(const int *)user;
    if (px_session_accept(s, portal_uris, (size_t)n, NULL, 0) != 0)
        anomaly("px_session_accept with portals failed");
}

static void server_on_event(px_session *s, const px_event *ev, void *user)
{
    if (ev->conn)
        check_thread(ev->conn, "server on_session_event");
    else if (running != workers[0].ctx)
        anomaly("a server session event ran off the session's thread");
    if (ev->type == PX_EV_CONN_ESTABLISHED)
        atomic_fetch_add(&server_conns_up, 1);
    if (ev->type == PX_EV_SESSION_TEARDOWN)
        atomic_fetch_add(&server_sessions_torn, 1);
}

static const px_session_ops server_ops = {.on_new_session = server_on_new_session,
                                          .on_session_event = server_on_event,
                                          .on_msg = server_on_msg};

/* Bind the front server and the portals, each on its own context. */
static void servers_up(int scheme, int *n_portals)
{
    memset(workers, 0, sizeof workers);
    atomic_store(&new_sessions, 0);
    atomic_store(&server_conns_up, 0);
    atomic_store(&server_sessions_torn, 0);
    for (int i = 0; i < N_WORKERS; i++) {
        struct worker *w = &workers[i];
        char uri[256];
        bind_uri(scheme, i, uri, sizeof uri);
        ck_assert_int_eq(px_ctx_create(NULL, &w->ctx), 0);
        int rc = px_server_bind(w->ctx, uri, &server_ops, n_portals, &w->srv);
        ck_assert_msg(rc == 0, "bind %s: %s", uri, px_strerror(rc));
        ck_assert_int_gt(px_server_uri(w->srv, w->uri, sizeof w->uri), 0);
        if (i > 0)
            portal_uris[i - 1] = w->uri;
    }
    for (int i = 0; i < N_WORKERS; i++)
        worker_start(&workers[i]);
}

static void servers_down(void)
{
    for (int i = 0; i < N_WORKERS; i++)
        worker_join(&workers[i]);
    for (int i = 0; i < N_WORKERS; i++) {
        ck_assert_int_eq(px_server_unbind(workers[i].srv), 0);
        int rc = px_ctx_destroy(workers[i].ctx);
        ck_assert_msg(rc == 0, "px_ctx_destroy(server %d): %s", i, px_strerror(rc));
    }
}

/* One server without portals on workers[0], its thread running. */
static struct worker *one_server_up(int scheme)
{
    static int no_portals = 0;
    memset(workers, 0, sizeof workers);
    atomic_store(&new_sessions, 0);
    atomic_store(&server_sessions_torn, 0);
    struct worker *sv = &workers[0];
    char uri[256];
    bind_uri(scheme, 0, uri, sizeof uri);
    ck_assert_int_eq(px_ctx_create(NULL, &sv->ctx), 0);
    ck_assert_int_eq(px_server_bind(sv->ctx, uri, &server_ops, &no_portals, &sv->srv), 0);
    ck_assert_int_gt(px_server_uri(sv->srv, sv->uri, sizeof sv->uri), 0);
    worker_start(sv);
    return sv;
}

/* ---- the client ------------------------------------------------------------ */

struct client {
    atomic_int conns_up, conns_torn, session_up, session_torn, rejected;
    atomic_ullong responses;
    px_ctx *home; /* the session's own context */
};

static void client_on_msg(px_conn *c, px_msg *m, int more, void *user)
{
    struct client *cl = user;
    check_thread(c, "client on_msg");
    if (px_release_response(m) != 0)
        anomaly("px_release_response failed");
    atomic_fetch_add(&cl->responses, 1);
}

static void client_on_event(px_session *s, const px_event *ev, void *user)
{
    struct client *cl = user;
    if (ev->conn)
        check_thread(ev->conn, "client on_session_event");
    else if (running != cl->home)
        anomaly("a client session event ran off the session's thread");
    atomic_int *const count[PX_EV_SESSION_TEARDOWN + 1] = {
        [PX_EV_CONN_ESTABLISHED] = &cl->conns_up,      [PX_EV_CONN_TEARDOWN] = &cl->conns_torn,
        [PX_EV_SESSION_ESTABLISHED] = &cl->session_up, [PX_EV_SESSION_REJECTED] = &cl->rejected,
        [PX_EV_SESSION_TEARDOWN] = &cl->session_torn,
    };
    if ((unsigned)ev->type <= PX_EV_SESSION_TEARDOWN && count[ev->type])
        atomic_fetch_add(count[ev->type], 1);
}

static const px_session_ops client_ops = {.on_msg = client_on_msg,
                                          .on_session_event = client_on_event};

/* Wait up to 20 s for `cond`, doing `step` meanwhile: running our context,
 * or sleeping while other threads make it true. */
#define UNTIL(cond, step)                                                                          \
    do {                                                                                           \
        uint64_t dl_ = px_now_ns() + 20000000000ull;                                               \
        while (!(cond)) {                                                                          \
            ck_assert_msg(px_now_ns() < dl_, "timed out waiting for: %s", #cond);                  \
            step;                                                                                  \
        }                                                                                          \
    } while (0)
#define RUN_UNTIL(ctx, cond) UNTIL(cond, px_ctx_run_timeout((ctx), 1))
#define WAIT_UNTIL(cond)     UNTIL(cond, usleep(1000))

static px_msg req_msgs[N_CONNS][N_REQS];
static px_iov req_iov[N_CONNS][N_REQS];
static uint8_t req_data[64];

static void send_requests(px_conn *c, int k)
{
    for (int j = 0; j < N_REQS; j++) {
        memset(&req_msgs[k][j], 0, sizeof req_msgs[k][j]);
        req_iov[k][j] = (px_iov){.base = req_data, .len = sizeof req_data};
        req_msgs[k][j].out.iov = &req_iov[k][j];
        req_msgs[k][j].out.iov_count = 1;
        if (px_send_request(c, &req_msgs[k][j]) != 0)
            anomaly("px_send_request failed");
    }
}

/* A client context for this thread and a session on it to `uri`. */
static px_session *client_up(struct client *cl, const char *uri)
{
    ck_assert_int_eq(px_ctx_create(NULL, &cl->home), 0);
    running = cl->home;
    px_session_params p = {.uri = uri, .ops = &client_ops, .user = cl};
    px_session *s;
    ck_assert_int_eq(px_session_create(cl->home, &p, &s), 0);
    return s;
}

/* ---- portals ---------------------------------------------------------------- */

/* Five connections made at once, before the session is up: the first makes
 * the session on the front server; the others wait for it, then go to the
 * portals in turn. One session on the server, its connections on three
 * threads, each answered there. */
static void portals_case(int scheme)
{
    static int n_portals = N_WORKERS - 1;
    servers_up(scheme, &n_portals);
    struct client cl = {0};
    px_session *s = client_up(&cl, workers[0].uri);
    px_conn *conns[N_CONNS];
    for (int k = 0; k < N_CONNS; k++)
        ck_assert_int_eq(px_connect(s, cl.home, &conns[k]), 0);
    RUN_UNTIL(cl.home, atomic_load(&cl.conns_up) == N_CONNS);
    ck_assert_int_eq(atomic_load(&cl.session_up), 1);
    for (int k = 0; k < N_CONNS; k++)
        send_requests(conns[k], k);
    RUN_UNTIL(cl.home, atomic_load(&cl.responses) == (uint64_t)N_CONNS * N_REQS);

    ck_assert_int_eq(atomic_load(&new_sessions), 1);
    /* Connection 0 on the front server; 1..4 alternate over the portals. */
    const uint64_t want_conns[N_WORKERS] = {1, 2, 2};
    for (int i = 0; i < N_WORKERS; i++) {
        uint64_t served = atomic_load(&workers[i].served);
        ck_assert_msg(served == want_conns[i] * N_REQS, "server %d answered %llu, want %llu", i,
                      (unsigned long long)served, (unsigned long long)(want_conns[i] * N_REQS));
        worker_stats(&workers[i], cl.home);
        ck_assert_uint_eq(workers[i].stats.conns_open, want_conns[i]);
        ck_assert_uint_eq(workers[i].stats.conn.requests_recv, want_conns[i] * N_REQS);
    }

    ck_assert_int_eq(px_session_close(s), 0);
    RUN_UNTIL(cl.home, atomic_load(&cl.session_torn) == 1);
    ck_assert_int_eq(atomic_load(&cl.conns_torn), N_CONNS);
    /* The server's session ends once all its connections, on all three
     * threads, are gone. */
    RUN_UNTIL(cl.home, atomic_load(&server_sessions_torn) == 1);
    ck_assert_int_eq(px_ctx_destroy(cl.home), 0);
    servers_down();
    ck_assert_int_eq(atomic_load(&anomalies), 0);
}

START_TEST(portals_spread)
{
    portals_case(_i);
}
END_TEST

/* A portal server going away takes the connections that joined through it
 * with it; the session goes on with the others. */
START_TEST(portal_unbound)
{
    static int n_portals = 1;
    servers_up(0, &n_portals);
    struct client cl = {0};
    px_session *s = client_up(&cl, workers[0].uri);
    px_conn *c0, *c1;
    ck_assert_int_eq(px_connect(s, cl.home, &c0), 0);
    RUN_UNTIL(cl.home, atomic_load(&cl.conns_up) == 1);
    ck_assert_int_eq(px_connect(s, cl.home, &c1), 0);
    RUN_UNTIL(cl.home, atomic_load(&cl.conns_up) == 2);
    /* Unbind the portal on its own thread: stop it, unbind, go on. */
    worker_join(&workers[1]);
    ck_assert_int_eq(px_server_unbind(workers[1].srv), 0);
    atomic_store(&workers[1].quit, 0);
    worker_start(&workers[1]);
    RUN_UNTIL(cl.home, atomic_load(&cl.conns_torn) == 1);
    send_requests(c0, 0);
    RUN_UNTIL(cl.home, atomic_load(&cl.responses) == N_REQS);
    ck_assert_int_eq(px_session_close(s), 0);
    RUN_UNTIL(cl.home, atomic_load(&cl.session_torn) == 1);
    RUN_UNTIL(cl.home, atomic_load(&server_sessions_torn) == 1);
    ck_assert_int_eq(px_ctx_destroy(cl.home), 0);
    for (int i = 0; i < N_WORKERS; i++)
        worker_join(&workers[i]);
    ck_assert_int_eq(px_server_unbind(workers[0].srv), 0);
    ck_assert_int_eq(px_server_unbind(workers[2].srv), 0);
    for (int i = 0; i < N_WORKERS; i++)
        ck_assert_int_eq(px_ctx_destroy(workers[i].ctx), 0);
    ck_assert_int_eq(atomic_load(&anomalies), 0);
}
END_TEST

/* ---- one client session, connections on two contexts ------------------------ */

struct second {
    px_session *s;
    atomic_int go;   /* the session exists: connect */
    atomic_int made; /* px_connect returned */
    atomic_int sent;
    px_conn *c;
    struct client *cl;
};

static void second_pass(struct worker *w)
{
    struct second *sc = w->arg;
    if (atomic_load(&sc->go) && !atomic_load(&sc->made)) {
        if (px_connect(sc->s, w->ctx, &sc->c) != 0)
            anomaly("px_connect on the second context failed");
        atomic_store(&sc->made, 1);
    }
    /* Send from this thread once its connection is up (both are). */
    if (atomic_load(&sc->made) && !atomic_load(&sc->sent) && atomic_load(&sc->cl->conns_up) == 2) {
        send_requests(sc->c, 1);
        atomic_store(&sc->sent, 1);
    }
}

/* `early`: the second context connects before the session is up (it waits
 * for the first connection's handshake) rather than after. */
static void cross_context_case(int scheme, int early)
{
    struct worker *sv = one_server_up(scheme), *two = &workers[1];

    struct client cl = {0};
    struct second sc = {.cl = &cl};
    sc.s = client_up(&cl, sv->uri);
    ck_assert_int_eq(px_ctx_create(NULL, &two->ctx), 0);
    two->each_pass = second_pass;
    two->arg = &sc;
    worker_start(two);

    px_conn *c0;
    ck_assert_int_eq(px_connect(sc.s, cl.home, &c0), 0);
    if (early) {
        atomic_store(&sc.go, 1);
        while (!atomic_load(&sc.made))
            usleep(100); /* our context does not run: the second one must wait */
    } else {
        RUN_UNTIL(cl.home, atomic_load(&cl.session_up) == 1);
        atomic_store(&sc.go, 1);
    }
    RUN_UNTIL(cl.home, atomic_load(&cl.conns_up) == 2);
    send_requests(c0, 0);
    RUN_UNTIL(cl.home, atomic_load(&cl.responses) == 2 * N_REQS);
    ck_assert_int_eq(atomic_load(&new_sessions), 1); /* one session, two connections */
    worker_stats(sv, cl.home);
    ck_assert_uint_eq(sv->stats.conns_open, 2);

    /* Closed from its own thread; the other context's connection closes
     * on its thread. */
    ck_assert_int_eq(px_session_close(sc.s), 0);
    RUN_UNTIL(cl.home, atomic_load(&cl.session_torn) == 1);
    ck_assert_int_eq(atomic_load(&cl.conns_torn), 2);
    worker_join(two);
    ck_assert_int_eq(px_ctx_destroy(two->ctx), 0);
    ck_assert_int_eq(px_ctx_destroy(cl.home), 0);
    WAIT_UNTIL(atomic_load(&server_sessions_torn) == 1); /* on the server's thread */
    worker_join(sv);
    ck_assert_int_eq(px_server_unbind(sv->srv), 0);
    ck_assert_int_eq(px_ctx_destroy(sv->ctx), 0);
    ck_assert_int_eq(atomic_load(&anomalies), 0);
}

START_TEST(cross_context_after_up)
{
    cross_context_case(_i, 0);
}
END_TEST

START_TEST(cross_context_before_up)
{
    cross_context_case(_i, 1);
}
END_TEST

/* ---- two connections before the answer: still one session -------------------- */

START_TEST(two_connects_one_session)
{
    struct worker *sv = one_server_up(0);
    struct client cl = {0};
    px_session *s = client_up(&cl, sv->uri);
    px_conn *c[3];
    for (int k = 0; k < 3; k++)
        ck_assert_int_eq(px_connect(s, cl.home, &c[k]), 0);
    RUN_UNTIL(cl.home, atomic_load(&cl.conns_up) == 3);
    ck_assert_int_eq(atomic_load(&new_sessions), 1);
    ck_assert_int_eq(atomic_load(&cl.session_up), 1);
    ck_assert_int_eq(px_session_close(s), 0);
    RUN_UNTIL(cl.home, atomic_load(&cl.session_torn) == 1);
    ck_assert_int_eq(px_ctx_destroy(cl.home), 0);
    worker_join(sv);
    ck_assert_int_eq(px_server_unbind(sv->srv), 0);
    for (int i = 0; i < 200; i++) /* let the server's ends go */
        px_ctx_run_timeout(sv->ctx, 1);
    ck_assert_int_eq(px_ctx_destroy(sv->ctx), 0);
}
END_TEST

/* ---- bad portals ------------------------------------------------------------ */

static atomic_int accept_rc;

static void bad_portal_new_session(px_session *s, const px_new_session *req, void *user)
{
    const char *const *portals = user;
    atomic_store(&accept_rc, px_session_accept(s, portals, 1, NULL, 0));
    if (atomic_load(&accept_rc) != 0)
        px_session_reject(s, -PX_EPERM, NULL, 0);
}

START_TEST(portal_uris_checked)
{
    static const char *const cases[] = {"bogus", "tcp://", "nosuch://x", NULL};
    static const int want[] = {-PX_EBADURI, -PX_EBADHOST, -PX_EBADSCHEME};
    for (int k = 0; cases[k]; k++) {
        px_ctx *ctx;
        ck_assert_int_eq(px_ctx_create(NULL, &ctx), 0);
        running = ctx;
        workers[0].ctx = ctx; /* where server session events are expected */
        static const char *portal[1];
        portal[0] = cases[k];
        px_session_ops ops = server_ops;
        ops.on_new_session = bad_portal_new_session;
        px_server *srv;
        ck_assert_int_eq(px_server_bind(ctx, "tcp://127.0.0.1:0", &ops, portal, &srv), 0);
        char uri[256];
        ck_assert_int_gt(px_server_uri(srv, uri, sizeof uri), 0);
        struct client cl = {.home = ctx};
        px_session_params p = {.uri = uri, .ops = &client_ops, .user = &cl};
        px_session *s;
        px_conn *c;
        ck_assert_int_eq(px_session_create(ctx, &p, &s), 0);
        ck_assert_int_eq(px_connect(s, ctx, &c), 0);
        RUN_UNTIL(ctx, atomic_load(&cl.rejected) == 1 && atomic_load(&cl.conns_torn) == 1);
        ck_assert_int_eq(px_session_close(s), 0); /* a rejected session is still ours to close */
        RUN_UNTIL(ctx, atomic_load(&cl.session_torn) == 1);
        ck_assert_msg(atomic_load(&accept_rc) == want[k], "portal '%s': %s, want %s", cases[k],
                      px_strerror(atomic_load(&accept_rc)), px_strerror(want[k]));
        ck_assert_int_eq(px_server_unbind(srv), 0);
        for (int i = 0; i < 50; i++)
            px_ctx_run_timeout(ctx, 1);
        ck_assert_int_eq(px_ctx_destroy(ctx), 0);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("threads");
    TCase *tc = tcase_create("threads");
    tcase_set_timeout(tc, 120);
    int n = (int)(sizeof schemes / sizeof schemes[0]);
    tcase_add_loop_test(tc, portals_spread, 0, n);
    tcase_add_loop_test(tc, cross_context_after_up, 0, n);
    tcase_add_loop_test(tc, cross_context_before_up, 0, n);
    tcase_add_test(tc, portal_unbound);
    tcase_add_test(tc, two_connects_one_session);
    tcase_add_test(tc, portal_uris_checked);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
