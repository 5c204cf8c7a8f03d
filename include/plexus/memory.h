/* plexus — memory that every transport can move without copying.
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
#define PX_CTX_DECLARED
typedef struct px_ctx px_ctx;
#endif
typedef struct px_mr px_mr;

/* One scatter-gather element. `mr` is optional: NULL for plain memory, or
 * the region from px_mem_register()/px_mem_alloc() that contains
 * [base, base+len). */
typedef struct px_iov {
    void *base;
    size_t len;
    px_mr *mr;
} px_iov;

/* Register [addr, addr+len) with every transport that can use it. The
 * memory stays owned by the caller and must outlive the registration.
 * Returns 0 and *out; -PX_EINVAL (NULL or len 0); -PX_ENOMEM. The region
 * belongs to `ctx`; deregister before destroying the context. */
PX_API int px_mem_register(px_ctx *ctx, void *addr, size_t len, px_mr **out);

/* Deregister. No message that uses the region may still be in flight.
 * Returns 0; -PX_EINVAL for a region from px_mem_alloc(). */
PX_API int px_mem_deregister(px_mr *mr);

/* Allocate `len` bytes of page-aligned memory, shareable with a peer
 * process (it is backed by a memfd) and registered. Returns 0, *addr and
 * *out; -PX_EINVAL; -PX_ENOMEM. Freed with px_mem_free(). The region
 * covers whole pages: px_mr_len() reports `len` rounded up to the page size. */
PX_API int px_mem_alloc(px_ctx *ctx, size_t len, void **addr, px_mr **out);

/* Free memory from px_mem_alloc(). Returns 0; -PX_EINVAL for a region that
 * px_mem_register() made. */
PX_API int px_mem_free(px_mr *mr);

/* The address and length a region covers. */
PX_API void *px_mr_addr(const px_mr *mr);
PX_API size_t px_mr_len(const px_mr *mr);

#ifdef __cplusplus
}
#endif
#endif
