/*
 * A node's local name table: name -> pid, safe from any thread.
 * Writers (register/unregister/release) take the write lock; whereis and
 * named sends take the read lock.  The process layer calls
 * kumo__names_release when a process that held a name ends.
 */
#ifndef KUMO_REGISTRY_NAMES_H
#define KUMO_REGISTRY_NAMES_H

#include <kumo/kumo.h>
#include <pthread.h>

struct kumo__name_entry;

struct kumo__names {
    pthread_rwlock_t lock;
    struct kumo__name_entry **buckets;
    size_t nbuckets, count;
};

int kumo__names_init(struct kumo__names *t);
void kumo__names_fini(struct kumo__names *t);
/* 0, -KUMO_ENAMETAKEN, -EINVAL, -ENOMEM.  `ref`: the registry's monitor
 * of pid when it is another node's (0 otherwise), kept with the name. */
int kumo__names_add(struct kumo__names *t, const char *name, kumo_pid pid, uint64_t ref);
/* 0 or -KUMO_ENONAME.  With `only` non-NULL, removes the name only if it
 * maps to *only.  The removed name's pid and ref go to *pid and *ref
 * (either may be NULL). */
int kumo__names_remove(struct kumo__names *t, const char *name, const kumo_pid *only, kumo_pid *pid,
                       uint64_t *ref);
int kumo__names_lookup(struct kumo__names *t, const char *name, kumo_pid *out);
/* Drops every name of `pid`; returns how many. */
int kumo__names_release(struct kumo__names *t, kumo_pid pid);
int kumo__names_each(struct kumo__names *t, void (*fn)(const char *, kumo_pid, void *), void *arg);

#endif
