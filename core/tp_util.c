/* Small pieces every transport needs the same way: checking what the owner
 * hands down (a send request, a receive destination) and filling a
 * destination vector piece by piece. */
#include <string.h>

#include "plexus/error.h"
#include "plexus/transport.h"

int px_tp_send_check(px_tp_send *req, uint32_t max_iov)
{
    /* The session layer validated the message at the API edge, once: a
     * second pass here would cost every frame as much again. */
    if (req->owner_checked) {
        req->hdr.version = PX_WIRE_VERSION;
        req->hdr.ext_len = 0;
        return req->data_count > max_iov ? -PX_ETOOMANY : 0;
    }
    if (req->hdr.hdr_len && !req->app_hdr)
        return -PX_EINVAL;
    if (req->data_count > max_iov)
        return -PX_ETOOMANY;
    if (req->data_count && !req->data)
        return -PX_EINVAL;
    uint64_t sum = 0;
    for (uint32_t i = 0; i < req->data_count; i++) {
        if (req->data[i].len && !req->data[i].base)
            return -PX_EINVAL;
        sum += req->data[i].len;
    }
    if (sum != req->hdr.data_len)
        return -PX_EINVAL;
    /* A bad frame would cost the peer the whole connection: refuse here
     * whatever the peer's decoder would refuse there. */
    req->hdr.version = PX_WIRE_VERSION;
    req->hdr.ext_len = 0;
    static const px_frame_limits any = {.max_hdr = UINT16_MAX, .max_data = UINT32_MAX};
    return px_frame_check(&req->hdr, &any) ? -PX_EINVAL : 0;
}

size_t px_iov_put(const px_iov *iov, uint32_t count, uint32_t *idx, size_t *off, const void *src,
                  size_t len)
{
    const uint8_t *p = src;
    while (len && *idx < count) {
        const px_iov *d = &iov[*idx];
        size_t room = d->len - *off;
        if (room == 0) {
            (*idx)++;
            *off = 0;
            continue;
        }
        size_t k = room < len ? room : len;
        if (p) {
            memcpy((uint8_t *)d->base + *off, p, k);
            p += k;
        }
        *off += k;
        len -= k;
    }
    return len;
}

void px_tp_send_copy_body(const px_tp_send *s, void *dst)
{
    uint8_t *p = dst;
    if (s->hdr.hdr_len) {
        memcpy(p, s->app_hdr, s->hdr.hdr_len);
        p += s->hdr.hdr_len;
    }
    for (uint32_t i = 0; i < s->data_count; i++) {
        if (s->data[i].len)
            memcpy(p, s->data[i].base, s->data[i].len);
        p += s->data[i].len;
    }
}
