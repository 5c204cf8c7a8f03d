/* floor_memcpy — the memory-bandwidth floor for one-copy transports: how
 * fast one core copies 64 KiB, 1 MiB and 16 MiB blocks (GB/s = 10^9 bytes
 * copied per second). A shm transport that moves a large message with one
 * copy cannot beat this.
 *
 *   floor_memcpy [--sizes 64K,1M,16M] [--duration SEC] [--cpu N] [--json]
 */
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static size_t parse_size(const char *s)
{
    char *e;
    unsigned long long v = strtoull(s, &e, 10);
    if (*e == 'K' || *e == 'k')
        v <<= 10, e++;
    else if (*e == 'M' || *e == 'm')
        v <<= 20, e++;
    if (e == s || *e || v == 0 || v > (1u << 30)) {
        fprintf(stderr, "floor_memcpy: bad size '%s'\n", s);
        exit(2);
    }
    return (size_t)v;
}

/* Copy back and forth between two buffers so neither side stays cached
 * any better than a real transfer's would. */
static double copy_gbs(size_t size, double duration)
{
    char *a = malloc(size), *b = malloc(size);
    if (!a || !b) {
        perror("floor_memcpy");
        exit(1);
    }
    memset(a, 1, size);
    memset(b, 2, size);
    memcpy(b, a, size); /* warm */
    uint64_t bytes = 0, t0 = now_ns(), stop = t0 + (uint64_t)(duration * 1e9), t;
    do {
        for (int i = 0; i < 8; i++) {
            memcpy(i & 1 ? a : b, i & 1 ? b : a, size);
            bytes += size;
        }
        __asm__ volatile("" ::: "memory"); /* the copies must happen */
    } while ((t = now_ns()) < stop);
    free(a);
    free(b);
    return bytes / ((t - t0) / 1e9) / 1e9;
}

int main(int argc, char **argv)
{
    size_t sizes[16] = {64 << 10, 1 << 20, 16 << 20};
    int n = 3, json = 0, cpu = sysconf(_SC_NPROCESSORS_ONLN) >= 2 ? 1 : -1;
    double duration = 0.5;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json")) {
            json = 1;
        } else if (v && !strcmp(a, "--sizes")) {
            char *s = strdup(v), *save;
            n = 0;
            for (char *t = strtok_r(s, ",", &save); t && n < 16; t = strtok_r(NULL, ",", &save))
                sizes[n++] = parse_size(t);
            free(s);
            i++;
        } else if (v && !strcmp(a, "--duration") && (duration = atof(v)) > 0) {
            i++;
        } else if (v && !strcmp(a, "--cpu")) {
            cpu = atoi(v);
            i++;
        } else {
            fprintf(stderr, "usage: floor_memcpy [--sizes LIST] [--duration SEC] [--cpu N] "
                            "[--json]\n");
            return 2;
        }
    }
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        sched_setaffinity(0, sizeof(set), &set);
    }
    if (json)
        printf("{\"tool\": \"floor_memcpy\", \"results\": [");
    for (int i = 0; i < n; i++) {
        double gbs = copy_gbs(sizes[i], duration);
        if (json)
            printf("%s\n    {\"test\": \"memcpy\", \"size\": %zu, \"gb_per_s\": %.3f}",
                   i ? "," : "", sizes[i], gbs);
        else
            printf("%-8s %10zu B  %8.2f GB/s\n", "memcpy", sizes[i], gbs);
        fflush(stdout);
    }
    if (json)
        printf("\n]}\n");
    return 0;
}
