/* The shm transport driven directly through its ops table, with a
 * hand-built px_tp_host on a private libev loop (no context, no sessions),
 * plus unit tests of its ring and its uid check. Both ends of a connection
 * live in this process unless a test forks a peer. */
#include <check.h>
#include <ev.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/mem.h" /* px_mr.id, for forging descriptors */
#include "plexus/context.h"
#include "plexus/error.h"
#include "plexus/memory.h"
#include "plexus/transport.h"
#include "transports/shm/shm.h" /* conn internals: stats, rings, for scribbling */

#define INLINE 16384u
#define MIB    (1u << 20)

static struct ev_loop *L;
static ev_timer tick; /* keeps EVRUN_ONCE from sleeping for long */
static const px_transport *T;
static px_tp *TPI;
static px_tp_host HOST;

#define RUN_UNTIL(cond)                                                                            \
    do {                                                                                           \
        ev_tstamp end_ = ev_time() + 60;                                                           \
        while (!(cond)) {                                                                          \
            ck_assert_msg(ev_time() < end_, "timed out waiting for %s", #cond);                    \
            ev_run(L, EVRUN_ONCE);                                                                 \
        }                                                                                          \
    } while (0)

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents) {}

static void setup(void)
{
    L = ev_loop_new(EVFLAG_AUTO);
    ck_assert_ptr_nonnull(L);
    ev_timer_init(&tick, tick_cb, 0.01, 0.01);
    ev_timer_start(L, &tick);
    T = px_transport_find("shm");
    ck_assert_ptr_nonnull(T);
    HOST = (px_tp_host){
        .loop = L, .limits = {.max_hdr = 4096, .max_data = 64u << 20}, .inline_threshold = INLINE};
    ck_assert_int_eq(T->init(&HOST, &TPI), 0);
}

static void teardown(void)
{
    T->fini(TPI);
    ev_timer_stop(L, &tick);
    ev_loop_destroy(L);
}

static const char *name_uri(const char *opts)
{
    static char buf[160];
    static int n;
    snprintf(buf, sizeof buf, "shm://pxtest-%d-%d%s", (int)getpid(), n++, opts ? opts : "");
    return buf;
}

static uint8_t pat(uint64_t id, size_t i)
{
    return (uint8_t)(id * 131u + i * 7u + (i >> 9));
}

/* ---- an endpoint: the observer of one conn ------------------------------------ */

enum { ASSIGN_GIVE, ASSIGN_DECLINE };

typedef struct ep {
    px_tp_conn *c;
    int connected, disconnected, errors, disc_reason, err_reason;
    uint64_t frames, bad, next_id, completes, complete_errs;
    int assign_mode;
    int echo;           /* answer every frame from its in-place bytes */
    int close_in_frame; /* close the conn from inside FRAME */
    uint8_t *dst;       /* RX_ASSIGN buffer */
    size_t dst_cap;
    px_iov dst_iov[3];
} ep;

typedef struct sreq {
    px_tp_send s;
    px_iov iov[4];
    uint8_t *buf;
    ep *owner;
    int done, status;
} sreq;

static int check_frame(const px_tp_rx *rx, const uint8_t *data)
{
    uint64_t id = rx->hdr.id;
    if (rx->hdr.hdr_len != 8 || memcmp(rx->app_hdr, &id, 8) != 0)
        return 0;
    for (size_t i = 0; i < rx->hdr.data_len; i++)
        if (data[i] != pat(id, i))
            return 0;
    return 1;
}

static void echo_back(ep *e, const px_tp_rx *rx);

static int ep_notify(void *self, int event, void *data)
{
    ep *e = self;
    switch (event) {
    case PX_TP_EV_CONNECTED:
        e->connected++;
        return 0;
    case PX_TP_EV_RX_ASSIGN: {
        px_tp_rx *rx = data;
        if (e->assign_mode == ASSIGN_DECLINE)
            return 1;
        if (e->dst_cap < rx->hdr.data_len) {
            free(e->dst);
            e->dst = malloc(rx->hdr.data_len);
            e->dst_cap = rx->hdr.data_len;
        }
        /* Three uneven pieces, to exercise the cursor. */
        size_t a = rx->hdr.data_len / 3, b = rx->hdr.data_len / 5;
        e->dst_iov[0] = (px_iov){e->dst, a, NULL};
        e->dst_iov[1] = (px_iov){e->dst + a, b, NULL};
        e->dst_iov[2] = (px_iov){e->dst + a + b, rx->hdr.data_len - a - b, NULL};
        rx->dst = e->dst_iov;
        rx->dst_count = 3;
        rx->owner_cookie = e;
        return 0;
    }
    case PX_TP_EV_FRAME: {
        px_tp_rx *rx = data;
        const uint8_t *d = rx->data ? rx->data : e->dst;
        if (rx->hdr.id != e->next_id || !check_frame(rx, d))
            e->bad++;
        e->next_id = rx->hdr.id + 1;
        e->frames++;
        if (e->echo)
            echo_back(e, rx);
        if (e->close_in_frame)
            e->c->ops->close(e->c);
        return 0;
    }
    case PX_TP_EV_SEND_COMPLETE: {
        sreq *r = ((px_tp_send *)data)->cookie;
        ck_assert_int_eq(r->done, 0); /* exactly once */
        r->done = 1;
        r->status = ((px_tp_send *)data)->status;
        e->completes++;
        if (r->status)
            e->complete_errs++;
        if (e->echo) {
            free(r->buf);
            free(r);
        }
        return 0;
    }
    case PX_TP_EV_DISCONNECTED:
        e->disconnected++;
        e->disc_reason = *(int *)data;
        return 0;
    case PX_TP_EV_ERROR:
        e->errors++;
        e->err_reason = *(int *)data;
        return 0;
    }
    return 0;
}

static void echo_back(ep *e, const px_tp_rx *rx)
{
    sreq *r = calloc(1, sizeof *r);
    r->owner = e;
    r->s.hdr = rx->hdr;
    r->s.hdr.type = PX_FT_ONEWAY;
    r->s.app_hdr = rx->app_hdr;
    /* In place: the transport must keep these bytes until the send is in
     * the other ring. */
    r->iov[0] = (px_iov){(void *)(rx->data ? rx->data : e->dst), rx->hdr.data_len, NULL};
    r->s.data = r->iov;
    r->s.data_count = rx->hdr.data_len ? 1 : 0;
    r->s.cookie = r;
    ck_assert_int_eq(e->c->ops->send(e->c, &r->s), 0);
}

/* ---- a listener that accepts into `srv` ------------------------------------------ */

typedef struct lst {
    px_tp_listener *l;
    ep *srv;
    int offered;
} lst;

static int lst_notify(void *self, int event, void *data)
{
    lst *l = self;
    if (event != PX_TP_EV_NEW_CONN)
        return 0;
    l->offered++;
    px_tp_conn *c = data;
    l->srv->c = c;
    px_observer o = {ep_notify, l->srv};
    ck_assert_int_eq(c->ops->accept(c, &o), 0);
    return 0;
}

static void pair_up(const char *uri, lst *l, ep *srv, ep *cli)
{
    px_uri u;
    ck_assert_int_eq(px_uri_parse(uri, &u), 0);
    l->srv = srv;
    px_observer lo = {lst_notify, l};
    ck_assert_int_eq(T->listen(TPI, &u, &lo, &l->l), 0);
    px_observer co = {ep_notify, cli};
    ck_assert_int_eq(T->connect(TPI, &u, &co, &cli->c), 0);
    RUN_UNTIL(cli->connected == 1 && l->offered == 1);
}

static void pair_close(lst *l, ep *srv, ep *cli)
{
    if (cli->c)
        T->close(cli->c);
    if (srv->c)
        T->close(srv->c);
    T->listener_close(l->l);
    free(srv->dst);
    free(cli->dst);
}

/* A request of `len` data bytes with id `id`, in `nseg` segments. */
static sreq *mk(ep *owner, uint64_t id, size_t len, int nseg)
{
    sreq *r = calloc(1, sizeof *r);
    r->owner = owner;
    r->buf = malloc(len ? len : 1);
    for (size_t i = 0; i < len; i++)
        r->buf[i] = pat(id, i);
    r->s.hdr = (px_frame_hdr){.version = PX_WIRE_VERSION,
                              .type = PX_FT_ONEWAY,
                              .hdr_len = 8,
                              .data_len = (uint32_t)len,
                              .id = id};
    r->s.app_hdr = &r->s.hdr.id; /* 8 bytes holding the id */
    size_t off = 0;
    for (int i = 0; i < nseg; i++) {
        size_t k = i == nseg - 1 ? len - off : len / (size_t)nseg;
        r->iov[i] = (px_iov){r->buf + off, k, NULL};
        off += k;
    }
    r->s.data = r->iov;
    r->s.data_count = len ? (uint32_t)nseg : 0;
    r->s.cookie = r;
    return r;
}

static void rfree(sreq *r)
{
    free(r->buf);
    free(r);
}

static shm_conn *SC(ep *e)
{
    return (shm_conn *)e->c;
}

/* ---- ring unit tests ------------------------------------------------------------- */

typedef struct ring_mem {
    shm_ring_ctl ctl;
    _Alignas(64) uint8_t data[SHM_RING_MIN];
} ring_mem;

static void ring_pair(ring_mem *m, shm_ring *p, shm_ring *c)
{
    memset(m, 0, sizeof *m);
    shm_ring_init(p, &m->ctl, m->data, SHM_RING_MIN);
    shm_ring_init(c, &m->ctl, m->data, SHM_RING_MIN);
}

static void put(shm_ring *p, uint32_t len, uint8_t v)
{
    uint8_t *d;
    ck_assert_int_eq(shm_ring_reserve(p, len, &d), 0);
    memset(d, v, len);
    shm_ring_commit(p, len, SHM_REC_FRAME);
}

static void get(shm_ring *c, uint32_t len, uint8_t v)
{
    uint16_t kind;
    const uint8_t *d;
    uint32_t n;
    ck_assert_int_eq(shm_ring_peek(c, &kind, &d, &n), 1);
    ck_assert_uint_eq(kind, SHM_REC_FRAME);
    ck_assert_uint_eq(n, len);
    for (uint32_t i = 0; i < n; i++)
        ck_assert_uint_eq(d[i], v);
    shm_ring_consume(c, n);
    shm_ring_release(c);
}

START_TEST(test_ring_wrap_full_batch)
{
    static ring_mem m;
    shm_ring p, c;
    ring_pair(&m, &p, &c);
    uint16_t kind;
    const uint8_t *d;
    uint32_t n;
    ck_assert_int_eq(shm_ring_peek(&c, &kind, &d, &n), 0);
    /* Wrap-around: odd sizes many times round the ring, each checked. */
    uint64_t laps_bytes = 0;
    for (uint32_t i = 0; laps_bytes < 5ull * SHM_RING_MIN; i++) {
        uint32_t len = 1 + (i * 7919u) % 40000u;
        put(&p, len, (uint8_t)i);
        shm_ring_publish(&p);
        get(&c, len, (uint8_t)i);
        laps_bytes += shm_rec_total(len);
    }
    /* Full: reserve until EAGAIN, nothing visible before publish. */
    int k = 0;
    uint8_t *w;
    while (shm_ring_reserve(&p, 1000, &w) == 0) {
        memset(w, k, 1000);
        shm_ring_commit(&p, 1000, SHM_REC_FRAME);
        k++;
    }
    ck_assert_int_gt(k, 100);
    ck_assert_int_eq(shm_ring_peek(&c, &kind, &d, &n), 0);
    shm_ring_publish(&p);
    /* Batch: everything published is there, in order; room returns. */
    get(&c, 1000, 0);
    ck_assert_int_eq(shm_ring_reserve(&p, 1000, &w), 0);
    memset(w, 0, 1000);
    shm_ring_commit(&p, 1000, SHM_REC_FRAME);
    shm_ring_publish(&p);
    for (int i = 1; i < k; i++)
        get(&c, 1000, (uint8_t)i);
    get(&c, 1000, 0);
    ck_assert_int_eq(shm_ring_peek(&c, &kind, &d, &n), 0);
    /* Too large for any ring of this size. */
    ck_assert_int_eq(shm_ring_reserve(&p, SHM_RING_MIN / 2, &w), -PX_EMSGSIZE);
}
END_TEST

START_TEST(test_ring_validation)
{
    static ring_mem m;
    shm_ring p, c;
    uint16_t kind;
    const uint8_t *d;
    uint32_t n;
    uint8_t *w;
    /* head beyond the ring, unaligned, or going backwards */
    uint64_t bad_heads[] = {SHM_RING_MIN + 64, 65, ~0ull};
    for (unsigned i = 0; i < 3; i++) {
        ring_pair(&m, &p, &c);
        m.ctl.head = bad_heads[i];
        ck_assert_int_eq(shm_ring_peek(&c, &kind, &d, &n), -PX_EPROTO);
    }
    /* bad kind, length past head, PAD not reaching the end */
    shm_rec bad[] = {{.len = 10, .kind = 0},
                     {.len = 10, .kind = 99},
                     {.len = 100, .kind = 2},
                     {.len = 48, .kind = SHM_REC_PAD},
                     {.len = 0xffffffffu, .kind = 2}};
    for (unsigned i = 0; i < 5; i++) {
        ring_pair(&m, &p, &c);
        memcpy(m.data, &bad[i], sizeof bad[i]);
        m.ctl.head = 64;
        ck_assert_int_eq(shm_ring_peek(&c, &kind, &d, &n), -PX_EPROTO);
    }
    /* a tail the consumer cannot have released */
    ring_pair(&m, &p, &c);
    for (int i = 0; i < 300; i++)
        if (shm_ring_reserve(&p, 1000, &w) == 0)
            shm_ring_commit(&p, 1000, SHM_REC_FRAME);
    m.ctl.tail = p.pos + 64;
    ck_assert_int_eq(shm_ring_reserve(&p, 1000, &w), -PX_EPROTO);
}
END_TEST

START_TEST(test_uid_check)
{
    shm_opts o;
    px_uri u;
    ck_assert_int_eq(px_uri_parse("shm://x", &u), 0);
    ck_assert_int_eq(shm_opts_parse(&u, 1, &o), 0);
    ck_assert(shm_uid_allowed(&o, 1000, 1000));
    ck_assert(!shm_uid_allowed(&o, 1000, 0));
    ck_assert(!shm_uid_allowed(&o, 0, 1000));
    ck_assert_int_eq(px_uri_parse("shm://x?allow_uid=any", &u), 0);
    ck_assert_int_eq(shm_opts_parse(&u, 1, &o), 0);
    ck_assert(shm_uid_allowed(&o, 1000, 1234));
    ck_assert_int_eq(px_uri_parse("shm://x?allow_uid=1234", &u), 0);
    ck_assert_int_eq(shm_opts_parse(&u, 1, &o), 0);
    ck_assert(shm_uid_allowed(&o, 1000, 1234));
    ck_assert(!shm_uid_allowed(&o, 1000, 1235));
    const char *bad[] = {"shm://x?allow_uid=", "shm://x?allow_uid=-1", "shm://x?allow_uid=12a",
                         "shm://x?cma=2",      "shm://x?ring=1000",    "shm://x?ring=4096",
                         "shm://x?bogus=1",    "shm://x?spin_us=abc"};
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(px_uri_parse(bad[i], &u), 0);
        ck_assert_int_eq(shm_opts_parse(&u, 1, &o), -PX_EBADOPT);
    }
    ck_assert_int_eq(px_uri_parse("shm://x?cma=0&ring=1048576&spin_us=5", &u), 0);
    ck_assert_int_eq(shm_opts_parse(&u, 0, &o), 0);
    ck_assert_int_eq(o.cma, 0);
    ck_assert_uint_eq(o.ring_size, 1048576);
    ck_assert_uint_eq(o.spin_us, 5);
}
END_TEST

/* ---- connections ------------------------------------------------------------------ */

START_TEST(test_connect_accept)
{
    lst l = {0};
    ep srv = {0}, cli = {0};
    const char *uri = name_uri(NULL);
    char want[160], buf[200];
    snprintf(want, sizeof want, "%s", uri);
    pair_up(uri, &l, &srv, &cli);
    ck_assert_int_gt(T->listener_uri(l.l, buf, sizeof buf), 0);
    ck_assert_str_eq(buf, want);
    ck_assert_int_gt(T->peer_uri(srv.c, buf, sizeof buf), 0);
    snprintf(want + strlen(want), sizeof want - strlen(want), "?pid=%d", (int)getpid());
    ck_assert_str_eq(buf, want);
    /* Same name again: taken. */
    px_uri u;
    px_tp_listener *l2;
    ck_assert_int_eq(px_uri_parse(uri, &u), 0);
    px_observer lo = {lst_notify, &l};
    ck_assert_int_eq(T->listen(TPI, &u, &lo, &l2), -PX_EADDRINUSE);
    /* A frame each way; completion never from inside send(). */
    sreq *a = mk(&cli, 0, 100, 1), *b = mk(&srv, 0, 0, 0);
    ck_assert_int_eq(T->send(cli.c, &a->s), 0);
    ck_assert_int_eq(T->send(srv.c, &b->s), 0);
    ck_assert_int_eq(a->done + b->done, 0);
    RUN_UNTIL(a->done && b->done && srv.frames == 1 && cli.frames == 1);
    ck_assert_int_eq(a->status, 0);
    ck_assert_uint_eq(srv.bad + cli.bad, 0);
    rfree(a);
    rfree(b);
    pair_close(&l, &srv, &cli);
    /* Nobody listening: refused, from the loop. */
    ep c2 = {0};
    px_observer co = {ep_notify, &c2};
    ck_assert_int_eq(px_uri_parse(name_uri(NULL), &u), 0);
    ck_assert_int_eq(T->connect(TPI, &u, &co, &c2.c), 0);
    ck_assert_int_eq(c2.disconnected, 0);
    RUN_UNTIL(c2.disconnected == 1);
    ck_assert_int_eq(c2.disc_reason, -PX_ECONNREFUSED);
    T->close(c2.c);
}
END_TEST

static void sizes_run(const char *opts, int assign_mode, int expect_cma)
{
    static const size_t sizes[] = {0,          1,     63,     64,  4095,         INLINE,
                                   INLINE + 1, 65536, 100000, MIB, 3 * MIB + 17, 16 * MIB};
    lst l = {0};
    ep srv = {.assign_mode = assign_mode}, cli = {.assign_mode = assign_mode};
    pair_up(name_uri(opts), &l, &srv, &cli);
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        for (int dir = 0; dir < 2; dir++) {
            ep *from = dir ? &srv : &cli, *to = dir ? &cli : &srv;
            sreq *r = mk(from, i, sizes[i], 1 + (int)(i % 4));
            uint64_t f = to->frames;
            ck_assert_int_eq(T->send(from->c, &r->s), 0);
            RUN_UNTIL(r->done && to->frames == f + 1);
            ck_assert_int_eq(r->status, 0);
            ck_assert_msg(to->bad == 0, "size %zu dir %d corrupted", sizes[i], dir);
            rfree(r);
        }
    }
    shm_stats *s = &SC(&cli)->stats, *t = &SC(&srv)->stats;
    if (expect_cma) {
        ck_assert_uint_ge(s->tx_cma, 3);
        ck_assert_uint_ge(t->rx_cma, 3);
        ck_assert_uint_ge(t->tx_cma, 3);
        ck_assert_uint_eq(s->tx_chunked + t->tx_chunked, 0);
    } else {
        ck_assert_uint_ge(s->tx_chunked, 3);
        ck_assert_uint_ge(t->rx_chunked, 3);
        ck_assert_uint_eq(s->tx_cma + t->tx_cma, 0);
    }
    pair_close(&l, &srv, &cli);
}

START_TEST(test_sizes_cma)
{
    sizes_run(NULL, _i ? ASSIGN_DECLINE : ASSIGN_GIVE, 1);
}
END_TEST

START_TEST(test_sizes_fallback)
{
    sizes_run("?cma=0", _i ? ASSIGN_DECLINE : ASSIGN_GIVE, 0);
}
END_TEST

/* 100,000 frames, a window of 1000 in flight, FIFO checked by id. */
START_TEST(test_fifo_100k)
{
    enum { N = 100000, W = 1000 };
    lst l = {0};
    ep srv = {0}, cli = {0};
    pair_up(name_uri(NULL), &l, &srv, &cli);
    static sreq *win[W];
    uint64_t sent = 0;
    ev_tstamp end = ev_time() + 120;
    while (srv.frames < N) {
        ck_assert(ev_time() < end);
        for (int i = 0; i < W && sent < N; i++) {
            if (win[i] && !win[i]->done)
                continue;
            if (win[i])
                rfree(win[i]);
            win[i] = mk(&cli, sent, (sent * 37) % 300, 1);
            ck_assert_int_eq(T->send(cli.c, &win[i]->s), 0);
            sent++;
        }
        ev_run(L, EVRUN_ONCE);
    }
    RUN_UNTIL(cli.completes == N);
    ck_assert_uint_eq(srv.bad, 0);
    ck_assert_uint_eq(cli.complete_errs, 0);
    for (int i = 0; i < W; i++)
        if (win[i])
            rfree(win[i]);
    pair_close(&l, &srv, &cli);
}
END_TEST

/* The server echoes every frame from its in-place bytes while the client
 * floods it: responses queue, and the server's rx ring must be held until
 * they are out. Every echoed byte is checked. */
START_TEST(test_inplace_echo_pinned)
{
    enum { N = 3000 };
    lst l = {0};
    ep srv = {.echo = 1}, cli = {0};
    pair_up(name_uri(NULL), &l, &srv, &cli);
    static sreq *r[N];
    for (int i = 0; i < N; i++) {
        r[i] = mk(&cli, i, 4000, 2);
        ck_assert_int_eq(T->send(cli.c, &r[i]->s), 0);
    }
    RUN_UNTIL(cli.frames == N && srv.completes == N);
    ck_assert_uint_eq(srv.bad, 0);
    ck_assert_uint_eq(cli.bad, 0);
    ck_assert_uint_eq(srv.complete_errs, 0);
    RUN_UNTIL(cli.completes == N);
    for (int i = 0; i < N; i++)
        rfree(r[i]);
    pair_close(&l, &srv, &cli);
}
END_TEST

/* close() with sends still queued: every one completes exactly once, before
 * close returns; and close from inside FRAME is safe. */
START_TEST(test_close_queued_and_in_upcall)
{
    enum { N = 1000 };
    lst l = {0};
    ep srv = {0}, cli = {0};
    pair_up(name_uri(NULL), &l, &srv, &cli);
    static sreq *r[N];
    for (int i = 0; i < N; i++) {
        r[i] = mk(&cli, i, 2000, 1);
        ck_assert_int_eq(T->send(cli.c, &r[i]->s), 0);
    }
    T->close(cli.c);
    cli.c = NULL;
    ck_assert_uint_eq(cli.completes, N);
    ck_assert_uint_gt(cli.complete_errs, 0); /* the ring filled: some never left */
    for (int i = 0; i < N; i++)
        rfree(r[i]);
    srv.close_in_frame = 1;
    RUN_UNTIL(srv.frames >= 1);
    srv.c = NULL;
    ck_assert_uint_eq(srv.frames, 1);
    T->listener_close(l.l);
    free(srv.dst);
}
END_TEST

/* ---- a peer process ------------------------------------------------------------------ */

/* The child: connect with its own loop and instance, send one frame of
 * `len` bytes, then wait to be killed. */
static void child_run(const char *uri, size_t len)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    px_tp_host host = HOST;
    host.loop = loop;
    px_tp *tp;
    if (T->init(&host, &tp))
        _exit(2);
    L = loop;
    ep cli = {0};
    px_uri u;
    px_uri_parse(uri, &u);
    px_observer co = {ep_notify, &cli};
    if (T->connect(tp, &u, &co, &cli.c))
        _exit(3);
    while (!cli.connected)
        ev_run(loop, EVRUN_ONCE);
    sreq *r = mk(&cli, 0, len, 1);
    T->send(cli.c, &r->s);
    for (;;)
        ev_run(loop, EVRUN_ONCE);
}

START_TEST(test_peer_sigkill)
{
    const char *uri = name_uri(NULL);
    char u2[160];
    snprintf(u2, sizeof u2, "%s", uri);
    lst l = {0};
    ep srv = {0};
    px_uri u;
    ck_assert_int_eq(px_uri_parse(u2, &u), 0);
    l.srv = &srv;
    px_observer lo = {lst_notify, &l};
    ck_assert_int_eq(T->listen(TPI, &u, &lo, &l.l), 0);
    /* _i == 1: the child's frame is large (CMA from its memory). */
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        child_run(u2, _i ? 8 * MIB : 1000);
    RUN_UNTIL(srv.frames == 1);
    ck_assert_uint_eq(srv.bad, 0);
    /* A send of ours is in flight when it dies. */
    sreq *r = mk(&srv, 0, 4 * MIB, 1);
    ck_assert_int_eq(T->send(srv.c, &r->s), 0);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    RUN_UNTIL(srv.disconnected == 1);
    ck_assert_int_eq(r->done, 1); /* completed exactly once, before DISCONNECTED */
    ck_assert(srv.disc_reason == -PX_ECONNRESET || srv.disc_reason == -PX_EDISCONNECTED);
    T->close(srv.c);
    rfree(r);
    T->listener_close(l.l);
    free(srv.dst);
}
END_TEST

/* ---- a peer that scribbles on the segment ----------------------------------------------- */

static void wake(ep *e)
{
    uint64_t one = 1;
    ck_assert_int_eq(write(SC(e)->efd_self, &one, sizeof one), 8);
}

/* What the client (the hostile peer) writes into the server's rx ring. */
static void scribble(int kind, shm_conn *s, unsigned seed)
{
    shm_ring_ctl *ctl = s->rx.ctl;
    uint8_t *data = s->rx.data;
    uint64_t head = s->rx.pos;
    switch (kind) {
    case 0: /* head far ahead */
        ctl->head = head + (1ull << 40);
        break;
    case 1: /* head backwards */
        ctl->head = head - 64;
        break;
    case 2: /* record header with a huge length */
        memcpy(data + (head & (s->rx.size - 1)), &(shm_rec){.len = 0x7fffffff, .kind = 2}, 16);
        ctl->head = head + 64;
        break;
    case 3: /* a frame with a bad magic */
        memset(data + (head & (s->rx.size - 1)), 0xee, 256);
        memcpy(data + (head & (s->rx.size - 1)), &(shm_rec){.len = 100, .kind = 2}, 16);
        ctl->head = head + 128;
        break;
    case 4: /* CMA descriptor pointing nowhere */
    case 5: /* a CHUNK out of nowhere */
    default: {
        /* random bytes everywhere, then a plausible head */
        srand(seed);
        for (uint32_t i = 0; i < s->rx.size; i += 4) {
            uint32_t v = (uint32_t)rand();
            memcpy(data + i, &v, 4);
        }
        if (kind == 5)
            memcpy(data + (head & (s->rx.size - 1)), &(shm_rec){.len = 64, .kind = 5}, 16);
        ctl->head = head + 64 * (1 + (uint64_t)(rand() % 4000));
        ctl->tail = (uint64_t)rand() << 6;
        ctl->acked = (uint64_t)rand();
        break;
    }
    }
}

START_TEST(test_scribble)
{
    for (int round = 0; round < 30; round++) {
        lst l = {0};
        ep srv = {0}, cli = {0};
        pair_up(name_uri(NULL), &l, &srv, &cli);
        /* Some honest traffic first, so the cursors are not at 0. */
        sreq *r = mk(&cli, 0, 300 + round * 1000, 1);
        ck_assert_int_eq(T->send(cli.c, &r->s), 0);
        RUN_UNTIL(srv.frames == 1 && r->done);
        rfree(r);
        scribble(round < 6 ? round : 6, SC(&srv), (unsigned)round);
        wake(&srv);
        /* The server must drop the conn with ERROR then DISCONNECTED, or -
         * when the garbage happened to be harmless - stay up. */
        ev_tstamp end = ev_time() + 0.5;
        while (!srv.disconnected && ev_time() < end)
            ev_run(L, EVRUN_ONCE);
        if (round < 6 || srv.disconnected) {
            ck_assert_msg(srv.errors == 1 && srv.disconnected == 1,
                          "round %d: errors %d disconnected %d", round, srv.errors,
                          srv.disconnected);
            ck_assert_int_ne(srv.err_reason, 0);
        }
        pair_close(&l, &srv, &cli);
    }
}
END_TEST

/* A hostile tail in our tx ring is caught by send() and reported from the
 * loop. */
START_TEST(test_scribble_tail)
{
    lst l = {0};
    ep srv = {0}, cli = {0};
    pair_up(name_uri(NULL), &l, &srv, &cli);
    shm_conn *c = SC(&cli);
    c->tx.ctl->tail = 1ull << 50;
    /* Fill the ring so the producer must re-read the tail. */
    static sreq *r[200];
    for (int i = 0; i < 200; i++) {
        r[i] = mk(&cli, i, 8000, 1);
        ck_assert_int_eq(T->send(cli.c, &r[i]->s), 0);
    }
    ck_assert_int_eq(cli.errors, 0); /* never from inside send() */
    RUN_UNTIL(cli.disconnected == 1);
    ck_assert_int_eq(cli.errors, 1);
    ck_assert_int_eq(cli.err_reason, -PX_EPROTO);
    for (int i = 0; i < 200; i++) {
        ck_assert_int_eq(r[i]->done, 1);
        rfree(r[i]);
    }
    pair_close(&l, &srv, &cli);
}
END_TEST

START_TEST(test_bad_uris)
{
    px_uri u;
    px_tp_listener *l;
    px_tp_conn *c;
    px_observer o = {ep_notify, NULL};
    char longname[200];
    memset(longname, 'a', sizeof longname);
    memcpy(longname, "shm://", 6);
    longname[sizeof longname - 1] = '\0';
    ck_assert_int_eq(px_uri_parse(longname, &u), 0);
    ck_assert_int_eq(T->listen(TPI, &u, &o, &l), -PX_ENAMETOOLONG);
    ck_assert_int_eq(px_uri_parse("shm://x?nope=1", &u), 0);
    ck_assert_int_eq(T->listen(TPI, &u, &o, &l), -PX_EBADOPT);
    ck_assert_int_eq(T->connect(TPI, &u, &o, &c), -PX_EBADOPT);
}
END_TEST

/* poll() alone moves frames: no loop iteration needed while both are awake. */
START_TEST(test_poll)
{
    lst l = {0};
    ep srv = {0}, cli = {0};
    pair_up(name_uri(NULL), &l, &srv, &cli);
    for (int i = 0; i < 1000; i++) {
        sreq *r = mk(&cli, i, 64, 1);
        ck_assert_int_eq(T->send(cli.c, &r->s), 0);
        for (int k = 0; k < 1000000 && !(r->done && srv.frames == (uint64_t)i + 1); k++)
            T->poll(TPI);
        if (!(r->done && srv.frames == (uint64_t)i + 1))
            RUN_UNTIL(r->done && srv.frames == (uint64_t)i + 1); /* went to sleep: still works */
        rfree(r);
    }
    ck_assert_uint_eq(srv.bad, 0);
    pair_close(&l, &srv, &cli);
}
END_TEST

/* ---- the shared pool: px_mem_alloc() memory moved by memcpy from a mapping ---- */

static px_ctx *CTX; /* px_mem_alloc() wants a context; the transport ignores it */

typedef struct region {
    uint8_t *addr;
    px_mr *mr;
} region;

static void region_new(region *g, size_t len)
{
    if (!CTX)
        ck_assert_int_eq(px_ctx_create(NULL, &CTX), 0);
    void *a;
    ck_assert_int_eq(px_mem_alloc(CTX, len, &a, &g->mr), 0);
    g->addr = a;
}

static void ctx_down(void)
{
    ck_assert_int_eq(px_ctx_destroy(CTX), 0);
    CTX = NULL;
}

/* Like mk(), but segment i lies in g[i % ng] at `at` + (its offset in the
 * data) + 8 * i (not page aligned, on purpose), registered with its region. */
static sreq *mk_pool(ep *owner, uint64_t id, size_t len, int nseg, const region *g, int ng,
                     size_t at)
{
    sreq *r = mk(owner, id, len, nseg);
    size_t off = 0;
    for (int i = 0; i < nseg; i++) {
        uint8_t *d = g[i % ng].addr + at + off + 8 * (size_t)i;
        memcpy(d, r->buf + off, r->iov[i].len);
        off += r->iov[i].len;
        r->iov[i] = (px_iov){d, r->iov[i].len, g[i % ng].mr};
    }
    free(r->buf);
    r->buf = NULL;
    return r;
}

static void send_wait(ep *from, ep *to, sreq *r)
{
    uint64_t f = to->frames;
    ck_assert_int_eq(T->send(from->c, &r->s), 0);
    RUN_UNTIL(r->done && to->frames == f + 1);
    ck_assert_int_eq(r->status, 0);
    ck_assert_uint_eq(to->bad, 0);
    rfree(r);
}

/* 1..4 segments in four regions, both directions, sizes over the bulk
 * threshold; _i: 0 give, 1 decline, 2 give with ?cma=0 (the pool needs no
 * ptrace permission). */
START_TEST(test_pool_segments)
{
    static const size_t sizes[] = {100000, MIB, 3 * MIB + 17};
    region g[4];
    for (int i = 0; i < 4; i++)
        region_new(&g[i], 4 * MIB);
    lst l = {0};
    int mode = _i == 1 ? ASSIGN_DECLINE : ASSIGN_GIVE;
    ep srv = {.assign_mode = mode}, cli = {.assign_mode = mode};
    pair_up(name_uri(_i == 2 ? "?cma=0" : NULL), &l, &srv, &cli);
    uint64_t n = 0;
    for (unsigned i = 0; i < 3; i++)
        for (int nseg = 1; nseg <= 4; nseg++, n++)
            for (int dir = 0; dir < 2; dir++) {
                ep *from = dir ? &srv : &cli, *to = dir ? &cli : &srv;
                send_wait(from, to, mk_pool(from, n, sizes[i], nseg, g, 4, 100));
            }
    shm_stats *s = &SC(&cli)->stats, *t = &SC(&srv)->stats;
    ck_assert_uint_eq(s->tx_pool, n);
    ck_assert_uint_eq(t->rx_pool, n);
    ck_assert_uint_eq(t->tx_pool, n);
    ck_assert_uint_eq(s->rx_pool, n);
    ck_assert_uint_eq(s->tx_cma + t->tx_cma + s->tx_chunked + t->tx_chunked, 0);
    ck_assert_uint_eq(s->pool_announced, 4); /* once per region and conn */
    ck_assert_uint_eq(t->pool_mapped, 4);
    ck_assert_uint_eq(t->pool_announced, 4);
    ck_assert_uint_eq(s->pool_mapped, 4);
    /* Mixed: one segment of plain memory sends the frame the old way. */
    sreq *r = mk_pool(&cli, n, MIB, 2, g, 4, 0);
    r->iov[1].mr = NULL;
    send_wait(&cli, &srv, r);
    ck_assert_uint_eq(s->tx_pool, n);
    ck_assert_uint_eq(s->tx_cma + s->tx_chunked, 1);
    pair_close(&l, &srv, &cli);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(px_mem_free(g[i].mr), 0);
    ctx_down();
}
END_TEST

/* One region used by two conns at once: announced on each. */
START_TEST(test_pool_two_conns)
{
    region g;
    region_new(&g, 8 * MIB);
    lst l1 = {0}, l2 = {0};
    ep s1 = {0}, c1 = {0}, s2 = {0}, c2 = {0};
    pair_up(name_uri(NULL), &l1, &s1, &c1);
    pair_up(name_uri(NULL), &l2, &s2, &c2);
    for (uint64_t k = 0; k < 4; k++) {
        sreq *a = mk_pool(&c1, k, 2 * MIB, 1 + (int)k, &g, 1, 0);
        sreq *b = mk_pool(&c2, k, 2 * MIB, 1, &g, 1, 4 * MIB);
        ck_assert_int_eq(T->send(c1.c, &a->s), 0);
        ck_assert_int_eq(T->send(c2.c, &b->s), 0);
        RUN_UNTIL(a->done && b->done && s1.frames == k + 1 && s2.frames == k + 1);
        ck_assert_int_eq(a->status + b->status, 0);
        rfree(a);
        rfree(b);
    }
    ck_assert_uint_eq(s1.bad + s2.bad, 0);
    ck_assert_uint_eq(SC(&c1)->stats.tx_pool, 4);
    ck_assert_uint_eq(SC(&c2)->stats.tx_pool, 4);
    ck_assert_uint_eq(SC(&c1)->stats.pool_announced, 1);
    ck_assert_uint_eq(SC(&c2)->stats.pool_announced, 1);
    ck_assert_uint_eq(SC(&s1)->stats.pool_mapped, 1);
    ck_assert_uint_eq(SC(&s2)->stats.pool_mapped, 1);
    pair_close(&l1, &s1, &c1);
    pair_close(&l2, &s2, &c2);
    ck_assert_int_eq(px_mem_free(g.mr), 0);
    ctx_down();
}
END_TEST

/* Regions freed by the sender once their frames completed, while the peer
 * still maps them; more regions than a conn keeps, so old ones are
 * evicted; a new region may reuse a freed one's address but never its id. */
START_TEST(test_pool_free_and_evict)
{
    lst l = {0};
    ep srv = {0}, cli = {0};
    pair_up(name_uri(NULL), &l, &srv, &cli);
    enum { N = SHM_POOL_MAX + 9 };
    for (int i = 0; i < N; i++) {
        region g;
        region_new(&g, 256 << 10);
        send_wait(&cli, &srv, mk_pool(&cli, (uint64_t)i, 200000, 1 + i % 3, &g, 1, 64));
        ck_assert_int_eq(px_mem_free(g.mr), 0); /* the peer still has it mapped */
    }
    /* Two regions alive at once, reused, after all that. */
    region g[2];
    region_new(&g[0], MIB);
    region_new(&g[1], MIB);
    for (int i = N; i < N + 8; i++)
        send_wait(&cli, &srv, mk_pool(&cli, (uint64_t)i, 300000, 2, g, 2, 0));
    shm_stats *s = &SC(&cli)->stats, *t = &SC(&srv)->stats;
    ck_assert_uint_eq(s->tx_pool, N + 8);
    ck_assert_uint_eq(s->pool_announced, N + 2);
    ck_assert_uint_eq(t->pool_mapped, N + 2);
    ck_assert_uint_eq(t->rx_pool, N + 8);
    ck_assert_int_eq(srv.errors + cli.errors, 0);
    pair_close(&l, &srv, &cli);
    ck_assert_int_eq(px_mem_free(g[0].mr), 0);
    ck_assert_int_eq(px_mem_free(g[1].mr), 0);
    ctx_down();
}
END_TEST

/* A pool record written by hand into the client's tx ring: descriptor
 * {1 segment, `flags`} naming (id, off, len). */
static void inject_pool(ep *cli, uint32_t flags, uint64_t id, uint64_t off, uint64_t len)
{
    shm_conn *c = SC(cli);
    uint32_t ext = 8 + 24, rl = PX_FRAME_HDR_LEN + ext + 8;
    px_frame_hdr h = {.version = PX_WIRE_VERSION,
                      .type = PX_FT_ONEWAY,
                      .hdr_len = 8,
                      .ext_len = (uint16_t)ext,
                      .data_len = (uint32_t)len,
                      .id = 77};
    uint8_t *p;
    ck_assert_int_eq(shm_ring_reserve(&c->tx, rl, &p), 0);
    px_frame_encode(&h, p);
    uint32_t hd[2] = {1, flags};
    uint64_t sg[3] = {id, off, len};
    memcpy(p + PX_FRAME_HDR_LEN, hd, sizeof hd);
    memcpy(p + PX_FRAME_HDR_LEN + 8, sg, sizeof sg);
    memcpy(p + PX_FRAME_HDR_LEN + ext, &h.id, 8);
    shm_ring_commit(&c->tx, rl, SHM_REC_CMA);
    shm_ring_publish(&c->tx);
}

/* A region announcement written by hand (the layout of shm_pool.c's). */
static void inject_announce(ep *cli, uint64_t id, uint64_t size, int fd)
{
    struct {
        uint32_t magic, type;
        uint64_t id, size, evict;
    } m = {0x6c6f6f70u, 1, id, size, 0};
    ck_assert_int_eq(shm_rdv_send_fds(SC(cli)->sock, &m, sizeof m, &fd, 1), 0);
}

/* A hostile peer's pool descriptors and announcements: ERROR then
 * DISCONNECTED, no crash. */
START_TEST(test_pool_hostile)
{
    region g;
    region_new(&g, MIB);
    for (int round = 0; round < 7; round++) {
        lst l = {0};
        ep srv = {0}, cli = {0};
        pair_up(name_uri(NULL), &l, &srv, &cli);
        /* An honest frame first, so the region is mapped. */
        send_wait(&cli, &srv, mk_pool(&cli, 0, 100000, 1, &g, 1, 0));
        uint64_t id = g.mr->id, at;
        int fds[2], mfd;
        switch (round) {
        case 0: /* offset past the end */
            inject_pool(&cli, 1, id, MIB, 4096);
            break;
        case 1: /* length past the end */
            inject_pool(&cli, 1, id, 4096, MIB);
            break;
        case 2: /* offset + length wrapping */
            inject_pool(&cli, 1, id, UINT64_MAX - 100, 200000);
            break;
        case 3: /* a region never announced */
            inject_pool(&cli, 1, id + 1000000, 0, 100000);
            break;
        case 4: /* unknown descriptor flags */
            inject_pool(&cli, 6, id, 0, 100000);
            break;
        case 5: /* an announcement with a pipe, not a memfd */
            ck_assert_int_eq(pipe(fds), 0);
            inject_announce(&cli, 999999, 4096, fds[0]);
            close(fds[0]);
            close(fds[1]);
            break;
        case 6: /* an announcement of the wrong size */
            ck_assert_int_eq(px_mr_fd(g.mr, &mfd, &at), 0);
            inject_announce(&cli, 999998, 2 * MIB, mfd);
            break;
        }
        wake(&srv);
        RUN_UNTIL(srv.disconnected == 1);
        ck_assert_int_eq(srv.errors, 1);
        ck_assert_int_eq(srv.err_reason, -PX_EPROTO);
        pair_close(&l, &srv, &cli);
    }
    ck_assert_int_eq(px_mem_free(g.mr), 0);
    ctx_down();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("shm_transport");
    TCase *tc = tcase_create("shm");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_ring_wrap_full_batch);
    tcase_add_test(tc, test_ring_validation);
    tcase_add_test(tc, test_uid_check);
    tcase_add_test(tc, test_bad_uris);
    tcase_add_test(tc, test_connect_accept);
    tcase_add_loop_test(tc, test_sizes_cma, 0, 2);
    tcase_add_loop_test(tc, test_sizes_fallback, 0, 2);
    tcase_add_test(tc, test_fifo_100k);
    tcase_add_test(tc, test_inplace_echo_pinned);
    tcase_add_test(tc, test_close_queued_and_in_upcall);
    tcase_add_loop_test(tc, test_peer_sigkill, 0, 2);
    tcase_add_test(tc, test_scribble);
    tcase_add_test(tc, test_scribble_tail);
    tcase_add_test(tc, test_poll);
    tcase_add_loop_test(tc, test_pool_segments, 0, 3);
    tcase_add_test(tc, test_pool_two_conns);
    tcase_add_test(tc, test_pool_free_and_evict);
    tcase_add_test(tc, test_pool_hostile);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
