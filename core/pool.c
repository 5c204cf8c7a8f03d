/* Fixed-size element pool; see pool.h. */
#include "core/pool.h"

#include <assert.h>
#include <stdlib.h>

#include "plexus/error.h"

#define POOL_ALIGN 64u

/* The free list is threaded through the first word of each free element, so
 * the pool needs no memory besides the elements themselves. */
typedef struct pool_free {
    struct pool_free *next;
} pool_free;

int px_pool_init(px_pool *p, size_t elem_size, uint32_t count)
{
    p->mem = p->free_head = NULL;
    p->stride = 0;
    p->count = p->in_use = 0;
    if (elem_size == 0 || count == 0)
        return -PX_EINVAL;
    if (elem_size > SIZE_MAX - POOL_ALIGN)
        return -PX_ENOMEM;
    size_t stride = (elem_size + POOL_ALIGN - 1) & ~(size_t)(POOL_ALIGN - 1);
    if (stride > SIZE_MAX / count)
        return -PX_ENOMEM;
    char *mem = aligned_alloc(POOL_ALIGN, stride * count);
    if (mem == NULL)
        return -PX_ENOMEM;
    p->mem = mem;
    p->stride = stride;
    p->count = count;
    /* Pushed in reverse so the first gets walk the memory upwards. */
    for (uint32_t i = count; i-- > 0;) {
        pool_free *f = (pool_free *)(mem + (size_t)i * stride);
        f->next = p->free_head;
        p->free_head = f;
    }
    return 0;
}

void px_pool_fini(px_pool *p)
{
    assert(p->in_use == 0);
    free(p->mem);
    p->mem = p->free_head = NULL;
    p->count = p->in_use = 0;
}

void *px_pool_get(px_pool *p)
{
    pool_free *f = p->free_head;
    if (f == NULL)
        return NULL;
    p->free_head = f->next;
    p->in_use++;
    return f;
}

void px_pool_put(px_pool *p, void *elem)
{
    assert(px_pool_owns(p, elem));
    assert(p->in_use > 0);
    pool_free *f = elem;
    f->next = p->free_head;
    p->free_head = f;
    p->in_use--;
}

uint32_t px_pool_index(const px_pool *p, const void *elem)
{
    return (uint32_t)(((const char *)elem - (const char *)p->mem) / p->stride);
}

void *px_pool_at(const px_pool *p, uint32_t index)
{
    if (index >= p->count)
        return NULL;
    return (char *)p->mem + (size_t)index * p->stride;
}

/* Compared as integers: pointer comparison across objects is undefined. */
int px_pool_owns(const px_pool *p, const void *elem)
{
    uintptr_t base = (uintptr_t)p->mem;
    uintptr_t e = (uintptr_t)elem;
    if (p->mem == NULL || e < base)
        return 0;
    uintptr_t off = e - base;
    return off / p->stride < p->count && off % p->stride == 0;
}
