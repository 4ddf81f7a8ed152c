/*
 * Delivery: applying one item of the signal set (proc/internal.h) to a
 * process of this shard.  Runs on the destination shard: for items from
 * the shard-local queue, the cross-shard rings, the foreign queue and the
 * node controller alike.
 */
#include "proc/internal.h"

static inline void mbox_append(struct kumo_proc *p, struct kumo_msg *m)
{
    m->link.next = NULL;
    *p->mbox_tail = m;
    p->mbox_tail = (struct kumo_msg **)&m->link.next;
}

static void deliver_data(struct pshard *ps, struct kumo_proc *p, struct kumo_msg *m)
{
    if (p->flags & PF_FOREIGN) {
        kumo__inbox_deliver(p, m);
        return;
    }
    mbox_append(p, m);
    if (p->flags & PF_WAITING)
        kumo__proc_make_ready(ps, p);
}

static void activate(struct pshard *ps, struct kumo_msg *m)
{
    struct kumo_proc *p;
    memcpy(&p, m->data, sizeof p);
    kumo__msg_free(m);
    struct kumo_msg *parked = p->mbox_head;
    p->mbox_head = NULL;
    p->mbox_tail = &p->mbox_head;
    p->flags &= ~PF_EMBRYO;
    if (ps->stopping) {
        kumo_reason r;
        kumo__reason_set(&r, KUMO_SHUTDOWN, NULL);
        p->flags &= ~PF_INIT;
        kumo__die(ps, p, &r);
    } else {
        kumo__proc_make_ready(ps, p);
    }
    while (parked) {
        struct kumo_msg *n = msg_next(parked);
        kumo__deliver(ps, parked);
        parked = n;
    }
}

static void handle_exit(struct pshard *ps, struct kumo_proc *p, struct kumo_msg *m)
{
    kumo_exit_msg *em = (kumo_exit_msg *)m->data;
    if (m->flags & (MF_LINK | MF_ELINK)) {
        /* Only a link we still hold may fire (unlink drops in-flight exits);
         * an Erlang link is gone from both of our lists once it fired. */
        kumo__inbox_lock(p);
        bool held = false;
        if (p->ext && (m->flags & MF_LINK))
            held = kumo__watch_remove(&p->ext->watching, em->from, 0, W_LINK);
        if (p->ext && (m->flags & MF_ELINK)) {
            held = kumo__watch_remove(&p->ext->watching, em->from, 0, W_ELINK);
            kumo__watch_remove(&p->ext->watchers, em->from, 0, W_ELINK);
        }
        kumo__inbox_unlock(p);
        if (!held) {
            kumo__msg_free(m);
            return;
        }
    }
    if (p->flags & (PF_TRAP | PF_FOREIGN)) {
        m->kind = SIG_DATA;
        m->type = ps->node->type_exit;
        m->flags = 0;
        m->from = (kumo_pid){0}; /* engine messages have no sender (kumo.h) */
        deliver_data(ps, p, m);
        return;
    }
    /* Cloud Haskell's link fires on any end of its target, normal too;
     * Erlang's rule (a normal exit signal is ignored) holds for its links
     * and for kumo_exit, except a process's signal to itself. */
    if (em->reason.kind == KUMO_NORMAL && !(m->flags & MF_LINK) &&
        !kumo_pid_eq(em->from, kumo__pid_of(p))) {
        kumo__msg_free(m);
        return;
    }
    kumo_reason r = em->reason;
    r.via = m->flags & (MF_LINK | MF_ELINK) ? KUMO_VIA_LINK : KUMO_VIA_EXIT;
    r.by = em->from;
    kumo__msg_free(m);
    kumo__die(ps, p, &r);
}

/*
 * Delivers the notification of a watch just taken off p's list, with p's
 * inbox lock held, and releases it.  An inbox gets it before the lock
 * goes: kumo_unmonitor on its thread finds either the watch or the queued
 * message, never neither (then the DOWN would come after it returned).
 */
static void deliver_watch_end(struct pshard *ps, struct kumo_proc *p, struct kumo_msg *m)
{
    if (p->flags & PF_FOREIGN) {
        kumo__inbox_deliver_locked(p, m);
        kumo__inbox_unlock(p);
        return;
    }
    kumo__inbox_unlock(p);
    deliver_data(ps, p, m);
}

static void handle_down(struct pshard *ps, struct kumo_proc *p, struct kumo_msg *m)
{
    kumo_down_msg *d = (kumo_down_msg *)m->data;
    kumo__inbox_lock(p);
    bool held = p->ext && kumo__watch_remove(&p->ext->watching, d->pid, m->aux, W_MONITOR);
    kumo_send_port port;
    bool of_port = held && p->ext->nport_mons && kumo__port_mon_take(p->ext, m->aux, &port);
    if (!held) {
        kumo__inbox_unlock(p);
        kumo__msg_free(m);
        return;
    }
    if (of_port) {
        /* A port monitor: the same notification, naming the port. */
        struct kumo_msg *pm = kumo__msg_new(sizeof(kumo_port_down_msg));
        if (pm) {
            kumo_port_down_msg *pd = (kumo_port_down_msg *)pm->data;
            pd->ref = d->ref;
            pd->port = port;
            pd->reason = d->reason;
            pm->kind = SIG_DATA;
            pm->type = ps->node->type_port_down;
            pm->aux = m->aux;
            pm->from = (kumo_pid){0};
            kumo__msg_free(m);
            deliver_watch_end(ps, p, pm);
            return;
        }
        /* no memory for it: the plain DOWN carries the same news */
    }
    m->kind = SIG_DATA;
    m->type = ps->node->type_down;
    m->from = (kumo_pid){0}; /* engine messages have no sender (kumo.h) */
    deliver_watch_end(ps, p, m);
}

/* The answer to p's remote spawn: p now holds the link and monitor it
 * asked for (before any exit signal or DOWN from the child can arrive:
 * the controller posts this first), then gets the answer as a message. */
static void handle_spawn_reply(struct pshard *ps, struct kumo_proc *p, struct kumo_msg *m)
{
    kumo_did_spawn_msg *r = (kumo_did_spawn_msg *)m->data;
    if (r->err == 0 && (m->flags & (MF_SP_LINK | MF_SP_MONITOR))) {
        kumo__inbox_lock(p);
        struct proc_ext *e = kumo__ext(p);
        if (e && (m->flags & MF_SP_LINK))
            kumo__watch_add(&e->watching, r->pid, 0, W_LINK);
        if (e && (m->flags & MF_SP_MONITOR))
            kumo__watch_add(&e->watching, r->pid, r->ref.id, W_MONITOR);
        kumo__inbox_unlock(p);
    }
    m->kind = SIG_DATA;
    m->flags = 0;
    m->type = ps->node->type_did_spawn;
    m->aux = r->ref.id;
    m->from = (kumo_pid){0}; /* engine messages have no sender (kumo.h) */
    deliver_data(ps, p, m);
}

static void handle_node_down(struct pshard *ps, struct kumo_proc *p, struct kumo_msg *m)
{
    kumo__inbox_lock(p);
    kumo_pid nodepid;
    bool held = p->ext && kumo__watch_take_ref(&p->ext->watching, m->aux, W_NODE, &nodepid);
    if (!held) {
        kumo__inbox_unlock(p);
        kumo__msg_free(m);
        return;
    }
    m->kind = SIG_DATA;
    m->type = ps->node->type_node_down;
    m->from = (kumo_pid){0};
    deliver_watch_end(ps, p, m);
}

static void handle_watch(struct kumo_proc *p, struct kumo_msg *m)
{
    kumo__inbox_lock(p);
    struct proc_ext *e = kumo__ext(p);
    if (e) {
        switch (m->kind) {
        case SIG_LINK:
            if (kumo__watch_find(&e->watchers, m->from, 0, W_LINK) < 0)
                kumo__watch_add(&e->watchers, m->from, 0, W_LINK);
            break;
        case SIG_UNLINK:
            kumo__watch_remove(&e->watchers, m->from, 0, W_LINK);
            break;
        case SIG_MONITOR:
            kumo__watch_add(&e->watchers, m->from, m->aux, W_MONITOR);
            break;
        case SIG_DEMONITOR:
            kumo__watch_remove(&e->watchers, m->from, m->aux, W_MONITOR);
            break;
        case SIG_ELINK:
            if (kumo__watch_find(&e->watchers, m->from, 0, W_ELINK) < 0 &&
                kumo__watch_add(&e->watchers, m->from, 0, W_ELINK) == 0 &&
                kumo__watch_add(&e->watching, m->from, 0, W_ELINK))
                kumo__watch_remove(&e->watchers, m->from, 0, W_ELINK);
            break;
        case SIG_EUNLINK:
            kumo__watch_remove(&e->watchers, m->from, 0, W_ELINK);
            kumo__watch_remove(&e->watching, m->from, 0, W_ELINK);
            break;
        }
    }
    kumo__inbox_unlock(p);
    kumo__msg_free(m);
}

void kumo__deliver(struct pshard *ps, struct kumo_msg *m)
{
    if (m->kind == SIG_SPAWN) {
        activate(ps, m);
        return;
    }
    struct kumo_proc *p = kumo__lookup(ps, m->dst_slot, m->dst_serial);
    if (__builtin_expect(!p, 0) || (p->flags & (PF_DEAD | PF_EMBRYO | PF_FOREIGN)) ||
        m->kind != SIG_DATA)
        goto slow;
    /* the common case: data for a live process on this shard */
    mbox_append(p, m);
    if (p->flags & PF_WAITING)
        kumo__proc_make_ready(ps, p);
    return;
slow:
    if (!p || (p->flags & PF_DEAD)) {
        kumo__dead_letter(ps->node, ps, m);
        return;
    }
    if (p->flags & PF_EMBRYO) {
        mbox_append(p, m); /* replayed in order at activation */
        return;
    }
    switch (m->kind) {
    case SIG_DATA:
        deliver_data(ps, p, m);
        break;
    case SIG_CHAN:
        kumo__chan_deliver(p, m);
        break;
    case SIG_LINK:
    case SIG_UNLINK:
    case SIG_MONITOR:
    case SIG_DEMONITOR:
    case SIG_ELINK:
    case SIG_EUNLINK:
        handle_watch(p, m);
        break;
    case SIG_EXIT:
        handle_exit(ps, p, m);
        break;
    case SIG_KILL: {
        kumo_exit_msg *em = (kumo_exit_msg *)m->data;
        kumo_reason r = em->reason;
        r.via = KUMO_VIA_KILL;
        r.by = em->from;
        kumo__msg_free(m);
        kumo__die(ps, p, &r);
        break;
    }
    case SIG_DOWN:
        handle_down(ps, p, m);
        break;
    case SIG_SPAWN_REPLY:
        handle_spawn_reply(ps, p, m);
        break;
    case SIG_NODE_DOWN:
        handle_node_down(ps, p, m);
        break;
    case SIG_INFO:
        kumo__info_answer(ps->node, ps, kumo__pid_of(p), p, m->from, m->aux, 0);
        kumo__msg_free(m);
        break;
    case SIG_INBOX_CLOSE: {
        kumo__msg_free(m);
        kumo_reason r;
        kumo__reason_set(&r, KUMO_NORMAL, NULL);
        kumo__die(ps, p, &r);
        break;
    }
    default:
        kumo__log(KUMO_LOG_ERROR, "shard %u: dropping item of unknown kind %u", ps->id, m->kind);
        kumo__msg_free(m);
    }
}

void kumo__hook_deliver(void *ctx, struct kumo__shard *sh, struct kumo__item *it)
{
    (void)ctx;
    kumo__deliver(sh->user, (struct kumo_msg *)it);
}
