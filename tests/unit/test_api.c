/* The public API's edges, in one process: URIs checked in full at
 * creation, names for events, errors for misuse, stale handles in debug
 * builds, connection events in the log. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "plexus/plexus.h"
#include "px_check.h"

START_TEST(event_names)
{
    ck_assert_str_eq(px_event_name(PX_EV_SESSION_ESTABLISHED), "PX_EV_SESSION_ESTABLISHED");
    ck_assert_str_eq(px_event_name(PX_EV_CONN_CLOSED), "PX_EV_CONN_CLOSED");
    ck_assert_str_eq(px_event_name(PX_EV_SESSION_TEARDOWN), "PX_EV_SESSION_TEARDOWN");
    ck_assert_str_eq(px_event_name((px_event_type)0), "PX_EV_?");
    ck_assert_str_eq(px_event_name((px_event_type)99), "PX_EV_?");
    for (int t = PX_EV_SESSION_ESTABLISHED; t <= PX_EV_SESSION_TEARDOWN; t++)
        ck_assert_str_ne(px_event_name((px_event_type)t), "PX_EV_?");
}
END_TEST

static const px_session_ops no_ops = {0};

static int create_rc(const char *uri)
{
    px_ctx *ctx;
    px_session *s = NULL;
    ck_assert_int_eq(px_ctx_create(NULL, &ctx), 0);
    px_session_params p = {.uri = uri, .ops = &no_ops};
    int rc = px_session_create(ctx, &p, &s);
    if (rc == 0) {
        ck_assert_int_eq(px_session_close(s), 0);
        px_ctx_run_timeout(ctx, 10);
    }
    ck_assert_int_eq(px_ctx_destroy(ctx), 0);
    return rc;
}

/* Everything wrong with a URI is said by px_session_create, not by a
 * connection that fails later. */
START_TEST(session_uri_checked)
{
    ck_assert_int_eq(create_rc("tcp://127.0.0.1"), -PX_EBADPORT);
    ck_assert_int_eq(create_rc("tcp://127.0.0.1:0"), -PX_EBADPORT); /* 0 only listens */
    ck_assert_int_eq(create_rc("tcp://:7000"), -PX_EBADHOST);
    ck_assert_int_eq(create_rc("tcp://127.0.0.1:7000/x"), -PX_EBADPATH);
    ck_assert_int_eq(create_rc("tcp://127.0.0.1:7000?bogus=1"), -PX_EBADOPT);
    ck_assert_int_eq(create_rc("tcp://127.0.0.1:7000?nodelay=7"), -PX_EBADOPT);
    ck_assert_int_eq(create_rc("unix://"), -PX_EBADPATH);
    ck_assert_int_eq(create_rc("unix://relative/x.sock"), -PX_EBADPATH);
    ck_assert_int_eq(create_rc("unix:///tmp/x.sock?rcvbuf=abc"), -PX_EBADOPT);
    ck_assert_int_eq(create_rc("shm://name?ring=3"), -PX_EBADOPT);
    ck_assert_int_eq(create_rc("shm://name?colour=blue"), -PX_EBADOPT);
    ck_assert_int_eq(create_rc("shm://host:1"), -PX_EBADPATH);
    ck_assert_int_eq(create_rc("nosuch://x:1"), -PX_EBADSCHEME);
    if (px_get_build_info()->rdma) {
        ck_assert_int_eq(create_rc("rdma://10.0.0.1"), -PX_EBADPORT);
        ck_assert_int_eq(create_rc("rdma://:7000"), -PX_EBADHOST);
        ck_assert_int_eq(create_rc("rdma://10.0.0.1:7000/x"), -PX_EBADPATH);
        ck_assert_int_eq(create_rc("rdma://10.0.0.1:7000?eager=12"), -PX_EBADOPT);
        ck_assert_int_eq(create_rc("rdma://10.0.0.1:7000?rq=1"), -PX_EBADOPT);
        ck_assert_int_eq(create_rc("rdma://10.0.0.1:7000?srq=2"), -PX_EBADOPT);
        ck_assert_int_eq(create_rc("rdma://10.0.0.1:7000?srq=1&rq=8"), 0);
        ck_assert_int_eq(create_rc("rdma://10.0.0.1:7000?eager=16384&rq=64&sq=64&inline=0"), 0);
    } else {
        ck_assert_int_eq(create_rc("rdma://10.0.0.1:7000"), -PX_ENOTBUILT);
    }
    /* Good ones, without a server or a resolver. */
    ck_assert_int_eq(create_rc("tcp://127.0.0.1:7000?nodelay=0"), 0);
    ck_assert_int_eq(create_rc("tcp://no-such-host.invalid:7000"), 0); /* resolved at connect */
    ck_assert_int_eq(create_rc("unix:///tmp/x.sock"), 0);
    ck_assert_int_eq(create_rc("shm://name?spin_us=5&allow_uid=0"), 0);
}
END_TEST

/* ---- one process, one context: a server and a client on unix:// -------------- */

struct app {
    px_ctx *ctx;
    px_session *s;
    px_conn *c;
    int up, teardown, session_teardown;
    int log_established, log_closed;
};

static void on_event(px_session *s, const px_event *ev, void *user)
{
    struct app *a = user;
    if (ev->type == PX_EV_CONN_ESTABLISHED)
        a->up = 1;
    if (ev->type == PX_EV_CONN_TEARDOWN)
        a->teardown = 1;
    if (ev->type == PX_EV_SESSION_TEARDOWN)
        a->session_teardown = 1;
}

static int responses;

static void on_msg(px_conn *c, px_msg *m, int more, void *user)
{
    if (m->type == PX_MSG_REQUEST) {
        m->out = (px_msg_vec){0};
        px_send_response(m);
    } else if (m->type == PX_MSG_RESPONSE) {
        responses++;
        px_release_response(m);
    } else {
        px_release_msg(m);
    }
}

static const px_session_ops ops = {.on_session_event = on_event, .on_msg = on_msg};

static struct app *log_app;

static void log_hook(px_log_level level, const char *msg, void *user)
{
    if (level != PX_LOG_INFO || !log_app || !strstr(msg, "unix:///tmp/plexus-api-"))
        return;
    if (strstr(msg, ": established"))
        log_app->log_established++;
    if (strstr(msg, ": closed"))
        log_app->log_closed++;
}

static void run_until(struct app *a, const int *flag)
{
    for (int i = 0; i < 500 && !*flag; i++)
        px_ctx_run_timeout(a->ctx, 10);
    ck_assert(*flag);
}

START_TEST(lifecycle)
{
    struct app a = {0};
    char uri[128];
    snprintf(uri, sizeof(uri), "unix:///tmp/plexus-api-%d.sock", (int)getpid());
    log_app = &a;
    px_log_set_hook(log_hook, NULL);
    px_log_set_level(PX_LOG_INFO);
    ck_assert_int_eq(px_ctx_create(NULL, &a.ctx), 0);
    px_server *srv;
    ck_assert_int_eq(px_server_bind(a.ctx, uri, &ops, &a, &srv), 0);
    px_session_params p = {.uri = uri, .ops = &ops, .user = &a};
    ck_assert_int_eq(px_session_create(a.ctx, &p, &a.s), 0);
    ck_assert_int_eq(px_connect(a.s, a.ctx, &a.c), 0);
    run_until(&a, &a.up);

    /* Cancel of a message that is no outstanding request. */
    px_msg never = {0};
    ck_assert_int_eq(px_cancel(&never), -PX_EINVAL);
    ck_assert_int_eq(px_send_msg(a.c, &never), 0);
    ck_assert_int_eq(px_cancel(&never), -PX_EINVAL); /* a one-way message */
    px_msg req = {0};
    ck_assert_int_eq(px_send_request(a.c, &req), 0);
    run_until(&a, &responses);
    ck_assert_int_eq(px_cancel(&req), -PX_EALREADY); /* completed */

    /* The context refuses to go while the application owns things. */
    ck_assert_int_eq(px_ctx_destroy(a.ctx), -PX_EBUSY);
    ck_assert_int_eq(px_session_close(a.s), 0);
    run_until(&a, &a.session_teardown);
    ck_assert_int_eq(a.log_established, 2); /* both ends, at INFO, with the peer's URI */
    ck_assert_int_ge(a.log_closed, 1);

#ifndef NDEBUG
    /* Debug builds keep torn-down handles poisoned: a late call is told. */
    ck_assert_int_eq(px_conn_close(a.c), -PX_ECLOSED);
    ck_assert_int_eq(px_conn_disconnect(a.c), -PX_ECLOSED);
    px_msg late = {0};
    ck_assert_int_eq(px_send_request(a.c, &late), -PX_ECLOSED);
    ck_assert_int_eq(px_session_close(a.s), -PX_ECLOSED);
    px_conn *c2;
    ck_assert_int_eq(px_connect(a.s, a.ctx, &c2), -PX_ECLOSED);
    ck_assert_ptr_null(px_conn_session(a.c));
#else
    fprintf(stderr, "lifecycle: stale-handle checks NOT RUN: release build (NDEBUG)\n");
#endif
    ck_assert_int_eq(px_server_unbind(srv), 0);
    for (int i = 0; i < 20; i++)
        px_ctx_run_timeout(a.ctx, 5);
    ck_assert_int_eq(px_ctx_destroy(a.ctx), 0);
    px_log_set_hook(NULL, NULL);
    px_log_set_level(PX_LOG_WARN);
    log_app = NULL;
}
END_TEST

/* What px-info prints about the build. */
START_TEST(build_info)
{
    const px_build_info *b = px_get_build_info();
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_eq(px_get_build_info(), b);
    ck_assert_str_eq(b->version, px_version());
    ck_assert_ptr_nonnull(b->build_type);
    ck_assert_ptr_nonnull(b->compiler);
    ck_assert_ptr_nonnull(b->sanitizers);
    ck_assert_ptr_nonnull(b->plugin_dir);
    ck_assert(b->plugin_dir[0] == '/');
    ck_assert(b->rdma == 0 || b->rdma == 1);
#ifdef PX_FAULT_INJECTION
    ck_assert_int_eq(b->fault_injection, 1);
#else
    ck_assert_int_eq(b->fault_injection, 0);
#endif
}
END_TEST

PX_CHECK_MAIN("api", event_names, session_uri_checked, lifecycle, build_info)
