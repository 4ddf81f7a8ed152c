/* The public process API: identifiers, sending, receive declarations,
 * termination, links, monitors, say.  (The registry's functions are in
 * registry/registry.c.) */
#include "proc/internal.h"

#include "engine/bytes.h"
#include "proc/dist/dist.h"

#include <kumo/transport.h>

#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <xxhash.h>

/* ------------------------------------------------------------------ */
/* Errors, ids, types                                                  */
/* ------------------------------------------------------------------ */

const char *kumo_strerror(int err)
{
    switch (-err) {
    case 0:
        return "success";
    case KUMO_ENOPROC:
        return "no such process";
    case KUMO_ENAMETAKEN:
        return "name already registered";
    case KUMO_ENONAME:
        return "name not registered";
    case KUMO_ETIMEOUT:
        return "timed out";
    case KUMO_ESHUTDOWN:
        return "node is shutting down";
    case KUMO_ETOOBIG:
        return "message too large";
    case KUMO_EBADWIRE:
        return "malformed or unknown-version encoding";
    case KUMO_ENOTOWNER:
        return "receive port belongs to another process";
    case KUMO_ENOCLOSURE:
        return "no such closure in the node's remote table";
    default:
        if (-err > KUMO_ETRANSPORT_BASE && -err < KUMO_ETRANSPORT_LAST)
            return kumo_transport_strerror(err);
        return err < 0 && -err < KUMO_EBASE ? strerror(-err) : "unknown error";
    }
}

bool kumo_pid_eq(kumo_pid a, kumo_pid b)
{
    return kumo__pid_eq_p(&a, &b);
}

bool kumo_ref_eq(kumo_ref a, kumo_ref b)
{
    return a.node == b.node && a.id == b.id;
}

char *kumo_pid_str(kumo_pid p, char *buf, size_t len)
{
    snprintf(buf, len, "%016llx.%u.%u.%llx", (unsigned long long)p.node, p.shard, p.slot,
             (unsigned long long)p.serial);
    return buf;
}

bool kumo_send_port_eq(kumo_send_port a, kumo_send_port b)
{
    return kumo_pid_eq(a.owner, b.owner) && a.id == b.id && a.type == b.type;
}

char *kumo_node_id_str(uint64_t node, char *buf, size_t len)
{
    snprintf(buf, len, "%016llx", (unsigned long long)node);
    return buf;
}

int kumo_node_id_parse(const char *s, uint64_t *node)
{
    uint64_t x;
    const char *rest;
    if (!s || !kumo__parse_hex(s, 0, "", &x, &rest) || !x)
        return -EINVAL;
    *node = x;
    return 0;
}

uint64_t kumo_type(const char *name)
{
    return XXH3_64bits(name, strlen(name));
}
uint64_t kumo_type_exit(void)
{
    return kumo_type(KUMO_TYPE_EXIT_NAME);
}
uint64_t kumo_type_down(void)
{
    return kumo_type(KUMO_TYPE_DOWN_NAME);
}

const char *kumo_reason_kind_str(kumo_reason_kind k)
{
    static const char *names[] = {"normal",     "shutdown",   "exception", "killed",
                                  "unknown-id", "disconnect", "node-down"};
    return (unsigned)k < sizeof names / sizeof *names ? names[k] : "?";
}

char *kumo_reason_str(const kumo_reason *r, char *buf, size_t len)
{
    if (!len)
        return buf;
    int n =
        snprintf(buf, len, "%s%s%s", kumo_reason_kind_str(r->kind), r->text[0] ? ":" : "", r->text);
    static const char *via[] = {NULL, "killed-by", "exit-from", "link-from"};
    if ((unsigned)r->via < sizeof via / sizeof *via && via[r->via] && n >= 0 && (size_t)n < len) {
        char pb[64];
        snprintf(buf + n, len - (size_t)n, ",%s=%s", via[r->via],
                 kumo_pid_str(r->by, pb, sizeof pb));
    }
    return buf;
}

#define PID_WIRE_V1 1

void kumo_pid_encode(kumo_pid p, uint8_t out[KUMO_PID_WIRE_SIZE])
{
    out[0] = PID_WIRE_V1;
    kumo__put64(out + 1, p.node);
    kumo__put64(out + 9, p.serial);
    kumo__put32(out + 17, p.slot);
    kumo__put16(out + 21, p.shard);
    kumo__put16(out + 23, 0);
}

int kumo_pid_decode(const uint8_t *in, size_t len, kumo_pid *out)
{
    if (!in || len < KUMO_PID_WIRE_SIZE || in[0] != PID_WIRE_V1)
        return -KUMO_EBADWIRE;
    *out = (kumo_pid){.node = kumo__get64(in + 1),
                      .serial = kumo__get64(in + 9),
                      .slot = kumo__get32(in + 17),
                      .shard = kumo__get16(in + 21)};
    return 0;
}

void kumo_send_port_encode(kumo_send_port p, uint8_t out[KUMO_SEND_PORT_WIRE_SIZE])
{
    kumo_pid_encode(p.owner, out);
    out[0] = PID_WIRE_V1;
    kumo__put64(out + KUMO_PID_WIRE_SIZE, p.id);
    kumo__put64(out + KUMO_PID_WIRE_SIZE + 8, p.type);
}

int kumo_send_port_decode(const uint8_t *in, size_t len, kumo_send_port *out)
{
    if (!in || len < KUMO_SEND_PORT_WIRE_SIZE)
        return -KUMO_EBADWIRE;
    int err = kumo_pid_decode(in, len, &out->owner);
    if (err)
        return err;
    out->id = kumo__get64(in + KUMO_PID_WIRE_SIZE);
    out->type = kumo__get64(in + KUMO_PID_WIRE_SIZE + 8);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Self                                                                */
/* ------------------------------------------------------------------ */

kumo_pid kumo_self(const kumo_proc *self)
{
    return kumo__pid_of(self);
}
kumo_node *kumo_self_node(const kumo_proc *self)
{
    return self->node;
}
unsigned kumo_self_shard(const kumo_proc *self)
{
    return self->shard;
}
void *kumo_state(const kumo_proc *self)
{
    return self->state;
}
void kumo_set_state(kumo_proc *self, void *state)
{
    self->state = state;
}

/* ------------------------------------------------------------------ */
/* Messages and sending                                                */
/* ------------------------------------------------------------------ */

uint64_t kumo_msg_type(const kumo_msg *m)
{
    return m->type;
}
const void *kumo_msg_data(const kumo_msg *m)
{
    return m->data;
}
size_t kumo_msg_len(const kumo_msg *m)
{
    return m->len;
}
kumo_pid kumo_msg_sender(const kumo_msg *m)
{
    return m->from;
}
void kumo_msg_free(kumo_msg *m)
{
    if (m)
        kumo__msg_free(m);
}

kumo_msg *kumo_msg_keep(kumo_proc *self, kumo_msg *m)
{
    struct pshard *ps = kumo__pshard_of(self);
    if (ps && ps->cur_msg == m)
        self->flags |= PF_MSG_TAKEN;
    return m;
}

static kumo_node *node_of(kumo_proc *self)
{
    return self->node;
}

static inline void stamp(struct kumo_msg *m, kumo_proc *self, kumo_pid to)
{
    kumo__pid_store(&m->from, self);
    msg_set_dst(m, to);
}

static inline struct kumo_msg *data_msg(kumo_proc *self, kumo_pid to, uint64_t type, size_t len)
{
    return kumo__msg_from(self, to, SIG_DATA, type, 0, len);
}

/* kumo_send and kumo_usend: a copy of data as a message, with `flags`
 * (0 or MF_USEND; a constant where inlined). */
static inline int send_copy(kumo_proc *self, kumo_pid to, uint64_t type, const void *data,
                            size_t len, uint8_t flags)
{
    kumo_node *node = node_of(self);
    int err = kumo__check_send(node, len);
    if (__builtin_expect(err != 0, 0))
        return err;
    if (__builtin_expect(to.node != node->id, 0) && node->dist && self->shard == 0 &&
        !(self->flags & PF_FOREIGN)) {
        /* On the controller's shard: straight to the connection. */
        self->flags |= PF_DIST;
        kumo_pid me = kumo__pid_of(self);
        if (kumo__dist_send_direct(node, &me, &to, type, data, len, flags)) {
            if (kumo__node_busy(node, to.node))
                kumo__busy_suspend(node, self, to.node);
            return 0;
        }
    }
    struct kumo_msg *m = data_msg(self, to, type, len);
    if (!m)
        return -ENOMEM;
    m->flags = flags;
    kumo__copy(m->data, data, len);
    kumo__post(node, self, to, m);
    return 0;
}

int kumo_send(kumo_proc *self, kumo_pid to, uint64_t type, const void *data, size_t len)
{
    return send_copy(self, to, type, data, len, 0);
}

int kumo_sendv(kumo_proc *self, kumo_pid to, uint64_t type, const struct iovec *iov, int n)
{
    kumo_node *node = node_of(self);
    size_t len = 0;
    for (int i = 0; i < n; i++)
        len += iov[i].iov_len;
    int err = kumo__check_send(node, len);
    if (err)
        return err;
    struct kumo_msg *m = data_msg(self, to, type, len);
    if (!m)
        return -ENOMEM;
    kumo__iov_gather(m->data, iov, n);
    kumo__post(node, self, to, m);
    return 0;
}

int kumo_usend(kumo_proc *self, kumo_pid to, uint64_t type, const void *data, size_t len)
{
    return send_copy(self, to, type, data, len, MF_USEND);
}

kumo_msg *kumo_msg_alloc(kumo_proc *self, uint64_t type, size_t len, void **payload)
{
    if (len > self->node->max_message)
        return NULL;
    struct kumo_msg *m = kumo__msg_new(len);
    if (!m)
        return NULL;
    m->type = type;
    if (payload)
        *payload = m->data;
    return m;
}

static inline int send_owned(kumo_proc *self, kumo_pid to, struct kumo_msg *m)
{
    kumo_node *node = node_of(self);
    int err = kumo__check_send(node, m->len);
    if (__builtin_expect(err != 0, 0))
        return err;
    m->kind = SIG_DATA;
    m->aux = 0;
    m->flags = 0;
    stamp(m, self, to);
    kumo__post(node, self, to, m);
    return 0;
}

int kumo_send_msg(kumo_proc *self, kumo_pid to, kumo_msg *m)
{
    /* The message being handled (with or without kumo_msg_keep) is passed
     * on: on success the engine must not free it after the handler; on
     * failure it stays the handler's. */
    struct pshard *ps = kumo__pshard_of(self);
    bool current = ps && ps->cur_msg == m;
    int err = send_owned(self, to, m);
    if (current && err == 0)
        self->flags |= PF_MSG_TAKEN;
    return err;
}

/* Passing on the message being handled is what kumo_send_msg does. */
int kumo_forward(kumo_proc *self, kumo_pid to, kumo_msg *m)
{
    return kumo_send_msg(self, to, m);
}

/* ------------------------------------------------------------------ */
/* Receive declarations                                                */
/* ------------------------------------------------------------------ */

static bool set_is_pure(const kumo_recv *set)
{
    if (set->flags & KUMO_RECV_PURE)
        return true;
    for (uint32_t i = 0; i < set->n; i++)
        if (set->matches[i].kind == KUMO_MATCH_IF)
            return false;
    return true;
}

void kumo_receive(kumo_proc *self, const kumo_recv *set, int64_t timeout_ns)
{
    if (self->flags & (PF_FOREIGN | PF_DEAD))
        return;
    struct pshard *ps = self->node->ps[self->shard];
    self->flags |= PF_DECLARED;
    self->flags &= ~(PF_POLL | PF_TIMEDOUT);
    self->set = set;
    if (__builtin_expect(set != self->prev_set, 0) || !set_is_pure(set))
        self->cursor = &self->mbox_head;
    if (self->ext)
        kumo__timer_cancel(&ps->sh->timers, &self->ext->timer);
    if (timeout_ns == 0) {
        self->flags |= PF_POLL;
    } else if (timeout_ns > 0) {
        struct proc_ext *e = kumo__ext(self);
        if (!e ||
            kumo__timer_arm(&ps->sh->timers, &e->timer, kumo__now_ns() + (uint64_t)timeout_ns))
            self->flags |= PF_POLL; /* no memory for a timer: time out at once */
    }
    /* A wait declared from init or a handler is examined by the run loop
     * right after the callback returns. */
}

void kumo_expect(kumo_proc *self, uint64_t type, kumo_handler fn)
{
    struct proc_ext *e = kumo__ext(self);
    if (!e) {
        kumo_die(self, KUMO_EXCEPTION, "out of memory");
        return;
    }
    bool same = e->expect_set.n == 1 && e->expect_match.type == type && e->expect_match.fn == fn;
    e->expect_match = (kumo_match){.kind = KUMO_MATCH_TYPE, .type = type, .fn = fn};
    e->expect_set = (kumo_recv){.matches = &e->expect_match, .n = 1};
    if (!same)
        self->prev_set = NULL;
    kumo_receive(self, &e->expect_set, KUMO_INFINITY);
}

/* ------------------------------------------------------------------ */
/* Termination                                                         */
/* ------------------------------------------------------------------ */

void kumo_die(kumo_proc *self, kumo_reason_kind kind, const char *fmt, ...)
{
    if (self->flags & PF_FOREIGN)
        return; /* an inbox ends with kumo_inbox_free */
    struct proc_ext *e = kumo__ext(self);
    if (!e)
        return;
    e->reason.kind = kind;
    e->reason.text[0] = 0;
    e->reason.via = KUMO_VIA_NONE;
    e->reason.by = (kumo_pid){0};
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->reason.text, sizeof e->reason.text, fmt, ap);
        va_end(ap);
    }
    self->flags |= PF_DYING;
}

static int signal_reason(kumo_proc *self, kumo_pid pid, uint8_t kind, kumo_reason_kind rk,
                         const char *text)
{
    kumo_node *node = node_of(self);
    if (atomic_load_explicit(&node->stopping, memory_order_relaxed))
        return -KUMO_ESHUTDOWN;
    kumo_reason r;
    kumo__reason_set(&r, rk, text);
    return kumo__post_reason(node, self, kumo__pid_of(self), pid, kind, 0, 0, &r);
}

int kumo_exit(kumo_proc *self, kumo_pid pid, kumo_reason_kind kind, const char *text)
{
    return signal_reason(self, pid, SIG_EXIT, kind, text);
}

int kumo_kill(kumo_proc *self, kumo_pid pid, const char *text)
{
    return signal_reason(self, pid, SIG_KILL, KUMO_KILLED, text);
}

void kumo_trap_exit(kumo_proc *self, bool on)
{
    if (self->flags & PF_FOREIGN)
        return; /* an inbox always traps; its flags belong to shard 0 */
    if (on)
        self->flags |= PF_TRAP;
    else
        self->flags &= ~PF_TRAP;
}

/* ------------------------------------------------------------------ */
/* Links and monitors                                                  */
/* ------------------------------------------------------------------ */

/* Posts a link/unlink/monitor/demonitor signal (a dead or unknown pid
 * answers SIG_LINK and SIG_MONITOR with unknown-id). */
static int post_watch(kumo_proc *self, kumo_pid pid, uint8_t kind, uint64_t ref)
{
    kumo_node *node = node_of(self);
    struct kumo_msg *m = kumo__msg_new(0);
    if (!m)
        return -ENOMEM;
    m->kind = kind;
    m->aux = ref;
    stamp(m, self, pid);
    kumo__post(node, self, pid, m);
    return 0;
}

/* Records a link of `kind` (W_LINK: in self's watching list; W_ELINK:
 * in both of its lists, the link being both ways) and sends `sig` to pid,
 * undoing the record if the send fails.  A link already held is one link. */
static int link_with(kumo_proc *self, kumo_pid pid, uint32_t kind, uint8_t sig)
{
    if (atomic_load_explicit(&self->node->stopping, memory_order_relaxed))
        return -KUMO_ESHUTDOWN;
    kumo__inbox_lock(self);
    struct proc_ext *e = kumo__ext(self);
    int err = e ? 0 : -ENOMEM;
    bool had = e && kumo__watch_find(&e->watching, pid, 0, kind) >= 0;
    if (e && !had) {
        err = kumo__watch_add(&e->watching, pid, 0, kind);
        if (!err && kind == W_ELINK && (err = kumo__watch_add(&e->watchers, pid, 0, kind)))
            kumo__watch_remove(&e->watching, pid, 0, kind);
    }
    kumo__inbox_unlock(self);
    if (err || had)
        return err;
    err = post_watch(self, pid, sig, 0);
    if (err) {
        kumo__inbox_lock(self);
        kumo__watch_remove(&e->watching, pid, 0, kind);
        if (kind == W_ELINK)
            kumo__watch_remove(&e->watchers, pid, 0, kind);
        kumo__inbox_unlock(self);
    }
    return err;
}

int kumo_link(kumo_proc *self, kumo_pid pid)
{
    return link_with(self, pid, W_LINK, SIG_LINK);
}

int kumo_erlang_link(kumo_proc *self, kumo_pid pid)
{
    if (kumo_pid_eq(pid, kumo__pid_of(self)))
        return 0; /* Erlang: linking to oneself does nothing */
    return link_with(self, pid, W_ELINK, SIG_ELINK);
}

int kumo_erlang_unlink(kumo_proc *self, kumo_pid pid)
{
    kumo__inbox_lock(self);
    bool had = self->ext && kumo__watch_remove(&self->ext->watching, pid, 0, W_ELINK);
    if (had)
        kumo__watch_remove(&self->ext->watchers, pid, 0, W_ELINK);
    kumo__inbox_unlock(self);
    if (!had)
        return 0;
    return post_watch(self, pid, SIG_EUNLINK, 0);
}

int kumo_reconnect(kumo_proc *self, kumo_pid pid)
{
    kumo_node *node = node_of(self);
    if (atomic_load_explicit(&node->stopping, memory_order_relaxed))
        return -KUMO_ESHUTDOWN;
    if (pid.node == node->id)
        return 0; /* a local pair is never disconnected */
    return post_watch(self, pid, SIG_RECONNECT, 0);
}

int kumo_unlink(kumo_proc *self, kumo_pid pid)
{
    kumo__inbox_lock(self);
    bool had = self->ext && kumo__watch_remove(&self->ext->watching, pid, 0, W_LINK);
    kumo__inbox_unlock(self);
    if (!had)
        return 0;
    return post_watch(self, pid, SIG_UNLINK, 0);
}

/* A monitor of pid; with `port`, a port monitor naming it (recorded under
 * the same lock as the watch, so its DOWN always finds it). */
static int monitor_as(kumo_proc *self, kumo_pid pid, const kumo_send_port *port, kumo_ref *ref)
{
    kumo_node *node = node_of(self);
    if (atomic_load_explicit(&node->stopping, memory_order_relaxed))
        return -KUMO_ESHUTDOWN;
    uint64_t id = kumo__new_ref(node, self);
    kumo__inbox_lock(self);
    struct proc_ext *e = kumo__ext(self);
    int err = e ? 0 : -ENOMEM;
    if (!err && port && e->nport_mons == e->capport_mons) {
        uint32_t ncap = e->capport_mons ? e->capport_mons * 2 : 4;
        struct port_mon *v = kumo__alloc(sizeof *v * ncap);
        if (v) {
            if (e->nport_mons)
                memcpy(v, e->port_mons, sizeof *v * e->nport_mons);
            kumo__free(e->port_mons, sizeof *v * e->capport_mons);
            e->port_mons = v;
            e->capport_mons = ncap;
        } else {
            err = -ENOMEM;
        }
    }
    if (!err)
        err = kumo__watch_add(&e->watching, pid, id, W_MONITOR);
    if (!err && port)
        e->port_mons[e->nport_mons++] = (struct port_mon){.ref = id, .port = *port};
    kumo__inbox_unlock(self);
    if (err)
        return err;
    err = post_watch(self, pid, SIG_MONITOR, id);
    if (err) {
        kumo__inbox_lock(self);
        kumo__watch_remove(&e->watching, pid, id, W_MONITOR);
        if (port)
            kumo__port_mon_take(e, id, NULL);
        kumo__inbox_unlock(self);
        return err;
    }
    if (ref)
        *ref = (kumo_ref){.node = node->id, .id = id};
    return 0;
}

int kumo_monitor(kumo_proc *self, kumo_pid pid, kumo_ref *ref)
{
    return monitor_as(self, pid, NULL, ref);
}

uint64_t kumo_type_port_down(void)
{
    return kumo_type(KUMO_TYPE_PORT_DOWN_NAME);
}

int kumo_monitor_port(kumo_proc *self, kumo_send_port sp, kumo_ref *ref)
{
    return monitor_as(self, sp.owner, &sp, ref);
}

int kumo_unmonitor(kumo_proc *self, kumo_ref ref)
{
    kumo_node *node = node_of(self);
    if (ref.node != node->id)
        return -ENOENT;
    kumo__inbox_lock(self);
    struct proc_ext *e = self->ext;
    kumo_pid target = {0};
    uint8_t kind = SIG_DEMONITOR;
    bool found = e && kumo__watch_take_ref(&e->watching, ref.id, W_MONITOR, &target);
    if (e && e->nport_mons)
        kumo__port_mon_take(e, ref.id, NULL);
    if (!found && e && kumo__watch_take_ref(&e->watching, ref.id, W_NODE, &target)) {
        found = true;
        kind = SIG_DEMONITOR_NODE;
    }
    /* A DOWN for this ref may already be queued: remove it.  (One still in
     * flight is dropped on arrival because the watch is gone.) */
    bool removed = false;
    for (struct kumo_msg **pp = &self->mbox_head; *pp;) {
        struct kumo_msg *m = *pp;
        /* kumo_down_msg, kumo_node_down_msg and kumo_port_down_msg all
         * start with the ref */
        if (m->kind == SIG_DATA &&
            (m->type == node->type_down || m->type == node->type_node_down ||
             m->type == node->type_port_down) &&
            m->aux == ref.id && ((kumo_down_msg *)m->data)->ref.node == ref.node) {
            *pp = msg_next(m);
            if (self->mbox_tail == (struct kumo_msg **)&m->link.next)
                self->mbox_tail = pp;
            kumo__msg_free(m);
            removed = true;
            break;
        }
        pp = (struct kumo_msg **)&m->link.next;
    }
    if (removed)
        self->cursor = &self->mbox_head;
    kumo__inbox_unlock(self);
    if (!found)
        return removed ? 0 : -ENOENT;
    return post_watch(self, target, kind, ref.id);
}

/* ------------------------------------------------------------------ */
/* say                                                                 */
/* ------------------------------------------------------------------ */

void kumo_say(kumo_proc *self, const char *fmt, ...)
{
    if (!kumo__log_enabled(KUMO_LOG_INFO))
        return; /* an INFO line: dropped below the level, as kumo_log_set_level says */
    char ts[48], pid[64], text[900], line[1100];
    kumo__utc_now(ts, sizeof ts);
    kumo_pid_str(kumo__pid_of(self), pid, sizeof pid);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    snprintf(line, sizeof line, "%s pid://%s SAY %s", ts, pid, text);
    kumo__log_line(KUMO_LOG_INFO, line);
}
