/* Address values: comparison and the wire encoding.  Pure functions
 * (kumo_address_str, which asks the transport, is in core.c), so the
 * decoders that read addresses can be fuzzed without an engine. */
#include <kumo/transport.h>

#include <string.h>

bool kumo_address_eq(const kumo_address *a, const kumo_address *b)
{
    return a->len == b->len && memcmp(a->bytes, b->bytes, a->len) == 0;
}

int kumo_address_cmp(const kumo_address *a, const kumo_address *b)
{
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->bytes, b->bytes, n);
    if (c)
        return c < 0 ? -1 : 1;
    return a->len < b->len ? -1 : a->len > b->len;
}

size_t kumo_address_encode(const kumo_address *a, uint8_t *out)
{
    size_t n = a->len <= KUMO_ADDRESS_MAX ? a->len : KUMO_ADDRESS_MAX;
    out[0] = (uint8_t)n;
    memcpy(out + 1, a->bytes, n);
    return n + 1;
}

int kumo_address_decode(const uint8_t *in, size_t len, kumo_address *out)
{
    if (len < 1 || in[0] > KUMO_ADDRESS_MAX || len < 1u + in[0])
        return -KUMO_EBADWIRE;
    memset(out, 0, sizeof *out);
    out->len = in[0];
    memcpy(out->bytes, in + 1, in[0]);
    return 1 + in[0];
}
