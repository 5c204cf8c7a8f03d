/* Fuzz the handshake bodies (HELLO / HELLO_ACK): whatever a decode accepts
 * must point inside the input and re-encode to the very same bytes. */
#include <string.h>

#include "fuzz.h"
#include "plexus/error.h"
#include "session/handshake.h"

static int inside(const void *p, size_t n, const uint8_t *data, size_t size)
{
    const uint8_t *b = p;
    return n == 0 || (b >= data && b + n <= data + size);
}

static void hello(const uint8_t *data, size_t size)
{
    px_hello h;
    int rc = px_hello_decode(data, size, &h);
    FUZZ_CHECK(rc == 0 || rc == -PX_EPROTO || rc == -PX_EVERSION);
    if (rc != 0)
        return;
    FUZZ_CHECK(inside(h.uri, h.uri_len, data, size) && inside(h.priv, h.priv_len, data, size));
    FUZZ_CHECK(h.priv_len <= PX_HS_MAX_PRIV && h.queue_depth >= 1);
    static uint8_t again[2 * 65536];
    int n = px_hello_encode(&h, again, sizeof(again));
    FUZZ_CHECK(n == (int)size && memcmp(again, data, size) == 0);
}

static void hello_ack(const uint8_t *data, size_t size)
{
    px_hello_ack a;
    int rc = px_hello_ack_decode(data, size, &a);
    FUZZ_CHECK(rc == 0 || rc == -PX_EPROTO || rc == -PX_EVERSION);
    if (rc != 0)
        return;
    FUZZ_CHECK(a.status <= PX_HS_REDIRECT && a.n_uris <= PX_HS_MAX_URIS);
    FUZZ_CHECK(inside(a.data, a.data_len, data, size));
    for (unsigned i = 0; i < a.n_uris; i++)
        FUZZ_CHECK(a.uri_lens[i] > 0 && inside(a.uris[i], a.uri_lens[i], data, size));
    static uint8_t again[2 * 65536];
    int n = px_hello_ack_encode(&a, again, sizeof(again));
    FUZZ_CHECK(n == (int)size && memcmp(again, data, size) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hello(data, size);
    hello_ack(data, size);
    return 0;
}
