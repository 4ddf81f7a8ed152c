/* Spawning, placement, on_exit, many processes, stopping a busy node. */
#include "_kt.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

static uint64_t T_REP, T_PING, T_GO, T_PROGRESS, T_DATA;

static void types_init(void)
{
    T_REP = kt_type("rep");
    T_PING = kt_type("ping");
    T_GO = kt_type("go");
    T_PROGRESS = kt_type("progress");
    T_DATA = kt_type("data");
}

/* ------------------------------------------------------------------ */
/* Spawn: identity, placement, options                                 */
/* ------------------------------------------------------------------ */

struct ident {
    kumo_pid self;
    kumo_node *node;
    void *state;
    unsigned shard;
};

struct who {
    kumo_pid ib;
    int second_state; /* kumo_set_state target */
};

static void who_next(kumo_proc *self, void *st, kumo_msg *m)
{
    (void)m;
    /* The state set in init is the one handlers get. */
    struct ident id = {kumo_self(self), kumo_self_node(self), st, kumo_self_shard(self)};
    struct who *w = kumo_state(self);
    (void)w;
    kumo_send(self, kumo_msg_sender(m), T_REP, &id, sizeof id);
}

static void who_init(kumo_proc *self, void *st)
{
    struct who *w = st;
    struct ident id = {kumo_self(self), kumo_self_node(self), st, kumo_self_shard(self)};
    kumo_send(self, w->ib, T_REP, &id, sizeof id);
    kumo_set_state(self, &w->second_state);
    kumo_expect(self, T_PING, who_next);
}

static struct ident expect_ident(kumo_inbox *ib, kumo_pid pid, kumo_node *node, void *state)
{
    struct ident id;
    KT_TAKE(kt_expect(ib, T_REP), id);
    cr_assert(kumo_pid_eq(id.self, pid), "kumo_self %s, spawn gave %s", kt_pid(id.self),
              kt_pid(pid));
    cr_assert_eq(id.node, node);
    cr_assert_eq(id.state, state);
    cr_assert_eq(id.shard, pid.shard);
    return id;
}

/* Spawns on the same shard as itself (SAME and NULL options). */
struct sub {
    kumo_pid ib;
    struct who w[2];
    kumo_pid kids[2];
};

static void sub_init(kumo_proc *self, void *st)
{
    struct sub *s = st;
    kumo_spawn(kumo_self_node(self), self, NULL, who_init, &s->w[0], &s->kids[0]);
    kumo_spawn(kumo_self_node(self), self, &(kumo_spawn_opts){.shard = KUMO_SHARD_SAME}, who_init,
               &s->w[1], &s->kids[1]);
}

KT_TEST(lifecycle, spawn_identity_and_placement)
{
    types_init();
    kt_env env = kt_env_start(kt_shards);
    cr_assert_eq(kumo_inbox_pid(env.ib).shard, 0);
    struct who w = {.ib = kumo_inbox_pid(env.ib)};

    /* From a plain thread (self NULL), with and without options. */
    kumo_pid a = kt_spawn(env.node, NULL, NULL, who_init, &w);
    cr_assert_eq(a.shard, 0);
    expect_ident(env.ib, a, env.node, &w);
    kumo_send(env.me, a, T_PING, NULL, 0);
    expect_ident(env.ib, a, env.node, &w.second_state);
    kumo_pid b =
        kt_spawn(env.node, NULL, &(kumo_spawn_opts){.shard = (int)kt_shards - 1}, who_init, &w);
    cr_assert_eq(b.shard, kt_shards - 1);
    expect_ident(env.ib, b, env.node, &w);
    /* From an inbox: SAME is shard 0. */
    kumo_pid c =
        kt_spawn(env.node, env.ib, &(kumo_spawn_opts){.shard = KUMO_SHARD_SAME}, who_init, &w);
    cr_assert_eq(c.shard, 0);
    expect_ident(env.ib, c, env.node, &w);
    cr_assert(!kumo_pid_eq(a, b) && !kumo_pid_eq(b, c) && !kumo_pid_eq(a, c));
    /* From a process on the last shard: SAME (and NULL opts) is its own. */
    struct sub s = {.ib = kumo_inbox_pid(env.ib),
                    .w = {{.ib = kumo_inbox_pid(env.ib)}, {.ib = kumo_inbox_pid(env.ib)}}};
    kumo_ref ref;
    kumo_pid sp =
        kt_spawn(env.node, env.ib, &(kumo_spawn_opts){.shard = (int)kt_shards - 1, .monitor = &ref},
                 sub_init, &s);
    kt_down(env.ib, sp, KUMO_NORMAL, "");
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(s.kids[i].shard, kt_shards - 1);
        struct ident id;
        KT_TAKE(kt_expect(env.ib, T_REP), id);
        cr_assert(kumo_pid_eq(id.self, s.kids[0]) || kumo_pid_eq(id.self, s.kids[1]));
        cr_assert_eq(id.shard, kt_shards - 1);
    }
    /* Refused. */
    kumo_pid p;
    cr_assert_eq(
        kumo_spawn(env.node, env.me, &(kumo_spawn_opts){.shard = (int)kt_shards}, who_init, &w, &p),
        -EINVAL);
    cr_assert_eq(kumo_spawn(env.node, env.me, &(kumo_spawn_opts){.shard = -3}, who_init, &w, &p),
                 -EINVAL);
    cr_assert_eq(kumo_spawn(env.node, env.me, NULL, NULL, &w, &p), -EINVAL);
    cr_assert_eq(kumo_spawn(NULL, env.me, NULL, who_init, &w, &p), -EINVAL);

    kumo_pid all[] = {a, b, c, s.kids[0], s.kids[1]};
    for (unsigned i = 0; i < 5; i++)
        kumo_kill(env.me, all[i], NULL);
    for (unsigned i = 0; i < 5; i++) {
        kumo_ref r;
        kumo_monitor(env.me, all[i], &r); /* killed or about to be: a DOWN either way */
        kumo_msg_free(kt_expect(env.ib, kumo_type_down()));
    }
    kt_env_stop(&env);
}

/* Round-robin placement covers every shard evenly, from a thread and from
 * a process. */
static void shard_init(kumo_proc *self, void *st)
{
    kumo_pid *ib = st;
    uint64_t s = kumo_self_shard(self);
    kumo_send(self, *ib, T_REP, &s, sizeof s);
}

struct rr_spawner {
    kumo_pid ib;
    unsigned n;
};

static void rr_spawner_init(kumo_proc *self, void *st)
{
    struct rr_spawner *r = st;
    for (unsigned i = 0; i < r->n; i++)
        kumo_spawn(kumo_self_node(self), self, &(kumo_spawn_opts){.shard = KUMO_SHARD_RR},
                   shard_init, &r->ib, NULL);
}

KT_TEST(lifecycle, round_robin_spreads_over_shards)
{
    types_init();
    kt_env env = kt_env_start(kt_shards);
    kumo_pid ibp = kumo_inbox_pid(env.ib);
    const unsigned per = 8, n = per * kt_shards;
    unsigned count[2] = {0};
    for (unsigned i = 0; i < n; i++) {
        kumo_pid p = kt_spawn(env.node, env.ib, &(kumo_spawn_opts){.shard = KUMO_SHARD_RR},
                              shard_init, &ibp);
        count[p.shard]++;
    }
    unsigned seen[2] = {0};
    for (unsigned i = 0; i < n; i++)
        seen[kt_expect_u64(env.ib, T_REP)]++;
    struct rr_spawner r = {.ib = ibp, .n = n};
    kt_spawn(env.node, env.ib, &(kumo_spawn_opts){.shard = 0}, rr_spawner_init, &r);
    for (unsigned i = 0; i < n; i++)
        seen[kt_expect_u64(env.ib, T_REP)]++;
    for (unsigned s = 0; s < kt_shards; s++) {
        cr_assert_eq(count[s], per, "shard %u got %u of %u spawns from the thread", s, count[s], n);
        cr_assert_eq(seen[s], 2 * per, "shard %u ran %u of %u processes", s, seen[s], 2 * n);
    }
    kt_env_stop(&env);
}

/* ------------------------------------------------------------------ */
/* on_exit                                                             */
/* ------------------------------------------------------------------ */

struct exit_log {
    kt_count calls;
    pthread_mutex_t mu;
    kumo_reason last[8];
    unsigned n;
};

/* Heap state that on_exit frees: LeakSanitizer / the jemalloc count tell
 * if on_exit did not run. */
struct heap_state {
    struct exit_log *log;
    unsigned idx;
    char pad[200];
};

static void log_exit(void *state, const kumo_reason *why)
{
    struct heap_state *h = state;
    struct exit_log *l = h->log;
    pthread_mutex_lock(&l->mu);
    if (h->idx < 8)
        l->last[h->idx] = *why;
    l->n++;
    pthread_mutex_unlock(&l->mu);
    free(h);
    kt_count_add(&l->calls, 1);
}

enum how { RETURN, DIE_EXC, WAIT };

static void how_init(kumo_proc *self, void *st)
{
    struct heap_state *h = st;
    switch (h->idx) {
    case 0:
        return;
    case 1:
        kumo_die(self, KUMO_EXCEPTION, "e%d", 1);
        return;
    default:
        kt_echo_init(self, NULL);
    }
}

KT_TEST(lifecycle, on_exit_called_once_with_reason)
{
    types_init();
    kumo_node *node = kt_start(kt_shards);
    kumo_inbox *ib = kt_inbox(node);
    kumo_proc *me = kumo_inbox_proc(ib);
    struct exit_log log = {.calls = KT_COUNT_INIT, .mu = PTHREAD_MUTEX_INITIALIZER};
    kumo_pid pids[6];
    for (unsigned i = 0; i < 6; i++) {
        struct heap_state *h = calloc(1, sizeof *h);
        h->log = &log;
        h->idx = i;
        kumo_ref ref;
        pids[i] = kt_spawn(
            node, ib,
            &(kumo_spawn_opts){.shard = (int)(i % kt_shards), .on_exit = log_exit, .monitor = &ref},
            how_init, h);
    }
    kumo_kill(me, pids[2], "k");
    kumo_exit(me, pids[3], KUMO_EXCEPTION, "x");
    kumo_send(me, pids[4], kt_type_stop(), NULL, 0);
    /* 5 runs until the node stops */
    for (unsigned i = 0; i < 5; i++)
        kumo_msg_free(kt_expect(ib, kumo_type_down()));
    kt_count_wait(&log.calls, 5, "on_exit calls");
    kumo_inbox_free(ib);
    kumo_node_stop(node);
    cr_assert_eq(kt_count_get(&log.calls), 6);
    kt_assert_reason(&log.last[0], KUMO_NORMAL, "");
    kt_assert_reason(&log.last[1], KUMO_EXCEPTION, "e1");
    kt_assert_reason(&log.last[2], KUMO_KILLED, "k");
    kt_assert_reason(&log.last[3], KUMO_EXCEPTION, "x");
    kt_assert_reason(&log.last[4], KUMO_NORMAL, "");
    kt_assert_reason(&log.last[5], KUMO_SHUTDOWN, "");
    kt_stop(node);
    cr_assert_eq(log.n, 6, "on_exit ran %u times for 6 processes", log.n);
}

/* ------------------------------------------------------------------ */
/* Many processes                                                      */
/* ------------------------------------------------------------------ */

#define MANY 100000u

struct many {
    kt_count exits, inits;
    _Atomic unsigned not_shutdown, normal;
};

static void many_exit(void *state, const kumo_reason *why)
{
    struct many *m = state;
    if (why->kind != KUMO_SHUTDOWN)
        atomic_fetch_add(&m->not_shutdown, 1);
    if (why->kind == KUMO_NORMAL)
        atomic_fetch_add(&m->normal, 1);
    kt_count_add(&m->exits, 1);
}

static void many_msg(kumo_proc *self, void *st, kumo_msg *m)
{
    (void)self;
    (void)st;
    (void)m;
}

static void many_init(kumo_proc *self, void *st)
{
    struct many *m = st;
    kt_count_add(&m->inits, 1);
    kumo_expect(self, T_DATA, many_msg); /* waits forever */
}

/* After many deaths, slots are reused (also by spawns from threads): a
 * message to an old pid must not reach a new process in its slot. */
KT_TEST(lifecycle, reused_slots_ignore_stale_pids)
{
    types_init();
    kt_env env = kt_env_start(kt_shards);
    enum { N = 20000 };
    struct many st = {.exits = KT_COUNT_INIT, .inits = KT_COUNT_INIT};
    kumo_pid *old = malloc(sizeof *old * N), *new = malloc(sizeof *new *N);
    cr_assert(old && new);
    for (unsigned i = 0; i < N; i++)
        old[i] = kt_spawn(env.node, env.ib,
                          &(kumo_spawn_opts){.shard = KUMO_SHARD_RR, .on_exit = many_exit},
                          many_init, &st);
    kt_count_wait(&st.inits, N, "first round in receive");
    for (unsigned i = 0; i < N; i++)
        kumo_kill(env.me, old[i], NULL);
    kt_count_wait(&st.exits, N, "first round ended");
    for (unsigned i = 0; i < N; i++)
        new[i] = kt_spawn(env.node, env.ib,
                          &(kumo_spawn_opts){.shard = KUMO_SHARD_RR, .on_exit = many_exit},
                          many_init, &st);
    kt_count_wait(&st.inits, 2 * N, "second round in receive");
    uint32_t maxslot = 0;
    for (unsigned i = 0; i < N; i++)
        maxslot = old[i].slot > maxslot ? old[i].slot : maxslot;
    bool *was_old = calloc(2 * ((size_t)maxslot + 1), sizeof *was_old);
    cr_assert_not_null(was_old);
    for (unsigned i = 0; i < N; i++)
        was_old[old[i].shard * ((size_t)maxslot + 1) + old[i].slot] = true;
    unsigned reused = 0;
    for (unsigned i = 0; i < N; i++)
        reused +=
            new[i].slot <= maxslot &&was_old[new[i].shard *((size_t)maxslot + 1) + new[i].slot];
    free(was_old);
    /* A message to each old pid: one reaching a new process would end it
     * normally (many_msg), before the kill below. */
    for (unsigned i = 0; i < N; i++)
        kt_send_u64(env.me, old[i], T_DATA, i);
    for (unsigned i = 0; i < N; i++)
        kumo_kill(env.me, new[i], NULL);
    kt_count_wait(&st.exits, 2 * N, "second round ended");
    cr_assert_eq(atomic_load(&st.normal), 0, "%u new processes got a stale pid's message",
                 atomic_load(&st.normal));
    cr_assert_gt(reused, 0, "no slot was reused: the test proves nothing");
    free(old);
    free(new);
    kt_env_stop(&env);
}

KT_TEST(lifecycle, many_processes_torn_down_by_kill)
{
    types_init();
    kumo_node *node = kt_start(kt_shards);
    kumo_inbox *ib = kt_inbox(node);
    kumo_proc *me = kumo_inbox_proc(ib);
    struct many st = {.exits = KT_COUNT_INIT, .inits = KT_COUNT_INIT};
    kumo_pid *pids = malloc(sizeof *pids * MANY);
    cr_assert_not_null(pids);
    for (unsigned i = 0; i < MANY; i++) {
        int err =
            kumo_spawn(node, me, &(kumo_spawn_opts){.shard = KUMO_SHARD_RR, .on_exit = many_exit},
                       many_init, &st, &pids[i]);
        cr_assert_eq(err, 0, "spawn %u: %s", i, kumo_strerror(err));
    }
    cr_assert_eq(kumo_node_process_count(node), MANY + 1); /* and the inbox */
    kt_count_wait(&st.inits, MANY, "processes waiting in receive");
    for (unsigned i = 0; i < MANY; i++)
        cr_assert_eq(kumo_kill(me, pids[i], NULL), 0);
    kt_count_wait(&st.exits, MANY, "on_exit calls");
    cr_assert_eq(kumo_node_process_count(node), 1);
    kumo_inbox_free(ib);
    cr_assert_eq(kumo_node_process_count(node), 0);
    free(pids);
    kt_stop(node);
    cr_assert_eq(kt_count_get(&st.exits), MANY);
    cr_assert_eq(atomic_load(&st.not_shutdown), MANY); /* all were killed */
}

/* One inbox monitoring 100k processes: one DOWN each (the monitor index
 * keeps this linear; it was quadratic with plain lists). */
#define MANY_MONITORED 100000u

KT_TEST(lifecycle, many_monitored_processes)
{
    types_init();
    kumo_node *node = kt_start(kt_shards);
    kumo_inbox *ib = kt_inbox(node);
    kumo_proc *me = kumo_inbox_proc(ib);
    struct many st = {.exits = KT_COUNT_INIT, .inits = KT_COUNT_INIT};
    kumo_pid *pids = malloc(sizeof *pids * MANY_MONITORED);
    cr_assert_not_null(pids);
    for (unsigned i = 0; i < MANY_MONITORED; i++) {
        kumo_ref ref;
        pids[i] = kt_spawn(node, ib, &(kumo_spawn_opts){.shard = KUMO_SHARD_RR, .monitor = &ref},
                           many_init, &st);
    }
    for (unsigned i = 0; i < MANY_MONITORED; i++)
        kumo_kill(me, pids[i], "x");
    for (unsigned i = 0; i < MANY_MONITORED; i++) {
        kumo_msg *m = kt_next(ib);
        cr_assert_eq(kumo_msg_type(m), kumo_type_down());
        const kumo_down_msg *d = kumo_msg_data(m);
        cr_assert_eq(d->reason.kind, KUMO_KILLED);
        kumo_msg_free(m);
    }
    kt_expect_empty(ib);
    cr_assert_eq(kumo_node_process_count(node), 1);
    kumo_inbox_free(ib);
    free(pids);
    kt_stop(node);
}

static int pid_cmp(const void *a, const void *b)
{
    const kumo_pid *x = a, *y = b;
    if (x->shard != y->shard)
        return x->shard < y->shard ? -1 : 1;
    if (x->slot != y->slot)
        return x->slot < y->slot ? -1 : 1;
    return x->serial < y->serial ? -1 : x->serial > y->serial;
}

/* The same across the topology: the inbox on one node monitors many
 * processes on the other, kills them, and gets exactly one DOWN each
 * (the controller's watch tables must stay linear too); then the peer's
 * processes it still monitors go with the link, one DOWN each. */
KT_NET_TEST(lifecycle, many_processes_monitored_from_the_other_node)
{
    types_init();
    kt_env env = kt_env_start_on(kt_topology, kt_shards);
    const unsigned n = 20000;
    struct many st = {.exits = KT_COUNT_INIT, .inits = KT_COUNT_INIT};
    kumo_pid *pids = malloc(sizeof *pids * n);
    cr_assert_not_null(pids);
    for (unsigned i = 0; i < n; i++)
        pids[i] =
            kt_spawn(env.peer, NULL, &(kumo_spawn_opts){.shard = KUMO_SHARD_RR}, many_init, &st);
    kt_count_wait(&st.inits, n, "processes waiting in receive");
    for (unsigned i = 0; i < n; i++) {
        kumo_ref ref;
        cr_assert_eq(kumo_monitor(env.me, pids[i], &ref), 0);
    }
    for (unsigned i = 0; i < n / 2; i++)
        cr_assert_eq(kumo_kill(env.me, pids[i], "x"), 0);
    qsort(pids, n / 2, sizeof *pids, pid_cmp);
    bool *seen = calloc(n / 2, sizeof *seen);
    cr_assert_not_null(seen);
    for (unsigned i = 0; i < n / 2; i++) {
        kumo_msg *m = kt_next(env.ib);
        cr_assert_eq(kumo_msg_type(m), kumo_type_down());
        const kumo_down_msg *d = kumo_msg_data(m);
        cr_assert_eq(d->reason.kind, KUMO_KILLED, "DOWN %u: reason %d", i, d->reason.kind);
        /* each killed process once (shards interleave their DOWNs) */
        kumo_pid *hit = bsearch(&d->pid, pids, n / 2, sizeof *pids, pid_cmp);
        cr_assert_not_null(hit, "DOWN %u is about %s, not a killed process", i, kt_pid(d->pid));
        cr_assert(!seen[hit - pids], "a second DOWN about %s", kt_pid(d->pid));
        seen[hit - pids] = true;
        kumo_msg_free(m);
    }
    free(seen);
    kt_expect_empty(env.ib);
    if (KT_REMOTE(&env)) {
        /* The other half: their node goes, each DOWN says disconnect. */
        kumo_node_stop(env.peer);
        for (unsigned i = n / 2; i < n; i++) {
            kumo_msg *m = kt_next(env.ib);
            cr_assert_eq(kumo_msg_type(m), kumo_type_down());
            const kumo_down_msg *d = kumo_msg_data(m);
            cr_assert_eq(d->reason.kind, KUMO_DISCONNECT, "DOWN %u: reason %d", i, d->reason.kind);
            kumo_msg_free(m);
        }
        kt_expect_empty(env.ib);
    }
    free(pids);
    kt_env_stop(&env);
}

KT_TEST(lifecycle, many_processes_torn_down_by_node_stop)
{
    types_init();
    kt_env env = kt_env_start(kt_shards);
    struct many st = {.exits = KT_COUNT_INIT, .inits = KT_COUNT_INIT};
    for (unsigned i = 0; i < MANY; i++) {
        kumo_pid p;
        int err = kumo_spawn(env.node, env.me,
                             &(kumo_spawn_opts){.shard = KUMO_SHARD_RR, .on_exit = many_exit},
                             many_init, &st, &p);
        cr_assert_eq(err, 0, "spawn %u: %s", i, kumo_strerror(err));
    }
    cr_assert_eq(kumo_node_process_count(env.node), MANY + 1);
    kt_count_wait(&st.inits, MANY, "processes waiting in receive");
    kumo_node_stop(env.node);
    cr_assert_eq(kumo_node_process_count(env.node), 0);
    cr_assert_eq(kt_count_get(&st.exits), MANY);
    cr_assert_eq(atomic_load(&st.not_shutdown), 0);
    kt_env_stop(&env);
}

/* Stop right after spawning: some processes have not run init yet (their
 * spawn is still queued for their shard); they end with shutdown too, and
 * nothing they were sent leaks. */
KT_TEST(lifecycle, node_stop_right_after_spawning)
{
    types_init();
    kt_env env = kt_env_start(kt_shards);
    struct many st = {.exits = KT_COUNT_INIT, .inits = KT_COUNT_INIT};
    const unsigned n = 20000;
    for (unsigned i = 0; i < n; i++) {
        kumo_pid p;
        int err = kumo_spawn(env.node, env.me,
                             &(kumo_spawn_opts){.shard = KUMO_SHARD_RR, .on_exit = many_exit},
                             many_init, &st, &p);
        cr_assert_eq(err, 0, "spawn %u: %s", i, kumo_strerror(err));
        kumo_send(env.me, p, T_PING, "queued", 7); /* parked until init, or freed */
    }
    kumo_node_stop(env.node);
    cr_assert_eq(kumo_node_process_count(env.node), 0);
    cr_assert_eq(kt_count_get(&st.exits), n);
    cr_assert_eq(atomic_load(&st.not_shutdown), 0);
    kt_env_stop(&env);
}

/* ------------------------------------------------------------------ */
/* Stopping a busy node                                                */
/* ------------------------------------------------------------------ */

/* Ping-pong pairs across shards and one-way streams, all running when the
 * node stops. */
struct busy {
    kumo_pid ib, peer;
    uint64_t n, acked;
    bool reported;
    struct busy_log *log;
};

struct busy_log {
    kt_count exits;
    _Atomic unsigned not_shutdown;
};

static void busy_exit(void *state, const kumo_reason *why)
{
    struct busy *b = state;
    if (why->kind != KUMO_SHUTDOWN)
        atomic_fetch_add(&b->log->not_shutdown, 1);
    kt_count_add(&b->log->exits, 1);
}

static void progress(kumo_proc *self, struct busy *b)
{
    if (!b->reported && b->n >= 1000) {
        b->reported = true;
        kumo_send(self, b->ib, T_PROGRESS, NULL, 0);
    }
}

static void pp_ping(kumo_proc *self, void *st, kumo_msg *m)
{
    struct busy *b = st;
    b->n++;
    progress(self, b);
    kumo_send(self, kumo_msg_sender(m), T_PING, &b->n, sizeof b->n);
    kumo_expect(self, T_PING, pp_ping);
}

static void pp_serve(kumo_proc *self, void *st)
{
    (void)st;
    kumo_expect(self, T_PING, pp_ping);
}

static void pp_start(kumo_proc *self, void *st)
{
    struct busy *b = st;
    kumo_send(self, b->peer, T_PING, &b->n, sizeof b->n);
    kumo_expect(self, T_PING, pp_ping);
}

/* A streamer sends 64 messages per turn (a timeout-0 receive as a yield)
 * and stays at most two windows ahead of its sink's acks. */
#define WINDOW 1024u
static uint64_t T_ACK;

static void stream_turn(kumo_proc *self, void *st, kumo_msg *m);
static kumo_match stream_match[1];
static const kumo_recv stream_set = {.matches = stream_match, .n = 1, .on_timeout = stream_turn};

static void stream_turn(kumo_proc *self, void *st, kumo_msg *m)
{
    struct busy *b = st;
    if (m)
        b->acked += WINDOW;
    for (int i = 0; i < 64 && b->n < b->acked + 2 * WINDOW; i++, b->n++)
        kumo_send(self, b->peer, T_DATA, &b->n, sizeof b->n);
    progress(self, b);
    /* Poll (and yield) while the window is open, else wait for an ack. */
    kumo_receive(self, &stream_set, b->n < b->acked + 2 * WINDOW ? 0 : KUMO_INFINITY);
}

static void stream_start(kumo_proc *self, void *st)
{
    stream_turn(self, st, NULL);
}

static void sink_data(kumo_proc *self, void *st, kumo_msg *m)
{
    struct busy *b = st;
    if (++b->n % WINDOW == 0)
        kumo_send(self, kumo_msg_sender(m), T_ACK, NULL, 0);
    progress(self, b);
    kumo_expect(self, T_DATA, sink_data);
}

static void sink_init(kumo_proc *self, void *st)
{
    (void)st;
    kumo_expect(self, T_DATA, sink_data);
}

KT_TEST(lifecycle, node_stop_while_busy)
{
    types_init();
    T_ACK = kt_type("ack");
    stream_match[0] = (kumo_match){.kind = KUMO_MATCH_TYPE, .type = T_ACK, .fn = stream_turn};
    kt_env env = kt_env_start(kt_shards);
    struct busy_log log = {.exits = KT_COUNT_INIT};
    enum { PAIRS = 4, STREAMS = 2, PROCS = 2 * PAIRS + 2 * STREAMS };
    struct busy b[PROCS];
    memset(b, 0, sizeof b);
    unsigned k = 0;
    int other = KT_OTHER(kt_shards);
    for (unsigned i = 0; i < PAIRS; i++, k += 2) {
        b[k] = (struct busy){.ib = kumo_inbox_pid(env.ib), .log = &log};
        b[k + 1] = (struct busy){.ib = kumo_inbox_pid(env.ib), .log = &log};
        kumo_pid server =
            kt_spawn(env.node, env.ib, &(kumo_spawn_opts){.shard = other, .on_exit = busy_exit},
                     pp_serve, &b[k]);
        b[k + 1].peer = server;
        kt_spawn(env.node, env.ib, &(kumo_spawn_opts){.shard = 0, .on_exit = busy_exit}, pp_start,
                 &b[k + 1]);
    }
    for (unsigned i = 0; i < STREAMS; i++, k += 2) {
        b[k] = (struct busy){.ib = kumo_inbox_pid(env.ib), .log = &log};
        b[k + 1] = (struct busy){.ib = kumo_inbox_pid(env.ib), .log = &log};
        /* one stream each way */
        kumo_pid sink = kt_spawn(env.node, env.ib,
                                 &(kumo_spawn_opts){.shard = i ? 0 : other, .on_exit = busy_exit},
                                 sink_init, &b[k]);
        b[k + 1].peer = sink;
        kt_spawn(env.node, env.ib, &(kumo_spawn_opts){.shard = i ? other : 0, .on_exit = busy_exit},
                 stream_start, &b[k + 1]);
    }
    /* Everyone is well under way. */
    for (unsigned i = 0; i < PROCS; i++)
        kumo_msg_free(kt_expect(env.ib, T_PROGRESS));
    kumo_node_stop(env.node);
    cr_assert_eq(kt_count_get(&log.exits), PROCS, "on_exit ran %llu times for %d processes",
                 (unsigned long long)kt_count_get(&log.exits), PROCS);
    cr_assert_eq(atomic_load(&log.not_shutdown), 0);
    cr_assert_eq(kumo_node_process_count(env.node), 0);
    kt_env_stop(&env);
}

/* A process that never waits (it polls with timeout 0 forever) does not
 * starve a neighbour on its shard, and can be killed. */
static void spin_turn(kumo_proc *self, void *st, kumo_msg *m);
static const kumo_recv spin_set = {.matches = NULL, .n = 0, .on_timeout = spin_turn};

static void spin_turn(kumo_proc *self, void *st, kumo_msg *m)
{
    (void)st;
    (void)m;
    kumo_receive(self, &spin_set, 0);
}

static void spin_init(kumo_proc *self, void *st)
{
    spin_turn(self, st, NULL);
}

KT_TEST(lifecycle, busy_process_does_not_starve_neighbours)
{
    types_init();
    kt_env env = kt_env_start(kt_shards);
    int other = KT_OTHER(kt_shards);
    kumo_ref ref;
    kumo_pid spinner = kt_spawn(
        env.node, env.ib, &(kumo_spawn_opts){.shard = other, .monitor = &ref}, spin_init, NULL);
    kumo_pid echo =
        kt_spawn(env.node, env.ib, &(kumo_spawn_opts){.shard = other}, kt_echo_init, NULL);
    for (int i = 0; i < 100; i++) {
        kumo_send(env.me, echo, T_PING, &i, sizeof i);
        kumo_msg_free(kt_expect_next(env.ib, T_PING));
    }
    kumo_kill(env.me, spinner, "enough");
    kt_down(env.ib, spinner, KUMO_KILLED, "enough");
    kumo_send(env.me, echo, kt_type_stop(), NULL, 0);
    kt_env_stop(&env);
}

/* Default configuration: pinned shards, default spin. */
KT_TEST(lifecycle, default_config_pinned)
{
    types_init();
    kumo_node *node = kt_start_pinned(kt_shards);
    kumo_inbox *ib = kt_inbox(node);
    kumo_proc *me = kumo_inbox_proc(ib);
    kumo_pid echo =
        kt_spawn(node, ib, &(kumo_spawn_opts){.shard = KT_OTHER(kt_shards)}, kt_echo_init, NULL);
    kumo_send(me, echo, T_PING, NULL, 0);
    kumo_msg_free(kt_expect_next(ib, T_PING));
    cr_assert_neq(kumo_node_id(node), 0);
    kumo_inbox_free(ib);
    kt_stop(node);
}

/* kumo_node_free stops a running node first. */
KT_TEST(lifecycle, node_free_stops_first)
{
    types_init();
    kumo_node *node = kt_start(kt_shards);
    struct many st = {.exits = KT_COUNT_INIT, .inits = KT_COUNT_INIT};
    for (unsigned i = 0; i < 100; i++) {
        kumo_pid p;
        cr_assert_eq(kumo_spawn(node, NULL,
                                &(kumo_spawn_opts){.shard = KUMO_SHARD_RR, .on_exit = many_exit},
                                many_init, &st, &p),
                     0);
    }
    kt_count_wait(&st.inits, 100, "processes waiting in receive");
    kumo_node_free(node);
    cr_assert_eq(kt_count_get(&st.exits), 100);
    cr_assert_eq(atomic_load(&st.not_shutdown), 0);
    kt_leak_check();
}

/* Spawn/exit churn in bursts larger than the owner's local free list (its
 * surplus moves to the shared list) must reuse slots: the table once grew
 * by every spawn until it hit its 16M cap and spawn failed with ENOMEM. */
#include "proc/internal.h"

#define BURST 20000u
#define BURSTS 10u

static uint64_t T_BURST, T_BYE;

struct burster {
    unsigned left_bursts, byes;
    int err; /* first spawn error (asserted by the test thread) */
    kumo_pid report;
};

/* A kid ends after saying goodbye: its slot is free before the burster
 * handles the goodbye (same shard, handler before death). */
static void burst_child_h(kumo_proc *self, void *st, kumo_msg *m)
{
    kumo_send(self, kumo_msg_sender(m), T_BYE, NULL, 0);
}

static void burst_child_init(kumo_proc *self, void *st)
{
    kumo_expect(self, T_BURST, burst_child_h);
}

static void bye_h(kumo_proc *self, void *st, kumo_msg *m);

static void burst_once(kumo_proc *self, struct burster *b)
{
    /* BURST processes alive at once, then all told to end */
    static kumo_pid kids[BURST];
    for (unsigned i = 0; i < BURST; i++) {
        int err = kumo_spawn(kumo_self_node(self), self, NULL, burst_child_init, NULL, &kids[i]);
        if (err) {
            b->err = err;
            kumo_send(self, b->report, T_BURST, NULL, 0);
            return;
        }
    }
    for (unsigned i = 0; i < BURST; i++)
        kumo_send(self, kids[i], T_BURST, NULL, 0);
    b->byes = 0;
    kumo_expect(self, T_BYE, bye_h);
}

static void bye_h(kumo_proc *self, void *st, kumo_msg *m)
{
    struct burster *b = st;
    if (++b->byes < BURST) {
        kumo_expect(self, T_BYE, bye_h);
        return;
    }
    if (--b->left_bursts == 0) {
        kumo_send(self, b->report, T_BURST, NULL, 0);
        return;
    }
    burst_once(self, b);
}

static void burster_init(kumo_proc *self, void *st)
{
    burst_once(self, st);
}

KT_TEST(lifecycle, slots_are_reused_under_burst_churn)
{
    T_BURST = kumo_type("test.burst");
    T_BYE = kumo_type("test.bye");
    kt_env env = kt_env_start(kt_shards);
    struct burster b = {.left_bursts = BURSTS, .report = kumo_inbox_pid(env.ib)};
    kumo_pid pid;
    cr_assert_eq(kumo_spawn(env.node, kumo_inbox_proc(env.ib), &(kumo_spawn_opts){.shard = 0},
                            burster_init, &b, &pid),
                 0);
    kumo_msg *m = kt_expect(env.ib, T_BURST);
    kumo_msg_free(m);
    cr_assert_eq(b.err, 0, "spawn failed: %s", kumo_strerror(b.err));
    /* BURSTS x BURST spawns on shard 0; the table needs about BURST slots
     * (plus what messages in flight keep alive), not BURSTS x BURST. */
    uint32_t hwm = atomic_load(&env.node->ps[0]->hwm);
    cr_assert_lt(hwm, 3 * BURST, "slot table grew to %u for %u live at most", hwm, BURST);
    kt_env_stop(&env);
}
