/* The harness of the fuzz targets that drive a live plexus context
 * through a socket: one context, kept across inputs, serving unix:// at a
 * private path; the input speaks to it as a raw peer. */
#ifndef PX_TESTS_FUZZ_FUZZ_NET_H
#define PX_TESTS_FUZZ_FUZZ_NET_H

#include <stddef.h>
#include <stdint.h>

#include <plexus/plexus.h>

typedef struct fuzz_net {
    px_ctx *ctx;
    char uri[128];  /* where the server listens */
    int live_conns; /* server connections established and not yet torn down */
    int seen_conns; /* server connections that ever came up */
    /* what the server received, for the target to check */
    uint64_t requests, oneways, bad;
    void (*on_msg)(px_msg *m); /* the target's check of each delivery; may be NULL */
} fuzz_net;

/* The harness, set up on first use: its server counts and checks every
 * delivery (on_msg), answers requests with an empty response and
 * releases one-way messages. */
fuzz_net *fuzz_net_get(void);
/* A raw client socket connected to the server (non-blocking). */
int fuzz_net_dial(fuzz_net *n);
/* Write all of buf to fd, running the context while the socket is full
 * and reading (and dropping) what the server sends back. 0, or -1 when
 * the server closed the connection. */
int fuzz_net_write(fuzz_net *n, int fd, const void *buf, size_t len);
/* Run the context for about `ms`, draining fd (if >= 0) meanwhile. */
void fuzz_net_run(fuzz_net *n, int fd, int ms);
/* Run until cond(n) or `ms` passed. Returns cond's last value. */
int fuzz_net_run_until(fuzz_net *n, int fd, int (*cond)(fuzz_net *n), int ms);
/* A valid HELLO frame into buf (at least 512 bytes); returns its length. */
size_t fuzz_net_hello(uint8_t *buf, uint64_t max_msg);
/* A 32-byte frame header. */
void fuzz_net_frame(uint8_t *out, uint8_t type, uint16_t flags, uint16_t hdr_len,
                    uint32_t data_len, uint64_t id, uint32_t aux, uint16_t ext_len);

#endif
