/* hello_server URI — answer every request with a greeting.
 *
 *   hello_server tcp://127.0.0.1:7420     (port 0: pick one; the real URI is printed)
 *   hello_server unix:///tmp/hello.sock
 *
 * Stops on SIGINT/SIGTERM.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <plexus/plexus.h>

static volatile sig_atomic_t stop_requested;

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

static void on_new_session(px_session *s, const px_new_session *req, void *user)
{
    printf("new session from %s\n", req->peer);
    px_session_accept(s, NULL, 0, NULL, 0);
}

/* A reply and the vector describing it: both must live until the response
 * completes (on_msg_send_complete or on_msg_error). */
struct reply {
    px_iov iov;
    char text[];
};

/* A request arrived: answer "hello back: <request data>". */
static void on_msg(px_conn *c, px_msg *req, int more_in_batch, void *user)
{
    static const char greeting[] = "hello back: ";
    size_t len = sizeof(greeting) - 1 + req->in.data_len;
    struct reply *r = malloc(sizeof(*r) + len);
    if (r == NULL) {
        px_release_msg(req); /* answers with an error instead */
        return;
    }
    memcpy(r->text, greeting, sizeof(greeting) - 1);
    size_t off = sizeof(greeting) - 1;
    for (uint32_t i = 0; i < req->in.iov_count; i++) {
        memcpy(r->text + off, req->in.iov[i].base, req->in.iov[i].len);
        off += req->in.iov[i].len;
    }
    r->iov = (px_iov){.base = r->text, .len = len};
    req->user_context = r;
    req->out = (px_msg_vec){.iov = &r->iov, .iov_count = 1};
    int rc = px_send_response(req);
    if (rc != 0) {
        /* Not sent (over the client's limits, say): no callback follows,
         * and the request is still ours. Releasing it answers it with an
         * error, so the client does not wait for ever. */
        fprintf(stderr, "cannot answer a request: %s\n", px_strerror(rc));
        free(r);
        px_release_msg(req);
    }
}

static void on_msg_send_complete(px_conn *c, px_msg *req, void *user)
{
    free(req->user_context);
}

static void on_msg_error(px_conn *c, px_msg *req, px_msg_dir dir, int reason, void *user)
{
    /* PX_DIR_IN would be a receive into memory from assign_data_in_buf,
     * which this server never supplies: only our responses end here. */
    if (dir == PX_DIR_OUT)
        free(req->user_context);
}

static const px_session_ops ops = {
    .on_new_session = on_new_session,
    .on_msg = on_msg,
    .on_msg_send_complete = on_msg_send_complete,
    .on_msg_error = on_msg_error,
};

int main(int argc, char **argv)
{
    px_ctx *ctx;
    px_server *srv;
    px_timer *timer;
    char uri[1024];
    if (argc != 2) {
        fprintf(stderr, "usage: hello_server URI\n");
        return 2;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    int rc = px_ctx_create(NULL, &ctx);
    if (rc == 0)
        rc = px_server_bind(ctx, argv[1], &ops, NULL, &srv);
    if (rc != 0) {
        fprintf(stderr, "hello_server: %s: %s\n", argv[1], px_strerror(rc));
        return 1;
    }
    px_server_uri(srv, uri, sizeof(uri));
    printf("listening on %s\n", uri);
    fflush(stdout);

    px_timer_create(ctx, check_stop, ctx, &timer);
    px_timer_start(timer, 100000, 100000);
    px_ctx_run(ctx);

    px_timer_destroy(timer);
    px_server_unbind(srv);
    px_ctx_destroy(ctx);
    return 0;
}
