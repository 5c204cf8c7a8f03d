/* px-perf — results as a plain-text table (one block per test) or JSON.
 *
 * Rows are printed as they finish, so a long run shows its results as it
 * goes; the JSON document is streamed the same way and is only complete
 * (valid) when the run succeeded, which the exit status says anyway.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "perf.h"

static const char *last_test;
static int rows_out;

static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

/* "64", "4K", "1M": the way sizes are given on the command line. */
static const char *size_str(size_t n, char *buf, size_t len)
{
    if (n >= (1u << 20) && n % (1u << 20) == 0)
        snprintf(buf, len, "%zuM", n >> 20);
    else if (n >= 1024 && n % 1024 == 0)
        snprintf(buf, len, "%zuK", n >> 10);
    else
        snprintf(buf, len, "%zu", n);
    return buf;
}

/* The CPU model, from /proc/cpuinfo ("unknown" elsewhere). */
static void cpu_model(char *out, size_t len)
{
    snprintf(out, len, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon) {
            colon += 1 + (colon[1] == ' ');
            colon[strcspn(colon, "\n")] = '\0';
            snprintf(out, len, "%s", colon);
            break;
        }
    }
    fclose(f);
}

/* Where and when: host, kernel, CPU model and count, UTC time. */
static void json_machine(void)
{
    struct utsname u;
    if (uname(&u) != 0)
        memset(&u, 0, sizeof u);
    char model[256], when[64];
    cpu_model(model, sizeof model);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    printf("  \"host\": ");
    json_string(u.nodename);
    printf(",\n  \"kernel\": ");
    json_string(u.release);
    printf(",\n  \"machine\": ");
    json_string(u.machine);
    printf(",\n  \"cpu_model\": ");
    json_string(model);
    printf(",\n  \"cpus_online\": %ld,\n  \"time\": ", sysconf(_SC_NPROCESSORS_ONLN));
    json_string(when);
    printf(",\n");
}

void perf_out_begin(const struct perf_opts *o, const struct perf_run_info *info)
{
    last_test = NULL;
    rows_out = 0;
    if (o->json) {
        printf("{\n  \"tool\": \"px-perf\",\n  \"version\": ");
        json_string(px_version());
        printf(",\n");
        json_machine();
        printf("  \"uri\": ");
        json_string(info->uri);
        printf(",\n  \"conns\": %u,\n  \"threads\": %u,\n  \"sessions\": \"%s\",\n"
               "  \"poll_us\": %u,\n",
               info->conns, info->threads, info->one_session ? "one" : "per-conn", info->poll_us);
        printf("  \"client_cpu\": %d,\n  \"server_cpu\": %d,\n  \"pinning\": ", info->cpu,
               info->server_cpu);
        json_string(info->pinning ? info->pinning : "");
        printf(",\n  \"mem\": \"%s\",\n", info->mem_alloc ? "alloc" : "plain");
        printf("  \"latency_unit\": \"us\",\n  \"results\": [");
    } else {
        if (!o->quiet)
            printf("# px-perf %s  %s  conns %u  threads %u%s  poll_us %u  cpu client %d server %d "
                   "(%s)  mem %s\n",
                   px_version(), info->uri, info->conns, info->threads,
                   info->one_session ? " (one session)" : "", info->poll_us, info->cpu,
                   info->server_cpu, info->pinning ? info->pinning : "",
                   info->mem_alloc ? "alloc" : "plain");
        /* The units, always: a table without them means nothing. */
        printf("# latency in us (round trip); cpu in us per message; MB = 10^6 bytes\n");
    }
    fflush(stdout);
}

static void table_header(void)
{
    printf("\n%-12s %8s %6s %12s %10s %9s %9s %9s %9s %8s %8s\n", "test", "size", "window",
           "msgs/s", "MB/s", "p50", "p99", "p99.9", "max", "cpu-cli", "cpu-srv");
}

static void table_row(const struct perf_row *r, double rate, double mbs)
{
    char sz[32];
    printf("%-12s %8s %6u %12.0f %10.1f ", r->test, size_str(r->size, sz, sizeof(sz)), r->window,
           rate, mbs);
    if (r->has_lat)
        printf("%9.2f %9.2f %9.2f %9.1f ", r->p50_us, r->p99_us, r->p999_us, r->max_us);
    else
        printf("%9s %9s %9s %9s ", "-", "-", "-", "-");
    printf("%8.2f %8.2f\n", r->cpu_client_us, r->cpu_server_us);
}

/* The whole histogram, as HdrHistogram's percentile distribution text. */
static void json_hdr(const struct perf_hist *h)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return;
    perf_hist_print_hdr(f, h);
    fclose(f);
    printf("\"hdr_percentiles\": ");
    json_string(text);
    printf(", ");
    free(text);
}

static void json_row(const struct perf_row *r, double rate, double mbs)
{
    printf("%s\n    {\"test\": \"%s\", \"size\": %zu, \"window\": %u, \"msgs\": %llu, "
           "\"seconds\": %.6f, \"msgs_per_s\": %.1f, \"mb_per_s\": %.3f, ",
           rows_out ? "," : "", r->test, r->size, r->window, (unsigned long long)r->msgs,
           r->seconds, rate, mbs);
    if (r->has_lat)
        printf("\"lat_us\": {\"p50\": %.3f, \"p99\": %.3f, \"p999\": %.3f, \"max\": %.3f, "
               "\"mean\": %.3f}, ",
               r->p50_us, r->p99_us, r->p999_us, r->max_us, r->mean_us);
    if (r->has_lat && r->hist)
        json_hdr(r->hist);
    else
        printf("\"lat_us\": null, ");
    printf("\"cpu_us_per_msg\": {\"client\": %.3f, \"server\": %.3f}}", r->cpu_client_us,
           r->cpu_server_us);
}

void perf_out_row(const struct perf_opts *o, const struct perf_row *r)
{
    double rate = r->seconds > 0 ? r->msgs / r->seconds : 0;
    double mbs = rate * (double)r->size / 1e6;
    if (o->json) {
        json_row(r, rate, mbs);
    } else {
        if (!last_test || strcmp(last_test, r->test) != 0)
            table_header();
        table_row(r, rate, mbs);
    }
    last_test = r->test;
    rows_out++;
    fflush(stdout);
}

void perf_out_end(const struct perf_opts *o, int interrupted)
{
    if (o->json)
        printf("\n  ],\n  \"interrupted\": %s\n}\n", interrupted ? "true" : "false");
    fflush(stdout);
}
