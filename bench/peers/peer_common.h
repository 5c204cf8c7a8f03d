/* What the messaging-library peers of bench/compare.sh share: their
 * command line, the clock, and the figures they print.
 *
 *   PROG server ENDPOINT --test oneway|rr|lat [--size N]
 *   PROG client ENDPOINT --test oneway|rr|lat [--size N] [--duration S] [--window W]
 *
 * oneway: the client sends `size`-byte messages for `duration` seconds, then
 *         one message of another size that says it is over; the server
 *         counts from the first message to that one, prints
 *         `mmsgs_per_s: X` and exits (as the libraries' own local_thr do,
 *         the receiver's figure is the figure).
 * rr:     the client keeps `window` requests in flight, each answered by an
 *         echo; it prints `mmsgs_per_s: X` (request/reply pairs per second).
 * lat:    one request in flight; the client prints `p50_us: X`, the median
 *         full round trip, and `mean_us: X`.
 * The server of rr and lat echoes until it is killed.
 */
#ifndef PX_PEER_COMMON_H
#define PX_PEER_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum peer_test { PEER_ONEWAY, PEER_RR, PEER_LAT };

struct peer_args {
    int server;
    const char *endpoint;
    enum peer_test test;
    size_t size;
    double duration;
    unsigned window;
};

static inline uint64_t peer_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline int peer_usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s server|client ENDPOINT --test oneway|rr|lat [--size N] [--duration S] "
            "[--window W]\n",
            prog);
    return 2;
}

/* 0, or 2 after a usage message. */
static inline int peer_parse(int argc, char **argv, struct peer_args *a)
{
    *a = (struct peer_args){.size = 64, .duration = 1.0, .window = 64, .test = PEER_LAT};
    if (argc < 3 || (strcmp(argv[1], "server") != 0 && strcmp(argv[1], "client") != 0))
        return peer_usage(argv[0]);
    a->server = strcmp(argv[1], "server") == 0;
    a->endpoint = argv[2];
    for (int i = 3; i < argc; i += 2) { /* option, value */
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return peer_usage(argv[0]);
        if (strcmp(argv[i], "--test") == 0) {
            if (strcmp(v, "oneway") == 0)
                a->test = PEER_ONEWAY;
            else if (strcmp(v, "rr") == 0)
                a->test = PEER_RR;
            else if (strcmp(v, "lat") == 0)
                a->test = PEER_LAT;
            else
                return peer_usage(argv[0]);
        } else if (strcmp(argv[i], "--size") == 0) {
            a->size = strtoul(v, NULL, 10);
        } else if (strcmp(argv[i], "--duration") == 0) {
            a->duration = strtod(v, NULL);
        } else if (strcmp(argv[i], "--window") == 0) {
            a->window = (unsigned)strtoul(v, NULL, 10);
        } else {
            return peer_usage(argv[0]);
        }
    }
    if (a->size < 2 || a->size > (64u << 20) || a->duration <= 0 || a->window < 1 ||
        a->window > 4096) {
        fprintf(stderr, "%s: --size 2..64 MiB, --duration > 0, --window 1..4096\n", argv[0]);
        return 2;
    }
    return 0;
}

/* Round-trip samples, for the median. */
struct peer_samples {
    uint64_t *ns;
    size_t n, cap;
    double sum;
};

static inline void peer_sample(struct peer_samples *s, uint64_t ns)
{
    s->sum += (double)ns;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 65536;
        uint64_t *p = realloc(s->ns, cap * sizeof(*p));
        if (!p)
            return; /* the median of what fitted */
        s->ns = p;
        s->cap = cap;
    }
    s->ns[s->n++] = ns;
}

static inline int peer_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static inline void peer_print_lat(struct peer_samples *s, uint64_t count)
{
    qsort(s->ns, s->n, sizeof(*s->ns), peer_cmp_u64);
    double p50 = s->n ? (double)s->ns[s->n / 2] / 1e3 : 0;
    printf("p50_us: %.3f\nmean_us: %.3f\nround_trips: %llu\n", p50,
           count ? s->sum / (double)count / 1e3 : 0, (unsigned long long)count);
    free(s->ns);
}

static inline void peer_print_rate(uint64_t msgs, uint64_t ns)
{
    printf("mmsgs_per_s: %.4f\nmessages: %llu\n", ns ? (double)msgs / ((double)ns / 1e9) / 1e6 : 0,
           (unsigned long long)msgs);
}

/* The clients' loops, over a library's blocking send and receive. */
typedef void (*peer_send_fn)(void *sock, const void *buf, size_t len);
typedef void (*peer_recv_fn)(void *sock, void *buf, size_t cap);

/* oneway: `size`-byte messages for the duration, then the end marker. */
static inline void peer_oneway_client(const struct peer_args *a, peer_send_fn snd, void *sock)
{
    char *buf = calloc(1, a->size);
    uint64_t end = peer_now_ns() + (uint64_t)(a->duration * 1e9), n = 0;
    while ((n & 1023) || peer_now_ns() < end) {
        snd(sock, buf, a->size);
        n++;
    }
    snd(sock, "E", 1);
    printf("sent: %llu\n", (unsigned long long)n);
    free(buf);
}

/* rr: `window` requests in flight for the duration. */
static inline void peer_rr_client(const struct peer_args *a, peer_send_fn snd, peer_recv_fn rcv,
                                  void *sock)
{
    char *buf = calloc(1, a->size);
    for (unsigned i = 0; i < a->window; i++)
        snd(sock, buf, a->size);
    uint64_t t0 = peer_now_ns(), end = t0 + (uint64_t)(a->duration * 1e9), n = 0;
    while ((n & 255) || peer_now_ns() < end) {
        rcv(sock, buf, a->size);
        n++;
        snd(sock, buf, a->size);
    }
    peer_print_rate(n, peer_now_ns() - t0);
    free(buf);
}

/* lat: one round trip at a time, each timed. */
static inline void peer_lat_client(const struct peer_args *a, peer_send_fn snd, peer_recv_fn rcv,
                                   void *sock)
{
    char *buf = calloc(1, a->size);
    struct peer_samples smp = {0};
    uint64_t end = peer_now_ns() + (uint64_t)(a->duration * 1e9), n = 0, t;
    while ((t = peer_now_ns()) < end) {
        snd(sock, buf, a->size);
        rcv(sock, buf, a->size);
        peer_sample(&smp, peer_now_ns() - t);
        n++;
    }
    peer_print_lat(&smp, n);
    free(buf);
}

#endif
