/* px-perf — the log-linear latency histogram (see perf.h). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "perf.h"

void perf_hist_reset(struct perf_hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min_ns = UINT64_MAX;
}

void perf_hist_merge(struct perf_hist *into, const struct perf_hist *from)
{
    into->count += from->count;
    into->sum_ns += from->sum_ns;
    if (from->min_ns < into->min_ns)
        into->min_ns = from->min_ns;
    if (from->max_ns > into->max_ns)
        into->max_ns = from->max_ns;
    for (unsigned i = 0; i < PERF_HIST_BUCKETS; i++)
        into->bucket[i] += from->bucket[i];
}

/* The middle of bucket i: the reported value is off by at most half a
 * sub-bucket. */
static uint64_t bucket_mid(unsigned i)
{
    if (i < PERF_HIST_SUB)
        return i;
    unsigned g = i / PERF_HIST_SUB, sub = i % PERF_HIST_SUB;
    unsigned shift = g - 1; /* k - SUB_BITS, with k the top bit of the value */
    uint64_t low = (uint64_t)(PERF_HIST_SUB + sub) << shift;
    return low + ((1ull << shift) >> 1);
}

uint64_t perf_hist_quantile(const struct perf_hist *h, double q)
{
    if (h->count == 0)
        return 0;
    /* The smallest value with at least ceil(q * count) samples at or below. */
    uint64_t rank = (uint64_t)(q * (double)h->count + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > h->count)
        rank = h->count;
    uint64_t seen = 0;
    for (unsigned i = 0; i < PERF_HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen >= rank) {
            uint64_t v = bucket_mid(i);
            /* The exact extremes are known: never report beyond them. */
            if (v < h->min_ns)
                v = h->min_ns;
            if (v > h->max_ns)
                v = h->max_ns;
            return v;
        }
    }
    return h->max_ns;
}

/* HdrHistogram's percentile distribution (its outputPercentileDistribution
 * text: value, percentile, total count, 1/(1-percentile)), one line per
 * non-empty bucket, values in microseconds, so HdrHistogram's plotters
 * read it. */
void perf_hist_print_hdr(FILE *f, const struct perf_hist *h)
{
    fprintf(f, "%12s %14s %10s %14s\n\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    uint64_t seen = 0;
    double mean = h->count ? (double)h->sum_ns / (double)h->count : 0, var = 0;
    for (unsigned i = 0; i < PERF_HIST_BUCKETS && seen < h->count; i++) {
        if (!h->bucket[i])
            continue;
        seen += h->bucket[i];
        uint64_t v = bucket_mid(i);
        if (v < h->min_ns)
            v = h->min_ns;
        if (v > h->max_ns)
            v = h->max_ns;
        double d = (double)v - mean;
        var += d * d * (double)h->bucket[i];
        double p = (double)seen / (double)h->count;
        if (seen < h->count)
            fprintf(f, "%12.3f %2.12f %10llu %14.2f\n", v / 1e3, p, (unsigned long long)seen,
                    1 / (1 - p));
        else /* the last line is the maximum, known exactly */
            fprintf(f, "%12.3f %2.12f %10llu\n", h->max_ns / 1e3, p, (unsigned long long)seen);
    }
    double sd = h->count ? sqrt(var / (double)h->count) : 0;
    fprintf(f, "#[Mean    = %12.3f, StdDeviation   = %12.3f]\n", mean / 1e3, sd / 1e3);
    fprintf(f, "#[Max     = %12.3f, Total count    = %12llu]\n", h->max_ns / 1e3,
            (unsigned long long)h->count);
    fprintf(f, "#[Buckets = %12u, SubBuckets     = %12u]\n", PERF_HIST_BUCKETS / PERF_HIST_SUB,
            PERF_HIST_SUB);
}
