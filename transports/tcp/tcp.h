/* The stream-socket transport (tcp:// and unix://): internal interface
 * between its files.
 *
 *   tcp.c       the ops table, the instance, listen/connect/accept/close,
 *               upcalls and the deferred-event/flush loop hook
 *   tcp_rx.c    the receive ring, in-place frame parsing, direct receive
 *   tcp_tx.c    the send queue and the gathered sendmsg
 *   tcp_addr.c  URI <-> sockaddr, options, errno mapping
 *
 * Re-entrancy rule: every upcall goes through tcp_upcall(), which keeps an
 * in_upcall depth on the conn. close() from inside an upcall only marks the
 * conn closed; the outermost tcp_upcall() frees it. A function that made an
 * upcall and got -1 back must return at once without touching the conn.
 */
#ifndef PX_TRANSPORTS_TCP_TCP_H
#define PX_TRANSPORTS_TCP_TCP_H

#include <ev.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "core/list.h"
#include "plexus/transport.h"

#define TCP_RING_MIN    (256u << 10) /* receive ring floor, bytes */
#define TCP_MAX_IOV     1024u        /* data segments per send (caps) */
#define TCP_TX_IOV      1024         /* iovecs per sendmsg (IOV_MAX) */
#define TCP_RX_IOV      64           /* iovecs per readv in direct receive */
#define TCP_READS_BURST 16           /* reads per readiness event, for fairness */
#define TCP_HOT_IDLE    64           /* empty poll() reads before a conn cools */
#define TCP_OWN_KEEP    (1u << 20)   /* fallback rx buffer kept up to this size */

/* A socket address and its length. Value type. */
typedef struct tcp_sockaddr {
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
        struct sockaddr_un un;
        struct sockaddr_storage ss;
    } u;
    socklen_t len;
} tcp_sockaddr;

/* Socket options from the URI query. Value type. */
typedef struct tcp_opts {
    int nodelay; /* default 1 */
    int sndbuf;  /* 0: the kernel's */
    int rcvbuf;
} tcp_opts;

/* One instance per context. Owned by the context (init/fini); the conns
 * and listeners it lists are owned by their users until close. */
typedef struct tcp_tp {
    px_tp_host host;   /* a copy: the context's may move */
    ev_prepare prep;   /* runs deferred events and flushes, once per iteration */
    px_list deferred;  /* conns with an event to deliver from the loop */
    px_list dirty;     /* conns with queued frames and a socket not known full */
    px_list hot;       /* conns poll() reads: data arrived recently */
    px_list conns;     /* every conn not yet freed */
    px_list listeners; /* every listener not yet freed */
    uint32_t ring_size;
    uint32_t scratch_size; /* the largest in-place frame, and a large frame's prefix */
    int in_progress;       /* tcp_progress() is on the stack */
    uint64_t nevents;      /* upcalls made, for poll()'s return value */
} tcp_tp;

typedef enum tcp_state {
    TCP_CONNECTING, /* connect() in flight, or CONNECTED not yet delivered */
    TCP_PENDING,    /* accepted by a listener, waiting for accept()/reject() */
    TCP_OPEN,
    TCP_DEAD, /* DISCONNECTED delivered (or due); waiting for close() */
} tcp_state;

typedef enum tcp_rx_mode {
    RX_RING,   /* parsing frames out of the ring */
    RX_DIRECT, /* reading a large frame's data into the owner's dst */
    RX_OWN,    /* ... into our own buffer (the owner declined RX_ASSIGN) */
} tcp_rx_mode;

struct tcp_listener;

/* One connection. Owned by the transport: created by connect() or by a
 * listener, freed by close()/reject() (deferred to the outermost upcall).
 * The ring and scratch are allocated with it, so the data path allocates
 * nothing. */
typedef struct tcp_conn {
    px_tp_conn base; /* first: the ops receive &base */
    tcp_tp *tp;
    int fd; /* -1 once the link is gone */
    tcp_state state;
    unsigned in_upcall; /* depth of upcalls of this conn on the stack */
    unsigned closed : 1;
    unsigned in_rx : 1; /* tcp_rx_read() is on the stack */
    /* Frames were delivered in place since the last flush: sends made
     * inside those upcalls may point into the ring or scratch, so before the
     * next read this conn's queue leaves, or what of it points there is
     * copied aside (see tcp_tx_unlend). */
    unsigned rx_lent : 1;
    unsigned rx_paused : 1; /* the owner asked for no new frames (rx_pause) */
    ev_io rio, wio;
    ev_timer probe;     /* paused with a full ring: is the peer still there? */
    px_list link;       /* tp->conns */
    px_list dirty_link; /* tp->dirty */
    px_list defer_link; /* tp->deferred */
    px_list hot_link;   /* tp->hot */
    px_list lst_link;   /* listener->pending while TCP_PENDING */
    struct tcp_listener *lst;
    int defer_ev; /* PX_TP_EV_CONNECTED or _DISCONNECTED, or TCP_EV_RESUME */
    int defer_reason;
    unsigned idle_polls;
    tcp_sockaddr peer;

    /* tx: frames owned by the caller, linked through tp_next */
    px_tp_send *txq, *txq_tail;   /* queued; the head may be partly written */
    px_tp_send *done, *done_tail; /* written; SEND_COMPLETE not yet delivered */

    /* rx */
    uint8_t *ring;
    uint32_t ring_mask;
    uint64_t rd, wr;    /* free-running positions; wr - rd bytes buffered */
    uint8_t *scratch;   /* 2 x scratch_size: straddled frames, then a large frame's prefix */
    uint32_t more_left; /* frames known complete after the current one */
    tcp_rx_mode rx_mode;
    px_tp_rx rx;      /* the large frame in progress */
    uint32_t dst_idx; /* cursor into rx.dst */
    size_t dst_off;
    uint64_t rx_left; /* data bytes of the large frame still to read */
    px_iov own_iov;   /* RX_OWN: rx.dst points here */
    uint8_t *own;
    size_t own_cap;
    uint64_t n_straddled; /* frames copied to scratch across the wrap (stats, tests) */
    uint64_t n_unlent;    /* queued frames copied out of receive memory (stats, tests) */
} tcp_conn;

/* A bound address. Owned by the transport from listen() to listener_close(). */
typedef struct tcp_listener {
    px_tp_listener base; /* first */
    tcp_tp *tp;
    int fd;
    unsigned in_upcall;
    unsigned closed : 1;
    ev_io io;
    ev_timer pause;  /* accept back-off after EMFILE/ENFILE */
    px_list link;    /* tp->listeners */
    px_list pending; /* offered conns not yet accepted or rejected */
    tcp_opts opts;   /* applied to accepted sockets */
    tcp_sockaddr addr;
    dev_t unix_dev; /* the socket file we created, to unlink only ours */
    ino_t unix_ino;
} tcp_listener;

extern const px_transport px_tcp_transport;

/* tcp.c */
/* Deliver `ev` to the conn's observer. Returns -1 when the conn was closed
 * (maybe freed: do not touch it), else 0; *ret gets notify's result. */
int tcp_upcall(tcp_conn *c, int ev, void *data, int *ret);
/* The link is gone: stop, fail queued sends, deliver DISCONNECTED. Always -1. */
int tcp_disconnect(tcp_conn *c, int reason);
/* A protocol error: ERROR then DISCONNECTED. Always -1. */
int tcp_fail(tcp_conn *c, int reason);
void tcp_mark_dirty(tcp_conn *c);

/* A deferred event of our own: deliver what was buffered while paused. */
#define TCP_EV_RESUME 100

/* tcp_rx.c */
/* Read what the socket has and deliver frames. -1 when the conn is gone. */
int tcp_rx_read(tcp_conn *c);
void tcp_rx_cb(struct ev_loop *loop, ev_io *w, int revents);
/* After rx_pause(0): deliver the frames buffered meanwhile, read on. */
int tcp_rx_resume(tcp_conn *c);
void tcp_rx_probe_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* tcp_tx.c */
/* Write queued frames with as few sendmsg calls as possible; arm the write
 * watcher if the socket fills. -1 when the conn is gone. */
int tcp_tx_flush(tcp_conn *c);
/* Copy queued frames that point into this conn's receive memory into
 * buffers of their own. Returns 0; -PX_ENOMEM. */
int tcp_tx_unlend(tcp_conn *c);
/* Flush every dirty conn. */
void tcp_tx_flush_dirty(tcp_tp *tp);
/* Complete written frames (status 0), then queued ones with `status`. */
int tcp_tx_fail_all(tcp_conn *c, int status);
int tcp_tx_send(px_tp_conn *pc, px_tp_send *req);
/* For close(): complete everything, written frames with 0, the rest with
 * -PX_ECLOSED. */
void tcp_tx_drain_closed(tcp_conn *c);

/* tcp_addr.c */
int tcp_addr_from_uri(const px_uri *uri, int passive, tcp_sockaddr *out);
/* check_uri: the checks of tcp_addr_from_uri() and tcp_opts_parse(), no
 * resolver. */
int tcp_check_uri(const px_uri *uri, int listener);
int tcp_addr_to_uri(const tcp_sockaddr *a, char *buf, size_t len);
int tcp_opts_parse(const px_uri *uri, tcp_opts *out);
void tcp_opts_apply(int fd, int family, const tcp_opts *o);
/* errno -> -PX_E... */
int tcp_err(int e);

#endif
