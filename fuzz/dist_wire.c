/*
 * libFuzzer target: the node controller's frame decoder
 * (proc/dist/wire.c), fed as the controller feeds it: the head of a frame
 * of any length, the whole of every frame but DATA, CHAN, SPAWN and REG.
 * Checks that it never reads out of bounds (ASan) and that what it
 * accepts is consistent with the input.
 */
#include "proc/dist/wire.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t head[KUMO__DW_HEAD_MAX];
    size_t avail = size < sizeof head ? size : sizeof head;
    memcpy(head, data, avail);
    if (avail >= 2 && !kumo__dw_has_payload(head[1]) && avail < size)
        return 0; /* the controller refuses it before decoding */
    struct kumo__dw_frame f;
    const char *why = NULL;
    if (kumo__dw_decode(head, avail, size, &f, &why)) {
        if (!why)
            abort(); /* every refusal says why */
        return 0;
    }
    if (kumo__dw_has_payload(f.op) && f.payload_off + f.len != size)
        abort();
    if (f.op == KUMO__DW_HELLO || f.op == KUMO__DW_DIR) {
        /* what was accepted encodes back to the same bytes */
        uint8_t out[KUMO__DW_HELLO_MAX];
        size_t n = kumo__dw_hello(out, f.op, f.from_node, f.to_node, f.addr, f.naddr);
        if (n != size || memcmp(out + 4, data + 4, n - 4) != 0)
            abort();
    }
    return 0;
}
