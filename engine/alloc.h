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
 * Small-block cache: shard threads keep freed small blocks (messages,
 * process structs) in thread-local LIFOs, one per size class, so the
 * per-message path skips the allocator.  Classes match jemalloc's (80, 96,
 * 128, 160, 192 bytes): a message with an 8-byte payload takes 80 bytes,
 * not 128, which matters when hundreds of thousands are queued at once,
 * and one with 64 (a 136-byte block, each received remote message of a
 * 64 B stream) stays off the allocator too.  Enabled
 * only on shard threads (kumo__blk_cache_enable) and never in sanitizer
 * builds, so ASan still sees every block.
 */
#include <stdbool.h>

#define KUMO__BLK 128 /* the class of kumo__blk_alloc (process structs) */
#define KUMO__BLK_CLASSES 5
#define KUMO__BLK_CACHE_MAX 4096 /* per class */

/* Class of a block of `size` bytes, or -1 when over the largest (192). */
static inline int kumo__blk_class(size_t size)
{
    return size <= 80    ? 0
           : size <= 96  ? 1
           : size <= 128 ? 2
           : size <= 160 ? 3
           : size <= 192 ? 4
                         : -1;
}

static inline size_t kumo__blk_class_size(int c)
{
    static const unsigned short sz[KUMO__BLK_CLASSES] = {80, 96, 128, 160, 192};
    return sz[c];
}

struct kumo__blk_cache {
    void *head[KUMO__BLK_CLASSES];
    unsigned n[KUMO__BLK_CLASSES];
    bool on;
};

extern _Thread_local struct kumo__blk_cache kumo__tls_blk
    __attribute__((tls_model("initial-exec")));

static inline void *kumo__blk_alloc_class(int c)
{
    struct kumo__blk_cache *bc = &kumo__tls_blk;
    void *p = bc->head[c];
    if (p) {
        bc->head[c] = *(void **)p;
        bc->n[c]--;
        return p;
    }
    return kumo__alloc(kumo__blk_class_size(c));
}

static inline void kumo__blk_free_class(void *p, int c)
{
    struct kumo__blk_cache *bc = &kumo__tls_blk;
    if (bc->on && bc->n[c] < KUMO__BLK_CACHE_MAX) {
        *(void **)p = bc->head[c];
        bc->head[c] = p;
        bc->n[c]++;
        return;
    }
    kumo__free(p, kumo__blk_class_size(c));
}

/* A block of the largest class (KUMO__BLK bytes). */
static inline void *kumo__blk_alloc(void)
{
    return kumo__blk_alloc_class(2);
}
static inline void kumo__blk_free(void *p)
{
    kumo__blk_free_class(p, 2);
}

/* On a shard thread: start caching (no-op in sanitizer builds). */
void kumo__blk_cache_enable(void);
/* Before the thread ends: give every cached block back. */
void kumo__blk_cache_drain(void);

#endif
