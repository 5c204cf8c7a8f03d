/* The shared pool: large frames from px_mem_alloc() memory move with one
 * plain memcpy from a mapping of the sender's own memfd, at memory speed
 * (CMA pays a page-table walk and pinning per page).
 *
 * Sender: the first time a region is used on a conn, its memfd goes to the
 * peer over the rendezvous socket (SCM_RIGHTS, with the region's id and
 * size) before the ring record that names it is published; a unix socket
 * queues the message in the receiver before sendmsg() returns, so the
 * receiver finds it with a non-blocking recvmsg() when it sees the record.
 * A conn announces at most SHM_POOL_MAX regions; past that, the region
 * used longest ago whose frames are all acknowledged is evicted (the same
 * message tells the peer to unmap it), and when every one still has a
 * frame in flight the frame goes by CMA instead.
 *
 * Receiver: checks the fd is a memfd of the announced size, maps it
 * read-only (MAP_SHARED) and keeps the mapping by region id until evicted
 * or the conn closes. Ids are unique per process (core/mem.c never reuses
 * one), and a conn has one peer process, so an id names one region.
 *
 * The sender may px_mem_free() a region the peer still has mapped: its
 * mapping holds the memfd's pages until eviction or close, nothing faults
 * on either side; the memory is only given back then.
 *
 * px_mem_alloc() seals its memfds against shrinking; a region whose fd is
 * not sealed so is refused, so a hostile peer cannot shrink one under our
 * memcpy (which would fault with SIGBUS).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "transports/shm/shm.h"

#define POOL_MSG_MAGIC  0x6c6f6f70u /* "pool" */
#define POOL_MSG_REGION 1u

/* Sender -> receiver on the rendezvous socket, with the region's memfd. */
typedef struct pool_msg {
    uint32_t magic, type;
    uint64_t id;    /* the region (never 0) */
    uint64_t size;  /* its length: the memfd's size */
    uint64_t evict; /* a region to unmap first (its frames are all acked), or 0 */
} pool_msg;

/* A region we announced: its frames up to `last_seq` (a CMA/pool record
 * count) must be acked before it may be evicted. */
typedef struct pool_tx_ent {
    uint64_t id, last_seq;
} pool_tx_ent;

/* A peer region we mapped. */
typedef struct pool_rx_ent {
    uint64_t id;
    const uint8_t *map;
    size_t len;
} pool_rx_ent;

/* Both directions' tables of one conn. Owned by the conn (c->pool),
 * allocated on first use, freed by shm_pool_free(). */
struct shm_pool {
    pool_tx_ent tx[SHM_POOL_MAX];
    uint32_t ntx;
    pool_rx_ent rx[SHM_POOL_MAX];
    uint32_t nrx;
};

static struct shm_pool *pool_get(shm_conn *c)
{
    if (!c->pool)
        c->pool = calloc(1, sizeof *c->pool);
    return c->pool;
}

void shm_pool_free(shm_conn *c)
{
    struct shm_pool *p = c->pool;
    if (!p)
        return;
    for (uint32_t i = 0; i < p->nrx; i++)
        munmap((void *)(uintptr_t)p->rx[i].map, p->rx[i].len);
    free(p);
    c->pool = NULL;
}

/* ---- sender --------------------------------------------------------------------- */

/* Does the segment lie inside an fd-backed region? */
static int seg_poolable(const px_iov *v)
{
    int fd;
    uint64_t off;
    const px_mr *mr = v->mr;
    if (!mr || px_mr_fd(mr, &fd, &off) != 0)
        return 0;
    uintptr_t b = (uintptr_t)v->base, a = (uintptr_t)px_mr_addr(mr);
    size_t len = px_mr_len(mr);
    return b >= a && v->len <= len && b - a <= len - v->len;
}

static pool_tx_ent *tx_find(struct shm_pool *p, uint64_t id)
{
    for (uint32_t i = 0; i < p->ntx; i++)
        if (p->tx[i].id == id)
            return &p->tx[i];
    return NULL;
}

/* A slot for a new region: a free one, or the acked one used longest ago
 * (*evict: its id). NULL when all have frames in flight. */
static pool_tx_ent *tx_slot(shm_conn *c, struct shm_pool *p, uint64_t *evict)
{
    *evict = 0;
    if (p->ntx < SHM_POOL_MAX)
        return &p->tx[p->ntx++];
    pool_tx_ent *best = NULL;
    for (uint32_t i = 0; i < p->ntx; i++)
        if (p->tx[i].last_seq <= c->cma_acked && (!best || p->tx[i].last_seq < best->last_seq))
            best = &p->tx[i];
    if (best)
        *evict = best->id;
    return best;
}

/* Pass the region's memfd to the peer. 0, or <0 (the frame goes by CMA). */
static int pool_announce(shm_conn *c, struct shm_pool *p, const px_mr *mr)
{
    int fd;
    uint64_t off;
    if (px_mr_fd(mr, &fd, &off) != 0)
        return -PX_EINVAL;
    uint64_t evict;
    pool_tx_ent *e = tx_slot(c, p, &evict);
    if (!e)
        return -PX_EAGAIN;
    pool_msg m = {POOL_MSG_MAGIC, POOL_MSG_REGION, px_mr_id(mr), px_mr_len(mr), evict};
    int rc = shm_rdv_send_fds(c->sock, &m, sizeof m, &fd, 1);
    if (rc) {
        /* Nothing was delivered (a SEQPACKET message is all or nothing):
         * an evicted slot still names its old region. */
        if (!evict)
            p->ntx--; /* the slot was the new last one */
        PX_TP_LOG(PX_LOG_DEBUG, "shm: %s: announcing a region failed (%s): CMA", c->name,
                  px_strerror(rc));
        return rc;
    }
    e->id = px_mr_id(mr);
    e->last_seq = c->cma_sent + 1;
    c->stats.pool_announced++;
    return 0;
}

int shm_pool_tx_ready(shm_conn *c, const px_tp_send *s)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->data_count; i++) {
        if (!s->data[i].len)
            continue;
        if (++n > SHM_POOL_NSEG || !seg_poolable(&s->data[i]))
            return 0;
    }
    struct shm_pool *p = pool_get(c);
    if (!p)
        return 0;
    /* This frame will be record cma_sent + 1: marking its regions with it
     * keeps them from being evicted for its own later segments. */
    for (uint32_t i = 0; i < s->data_count; i++) {
        if (!s->data[i].len)
            continue;
        const px_mr *mr = s->data[i].mr;
        pool_tx_ent *e = tx_find(p, px_mr_id(mr));
        if (e)
            e->last_seq = c->cma_sent + 1;
        else if (pool_announce(c, p, mr) != 0)
            return 0;
    }
    return 1;
}

/* ---- receiver ------------------------------------------------------------------- */

static pool_rx_ent *rx_find(struct shm_pool *p, uint64_t id)
{
    for (uint32_t i = 0; i < p->nrx; i++)
        if (p->rx[i].id == id)
            return &p->rx[i];
    return NULL;
}

static void rx_evict(struct shm_pool *p, pool_rx_ent *e)
{
    munmap((void *)(uintptr_t)e->map, e->len);
    *e = p->rx[--p->nrx];
}

static int is_memfd(int fd)
{
    char path[64], target[80];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, target, sizeof target - 1);
    if (n < 0)
        return 0;
    target[n] = '\0';
    return strncmp(target, "/memfd:", 7) == 0;
}

/* Check an announcement against its fd and map the region. 0, or <0. */
static int rx_adopt(shm_conn *c, struct shm_pool *p, const pool_msg *m, int fd)
{
    if (m->magic != POOL_MSG_MAGIC || m->type != POOL_MSG_REGION || m->id == 0 || m->size == 0 ||
        m->size > SIZE_MAX || rx_find(p, m->id))
        return -PX_EPROTO;
    if (m->evict) {
        pool_rx_ent *old = rx_find(p, m->evict);
        if (!old)
            return -PX_EPROTO;
        rx_evict(p, old);
    }
    if (p->nrx == SHM_POOL_MAX)
        return -PX_EPROTO; /* the sender must evict to stay within the bound */
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != m->size ||
        !is_memfd(fd))
        return -PX_EPROTO;
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0 || !(seals & F_SEAL_SHRINK) || !(seals & F_SEAL_SEAL))
        return -PX_EPROTO; /* it could shrink under our copy */
    void *map = mmap(NULL, (size_t)m->size, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        PX_TP_LOG(PX_LOG_WARN, "shm: conn %s: mapping a %llu-byte region: %s", c->name,
                  (unsigned long long)m->size, strerror(errno));
        return -PX_ENOMEM;
    }
    p->rx[p->nrx++] = (pool_rx_ent){m->id, map, (size_t)m->size};
    c->stats.pool_mapped++;
    return 0;
}

int shm_pool_rx_sock(shm_conn *c, int *sock_err)
{
    *sock_err = 0;
    for (;;) {
        pool_msg m;
        int fds[4], nfds;
        ssize_t n = shm_rdv_recv_fds(c->sock, &m, sizeof m, fds, 4, &nfds);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        int rc;
        struct shm_pool *p = NULL;
        if (n == -1) {
            *sock_err = errno;
            rc = 1;
        } else if (n == 0 && nfds == 0) {
            rc = 1; /* EOF: the peer is gone */
        } else if ((size_t)n != sizeof m || nfds != 1) {
            rc = -PX_EPROTO;
        } else if (!(p = pool_get(c))) {
            rc = -PX_ENOMEM;
        } else {
            rc = rx_adopt(c, p, &m, fds[0]);
        }
        for (int i = 0; i < nfds; i++)
            close(fds[i]); /* a mapping keeps the region */
        if (rc)
            return rc;
    }
}

/* Every segment's mapped address, or 1 when a region is unknown. */
static int rx_lookup(shm_conn *c, const shm_pool_seg *segs, uint32_t n, const uint8_t **out)
{
    for (uint32_t i = 0; i < n; i++) {
        pool_rx_ent *e = c->pool ? rx_find(c->pool, segs[i].id) : NULL;
        if (!e)
            return 1;
        if (segs[i].off > e->len || segs[i].len > e->len - segs[i].off)
            return -PX_EPROTO;
        out[i] = e->map + segs[i].off;
    }
    return 0;
}

int shm_pool_rx_map(shm_conn *c, const shm_pool_seg *segs, uint32_t n, const uint8_t **out)
{
    int rc = rx_lookup(c, segs, n, out);
    if (rc <= 0)
        return rc;
    /* A new region: its announcement came before the record. Read them
     * all, then look every segment up again (an announcement may evict,
     * so no address from before the read is kept). */
    int err;
    rc = shm_pool_rx_sock(c, &err);
    if (rc < 0)
        return rc;
    rc = rx_lookup(c, segs, n, out);
    return rc ? -PX_EPROTO : 0;
}
