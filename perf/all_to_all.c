/*
 * all_to_all_500: 500 processes spread round-robin over the shards; in each
 * round every process sends one message to every other and waits for the
 * 499 it is owed.  A driver process starts each round with `go` to all
 * and starts the next when all have reported.  Messages per second over
 * all rounds.  all_to_all_500 spreads the processes round-robin over the
 * shards (as the Erlang twin binds them over its schedulers);
 * all_to_all_500_1shard keeps them on one shard, which avoids every
 * cross-core cache-line transfer and, on a 2-vCPU VM, is the faster
 * placement.
 */
#include "_bench.h"

#define N 500

static uint64_t T_GO, T_MSG, T_ROUND, T_DONE;
static kumo_pid pids[N];
static struct peer *peers_of;

struct peer {
    int idx;
    int got;
    bool sent;
    kumo_pid report;
};

static void on_msg(kumo_proc *self, void *st, kumo_msg *m);
static kumo_match a2a_m[] = {{.kind = KUMO_MATCH_TYPE, .fn = on_msg},
                             {.kind = KUMO_MATCH_TYPE, .fn = on_msg}};
static const kumo_recv a2a_set = {.matches = a2a_m, .n = 2};

static void check_round(kumo_proc *self, struct peer *p)
{
    if (p->sent && p->got == N - 1) {
        p->sent = false;
        p->got = 0;
        kumo_send(self, p->report, T_ROUND, NULL, 0);
    }
}

static void on_msg(kumo_proc *self, void *st, kumo_msg *m)
{
    struct peer *p = st;
    if (kumo_msg_type(m) == T_GO) {
        int v = p->idx;
        for (int i = 0; i < N; i++)
            if (i != p->idx)
                kumo_send(self, pids[i], T_MSG, &v, sizeof v);
        p->sent = true;
    } else {
        p->got++;
    }
    check_round(self, p);
    kumo_receive(self, &a2a_set, KUMO_INFINITY);
}

static void peer_init(kumo_proc *self, void *st)
{
    kumo_receive(self, &a2a_set, KUMO_INFINITY);
}

struct driver {
    int rounds, reported;
    kumo_pid report;
};

static void go_all(kumo_proc *self)
{
    for (int i = 0; i < N; i++)
        kumo_send(self, pids[i], T_GO, NULL, 0);
}

static void round_h(kumo_proc *self, void *st, kumo_msg *m);
static kumo_match drv_m[] = {{.kind = KUMO_MATCH_TYPE, .fn = round_h}};
static const kumo_recv drv_set = {.matches = drv_m, .n = 1};

static void round_h(kumo_proc *self, void *st, kumo_msg *m)
{
    struct driver *d = st;
    if (++d->reported == N) {
        d->reported = 0;
        if (--d->rounds == 0) {
            kumo_send(self, d->report, T_DONE, NULL, 0);
            return;
        }
        go_all(self);
    }
    kumo_receive(self, &drv_set, KUMO_INFINITY);
}

static void driver_init(kumo_proc *self, void *st)
{
    /* Peers read `report` only after our `go` reaches them. */
    for (int i = 0; i < N; i++)
        peers_of[i].report = kumo_self(self);
    go_all(self);
    kumo_receive(self, &drv_set, KUMO_INFINITY);
}

static void bench(kumo_node *node, kumo_inbox *ib, int rounds, int placement, const char *name)
{
    static struct peer peers[N];
    static struct driver drv;
    peers_of = peers;
    kumo_spawn_opts o = {.shard = placement};
    for (int i = 0; i < N; i++) {
        peers[i] = (struct peer){.idx = i};
        int err = kumo_spawn(node, kumo_inbox_proc(ib), &o, peer_init, &peers[i], &pids[i]);
        if (err)
            bench_die("spawn", err);
    }
    double v[BENCH_REPS];
    kumo_spawn_opts od = {.shard = 0};
    for (int r = -1; r < BENCH_REPS; r++) {
        kumo_pid dp;
        drv = (struct driver){.rounds = rounds};
        drv.report = kumo_inbox_pid(ib);
        double t0 = bench_now();
        int err = kumo_spawn(node, kumo_inbox_proc(ib), &od, driver_init, &drv, &dp);
        if (err)
            bench_die("spawn", err);
        kumo_msg_free(bench_wait(ib, T_DONE));
        if (r >= 0)
            v[r] = (double)N * (N - 1) * rounds / (bench_now() - t0) / 1e6;
    }
    bench_report(name, v, BENCH_REPS, "Mmsg/s");
    for (int i = 0; i < N; i++)
        kumo_kill(kumo_inbox_proc(ib), pids[i], "bench over");
    while (kumo_node_process_count(node) > 1)
        ;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 20;
    T_GO = kumo_type("bench.go");
    T_MSG = kumo_type("bench.msg");
    T_ROUND = kumo_type("bench.round");
    T_DONE = kumo_type("bench.done");
    a2a_m[0].type = T_GO;
    a2a_m[1].type = T_MSG;
    drv_m[0].type = T_ROUND;
    kumo_node *node = bench_node(0);
    kumo_inbox *ib;
    kumo_inbox_new(node, &ib);
    bench(node, ib, rounds, KUMO_SHARD_RR, "all_to_all_500");
    bench(node, ib, rounds, 0, "all_to_all_500_1shard");
    kumo_inbox_free(ib);
    kumo_node_free(node);
    return 0;
}
