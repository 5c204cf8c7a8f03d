/* Frame codec: the exact wire layout, and every field decode refuses. */
#include <stdlib.h>
#include <string.h>

#include "plexus/error.h"
#include "plexus/transport.h"
#include "px_check.h"

static const px_frame_limits lim = {.max_hdr = 4096, .max_data = 1u << 20};

static px_frame_hdr sample(void)
{
    return (px_frame_hdr){.version = PX_WIRE_VERSION,
                          .type = PX_FT_ONEWAY,
                          .flags = PX_FF_RECEIPT,
                          .hdr_len = 0x0102,
                          .ext_len = 0x0304,
                          .channel = 0x05060708,
                          .data_len = 0x00090a0b,
                          .id = 0x1112131415161718ull,
                          .aux = 0x21222324};
}

/* The layout of transport.h, byte for byte, little-endian. */
static const uint8_t sample_wire[32] = {
    0x50, 0x58, 0x01, 0x05, 0x01, 0x00, 0x02, 0x01, 0x08, 0x07, 0x06, 0x05, 0x0b, 0x0a, 0x09, 0x00,
    0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11, 0x24, 0x23, 0x22, 0x21, 0x04, 0x03, 0x00, 0x00,
};

static int decode_hdr(const px_frame_hdr *h, px_frame_hdr *out)
{
    uint8_t w[PX_FRAME_HDR_LEN];
    px_frame_encode(h, w);
    return px_frame_decode(w, sizeof(w), &lim, out);
}

/* Decode `h` with one wire byte overwritten. */
static int decode_patched(px_frame_hdr h, size_t off, uint8_t val)
{
    uint8_t w[PX_FRAME_HDR_LEN];
    px_frame_hdr out;
    h.ext_len = 0;
    px_frame_encode(&h, w);
    w[off] = val;
    return px_frame_decode(w, sizeof(w), &lim, &out);
}

START_TEST(encode_layout)
{
    px_frame_hdr h = sample();
    uint8_t w[PX_FRAME_HDR_LEN];
    memset(w, 0xee, sizeof(w));
    px_frame_encode(&h, w);
    ck_assert_mem_eq(w, sample_wire, sizeof(w));
}
END_TEST

static void assert_hdr_eq(const px_frame_hdr *a, const px_frame_hdr *b)
{
    ck_assert_uint_eq(a->version, b->version);
    ck_assert_uint_eq(a->type, b->type);
    ck_assert_uint_eq(a->flags, b->flags);
    ck_assert_uint_eq(a->hdr_len, b->hdr_len);
    ck_assert_uint_eq(a->ext_len, b->ext_len);
    ck_assert_uint_eq(a->channel, b->channel);
    ck_assert_uint_eq(a->data_len, b->data_len);
    ck_assert_uint_eq(a->id, b->id);
    ck_assert_uint_eq(a->aux, b->aux);
}

START_TEST(decode_layout)
{
    px_frame_hdr out, want = sample();
    memset(&out, 0, sizeof(out));
    ck_assert_int_eq(px_frame_decode(sample_wire, 32, &lim, &out), 0);
    ck_assert_uint_eq(out.channel, 0x05060708);
    ck_assert_uint_eq(out.id, 0x1112131415161718ull);
    assert_hdr_eq(&out, &want);
    ck_assert_uint_eq(px_frame_len(&out), 32 + 0x0304 + 0x0102 + 0x00090a0b);
    /* The same bytes against a tighter limit. */
    const px_frame_limits small = {.max_hdr = 0x0101, .max_data = 1u << 20};
    ck_assert_int_eq(px_frame_decode(sample_wire, 32, &small, &out), -PX_EMSGSIZE);
}
END_TEST

START_TEST(truncated)
{
    px_frame_hdr h = sample(), out;
    h.ext_len = 0;
    uint8_t w[64];
    px_frame_encode(&h, w);
    for (size_t len = 0; len < PX_FRAME_HDR_LEN; len++)
        ck_assert_int_eq(px_frame_decode(w, len, &lim, &out), -PX_EAGAIN);
    h.hdr_len = 1;
    h.data_len = 1;
    px_frame_encode(&h, w);
    /* Extra bytes after the header are the payload, not an error. */
    ck_assert_int_eq(px_frame_decode(w, sizeof(w), &lim, &out), 0);
    ck_assert_int_eq(px_frame_decode(NULL, 32, &lim, &out), -PX_EINVAL);
    ck_assert_int_eq(px_frame_decode(w, 32, NULL, &out), -PX_EINVAL);
}
END_TEST

START_TEST(bad_magic)
{
    px_frame_hdr h = sample();
    ck_assert_int_eq(decode_patched(h, 0, 0x51), -PX_EPROTO);
    ck_assert_int_eq(decode_patched(h, 1, 0x00), -PX_EPROTO);
}
END_TEST

START_TEST(bad_version)
{
    px_frame_hdr h = sample();
    ck_assert_int_eq(decode_patched(h, 2, 0), -PX_EVERSION);
    ck_assert_int_eq(decode_patched(h, 2, 2), -PX_EVERSION);
    ck_assert_int_eq(decode_patched(h, 2, 0xff), -PX_EVERSION);
}
END_TEST

START_TEST(bad_type)
{
    px_frame_hdr h = sample();
    h.flags = 0;
    h.hdr_len = 0;
    h.data_len = 0;
    ck_assert_int_eq(decode_patched(h, 3, 0), -PX_EPROTO);
    ck_assert_int_eq(decode_patched(h, 3, PX_FT_TYPE_MAX + 1), -PX_EPROTO);
    ck_assert_int_eq(decode_patched(h, 3, 0xff), -PX_EPROTO);
    for (uint8_t t = 1; t <= PX_FT_TYPE_MAX; t++)
        ck_assert_int_eq(decode_patched(h, 3, t), 0);
}
END_TEST

START_TEST(bad_flags)
{
    px_frame_hdr h = sample(), out;
    h.ext_len = 0;
    ck_assert_int_eq(decode_patched(h, 4, 0x02), -PX_EPROTO);
    ck_assert_int_eq(decode_patched(h, 5, 0x80), -PX_EPROTO);
    h.flags = 0;
    ck_assert_int_eq(decode_hdr(&h, &out), 0);
    ck_assert_uint_eq(out.flags, 0);
    /* RECEIPT is meaningful only on a one-way message. */
    h.flags = PX_FF_RECEIPT;
    h.type = PX_FT_REQUEST;
    ck_assert_int_eq(decode_hdr(&h, &out), -PX_EPROTO);
    h.type = PX_FT_RESPONSE;
    ck_assert_int_eq(decode_hdr(&h, &out), -PX_EPROTO);
}
END_TEST

START_TEST(bad_reserved)
{
    px_frame_hdr h = sample();
    ck_assert_int_eq(decode_patched(h, 30, 1), -PX_EPROTO);
    ck_assert_int_eq(decode_patched(h, 31, 0x80), -PX_EPROTO);
}
END_TEST

START_TEST(ext_len_limit)
{
    px_frame_hdr h = sample(), out;
    h.ext_len = PX_FRAME_MAX_EXT;
    ck_assert_int_eq(decode_hdr(&h, &out), 0);
    h.ext_len = PX_FRAME_MAX_EXT + 1;
    ck_assert_int_eq(decode_hdr(&h, &out), -PX_EPROTO);
    h.ext_len = 0xffff;
    ck_assert_int_eq(decode_hdr(&h, &out), -PX_EPROTO);
}
END_TEST

START_TEST(size_limits)
{
    px_frame_hdr h = sample(), out;
    h.type = PX_FT_REQUEST;
    h.flags = 0;
    h.hdr_len = lim.max_hdr;
    h.data_len = lim.max_data;
    ck_assert_int_eq(decode_hdr(&h, &out), 0);
    h.hdr_len = lim.max_hdr + 1;
    ck_assert_int_eq(decode_hdr(&h, &out), -PX_EMSGSIZE);
    h.hdr_len = 0;
    h.data_len = lim.max_data + 1;
    ck_assert_int_eq(decode_hdr(&h, &out), -PX_EMSGSIZE);
    h.data_len = 0xffffffffu;
    ck_assert_int_eq(decode_hdr(&h, &out), -PX_EMSGSIZE);
}
END_TEST

START_TEST(control_no_payload)
{
    static const uint8_t ctl[] = {PX_FT_RECEIPT, PX_FT_CANCEL,    PX_FT_FIN,
                                  PX_FT_FIN_ACK, PX_FT_KEEPALIVE, PX_FT_RESET};
    px_frame_hdr out;
    for (size_t i = 0; i < sizeof(ctl); i++) {
        px_frame_hdr h = {.version = PX_WIRE_VERSION, .type = ctl[i], .id = 7};
        ck_assert_int_eq(decode_hdr(&h, &out), 0);
        ck_assert_uint_eq(out.id, 7);
        h.hdr_len = 1;
        ck_assert_int_eq(decode_hdr(&h, &out), -PX_EPROTO);
        h.hdr_len = 0;
        h.data_len = 1;
        ck_assert_int_eq(decode_hdr(&h, &out), -PX_EPROTO);
        /* A structural error, not a size one, even past the limits. */
        h.data_len = 0xffffffffu;
        ck_assert_int_eq(decode_hdr(&h, &out), -PX_EPROTO);
    }
}
END_TEST

START_TEST(hello_rules)
{
    const px_frame_limits tiny = {.max_hdr = 0, .max_data = 10};
    uint8_t w[PX_FRAME_HDR_LEN];
    px_frame_hdr out;
    for (uint8_t t = PX_FT_HELLO; t <= PX_FT_HELLO_ACK; t++) {
        px_frame_hdr h = {.version = PX_WIRE_VERSION, .type = t, .data_len = 65536};
        px_frame_encode(&h, w);
        ck_assert_int_eq(px_frame_decode(w, sizeof(w), &tiny, &out), 0);
        ck_assert_uint_eq(out.data_len, 65536);
        h.data_len = 65537;
        px_frame_encode(&h, w);
        ck_assert_int_eq(px_frame_decode(w, sizeof(w), &tiny, &out), -PX_EMSGSIZE);
        h.data_len = 1;
        h.hdr_len = 1;
        px_frame_encode(&h, w);
        ck_assert_int_eq(px_frame_decode(w, sizeof(w), &lim, &out), -PX_EPROTO);
    }
}
END_TEST

START_TEST(error_leaves_out)
{
    px_frame_hdr h = sample(), out;
    memset(&out, 0x5a, sizeof(out));
    h.ext_len = 0xffff;
    ck_assert_int_eq(decode_hdr(&h, &out), -PX_EPROTO);
    ck_assert_uint_eq(out.id, 0x5a5a5a5a5a5a5a5aull);
}
END_TEST

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* A header decode must accept, built from random bits within the rules. */
static px_frame_hdr random_valid(void)
{
    px_frame_hdr h = {.version = PX_WIRE_VERSION};
    h.type = (uint8_t)(1 + rnd() % PX_FT_TYPE_MAX);
    h.flags = (h.type == PX_FT_ONEWAY && (rnd() & 1)) ? PX_FF_RECEIPT : 0;
    h.ext_len = (uint16_t)(rnd() % (PX_FRAME_MAX_EXT + 1));
    h.channel = (uint32_t)rnd();
    h.id = rnd();
    h.aux = (uint32_t)rnd();
    if (h.type == PX_FT_HELLO || h.type == PX_FT_HELLO_ACK) {
        h.data_len = (uint32_t)(rnd() % 65537);
    } else if (h.type >= PX_FT_REQUEST && h.type <= PX_FT_ONEWAY) {
        h.hdr_len = (uint16_t)(rnd() % (lim.max_hdr + 1));
        h.data_len = (uint32_t)(rnd() % (lim.max_data + 1));
    }
    return h;
}

START_TEST(round_trip_random)
{
    for (int i = 0; i < 100000; i++) {
        px_frame_hdr h = random_valid(), out;
        uint8_t w[PX_FRAME_HDR_LEN], w2[PX_FRAME_HDR_LEN];
        px_frame_encode(&h, w);
        ck_assert_int_eq(px_frame_decode(w, sizeof(w), &lim, &out), 0);
        assert_hdr_eq(&out, &h);
        px_frame_encode(&out, w2);
        ck_assert_mem_eq(w, w2, sizeof(w));
    }
}
END_TEST

/* Random bit flips: decode either refuses, or what it accepted re-encodes
 * to the same bytes (no field is silently dropped or normalised). */
START_TEST(mutation_random)
{
    int accepted = 0, refused = 0;
    for (int i = 0; i < 100000; i++) {
        px_frame_hdr h = random_valid(), out;
        uint8_t w[PX_FRAME_HDR_LEN], w2[PX_FRAME_HDR_LEN];
        px_frame_encode(&h, w);
        w[rnd() % sizeof(w)] ^= (uint8_t)(1u << (rnd() % 8));
        if (px_frame_decode(w, sizeof(w), &lim, &out) == 0) {
            px_frame_encode(&out, w2);
            ck_assert_mem_eq(w, w2, sizeof(w));
            accepted++;
        } else {
            refused++;
        }
    }
    ck_assert_int_gt(accepted, 1000);
    ck_assert_int_gt(refused, 1000);
}
END_TEST

/* The transports' check of a send. Unvouched, it refuses what the peer's
 * decoder would and segments that do not add up; vouched for by the owner
 * (owner_checked), it still refuses more segments than the transport takes,
 * and it sets the fields that are the transport's either way. */
static px_tp_send sample_send(const px_iov *seg, uint32_t count, uint32_t data_len)
{
    return (px_tp_send){
        .hdr = {.type = PX_FT_ONEWAY, .data_len = data_len, .version = 0, .ext_len = 7},
        .data = seg,
        .data_count = count};
}

START_TEST(send_check_unvouched)
{
    char a[8], b[8];
    px_iov seg[2] = {{.base = a, .len = sizeof(a)}, {.base = b, .len = sizeof(b)}};
    px_tp_send s = sample_send(seg, 2, 16);
    ck_assert_int_eq(px_tp_send_check(&s, 4), 0);
    ck_assert_int_eq(s.hdr.version, PX_WIRE_VERSION);
    ck_assert_int_eq(s.hdr.ext_len, 0);
    s = sample_send(seg, 2, 15); /* the sum is not data_len */
    ck_assert_int_eq(px_tp_send_check(&s, 4), -PX_EINVAL);
    s = sample_send(seg, 2, 16);
    ck_assert_int_eq(px_tp_send_check(&s, 1), -PX_ETOOMANY);
    px_iov hole[2] = {{.base = a, .len = sizeof(a)}, {.base = NULL, .len = 8}};
    s = sample_send(hole, 2, 16);
    ck_assert_int_eq(px_tp_send_check(&s, 4), -PX_EINVAL);
    s = sample_send(NULL, 2, 16);
    ck_assert_int_eq(px_tp_send_check(&s, 4), -PX_EINVAL);
    s = sample_send(seg, 2, 16);
    s.hdr.hdr_len = 4; /* an application header with no bytes */
    ck_assert_int_eq(px_tp_send_check(&s, 4), -PX_EINVAL);
    s = sample_send(seg, 2, 16);
    s.hdr.type = 0x7f; /* no such frame type: the peer would drop the connection */
    ck_assert_int_eq(px_tp_send_check(&s, 4), -PX_EINVAL);
}
END_TEST

START_TEST(send_check_vouched)
{
    char a[8], b[8];
    px_iov seg[2] = {{.base = a, .len = sizeof(a)}, {.base = b, .len = sizeof(b)}};
    px_tp_send s = sample_send(seg, 2, 16);
    s.owner_checked = 1;
    ck_assert_int_eq(px_tp_send_check(&s, 2), 0);
    ck_assert_int_eq(s.hdr.version, PX_WIRE_VERSION);
    ck_assert_int_eq(s.hdr.ext_len, 0);
    ck_assert_int_eq(px_tp_send_check(&s, 1), -PX_ETOOMANY);
}
END_TEST

PX_CHECK_MAIN("frame", encode_layout, decode_layout, truncated, bad_magic, bad_version, bad_type,
              bad_flags, bad_reserved, ext_len_limit, size_limits, control_no_payload, hello_rules,
              error_leaves_out, round_trip_random, mutation_random, send_check_unvouched,
              send_check_vouched)
