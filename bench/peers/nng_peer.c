/* px-peer-nng: nng beside plexus in bench/compare.sh, used the way nng's
 * own perf tool uses it: pair1 sockets for latency and throughput, here
 * also for request/reply with a window. Command line and figures:
 * peer_common.h. ENDPOINT is an nng URL, tcp://127.0.0.1:PORT. */
#include <nng/nng.h>
#include <nng/protocol/pair1/pair.h>
#include <nng/supplemental/util/platform.h>

#include "peer_common.h"

static void check(int rv, const char *what)
{
    if (rv != 0) {
        fprintf(stderr, "px-peer-nng: %s: %s\n", what, nng_strerror(rv));
        exit(1);
    }
}

static void send_buf(nng_socket s, const void *buf, size_t len)
{
    check(nng_send(s, (void *)buf, len, 0), "nng_send");
}

static size_t recv_buf(nng_socket s, void *buf, size_t cap)
{
    size_t len = cap;
    check(nng_recv(s, buf, &len, 0), "nng_recv");
    return len;
}

/* The clients' loops (peer_common.h) get the socket by pointer. */
static void nsend(void *s, const void *buf, size_t len)
{
    send_buf(*(nng_socket *)s, buf, len);
}

static void nrecv(void *s, void *buf, size_t cap)
{
    recv_buf(*(nng_socket *)s, buf, cap);
}

static void oneway_server(nng_socket s, const struct peer_args *a)
{
    char *buf = malloc(a->size + 1);
    uint64_t n = 0, t0 = 0;
    while (recv_buf(s, buf, a->size + 1) == a->size)
        if (n++ == 0)
            t0 = peer_now_ns();
    peer_print_rate(n > 0 ? n - 1 : 0, peer_now_ns() - t0);
    free(buf);
}

/* rr and lat: the server echoes every message. */
static void echo_server(nng_socket s, const struct peer_args *a)
{
    char *buf = malloc(a->size);
    for (;;) {
        size_t len = recv_buf(s, buf, a->size);
        send_buf(s, buf, len);
    }
}

int main(int argc, char **argv)
{
    struct peer_args a;
    int rc = peer_parse(argc, argv, &a);
    if (rc)
        return rc;
    nng_socket s;
    check(nng_pair1_open(&s), "nng_pair1_open");
    check(nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, a.size + 64), "NNG_OPT_RECVMAXSZ");
    if (a.server)
        check(nng_listen(s, a.endpoint, NULL, 0), "nng_listen");
    else
        check(nng_dial(s, a.endpoint, NULL, 0), "nng_dial");
    if (a.server && a.test == PEER_ONEWAY)
        oneway_server(s, &a);
    else if (a.server)
        echo_server(s, &a);
    else if (a.test == PEER_ONEWAY)
        peer_oneway_client(&a, nsend, &s);
    else if (a.test == PEER_RR)
        peer_rr_client(&a, nsend, nrecv, &s);
    else
        peer_lat_client(&a, nsend, nrecv, &s);
    fflush(stdout);
    nng_msleep(100); /* nng_close drops what is queued: let the end marker go */
    nng_close(s);
    return 0;
}
