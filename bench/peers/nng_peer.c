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

static void send_buf(nng_socket s, void *buf, size_t len)
{
    check(nng_send(s, buf, len, 0), "nng_send");
}

static size_t recv_buf(nng_socket s, void *buf, size_t cap)
{
    size_t len = cap;
    check(nng_recv(s, buf, &len, 0), "nng_recv");
    return len;
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

static void oneway_client(nng_socket s, const struct peer_args *a)
{
    char *buf = calloc(1, a->size);
    uint64_t end = peer_now_ns() + (uint64_t)(a->duration * 1e9), n = 0;
    while ((n & 1023) || peer_now_ns() < end) {
        send_buf(s, buf, a->size);
        n++;
    }
    send_buf(s, "E", 1);
    printf("sent: %llu\n", (unsigned long long)n);
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

static void rr_client(nng_socket s, const struct peer_args *a)
{
    char *buf = calloc(1, a->size);
    for (unsigned i = 0; i < a->window; i++)
        send_buf(s, buf, a->size);
    uint64_t t0 = peer_now_ns(), end = t0 + (uint64_t)(a->duration * 1e9), n = 0;
    while ((n & 255) || peer_now_ns() < end) {
        recv_buf(s, buf, a->size);
        n++;
        send_buf(s, buf, a->size);
    }
    peer_print_rate(n, peer_now_ns() - t0);
    free(buf);
}

static void lat_client(nng_socket s, const struct peer_args *a)
{
    char *buf = calloc(1, a->size);
    struct peer_samples smp = {0};
    uint64_t end = peer_now_ns() + (uint64_t)(a->duration * 1e9), n = 0, t;
    while ((t = peer_now_ns()) < end) {
        send_buf(s, buf, a->size);
        recv_buf(s, buf, a->size);
        peer_sample(&smp, peer_now_ns() - t);
        n++;
    }
    peer_print_lat(&smp, n);
    free(buf);
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
        oneway_client(s, &a);
    else if (a.test == PEER_RR)
        rr_client(s, &a);
    else
        lat_client(s, &a);
    fflush(stdout);
    nng_msleep(100); /* nng_close drops what is queued: let the end marker go */
    nng_close(s);
    return 0;
}
