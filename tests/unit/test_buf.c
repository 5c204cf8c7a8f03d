/* Buffer pool: size classes, reuse without allocation, the cache budget. */
#include <stdint.h>
#include <string.h>

#include "core/buf.h"
#include "px_check.h"

START_TEST(classes)
{
    px_bufpool bp;
    px_bufpool_init(&bp, 0);
    ck_assert_uint_eq(bp.cache_limit, 64u << 20);
    static const struct {
        size_t len, cap;
        unsigned cls;
    } cases[] = {{0, 4096, 0},      {1, 4096, 0},       {4096, 4096, 0},        {4097, 8192, 1},
                 {65536, 65536, 4}, {65537, 131072, 5}, {1u << 20, 1u << 20, 8}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        px_buf *b = px_buf_get(&bp, cases[i].len);
        ck_assert_ptr_nonnull(b);
        ck_assert_uint_eq(b->cap, cases[i].cap);
        ck_assert_uint_eq(b->cls, cases[i].cls);
        ck_assert_uint_eq((uintptr_t)b->data % 64, 0);
        memset(b->data, 0xab, b->cap);
        px_buf_put(&bp, b);
    }
    ck_assert_uint_eq(bp.allocs, 5); /* the three 4 KiB gets share one buffer */
    px_bufpool_fini(&bp);
    ck_assert_uint_eq(bp.cached_bytes, 0);
}
END_TEST

START_TEST(too_large)
{
    px_bufpool bp;
    px_bufpool_init(&bp, 0);
    ck_assert_ptr_null(px_buf_get(&bp, ((size_t)4 << 30) + 1));
    ck_assert_ptr_null(px_buf_get(&bp, SIZE_MAX));
    ck_assert_uint_eq(bp.allocs, 0);
    px_bufpool_fini(&bp);
}
END_TEST

/* max_msg_size may be 4 GiB - 1: every message size gets a buffer (the
 * pages are never touched here, so this costs no memory). */
START_TEST(largest_message)
{
    px_bufpool bp;
    px_bufpool_init(&bp, 0);
    px_buf *b = px_buf_get(&bp, ((size_t)2 << 30) + 1);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_ge(b->cap, ((size_t)2 << 30) + 1);
    px_buf_put(&bp, b);
    b = px_buf_get(&bp, ((size_t)4 << 30) - 1);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_ge(b->cap, ((size_t)4 << 30) - 1);
    px_buf_put(&bp, b);
    px_bufpool_fini(&bp);
}
END_TEST

START_TEST(reuse)
{
    px_bufpool bp;
    px_bufpool_init(&bp, 0);
    px_buf *a = px_buf_get(&bp, 5000);
    px_buf *b = px_buf_get(&bp, 6000);
    ck_assert_ptr_ne(a, b);
    px_buf_put(&bp, a);
    px_buf_put(&bp, b);
    ck_assert_uint_eq(bp.cached_bytes, 2 * 8192);
    ck_assert_ptr_eq(px_buf_get(&bp, 8192), b);
    ck_assert_ptr_eq(px_buf_get(&bp, 4097), a);
    ck_assert_uint_eq(bp.cached_bytes, 0);
    ck_assert_uint_eq(bp.allocs, 2);
    /* The steady state allocates nothing. */
    for (int i = 0; i < 1000; i++) {
        px_buf_put(&bp, a);
        a = px_buf_get(&bp, 7000);
    }
    ck_assert_uint_eq(bp.allocs, 2);
    px_buf_put(&bp, a);
    px_buf_put(&bp, b);
    px_bufpool_fini(&bp);
}
END_TEST

START_TEST(cache_limit)
{
    px_bufpool bp;
    px_bufpool_init(&bp, 12288);
    px_buf *a = px_buf_get(&bp, 8192);
    px_buf *b = px_buf_get(&bp, 8192);
    px_buf *c = px_buf_get(&bp, 4096);
    px_buf_put(&bp, a);
    ck_assert_uint_eq(bp.cached_bytes, 8192);
    px_buf_put(&bp, b); /* over the budget: freed */
    ck_assert_uint_eq(bp.cached_bytes, 8192);
    px_buf_put(&bp, c); /* exactly fills it */
    ck_assert_uint_eq(bp.cached_bytes, 12288);
    ck_assert_ptr_eq(px_buf_get(&bp, 8192), a);
    ck_assert_ptr_nonnull(b = px_buf_get(&bp, 8192));
    ck_assert_uint_eq(bp.allocs, 4);
    px_buf_put(&bp, a);
    px_buf_put(&bp, b);
    px_bufpool_fini(&bp);
}
END_TEST

PX_CHECK_MAIN("buf", classes, too_large, largest_message, reuse, cache_limit)
