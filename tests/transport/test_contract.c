/* The transport contract: one Check suite every transport must pass,
 * parameterised by a listen URI (argv[1]; "%p" in it becomes "<pid>-<n>",
 * so parallel runs and several listeners never share a socket path or a
 * name). CTest runs it once per scheme (tests/transport/CMakeLists.txt,
 * PX_CONTRACT_URIS).
 *
 * It drives the transport directly through its px_transport ops table and
 * typed upcalls, without sessions, on two real contexts in one thread (see
 * tp_harness.h): one side can be run while the other is not, which is how
 * backpressure is provoked. The harness checks every upcall against the
 * interface as it comes (never from inside a call into the transport, only
 * from its own context's loop, nothing after close or disconnected, frames
 * in order with every byte verified, `more` sane, every queued send
 * finished exactly once); each case below adds what it is about.
 *
 * Cases that need a raw peer speaking the transport's bytes (garbage, a
 * peer dying inside a frame) use tests/conformance/raw_link and are skipped
 * for schemes it does not speak.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "raw_link.h"
#include "tp_harness.h"
#include "transports/shm/shm_ring.h" /* record kinds, for the raw shm peer */

static const char *g_tmpl; /* the URI to listen on, as given */
static char g_scheme[32];

static void setup(void)
{
    h_setup(g_scheme, NULL);
}

static void teardown(void)
{
    h_teardown();
}

/* The template parsed (with "%p" made a number). */
static void tmpl_parse(const char *tmpl, px_uri *u)
{
    char uri[1100];
    h_uri(tmpl, uri, sizeof uri);
    ck_assert_int_eq(px_uri_parse(uri, u), 0);
}

static int is_shm(void)
{
    return strcmp(g_scheme, "shm") == 0;
}

static int raw_skip(const char *what)
{
    if (h_raw_ok(g_scheme))
        return 0;
    fprintf(stderr, "%s: no raw peer for %s://: skipped\n", what, g_scheme);
    return 1;
}

/* Send frames of `len` from `from`, running only the sender's loop (and
 * the receiver's too when run_receiver), until one is refused with
 * -PX_EAGAIN. Returns that refused frame. */
static h_msg *fill_until_refused(h_ep *from, h_ep *to, uint32_t len, unsigned nseg,
                                 int run_receiver)
{
    for (uint64_t n = 0;; n++) {
        ck_assert_msg(n < 100000, "%s: %llu frames of %u bytes sent, none refused", from->name,
                      (unsigned long long)n, len);
        h_msg *m = h_msg_new(from, to, len, nseg);
        int rc = h_send(m);
        if (rc == -PX_EAGAIN)
            return m;
        ck_assert_msg(rc >= 0, "send: %s", px_errname(rc));
        for (int k = 0; k < 2; k++) {
            if (run_receiver)
                h_run_both();
            else
                h_run(from->side);
        }
    }
}

/* ---- connect and accept -------------------------------------------------------- */

START_TEST(connect_accept)
{
    h_lst *L = h_lst_new(H_ACCEPT);
    h_listen(L, g_tmpl);
    px_uri want, got;
    tmpl_parse(g_tmpl, &want);
    ck_assert_int_eq(px_uri_parse(L->uri, &got), 0);
    ck_assert_str_eq(got.scheme, want.scheme);
    ck_assert_str_eq(got.host, want.host);
    if (want.port == 0)
        ck_assert_msg(got.port > 0, "port 0 not resolved: %s", L->uri);
    else
        ck_assert_int_eq(got.port, want.port);
    if (!strstr(g_tmpl, "%p"))
        ck_assert_str_eq(got.path, want.path);
    h_ep *cli = h_ep_new("cli", H_CLI);
    h_connect(cli, L->uri); /* (the harness checks: nothing from inside it) */
    ck_assert_int_eq(cli->connected, 0);
    H_RUN_UNTIL(cli->connected && L->naccepted == 1);
    h_ep *srv = L->accepted[0];
    ck_assert_int_eq(L->offered, 1);
    ck_assert_uint_eq(srv->upcalls, 0);

    /* Each end names its peer with a URI of the scheme (an unnamed unix
     * client is just "unix://"). */
    char buf[1100], prefix[40];
    snprintf(prefix, sizeof prefix, "%s://", want.scheme);
    for (int k = 0; k < 2; k++) {
        int n = H_T->peer_uri(k ? srv->c : cli->c, buf, sizeof buf);
        ck_assert_int_gt(n, 0);
        ck_assert_int_eq(n, (int)strlen(buf));
        ck_assert_msg(strncmp(buf, prefix, strlen(prefix)) == 0, "peer_uri %s", buf);
    }

    px_tp_caps caps;
    h_caps(&caps);
    ck_assert_uint_ge(caps.max_iov, 1);
    ck_assert_uint_ge(caps.max_msg, H_MAX_FRAME);

    /* A frame each way; nothing completes or arrives from inside send. */
    h_send_wait(cli, srv, 100, 1);
    h_send_wait(srv, cli, 0, 1);
    H_RUN_UNTIL(srv->frames == 1 && cli->frames == 1 && h_all_finished(cli) && h_all_finished(srv));
    ck_assert_uint_eq(cli->done_errs + srv->done_errs, 0);
    /* The bound address is taken. (Finding out may cost the listener a
     * conn: a unix listen probes whether the socket file is alive.) */
    ck_assert_int_eq(h_listen_rc(L->uri), -PX_EADDRINUSE);

    /* The peer closes cleanly: disconnected with -PX_EDISCONNECTED, no
     * error, and sends are refused from then on. */
    h_close(cli);
    H_RUN_UNTIL(srv->disconnected);
    ck_assert_int_eq(srv->disc_reason, -PX_EDISCONNECTED);
    ck_assert_int_eq(srv->errors, 0);
    ck_assert_int_eq(h_send(h_msg_new(srv, NULL, 10, 1)), -PX_EDISCONNECTED);
    h_close(srv);

    /* Nobody listening: connect() still returns 0, the failure comes from
     * the loop. */
    char dead[1100];
    snprintf(dead, sizeof dead, "%s", L->uri);
    h_listener_close(L);
    h_ep *late = h_ep_new("late", H_CLI);
    h_connect(late, dead);
    ck_assert_int_eq(late->disconnected, 0);
    H_RUN_UNTIL(late->disconnected);
    ck_assert_int_eq(late->connected, 0);
    ck_assert_int_eq(h_send(h_msg_new(late, NULL, 10, 1)) < 0, 1);
}
END_TEST

/* ---- sizes ------------------------------------------------------------------------ */

/* 0 B .. 16 MiB in 1..8 segments, both ways, all in flight at once. */
static void sizes_run(int mode)
{
    h_pair p;
    h_pair_open(&p, g_tmpl);
    p.cli->assign_mode = p.srv->assign_mode = mode;
    uint32_t T = h_inline(H_SRV);
    const uint32_t sizes[] = {0, 1, 100, 4095, T, T + 1, 65536, 300000, MIB, 4 * MIB, 16 * MIB};
    const unsigned ns = sizeof sizes / sizeof sizes[0];
    uint64_t n = 0, nlarge = 0;
    for (unsigned seg = 1; seg <= H_MAX_SEG; seg++)
        for (unsigned i = 0; i < ns; i++) {
            h_send_wait(p.cli, p.srv, sizes[i], seg);
            h_send_wait(p.srv, p.cli, sizes[i], seg);
            n++;
            nlarge += sizes[i] > T;
        }
    H_RUN_UNTIL(p.srv->frames == n && p.cli->frames == n && h_all_finished(p.cli) &&
                h_all_finished(p.srv));
    ck_assert_uint_eq(p.cli->done_errs + p.srv->done_errs, 0);
    px_tp_caps caps;
    h_caps(&caps);
    for (int k = 0; k < 2; k++) {
        h_ep *e = k ? p.cli : p.srv;
        if (caps.flags & PX_TP_CAP_RX_DIRECT)
            ck_assert_uint_eq(e->assigns, nlarge);
        if (mode == H_GIVE) {
            ck_assert_uint_eq(e->direct, nlarge);
            ck_assert_uint_eq(e->inplace, n - nlarge);
        } else {
            ck_assert_uint_eq(e->direct, 0);
            ck_assert_uint_eq(e->inplace, n);
        }
    }
}

START_TEST(sizes_assigned)
{
    sizes_run(H_GIVE);
}
END_TEST

START_TEST(sizes_declined)
{
    sizes_run(H_DECLINE);
}
END_TEST

/* rx_assign gives a vector that does not cover the frame: the conn fails
 * with -PX_ESHORTBUF and nothing is written past what was given (the
 * harness checks the poison after each segment). */
START_TEST(short_assign)
{
    static const int modes[] = {H_SHORT_ONE, H_SHORT_NONE, H_SHORT_NULLSEG};
    uint32_t T = h_inline(H_SRV);
    const uint32_t sizes[] = {T + 1, 100000, 4 * MIB};
    for (unsigned m = 0; m < 3; m++)
        for (unsigned s = 0; s < 3; s++) {
            h_pair p;
            h_pair_open(&p, g_tmpl);
            p.srv->assign_mode = modes[m];
            h_send_wait(p.cli, p.srv, 100, 1);
            h_send_wait(p.cli, p.srv, sizes[s], 3);
            /* Maybe refused: a large frame may still be leaving, into a
             * receiver that has stopped. */
            (void)h_send(h_msg_new(p.cli, p.srv, 100, 2));
            H_RUN_UNTIL(p.srv->disconnected);
            ck_assert_msg(p.srv->frames == 1, "mode %u size %u: %llu frames", m, sizes[s],
                          (unsigned long long)p.srv->frames);
            ck_assert_uint_eq(p.srv->assigns, 1);
            ck_assert_int_eq(p.srv->errors, 1);
            ck_assert_int_eq(p.srv->err_reason, -PX_ESHORTBUF);
            ck_assert_int_eq(p.srv->disc_reason, -PX_ESHORTBUF);
            h_close(p.srv);
            H_RUN_UNTIL(p.cli->disconnected);
            h_close(p.cli);
            h_listener_close(p.L);
        }
}
END_TEST

/* ---- FIFO ------------------------------------------------------------------------------ */

START_TEST(fifo_10000)
{
    h_pair p;
    h_pair_open(&p, g_tmpl);
    unsigned seed = 7;
    for (uint64_t id = 0; id < 10000; id++) {
        /* mostly small, some over the threshold to interleave direct receives */
        uint32_t len = id % 997 == 5 ? 40000 : (uint32_t)rand_r(&seed) % 3000;
        h_send_wait(p.cli, p.srv, len, 1 + (unsigned)(id % H_MAX_SEG));
    }
    H_RUN_UNTIL(p.srv->frames == 10000 && h_all_finished(p.cli));
    ck_assert_uint_eq(p.cli->done_errs, 0);
    ck_assert_uint_gt(p.srv->max_more, 0); /* batches were seen */
    ck_assert_uint_gt(p.srv->direct, 0);
    ck_assert_uint_eq(p.srv->prev_more, 0); /* nothing follows the last */
}
END_TEST

/* ---- offered conns ------------------------------------------------------------------------ */

START_TEST(reject)
{
    /* From inside new_conn. */
    h_lst *L = h_lst_new(H_REJECT);
    h_listen(L, g_tmpl);
    h_ep *a = h_ep_new("cli", H_CLI);
    h_connect(a, L->uri);
    H_RUN_UNTIL(a->disconnected);
    ck_assert_int_eq(L->offered, 1);
    ck_assert_uint_eq(a->frames, 0);

    /* Held on offer for a while, then rejected from outside any upcall. */
    L->mode = H_HOLD;
    h_ep *b = h_ep_new("cli", H_CLI);
    h_connect(b, L->uri);
    H_RUN_UNTIL(L->nheld == 1);
    h_run_for(50);
    ck_assert_int_eq(b->disconnected, 0);
    h_reject(L->held[0], -PX_EREJECTED);
    H_RUN_UNTIL(b->disconnected);
    ck_assert_uint_eq(b->frames, 0);

    /* The listener goes on accepting. */
    L->mode = H_ACCEPT;
    h_ep *c = h_ep_new("cli", H_CLI);
    h_connect(c, L->uri);
    H_RUN_UNTIL(c->connected && L->naccepted == 1);
    h_send_wait(c, L->accepted[0], 1000, 2);
    H_RUN_UNTIL(L->accepted[0]->frames == 1 && h_all_finished(c));
}
END_TEST

START_TEST(accept_later)
{
    h_lst *L = h_lst_new(H_HOLD);
    h_listen(L, g_tmpl);
    h_ep *cli = h_ep_new("cli", H_CLI);
    h_connect(cli, L->uri);
    H_RUN_UNTIL(L->nheld == 1);
    h_run_for(50);
    /* Not accepted yet: a send on it is refused, nothing taken. */
    h_ep *srv = h_ep_new("srv", H_SRV);
    srv->c = L->held[0];
    ck_assert_int_eq(h_send(h_msg_new(srv, cli, 10, 1)), -PX_ENOTCONN);
    /* A client already connected may send: the frame waits for the accept. */
    if (cli->connected)
        h_send_wait(cli, srv, 5000, 2);
    h_run_for(50);
    ck_assert_uint_eq(srv->upcalls, 0);
    ck_assert_int_eq(h_accept(srv, L->held[0]), 0);
    /* Once taken it is no longer on offer. */
    h_ep *other = h_ep_new("other", H_SRV);
    ck_assert_int_eq(h_accept(other, L->held[0]), -PX_EINVAL);
    H_RUN_UNTIL(cli->connected);
    h_send_wait(cli, srv, 100000, 3);
    h_send_wait(srv, cli, 7, 1);
    H_RUN_UNTIL(srv->frames == cli->tx_next_id && cli->frames == 1 && h_all_finished(cli) &&
                h_all_finished(srv));

    /* A conn left on offer is closed by listener_close. */
    h_ep *d = h_ep_new("cli", H_CLI);
    h_connect(d, L->uri);
    H_RUN_UNTIL(L->nheld == 2);
    h_listener_close(L);
    H_RUN_UNTIL(d->disconnected);
    ck_assert_uint_eq(d->frames, 0);
}
END_TEST

START_TEST(close_listener_in_new_conn)
{
    /* After accepting: the conn goes on working. */
    h_lst *L = h_lst_new(H_ACCEPT);
    L->close_in_new = 1;
    h_listen(L, g_tmpl);
    h_ep *cli = h_ep_new("cli", H_CLI);
    h_connect(cli, L->uri);
    H_RUN_UNTIL(cli->connected && L->naccepted == 1);
    ck_assert(L->closed);
    h_ep *srv = L->accepted[0];
    h_send_wait(cli, srv, 20000, 2);
    h_send_wait(srv, cli, 300, 1);
    H_RUN_UNTIL(srv->frames == 1 && cli->frames == 1 && h_all_finished(cli) && h_all_finished(srv));
    /* Nobody listens there any more. */
    h_ep *late = h_ep_new("late", H_CLI);
    h_connect(late, L->uri);
    H_RUN_UNTIL(late->disconnected);
    ck_assert_int_eq(late->connected, 0);
    ck_assert_int_eq(L->offered, 1);

    /* Without accepting: the offered conn closes with the listener. */
    h_lst *M = h_lst_new(H_HOLD);
    M->close_in_new = 1;
    h_listen(M, g_tmpl);
    h_ep *d = h_ep_new("cli", H_CLI);
    h_connect(d, M->uri);
    H_RUN_UNTIL(d->disconnected);
    ck_assert_int_eq(M->offered, 1);
    ck_assert_uint_eq(d->frames, 0);
}
END_TEST

/* ---- closing from inside each upcall ---------------------------------------------------- */

START_TEST(close_in_frame)
{
    h_pair p;
    h_pair_open(&p, g_tmpl);
    p.srv->close_in = H_UP_FRAME;
    p.srv->close_after = 2; /* in the third frame, with more behind it */
    for (int i = 0; i < 50; i++)
        h_send_wait(p.cli, p.srv, i == 20 ? 100000 : 100, 1);
    H_RUN_UNTIL(p.srv->closed && p.cli->disconnected);
    ck_assert_uint_eq(p.srv->frames, 3);
    h_run_for(50);
}
END_TEST

START_TEST(close_in_rx_assign)
{
    h_pair p;
    h_pair_open(&p, g_tmpl);
    p.srv->close_in = H_UP_ASSIGN;
    h_send_wait(p.cli, p.srv, 100, 1);
    h_send_wait(p.cli, p.srv, 200, 2);
    h_send_wait(p.cli, p.srv, 100000, 3);
    h_send_wait(p.cli, p.srv, 100, 1);
    h_send_wait(p.cli, p.srv, MIB, 4);
    H_RUN_UNTIL(p.srv->closed && p.cli->disconnected);
    ck_assert_uint_eq(p.srv->frames, 2);
    ck_assert_uint_eq(p.srv->assigns, 1);
    h_run_for(50);
}
END_TEST

START_TEST(close_in_send_done)
{
    h_pair p;
    h_pair_open(&p, g_tmpl);
    p.cli->close_in = H_UP_SEND_DONE;
    /* Until refused: a send_done may close it while we would wait for room. */
    for (int i = 0; i < 50; i++)
        if (h_send(h_msg_new(p.cli, p.srv, 100000, 2)) == -PX_EAGAIN)
            break;
    if (p.cli->nqueued == 0) {
        fprintf(stderr, "close_in_send_done: every send returned PX_TP_SENT: nothing to test\n");
        return;
    }
    H_RUN_UNTIL(p.cli->closed);
    ck_assert_uint_eq(p.cli->ndone, 1);
    /* The rest came back from close (the harness checked each). */
    ck_assert_uint_eq(p.cli->nreturned, p.cli->nqueued - 1);
    H_RUN_UNTIL(p.srv->disconnected);
    ck_assert_uint_le(p.srv->frames, 50);
    h_run_for(50);
}
END_TEST

START_TEST(close_in_room)
{
    h_pair p;
    h_pair_open(&p, g_tmpl);
    p.cli->close_in = H_UP_ROOM;
    fill_until_refused(p.cli, p.srv, MIB, 2, 0);
    H_RUN_UNTIL(p.cli->closed);
    ck_assert_int_eq(p.cli->rooms, 1);
    H_RUN_UNTIL(p.srv->disconnected);
    h_run_for(50);
}
END_TEST

START_TEST(close_in_disconnected)
{
    h_pair p;
    h_pair_open(&p, g_tmpl);
    p.srv->close_in = H_UP_DISC;
    /* with sends of its own still queued to the peer */
    for (int i = 0; i < 8; i++)
        if (h_send(h_msg_new(p.srv, p.cli, 200000, 1)) == -PX_EAGAIN)
            break;
    h_close(p.cli);
    H_RUN_UNTIL(p.srv->closed);
    ck_assert_int_eq(p.srv->disconnected, 1);
    h_run_for(50);
}
END_TEST

START_TEST(close_in_connected)
{
    h_lst *L = h_lst_new(H_ACCEPT);
    h_listen(L, g_tmpl);
    h_ep *cli = h_ep_new("cli", H_CLI);
    cli->close_in = H_UP_CONNECTED;
    h_connect(cli, L->uri);
    H_RUN_UNTIL(cli->closed);
    ck_assert_int_eq(cli->connected, 1);
    H_RUN_UNTIL(L->naccepted == 1 && L->accepted[0]->disconnected);
    h_run_for(50);
}
END_TEST

START_TEST(close_in_error)
{
    if (raw_skip("close_in_error"))
        return;
    h_lst *L = h_lst_new(H_ACCEPT);
    h_listen(L, g_tmpl);
    raw_link *r = h_raw_dial(L->uri);
    H_RUN_UNTIL(L->naccepted == 1);
    h_ep *srv = L->accepted[0];
    srv->close_in = H_UP_ERROR;
    uint8_t junk[64];
    memset(junk, 0xab, sizeof junk);
    ck_assert_int_eq(raw_send(r, junk, sizeof junk), 0);
    H_RUN_UNTIL(srv->closed);
    ck_assert_int_eq(srv->errors, 1);
    ck_assert_int_eq(srv->disconnected, 0);
    ck_assert_msg(raw_wait_closed(r, 5000), "the raw peer was not hung up on");
    raw_close(r);
    h_run_for(50);
}
END_TEST

/* rdma:// only: a rendezvous naming remote memory the peer does not have
 * (a bad rkey) ends that conn as a protocol error, named as one, with no
 * frame delivered. */
START_TEST(rdma_remote_access)
{
    if (strcmp(g_scheme, "rdma") != 0 || raw_skip("rdma_remote_access"))
        return;
    h_lst *L = h_lst_new(H_ACCEPT);
    h_listen(L, g_tmpl);
    raw_link *r = h_raw_dial(L->uri);
    H_RUN_UNTIL(L->naccepted == 1);
    h_ep *srv = L->accepted[0];
    srv->raw_peer = 1;
    uint8_t *f = malloc(PX_FRAME_HDR_LEN + 64 + 100000);
    ck_assert_ptr_nonnull(f);
    h_exp x;
    h_raw_frame(f, 99, 0, 100000, &x); /* header and app header; the data is "remote" */
    h_expect(srv, 0, &x);
    ck_assert_int_eq(raw_send_bad_rdv(r, f, x.hdr_len), 0);
    free(f);
    H_RUN_UNTIL(srv->disconnected);
    ck_assert_int_eq(srv->errors, 1);
    ck_assert_int_eq(srv->err_reason, -PX_EPROTO);
    ck_assert_uint_eq(srv->frames, 0);
    raw_close(r);
    h_run_for(50);
}
END_TEST

/* ---- the peer end closed -------------------------------------------------------------- */

START_TEST(peer_death)
{
    h_pair p;
    h_pair_open(&p, g_tmpl);
    /* The server has large frames queued to a client that never reads. */
    for (int i = 0; i < 64; i++) {
        if (h_send(h_msg_new(p.srv, p.cli, MIB, 2)) == -PX_EAGAIN)
            break;
        h_run(H_SRV);
    }
    uint64_t outstanding = p.srv->nqueued - p.srv->ndone;
    /* The client has sends queued too: close returns them. */
    for (int i = 0; i < 8; i++)
        if (h_send(h_msg_new(p.cli, p.srv, 300000, 1)) == -PX_EAGAIN)
            break;
    h_close(p.cli);
    ck_assert(h_all_finished(p.cli));
    /* The server hears of it: every queued send finished before disconnected
     * (checked there), those left with an error. */
    H_RUN_SIDE_UNTIL(H_SRV, p.srv->disconnected);
    if (outstanding)
        ck_assert_uint_gt(p.srv->done_errs, 0);
    else
        fprintf(stderr, "peer_death: no send was outstanding when the peer closed\n");
    ck_assert_int_eq(p.srv->errors, 0);
    ck_assert_int_eq(h_send(h_msg_new(p.srv, NULL, 10, 1)), -PX_EDISCONNECTED);
    h_run_for(50);
}
END_TEST

/* close() returns what it did not finish, makes no upcall, and never
 * touches that memory again: here it is overwritten as soon as close
 * returns, and whatever still arrives at the peer must be intact. */
START_TEST(close_returns_unfinished)
{
    h_pair p;
    h_pair_open(&p, g_tmpl);
    enum { N = 64 };
    h_msg *ms[N];
    int n = 0;
    for (; n < N; n++) {
        ms[n] = h_msg_new(p.cli, p.srv, 300000, 2);
        h_msg_own(ms[n]);
        if (h_send(ms[n]) == -PX_EAGAIN)
            break;
    }
    /* Both run until the receiver has a frame or two. */
    H_RUN_UNTIL(p.srv->frames >= 1);
    /* Top up, so that something is unfinished whatever has completed. */
    for (; n < N; n++) {
        ms[n] = h_msg_new(p.cli, p.srv, 300000, 2);
        h_msg_own(ms[n]);
        if (h_send(ms[n]) == -PX_EAGAIN)
            break;
    }
    h_close(p.cli);
    if (p.cli->nqueued == 0) {
        fprintf(stderr, "close_returns_unfinished: every send returned PX_TP_SENT\n");
        return;
    }
    ck_assert_uint_gt(p.cli->nreturned, 0);
    for (int i = 0; i < n; i++) {
        h_msg *m = ms[i];
        if (m->state != H_M_RETURNED)
            continue;
        /* status 0 only for frames the transport knows were delivered */
        if (m->status == 0)
            ck_assert_msg(m->s.hdr.id < p.srv->frames,
                          "frame %llu returned with status 0 was never delivered",
                          (unsigned long long)m->s.hdr.id);
        /* The caller's memory again: reused at once. */
        memset(m->own, 0xee, m->s.hdr.data_len);
        if (m->own_hdr)
            memset(m->own_hdr, 0xee, m->s.hdr.hdr_len);
    }
    H_RUN_SIDE_UNTIL(H_SRV, p.srv->disconnected);
    h_run_for(50);
}
END_TEST

/* ---- garbage from a raw peer ----------------------------------------------------------- */

START_TEST(garbage)
{
    if (raw_skip("garbage"))
        return;
    h_lst *L = h_lst_new(H_ACCEPT);
    h_listen(L, g_tmpl);
    uint32_t max_data = H_TP[H_SRV]->host.limits.max_data;
    static const struct {
        const char *what;
        int reason, good_first;
    } cases[] = {
        {"garbage bytes", -PX_EPROTO, 0},         {"a good frame, then garbage", -PX_EPROTO, 1},
        {"data over the limit", -PX_EMSGSIZE, 0}, {"an unknown type", -PX_EPROTO, 0},
        {"another version", -PX_EVERSION, 0},     {"unknown flags", -PX_EPROTO, 0},
    };
    uint8_t good[PX_FRAME_HDR_LEN + 32 + 100], bad[64];
    for (unsigned k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        raw_link *r = h_raw_dial(L->uri);
        H_RUN_UNTIL(L->naccepted == (int)k + 1);
        h_ep *srv = L->accepted[k];
        srv->raw_peer = 1;
        if (cases[k].good_first) {
            h_exp x;
            size_t n = h_raw_frame(good, 99, 0, 100, &x);
            h_expect(srv, 0, &x);
            ck_assert_int_eq(raw_send(r, good, n), 0);
        }
        size_t blen = PX_FRAME_HDR_LEN;
        memset(bad, 0xab, sizeof bad);
        switch (k) {
        case 0:
            blen = sizeof bad;
            break;
        case 1:
            break;
        case 2:
            raw_frame_hdr(bad, PX_WIRE_VERSION, PX_FT_ONEWAY, 0, max_data + 1, 1, 0);
            break;
        case 3:
            raw_frame_hdr(bad, PX_WIRE_VERSION, 99, 0, 0, 1, 0);
            break;
        case 4:
            raw_frame_hdr(bad, PX_WIRE_VERSION + 1, PX_FT_ONEWAY, 0, 0, 1, 0);
            break;
        case 5:
            raw_frame_hdr(bad, PX_WIRE_VERSION, PX_FT_ONEWAY, 0, 0, 1, 0);
            bad[5] = 0x80;
            break;
        }
        ck_assert_int_eq(raw_send(r, bad, blen), 0);
        H_RUN_UNTIL(srv->disconnected);
        ck_assert_msg(srv->errors == 1, "%s: no error upcall", cases[k].what);
        ck_assert_msg(srv->err_reason == cases[k].reason, "%s: error %s, %s expected",
                      cases[k].what, px_errname(srv->err_reason), px_errname(cases[k].reason));
        ck_assert_int_eq(srv->disc_reason, cases[k].reason);
        ck_assert_uint_eq(srv->frames, (uint64_t)cases[k].good_first);
        h_close(srv);
        ck_assert_msg(raw_wait_closed(r, 5000), "%s: the raw peer was not hung up on",
                      cases[k].what);
        raw_close(r);
    }
    /* The listener and the transport go on working. */
    h_ep *cli = h_ep_new("cli", H_CLI);
    h_connect(cli, L->uri);
    int k = L->naccepted;
    H_RUN_UNTIL(cli->connected && L->naccepted == k + 1);
    h_ep *srv = L->accepted[k];
    h_send_wait(cli, srv, 100000, 2);
    h_send_wait(srv, cli, 10, 1);
    H_RUN_UNTIL(srv->frames == 1 && cli->frames == 1 && h_all_finished(cli) && h_all_finished(srv));
}
END_TEST

/* A raw peer that dies inside a frame: disconnected with -PX_ECONNRESET,
 * no frame, no error (a dead peer is not a protocol error). */
START_TEST(peer_dies_mid_frame)
{
    if (raw_skip("peer_dies_mid_frame"))
        return;
    if (strcmp(g_scheme, "rdma") == 0) {
        /* A SEND arrives whole or not at all: there is no frame to cut. */
        fprintf(stderr, "peer_dies_mid_frame: no partial frames on rdma://: skipped\n");
        return;
    }
    h_lst *L = h_lst_new(H_ACCEPT);
    h_listen(L, g_tmpl);
    uint8_t *big = malloc(PX_FRAME_HDR_LEN + 32 + MIB);
    ck_assert_ptr_nonnull(big);
    for (int k = 0; k < 2; k++) {
        if (k == 0 && is_shm())
            continue; /* a ring record cannot be cut short */
        raw_link *r = h_raw_dial(L->uri);
        H_RUN_UNTIL(L->naccepted == (is_shm() ? 1 : k + 1));
        h_ep *srv = L->accepted[L->naccepted - 1];
        h_exp x;
        if (k == 0) { /* a small frame, cut short */
            size_t n = h_raw_frame(big, 99, 0, 1000, &x);
            h_expect(srv, 0, &x);
            ck_assert_int_eq(raw_send(r, big, n - 500), 0);
        } else { /* a large one, after its rx_assign */
            size_t n = h_raw_frame(big, 99, 0, MIB, &x);
            h_expect(srv, 0, &x);
            if (is_shm()) {
                ck_assert_int_eq(raw_send_record(r, SHM_REC_CHUNKED, big, PX_FRAME_HDR_LEN), 0);
                ck_assert_int_eq(raw_send_record(r, SHM_REC_CHUNK, big + PX_FRAME_HDR_LEN, 1000),
                                 0);
            } else {
                ck_assert_int_lt(100000, n);
                ck_assert_int_eq(raw_send(r, big, 100000), 0);
            }
            H_RUN_UNTIL(srv->assigns == 1);
        }
        h_run_for(20);
        raw_close(r);
        H_RUN_UNTIL(srv->disconnected);
        ck_assert_int_eq(srv->disc_reason, -PX_ECONNRESET);
        ck_assert_uint_eq(srv->frames, 0);
        ck_assert_int_eq(srv->errors, 0);
    }
    free(big);
}
END_TEST

/* ---- px_tpc_poll -------------------------------------------------------------------------- */

/* Stop the receiver's loop as the frame arrives, so that the conn is left
 * just serviced: busy, not yet cooled by idle passes. */
static void stop_on_frame(h_ep *e, const px_tp_rx *rx, const uint8_t *data)
{
    px_ctx_stop(e->ctx);
}

/* Once a conn is busy, px_tpc_poll alone (no loop) moves frames and
 * completions both ways. (A conn left idle long enough cools and waits
 * for the loop to wake it: that is px_ctx_poll's business, not this.) */
START_TEST(tpc_poll)
{
    h_pair p;
    h_pair_open(&p, g_tmpl);
    long total = 0;
    for (int dir = 0; dir < 2; dir++) {
        h_ep *from = dir ? p.srv : p.cli, *to = dir ? p.cli : p.srv;
        /* warm the receiving end through the loop */
        uint64_t f = to->frames;
        to->on_frame = stop_on_frame;
        h_send_wait(from, to, 10, 1);
        H_RUN_UNTIL(to->frames == f + 1 && h_all_finished(from));
        to->on_frame = NULL;
        for (int i = 0; i < 100; i++) {
            ck_assert_int_ge(h_send(h_msg_new(from, to, 200, 2)), 0);
            uint64_t end = h_now_ms() + 10000;
            while (to->frames <= f + 1 + (uint64_t)i) {
                ck_assert_msg(h_now_ms() < end, "%s: frame %d not received by px_tpc_poll",
                              to->name, i);
                total += h_tpc_poll(H_CLI) + h_tpc_poll(H_SRV);
            }
        }
        uint64_t end = h_now_ms() + 10000;
        while (!h_all_finished(from)) {
            ck_assert_msg(h_now_ms() < end, "%s: sends not completed by px_tpc_poll", from->name);
            total += h_tpc_poll(H_CLI) + h_tpc_poll(H_SRV);
        }
    }
    ck_assert_int_gt(total, 0);
    ck_assert_uint_eq(p.cli->done_errs + p.srv->done_errs, 0);
}
END_TEST

/* ---- bad sends --------------------------------------------------------------------------------
 */

START_TEST(bad_sends)
{
    h_pair p;
    h_pair_open(&p, g_tmpl);
    h_ep *c = p.cli;
    h_msg *m;

    m = h_msg_new(c, p.srv, 10, 1); /* lengths disagree */
    m->s.hdr.data_len = 11;
    ck_assert_int_eq(h_send(m), -PX_EINVAL);
    m = h_msg_new(c, p.srv, 10, 2);
    m->s.hdr.data_len = 9;
    ck_assert_int_eq(h_send(m), -PX_EINVAL);
    m = h_msg_new(c, p.srv, 10, 2); /* a segment without a base */
    m->iov[0].base = NULL;
    ck_assert_int_eq(h_send(m), -PX_EINVAL);
    m = h_msg_new(c, p.srv, 10, 1); /* segments counted, none given */
    m->s.data = NULL;
    ck_assert_int_eq(h_send(m), -PX_EINVAL);
    m = h_msg_new(c, p.srv, 10, 1); /* an app header without bytes */
    m->s.hdr.hdr_len = 4;
    m->s.app_hdr = NULL;
    ck_assert_int_eq(h_send(m), -PX_EINVAL);

    /* Headers the peer's decoder would refuse. */
    static const struct {
        uint8_t type;
        uint16_t flags, hdr_len;
    } hdrs[] = {
        {99, 0, 0},
        {0, 0, 0},
        {PX_FT_ONEWAY, 0x8000, 0},
        {PX_FT_REQUEST, PX_FF_RECEIPT, 0},
        {PX_FT_FIN, 0, 0},          /* a control frame with data */
        {PX_FT_HELLO, 0, 4},        /* HELLO carries no app header */
        {PX_FT_TYPE_MAX + 1, 0, 0}, /* one past the last type */
    };
    for (unsigned i = 0; i < sizeof hdrs / sizeof hdrs[0]; i++) {
        m = h_msg_new(c, p.srv, 10, 1);
        m->s.hdr.type = hdrs[i].type;
        m->s.hdr.flags = hdrs[i].flags;
        if (hdrs[i].hdr_len) {
            m->s.hdr.hdr_len = hdrs[i].hdr_len;
            m->s.app_hdr = H_PAT;
        }
        ck_assert_msg(h_send(m) == -PX_EINVAL, "bad header %u accepted", i);
    }

    /* Too many segments. */
    px_tp_caps caps;
    h_caps(&caps);
    uint32_t n = caps.max_iov + 1;
    px_iov *many = calloc(n, sizeof *many);
    ck_assert_ptr_nonnull(many);
    for (uint32_t i = 0; i < n; i++)
        many[i] = (px_iov){(void *)(H_PAT + i), 1, NULL};
    m = h_msg_new(c, p.srv, n, 1);
    m->s.data = many;
    m->s.data_count = n;
    ck_assert_int_eq(h_send(m), -PX_ETOOMANY);
    free(many);
    m->s.data = NULL;

    /* Nothing was taken: the next good frame has the same id, and arrives. */
    ck_assert_uint_eq(c->tx_next_id, 0);
    ck_assert_uint_eq(c->nrefused, 13);
    h_send_wait(c, p.srv, 10, 1);
    h_send_wait(c, p.srv, 100000, 2);
    H_RUN_UNTIL(p.srv->frames == 2 && h_all_finished(c));
    ck_assert_uint_eq(c->done_errs, 0);
    ck_assert_int_eq(p.srv->errors, 0);
}
END_TEST

/* ---- backpressure --------------------------------------------------------------------------- */

START_TEST(backpressure_and_room)
{
    h_pair p;
    h_pair_open(&p, g_tmpl);
    /* Only the sender runs: the receiver never reads. */
    fill_until_refused(p.cli, p.srv, MIB, 2, 0);
    ck_assert_uint_eq(p.srv->upcalls, 0);
    ck_assert_int_eq(p.cli->rooms, 0);
    /* Nothing was taken of the refused frame (h_send looked). The same frame
     * again from private memory, refused again, is overwritten and freed at
     * once: the transport must not have kept it. */
    h_msg *again = h_msg_new(p.cli, p.srv, MIB, 2);
    h_msg_own(again);
    int rc = h_send(again);
    if (rc == -PX_EAGAIN) {
        memset(again->own, 0xee, MIB);
        free(again->own);
        again->own = NULL;
    } else {
        ck_assert_int_ge(rc, 0);
    }
    h_run(H_CLI);
    ck_assert_int_eq(p.cli->rooms, 0);
    /* The receiver runs (then both: a stream's sender writes from its own
     * loop): room follows, and the retry succeeds. */
    for (int i = 0; i < 20; i++)
        h_run(H_SRV);
    H_RUN_UNTIL(p.cli->rooms >= 1);
    if (rc == -PX_EAGAIN)
        ck_assert_int_ge(h_send(h_msg_new(p.cli, p.srv, MIB, 2)), 0);
    for (int i = 0; i < 20; i++)
        h_send_wait(p.cli, p.srv, i % 2 ? MIB : 5000, 1 + (unsigned)i % 3);
    /* Every frame exactly once, in order (the harness checks each). */
    H_RUN_UNTIL(p.srv->frames == p.cli->tx_next_id && h_all_finished(p.cli));
    ck_assert_uint_eq(p.cli->done_errs, 0);
}
END_TEST

/* ---- the lending rule: echo from in-place bytes ---------------------------------------- */

START_TEST(inplace_echo)
{
    h_pair p;
    h_pair_open(&p, g_tmpl);
    static h_echo q;
    q.send = NULL;
    h_echo_start(&q, p.srv, p.cli);
    p.srv->assign_mode = H_DECLINE;
    enum { N = 3000 };
    for (int i = 0; i < N; i++) {
        uint32_t len = i % 50 == 7 ? 100000 : i % 97 == 3 ? 20000 : 4000;
        h_send_wait(p.cli, p.srv, len, 2);
    }
    H_RUN_UNTIL(p.srv->frames == N && p.cli->frames == N && h_echo_idle(&q) &&
                h_all_finished(p.cli) && h_all_finished(p.srv));
    ck_assert_uint_eq(p.cli->done_errs + p.srv->done_errs, 0);
}
END_TEST

/* ---- rx_pause ------------------------------------------------------------------------------ */

START_TEST(rx_pause)
{
    h_pair p;
    h_pair_open(&p, g_tmpl);
    h_rx_pause(p.srv, 1);
    for (int i = 0; i < 50; i++)
        h_send_wait(p.cli, p.srv, 3000, 1);
    h_run_for(100);
    ck_assert_uint_eq(p.srv->frames, 0);
    h_rx_pause(p.srv, 0); /* (nothing from inside it) */
    H_RUN_UNTIL(p.srv->frames == 50);
    /* Paused for good, the sender meets flow control... */
    h_rx_pause(p.srv, 1);
    fill_until_refused(p.cli, p.srv, 60000, 1, 1);
    h_run_for(100);
    ck_assert_uint_eq(p.srv->frames, 50);
    ck_assert_int_eq(p.cli->rooms, 0);
    /* ...until resumed. */
    h_rx_pause(p.srv, 0);
    H_RUN_UNTIL(p.cli->rooms == 1);
    ck_assert_int_ge(h_send(h_msg_new(p.cli, p.srv, 60000, 1)), 0);
    H_RUN_UNTIL(p.srv->frames == p.cli->tx_next_id && h_all_finished(p.cli));
    ck_assert_uint_eq(p.cli->done_errs, 0);
}
END_TEST

int main(int argc, char **argv)
{
    g_tmpl = argc > 1 ? argv[1] : getenv("PX_CONTRACT_URI");
    if (!g_tmpl) {
        fprintf(stderr, "usage: %s <listen URI, %%p for the pid>\n", argv[0]);
        return 2;
    }
    px_uri u;
    char first[1100];
    h_uri(g_tmpl, first, sizeof first);
    if (px_uri_parse(first, &u) != 0 || strlen(u.scheme) >= sizeof g_scheme) {
        fprintf(stderr, "%s: not a URI\n", g_tmpl);
        return 2;
    }
    snprintf(g_scheme, sizeof g_scheme, "%s", u.scheme);
    h_init_pattern();

    const struct {
        const char *name;
        const TTest *test;
    } tests[] = {
#define T(x) {#x, x}
        T(connect_accept),
        T(sizes_assigned),
        T(sizes_declined),
        T(short_assign),
        T(fifo_10000),
        T(reject),
        T(accept_later),
        T(close_listener_in_new_conn),
        T(close_in_frame),
        T(close_in_rx_assign),
        T(close_in_send_done),
        T(close_in_room),
        T(close_in_disconnected),
        T(close_in_connected),
        T(close_in_error),
        T(peer_death),
        T(close_returns_unfinished),
        T(garbage),
        T(peer_dies_mid_frame),
        T(tpc_poll),
        T(bad_sends),
        T(backpressure_and_room),
        T(inplace_echo),
        T(rx_pause),
        T(rdma_remote_access),
#undef T
    };
    /* PX_CONTRACT_ONLY=name[,name...] runs only those cases. */
    const char *only = getenv("PX_CONTRACT_ONLY");
    Suite *s = suite_create("transport contract");
    TCase *tc = tcase_create(g_tmpl);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    for (unsigned i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        if (!h_case_wanted(only, tests[i].name))
            continue;
        tcase_add_test(tc, tests[i].test);
    }
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
