/* Task pool: fixed capacity, LIFO reuse, index mapping, ownership. */
#include <stdint.h>
#include <string.h>

#include "core/pool.h"
#include "plexus/error.h"
#include "px_check.h"

START_TEST(init_bad)
{
    px_pool p;
    ck_assert_int_eq(px_pool_init(&p, 0, 4), -PX_EINVAL);
    ck_assert_int_eq(px_pool_init(&p, 8, 0), -PX_EINVAL);
    ck_assert_int_eq(px_pool_init(&p, SIZE_MAX, 2), -PX_ENOMEM);
    ck_assert_int_eq(px_pool_init(&p, SIZE_MAX / 2, 4), -PX_ENOMEM);
}
END_TEST

START_TEST(stride)
{
    px_pool p;
    ck_assert_int_eq(px_pool_init(&p, 1, 3), 0);
    ck_assert_uint_eq(p.stride, 64);
    px_pool_fini(&p);
    ck_assert_int_eq(px_pool_init(&p, 65, 3), 0);
    ck_assert_uint_eq(p.stride, 128);
    ck_assert_uint_eq((uintptr_t)p.mem % 64, 0);
    px_pool_fini(&p);
}
END_TEST

START_TEST(exhaust)
{
    px_pool p;
    void *e[8];
    ck_assert_int_eq(px_pool_init(&p, 100, 8), 0);
    for (uint32_t i = 0; i < 8; i++) {
        e[i] = px_pool_get(&p);
        ck_assert_ptr_nonnull(e[i]);
        ck_assert_uint_eq((uintptr_t)e[i] % 64, 0);
        /* Fresh elements come out in address order. */
        ck_assert_uint_eq(px_pool_index(&p, e[i]), i);
        ck_assert_ptr_eq(px_pool_at(&p, i), e[i]);
        memset(e[i], (int)i, 100);
    }
    ck_assert_uint_eq(p.in_use, 8);
    ck_assert_ptr_null(px_pool_get(&p));
    for (uint32_t i = 0; i < 8; i++)
        ck_assert_uint_eq(((unsigned char *)e[i])[99], i);
    for (uint32_t i = 0; i < 8; i++)
        px_pool_put(&p, e[i]);
    ck_assert_uint_eq(p.in_use, 0);
    px_pool_fini(&p);
    ck_assert_ptr_null(p.mem);
}
END_TEST

START_TEST(lifo)
{
    px_pool p;
    ck_assert_int_eq(px_pool_init(&p, 16, 4), 0);
    void *a = px_pool_get(&p), *b = px_pool_get(&p), *c = px_pool_get(&p);
    px_pool_put(&p, a);
    px_pool_put(&p, c);
    ck_assert_ptr_eq(px_pool_get(&p), c);
    ck_assert_ptr_eq(px_pool_get(&p), a);
    ck_assert_ptr_eq(px_pool_get(&p), px_pool_at(&p, 3));
    ck_assert_ptr_null(px_pool_get(&p));
    ck_assert_uint_eq(p.in_use, 4);
    px_pool_put(&p, a);
    px_pool_put(&p, b);
    px_pool_put(&p, c);
    px_pool_put(&p, px_pool_at(&p, 3));
    px_pool_fini(&p);
}
END_TEST

START_TEST(owns_and_at)
{
    px_pool p;
    ck_assert_int_eq(px_pool_init(&p, 32, 4), 0);
    char *base = p.mem;
    ck_assert_int_eq(px_pool_owns(&p, base), 1);
    ck_assert_int_eq(px_pool_owns(&p, base + 3 * 64), 1);
    ck_assert_int_eq(px_pool_owns(&p, base + 4 * 64), 0);
    ck_assert_int_eq(px_pool_owns(&p, base + 1), 0);
    ck_assert_int_eq(px_pool_owns(&p, base + 65), 0);
    ck_assert_int_eq(px_pool_owns(&p, base - 64), 0);
    ck_assert_int_eq(px_pool_owns(&p, &p), 0);
    ck_assert_ptr_null(px_pool_at(&p, 4));
    ck_assert_ptr_eq(px_pool_at(&p, 2), base + 128);
    px_pool_fini(&p);
}
END_TEST

PX_CHECK_MAIN("pool", init_bad, stride, exhaust, lifo, owns_and_at)
