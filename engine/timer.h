/*
 * Per-shard timers: a binary min-heap of intrusive timer records.  Each
 * record knows its heap index, so cancelling is O(log n) and a cancelled
 * timer leaves nothing behind.  Only the owning shard touches its heap.
 */
#ifndef KUMO_ENGINE_TIMER_H
#define KUMO_ENGINE_TIMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KUMO__TIMER_IDLE UINT32_MAX

struct kumo__shard;

struct kumo__timer {
    uint64_t deadline; /* CLOCK_MONOTONIC ns */
    uint32_t idx;      /* heap index, KUMO__TIMER_IDLE when not armed */
    uint32_t kind;     /* free for the owner's use */
    /* When set, a due timer calls fn on its shard instead of the engine's
     * timer hook: how layers other than proc (transports) use the heap.
     * kumo__timer_init clears it. */
    void (*fn)(struct kumo__shard *sh, struct kumo__timer *t);
};

struct kumo__timer_heap {
    struct kumo__timer **v;
    uint32_t n, cap;
};

static inline void kumo__timer_init(struct kumo__timer *t)
{
    t->idx = KUMO__TIMER_IDLE;
    t->fn = NULL;
}
static inline bool kumo__timer_armed(const struct kumo__timer *t)
{
    return t->idx != KUMO__TIMER_IDLE;
}

int kumo__timer_arm(struct kumo__timer_heap *h, struct kumo__timer *t, uint64_t deadline);
void kumo__timer_cancel(struct kumo__timer_heap *h, struct kumo__timer *t);
/* Removes and returns the earliest timer if due at `now`, else NULL. */
struct kumo__timer *kumo__timer_pop_due(struct kumo__timer_heap *h, uint64_t now);
static inline uint64_t kumo__timer_next(const struct kumo__timer_heap *h)
{
    return h->n ? h->v[0]->deadline : UINT64_MAX;
}
void kumo__timer_heap_fini(struct kumo__timer_heap *h);

uint64_t kumo__now_ns(void);

/* A counter that only says whether "a while" has passed, far cheaper than
 * the clock: the CPU's time-stamp counter where there is one (about 10 ns
 * against 23 for clock_gettime in this VM; a constant-rate TSC ticks at
 * GHz), else the clock itself. */
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
static inline uint64_t kumo__cycles(void)
{
    return __rdtsc();
}
#else
static inline uint64_t kumo__cycles(void)
{
    return kumo__now_ns();
}
#endif

/* A busy shard reads the clock for its timers once this many cycles have
 * passed: about 2 us at 2-4 GHz (timers fire that much late at most, and
 * a busy round trip of a few hundred ns reads no clock). */
#define KUMO__CLOCK_CYCLES 8192u

#endif
