/*
 * Scheduling: the run queue, selective receive (which message a declared
 * wait takes) and the run phase of the shard loop (kumo__hook_run: drain the
 * shard-local queue, then run ready processes, each for at most `budget`
 * callbacks per turn).  On the shard that owns the processes.
 */
#include "proc/internal.h"

void kumo__proc_make_ready(struct pshard *ps, struct kumo_proc *p)
{
    if (p->flags & (PF_QUEUED | PF_BUSY))
        return; /* (a suspended one is queued when its peer drains) */
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
static inline uint64_t match_type(const kumo_match *mt)
{
    return __builtin_expect(mt->decl != NULL, 0) ? kumo_type_of(mt->decl) : mt->type;
}

static inline bool accepts(const kumo_match *mt, const struct kumo_msg *m, void *state)
{
    switch (mt->kind) {
    case KUMO_MATCH_TYPE:
        return m->type == match_type(mt);
    case KUMO_MATCH_IF:
        return m->type == match_type(mt) && mt->pred((const kumo_msg *)m, state);
    case KUMO_MATCH_ANY:
        return true;
    default:
        return false;
    }
}

/* Scans the mailbox from p->cursor against the mailbox matches
 * set->matches[from, to) (one group).  Returns the first message any of
 * them accepts, removed from the mailbox, and the first match that accepts
 * it; or NULL.  *at is left at the link the scan stopped on: the removed
 * message's predecessor, or the mailbox's end. */
static struct kumo_msg *scan_group(struct kumo_proc *p, const kumo_recv *set, uint32_t from,
                                   uint32_t to, const kumo_match **which, struct kumo_msg ***at)
{
    struct kumo_msg **pp = p->cursor;
    while (*pp) {
        struct kumo_msg *m = *pp;
        const kumo_match *hit = NULL;
        for (uint32_t j = from; j < to; j++)
            if (accepts(&set->matches[j], m, p->state)) {
                hit = &set->matches[j];
                break;
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
        *which = hit;
        *at = pp;
        return m;
    }
    *at = pp;
    return NULL;
}

/* Finds the message the current wait takes.  Returns it (removed from its
 * queue) and the match, or NULL.  Consecutive matches of one kind form a
 * group, and groups are tried in the order listed (Cloud Haskell's
 * receiveWait): a port group takes the head of the first of its ports that
 * has one; a mailbox group (TYPE, IF, ANY) takes the first message in
 * mailbox order that any of its matches accepts.
 *
 * The mailbox scans start at p->cursor: everything before it was already
 * found unmatched by every mailbox match of this same set.  A miss in
 * every group moves it to the mailbox's end; a hit moves it to the taken
 * message's place only when no later mailbox group was skipped, since a
 * later group has not looked at the messages in between. */
static struct kumo_msg *find(struct kumo_proc *p, const kumo_recv *set, const kumo_match **which)
{
    struct kumo_msg **end = NULL;
    uint32_t i = 0;
    while (i < set->n) {
        const kumo_match *mt = &set->matches[i];
        if (mt->kind == KUMO_MATCH_PORT) {
            struct kumo_msg *m = mt->port ? kumo__port_take(mt->port) : NULL;
            if (m) {
                *which = mt;
                return m;
            }
            i++;
            continue;
        }
        uint32_t j = i + 1;
        while (j < set->n && set->matches[j].kind != KUMO_MATCH_PORT)
            j++;
        struct kumo_msg **at;
        struct kumo_msg *m = scan_group(p, set, i, j, which, &at);
        if (m) {
            bool later = false;
            for (uint32_t k = j; k < set->n && !later; k++)
                later = set->matches[k].kind != KUMO_MATCH_PORT;
            if (!later)
                p->cursor = at;
            return m;
        }
        end = at;
        i = j;
    }
    if (end)
        p->cursor = end;
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
        kumo__die(ps, p, &r);
        return true;
    }
    if (!(p->flags & PF_DECLARED)) {
        kumo_reason r;
        kumo__reason_set(&r, KUMO_NORMAL, NULL);
        kumo__die(ps, p, &r);
        return true;
    }
    return false;
}

/* How long one run phase may last before the shard goes round its loop
 * (sends out, completions in, other shards' messages in): ~40-65 us at
 * 2-3 GHz.  Without it a process that keeps itself busy (a long
 * computation in chunks, each a message to itself) held the shard for as
 * long as it ran, and nothing it or its neighbours sent left the node. */
#define RUN_SLICE_CYCLES (1u << 17)

static void run_proc(struct pshard *ps, struct kumo_proc *p)
{
    ps->current = p;
    for (unsigned turn = 0; turn < ps->node->budget; turn++) {
        if ((turn & 7) == 7 && kumo__cycles() > ps->slice_end)
            break; /* the slice is over: finish this turn later */
        if (p->flags & PF_INIT) {
            p->flags &= ~PF_INIT;
            kumo_init_fn init = p->init;
            p->set = NULL;
            if (callback(ps, p, NULL, init, NULL) || (p->flags & PF_BUSY))
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
            if (callback(ps, p, m ? mt->fn : set->on_timeout, NULL, m) || (p->flags & PF_BUSY))
                goto out; /* ended, or suspended (proc/busy.c) */
            continue;
        }
        p->flags |= PF_WAITING;
        goto out;
    }
    kumo__proc_make_ready(ps, p); /* budget used up: let others run */
out:
    ps->current = NULL;
}

unsigned kumo__hook_run(void *ctx, struct kumo__shard *sh)
{
    struct pshard *ps = sh->user;
    unsigned work = 0;
    ps->slice_end = kumo__cycles() + RUN_SLICE_CYCLES;
    for (unsigned round = 0; round < 4096; round++) {
        if ((round & 15) == 15 && kumo__cycles() > ps->slice_end)
            break;
        if (ps->lq_head) {
            struct kumo_msg *m = ps->lq_head;
            ps->lq_head = NULL;
            ps->lq_tail = &ps->lq_head;
            while (m) {
                struct kumo_msg *n = msg_next(m);
                kumo__deliver(ps, m);
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
            kumo__proc_free(p);
            continue;
        }
        run_proc(ps, p);
    }
    return work;
}

void kumo__hook_timer(void *ctx, struct kumo__shard *sh, struct kumo__timer *t)
{
    struct proc_ext *e = (struct proc_ext *)((char *)t - offsetof(struct proc_ext, timer));
    struct kumo_proc *p = e->p;
    if (p->flags & PF_DEAD)
        return;
    p->flags |= PF_TIMEDOUT;
    kumo__proc_make_ready(sh->user, p);
}
