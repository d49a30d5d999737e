/* Text forms of addresses and keys as the vector files write them, for the
 * magicsock unit tests: "198.51.100.7:41641", "[2001:db8::7]:41641", a bare
 * address, "nodekey:<hex>" / "discokey:<hex>". A malformed one fails the
 * test. */
#ifndef TSCNI_TESTS_UNIT_WORKER_MAGICSOCK_DISCO_TEXT_H
#define TSCNI_TESTS_UNIT_WORKER_MAGICSOCK_DISCO_TEXT_H

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/vectors.h"
#include "worker/magicsock/disco.h"

/* A bare address, IPv4 stored as ::ffff:a.b.c.d. */
static inline void test_ip(const char *s, struct disco_addr *out)
{
	uint8_t v4[4];

	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, s, v4) == 1) {
		disco_addr_from4(v4, 0, out);
		return;
	}
	if (inet_pton(AF_INET6, s, out->ip) != 1)
		fail_msg("bad address %s", s);
}

static inline void test_addr(const char *s, struct disco_addr *out)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	size_t n;

	if (!colon)
		fail_msg("no port in %s", s);
	n = (size_t)(colon - s);
	if (s[0] == '[') {
		if (n < 2 || s[n - 1] != ']')
			fail_msg("bad bracketed address %s", s);
		s++;
		n -= 2;
	}
	if (n >= sizeof(host))
		fail_msg("address too long %s", s);
	memcpy(host, s, n);
	host[n] = '\0';
	test_ip(host, out);
	out->port = (uint16_t)strtoul(colon + 1, NULL, 10);
}

/* "<prefix>:<64 hex>" into 32 bytes. */
static inline void test_key_text(const char *s, uint8_t out[32])
{
	const char *colon = strchr(s, ':');

	if (!colon || vectors_unhex(colon + 1, out, 32) != 32)
		fail_msg("bad key text %s", s);
}

#endif
