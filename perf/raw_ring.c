/*
 * The limit for cross-shard ping-pong: two pinned threads bouncing a word
 * through two SPSC rings (indices on separate cache lines, spinning), the
 * same structure Kumo's shards use, with nothing else around it.
 */
#include "_bench.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>

#define CAP 1024

struct ring {
    _Alignas(64) _Atomic uint32_t head;
    _Alignas(64) _Atomic uint32_t tail;
    _Alignas(64) uint64_t slot[CAP];
};

static struct ring a2b, b2a;
static long rounds;

static void put(struct ring *r, uint64_t v)
{
    uint32_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    while (t - atomic_load_explicit(&r->head, memory_order_acquire) >= CAP)
        __builtin_ia32_pause();
    r->slot[t % CAP] = v;
    atomic_store_explicit(&r->tail, t + 1, memory_order_release);
}

static uint64_t get(struct ring *r)
{
    uint32_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    while (atomic_load_explicit(&r->tail, memory_order_acquire) == h)
        __builtin_ia32_pause();
    uint64_t v = r->slot[h % CAP];
    atomic_store_explicit(&r->head, h + 1, memory_order_release);
    return v;
}

static void pin(int cpu)
{
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    pthread_setaffinity_np(pthread_self(), sizeof s, &s);
}

static void *echo(void *arg)
{
    pin(1);
    for (long i = 0; i < rounds; i++)
        put(&b2a, get(&a2b) + 1);
    return NULL;
}

static double run(long n)
{
    rounds = n;
    pthread_t t;
    pthread_create(&t, NULL, echo, NULL);
    pin(0);
    double t0 = bench_now();
    uint64_t v = 0;
    for (long i = 0; i < n; i++)
        v = get((put(&a2b, v), &b2a));
    double dt = bench_now() - t0;
    pthread_join(t, NULL);
    if (v != (uint64_t)n)
        bench_die("raw ring lost a value", -1);
    return dt * 1e9 / (double)n;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    double v[BENCH_REPS];
    run(n / 4);
    for (int i = 0; i < BENCH_REPS; i++)
        v[i] = run(n);
    bench_report("raw_spsc_ring_rtt", v, BENCH_REPS, "ns");
    return 0;
}
