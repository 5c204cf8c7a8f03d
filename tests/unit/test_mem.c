/* Memory regions: registration records, memfd-backed allocations. */
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stdlib.h>

#include "core/buf.h"
#include "core/ctx.h"
#include "core/mem.h"
#include "plexus/context.h"
#include "plexus/error.h"
#include "plexus/transport.h"
#include "px_check.h"

/* One context per test process (Check forks each test). */
static px_ctx *ctx_get(void)
{
    static px_ctx *ctx;
    if (!ctx)
        ck_assert_int_eq(px_ctx_create(NULL, &ctx), 0);
    return ctx;
}
#define CTX ctx_get()

START_TEST(register_plain)
{
    char buf[100];
    px_mr *mr = NULL;
    int fd = 123;
    uint64_t off = 9;
    ck_assert_int_eq(px_mem_register(CTX, buf, sizeof(buf), &mr), 0);
    ck_assert_ptr_eq(px_mr_addr(mr), buf);
    ck_assert_uint_eq(px_mr_len(mr), 100);
    ck_assert_ptr_eq(mr->ctx, CTX);
    ck_assert_int_eq(mr->fd, -1);
    ck_assert_uint_ne(px_mr_id(mr), 0);
    ck_assert_ptr_null(mr->tp_handle[0]);
    ck_assert_int_eq(px_mr_fd(mr, &fd, &off), -PX_ENOENT);
    ck_assert_int_eq(fd, 123);
    ck_assert_int_eq(px_mem_free(mr), -PX_EINVAL);
    ck_assert_int_eq(px_mem_deregister(mr), 0);
}
END_TEST

START_TEST(register_bad)
{
    char buf[8];
    px_mr *mr = NULL;
    ck_assert_int_eq(px_mem_register(CTX, buf, 0, &mr), -PX_EINVAL);
    ck_assert_int_eq(px_mem_register(CTX, NULL, 8, &mr), -PX_EINVAL);
    ck_assert_int_eq(px_mem_register(NULL, buf, 8, &mr), -PX_EINVAL);
    ck_assert_int_eq(px_mem_register(CTX, buf, 8, NULL), -PX_EINVAL);
    ck_assert_ptr_null(mr);
    ck_assert_int_eq(px_mem_deregister(NULL), -PX_EINVAL);
    ck_assert_int_eq(px_mem_free(NULL), -PX_EINVAL);
}
END_TEST

START_TEST(alloc_memfd)
{
    void *addr = NULL;
    px_mr *mr = NULL;
    long page = sysconf(_SC_PAGESIZE);
    ck_assert_int_eq(px_mem_alloc(CTX, 1, &addr, &mr), 0);
    ck_assert_ptr_eq(px_mr_addr(mr), addr);
    ck_assert_uint_eq(px_mr_len(mr), (size_t)page);
    ck_assert_uint_eq((uintptr_t)addr % (uintptr_t)page, 0);
    int fd = -1;
    uint64_t off = 99;
    ck_assert_int_eq(px_mr_fd(mr, &fd, &off), 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_uint_eq(off, 0);
    ck_assert_int_ne(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
    struct stat st;
    ck_assert_int_eq(fstat(fd, &st), 0);
    ck_assert_int_eq(st.st_size, page);
    /* A second mapping of the fd sees the same bytes: what a peer sees. */
    memcpy(addr, "plexus", 7);
    char *peer = mmap(NULL, (size_t)page, PROT_READ, MAP_SHARED, fd, 0);
    ck_assert_ptr_ne(peer, MAP_FAILED);
    ck_assert_str_eq(peer, "plexus");
    munmap(peer, (size_t)page);
    ck_assert_int_eq(px_mem_deregister(mr), -PX_EINVAL);
    ck_assert_int_eq(px_mem_free(mr), 0);
    ck_assert_int_eq(fcntl(fd, F_GETFD), -1); /* closed */
}
END_TEST

START_TEST(alloc_rounding)
{
    void *addr;
    px_mr *mr;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    ck_assert_int_eq(px_mem_alloc(CTX, 3 * page + 1, &addr, &mr), 0);
    ck_assert_uint_eq(px_mr_len(mr), 4 * page);
    memset(addr, 0x11, 4 * page);
    ck_assert_int_eq(px_mem_free(mr), 0);
    ck_assert_int_eq(px_mem_alloc(CTX, 2 * page, &addr, &mr), 0);
    ck_assert_uint_eq(px_mr_len(mr), 2 * page);
    ck_assert_int_eq(px_mem_free(mr), 0);
}
END_TEST

START_TEST(alloc_bad)
{
    void *addr = NULL;
    px_mr *mr = NULL;
    ck_assert_int_eq(px_mem_alloc(CTX, 0, &addr, &mr), -PX_EINVAL);
    ck_assert_int_eq(px_mem_alloc(NULL, 10, &addr, &mr), -PX_EINVAL);
    ck_assert_int_eq(px_mem_alloc(CTX, 10, NULL, &mr), -PX_EINVAL);
    ck_assert_int_eq(px_mem_alloc(CTX, SIZE_MAX, &addr, &mr), -PX_ENOMEM);
    ck_assert_int_eq(px_mem_alloc(CTX, SIZE_MAX / 2, &addr, &mr), -PX_ENOMEM);
    ck_assert_ptr_null(mr);
    ck_assert_ptr_null(addr);
    ck_assert_int_eq(px_mr_fd(NULL, NULL, NULL), -PX_EINVAL);
    ck_assert_ptr_null(px_mr_addr(NULL));
    ck_assert_uint_eq(px_mr_len(NULL), 0);
}
END_TEST

/* ---- registration with the context's transports ------------------------------ */

/* A transport that only registers memory: it counts, and hands out a
 * handle of its own per region. */
static struct {
    int regs, deregs;
    void *last_handle;
} fake;

static int fake_init(const px_tp_host *host, px_tp **out)
{
    px_tp *tp = calloc(1, sizeof(*tp));
    px_tpc_init(tp, NULL, host);
    *out = tp;
    return 0;
}
static void fake_fini(px_tp *tp)
{
    px_tpc_fini(tp);
    free(tp);
}
static int fake_register(px_tp *tp, const px_mr *mr, void **handle)
{
    fake.regs++;
    *handle = (void *)((uintptr_t)px_mr_addr(mr) ^ 0x5a5a);
    return 0;
}
static void fake_deregister(px_tp *tp, void *handle)
{
    fake.deregs++;
    fake.last_handle = handle;
}
static void fake_get_caps(px_tp *tp, px_tp_caps *out)
{
    *out = (px_tp_caps){.max_iov = 1};
}

static const px_transport fake_tp = {
    .abi = PX_TRANSPORT_ABI,
    .name = "fake",
    .init = fake_init,
    .fini = fake_fini,
    .get_caps = fake_get_caps,
    .mem_register = fake_register,
    .mem_deregister = fake_deregister,
};

/* A region made before a transport instance exists is registered with it
 * when it starts; one made after, at once; each transport finds its own
 * handle; deregistering and freeing give the handles back. */
START_TEST(registered_with_transports)
{
    char buf[256];
    px_mr *a, *b;
    void *addr;
    px_ctx_tp *ctp;
    ck_assert_int_eq(px_mem_register(CTX, buf, sizeof(buf), &a), 0);
    ck_assert_int_eq(fake.regs, 0);
    ck_assert_int_eq(px_ctx_instance(CTX, &fake_tp, &ctp), 0);
    ck_assert_int_eq(fake.regs, 1);
    ck_assert_ptr_eq(ctp->host.ops->mr_handle(&ctp->host, a), (void *)((uintptr_t)buf ^ 0x5a5a));
    ck_assert_int_eq(px_mem_alloc(CTX, 100, &addr, &b), 0);
    ck_assert_int_eq(fake.regs, 2);
    ck_assert_ptr_eq(ctp->host.ops->mr_handle(&ctp->host, b), (void *)((uintptr_t)addr ^ 0x5a5a));
    ck_assert_int_ne(px_mr_id(a), px_mr_id(b));
    ck_assert_int_eq(px_mem_deregister(a), 0);
    ck_assert_int_eq(fake.deregs, 1);
    ck_assert_ptr_eq(fake.last_handle, (void *)((uintptr_t)buf ^ 0x5a5a));
    ck_assert_int_eq(px_mem_free(b), 0);
    ck_assert_int_eq(fake.deregs, 2);
    ck_assert_int_eq(px_ctx_destroy(CTX), 0);
}
END_TEST

/* Large receives land in pool buffers: those are registered (a transport
 * finds its handle through the buffer's mr), small ones are not, and the
 * registration ends when the buffer is freed. */
START_TEST(pool_buffers_registered)
{
    px_ctx_tp *ctp;
    ck_assert_int_eq(px_ctx_instance(CTX, &fake_tp, &ctp), 0);
    px_buf *small = px_buf_get(&CTX->bufs, PX_CTX_BUF_REG_MIN / 2);
    ck_assert_ptr_nonnull(small);
    ck_assert_ptr_null(small->mr);
    ck_assert_int_eq(fake.regs, 0);
    px_buf *big = px_buf_get(&CTX->bufs, 1 << 20);
    ck_assert_ptr_nonnull(big);
    ck_assert_ptr_nonnull(big->mr);
    ck_assert_int_eq(fake.regs, 1);
    ck_assert_ptr_eq(px_mr_addr(big->mr), big->data);
    ck_assert_uint_ge(px_mr_len(big->mr), 1 << 20);
    ck_assert_ptr_eq(ctp->host.ops->mr_handle(&ctp->host, big->mr),
                     (void *)((uintptr_t)big->data ^ 0x5a5a));
    /* Cached, it stays registered; reused, it is not registered again. */
    px_buf_put(&CTX->bufs, big);
    ck_assert_int_eq(fake.deregs, 0);
    ck_assert_ptr_eq(px_buf_get(&CTX->bufs, 1 << 20), big);
    ck_assert_int_eq(fake.regs, 1);
    px_buf_put(&CTX->bufs, big);
    px_buf_put(&CTX->bufs, small);
    ck_assert_int_eq(px_ctx_destroy(CTX), 0);
    ck_assert_int_eq(fake.deregs, 1);
}
END_TEST

PX_CHECK_MAIN("mem", register_plain, register_bad, alloc_memfd, alloc_rounding, alloc_bad,
              registered_with_transports, pool_buffers_registered)
