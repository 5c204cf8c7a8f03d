/* The shared-memory transport (shm://name): internal interface between its
 * files.
 *
 *   shm.c       the ops table, the instance, listen/connect/accept/close,
 *               upcalls, the loop hooks (deferred events, sleep arming) and
 *               poll()
 *   shm_ring.c  the SPSC record ring
 *   shm_rdv.c   the rendezvous: abstract unix socket, SCM_RIGHTS, SO_PEERCRED,
 *               the segment (memfd) and eventfds, the CMA probe
 *   shm_tx.c    send(): frames written into the ring, the send queue, wake-ups
 *   shm_rx.c    draining the ring: in-place delivery, RX_ASSIGN
 *   shm_bulk.c  large frames: CMA (process_vm_readv), the shared pool and the
 *               chunked fallback
 *   shm_pool.c  the shared pool: px_mem_alloc() regions announced to the peer
 *               over the rendezvous socket, mapped and cached per conn
 *
 * It includes only the installed plexus headers; the chassis (px_tpc_*)
 * keeps the upcall, queue and lending discipline. A function that made an
 * upcall and got -1 back returns at once without touching the conn.
 *
 * Wake-up protocol (per ring, Dekker-style, both sides with a full fence):
 *   consumer going to sleep: cons_sleep = 1; fence; re-read head.
 *   producer after publishing: fence; if exchange(cons_sleep, 0) write the
 *   consumer's eventfd.
 *   producer out of room (or waiting for CMA acks): prod_wait = 1; fence;
 *   re-read tail/acked. consumer after releasing: fence; if
 *   exchange(prod_wait, 0) write the producer's eventfd.
 * So no syscall is made while both sides are awake.
 */
#ifndef PX_TRANSPORTS_SHM_SHM_H
#define PX_TRANSPORTS_SHM_SHM_H

#include <stdint.h>
#include <sys/types.h>

#include <plexus/transport.h>

#include "transports/shm/shm_ring.h"

#define SHM_NAME_MAX      80u          /* shm://name length (abstract socket path limit) */
#define SHM_RING_MIN      (256u << 10) /* per direction; fits any frame prefix in half */
#define SHM_RING_DEF      (256u << 10)
#define SHM_RING_MAX      (64u << 20)
#define SHM_SEG_HDR       4096u /* segment header + both control blocks */
#define SHM_MAX_IOV       1024u /* data segments per send (caps) */
#define SHM_CMA_MAX_SEG   63u   /* (addr, len) pairs in a CMA descriptor */
#define SHM_POOL_NSEG     42u   /* (id, off, len) triples in a pool descriptor (ext <= 1 KiB) */
#define SHM_POOL_MAX      32u   /* regions announced / mapped per conn and direction */
#define SHM_RX_BATCH      64    /* records per drain before other conns get a turn */
#define SHM_PUBLISH_BATCH 16    /* small records written before the head shows them, at most */
#define SHM_OWN_KEEP      (1u << 20)  /* fallback rx buffer kept up to this size */
#define SHM_HS_TIMEOUT    10000000u   /* us for a client to complete the rendezvous */
#define SHM_MAGIC         0x6d687370u /* "pshm" */
#define SHM_VERSION       1u

/* Options from the URI query (listener's for accepted conns, client's for
 * its own). Value type. */
typedef struct shm_opts {
    int allow_any;   /* ?allow_uid=any */
    uid_t allow_uid; /* ?allow_uid=<uid>: also accepted (besides our own uid) */
    int has_allow_uid;
    int cma;            /* ?cma=0 (or PX_SHM_CMA=0): never use CMA, either way */
    uint32_t ring_size; /* ?ring=<bytes>: client only, power of two */
    uint32_t spin_us;   /* ?spin_us=<n>: spin before sleeping in the loop */
} shm_opts;

/* Transfer counters for one conn or the instance (sums of closed conns). */
typedef struct shm_stats {
    uint64_t tx_inline, tx_cma, tx_pool, tx_chunked;
    uint64_t tx_bounced; /* large sends from receive memory copied aside (write_bulk) */
    uint64_t rx_inline, rx_cma, rx_pool, rx_chunked;
    uint64_t pool_announced, pool_mapped; /* regions passed to / mapped from the peer */
    uint64_t wakes_sent;                  /* eventfd writes */
} shm_stats;

/* One instance per context. Owned by the context (init/fini). */
typedef struct shm_tp {
    px_tp base;       /* first */
    uint32_t spin_us; /* the largest spin_us of any conn */
    /* The loop's last pass did not block (the context busy-polls) or
     * spins before it sleeps: what each conn tells its producer
     * (shm_ring_ctl.cons_polls), at its next drain. */
    unsigned polling : 1;
    shm_stats stats;
} shm_tp;

typedef enum shm_state {
    SHM_HANDSHAKE,  /* server: waiting for the client's hello */
    SHM_CONNECTING, /* client: waiting for the server's reply, or CONNECTED not yet delivered */
    SHM_PENDING,    /* offered by a listener, waiting for accept()/reject() */
    SHM_OPEN,
    SHM_DEAD, /* disconnected delivered (or due); waiting for close() */
} shm_state;

typedef enum shm_rx_mode {
    RX_RING,   /* parsing records */
    RX_CHUNKS, /* receiving a chunked frame's data */
} shm_rx_mode;

/* The regions of a conn the chassis's lending rule watches. */
enum { LEND_RING = 0, LEND_SCRATCH = 1, LEND_OWN = 2 };

struct shm_listener;
struct shm_pool;

/* One connection. Owned by the transport: created by connect() or by a
 * listener, freed by the chassis (conn_free) once closed. Owns the
 * rendezvous socket, both eventfds and the mapping of the segment (the
 * memfd itself is closed once mapped). Everything the data path needs is
 * allocated here, so it allocates nothing (except a declined large frame's
 * own buffer, and the copy of a large send made from our receive memory).
 *
 * The chassis's send FIFO (base.sends) holds the sends that are not done
 * at send(): large ones written as a CMA/pool descriptor and awaiting the
 * peer's ack, and a chunked one being written (always the last). */
typedef struct shm_conn {
    px_tp_conn base; /* first */
    shm_tp *tp;
    shm_state state;
    unsigned in_rx : 1; /* shm_rx_drain() is on the stack */
    unsigned is_server : 1;
    unsigned cma_off : 1;   /* forced off by either side's options */
    unsigned rx_paused : 1; /* the owner asked for no new frames (rx_pause) */
    int sock;               /* rendezvous socket: its EOF is the peer's death */
    int efd_self;           /* we sleep on it */
    int efd_peer;           /* we write it to wake the peer */
    uint8_t *seg;           /* the shared mapping */
    size_t seg_len;
    shm_ring tx, rx;
    px_tp_watch sio, eio, hs_timer;
    px_tp_link hs_link; /* the listener's conns still in the rendezvous */
    struct shm_listener *lst;
    pid_t peer_pid;
    uid_t peer_uid;
    char name[SHM_NAME_MAX + 1];
    shm_opts opts;

    /* tx */
    px_tp_send *partial; /* a chunked send not yet fully in the ring (the FIFO's tail) */
    uint64_t cma_sent;   /* CMA/pool records written */
    uint64_t cma_acked;  /* ... acknowledged (validated copy of tx.ctl->acked) */
    unsigned cma_warned : 1;
    /* Small frames in the ring that the head does not show yet: published
     * together, one head store and one fence for the lot, at the end of
     * the loop pass (the flush) or once SHM_PUBLISH_BATCH have gathered. */
    uint32_t tx_unpublished;
    unsigned tx_pass_published : 1; /* this pass has published a small record */
    unsigned rx_polls_said : 1;     /* what rx.ctl->cons_polls says */

    /* rx */
    shm_rx_mode rx_mode;
    px_tp_rx rxf;     /* the large frame in progress */
    uint32_t dst_idx; /* cursor into rx.dst */
    size_t dst_off;
    uint64_t rx_left;
    unsigned dst_own : 1; /* the chunked frame lands in our own buffer */
    px_iov own_iov;
    uint8_t *own;
    size_t own_cap;
    uint8_t *scratch;      /* a chunked frame's prefix, valid until its FRAME */
    uint64_t cma_done;     /* CMA/pool records consumed: the count in rx.ctl->acked */
    struct shm_pool *pool; /* shared-pool tables; NULL until first used (shm_pool.c) */
    shm_stats stats;
} shm_conn;

/* A bound name. Owned by the transport from listen() to the chassis's
 * listener_free. */
typedef struct shm_listener {
    px_tp_listener base; /* first */
    shm_tp *tp;
    int fd;
    px_tp_watch io;
    px_tp_watch pause;     /* accept back-off after EMFILE/ENFILE */
    double warned_at;      /* time of the last refusal logged (one a second at most) */
    px_tp_link handshakes; /* conns in the rendezvous (shm_conn.hs_link), not yet offered */
    shm_opts opts;
    char name[SHM_NAME_MAX + 1];
} shm_listener;

static inline const px_tp_host *shm_host(const shm_conn *c)
{
    return c->tp->base.host;
}

extern const px_transport px_shm_transport;

/* shm.c */
/* Write the peer's eventfd. */
void shm_wake_peer(shm_conn *c);
void shm_conn_opened(shm_conn *c); /* rendezvous done: start the data path */
/* The peer is gone (its socket's EOF, a failed CMA read): deliver what it
 * wrote before, finish what it acked, then disconnect. -1 always. */
int shm_peer_gone(shm_conn *c, int reason);

/* shm_rdv.c */
int shm_opts_parse(const px_uri *uri, int listener, shm_opts *out);
/* Is a peer with `uid` allowed by `o` for a process running as `self`? */
int shm_uid_allowed(const shm_opts *o, uid_t self, uid_t uid);
int shm_rdv_listen(const char *name, int *fd);
/* The uid of the process at the other end of a unix socket, or <0. */
int shm_rdv_peer_uid(int fd, uid_t *uid);
/* Client: connect, create the segment, send the hello. */
int shm_rdv_connect(shm_conn *c);
/* Server: read and check the hello, map the segment. 1: done; 0: wait; <0: refuse. */
int shm_rdv_server_hello(shm_conn *c);
/* Server: send our reply (status 0 or a positive PX_E code). */
int shm_rdv_server_reply(shm_conn *c, int status);
/* Client: read the reply. 1: open; 0: wait; <0: failed. */
int shm_rdv_client_reply(shm_conn *c);
void shm_rdv_unmap(shm_conn *c);
/* One message on the rendezvous socket with up to 3 fds (non-blocking). */
int shm_rdv_send_fds(int sock, const void *msg, size_t len, const int *fds, int nfds);
/* Receive one message; every fd that came with it is ours to close. -1
 * (errno) on error, -2 (EMSGSIZE) when truncated, else the length. */
ssize_t shm_rdv_recv_fds(int sock, void *msg, size_t len, int *fds, int max, int *nfds);
/* errno -> -PX_E... */
int shm_err(int e);

/* shm_tx.c */
int shm_tx_send(px_tp_conn *pc, px_tp_send *s);
/* The flush op: go on writing a chunked send, complete what the peer has
 * acked, and tell a refused owner when there is room. -1 when gone. */
int shm_tx_flush(px_tp_conn *pc);
/* Complete the queued sends the peer has acked (refreshing the ack count).
 * -1 when the conn is gone. */
int shm_tx_complete(shm_conn *c);
/* Is there tx work a wake-up could unblock (a partial send, unacked CMA,
 * a refused owner)? */
int shm_tx_waiting(const shm_conn *c);
/* Ask the consumer to wake us; 1 when what we wait for came meanwhile. */
int shm_tx_arm_wait(shm_conn *c);
/* Close the gate on our memory (the ack word, shm_ring.h) before any
 * unfinished send goes back to its owner: from now on the peer reads none
 * of it. Waits (bounded) for a read in progress. */
void shm_tx_close_gate(shm_conn *c);
/* Close: sends the peer acked are finished (status 0), the rest not. */
void shm_tx_close(shm_conn *c, px_tp_fifo *unfinished);

/* shm_rx.c */
/* Deliver up to a batch of records. Returns records handled, -1 when gone. */
int shm_rx_drain(shm_conn *c);
void shm_rx_dst_copy(shm_conn *c, const uint8_t *src, size_t len);
int shm_rx_own_reserve(shm_conn *c, size_t len);

/* shm_bulk.c */
/* Sender: write `req` (a large frame) as a CMA descriptor or as chunks.
 * 1: fully in the ring; 0: partly (room ran out); <0 error. */
int shm_bulk_write(shm_conn *c, px_tp_send *req);
/* Receiver: a CMA record / a CHUNKED head / a CHUNK. 0, or -1 when gone. */
int shm_bulk_rx_cma(shm_conn *c, const px_frame_hdr *h, const uint8_t *rec, uint32_t len);
int shm_bulk_rx_chunked(shm_conn *c, const px_frame_hdr *h, const uint8_t *rec, uint32_t len);
int shm_bulk_rx_chunk(shm_conn *c, const uint8_t *rec, uint32_t len);
/* Can this side read the peer's memory? SHM_CMA_YES/NO. */
int shm_cma_probe(pid_t pid, uint64_t addr);
extern const uint64_t shm_cma_probe_word;

/* shm_pool.c */
/* Sender: can every data segment of `s` go by the shared pool? Announces
 * the regions the peer has not seen yet (before the record is published).
 * 1: yes; 0: no (plain memory, too many segments or regions in flight). */
int shm_pool_tx_ready(shm_conn *c, const px_tp_send *s);
/* One segment of a pool descriptor (see shm_bulk.c). Value type. */
typedef struct shm_pool_seg {
    uint64_t id, off, len;
} shm_pool_seg;
/* One segment of a CMA descriptor: an address in the sender. Value type. */
typedef struct cma_seg {
    uint64_t addr, len;
} cma_seg;
/* Receiver, on a CMA record's ext bytes (h->ext_len of them, copied from
 * the ring): the descriptor's flags (0, or 1 = a pool descriptor), or -1
 * for a descriptor with no header or unknown flags. */
int shm_desc_flags(const px_frame_hdr *h, const uint8_t *ext);
/* Parse and check a descriptor: every segment non-empty, the lengths
 * summing to h->data_len, no address range that wraps. 0 or -PX_EPROTO;
 * segs[] gets SHM_CMA_MAX_SEG / SHM_POOL_NSEG entries at most. */
int shm_desc_parse_cma(const px_frame_hdr *h, const uint8_t *ext, cma_seg *segs, uint32_t *nseg);
int shm_desc_parse_pool(const px_frame_hdr *h, const uint8_t *ext, shm_pool_seg *segs,
                        uint32_t *nseg);
/* Receiver: the mapped address of each segment (all inside their regions),
 * reading announcements from the socket if a region is new. 0, or <0 (a
 * protocol error). No socket read happens after the addresses are taken. */
int shm_pool_rx_map(shm_conn *c, const shm_pool_seg *segs, uint32_t n, const uint8_t **out);
/* Receiver: read pending announcements. 0: none left; 1: the peer closed
 * its end (*sock_err: errno, or 0 for EOF); <0: a protocol error. */
int shm_pool_rx_sock(shm_conn *c, int *sock_err);
/* Unmap everything and free the tables (conn teardown). */
void shm_pool_free(shm_conn *c);

#endif
