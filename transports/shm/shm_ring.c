/* The SPSC record ring; see shm_ring.h for the layout and the trust rules. */
#include "transports/shm/shm_ring.h"

#include <string.h>

#include <plexus/error.h>

void shm_ring_init(shm_ring *r, shm_ring_ctl *ctl, uint8_t *data, uint32_t size)
{
    r->ctl = ctl;
    r->data = data;
    r->size = size;
    r->pos = 0;
    r->cached = 0;
}

/* ---- producer -------------------------------------------------------------- */

uint32_t shm_ring_room_cached(const shm_ring *r)
{
    return r->size - (uint32_t)(r->pos - r->cached);
}

/* Re-read the tail. A tail behind the one we saw or ahead of what we
 * published is a lie from the peer. */
static int refresh_tail(shm_ring *r)
{
    uint64_t t = __atomic_load_n(&r->ctl->tail, __ATOMIC_ACQUIRE);
    if (t < r->cached || t > r->pos || (t & (SHM_CL - 1)))
        return -PX_EPROTO;
    r->cached = t;
    return 0;
}

static void write_hdr(shm_ring *r, uint32_t off, uint32_t len, uint16_t kind)
{
    shm_rec h = {.len = len, .kind = kind};
    memcpy(r->data + off, &h, sizeof h);
}

int shm_ring_reserve(shm_ring *r, uint32_t len, uint8_t **payload)
{
    if (len > shm_rec_max(r->size))
        return -PX_EMSGSIZE;
    uint32_t total = shm_rec_total(len);
    uint32_t off = (uint32_t)(r->pos & (r->size - 1));
    uint32_t pad = off + total > r->size ? r->size - off : 0;
    if (shm_ring_room_cached(r) < pad + total) {
        int rc = refresh_tail(r);
        if (rc)
            return rc;
        if (shm_ring_room_cached(r) < pad + total)
            return -PX_EAGAIN;
    }
    if (pad) {
        write_hdr(r, off, pad - SHM_REC_HDR, SHM_REC_PAD);
        r->pos += pad;
        off = 0;
    }
    *payload = r->data + off + SHM_REC_HDR;
    return 0;
}

void shm_ring_commit(shm_ring *r, uint32_t len, uint16_t kind)
{
    write_hdr(r, (uint32_t)(r->pos & (r->size - 1)), len, kind);
    r->pos += shm_rec_total(len);
}

void shm_ring_publish(shm_ring *r)
{
    __atomic_store_n(&r->ctl->head, r->pos, __ATOMIC_RELEASE);
}

/* ---- consumer -------------------------------------------------------------- */

static int refresh_head(shm_ring *r)
{
    uint64_t h = __atomic_load_n(&r->ctl->head, __ATOMIC_ACQUIRE);
    if (h < r->cached || h - r->pos > r->size || (h & (SHM_CL - 1)))
        return -PX_EPROTO;
    r->cached = h;
    return 0;
}

int shm_ring_nonempty(const shm_ring *r)
{
    return __atomic_load_n(&r->ctl->head, __ATOMIC_ACQUIRE) != r->pos;
}

/* The record header at `pos`, copied out once. Returns its total length,
 * or 0 when it is impossible for the `avail` published bytes. */
static uint32_t read_rec(const shm_ring *r, uint64_t pos, uint64_t avail, uint16_t *kind,
                         uint32_t *len)
{
    uint32_t off = (uint32_t)(pos & (r->size - 1));
    const shm_rec *h = (const shm_rec *)(const void *)(r->data + off);
    *len = __atomic_load_n(&h->len, __ATOMIC_RELAXED);
    *kind = __atomic_load_n(&h->kind, __ATOMIC_RELAXED);
    if (*kind < SHM_REC_PAD || *kind > SHM_REC_KIND_MAX || *len > r->size - SHM_REC_HDR)
        return 0;
    uint32_t total = shm_rec_total(*len);
    if (total > avail || off + total > r->size)
        return 0;
    /* A PAD runs exactly to the end; anything else fits half the ring. */
    if (*kind == SHM_REC_PAD ? off + total != r->size : *len > shm_rec_max(r->size))
        return 0;
    return total;
}

int shm_ring_peek(shm_ring *r, uint16_t *kind, const uint8_t **payload, uint32_t *len)
{
    for (;;) {
        if (r->pos == r->cached) {
            int rc = refresh_head(r);
            if (rc)
                return rc;
            if (r->pos == r->cached)
                return 0;
        }
        uint32_t total = read_rec(r, r->pos, r->cached - r->pos, kind, len);
        if (total == 0)
            return -PX_EPROTO;
        if (*kind != SHM_REC_PAD) {
            *payload = r->data + (uint32_t)(r->pos & (r->size - 1)) + SHM_REC_HDR;
            return 1;
        }
        r->pos += total;
    }
}

void shm_ring_consume(shm_ring *r, uint32_t len)
{
    r->pos += shm_rec_total(len);
}

void shm_ring_release(shm_ring *r)
{
    __atomic_store_n(&r->ctl->tail, r->pos, __ATOMIC_RELEASE);
}

uint32_t shm_ring_count_after(const shm_ring *r, uint64_t pos, uint32_t max)
{
    uint32_t n = 0;
    while (n < max && pos < r->cached) {
        uint16_t kind;
        uint32_t len;
        uint32_t total = read_rec(r, pos, r->cached - pos, &kind, &len);
        if (total == 0)
            break;
        if (kind == SHM_REC_FRAME || kind == SHM_REC_CMA)
            n++;
        else if (kind != SHM_REC_PAD)
            break; /* a chunked frame is not complete yet */
        pos += total;
    }
    return n;
}
