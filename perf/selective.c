/*
 * Selective receive with a backlog: a process with 10,000 unmatched
 * messages queued ahead takes the one matching message, answers, and
 * waits again; versus the same exchange with an empty mailbox.  With the
 * scan cursor the backlog is never rescanned, so the two should cost
 * about the same.  Both processes share a shard; ns per exchange.
 */
#include "_bench.h"

static uint64_t T_JUNK, T_MATCH, T_ACK, T_DONE;

struct taker {
    long left;
};

static void take_h(kumo_proc *self, void *st, kumo_msg *m);
static kumo_match take_m[] = {{.kind = KUMO_MATCH_TYPE, .fn = take_h}};
static const kumo_recv take_set = {.matches = take_m, .n = 1};

static void take_h(kumo_proc *self, void *st, kumo_msg *m)
{
    kumo_send(self, kumo_msg_sender(m), T_ACK, NULL, 0);
    kumo_receive(self, &take_set, KUMO_INFINITY);
}

static void taker_init(kumo_proc *self, void *st)
{
    kumo_receive(self, &take_set, KUMO_INFINITY);
}

struct driver {
    kumo_pid taker, report;
    long junk, left;
};

static void ack_h(kumo_proc *self, void *st, kumo_msg *m);
static kumo_match ack_m[] = {{.kind = KUMO_MATCH_TYPE, .fn = ack_h}};
static const kumo_recv ack_set = {.matches = ack_m, .n = 1};

static void ack_h(kumo_proc *self, void *st, kumo_msg *m)
{
    struct driver *d = st;
    if (--d->left == 0) {
        /* `d` lives in main's frame: touch it only before DONE. */
        kumo_kill(self, d->taker, "done");
        kumo_send(self, d->report, T_DONE, NULL, 0);
        return;
    }
    kumo_send(self, d->taker, T_MATCH, NULL, 0);
    kumo_receive(self, &ack_set, KUMO_INFINITY);
}

static void driver_init(kumo_proc *self, void *st)
{
    struct driver *d = st;
    for (long i = 0; i < d->junk; i++)
        kumo_send(self, d->taker, T_JUNK, &i, sizeof i);
    kumo_send(self, d->taker, T_MATCH, NULL, 0);
    kumo_receive(self, &ack_set, KUMO_INFINITY);
}

static double run(kumo_node *node, kumo_inbox *ib, long junk, long n)
{
    struct driver d = {.report = kumo_inbox_pid(ib), .junk = junk, .left = n};
    kumo_spawn_opts o = {.shard = 0};
    kumo_spawn(node, kumo_inbox_proc(ib), &o, taker_init, NULL, &d.taker);
    double t0 = bench_now();
    kumo_spawn(node, kumo_inbox_proc(ib), &o, driver_init, &d, NULL);
    kumo_msg_free(bench_wait(ib, T_DONE));
    return (bench_now() - t0) * 1e9 / (double)n;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    T_JUNK = kumo_type("bench.junk");
    T_MATCH = kumo_type("bench.match");
    T_ACK = kumo_type("bench.ack");
    T_DONE = kumo_type("bench.done");
    take_m[0].type = T_MATCH;
    ack_m[0].type = T_ACK;
    kumo_node *node = bench_node(2);
    kumo_inbox *ib;
    kumo_inbox_new(node, &ib);
    double e[BENCH_REPS], f[BENCH_REPS];
    run(node, ib, 0, n / 4);
    for (int i = 0; i < BENCH_REPS; i++) {
        e[i] = run(node, ib, 0, n);
        f[i] = run(node, ib, 10000, n);
    }
    bench_report("selective_recv_empty", e, BENCH_REPS, "ns");
    bench_report("selective_recv_10k", f, BENCH_REPS, "ns");
    kumo_inbox_free(ib);
    kumo_node_free(node);
    return 0;
}
