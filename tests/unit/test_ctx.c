/* The context: loop control, timers, posts and stops from other threads,
 * polling mode, and refusal to die while objects live. Also run under
 * ThreadSanitizer by scripts/test.sh. */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "plexus/plexus.h"
#include "px_check.h"

static void count_timer(px_timer *t, void *arg)
{
    ++*(int *)arg;
}

static void stop_timer(px_timer *t, void *arg)
{
    px_ctx_stop(arg);
}

START_TEST(ctx_create_destroy_and_bad_options)
{
    px_ctx *ctx;
    ck_assert_int_eq(px_ctx_create(NULL, &ctx), 0);
    ck_assert_int_eq(px_ctx_destroy(ctx), 0);
    px_ctx_opts bad = {.max_iov = 3};
    ck_assert_int_eq(px_ctx_create(&bad, &ctx), -PX_EINVAL);
    ck_assert_int_eq(px_ctx_create(NULL, NULL), -PX_EINVAL);
    ck_assert_int_eq(px_ctx_destroy(NULL), -PX_EINVAL);
}
END_TEST

START_TEST(ctx_run_timeout_and_timers)
{
    px_ctx *ctx;
    px_timer *once, *rep;
    int n_once = 0, n_rep = 0;
    ck_assert_int_eq(px_ctx_create(NULL, &ctx), 0);
    ck_assert_int_eq(px_timer_create(ctx, count_timer, &n_once, &once), 0);
    ck_assert_int_eq(px_timer_create(ctx, count_timer, &n_rep, &rep), 0);
    ck_assert_int_eq(px_timer_start(once, 1000, 0), 0);
    ck_assert_int_eq(px_timer_start(rep, 2000, 5000), 0);
    uint64_t t0 = px_now_ns();
    ck_assert_int_eq(px_ctx_run_timeout(ctx, 60), -PX_ETIMEDOUT);
    ck_assert_uint_ge(px_now_ns() - t0, 55u * 1000 * 1000);
    ck_assert_int_eq(n_once, 1);
    ck_assert_int_ge(n_rep, 5); /* 2, 7, 12, ... ms within 60 ms */
    ck_assert_int_eq(px_timer_stop(rep), 0);
    int seen = n_rep;
    ck_assert_int_eq(px_ctx_run_timeout(ctx, 20), -PX_ETIMEDOUT);
    ck_assert_int_eq(n_rep, seen);
    px_timer_destroy(once);
    px_timer_destroy(rep);
    ck_assert_int_eq(px_ctx_destroy(ctx), 0);
}
END_TEST

/* The timeout counts from the call, not from where the loop's clock
 * stood when it last ran: time spent outside the loop does not use it. */
START_TEST(ctx_run_timeout_counts_from_the_call)
{
    px_ctx *ctx;
    ck_assert_int_eq(px_ctx_create(NULL, &ctx), 0);
    ck_assert_int_eq(px_ctx_run_timeout(ctx, 1), -PX_ETIMEDOUT);
    struct timespec away = {0, 80 * 1000 * 1000};
    nanosleep(&away, NULL); /* the application busy elsewhere */
    uint64_t t0 = px_now_ns();
    ck_assert_int_eq(px_ctx_run_timeout(ctx, 40), -PX_ETIMEDOUT);
    ck_assert_uint_ge(px_now_ns() - t0, 35u * 1000 * 1000);
    ck_assert_int_eq(px_ctx_destroy(ctx), 0);
}
END_TEST

START_TEST(ctx_stop_from_a_timer_ends_run)
{
    px_ctx *ctx;
    px_timer *t;
    ck_assert_int_eq(px_ctx_create(NULL, &ctx), 0);
    ck_assert_int_eq(px_timer_create(ctx, stop_timer, ctx, &t), 0);
    ck_assert_int_eq(px_timer_start(t, 2000, 0), 0);
    ck_assert_int_eq(px_ctx_run(ctx), 0);
    px_timer_destroy(t);
    ck_assert_int_eq(px_ctx_destroy(ctx), 0);
}
END_TEST

/* Posted work from several threads: every item runs once, on the context's
 * thread, and each poster's items run in posting order. */
#define POSTERS 4
#define POSTS   2000

struct post_state {
    px_ctx *ctx;
    pthread_t loop_thread;
    int last[POSTERS];
    int ran, out_of_order, wrong_thread;
};

struct post_item {
    struct post_state *st;
    int poster, seq;
};

static struct post_item items[POSTERS][POSTS];

static void posted(void *arg)
{
    struct post_item *it = arg;
    struct post_state *st = it->st;
    if (!pthread_equal(pthread_self(), st->loop_thread))
        st->wrong_thread++;
    if (it->seq != st->last[it->poster] + 1)
        st->out_of_order++;
    st->last[it->poster] = it->seq;
    if (++st->ran == POSTERS * POSTS)
        px_ctx_stop(st->ctx);
}

static void *poster(void *arg)
{
    struct post_item *row = arg;
    for (int i = 0; i < POSTS; i++)
        if (px_ctx_post(row[i].st->ctx, posted, &row[i]) != 0)
            return (void *)1;
    return NULL;
}

START_TEST(ctx_post_from_threads)
{
    static struct post_state st;
    ck_assert_int_eq(px_ctx_create(NULL, &st.ctx), 0);
    st.loop_thread = pthread_self();
    for (int p = 0; p < POSTERS; p++) {
        st.last[p] = -1;
        for (int i = 0; i < POSTS; i++)
            items[p][i] = (struct post_item){&st, p, i};
    }
    pthread_t th[POSTERS];
    for (int p = 0; p < POSTERS; p++)
        ck_assert_int_eq(pthread_create(&th[p], NULL, poster, items[p]), 0);
    ck_assert_int_eq(px_ctx_run_timeout(st.ctx, 20000), 0);
    for (int p = 0; p < POSTERS; p++) {
        void *rv;
        pthread_join(th[p], &rv);
        ck_assert_ptr_null(rv);
    }
    ck_assert_int_eq(st.ran, POSTERS * POSTS);
    ck_assert_int_eq(st.out_of_order, 0);
    ck_assert_int_eq(st.wrong_thread, 0);
    ck_assert_int_eq(px_ctx_post(st.ctx, NULL, NULL), -PX_EINVAL);
    ck_assert_int_eq(px_ctx_destroy(st.ctx), 0);
}
END_TEST

static void *stopper(void *arg)
{
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    px_ctx_stop(arg);
    return NULL;
}

START_TEST(ctx_stop_from_another_thread)
{
    px_ctx *ctx;
    pthread_t th;
    ck_assert_int_eq(px_ctx_create(NULL, &ctx), 0);
    ck_assert_int_eq(pthread_create(&th, NULL, stopper, ctx), 0);
    ck_assert_int_eq(px_ctx_run_timeout(ctx, 10000), 0); /* 0: stopped, not timed out */
    pthread_join(th, NULL);
    ck_assert_int_eq(px_ctx_destroy(ctx), 0);
}
END_TEST

START_TEST(ctx_poll_and_polling_mode)
{
    px_ctx_opts o = {.poll_us = 200};
    px_ctx *ctx;
    px_timer *t;
    int fired = 0;
    ck_assert_int_eq(px_ctx_create(&o, &ctx), 0);
    ck_assert_int_eq(px_ctx_poll(ctx), 0); /* nothing ready */
    ck_assert_int_eq(px_timer_create(ctx, count_timer, &fired, &t), 0);
    ck_assert_int_eq(px_timer_start(t, 0, 0), 0);
    int handled = 0;
    for (int i = 0; i < 1000 && !fired; i++)
        handled += px_ctx_poll(ctx);
    ck_assert_int_eq(fired, 1);
    ck_assert_int_ge(handled, 1);
    /* Polling mode still ends on a timeout and still fires timers. */
    ck_assert_int_eq(px_timer_start(t, 5000, 0), 0);
    ck_assert_int_eq(px_ctx_run_timeout(ctx, 30), -PX_ETIMEDOUT);
    ck_assert_int_eq(fired, 2);
    px_timer_destroy(t);
    ck_assert_int_eq(px_ctx_destroy(ctx), 0);
}
END_TEST

static const px_session_ops no_ops;

START_TEST(ctx_destroy_refused_while_objects_live)
{
    px_ctx *ctx;
    px_server *srv;
    ck_assert_int_eq(px_ctx_create(NULL, &ctx), 0);
    ck_assert_int_eq(px_server_bind(ctx, "tcp://127.0.0.1:0", &no_ops, NULL, &srv), 0);
    ck_assert_int_eq(px_ctx_destroy(ctx), -PX_EBUSY);
    ck_assert_int_eq(px_server_unbind(srv), 0);
    ck_assert_int_eq(px_ctx_fd(ctx), -PX_ENOSYS); /* documented as not yet available */
    ck_assert_int_eq(px_ctx_destroy(ctx), 0);
}
END_TEST

PX_CHECK_MAIN("ctx", ctx_create_destroy_and_bad_options, ctx_run_timeout_and_timers,
              ctx_run_timeout_counts_from_the_call, ctx_stop_from_a_timer_ends_run,
              ctx_post_from_threads, ctx_stop_from_another_thread, ctx_poll_and_polling_mode,
              ctx_destroy_refused_while_objects_live)
