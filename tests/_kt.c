/* Test helpers: see _kt.h. */
#include "_kt.h"

#include "engine/alloc.h"

#include <kumo/dist.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#if KT_LEAKS_LSAN
#include <sanitizer/lsan_interface.h>
#endif

uint64_t kt_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------ */
/* Leak accounting                                                     */
/* ------------------------------------------------------------------ */

#if KT_LEAKS_JEMALLOC
/*
 * jemalloc counts a small region as allocated from the moment its arena
 * hands it to a thread cache, so memory freed into this thread's cache
 * still shows in stats.allocated: flush the cache before reading.  Shard
 * threads have exited (and flushed theirs) by the time kt_stop reads.
 */
static size_t settled_allocated(void)
{
    mallctl("thread.tcache.flush", NULL, NULL, NULL, 0);
    return kumo__allocated_bytes();
}
#endif

#if KT_LEAKS_JEMALLOC
static size_t baseline;
#endif

#if KT_LEAKS_JEMALLOC
#define KT_WARM_THREADS 8

static void *warm_thread(void *arg)
{
    pthread_barrier_wait(arg); /* all alive at once */
    return NULL;
}
#endif

void kt_leak_warm_libc(void)
{
#if KT_LEAKS_JEMALLOC
    /* Tests may run a few threads of their own next to the shards: have
     * that many stacks cached too. */
    pthread_t t[KT_WARM_THREADS];
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, KT_WARM_THREADS + 1);
    for (int i = 0; i < KT_WARM_THREADS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, warm_thread, &bar), 0);
    pthread_barrier_wait(&bar);
    for (int i = 0; i < KT_WARM_THREADS; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&bar);
    /* Log lines carry a UTC time: glibc loads its time zone data once, on
     * the first gmtime_r, and keeps it. */
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
#endif
}

void kt_leak_baseline(void)
{
#if KT_LEAKS_JEMALLOC
    baseline = settled_allocated();
#endif
}

static kumo_node *start(kumo_node_config cfg, bool defaults)
{
    kumo_log_set_level(KUMO_LOG_WARN);
    if (!cfg.shards)
        cfg.shards = 1;
    if (!defaults) {
        /* Park soon and float: tests run two at a time on two cores, next
         * to other work. */
        if (!cfg.spin_ns)
            cfg.spin_ns = 20000;
        cfg.no_pin = true;
    }
#if KT_LEAKS_JEMALLOC
    /*
     * One-time allocations that outlive a node belong to the C library, not
     * to Kumo: glibc keeps the stacks of joined threads (and their TLS
     * vectors, which come from malloc: 384 bytes each here) in a cache for
     * the next pthread_create.  Start and stop one node of the same shape
     * first, with a few extra threads alive, so the baseline already
     * includes them.
     */
    static unsigned warmed_for;
    if (warmed_for < cfg.shards) {
        kumo_node *w = NULL;
        int err = kumo_node_start(&cfg, &w);
        cr_assert_eq(err, 0, "warm-up node: %s", kumo_strerror(err));
        kt_leak_warm_libc();
        kumo_node_free(w);
        warmed_for = cfg.shards;
    }
#endif
    kt_leak_baseline();
    kumo_node *node = NULL;
    int err = kumo_node_start(&cfg, &node);
    cr_assert_eq(err, 0, "kumo_node_start(%u shards): %s", cfg.shards, kumo_strerror(err));
    cr_assert_eq(kumo_node_shards(node), cfg.shards);
    return node;
}

kumo_node *kt_start(unsigned shards)
{
    return start((kumo_node_config){.shards = shards}, false);
}

kumo_node *kt_start_cfg(kumo_node_config cfg)
{
    return start(cfg, false);
}

kumo_node *kt_start_more(kumo_node_config cfg)
{
    cfg.spin_ns = 20000;
    cfg.no_pin = true;
    kumo_node *node = NULL;
    int err = kumo_node_start(&cfg, &node);
    cr_assert_eq(err, 0, "another node: %s", kumo_strerror(err));
    return node;
}

kumo_node *kt_start_pinned(unsigned shards)
{
    return start((kumo_node_config){.shards = shards}, true);
}

void kt_stop(kumo_node *node)
{
    kumo_node_stop(node);
    kumo_node_free(node);
    kt_leak_check();
}

void kt_leak_check(void)
{
#if KT_LEAKS_LSAN
    int leaked = __lsan_do_recoverable_leak_check();
    cr_assert_eq(leaked, 0, "LeakSanitizer found leaks (see its report above)");
#elif KT_LEAKS_JEMALLOC
    size_t now = settled_allocated();
    cr_assert_eq(now, baseline,
                 "leak: %zu bytes allocated after kt_stop, %zu before kt_start (%+lld)", now,
                 baseline, (long long)now - (long long)baseline);
#else
    cr_log_warn("no leak check in this build (neither LeakSanitizer nor jemalloc)");
#endif
}

/* ------------------------------------------------------------------ */
/* Type names for dumps                                                */
/* ------------------------------------------------------------------ */

#define KT_MAX_TYPES 256

static struct {
    uint64_t type;
    char name[48];
} types[KT_MAX_TYPES];
static unsigned ntypes;
static pthread_mutex_t types_mu = PTHREAD_MUTEX_INITIALIZER;

uint64_t kt_type(const char *name)
{
    uint64_t t = kumo_type(name);
    pthread_mutex_lock(&types_mu);
    bool known = false;
    for (unsigned i = 0; i < ntypes; i++)
        known |= types[i].type == t;
    if (!known && ntypes < KT_MAX_TYPES) {
        types[ntypes].type = t;
        snprintf(types[ntypes].name, sizeof types[ntypes].name, "%s", name);
        ntypes++;
    }
    pthread_mutex_unlock(&types_mu);
    return t;
}

const char *kt_type_name(uint64_t type, char *buf, size_t len)
{
    if (type == kumo_type_down())
        return KUMO_TYPE_DOWN_NAME;
    if (type == kumo_type_exit())
        return KUMO_TYPE_EXIT_NAME;
    pthread_mutex_lock(&types_mu);
    for (unsigned i = 0; i < ntypes; i++)
        if (types[i].type == type) {
            snprintf(buf, len, "%s", types[i].name);
            pthread_mutex_unlock(&types_mu);
            return buf;
        }
    pthread_mutex_unlock(&types_mu);
    snprintf(buf, len, "0x%016" PRIx64, type);
    return buf;
}

const char *kt_pid(kumo_pid p)
{
    static _Thread_local char bufs[8][80];
    static _Thread_local unsigned k;
    char *b = bufs[k++ % 8];
    return kumo_pid_str(p, b, sizeof bufs[0]);
}

kumo_pid kt_forge_pid(kumo_pid real)
{
    kumo_pid p = real;
    p.serial ^= 0x00005a5a5a5a0000ull; /* same node, shard and slot; a serial never issued */
    return p;
}

/* ------------------------------------------------------------------ */
/* Inbox waits                                                         */
/* ------------------------------------------------------------------ */

struct dump {
    char text[2048];
    size_t off;
    unsigned n;
};

/* A predicate that matches nothing and describes what it sees: a peek at
 * the queue through the public API. */
static bool dump_pred(const kumo_msg *m, void *arg)
{
    struct dump *d = arg;
    if (d->n++ < 16 && d->off < sizeof d->text - 200) {
        char tb[64];
        const char *tn = kt_type_name(kumo_msg_type(m), tb, sizeof tb);
        d->off += (size_t)snprintf(d->text + d->off, sizeof d->text - d->off,
                                   "\n    #%u %s len %zu from %s", d->n, tn, kumo_msg_len(m),
                                   kt_pid(kumo_msg_sender(m)));
        if (kumo_msg_type(m) == kumo_type_down()) {
            const kumo_down_msg *dm = kumo_msg_data(m);
            d->off += (size_t)snprintf(d->text + d->off, sizeof d->text - d->off,
                                       " (pid %s %s \"%s\")", kt_pid(dm->pid),
                                       kumo_reason_kind_str(dm->reason.kind), dm->reason.text);
        } else if (kumo_msg_type(m) == kumo_type_exit()) {
            const kumo_exit_msg *em = kumo_msg_data(m);
            d->off += (size_t)snprintf(d->text + d->off, sizeof d->text - d->off,
                                       " (from %s %s \"%s\")", kt_pid(em->from),
                                       kumo_reason_kind_str(em->reason.kind), em->reason.text);
        }
    }
    return false;
}

static const char *dump_queue(kumo_inbox *ib, struct dump *d)
{
    memset(d, 0, sizeof *d);
    kumo_msg *m = NULL;
    kumo_inbox_recv(ib, dump_pred, d, 0, &m);
    if (d->n == 0)
        snprintf(d->text, sizeof d->text, " (empty)");
    else if (d->n > 16)
        snprintf(d->text + d->off, sizeof d->text - d->off, "\n    ... %u in all", d->n);
    return d->text;
}

static kumo_msg *recv_or_fail(kumo_inbox *ib, kumo_pred pred, void *arg, const char *what)
{
    kumo_msg *m = NULL;
    int err = kumo_inbox_recv(ib, pred, arg, KT_WAIT_NS, &m);
    if (err) {
        struct dump d;
        cr_assert_fail("no %s within %lld ms (%s); queue:%s", what, KT_WAIT_NS / KT_MS,
                       kumo_strerror(err), dump_queue(ib, &d));
    }
    return m;
}

static bool type_pred(const kumo_msg *m, void *arg)
{
    return kumo_msg_type(m) == *(uint64_t *)arg;
}

kumo_msg *kt_expect(kumo_inbox *ib, uint64_t type)
{
    char tb[64], what[96];
    snprintf(what, sizeof what, "message of type %s", kt_type_name(type, tb, sizeof tb));
    return recv_or_fail(ib, type_pred, &type, what);
}

kumo_msg *kt_next(kumo_inbox *ib)
{
    return recv_or_fail(ib, NULL, NULL, "message");
}

kumo_msg *kt_expect_next(kumo_inbox *ib, uint64_t type)
{
    kumo_msg *m = kt_next(ib);
    if (kumo_msg_type(m) != type) {
        char ta[64], tb[64];
        struct dump d;
        cr_assert_fail("expected next message %s, got %s (len %zu from %s); rest of queue:%s",
                       kt_type_name(type, ta, sizeof ta),
                       kt_type_name(kumo_msg_type(m), tb, sizeof tb), kumo_msg_len(m),
                       kt_pid(kumo_msg_sender(m)), dump_queue(ib, &d));
    }
    return m;
}

void kt_expect_empty(kumo_inbox *ib)
{
    struct dump d;
    dump_queue(ib, &d);
    cr_assert_eq(d.n, 0, "expected an empty queue, found %u:%s", d.n, d.text);
}

void kt_take(kumo_msg *m, void *out, size_t len)
{
    cr_assert_eq(kumo_msg_len(m), len, "payload length %zu, expected %zu", kumo_msg_len(m), len);
    memcpy(out, kumo_msg_data(m), len);
    kumo_msg_free(m);
}

struct pid_type {
    uint64_t type;
    kumo_pid pid;
};

static bool down_pred(const kumo_msg *m, void *arg)
{
    struct pid_type *w = arg;
    return kumo_msg_type(m) == w->type &&
           kumo_pid_eq(((const kumo_down_msg *)kumo_msg_data(m))->pid, w->pid);
}

static bool exit_pred(const kumo_msg *m, void *arg)
{
    struct pid_type *w = arg;
    return kumo_msg_type(m) == w->type &&
           kumo_pid_eq(((const kumo_exit_msg *)kumo_msg_data(m))->from, w->pid);
}

kumo_down_msg kt_expect_down(kumo_inbox *ib, kumo_pid pid)
{
    struct pid_type w = {kumo_type_down(), pid};
    char what[128];
    snprintf(what, sizeof what, "DOWN for %s", kt_pid(pid));
    kumo_msg *m = recv_or_fail(ib, down_pred, &w, what);
    kumo_down_msg d;
    KT_TAKE(m, d);
    return d;
}

kumo_exit_msg kt_expect_exit(kumo_inbox *ib, kumo_pid pid)
{
    struct pid_type w = {kumo_type_exit(), pid};
    char what[128];
    snprintf(what, sizeof what, "exit signal from %s", kt_pid(pid));
    kumo_msg *m = recv_or_fail(ib, exit_pred, &w, what);
    kumo_exit_msg e;
    KT_TAKE(m, e);
    return e;
}

static bool down_ref_pred(const kumo_msg *m, void *arg)
{
    const kumo_ref *r = arg;
    return kumo_msg_type(m) == kumo_type_down() &&
           kumo_ref_eq(((const kumo_down_msg *)kumo_msg_data(m))->ref, *r);
}

kumo_down_msg kt_expect_down_ref(kumo_inbox *ib, kumo_ref ref)
{
    char what[96];
    snprintf(what, sizeof what, "DOWN of ref %llx", (unsigned long long)ref.id);
    kumo_msg *m = recv_or_fail(ib, down_ref_pred, &ref, what);
    kumo_down_msg d;
    KT_TAKE(m, d);
    return d;
}

kumo_down_msg kt_down(kumo_inbox *ib, kumo_pid pid, kumo_reason_kind kind, const char *text)
{
    kumo_down_msg d = kt_expect_down(ib, pid);
    kt_assert_reason(&d.reason, kind, text);
    return d;
}

kumo_exit_msg kt_exit(kumo_inbox *ib, kumo_pid pid, kumo_reason_kind kind, const char *text)
{
    kumo_exit_msg e = kt_expect_exit(ib, pid);
    kt_assert_reason(&e.reason, kind, text);
    return e;
}

uint64_t kt_expect_u64(kumo_inbox *ib, uint64_t type)
{
    uint64_t v;
    KT_TAKE(kt_expect(ib, type), v);
    return v;
}

void kt_assert_reason(const kumo_reason *r, kumo_reason_kind kind, const char *text)
{
    cr_assert_eq(r->kind, kind, "reason %s (\"%s\"), expected %s", kumo_reason_kind_str(r->kind),
                 r->text, kumo_reason_kind_str(kind));
    if (text)
        cr_assert_str_eq(r->text, text, "reason text \"%s\", expected \"%s\"", r->text, text);
}

void kt_send_u64(kumo_proc *self, kumo_pid to, uint64_t type, uint64_t v)
{
    int err = kumo_send(self, to, type, &v, sizeof v);
    cr_assert_eq(err, 0, "kumo_send: %s", kumo_strerror(err));
}

kumo_inbox *kt_inbox(kumo_node *node)
{
    kumo_inbox *ib = NULL;
    int err = kumo_inbox_new(node, &ib);
    cr_assert_eq(err, 0, "kumo_inbox_new: %s", kumo_strerror(err));
    return ib;
}

kt_env kt_env_start(unsigned shards)
{
    return kt_env_start_on("local", shards);
}

/* The closure kt_spawn_peer runs on another node: its argument bytes are
 * an init function and its state, valid in this OS process. */
struct kt_fn_args {
    kumo_init_fn init;
    void *state;
};

static void kt_fn_closure(kumo_proc *self, const void *args, size_t len)
{
    struct kt_fn_args a;
    if (len != sizeof a) {
        kumo_die(self, KUMO_EXCEPTION, "kt.fn: %zu argument bytes", len);
        return;
    }
    memcpy(&a, args, sizeof a);
    kumo_set_state(self, a.state); /* handlers get it, as after kumo_spawn */
    a.init(self, a.state);
}

static const kumo_closure kt_table[] = {{.name = "kt.fn", .init = kt_fn_closure}};
#define KT_COOKIE "kumo-test-cookie"
static const kumo_tcp_config kt_tcp = {.cookie = KT_COOKIE};
static const kumo_shm_config kt_shm = {.cookie = KT_COOKIE};

kt_env kt_env_start_on(const char *topology, unsigned shards)
{
    kt_env e = {.topology = topology};
    if (strcmp(topology, "local") == 0) {
        e.node = kt_start(shards);
        e.peer = e.node;
    } else {
        const void *tcfg = strcmp(topology, "tcp") == 0   ? (const void *)&kt_tcp
                           : strcmp(topology, "shm") == 0 ? (const void *)&kt_shm
                                                          : NULL;
        cr_assert(tcfg || strcmp(topology, "inmem") == 0, "unknown topology %s", topology);
        kumo_dist_transport tr = {.name = topology, .config = tcfg};
        kumo_node_config cfg = {.shards = shards,
                                .transports = &tr,
                                .ntransports = 1,
                                .closures = kt_table,
                                .nclosures = 1};
        e.node = kt_start_cfg(cfg);
        e.peer = kt_start_more(cfg);
        kumo_address addr;
        cr_assert_eq(kumo_node_address(e.peer, 0, &addr), 0);
        uint64_t id = 0;
        int err = kumo_node_connect(e.node, &addr, KT_WAIT_NS, &id);
        cr_assert_eq(err, 0, "connecting to the peer over %s: %s", topology, kumo_strerror(err));
        cr_assert_eq(id, kumo_node_id(e.peer));
    }
    e.ib = kt_inbox(e.node);
    e.me = kumo_inbox_proc(e.ib);
    return e;
}

void kt_env_stop(kt_env *e)
{
    kumo_inbox_free(e->ib);
    if (e->peer != e->node)
        kumo_node_free(e->peer);
    kt_stop(e->node);
}

kumo_pid kt_spawn_peer(kt_env *e, const kumo_spawn_opts *opts, kumo_init_fn init, void *state)
{
    if (e->peer == e->node)
        return kt_spawn(e->node, e->ib, opts, init, state);
    struct kt_fn_args a = {.init = init, .state = state};
    kumo_pid pid = {0};
    int err =
        kumo_spawn_remote_wait(e->ib, kumo_node_id(e->peer), "kt.fn", &a, sizeof a, opts, &pid);
    cr_assert_eq(err, 0, "spawn on the peer over %s: %s", e->topology, kumo_strerror(err));
    cr_assert(!kumo_pid_is_null(pid));
    return pid;
}

/* ------------------------------------------------------------------ */
/* Counters                                                            */
/* ------------------------------------------------------------------ */

void kt_count_add(kt_count *c, uint64_t k)
{
    pthread_mutex_lock(&c->mu);
    c->n += k;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

uint64_t kt_count_get(kt_count *c)
{
    pthread_mutex_lock(&c->mu);
    uint64_t n = c->n;
    pthread_mutex_unlock(&c->mu);
    return n;
}

void kt_count_wait(kt_count *c, uint64_t n, const char *what)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += KT_WAIT_NS / 1000000000;
    pthread_mutex_lock(&c->mu);
    int err = 0;
    while (c->n < n && err != ETIMEDOUT)
        err = pthread_cond_timedwait(&c->cv, &c->mu, &dl);
    uint64_t got = c->n;
    pthread_mutex_unlock(&c->mu);
    cr_assert_geq(got, n, "%s: count %" PRIu64 ", expected %" PRIu64 " within %lld ms", what, got,
                  n, KT_WAIT_NS / KT_MS);
}

/* ------------------------------------------------------------------ */
/* Stock processes                                                     */
/* ------------------------------------------------------------------ */

uint64_t kt_type_stop(void)
{
    return kumo_type("kt.stop");
}

static void echo_any(kumo_proc *self, void *st, kumo_msg *m);

static const kumo_match echo_match[] = {{.kind = KUMO_MATCH_ANY, .fn = echo_any}};
static const kumo_recv echo_set = {.matches = echo_match, .n = 1};

static void echo_any(kumo_proc *self, void *st, kumo_msg *m)
{
    (void)st;
    if (kumo_msg_type(m) == kt_type_stop())
        return; /* normal exit */
    kumo_send(self, kumo_msg_sender(m), kumo_msg_type(m), kumo_msg_data(m), kumo_msg_len(m));
    kumo_receive(self, &echo_set, KUMO_INFINITY);
}

void kt_echo_init(kumo_proc *self, void *state)
{
    (void)state;
    kumo_receive(self, &echo_set, KUMO_INFINITY);
}

static void order_go(kumo_proc *self, void *st, kumo_msg *m)
{
    (void)st;
    kumo_send_port sp;
    if (kumo_send_port_decode(kumo_msg_data(m), kumo_msg_len(m), &sp))
        return;
    kumo_pid to = kumo_msg_sender(m);
    uint64_t tm = kumo_type("kt.order.m");
    for (uint64_t i = 0; i < KT_ORDER_N; i++) {
        if (i % 2 == 0) {
            kumo_send_chan(self, sp, &i, sizeof i);
            kumo_send(self, to, tm, &i, sizeof i);
        } else {
            kumo_send(self, to, tm, &i, sizeof i);
            kumo_send_chan(self, sp, &i, sizeof i);
        }
    }
}

void kt_order_sender_init(kumo_proc *self, void *state)
{
    (void)state;
    kumo_expect(self, kumo_type("kt.order"), order_go);
}

void kt_order_check(kumo_inbox *ib, kumo_pid sender, kumo_send_port sp, kumo_recv_port *rp)
{
    uint8_t w[KUMO_SEND_PORT_WIRE_SIZE];
    kumo_send_port_encode(sp, w);
    cr_assert_eq(kumo_send(kumo_inbox_proc(ib), sender, kumo_type("kt.order"), w, sizeof w), 0);
    uint64_t tm = kumo_type("kt.order.m");
    for (uint64_t i = 0; i < KT_ORDER_N; i++) {
        kumo_msg *a = NULL, *b = NULL;
        int ea, eb;
        if (i % 2 == 0) { /* channel first: queued once the mailbox one is here */
            ea = kumo_inbox_expect(ib, tm, KT_WAIT_NS, &a);
            eb = kumo_inbox_recv_port(ib, rp, 0, &b);
        } else {
            ea = kumo_inbox_recv_port(ib, rp, KT_WAIT_NS, &a);
            eb = kumo_inbox_expect(ib, tm, 0, &b);
        }
        cr_assert_eq(ea, 0, "value %llu's first half: %s", (unsigned long long)i,
                     kumo_strerror(ea));
        cr_assert_eq(eb, 0, "value %llu's %s half was not queued behind its %s one",
                     (unsigned long long)i, i % 2 ? "mailbox" : "channel",
                     i % 2 ? "channel" : "mailbox");
        uint64_t va, vb;
        cr_assert_eq(kumo_msg_len(a), sizeof va);
        cr_assert_eq(kumo_msg_len(b), sizeof vb);
        memcpy(&va, kumo_msg_data(a), sizeof va);
        memcpy(&vb, kumo_msg_data(b), sizeof vb);
        cr_assert(va == i && vb == i, "value %llu arrived as %llu and %llu", (unsigned long long)i,
                  (unsigned long long)va, (unsigned long long)vb);
        cr_assert(kumo_pid_eq(kumo_msg_sender(b), sender));
        kumo_msg_free(a);
        kumo_msg_free(b);
    }
}

kumo_pid kt_spawn(kumo_node *node, kumo_inbox *ib, const kumo_spawn_opts *opts, kumo_init_fn init,
                  void *state)
{
    kumo_pid pid = {0};
    int err = kumo_spawn(node, ib ? kumo_inbox_proc(ib) : NULL, opts, init, state, &pid);
    cr_assert_eq(err, 0, "kumo_spawn: %s", kumo_strerror(err));
    cr_assert(!kumo_pid_is_null(pid));
    return pid;
}

int kt_spawn_at(kumo_proc *self, kumo_node *node, const kumo_spawn_opts *opts, kumo_init_fn init,
                void *state, kumo_pid *out)
{
    *out = (kumo_pid){0};
    if (node == kumo_self_node(self))
        return kumo_spawn(node, self, opts, init, state, out);
    struct kt_fn_args a = {.init = init, .state = state};
    kumo_ref ref;
    return kumo_spawn_remote(self, kumo_node_id(node), "kt.fn", &a, sizeof a, opts, &ref);
}

bool kt_is_did_spawn(const kumo_msg *m, kumo_pid *pid)
{
    if (kumo_msg_type(m) != kumo_type_did_spawn() || kumo_msg_len(m) != sizeof(kumo_did_spawn_msg))
        return false;
    kumo_did_spawn_msg d;
    memcpy(&d, kumo_msg_data(m), sizeof d);
    *pid = d.err ? (kumo_pid){0} : d.pid;
    return true;
}
