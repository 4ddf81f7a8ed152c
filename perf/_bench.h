/*
 * Benchmark harness shared by the programs in perf/: warm-up, repetitions,
 * spread, and the `name value unit` output line that perf/run parses.
 */
#ifndef KUMO_PERF_BENCH_H
#define KUMO_PERF_BENCH_H

#include <kumo/kumo.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int bench_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define BENCH_REPS 5

/* Prints the median of v[0..n) as the metric, and a comment line with the
 * spread. */
static inline void bench_report(const char *name, double *v, int n, const char *unit)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp);
    double med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    printf("%s %.3f %s\n", name, med, unit);
    printf("# %s spread %.3f..%.3f over %d runs\n", name, v[0], v[n - 1], n);
    fflush(stdout);
}

/* A one-way workload's two lines: `name` in Mmsg/s and `name`_MBps in
 * MB/s, from the repetitions' message rates v[] (Mmsg/s) of `size`-byte
 * messages. */
static inline void bench_report_rates(const char *name, double *v, size_t size)
{
    char mbname[128];
    double mb[BENCH_REPS];
    for (int i = 0; i < BENCH_REPS; i++)
        mb[i] = v[i] * (double)size; /* 1e6 messages of `size` bytes: MB */
    bench_report(name, v, BENCH_REPS, "Mmsg/s");
    snprintf(mbname, sizeof mbname, "%s_MBps", name);
    bench_report(mbname, mb, BENCH_REPS, "MB/s");
}

static inline void bench_die(const char *what, int err)
{
    fprintf(stderr, "%s: %s\n", what, kumo_strerror(err));
    exit(1);
}

/* Waits for a message of `type` on `ib`; aborts the benchmark after 120 s. */
static inline kumo_msg *bench_wait(kumo_inbox *ib, uint64_t type)
{
    kumo_msg *m;
    int err = kumo_inbox_expect(ib, type, 120000000000LL, &m);
    if (err)
        bench_die("waiting for a result", err);
    return m;
}

static inline kumo_node *bench_node(unsigned shards)
{
    kumo_log_set_level(KUMO_LOG_WARN);
    kumo_node_config cfg = {.shards = shards};
    /* KUMO_BENCH_NO_SPIN=1: park at once when idle (for valgrind, which
     * serialises threads and starves a spinning shard's peers). */
    if (getenv("KUMO_BENCH_NO_SPIN"))
        cfg.spin_ns = KUMO_SPIN_NEVER;
    kumo_node *node;
    int err = kumo_node_start(&cfg, &node);
    if (err)
        bench_die("kumo_node_start", err);
    return node;
}

#endif
