/*
 * Busy peers: Erlang's busy distribution port.  When the node controller
 * holds more than dist_busy_bytes queued for one peer (its link is slow,
 * or the peer does not read), it marks that peer busy in a small table
 * every shard can read.  A process that sends data to a busy peer is
 * suspended after the callback that sent it: it is not run again until
 * the peer drains below half the limit, when the controller clears the
 * mark and every shard puts its suspended processes back in its run
 * queue.  An inbox's thread waits inside the send instead.  So what a
 * node holds for a peer that does not drain is bounded by the limit plus
 * what its senders sent in the callbacks that crossed it (and, for
 * senders on other shards than the controller's, what was on its way to
 * the controller then); nothing is dropped.
 *
 * The run queue's link (rq_next) chains a shard's suspended processes: a
 * suspended process is never queued (kumo__proc_make_ready skips it).
 */
#include "proc/internal.h"

#include <time.h>

void kumo__busy_suspend(struct kumo_node *node, struct kumo_proc *self, uint64_t id)
{
    if (self->flags & PF_FOREIGN) {
        /* A thread: wait here (polled: a busy link drains in
         * milliseconds, and this is not a hot path). */
        struct timespec ts = {.tv_nsec = 100000};
        while (kumo__node_busy(node, id) &&
               !atomic_load_explicit(&node->stopping, memory_order_relaxed))
            nanosleep(&ts, NULL);
        return;
    }
    if (self->flags & (PF_BUSY | PF_QUEUED | PF_DEAD))
        return; /* already suspended; or queued (its link is in use): the next send */
    struct pshard *ps = kumo__pshard_of(self);
    self->flags |= PF_BUSY;
    self->rq_next = ps->busy_head;
    ps->busy_head = self;
}

void kumo__busy_unlink(struct pshard *ps, struct kumo_proc *p)
{
    for (struct kumo_proc **pp = &ps->busy_head; *pp; pp = &(*pp)->rq_next)
        if (*pp == p) {
            *pp = p->rq_next;
            break;
        }
    p->flags &= ~PF_BUSY;
}

/* On a shard: every suspended process goes back to the run queue (those
 * whose peer is still busy suspend again at their next send there). */
static void resume_all(struct pshard *ps)
{
    struct kumo_proc *p = ps->busy_head;
    ps->busy_head = NULL;
    while (p) {
        struct kumo_proc *next = p->rq_next;
        p->flags &= ~PF_BUSY;
        kumo__proc_make_ready(ps, p);
        p = next;
    }
}

/* The shard's own resume task (embedded in its pshard: no allocation
 * that could fail and leave processes suspended). */
static void resume_run(struct kumo__shard *sh, struct kumo__task *t)
{
    struct pshard *ps = (struct pshard *)((char *)t - offsetof(struct pshard, resume));
    /* Cleared first: a drain after this point posts it again. */
    atomic_store_explicit(&ps->resume_posted, false, memory_order_release);
    if (sh)
        resume_all(ps);
}

bool kumo__busy_set(struct kumo_node *node, uint64_t id)
{
    for (unsigned i = 0; i < KUMO__BUSY_MAX; i++)
        if (atomic_load_explicit(&node->busy_ids[i], memory_order_relaxed) == 0) {
            atomic_store_explicit(&node->busy_ids[i], id, memory_order_release);
            atomic_fetch_add_explicit(&node->nbusy, 1, memory_order_release);
            return true;
        }
    return false;
}

void kumo__busy_clear(struct kumo_node *node, struct pshard *src, uint64_t id)
{
    for (unsigned i = 0; i < KUMO__BUSY_MAX; i++)
        if (atomic_load_explicit(&node->busy_ids[i], memory_order_relaxed) == id) {
            atomic_store_explicit(&node->busy_ids[i], 0, memory_order_release);
            atomic_fetch_sub_explicit(&node->nbusy, 1, memory_order_release);
            break;
        }
    for (unsigned s = 0; s < node->n; s++) {
        if (src && s == src->id) {
            resume_all(src);
            continue;
        }
        struct pshard *ps = node->ps[s];
        if (atomic_exchange_explicit(&ps->resume_posted, true, memory_order_acq_rel))
            continue; /* one is queued: it resumes whatever is suspended when it runs */
        ps->resume.fn = resume_run;
        if (kumo__task_post(node->eng, s, &ps->resume))
            atomic_store(&ps->resume_posted, false); /* stopping: nothing runs there */
    }
}
