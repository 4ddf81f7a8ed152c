/*
 * The one place transports are listed (docs/architecture.md §6).  Adding a
 * transport is adding its folder and one line to `registered` below; the
 * required ops are checked on first use, and an incomplete table is left
 * out with a log line instead of crashing later.
 */
#include "transport/transport.h"

#include "engine/log.h"

#include <pthread.h>
#include <string.h>

extern const struct kumo__transport_ops kumo__inmem_ops;
extern const struct kumo__transport_ops kumo__tcp_ops;
extern const struct kumo__transport_ops kumo__shm_ops;

static const struct kumo__transport_ops *const registered[] = {
    &kumo__inmem_ops,
    &kumo__tcp_ops,
    &kumo__shm_ops,
};

#define NREG (sizeof registered / sizeof *registered)

static const struct kumo__transport_ops *usable[NREG];
static unsigned nusable;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static const char *missing_op(const struct kumo__transport_ops *o)
{
    if (!o->name || !o->name[0])
        return "name";
    if (!o->tag)
        return "tag";
    if (!o->create)
        return "create";
    if (!o->endpoint_new)
        return "endpoint_new";
    if (!o->endpoint_close)
        return "endpoint_close";
    if (!o->connect)
        return "connect";
    if (!o->send)
        return "send";
    if (!o->conn_close)
        return "conn_close";
    if (!o->break_link)
        return "break_link";
    if (!o->destroy)
        return "destroy";
    if ((o->caps & KUMO_TCAP_MULTICAST) &&
        (!o->multicast_new || !o->multicast_subscribe || !o->multicast_send))
        return "multicast_* (the caps claim multicast)";
    return NULL;
}

static void check_all(void)
{
    for (unsigned i = 0; i < NREG; i++) {
        const struct kumo__transport_ops *o = registered[i];
        const char *miss = missing_op(o);
        bool dup = false;
        for (unsigned j = 0; j < nusable; j++)
            dup |= strcmp(usable[j]->name, o->name) == 0 || usable[j]->tag == o->tag;
        if (miss || dup) {
            kumo__log(KUMO_LOG_ERROR, "transport %s left out: %s", o->name ? o->name : "?",
                      miss ? miss : "duplicate name or address tag");
            continue;
        }
        usable[nusable++] = o;
    }
}

const struct kumo__transport_ops *kumo__transport_find(const char *name)
{
    pthread_once(&once, check_all);
    for (unsigned i = 0; i < nusable; i++)
        if (strcmp(usable[i]->name, name) == 0)
            return usable[i];
    return NULL;
}

const struct kumo__transport_ops *kumo__transport_by_tag(uint8_t tag)
{
    pthread_once(&once, check_all);
    for (unsigned i = 0; i < nusable; i++)
        if (usable[i]->tag == tag)
            return usable[i];
    return NULL;
}

unsigned kumo_transport_list(const char **names, unsigned max)
{
    pthread_once(&once, check_all);
    for (unsigned i = 0; i < nusable && i < max; i++)
        names[i] = usable[i]->name;
    return nusable;
}
