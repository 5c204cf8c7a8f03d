/**
 * @file
 * plexus — the wire frame every transport carries.
 *
 * For transports and tools that speak plexus's wire format; applications
 * never need it. */
#ifndef PLEXUS_FRAME_H
#define PLEXUS_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "plexus/api.h"

#ifdef __cplusplus
extern "C" {
#endif

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
#define PX_FRAME_MAGIC   0x5850u /**< the first two bytes of every frame: "PX" */
#define PX_WIRE_VERSION  1u      /**< the wire format's version (the version byte) */
#define PX_FRAME_HDR_LEN 32u     /**< bytes of the fixed header */
#define PX_FRAME_MAX_EXT 1024u   /**< the largest transport extension (ext_len) */

/** What a frame is (the type byte). */
typedef enum px_frame_type {
    PX_FT_HELLO = 1,      /**< client -> server: handshake (setup data in the data part) */
    PX_FT_HELLO_ACK = 2,  /**< server -> client: accept/reject/redirect */
    PX_FT_REQUEST = 3,    /**< a request (id: its message id) */
    PX_FT_RESPONSE = 4,   /**< aux: 0, or a positive PX_E code when the responder failed */
    PX_FT_ONEWAY = 5,     /**< a one-way message (PX_FF_RECEIPT: a receipt is wanted) */
    PX_FT_RECEIPT = 6,    /**< id of the one-way message delivered; no payload */
    PX_FT_CANCEL = 7,     /**< id of a request the requester gave up; no payload */
    PX_FT_FIN = 8,        /**< no more frames from the sender; no payload */
    PX_FT_FIN_ACK = 9,    /**< the answer to a FIN; no payload */
    PX_FT_KEEPALIVE = 10, /**< the sender is alive; no payload */
    PX_FT_RESET = 11,     /**< the sender's connection on this channel of a shared link
                               ended abruptly: end yours; no payload */
    PX_FT_TYPE_MAX = 11,  /**< the largest type value */
} px_frame_type;

#define PX_FF_RECEIPT 0x0001u /**< ONEWAY: the sender wants a RECEIPT */
#define PX_FF_MASK    0x0001u /**< every flag bit defined; others are an error */

/** The decoded header, host order. */
typedef struct px_frame_hdr {
    uint8_t version;   /**< PX_WIRE_VERSION */
    uint8_t type;      /**< px_frame_type */
    uint16_t flags;    /**< PX_FF_* */
    uint16_t hdr_len;  /**< application header bytes */
    uint16_t ext_len;  /**< transport extension bytes */
    uint32_t channel;  /**< connection id on the link (multiplexing) */
    uint32_t data_len; /**< data bytes */
    uint64_t id;       /**< message id (request/response matching) */
    uint32_t aux;      /**< type-specific (status of an error response, credits, reason) */
} px_frame_hdr;

/** Limits a decode checks against. */
typedef struct px_frame_limits {
    uint32_t max_hdr;  /**< application header */
    uint32_t max_data; /**< data */
} px_frame_limits;

/** Write `h` as 32 wire bytes.
 * @param h the header, host order
 * @param[out] out the wire bytes */
PX_API void px_frame_encode(const px_frame_hdr *h, uint8_t out[PX_FRAME_HDR_LEN]);

/** Decode and validate `len` bytes: magic, version, type, flags, reserved,
 * ext_len against PX_FRAME_MAX_EXT, lengths against `lim`, and per-type
 * rules (control frames carry no payload). Structural errors win over size
 * ones (a FIN with data_len 2^32-1 is -PX_EPROTO). HELLO/HELLO_ACK carry no
 * application header and are capped at 65536 data bytes regardless of
 * `lim`, since they arrive before limits are agreed.
 * @param buf the bytes received
 * @param len how many (at least PX_FRAME_HDR_LEN for a header)
 * @param lim the lengths allowed
 * @param[out] out the header, host order
 * @return 0; -PX_EAGAIN when fewer than PX_FRAME_HDR_LEN bytes are given;
 * -PX_EPROTO for a bad field; -PX_EVERSION for another version;
 * -PX_EMSGSIZE for a length over `lim`; -PX_EINVAL for a NULL argument. */
PX_API int px_frame_decode(const void *buf, size_t len, const px_frame_limits *lim,
                           px_frame_hdr *out);

/** The rules px_frame_decode() applies, for a header already in host order
 * (a frame about to be sent).
 * @param h the header
 * @param lim the lengths allowed
 * @return 0, -PX_EPROTO, -PX_EVERSION or -PX_EMSGSIZE as px_frame_decode()
 * would. */
PX_API int px_frame_check(const px_frame_hdr *h, const px_frame_limits *lim);

/** Total bytes of the frame that `h` heads.
 * @param h the header
 * @return header, extension, application header and data bytes together. */
static inline uint64_t px_frame_len(const px_frame_hdr *h)
{
    return (uint64_t)PX_FRAME_HDR_LEN + h->ext_len + h->hdr_len + h->data_len;
}

#ifdef __cplusplus
}
#endif
#endif
