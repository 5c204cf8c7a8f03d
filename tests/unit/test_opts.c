/* Context options: defaults for zeros, and the range of every field. */
#include "core/opts.h"
#include "plexus/error.h"
#include "px_check.h"

/* Field by field: the struct has padding, which memcmp would read. */
static void assert_same_opts(const px_ctx_opts *a, const px_ctx_opts *b)
{
    ck_assert_uint_eq(a->poll_us, b->poll_us);
    ck_assert_uint_eq(a->queue_depth, b->queue_depth);
    ck_assert_uint_eq(a->max_queued_bytes, b->max_queued_bytes);
    ck_assert_uint_eq(a->max_msg_size, b->max_msg_size);
    ck_assert_uint_eq(a->max_header_size, b->max_header_size);
    ck_assert_uint_eq(a->max_iov, b->max_iov);
    ck_assert_uint_eq(a->inline_threshold, b->inline_threshold);
    ck_assert_uint_eq(a->max_sessions, b->max_sessions);
    ck_assert_uint_eq(a->buf_cache_bytes, b->buf_cache_bytes);
    ck_assert_uint_eq(a->keepalive_ms, b->keepalive_ms);
    ck_assert_uint_eq(a->handshake_timeout_ms, b->handshake_timeout_ms);
    ck_assert_uint_eq(a->request_timeout_ms, b->request_timeout_ms);
    ck_assert_uint_eq(a->max_rx_held_bytes, b->max_rx_held_bytes);
}

START_TEST(defaults)
{
    px_ctx_opts o;
    ck_assert_int_eq(px_ctx_opts_resolve(NULL, &o), 0);
    ck_assert_uint_eq(o.poll_us, 0);
    ck_assert_uint_eq(o.queue_depth, 512);
    ck_assert_uint_eq(o.max_queued_bytes, 64ull << 20);
    ck_assert_uint_eq(o.max_msg_size, 64ull << 20);
    ck_assert_uint_eq(o.max_header_size, 4096);
    ck_assert_uint_eq(o.max_iov, 64);
    ck_assert_uint_eq(o.inline_threshold, 16384);
    ck_assert_uint_eq(o.max_sessions, 16384);
    ck_assert_uint_eq(o.buf_cache_bytes, 256ull << 20);
    ck_assert_uint_eq(o.keepalive_ms, 5000);
    ck_assert_uint_eq(o.handshake_timeout_ms, 10000);
    ck_assert_uint_eq(o.request_timeout_ms, 0);
    ck_assert_uint_eq(o.max_rx_held_bytes, 64ull << 20);
    px_ctx_opts zero = {0};
    px_ctx_opts o2;
    ck_assert_int_eq(px_ctx_opts_resolve(&zero, &o2), 0);
    assert_same_opts(&o, &o2);
    ck_assert_int_eq(px_ctx_opts_resolve(NULL, NULL), -PX_EINVAL);
}
END_TEST

START_TEST(kept)
{
    px_ctx_opts in = {.poll_us = 50,
                      .queue_depth = 7,
                      .max_queued_bytes = 1,
                      .max_msg_size = 100,
                      .max_header_size = 1,
                      .max_iov = 16,
                      .inline_threshold = 1,
                      .max_sessions = 3,
                      .buf_cache_bytes = 4096,
                      .keepalive_ms = 20,
                      .handshake_timeout_ms = 30,
                      .request_timeout_ms = 40,
                      .max_rx_held_bytes = 50};
    px_ctx_opts o;
    ck_assert_int_eq(px_ctx_opts_resolve(&in, &o), 0);
    assert_same_opts(&in, &o);
    /* In place works too. */
    in.queue_depth = 0;
    ck_assert_int_eq(px_ctx_opts_resolve(&in, &in), 0);
    ck_assert_uint_eq(in.queue_depth, 512);
    ck_assert_uint_eq(in.poll_us, 50);
}
END_TEST

/* Apply `set` to zeroed options and resolve. */
#define RESOLVE_WITH(field, value)                                                                 \
    ({                                                                                             \
        px_ctx_opts in_ = {0}, out_;                                                               \
        in_.field = (value);                                                                       \
        px_ctx_opts_resolve(&in_, &out_);                                                          \
    })

START_TEST(ranges)
{
    ck_assert_int_eq(RESOLVE_WITH(queue_depth, 65536), 0);
    ck_assert_int_eq(RESOLVE_WITH(queue_depth, 65537), -PX_EINVAL);
    ck_assert_int_eq(RESOLVE_WITH(max_msg_size, 0xffffffffull), 0);
    ck_assert_int_eq(RESOLVE_WITH(max_msg_size, 0x100000000ull), -PX_EINVAL);
    ck_assert_int_eq(RESOLVE_WITH(max_header_size, 65535), 0);
    ck_assert_int_eq(RESOLVE_WITH(max_header_size, 65536), -PX_EINVAL);
    ck_assert_int_eq(RESOLVE_WITH(max_iov, 15), -PX_EINVAL);
    ck_assert_int_eq(RESOLVE_WITH(max_iov, 1), -PX_EINVAL);
    ck_assert_int_eq(RESOLVE_WITH(max_iov, 16), 0);
    ck_assert_int_eq(RESOLVE_WITH(max_iov, 1024), 0);
    ck_assert_int_eq(RESOLVE_WITH(max_iov, 1025), -PX_EINVAL);
    ck_assert_int_eq(RESOLVE_WITH(inline_threshold, 1u << 20), 0);
    ck_assert_int_eq(RESOLVE_WITH(inline_threshold, (1u << 20) + 1), -PX_EINVAL);
}
END_TEST

START_TEST(error_leaves_out)
{
    px_ctx_opts in = {.max_iov = 2}, o = {.queue_depth = 99};
    ck_assert_int_eq(px_ctx_opts_resolve(&in, &o), -PX_EINVAL);
    ck_assert_uint_eq(o.queue_depth, 99);
}
END_TEST

/* px_ctx_opts_limits() says the ranges px_ctx_opts_resolve() enforces, and
 * the defaults lie inside them. */
START_TEST(limits_match_ranges)
{
    px_ctx_opts lo, hi, def;
    px_ctx_opts_limits(&lo, &hi);
    px_ctx_opts_limits(NULL, NULL);
    ck_assert_int_eq(px_ctx_opts_resolve(NULL, &def), 0);
    ck_assert_int_eq(px_ctx_opts_resolve(&hi, &def), 0);
    ck_assert_int_eq(px_ctx_opts_resolve(&lo, &def), 0);
    ck_assert_uint_eq(lo.max_iov, 16);
    ck_assert_uint_eq(hi.max_iov, 1024);
    ck_assert_uint_eq(hi.queue_depth, 65536);
    ck_assert_uint_eq(hi.max_msg_size, 0xffffffffull);
    ck_assert_uint_eq(hi.max_header_size, 65535);
    ck_assert_uint_eq(hi.inline_threshold, 1u << 20);
    ck_assert_uint_eq(hi.keepalive_ms, PX_KEEPALIVE_OFF);
    ck_assert_int_eq(RESOLVE_WITH(queue_depth, hi.queue_depth + 1), -PX_EINVAL);
    ck_assert_int_eq(RESOLVE_WITH(max_msg_size, hi.max_msg_size + 1), -PX_EINVAL);
    ck_assert_int_eq(RESOLVE_WITH(max_header_size, hi.max_header_size + 1), -PX_EINVAL);
    ck_assert_int_eq(RESOLVE_WITH(max_iov, hi.max_iov + 1), -PX_EINVAL);
    ck_assert_int_eq(RESOLVE_WITH(max_iov, lo.max_iov - 1), -PX_EINVAL);
    ck_assert_int_eq(RESOLVE_WITH(inline_threshold, hi.inline_threshold + 1), -PX_EINVAL);
}
END_TEST

PX_CHECK_MAIN("opts", defaults, kept, ranges, error_leaves_out, limits_match_ranges)
