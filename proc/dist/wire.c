/* The controller's wire format: see wire.h. */
#include "proc/dist/wire.h"

#include "engine/bytes.h"

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

static uint8_t *put_hdr(uint8_t *p, uint8_t op, uint16_t flags)
{
    p[0] = KUMO__DW_VERSION;
    p[1] = op;
    kumo__put16(p + 2, flags);
    return p + KUMO__DW_HDR;
}

static uint8_t *put_pid(uint8_t *p, const kumo_pid *pid)
{
    kumo__put64(p, pid->serial);
    kumo__put32(p + 8, pid->slot);
    kumo__put16(p + 12, pid->shard);
    return p + KUMO__DW_PID;
}

static void get_pid(const uint8_t *p, struct kumo__dw_pid *out)
{
    out->serial = kumo__get64(p);
    out->slot = kumo__get32(p + 8);
    out->shard = kumo__get16(p + 12);
}

size_t kumo__dw_hello(uint8_t *out, uint8_t op, uint64_t from_node, uint64_t to_node,
                      const kumo_address *addrs, unsigned n)
{
    uint8_t *p = put_hdr(out, op, 0);
    kumo__put64(p, from_node);
    kumo__put64(p + 8, to_node);
    p[16] = (uint8_t)n;
    p += 17;
    for (unsigned i = 0; i < n; i++)
        p += kumo_address_encode(&addrs[i], p);
    return (size_t)(p - out);
}

size_t kumo__dw_data_hdr(uint8_t *out, const kumo_pid *to, const kumo_pid *from, uint64_t type,
                         uint64_t chan)
{
    uint8_t *p = put_hdr(out, chan ? KUMO__DW_CHAN : KUMO__DW_DATA, 0);
    p = put_pid(p, to);
    p = put_pid(p, from);
    kumo__put64(p, type);
    p += 8;
    if (chan) {
        kumo__put64(p, chan);
        p += 8;
    }
    return (size_t)(p - out);
}

static bool has_ref(uint8_t op)
{
    return op == KUMO__DW_MONITOR || op == KUMO__DW_DEMONITOR || op == KUMO__DW_DOWN ||
           op == KUMO__DW_INFO;
}

static bool has_reason(uint8_t op)
{
    return op == KUMO__DW_EXIT || op == KUMO__DW_KILL || op == KUMO__DW_DOWN;
}

size_t kumo__dw_signal(uint8_t *out, uint8_t op, uint16_t flags, kumo_pid to, kumo_pid from,
                       uint64_t ref, const kumo_reason *r)
{
    uint8_t *p = put_hdr(out, op, flags);
    p = put_pid(p, &to);
    p = put_pid(p, &from);
    if (has_ref(op)) {
        kumo__put64(p, ref);
        p += 8;
    }
    if (has_reason(op)) {
        size_t tl = strnlen(r->text, KUMO_REASON_TEXT - 1);
        p[0] = (uint8_t)r->kind;
        p[1] = (uint8_t)tl;
        memcpy(p + 2, r->text, tl);
        p += 2 + tl;
        p[0] = (uint8_t)r->via;
        kumo__put64(p + 1, r->by.node);
        p = put_pid(p + 9, &r->by);
    }
    return (size_t)(p - out);
}

size_t kumo__dw_spawn_hdr(uint8_t *out, kumo_pid from, uint64_t ref, int32_t shard, uint8_t flags,
                          const char *name, size_t namelen)
{
    uint8_t *p = put_hdr(out, KUMO__DW_SPAWN, 0);
    p = put_pid(p, &(kumo_pid){0});
    p = put_pid(p, &from);
    kumo__put64(p, ref);
    kumo__put32(p + 8, (uint32_t)shard);
    p[12] = flags;
    p[13] = (uint8_t)namelen;
    memcpy(p + 14, name, namelen);
    return (size_t)(p + 14 + namelen - out);
}

/* The part SPAWN_REPLY and REG_REPLY share; returns where it ends. */
static uint8_t *put_reply(uint8_t *out, uint8_t op, const kumo_pid *to, const kumo_pid *pid,
                          uint64_t ref, int32_t err)
{
    uint8_t *p = put_hdr(out, op, 0);
    p = put_pid(p, to);
    p = put_pid(p, pid);
    kumo__put64(p, ref);
    kumo__put32(p + 8, (uint32_t)err);
    return p + 12;
}

size_t kumo__dw_spawn_reply(uint8_t *out, kumo_pid to, kumo_pid child, uint64_t ref, int32_t err)
{
    return (size_t)(put_reply(out, KUMO__DW_SPAWN_REPLY, &to, &child, ref, err) - out);
}

size_t kumo__dw_reg_reply(uint8_t *out, kumo_pid to, kumo_pid found, uint64_t ref, int32_t err)
{
    uint8_t *p = put_reply(out, KUMO__DW_REG_REPLY, &to, &found, ref, err);
    kumo__put64(p, found.node);
    return (size_t)(p + 8 - out);
}

size_t kumo__dw_reg_hdr(uint8_t *out, uint8_t op, kumo_pid pid, kumo_pid from, uint64_t ref,
                        uint64_t type, const char *name, size_t namelen)
{
    uint8_t *p = put_hdr(out, KUMO__DW_REG, op);
    p = put_pid(p, &pid);
    p = put_pid(p, &from);
    kumo__put64(p, ref);
    kumo__put64(p + 8, type);
    kumo__put64(p + 16, pid.node);
    p[24] = (uint8_t)namelen;
    memcpy(p + 25, name, namelen);
    return (size_t)(p + 25 + namelen - out);
}

static int bad(const char **why, const char *what)
{
    *why = what;
    return -KUMO_EBADWIRE;
}

static int decode_hello(const uint8_t *p, size_t len, struct kumo__dw_frame *f, const char **why)
{
    if (len < 17)
        return bad(why, "short HELLO");
    f->from_node = kumo__get64(p);
    f->to_node = kumo__get64(p + 8);
    f->naddr = p[16];
    if (f->from_node == 0)
        return bad(why, "HELLO from node 0");
    if (f->naddr > KUMO__DW_MAX_ADDRS)
        return bad(why, "HELLO with too many addresses");
    size_t off = 17;
    for (unsigned i = 0; i < f->naddr; i++) {
        int n = kumo_address_decode(p + off, len - off, &f->addr[i]);
        if (n < 0)
            return bad(why, "HELLO with a malformed address");
        off += (size_t)n;
    }
    if (off != len)
        return bad(why, "trailing bytes after HELLO");
    return 0;
}

int kumo__dw_decode(const uint8_t *in, size_t avail, size_t total, struct kumo__dw_frame *f,
                    const char **why)
{
    /* The small fields, one store each: a memset of them compiles to
     * `rep stos`, whose start-up cost was a third of the receive path. */
    f->op = 0;
    f->flags = 0;
    f->naddr = f->sflags = f->namelen = 0;
    f->shard = 0;
    f->from_node = f->to_node = 0;
    f->to.serial = f->from.serial = 0;
    f->to.slot = f->from.slot = 0;
    f->to.shard = f->from.shard = 0;
    f->type = f->aux = 0;
    f->payload_off = f->len = 0;
    f->pid_node = 0;
    if (avail > total)
        return bad(why, "more bytes available than the frame has");
    size_t len = avail;
    if (len < KUMO__DW_HDR)
        return bad(why, "frame shorter than its header");
    if (in[0] != KUMO__DW_VERSION)
        return bad(why, "unknown frame version");
    f->op = in[1];
    f->flags = kumo__get16(in + 2);
    bool data = kumo__dw_has_payload(f->op);
    if (!data && avail != total)
        return bad(why, "signal frame too long");
    const uint8_t *p = in + KUMO__DW_HDR;
    size_t n = len - KUMO__DW_HDR;
    if (f->op == KUMO__DW_HELLO || f->op == KUMO__DW_DIR)
        return decode_hello(p, n, f, why);
    if (f->op <= KUMO__DW_HELLO || f->op >= KUMO__DW_OP_LAST)
        return bad(why, "unknown frame op");
    if (n < 2 * KUMO__DW_PID)
        return bad(why, "frame too short for its pids");
    get_pid(p, &f->to);
    get_pid(p + KUMO__DW_PID, &f->from);
    p += 2 * KUMO__DW_PID;
    n -= 2 * KUMO__DW_PID;
    if (f->op == KUMO__DW_SPAWN) {
        if (n < 14)
            return bad(why, "short SPAWN");
        f->aux = kumo__get64(p);
        f->shard = (int32_t)kumo__get32(p + 8);
        f->sflags = p[12];
        f->namelen = p[13];
        if (f->namelen == 0 || f->namelen > KUMO_CLOSURE_NAME_MAX)
            return bad(why, "SPAWN with a bad closure name length");
        if (n < 14u + f->namelen)
            return bad(why, "SPAWN shorter than its closure name");
        memcpy(f->name, p + 14, f->namelen);
        f->name[f->namelen] = 0;
        f->payload_off = KUMO__DW_SPAWN_FIXED + f->namelen;
        f->len = total - f->payload_off;
        return 0;
    }
    if (f->op == KUMO__DW_REG) {
        if (n < 25)
            return bad(why, "short REG");
        if (f->flags < 1 || f->flags > 4)
            return bad(why, "REG of an unknown request");
        f->aux = kumo__get64(p);
        f->type = kumo__get64(p + 8);
        f->pid_node = kumo__get64(p + 16);
        f->namelen = p[24];
        if (f->namelen == 0)
            return bad(why, "REG with an empty name");
        if (n < 25u + f->namelen)
            return bad(why, "REG shorter than its name");
        memcpy(f->name, p + 25, f->namelen);
        f->name[f->namelen] = 0;
        f->payload_off = KUMO__DW_REG_FIXED + f->namelen;
        f->len = total - f->payload_off;
        if (f->flags != 4 && f->len)
            return bad(why, "REG with bytes after its name");
        return 0;
    }
    if (f->op == KUMO__DW_SPAWN_REPLY || f->op == KUMO__DW_REG_REPLY) {
        if (n != (f->op == KUMO__DW_REG_REPLY ? 20u : 12u))
            return bad(why, "reply of the wrong length");
        f->aux = kumo__get64(p);
        f->shard = (int32_t)kumo__get32(p + 8);
        if (f->op == KUMO__DW_REG_REPLY)
            f->pid_node = kumo__get64(p + 12);
        return 0;
    }
    if (data) {
        size_t fixed = f->op == KUMO__DW_CHAN ? 16 : 8;
        if (n < fixed)
            return bad(why, "short DATA/CHAN header");
        f->type = kumo__get64(p);
        if (f->op == KUMO__DW_CHAN)
            f->aux = kumo__get64(p + 8);
        f->payload_off = KUMO__DW_HDR + 2 * KUMO__DW_PID + fixed;
        f->len = total - f->payload_off;
        return 0;
    }
    if (has_ref(f->op)) {
        if (n < 8)
            return bad(why, "signal too short for its ref");
        f->aux = kumo__get64(p);
        p += 8;
        n -= 8;
    }
    if (has_reason(f->op)) {
        if (n < 2)
            return bad(why, "signal too short for its reason");
        if (p[0] > KUMO_NODE_DOWN)
            return bad(why, "unknown reason kind");
        size_t tl = p[1];
        if (tl >= KUMO_REASON_TEXT || n != 2 + tl + KUMO__DW_BY)
            return bad(why, "reason text does not fit the frame");
        memset(&f->reason, 0, sizeof f->reason);
        f->reason.kind = (kumo_reason_kind)p[0];
        memcpy(f->reason.text, p + 2, tl);
        f->reason.text[tl] = 0;
        const uint8_t *b = p + 2 + tl;
        struct kumo__dw_pid bw;
        get_pid(b + 9, &bw);
        kumo_pid by = kumo__dw_pid(&bw, kumo__get64(b + 1));
        if (b[0] > KUMO_VIA_LINK)
            return bad(why, "unknown reason cause");
        if ((b[0] == KUMO_VIA_NONE) != kumo_pid_is_null(by) ||
            !by.node != (!by.serial && !by.slot && !by.shard))
            return bad(why, "reason's cause and process disagree");
        f->reason.via = (kumo_reason_via)b[0];
        f->reason.by = by;
        return 0;
    }
    if (n != 0)
        return bad(why, "trailing bytes after a signal");
    return 0;
}
