/* px-scale — many idle connections on one server, and what each costs.
 *
 *   px-scale local URI [--conns N] [--share] [--json]
 *
 * Forks a server (an echo server on one context), opens N sessions with one
 * connection each from one client context (--share: with
 * px_ctx_opts.share_links, so that they all travel on one transport link),
 * proves every connection works
 * with one 64-byte round trip, lets them sit idle, and reports the resident
 * memory (VmRSS from /proc) each side gained per connection. Then closes
 * everything and checks the server saw every session end. Exit 0 when all
 * N connections worked and closed; 1 otherwise; 2 for bad usage.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <plexus/plexus.h>

#define URI_LEN    1024
#define LINK_CONNS 1024 /* connections a shared link takes (session/internal.h) */

/* ---- resident memory ---------------------------------------------------- */

static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kib = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* Each connection needs a descriptor on each side (a socket; shm keeps its
 * rendezvous socket and two eventfds): ask for up to 4 per connection
 * within the hard limit, and fail only below one per connection. */
static int raise_fd_limit(unsigned conns)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rlim_t want = conns * 4ull + 256, need = conns + 256ull;
    if (want > rl.rlim_max)
        want = rl.rlim_max;
    if (rl.rlim_cur < want) {
        rl.rlim_cur = want;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < need) {
        fprintf(stderr, "px-scale: %u connections need %llu open files; the limit is %llu\n", conns,
                (unsigned long long)need, (unsigned long long)rl.rlim_cur);
        return -1;
    }
    return 0;
}

/* ---- the server (child) ------------------------------------------------- */

static volatile sig_atomic_t server_stop;
static unsigned server_sessions; /* alive now */

static void on_term(int sig)
{
    server_stop = 1;
}

static void server_on_msg(px_conn *c, px_msg *m, int more, void *user)
{
    m->out = (px_msg_vec){.header = m->in.header,
                          .header_len = m->in.header_len,
                          .iov = m->in.iov,
                          .iov_count = m->in.iov_count};
    if (px_send_response(m) != 0)
        px_release_msg(m);
}

static void server_on_event(px_session *s, const px_event *ev, void *user)
{
    if (ev->type == PX_EV_SESSION_TEARDOWN)
        server_sessions--;
}

static void server_on_new(px_session *s, const px_new_session *req, void *user)
{
    server_sessions++;
    px_session_accept(s, NULL, 0, NULL, 0);
}

static void check_stop(px_timer *t, void *ctx)
{
    if (server_stop)
        px_ctx_stop(ctx);
}

static int server_main(const char *uri, int out_fd, unsigned conns)
{
    static const px_session_ops ops = {.on_new_session = server_on_new,
                                       .on_msg = server_on_msg,
                                       .on_session_event = server_on_event};
    px_ctx_opts o = {.max_sessions = conns + 16};
    px_ctx *ctx;
    px_server *srv;
    px_timer *t;
    char bound[URI_LEN];
    signal(SIGTERM, on_term);
    if (raise_fd_limit(conns) != 0 || px_ctx_create(&o, &ctx) != 0)
        return 1;
    int rc = px_server_bind(ctx, uri, &ops, NULL, &srv);
    if (rc != 0) {
        fprintf(stderr, "px-scale server: %s: %s\n", uri, px_strerror(rc));
        return 1;
    }
    px_server_uri(srv, bound, sizeof(bound));
    dprintf(out_fd, "%s\n", bound);
    close(out_fd);
    px_timer_create(ctx, check_stop, ctx, &t);
    px_timer_start(t, 10000, 10000);
    px_ctx_run(ctx);
    /* Report how many sessions were still alive: the client checks 0. */
    fprintf(stderr, "px-scale server: %u sessions alive at exit\n", server_sessions);
    px_timer_destroy(t);
    px_server_unbind(srv);
    int destroyed = px_ctx_destroy(ctx) == 0; /* refused if anything still lives */
    return server_sessions == 0 && destroyed ? 0 : 3;
}

/* ---- the client --------------------------------------------------------- */

/* One connection's state; an array of them lives for the whole run. */
struct link {
    px_session *s;
    px_conn *c;
    px_msg msg;
    px_iov iov;
    char payload[64];
    int up, answered, failed, gone;
    struct client *cl;
};

struct client {
    px_ctx *ctx;
    struct link *links;
    unsigned n, up, answered, failed, gone;
};

static void client_on_event(px_session *s, const px_event *ev, void *user)
{
    struct link *l = user;
    struct client *cl = l->cl;
    if (ev->type == PX_EV_CONN_ESTABLISHED && !l->up) {
        l->up = 1;
        cl->up++;
    } else if (ev->type == PX_EV_CONN_DISCONNECTED && !l->failed) {
        l->failed = 1;
        cl->failed++;
    } else if (ev->type == PX_EV_SESSION_TEARDOWN) {
        l->gone = 1;
        cl->gone++;
    }
}

static void client_on_msg(px_conn *c, px_msg *m, int more, void *user)
{
    struct link *l = user;
    if (m->in.data_len == sizeof(l->payload)) {
        l->answered = 1;
        l->cl->answered++;
    }
    px_release_response(m);
}

static void client_on_error(px_conn *c, px_msg *m, px_msg_dir dir, int reason, void *user)
{
    struct link *l = user;
    if (!l->failed) {
        l->failed = 1;
        l->cl->failed++;
    }
}

/* Run the loop until *counter reaches target, or (when give_up_on_failure)
 * a connection failed, or the time is up. */
static int wait_for(struct client *cl, const unsigned *counter, unsigned target, int timeout_ms,
                    int give_up_on_failure)
{
    for (int waited = 0; *counter < target && waited < timeout_ms; waited += 50) {
        if (give_up_on_failure && cl->failed)
            break;
        px_ctx_run_timeout(cl->ctx, 50);
    }
    return *counter >= target ? 0 : -1;
}

static pid_t start_server(const char *self, const char *uri, unsigned conns, char *bound,
                          size_t len)
{
    int p[2];
    if (pipe(p) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(p[0]);
        exit(server_main(uri, p[1], conns));
    }
    close(p[1]);
    FILE *f = fdopen(p[0], "r");
    if (!f || !fgets(bound, (int)len, f)) {
        fprintf(stderr, "px-scale: the server did not start on %s\n", uri);
        return -1;
    }
    bound[strcspn(bound, "\n")] = 0;
    fclose(f);
    (void)self;
    return pid;
}

static void report(int json, const char *uri, unsigned n, uint64_t links, long srv0, long srv1,
                   long cli0, long cli1, double setup_s)
{
    double srv_per = (srv1 - srv0) * 1024.0 / n, cli_per = (cli1 - cli0) * 1024.0 / n;
    if (json) {
        printf("{\"tool\": \"px-scale\", \"uri\": \"%s\", \"conns\": %u, \"links\": %llu, "
               "\"setup_s\": %.3f, "
               "\"server_rss_kib\": [%ld, %ld], \"client_rss_kib\": [%ld, %ld], "
               "\"server_bytes_per_conn\": %.0f, \"client_bytes_per_conn\": %.0f}\n",
               uri, n, (unsigned long long)links, setup_s, srv0, srv1, cli0, cli1, srv_per,
               cli_per);
        return;
    }
    printf("%u idle connections on %llu transport links over %s, all answered one round trip (set "
           "up in %.2f s)\n",
           n, (unsigned long long)links, uri, setup_s);
    printf("  server RSS %ld -> %ld KiB: %.0f bytes per idle connection\n", srv0, srv1, srv_per);
    printf("  client RSS %ld -> %ld KiB: %.0f bytes per idle connection\n", cli0, cli1, cli_per);
}

static int usage(void)
{
    fprintf(stderr, "usage: px-scale local URI [--conns N] [--share] [--json]\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 3 || strcmp(argv[1], "local") != 0)
        return usage();
    const char *uri = argv[2];
    unsigned n = 10000;
    int json = 0, share = 0;
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--conns") == 0 && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 1000000)
                return usage();
            n = (unsigned)v;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--share") == 0) {
            share = 1;
        } else {
            return usage();
        }
    }
    signal(SIGPIPE, SIG_IGN);
    if (raise_fd_limit(n) != 0)
        return 1;
    char bound[URI_LEN];
    pid_t srv = start_server(argv[0], uri, n, bound, sizeof(bound));
    if (srv < 0)
        return 1;

    static const px_session_ops ops = {.on_session_event = client_on_event,
                                       .on_msg = client_on_msg,
                                       .on_msg_error = client_on_error};
    struct client cl = {.n = n};
    cl.links = calloc(n, sizeof(*cl.links));
    px_ctx_opts o = {.queue_depth = 4, .share_links = (uint32_t)share};
    if (!cl.links || px_ctx_create(&o, &cl.ctx) != 0)
        return 1;
    long srv0 = rss_kib(srv), cli0 = rss_kib(getpid());
    uint64_t t0 = px_now_ns();
    int rc = 0;
    for (unsigned i = 0; i < n && rc == 0; i++) {
        struct link *l = &cl.links[i];
        l->cl = &cl;
        px_session_params p = {.uri = bound, .ops = &ops, .user = l};
        rc = px_session_create(cl.ctx, &p, &l->s);
        if (rc == 0)
            rc = px_connect(l->s, cl.ctx, &l->c);
        if (i % 256 == 255) /* let the server keep up with its backlog */
            px_ctx_run_timeout(cl.ctx, 1);
    }
    if (rc != 0) {
        fprintf(stderr, "px-scale: opening connections: %s\n", px_strerror(rc));
        return 1;
    }
    int ok = wait_for(&cl, &cl.up, n, 120000, 1) == 0;
    for (unsigned i = 0; ok && i < n; i++) {
        struct link *l = &cl.links[i];
        memset(l->payload, 'x', sizeof(l->payload));
        l->iov = (px_iov){.base = l->payload, .len = sizeof(l->payload)};
        l->msg = (px_msg){.out = {.iov = &l->iov, .iov_count = 1}, .user_context = l};
        ok = px_send_request(l->c, &l->msg) == 0;
    }
    ok = ok && wait_for(&cl, &cl.answered, n, 120000, 1) == 0;
    double setup_s = (px_now_ns() - t0) / 1e9;
    px_ctx_run_timeout(cl.ctx, 500); /* idle: whatever is lazily freed, is */
    long srv1 = rss_kib(srv), cli1 = rss_kib(getpid());
    px_stats_sum sum;
    px_ctx_get_conn_stats(cl.ctx, &sum);
    uint64_t want_links = share ? (n + LINK_CONNS - 1) / LINK_CONNS : n;
    if (ok && sum.links_open != want_links) {
        fprintf(stderr, "px-scale: %u connections%s on %llu transport links, want %llu\n", n,
                share ? " sharing links" : "", (unsigned long long)sum.links_open,
                (unsigned long long)want_links);
        ok = 0;
    }
    if (!ok) {
        fprintf(stderr, "px-scale: %u of %u connections up, %u answered, %u failed\n", cl.up, n,
                cl.answered, cl.failed);
    } else {
        report(json, uri, n, sum.links_open, srv0, srv1, cli0, cli1, setup_s);
    }

    for (unsigned i = 0; i < n; i++)
        if (cl.links[i].s)
            px_session_close(cl.links[i].s);
    wait_for(&cl, &cl.gone, n, 60000, 0);
    int status = 0;
    kill(srv, SIGTERM);
    waitpid(srv, &status, 0);
    int destroyed = px_ctx_destroy(cl.ctx) == 0;
    free(cl.links);
    int clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (ok && (!clean || !destroyed))
        fprintf(stderr, "px-scale: teardown not clean (server exit %d, client destroy %s)\n",
                WIFEXITED(status) ? WEXITSTATUS(status) : -1, destroyed ? "ok" : "refused");
    return ok && clean && destroyed ? 0 : 1;
}
