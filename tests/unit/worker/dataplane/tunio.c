/* tunio.c: segmentation of TSO/USO super-packets and TCP coalescing, on
 * synthetic packets. Checksums are verified with a reference written here
 * (byte-wise, big-endian words, its own pseudo-header), not tunio's. Frames
 * are segmented from exact-size heap copies so ASan sees any over-read. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "worker/dataplane/tunio.c"

enum { T_ACK = 0x10 };

/* ---- Reference checksum ---- */

static uint32_t ref_sum(uint32_t sum, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		sum += (uint32_t)p[n - 1] << 8;
	return sum;
}

static uint16_t ref_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

/* Sum of the pseudo-header for the packet ip (v4 or v6) with an upper layer
 * of l4len bytes, built byte by byte as RFC 793 / RFC 8200 draw it. */
static uint32_t ref_pseudo(const uint8_t *ip, uint8_t proto, uint32_t l4len)
{
	uint8_t ph[40];
	size_t n;

	if ((ip[0] >> 4) == 4) {
		memcpy(ph, ip + 12, 8);
		ph[8] = 0;
		ph[9] = proto;
		ph[10] = (uint8_t)(l4len >> 8);
		ph[11] = (uint8_t)l4len;
		n = 12;
	} else {
		memcpy(ph, ip + 8, 32);
		ph[32] = (uint8_t)(l4len >> 24);
		ph[33] = (uint8_t)(l4len >> 16);
		ph[34] = (uint8_t)(l4len >> 8);
		ph[35] = (uint8_t)l4len;
		ph[36] = ph[37] = ph[38] = 0;
		ph[39] = proto;
		n = 40;
	}
	return ref_sum(0, ph, n);
}

static size_t ip_hl(const uint8_t *ip)
{
	return (ip[0] >> 4) == 4 ? (size_t)(ip[0] & 15) * 4 : 40;
}

static size_t ip_total(const uint8_t *ip)
{
	return (ip[0] >> 4) == 4 ? (size_t)(ip[2] << 8 | ip[3]) : 40 + (size_t)(ip[4] << 8 | ip[5]);
}

/* True when the IPv4 header checksum (if v4) and the TCP/UDP checksum of
 * the packet are right. */
static bool ref_valid(const uint8_t *ip)
{
	size_t hl = ip_hl(ip), tot = ip_total(ip);
	uint8_t proto = (ip[0] >> 4) == 4 ? ip[9] : ip[6];

	if ((ip[0] >> 4) == 4 && ref_fold(ref_sum(0, ip, hl)) != 0xffff)
		return false;
	if (proto == 17 && ip[hl + 6] == 0 && ip[hl + 7] == 0)
		return false; /* we always produce a UDP checksum */
	return ref_fold(ref_sum(ref_pseudo(ip, proto, (uint32_t)(tot - hl)), ip + hl, tot - hl)) ==
	       0xffff;
}

static void ref_fill_csum(uint8_t *ip)
{
	size_t hl = ip_hl(ip), tot = ip_total(ip);
	uint8_t proto = (ip[0] >> 4) == 4 ? ip[9] : ip[6];
	size_t co = proto == 6 ? 16 : 6;
	uint16_t c;

	if ((ip[0] >> 4) == 4) {
		ip[10] = ip[11] = 0;
		c = (uint16_t)~ref_fold(ref_sum(0, ip, hl));
		ip[10] = (uint8_t)(c >> 8);
		ip[11] = (uint8_t)c;
	}
	ip[hl + co] = ip[hl + co + 1] = 0;
	c = (uint16_t)~ref_fold(
		ref_sum(ref_pseudo(ip, proto, (uint32_t)(tot - hl)), ip + hl, tot - hl));
	if (c == 0 && proto == 17)
		c = 0xffff;
	ip[hl + co] = (uint8_t)(c >> 8);
	ip[hl + co + 1] = (uint8_t)c;
}

/* ---- Packet builders ---- */

struct tcp_spec {
	int ver;
	uint16_t sport, dport;
	uint32_t seq, ack;
	uint8_t flags;
	uint16_t ipid;
	uint8_t ttl;
	size_t optlen; /* multiple of 4, filled with NOP NOP TS-like bytes */
	const uint8_t *payload;
	size_t plen;
};

static uint8_t pattern[70000];

static void init_pattern(void)
{
	uint32_t x = 12345;

	for (size_t i = 0; i < sizeof(pattern); i++) {
		x = x * 1103515245 + 12345;
		pattern[i] = (uint8_t)(x >> 16);
	}
}

/* Writes the IP + TCP headers for s with total length tot (for super-packets
 * tot may exceed what is written). Returns the header length. */
static size_t tcp_headers(uint8_t *b, const struct tcp_spec *s, size_t tot)
{
	size_t hl = s->ver == 4 ? 20 : 40, thl = 20 + s->optlen;
	uint8_t *th = b + hl;

	memset(b, 0, hl + thl);
	if (s->ver == 4) {
		b[0] = 0x45;
		b[2] = (uint8_t)(tot >> 8);
		b[3] = (uint8_t)tot;
		b[4] = (uint8_t)(s->ipid >> 8);
		b[5] = (uint8_t)s->ipid;
		b[6] = 0x40; /* DF */
		b[8] = s->ttl ? s->ttl : 64;
		b[9] = 6;
		memcpy(b + 12, "\x0a\x00\x00\x01\x0a\x00\x00\x02", 8);
	} else {
		b[0] = 0x60;
		b[4] = (uint8_t)((tot - 40) >> 8);
		b[5] = (uint8_t)(tot - 40);
		b[6] = 6;
		b[7] = s->ttl ? s->ttl : 64;
		memcpy(b + 8, "\xfd\x00\0\0\0\0\0\0\0\0\0\0\0\0\0\x01", 16);
		memcpy(b + 24, "\xfd\x00\0\0\0\0\0\0\0\0\0\0\0\0\0\x02", 16);
	}
	th[0] = (uint8_t)(s->sport >> 8);
	th[1] = (uint8_t)s->sport;
	th[2] = (uint8_t)(s->dport >> 8);
	th[3] = (uint8_t)s->dport;
	put32(th + 4, s->seq);
	put32(th + 8, s->ack);
	th[12] = (uint8_t)((thl / 4) << 4);
	th[13] = s->flags;
	th[14] = 0xff; /* window */
	th[15] = 0x00;
	for (size_t i = 0; i < s->optlen; i++)
		th[20 + i] = i < 2 ? 1 : (uint8_t)(0x30 + i);
	return hl + thl;
}

/* A complete TCP packet with valid checksums. Returns its length. */
static size_t build_tcp(uint8_t *b, const struct tcp_spec *s)
{
	size_t hl = tcp_headers(b, s, 0);
	size_t tot = hl + s->plen;

	tcp_headers(b, s, tot);
	memcpy(b + hl, s->payload, s->plen);
	ref_fill_csum(b);
	return tot;
}

/* A TSO frame as the kernel hands it over: vnet header, headers with the
 * pseudo-header sum in the TCP checksum, the whole payload. */
static size_t build_tso_frame(uint8_t *f, const struct tcp_spec *s, uint16_t gso_size)
{
	uint8_t *ip = f + TUNIO_VNET_HDR_LEN;
	size_t hl = tcp_headers(ip, s, 0), tot = hl + s->plen, iphl = s->ver == 4 ? 20 : 40;
	struct tunio_vnet_hdr h = {
		.flags = TUNIO_VNET_F_NEEDS_CSUM,
		.gso_type = s->ver == 4 ? TUNIO_VNET_GSO_TCPV4 : TUNIO_VNET_GSO_TCPV6,
		.hdr_len = (uint16_t)hl,
		.gso_size = gso_size,
		.csum_start = (uint16_t)iphl,
		.csum_offset = 16,
	};
	uint16_t ps;

	tcp_headers(ip, s, tot);
	memcpy(ip + hl, s->payload, s->plen);
	if (s->ver == 4) {
		ip[10] = ip[11] = 0;
		ps = (uint16_t)~ref_fold(ref_sum(0, ip, 20));
		ip[10] = (uint8_t)(ps >> 8);
		ip[11] = (uint8_t)ps;
	}
	ps = ref_fold(ref_pseudo(ip, 6, (uint32_t)(tot - iphl)));
	ip[iphl + 16] = (uint8_t)(ps >> 8);
	ip[iphl + 17] = (uint8_t)ps;
	memcpy(f, &h, sizeof(h));
	return TUNIO_VNET_HDR_LEN + tot;
}

/* A UDP packet (or a USO super-packet: pseudo sum only) of plen payload. */
static size_t build_udp(uint8_t *b, int ver, size_t plen, bool partial)
{
	size_t hl = ver == 4 ? 20 : 40, tot = hl + 8 + plen;
	uint8_t *uh = b + hl;

	memset(b, 0, hl + 8);
	if (ver == 4) {
		b[0] = 0x45;
		put16(b + 2, (uint16_t)tot);
		put16(b + 4, 0x1234);
		b[8] = 64;
		b[9] = 17;
		memcpy(b + 12, "\x0a\x00\x00\x01\x0a\x00\x00\x02", 8);
		ref_fill_csum(b); /* IPv4 header; UDP fixed below */
	} else {
		b[0] = 0x60;
		put16(b + 4, (uint16_t)(tot - 40));
		b[6] = 17;
		b[7] = 64;
		memcpy(b + 8, "\xfd\x00\0\0\0\0\0\0\0\0\0\0\0\0\0\x01", 16);
		memcpy(b + 24, "\xfd\x00\0\0\0\0\0\0\0\0\0\0\0\0\0\x02", 16);
	}
	put16(uh, 51820);
	put16(uh + 2, 41641);
	put16(uh + 4, (uint16_t)(8 + plen));
	memcpy(uh + 8, pattern, plen);
	if (partial) {
		uint16_t ps = ref_fold(ref_pseudo(b, 17, (uint32_t)(8 + plen)));

		uh[6] = (uint8_t)(ps >> 8);
		uh[7] = (uint8_t)ps;
	} else {
		ref_fill_csum(b);
	}
	return tot;
}

/* ---- Batches ---- */

static uint8_t bufs[2][PKTBUF_BATCH_MAX][PKTBUF_SIZE];

static void batch_init(struct pktbuf_batch *b, int which, unsigned cap)
{
	memset(b, 0, sizeof(*b));
	b->cap = cap;
	for (unsigned i = 0; i < PKTBUF_BATCH_MAX; i++) {
		b->pkt[i].head = bufs[which][i];
		b->pkt[i].size = PKTBUF_SIZE;
		b->pkt[i].off = PKTBUF_HEADROOM;
	}
}

static void batch_add(struct pktbuf_batch *b, const uint8_t *pkt, size_t len)
{
	struct pktbuf *p = &b->pkt[b->n++];

	assert_true(len <= pktbuf_room(p));
	memcpy(pktbuf_data(p), pkt, len);
	p->len = (uint32_t)len;
}

/* tunio_segment() on an exact-size heap copy. */
static int segment_copy(const uint8_t *f, size_t len, unsigned *next, struct pktbuf_batch *b,
			const char **why)
{
	uint8_t *c = malloc(len ? len : 1);
	int r;

	memcpy(c, f, len);
	r = tunio_segment(c, len, next, b, why);
	free(c);
	return r;
}

static uint8_t frame[TUNIO_FRAME_MAX + 16];

/* ---- Segmentation ---- */

static void check_tso(int ver, size_t optlen)
{
	struct tcp_spec s = {.ver = ver,
			     .sport = 40000,
			     .dport = 5201,
			     .seq = 0xfffff000,
			     .ack = 777,
			     .flags = T_ACK | TCP_PSH | TCP_CWR,
			     .ipid = 0xfffe,
			     .optlen = optlen,
			     .payload = pattern,
			     .plen = 10000};
	struct pktbuf_batch b;
	const char *why = NULL;
	unsigned next = 0;
	size_t len = build_tso_frame(frame, &s, 1240), hl = (ver == 4 ? 20 : 40) + 20 + optlen;

	batch_init(&b, 0, PKTBUF_BATCH_MAX);
	assert_int_equal(segment_copy(frame, len, &next, &b, &why), 1);
	assert_int_equal(b.n, 9); /* ceil(10000 / 1240) */
	assert_int_equal(next, 9);
	for (unsigned i = 0; i < b.n; i++) {
		const uint8_t *ip = pktbuf_data(&b.pkt[i]);
		size_t chunk = i < 8 ? 1240 : 10000 - 8 * 1240;
		const uint8_t *th = ip + (ver == 4 ? 20 : 40);

		assert_int_equal(b.pkt[i].len, hl + chunk);
		assert_int_equal(ip_total(ip), hl + chunk);
		assert_true(ref_valid(ip));
		if (ver == 4)
			assert_int_equal(get16(ip + 4), (uint16_t)(0xfffe + i));     /* wraps */
		assert_int_equal(get32(th + 4), (uint32_t)(0xfffff000u + i * 1240)); /* wraps */
		assert_int_equal(get32(th + 8), 777);
		assert_int_equal(th[13] & TCP_CWR, i == 0 ? TCP_CWR : 0);
		assert_int_equal(th[13] & TCP_PSH, i == 8 ? TCP_PSH : 0);
		assert_int_equal(th[13] & T_ACK, T_ACK);
		assert_memory_equal(th + 20, frame + TUNIO_VNET_HDR_LEN + (ver == 4 ? 40 : 60),
				    optlen);
		assert_memory_equal(ip + hl, pattern + i * 1240, chunk);
	}
}

static void test_tso4(void **state)
{
	(void)state;
	check_tso(4, 0);
	check_tso(4, 12);
}

static void test_tso6(void **state)
{
	(void)state;
	check_tso(6, 0);
	check_tso(6, 12);
}

static void test_uso(void **state)
{
	(void)state;
	for (int ver = 4; ver <= 6; ver += 2) {
		struct tunio_vnet_hdr h = {.flags = TUNIO_VNET_F_NEEDS_CSUM,
					   .gso_type = TUNIO_VNET_GSO_UDP_L4,
					   .gso_size = 1200,
					   .csum_start = ver == 4 ? 20 : 40,
					   .csum_offset = 6};
		size_t len =
			TUNIO_VNET_HDR_LEN + build_udp(frame + TUNIO_VNET_HDR_LEN, ver, 5000, true);
		struct pktbuf_batch b;
		const char *why = NULL;
		unsigned next = 0;

		memcpy(frame, &h, sizeof(h));
		batch_init(&b, 0, PKTBUF_BATCH_MAX);
		assert_int_equal(segment_copy(frame, len, &next, &b, &why), 1);
		assert_int_equal(b.n, 5);
		for (unsigned i = 0; i < b.n; i++) {
			const uint8_t *ip = pktbuf_data(&b.pkt[i]);
			size_t hl = ver == 4 ? 20 : 40, chunk = i < 4 ? 1200 : 200;

			assert_int_equal(b.pkt[i].len, hl + 8 + chunk);
			assert_int_equal(get16(ip + hl + 4), 8 + chunk);
			assert_true(ref_valid(ip));
			assert_memory_equal(ip + hl + 8, pattern + i * 1200, chunk);
		}
	}
}

static void test_needs_csum_single(void **state)
{
	(void)state;
	/* A single TCP packet and a single UDP datagram with partial sums. */
	struct tcp_spec s = {.ver = 6,
			     .sport = 1,
			     .dport = 2,
			     .seq = 5,
			     .flags = T_ACK,
			     .payload = pattern,
			     .plen = 999};
	size_t len = build_tso_frame(frame, &s, 0);
	struct tunio_vnet_hdr h;
	struct pktbuf_batch b;
	const char *why = NULL;
	unsigned next = 0;

	memcpy(&h, frame, sizeof(h));
	h.gso_type = TUNIO_VNET_GSO_NONE;
	memcpy(frame, &h, sizeof(h));
	batch_init(&b, 0, PKTBUF_BATCH_MAX);
	assert_false(ref_valid(frame + TUNIO_VNET_HDR_LEN));
	assert_int_equal(segment_copy(frame, len, &next, &b, &why), 1);
	assert_int_equal(b.n, 1);
	assert_int_equal(b.pkt[0].len, len - TUNIO_VNET_HDR_LEN);
	assert_true(ref_valid(pktbuf_data(&b.pkt[0])));

	h = (struct tunio_vnet_hdr){
		.flags = TUNIO_VNET_F_NEEDS_CSUM, .csum_start = 20, .csum_offset = 6};
	len = TUNIO_VNET_HDR_LEN + build_udp(frame + TUNIO_VNET_HDR_LEN, 4, 333, true);
	memcpy(frame, &h, sizeof(h));
	next = 0;
	assert_int_equal(segment_copy(frame, len, &next, &b, &why), 1);
	assert_int_equal(b.n, 2);
	assert_true(ref_valid(pktbuf_data(&b.pkt[1])));

	/* Without NEEDS_CSUM the packet is passed on untouched. */
	h.flags = 0;
	memcpy(frame, &h, sizeof(h));
	next = 0;
	assert_int_equal(segment_copy(frame, len, &next, &b, &why), 1);
	assert_int_equal(b.n, 3);
	assert_memory_equal(pktbuf_data(&b.pkt[2]), frame + TUNIO_VNET_HDR_LEN,
			    len - TUNIO_VNET_HDR_LEN);
}

/* The checksum over every payload length from 0 to 300 and a few near the
 * MTU, with bytes of all ones (the most carries), zeros and the pseudo-random
 * pattern, for TCP over v4 and v6: each segment's checksum as the RFC 1071
 * reference computes it. */
static void test_csum_lengths(void **state)
{
	static uint8_t ones[2000], zeros[2000];
	const uint8_t *payloads[] = {ones, zeros, pattern};
	static const size_t big[] = {1199, 1200, 1201, 1227, 1228, 1229, 1239, 1240, 1999};

	(void)state;
	memset(ones, 0xff, sizeof(ones));
	for (int ver = 4; ver <= 6; ver += 2) {
		for (size_t k = 0; k < sizeof(payloads) / sizeof(payloads[0]); k++) {
			for (size_t plen = 0; plen <= 300 + sizeof(big) / sizeof(big[0]); plen++) {
				size_t n = plen <= 300 ? plen : big[plen - 301];
				struct tcp_spec s = {.ver = ver,
						     .sport = 0xffff,
						     .dport = 0xffff,
						     .seq = 0xffffffffu,
						     .ack = 0xffffffffu,
						     .flags = T_ACK,
						     .payload = payloads[k],
						     .plen = n};
				struct pktbuf_batch b;
				const char *why = NULL;
				unsigned next = 0;
				/* Segments of 1000: lengths over it are cut. */
				size_t len = build_tso_frame(frame, &s, n > 1000 ? 1000 : 0);

				if (n <= 1000) {
					struct tunio_vnet_hdr h;

					memcpy(&h, frame, sizeof(h));
					h.gso_type = TUNIO_VNET_GSO_NONE;
					memcpy(frame, &h, sizeof(h));
				}
				batch_init(&b, 0, PKTBUF_BATCH_MAX);
				assert_int_equal(segment_copy(frame, len, &next, &b, &why), 1);
				assert_int_equal(b.n, n > 1000 ? 2 : 1);
				for (unsigned i = 0; i < b.n; i++)
					assert_true(ref_valid(pktbuf_data(&b.pkt[i])));
			}
		}
	}
}

/* A super-packet larger than the batch continues where it stopped. */
static void test_segment_resume(void **state)
{
	struct tcp_spec s = {.ver = 4,
			     .sport = 9,
			     .dport = 10,
			     .seq = 1,
			     .flags = T_ACK | TCP_FIN,
			     .payload = pattern,
			     .plen = 65535 - 40};
	size_t len = build_tso_frame(frame, &s, 1000);
	unsigned next = 0, total = 0, calls = 0;
	struct pktbuf_batch b;
	const char *why = NULL;
	int r;

	(void)state;
	do {
		batch_init(&b, 0, 16);
		b.n = 3; /* a partly filled batch */
		r = segment_copy(frame, len, &next, &b, &why);
		assert_true(r == 0 || r == 1);
		for (unsigned i = 3; i < b.n; i++) {
			const uint8_t *ip = pktbuf_data(&b.pkt[i]);

			assert_true(ref_valid(ip));
			assert_int_equal(get32(ip + 24), 1 + total * 1000);
			assert_memory_equal(ip + 40, pattern + total * 1000, ip_total(ip) - 40);
			/* FIN only on the very last segment. */
			assert_int_equal(ip[33] & TCP_FIN, r == 1 && i + 1 == b.n ? TCP_FIN : 0);
			total++;
		}
		calls++;
	} while (r == 0);
	assert_int_equal(total, 66); /* ceil(65495 / 1000) */
	assert_int_equal(calls, 6);  /* 13 per call */
}

/* Malformed frames are refused with a reason; truncation anywhere is safe. */
static void test_segment_bad(void **state)
{
	struct tcp_spec s = {
		.ver = 4, .sport = 1, .dport = 2, .flags = T_ACK, .payload = pattern, .plen = 3000};
	struct pktbuf_batch b;
	const char *why;
	unsigned next;
	size_t len;
	static const struct {
		size_t off; /* byte to change */
		uint8_t val;
		int ret;
	} cases[] = {
		{1, TUNIO_VNET_GSO_UDP, -EBADMSG},    /* UFO */
		{1, 2, -EBADMSG},		      /* unknown type */
		{1, TUNIO_VNET_GSO_TCPV6, -EBADMSG},  /* v4 packet */
		{1, TUNIO_VNET_GSO_UDP_L4, -EBADMSG}, /* protocol is TCP */
		{4, 0, -EBADMSG},		      /* gso_size 0 (LE low) */
		{10, 0x44, -EBADMSG},		      /* IHL 4 */
		{10, 0x55, -EBADMSG},		      /* version 5 */
		{16, 0x20, -EBADMSG},		      /* MF set */
		{19, 17, -EBADMSG},		      /* protocol UDP */
		{10 + 20 + 12, 0x40, -EBADMSG},	      /* TCP doff 4 */
		{4, 1, -EBADMSG},		      /* 1-byte segments: too many */
	};

	(void)state;
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		len = build_tso_frame(frame, &s, 1000);
		if (cases[c].off == 4) {
			frame[4] = cases[c].val;
			frame[5] = 0;
		} else {
			frame[cases[c].off] = cases[c].val;
		}
		batch_init(&b, 0, PKTBUF_BATCH_MAX);
		next = 0;
		why = NULL;
		assert_int_equal(segment_copy(frame, len, &next, &b, &why), cases[c].ret);
		assert_non_null(why);
		assert_int_equal(b.n, 0);
	}
	/* A segment that does not fit the buffer. */
	len = build_tso_frame(frame, &s, 2000);
	batch_init(&b, 0, PKTBUF_BATCH_MAX);
	next = 0;
	assert_int_equal(segment_copy(frame, len, &next, &b, &why), -EMSGSIZE);
	assert_int_equal(b.n, 0);
	/* Header only, no payload. */
	s.plen = 0;
	len = build_tso_frame(frame, &s, 1000);
	next = 0;
	assert_int_equal(segment_copy(frame, len, &next, &b, &why), -EBADMSG);
	/* Partial checksum pointing outside the packet. */
	struct tunio_vnet_hdr h = {
		.flags = TUNIO_VNET_F_NEEDS_CSUM, .csum_start = 20, .csum_offset = 40};

	len = TUNIO_VNET_HDR_LEN + build_udp(frame + TUNIO_VNET_HDR_LEN, 4, 30, true);
	memcpy(frame, &h, sizeof(h));
	next = 0;
	assert_int_equal(segment_copy(frame, len, &next, &b, &why), -EBADMSG);
	/* Every truncation of a valid frame: no over-read, a clear answer. */
	s.plen = 3000;
	len = build_tso_frame(frame, &s, 1000);
	for (size_t l = 0; l < len; l++) {
		batch_init(&b, 0, PKTBUF_BATCH_MAX);
		next = 0;
		int r = segment_copy(frame, l, &next, &b, &why);

		assert_true(r == -EBADMSG || r == 1);
		if (r == 1) /* cut in the payload: fewer bytes, still valid */
			for (unsigned i = 0; i < b.n; i++)
				assert_true(ref_valid(pktbuf_data(&b.pkt[i])));
	}
	assert_int_equal(segment_copy(frame, TUNIO_FRAME_MAX + 1, &next, &b, &why), -EBADMSG);
}

/* ---- Coalescing ---- */

static uint8_t pkt[PKTBUF_SIZE];

/* Adds a TCP packet of flow (sport) with payload bytes from the pattern at
 * offset seq. */
static void add_tcp(struct pktbuf_batch *b, int ver, uint16_t sport, uint32_t seq, size_t plen,
		    uint8_t flags)
{
	struct tcp_spec s = {.ver = ver,
			     .sport = sport,
			     .dport = 443,
			     .seq = seq,
			     .ack = 99,
			     .flags = flags,
			     .ipid = (uint16_t)(seq / 1000),
			     .optlen = 12,
			     .payload = pattern + seq % 4096,
			     .plen = plen};

	batch_add(b, pkt, build_tcp(pkt, &s));
}

/* Renders frame i into buf. */
static size_t render(const struct tunio_plan *pl, const struct pktbuf_batch *b, unsigned i,
		     uint8_t *buf)
{
	uint8_t hdr[TUNIO_FRAME_HDR_MAX];
	struct iovec iov[PKTBUF_BATCH_MAX + 1];
	unsigned n = tunio_plan_frame(pl, b, i, true, hdr, iov);
	size_t len = 0;

	for (unsigned k = 0; k < n; k++) {
		assert_true(len + iov[k].iov_len <= TUNIO_FRAME_MAX);
		memcpy(buf + len, iov[k].iov_base, iov[k].iov_len);
		len += iov[k].iov_len;
	}
	return len;
}

/* Each frame, segmented again, gives back exactly its member packets. */
static void check_roundtrip(const struct tunio_plan *pl, const struct pktbuf_batch *b)
{
	unsigned seen = 0;

	for (unsigned i = 0; i < pl->n; i++) {
		struct pktbuf_batch out;
		const char *why = NULL;
		unsigned next = 0, k = 0;
		size_t len;

		if (!pl->leader[i])
			continue;
		len = render(pl, b, i, frame);
		batch_init(&out, 1, PKTBUF_BATCH_MAX);
		assert_int_equal(segment_copy(frame, len, &next, &out, &why), 1);
		assert_int_equal(out.n, pl->count[i]);
		for (int j = (int)i; j >= 0; j = pl->next[j], k++) {
			const uint8_t *o = pktbuf_data(&out.pkt[k]);
			uint8_t x[PKTBUF_SIZE], y[PKTBUF_SIZE];

			assert_int_equal(out.pkt[k].len, ip_total(pktbuf_data(&b->pkt[j])));
			if (pl->count[i] > 1) /* a single packet passes as it is */
				assert_true(ref_valid(o));
			memcpy(x, o, out.pkt[k].len);
			memcpy(y, pktbuf_data(&b->pkt[j]), out.pkt[k].len);
			if ((x[0] >> 4) == 4) {
				/* Segments number their IP IDs from the first. */
				assert_int_equal(get16(x + 4), (uint16_t)(get16(frame + 14) + k));
				memset(x + 4, 0, 2);
				memset(y + 4, 0, 2);
				memset(x + 10, 0, 2);
				memset(y + 10, 0, 2);
			}
			assert_memory_equal(x, y, out.pkt[k].len);
		}
		assert_int_equal(k, pl->count[i]);
		seen += k;
	}
	assert_int_equal(seen, pl->n);
}

static void test_coalesce_run(void **state)
{
	(void)state;
	for (int ver = 4; ver <= 6; ver += 2) {
		struct pktbuf_batch b;
		struct tunio_plan pl;
		struct tunio_vnet_hdr h;
		uint32_t seq = 1000;

		batch_init(&b, 0, PKTBUF_BATCH_MAX);
		for (int i = 0; i < 10; i++, seq += 1200)
			add_tcp(&b, ver, 7000, seq, 1200, T_ACK);
		add_tcp(&b, ver, 7000, seq, 500, T_ACK | TCP_PSH);
		tunio_plan_build(&pl, &b);
		assert_int_equal(pl.leader[0], 1);
		assert_int_equal(pl.count[0], 11);
		for (int i = 1; i < 11; i++)
			assert_int_equal(pl.leader[i], 0);

		size_t len = render(&pl, &b, 0, frame), iphl = ver == 4 ? 20 : 40;
		const uint8_t *ip = frame + TUNIO_VNET_HDR_LEN;

		memcpy(&h, frame, sizeof(h));
		assert_int_equal(h.flags, TUNIO_VNET_F_NEEDS_CSUM);
		assert_int_equal(h.gso_type,
				 ver == 4 ? TUNIO_VNET_GSO_TCPV4 : TUNIO_VNET_GSO_TCPV6);
		assert_int_equal(h.gso_size, 1200);
		assert_int_equal(h.hdr_len, iphl + 32);
		assert_int_equal(h.csum_start, iphl);
		assert_int_equal(h.csum_offset, 16);
		assert_int_equal(len, TUNIO_VNET_HDR_LEN + iphl + 32 + 12500);
		assert_int_equal(ip_total(ip), iphl + 32 + 12500);
		assert_int_equal(ip[iphl + 13], T_ACK | TCP_PSH);
		if (ver == 4)
			assert_int_equal(ref_fold(ref_sum(0, ip, 20)), 0xffff);
		/* The TCP field holds the pseudo-header sum, not complemented. */
		assert_int_equal(get16(ip + iphl + 16),
				 ref_fold(ref_pseudo(ip, 6, (uint32_t)(32 + 12500))));
		check_roundtrip(&pl, &b);
	}
}

/* One rule per case: after 3 in-order segments of 1000 bytes of flow 7000
 * comes packet 3; does it join the frame of packet 0? */
static void test_coalesce_rules(void **state)
{
	enum { SEQ3 = 3000 };
	static const struct {
		const char *what;
		uint16_t sport;
		uint32_t seq;
		size_t plen;
		uint8_t flags;
		int mangle; /* 1 bad csum, 2 other ack, 3 other ttl, 4 other option */
		bool joins;
		bool four_joins; /* packet 4 (seq 4000, 1000 bytes) joins a frame */
	} cases[] = {
		{"next in order", 7000, SEQ3, 1000, T_ACK, 0, true, true},
		{"shorter, ends the frame", 7000, SEQ3, 10, T_ACK, 0, true, false},
		{"with PSH, ends the frame", 7000, SEQ3, 1000, T_ACK | TCP_PSH, 0, true, false},
		{"with FIN", 7000, SEQ3, 1000, T_ACK | TCP_FIN, 0, true, false},
		{"larger than mss", 7000, SEQ3, 1001, T_ACK, 0, false, false},
		{"a gap", 7000, SEQ3 + 1, 1000, T_ACK, 0, false, false},
		{"a retransmission", 7000, SEQ3 - 1000, 1000, T_ACK, 0, false, false},
		{"other flow", 7001, SEQ3, 1000, T_ACK, 0, false, false},
		{"pure ACK", 7000, SEQ3, 0, T_ACK, 0, false, false},
		/* As GRO: CWR starts a new frame, which later segments join. */
		{"CWR after the first", 7000, SEQ3, 1000, T_ACK | TCP_CWR, 0, false, true},
		{"URG", 7000, SEQ3, 1000, T_ACK | TCP_URG, 0, false, false},
		{"RST", 7000, SEQ3, 1000, T_ACK | TCP_RST, 0, false, false},
		{"SYN", 7000, SEQ3, 1000, T_ACK | TCP_SYN, 0, false, false},
		{"bad checksum", 7000, SEQ3, 1000, T_ACK, 1, false, false},
		{"other ack", 7000, SEQ3, 1000, T_ACK, 2, false, false},
		{"other TTL", 7000, SEQ3, 1000, T_ACK, 3, false, false},
		{"other TCP option", 7000, SEQ3, 1000, T_ACK, 4, false, false},
	};

	(void)state;
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		for (int ver = 4; ver <= 6; ver += 2) {
			struct pktbuf_batch b;
			struct tunio_plan pl;

			batch_init(&b, 0, PKTBUF_BATCH_MAX);
			for (uint32_t s = 0; s < 3000; s += 1000)
				add_tcp(&b, ver, 7000, s, 1000, T_ACK);
			add_tcp(&b, ver, cases[c].sport, cases[c].seq, cases[c].plen,
				cases[c].flags);
			uint8_t *ip = pktbuf_data(&b.pkt[3]);
			size_t iphl = ver == 4 ? 20 : 40;

			switch (cases[c].mangle) {
			case 1:
				ip[b.pkt[3].len - 1] ^= 1;
				break;
			case 2:
				ip[iphl + 11] ^= 1;
				ref_fill_csum(ip);
				break;
			case 3:
				ip[ver == 4 ? 8 : 7]--;
				ref_fill_csum(ip);
				break;
			case 4:
				ip[iphl + 31] ^= 1;
				ref_fill_csum(ip);
				break;
			}
			/* A packet after it that would follow the frame in order. */
			add_tcp(&b, ver, 7000, SEQ3 + 1000, 1000, T_ACK);
			tunio_plan_build(&pl, &b);
			if (cases[c].joins != !pl.leader[3] || cases[c].four_joins != !pl.leader[4])
				fail_msg("case %zu (%s, v%d): leaders %d %d", c, cases[c].what, ver,
					 pl.leader[3], pl.leader[4]);
			assert_int_equal(pl.count[0],
					 3 + cases[c].joins +
						 (cases[c].joins && cases[c].four_joins));
			check_roundtrip(&pl, &b);
		}
	}
}

/* Two interleaved flows each make one frame; a third frame starts when the
 * 64 KiB limit is reached. */
static void test_coalesce_flows_and_limit(void **state)
{
	struct pktbuf_batch b;
	struct tunio_plan pl;

	(void)state;
	batch_init(&b, 0, PKTBUF_BATCH_MAX);
	for (uint32_t s = 0; s < 20 * 1000; s += 1000) {
		add_tcp(&b, 4, 1111, s, 1000, T_ACK);
		add_tcp(&b, 6, 2222, s, 1000, T_ACK);
	}
	tunio_plan_build(&pl, &b);
	assert_int_equal(pl.count[0], 20);
	assert_int_equal(pl.count[1], 20);
	for (unsigned i = 2; i < b.n; i++)
		assert_int_equal(pl.leader[i], 0);
	check_roundtrip(&pl, &b);

	/* 1400-byte segments: 46 fit (52 + 46 * 1400 = 64452), the 47th not. */
	batch_init(&b, 0, PKTBUF_BATCH_MAX);
	for (uint32_t s = 0; s < 60 * 1400; s += 1400)
		add_tcp(&b, 4, 1111, s, 1400, T_ACK);
	tunio_plan_build(&pl, &b);
	assert_int_equal(pl.count[0], 46);
	assert_int_equal(pl.leader[46], 1);
	assert_int_equal(pl.count[46], 14);
	check_roundtrip(&pl, &b);
	assert_true(52 + 46 * 1400 <= TUNIO_IP_MAX && 52 + 47 * 1400 > TUNIO_IP_MAX);
}

/* What coalescing leaves alone: other protocols, IPv4 options and
 * fragments, IPv6 extension headers, packets out of their buffer. */
static void test_coalesce_leaves_alone(void **state)
{
	struct pktbuf_batch b;
	struct tunio_plan pl;

	(void)state;
	batch_init(&b, 0, PKTBUF_BATCH_MAX);
	batch_add(&b, pkt, build_udp(pkt, 4, 1000, false));
	batch_add(&b, pkt, build_udp(pkt, 4, 1000, false));
	for (int i = 0; i < 3; i++)
		add_tcp(&b, 4, 3333, (uint32_t)i * 1000, 1000, T_ACK);
	pktbuf_data(&b.pkt[3])[6] |= 0x20; /* MF on the second TCP packet */
	ref_fill_csum(pktbuf_data(&b.pkt[3]));
	add_tcp(&b, 6, 4444, 0, 1000, T_ACK);
	add_tcp(&b, 6, 4444, 1000, 1000, T_ACK);
	pktbuf_data(&b.pkt[6])[6] = 60; /* destination options header */
	b.pkt[7] = b.pkt[2];
	b.pkt[7].len = b.pkt[7].size; /* claims more than its buffer */
	b.n = 8;
	tunio_plan_build(&pl, &b);
	for (unsigned i = 0; i < b.n; i++) {
		assert_int_equal(pl.leader[i], 1);
		assert_int_equal(pl.count[i], 1);
	}
	/* A single packet is written as is behind a zero vnet header. */
	size_t len = render(&pl, &b, 0, frame);

	assert_int_equal(len, TUNIO_VNET_HDR_LEN + b.pkt[0].len);
	for (int i = 0; i < TUNIO_VNET_HDR_LEN; i++)
		assert_int_equal(frame[i], 0);
	assert_memory_equal(frame + TUNIO_VNET_HDR_LEN, pktbuf_data(&b.pkt[0]), b.pkt[0].len);
}

/* Padding after the IP length (WireGuard pads to 16) is not payload. */
static void test_coalesce_padding(void **state)
{
	struct pktbuf_batch b;
	struct tunio_plan pl;

	(void)state;
	batch_init(&b, 0, PKTBUF_BATCH_MAX);
	for (int i = 0; i < 4; i++) {
		add_tcp(&b, 4, 5555, (uint32_t)i * 1000, 1000, T_ACK);
		memset(pktbuf_data(&b.pkt[i]) + b.pkt[i].len, 0, 12);
		b.pkt[i].len += 12;
	}
	tunio_plan_build(&pl, &b);
	assert_int_equal(pl.count[0], 4);
	size_t len = render(&pl, &b, 0, frame);

	assert_int_equal(len, TUNIO_VNET_HDR_LEN + 52 + 4000);
	for (int i = 0; i < 4; i++)
		b.pkt[i].len -= 12;
	check_roundtrip(&pl, &b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tso4),
		cmocka_unit_test(test_tso6),
		cmocka_unit_test(test_uso),
		cmocka_unit_test(test_needs_csum_single),
		cmocka_unit_test(test_csum_lengths),
		cmocka_unit_test(test_segment_resume),
		cmocka_unit_test(test_segment_bad),
		cmocka_unit_test(test_coalesce_run),
		cmocka_unit_test(test_coalesce_rules),
		cmocka_unit_test(test_coalesce_flows_and_limit),
		cmocka_unit_test(test_coalesce_leaves_alone),
		cmocka_unit_test(test_coalesce_padding),
	};

	init_pattern();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
