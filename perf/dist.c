/*
 * Distribution: process-to-process across two nodes in two OS processes on
 * this machine, over tcp and over shm, with the workloads of
 * perf/erl/kumo_dist.erl (Erlang distribution, the same definitions):
 *
 *  dist_<t>_rtt_64B            us      a process on node A sends 64 bytes to an
 *                                      echo process on node B, which sends them
 *                                      back; time per round trip
 *  dist_<t>_oneway_<size>      Mmsg/s  a process on A sends N messages of
 *  dist_<t>_oneway_<size>_MBps MB/s    <size> bytes to a process on B, with
 *                                      credit flow control: at most Window in
 *                                      flight (32 MiB of messages, at most
 *                                      8192), the receiver acks every
 *                                      Window/8; timed from the first send
 *                                      until the sender learns the last one
 *                                      arrived
 *  dist_<t>_spawn              k/s     remote spawns by closure, each answered
 *                                      (kumo_spawn_remote + DidSpawn), 64 in
 *                                      flight
 *  dist_<t>_all_to_all_250     Mmsg/s  250 processes on each node; each sends
 *                                      an 8-byte message to every process on
 *                                      the other node, 4 rounds (500,000 in
 *                                      all); timed from the go until every
 *                                      process got all of its
 *  dist_<t>_ctl_alone          us      A kills a process on B that it monitors
 *                                      and waits for the DOWN
 *  dist_<t>_ctl_behind_64MiB   us      the same, right after sending a 64 MiB
 *                                      message to another process on B: how
 *                                      long a control signal waits behind a
 *                                      big message (one connection per node
 *                                      pair today; lanes will give control
 *                                      its own)
 *
 * Node B is forked before node A starts (no engine threads across fork),
 * runs the remote table, and tells A its address over a pipe.  Both nodes
 * run one shard that polls for 2 s before parking, as the polled round
 * trips of perf/transport_tcp.c do.
 */
#include "_bench.h"

#include <kumo/dist.h>

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define COOKIE "kumo-perf-dist"

static uint64_t T_PING, T_DATA, T_ACK, T_DONE, T_RESULT;

/* ---- the remote table (both nodes run it) ---- */

static void echo_got(kumo_proc *self, void *state, kumo_msg *m);
static kumo_match echo_any = {.kind = KUMO_MATCH_ANY, .fn = echo_got};
static const kumo_recv echo_set = {.matches = &echo_any, .n = 1, .flags = KUMO_RECV_PURE};
static void echo_got(kumo_proc *self, void *state, kumo_msg *m)
{
    (void)state;
    kumo_forward(self, kumo_msg_sender(m), m);
    kumo_receive(self, &echo_set, KUMO_INFINITY);
}
static void echo_closure(kumo_proc *self, const void *args, size_t len)
{
    (void)args;
    (void)len;
    kumo_receive(self, &echo_set, KUMO_INFINITY);
}

struct sink_args {
    uint64_t n, every;
};
struct sink {
    struct sink_args a;
    uint64_t got;
};
static void sink_got(kumo_proc *self, void *state, kumo_msg *m);
static kumo_match sink_match = {.kind = KUMO_MATCH_ANY, .fn = sink_got};
static const kumo_recv sink_set = {.matches = &sink_match, .n = 1, .flags = KUMO_RECV_PURE};
static void sink_got(kumo_proc *self, void *state, kumo_msg *m)
{
    struct sink *s = state;
    s->got++;
    kumo_pid from = kumo_msg_sender(m);
    if (s->got == s->a.n) {
        kumo_send(self, from, T_DONE, NULL, 0);
        return; /* ends */
    }
    if (s->got % s->a.every == 0)
        kumo_send(self, from, T_ACK, NULL, 0);
    kumo_receive(self, &sink_set, KUMO_INFINITY);
}
static void sink_exit(void *state, const kumo_reason *why)
{
    (void)why;
    free(state);
}
static void sink_closure(kumo_proc *self, const void *args, size_t len)
{
    struct sink *s = calloc(1, sizeof *s);
    if (len == sizeof s->a)
        memcpy(&s->a, args, sizeof s->a);
    kumo_set_state(self, s);
    kumo_receive(self, &sink_set, KUMO_INFINITY);
}

/* Takes every message and drops it. */
static void drop_got(kumo_proc *self, void *state, kumo_msg *m);
static kumo_match drop_any = {.kind = KUMO_MATCH_ANY, .fn = drop_got};
static const kumo_recv drop_set = {.matches = &drop_any, .n = 1, .flags = KUMO_RECV_PURE};
static void drop_got(kumo_proc *self, void *state, kumo_msg *m)
{
    (void)state;
    (void)m;
    kumo_receive(self, &drop_set, KUMO_INFINITY);
}
static void drop_closure(kumo_proc *self, const void *args, size_t len)
{
    (void)args;
    (void)len;
    kumo_receive(self, &drop_set, KUMO_INFINITY);
}

/* All to all: counts what it receives; on "go" (the other side's pids and
 * the rounds) sends to each of them; reports once it sent and got all. */
static uint64_t T_GO, T_A2A, T_A2A_DONE;
struct a2a {
    kumo_pid report;
    uint64_t expect, got;
    bool went;
};
struct a2a_go {
    uint32_t rounds, n;
    kumo_pid pids[];
};
static void a2a_got(kumo_proc *self, void *state, kumo_msg *m);
static kumo_match a2a_any = {.kind = KUMO_MATCH_ANY, .fn = a2a_got};
static const kumo_recv a2a_set = {.matches = &a2a_any, .n = 1};
static void a2a_got(kumo_proc *self, void *state, kumo_msg *m)
{
    struct a2a *a = state;
    if (kumo_msg_type(m) == T_GO) {
        const struct a2a_go *g = kumo_msg_data(m);
        uint64_t v = 0;
        for (uint32_t r = 0; r < g->rounds; r++)
            for (uint32_t i = 0; i < g->n; i++)
                kumo_send(self, g->pids[i], T_A2A, &v, sizeof v);
        a->went = true;
    } else {
        a->got++;
    }
    if (a->went && a->got == a->expect) {
        kumo_send(self, a->report, T_A2A_DONE, NULL, 0);
        return; /* ends */
    }
    kumo_receive(self, &a2a_set, KUMO_INFINITY);
}
static void a2a_start(kumo_proc *self, struct a2a *a)
{
    (void)a;
    kumo_receive(self, &a2a_set, KUMO_INFINITY);
}
static void a2a_init(kumo_proc *self, void *state)
{
    a2a_start(self, state);
}
static void a2a_exit(void *state, const kumo_reason *why)
{
    (void)why;
    free(state);
}
/* args: the report pid and the count to expect */
static void a2a_closure(kumo_proc *self, const void *args, size_t len)
{
    struct a2a *a = calloc(1, sizeof *a);
    if (!a || len != sizeof a->report + sizeof a->expect) {
        free(a);
        kumo_die(self, KUMO_EXCEPTION, "bad a2a arguments");
        return;
    }
    memcpy(&a->report, args, sizeof a->report);
    memcpy(&a->expect, (const uint8_t *)args + sizeof a->report, sizeof a->expect);
    kumo_set_state(self, a);
    a2a_start(self, a);
}

static const kumo_closure table[] = {
    {.name = "perf.a2a", .init = a2a_closure, .on_exit = a2a_exit},
    {.name = "perf.drop", .init = drop_closure},
    {.name = "perf.echo", .init = echo_closure},
    {.name = "perf.sink", .init = sink_closure, .on_exit = sink_exit},
};

static kumo_node *start_node(const char *transport)
{
    static const kumo_tcp_config tcp = {.cookie = COOKIE};
    static const kumo_shm_config shm = {.cookie = COOKIE};
    kumo_dist_transport t = {.name = transport,
                             .config = strcmp(transport, "tcp") == 0 ? (const void *)&tcp
                                                                     : (const void *)&shm};
    kumo_node_config cfg = {.shards = 1,
                            .spin_ns = 2000000000ull,
                            .transports = &t,
                            .ntransports = 1,
                            .closures = table,
                            .nclosures = sizeof table / sizeof table[0]};
    if (getenv("KUMO_BENCH_NO_SPIN"))
        cfg.spin_ns = KUMO_SPIN_NEVER;
    kumo_node *node;
    int err = kumo_node_start(&cfg, &node);
    if (err)
        bench_die("kumo_node_start", err);
    return node;
}

/* Node B: serves until its parent closes `ctl`. */
static void peer_main(const char *transport, int addr_fd, int ctl)
{
    kumo_node *node = start_node(transport);
    kumo_address a;
    if (kumo_node_address(node, 0, &a))
        _exit(2);
    if (write(addr_fd, &a, sizeof a) != (ssize_t)sizeof a)
        _exit(2);
    close(addr_fd);
    char c;
    while (read(ctl, &c, 1) > 0)
        ;
    kumo_node_free(node);
    _exit(0);
}

/* ---- node A's processes ---- */

struct pinger {
    kumo_pid peer, report;
    uint64_t left;
    double t0;
    uint8_t payload[64];
};
static void ping_got(kumo_proc *self, void *state, kumo_msg *m);
static kumo_match ping_match = {.kind = KUMO_MATCH_ANY, .fn = ping_got};
static const kumo_recv ping_set = {.matches = &ping_match, .n = 1, .flags = KUMO_RECV_PURE};
static void ping_got(kumo_proc *self, void *state, kumo_msg *m)
{
    struct pinger *p = state;
    if (--p->left == 0) {
        double dt = bench_now() - p->t0;
        kumo_send(self, p->report, T_RESULT, &dt, sizeof dt);
        return;
    }
    kumo_forward(self, p->peer, m);
    kumo_receive(self, &ping_set, KUMO_INFINITY);
}
static void ping_init(kumo_proc *self, void *state)
{
    struct pinger *p = state;
    p->t0 = bench_now();
    kumo_send(self, p->peer, T_PING, p->payload, sizeof p->payload);
    kumo_receive(self, &ping_set, KUMO_INFINITY);
}

struct pump {
    kumo_pid sink, report;
    uint64_t n, sent, window, every, credit;
    size_t size;
    uint8_t *buf;
    double t0;
    kumo_match m[2];
    kumo_recv set;
};
static void pump_send(kumo_proc *self, struct pump *p)
{
    while (p->credit && p->sent < p->n) {
        int err = kumo_send(self, p->sink, T_DATA, p->buf, p->size);
        if (err)
            bench_die("kumo_send", err);
        p->credit--;
        p->sent++;
    }
}
static void pump_ack(kumo_proc *self, void *state, kumo_msg *m)
{
    struct pump *p = state;
    p->credit += p->every;
    pump_send(self, p);
    kumo_receive(self, &p->set, KUMO_INFINITY);
}
static void pump_done(kumo_proc *self, void *state, kumo_msg *m)
{
    struct pump *p = state;
    double dt = bench_now() - p->t0;
    kumo_send(self, p->report, T_RESULT, &dt, sizeof dt);
}
static void pump_init(kumo_proc *self, void *state)
{
    struct pump *p = state;
    p->m[0] = (kumo_match){.kind = KUMO_MATCH_TYPE, .type = T_ACK, .fn = pump_ack};
    p->m[1] = (kumo_match){.kind = KUMO_MATCH_TYPE, .type = T_DONE, .fn = pump_done};
    p->set = (kumo_recv){.matches = p->m, .n = 2};
    p->credit = p->window;
    p->t0 = bench_now();
    pump_send(self, p);
    kumo_receive(self, &p->set, KUMO_INFINITY);
}

struct spawner {
    uint64_t peer_node, left, inflight;
    kumo_pid report;
    double t0;
    kumo_match m;
    kumo_recv set;
};
static void spawn_got(kumo_proc *self, void *state, kumo_msg *m)
{
    struct spawner *s = state;
    const kumo_did_spawn_msg *r = kumo_msg_data(m);
    if (r->err)
        bench_die("remote spawn", r->err);
    kumo_kill(self, r->pid, NULL);
    if (--s->inflight == 0 && s->left == 0) {
        double dt = bench_now() - s->t0;
        kumo_send(self, s->report, T_RESULT, &dt, sizeof dt);
        return;
    }
    if (s->left) {
        s->left--;
        s->inflight++;
        kumo_spawn_remote(self, s->peer_node, "perf.echo", NULL, 0, NULL, NULL);
    }
    kumo_receive(self, &s->set, KUMO_INFINITY);
}
static void spawner_init(kumo_proc *self, void *state)
{
    struct spawner *s = state;
    s->m = (kumo_match){.kind = KUMO_MATCH_TYPE, .type = kumo_type_did_spawn(), .fn = spawn_got};
    s->set = (kumo_recv){.matches = &s->m, .n = 1};
    s->t0 = bench_now();
    for (int i = 0; i < 64 && s->left; i++) {
        s->left--;
        s->inflight++;
        kumo_spawn_remote(self, s->peer_node, "perf.echo", NULL, 0, NULL, NULL);
    }
    kumo_receive(self, &s->set, KUMO_INFINITY);
}

static double wait_result(kumo_inbox *ib)
{
    kumo_msg *m = bench_wait(ib, T_RESULT);
    double dt;
    memcpy(&dt, kumo_msg_data(m), sizeof dt);
    kumo_msg_free(m);
    return dt;
}

static kumo_pid remote_spawn(kumo_inbox *ib, uint64_t node, const char *name, const void *args,
                             size_t len)
{
    kumo_pid pid;
    int err = kumo_spawn_remote_wait(ib, node, name, args, len, NULL, &pid);
    if (err)
        bench_die("kumo_spawn_remote_wait", err);
    return pid;
}

static void rtt(const char *t, kumo_node *a, kumo_inbox *ib, uint64_t b, uint64_t trips)
{
    kumo_pid echo = remote_spawn(ib, b, "perf.echo", NULL, 0);
    double v[BENCH_REPS];
    for (int rep = -1; rep < BENCH_REPS; rep++) {
        struct pinger p = {.peer = echo, .report = kumo_inbox_pid(ib)};
        p.left = rep < 0 ? trips / 10 : trips;
        uint64_t k = p.left;
        kumo_pid pid;
        int err = kumo_spawn(a, kumo_inbox_proc(ib), NULL, ping_init, &p, &pid);
        if (err)
            bench_die("kumo_spawn", err);
        double dt = wait_result(ib);
        if (rep >= 0)
            v[rep] = dt / (double)k * 1e6;
    }
    kumo_kill(kumo_inbox_proc(ib), echo, NULL);
    char name[64];
    snprintf(name, sizeof name, "dist_%s_rtt_64B", t);
    bench_report(name, v, BENCH_REPS, "us");
}

static void oneway(const char *t, kumo_node *a, kumo_inbox *ib, uint64_t b, const char *label,
                   size_t size, uint64_t n)
{
    uint64_t window = (32u << 20) / size;
    if (window > 8192)
        window = 8192;
    uint8_t *buf = malloc(size);
    memset(buf, 0x5a, size);
    double v[BENCH_REPS];
    for (int rep = -1; rep < BENCH_REPS; rep++) {
        uint64_t k = rep < 0 ? n / 10 : n;
        struct sink_args sa = {.n = k, .every = window / 8};
        kumo_pid sink = remote_spawn(ib, b, "perf.sink", &sa, sizeof sa);
        struct pump p = {.sink = sink,
                         .report = kumo_inbox_pid(ib),
                         .n = k,
                         .window = window,
                         .every = window / 8,
                         .size = size,
                         .buf = buf};
        kumo_pid pid;
        int err = kumo_spawn(a, kumo_inbox_proc(ib), NULL, pump_init, &p, &pid);
        if (err)
            bench_die("kumo_spawn", err);
        double dt = wait_result(ib);
        if (rep >= 0)
            v[rep] = (double)k / dt / 1e6;
    }
    free(buf);
    char name[64];
    snprintf(name, sizeof name, "dist_%s_oneway_%s", t, label);
    bench_report_rates(name, v, size);
}

static void spawns(const char *t, kumo_node *a, kumo_inbox *ib, uint64_t b, uint64_t n)
{
    double v[BENCH_REPS];
    for (int rep = -1; rep < BENCH_REPS; rep++) {
        struct spawner s = {.peer_node = b, .report = kumo_inbox_pid(ib)};
        s.left = rep < 0 ? n / 10 : n;
        uint64_t k = s.left;
        kumo_pid pid;
        int err = kumo_spawn(a, kumo_inbox_proc(ib), NULL, spawner_init, &s, &pid);
        if (err)
            bench_die("kumo_spawn", err);
        double dt = wait_result(ib);
        if (rep >= 0)
            v[rep] = (double)k / dt / 1e3;
    }
    char name[64];
    snprintf(name, sizeof name, "dist_%s_spawn", t);
    bench_report(name, v, BENCH_REPS, "k/s");
}

static void all_to_all(const char *t, kumo_node *a, kumo_inbox *ib, uint64_t b)
{
    enum { N = 250, ROUNDS = 4 };
    size_t golen = sizeof(struct a2a_go) + N * sizeof(kumo_pid);
    struct a2a_go *to_b = malloc(golen), *to_a = malloc(golen);
    double v[BENCH_REPS];
    for (int rep = -1; rep < BENCH_REPS; rep++) {
        uint64_t expect = (uint64_t)N * ROUNDS;
        uint8_t args[sizeof(kumo_pid) + sizeof expect];
        kumo_pid me = kumo_inbox_pid(ib);
        memcpy(args, &me, sizeof me);
        memcpy(args + sizeof me, &expect, sizeof expect);
        *to_b = (struct a2a_go){.rounds = ROUNDS, .n = N};
        *to_a = (struct a2a_go){.rounds = ROUNDS, .n = N};
        for (int i = 0; i < N; i++) {
            struct a2a *st = calloc(1, sizeof *st);
            st->report = me;
            st->expect = expect;
            kumo_spawn_opts o = {.shard = KUMO_SHARD_SAME, .on_exit = a2a_exit};
            int err = kumo_spawn(a, kumo_inbox_proc(ib), &o, a2a_init, st, &to_b->pids[i]);
            if (err)
                bench_die("kumo_spawn", err);
            to_a->pids[i] = remote_spawn(ib, b, "perf.a2a", args, sizeof args);
        }
        double t0 = bench_now();
        for (int i = 0; i < N; i++) {
            kumo_send(kumo_inbox_proc(ib), to_b->pids[i], T_GO, to_a, golen);
            kumo_send(kumo_inbox_proc(ib), to_a->pids[i], T_GO, to_b, golen);
        }
        for (int i = 0; i < 2 * N; i++)
            kumo_msg_free(bench_wait(ib, T_A2A_DONE));
        double dt = bench_now() - t0;
        if (rep >= 0)
            v[rep] = 2.0 * N * (double)expect / dt / 1e6;
    }
    free(to_a);
    free(to_b);
    char name[64];
    snprintf(name, sizeof name, "dist_%s_all_to_all_250", t);
    bench_report(name, v, BENCH_REPS, "Mmsg/s");
}

/* One kill of a monitored process on b, timed to its DOWN; with `big`
 * bytes sent to `sink` first. */
static double kill_to_down(kumo_inbox *ib, uint64_t b, kumo_pid sink, const uint8_t *big,
                           size_t len)
{
    kumo_proc *me = kumo_inbox_proc(ib);
    kumo_pid victim = remote_spawn(ib, b, "perf.echo", NULL, 0);
    kumo_ref ref;
    int err = kumo_monitor(me, victim, &ref);
    if (err)
        bench_die("kumo_monitor", err);
    /* the monitor is in place once an echo came back */
    kumo_send(me, victim, T_PING, NULL, 0);
    kumo_msg_free(bench_wait(ib, T_PING));
    if (big && (err = kumo_send(me, sink, T_DATA, big, len)))
        bench_die("kumo_send (64 MiB)", err);
    double t0 = bench_now();
    kumo_kill(me, victim, NULL);
    kumo_msg_free(bench_wait(ib, kumo_type_down()));
    return (bench_now() - t0) * 1e6;
}

static void control_delay(const char *t, kumo_inbox *ib, uint64_t b)
{
    size_t len = 64u << 20;
    uint8_t *big = malloc(len);
    memset(big, 0x5a, len);
    kumo_pid sink = remote_spawn(ib, b, "perf.drop", NULL, 0);
    double alone[BENCH_REPS], behind[BENCH_REPS];
    for (int rep = -1; rep < BENCH_REPS; rep++) {
        double a = kill_to_down(ib, b, sink, NULL, 0);
        double d = kill_to_down(ib, b, sink, big, len);
        if (rep >= 0) {
            alone[rep] = a;
            behind[rep] = d;
        }
    }
    kumo_kill(kumo_inbox_proc(ib), sink, NULL);
    free(big);
    char name[64];
    snprintf(name, sizeof name, "dist_%s_ctl_alone", t);
    bench_report(name, alone, BENCH_REPS, "us");
    snprintf(name, sizeof name, "dist_%s_ctl_behind_64MiB", t);
    bench_report(name, behind, BENCH_REPS, "us");
}

/* Keeps the calling process to the k-th CPU it may use (each node pins
 * its shard to the first CPU of its mask: two nodes must not share one). */
static void use_cpu(unsigned k)
{
    cpu_set_t all, one;
    if (sched_getaffinity(0, sizeof all, &all) || CPU_COUNT(&all) < 2)
        return;
    CPU_ZERO(&one);
    for (int c = 0, seen = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &all) && (unsigned)seen++ == k) {
            CPU_SET(c, &one);
            break;
        }
    sched_setaffinity(0, sizeof one, &one);
}

/* argv[2], when given, picks one workload ("rtt", "oneway_64B", "spawn"...). */
static const char *only;
static bool wanted(const char *workload)
{
    return !only || strcmp(only, workload) == 0;
}

static void run(const char *t)
{
    int ap[2], cp[2];
    if (pipe(ap) || pipe(cp))
        bench_die("pipe", -errno);
    pid_t child = fork();
    if (child < 0)
        bench_die("fork", -errno);
    if (child == 0) {
        close(ap[0]);
        close(cp[1]);
        use_cpu(1);
        peer_main(t, ap[1], cp[0]);
    }
    close(ap[1]);
    close(cp[0]);
    kumo_address baddr;
    if (read(ap[0], &baddr, sizeof baddr) != (ssize_t)sizeof baddr)
        bench_die("reading the peer's address", -EIO);
    close(ap[0]);
    cpu_set_t mask;
    sched_getaffinity(0, sizeof mask, &mask);
    use_cpu(0);
    kumo_node *a = start_node(t);
    sched_setaffinity(0, sizeof mask, &mask); /* (the shard keeps its pin) */
    kumo_inbox *ib;
    int err = kumo_inbox_new(a, &ib);
    if (err)
        bench_die("kumo_inbox_new", err);
    uint64_t b;
    err = kumo_node_connect(a, &baddr, 30000000000LL, &b);
    if (err)
        bench_die("kumo_node_connect", err);

    if (wanted("rtt"))
        rtt(t, a, ib, b, 20000);
    if (wanted("oneway_64B"))
        oneway(t, a, ib, b, "64B", 64, 2000000);
    if (wanted("oneway_1KiB"))
        oneway(t, a, ib, b, "1KiB", 1024, 500000);
    if (wanted("oneway_64KiB"))
        oneway(t, a, ib, b, "64KiB", 64u << 10, 20000);
    if (wanted("oneway_1MiB"))
        oneway(t, a, ib, b, "1MiB", 1u << 20, 1500);
    if (wanted("spawn"))
        spawns(t, a, ib, b, 20000);
    if (wanted("all_to_all"))
        all_to_all(t, a, ib, b);
    if (wanted("ctl"))
        control_delay(t, ib, b);

    kumo_inbox_free(ib);
    kumo_node_free(a);
    close(cp[1]); /* the peer stops */
    int status;
    waitpid(child, &status, 0);
}

/* Usage: dist [tcp|shm [workload]]; with no argument, everything. */
int main(int argc, char **argv)
{
    kumo_log_set_level(KUMO_LOG_WARN);
    T_PING = kumo_type("perf.ping");
    T_DATA = kumo_type("perf.data");
    T_ACK = kumo_type("perf.ack");
    T_DONE = kumo_type("perf.done");
    T_RESULT = kumo_type("perf.result");
    T_GO = kumo_type("perf.a2a.go");
    T_A2A = kumo_type("perf.a2a");
    T_A2A_DONE = kumo_type("perf.a2a.done");
    if (argc > 2)
        only = argv[2];
    if (argc < 2 || strcmp(argv[1], "tcp") == 0)
        run("tcp");
    if (argc < 2 || strcmp(argv[1], "shm") == 0)
        run("shm");
    return 0;
}
