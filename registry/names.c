#include "registry/names.h"

#include "engine/alloc.h"

#include <errno.h>
#include <string.h>
#include <xxhash.h>

struct kumo__name_entry {
    struct kumo__name_entry *next;
    kumo_pid pid;
    uint64_t ref; /* the registry's monitor of another node's pid, or 0 */
    size_t len;
    char name[];
};

static size_t entry_size(size_t len)
{
    return sizeof(struct kumo__name_entry) + len + 1;
}

int kumo__names_init(struct kumo__names *t)
{
    t->nbuckets = 64;
    t->count = 0;
    t->buckets = kumo__zalloc(sizeof(*t->buckets) * t->nbuckets);
    if (!t->buckets)
        return -ENOMEM;
    pthread_rwlock_init(&t->lock, NULL);
    return 0;
}

void kumo__names_fini(struct kumo__names *t)
{
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct kumo__name_entry *e = t->buckets[i];
        while (e) {
            struct kumo__name_entry *n = e->next;
            kumo__free(e, entry_size(e->len));
            e = n;
        }
    }
    kumo__free(t->buckets, sizeof(*t->buckets) * t->nbuckets);
    t->buckets = NULL;
    pthread_rwlock_destroy(&t->lock);
}

static size_t bucket_of(struct kumo__names *t, const char *name, size_t len)
{
    return (size_t)XXH3_64bits(name, len) & (t->nbuckets - 1);
}

static struct kumo__name_entry **find(struct kumo__names *t, const char *name, size_t len)
{
    struct kumo__name_entry **pp = &t->buckets[bucket_of(t, name, len)];
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->len == len && !memcmp((*pp)->name, name, len))
            return pp;
    return pp;
}

static void grow(struct kumo__names *t)
{
    size_t nb = t->nbuckets * 2;
    struct kumo__name_entry **b = kumo__zalloc(sizeof(*b) * nb);
    if (!b)
        return; /* keep the longer chains; still correct */
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct kumo__name_entry *e = t->buckets[i];
        while (e) {
            struct kumo__name_entry *n = e->next;
            size_t k = (size_t)XXH3_64bits(e->name, e->len) & (nb - 1);
            e->next = b[k];
            b[k] = e;
            e = n;
        }
    }
    kumo__free(t->buckets, sizeof(*t->buckets) * t->nbuckets);
    t->buckets = b;
    t->nbuckets = nb;
}

int kumo__names_add(struct kumo__names *t, const char *name, kumo_pid pid, uint64_t ref)
{
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > KUMO_NAME_MAX)
        return -EINVAL;
    struct kumo__name_entry *e = kumo__alloc(entry_size(len));
    if (!e)
        return -ENOMEM;
    e->pid = pid;
    e->ref = ref;
    e->len = len;
    memcpy(e->name, name, len + 1);
    pthread_rwlock_wrlock(&t->lock);
    struct kumo__name_entry **pp = find(t, name, len);
    if (*pp) {
        pthread_rwlock_unlock(&t->lock);
        kumo__free(e, entry_size(len));
        return -KUMO_ENAMETAKEN;
    }
    e->next = NULL;
    *pp = e;
    if (++t->count > t->nbuckets * 2)
        grow(t);
    pthread_rwlock_unlock(&t->lock);
    return 0;
}

int kumo__names_remove(struct kumo__names *t, const char *name, const kumo_pid *only, kumo_pid *pid,
                       uint64_t *ref)
{
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > KUMO_NAME_MAX)
        return -KUMO_ENONAME;
    pthread_rwlock_wrlock(&t->lock);
    struct kumo__name_entry **pp = find(t, name, len);
    struct kumo__name_entry *e = *pp;
    if (!e || (only && !kumo_pid_eq(e->pid, *only))) {
        pthread_rwlock_unlock(&t->lock);
        return -KUMO_ENONAME;
    }
    *pp = e->next;
    t->count--;
    pthread_rwlock_unlock(&t->lock);
    if (pid)
        *pid = e->pid;
    if (ref)
        *ref = e->ref;
    kumo__free(e, entry_size(e->len));
    return 0;
}

int kumo__names_lookup(struct kumo__names *t, const char *name, kumo_pid *out)
{
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > KUMO_NAME_MAX)
        return -KUMO_ENONAME;
    pthread_rwlock_rdlock(&t->lock);
    struct kumo__name_entry *e = *find(t, name, len);
    if (e)
        *out = e->pid;
    pthread_rwlock_unlock(&t->lock);
    return e ? 0 : -KUMO_ENONAME;
}

int kumo__names_release(struct kumo__names *t, kumo_pid pid)
{
    int n = 0;
    struct kumo__name_entry *dead = NULL;
    pthread_rwlock_wrlock(&t->lock);
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct kumo__name_entry **pp = &t->buckets[i];
        while (*pp) {
            struct kumo__name_entry *e = *pp;
            if (kumo_pid_eq(e->pid, pid)) {
                *pp = e->next;
                e->next = dead;
                dead = e;
                t->count--;
                n++;
            } else {
                pp = &e->next;
            }
        }
    }
    pthread_rwlock_unlock(&t->lock);
    while (dead) {
        struct kumo__name_entry *next = dead->next;
        kumo__free(dead, entry_size(dead->len));
        dead = next;
    }
    return n;
}

int kumo__names_each(struct kumo__names *t, void (*fn)(const char *, kumo_pid, void *), void *arg)
{
    /* Snapshot under the lock, call back without it (fn may use the
     * registry). */
    pthread_rwlock_rdlock(&t->lock);
    size_t n = t->count, k = 0;
    struct kumo__name_entry **snap = n ? kumo__alloc(sizeof(*snap) * n) : NULL;
    if (n && !snap) {
        pthread_rwlock_unlock(&t->lock);
        return -ENOMEM;
    }
    for (size_t i = 0; i < t->nbuckets; i++)
        for (struct kumo__name_entry *e = t->buckets[i]; e; e = e->next) {
            struct kumo__name_entry *c = kumo__alloc(entry_size(e->len));
            if (!c)
                continue;
            memcpy(c, e, entry_size(e->len));
            snap[k++] = c;
        }
    pthread_rwlock_unlock(&t->lock);
    for (size_t i = 0; i < k; i++) {
        if (fn)
            fn(snap[i]->name, snap[i]->pid, arg);
        kumo__free(snap[i], entry_size(snap[i]->len));
    }
    kumo__free(snap, sizeof(*snap) * n);
    return (int)k;
}
