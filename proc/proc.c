/*
 * Process records: the rarely used extension, refs and reasons, freeing,
 * and death (kumo__die).  On the process's shard, except where an inbox's
 * mutex is taken.
 */
#include "proc/internal.h"
#include "proc/dist/dist.h"

#include <stdio.h>

struct proc_ext *kumo__ext(struct kumo_proc *p)
{
    if (p->ext)
        return p->ext;
    struct proc_ext *e = kumo__zalloc(sizeof *e);
    if (!e)
        return NULL;
    e->p = p;
    e->watchers.by_watcher = true;
    kumo__timer_init(&e->timer);
    p->ext = e;
    return e;
}

static void ext_fini(struct proc_ext *e)
{
    kumo__watch_free(&e->watchers);
    kumo__watch_free(&e->watching);
    kumo__free(e->port_mons, sizeof *e->port_mons * e->capport_mons);
}

bool kumo__port_mon_take(struct proc_ext *e, uint64_t ref, kumo_send_port *port)
{
    for (uint32_t i = 0; i < e->nport_mons; i++)
        if (e->port_mons[i].ref == ref) {
            if (port)
                *port = e->port_mons[i].port;
            e->port_mons[i] = e->port_mons[--e->nport_mons];
            return true;
        }
    return false;
}

uint64_t kumo__new_ref(struct kumo_node *node, struct kumo_proc *self)
{
    struct pshard *ps = kumo__pshard_of(self);
    if (ps)
        return ((uint64_t)(ps->id + 1) << 48) | ++ps->ref_next;
    return (0xFFFFull << 48) | (atomic_fetch_add(&node->foreign_ref, 1) + 1);
}

void kumo__reason_set(kumo_reason *r, kumo_reason_kind k, const char *text)
{
    r->kind = k;
    r->via = KUMO_VIA_NONE;
    r->by = (kumo_pid){0};
    if (text)
        snprintf(r->text, sizeof r->text, "%s", text);
    else
        r->text[0] = 0;
}
void kumo__proc_free(struct kumo_proc *p)
{
    if (p->ext) {
        ext_fini(p->ext);
        kumo__free(p->ext, sizeof *p->ext);
    }
    kumo__blk_free(p);
}

void kumo__msg_free_chain(struct kumo_msg *m)
{
    while (m) {
        struct kumo_msg *n = msg_next(m);
        kumo__msg_free(m);
        m = n;
    }
}

void kumo__die(struct pshard *ps, struct kumo_proc *p, const kumo_reason *why)
{
    if (p->flags & PF_DEAD)
        return;
    if (p->flags & PF_RUNNING) {
        struct proc_ext *e = kumo__ext(p);
        if (e) {
            p->flags |= PF_DYING;
            e->reason = *why;
        }
        return;
    }
    kumo_reason reason = *why;
    kumo_pid me = kumo__pid_of(p);
    struct kumo_node *node = ps->node;
    struct slot *s = kumo__slot_at(ps, p->slot);
    if (p->flags & PF_BUSY)
        kumo__busy_unlink(ps, p);

    kumo__inbox_lock(p);
    p->flags |= PF_DEAD;
    p->flags &= ~PF_WAITING;
    /* Store serial, then load named; kumo_register stores named, then loads
     * serial.  The store->load order on this side is free when kumo_register
     * issues membarrier (it is rare; deaths are not). */
    atomic_store_explicit(&s->serial, 0, memory_order_relaxed);
    atomic_store_explicit(&s->p, NULL, memory_order_relaxed);
    if (node->eng->feat.membarrier)
        atomic_signal_fence(memory_order_seq_cst);
    else
        atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&s->named, memory_order_relaxed)) {
        atomic_store(&s->named, 0);
        kumo__names_release(&node->names, me);
    }
    kumo__slot_release(ps, p->slot);

    struct proc_ext *e = p->ext;
    if (e) {
        kumo__timer_cancel(&ps->sh->timers, &e->timer);
        for (uint32_t i = 0; i < e->watchers.n; i++) {
            struct watch *w = &e->watchers.v[i];
            if (w->kind == W_LINK)
                kumo__post_reason_from(node, ps, me, w->pid, SIG_EXIT, MF_LINK, 0, &reason);
            else if (w->kind == W_ELINK)
                kumo__post_reason_from(node, ps, me, w->pid, SIG_EXIT, MF_ELINK, 0, &reason);
            else
                kumo__post_reason_from(node, ps, me, w->pid, SIG_DOWN, 0, w->ref, &reason);
        }
        /* Tell the processes we watched to forget us. */
        for (uint32_t i = 0; i < e->watching.n; i++) {
            struct watch *w = &e->watching.v[i];
            if (w->kind == W_ELINK)
                continue; /* told by the exit signal above */
            struct kumo_msg *m = kumo__msg_new(0);
            if (!m)
                continue;
            m->kind = w->kind == W_LINK      ? SIG_UNLINK
                      : w->kind == W_MONITOR ? SIG_DEMONITOR
                                             : SIG_DEMONITOR_NODE;
            m->aux = w->ref;
            m->from = me;
            msg_set_dst(m, w->pid);
            kumo__route(node, ps, w->pid, m);
        }
        ext_fini(e);
        if (!(p->flags & PF_FOREIGN))
            kumo__ports_free(p); /* an inbox's thread may still hold its ports */
    }
    if (p->flags & (PF_DIST | PF_FOREIGN))
        kumo__dist_forget(node, ps, me);
    if (p->flags & PF_FOREIGN) {
        atomic_fetch_sub(&node->inboxes_live, 1);
        kumo__inbox_closed(p, reason.kind == KUMO_SHUTDOWN);
        kumo__inbox_unlock(p);
        return; /* the inbox owns its memory and its queue */
    }
    if (p->flags & PF_NODE_COUNTED)
        atomic_fetch_sub_explicit(&node->remote_live, 1, memory_order_relaxed);
    else
        pshard_live_add(ps, -1);
    kumo__msg_free_chain(p->mbox_head);
    p->mbox_head = NULL;
    p->mbox_tail = &p->mbox_head;
    if (p->on_exit)
        p->on_exit(p->state, &reason);
    if (!(p->flags & PF_QUEUED))
        kumo__proc_free(p);
}
