/* The live-context fuzz harness; see fuzz_net.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "fuzz_net.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fuzz.h"
#include "plexus/transport.h"
#include "session/handshake.h"

static fuzz_net net;

static void on_event(px_session *s, const px_event *ev, void *user)
{
    if (ev->type == PX_EV_CONN_ESTABLISHED) {
        net.live_conns++;
        net.seen_conns++;
    }
    if (ev->type == PX_EV_CONN_TEARDOWN)
        net.live_conns--;
}

static void on_msg(px_conn *c, px_msg *m, int more, void *user)
{
    if (m->type == PX_MSG_REQUEST)
        net.requests++;
    else
        net.oneways++;
    if (net.on_msg)
        net.on_msg(m);
    if (m->type == PX_MSG_REQUEST) {
        m->out = (px_msg_vec){0};
        if (px_send_response(m) == 0)
            return;
    }
    px_release_msg(m);
}

static const px_session_ops ops = {.on_session_event = on_event, .on_msg = on_msg};

fuzz_net *fuzz_net_get(void)
{
    if (net.ctx)
        return &net;
    px_log_set_level(PX_LOG_OFF); /* hostile input is logged by design */
    px_ctx_opts o = {.max_msg_size = 1u << 20, .handshake_timeout_ms = 2000};
    FUZZ_CHECK(px_ctx_create(&o, &net.ctx) == 0);
    snprintf(net.uri, sizeof(net.uri), "unix:///tmp/plexus-fuzz-%d.sock", (int)getpid());
    px_server *srv;
    FUZZ_CHECK(px_server_bind(net.ctx, net.uri, &ops, NULL, &srv) == 0);
    return &net;
}

int fuzz_net_dial(fuzz_net *n)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", n->uri + strlen("unix://"));
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    return fd;
}

static void drain(int fd)
{
    static uint8_t sink[65536];
    while (fd >= 0 && read(fd, sink, sizeof(sink)) > 0)
        ;
}

int fuzz_net_write(fuzz_net *n, int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    uint64_t end = px_now_ns() + 2000000000ull;
    while (len) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            p += w;
            len -= (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN)
            return -1;
        if (px_now_ns() > end)
            return -1; /* the server stopped reading: a limit, fine */
        px_ctx_poll(n->ctx);
        drain(fd);
    }
    return 0;
}

void fuzz_net_run(fuzz_net *n, int fd, int ms)
{
    uint64_t end = px_now_ns() + (uint64_t)ms * 1000000u;
    while (px_now_ns() < end) {
        px_ctx_run_timeout(n->ctx, 1);
        drain(fd);
    }
}

int fuzz_net_run_until(fuzz_net *n, int fd, int (*cond)(fuzz_net *n), int ms)
{
    uint64_t end = px_now_ns() + (uint64_t)ms * 1000000u;
    while (!cond(n) && px_now_ns() < end) {
        px_ctx_run_timeout(n->ctx, 1);
        drain(fd);
    }
    return cond(n);
}

void fuzz_net_frame(uint8_t *out, uint8_t type, uint16_t flags, uint16_t hdr_len,
                    uint32_t data_len, uint64_t id, uint32_t aux, uint16_t ext_len)
{
    px_frame_hdr h = {.version = PX_WIRE_VERSION,
                      .type = type,
                      .flags = flags,
                      .hdr_len = hdr_len,
                      .ext_len = ext_len,
                      .data_len = data_len,
                      .id = id,
                      .aux = aux};
    px_frame_encode(&h, out);
}

size_t fuzz_net_hello(uint8_t *buf, uint64_t max_msg)
{
    static const char uri[] = "fuzz://peer";
    px_hello h = {.min_version = 1,
                  .max_version = 1,
                  .queue_depth = 64,
                  .max_msg = max_msg,
                  .max_hdr = 4096,
                  .max_iov = 64,
                  .keepalive_ms = 60000,
                  .uri = uri,
                  .uri_len = sizeof(uri) - 1};
    int len = px_hello_encode(&h, buf + PX_FRAME_HDR_LEN, 480);
    FUZZ_CHECK(len > 0);
    fuzz_net_frame(buf, PX_FT_HELLO, 0, 0, (uint32_t)len, 0, 0, 0);
    return PX_FRAME_HDR_LEN + (size_t)len;
}
