/*
 * Local spawn.  A process spawned on the caller's own shard is made ready
 * at once; one spawned onto another shard (or from a thread outside the
 * engine) is an embryo: its slot is published first, so its pid works at
 * once, and a SIG_SPAWN item activates it on its shard, in order with
 * whatever was sent to it meanwhile.
 */
#include "proc/internal.h"

#include <errno.h>

_Static_assert(sizeof(struct kumo_proc) <= KUMO__BLK, "kumo_proc must fit a cache block");

int kumo_spawn(kumo_node *node, kumo_proc *self, const kumo_spawn_opts *opts, kumo_init_fn init,
               void *state, kumo_pid *out)
{
    static const kumo_spawn_opts defaults = {.shard = KUMO_SHARD_SAME};
    if (!opts)
        opts = &defaults;
    if (!node || !init)
        return -EINVAL;
    if ((opts->link || opts->monitor) && !self)
        return -EINVAL;
    return kumo__spawn(node, kumo__pshard_of(self), self, opts, init, state, NULL, out);
}

int kumo__spawn(struct kumo_node *node, struct pshard *src, kumo_proc *self,
                const kumo_spawn_opts *opts, kumo_init_fn init, void *state,
                const struct kumo__spawn_watch *rw, kumo_pid *out)
{
    if (atomic_load_explicit(&node->stopping, memory_order_relaxed))
        return -KUMO_ESHUTDOWN;
    unsigned dst;
    if (opts->shard >= 0) {
        if ((unsigned)opts->shard >= node->n)
            return -EINVAL;
        dst = (unsigned)opts->shard;
    } else if (opts->shard == KUMO_SHARD_RR) {
        dst = src ? (src->rr_next++ % node->n) : atomic_fetch_add(&node->foreign_rr, 1) % node->n;
    } else if (opts->shard != KUMO_SHARD_SAME) {
        return -EINVAL;
    } else {
        dst = src ? src->id : 0;
    }
    struct pshard *ps = node->ps[dst];
    bool local = src == ps;

    struct kumo_proc *p = kumo__blk_alloc();
    if (!p)
        return -ENOMEM;
    memset(p, 0, sizeof *p);
    int err = kumo__slot_alloc(ps, local, &p->slot);
    if (err) {
        kumo__blk_free(p);
        return err;
    }
    p->mbox_tail = &p->mbox_head;
    p->cursor = &p->mbox_head;
    p->init = init;
    p->state = state;
    p->on_exit = opts->on_exit;
    p->node = node;
    p->shard = (uint16_t)dst;
    p->serial = src ? ((uint64_t)(src->id + 1) << 48) | ++src->serial_next
                    : (0xFFFFull << 48) | (atomic_fetch_add(&node->foreign_serial, 1) + 1);
    p->flags =
        PF_INIT | (opts->trap_exit ? PF_TRAP : 0) | (local ? 0 : PF_EMBRYO | PF_NODE_COUNTED);
    kumo_pid child = kumo__pid_of(p);

    int err_ret = -ENOMEM;
    uint64_t ref = 0;
    struct kumo_msg *sm = NULL;
    if (!local) {
        sm = kumo__msg_new(sizeof p);
        if (!sm)
            goto fail;
        sm->kind = SIG_SPAWN;
        msg_set_dst(sm, child);
        memcpy(sm->data, &p, sizeof p);
    }
    if (opts->link || opts->monitor) {
        kumo_pid me = kumo__pid_of(self);
        struct proc_ext *ce = kumo__ext(p);
        kumo__inbox_lock(self);
        struct proc_ext *se = kumo__ext(self);
        ref = opts->monitor ? kumo__new_ref(node, self) : 0;
        bool ok = ce && se;
        if (ok && opts->link)
            ok = !kumo__watch_add(&ce->watchers, me, 0, W_LINK) &&
                 !kumo__watch_add(&se->watching, child, 0, W_LINK);
        if (ok && opts->monitor)
            ok = !kumo__watch_add(&ce->watchers, me, ref, W_MONITOR) &&
                 !kumo__watch_add(&se->watching, child, ref, W_MONITOR);
        kumo__inbox_unlock(self);
        if (!ok)
            goto fail;
        if (opts->monitor)
            *opts->monitor = (kumo_ref){.node = node->id, .id = ref};
    }
    if (rw && (rw->link || rw->monitor)) {
        /* A watcher given by pid: on another node only the child's side is
         * ours; when it is `self`, its side too, before the child runs. */
        struct proc_ext *ce = kumo__ext(p);
        bool ok = ce;
        if (ok && rw->link)
            ok = !kumo__watch_add(&ce->watchers, rw->watcher, 0, W_LINK);
        if (ok && rw->monitor)
            ok = !kumo__watch_add(&ce->watchers, rw->watcher, rw->ref, W_MONITOR);
        if (ok && self && kumo_pid_eq(rw->watcher, kumo__pid_of(self))) {
            kumo__inbox_lock(self);
            struct proc_ext *se = kumo__ext(self);
            ok = se != NULL;
            if (ok && rw->link)
                ok = !kumo__watch_add(&se->watching, child, 0, W_LINK);
            if (ok && rw->monitor)
                ok = !kumo__watch_add(&se->watching, child, rw->ref, W_MONITOR);
            if (!ok && se) {
                kumo__watch_remove(&se->watching, child, 0, W_LINK);
                kumo__watch_remove(&se->watching, child, rw->ref, W_MONITOR);
            }
            kumo__inbox_unlock(self);
        }
        if (!ok)
            goto fail;
    }
    if (local)
        pshard_live_add(ps, 1); /* the owner's plain counter */
    else
        atomic_fetch_add_explicit(&node->remote_live, 1, memory_order_relaxed);
    kumo__slot_publish(ps, p);
    if (local) {
        kumo__proc_make_ready(ps, p);
    } else if (src) {
        kumo__post_local(node, src, sm);
    } else if (kumo__foreign_put(node->eng, dst, &sm->link)) {
        /* The node stopped after our check: its shard threads are gone,
         * so undo the spawn here (no callback: the state stays ours). */
        struct slot *s = kumo__slot_at(ps, p->slot); /* published above: exists */
        if (s) {
            atomic_store(&s->serial, 0);
            atomic_store(&s->p, NULL);
        }
        atomic_fetch_sub(&node->remote_live, 1);
        err_ret = -KUMO_ESHUTDOWN;
        goto fail;
    }
    if (out)
        *out = child;
    return 0;
fail:
    if (self && (opts->link || opts->monitor) && self->ext) {
        kumo__inbox_lock(self);
        if (self->ext) {
            kumo__watch_remove(&self->ext->watching, child, 0, W_LINK);
            kumo__watch_remove(&self->ext->watching, child, ref, W_MONITOR);
        }
        kumo__inbox_unlock(self);
    }
    if (sm)
        kumo__msg_free(sm);
    /* The slot is not (or no longer) published: return it. */
    if (local)
        kumo__slot_release(ps, p->slot);
    else
        kumo__slot_give_back(ps, p->slot);
    kumo__msg_free_chain(p->mbox_head);
    kumo__proc_free(p);
    return err_ret;
}
