/* px-perf — the log-linear latency histogram (see perf.h). */
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
