/*
 * Nodes, the slot table, delivery of items to processes, the run loop and
 * process death.  Everything here runs on the owning shard unless said
 * otherwise.
 */
#include "proc/internal.h"
#include "transport/transport.h"

#include <errno.h>
#include <stdio.h>
#include <sys/random.h>
#include <xxhash.h>

/* ------------------------------------------------------------------ */
/* Messages                                                            */
/* ------------------------------------------------------------------ */

/* ------------------------------------------------------------------ */
/* Slots                                                               */
/* ------------------------------------------------------------------ */

static inline struct slot *slot_at(struct pshard *ps, uint32_t idx)
{
    if (idx >= SLOT_CHUNK * SLOT_MAX_CHUNKS)
        return NULL;
    struct slot *c =
        atomic_load_explicit(&ps->chunks[idx >> SLOT_CHUNK_BITS], memory_order_acquire);
    return c ? &c[idx & (SLOT_CHUNK - 1)] : NULL;
}

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

/* `owner`: called on ps's own shard thread. */
/* Unlocks free_mu, first publishing nfree_shared for the owner's look
 * without the lock (nfree_shared_hint). */
static void free_unlock(struct pshard *ps)
{
    atomic_store_explicit(&ps->nfree_shared_hint, ps->nfree_shared, memory_order_relaxed);
    pthread_mutex_unlock(&ps->free_mu);
}

static int slot_alloc(struct pshard *ps, bool owner, uint32_t *out)
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
static void slot_release(struct pshard *ps, uint32_t idx)
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

static inline struct kumo_proc *lookup(struct pshard *ps, uint32_t slot, uint64_t serial)
{
    struct slot *s = slot_at(ps, slot);
    if (!s || atomic_load_explicit(&s->serial, memory_order_acquire) != serial || serial == 0)
        return NULL;
    return atomic_load_explicit(&s->p, memory_order_relaxed);
}

static void slot_publish(struct pshard *ps, struct kumo_proc *p)
{
    struct slot *s = slot_at(ps, p->slot);
    if (!s) /* slot_alloc made the chunk exist: cannot happen */
        abort();
    atomic_store_explicit(&s->named, 0, memory_order_relaxed);
    atomic_store_explicit(&s->p, p, memory_order_relaxed);
    atomic_store_explicit(&s->serial, p->serial, memory_order_release);
}

bool kumo__pid_alive(struct kumo_node *node, kumo_pid pid)
{
    if (pid.node != node->id || pid.shard >= node->n || pid.serial == 0)
        return false;
    struct slot *s = slot_at(node->ps[pid.shard], pid.slot);
    return s && atomic_load(&s->serial) == pid.serial;
}

void kumo__mark_named(struct kumo_node *node, kumo_pid pid)
{
    struct slot *s = slot_at(node->ps[pid.shard], pid.slot);
    if (s)
        atomic_store(&s->named, 1);
}

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

struct proc_ext *kumo__ext(struct kumo_proc *p)
{
    if (p->ext)
        return p->ext;
    struct proc_ext *e = kumo__zalloc(sizeof *e);
    if (!e)
        return NULL;
    e->p = p;
    kumo__timer_init(&e->timer);
    p->ext = e;
    return e;
}

static void free_ext(struct proc_ext *e)
{
    kumo__watch_free(&e->watchers);
    kumo__watch_free(&e->watching);
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
    if (text)
        snprintf(r->text, sizeof r->text, "%s", text);
    else
        r->text[0] = 0;
}

static void deliver_msg(struct pshard *ps, struct kumo_msg *m);

/* ------------------------------------------------------------------ */
/* Posting                                                             */
/* ------------------------------------------------------------------ */

static void post_from(struct kumo_node *node, struct pshard *src, struct kumo_msg *m)
{
    if (m->dst_shard >= node->n) {
        kumo__msg_free(m);
        return;
    }
    if (src) {
        if (m->dst_shard == src->id) {
            /* Data goes straight to the mailbox while nothing is queued
             * locally (a queued signal must keep its place before it);
             * signals always queue, so a chain of exits never recurses. */
            if (m->kind == K_DATA && !src->lq_head) {
                deliver_msg(src, m);
                return;
            }
            m->link.next = NULL;
            *src->lq_tail = m;
            src->lq_tail = (struct kumo_msg **)&m->link.next;
        } else {
            kumo__shard_put(src->sh, m->dst_shard, &m->link);
        }
    } else if (kumo__foreign_put(node->eng, m->dst_shard, &m->link)) {
        kumo__msg_free(m);
    }
}

void kumo__post(struct kumo_node *node, struct kumo_proc *self, struct kumo_msg *m)
{
    post_from(node, kumo__pshard_of(self), m);
}

static int post_reason_from(struct kumo_node *node, struct pshard *src, kumo_pid from, kumo_pid to,
                            uint8_t kind, uint8_t flags, uint64_t aux, const kumo_reason *r)
{
    size_t len = kind == K_DOWN ? sizeof(kumo_down_msg) : sizeof(kumo_exit_msg);
    struct kumo_msg *m = kumo__msg_new(len);
    if (!m)
        return -ENOMEM;
    m->kind = kind;
    m->flags = flags;
    m->aux = aux;
    m->from = from;
    m->type = 0;
    msg_set_dst(m, to);
    if (kind == K_DOWN) {
        kumo_down_msg *d = (kumo_down_msg *)m->data;
        memset(d, 0, sizeof *d);
        d->ref = (kumo_ref){.node = node->id, .id = aux};
        d->pid = from;
        d->reason = *r;
    } else {
        kumo_exit_msg *e = (kumo_exit_msg *)m->data;
        memset(e, 0, sizeof *e);
        e->from = from;
        e->reason = *r;
    }
    post_from(node, src, m);
    return 0;
}

int kumo__post_reason(struct kumo_node *node, struct kumo_proc *self, kumo_pid from, kumo_pid to,
                      uint8_t kind, uint8_t flags, uint64_t aux, const kumo_reason *r)
{
    return post_reason_from(node, kumo__pshard_of(self), from, to, kind, flags, aux, r);
}

/* ------------------------------------------------------------------ */
/* Run queue                                                           */
/* ------------------------------------------------------------------ */

void kumo__proc_make_ready(struct pshard *ps, struct kumo_proc *p)
{
    if (p->flags & PF_QUEUED)
        return;
    p->flags |= PF_QUEUED;
    p->rq_next = NULL;
    *ps->rq_tail = p;
    ps->rq_tail = &p->rq_next;
}

static struct kumo_proc *rq_pop(struct pshard *ps)
{
    struct kumo_proc *p = ps->rq_head;
    if (p) {
        ps->rq_head = p->rq_next;
        if (!ps->rq_head)
            ps->rq_tail = &ps->rq_head;
        else
            __builtin_prefetch(ps->rq_head); /* runs next */
        p->flags &= ~PF_QUEUED;
    }
    return p;
}

/* ------------------------------------------------------------------ */
/* Death                                                               */
/* ------------------------------------------------------------------ */

_Static_assert(sizeof(struct kumo_proc) <= KUMO__BLK, "kumo_proc must fit a cache block");

static void free_proc(struct kumo_proc *p)
{
    if (p->ext) {
        free_ext(p->ext);
        kumo__free(p->ext, sizeof *p->ext);
    }
    kumo__blk_free(p);
}

static void free_list(struct kumo_msg *m)
{
    while (m) {
        struct kumo_msg *n = msg_next(m);
        kumo__msg_free(m);
        m = n;
    }
}

static void die(struct pshard *ps, struct kumo_proc *p, const kumo_reason *why)
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
    struct slot *s = slot_at(ps, p->slot);

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
    slot_release(ps, p->slot);

    struct proc_ext *e = p->ext;
    if (e) {
        kumo__timer_cancel(&ps->sh->timers, &e->timer);
        for (uint32_t i = 0; i < e->watchers.n; i++) {
            struct watch *w = &e->watchers.v[i];
            if (w->kind == W_LINK)
                post_reason_from(node, ps, me, w->pid, K_EXIT, MF_LINK, 0, &reason);
            else
                post_reason_from(node, ps, me, w->pid, K_DOWN, 0, w->ref, &reason);
        }
        /* Tell the processes we watched to forget us. */
        for (uint32_t i = 0; i < e->watching.n; i++) {
            struct watch *w = &e->watching.v[i];
            struct kumo_msg *m = kumo__msg_new(0);
            if (!m)
                continue;
            m->kind = w->kind == W_LINK ? K_UNLINK : K_DEMONITOR;
            m->aux = w->ref;
            m->from = me;
            msg_set_dst(m, w->pid);
            post_from(node, ps, m);
        }
        free_ext(e);
        kumo__ports_free(p);
    }
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
    free_list(p->mbox_head);
    p->mbox_head = NULL;
    p->mbox_tail = &p->mbox_head;
    if (p->on_exit)
        p->on_exit(p->state, &reason);
    if (!(p->flags & PF_QUEUED))
        free_proc(p);
}

/* ------------------------------------------------------------------ */
/* Delivery                                                            */
/* ------------------------------------------------------------------ */

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

/* An item for a process that is not (or no longer) there. */
static void dead_letter(struct pshard *ps, struct kumo_msg *m)
{
    kumo_pid dst = {
        .node = ps->node->id, .serial = m->dst_serial, .slot = m->dst_slot, .shard = m->dst_shard};
    kumo_reason r;
    kumo__reason_set(&r, KUMO_UNKNOWN_ID, NULL);
    if (m->kind == K_LINK)
        post_reason_from(ps->node, ps, dst, m->from, K_EXIT, MF_LINK, 0, &r);
    else if (m->kind == K_MONITOR)
        post_reason_from(ps->node, ps, dst, m->from, K_DOWN, 0, m->aux, &r);
    else if (m->kind == K_SPAWN)
        return; /* handled by the caller */
    kumo__msg_free(m);
}

static void deliver_msg(struct pshard *ps, struct kumo_msg *m);

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
        die(ps, p, &r);
    } else {
        kumo__proc_make_ready(ps, p);
    }
    while (parked) {
        struct kumo_msg *n = msg_next(parked);
        deliver_msg(ps, parked);
        parked = n;
    }
}

static void handle_exit(struct pshard *ps, struct kumo_proc *p, struct kumo_msg *m)
{
    kumo_exit_msg *em = (kumo_exit_msg *)m->data;
    if (m->flags & MF_LINK) {
        /* Only a link we still hold may fire (unlink drops in-flight exits). */
        kumo__inbox_lock(p);
        bool held = p->ext && kumo__watch_remove(&p->ext->watching, em->from, 0, W_LINK);
        kumo__inbox_unlock(p);
        if (!held) {
            kumo__msg_free(m);
            return;
        }
    }
    if (p->flags & (PF_TRAP | PF_FOREIGN)) {
        m->kind = K_DATA;
        m->type = ps->node->type_exit;
        m->from = (kumo_pid){0}; /* engine messages have no sender (kumo.h) */
        deliver_data(ps, p, m);
        return;
    }
    if (em->reason.kind == KUMO_NORMAL && !kumo_pid_eq(em->from, kumo__pid_of(p))) {
        kumo__msg_free(m);
        return;
    }
    kumo_reason r = em->reason;
    kumo__msg_free(m);
    die(ps, p, &r);
}

static void handle_down(struct pshard *ps, struct kumo_proc *p, struct kumo_msg *m)
{
    kumo_down_msg *d = (kumo_down_msg *)m->data;
    kumo__inbox_lock(p);
    bool held = p->ext && kumo__watch_remove(&p->ext->watching, d->pid, m->aux, W_MONITOR);
    kumo__inbox_unlock(p);
    if (!held) {
        kumo__msg_free(m);
        return;
    }
    m->kind = K_DATA;
    m->type = ps->node->type_down;
    m->from = (kumo_pid){0}; /* engine messages have no sender (kumo.h) */
    deliver_data(ps, p, m);
}

static void handle_watch(struct kumo_proc *p, struct kumo_msg *m)
{
    kumo__inbox_lock(p);
    struct proc_ext *e = kumo__ext(p);
    if (e) {
        switch (m->kind) {
        case K_LINK:
            if (kumo__watch_find(&e->watchers, m->from, 0, W_LINK) < 0)
                kumo__watch_add(&e->watchers, m->from, 0, W_LINK);
            break;
        case K_UNLINK:
            kumo__watch_remove(&e->watchers, m->from, 0, W_LINK);
            break;
        case K_MONITOR:
            kumo__watch_add(&e->watchers, m->from, m->aux, W_MONITOR);
            break;
        case K_DEMONITOR:
            kumo__watch_remove(&e->watchers, m->from, m->aux, W_MONITOR);
            break;
        }
    }
    kumo__inbox_unlock(p);
    kumo__msg_free(m);
}

static void deliver_msg(struct pshard *ps, struct kumo_msg *m)
{
    if (m->kind == K_SPAWN) {
        activate(ps, m);
        return;
    }
    struct kumo_proc *p = lookup(ps, m->dst_slot, m->dst_serial);
    if (__builtin_expect(!p, 0) || (p->flags & (PF_DEAD | PF_EMBRYO | PF_FOREIGN)) ||
        m->kind != K_DATA)
        goto slow;
    /* the common case: data for a live process on this shard */
    mbox_append(p, m);
    if (p->flags & PF_WAITING)
        kumo__proc_make_ready(ps, p);
    return;
slow:
    if (!p || (p->flags & PF_DEAD)) {
        dead_letter(ps, m);
        return;
    }
    if (p->flags & PF_EMBRYO) {
        mbox_append(p, m); /* replayed in order at activation */
        return;
    }
    switch (m->kind) {
    case K_DATA:
        deliver_data(ps, p, m);
        break;
    case K_CHAN:
        if (p->flags & PF_FOREIGN)
            kumo__msg_free(m);
        else
            kumo__chan_deliver(p, m);
        break;
    case K_LINK:
    case K_UNLINK:
    case K_MONITOR:
    case K_DEMONITOR:
        handle_watch(p, m);
        break;
    case K_EXIT:
        handle_exit(ps, p, m);
        break;
    case K_KILL: {
        kumo_reason r = ((kumo_exit_msg *)m->data)->reason;
        kumo__msg_free(m);
        die(ps, p, &r);
        break;
    }
    case K_DOWN:
        handle_down(ps, p, m);
        break;
    case K_INBOX_CLOSE: {
        kumo__msg_free(m);
        kumo_reason r;
        kumo__reason_set(&r, KUMO_NORMAL, NULL);
        die(ps, p, &r);
        break;
    }
    default:
        kumo__log(KUMO_LOG_ERROR, "shard %u: dropping item of unknown kind %u", ps->id, m->kind);
        kumo__msg_free(m);
    }
}

static void hook_deliver(void *ctx, struct kumo__shard *sh, struct kumo__item *it)
{
    deliver_msg(sh->user, (struct kumo_msg *)it);
}

/* ------------------------------------------------------------------ */
/* Selective receive and the run loop                                  */
/* ------------------------------------------------------------------ */

static inline bool accepts(const kumo_match *mt, const struct kumo_msg *m, void *state)
{
    switch (mt->kind) {
    case KUMO_MATCH_TYPE:
        return m->type == mt->type;
    case KUMO_MATCH_IF:
        return m->type == mt->type && mt->pred((const kumo_msg *)m, state);
    case KUMO_MATCH_ANY:
        return true;
    default:
        return false;
    }
}

/* Finds the message the current wait takes.  Returns it (removed from its
 * queue) and the match, or NULL.  The mailbox scan starts at p->cursor:
 * everything before it was already found unmatched by this same set. */
static struct kumo_msg *find(struct kumo_proc *p, const kumo_recv *set, const kumo_match **which)
{
    bool scanned = false;
    for (uint32_t i = 0; i < set->n; i++) {
        const kumo_match *mt = &set->matches[i];
        if (mt->kind == KUMO_MATCH_PORT) {
            struct kumo_msg *m = mt->port ? kumo__port_take(mt->port) : NULL;
            if (m) {
                *which = mt;
                return m;
            }
            continue;
        }
        if (scanned)
            continue;
        scanned = true;
        struct kumo_msg **pp = p->cursor;
        while (*pp) {
            struct kumo_msg *m = *pp;
            const kumo_match *hit = NULL;
            for (uint32_t j = i; j < set->n; j++) {
                const kumo_match *mj = &set->matches[j];
                if (mj->kind != KUMO_MATCH_PORT && accepts(mj, m, p->state)) {
                    hit = mj;
                    break;
                }
            }
            if (!hit) {
                pp = (struct kumo_msg **)&m->link.next;
                continue;
            }
            *pp = msg_next(m);
            /* The next message is usually taken next: start loading it
             * while this one is handled (deep mailboxes live in DRAM). */
            if (*pp)
                __builtin_prefetch(*pp);
            if (p->mbox_tail == (struct kumo_msg **)&m->link.next)
                p->mbox_tail = pp;
            if (hit->kind == KUMO_MATCH_ANY && !hit->fn) {
                /* matchUnknown: drop it and keep waiting on this set */
                kumo__msg_free(m);
                continue;
            }
            p->cursor = pp;
            *which = hit;
            return m;
        }
        p->cursor = pp;
    }
    return NULL;
}

/* Runs one callback of p (init, handler or timeout) and settles what it
 * declared.  Returns true if the process ended. */
static bool callback(struct pshard *ps, struct kumo_proc *p, kumo_handler fn, kumo_init_fn init,
                     struct kumo_msg *m)
{
    p->flags |= PF_RUNNING;
    p->flags &= ~(PF_DECLARED | PF_MSG_TAKEN);
    ps->cur_msg = m;
    if (init)
        init(p, p->state);
    else if (fn)
        fn(p, p->state, (kumo_msg *)m);
    ps->cur_msg = NULL;
    p->flags &= ~PF_RUNNING;
    if (m && !(p->flags & PF_MSG_TAKEN))
        kumo__msg_free(m);
    if (p->flags & PF_DYING) {
        kumo_reason r = p->ext->reason;
        p->flags &= ~PF_DYING;
        die(ps, p, &r);
        return true;
    }
    if (!(p->flags & PF_DECLARED)) {
        kumo_reason r;
        kumo__reason_set(&r, KUMO_NORMAL, NULL);
        die(ps, p, &r);
        return true;
    }
    return false;
}

static void run_proc(struct pshard *ps, struct kumo_proc *p)
{
    ps->current = p;
    for (unsigned turn = 0; turn < ps->node->budget; turn++) {
        if (p->flags & PF_INIT) {
            p->flags &= ~PF_INIT;
            kumo_init_fn init = p->init;
            p->set = NULL;
            if (callback(ps, p, NULL, init, NULL))
                goto out;
            continue;
        }
        const kumo_recv *set = p->set;
        const kumo_match *mt = NULL;
        struct kumo_msg *m = find(p, set, &mt);
        if (m || (p->flags & (PF_POLL | PF_TIMEDOUT))) {
            if (p->ext)
                kumo__timer_cancel(&ps->sh->timers, &p->ext->timer);
            p->flags &= ~(PF_WAITING | PF_POLL | PF_TIMEDOUT);
            p->prev_set = set;
            p->set = NULL;
            if (callback(ps, p, m ? mt->fn : set->on_timeout, NULL, m))
                goto out;
            continue;
        }
        p->flags |= PF_WAITING;
        goto out;
    }
    kumo__proc_make_ready(ps, p); /* budget used up: let others run */
out:
    ps->current = NULL;
}

static unsigned hook_run(void *ctx, struct kumo__shard *sh)
{
    struct pshard *ps = sh->user;
    unsigned work = 0;
    for (unsigned round = 0; round < 4096; round++) {
        if (ps->lq_head) {
            struct kumo_msg *m = ps->lq_head;
            ps->lq_head = NULL;
            ps->lq_tail = &ps->lq_head;
            while (m) {
                struct kumo_msg *n = msg_next(m);
                deliver_msg(ps, m);
                m = n;
                work++;
            }
        }
        struct kumo_proc *p = rq_pop(ps);
        if (!p) {
            if (!ps->lq_head)
                break;
            continue;
        }
        work++;
        if (p->flags & PF_DEAD) {
            free_proc(p);
            continue;
        }
        run_proc(ps, p);
    }
    return work;
}

static void hook_timer(void *ctx, struct kumo__shard *sh, struct kumo__timer *t)
{
    struct proc_ext *e = (struct proc_ext *)((char *)t - offsetof(struct proc_ext, timer));
    struct kumo_proc *p = e->p;
    if (p->flags & PF_DEAD)
        return;
    p->flags |= PF_TIMEDOUT;
    kumo__proc_make_ready(sh->user, p);
}

static void hook_shutdown(void *ctx, struct kumo__shard *sh)
{
    struct pshard *ps = sh->user;
    ps->stopping = true;
    kumo_reason r;
    kumo__reason_set(&r, KUMO_SHUTDOWN, NULL);
    uint32_t hwm = atomic_load(&ps->hwm);
    for (uint32_t i = 0; i < hwm; i++) {
        struct slot *s = slot_at(ps, i);
        if (!s || !atomic_load(&s->serial))
            continue;
        struct kumo_proc *p = atomic_load(&s->p);
        if (p && !(p->flags & (PF_EMBRYO | PF_DEAD))) {
            p->flags &= ~PF_INIT;
            die(ps, p, &r);
        }
    }
}

/* After the shard threads are gone: free an item that never arrived.  A
 * spawn item carries an embryo that never ran: it ends with shutdown. */
static void hook_discard(void *ctx, struct kumo__item *it)
{
    (void)ctx;
    struct kumo_msg *m = (struct kumo_msg *)it;
    if (m->kind == K_SPAWN) {
        struct kumo_proc *p;
        memcpy(&p, m->data, sizeof p);
        free_list(p->mbox_head);
        kumo_reason r;
        kumo__reason_set(&r, KUMO_SHUTDOWN, NULL);
        atomic_fetch_sub(&p->node->remote_live, 1);
        if (p->on_exit)
            p->on_exit(p->state, &r);
        free_proc(p);
    }
    kumo__msg_free(m);
}

/* ------------------------------------------------------------------ */
/* Spawn                                                               */
/* ------------------------------------------------------------------ */

int kumo_spawn(kumo_node *node, kumo_proc *self, const kumo_spawn_opts *opts, kumo_init_fn init,
               void *state, kumo_pid *out)
{
    static const kumo_spawn_opts defaults = {.shard = KUMO_SHARD_SAME};
    if (!opts)
        opts = &defaults;
    if (!node || !init)
        return -EINVAL;
    if (atomic_load_explicit(&node->stopping, memory_order_relaxed))
        return -KUMO_ESHUTDOWN;
    struct pshard *src = kumo__pshard_of(self);
    if ((opts->link || opts->monitor) && !self)
        return -EINVAL;
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
    int err = slot_alloc(ps, local, &p->slot);
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
        sm->kind = K_SPAWN;
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
    if (local)
        pshard_live_add(ps, 1); /* the owner's plain counter */
    else
        atomic_fetch_add_explicit(&node->remote_live, 1, memory_order_relaxed);
    slot_publish(ps, p);
    if (local) {
        kumo__proc_make_ready(ps, p);
    } else if (src) {
        post_from(node, src, sm);
    } else if (kumo__foreign_put(node->eng, dst, &sm->link)) {
        /* The node stopped after our check: its shard threads are gone,
         * so undo the spawn here (no callback: the state stays ours). */
        struct slot *s = slot_at(ps, p->slot); /* published above: exists */
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
    if (self && (opts->link || opts->monitor)) {
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
        slot_release(ps, p->slot);
    else {
        pthread_mutex_lock(&ps->free_mu);
        push_u32(&ps->free_shared, &ps->nfree_shared, &ps->capfree_shared, p->slot);
        free_unlock(ps);
    }
    free_list(p->mbox_head);
    free_proc(p);
    return err_ret;
}

/* Used by inbox.c: reserve a slot on shard 0 from a foreign thread and
 * publish the inbox's proc in it. */
int kumo__inbox_publish(struct kumo_node *node, struct kumo_proc *p)
{
    struct pshard *ps = node->ps[0];
    int err = slot_alloc(ps, false, &p->slot);
    if (err)
        return err;
    p->shard = 0;
    p->serial = (0xFFFFull << 48) | (atomic_fetch_add(&node->foreign_serial, 1) + 1);
    atomic_fetch_add(&node->inboxes_live, 1);
    slot_publish(ps, p);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Node                                                                */
/* ------------------------------------------------------------------ */

static void pshard_free(struct pshard *ps)
{
    if (!ps)
        return;
    for (uint32_t c = 0; c < SLOT_MAX_CHUNKS; c++) {
        struct slot *ch = atomic_load(&ps->chunks[c]);
        if (ch)
            kumo__free(ch, sizeof(struct slot) * SLOT_CHUNK);
    }
    kumo__free(ps->free_local, sizeof(uint32_t) * ps->capfree_local);
    kumo__free(ps->free_shared, sizeof(uint32_t) * ps->capfree_shared);
    pthread_mutex_destroy(&ps->free_mu);
    kumo__free(ps, sizeof *ps);
}

int kumo_node_start(const kumo_node_config *cfg, kumo_node **out)
{
    static const kumo_node_config defaults;
    if (!cfg)
        cfg = &defaults;
    kumo_node *node = kumo__zalloc(sizeof *node);
    if (!node)
        return -ENOMEM;
    int err = kumo__names_init(&node->names);
    if (err) {
        kumo__free(node, sizeof *node);
        return err;
    }
    while (node->id == 0)
        if (getrandom(&node->id, sizeof node->id, 0) != sizeof node->id)
            node->id = XXH3_64bits(&node, sizeof node) ^ (uint64_t)kumo__now_ns();
    node->max_message = cfg->max_message ? cfg->max_message : (64u << 20);
    if (node->max_message > UINT32_MAX - 4096)
        node->max_message = UINT32_MAX - 4096;
    node->budget = cfg->budget ? cfg->budget : 64;
    node->type_exit = kumo_type(KUMO_TYPE_EXIT_NAME);
    node->type_down = kumo_type(KUMO_TYPE_DOWN_NAME);

    struct kumo__engine_config ec = {.shards = cfg->shards,
                                     .no_pin = cfg->no_pin,
                                     .spin_ns = cfg->spin_ns,
                                     .ring_entries = cfg->ring_entries};
    struct kumo__engine_hooks hooks = {.ctx = node,
                                       .deliver = hook_deliver,
                                       .run = hook_run,
                                       .timer = hook_timer,
                                       .shutdown = hook_shutdown,
                                       .discard = hook_discard};
    err = kumo__engine_create(&ec, &hooks, &node->eng);
    if (err)
        goto fail;
    node->n = node->eng->n;
    node->ps = kumo__zalloc(sizeof(*node->ps) * node->n);
    if (!node->ps) {
        err = -ENOMEM;
        goto fail;
    }
    for (unsigned i = 0; i < node->n; i++) {
        struct pshard *ps = kumo__zalloc(sizeof *ps);
        if (!ps) {
            err = -ENOMEM;
            goto fail;
        }
        node->ps[i] = ps;
        ps->sh = node->eng->shards[i];
        ps->sh->user = ps;
        ps->node = node;
        ps->id = i;
        ps->rq_tail = &ps->rq_head;
        ps->lq_tail = &ps->lq_head;
        pthread_mutex_init(&ps->free_mu, NULL);
    }
    err = kumo__engine_start(node->eng);
    if (err)
        goto fail;
    *out = node;
    return 0;
fail:
    if (node->eng)
        kumo__engine_destroy(node->eng);
    if (node->ps)
        for (unsigned i = 0; i < node->n; i++)
            pshard_free(node->ps[i]);
    kumo__free(node->ps, sizeof(*node->ps) * node->n);
    kumo__names_fini(&node->names);
    kumo__free(node, sizeof *node);
    return err;
}

void kumo_node_stop(kumo_node *node)
{
    if (!node || node->stopped)
        return;
    atomic_store(&node->stopping, 1);
    kumo__engine_stop(node->eng);
    /* An inbox published while shard 0 was already shutting down was never
     * seen by it: close it here (the shards are gone, we are alone). */
    struct pshard *ps = node->ps[0];
    uint32_t hwm = atomic_load(&ps->hwm);
    for (uint32_t i = 0; i < hwm; i++) {
        struct slot *s = slot_at(ps, i);
        struct kumo_proc *p = s && atomic_load(&s->serial) ? atomic_load(&s->p) : NULL;
        if (p && (p->flags & PF_FOREIGN) && !(p->flags & PF_DEAD)) {
            kumo__inbox_lock(p);
            p->flags |= PF_DEAD;
            atomic_store(&s->serial, 0);
            atomic_fetch_sub(&node->inboxes_live, 1);
            kumo__inbox_closed(p, true);
            kumo__inbox_unlock(p);
        }
    }
    node->stopped = true;
}

void kumo_node_free(kumo_node *node)
{
    if (!node)
        return;
    kumo_node_stop(node);
    kumo__engine_destroy(node->eng);
    for (unsigned i = 0; i < node->n; i++)
        pshard_free(node->ps[i]);
    kumo__free(node->ps, sizeof(*node->ps) * node->n);
    kumo__names_fini(&node->names);
    kumo__free(node, sizeof *node);
}

/* The node owns the engine; transports are built on it (proc may use the
 * transport interface, transports know nothing of nodes). */
int kumo_transport_new(kumo_node *node, const char *name, const void *config, kumo_transport **out)
{
    if (!node || !name || !out)
        return -EINVAL;
    if (atomic_load(&node->stopping))
        return -KUMO_ESHUTDOWN;
    return kumo__transport_new(node->eng, name, config, out);
}

unsigned kumo_node_shards(const kumo_node *node)
{
    return node->n;
}
uint64_t kumo_node_id(const kumo_node *node)
{
    return node->id;
}

uint64_t kumo_node_process_count(kumo_node *node)
{
    int64_t n = atomic_load(&node->inboxes_live) + atomic_load(&node->remote_live);
    for (unsigned i = 0; i < node->n; i++)
        n += atomic_load_explicit(&node->ps[i]->live, memory_order_relaxed);
    return n > 0 ? (uint64_t)n : 0;
}
