/* Buffers for data that does not fit in place: large receives and payloads
 * the application keeps after its callback. Sizes are rounded up to a power
 * of two (min 4 KiB); freed buffers are cached per size class, up to a byte
 * budget, so the steady state allocates nothing. One px_bufpool per
 * context, single-threaded. A px_buf is owned by whoever got it until put.
 *
 * Large buffers are registered memory when the pool has a registrar (the
 * context's: px_mem_register), so a transport that needs registration (an
 * RDMA READ landing a large receive) finds its handle through the
 * destination's px_iov.mr. They stay registered while cached: registering
 * is the expensive part. */
#ifndef PX_CORE_BUF_H
#define PX_CORE_BUF_H

#include <stddef.h>
#include <stdint.h>

#define PX_BUF_MIN_SHIFT 12
#define PX_BUF_CLASSES   21 /* 4 KiB .. 4 GiB: every max_msg_size fits */

typedef struct px_mr px_mr;

typedef struct px_buf {
    struct px_buf *next; /* free-list link while cached */
    size_t cap;          /* usable bytes at data */
    px_mr *mr;           /* its registration (cap >= the registrar's min_len), else NULL */
    uint8_t cls;         /* size class */
    unsigned char data[] __attribute__((aligned(64)));
} px_buf;

/* How a pool registers its large buffers; all NULL/0: it does not. */
typedef struct px_buf_registrar {
    size_t min_len;
    int (*reg)(void *arg, void *addr, size_t len, px_mr **out);
    int (*dereg)(px_mr *mr);
    void *arg;
} px_buf_registrar;

typedef struct px_bufpool {
    px_buf *free[PX_BUF_CLASSES];
    size_t cached_bytes;
    size_t cache_limit;
    uint64_t allocs;  /* calls that had to malloc: the steady state keeps this flat */
    unsigned decline; /* fault injection (PX_FAULT=buf_get): every get fails */
    px_buf_registrar registrar;
} px_bufpool;

/* cache_limit: bytes of freed buffers kept for reuse (0: 64 MiB). */
void px_bufpool_init(px_bufpool *bp, size_t cache_limit);
/* Register buffers of at least r->min_len bytes made from now on. */
void px_bufpool_set_registrar(px_bufpool *bp, const px_buf_registrar *r);
void px_bufpool_fini(px_bufpool *bp);
/* A buffer of at least `len` bytes (any message size up to 4 GiB), or NULL
 * when memory is exhausted. */
px_buf *px_buf_get(px_bufpool *bp, size_t len);
void px_buf_put(px_bufpool *bp, px_buf *b);

#endif
