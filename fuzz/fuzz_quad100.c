/* Fuzz target for quad-100, the data plane's DNS responder
 * (worker/dataplane/quad100.c): UDP and TCP queries the pod sends to
 * 100.100.100.100 or fd7a:115c:a1e0::53, the forwarding of other names to
 * the netmap's resolvers, and their answers coming back on the pod's UDP
 * socket.
 *
 * One engine is made on the first call and kept for the process
 * (reachable, so not a leak), configured as a worker is after its first
 * netmap: a MapResponse with MagicDNS on (Proxied), named peers, default
 * resolvers 10.0.0.53 and [fd00::53]:5353, the split routes corp.example.
 * -> 10.0.0.54:5353 and v6.example. -> [fd00::54], one whose resolver is a
 * name and one with none (a DoH and a DoT URL are skipped), parsed by
 * mapjson, applied by netmap_apply() and turned into a configuration by
 * dataplane_config_from_netmap(). dataplane_new() cannot make it:
 * tunio_new() asks its fd for TUNGETIFF, which only a real TUN device
 * (root) answers. So the struct is filled by hand with what quad-100
 * touches (the configuration, the disco queue forwarded queries wait in,
 * the counters), and the TUN write is this file's: quad100.c is #included
 * (as the unit tests include the file they test, which also gives the
 * checks below its private structs) with tunio_write renamed to
 * fz_tun_write, which checks every packet and writes nothing. Forwarded
 * queries are checked and dropped from the disco queue where the engine
 * would send them: nothing leaves the process.
 *
 * quad-100's own state (allocated on the first query) is freed after
 * every input, and the clock and libsodium's randomness (upstream IDs,
 * TCP initial sequence numbers; a seeded xorshift here) start over, so an
 * input runs the same way every time.
 *
 * The input is a script of events, an op byte and its arguments each
 * (missing bytes read as zero). "client" selects one of 32 sources (IPv4
 * or IPv6, two addresses, eight ports; bit 5: to port 54 rather than 53;
 * bit 6: IPv4 options, or an IPv6 Fragment header; bit 7: bytes after the
 * IP total length) and "spec" one well-formed query (ID, one of 32 names,
 * type, class, RD, EDNS size and padding, opcode, QR, QDCOUNT, trailing
 * bytes):
 *   UDP_RAW    [client][len][payload]             a datagram to quad-100
 *   UDP_QUERY  [client][spec 5]
 *   TCP_RAW    [client][flags][how][len](seq)(ack)[payload]  any segment
 *   TCP_QUERY  [client][spec 5][how]   length-prefixed, in sequence
 *   TCP_OPEN   [client][isn]           SYN, then the handshake's ACK
 *   UPSTREAM   [which][from][how][len][bytes]     a datagram from UDP
 *   TIME       [step]
 *   FLUSH                              the end of the engine's TUN batch
 *   TUN_FAIL   [on]                    TUN writes fail (after the checks)
 *   REPEAT     [times]                 the previous event again, 1..64 times
 * Packets are real IPv4/IPv6 packets, parsed with packet_parse() and
 * passed through the outbound filter before dataplane__q100_rx(), as
 * tun_to_peers.c does; up to DATAPLANE_BATCH of them make a batch, whose
 * end sends the forwarded queries and flushes the replies.
 *
 * What must hold, whatever the input (abort() otherwise):
 *  - every packet written to the TUN is IPv4 or IPv6 from quad-100 port 53
 *    to one of the 32 clients, with its length fields and its IPv4 header,
 *    UDP and TCP checksums right (computed here); a UDP reply is a DNS
 *    response of at most 1232 bytes (an upstream's: at most what the
 *    client said it takes) with the ID of a query that client sent;
 *  - per client, the TCP segments follow each other in sequence from the
 *    SYN-ACK (with its MSS option) on; their stream is whole responses,
 *    each at most DP_Q100_TCP_REPLY bytes with the ID of a query of that
 *    client, none cut by our FIN; no data or ACK outside a connection;
 *  - at most DP_Q100_TCP connections and one per client address and port;
 *    none keeps a whole query unanswered;
 *  - the forward table holds at most DP_Q100_FWD entries, each to 1..3
 *    configured resolvers, awaited at most DP_Q100_FWD_MS (fwd_until_ms
 *    covers it); an answer is taken exactly when it matches such an entry
 *    by ID and source (an IPv4 one also IPv4-mapped), and frees it;
 *  - a forwarded query is the client's with only its ID changed, sent to
 *    its route's resolvers (split or default), never for a local name;
 *  - dataplane__q100_rx() takes exactly the DNS packets (UDP or TCP to
 *    port 53, not fragments). */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <sodium.h>

#include "common/log.h"
#include "common/mem.h"
#include "worker/control/mapjson.h"
#include "worker/control/netmap.h"
#include "worker/dataplane/dataplane.h"
#include "worker/dataplane/dataplane_internal.h"
#include "worker/dataplane/filter.h"
#include "worker/dataplane/packet.h"
#include "worker/dataplane/tunio.h"

/* quad100.c's TUN writes come here (tunio.h is already in, so the rename
 * touches only the calls). */
static int fz_tun_write(struct tunio *t, const struct pktbuf_batch *b);
#define tunio_write fz_tun_write
#include "worker/dataplane/quad100.c"
#undef tunio_write

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum fz_limits {
	FZ_TUPLES = 32,
	FZ_IDS = 32, /* query IDs remembered per client and transport */
	FZ_RING = 8, /* forwarded queries an upstream answer may echo */
	FZ_MAX_EVENTS = 1024,
	FZ_PKT_MAX = 2048,
	FZ_TCP_PAYLOAD_MAX = 1400,
	FZ_ACC = 2 + DP_Q100_TCP_REPLY + 1500, /* a client's TCP stream not yet parsed */
	FZ_NOW = 1800000000,		       /* netmap time, Unix seconds */
	FZ_QUERY_MAX = 1300,
};

/* 1000 s after boot: the engine's CLOCK_MONOTONIC is never near 0. */
#define FZ_T0_NS 1000000000000ULL

enum fz_op {
	OP_UDP_RAW,
	OP_UDP_QUERY,
	OP_TCP_RAW,
	OP_TCP_QUERY,
	OP_TCP_OPEN,
	OP_UPSTREAM,
	OP_TIME,
	OP_FLUSH,
	OP_TUN_FAIL,
	OP_REPEAT,
	OP_COUNT,
};

/* Where a query for a name goes. */
enum fz_route {
	FZ_LOCAL,   /* answered by quad-100, never forwarded */
	FZ_DEFAULT, /* if forwarded, to 10.0.0.53:53 and [fd00::53]:5353 */
	FZ_SPLIT,   /* if forwarded, to 10.0.0.54:5353 (corp.example.) */
	FZ_SPLIT6,  /* if forwarded, to [fd00::54]:53 (v6.example.) */
	FZ_EITHER,  /* not checked */
};

static const struct {
	const char *name;
	enum fz_route route;
} fz_names[32] = {
	{"peer1.tail1234.ts.net.", FZ_LOCAL},
	{"peer1.", FZ_EITHER},
	{"self.tail1234.ts.net.", FZ_LOCAL},
	{"nope.tail1234.ts.net.", FZ_LOCAL},
	{"www.example.com.", FZ_DEFAULT},
	{"host.corp.example.", FZ_SPLIT},
	{"corp.example.", FZ_EITHER},
	{"2.0.64.100.in-addr.arpa.", FZ_EITHER},
	{"100.100.100.100.in-addr.arpa.", FZ_EITHER},
	{"magicdns.localhost-tailscale-daemon.", FZ_EITHER},
	{"x.onion.", FZ_EITHER},
	{"peer2.tail1234.ts.net.", FZ_LOCAL},
	{"svc.internal.example.", FZ_EITHER},
	{"many.tail1234.ts.net.", FZ_LOCAL},
	{"a.local.example.", FZ_LOCAL},
	{"deep.sub.corp.example.", FZ_SPLIT},
	{"host.v6.example.", FZ_SPLIT6},
	{"x.bad.example.", FZ_EITHER}, /* a route without a usable resolver */
	{"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.e.1.a.c.5.1.1.a.7.d.f.ip6.arpa.",
	 FZ_EITHER},
	{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
	 "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb."
	 "ccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc.x.example.com.",
	 FZ_DEFAULT},
	{"Peer1.TAIL1234.ts.net.", FZ_LOCAL},
	{"many.", FZ_EITHER},
	{"b._dns-sd._udp.0.64.100.in-addr.arpa.", FZ_EITHER},
	{"tail1234.ts.net.", FZ_EITHER},
	{"corp.example.com.", FZ_DEFAULT},
	{"xcorp.example.", FZ_DEFAULT}, /* a suffix, but not on a label boundary */
	{"mail.google.com.", FZ_DEFAULT},
	{"peer2.", FZ_EITHER},
	{"3.0.64.100.in-addr.arpa.", FZ_EITHER},
	{"sub.host.v6.example.", FZ_SPLIT6},
	{"", FZ_EITHER}, /* the root */
	{"local.example.", FZ_EITHER},
};

static const uint16_t fz_qtypes[8] = {1, 28, 255, 15, 12, 16, 6, 5};
static const uint16_t fz_edns_sizes[8] = {0, 512, 1024, 1232, 4096, 65535, 100, 1400};
static const uint16_t fz_ports[8] = {1, 53, 1024, 33333, 40000, 40001, 50000, 65535};
/* The clients' addresses: [IPv6][which], an IPv4 one in the first 4 bytes. */
static const uint8_t fz_addrs[2][2][16] = {
	{{100, 64, 0, 1}, {100, 64, 0, 7}},
	{{0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0, [15] = 1},
	 {0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0, [15] = 7}},
};
static const uint8_t fz_resolver_default[4] = {10, 0, 0, 53};
static const uint8_t fz_resolver_split[4] = {10, 0, 0, 54};
static const uint8_t fz_resolver_v6[2][16] = {
	{0xfd, [15] = 0x53}, /* fd00::53, a default resolver on port 5353 */
	{0xfd, [15] = 0x54}, /* fd00::54, v6.example.'s on port 53 */
};

struct fz_ids {
	uint16_t id[FZ_IDS];
	unsigned n;
	bool wild; /* too many, or sent in raw TCP bytes: not checked */
};

/* One client (address and port) as the fuzzer sees it. */
struct fz_tuple {
	struct fz_ids udp_ids, tcp_ids;
	bool opened;	  /* it sent quad-100 a SYN */
	uint32_t cli_nxt; /* the next sequence number it sends */
	/* What quad-100 sent it over TCP, checked in order. */
	bool syn_seen;
	uint32_t srv_nxt;
	size_t acc_len;
	uint8_t acc[FZ_ACC];
};

struct fz_fwd {
	uint8_t bytes[DP_DISCO_BUF_LEN];
	size_t len;
	struct sockaddr_storage addr;
};

static struct {
	struct dataplane *dp;
	struct netmap *nm;
	uint64_t now_ns;
	uint32_t rng;
	bool tun_fail;
	size_t batch; /* TUN packets since the batch began */
	/* Set around dataplane__q100_upstream_rx: the UDP reply's bound. */
	bool in_upstream;
	uint16_t upstream_udp_max;
	struct fz_tuple t[FZ_TUPLES];
	struct fz_fwd ring[FZ_RING];
	size_t ring_n, ring_next;
	uint8_t upstream_buf[DP_BUF_LEN];
} fz;

struct fz_in {
	const uint8_t *p;
	size_t n;
};

static uint8_t fz_u8(struct fz_in *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

static uint32_t fz_u32(struct fz_in *in)
{
	uint32_t v = 0;

	for (int i = 0; i < 4; i++)
		v = v << 8 | fz_u8(in);
	return v;
}

static size_t fz_take(struct fz_in *in, uint8_t *out, size_t want)
{
	size_t n = want < in->n ? want : in->n;

	memcpy(out, in->p, n);
	in->p += n;
	in->n -= n;
	return n;
}

static uint16_t fz_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t fz_get32(const uint8_t *p)
{
	return (uint32_t)fz_get16(p) << 16 | fz_get16(p + 2);
}

static void fz_set16(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void fz_set32(uint8_t *p, uint32_t v)
{
	fz_set16(p, v >> 16);
	fz_set16(p + 2, v & 0xffff);
}

/* ---- randomness: a fixed sequence, restarted per input ------------------- */

static uint32_t fz_rng_next(void)
{
	/* xorshift32; never 0 from a non-zero state. */
	fz.rng ^= fz.rng << 13;
	fz.rng ^= fz.rng >> 17;
	fz.rng ^= fz.rng << 5;
	return fz.rng;
}

static const char *fz_rng_name(void)
{
	return "fuzz_quad100";
}

static void fz_rng_buf(void *const buf, const size_t size)
{
	uint8_t *b = buf;

	for (size_t i = 0; i < size; i++)
		b[i] = (uint8_t)fz_rng_next();
}

static randombytes_implementation fz_rng_impl = {
	.implementation_name = fz_rng_name,
	.random = fz_rng_next,
	.buf = fz_rng_buf,
};

/* ---- checksums, written here rather than taken from quad100.c ------------ */

static uint32_t fz_sum(const uint8_t *p, size_t n, uint32_t acc)
{
	size_t i;

	for (i = 0; i + 1 < n; i += 2)
		acc += fz_get16(p + i);
	if (i < n)
		acc += (uint32_t)p[i] << 8;
	return acc;
}

/* The ones' complement of the folded sum: 0 when a checksum verifies. */
static uint16_t fz_fold(uint32_t acc)
{
	while (acc > 0xffff)
		acc = (acc >> 16) + (acc & 0xffff);
	return (uint16_t)(~acc & 0xffff);
}

static uint16_t fz_l4_sum(int version, const uint8_t *src, const uint8_t *dst, uint8_t proto,
			  const uint8_t *l4, size_t len)
{
	size_t alen = version == 4 ? 4 : 16;
	uint32_t acc = fz_sum(src, alen, 0);

	acc = fz_sum(dst, alen, acc);
	acc += proto;
	acc += (uint32_t)len;
	return fz_fold(fz_sum(l4, len, acc));
}

/* ---- clients --------------------------------------------------------------- */

static int fz_version(unsigned t)
{
	return (t & 1) ? 6 : 4;
}

static const uint8_t *fz_addr(unsigned t)
{
	return fz_addrs[t & 1][(t >> 1) & 1];
}

static uint16_t fz_port(unsigned t)
{
	return fz_ports[(t >> 2) & 7];
}

/* The client a reply goes to; abort() when it is none of ours. */
static unsigned fz_tuple_of(int version, const uint8_t *addr, uint16_t port)
{
	for (unsigned t = 0; t < FZ_TUPLES; t++)
		if (fz_version(t) == version && fz_port(t) == port &&
		    memcmp(fz_addr(t), addr, version == 4 ? 4 : 16) == 0)
			return t;
	abort();
}

static void fz_ids_add(struct fz_ids *s, uint16_t id)
{
	for (unsigned i = 0; i < s->n; i++)
		if (s->id[i] == id)
			return;
	if (s->n == FZ_IDS) {
		s->wild = true;
		return;
	}
	s->id[s->n++] = id;
}

static void fz_ids_check(const struct fz_ids *s, uint16_t id)
{
	if (s->wild)
		return;
	for (unsigned i = 0; i < s->n; i++)
		if (s->id[i] == id)
			return;
	abort(); /* a reply with an ID this client never sent */
}

/* ---- what quad-100 writes to the TUN ------------------------------------- */

/* The stream quad-100 sends client t over TCP: whole responses, each
 * behind its length. */
static void fz_tcp_stream(struct fz_tuple *t, const uint8_t *data, size_t n)
{
	size_t used = 0;

	if (n > sizeof(t->acc) - t->acc_len)
		abort();
	memcpy(t->acc + t->acc_len, data, n);
	t->acc_len += n;
	while (t->acc_len - used >= 2) {
		size_t mlen = fz_get16(t->acc + used);
		const uint8_t *m = t->acc + used + 2;

		if (mlen < 12 || mlen > DP_Q100_TCP_REPLY)
			abort();
		if (t->acc_len - used - 2 < mlen)
			break;
		if (!(m[2] & 0x80))
			abort(); /* not a response */
		fz_ids_check(&t->tcp_ids, fz_get16(m));
		used += 2 + mlen;
	}
	memmove(t->acc, t->acc + used, t->acc_len - used);
	t->acc_len -= used;
}

static void fz_check_udp(unsigned ti, const uint8_t *l4, size_t len)
{
	const uint8_t *dns = l4 + PACKET_UDP_HDR_LEN;
	size_t dlen;

	if (len < PACKET_UDP_HDR_LEN || fz_get16(l4 + 4) != len || fz_get16(l4 + 6) == 0)
		abort();
	dlen = len - PACKET_UDP_HDR_LEN;
	if (dlen < 12 || dlen > DP_Q100_UDP_MAX || !(dns[2] & 0x80))
		abort();
	if (fz.in_upstream && dlen > fz.upstream_udp_max)
		abort(); /* more than the client said it takes */
	fz_ids_check(&fz.t[ti].udp_ids, fz_get16(dns));
}

static void fz_check_tcp(unsigned ti, const uint8_t *l4, size_t len)
{
	struct fz_tuple *t = &fz.t[ti];
	size_t doff, plen;
	uint8_t fl;
	uint32_t seq;

	if (len < PACKET_TCP_HDR_LEN)
		abort();
	doff = (size_t)(l4[12] >> 4) * 4;
	if (doff < PACKET_TCP_HDR_LEN || doff > len || (l4[12] & 0x0f))
		abort();
	plen = len - doff;
	fl = l4[13];
	seq = fz_get32(l4 + 4);
	if (plen > DP_Q100_MSS)
		abort();
	if (fl & PACKET_TCP_SYN) {
		static const uint8_t mss[4] = {2, 4, DP_Q100_MSS >> 8, DP_Q100_MSS & 0xff};

		if (fl != (PACKET_TCP_SYN | PACKET_TCP_ACK) || plen || doff != 24 ||
		    memcmp(l4 + 20, mss, 4) != 0)
			abort();
		/* Ours again, for a retransmitted SYN, or a new connection. */
		if (!t->syn_seen || seq + 1 != t->srv_nxt) {
			t->syn_seen = true;
			t->srv_nxt = seq + 1;
			t->acc_len = 0;
		}
		return;
	}
	if (doff != PACKET_TCP_HDR_LEN)
		abort();
	if (fl & PACKET_TCP_RST) {
		/* For a segment no connection owns, or ending one. */
		if (plen || (fl & ~(PACKET_TCP_RST | PACKET_TCP_ACK)))
			abort();
		t->syn_seen = false;
		return;
	}
	if (!(fl & PACKET_TCP_ACK) || (fl & ~(PACKET_TCP_ACK | PACKET_TCP_PSH | PACKET_TCP_FIN)) ||
	    ((fl & PACKET_TCP_FIN) && plen) || ((fl & PACKET_TCP_PSH) && !plen))
		abort();
	if (!t->syn_seen || seq != t->srv_nxt)
		abort(); /* outside any connection, or out of sequence */
	if (plen)
		fz_tcp_stream(t, l4 + doff, plen);
	t->srv_nxt += (uint32_t)plen;
	if (fl & PACKET_TCP_FIN) {
		if (t->acc_len)
			abort(); /* a response cut by our FIN */
		t->syn_seen = false;
	}
}

/* One packet quad-100 wrote. */
static void fz_check_reply(const uint8_t *pkt, size_t len)
{
	const uint8_t *src, *dst, *l4;
	size_t hl, l4len;
	uint8_t proto;
	int version;
	unsigned ti;

	if (len < PACKET_IP4_HDR_LEN)
		abort();
	version = pkt[0] >> 4;
	if (version == 4) {
		if (pkt[0] != 0x45 || fz_get16(pkt + 2) != len || fz_fold(fz_sum(pkt, 20, 0)) != 0)
			abort();
		if ((pkt[6] & ~0x40) || pkt[7] || !pkt[8])
			abort(); /* a fragment, or no TTL */
		hl = PACKET_IP4_HDR_LEN;
		proto = pkt[9];
		src = pkt + 12;
		dst = pkt + 16;
		if (memcmp(src, ip_quad100_v4.addr, 4) != 0)
			abort();
	} else if (version == 6) {
		if (len < PACKET_IP6_HDR_LEN || fz_get16(pkt + 4) != len - PACKET_IP6_HDR_LEN ||
		    !pkt[7])
			abort();
		hl = PACKET_IP6_HDR_LEN;
		proto = pkt[6];
		src = pkt + 8;
		dst = pkt + 24;
		if (memcmp(src, ip_quad100_v6.addr, 16) != 0)
			abort();
	} else {
		abort();
	}
	l4 = pkt + hl;
	l4len = len - hl;
	if ((proto != PACKET_PROTO_UDP && proto != PACKET_PROTO_TCP) || l4len < 4)
		abort();
	if (fz_get16(l4) != DP_DNS_PORT)
		abort();
	if (fz_l4_sum(version, src, dst, proto, l4, l4len) != 0)
		abort(); /* the UDP or TCP checksum */
	ti = fz_tuple_of(version, dst, fz_get16(l4 + 2));
	if (proto == PACKET_PROTO_UDP)
		fz_check_udp(ti, l4, l4len);
	else
		fz_check_tcp(ti, l4, l4len);
}

static int fz_tun_write(struct tunio *t, const struct pktbuf_batch *b)
{
	(void)t;
	if (b->n > b->cap || b->cap > PKTBUF_BATCH_MAX)
		abort();
	for (unsigned i = 0; i < b->n; i++) {
		const struct pktbuf *p = &b->pkt[i];

		if (!p->head || p->off > p->size || p->len > p->size - p->off)
			abort();
		fz_check_reply(pktbuf_data(p), p->len);
	}
	return fz.tun_fail ? -EIO : 0;
}

/* ---- the state quad-100 keeps ---------------------------------------------- */

/* The route of the configured resolver a is (FZ_DEFAULT, FZ_SPLIT or
 * FZ_SPLIT6), or FZ_LOCAL when it is none of them. */
static enum fz_route fz_resolver_route(const struct sockaddr_storage *a)
{
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)a;

		if (memcmp(&in->sin_addr, fz_resolver_default, 4) == 0 && ntohs(in->sin_port) == 53)
			return FZ_DEFAULT;
		if (memcmp(&in->sin_addr, fz_resolver_split, 4) == 0 && ntohs(in->sin_port) == 5353)
			return FZ_SPLIT;
	} else if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)a;

		if (memcmp(&in6->sin6_addr, fz_resolver_v6[0], 16) == 0 &&
		    ntohs(in6->sin6_port) == 5353)
			return FZ_DEFAULT;
		if (memcmp(&in6->sin6_addr, fz_resolver_v6[1], 16) == 0 &&
		    ntohs(in6->sin6_port) == 53)
			return FZ_SPLIT6;
	}
	return FZ_LOCAL;
}

static bool fz_is_resolver(const struct sockaddr_storage *a)
{
	return fz_resolver_route(a) != FZ_LOCAL;
}

static bool fz_live_tcp(const struct dp_q100_tcp *c, uint64_t now_ms)
{
	return c->last_ms && now_ms - c->last_ms <= DP_Q100_TCP_IDLE_MS;
}

static void fz_check_state(void)
{
	const struct dp_q100 *q = fz.dp->q100;
	uint64_t now_ms = fz.now_ns / 1000000;
	size_t n_tcp = 0, n_fwd = 0;

	if (fz.dp->disco_out.n > fz.dp->disco_out.cap)
		abort();
	if (!q)
		return;
	if (q->out.cap != DP_Q100_SLOTS || q->out.n > q->out.cap)
		abort();
	for (size_t i = 0; i < DP_Q100_TCP; i++) {
		const struct dp_q100_tcp *c = &q->tcp[i];

		if (!fz_live_tcp(c, now_ms))
			continue;
		n_tcp++;
		if (c->last_ms > now_ms || c->rx_len > sizeof(c->rx))
			abort();
		/* Every whole query is answered as it arrives. */
		if (c->rx_len >= 2 && c->rx_len - 2u >= fz_get16(c->rx))
			abort();
		(void)fz_tuple_of(c->peer.version, c->peer.addr, c->peer.port);
		for (size_t j = 0; j < i; j++) {
			const struct dp_q100_tcp *o = &q->tcp[j];

			if (fz_live_tcp(o, now_ms) && o->peer.version == c->peer.version &&
			    o->peer.port == c->peer.port &&
			    memcmp(o->peer.addr, c->peer.addr, 16) == 0)
				abort(); /* two connections of one address and port */
		}
	}
	if (n_tcp > DP_Q100_TCP)
		abort();
	for (size_t i = 0; i < DP_Q100_FWD; i++) {
		const struct dp_q100_fwd *f = &q->fwd[i];

		if (!f->at_ms)
			continue;
		n_fwd++;
		if (!f->n_to || f->n_to > DP_Q100_FWD_TO || f->at_ms > now_ms ||
		    q->fwd_until_ms < f->at_ms + DP_Q100_FWD_MS)
			abort();
		if (f->client_udp_max < 512 || f->client_udp_max > DP_Q100_UDP_MAX)
			abort();
		if (f->tcp && f->conn >= DP_Q100_TCP)
			abort();
		for (size_t k = 0; k < f->n_to; k++)
			if (!fz_is_resolver(&f->to[k]))
				abort();
	}
	if (n_fwd > DP_Q100_FWD)
		abort();
}

/* ---- forwarded queries (the disco queue) --------------------------------- */

static void fz_ring_add(const struct wg_packet *w)
{
	struct fz_fwd *r = &fz.ring[fz.ring_next];

	memcpy(r->bytes, w->buf + w->off, w->len);
	r->len = w->len;
	r->addr = w->addr;
	fz.ring_next = (fz.ring_next + 1) % FZ_RING;
	if (fz.ring_n < FZ_RING)
		fz.ring_n++;
}

/* The datagrams a query just added to the disco queue (from index `from`):
 * each to a resolver, and remembered for UPSTREAM. With q (a UDP query of
 * client ti): the client's query with only its ID changed, to the
 * resolvers of the route, and a forward entry waits for it. */
static void fz_check_forwarded(size_t from, const uint8_t *q, size_t qlen, unsigned ti,
			       enum fz_route route)
{
	const struct wg_batch *b = &fz.dp->disco_out;
	const struct dp_q100 *q100 = fz.dp->q100;
	uint64_t now_ms = fz.now_ns / 1000000;
	bool found = false;

	for (size_t i = from; i < b->n; i++) {
		const struct wg_packet *w = &b->pkt[i];

		if (w->off || w->len < 12 || w->len > DP_DISCO_BUF_LEN || w->len > w->cap ||
		    !fz_is_resolver(&w->addr))
			abort();
		fz_ring_add(w);
		if (!q)
			continue;
		if (w->len != qlen || memcmp(w->buf + 2, q + 2, qlen - 2) != 0 ||
		    memcmp(w->buf, b->pkt[from].buf, 2) != 0)
			abort();
		if (route == FZ_LOCAL ||
		    (route != FZ_EITHER && fz_resolver_route(&w->addr) != route))
			abort(); /* a local name forwarded, or to the wrong set */
	}
	if (!q || b->n == from)
		return;
	for (size_t i = 0; i < DP_Q100_FWD && !found; i++) {
		const struct dp_q100_fwd *f = &q100->fwd[i];

		found = f->at_ms == now_ms && f->up_id == fz_get16(b->pkt[from].buf) &&
			f->client_id == fz_get16(q) && !f->tcp && f->n_to == b->n - from &&
			f->peer.version == fz_version(ti) && f->peer.port == fz_port(ti) &&
			memcmp(f->peer.addr, fz_addr(ti), f->peer.version == 4 ? 4 : 16) == 0;
	}
	if (!found)
		abort();
}

/* The end of the engine's TUN batch: the forwarded queries are sent (here:
 * dropped) and the replies written to the TUN. */
static void fz_batch_end(void)
{
	fz.dp->disco_out.n = 0;
	dataplane__q100_flush(fz.dp);
	if (fz.dp->q100 && fz.dp->q100->out.n)
		abort();
	fz.batch = 0;
}

/* ---- packets from the pod -------------------------------------------------- */

/* Sends the transport segment l4 (its checksum field zero) from client
 * `sel` to quad-100 as an IP packet, through the parser and the outbound
 * filter into dataplane__q100_rx(). Returns the index in the disco queue
 * where the forwards of this packet start. */
static size_t fz_send(unsigned sel, uint8_t proto, uint8_t *l4, size_t l4len)
{
	static uint8_t pkt[FZ_PKT_MAX];
	unsigned ti = sel % FZ_TUPLES;
	int version = fz_version(ti);
	bool extra = sel & 0x40, expect;
	size_t hl, pad = (sel & 0x80) ? 3 : 0, csum_off = proto == PACKET_PROTO_UDP ? 6 : 16;
	const uint8_t *dst;
	enum filter_reason reason = FILTER_REASON_NONE;
	const char *why = NULL;
	struct packet p;
	size_t before;

	if (fz.batch == DATAPLANE_BATCH)
		fz_batch_end(); /* a full batch ends before the next packet */
	fz.batch++;
	before = fz.dp->disco_out.n;
	if (version == 4) {
		hl = extra ? 24 : 20;
		memset(pkt, 0, hl);
		pkt[0] = (uint8_t)(0x40 | hl / 4);
		fz_set16(pkt + 2, (uint32_t)(hl + l4len));
		fz_set16(pkt + 4, 0x1234);
		pkt[6] = 0x40;
		pkt[8] = 64;
		pkt[9] = proto;
		memcpy(pkt + 12, fz_addr(ti), 4);
		memcpy(pkt + 16, ip_quad100_v4.addr, 4);
		if (extra)
			memset(pkt + 20, 1, 4); /* NOPs */
		fz_set16(pkt + 10, fz_fold(fz_sum(pkt, hl, 0)));
		dst = pkt + 16;
	} else {
		hl = extra ? 48 : 40;
		memset(pkt, 0, hl);
		pkt[0] = 0x60;
		fz_set16(pkt + 4, (uint32_t)(hl - 40 + l4len));
		pkt[6] = extra ? PACKET_PROTO_IP6_FRAGMENT : proto;
		pkt[7] = 64;
		memcpy(pkt + 8, fz_addr(ti), 16);
		memcpy(pkt + 24, ip_quad100_v6.addr, 16);
		if (extra) {
			pkt[40] = proto; /* an atomic fragment: offset 0, no more */
			fz_set32(pkt + 44, 0xf00d);
		}
		dst = pkt + 24;
	}
	fz_set16(l4 + csum_off, 0);
	fz_set16(l4 + csum_off, fz_l4_sum(version, fz_addr(ti), dst, proto, l4, l4len));
	if (proto == PACKET_PROTO_UDP && fz_get16(l4 + 6) == 0)
		fz_set16(l4 + 6, 0xffff);
	memcpy(pkt + hl, l4, l4len);
	memset(pkt + hl + l4len, 0, pad);
	expect = fz_get16(l4 + 2) == DP_DNS_PORT && !(version == 6 && extra);

	if (packet_parse(&p, pkt, hl + l4len + pad, &why) < 0)
		abort(); /* the packets built here are well-formed */
	if (filter_run_out(fz.dp->cur->filter, &p, &reason) != FILTER_ACCEPT)
		return before;
	if (dataplane__q100_rx(fz.dp, &p, pkt, fz.now_ns) != expect)
		abort();
	return before;
}

/* A well-formed query from spec[5]: ID, name, type (and class), flags and
 * EDNS. Returns its length; *route is where its name goes. */
static size_t fz_query(const uint8_t spec[5], uint8_t *out, enum fz_route *route)
{
	const char *name = fz_names[spec[2] & 31].name;
	uint8_t x = spec[4];
	size_t n = 12;

	*route = fz_names[spec[2] & 31].route;
	memset(out, 0, 12);
	out[0] = spec[0];
	out[1] = spec[1];
	out[2] = (uint8_t)((x & 1) | ((x & 0x20) ? 2 << 3 : 0) | ((x & 0x40) ? 0x80 : 0));
	fz_set16(out + 4, (x & 0x80) ? 2 : 1);
	fz_set16(out + 10, (x & 2) ? 1 : 0);
	/* The name, label by label. */
	while (*name) {
		const char *dot = strchr(name, '.');
		size_t l = dot ? (size_t)(dot - name) : strlen(name);

		out[n++] = (uint8_t)l;
		memcpy(out + n, name, l);
		n += l;
		name += l + (dot ? 1 : 0);
	}
	out[n++] = 0;
	fz_set16(out + n, fz_qtypes[spec[3] & 7]);
	fz_set16(out + n + 2, (spec[3] & 8) ? 3 : 1); /* CH or IN */
	n += 4;
	if (x & 2) {
		out[n] = 0; /* OPT on the root */
		fz_set16(out + n + 1, 41);
		fz_set16(out + n + 3, fz_edns_sizes[(x >> 2) & 7]);
		/* Extended RCODE 0, version 0 or 1, DO or not, no data. */
		out[n + 5] = 0;
		out[n + 6] = (spec[3] & 0x10) ? 1 : 0;
		fz_set16(out + n + 7, (spec[3] & 0x20) ? 0x8000 : 0);
		fz_set16(out + n + 9, 0);
		n += DP_OPT_RR_LEN;
		if (spec[3] & 0x80) {
			/* A Padding option (RFC 7830): queries of up to 1 KiB. */
			size_t plen = (size_t)(spec[1] & 15) * 64 + (spec[1] >> 4);

			fz_set16(out + n - 2, (uint32_t)(4 + plen));
			fz_set16(out + n, 12);
			fz_set16(out + n + 2, (uint32_t)plen);
			memset(out + n + 4, 0, plen);
			n += 4 + plen;
		}
	}
	if (spec[3] & 0x40) {
		memset(out + n, 0xee, 3); /* bytes after the last record */
		n += 3;
	}
	if (x & 0x80 && !(spec[3] & 0x80)) {
		/* QDCOUNT 2 with a second question: FORMERR. */
		memcpy(out + n, "\x01x\x00\x00\x01\x00\x01", 7);
		n += 7;
	}
	if (n > FZ_QUERY_MAX)
		abort();
	return n;
}

static void fz_udp(unsigned sel, const uint8_t *payload, size_t len, enum fz_route route)
{
	static uint8_t l4[PACKET_UDP_HDR_LEN + FZ_PKT_MAX];
	unsigned ti = sel % FZ_TUPLES;
	size_t from;

	fz_set16(l4, fz_port(ti));
	fz_set16(l4 + 2, (sel & 0x20) ? 54 : DP_DNS_PORT);
	fz_set16(l4 + 4, (uint32_t)(PACKET_UDP_HDR_LEN + len));
	memcpy(l4 + PACKET_UDP_HDR_LEN, payload, len);
	if (len >= 2)
		fz_ids_add(&fz.t[ti].udp_ids, fz_get16(payload));
	from = fz_send(sel, PACKET_PROTO_UDP, l4, PACKET_UDP_HDR_LEN + len);
	fz_check_forwarded(from, payload, len, ti, route);
}

/* One TCP segment from client sel. opts: 0, 4 (MSS) or 12 option bytes. */
static size_t fz_tcp(unsigned sel, uint8_t flags, uint32_t seq, uint32_t ack, size_t opts,
		     const uint8_t *payload, size_t len)
{
	static const uint8_t options[12] = {2, 4, 5, 180, 4, 2, 1, 1, 1, 3, 3, 7};
	static uint8_t l4[60 + FZ_TCP_PAYLOAD_MAX];
	unsigned ti = sel % FZ_TUPLES;
	size_t hl = PACKET_TCP_HDR_LEN + opts;

	memset(l4, 0, hl);
	fz_set16(l4, fz_port(ti));
	fz_set16(l4 + 2, (sel & 0x20) ? 54 : DP_DNS_PORT);
	fz_set32(l4 + 4, seq);
	fz_set32(l4 + 8, ack);
	l4[12] = (uint8_t)((hl / 4) << 4);
	l4[13] = flags;
	fz_set16(l4 + 14, 64240);
	memcpy(l4 + PACKET_TCP_HDR_LEN, options, opts);
	if (len)
		memcpy(l4 + hl, payload, len);
	return fz_send(sel, PACKET_PROTO_TCP, l4, hl + len);
}

/* The forwards of a TCP segment: checked as datagrams, remembered. */
static void fz_tcp_forwarded(size_t from)
{
	fz_check_forwarded(from, NULL, 0, 0, FZ_EITHER);
}

static void fz_tcp_open(unsigned sel, uint32_t isn)
{
	struct fz_tuple *t = &fz.t[sel % FZ_TUPLES];

	fz_tcp_forwarded(fz_tcp(sel, PACKET_TCP_SYN, isn, 0, 4, NULL, 0));
	t->opened = true;
	t->cli_nxt = isn + 1;
	fz_tcp_forwarded(fz_tcp(sel, PACKET_TCP_ACK, t->cli_nxt, t->srv_nxt, 0, NULL, 0));
}

static void fz_op_tcp_raw(struct fz_in *in)
{
	unsigned sel = fz_u8(in);
	uint8_t flags = fz_u8(in), how = fz_u8(in), l = fz_u8(in);
	struct fz_tuple *t = &fz.t[sel % FZ_TUPLES];
	uint8_t payload[FZ_TCP_PAYLOAD_MAX];
	uint32_t seq, ack = t->srv_nxt, k = how >> 4;
	size_t len = l < 200 ? l : (size_t)(l - 200) * 32, opts = 0;

	switch (how & 3) {
	case 0:
		seq = t->cli_nxt;
		break;
	case 1:
		seq = t->cli_nxt - 1 - k; /* a retransmission (or the SYN again) */
		break;
	case 2:
		seq = t->cli_nxt + 1 + k; /* a gap */
		break;
	default:
		seq = fz_u32(in);
		break;
	}
	if (how & 4)
		ack = fz_u32(in);
	if (len > FZ_TCP_PAYLOAD_MAX)
		len = FZ_TCP_PAYLOAD_MAX;
	len = fz_take(in, payload, len);
	if (len)
		t->tcp_ids.wild = true; /* whatever queries those bytes hold */
	if (how & 8)
		opts = 12;
	else if (how & 0x80)
		opts = 4;
	fz_tcp_forwarded(fz_tcp(sel, flags, seq, ack, opts, payload, len));
	if (flags & PACKET_TCP_SYN) {
		t->opened = true;
		t->cli_nxt = seq + 1;
	} else if (seq == t->cli_nxt) {
		t->cli_nxt += (uint32_t)len + ((flags & PACKET_TCP_FIN) ? 1 : 0);
	}
}

static void fz_op_tcp_query(struct fz_in *in)
{
	unsigned sel = fz_u8(in);
	uint8_t spec[5], how, msg[2 * (2 + FZ_QUERY_MAX)];
	struct fz_tuple *t = &fz.t[sel % FZ_TUPLES];
	enum fz_route route;
	size_t qlen, total, cut;

	for (int i = 0; i < 5; i++)
		spec[i] = fz_u8(in);
	how = fz_u8(in);
	qlen = fz_query(spec, msg + 2, &route);
	fz_set16(msg, (uint32_t)qlen);
	total = 2 + qlen;
	if ((how & 3) == 3) {
		memcpy(msg + total, msg, total); /* two queries in one segment */
		total *= 2;
	}
	fz_ids_add(&t->tcp_ids, fz_get16(msg + 2));
	if ((how & 8) || !t->opened)
		fz_tcp_open(sel, fz_rng_next());
	cut = (how & 3) == 1 ? 1 : (how & 3) == 2 ? total / 2 : total;
	for (size_t off = 0; off < total;) {
		size_t n = cut - off ? cut - off : total - off;
		bool last;

		if (n > FZ_TCP_PAYLOAD_MAX)
			n = FZ_TCP_PAYLOAD_MAX;
		last = off + n == total;
		uint8_t fl = PACKET_TCP_ACK | PACKET_TCP_PSH;

		if (last && (how & 4))
			fl |= PACKET_TCP_FIN;
		fz_tcp_forwarded(fz_tcp(sel, fl, t->cli_nxt, t->srv_nxt, 0, msg + off, n));
		t->cli_nxt += (uint32_t)n + ((fl & PACKET_TCP_FIN) ? 1 : 0);
		off += n;
		if (off >= cut)
			cut = total;
	}
}

/* ---- answers from upstream ------------------------------------------------ */

static void fz_sockaddr(struct sockaddr_storage *ss, bool mapped, const uint8_t v4[4],
			uint16_t port)
{
	memset(ss, 0, sizeof(*ss));
	if (!mapped) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;

		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		memcpy(&in->sin_addr, v4, 4);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		in6->sin6_addr.s6_addr[10] = in6->sin6_addr.s6_addr[11] = 0xff;
		memcpy(&in6->sin6_addr.s6_addr[12], v4, 4);
	}
}

/* Whether a (the source of an answer) is b (an address a query was sent
 * to), an IPv4-mapped a standing for its IPv4 address. */
static bool fz_same_source(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	const struct sockaddr_in *bi = (const struct sockaddr_in *)b;

	if (b->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)a;
		const struct sockaddr_in6 *b6 = (const struct sockaddr_in6 *)b;

		return a->ss_family == AF_INET6 && a6->sin6_port == b6->sin6_port &&
		       memcmp(&a6->sin6_addr, &b6->sin6_addr, 16) == 0;
	}
	if (b->ss_family != AF_INET)
		abort();
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *ai = (const struct sockaddr_in *)a;

		return ai->sin_port == bi->sin_port && ai->sin_addr.s_addr == bi->sin_addr.s_addr;
	}
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)a;
		static const uint8_t prefix[12] = {[10] = 0xff, [11] = 0xff};

		return a6->sin6_port == bi->sin_port &&
		       memcmp(a6->sin6_addr.s6_addr, prefix, 12) == 0 &&
		       memcmp(&a6->sin6_addr.s6_addr[12], &bi->sin_addr, 4) == 0;
	}
	return false;
}

static void fz_sockaddr6(struct sockaddr_storage *ss, const uint8_t addr[16], uint16_t port)
{
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(port);
	memcpy(&in6->sin6_addr, addr, 16);
}

/* Where an upstream datagram comes from: the resolver a forwarded query r
 * went to, the resolvers as IPv4 or IPv4-mapped addresses, or others. */
static void fz_source(uint8_t from, const struct fz_fwd *r, struct sockaddr_storage *ss)
{
	static const uint8_t other[4] = {10, 0, 0, 99};
	const struct sockaddr_in *to = r ? (const struct sockaddr_in *)&r->addr : NULL;

	switch (from % 12) {
	case 0:
		if (r)
			*ss = r->addr;
		else
			fz_sockaddr(ss, false, fz_resolver_default, 53);
		break;
	case 1:
		fz_sockaddr(ss, false, fz_resolver_default, 53);
		break;
	case 2:
		fz_sockaddr(ss, true, fz_resolver_default, 53);
		break;
	case 3:
		fz_sockaddr(ss, false, fz_resolver_split, 5353);
		break;
	case 4:
		fz_sockaddr(ss, true, fz_resolver_split, 5353);
		break;
	case 5:
		fz_sockaddr(ss, false, fz_resolver_default, 5353); /* the wrong port */
		break;
	case 6:
		fz_sockaddr(ss, false, other, 53);
		break;
	case 7:
		/* The address asked, IPv4-mapped. */
		if (to && to->sin_family == AF_INET)
			fz_sockaddr(ss, true, (const uint8_t *)&to->sin_addr, ntohs(to->sin_port));
		else
			fz_sockaddr6(ss, fz_resolver_v6[0], 5353);
		break;
	case 8:
		fz_sockaddr6(ss, fz_resolver_v6[0], 5353);
		break;
	case 9:
		fz_sockaddr6(ss, fz_resolver_v6[1], 53);
		break;
	case 10:
		fz_sockaddr6(ss, fz_resolver_v6[1], 5353); /* the wrong port */
		break;
	default:
		memset(ss, 0, sizeof(*ss)); /* AF_UNSPEC */
		break;
	}
}

/* An upstream datagram; how: bits 0-1 the body (0: the forwarded query
 * echoed as an answer with the bytes that follow; 1: its ID and any
 * bytes; 2: echoed and padded with zeros to 256 + 5 * len bytes, bit 6
 * then puts a pointer in the question and bit 7 makes the question as
 * long as the datagram; 3: echoed without QR), bits 2-3 ANCOUNT, bits 4-7
 * RCODE. */
static void fz_op_upstream(struct fz_in *in)
{
	uint8_t which = fz_u8(in), from = fz_u8(in), how = fz_u8(in), n = fz_u8(in);
	const struct fz_fwd *r = fz.ring_n && !(which & 0x80) ? &fz.ring[which % fz.ring_n] : NULL;
	uint8_t *m = fz.upstream_buf;
	struct wg_packet w = {.buf = m, .cap = sizeof(fz.upstream_buf)};
	const struct dp_q100 *q;
	uint64_t now_ms;
	size_t len = 0;
	int match = -1;
	bool ret, expect;

	fz_batch_end(); /* the engine ends a TUN batch before reading UDP */
	memset(m, 0, sizeof(fz.upstream_buf));
	q = fz.dp->q100;
	now_ms = fz.now_ns / 1000000;
	if ((how & 3) == 1) {
		/* An ID and any bytes. */
		if (r)
			memcpy(m, r->bytes, 2);
		else
			fz_take(in, m, 2);
		len = 2 + fz_take(in, m + 2, n * 6u);
	} else {
		/* The query back with QR (unless mode 3), then an answer's
		 * bytes, or zeros up to a size past what the client takes. */
		if (r) {
			memcpy(m, r->bytes, r->len);
			len = r->len;
		} else {
			len = fz_take(in, m, 12);
		}
		if (len >= 4) {
			m[2] |= (how & 3) == 3 ? 0 : 0x80;
			m[3] = (uint8_t)(0x80 | (how >> 4));
			if (len >= 8)
				fz_set16(m + 6, (how >> 2) & 3);
		}
		if ((how & 3) == 2) {
			size_t to = 256 + (size_t)n * 5;

			if (to > w.cap)
				to = w.cap;
			if (to > len) {
				memset(m + len, 0, to - len);
				len = to;
			}
			if ((how & 0x80) && len > 12 + 5) {
				/* A question as long as the answer. */
				for (size_t i = 12; i + 5 < len; i += 2) {
					m[i] = 1;
					m[i + 1] = 'a';
				}
				memcpy(m + len - 5, "\0\0\1\0\1", 5);
			}
			if ((how & 0x40) && len > 12)
				m[12] = 0xc0; /* a pointer in the question */
		} else {
			len += fz_take(in, m + len, n);
		}
	}
	w.len = len;
	fz_source(from, r, &w.addr);

	/* Which entry should take it: the first waiting one (at most
	 * DP_Q100_FWD_MS old) with its ID that asked that source. */
	if (q && len >= 12 && (m[2] & 0x80) && now_ms <= q->fwd_until_ms) {
		for (size_t i = 0; i < DP_Q100_FWD && match < 0; i++) {
			const struct dp_q100_fwd *f = &q->fwd[i];

			if (!f->at_ms || now_ms - f->at_ms > DP_Q100_FWD_MS ||
			    f->up_id != fz_get16(m))
				continue;
			for (size_t k = 0; k < f->n_to && match < 0; k++)
				if (fz_same_source(&w.addr, &f->to[k]))
					match = (int)i;
		}
	}
	expect = match >= 0;
	fz.in_upstream = true;
	fz.upstream_udp_max = match >= 0 ? q->fwd[match].client_udp_max : 0;
	ret = dataplane__q100_upstream_rx(fz.dp, &w, fz.now_ns);
	fz.in_upstream = false;
	if (ret != expect)
		abort(); /* an answer taken that waits for nothing, or one lost */
	if (ret && q->fwd[match].at_ms)
		abort(); /* answered, and still waiting */
	if (fz.dp->q100 && fz.dp->q100->out.n)
		abort(); /* an answer is written at once */
}

/* ---- the script ------------------------------------------------------------ */

static void fz_setup(void)
{
	/* Peer "many" has 32 IPv4 and 32 IPv6 addresses: its answers need
	 * TC over UDP and several segments over TCP. */
	static char json[8192];
	struct mapjson_map_response *r = NULL;
	const char *why = NULL;
	size_t n;

	if (randombytes_set_implementation(&fz_rng_impl) != 0 || sodium_init() < 0)
		abort();
	log_set_level(LOG_ERR);
	n = (size_t)snprintf(
		json, sizeof(json), "%s",
		"{\"Node\":{\"ID\":1,\"Name\":\"self.tail1234.ts.net.\",\"Key\":\"nodekey:"
		"0101010101010101010101010101010101010101010101010101010101010101\","
		"\"Addresses\":[\"100.64.0.1/32\",\"fd7a:115c:a1e0::1/128\"]},"
		"\"Domain\":\"tail1234.ts.net\","
		"\"Peers\":[{\"ID\":2,\"Name\":\"peer1.tail1234.ts.net.\",\"Key\":\"nodekey:"
		"0202020202020202020202020202020202020202020202020202020202020202\","
		"\"Addresses\":[\"100.64.0.2/32\",\"fd7a:115c:a1e0::2/128\"]},"
		"{\"ID\":3,\"Name\":\"peer2.tail1234.ts.net.\",\"Key\":\"nodekey:"
		"0303030303030303030303030303030303030303030303030303030303030303\","
		"\"Addresses\":[\"100.64.0.3/32\"]},"
		"{\"ID\":4,\"Name\":\"many.tail1234.ts.net.\",\"Addresses\":[");
	for (int i = 0; i < 32 && n < sizeof(json); i++)
		n += (size_t)snprintf(json + n, sizeof(json) - n,
				      "\"100.70.0.%d/32\",\"fd7a:115c:a1e0::70:%x/128\"%s", i + 1,
				      i + 1, i < 31 ? "," : "");
	if (n < sizeof(json))
		n += (size_t)snprintf(
			json + n, sizeof(json) - n, "%s",
			"]}],"
			"\"DNSConfig\":{\"Proxied\":true,\"Resolvers\":[{\"Addr\":\"10.0.0.53\"},"
			"{\"Addr\":\"https://dns.example/dns-query\"},"
			"{\"Addr\":\"[fd00::53]:5353\"}],"
			"\"Routes\":{\"corp.example.\":[{\"Addr\":\"10.0.0.54:5353\"},"
			"{\"Addr\":\"tls://dns.corp.example\"}],"
			"\"v6.example.\":[{\"Addr\":\"[fd00::54]\"}],"
			"\"bad.example.\":[{\"Addr\":\"dns.bad.example\"}],"
			"\"local.example.\":[]},\"Domains\":[\"tail1234.ts.net\"],"
			"\"ExtraRecords\":[{\"Name\":\"svc.internal.example.\",\"Type\":\"A\","
			"\"Value\":\"100.90.1.1\"}]}}");
	if (n >= sizeof(json))
		abort();
	if (mapjson_parse_map_response(json, n, &r, &why) < 0 ||
	    netmap_apply(NULL, r, FZ_NOW, &fz.nm, &why) < 0)
		abort();
	mapjson_map_response_free(r);

	fz.dp = xcalloc(1, sizeof(*fz.dp));
	fz.dp->tun_fd = fz.dp->ep = fz.dp->evfd = fz.dp->tfd = -1;
	fz.dp->fs = filter_state_new();
	if (dataplane_config_from_netmap(fz.nm, FZ_NOW, fz.dp->fs, &fz.dp->cur, &why) < 0 ||
	    !fz.dp->cur->dns)
		abort();
	dataplane__magic_init(fz.dp); /* the disco queue */
}

static void fz_reset(void)
{
	fz.dp->disco_out.n = 0;
	memset(&fz.dp->st, 0, sizeof(fz.dp->st));
	fz.now_ns = FZ_T0_NS;
	fz.rng = 0x9e3779b9;
	fz.tun_fail = false;
	fz.batch = 0;
	fz.in_upstream = false;
	memset(fz.t, 0, sizeof(fz.t));
	fz.ring_n = fz.ring_next = 0;
}

static void fz_time(uint8_t step)
{
	uint64_t ms;

	if (step < 100)
		ms = step;
	else if (step < 200)
		ms = (uint64_t)(step - 100) * 100;
	else if (step == 255)
		ms = DP_Q100_FWD_MS;
	else if (step == 254)
		ms = DP_Q100_TCP_IDLE_MS;
	else
		ms = (uint64_t)(step - 200) * 1000;
	fz_batch_end();
	fz.now_ns += ms * 1000000;
}

/* One event of the script (its op byte already read). */
static void fz_event(struct fz_in *in, uint8_t op)
{
	switch (op) {
	case OP_UDP_RAW: {
		uint8_t payload[FZ_PKT_MAX];
		unsigned sel = fz_u8(in);
		uint8_t l = fz_u8(in);
		size_t len = l < 200 ? l : (size_t)(l - 200) * 32;

		len = fz_take(in, payload, len);
		fz_udp(sel, payload, len, FZ_EITHER);
		break;
	}
	case OP_UDP_QUERY: {
		uint8_t spec[5], msg[FZ_QUERY_MAX];
		unsigned sel = fz_u8(in);
		enum fz_route route;
		size_t len;

		for (int i = 0; i < 5; i++)
			spec[i] = fz_u8(in);
		len = fz_query(spec, msg, &route);
		fz_udp(sel, msg, len, route);
		break;
	}
	case OP_TCP_RAW:
		fz_op_tcp_raw(in);
		break;
	case OP_TCP_QUERY:
		fz_op_tcp_query(in);
		break;
	case OP_TCP_OPEN: {
		unsigned sel = fz_u8(in);
		uint8_t b = fz_u8(in);

		fz_tcp_open(sel, b == 0xff ? 0xfffffffeu : (uint32_t)b * 0x01000193u);
		break;
	}
	case OP_UPSTREAM:
		fz_op_upstream(in);
		break;
	case OP_TIME:
		fz_time(fz_u8(in));
		break;
	case OP_FLUSH:
		fz_batch_end();
		break;
	case OP_TUN_FAIL:
		fz.tun_fail = fz_u8(in) & 1;
		break;
	}
	fz_check_state();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = {.p = data, .n = size}, last = {.p = data, .n = 0};

	if (!fz.dp)
		fz_setup();
	fz_reset();
	for (int ev = 0; in.n && ev < FZ_MAX_EVENTS; ev++) {
		const uint8_t *at = in.p;
		uint8_t op = fz_u8(&in) % OP_COUNT;

		if (op == OP_REPEAT) {
			/* The previous event again (the same bytes), 1 to 64
			 * times: many queries from a short input. */
			unsigned times = fz_u8(&in) % 64 + 1;

			for (unsigned k = 0; k < times && last.n && ev < FZ_MAX_EVENTS; k++, ev++) {
				struct fz_in again = last;

				fz_event(&again, fz_u8(&again) % OP_COUNT);
			}
			continue;
		}
		fz_event(&in, op);
		last = (struct fz_in){.p = at, .n = (size_t)(in.p - at)};
	}
	fz_batch_end();
	fz_check_state();
	/* Freed here rather than before the next input: libFuzzer looks for
	 * leaks after every input that mallocs more than it frees. */
	dataplane__q100_free(fz.dp);
	return 0;
}
