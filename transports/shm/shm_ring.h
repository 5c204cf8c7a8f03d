/* A single-producer single-consumer record ring in memory shared with a
 * peer process that we do not trust.
 *
 * The ring is a power-of-two byte array plus a control block. `head` (bytes
 * published by the producer) and `tail` (bytes released by the consumer)
 * are free-running 64-bit counters on separate cache lines, written with
 * release and read with acquire ordering. Every record starts on a 64-byte
 * boundary with a 16-byte shm_rec header; a record never wraps: when it
 * does not fit before the end, the producer first writes a PAD record to
 * the end. A record is at most half the ring, so an empty ring always has
 * room for one.
 *
 * Each side keeps its own cursor in private memory (shm_ring.pos) and never
 * re-reads it from the segment; every value read from the segment (head,
 * tail, a record header) is copied to a local once and bounds-checked
 * before use, so a peer scribbling on the segment can make us report
 * -PX_EPROTO but never read or write outside the ring.
 */
#ifndef PX_TRANSPORTS_SHM_SHM_RING_H
#define PX_TRANSPORTS_SHM_SHM_RING_H

#include <stdint.h>

#define SHM_CL      64u /* cache line; record alignment */
#define SHM_REC_HDR 16u

/* Record kinds. */
enum {
    SHM_REC_PAD = 1,     /* skip to the end of the ring */
    SHM_REC_FRAME = 2,   /* a whole frame: header, app header, data */
    SHM_REC_CMA = 3,     /* frame header + ext descriptor + app header; data by CMA */
    SHM_REC_CHUNKED = 4, /* frame header + app header; data in the CHUNKs that follow */
    SHM_REC_CHUNK = 5,   /* data bytes of the CHUNKED frame in progress */
    SHM_REC_KIND_MAX = 5,
};

/* The header in front of every record (in the segment). */
typedef struct shm_rec {
    uint32_t len;  /* payload bytes after this header */
    uint16_t kind; /* SHM_REC_* */
    uint16_t pad0;
    uint64_t pad1;
} shm_rec;

/* The control block of one ring, in the shared segment. The producer's
 * line is written by the producer only (prod_wait is also cleared by the
 * consumer, with an atomic exchange); the consumer's line by the consumer
 * (cons_sleep also cleared by the producer, likewise). */
typedef struct shm_ring_ctl {
    _Alignas(SHM_CL) uint64_t head; /* bytes published */
    uint32_t prod_wait;             /* 1: producer sleeps until tail or acked moves */
    uint32_t pad0;
    _Alignas(SHM_CL) uint64_t tail; /* bytes released */
    uint32_t cons_sleep;            /* 1: consumer sleeps until head moves */
    uint32_t cma_ok;                /* consumer can read the producer (SHM_CMA_*) */
    uint64_t acked;                 /* the ack word: see below */
    /* 1: the consumer's loop busy-polls (or spins before it sleeps), so
     * it takes each record as it comes; 0 (also an older peer's segment,
     * where this is padding): it may sleep between them. A hint only: the
     * producer picks how large data moves by it, never trusts it further. */
    uint32_t cons_polls;
} shm_ring_ctl;

/* The ack word. Its high bits count the CMA/pool records the consumer has
 * finished with (which completes those sends); its low two bits gate the
 * producer's memory. The consumer turns OPEN into READING before it reads
 * a record's data from the producer, and READING into OPEN with the count
 * one higher after (one atomic step: delivered and acked together). The
 * producer turns OPEN into CLOSED as it closes, before it hands its
 * unfinished sends back to be reused: a consumer then finds the gate
 * CLOSED and drops the rest rather than read reused memory. A producer
 * closing during a read waits for it (bounded), then closes the gate
 * anyway; the consumer, finding it CLOSED after its read, drops that
 * frame too, and the producer counted it unfinished. */
enum { SHM_GATE_OPEN = 0, SHM_GATE_READING = 1, SHM_GATE_CLOSED = 2, SHM_GATE_MASK = 3 };
#define SHM_ACK_SHIFT 2
static inline uint64_t shm_ack_count(uint64_t word)
{
    return word >> SHM_ACK_SHIFT;
}
static inline uint64_t shm_ack_word(uint64_t count, unsigned gate)
{
    return count << SHM_ACK_SHIFT | gate;
}

enum { SHM_CMA_UNKNOWN = 0, SHM_CMA_YES = 1, SHM_CMA_NO = 2 };

/* One side's private view of a ring. Value type, owned by the conn; ctl
 * and data point into the shared mapping the conn owns. */
typedef struct shm_ring {
    shm_ring_ctl *ctl;
    uint8_t *data;
    uint32_t size;   /* power of two */
    uint64_t pos;    /* producer: head to publish; consumer: tail to release */
    uint64_t cached; /* producer: last tail read; consumer: last head read */
} shm_ring;

static inline uint32_t shm_rec_total(uint32_t len)
{
    return (SHM_REC_HDR + len + SHM_CL - 1) & ~(SHM_CL - 1);
}

/* The largest payload a record may carry in a ring of `size` bytes. */
static inline uint32_t shm_rec_max(uint32_t size)
{
    return size / 2 - SHM_REC_HDR;
}

void shm_ring_init(shm_ring *r, shm_ring_ctl *ctl, uint8_t *data, uint32_t size);

/* Producer. Room for a record of `len` payload bytes: returns 0 and the
 * payload address (a PAD may have been written to get it); -PX_EAGAIN when
 * full; -PX_EPROTO when the tail read from the segment is impossible;
 * -PX_EMSGSIZE when len is over shm_rec_max(). */
int shm_ring_reserve(shm_ring *r, uint32_t len, uint8_t **payload);
/* Seal the reserved record (payload written) locally; shm_ring_publish()
 * makes every sealed record visible. */
void shm_ring_commit(shm_ring *r, uint32_t len, uint16_t kind);
void shm_ring_publish(shm_ring *r);
/* Free bytes as of the last tail read (no segment access). */
uint32_t shm_ring_room_cached(const shm_ring *r);

/* Consumer. The next record (PADs skipped): returns 1 with its kind,
 * payload and length; 0 when empty; -PX_EPROTO when head or the record
 * header is impossible. Nothing is released until shm_ring_consume() and
 * shm_ring_release(). */
int shm_ring_peek(shm_ring *r, uint16_t *kind, const uint8_t **payload, uint32_t *len);
void shm_ring_consume(shm_ring *r, uint32_t len);
void shm_ring_release(shm_ring *r);
/* Anything published past our cursor? (one acquire load) */
int shm_ring_nonempty(const shm_ring *r);

/* Records between `pos` and the head last read, for a `more` hint: counts
 * up to `max` FRAME/CMA/CHUNKED records that follow, stopping at anything
 * odd (it is only a hint; peek judges every record). */
uint32_t shm_ring_count_after(const shm_ring *r, uint64_t pos, uint32_t max);

#endif
