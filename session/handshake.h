/* The handshake bodies carried in the data of HELLO and HELLO_ACK frames.
 * Little-endian, fixed fields then variable parts; every decode checks
 * every length against what is actually there. Decoded strings and blobs
 * point into the frame and live as long as it does. */
#ifndef PX_SESSION_HANDSHAKE_H
#define PX_SESSION_HANDSHAKE_H

#include <stddef.h>
#include <stdint.h>

#define PX_HS_MAGIC       0x53485850u /* "PXHS" */
#define PX_HS_MAX_PRIV    4096u
#define PX_HS_MAX_URIS    64u
#define PX_HS_MAX_URI_LEN 1024u
/* A handshake frame is built in a buffer of this size in every connection;
 * an ACCEPT or REDIRECT whose data and URIs do not fit is refused. */
#define PX_HS_BUF 8192u
/* The fixed part of a HELLO_ACK, and what each URI adds to its length. */
#define PX_HS_ACK_FIXED    48u
#define PX_HS_URI_OVERHEAD 2u

enum px_hs_status { PX_HS_ACCEPT = 0, PX_HS_REJECT = 1, PX_HS_REDIRECT = 2 };

/* client -> server */
typedef struct px_hello {
    uint16_t min_version, max_version;
    uint32_t queue_depth; /* requests the sender accepts in flight */
    uint64_t max_msg;
    uint32_t max_hdr, max_iov;
    uint32_t keepalive_ms; /* the sender's interval, or UINT32_MAX: it checks nothing */
    uint64_t token;        /* 0: a new session; else join that session */
    const char *uri;       /* the URI the client dialled (not NUL-terminated) */
    uint16_t uri_len;
    const void *priv;
    uint16_t priv_len;
} px_hello;

/* server -> client */
typedef struct px_hello_ack {
    uint16_t version, status;
    int32_t reason; /* REJECT: the server's reason (a negative PX_E code) */
    uint32_t queue_depth;
    uint64_t max_msg;
    uint32_t max_hdr, max_iov;
    uint32_t keepalive_ms; /* as in px_hello */
    uint64_t token;
    const void *data; /* ACCEPT/REJECT: the server's user data */
    uint16_t data_len;
    uint16_t n_uris; /* REDIRECT: targets; ACCEPT: portals */
    const char *uris[PX_HS_MAX_URIS];
    uint16_t uri_lens[PX_HS_MAX_URIS];
} px_hello_ack;

/* Each encode returns the bytes written, or -PX_ENOSPC / -PX_EMSGSIZE. */
int px_hello_encode(const px_hello *h, void *buf, size_t cap);
int px_hello_ack_encode(const px_hello_ack *a, void *buf, size_t cap);
/* Each decode returns 0, -PX_EPROTO (malformed) or -PX_EVERSION. */
int px_hello_decode(const void *buf, size_t len, px_hello *out);
int px_hello_ack_decode(const void *buf, size_t len, px_hello_ack *out);

#endif
