/*
 * Single-producer single-consumer ring of pointers between two shards.
 *
 * The producer fills slots privately and publishes them in one release
 * store per batch (kumo__ring_publish); the consumer drains everything
 * published in one pass.  Producer and consumer indices live on separate
 * cache lines, and each side caches the other's index so the shared lines
 * are read only when the cached view says the ring looks full or empty.
 * When the ring is full the producer chains items on a private overflow
 * list (through the item's first word) and moves them in at the next
 * publish: a send never fails or blocks, and order is kept.
 */
#ifndef KUMO_ENGINE_RING_H
#define KUMO_ENGINE_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Every item carried by a ring starts with this link (used by overflow
 * lists and by the foreign queue). */
struct kumo__item {
    struct kumo__item *next;
};

#define KUMO__CACHELINE 64

struct kumo__ring {
    /* consumer side */
    _Alignas(KUMO__CACHELINE) _Atomic uint32_t head;
    uint32_t tail_seen; /* consumer's cached copy of tail */
    /* producer side */
    _Alignas(KUMO__CACHELINE) _Atomic uint32_t tail;
    uint32_t head_seen;    /* producer's cached copy of head */
    uint32_t tail_local;   /* filled but not yet published */
    uint32_t tail_flushed; /* tail at the last flush (eager publishes skip wake-ups) */
    struct kumo__item *ovf_head, **ovf_tail;
    /* read-only after init */
    _Alignas(KUMO__CACHELINE) uint32_t mask;
    struct kumo__item **slots;
};

int kumo__ring_init(struct kumo__ring *r, uint32_t entries);
void kumo__ring_fini(struct kumo__ring *r);

static inline bool kumo__ring_try_put(struct kumo__ring *r, struct kumo__item *it)
{
    if (r->tail_local - r->head_seen > r->mask) {
        r->head_seen = atomic_load_explicit(&r->head, memory_order_acquire);
        if (r->tail_local - r->head_seen > r->mask)
            return false;
    }
    r->slots[r->tail_local & r->mask] = it;
    r->tail_local++;
    return true;
}

/* Items may carry a tag in bit 0 (engine tasks): lists link the untagged
 * node but store the tagged pointer. */
static inline struct kumo__item *kumo__item_untag(struct kumo__item *it)
{
    return (struct kumo__item *)((uintptr_t)it & ~(uintptr_t)1u);
}

/* The item is a task (engine.h's kumo__task_item), not a message. */
static inline bool kumo__item_is_task(const struct kumo__item *it)
{
    return (uintptr_t)it & 1u;
}

#define KUMO__RING_EAGER 64

/* Producer: queue an item (published by the next kumo__ring_publish). */
static inline void kumo__ring_put(struct kumo__ring *r, struct kumo__item *it)
{
    if (!r->ovf_head && kumo__ring_try_put(r, it)) {
        /* Publish every KUMO__RING_EAGER items even before the flush phase:
         * a shard running a long batch of processes would otherwise hold a
         * whole ring back while the consumer idles.  (Wake-ups stay in the
         * flush phase: a spinning consumer sees the tail move.) */
        if (((r->tail_local) & (KUMO__RING_EAGER - 1)) == 0)
            atomic_store_explicit(&r->tail, r->tail_local, memory_order_release);
        return;
    }
    {
        struct kumo__item *u = kumo__item_untag(it);
        u->next = NULL;
        *r->ovf_tail = it;
        r->ovf_tail = &u->next;
    }
}

/* Producer: move overflow in, publish.  Returns true if anything was put
 * since the last call (eagerly published or not), so the caller checks
 * whether the consumer sleeps. */
static inline bool kumo__ring_publish(struct kumo__ring *r)
{
    while (r->ovf_head) {
        struct kumo__item *it = r->ovf_head;
        struct kumo__item *next = kumo__item_untag(it)->next;
        if (!kumo__ring_try_put(r, it))
            break;
        r->ovf_head = next;
        if (!next)
            r->ovf_tail = &r->ovf_head;
    }
    if (r->tail_flushed == r->tail_local)
        return false;
    atomic_store_explicit(&r->tail, r->tail_local, memory_order_release);
    r->tail_flushed = r->tail_local;
    return true; /* new items since the last flush: the caller may wake */
}

static inline bool kumo__ring_has_overflow(const struct kumo__ring *r)
{
    return r->ovf_head != NULL;
}

/* Consumer: is anything published and not yet drained? */
static inline bool kumo__ring_nonempty(struct kumo__ring *r)
{
    uint32_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    if (r->tail_seen != h)
        return true;
    r->tail_seen = atomic_load_explicit(&r->tail, memory_order_acquire);
    return r->tail_seen != h;
}

/* Consumer: hand every published item to fn, then release the slots in one
 * store.  Returns the count. */
#define KUMO__RING_DRAIN(r, item_var, body)                                                        \
    ({                                                                                             \
        uint32_t h_ = atomic_load_explicit(&(r)->head, memory_order_relaxed);                      \
        uint32_t t_ = atomic_load_explicit(&(r)->tail, memory_order_acquire);                      \
        (r)->tail_seen = t_;                                                                       \
        for (uint32_t i_ = h_; i_ != t_; i_++) {                                                   \
            struct kumo__item *item_var = (r)->slots[i_ & (r)->mask];                              \
            body;                                                                                  \
        }                                                                                          \
        if (t_ != h_)                                                                              \
            atomic_store_explicit(&(r)->head, t_, memory_order_release);                           \
        t_ - h_;                                                                                   \
    })

#endif
