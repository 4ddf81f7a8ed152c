#include "engine/engine.h"

#include "engine/alloc.h"
#include "engine/log.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <linux/membarrier.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

static _Thread_local struct kumo__shard *tls_shard;

struct kumo__shard *kumo__shard_current(void)
{
    return tls_shard;
}

static inline void cpu_relax(void)
{
    __builtin_ia32_pause();
}

/* ------------------------------------------------------------------ */
/* Probing                                                             */
/* ------------------------------------------------------------------ */

static void probe_features(struct kumo__features *f)
{
    struct io_uring r;
    memset(f, 0, sizeof *f);
    if (io_uring_queue_init(4, &r, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN) == 0) {
        f->single_issuer = true;
        io_uring_queue_exit(&r);
    }
    if (io_uring_queue_init(4, &r, 0) != 0)
        return;
    struct io_uring_probe *p = io_uring_get_probe_ring(&r);
    if (p) {
        f->msg_ring = io_uring_opcode_supported(p, IORING_OP_MSG_RING);
        f->send_zc = io_uring_opcode_supported(p, IORING_OP_SEND_ZC) &&
                     io_uring_opcode_supported(p, IORING_OP_SENDMSG_ZC);
        io_uring_free_probe(p);
    }
    /* liburing 2.3 has no io_uring_setup_buf_ring: register one by hand. */
    void *mem = NULL;
    if (posix_memalign(&mem, 4096, 4096) == 0) {
        struct io_uring_buf_reg reg = {
            .ring_addr = (uint64_t)(uintptr_t)mem, .ring_entries = 8, .bgid = 0};
        if (io_uring_register_buf_ring(&r, &reg, 0) == 0) {
            f->buf_ring = true;
            io_uring_unregister_buf_ring(&r, 0);
        }
        free(mem);
    }
    io_uring_queue_exit(&r);
    f->membarrier = kumo__membarrier_register(MEMBARRIER_CMD_PRIVATE_EXPEDITED);
}

bool kumo__membarrier_register(int cmd)
{
    int reg = cmd == MEMBARRIER_CMD_PRIVATE_EXPEDITED  ? MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED
              : cmd == MEMBARRIER_CMD_GLOBAL_EXPEDITED ? MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED
                                                       : -1;
    int cmds = (int)syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    return reg >= 0 && cmds > 0 && (cmds & cmd) && syscall(SYS_membarrier, reg, 0, 0) == 0;
}

void kumo__membarrier(int cmd)
{
    syscall(SYS_membarrier, cmd, 0, 0);
}

/* ------------------------------------------------------------------ */
/* Wake-ups                                                            */
/* ------------------------------------------------------------------ */

static void efd_write(struct kumo__shard *dst)
{
    uint64_t one = 1;
    ssize_t w = write(dst->efd, &one, sizeof one);
    (void)w; /* EAGAIN means the counter is already non-zero: awake anyway */
}

/* The MSG_RING to a sleeping shard failed (e.g. its CQ was full): fall back
 * to its eventfd so the wake-up is not lost. */
static void wake_fail_fn(struct kumo__shard *sh, struct kumo__completion *c,
                         struct io_uring_cqe *cqe)
{
    struct kumo__shard *dst =
        (struct kumo__shard *)((char *)c - offsetof(struct kumo__shard, wake_fail));
    if (cqe->res < 0)
        efd_write(dst);
}

static void wake_from_shard(struct kumo__shard *sh, struct kumo__shard *dst)
{
    if (sh->eng->feat.msg_ring) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&sh->ring);
        if (sqe) {
            io_uring_prep_msg_ring(sqe, dst->ring_fd, 0, 0, 0);
            sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
            io_uring_sqe_set_data(sqe, &dst->wake_fail);
            sh->pending_sqes++;
            return;
        }
    }
    efd_write(dst);
}

static inline bool claim_wake(struct kumo__shard *dst)
{
    if (dst->eng->feat.membarrier)
        atomic_signal_fence(memory_order_seq_cst);
    else
        atomic_thread_fence(memory_order_seq_cst);
    return atomic_load_explicit(&dst->sleeping, memory_order_relaxed) &&
           atomic_exchange(&dst->sleeping, 0);
}

void kumo__shard_wake(struct kumo__engine *eng, unsigned dst)
{
    struct kumo__shard *d = eng->shards[dst];
    /* claim_wake orders our earlier stores before the load of `sleeping`
     * (membarrier on the parking side covers every thread of the process,
     * not only shards; otherwise it fences itself). */
    if (claim_wake(d))
        efd_write(d);
}

int kumo__foreign_put(struct kumo__engine *eng, unsigned dst, struct kumo__item *it)
{
    struct kumo__shard *d = eng->shards[dst];
    struct kumo__item *untagged = kumo__item_untag(it);
    untagged->next = NULL;
    pthread_mutex_lock(&d->fmu);
    if (d->fclosed) {
        pthread_mutex_unlock(&d->fmu);
        return -ESHUTDOWN;
    }
    /* The list links untagged nodes but stores the (possibly tagged) item
     * pointer in the previous node's link, so the tag survives. */
    *d->ftail = it;
    d->ftail = &untagged->next;
    atomic_store_explicit(&d->fnonempty, 1, memory_order_relaxed);
    pthread_mutex_unlock(&d->fmu);
    kumo__shard_wake(eng, dst);
    return 0;
}

/* The eventfd read completed: re-arm it.  The read itself only exists to
 * turn the eventfd into a completion that ends io_uring_enter. */
static void arm_efd(struct kumo__shard *sh);

static void efd_fn(struct kumo__shard *sh, struct kumo__completion *c, struct io_uring_cqe *cqe)
{
    (void)c;
    (void)cqe;
    /* Always re-arm, even while stopping: a shard that has shut down still
     * parks until every other shard has, and must hear their wake-ups.
     * io_uring_queue_exit cancels the last read. */
    arm_efd(sh);
}

static void arm_efd(struct kumo__shard *sh)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&sh->ring);
    if (!sqe) {
        io_uring_submit(&sh->ring);
        sqe = io_uring_get_sqe(&sh->ring);
    }
    io_uring_prep_read(sqe, sh->efd, &sh->efd_buf, sizeof sh->efd_buf, 0);
    io_uring_sqe_set_data(sqe, &sh->efd_comp);
    sh->pending_sqes++;
}

/* ------------------------------------------------------------------ */
/* The loop                                                            */
/* ------------------------------------------------------------------ */

static inline void dispatch(struct kumo__shard *sh, struct kumo__item *it)
{
    if (kumo__item_is_task(it)) {
        struct kumo__task *t = (struct kumo__task *)kumo__item_untag(it);
        t->fn(sh, t);
    } else {
        sh->eng->hooks.deliver(sh->eng->hooks.ctx, sh, it);
    }
}

/* Runs the items of a list (tagged links); returns how many. */
static unsigned run_list(struct kumo__shard *sh, struct kumo__item *it)
{
    unsigned n = 0;
    while (it) {
        struct kumo__item *next = kumo__item_untag(it)->next;
        dispatch(sh, it);
        it = next;
        n++;
    }
    return n;
}

static unsigned drain_inbound(struct kumo__shard *sh)
{
    struct kumo__engine *eng = sh->eng;
    unsigned n = 0;
    if (sh->self_head) {
        /* (what these tasks post to us runs next iteration) */
        struct kumo__item *it = sh->self_head;
        sh->self_head = NULL;
        sh->self_tail = &sh->self_head;
        n += run_list(sh, it);
    }
    for (unsigned s = 0; s < eng->n; s++) {
        struct kumo__ring *r = sh->in[s];
        if (!r || !kumo__ring_nonempty(r))
            continue;
        n += KUMO__RING_DRAIN(r, it, dispatch(sh, it));
    }
    if (atomic_load_explicit(&sh->fnonempty, memory_order_acquire)) {
        pthread_mutex_lock(&sh->fmu);
        struct kumo__item *it = sh->fhead;
        sh->fhead = NULL;
        sh->ftail = &sh->fhead;
        atomic_store_explicit(&sh->fnonempty, 0, memory_order_relaxed);
        pthread_mutex_unlock(&sh->fmu);
        n += run_list(sh, it);
    }
    return n;
}

static bool inbound_nonempty(struct kumo__shard *sh)
{
    for (unsigned s = 0; s < sh->eng->n; s++)
        if (sh->in[s] && kumo__ring_nonempty(sh->in[s]))
            return true;
    return sh->self_head || atomic_load_explicit(&sh->fnonempty, memory_order_relaxed) != 0;
}

/* Returns true while some overflow is still waiting for ring space. */
static bool flush_outbound(struct kumo__shard *sh, unsigned *work)
{
    struct kumo__engine *eng = sh->eng;
    bool backlog = false;
    unsigned keep = 0;
    for (unsigned i = 0; i < sh->ndirty; i++) {
        unsigned dst = sh->dirty[i];
        struct kumo__ring *r = sh->out[dst];
        if (kumo__ring_publish(r)) {
            (*work)++;
            struct kumo__shard *d = eng->shards[dst];
            if (claim_wake(d))
                wake_from_shard(sh, d);
        }
        if (kumo__ring_has_overflow(r)) {
            backlog = true;
            sh->dirty[keep++] = dst;
        } else {
            sh->is_dirty[dst] = false;
        }
    }
    sh->ndirty = keep;
    return backlog;
}

static unsigned reap(struct kumo__shard *sh)
{
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&sh->ring, head, cqe)
    {
        struct kumo__completion *c = io_uring_cqe_get_data(cqe);
        if (c)
            c->fn(sh, c, cqe);
        n++;
    }
    if (n)
        io_uring_cq_advance(&sh->ring, n);
    return n;
}

static unsigned fire_timers(struct kumo__shard *sh, uint64_t now)
{
    unsigned n = 0;
    struct kumo__timer *t;
    while ((t = kumo__timer_pop_due(&sh->timers, now))) {
        if (t->fn)
            t->fn(sh, t);
        else
            sh->eng->hooks.timer(sh->eng->hooks.ctx, sh, t);
        n++;
    }
    return n;
}

static unsigned run_deferred(struct kumo__shard *sh)
{
    unsigned n = 0;
    while (sh->defer_head) {
        struct kumo__defer *d = sh->defer_head;
        sh->defer_head = NULL;
        while (d) {
            struct kumo__defer *next = d->next;
            d->queued = false;
            d->fn(sh, d);
            d = next;
            n++;
        }
    }
    return n;
}

static void submit_pending(struct kumo__shard *sh)
{
    if (sh->pending_sqes) {
        sh->pending_sqes = 0;
        io_uring_submit(&sh->ring);
    } else if (IO_URING_READ_ONCE(*sh->ring.sq.kflags) & IORING_SQ_TASKRUN) {
        /* DEFER_TASKRUN: completions (socket I/O, timeouts) wait as task
         * work until we enter the kernel; the ring was set up with
         * TASKRUN_FLAG, so the kernel flags pending work and a busy or
         * spinning shard only enters when there is some. */
        io_uring_get_events(&sh->ring);
    }
}

static unsigned run_pollers(struct kumo__shard *sh)
{
    unsigned n = 0;
    for (struct kumo__poller *p = sh->pollers, *next; p; p = next) {
        next = p->next; /* poll may remove p */
        n += p->poll(sh, p);
    }
    return n;
}

static bool prepark_pollers(struct kumo__shard *sh)
{
    bool busy = false;
    for (struct kumo__poller *p = sh->pollers, *next; p; p = next) {
        next = p->next;
        busy |= p->prepark(sh, p);
    }
    return busy;
}

static void park(struct kumo__shard *sh, bool backlog)
{
    atomic_store_explicit(&sh->sleeping, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    if (sh->eng->feat.membarrier)
        kumo__membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED);
    if (inbound_nonempty(sh) || (sh->pollers && prepark_pollers(sh))) {
        atomic_store_explicit(&sh->sleeping, 0, memory_order_relaxed);
        return;
    }
    uint64_t next = kumo__timer_next(&sh->timers);
    /* A backlog waits for the consumer to make room: poll it every 50 us. */
    if (backlog) {
        uint64_t soon = kumo__now_ns() + 50000;
        if (soon < next)
            next = soon;
    }
    struct io_uring_cqe *cqe;
    sh->pending_sqes = 0;
    if (next == UINT64_MAX) {
        io_uring_submit_and_wait(&sh->ring, 1);
    } else {
        uint64_t now = kumo__now_ns();
        uint64_t d = next > now ? next - now : 0;
        struct __kernel_timespec ts = {.tv_sec = (long long)(d / 1000000000u),
                                       .tv_nsec = (long long)(d % 1000000000u)};
        io_uring_submit_and_wait_timeout(&sh->ring, &cqe, 1, &ts, NULL);
    }
    atomic_store_explicit(&sh->sleeping, 0, memory_order_relaxed);
}

static void read_clock(struct kumo__shard *sh)
{
    sh->now = kumo__now_ns();
    sh->now_cycles = kumo__cycles();
}

static void loop(struct kumo__shard *sh)
{
    struct kumo__engine *eng = sh->eng;
    uint64_t idle_since = 0;
    unsigned idle_polls = 0;
    for (;;) {
        unsigned work = drain_inbound(sh);
        work += eng->hooks.run(eng->hooks.ctx, sh);
        if (sh->pollers)
            work += run_pollers(sh);
        bool backlog = flush_outbound(sh, &work);
        if (sh->defer_head)
            work += run_deferred(sh);
        submit_pending(sh);
        work += reap(sh);
        /* Timers after the iteration's sends are out, so reading the clock
         * is not on the way from a message in to its answer out.  A busy
         * shard reads it once KUMO__CLOCK_CYCLES have passed (the cycle
         * counter costs less than half the clock, and a round trip takes
         * less than that); one spinning idle, once per 256 polls (below);
         * one that parks without spinning, every time.  What a timer
         * defers or submits goes out on the next iteration (work is
         * non-zero). */
        if (sh->timers.n && (work ? kumo__cycles() - sh->now_cycles >= KUMO__CLOCK_CYCLES
                                  : !eng->spin_ns || sh->shut_done)) {
            read_clock(sh);
            work += fire_timers(sh, sh->now);
        }

        if (atomic_load_explicit(&eng->stop, memory_order_acquire) && !sh->shut_done) {
            eng->hooks.shutdown(eng->hooks.ctx, sh);
            sh->shut_done = true;
            atomic_fetch_add(&eng->shut_count, 1);
            for (unsigned i = 0; i < eng->n; i++)
                if (i != sh->id)
                    efd_write(eng->shards[i]);
            continue;
        }
        if (work) {
            idle_since = 0;
            idle_polls = 0;
            continue;
        }
        if (sh->shut_done && atomic_load(&eng->shut_count) == eng->n)
            return;
        if (eng->spin_ns && !sh->shut_done) {
            /* One pause per poll: a pause costs ~140 cycles on recent x86,
             * and every one of them delays noticing the next message.  The
             * clock is read once per 256 polls, for the timers and the
             * spin's end, and not on the first: a shard answering messages
             * goes idle between every two of them. */
            cpu_relax();
            if ((++idle_polls & 255) != 0)
                continue;
            read_clock(sh);
            if (sh->timers.n && fire_timers(sh, sh->now)) {
                idle_since = 0;
                idle_polls = 0;
                continue;
            }
            if (!idle_since)
                idle_since = sh->now;
            if (sh->now - idle_since < eng->spin_ns)
                continue;
        }
        park(sh, backlog);
        idle_since = 0;
        idle_polls = 0;
    }
}

int kumo__task_post(struct kumo__engine *eng, unsigned dst, struct kumo__task *t)
{
    struct kumo__shard *sh = tls_shard;
    if (sh && sh->eng == eng) {
        if (dst == sh->id) {
            /* to ourselves: a list only this thread touches (no lock), run
             * on a later loop iteration rather than re-entrantly */
            struct kumo__item *it = kumo__task_item(t);
            kumo__item_untag(it)->next = NULL;
            *sh->self_tail = it;
            sh->self_tail = &kumo__item_untag(it)->next;
            return 0;
        }
        kumo__shard_put(sh, dst, kumo__task_item(t));
        return 0;
    }
    return kumo__foreign_put(eng, dst, kumo__task_item(t));
}

static void *shard_main(void *arg)
{
    struct kumo__shard *sh = arg;
    struct kumo__engine *eng = sh->eng;
    tls_shard = sh;
    read_clock(sh);
    kumo__blk_cache_enable();
    if (sh->cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(sh->cpu, &set);
        pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    }
    /* The ring is created here because SINGLE_ISSUER binds it to the
     * creating thread. */
    unsigned flags =
        eng->feat.single_issuer ? IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN : 0;
    /* TASKRUN_FLAG lets the loop see deferred completions waiting for it
     * (submit_pending); without it they would wait until the shard parks. */
    int err =
        flags ? io_uring_queue_init(256, &sh->ring, flags | IORING_SETUP_TASKRUN_FLAG) : -EINVAL;
    if (err)
        err = io_uring_queue_init(256, &sh->ring, flags);
    if (err == 0) {
        sh->ring_fd = sh->ring.ring_fd;
        /* Enter through a registered index: each io_uring_enter skips
         * looking up and pinning the ring's file (two per message in a
         * round trip).  Peers still reach us through ring_fd (MSG_RING). */
        if (io_uring_register_ring_fd(&sh->ring) < 0)
            kumo__log(KUMO_LOG_DEBUG, "shard %u: ring fd not registered", sh->id);
        arm_efd(sh);
        submit_pending(sh);
    }
    pthread_mutex_lock(&eng->start_mu);
    sh->start_err = err;
    atomic_fetch_add(&eng->started, 1);
    pthread_cond_broadcast(&eng->start_cv);
    pthread_mutex_unlock(&eng->start_mu);
    if (err)
        return NULL;
    /* Wait until every shard is up (ring fds are read by peers). */
    pthread_mutex_lock(&eng->start_mu);
    while (!eng->running && !atomic_load(&eng->stop))
        pthread_cond_wait(&eng->start_cv, &eng->start_mu);
    pthread_mutex_unlock(&eng->start_mu);
    if (eng->running)
        loop(sh);
    io_uring_queue_exit(&sh->ring);
    kumo__blk_cache_drain();
    tls_shard = NULL;
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Lifecycle                                                           */
/* ------------------------------------------------------------------ */

int kumo__engine_create(const struct kumo__engine_config *cfg,
                        const struct kumo__engine_hooks *hooks, struct kumo__engine **out)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return -errno;
    unsigned ncpu = (unsigned)CPU_COUNT(&set);
    unsigned n = cfg->shards ? cfg->shards : ncpu;
    if (n == 0 || n > 1024)
        return -EINVAL;
    /* One ring per ordered pair: n^2 rings.  Small nodes get deep rings
     * (bursts such as all-to-all rounds then rarely overflow); large ones
     * keep the grid's memory bounded (64 shards x 1024: ~32 MiB). */
    unsigned entries = cfg->ring_entries ? cfg->ring_entries
                       : n <= 4          ? 8192
                       : n <= 16         ? 4096
                                         : 1024;

    struct io_uring test;
    int err = io_uring_queue_init(2, &test, 0);
    if (err) {
        kumo__log(KUMO_LOG_ERROR, "io_uring is unavailable here (%s): Kumo needs it for its shards",
                  strerror(-err));
        return err;
    }
    io_uring_queue_exit(&test);

    struct kumo__engine *eng = kumo__zalloc(sizeof *eng);
    if (!eng)
        return -ENOMEM;
    eng->n = n;
    eng->hooks = *hooks;
    eng->spin_ns = cfg->spin_ns == UINT64_MAX ? 0 : cfg->spin_ns ? cfg->spin_ns : 50000;
    eng->no_pin = cfg->no_pin;
    pthread_mutex_init(&eng->start_mu, NULL);
    pthread_cond_init(&eng->start_cv, NULL);
    probe_features(&eng->feat);
    eng->cpus = kumo__zalloc(sizeof(int) * ncpu);
    eng->ncpus = ncpu;
    eng->shards = kumo__zalloc(sizeof(*eng->shards) * n);
    eng->grid = kumo__zalloc(sizeof(*eng->grid) * n * n);
    if (!eng->cpus || !eng->shards || !eng->grid) {
        err = -ENOMEM;
        goto fail;
    }
    eng->ncpus = ncpu;
    for (int c = 0, k = 0; c < CPU_SETSIZE && k < (int)ncpu; c++)
        if (CPU_ISSET(c, &set))
            eng->cpus[k++] = c;
    for (unsigned s = 0; s < n; s++)
        for (unsigned d = 0; d < n; d++)
            if (s != d && (err = kumo__ring_init(&eng->grid[s * n + d], entries)))
                goto fail;
    for (unsigned i = 0; i < n; i++) {
        struct kumo__shard *sh = kumo__zalloc(sizeof *sh);
        if (!sh) {
            err = -ENOMEM;
            goto fail;
        }
        eng->shards[i] = sh;
        sh->efd = -1; /* before any failure path: destroy closes it */
        sh->id = i;
        sh->eng = eng;
        sh->cpu = eng->no_pin ? -1 : eng->cpus[i % eng->ncpus];
        sh->in = kumo__zalloc(sizeof(*sh->in) * n);
        sh->out = kumo__zalloc(sizeof(*sh->out) * n);
        sh->dirty = kumo__zalloc(sizeof(*sh->dirty) * n);
        sh->is_dirty = kumo__zalloc(sizeof(*sh->is_dirty) * n);
        if (!sh->in || !sh->out || !sh->dirty || !sh->is_dirty) {
            err = -ENOMEM;
            goto fail;
        }
        for (unsigned j = 0; j < n; j++) {
            if (j == i)
                continue;
            sh->in[j] = &eng->grid[j * n + i];
            sh->out[j] = &eng->grid[i * n + j];
        }
        sh->efd = -1;
        sh->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (sh->efd < 0) {
            err = -errno;
            goto fail;
        }
        sh->efd_comp.fn = efd_fn;
        sh->wake_fail.fn = wake_fail_fn;
        pthread_mutex_init(&sh->fmu, NULL);
        sh->ftail = &sh->fhead;
        sh->self_tail = &sh->self_head;
    }
    kumo__log(KUMO_LOG_INFO,
              "engine: %u shard%s%s, io_uring %s, wake-up %s, sleep barrier %s, send_zc %s, "
              "buffer rings %s",
              n, n == 1 ? "" : "s", eng->no_pin ? " (unpinned)" : " (pinned)",
              eng->feat.single_issuer ? "single-issuer+defer-taskrun" : "plain (no SINGLE_ISSUER)",
              eng->feat.msg_ring ? "MSG_RING" : "eventfd",
              eng->feat.membarrier ? "membarrier" : "fences", eng->feat.send_zc ? "yes" : "no",
              eng->feat.buf_ring ? "yes" : "no");
    *out = eng;
    return 0;
fail:
    kumo__engine_destroy(eng);
    return err;
}

int kumo__engine_start(struct kumo__engine *eng)
{
    unsigned made = 0;
    int err = 0;
    for (; made < eng->n; made++) {
        err = -pthread_create(&eng->shards[made]->thread, NULL, shard_main, eng->shards[made]);
        if (err)
            break;
    }
    pthread_mutex_lock(&eng->start_mu);
    while (atomic_load(&eng->started) < made)
        pthread_cond_wait(&eng->start_cv, &eng->start_mu);
    for (unsigned i = 0; i < made && !err; i++)
        err = eng->shards[i]->start_err;
    if (err)
        atomic_store(&eng->stop, 1);
    else
        eng->running = true;
    pthread_cond_broadcast(&eng->start_cv);
    pthread_mutex_unlock(&eng->start_mu);
    if (err) {
        for (unsigned i = 0; i < made; i++)
            pthread_join(eng->shards[i]->thread, NULL);
        kumo__log(KUMO_LOG_ERROR, "engine: shard start failed: %s", strerror(-err));
        return err;
    }
    return 0;
}

static void discard(struct kumo__engine *eng, struct kumo__item *it)
{
    if (kumo__item_is_task(it)) {
        struct kumo__task *t = (struct kumo__task *)kumo__item_untag(it);
        t->fn(NULL, t);
    } else {
        eng->hooks.discard(eng->hooks.ctx, it);
    }
}

static void discard_list(struct kumo__engine *eng, struct kumo__item *it)
{
    while (it) {
        struct kumo__item *next = kumo__item_untag(it)->next;
        discard(eng, it);
        it = next;
    }
}

void kumo__engine_stop(struct kumo__engine *eng)
{
    if (!eng->running)
        return;
    atomic_store(&eng->stop, 1);
    for (unsigned i = 0; i < eng->n; i++)
        efd_write(eng->shards[i]);
    for (unsigned i = 0; i < eng->n; i++)
        pthread_join(eng->shards[i]->thread, NULL);
    eng->running = false;
    /* Single-threaded from here: free what is still in flight. */
    for (unsigned s = 0; s < eng->n; s++) {
        for (unsigned d = 0; d < eng->n; d++) {
            if (s == d)
                continue;
            struct kumo__ring *r = &eng->grid[s * eng->n + d];
            kumo__ring_publish(r);
            KUMO__RING_DRAIN(r, it, discard(eng, it));
            discard_list(eng, r->ovf_head);
            r->ovf_head = NULL;
            r->ovf_tail = &r->ovf_head;
        }
        struct kumo__shard *sh = eng->shards[s];
        pthread_mutex_lock(&sh->fmu);
        sh->fclosed = true;
        pthread_mutex_unlock(&sh->fmu);
        discard_list(eng, sh->fhead);
        sh->fhead = NULL;
        sh->ftail = &sh->fhead;
        discard_list(eng, sh->self_head);
        sh->self_head = NULL;
        sh->self_tail = &sh->self_head;
    }
}

void kumo__engine_destroy(struct kumo__engine *eng)
{
    if (!eng)
        return;
    kumo__engine_stop(eng);
    if (eng->shards) {
        for (unsigned i = 0; i < eng->n; i++) {
            struct kumo__shard *sh = eng->shards[i];
            if (!sh)
                continue;
            kumo__timer_heap_fini(&sh->timers);
            if (sh->efd >= 0)
                close(sh->efd);
            pthread_mutex_destroy(&sh->fmu);
            kumo__free(sh->in, sizeof(*sh->in) * eng->n);
            kumo__free(sh->out, sizeof(*sh->out) * eng->n);
            kumo__free(sh->dirty, sizeof(*sh->dirty) * eng->n);
            kumo__free(sh->is_dirty, sizeof(*sh->is_dirty) * eng->n);
            kumo__free(sh, sizeof *sh);
        }
    }
    if (eng->grid)
        for (unsigned i = 0; i < eng->n * eng->n; i++)
            if (eng->grid[i].slots)
                kumo__ring_fini(&eng->grid[i]);
    kumo__free(eng->grid, sizeof(*eng->grid) * eng->n * eng->n);
    kumo__free(eng->shards, sizeof(*eng->shards) * eng->n);
    kumo__free(eng->cpus, sizeof(int) * eng->ncpus);
    pthread_mutex_destroy(&eng->start_mu);
    pthread_cond_destroy(&eng->start_cv);
    kumo__free(eng, sizeof *eng);
}
