/*
 * Kumo's main demo: one node with 2 shards.
 *  1. ping-pong between a process on shard 0 and one on shard 1 (a few
 *     visible exchanges, then 200,000 timed round trips);
 *  2. a ring of 1,000 processes passing a token 1,000,000 hops;
 *  3. failure handling: a monitored worker crashes, a linked supervisor
 *     that traps exits sees why, and the registry forgets the dead name.
 * Every line is printed in Cloud Haskell's `say` format.
 */
#include <kumo/kumo.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t T_PING, T_PONG, T_STOP, T_DONE, T_TOKEN, T_WORK;
/* The types static receive sets name (kumo_type_of gives the fingerprint). */
static kumo_type_decl D_PONG = KUMO_TYPE_DECL("demo.pong");
static kumo_type_decl D_TOKEN = KUMO_TYPE_DECL("demo.token");

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- ping-pong ---- */

struct pinger {
    kumo_pid ponger, report;
    long left, shown;
    double t0;
};

static void pong_h(kumo_proc *self, void *st, kumo_msg *m);
static kumo_match pong_m[] = {{.kind = KUMO_MATCH_ANY, .fn = pong_h}};
static const kumo_recv pong_set = {.matches = pong_m, .n = 1};

static void pong_h(kumo_proc *self, void *st, kumo_msg *m)
{
    if (kumo_msg_type(m) == T_STOP) {
        kumo_say(self, "ponger on shard %u: stop received, exiting normally",
                 kumo_self_shard(self));
        return;
    }
    kumo_send(self, kumo_msg_sender(m), T_PONG, kumo_msg_data(m), kumo_msg_len(m));
    kumo_receive(self, &pong_set, KUMO_INFINITY);
}

static void pong_init(kumo_proc *self, void *st)
{
    kumo_receive(self, &pong_set, KUMO_INFINITY);
}

static void ping_h(kumo_proc *self, void *st, kumo_msg *m);
static const kumo_match ping_m[] = {{.kind = KUMO_MATCH_TYPE, .decl = &D_PONG, .fn = ping_h}};
static const kumo_recv ping_set = {.matches = ping_m, .n = 1};

static void ping_h(kumo_proc *self, void *st, kumo_msg *m)
{
    struct pinger *p = st;
    long n;
    memcpy(&n, kumo_msg_data(m), sizeof n);
    if (p->shown < 3) {
        kumo_say(self, "pinger on shard %u: pong #%ld back from shard %u", kumo_self_shard(self), n,
                 kumo_msg_sender(m).shard);
        p->shown++;
        if (p->shown == 3)
            p->t0 = now_s();
    }
    if (--p->left == 0) {
        double dt = now_s() - p->t0;
        kumo_say(self, "pinger: %ld round trips across shards, %.0f ns each", n - 3,
                 dt * 1e9 / (double)(n - 3));
        kumo_send(self, p->ponger, T_STOP, NULL, 0);
        kumo_send(self, p->report, T_DONE, NULL, 0);
        return;
    }
    n++;
    kumo_send(self, p->ponger, T_PING, &n, sizeof n);
    kumo_receive(self, &ping_set, KUMO_INFINITY);
}

static void ping_init(kumo_proc *self, void *st)
{
    struct pinger *p = st;
    long n = 1;
    kumo_say(self, "pinger on shard %u: sending ping #1", kumo_self_shard(self));
    kumo_send(self, p->ponger, T_PING, &n, sizeof n);
    kumo_receive(self, &ping_set, KUMO_INFINITY);
}

/* ---- ring ---- */

struct member {
    kumo_pid next, report;
};

static void token_h(kumo_proc *self, void *st, kumo_msg *m);
static const kumo_match ring_m[] = {{.kind = KUMO_MATCH_TYPE, .decl = &D_TOKEN, .fn = token_h}};
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

/* ---- failure ---- */

static void work_h(kumo_proc *self, void *st, kumo_msg *m)
{
    int x;
    memcpy(&x, kumo_msg_data(m), sizeof x);
    kumo_say(self, "worker: got %d, dividing by zero is not allowed", x);
    kumo_die(self, KUMO_EXCEPTION, "division by zero (input %d)", x);
}

static void worker_init(kumo_proc *self, void *st)
{
    kumo_expect(self, T_WORK, work_h);
}

static uint64_t T_WORKER;

static void sup_exit_h(kumo_proc *self, void *st, kumo_msg *m)
{
    const kumo_exit_msg *e = kumo_msg_data(m);
    char pid[64];
    kumo_say(self, "supervisor: linked worker %s exited: %s (%s)",
             kumo_pid_str(e->from, pid, sizeof pid), kumo_reason_kind_str(e->reason.kind),
             e->reason.text);
    kumo_send(self, *(kumo_pid *)st, T_DONE, NULL, 0);
}

/* Traps exits, spawns the worker linked to itself on the other shard,
 * registers it and tells main who it is. */
static void sup_init(kumo_proc *self, void *st)
{
    kumo_trap_exit(self, true);
    kumo_spawn_opts o = {.shard = (int)(1 % kumo_node_shards(kumo_self_node(self))), .link = true};
    kumo_pid worker;
    if (kumo_spawn(kumo_self_node(self), self, &o, worker_init, NULL, &worker) ||
        kumo_register(kumo_self_node(self), "worker", worker)) {
        kumo_die(self, KUMO_EXCEPTION, "could not start the worker");
        return;
    }
    kumo_say(self, "supervisor: started worker on shard %u, registered as \"worker\"",
             worker.shard);
    kumo_send(self, *(kumo_pid *)st, T_WORKER, &worker, sizeof worker);
    kumo_expect(self, kumo_type_exit(), sup_exit_h);
}

static void die_if(int err, const char *what)
{
    if (err) {
        fprintf(stderr, "demo: %s: %s\n", what, kumo_strerror(err));
        exit(1);
    }
}

static void wait_done(kumo_inbox *ib)
{
    kumo_msg *m;
    die_if(kumo_inbox_expect(ib, T_DONE, 60000000000LL, &m), "waiting");
    kumo_msg_free(m);
}

int main(void)
{
    T_PING = kumo_type("demo.ping");
    T_PONG = kumo_type_of(&D_PONG);
    T_STOP = kumo_type("demo.stop");
    T_DONE = kumo_type("demo.done");
    T_TOKEN = kumo_type_of(&D_TOKEN);
    T_WORK = kumo_type("demo.work");
    T_WORKER = kumo_type("demo.worker");

    kumo_node_config cfg = {.shards = 2};
    kumo_node *node;
    die_if(kumo_node_start(&cfg, &node), "starting the node");
    kumo_inbox *ib;
    die_if(kumo_inbox_new(node, &ib), "creating the inbox");
    kumo_proc *me = kumo_inbox_proc(ib);
    kumo_pid self = kumo_inbox_pid(ib);
    kumo_say(me, "node up with %u shards; main runs as this process", kumo_node_shards(node));

    /* 1. ping-pong across shards */
    struct pinger pg = {.report = self, .left = 200003};
    kumo_spawn_opts on1 = {.shard = 1 % (int)kumo_node_shards(node)}, on0 = {.shard = 0};
    die_if(kumo_spawn(node, me, &on1, pong_init, NULL, &pg.ponger), "spawn");
    die_if(kumo_spawn(node, me, &on0, ping_init, &pg, NULL), "spawn");
    wait_done(ib);

    /* 2. ring of 1,000 processes */
    enum { RING = 1000 };
    static struct member mem[RING];
    static kumo_pid pids[RING];
    for (int i = 0; i < RING; i++) {
        mem[i].report = self;
        die_if(kumo_spawn(node, me, &on0, member_init, &mem[i], &pids[i]), "spawn");
    }
    for (int i = 0; i < RING; i++)
        mem[i].next = pids[(i + 1) % RING];
    long hops = 1000000;
    kumo_say(me, "ring of %d processes: sending a token %ld hops", RING, hops);
    double t0 = now_s();
    kumo_send(me, pids[0], T_TOKEN, &hops, sizeof hops);
    wait_done(ib);
    kumo_say(me, "ring: token came home, %.1f ns per hop", (now_s() - t0) * 1e9 / (double)hops);

    /* 3. failure: a supervisor (trapping exits) links a worker; main
     * monitors it and sends it a job by name; the job crashes it. */
    kumo_msg *m;
    die_if(kumo_spawn(node, me, &on0, sup_init, &self, NULL), "spawn");
    die_if(kumo_inbox_expect(ib, T_WORKER, 10000000000LL, &m), "waiting for the worker");
    kumo_pid worker;
    memcpy(&worker, kumo_msg_data(m), sizeof worker);
    kumo_msg_free(m);
    kumo_ref ref;
    die_if(kumo_monitor(me, worker, &ref), "monitor");
    int zero = 0;
    kumo_say(me, "sending job 0 to \"worker\"");
    die_if(kumo_nsend(me, "worker", T_WORK, &zero, sizeof zero), "nsend");
    die_if(kumo_inbox_expect(ib, kumo_type_down(), 10000000000LL, &m), "waiting for DOWN");
    const kumo_down_msg *d = kumo_msg_data(m);
    kumo_say(me, "monitor: worker went down: %s (%s)", kumo_reason_kind_str(d->reason.kind),
             d->reason.text);
    kumo_msg_free(m);
    wait_done(ib); /* the supervisor saw the exit too */
    kumo_pid w;
    kumo_say(me, "registry: whereis(\"worker\") -> %s",
             kumo_whereis(node, "worker", &w) == -KUMO_ENONAME ? "no such name (released at death)"
                                                               : "still registered");
    kumo_say(me, "stopping the node");
    kumo_inbox_free(ib);
    kumo_node_free(node);
    return 0;
}
