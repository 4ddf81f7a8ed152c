#include "engine/ring.h"

#include "engine/alloc.h"

#include <errno.h>

int kumo__ring_init(struct kumo__ring *r, uint32_t entries)
{
    if (entries < 2 || (entries & (entries - 1)))
        return -EINVAL;
    memset(r, 0, sizeof *r);
    r->slots = kumo__zalloc(sizeof(*r->slots) * entries);
    if (!r->slots)
        return -ENOMEM;
    r->mask = entries - 1;
    r->ovf_tail = &r->ovf_head;
    return 0;
}

void kumo__ring_fini(struct kumo__ring *r)
{
    kumo__free(r->slots, sizeof(*r->slots) * (r->mask + 1));
    r->slots = NULL;
}

_Thread_local struct kumo__blk_cache kumo__tls_blk __attribute__((tls_model("initial-exec")));

void kumo__blk_cache_enable(void)
{
#if !KUMO_SANITIZE
    kumo__tls_blk.on = true;
#endif
}

void kumo__blk_cache_drain(void)
{
    struct kumo__blk_cache *bc = &kumo__tls_blk;
    bc->on = false;
    for (int c = 0; c < KUMO__BLK_CLASSES; c++) {
        while (bc->head[c]) {
            void *p = bc->head[c];
            bc->head[c] = *(void **)p;
            kumo__free(p, kumo__blk_class_size(c));
        }
        bc->n[c] = 0;
    }
}
