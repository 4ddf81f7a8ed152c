#include "engine/timer.h"

#include "engine/alloc.h"

#include <errno.h>
#include <time.h>

uint64_t kumo__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void place(struct kumo__timer_heap *h, uint32_t i, struct kumo__timer *t)
{
    h->v[i] = t;
    t->idx = i;
}

static void sift_up(struct kumo__timer_heap *h, uint32_t i)
{
    struct kumo__timer *t = h->v[i];
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (h->v[p]->deadline <= t->deadline)
            break;
        place(h, i, h->v[p]);
        i = p;
    }
    place(h, i, t);
}

static void sift_down(struct kumo__timer_heap *h, uint32_t i)
{
    struct kumo__timer *t = h->v[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && h->v[c + 1]->deadline < h->v[c]->deadline)
            c++;
        if (h->v[c]->deadline >= t->deadline)
            break;
        place(h, i, h->v[c]);
        i = c;
    }
    place(h, i, t);
}

int kumo__timer_arm(struct kumo__timer_heap *h, struct kumo__timer *t, uint64_t deadline)
{
    if (kumo__timer_armed(t))
        kumo__timer_cancel(h, t);
    if (h->n == h->cap) {
        uint32_t ncap = h->cap ? h->cap * 2 : 64;
        struct kumo__timer **nv = kumo__alloc(sizeof(*nv) * ncap);
        if (!nv)
            return -ENOMEM;
        if (h->n)
            memcpy(nv, h->v, sizeof(*nv) * h->n);
        kumo__free(h->v, sizeof(*nv) * h->cap);
        h->v = nv;
        h->cap = ncap;
    }
    t->deadline = deadline;
    h->v[h->n] = t;
    t->idx = h->n++;
    sift_up(h, t->idx);
    return 0;
}

void kumo__timer_cancel(struct kumo__timer_heap *h, struct kumo__timer *t)
{
    if (!kumo__timer_armed(t))
        return;
    uint32_t i = t->idx;
    t->idx = KUMO__TIMER_IDLE;
    h->n--;
    if (i == h->n)
        return;
    struct kumo__timer *last = h->v[h->n];
    place(h, i, last);
    if (i > 0 && h->v[(i - 1) / 2]->deadline > last->deadline)
        sift_up(h, i);
    else
        sift_down(h, i);
}

struct kumo__timer *kumo__timer_pop_due(struct kumo__timer_heap *h, uint64_t now)
{
    if (!h->n || h->v[0]->deadline > now)
        return NULL;
    struct kumo__timer *t = h->v[0];
    kumo__timer_cancel(h, t);
    return t;
}

void kumo__timer_heap_fini(struct kumo__timer_heap *h)
{
    for (uint32_t i = 0; i < h->n; i++)
        h->v[i]->idx = KUMO__TIMER_IDLE;
    kumo__free(h->v, sizeof(*h->v) * h->cap);
    h->v = NULL;
    h->n = h->cap = 0;
}
