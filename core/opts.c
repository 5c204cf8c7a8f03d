/* Context options; see opts.h and plexus/context.h. */
#include "core/opts.h"

#include <stddef.h>
#include <stdint.h>

#include "plexus/error.h"

#define MAX_QUEUE_DEPTH 65536u
#define MAX_MSG_SIZE    0xffffffffull
#define MAX_HDR_SIZE    65535u
#define MAX_MAX_IOV     1024u
#define MAX_INLINE      (1u << 20)
#define MAX_LINGER_MS   3600000u /* an hour */

static void apply_defaults(px_ctx_opts *o)
{
    if (o->queue_depth == 0)
        o->queue_depth = PX_DEF_QUEUE_DEPTH;
    if (o->max_queued_bytes == 0)
        o->max_queued_bytes = PX_DEF_MAX_QUEUED_BYTES;
    if (o->max_msg_size == 0)
        o->max_msg_size = PX_DEF_MAX_MSG;
    if (o->max_header_size == 0)
        o->max_header_size = PX_DEF_MAX_HDR;
    if (o->max_iov == 0)
        o->max_iov = PX_DEF_MAX_IOV;
    if (o->inline_threshold == 0)
        o->inline_threshold = PX_DEF_INLINE;
    if (o->max_sessions == 0)
        o->max_sessions = PX_DEF_MAX_SESSIONS;
    if (o->buf_cache_bytes == 0)
        o->buf_cache_bytes = PX_DEF_BUF_CACHE;
    if (o->keepalive_ms == 0)
        o->keepalive_ms = PX_DEF_KEEPALIVE_MS;
    if (o->handshake_timeout_ms == 0)
        o->handshake_timeout_ms = PX_DEF_HANDSHAKE_MS;
    if (o->max_rx_held_bytes == 0)
        o->max_rx_held_bytes = PX_DEF_MAX_RX_HELD;
}

void px_ctx_opts_limits(px_ctx_opts *lo, px_ctx_opts *hi)
{
    /* A zero becomes the default, so every field that has one is at least
     * 1 once resolved. */
    if (lo)
        *lo = (px_ctx_opts){
            .poll_us = 0,
            .queue_depth = 1,
            .max_queued_bytes = 1,
            .max_msg_size = 1,
            .max_header_size = 1,
            .max_iov = PX_MIN_MAX_IOV,
            .inline_threshold = 1,
            .max_sessions = 1,
            .buf_cache_bytes = 1,
            .keepalive_ms = 1,
            .handshake_timeout_ms = 1,
            .request_timeout_ms = 0,
            .max_rx_held_bytes = 1,
            .share_links = 0,
            .link_linger_ms = 0,
        };
    if (hi)
        *hi = (px_ctx_opts){
            .poll_us = UINT32_MAX,
            .queue_depth = MAX_QUEUE_DEPTH,
            .max_queued_bytes = UINT64_MAX,
            .max_msg_size = MAX_MSG_SIZE,
            .max_header_size = MAX_HDR_SIZE,
            .max_iov = MAX_MAX_IOV,
            .inline_threshold = MAX_INLINE,
            .max_sessions = UINT32_MAX,
            .buf_cache_bytes = UINT64_MAX,
            .keepalive_ms = UINT32_MAX, /* PX_KEEPALIVE_OFF */
            .handshake_timeout_ms = UINT32_MAX,
            .request_timeout_ms = UINT32_MAX,
            .max_rx_held_bytes = UINT64_MAX,
            .share_links = 1,
            .link_linger_ms = MAX_LINGER_MS,
        };
}

static int check_ranges(const px_ctx_opts *o)
{
    px_ctx_opts lo, hi;
    px_ctx_opts_limits(&lo, &hi);
#define IN_RANGE(f) (o->f >= lo.f && o->f <= hi.f)
    int ok = IN_RANGE(poll_us) && IN_RANGE(queue_depth) && IN_RANGE(max_queued_bytes) &&
             IN_RANGE(max_msg_size) && IN_RANGE(max_header_size) && IN_RANGE(max_iov) &&
             IN_RANGE(inline_threshold) && IN_RANGE(max_sessions) && IN_RANGE(buf_cache_bytes) &&
             IN_RANGE(keepalive_ms) && IN_RANGE(handshake_timeout_ms) &&
             IN_RANGE(request_timeout_ms) && IN_RANGE(max_rx_held_bytes) && IN_RANGE(share_links) &&
             IN_RANGE(link_linger_ms);
#undef IN_RANGE
    return ok ? 0 : -PX_EINVAL;
}

int px_ctx_opts_resolve(const px_ctx_opts *in, px_ctx_opts *out)
{
    if (out == NULL)
        return -PX_EINVAL;
    px_ctx_opts o = {0};
    if (in)
        o = *in;
    apply_defaults(&o);
    int rc = check_ranges(&o);
    if (rc == 0)
        *out = o;
    return rc;
}
