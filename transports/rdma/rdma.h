/* The RDMA verbs transport (rdma://): internal interface between its files.
 * It includes only the installed plexus headers and rdma-core's; the
 * chassis (px_tpc_*) keeps the upcall, queue and lending discipline.
 *
 *   rdma.c       the ops table, the instance (devices, protection domains,
 *                the CM event channel), listen/connect/accept/close and the
 *                CM events
 *   rdma_qp.c    a connection's verbs resources: CQ, completion channel,
 *                RC QP, its slot memory; the CQ poller
 *   rdma_tx.c    sends: eager SENDs from registered slots, rendezvous
 *                requests, credits, the doorbell-batched post list
 *   rdma_rx.c    receives: in-order delivery from pre-posted buffers, the
 *                rendezvous RDMA READ, reposting and credit return
 *   rdma_srq.c   the shared receive queue of a device (srq=1)
 *   rdma_mem.c   memory regions (one MR per protection domain), the
 *                registered bounce pool, remote keys
 *   rdma_addr.c  URI <-> sockaddr, options, errno mapping
 *
 * On the wire every SEND carries an 8-byte transport header, then (DATA)
 * a whole plexus frame, or (RTS) a frame's header, its rendezvous
 * descriptor in ext and its application header:
 *
 *   off size field
 *   0   1    kind     RW_DATA RW_RTS RW_DONE RW_CREDIT
 *   1   1    flags    0
 *   2   2    credits  receive buffers reposted since the last report
 *   4   4    aux      RW_DONE: the rendezvous it finishes
 *
 * Flow control is by exact credits (Accelio's way; it works on iWARP,
 * which has no immediate data): a side sends DATA, RTS or DONE only while
 * it holds a credit for a receive buffer the peer has posted, and returns
 * credits as it reposts buffers, piggybacked on whatever leaves, or in a
 * CREDIT message (which takes no credit: it lands in a spare buffer) when
 * half the window is owed and nothing else leaves. RNR retry is only a
 * backstop.
 *
 * Rule of the chassis: a function that made an upcall and got -1 back
 * returns at once without touching the conn (it may be freed).
 */
#ifndef PX_TRANSPORTS_RDMA_RDMA_H
#define PX_TRANSPORTS_RDMA_RDMA_H

#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include <plexus/transport.h>

#define RDMA_WIRE_HDR    8u
#define RDMA_MAX_IOV     64u         /* data segments per send (caps) */
#define RDMA_RDV_MAX_SEG 32u         /* descriptor segments; more are bounced into one */
#define RDMA_SPARE       4u          /* receive buffers beyond the credits: CREDIT messages */
#define RDMA_SIGNAL      16u         /* a signalled SEND at least this often */
#define RDMA_MAX_READS   16u         /* outstanding RDMA READs asked for (mlx5's limit) */
#define RDMA_READ_MAX    (1u << 30)  /* bytes per READ work request */
#define RDMA_POOL_MIN    (64u << 10) /* smallest bounce buffer */
#define RDMA_POOL_KEEP   (64u << 20) /* bounce bytes kept for reuse per instance */
#define RDMA_CM_TIMEOUT  5000        /* ms for address and route resolution */
#define RDMA_SRQ_BUFS    1024u       /* buffers of a shared receive queue */
#define RDMA_PRIV_MAGIC  0x44525850u /* "PXRD" */
#define RDMA_PRIV_VER    1u

/* Transport header kinds. */
enum { RW_DATA = 1, RW_RTS = 2, RW_DONE = 3, RW_CREDIT = 4 };

/* wr_id of a work request: its kind in the top byte, a sequence below. */
enum { WR_SEND = 1, WR_RECV = 2, WR_READ = 3 };
#define WR_ID(kind, seq) (((uint64_t)(kind) << 56) | ((seq) & ((1ull << 56) - 1)))
#define WR_KIND(id)      ((unsigned)((id) >> 56))
#define WR_SEQ(id)       ((id) & ((1ull << 56) - 1))

/* Setup data carried in the CM private data of connect and accept (it fits
 * the 56 bytes IB allows at connect). Little-endian on the wire. */
typedef struct rdma_priv {
    uint32_t magic;   /* RDMA_PRIV_MAGIC */
    uint8_t version;  /* RDMA_PRIV_VER */
    uint8_t pad[3];   /* 0 */
    uint32_t credits; /* receive buffers posted for the peer (its window) */
    uint32_t buf_len; /* bytes each of them holds: the peer's largest SEND */
} rdma_priv;

/* URI options (rdma_addr.c). Value type. */
typedef struct rdma_opts {
    uint32_t eager;     /* bytes of one SEND buffer; larger frames rendezvous */
    uint32_t rq;        /* receive buffers (credits given to the peer) */
    uint32_t sq;        /* send slots */
    uint32_t inline_sz; /* max_inline asked of the QP */
    uint32_t srq;       /* 1: receive from the device's shared queue */
} rdma_opts;

/* A shared receive queue and its buffers (rdma_srq.c). Owned by the
 * instance (one per device, made with its first srq=1 conn). */
typedef struct rdma_srq {
    struct ibv_srq *srq;
    uint8_t *mem; /* n buffers of buf_len */
    struct ibv_mr *mr;
    uint32_t n, buf_len;
    struct ibv_recv_wr *rwr; /* scratch for posting */
    struct ibv_sge *rsge;
} rdma_srq;

/* One RDMA device the instance opened, with its protection domain.
 * Owned by the instance, from init to fini. */
typedef struct rdma_dev {
    struct ibv_context *verbs; /* rdma_get_devices()'s: the one cm_ids use */
    struct ibv_pd *pd;
    struct ibv_device_attr attr;
    rdma_srq *srq; /* NULL until a conn asks for one */
} rdma_dev;

/* A registered bounce buffer: plain user memory is copied through one.
 * Owned by the pool while free, by one rendezvous while in use. */
typedef struct rdma_buf {
    struct rdma_buf *next;
    uint8_t *addr;
    size_t cap;
    struct ibv_mr *mr;
    int dev;
} rdma_buf;

/* The bounce pool of an instance: free buffers by device and size class
 * (powers of two from RDMA_POOL_MIN), up to RDMA_POOL_KEEP bytes kept. */
#define RDMA_POOL_CLASSES 16
typedef struct rdma_pool {
    rdma_buf **free; /* ndev * RDMA_POOL_CLASSES lists */
    size_t kept;
} rdma_pool;

/* One instance per context. Owned by the context (init/fini). */
typedef struct rdma_tp {
    px_tp base; /* first */
    struct rdma_event_channel *cm;
    px_tp_watch cm_io;
    struct ibv_context **devlist; /* rdma_get_devices(); rdma_free_devices() at fini */
    rdma_dev *devs;
    int ndev;
    rdma_pool pool;
    px_tp_link lingering; /* closed conns whose last SENDs are leaving */
} rdma_tp;

/* This transport's handle of a memory region: one MR per device. Owned
 * by the instance from mem_register to mem_deregister. */
typedef struct rdma_mr {
    void *addr;
    size_t len;
    int n;
    struct ibv_mr *mr[]; /* per device; NULL where registration failed */
} rdma_mr;

/* What a cm_id's context points to: CM events name a conn or a listener. */
typedef struct rdma_idctx {
    int is_listener;
    void *obj;
} rdma_idctx;

typedef enum rdma_state {
    RC_RESOLVING,  /* client: address and route resolution */
    RC_CONNECTING, /* client: rdma_connect() sent; server: accepted, not established */
    RC_PENDING,    /* server: established, offered, waiting for accept()/reject() */
    RC_OPEN,
    RC_DEAD, /* disconnected delivered (or due); waiting for close() */
} rdma_state;

/* One received SEND waiting for delivery, in arrival order. */
typedef struct rdma_rxent {
    uint32_t buf; /* receive buffer index */
    uint32_t len; /* bytes the SEND carried */
} rdma_rxent;

/* The rendezvous being received (at most one: frames are delivered in
 * order). Part of its conn. */
typedef struct rdma_rdv_in {
    int active;
    rdma_rxent ent; /* the RTS, held until delivery */
    px_tp_rx rx;    /* what the frame upcall gets */
    uint32_t seq;   /* the sender's, echoed in DONE */
    uint32_t nseg;  /* remote segments */
    uint64_t raddr[RDMA_RDV_MAX_SEG];
    uint32_t rlen[RDMA_RDV_MAX_SEG], rkey[RDMA_RDV_MAX_SEG];
    /* cursors: remote (seg, off) and local (dst idx, off) of the next READ */
    uint32_t rseg, lidx;
    uint64_t roff;
    size_t loff;
    uint64_t left;      /* bytes not yet asked for */
    uint32_t reads_out; /* READs posted and not completed */
    uint64_t posted;    /* bytes of posted READs not yet completed */
    px_iov land;        /* the bounce buffer as a destination, when used */
    rdma_buf *bounce;   /* READ lands here when the destination is unregistered */
    int own;            /* the owner declined: delivered in place from bounce */
} rdma_rdv_in;

/* One connection. Owned by the transport: created by connect() or by a CM
 * CONNECT_REQUEST, freed by the chassis (conn_free) once closed. Its slot
 * memory (send slots, then receive buffers) is allocated and registered
 * with the QP, so the data path allocates nothing; rendezvous sends wait
 * in the chassis's FIFO (base.sends) until the peer's DONE. */
typedef struct rdma_conn {
    px_tp_conn base; /* first */
    rdma_idctx idc;  /* what the cm_id's context points to */
    struct rdma_tp *tp;
    struct rdma_listener *lst; /* server: the listener, until established */
    px_tp_link lst_wait;       /* on lst->waiting meanwhile */
    px_tp_link linger_link;    /* on tp->lingering after close */
    px_tp_watch linger_timer;
    int lingering;
    struct rdma_cm_id *id;
    rdma_state state;
    int dev; /* index into tp->devs, -1 before the route is known */
    rdma_opts opts;
    int disc_pending; /* the peer disconnected: this, once the frames before it are delivered */

    /* verbs */
    struct ibv_comp_channel *chan;
    struct ibv_cq *cq;
    struct ibv_qp *qp; /* NULL once destroyed (the hardware is done with our memory) */
    px_tp_watch cq_io;
    int cq_watched;
    unsigned cq_unacked;
    uint32_t cq_len;
    rdma_srq *srq; /* srq=1: receive buffers are the device's; else ours */
    uint8_t *mem;  /* sq slots then (without srq) nrecv receive buffers, buf_len each */
    size_t mem_len;
    struct ibv_mr *mem_mr;
    uint32_t buf_len; /* our buffers (slots and receives) */
    uint32_t nrecv;   /* opts.rq + RDMA_SPARE */
    uint32_t max_inline, max_reads, max_sge;

    /* tx */
    uint32_t peer_credits;   /* SENDs the peer has room for */
    uint32_t peer_window;    /* its receive buffers: credits never exceed it */
    uint32_t peer_buf;       /* the peer's buffer size: our largest SEND */
    uint64_t slot_seq;       /* slots taken (SEND work requests built) */
    uint64_t slot_done;      /* slots whose SEND has completed */
    uint32_t unsignalled;    /* SENDs posted since the last signalled one */
    uint32_t rdv_seq;        /* rendezvous sends made */
    struct ibv_send_wr *swr; /* the post list being built: sq + max_reads entries */
    struct ibv_sge *ssge;
    uint32_t nswr;

    /* rx */
    rdma_rxent *rxq; /* received, not yet delivered: a ring of nrecv */
    uint32_t rxq_head, rxq_n;
    uint32_t *repost; /* buffers to post again at the next flush */
    uint32_t nrepost;
    struct ibv_recv_wr *rwr;
    struct ibv_sge *rsge;
    uint32_t owed;      /* credits reposted and not yet told to the peer */
    uint32_t owed_next; /* ... of the buffers in repost[], once posted */
    uint32_t *dones;    /* rendezvous finished, DONE not yet sent: a ring of nrecv */
    uint32_t dones_head, dones_waiting;
    unsigned in_rx : 1; /* rdma_rx_deliver() is on the stack */
    unsigned rx_paused : 1;
    rdma_rdv_in rdv;
    uint64_t n_rdv_tx, n_rdv_rx, n_eager_tx, n_eager_rx, n_credit_tx, n_bounced;
} rdma_conn;

/* A bound address. Owned by the transport from listen() to the chassis's
 * listener_free. */
typedef struct rdma_listener {
    px_tp_listener base; /* first */
    rdma_idctx idc;
    struct rdma_tp *tp;
    px_tp_link waiting; /* conns accepted by the CM, not yet established */
    struct rdma_cm_id *id;
    rdma_opts opts; /* applied to the conns it accepts */
    struct sockaddr_storage addr;
} rdma_listener;

extern const px_transport px_rdma_transport;

static inline const px_tp_host *rdma_host(const rdma_conn *c)
{
    return c->tp->base.host;
}

static inline uint8_t *rdma_slot(const rdma_conn *c, uint64_t seq)
{
    return c->mem + (size_t)(seq % c->opts.sq) * c->buf_len;
}

static inline uint8_t *rdma_rbuf(const rdma_conn *c, uint32_t i)
{
    if (c->srq)
        return c->srq->mem + (size_t)i * c->srq->buf_len;
    return c->mem + ((size_t)c->opts.sq + i) * c->buf_len;
}

/* How many receive buffers a conn's buffer indexes range over. */
static inline uint32_t rdma_nbufs(const rdma_conn *c)
{
    return c->srq ? c->srq->n : c->nrecv;
}

/* rdma_qp.c */
/* Make the CQ, channel, QP and slot memory for c->id and post every
 * receive buffer. 0 or -PX_E... (the conn is left for conn_free). */
int rdma_qp_create(rdma_conn *c);
/* The hardware lets go of our memory: QP to error, then destroyed. */
void rdma_qp_destroy(rdma_conn *c);
/* Free what rdma_qp_create() made besides the QP. */
void rdma_qp_free(rdma_conn *c);
/* Drain the CQ and act on every completion. Returns >0 when something
 * happened, 0 when nothing did, -1 when the conn is gone. */
int rdma_cq_poll(rdma_conn *c);

/* rdma_tx.c */
int rdma_tx_send(px_tp_conn *pc, px_tp_send *s);
/* Post the buffers in repost[] (their credits become owed). 0 or <0. */
int rdma_post_receives(rdma_conn *c);
/* The flush op: post the receives and the sends built, credits owed. */
int rdma_tx_flush(px_tp_conn *pc);
/* A signalled SEND finished: slots up to seq are free. -1 when gone. */
int rdma_tx_slots_done(rdma_conn *c, uint64_t seq);
/* Credits arrived from the peer. -1 when gone. */
int rdma_tx_credits(rdma_conn *c, uint32_t n);
/* The peer finished rendezvous `seq`: complete the FIFO's head. -1 when gone. */
int rdma_tx_rdv_done(rdma_conn *c, uint32_t seq);
/* Queue a DONE for the peer's rendezvous `seq` (it takes a credit, which
 * the peer's RTS guaranteed). 0 or -1. */
int rdma_tx_done_msg(rdma_conn *c, uint32_t seq);
/* Queue an RDMA READ work request (the caller checked max_reads). */
void rdma_tx_read(rdma_conn *c, uint64_t laddr, uint32_t lkey, uint64_t raddr, uint32_t rkey,
                  uint32_t len, int signalled);

/* Give back the bounce buffers of the rendezvous sends still queued. */
void rdma_tx_release_all(rdma_conn *c);

/* rdma.c */
/* A closed conn lingering: free it once its last SENDs have left. */
void rdma_linger_check(rdma_conn *c);

/* rdma_rx.c */
/* A receive completed: take its credits, consume a control message, or
 * queue a frame for delivery. -1 when the conn is gone. */
int rdma_rx_arrived(rdma_conn *c, uint32_t buf, uint32_t len);
/* Deliver queued frames in order, as far as pause and rendezvous allow.
 * -1 when the conn is gone. */
int rdma_rx_deliver(rdma_conn *c);
/* A READ of the rendezvous completed. -1 when gone. */
int rdma_rx_read_done(rdma_conn *c);
/* kick: after rx_pause(0). */
int rdma_rx_resume(px_tp_conn *pc);
/* The conn is ending: give back the rendezvous bounce buffer. */
void rdma_rx_drop(rdma_conn *c);

/* rdma_mem.c */
int rdma_mem_register(px_tp *tp, const px_mr *mr, void **handle);
void rdma_mem_deregister(px_tp *tp, void *handle);
int rdma_rkey_pack(px_tp *tp, void *handle, void *buf, size_t len);
int rdma_rkey_unpack(px_tp *tp, const void *buf, size_t len, uint64_t *rkey);
/* The MR of region `mr` on device `dev`, or NULL. */
struct ibv_mr *rdma_mr_of(const rdma_conn *c, const px_mr *mr);
/* A registered bounce buffer of at least len bytes, or NULL. */
rdma_buf *rdma_pool_get(rdma_tp *tp, int dev, size_t len);
void rdma_pool_put(rdma_tp *tp, rdma_buf *b);
void rdma_pool_fini(rdma_tp *tp);

/* rdma_srq.c */
/* The device's shared receive queue, made on first use with buffers of
 * buf_len. 0, or -PX_EOPNOTSUPP (the device has none) / -PX_ENOMEM. */
int rdma_srq_get(rdma_tp *tp, int dev, uint32_t buf_len, rdma_srq **out);
int rdma_srq_post(rdma_srq *s, const uint32_t *bufs, uint32_t n);
/* The conn's QP is gone: every pool buffer it holds goes back. */
void rdma_srq_reclaim(rdma_conn *c);
void rdma_srq_fini(rdma_tp *tp);

/* rdma_addr.c */
int rdma_addr_from_uri(const px_uri *uri, int passive, struct sockaddr_storage *out);
int rdma_addr_to_uri(const struct sockaddr *sa, char *buf, size_t len);
int rdma_opts_parse(const px_uri *uri, rdma_opts *out);
int rdma_check_uri(const px_uri *uri, int listener);
int rdma_err(int e);
extern const px_tp_option rdma_options[];

#endif
