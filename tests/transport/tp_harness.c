/* The transport test harness; see tp_harness.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "tp_harness.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "raw_link.h"

px_ctx *H_CTX[2];
px_ctx_tp *H_TP[2];
const px_transport *H_T;
const uint8_t *H_PAT;
int h_in_op;
px_ctx *h_running;

#define H_MAX_EP  160
#define H_MAX_LST 32

static h_ep h_eps[H_MAX_EP];
static h_lst h_lsts[H_MAX_LST];
static h_msg *h_all; /* every msg made in this test */
static int h_uri_n;
static const px_tp_upcalls h_upcalls;
static void check_gaps(const h_ep *e);

#define H_PAT_LEN (H_PAT_SPAN + H_MAX_FRAME)

int h_case_wanted(const char *list, const char *name)
{
    if (!list)
        return 1;
    size_t n = strlen(name);
    for (const char *hit = strstr(list, name); hit; hit = strstr(hit + 1, name))
        if ((hit == list || hit[-1] == ',') && (!hit[n] || hit[n] == ','))
            return 1;
    return 0;
}

uint64_t h_timeout_ms(void)
{
    const char *v = getenv("PX_CONTRACT_TIMEOUT_MS");
    return v && *v ? strtoull(v, NULL, 10) : 60000;
}

uint64_t h_now_ms(void)
{
    return px_now_ns() / 1000000u;
}

/* ---- the pattern ---------------------------------------------------------- */

void h_init_pattern(void)
{
    uint8_t *p = mmap(NULL, H_PAT_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        abort();
    }
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i + 8 <= H_PAT_LEN; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(p + i, &x, 8);
    }
    /* Read-only: a transport writing into a send buffer faults. */
    if (mprotect(p, H_PAT_LEN, PROT_READ) != 0) {
        perror("mprotect");
        abort();
    }
    H_PAT = p;
}

h_exp h_exp_make(unsigned salt, uint64_t id, uint32_t len)
{
    static const uint8_t types[] = {PX_FT_REQUEST, PX_FT_ONEWAY, PX_FT_RESPONSE};
    h_exp x = {.set = 1, .len = len};
    x.off = (uint32_t)((id * 40503u + salt * 977u) % H_PAT_SPAN);
    x.hoff = (uint32_t)((id * 131u + salt * 7u + 5u) % H_PAT_SPAN);
    x.hdr_len = (uint16_t)(id % 17);
    x.type = types[id % 3];
    x.flags = x.type == PX_FT_ONEWAY && (id & 4) ? PX_FF_RECEIPT : 0;
    x.channel = (uint32_t)(id * 3u + salt);
    x.aux = (uint32_t)(id ^ 0x5a5a);
    return x;
}

/* ---- the fixture ------------------------------------------------------------ */

void h_setup(const char *scheme, const px_ctx_opts *opts)
{
    ck_assert_ptr_nonnull(H_PAT);
    memset(h_eps, 0, sizeof h_eps);
    memset(h_lsts, 0, sizeof h_lsts);
    h_all = NULL;
    h_in_op = 0;
    h_running = NULL;
    ck_assert_int_eq(px_transport_lookup(scheme, &H_T), 0);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(px_ctx_create(opts, &H_CTX[i]), 0);
        ck_assert_int_eq(px_ctx_instance(H_CTX[i], H_T, &H_TP[i]), 0);
        ck_assert_ptr_eq(H_TP[i]->ops, H_T);
    }
}

static int link_empty(const px_tp_link *h)
{
    return h->next == h;
}

void h_teardown(void)
{
    for (int i = 0; i < H_MAX_EP; i++) {
        h_ep *e = &h_eps[i];
        if (e->in_use && e->c && !e->closed)
            h_close(e);
    }
    for (int i = 0; i < H_MAX_LST; i++)
        if (h_lsts[i].in_use && h_lsts[i].l && !h_lsts[i].closed)
            h_listener_close(&h_lsts[i]);
    for (int k = 0; k < 4; k++)
        h_run_both();
    for (int i = 0; i < 2; i++) {
        ck_assert_msg(link_empty(&H_TP[i]->tp->conns), "%s: a conn was leaked",
                      i ? "server" : "client");
        ck_assert_msg(link_empty(&H_TP[i]->tp->listeners), "a listener was leaked");
    }
    for (int i = 0; i < H_MAX_EP; i++)
        if (h_eps[i].in_use)
            check_gaps(&h_eps[i]);
    for (h_msg *m = h_all; m; m = m->all_next)
        ck_assert_msg(m->state != H_M_QUEUED, "a queued send (id %llu) never finished",
                      (unsigned long long)m->s.hdr.id);
    for (int i = 0; i < 2; i++) {
        h_running = H_CTX[i];
        ck_assert_int_eq(px_ctx_destroy(H_CTX[i]), 0);
        h_running = NULL;
        H_CTX[i] = NULL;
    }
    while (h_all) {
        h_msg *m = h_all;
        h_all = m->all_next;
        free(m->own);
        free(m->own_hdr);
        free(m);
    }
    for (int i = 0; i < H_MAX_EP; i++) {
        free(h_eps[i].abuf);
        free(h_eps[i].exp);
    }
    memset(h_eps, 0, sizeof h_eps);
}

uint32_t h_inline(int side)
{
    return H_TP[side]->host.inline_threshold;
}

void h_caps(px_tp_caps *out)
{
    H_T->get_caps(H_TP[H_CLI]->tp, out);
}

void h_uri(const char *tmpl, char *out, size_t len)
{
    char pid[48];
    snprintf(pid, sizeof pid, "%d-%d", (int)getpid(), h_uri_n++);
    size_t o = 0;
    for (const char *p = tmpl; *p && o + 1 < len; p++) {
        if (p[0] == '%' && p[1] == 'p') {
            for (const char *q = pid; *q && o + 1 < len; q++)
                out[o++] = *q;
            p++;
        } else {
            out[o++] = *p;
        }
    }
    out[o] = '\0';
}

/* ---- running ------------------------------------------------------------------- */

void h_run(int side)
{
    px_ctx *prev = h_running;
    h_running = H_CTX[side];
    int rc = px_ctx_run_timeout(H_CTX[side], 1);
    ck_assert_msg(rc == 0 || rc == -PX_ETIMEDOUT, "px_ctx_run_timeout: %d", rc);
    h_running = prev;
}

void h_run_both(void)
{
    h_run(H_CLI);
    h_run(H_SRV);
}

void h_run_for(int ms)
{
    uint64_t end = h_now_ms() + (uint64_t)ms;
    while (h_now_ms() < end)
        h_run_both();
}

int h_tpc_poll(int side)
{
    px_ctx *prev = h_running;
    h_running = H_CTX[side];
    int n = px_tpc_poll(H_TP[side]->tp);
    h_running = prev;
    return n;
}

/* ---- eps -------------------------------------------------------------------------- */

h_ep *h_ep_new(const char *name, int side)
{
    for (int i = 0; i < H_MAX_EP; i++) {
        h_ep *e = &h_eps[i];
        if (e->in_use)
            continue;
        memset(e, 0, sizeof *e);
        e->in_use = 1;
        snprintf(e->name, sizeof e->name, "%s#%d", name, i);
        e->side = side;
        e->ctx = H_CTX[side];
        e->salt = (unsigned)i + 1;
        e->close_in = H_UP_NONE;
        return e;
    }
    ck_abort_msg("out of eps");
    return NULL;
}

px_tp_owner h_owner(h_ep *e)
{
    return (px_tp_owner){&h_upcalls, e};
}

int h_all_finished(const h_ep *e)
{
    return e->ndone + e->nreturned == e->nqueued;
}

void h_expect(h_ep *to, uint64_t id, const h_exp *x)
{
    if (id >= to->capexp) {
        uint64_t cap = to->capexp ? to->capexp : 64;
        while (cap <= id)
            cap *= 2;
        to->exp = realloc(to->exp, cap * sizeof *to->exp);
        ck_assert_ptr_nonnull(to->exp);
        memset(to->exp + to->capexp, 0, (cap - to->capexp) * sizeof *to->exp);
        to->capexp = cap;
    }
    ck_assert_msg(!to->exp[id].set, "%s: frame %llu expected twice", to->name,
                  (unsigned long long)id);
    to->exp[id] = *x;
    if (id + 1 > to->nexp)
        to->nexp = id + 1;
}

/* Every upcall: the rules of the interface that hold for all of them. */
static void up_enter(h_ep *e, int kind, const char *what)
{
    ck_assert_msg(h_in_op == 0, "%s: %s upcall from inside a call into the transport", e->name,
                  what);
    ck_assert_msg(!e->closed, "%s: %s upcall after close", e->name, what);
    ck_assert_msg(!e->disconnected, "%s: %s upcall after disconnected", e->name, what);
    ck_assert_msg(h_running == e->ctx, "%s: %s upcall while its context was not running", e->name,
                  what);
    e->upcalls++;
    (void)kind;
}

/* Close from inside this upcall if the ep was told to. */
static int maybe_close(h_ep *e, int kind)
{
    uint64_t n = e->nth[kind]++;
    if (e->close_in == kind && n == e->close_after && !e->closed) {
        h_close(e);
        return 1;
    }
    return 0;
}

static void up_connected(void *self)
{
    h_ep *e = self;
    up_enter(e, H_UP_CONNECTED, "connected");
    ck_assert_msg(e->is_client, "%s: connected on an accepted conn", e->name);
    ck_assert_int_eq(e->connected, 0);
    ck_assert_uint_eq(e->frames, 0);
    e->connected++;
    maybe_close(e, H_UP_CONNECTED);
}

static void check_hdr(h_ep *e, const px_tp_rx *rx, const h_exp **out)
{
    uint64_t id = rx->hdr.id;
    ck_assert_msg(id == e->next_id, "%s: frame %llu arrived, %llu expected (order, loss or dup)",
                  e->name, (unsigned long long)id, (unsigned long long)e->next_id);
    ck_assert_msg(id < e->nexp && e->exp[id].set, "%s: frame %llu was never sent", e->name,
                  (unsigned long long)id);
    const h_exp *x = &e->exp[id];
    ck_assert_uint_eq(rx->hdr.data_len, x->len);
    ck_assert_uint_eq(rx->hdr.hdr_len, x->hdr_len);
    ck_assert_uint_eq(rx->hdr.type, x->type);
    ck_assert_uint_eq(rx->hdr.flags, x->flags);
    ck_assert_uint_eq(rx->hdr.channel, x->channel);
    ck_assert_uint_eq(rx->hdr.aux, x->aux);
    if (x->hdr_len) {
        ck_assert_ptr_nonnull(rx->app_hdr);
        ck_assert_msg(memcmp(rx->app_hdr, H_PAT + x->hoff, x->hdr_len) == 0,
                      "%s: frame %llu: app header differs", e->name, (unsigned long long)id);
    }
    *out = x;
}

static int up_rx_assign(void *self, px_tp_rx *rx)
{
    h_ep *e = self;
    up_enter(e, H_UP_ASSIGN, "rx_assign");
    const h_exp *x;
    check_hdr(e, rx, &x);
    ck_assert_msg(rx->hdr.data_len > h_inline(e->side),
                  "%s: rx_assign for a frame of %u bytes, not over the inline threshold %u",
                  e->name, rx->hdr.data_len, h_inline(e->side));
    ck_assert_ptr_null(rx->data);
    ck_assert_msg(!e->assign_pending, "%s: a second rx_assign before the frame", e->name);
    e->assigns++;
    e->assign_pending = 1;
    e->assign_id = rx->hdr.id;
    e->assign_declined = 0;
    rx->owner_cookie = (void *)(uintptr_t)(0x5000 + rx->hdr.id);
    if (maybe_close(e, H_UP_ASSIGN))
        return 1;
    if (e->assign_mode == H_DECLINE) {
        e->declines++;
        e->assign_declined = 1;
        return 1;
    }
    /* Three uneven segments with poison between and after them. */
    size_t len = rx->hdr.data_len, a = len / 3, b = len / 5, c = len - a - b;
    size_t need = len + 3 * H_GAP;
    if (e->acap < need) {
        free(e->abuf);
        e->abuf = malloc(need);
        ck_assert_ptr_nonnull(e->abuf);
        e->acap = need;
    }
    memset(e->abuf, H_POISON, need);
    e->alen = need;
    uint8_t *p = e->abuf;
    e->aiov[0] = (px_iov){p, a, NULL};
    e->aiov[1] = (px_iov){p + a + H_GAP, b, NULL};
    e->aiov[2] = (px_iov){p + a + b + 2 * H_GAP, c, NULL};
    for (int i = 0; i < 3; i++)
        e->aseg[i] = e->aiov[i].base;
    rx->dst = e->aiov;
    rx->dst_count = 3;
    switch (e->assign_mode) {
    case H_SHORT_ONE:
        e->aiov[2].len--;
        break;
    case H_SHORT_NONE:
        rx->dst = NULL;
        rx->dst_count = 0;
        break;
    case H_SHORT_NULLSEG:
        e->aiov[1].base = NULL;
        break;
    default:
        break;
    }
    return 0;
}

/* The poison around an assigned vector is intact: nothing was written
 * outside the segments given (for a short vector: past what it gave). */
static void check_gaps(const h_ep *e)
{
    if (!e->abuf)
        return;
    for (int g = 0; g < 3; g++) {
        const uint8_t *from = e->aseg[g] + (e->aiov[g].base ? e->aiov[g].len : 0);
        const uint8_t *to = g < 2 ? e->aseg[g + 1] : e->abuf + e->alen;
        if (e->assign_mode == H_SHORT_NONE)
            from = e->aseg[g];
        for (const uint8_t *p = from; p < to; p++)
            ck_assert_msg(*p == H_POISON, "%s: byte %td after assigned segment %d was overwritten",
                          e->name, p - from, g);
    }
}

static void check_data(const h_ep *e, const px_tp_rx *rx, const h_exp *x, const uint8_t *d)
{
    if (memcmp(d, H_PAT + x->off, x->len) != 0) {
        size_t i = 0;
        while (d[i] == H_PAT[x->off + i])
            i++;
        ck_abort_msg("%s: frame %llu (%u bytes): byte %zu differs", e->name,
                     (unsigned long long)rx->hdr.id, x->len, i);
    }
}

static void up_frame(void *self, px_tp_rx *rx)
{
    h_ep *e = self;
    up_enter(e, H_UP_FRAME, "frame");
    if (e->is_client)
        ck_assert_msg(e->connected, "%s: frame before connected", e->name);
    const h_exp *x;
    check_hdr(e, rx, &x);
    uint64_t id = rx->hdr.id;
    int assigned = e->assign_pending && e->assign_id == id;
    const uint8_t *data = rx->data;
    if (!rx->data && !(x->len == 0 && !assigned)) {
        /* received straight into the vector rx_assign gave */
        ck_assert_msg(assigned && !e->assign_declined,
                      "%s: frame %llu without data, but no vector was given", e->name,
                      (unsigned long long)id);
        ck_assert_ptr_eq(rx->dst, e->aiov);
        ck_assert_uint_eq(rx->dst_count, 3);
        size_t off = 0;
        for (int i = 0; i < 3; i++) {
            if (memcmp(e->aiov[i].base, H_PAT + x->off + off, e->aiov[i].len) != 0)
                ck_abort_msg("%s: frame %llu: assigned segment %d differs", e->name,
                             (unsigned long long)id, i);
            off += e->aiov[i].len;
        }
        ck_assert_uint_eq(off, x->len);
        check_gaps(e);
        e->direct++;
    } else {
        if (assigned)
            ck_assert_msg(e->assign_declined,
                          "%s: frame %llu delivered in place though a vector was given", e->name,
                          (unsigned long long)id);
        if (x->len)
            check_data(e, rx, x, data);
        e->inplace++;
    }
    px_tp_caps caps;
    h_caps(&caps);
    if (x->len > h_inline(e->side) && (caps.flags & PX_TP_CAP_RX_DIRECT))
        ck_assert_msg(assigned, "%s: frame %llu of %u bytes came without rx_assign", e->name,
                      (unsigned long long)id, x->len);
    if (!assigned)
        ck_assert_ptr_null(rx->owner_cookie);
    else
        ck_assert_ptr_eq(rx->owner_cookie, (void *)(uintptr_t)(0x5000 + id));
    /* `more`: frames already received after this one. There cannot be more
     * than were sent (a raw peer's garbage may count: the hint is of
     * records received, and a bad one ends the conn instead), and the
     * count goes down by one at most per frame. */
    ck_assert_msg(e->raw_peer || (uint64_t)rx->more <= e->nexp - id - 1,
                  "%s: frame %llu says %u more follow, only %llu were sent", e->name,
                  (unsigned long long)id, rx->more, (unsigned long long)(e->nexp - id - 1));
    if (e->frames && e->prev_more)
        ck_assert_msg(rx->more + 1 >= e->prev_more,
                      "%s: frame %llu says %u more, the one before said %u", e->name,
                      (unsigned long long)id, rx->more, e->prev_more);
    e->prev_more = rx->more;
    if (rx->more > e->max_more)
        e->max_more = rx->more;
    e->assign_pending = 0;
    e->next_id++;
    e->frames++;
    if (e->on_frame)
        e->on_frame(e, rx, data);
    if (!e->closed)
        maybe_close(e, H_UP_FRAME);
}

static void up_send_done(void *self, px_tp_send *s, int status)
{
    h_ep *e = self;
    up_enter(e, H_UP_SEND_DONE, "send_done");
    h_msg *m = (h_msg *)(void *)s;
    ck_assert_msg(m->from == e, "%s: send_done for another conn's send", e->name);
    ck_assert_msg(m->state == H_M_QUEUED,
                  "%s: send_done for frame %llu that is not queued (state %d: sent %d, done %d, "
                  "returned %d, refused %d)",
                  e->name, (unsigned long long)s->hdr.id, m->state, H_M_SENT, H_M_DONE,
                  H_M_RETURNED, H_M_REFUSED);
    ck_assert_msg(m->qseq == e->ndone + e->nreturned,
                  "%s: send_done out of order: frame %llu queued as #%llu, #%llu expected", e->name,
                  (unsigned long long)s->hdr.id, (unsigned long long)m->qseq,
                  (unsigned long long)(e->ndone + e->nreturned));
    ck_assert_int_eq(s->status, status);
    ck_assert_int_le(status, 0);
    ck_assert_ptr_null(s->tp_bounce);
    m->state = H_M_DONE;
    m->status = status;
    e->ndone++;
    e->last_done_status = status;
    if (status)
        e->done_errs++;
    if (e->on_send_done)
        e->on_send_done(e, m);
    if (!e->closed)
        maybe_close(e, H_UP_SEND_DONE);
}

static void up_room(void *self)
{
    h_ep *e = self;
    up_enter(e, H_UP_ROOM, "room");
    ck_assert_msg(e->want_room, "%s: room without a send refused with -PX_EAGAIN", e->name);
    e->want_room = 0;
    e->rooms++;
    if (e->on_room)
        e->on_room(e);
    if (!e->closed)
        maybe_close(e, H_UP_ROOM);
}

static void up_error(void *self, int reason)
{
    h_ep *e = self;
    up_enter(e, H_UP_ERROR, "error");
    ck_assert_msg(e->errors == 0, "%s: a second error", e->name);
    ck_assert_int_lt(reason, 0);
    e->errors++;
    e->err_reason = reason;
    check_gaps(e);
    maybe_close(e, H_UP_ERROR);
}

static void up_disconnected(void *self, int reason)
{
    h_ep *e = self;
    up_enter(e, H_UP_DISC, "disconnected");
    ck_assert_int_lt(reason, 0);
    ck_assert_msg(h_all_finished(e),
                  "%s: disconnected with %llu queued sends not finished by send_done", e->name,
                  (unsigned long long)(e->nqueued - e->ndone - e->nreturned));
    if (e->errors)
        ck_assert_int_eq(reason, e->err_reason);
    e->disconnected++;
    e->disc_reason = reason;
    check_gaps(e);
    e->assign_pending = 0;
    maybe_close(e, H_UP_DISC);
}

static const px_tp_upcalls h_upcalls = {
    .connected = up_connected,
    .rx_assign = up_rx_assign,
    .frame = up_frame,
    .send_done = up_send_done,
    .room = up_room,
    .error = up_error,
    .disconnected = up_disconnected,
};

/* ---- listeners ------------------------------------------------------------------ */

static void lst_new_conn(void *self, px_tp_conn *c)
{
    h_lst *L = self;
    ck_assert_msg(h_in_op == 0, "new_conn from inside a call into the transport");
    ck_assert_msg(h_running == H_CTX[H_SRV], "new_conn while the server context was not running");
    ck_assert_msg(!L->closed, "new_conn after listener_close");
    ck_assert_ptr_nonnull(c);
    L->offered++;
    if (L->mode == H_ACCEPT) {
        ck_assert_int_lt(L->naccepted, H_MAX_HELD);
        h_ep *e = h_ep_new("srv", H_SRV);
        e->assign_mode = L->assign_mode;
        ck_assert_int_eq(h_accept(e, c), 0);
        L->accepted[L->naccepted++] = e;
    } else if (L->mode == H_REJECT) {
        h_reject(c, -PX_EREJECTED);
    } else {
        ck_assert_int_lt(L->nheld, H_MAX_HELD);
        L->held[L->nheld++] = c;
    }
    if (L->close_in_new)
        h_listener_close(L);
}

h_lst *h_lst_new(int mode)
{
    for (int i = 0; i < H_MAX_LST; i++) {
        if (!h_lsts[i].in_use) {
            h_lst *L = &h_lsts[i];
            memset(L, 0, sizeof *L);
            L->in_use = 1;
            L->mode = mode;
            return L;
        }
    }
    ck_abort_msg("out of listeners");
    return NULL;
}

void h_listen(h_lst *L, const char *tmpl)
{
    char uri[1100];
    h_uri(tmpl, uri, sizeof uri);
    px_uri u;
    ck_assert_int_eq(px_uri_parse(uri, &u), 0);
    px_tp_listen_owner o = {lst_new_conn, L};
    h_in_op++;
    int rc = H_T->listen(H_TP[H_SRV]->tp, &u, &o, &L->l);
    h_in_op--;
    ck_assert_msg(rc == 0, "listen %s: %s", uri, px_strerror(rc));
    h_in_op++;
    int n = H_T->listener_uri(L->l, L->uri, sizeof L->uri);
    h_in_op--;
    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(n, (int)strlen(L->uri));
}

static void null_new_conn(void *self, px_tp_conn *c)
{
    ck_abort_msg("new_conn on a listener closed at once");
}

int h_listen_rc(const char *uri)
{
    px_uri u;
    int rc = px_uri_parse(uri, &u);
    if (rc)
        return rc;
    px_tp_listener *l = NULL;
    px_tp_listen_owner o = {null_new_conn, NULL};
    h_in_op++;
    rc = H_T->listen(H_TP[H_SRV]->tp, &u, &o, &l);
    if (rc == 0)
        H_T->listener_close(l);
    h_in_op--;
    return rc;
}

void h_listener_close(h_lst *L)
{
    ck_assert(!L->closed);
    L->closed = 1;
    h_in_op++;
    H_T->listener_close(L->l);
    h_in_op--;
}

/* ---- conns ------------------------------------------------------------------------ */

int h_connect_rc(h_ep *e, const char *uri)
{
    px_uri u;
    int rc = px_uri_parse(uri, &u);
    if (rc)
        return rc;
    px_tp_owner o = h_owner(e);
    e->is_client = 1;
    uint64_t before = e->upcalls;
    h_in_op++;
    rc = H_T->connect(H_TP[e->side]->tp, &u, &o, &e->c);
    h_in_op--;
    ck_assert_uint_eq(e->upcalls, before); /* never from inside connect() */
    if (rc)
        e->c = NULL;
    return rc;
}

void h_connect(h_ep *e, const char *uri)
{
    int rc = h_connect_rc(e, uri);
    ck_assert_msg(rc == 0, "connect %s: %s", uri, px_strerror(rc));
    ck_assert_ptr_nonnull(e->c);
}

int h_accept(h_ep *e, px_tp_conn *c)
{
    px_tp_owner o = h_owner(e);
    h_in_op++;
    int rc = H_T->accept(c, &o);
    h_in_op--;
    if (rc == 0)
        e->c = c;
    return rc;
}

void h_reject(px_tp_conn *c, int reason)
{
    h_in_op++;
    H_T->reject(c, reason);
    h_in_op--;
}

void h_pair_open(h_pair *p, const char *tmpl)
{
    p->L = h_lst_new(H_ACCEPT);
    h_listen(p->L, tmpl);
    p->cli = h_ep_new("cli", H_CLI);
    h_connect(p->cli, p->L->uri);
    H_RUN_UNTIL(p->cli->connected && p->L->naccepted == 1);
    p->srv = p->L->accepted[0];
}

void h_close(h_ep *e)
{
    ck_assert_msg(!e->closed, "%s closed twice", e->name);
    ck_assert_ptr_nonnull(e->c);
    px_tp_fifo back = {0};
    uint64_t before = e->upcalls;
    e->closed = 1;
    h_in_op++;
    H_T->close(e->c, &back);
    h_in_op--;
    ck_assert_msg(e->upcalls == before, "%s: an upcall from inside close", e->name);
    px_tp_send *s;
    while ((s = px_tp_fifo_pop(&back))) {
        h_msg *m = (h_msg *)(void *)s;
        ck_assert_msg(m->from == e, "%s: close returned another conn's send", e->name);
        ck_assert_msg(m->state == H_M_QUEUED,
                      "%s: close returned frame %llu that was not queued and unfinished (state "
                      "%d)",
                      e->name, (unsigned long long)s->hdr.id, m->state);
        ck_assert_msg(m->qseq == e->ndone + e->nreturned,
                      "%s: close returned frame %llu out of order", e->name,
                      (unsigned long long)s->hdr.id);
        ck_assert_msg(s->status == -PX_ECLOSED || s->status == 0,
                      "%s: close returned frame %llu with status %d", e->name,
                      (unsigned long long)s->hdr.id, s->status);
        ck_assert_ptr_null(s->tp_bounce);
        m->state = H_M_RETURNED;
        m->status = s->status;
        e->nreturned++;
    }
    ck_assert_msg(h_all_finished(e), "%s: %llu queued sends neither completed nor returned",
                  e->name, (unsigned long long)(e->nqueued - e->ndone - e->nreturned));
}

void h_rx_pause(h_ep *e, int paused)
{
    uint64_t before = e->upcalls;
    h_in_op++;
    H_T->rx_pause(e->c, paused);
    h_in_op--;
    ck_assert_uint_eq(e->upcalls, before);
}

/* ---- frames -------------------------------------------------------------------------- */

h_msg *h_msg_new(h_ep *from, h_ep *to, uint32_t len, unsigned nseg)
{
    ck_assert_uint_le(len, H_MAX_FRAME);
    ck_assert_uint_ge(nseg, 1);
    ck_assert_uint_le(nseg, H_MAX_SEG);
    h_msg *m = calloc(1, sizeof *m);
    ck_assert_ptr_nonnull(m);
    m->all_next = h_all;
    h_all = m;
    m->from = from;
    m->to = to;
    uint64_t id = from->tx_next_id;
    m->exp = h_exp_make(from->salt, id, len);
    m->s.hdr = (px_frame_hdr){.type = m->exp.type,
                              .flags = m->exp.flags,
                              .hdr_len = m->exp.hdr_len,
                              .channel = m->exp.channel,
                              .data_len = len,
                              .id = id,
                              .aux = m->exp.aux};
    m->s.app_hdr = m->exp.hdr_len ? H_PAT + m->exp.hoff : NULL;
    const uint8_t *d = H_PAT + m->exp.off;
    size_t off = 0;
    for (unsigned i = 0; i < nseg; i++) {
        size_t n = i + 1 == nseg ? len - off : len / (2u << i);
        /* An empty segment may come without a base. */
        m->iov[i] = (px_iov){n || i % 2 == 0 ? (void *)(d + off) : NULL, n, NULL};
        off += n;
    }
    m->s.data = m->iov;
    m->s.data_count = nseg;
    m->s.cookie = m;
    return m;
}

void h_msg_own(h_msg *m)
{
    uint32_t len = m->s.hdr.data_len;
    m->own = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(m->own);
    memcpy(m->own, H_PAT + m->exp.off, len);
    size_t off = 0;
    for (uint32_t i = 0; i < m->s.data_count; i++) {
        if (m->iov[i].base)
            m->iov[i].base = m->own + off;
        off += m->iov[i].len;
    }
    if (m->s.hdr.hdr_len) {
        m->own_hdr = malloc(m->s.hdr.hdr_len);
        ck_assert_ptr_nonnull(m->own_hdr);
        memcpy(m->own_hdr, m->s.app_hdr, m->s.hdr.hdr_len);
        m->s.app_hdr = m->own_hdr;
    }
}

int h_in_fifo(const h_ep *e, const px_tp_send *s)
{
    for (const px_tp_send *q = e->c->sends.head; q; q = q->tp_next)
        if (q == s)
            return 1;
    return 0;
}

int h_send(h_msg *m)
{
    h_ep *e = m->from;
    ck_assert_ptr_nonnull(e->c);
    ck_assert(!e->closed);
    ck_assert(m->state == H_M_NEW || m->state == H_M_REFUSED);
    uint64_t before = e->upcalls;
    h_in_op++;
    int rc = H_T->send(e->c, &m->s);
    h_in_op--;
    ck_assert_msg(e->upcalls == before, "%s: an upcall from inside send", e->name);
    ck_assert_msg(rc == PX_TP_SENT || rc == PX_TP_QUEUED || rc < 0, "send returned %d", rc);
    if (rc >= 0) {
        ck_assert_uint_eq(m->s.hdr.id, e->tx_next_id);
        e->tx_next_id++;
        if (m->to)
            h_expect(m->to, m->s.hdr.id, &m->exp);
    }
    if (rc == PX_TP_SENT) {
        m->state = H_M_SENT;
        e->nsent++;
        ck_assert_msg(!h_in_fifo(e, &m->s), "%s: a send that returned PX_TP_SENT is queued",
                      e->name);
    } else if (rc == PX_TP_QUEUED) {
        m->state = H_M_QUEUED;
        m->qseq = e->nqueued++;
    } else {
        m->state = H_M_REFUSED;
        e->nrefused++;
        if (rc == -PX_EAGAIN)
            e->want_room = 1;
        /* Nothing was taken. */
        ck_assert_msg(!h_in_fifo(e, &m->s), "%s: a refused send (%s) is queued", e->name,
                      px_errname(rc));
        ck_assert_ptr_null(m->s.tp_bounce);
    }
    return rc;
}

int h_send_wait(h_ep *from, h_ep *to, uint32_t len, unsigned nseg)
{
    for (;;) {
        h_msg *m = h_msg_new(from, to, len, nseg);
        int rc = h_send(m);
        if (rc != -PX_EAGAIN) {
            ck_assert_msg(rc >= 0, "%s: send of %u bytes: %s", from->name, len, px_errname(rc));
            return rc;
        }
        int r = from->rooms;
        H_RUN_UNTIL(from->rooms > r || from->disconnected || from->closed);
        ck_assert(!from->disconnected && !from->closed);
    }
}

/* ---- echo -------------------------------------------------------------------------------- */

static int echo_send(h_echo *q, h_ep *e, h_msg *m, int resend)
{
    return q->send ? q->send(q, e, m, resend) : h_send(m);
}

static void echo_keep(h_echo *q, h_msg *m)
{
    ck_assert_uint_lt(q->tail - q->head, H_ECHO_MAX);
    h_msg_own(m);
    q->backlog[q->tail++ % H_ECHO_MAX] = m;
    q->copies++;
}

static void echo_room(h_ep *e)
{
    h_echo *q = e->user;
    while (q->head != q->tail) {
        int rc = echo_send(q, e, q->backlog[q->head % H_ECHO_MAX], 1);
        if (rc == -PX_EAGAIN)
            return;
        ck_assert_int_ge(rc, 0);
        q->head++;
    }
}

static void echo_frame(h_ep *e, const px_tp_rx *rx, const uint8_t *data)
{
    h_echo *q = e->user;
    h_msg *m = h_msg_new(e, q->peer, rx->hdr.data_len, 1);
    m->exp = e->exp[rx->hdr.id];
    m->s.hdr = rx->hdr;
    m->s.app_hdr = rx->app_hdr;
    m->iov[0].base = (void *)data;
    if (q->head != q->tail) { /* behind the refused ones */
        echo_keep(q, m);
        return;
    }
    int rc = echo_send(q, e, m, 0);
    if (rc == -PX_EAGAIN) {
        echo_keep(q, m);
        return;
    }
    ck_assert_int_ge(rc, 0);
    if (rc == PX_TP_SENT)
        q->sent++;
    else
        q->queued++;
}

void h_echo_start(h_echo *q, h_ep *e, h_ep *peer)
{
    int (*send)(h_echo *, h_ep *, h_msg *, int) = q->send;
    void *user = q->user;
    memset(q, 0, sizeof *q);
    q->send = send;
    q->user = user;
    q->peer = peer;
    e->user = q;
    e->on_frame = echo_frame;
    e->on_room = echo_room;
}

int h_echo_idle(const h_echo *q)
{
    return q->head == q->tail;
}

/* ---- raw peers ------------------------------------------------------------------------- */

int h_raw_ok(const char *scheme)
{
    return strcmp(scheme, "tcp") == 0 || strcmp(scheme, "unix") == 0 ||
           strcmp(scheme, "shm") == 0 || (strcmp(scheme, "rdma") == 0 && PX_HAVE_RDMA);
}

typedef struct dial_job {
    const char *uri;
    raw_link *l;
    int done;
} dial_job;

static void *dial_thread(void *arg)
{
    dial_job *j = arg;
    j->l = raw_dial(j->uri);
    __atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

struct raw_link *h_raw_dial(const char *uri)
{
    dial_job j = {.uri = uri};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, dial_thread, &j), 0);
    uint64_t end = h_now_ms() + h_timeout_ms();
    while (!__atomic_load_n(&j.done, __ATOMIC_ACQUIRE) && h_now_ms() < end)
        h_run_both();
    pthread_join(t, NULL);
    ck_assert_msg(j.l != NULL, "raw_dial %s failed", uri);
    return j.l;
}

size_t h_raw_frame(uint8_t *out, unsigned salt, uint64_t id, uint32_t len, h_exp *x)
{
    *x = h_exp_make(salt, id, len);
    x->channel = 0; /* raw_frame_hdr writes neither */
    x->flags = 0;
    raw_frame_hdr(out, PX_WIRE_VERSION, x->type, x->hdr_len, len, id, x->aux);
    memcpy(out + PX_FRAME_HDR_LEN, H_PAT + x->hoff, x->hdr_len);
    memcpy(out + PX_FRAME_HDR_LEN + x->hdr_len, H_PAT + x->off, len);
    return PX_FRAME_HDR_LEN + x->hdr_len + len;
}
