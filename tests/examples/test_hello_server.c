/* The hello_server example, run as a user would run it, against a client
 * whose limits its answer breaks ("hello back: " + the request's data is
 * over the client's max_msg_size). The example must still answer (with an
 * error), never leave the client waiting. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <plexus/plexus.h>

#ifndef HELLO_SERVER_PATH
#error "HELLO_SERVER_PATH must name the hello_server binary"
#endif

struct cl {
    int done, err, reason, gone;
};

static void on_event(px_session *s, const px_event *ev, void *user)
{
    if (ev->type == PX_EV_SESSION_TEARDOWN)
        ((struct cl *)user)->gone = 1;
}

static void on_msg(px_conn *c, px_msg *m, int more, void *user)
{
    ((struct cl *)user)->done = 1;
    px_release_response(m);
}

static void on_err(px_conn *c, px_msg *m, px_msg_dir dir, int reason, void *user)
{
    struct cl *cl = user;
    cl->done = cl->err = 1;
    cl->reason = reason;
}

static const px_session_ops ops = {
    .on_session_event = on_event, .on_msg = on_msg, .on_msg_error = on_err};

/* Start the server on `uri`; its first line says where it listens. Its
 * stdout stays open (in *out) for the lines it prints later. */
static pid_t start(const char *uri, char *bound, int *out)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(p[1], STDOUT_FILENO);
        close(p[0]);
        execl(HELLO_SERVER_PATH, "hello_server", uri, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    char line[1200];
    size_t n = 0;
    struct pollfd pfd = {.fd = p[0], .events = POLLIN};
    while (n < sizeof(line) - 1 && (n == 0 || line[n - 1] != '\n')) {
        ck_assert_msg(poll(&pfd, 1, 10000) == 1, "hello_server said nothing");
        ck_assert_int_eq(read(p[0], line + n, 1), 1);
        n++;
    }
    line[n - 1] = '\0';
    ck_assert_msg(sscanf(line, "listening on %1023s", bound) == 1, "hello_server: '%s'", line);
    *out = p[0];
    return pid;
}

/* One request of `size` bytes with the client's max_msg_size `max`. */
static struct cl ask(const char *uri, size_t size, uint64_t max)
{
    struct cl cl = {0};
    px_ctx *ctx;
    px_session *s;
    px_conn *c;
    px_ctx_opts o = {.max_msg_size = max};
    ck_assert_int_eq(px_ctx_create(&o, &ctx), 0);
    px_session_params p = {.uri = uri, .ops = &ops, .user = &cl};
    ck_assert_int_eq(px_session_create(ctx, &p, &s), 0);
    ck_assert_int_eq(px_connect(s, ctx, &c), 0);
    char *data = calloc(1, size);
    px_iov iov = {.base = data, .len = size};
    px_msg req = {.out = {.iov = &iov, .iov_count = 1}};
    ck_assert_int_eq(px_send_request(c, &req), 0);
    for (int i = 0; i < 500 && !cl.done; i++)
        px_ctx_run_timeout(ctx, 10);
    struct cl result = cl;
    if (!cl.done)
        px_conn_disconnect(c); /* no answer in 5 s: do not wait for one at close either */
    px_session_close(s);
    for (int i = 0; i < 500 && !cl.gone; i++)
        px_ctx_run_timeout(ctx, 10);
    ck_assert_int_eq(px_ctx_destroy(ctx), 0);
    free(data);
    return result;
}

START_TEST(answer_over_client_limit)
{
    char uri[128], bound[1024];
    snprintf(uri, sizeof(uri), "unix:///tmp/plexus-hello-%d.sock", (int)getpid());
    int out;
    pid_t srv = start(uri, bound, &out);
    struct cl ok = ask(bound, 5, 0);
    ck_assert_msg(ok.done && !ok.err, "an ordinary hello was not answered");
    /* 20 bytes of data: the 32-byte answer is over the client's 24. */
    struct cl over = ask(bound, 20, 24);
    ck_assert_msg(over.done, "hello_server never answered a request whose answer it could not "
                             "send: the client waited for ever");
    ck_assert_msg(over.err && over.reason == -PX_EPEER, "the answer was %s, want PX_EPEER",
                  over.err ? px_errname(over.reason) : "a success");
    kill(srv, SIGTERM);
    int status;
    waitpid(srv, &status, 0);
    close(out);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "hello_server ended with status %d, signal %d",
                  WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                  WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("hello_server");
    TCase *tc = tcase_create("hello_server");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, answer_over_client_limit);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
