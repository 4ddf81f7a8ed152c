/*
 * The local registry's public functions (kumo.h, "Local registry"): a name
 * table per node (registry/names.c) plus the death hook that releases a
 * process's names (kumo__die calls kumo__names_release for a process whose
 * slot was marked named).
 */
#include "proc/internal.h"

#include <linux/membarrier.h>

/* A pid of another node, registered here: the registry monitors it (as
 * kumo__registry_pid), and its DOWN releases its names (proc/route.c).
 * One monitor per registration; one that outlives an unregister ends
 * with the process. */
static int register_remote_pid(kumo_node *node, const char *name, kumo_pid pid)
{
    if (!node->dist || atomic_load(&node->stopping))
        return -KUMO_ENOPROC;
    struct kumo_msg *m = kumo__msg_new(0);
    if (!m)
        return -ENOMEM;
    int err = kumo__names_add(&node->names, name, pid);
    if (err) {
        kumo__msg_free(m);
        return err;
    }
    m->kind = SIG_MONITOR;
    m->aux = kumo__new_ref(node, NULL);
    m->from = kumo__registry_pid(node);
    msg_set_dst(m, pid);
    struct kumo__shard *sh = kumo__shard_current();
    kumo__route(node, sh && sh->eng == node->eng ? sh->user : NULL, pid, m);
    return 0;
}

int kumo_register(kumo_node *node, const char *name, kumo_pid pid)
{
    if (pid.node != node->id && pid.node != 0)
        return register_remote_pid(node, name, pid);
    if (!kumo__pid_alive(node, pid))
        return -KUMO_ENOPROC;
    int err = kumo__names_add(&node->names, name, pid);
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
        kumo__names_remove(&node->names, name, &pid);
        return -KUMO_ENOPROC;
    }
    return 0;
}

int kumo_unregister(kumo_node *node, const char *name)
{
    return kumo__names_remove(&node->names, name, NULL);
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
