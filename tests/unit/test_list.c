/* Intrusive list. */
#include "core/list.h"
#include "px_check.h"

typedef struct item {
    int v;
    px_list link;
} item;

static int values(const px_list *h, int *out, int max)
{
    int n = 0;
    for (const px_list *p = h->next; p != h && n < max; p = p->next)
        out[n++] = PX_CONTAINER_OF(p, item, link)->v;
    return n;
}

START_TEST(push_pop)
{
    px_list h;
    item it[4] = {{.v = 1}, {.v = 2}, {.v = 3}, {.v = 4}};
    int v[8];
    px_list_init(&h);
    ck_assert(px_list_empty(&h));
    ck_assert_ptr_null(px_list_first(&h));
    ck_assert_ptr_null(px_list_pop_front(&h));
    px_list_push_back(&h, &it[1].link);
    px_list_push_back(&h, &it[2].link);
    px_list_push_front(&h, &it[0].link);
    px_list_push_back(&h, &it[3].link);
    ck_assert_int_eq(values(&h, v, 8), 4);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(v[i], i + 1);
    px_list_del(&it[2].link);
    ck_assert(px_list_unlinked(&it[2].link));
    ck_assert(!px_list_unlinked(&it[1].link));
    ck_assert_int_eq(values(&h, v, 8), 3);
    ck_assert_int_eq(v[2], 4);
    ck_assert_ptr_eq(px_list_pop_front(&h), &it[0].link);
    ck_assert(px_list_unlinked(&it[0].link));
    ck_assert_ptr_eq(px_list_first(&h), &it[1].link);
    ck_assert_ptr_eq(PX_CONTAINER_OF(px_list_first(&h), item, link), &it[1]);
    ck_assert_ptr_eq(px_list_pop_front(&h), &it[1].link);
    ck_assert_ptr_eq(px_list_pop_front(&h), &it[3].link);
    ck_assert(px_list_empty(&h));
}
END_TEST

START_TEST(splice)
{
    px_list a, b;
    item it[5] = {{.v = 1}, {.v = 2}, {.v = 3}, {.v = 4}, {.v = 5}};
    int v[8];
    px_list_init(&a);
    px_list_init(&b);
    px_list_splice_back(&a, &b);
    ck_assert(px_list_empty(&a));
    px_list_push_back(&a, &it[0].link);
    px_list_push_back(&a, &it[1].link);
    px_list_push_back(&b, &it[2].link);
    px_list_push_back(&b, &it[3].link);
    px_list_splice_back(&a, &b);
    ck_assert(px_list_empty(&b));
    ck_assert_int_eq(values(&a, v, 8), 4);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(v[i], i + 1);
    /* Both directions stay consistent after a splice. */
    ck_assert_ptr_eq(a.prev, &it[3].link);
    ck_assert_ptr_eq(it[3].link.next, &a);
    ck_assert_ptr_eq(it[2].link.prev, &it[1].link);
    px_list_push_back(&b, &it[4].link);
    px_list_splice_back(&b, &a);
    ck_assert_int_eq(values(&b, v, 8), 5);
    ck_assert_int_eq(v[0], 5);
    ck_assert_int_eq(v[4], 4);
}
END_TEST

PX_CHECK_MAIN("list", push_pop, splice)
