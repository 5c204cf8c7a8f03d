/* Task pool: a fixed number of equal-sized elements allocated once, handed
 * out LIFO (the most recently freed, cache-warm element first). get/put
 * never allocate, so the data path can use them freely. Owned by whoever
 * embeds the px_pool; single-threaded like the context that uses it. */
#ifndef PX_CORE_POOL_H
#define PX_CORE_POOL_H

#include <stddef.h>
#include <stdint.h>

typedef struct px_pool {
    void *mem;       /* count * stride bytes, cache-line aligned */
    void *free_head; /* LIFO free list threaded through the free elements */
    size_t stride;   /* element size rounded up to 64 */
    uint32_t count;
    uint32_t in_use;
} px_pool;

/* Allocate `count` elements of `elem_size` bytes. Returns 0; -PX_EINVAL for a
 * zero count/size; -PX_ENOMEM. */
int px_pool_init(px_pool *p, size_t elem_size, uint32_t count);
/* Free the memory; every element must have been put back. */
void px_pool_fini(px_pool *p);
/* An element (contents undefined), or NULL when all are in use. */
void *px_pool_get(px_pool *p);
/* Return an element got from this pool. */
void px_pool_put(px_pool *p, void *elem);
/* The element's index in 0..count-1, and back. */
uint32_t px_pool_index(const px_pool *p, const void *elem);
void *px_pool_at(const px_pool *p, uint32_t index);
/* Nonzero when `elem` points at an element of this pool. */
int px_pool_owns(const px_pool *p, const void *elem);

#endif
