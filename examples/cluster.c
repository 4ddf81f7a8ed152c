/*
 * Kumo's cluster demo: four nodes on this machine, each its own OS process,
 * over tcp on 127.0.0.1.
 *
 * The master node starts three worker nodes (child processes), connects to
 * each and monitors it, and spawns on each, by closure, a worker process
 * that computes a share of a Monte-Carlo estimate of pi from the Halton
 * sequence (the original Cloud Haskell example): points (h2(i), h3(i)) of
 * the unit square, pi ~ 4 * inside / total.  Then it kills one worker node
 * with SIGKILL, on purpose: its node monitor and the share's monitor fire
 * with reason disconnect, and the master spawns that share again on a node
 * that is still up.  Every line is in Cloud Haskell's `say` format, with the
 * node and pid of the process that says it.
 *
 * Usage: cluster [points]   (default 30,000,000)
 */
#include <kumo/dist.h>
#include <kumo/kumo.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define WORKERS 3
#define COOKIE "kumo-cluster-demo"
#define CHUNK 20000 /* points per turn: about a millisecond */

static uint64_t T_GO, T_RESULT;
static kumo_type_decl D_GO = KUMO_TYPE_DECL("demo.go"); /* for the static receive set */

/* ---- the work: Halton points in the unit square ---- */

static double halton(uint64_t i, unsigned base)
{
    double f = 1, r = 0;
    for (; i; i /= base) {
        f /= base;
        r += f * (double)(i % base);
    }
    return r;
}

struct share {
    uint32_t id;
    uint64_t from, count;
    kumo_pid master;
};

struct result {
    uint32_t id;
    uint64_t inside, total;
};

struct worker {
    struct share s;
    uint64_t done, inside;
};

static void work_chunk(kumo_proc *self, void *state, kumo_msg *m);
static const kumo_match work_m[] = {{.kind = KUMO_MATCH_TYPE, .decl = &D_GO, .fn = work_chunk}};
static const kumo_recv work_set = {.matches = work_m, .n = 1};

/* One chunk per turn: a handler runs to completion, so a long computation
 * goes in pieces, each one a message to itself. */
static void work_chunk(kumo_proc *self, void *state, kumo_msg *m)
{
    struct worker *w = state;
    uint64_t end = w->done + CHUNK < w->s.count ? w->done + CHUNK : w->s.count;
    for (uint64_t k = w->done; k < end; k++) {
        uint64_t i = w->s.from + k + 1;
        double x = halton(i, 2), y = halton(i, 3);
        w->inside += x * x + y * y <= 1.0;
    }
    w->done = end;
    if (w->done < w->s.count) {
        kumo_send(self, kumo_self(self), T_GO, NULL, 0);
        kumo_receive(self, &work_set, KUMO_INFINITY);
        return;
    }
    struct result r = {.id = w->s.id, .inside = w->inside, .total = w->s.count};
    kumo_say(self, "share %u done: %llu of %llu points inside", w->s.id,
             (unsigned long long)r.inside, (unsigned long long)r.total);
    kumo_send(self, w->s.master, T_RESULT, &r, sizeof r);
    /* returns without a receive: ends normally */
}

static void worker_exit(void *state, const kumo_reason *why)
{
    (void)why;
    free(state);
}

/* The closure: decodes its own argument (the share). */
static void pi_worker(kumo_proc *self, const void *args, size_t len)
{
    struct worker *w = calloc(1, sizeof *w);
    if (!w || len != sizeof w->s) {
        free(w);
        kumo_die(self, KUMO_EXCEPTION, "bad share (%zu bytes)", len);
        return;
    }
    memcpy(&w->s, args, sizeof w->s);
    kumo_set_state(self, w);
    kumo_say(self, "share %u: points %llu..%llu", w->s.id, (unsigned long long)w->s.from + 1,
             (unsigned long long)(w->s.from + w->s.count));
    kumo_send(self, kumo_self(self), T_GO, NULL, 0);
    kumo_receive(self, &work_set, KUMO_INFINITY);
}

static const kumo_closure table[] = {
    {.name = "demo.pi", .init = pi_worker, .on_exit = worker_exit},
};

static kumo_node *start_node(void)
{
    static const kumo_tcp_config tcp = {.cookie = COOKIE, .bind_host = "127.0.0.1"};
    static const kumo_dist_transport t = {.name = "tcp", .config = &tcp};
    kumo_node_config cfg = {.shards = 1,
                            .no_pin = true,
                            .transports = &t,
                            .ntransports = 1,
                            .closures = table,
                            .nclosures = 1};
    kumo_node *node;
    int err = kumo_node_start(&cfg, &node);
    if (err) {
        fprintf(stderr, "cluster: kumo_node_start: %s\n", kumo_strerror(err));
        exit(1);
    }
    return node;
}

/* A worker node: tells the master its address, then serves until the
 * master closes the pipe (or kills it). */
static void worker_node(int addr_fd, int ctl)
{
    kumo_node *node = start_node();
    kumo_inbox *ib;
    kumo_address a;
    if (kumo_inbox_new(node, &ib) || kumo_node_address(node, 0, &a))
        _exit(2);
    char ab[128];
    kumo_say(kumo_inbox_proc(ib), "worker node up at %s", kumo_address_str(&a, ab, sizeof ab));
    if (write(addr_fd, &a, sizeof a) != (ssize_t)sizeof a)
        _exit(2);
    close(addr_fd);
    char c;
    while (read(ctl, &c, 1) > 0)
        ;
    kumo_inbox_free(ib);
    kumo_node_free(node);
    _exit(0);
}

struct node_slot {
    pid_t os_pid;
    int ctl;
    uint64_t id;
    bool up;
    kumo_ref nmon;
};

struct job {
    struct share s;
    kumo_ref mon;
    int on; /* node index */
    bool done;
};

static bool any_msg(const kumo_msg *m, void *arg)
{
    (void)m;
    (void)arg;
    return true;
}

static int spawn_share(kumo_inbox *ib, struct node_slot *nodes, struct job *j, int on)
{
    kumo_spawn_opts o = {.monitor = &j->mon};
    kumo_pid pid;
    int err = kumo_spawn_remote_wait(ib, nodes[on].id, "demo.pi", &j->s, sizeof j->s, &o, &pid);
    if (err)
        return err;
    j->on = on;
    char pb[80];
    kumo_say(kumo_inbox_proc(ib), "share %u -> %s", j->s.id, kumo_pid_str(pid, pb, sizeof pb));
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t points = argc > 1 ? strtoull(argv[1], NULL, 10) : 30000000;
    if (points < WORKERS)
        points = WORKERS;
    T_GO = kumo_type_of(&D_GO);
    T_RESULT = kumo_type("demo.result");

    /* Fork the worker nodes first: no engine threads cross a fork. */
    struct node_slot nodes[WORKERS] = {0};
    kumo_address addrs[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        int ap[2], cp[2];
        if (pipe(ap) || pipe(cp)) {
            perror("pipe");
            return 1;
        }
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            close(ap[0]);
            close(cp[1]);
            for (int k = 0; k < i; k++)
                close(nodes[k].ctl);
            worker_node(ap[1], cp[0]);
        }
        close(ap[1]);
        close(cp[0]);
        nodes[i].os_pid = pid;
        nodes[i].ctl = cp[1];
        if (read(ap[0], &addrs[i], sizeof addrs[i]) != (ssize_t)sizeof addrs[i]) {
            fprintf(stderr, "cluster: worker %d did not start\n", i);
            return 1;
        }
        close(ap[0]);
    }

    kumo_node *node = start_node();
    kumo_inbox *ib;
    if (kumo_inbox_new(node, &ib))
        return 1;
    kumo_proc *me = kumo_inbox_proc(ib);
    kumo_say(me, "master node %016llx: %d worker nodes, %llu points",
             (unsigned long long)kumo_node_id(node), WORKERS, (unsigned long long)points);
    for (int i = 0; i < WORKERS; i++) {
        int err = kumo_node_connect(node, &addrs[i], 10000000000LL, &nodes[i].id);
        if (err) {
            fprintf(stderr, "cluster: connect to worker %d: %s\n", i, kumo_strerror(err));
            return 1;
        }
        nodes[i].up = true;
        kumo_monitor_node(me, nodes[i].id, &nodes[i].nmon);
        kumo_say(me, "connected to node %016llx (OS pid %d)", (unsigned long long)nodes[i].id,
                 (int)nodes[i].os_pid);
    }

    struct job jobs[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        uint64_t from = points / WORKERS * (uint64_t)i;
        uint64_t count = i == WORKERS - 1 ? points - from : points / WORKERS;
        jobs[i] = (struct job){
            .s = {.id = (uint32_t)i, .from = from, .count = count, .master = kumo_inbox_pid(ib)}};
        int err = spawn_share(ib, nodes, &jobs[i], i);
        if (err) {
            fprintf(stderr, "cluster: spawn share %d: %s\n", i, kumo_strerror(err));
            return 1;
        }
    }

    /* A worker node fails: kill one, on purpose, while it computes. */
    int victim = 1;
    kumo_say(me, "killing node %016llx (OS pid %d) with SIGKILL",
             (unsigned long long)nodes[victim].id, (int)nodes[victim].os_pid);
    kill(nodes[victim].os_pid, SIGKILL);
    waitpid(nodes[victim].os_pid, NULL, 0);
    nodes[victim].os_pid = 0;

    uint64_t inside = 0, total = 0;
    int done = 0, status = 0;
    while (done < WORKERS) {
        kumo_msg *m;
        int err = kumo_inbox_recv(ib, any_msg, NULL, 60000000000LL, &m);
        if (err) {
            fprintf(stderr, "cluster: waiting: %s\n", kumo_strerror(err));
            status = 1;
            break;
        }
        uint64_t type = kumo_msg_type(m);
        if (type == T_RESULT) {
            struct result r;
            memcpy(&r, kumo_msg_data(m), sizeof r);
            if (r.id < WORKERS && !jobs[r.id].done) {
                jobs[r.id].done = true;
                inside += r.inside;
                total += r.total;
                done++;
                kumo_say(me, "share %u: %llu / %llu inside (%d of %d shares in)", r.id,
                         (unsigned long long)r.inside, (unsigned long long)r.total, done, WORKERS);
            }
        } else if (type == kumo_type_node_down()) {
            const kumo_node_down_msg *d = kumo_msg_data(m);
            for (int i = 0; i < WORKERS; i++)
                if (nodes[i].id == d->node)
                    nodes[i].up = false;
            kumo_say(me, "node %016llx is down (%s)", (unsigned long long)d->node,
                     kumo_reason_kind_str(d->reason.kind));
        } else if (type == kumo_type_down()) {
            const kumo_down_msg *d = kumo_msg_data(m);
            for (int i = 0; i < WORKERS; i++) {
                struct job *j = &jobs[i];
                if (j->done || !kumo_ref_eq(j->mon, d->ref))
                    continue;
                char pb[80];
                kumo_say(me, "share %u's process %s ended: %s", j->s.id,
                         kumo_pid_str(d->pid, pb, sizeof pb), kumo_reason_kind_str(d->reason.kind));
                if (d->reason.kind == KUMO_NORMAL)
                    continue; /* its result is on its way (or here) */
                nodes[j->on].up = false;
                int err2 = -KUMO_ECONNLOST;
                for (int k = 1; k <= WORKERS && err2; k++) {
                    int on = (j->on + k) % WORKERS;
                    if (nodes[on].up) {
                        kumo_say(me, "spawning share %u again on node %016llx", j->s.id,
                                 (unsigned long long)nodes[on].id);
                        err2 = spawn_share(ib, nodes, j, on);
                    }
                }
                if (err2) {
                    fprintf(stderr, "cluster: no node left for share %u\n", j->s.id);
                    status = 1;
                    done = WORKERS;
                }
            }
        }
        kumo_msg_free(m);
    }
    if (status == 0 && total == points) {
        double pi = 4.0 * (double)inside / (double)total;
        kumo_say(me, "pi ~ %.6f from %llu points (error %.2e)", pi, (unsigned long long)total,
                 pi - 3.14159265358979323846);
    } else if (status == 0) {
        fprintf(stderr, "cluster: counted %llu points, expected %llu\n", (unsigned long long)total,
                (unsigned long long)points);
        status = 1;
    }

    kumo_inbox_free(ib);
    kumo_node_free(node);
    for (int i = 0; i < WORKERS; i++) {
        close(nodes[i].ctl);
        if (nodes[i].os_pid)
            waitpid(nodes[i].os_pid, NULL, 0);
    }
    return status;
}
