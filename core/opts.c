/* Context options; see opts.h. */
#include "core/opts.h"

#include <stddef.h>

#include "plexus/error.h"

#define MAX_QUEUE_DEPTH 65536u
#define MAX_MSG_SIZE    0xffffffffull
#define MAX_HDR_SIZE    65535u
#define MAX_MAX_IOV     1024u
#define MAX_INLINE      (1u << 20)

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

static int check_ranges(const px_ctx_opts *o)
{
    if (o->queue_depth > MAX_QUEUE_DEPTH)
        return -PX_EINVAL;
    if (o->max_msg_size > MAX_MSG_SIZE)
        return -PX_EINVAL;
    if (o->max_header_size > MAX_HDR_SIZE)
        return -PX_EINVAL;
    if (o->max_iov < PX_MIN_MAX_IOV || o->max_iov > MAX_MAX_IOV)
        return -PX_EINVAL;
    if (o->inline_threshold > MAX_INLINE)
        return -PX_EINVAL;
    return 0;
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
