/*
 * The engine: N shards, one pinned thread each, an N x N grid of SPSC rings
 * between them, a mutex-guarded "foreign" queue per shard for threads that
 * are not shards, and one io_uring per shard.  The engine knows nothing of
 * processes: the layer above gives it hooks and items.
 *
 * Shard loop, one iteration, in this order (docs/architecture.md §3):
 *   1. drain the inbound rings, the foreign queue and the shard's own
 *      tasks (hooks.deliver per item, tasks run)
 *   2. run ready work under a budget (hooks.run)
 *   3. poll the pollers (work no completion announces)
 *   4. flush: publish outbound rings, wake target shards that sleep
 *   5. run the deferred flushes (kumo__shard_defer)
 *   6. submit once, reap completions in a batch (user_data -> completion)
 *   7. fire due timers (hooks.timer, or the timer's own fn), reading the
 *      clock only when timers are armed and, on a busy shard, only once
 *      KUMO__CLOCK_CYCLES have passed since the last reading
 * When an iteration did nothing the shard polls for spin_ns, then parks in
 * io_uring_enter until a wake-up, a completion or its next timer.
 *
 * Sleep/wake protocol (Dekker style): the consumer sets `sleeping`, issues
 * a full barrier, re-checks its inputs, then waits; a producer publishes,
 * and if it then sees `sleeping` set and wins the exchange to 0, sends
 * exactly one wake-up (MSG_RING from a shard when the kernel has it, else
 * an eventfd write).  The store->load ordering both sides need is paid by
 * the rare side: the consumer's barrier is membarrier(2)
 * (PRIVATE_EXPEDITED), which orders every other thread's earlier stores
 * too, so shard producers only need a compiler barrier.  A seq_cst fence
 * per flush stalled the producer on its ring stores (~100s of ns between
 * vCPUs).  Without membarrier both sides use seq_cst fences.
 */
#ifndef KUMO_ENGINE_ENGINE_H
#define KUMO_ENGINE_ENGINE_H

#include "engine/list.h"
#include "engine/ring.h"
#include "engine/timer.h"

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct kumo__shard;
struct kumo__engine;

/*
 * A task: a function to run on a given shard, posted through the same
 * rings as the upper layer's items (so it is ordered with them).  Tasks
 * are how layers other than proc (transports, tests) get work onto a
 * shard.  The poster owns the task until fn runs; fn owns it from then.
 * A task still queued when the engine stops is run with sh == NULL so its
 * owner can free it.
 */
struct kumo__task {
    struct kumo__item link;
    void (*fn)(struct kumo__shard *sh, struct kumo__task *t);
};

/*
 * A deferred flush: fn runs once on its shard, in the loop iteration in
 * which it was queued, right before the iteration submits its SQEs (after
 * the run phase, the pollers and the outbound flush; timers fire later in
 * the iteration, so what a timer defers runs in the next one).  Transports use it to
 * batch the sends of one iteration into one submission per socket.
 * Queueing an already queued record is a no-op; fn may queue it again.
 */
struct kumo__defer {
    struct kumo__defer *next;
    void (*fn)(struct kumo__shard *sh, struct kumo__defer *d);
    bool queued;
};

/*
 * A poller: work the shard checks every loop iteration without a kernel
 * completion to tell it (shared-memory rings written by another process).
 * poll returns how much it did (0 = nothing: the shard may go idle).
 * prepark runs when the shard is about to park, after it has announced
 * that it sleeps (the store-fence-load of the wake-up protocol): it must
 * arrange to be woken (e.g. set a flag a producer checks, then re-check
 * its input) and return true if there is work after all (the shard then
 * does not park).
 */
struct kumo__poller {
    struct kumo__poller *next, *prev;
    unsigned (*poll)(struct kumo__shard *sh, struct kumo__poller *p);
    bool (*prepark)(struct kumo__shard *sh, struct kumo__poller *p);
};

/* An io_uring completion routes to one of these through user_data. */
struct kumo__completion {
    void (*fn)(struct kumo__shard *sh, struct kumo__completion *c, struct io_uring_cqe *cqe);
};

struct kumo__engine_hooks {
    void *ctx;
    /* An item posted to this shard (from a ring or the foreign queue). */
    void (*deliver)(void *ctx, struct kumo__shard *sh, struct kumo__item *it);
    /* Run ready work; returns how much was done (0 = nothing ready). */
    unsigned (*run)(void *ctx, struct kumo__shard *sh);
    /* A timer armed on this shard's heap is due. */
    void (*timer)(void *ctx, struct kumo__shard *sh, struct kumo__timer *t);
    /* Stop requested: end everything this shard owns (runs once, on the
     * shard). */
    void (*shutdown)(void *ctx, struct kumo__shard *sh);
    /* After every shard thread has exited: free an item still queued. */
    void (*discard)(void *ctx, struct kumo__item *it);
};

struct kumo__engine_config {
    unsigned shards; /* 0 = CPUs in the affinity mask */
    bool no_pin;
    uint64_t spin_ns;
    unsigned ring_entries;
};

struct kumo__features {
    bool single_issuer; /* SINGLE_ISSUER | DEFER_TASKRUN rings */
    bool msg_ring;
    bool send_zc; /* IORING_OP_SEND_ZC and SENDMSG_ZC */
    bool buf_ring;
    /* membarrier(PRIVATE_EXPEDITED) registered: the sleeping side issues
     * the process-wide barrier, producers need no fence of their own. */
    bool membarrier;
};

struct kumo__shard {
    /* owner-only, hot */
    unsigned id;
    struct kumo__engine *eng;
    struct kumo__ring **in;  /* in[src]: ring src -> this shard (NULL for self) */
    struct kumo__ring **out; /* out[dst] */
    unsigned *dirty;         /* dst indices with unpublished puts */
    unsigned ndirty;
    bool *is_dirty;
    unsigned pending_sqes;
    struct kumo__timer_heap timers;
    uint64_t now;                              /* kumo__shard_now */
    uint64_t now_cycles;                       /* kumo__cycles() when `now` was read */
    void *user;                                /* the upper layer's per-shard state */
    struct kumo__defer *defer_head;            /* kumo__shard_defer */
    struct kumo__poller *pollers;              /* kumo__shard_poller_add */
    struct kumo__item *self_head, **self_tail; /* tasks it posted to itself */
    bool shut_done;
    struct io_uring ring;
    int ring_fd;
    int cpu;

    /* shared with producers */
    _Alignas(KUMO__CACHELINE) _Atomic int sleeping;
    int efd;
    uint64_t efd_buf;
    struct kumo__completion efd_comp;
    struct kumo__completion wake_fail; /* a MSG_RING to this shard failed */

    _Alignas(KUMO__CACHELINE) pthread_mutex_t fmu;
    struct kumo__item *fhead, **ftail;
    _Atomic int fnonempty;
    bool fclosed;

    pthread_t thread;
    int start_err;
};

struct kumo__engine {
    unsigned n;
    struct kumo__shard **shards;
    struct kumo__ring *grid; /* grid[src * n + dst] */
    struct kumo__engine_hooks hooks;
    uint64_t spin_ns;
    bool no_pin;
    int *cpus;
    unsigned ncpus;
    struct kumo__features feat;
    _Atomic int stop;
    _Atomic unsigned shut_count;
    _Atomic unsigned started;
    bool running;
    pthread_mutex_t start_mu;
    pthread_cond_t start_cv;
};

/* Creates the engine (no threads yet).  Returns 0 or -errno. */
int kumo__engine_create(const struct kumo__engine_config *cfg,
                        const struct kumo__engine_hooks *hooks, struct kumo__engine **out);
/* Starts the shard threads; returns when every shard has set up its ring. */
int kumo__engine_start(struct kumo__engine *eng);
/* Asks every shard to shut down, waits for the threads, discards what is
 * left in rings and queues.  Idempotent.  Not from a shard thread. */
void kumo__engine_stop(struct kumo__engine *eng);
void kumo__engine_destroy(struct kumo__engine *eng);

/* membarrier(2), for asymmetric barriers.  Registers this process for
 * `cmd` (MEMBARRIER_CMD_PRIVATE_EXPEDITED or _GLOBAL_EXPEDITED, from
 * <linux/membarrier.h>); true if the kernel has it and it worked. */
bool kumo__membarrier_register(int cmd);
/* Issues `cmd` (registered before). */
void kumo__membarrier(int cmd);

/* The shard the calling thread runs, or NULL for a foreign thread. */
struct kumo__shard *kumo__shard_current(void);

/* From shard `sh`'s thread: queue `it` for shard `dst` (!= sh->id). */
static inline void kumo__shard_put(struct kumo__shard *sh, unsigned dst, struct kumo__item *it)
{
    kumo__ring_put(sh->out[dst], it);
    if (!sh->is_dirty[dst]) {
        sh->is_dirty[dst] = true;
        sh->dirty[sh->ndirty++] = dst;
    }
}

/* The clock as the loop last read it: while timers are armed, after an
 * iteration that did work once KUMO__CLOCK_CYCLES have passed since the
 * last reading, and every 256 polls while spinning idle.  For bookkeeping
 * such as "last heard from" that must not read the clock per message; never
 * later than kumo__now_ns(). */
static inline uint64_t kumo__shard_now(const struct kumo__shard *sh)
{
    return sh->now;
}

/* From shard `sh`'s thread: run d->fn before this iteration submits. */
static inline void kumo__shard_defer(struct kumo__shard *sh, struct kumo__defer *d)
{
    if (d->queued)
        return;
    d->queued = true;
    d->next = sh->defer_head;
    sh->defer_head = d;
}

/* From shard `sh`'s thread: poll p every iteration until removed. */
static inline void kumo__shard_poller_add(struct kumo__shard *sh, struct kumo__poller *p)
{
    KUMO__LIST_PUSH(sh->pollers, p, prev, next);
}

static inline void kumo__shard_poller_remove(struct kumo__shard *sh, struct kumo__poller *p)
{
    KUMO__LIST_REMOVE(sh->pollers, p, prev, next);
    p->next = p->prev = NULL;
}

/* Tasks travel as items whose pointer has the low bit set. */
static inline struct kumo__item *kumo__task_item(struct kumo__task *t)
{
    return (struct kumo__item *)((uintptr_t)t | 1u);
}

/* Posts a task to shard `dst` from any thread (a shard, or a foreign
 * thread), waking it if needed.  Returns 0 or -ESHUTDOWN (the caller keeps
 * the task). */
int kumo__task_post(struct kumo__engine *eng, unsigned dst, struct kumo__task *t);

/* From any non-shard thread: queue `it` for shard `dst` and wake it.
 * Returns 0, or -ESHUTDOWN once the engine has stopped (the caller keeps
 * `it`). */
int kumo__foreign_put(struct kumo__engine *eng, unsigned dst, struct kumo__item *it);

/* Wakes shard `dst` if it sleeps (from any thread). */
void kumo__shard_wake(struct kumo__engine *eng, unsigned dst);

#endif
