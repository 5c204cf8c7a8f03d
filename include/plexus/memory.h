/**
 * @file
 * plexus — memory that every transport can move without copying.
 *
 * A px_mr describes a registered region. Passing buffers inside a
 * registered region (px_iov.mr) lets RDMA read/write them directly and shm
 * share them; plain memory (mr == NULL) always works too, with a copy or an
 * on-the-fly registration where a transport needs one.
 */
#ifndef PLEXUS_MEMORY_H
#define PLEXUS_MEMORY_H

#include "plexus/api.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef PX_CTX_DECLARED /* one typedef however many headers name it (C99) */
/** Defined where px_ctx is declared: one typedef however many headers name it (C99). */
#define PX_CTX_DECLARED
/** A context: one event loop per thread (plexus/context.h). */
typedef struct px_ctx px_ctx;
#endif
/** A registered memory region (opaque). */
typedef struct px_mr px_mr;

/** One scatter-gather element. `mr` is optional: NULL for plain memory, or
 * the region from px_mem_register()/px_mem_alloc() that contains
 * [base, base+len). */
typedef struct px_iov {
    void *base; /**< the first byte */
    size_t len; /**< bytes from base */
    px_mr *mr;  /**< the region holding them, or NULL for plain memory */
} px_iov;

/** Register [addr, addr+len) with every transport that can use it. The
 * memory stays owned by the caller and must outlive the registration.
 * The region belongs to `ctx`; deregister before destroying the context.
 * @param ctx the context the region belongs to
 * @param addr the first byte
 * @param len bytes from addr (not 0)
 * @param[out] out the new region
 * @return 0 and *out; -PX_EINVAL (NULL or len 0); -PX_ENOMEM. */
PX_API int px_mem_register(px_ctx *ctx, void *addr, size_t len, px_mr **out);

/** Deregister. No message that uses the region may still be in flight.
 * @param mr a region from px_mem_register()
 * @return 0; -PX_EINVAL for a region from px_mem_alloc(). */
PX_API int px_mem_deregister(px_mr *mr);

/** Allocate `len` bytes of page-aligned memory, shareable with a peer
 * process (it is backed by a memfd) and registered. Freed with
 * px_mem_free(). The region covers whole pages: px_mr_len() reports `len`
 * rounded up to the page size.
 * @param ctx the context the region belongs to
 * @param len bytes wanted
 * @param[out] addr the memory
 * @param[out] out its region
 * @return 0, *addr and *out; -PX_EINVAL; -PX_ENOMEM. */
PX_API int px_mem_alloc(px_ctx *ctx, size_t len, void **addr, px_mr **out);

/** Free memory from px_mem_alloc().
 * @param mr the region px_mem_alloc() gave
 * @return 0; -PX_EINVAL for a region that px_mem_register() made. */
PX_API int px_mem_free(px_mr *mr);

/** The address a region covers.
 * @param mr the region
 * @return its first byte. */
PX_API void *px_mr_addr(const px_mr *mr);
/** The length a region covers.
 * @param mr the region
 * @return its bytes (whole pages for px_mem_alloc() memory). */
PX_API size_t px_mr_len(const px_mr *mr);

#ifdef __cplusplus
}
#endif
#endif
