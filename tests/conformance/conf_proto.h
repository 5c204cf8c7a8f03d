/* The tiny test protocol spoken between conf_suite and conf_server.
 *
 * Every request and one-way message starts its application header with a
 * conf_hdr; `op` selects what the server does with it. Both processes run
 * on one host, so the structs travel in host order.
 */
#ifndef CONF_PROTO_H
#define CONF_PROTO_H

#include <stdint.h>
#include <string.h>

#define CONF_MAGIC 0x434f4e46u /* "CONF" */

enum conf_op {
    CONF_ECHO = 1,      /* response = the request's header and data */
    CONF_HOLD = 2,      /* never answered while the connection lives */
    CONF_DELAY = 3,     /* echoed `arg` milliseconds later, from a timer */
    CONF_GATHER = 4,    /* held until `arg` GATHER requests of the session are
                           held, then all echoed in arrival order */
    CONF_SEQ = 5,       /* one-way: seq must follow the previous one */
    CONF_SEQ_CHECK = 6, /* response header: conf_seq_report */
    CONF_STATS = 7,     /* response header: conf_stats */
    CONF_UNBIND = 8,    /* echoed, then the server unbinds (arg: conf_unbind) and exits
                           once px_ctx_destroy succeeds, without tracking its sessions */
};

/* What CONF_UNBIND does, in its arg. */
enum conf_unbind {
    CONF_UNBIND_GRACEFUL = 0, /* px_server_unbind, run until the sessions are gone */
    CONF_UNBIND_ABRUPT = 1,   /* px_server_disconnect, likewise */
    CONF_UNBIND_DESTROY = 2,  /* px_server_unbind, then px_ctx_destroy at once */
};

/* Flags in conf_hdr.arg of a CONF_ECHO request. */
#define CONF_ARG_ASSIGN       1u /* the server receives the data into its own buffer */
#define CONF_ARG_ASSIGN_SHORT 2u /* ... offering one byte too few: must be refused */

struct conf_hdr {
    uint32_t magic;
    uint32_t op;
    uint64_t seq;
    uint32_t arg;
    uint32_t pad;
};

/* The server's view, so a client can check it released everything. */
struct conf_stats {
    uint64_t sessions;   /* accepted sessions not yet torn down */
    uint64_t conns;      /* established connections not yet torn down */
    uint64_t held;       /* requests delivered and not yet answered */
    uint64_t responding; /* responses sent and not yet completed */
    uint64_t requests;   /* requests delivered, ever */
    uint64_t oneways;    /* one-way messages delivered, ever */
    uint64_t rejected;   /* sessions rejected, ever */
    uint64_t anomalies;  /* contract violations the server saw */
    uint64_t assigned;   /* assign_data_in_buf calls that supplied a buffer */
    uint64_t aborted;    /* receives into such a buffer cut short (on_msg_error PX_DIR_IN) */
    uint64_t canceled;   /* on_msg_canceled: requests the client gave up */
    uint64_t alt_conns;  /* connections open on the second server (portal joins included) */
    uint64_t links;      /* transport links open on the server (shared ones count once) */
};

/* One-way SEQ messages of the asking session, as the server saw them. */
struct conf_seq_report {
    uint64_t received;
    uint64_t errors;    /* out-of-order seq or wrong payload bytes */
    uint64_t first_bad; /* seq of the first bad message, or UINT64_MAX */
    uint64_t next;      /* the seq expected next */
};

/* Payload byte i of message `seq`: every byte depends on both, so a shifted,
 * truncated or swapped payload never verifies. */
static inline uint8_t conf_byte(uint64_t seq, size_t i)
{
    return (uint8_t)(seq * 131u + i * 7u + (i >> 9) + (seq >> 8));
}

static inline void conf_fill(uint8_t *p, uint64_t seq, size_t len)
{
    for (size_t i = 0; i < len; i++)
        p[i] = conf_byte(seq, i);
}

/* Decode a header that may sit unaligned in a receive buffer. */
static inline int conf_hdr_read(const void *hdr, uint32_t len, struct conf_hdr *out)
{
    if (hdr == NULL || len < sizeof(*out))
        return -1;
    memcpy(out, hdr, sizeof(*out));
    return out->magic == CONF_MAGIC ? 0 : -1;
}

#endif
