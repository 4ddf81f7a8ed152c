/*
 * One-way stream of 64-byte messages from a process on shard 0 to one on
 * shard 1, with credit-based flow control (an ack per 1,000 messages,
 * 8,192 in flight at most) so memory stays bounded.  Messages per second.
 */
#include "_bench.h"

static uint64_t T_DATA, T_ACK, T_DONE;

#define WINDOW 8192
#define ACK_EVERY 1000

struct sender {
    kumo_pid rx;
    long left, credit;
};

struct receiver {
    kumo_pid report;
    long expect, got;
};

static void rx_h(kumo_proc *self, void *st, kumo_msg *m);
static kumo_match rx_m[] = {{.kind = KUMO_MATCH_TYPE, .fn = rx_h}};
static const kumo_recv rx_set = {.matches = rx_m, .n = 1};

static void rx_h(kumo_proc *self, void *st, kumo_msg *m)
{
    struct receiver *r = st;
    if (++r->got % ACK_EVERY == 0)
        kumo_send(self, kumo_msg_sender(m), T_ACK, NULL, 0);
    if (r->got == r->expect) {
        kumo_send(self, r->report, T_DONE, NULL, 0);
        return;
    }
    kumo_receive(self, &rx_set, KUMO_INFINITY);
}

static void rx_init(kumo_proc *self, void *st)
{
    kumo_receive(self, &rx_set, KUMO_INFINITY);
}

static void tx_h(kumo_proc *self, void *st, kumo_msg *m);
static kumo_match tx_m[] = {{.kind = KUMO_MATCH_TYPE, .fn = tx_h}};
static const kumo_recv tx_set = {.matches = tx_m, .n = 1};

static void pump(kumo_proc *self, struct sender *s)
{
    char payload[64] = {0};
    while (s->credit > 0 && s->left > 0) {
        memcpy(payload, &s->left, sizeof s->left);
        kumo_send(self, s->rx, T_DATA, payload, sizeof payload);
        s->credit--;
        s->left--;
    }
    if (s->left > 0)
        kumo_receive(self, &tx_set, KUMO_INFINITY);
}

static void tx_h(kumo_proc *self, void *st, kumo_msg *m)
{
    struct sender *s = st;
    s->credit += ACK_EVERY;
    pump(self, s);
}

static void tx_init(kumo_proc *self, void *st)
{
    pump(self, st);
}

static double run(kumo_node *node, kumo_inbox *ib, long n)
{
    struct receiver r = {.report = kumo_inbox_pid(ib), .expect = n};
    struct sender s = {.left = n, .credit = WINDOW};
    unsigned cross = kumo_node_shards(node) > 1;
    kumo_spawn_opts orx = {.shard = (int)cross}, otx = {.shard = 0};
    kumo_spawn(node, kumo_inbox_proc(ib), &orx, rx_init, &r, &s.rx);
    double t0 = bench_now();
    kumo_spawn(node, kumo_inbox_proc(ib), &otx, tx_init, &s, NULL);
    kumo_msg_free(bench_wait(ib, T_DONE));
    return (double)n / (bench_now() - t0) / 1e6;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 10000000;
    T_DATA = kumo_type("bench.data");
    T_ACK = kumo_type("bench.ack");
    T_DONE = kumo_type("bench.done");
    rx_m[0].type = T_DATA;
    tx_m[0].type = T_ACK;
    kumo_node *node = bench_node(2);
    kumo_inbox *ib;
    kumo_inbox_new(node, &ib);
    double v[BENCH_REPS];
    run(node, ib, n / 4);
    for (int i = 0; i < BENCH_REPS; i++)
        v[i] = run(node, ib, n);
    bench_report("stream_cross_shard_64B", v, BENCH_REPS, "Mmsg/s");
    kumo_inbox_free(ib);
    kumo_node_free(node);
    return 0;
}
