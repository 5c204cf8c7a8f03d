/* Handshake body codec: a tiny cursor over a byte buffer. */
#include <string.h>

#include "plexus/error.h"
#include "plexus/transport.h"
#include "session/handshake.h"

/* A bounded write/read position; `bad` latches any overrun. */
typedef struct cursor {
    uint8_t *w;
    const uint8_t *r;
    size_t pos, cap;
    int bad;
} cursor;

static void put(cursor *c, const void *p, size_t n)
{
    if (c->bad || n > c->cap - c->pos) {
        c->bad = 1;
        return;
    }
    if (n == 0) /* p may be NULL for an empty part */
        return;
    memcpy(c->w + c->pos, p, n);
    c->pos += n;
}
static void put_u16(cursor *c, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    put(c, b, 2);
}
static void put_u32(cursor *c, uint32_t v)
{
    put_u16(c, (uint16_t)v);
    put_u16(c, (uint16_t)(v >> 16));
}
static void put_u64(cursor *c, uint64_t v)
{
    put_u32(c, (uint32_t)v);
    put_u32(c, (uint32_t)(v >> 32));
}

static const uint8_t *take(cursor *c, size_t n)
{
    if (c->bad || n > c->cap - c->pos) {
        c->bad = 1;
        return NULL;
    }
    const uint8_t *p = c->r + c->pos;
    c->pos += n;
    return p;
}
static uint16_t get_u16(cursor *c)
{
    const uint8_t *p = take(c, 2);
    return p ? (uint16_t)(p[0] | p[1] << 8) : 0;
}
static uint32_t get_u32(cursor *c)
{
    uint32_t lo = get_u16(c);
    return lo | (uint32_t)get_u16(c) << 16;
}
static uint64_t get_u64(cursor *c)
{
    uint64_t lo = get_u32(c);
    return lo | (uint64_t)get_u32(c) << 32;
}

int px_hello_encode(const px_hello *h, void *buf, size_t cap)
{
    if (h->priv_len > PX_HS_MAX_PRIV || h->uri_len > PX_HS_MAX_URI_LEN)
        return -PX_EMSGSIZE;
    cursor c = {.w = buf, .cap = cap};
    put_u32(&c, PX_HS_MAGIC);
    put_u16(&c, h->min_version);
    put_u16(&c, h->max_version);
    put_u32(&c, h->queue_depth);
    put_u64(&c, h->max_msg);
    put_u32(&c, h->max_hdr);
    put_u32(&c, h->max_iov);
    put_u32(&c, h->keepalive_ms);
    put_u64(&c, h->token);
    put_u16(&c, h->uri_len);
    put_u16(&c, h->priv_len);
    put(&c, h->uri, h->uri_len);
    put(&c, h->priv, h->priv_len);
    return c.bad ? -PX_ENOSPC : (int)c.pos;
}

/* Limits every handshake must satisfy before anyone uses them. */
static int sane_limits(uint32_t depth, uint64_t max_msg, uint32_t max_hdr, uint32_t max_iov,
                       uint32_t keepalive_ms)
{
    return depth >= 1 && depth <= 65536 && max_msg <= UINT32_MAX && max_hdr <= 65535 &&
           max_iov >= 1 && max_iov <= 1024 && keepalive_ms >= 1;
}

int px_hello_decode(const void *buf, size_t len, px_hello *h)
{
    cursor c = {.r = buf, .cap = len};
    memset(h, 0, sizeof(*h));
    if (get_u32(&c) != PX_HS_MAGIC)
        return -PX_EPROTO;
    h->min_version = get_u16(&c);
    h->max_version = get_u16(&c);
    h->queue_depth = get_u32(&c);
    h->max_msg = get_u64(&c);
    h->max_hdr = get_u32(&c);
    h->max_iov = get_u32(&c);
    h->keepalive_ms = get_u32(&c);
    h->token = get_u64(&c);
    h->uri_len = get_u16(&c);
    h->priv_len = get_u16(&c);
    if (c.bad || h->uri_len > PX_HS_MAX_URI_LEN || h->priv_len > PX_HS_MAX_PRIV)
        return -PX_EPROTO;
    h->uri = (const char *)take(&c, h->uri_len);
    h->priv = take(&c, h->priv_len);
    if (c.bad || c.pos != len)
        return -PX_EPROTO;
    if (h->min_version > h->max_version)
        return -PX_EPROTO;
    if (!sane_limits(h->queue_depth, h->max_msg, h->max_hdr, h->max_iov, h->keepalive_ms))
        return -PX_EPROTO;
    if (h->min_version > PX_WIRE_VERSION || h->max_version < PX_WIRE_VERSION)
        return -PX_EVERSION;
    return 0;
}

int px_hello_ack_encode(const px_hello_ack *a, void *buf, size_t cap)
{
    if (a->data_len > PX_HS_MAX_PRIV || a->n_uris > PX_HS_MAX_URIS)
        return -PX_EMSGSIZE;
    cursor c = {.w = buf, .cap = cap};
    put_u32(&c, PX_HS_MAGIC);
    put_u16(&c, a->version);
    put_u16(&c, a->status);
    put_u32(&c, (uint32_t)a->reason);
    put_u32(&c, a->queue_depth);
    put_u64(&c, a->max_msg);
    put_u32(&c, a->max_hdr);
    put_u32(&c, a->max_iov);
    put_u32(&c, a->keepalive_ms);
    put_u64(&c, a->token);
    put_u16(&c, a->data_len);
    put_u16(&c, a->n_uris);
    put(&c, a->data, a->data_len);
    for (unsigned i = 0; i < a->n_uris; i++) {
        if (a->uri_lens[i] > PX_HS_MAX_URI_LEN)
            return -PX_EMSGSIZE;
        put_u16(&c, a->uri_lens[i]);
        put(&c, a->uris[i], a->uri_lens[i]);
    }
    return c.bad ? -PX_ENOSPC : (int)c.pos;
}

int px_hello_ack_decode(const void *buf, size_t len, px_hello_ack *a)
{
    cursor c = {.r = buf, .cap = len};
    memset(a, 0, sizeof(*a));
    if (get_u32(&c) != PX_HS_MAGIC)
        return -PX_EPROTO;
    a->version = get_u16(&c);
    a->status = get_u16(&c);
    a->reason = (int32_t)get_u32(&c);
    a->queue_depth = get_u32(&c);
    a->max_msg = get_u64(&c);
    a->max_hdr = get_u32(&c);
    a->max_iov = get_u32(&c);
    a->keepalive_ms = get_u32(&c);
    a->token = get_u64(&c);
    a->data_len = get_u16(&c);
    a->n_uris = get_u16(&c);
    if (c.bad || a->data_len > PX_HS_MAX_PRIV || a->n_uris > PX_HS_MAX_URIS)
        return -PX_EPROTO;
    a->data = take(&c, a->data_len);
    for (unsigned i = 0; i < a->n_uris; i++) {
        a->uri_lens[i] = get_u16(&c);
        if (a->uri_lens[i] == 0 || a->uri_lens[i] > PX_HS_MAX_URI_LEN)
            return -PX_EPROTO;
        a->uris[i] = (const char *)take(&c, a->uri_lens[i]);
    }
    if (c.bad || c.pos != len)
        return -PX_EPROTO;
    if (a->version != PX_WIRE_VERSION)
        return -PX_EVERSION;
    if (a->status > PX_HS_REDIRECT)
        return -PX_EPROTO;
    if (a->status == PX_HS_ACCEPT &&
        !sane_limits(a->queue_depth, a->max_msg, a->max_hdr, a->max_iov, a->keepalive_ms))
        return -PX_EPROTO;
    if (a->status == PX_HS_REDIRECT && a->n_uris == 0)
        return -PX_EPROTO;
    if (a->status == PX_HS_REJECT && a->reason >= 0)
        return -PX_EPROTO;
    return 0;
}
