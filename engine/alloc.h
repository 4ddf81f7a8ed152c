/*
 * Engine memory: jemalloc's sized API in normal builds (thread caches make
 * every shard allocate from its own cache without locks), plain malloc in
 * sanitizer builds so ASan/LSan see every block.
 */
#ifndef KUMO_ENGINE_ALLOC_H
#define KUMO_ENGINE_ALLOC_H

#include "config.h"
#include <stdlib.h>
#include <string.h>

#if KUMO_USE_JEMALLOC
#include <jemalloc/jemalloc.h>
static inline void *kumo__alloc(size_t n)
{
    return mallocx(n, 0);
}
static inline void *kumo__zalloc(size_t n)
{
    return mallocx(n, MALLOCX_ZERO);
}
/* `n` must be the size passed at allocation (sized free is faster). */
static inline void kumo__free(void *p, size_t n)
{
    if (p)
        sdallocx(p, n, 0);
}
static inline size_t kumo__allocated_bytes(void)
{
    uint64_t epoch = 1;
    size_t sz = sizeof(epoch), allocated = 0, asz = sizeof(allocated);
    mallctl("epoch", &epoch, &sz, &epoch, sz);
    mallctl("stats.allocated", &allocated, &asz, NULL, 0);
    return allocated;
}
#else
static inline void *kumo__alloc(size_t n)
{
    return malloc(n);
}
static inline void *kumo__zalloc(size_t n)
{
    return calloc(1, n);
}
static inline void kumo__free(void *p, size_t n)
{
    (void)n;
    free(p);
}
static inline size_t kumo__allocated_bytes(void)
{
    return 0;
}
#endif

/*
 * Small-block cache: shard threads keep freed blocks of KUMO__BLK bytes
 * (small messages) in a thread-local LIFO so the per-message path skips
 * the allocator.  Enabled only on shard threads (kumo__blk_cache_enable)
 * and never in sanitizer builds, so ASan still sees every block.
 */
#include <stdbool.h>

#define KUMO__BLK 128
#define KUMO__BLK_CACHE_MAX 4096

struct kumo__blk_cache {
    void *head;
    unsigned n;
    bool on;
};

extern _Thread_local struct kumo__blk_cache kumo__tls_blk
    __attribute__((tls_model("initial-exec")));

static inline void *kumo__blk_alloc(void)
{
    struct kumo__blk_cache *c = &kumo__tls_blk;
    void *p = c->head;
    if (p) {
        c->head = *(void **)p;
        c->n--;
        return p;
    }
    return kumo__alloc(KUMO__BLK);
}

static inline void kumo__blk_free(void *p)
{
    struct kumo__blk_cache *c = &kumo__tls_blk;
    if (c->on && c->n < KUMO__BLK_CACHE_MAX) {
        *(void **)p = c->head;
        c->head = p;
        c->n++;
        return;
    }
    kumo__free(p, KUMO__BLK);
}

/* On a shard thread: start caching (no-op in sanitizer builds). */
void kumo__blk_cache_enable(void);
/* Before the thread ends: give every cached block back. */
void kumo__blk_cache_drain(void);

#endif
