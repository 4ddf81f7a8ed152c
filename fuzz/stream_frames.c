/*
 * libFuzzer target: the stream transports' frame decoders
 * (transport/stream/wire.h): the frame header and the HELLO of the link
 * handshake, as the receiver meets them.
 */
#include "transport/stream/wire.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kumo__tcp_hdr h;
    const char *why = NULL;
    int r = kumo__tcp_hdr_decode(data, size, 64u << 10, 256u << 20, &h, &why);
    if (r < 0 && !why)
        abort();
    if (r == 0 && h.hlen > size)
        abort();
    kumo_address from, to;
    uint64_t caps;
    const uint8_t *nonce = NULL;
    why = NULL;
    if (kumo__tcp_hello_decode(data, size, &from, &to, &caps, &nonce, &why) == 0) {
        if (nonce < data || nonce + KUMO__NONCE > data + size)
            abort();
        if (from.len > KUMO_ADDRESS_MAX || to.len > KUMO_ADDRESS_MAX)
            abort();
    } else if (!why) {
        abort();
    }
    return 0;
}
