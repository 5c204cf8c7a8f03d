/* Size-classed buffer cache; see buf.h. */
#include "core/buf.h"

#include <stdlib.h>

#include "core/fault.h"

/* The largest class: max_msg_size may be 4 GiB - 1. */
#define BUF_MAX_LEN       ((size_t)1 << (PX_BUF_MIN_SHIFT + PX_BUF_CLASSES - 1))
#define BUF_DEFAULT_LIMIT ((size_t)64 << 20)

void px_bufpool_init(px_bufpool *bp, size_t cache_limit)
{
    for (int i = 0; i < PX_BUF_CLASSES; i++)
        bp->free[i] = NULL;
    bp->cached_bytes = 0;
    bp->cache_limit = cache_limit ? cache_limit : BUF_DEFAULT_LIMIT;
    bp->allocs = 0;
    bp->decline = px_fault_mask() & PX_FAULT_BUF_GET;
    bp->registrar = (px_buf_registrar){0};
}

void px_bufpool_set_registrar(px_bufpool *bp, const px_buf_registrar *r)
{
    bp->registrar = *r;
}

static void buf_free(px_bufpool *bp, px_buf *b)
{
    if (b->mr)
        bp->registrar.dereg(b->mr);
    free(b);
}

void px_bufpool_fini(px_bufpool *bp)
{
    for (int i = 0; i < PX_BUF_CLASSES; i++) {
        while (bp->free[i]) {
            px_buf *b = bp->free[i];
            bp->free[i] = b->next;
            buf_free(bp, b);
        }
    }
    bp->cached_bytes = 0;
}

static unsigned size_class(size_t len)
{
    unsigned cls = 0;
    while (((size_t)1 << (cls + PX_BUF_MIN_SHIFT)) < len)
        cls++;
    return cls;
}

px_buf *px_buf_get(px_bufpool *bp, size_t len)
{
    if (len > BUF_MAX_LEN || bp->decline)
        return NULL;
    unsigned cls = size_class(len);
    px_buf *b = bp->free[cls];
    if (b) {
        bp->free[cls] = b->next;
        bp->cached_bytes -= b->cap;
        b->next = NULL;
        return b;
    }
    size_t cap = (size_t)1 << (cls + PX_BUF_MIN_SHIFT);
    /* aligned_alloc wants a multiple of the alignment: the header is padded
     * to 64 by data's alignment and cap is a multiple of 4 KiB. */
    b = aligned_alloc(64, sizeof(px_buf) + cap);
    if (b == NULL)
        return NULL;
    bp->allocs++;
    b->next = NULL;
    b->cap = cap;
    b->cls = (uint8_t)cls;
    b->mr = NULL;
    /* Unregistered it still works: a transport that needs a handle copies. */
    if (bp->registrar.reg && cap >= bp->registrar.min_len &&
        bp->registrar.reg(bp->registrar.arg, b->data, cap, &b->mr) < 0)
        b->mr = NULL;
    return b;
}

void px_buf_put(px_bufpool *bp, px_buf *b)
{
    if (b == NULL)
        return;
    if (bp->cache_limit - bp->cached_bytes < b->cap || bp->cached_bytes > bp->cache_limit) {
        buf_free(bp, b);
        return;
    }
    b->next = bp->free[b->cls];
    bp->free[b->cls] = b;
    bp->cached_bytes += b->cap;
}
