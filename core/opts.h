/* Context options: defaults and range checks in one place. */
#ifndef PX_CORE_OPTS_H
#define PX_CORE_OPTS_H

#include "plexus/context.h"

#define PX_DEF_QUEUE_DEPTH      512u
#define PX_DEF_MAX_QUEUED_BYTES (64ull << 20)
#define PX_DEF_MAX_MSG          (64ull << 20)
#define PX_DEF_MAX_HDR          4096u
#define PX_DEF_MAX_IOV          64u
#define PX_MIN_MAX_IOV          16u
#define PX_DEF_INLINE           (16u << 10)
#define PX_DEF_MAX_SESSIONS     16384u
#define PX_DEF_BUF_CACHE        (256ull << 20)
#define PX_DEF_KEEPALIVE_MS     5000u
#define PX_KEEPALIVE_MISSES     3u
#define PX_DEF_HANDSHAKE_MS     10000u
#define PX_DEF_MAX_RX_HELD      (64ull << 20)

/* px_ctx_opts_resolve() and px_ctx_opts_limits() are public (context.h):
 * queue_depth at most 65536, max_msg_size at most 4 GiB - 1,
 * max_header_size at most 65535, max_iov 16..1024, inline_threshold at
 * most 1 MiB. */

#endif
