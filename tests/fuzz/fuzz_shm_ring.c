/* Fuzz the shm ring's consumer against a peer that writes anything at all
 * into the shared segment: the bytes of the ring, its head, and the tail
 * we published (the peer may scribble on that too). Whatever peek hands
 * back must lie inside the ring and within the record limit, and the
 * cursor may only move forward, by whole cache lines. */
#include <string.h>

#include "fuzz.h"
#include "plexus/error.h"
#include "transports/shm/shm_ring.h"

#define RING 4096u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static shm_ring_ctl ctl;
    static uint8_t ring[RING] __attribute__((aligned(64)));
    if (size < 16)
        return 0;
    uint64_t head, start;
    memcpy(&head, data, 8);
    memcpy(&start, data + 8, 8);
    memset(&ctl, 0, sizeof(ctl));
    memset(ring, 0, sizeof(ring));
    memcpy(ring, data + 16, size - 16 < RING ? size - 16 : RING);
    shm_ring r;
    shm_ring_init(&r, &ctl, ring, RING);
    /* Our private cursor starts anywhere aligned (a ring long in use). */
    r.pos = r.cached = start & ~(uint64_t)(SHM_CL - 1);
    ctl.tail = r.pos;
    ctl.head = head;
    for (int i = 0; i < 256; i++) {
        uint16_t kind;
        const uint8_t *p;
        uint32_t len;
        uint64_t before = r.pos;
        int rc = shm_ring_peek(&r, &kind, &p, &len);
        FUZZ_CHECK(rc == 0 || rc == 1 || rc == -PX_EPROTO);
        if (rc != 1)
            break;
        FUZZ_CHECK(kind != SHM_REC_PAD && kind <= SHM_REC_KIND_MAX);
        FUZZ_CHECK(len <= shm_rec_max(RING));
        FUZZ_CHECK(p >= ring && p + len <= ring + RING);
        shm_ring_consume(&r, len);
        FUZZ_CHECK(r.pos > before && (r.pos - before) % SHM_CL == 0);
        FUZZ_CHECK(r.pos - ctl.tail <= RING);
        shm_ring_release(&r);
        FUZZ_CHECK(ctl.tail == r.pos);
        /* The peer keeps scribbling: the next input byte moves the head. */
        if (16 + RING + (size_t)i < size)
            ctl.head += data[16 + RING + i];
    }
    return 0;
}
