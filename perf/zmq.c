/*
 * ZeroMQ baselines for the tcp and shm transports (issue 3): libzmq from
 * Debian, the workloads of perf/transport_tcp.c and perf/transport_shm.c,
 * the peer in a forked process.  <tr> is tcp (tcp://127.0.0.1, port chosen
 * by the kernel) or ipc (a Unix socket in the abstract namespace, ZeroMQ's
 * same-host transport, set against Kumo's shm).
 *
 *   zmq_<tr>_rtt_64B              us      round trip of a 64-byte message:
 *                                         REQ/REP, blocking zmq_send and
 *                                         zmq_recv (libzmq's own latency
 *                                         test, local_lat/remote_lat)
 *   zmq_<tr>_oneway_<size>        Mmsg/s  one-way PUSH -> PULL (libzmq's
 *                                         local_thr/remote_thr), sizes 64B,
 *                                         1KiB, 64KiB, 1MiB
 *   zmq_<tr>_oneway_<size>_MBps   MB/s    the same in 10^6 bytes per second
 *
 * One-way: the parent sends with zmq_send (copied) for 64 B and 1 KiB and
 * with zmq_send_const (the buffer lent, not copied) for 64 KiB and 1 MiB,
 * as Kumo copies and lends at those sizes; the child receives with
 * zmq_msg_recv (no copy out of ZeroMQ's buffer), counts, and writes one
 * byte to a pipe after the last message of a repetition: the time runs
 * from the first send until the parent reads that byte.  High water marks
 * (SNDHWM on the sender, RCVHWM on the receiver): 32 MiB worth of
 * messages, Kumo's per-stream flow-control window, but at most 10000:
 * 10000 messages of 64 B or 1 KiB, 512 of 64 KiB, 32 of 1 MiB.  The cap was
 * ZeroMQ's best in a few runs on this 2-core VM while it was busy (load
 * 2-4, so only large differences count): 1 KiB ran at 0.41-0.45 Mmsg/s
 * with 32768 or no limit and at 0.5-0.85 with 1000 (the default) or 10000;
 * 64 B was best with 10000 (3.8-5.1 against 1.1-3.5 with 1000); 64 KiB and
 * 1 MiB did not care (8 to 1000).  Two processes with an application and
 * an I/O thread each (ZeroMQ's defaults), not pinned (one comparison with
 * one process per core showed nothing beyond the noise).
 *
 * Each figure is the median of BENCH_REPS repetitions after an untimed
 * warm-up repetition of a tenth as many messages, on one connection.  The
 * parent forks the peer before it creates its own ZeroMQ context (a context
 * does not survive fork); the peer dies with the parent (PR_SET_PDEATHSIG)
 * and every blocking call has a time limit, so a run always ends.
 */
#include "_bench.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#define TIMEOUT_MS 30000 /* any single blocking call */
#define RUN_LIMIT_S 240  /* the whole program (SIGALRM) */
#define WINDOW_BYTES (32u << 20)
#define HWM_MAX 10000

enum kind { RTT, ONEWAY };

struct work {
    const char *tr; /* "tcp" or "ipc" */
    enum kind kind;
    const char *label; /* "64B", ... */
    size_t size;
    long n; /* messages (round trips) per timed repetition */
};

static long reps_count(const struct work *w, int rep)
{
    return rep < 0 ? w->n / 10 : w->n;
}

static int hwm_for(size_t size)
{
    size_t m = WINDOW_BYTES / size;
    return m > HWM_MAX ? HWM_MAX : (int)m;
}

static void zdie(const char *what)
{
    fprintf(stderr, "zmq: %s: %s\n", what, zmq_strerror(errno));
    exit(1);
}

static void die(const char *what)
{
    fprintf(stderr, "zmq: %s\n", what);
    exit(1);
}

static void set_int(void *s, int opt, int v)
{
    if (zmq_setsockopt(s, opt, &v, sizeof v))
        zdie("zmq_setsockopt");
}

/* A socket of `type` with time limits on every blocking call and a high
 * water mark of `hwm` messages in both directions. */
static void *make_socket(void *ctx, int type, int hwm)
{
    void *s = zmq_socket(ctx, type);
    if (!s)
        zdie("zmq_socket");
    set_int(s, ZMQ_SNDHWM, hwm);
    set_int(s, ZMQ_RCVHWM, hwm);
    set_int(s, ZMQ_SNDTIMEO, TIMEOUT_MS);
    set_int(s, ZMQ_RCVTIMEO, TIMEOUT_MS);
    /* Bounded, not 0: the REP side's last reply must still leave. */
    set_int(s, ZMQ_LINGER, 5000);
    return s;
}

/* Reads exactly n bytes from the pipe, waiting at most TIMEOUT_MS for each
 * chunk; dies on end of file (the peer failed) or timeout. */
static void pipe_read(int fd, void *buf, size_t n)
{
    char *p = buf;
    while (n) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, TIMEOUT_MS);
        if (r == 0)
            die("peer timed out");
        if (r < 0) {
            if (errno == EINTR)
                continue;
            die("poll failed");
        }
        ssize_t got = read(fd, p, n);
        if (got == 0)
            die("peer exited early");
        if (got < 0) {
            if (errno == EINTR)
                continue;
            die("read from peer failed");
        }
        p += got;
        n -= (size_t)got;
    }
}

static void pipe_write(int fd, const void *buf, size_t n)
{
    if (write(fd, buf, n) != (ssize_t)n)
        die("write to parent failed");
}

/* ------------------------------------------------------------------ */
/* The peer (child process): REP echo or PULL sink                     */
/* ------------------------------------------------------------------ */

static void peer_main(const struct work *w, const char *bind_to, int out)
{
    alarm(RUN_LIMIT_S);
    void *ctx = zmq_ctx_new();
    if (!ctx)
        zdie("zmq_ctx_new");
    void *s = make_socket(ctx, w->kind == RTT ? ZMQ_REP : ZMQ_PULL, hwm_for(w->size));
    if (zmq_bind(s, bind_to))
        zdie("zmq_bind");
    char ep[256];
    size_t len = sizeof ep;
    if (zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, ep, &len))
        zdie("ZMQ_LAST_ENDPOINT");
    uint32_t n32 = (uint32_t)len; /* includes the terminating NUL */
    pipe_write(out, &n32, sizeof n32);
    pipe_write(out, ep, len);

    if (w->kind == RTT) {
        uint8_t b[64];
        for (int rep = -1; rep < BENCH_REPS; rep++) {
            for (long i = 0; i < reps_count(w, rep); i++) {
                if (zmq_recv(s, b, sizeof b, 0) != (int)sizeof b)
                    zdie("peer zmq_recv");
                if (zmq_send(s, b, sizeof b, 0) != (int)sizeof b)
                    zdie("peer zmq_send");
            }
        }
    } else {
        zmq_msg_t m;
        zmq_msg_init(&m);
        for (int rep = -1; rep < BENCH_REPS; rep++) {
            for (long i = 0; i < reps_count(w, rep); i++) {
                if (zmq_msg_recv(&m, s, 0) < 0)
                    zdie("peer zmq_msg_recv");
                if (zmq_msg_size(&m) != w->size)
                    die("peer received a message of the wrong size");
            }
            pipe_write(out, "d", 1);
        }
        zmq_msg_close(&m);
    }
    zmq_close(s);
    zmq_ctx_term(ctx);
}

/* Forks the peer for `w`, which binds to `bind_to`; returns its pid, the
 * read end of its pipe in *in and the address it bound in ep. */
static pid_t peer_start(const struct work *w, const char *bind_to, int *in, char *ep, size_t cap)
{
    int fds[2];
    if (pipe(fds))
        die("pipe failed");
    pid_t parent = getpid();
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        die("fork failed");
    if (pid == 0) {
        close(fds[0]);
        /* Die with the parent; it may already have died before prctl. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() != parent)
            _exit(1);
        peer_main(w, bind_to, fds[1]);
        _exit(0);
    }
    close(fds[1]);
    *in = fds[0];
    uint32_t len;
    pipe_read(*in, &len, sizeof len);
    if (len == 0 || len > cap)
        die("bad endpoint from peer");
    pipe_read(*in, ep, len);
    ep[len - 1] = '\0';
    return pid;
}

static void peer_wait(pid_t pid, int in)
{
    int st;
    close(in);
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        die("peer failed");
}

/* ------------------------------------------------------------------ */
/* The measuring side (parent): REQ or PUSH                            */
/* ------------------------------------------------------------------ */

static void run(const struct work *w)
{
    char bind_to[128], ep[256], name[96];
    if (strcmp(w->tr, "tcp") == 0)
        snprintf(bind_to, sizeof bind_to, "tcp://127.0.0.1:*");
    else
        snprintf(bind_to, sizeof bind_to, "ipc://@kumo-perf-zmq-%ld-%s-%s", (long)getpid(),
                 w->kind == RTT ? "rtt" : "oneway", w->label);
    int in;
    pid_t pid = peer_start(w, bind_to, &in, ep, sizeof ep);

    void *ctx = zmq_ctx_new();
    if (!ctx)
        zdie("zmq_ctx_new");
    void *s = make_socket(ctx, w->kind == RTT ? ZMQ_REQ : ZMQ_PUSH, hwm_for(w->size));
    if (zmq_connect(s, ep))
        zdie("zmq_connect");
    uint8_t *buf = calloc(1, w->size);
    if (!buf)
        die("out of memory");
    double v[BENCH_REPS];
    bool lend = w->size >= (64u << 10);
    for (int rep = -1; rep < BENCH_REPS; rep++) {
        long k = reps_count(w, rep);
        double t0 = bench_now();
        if (w->kind == RTT) {
            for (long i = 0; i < k; i++) {
                if (zmq_send(s, buf, w->size, 0) != (int)w->size)
                    zdie("zmq_send");
                if (zmq_recv(s, buf, w->size, 0) != (int)w->size)
                    zdie("zmq_recv");
            }
        } else {
            for (long i = 0; i < k; i++) {
                int r = lend ? zmq_send_const(s, buf, w->size, 0) : zmq_send(s, buf, w->size, 0);
                if (r != (int)w->size)
                    zdie("zmq_send");
            }
            char d;
            pipe_read(in, &d, 1);
        }
        double dt = bench_now() - t0;
        if (rep < 0)
            continue;
        if (w->kind == RTT) {
            v[rep] = dt / (double)k * 1e6;
        } else {
            v[rep] = (double)k / dt / 1e6;
        }
    }
    zmq_close(s);
    zmq_ctx_term(ctx);
    peer_wait(pid, in);
    free(buf);

    if (w->kind == RTT) {
        snprintf(name, sizeof name, "zmq_%s_rtt_%s", w->tr, w->label);
        bench_report(name, v, BENCH_REPS, "us");
    } else {
        snprintf(name, sizeof name, "zmq_%s_oneway_%s", w->tr, w->label);
        bench_report_rates(name, v, w->size);
    }
}

int main(void)
{
    alarm(RUN_LIMIT_S);
    int major, minor, patch;
    zmq_version(&major, &minor, &patch);
    printf("# zmq libzmq %d.%d.%d: rtt REQ/REP, one-way PUSH/PULL; hwm 32 MiB of messages, at "
           "most %d\n",
           major, minor, patch, HWM_MAX);
    static const char *const trs[] = {"tcp", "ipc"};
    for (size_t t = 0; t < 2; t++) {
        const struct work ws[] = {
            {trs[t], RTT, "64B", 64, 5000},           {trs[t], ONEWAY, "64B", 64, 1000000},
            {trs[t], ONEWAY, "1KiB", 1024, 300000},   {trs[t], ONEWAY, "64KiB", 64u << 10, 10000},
            {trs[t], ONEWAY, "1MiB", 1u << 20, 1000},
        };
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
            run(&ws[i]);
    }
    return 0;
}
