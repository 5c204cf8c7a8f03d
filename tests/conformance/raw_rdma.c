/* The raw peer over rdma:// (see raw_link.h): an RC queue pair set up
 * with rdma_cm and plexus's setup data, that sends each frame as one SEND
 * behind the transport's 8-byte header (transports/rdma/rdma.h) and reads
 * the server's SENDs the same way, returning credits as it goes. Blocking,
 * test code: it trusts the server and fails loudly (NULL / -1). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "raw_rdma.h"

#if PX_HAVE_RDMA
#include <arpa/inet.h>
#include <endian.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "transports/rdma/rdma.h"

#define RR_BUF   (64u << 10) + 1024u
#define RR_NRECV 32u
#define RR_NSLOT 8u
#define RR_SPARE RDMA_SPARE

struct raw_rdma {
    struct rdma_event_channel *ch;
    struct rdma_cm_id *id;
    struct ibv_pd *pd;
    struct ibv_cq *cq;
    uint8_t *mem; /* RR_NRECV receive buffers, then RR_NSLOT send slots */
    struct ibv_mr *mr;
    uint32_t peer_credits, peer_buf, owed;
    uint64_t sseq;
    int gone;
    /* receives seen while waiting for a send completion, for raw_rdma_recv */
    uint32_t stash_buf[RR_NRECV], stash_len[RR_NRECV], nstash;
};

/* listeners: raw_listen() hands out the channel fd as the handle */
static struct {
    int fd;
    struct rdma_event_channel *ch;
    struct rdma_cm_id *id;
} lst[8];

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int parse(const char *uri, struct sockaddr_storage *ss)
{
    char host[256];
    int port;
    memset(ss, 0, sizeof(*ss));
    if (sscanf(uri, "rdma://[%255[^]]]:%d", host, &port) == 2) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        return inet_pton(AF_INET6, host, &a->sin6_addr) == 1 ? 0 : -1;
    }
    if (sscanf(uri, "rdma://%255[^:]:%d", host, &port) == 2) {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        return inet_pton(AF_INET, host, &a->sin_addr) == 1 ? 0 : -1;
    }
    return -1;
}

/* The next CM event on ch within ms, copied (private data too) and acked. */
static int next_event(struct rdma_event_channel *ch, int ms, struct rdma_cm_event *out,
                      uint8_t *priv, size_t *priv_len)
{
    struct pollfd pfd = {.fd = ch->fd, .events = POLLIN};
    if (poll(&pfd, 1, ms) != 1)
        return -1;
    struct rdma_cm_event *e;
    if (rdma_get_cm_event(ch, &e) < 0)
        return -1;
    *out = *e;
    if (priv) {
        size_t n = e->param.conn.private_data ? e->param.conn.private_data_len : 0;
        if (n > 64)
            n = 64;
        memcpy(priv, e->param.conn.private_data, n);
        *priv_len = n;
    }
    rdma_ack_cm_event(e);
    return 0;
}

static int expect_event(struct rdma_event_channel *ch, enum rdma_cm_event_type want, int ms,
                        struct rdma_cm_event *ev, uint8_t *priv, size_t *plen)
{
    if (next_event(ch, ms, ev, priv, plen) < 0)
        return -1;
    return ev->event == want ? 0 : -1;
}

static uint8_t *rbuf(raw_rdma *r, uint32_t i)
{
    return r->mem + (size_t)i * RR_BUF;
}

static uint8_t *slot(raw_rdma *r, uint64_t i)
{
    return r->mem + ((size_t)RR_NRECV + i % RR_NSLOT) * RR_BUF;
}

static int post_recv(raw_rdma *r, uint32_t i)
{
    struct ibv_sge sg = {.addr = (uintptr_t)rbuf(r, i), .length = RR_BUF, .lkey = r->mr->lkey};
    struct ibv_recv_wr wr = {.wr_id = i, .sg_list = &sg, .num_sge = 1}, *bad;
    return ibv_post_recv(r->id->qp, &wr, &bad) ? -1 : 0;
}

static int setup_qp(raw_rdma *r)
{
    r->pd = ibv_alloc_pd(r->id->verbs);
    r->cq = r->pd ? ibv_create_cq(r->id->verbs, 2 * (RR_NRECV + RR_NSLOT), NULL, NULL, 0) : NULL;
    if (!r->cq)
        return -1;
    struct ibv_qp_init_attr a = {.send_cq = r->cq,
                                 .recv_cq = r->cq,
                                 .qp_type = IBV_QPT_RC,
                                 .cap = {.max_send_wr = RR_NSLOT,
                                         .max_recv_wr = RR_NRECV,
                                         .max_send_sge = 1,
                                         .max_recv_sge = 1}};
    if (rdma_create_qp(r->id, r->pd, &a) < 0)
        return -1;
    size_t len = (size_t)(RR_NRECV + RR_NSLOT) * RR_BUF;
    if (posix_memalign((void **)&r->mem, 4096, len) != 0)
        return -1;
    r->mr = ibv_reg_mr(r->pd, r->mem, len, IBV_ACCESS_LOCAL_WRITE);
    if (!r->mr)
        return -1;
    for (uint32_t i = 0; i < RR_NRECV; i++)
        if (post_recv(r, i) < 0)
            return -1;
    return 0;
}

static struct rdma_conn_param param(rdma_priv *p)
{
    *p = (rdma_priv){.magic = htole32(RDMA_PRIV_MAGIC),
                     .version = RDMA_PRIV_VER,
                     .credits = htole32(RR_NRECV - RR_SPARE),
                     .buf_len = htole32(RR_BUF)};
    return (struct rdma_conn_param){.private_data = p,
                                    .private_data_len = sizeof(*p),
                                    .responder_resources = 1,
                                    .initiator_depth = 1,
                                    .retry_count = 7,
                                    .rnr_retry_count = 7};
}

static int take_priv(raw_rdma *r, const uint8_t *priv, size_t len)
{
    rdma_priv p;
    if (len < sizeof(p))
        return -1;
    memcpy(&p, priv, sizeof(p));
    if (le32toh(p.magic) != RDMA_PRIV_MAGIC)
        return -1;
    r->peer_credits = le32toh(p.credits);
    r->peer_buf = le32toh(p.buf_len);
    return 0;
}

raw_rdma *raw_rdma_dial(const char *uri)
{
    struct sockaddr_storage ss;
    if (parse(uri, &ss) < 0)
        return NULL;
    raw_rdma *r = calloc(1, sizeof(*r));
    struct rdma_cm_event ev;
    uint8_t priv[64];
    size_t plen = 0;
    rdma_priv p;
    r->ch = rdma_create_event_channel();
    if (!r->ch || rdma_create_id(r->ch, &r->id, NULL, RDMA_PS_TCP) < 0)
        goto fail;
    if (rdma_resolve_addr(r->id, NULL, (struct sockaddr *)&ss, 5000) < 0 ||
        expect_event(r->ch, RDMA_CM_EVENT_ADDR_RESOLVED, 10000, &ev, NULL, NULL) < 0 ||
        rdma_resolve_route(r->id, 5000) < 0 ||
        expect_event(r->ch, RDMA_CM_EVENT_ROUTE_RESOLVED, 10000, &ev, NULL, NULL) < 0 ||
        setup_qp(r) < 0)
        goto fail;
    struct rdma_conn_param cp = param(&p);
    if (rdma_connect(r->id, &cp) < 0 ||
        expect_event(r->ch, RDMA_CM_EVENT_ESTABLISHED, 20000, &ev, priv, &plen) < 0 ||
        take_priv(r, priv, plen) < 0)
        goto fail;
    return r;
fail:
    raw_rdma_close(r);
    return NULL;
}

/* Has the server gone (disconnect event)? Non-blocking. */
static void check_cm(raw_rdma *r)
{
    struct rdma_cm_event ev;
    while (!r->gone && next_event(r->ch, 0, &ev, NULL, NULL) == 0)
        if (ev.event == RDMA_CM_EVENT_DISCONNECTED)
            r->gone = 1;
}

/* One completion within ms: 1 and *wc, 0 none, -1 the link failed. */
static int poll_one(raw_rdma *r, struct ibv_wc *wc, int ms)
{
    uint64_t deadline = now_ms() + (uint64_t)ms;
    for (;;) {
        int n = ibv_poll_cq(r->cq, 1, wc);
        if (n < 0)
            return -1;
        if (n == 1)
            return wc->status == IBV_WC_SUCCESS ? 1 : -1;
        check_cm(r);
        if (r->gone || now_ms() >= deadline)
            return 0;
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
}

static void took_recv(raw_rdma *r, const struct ibv_wc *wc)
{
    uint8_t *p = rbuf(r, (uint32_t)wc->wr_id);
    uint16_t cr;
    memcpy(&cr, p + 2, 2);
    r->peer_credits += le16toh(cr);
}

static int post_send(raw_rdma *r, unsigned kind, const void *bytes, size_t len)
{
    if (RDMA_WIRE_HDR + len > r->peer_buf || RDMA_WIRE_HDR + len > RR_BUF)
        return -1;
    uint8_t *s = slot(r, r->sseq);
    memset(s, 0, RDMA_WIRE_HDR);
    s[0] = (uint8_t)kind;
    uint16_t cr = htole16((uint16_t)r->owed);
    memcpy(s + 2, &cr, 2);
    r->owed = 0;
    if (len)
        memcpy(s + RDMA_WIRE_HDR, bytes, len);
    struct ibv_sge sg = {
        .addr = (uintptr_t)s, .length = (uint32_t)(RDMA_WIRE_HDR + len), .lkey = r->mr->lkey};
    struct ibv_send_wr wr = {.wr_id = 1ull << 63,
                             .sg_list = &sg,
                             .num_sge = 1,
                             .opcode = IBV_WR_SEND,
                             .send_flags = IBV_SEND_SIGNALED},
                       *bad;
    if (ibv_post_send(r->id->qp, &wr, &bad))
        return -1;
    r->sseq++;
    /* Wait for it, keeping whatever arrives meanwhile. */
    for (;;) {
        struct ibv_wc wc;
        if (poll_one(r, &wc, 10000) != 1)
            return -1;
        if (wc.wr_id == 1ull << 63)
            return 0;
        took_recv(r, &wc);
        r->stash_buf[r->nstash] = (uint32_t)wc.wr_id;
        r->stash_len[r->nstash++] = wc.byte_len;
    }
}

int raw_rdma_send(raw_rdma *r, const void *bytes, size_t len)
{
    if (r->gone)
        return -1;
    uint64_t deadline = now_ms() + 10000;
    while (r->peer_credits < 1) { /* wait for the server to return some */
        struct ibv_wc wc;
        if (now_ms() > deadline || poll_one(r, &wc, 100) < 0)
            return -1;
        if (wc.wr_id < RR_NRECV) {
            took_recv(r, &wc);
            r->stash_buf[r->nstash] = (uint32_t)wc.wr_id;
            r->stash_len[r->nstash++] = wc.byte_len;
        }
    }
    r->peer_credits--;
    return post_send(r, RW_DATA, bytes, len);
}

int raw_rdma_send_rts(raw_rdma *r, const uint8_t *frame, size_t hdr_len, uint64_t addr,
                      uint32_t rkey)
{
    /* frame: a 32-byte header (data_len set, ext_len 0) then hdr_len bytes
     * of application header; the descriptor names one remote segment. */
    uint32_t data_len;
    memcpy(&data_len, frame + 12, 4);
    data_len = le32toh(data_len);
    size_t len = 32 + 24 + hdr_len;
    uint8_t *m = malloc(len);
    memcpy(m, frame, 32);
    m[28] = 24; /* ext_len */
    m[29] = 0;
    uint32_t v = htole32(1);
    memcpy(m + 32, &v, 4); /* one segment */
    v = htole32(0);        /* the rendezvous seq */
    memcpy(m + 36, &v, 4);
    uint64_t a = htole64(addr);
    memcpy(m + 40, &a, 8);
    v = htole32(data_len);
    memcpy(m + 48, &v, 4);
    v = htole32(rkey);
    memcpy(m + 52, &v, 4);
    memcpy(m + 56, frame + 32, hdr_len);
    int rc = -1;
    if (!r->gone && r->peer_credits > 0) {
        r->peer_credits--;
        rc = post_send(r, RW_RTS, m, len);
    }
    free(m);
    return rc;
}

/* A received buffer handled: post it again and owe the server its credit. */
static int recycle(raw_rdma *r, uint32_t i, int credit)
{
    if (post_recv(r, i) < 0)
        return -1;
    r->owed += credit ? 1u : 0u;
    if (r->owed >= 8)
        return post_send(r, RW_CREDIT, NULL, 0);
    return 0;
}

long raw_rdma_recv(raw_rdma *r, void *buf, size_t cap, int ms)
{
    uint64_t deadline = now_ms() + (uint64_t)ms;
    for (;;) {
        uint32_t i, len;
        if (r->nstash) {
            i = r->stash_buf[0];
            len = r->stash_len[0];
            r->nstash--;
            memmove(r->stash_buf, r->stash_buf + 1, r->nstash * sizeof(r->stash_buf[0]));
            memmove(r->stash_len, r->stash_len + 1, r->nstash * sizeof(r->stash_len[0]));
        } else {
            struct ibv_wc wc;
            int left = (int)(deadline - now_ms());
            int rc = poll_one(r, &wc, left > 0 ? left : 0);
            if (rc < 0 || r->gone)
                return 0;
            if (rc == 0)
                return -1;
            if (wc.wr_id >= RR_NRECV)
                continue;
            took_recv(r, &wc);
            i = (uint32_t)wc.wr_id;
            len = wc.byte_len;
        }
        uint8_t *p = rbuf(r, i);
        unsigned kind = p[0];
        if (kind == RW_CREDIT || kind == RW_DONE || len <= RDMA_WIRE_HDR) {
            if (recycle(r, i, kind != RW_CREDIT) < 0)
                return 0;
            continue;
        }
        size_t n = len - RDMA_WIRE_HDR;
        if (n > cap)
            return -1;
        memcpy(buf, p + RDMA_WIRE_HDR, n);
        if (recycle(r, i, 1) < 0)
            return 0;
        return (long)n;
    }
}

int raw_rdma_wait_closed(raw_rdma *r, int ms)
{
    uint64_t deadline = now_ms() + (uint64_t)ms;
    uint8_t *buf = malloc(RR_BUF);
    int closed = 0;
    while (!closed && now_ms() < deadline) {
        long n = raw_rdma_recv(r, buf, RR_BUF, (int)(deadline - now_ms()));
        closed = n == 0 || r->gone;
    }
    free(buf);
    return closed;
}

void raw_rdma_close(raw_rdma *r)
{
    if (!r)
        return;
    if (r->id) {
        if (r->id->qp) {
            rdma_disconnect(r->id);
            rdma_destroy_qp(r->id);
        }
        rdma_destroy_id(r->id);
    }
    if (r->mr)
        ibv_dereg_mr(r->mr);
    free(r->mem);
    if (r->cq)
        ibv_destroy_cq(r->cq);
    if (r->pd)
        ibv_dealloc_pd(r->pd);
    if (r->ch)
        rdma_destroy_event_channel(r->ch);
    free(r);
}

int raw_rdma_listen(const char *uri, char *bound, size_t len)
{
    struct sockaddr_storage ss;
    unsigned k = 0;
    while (k < 8 && lst[k].ch)
        k++;
    if (k == 8 || parse(uri, &ss) < 0)
        return -1;
    lst[k].ch = rdma_create_event_channel();
    if (!lst[k].ch || rdma_create_id(lst[k].ch, &lst[k].id, NULL, RDMA_PS_TCP) < 0 ||
        rdma_bind_addr(lst[k].id, (struct sockaddr *)&ss) < 0 || rdma_listen(lst[k].id, 16) < 0)
        return -1;
    char host[64];
    struct sockaddr *a = rdma_get_local_addr(lst[k].id);
    if (a->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)a)->sin6_addr, host, sizeof(host));
        snprintf(bound, len, "rdma://[%s]:%d", host, ntohs(rdma_get_src_port(lst[k].id)));
    } else {
        inet_ntop(AF_INET, &((struct sockaddr_in *)a)->sin_addr, host, sizeof(host));
        snprintf(bound, len, "rdma://%s:%d", host, ntohs(rdma_get_src_port(lst[k].id)));
    }
    lst[k].fd = lst[k].ch->fd;
    return lst[k].fd;
}

static int find_listener(int fd)
{
    for (int k = 0; k < 8; k++)
        if (lst[k].ch && lst[k].fd == fd)
            return k;
    return -1;
}

int raw_rdma_is_listener(int fd)
{
    return find_listener(fd) >= 0;
}

raw_rdma *raw_rdma_accept(int fd, int ms)
{
    int k = find_listener(fd);
    struct rdma_cm_event ev;
    uint8_t priv[64];
    size_t plen = 0;
    if (k < 0 || expect_event(lst[k].ch, RDMA_CM_EVENT_CONNECT_REQUEST, ms, &ev, priv, &plen) < 0)
        return NULL;
    raw_rdma *r = calloc(1, sizeof(*r));
    r->id = ev.id;
    r->ch = rdma_create_event_channel();
    rdma_priv p;
    if (!r->ch || rdma_migrate_id(r->id, r->ch) < 0 || take_priv(r, priv, plen) < 0 ||
        setup_qp(r) < 0)
        goto fail;
    struct rdma_conn_param cp = param(&p);
    if (rdma_accept(r->id, &cp) < 0 ||
        expect_event(r->ch, RDMA_CM_EVENT_ESTABLISHED, 20000, &ev, NULL, NULL) < 0)
        goto fail;
    return r;
fail:
    raw_rdma_close(r);
    return NULL;
}

void raw_rdma_listen_close(int fd)
{
    int k = find_listener(fd);
    if (k < 0)
        return;
    rdma_destroy_id(lst[k].id);
    rdma_destroy_event_channel(lst[k].ch);
    lst[k].ch = NULL;
    lst[k].id = NULL;
}

#else /* no rdma-core: no rdma:// peer */
int raw_rdma_send_rts(raw_rdma *r, const uint8_t *frame, size_t hdr_len, uint64_t addr,
                      uint32_t rkey)
{
    return -1;
}
raw_rdma *raw_rdma_dial(const char *uri)
{
    return NULL;
}
int raw_rdma_send(raw_rdma *r, const void *bytes, size_t len)
{
    return -1;
}
long raw_rdma_recv(raw_rdma *r, void *buf, size_t cap, int ms)
{
    return -1;
}
int raw_rdma_wait_closed(raw_rdma *r, int ms)
{
    return 0;
}
void raw_rdma_close(raw_rdma *r) {}
int raw_rdma_listen(const char *uri, char *bound, size_t len)
{
    return -1;
}
int raw_rdma_is_listener(int fd)
{
    return 0;
}
raw_rdma *raw_rdma_accept(int fd, int ms)
{
    return NULL;
}
void raw_rdma_listen_close(int fd) {}
#endif
