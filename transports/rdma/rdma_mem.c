/* Memory: the context's regions registered with every protection domain,
 * the registered bounce pool, remote keys.
 *
 * A region from px_mem_register()/px_mem_alloc() is registered once per
 * device the instance opened, at registration: a rendezvous from it, or
 * into it, moves with no copy. Plain memory goes through the bounce pool:
 * registered buffers reused by size class, never keyed by the user's
 * addresses (a cache of user mappings without an invalidation monitor
 * corrupts data after munmap and reuse).
 */
#include <stdlib.h>
#include <string.h>

#include "transports/rdma/rdma.h"

static rdma_tp *TP(px_tp *p)
{
    return (rdma_tp *)(void *)p;
}

#define MR_ACCESS (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE)

int rdma_mem_register(px_tp *ptp, const px_mr *mr, void **handle)
{
    rdma_tp *tp = TP(ptp);
    rdma_mr *h = calloc(1, sizeof *h + (size_t)tp->ndev * sizeof h->mr[0]);
    if (!h)
        return -PX_ENOMEM;
    h->addr = px_mr_addr(mr);
    h->len = px_mr_len(mr);
    h->n = tp->ndev;
    for (int d = 0; d < tp->ndev; d++) {
        h->mr[d] = ibv_reg_mr(tp->devs[d].pd, h->addr, h->len, MR_ACCESS);
        if (!h->mr[d])
            PX_TP_LOG(PX_LOG_WARN,
                      "rdma: registering %zu bytes with %s failed: %m (it moves "
                      "through the bounce pool instead)",
                      h->len, ibv_get_device_name(tp->devs[d].verbs->device));
    }
    *handle = h;
    return 0;
}

void rdma_mem_deregister(px_tp *ptp, void *handle)
{
    rdma_mr *h = handle;
    if (!h)
        return;
    for (int d = 0; d < h->n; d++)
        if (h->mr[d])
            ibv_dereg_mr(h->mr[d]);
    free(h);
}

struct ibv_mr *rdma_mr_of(const rdma_conn *c, const px_mr *mr)
{
    if (!mr || c->dev < 0)
        return NULL;
    const px_tp_host *host = rdma_host(c);
    rdma_mr *h = host->ops->mr_handle(host, mr);
    return h && c->dev < h->n ? h->mr[c->dev] : NULL;
}

/* The remote key of a region on the first device (descriptors built by
 * the session layer name one device: a context's conns share it). */
int rdma_rkey_pack(px_tp *ptp, void *handle, void *buf, size_t len)
{
    rdma_mr *h = handle;
    if (len < 4)
        return -PX_ENOSPC;
    uint32_t k = h && h->n > 0 && h->mr[0] ? h->mr[0]->rkey : 0;
    memcpy(buf, &k, 4);
    return 4;
}

int rdma_rkey_unpack(px_tp *ptp, const void *buf, size_t len, uint64_t *rkey)
{
    if (len < 4)
        return -PX_EPROTO;
    uint32_t k;
    memcpy(&k, buf, 4);
    *rkey = k;
    return 4;
}

/* ---- the bounce pool ---------------------------------------------------------- */

static unsigned size_class(size_t len, size_t *cap)
{
    size_t c = RDMA_POOL_MIN;
    unsigned k = 0;
    while (c < len && k < RDMA_POOL_CLASSES - 1) {
        c <<= 1;
        k++;
    }
    *cap = c < len ? len : c;
    return k;
}

rdma_buf *rdma_pool_get(rdma_tp *tp, int dev, size_t len)
{
    size_t cap;
    unsigned k = size_class(len, &cap);
    rdma_buf **head = &tp->pool.free[(size_t)dev * RDMA_POOL_CLASSES + k];
    if (*head && (*head)->cap >= len) {
        rdma_buf *b = *head;
        *head = b->next;
        tp->pool.kept -= b->cap;
        b->next = NULL;
        return b;
    }
    rdma_buf *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    if (posix_memalign((void **)&b->addr, 4096, cap ? cap : 1) != 0) {
        free(b);
        return NULL;
    }
    b->cap = cap;
    b->dev = dev;
    b->mr = ibv_reg_mr(tp->devs[dev].pd, b->addr, cap, MR_ACCESS);
    if (!b->mr) {
        PX_TP_LOG(PX_LOG_WARN, "rdma: registering a %zu-byte bounce buffer failed: %m", cap);
        free(b->addr);
        free(b);
        return NULL;
    }
    return b;
}

static void buf_free(rdma_buf *b)
{
    ibv_dereg_mr(b->mr);
    free(b->addr);
    free(b);
}

void rdma_pool_put(rdma_tp *tp, rdma_buf *b)
{
    if (!b)
        return;
    size_t cap;
    unsigned k = size_class(b->cap, &cap);
    if (cap != b->cap || tp->pool.kept + b->cap > RDMA_POOL_KEEP) {
        buf_free(b); /* an odd size (over the largest class) or over the budget */
        return;
    }
    rdma_buf **head = &tp->pool.free[(size_t)b->dev * RDMA_POOL_CLASSES + k];
    b->next = *head;
    *head = b;
    tp->pool.kept += b->cap;
}

void rdma_pool_fini(rdma_tp *tp)
{
    if (!tp->pool.free)
        return;
    for (size_t i = 0; i < (size_t)tp->ndev * RDMA_POOL_CLASSES; i++) {
        rdma_buf *b = tp->pool.free[i];
        while (b) {
            rdma_buf *n = b->next;
            buf_free(b);
            b = n;
        }
    }
    free(tp->pool.free);
    tp->pool.free = NULL;
}
