/* The context: loop control, timers, posts and stops from other threads,
 * polling mode, refusal to die while objects live, and driving it from the
 * application's own loop (px_ctx_fd, px_ctx_arm, px_ctx_timeout) with
 * epoll, poll or libev. Also run under ThreadSanitizer by scripts/test.sh. */
#include <check.h>
#include <ev.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/ctx.h" /* px_ctx_defer: deferred work, as the session layer makes it */
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

/* A run's timeout that falls inside a busy-polling spin ends the run: it
 * does not go on to sleep until the next timer (here 20 s away). */
START_TEST(ctx_run_timeout_inside_a_spin)
{
    px_ctx_opts o = {.poll_us = 50000};
    px_ctx *ctx;
    px_timer *t;
    int fired = 0;
    ck_assert_int_eq(px_ctx_create(&o, &ctx), 0);
    ck_assert_int_eq(px_timer_create(ctx, count_timer, &fired, &t), 0);
    ck_assert_int_eq(px_timer_start(t, 20000, 0), 0);
    uint64_t t0 = px_now_ns();
    ck_assert_int_eq(px_ctx_run_timeout(ctx, 5), -PX_ETIMEDOUT);
    uint64_t took_ms = (px_now_ns() - t0) / 1000000u;
    ck_assert_int_eq(fired, 0);
    ck_assert_msg(took_ms < 10000, "px_ctx_run_timeout(5 ms) of a polling context took %llu ms",
                  (unsigned long long)took_ms);
    px_timer_destroy(t);
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
    ck_assert_int_ge(px_ctx_fd(ctx), 0); /* there is one now: see the ctx_fd_* tests */
    ck_assert_int_eq(px_ctx_destroy(ctx), 0);
}
END_TEST

/* ---- driving the context from the application's loop ------------------------------- */

static int fd_readable(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

static uint64_t ms_since(uint64_t t0)
{
    return (px_now_ns() - t0) / 1000000u;
}

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void set_flag(void *arg)
{
    *(int *)arg = 1;
}

struct delayed_post {
    px_ctx *ctx;
    int *flag;
    int stop; /* px_ctx_stop instead of a post */
};

static void *post_later(void *arg)
{
    struct delayed_post *d = arg;
    nap_ms(30);
    if (d->stop)
        px_ctx_stop(d->ctx);
    else if (px_ctx_post(d->ctx, set_flag, d->flag) != 0)
        return (void *)1;
    return NULL;
}

/* The fd is libev's epoll fd; a post or a stop from another thread makes
 * it readable (level: until handled), px_ctx_poll handles it and it is
 * quiet again. */
START_TEST(ctx_fd_readable_on_post_from_thread)
{
    px_ctx *ctx;
    int ran = 0;
    ck_assert_int_eq(px_ctx_create(NULL, &ctx), 0);
    int fd = px_ctx_fd(ctx);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(px_ctx_fd(ctx), fd); /* the same for the context's life */
    char path[64], what[64] = "";
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    ck_assert_int_gt(readlink(path, what, sizeof(what) - 1), 0);
    ck_assert_str_eq(what, "anon_inode:[eventpoll]");

    ck_assert_int_eq(px_ctx_arm(ctx), 0);
    ck_assert(!fd_readable(fd, 0));
    pthread_t th;
    struct delayed_post d = {ctx, &ran, 0};
    ck_assert_int_eq(pthread_create(&th, NULL, post_later, &d), 0);
    ck_assert(fd_readable(fd, 5000)); /* woken by the other thread's post */
    void *rv;
    pthread_join(th, &rv);
    ck_assert_ptr_null(rv);
    ck_assert_int_eq(ran, 0);             /* nothing runs until polled */
    ck_assert(fd_readable(fd, 0));        /* level-triggered: still readable */
    ck_assert_int_eq(px_ctx_arm(ctx), 1); /* and arm will not let us sleep */
    ck_assert_int_eq(px_ctx_timeout(ctx), 0);
    ck_assert_int_gt(px_ctx_poll(ctx), 0);
    ck_assert_int_eq(ran, 1);
    ck_assert(!fd_readable(fd, 0));
    ck_assert_int_eq(px_ctx_arm(ctx), 0);

    /* A stop wakes the fd too; px_ctx_run then returns at once. */
    d.stop = 1;
    ck_assert_int_eq(pthread_create(&th, NULL, post_later, &d), 0);
    ck_assert(fd_readable(fd, 5000));
    pthread_join(th, NULL);
    ck_assert_int_ge(px_ctx_poll(ctx), 0);
    ck_assert(!fd_readable(fd, 0));
    ck_assert_int_eq(px_ctx_run_timeout(ctx, 5000), 0);
    ck_assert_int_eq(px_ctx_destroy(ctx), 0);
}
END_TEST

/* A loop on another libev backend has no epoll fd to give: a clear error,
 * and the context still runs. */
START_TEST(ctx_fd_unavailable_without_epoll)
{
    px_ctx *ctx;
    px_timer *t;
    int fired = 0;
    setenv("LIBEV_FLAGS", "1", 1); /* EVBACKEND_SELECT */
    ck_assert_int_eq(px_ctx_create(NULL, &ctx), 0);
    unsetenv("LIBEV_FLAGS");
    ck_assert_int_eq(px_ctx_fd(ctx), -PX_EOPNOTSUPP);
    ck_assert_int_eq(px_ctx_arm(ctx), -PX_EOPNOTSUPP);
    ck_assert_int_eq(px_timer_create(ctx, count_timer, &fired, &t), 0);
    ck_assert_int_eq(px_timer_start(t, 1000, 0), 0);
    ck_assert_int_eq(px_ctx_run_timeout(ctx, 20), -PX_ETIMEDOUT);
    ck_assert_int_eq(fired, 1);
    px_timer_destroy(t);
    ck_assert_int_eq(px_ctx_destroy(ctx), 0);
}
END_TEST

static void deferred_ran(px_deferred *d)
{
    d->fn = NULL; /* marks it run */
}

static int arm_from_cb = 1;
static void arm_inside(px_timer *t, void *ctx)
{
    arm_from_cb = px_ctx_arm(ctx);
}

/* px_ctx_arm says 1 while there is work the fd would not announce, and 0
 * only when idle. */
START_TEST(ctx_arm_refuses_while_work_pending)
{
    px_ctx *ctx;
    px_timer *t;
    int ran = 0, fired = 0;
    ck_assert_int_eq(px_ctx_create(NULL, &ctx), 0);
    ck_assert_int_eq(px_ctx_arm(NULL), -PX_EINVAL);
    ck_assert_int_eq(px_ctx_arm(ctx), 0);
    ck_assert_int_eq(px_ctx_arm(ctx), 0); /* idle stays idle */

    /* A post, even from the context's own thread, not yet run. */
    ck_assert_int_eq(px_ctx_post(ctx, set_flag, &ran), 0);
    ck_assert_int_eq(px_ctx_arm(ctx), 1);
    ck_assert_int_eq(px_ctx_arm(ctx), 1); /* still: arm does not run it */
    ck_assert_int_gt(px_ctx_poll(ctx), 0);
    ck_assert_int_eq(ran, 1);
    ck_assert_int_eq(px_ctx_arm(ctx), 0);

    /* Deferred work (completions the session layer delivers from the loop). */
    px_deferred d;
    px_deferred_init(&d, deferred_ran);
    px_ctx_defer(ctx, &d);
    ck_assert_int_eq(px_ctx_arm(ctx), 1);
    ck_assert_int_eq(px_ctx_timeout(ctx), 0);
    ck_assert_int_ge(px_ctx_poll(ctx), 1);
    ck_assert_ptr_null(d.fn);
    ck_assert_int_eq(px_ctx_arm(ctx), 0);

    /* A due timer: 1, and the next poll runs it. */
    ck_assert_int_eq(px_timer_create(ctx, count_timer, &fired, &t), 0);
    ck_assert_int_eq(px_timer_start(t, 0, 0), 0);
    ck_assert_int_eq(px_ctx_arm(ctx), 1);
    ck_assert_int_eq(px_ctx_timeout(ctx), 0);
    ck_assert_int_gt(px_ctx_poll(ctx), 0);
    ck_assert_int_eq(fired, 1);
    ck_assert_int_eq(px_ctx_arm(ctx), 0);
    px_timer_destroy(t);

    /* Not from inside a callback. */
    ck_assert_int_eq(px_timer_create(ctx, arm_inside, ctx, &t), 0);
    ck_assert_int_eq(px_timer_start(t, 0, 0), 0);
    ck_assert_int_eq(px_ctx_run_timeout(ctx, 20), -PX_ETIMEDOUT);
    ck_assert_int_eq(arm_from_cb, -PX_EBUSY);
    px_timer_destroy(t);

    /* Polling mode: while poll_us has not passed since work, keep polling. */
    px_ctx *pc;
    px_ctx_opts o = {.poll_us = 50000};
    ck_assert_int_eq(px_ctx_create(&o, &pc), 0);
    ck_assert_int_eq(px_ctx_post(pc, set_flag, &ran), 0);
    ck_assert_int_gt(px_ctx_poll(pc), 0);
    ck_assert_int_eq(px_ctx_arm(pc), 1);
    nap_ms(60);
    ck_assert_int_eq(px_ctx_arm(pc), 0);
    ck_assert_int_eq(px_ctx_destroy(pc), 0);
    ck_assert_int_eq(px_ctx_destroy(ctx), 0);
}
END_TEST

struct countdown {
    int n, done;
};

static void countdown_timer(px_timer *t, void *arg)
{
    struct countdown *c = arg;
    if (--c->n == 0)
        c->done = 1;
}

/* Sleep on the fd for px_ctx_timeout() and poll, until *done or `limit_ms`. */
static void sleep_loop_until(px_ctx *ctx, const int *done, int limit_ms, int *saw_forever)
{
    uint64_t t0 = px_now_ns();
    int fd = px_ctx_fd(ctx);
    while (!*done && ms_since(t0) < (uint64_t)limit_ms) {
        if (px_ctx_arm(ctx) == 0) {
            int ms = px_ctx_timeout(ctx);
            if (ms < 0) {
                *saw_forever = 1; /* would have slept for ever: cap it so the test ends */
                ms = limit_ms;
            }
            fd_readable(fd, ms);
        }
        px_ctx_poll(ctx);
    }
}

/* px_ctx_timeout: -1 with no timer, the time to the earliest one else, 0
 * with work pending; sleeping on the fd for it fires the timer on time. */
START_TEST(ctx_timeout_follows_timers)
{
    px_ctx *ctx;
    px_timer *t, *t2;
    int fired = 0, fired2 = 0, forever = 0;
    ck_assert_int_eq(px_ctx_create(NULL, &ctx), 0);
    ck_assert_int_eq(px_ctx_timeout(NULL), -PX_EINVAL);
    ck_assert_int_eq(px_ctx_arm(ctx), 0);
    ck_assert_int_eq(px_ctx_timeout(ctx), -1);
    ck_assert_int_eq(px_timer_create(ctx, count_timer, &fired, &t), 0);
    ck_assert_int_eq(px_timer_create(ctx, count_timer, &fired2, &t2), 0);
    ck_assert_int_eq(px_timer_start(t, 200000, 0), 0);
    ck_assert_int_eq(px_ctx_arm(ctx), 0);
    int ms = px_ctx_timeout(ctx);
    ck_assert_int_gt(ms, 0);
    ck_assert_int_le(ms, 200);
    /* The earliest of several counts, whichever started first. */
    ck_assert_int_eq(px_timer_start(t2, 20000, 0), 0);
    ck_assert_int_le(px_ctx_timeout(ctx), 20);
    ck_assert_int_eq(px_timer_stop(t2), 0);
    ck_assert_int_gt(px_ctx_timeout(ctx), 20);
    ck_assert_int_eq(px_timer_stop(t), 0);
    ck_assert_int_eq(px_ctx_timeout(ctx), -1);

    /* Work pending: 0. */
    ck_assert_int_eq(px_ctx_post(ctx, set_flag, &fired2), 0);
    ck_assert_int_eq(px_ctx_timeout(ctx), 0);
    ck_assert_int_gt(px_ctx_poll(ctx), 0);

    /* Sleeping on the fd for the timeout fires the timer, not early. */
    ck_assert_int_eq(px_timer_start(t, 50000, 0), 0);
    uint64_t t0 = px_now_ns();
    sleep_loop_until(ctx, &fired, 5000, &forever);
    ck_assert_int_eq(fired, 1);
    ck_assert_int_eq(forever, 0);
    ck_assert_uint_ge(px_now_ns() - t0, 50u * 1000 * 1000);
    ck_assert_uint_lt(ms_since(t0), 1000);
    ck_assert_int_eq(px_ctx_arm(ctx), 0);
    ck_assert_int_eq(px_ctx_timeout(ctx), -1); /* the one-shot is done */

    /* A repeating timer keeps a deadline. */
    struct countdown cd = {3, 0};
    px_timer *t3;
    ck_assert_int_eq(px_timer_create(ctx, countdown_timer, &cd, &t3), 0);
    ck_assert_int_eq(px_timer_start(t3, 10000, 10000), 0);
    t0 = px_now_ns();
    sleep_loop_until(ctx, &cd.done, 5000, &forever);
    ck_assert_int_eq(cd.done, 1);
    ck_assert_int_eq(forever, 0);
    ck_assert_uint_ge(px_now_ns() - t0, 30u * 1000 * 1000);
    ck_assert_uint_lt(ms_since(t0), 1000);
    ck_assert_int_eq(px_ctx_arm(ctx), 0);
    ck_assert_int_le(px_ctx_timeout(ctx), 10);
    ck_assert_int_ge(px_ctx_timeout(ctx), 0);
    px_timer_destroy(t3);
    px_timer_destroy(t);
    px_timer_destroy(t2);
    ck_assert_int_eq(px_ctx_timeout(ctx), -1);
    ck_assert_int_eq(px_ctx_destroy(ctx), 0);
}
END_TEST

/* The session layer's timers count: a connection whose handshake never
 * completes (the peer accepts the TCP connection but never answers) ends
 * after handshake_timeout_ms, with the application sleeping on the fd for
 * px_ctx_timeout() only. */
struct ev_log {
    int disconnected, torn_down, established, reason;
};

static void log_event(px_session *s, const px_event *ev, void *user)
{
    struct ev_log *l = user;
    if (ev->type == PX_EV_CONN_DISCONNECTED) {
        l->disconnected = 1;
        l->reason = ev->reason;
    }
    if (ev->type == PX_EV_CONN_ESTABLISHED)
        l->established = 1;
    if (ev->type == PX_EV_SESSION_TEARDOWN)
        l->torn_down = 1;
}

static const px_session_ops log_ops = {.on_session_event = log_event};

START_TEST(ctx_timeout_counts_session_timers)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(lfd, 4), 0); /* never accepted: the kernel completes the connect */
    ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
    char uri[64];
    snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", ntohs(sa.sin_port));

    px_ctx_opts o = {.handshake_timeout_ms = 300};
    px_ctx *ctx;
    px_session *s;
    px_conn *c;
    struct ev_log log = {0};
    int forever = 0;
    ck_assert_int_eq(px_ctx_create(&o, &ctx), 0);
    px_session_params p = {.uri = uri, .ops = &log_ops, .user = &log};
    ck_assert_int_eq(px_session_create(ctx, &p, &s), 0);
    uint64_t t0 = px_now_ns();
    ck_assert_int_eq(px_connect(s, ctx, &c), 0);
    ck_assert_int_le(px_ctx_timeout(ctx), 300);
    sleep_loop_until(ctx, &log.disconnected, 3000, &forever);
    ck_assert_int_eq(log.disconnected, 1);
    ck_assert_int_eq(log.reason, -PX_ETIMEDOUT);
    ck_assert_int_eq(forever, 0);
    ck_assert_uint_ge(ms_since(t0), 290);
    ck_assert_uint_lt(ms_since(t0), 2000);
    px_session_close(s);
    sleep_loop_until(ctx, &log.torn_down, 3000, &forever);
    ck_assert_int_eq(log.torn_down, 1);
    ck_assert_int_eq(px_ctx_destroy(ctx), 0);
    close(lfd);
}
END_TEST

/* Caller-owned nodes from several threads, the context driven by an epoll
 * loop on its fd: every node runs exactly once, each thread's in order. */
#define NODE_POSTERS 4
#define NODE_POSTS   10000

struct node_item {
    px_post_node node;
    struct node_state *st;
    int poster, seq;
};

struct node_state {
    px_ctx *ctx;
    int last[NODE_POSTERS];
    int ran, out_of_order, twice;
    unsigned char seen[NODE_POSTERS][NODE_POSTS];
};

static struct node_item node_items[NODE_POSTERS][NODE_POSTS];

static void node_posted(void *arg)
{
    struct node_item *it = arg;
    struct node_state *st = it->st;
    if (st->seen[it->poster][it->seq]++)
        st->twice++;
    if (it->seq != st->last[it->poster] + 1)
        st->out_of_order++;
    st->last[it->poster] = it->seq;
    st->ran++;
}

static void *node_poster(void *arg)
{
    struct node_item *row = arg;
    for (int i = 0; i < NODE_POSTS; i++)
        if (px_ctx_post_node(row[i].st->ctx, &row[i].node, node_posted, &row[i]) != 0)
            return (void *)1;
    return NULL;
}

START_TEST(ctx_post_node_from_threads_under_epoll)
{
    static struct node_state st;
    ck_assert_int_eq(px_ctx_create(NULL, &st.ctx), 0);
    for (int p = 0; p < NODE_POSTERS; p++) {
        st.last[p] = -1;
        for (int i = 0; i < NODE_POSTS; i++)
            node_items[p][i] = (struct node_item){.st = &st, .poster = p, .seq = i};
    }
    ck_assert_int_eq(px_ctx_post_node(st.ctx, NULL, node_posted, NULL), -PX_EINVAL);
    ck_assert_int_eq(px_ctx_post_node(st.ctx, &node_items[0][0].node, NULL, NULL), -PX_EINVAL);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN};
    ck_assert_int_eq(epoll_ctl(ep, EPOLL_CTL_ADD, px_ctx_fd(st.ctx), &ev), 0);

    pthread_t th[NODE_POSTERS];
    for (int p = 0; p < NODE_POSTERS; p++)
        ck_assert_int_eq(pthread_create(&th[p], NULL, node_poster, node_items[p]), 0);
    uint64_t t0 = px_now_ns();
    unsigned sleeps = 0;
    while (st.ran < NODE_POSTERS * NODE_POSTS && ms_since(t0) < 20000) {
        if (px_ctx_arm(st.ctx) == 0) {
            struct epoll_event out;
            /* No timer runs: -1, for ever, unless a post wakes us (or
             * 0: one came since arm). The cap only ends a broken test. */
            int ms = px_ctx_timeout(st.ctx);
            ck_assert(ms == -1 || ms == 0);
            epoll_wait(ep, &out, 1, 20000);
            sleeps++;
        }
        px_ctx_poll(st.ctx);
    }
    for (int p = 0; p < NODE_POSTERS; p++) {
        void *rv;
        pthread_join(th[p], &rv);
        ck_assert_ptr_null(rv);
    }
    ck_assert_uint_lt(ms_since(t0), 20000);
    ck_assert_int_eq(st.ran, NODE_POSTERS * NODE_POSTS);
    ck_assert_int_eq(st.twice, 0);
    ck_assert_int_eq(st.out_of_order, 0);
    /* Nothing more arrives, and the fd is quiet. */
    ck_assert_int_ge(px_ctx_poll(st.ctx), 0);
    ck_assert_int_eq(px_ctx_arm(st.ctx), 0);
    ck_assert(!fd_readable(px_ctx_fd(st.ctx), 0));
    ck_assert_int_eq(st.ran, NODE_POSTERS * NODE_POSTS);
    close(ep);
    ck_assert_int_eq(px_ctx_destroy(st.ctx), 0);
}
END_TEST

/* A node posted again from inside its own function: more times than one
 * wake-up runs (1024), so the loop also comes back for the rest. */
struct again {
    px_post_node node;
    px_ctx *ctx;
    int n, target, rc;
};

static void post_again(void *arg)
{
    struct again *a = arg;
    if (++a->n < a->target)
        a->rc |= px_ctx_post_node(a->ctx, &a->node, post_again, a);
    else
        px_ctx_stop(a->ctx);
}

START_TEST(ctx_post_node_reused_from_its_fn)
{
    static struct again a = {.target = 5000};
    ck_assert_int_eq(px_ctx_create(NULL, &a.ctx), 0);
    ck_assert_int_eq(px_ctx_post_node(a.ctx, &a.node, post_again, &a), 0);
    ck_assert_int_eq(px_ctx_arm(a.ctx), 1);
    ck_assert_int_eq(px_ctx_run_timeout(a.ctx, 10000), 0);
    ck_assert_int_eq(a.n, a.target);
    ck_assert_int_eq(a.rc, 0);
    ck_assert_int_eq(px_ctx_arm(a.ctx), 1); /* the stop's wake-up, not yet handled */
    ck_assert_int_ge(px_ctx_poll(a.ctx), 0);
    ck_assert_int_eq(px_ctx_arm(a.ctx), 0);
    /* Reused after its run, too; and dropped, not run, at destroy. */
    a.target = a.n + 2;
    ck_assert_int_eq(px_ctx_post_node(a.ctx, &a.node, post_again, &a), 0);
    ck_assert_int_eq(px_ctx_destroy(a.ctx), 0);
    ck_assert_int_eq(a.n, a.target - 2);
}
END_TEST

/* ---- a real request/reply, driven by epoll alone ------------------------------------ */

/* The application's loop: one or two contexts in one epoll set, each
 * driven only by px_ctx_fd, px_ctx_arm, px_ctx_timeout and px_ctx_poll. */
struct app_loop {
    int ep, n;
    px_ctx *ctx[2];
    unsigned sleeps;
};

static void app_loop_init(struct app_loop *l, px_ctx *a, px_ctx *b)
{
    l->ep = epoll_create1(EPOLL_CLOEXEC);
    l->ctx[0] = a;
    l->ctx[1] = b;
    l->n = b ? 2 : 1;
    l->sleeps = 0;
    for (int i = 0; i < l->n; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = l->ctx[i]};
        ck_assert_int_ge(px_ctx_fd(l->ctx[i]), 0);
        ck_assert_int_eq(epoll_ctl(l->ep, EPOLL_CTL_ADD, px_ctx_fd(l->ctx[i]), &ev), 0);
    }
}

/* Every context must agree to sleep; then wait for the earliest timeout
 * (capped at cap_ms, so a lost wake-up shows as a slow test, not a hung
 * one), then poll them all. */
static void app_loop_turn(struct app_loop *l, int cap_ms)
{
    int may_sleep = 1, ms = -1;
    for (int i = 0; i < l->n; i++) {
        int r = px_ctx_arm(l->ctx[i]);
        ck_assert_int_ge(r, 0);
        may_sleep &= r == 0;
    }
    if (may_sleep) {
        for (int i = 0; i < l->n; i++) {
            int t = px_ctx_timeout(l->ctx[i]);
            if (t >= 0 && (ms < 0 || t < ms))
                ms = t;
        }
        if (ms < 0 || ms > cap_ms)
            ms = cap_ms;
        struct epoll_event out[2];
        epoll_wait(l->ep, out, 2, ms);
        l->sleeps++;
    }
    for (int i = 0; i < l->n; i++)
        ck_assert_int_ge(px_ctx_poll(l->ctx[i]), 0);
}

static int app_loop_idle(struct app_loop *l)
{
    for (int i = 0; i < l->n; i++)
        if (px_ctx_arm(l->ctx[i]) != 0)
            return 0;
    return 1;
}

static void echo_request(px_conn *c, px_msg *req, int more, void *user)
{
    req->out = (px_msg_vec){.iov = req->in.iov, .iov_count = req->in.iov_count};
    if (px_send_response(req) != 0)
        px_release_msg(req);
}

static const px_session_ops echo_ops = {.on_msg = echo_request};

struct rr_client {
    struct ev_log log;
    px_conn *conn;
    px_msg req;
    px_iov iov;
    char text[32];
    int sent, done, total, errors;
};

static void rr_send(struct rr_client *cl)
{
    memset(&cl->req, 0, sizeof(cl->req));
    cl->iov = (px_iov){.base = cl->text,
                       .len = (size_t)snprintf(cl->text, sizeof(cl->text), "ping %d", cl->sent)};
    cl->req.out = (px_msg_vec){.iov = &cl->iov, .iov_count = 1};
    if (px_send_request(cl->conn, &cl->req) != 0)
        cl->errors++;
    cl->sent++;
}

static void rr_reply(px_conn *c, px_msg *m, int more, void *user)
{
    struct rr_client *cl = user;
    char want[32];
    int n = snprintf(want, sizeof(want), "ping %d", cl->sent - 1);
    if (m->in.iov_count != 1 || m->in.iov[0].len != (size_t)n || memcmp(m->in.iov[0].base, want, n))
        cl->errors++;
    px_release_response(m);
    if (++cl->done < cl->total)
        rr_send(cl);
}

static void rr_error(px_conn *c, px_msg *m, px_msg_dir dir, int reason, void *user)
{
    ((struct rr_client *)user)->errors++;
}

static void rr_event(px_session *s, const px_event *ev, void *user)
{
    log_event(s, ev, user); /* struct rr_client begins with its ev_log */
}

static const px_session_ops rr_ops = {
    .on_msg = rr_reply, .on_msg_error = rr_error, .on_session_event = rr_event};

/* A server context on a thread of its own, run by px_ctx_run. */
struct bg_server {
    const char *bind_uri;
    char uri[256];
    px_ctx *ctx;
    px_server *srv;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int state; /* 0 starting, 1 serving, -1 failed */
    int destroy_rc;
    /* Every SLOW_EVERY-th request is answered SLOW_US late: the client
     * then surely runs out of work and sleeps on its fd, where a server
     * thread answering at once may keep it busy the whole run. */
    px_timer *late;
    px_msg *held;
    unsigned requests;
};

enum { SLOW_EVERY = 50, SLOW_US = 2000 };

static void answer_late(px_timer *t, void *arg)
{
    struct bg_server *bg = arg;
    px_msg *req = bg->held;
    bg->held = NULL;
    echo_request(NULL, req, 0, NULL);
}

static void slow_echo(px_conn *c, px_msg *req, int more, void *user)
{
    struct bg_server *bg = user;
    if (++bg->requests % SLOW_EVERY || bg->held) {
        echo_request(c, req, more, NULL);
        return;
    }
    bg->held = req;
    px_timer_start(bg->late, SLOW_US, 0);
}

static const px_session_ops slow_echo_ops = {.on_msg = slow_echo};

static void bg_server_ready(struct bg_server *bg, int state)
{
    pthread_mutex_lock(&bg->lock);
    bg->state = state;
    pthread_cond_signal(&bg->cond);
    pthread_mutex_unlock(&bg->lock);
}

static void *bg_server_main(void *arg)
{
    struct bg_server *bg = arg;
    if (px_ctx_create(NULL, &bg->ctx) != 0 ||
        px_timer_create(bg->ctx, answer_late, bg, &bg->late) != 0 ||
        px_server_bind(bg->ctx, bg->bind_uri, &slow_echo_ops, bg, &bg->srv) != 0 ||
        px_server_uri(bg->srv, bg->uri, sizeof(bg->uri)) <= 0) {
        bg_server_ready(bg, -1);
        return NULL;
    }
    bg_server_ready(bg, 1);
    px_ctx_run(bg->ctx);
    px_timer_destroy(bg->late);
    bg->destroy_rc = px_ctx_destroy(bg->ctx);
    return NULL;
}

/* Posted to the server's thread: unbind there, then end its run. */
static void bg_server_end(void *arg)
{
    struct bg_server *bg = arg;
    px_server_unbind(bg->srv);
    px_ctx_stop(bg->ctx);
}

/* 500 round trips with a client context driven by epoll alone; its server
 * either a second context in the same thread and epoll set, or one run by
 * px_ctx_run on another thread (then replies wake the client's sleep on
 * its fd, surely those the server gives late). */
static void epoll_request_reply(const char *bind_uri, int threaded)
{
    px_ctx *sctx = NULL, *cctx;
    px_server *srv = NULL;
    px_session *s;
    char uri[256];
    static struct rr_client cl;
    static struct bg_server bg;
    pthread_t th;
    memset(&cl, 0, sizeof(cl));
    cl.total = 500;
    if (threaded) {
        bg = (struct bg_server){.bind_uri = bind_uri};
        pthread_mutex_init(&bg.lock, NULL);
        pthread_cond_init(&bg.cond, NULL);
        ck_assert_int_eq(pthread_create(&th, NULL, bg_server_main, &bg), 0);
        pthread_mutex_lock(&bg.lock);
        while (bg.state == 0)
            pthread_cond_wait(&bg.cond, &bg.lock);
        pthread_mutex_unlock(&bg.lock);
        ck_assert_int_eq(bg.state, 1);
        snprintf(uri, sizeof(uri), "%s", bg.uri);
    } else {
        ck_assert_int_eq(px_ctx_create(NULL, &sctx), 0);
        ck_assert_int_eq(px_server_bind(sctx, bind_uri, &echo_ops, NULL, &srv), 0);
        ck_assert_int_gt(px_server_uri(srv, uri, sizeof(uri)), 0);
    }
    ck_assert_int_eq(px_ctx_create(NULL, &cctx), 0);
    px_session_params p = {.uri = uri, .ops = &rr_ops, .user = &cl};
    ck_assert_int_eq(px_session_create(cctx, &p, &s), 0);
    ck_assert_int_eq(px_connect(s, cctx, &cl.conn), 0);
    struct app_loop l;
    app_loop_init(&l, cctx, sctx);

    /* A lost wake-up would leave a round trip waiting for the next
     * keepalive tick (5 s) or the cap: 500 of them take milliseconds. */
    uint64_t t0 = px_now_ns();
    rr_send(&cl);
    while (cl.done < cl.total && !cl.log.disconnected && ms_since(t0) < 10000)
        app_loop_turn(&l, 2000);
    ck_assert_int_eq(cl.done, cl.total);
    ck_assert_int_eq(cl.errors, 0);
    ck_assert_int_eq(cl.log.established, 1);
    ck_assert_uint_lt(ms_since(t0), 3000);
    if (threaded)
        ck_assert_uint_gt(l.sleeps, 0); /* it slept on the fd for replies */
    /* Idle now: the application may sleep within a few turns (no busy
     * loop), and the fds are quiet. */
    int turns = 0;
    while (turns < 50 && !app_loop_idle(&l)) {
        app_loop_turn(&l, 2000);
        turns++;
    }
    ck_assert_int_lt(turns, 50);
    for (int i = 0; i < l.n; i++)
        ck_assert(!fd_readable(px_ctx_fd(l.ctx[i]), 0));

    px_session_close(s);
    if (srv)
        ck_assert_int_eq(px_server_unbind(srv), 0);
    t0 = px_now_ns();
    while (!cl.log.torn_down && ms_since(t0) < 5000)
        app_loop_turn(&l, 2000);
    ck_assert_int_eq(cl.log.torn_down, 1);
    close(l.ep);
    ck_assert_int_eq(px_ctx_destroy(cctx), 0);
    if (sctx)
        ck_assert_int_eq(px_ctx_destroy(sctx), 0);
    if (threaded) {
        ck_assert_int_eq(px_ctx_post(bg.ctx, bg_server_end, &bg), 0);
        pthread_join(th, NULL);
        ck_assert_int_eq(bg.destroy_rc, 0);
        pthread_mutex_destroy(&bg.lock);
        pthread_cond_destroy(&bg.cond);
    }
}

START_TEST(ctx_epoll_drives_tcp)
{
    epoll_request_reply("tcp://127.0.0.1:0", 0);
    epoll_request_reply("tcp://127.0.0.1:0", 1);
}
END_TEST

START_TEST(ctx_epoll_drives_unix)
{
    char uri[128];
    for (int threaded = 0; threaded < 2; threaded++) {
        snprintf(uri, sizeof(uri), "unix:///tmp/plexus-ctxfd-%d-%d.sock", (int)getpid(), threaded);
        epoll_request_reply(uri, threaded);
    }
}
END_TEST

/* shm's peer writes our eventfd only when we said we sleep: arm's
 * prepare pass is what says it. */
START_TEST(ctx_epoll_drives_shm)
{
    char uri[128];
    for (int threaded = 0; threaded < 2; threaded++) {
        snprintf(uri, sizeof(uri), "shm://plexus-ctxfd-%d-%d", (int)getpid(), threaded);
        epoll_request_reply(uri, threaded);
    }
}
END_TEST

/* ---- the context inside an application's own libev loop --------------------------- */

struct ev_app {
    px_ctx *ctx;
    struct ev_loop *loop;
    ev_io io;
    ev_prepare prep;
    ev_idle idle;
    ev_timer tm, guard;
    int fired, posted;
};

static void ev_app_poll(struct ev_app *a)
{
    px_ctx_poll(a->ctx);
    if (a->fired && a->posted)
        ev_break(a->loop, EVBREAK_ALL);
}

/* What context.h tells a libev application to do. */
static void ev_app_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    struct ev_app *a = w->data;
    ev_timer_stop(loop, &a->tm);
    if (px_ctx_arm(a->ctx) != 0) {
        ev_idle_start(loop, &a->idle);
    } else {
        ev_idle_stop(loop, &a->idle);
        int ms = px_ctx_timeout(a->ctx);
        if (ms >= 0) {
            ev_timer_set(&a->tm, ms / 1e3, 0.);
            ev_timer_start(loop, &a->tm);
        }
    }
}

static void ev_app_io(struct ev_loop *loop, ev_io *w, int revents)
{
    ev_app_poll(w->data);
}
static void ev_app_idle(struct ev_loop *loop, ev_idle *w, int revents)
{
    ev_app_poll(w->data);
}
static void ev_app_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    ev_app_poll(w->data);
}
static void ev_app_guard(struct ev_loop *loop, ev_timer *w, int revents)
{
    ev_break(loop, EVBREAK_ALL);
}

START_TEST(ctx_driven_from_a_libev_loop)
{
    static struct ev_app a;
    px_timer *t;
    ck_assert_int_eq(px_ctx_create(NULL, &a.ctx), 0);
    a.loop = ev_loop_new(EVFLAG_AUTO);
    ev_io_init(&a.io, ev_app_io, px_ctx_fd(a.ctx), EV_READ);
    ev_prepare_init(&a.prep, ev_app_prepare);
    ev_idle_init(&a.idle, ev_app_idle);
    ev_init(&a.tm, ev_app_timer);
    ev_timer_init(&a.guard, ev_app_guard, 5., 0.);
    a.io.data = a.prep.data = a.idle.data = a.tm.data = &a;
    ev_io_start(a.loop, &a.io);
    ev_prepare_start(a.loop, &a.prep);
    ev_timer_start(a.loop, &a.guard);

    ck_assert_int_eq(px_timer_create(a.ctx, count_timer, &a.fired, &t), 0);
    ck_assert_int_eq(px_timer_start(t, 40000, 0), 0);
    pthread_t th;
    struct delayed_post d = {a.ctx, &a.posted, 0};
    ck_assert_int_eq(pthread_create(&th, NULL, post_later, &d), 0);
    uint64_t t0 = px_now_ns();
    ev_run(a.loop, 0);
    pthread_join(th, NULL);
    ck_assert_int_eq(a.fired, 1);
    ck_assert_int_eq(a.posted, 1);
    ck_assert_uint_lt(ms_since(t0), 4000);
    px_timer_destroy(t);
    ev_loop_destroy(a.loop);
    ck_assert_int_eq(px_ctx_destroy(a.ctx), 0);
}
END_TEST

PX_CHECK_MAIN("ctx", ctx_create_destroy_and_bad_options, ctx_run_timeout_and_timers,
              ctx_run_timeout_counts_from_the_call, ctx_run_timeout_inside_a_spin,
              ctx_stop_from_a_timer_ends_run, ctx_post_from_threads, ctx_stop_from_another_thread,
              ctx_poll_and_polling_mode, ctx_destroy_refused_while_objects_live,
              ctx_fd_readable_on_post_from_thread, ctx_fd_unavailable_without_epoll,
              ctx_arm_refuses_while_work_pending, ctx_timeout_follows_timers,
              ctx_timeout_counts_session_timers, ctx_post_node_from_threads_under_epoll,
              ctx_post_node_reused_from_its_fn, ctx_epoll_drives_tcp, ctx_epoll_drives_unix,
              ctx_epoll_drives_shm, ctx_driven_from_a_libev_loop)
