/* floor_tcp — the raw TCP floor px-perf is compared against: no library,
 * just two processes (fork) on loopback, TCP_NODELAY, one CPU each.
 *
 *   floor_tcp [--test pp|bw|all] [--sizes 64,1M] [--busy] [--iters N]
 *             [--duration SEC] [--cpu-server 0] [--cpu-client 1]
 *             [--write BYTES] [--read BYTES] [--sockbuf BYTES] [--streams N] [--json]
 *
 * pp: ping-pong, the client sends SIZE bytes, the server echoes them; one
 *     in flight. Blocking recv/send, or with --busy non-blocking recv spun
 *     on (the socket busy-poll of sockperf/UCX). Round trip p50/p99 in us,
 *     round trips per second.
 * bw: the client streams SIZE-byte messages, the server reads them all and
 *     acknowledges the total with one byte; GB/s (10^9 bytes per second).
 *     Each message is written in --write-byte pieces (default 512K) from
 *     one buffer and read in --read-byte pieces (default 32K), both
 *     cache-resident, as iperf3 does: the floor is what the socket costs,
 *     not a cold buffer. The defaults are the best of a sweep on a 2-vCPU
 *     VM (writes 64K..4M, reads 16K..256K, socket buffers the kernel's or
 *     4M; docs/PERFORMANCE.md). --sockbuf sets SO_SNDBUF and SO_RCVBUF on
 *     both sides (default: the kernel's autotuning). --streams N spreads
 *     each run over N connections, pieces going to whichever can take one
 *     (ucx_perftest's tcp bandwidth uses two: its rendezvous lanes).
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct opts {
    int pp, bw, busy, json;
    size_t sizes[16];
    int n_sizes;
    long iters;
    double duration;
    int cpu_server, cpu_client;
    size_t write_sz, read_sz; /* bw: the pieces written and read */
    int sockbuf;              /* SO_SNDBUF/SO_RCVBUF, 0: the kernel's */
    int streams;              /* bw: connections the stream is spread over */
};

#define MAX_STREAMS 8

static int g_sockbuf; /* for tune(), which both processes call */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "floor_tcp: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void pin(int cpu)
{
    cpu_set_t set;
    if (cpu < 0)
        return;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0)
        die("sched_setaffinity");
}

/* Receive exactly len bytes. busy: spin on a non-blocking recv. */
static int recv_all(int fd, char *p, size_t len, int busy)
{
    while (len) {
        ssize_t n = recv(fd, p, len, busy ? MSG_DONTWAIT : 0);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else if (n == 0) {
            return -1;
        } else if (errno != EAGAIN && errno != EINTR) {
            return -1;
        }
    }
    return 0;
}

static int send_all(int fd, const char *p, size_t len)
{
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            return -1;
        }
    }
    return 0;
}

/* Socket buffers are set before listen and connect: the window scale is
 * agreed in the handshake. */
static void set_bufs(int fd)
{
    if (fd >= 0 && g_sockbuf) {
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &g_sockbuf, sizeof(g_sockbuf));
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &g_sockbuf, sizeof(g_sockbuf));
    }
}

static int listener(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    set_bufs(fd);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, MAX_STREAMS) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) < 0)
        die("listen");
    *port = ntohs(a.sin_port);
    return fd;
}

static void tune(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int dial(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    set_bufs(fd);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        die("connect");
    tune(fd);
    return fd;
}

/* bw over several connections: read whatever arrives on any of them until
 * `left` bytes have, in read_sz pieces. */
static void drain_streams(const int *fds, int n, uint64_t left, char *buf, size_t read_sz)
{
    struct pollfd p[MAX_STREAMS];
    for (int i = 0; i < n; i++)
        p[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
    while (left) {
        if (poll(p, (nfds_t)n, -1) < 0 && errno != EINTR)
            _exit(1);
        for (int i = 0; i < n && left; i++) {
            if (!(p[i].revents & POLLIN))
                continue;
            ssize_t k = recv(fds[i], buf, left < read_sz ? left : read_sz, MSG_DONTWAIT);
            if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR))
                _exit(1);
            if (k > 0)
                left -= (uint64_t)k;
        }
    }
}

/* bw over several connections: `total` bytes in `piece`s, each to a
 * connection that can take it. */
static void feed_streams(const int *fds, int n, uint64_t total, const char *buf, size_t piece)
{
    struct pollfd p[MAX_STREAMS];
    for (int i = 0; i < n; i++)
        p[i] = (struct pollfd){.fd = fds[i], .events = POLLOUT};
    while (total) {
        if (poll(p, (nfds_t)n, -1) < 0 && errno != EINTR)
            die("poll");
        for (int i = 0; i < n && total; i++) {
            if (!(p[i].revents & POLLOUT))
                continue;
            ssize_t k =
                send(fds[i], buf, total < piece ? total : piece, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (k < 0 && errno != EAGAIN && errno != EINTR)
                die("stream");
            if (k > 0)
                total -= (uint64_t)k;
        }
    }
}

/* The server: echo (pp) or swallow and acknowledge (bw) until EOF. The
 * client announces each run with a 16-byte preamble: mode, size, total. */
static void serve(int lfd, const struct opts *o)
{
    pin(o->cpu_server);
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0)
        die("accept");
    tune(fd);
    int fds[MAX_STREAMS] = {fd};
    for (int i = 1; i < o->streams; i++) {
        if ((fds[i] = accept(lfd, NULL, NULL)) < 0)
            die("accept");
        tune(fds[i]);
    }
    char *buf = malloc(64u << 20);
    uint64_t pre[2];
    while (recv_all(fd, (char *)pre, sizeof(pre), 0) == 0) {
        size_t size = pre[0] & 0xffffffffu;
        if (pre[0] >> 32) { /* bw: read pre[1] bytes, answer one */
            /* Read in cache-sized pieces, as iperf3 does: the floor is the
             * socket's cost, not a cold destination buffer's. */
            uint64_t left = pre[1];
            if (o->streams > 1) {
                drain_streams(fds, o->streams, left, buf, o->read_sz);
                left = 0;
            }
            while (left) {
                ssize_t n = recv(fd, buf, left < o->read_sz ? left : o->read_sz, 0);
                if (n <= 0)
                    _exit(1);
                left -= (uint64_t)n;
            }
            send_all(fd, "k", 1);
            continue;
        }
        /* Echo until the message marked last (first byte 'E'). */
        do {
            if (recv_all(fd, buf, size, o->busy) || send_all(fd, buf, size))
                _exit(1);
        } while (buf[0] != 'E');
    }
    _exit(0);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int first_row = 1;

static void row_begin(const struct opts *o)
{
    if (o->json)
        printf("%s\n    ", first_row ? "" : ",");
    first_row = 0;
}

/* One ping-pong run: iters round trips, or as many as fit the duration
 * (capped by the sample array), each timed. The last one carries the end
 * mark. */
static void run_pp(int fd, const struct opts *o, size_t size, char *buf, uint64_t *t, long cap)
{
    uint64_t pre[2] = {size, 0};
    send_all(fd, (char *)pre, sizeof(pre));
    uint64_t stop = now_ns() + (uint64_t)(o->duration * 1e9);
    long done = 0;
    buf[0] = 0;
    while (buf[0] != 'E') {
        if (done + 1 == cap || (!o->iters && now_ns() >= stop))
            buf[0] = 'E';
        uint64_t t0 = now_ns();
        if (send_all(fd, buf, size) || recv_all(fd, buf, size, o->busy))
            die("ping-pong");
        t[done++] = now_ns() - t0;
    }
    buf[0] = 0;
    uint64_t sum = 0;
    for (long i = 0; i < done; i++)
        sum += t[i];
    qsort(t, (size_t)done, sizeof(*t), cmp_u64);
    double p50 = t[done / 2] / 1e3, p99 = t[(long)(done * 0.99)] / 1e3;
    double rate = done / (sum / 1e9);
    const char *name = o->busy ? "tcp-pp-busy" : "tcp-pp-blocking";
    row_begin(o);
    if (o->json)
        printf("{\"test\": \"%s\", \"size\": %zu, \"iters\": %ld, \"rtt_us\": {\"p50\": %.3f, "
               "\"p99\": %.3f, \"mean\": %.3f}, \"msgs_per_s\": %.1f}",
               name, size, done, p50, p99, sum / 1e3 / done, rate);
    else
        printf("%-16s %8zu B  rtt p50 %8.2f us  p99 %8.2f us  %8.4f M rt/s\n", name, size, p50, p99,
               rate / 1e6);
}

static void run_bw(const int *fds, const struct opts *o, size_t size, char *buf)
{
    int fd = fds[0];
    /* Enough bytes for ~the duration at ~10 GB/s, at least 64 writes. */
    uint64_t writes = o->iters ? (uint64_t)o->iters : (uint64_t)(o->duration * 1e10 / size);
    if (writes < 64)
        writes = 64;
    uint64_t pre[2] = {(1ull << 32) | size, writes * size};
    buf[0] = 0;
    send_all(fd, (char *)pre, sizeof(pre));
    uint64_t t0 = now_ns();
    size_t piece = o->write_sz < size ? o->write_sz : size;
    if (o->streams > 1)
        feed_streams(fds, o->streams, writes * size, buf, piece);
    else
        for (uint64_t i = 0; i < writes; i++)
            for (size_t off = 0; off < size; off += piece)
                if (send_all(fd, buf, size - off < piece ? size - off : piece))
                    die("stream");
    char k;
    if (recv_all(fd, &k, 1, 0))
        die("stream ack");
    double s = (now_ns() - t0) / 1e9, gbs = writes * size / s / 1e9;
    row_begin(o);
    if (o->json)
        printf("{\"test\": \"tcp-stream\", \"size\": %zu, \"write\": %zu, \"read\": %zu, "
               "\"sockbuf\": %d, \"streams\": %d, \"bytes\": %llu, \"seconds\": %.6f, "
               "\"gb_per_s\": %.3f}",
               size, piece, o->read_sz, o->sockbuf, o->streams, (unsigned long long)(writes * size),
               s, gbs);
    else
        printf("%-16s %8zu B  %8.3f GB/s\n", "tcp-stream", size, gbs);
}

static size_t parse_size(const char *s)
{
    char *e;
    unsigned long long v = strtoull(s, &e, 10);
    if (*e == 'K' || *e == 'k')
        v <<= 10, e++;
    else if (*e == 'M' || *e == 'm')
        v <<= 20, e++;
    if (e == s || *e || v == 0 || v > (64u << 20)) {
        fprintf(stderr, "floor_tcp: bad size '%s' (1..64M)\n", s);
        exit(2);
    }
    return (size_t)v;
}

static void usage(void)
{
    fprintf(stderr, "usage: floor_tcp [--test pp|bw|all] [--sizes LIST] [--busy] [--iters N] "
                    "[--duration SEC] [--cpu-server N] [--cpu-client N] [--write BYTES] "
                    "[--read BYTES] [--sockbuf BYTES] [--streams N] [--json]\n");
    exit(2);
}

static void parse(int argc, char **argv, struct opts *o)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    *o = (struct opts){.pp = 1,
                       .bw = 1,
                       .duration = 1,
                       .streams = 1,
                       .write_sz = 512u << 10,
                       .read_sz = 32u << 10,
                       .cpu_server = ncpu >= 2 ? 0 : -1,
                       .cpu_client = ncpu >= 2 ? 1 : -1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--busy"))
            o->busy = 1;
        else if (!strcmp(a, "--json"))
            o->json = 1;
        else if (!v)
            usage();
        else if (!strcmp(a, "--test") &&
                 (o->pp = !strcmp(v, "pp") || !strcmp(v, "all"),
                  o->bw = !strcmp(v, "bw") || !strcmp(v, "all"), o->pp || o->bw))
            i++;
        else if (!strcmp(a, "--sizes")) {
            char *s = strdup(argv[++i]), *save;
            for (char *t = strtok_r(s, ",", &save); t && o->n_sizes < 16;
                 t = strtok_r(NULL, ",", &save))
                o->sizes[o->n_sizes++] = parse_size(t);
            free(s);
        } else if (!strcmp(a, "--iters") && (o->iters = atol(v)) > 0)
            i++;
        else if (!strcmp(a, "--duration") && (o->duration = atof(v)) > 0)
            i++;
        else if (!strcmp(a, "--cpu-server"))
            o->cpu_server = atoi(argv[++i]);
        else if (!strcmp(a, "--cpu-client"))
            o->cpu_client = atoi(argv[++i]);
        else if (!strcmp(a, "--write"))
            o->write_sz = parse_size(argv[++i]);
        else if (!strcmp(a, "--read"))
            o->read_sz = parse_size(argv[++i]);
        else if (!strcmp(a, "--sockbuf"))
            o->sockbuf = (int)parse_size(argv[++i]);
        else if (!strcmp(a, "--streams") && (o->streams = atoi(v)) >= 1 &&
                 o->streams <= MAX_STREAMS)
            i++;
        else
            usage();
    }
}

int main(int argc, char **argv)
{
    struct opts o;
    parse(argc, argv, &o);
    g_sockbuf = o.sockbuf;
    uint16_t port;
    int lfd = listener(&port);
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0)
        serve(lfd, &o);
    close(lfd);
    pin(o.cpu_client);
    int fds[MAX_STREAMS];
    for (int i = 0; i < o.streams; i++)
        fds[i] = dial(port);
    int fd = fds[0];
    long cap = o.iters ? o.iters : 2000000;
    uint64_t *t = malloc((size_t)cap * sizeof(*t));
    char *buf = malloc(64u << 20);
    if (!t || !buf)
        die("malloc");
    memset(buf, 1, 64u << 20);
    if (o.json)
        printf("{\"tool\": \"floor_tcp\", \"busy\": %s, \"results\": [", o.busy ? "true" : "false");
    static const size_t pp_default[] = {64}, bw_default[] = {1u << 20};
    for (int pass = 0; pass < 2; pass++) {
        if ((pass == 0 && !o.pp) || (pass == 1 && !o.bw))
            continue;
        const size_t *sz = o.n_sizes ? o.sizes : pass == 0 ? pp_default : bw_default;
        int n = o.n_sizes ? o.n_sizes : 1;
        for (int i = 0; i < n; i++) {
            if (pass == 0)
                run_pp(fd, &o, sz[i], buf, t, cap);
            else
                run_bw(fds, &o, sz[i], buf);
            fflush(stdout);
        }
    }
    if (o.json)
        printf("\n]}\n");
    shutdown(fd, SHUT_WR);
    int st;
    waitpid(pid, &st, 0);
    free(buf);
    free(t);
    return 0;
}
