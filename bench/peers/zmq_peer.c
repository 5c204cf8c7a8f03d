/* px-peer-zmq: ZeroMQ (libzmq) beside plexus in bench/compare.sh, used the
 * way libzmq's own perf tools use it: PUSH/PULL for one-way throughput
 * (local_thr/remote_thr), REQ/REP for latency (local_lat/remote_lat), and
 * DEALER/ROUTER for request/reply with a window. Command line and figures:
 * peer_common.h. ENDPOINT is a ZeroMQ endpoint, tcp://127.0.0.1:PORT. */
#include <errno.h>
#include <zmq.h>

#include "peer_common.h"

static void die(const char *what)
{
    fprintf(stderr, "px-peer-zmq: %s: %s\n", what, zmq_strerror(errno));
    exit(1);
}

static void *open_socket(void *ctx, int type, const struct peer_args *a)
{
    void *s = zmq_socket(ctx, type);
    if (!s)
        die("zmq_socket");
    if ((a->server ? zmq_bind(s, a->endpoint) : zmq_connect(s, a->endpoint)) != 0)
        die(a->server ? "zmq_bind" : "zmq_connect");
    return s;
}

/* PULL: count from the first message to the end marker (another size). */
static void oneway_server(void *s, const struct peer_args *a)
{
    char *buf = malloc(a->size + 1);
    uint64_t n = 0, t0 = 0;
    for (;;) {
        int len = zmq_recv(s, buf, a->size + 1, 0);
        if (len < 0)
            die("zmq_recv");
        if ((size_t)len != a->size)
            break;
        if (n++ == 0)
            t0 = peer_now_ns();
    }
    peer_print_rate(n > 0 ? n - 1 : 0, peer_now_ns() - t0); /* intervals after the first */
    free(buf);
}

/* ROUTER: echo each request to the DEALER that sent it. */
static void rr_server(void *s, const struct peer_args *a)
{
    char id[256], *buf = malloc(a->size);
    for (;;) {
        int idlen = zmq_recv(s, id, sizeof(id), 0);
        int len = zmq_recv(s, buf, a->size, 0);
        if (idlen < 0 || len < 0)
            die("zmq_recv");
        if (zmq_send(s, id, (size_t)idlen, ZMQ_SNDMORE) < 0 || zmq_send(s, buf, (size_t)len, 0) < 0)
            die("zmq_send");
    }
}

/* REP: echo. */
static void lat_server(void *s, const struct peer_args *a)
{
    char *buf = malloc(a->size);
    for (;;) {
        int len = zmq_recv(s, buf, a->size, 0);
        if (len < 0 || zmq_send(s, buf, (size_t)len, 0) < 0)
            die("zmq echo");
    }
}

static void zsend(void *s, const void *buf, size_t len)
{
    if (zmq_send(s, buf, len, 0) < 0)
        die("zmq_send");
}

static void zrecv(void *s, void *buf, size_t cap)
{
    if (zmq_recv(s, buf, cap, 0) < 0)
        die("zmq_recv");
}

int main(int argc, char **argv)
{
    struct peer_args a;
    int rc = peer_parse(argc, argv, &a);
    if (rc)
        return rc;
    void *ctx = zmq_ctx_new();
    if (!ctx)
        die("zmq_ctx_new");
    static const int types[3][2] = {[PEER_ONEWAY] = {ZMQ_PUSH, ZMQ_PULL},
                                    [PEER_RR] = {ZMQ_DEALER, ZMQ_ROUTER},
                                    [PEER_LAT] = {ZMQ_REQ, ZMQ_REP}};
    void *s = open_socket(ctx, types[a.test][a.server], &a);
    if (a.server) {
        if (a.test == PEER_ONEWAY)
            oneway_server(s, &a);
        else if (a.test == PEER_RR)
            rr_server(s, &a);
        else
            lat_server(s, &a);
    } else {
        if (a.test == PEER_ONEWAY)
            peer_oneway_client(&a, zsend, s);
        else if (a.test == PEER_RR)
            peer_rr_client(&a, zsend, zrecv, s);
        else
            peer_lat_client(&a, zsend, zrecv, s);
    }
    fflush(stdout);
    zmq_close(s); /* the default linger: what is queued is delivered first */
    zmq_ctx_term(ctx);
    return 0;
}
