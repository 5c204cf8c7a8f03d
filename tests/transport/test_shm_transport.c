/* What is particular to the shm transport (shm://name), driven through its
 * ops table with the transport harness (tp_harness.h: two contexts, typed
 * upcalls, every upcall checked). Everything every transport must do is in
 * the contract suite (test_contract.c), run for shm:// and shm://?cma=0
 * there; here: unit tests of the ring and of the uid check, URI errors,
 * which bulk path (CMA, chunked) large frames really took, echoing from
 * receive memory (copied aside, never read after reuse), a peer process
 * killed with SIGKILL, a peer scribbling on the shared segment, and the
 * shared pool (px_mem_alloc() memory moved by memcpy from a mapping).
 *
 * PX_SHM_ONLY=name[,name...] runs only those cases. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "plexus/context.h"
#include "plexus/error.h"
#include "plexus/memory.h"
#include "plexus/transport.h"
#include "tp_harness.h"
#include "transports/shm/shm.h" /* shm_conn: stats, rings, for scribbling */

#define TMPL       "shm://pxshm-%p"
#define TMPL_NOCMA "shm://pxshm-%p?cma=0"

static void setup(void)
{
    h_setup("shm", NULL);
}

static void teardown(void)
{
    h_teardown();
}

static shm_conn *SC(const h_ep *e)
{
    return (shm_conn *)(void *)e->c;
}

/* Have the conn's loop look at its ring (as the peer would after writing). */
static void wake(const h_ep *e)
{
    uint64_t one = 1;
    ck_assert_int_eq(write(SC(e)->efd_self, &one, sizeof one), 8);
}

/* Send m, waiting for room while refused, then until it has arrived and
 * every send of its sender is finished, without error. */
static void send_one(h_msg *m)
{
    h_ep *from = m->from, *to = m->to;
    uint64_t f = to->frames;
    for (;;) {
        int rc = h_send(m);
        if (rc != -PX_EAGAIN) {
            ck_assert_msg(rc >= 0, "%s: send of %u bytes: %s", from->name, m->s.hdr.data_len,
                          px_errname(rc));
            break;
        }
        int r = from->rooms;
        H_RUN_UNTIL(from->rooms > r);
    }
    H_RUN_UNTIL(to->frames == f + 1 && h_all_finished(from));
    ck_assert_uint_eq(from->done_errs, 0);
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
    /* head beyond the ring, unaligned, or going backwards; in front of a
     * good record, so that only the head can be found wrong */
    uint64_t bad_heads[] = {SHM_RING_MIN + 64, 65, ~0ull};
    for (unsigned i = 0; i < 3; i++) {
        ring_pair(&m, &p, &c);
        put(&p, 10, 1);
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

/* ---- URI errors ------------------------------------------------------------------ */

static int check_rc(const char *uri, int listener)
{
    px_uri u;
    int rc = px_uri_parse(uri, &u);
    return rc ? rc : H_T->check_uri(&u, listener);
}

START_TEST(test_bad_uris)
{
    char longname[200];
    memset(longname, 'a', sizeof longname);
    memcpy(longname, "shm://", 6);
    longname[sizeof longname - 1] = '\0';
    h_ep *e = h_ep_new("e", H_CLI);
    ck_assert_int_eq(h_listen_rc(longname), -PX_ENAMETOOLONG);
    ck_assert_int_eq(h_connect_rc(e, longname), -PX_ENAMETOOLONG);
    ck_assert_int_eq(check_rc(longname, 1), -PX_ENAMETOOLONG);
    ck_assert_int_eq(check_rc(longname, 0), -PX_ENAMETOOLONG);
    ck_assert_int_eq(h_listen_rc("shm://x?nope=1"), -PX_EBADOPT);
    ck_assert_int_eq(h_connect_rc(e, "shm://x?nope=1"), -PX_EBADOPT);
    ck_assert_int_eq(check_rc("shm://x?nope=1", 1), -PX_EBADOPT);
    ck_assert_int_eq(check_rc("shm://x?nope=1", 0), -PX_EBADOPT);
    /* ?pid= (what peer_uri() writes) is for connect only. */
    ck_assert_int_eq(h_listen_rc("shm://x?pid=1"), -PX_EBADOPT);
    ck_assert_int_eq(check_rc("shm://x?pid=1", 0), 0);
    ck_assert_ptr_null(e->c);
    ck_assert_uint_eq(e->upcalls, 0);
}
END_TEST

/* ---- which path large frames took ------------------------------------------------------ */

/* Frames of every size both ways, one at a time; _i bit 0: declined (else
 * assigned), bit 1: ?cma=0. The transfer counters say how the large ones
 * went: by CMA, or chunked through the ring when CMA is off, never the
 * other. (That every byte arrives is the contract suite's, and the
 * harness's here.) */
START_TEST(test_bulk_paths)
{
    int mode = _i & 1 ? H_DECLINE : H_GIVE, cma = !(_i & 2);
    uint32_t T = h_inline(H_SRV);
    const uint32_t sizes[] = {0,     1,      63,      64,  4095,         T,
                              T + 1, 65536u, 100000u, MIB, 3 * MIB + 17, 16 * MIB};
    h_pair p;
    h_pair_open(&p, cma ? TMPL : TMPL_NOCMA);
    p.cli->assign_mode = p.srv->assign_mode = mode;
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        for (int dir = 0; dir < 2; dir++) {
            h_ep *from = dir ? p.srv : p.cli, *to = dir ? p.cli : p.srv;
            send_one(h_msg_new(from, to, sizes[i], 1 + i % 4));
        }
    shm_stats *s = &SC(p.cli)->stats, *t = &SC(p.srv)->stats;
    if (cma) {
        ck_assert_uint_ge(s->tx_cma, 3);
        ck_assert_uint_ge(t->rx_cma, 3);
        ck_assert_uint_ge(t->tx_cma, 3);
        ck_assert_uint_ge(s->rx_cma, 3);
        ck_assert_uint_eq(s->tx_chunked + t->tx_chunked, 0);
    } else {
        ck_assert_uint_ge(s->tx_chunked, 3);
        ck_assert_uint_ge(t->rx_chunked, 3);
        ck_assert_uint_ge(t->tx_chunked, 3);
        ck_assert_uint_ge(s->rx_chunked, 3);
        ck_assert_uint_eq(s->tx_cma + t->tx_cma, 0);
    }
    ck_assert_uint_eq(s->tx_pool + t->tx_pool, 0); /* plain memory */
}
END_TEST

/* A context whose inline threshold is over the ring's bulk size: frames
 * between the two go as bulk records (CMA or chunked), and are still not
 * offered to rx_assign, which is for frames over the threshold (the
 * harness checks that), but delivered in place. Its own contexts: no
 * fixture. */
START_TEST(test_bulk_under_threshold)
{
    int cma = !(_i & 1);
    px_ctx_opts o = {.inline_threshold = 200000};
    h_setup("shm", &o);
    h_pair p;
    h_pair_open(&p, cma ? TMPL : TMPL_NOCMA);
    const uint32_t sizes[] = {70000, 100000, 200000, 200001, MIB};
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        send_one(h_msg_new(p.cli, p.srv, sizes[i], 1 + i % 3));
    shm_stats *t = &SC(p.srv)->stats;
    ck_assert_uint_ge(cma ? t->rx_cma : t->rx_chunked, 3);
    ck_assert_uint_eq(p.srv->assigns, 2); /* 200001 and 1 MiB only */
    ck_assert_uint_eq(p.srv->inplace, 3);
    h_teardown();
}
END_TEST

/* A consumer whose loop busy-polls says so (shm_ring_ctl.cons_polls), and
 * large frames from plain memory then go chunked through the ring, not by
 * CMA, which pins and copies page by page; test_bulk_paths is the
 * sleeping consumer's side (CMA). A small frame each way first: a
 * consumer says it polls at its first drain. Its own contexts: no
 * fixture. */
START_TEST(test_bulk_to_polling_consumer)
{
    px_ctx_opts o = {.poll_us = 1000};
    h_setup("shm", &o);
    h_pair p;
    h_pair_open(&p, TMPL);
    send_one(h_msg_new(p.cli, p.srv, 64, 1));
    send_one(h_msg_new(p.srv, p.cli, 64, 1));
    const uint32_t sizes[] = {100000u, MIB, 3 * MIB + 17};
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        for (int dir = 0; dir < 2; dir++) {
            h_ep *from = dir ? p.srv : p.cli, *to = dir ? p.cli : p.srv;
            send_one(h_msg_new(from, to, sizes[i], 1 + i % 4));
        }
    shm_stats *s = &SC(p.cli)->stats, *t = &SC(p.srv)->stats;
    ck_assert_uint_eq(s->tx_chunked, 3);
    ck_assert_uint_eq(t->tx_chunked, 3);
    ck_assert_uint_eq(s->tx_cma + t->tx_cma, 0);
    h_teardown();
}
END_TEST

/* ---- echo from receive memory ---------------------------------------------------------- */

/* What shm does with each echo: counts in the test's own. */
typedef struct echo_counts {
    uint64_t small, bounced;
} echo_counts;

/* A first echo from receive memory: a small one is copied into the other
 * ring inside send (nothing to hold), a large one, read by the peer later
 * (CMA, or chunk by chunk) after this memory is reused, is copied aside
 * first and queued. A resent copy is the owner's memory: never copied
 * aside again. */
static int echo_checked(h_echo *q, h_ep *e, h_msg *m, int resend)
{
    echo_counts *n = q->user;
    int large = m->s.hdr.data_len > SC(e)->tx.size / 4;
    uint64_t b = SC(e)->stats.tx_bounced;
    int rc = h_send(m);
    if (rc < 0)
        return rc;
    if (resend) {
        ck_assert_uint_eq(SC(e)->stats.tx_bounced, b);
    } else if (large) {
        ck_assert_int_eq(rc, PX_TP_QUEUED);
        ck_assert_uint_eq(SC(e)->stats.tx_bounced, b + 1);
        n->bounced++;
    } else {
        ck_assert_int_eq(rc, PX_TP_SENT);
        ck_assert_uint_eq(SC(e)->stats.tx_bounced, b);
        n->small++;
    }
    return rc;
}

/* The server echoes every frame from its in-place bytes while the client
 * floods it; every echoed byte is checked by the client. The old design
 * kept the server's rx ring pinned until the echoes were out; now nothing
 * is pinned: a small echo is copied into the tx ring inside send()
 * (PX_TP_SENT), and a large one, which the peer reads later by CMA or in
 * chunks, is copied aside first (tx_bounced), so the receive memory is
 * free to be reused at once. _i: 0 CMA, 1 ?cma=0 (chunked). */
START_TEST(test_inplace_echo_pinned)
{
    h_pair p;
    h_pair_open(&p, _i ? TMPL_NOCMA : TMPL);
    static h_echo echo;
    static echo_counts counts;
    h_echo *q = &echo;
    memset(&counts, 0, sizeof counts);
    q->send = echo_checked;
    q->user = &counts;
    h_echo_start(q, p.srv, p.cli);
    p.srv->assign_mode = H_DECLINE;
    enum { N = 3000 };
    for (int i = 0; i < N; i++)
        h_send_wait(p.cli, p.srv, i % 5 == 2 ? 100000 : 4000, 2);
    H_RUN_UNTIL(p.srv->frames == N && p.cli->frames == N && h_echo_idle(q) &&
                h_all_finished(p.cli) && h_all_finished(p.srv));
    ck_assert_uint_eq(p.cli->done_errs + p.srv->done_errs, 0);
    ck_assert_uint_gt(counts.small, 0);
    ck_assert_uint_gt(counts.bounced, 0);
    ck_assert_uint_eq(counts.small + counts.bounced + q->copies, N);
    ck_assert_uint_eq(SC(p.srv)->stats.tx_bounced, counts.bounced);
    ck_assert_uint_eq(SC(p.cli)->stats.tx_bounced, 0); /* the client sends from H_PAT */
}
END_TEST

/* ---- a peer process ------------------------------------------------------------------ */

#define CHILD_SALT 4242u

static int child_up;

static void ch_connected(void *self)
{
    child_up = 1;
}
static int ch_rx_assign(void *self, px_tp_rx *rx)
{
    return 1;
}
static void ch_frame(void *self, px_tp_rx *rx) {}
static void ch_send_done(void *self, px_tp_send *s, int status) {}
static void ch_room(void *self) {}
static void ch_error(void *self, int reason) {}
static void ch_disconnected(void *self, int reason)
{
    _exit(5);
}

static const px_tp_upcalls ch_upcalls = {ch_connected, ch_rx_assign, ch_frame,       ch_send_done,
                                         ch_room,      ch_error,     ch_disconnected};

/* The child: its own context and instance, connect, send frame 0 of `len`
 * bytes (as h_exp_make(CHILD_SALT, 0, len)), then run until killed. */
static void child_run(const char *uri, uint32_t len)
{
    px_ctx *ctx;
    px_ctx_tp *tp;
    px_uri u;
    px_tp_conn *c;
    if (px_ctx_create(NULL, &ctx) || px_ctx_instance(ctx, H_T, &tp) || px_uri_parse(uri, &u))
        _exit(2);
    px_tp_owner o = {&ch_upcalls, NULL};
    if (H_T->connect(tp->tp, &u, &o, &c))
        _exit(3);
    while (!child_up)
        px_ctx_run_timeout(ctx, 10);
    h_exp x = h_exp_make(CHILD_SALT, 0, len);
    px_iov iov = {(void *)(H_PAT + x.off), len, NULL};
    px_tp_send s = {.hdr = {.type = x.type,
                            .flags = x.flags,
                            .hdr_len = x.hdr_len,
                            .channel = x.channel,
                            .data_len = len,
                            .id = 0,
                            .aux = x.aux},
                    .app_hdr = x.hdr_len ? H_PAT + x.hoff : NULL,
                    .data = &iov,
                    .data_count = 1};
    if (H_T->send(c, &s) < 0)
        _exit(4);
    for (;;)
        px_ctx_run_timeout(ctx, 100);
}

/* A peer process sends a frame (_i 1: 8 MiB, read from its memory by CMA
 * where permitted), then is killed with SIGKILL while a large send of ours
 * to it is in flight: that send finishes exactly once, before
 * disconnected, and the reason is a reset or a disconnect, not a protocol
 * error. */
START_TEST(test_peer_sigkill)
{
    uint32_t len = _i ? 8 * MIB : 1000;
    h_lst *L = h_lst_new(H_HOLD);
    h_listen(L, TMPL);
    pid_t parent = getpid();
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a failed test */
        if (getppid() != parent)
            _exit(6);
        child_run(L->uri, len);
    }
    H_RUN_UNTIL(L->nheld == 1);
    h_ep *srv = h_ep_new("srv", H_SRV);
    h_exp x = h_exp_make(CHILD_SALT, 0, len);
    h_expect(srv, 0, &x);
    ck_assert_int_eq(h_accept(srv, L->held[0]), 0);
    H_RUN_UNTIL(srv->frames == 1);
    char buf[1200], want[1200];
    snprintf(want, sizeof want, "%s?pid=%d", L->uri, (int)pid);
    ck_assert_int_gt(H_T->peer_uri(srv->c, buf, sizeof buf), 0);
    ck_assert_str_eq(buf, want);
    shm_stats *st = &SC(srv)->stats;
    if (_i) {
        ck_assert_uint_eq(st->rx_cma + st->rx_chunked, 1);
        if (__atomic_load_n(&SC(srv)->rx.ctl->cma_ok, __ATOMIC_RELAXED) == SHM_CMA_YES)
            ck_assert_uint_eq(st->rx_cma, 1);
        else
            fprintf(stderr, "test_peer_sigkill: CMA from the child not permitted: chunked\n");
    } else {
        ck_assert_uint_eq(st->rx_inline, 1);
    }
    /* A send of ours is in flight when it dies. */
    ck_assert_int_eq(h_send(h_msg_new(srv, NULL, 4 * MIB, 1)), PX_TP_QUEUED);
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    H_RUN_UNTIL(srv->disconnected);
    /* completed exactly once, before disconnected (the harness checks) */
    ck_assert_uint_eq(srv->nqueued, 1);
    ck_assert_uint_eq(srv->ndone, 1);
    ck_assert_msg(srv->disc_reason == -PX_ECONNRESET || srv->disc_reason == -PX_EDISCONNECTED,
                  "disconnected: %s", px_errname(srv->disc_reason));
    ck_assert_int_eq(srv->errors, 0);
    ck_assert_int_eq(h_send(h_msg_new(srv, NULL, 10, 1)), -PX_EDISCONNECTED);
}
END_TEST

/* ---- a peer that scribbles on the segment ----------------------------------------------- */

/* What a hostile client writes into the server's rx ring (its tx ring). */
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
    case 4: /* (random bytes, like the default) */
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
        h_pair p;
        h_pair_open(&p, TMPL);
        /* Some honest traffic first, so the cursors are not at 0. */
        send_one(h_msg_new(p.cli, p.srv, 300 + (uint32_t)round * 1000, 1));
        scribble(round < 6 ? round : 6, SC(p.srv), (unsigned)round);
        wake(p.srv);
        /* The server must drop the conn with error then disconnected, or -
         * when the garbage happened to be harmless - stay up. (The harness
         * fails the case on a crash, on any frame made of the garbage, on
         * a second error, or on anything after disconnected.) */
        uint64_t end = h_now_ms() + 500;
        while (!p.srv->disconnected && h_now_ms() < end)
            h_run_both();
        if (round < 6 || p.srv->disconnected) {
            ck_assert_msg(p.srv->errors == 1 && p.srv->disconnected == 1,
                          "round %d: errors %d disconnected %d", round, p.srv->errors,
                          p.srv->disconnected);
            ck_assert_int_ne(p.srv->err_reason, 0);
            ck_assert_int_eq(p.srv->disc_reason, p.srv->err_reason);
        }
        ck_assert_uint_eq(p.srv->frames, 1);
        h_close(p.srv);
        h_close(p.cli);
        h_listener_close(p.L);
    }
}
END_TEST

/* A hostile tail in our tx ring is caught by send() and reported from the
 * loop (error then disconnected); a send queued before finishes exactly
 * once. */
START_TEST(test_scribble_tail)
{
    h_pair p;
    h_pair_open(&p, TMPL);
    h_msg *big = h_msg_new(p.cli, p.srv, MIB, 1);
    ck_assert_int_eq(h_send(big), PX_TP_QUEUED);
    SC(p.cli)->tx.ctl->tail = 1ull << 50;
    /* Fill the ring so the producer must re-read the tail. */
    int rc, n = 0;
    while ((rc = h_send(h_msg_new(p.cli, p.srv, 8000, 1))) == PX_TP_SENT)
        ck_assert_int_lt(++n, 200);
    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(rc, -PX_EPROTO);
    ck_assert_int_eq(p.cli->errors, 0); /* never from inside send() */
    H_RUN_UNTIL(p.cli->disconnected);
    ck_assert_int_eq(p.cli->errors, 1);
    ck_assert_int_eq(p.cli->err_reason, -PX_EPROTO);
    ck_assert_int_eq(p.cli->disc_reason, -PX_EPROTO);
    ck_assert_int_eq(big->state, H_M_DONE);
    ck_assert_uint_eq(p.cli->ndone, 1);
    H_RUN_UNTIL(p.srv->disconnected);
}
END_TEST

/* ---- the shared pool: px_mem_alloc() memory moved by memcpy from a mapping ---- */

typedef struct region {
    uint8_t *addr;
    px_mr *mr;
} region;

static void region_new(region *g, size_t len)
{
    void *a;
    ck_assert_int_eq(px_mem_alloc(H_CTX[H_CLI], len, &a, &g->mr), 0);
    g->addr = a;
}

/* h_msg_new()'s frame with its data copied into pool memory: nonempty
 * segment i lies in g[i % ng] at `at` + (its offset in the data) + 8 * i
 * (not page aligned, on purpose), registered with its region. */
static h_msg *msg_pool(h_ep *from, h_ep *to, uint32_t len, unsigned nseg, const region *g, int ng,
                       size_t at)
{
    h_msg *m = h_msg_new(from, to, len, nseg);
    size_t off = 0;
    for (unsigned i = 0; i < nseg; i++) {
        size_t k = m->iov[i].len;
        const region *r = &g[i % (unsigned)ng];
        uint8_t *d = r->addr + at + off + 8 * (size_t)i;
        ck_assert_uint_le(at + off + 8 * (size_t)i + k, px_mr_len(r->mr));
        if (k) {
            memcpy(d, H_PAT + m->exp.off + off, k);
            m->iov[i] = (px_iov){d, k, r->mr};
        }
        off += k;
    }
    return m;
}

/* 1..4 segments in four regions, both directions, sizes over the bulk
 * threshold; _i: 0 assigned, 1 declined, 2 assigned with ?cma=0 (the pool
 * needs no ptrace permission). */
START_TEST(test_pool_segments)
{
    static const uint32_t sizes[] = {100000, MIB, 3 * MIB + 17};
    region g[4];
    for (int i = 0; i < 4; i++)
        region_new(&g[i], 4 * MIB);
    h_pair p;
    h_pair_open(&p, _i == 2 ? TMPL_NOCMA : TMPL);
    p.cli->assign_mode = p.srv->assign_mode = _i == 1 ? H_DECLINE : H_GIVE;
    uint64_t n = 0;
    for (unsigned i = 0; i < 3; i++)
        for (unsigned nseg = 1; nseg <= 4; nseg++, n++)
            for (int dir = 0; dir < 2; dir++) {
                h_ep *from = dir ? p.srv : p.cli, *to = dir ? p.cli : p.srv;
                send_one(msg_pool(from, to, sizes[i], nseg, g, 4, 100));
            }
    shm_stats *s = &SC(p.cli)->stats, *t = &SC(p.srv)->stats;
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
    h_msg *m = msg_pool(p.cli, p.srv, MIB, 2, g, 4, 0);
    m->iov[1].mr = NULL;
    send_one(m);
    ck_assert_uint_eq(s->tx_pool, n);
    ck_assert_uint_eq(s->tx_cma + s->tx_chunked, 1);
    h_close(p.cli);
    h_close(p.srv);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(px_mem_free(g[i].mr), 0);
}
END_TEST

/* One region used by two conns at once: announced on each. */
START_TEST(test_pool_two_conns)
{
    region g;
    region_new(&g, 8 * MIB);
    h_pair p1, p2;
    h_pair_open(&p1, TMPL);
    h_pair_open(&p2, TMPL);
    for (uint64_t k = 0; k < 4; k++) {
        h_msg *a = msg_pool(p1.cli, p1.srv, 2 * MIB, 1 + (unsigned)k, &g, 1, 0);
        h_msg *b = msg_pool(p2.cli, p2.srv, 2 * MIB, 1, &g, 1, 4 * MIB);
        ck_assert_int_eq(h_send(a), PX_TP_QUEUED);
        ck_assert_int_eq(h_send(b), PX_TP_QUEUED);
        H_RUN_UNTIL(h_all_finished(p1.cli) && h_all_finished(p2.cli) && p1.srv->frames == k + 1 &&
                    p2.srv->frames == k + 1);
        ck_assert_uint_eq(p1.cli->done_errs + p2.cli->done_errs, 0);
    }
    ck_assert_uint_eq(SC(p1.cli)->stats.tx_pool, 4);
    ck_assert_uint_eq(SC(p2.cli)->stats.tx_pool, 4);
    ck_assert_uint_eq(SC(p1.cli)->stats.pool_announced, 1);
    ck_assert_uint_eq(SC(p2.cli)->stats.pool_announced, 1);
    ck_assert_uint_eq(SC(p1.srv)->stats.pool_mapped, 1);
    ck_assert_uint_eq(SC(p2.srv)->stats.pool_mapped, 1);
    h_close(p1.cli);
    h_close(p2.cli);
    ck_assert_int_eq(px_mem_free(g.mr), 0);
}
END_TEST

/* Regions freed by the sender once their frames completed, while the peer
 * still maps them; more regions than a conn keeps, so old ones are
 * evicted; a new region may reuse a freed one's address but never its id. */
START_TEST(test_pool_free_and_evict)
{
    h_pair p;
    h_pair_open(&p, TMPL);
    enum { N = SHM_POOL_MAX + 9 };
    for (int i = 0; i < N; i++) {
        region g;
        region_new(&g, 256 << 10);
        send_one(msg_pool(p.cli, p.srv, 200000, 1 + (unsigned)i % 3, &g, 1, 64));
        ck_assert_int_eq(px_mem_free(g.mr), 0); /* the peer still has it mapped */
    }
    /* Two regions alive at once, reused, after all that. */
    region g[2];
    region_new(&g[0], MIB);
    region_new(&g[1], MIB);
    for (int i = N; i < N + 8; i++)
        send_one(msg_pool(p.cli, p.srv, 300000, 2, g, 2, 0));
    shm_stats *s = &SC(p.cli)->stats, *t = &SC(p.srv)->stats;
    ck_assert_uint_eq(s->tx_pool, N + 8);
    ck_assert_uint_eq(s->pool_announced, N + 2);
    ck_assert_uint_eq(t->pool_mapped, N + 2);
    ck_assert_uint_eq(t->rx_pool, N + 8);
    ck_assert_int_eq(p.srv->errors + p.cli->errors, 0);
    h_close(p.cli);
    h_close(p.srv);
    ck_assert_int_eq(px_mem_free(g[0].mr), 0);
    ck_assert_int_eq(px_mem_free(g[1].mr), 0);
}
END_TEST

/* A pool record written by hand into the client's tx ring: frame `id` of
 * `len` data bytes (expected by srv as h_exp_make(99, id, len)), its
 * descriptor {1 segment, `flags`} naming (region, off, seg_len). */
static void inject_pool(h_ep *cli, h_ep *srv, uint64_t id, uint32_t flags, uint64_t region_id,
                        uint64_t off, uint64_t seg_len, uint32_t len)
{
    shm_conn *c = SC(cli);
    h_exp x = h_exp_make(99, id, len);
    x.channel = 0;
    x.flags = 0;
    h_expect(srv, id, &x);
    uint32_t ext = 8 + 24, rl = PX_FRAME_HDR_LEN + ext + x.hdr_len;
    px_frame_hdr h = {.version = PX_WIRE_VERSION,
                      .type = x.type,
                      .hdr_len = x.hdr_len,
                      .ext_len = (uint16_t)ext,
                      .data_len = len,
                      .id = id,
                      .aux = x.aux};
    uint8_t *p;
    ck_assert_int_eq(shm_ring_reserve(&c->tx, rl, &p), 0);
    px_frame_encode(&h, p);
    uint32_t hd[2] = {1, flags};
    uint64_t sg[3] = {region_id, off, seg_len};
    memcpy(p + PX_FRAME_HDR_LEN, hd, sizeof hd);
    memcpy(p + PX_FRAME_HDR_LEN + 8, sg, sizeof sg);
    memcpy(p + PX_FRAME_HDR_LEN + ext, H_PAT + x.hoff, x.hdr_len);
    shm_ring_commit(&c->tx, rl, SHM_REC_CMA);
    shm_ring_publish(&c->tx);
}

/* A region announcement written by hand (the layout of shm_pool.c's). */
static void inject_announce(h_ep *cli, uint64_t id, uint64_t size, int fd)
{
    struct {
        uint32_t magic, type;
        uint64_t id, size, evict;
    } m = {0x6c6f6f70u, 1, id, size, 0};
    ck_assert_int_eq(shm_rdv_send_fds(SC(cli)->sock, &m, sizeof m, &fd, 1), 0);
}

/* A hostile peer's pool descriptors and announcements: error then
 * disconnected with -PX_EPROTO, no crash, nothing delivered. */
START_TEST(test_pool_hostile)
{
    region g;
    region_new(&g, MIB);
    /* Round 0 used 4096 bytes: a length over the inline threshold keeps
     * the rx_assign the transport makes before it looks the region up
     * within the interface (rx_assign is for frames over the threshold);
     * the offset is past the end of the region either way. */
    uint32_t small = h_inline(H_SRV) + 1;
    for (int round = 0; round < 7; round++) {
        h_pair p;
        h_pair_open(&p, TMPL);
        /* An honest frame first, so the region is mapped. */
        send_one(msg_pool(p.cli, p.srv, 100000, 1, &g, 1, 0));
        uint64_t id = px_mr_id(g.mr), at;
        int fds[2], mfd;
        switch (round) {
        case 0: /* offset past the end */
            inject_pool(p.cli, p.srv, 1, 1, id, MIB, small, small);
            break;
        case 1: /* length past the end */
            inject_pool(p.cli, p.srv, 1, 1, id, 4096, MIB, MIB);
            break;
        case 2: /* offset + length wrapping */
            inject_pool(p.cli, p.srv, 1, 1, id, UINT64_MAX - 100, 200000, 200000);
            break;
        case 3: /* a region never announced */
            inject_pool(p.cli, p.srv, 1, 1, id + 1000000, 0, 100000, 100000);
            break;
        case 4: /* unknown descriptor flags */
            inject_pool(p.cli, p.srv, 1, 6, id, 0, 100000, 100000);
            break;
        case 5: /* an announcement with a pipe, not a memfd */
            ck_assert_int_eq(pipe(fds), 0);
            inject_announce(p.cli, 999999, 4096, fds[0]);
            close(fds[0]);
            close(fds[1]);
            break;
        case 6: /* an announcement of the wrong size */
            ck_assert_int_eq(px_mr_fd(g.mr, &mfd, &at), 0);
            inject_announce(p.cli, 999998, 2 * MIB, mfd);
            break;
        }
        wake(p.srv);
        H_RUN_UNTIL(p.srv->disconnected);
        ck_assert_msg(p.srv->errors == 1, "round %d: no error", round);
        ck_assert_msg(p.srv->err_reason == -PX_EPROTO, "round %d: %s", round,
                      px_errname(p.srv->err_reason));
        ck_assert_uint_eq(p.srv->frames, 1);
        h_close(p.srv);
        h_close(p.cli);
        h_listener_close(p.L);
    }
    ck_assert_int_eq(px_mem_free(g.mr), 0);
}
END_TEST

int main(void)
{
    h_init_pattern();
    const struct {
        const char *name;
        const TTest *test;
        int loops; /* 0: a plain test */
        int fixture;
    } tests[] = {
#define T(x, n, f) {#x, x, n, f}
        T(test_ring_wrap_full_batch, 0, 0),
        T(test_ring_validation, 0, 0),
        T(test_uid_check, 0, 0),
        T(test_bad_uris, 0, 1),
        T(test_bulk_paths, 4, 1),
        T(test_bulk_under_threshold, 2, 0),
        T(test_bulk_to_polling_consumer, 0, 0),
        T(test_inplace_echo_pinned, 2, 1),
        T(test_peer_sigkill, 2, 1),
        T(test_scribble, 0, 1),
        T(test_scribble_tail, 0, 1),
        T(test_pool_segments, 3, 1),
        T(test_pool_two_conns, 0, 1),
        T(test_pool_free_and_evict, 0, 1),
        T(test_pool_hostile, 0, 1),
#undef T
    };
    const char *only = getenv("PX_SHM_ONLY");
    Suite *s = suite_create("shm_transport");
    TCase *unit = tcase_create("shm_unit");
    TCase *tc = tcase_create("shm");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    for (unsigned i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        if (!h_case_wanted(only, tests[i].name))
            continue;
        TCase *to = tests[i].fixture ? tc : unit;
        if (tests[i].loops)
            tcase_add_loop_test(to, tests[i].test, 0, tests[i].loops);
        else
            tcase_add_test(to, tests[i].test);
    }
    suite_add_tcase(s, unit);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
