/* Memory regions: registration records, memfd-backed allocations. */
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mem.h"
#include "plexus/error.h"
#include "plexus/transport.h"
#include "px_check.h"

/* px_mem_* only stores the context pointer, so any address stands in. */
static int fake_ctx_storage;
#define CTX ((px_ctx *)&fake_ctx_storage)

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

PX_CHECK_MAIN("mem", register_plain, register_bad, alloc_memfd, alloc_rounding, alloc_bad)
