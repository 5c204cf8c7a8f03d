/* oneway — one-way messages with delivery receipts.
 *
 *   oneway server URI        print how many messages arrive (until SIGINT/SIGTERM)
 *   oneway client URI N      send N messages, each asking for a receipt,
 *                            and report how many were delivered
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <plexus/plexus.h>

#define WINDOW 256 /* messages in flight at once */

/* ---- server ---------------------------------------------------------------- */

static volatile sig_atomic_t stop_requested;
static unsigned long received;

static void on_signal(int sig)
{
    stop_requested = 1;
}

static void check_stop(px_timer *t, void *ctx)
{
    if (stop_requested)
        px_ctx_stop(ctx);
}

static void server_new_session(px_session *s, const px_new_session *req, void *user)
{
    px_session_accept(s, NULL, 0, NULL, 0);
}

/* The message is plexus's: read it, then give it back. Releasing it is
 * what sends the receipt. */
static void server_on_msg(px_conn *c, px_msg *msg, int more_in_batch, void *user)
{
    received++;
    px_release_msg(msg);
}

static void server_on_event(px_session *s, const px_event *ev, void *user)
{
    if (ev->type == PX_EV_CONN_CLOSED || ev->type == PX_EV_CONN_DISCONNECTED)
        printf("received %lu messages so far\n", received);
}

static int run_server(const char *uri)
{
    static const px_session_ops ops = {
        .on_session_event = server_on_event,
        .on_new_session = server_new_session,
        .on_msg = server_on_msg,
    };
    px_ctx *ctx;
    px_server *srv;
    px_timer *timer;
    char bound[1024];
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    int rc = px_ctx_create(NULL, &ctx);
    if (rc == 0)
        rc = px_server_bind(ctx, uri, &ops, NULL, &srv);
    if (rc != 0) {
        fprintf(stderr, "oneway server: %s: %s\n", uri, px_strerror(rc));
        return 1;
    }
    px_server_uri(srv, bound, sizeof(bound));
    printf("listening on %s\n", bound);
    fflush(stdout);
    px_timer_create(ctx, check_stop, ctx, &timer);
    px_timer_start(timer, 100000, 100000);
    px_ctx_run(ctx);
    px_timer_destroy(timer);
    px_server_unbind(srv);
    px_ctx_destroy(ctx);
    return 0;
}

/* ---- client ---------------------------------------------------------------- */

struct client {
    px_ctx *ctx;
    px_conn *conn;
    px_msg msgs[WINDOW]; /* each is ours again after its receipt or error */
    px_iov iov[WINDOW];
    char text[WINDOW][32];
    long sent, total, delivered, failed;
};

static void send_next(struct client *cl, int slot)
{
    px_msg *m = &cl->msgs[slot];
    cl->iov[slot].base = cl->text[slot];
    cl->iov[slot].len = (size_t)snprintf(cl->text[slot], 32, "message %ld", cl->sent);
    m->out = (px_msg_vec){.iov = &cl->iov[slot], .iov_count = 1};
    m->flags = PX_MSG_RECEIPT;
    m->user_context = (void *)(intptr_t)slot;
    cl->sent++;
    int rc = px_send_msg(cl->conn, m);
    if (rc != 0) {
        fprintf(stderr, "px_send_msg: %s\n", px_strerror(rc));
        cl->failed++;
    }
}

/* Refill the window; stop once every message has ended one way or the other. */
static void message_done(struct client *cl, px_msg *m)
{
    if (cl->sent < cl->total)
        send_next(cl, (int)(intptr_t)m->user_context);
    if (cl->delivered + cl->failed == cl->total)
        px_ctx_stop(cl->ctx);
}

static void client_on_delivered(px_conn *c, px_msg *m, void *user)
{
    struct client *cl = user;
    cl->delivered++;
    message_done(cl, m);
}

static void client_on_error(px_conn *c, px_msg *m, px_msg_dir dir, int reason, void *user)
{
    struct client *cl = user;
    fprintf(stderr, "message not delivered: %s\n", px_strerror(reason));
    cl->failed++;
    message_done(cl, m);
}

static void client_on_event(px_session *s, const px_event *ev, void *user)
{
    struct client *cl = user;
    if (ev->type == PX_EV_SESSION_REJECTED)
        fprintf(stderr, "rejected: %s\n", px_strerror(ev->reason));
    if (ev->type == PX_EV_SESSION_REJECTED || ev->type == PX_EV_SESSION_TEARDOWN)
        px_ctx_stop(cl->ctx);
}

static int run_client(const char *uri, long n)
{
    static const px_session_ops ops = {
        .on_session_event = client_on_event,
        .on_msg_delivered = client_on_delivered,
        .on_msg_error = client_on_error,
    };
    static struct client cl;
    px_session *s;
    cl.total = n;
    px_session_params p = {.uri = uri, .ops = &ops, .user = &cl};
    int rc = px_ctx_create(NULL, &cl.ctx);
    if (rc == 0)
        rc = px_session_create(cl.ctx, &p, &s);
    if (rc == 0)
        rc = px_connect(s, cl.ctx, &cl.conn);
    if (rc != 0) {
        fprintf(stderr, "oneway client: %s: %s\n", uri, px_strerror(rc));
        return 1;
    }
    uint64_t t0 = px_now_ns();
    for (int i = 0; i < WINDOW && cl.sent < cl.total; i++)
        send_next(&cl, i);
    px_ctx_run(cl.ctx);
    double s_elapsed = (px_now_ns() - t0) / 1e9;
    printf("%ld of %ld messages delivered in %.3f s (%.0f msg/s)\n", cl.delivered, cl.total,
           s_elapsed, cl.delivered / s_elapsed);

    px_session_close(s);
    px_ctx_run(cl.ctx); /* until SESSION_TEARDOWN */
    px_ctx_destroy(cl.ctx);
    return cl.delivered == cl.total ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "server") == 0)
        return run_server(argv[2]);
    if (argc == 4 && strcmp(argv[1], "client") == 0 && atol(argv[3]) > 0)
        return run_client(argv[2], atol(argv[3]));
    fprintf(stderr, "usage: oneway server URI | oneway client URI N\n");
    return 2;
}
