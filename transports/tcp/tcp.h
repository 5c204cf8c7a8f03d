/* The stream-socket transport (tcp:// and unix://): internal interface
 * between its files. It includes only the installed plexus headers; the
 * chassis (px_tpc_*) keeps the upcall, queue and lending discipline.
 *
 *   tcp.c       the ops table, the instance, listen/connect/accept/close
 *   tcp_rx.c    the receive ring, in-place frame parsing, direct receive
 *   tcp_tx.c    the send queue and the gathered sendmsg
 *   tcp_addr.c  URI <-> sockaddr, options, errno mapping
 *
 * Rule of the chassis: a function that made an upcall and got -1 back
 * returns at once without touching the conn (it may be freed).
 */
#ifndef PX_TRANSPORTS_TCP_TCP_H
#define PX_TRANSPORTS_TCP_TCP_H

#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include <plexus/transport.h>

#define TCP_RING_MIN    (256u << 10) /* receive ring floor, bytes */
#define TCP_MAX_IOV     1024u        /* data segments per send (caps) */
#define TCP_TX_IOV      1024         /* iovecs per sendmsg (IOV_MAX) */
#define TCP_RX_IOV      64           /* iovecs per readv in direct receive */
#define TCP_READS_BURST 16           /* reads per readiness event, for fairness */
#define TCP_OWN_KEEP    (1u << 20)   /* fallback rx buffer kept up to this size */

/* The regions of a conn the chassis's lending rule watches. */
enum { LEND_RING = 0, LEND_SCRATCH = 1, LEND_OWN = 2 };

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

/* One instance per context. Owned by the context (init/fini). */
typedef struct tcp_tp {
    px_tp base; /* first */
    uint32_t ring_size;
    uint32_t scratch_size; /* the largest in-place frame, and a large frame's prefix */
} tcp_tp;

typedef enum tcp_state {
    TCP_CONNECTING, /* connect() in flight, or CONNECTED not yet delivered */
    TCP_PENDING,    /* accepted by a listener, waiting for accept()/reject() */
    TCP_OPEN,
    TCP_DEAD, /* disconnected delivered (or due); waiting for close() */
} tcp_state;

typedef enum tcp_rx_mode {
    RX_RING,   /* parsing frames out of the ring */
    RX_DIRECT, /* reading a large frame's data into the owner's dst */
    RX_OWN,    /* ... into our own buffer (the owner declined rx_assign) */
} tcp_rx_mode;

/* One connection. Owned by the transport: created by connect() or by a
 * listener, freed by the chassis (conn_free) once closed. The ring and
 * scratch are allocated with it, so the data path allocates nothing. The
 * send queue is the chassis's (base.sends): sends from the caller's
 * memory, the head maybe partly written (its tp_done). */
typedef struct tcp_conn {
    px_tp_conn base; /* first */
    tcp_tp *tp;
    int fd; /* -1 once the link is gone */
    tcp_state state;
    unsigned in_rx : 1;     /* tcp_rx_read() is on the stack */
    unsigned rx_paused : 1; /* the owner asked for no new frames (rx_pause) */
    unsigned full : 1;      /* the socket took less than offered: new sends wait */
    unsigned want_w : 1;    /* watching for writability */
    px_tp_watch io;         /* the socket: read, and write while full */
    px_tp_watch probe;      /* paused with a full ring: is the peer still there? */
    tcp_sockaddr peer;

    /* rx */
    uint8_t *ring;
    uint32_t ring_mask;
    uint64_t rd, wr;  /* free-running positions; wr - rd bytes buffered */
    uint8_t *scratch; /* 2 x scratch_size: straddled frames, then a large frame's prefix */
    tcp_rx_mode rx_mode;
    px_tp_rx rx;      /* the large frame in progress */
    uint32_t dst_idx; /* cursor into rx.dst */
    size_t dst_off;
    uint64_t rx_left; /* data bytes of the large frame still to read */
    px_iov own_iov;   /* RX_OWN: rx.dst points here */
    uint8_t *own;
    size_t own_cap;
    uint64_t n_straddled; /* frames copied to scratch across the wrap (stats, tests) */
} tcp_conn;

/* A bound address. Owned by the transport from listen() to the chassis's
 * listener_free. */
typedef struct tcp_listener {
    px_tp_listener base; /* first */
    tcp_tp *tp;
    int fd;
    px_tp_watch io;
    px_tp_watch pause; /* accept back-off after EMFILE/ENFILE */
    tcp_opts opts;     /* applied to accepted sockets */
    tcp_sockaddr addr;
    dev_t unix_dev; /* the socket file we created, to unlink only ours */
    ino_t unix_ino;
} tcp_listener;

extern const px_transport px_tcp_transport;

static inline const px_tp_host *tcp_host(const tcp_conn *c)
{
    return c->tp->base.host;
}

/* tcp.c */
/* Watch the socket for what the conn needs now (read unless paused with
 * a full ring; write while full). */
void tcp_watch(tcp_conn *c);

/* tcp_rx.c */
/* Read what the socket has and deliver frames. -1 when the conn is gone. */
int tcp_rx_read(tcp_conn *c);
/* kick: after rx_pause(0), deliver the frames buffered meanwhile, read on. */
int tcp_rx_resume(px_tp_conn *pc);
void tcp_rx_probe_cb(px_tp_watch *w, void *arg);

/* tcp_tx.c */
/* The flush op: write queued frames with as few sendmsg calls as possible,
 * completing each that is fully written. -1 when the conn is gone. */
int tcp_tx_flush(px_tp_conn *pc);
int tcp_tx_send(px_tp_conn *pc, px_tp_send *s);

/* tcp_addr.c */
int tcp_addr_from_uri(const px_uri *uri, int passive, tcp_sockaddr *out);
int tcp_addr_to_uri(const tcp_sockaddr *a, char *buf, size_t len);
int tcp_opts_parse(const px_uri *uri, tcp_opts *out);
void tcp_opts_apply(int fd, int family, const tcp_opts *o);
/* check_uri: the checks of tcp_addr_from_uri() and tcp_opts_parse(), no
 * resolver. */
int tcp_check_uri(const px_uri *uri, int listener);
/* errno -> -PX_E... */
int tcp_err(int e);

#endif
