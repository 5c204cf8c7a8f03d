/* px-perf — shared definitions of the benchmark tool.
 *
 * The pieces: main.c (options, modes, the local-mode child), server.c (the
 * responder), client.c (the tests), hist.c (latency histogram) and output.c
 * (table and JSON). See docs/PERFORMANCE.md for what each figure means.
 */
#ifndef PX_PERF_H
#define PX_PERF_H

#include <stddef.h>
#include <stdio.h>
#include <signal.h>
#include <stdint.h>

#include <plexus/plexus.h>

/* ---- the wire protocol between px-perf client and server ---------------- */

/* Every message carries this application header, so the server can check
 * each payload's length and knows what to answer. A header that does not
 * match is counted as bad, reported by STATS, and fails the run. */
#define PERF_MAGIC 0x70786266u /* "pxbf" */

enum perf_op {
    PERF_OP_ECHO = 1,  /* request: reply with the same data (lat, rate-rr) */
    PERF_OP_SINK = 2,  /* request: reply with no data (bw); one-way: count it */
    PERF_OP_STATS = 3, /* request: reply header is a struct perf_stats */
};

struct perf_hdr {
    uint32_t magic;
    uint32_t op;
    uint64_t len; /* data bytes the sender attached: the server checks it */
};

/* The server's counters, sent back by PERF_OP_STATS. The client takes the
 * difference of two snapshots around a timed phase. */
struct perf_stats {
    uint32_t magic;
    uint32_t pad;
    uint64_t cpu_us;       /* user + system CPU of the whole server process */
    uint64_t requests;     /* requests answered */
    uint64_t oneway;       /* one-way messages received */
    uint64_t oneway_bytes; /* their data bytes */
    uint64_t bad;          /* messages whose header or length was wrong */
};

/* ---- options -------------------------------------------------------------- */

#define PERF_MAX_SIZES   32
#define PERF_TEST_LAT    (1u << 0)
#define PERF_TEST_RR     (1u << 1) /* rate-rr */
#define PERF_TEST_ONEWAY (1u << 2) /* rate-oneway */
#define PERF_TEST_BW     (1u << 3)
#define PERF_TEST_RATE   (PERF_TEST_RR | PERF_TEST_ONEWAY)

struct perf_opts {
    const char *mode; /* "server", "client" or "local" */
    const char *uri;
    unsigned tests; /* PERF_TEST_* */
    size_t sizes[PERF_MAX_SIZES];
    int n_sizes;           /* 0: each test's default sizes */
    unsigned window;       /* 0: each test's default */
    double duration;       /* seconds per row, when iters == 0 */
    uint64_t iters;        /* operations per row; 0: use duration */
    double warmup_s;       /* warmup in seconds (duration mode) ... */
    uint64_t warmup_iters; /* ... or operations (iters mode) */
    int warmup_set;
    unsigned conns, threads;
    int one_session; /* client: one session over every thread's connections */
    uint32_t poll_us;
    int json, quiet;
    int progress;        /* --progress: a progress line also when stderr is no terminal */
    const char *pinning; /* how the CPUs were chosen, for the output */
    int cpu, server_cpu; /* -1: do not pin */
    int mem_alloc;       /* --mem alloc: send buffers from px_mem_alloc() */
};

/* main.c */
void perf_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
int perf_pin_cpu(int cpu);

/* server.c: bind, print "px-perf server listening on URI" on stdout, serve
 * until SIGINT/SIGTERM. Returns the exit status. */
int perf_server_main(const struct perf_opts *o);

/* client.c: run the tests against o->uri and print the results. Returns the
 * exit status. */
int perf_client_main(const struct perf_opts *o);

/* ---- latency histogram (hist.c) ----------------------------------------- */

/* Log-linear buckets as in HdrHistogram: values below 2^PERF_HIST_SUB_BITS ns
 * are exact; above, each power of two is split into 2^PERF_HIST_SUB_BITS
 * linear sub-buckets, so a reported percentile is within 1/64 (1.6 %) of the
 * true value. Fixed size: recording never allocates. */
#define PERF_HIST_SUB_BITS 6
#define PERF_HIST_SUB      (1u << PERF_HIST_SUB_BITS)
#define PERF_HIST_BUCKETS  ((64 - PERF_HIST_SUB_BITS + 1) * PERF_HIST_SUB)

struct perf_hist {
    uint64_t count, sum_ns, min_ns, max_ns;
    uint64_t bucket[PERF_HIST_BUCKETS];
};

void perf_hist_reset(struct perf_hist *h);
void perf_hist_merge(struct perf_hist *into, const struct perf_hist *from);
/* The value at quantile q (0..1), in ns, or 0 when empty. */
uint64_t perf_hist_quantile(const struct perf_hist *h, double q);
/* HdrHistogram's percentile-distribution text, values in us. */
void perf_hist_print_hdr(FILE *f, const struct perf_hist *h);

static inline unsigned perf_hist_index(uint64_t v)
{
    if (v < PERF_HIST_SUB)
        return (unsigned)v;
    unsigned k = 63u - (unsigned)__builtin_clzll(v); /* k >= SUB_BITS */
    unsigned sub = (unsigned)(v >> (k - PERF_HIST_SUB_BITS)) & (PERF_HIST_SUB - 1);
    return (k - PERF_HIST_SUB_BITS + 1) * PERF_HIST_SUB + sub;
}

static inline void perf_hist_record(struct perf_hist *h, uint64_t ns)
{
    h->count++;
    h->sum_ns += ns;
    if (ns < h->min_ns)
        h->min_ns = ns;
    if (ns > h->max_ns)
        h->max_ns = ns;
    h->bucket[perf_hist_index(ns)]++;
}

/* ---- results and output (output.c) -------------------------------------- */

struct perf_row {
    const char *test; /* "lat", "rate-rr", "rate-oneway", "bw" */
    size_t size;
    unsigned window;
    uint64_t msgs;
    double seconds;
    int has_lat; /* one-way messages have no round trip to time */
    double p50_us, p99_us, p999_us, max_us, mean_us;
    double cpu_client_us, cpu_server_us; /* per message */
    const struct perf_hist *hist;        /* the round trips (has_lat), for the JSON */
};

struct perf_run_info {
    const char *uri;
    unsigned conns, threads;
    int one_session;
    uint32_t poll_us;
    int cpu, server_cpu;
    const char *pinning; /* why these CPUs: "default: ..." or "--cpu/--server-cpu" */
    int mem_alloc;
};

/* Set by SIGINT/SIGTERM in the client: the row in progress is abandoned,
 * the rows done stay printed, and the run ends with status 130. */
extern volatile sig_atomic_t perf_interrupted;

void perf_out_begin(const struct perf_opts *o, const struct perf_run_info *info);
void perf_out_row(const struct perf_opts *o, const struct perf_row *r);
/* interrupted: the JSON says so (and stays valid). */
void perf_out_end(const struct perf_opts *o, int interrupted);

#endif
