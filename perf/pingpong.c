/*
 * Ping-pong round trip between two processes: both on one shard, and on
 * two shards (the shards spin while idle, the default).  Every hop is a
 * fresh copying kumo_send of an 8-byte counter, as Erlang's `Pid ! {N}`.
 */
#include "_bench.h"

static uint64_t T_PING, T_PONG, T_STOP, T_DONE;

struct ping {
    kumo_pid peer, report;
    long left;
};

static void pong_h(kumo_proc *self, void *st, kumo_msg *m);
static kumo_match pong_m[] = {{.kind = KUMO_MATCH_ANY, .fn = pong_h}};
static const kumo_recv pong_set = {.matches = pong_m, .n = 1};

static void pong_h(kumo_proc *self, void *st, kumo_msg *m)
{
    if (kumo_msg_type(m) == T_STOP)
        return;
    kumo_send(self, kumo_msg_sender(m), T_PONG, kumo_msg_data(m), kumo_msg_len(m));
    kumo_receive(self, &pong_set, KUMO_INFINITY);
}

static void pong_init(kumo_proc *self, void *st)
{
    kumo_receive(self, &pong_set, KUMO_INFINITY);
}

static void ping_h(kumo_proc *self, void *st, kumo_msg *m);
static kumo_match ping_m[] = {{.kind = KUMO_MATCH_TYPE, .fn = ping_h}};
static const kumo_recv ping_set = {.matches = ping_m, .n = 1};

static void ping_h(kumo_proc *self, void *st, kumo_msg *m)
{
    struct ping *p = st;
    if (--p->left == 0) {
        kumo_send(self, p->peer, T_STOP, NULL, 0);
        kumo_send(self, p->report, T_DONE, NULL, 0);
        return;
    }
    long n = p->left;
    kumo_send(self, p->peer, T_PING, &n, sizeof n);
    kumo_receive(self, &ping_set, KUMO_INFINITY);
}

static void ping_init(kumo_proc *self, void *st)
{
    struct ping *p = st;
    long n = p->left;
    kumo_send(self, p->peer, T_PING, &n, sizeof n);
    kumo_receive(self, &ping_set, KUMO_INFINITY);
}

static double run(kumo_node *node, kumo_inbox *ib, int shard_a, int shard_b, long n)
{
    struct ping st = {.report = kumo_inbox_pid(ib), .left = n};
    kumo_spawn_opts ob = {.shard = shard_b}, oa = {.shard = shard_a};
    int err = kumo_spawn(node, kumo_inbox_proc(ib), &ob, pong_init, NULL, &st.peer);
    if (err)
        bench_die("spawn", err);
    double t0 = bench_now();
    err = kumo_spawn(node, kumo_inbox_proc(ib), &oa, ping_init, &st, NULL);
    if (err)
        bench_die("spawn", err);
    kumo_msg_free(bench_wait(ib, T_DONE));
    return (bench_now() - t0) * 1e9 / (double)n;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 2000000;
    T_PING = kumo_type("bench.ping");
    T_PONG = kumo_type("bench.pong");
    T_STOP = kumo_type("bench.stop");
    T_DONE = kumo_type("bench.done");
    ping_m[0].type = T_PONG;
    kumo_node *node = bench_node(2);
    kumo_inbox *ib;
    kumo_inbox_new(node, &ib);
    unsigned cross = kumo_node_shards(node) > 1 ? 1 : 0;
    double v[BENCH_REPS];

    run(node, ib, 0, 0, n / 4); /* warm-up */
    for (int i = 0; i < BENCH_REPS; i++)
        v[i] = run(node, ib, 0, 0, n);
    bench_report("pingpong_same_shard_rtt", v, BENCH_REPS, "ns");

    run(node, ib, 0, (int)cross, n / 8);
    for (int i = 0; i < BENCH_REPS; i++)
        v[i] = run(node, ib, 0, (int)cross, n / 2);
    bench_report("pingpong_cross_shard_rtt", v, BENCH_REPS, "ns");

    kumo_inbox_free(ib);
    kumo_node_free(node);
    return 0;
}
