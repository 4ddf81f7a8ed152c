/*
 * Ring of N processes on one shard passing one token around: ns per hop.
 * The token is forwarded (ownership moves, no copy), as a real program
 * would pass a message on.
 */
#include "_bench.h"

static uint64_t T_TOKEN, T_DONE;

struct member {
    kumo_pid next, report;
};

static void token_h(kumo_proc *self, void *st, kumo_msg *m);
static kumo_match ring_m[] = {{.kind = KUMO_MATCH_TYPE, .fn = token_h}};
static const kumo_recv ring_set = {.matches = ring_m, .n = 1};

static void token_h(kumo_proc *self, void *st, kumo_msg *m)
{
    struct member *me = st;
    long *hops = (long *)kumo_msg_data(m);
    if (--*hops <= 0)
        kumo_send(self, me->report, T_DONE, NULL, 0);
    else
        kumo_forward(self, me->next, m);
    kumo_receive(self, &ring_set, KUMO_INFINITY);
}

static void member_init(kumo_proc *self, void *st)
{
    kumo_receive(self, &ring_set, KUMO_INFINITY);
}

static void bench(kumo_node *node, kumo_inbox *ib, long n, long hops, const char *name)
{
    struct member *mem = calloc((size_t)n, sizeof *mem);
    kumo_pid *pids = calloc((size_t)n, sizeof *pids);
    kumo_spawn_opts o = {.shard = 0};
    for (long i = 0; i < n; i++) {
        mem[i].report = kumo_inbox_pid(ib);
        int err = kumo_spawn(node, kumo_inbox_proc(ib), &o, member_init, &mem[i], &pids[i]);
        if (err)
            bench_die("spawn", err);
    }
    /* The members only read `next` when the token reaches them, after
     * these stores (the token's send orders them). */
    for (long i = 0; i < n; i++)
        mem[i].next = pids[(i + 1) % n];
    double v[BENCH_REPS];
    for (int r = -1; r < BENCH_REPS; r++) {
        long h = r < 0 ? hops / 4 : hops;
        double t0 = bench_now();
        kumo_send(kumo_inbox_proc(ib), pids[0], T_TOKEN, &h, sizeof h);
        kumo_msg_free(bench_wait(ib, T_DONE));
        if (r >= 0)
            v[r] = (bench_now() - t0) * 1e9 / (double)hops;
    }
    bench_report(name, v, BENCH_REPS, "ns");
    for (long i = 0; i < n; i++)
        kumo_kill(kumo_inbox_proc(ib), pids[i], "bench over");
    /* wait until they are gone before freeing their state */
    while (kumo_node_process_count(node) > 1)
        ;
    free(mem);
    free(pids);
}

int main(int argc, char **argv)
{
    T_TOKEN = kumo_type("bench.token");
    T_DONE = kumo_type("bench.done");
    ring_m[0].type = T_TOKEN;
    kumo_node *node = bench_node(2);
    kumo_inbox *ib;
    kumo_inbox_new(node, &ib);
    bench(node, ib, 1000, 2000000, "ring_1k_hop");
    bench(node, ib, 100000, 2000000, "ring_100k_hop");
    kumo_inbox_free(ib);
    kumo_node_free(node);
    return 0;
}
