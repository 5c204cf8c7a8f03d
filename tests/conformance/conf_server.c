/* conf_server URI [options] — the server half of the conformance suite.
 *
 *   -a          bind without on_new_session (sessions accepted as they come)
 *   -h MS       handshake_timeout_ms      -k MS     keepalive_ms
 *   -r BYTES    max_rx_held_bytes         -q DEPTH  queue_depth (default 4096)
 *
 * Binds URI, prints "URI <bound uri>" as the first line on stdout and serves
 * the conf_proto.h protocol until SIGTERM, then tears everything down so a
 * sanitizer build reports any leak. It also polices the library: every
 * contract violation it can see (a completion for a message it does not
 * know, a second completion, a session or connection that never gets its
 * teardown event) is an "anomaly", reported by CONF_STATS and in the exit
 * status. Exit codes: 0 clean, 2 usage/setup, 3 context destroy failed,
 * 4 sessions never torn down, 5 anomalies.
 *
 * Built with CONF_SERVER_EMBED it is a function instead, which the suite
 * runs on a thread of its own for transports that connect only inside one
 * process (inproc://): conf_server_main() prints to `out` and returns the
 * exit code; conf_server_terminate() plays SIGTERM.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <getopt.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <plexus/plexus.h>

#include "conf_proto.h"

enum rec_state { R_HELD, R_RESPONDING };

/* A receive buffer the server supplied through assign_data_in_buf: three
 * segments with poisoned gaps between and after them. */
#define GAP    8
#define POISON 0xee

struct abuf {
    struct abuf *prev, *next; /* every buffer plexus may still write */
    px_iov iov[3];
    size_t len;
    uint8_t data[];
};

/* One delivered request, from delivery until its response completes. */
struct rec {
    struct rec *prev, *next;
    struct sess *ss;
    px_conn *conn;
    px_msg *msg;
    px_timer *timer; /* CONF_DELAY */
    struct conf_hdr hdr;
    enum rec_state state;
    struct abuf *abuf; /* where its data was received, when we supplied it */
    union {
        struct conf_stats st;
        struct conf_seq_report sr;
    } reply; /* response headers that must outlive the callback */
};

struct conn_ent {
    struct conn_ent *next;
    px_conn *conn;
};

struct sess {
    struct sess *prev, *next;
    struct srv *g;
    px_session *s;
    int accepted;
    struct rec recs; /* sentinel of a circular list */
    struct conn_ent *conns;
    uint64_t seq_next, seq_recv, seq_err, seq_first_bad;
    uint32_t gathered;
};

struct srv {
    px_ctx *ctx;
    px_server *server;
    px_timer *sigtimer;
    px_server *alt; /* where "redirect-me" sessions are sent */
    char alt_uri[1100];
    struct sess sessions; /* sentinel; every session not yet torn down */
    int unbind;           /* CONF_UNBIND asked: 1 + its enum conf_unbind */
    struct conf_stats st;
    struct abuf abufs; /* sentinel; last: struct abuf ends in a flexible array */
};

/* Completed or dropped requests keep pointing here, so that a late or second
 * completion callback is recognised instead of touching freed memory. */
static char completed_mark, dropped_mark;
/* Set by SIGTERM, or by the suite's thread (conf_server_terminate). */
static atomic_int terminate;

static void anomaly(struct srv *g, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "conf_server: ANOMALY: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    g->st.anomalies++;
}

/* ---- requests ----------------------------------------------------------- */

static struct srv *G; /* for callbacks whose user pointer is itself under test */

static void abuf_free(struct abuf *b)
{
    b->prev->next = b->next;
    b->next->prev = b->prev;
    free(b);
}

static int abuf_intact(const struct abuf *b)
{
    for (int k = 0; k < 3; k++) {
        const uint8_t *g = (const uint8_t *)b->iov[k].base + b->iov[k].len;
        for (int i = 0; i < GAP; i++)
            if (g[i] != POISON)
                return 0;
    }
    return 1;
}

/* Receive large CONF_ECHO data flagged CONF_ARG_ASSIGN* into our memory. */
static int on_assign(px_conn *c, px_msg *m, void *user)
{
    struct conf_hdr h;
    if (conf_hdr_read(m->in.header, m->in.header_len, &h) != 0 || h.op != CONF_ECHO ||
        !(h.arg & (CONF_ARG_ASSIGN | CONF_ARG_ASSIGN_SHORT)) || m->in.data_len < 3)
        return 1;
    size_t len = m->in.data_len - ((h.arg & CONF_ARG_ASSIGN_SHORT) ? 1 : 0);
    struct abuf *b = malloc(sizeof(*b) + len + 3 * GAP);
    if (b == NULL)
        abort();
    b->len = len;
    memset(b->data, POISON, len + 3 * GAP);
    uint8_t *p = b->data;
    for (int k = 0; k < 3; k++) {
        size_t n = k < 2 ? len / 3 : len - 2 * (len / 3);
        b->iov[k] = (px_iov){.base = p, .len = n};
        p += n + GAP;
    }
    b->next = &G->abufs;
    b->prev = G->abufs.prev;
    b->prev->next = b;
    G->abufs.prev = b;
    m->in.iov = b->iov;
    m->in.iov_count = 3;
    m->user_context = b;
    G->st.assigned++;
    return 0;
}

/* user_context of a delivered message is only ours if on_assign set it:
 * otherwise it may be stale, so look it up rather than dereference it. */
static struct abuf *abuf_find(void *p)
{
    for (struct abuf *b = G->abufs.next; b != &G->abufs; b = b->next)
        if (b == p)
            return b;
    return NULL;
}

/* Did the request's data land in the buffer we assigned? */
static void check_assigned(struct rec *r, struct abuf *b)
{
    px_msg *m = r->msg;
    if (b == NULL) {
        if (m->in.data_len > 16384)
            anomaly(G, "%llu B request flagged for assign_data_in_buf, but no buffer was asked",
                    (unsigned long long)m->in.data_len);
        return;
    }
    if (r->hdr.arg & CONF_ARG_ASSIGN_SHORT) {
        if (m->in.iov == b->iov)
            anomaly(G, "a too-short assigned vector was used");
        if (!abuf_intact(b))
            anomaly(G, "data written into a refused too-short vector");
        abuf_free(b);
        return;
    }
    if (m->in.iov != b->iov)
        anomaly(G, "the assigned receive buffer was not used");
    else if (!abuf_intact(b))
        anomaly(G, "received data overran the assigned segments");
    r->abuf = b;
}

static struct rec *rec_new(struct sess *ss, px_conn *c, px_msg *m, const struct conf_hdr *h)
{
    struct rec *r = calloc(1, sizeof(*r));
    if (r == NULL)
        abort();
    r->ss = ss;
    r->conn = c;
    r->msg = m;
    r->hdr = *h;
    r->state = R_HELD;
    r->next = &ss->recs;
    r->prev = ss->recs.prev;
    r->prev->next = r;
    ss->recs.prev = r;
    m->user_context = r;
    ss->g->st.held++;
    return r;
}

static void rec_free(struct rec *r, void *mark)
{
    struct srv *g = r->ss->g;
    if (r->state == R_HELD) {
        g->st.held--;
        if (r->hdr.op == CONF_GATHER)
            r->ss->gathered--;
    } else
        g->st.responding--;
    if (r->timer != NULL)
        px_timer_destroy(r->timer);
    if (r->abuf != NULL)
        abuf_free(r->abuf);
    r->msg->user_context = mark;
    r->prev->next = r->next;
    r->next->prev = r->prev;
    free(r);
}

/* Send the response already described in r->msg->out. */
static void respond(struct rec *r)
{
    struct srv *g = r->ss->g;
    if (r->timer != NULL) {
        px_timer_destroy(r->timer);
        r->timer = NULL;
    }
    if (r->hdr.op == CONF_GATHER)
        r->ss->gathered--;
    g->st.held--;
    g->st.responding++;
    r->state = R_RESPONDING;
    px_msg *m = r->msg;
    int rc = px_send_response(m);
    if (rc == 0)
        return;
    /* Refused: untouched, and no callback will come. A connection that is
     * going away may refuse, and so may a client whose limits the response
     * breaks; anything else is a library fault. Released, the request is
     * answered with an error, so the client never waits for ever. */
    if (rc != -PX_ENOTCONN && rc != -PX_ESHUTDOWN && rc != -PX_EMSGSIZE && rc != -PX_ECANCELED)
        anomaly(g, "px_send_response: %s", px_strerror(rc));
    rec_free(r, &dropped_mark);
    if (rc == -PX_EMSGSIZE || rc == -PX_ECANCELED || rc == -PX_ESHUTDOWN) {
        rc = px_release_msg(m);
        if (rc != 0)
            anomaly(g, "px_release_msg of an unanswerable request: %s", px_strerror(rc));
    }
}

/* The response is the request itself: its header and data stay valid until
 * the response completes, so they are sent straight back without a copy. */
static void respond_echo(struct rec *r)
{
    px_msg *m = r->msg;
    m->out.header = m->in.header;
    m->out.header_len = m->in.header_len;
    m->out.iov = m->in.iov;
    m->out.iov_count = m->in.iov_count;
    respond(r);
}

static void respond_hdr(struct rec *r, void *hdr, uint32_t len)
{
    px_msg *m = r->msg;
    m->out.header = hdr;
    m->out.header_len = len;
    m->out.iov = NULL;
    m->out.iov_count = 0;
    respond(r);
}

static void delay_fired(px_timer *t, void *arg)
{
    struct rec *r = arg;
    respond_echo(r); /* destroys the timer: allowed from its own callback */
}

/* Answer every held GATHER request of the session, oldest first. */
static void gather_release(struct sess *ss)
{
    struct rec *r = ss->recs.next;
    while (r != &ss->recs) {
        struct rec *next = r->next;
        if (r->state == R_HELD && r->hdr.op == CONF_GATHER)
            respond_echo(r);
        r = next;
    }
}

static void stats_snapshot(struct srv *g, struct conf_stats *out)
{
    *out = g->st;
    px_stats_sum alt, main;
    if (px_server_get_stats(g->alt, &alt) == 0)
        out->alt_conns = alt.conns_open;
    if (px_server_get_stats(g->server, &main) == 0)
        out->links = main.links_open;
}

static void handle_request(struct sess *ss, px_conn *c, px_msg *m)
{
    struct srv *g = ss->g;
    struct conf_hdr h;
    g->st.requests++;
    if (conf_hdr_read(m->in.header, m->in.header_len, &h) != 0) {
        anomaly(g, "request without a conf header (header_len %u)", m->in.header_len);
        h.op = CONF_ECHO;
    }
    struct conf_stats st;
    stats_snapshot(g, &st); /* before this request counts as held */
    void *assigned = m->user_context;
    struct rec *r = rec_new(ss, c, m, &h);
    if (h.op == CONF_ECHO && (h.arg & (CONF_ARG_ASSIGN | CONF_ARG_ASSIGN_SHORT)))
        check_assigned(r, abuf_find(assigned));
    switch (h.op) {
    case CONF_HOLD:
        break;
    case CONF_DELAY:
        if (px_timer_create(g->ctx, delay_fired, r, &r->timer) != 0 ||
            px_timer_start(r->timer, (uint64_t)h.arg * 1000, 0) != 0)
            abort();
        break;
    case CONF_GATHER:
        if (++ss->gathered >= h.arg)
            gather_release(ss);
        break;
    case CONF_SEQ_CHECK:
        r->reply.sr =
            (struct conf_seq_report){ss->seq_recv, ss->seq_err, ss->seq_first_bad, ss->seq_next};
        respond_hdr(r, &r->reply.sr, sizeof(r->reply.sr));
        break;
    case CONF_STATS:
        r->reply.st = st;
        respond_hdr(r, &r->reply.st, sizeof(r->reply.st));
        break;
    case CONF_UNBIND:
        g->unbind = 1 + (int)h.arg;
        respond_echo(r);
        px_ctx_stop(g->ctx);
        break;
    default:
        respond_echo(r);
        break;
    }
}

static int payload_ok(const px_msg *m, uint64_t seq)
{
    size_t off = 0;
    for (uint32_t k = 0; k < m->in.iov_count; k++) {
        const uint8_t *p = m->in.iov[k].base;
        for (size_t i = 0; i < m->in.iov[k].len; i++, off++)
            if (p[i] != conf_byte(seq, off))
                return 0;
    }
    return off == m->in.data_len;
}

static void handle_oneway(struct sess *ss, px_msg *m)
{
    struct conf_hdr h;
    ss->g->st.oneways++;
    if (conf_hdr_read(m->in.header, m->in.header_len, &h) == 0 && h.op == CONF_SEQ) {
        ss->seq_recv++;
        if (h.seq != ss->seq_next || !payload_ok(m, h.seq)) {
            if (ss->seq_err++ == 0)
                ss->seq_first_bad = h.seq;
        }
        ss->seq_next = h.seq + 1;
    }
    int rc = px_release_msg(m);
    if (rc != 0)
        anomaly(ss->g, "px_release_msg: %s", px_strerror(rc));
}

/* ---- callbacks ----------------------------------------------------------- */

static struct sess *sess_of(struct srv *g, px_conn *c, void *user, const char *cb)
{
    struct sess *ss = user;
    if (ss == NULL || ss != px_session_user(px_conn_session(c))) {
        anomaly(g, "%s: user pointer %p is not the session's", cb, user);
        ss = px_session_user(px_conn_session(c));
    }
    return ss;
}

static void on_msg(px_conn *c, px_msg *m, int more_in_batch, void *user)
{
    struct sess *ss = sess_of(G, c, user, "on_msg");
    if (m->type == PX_MSG_REQUEST)
        handle_request(ss, c, m);
    else if (m->type == PX_MSG_ONEWAY)
        handle_oneway(ss, m);
    else
        anomaly(G, "on_msg with type %d", (int)m->type);
}

/* A response we sent completed (ok or not): exactly once, else anomaly. */
static void response_done(px_msg *m, const char *cb, int reason)
{
    struct rec *r = m->user_context;
    if (r == (void *)&dropped_mark)
        return; /* we gave it up when its connection went away */
    if (r == (void *)&completed_mark || r == NULL) {
        anomaly(G, "%s(%s) for a response already completed", cb, px_errname(reason));
        return;
    }
    if (r->state != R_RESPONDING) {
        /* An error for a request we still hold: the library dropped it
         * (connection lost, canceled). Fine, but it ends here. */
        if (reason == 0)
            anomaly(G, "%s for a request never answered", cb);
        rec_free(r, &dropped_mark);
        return;
    }
    rec_free(r, &completed_mark);
}

static void on_msg_send_complete(px_conn *c, px_msg *m, void *user)
{
    response_done(m, "on_msg_send_complete", 0);
}

static void on_msg_error(px_conn *c, px_msg *m, px_msg_dir dir, int reason, void *user)
{
    if (reason >= 0)
        anomaly(G, "on_msg_error with reason %d", reason);
    if (dir == PX_DIR_IN) {
        /* A receive into our own buffer was cut short: the buffer is ours
         * again, and the message is none of our requests. */
        struct abuf *b = abuf_find(m->user_context);
        if (b == NULL)
            anomaly(G, "on_msg_error(PX_DIR_IN) for a message we gave no buffer");
        else
            abuf_free(b);
        G->st.aborted++;
        return;
    }
    if (dir != PX_DIR_OUT)
        anomaly(G, "on_msg_error with direction %d", (int)dir);
    response_done(m, "on_msg_error", reason);
}

/* The client gave up on a request we hold: plexus answered it; we drop it. */
static void on_msg_canceled(px_conn *c, px_msg *m, void *user)
{
    struct rec *r = m->user_context;
    G->st.canceled++;
    if (r == NULL || r == (void *)&completed_mark || r == (void *)&dropped_mark ||
        r->state != R_HELD) {
        anomaly(G, "on_msg_canceled for a request we do not hold");
        return;
    }
    int rc = px_send_response(m);
    if (rc != -PX_ECANCELED)
        anomaly(G, "px_send_response on a canceled request: %s, want PX_ECANCELED", px_errname(rc));
    rec_free(r, &dropped_mark);
    rc = px_release_msg(m);
    if (rc != 0)
        anomaly(G, "px_release_msg of a canceled request: %s", px_strerror(rc));
}

static void on_msg_delivered(px_conn *c, px_msg *m, void *user)
{
    anomaly(G, "on_msg_delivered on a server that sends no one-way messages");
}

/* Held requests of a connection that can no longer answer are dropped;
 * responses in progress must still complete through the library. */
static void drop_held(struct sess *ss, px_conn *c)
{
    struct rec *r = ss->recs.next;
    while (r != &ss->recs) {
        struct rec *next = r->next;
        if (r->conn == c && r->state == R_HELD)
            rec_free(r, &dropped_mark);
        r = next;
    }
}

static void conn_teardown(struct sess *ss, px_conn *c)
{
    drop_held(ss, c);
    struct rec *r = ss->recs.next;
    while (r != &ss->recs) {
        struct rec *next = r->next;
        if (r->conn == c) {
            anomaly(ss->g, "response seq %llu never completed before CONN_TEARDOWN",
                    (unsigned long long)r->hdr.seq);
            rec_free(r, &dropped_mark);
        }
        r = next;
    }
    for (struct conn_ent **pp = &ss->conns; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->conn == c) {
            struct conn_ent *e = *pp;
            *pp = e->next;
            free(e);
            ss->g->st.conns--;
            return;
        }
    }
}

static void conn_established(struct sess *ss, px_conn *c)
{
    struct conn_ent *e = calloc(1, sizeof(*e));
    if (e == NULL)
        abort();
    e->conn = c;
    e->next = ss->conns;
    ss->conns = e;
    ss->g->st.conns++;
}

static void session_teardown(struct sess *ss)
{
    struct srv *g = ss->g;
    if (ss->recs.next != &ss->recs)
        anomaly(g, "SESSION_TEARDOWN with requests still outstanding");
    while (ss->recs.next != &ss->recs)
        rec_free(ss->recs.next, &dropped_mark);
    if (ss->conns != NULL)
        anomaly(g, "SESSION_TEARDOWN before CONN_TEARDOWN of its connections");
    while (ss->conns != NULL) {
        struct conn_ent *e = ss->conns;
        ss->conns = e->next;
        free(e);
        g->st.conns--;
    }
    if (ss->accepted)
        g->st.sessions--;
    ss->prev->next = ss->next;
    ss->next->prev = ss->prev;
    free(ss);
}

static struct sess *adopt(px_session *s);

static void on_session_event(px_session *s, const px_event *ev, void *user)
{
    if (user == G && px_session_user(s) == G && ev->type == PX_EV_CONN_ESTABLISHED)
        user = adopt(s);
    struct sess *ss = px_session_user(s);
    if (ss == NULL || ss->s != s) {
        anomaly(G, "event %d for an unknown session", (int)ev->type);
        return;
    }
    if (user != ss)
        anomaly(G, "event %d: user pointer is not the session's", (int)ev->type);
    switch (ev->type) {
    case PX_EV_CONN_ESTABLISHED:
        conn_established(ss, ev->conn);
        break;
    case PX_EV_CONN_CLOSED:
    case PX_EV_CONN_DISCONNECTED:
        drop_held(ss, ev->conn);
        break;
    case PX_EV_CONN_TEARDOWN:
        conn_teardown(ss, ev->conn);
        break;
    case PX_EV_SESSION_TEARDOWN:
        session_teardown(ss);
        break;
    default:
        break;
    }
}

static struct sess *sess_new(px_session *s)
{
    struct sess *ss = calloc(1, sizeof(*ss));
    if (ss == NULL)
        abort();
    ss->g = G;
    ss->s = s;
    ss->recs.next = ss->recs.prev = &ss->recs;
    ss->seq_first_bad = UINT64_MAX;
    ss->next = &G->sessions;
    ss->prev = G->sessions.prev;
    ss->prev->next = ss;
    G->sessions.prev = ss;
    px_session_set_user(s, ss);
    return ss;
}

/* A session plexus accepted by itself (-a: no on_new_session): it still
 * carries the server's user pointer when its first event comes. */
static struct sess *adopt(px_session *s)
{
    struct sess *ss = sess_new(s);
    ss->accepted = 1;
    G->st.sessions++;
    return ss;
}

static void on_new_session(px_session *s, const px_new_session *req, void *user)
{
    struct srv *g = user;
    if (g != G)
        anomaly(G, "on_new_session: user pointer is not the server's");
    struct sess *ss = sess_new(s);

    int rc;
    const char *alt = G->alt_uri;
    if (req->private_len == 11 && memcmp(req->private_data, "redirect-me", 11) == 0 &&
        strcmp(req->uri, G->alt_uri) != 0) {
        rc = px_session_redirect(s, &alt, 1);
    } else if (req->private_len == 9 && memcmp(req->private_data, "portal-me", 9) == 0) {
        /* The second server as the only portal: further connections of
         * the session join it there. */
        ss->accepted = 1;
        G->st.sessions++;
        rc = px_session_accept(s, &alt, 1, "portal", 6);
    } else if (req->private_len == 9 && memcmp(req->private_data, "reject-me", 9) == 0) {
        G->st.rejected++;
        rc = px_session_reject(s, -PX_EPERM, "go away", 7);
    } else {
        /* The accept data proves the private data arrived intact. */
        char data[4200];
        size_t n = req->private_len < 4096 - 8 ? req->private_len : 4096 - 8;
        memcpy(data, "welcome:", 8);
        if (n > 0)
            memcpy(data + 8, req->private_data, n);
        ss->accepted = 1;
        G->st.sessions++;
        rc = px_session_accept(s, NULL, 0, data, 8 + n);
    }
    if (rc != 0)
        anomaly(G, "px_session_accept/reject: %s", px_strerror(rc));
}

static const px_session_ops server_ops = {
    .on_session_event = on_session_event,
    .on_new_session = on_new_session,
    .on_msg = on_msg,
    .on_msg_delivered = on_msg_delivered,
    .on_msg_send_complete = on_msg_send_complete,
    .on_msg_error = on_msg_error,
    .assign_data_in_buf = on_assign,
    .on_msg_canceled = on_msg_canceled,
};

/* -a: no on_new_session, so every session is accepted by plexus. The
 * session's user pointer is then the server's; on_session_event adopts
 * the session on its first event. */
static px_session_ops auto_ops;

/* ---- life cycle ---------------------------------------------------------- */

#ifndef CONF_SERVER_EMBED
static void on_sigterm(int sig)
{
    terminate = 1;
}
#endif

/* px_ctx_stop is not async-signal-safe, so the handler only sets a flag
 * that this timer polls. */
static void sig_poll(px_timer *t, void *arg)
{
    struct srv *g = arg;
    if (terminate)
        px_ctx_stop(g->ctx);
}

static void run_until_no_sessions(struct srv *g, int ms)
{
    uint64_t deadline = px_now_ns() + (uint64_t)ms * 1000000;
    while (g->sessions.next != &g->sessions && px_now_ns() < deadline)
        px_ctx_run_timeout(g->ctx, 10);
}

/* Answer what is held, close every session gracefully, and fall back to an
 * abrupt disconnect if that does not finish. */
static int shutdown_server(struct srv *g)
{
    int status = 0;
    for (struct sess *ss = g->sessions.next; ss != &g->sessions; ss = ss->next) {
        struct rec *r = ss->recs.next;
        while (r != &ss->recs) {
            struct rec *next = r->next;
            if (r->state == R_HELD)
                respond_echo(r);
            r = next;
        }
    }
    /* Unbinding closes the sessions too; closing them again is harmless. */
    px_server_unbind(g->server);
    px_server_unbind(g->alt);
    for (struct sess *ss = g->sessions.next; ss != &g->sessions; ss = ss->next)
        px_session_close(ss->s);
    run_until_no_sessions(g, 5000);
    for (struct sess *ss = g->sessions.next; ss != &g->sessions; ss = ss->next)
        for (struct conn_ent *e = ss->conns; e != NULL; e = e->next)
            px_conn_disconnect(e->conn);
    run_until_no_sessions(g, 2000);
    if (g->sessions.next != &g->sessions) {
        fprintf(stderr, "conf_server: sessions never got SESSION_TEARDOWN after close\n");
        status = 4;
        while (g->sessions.next != &g->sessions)
            session_teardown(g->sessions.next);
    }
    /* Buffers assigned to messages that never reached on_msg. */
    while (g->abufs.next != &g->abufs)
        abuf_free(g->abufs.next);
    px_timer_destroy(g->sigtimer);
    int rc = px_ctx_destroy(g->ctx);
    if (rc != 0) {
        fprintf(stderr, "conf_server: px_ctx_destroy: %s\n", px_strerror(rc));
        status = 3;
    }
    if (status == 0 && g->st.anomalies != 0)
        status = 5;
    return status;
}

/* A second server of the same scheme, for redirects: port 0 for tcp and
 * rdma, a "-alt" suffix for path- and name-addressed transports. */
static int bind_alt(struct srv *g, const char *uri)
{
    char alt[1100];
    const char *colon = strrchr(uri, ':');
    if ((strncmp(uri, "tcp://", 6) == 0 || strncmp(uri, "rdma://", 7) == 0) && colon != NULL)
        snprintf(alt, sizeof(alt), "%.*s:0", (int)(colon - uri), uri);
    else
        snprintf(alt, sizeof(alt), "%s-alt", uri);
    int rc = px_server_bind(g->ctx, alt, &server_ops, g, &g->alt);
    if (rc == 0 && px_server_uri(g->alt, g->alt_uri, sizeof(g->alt_uri)) < 0)
        rc = -PX_ENOSPC;
    return rc;
}

/* CONF_UNBIND: end the servers as asked, then destroy the context without
 * ending a session ourselves; it must succeed. */
static int unbind_and_exit(struct srv *g)
{
    int how = g->unbind - 1;
    if (how == CONF_UNBIND_ABRUPT) {
        px_server_disconnect(g->server);
        px_server_disconnect(g->alt);
    } else {
        px_server_unbind(g->server);
        px_server_unbind(g->alt);
    }
    if (how != CONF_UNBIND_DESTROY)
        run_until_no_sessions(g, 10000);
    px_timer_destroy(g->sigtimer);
    int rc = px_ctx_destroy(g->ctx);
    if (rc != 0) {
        fprintf(stderr, "conf_server: px_ctx_destroy after unbinding: %s\n", px_strerror(rc));
        return 3;
    }
    if (g->sessions.next != &g->sessions) {
        fprintf(stderr, "conf_server: px_ctx_destroy left sessions without SESSION_TEARDOWN\n");
        return 4;
    }
    while (g->abufs.next != &g->abufs)
        abuf_free(g->abufs.next);
    return g->st.anomalies ? 5 : 0;
}

#ifdef CONF_SERVER_EMBED
#include "conf_server.h"
void conf_server_terminate(void)
{
    terminate = 1;
}
#else
static int conf_server_main(int argc, char **argv, FILE *out);
int main(int argc, char **argv)
{
    signal(SIGTERM, on_sigterm);
    return conf_server_main(argc, argv, stdout);
}
#endif

int conf_server_main(int argc, char **argv, FILE *out)
{
    static struct srv g;
    memset(&g, 0, sizeof(g));
    terminate = 0;
    optind = 1;
    char uri[1100];
    /* A server sized for the suite: 1,000 requests held per connection. */
    px_ctx_opts o = {.queue_depth = 4096};
    const px_session_ops *ops = &server_ops;
    int opt;
    while ((opt = getopt(argc, argv, "ah:k:r:q:")) != -1) {
        switch (opt) {
        case 'a':
            auto_ops = server_ops;
            auto_ops.on_new_session = NULL;
            ops = &auto_ops;
            break;
        case 'h':
            o.handshake_timeout_ms = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'k':
            o.keepalive_ms = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'r':
            o.max_rx_held_bytes = strtoull(optarg, NULL, 10);
            break;
        case 'q':
            o.queue_depth = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        default:
            fprintf(stderr, "usage: conf_server URI [-a] [-h ms] [-k ms] [-r bytes] [-q depth]\n");
            return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "usage: conf_server URI [-a] [-h ms] [-k ms] [-r bytes] [-q depth]\n");
        return 2;
    }
    const char *bind_uri = argv[optind];
    G = &g;
    g.sessions.next = g.sessions.prev = &g.sessions;
    g.abufs.next = g.abufs.prev = &g.abufs;

    int rc = px_ctx_create(&o, &g.ctx);
    if (rc == 0)
        rc = px_server_bind(g.ctx, bind_uri, ops, &g, &g.server);
    if (rc == 0)
        rc = px_server_uri(g.server, uri, sizeof(uri)) < 0 ? -PX_ENOSPC : 0;
    if (rc == 0)
        rc = bind_alt(&g, bind_uri);
    if (rc == 0)
        rc = px_timer_create(g.ctx, sig_poll, &g, &g.sigtimer);
    if (rc == 0)
        rc = px_timer_start(g.sigtimer, 10000, 10000);
    if (rc != 0) {
        fprintf(stderr, "conf_server: cannot serve %s: %s\n", bind_uri, px_strerror(rc));
        return 2;
    }
    fprintf(out, "URI %s\nALT %s\n", uri, g.alt_uri);
    fflush(out);

    while (!terminate && !g.unbind)
        px_ctx_run(g.ctx);
    return g.unbind ? unbind_and_exit(&g) : shutdown_server(&g);
}
