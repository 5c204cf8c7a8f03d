/* What is particular to the tcp transport (tcp:// and unix://), driven
 * through its ops table with the transport harness (tp_harness.h: two
 * contexts, typed upcalls, every upcall checked). Everything every
 * transport must do is in the contract suite (test_contract.c), run for
 * tcp4, tcp6 and unix there; here: the registry's table check, URIs and
 * address errors, stale unix socket files, peer URIs and caps, and the
 * receive ring's wrap. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "plexus/error.h"
#include "plexus/transport.h"
#include "tp_harness.h"
#include "transports/tcp/tcp.h" /* tcp_conn.n_straddled, tcp_addr_from_uri */

static void setup(void)
{
    h_setup("tcp", NULL);
}

static void teardown(void)
{
    h_teardown();
}

static const char *tmpl_for(int i)
{
    static const char *t[] = {"tcp://127.0.0.1:0", "tcp://[::1]:0", "unix:///tmp/pxtcp-%p.sock"};
    return t[i];
}

/* A unix URI of its own for this process. */
static const char *unix_uri(void)
{
    static char buf[128];
    h_uri("unix:///tmp/pxtcp-%p.sock", buf, sizeof buf);
    return buf;
}

/* ---- registry ------------------------------------------------------------- */

static int fake_init(const px_tp_host *h, px_tp **out)
{
    return -PX_ENOSYS;
}

static int fake_mem_register(px_tp *tp, const px_mr *mr, void **handle)
{
    return 0;
}

static int fake_rkey_pack(px_tp *tp, void *handle, void *buf, size_t len)
{
    return 0;
}

START_TEST(test_registry)
{
    ck_assert_ptr_eq(px_transport_find("tcp"), &px_tcp_transport);
    ck_assert_ptr_eq(px_transport_find("unix"), &px_tcp_transport);
    ck_assert_ptr_null(px_transport_find("nosuchscheme"));
    ck_assert_ptr_null(px_transport_find("../etc"));
    const px_transport *t0 = NULL;
    ck_assert_int_eq(px_transport_lookup("tcp", &t0), 0);
    ck_assert_ptr_eq(t0, &px_tcp_transport);
    ck_assert_int_eq(px_transport_lookup("nosuchscheme", &t0), -PX_EBADSCHEME);
    ck_assert_int_ge(px_transport_foreach(NULL, NULL), 1);

    px_transport dup = px_tcp_transport;
    ck_assert_int_eq(px_transport_register(&dup), -PX_EEXIST);

    /* Tables missing a mandatory op, with the wrong abi, or with optional
     * ops that only make sense together, are refused. */
    static const char *const fake_schemes[] = {"fake", NULL};
    static const char *const empty_scheme[] = {"", NULL};
    px_transport t = px_tcp_transport;
    t.name = "fake";
    t.schemes = fake_schemes;
    t.send = NULL;
    ck_assert_int_eq(px_transport_register(&t), -PX_EINVAL);
    t = px_tcp_transport;
    t.name = "fake";
    t.schemes = fake_schemes;
    t.flush = NULL;
    ck_assert_int_eq(px_transport_register(&t), -PX_EINVAL);
    t.flush = px_tcp_transport.flush;
    t.check_uri = NULL;
    ck_assert_int_eq(px_transport_register(&t), -PX_EINVAL);
    t.check_uri = px_tcp_transport.check_uri;
    t.abi = PX_TRANSPORT_ABI + 1;
    ck_assert_int_eq(px_transport_register(&t), -PX_EINVAL);
    t.abi = PX_TRANSPORT_ABI;
    t.mem_register = fake_mem_register; /* without mem_deregister */
    ck_assert_int_eq(px_transport_register(&t), -PX_EINVAL);
    t.mem_register = NULL;
    t.rkey_pack = fake_rkey_pack; /* without rkey_unpack nor mem_register */
    ck_assert_int_eq(px_transport_register(&t), -PX_EINVAL);
    t.rkey_pack = NULL;
    t.schemes = empty_scheme;
    ck_assert_int_eq(px_transport_register(&t), -PX_EINVAL);
    t.schemes = NULL;
    ck_assert_int_eq(px_transport_register(&t), -PX_EINVAL);
    ck_assert_int_eq(px_transport_register(NULL), -PX_EINVAL);
    ck_assert_ptr_null(px_transport_find("fake"));

    static px_transport ok;
    ok = px_tcp_transport;
    ok.name = "fake";
    ok.schemes = fake_schemes;
    ok.init = fake_init;
    ck_assert_int_eq(px_transport_register(&ok), 0);
    ck_assert_ptr_eq(px_transport_find("fake"), &ok);
    ck_assert_int_eq(px_transport_register(&ok), -PX_EEXIST);
    /* Its init fails: a context cannot make an instance of it. */
    px_ctx_tp *ctp;
    ck_assert_int_eq(px_ctx_instance(H_CTX[H_CLI], &ok, &ctp), -PX_ENOSYS);
}
END_TEST

/* ---- URIs and address errors ------------------------------------------------- */

/* check_uri agrees with listen on what is wrong with a URI (it needs no
 * network and no resolver, so it cannot know about hosts and files). */
static int check_rc(const char *uri, int listener)
{
    px_uri u;
    int rc = px_uri_parse(uri, &u);
    return rc ? rc : H_T->check_uri(&u, listener);
}

START_TEST(test_bad_uris)
{
    static const struct {
        const char *uri;
        int listen, check;
    } cases[] = {
        {"tcp://127.0.0.1", -PX_EBADPORT, -PX_EBADPORT},
        {"tcp://127.0.0.1:0/x", -PX_EBADPATH, -PX_EBADPATH},
        {"tcp://127.0.0.1:0?bogus=1", -PX_EBADOPT, -PX_EBADOPT},
        {"tcp://127.0.0.1:0?nodelay=2", -PX_EBADOPT, -PX_EBADOPT},
        {"tcp://127.0.0.1:0?nodelay=0&sndbuf=65536", 0, 0},
        {"tcp://no-such-host.invalid:0", -PX_EBADHOST, 0},
        {"tcp://[::zz]:0", -PX_EBADHOST, -PX_EBADHOST}, /* (the URI parser says so) */
        /* unix:// problems are path problems, said as such */
        {"unix://host/x.sock", -PX_EBADPATH, -PX_EBADPATH},
        {"unix://", -PX_EBADPATH, -PX_EBADPATH},
        {"tcp://localhost:0", 0, 0},
        {"unix:///nonexistent-dir/x.sock", -PX_ENOENT, 0},
    };
    for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = h_listen_rc(cases[i].uri);
        ck_assert_msg(rc == cases[i].listen, "listen %s: %s", cases[i].uri, px_errname(rc));
        rc = check_rc(cases[i].uri, 1);
        ck_assert_msg(rc == cases[i].check, "check_uri %s: %s", cases[i].uri, px_errname(rc));
    }
    ck_assert_int_eq(check_rc("tcp://127.0.0.1:0", 0), -PX_EBADPORT); /* port 0: listen only */
    ck_assert_int_eq(check_rc("tcp://127.0.0.1:0", 1), 0);
    char longp[200] = "unix:///tmp/";
    memset(longp + strlen(longp), 'x', 150);
    ck_assert_int_eq(h_listen_rc(longp), -PX_ENAMETOOLONG);
    ck_assert_int_eq(check_rc(longp, 1), -PX_ENAMETOOLONG);

    /* A taken port. */
    h_lst *P = h_lst_new(H_ACCEPT);
    h_listen(P, "tcp://127.0.0.1:0");
    ck_assert_int_eq(h_listen_rc(P->uri), -PX_EADDRINUSE);
    /* A live unix socket is not stolen, and its file goes with the listener. */
    h_lst *Q = h_lst_new(H_ACCEPT);
    h_listen(Q, "unix:///tmp/pxtcp-%p.sock");
    ck_assert_int_eq(h_listen_rc(Q->uri), -PX_EADDRINUSE);
    h_run_for(20); /* (the liveness probe was a connection: let it come and go) */
    h_listener_close(Q);
    ck_assert_int_ne(access(Q->uri + strlen("unix://"), F_OK), 0);

    /* Connecting to nothing: the reason comes through disconnected. */
    char dead[sizeof P->uri];
    memcpy(dead, P->uri, sizeof dead);
    h_listener_close(P);
    h_ep *e = h_ep_new("e", H_CLI);
    h_connect(e, dead);
    H_RUN_UNTIL(e->disconnected);
    ck_assert_int_eq(e->disc_reason, -PX_ECONNREFUSED);
    ck_assert_int_eq(e->connected, 0);
    h_ep *f = h_ep_new("f", H_CLI);
    h_connect(f, "unix:///tmp/pxtcp-nobody-here.sock");
    ck_assert_int_eq(f->disconnected, 0); /* never from inside connect() */
    H_RUN_UNTIL(f->disconnected);
    ck_assert_int_eq(f->disc_reason, -PX_ENOENT);
    /* Port 0 cannot be connected to: refused at once, nothing made. */
    h_ep *g = h_ep_new("g", H_CLI);
    ck_assert_int_eq(h_connect_rc(g, "tcp://127.0.0.1:0"), -PX_EBADPORT);
    ck_assert_ptr_null(g->c);
}
END_TEST

START_TEST(test_stale_unix_socket)
{
    const char *uri = unix_uri();
    const char *path = uri + strlen("unix://");
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    ck_assert_uint_lt(strlen(path), sizeof un.sun_path);
    memcpy(un.sun_path, path, strlen(path) + 1);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&un, sizeof un), 0);
    close(fd); /* the file stays, nobody listens */
    h_lst *L = h_lst_new(H_ACCEPT);
    h_listen(L, uri);
    ck_assert_str_eq(L->uri, uri);
    /* and it is a working listener */
    h_ep *c = h_ep_new("cli", H_CLI);
    h_connect(c, L->uri);
    H_RUN_UNTIL(c->connected && L->naccepted == 1);
    h_listener_close(L);
    ck_assert_int_ne(access(path, F_OK), 0);
}
END_TEST

/* ---- peer URIs and caps, per address family ---------------------------------- */

START_TEST(test_peer_uris_caps)
{
    h_pair p;
    h_pair_open(&p, tmpl_for(_i));
    char buf[256];
    int n = H_T->peer_uri(p.srv->c, buf, sizeof buf);
    ck_assert_int_gt(n, 0);
    if (_i == 0)
        ck_assert_msg(strncmp(buf, "tcp://127.0.0.1:", 16) == 0, "%s", buf);
    else if (_i == 1)
        ck_assert_msg(strncmp(buf, "tcp://[::1]:", 12) == 0, "%s", buf);
    else
        ck_assert_str_eq(buf, "unix://");
    ck_assert_int_eq(H_T->peer_uri(p.cli->c, buf, sizeof buf), (int)strlen(p.L->uri));
    ck_assert_str_eq(buf, p.L->uri);
    ck_assert_int_eq(H_T->peer_uri(p.cli->c, buf, 4), -PX_ENOSPC);
    ck_assert_int_eq(H_T->listener_uri(p.L->l, buf, 4), -PX_ENOSPC);
    if (_i == 1)
        ck_assert_msg(strncmp(p.L->uri, "tcp://[::1]:", 12) == 0, "%s", p.L->uri);

    px_tp_caps caps;
    h_caps(&caps);
    ck_assert_uint_eq(caps.flags & PX_TP_CAP_RX_DIRECT, PX_TP_CAP_RX_DIRECT);
    ck_assert_uint_eq(caps.flags & PX_TP_CAP_ZCOPY_SEND, PX_TP_CAP_ZCOPY_SEND);
    ck_assert_uint_eq(caps.max_msg, UINT32_MAX);
    ck_assert_uint_eq(caps.max_iov, TCP_MAX_IOV);
    ck_assert_uint_eq(caps.max_inline, h_inline(H_CLI));
    /* Every send is queued from the caller's memory (zero copy). */
    ck_assert_int_eq(h_send(h_msg_new(p.cli, p.srv, 10, 1)), PX_TP_QUEUED);
    H_RUN_UNTIL(p.srv->frames == 1 && h_all_finished(p.cli));
}
END_TEST

/* ---- the receive ring -------------------------------------------------------------- */

/* A plain blocking socket to the listener, for raw bytes. */
static int raw_connect(const char *uri)
{
    px_uri u;
    tcp_sockaddr sa;
    ck_assert_int_eq(px_uri_parse(uri, &u), 0);
    ck_assert_int_eq(tcp_addr_from_uri(&u, 0, &sa), 0);
    int fd = socket(sa.u.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(connect(fd, &sa.u.sa, sa.len), 0);
    return fd;
}

/* Frame `id` with no app header and `len` data bytes, expected by e. */
static size_t raw_frame(uint8_t *out, h_ep *e, uint64_t id, uint32_t len)
{
    h_exp x = h_exp_make(77, id, len);
    x.hdr_len = 0;
    x.flags = 0;
    x.channel = 0;
    h_expect(e, id, &x);
    px_frame_hdr h = {
        .version = PX_WIRE_VERSION, .type = x.type, .data_len = len, .id = id, .aux = x.aux};
    px_frame_encode(&h, out);
    memcpy(out + PX_FRAME_HDR_LEN, H_PAT + x.off, len);
    return PX_FRAME_HDR_LEN + len;
}

/* A frame straddling the ring's wrap: the writer sends 3032-byte frames in
 * 7777-byte chunks and waits for them each time, so every read ends inside
 * a frame, the ring never drains, and byte 262144 falls inside a frame. */
START_TEST(test_ring_wrap)
{
    h_lst *L = h_lst_new(H_ACCEPT);
    h_listen(L, tmpl_for(_i));
    int fd = raw_connect(L->uri);
    H_RUN_UNTIL(L->naccepted == 1);
    h_ep *srv = L->accepted[0];
    enum { N = 120, FL = PX_FRAME_HDR_LEN + 3000, CHUNK = 7777 };
    uint8_t *stream = malloc((size_t)N * FL);
    ck_assert_ptr_nonnull(stream);
    size_t total = 0;
    for (uint64_t id = 0; id < N; id++)
        total += raw_frame(stream + total, srv, id, 3000);
    for (size_t off = 0; off < total; off += CHUNK) {
        size_t n = total - off < CHUNK ? total - off : CHUNK;
        ck_assert_int_eq(write(fd, stream + off, n), (ssize_t)n);
        uint64_t complete = (off + n) / FL;
        H_RUN_UNTIL(srv->frames == complete);
    }
    tcp_conn *sc = (tcp_conn *)srv->c;
    ck_assert_uint_ge(sc->n_straddled, 1);
    ck_assert_uint_eq(srv->frames, N);
    free(stream);
    close(fd);
    H_RUN_UNTIL(srv->disconnected);
    ck_assert_int_eq(srv->disc_reason, -PX_EDISCONNECTED);
}
END_TEST

int main(void)
{
    h_init_pattern();
    Suite *s = suite_create("tcp_transport");
    TCase *tc = tcase_create("tcp");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_registry);
    tcase_add_test(tc, test_bad_uris);
    tcase_add_test(tc, test_stale_unix_socket);
    tcase_add_loop_test(tc, test_peer_uris_caps, 0, 3);
    tcase_add_loop_test(tc, test_ring_wrap, 0, 3);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
