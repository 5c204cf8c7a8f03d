/* The raw peer's rdma:// half (raw_rdma.c), behind raw_link.h: the same
 * calls, for a link whose URI is rdma://. Without rdma-core every call
 * fails. */
#ifndef CONF_RAW_RDMA_H
#define CONF_RAW_RDMA_H

#include <stddef.h>
#include <stdint.h>

typedef struct raw_rdma raw_rdma;

raw_rdma *raw_rdma_dial(const char *uri);
int raw_rdma_send(raw_rdma *r, const void *bytes, size_t len);
long raw_rdma_recv(raw_rdma *r, void *buf, size_t cap, int ms);
int raw_rdma_wait_closed(raw_rdma *r, int ms);
/* A rendezvous request for `frame` (a 32-byte header, then hdr_len bytes
 * of application header) whose data the server is to READ at addr with
 * rkey: a lie, to see a remote access error handled. 0 or -1. */
int raw_rdma_send_rts(raw_rdma *r, const uint8_t *frame, size_t hdr_len, uint64_t addr,
                      uint32_t rkey);
void raw_rdma_close(raw_rdma *r);
/* A listener: the returned int names it for the calls below. */
int raw_rdma_listen(const char *uri, char *bound, size_t len);
int raw_rdma_is_listener(int fd);
raw_rdma *raw_rdma_accept(int fd, int ms);
void raw_rdma_listen_close(int fd);

#endif
