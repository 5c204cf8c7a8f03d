/* A registered memory region. Owned by the context it was registered on
 * (linked in ctx->regions); freed by px_mem_deregister()/px_mem_free().
 * Every transport instance of the context registers it (mem_register) and
 * keeps its handle (RDMA MR, shm memfd record, ...) in `tp_handle`,
 * indexed by the instance's slot; transports read it back through the
 * host's mr_handle(). */
#ifndef PX_CORE_MEM_H
#define PX_CORE_MEM_H

#include <stddef.h>
#include <stdint.h>

#include "core/list.h"
#include "plexus/memory.h"

#define PX_MR_MAX_TP 8

struct px_mr {
    px_ctx *ctx;
    void *addr;
    size_t len;
    int fd;        /* memfd behind px_mem_alloc() memory, else -1 */
    int allocated; /* made by px_mem_alloc() */
    int pooled;    /* a buffer pool's (core/buf.h): not the application's to deregister */
    uint64_t id;   /* px_mem_alloc(): unique in this process, never reused (peers cache
                      mappings by it); 0 for px_mem_register() regions */
    void *tp_handle[PX_MR_MAX_TP];
    px_list link; /* ctx->regions; unlinked once the context forgot it */
};

struct px_ctx_tp;
/* A new instance: register every region of the context with it. */
void px_mem_register_with(px_ctx *ctx, struct px_ctx_tp *ctp);
/* px_ctx_destroy: deregister what is still registered from every instance
 * (the regions themselves stay the application's to free). */
void px_mem_forget_all(px_ctx *ctx);

#endif
