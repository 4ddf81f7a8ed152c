/*
 * The local registry's public functions (kumo.h, "Local registry"): a name
 * table per node (registry/names.c) plus the death hook that releases a
 * process's names (kumo__die calls kumo__names_release for a process whose
 * slot was marked named).
 */
#include "proc/internal.h"

#include <linux/membarrier.h>

/* The registry's monitor of another node's pid (as kumo__registry_pid):
 * SIG_MONITOR or SIG_DEMONITOR with `ref`. */
static int registry_watch(kumo_node *node, kumo_pid pid, uint8_t kind, uint64_t ref)
{
    struct kumo_msg *m = kumo__msg_new(0);
    if (!m)
        return -ENOMEM;
    m->kind = kind;
    m->aux = ref;
    m->from = kumo__registry_pid(node);
    msg_set_dst(m, pid);
    struct kumo__shard *sh = kumo__shard_current();
    kumo__route(node, sh && sh->eng == node->eng ? sh->user : NULL, pid, m);
    return 0;
}

/* A pid of another node, registered here: the registry monitors it, and
 * its DOWN releases its names (proc/route.c).  One monitor per name, kept
 * with it; unregistering the name ends it. */
static int register_remote_pid(kumo_node *node, const char *name, kumo_pid pid)
{
    if (!node->dist || atomic_load(&node->stopping))
        return -KUMO_ENOPROC;
    uint64_t ref = kumo__new_ref(node, NULL);
    int err = kumo__names_add(&node->names, name, pid, ref);
    if (err)
        return err;
    err = registry_watch(node, pid, SIG_MONITOR, ref);
    if (err)
        kumo__names_remove(&node->names, name, &pid, NULL, NULL);
    return err;
}

int kumo_register(kumo_node *node, const char *name, kumo_pid pid)
{
    if (pid.node != node->id && pid.node != 0)
        return register_remote_pid(node, name, pid);
    if (!kumo__pid_alive(node, pid))
        return -KUMO_ENOPROC;
    int err = kumo__names_add(&node->names, name, pid, 0);
    if (err)
        return err;
    kumo__mark_named(node, pid);
    /* The process may have died between the check and the mark: its death
     * either saw the mark (and released the name) or we see it dead now.
     * Death orders its own store->load only with a compiler barrier when
     * membarrier is available; this side then pays for both. */
    if (node->eng->feat.membarrier)
        kumo__membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED);
    if (!kumo__pid_alive(node, pid)) {
        kumo__names_remove(&node->names, name, &pid, NULL, NULL);
        return -KUMO_ENOPROC;
    }
    return 0;
}

int kumo_unregister(kumo_node *node, const char *name)
{
    kumo_pid pid;
    uint64_t ref = 0;
    int err = kumo__names_remove(&node->names, name, NULL, &pid, &ref);
    if (!err && ref)
        registry_watch(node, pid, SIG_DEMONITOR, ref); /* no memory: it ends with pid */
    return err;
}

int kumo_whereis(kumo_node *node, const char *name, kumo_pid *pid)
{
    return kumo__names_lookup(&node->names, name, pid);
}

int kumo_registered(kumo_node *node, void (*fn)(const char *, kumo_pid, void *), void *arg)
{
    return kumo__names_each(&node->names, fn, arg);
}

int kumo_nsend(kumo_proc *self, const char *name, uint64_t type, const void *data, size_t len)
{
    kumo_pid to;
    if (kumo__names_lookup(&self->node->names, name, &to))
        return 0; /* unknown name: dropped, as in Cloud Haskell */
    return kumo_send(self, to, type, data, len);
}
