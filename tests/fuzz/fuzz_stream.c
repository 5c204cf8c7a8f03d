/* Fuzz the stream transport's reassembly: a valid stream of frames - small
 * ones delivered in place, large ones read straight into their buffer,
 * frames across the ring's wrap - cut into pieces at points the input
 * chooses, each piece written on its own with the server's loop run in
 * between. Every message must arrive once, whole and in order. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "fuzz_net.h"

#define MAX_MSGS 24

static struct {
    uint32_t len[MAX_MSGS];
    int n, next;
} want;

static uint8_t byte_of(int msg, size_t i)
{
    return (uint8_t)(msg * 37 + i * 11 + (i >> 8));
}

/* The server's view of each delivery: the next one expected, intact. */
static void check(px_msg *m)
{
    fuzz_net *n = fuzz_net_get();
    int k = want.next++;
    if (k >= want.n || m->in.data_len != want.len[k] || m->in.header_len != 4 ||
        memcmp(m->in.header, &k, 4) != 0) {
        n->bad++;
        return;
    }
    size_t off = 0;
    for (uint32_t i = 0; i < m->in.iov_count; i++) {
        const uint8_t *p = m->in.iov[i].base;
        for (size_t j = 0; j < m->in.iov[i].len; j++, off++)
            if (p[j] != byte_of(k, off)) {
                n->bad++;
                return;
            }
    }
    if (off != want.len[k])
        n->bad++;
}

static int all_in(fuzz_net *n)
{
    return want.next >= want.n;
}

static int gone(fuzz_net *n)
{
    return n->live_conns == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_net *n = fuzz_net_get();
    n->on_msg = check;
    n->bad = 0;
    /* The messages: two bytes each pick a length, mostly small, some over
     * the inline threshold (16 KiB), up to 200 KiB. */
    size_t i = 0;
    want.n = want.next = 0;
    while (want.n < MAX_MSGS && i + 2 <= size && data[i] != 0xff) {
        uint32_t v = (uint32_t)data[i] | (uint32_t)data[i + 1] << 8;
        want.len[want.n++] = (v & 0x8000) ? (v & 0x7fff) * 6 : v % 3000;
        i += 2;
    }
    i++;
    /* The stream: HELLO, then each message as one-way (odd) or request. */
    size_t cap = 512;
    for (int k = 0; k < want.n; k++)
        cap += 36 + want.len[k];
    uint8_t *s = malloc(cap);
    size_t len = fuzz_net_hello(s, 1u << 20);
    for (int k = 0; k < want.n; k++) {
        fuzz_net_frame(s + len, k % 2 ? 5 : 3, 0, 4, want.len[k], (uint64_t)k + 1, 0, 0);
        memcpy(s + len + 32, &k, 4);
        len += 36;
        for (uint32_t j = 0; j < want.len[k]; j++)
            s[len++] = byte_of(k, j);
    }
    /* Cut it where the rest of the input says, and send piece by piece. */
    int fd = fuzz_net_dial(n);
    size_t off = 0;
    while (off < len) {
        size_t piece = len - off;
        if (i < size) {
            uint8_t b = data[i++];
            piece = 1 + (size_t)b * ((b & 1) ? 97 : 1); /* odd: long pieces, even: tiny */
        }
        if (piece > len - off)
            piece = len - off;
        if (fuzz_net_write(n, fd, s + off, piece) < 0)
            break;
        off += piece;
        px_ctx_poll(n->ctx);
    }
    free(s);
    FUZZ_CHECK(off == len);
    FUZZ_CHECK(fuzz_net_run_until(n, fd, all_in, 5000));
    FUZZ_CHECK(n->bad == 0 && want.next == want.n);
    close(fd);
    FUZZ_CHECK(fuzz_net_run_until(n, -1, gone, 5000));
    n->on_msg = NULL;
    return 0;
}
