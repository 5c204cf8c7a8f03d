/* floor_shm — the raw shared-memory floor: two processes (fork) sharing a
 * MAP_SHARED|MAP_ANONYMOUS mapping, pinned to cpu 0 (server) and 1 (client).
 *
 *   floor_shm [--test pp|futex|ring|all] [--iters N] [--duration SEC] [--json]
 *
 * pp:    cache-line ping-pong, busy-polling: the client writes a sequence
 *        number into its line, the server sees it and writes it into the
 *        other. One 64-byte line each way; round trip in us. This is the
 *        canary compare.sh prints: ~0.1 us when the machine is fast.
 * futex: the same ping-pong with the peer asleep: each side waits in
 *        FUTEX_WAIT and the other wakes it with FUTEX_WAKE.
 * ring:  one-way rate of 64-byte records through a bare single-producer
 *        single-consumer ring (head and tail on their own lines, cached
 *        copy of the consumer's index, every record published at once, the
 *        consumer drains in batches);
 *        M msg/s.
 */
#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LINE       64
#define RING_SLOTS 1024 /* power of two */

/* A 64-byte record, all of it written and read: a message, not a flag. */
struct rec {
    _Alignas(LINE) uint64_t seq;
    uint64_t w[LINE / 8 - 1];
};

/* Everything shared, each hot word on its own cache line. */
struct shared {
    _Alignas(LINE) _Atomic uint64_t ping;
    _Alignas(LINE) _Atomic uint64_t pong;
    _Alignas(LINE) _Atomic uint32_t fping; /* futex words are 32-bit */
    _Alignas(LINE) _Atomic uint32_t fpong;
    _Alignas(LINE) _Atomic uint64_t head; /* written by the producer */
    _Alignas(LINE) _Atomic uint64_t tail; /* written by the consumer */
    _Alignas(LINE) _Atomic uint64_t go;   /* control: which test runs */
    _Alignas(LINE) _Atomic uint64_t ack;
    struct rec ring[RING_SLOTS];
};

enum { T_PP = 1, T_FUTEX = 2, T_RING = 3, T_EXIT = 4 };

static struct shared *sh;
static int json, first_row = 1;
static long iters;
static double duration = 1;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void pin(int cpu)
{
    cpu_set_t set;
    if (cpu < 0 || cpu >= sysconf(_SC_NPROCESSORS_ONLN))
        return;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof(set), &set);
}

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Not a private futex: the word is shared between processes. */
static void fwait(_Atomic uint32_t *w, uint32_t val)
{
    while (atomic_load_explicit(w, memory_order_acquire) == val)
        syscall(SYS_futex, w, FUTEX_WAIT, val, NULL, NULL, 0);
}

static void fwake(_Atomic uint32_t *w, uint32_t val)
{
    atomic_store_explicit(w, val, memory_order_release);
    syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* ---- the server side ---------------------------------------------------- */

static void serve_pp(void)
{
    for (uint64_t want = 1;; want++) {
        uint64_t v;
        while ((v = atomic_load_explicit(&sh->ping, memory_order_acquire)) < want)
            cpu_relax();
        atomic_store_explicit(&sh->pong, v, memory_order_release);
        if (v == UINT64_MAX)
            return;
        want = v;
    }
}

static void serve_futex(void)
{
    for (uint32_t seen = 0;;) {
        fwait(&sh->fping, seen);
        seen = atomic_load_explicit(&sh->fping, memory_order_acquire);
        fwake(&sh->fpong, seen);
        if (seen == UINT32_MAX)
            return;
    }
}

/* Consume until the record with seq 0 (the end mark); count and check. */
static void serve_ring(void)
{
    uint64_t tail = atomic_load_explicit(&sh->tail, memory_order_relaxed), head = tail;
    uint64_t expect = 1;
    for (;;) {
        if (tail == head) {
            while ((head = atomic_load_explicit(&sh->head, memory_order_acquire)) == tail)
                cpu_relax();
        }
        for (; tail != head; tail++) { /* drain the whole batch */
            const struct rec *r = &sh->ring[tail & (RING_SLOTS - 1)];
            uint64_t s = r->seq, x = 0;
            for (int k = 0; k < LINE / 8 - 1; k++)
                x ^= r->w[k];
            if (s == 0) {
                atomic_store_explicit(&sh->tail, tail + 1, memory_order_release);
                return;
            }
            if (s != expect++ || x != (s & 1 ? ~s : s)) {
                fprintf(stderr, "floor_shm: ring order broken\n");
                _exit(1);
            }
        }
        atomic_store_explicit(&sh->tail, tail, memory_order_release);
    }
}

static void server(void)
{
    pin(0);
    for (uint64_t round = 1;; round++) {
        uint64_t t;
        while ((t = atomic_load_explicit(&sh->go, memory_order_acquire)) == 0)
            cpu_relax();
        atomic_store(&sh->go, 0);
        if (t == T_PP)
            serve_pp();
        else if (t == T_FUTEX)
            serve_futex();
        else if (t == T_RING)
            serve_ring();
        atomic_store_explicit(&sh->ack, round, memory_order_release);
        if (t == T_EXIT)
            _exit(0);
    }
}

/* ---- the client side -------------------------------------------------------- */

static uint64_t rounds_done;

static void start(int test)
{
    atomic_store_explicit(&sh->go, (uint64_t)test, memory_order_release);
}

static void finish(void)
{
    rounds_done++;
    while (atomic_load_explicit(&sh->ack, memory_order_acquire) != rounds_done)
        cpu_relax();
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int more(long i, uint64_t stop)
{
    return iters ? i < iters : (i & 63) || now_ns() < stop;
}

/* Round trips are timed in batches of 64: a single 0.1 us round trip is
 * too close to the clock's own cost. */
static void report_rtt(const char *name, uint64_t *t, long n, long per)
{
    qsort(t, (size_t)n, sizeof(*t), cmp_u64);
    double p50 = t[n / 2] / 1e3 / per, p99 = t[(long)(n * 0.99)] / 1e3 / per;
    uint64_t sum = 0;
    for (long i = 0; i < n; i++)
        sum += t[i];
    double mean = sum / 1e3 / ((double)n * per);
    if (json)
        printf("%s\n    {\"test\": \"%s\", \"size\": 64, \"iters\": %ld, \"rtt_us\": {\"p50\": "
               "%.4f, \"p99\": %.4f, \"mean\": %.4f}, \"msgs_per_s\": %.1f}",
               first_row ? "" : ",", name, n * per, p50, p99, mean, 1e6 / mean);
    else
        printf("%-14s 64 B  rtt p50 %8.3f us  p99 %8.3f us  mean %8.3f us\n", name, p50, p99, mean);
    first_row = 0;
}

#define MAX_SAMPLES (1 << 20)

static void run_pp(uint64_t *t)
{
    start(T_PP);
    uint64_t seq = 0, stop = now_ns() + (uint64_t)(duration * 1e9);
    long n = 0;
    for (long i = 0; more(i * 64, stop) && n < MAX_SAMPLES; i++) {
        uint64_t t0 = now_ns();
        for (int k = 0; k < 64; k++) {
            atomic_store_explicit(&sh->ping, ++seq, memory_order_release);
            while (atomic_load_explicit(&sh->pong, memory_order_acquire) != seq)
                cpu_relax();
        }
        t[n++] = now_ns() - t0;
    }
    atomic_store_explicit(&sh->ping, UINT64_MAX, memory_order_release);
    finish();
    atomic_store(&sh->ping, 0);
    atomic_store(&sh->pong, 0);
    report_rtt("shm-pp-busy", t, n, 64);
}

static void run_futex(uint64_t *t)
{
    start(T_FUTEX);
    uint32_t seq = 0;
    uint64_t stop = now_ns() + (uint64_t)(duration * 1e9);
    long n = 0;
    for (long i = 0; more(i, stop) && n < MAX_SAMPLES; i++) {
        uint64_t t0 = now_ns();
        fwake(&sh->fping, ++seq);
        fwait(&sh->fpong, seq - 1);
        t[n++] = now_ns() - t0;
    }
    fwake(&sh->fping, UINT32_MAX);
    finish();
    atomic_store(&sh->fping, 0);
    atomic_store(&sh->fpong, 0);
    report_rtt("shm-pp-futex", t, n, 1);
}

static void run_ring(void)
{
    start(T_RING);
    uint64_t head = atomic_load_explicit(&sh->head, memory_order_relaxed);
    uint64_t tail_cache = atomic_load_explicit(&sh->tail, memory_order_acquire);
    uint64_t t0 = now_ns(), stop = t0 + (uint64_t)(duration * 1e9), seq = 0;
    long total = iters ? iters : -1;
    for (;;) {
        if ((total >= 0 && (long)seq >= total) ||
            (total < 0 && !(seq & 4095) && seq && now_ns() >= stop))
            break;
        if (head - tail_cache == RING_SLOTS) { /* full: look again at the real tail */
            while ((tail_cache = atomic_load_explicit(&sh->tail, memory_order_acquire)) +
                       RING_SLOTS ==
                   head)
                cpu_relax();
        }
        struct rec *r = &sh->ring[head & (RING_SLOTS - 1)];
        r->seq = ++seq;
        for (int k = 0; k < LINE / 8 - 1; k++) /* 7 words: their xor is ~seq or seq */
            r->w[k] = k ? 0 : (seq & 1 ? ~seq : seq);
        atomic_store_explicit(&sh->head, ++head, memory_order_release);
    }
    while (head - atomic_load_explicit(&sh->tail, memory_order_acquire) == RING_SLOTS)
        cpu_relax();
    sh->ring[head & (RING_SLOTS - 1)].seq = 0; /* the end mark */
    atomic_store_explicit(&sh->head, ++head, memory_order_release);
    finish(); /* the consumer saw every record */
    double s = (now_ns() - t0) / 1e9, mps = seq / s / 1e6;
    if (json)
        printf("%s\n    {\"test\": \"shm-ring-oneway\", \"size\": 64, \"msgs\": %llu, "
               "\"seconds\": %.6f, \"mmsgs_per_s\": %.3f}",
               first_row ? "" : ",", (unsigned long long)seq, s, mps);
    else
        printf("%-14s 64 B  %8.2f M msg/s\n", "shm-ring", mps);
    first_row = 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: floor_shm [--test pp|futex|ring|all] [--iters N] [--duration SEC] [--json]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int pp = 1, fx = 1, ring = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--json"))
            json = 1;
        else if (!strcmp(a, "--test") && ++i) {
            int all = !strcmp(v, "all");
            pp = all || !strcmp(v, "pp");
            fx = all || !strcmp(v, "futex");
            ring = all || !strcmp(v, "ring");
            if (!pp && !fx && !ring)
                usage();
        } else if (!strcmp(a, "--iters") && ++i && (iters = atol(v)) <= 0)
            usage();
        else if (!strcmp(a, "--duration") && ++i && (duration = atof(v)) <= 0)
            usage();
        else if (strcmp(a, "--iters") && strcmp(a, "--duration") && strcmp(a, "--test"))
            usage();
    }
    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    uint64_t *t = malloc(MAX_SAMPLES * sizeof(*t));
    if (sh == MAP_FAILED || !t) {
        perror("floor_shm");
        return 1;
    }
    pid_t pid = fork();
    if (pid == 0)
        server();
    pin(1);
    if (json)
        printf("{\"tool\": \"floor_shm\", \"results\": [");
    if (pp)
        run_pp(t);
    if (fx)
        run_futex(t);
    if (ring)
        run_ring();
    if (json)
        printf("\n]}\n");
    start(T_EXIT);
    int st;
    waitpid(pid, &st, 0);
    free(t);
    return 0;
}
