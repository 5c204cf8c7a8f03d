/* In-place delivery under a full receive buffer.
 *
 * The server answers every request from the request's own bytes (out = in,
 * in place in the transport's receive buffer), while the client keeps 512
 * requests of 4 KiB in flight — more than the receive ring holds, so one
 * read can fill it entirely. The transport must not read into bytes lent to
 * on_msg before the responses made there have left: every byte echoed back
 * is checked. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plexus/plexus.h"

#define WINDOW 512
#define SIZE   4096
#define TOTAL  20000

struct echo {
    px_ctx *ctx;
    px_conn *conn;
    px_msg msgs[WINDOW];
    px_iov iov[WINDOW];
    uint8_t bufs[WINDOW][SIZE];
    uint64_t seq[WINDOW];
    uint64_t sent, done, bad, errors;
};

static uint8_t byte_of(uint64_t seq, size_t i)
{
    return (uint8_t)(seq * 131 + i * 7 + (i >> 8));
}

static void server_on_msg(px_conn *c, px_msg *m, int more, void *user)
{
    m->out.header = m->in.header;
    m->out.header_len = m->in.header_len;
    m->out.iov = m->in.iov;
    m->out.iov_count = m->in.iov_count;
    if (px_send_response(m) != 0)
        abort();
}

static void send_next(struct echo *e, int slot)
{
    uint64_t seq = e->sent++;
    e->seq[slot] = seq;
    for (size_t i = 0; i < SIZE; i++)
        e->bufs[slot][i] = byte_of(seq, i);
    px_msg *m = &e->msgs[slot];
    e->iov[slot] = (px_iov){.base = e->bufs[slot], .len = SIZE};
    m->out.iov = &e->iov[slot];
    m->out.iov_count = 1;
    m->user_context = (void *)(intptr_t)slot;
    if (px_send_request(e->conn, m) != 0)
        e->errors++;
}

static void client_on_msg(px_conn *c, px_msg *m, int more, void *user)
{
    struct echo *e = user;
    int slot = (int)(intptr_t)m->user_context;
    uint64_t seq = e->seq[slot];
    const uint8_t *p = m->in.iov_count ? m->in.iov[0].base : NULL;
    if (m->in.data_len != SIZE || m->in.iov_count != 1)
        e->bad++;
    else
        for (size_t i = 0; i < SIZE; i++)
            if (p[i] != byte_of(seq, i)) {
                e->bad++;
                break;
            }
    px_release_response(m);
    e->done++;
    if (e->sent < TOTAL)
        send_next(e, slot);
    else if (e->done == TOTAL)
        px_ctx_stop(e->ctx);
}

static void client_on_error(px_conn *c, px_msg *m, int reason, void *user)
{
    ((struct echo *)user)->errors++;
}

static void run(const char *bind_uri)
{
    static struct echo e;
    memset(&e, 0, sizeof(e));
    static const px_session_ops sops = {.on_msg = server_on_msg};
    static const px_session_ops cops = {.on_msg = client_on_msg, .on_msg_error = client_on_error};
    px_ctx_opts o = {.queue_depth = WINDOW};
    px_server *srv;
    px_session *s;
    char uri[256];
    ck_assert_int_eq(px_ctx_create(&o, &e.ctx), 0);
    ck_assert_int_eq(px_server_bind(e.ctx, bind_uri, &sops, NULL, &srv), 0);
    ck_assert_int_gt(px_server_uri(srv, uri, sizeof(uri)), 0);
    px_session_params p = {.uri = uri, .ops = &cops, .user = &e};
    ck_assert_int_eq(px_session_create(e.ctx, &p, &s), 0);
    ck_assert_int_eq(px_connect(s, e.ctx, &e.conn), 0);
    for (int i = 0; i < WINDOW; i++)
        send_next(&e, i);
    ck_assert_int_eq(px_ctx_run_timeout(e.ctx, 60000), 0);
    ck_assert_uint_eq(e.done, TOTAL);
    ck_assert_uint_eq(e.errors, 0);
    ck_assert_msg(e.bad == 0, "%llu of %d echoes came back corrupted", (unsigned long long)e.bad,
                  TOTAL);
    px_session_close(s);
    px_server_unbind(srv);
    px_ctx_run_timeout(e.ctx, 2000);
    ck_assert_int_eq(px_ctx_destroy(e.ctx), 0);
}

START_TEST(inplace_echo_tcp)
{
    run("tcp://127.0.0.1:0");
}
END_TEST

START_TEST(inplace_echo_unix)
{
    char uri[128];
    snprintf(uri, sizeof(uri), "unix:///tmp/plexus-inplace-%d.sock", (int)getpid());
    run(uri);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("inplace_echo");
    TCase *tc = tcase_create("inplace_echo");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, inplace_echo_tcp);
    tcase_add_test(tc, inplace_echo_unix);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
