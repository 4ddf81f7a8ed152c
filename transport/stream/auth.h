/*
 * The stream transports' link authentication: a shared secret (the
 * cookie, as in Erlang distribution) proven by challenge and response, so
 * nothing but a node that knows it gets past a link's handshake, and the
 * cookie itself never crosses the wire.
 *
 *   connector -> acceptor   HELLO: nonce_c (32 random bytes)
 *   acceptor -> connector   HELLO_ACK OK: nonce_a, MAC("kumo-acc")
 *   connector -> acceptor   AUTH: MAC("kumo-con")
 *
 * MAC(label) = HMAC-SHA256 keyed by the cookie over label, nonce_c,
 * nonce_a, the connector's address and the acceptor's address (both as
 * kumo_address_encode writes them).  Each side checks the other's MAC
 * (constant-time) over nonces it did not choose alone, so a recorded
 * handshake cannot be replayed, and the labels keep one side's MAC from
 * being reflected as the other's.  The addresses carry the incarnations,
 * so a handshake is bound to the two endpoints.  Only the handshake is
 * authenticated: like Erlang's, the traffic after it is not encrypted.
 */
#ifndef KUMO_TRANSPORT_STREAM_AUTH_H
#define KUMO_TRANSPORT_STREAM_AUTH_H

#include "transport/stream/wire.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KUMO__COOKIE_MAX 1024
#define KUMO__COOKIE_FILE ".kumo.cookie"

/*
 * The cookie a transport uses: `configured` when not NULL; else the
 * environment's KUMO_COOKIE when set; else the contents of
 * $HOME/.kumo.cookie (trailing white space dropped), which is created
 * with 20 random capital letters and mode 0400 when it does not exist, as
 * Erlang does with ~/.erlang.cookie.  The file must be a regular file of
 * ours that nobody else may read or write.  Returns 0 with a copy in
 * *key / *len (free with kumo__cookie_free), or a negative errno with *why
 * set (also logged by the caller).
 */
int kumo__cookie_resolve(const char *configured, uint8_t **key, size_t *len, const char **why);
void kumo__cookie_free(uint8_t *key, size_t len);

/* 32 random bytes. */
void kumo__auth_nonce(uint8_t out[KUMO__NONCE]);

/* The handshake MAC; `acceptor` selects the label. */
void kumo__auth_mac(const uint8_t *key, size_t klen, bool acceptor,
                    const uint8_t nonce_c[KUMO__NONCE], const uint8_t nonce_a[KUMO__NONCE],
                    const kumo_address *connector, const kumo_address *acceptor_addr,
                    uint8_t out[KUMO__MAC]);

/* Constant-time comparison of two MACs. */
bool kumo__auth_equal(const uint8_t a[KUMO__MAC], const uint8_t b[KUMO__MAC]);

#endif
