/* In-place delivery under full receive buffers, in both directions.
 *
 * Each side answers every request from the request's own bytes (out = in,
 * in place in the transport's receive memory) while keeping 512 requests of
 * 4 KiB of its own in flight on the same connection — more than a receive
 * ring holds. The transport must neither reuse receive memory lent to
 * on_msg before the responses made there have left, nor hold it in a way
 * that deadlocks two peers that both wait. Every echoed byte is checked. */
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

/* One side's requests: a window of messages kept full until TOTAL. */
struct side {
    px_ctx *ctx;
    px_conn *conn;
    uint8_t salt;
    px_msg msgs[WINDOW];
    px_iov iov[WINDOW];
    uint8_t bufs[WINDOW][SIZE];
    uint64_t seq[WINDOW];
    uint64_t sent, done, bad, errors;
    struct side *other;
};

static uint8_t byte_of(uint8_t salt, uint64_t seq, size_t i)
{
    return (uint8_t)(seq * 131 + i * 7 + (i >> 8) + salt);
}

static int finished(const struct side *s)
{
    return s->done == TOTAL && s->other->done == TOTAL;
}

static void send_next(struct side *s, int slot)
{
    uint64_t seq = s->sent++;
    s->seq[slot] = seq;
    for (size_t i = 0; i < SIZE; i++)
        s->bufs[slot][i] = byte_of(s->salt, seq, i);
    px_msg *m = &s->msgs[slot];
    s->iov[slot] = (px_iov){.base = s->bufs[slot], .len = SIZE};
    m->out.iov = &s->iov[slot];
    m->out.iov_count = 1;
    m->user_context = (void *)(intptr_t)slot;
    if (px_send_request(s->conn, m) != 0)
        s->errors++;
}

static void start(struct side *s, px_conn *c)
{
    s->conn = c;
    for (int i = 0; i < WINDOW; i++)
        send_next(s, i);
}

static void check_response(struct side *s, px_msg *m)
{
    int slot = (int)(intptr_t)m->user_context;
    uint64_t seq = s->seq[slot];
    const uint8_t *p = m->in.iov_count ? m->in.iov[0].base : NULL;
    if (m->in.data_len != SIZE || m->in.iov_count != 1)
        s->bad++;
    else
        for (size_t i = 0; i < SIZE; i++)
            if (p[i] != byte_of(s->salt, seq, i)) {
                s->bad++;
                break;
            }
    px_release_response(m);
    s->done++;
    if (s->sent < TOTAL)
        send_next(s, slot);
    else if (finished(s))
        px_ctx_stop(s->ctx);
}

static void on_msg(px_conn *c, px_msg *m, int more, void *user)
{
    if (m->type == PX_MSG_RESPONSE) {
        check_response(user, m);
        return;
    }
    m->out.header = m->in.header;
    m->out.header_len = m->in.header_len;
    m->out.iov = m->in.iov;
    m->out.iov_count = m->in.iov_count;
    if (px_send_response(m) != 0)
        abort();
}

static void on_error(px_conn *c, px_msg *m, px_msg_dir dir, int reason, void *user)
{
    ((struct side *)user)->errors++;
}

/* The server side starts its own window once the connection is up. */
static void server_on_event(px_session *s, const px_event *ev, void *user)
{
    if (ev->type == PX_EV_CONN_ESTABLISHED)
        start(user, ev->conn);
}

static void run(const char *bind_uri)
{
    static struct side cl, sv;
    memset(&cl, 0, sizeof(cl));
    memset(&sv, 0, sizeof(sv));
    cl.salt = 1;
    sv.salt = 2;
    cl.other = &sv;
    sv.other = &cl;
    static const px_session_ops sops = {
        .on_msg = on_msg, .on_msg_error = on_error, .on_session_event = server_on_event};
    static const px_session_ops cops = {.on_msg = on_msg, .on_msg_error = on_error};
    px_ctx_opts o = {.queue_depth = WINDOW};
    px_server *srv;
    px_session *s;
    px_conn *c;
    char uri[256];
    ck_assert_int_eq(px_ctx_create(&o, &cl.ctx), 0);
    sv.ctx = cl.ctx;
    ck_assert_int_eq(px_server_bind(cl.ctx, bind_uri, &sops, &sv, &srv), 0);
    ck_assert_int_gt(px_server_uri(srv, uri, sizeof(uri)), 0);
    px_session_params p = {.uri = uri, .ops = &cops, .user = &cl};
    ck_assert_int_eq(px_session_create(cl.ctx, &p, &s), 0);
    ck_assert_int_eq(px_connect(s, cl.ctx, &c), 0);
    start(&cl, c);
    ck_assert_int_eq(px_ctx_run_timeout(cl.ctx, 60000), 0);
    for (struct side *x = &cl; x; x = x == &cl ? &sv : NULL) {
        ck_assert_uint_eq(x->done, TOTAL);
        ck_assert_uint_eq(x->errors, 0);
        ck_assert_msg(x->bad == 0, "%llu of %d echoes came back corrupted",
                      (unsigned long long)x->bad, TOTAL);
    }
    px_session_close(s);
    px_server_unbind(srv);
    px_ctx_run_timeout(cl.ctx, 2000);
    ck_assert_int_eq(px_ctx_destroy(cl.ctx), 0);
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

START_TEST(inplace_echo_shm)
{
    char uri[128];
    snprintf(uri, sizeof(uri), "shm://plexus-inplace-%d", (int)getpid());
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
    tcase_add_test(tc, inplace_echo_shm);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
