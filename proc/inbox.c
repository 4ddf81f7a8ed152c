/* Blocking inboxes: processes whose mailbox a plain thread waits on. */
#include "proc/internal.h"

#include <errno.h>
#include <time.h>

int kumo_inbox_new(kumo_node *node, kumo_inbox **out)
{
    if (atomic_load(&node->stopping))
        return -KUMO_ESHUTDOWN;
    struct kumo_inbox *ib = kumo__zalloc(sizeof *ib);
    if (!ib)
        return -ENOMEM;
    pthread_mutex_init(&ib->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ib->cv, &ca);
    pthread_condattr_destroy(&ca);
    struct kumo_proc *p = &ib->proc;
    p->mbox_tail = &p->mbox_head;
    p->cursor = &p->mbox_head;
    p->node = node;
    p->flags = PF_FOREIGN;
    p->ext = &ib->ext;
    ib->ext.p = p;
    ib->ext.inbox = ib;
    ib->ext.watchers.by_watcher = true;
    kumo__timer_init(&ib->ext.timer);
    int err = kumo__inbox_publish(node, p);
    if (err) {
        pthread_mutex_destroy(&ib->mu);
        pthread_cond_destroy(&ib->cv);
        kumo__free(ib, sizeof *ib);
        return err;
    }
    *out = ib;
    return 0;
}

kumo_proc *kumo_inbox_proc(kumo_inbox *ib)
{
    return &ib->proc;
}
kumo_pid kumo_inbox_pid(kumo_inbox *ib)
{
    return kumo__pid_of(&ib->proc);
}

/* On shard 0, with ib->mu held (die() takes it for inboxes). */
void kumo__inbox_closed(struct kumo_proc *p, bool shutdown)
{
    struct kumo_inbox *ib = (struct kumo_inbox *)p;
    ib->closed = true;
    ib->shutdown = shutdown;
    pthread_cond_broadcast(&ib->cv);
}

void kumo__inbox_wake(struct kumo_proc *p)
{
    pthread_cond_broadcast(&((struct kumo_inbox *)p)->cv);
}

void kumo__inbox_deliver_locked(struct kumo_proc *p, struct kumo_msg *m)
{
    m->link.next = NULL;
    *p->mbox_tail = m;
    p->mbox_tail = (struct kumo_msg **)&m->link.next;
    kumo__inbox_wake(p);
}

void kumo__inbox_deliver(struct kumo_proc *p, struct kumo_msg *m)
{
    struct kumo_inbox *ib = (struct kumo_inbox *)p;
    pthread_mutex_lock(&ib->mu);
    kumo__inbox_deliver_locked(p, m);
    pthread_mutex_unlock(&ib->mu);
}

/* What an inbox wait takes: the first mailbox message `match` accepts, or
 * the next message of a port. */
struct take {
    kumo_pred match;
    void *arg;
    struct kumo_recv_port *port;
};

/* With ib->mu held. */
static struct kumo_msg *take(struct kumo_proc *p, const struct take *t)
{
    if (t->port)
        return kumo__port_take(t->port);
    for (struct kumo_msg **pp = &p->mbox_head; *pp; pp = (struct kumo_msg **)&(*pp)->link.next) {
        struct kumo_msg *m = *pp;
        if (t->match && !t->match((const kumo_msg *)m, t->arg))
            continue;
        *pp = msg_next(m);
        if (p->mbox_tail == (struct kumo_msg **)&m->link.next)
            p->mbox_tail = pp;
        return m;
    }
    return NULL;
}

static int inbox_wait(kumo_inbox *ib, const struct take *t, int64_t timeout_ns, kumo_msg **out)
{
    struct kumo_proc *p = &ib->proc;
    struct timespec deadline;
    if (timeout_ns > 0) {
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += timeout_ns / 1000000000;
        deadline.tv_nsec += timeout_ns % 1000000000;
        if (deadline.tv_nsec >= 1000000000) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000;
        }
    }
    int err = 0;
    pthread_mutex_lock(&ib->mu);
    for (;;) {
        struct kumo_msg *m = take(p, t);
        if (m) {
            m->link.next = NULL;
            pthread_mutex_unlock(&ib->mu);
            *out = m;
            return 0;
        }
        if (ib->closed) {
            err = ib->shutdown ? -KUMO_ESHUTDOWN : -KUMO_ENOPROC;
            break;
        }
        if (timeout_ns == 0) {
            err = -KUMO_ETIMEOUT;
            break;
        }
        if (timeout_ns < 0) {
            pthread_cond_wait(&ib->cv, &ib->mu);
        } else if (pthread_cond_timedwait(&ib->cv, &ib->mu, &deadline) == ETIMEDOUT) {
            timeout_ns = 0; /* one last pass */
        }
    }
    pthread_mutex_unlock(&ib->mu);
    return err;
}

int kumo_inbox_recv(kumo_inbox *ib, kumo_pred match, void *arg, int64_t timeout_ns, kumo_msg **out)
{
    return inbox_wait(ib, &(struct take){.match = match, .arg = arg}, timeout_ns, out);
}

int kumo_inbox_recv_port(kumo_inbox *ib, kumo_recv_port *rp, int64_t timeout_ns, kumo_msg **out)
{
    if (!rp || rp->owner != &ib->proc || rp->closed)
        return -KUMO_ENOTOWNER;
    return inbox_wait(ib, &(struct take){.port = rp}, timeout_ns, out);
}

static bool type_is(const kumo_msg *m, void *arg)
{
    return m->type == *(uint64_t *)arg;
}

int kumo_inbox_expect(kumo_inbox *ib, uint64_t type, int64_t timeout_ns, kumo_msg **out)
{
    return kumo_inbox_recv(ib, type_is, &type, timeout_ns, out);
}

size_t kumo_inbox_count(kumo_inbox *ib)
{
    size_t n = 0;
    pthread_mutex_lock(&ib->mu);
    for (struct kumo_msg *m = ib->proc.mbox_head; m; m = msg_next(m))
        n++;
    pthread_mutex_unlock(&ib->mu);
    return n;
}

void kumo_inbox_free(kumo_inbox *ib)
{
    if (!ib)
        return;
    struct kumo_proc *p = &ib->proc;
    kumo_node *node = p->node;
    pthread_mutex_lock(&ib->mu);
    bool closed = ib->closed;
    pthread_mutex_unlock(&ib->mu);
    if (!closed) {
        struct kumo_msg *m = kumo__msg_new(0);
        if (m) {
            m->kind = SIG_INBOX_CLOSE;
            kumo_pid me = kumo__pid_of(p);
            msg_set_dst(m, me);
            kumo__post(node, p, me, m); /* frees m if the engine has stopped */
        }
        /* Wait for shard 0 to end the process (or for the node to stop). */
        pthread_mutex_lock(&ib->mu);
        while (!ib->closed && !node->stopped)
            pthread_cond_wait(&ib->cv, &ib->mu);
        pthread_mutex_unlock(&ib->mu);
    }
    struct kumo_msg *m = p->mbox_head;
    while (m) {
        struct kumo_msg *n = msg_next(m);
        kumo__msg_free(m);
        m = n;
    }
    kumo__watch_free(&ib->ext.watchers);
    kumo__watch_free(&ib->ext.watching);
    kumo__ports_free(p);
    pthread_mutex_destroy(&ib->mu);
    pthread_cond_destroy(&ib->cv);
    kumo__free(ib, sizeof *ib);
}

struct answer_match {
    uint64_t type;
    size_t len;
    kumo_ref ref;
};

/* An answer message: of `type`, `len` bytes, starting with the ref. */
static bool is_answer(const kumo_msg *m, void *arg)
{
    const struct answer_match *w = arg;
    if (kumo_msg_type(m) != w->type || kumo_msg_len(m) != w->len)
        return false;
    kumo_ref r;
    memcpy(&r, kumo_msg_data(m), sizeof r);
    return kumo_ref_eq(r, w->ref);
}

int kumo__inbox_take_answer(kumo_inbox *ib, uint64_t type, kumo_ref ref, int64_t timeout_ns,
                            void *out, size_t len)
{
    struct answer_match w = {.type = type, .len = len, .ref = ref};
    kumo_msg *m = NULL;
    int err = kumo_inbox_recv(ib, is_answer, &w, timeout_ns, &m);
    if (err)
        return err;
    memcpy(out, kumo_msg_data(m), len);
    kumo_msg_free(m);
    return 0;
}
