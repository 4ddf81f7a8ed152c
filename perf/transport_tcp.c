/*
 * tcp transport against raw sockets, measured in the same run.
 *
 *   tcp_rtt_64B_kumo_poll      Kumo round trip, 64 B, shards spinning
 *   tcp_rtt_64B_raw_poll       raw C ping-pong, recv(MSG_DONTWAIT) busy poll
 *   tcp_rtt_64B_kumo_sleep     Kumo round trip, shards parking when idle
 *   tcp_rtt_64B_raw_blocking   raw C ping-pong, blocking recv
 *   tcp_oneway_<size>_kumo     Kumo one-way, messages/s and MB/s
 *   tcp_oneway_<size>_raw      raw writev stream of the same messages
 *   tcp_oneway_<size>_kumo_{zc,copy}[_MBps]
 *                              lent sends with SENDMSG_ZC forced on / off
 *                              (the measurement behind KUMO_TCP_ZEROCOPY_MIN)
 *
 * Kumo runs two endpoints on two shards of a bare engine (no processes);
 * every send is made on the sender's shard (the fast path).  Sizes: 64 B,
 * 1 KiB (copied sends), 64 KiB, 1 MiB (lent sends, zero copy).  The raw
 * stream writes 1024 messages per writev for small sizes (at most 1 MiB
 * per call) with no framing, so it is the limit of the socket itself.
 */
#include "_engine_bench.h"

#include "engine/engine.h"
#include "transport/transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Kumo round trip                                                     */
/* ------------------------------------------------------------------ */

struct rtt {
    kumo_endpoint *a, *b;
    kumo_conn ab, ba;
    bool ba_ready;
    long left;
    struct flag done, ready;
    uint8_t msg[64];
};

static void rtt_back_connected(kumo_endpoint *ep, kumo_conn c, int err, void *arg)
{
    struct rtt *r = arg;
    if (err)
        bench_die("connect back", err);
    r->ba = c;
    r->ba_ready = true;
    flag_set(&r->ready);
}

static void rtt_b(kumo_endpoint *ep, const kumo_event *ev, void *arg)
{
    struct rtt *r = arg;
    if (ev->kind == KUMO_EV_CONNECTION_OPENED && !r->ba_ready)
        kumo_connect(ep, ev->address, KUMO_RELIABLE_ORDERED, NULL, rtt_back_connected, r);
    else if (ev->kind == KUMO_EV_RECEIVED)
        kumo_conn_send(r->ba, ev->iov, ev->iovcnt, NULL, NULL);
}

static void rtt_a(kumo_endpoint *ep, const kumo_event *ev, void *arg)
{
    struct rtt *r = arg;
    if (ev->kind != KUMO_EV_RECEIVED)
        return;
    if (--r->left <= 0) {
        flag_set(&r->done);
        return;
    }
    kumo_conn_send(r->ab, &(struct iovec){r->msg, sizeof r->msg}, 1, NULL, NULL);
}

static void connected(kumo_endpoint *ep, kumo_conn c, int err, void *arg)
{
    struct rtt *r = arg;
    if (err)
        bench_die("connect", err);
    r->ab = c; /* b connects back when the OPEN arrives */
}

static struct kumo__task kick_task;
static struct rtt *kick_r;
static void kick_fn(struct kumo__shard *sh, struct kumo__task *t)
{
    if (sh)
        kumo_conn_send(kick_r->ab, &(struct iovec){kick_r->msg, sizeof kick_r->msg}, 1, NULL, NULL);
}

static void kumo_rtt(const char *name, uint64_t spin_ns, long n)
{
    struct kumo__engine *eng = bench_engine(2, spin_ns);
    kumo_transport *t;
    kumo_tcp_config cfg = {.bind_host = "127.0.0.1"};
    int err = kumo__transport_new(eng, "tcp", &cfg, &t);
    if (err)
        bench_die("transport", err);
    static struct rtt r;
    memset(&r, 0, sizeof r);
    flag_init(&r.done);
    flag_init(&r.ready);
    if ((err = kumo_endpoint_new(t, 0, rtt_a, &r, &r.a)) ||
        (err = kumo_endpoint_new(t, 1, rtt_b, &r, &r.b)))
        bench_die("endpoint", err);
    if ((err = kumo_connect(r.a, kumo_endpoint_address(r.b), KUMO_RELIABLE_ORDERED, NULL, connected,
                            &r)))
        bench_die("connect", err);
    flag_wait(&r.ready);
    double v[BENCH_REPS];
    for (int rep = -1; rep < BENCH_REPS; rep++) {
        r.left = rep < 0 ? n / 10 : n;
        kick_r = &r;
        kick_task.fn = kick_fn;
        double t0 = bench_now();
        kumo__task_post(eng, 0, &kick_task);
        flag_wait(&r.done);
        double dt = bench_now() - t0;
        if (rep >= 0)
            v[rep] = dt / (double)n * 1e6;
    }
    bench_report(name, v, BENCH_REPS, "us");
    kumo_transport_free(t);
    kumo__engine_stop(eng);
    kumo__engine_destroy(eng);
}

/* ------------------------------------------------------------------ */
/* Raw round trip                                                      */
/* ------------------------------------------------------------------ */

static void tcp_pair(int *a, int *b)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (bind(l, (struct sockaddr *)&sa, sizeof sa) || listen(l, 1) ||
        getsockname(l, (struct sockaddr *)&sa, &sl))
        bench_die("listen", -errno);
    *a = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(*a, (struct sockaddr *)&sa, sizeof sa))
        bench_die("connect", -errno);
    *b = accept(l, NULL, NULL);
    close(l);
    int one = 1;
    setsockopt(*a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(*b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static bool poll_mode;

static void read_full(int fd, uint8_t *p, size_t n)
{
    while (n) {
        ssize_t r = recv(fd, p, n, poll_mode ? MSG_DONTWAIT : 0);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
        } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
            bench_die("raw recv", r == 0 ? -EPIPE : -errno);
        }
    }
}

static void *raw_echo(void *arg)
{
    int fd = *(int *)arg;
    uint8_t b[64];
    for (;;) {
        ssize_t r;
        size_t got = 0;
        while (got < sizeof b) {
            r = recv(fd, b + got, sizeof b - got, poll_mode ? MSG_DONTWAIT : 0);
            if (r > 0)
                got += (size_t)r;
            else if (r == 0 || (errno != EAGAIN && errno != EINTR))
                return NULL;
        }
        if (send(fd, b, sizeof b, 0) != (ssize_t)sizeof b)
            return NULL;
    }
}

static void raw_rtt(const char *name, bool poll, long n)
{
    poll_mode = poll;
    int a, b;
    tcp_pair(&a, &b);
    pthread_t th;
    pthread_create(&th, NULL, raw_echo, &b);
    uint8_t m[64] = {0};
    double v[BENCH_REPS];
    for (int rep = -1; rep < BENCH_REPS; rep++) {
        long k = rep < 0 ? n / 10 : n;
        double t0 = bench_now();
        for (long i = 0; i < k; i++) {
            if (send(a, m, sizeof m, 0) != (ssize_t)sizeof m)
                bench_die("raw send", -errno);
            read_full(a, m, sizeof m);
        }
        if (rep >= 0)
            v[rep] = (bench_now() - t0) / (double)n * 1e6;
    }
    shutdown(a, SHUT_RDWR);
    pthread_join(th, NULL);
    close(a);
    close(b);
    bench_report(name, v, BENCH_REPS, "us");
}

/* ------------------------------------------------------------------ */
/* Kumo one-way                                                        */
/* ------------------------------------------------------------------ */

struct stream {
    kumo_endpoint *a, *b;
    kumo_conn c;
    size_t size;
    long total, sent;
    long window;
    _Atomic long recvd; /* published every 256 messages and at the end */
    long recvd_local;
    struct flag done, ready;
    uint8_t *buf;
    bool lend;
    struct kumo__task task;
    struct kumo__engine *eng;
};

static void noop_release(void *arg) {}

static void stream_rx(kumo_endpoint *ep, const kumo_event *ev, void *arg)
{
    struct stream *s = arg;
    if (ev->kind != KUMO_EV_RECEIVED)
        return;
    s->recvd_local++;
    if ((s->recvd_local & 255) == 0 || s->recvd_local == s->total)
        atomic_store_explicit(&s->recvd, s->recvd_local, memory_order_release);
    if (s->recvd_local == s->total)
        flag_set(&s->done);
}

static void stream_tx(kumo_endpoint *ep, const kumo_event *ev, void *arg) {}

static void stream_ready(kumo_conn c, int err, void *arg)
{
    struct stream *s = arg;
    if (err)
        bench_die("when ready", err);
    kumo__task_post(s->eng, 0, &s->task);
}

static void stream_pump(struct kumo__shard *sh, struct kumo__task *t)
{
    struct stream *s = (struct stream *)((char *)t - offsetof(struct stream, task));
    if (!sh)
        return;
    long r = atomic_load_explicit(&s->recvd, memory_order_acquire);
    for (int k = 0; k < 1024 && s->sent < s->total && s->sent - r < s->window; k++) {
        int err = kumo_conn_send(s->c, &(struct iovec){s->buf, s->size}, 1,
                                 s->lend ? noop_release : NULL, NULL);
        if (err == -KUMO_EBUSY) {
            /* the link's queue is full: go on once it has drained */
            if ((err = kumo_conn_when_ready(s->c, stream_ready, s)))
                bench_die("when ready", err);
            return;
        }
        if (err)
            bench_die("send", err);
        s->sent++;
    }
    if (s->sent < s->total)
        kumo__task_post(s->eng, 0, &s->task);
}

static void stream_connected(kumo_endpoint *ep, kumo_conn c, int err, void *arg)
{
    struct stream *s = arg;
    if (err)
        bench_die("connect", err);
    s->c = c;
    flag_set(&s->ready);
}

/* variant: "" (the default configuration), or "zc" / "copy" with SENDMSG_ZC
 * forced on / off for every lent batch. */
static void kumo_stream(const char *label, size_t size, long n, bool lend, const char *variant)
{
    struct kumo__engine *eng = bench_engine(2, 0);
    kumo_transport *t;
    kumo_tcp_config cfg = {.bind_host = "127.0.0.1", .max_message = 64u << 20};
    if (!strcmp(variant, "zc")) {
        cfg.zerocopy_min = 1;
        cfg.zerocopy_on_host = true;
    } else if (!strcmp(variant, "copy"))
        cfg.zerocopy_min = SIZE_MAX;
    int err = kumo__transport_new(eng, "tcp", &cfg, &t);
    if (err)
        bench_die("transport", err);
    static struct stream s;
    memset(&s, 0, sizeof s);
    flag_init(&s.done);
    flag_init(&s.ready);
    s.size = size;
    s.lend = lend;
    s.eng = eng;
    s.buf = calloc(1, size);
    s.window = (long)((32u << 20) / size);
    if (s.window < 256)
        s.window = 256;
    s.task.fn = stream_pump;
    if ((err = kumo_endpoint_new(t, 0, stream_tx, &s, &s.a)) ||
        (err = kumo_endpoint_new(t, 1, stream_rx, &s, &s.b)))
        bench_die("endpoint", err);
    if ((err = kumo_connect(s.a, kumo_endpoint_address(s.b), KUMO_RELIABLE_ORDERED, NULL,
                            stream_connected, &s)))
        bench_die("connect", err);
    flag_wait(&s.ready);
    double v[BENCH_REPS];
    for (int rep = -1; rep < BENCH_REPS; rep++) {
        long k = rep < 0 ? n / 10 : n;
        s.total = s.recvd_local + k;
        s.sent = s.recvd_local;
        double t0 = bench_now();
        kumo__task_post(eng, 0, &s.task);
        flag_wait(&s.done);
        double dt = bench_now() - t0;
        if (rep >= 0)
            v[rep] = (double)k / dt / 1e6;
    }
    char name[96];
    snprintf(name, sizeof name, "tcp_oneway_%s_kumo%s%s", label, *variant ? "_" : "", variant);
    bench_report_rates(name, v, size);
    kumo_transport_free(t);
    kumo__engine_stop(eng);
    kumo__engine_destroy(eng);
    free(s.buf);
}

/* ------------------------------------------------------------------ */
/* Raw stream                                                          */
/* ------------------------------------------------------------------ */

struct sink {
    int fd;
    size_t want;
};

static void *raw_sink(void *arg)
{
    struct sink *k = arg;
    size_t cap = 1u << 20;
    uint8_t *b = malloc(cap);
    size_t got = 0;
    while (got < k->want) {
        ssize_t r = recv(k->fd, b, cap, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    free(b);
    return NULL;
}

static void raw_stream(const char *label, size_t size, long n)
{
    int per = (int)((1u << 20) / size);
    if (per > 1024)
        per = 1024;
    if (per < 1)
        per = 1;
    uint8_t *buf = calloc(1, size);
    struct iovec *iov = malloc(sizeof *iov * (size_t)per);
    for (int i = 0; i < per; i++)
        iov[i] = (struct iovec){buf, size};
    double v[BENCH_REPS];
    for (int rep = -1; rep < BENCH_REPS; rep++) {
        long k = rep < 0 ? n / 10 : n;
        int a, b;
        tcp_pair(&a, &b);
        struct sink s = {.fd = b, .want = (size_t)k * size};
        pthread_t th;
        double t0 = bench_now();
        pthread_create(&th, NULL, raw_sink, &s);
        long sent = 0;
        while (sent < k) {
            int cnt = (int)(k - sent < per ? k - sent : per);
            size_t bytes = (size_t)cnt * size;
            /* writev may be short: finish the batch. */
            struct iovec tmp[1024];
            memcpy(tmp, iov, sizeof *iov * (size_t)cnt);
            struct iovec *p = tmp;
            int left = cnt;
            while (bytes) {
                ssize_t w = writev(a, p, left);
                if (w < 0)
                    bench_die("writev", -errno);
                bytes -= (size_t)w;
                while (w && left) {
                    if ((size_t)w >= p->iov_len) {
                        w -= (ssize_t)p->iov_len;
                        p++;
                        left--;
                    } else {
                        p->iov_base = (uint8_t *)p->iov_base + w;
                        p->iov_len -= (size_t)w;
                        w = 0;
                    }
                }
            }
            sent += cnt;
        }
        pthread_join(th, NULL);
        double dt = bench_now() - t0;
        close(a);
        close(b);
        if (rep >= 0)
            v[rep] = (double)k / dt / 1e6;
    }
    char name[96];
    snprintf(name, sizeof name, "tcp_oneway_%s_raw_writev", label);
    bench_report_rates(name, v, size);
    free(iov);
    free(buf);
}

int main(void)
{
    kumo_log_set_level(KUMO_LOG_WARN);
    kumo_rtt("tcp_rtt_64B_kumo_poll", 2000000000ull, 20000);
    raw_rtt("tcp_rtt_64B_raw_poll", true, 20000);
    kumo_rtt("tcp_rtt_64B_kumo_sleep", UINT64_MAX, 5000);
    raw_rtt("tcp_rtt_64B_raw_blocking", false, 5000);
    kumo_stream("64B", 64, 2000000, false, "");
    raw_stream("64B", 64, 2000000);
    kumo_stream("1KiB", 1024, 500000, false, "");
    raw_stream("1KiB", 1024, 500000);
    kumo_stream("64KiB", 64u << 10, 20000, true, "");
    raw_stream("64KiB", 64u << 10, 20000);
    kumo_stream("1MiB", 1u << 20, 1500, true, "");
    raw_stream("1MiB", 1u << 20, 1500);
    /* Where SENDMSG_ZC starts to pay (KUMO_TCP_ZEROCOPY_MIN): lent sends
     * with it forced on and off. */
    kumo_stream("16KiB", 16u << 10, 60000, true, "zc");
    kumo_stream("16KiB", 16u << 10, 60000, true, "copy");
    kumo_stream("64KiB", 64u << 10, 20000, true, "zc");
    kumo_stream("64KiB", 64u << 10, 20000, true, "copy");
    kumo_stream("1MiB", 1u << 20, 1500, true, "zc");
    kumo_stream("1MiB", 1u << 20, 1500, true, "copy");
    return 0;
}
