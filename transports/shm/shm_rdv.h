/* The rendezvous messages of shm://, as they travel on the SEQPACKET
 * socket (host order: both ends share this machine), and the checks a
 * received one must pass. Shared by shm_rdv.c, the shm fuzz targets and
 * the tests' raw shm peer. See shm_rdv.c for the protocol. */
#ifndef PX_TRANSPORTS_SHM_SHM_RDV_H
#define PX_TRANSPORTS_SHM_SHM_RDV_H

#include <stddef.h>
#include <stdint.h>
#include <sys/un.h>

#define RDV_F_NOCMA 1u /* the sender's options forbid CMA in both directions */

/* Client -> server, with [memfd, server's eventfd, client's eventfd]. */
typedef struct rdv_hello {
    uint32_t magic, version;
    uint32_t ring_size;
    uint32_t flags;
    uint64_t seg_len;
    uint64_t probe_addr; /* a word of ours for the server's CMA probe */
    int32_t pid;
    uint32_t pad;
} rdv_hello;

/* Server -> client. */
typedef struct rdv_reply {
    uint32_t magic, version;
    int32_t status; /* 0, or a positive PX_E code: refused */
    uint32_t flags;
    uint64_t probe_addr;
    int32_t pid;
    uint32_t pad;
} rdv_reply;

/* The segment a ring size needs: header and control blocks, two rings. */
size_t shm_rdv_seg_len(uint32_t ring);
/* Check a client's hello and the memfd that came with it (size, seals).
 * 0, -PX_EPROTO, -PX_EVERSION. */
int shm_rdv_check_hello(const rdv_hello *h, int memfd);
/* Check a server's reply: 0 (accepted), the refusal it carries, or
 * -PX_EPROTO / -PX_EVERSION for a malformed one. */
int shm_rdv_check_reply(const rdv_reply *r);
/* The abstract socket address of `name` in the namespace of `owner`. */
socklen_t shm_rdv_addr(const char *name, uid_t owner, struct sockaddr_un *un);

#endif
