/*
 * Building a kumo_pid value.  Shared by the engine's process layer and the
 * controller's wire decoders (proc/dist/wire.c, which stay pure).
 */
#ifndef KUMO_PROC_PID_H
#define KUMO_PROC_PID_H

#include <kumo/kumo.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/*
 * A pid from its parts, its last word (slot, shard, reserved 0) written
 * as one 8-byte store: built field by field, a 4-byte store then an
 * 8-byte load of the same bytes stalls store forwarding, and pids are
 * copied as 8-byte words right after they are made (in every remote send,
 * kumo__pid_of; in every received frame, the wire decoder: a quarter of
 * the controller's receive time before).
 */
static inline kumo_pid kumo__pid_make(uint64_t node, uint64_t serial, uint32_t slot, uint16_t shard)
{
    kumo_pid r = {.node = node, .serial = serial};
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    _Static_assert(offsetof(kumo_pid, shard) == offsetof(kumo_pid, slot) + 4 &&
                       offsetof(kumo_pid, reserved) == offsetof(kumo_pid, slot) + 6,
                   "kumo_pid's last word");
    uint64_t w = (uint64_t)slot | (uint64_t)shard << 32;
    memcpy((char *)&r + offsetof(kumo_pid, slot), &w, sizeof w);
#else
    r.slot = slot;
    r.shard = shard;
#endif
    return r;
}

/* kumo_pid_eq for pids in memory, inlined (the hot paths compare by
 * pointer: see kumo__pid_make). */
static inline bool kumo__pid_eq_p(const kumo_pid *a, const kumo_pid *b)
{
    return a->serial == b->serial && a->node == b->node && a->slot == b->slot &&
           a->shard == b->shard;
}

#endif
