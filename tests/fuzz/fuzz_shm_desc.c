/* Fuzz the descriptors of large shm frames (ext bytes of a CMA record,
 * copied out of the ring by the receiver): what parses must cover exactly
 * the frame's data in non-empty segments, and no more segments than the
 * descriptor may carry; an address range may not wrap. */
#include <string.h>

#include "fuzz.h"
#include "plexus/error.h"
#include "transports/shm/shm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 6)
        return 0;
    px_frame_hdr h = {.version = 1, .type = PX_FT_REQUEST};
    memcpy(&h.data_len, data, 4);
    uint16_t ext_len;
    memcpy(&ext_len, data + 4, 2);
    size_t have = size - 6;
    if (ext_len > PX_FRAME_MAX_EXT || ext_len > have)
        ext_len = (uint16_t)(have < PX_FRAME_MAX_EXT ? have : PX_FRAME_MAX_EXT);
    h.ext_len = ext_len;
    static uint8_t ext[PX_FRAME_MAX_EXT];
    memcpy(ext, data + 6, ext_len);
    int flags = shm_desc_flags(&h, ext);
    FUZZ_CHECK(flags == -1 || flags == 0 || flags == 1);
    if (flags < 0)
        return 0;
    uint64_t sum = 0;
    uint32_t n = 0;
    if (flags == 0) {
        cma_seg segs[SHM_CMA_MAX_SEG];
        if (shm_desc_parse_cma(&h, ext, segs, &n) != 0)
            return 0;
        FUZZ_CHECK(n >= 1 && n <= SHM_CMA_MAX_SEG);
        for (uint32_t i = 0; i < n; i++) {
            FUZZ_CHECK(segs[i].len > 0 && segs[i].addr + segs[i].len >= segs[i].addr);
            sum += segs[i].len;
        }
    } else {
        shm_pool_seg segs[SHM_POOL_NSEG];
        if (shm_desc_parse_pool(&h, ext, segs, &n) != 0)
            return 0;
        FUZZ_CHECK(n >= 1 && n <= SHM_POOL_NSEG);
        for (uint32_t i = 0; i < n; i++) {
            FUZZ_CHECK(segs[i].len > 0);
            sum += segs[i].len;
        }
    }
    FUZZ_CHECK(sum == h.data_len);
    return 0;
}
