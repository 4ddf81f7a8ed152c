/*
 * For benchmarks of layers below processes (transports): a bare engine
 * whose upper-layer hooks do nothing, and a flag a plain thread waits on
 * until a shard sets it.
 */
#ifndef KUMO_PERF_ENGINE_BENCH_H
#define KUMO_PERF_ENGINE_BENCH_H

#include "_bench.h"
#include "engine/engine.h"

#include <pthread.h>
#include <stdbool.h>

static void bare_deliver(void *ctx, struct kumo__shard *sh, struct kumo__item *it) {}
static unsigned bare_run(void *ctx, struct kumo__shard *sh)
{
    return 0;
}
static void bare_timer(void *ctx, struct kumo__shard *sh, struct kumo__timer *t) {}
static void bare_shutdown(void *ctx, struct kumo__shard *sh) {}
static void bare_discard(void *ctx, struct kumo__item *it) {}

/* A started engine of `shards` shards that spin `spin_ns` when idle. */
static inline struct kumo__engine *bench_engine(unsigned shards, uint64_t spin_ns)
{
    struct kumo__engine_config cfg = {.shards = shards, .spin_ns = spin_ns};
    struct kumo__engine_hooks hooks = {.deliver = bare_deliver,
                                       .run = bare_run,
                                       .timer = bare_timer,
                                       .shutdown = bare_shutdown,
                                       .discard = bare_discard};
    struct kumo__engine *eng;
    int err = kumo__engine_create(&cfg, &hooks, &eng);
    if (!err)
        err = kumo__engine_start(eng);
    if (err)
        bench_die("engine", err);
    return eng;
}

struct flag {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool set;
};

static inline void flag_set(struct flag *f)
{
    pthread_mutex_lock(&f->mu);
    f->set = true;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static inline void flag_init(struct flag *f)
{
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    f->set = false;
}

/* Waits until set, then clears it for the next round. */
static inline void flag_wait(struct flag *f)
{
    pthread_mutex_lock(&f->mu);
    while (!f->set)
        pthread_cond_wait(&f->cv, &f->mu);
    f->set = false;
    pthread_mutex_unlock(&f->mu);
}

#endif
