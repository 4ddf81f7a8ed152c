/*
 * The shm transport's shared memory: two single-producer single-consumer
 * byte rings (one per direction) in one memfd, made by the connecting side.
 *
 * Layout (offsets in bytes):
 *     0       header of ring 0 (connector -> acceptor)
 *     512     header of ring 1 (acceptor -> connector)
 *     4096    data of ring 0 (size bytes, a power of two)
 *     4096 + size   data of ring 1
 * A header gives each index and each flag a cache line of its own.  On
 * the fast path the producer writes only the tail's line and the consumer
 * only the head's; the flags' lines change only around parking, so the
 * check of the peer's flag after every publish or consume hits the
 * checker's cache instead of pulling a line the peer keeps writing.
 *
 * Each side keeps its own index locally and only publishes it.  The other
 * side's index is read from shared memory and checked (tail - head must
 * lie in [0, size]) before it is used, because the peer may be broken or
 * hostile.  The producer keeps the last head it read and reads the shared
 * one again only when that cached view leaves too little room, so while
 * the ring has room it never pulls the consumer's line.  Sizes are
 * validated once at mapping time and cached locally.
 *
 * Wake-ups (both processes poll while awake):
 *  - consumer about to park: consumer_sleeping = 1; barrier; if the ring
 *    is not empty, clear it and stay up.  Producer after publishing:
 *    barrier; if consumer_sleeping, exchange it to 0 and, if it was 1,
 *    write the consumer's eventfd.
 *  - producer that found too little space: producer_waiting = 1; barrier;
 *    re-check the space.  Consumer after freeing space: barrier; if
 *    producer_waiting, exchange to 0 and write the producer's eventfd.
 * Each side's barrier orders its own store before its load of the other's
 * flag (the store-buffer case), so one of them always sees the other.
 *
 * The barriers are asymmetric where the kernel allows it, as in the
 * engine: every process using shm registers for
 * membarrier(GLOBAL_EXPEDITED) (kumo__shm_barrier_setup), the side that is
 * about to wait issues that system call (kumo__shm_wait_barrier), which
 * runs a full barrier on every CPU running a registered process, and the
 * hot path (publish, consume) needs only a compiler barrier.  A full fence
 * there would stall the producer until its stores to lines the consumer
 * just read had taken those lines back, on every message.  Without the
 * system call both sides use seq_cst fences.  A peer that skipped its
 * barrier without registering only delays its own wake-ups.
 */
#ifndef KUMO_TRANSPORT_SHM_RING_H
#define KUMO_TRANSPORT_SHM_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>

#define KUMO__SHM_MAGIC 0x6d68734bu /* "Kshm" */
#define KUMO__SHM_DATA_OFF 4096u
#define KUMO__SHM_HDR_STRIDE 512u
#define KUMO__SHM_MIN_RING 4096u
#define KUMO__SHM_MAX_RING (1u << 30)

struct kumo__shm_ring_hdr {
    _Alignas(64) _Atomic uint64_t tail;
    _Alignas(64) _Atomic uint64_t head;
    _Alignas(64) _Atomic uint32_t consumer_sleeping;
    _Alignas(64) _Atomic uint32_t producer_waiting;
    _Alignas(64) uint64_t size; /* written by the connector before passing */
    uint32_t magic;
    uint32_t version;
};

_Static_assert(sizeof(struct kumo__shm_ring_hdr) <= KUMO__SHM_HDR_STRIDE, "ring header too big");

/* One side's view of one ring. */
struct kumo__shm_ring {
    struct kumo__shm_ring_hdr *h;
    uint8_t *data;
    uint64_t size; /* validated copy */
    uint64_t mine; /* our index: tail (producer) or head (consumer) */
    uint64_t peer; /* producer: the head last read (checked) */
};

/* Set once per process by kumo__shm_barrier_setup (stream.c): membarrier
 * GLOBAL_EXPEDITED is registered, the hot path skips its fences. */
extern _Atomic bool kumo__shm_asym;

void kumo__shm_barrier_setup(void);
/* The waiting side's barrier, between raising its flag and re-checking. */
void kumo__shm_wait_barrier(void);

/* The hot side's barrier, between publishing an index and reading the
 * peer's flag. */
static inline void kumo__shm_hot_barrier(void)
{
    if (atomic_load_explicit(&kumo__shm_asym, memory_order_relaxed))
        atomic_signal_fence(memory_order_seq_cst);
    else
        atomic_thread_fence(memory_order_seq_cst);
}

static inline size_t kumo__shm_map_len(uint64_t size)
{
    return KUMO__SHM_DATA_OFF + 2 * size;
}

/* Views of ring `which` (0 or 1) in a mapping of `size`-byte rings. */
static inline void kumo__shm_ring_view(struct kumo__shm_ring *r, void *map, uint64_t size,
                                       int which)
{
    r->h = (struct kumo__shm_ring_hdr *)((uint8_t *)map + (size_t)which * KUMO__SHM_HDR_STRIDE);
    r->data = (uint8_t *)map + KUMO__SHM_DATA_OFF + (size_t)which * size;
    r->size = size;
    r->mine = 0;
    r->peer = 0;
}

/* Producer: bytes free, or -1 if the consumer's index is impossible.  The
 * shared head is read only when the cached one leaves less than `want`. */
static inline int64_t kumo__shm_space(struct kumo__shm_ring *r, uint64_t want)
{
    uint64_t free_ = r->size - (r->mine - r->peer);
    if (free_ >= want)
        return (int64_t)free_;
    uint64_t head = atomic_load_explicit(&r->h->head, memory_order_acquire);
    uint64_t used = r->mine - head;
    if (used > r->size)
        return -1;
    r->peer = head;
    return (int64_t)(r->size - used);
}

/* Producer: copies `len` bytes to `at` bytes past our index, wrapping (the
 * caller made sure of the space; nothing is published). */
static inline void kumo__shm_write(struct kumo__shm_ring *r, uint64_t at, const void *src,
                                   size_t len)
{
    uint64_t pos = (r->mine + at) & (r->size - 1);
    size_t first = (size_t)(r->size - pos) < len ? (size_t)(r->size - pos) : len;
    memcpy(r->data + pos, src, first);
    if (len > first)
        memcpy(r->data, (const uint8_t *)src + first, len - first);
}

/* Producer: copies up to `max` bytes of iov[0..n) (starting at piece *i,
 * offset *off, both advanced) into the ring.  Returns the bytes copied (not
 * yet published). */
static inline size_t kumo__shm_put(struct kumo__shm_ring *r, const struct iovec *iov, unsigned n,
                                   unsigned *i, size_t *off, size_t max)
{
    size_t done = 0;
    while (*i < n && done < max) {
        size_t left = iov[*i].iov_len - *off;
        if (!left) {
            (*i)++;
            *off = 0;
            continue;
        }
        size_t k = left < max - done ? left : max - done;
        kumo__shm_write(r, done, (const uint8_t *)iov[*i].iov_base + *off, k);
        done += k;
        *off += k;
    }
    return done;
}

/* Either side: advances our index by `n` and publishes it; returns true if
 * the peer waits for it and must be woken (`flag`, the peer's, was set and
 * we took it). */
static inline bool kumo__shm_advance(struct kumo__shm_ring *r, _Atomic uint64_t *index, size_t n,
                                     _Atomic uint32_t *flag)
{
    r->mine += n;
    atomic_store_explicit(index, r->mine, memory_order_release);
    kumo__shm_hot_barrier();
    return atomic_load_explicit(flag, memory_order_relaxed) && atomic_exchange(flag, 0);
}

/* Producer: publishes `n` more bytes; true: wake the consumer. */
static inline bool kumo__shm_publish(struct kumo__shm_ring *r, size_t n)
{
    return kumo__shm_advance(r, &r->h->tail, n, &r->h->consumer_sleeping);
}

/* Consumer: readable bytes, or -1 if the producer's index is impossible. */
static inline int64_t kumo__shm_avail(struct kumo__shm_ring *r)
{
    uint64_t tail = atomic_load_explicit(&r->h->tail, memory_order_acquire);
    uint64_t n = tail - r->mine;
    if (n > r->size)
        return -1;
    return (int64_t)n;
}

/* Consumer: the contiguous readable run at the head (at most `avail`). */
static inline uint8_t *kumo__shm_peek(struct kumo__shm_ring *r, uint64_t avail, size_t *len)
{
    uint64_t pos = r->mine & (r->size - 1);
    uint64_t run = r->size - pos;
    *len = (size_t)(avail < run ? avail : run);
    return r->data + pos;
}

/* Consumer: releases `n` bytes; true: wake the producer. */
static inline bool kumo__shm_consume(struct kumo__shm_ring *r, size_t n)
{
    return kumo__shm_advance(r, &r->h->head, n, &r->h->producer_waiting);
}

#endif
