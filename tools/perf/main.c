/* px-perf — the plexus benchmark tool: options and modes.
 *
 *   px-perf server URI [options]   serve until SIGINT/SIGTERM
 *   px-perf client URI [options]   run the tests against a server
 *   px-perf local  URI [options]   start the server as a child process on
 *                                  one CPU, the client on another, and run
 *
 * Exit status: 0 success, 1 runtime failure (server unreachable, a failed
 * or miscounted message), 2 bad usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "perf.h"

#define MAX_MSG_SIZE (64ull << 20) /* the library's default max_msg_size */

static const char usage_text[] =
    "usage: px-perf server|client|local URI [options]    (px-perf --version)\n"
    "\n"
    "  server URI       serve until SIGINT/SIGTERM; prints the bound URI (port 0 works)\n"
    "  client URI       run the tests against a px-perf server\n"
    "  local URI        start a server child on one CPU and the client on another\n"
    "\n"
    "options:\n"
    "  --test LIST      lat,rr,oneway,rate,bw (default all): lat = ping-pong echo;\n"
    "                   rate = rr and oneway: rr = echo requests, window in flight;\n"
    "                   oneway = one-way messages, window in flight;\n"
    "                   bw = requests carrying SIZE bytes, empty replies, window in flight\n"
    "  --sizes LIST     message sizes, K/M suffixes (default lat 64,4K; rr, oneway 64;\n"
    "                   bw 64K,1M,16M); at most 64M\n"
    "  --window N       operations in flight (default rr, oneway 64; bw 8)\n"
    "  --duration SEC   seconds per row (default 2)\n"
    "  --iters N        operations per row instead of a duration\n"
    "  --warmup W       untimed warm-up per row: SEC with --duration, N with --iters\n"
    "                   (default a tenth of the row; 0 for none)\n"
    "  --conns N        connections, one session each, used round-robin (default 1)\n"
    "  --threads N      client threads, each with its own context and its share of the\n"
    "                   connections (default 1); server: N threads, each with its own\n"
    "                   context and server, every session accepted with all N as\n"
    "                   portals (local: the server gets N with --one-session)\n"
    "  --one-session    client: one session whose connections are spread over the\n"
    "                   threads (px_connect from each thread's context), rather than\n"
    "                   one session per connection; with a --threads server they land\n"
    "                   on its threads in turn\n"
    "  --poll-us N      polling mode on both sides: spin N us before sleeping\n"
    "  --mem KIND       the client's send buffer: plain (default, malloc) or alloc\n"
    "                   (px_mem_alloc on the client's context: shm moves it from a\n"
    "                   shared pool with one memcpy)\n"
    "  --cpu N          pin the client (local default 1 on 4+ CPUs, else none; -1: none)\n"
    "  --server-cpu N   pin the server (local default 0 on 4+ CPUs, else none; -1: none)\n"
    "  --json           print JSON instead of the table\n"
    "  --quiet          no banner, no progress line (the units line stays)\n"
    "  --progress       a progress line on stderr also when it is not a terminal\n"
    "                   (every 5 s); on a terminal it is shown unless --quiet\n"
    "  --version        print the version and exit\n"
    "  -h, --help       this text\n";

void perf_usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "px-perf: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n\n%s", usage_text);
    exit(2);
}

int perf_pin_cpu(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0) {
        fprintf(stderr, "px-perf: cannot pin to cpu %d: %s\n", cpu, strerror(errno));
        return -1;
    }
    return 0;
}

/* ---- option values ------------------------------------------------------------ */

static uint64_t parse_u64(const char *opt, const char *s, int allow_suffix)
{
    char *end;
    errno = 0;
    if (*s == '-' || *s == '\0')
        perf_usage_error("%s: '%s' is not a non-negative number", opt, s);
    unsigned long long v = strtoull(s, &end, 10);
    unsigned shift = 0;
    if (allow_suffix && (*end == 'K' || *end == 'k'))
        shift = 10, end++;
    else if (allow_suffix && (*end == 'M' || *end == 'm'))
        shift = 20, end++;
    else if (allow_suffix && (*end == 'G' || *end == 'g'))
        shift = 30, end++;
    if (errno || end == s || *end != '\0' || (shift && v > (ULLONG_MAX >> shift)))
        perf_usage_error("%s: '%s' is not a valid number", opt, s);
    return (uint64_t)v << shift;
}

static unsigned parse_uint(const char *opt, const char *s, unsigned min, unsigned max)
{
    uint64_t v = parse_u64(opt, s, 0);
    if (v < min || v > max)
        perf_usage_error("%s: %s is out of range (%u..%u)", opt, s, min, max);
    return (unsigned)v;
}

static double parse_seconds(const char *opt, const char *s)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || (*end != '\0' && strcmp(end, "s") != 0) || !(v >= 0) || v > 86400)
        perf_usage_error("%s: '%s' is not a duration in seconds", opt, s);
    return v;
}

static int parse_cpu(const char *opt, const char *s)
{
    if (strcmp(s, "-1") == 0)
        return -1;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return (int)parse_uint(opt, s, 0, n > 0 ? (unsigned)n - 1 : 0);
}

static unsigned parse_tests(const char *s)
{
    unsigned t = 0;
    char buf[256];
    if (strlen(s) >= sizeof(buf))
        perf_usage_error("--test: list too long");
    strcpy(buf, s);
    for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (strcmp(tok, "lat") == 0)
            t |= PERF_TEST_LAT;
        else if (strcmp(tok, "rate") == 0)
            t |= PERF_TEST_RATE;
        else if (strcmp(tok, "rr") == 0)
            t |= PERF_TEST_RR;
        else if (strcmp(tok, "oneway") == 0)
            t |= PERF_TEST_ONEWAY;
        else if (strcmp(tok, "bw") == 0)
            t |= PERF_TEST_BW;
        else
            perf_usage_error("--test: unknown test '%s' (lat, rate, rr, oneway, bw)", tok);
    }
    if (!t)
        perf_usage_error("--test: empty list");
    return t;
}

static void parse_sizes(struct perf_opts *o, const char *s)
{
    char buf[1024];
    if (strlen(s) >= sizeof(buf))
        perf_usage_error("--sizes: list too long");
    strcpy(buf, s);
    o->n_sizes = 0;
    for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (o->n_sizes == PERF_MAX_SIZES)
            perf_usage_error("--sizes: at most %d sizes", PERF_MAX_SIZES);
        uint64_t v = parse_u64("--sizes", tok, 1);
        if (v > MAX_MSG_SIZE)
            perf_usage_error("--sizes: %s is above the 64M message limit", tok);
        o->sizes[o->n_sizes++] = (size_t)v;
    }
    if (!o->n_sizes)
        perf_usage_error("--sizes: empty list");
}

/* ---- the command line ------------------------------------------------------------ */

enum {
    O_TEST = 256,
    O_SIZES,
    O_WINDOW,
    O_DURATION,
    O_ITERS,
    O_WARMUP,
    O_CONNS,
    O_THREADS,
    O_POLL,
    O_CPU,
    O_SCPU,
    O_JSON,
    O_QUIET,
    O_MEM,
    O_PROGRESS,
    O_ONE_SESSION,
    O_VERSION
};

static const struct option long_opts[] = {
    {"test", required_argument, NULL, O_TEST},
    {"sizes", required_argument, NULL, O_SIZES},
    {"window", required_argument, NULL, O_WINDOW},
    {"duration", required_argument, NULL, O_DURATION},
    {"iters", required_argument, NULL, O_ITERS},
    {"warmup", required_argument, NULL, O_WARMUP},
    {"conns", required_argument, NULL, O_CONNS},
    {"threads", required_argument, NULL, O_THREADS},
    {"poll-us", required_argument, NULL, O_POLL},
    {"cpu", required_argument, NULL, O_CPU},
    {"server-cpu", required_argument, NULL, O_SCPU},
    {"json", no_argument, NULL, O_JSON},
    {"quiet", no_argument, NULL, O_QUIET},
    {"mem", required_argument, NULL, O_MEM},
    {"progress", no_argument, NULL, O_PROGRESS},
    {"one-session", no_argument, NULL, O_ONE_SESSION},
    {"version", no_argument, NULL, O_VERSION},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static void apply_option(struct perf_opts *o, int c, const char *arg, const char **warmup)
{
    switch (c) {
    case O_TEST:
        o->tests = parse_tests(arg);
        break;
    case O_SIZES:
        parse_sizes(o, arg);
        break;
    case O_WINDOW:
        o->window = parse_uint("--window", arg, 1, 65536);
        break;
    case O_DURATION:
        o->duration = parse_seconds("--duration", arg);
        break;
    case O_ITERS:
        o->iters = parse_u64("--iters", arg, 1);
        break;
    case O_WARMUP:
        *warmup = arg;
        break;
    case O_CONNS:
        o->conns = parse_uint("--conns", arg, 1, 4096);
        break;
    case O_THREADS:
        o->threads = parse_uint("--threads", arg, 1, 256);
        break;
    case O_POLL:
        o->poll_us = parse_uint("--poll-us", arg, 0, 10000000);
        break;
    case O_CPU:
        o->cpu = parse_cpu("--cpu", arg);
        break;
    case O_SCPU:
        o->server_cpu = parse_cpu("--server-cpu", arg);
        break;
    case O_JSON:
        o->json = 1;
        break;
    case O_QUIET:
        o->quiet = 1;
        break;
    case O_MEM:
        if (strcmp(arg, "alloc") != 0 && strcmp(arg, "plain") != 0)
            perf_usage_error("--mem: '%s' is not plain or alloc", arg);
        o->mem_alloc = arg[0] == 'a';
        break;
    case O_PROGRESS:
        o->progress = 1;
        break;
    case O_ONE_SESSION:
        o->one_session = 1;
        break;
    case O_VERSION:
        printf("px-perf (plexus %s)\n", px_version());
        exit(0);
    case 'h':
        fputs(usage_text, stdout);
        exit(0);
    default:
        perf_usage_error("unknown option");
    }
}

static void finish_options(struct perf_opts *o, const char *warmup, int cpu_set, int scpu_set)
{
    if (o->iters == 0 && o->duration <= 0)
        perf_usage_error("--duration must be above 0");
    if (warmup) {
        if (o->iters)
            o->warmup_iters = parse_u64("--warmup", warmup, 1);
        else
            o->warmup_s = parse_seconds("--warmup", warmup);
    } else {
        o->warmup_iters = o->iters / 10;
        o->warmup_s = o->duration / 10;
    }
    if (strcmp(o->mode, "server") != 0 && o->conns < o->threads)
        perf_usage_error("--conns (%u) must be at least --threads (%u): each thread needs a "
                         "connection",
                         o->conns, o->threads);
    /* Local mode pins the two sides to CPUs of their own only where the
     * machine has CPUs to spare: on two, pinning both leaves the kernel's
     * own work (softirqs for loopback, timers) nowhere to go but under
     * one of them, and users reported figures up to 24x worse than
     * unpinned that way (docs/PERFORMANCE.md). */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpu_set || scpu_set)
        o->pinning = "as given";
    else if (strcmp(o->mode, "local") != 0)
        o->pinning = "default: not pinned";
    else if (ncpu >= 4) {
        o->server_cpu = 0;
        o->cpu = 1;
        o->pinning = "default on 4+ CPUs: server 0, client 1";
    } else {
        o->pinning = "default on under 4 CPUs: not pinned";
    }
    if (strcmp(o->mode, "local") == 0 && (cpu_set || scpu_set) && ncpu >= 2) {
        if (!scpu_set)
            o->server_cpu = 0;
        if (!cpu_set)
            o->cpu = 1;
    }
}

static void parse_args(struct perf_opts *o, int argc, char **argv)
{
    *o = (struct perf_opts){.tests = PERF_TEST_LAT | PERF_TEST_RATE | PERF_TEST_BW,
                            .duration = 2,
                            .conns = 1,
                            .threads = 1,
                            .cpu = -1,
                            .server_cpu = -1};
    if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        fputs(usage_text, stdout);
        exit(0);
    }
    if (argc >= 2 && strcmp(argv[1], "--version") == 0)
        apply_option(o, O_VERSION, NULL, NULL);
    if (argc < 3)
        perf_usage_error("need a mode and a URI");
    o->mode = argv[1];
    o->uri = argv[2];
    if (strcmp(o->mode, "server") && strcmp(o->mode, "client") && strcmp(o->mode, "local"))
        perf_usage_error("unknown mode '%s' (server, client, local)", o->mode);
    const char *warmup = NULL;
    int cpu_set = 0, scpu_set = 0, c;
    opterr = 0;
    optind = 3;
    while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        if (c == '?' || c == ':')
            perf_usage_error("bad option '%s'", argv[optind - 1]);
        cpu_set |= c == O_CPU;
        scpu_set |= c == O_SCPU;
        apply_option(o, c, optarg, &warmup);
    }
    if (optind < argc)
        perf_usage_error("unexpected argument '%s'", argv[optind]);
    finish_options(o, warmup, cpu_set, scpu_set);
    /* A standalone server pins itself with --cpu. */
    if (strcmp(o->mode, "server") == 0 && o->server_cpu < 0)
        o->server_cpu = o->cpu;
}

/* ---- local mode ------------------------------------------------------------------ */

static pid_t server_pid = -1;

/* Start "px-perf server URI" as a child (this very binary) and read the
 * URI it actually bound from its first line of output. */
static int start_server(const struct perf_opts *o, char *bound, size_t len)
{
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0)
        return -1;
    char poll_arg[16], cpu_arg[16], threads_arg[16];
    snprintf(poll_arg, sizeof(poll_arg), "%u", o->poll_us);
    snprintf(threads_arg, sizeof(threads_arg), "%u", o->one_session ? o->threads : 1);
    snprintf(cpu_arg, sizeof(cpu_arg), "%d", o->server_cpu);
    server_pid = fork();
    if (server_pid < 0)
        return -1;
    if (server_pid == 0) {
        /* The child must not outlive us, whatever kills us. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        dup2(pfd[1], 1);
        char *args[] = {"px-perf",      "server", (char *)o->uri, "--poll-us", poll_arg,
                        "--server-cpu", cpu_arg,  "--threads",    threads_arg, NULL};
        execv("/proc/self/exe", args);
        fprintf(stderr, "px-perf: exec of the server failed: %s\n", strerror(errno));
        _exit(127);
    }
    close(pfd[1]);
    FILE *f = fdopen(pfd[0], "r");
    struct pollfd p = {.fd = pfd[0], .events = POLLIN};
    char line[1024];
    const char *prefix = "px-perf server listening on ";
    int ok = poll(&p, 1, 10000) == 1 && fgets(line, sizeof(line), f) &&
             strncmp(line, prefix, strlen(prefix)) == 0;
    fclose(f); /* the server prints nothing more on stdout */
    if (!ok)
        return -1;
    line[strcspn(line, "\n")] = '\0';
    snprintf(bound, len, "%s", line + strlen(prefix));
    return 0;
}

static int stop_server(void)
{
    int st = 0;
    if (server_pid <= 0)
        return 0;
    kill(server_pid, SIGTERM);
    for (int i = 0; i < 50; i++) { /* 5 s, then no more politeness */
        if (waitpid(server_pid, &st, WNOHANG) == server_pid)
            return st;
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kill(server_pid, SIGKILL);
    waitpid(server_pid, &st, 0);
    return st;
}

static int run_local(struct perf_opts *o)
{
    static char bound[1100];
    if (start_server(o, bound, sizeof(bound)) != 0) {
        fprintf(stderr, "px-perf: the server did not start on %s\n", o->uri);
        stop_server();
        return 1;
    }
    o->uri = bound;
    int rc = perf_client_main(o);
    int st = stop_server();
    if (rc == 0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        fprintf(stderr, "px-perf: the server child ended badly (status 0x%x)\n", st);
        rc = 1;
    }
    return rc;
}

int main(int argc, char **argv)
{
    struct perf_opts o;
    parse_args(&o, argc, argv);
    signal(SIGPIPE, SIG_IGN);
    if (strcmp(o.mode, "server") == 0)
        return perf_server_main(&o);
    if (strcmp(o.mode, "client") == 0)
        return perf_client_main(&o);
    return run_local(&o);
}
