/*
 * spawn_exit_rate: a process spawns N processes on its shard that end at
 * once (init returns without waiting); the clock stops when the last one
 * has run.  idle_process_bytes: allocator growth per process for 100k
 * processes blocked in receive, everything included (process, slot,
 * table growth).
 */
#include "_bench.h"
#include "engine/alloc.h"

static uint64_t T_CONT, T_DONE;

struct spawner {
    long to_spawn, pending;
    kumo_pid report;
    bool idle_children;
};

static void child_init(kumo_proc *self, void *st);
static void idle_h(kumo_proc *self, void *st, kumo_msg *m) {}
static kumo_match idle_m[] = {{.kind = KUMO_MATCH_TYPE, .fn = idle_h}};
static const kumo_recv idle_set = {.matches = idle_m, .n = 1};

static void child_init(kumo_proc *self, void *st)
{
    struct spawner *s = st;
    /* `s` lives in main's frame: read it all before DONE can release it. */
    if (s->idle_children)
        kumo_receive(self, &idle_set, KUMO_INFINITY);
    if (--s->pending == 0)
        kumo_send(self, s->report, T_DONE, NULL, 0);
    /* else: return without waiting = exit normal */
}

static void spawn_batch(kumo_proc *self, void *st, kumo_msg *m);
static kumo_match sp_m[] = {{.kind = KUMO_MATCH_TYPE, .fn = spawn_batch}};
static const kumo_recv sp_set = {.matches = sp_m, .n = 1};

static void spawn_batch(kumo_proc *self, void *st, kumo_msg *m)
{
    struct spawner *s = st;
    for (int i = 0; i < 1000 && s->to_spawn > 0; i++, s->to_spawn--) {
        int err = kumo_spawn(kumo_self_node(self), self, NULL, child_init, s, NULL);
        if (err)
            bench_die("spawn", err);
    }
    if (s->to_spawn > 0) {
        kumo_send(self, kumo_self(self), T_CONT, NULL, 0);
        kumo_receive(self, &sp_set, KUMO_INFINITY);
    }
}

static void spawner_init(kumo_proc *self, void *st)
{
    spawn_batch(self, st, NULL);
}

static void run(kumo_node *node, kumo_inbox *ib, long n, bool idle)
{
    struct spawner s = {
        .to_spawn = n, .pending = n, .report = kumo_inbox_pid(ib), .idle_children = idle};
    kumo_spawn_opts o = {.shard = 0};
    int err = kumo_spawn(node, kumo_inbox_proc(ib), &o, spawner_init, &s, NULL);
    if (err)
        bench_die("spawn", err);
    kumo_msg_free(bench_wait(ib, T_DONE));
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    T_CONT = kumo_type("bench.cont");
    T_DONE = kumo_type("bench.done");
    sp_m[0].type = T_CONT;
    idle_m[0].type = kumo_type("bench.never");
    kumo_node *node = bench_node(2);
    kumo_inbox *ib;
    kumo_inbox_new(node, &ib);
    double v[BENCH_REPS];
    run(node, ib, n / 4, false);
    for (int i = 0; i < BENCH_REPS; i++) {
        double t0 = bench_now();
        run(node, ib, n, false);
        v[i] = (double)n / (bench_now() - t0) / 1e6;
    }
    bench_report("spawn_exit_rate", v, BENCH_REPS, "Mproc/s");

    long idle = 100000;
    size_t before = kumo__allocated_bytes();
    run(node, ib, idle, true);
    size_t after = kumo__allocated_bytes();
    if (before || after) {
        double b = (double)(after - before) / (double)idle;
        printf("idle_process_bytes %.1f B\n", b);
    } else {
        printf("# idle_process_bytes needs the jemalloc build\n");
    }
    kumo_inbox_free(ib);
    kumo_node_free(node);
    return 0;
}
