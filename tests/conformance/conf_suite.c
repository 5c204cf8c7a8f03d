/* The transport conformance suite: one black-box suite that every transport
 * must pass, parameterised by the server URI (argv[1] or $PX_CONF_URI; a
 * literal "%p" becomes the server's pid, for unique unix socket paths).
 *
 * Each case starts conf_server in its own process, runs the client half
 * here, then stops the server with SIGTERM and requires exit status 0: the
 * server checks the library's side of the contract and, under ASan, that
 * nothing leaked. For inproc:// (one process only) the server runs on a
 * thread of the case's process instead, and the cases that need it in
 * another process (killed, stopped) or speak raw bytes to it are reported
 * as not applicable. Every message a case sends carries a state; a second
 * completion, or one for a message that was refused, fails the case.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <plexus/frame.h> /* frame types, for the raw peer */
#include <plexus/plexus.h>

#include "conf_proto.h"
#include "conf_server.h"
#include "raw_link.h"
#include "transports/shm/shm_ring.h" /* record kinds, for the raw shm peer */

#ifndef CONF_SERVER_PATH
#error "CONF_SERVER_PATH must name the conf_server binary"
#endif

#define URI_LEN 1100
#define MAX_SEG 24
#define MIB     (1024u * 1024u)

static const char *g_uri; /* as given: may contain %p */

static uint64_t now_ms(void)
{
    return px_now_ns() / 1000000;
}

/* ---- the server process ------------------------------------------------- */

struct server {
    pid_t pid;             /* 0 when it runs on a thread of ours */
    pthread_t thread;      /* inproc:// */
    char uri[URI_LEN];     /* as bound, with the real port or path */
    char alt_uri[URI_LEN]; /* the second server, where redirects point */
};

/* inproc:// connects only inside one process: the server is a thread. */
static int in_process(void)
{
    return strncmp(g_uri, "inproc://", 9) == 0;
}

struct server_thread_args {
    const char *argv[16];
    int argc;
    FILE *out;
};

static void *server_thread(void *arg)
{
    struct server_thread_args *a = arg;
    int rc = conf_server_main(a->argc, (char **)a->argv, a->out);
    fclose(a->out);
    return (void *)(intptr_t)rc;
}

/* Wait up to ms for the server thread; 0 and its exit code, or -1. */
static int server_thread_join(struct server *sv, int ms, int *code)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += ms / 1000;
    dl.tv_nsec += (long)(ms % 1000) * 1000000;
    if (dl.tv_nsec >= 1000000000) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000;
    }
    void *ret;
    if (pthread_timedjoin_np(sv->thread, &ret, &dl) != 0)
        return -1;
    *code = (int)(intptr_t)ret;
    return 0;
}

static void subst_pid(const char *in, pid_t pid, char *out, size_t len)
{
    const char *p = strstr(in, "%p");
    if (p == NULL)
        snprintf(out, len, "%s", in);
    else
        snprintf(out, len, "%.*s%d%s", (int)(p - in), in, (int)pid, p + 2);
}

/* Read "<tag><value>\n" from the server's stdout into out[URI_LEN]. */
static void read_tagged_line(int fd, const char *tag, char *out)
{
    char line[URI_LEN + 8];
    size_t n = 0;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    while (n < sizeof(line) - 1 && (n == 0 || line[n - 1] != '\n')) {
        ck_assert_msg(poll(&pfd, 1, 10000) == 1, "conf_server printed no %sline in 10 s", tag);
        ck_assert_msg(read(fd, line + n, 1) == 1, "conf_server exited before its %sline", tag);
        n++;
    }
    line[n - 1] = '\0';
    ck_assert_msg(strncmp(line, tag, strlen(tag)) == 0, "conf_server printed '%s'", line);
    snprintf(out, URI_LEN, "%s", line + strlen(tag));
}

/* Start conf_server with extra options (NULL-terminated, may be NULL) and,
 * when `fault` is set, PX_FAULT=fault in its environment. */
static void server_start_thread(struct server *sv, const char *const *extra, const char *fault,
                                int out_fd)
{
    static struct server_thread_args a;
    static char uri[URI_LEN];
    subst_pid(g_uri, getpid(), uri, sizeof(uri));
    a.argc = 0;
    a.argv[a.argc++] = "conf_server";
    a.argv[a.argc++] = uri;
    for (; extra && *extra && a.argc < 15; extra++)
        a.argv[a.argc++] = *extra;
    a.argv[a.argc] = NULL;
    a.out = fdopen(out_fd, "w");
    ck_assert_ptr_nonnull(a.out);
    if (fault) /* read when the server's context is made; unset once it is */
        setenv("PX_FAULT", fault, 1);
    sv->pid = 0;
    ck_assert_int_eq(pthread_create(&sv->thread, NULL, server_thread, &a), 0);
}

static void server_start_with(struct server *sv, const char *const *extra, const char *fault)
{
    int p[2];
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    if (in_process()) {
        server_start_thread(sv, extra, fault, p[1]);
        read_tagged_line(p[0], "URI ", sv->uri);
        read_tagged_line(p[0], "ALT ", sv->alt_uri);
        close(p[0]);
        unsetenv("PX_FAULT");
        return;
    }
    sv->pid = fork();
    ck_assert_int_ge(sv->pid, 0);
    if (sv->pid == 0) {
        char uri[URI_LEN];
        const char *argv[16] = {"conf_server", uri};
        int n = 2;
        for (; extra && *extra && n < 15; extra++)
            argv[n++] = *extra;
        argv[n] = NULL;
        /* A failing case exits at once: take the server with it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(p[1], STDOUT_FILENO);
        subst_pid(g_uri, getpid(), uri, sizeof(uri));
        if (fault)
            setenv("PX_FAULT", fault, 1);
        execv(CONF_SERVER_PATH, (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    read_tagged_line(p[0], "URI ", sv->uri);
    read_tagged_line(p[0], "ALT ", sv->alt_uri);
    close(p[0]);
}

static void server_start(struct server *sv)
{
    server_start_with(sv, NULL, NULL);
}

static int wait_exit(pid_t pid, int ms, int *status);
static void server_cleanup_path(const struct server *sv);

/* The server must exit on its own (after CONF_UNBIND), with status 0. */
static void server_expect_exit(struct server *sv, int ms)
{
    int status;
    if (!sv->pid) {
        ck_assert_msg(server_thread_join(sv, ms, &status) == 0,
                      "conf_server did not return by itself within %d ms", ms);
        ck_assert_msg(status == 0,
                      "conf_server returned %d: 3: px_ctx_destroy failed, 4: sessions never torn "
                      "down, 5: anomalies",
                      status);
        return;
    }
    if (wait_exit(sv->pid, ms, &status) != 0) {
        kill(sv->pid, SIGKILL);
        waitpid(sv->pid, &status, 0);
        server_cleanup_path(sv);
        ck_abort_msg("conf_server did not exit by itself within %d ms", ms);
    }
    server_cleanup_path(sv);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "conf_server exited with status %d (signal %d): 3: px_ctx_destroy failed, 4: "
                  "sessions never torn down, 5: anomalies",
                  WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                  WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

static void server_cleanup_path(const struct server *sv)
{
    if (strncmp(sv->uri, "unix://", 7) == 0)
        unlink(sv->uri + 7);
    if (strncmp(sv->alt_uri, "unix://", 7) == 0)
        unlink(sv->alt_uri + 7);
}

static int wait_exit(pid_t pid, int ms, int *status)
{
    uint64_t deadline = now_ms() + ms;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return 0;
        if (now_ms() > deadline)
            return -1;
        usleep(5000);
    }
}

/* SIGTERM, then exit status 0 is required: the server found no contract
 * violation and (under ASan) no leak. */
static void server_stop(struct server *sv)
{
    int status;
    if (!sv->pid) {
        conf_server_terminate();
        ck_assert_msg(server_thread_join(sv, 15000, &status) == 0,
                      "conf_server did not return within 15 s of being told to stop");
        ck_assert_msg(status == 0,
                      "conf_server returned %d (3: ctx destroy failed, 4: sessions never torn "
                      "down, 5: contract anomalies — see stderr)",
                      status);
        return;
    }
    kill(sv->pid, SIGTERM);
    if (wait_exit(sv->pid, 15000, &status) != 0) {
        kill(sv->pid, SIGKILL);
        waitpid(sv->pid, &status, 0);
        server_cleanup_path(sv);
        ck_abort_msg("conf_server did not exit within 15 s of SIGTERM");
    }
    server_cleanup_path(sv);
    ck_assert_msg(!WIFSIGNALED(status), "conf_server died of signal %d", WTERMSIG(status));
    ck_assert_msg(WEXITSTATUS(status) == 0,
                  "conf_server exited with %d (3: ctx destroy failed, 4: sessions never torn "
                  "down, 5: contract anomalies — see its stderr; other: sanitizer)",
                  WEXITSTATUS(status));
}

static void server_kill(struct server *sv)
{
    int status;
    kill(sv->pid, SIGKILL);
    waitpid(sv->pid, &status, 0);
    server_cleanup_path(sv);
}

/* ---- test messages ------------------------------------------------------ */

enum tstate { T_IDLE, T_SENT, T_OK, T_ERR };
enum tkind { K_REQ, K_ONEWAY };
#define TMSG_MAGIC 0x746d7367u

struct client;

struct tmsg {
    px_msg m;
    uint32_t magic;
    enum tstate state;
    enum tkind kind;
    int err;
    struct client *cl;
    struct conf_hdr hdr;
    uint8_t *big_hdr; /* when set, the header sent instead of hdr */
    uint32_t big_hdr_len;
    uint64_t seq;
    size_t size;
    uint8_t *expect;  /* the payload, contiguous */
    uint8_t *out_buf; /* the payload again, in segments with poisoned gaps */
    size_t cap;
    px_iov out_iov[MAX_SEG];
    uint8_t *in_buf; /* a reply landing place of our own, when set */
    size_t in_cap;
    px_iov in_iov[3];
    void *reply_copy; /* STATS / SEQ_CHECK: the response header */
    uint32_t reply_len;
};

#define GAP    8
#define POISON 0xee

/* Lay `size` payload bytes out in `nseg` segments separated by poisoned
 * gaps: a transport that reads past a segment picks up poison. */
static void tmsg_payload(struct tmsg *t, uint64_t seq, size_t size, unsigned nseg)
{
    ck_assert_uint_le(nseg, MAX_SEG);
    if (size < nseg)
        nseg = (unsigned)size;
    if (t->cap < size + 1) {
        free(t->expect);
        free(t->out_buf);
        t->cap = size + 1;
        t->expect = malloc(t->cap);
        t->out_buf = malloc(t->cap + (size_t)MAX_SEG * GAP);
        ck_assert(t->expect != NULL && t->out_buf != NULL);
    }
    conf_fill(t->expect, seq, size);
    uint8_t *p = t->out_buf;
    size_t off = 0;
    for (unsigned k = 0; k < nseg; k++) {
        size_t len = k + 1 < nseg ? size / nseg : size - off;
        memcpy(p, t->expect + off, len);
        memset(p + len, POISON, GAP);
        t->out_iov[k] = (px_iov){.base = p, .len = len};
        p += len + GAP;
        off += len;
    }
    t->m.out.iov = nseg ? t->out_iov : NULL;
    t->m.out.iov_count = nseg;
    t->size = size;
}

/* Fill an idle message for sending. The px_msg is ours between
 * completions; only plexus's priv[] is left alone. */
static void tmsg_prep(struct tmsg *t, enum conf_op op, uint64_t seq, size_t size, unsigned nseg,
                      uint32_t arg)
{
    ck_assert_msg(t->state != T_SENT, "test bug: reusing an outstanding message");
    t->magic = TMSG_MAGIC;
    t->state = T_IDLE;
    t->err = 0;
    t->seq = seq;
    t->hdr = (struct conf_hdr){.magic = CONF_MAGIC, .op = op, .seq = seq, .arg = arg};
    memset(&t->m.out, 0, sizeof(t->m.out));
    memset(&t->m.in, 0, sizeof(t->m.in));
    t->m.flags = 0;
    t->m.timeout_ms = 0;
    t->m.user_context = t;
    if (t->big_hdr != NULL) {
        memcpy(t->big_hdr, &t->hdr, sizeof(t->hdr));
        t->m.out.header = t->big_hdr;
        t->m.out.header_len = t->big_hdr_len;
    } else {
        t->m.out.header = &t->hdr;
        t->m.out.header_len = sizeof(t->hdr);
    }
    tmsg_payload(t, seq, size, nseg);
    if (t->in_buf != NULL) {
        t->m.in.iov = t->in_iov;
        t->m.in.iov_count = 3;
    }
}

/* Ask for the reply in our own memory: three segments with poisoned gaps,
 * `cap` bytes in all. */
static void tmsg_own_reply(struct tmsg *t, size_t cap)
{
    free(t->in_buf);
    t->in_cap = cap;
    t->in_buf = malloc(cap + 3 * GAP);
    ck_assert(t->in_buf != NULL);
    memset(t->in_buf, POISON, cap + 3 * GAP);
    uint8_t *p = t->in_buf;
    size_t off = 0;
    for (int k = 0; k < 3; k++) {
        size_t len = k < 2 ? cap / 3 : cap - off;
        t->in_iov[k] = (px_iov){.base = p, .len = len};
        p += len + GAP;
        off += len;
    }
}

/* The poisoned gaps around our reply segments must be intact. */
static int in_gaps_intact(const struct tmsg *t)
{
    for (int k = 0; k < 3; k++) {
        const uint8_t *g = (const uint8_t *)t->in_iov[k].base + t->in_iov[k].len;
        for (int i = 0; i < GAP; i++)
            if (g[i] != POISON)
                return 0;
    }
    return 1;
}

static void tmsg_free(struct tmsg *t)
{
    free(t->expect);
    free(t->out_buf);
    free(t->in_buf);
    free(t->big_hdr);
    free(t->reply_copy);
    memset(t, 0, sizeof(*t));
}

static struct tmsg *tmsgs_new(size_t n)
{
    struct tmsg *t = calloc(n, sizeof(*t));
    ck_assert(t != NULL);
    return t;
}

static void tmsgs_free(struct tmsg *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        tmsg_free(&t[i]);
    free(t);
}

/* ---- the client --------------------------------------------------------- */

#define EV_MAX (PX_EV_SESSION_TEARDOWN + 1)

struct client {
    px_ctx *ctx;
    px_session *s;
    px_conn *c;
    int ev[EV_MAX];
    int ev_seq[64]; /* event types in delivery order */
    int n_ev;
    int reject_reason, disc_reason;
    char data[4200]; /* ESTABLISHED / REJECTED data */
    size_t data_len;
    char redirect[URI_LEN]; /* REDIRECTED data */
    size_t redirect_len;
    uint64_t n_ok, n_err, n_delivered, n_sendc; /* completions */
    uint64_t n_req_err;                         /* n_err of requests only */
    uint64_t ok_at_closed, req_err_at_disc;
    int n_conns; /* connections of the session beyond c (0: c alone); each gets its CONN_ events */
    int own_ctx; /* client_close destroys ctx */
    /* Called after a message completed and its state was set; for a
     * response it must release it. NULL: verify an echo and release. */
    void (*done)(struct client *cl, struct tmsg *t);
    void *arg;
};

static const char *ev_name(int type)
{
    static const char *const names[] = {"?",
                                        "SESSION_ESTABLISHED",
                                        "SESSION_REJECTED",
                                        "SESSION_REDIRECTED",
                                        "CONN_ESTABLISHED",
                                        "CONN_CLOSED",
                                        "CONN_DISCONNECTED",
                                        "CONN_ERROR",
                                        "CONN_TEARDOWN",
                                        "SESSION_TEARDOWN"};
    return type > 0 && type < EV_MAX ? names[type] : "?";
}

static void ev_check_alive(struct client *cl, const char *what)
{
    ck_assert_msg(cl->ev[PX_EV_SESSION_TEARDOWN] == 0, "%s after SESSION_TEARDOWN", what);
}

static void on_event(px_session *s, const px_event *ev, void *user)
{
    struct client *cl = user;
    ck_assert_msg(s == cl->s, "event for a session that is not ours");
    ck_assert_msg(ev->type > 0 && ev->type < EV_MAX, "unknown event type %d", (int)ev->type);
    ev_check_alive(cl, ev_name(ev->type));
    int conn_ev = ev->type >= PX_EV_CONN_ESTABLISHED && ev->type <= PX_EV_CONN_TEARDOWN;
    int once = conn_ev ? 1 + cl->n_conns : 1; /* per connection */
    ck_assert_msg(++cl->ev[ev->type] <= once, "event %s delivered twice", ev_name(ev->type));
    if (cl->n_ev < 64)
        cl->ev_seq[cl->n_ev++] = ev->type;
    if (conn_ev && cl->n_conns == 0) {
        ck_assert_msg(ev->conn == cl->c, "%s names a connection that is not ours",
                      ev_name(ev->type));
        ck_assert_msg(cl->ev[PX_EV_CONN_TEARDOWN] == 0 || ev->type == PX_EV_CONN_TEARDOWN,
                      "%s after CONN_TEARDOWN", ev_name(ev->type));
    }
    switch (ev->type) {
    case PX_EV_SESSION_ESTABLISHED:
    case PX_EV_SESSION_REJECTED:
        cl->reject_reason = ev->reason;
        ck_assert_uint_le(ev->data_len, sizeof(cl->data));
        if (ev->data_len > 0)
            memcpy(cl->data, ev->data, ev->data_len);
        cl->data_len = ev->data_len;
        break;
    case PX_EV_SESSION_REDIRECTED:
        ck_assert_uint_lt(ev->data_len, sizeof(cl->redirect));
        memcpy(cl->redirect, ev->data, ev->data_len);
        cl->redirect_len = ev->data_len;
        break;
    case PX_EV_CONN_CLOSED:
        cl->ok_at_closed = cl->n_ok;
        break;
    case PX_EV_CONN_DISCONNECTED:
        cl->disc_reason = ev->reason;
        cl->req_err_at_disc = cl->n_req_err;
        break;
    case PX_EV_SESSION_TEARDOWN:
        if (cl->c != NULL)
            ck_assert_msg(cl->ev[PX_EV_CONN_TEARDOWN] == 1 + cl->n_conns,
                          "SESSION_TEARDOWN before its connection's CONN_TEARDOWN");
        break;
    default:
        break;
    }
}

/* Exactly once: a message completes only from T_SENT. */
static struct tmsg *complete(px_msg *m, enum tstate how, int err, const char *via)
{
    struct tmsg *t = m->user_context;
    ck_assert_msg(t != NULL && t->magic == TMSG_MAGIC && &t->m == m,
                  "%s for a px_msg the test never sent", via);
    ev_check_alive(t->cl, via);
    ck_assert_msg(t->state == T_SENT, "%s for message seq %llu that %s", via,
                  (unsigned long long)t->seq,
                  t->state == T_IDLE ? "was never accepted for sending"
                                     : "had completed already (second completion)");
    t->state = how;
    t->err = err;
    return t;
}

/* Walk a delivered vector and compare it with `expect`. */
static void check_data(const px_msg_vec *in, const uint8_t *expect, size_t len, uint64_t seq)
{
    ck_assert_msg(in->data_len == len, "seq %llu: reply has %llu data bytes, sent %zu",
                  (unsigned long long)seq, (unsigned long long)in->data_len, len);
    size_t off = 0;
    for (uint32_t k = 0; k < in->iov_count && off < len; k++) {
        size_t n = in->iov[k].len < len - off ? in->iov[k].len : len - off;
        ck_assert_msg(n == 0 || memcmp(in->iov[k].base, expect + off, n) == 0,
                      "seq %llu: reply data differs in segment %u (offset %zu)",
                      (unsigned long long)seq, k, off);
        off += n;
    }
    ck_assert_msg(off == len, "seq %llu: reply iovecs hold %zu of %zu bytes",
                  (unsigned long long)seq, off, len);
}

static void check_echo(struct tmsg *t)
{
    px_msg *m = &t->m;
    ck_assert_msg(m->type == PX_MSG_RESPONSE, "seq %llu: delivered type %d, not RESPONSE",
                  (unsigned long long)t->seq, (int)m->type);
    ck_assert_msg(m->in.header_len == m->out.header_len &&
                      memcmp(m->in.header, m->out.header, m->in.header_len) == 0,
                  "seq %llu: reply header differs (%u bytes, sent %u)", (unsigned long long)t->seq,
                  m->in.header_len, m->out.header_len);
    if (t->in_buf == NULL) {
        check_data(&m->in, t->expect, t->size, t->seq);
        return;
    }
    /* Our landing place: the data must be in our segments, in order. */
    ck_assert_msg(m->in.iov == t->in_iov, "reply did not land in the provided in.iov");
    px_msg_vec ours = {.iov = t->in_iov, .iov_count = 3, .data_len = m->in.data_len};
    check_data(&ours, t->expect, t->size, t->seq);
    ck_assert_msg(in_gaps_intact(t), "seq %llu: reply written outside the provided segments",
                  (unsigned long long)t->seq);
}

static void release(struct tmsg *t)
{
    ck_assert_int_eq(px_release_response(&t->m), 0);
}

static void on_msg(px_conn *c, px_msg *m, int more_in_batch, void *user)
{
    struct client *cl = user;
    ck_assert_msg(m->type == PX_MSG_RESPONSE, "client got on_msg of type %d", (int)m->type);
    struct tmsg *t = complete(m, T_OK, 0, "on_msg(RESPONSE)");
    ck_assert_msg(t->kind == K_REQ, "a response to a one-way message");
    cl->n_ok++;
    if (cl->done != NULL) {
        cl->done(cl, t);
    } else {
        check_echo(t);
        release(t);
    }
}

static void on_msg_error(px_conn *c, px_msg *m, px_msg_dir dir, int reason, void *user)
{
    struct client *cl = user;
    ck_assert_msg(reason < 0, "on_msg_error with reason %d", reason);
    ck_assert_msg(dir == PX_DIR_OUT, "on_msg_error direction %d on a client that assigns nothing",
                  (int)dir);
    struct tmsg *t = complete(m, T_ERR, reason, "on_msg_error");
    cl->n_err++;
    if (t->kind == K_REQ)
        cl->n_req_err++;
    if (cl->done != NULL)
        cl->done(cl, t);
}

static void on_msg_delivered(px_conn *c, px_msg *m, void *user)
{
    struct client *cl = user;
    struct tmsg *t = complete(m, T_OK, 0, "on_msg_delivered");
    ck_assert_msg(t->kind == K_ONEWAY && (t->m.flags & PX_MSG_RECEIPT),
                  "on_msg_delivered for a message that asked for no receipt");
    cl->n_delivered++;
    if (cl->done != NULL)
        cl->done(cl, t);
}

static void on_msg_send_complete(px_conn *c, px_msg *m, void *user)
{
    struct client *cl = user;
    struct tmsg *t = complete(m, T_OK, 0, "on_msg_send_complete");
    ck_assert_msg(t->kind == K_ONEWAY && !(t->m.flags & PX_MSG_RECEIPT),
                  "on_msg_send_complete for a %s",
                  t->kind == K_REQ ? "request" : "receipt message");
    cl->n_sendc++;
    if (cl->done != NULL)
        cl->done(cl, t);
}

static const px_session_ops client_ops = {
    .on_session_event = on_event,
    .on_msg = on_msg,
    .on_msg_delivered = on_msg_delivered,
    .on_msg_send_complete = on_msg_send_complete,
    .on_msg_error = on_msg_error,
};

/* Drive the loop until `cond` holds; fail after `ms`. */
#define RUN_UNTIL(cl, cond, ms)                                                                    \
    do {                                                                                           \
        uint64_t dl_ = now_ms() + (ms);                                                            \
        while (!(cond)) {                                                                          \
            ck_assert_msg(now_ms() < dl_, "timed out after %d ms waiting for: %s", (int)(ms),      \
                          #cond);                                                                  \
            int rc_ = px_ctx_run_timeout((cl)->ctx, 10);                                           \
            ck_assert_msg(rc_ == 0 || rc_ == -PX_ETIMEDOUT, "px_ctx_run_timeout: %s",              \
                          px_strerror(rc_));                                                       \
        }                                                                                          \
    } while (0)

static void run_for(struct client *cl, int ms)
{
    uint64_t dl = now_ms() + ms;
    while (now_ms() < dl)
        px_ctx_run_timeout(cl->ctx, 10);
}

/* A session of cl on ctx, which cl does not own (client_close leaves it). */
static void client_open_on(struct client *cl, px_ctx *ctx, const char *uri, const char *priv);

static void client_open(struct client *cl, const char *uri, const px_ctx_opts *o, const char *priv)
{
    px_ctx *ctx;
    ck_assert_int_eq(px_ctx_create(o, &ctx), 0);
    client_open_on(cl, ctx, uri, priv);
    cl->own_ctx = 1;
}

static void client_open_on(struct client *cl, px_ctx *ctx, const char *uri, const char *priv)
{
    memset(cl, 0, sizeof(*cl));
    cl->ctx = ctx;
    px_session_params p = {.uri = uri,
                           .ops = &client_ops,
                           .user = cl,
                           .private_data = priv,
                           .private_len = priv ? strlen(priv) : 0};
    int rc = px_session_create(cl->ctx, &p, &cl->s);
    ck_assert_msg(rc == 0, "px_session_create(%s): %s", uri, px_strerror(rc));
    rc = px_connect(cl->s, cl->ctx, &cl->c);
    ck_assert_msg(rc == 0, "px_connect: %s", px_strerror(rc));
}

static void client_wait_up(struct client *cl)
{
    RUN_UNTIL(cl, cl->ev[PX_EV_CONN_ESTABLISHED] && cl->ev[PX_EV_SESSION_ESTABLISHED], 10000);
}

static struct client *client_new(const char *uri, const px_ctx_opts *o)
{
    struct client *cl = malloc(sizeof(*cl));
    ck_assert(cl != NULL);
    client_open(cl, uri, o, "conformance");
    client_wait_up(cl);
    return cl;
}

/* End the session and the context; both must finish cleanly. */
static void client_close(struct client *cl)
{
    int rc;
    /* A session may have ended on its own (rejected): it is gone then. */
    if (!cl->ev[PX_EV_SESSION_TEARDOWN]) {
        rc = px_session_close(cl->s);
        ck_assert_msg(rc == 0 || rc == -PX_EALREADY, "px_session_close: %s", px_strerror(rc));
    }
    RUN_UNTIL(cl, cl->ev[PX_EV_SESSION_TEARDOWN], 10000);
    if (!cl->own_ctx)
        return;
    rc = px_ctx_destroy(cl->ctx);
    ck_assert_msg(rc == 0, "px_ctx_destroy after SESSION_TEARDOWN: %s", px_strerror(rc));
}

static void client_free(struct client *cl)
{
    client_close(cl);
    free(cl);
}

static int send_req(struct client *cl, struct tmsg *t)
{
    t->cl = cl;
    t->kind = K_REQ;
    int rc = px_send_request(cl->c, &t->m);
    if (rc == 0)
        t->state = T_SENT;
    return rc;
}

static void send_req_ok(struct client *cl, struct tmsg *t)
{
    int rc = send_req(cl, t);
    ck_assert_msg(rc == 0, "px_send_request seq %llu: %s", (unsigned long long)t->seq,
                  px_strerror(rc));
}

static int send_oneway(struct client *cl, struct tmsg *t, uint32_t flags)
{
    t->cl = cl;
    t->kind = K_ONEWAY;
    t->m.flags = flags;
    int rc = px_send_msg(cl->c, &t->m);
    if (rc == 0)
        t->state = T_SENT;
    return rc;
}

/* One request, waited for. */
static void echo_once(struct client *cl, uint64_t seq, size_t size)
{
    struct tmsg *t = tmsgs_new(1);
    uint64_t ok = cl->n_ok;
    tmsg_prep(t, CONF_ECHO, seq, size, 1, 0);
    send_req_ok(cl, t);
    RUN_UNTIL(cl, t->state != T_SENT, 10000);
    ck_assert_msg(t->state == T_OK, "echo failed: %s", px_strerror(t->err));
    ck_assert_uint_eq(cl->n_ok, ok + 1);
    tmsgs_free(t, 1);
}

static void keep_reply(struct client *cl, struct tmsg *t)
{
    if (t->state == T_OK) {
        ck_assert_msg(t->m.type == PX_MSG_RESPONSE, "reply type %d", (int)t->m.type);
        free(t->reply_copy);
        t->reply_len = t->m.in.header_len;
        t->reply_copy = malloc(t->reply_len + 1);
        memcpy(t->reply_copy, t->m.in.header, t->reply_len);
        release(t);
    }
}

/* A request whose response header is a struct of `len` bytes. */
static void query(struct client *cl, enum conf_op op, void *out, size_t len)
{
    struct tmsg *t = tmsgs_new(1);
    void (*saved)(struct client *, struct tmsg *) = cl->done;
    cl->done = keep_reply;
    tmsg_prep(t, op, 0, 0, 0, 0);
    send_req_ok(cl, t);
    RUN_UNTIL(cl, t->state != T_SENT, 10000);
    cl->done = saved;
    ck_assert_msg(t->state == T_OK, "query %d failed: %s", (int)op, px_strerror(t->err));
    ck_assert_msg(t->reply_len == len, "query %d: reply header of %u bytes, want %zu", (int)op,
                  t->reply_len, len);
    memcpy(out, t->reply_copy, len);
    tmsgs_free(t, 1);
}

static void get_stats(struct client *cl, struct conf_stats *st)
{
    query(cl, CONF_STATS, st, sizeof(*st));
}

/* Poll the server's STATS until it holds `held` requests. */
static void wait_server_held(struct client *cl, uint64_t held)
{
    struct conf_stats st;
    uint64_t dl = now_ms() + 10000;
    for (;;) {
        get_stats(cl, &st);
        if (st.held >= held)
            return;
        ck_assert_msg(now_ms() < dl, "server holds %llu requests, expected %llu",
                      (unsigned long long)st.held, (unsigned long long)held);
        run_for(cl, 10);
    }
}

/* Poll the server's STATS (into st) through `cl` until `cond` holds;
 * fail with the message after `ms`. */
#define STATS_UNTIL(cl, st, cond, ms, ...)                                                         \
    do {                                                                                           \
        uint64_t dl_ = now_ms() + (ms);                                                            \
        for (get_stats((cl), &(st)); !(cond); get_stats((cl), &(st))) {                            \
            ck_assert_msg(now_ms() < dl_, __VA_ARGS__);                                            \
            run_for((cl), 10);                                                                     \
        }                                                                                          \
    } while (0)

/* ---- cases --------------------------------------------------------------- */

START_TEST(connect_accept)
{
    struct server sv;
    struct client cl;
    server_start(&sv);
    client_open(&cl, sv.uri, NULL, "hello-private");
    ck_assert_ptr_eq(px_conn_session(cl.c), cl.s);
    ck_assert_ptr_eq(px_conn_ctx(cl.c), cl.ctx);
    ck_assert_ptr_eq(px_session_user(cl.s), &cl);
    client_wait_up(&cl);
    ck_assert_int_eq(cl.ev[PX_EV_SESSION_REJECTED], 0);
    /* The server's accept data is "welcome:" + our private data. */
    ck_assert_msg(cl.data_len == 21 && memcmp(cl.data, "welcome:hello-private", 21) == 0,
                  "SESSION_ESTABLISHED data: '%.*s' (%zu bytes)", (int)cl.data_len, cl.data,
                  cl.data_len);
    char peer[URI_LEN];
    ck_assert_int_gt(px_conn_peer(cl.c, peer, sizeof(peer)), 0);
    echo_once(&cl, 1, 100);

    struct conf_stats st;
    get_stats(&cl, &st);
    ck_assert_uint_eq(st.sessions, 1);
    ck_assert_uint_eq(st.conns, 1);
    ck_assert_uint_eq(st.anomalies, 0);
    client_close(&cl);
    ck_assert_int_eq(cl.ev[PX_EV_CONN_CLOSED], 1);
    ck_assert_int_eq(cl.ev[PX_EV_CONN_DISCONNECTED], 0);
    ck_assert_int_eq(cl.ev_seq[cl.n_ev - 1], PX_EV_SESSION_TEARDOWN);
    server_stop(&sv);
}
END_TEST

START_TEST(reject_with_reason_and_data)
{
    struct server sv;
    struct client cl;
    struct tmsg *t = tmsgs_new(3);
    server_start(&sv);
    client_open(&cl, sv.uri, NULL, "reject-me");
    for (int i = 0; i < 3; i++) {
        tmsg_prep(&t[i], CONF_ECHO, i, 10 * i, 1, 0);
        send_req_ok(&cl, &t[i]);
    }
    RUN_UNTIL(&cl, cl.ev[PX_EV_SESSION_REJECTED] && cl.n_err == 3, 10000);
    ck_assert_int_eq(cl.ev[PX_EV_SESSION_ESTABLISHED], 0);
    ck_assert_int_eq(cl.ev[PX_EV_CONN_ESTABLISHED], 0);
    ck_assert_msg(cl.reject_reason == -PX_EPERM, "REJECTED reason %d (%s), want -PX_EPERM",
                  cl.reject_reason, px_errname(cl.reject_reason));
    ck_assert_msg(cl.data_len == 7 && memcmp(cl.data, "go away", 7) == 0,
                  "REJECTED data '%.*s' (%zu bytes)", (int)cl.data_len, cl.data, cl.data_len);
    ck_assert_uint_eq(cl.n_ok, 0);
    /* Late callbacks would show up as second completions. */
    run_for(&cl, 200);
    ck_assert_uint_eq(cl.n_err, 3);
    client_close(&cl);
    tmsgs_free(t, 3);

    struct client *probe = client_new(sv.uri, NULL);
    struct conf_stats st;
    get_stats(probe, &st);
    ck_assert_uint_eq(st.rejected, 1);
    ck_assert_uint_eq(st.anomalies, 0);
    client_free(probe);
    server_stop(&sv);
}
END_TEST

/* ---- echo_100k: a window of requests, every byte verified */

#define ECHO_N      100000
#define ECHO_WINDOW 64

struct echo_run {
    uint64_t next, done, n;
    enum conf_op op;
};

static size_t echo_size(uint64_t seq)
{
    /* Mostly small; every 997th crosses the inline threshold. */
    return seq % 997 == 0 ? 70000 + seq % 1000 : (seq * 7919) % 2048;
}

static void echo_next(struct client *cl, struct tmsg *t)
{
    struct echo_run *er = cl->arg;
    check_echo(t);
    release(t);
    er->done++;
    if (er->next < er->n) {
        uint64_t seq = er->next++;
        tmsg_prep(t, er->op, seq, echo_size(seq), 1 + seq % 3, 0);
        send_req_ok(cl, t);
    }
}

START_TEST(echo_100k)
{
    struct server sv;
    server_start(&sv);
    struct client *cl = client_new(sv.uri, NULL);
    struct tmsg *t = tmsgs_new(ECHO_WINDOW);
    struct echo_run er = {.n = ECHO_N, .op = CONF_ECHO};
    cl->arg = &er;
    cl->done = echo_next;
    for (int i = 0; i < ECHO_WINDOW; i++) {
        uint64_t seq = er.next++;
        tmsg_prep(&t[i], CONF_ECHO, seq, echo_size(seq), 1, 0);
        send_req_ok(cl, &t[i]);
    }
    uint64_t t0 = now_ms();
    RUN_UNTIL(cl, er.done == ECHO_N, 120000);
    fprintf(stderr, "echo_100k: %d requests in %llu ms\n", ECHO_N,
            (unsigned long long)(now_ms() - t0));
    ck_assert_uint_eq(cl->n_err, 0);
    px_conn_stats cs;
    ck_assert_int_eq(px_conn_get_stats(cl->c, &cs), 0);
    ck_assert_uint_eq(cs.requests_sent, ECHO_N);
    ck_assert_uint_eq(cs.responses_recv, ECHO_N);
    ck_assert_uint_eq(cs.in_flight, 0);
    cl->done = NULL;
    client_free(cl);
    tmsgs_free(t, ECHO_WINDOW);
    server_stop(&sv);
}
END_TEST

/* ---- fifo_order: one-way messages and responses keep their order */

#define FIFO_N      20000
#define FIFO_WINDOW 128
#define FIFO_REQS   1000

struct fifo_run {
    uint64_t next, done, n, expect_resp;
};

static void fifo_oneway_next(struct client *cl, struct tmsg *t)
{
    struct fifo_run *fr = cl->arg;
    ck_assert_msg(t->state == T_OK, "one-way seq %llu failed: %s", (unsigned long long)t->seq,
                  px_strerror(t->err));
    fr->done++;
    if (fr->next < fr->n) {
        uint64_t seq = fr->next++;
        tmsg_prep(t, CONF_SEQ, seq, seq % 300, 1 + seq % 2, 0);
        ck_assert_int_eq(send_oneway(cl, t, 0), 0);
    }
}

static void fifo_resp_in_order(struct client *cl, struct tmsg *t)
{
    struct fifo_run *fr = cl->arg;
    ck_assert_msg(t->state == T_OK, "request seq %llu failed: %s", (unsigned long long)t->seq,
                  px_strerror(t->err));
    ck_assert_msg(t->seq == fr->expect_resp, "response seq %llu arrived, expected %llu",
                  (unsigned long long)t->seq, (unsigned long long)fr->expect_resp);
    fr->expect_resp++;
    check_echo(t);
    release(t);
}

START_TEST(fifo_order)
{
    struct server sv;
    server_start(&sv);
    struct client *cl = client_new(sv.uri, NULL);
    struct tmsg *t = tmsgs_new(FIFO_REQS);
    struct fifo_run fr = {.n = FIFO_N};
    cl->arg = &fr;
    cl->done = fifo_oneway_next;
    for (int i = 0; i < FIFO_WINDOW; i++) {
        uint64_t seq = fr.next++;
        tmsg_prep(&t[i], CONF_SEQ, seq, seq % 300, 1, 0);
        ck_assert_int_eq(send_oneway(cl, &t[i], 0), 0);
    }
    RUN_UNTIL(cl, fr.done == FIFO_N, 60000);
    cl->done = NULL;
    struct conf_seq_report rep;
    query(cl, CONF_SEQ_CHECK, &rep, sizeof(rep));
    ck_assert_msg(rep.received == FIFO_N && rep.errors == 0,
                  "server saw %llu of %d one-way messages, %llu out of order or corrupt "
                  "(first bad seq %llu)",
                  (unsigned long long)rep.received, FIFO_N, (unsigned long long)rep.errors,
                  (unsigned long long)rep.first_bad);

    /* Responses on one connection come back in request order, also when
     * some requests wait behind the default queue depth (512). */
    cl->done = fifo_resp_in_order;
    for (int i = 0; i < FIFO_REQS; i++) {
        tmsg_prep(&t[i], CONF_ECHO, i, i % 200, 1, 0);
        send_req_ok(cl, &t[i]);
    }
    RUN_UNTIL(cl, fr.expect_resp == FIFO_REQS, 30000);
    cl->done = NULL;
    client_free(cl);
    tmsgs_free(t, FIFO_REQS);
    server_stop(&sv);
}
END_TEST

/* ---- inflight_1000 */

START_TEST(inflight_1000)
{
    struct server sv;
    server_start(&sv);
    /* All 1,000 in flight at once: the server answers none of them before
     * it holds all of them. */
    px_ctx_opts o = {.queue_depth = 1024};
    struct client *cl = client_new(sv.uri, &o);
    struct tmsg *t = tmsgs_new(1000);
    for (int i = 0; i < 1000; i++) {
        tmsg_prep(&t[i], CONF_GATHER, i, 64, 1, 1000);
        send_req_ok(cl, &t[i]);
    }
    RUN_UNTIL(cl, cl->n_ok + cl->n_err == 1000, 30000);
    ck_assert_uint_eq(cl->n_err, 0);
    px_conn_stats cs;
    ck_assert_int_eq(px_conn_get_stats(cl->c, &cs), 0);
    ck_assert_uint_eq(cs.requests_sent, 1000);
    ck_assert_uint_eq(cs.responses_recv, 1000);
    ck_assert_uint_eq(cs.in_flight, 0);
    ck_assert_uint_eq(cs.queued, 0);
    ck_assert_uint_eq(cs.eagain, 0);
    client_free(cl);
    tmsgs_free(t, 1000);
    server_stop(&sv);
}
END_TEST

/* Past queue_depth sends queue; past max_queued_bytes they are refused with
 * -PX_EAGAIN, leaving the message untouched and without a callback. */
START_TEST(inflight_backpressure)
{
    enum { DEPTH = 128, SIZE = 16384, MAXN = 1000 };
    struct server sv;
    server_start(&sv);
    px_ctx_opts o = {.queue_depth = DEPTH, .max_queued_bytes = MIB};
    struct client *cl = client_new(sv.uri, &o);
    struct tmsg *t = tmsgs_new(MAXN + 1);
    int n = 0, rc = 0;
    for (; n < MAXN; n++) {
        tmsg_prep(&t[n], CONF_DELAY, n, SIZE, 2, 300);
        px_msg before = t[n].m;
        rc = send_req(cl, &t[n]);
        if (rc != 0) {
            ck_assert_msg(memcmp(&before, &t[n].m, sizeof(before)) == 0,
                          "a refused px_msg was modified");
            break;
        }
    }
    ck_assert_msg(rc == -PX_EAGAIN, "after %d sends: %s, want -PX_EAGAIN", n, px_strerror(rc));
    ck_assert_msg(n > DEPTH && n <= DEPTH + (int)(MIB / SIZE),
                  "%d sends accepted with queue_depth %d and max_queued_bytes 1 MiB of %d B "
                  "messages",
                  n, DEPTH, SIZE);
    ck_assert_msg(n >= DEPTH + (int)(MIB / SIZE) / 2,
                  "only %d sends accepted: byte limit "
                  "counted far more than the messages' size",
                  n);
    px_conn_stats cs;
    ck_assert_int_eq(px_conn_get_stats(cl->c, &cs), 0);
    ck_assert_msg(cs.in_flight + cs.queued == (uint64_t)n && cs.in_flight <= DEPTH,
                  "stats: in_flight %llu + queued %llu, want %d with in_flight <= %d",
                  (unsigned long long)cs.in_flight, (unsigned long long)cs.queued, n, DEPTH);
    ck_assert_uint_le(cs.queued_bytes, MIB);
    ck_assert_uint_eq(cs.eagain, 1);
    /* Still full until the loop runs. */
    ck_assert_int_eq(send_req(cl, &t[n]), -PX_EAGAIN);
    RUN_UNTIL(cl, cl->n_ok + cl->n_err == (uint64_t)n, 30000);
    ck_assert_uint_eq(cl->n_err, 0);
    run_for(cl, 100);
    ck_assert_int_eq(t[n].state, T_IDLE);
    /* Drained: the refused message goes now. */
    send_req_ok(cl, &t[n]);
    RUN_UNTIL(cl, t[n].state == T_OK, 10000);
    client_free(cl);
    tmsgs_free(t, MAXN + 1);
    server_stop(&sv);
}
END_TEST

/* ---- sizes */

static void sizes_one(struct client *cl, struct tmsg *t, size_t size, unsigned nseg, int own)
{
    static uint64_t seq;
    if (own)
        tmsg_own_reply(t, size + 100);
    else {
        free(t->in_buf);
        t->in_buf = NULL;
    }
    tmsg_prep(t, CONF_ECHO, ++seq, size, nseg, 0);
    send_req_ok(cl, t);
    RUN_UNTIL(cl, t->state != T_SENT, 60000);
    ck_assert_msg(t->state == T_OK, "%zu B in %u iovecs (%s reply buffer): %s", size, nseg,
                  own ? "own" : "plexus", px_strerror(t->err));
}

START_TEST(sizes)
{
    static const size_t sz[] = {0, 1, 63, 64, 4095, 4096, 65536, MIB, 16 * MIB};
    static const unsigned segs[] = {1, 2, 7, 16};
    struct server sv;
    server_start(&sv);
    struct client *cl = client_new(sv.uri, NULL);
    struct tmsg *t = tmsgs_new(1);
    for (size_t i = 0; i < sizeof(sz) / sizeof(sz[0]); i++)
        for (size_t k = 0; k < sizeof(segs) / sizeof(segs[0]); k++)
            for (int own = 0; own < 2; own++)
                sizes_one(cl, t, sz[i], segs[k], own);

    /* 0 B given as one empty segment. */
    free(t->in_buf);
    t->in_buf = NULL;
    tmsg_prep(t, CONF_ECHO, 1, 0, 0, 0);
    t->out_iov[0] = (px_iov){.base = t->out_buf, .len = 0};
    t->m.out.iov = t->out_iov;
    t->m.out.iov_count = 1;
    send_req_ok(cl, t);
    RUN_UNTIL(cl, t->state != T_SENT, 10000);
    ck_assert_msg(t->state == T_OK, "0 B in one empty iovec: %s", px_strerror(t->err));

    /* A landing place too small: refused, never overrun. */
    static const size_t shortsz[] = {4096, MIB};
    for (size_t i = 0; i < 2; i++) {
        tmsg_own_reply(t, 100);
        tmsg_prep(t, CONF_ECHO, 2 + i, shortsz[i], 1, 0);
        send_req_ok(cl, t);
        RUN_UNTIL(cl, t->state != T_SENT, 10000);
        ck_assert_msg(t->state == T_ERR && t->err == -PX_ESHORTBUF,
                      "%zu B reply into 100 B: %s, want on_msg_error -PX_ESHORTBUF", shortsz[i],
                      t->state == T_OK ? "delivered" : px_errname(t->err));
        ck_assert_msg(in_gaps_intact(t), "reply overran the provided buffer");
    }
    echo_once(cl, 99, 5000);
    client_free(cl);
    tmsgs_free(t, 1);
    server_stop(&sv);
}
END_TEST

/* ---- reply_many_segments: a reply vector of more segments than a
 * transport reads or copies in one call (a context may allow 1024) */

static struct {
    px_iov *seg;
    unsigned n;
    int checked;
} many;

static void many_done(struct client *cl, struct tmsg *t)
{
    (void)cl;
    ck_assert_msg(t->m.in.iov == many.seg, "reply did not land in the %u-segment vector", many.n);
    px_msg_vec ours = {.iov = many.seg, .iov_count = many.n, .data_len = t->m.in.data_len};
    check_data(&ours, t->expect, t->size, t->seq);
    many.checked++;
    release(t);
}

START_TEST(reply_many_segments)
{
    static const unsigned nseg[] = {65, 200, 1024};
    const size_t size = MIB + 12345;
    px_ctx_opts o = {.max_iov = 1024};
    struct server sv;
    server_start(&sv);
    struct client *cl = client_new(sv.uri, &o);
    struct tmsg *t = tmsgs_new(1);
    cl->done = many_done;
    many.checked = 0;
    for (size_t i = 0; i < sizeof(nseg) / sizeof(nseg[0]); i++) {
        unsigned n = nseg[i];
        uint8_t *buf = malloc(size);
        px_iov *seg = calloc(n, sizeof(*seg));
        ck_assert(buf != NULL && seg != NULL);
        size_t each = size / n;
        for (unsigned k = 0; k < n; k++)
            seg[k] = (px_iov){.base = buf + k * each, .len = k + 1 < n ? each : size - k * each};
        many.seg = seg;
        many.n = n;
        free(t->in_buf);
        t->in_buf = NULL;
        tmsg_prep(t, CONF_ECHO, 100 + i, size, 1, 0);
        t->m.in.iov = seg;
        t->m.in.iov_count = n;
        send_req_ok(cl, t);
        RUN_UNTIL(cl, t->state != T_SENT, 60000);
        ck_assert_msg(t->state == T_OK, "%zu B reply into %u segments: %s", size, n,
                      px_strerror(t->err));
        ck_assert_int_eq(many.checked, (int)i + 1);
        free(seg);
        free(buf);
    }
    cl->done = NULL;
    echo_once(cl, 99, 5000);
    client_free(cl);
    tmsgs_free(t, 1);
    server_stop(&sv);
}
END_TEST

/* ---- send_from_completion: an application that sends again from every
 * completion, as fast as the link takes it, still lets the loop receive */

#define STREAM_WINDOW 64

static struct {
    int on;
    uint64_t seq, done;
} stream;

static void stream_next(struct client *cl, struct tmsg *t)
{
    if (t->kind != K_ONEWAY) {
        check_echo(t);
        release(t);
        return;
    }
    ck_assert_msg(t->state == T_OK, "one-way seq %llu failed: %s", (unsigned long long)t->seq,
                  px_strerror(t->err));
    stream.done++;
    if (!stream.on)
        return;
    tmsg_prep(t, CONF_SEQ, stream.seq, 64, 1, 0);
    stream.seq++;
    ck_assert_int_eq(send_oneway(cl, t, 0), 0);
}

START_TEST(send_from_completion)
{
    struct server sv;
    server_start(&sv);
    struct client *cl = client_new(sv.uri, NULL);
    struct tmsg *t = tmsgs_new(STREAM_WINDOW);
    stream.on = 1;
    stream.seq = stream.done = 0;
    cl->done = stream_next;
    for (int i = 0; i < STREAM_WINDOW; i++) {
        tmsg_prep(&t[i], CONF_SEQ, stream.seq, 64, 1, 0);
        stream.seq++;
        ck_assert_int_eq(send_oneway(cl, &t[i], 0), 0);
    }
    RUN_UNTIL(cl, stream.done >= 20000, 30000);
    /* The stream goes on; a request's response must still be received. */
    struct tmsg *r = tmsgs_new(1);
    tmsg_prep(r, CONF_ECHO, 1, 100, 1, 0);
    send_req_ok(cl, r);
    RUN_UNTIL(cl, r->state != T_SENT, 10000);
    ck_assert_msg(r->state == T_OK, "echo during the stream: %s", px_strerror(r->err));
    stream.on = 0;
    RUN_UNTIL(cl, stream.done == stream.seq, 10000);
    cl->done = NULL;
    struct conf_seq_report rep;
    query(cl, CONF_SEQ_CHECK, &rep, sizeof(rep));
    ck_assert_msg(rep.received == stream.seq && rep.errors == 0,
                  "server saw %llu of %llu one-way messages, %llu out of order",
                  (unsigned long long)rep.received, (unsigned long long)stream.seq,
                  (unsigned long long)rep.errors);
    client_free(cl);
    tmsgs_free(r, 1);
    tmsgs_free(t, STREAM_WINDOW);
    server_stop(&sv);
}
END_TEST

/* ---- too_large: limits are checked at send time */

static void expect_refused(struct client *cl, struct tmsg *t, int oneway, int want,
                           const char *what)
{
    px_msg before = t->m;
    int rc = oneway ? send_oneway(cl, t, 0) : send_req(cl, t);
    ck_assert_msg(rc == want, "%s %s: %s, want %s", oneway ? "px_send_msg" : "px_send_request",
                  what, px_errname(rc), px_errname(want));
    before.flags = t->m.flags; /* set by send_oneway itself */
    ck_assert_msg(memcmp(&before, &t->m, sizeof(before)) == 0, "%s: refused px_msg modified", what);
}

START_TEST(too_large)
{
    struct server sv;
    server_start(&sv);
    px_ctx_opts o = {.max_msg_size = MIB, .max_iov = 16, .max_header_size = 4096};
    struct client *cl = client_new(sv.uri, &o);
    struct tmsg *t = tmsgs_new(1);
    for (int ow = 0; ow < 2; ow++) {
        tmsg_prep(t, CONF_ECHO, 1, MIB + 1, 1, 0);
        expect_refused(cl, t, ow, -PX_EMSGSIZE, "data of max_msg_size + 1");
        tmsg_prep(t, CONF_ECHO, 1, 17 * 10, 17, 0);
        expect_refused(cl, t, ow, -PX_ETOOMANY, "17 iovecs with max_iov 16");
        t->big_hdr = calloc(1, 4097);
        t->big_hdr_len = 4097;
        tmsg_prep(t, CONF_ECHO, 1, 10, 1, 0);
        expect_refused(cl, t, ow, -PX_EMSGSIZE, "header of 4097 bytes");
        free(t->big_hdr);
        t->big_hdr = NULL;
    }
    run_for(cl, 100); /* no callback may follow a refusal */

    /* Exactly at the limits works. */
    tmsg_prep(t, CONF_ECHO, 2, MIB, 1, 0);
    send_req_ok(cl, t);
    RUN_UNTIL(cl, t->state != T_SENT, 10000);
    ck_assert_msg(t->state == T_OK, "max_msg_size data: %s", px_strerror(t->err));
    tmsg_prep(t, CONF_ECHO, 3, 16 * 10, 16, 0);
    send_req_ok(cl, t);
    RUN_UNTIL(cl, t->state != T_SENT, 10000);
    ck_assert_msg(t->state == T_OK, "max_iov iovecs: %s", px_strerror(t->err));
    t->big_hdr = calloc(1, 4096);
    t->big_hdr_len = 4096;
    tmsg_prep(t, CONF_ECHO, 4, 10, 1, 0);
    send_req_ok(cl, t);
    RUN_UNTIL(cl, t->state != T_SENT, 10000);
    ck_assert_msg(t->state == T_OK, "max_header_size header: %s", px_strerror(t->err));
    ck_assert_uint_eq(cl->n_ok, 3);
    ck_assert_uint_eq(cl->n_err + cl->n_sendc + cl->n_delivered, 0);
    client_free(cl);
    tmsgs_free(t, 1);
    server_stop(&sv);
}
END_TEST

/* ---- oneway_receipts */

#define OW_N      1000
#define OW_WINDOW 128

struct ow_run {
    uint64_t next, done, n;
    uint32_t flags;
};

static void ow_next(struct client *cl, struct tmsg *t)
{
    struct ow_run *r = cl->arg;
    ck_assert_msg(t->state == T_OK, "one-way seq %llu failed: %s", (unsigned long long)t->seq,
                  px_strerror(t->err));
    r->done++;
    if (r->next < r->n) {
        uint64_t seq = r->next++;
        tmsg_prep(t, CONF_SEQ, seq, seq % 1000, 1, 0);
        ck_assert_int_eq(send_oneway(cl, t, r->flags), 0);
    }
}

static void ow_phase(struct client *cl, struct tmsg *t, struct ow_run *r, uint32_t flags)
{
    uint64_t start = r->next;
    r->flags = flags;
    r->n = start + OW_N;
    r->done = 0;
    for (int i = 0; i < OW_WINDOW; i++) {
        uint64_t seq = r->next++;
        tmsg_prep(&t[i], CONF_SEQ, seq, seq % 1000, 1, 0);
        ck_assert_int_eq(send_oneway(cl, &t[i], flags), 0);
    }
    RUN_UNTIL(cl, r->done == OW_N, 30000);
}

START_TEST(oneway_receipts)
{
    struct server sv;
    server_start(&sv);
    struct client *cl = client_new(sv.uri, NULL);
    struct tmsg *t = tmsgs_new(OW_WINDOW);
    struct ow_run r = {0};
    cl->arg = &r;
    cl->done = ow_next;
    ow_phase(cl, t, &r, PX_MSG_RECEIPT);
    ck_assert_uint_eq(cl->n_delivered, OW_N);
    ck_assert_uint_eq(cl->n_sendc, 0);
    ow_phase(cl, t, &r, 0);
    ck_assert_uint_eq(cl->n_delivered, OW_N);
    ck_assert_uint_eq(cl->n_sendc, OW_N);
    run_for(cl, 100);
    ck_assert_uint_eq(cl->n_err, 0);
    cl->done = NULL;
    struct conf_seq_report rep;
    query(cl, CONF_SEQ_CHECK, &rep, sizeof(rep));
    ck_assert_msg(rep.received == 2 * OW_N && rep.errors == 0,
                  "server saw %llu of %d one-way messages, %llu bad (first %llu)",
                  (unsigned long long)rep.received, 2 * OW_N, (unsigned long long)rep.errors,
                  (unsigned long long)rep.first_bad);
    client_free(cl);
    tmsgs_free(t, OW_WINDOW);
    server_stop(&sv);
}
END_TEST

/* ---- cancel */

START_TEST(cancel)
{
    struct server sv;
    server_start(&sv);
    struct client *cl = client_new(sv.uri, NULL);
    struct tmsg *t = tmsgs_new(50);

    /* Held by the server: cancel completes them at once, exactly once. */
    for (int i = 0; i < 10; i++) {
        tmsg_prep(&t[i], CONF_HOLD, i, 100, 1, 0);
        send_req_ok(cl, &t[i]);
    }
    wait_server_held(cl, 10);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(px_cancel(&t[i].m), 0);
    RUN_UNTIL(cl, cl->n_err == 10, 5000);
    for (int i = 0; i < 10; i++)
        ck_assert_msg(t[i].state == T_ERR && t[i].err == -PX_ECANCELED,
                      "canceled request %d: state %d, reason %s", i, t[i].state,
                      px_errname(t[i].err));
    ck_assert_int_eq(px_cancel(&t[0].m), -PX_EALREADY);

    /* Canceled before it could even leave. */
    for (int i = 10; i < 15; i++) {
        tmsg_prep(&t[i], CONF_HOLD, i, 10, 1, 0);
        send_req_ok(cl, &t[i]);
        ck_assert_int_eq(px_cancel(&t[i].m), 0);
    }
    RUN_UNTIL(cl, cl->n_err == 15, 5000);
    for (int i = 10; i < 15; i++)
        ck_assert_int_eq(t[i].err, -PX_ECANCELED);

    /* Cancel racing the response: each ends exactly once, as px_cancel said. */
    uint64_t ok0 = cl->n_ok, err0 = cl->n_err;
    int canceled = 0;
    for (int i = 0; i < 50; i++) {
        tmsg_prep(&t[i], CONF_DELAY, 100 + i, 200, 1, 20);
        send_req_ok(cl, &t[i]);
    }
    run_for(cl, 20);
    for (int i = 0; i < 50; i++) {
        enum tstate was = t[i].state;
        int rc = px_cancel(&t[i].m);
        if (was == T_SENT) {
            ck_assert_msg(rc == 0, "px_cancel of an outstanding request: %s", px_errname(rc));
            canceled++;
        } else {
            ck_assert_msg(rc == -PX_EALREADY, "px_cancel of a completed request: %s",
                          px_errname(rc));
        }
    }
    RUN_UNTIL(cl, cl->n_ok + cl->n_err == ok0 + err0 + 50, 5000);
    run_for(cl, 300); /* discarded late responses must not surface */
    ck_assert_uint_eq(cl->n_err - err0, (uint64_t)canceled);
    ck_assert_uint_eq(cl->n_ok - ok0, 50 - (uint64_t)canceled);

    /* The connection still works, and a canceled px_msg is reusable. */
    tmsg_prep(&t[0], CONF_ECHO, 7, 3000, 2, 0);
    send_req_ok(cl, &t[0]);
    RUN_UNTIL(cl, t[0].state != T_SENT, 10000);
    ck_assert_int_eq(t[0].state, T_OK);
    client_free(cl);
    tmsgs_free(t, 50);
    server_stop(&sv);
}
END_TEST

/* ---- graceful_teardown */

START_TEST(graceful_teardown)
{
    struct server sv;
    server_start(&sv);
    struct client *cl = client_new(sv.uri, NULL);
    struct tmsg *t = tmsgs_new(26);
    for (int i = 0; i < 20; i++) {
        tmsg_prep(&t[i], CONF_DELAY, i, 1000 * i, 1 + i % 3, 200);
        send_req_ok(cl, &t[i]);
    }
    for (int i = 20; i < 25; i++) {
        tmsg_prep(&t[i], CONF_SEQ, i - 20, 100, 1, 0);
        ck_assert_int_eq(send_oneway(cl, &t[i], PX_MSG_RECEIPT), 0);
    }
    run_for(cl, 20);
    ck_assert_int_eq(px_conn_close(cl->c), 0);
    ck_assert_int_eq(px_conn_close(cl->c), -PX_EALREADY);
    tmsg_prep(&t[25], CONF_ECHO, 25, 10, 1, 0);
    px_msg before = t[25].m;
    ck_assert_int_eq(send_req(cl, &t[25]), -PX_ESHUTDOWN);
    ck_assert_int_eq(send_oneway(cl, &t[25], 0), -PX_ESHUTDOWN);
    before.flags = t[25].m.flags;
    ck_assert(memcmp(&before, &t[25].m, sizeof(before)) == 0);

    RUN_UNTIL(cl, cl->ev[PX_EV_CONN_TEARDOWN], 10000);
    ck_assert_msg(cl->ev[PX_EV_CONN_CLOSED] == 1 && cl->ev[PX_EV_CONN_DISCONNECTED] == 0,
                  "graceful close ended with CLOSED %d, DISCONNECTED %d (reason %s)",
                  cl->ev[PX_EV_CONN_CLOSED], cl->ev[PX_EV_CONN_DISCONNECTED],
                  px_errname(cl->disc_reason));
    ck_assert_msg(cl->ok_at_closed == 20, "%llu of 20 responses before CONN_CLOSED",
                  (unsigned long long)cl->ok_at_closed);
    ck_assert_uint_eq(cl->n_err, 0);
    ck_assert_uint_eq(cl->n_delivered, 5);
    ck_assert_int_eq(t[25].state, T_IDLE);
    client_free(cl);
    tmsgs_free(t, 26);
    server_stop(&sv);
}
END_TEST

/* ---- server_killed: every outstanding message ends exactly once */

START_TEST(server_killed)
{
    enum { HELD = 1000, EXTRA = 60, ONEWAY = 100 };
    struct server sv;
    server_start(&sv);
    px_ctx_opts o = {.queue_depth = 1024};
    struct client *cl = client_new(sv.uri, &o);
    struct tmsg *t = tmsgs_new(HELD + EXTRA + ONEWAY);
    for (int i = 0; i < HELD; i++) {
        tmsg_prep(&t[i], CONF_HOLD, i, i % 5 ? 32 : 20000, 1, 0);
        send_req_ok(cl, &t[i]);
    }
    wait_server_held(cl, HELD);
    uint64_t ok0 = cl->n_ok;
    /* More than the queue takes, and one-way messages, right at the kill. */
    for (int i = HELD; i < HELD + EXTRA; i++) {
        tmsg_prep(&t[i], CONF_HOLD, i, i < HELD + 4 ? 8 * MIB : 5000, 1, 0);
        send_req_ok(cl, &t[i]);
    }
    for (int i = HELD + EXTRA; i < HELD + EXTRA + ONEWAY; i++) {
        tmsg_prep(&t[i], CONF_SEQ, i, 5000, 1, 0);
        ck_assert_int_eq(send_oneway(cl, &t[i], i % 2 ? PX_MSG_RECEIPT : 0), 0);
    }
    run_for(cl, 3); /* the kill lands mid-transfer of the large ones */
    server_kill(&sv);
    RUN_UNTIL(cl, cl->ev[PX_EV_CONN_DISCONNECTED], 10000);
    ck_assert_msg(cl->req_err_at_disc == HELD + EXTRA,
                  "%llu of %d outstanding requests had failed when CONN_DISCONNECTED came",
                  (unsigned long long)cl->req_err_at_disc, HELD + EXTRA);
    ck_assert_int_lt(cl->disc_reason, 0);
    RUN_UNTIL(cl,
              cl->n_ok - ok0 + cl->n_err + cl->n_delivered + cl->n_sendc >= HELD + EXTRA + ONEWAY,
              10000);
    run_for(cl, 200);
    ck_assert_uint_eq(cl->n_ok, ok0);
    for (int i = 0; i < HELD + EXTRA; i++)
        ck_assert_msg(t[i].state == T_ERR && t[i].err < 0, "request %d: state %d", i, t[i].state);
    for (int i = HELD + EXTRA; i < HELD + EXTRA + ONEWAY; i++)
        ck_assert_msg(t[i].state == T_OK || t[i].state == T_ERR, "one-way %d never ended", i);
    client_free(cl);
    tmsgs_free(t, HELD + EXTRA + ONEWAY);
}
END_TEST

/* ---- client_killed: the server frees a dead client's everything */

static void killed_client_child(const char *uri, int ready_fd)
{
    struct client cl;
    px_ctx_opts o = {.queue_depth = 1024};
    struct tmsg *t = calloc(1000, sizeof(*t));
    client_open(&cl, uri, &o, "doomed");
    for (int i = 0; i < 1000; i++) {
        tmsg_prep(&t[i], CONF_HOLD, i, i % 3 ? 64 : 30000, 1, 0);
        if (send_req(&cl, &t[i]) != 0)
            _exit(3);
    }
    wait_server_held(&cl, 1000);
    /* Die in the middle of sending large requests. */
    for (int i = 0; i < 2; i++) {
        struct tmsg *big = calloc(1, sizeof(*big));
        tmsg_prep(big, CONF_ECHO, i, 16 * MIB, 1, 0);
        if (send_req(&cl, big) != 0)
            _exit(5);
    }
    px_ctx_run_timeout(cl.ctx, 2);
    if (write(ready_fd, "r", 1) != 1)
        _exit(4);
    for (;;)
        px_ctx_run_timeout(cl.ctx, 1000);
}

START_TEST(client_killed)
{
    struct server sv;
    int p[2];
    server_start(&sv);
    ck_assert_int_eq(pipe(p), 0);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        close(p[0]);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        killed_client_child(sv.uri, p[1]);
        _exit(0);
    }
    close(p[1]);
    struct pollfd pfd = {.fd = p[0], .events = POLLIN};
    char c;
    ck_assert_msg(poll(&pfd, 1, 20000) == 1 && read(p[0], &c, 1) == 1,
                  "the doomed client did not get 1,000 requests held");
    close(p[0]);

    struct client *cl = client_new(sv.uri, NULL);
    struct conf_stats st;
    get_stats(cl, &st);
    ck_assert_uint_eq(st.sessions, 2);
    ck_assert_uint_ge(st.held, 1000);
    kill(child, SIGKILL);
    int status;
    waitpid(child, &status, 0);

    uint64_t dl = now_ms() + 5000;
    for (;;) {
        get_stats(cl, &st);
        if (st.sessions == 1 && st.conns == 1 && st.held == 0 && st.responding == 0)
            break;
        ck_assert_msg(now_ms() < dl,
                      "5 s after the client died the server still has sessions %llu, conns "
                      "%llu, held %llu, responding %llu (want 1, 1, 0, 0)",
                      (unsigned long long)st.sessions, (unsigned long long)st.conns,
                      (unsigned long long)st.held, (unsigned long long)st.responding);
        run_for(cl, 50);
    }
    ck_assert_uint_eq(st.anomalies, 0);
    client_free(cl);
    server_stop(&sv);
}
END_TEST

/* ---- bad_frames: hostile bytes close that one connection only */

/* The server must close the raw link within 5 s. */
static void expect_closed(raw_link *l, const char *what)
{
    ck_assert_msg(raw_wait_closed(l, 5000), "%s: the server kept the connection open for 5 s",
                  what);
    raw_close(l);
}

static raw_link *dial(const char *uri)
{
    raw_link *l = raw_dial(uri);
    ck_assert_msg(l != NULL, "raw connection to %s: %s", uri, strerror(errno));
    return l;
}

START_TEST(bad_frames)
{
    struct server sv;
    server_start(&sv);
    struct client *cl = client_new(sv.uri, NULL);
    uint8_t f[64];
    raw_link *l;

    l = dial(sv.uri);
    memset(f, 0xab, sizeof(f));
    ck_assert_int_eq(raw_send(l, f, sizeof(f)), 0);
    expect_closed(l, "garbage bytes");
    echo_once(cl, 1, 100);

    l = dial(sv.uri);
    raw_frame_hdr(f, 1, 1, 0, 100, 1, 0);
    ck_assert_int_eq(raw_send(l, f, 20), 0);
    raw_shutdown(l); /* a stream ends mid-header; on shm the record itself is short */
    expect_closed(l, "truncated frame");
    echo_once(cl, 2, 100);

    l = dial(sv.uri);
    raw_frame_hdr(f, 99, 1, 0, 0, 1, 0);
    ck_assert_int_eq(raw_send(l, f, 32), 0);
    expect_closed(l, "frame of version 99");
    echo_once(cl, 3, 100);

    l = dial(sv.uri);
    raw_frame_hdr(f, 1, 1, 0, 0xfffffff0u, 1, 0);
    ck_assert_int_eq(raw_send(l, f, 32), 0);
    expect_closed(l, "frame with data_len 0xfffffff0");
    echo_once(cl, 4, 100);

    l = dial(sv.uri);
    raw_frame_hdr(f, 1, 3, 0, 8, 1, 0);
    ck_assert_int_eq(raw_send(l, f, 40), 0);
    expect_closed(l, "REQUEST before HELLO");
    echo_once(cl, 5, 100);

    /* A handshake, then a response to a request never made. */
    l = dial(sv.uri);
    ck_assert_int_eq(raw_hello(l, MIB, 4096), 0);
    raw_frame_hdr(f, 1, 4, 0, 0, 12345, 0);
    ck_assert_int_eq(raw_send(l, f, 32), 0);
    expect_closed(l, "RESPONSE to no request");
    echo_once(cl, 6, 100);

    /* The raw connections left nothing behind. */
    struct conf_stats st;
    get_stats(cl, &st);
    ck_assert_uint_eq(st.sessions, 1);
    ck_assert_uint_eq(st.conns, 1);
    ck_assert_uint_eq(st.anomalies, 0);
    client_free(cl);
    server_stop(&sv);
}
END_TEST

/* A raw peer's channels on one link: a second HELLO on another channel
 * is a second connection, a frame for a channel nobody has is dropped, a
 * RESET ends that channel's connection alone, and a protocol error on the
 * last one closes the link. */
START_TEST(shared_link_raw)
{
    struct server sv;
    server_start(&sv);
    struct client *cl = client_new(sv.uri, NULL);
    struct conf_stats st;
    uint8_t f[32];
    raw_link *l = dial(sv.uri);
    ck_assert_int_eq(raw_hello_on(l, 0, MIB, 4096), 0);
    ck_assert_msg(raw_hello_on(l, 7, MIB, 4096) == 0, "no HELLO_ACK on channel 7");
    get_stats(cl, &st);
    ck_assert_msg(st.conns == 3 && st.links == 2, "conns %llu links %llu (want 3 on 2 links)",
                  (unsigned long long)st.conns, (unsigned long long)st.links);
    raw_frame_hdr(f, 1, PX_FT_KEEPALIVE, 0, 0, 0, 0);
    raw_frame_channel(f, 99);
    ck_assert_int_eq(raw_send(l, f, 32), 0);
    raw_frame_hdr(f, 1, PX_FT_RESET, 0, 0, 0, 0);
    raw_frame_channel(f, 7);
    ck_assert_int_eq(raw_send(l, f, 32), 0);
    STATS_UNTIL(cl, st, st.conns == 2, 5000, "RESET on channel 7: still %llu connections",
                (unsigned long long)st.conns);
    ck_assert_uint_eq(st.links, 2);
    ck_assert_uint_eq(st.sessions, 2);
    raw_frame_hdr(f, 1, PX_FT_RESPONSE, 0, 0, 12345, 0);
    ck_assert_int_eq(raw_send(l, f, 32), 0);
    expect_closed(l, "RESPONSE to no request, on the link's last channel");
    STATS_UNTIL(cl, st, st.conns == 1 && st.links == 1, 5000, "conns %llu links %llu",
                (unsigned long long)st.conns, (unsigned long long)st.links);
    echo_once(cl, 1, 100);
    ck_assert_uint_eq(st.anomalies, 0);
    client_free(cl);
    server_stop(&sv);
}
END_TEST

/* ---- private_data_limits */

START_TEST(private_data_limits)
{
    struct server sv;
    struct client cl;
    char *priv = malloc(4098);
    memset(priv, 'p', 4097);
    priv[4096] = '\0';
    server_start(&sv);
    client_open(&cl, sv.uri, NULL, NULL); /* none at all: NULL, 0 */
    client_wait_up(&cl);
    ck_assert_msg(cl.data_len == 8 && memcmp(cl.data, "welcome:", 8) == 0,
                  "accept data for a session without private data: '%.*s'", (int)cl.data_len,
                  cl.data);
    client_close(&cl);

    client_open(&cl, sv.uri, NULL, priv); /* 4096 bytes: the limit */
    client_wait_up(&cl);
    ck_assert_msg(cl.data_len == 4096 && memcmp(cl.data, "welcome:", 8) == 0 &&
                      memcmp(cl.data + 8, priv, 4088) == 0,
                  "accept data of %zu bytes does not carry the 4096-byte private data back",
                  cl.data_len);
    echo_once(&cl, 1, 10);
    client_close(&cl);

    priv[4096] = 'p';
    px_ctx *ctx;
    px_session *s = NULL;
    ck_assert_int_eq(px_ctx_create(NULL, &ctx), 0);
    px_session_params p = {
        .uri = sv.uri, .ops = &client_ops, .private_data = priv, .private_len = 4097};
    ck_assert_int_eq(px_session_create(ctx, &p, &s), -PX_EMSGSIZE);
    ck_assert_int_eq(px_ctx_destroy(ctx), 0);
    free(priv);
    server_stop(&sv);
}
END_TEST

/* ---- redirect: the client learns where to go; nothing is lost on the way */

START_TEST(redirect)
{
    struct server sv;
    struct client cl;
    struct tmsg *t = tmsgs_new(2);
    server_start(&sv);
    client_open(&cl, sv.uri, NULL, "redirect-me");
    for (int i = 0; i < 2; i++) {
        tmsg_prep(&t[i], CONF_ECHO, i, 100, 1, 0);
        send_req_ok(&cl, &t[i]);
    }
    RUN_UNTIL(&cl, cl.ev[PX_EV_SESSION_REDIRECTED] && cl.n_ok + cl.n_err == 2, 10000);
    size_t alen = strlen(sv.alt_uri);
    ck_assert_msg(cl.redirect_len >= alen && memcmp(cl.redirect, sv.alt_uri, alen) == 0,
                  "REDIRECTED data '%.*s', want '%s'", (int)cl.redirect_len, cl.redirect,
                  sv.alt_uri);
    run_for(&cl, 200);
    /* Followed: the session came up at the new address, after the
     * redirect, and the requests queued on the way were answered there. */
    ck_assert_msg(cl.ev[PX_EV_SESSION_ESTABLISHED] == 1 && cl.ev[PX_EV_CONN_ESTABLISHED] == 1,
                  "the client did not follow the redirect (SESSION_ESTABLISHED %d)",
                  cl.ev[PX_EV_SESSION_ESTABLISHED]);
    ck_assert_int_eq(cl.ev_seq[0], PX_EV_SESSION_REDIRECTED);
    ck_assert_msg(cl.n_ok == 2 && cl.n_err == 0,
                  "requests queued across the redirect: %llu answered, %llu failed (want 2, 0)",
                  (unsigned long long)cl.n_ok, (unsigned long long)cl.n_err);
    char peer[URI_LEN];
    ck_assert_int_gt(px_conn_peer(cl.c, peer, sizeof(peer)), 0);
    client_close(&cl);
    tmsgs_free(t, 2);

    /* Where the redirect points, the same private data is accepted. */
    client_open(&cl, sv.alt_uri, NULL, "redirect-me");
    client_wait_up(&cl);
    echo_once(&cl, 3, 100);
    client_close(&cl);
    server_stop(&sv);
}
END_TEST

/* Accepted with the second server as its portal: the session's further
 * connections go there and join the same session, and messages flow on
 * every one of them. */
START_TEST(portals)
{
    struct server sv;
    struct client cl;
    server_start(&sv);
    client_open(&cl, sv.uri, NULL, "portal-me");
    client_wait_up(&cl);
    ck_assert_msg(cl.data_len == 6 && memcmp(cl.data, "portal", 6) == 0,
                  "SESSION_ESTABLISHED data '%.*s'", (int)cl.data_len, cl.data);
    px_conn *first = cl.c, *more[2];
    cl.n_conns = 2;
    for (int i = 0; i < 2; i++) {
        int rc = px_connect(cl.s, cl.ctx, &more[i]);
        ck_assert_msg(rc == 0, "px_connect: %s", px_strerror(rc));
    }
    RUN_UNTIL(&cl, cl.ev[PX_EV_CONN_ESTABLISHED] == 3, 10000);
    ck_assert_int_eq(cl.ev[PX_EV_SESSION_ESTABLISHED], 1);
    for (int i = 0; i < 2; i++) {
        cl.c = more[i];
        echo_once(&cl, 10 + i, 1000);
    }
    cl.c = first;
    echo_once(&cl, 20, 1000);
    struct conf_stats st;
    get_stats(&cl, &st);
    ck_assert_uint_eq(st.sessions, 1);  /* one session ... */
    ck_assert_uint_eq(st.conns, 3);     /* ... with all three connections */
    ck_assert_uint_eq(st.alt_conns, 2); /* two of them through the portal */
    ck_assert_uint_eq(st.anomalies, 0);
    client_close(&cl);
    ck_assert_int_eq(cl.ev[PX_EV_CONN_CLOSED], 3);
    server_stop(&sv);
}
END_TEST

/* One session, a second connection on another context driven by another
 * thread. The threads take turns (the other is joined while one runs), so
 * the suite's single-threaded client state needs no lock; what is checked
 * is plexus's side: the connection made from the second thread joins the
 * same session on the server, carries messages, and is closed on its own
 * thread by px_session_close from the session's. */
struct second_thread {
    struct client *cl;
    px_ctx *ctx;
    px_conn *c;
    int phase; /* 0: connect and echo; 1: run until its teardown */
};

static void *second_thread_main(void *arg)
{
    struct second_thread *st = arg;
    struct client *cl = st->cl;
    px_ctx *home = cl->ctx;
    px_conn *first = cl->c;
    cl->ctx = st->ctx; /* RUN_UNTIL and echo_once drive this thread's context */
    if (st->phase == 0) {
        int rc = px_connect(cl->s, st->ctx, &st->c);
        ck_assert_msg(rc == 0, "px_connect from a second context: %s", px_strerror(rc));
        RUN_UNTIL(cl, cl->ev[PX_EV_CONN_ESTABLISHED] == 2, 10000);
        cl->c = st->c;
        echo_once(cl, 30, 1000);
    } else {
        RUN_UNTIL(cl, cl->ev[PX_EV_CONN_TEARDOWN] == 1, 10000);
    }
    cl->ctx = home;
    cl->c = first;
    return NULL;
}

static void second_thread_run(struct second_thread *st, int phase)
{
    pthread_t t;
    st->phase = phase;
    ck_assert_int_eq(pthread_create(&t, NULL, second_thread_main, st), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
}

START_TEST(cross_context_session)
{
    struct server sv;
    struct client cl;
    server_start(&sv);
    client_open(&cl, sv.uri, NULL, "conformance");
    client_wait_up(&cl);
    cl.n_conns = 1;
    struct second_thread st = {.cl = &cl};
    ck_assert_int_eq(px_ctx_create(NULL, &st.ctx), 0);
    second_thread_run(&st, 0);
    ck_assert_ptr_eq(px_conn_ctx(st.c), st.ctx);
    ck_assert_ptr_eq(px_conn_session(st.c), cl.s);
    echo_once(&cl, 31, 1000); /* the first connection, on our context, still works */
    struct conf_stats stats;
    get_stats(&cl, &stats);
    ck_assert_uint_eq(stats.sessions, 1);
    ck_assert_uint_eq(stats.conns, 2);
    ck_assert_int_eq(px_session_close(cl.s), 0); /* from the session's own thread */
    second_thread_run(&st, 1);                   /* its connection closes there */
    ck_assert_int_eq(cl.ev[PX_EV_SESSION_TEARDOWN], 0);
    /* The other context has a connection of our session until it is
     * torn down: busy until then, free after. */
    ck_assert_int_eq(px_ctx_destroy(st.ctx), 0);
    client_close(&cl);
    ck_assert_int_eq(cl.ev[PX_EV_CONN_CLOSED], 2);
    server_stop(&sv);
}
END_TEST

/* ---- shared links: sessions of one context to one URI share a link */

enum { SHARED = 3 };

static void shared_open(px_ctx **ctx, struct client *cl, const char *uri)
{
    px_ctx_opts o = {.share_links = 1};
    ck_assert_int_eq(px_ctx_create(&o, ctx), 0);
    for (int i = 0; i < SHARED; i++)
        client_open_on(&cl[i], *ctx, uri, "conformance");
    for (int i = 0; i < SHARED; i++)
        client_wait_up(&cl[i]);
}

static void ctx_links(px_ctx *ctx, uint64_t *links, uint64_t *conns)
{
    px_stats_sum sum;
    ck_assert_int_eq(px_ctx_get_conn_stats(ctx, &sum), 0);
    *links = sum.links_open;
    *conns = sum.conns_open;
}

START_TEST(shared_links)
{
    enum { N = 40 };
    struct server sv;
    struct client cl[SHARED];
    px_ctx *ctx;
    server_start(&sv);
    shared_open(&ctx, cl, sv.uri);
    uint64_t links, conns;
    ctx_links(ctx, &links, &conns);
    ck_assert_msg(links == 1 && conns == SHARED, "%d sessions to one URI: %llu links, %llu conns",
                  SHARED, (unsigned long long)links, (unsigned long long)conns);
    struct conf_stats st;
    get_stats(&cl[0], &st);
    ck_assert_uint_eq(st.sessions, SHARED);
    ck_assert_uint_eq(st.conns, SHARED);
    ck_assert_uint_eq(st.links, 1);

    /* Requests of every session at once, small and large, interleaved on
     * the link: each answer reaches its own session (check_echo). */
    struct tmsg *t = tmsgs_new(SHARED * N);
    cl[0].n_ok = 0; /* get_stats's answer */
    for (int i = 0; i < N; i++)
        for (int k = 0; k < SHARED; k++) {
            tmsg_prep(&t[k * N + i], CONF_ECHO, k * N + i, i % 7 ? 100 + i : 200000, 1, 0);
            send_req_ok(&cl[k], &t[k * N + i]);
        }
    uint64_t dl = now_ms() + 30000;
    while (cl[0].n_ok + cl[1].n_ok + cl[2].n_ok < SHARED * N && now_ms() < dl)
        run_for(&cl[0], 10);
    ck_assert_msg(cl[0].n_ok + cl[1].n_ok + cl[2].n_ok == SHARED * N,
                  "answers %llu %llu %llu of %d each; errors %llu %llu %llu",
                  (unsigned long long)cl[0].n_ok, (unsigned long long)cl[1].n_ok,
                  (unsigned long long)cl[2].n_ok, N, (unsigned long long)cl[0].n_err,
                  (unsigned long long)cl[1].n_err, (unsigned long long)cl[2].n_err);
    for (int k = 0; k < SHARED; k++)
        ck_assert_uint_eq(cl[k].n_ok, N);

    /* One connection aborted alone, with requests held by the server: its
     * messages fail once, the others go on, the server's side of it ends. */
    for (int i = 0; i < 4; i++) {
        tmsg_prep(&t[i], CONF_HOLD, 1000 + i, 64, 1, 0);
        send_req_ok(&cl[0], &t[i]);
    }
    wait_server_held(&cl[1], 4);
    ck_assert_int_eq(px_conn_disconnect(cl[0].c), 0);
    RUN_UNTIL(&cl[0], cl[0].ev[PX_EV_CONN_TEARDOWN], 5000);
    ck_assert_int_eq(cl[0].ev[PX_EV_CONN_DISCONNECTED], 1);
    for (int i = 0; i < 4; i++)
        ck_assert_msg(t[i].state == T_ERR && t[i].err == -PX_EFLUSHED, "held request %d: %s", i,
                      px_errname(t[i].err));
    STATS_UNTIL(&cl[1], st, st.conns == SHARED - 1, 5000,
                "the server still has %llu connections after one of %d ended on a shared link",
                (unsigned long long)st.conns, SHARED);
    ck_assert_uint_eq(st.links, 1);
    echo_once(&cl[1], 2000, 1000);
    echo_once(&cl[2], 2001, 300000);
    ck_assert_int_eq(cl[1].ev[PX_EV_CONN_DISCONNECTED] + cl[2].ev[PX_EV_CONN_DISCONNECTED], 0);
    client_close(&cl[0]);

    /* A second connection of a session gets a link of its own. */
    px_conn *c2;
    cl[1].n_conns = 1;
    ck_assert_int_eq(px_connect(cl[1].s, ctx, &c2), 0);
    RUN_UNTIL(&cl[1], cl[1].ev[PX_EV_CONN_ESTABLISHED] == 2, 10000);
    ctx_links(ctx, &links, &conns);
    ck_assert_msg(links == 2 && conns == 3, "links %llu, conns %llu", (unsigned long long)links,
                  (unsigned long long)conns);

    /* Aborted alone while a large frame of its is on its way: it waits
     * for the link to let go of it, its message ends once, and the link
     * and its other user go on. */
    tmsg_prep(&t[5], CONF_ECHO, 3000, 8 * MIB, 1, 0);
    send_req_ok(&cl[2], &t[5]);
    run_for(&cl[2], 1);
    ck_assert_int_eq(px_conn_disconnect(cl[2].c), 0);
    RUN_UNTIL(&cl[2], cl[2].ev[PX_EV_CONN_TEARDOWN], 15000);
    ck_assert_msg(t[5].state == T_OK || t[5].state == T_ERR, "the 8 MiB request never ended");
    ck_assert_int_eq(cl[2].ev[PX_EV_CONN_DISCONNECTED], 1);
    echo_once(&cl[1], 2002, 1000);
    client_close(&cl[2]);

    /* Graceful closes; the link goes with its last user. */
    client_close(&cl[1]);
    ctx_links(ctx, &links, &conns);
    ck_assert_msg(links == 0 && conns == 0, "after every session: links %llu, conns %llu",
                  (unsigned long long)links, (unsigned long long)conns);
    ck_assert_int_eq(px_ctx_destroy(ctx), 0);
    tmsgs_free(t, SHARED * N);
    server_stop(&sv);
}
END_TEST

/* link_linger_ms: a link outlives its last user for the next session to
 * take, closes once the time is up, and px_ctx_destroy closes one that
 * still lingers. */
START_TEST(shared_link_linger)
{
    struct server sv;
    struct client a, b;
    px_ctx *ctx;
    uint64_t links, conns;
    px_stats_sum sum;
    server_start(&sv);
    px_ctx_opts o = {.share_links = 1, .link_linger_ms = 300};
    ck_assert_int_eq(px_ctx_create(&o, &ctx), 0);
    client_open_on(&a, ctx, sv.uri, "conformance");
    client_wait_up(&a);
    echo_once(&a, 1, 1000);
    client_close(&a);
    ctx_links(ctx, &links, &conns);
    ck_assert_msg(links == 1 && conns == 0, "lingering: links %llu, conns %llu",
                  (unsigned long long)links, (unsigned long long)conns);
    client_open_on(&b, ctx, sv.uri, "conformance");
    client_wait_up(&b);
    echo_once(&b, 2, 1000);
    ck_assert_int_eq(px_ctx_get_conn_stats(ctx, &sum), 0);
    ck_assert_msg(sum.links_opened == 1, "the second session made a link of its own (%llu made)",
                  (unsigned long long)sum.links_opened);
    client_close(&b);
    RUN_UNTIL(&b, (ctx_links(ctx, &links, &conns), links == 0), 5000); /* the linger runs out */
    /* Once more, and destroy the context while it lingers. */
    client_open_on(&a, ctx, sv.uri, "conformance");
    client_wait_up(&a);
    client_close(&a);
    ck_assert_int_eq(px_ctx_get_conn_stats(ctx, &sum), 0);
    ck_assert_uint_eq(sum.links_open, 1);
    ck_assert_uint_eq(sum.links_opened, 2);
    ck_assert_int_eq(px_ctx_destroy(ctx), 0);
    server_stop(&sv);
}
END_TEST

/* The shared link dies with work in flight on every session: each
 * connection ends once, each message once. */
START_TEST(shared_link_death)
{
    enum { HELD = 100, ONEWAY = 50, PER = HELD + ONEWAY };
    struct server sv;
    struct client cl[SHARED];
    px_ctx *ctx;
    server_start(&sv);
    shared_open(&ctx, cl, sv.uri);
    struct tmsg *t = tmsgs_new(SHARED * PER);
    for (int k = 0; k < SHARED; k++)
        for (int i = 0; i < HELD; i++) {
            tmsg_prep(&t[k * PER + i], CONF_HOLD, i, i % 9 ? 64 : 50000, 1, 0);
            send_req_ok(&cl[k], &t[k * PER + i]);
        }
    wait_server_held(&cl[0], SHARED * HELD);
    for (int k = 0; k < SHARED; k++)
        for (int i = HELD; i < PER; i++) {
            tmsg_prep(&t[k * PER + i], CONF_SEQ, i, 5000, 1, 0);
            ck_assert_int_eq(send_oneway(&cl[k], &t[k * PER + i], i % 2 ? PX_MSG_RECEIPT : 0), 0);
        }
    uint64_t ok0[SHARED]; /* the queries' answers (wait_server_held) */
    for (int k = 0; k < SHARED; k++)
        ok0[k] = cl[k].n_ok;
    run_for(&cl[0], 2);
    server_kill(&sv);
    RUN_UNTIL(&cl[0],
              cl[0].ev[PX_EV_CONN_TEARDOWN] && cl[1].ev[PX_EV_CONN_TEARDOWN] &&
                  cl[2].ev[PX_EV_CONN_TEARDOWN],
              10000);
    run_for(&cl[0], 200);
    for (int k = 0; k < SHARED; k++) {
        ck_assert_int_eq(cl[k].ev[PX_EV_CONN_DISCONNECTED], 1);
        ck_assert_msg(cl[k].req_err_at_disc == HELD,
                      "session %d: %llu of %d held requests had failed at CONN_DISCONNECTED", k,
                      (unsigned long long)cl[k].req_err_at_disc, HELD);
        ck_assert_uint_eq(cl[k].n_ok, ok0[k]);
        for (int i = 0; i < PER; i++) {
            struct tmsg *m = &t[k * PER + i];
            if (i < HELD)
                ck_assert_msg(m->state == T_ERR, "session %d request %d: state %d", k, i, m->state);
            else
                ck_assert_msg(m->state == T_OK || m->state == T_ERR,
                              "session %d one-way %d never ended", k, i);
        }
    }
    for (int k = 0; k < SHARED; k++)
        client_close(&cl[k]);
    ck_assert_int_eq(px_ctx_destroy(ctx), 0);
    tmsgs_free(t, SHARED * PER);
}
END_TEST

/* ---- assign_data_in_buf: the receiver supplies the buffer for large data */

START_TEST(assign_data_in_buf)
{
    static const size_t sz[] = {20000, 100000, 4 * MIB};
    struct server sv;
    server_start(&sv);
    struct client *cl = client_new(sv.uri, NULL);
    struct tmsg *t = tmsgs_new(1);
    for (size_t i = 0; i < 3; i++) {
        tmsg_prep(t, CONF_ECHO, i, sz[i], 1 + i, CONF_ARG_ASSIGN);
        send_req_ok(cl, t);
        RUN_UNTIL(cl, t->state != T_SENT, 10000);
        ck_assert_msg(t->state == T_OK, "%zu B into an assigned buffer: %s", sz[i],
                      px_strerror(t->err));
    }
    /* One byte too short: refused and never overrun (the server checks);
     * the message still ends exactly once. */
    tmsg_prep(t, CONF_ECHO, 9, 100000, 1, CONF_ARG_ASSIGN_SHORT);
    send_req_ok(cl, t);
    RUN_UNTIL(cl, t->state != T_SENT, 10000);
    /* Refused and replaced by a plexus buffer: the message arrives whole. */
    ck_assert_msg(t->state == T_OK,
                  "a request whose assigned vector was too short: %s, want it delivered "
                  "through a plexus buffer",
                  px_errname(t->err));
    echo_once(cl, 10, 50000);
    struct conf_stats st;
    get_stats(cl, &st);
    ck_assert_msg(st.assigned >= 4, "assign_data_in_buf was asked %llu times for 4 messages",
                  (unsigned long long)st.assigned);
    ck_assert_uint_eq(st.anomalies, 0);
    client_free(cl);
    tmsgs_free(t, 1);
    server_stop(&sv);
}
END_TEST

/* ---- abrupt_disconnect: px_conn_disconnect flushes at once */

START_TEST(abrupt_disconnect)
{
    enum { N = 100 };
    struct server sv;
    server_start(&sv);
    struct client *cl = client_new(sv.uri, NULL);
    struct tmsg *t = tmsgs_new(N);
    for (int i = 0; i < N; i++) {
        tmsg_prep(&t[i], CONF_HOLD, i, 1000, 1, 0);
        send_req_ok(cl, &t[i]);
    }
    wait_server_held(cl, N);
    ck_assert_int_eq(px_conn_disconnect(cl->c), 0);
    RUN_UNTIL(cl, cl->ev[PX_EV_CONN_TEARDOWN], 5000);
    ck_assert_msg(cl->ev[PX_EV_CONN_DISCONNECTED] == 1 && cl->ev[PX_EV_CONN_CLOSED] == 0,
                  "abrupt close ended with DISCONNECTED %d, CLOSED %d",
                  cl->ev[PX_EV_CONN_DISCONNECTED], cl->ev[PX_EV_CONN_CLOSED]);
    ck_assert_msg(cl->req_err_at_disc == N, "%llu of %d requests flushed before DISCONNECTED",
                  (unsigned long long)cl->req_err_at_disc, N);
    for (int i = 0; i < N; i++)
        ck_assert_msg(t[i].state == T_ERR && t[i].err == -PX_EFLUSHED,
                      "request %d: state %d reason %s, want -PX_EFLUSHED", i, t[i].state,
                      px_errname(t[i].err));
    client_free(cl);
    tmsgs_free(t, N);

    /* The server let go of the session and everything it held. */
    cl = client_new(sv.uri, NULL);
    struct conf_stats st;
    STATS_UNTIL(cl, st, st.sessions == 1 && st.held == 0, 5000,
                "server still has %llu sessions, %llu held requests",
                (unsigned long long)st.sessions, (unsigned long long)st.held);
    ck_assert_uint_eq(st.anomalies, 0);
    client_free(cl);
    server_stop(&sv);
}
END_TEST

/* ---- peer_hung: a stopped (not dead) server is found out by the keepalive */

START_TEST(peer_hung)
{
    enum { HELD = 500 };
    struct server sv;
    server_start(&sv);
    px_ctx_opts o = {.queue_depth = 1024, .keepalive_ms = 100};
    struct client *cl = client_new(sv.uri, &o);
    struct tmsg *t = tmsgs_new(HELD);
    for (int i = 0; i < HELD; i++) {
        tmsg_prep(&t[i], CONF_HOLD, i, 64, 1, 0);
        send_req_ok(cl, &t[i]);
    }
    wait_server_held(cl, HELD);
    /* Its sockets, rings and process stay: only silence says it is gone. */
    ck_assert_int_eq(kill(sv.pid, SIGSTOP), 0);
    uint64_t t0 = now_ms();
    RUN_UNTIL(cl, cl->ev[PX_EV_CONN_DISCONNECTED], 5000);
    uint64_t waited = now_ms() - t0;
    ck_assert_msg(waited >= 200, "declared dead after %llu ms, before 3 silent intervals",
                  (unsigned long long)waited);
    ck_assert_int_eq(cl->disc_reason, -PX_ETIMEDOUT);
    ck_assert_msg(cl->req_err_at_disc == HELD,
                  "%llu of %d held requests had failed when CONN_DISCONNECTED came",
                  (unsigned long long)cl->req_err_at_disc, HELD);
    for (int i = 0; i < HELD; i++)
        ck_assert_msg(t[i].state == T_ERR && t[i].err == -PX_ETIMEDOUT,
                      "request %d: state %d, reason %s", i, t[i].state, px_errname(t[i].err));
    run_for(cl, 100);
    client_free(cl);
    tmsgs_free(t, HELD);
    kill(sv.pid, SIGCONT);
    server_kill(&sv);
}
END_TEST

/* ==== Nothing lost, nothing wedged ======================================== */

/* A URI of this suite's scheme where nobody listens yet (for a raw
 * server of the test's own). */
static void scratch_uri(char *out, size_t len, const char *tag)
{
    if (strncmp(g_uri, "unix://", 7) == 0)
        snprintf(out, len, "unix:///tmp/plexus-conf-%s-%d.sock", tag, (int)getpid());
    else if (strncmp(g_uri, "shm://", 6) == 0)
        snprintf(out, len, "shm://plexus-conf-%s-%d", tag, (int)getpid());
    else if (strstr(g_uri, "[::1]"))
        snprintf(out, len, "tcp://[::1]:0");
    else
        snprintf(out, len, "tcp://127.0.0.1:0");
}

static int is_stream(const char *uri)
{
    return strncmp(uri, "tcp://", 6) == 0 || strncmp(uri, "unix://", 7) == 0;
}

/* ---- pipelined_large_echo: each response carries its own request's header.
 * The server echoes from inside on_msg with out.header = in.header (as the
 * headers allow) while further large requests arrive behind it. */

#define PL_N      240
#define PL_WINDOW 8

static size_t pl_size(uint64_t seq)
{
    static const size_t sz[] = {20000, 70000, 300000, 16385, 2 * MIB, 40000};
    return sz[seq % 6];
}

static void pl_next(struct client *cl, struct tmsg *t)
{
    struct echo_run *er = cl->arg;
    ck_assert_msg(t->state == T_OK, "seq %llu failed: %s", (unsigned long long)t->seq,
                  px_strerror(t->err));
    check_echo(t); /* header and data both */
    release(t);
    er->done++;
    if (er->next < er->n) {
        uint64_t seq = er->next++;
        tmsg_prep(t, CONF_ECHO, seq, pl_size(seq), 1 + seq % 4, 0);
        send_req_ok(cl, t);
    }
}

static void pipelined_run(struct client *cl)
{
    struct tmsg *t = tmsgs_new(PL_WINDOW);
    struct echo_run er = {.n = PL_N, .op = CONF_ECHO};
    cl->arg = &er;
    cl->done = pl_next;
    for (int i = 0; i < PL_WINDOW; i++) {
        uint64_t seq = er.next++;
        tmsg_prep(&t[i], CONF_ECHO, seq, pl_size(seq), 1, 0);
        send_req_ok(cl, &t[i]);
    }
    RUN_UNTIL(cl, er.done == PL_N, 120000);
    ck_assert_uint_eq(cl->n_err, 0);
    cl->done = NULL;
    tmsgs_free(t, PL_WINDOW);
}

START_TEST(pipelined_large_echo)
{
    struct server sv;
    server_start(&sv);
    struct client *cl = client_new(sv.uri, NULL);
    pipelined_run(cl);
    client_free(cl);
    server_stop(&sv);
}
END_TEST

/* ---- echo_without_pool_buffers: every px_buf_get declines (PX_FAULT), so
 * large requests are answered in place from the transport's own receive
 * buffer; that buffer must outlive the responses that point into it. */
START_TEST(echo_without_pool_buffers)
{
#ifdef PX_FAULT_INJECTION
    struct server sv;
    server_start_with(&sv, NULL, "buf_get");
    setenv("PX_FAULT", "buf_get", 1); /* our context too: responses in place */
    struct client *cl = client_new(sv.uri, NULL);
    unsetenv("PX_FAULT");
    pipelined_run(cl);
    client_free(cl);
    server_stop(&sv);
#else
    fprintf(stderr, "echo_without_pool_buffers: NOT RUN: this build has no fault injection "
                    "(PX_FAULT_INJECTION; Debug builds, the sanitizer job)\n");
#endif
}
END_TEST

/* ---- keepalive_slow_link: bytes arriving are life, even before a frame
 * completes. A relay passes the client's bytes at 2 MB/s; a 4 MiB request
 * takes 2 s, twenty keepalive checks of the server's. */

static void relay_pump(int from, int to, size_t max)
{
    static uint8_t buf[1 << 16];
    ssize_t n = read(from, buf, max < sizeof(buf) ? max : sizeof(buf));
    if (n <= 0)
        _exit(0);
    for (ssize_t off = 0; off < n;) {
        ssize_t w = write(to, buf + off, (size_t)(n - off));
        if (w <= 0)
            _exit(0);
        off += w;
    }
}

/* The relay process: accept one client at `lfd`, dial `server`, forward
 * both ways; the client's direction at 32 KiB per 16 ms (2 MB/s). */
static void relay_run(int lfd, const char *server)
{
    int c = accept(lfd, NULL, NULL);
    raw_link *up = raw_dial(server);
    if (c < 0 || !up)
        _exit(1);
    int s = raw_link_fd(up);
    uint64_t next = now_ms();
    for (;;) {
        struct pollfd pfd[2] = {{.fd = c, .events = POLLIN}, {.fd = s, .events = POLLIN}};
        int wait = (int)(next > now_ms() ? next - now_ms() : 0);
        if (poll(pfd, 2, 16) < 0)
            _exit(0);
        if (pfd[1].revents)
            relay_pump(s, c, 1 << 16);
        if (pfd[0].revents && wait == 0) {
            relay_pump(c, s, 32768);
            next = now_ms() + 16;
        }
    }
}

START_TEST(keepalive_slow_link)
{
    if (!is_stream(g_uri)) {
        /* shm moves a large message as one record (CMA, the shared pool) or
         * in chunks each of which is progress: no link is slow there. */
        fprintf(stderr, "keepalive_slow_link: not applicable to %s (no stream to slow down)\n",
                g_uri);
        return;
    }
    struct server sv;
    static const char *const fast_keepalive[] = {"-k", "100", NULL};
    server_start_with(&sv, fast_keepalive, NULL);
    char relay_uri[URI_LEN];
    scratch_uri(relay_uri, sizeof(relay_uri), "relay");
    int lfd = raw_listen(relay_uri, relay_uri, sizeof(relay_uri));
    ck_assert_int_ge(lfd, 0);
    pid_t relay = fork();
    ck_assert_int_ge(relay, 0);
    if (relay == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        relay_run(lfd, sv.uri);
    }
    px_ctx_opts o = {.keepalive_ms = 100};
    struct client *cl = client_new(relay_uri, &o);
    struct tmsg *t = tmsgs_new(1);
    uint64_t t0 = now_ms();
    tmsg_prep(t, CONF_ECHO, 1, 4 * MIB, 1, 0);
    send_req_ok(cl, t);
    RUN_UNTIL(cl, t->state != T_SENT, 30000);
    ck_assert_msg(t->state == T_OK, "4 MiB at 2 MB/s with 100 ms keepalives: %s after %llu ms",
                  px_errname(t->err), (unsigned long long)(now_ms() - t0));
    ck_assert_msg(now_ms() - t0 >= 1000, "the relay did not slow the link (%llu ms)",
                  (unsigned long long)(now_ms() - t0));
    ck_assert_int_eq(cl->ev[PX_EV_CONN_DISCONNECTED], 0);
    client_free(cl);
    tmsgs_free(t, 1);
    kill(relay, SIGKILL);
    waitpid(relay, NULL, 0);
    raw_listen_close(lfd);
    server_stop(&sv);
}
END_TEST

/* ---- keepalive_agreed: a live peer is never declared dead, whatever the
 * two sides' intervals. */
START_TEST(keepalive_agreed)
{
    struct server sv;
    server_start(&sv); /* keepalive 5 s */
    px_ctx_opts o = {.keepalive_ms = 100};
    struct client *cl = client_new(sv.uri, &o);
    run_for(cl, 1500); /* 15 of our intervals, under one of the server's */
    ck_assert_msg(cl->ev[PX_EV_CONN_DISCONNECTED] == 0,
                  "a client checking every 100 ms declared a live server (5 s) dead: %s",
                  px_errname(cl->disc_reason));
    echo_once(cl, 1, 100);
    client_free(cl);
    server_stop(&sv);

    /* The other way round: the server checks every 100 ms, the client not
     * at all; the client must still be heard. */
    static const char *const fast_keepalive[] = {"-k", "100", NULL};
    server_start_with(&sv, fast_keepalive, NULL);
    o.keepalive_ms = PX_KEEPALIVE_OFF;
    cl = client_new(sv.uri, &o);
    run_for(cl, 1500);
    ck_assert_msg(cl->ev[PX_EV_CONN_DISCONNECTED] == 0,
                  "a server checking every 100 ms dropped a live client without keepalive: %s",
                  px_errname(cl->disc_reason));
    echo_once(cl, 2, 100);
    client_free(cl);
    server_stop(&sv);
}
END_TEST

/* ---- close_before_established: the documented graceful close lets what
 * was queued go first, also before the handshake is over. */
START_TEST(close_before_established)
{
    struct server sv;
    server_start(&sv);
    for (int how = 0; how < 2; how++) {
        struct client cl;
        struct tmsg *t = tmsgs_new(5);
        client_open(&cl, sv.uri, NULL, "early-close");
        for (int i = 0; i < 5; i++) {
            tmsg_prep(&t[i], CONF_ECHO, i, 100 * i, 1, 0);
            send_req_ok(&cl, &t[i]);
        }
        if (how == 0)
            ck_assert_int_eq(px_conn_close(cl.c), 0);
        else
            ck_assert_int_eq(px_session_close(cl.s), 0);
        RUN_UNTIL(&cl, cl.ev[PX_EV_CONN_TEARDOWN], 10000);
        ck_assert_msg(cl.n_ok == 5 && cl.n_err == 0,
                      "%s right after px_connect: %llu of 5 queued requests answered, %llu failed",
                      how ? "px_session_close" : "px_conn_close", (unsigned long long)cl.n_ok,
                      (unsigned long long)cl.n_err);
        ck_assert_int_eq(cl.ev[PX_EV_CONN_CLOSED], 1);
        ck_assert_int_eq(cl.ev[PX_EV_CONN_DISCONNECTED], 0);
        client_close(&cl);
        tmsgs_free(t, 5);
    }
    server_stop(&sv);
}
END_TEST

/* ---- handshake_deadline: nobody holds a connection without introducing
 * itself, on either side. */
START_TEST(handshake_deadline_server)
{
    struct server sv;
    static const char *const hs[] = {"-h", "500", NULL};
    server_start_with(&sv, hs, NULL);
    /* KEEPALIVE frames, never a HELLO. */
    raw_link *l = dial(sv.uri);
    uint8_t f[32];
    raw_frame_hdr(f, 1, 10, 0, 0, 0, 0);
    uint64_t t0 = now_ms();
    int closed = 0;
    while (!closed && now_ms() - t0 < 5000) {
        if (raw_send(l, f, 32) < 0)
            break;
        closed = raw_wait_closed(l, 50);
    }
    uint64_t waited = now_ms() - t0;
    ck_assert_msg(closed || waited < 5000, "a peer sending only KEEPALIVEs was kept 5 s");
    ck_assert_msg(waited >= 400, "dropped after %llu ms, before the 500 ms deadline",
                  (unsigned long long)waited);
    raw_close(l);
    /* Silent altogether. */
    l = dial(sv.uri);
    ck_assert_msg(raw_wait_closed(l, 3000), "a silent peer was kept 3 s past a 500 ms deadline");
    raw_close(l);
    struct client *cl = client_new(sv.uri, NULL);
    struct conf_stats st;
    get_stats(cl, &st);
    ck_assert_uint_eq(st.conns, 1);
    client_free(cl);
    server_stop(&sv);
}
END_TEST

START_TEST(handshake_deadline_client)
{
    char uri[URI_LEN];
    scratch_uri(uri, sizeof(uri), "mute");
    int lfd = raw_listen(uri, uri, sizeof(uri)); /* accepts nothing, answers nothing */
    ck_assert_msg(lfd >= 0, "raw listener at %s: %s", uri, strerror(errno));
    struct client cl;
    px_ctx_opts o = {.handshake_timeout_ms = 300};
    struct tmsg *t = tmsgs_new(2);
    client_open(&cl, uri, &o, NULL);
    for (int i = 0; i < 2; i++) {
        tmsg_prep(&t[i], CONF_ECHO, i, 10, 1, 0);
        send_req_ok(&cl, &t[i]);
    }
    uint64_t t0 = now_ms();
    RUN_UNTIL(&cl, cl.ev[PX_EV_CONN_TEARDOWN], 5000);
    ck_assert_msg(now_ms() - t0 >= 250, "gave up after %llu ms, before its 300 ms",
                  (unsigned long long)(now_ms() - t0));
    ck_assert_int_eq(cl.ev[PX_EV_CONN_DISCONNECTED], 1);
    ck_assert_msg(cl.disc_reason == -PX_ETIMEDOUT, "reason %s, want PX_ETIMEDOUT",
                  px_errname(cl.disc_reason));
    for (int i = 0; i < 2; i++)
        ck_assert_msg(t[i].state == T_ERR && t[i].err == -PX_ETIMEDOUT,
                      "queued request %d: state %d %s", i, t[i].state, px_errname(t[i].err));
    client_close(&cl);
    tmsgs_free(t, 2);
    raw_listen_close(lfd);
}
END_TEST

/* A server bound without on_new_session accepts every session. */
START_TEST(auto_accept)
{
    struct server sv;
    static const char *const a[] = {"-a", NULL};
    server_start_with(&sv, a, NULL);
    struct client *cl = client_new(sv.uri, NULL);
    ck_assert_uint_eq(cl->data_len, 0);
    echo_once(cl, 1, 100);
    struct conf_stats st;
    get_stats(cl, &st);
    ck_assert_uint_eq(st.sessions, 1);
    ck_assert_uint_eq(st.anomalies, 0);
    client_free(cl);
    server_stop(&sv);
}
END_TEST

/* ---- rx_held_bound: a peer sending faster than the server consumes is
 * slowed down; the server's memory is not. 64 requests of 1 MiB, held by
 * the server, against max_rx_held_bytes 4 MiB. */
START_TEST(rx_held_bound)
{
    enum { N = 64 };
    struct server sv;
    static const char *const r[] = {"-r", "4194304", NULL};
    server_start_with(&sv, r, NULL);
    struct client *probe = client_new(sv.uri, NULL);
    px_ctx_opts o = {.queue_depth = 128, .max_queued_bytes = 128 * MIB};
    struct client *cl = client_new(sv.uri, &o);
    struct tmsg *t = tmsgs_new(N);
    for (int i = 0; i < N; i++) {
        tmsg_prep(&t[i], CONF_HOLD, i, MIB, 1, 0);
        send_req_ok(cl, &t[i]);
    }
    /* Both sides run: the client pushes what it may. */
    struct conf_stats st;
    for (int round = 0; round < 20; round++) {
        run_for(cl, 25);
        get_stats(probe, &st);
    }
    ck_assert_msg(st.held >= 3 && st.held <= 6,
                  "the server holds %llu requests of 1 MiB under max_rx_held_bytes 4 MiB "
                  "(want about 4: it should stop reading)",
                  (unsigned long long)st.held);
    px_conn_stats cs;
    ck_assert_int_eq(px_conn_get_stats(cl->c, &cs), 0);
    ck_assert_uint_eq(cs.requests_sent + cs.queued, N);
    ck_assert_int_eq(px_conn_disconnect(cl->c), 0);
    RUN_UNTIL(cl, cl->ev[PX_EV_CONN_TEARDOWN], 5000);
    STATS_UNTIL(probe, st, st.held == 0 && st.sessions == 1, 5000,
                "server still holds %llu requests", (unsigned long long)st.held);
    ck_assert_uint_eq(st.anomalies, 0);
    client_free(cl);
    client_free(probe);
    tmsgs_free(t, N);
    server_stop(&sv);
}
END_TEST

/* ---- zero_limits: a peer that accepts no data gets none, rather than a
 * 0 turning the checks off. */

/* A REQUEST frame with a conf header and `len` data bytes of which the
 * first `send` are written (into out, returned length). */
static size_t raw_request(uint8_t *out, uint32_t op, uint64_t seq, uint32_t arg, uint32_t len,
                          uint32_t send, uint64_t id)
{
    struct conf_hdr h = {.magic = CONF_MAGIC, .op = op, .seq = seq, .arg = arg};
    raw_frame_hdr(out, 1, 3, sizeof(h), len, id, 0);
    memcpy(out + 32, &h, sizeof(h));
    conf_fill(out + 32 + sizeof(h), seq, send);
    return 32 + sizeof(h) + send;
}

START_TEST(zero_limits)
{
    struct server sv;
    server_start(&sv);
    raw_link *l = dial(sv.uri);
    ck_assert_int_eq(raw_hello(l, 0, 0), 0); /* max_msg 0, max_hdr 0 */
    uint8_t f[32 + sizeof(struct conf_hdr) + 100];
    ck_assert_int_eq(raw_send(l, f, raw_request(f, CONF_ECHO, 1, 0, 100, 100, 7)), 0);
    uint8_t in[4096];
    long n;
    do {
        n = raw_recv(l, in, sizeof(in), 5000);
        ck_assert_msg(n >= 32, "no answer to the request (%ld)", n);
    } while (in[3] == 10);      /* keepalives */
    ck_assert_int_eq(in[3], 4); /* RESPONSE */
    uint32_t hdr_len = in[6] | in[7] << 8;
    uint32_t data_len = in[12] | in[13] << 8 | in[14] << 16 | (uint32_t)in[15] << 24;
    uint32_t aux = in[24] | in[25] << 8 | in[26] << 16 | (uint32_t)in[27] << 24;
    ck_assert_msg(hdr_len == 0 && data_len == 0,
                  "a peer that said max_msg 0, max_hdr 0 was sent %u header and %u data bytes",
                  hdr_len, data_len);
    ck_assert_msg(aux != 0, "the refused echo came back as a success");
    raw_close(l);
    struct client *cl = client_new(sv.uri, NULL);
    struct conf_stats st;
    get_stats(cl, &st);
    ck_assert_uint_eq(st.anomalies, 0);
    client_free(cl);
    server_stop(&sv);
}
END_TEST

/* ---- cancel_frees_depth: canceled requests give their place in the
 * queue depth back at once: the responder is told and answers. */
START_TEST(cancel_frees_depth)
{
    enum { DEPTH = 16 };
    struct server sv;
    static const char *const q[] = {"-q", "16", NULL};
    server_start_with(&sv, q, NULL);
    struct client *probe = client_new(sv.uri, NULL);
    struct client *cl = client_new(sv.uri, NULL);
    struct tmsg *t = tmsgs_new(DEPTH + 4);
    for (int i = 0; i < DEPTH; i++) {
        tmsg_prep(&t[i], CONF_HOLD, i, 100, 1, 0);
        send_req_ok(cl, &t[i]);
    }
    struct conf_stats st;
    run_for(cl, 200); /* the requests leave; the server is polled through the probe */
    STATS_UNTIL(probe, st, st.held >= DEPTH, 10000, "the server holds %llu of %d",
                (unsigned long long)st.held, DEPTH);
    for (int i = 0; i < DEPTH; i++)
        ck_assert_int_eq(px_cancel(&t[i].m), 0);
    RUN_UNTIL(cl, cl->n_err == DEPTH, 5000);
    for (int i = DEPTH; i < DEPTH + 4; i++) {
        tmsg_prep(&t[i], CONF_ECHO, i, 50, 1, 0);
        send_req_ok(cl, &t[i]);
    }
    RUN_UNTIL(cl, cl->n_ok == 4, 3000); /* a wedged connection never gets here */
    get_stats(probe, &st);
    ck_assert_msg(st.canceled == DEPTH, "the server heard of %llu of %d cancels",
                  (unsigned long long)st.canceled, DEPTH);
    ck_assert_uint_eq(st.held, 0);
    ck_assert_uint_eq(st.anomalies, 0);
    px_conn_stats cs;
    ck_assert_int_eq(px_conn_get_stats(cl->c, &cs), 0);
    ck_assert_uint_eq(cs.in_flight, 0);
    client_free(cl);
    client_free(probe);
    tmsgs_free(t, DEPTH + 4);
    server_stop(&sv);
}
END_TEST

/* A responder that ignores CANCEL: the canceled slots still come back,
 * after three keepalive intervals, and its late answer harms nothing. The
 * raw responder runs in a child: accept, HELLO_ACK with depth 4, keep
 * the link alive, answer the first request only after 1.5 s. */
static void deaf_responder(int lfd)
{
    raw_link *l = raw_accept_hello(lfd, 4, 10000);
    if (!l)
        _exit(1);
    uint8_t f[4096], ka[32];
    raw_frame_hdr(ka, 1, 10, 0, 0, 0, 0);
    uint64_t first_id = 0, t0 = now_ms();
    int answered = 0;
    for (;;) {
        long n = raw_recv(l, f, sizeof(f), 50);
        if (n == 0)
            _exit(0);
        if (n >= 32 && f[3] == 3 && !first_id)
            memcpy(&first_id, f + 16, 8); /* little-endian, as this host */
        raw_send(l, ka, 32);
        if (first_id && !answered && now_ms() - t0 > 1500) {
            uint8_t r[32];
            raw_frame_hdr(r, 1, 4, 0, 0, first_id, 0);
            raw_send(l, r, 32);
            answered = 1;
        }
    }
}

START_TEST(cancel_unanswered)
{
    char uri[URI_LEN];
    scratch_uri(uri, sizeof(uri), "deaf");
    int lfd = raw_listen(uri, uri, sizeof(uri));
    ck_assert_int_ge(lfd, 0);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        deaf_responder(lfd);
    }
    px_ctx_opts o = {.keepalive_ms = 100};
    struct client *cl = client_new(uri, &o);
    struct tmsg *t = tmsgs_new(5);
    for (int i = 0; i < 5; i++) {
        tmsg_prep(&t[i], CONF_HOLD, i, 10, 1, 0);
        send_req_ok(cl, &t[i]);
    }
    run_for(cl, 50);
    px_conn_stats cs;
    ck_assert_int_eq(px_conn_get_stats(cl->c, &cs), 0);
    ck_assert_msg(cs.in_flight == 4 && cs.queued == 1, "in flight %llu, queued %llu: want 4, 1",
                  (unsigned long long)cs.in_flight, (unsigned long long)cs.queued);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(px_cancel(&t[i].m), 0);
    RUN_UNTIL(cl, cl->n_err == 4, 2000);
    RUN_UNTIL(cl, (px_conn_get_stats(cl->c, &cs), cs.queued == 0), 1200);
    run_for(cl, 1500); /* the late answer to the first canceled request */
    ck_assert_msg(cl->ev[PX_EV_CONN_ERROR] == 0 && cl->ev[PX_EV_CONN_DISCONNECTED] == 0,
                  "a late answer to an expired canceled request ended the connection: %s",
                  px_errname(cl->disc_reason));
    ck_assert_int_eq(t[4].state, T_SENT);
    ck_assert_uint_eq(cl->n_ok, 0);
    ck_assert_int_eq(px_conn_disconnect(cl->c), 0);
    RUN_UNTIL(cl, cl->ev[PX_EV_CONN_TEARDOWN], 3000);
    client_free(cl);
    tmsgs_free(t, 5);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    raw_listen_close(lfd);
}
END_TEST

/* Once on_msg_error(-PX_ECANCELED) ran, the reply buffer is never written. */
START_TEST(cancel_reply_buffer)
{
    struct server sv;
    server_start(&sv);
    struct client *cl = client_new(sv.uri, NULL);
    struct tmsg *t = tmsgs_new(2);
    static const size_t sz[2] = {1000, 200000};
    for (int i = 0; i < 2; i++) {
        tmsg_own_reply(&t[i], sz[i] + 100);
        tmsg_prep(&t[i], CONF_DELAY, i, sz[i], 1, 100);
        send_req_ok(cl, &t[i]);
        ck_assert_int_eq(px_cancel(&t[i].m), 0);
    }
    RUN_UNTIL(cl, cl->n_err == 2, 2000);
    for (int i = 0; i < 2; i++)
        memset(t[i].in_buf, POISON, t[i].in_cap + 3 * GAP);
    run_for(cl, 500); /* the responses arrive meanwhile */
    for (int i = 0; i < 2; i++)
        for (size_t k = 0; k < t[i].in_cap + 3 * GAP; k++)
            ck_assert_msg(t[i].in_buf[k] == POISON,
                          "the reply to a canceled request was written into its buffer at %zu", k);
    ck_assert_uint_eq(cl->n_ok, 0);
    echo_once(cl, 5, 100);
    client_free(cl);
    tmsgs_free(t, 2);
    server_stop(&sv);
}
END_TEST

/* ---- assign_aborted: a receive into the server's own buffer cut short
 * reaches the server as PX_DIR_IN, and the server carries on. */
START_TEST(assign_aborted)
{
    struct server sv;
    server_start(&sv);
    raw_link *l = dial(sv.uri);
    ck_assert_int_eq(raw_hello(l, MIB, 4096), 0);
    enum { LEN = 1 << 20, PART = 100000 };
    uint8_t *f = malloc(32 + sizeof(struct conf_hdr) + PART);
    size_t n = raw_request(f, CONF_ECHO, 3, CONF_ARG_ASSIGN, LEN, PART, 9);
    if (strncmp(sv.uri, "shm://", 6) == 0) {
        /* shm's way to send data of its own: a CHUNKED head, then chunks. */
        size_t head = 32 + sizeof(struct conf_hdr);
        ck_assert_int_eq(raw_send_record(l, SHM_REC_CHUNKED, f, head), 0);
        ck_assert_int_eq(raw_send_record(l, SHM_REC_CHUNK, f + head, n - head), 0);
    } else {
        ck_assert_int_eq(raw_send(l, f, n), 0);
    }
    free(f);
    struct client *cl = client_new(sv.uri, NULL);
    struct conf_stats st;
    STATS_UNTIL(cl, st, st.assigned >= 1, 5000, "the server never assigned a buffer");
    raw_close(l); /* mid-message */
    STATS_UNTIL(cl, st, st.aborted >= 1, 5000, "the server was not told of its aborted receive");
    ck_assert_uint_eq(st.anomalies, 0);
    echo_once(cl, 4, 30000);
    client_free(cl);
    server_stop(&sv);
}
END_TEST

/* ---- rdma_remote_access_error: a rendezvous naming memory the peer does
 * not have (a bad rkey) ends that one connection, with the remote access
 * error named, and the server carries on. rdma:// only. */
START_TEST(rdma_remote_access_error)
{
    struct server sv;
    server_start(&sv);
    struct client *cl = client_new(sv.uri, NULL); /* it watches the server's count */
    raw_link *l = dial(sv.uri);
    ck_assert_int_eq(raw_hello(l, MIB, 4096), 0);
    struct conf_stats st;
    STATS_UNTIL(cl, st, st.conns == 2, 5000, "the raw peer's connection never counted");
    uint8_t f[32 + sizeof(struct conf_hdr)];
    raw_request(f, CONF_ECHO, 3, 0, 100000, 0, 9);
    ck_assert_int_eq(raw_send_bad_rdv(l, f, sizeof(struct conf_hdr)), 0);
    /* The raw peer stays: the server itself must end the connection. */
    STATS_UNTIL(cl, st, st.conns == 1, 10000,
                "the server kept a connection whose READ failed (%llu connections)",
                (unsigned long long)st.conns);
    ck_assert_msg(raw_wait_closed(l, 10000), "the raw peer was not disconnected");
    raw_close(l);
    ck_assert_uint_eq(st.anomalies, 0);
    echo_once(cl, 4, 100000);
    client_free(cl);
    server_stop(&sv);
}
END_TEST

/* ---- request_timeout: nng's aio timeout, per message or per context. */
START_TEST(request_timeout)
{
    struct server sv;
    static const char *const q[] = {"-q", "1", NULL}; /* the second one waits in the queue */
    server_start_with(&sv, q, NULL);
    struct client *cl = client_new(sv.uri, NULL);
    struct tmsg *t = tmsgs_new(2);
    for (int i = 0; i < 2; i++) {
        tmsg_prep(&t[i], CONF_DELAY, i, 64, 1, 400);
        t[i].m.timeout_ms = 100;
        send_req_ok(cl, &t[i]);
    }
    uint64_t t0 = now_ms();
    RUN_UNTIL(cl, cl->n_err == 2, 2000);
    ck_assert_msg(now_ms() - t0 >= 90, "timed out after %llu ms, before 100",
                  (unsigned long long)(now_ms() - t0));
    for (int i = 0; i < 2; i++)
        ck_assert_msg(t[i].state == T_ERR && t[i].err == -PX_ETIMEDOUT, "request %d: %s", i,
                      px_errname(t[i].err));
    run_for(cl, 600); /* late responses are dropped: a second completion would fail */
    ck_assert_uint_eq(cl->n_ok, 0);
    echo_once(cl, 5, 100);
    client_free(cl);

    /* The context's default. */
    px_ctx_opts o = {.request_timeout_ms = 100};
    cl = client_new(sv.uri, &o);
    tmsg_prep(&t[0], CONF_DELAY, 7, 64, 1, 400);
    send_req_ok(cl, &t[0]);
    RUN_UNTIL(cl, t[0].state != T_SENT, 2000);
    ck_assert_int_eq(t[0].err, -PX_ETIMEDOUT);
    tmsg_prep(&t[0], CONF_ECHO, 8, 64, 1, 0); /* answered well within it */
    send_req_ok(cl, &t[0]);
    RUN_UNTIL(cl, t[0].state != T_SENT, 2000);
    ck_assert_int_eq(t[0].state, T_OK);
    client_free(cl);
    tmsgs_free(t, 2);
    server_stop(&sv);
}
END_TEST

/* ---- server_unbind: closing a server ends its sessions, so the context
 * can be destroyed without the application tracking every session. */
static void unbind_case(enum conf_unbind how)
{
    struct server sv;
    server_start(&sv);
    struct client *cl = client_new(sv.uri, NULL);
    struct tmsg *t = tmsgs_new(4);
    for (int i = 0; i < 3; i++) {
        tmsg_prep(&t[i], how == CONF_UNBIND_GRACEFUL ? CONF_DELAY : CONF_HOLD, i, 100, 1, 200);
        send_req_ok(cl, &t[i]);
    }
    tmsg_prep(&t[3], CONF_UNBIND, 3, 10, 1, how);
    send_req_ok(cl, &t[3]);
    RUN_UNTIL(cl, cl->ev[PX_EV_CONN_TEARDOWN], 10000);
    if (how == CONF_UNBIND_GRACEFUL) {
        ck_assert_msg(cl->ev[PX_EV_CONN_CLOSED] == 1,
                      "a graceful unbind ended the connection "
                      "with DISCONNECTED (%s)",
                      px_errname(cl->disc_reason));
        ck_assert_msg(cl->n_ok == 4, "%llu of 4 requests answered across a graceful unbind",
                      (unsigned long long)cl->n_ok);
    } else {
        ck_assert_int_eq(cl->ev[PX_EV_CONN_DISCONNECTED] + cl->ev[PX_EV_CONN_CLOSED], 1);
        for (int i = 0; i < 3; i++)
            ck_assert_int_eq(t[i].state, T_ERR);
    }
    server_expect_exit(&sv, 10000);
    client_free(cl);
    tmsgs_free(t, 4);
}

START_TEST(server_unbind_graceful)
{
    unbind_case(CONF_UNBIND_GRACEFUL);
}
END_TEST

START_TEST(server_unbind_abrupt)
{
    unbind_case(CONF_UNBIND_ABRUPT);
}
END_TEST

START_TEST(server_unbind_destroy)
{
    unbind_case(CONF_UNBIND_DESTROY);
}
END_TEST

/* What a case needs beyond a server to talk to. */
enum needs {
    N_ANY = 0,
    N_PROCESS = 1, /* the server (or a second client) in a process it kills or stops */
    N_WIRE = 2,    /* raw bytes to or from the server: a transport with a wire */
    N_CUT = 4,     /* a raw peer that stops inside a large message's data */
    N_RDMA = 8,    /* rdma:// itself */
};

static void add_case_needing(Suite *s, const char *name, const TTest *fn, int timeout,
                             unsigned needs)
{
    if (needs & N_CUT && strncmp(g_uri, "rdma://", 7) == 0) {
        /* The receiver RDMA-READs a large message's data without the
         * sender's CPU: a raw peer cannot stop inside it on cue. */
        fprintf(stderr, "conformance: %s: not applicable to %s (no partial data on rdma://)\n",
                name, g_uri);
        return;
    }
    if (needs & N_RDMA && strncmp(g_uri, "rdma://", 7) != 0)
        return; /* a case of rdma:// alone */
    if (in_process() && needs) {
        fprintf(stderr, "conformance: %s: not applicable to %s (%s)\n", name, g_uri,
                needs & N_PROCESS ? "it needs a peer in another process"
                                  : "it speaks raw bytes, and inproc has no wire");
        return;
    }
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, timeout);
    tcase_add_test(tc, fn);
    suite_add_tcase(s, tc);
}

static void add_case(Suite *s, const char *name, const TTest *fn, int timeout)
{
    add_case_needing(s, name, fn, timeout, N_ANY);
}

int main(int argc, char **argv)
{
    g_uri = argc > 1 ? argv[1] : getenv("PX_CONF_URI");
    if (g_uri == NULL) {
        fprintf(stderr, "usage: conf_suite URI (or set PX_CONF_URI); %%p = server pid\n");
        return 2;
    }
    Suite *s = suite_create("conformance");
    add_case(s, "connect_accept", connect_accept, 30);
    add_case(s, "reject_with_reason_and_data", reject_with_reason_and_data, 30);
    add_case(s, "private_data_limits", private_data_limits, 30);
    add_case(s, "redirect", redirect, 30);
    add_case(s, "portals", portals, 30);
    add_case(s, "cross_context_session", cross_context_session, 30);
    add_case(s, "shared_links", shared_links, 60);
    add_case(s, "shared_link_linger", shared_link_linger, 30);
    add_case_needing(s, "shared_link_death", shared_link_death, 60, N_PROCESS);
    add_case_needing(s, "shared_link_raw", shared_link_raw, 30, N_WIRE);
    add_case(s, "echo_100k", echo_100k, 180);
    add_case(s, "fifo_order", fifo_order, 120);
    add_case(s, "send_from_completion", send_from_completion, 60);
    add_case(s, "inflight_1000", inflight_1000, 60);
    add_case(s, "inflight_backpressure", inflight_backpressure, 60);
    add_case(s, "sizes", sizes, 180);
    add_case(s, "reply_many_segments", reply_many_segments, 60);
    add_case(s, "too_large", too_large, 30);
    add_case(s, "oneway_receipts", oneway_receipts, 60);
    add_case(s, "cancel", cancel, 30);
    add_case(s, "graceful_teardown", graceful_teardown, 30);
    add_case(s, "abrupt_disconnect", abrupt_disconnect, 30);
    add_case(s, "assign_data_in_buf", assign_data_in_buf, 60);
    add_case_needing(s, "server_killed", server_killed, 60, N_PROCESS);
    add_case_needing(s, "client_killed", client_killed, 60, N_PROCESS);
    add_case_needing(s, "peer_hung", peer_hung, 30, N_PROCESS);
    add_case_needing(s, "bad_frames", bad_frames, 60, N_WIRE);
    add_case(s, "pipelined_large_echo", pipelined_large_echo, 180);
    add_case(s, "echo_without_pool_buffers", echo_without_pool_buffers, 180);
    add_case_needing(s, "keepalive_slow_link", keepalive_slow_link, 60, N_WIRE);
    add_case(s, "keepalive_agreed", keepalive_agreed, 30);
    add_case(s, "close_before_established", close_before_established, 30);
    add_case_needing(s, "handshake_deadline_server", handshake_deadline_server, 30, N_WIRE);
    add_case_needing(s, "handshake_deadline_client", handshake_deadline_client, 30, N_WIRE);
    add_case(s, "auto_accept", auto_accept, 30);
    add_case(s, "rx_held_bound", rx_held_bound, 60);
    add_case_needing(s, "zero_limits", zero_limits, 30, N_WIRE);
    add_case(s, "cancel_frees_depth", cancel_frees_depth, 30);
    add_case_needing(s, "cancel_unanswered", cancel_unanswered, 30, N_WIRE | N_PROCESS);
    add_case(s, "cancel_reply_buffer", cancel_reply_buffer, 30);
    add_case_needing(s, "assign_aborted", assign_aborted, 60, N_WIRE | N_CUT);
    add_case_needing(s, "rdma_remote_access_error", rdma_remote_access_error, 60, N_WIRE | N_RDMA);
    add_case(s, "request_timeout", request_timeout, 30);
    add_case(s, "server_unbind_graceful", server_unbind_graceful, 30);
    add_case(s, "server_unbind_abrupt", server_unbind_abrupt, 30);
    add_case(s, "server_unbind_destroy", server_unbind_destroy, 30);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
