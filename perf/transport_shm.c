/*
 * shm transport between two processes, against raw shared-memory round
 * trips measured in the same run (both processes spinning, one per CPU).
 *
 *   shm_rtt_8B_raw_flag  a counter bounced through one cache line each way,
 *                        no payload: the floor of any shared-memory path
 *   shm_rtt_64B_raw      64 B through a plain SPSC byte ring per direction
 *                        (the baseline: what a hand-written ring
 *                        with no framework around it costs)
 *   shm_rtt_64B_kumo     Kumo round trip, 64 B, one spinning shard per
 *                        process
 *   shm_oneway_<size>_kumo   one-way 64 B (copied) and 1 MiB (lent)
 *
 * The peer process is forked before the parent starts its engine; it runs
 * one shard with an endpoint that echoes messages starting with 'E' and
 * counts the others in shared memory the parent reads.
 */
#include "_engine_bench.h"

#include "engine/engine.h"
#include "transport/transport.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

struct shared {
    _Alignas(64) _Atomic long ping;
    _Alignas(64) _Atomic long pong;
    _Alignas(64) _Atomic long counted; /* messages the peer counted */
    _Alignas(64) kumo_address addr;
    _Atomic int ready;
};

static struct shared *sh_mem;

/* ---- the peer process ---- */

static kumo_conn peer_back;
static bool peer_ready;
static long peer_count;

static void peer_connected(kumo_endpoint *ep, kumo_conn c, int err, void *arg)
{
    if (err)
        _exit(2);
    peer_back = c;
    peer_ready = true;
}

static void peer_event(kumo_endpoint *ep, const kumo_event *ev, void *arg)
{
    if (ev->kind == KUMO_EV_CONNECTION_OPENED && !peer_ready)
        kumo_connect(ep, ev->address, KUMO_RELIABLE_ORDERED, NULL, peer_connected, NULL);
    if (ev->kind != KUMO_EV_RECEIVED)
        return;
    if (*(const char *)ev->iov[0].iov_base == 'E') {
        kumo_conn_send(peer_back, ev->iov, ev->iovcnt, NULL, NULL);
        return;
    }
    if ((++peer_count & 63) == 0)
        atomic_store_explicit(&sh_mem->counted, peer_count, memory_order_release);
}

/* The CPUs the program was given (main reads it before pinning itself). */
static cpu_set_t all_cpus;

/* Puts the calling process on the cpu-th CPU it was given (its shard is
 * pinned to the first CPU of its mask: without this both processes' shards
 * share CPU 0). */
static void use_cpu(int cpu)
{
    const cpu_set_t all = all_cpus;
    cpu_set_t one;
    CPU_ZERO(&one);
    if (CPU_COUNT(&all) < 2)
        return;
    for (int c = 0, k = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &all) && k++ == cpu) {
            CPU_SET(c, &one);
            sched_setaffinity(0, sizeof one, &one);
            return;
        }
}

static void peer_main(void)
{
    use_cpu(1);
    kumo_log_set_level(KUMO_LOG_ERROR);
    struct kumo__engine *eng = bench_engine(1, 2000000000ull);
    kumo_transport *t;
    kumo_shm_config cfg = {.ring_bytes = 4u << 20, .max_message = 64u << 20};
    if (kumo__transport_new(eng, "shm", &cfg, &t))
        _exit(3);
    kumo_endpoint *ep;
    if (kumo_endpoint_new(t, 0, peer_event, NULL, &ep))
        _exit(4);
    sh_mem->addr = *kumo_endpoint_address(ep);
    atomic_store(&sh_mem->ready, 1);
    for (;;)
        pause();
}

/* ---- raw shared memory: a bare flag and a plain SPSC ring ---- */

/* The floor: one counter each way, one cache line per direction, no
 * payload. */
static void raw_flag_rtt(long n)
{
    atomic_store(&sh_mem->ping, 0);
    atomic_store(&sh_mem->pong, 0);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        use_cpu(1);
        for (long i = 1; i <= n * (BENCH_REPS + 1); i++) {
            while (atomic_load_explicit(&sh_mem->ping, memory_order_acquire) != i)
                __builtin_ia32_pause();
            atomic_store_explicit(&sh_mem->pong, i, memory_order_release);
        }
        _exit(0);
    }
    use_cpu(0);
    double v[BENCH_REPS];
    long k = 0;
    for (int rep = -1; rep < BENCH_REPS; rep++) {
        double t0 = bench_now();
        for (long i = 0; i < n; i++) {
            k++;
            atomic_store_explicit(&sh_mem->ping, k, memory_order_release);
            while (atomic_load_explicit(&sh_mem->pong, memory_order_acquire) != k)
                __builtin_ia32_pause();
        }
        if (rep >= 0)
            v[rep] = (bench_now() - t0) / (double)n * 1e9;
    }
    waitpid(pid, NULL, 0);
    bench_report("shm_rtt_8B_raw_flag", v, BENCH_REPS, "ns");
}

/* The baseline: a plain single-producer single-consumer byte ring
 * per direction, indices on their own cache lines, each message an 8-byte
 * length and its bytes; the producer keeps the last head it read. */
#define RAW_RING (64u << 10)

struct raw_ring {
    _Alignas(64) _Atomic uint64_t tail;
    _Alignas(64) _Atomic uint64_t head;
    _Alignas(64) uint8_t data[RAW_RING];
};

struct raw_side {
    struct raw_ring *r;
    uint64_t mine, seen; /* our index; producer: the head last read */
};

static void raw_put(struct raw_side *s, const void *msg, uint64_t len)
{
    uint64_t need = 8 + ((len + 7) & ~7ull);
    while (RAW_RING - (s->mine - s->seen) < need) {
        s->seen = atomic_load_explicit(&s->r->head, memory_order_acquire);
        __builtin_ia32_pause();
    }
    uint64_t pos = s->mine & (RAW_RING - 1);
    if (RAW_RING - pos < need) { /* no wrapped records: pad to the end */
        memset(s->r->data + pos, 0xff, 8);
        s->mine += RAW_RING - pos;
        raw_put(s, msg, len);
        return;
    }
    memcpy(s->r->data + pos, &len, 8);
    memcpy(s->r->data + pos + 8, msg, len);
    s->mine += need;
    atomic_store_explicit(&s->r->tail, s->mine, memory_order_release);
}

static uint64_t raw_get(struct raw_side *s, void *out)
{
    for (;;) {
        while (atomic_load_explicit(&s->r->tail, memory_order_acquire) == s->mine)
            __builtin_ia32_pause();
        uint64_t pos = s->mine & (RAW_RING - 1), len;
        memcpy(&len, s->r->data + pos, 8);
        if (len == UINT64_MAX) {
            s->mine += RAW_RING - pos;
            atomic_store_explicit(&s->r->head, s->mine, memory_order_release);
            continue;
        }
        memcpy(out, s->r->data + pos + 8, len);
        s->mine += 8 + ((len + 7) & ~7ull);
        atomic_store_explicit(&s->r->head, s->mine, memory_order_release);
        return len;
    }
}

static void raw_ring_rtt(long n)
{
    struct raw_ring *rings =
        mmap(NULL, 2 * sizeof *rings, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (rings == MAP_FAILED)
        bench_die("mmap", -errno);
    uint8_t msg[64] = {'E'}, in[64];
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        use_cpu(1);
        struct raw_side rx = {.r = &rings[0]}, tx = {.r = &rings[1]};
        for (long i = 0; i < n * (BENCH_REPS + 1); i++) {
            uint64_t len = raw_get(&rx, in);
            raw_put(&tx, in, len);
        }
        _exit(0);
    }
    use_cpu(0);
    struct raw_side tx = {.r = &rings[0]}, rx = {.r = &rings[1]};
    double v[BENCH_REPS];
    for (int rep = -1; rep < BENCH_REPS; rep++) {
        double t0 = bench_now();
        for (long i = 0; i < n; i++) {
            raw_put(&tx, msg, sizeof msg);
            if (raw_get(&rx, in) != sizeof msg || in[0] != 'E')
                bench_die("raw ring", -EPROTO);
        }
        if (rep >= 0)
            v[rep] = (bench_now() - t0) / (double)n * 1e9;
    }
    waitpid(pid, NULL, 0);
    munmap(rings, 2 * sizeof *rings);
    bench_report("shm_rtt_64B_raw", v, BENCH_REPS, "ns");
}

/* ---- Kumo ---- */

static struct {
    struct kumo__engine *eng;
    kumo_conn c;
    struct flag ready, done;
    long left;
    uint8_t msg[64];
    /* one-way */
    size_t size;
    uint8_t *buf;
    long total, sent, window;
    struct kumo__task pump, kick;
} K = {.ready = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false},
       .done = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false}};

static void me_connected(kumo_endpoint *ep, kumo_conn c, int err, void *arg)
{
    if (err)
        bench_die("connect", err);
    K.c = c;
}

static void me_event(kumo_endpoint *ep, const kumo_event *ev, void *arg)
{
    if (ev->kind == KUMO_EV_CONNECTION_OPENED) {
        flag_set(&K.ready); /* the peer's reply connection */
        return;
    }
    if (ev->kind != KUMO_EV_RECEIVED)
        return;
    if (--K.left <= 0) {
        flag_set(&K.done);
        return;
    }
    kumo_conn_send(K.c, &(struct iovec){K.msg, sizeof K.msg}, 1, NULL, NULL);
}

static void kick_fn(struct kumo__shard *sh, struct kumo__task *t)
{
    if (sh)
        kumo_conn_send(K.c, &(struct iovec){K.msg, sizeof K.msg}, 1, NULL, NULL);
}

static void noop_release(void *arg) {}

static void ready_fn(kumo_conn c, int err, void *arg)
{
    if (err)
        bench_die("when ready", err);
    kumo__task_post(K.eng, 0, &K.pump);
}

static void pump_fn(struct kumo__shard *sh, struct kumo__task *t)
{
    if (!sh)
        return;
    long counted = atomic_load_explicit(&sh_mem->counted, memory_order_acquire);
    for (int k = 0; k < 1024 && K.sent < K.total && K.sent - counted < K.window; k++) {
        int err = kumo_conn_send(K.c, &(struct iovec){K.buf, K.size}, 1,
                                 K.size > 1024 ? noop_release : NULL, NULL);
        if (err == -KUMO_EBUSY) {
            /* the link's queue is full: go on once it has drained */
            if ((err = kumo_conn_when_ready(K.c, ready_fn, NULL)))
                bench_die("when ready", err);
            return;
        }
        if (err)
            bench_die("send", err);
        K.sent++;
    }
    if (K.sent < K.total)
        kumo__task_post(K.eng, 0, &K.pump);
}

static void oneway(const char *label, size_t size, long n)
{
    K.size = size;
    K.buf = calloc(1, size);
    K.buf[0] = 'C';
    K.window = (long)((2u << 20) / size);
    if (K.window < 128)
        K.window = 128;
    K.pump.fn = pump_fn;
    double v[BENCH_REPS];
    for (int rep = -1; rep < BENCH_REPS; rep++) {
        /* The peer publishes its count every 64 messages: whole multiples
         * of 64, so the count reaches the total only once the pump has
         * sent the last message and stopped (posting the pump again while
         * it still re-posts itself would queue its task twice). */
        long k = rep < 0 ? n / 10 : n;
        k -= k % 64;
        K.total = K.sent + k;
        double t0 = bench_now();
        kumo__task_post(K.eng, 0, &K.pump);
        while (atomic_load_explicit(&sh_mem->counted, memory_order_acquire) < K.total)
            usleep(50);
        double dt = bench_now() - t0;
        if (rep >= 0)
            v[rep] = (double)k / dt / 1e6;
    }
    char name[64];
    snprintf(name, sizeof name, "shm_oneway_%s_kumo", label);
    bench_report_rates(name, v, size);
    free(K.buf);
}

int main(void)
{
    sh_mem = mmap(NULL, sizeof *sh_mem, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh_mem == MAP_FAILED)
        bench_die("mmap", -errno);
    if (sched_getaffinity(0, sizeof all_cpus, &all_cpus))
        CPU_ZERO(&all_cpus);
    raw_flag_rtt(200000);
    raw_ring_rtt(200000);

    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        peer_main();
    }
    while (!atomic_load(&sh_mem->ready))
        usleep(1000);
    kumo_log_set_level(KUMO_LOG_WARN);
    use_cpu(0);
    K.eng = bench_engine(1, 2000000000ull);
    kumo_transport *t;
    kumo_shm_config cfg = {.ring_bytes = 4u << 20, .max_message = 64u << 20};
    int err = kumo__transport_new(K.eng, "shm", &cfg, &t);
    if (err)
        bench_die("transport", err);
    kumo_endpoint *me;
    if ((err = kumo_endpoint_new(t, 0, me_event, NULL, &me)))
        bench_die("endpoint", err);
    if ((err = kumo_connect(me, &sh_mem->addr, KUMO_RELIABLE_ORDERED, NULL, me_connected, NULL)))
        bench_die("connect", err);
    flag_wait(&K.ready);

    K.msg[0] = 'E';
    K.kick.fn = kick_fn;
    long n = 200000;
    double v[BENCH_REPS];
    for (int rep = -1; rep < BENCH_REPS; rep++) {
        K.left = rep < 0 ? n / 10 : n;
        double t0 = bench_now();
        kumo__task_post(K.eng, 0, &K.kick);
        flag_wait(&K.done);
        if (rep >= 0)
            v[rep] = (bench_now() - t0) / (double)n * 1e9;
    }
    bench_report("shm_rtt_64B_kumo", v, BENCH_REPS, "ns");

    oneway("64B", 64, 4000000);
    oneway("1MiB", 1u << 20, 4000);

    kumo_transport_free(t);
    kumo__engine_stop(K.eng);
    kumo__engine_destroy(K.eng);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return 0;
}
