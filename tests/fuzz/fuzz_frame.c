/* Fuzz px_frame_decode: whatever it accepts must obey the rules it claims
 * to check and re-encode to the very bytes it came from. */
#include <string.h>

#include "fuzz.h"
#include "plexus/error.h"
#include "plexus/transport.h"

static int is_control(uint8_t type)
{
    return type >= PX_FT_RECEIPT && type <= PX_FT_RESET;
}

static void check_accepted(const uint8_t *data, const px_frame_hdr *h, const px_frame_limits *lim)
{
    FUZZ_CHECK(h->version == PX_WIRE_VERSION);
    FUZZ_CHECK(h->type >= 1 && h->type <= PX_FT_TYPE_MAX);
    FUZZ_CHECK((h->flags & ~PX_FF_MASK) == 0);
    FUZZ_CHECK(!(h->flags & PX_FF_RECEIPT) || h->type == PX_FT_ONEWAY);
    FUZZ_CHECK(h->ext_len <= PX_FRAME_MAX_EXT);
    if (is_control(h->type))
        FUZZ_CHECK(h->hdr_len == 0 && h->data_len == 0);
    if (h->type == PX_FT_HELLO || h->type == PX_FT_HELLO_ACK)
        FUZZ_CHECK(h->hdr_len == 0 && h->data_len <= 65536);
    else
        FUZZ_CHECK(h->hdr_len <= lim->max_hdr && h->data_len <= lim->max_data);
    uint8_t again[PX_FRAME_HDR_LEN];
    px_frame_encode(h, again);
    FUZZ_CHECK(memcmp(again, data, PX_FRAME_HDR_LEN) == 0);
}

static void one(const uint8_t *data, size_t size, const px_frame_limits *lim)
{
    px_frame_hdr h;
    int rc = px_frame_decode(data, size, lim, &h);
    if (size < PX_FRAME_HDR_LEN) {
        FUZZ_CHECK(rc == -PX_EAGAIN);
        return;
    }
    FUZZ_CHECK(rc == 0 || rc == -PX_EPROTO || rc == -PX_EVERSION || rc == -PX_EMSGSIZE);
    if (rc == 0)
        check_accepted(data, &h, lim);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const px_frame_limits roomy = {.max_hdr = 65535, .max_data = 0xffffffffu};
    static const px_frame_limits usual = {.max_hdr = 4096, .max_data = 64u << 20};
    static const px_frame_limits tiny = {.max_hdr = 0, .max_data = 16};
    one(data, size, &roomy);
    one(data, size, &usual);
    one(data, size, &tiny);
    return 0;
}
