/*
 * The slot table: where a pid's (shard, slot, serial) finds its process.
 * Each shard has chunks of slots, installed once with CAS and never freed
 * while the node runs, so a lookup from any thread is two loads.  A slot's
 * serial is its process's while it lives and 0 when free; a stale pid
 * (a dead process's serial) fails the comparison.  Free slots go to the
 * owner shard's private list; spawns from other threads take them from a
 * mutex-guarded shared list the owner hands surplus to.
 */
#include "proc/internal.h"

#include <errno.h>

static int slot_ensure(struct pshard *ps, uint32_t idx)
{
    if (idx >= SLOT_CHUNK * SLOT_MAX_CHUNKS)
        return -ENOMEM;
    _Atomic(struct slot *) *cp = &ps->chunks[idx >> SLOT_CHUNK_BITS];
    if (atomic_load_explicit(cp, memory_order_acquire))
        return 0;
    struct slot *c = kumo__zalloc(sizeof(struct slot) * SLOT_CHUNK);
    if (!c)
        return -ENOMEM;
    struct slot *expect = NULL;
    if (!atomic_compare_exchange_strong(cp, &expect, c))
        kumo__free(c, sizeof(struct slot) * SLOT_CHUNK);
    return 0;
}

static int push_u32(uint32_t **v, uint32_t *n, uint32_t *cap, uint32_t x)
{
    if (*n == *cap) {
        uint32_t ncap = *cap ? *cap * 2 : 256;
        uint32_t *nv = kumo__alloc(sizeof(uint32_t) * ncap);
        if (!nv)
            return -ENOMEM;
        if (*n)
            memcpy(nv, *v, sizeof(uint32_t) * *n);
        kumo__free(*v, sizeof(uint32_t) * *cap);
        *v = nv;
        *cap = ncap;
    }
    (*v)[(*n)++] = x;
    return 0;
}

/* Unlocks free_mu, first publishing nfree_shared for the owner's look
 * without the lock (nfree_shared_hint). */
static void free_unlock(struct pshard *ps)
{
    atomic_store_explicit(&ps->nfree_shared_hint, ps->nfree_shared, memory_order_relaxed);
    pthread_mutex_unlock(&ps->free_mu);
}

int kumo__slot_alloc(struct pshard *ps, bool owner, uint32_t *out)
{
    if (owner && ps->nfree_local) {
        *out = ps->free_local[--ps->nfree_local];
        return 0;
    }
    if (owner && atomic_load_explicit(&ps->nfree_shared_hint, memory_order_relaxed)) {
        /* Take back a batch of the slots handed to the shared list, or the
         * table would only grow under spawn/exit churn. */
        pthread_mutex_lock(&ps->free_mu);
        while (ps->nfree_shared && ps->nfree_local < 1024 &&
               !push_u32(&ps->free_local, &ps->nfree_local, &ps->capfree_local,
                         ps->free_shared[ps->nfree_shared - 1]))
            ps->nfree_shared--;
        free_unlock(ps);
        if (ps->nfree_local) {
            *out = ps->free_local[--ps->nfree_local];
            return 0;
        }
    }
    if (!owner) {
        pthread_mutex_lock(&ps->free_mu);
        bool got = ps->nfree_shared > 0;
        if (got)
            *out = ps->free_shared[--ps->nfree_shared];
        free_unlock(ps);
        if (got)
            return 0;
    }
    uint32_t idx = atomic_fetch_add(&ps->hwm, 1);
    int err = slot_ensure(ps, idx);
    if (err)
        return err;
    *out = idx;
    return 0;
}

/* Owner only.  Surplus free slots are handed to the shared list so spawns
 * from other threads reuse them instead of growing the table. */
void kumo__slot_release(struct pshard *ps, uint32_t idx)
{
    if (push_u32(&ps->free_local, &ps->nfree_local, &ps->capfree_local, idx))
        return; /* out of memory: the slot is leaked, not reused */
    if (ps->nfree_local > 4096) {
        pthread_mutex_lock(&ps->free_mu);
        while (ps->nfree_local > 2048 &&
               !push_u32(&ps->free_shared, &ps->nfree_shared, &ps->capfree_shared,
                         ps->free_local[ps->nfree_local - 1]))
            ps->nfree_local--;
        free_unlock(ps);
    }
}
void kumo__slot_publish(struct pshard *ps, struct kumo_proc *p)
{
    struct slot *s = kumo__slot_at(ps, p->slot);
    if (!s) /* slot_alloc made the chunk exist: cannot happen */
        abort();
    atomic_store_explicit(&s->named, 0, memory_order_relaxed);
    atomic_store_explicit(&s->p, p, memory_order_relaxed);
    atomic_store_explicit(&s->serial, p->serial, memory_order_release);
}

void kumo__slot_give_back(struct pshard *ps, uint32_t idx)
{
    pthread_mutex_lock(&ps->free_mu);
    push_u32(&ps->free_shared, &ps->nfree_shared, &ps->capfree_shared, idx);
    free_unlock(ps);
}

bool kumo__pid_alive(struct kumo_node *node, kumo_pid pid)
{
    if (pid.node != node->id || pid.shard >= node->n || pid.serial == 0)
        return false;
    struct slot *s = kumo__slot_at(node->ps[pid.shard], pid.slot);
    return s && atomic_load(&s->serial) == pid.serial;
}

void kumo__mark_named(struct kumo_node *node, kumo_pid pid)
{
    struct slot *s = kumo__slot_at(node->ps[pid.shard], pid.slot);
    if (s)
        atomic_store(&s->named, 1);
}
int kumo__inbox_publish(struct kumo_node *node, struct kumo_proc *p)
{
    struct pshard *ps = node->ps[0];
    int err = kumo__slot_alloc(ps, false, &p->slot);
    if (err)
        return err;
    p->shard = 0;
    p->serial = (0xFFFFull << 48) | (atomic_fetch_add(&node->foreign_serial, 1) + 1);
    atomic_fetch_add(&node->inboxes_live, 1);
    kumo__slot_publish(ps, p);
    return 0;
}
