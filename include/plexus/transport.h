/* plexus — the transport plugin interface.
 *
 * A transport moves frames between two endpoints and reports what happens
 * upward through an observer; it knows nothing of sessions, requests or
 * responses. One folder per transport under transports/, one `static const
 * px_transport` table at the end of its main file. Built-in transports are
 * compiled in; others are shared objects named libplexus-<scheme>.so in the
 * directory $PX_PLUGIN_DIR, exporting `int px_transport_plugin_init(void)`
 * that calls px_transport_register().
 *
 * Threading: a transport instance (px_tp) belongs to one context and is
 * only ever called on that context's thread; it calls its observers on the
 * same thread, never from inside send()/connect()/listen() (events are
 * deferred to the loop) except where an op says otherwise.
 */
#ifndef PLEXUS_TRANSPORT_H
#define PLEXUS_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "plexus/memory.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct px_ctx px_ctx;
struct ev_loop;

/* ---- the frame ----------------------------------------------------------
 * Every transport carries the same frame: a 32-byte little-endian header,
 * `ext_len` bytes of transport extension (e.g. rendezvous descriptors; 0 for
 * a plain frame), `hdr_len` bytes of application header, `data_len` bytes
 * of data.
 *
 *   off size  field
 *   0   2     magic      0x5850 ("PX")
 *   2   1     version    PX_WIRE_VERSION
 *   3   1     type       px_frame_type
 *   4   2     flags      PX_FF_*; unknown bits are an error
 *   6   2     hdr_len    application header bytes
 *   8   4     channel    connection id on the link (multiplexing)
 *   12  4     data_len   data bytes
 *   16  8     id         message id (request/response matching)
 *   24  4     aux        type-specific (status of an error response,
 *                        credits, reason)
 *   28  2     ext_len    transport extension bytes
 *   30  2     reserved   must be 0
 */
#define PX_FRAME_MAGIC   0x5850u
#define PX_WIRE_VERSION  1u
#define PX_FRAME_HDR_LEN 32u
#define PX_FRAME_MAX_EXT 1024u

typedef enum px_frame_type {
    PX_FT_HELLO = 1,     /* client -> server: handshake (setup data in the data part) */
    PX_FT_HELLO_ACK = 2, /* server -> client: accept/reject/redirect */
    PX_FT_REQUEST = 3,
    PX_FT_RESPONSE = 4, /* aux: 0, or a positive PX_E code when the responder failed */
    PX_FT_ONEWAY = 5,
    PX_FT_RECEIPT = 6, /* id of the one-way message delivered; no payload */
    PX_FT_CANCEL = 7,  /* id of a request the requester gave up; no payload */
    PX_FT_FIN = 8,     /* no more frames from the sender; no payload */
    PX_FT_FIN_ACK = 9,
    PX_FT_KEEPALIVE = 10,
    PX_FT_TYPE_MAX = 10,
} px_frame_type;

#define PX_FF_RECEIPT 0x0001u /* ONEWAY: the sender wants a RECEIPT */
#define PX_FF_MASK    0x0001u

/* The decoded header, host order. */
typedef struct px_frame_hdr {
    uint8_t version;
    uint8_t type;
    uint16_t flags;
    uint16_t hdr_len;
    uint16_t ext_len;
    uint32_t channel;
    uint32_t data_len;
    uint64_t id;
    uint32_t aux;
} px_frame_hdr;

/* Limits a decode checks against. */
typedef struct px_frame_limits {
    uint32_t max_hdr;  /* application header */
    uint32_t max_data; /* data */
} px_frame_limits;

/* Write `h` as 32 wire bytes. */
void px_frame_encode(const px_frame_hdr *h, uint8_t out[PX_FRAME_HDR_LEN]);

/* Decode and validate `len` bytes: magic, version, type, flags, reserved,
 * ext_len against PX_FRAME_MAX_EXT, lengths against `lim`, and per-type
 * rules (control frames carry no payload). Returns 0; -PX_EAGAIN when fewer
 * than PX_FRAME_HDR_LEN bytes are given; -PX_EPROTO for a bad field;
 * -PX_EVERSION for another version; -PX_EMSGSIZE for a length over `lim`;
 * -PX_EINVAL for a NULL argument. Structural errors win over size ones (a
 * FIN with data_len 2^32-1 is -PX_EPROTO). HELLO/HELLO_ACK carry no
 * application header and are capped at 65536 data bytes regardless of
 * `lim`, since they arrive before limits are agreed. */
int px_frame_decode(const void *buf, size_t len, const px_frame_limits *lim, px_frame_hdr *out);

/* The rules px_frame_decode() applies, for a header already in host order
 * (a frame about to be sent). Returns 0, -PX_EPROTO, -PX_EVERSION or
 * -PX_EMSGSIZE as px_frame_decode() would. */
int px_frame_check(const px_frame_hdr *h, const px_frame_limits *lim);

/* Total bytes of the frame that `h` heads. */
static inline uint64_t px_frame_len(const px_frame_hdr *h)
{
    return (uint64_t)PX_FRAME_HDR_LEN + h->ext_len + h->hdr_len + h->data_len;
}

/* ---- URIs -----------------------------------------------------------------
 * scheme://host:port/path?key=value&key=value
 *   tcp://127.0.0.1:7000   tcp://[::1]:0   tcp://localhost:7000
 *   unix:///run/app.sock   shm://name      rdma://10.0.0.1:7000
 */
#define PX_URI_MAX      1024
#define PX_URI_MAX_OPTS 16

typedef struct px_uri_opt {
    const char *key;
    const char *value; /* "" when given as ?key */
} px_uri_opt;

typedef struct px_uri {
    const char *scheme; /* lower case */
    const char *host;   /* without brackets; "" when none */
    int port;           /* -1 when none, else 0..65535 */
    int ipv6;           /* host was bracketed */
    const char *path;   /* after host[:port] (starts with '/'), or shm's name; "" when none */
    unsigned n_opts;
    px_uri_opt opts[PX_URI_MAX_OPTS];
    char buf[PX_URI_MAX + 8]; /* storage the pointers above point into */
} px_uri;

/* Parse `text` into `out`, which owns all its strings. Returns 0;
 * -PX_EINVAL (NULL argument); -PX_EBADURI (no "://", empty, too long, bad
 * or %00 escape), -PX_EBADSCHEME (empty, not starting with a letter, or
 * characters outside [A-Za-z0-9+.-]; stored lower-cased), -PX_EBADHOST
 * (nothing after "://", a port without a host, empty/unbalanced brackets,
 * illegal characters), -PX_EBADPORT (not 1-5 digits for 0..65535),
 * -PX_EBADPATH (shm name not [A-Za-z0-9._-]+, control or '#' characters in
 * a path), -PX_EBADOPT (empty key, key outside [A-Za-z0-9._-], raw space or
 * control character in a value, too many options, duplicate key; "?" must
 * be followed by an option). For shm:// the name goes to `path`, `host` is
 * "". A bracketed IPv6 host keeps its zone as "addr%zone" (RFC 6874's "%25"
 * accepted). On error `out` holds no strings and n_opts is 0. */
int px_uri_parse(const char *text, px_uri *out);

/* The value of option `key`, or NULL. */
const char *px_uri_opt_get(const px_uri *uri, const char *key);

/* ---- the observer -----------------------------------------------------------
 * Upward events. A transport object reports to exactly one observer, set at
 * connect/listen/accept; the return value matters only for
 * PX_TP_EV_RX_ASSIGN. */
typedef struct px_observer {
    int (*notify)(void *self, int event, void *data);
    void *self;
} px_observer;

typedef struct px_tp px_tp;                   /* one transport instance per context */
typedef struct px_tp_listener px_tp_listener; /* a bound address */
typedef struct px_tp_conn px_tp_conn;         /* one link to a peer */

/* The common head of every transport connection; the transport embeds it
 * as the first member of its own struct. Owned by the transport. */
struct px_tp_conn {
    const struct px_transport *ops;
    px_tp *tp;
    px_observer obs;
    /* Bytes received from the peer so far, counted by the transport as they
     * arrive (not when a frame completes): the owner's liveness check reads
     * it, so a large frame still arriving proves the peer alive. */
    uint64_t rx_bytes;
};

struct px_tp_listener {
    const struct px_transport *ops;
    px_tp *tp;
    px_observer obs;
};

/* A frame to send. Owned by the caller (the session layer) from send()
 * until its SEND_COMPLETE event; the memory `seg` points to likewise. The
 * transport owns the `tp_*` fields while it holds the request. */
typedef struct px_tp_send {
    px_frame_hdr hdr;    /* ext_len is the transport's to set */
    const void *app_hdr; /* hdr.hdr_len bytes */
    const px_iov *data;  /* hdr.data_len bytes across data_count segments */
    uint32_t data_count;
    const px_iov *reply; /* REQUEST only, optional: where the response should
                            land, for transports that can write it there */
    uint32_t reply_count;
    void *cookie; /* the caller's */
    int status;   /* set by the transport before SEND_COMPLETE: 0 or -PX_E... */
    /* transport-private */
    struct px_tp_send *tp_next;
    uint64_t tp_done;
    uint8_t tp_wire[PX_FRAME_HDR_LEN];
    uint64_t tp_priv[4];
} px_tp_send;

typedef enum px_tp_event_type {
    PX_TP_EV_CONNECTED = 1, /* connect() finished; data: NULL */
    PX_TP_EV_NEW_CONN,      /* a listener has a peer; data: px_tp_conn* to accept/reject */
    PX_TP_EV_RX_ASSIGN,     /* data: px_tp_rx*; fill dst/dst_count to receive straight
                               into it and return 0, or return nonzero for in-place */
    PX_TP_EV_FRAME,         /* data: px_tp_rx*, valid during the call only */
    PX_TP_EV_SEND_COMPLETE, /* data: px_tp_send*, with its status set */
    PX_TP_EV_DISCONNECTED,  /* data: int* reason; the link is gone, close() it */
    PX_TP_EV_ERROR,         /* data: int* reason; a protocol error; DISCONNECTED follows */
} px_tp_event_type;

/* A received frame. */
typedef struct px_tp_rx {
    px_frame_hdr hdr;
    const void *app_hdr; /* hdr.hdr_len bytes */
    const void *data;    /* in place: hdr.data_len contiguous bytes; NULL if assigned */
    px_iov *dst;         /* RX_ASSIGN: filled by the observer */
    uint32_t dst_count;
    uint32_t more;      /* FRAME: complete frames already received after this one */
    void *owner_cookie; /* RX_ASSIGN -> FRAME: the observer's, carried through */
} px_tp_rx;

/* What a transport can do; fills from get_caps. */
#define PX_TP_CAP_RX_DIRECT    (1u << 0) /* honours RX_ASSIGN for large frames */
#define PX_TP_CAP_ZCOPY_SEND   (1u << 1) /* sends from the caller's buffers */
#define PX_TP_CAP_REPLY_DIRECT (1u << 2) /* uses px_tp_send.reply (RDMA WRITE) */
#define PX_TP_CAP_POLL         (1u << 3) /* poll() makes progress without the loop */
#define PX_TP_CAP_ONE_COPY     (1u << 4) /* large data moves with one copy (CMA, RDMA) */

typedef struct px_tp_caps {
    uint32_t flags;
    uint32_t max_iov;    /* data segments per send */
    uint32_t max_inline; /* frames this small go inline/in place */
    uint64_t max_msg;    /* largest data_len */
} px_tp_caps;

/* What the context gives each transport instance; owned by the context. */
typedef struct px_tp_host {
    px_ctx *ctx;
    struct ev_loop *loop;   /* the context's libev loop */
    px_frame_limits limits; /* decode limits */
    uint32_t inline_threshold;
    /* Nonzero while the current loop pass cannot block (the context is
     * busy-polling and will poll again): a transport's prepare hook need
     * not arm wake-ups then. Zero when the loop may sleep after the pass:
     * every wake-up a transport relies on must be armed. */
    const int *pass_nonblocking;
} px_tp_host;

#define PX_TRANSPORT_ABI 1

/* The vtable. Mandatory unless marked optional; px_transport_register()
 * refuses a table that lacks one. Every op returns 0 or -PX_E... */
typedef struct px_transport {
    uint32_t abi;               /* PX_TRANSPORT_ABI */
    const char *name;           /* "tcp" */
    const char *const *schemes; /* NULL-terminated: {"tcp", "unix", NULL} */

    /* One instance per context, created lazily on first use. */
    int (*init)(const px_tp_host *host, px_tp **out);
    void (*fini)(px_tp *tp); /* all listeners and conns are closed first */
    void (*get_caps)(px_tp *tp, px_tp_caps *out);

    /* Bind. NEW_CONN events follow on `obs`. -PX_EADDRINUSE, -PX_EBADOPT... */
    int (*listen)(px_tp *tp, const px_uri *uri, const px_observer *obs, px_tp_listener **out);
    /* The bound address as a URI (real port). Returns its length. */
    int (*listener_uri)(px_tp_listener *l, char *buf, size_t len);
    /* Stop and free; no event follows. Not-yet-accepted conns are closed. */
    void (*listener_close)(px_tp_listener *l);

    /* Start connecting. CONNECTED or DISCONNECTED follows on `obs`. */
    int (*connect)(px_tp *tp, const px_uri *uri, const px_observer *obs, px_tp_conn **out);
    /* Take a NEW_CONN: events now go to `obs`. */
    int (*accept)(px_tp_conn *c, const px_observer *obs);
    /* Refuse a NEW_CONN (reason for transports that can carry it); frees it. */
    void (*reject)(px_tp_conn *c, int reason);

    /* Queue a frame. SEND_COMPLETE follows exactly once unless this returns
     * an error (then nothing follows). Frames leave in call order. */
    int (*send)(px_tp_conn *c, px_tp_send *req);
    /* Close and free. Sends still queued complete with -PX_ECLOSED through
     * SEND_COMPLETE before it returns; no other event follows. May be called
     * from inside any event of this conn: the transport then frees it once
     * the upcall has returned and never touches it otherwise. */
    void (*close)(px_tp_conn *c);

    /* The peer's address as a URI. Returns its length. */
    int (*peer_uri)(px_tp_conn *c, char *buf, size_t len);

    /* Check a URI for connect (listener 0) or listen (listener 1) without
     * touching the network or the resolver: host, port, path, options.
     * Returns 0 or the error connect()/listen() would give. */
    int (*check_uri)(const px_uri *uri, int listener);
    /* Stop (paused 1) or resume (0) delivering frames of this conn: a frame
     * being received completes, then no further FRAME/RX_ASSIGN follows
     * until resumed, and the transport stops reading (the peer meets flow
     * control). Frames already buffered are delivered after resuming, from
     * the loop. May be called from inside any upcall of this conn. */
    void (*rx_pause)(px_tp_conn *c, int paused);

    /* Optional. Busy-poll: make progress without sleeping; return the number
     * of events handled. */
    int (*poll)(px_tp *tp);
    /* Optional. Register a region for this transport (RDMA MR, shm segment);
     * *handle is the transport's. */
    int (*mem_register)(px_tp *tp, px_mr *mr, void **handle);
    void (*mem_deregister)(px_tp *tp, void *handle);
} px_transport;

/* Add a transport to the registry (thread-safe). Returns 0; -PX_EINVAL for
 * a table missing a mandatory op or with the wrong abi; -PX_EEXIST when one
 * of its schemes is taken. */
int px_transport_register(const px_transport *ops);

/* Find the transport serving `scheme`, loading
 * $PX_PLUGIN_DIR/libplexus-<scheme>.so if none is registered. Returns NULL
 * when there is none. */
const px_transport *px_transport_find(const char *scheme);

/* As px_transport_find(), with the reason when there is none: returns 0
 * and *out; -PX_ENOTBUILT for a scheme plexus knows but this build lacks
 * (rdma without rdma-core); -PX_EBADSCHEME. Either failure is logged. */
int px_transport_lookup(const char *scheme, const px_transport **out);

/* Parse `uri` and have its transport check it for connect (listener 0) or
 * listen (1), without network or resolver: returns 0 or the URI's error,
 * logged with what is wrong. */
int px_transport_check_uri(const char *uri, int listener);

/* Call fn for every registered transport; returns how many. */
int px_transport_foreach(void (*fn)(const px_transport *ops, void *arg), void *arg);

/* ---- helpers for transports ------------------------------------------------ */

/* Check a request given to send(): segments present and adding up to
 * hdr.data_len, at most max_iov of them, a header the peer would accept.
 * Sets hdr.version and hdr.ext_len = 0 (a transport that uses ext sets it
 * after); encoding the header is the transport's, where it writes it.
 * Returns 0; -PX_EINVAL; -PX_ETOOMANY. */
int px_tp_send_check(px_tp_send *req, uint32_t max_iov);

/* Nonzero when an RX_ASSIGN destination can hold hdr.data_len bytes (every
 * segment with a base). The owner's vector is never trusted blindly. */
int px_tp_rx_dst_covers(const px_tp_rx *rx);

/* Place `len` bytes at the cursor (*idx, *off) of a destination vector and
 * advance it; with src NULL only advance (the bytes were put there by a
 * scatter read). Returns the bytes that did not fit (0 normally). */
size_t px_iov_put(const px_iov *iov, uint32_t count, uint32_t *idx, size_t *off, const void *src,
                  size_t len);

/* Copy a send's application header then its data segments, contiguously,
 * to dst (hdr.hdr_len + hdr.data_len bytes): into a ring, or aside. */
void px_tp_send_copy_body(const px_tp_send *s, void *dst);

/* Nonzero when the send's header or data overlaps [lo, lo+size): a send
 * made from an in-place delivery still points into receive memory. */
int px_tp_send_points_into(const px_tp_send *s, const void *lo, size_t size);

/* For transports: the memory region behind a px_mr. Returns 0, or
 * -PX_ENOENT when it is plain registered memory without an fd. */
int px_mr_fd(const px_mr *mr, int *fd, uint64_t *offset);

#ifdef __cplusplus
}
#endif
#endif
