/* Observer fan-out: order, and unsubscribing from inside notify. */
#include "core/observer.h"
#include "px_check.h"

typedef struct rec {
    px_observer_node node;
    int id;
    int calls;
    int last_event;
    void *last_data;
    struct rec *drop;       /* unsubscribe this one when notified */
    px_observer_list *list; /* the list `drop` is in */
} rec;

static int order[16];
static int n_order;

static int rec_notify(void *self, int event, void *data)
{
    rec *r = self;
    r->calls++;
    r->last_event = event;
    r->last_data = data;
    order[n_order++] = r->id;
    if (r->drop)
        px_observer_unsubscribe(r->list, &r->drop->node);
    return 0;
}

static void setup(px_observer_list *l, rec *r, int n)
{
    px_observer_list_init(l);
    n_order = 0;
    for (int i = 0; i < n; i++) {
        r[i] = (rec){.id = i + 1, .list = l};
        px_observer_subscribe(l, &r[i].node, (px_observer){rec_notify, &r[i]});
    }
}

START_TEST(empty)
{
    px_observer_list l;
    px_observer_list_init(&l);
    ck_assert_int_eq(px_observer_list_notify(&l, 1, NULL), 0);
}
END_TEST

START_TEST(in_order)
{
    px_observer_list l;
    rec r[3];
    int payload;
    setup(&l, r, 3);
    ck_assert_int_eq(px_observer_list_notify(&l, 42, &payload), 3);
    ck_assert_int_eq(n_order, 3);
    ck_assert_int_eq(order[0], 1);
    ck_assert_int_eq(order[1], 2);
    ck_assert_int_eq(order[2], 3);
    ck_assert_int_eq(r[1].last_event, 42);
    ck_assert_ptr_eq(r[2].last_data, &payload);
    ck_assert_int_eq(px_observer_notify(&r[0].node.obs, 7, NULL), 0);
    ck_assert_int_eq(r[0].last_event, 7);
}
END_TEST

START_TEST(drop_self)
{
    px_observer_list l;
    rec r[3];
    setup(&l, r, 3);
    r[1].drop = &r[1];
    ck_assert_int_eq(px_observer_list_notify(&l, 1, NULL), 3);
    ck_assert_int_eq(px_observer_list_notify(&l, 1, NULL), 2);
    ck_assert_int_eq(r[0].calls, 2);
    ck_assert_int_eq(r[1].calls, 1);
    ck_assert_int_eq(r[2].calls, 2);
}
END_TEST

START_TEST(drop_next)
{
    px_observer_list l;
    rec r[3];
    setup(&l, r, 3);
    r[0].drop = &r[1];
    ck_assert_int_eq(px_observer_list_notify(&l, 1, NULL), 2);
    ck_assert_int_eq(r[1].calls, 0);
    ck_assert_int_eq(order[0], 1);
    ck_assert_int_eq(order[1], 3);
}
END_TEST

START_TEST(drop_last_and_earlier)
{
    px_observer_list l;
    rec r[3];
    setup(&l, r, 3);
    r[1].drop = &r[2]; /* the last: the cursor becomes the end */
    ck_assert_int_eq(px_observer_list_notify(&l, 1, NULL), 2);
    ck_assert_int_eq(r[2].calls, 0);
    r[1].drop = &r[0]; /* one already visited: no effect on this round */
    ck_assert_int_eq(px_observer_list_notify(&l, 1, NULL), 2);
    ck_assert_int_eq(px_observer_list_notify(&l, 1, NULL), 1);
    ck_assert_int_eq(r[0].calls, 2);
    ck_assert_int_eq(r[1].calls, 3);
}
END_TEST

START_TEST(unsubscribe_twice)
{
    px_observer_list l;
    rec r[2];
    setup(&l, r, 2);
    px_observer_unsubscribe(&l, &r[0].node);
    px_observer_unsubscribe(&l, &r[0].node);
    ck_assert_int_eq(px_observer_list_notify(&l, 1, NULL), 1);
    ck_assert_int_eq(order[0], 2);
    px_observer_subscribe(&l, &r[0].node, (px_observer){rec_notify, &r[0]});
    n_order = 0;
    ck_assert_int_eq(px_observer_list_notify(&l, 1, NULL), 2);
    ck_assert_int_eq(order[0], 2);
    ck_assert_int_eq(order[1], 1);
}
END_TEST

PX_CHECK_MAIN("observer", empty, in_order, drop_self, drop_next, drop_last_and_earlier,
              unsubscribe_twice)
