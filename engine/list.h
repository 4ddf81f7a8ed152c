/*
 * Intrusive doubly linked lists: a head pointer and, in each node, two
 * pointer fields whose names the caller gives (so one node can sit in
 * several lists).  The head and node arguments are evaluated more than
 * once: pass plain lvalues.
 */
#ifndef KUMO_ENGINE_LIST_H
#define KUMO_ENGINE_LIST_H

#include <stddef.h>

/* Puts node n first in the list at head. */
#define KUMO__LIST_PUSH(head, n, prev, next)                                                       \
    do {                                                                                           \
        (n)->prev = NULL;                                                                          \
        (n)->next = (head);                                                                        \
        if (head)                                                                                  \
            (head)->prev = (n);                                                                    \
        (head) = (n);                                                                              \
    } while (0)

/* Takes node n (which is in the list at head) out of it. */
#define KUMO__LIST_REMOVE(head, n, prev, next)                                                     \
    do {                                                                                           \
        if ((n)->prev)                                                                             \
            (n)->prev->next = (n)->next;                                                           \
        else                                                                                       \
            (head) = (n)->next;                                                                    \
        if ((n)->next)                                                                             \
            (n)->next->prev = (n)->prev;                                                           \
    } while (0)

#endif
