/* STUN as Tailscale speaks it (RFC 5389 subset, docs/tailscale-protocol.md
 * §7.4): the 40-byte binding request tailscaled sends to DERP servers'
 * STUN ports (header, SOFTWARE "tailnode", FINGERPRINT), the parsing of
 * their answers (XOR-MAPPED-ADDRESS, its 0x8020 mistake, plain
 * MAPPED-ADDRESS as a fallback), and the test that tells a STUN packet from
 * disco and WireGuard on the shared UDP socket. Big-endian throughout. No
 * socket, no allocation. The worker's engine and the supervisor's netcheck
 * (docs/tailscale-protocol.md §6.5) both speak it. */
#ifndef TSCNI_COMMON_STUN_H
#define TSCNI_COMMON_STUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An ip:port as a STUN server reports it: 16 address bytes, IPv4 as
 * ::ffff:a.b.c.d (the layout of the worker's struct stun_addr); port in
 * host order. */
struct stun_addr {
	uint8_t ip[16];
	uint16_t port;
};

enum stun_limits {
	STUN_HEADER_LEN = 20,
	STUN_TXID_LEN = 12,
	STUN_REQUEST_LEN = 40,
	/* The longest response stun_response() builds (IPv6). */
	STUN_RESPONSE_MAX = STUN_HEADER_LEN + 4 + 4 + 16,
};

/* Whether b is STUN: a whole header, the two top bits clear and the magic
 * cookie. Says nothing of the rest. */
bool stun_is(const uint8_t *b, size_t len);

/* The binding request for txid (fresh random bytes per request). */
void stun_request(const uint8_t txid[static STUN_TXID_LEN], uint8_t out[static STUN_REQUEST_LEN]);

/* Reads a binding request as a DERP server's STUN port does: it must come
 * from Tailscale (SOFTWARE "tailnode") and end in a correct FINGERPRINT.
 * Returns 0 and fills txid, or -EBADMSG with *why set. */
int stun_parse_binding_request(const uint8_t *b, size_t len, uint8_t txid[static STUN_TXID_LEN],
			       const char **why);

/* Reads a binding success response: the address from XOR-MAPPED-ADDRESS
 * (0x0020, or 0x8020 as some servers send it), else from MAPPED-ADDRESS;
 * an IPv4-mapped IPv6 address is the IPv4 one. Bytes beyond the declared
 * length are ignored. Returns 0, or -EBADMSG with *why set; txid is filled
 * whenever b is STUN at all. */
int stun_parse_response(const uint8_t *b, size_t len, uint8_t txid[static STUN_TXID_LEN],
			struct stun_addr *addr, const char **why);

/* stun_parse_response for the one transaction the caller has in flight:
 * -ESRCH ("STUN response for another transaction") when the answer is
 * someone else's. */
int stun_check_response(const uint8_t *b, size_t len, const uint8_t want[static STUN_TXID_LEN],
			struct stun_addr *addr, const char **why);

/* A server's answer to txid telling the client it was seen at addr (only
 * XOR-MAPPED-ADDRESS), as the DERP servers build it. Returns its length
 * (at most STUN_RESPONSE_MAX). */
size_t stun_response(const uint8_t txid[static STUN_TXID_LEN], const struct stun_addr *addr,
		     uint8_t out[static STUN_RESPONSE_MAX]);

#endif
