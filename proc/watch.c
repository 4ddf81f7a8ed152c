/*
 * Link and monitor lists: a dense array (iterated when a process dies) plus,
 * past a handful of entries, an open-addressing index (linear probing,
 * backward-shift deletion) so that adding, finding and removing one entry
 * stays O(1) however many a process holds: a supervisor monitoring 100k
 * children must not pay per DOWN for the other 99,999.  Links are keyed by
 * pid, monitors by their ref: in a `watching` list the refs are all this
 * node's, unique; in a `watchers` list (by_watcher) they come from the
 * watchers' nodes, each with its own counter, so the key is (ref, the
 * watcher's node).  Removal swaps the last
 * entry into the hole: notification order across different watchers
 * carries no meaning.
 */
#include "proc/internal.h"

#include <errno.h>

#define INDEX_FROM 8

static uint64_t key_of(const struct watch_list *l, uint32_t kind, kumo_pid pid, uint64_t ref)
{
    uint64_t k = kind != W_LINK && kind != W_ELINK
                     ? ref ^ (l->by_watcher ? pid.node * 0xC2B2AE3D27D4EB4Full : 0)
                     : pid.serial ^ (pid.node * 0x9E3779B97F4A7C15ull) ^
                           ((uint64_t)pid.slot << 20) ^ pid.shard;
    k ^= kind;
    k *= 0xff51afd7ed558ccdull;
    return k ^ (k >> 33);
}

static bool same(const struct watch_list *l, const struct watch *w, uint32_t kind, kumo_pid pid,
                 uint64_t ref)
{
    if (w->kind != kind)
        return false;
    if (kind == W_LINK || kind == W_ELINK)
        return kumo_pid_eq(w->pid, pid);
    return w->ref == ref && (!l->by_watcher || w->pid.node == pid.node);
}

/* Index slot holding entry `i`, or the empty slot where (kind,pid,ref)
 * would go; *found tells which. */
static uint32_t probe(const struct watch_list *l, uint32_t kind, kumo_pid pid, uint64_t ref,
                      bool *found)
{
    uint32_t mask = l->hcap - 1;
    uint32_t s = (uint32_t)key_of(l, kind, pid, ref) & mask;
    for (;; s = (s + 1) & mask) {
        uint32_t v = l->h[s];
        if (!v) {
            *found = false;
            return s;
        }
        if (same(l, &l->v[v - 1], kind, pid, ref)) {
            *found = true;
            return s;
        }
    }
}

static int rebuild(struct watch_list *l, uint32_t hcap)
{
    uint32_t *h = kumo__zalloc(sizeof(uint32_t) * hcap);
    if (!h)
        return -ENOMEM;
    kumo__free(l->h, sizeof(uint32_t) * l->hcap);
    l->h = h;
    l->hcap = hcap;
    for (uint32_t i = 0; i < l->n; i++) {
        bool found;
        struct watch *w = &l->v[i];
        l->h[probe(l, w->kind, w->pid, w->ref, &found)] = i + 1;
    }
    return 0;
}

int kumo__watch_find(const struct watch_list *l, kumo_pid pid, uint64_t ref, uint32_t kind)
{
    if (l->h) {
        bool found;
        uint32_t s = probe(l, kind, pid, ref, &found);
        return found ? (int)l->h[s] - 1 : -1;
    }
    for (uint32_t i = 0; i < l->n; i++)
        if (same(l, &l->v[i], kind, pid, ref))
            return (int)i;
    return -1;
}

int kumo__watch_add(struct watch_list *l, kumo_pid pid, uint64_t ref, uint32_t kind)
{
    if (l->n == l->cap) {
        uint32_t ncap = l->cap ? l->cap * 2 : 4;
        struct watch *nv = kumo__alloc(sizeof(struct watch) * ncap);
        if (!nv)
            return -ENOMEM;
        if (l->n)
            memcpy(nv, l->v, sizeof(struct watch) * l->n);
        kumo__free(l->v, sizeof(struct watch) * l->cap);
        l->v = nv;
        l->cap = ncap;
    }
    l->v[l->n++] = (struct watch){.pid = pid, .ref = ref, .kind = kind};
    if (l->n > INDEX_FROM && (!l->h || l->n * 2 > l->hcap)) {
        uint32_t hcap = 32;
        while (hcap < l->n * 4)
            hcap *= 2;
        if (rebuild(l, hcap)) {
            l->n--;
            return -ENOMEM;
        }
    } else if (l->h) {
        bool found;
        l->h[probe(l, kind, pid, ref, &found)] = l->n;
    }
    return 0;
}

/* Removes index slot s and closes the gap (backward-shift deletion). */
static void unindex(struct watch_list *l, uint32_t s)
{
    uint32_t mask = l->hcap - 1;
    l->h[s] = 0;
    for (uint32_t j = (s + 1) & mask; l->h[j]; j = (j + 1) & mask) {
        struct watch *w = &l->v[l->h[j] - 1];
        uint32_t home = (uint32_t)key_of(l, w->kind, w->pid, w->ref) & mask;
        /* move h[j] into the hole if its home is not in (s, j] */
        if (((j - home) & mask) >= ((j - s) & mask)) {
            l->h[s] = l->h[j];
            l->h[j] = 0;
            s = j;
        }
    }
}

static void remove_at(struct watch_list *l, uint32_t i)
{
    bool found;
    if (l->h)
        unindex(l, probe(l, l->v[i].kind, l->v[i].pid, l->v[i].ref, &found));
    uint32_t last = l->n - 1;
    if (i != last) {
        l->v[i] = l->v[last];
        if (l->h)
            l->h[probe(l, l->v[i].kind, l->v[i].pid, l->v[i].ref, &found)] = i + 1;
    }
    l->n--;
}

bool kumo__watch_remove(struct watch_list *l, kumo_pid pid, uint64_t ref, uint32_t kind)
{
    int i = kumo__watch_find(l, pid, ref, kind);
    if (i < 0)
        return false;
    remove_at(l, (uint32_t)i);
    return true;
}

bool kumo__watch_take_ref(struct watch_list *l, uint64_t ref, uint32_t kind, kumo_pid *pid)
{
    int i = kumo__watch_find(l, (kumo_pid){0}, ref, kind);
    if (i < 0)
        return false;
    *pid = l->v[i].pid;
    remove_at(l, (uint32_t)i);
    return true;
}

void kumo__watch_free(struct watch_list *l)
{
    kumo__free(l->v, sizeof(struct watch) * l->cap);
    kumo__free(l->h, sizeof(uint32_t) * l->hcap);
    *l = (struct watch_list){.by_watcher = l->by_watcher};
}
