/* The rendezvous: how two processes that share nothing yet end up sharing
 * a segment.
 *
 * The server listens on the abstract unix socket "\0plexus-shm-<uid>-<name>"
 * (abstract: nothing on disk, gone when the process is), in the namespace
 * of its own uid. The client looks in its own uid's namespace first, then
 * in those its ?allow_uid= names (a uid, or any: every namespace that has
 * the name, from /proc/net/unix), so a server of another user is reached
 * when the client says it trusts that user. It checks with SO_PEERCRED
 * that the server runs as an allowed uid (abstract names can be squatted
 * by anyone), and creates the segment: a
 * sealed memfd (mode 0600, no name in any file system, freed with the last
 * map) holding both rings, plus two eventfds. It sends them with
 * SCM_RIGHTS in its hello. The server checks the client's uid the same way,
 * validates the segment (size, seals: a peer that could shrink it would
 * make us fault), maps it and answers once the owner accepts. Each side
 * then tests whether it may read the other's memory with
 * process_vm_readv (CMA) and says so in the ring it consumes (cma_ok).
 *
 * The socket stays connected: its EOF is the peer's death. Until then it
 * carries only shared-pool region announcements (shm_pool.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "transports/shm/shm.h"
#include "transports/shm/shm_rdv.h"

const uint64_t shm_cma_probe_word = 0x706c657875732121ull;

int shm_err(int e)
{
    if (e <= 0)
        return -PX_EIO;
    /* Where an errno value has a PX_E code, the code is that value. */
    return strcmp(px_errname(e), "PX_E?") != 0 && e < PX_EBASE ? -e : -PX_EIO;
}

/* ---- options and the uid check --------------------------------------------- */

static int parse_u32(const char *s, uint32_t max, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || errno || v > max || s[0] == '-')
        return -PX_EBADOPT;
    *out = (uint32_t)v;
    return 0;
}

static int bad_value(const px_uri *uri, const char *k, const char *v)
{
    PX_TP_LOG(PX_LOG_WARN, "shm://%s: option %s=%s has a bad value", uri->path, k, v);
    return -PX_EBADOPT;
}

int shm_opts_parse(const px_uri *uri, int listener, shm_opts *out)
{
    *out = (shm_opts){.cma = 1, .ring_size = SHM_RING_DEF};
    const char *env = getenv("PX_SHM_CMA");
    if (env && strcmp(env, "0") == 0)
        out->cma = 0;
    for (unsigned i = 0; i < uri->n_opts; i++) {
        const char *k = uri->opts[i].key, *v = uri->opts[i].value;
        uint32_t n;
        if (strcmp(k, "allow_uid") == 0) {
            if (strcmp(v, "any") == 0) {
                out->allow_any = 1;
            } else {
                if (parse_u32(v, UINT32_MAX - 1, &n))
                    return bad_value(uri, k, v);
                out->allow_uid = (uid_t)n;
                out->has_allow_uid = 1;
            }
        } else if (strcmp(k, "cma") == 0) {
            if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0)
                return bad_value(uri, k, v);
            if (v[0] == '0')
                out->cma = 0;
        } else if (strcmp(k, "ring") == 0) {
            if (parse_u32(v, SHM_RING_MAX, &n) || n < SHM_RING_MIN || (n & (n - 1)))
                return bad_value(uri, k, v);
            out->ring_size = n;
        } else if (strcmp(k, "spin_us") == 0) {
            if (parse_u32(v, 1000000, &n))
                return bad_value(uri, k, v);
            out->spin_us = n;
        } else if (strcmp(k, "pid") == 0 && !listener) {
            /* peer_uri() output fed back: informational */
        } else {
            PX_TP_LOG(PX_LOG_WARN,
                      "shm://%s: unknown option '%s' (known: allow_uid=<uid>|any, cma=0|1, "
                      "ring=<bytes, power of two>, spin_us=<us>)",
                      uri->path, k);
            return -PX_EBADOPT;
        }
    }
    return 0;
}

int shm_uid_allowed(const shm_opts *o, uid_t self, uid_t uid)
{
    return uid == self || o->allow_any || (o->has_allow_uid && uid == o->allow_uid);
}

static int peer_cred(int fd, struct ucred *cr)
{
    socklen_t len = sizeof *cr;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cr, &len) < 0)
        return shm_err(errno);
    return 0;
}

int shm_rdv_peer_uid(int fd, uid_t *uid)
{
    struct ucred cr;
    int rc = peer_cred(fd, &cr);
    if (rc == 0)
        *uid = cr.uid;
    return rc;
}

static int check_peer(shm_conn *c)
{
    struct ucred cr;
    int rc = peer_cred(c->sock, &cr);
    if (rc)
        return rc;
    if (!shm_uid_allowed(&c->opts, getuid(), cr.uid)) {
        PX_TP_LOG(PX_LOG_WARN, "shm: %s: peer pid %d runs as uid %u, not allowed (see ?allow_uid=)",
                  c->name, (int)cr.pid, (unsigned)cr.uid);
        return -PX_EACCES;
    }
    c->peer_pid = cr.pid;
    c->peer_uid = cr.uid;
    return 0;
}

/* ---- the socket --------------------------------------------------------------- */

/* The rendezvous name of `name` in `owner`'s namespace. */
socklen_t shm_rdv_addr(const char *name, uid_t owner, struct sockaddr_un *un)
{
    memset(un, 0, sizeof *un);
    un->sun_family = AF_UNIX;
    int n = snprintf(un->sun_path + 1, sizeof un->sun_path - 1, "plexus-shm-%u-%s", (unsigned)owner,
                     name);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

int shm_rdv_listen(const char *name, int *out)
{
    struct sockaddr_un un;
    socklen_t len = shm_rdv_addr(name, getuid(), &un);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return shm_err(errno);
    if (bind(fd, (struct sockaddr *)&un, len) < 0 || listen(fd, 4096) < 0) {
        int rc = shm_err(errno);
        close(fd);
        return rc;
    }
    *out = fd;
    return 0;
}

/* ---- the segment --------------------------------------------------------------- */

size_t shm_rdv_seg_len(uint32_t ring)
{
    return SHM_SEG_HDR + 2 * (size_t)ring;
}

/* Ring 0 carries client -> server, ring 1 server -> client. */
static void map_rings(shm_conn *c, uint32_t ring)
{
    shm_ring_ctl *ctl = (shm_ring_ctl *)(void *)(c->seg + SHM_CL);
    uint8_t *d0 = c->seg + SHM_SEG_HDR, *d1 = d0 + ring;
    if (c->is_server) {
        shm_ring_init(&c->rx, &ctl[0], d0, ring);
        shm_ring_init(&c->tx, &ctl[1], d1, ring);
    } else {
        shm_ring_init(&c->tx, &ctl[0], d0, ring);
        shm_ring_init(&c->rx, &ctl[1], d1, ring);
    }
}

void shm_rdv_unmap(shm_conn *c)
{
    if (c->seg)
        munmap(c->seg, c->seg_len);
    c->seg = NULL;
}

static int make_segment(shm_conn *c, int *memfd)
{
    uint32_t ring = c->opts.ring_size;
    size_t len = shm_rdv_seg_len(ring);
    int fd = memfd_create("plexus-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return shm_err(errno);
    if (fchmod(fd, 0600) < 0 || ftruncate(fd, (off_t)len) < 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
        int rc = shm_err(errno);
        close(fd);
        return rc;
    }
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        int rc = shm_err(errno);
        close(fd);
        return rc;
    }
    c->seg = p;
    c->seg_len = len;
    uint32_t hdr[3] = {SHM_MAGIC, SHM_VERSION, ring}; /* for humans with a debugger */
    memcpy(c->seg, hdr, sizeof hdr);
    map_rings(c, ring);
    *memfd = fd;
    return 0;
}

int shm_rdv_send_fds(int sock, const void *msg, size_t len, const int *fds, int nfds)
{
    union {
        char buf[CMSG_SPACE(3 * sizeof(int))];
        struct cmsghdr align;
    } u;
    struct iovec iov = {(void *)msg, len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds) {
        memset(&u, 0, sizeof u);
        mh.msg_control = u.buf;
        mh.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
        memcpy(CMSG_DATA(cm), fds, (size_t)nfds * sizeof(int));
    }
    ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0)
        return errno == EPIPE ? -PX_ECONNRESET : shm_err(errno);
    return (size_t)n == len ? 0 : -PX_EIO;
}

/* The uids whose namespace holds a server named `name`, from the kernel's
 * list of unix sockets ("@plexus-shm-<uid>-<name>" lines). Returns how
 * many were put in uids[]. */
static int uids_serving(const char *name, uid_t *uids, int max)
{
    FILE *f = fopen("/proc/net/unix", "re");
    if (!f)
        return 0;
    char line[512], want[SHM_NAME_MAX + 2];
    snprintf(want, sizeof want, "-%s", name);
    int n = 0;
    while (n < max && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        const char *p = strstr(line, " @plexus-shm-");
        if (!p)
            continue;
        p += strlen(" @plexus-shm-");
        char *end;
        unsigned long uid = strtoul(p, &end, 10);
        if (end == p || strcmp(end, want) != 0)
            continue;
        uids[n++] = (uid_t)uid;
    }
    fclose(f);
    return n;
}

/* Connect to `name` in `owner`'s namespace. 0, or -PX_ECONNREFUSED when
 * nobody serves it there. */
static int connect_as(shm_conn *c, uid_t owner)
{
    struct sockaddr_un un;
    socklen_t alen = shm_rdv_addr(c->name, owner, &un);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return shm_err(errno);
    if (connect(fd, (struct sockaddr *)&un, alen) < 0) {
        int rc = errno == EAGAIN || errno == ENOENT || errno == ECONNREFUSED ? -PX_ECONNREFUSED
                                                                             : shm_err(errno);
        close(fd);
        return rc;
    }
    c->sock = fd;
    return 0;
}

/* Our own namespace, then those of the users we said we trust. */
static int connect_server(shm_conn *c)
{
    uid_t self = getuid();
    int rc = connect_as(c, self);
    if (rc != -PX_ECONNREFUSED)
        return rc;
    if (c->opts.has_allow_uid && c->opts.allow_uid != self) {
        rc = connect_as(c, c->opts.allow_uid);
        if (rc != -PX_ECONNREFUSED)
            return rc;
    }
    if (c->opts.allow_any) {
        uid_t uids[16];
        int n = uids_serving(c->name, uids, 16);
        for (int i = 0; i < n; i++) {
            if (uids[i] == self)
                continue;
            rc = connect_as(c, uids[i]);
            if (rc != -PX_ECONNREFUSED)
                return rc;
        }
    }
    return -PX_ECONNREFUSED;
}

int shm_rdv_connect(shm_conn *c)
{
    int rc = connect_server(c);
    if (rc)
        return rc;
    rc = check_peer(c);
    if (rc)
        return rc;
    int memfd = -1;
    rc = make_segment(c, &memfd);
    if (rc)
        return rc;
    c->efd_peer = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    c->efd_self = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (c->efd_peer < 0 || c->efd_self < 0) {
        close(memfd);
        return shm_err(errno);
    }
    c->cma_off = !c->opts.cma;
    rdv_hello h = {
        .magic = SHM_MAGIC,
        .version = SHM_VERSION,
        .ring_size = c->opts.ring_size,
        .flags = c->cma_off ? RDV_F_NOCMA : 0,
        .seg_len = c->seg_len,
        .probe_addr = (uint64_t)(uintptr_t)&shm_cma_probe_word,
        .pid = (int32_t)getpid(),
    };
    int fds[3] = {memfd, c->efd_peer, c->efd_self};
    rc = shm_rdv_send_fds(c->sock, &h, sizeof h, fds, 3);
    close(memfd); /* the mapping keeps the segment */
    return rc;
}

/* ---- the server's side ----------------------------------------------------------- */

/* Receive one message and every descriptor that came with it (all of them
 * are ours to close, whatever the message says). */
ssize_t shm_rdv_recv_fds(int sock, void *msg, size_t len, int *fds, int max, int *nfds)
{
    union {
        char buf[CMSG_SPACE(8 * sizeof(int))];
        struct cmsghdr align;
    } u;
    struct iovec iov = {msg, len};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    *nfds = 0;
    ssize_t n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0)
        return n;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
            if (*nfds < max)
                fds[(*nfds)++] = fd;
            else
                close(fd);
        }
    }
    if ((mh.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) && n >= 0) {
        errno = EMSGSIZE;
        return -2;
    }
    return n;
}

static int is_eventfd(int fd)
{
    char path[64], target[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, target, sizeof target - 1);
    if (n < 0)
        return 0;
    target[n] = '\0';
    return strcmp(target, "anon_inode:[eventfd]") == 0;
}

int shm_rdv_check_hello(const rdv_hello *h, int memfd)
{
    if (h->magic != SHM_MAGIC)
        return -PX_EPROTO;
    if (h->version != SHM_VERSION)
        return -PX_EVERSION;
    uint32_t r = h->ring_size;
    if (r < SHM_RING_MIN || r > SHM_RING_MAX || (r & (r - 1)) || h->seg_len != shm_rdv_seg_len(r))
        return -PX_EPROTO;
    struct stat st;
    if (fstat(memfd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size < h->seg_len)
        return -PX_EPROTO;
    int seals = fcntl(memfd, F_GET_SEALS);
    if (seals < 0 || !(seals & F_SEAL_SHRINK))
        return -PX_EPROTO; /* it could shrink under us: SIGBUS */
    return 0;
}

static int adopt(shm_conn *c, const rdv_hello *h, const int *fds)
{
    int rc = check_peer(c);
    if (rc)
        return rc;
    rc = shm_rdv_check_hello(h, fds[0]);
    if (rc)
        return rc;
    if (!is_eventfd(fds[1]) || !is_eventfd(fds[2]))
        return -PX_EPROTO;
    void *p = mmap(NULL, h->seg_len, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
    if (p == MAP_FAILED)
        return shm_err(errno);
    c->seg = p;
    c->seg_len = h->seg_len;
    map_rings(c, h->ring_size);
    c->efd_self = fds[1];
    c->efd_peer = fds[2];
    c->cma_off = !c->opts.cma || (h->flags & RDV_F_NOCMA);
    /* Tell the client whether it may hand us CMA descriptors. */
    int ok = c->cma_off ? SHM_CMA_NO : shm_cma_probe(c->peer_pid, h->probe_addr);
    __atomic_store_n(&c->rx.ctl->cma_ok, (uint32_t)ok, __ATOMIC_RELEASE);
    return 0;
}

int shm_rdv_server_hello(shm_conn *c)
{
    rdv_hello h;
    int fds[8], nfds;
    ssize_t n = shm_rdv_recv_fds(c->sock, &h, sizeof h, fds, 8, &nfds);
    if (n == -1 && (errno == EAGAIN || errno == EINTR))
        return 0;
    int rc;
    if (n < 0)
        rc = shm_err(errno);
    else if (n == 0)
        rc = -PX_ECONNRESET;
    else if ((size_t)n != sizeof h || nfds != 3)
        rc = -PX_EPROTO;
    else
        rc = adopt(c, &h, fds);
    /* The eventfds are kept on success; the memfd is never needed again. */
    for (int i = 0; i < nfds; i++)
        if (rc || i == 0)
            close(fds[i]);
    if (rc) {
        c->efd_self = c->efd_peer = -1;
        return rc;
    }
    return 1;
}

int shm_rdv_server_reply(shm_conn *c, int status)
{
    rdv_reply r = {
        .magic = SHM_MAGIC,
        .version = SHM_VERSION,
        .status = status,
        .flags = c->cma_off ? RDV_F_NOCMA : 0,
        .probe_addr = (uint64_t)(uintptr_t)&shm_cma_probe_word,
        .pid = (int32_t)getpid(),
    };
    return shm_rdv_send_fds(c->sock, &r, sizeof r, NULL, 0);
}

/* ---- the client's side ------------------------------------------------------------ */

int shm_rdv_client_reply(shm_conn *c)
{
    rdv_reply r;
    int fds[8], nfds;
    ssize_t n = shm_rdv_recv_fds(c->sock, &r, sizeof r, fds, 8, &nfds);
    for (int i = 0; i < nfds; i++)
        close(fds[i]); /* none expected */
    if (n == -1 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (n < 0)
        return shm_err(errno);
    if (n == 0)
        return -PX_ECONNREFUSED; /* dropped before accepting */
    if ((size_t)n != sizeof r)
        return -PX_EPROTO;
    int rc = shm_rdv_check_reply(&r);
    if (rc)
        return rc;
    if (r.flags & RDV_F_NOCMA)
        c->cma_off = 1;
    int ok = c->cma_off ? SHM_CMA_NO : shm_cma_probe(c->peer_pid, r.probe_addr);
    __atomic_store_n(&c->rx.ctl->cma_ok, (uint32_t)ok, __ATOMIC_RELEASE);
    return 1;
}

int shm_rdv_check_reply(const rdv_reply *r)
{
    if (r->magic != SHM_MAGIC)
        return -PX_EPROTO;
    if (r->version != SHM_VERSION)
        return -PX_EVERSION;
    if (r->status == 0)
        return 0;
    /* A refusal: its reason if it is one of ours, else a plain refusal. */
    int st = r->status > 0 && r->status < PX_EBASE + 64 ? -r->status : -PX_ECONNREFUSED;
    return strcmp(px_errname(st), "PX_E?") != 0 ? st : -PX_ECONNREFUSED;
}

int shm_cma_probe(pid_t pid, uint64_t addr)
{
    uint64_t v = 0;
    struct iovec l = {&v, sizeof v}, r = {(void *)(uintptr_t)addr, sizeof v};
    ssize_t n = process_vm_readv(pid, &l, 1, &r, 1, 0);
    if (n == (ssize_t)sizeof v)
        return SHM_CMA_YES;
    PX_TP_LOG(PX_LOG_INFO,
              "shm: cannot read pid %d's memory (%s): large messages use the chunked fallback",
              (int)pid, n < 0 ? strerror(errno) : "short read");
    return SHM_CMA_NO;
}
