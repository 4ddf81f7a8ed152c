/*
 * The one internal entry point the node layer needs from the transport
 * layer: creating a transport on an engine (the public kumo_transport_new
 * takes a node, which only proc/ can open up to its engine).
 */
#ifndef KUMO_TRANSPORT_CREATE_H
#define KUMO_TRANSPORT_CREATE_H

#include <kumo/transport.h>

struct kumo__engine;

/* As kumo_transport_new, on `eng`'s shards. */
int kumo__transport_new(struct kumo__engine *eng, const char *name, const void *cfg,
                        kumo_transport **out);

#endif
