/* No allocation on the steady-state request/reply path.
 *
 * This binary replaces malloc/calloc/realloc with counting wrappers around
 * glibc's own allocator, runs a client and a server on one context over
 * tcp://, unix:// and shm://, warms up, then requires that 20,000 more round trips
 * — 64 B in place and 64 KiB read straight into pool buffers — allocate
 * nothing at all. (Not built under sanitizers, which own malloc.) */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "plexus/plexus.h"
#include "px_check.h"

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);

static uint64_t n_allocs;

void *malloc(size_t n)
{
    __atomic_add_fetch(&n_allocs, 1, __ATOMIC_RELAXED);
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b)
{
    __atomic_add_fetch(&n_allocs, 1, __ATOMIC_RELAXED);
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n)
{
    __atomic_add_fetch(&n_allocs, 1, __ATOMIC_RELAXED);
    return __libc_realloc(p, n);
}

#define WINDOW 16

struct bench;

/* The client's state: a window of requests kept full until `target`. */
struct bench {
    px_ctx *ctx;
    px_conn *conn;
    px_msg msgs[WINDOW];
    px_iov iov[WINDOW];
    uint8_t *payload;
    size_t size;
    uint64_t sent, done, target;
    int errors;
    int established;
};

static void server_on_msg(px_conn *c, px_msg *m, int more, void *user)
{
    /* Echo: the response points straight at the request's data. */
    m->out.header = m->in.header;
    m->out.header_len = m->in.header_len;
    m->out.iov = m->in.iov;
    m->out.iov_count = m->in.iov_count;
    if (px_send_response(m) != 0)
        ((struct bench *)user)->errors++;
}

static void send_one(struct bench *b, px_msg *m)
{
    m->out.iov = &b->iov[m - b->msgs];
    m->out.iov->base = b->payload;
    m->out.iov->len = b->size;
    m->out.iov_count = 1;
    if (px_send_request(b->conn, m) != 0)
        b->errors++;
    b->sent++;
}

static void client_on_msg(px_conn *c, px_msg *m, int more, void *user)
{
    /* No ck_assert in here: Check allocates to record every assertion. */
    struct bench *b = user;
    if (m->type != PX_MSG_RESPONSE || m->in.data_len != b->size || px_release_response(m) != 0)
        b->errors++;
    b->done++;
    if (b->sent < b->target)
        send_one(b, m);
    else if (b->done == b->target)
        px_ctx_stop(b->ctx);
}

static void client_on_error(px_conn *c, px_msg *m, px_msg_dir dir, int reason, void *user)
{
    ((struct bench *)user)->errors++;
}

static void client_on_event(px_session *s, const px_event *ev, void *user)
{
    struct bench *b = user;
    if (ev->type == PX_EV_CONN_ESTABLISHED)
        b->established = 1;
}

static const px_session_ops server_ops = {.on_msg = server_on_msg};
static const px_session_ops client_ops = {
    .on_msg = client_on_msg, .on_msg_error = client_on_error, .on_session_event = client_on_event};

/* Run until `total` round trips of `size` bytes have completed; returns the
 * allocations made meanwhile (checks come after the count is taken). */
static uint64_t run_round(struct bench *b, size_t size, uint64_t total)
{
    b->size = size;
    b->target = b->sent + total;
    uint64_t before = __atomic_load_n(&n_allocs, __ATOMIC_RELAXED);
    for (int i = 0; i < WINDOW && b->sent < b->target; i++)
        send_one(b, &b->msgs[i]);
    int rc = px_ctx_run_timeout(b->ctx, 20000);
    uint64_t allocs = __atomic_load_n(&n_allocs, __ATOMIC_RELAXED) - before;
    ck_assert_int_eq(rc, 0);
    ck_assert_uint_eq(b->done, b->target);
    ck_assert_int_eq(b->errors, 0);
    return allocs;
}

static void check_no_alloc(const char *bind_uri)
{
    static uint8_t payload[64 << 10];
    memset(payload, 0x5a, sizeof(payload));
    struct bench b = {.payload = payload};
    px_server *srv;
    px_session *s;
    char uri[256];
    ck_assert_int_eq(px_ctx_create(NULL, &b.ctx), 0);
    ck_assert_int_eq(px_server_bind(b.ctx, bind_uri, &server_ops, &b, &srv), 0);
    ck_assert_int_gt(px_server_uri(srv, uri, sizeof(uri)), 0);
    px_session_params p = {.uri = uri, .ops = &client_ops, .user = &b};
    ck_assert_int_eq(px_session_create(b.ctx, &p, &s), 0);
    ck_assert_int_eq(px_connect(s, b.ctx, &b.conn), 0);

    /* Warm-up: connections, task slabs and buffer classes come into being. */
    run_round(&b, 64, 2000);
    run_round(&b, sizeof(payload), 2000);
    ck_assert(b.established);

    uint64_t during = run_round(&b, 64, 10000);
    during += run_round(&b, sizeof(payload), 10000);
    ck_assert_msg(during == 0, "%llu allocations during 20,000 steady-state round trips",
                  (unsigned long long)during);

    px_session_close(s);
    px_server_unbind(srv);
    px_ctx_run_timeout(b.ctx, 2000);
    ck_assert_int_eq(px_ctx_destroy(b.ctx), 0);
}

START_TEST(noalloc_tcp)
{
    check_no_alloc("tcp://127.0.0.1:0");
}
END_TEST

START_TEST(noalloc_unix)
{
    char uri[128];
    snprintf(uri, sizeof(uri), "unix:///tmp/plexus-noalloc-%d.sock", (int)getpid());
    check_no_alloc(uri);
}
END_TEST

/* shm: 64 B through the rings in place, 64 KiB by CMA into pool buffers. */
START_TEST(noalloc_shm)
{
    char uri[128];
    snprintf(uri, sizeof(uri), "shm://plexus-noalloc-%d", (int)getpid());
    check_no_alloc(uri);
}
END_TEST

/* Caller-owned posts, timers and the calls of an application's own loop
 * (px_ctx_arm, px_ctx_timeout, px_ctx_poll) allocate nothing. */
static void bump(void *arg)
{
    ++*(int *)arg;
}

static void tick(px_timer *t, void *arg)
{
    ++*(int *)arg;
}

START_TEST(noalloc_post_node_timers_and_fd_loop)
{
    px_ctx *ctx;
    px_timer *t;
    px_post_node node;
    int ran = 0, ticks = 0, rc = 0;
    ck_assert_int_eq(px_ctx_create(NULL, &ctx), 0);
    ck_assert_int_ge(px_ctx_fd(ctx), 0);
    ck_assert_int_eq(px_timer_create(ctx, tick, &ticks, &t), 0);
    /* Warm-up: libev's watcher arrays. */
    rc |= px_ctx_post_node(ctx, &node, bump, &ran);
    rc |= px_timer_start(t, 0, 0);
    while (px_ctx_arm(ctx) != 0)
        px_ctx_poll(ctx);

    uint64_t before = __atomic_load_n(&n_allocs, __ATOMIC_RELAXED);
    for (int i = 0; i < 10000; i++) {
        rc |= px_ctx_post_node(ctx, &node, bump, &ran);
        rc |= px_timer_start(t, i % 2 ? 0 : 1000000, 0);
        while (px_ctx_arm(ctx) != 0)
            px_ctx_poll(ctx);
        rc |= px_ctx_timeout(ctx) < -1;
    }
    uint64_t allocs = __atomic_load_n(&n_allocs, __ATOMIC_RELAXED) - before;
    ck_assert_msg(allocs == 0, "%llu allocations in 10,000 posts, timers and arms",
                  (unsigned long long)allocs);
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(ran, 10001);
    ck_assert_int_ge(ticks, 5000);
    px_timer_destroy(t);
    ck_assert_int_eq(px_ctx_destroy(ctx), 0);
}
END_TEST

PX_CHECK_MAIN("noalloc", noalloc_tcp, noalloc_unix, noalloc_shm,
              noalloc_post_node_timers_and_fd_loop)
