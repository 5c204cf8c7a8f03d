/* A harness for driving a transport directly through its px_transport ops
 * table and typed upcalls, with no sessions: the transport contract suite
 * (test_contract.c) and the per-transport tests (test_tcp_transport.c,
 * test_shm_transport.c) share it.
 *
 * Two real contexts live in one thread, H_CTX[H_CLI] and H_CTX[H_SRV], each
 * with its own instance of the transport under test (px_ctx_instance), so
 * that one side can be run while the other is not: that is how
 * backpressure is provoked. Listeners live on the server context, connects
 * on the client one (an ep on either can send).
 *
 * Every upcall is checked against the interface as it arrives: never from
 * inside a call into the transport, only from its own context's loop (or
 * px_tpc_poll of its instance), never after the conn was closed or after
 * disconnected; frames in order, every byte verified against what was
 * sent, `more` hints consistent, rx_assign only for frames over the inline
 * threshold; every send that returned PX_TP_QUEUED finished exactly once
 * (one send_done, in order, or returned by close), PX_TP_SENT never
 * completed. Frame data comes from one read-only pattern buffer (H_PAT), so
 * a transport that writes into a caller's send buffer faults, and millions
 * of bytes can be in flight without copies.
 */
#ifndef PX_TESTS_TRANSPORT_TP_HARNESS_H
#define PX_TESTS_TRANSPORT_TP_HARNESS_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"
#include "plexus/context.h"
#include "plexus/error.h"
#include "plexus/transport.h"

#define H_CLI 0
#define H_SRV 1

#define H_MAX_SEG   8                      /* data segments of a harness frame */
#define H_PAT_SPAN  (1u << 20)             /* frame data starts anywhere in this span */
#define H_MAX_FRAME ((16u << 20) + 65536u) /* largest data_len a harness frame may have */
#define H_GAP       64u                    /* poison between an assigned vector's segments */
#define H_POISON    0xa5u
#define MIB         (1u << 20)

extern px_ctx *H_CTX[2];
extern px_ctx_tp *H_TP[2];
extern const px_transport *H_T;
extern const uint8_t *H_PAT; /* read-only */
extern int h_in_op;          /* calls into the transport on the stack */
extern px_ctx *h_running;    /* the context whose loop (or poll) is running */

/* What a receiver expects of frame `id`: made from the sender's salt, the
 * id and the length (h_exp_make), so a peer in another process can be
 * expected too. */
typedef struct h_exp {
    int set;
    uint32_t len, off; /* data: H_PAT + off */
    uint32_t hoff;     /* app header: H_PAT + hoff */
    uint16_t hdr_len;
    uint8_t type;
    uint16_t flags;
    uint32_t channel, aux;
} h_exp;

h_exp h_exp_make(unsigned salt, uint64_t id, uint32_t len);

/* rx_assign behaviour of an ep. */
enum {
    H_GIVE,          /* a 3-segment vector covering the data, with poison between */
    H_DECLINE,       /* return 1: delivered in place */
    H_SHORT_ONE,     /* the vector is one byte short */
    H_SHORT_NONE,    /* return 0 with no vector at all */
    H_SHORT_NULLSEG, /* a segment with a length but no base */
};

/* Upcall kinds, for closing from inside one. */
enum {
    H_UP_NONE,
    H_UP_CONNECTED,
    H_UP_ASSIGN,
    H_UP_FRAME,
    H_UP_SEND_DONE,
    H_UP_ROOM,
    H_UP_ERROR,
    H_UP_DISC,
};

typedef struct h_msg h_msg;

/* One end of a conn: the owner of its upcalls. */
typedef struct h_ep {
    char name[24];
    int side; /* H_CLI / H_SRV: the context it lives on */
    px_ctx *ctx;
    px_tp_conn *c;
    unsigned salt;
    int is_client; /* made by connect(): the only kind that gets `connected` */
    int raw_peer;  /* its peer is a raw link, which may send garbage */
    int in_use;
    /* upcalls seen */
    int connected, disconnected, errors, rooms;
    int disc_reason, err_reason;
    int closed; /* the test closed c: nothing may follow */
    uint64_t upcalls;
    /* receive */
    uint64_t frames, inplace, direct, assigns, declines, next_id;
    uint32_t max_more, prev_more;
    int assign_mode;
    int assign_pending; /* an rx_assign was answered for frame assign_id */
    int assign_declined;
    uint64_t assign_id;
    uint8_t *abuf; /* the assigned vector's memory, poison around it */
    size_t acap;
    px_iov aiov[3];
    uint8_t *aseg[3]; /* where each segment was laid out */
    size_t alen;      /* bytes of abuf the last vector spanned (with gaps) */
    h_exp *exp;       /* what each frame id must be */
    uint64_t nexp, capexp;
    /* send */
    uint64_t tx_next_id; /* id of the next frame it sends */
    uint64_t nsent, nqueued, ndone, nreturned, nrefused, done_errs;
    int want_room; /* refused with -PX_EAGAIN since the last room upcall */
    int last_done_status;
    /* close from inside the n-th upcall of kind close_in (n = close_after, 0 = first) */
    int close_in;
    uint64_t close_after;
    uint64_t nth[8];
    /* extra behaviour */
    void (*on_frame)(struct h_ep *e, const px_tp_rx *rx, const uint8_t *data);
    void (*on_room)(struct h_ep *e);
    void (*on_send_done)(struct h_ep *e, h_msg *m);
    void *user;
} h_ep;

enum { H_M_NEW, H_M_SENT, H_M_QUEUED, H_M_DONE, H_M_RETURNED, H_M_REFUSED };

/* A frame to send, owned by the test until the harness frees it at
 * teardown. */
struct h_msg {
    px_tp_send s; /* first */
    px_iov iov[H_MAX_SEG];
    h_ep *from, *to;
    h_exp exp;
    int state, status;
    uint64_t qseq; /* its place among the sender's queued sends */
    uint8_t *own;  /* a private copy of its data (h_msg_own), else NULL */
    uint8_t *own_hdr;
    h_msg *all_next;
};

/* A listener on the server context. */
enum { H_ACCEPT, H_REJECT, H_HOLD };
#define H_MAX_HELD 16
typedef struct h_lst {
    px_tp_listener *l;
    char uri[1100]; /* as bound */
    int mode;
    int close_in_new; /* close the listener from inside new_conn */
    int assign_mode;  /* for the eps it accepts into */
    int offered, closed, in_use;
    h_ep *accepted[H_MAX_HELD];
    int naccepted;
    px_tp_conn *held[H_MAX_HELD];
    int nheld;
} h_lst;

typedef struct h_pair {
    h_lst *L;
    h_ep *cli, *srv;
} h_pair;

/* ---- the fixture -------------------------------------------------------- */

/* Once, in main(): the pattern buffer (inherited by every forked test). */
void h_init_pattern(void);
/* Two contexts and the transport serving `scheme`, one instance on each.
 * opts may be NULL (defaults). */
void h_setup(const char *scheme, const px_ctx_opts *opts);
/* Close whatever is still open, check that every queued send finished
 * exactly once and that no conn or listener was leaked, destroy both. */
void h_teardown(void);

uint32_t h_inline(int side);
void h_caps(px_tp_caps *out);
uint64_t h_now_ms(void);

/* The URI template with "%p" replaced by "<pid>-<n>" (n counts calls), so
 * each listener of a process gets its own socket path or name. */
void h_uri(const char *tmpl, char *out, size_t len);

/* ---- running ------------------------------------------------------------- */

/* Is `name` one of the comma-separated names in `list` (a case filter
 * from the environment)? A NULL list names every case. */
int h_case_wanted(const char *list, const char *name);

/* One iteration of a context's loop (px_ctx_run_timeout(ctx, 0)). */
void h_run(int side);
void h_run_both(void);
/* Both loops for `ms` milliseconds. */
void h_run_for(int ms);
/* px_tpc_poll on one side's instance only: no loop. Returns its count. */
int h_tpc_poll(int side);

/* How long a wait may take before the case fails: 60 s, or
 * $PX_CONTRACT_TIMEOUT_MS (to find a stuck case quickly). */
uint64_t h_timeout_ms(void);
#define H_RUN_UNTIL(cond)                                                                          \
    do {                                                                                           \
        uint64_t end_ = h_now_ms() + h_timeout_ms();                                               \
        while (!(cond)) {                                                                          \
            ck_assert_msg(h_now_ms() < end_, "timed out waiting for %s", #cond);                   \
            h_run_both();                                                                          \
        }                                                                                          \
    } while (0)
#define H_RUN_SIDE_UNTIL(side, cond)                                                               \
    do {                                                                                           \
        uint64_t end_ = h_now_ms() + h_timeout_ms();                                               \
        while (!(cond)) {                                                                          \
            ck_assert_msg(h_now_ms() < end_, "timed out waiting for %s", #cond);                   \
            h_run(side);                                                                           \
        }                                                                                          \
    } while (0)

/* ---- eps, listeners, pairs --------------------------------------------------- */

h_ep *h_ep_new(const char *name, int side);
/* The owner table of an ep (for a test calling an op itself). */
px_tp_owner h_owner(h_ep *e);

h_lst *h_lst_new(int mode);
/* Listen on the server context at tmpl (h_uri'd); the bound URI in L->uri. */
void h_listen(h_lst *L, const char *tmpl);
/* listen() on the server context at a literal URI: its result (closed at once). */
int h_listen_rc(const char *uri);
void h_listener_close(h_lst *L);

/* connect() from side at uri: 0 asserted, nothing from inside it. */
void h_connect(h_ep *e, const char *uri);
int h_connect_rc(h_ep *e, const char *uri);
int h_accept(h_ep *e, px_tp_conn *c);
void h_reject(px_tp_conn *c, int reason);

/* Listen at tmpl (accepting), connect a client, run until both are up. */
void h_pair_open(h_pair *p, const char *tmpl);
/* Close the ep's conn, taking back its unfinished sends: each must be one
 * it queued and not finished, in order, status -PX_ECLOSED or 0. */
void h_close(h_ep *e);
void h_rx_pause(h_ep *e, int paused);

/* ---- frames ------------------------------------------------------------------ */

/* Frame from->tx_next_id of `len` data bytes in `nseg` segments (1..8; a
 * zero-length segment may have a NULL base), data and app header pointing
 * into H_PAT. Not sent yet. */
h_msg *h_msg_new(h_ep *from, h_ep *to, uint32_t len, unsigned nseg);
/* Give the frame a private copy of its data and app header (to poison or
 * free later). */
void h_msg_own(h_msg *m);
/* send(): the result is checked and booked (SENT, QUEUED, refused); a
 * refused send must not be in the conn's FIFO nor bounced. */
int h_send(h_msg *m);
/* Build and send, waiting for the room upcall (running both sides) while
 * refused with -PX_EAGAIN; any other error fails. Returns the result. */
int h_send_wait(h_ep *from, h_ep *to, uint32_t len, unsigned nseg);
/* Did the chassis FIFO of e's conn hold s? */
int h_in_fifo(const h_ep *e, const px_tp_send *s);
/* The receiver's expectation of a frame sent from elsewhere (a raw peer, a
 * forked process). */
void h_expect(h_ep *to, uint64_t id, const h_exp *x);
/* Every queued send of e finished (done or returned). */
int h_all_finished(const h_ep *e);

/* ---- echo from receive memory (the lending rule) ---------------------------------- */

/* An ep that answers every frame from the bytes it was delivered in (its
 * receive memory), header and all, to `peer`. A refused echo is kept as a
 * private copy (the bytes are lent only during the upcall: h_msg_own) and
 * sent on room, in order. `send`, when set, sends in the harness's place
 * (to check what a transport did with each echo; `resend`: one of those
 * copies); it returns h_send's result. State of one test. */
#define H_ECHO_MAX 4096
typedef struct h_echo {
    h_ep *peer;
    int (*send)(struct h_echo *q, h_ep *e, h_msg *m, int resend);
    h_msg *backlog[H_ECHO_MAX];
    unsigned head, tail;
    uint64_t sent, queued, copies; /* first sends: PX_TP_SENT, PX_TP_QUEUED; copies kept */
    void *user;
} h_echo;

/* Make e echo to peer through q (zeroed here). */
void h_echo_start(h_echo *q, h_ep *e, h_ep *peer);
/* Nothing waits for room any more. */
int h_echo_idle(const h_echo *q);

/* ---- raw peers (tests/conformance/raw_link) -------------------------------------- */

struct raw_link;
/* Does raw_link speak this scheme? */
int h_raw_ok(const char *scheme);
/* raw_dial(uri) from a helper thread while both loops run (a shm listener
 * answers the rendezvous from the loop). */
struct raw_link *h_raw_dial(const char *uri);
/* A 32-byte frame header followed by expected data of frame `id` (as
 * h_exp_make(salt, id, len) with hdr_len 0) into out (32 + len bytes). */
size_t h_raw_frame(uint8_t *out, unsigned salt, uint64_t id, uint32_t len, h_exp *x);

#endif
