/* A registered memory region. Owned by the context it was registered on;
 * freed by px_mem_deregister()/px_mem_free(). Transports keep their own
 * per-region handles (RDMA MR, ...) in `tp_handle`, indexed by the
 * context's transport slot. */
#ifndef PX_CORE_MEM_H
#define PX_CORE_MEM_H

#include <stddef.h>
#include <stdint.h>

#include "plexus/memory.h"

#define PX_MR_MAX_TP 8

struct px_mr {
    px_ctx *ctx;
    void *addr;
    size_t len;
    int fd;        /* memfd behind px_mem_alloc() memory, else -1 */
    int allocated; /* made by px_mem_alloc() */
    uint64_t id;   /* px_mem_alloc(): unique in this process, never reused (peers cache
                      mappings by it); 0 for px_mem_register() regions */
    void *tp_handle[PX_MR_MAX_TP];
};

#endif
