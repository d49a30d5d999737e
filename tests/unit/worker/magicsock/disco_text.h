/* Text forms of addresses and keys as the vector files write them, for the
 * magicsock unit tests: "198.51.100.7:41641", "[2001:db8::7]:41641", a bare
 * address, "nodekey:<hex>" / "discokey:<hex>". A malformed one fails the
 * test. */
#ifndef TSCNI_TESTS_UNIT_WORKER_MAGICSOCK_DISCO_TEXT_H
#define TSCNI_TESTS_UNIT_WORKER_MAGICSOCK_DISCO_TEXT_H

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/addr_text.h"
#include "tests/unit/vectors.h"
#include "worker/magicsock/disco.h"

/* A bare address, IPv4 stored as ::ffff:a.b.c.d. */
static inline void test_ip(const char *s, struct disco_addr *out)
{
	memset(out, 0, sizeof(*out));
	text_ip(s, out->ip);
}

static inline void test_addr(const char *s, struct disco_addr *out)
{
	text_ip_port(s, out->ip, &out->port);
}

/* "<prefix>:<64 hex>" into 32 bytes. */
static inline void test_key_text(const char *s, uint8_t out[32])
{
	const char *colon = strchr(s, ':');

	if (!colon || vectors_unhex(colon + 1, out, 32) != 32)
		fail_msg("bad key text %s", s);
}

#endif
