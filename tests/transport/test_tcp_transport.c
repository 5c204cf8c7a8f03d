/* The tcp/unix transport driven directly through its ops table, with a
 * hand-built px_tp_host on a private libev loop: no context, no sessions. */
#include <check.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "plexus/error.h"
#include "plexus/transport.h"
#include "transports/tcp/tcp.h" /* tcp_conn.n_straddled, for the wrap test */

#define INLINE 16384u

static struct ev_loop *L;
static ev_timer tick; /* keeps EVRUN_ONCE from sleeping for long */
static const px_transport *T;
static px_tp *TPI;
static px_tp_host HOST;

/* Run the loop until `cond`, failing after 60 s. */
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
    T = px_transport_find("tcp");
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

static const char *uri_for(int i)
{
    static char buf[128];
    static const char *ip[] = {"tcp://127.0.0.1:0", "tcp://[::1]:0"};
    if (i < 2)
        return ip[i];
    static int n;
    snprintf(buf, sizeof buf, "unix:///tmp/pxtcp-%d-%d.sock", (int)getpid(), n++);
    return buf;
}

static uint8_t pat(uint64_t id, size_t i)
{
    return (uint8_t)(id * 131u + i * 7u + (i >> 9));
}

/* ---- an endpoint: the observer of one conn -------------------------------- */

enum { ASSIGN_GIVE, ASSIGN_DECLINE, ASSIGN_SHORT };

typedef struct ep {
    px_tp_conn *c;
    int connected, disconnected, errors, disc_reason, err_reason;
    uint64_t frames, inplace, direct, assigns, next_id;
    uint64_t id_step; /* expected id increment; 0 means 1 */
    uint32_t max_more;
    int assign_mode;
    uint8_t *abuf; /* RX_ASSIGN destination, reused */
    size_t acap;
    px_iov aiov[3];
    uint64_t completes, failed;
    int last_status;
    int close_in_frame, close_in_complete, close_in_disc;
    int closed; /* we closed it: no event may follow */
} ep;

/* A frame in flight, owned by the test from send to SEND_COMPLETE. */
typedef struct msg {
    px_tp_send s;
    px_iov iov[8];
    uint8_t hdr[16];
    uint8_t *data;
} msg;

static void ep_close(ep *e)
{
    e->closed = 1;
    T->close(e->c);
}

static int on_assign(ep *e, px_tp_rx *rx)
{
    e->assigns++;
    ck_assert_uint_gt(rx->hdr.data_len, INLINE);
    ck_assert_ptr_null(rx->data);
    if (e->assign_mode == ASSIGN_DECLINE)
        return 1;
    size_t len = rx->hdr.data_len;
    if (e->acap < len) {
        free(e->abuf);
        e->abuf = malloc(len);
        e->acap = len;
    }
    /* Three uneven segments; the short mode lies by one byte. */
    size_t a = len / 3, b = len / 5;
    e->aiov[0] = (px_iov){e->abuf, a, NULL};
    e->aiov[1] = (px_iov){e->abuf + a, b, NULL};
    e->aiov[2] = (px_iov){e->abuf + a + b, len - a - b, NULL};
    if (e->assign_mode == ASSIGN_SHORT)
        e->aiov[2].len--;
    rx->dst = e->aiov;
    rx->dst_count = 3;
    rx->owner_cookie = (void *)(uintptr_t)(0x5000 + rx->hdr.id);
    return 0;
}

static void on_frame(ep *e, px_tp_rx *rx)
{
    ck_assert_uint_eq(rx->hdr.id, e->next_id);
    e->next_id += e->id_step ? e->id_step : 1;
    e->frames++;
    if (rx->more > e->max_more)
        e->max_more = rx->more;
    ck_assert_uint_eq(rx->hdr.hdr_len, rx->hdr.id % 17);
    for (size_t i = 0; i < rx->hdr.hdr_len; i++)
        ck_assert_uint_eq(((const uint8_t *)rx->app_hdr)[i], pat(rx->hdr.id ^ 0xabc, i));
    const uint8_t *d = rx->data;
    if (d) {
        e->inplace++;
    } else {
        e->direct++;
        ck_assert_uint_gt(rx->hdr.data_len, INLINE);
        ck_assert_ptr_eq(rx->dst, e->aiov);
        ck_assert_ptr_eq(rx->owner_cookie, (void *)(uintptr_t)(0x5000 + rx->hdr.id));
        d = e->abuf; /* the segments are consecutive */
    }
    for (size_t i = 0; i < rx->hdr.data_len; i++)
        if (d[i] != pat(rx->hdr.id, i))
            ck_abort_msg("frame %llu byte %zu differs", (unsigned long long)rx->hdr.id, i);
    if (e->close_in_frame)
        ep_close(e);
}

static void on_complete(ep *e, px_tp_send *s)
{
    msg *m = s->cookie;
    e->completes++;
    if (s->status) {
        e->failed++;
        e->last_status = s->status;
    }
    free(m->data);
    free(m);
    if (e->close_in_complete && !e->closed)
        ep_close(e);
}

static int ep_notify(void *self, int ev, void *data)
{
    ep *e = self;
    /* close() may itself complete sends; nothing else may follow it. */
    ck_assert_msg(!e->closed || ev == PX_TP_EV_SEND_COMPLETE, "event %d after close", ev);
    switch (ev) {
    case PX_TP_EV_CONNECTED:
        e->connected++;
        break;
    case PX_TP_EV_RX_ASSIGN:
        return on_assign(e, data);
    case PX_TP_EV_FRAME:
        on_frame(e, data);
        break;
    case PX_TP_EV_SEND_COMPLETE:
        on_complete(e, data);
        break;
    case PX_TP_EV_ERROR:
        ck_assert_int_eq(e->disconnected, 0);
        e->errors++;
        e->err_reason = *(int *)data;
        break;
    case PX_TP_EV_DISCONNECTED:
        ck_assert_int_eq(e->disconnected, 0);
        e->disconnected++;
        e->disc_reason = *(int *)data;
        if (e->close_in_disc)
            ep_close(e);
        break;
    default:
        ck_abort_msg("unexpected event %d", ev);
    }
    return 0;
}

static px_observer ep_obs(ep *e)
{
    return (px_observer){ep_notify, e};
}

/* Queue frame `id` of `len` data bytes in `nseg` segments. */
static int send_frame(ep *e, uint64_t id, size_t len, unsigned nseg)
{
    msg *m = calloc(1, sizeof *m);
    m->data = malloc(len ? len : 1);
    for (size_t i = 0; i < len; i++)
        m->data[i] = pat(id, i);
    unsigned hl = (unsigned)(id % 17);
    for (unsigned i = 0; i < hl; i++)
        m->hdr[i] = pat(id ^ 0xabc, i);
    size_t off = 0;
    for (unsigned i = 0; i < nseg; i++) {
        size_t n = i + 1 == nseg ? len - off : len / (2u << i);
        m->iov[i] = (px_iov){m->data + off, n, NULL};
        off += n;
    }
    m->s.hdr = (px_frame_hdr){
        .type = PX_FT_ONEWAY, .hdr_len = (uint16_t)hl, .data_len = (uint32_t)len, .id = id};
    m->s.app_hdr = m->hdr;
    m->s.data = m->iov;
    m->s.data_count = nseg;
    m->s.cookie = m;
    int rc = T->send(e->c, &m->s);
    if (rc) {
        free(m->data);
        free(m);
    }
    return rc;
}

/* ---- a listener and a connected pair -------------------------------------- */

enum { ON_NEW_ACCEPT, ON_NEW_REJECT, ON_NEW_HOLD };

typedef struct pair {
    px_tp_listener *l;
    char uri[256];
    ep cli, srv;
    int on_new;
    int close_listener_in_new;
    int newconns;
    px_tp_conn *held;
} pair;

static int lst_notify(void *self, int ev, void *data)
{
    pair *p = self;
    ck_assert_int_eq(ev, PX_TP_EV_NEW_CONN);
    p->newconns++;
    px_tp_conn *c = data;
    if (p->on_new == ON_NEW_ACCEPT) {
        p->srv.c = c;
        px_observer o = ep_obs(&p->srv);
        ck_assert_int_eq(T->accept(c, &o), 0);
    } else if (p->on_new == ON_NEW_REJECT) {
        T->reject(c, -PX_EREJECTED);
    } else {
        p->held = c;
    }
    if (p->close_listener_in_new) {
        T->listener_close(p->l);
        p->l = NULL;
    }
    return 0;
}

static void pair_listen(pair *p, const char *uri)
{
    px_uri u;
    ck_assert_int_eq(px_uri_parse(uri, &u), 0);
    px_observer o = {lst_notify, p};
    ck_assert_int_eq(T->listen(TPI, &u, &o, &p->l), 0);
    int n = T->listener_uri(p->l, p->uri, sizeof p->uri);
    ck_assert_int_eq(n, (int)strlen(p->uri));
    if (strncmp(uri, "tcp", 3) == 0)
        ck_assert_msg(strcmp(p->uri + n - 2, ":0") != 0, "port 0 not resolved: %s", p->uri);
}

static void pair_connect(pair *p)
{
    px_uri u;
    ck_assert_int_eq(px_uri_parse(p->uri, &u), 0);
    px_observer o = ep_obs(&p->cli);
    ck_assert_int_eq(T->connect(TPI, &u, &o, &p->cli.c), 0);
    ck_assert_int_eq(p->cli.connected, 0); /* never from inside connect() */
}

static void pair_open(pair *p, const char *uri)
{
    memset(p, 0, sizeof *p);
    pair_listen(p, uri);
    pair_connect(p);
    RUN_UNTIL(p->cli.connected && p->srv.c);
}

static void pair_close(pair *p)
{
    if (p->cli.c && !p->cli.closed)
        ep_close(&p->cli);
    if (p->srv.c && !p->srv.closed)
        ep_close(&p->srv);
    if (p->l)
        T->listener_close(p->l);
    free(p->cli.abuf);
    free(p->srv.abuf);
}

/* A plain blocking socket to the listener, for raw bytes. */
static int raw_connect(const pair *p)
{
    px_uri u;
    tcp_sockaddr sa;
    ck_assert_int_eq(px_uri_parse(p->uri, &u), 0);
    ck_assert_int_eq(tcp_addr_from_uri(&u, 0, &sa), 0);
    int fd = socket(sa.u.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(connect(fd, &sa.u.sa, sa.len), 0);
    return fd;
}

static size_t raw_frame(uint8_t *out, uint64_t id, uint32_t data_len)
{
    px_frame_hdr h = {
        .version = PX_WIRE_VERSION, .type = PX_FT_ONEWAY, .data_len = data_len, .id = id};
    px_frame_encode(&h, out);
    for (uint32_t i = 0; i < data_len; i++)
        out[PX_FRAME_HDR_LEN + i] = pat(id, i);
    return PX_FRAME_HDR_LEN + data_len;
}

/* ---- registry ------------------------------------------------------------- */

static int fake_init(const px_tp_host *h, px_tp **out)
{
    return -PX_ENOSYS;
}

START_TEST(test_registry)
{
    ck_assert_ptr_eq(px_transport_find("tcp"), &px_tcp_transport);
    ck_assert_ptr_eq(px_transport_find("unix"), &px_tcp_transport);
    ck_assert_ptr_null(px_transport_find("nosuchscheme"));
    ck_assert_ptr_null(px_transport_find("../etc"));
    ck_assert_int_ge(px_transport_foreach(NULL, NULL), 1);

    px_transport dup = px_tcp_transport;
    ck_assert_int_eq(px_transport_register(&dup), -PX_EEXIST);

    static const char *const fake_schemes[] = {"fake", NULL};
    px_transport t = px_tcp_transport;
    t.name = "fake";
    t.schemes = fake_schemes;
    t.send = NULL;
    ck_assert_int_eq(px_transport_register(&t), -PX_EINVAL);
    t = px_tcp_transport;
    t.name = "fake";
    t.schemes = fake_schemes;
    t.abi = PX_TRANSPORT_ABI + 1;
    ck_assert_int_eq(px_transport_register(&t), -PX_EINVAL);
    ck_assert_int_eq(px_transport_register(NULL), -PX_EINVAL);

    static px_transport ok;
    ok = px_tcp_transport;
    ok.name = "fake";
    ok.schemes = fake_schemes;
    ok.init = fake_init;
    ck_assert_int_eq(px_transport_register(&ok), 0);
    ck_assert_ptr_eq(px_transport_find("fake"), &ok);
    ck_assert_int_eq(px_transport_register(&ok), -PX_EEXIST);
}
END_TEST

/* ---- URIs and address errors ------------------------------------------------- */

static int listen_rc(const char *uri)
{
    px_uri u;
    int rc = px_uri_parse(uri, &u);
    if (rc)
        return rc;
    px_tp_listener *l = NULL;
    px_observer o = {lst_notify, NULL};
    rc = T->listen(TPI, &u, &o, &l);
    if (rc == 0)
        T->listener_close(l);
    return rc;
}

START_TEST(test_bad_uris)
{
    ck_assert_int_eq(listen_rc("tcp://127.0.0.1"), -PX_EBADPORT);
    ck_assert_int_eq(listen_rc("tcp://127.0.0.1:0/x"), -PX_EBADPATH);
    ck_assert_int_eq(listen_rc("tcp://127.0.0.1:0?bogus=1"), -PX_EBADOPT);
    ck_assert_int_eq(listen_rc("tcp://127.0.0.1:0?nodelay=2"), -PX_EBADOPT);
    ck_assert_int_eq(listen_rc("tcp://127.0.0.1:0?nodelay=0&sndbuf=65536"), 0);
    ck_assert_int_eq(listen_rc("tcp://no-such-host.invalid:0"), -PX_EBADHOST);
    ck_assert_int_eq(listen_rc("tcp://[::zz]:0"), -PX_EBADHOST);
    /* unix:// problems are path problems, said as such */
    ck_assert_int_eq(listen_rc("unix://host/x.sock"), -PX_EBADPATH);
    ck_assert_int_eq(listen_rc("unix://"), -PX_EBADPATH);
    ck_assert_int_eq(listen_rc("tcp://localhost:0"), 0);
    char longp[200] = "unix:///tmp/";
    memset(longp + strlen(longp), 'x', 150);
    ck_assert_int_eq(listen_rc(longp), -PX_ENAMETOOLONG);
    ck_assert_int_eq(listen_rc("unix:///nonexistent-dir/x.sock"), -PX_ENOENT);

    /* A taken port. */
    pair p;
    memset(&p, 0, sizeof p);
    pair_listen(&p, "tcp://127.0.0.1:0");
    ck_assert_int_eq(listen_rc(p.uri), -PX_EADDRINUSE);
    /* A live unix socket is not stolen. */
    pair q;
    memset(&q, 0, sizeof q);
    pair_listen(&q, uri_for(2));
    ck_assert_int_eq(listen_rc(q.uri), -PX_EADDRINUSE);
    T->listener_close(q.l);
    ck_assert_int_ne(access(q.uri + strlen("unix://"), F_OK), 0); /* unlinked on close */

    /* Connecting to nothing: the reason comes through DISCONNECTED. */
    char dead[64];
    strcpy(dead, p.uri);
    T->listener_close(p.l);
    ep e = {0};
    px_uri u;
    px_observer o = ep_obs(&e);
    ck_assert_int_eq(px_uri_parse(dead, &u), 0);
    ck_assert_int_eq(T->connect(TPI, &u, &o, &e.c), 0);
    RUN_UNTIL(e.disconnected);
    ck_assert_int_eq(e.disc_reason, -PX_ECONNREFUSED);
    ck_assert_int_eq(e.connected, 0);
    ep_close(&e);

    ep f = {0};
    o = ep_obs(&f);
    ck_assert_int_eq(px_uri_parse("unix:///tmp/pxtcp-nobody-here.sock", &u), 0);
    ck_assert_int_eq(T->connect(TPI, &u, &o, &f.c), 0);
    ck_assert_int_eq(f.disconnected, 0); /* never from inside connect() */
    RUN_UNTIL(f.disconnected);
    ck_assert_int_eq(f.disc_reason, -PX_ENOENT);
    ep_close(&f);
}
END_TEST

START_TEST(test_stale_unix_socket)
{
    const char *uri = uri_for(2);
    const char *path = uri + strlen("unix://");
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    strcpy(un.sun_path, path);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&un, sizeof un), 0);
    close(fd); /* the file stays, nobody listens */
    pair p;
    memset(&p, 0, sizeof p);
    pair_listen(&p, uri);
    ck_assert_str_eq(p.uri, uri);
    T->listener_close(p.l);
}
END_TEST

/* ---- data over each of the three address families ---------------------------- */

START_TEST(test_connect_accept)
{
    pair p;
    pair_open(&p, uri_for(_i));
    char buf[256];
    int n = T->peer_uri(p.srv.c, buf, sizeof buf);
    ck_assert_int_gt(n, 0);
    if (_i == 0)
        ck_assert_msg(strncmp(buf, "tcp://127.0.0.1:", 16) == 0, "%s", buf);
    else if (_i == 1)
        ck_assert_msg(strncmp(buf, "tcp://[::1]:", 12) == 0, "%s", buf);
    else
        ck_assert_str_eq(buf, "unix://");
    ck_assert_int_eq(T->peer_uri(p.cli.c, buf, sizeof buf), (int)strlen(p.uri));
    ck_assert_str_eq(buf, p.uri);
    ck_assert_int_eq(T->peer_uri(p.cli.c, buf, 4), -PX_ENOSPC);
    if (_i == 1)
        ck_assert_msg(strncmp(p.uri, "tcp://[::1]:", 12) == 0, "%s", p.uri);

    px_tp_caps caps;
    T->get_caps(TPI, &caps);
    ck_assert_uint_eq(caps.flags & PX_TP_CAP_RX_DIRECT, PX_TP_CAP_RX_DIRECT);
    ck_assert_uint_eq(caps.max_msg, UINT32_MAX);

    /* Peer closes cleanly: DISCONNECTED with -PX_EDISCONNECTED. */
    ep_close(&p.cli);
    RUN_UNTIL(p.srv.disconnected);
    ck_assert_int_eq(p.srv.disc_reason, -PX_EDISCONNECTED);
    ck_assert_int_eq(send_frame(&p.srv, 0, 10, 1), -PX_EDISCONNECTED);
    pair_close(&p);
}
END_TEST

static const size_t sizes[] = {0,          1,     100,    4095,     INLINE,
                               INLINE + 1, 65536, 300000, 1u << 20, 16u << 20};
#define NSIZES (sizeof sizes / sizeof sizes[0])

static void sizes_both_ways(pair *p)
{
    uint64_t id = 0;
    for (unsigned seg = 1; seg <= 7; seg += 3)
        for (size_t i = 0; i < NSIZES; i++) {
            ck_assert_int_eq(send_frame(&p->cli, id, sizes[i], seg), 0);
            ck_assert_int_eq(send_frame(&p->srv, id, sizes[i], seg), 0);
            ck_assert_uint_eq(p->cli.completes, 0); /* never from inside send() */
            id++;
        }
    RUN_UNTIL(p->srv.frames == id && p->cli.frames == id && p->cli.completes == id &&
              p->srv.completes == id);
    ck_assert_uint_eq(p->cli.failed + p->srv.failed, 0);
}

START_TEST(test_sizes_assigned)
{
    pair p;
    pair_open(&p, uri_for(_i));
    sizes_both_ways(&p);
    /* 5 of the 10 sizes are over the inline threshold, 3 segment counts. */
    ck_assert_uint_eq(p.srv.assigns, 15);
    ck_assert_uint_eq(p.srv.direct, 15);
    ck_assert_uint_eq(p.srv.inplace, 15);
    ck_assert_uint_eq(p.cli.direct, 15);
    pair_close(&p);
}
END_TEST

START_TEST(test_sizes_declined)
{
    pair p;
    pair_open(&p, uri_for(_i));
    p.srv.assign_mode = p.cli.assign_mode = ASSIGN_DECLINE;
    sizes_both_ways(&p);
    ck_assert_uint_eq(p.srv.assigns, 15);
    ck_assert_uint_eq(p.srv.direct, 0);
    ck_assert_uint_eq(p.srv.inplace, 30);
    pair_close(&p);
}
END_TEST

START_TEST(test_short_assign)
{
    pair p;
    pair_open(&p, uri_for(_i));
    p.srv.assign_mode = ASSIGN_SHORT;
    ck_assert_int_eq(send_frame(&p.cli, 0, 100000, 2), 0);
    RUN_UNTIL(p.srv.disconnected);
    ck_assert_int_eq(p.srv.errors, 1);
    ck_assert_int_eq(p.srv.err_reason, -PX_ESHORTBUF);
    ck_assert_uint_eq(p.srv.frames, 0);
    pair_close(&p);
}
END_TEST

START_TEST(test_fifo_10000)
{
    pair p;
    pair_open(&p, uri_for(_i));
    unsigned seed = 7;
    for (uint64_t id = 0; id < 10000; id++) {
        /* mostly small, a few over the threshold to interleave direct reads */
        size_t len = id % 997 == 5 ? 40000 : rand_r(&seed) % 3000;
        ck_assert_int_eq(send_frame(&p.cli, id, len, 1 + id % 4), 0);
    }
    RUN_UNTIL(p.srv.frames == 10000 && p.cli.completes == 10000);
    ck_assert_uint_eq(p.cli.failed, 0);
    ck_assert_uint_gt(p.srv.max_more, 0); /* batches were seen */
    ck_assert_uint_gt(p.srv.direct, 0);
    pair_close(&p);
}
END_TEST

/* A frame straddling the ring's wrap: the writer sends 3032-byte frames in
 * 7777-byte chunks and waits for them each time, so every read ends inside
 * a frame, the ring never drains, and byte 262144 falls inside a frame. */
START_TEST(test_ring_wrap)
{
    pair p;
    memset(&p, 0, sizeof p);
    pair_listen(&p, uri_for(_i));
    int fd = raw_connect(&p);
    RUN_UNTIL(p.srv.c);
    enum { N = 120, FL = PX_FRAME_HDR_LEN + 3000, CHUNK = 7777 };
    uint8_t *stream = malloc((size_t)N * FL);
    size_t total = 0;
    for (uint64_t id = 0; id < N; id++) {
        total += raw_frame(stream + total, id * 17, 3000); /* hdr_len 0 needs id % 17 == 0 */
    }
    p.srv.id_step = 17;
    for (size_t off = 0; off < total; off += CHUNK) {
        size_t n = total - off < CHUNK ? total - off : CHUNK;
        ck_assert_int_eq(write(fd, stream + off, n), (ssize_t)n);
        uint64_t complete = (off + n) / FL;
        RUN_UNTIL(p.srv.frames == complete);
    }
    tcp_conn *sc = (tcp_conn *)p.srv.c;
    ck_assert_uint_ge(sc->n_straddled, 1);
    ck_assert_uint_eq(p.srv.frames, N);
    free(stream);
    close(fd);
    RUN_UNTIL(p.srv.disconnected);
    ck_assert_int_eq(p.srv.disc_reason, -PX_EDISCONNECTED);
    pair_close(&p);
}
END_TEST

START_TEST(test_reject)
{
    pair p;
    memset(&p, 0, sizeof p);
    p.on_new = ON_NEW_REJECT;
    pair_listen(&p, uri_for(_i));
    pair_connect(&p);
    RUN_UNTIL(p.cli.disconnected);
    ck_assert_int_eq(p.newconns, 1);
    ck_assert(p.cli.disc_reason == -PX_EDISCONNECTED || p.cli.disc_reason == -PX_ECONNRESET);
    pair_close(&p);
}
END_TEST

/* A NEW_CONN left pending is accepted later; its early data waits. */
START_TEST(test_accept_later)
{
    pair p;
    memset(&p, 0, sizeof p);
    p.on_new = ON_NEW_HOLD;
    pair_listen(&p, uri_for(_i));
    pair_connect(&p);
    RUN_UNTIL(p.cli.connected && p.held);
    ck_assert_int_eq(send_frame(&p.cli, 0, 5000, 2), 0);
    RUN_UNTIL(p.cli.completes == 1);
    p.srv.c = p.held;
    ck_assert_int_eq(T->send(p.held, &(px_tp_send){.hdr = {.type = PX_FT_ONEWAY}}), -PX_ENOTCONN);
    px_observer o = ep_obs(&p.srv);
    ck_assert_int_eq(T->accept(p.held, &o), 0);
    RUN_UNTIL(p.srv.frames == 1);
    /* Another pending conn is closed by listener_close. */
    ep e = {0};
    px_uri u;
    o = ep_obs(&e);
    ck_assert_int_eq(px_uri_parse(p.uri, &u), 0);
    ck_assert_int_eq(T->connect(TPI, &u, &o, &e.c), 0);
    RUN_UNTIL(e.connected && p.newconns == 2);
    T->listener_close(p.l);
    p.l = NULL;
    RUN_UNTIL(e.disconnected);
    ep_close(&e);
    pair_close(&p);
}
END_TEST

START_TEST(test_close_in_upcalls)
{
    /* Server closes from inside FRAME, with more frames behind in the ring. */
    pair p;
    pair_open(&p, uri_for(_i));
    p.srv.close_in_frame = 1;
    for (uint64_t id = 0; id < 50; id++)
        ck_assert_int_eq(send_frame(&p.cli, id, 100, 1), 0);
    RUN_UNTIL(p.srv.frames >= 1 && p.cli.disconnected);
    ck_assert_uint_eq(p.srv.frames, 1);
    ck_assert_uint_eq(p.cli.completes, 50);
    pair_close(&p);

    /* Client closes from inside the first SEND_COMPLETE: the rest complete
     * exactly once (written ones with 0, the others with -PX_ECLOSED). */
    pair_open(&p, uri_for(_i));
    p.cli.close_in_complete = 1;
    for (uint64_t id = 0; id < 50; id++)
        ck_assert_int_eq(send_frame(&p.cli, id, 100000, 1), 0);
    RUN_UNTIL(p.cli.completes >= 1);
    ck_assert_uint_eq(p.cli.completes, 50);
    RUN_UNTIL(p.srv.disconnected);
    pair_close(&p);

    /* close() with queued sends completes them before it returns. */
    pair_open(&p, uri_for(_i));
    for (uint64_t id = 0; id < 10; id++)
        ck_assert_int_eq(send_frame(&p.cli, id, 10, 1), 0);
    ep_close(&p.cli);
    ck_assert_uint_eq(p.cli.completes, 10);
    ck_assert_uint_eq(p.cli.failed, 10);
    ck_assert_int_eq(p.cli.last_status, -PX_ECLOSED);
    p.srv.close_in_disc = 1;
    RUN_UNTIL(p.srv.disconnected);
    ck_assert(p.srv.closed);
    pair_close(&p);

    /* Listener closed from inside NEW_CONN, after accepting. */
    pair_open(&p, uri_for(_i));
    pair q;
    memset(&q, 0, sizeof q);
    q.close_listener_in_new = 1;
    pair_listen(&q, uri_for(_i));
    pair_connect(&q);
    RUN_UNTIL(q.cli.connected && q.newconns == 1);
    ck_assert_ptr_null(q.l);
    ck_assert_int_eq(send_frame(&q.cli, 0, 20000, 1), 0);
    RUN_UNTIL(q.srv.frames == 1);
    pair_close(&q);
    pair_close(&p);
}
END_TEST

START_TEST(test_peer_dies_mid_frame)
{
    pair p;
    memset(&p, 0, sizeof p);
    pair_listen(&p, uri_for(_i));
    int fd = raw_connect(&p);
    RUN_UNTIL(p.srv.c);
    uint8_t buf[2000];
    raw_frame(buf, 0, 1000);
    ck_assert_int_eq(write(fd, buf, 500), 500);
    close(fd);
    RUN_UNTIL(p.srv.disconnected);
    ck_assert_int_eq(p.srv.disc_reason, -PX_ECONNRESET);
    ck_assert_uint_eq(p.srv.frames, 0);
    ck_assert_int_eq(p.srv.errors, 0);
    pair_close(&p);

    /* ... and in the middle of a direct (assigned) receive. */
    memset(&p, 0, sizeof p);
    pair_listen(&p, uri_for(_i));
    fd = raw_connect(&p);
    RUN_UNTIL(p.srv.c);
    uint8_t *big = malloc(PX_FRAME_HDR_LEN + (1u << 20));
    raw_frame(big, 0, 1u << 20);
    ck_assert_int_eq(write(fd, big, 100000), 100000);
    RUN_UNTIL(p.srv.assigns == 1);
    close(fd);
    free(big);
    RUN_UNTIL(p.srv.disconnected);
    ck_assert_int_eq(p.srv.disc_reason, -PX_ECONNRESET);
    ck_assert_uint_eq(p.srv.frames, 0);
    pair_close(&p);
}
END_TEST

START_TEST(test_garbage)
{
    pair p;
    memset(&p, 0, sizeof p);
    pair_listen(&p, uri_for(_i));
    int fd = raw_connect(&p);
    RUN_UNTIL(p.srv.c);
    uint8_t buf[64];
    raw_frame(buf, 0, 0);
    memset(buf + PX_FRAME_HDR_LEN, 0xab, sizeof buf - PX_FRAME_HDR_LEN);
    ck_assert_int_eq(write(fd, buf, sizeof buf), (ssize_t)sizeof buf);
    RUN_UNTIL(p.srv.disconnected);
    ck_assert_uint_eq(p.srv.frames, 1); /* the good frame before the garbage */
    ck_assert_int_eq(p.srv.errors, 1);
    ck_assert_int_eq(p.srv.err_reason, -PX_EPROTO);
    ck_assert_int_eq(p.srv.disc_reason, -PX_EPROTO);
    close(fd);
    pair_close(&p);

    /* A length over the limit. */
    memset(&p, 0, sizeof p);
    pair_listen(&p, uri_for(_i));
    fd = raw_connect(&p);
    RUN_UNTIL(p.srv.c);
    px_frame_hdr h = {
        .version = PX_WIRE_VERSION, .type = PX_FT_ONEWAY, .data_len = (64u << 20) + 1};
    px_frame_encode(&h, buf);
    ck_assert_int_eq(write(fd, buf, PX_FRAME_HDR_LEN), PX_FRAME_HDR_LEN);
    RUN_UNTIL(p.srv.disconnected);
    ck_assert_int_eq(p.srv.err_reason, -PX_EMSGSIZE);
    close(fd);
    pair_close(&p);
}
END_TEST

START_TEST(test_bad_sends)
{
    pair p;
    pair_open(&p, uri_for(_i));
    uint8_t d[10];
    px_iov iov = {d, sizeof d, NULL};
    px_tp_send s = {.hdr = {.type = PX_FT_ONEWAY, .data_len = 11}, .data = &iov, .data_count = 1};
    ck_assert_int_eq(T->send(p.cli.c, &s), -PX_EINVAL); /* lengths disagree */
    s.hdr.data_len = 10;
    s.hdr.hdr_len = 4;
    ck_assert_int_eq(T->send(p.cli.c, &s), -PX_EINVAL); /* no app header */
    s.hdr.hdr_len = 0;
    s.hdr.type = 99;
    ck_assert_int_eq(T->send(p.cli.c, &s), -PX_EINVAL);
    pair_close(&p);
}
END_TEST

/* poll() alone, without running the loop, moves frames both ways once the
 * conns are warm. */
START_TEST(test_poll)
{
    pair p;
    pair_open(&p, uri_for(_i));
    ck_assert_int_eq(send_frame(&p.cli, 0, 10, 1), 0);
    RUN_UNTIL(p.srv.frames == 1); /* warms the server conn */
    ck_assert_int_eq(send_frame(&p.srv, 0, 10, 1), 0);
    RUN_UNTIL(p.cli.frames == 1);
    for (uint64_t id = 1; id < 100; id++) {
        ck_assert_int_eq(send_frame(&p.cli, id, 200, 2), 0);
        ev_tstamp end = ev_time() + 10;
        while (p.srv.frames <= id) {
            ck_assert(ev_time() < end);
            T->poll(TPI);
        }
    }
    ck_assert_uint_eq(p.cli.completes, 100);
    pair_close(&p);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tcp_transport");
    TCase *tc = tcase_create("tcp");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_registry);
    tcase_add_test(tc, test_bad_uris);
    tcase_add_test(tc, test_stale_unix_socket);
    tcase_add_loop_test(tc, test_connect_accept, 0, 3);
    tcase_add_loop_test(tc, test_sizes_assigned, 0, 3);
    tcase_add_loop_test(tc, test_sizes_declined, 0, 3);
    tcase_add_loop_test(tc, test_short_assign, 0, 3);
    tcase_add_loop_test(tc, test_fifo_10000, 0, 3);
    tcase_add_loop_test(tc, test_ring_wrap, 0, 3);
    tcase_add_loop_test(tc, test_reject, 0, 3);
    tcase_add_loop_test(tc, test_accept_later, 0, 3);
    tcase_add_loop_test(tc, test_close_in_upcalls, 0, 3);
    tcase_add_loop_test(tc, test_peer_dies_mid_frame, 0, 3);
    tcase_add_loop_test(tc, test_garbage, 0, 3);
    tcase_add_loop_test(tc, test_bad_sends, 0, 3);
    tcase_add_loop_test(tc, test_poll, 0, 3);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
