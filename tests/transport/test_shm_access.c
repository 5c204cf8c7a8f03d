/* shm:// as other local users meet it: a client running as another uid
 * (allowed, or not), and a listener flooded while out of descriptors.
 * Public API only; each case forks the peer it needs. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <plexus/plexus.h>

#define NOBODY 65534

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- a tiny echo server ------------------------------------------------------ */

static void srv_on_msg(px_conn *c, px_msg *m, int more, void *user)
{
    m->out = (px_msg_vec){.header = m->in.header,
                          .header_len = m->in.header_len,
                          .iov = m->in.iov,
                          .iov_count = m->in.iov_count};
    if (px_send_response(m) != 0)
        px_release_msg(m);
}

static const px_session_ops srv_ops = {.on_msg = srv_on_msg};

/* ---- the client half, run in a child as another user ------------------------------- */

struct cli {
    px_ctx *ctx;
    int up, down, reason, done, ok;
    uint8_t *expect;
    size_t len;
};

static void cli_event(px_session *s, const px_event *ev, void *user)
{
    struct cli *c = user;
    if (ev->type == PX_EV_CONN_ESTABLISHED)
        c->up = 1;
    if (ev->type == PX_EV_CONN_DISCONNECTED) {
        c->down = 1;
        c->reason = ev->reason;
    }
}

static void cli_msg(px_conn *conn, px_msg *m, int more, void *user)
{
    struct cli *c = user;
    size_t off = 0;
    int same = m->in.data_len == c->len;
    for (uint32_t i = 0; same && i < m->in.iov_count; i++) {
        same = memcmp(m->in.iov[i].base, c->expect + off, m->in.iov[i].len) == 0;
        off += m->in.iov[i].len;
    }
    c->ok += same && off == c->len;
    c->done++;
    px_release_response(m);
}

static void cli_error(px_conn *conn, px_msg *m, px_msg_dir dir, int reason, void *user)
{
    ((struct cli *)user)->done++;
}

static const px_session_ops cli_ops = {
    .on_session_event = cli_event, .on_msg = cli_msg, .on_msg_error = cli_error};

/* Exit status: 0 echoed 100 B and 1 MiB; 10 + n: refused (n = which
 * error: 1 ECONNREFUSED, 2 EACCES, 3 other); 20+: something else wrong. */
static int client_as(uid_t uid, const char *uri)
{
    if (setgroups(0, NULL) != 0 || setgid(uid) != 0 || setuid(uid) != 0)
        return 21;
    struct cli c = {0};
    px_session *s;
    px_conn *conn;
    if (px_ctx_create(NULL, &c.ctx) != 0)
        return 22;
    px_session_params p = {.uri = uri, .ops = &cli_ops, .user = &c};
    if (px_session_create(c.ctx, &p, &s) != 0 || px_connect(s, c.ctx, &conn) != 0)
        return 23;
    static const size_t sizes[] = {100, 1u << 20};
    for (int k = 0; k < 2; k++) {
        c.len = sizes[k];
        c.expect = malloc(c.len);
        for (size_t i = 0; i < c.len; i++)
            c.expect[i] = (uint8_t)(i * 7 + k);
        px_iov iov = {.base = c.expect, .len = c.len};
        px_msg m = {.out = {.iov = &iov, .iov_count = 1}};
        int done = c.done;
        if (px_send_request(conn, &m) != 0)
            return 24;
        double end = now_s() + 10;
        while (c.done == done && now_s() < end)
            px_ctx_run_timeout(c.ctx, 10);
        free(c.expect);
        if (c.down)
            return c.reason == -PX_ECONNREFUSED ? 11 : c.reason == -PX_EACCES ? 12 : 13;
        if (c.done == done)
            return 25;
    }
    return c.ok == 2 ? 0 : 26;
}

/* Serve `server_uri` here while a child runs as `uid` against
 * `client_uri`; returns the child's exit status. */
static int serve_and_run_client(const char *server_uri, uid_t uid, const char *client_uri)
{
    int go[2];
    ck_assert_int_eq(pipe(go), 0);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        char b;
        close(go[1]);
        if (read(go[0], &b, 1) != 1)
            _exit(20);
        _exit(client_as(uid, client_uri));
    }
    close(go[0]);
    px_ctx *ctx;
    px_server *srv;
    ck_assert_int_eq(px_ctx_create(NULL, &ctx), 0);
    int rc = px_server_bind(ctx, server_uri, &srv_ops, NULL, &srv);
    ck_assert_msg(rc == 0, "bind %s: %s", server_uri, px_strerror(rc));
    ck_assert_int_eq(write(go[1], "g", 1), 1);
    close(go[1]);
    int status = 0;
    double end = now_s() + 30;
    while (waitpid(child, &status, WNOHANG) == 0) {
        ck_assert_msg(now_s() < end, "the client as uid %u hung", (unsigned)uid);
        px_ctx_run_timeout(ctx, 10);
    }
    px_server_unbind(srv);
    for (int i = 0; i < 50; i++)
        px_ctx_run_timeout(ctx, 10);
    ck_assert_int_eq(px_ctx_destroy(ctx), 0);
    ck_assert_msg(WIFEXITED(status), "the client died of signal %d", WTERMSIG(status));
    return WEXITSTATUS(status);
}

static int need_root(const char *name)
{
    if (geteuid() == 0)
        return 1;
    fprintf(stderr, "%s: NOT RUN: switching to another uid needs root\n", name);
    return 0;
}

/* A server that allows uid 65534 serves a client running as 65534 that
 * trusts the server's uid: both sides opt in. */
START_TEST(other_uid_allowed)
{
    if (!need_root("other_uid_allowed"))
        return;
    char srv[128], cli[128];
    snprintf(srv, sizeof srv, "shm://pxuid-%d?allow_uid=%d", (int)getpid(), NOBODY);
    snprintf(cli, sizeof cli, "shm://pxuid-%d?allow_uid=%d", (int)getpid(), (int)getuid());
    int st = serve_and_run_client(srv, NOBODY, cli);
    ck_assert_msg(st == 0, "a client as uid %d with the server allowing it: status %d", NOBODY, st);
}
END_TEST

/* Without the server's consent the client is refused; without its own
 * (no allow_uid) it does not even look in another user's namespace. */
START_TEST(other_uid_refused)
{
    if (!need_root("other_uid_refused"))
        return;
    char srv[128], cli[128];
    snprintf(srv, sizeof srv, "shm://pxuid2-%d", (int)getpid());
    snprintf(cli, sizeof cli, "shm://pxuid2-%d?allow_uid=%d", (int)getpid(), (int)getuid());
    int st = serve_and_run_client(srv, NOBODY, cli);
    ck_assert_msg(st >= 11 && st <= 13, "a client the server does not allow: status %d", st);
    snprintf(srv, sizeof srv, "shm://pxuid3-%d?allow_uid=%d", (int)getpid(), NOBODY);
    snprintf(cli, sizeof cli, "shm://pxuid3-%d", (int)getpid());
    st = serve_and_run_client(srv, NOBODY, cli);
    ck_assert_msg(st == 11, "a client that trusts nobody else: status %d, want refused (11)", st);
}
END_TEST

/* ---- out of descriptors: the listener backs off, and says so rarely ------------- */

static int log_lines;

static void count_log(px_log_level level, const char *msg, void *user)
{
    log_lines++;
}

/* The server, in a child: bind, then leave itself no free descriptor and
 * serve for `secs`. Writes its CPU seconds and log lines to `out`. */
static void starved_server(const char *uri, int ready, int out, double secs)
{
    px_ctx *ctx;
    px_server *srv;
    px_log_set_hook(count_log, NULL);
    if (px_ctx_create(NULL, &ctx) != 0 || px_server_bind(ctx, uri, &srv_ops, NULL, &srv) != 0)
        _exit(2);
    int top = dup(0); /* the lowest free descriptor: take every one below the limit */
    struct rlimit rl = {.rlim_cur = (rlim_t)top, .rlim_max = (rlim_t)top + 64};
    close(top);
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || write(ready, "r", 1) != 1)
        _exit(3);
    log_lines = 0;
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    double end = now_s() + secs;
    while (now_s() < end)
        px_ctx_run_timeout(ctx, 10);
    getrusage(RUSAGE_SELF, &r1);
    double cpu = (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) +
                 (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) / 1e6 +
                 (double)(r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) +
                 (r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6;
    char line[64];
    int n = snprintf(line, sizeof line, "%.3f %d\n", cpu, log_lines);
    if (write(out, line, (size_t)n) != n)
        _exit(4);
    _exit(0);
}

START_TEST(listener_out_of_fds)
{
    char uri[128], name[160];
    snprintf(uri, sizeof uri, "shm://pxfd-%d", (int)getpid());
    int ready[2], out[2];
    ck_assert_int_eq(pipe(ready), 0);
    ck_assert_int_eq(pipe(out), 0);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        starved_server(uri, ready[1], out[1], 2.0);
    }
    char b;
    ck_assert_int_eq(read(ready[0], &b, 1), 1);
    /* Connections it cannot accept stay in its backlog. */
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    int n = snprintf(name, sizeof name, "plexus-shm-%u-pxfd-%d", (unsigned)getuid(), (int)getpid());
    memcpy(un.sun_path + 1, name, (size_t)n);
    socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    int fds[32];
    for (int i = 0; i < 32; i++) {
        fds[i] = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        ck_assert_int_eq(connect(fds[i], (struct sockaddr *)&un, alen), 0);
    }
    char line[64] = "";
    struct pollfd pfd = {.fd = out[0], .events = POLLIN};
    ck_assert_int_eq(poll(&pfd, 1, 10000), 1);
    ck_assert_int_gt(read(out[0], line, sizeof line - 1), 0);
    double cpu;
    int lines;
    ck_assert_int_eq(sscanf(line, "%lf %d", &cpu, &lines), 2);
    /* Spinning is a full CPU and a log line per turn; backing off, a few
     * wake-ups a second and one line a second. */
    ck_assert_msg(cpu < 0.5, "the starved listener used %.2f s of CPU in 2 s", cpu);
    ck_assert_msg(lines <= 4, "the starved listener logged %d lines in 2 s", lines);
    int status;
    waitpid(child, &status, 0);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    for (int i = 0; i < 32; i++)
        close(fds[i]);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("shm_access");
    TCase *tc = tcase_create("shm_access");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, other_uid_allowed);
    tcase_add_test(tc, other_uid_refused);
    tcase_add_test(tc, listener_out_of_fds);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
