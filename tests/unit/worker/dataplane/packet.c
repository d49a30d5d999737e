/* packet.c: the IPv4/IPv6 parser's bounds and edge cases. Every packet is
 * parsed from an exact-size heap copy so that ASan sees any read past the
 * end; truncations are tried at every length. Upstream's views (proto,
 * parsed text) of the vectors' packets are checked in tests/unit/common/
 * filter.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "worker/dataplane/packet.c"

static int parse_copy(struct packet *p, const uint8_t *b, size_t len, const char **why)
{
	uint8_t *c = malloc(len ? len : 1);
	int ret;

	memcpy(c, b, len);
	ret = packet_parse(p, c, len, why);
	free(c);
	return ret;
}

static void put16(uint8_t *b, uint16_t v)
{
	b[0] = (uint8_t)(v >> 8);
	b[1] = (uint8_t)v;
}

/* IPv4 header with ihl_words * 4 bytes (options zero-filled = EOL) and
 * l4len transport bytes copied from l4. */
static size_t ip4(uint8_t *b, unsigned int ihl_words, uint8_t proto, uint16_t frag,
		  const uint8_t *l4, size_t l4len)
{
	size_t hl = ihl_words * 4;

	memset(b, 0, hl);
	b[0] = (uint8_t)(0x40 | ihl_words);
	put16(b + 2, (uint16_t)(hl + l4len));
	put16(b + 6, frag);
	b[8] = 64;
	b[9] = proto;
	b[12] = 100, b[13] = 64, b[14] = 0, b[15] = 2;
	b[16] = 100, b[17] = 64, b[18] = 0, b[19] = 1;
	memcpy(b + hl, l4, l4len);
	return hl + l4len;
}

/* IPv6 header, then `ext` (already chained by the caller), then l4. */
static size_t ip6(uint8_t *b, uint8_t nh, const uint8_t *ext, size_t extlen, const uint8_t *l4,
		  size_t l4len)
{
	memset(b, 0, 40);
	b[0] = 0x60;
	put16(b + 4, (uint16_t)(extlen + l4len));
	b[6] = nh;
	b[7] = 64;
	b[8] = 0xfd, b[9] = 0x7a, b[23] = 2;
	b[24] = 0xfd, b[25] = 0x7a, b[39] = 1;
	if (extlen)
		memcpy(b + 40, ext, extlen);
	if (l4len)
		memcpy(b + 40 + extlen, l4, l4len);
	return 40 + extlen + l4len;
}

static const uint8_t TCP_SYN[20] = {0x9c, 0x40, 0x00, 0x16, 1,	  2,	3,    4,
				    0,	  0,	0,    0,    0x50, 0x02, 0xfa, 0xf0};
static const uint8_t UDP[12] = {0x13, 0xe9, 0x00, 0x35, 0x00, 0x0c, 0, 0, 'a', 'b', 'c', 'd'};
static const uint8_t ICMP_ECHO[8] = {8, 0, 0, 0, 0, 1, 0, 1};

static void test_ipv4_basic(void **state)
{
	uint8_t b[128];
	struct packet p;
	const char *why;
	char s[128];
	size_t n = ip4(b, 5, PACKET_PROTO_TCP, 0, TCP_SYN, sizeof(TCP_SYN));

	assert_int_equal(parse_copy(&p, b, n, &why), 0);
	assert_int_equal(p.version, 4);
	assert_int_equal(p.proto, PACKET_PROTO_TCP);
	assert_int_equal(p.transport, PACKET_PROTO_TCP);
	assert_int_equal(p.src_port, 40000);
	assert_int_equal(p.dst_port, 22);
	assert_true(packet_is_tcp_syn(&p));
	assert_int_equal(p.l4_off, 20);
	assert_int_equal(p.payload_off, 40);
	assert_string_equal(packet_format(&p, s, sizeof(s)),
			    "TCP{100.64.0.2:40000 > 100.64.0.1:22}");

	/* Trailing bytes after Total Length (WireGuard padding) are ignored. */
	memset(b + n, 0xee, 12);
	assert_int_equal(parse_copy(&p, b, n + 12, &why), 0);
	assert_int_equal(p.len, n);
	assert_int_equal(p.buf_len, n + 12);

	n = ip4(b, 5, PACKET_PROTO_ICMP4, 0, ICMP_ECHO, sizeof(ICMP_ECHO));
	assert_int_equal(parse_copy(&p, b, n, &why), 0);
	assert_int_equal(p.icmp_type, 8);
	assert_true(packet_is_icmp_echo_request(&p));
	assert_false(packet_is_icmp_echo_reply(&p));
	assert_false(packet_is_icmp_error(&p));
	/* 4..7 ICMP bytes: a header, but too short to classify (as upstream). */
	n = ip4(b, 5, PACKET_PROTO_ICMP4, 0, ICMP_ECHO, 4);
	assert_int_equal(parse_copy(&p, b, n, &why), 0);
	assert_false(packet_is_icmp_echo_request(&p));
}

/* Consistent headers (Total Length = what is there) cut at every length:
 * below the transport minimum each must fail cleanly, never read past. */
static void test_ipv4_truncated_everywhere(void **state)
{
	static const struct {
		uint8_t proto;
		const uint8_t *l4;
		size_t len, min;
	} cases[] = {
		{PACKET_PROTO_TCP, TCP_SYN, sizeof(TCP_SYN), 20},
		{PACKET_PROTO_UDP, UDP, sizeof(UDP), 8},
		{PACKET_PROTO_ICMP4, ICMP_ECHO, sizeof(ICMP_ECHO), 4},
	};
	uint8_t b[128];

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		size_t full = ip4(b, 7, cases[c].proto, 0, cases[c].l4, cases[c].len);

		b[20] = 1; /* NOP options */
		b[21] = 1;
		for (size_t cut = 0; cut < full; cut++) {
			struct packet p;
			const char *why = NULL;
			int ret;

			/* Buffer cut only: Total Length now exceeds it. */
			ret = parse_copy(&p, b, cut, &why);
			assert_int_equal(ret, -EBADMSG);
			assert_non_null(why);
			assert_int_equal(p.proto, PACKET_PROTO_UNKNOWN);
			/* Header rewritten to match the cut. */
			if (cut >= 28) {
				uint8_t c2[128];

				memcpy(c2, b, cut);
				put16(c2 + 2, (uint16_t)cut);
				ret = parse_copy(&p, c2, cut, &why);
				if (cut - 28 < cases[c].min) {
					assert_int_equal(ret, -EBADMSG);
					assert_int_equal(p.proto, PACKET_PROTO_UNKNOWN);
				} else {
					assert_int_equal(ret, 0);
					assert_int_equal(p.proto, cases[c].proto);
				}
			}
		}
	}
}

static void test_ipv4_bad_ihl_and_options(void **state)
{
	uint8_t b[128];
	struct packet p;
	const char *why;
	size_t n;

	n = ip4(b, 5, PACKET_PROTO_TCP, 0, TCP_SYN, sizeof(TCP_SYN));
	for (unsigned int ihl = 0; ihl < 5; ihl++) {
		b[0] = (uint8_t)(0x40 | ihl);
		assert_int_equal(parse_copy(&p, b, n, &why), -EBADMSG);
		assert_string_equal(why, "IPv4 header length below 20");
	}
	b[0] = 0x4f; /* 60 bytes of header in a 40-byte packet */
	assert_int_equal(parse_copy(&p, b, n, &why), -EBADMSG);

	/* Options: NOP, NOP, then a 6-byte option, then EOL. */
	n = ip4(b, 8, PACKET_PROTO_UDP, 0, UDP, sizeof(UDP));
	b[20] = 1, b[21] = 1, b[22] = 0x44, b[23] = 6, b[28] = 0;
	assert_int_equal(parse_copy(&p, b, n, &why), 0);
	assert_true(p.flags & PACKET_F_IP4_OPTIONS);
	assert_int_equal(p.l4_off, 32);
	assert_int_equal(p.dst_port, 53);
	/* Option length 0, 1, or past the header. */
	b[23] = 0;
	assert_int_equal(parse_copy(&p, b, n, &why), -EBADMSG);
	b[23] = 1;
	assert_int_equal(parse_copy(&p, b, n, &why), -EBADMSG);
	b[23] = 11;
	assert_int_equal(parse_copy(&p, b, n, &why), -EBADMSG);
	assert_string_equal(why, "malformed IPv4 option");
	/* A kind byte as the very last header byte has no length. */
	memset(b + 20, 1, 12);
	b[31] = 0x44;
	assert_int_equal(parse_copy(&p, b, n, &why), -EBADMSG);
}

static void test_ipv4_fragments(void **state)
{
	uint8_t b[128], junk[32];
	struct packet p;
	const char *why;
	size_t n;

	memset(junk, 'x', sizeof(junk));
	/* First fragment (MF, offset 0): ports are read. */
	n = ip4(b, 5, PACKET_PROTO_UDP, 0x2000, UDP, sizeof(UDP));
	assert_int_equal(parse_copy(&p, b, n, &why), 0);
	assert_int_equal(p.proto, PACKET_PROTO_UDP);
	assert_true(p.flags & PACKET_F_FRAGMENT);
	assert_true(p.flags & PACKET_F_MORE_FRAGMENTS);
	assert_int_equal(p.dst_port, 53);
	/* A first fragment too short for its transport header is invalid. */
	n = ip4(b, 5, PACKET_PROTO_TCP, 0x2000, TCP_SYN, 12);
	assert_int_equal(parse_copy(&p, b, n, &why), -EBADMSG);
	/* Later fragments: no ports, whatever the protocol byte says. */
	for (uint16_t off = 1; off < 40; off++) {
		n = ip4(b, 5, PACKET_PROTO_TCP, off, junk, sizeof(junk));
		if (off < PACKET_MIN_FRAG_BLOCKS) {
			assert_int_equal(parse_copy(&p, b, n, &why), -EBADMSG);
			assert_int_equal(p.proto, PACKET_PROTO_UNKNOWN);
		} else {
			assert_int_equal(parse_copy(&p, b, n, &why), 0);
			assert_int_equal(p.proto, PACKET_PROTO_FRAGMENT);
			assert_int_equal(p.frag_offset, off);
			assert_int_equal(p.src_port, 0);
		}
	}
	/* Fragmented TSMP is refused (as upstream). */
	n = ip4(b, 5, PACKET_PROTO_TSMP, 0x2000, junk, 8);
	assert_int_equal(parse_copy(&p, b, n, &why), -EBADMSG);
	n = ip4(b, 5, PACKET_PROTO_TSMP, 0, junk, 8);
	assert_int_equal(parse_copy(&p, b, n, &why), 0);
	n = ip4(b, 5, PACKET_PROTO_TSMP, 0, junk, 6);
	assert_int_equal(parse_copy(&p, b, n, &why), -EBADMSG);
	/* Protocol 255 is upstream's internal marker, never valid on the wire. */
	n = ip4(b, 5, 255, 0, junk, 8);
	assert_int_equal(parse_copy(&p, b, n, &why), -EBADMSG);
}

/* One extension header of type `type` (8 bytes) with next header nh. */
static size_t ext(uint8_t *b, uint8_t type, uint8_t nh)
{
	memset(b, 0, 8);
	b[0] = nh;
	if (type == PACKET_PROTO_IP6_FRAGMENT)
		return 8; /* offset 0, M = 0 */
	if (type == PACKET_PROTO_AH)
		b[1] = 0; /* (0 + 2) * 4 = 8 bytes */
	if (type != PACKET_PROTO_AH)
		b[2] = 1, b[3] = 4; /* PadN */
	return 8;
}

static void test_ipv6_extension_chain(void **state)
{
	uint8_t e[256], b[512];
	struct packet p;
	const char *why;
	size_t n, el = 0;

	/* Plain UDP. */
	n = ip6(b, PACKET_PROTO_UDP, NULL, 0, UDP, sizeof(UDP));
	assert_int_equal(parse_copy(&p, b, n, &why), 0);
	assert_int_equal(p.version, 6);
	assert_int_equal(p.proto, PACKET_PROTO_UDP);
	assert_int_equal(p.dst_port, 53);

	/* HBH, DSTOPTS, ROUTING, FRAG (first), AH, TCP: the walk reaches TCP;
	 * upstream's view of a hop-by-hop first header is "unknown". */
	el += ext(e + el, 0, PACKET_PROTO_IP6_DSTOPTS);
	el += ext(e + el, PACKET_PROTO_IP6_DSTOPTS, PACKET_PROTO_IP6_ROUTING);
	el += ext(e + el, PACKET_PROTO_IP6_ROUTING, PACKET_PROTO_IP6_FRAGMENT);
	el += ext(e + el, PACKET_PROTO_IP6_FRAGMENT, PACKET_PROTO_AH);
	el += ext(e + el, PACKET_PROTO_AH, PACKET_PROTO_TCP);
	n = ip6(b, 0, e, el, TCP_SYN, sizeof(TCP_SYN));
	assert_int_equal(parse_copy(&p, b, n, &why), 0);
	assert_int_equal(p.transport, PACKET_PROTO_TCP);
	assert_int_equal(p.proto, PACKET_PROTO_UNKNOWN);
	assert_int_equal(p.n_ext, 5);
	assert_int_equal(p.l4_off, 40 + el);
	assert_int_equal(p.dst_port, 22);
	assert_true(p.flags & PACKET_F_IP6_EXT);
	/* Cut at every length: never a read past the end. */
	for (size_t cut = 0; cut < n; cut++) {
		uint8_t c[512];

		memcpy(c, b, cut);
		if (cut >= 40)
			put16(c + 4, (uint16_t)(cut - 40));
		assert_int_equal(parse_copy(&p, c, cut, &why), -EBADMSG);
		assert_int_equal(p.proto, PACKET_PROTO_UNKNOWN);
	}

	/* Destination options then TCP: upstream sees protocol 60. */
	el = ext(e, PACKET_PROTO_IP6_DSTOPTS, PACKET_PROTO_TCP);
	n = ip6(b, PACKET_PROTO_IP6_DSTOPTS, e, el, TCP_SYN, sizeof(TCP_SYN));
	assert_int_equal(parse_copy(&p, b, n, &why), 0);
	assert_int_equal(p.proto, PACKET_PROTO_IP6_DSTOPTS);
	assert_int_equal(p.transport, PACKET_PROTO_TCP);

	/* Fragment header then UDP: upstream steps over it. */
	el = ext(e, PACKET_PROTO_IP6_FRAGMENT, PACKET_PROTO_UDP);
	e[3] = 1; /* M flag */
	n = ip6(b, PACKET_PROTO_IP6_FRAGMENT, e, el, UDP, sizeof(UDP));
	assert_int_equal(parse_copy(&p, b, n, &why), 0);
	assert_int_equal(p.proto, PACKET_PROTO_UDP);
	assert_true(p.flags & PACKET_F_MORE_FRAGMENTS);
	assert_int_equal(p.dst_port, 53);
	/* Later fragment at offset 9 blocks (inside a transport header): invalid;
	 * at 10: passed through as a fragment. */
	put16(e + 2, 9 << 3);
	n = ip6(b, PACKET_PROTO_IP6_FRAGMENT, e, el, UDP, sizeof(UDP));
	assert_int_equal(parse_copy(&p, b, n, &why), -EBADMSG);
	put16(e + 2, 10 << 3);
	n = ip6(b, PACKET_PROTO_IP6_FRAGMENT, e, el, UDP, sizeof(UDP));
	assert_int_equal(parse_copy(&p, b, n, &why), 0);
	assert_int_equal(p.proto, PACKET_PROTO_FRAGMENT);
	assert_int_equal(p.transport, PACKET_PROTO_FRAGMENT);
	assert_int_equal(p.src_port, 0);

	/* A chain of PACKET_MAX_EXT_HDRS destination options is fine; one more
	 * is too long. */
	for (size_t count = PACKET_MAX_EXT_HDRS; count <= PACKET_MAX_EXT_HDRS + 1; count++) {
		el = 0;
		for (size_t i = 0; i < count; i++)
			el += ext(e + el, PACKET_PROTO_IP6_DSTOPTS,
				  i + 1 < count ? PACKET_PROTO_IP6_DSTOPTS : PACKET_PROTO_UDP);
		n = ip6(b, PACKET_PROTO_IP6_DSTOPTS, e, el, UDP, sizeof(UDP));
		if (count == PACKET_MAX_EXT_HDRS) {
			assert_int_equal(parse_copy(&p, b, n, &why), 0);
			assert_int_equal(p.transport, PACKET_PROTO_UDP);
		} else {
			assert_int_equal(parse_copy(&p, b, n, &why), -EBADMSG);
			assert_string_equal(why, "IPv6 extension header chain too long");
			/* The count stays within its bound on refusal too
			 * (fuzz_packet checks it on every input). */
			assert_true(p.n_ext <= PACKET_MAX_EXT_HDRS);
		}
	}

	/* Hop-by-hop anywhere but first; two fragment headers; a header whose
	 * length runs past the packet. */
	el = ext(e, PACKET_PROTO_IP6_DSTOPTS, 0);
	el += ext(e + el, 0, PACKET_PROTO_UDP);
	n = ip6(b, PACKET_PROTO_IP6_DSTOPTS, e, el, UDP, sizeof(UDP));
	assert_int_equal(parse_copy(&p, b, n, &why), -EBADMSG);
	el = ext(e, PACKET_PROTO_IP6_FRAGMENT, PACKET_PROTO_IP6_FRAGMENT);
	el += ext(e + el, PACKET_PROTO_IP6_FRAGMENT, PACKET_PROTO_UDP);
	n = ip6(b, PACKET_PROTO_IP6_FRAGMENT, e, el, UDP, sizeof(UDP));
	assert_int_equal(parse_copy(&p, b, n, &why), -EBADMSG);
	el = ext(e, PACKET_PROTO_IP6_DSTOPTS, PACKET_PROTO_UDP);
	e[1] = 200; /* 1608 bytes */
	n = ip6(b, PACKET_PROTO_IP6_DSTOPTS, e, el, UDP, sizeof(UDP));
	assert_int_equal(parse_copy(&p, b, n, &why), -EBADMSG);
	assert_string_equal(why, "IPv6 extension header beyond the packet");

	/* No next header (59) ends the chain; ESP is opaque. */
	el = ext(e, PACKET_PROTO_IP6_DSTOPTS, PACKET_PROTO_IP6_NONE);
	n = ip6(b, PACKET_PROTO_IP6_DSTOPTS, e, el, NULL, 0);
	assert_int_equal(parse_copy(&p, b, n, &why), 0);
	assert_int_equal(p.transport, PACKET_PROTO_IP6_NONE);
	n = ip6(b, PACKET_PROTO_ESP, NULL, 0, UDP, sizeof(UDP));
	assert_int_equal(parse_copy(&p, b, n, &why), 0);
	assert_int_equal(p.proto, PACKET_PROTO_ESP);
}

static void test_ipv6_lengths_and_icmp(void **state)
{
	static const uint8_t too_big[8] = {2, 0, 0, 0, 0, 0, 5, 0xdc};
	uint8_t b[128];
	struct packet p;
	const char *why;
	char s[160];
	size_t n;

	n = ip6(b, PACKET_PROTO_ICMP6, NULL, 0, too_big, sizeof(too_big));
	assert_int_equal(parse_copy(&p, b, n, &why), 0);
	assert_true(packet_is_icmp_error(&p));
	assert_string_equal(packet_format(&p, s, sizeof(s)), "ICMPv6{[fd7a::2]:0 > [fd7a::1]:0}");
	/* The largest IPv6 packet: 40 + 65535 bytes, past what 16 bits hold. */
	{
		uint8_t *big = calloc(1, 40 + 65535);
		size_t bn = ip6(big, PACKET_PROTO_UDP, NULL, 0, UDP, sizeof(UDP));

		assert_int_equal(bn, 40 + sizeof(UDP));
		put16(big + 4, 65535);
		assert_int_equal(parse_copy(&p, big, 40 + 65535, &why), 0);
		assert_int_equal(p.len, 40 + 65535);
		assert_int_equal(p.dst_port, 53);
		/* One byte short of it. */
		assert_int_equal(parse_copy(&p, big, 40 + 65534, &why), -EBADMSG);
		/* A destination options header filling it all, then nothing. */
		big[6] = PACKET_PROTO_IP6_DSTOPTS;
		big[40] = PACKET_PROTO_UDP;
		big[41] = 255; /* 2048 bytes */
		assert_int_equal(parse_copy(&p, big, 40 + 65535, &why), 0);
		assert_int_equal(p.l4_off, 40 + 2048);
		free(big);
	}
	/* Payload length beyond the buffer; under 40 bytes is not IPv6 at all. */
	put16(b + 4, 100);
	assert_int_equal(parse_copy(&p, b, n, &why), -EBADMSG);
	assert_int_equal(p.version, 6);
	assert_int_equal(parse_copy(&p, b, 39, &why), -EBADMSG);
	assert_int_equal(p.version, 0);
	/* Not IP; empty. */
	b[0] = 0x50;
	assert_int_equal(parse_copy(&p, b, n, &why), -EBADMSG);
	assert_int_equal(p.version, 0);
	assert_string_equal(packet_format(&p, s, sizeof(s)), "Unknown{???}");
	assert_int_equal(parse_copy(&p, b, 0, &why), -EBADMSG);
	assert_int_equal(p.buf_len, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ipv4_basic),
		cmocka_unit_test(test_ipv4_truncated_everywhere),
		cmocka_unit_test(test_ipv4_bad_ihl_and_options),
		cmocka_unit_test(test_ipv4_fragments),
		cmocka_unit_test(test_ipv6_extension_chain),
		cmocka_unit_test(test_ipv6_lengths_and_icmp),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
