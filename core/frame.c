/* The wire codec for the 32-byte frame header (layout in
 * plexus/transport.h). Byte-by-byte so it is independent of host order and
 * alignment: transports decode in place from unaligned ring positions. */
#include <stdint.h>
#include <string.h>

#include "plexus/error.h"
#include "plexus/transport.h"

/* HELLO/HELLO_ACK are decoded before the context's limits are agreed, so
 * their body (setup/private data, carried in the data part) has a fixed cap
 * of its own and they carry no application header. */
#define HELLO_MAX_DATA 65536u

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)v);
    put16(p + 2, (uint16_t)(v >> 16));
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)get16(p) | ((uint32_t)get16(p + 2) << 16);
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | ((uint64_t)get32(p + 4) << 32);
}

void px_frame_encode(const px_frame_hdr *h, uint8_t out[PX_FRAME_HDR_LEN])
{
    put16(out + 0, PX_FRAME_MAGIC);
    out[2] = h->version;
    out[3] = h->type;
    put16(out + 4, h->flags);
    put16(out + 6, h->hdr_len);
    put32(out + 8, h->channel);
    put32(out + 12, h->data_len);
    put64(out + 16, h->id);
    put32(out + 24, h->aux);
    put16(out + 28, h->ext_len);
    put16(out + 30, 0);
}

static int is_control(uint8_t type)
{
    switch (type) {
    case PX_FT_RECEIPT:
    case PX_FT_CANCEL:
    case PX_FT_FIN:
    case PX_FT_FIN_ACK:
    case PX_FT_KEEPALIVE:
    case PX_FT_RESET:
        return 1;
    default:
        return 0;
    }
}

/* Structural rules: a violation means the peer is broken or hostile. */
static int check_fields(const px_frame_hdr *h, uint16_t reserved)
{
    if (h->type == 0 || h->type > PX_FT_TYPE_MAX)
        return -PX_EPROTO;
    if (h->flags & ~PX_FF_MASK)
        return -PX_EPROTO;
    if ((h->flags & PX_FF_RECEIPT) && h->type != PX_FT_ONEWAY)
        return -PX_EPROTO;
    if (reserved != 0)
        return -PX_EPROTO;
    if (h->ext_len > PX_FRAME_MAX_EXT)
        return -PX_EPROTO;
    if (is_control(h->type) && (h->hdr_len != 0 || h->data_len != 0))
        return -PX_EPROTO;
    if ((h->type == PX_FT_HELLO || h->type == PX_FT_HELLO_ACK) && h->hdr_len != 0)
        return -PX_EPROTO;
    return 0;
}

/* Size rules: a well-formed frame that this side refuses to take. */
static int check_limits(const px_frame_hdr *h, const px_frame_limits *lim)
{
    if (h->type == PX_FT_HELLO || h->type == PX_FT_HELLO_ACK)
        return h->data_len > HELLO_MAX_DATA ? -PX_EMSGSIZE : 0;
    if (h->hdr_len > lim->max_hdr || h->data_len > lim->max_data)
        return -PX_EMSGSIZE;
    return 0;
}

int px_frame_check(const px_frame_hdr *h, const px_frame_limits *lim)
{
    if (h->version != PX_WIRE_VERSION)
        return -PX_EVERSION;
    int rc = check_fields(h, 0);
    return rc ? rc : check_limits(h, lim);
}

int px_frame_decode(const void *buf, size_t len, const px_frame_limits *lim, px_frame_hdr *out)
{
    if (buf == NULL || lim == NULL || out == NULL)
        return -PX_EINVAL;
    if (len < PX_FRAME_HDR_LEN)
        return -PX_EAGAIN;
    const uint8_t *p = buf;
    if (get16(p) != PX_FRAME_MAGIC)
        return -PX_EPROTO;
    if (p[2] != PX_WIRE_VERSION)
        return -PX_EVERSION;
    px_frame_hdr h = {
        .version = p[2],
        .type = p[3],
        .flags = get16(p + 4),
        .hdr_len = get16(p + 6),
        .channel = get32(p + 8),
        .data_len = get32(p + 12),
        .id = get64(p + 16),
        .aux = get32(p + 24),
        .ext_len = get16(p + 28),
    };
    int rc = check_fields(&h, get16(p + 30));
    if (rc == 0)
        rc = check_limits(&h, lim);
    if (rc == 0)
        *out = h;
    return rc;
}
