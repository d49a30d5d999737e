/* Addresses as the vector files write them: "198.51.100.7:41641",
 * "[2001:db8::7]:41641" or a bare address, into 16 bytes (IPv4 as
 * ::ffff:a.b.c.d, the layout of struct disco_addr and struct stun_addr) and
 * a port. A malformed one fails the test. */
#ifndef TSCNI_TESTS_UNIT_ADDR_TEXT_H
#define TSCNI_TESTS_UNIT_ADDR_TEXT_H

#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline void text_ip(const char *s, uint8_t ip[static 16])
{
	memset(ip, 0, 16);
	if (inet_pton(AF_INET, s, ip + 12) == 1) {
		ip[10] = ip[11] = 0xff;
		return;
	}
	if (inet_pton(AF_INET6, s, ip) != 1)
		fail_msg("bad address %s", s);
}

static inline void text_ip_port(const char *s, uint8_t ip[static 16], uint16_t *port)
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
	text_ip(host, ip);
	*port = (uint16_t)strtoul(colon + 1, NULL, 10);
}

#endif
