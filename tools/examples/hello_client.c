/* hello_client URI [N] — send N "hello" requests, one at a time, and print
 * the replies and the average round trip.
 *
 *   hello_client tcp://127.0.0.1:7420 5
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <plexus/plexus.h>

struct app {
    px_ctx *ctx;
    px_conn *conn;
    px_msg req; /* one request, reused: ours again after px_release_response */
    char text[64];
    px_iov iov;
    int sent, total, failed;
};

static void send_hello(struct app *a)
{
    a->iov.base = a->text;
    a->iov.len = (size_t)snprintf(a->text, sizeof(a->text), "hello %d", a->sent + 1);
    memset(&a->req.out, 0, sizeof(a->req.out));
    memset(&a->req.in, 0, sizeof(a->req.in)); /* the reply lands in plexus memory */
    a->req.out.iov = &a->iov;
    a->req.out.iov_count = 1;
    int rc = px_send_request(a->conn, &a->req);
    if (rc != 0) {
        fprintf(stderr, "px_send_request: %s\n", px_strerror(rc));
        a->failed = 1;
        px_ctx_stop(a->ctx);
        return;
    }
    a->sent++;
}

static void print_reply(const px_msg *msg)
{
    printf("reply: ");
    for (uint32_t i = 0; i < msg->in.iov_count; i++)
        printf("%.*s", (int)msg->in.iov[i].len, (const char *)msg->in.iov[i].base);
    printf("\n");
}

/* The response arrives in our own px_msg. */
static void on_msg(px_conn *c, px_msg *msg, int more_in_batch, void *user)
{
    struct app *a = user;
    if (a->total <= 10)
        print_reply(msg);
    px_release_response(msg);
    if (a->sent < a->total)
        send_hello(a);
    else
        px_ctx_stop(a->ctx);
}

static void on_msg_error(px_conn *c, px_msg *msg, px_msg_dir dir, int reason, void *user)
{
    struct app *a = user;
    fprintf(stderr, "request failed: %s\n", px_strerror(reason));
    a->failed = 1;
    px_ctx_stop(a->ctx);
}

static void on_session_event(px_session *s, const px_event *ev, void *user)
{
    struct app *a = user;
    if (ev->type == PX_EV_SESSION_REJECTED || ev->type == PX_EV_CONN_DISCONNECTED) {
        fprintf(stderr, "connection failed: %s\n", px_strerror(ev->reason));
        a->failed = 1;
    }
    if (ev->type == PX_EV_SESSION_TEARDOWN)
        px_ctx_stop(a->ctx);
}

static const px_session_ops ops = {
    .on_session_event = on_session_event,
    .on_msg = on_msg,
    .on_msg_error = on_msg_error,
};

int main(int argc, char **argv)
{
    struct app a = {.total = argc > 2 ? atoi(argv[2]) : 5};
    px_session *s;
    if (argc < 2 || a.total < 1) {
        fprintf(stderr, "usage: hello_client URI [N]\n");
        return 2;
    }
    px_session_params p = {.uri = argv[1], .ops = &ops, .user = &a};
    int rc = px_ctx_create(NULL, &a.ctx);
    if (rc == 0)
        rc = px_session_create(a.ctx, &p, &s);
    if (rc == 0)
        rc = px_connect(s, a.ctx, &a.conn);
    if (rc != 0) {
        fprintf(stderr, "hello_client: %s: %s\n", argv[1], px_strerror(rc));
        return 1;
    }

    /* Sends may start before the connection is up: they wait for it. */
    uint64_t t0 = px_now_ns();
    send_hello(&a);
    px_ctx_run(a.ctx);
    uint64_t ns = px_now_ns() - t0;
    if (!a.failed)
        printf("%d requests in %.3f ms: %.1f us per round trip (first includes connecting)\n",
               a.total, ns / 1e6, ns / 1e3 / a.total);

    /* Close gracefully and wait for the session's last event. */
    px_session_close(s);
    px_ctx_run(a.ctx);
    px_ctx_destroy(a.ctx);
    return a.failed;
}
