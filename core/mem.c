/* Memory regions; see plexus/memory.h and core/mem.h. Transports attach
 * their own handles later (tp_handle); this file only owns the memory. */
#include "core/mem.h"
#include "core/ctx.h"
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "plexus/error.h"
#include "plexus/transport.h"

/* Region ids for peers that cache our memfds by id: unique for the life of
 * the process (a freed region's id never names another one), so a stale
 * cached mapping can never be mistaken for a new region. The one global
 * counter plexus has besides the registry; atomic. */
static uint64_t next_region_id;

static px_mr *mr_new(px_ctx *ctx, void *addr, size_t len, int fd, int allocated)
{
    px_mr *mr = calloc(1, sizeof(*mr));
    if (mr == NULL)
        return NULL;
    mr->ctx = ctx;
    mr->addr = addr;
    mr->len = len;
    mr->fd = fd;
    mr->allocated = allocated;
    px_list_init(&mr->link);
    return mr;
}

/* With every transport instance of the context (those created later get it
 * when they start). A transport that cannot is logged and skipped: plain
 * memory always works, with a copy where a transport needs one. */
static void register_all(px_ctx *ctx, px_mr *mr)
{
    for (unsigned i = 0; i < ctx->n_tps; i++) {
        px_ctx_tp *t = &ctx->tps[i];
        if (t->ops->mem_register && t->ops->mem_register(t->tp, mr, &mr->tp_handle[t->slot]) < 0) {
            PX_LOGW("%s: cannot register a region of %zu bytes; it travels by copy there",
                    t->ops->name, mr->len);
            mr->tp_handle[t->slot] = NULL;
        }
    }
    px_list_push_back(&ctx->regions, &mr->link);
}

static void deregister_all(px_mr *mr)
{
    if (px_list_unlinked(&mr->link))
        return; /* the context forgot it already */
    px_ctx *ctx = mr->ctx;
    for (unsigned i = 0; i < ctx->n_tps; i++) {
        px_ctx_tp *t = &ctx->tps[i];
        if (t->ops->mem_deregister && mr->tp_handle[t->slot])
            t->ops->mem_deregister(t->tp, mr->tp_handle[t->slot]);
        mr->tp_handle[t->slot] = NULL;
    }
    px_list_del(&mr->link);
}

void px_mem_register_with(px_ctx *ctx, px_ctx_tp *t)
{
    if (!t->ops->mem_register)
        return;
    for (px_list *n = ctx->regions.next; n != &ctx->regions; n = n->next) {
        px_mr *mr = PX_CONTAINER_OF(n, px_mr, link);
        if (t->ops->mem_register(t->tp, mr, &mr->tp_handle[t->slot]) < 0)
            mr->tp_handle[t->slot] = NULL;
    }
}

void px_mem_forget_all(px_ctx *ctx)
{
    px_list *n;
    while ((n = px_list_first(&ctx->regions)) != NULL) {
        px_mr *mr = PX_CONTAINER_OF(n, px_mr, link);
        if (!mr->pooled)
            PX_LOGW("px_ctx_destroy: a region of %zu bytes is still registered", mr->len);
        deregister_all(mr);
    }
}

int px_mem_register(px_ctx *ctx, void *addr, size_t len, px_mr **out)
{
    if (ctx == NULL || addr == NULL || len == 0 || out == NULL)
        return -PX_EINVAL;
    px_mr *mr = mr_new(ctx, addr, len, -1, 0);
    if (mr == NULL)
        return -PX_ENOMEM;
    mr->id = __atomic_add_fetch(&next_region_id, 1, __ATOMIC_RELAXED);
    register_all(ctx, mr);
    *out = mr;
    return 0;
}

int px_mem_deregister(px_mr *mr)
{
    if (mr == NULL || mr->allocated)
        return -PX_EINVAL;
    deregister_all(mr);
    free(mr);
    return 0;
}

/* Whole pages: the segment is mapped by the peer too, and it can only map
 * pages. Returns 0 on overflow. */
static size_t page_round(size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (len > SIZE_MAX - (page - 1))
        return 0;
    return (len + page - 1) & ~(page - 1);
}

static int memfd_map(size_t len, int *fd_out, void **addr_out)
{
    int fd = memfd_create("plexus-mem", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return errno == EMFILE || errno == ENFILE ? -errno : -PX_ENOMEM;
    /* Sealed at its size: a peer that maps it (shm's shared pool) can rely on
     * every byte staying there, so nobody can make its copy fault. */
    if (ftruncate(fd, (off_t)len) != 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
        close(fd);
        return -PX_ENOMEM;
    }
    void *addr = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (addr == MAP_FAILED) {
        close(fd);
        return -PX_ENOMEM;
    }
    *fd_out = fd;
    *addr_out = addr;
    return 0;
}

int px_mem_alloc(px_ctx *ctx, size_t len, void **addr, px_mr **out)
{
    if (ctx == NULL || len == 0 || addr == NULL || out == NULL)
        return -PX_EINVAL;
    size_t size = page_round(len);
    if (size == 0 || size > (size_t)INT64_MAX)
        return -PX_ENOMEM;
    int fd;
    void *mem;
    int rc = memfd_map(size, &fd, &mem);
    if (rc)
        return rc;
    px_mr *mr = mr_new(ctx, mem, size, fd, 1);
    if (mr == NULL) {
        munmap(mem, size);
        close(fd);
        return -PX_ENOMEM;
    }
    mr->id = __atomic_add_fetch(&next_region_id, 1, __ATOMIC_RELAXED);
    register_all(ctx, mr);
    *addr = mem;
    *out = mr;
    return 0;
}

int px_mem_free(px_mr *mr)
{
    if (mr == NULL || !mr->allocated)
        return -PX_EINVAL;
    deregister_all(mr);
    munmap(mr->addr, mr->len);
    close(mr->fd);
    free(mr);
    return 0;
}

void *px_mr_addr(const px_mr *mr)
{
    return mr ? mr->addr : NULL;
}

size_t px_mr_len(const px_mr *mr)
{
    return mr ? mr->len : 0;
}

/* The whole segment is the region, so the offset is always 0 today; the
 * out-parameter leaves room for regions carved from a shared pool. */
int px_mr_fd(const px_mr *mr, int *fd, uint64_t *offset)
{
    if (mr == NULL || fd == NULL || offset == NULL)
        return -PX_EINVAL;
    if (mr->fd < 0)
        return -PX_ENOENT;
    *fd = mr->fd;
    *offset = 0;
    return 0;
}

uint64_t px_mr_id(const px_mr *mr)
{
    return mr ? mr->id : 0;
}
