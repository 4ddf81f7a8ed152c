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
static inline void *kumo__alloc(size_t n) { return mallocx(n, 0); }
static inline void *kumo__zalloc(size_t n) { return mallocx(n, MALLOCX_ZERO); }
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
static inline void *kumo__alloc(size_t n) { return malloc(n); }
static inline void *kumo__zalloc(size_t n) { return calloc(1, n); }
static inline void kumo__free(void *p, size_t n)
{
    (void)n;
    free(p);
}
static inline size_t kumo__allocated_bytes(void) { return 0; }
#endif

#endif
