/* Counters over many connections: a server's and a context's sums, the
 * list of a server's connections, and what a closed connection leaves
 * behind. One context carries both ends over tcp://. */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "plexus/plexus.h"
#include "px_check.h"

#define N_CONNS 3
#define N_REQS  50

struct side {
    px_ctx *ctx;
    uint64_t responses, teardowns, established;
};

static void server_on_msg(px_conn *c, px_msg *m, int more, void *user)
{
    m->out.header = m->in.header;
    m->out.header_len = m->in.header_len;
    m->out.iov = m->in.iov;
    m->out.iov_count = m->in.iov_count;
    ck_assert_int_eq(px_send_response(m), 0);
}

static void client_on_msg(px_conn *c, px_msg *m, int more, void *user)
{
    struct side *s = user;
    ck_assert_int_eq(px_release_response(m), 0);
    if (++s->responses % N_REQS == 0)
        px_ctx_stop(s->ctx);
}

static void client_on_event(px_session *sess, const px_event *ev, void *user)
{
    struct side *s = user;
    if (ev->type == PX_EV_CONN_ESTABLISHED && ++s->established == N_CONNS)
        px_ctx_stop(s->ctx);
    if (ev->type == PX_EV_CONN_TEARDOWN) {
        s->teardowns++;
        px_ctx_stop(s->ctx);
    }
}

static const px_session_ops server_ops = {.on_msg = server_on_msg};
static const px_session_ops client_ops = {.on_msg = client_on_msg,
                                          .on_session_event = client_on_event};

START_TEST(server_and_context_sums)
{
    struct side cl = {0};
    /* A long keepalive: a close that waited for the next keepalive tick to
     * leave (as one made from outside the loop once did) runs into the
     * test's timeout. */
    px_ctx_opts o = {.keepalive_ms = 60000};
    ck_assert_int_eq(px_ctx_create(&o, &cl.ctx), 0);
    px_stats_sum sum;
    ck_assert_int_eq(px_ctx_get_conn_stats(cl.ctx, &sum), 0);
    ck_assert_uint_eq(sum.conns_open + sum.conns_opened + sum.conn.requests_sent, 0);

    px_server *srv;
    ck_assert_int_eq(px_server_bind(cl.ctx, "tcp://127.0.0.1:0", &server_ops, NULL, &srv), 0);
    char uri[256];
    ck_assert_int_gt(px_server_uri(srv, uri, sizeof uri), 0);
    px_session *sess[N_CONNS];
    px_conn *conn[N_CONNS];
    for (int i = 0; i < N_CONNS; i++) {
        px_session_params p = {.uri = uri, .ops = &client_ops, .user = &cl};
        ck_assert_int_eq(px_session_create(cl.ctx, &p, &sess[i]), 0);
        ck_assert_int_eq(px_connect(sess[i], cl.ctx, &conn[i]), 0);
    }
    while (cl.established < N_CONNS)
        ck_assert_int_eq(px_ctx_run_timeout(cl.ctx, 10000), 0);

    /* Connection i sends N_REQS * (i + 1) requests of 100 bytes. */
    static uint8_t data[100];
    static px_msg msgs[N_REQS];
    static px_iov iov[N_REQS];
    uint64_t total = 0;
    for (int i = 0; i < N_CONNS; i++)
        for (int round = 0; round <= i; round++) {
            for (int k = 0; k < N_REQS; k++) {
                memset(&msgs[k], 0, sizeof msgs[k]);
                iov[k] = (px_iov){.base = data, .len = sizeof data};
                msgs[k].out.iov = &iov[k];
                msgs[k].out.iov_count = 1;
                ck_assert_int_eq(px_send_request(conn[i], &msgs[k]), 0);
            }
            uint64_t want = cl.responses + N_REQS;
            while (cl.responses < want)
                ck_assert_int_eq(px_ctx_run_timeout(cl.ctx, 10000), 0);
            total += N_REQS;
        }

    ck_assert_int_eq(px_server_get_stats(srv, &sum), 0);
    ck_assert_uint_eq(sum.conns_open, N_CONNS);
    ck_assert_uint_eq(sum.conns_opened, N_CONNS);
    ck_assert_uint_eq(sum.conns_closed, 0);
    ck_assert_uint_eq(sum.conn.requests_recv, total);
    ck_assert_uint_eq(sum.conn.responses_sent, total);
    ck_assert_uint_eq(sum.conn.bytes_recv, total * sizeof data);
    ck_assert_uint_eq(sum.conn.requests_sent, 0);

    /* The list: every server-side connection once, its counters adding up. */
    px_conn *list[8];
    size_t n;
    ck_assert_int_eq(px_server_list_conns(srv, list, 8, &n), 0);
    ck_assert_uint_eq(n, N_CONNS);
    uint64_t listed = 0;
    for (size_t i = 0; i < n; i++) {
        px_conn_stats cs;
        ck_assert_int_eq(px_conn_get_stats(list[i], &cs), 0);
        listed += cs.requests_recv;
        for (int j = 0; j < N_CONNS; j++)
            ck_assert_ptr_ne(list[i], conn[j]); /* the server's ends, not the clients' */
    }
    ck_assert_uint_eq(listed, total);
    ck_assert_int_eq(px_server_list_conns(srv, list, 1, &n), 0);
    ck_assert_uint_eq(n, N_CONNS); /* the count even when the array is short */
    ck_assert_int_eq(px_server_list_conns(srv, NULL, 0, &n), 0);
    ck_assert_uint_eq(n, N_CONNS);
    ck_assert_int_eq(px_server_list_conns(srv, NULL, 4, &n), -PX_EINVAL);

    /* The context: both ends of every connection. */
    ck_assert_int_eq(px_ctx_get_conn_stats(cl.ctx, &sum), 0);
    ck_assert_uint_eq(sum.conns_open, 2 * N_CONNS);
    ck_assert_uint_eq(sum.conn.requests_sent, total);
    ck_assert_uint_eq(sum.conn.responses_recv, total);
    ck_assert_uint_eq(sum.conn.requests_recv, total);
    ck_assert_uint_eq(sum.conn.in_flight, 0);

    /* A closed connection's counters stay in the sums. */
    ck_assert_int_eq(px_session_close(sess[2]), 0);
    while (cl.teardowns < 1)
        ck_assert_int_eq(px_ctx_run_timeout(cl.ctx, 10000), 0);
    for (int i = 0; i < 50; i++) /* the server's end goes a little later */
        px_ctx_run_timeout(cl.ctx, 2);
    ck_assert_int_eq(px_server_get_stats(srv, &sum), 0);
    ck_assert_uint_eq(sum.conns_open, N_CONNS - 1);
    ck_assert_uint_eq(sum.conns_closed, 1);
    ck_assert_uint_eq(sum.conn.requests_recv, total);
    ck_assert_int_eq(px_ctx_get_conn_stats(cl.ctx, &sum), 0);
    ck_assert_uint_eq(sum.conns_open, 2 * (N_CONNS - 1));
    ck_assert_uint_eq(sum.conns_closed, 2);
    ck_assert_uint_eq(sum.conn.requests_sent, total);
    ck_assert_uint_eq(sum.conn.requests_recv, total);

    ck_assert_int_eq(px_server_get_stats(NULL, &sum), -PX_EINVAL);
    ck_assert_int_eq(px_ctx_get_conn_stats(cl.ctx, NULL), -PX_EINVAL);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(px_session_close(sess[i]), 0);
    ck_assert_int_eq(px_server_unbind(srv), 0);
    while (cl.teardowns < N_CONNS)
        ck_assert_int_eq(px_ctx_run_timeout(cl.ctx, 10000), 0);
    for (int i = 0; i < 50; i++)
        px_ctx_run_timeout(cl.ctx, 2);
    ck_assert_int_eq(px_ctx_destroy(cl.ctx), 0);
}
END_TEST

PX_CHECK_MAIN("stats", server_and_context_sums)
