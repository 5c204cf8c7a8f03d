/* Fuzz the live handshake and session state machine with sequences of
 * frames, well-formed enough to get past the decoder and then in any order
 * and with any ids, flags and lengths.
 *
 * Input byte 0, bit 0: server side (a raw client talks to the harness's
 * server) or client side (a raw server answers a plexus client that has
 * requests and one-way messages queued); bit 1: start with a valid HELLO
 * (server side) or HELLO_ACK (client side). Then records of
 *   type, flags, hdr_len, data_len (2 bytes), id, aux, ext_len
 * each followed by its payload bytes, taken from the input.
 * Invariants: nothing crashes or leaks; the server is left with no
 * connection once the socket closes; every message the client sent ends
 * exactly once, also when the peer speaks nonsense. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fuzz.h"
#include "fuzz_net.h"
#include "plexus/transport.h"
#include "session/handshake.h"

#define REC 8

/* The frames the input describes, appended to out; returns the length. */
static size_t frames_of(const uint8_t *data, size_t size, uint8_t *out, size_t cap)
{
    size_t len = 0, i = 0;
    while (i + REC <= size) {
        const uint8_t *r = data + i;
        uint16_t hdr_len = r[2], ext_len = r[7] % 64;
        uint32_t data_len = (uint32_t)r[3] | (uint32_t)r[4] << 8;
        i += REC;
        size_t body = (size_t)ext_len + hdr_len + data_len;
        if (len + 32 + body > cap)
            break;
        fuzz_net_frame(out + len, (uint8_t)(r[0] % 12), r[1] & 3, hdr_len, data_len,
                       (uint64_t)r[5] | (uint64_t)(r[5] & 0x80) << 25, r[6], ext_len);
        len += 32;
        size_t take = size - i < body ? size - i : body;
        memcpy(out + len, data + i, take);
        memset(out + len + take, 0, body - take);
        i += take;
        len += body;
    }
    return len;
}

static int gone(fuzz_net *n)
{
    return n->live_conns == 0;
}

static void server_side(fuzz_net *n, const uint8_t *data, size_t size, int hello)
{
    static uint8_t buf[1 << 20];
    size_t len = hello ? fuzz_net_hello(buf, 1u << 20) : 0;
    len += frames_of(data, size, buf + len, sizeof(buf) - len);
    int fd = fuzz_net_dial(n);
    fuzz_net_write(n, fd, buf, len);
    fuzz_net_run(n, fd, 5);
    close(fd);
    FUZZ_CHECK(fuzz_net_run_until(n, -1, gone, 5000));
}

/* ---- client side: a plexus client against a raw server ---------------------- */

#define N_MSGS 6

struct cli {
    px_msg msgs[N_MSGS];
    int ends[N_MSGS]; /* completions per message: must end at exactly 1 */
    int session_gone;
};

static struct cli cl;

static void c_end(px_msg *m)
{
    ptrdiff_t k = m - cl.msgs;
    FUZZ_CHECK(k >= 0 && k < N_MSGS);
    cl.ends[k]++;
    FUZZ_CHECK(cl.ends[k] == 1);
}

static void c_msg(px_conn *c, px_msg *m, int more, void *user)
{
    if (m->type != PX_MSG_RESPONSE) { /* the server may send us requests too */
        FUZZ_CHECK(px_release_msg(m) == 0);
        return;
    }
    c_end(m);
    FUZZ_CHECK(px_release_response(m) == 0);
}
static void c_err(px_conn *c, px_msg *m, px_msg_dir dir, int reason, void *user)
{
    FUZZ_CHECK(dir == PX_DIR_OUT && reason < 0);
    c_end(m);
}
static void c_done(px_conn *c, px_msg *m, void *user)
{
    c_end(m);
}
static void c_event(px_session *s, const px_event *ev, void *user)
{
    if (ev->type == PX_EV_SESSION_TEARDOWN)
        cl.session_gone = 1;
}

static const px_session_ops cli_ops = {.on_session_event = c_event,
                                       .on_msg = c_msg,
                                       .on_msg_error = c_err,
                                       .on_msg_delivered = c_done,
                                       .on_msg_send_complete = c_done};

static int cli_gone(fuzz_net *n)
{
    return cl.session_gone;
}

static void client_side(fuzz_net *n, const uint8_t *data, size_t size, int hello_ack)
{
    static int lfd = -1;
    static char path[108];
    if (lfd < 0) {
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        snprintf(path, sizeof(path), "/tmp/plexus-fuzz-raw-%d.sock", (int)getpid());
        unlink(path);
        memcpy(a.sun_path, path, strlen(path) + 1);
        lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        FUZZ_CHECK(lfd >= 0 && bind(lfd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
                   listen(lfd, 8) == 0);
    }
    char uri[128];
    snprintf(uri, sizeof(uri), "unix://%s", path);
    memset(&cl, 0, sizeof(cl));
    px_session *s;
    px_conn *c;
    px_session_params p = {.uri = uri, .ops = &cli_ops};
    FUZZ_CHECK(px_session_create(n->ctx, &p, &s) == 0);
    FUZZ_CHECK(px_connect(s, n->ctx, &c) == 0);
    static uint8_t hdr[8] = "fuzzhdr", payload[20000];
    static px_iov iov = {.base = payload, .len = sizeof(payload)};
    for (int k = 0; k < N_MSGS; k++) {
        px_msg *m = &cl.msgs[k];
        m->out.header = hdr;
        m->out.header_len = sizeof(hdr);
        m->out.iov = k % 3 == 2 ? &iov : NULL;
        m->out.iov_count = k % 3 == 2;
        m->flags = k == 1 ? PX_MSG_RECEIPT : 0;
        int rc = k % 2 ? px_send_msg(c, m) : px_send_request(c, m);
        FUZZ_CHECK(rc == 0);
    }
    /* Let it connect and say HELLO, then answer with the input. */
    px_ctx_run_timeout(n->ctx, 2);
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    for (int t = 0; fd < 0 && t < 100; t++) {
        px_ctx_run_timeout(n->ctx, 2);
        fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    }
    FUZZ_CHECK(fd >= 0);
    static uint8_t buf[1 << 20];
    size_t len = 0;
    if (hello_ack) {
        px_hello_ack a = {.version = 1,
                          .status = PX_HS_ACCEPT,
                          .queue_depth = 4,
                          .max_msg = 1u << 20,
                          .max_hdr = 4096,
                          .max_iov = 64,
                          .keepalive_ms = 60000,
                          .token = 9};
        int hl = px_hello_ack_encode(&a, buf + 32, 512);
        FUZZ_CHECK(hl > 0);
        fuzz_net_frame(buf, PX_FT_HELLO_ACK, 0, 0, (uint32_t)hl, 0, 0, 0);
        len = 32 + (size_t)hl;
    }
    len += frames_of(data, size, buf + len, sizeof(buf) - len);
    fuzz_net_write(n, fd, buf, len);
    fuzz_net_run(n, fd, 5);
    close(fd);
    px_session_close(s);
    FUZZ_CHECK(fuzz_net_run_until(n, -1, cli_gone, 15000));
    for (int k = 0; k < N_MSGS; k++)
        FUZZ_CHECK(cl.ends[k] == 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    fuzz_net *n = fuzz_net_get();
    if (data[0] & 1)
        client_side(n, data + 1, size - 1, data[0] & 2);
    else
        server_side(n, data + 1, size - 1, data[0] & 2);
    return 0;
}
