/* A raw peer for the conformance suite: it speaks a transport's bytes
 * directly, without plexus, so a case can send what plexus never would
 * (garbage, frames out of order, a HELLO with odd limits) or stay silent
 * where plexus would answer.
 *
 * tcp:// and unix:// are plain stream sockets. shm:// goes through the
 * rendezvous (a sealed memfd with both rings, two eventfds, over the
 * abstract socket) and then writes each frame as one ring record; it
 * reads the server's ring the same way.
 */
#ifndef CONF_RAW_LINK_H
#define CONF_RAW_LINK_H

#include <stddef.h>
#include <stdint.h>

typedef struct raw_link raw_link;

/* Connect to a plexus server at `uri` (the transport level only: no
 * HELLO is sent). NULL on failure, with errno. */
raw_link *raw_dial(const char *uri);
/* Send one frame (or any bytes: on shm they make one record). 0 or -1. */
int raw_send(raw_link *l, const void *bytes, size_t len);
/* Receive one frame into buf (at most cap bytes, header included) within
 * `ms`. Returns its length, 0 when the server closed the link, -1 on
 * timeout or error. */
long raw_recv(raw_link *l, void *buf, size_t cap, int ms);
/* Wait up to `ms` for the server to close the link (anything it sends
 * meanwhile is read and dropped). 1 closed, 0 still open. */
int raw_wait_closed(raw_link *l, int ms);
/* Stream: the socket itself (for a relay that forwards bytes). */
int raw_link_fd(const raw_link *l);
/* Stream: shut down our sending half (the peer reads EOF). shm: nothing. */
void raw_shutdown(raw_link *l);
void raw_close(raw_link *l);

/* shm only: send `len` bytes as one ring record of `kind` (SHM_REC_*),
 * to say what plexus's own shm would never say. 0 or -1. */
int raw_send_record(raw_link *l, int kind, const void *bytes, size_t len);

/* rdma only: a rendezvous request for `frame` (header, then hdr_len bytes
 * of application header) naming remote memory at addr/rkey that is not
 * there. 0 or -1. */
int raw_send_bad_rdv(raw_link *l, const void *frame, size_t hdr_len);

/* The plexus handshake, spoken raw: send a HELLO with these limits and
 * read the HELLO_ACK. Returns 0 when accepted (its limits in *depth etc.
 * when not NULL), -1 otherwise. */
int raw_hello(raw_link *l, uint64_t max_msg, uint32_t max_hdr);
/* The same on a channel of the link (a further connection on a shared
 * link); the HELLO_ACK must come on that channel. */
int raw_hello_on(raw_link *l, uint32_t channel, uint64_t max_msg, uint32_t max_hdr);

/* A listener at `uri` (its real URI into bound). Never accepting, it is a
 * server that never answers (shm: never replies to the rendezvous). */
int raw_listen(const char *uri, char *bound, size_t len);
/* Accept one peer within `ms` (shm: complete the rendezvous). */
raw_link *raw_accept(int lfd, int ms);
/* Accept one peer, read its HELLO and accept it with queue `depth`. */
raw_link *raw_accept_hello(int lfd, uint32_t depth, int ms);
void raw_listen_close(int fd);

/* A 32-byte frame header (include/plexus/transport.h), little-endian. */
void raw_frame_hdr(uint8_t out[32], int version, int type, uint16_t hdr_len, uint32_t data_len,
                   uint64_t id, uint32_t aux);
/* Set a header's channel (raw_frame_hdr leaves it 0). */
void raw_frame_channel(uint8_t hdr[32], uint32_t channel);

#endif
