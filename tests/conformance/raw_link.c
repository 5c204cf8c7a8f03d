/* The raw peer; see raw_link.h. Test code: it trusts the server it talks
 * to and fails loudly (returns -1/NULL) rather than recovering. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "raw_link.h"
#include "raw_rdma.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <plexus/plexus.h>

#include "session/handshake.h"
#include "transports/shm/shm.h"
#include "transports/shm/shm_rdv.h"

struct raw_link {
    raw_rdma *rdma; /* rdma:// (raw_rdma.c) */
    int shm;
    int fd; /* the stream socket, or shm's rendezvous socket */
    /* shm only */
    uint8_t *seg;
    size_t seg_len;
    shm_ring tx, rx;
    int efd_peer, efd_self;
};

#define RAW_RING (256u << 10)

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void raw_frame_hdr(uint8_t out[32], int version, int type, uint16_t hdr_len, uint32_t data_len,
                   uint64_t id, uint32_t aux)
{
    memset(out, 0, 32);
    out[0] = 0x50;
    out[1] = 0x58;
    out[2] = (uint8_t)version;
    out[3] = (uint8_t)type;
    out[6] = (uint8_t)hdr_len;
    out[7] = (uint8_t)(hdr_len >> 8);
    for (int i = 0; i < 4; i++)
        out[12 + i] = (uint8_t)(data_len >> (8 * i));
    for (int i = 0; i < 8; i++)
        out[16 + i] = (uint8_t)(id >> (8 * i));
    for (int i = 0; i < 4; i++)
        out[24 + i] = (uint8_t)(aux >> (8 * i));
}

/* ---- addresses -------------------------------------------------------------- */

/* "tcp://1.2.3.4:5", "tcp://[::1]:5", "unix:///path" as a sockaddr. */
static int stream_addr(const char *uri, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    if (strncmp(uri, "unix://", 7) == 0) {
        struct sockaddr_un *a = (struct sockaddr_un *)ss;
        size_t n = strlen(uri + 7);
        if (n >= sizeof(a->sun_path))
            return -1;
        a->sun_family = AF_UNIX;
        memcpy(a->sun_path, uri + 7, n + 1);
        *len = sizeof(*a);
        return AF_UNIX;
    }
    char host[256];
    int port;
    if (sscanf(uri, "tcp://[%255[^]]]:%d", host, &port) == 2) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
            return -1;
        *len = sizeof(*a);
        return AF_INET6;
    }
    if (sscanf(uri, "tcp://%255[^:]:%d", host, &port) == 2) {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
            return -1;
        *len = sizeof(*a);
        return AF_INET;
    }
    return -1;
}

/* ---- shm: the rendezvous, then rings ------------------------------------------- */

static int shm_segment(raw_link *l, int *memfd)
{
    l->seg_len = shm_rdv_seg_len(RAW_RING);
    int fd = memfd_create("raw-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0 || ftruncate(fd, (off_t)l->seg_len) < 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
        return -1;
    l->seg = mmap(NULL, l->seg_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (l->seg == MAP_FAILED)
        return -1;
    shm_ring_ctl *ctl = (shm_ring_ctl *)(void *)(l->seg + SHM_CL);
    uint8_t *d0 = l->seg + SHM_SEG_HDR;
    shm_ring_init(&l->tx, &ctl[0], d0, RAW_RING);
    shm_ring_init(&l->rx, &ctl[1], d0 + RAW_RING, RAW_RING);
    __atomic_store_n(&ctl[1].cma_ok, SHM_CMA_NO, __ATOMIC_RELEASE);
    *memfd = fd;
    return 0;
}

static int shm_dial(raw_link *l, const char *name)
{
    struct sockaddr_un un;
    socklen_t alen = shm_rdv_addr(name, getuid(), &un);
    l->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (l->fd < 0 || connect(l->fd, (struct sockaddr *)&un, alen) < 0)
        return -1;
    int memfd;
    if (shm_segment(l, &memfd) < 0)
        return -1;
    l->efd_peer = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    l->efd_self = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    static const uint64_t probe = 0;
    rdv_hello h = {.magic = SHM_MAGIC,
                   .version = SHM_VERSION,
                   .ring_size = RAW_RING,
                   .flags = RDV_F_NOCMA,
                   .seg_len = l->seg_len,
                   .probe_addr = (uint64_t)(uintptr_t)&probe,
                   .pid = (int32_t)getpid()};
    int fds[3] = {memfd, l->efd_peer, l->efd_self};
    int rc = shm_rdv_send_fds(l->fd, &h, sizeof(h), fds, 3);
    close(memfd);
    if (rc < 0)
        return -1;
    struct pollfd pfd = {.fd = l->fd, .events = POLLIN};
    if (poll(&pfd, 1, 5000) != 1)
        return -1;
    rdv_reply r;
    if (recv(l->fd, &r, sizeof(r), 0) != (ssize_t)sizeof(r) || shm_rdv_check_reply(&r) != 0)
        return -1;
    return 0;
}

static void kick(raw_link *l)
{
    uint64_t one = 1;
    if (write(l->efd_peer, &one, sizeof(one)) < 0 && errno != EAGAIN)
        perror("raw_link: eventfd");
}

static int shm_send(raw_link *l, int kind, const void *bytes, size_t len)
{
    uint64_t deadline = now_ms() + 5000;
    uint8_t *p;
    int rc;
    while ((rc = shm_ring_reserve(&l->tx, (uint32_t)len, &p)) == -PX_EAGAIN) {
        if (now_ms() > deadline)
            return -1;
        kick(l);
        usleep(1000);
    }
    if (rc < 0)
        return -1;
    memcpy(p, bytes, len);
    shm_ring_commit(&l->tx, (uint32_t)len, (uint16_t)kind);
    shm_ring_publish(&l->tx);
    kick(l);
    return 0;
}

/* One record from the server's ring: its length, or 0 when there is none. */
static long shm_take(raw_link *l, void *buf, size_t cap)
{
    uint16_t kind;
    const uint8_t *p;
    uint32_t len;
    if (shm_ring_peek(&l->rx, &kind, &p, &len) != 1)
        return 0;
    memcpy(buf, p, len < cap ? len : cap);
    shm_ring_consume(&l->rx, len);
    shm_ring_release(&l->rx);
    kick(l); /* it may wait for room */
    return len ? (long)len : 1;
}

/* ---- the interface ----------------------------------------------------------------- */

raw_link *raw_dial(const char *uri)
{
    raw_link *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->fd = l->efd_peer = l->efd_self = -1;
    if (strncmp(uri, "rdma://", 7) == 0) {
        l->rdma = raw_rdma_dial(uri);
        if (l->rdma)
            return l;
    } else if (strncmp(uri, "shm://", 6) == 0) {
        l->shm = 1;
        char name[128];
        snprintf(name, sizeof(name), "%.*s", (int)strcspn(uri + 6, "?"), uri + 6);
        if (shm_dial(l, name) == 0)
            return l;
    } else {
        struct sockaddr_storage ss;
        socklen_t len;
        int fam = stream_addr(uri, &ss, &len);
        if (fam >= 0) {
            l->fd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (l->fd >= 0 && connect(l->fd, (struct sockaddr *)&ss, len) == 0)
                return l;
        }
    }
    raw_close(l);
    return NULL;
}

int raw_send(raw_link *l, const void *bytes, size_t len)
{
    if (l->rdma)
        return raw_rdma_send(l->rdma, bytes, len);
    if (l->shm)
        return shm_send(l, SHM_REC_FRAME, bytes, len);
    return send(l->fd, bytes, len, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

int raw_send_bad_rdv(raw_link *l, const void *frame, size_t hdr_len)
{
    return l->rdma ? raw_rdma_send_rts(l->rdma, frame, hdr_len, 0x1000, 0xbad0bad) : -1;
}

int raw_send_record(raw_link *l, int kind, const void *bytes, size_t len)
{
    return l->shm ? shm_send(l, kind, bytes, len) : -1;
}

void raw_frame_channel(uint8_t hdr[32], uint32_t channel)
{
    for (int i = 0; i < 4; i++)
        hdr[8 + i] = (uint8_t)(channel >> (8 * i));
}

static uint32_t frame_channel(const uint8_t hdr[32])
{
    return (uint32_t)hdr[8] | (uint32_t)hdr[9] << 8 | (uint32_t)hdr[10] << 16 |
           (uint32_t)hdr[11] << 24;
}

int raw_hello(raw_link *l, uint64_t max_msg, uint32_t max_hdr)
{
    return raw_hello_on(l, 0, max_msg, max_hdr);
}

int raw_hello_on(raw_link *l, uint32_t channel, uint64_t max_msg, uint32_t max_hdr)
{
    uint8_t f[32 + 2048];
    static const char uri[] = "raw://conformance";
    px_hello h = {.min_version = 1,
                  .max_version = 1,
                  .queue_depth = 64,
                  .max_msg = max_msg,
                  .max_hdr = max_hdr,
                  .max_iov = 64,
                  .keepalive_ms = 60000,
                  .uri = uri,
                  .uri_len = sizeof(uri) - 1};
    int n = px_hello_encode(&h, f + 32, sizeof(f) - 32);
    if (n < 0)
        return -1;
    raw_frame_hdr(f, 1, PX_FT_HELLO, 0, (uint32_t)n, 0, 0);
    raw_frame_channel(f, channel);
    if (raw_send(l, f, 32 + (size_t)n) < 0)
        return -1;
    long got = raw_recv(l, f, sizeof(f), 5000);
    if (got < 32 || f[3] != PX_FT_HELLO_ACK || frame_channel(f) != channel)
        return -1;
    px_hello_ack a;
    if (px_hello_ack_decode(f + 32, (size_t)got - 32, &a) != 0 || a.status != PX_HS_ACCEPT)
        return -1;
    return 0;
}

/* Stream: read exactly n bytes before the deadline. 1, 0 (EOF), -1. */
static int read_full(int fd, uint8_t *p, size_t n, uint64_t deadline)
{
    while (n) {
        int left = (int)(deadline - now_ms());
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&pfd, 1, left) != 1)
            return -1;
        ssize_t r = read(fd, p, n);
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            return 0;
        if (r < 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 1;
}

long raw_recv(raw_link *l, void *buf, size_t cap, int ms)
{
    uint64_t deadline = now_ms() + (uint64_t)ms;
    if (l->rdma)
        return raw_rdma_recv(l->rdma, buf, cap, ms);
    if (l->shm) {
        for (;;) {
            long n = shm_take(l, buf, cap);
            if (n > 0)
                return n;
            struct pollfd pfd = {.fd = l->fd, .events = POLLIN};
            char c;
            if (poll(&pfd, 1, 0) == 1 && recv(l->fd, &c, 1, MSG_DONTWAIT) == 0)
                return shm_take(l, buf, cap) > 0 ? (long)cap : 0;
            if (now_ms() > deadline)
                return -1;
            usleep(500);
        }
    }
    uint8_t hdr[32];
    int rc = read_full(l->fd, hdr, 32, deadline);
    if (rc <= 0)
        return rc;
    uint64_t body = (uint64_t)(hdr[28] | hdr[29] << 8) + (hdr[6] | hdr[7] << 8) +
                    ((uint32_t)hdr[12] | (uint32_t)hdr[13] << 8 | (uint32_t)hdr[14] << 16 |
                     (uint32_t)hdr[15] << 24);
    if (32 + body > cap)
        return -1;
    memcpy(buf, hdr, 32);
    rc = read_full(l->fd, (uint8_t *)buf + 32, (size_t)body, deadline);
    return rc <= 0 ? rc : (long)(32 + body);
}

int raw_wait_closed(raw_link *l, int ms)
{
    if (l->rdma)
        return raw_rdma_wait_closed(l->rdma, ms);
    uint64_t deadline = now_ms() + (uint64_t)ms;
    uint8_t buf[4096];
    for (;;) {
        int left = (int)(deadline - now_ms());
        if (left <= 0)
            return 0;
        if (l->shm)
            while (shm_take(l, buf, sizeof(buf)) > 0)
                ;
        struct pollfd pfd = {.fd = l->fd, .events = POLLIN};
        if (poll(&pfd, 1, left < 20 ? left : 20) != 1)
            continue;
        ssize_t r = read(l->fd, buf, sizeof(buf));
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            return 1;
    }
}

int raw_link_fd(const raw_link *l)
{
    return l->fd;
}

void raw_shutdown(raw_link *l)
{
    if (!l->shm && !l->rdma)
        shutdown(l->fd, SHUT_WR);
}

void raw_close(raw_link *l)
{
    if (!l)
        return;
    raw_rdma_close(l->rdma);
    if (l->fd >= 0)
        close(l->fd);
    if (l->efd_peer >= 0)
        close(l->efd_peer);
    if (l->efd_self >= 0)
        close(l->efd_self);
    if (l->seg && l->seg != MAP_FAILED)
        munmap(l->seg, l->seg_len);
    free(l);
}

int raw_listen(const char *uri_in, char *bound, size_t len)
{
    char uri[1100]; /* bound may be uri_in itself */
    snprintf(uri, sizeof(uri), "%s", uri_in);
    if (strncmp(uri, "rdma://", 7) == 0)
        return raw_rdma_listen(uri, bound, len);
    int fd;
    if (strncmp(uri, "shm://", 6) == 0) {
        struct sockaddr_un un;
        socklen_t alen = shm_rdv_addr(uri + 6, getuid(), &un);
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&un, alen) < 0 || listen(fd, 16) < 0)
            return -1;
        snprintf(bound, len, "%s", uri);
        return fd;
    }
    struct sockaddr_storage ss;
    socklen_t slen;
    int fam = stream_addr(uri, &ss, &slen);
    if (fam < 0)
        return -1;
    if (fam == AF_UNIX)
        unlink(((struct sockaddr_un *)&ss)->sun_path);
    fd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&ss, slen) < 0 || listen(fd, 16) < 0)
        return -1;
    slen = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &slen);
    if (fam == AF_INET)
        snprintf(bound, len, "tcp://127.0.0.1:%d", ntohs(((struct sockaddr_in *)&ss)->sin_port));
    else if (fam == AF_INET6)
        snprintf(bound, len, "tcp://[::1]:%d", ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
    else
        snprintf(bound, len, "%s", uri);
    return fd;
}

/* shm, server side: take the client's segment and eventfds, say yes. */
static int shm_adopt(raw_link *l)
{
    rdv_hello h;
    int fds[8], nfds;
    struct pollfd pfd = {.fd = l->fd, .events = POLLIN};
    if (poll(&pfd, 1, 5000) != 1)
        return -1;
    ssize_t n = shm_rdv_recv_fds(l->fd, &h, sizeof(h), fds, 8, &nfds);
    if (n != (ssize_t)sizeof(h) || nfds != 3 || shm_rdv_check_hello(&h, fds[0]) != 0)
        return -1;
    l->seg_len = h.seg_len;
    l->seg = mmap(NULL, l->seg_len, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
    close(fds[0]);
    if (l->seg == MAP_FAILED)
        return -1;
    l->efd_self = fds[1]; /* the server sleeps on this one: we are the server */
    l->efd_peer = fds[2]; /* the client sleeps on this one */
    shm_ring_ctl *ctl = (shm_ring_ctl *)(void *)(l->seg + SHM_CL);
    uint8_t *d0 = l->seg + SHM_SEG_HDR;
    shm_ring_init(&l->rx, &ctl[0], d0, h.ring_size);
    shm_ring_init(&l->tx, &ctl[1], d0 + h.ring_size, h.ring_size);
    __atomic_store_n(&ctl[0].cma_ok, SHM_CMA_NO, __ATOMIC_RELEASE);
    rdv_reply r = {
        .magic = SHM_MAGIC, .version = SHM_VERSION, .flags = RDV_F_NOCMA, .pid = (int32_t)getpid()};
    return shm_rdv_send_fds(l->fd, &r, sizeof(r), NULL, 0) == 0 ? 0 : -1;
}

raw_link *raw_accept(int lfd, int ms)
{
    if (raw_rdma_is_listener(lfd)) {
        raw_link *r = calloc(1, sizeof(*r));
        if (!r)
            return NULL;
        r->fd = r->efd_peer = r->efd_self = -1;
        r->rdma = raw_rdma_accept(lfd, ms);
        if (r->rdma)
            return r;
        free(r);
        return NULL;
    }
    struct pollfd pfd = {.fd = lfd, .events = POLLIN};
    if (poll(&pfd, 1, ms) != 1)
        return NULL;
    raw_link *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->efd_peer = l->efd_self = -1;
    l->fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    int type = 0;
    socklen_t tl = sizeof(type);
    getsockopt(lfd, SOL_SOCKET, SO_TYPE, &type, &tl);
    l->shm = type == SOCK_SEQPACKET;
    if (l->fd >= 0 && (!l->shm || shm_adopt(l) == 0))
        return l;
    raw_close(l);
    return NULL;
}

raw_link *raw_accept_hello(int lfd, uint32_t depth, int ms)
{
    raw_link *l = raw_accept(lfd, ms);
    if (!l)
        return NULL;
    uint8_t f[32 + 8192];
    long got = raw_recv(l, f, sizeof(f), ms);
    px_hello h;
    if (got < 32 || f[3] != PX_FT_HELLO || px_hello_decode(f + 32, (size_t)got - 32, &h) != 0) {
        raw_close(l);
        return NULL;
    }
    px_hello_ack a = {.version = 1,
                      .status = PX_HS_ACCEPT,
                      .queue_depth = depth,
                      .max_msg = 1u << 20,
                      .max_hdr = 4096,
                      .max_iov = 64,
                      .keepalive_ms = 60000,
                      .token = 1};
    int n = px_hello_ack_encode(&a, f + 32, sizeof(f) - 32);
    raw_frame_hdr(f, 1, PX_FT_HELLO_ACK, 0, (uint32_t)n, 0, 0);
    if (n < 0 || raw_send(l, f, 32 + (size_t)n) < 0) {
        raw_close(l);
        return NULL;
    }
    return l;
}

void raw_listen_close(int fd)
{
    if (raw_rdma_is_listener(fd)) {
        raw_rdma_listen_close(fd);
        return;
    }
    struct sockaddr_un un;
    socklen_t len = sizeof(un);
    if (getsockname(fd, (struct sockaddr *)&un, &len) == 0 && un.sun_family == AF_UNIX &&
        un.sun_path[0])
        unlink(un.sun_path);
    close(fd);
}
