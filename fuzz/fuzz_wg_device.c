/* Fuzz target for the WireGuard device's receive path as a worker runs it:
 * datagrams into wg_device_udp_rx() of device D, with the index table, the
 * handshake state machine across messages, staged packets, the cookie gate
 * under load, session rotation, keepalives and the AllowedIPs check of what
 * comes out on D's TUN side.
 *
 * Three devices live in memory: D (the one under test) and its peers P and
 * Q, real devices whose datagrams are genuine, so the fuzzer reaches
 * sessions without forging a MAC. The input is a script of records
 *   [u8 op][u16 len, little-endian][len bytes]   (at most MAX_RECORDS)
 * whose ops send plaintext through P or Q, deliver (and maybe mutate) what
 * they sent, replay old datagrams, feed raw datagrams from chosen sources,
 * run the clock and the timers, reconfigure D's peers and set D's load.
 *
 * What must hold whatever the input (abort() otherwise):
 *   - every packet D hands to TUN is one P or Q really sent (its content is
 *     regenerated from its sender and sequence number), never twice, and
 *     its inner source maps to the sending peer by longest-prefix match
 *     over D's current AllowedIPs; its length is its IP length;
 *   - what P and Q hand to TUN comes from D's AllowedIPs;
 *   - udp_rx returns what it added; every batch slot keeps a distinct
 *     buffer of the caller's, and packets stay inside their buffers.
 * Randomness and TAI64N come from a counter and the simulated clock, and
 * every device and buffer is created and freed per input, so each input
 * runs the same way every time. */
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <sodium.h>

#include "common/ip.h"
#include "common/keys.h"
#include "common/log.h"
#include "worker/wg/wg_device.h"
#include "worker/wg/wg_noise.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum fuzz_limits {
	NODE_D = 0,
	NODE_P = 1,
	NODE_Q = 2,
	NODES = 3,
	SLOTS = 16,
	BUF_LEN = 2048,
	MAX_RECORDS = 64,
	HISTORY = 8,
	MAX_SEQ = 512,
	MAX_ADVANCE_MS = 10000,
	STEP_MS = 20,
	PUMP_ROUNDS = 8,
	/* The marker at the start of a generated packet's payload. */
	PAYLOAD_MAGIC = 0xa7,
	PAYLOAD_HDR = 6, /* magic, sender, u32 seq */
	STAGED_PER_PEER = 4,
	STAGED_POOL = 6,
};

enum fuzz_op {
	OP_RAW,	      /* [src sel][datagram...] into D */
	OP_PEER_SEND, /* [flags][size]: P or Q sends to D through its TUN */
	OP_DELIVER,   /* [from][drop mask][mutate at][xor bytes...] P/Q -> D */
	OP_REPLAY,    /* [history][src sel][mutate at][xor bytes...] -> D */
	OP_FROM_D,    /* [drop mask]: D's datagrams to P and Q */
	OP_ADVANCE,   /* [ms lo][ms hi][pump]: the clock and every timer */
	OP_D_TUN,     /* [sel][raw IP packet...]: D sends to a peer */
	OP_LOAD,      /* [queued handshakes] of D */
	OP_SET_PEERS, /* [config bits] of D */
	OP_INITIATE,  /* [who]: an explicit handshake (bit 2: on a new path) */
	OP_PUMP,      /* deliver everything until quiet */
	OP_COUNT,
};

/* D's peer configuration bits (OP_SET_PEERS). */
enum fuzz_conf {
	CONF_P = 1U << 0,
	CONF_Q = 1U << 1,
	CONF_Q_ENDPOINT = 1U << 2,
	CONF_Q_WIDE = 1U << 3, /* Q also gets 100.64.0.0/24, around P's /32 */
	CONF_P_KEEPALIVE = 1U << 4,
	CONF_P_AS_Q = 1U << 5, /* P's AllowedIPs are Q's addresses */
	CONF_INITIAL = CONF_P | CONF_Q | CONF_Q_ENDPOINT,
};

/* P and D have wireguard.json's initiator and responder keys; Q its own. */
static const uint8_t PRIVATE[NODES][WG_KEY_LEN] = {
	{0x48, 0x74, 0x89, 0xa5, 0x69, 0x37, 0x54, 0xb2, 0x4b, 0xdb, 0xf3,
	 0x50, 0x87, 0xcb, 0xe0, 0xb7, 0x4c, 0x13, 0xe5, 0xff, 0x5b, 0xa6,
	 0xc8, 0xb1, 0x67, 0xca, 0x6e, 0x06, 0x84, 0xf3, 0xc6, 0x48},
	{0x90, 0x26, 0xa8, 0xfc, 0x22, 0xa4, 0xbf, 0xe6, 0x5b, 0x20, 0xab,
	 0x79, 0xe7, 0xe1, 0x6d, 0x38, 0xd4, 0x56, 0x4f, 0x06, 0x9c, 0x51,
	 0x49, 0xe7, 0x29, 0x62, 0x63, 0x92, 0x75, 0xa7, 0x74, 0x64},
	{0x28, 0x61, 0x1e, 0x53, 0x9a, 0x04, 0x7c, 0xd2, 0x3f, 0x88, 0x15,
	 0xe6, 0x71, 0x0b, 0xc4, 0x39, 0x5d, 0xa2, 0x6e, 0x97, 0x13, 0xf0,
	 0x2c, 0x8b, 0x44, 0xd9, 0x66, 0x0a, 0xb3, 0x7e, 0x25, 0x51},
};

struct datagram {
	uint8_t bytes[BUF_LEN];
	size_t len;
	int from;
};

struct node {
	struct wg_device *dev;
	struct wg_batch tun_in, udp_in, tun_out, udp_out;
	struct wg_packet slots[4 * SLOTS];
	uint8_t *bufs[4 * SLOTS]; /* sorted, for the buffer check */
	struct sockaddr_storage addr;
	uint32_t next_seq; /* packets generated for D (P, Q) or for peers (D) */
};

struct world {
	struct node n[NODES];
	uint8_t pub[NODES][WG_KEY_LEN];
	uint64_t now;
	uint64_t random_counter;
	unsigned int conf;
	/* D's current AllowedIPs, for the independent longest-prefix match. */
	struct ip_prefix aips[NODES][3];
	size_t n_aips[NODES];
	uint8_t delivered[NODES][MAX_SEQ];
	struct datagram history[HISTORY];
	size_t history_next;
};

static struct world w;
static uint8_t public_keys[NODES][WG_KEY_LEN];

/* env.random: a ChaCha20 stream keyed by a per-input call counter. */
static void fuzz_random(void *arg, void *buf, size_t n)
{
	uint8_t seed[randombytes_SEEDBYTES] = {0};
	struct world *wd = arg;

	memcpy(seed, &wd->random_counter, sizeof(wd->random_counter));
	wd->random_counter++;
	randombytes_buf_deterministic(buf, n, seed);
}

static void fuzz_tai64n(void *arg, uint8_t out[static WG_TIMESTAMP_LEN])
{
	struct world *wd = arg;

	wg_noise_tai64n_from(out, 1700000000 + wd->now / WG_NSEC_PER_SEC,
			     (uint32_t)(wd->now % WG_NSEC_PER_SEC));
}

static void node_addr(struct sockaddr_storage *ss, int i)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;

	memset(ss, 0, sizeof(*ss));
	sin->sin_family = AF_INET;
	sin->sin_port = htons(51820);
	sin->sin_addr.s_addr = htonl(0x0a000001 + (uint32_t)i);
}

/* The address a datagram claims to come from (sel picks). */
static void source_addr(struct sockaddr_storage *ss, uint8_t sel)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;

	switch (sel % 5) {
	case 0:
		*ss = w.n[NODE_P].addr;
		break;
	case 1:
		*ss = w.n[NODE_Q].addr;
		break;
	case 2:
		memset(ss, 0, sizeof(*ss));
		sin->sin_family = AF_INET;
		sin->sin_port = htons(4242);
		sin->sin_addr.s_addr = htonl(0xc0000209);
		break;
	case 3:
		memset(ss, 0, sizeof(*ss));
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(4242);
		sin6->sin6_addr.s6_addr[0] = 0x20;
		sin6->sin6_addr.s6_addr[1] = 0x01;
		sin6->sin6_addr.s6_addr[2] = 0x0d;
		sin6->sin6_addr.s6_addr[3] = 0xb8;
		sin6->sin6_addr.s6_addr[15] = 9;
		break;
	default:
		memset(ss, 0, sizeof(*ss));
		ss->ss_family = AF_UNIX;
		break;
	}
}

/* The node whose UDP address ss is, or -1. */
static int node_of(const struct sockaddr_storage *ss)
{
	for (int i = 0; i < NODES; i++) {
		if (ss->ss_family == AF_INET &&
		    memcmp(ss, &w.n[i].addr, sizeof(struct sockaddr_in)) == 0)
			return i;
	}
	return -1;
}

static void prefix(struct ip_prefix *p, int family, uint8_t len, uint8_t last, uint8_t third)
{
	memset(p, 0, sizeof(*p));
	p->family = family;
	p->len = len;
	if (family == AF_INET) {
		p->addr[0] = 100;
		p->addr[1] = 64;
		p->addr[2] = third;
		p->addr[3] = last;
	} else {
		static const uint8_t ula[6] = {0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0};

		memcpy(p->addr, ula, sizeof(ula));
		p->addr[15] = last;
	}
}

/* Node i's inner addresses: 100.64.0.(i+1) and fd7a:115c:a1e0::(i+1). */
static void node_prefixes(struct ip_prefix out[2], int i)
{
	prefix(&out[0], AF_INET, 32, (uint8_t)(i + 1), 0);
	prefix(&out[1], AF_INET6, 128, (uint8_t)(i + 1), 0);
}

static void peer_config(struct wg_peer_config *pc, int peer, const struct ip_prefix *aips,
			size_t n_aips, const struct sockaddr_storage *ep, size_t n_ep)
{
	memset(pc, 0, sizeof(*pc));
	memcpy(pc->public_key, public_keys[peer], WG_KEY_LEN);
	pc->allowed_ips = aips;
	pc->n_allowed_ips = n_aips;
	pc->endpoints = ep;
	pc->n_endpoints = n_ep;
}

/* D's peers as conf describes; the model of its AllowedIPs follows. */
static void set_d_peers(unsigned int conf)
{
	struct wg_peer_config pc[2];
	const char *why = NULL;
	size_t n = 0;

	/* Datagrams D emitted wait in its out batch across ops; their peer
	 * pointers die with a removed peer (a worker has sent them by now). */
	for (size_t k = 0; k < w.n[NODE_D].udp_out.n; k++)
		w.n[NODE_D].udp_out.pkt[k].peer = NULL;
	memset(w.n_aips, 0, sizeof(w.n_aips));
	if (conf & CONF_P) {
		node_prefixes(w.aips[NODE_P], (conf & CONF_P_AS_Q) ? NODE_Q : NODE_P);
		w.n_aips[NODE_P] = 2;
		peer_config(&pc[n], NODE_P, w.aips[NODE_P], 2, &w.n[NODE_P].addr, 1);
		pc[n].persistent_keepalive_s = (conf & CONF_P_KEEPALIVE) ? 1 : 0;
		n++;
	}
	/* P's addresses go to P alone: with P_AS_Q, Q keeps only its wide
	 * prefix (if any) so no prefix is given twice. */
	if (conf & CONF_Q) {
		size_t k = 0;

		if (!((conf & CONF_P) && (conf & CONF_P_AS_Q))) {
			node_prefixes(w.aips[NODE_Q], NODE_Q);
			k = 2;
		}
		if (conf & CONF_Q_WIDE)
			prefix(&w.aips[NODE_Q][k++], AF_INET, 24, 0, 0);
		w.n_aips[NODE_Q] = k;
		peer_config(&pc[n], NODE_Q, w.aips[NODE_Q], k, &w.n[NODE_Q].addr,
			    (conf & CONF_Q_ENDPOINT) ? 1 : 0);
		n++;
	}
	if (wg_device_set_peers(w.n[NODE_D].dev, pc, n, w.now, &why) != 0)
		abort();
	w.conf = conf;
}

static int ptr_cmp(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t) * (uint8_t *const *)a, y = (uintptr_t) * (uint8_t *const *)b;

	return x < y ? -1 : x > y;
}

static void node_init(int i)
{
	struct node *nd = &w.n[i];
	struct wg_batch *batches[4] = {&nd->tun_in, &nd->udp_in, &nd->tun_out, &nd->udp_out};
	struct wg_device_config cfg;
	const char *why = NULL;

	for (size_t k = 0; k < 4 * SLOTS; k++) {
		/* One allocation per buffer: ASan sees a write past cap. */
		nd->bufs[k] = malloc(BUF_LEN);
		if (!nd->bufs[k])
			abort();
		nd->slots[k] = (struct wg_packet){.buf = nd->bufs[k], .cap = BUF_LEN};
	}
	for (size_t b = 0; b < 4; b++)
		*batches[b] = (struct wg_batch){.pkt = nd->slots + b * SLOTS, .n = 0, .cap = SLOTS};
	qsort(nd->bufs, 4 * SLOTS, sizeof(nd->bufs[0]), ptr_cmp);
	node_addr(&nd->addr, i);

	/* The tests' shortened timers, so rekeys and expiry happen within a
	 * few simulated seconds; small staging bounds so eviction does too. */
	wg_device_config_default(&cfg);
	cfg.timers.rekey_after_ns = 2 * WG_NSEC_PER_SEC;
	cfg.timers.reject_after_ns = 4 * WG_NSEC_PER_SEC;
	cfg.timers.rekey_attempt_ns = 3 * WG_NSEC_PER_SEC;
	cfg.timers.rekey_timeout_ns = 500 * UINT64_C(1000000);
	cfg.timers.keepalive_ns = 1 * WG_NSEC_PER_SEC;
	cfg.timers.jitter_max_ns = 30 * UINT64_C(1000000);
	cfg.staged_per_peer = STAGED_PER_PEER;
	cfg.staged_pool = STAGED_POOL;
	memcpy(cfg.private_key, PRIVATE[i], WG_KEY_LEN);
	cfg.env = (struct wg_device_env){.random = fuzz_random, .tai64n = fuzz_tai64n, .arg = &w};
	if (wg_device_new(&cfg, w.now, &nd->dev, &why) != 0)
		abort();
	sodium_memzero(cfg.private_key, WG_KEY_LEN);
}

static void world_init(void)
{
	struct ip_prefix d_aips[2];
	struct wg_peer_config pc;
	const char *why = NULL;

	memset(&w, 0, sizeof(w));
	w.now = 1000 * WG_NSEC_PER_SEC;
	for (int i = 0; i < NODES; i++)
		node_init(i);
	node_prefixes(d_aips, NODE_D);
	for (int i = NODE_P; i <= NODE_Q; i++) {
		peer_config(&pc, NODE_D, d_aips, 2, &w.n[NODE_D].addr, 1);
		if (wg_device_set_peers(w.n[i].dev, &pc, 1, w.now, &why) != 0)
			abort();
	}
	set_d_peers(CONF_INITIAL);
}

static void world_destroy(void)
{
	for (int i = 0; i < NODES; i++) {
		wg_device_free(w.n[i].dev);
		for (size_t k = 0; k < 4 * SLOTS; k++)
			free(w.n[i].bufs[k]);
	}
}

/* Every slot still holds one of the node's buffers, no buffer twice. */
static void check_buffers(int i)
{
	struct node *nd = &w.n[i];
	uint8_t *seen[4 * SLOTS];

	for (size_t k = 0; k < 4 * SLOTS; k++) {
		if (nd->slots[k].cap != BUF_LEN)
			abort();
		seen[k] = nd->slots[k].buf;
	}
	qsort(seen, 4 * SLOTS, sizeof(seen[0]), ptr_cmp);
	if (memcmp(seen, nd->bufs, sizeof(seen)) != 0)
		abort();
}

static void check_bounds(const struct wg_packet *p)
{
	if (!p->buf || p->cap != BUF_LEN || p->off > p->cap || p->len > p->cap - p->off)
		abort();
}

static bool prefix_match(const struct ip_prefix *pfx, int family, const uint8_t *addr)
{
	size_t full = pfx->len / 8;
	unsigned int rest = pfx->len % 8;

	if (pfx->family != family)
		return false;
	if (memcmp(pfx->addr, addr, full) != 0)
		return false;
	return rest == 0 || ((pfx->addr[full] ^ addr[full]) & (0xff00U >> rest) & 0xff) == 0;
}

/* The node of D's peer whose AllowedIPs match addr longest, or -1. */
static int d_lookup(int family, const uint8_t *addr)
{
	int best = -1, best_len = -1;

	for (int i = NODE_P; i <= NODE_Q; i++) {
		for (size_t k = 0; k < w.n_aips[i]; k++) {
			const struct ip_prefix *pfx = &w.aips[i][k];

			if (prefix_match(pfx, family, addr) && pfx->len > best_len) {
				best = i;
				best_len = pfx->len;
			}
		}
	}
	return best;
}

/* Our own reading of an IP header: family, source, length; or -1. */
static int ip_source(const uint8_t *b, size_t len, int *family, const uint8_t **src)
{
	if (len >= 20 && b[0] >> 4 == 4) {
		*family = AF_INET;
		*src = b + 12;
		return (((size_t)b[2] << 8) | b[3]) == len ? 0 : -1;
	}
	if (len >= 40 && b[0] >> 4 == 6) {
		*family = AF_INET6;
		*src = b + 8;
		return 40 + (((size_t)b[4] << 8) | b[5]) == len ? 0 : -1;
	}
	return -1;
}

static uint8_t payload_byte(int sender, uint32_t seq, size_t k)
{
	return (uint8_t)(seq * 7 + k * 13 + (size_t)sender);
}

/* An IP packet from node `from` (inner source src_node's address) to
 * node `to`, its payload [magic][from][seq][pattern], at off HEADROOM. */
static void make_packet(struct wg_packet *p, int from, int src_node, int to, bool v6,
			size_t payload)
{
	struct ip_prefix src[2], dst[2];
	uint8_t *b = p->buf + WG_DEVICE_HEADROOM;
	uint32_t seq = w.n[from].next_seq++;
	size_t hdr = v6 ? 40 : 20, len;

	payload += PAYLOAD_HDR;
	len = hdr + payload;
	node_prefixes(src, src_node);
	node_prefixes(dst, to);
	memset(b, 0, hdr);
	if (v6) {
		b[0] = 0x60;
		b[4] = (uint8_t)(payload >> 8);
		b[5] = (uint8_t)payload;
		b[6] = 17;
		b[7] = 64;
		memcpy(b + 8, src[1].addr, 16);
		memcpy(b + 24, dst[1].addr, 16);
	} else {
		b[0] = 0x45;
		b[2] = (uint8_t)(len >> 8);
		b[3] = (uint8_t)len;
		b[8] = 64;
		b[9] = 17;
		memcpy(b + 12, src[0].addr, 4);
		memcpy(b + 16, dst[0].addr, 4);
	}
	b[hdr] = PAYLOAD_MAGIC;
	b[hdr + 1] = (uint8_t)from;
	memcpy(b + hdr + 2, &seq, sizeof(seq));
	for (size_t k = hdr + PAYLOAD_HDR; k < len; k++)
		b[k] = payload_byte(from, seq, k);
	p->off = WG_DEVICE_HEADROOM;
	p->len = len;
	p->peer = NULL;
}

static int node_of_peer(const struct wg_peer *peer)
{
	const uint8_t *key;

	if (!peer)
		abort();
	key = wg_peer_public_key(peer);
	for (int i = 0; i < NODES; i++) {
		if (memcmp(key, public_keys[i], WG_KEY_LEN) == 0)
			return i;
	}
	abort();
}

/* What D put on TUN: only what its peers sent, once, from their
 * AllowedIPs. */
static void drain_d_tun(void)
{
	struct wg_batch *b = &w.n[NODE_D].tun_out;

	for (size_t k = 0; k < b->n; k++) {
		const struct wg_packet *p = &b->pkt[k];
		const uint8_t *ip = p->buf + p->off, *src;
		int family, from = node_of_peer(p->peer);
		size_t hdr;
		uint32_t seq;

		check_bounds(p);
		if (from == NODE_D || ip_source(ip, p->len, &family, &src) < 0)
			abort();
		if (d_lookup(family, src) != from)
			abort();
		hdr = family == AF_INET ? 20 : 40;
		if (p->len < hdr + PAYLOAD_HDR || ip[hdr] != PAYLOAD_MAGIC || ip[hdr + 1] != from)
			abort();
		memcpy(&seq, ip + hdr + 2, sizeof(seq));
		if (seq >= w.n[from].next_seq || seq >= MAX_SEQ || w.delivered[from][seq]++)
			abort();
		for (size_t x = hdr + PAYLOAD_HDR; x < p->len; x++) {
			if (ip[x] != payload_byte(from, seq, x))
				abort();
		}
	}
	b->n = 0;
}

/* What P or Q put on TUN: from D's addresses, from D. */
static void drain_peer_tun(int i)
{
	struct wg_batch *b = &w.n[i].tun_out;
	struct ip_prefix d[2];

	node_prefixes(d, NODE_D);
	for (size_t k = 0; k < b->n; k++) {
		const struct wg_packet *p = &b->pkt[k];
		const uint8_t *src;
		int family;

		check_bounds(p);
		if (node_of_peer(p->peer) != NODE_D ||
		    ip_source(p->buf + p->off, p->len, &family, &src) < 0 ||
		    !prefix_match(&d[family == AF_INET ? 0 : 1], family, src))
			abort();
	}
	b->n = 0;
}

/* Runs node i's udp_rx on its pending input. */
static void node_udp_rx(int i)
{
	struct node *nd = &w.n[i];
	size_t before = nd->tun_out.n, got;

	if (nd->udp_in.n == 0)
		return;
	got = wg_device_udp_rx(nd->dev, &nd->udp_in, &nd->tun_out, &nd->udp_out, w.now);
	if (nd->udp_in.n != 0 || got != nd->tun_out.n - before)
		abort();
	if (i == NODE_D)
		drain_d_tun();
	else
		drain_peer_tun(i);
}

/* Queues a datagram for node `to` (flushing a full batch first). */
static void queue_datagram(int to, const uint8_t *bytes, size_t len,
			   const struct sockaddr_storage *src)
{
	struct wg_batch *in = &w.n[to].udp_in;
	struct wg_packet *q;

	if (in->n == in->cap)
		node_udp_rx(to);
	q = &in->pkt[in->n++];
	if (len > q->cap)
		len = q->cap;
	memcpy(q->buf, bytes, len);
	q->off = 0;
	q->len = len;
	q->addr = *src;
	q->peer = NULL;
}

static void remember(int from, const uint8_t *bytes, size_t len)
{
	struct datagram *d = &w.history[w.history_next++ % HISTORY];

	memcpy(d->bytes, bytes, len);
	d->len = len;
	d->from = from;
}

/* XORs mask into the datagram at offset `at` (wrapping). */
static void mutate(uint8_t *bytes, size_t len, uint8_t at, const uint8_t *mask, size_t n)
{
	if (len == 0)
		return;
	for (size_t k = 0; k < n; k++)
		bytes[(at + k) % len] ^= mask[k];
}

/* Every datagram node i sent goes to the node it is addressed to, except
 * those whose bit is set in drop (the first eight); the one at index
 * mutate_at (if a mask is given) is changed first. */
static void deliver_from(int i, uint8_t drop, size_t mutate_index, const uint8_t *mask,
			 size_t mask_len, uint8_t at)
{
	struct wg_batch *out = &w.n[i].udp_out;
	uint8_t tmp[BUF_LEN];

	for (size_t k = 0; k < out->n; k++) {
		const struct wg_packet *p = &out->pkt[k];
		int to = node_of(&p->addr);

		check_bounds(p);
		/* A device never sends on behalf of itself. */
		if (p->peer && node_of_peer(p->peer) == i)
			abort();
		if (to < 0 || to == i || (k < 8 && (drop >> k) & 1))
			continue;
		/* Only D talks to P and Q. */
		if (i != NODE_D && to != NODE_D)
			abort();
		memcpy(tmp, p->buf + p->off, p->len);
		if (i != NODE_D)
			remember(i, tmp, p->len);
		if (k == mutate_index)
			mutate(tmp, p->len, at, mask, mask_len);
		queue_datagram(to, tmp, p->len, &w.n[i].addr);
	}
	out->n = 0;
}

static void op_raw(const uint8_t *b, size_t len)
{
	struct sockaddr_storage src;

	if (len < 1)
		return;
	source_addr(&src, b[0]);
	queue_datagram(NODE_D, b + 1, len - 1, &src);
	node_udp_rx(NODE_D);
}

/* flags: bit 0 Q (else P), bit 1 IPv6, bit 2 spoofed inner source (the
 * other peer's), bits 3-4 count - 1; size: payload / 5 bytes. */
static void op_peer_send(const uint8_t *b, size_t len)
{
	uint8_t flags = len > 0 ? b[0] : 0, size = len > 1 ? b[1] : 16;
	int from = (flags & 1) ? NODE_Q : NODE_P;
	int src = (flags & 4) ? (from == NODE_P ? NODE_Q : NODE_P) : from;
	struct node *nd = &w.n[from];
	size_t count = ((flags >> 3) & 3) + 1;

	for (size_t k = 0; k < count && w.n[from].next_seq < MAX_SEQ; k++)
		make_packet(&nd->tun_in.pkt[nd->tun_in.n++], from, src, NODE_D, flags & 2,
			    (size_t)size * 5);
	wg_device_tun_rx(nd->dev, &nd->tun_in, &nd->udp_out, w.now);
	if (nd->tun_in.n != 0)
		abort();
}

static void op_deliver(const uint8_t *b, size_t len)
{
	int from = (len > 0 && (b[0] & 1)) ? NODE_Q : NODE_P;
	uint8_t drop = len > 1 ? b[1] : 0;
	size_t index = len > 0 ? (b[0] >> 1) : SLOTS;

	if (len <= 3)
		index = SLOTS;
	deliver_from(from, drop, index, len > 3 ? b + 3 : NULL, len > 3 ? len - 3 : 0,
		     len > 2 ? b[2] : 0);
	node_udp_rx(NODE_D);
}

static void op_replay(const uint8_t *b, size_t len)
{
	const struct datagram *d;
	struct sockaddr_storage src;
	uint8_t tmp[BUF_LEN];

	if (len < 1)
		return;
	d = &w.history[(w.history_next + HISTORY - 1 - b[0] % HISTORY) % HISTORY];
	if (d->len == 0)
		return;
	if (len > 1)
		source_addr(&src, b[1]);
	else
		src = w.n[d->from].addr;
	memcpy(tmp, d->bytes, d->len);
	if (len > 3)
		mutate(tmp, d->len, b[2], b + 3, len - 3);
	queue_datagram(NODE_D, tmp, d->len, &src);
	node_udp_rx(NODE_D);
}

static void op_from_d(const uint8_t *b, size_t len)
{
	deliver_from(NODE_D, len > 0 ? b[0] : 0, SLOTS, NULL, 0, 0);
	node_udp_rx(NODE_P);
	node_udp_rx(NODE_Q);
}

/* Everything in flight is delivered, answers included, a few rounds. */
static void pump(void)
{
	for (int round = 0; round < PUMP_ROUNDS; round++) {
		if (w.n[NODE_P].udp_out.n + w.n[NODE_Q].udp_out.n + w.n[NODE_D].udp_out.n == 0)
			return;
		deliver_from(NODE_P, 0, SLOTS, NULL, 0, 0);
		deliver_from(NODE_Q, 0, SLOTS, NULL, 0, 0);
		node_udp_rx(NODE_D);
		deliver_from(NODE_D, 0, SLOTS, NULL, 0, 0);
		node_udp_rx(NODE_P);
		node_udp_rx(NODE_Q);
	}
}

static void op_advance(const uint8_t *b, size_t len)
{
	uint64_t ms = len > 1 ? (uint64_t)b[0] | (uint64_t)b[1] << 8 : 100;
	bool live = len > 2 && (b[2] & 1);

	if (ms > MAX_ADVANCE_MS)
		ms = MAX_ADVANCE_MS;
	for (uint64_t t = 0; t < ms; t += STEP_MS) {
		uint64_t step = ms - t < STEP_MS ? ms - t : STEP_MS;

		w.now += step * UINT64_C(1000000);
		for (int i = 0; i < NODES; i++)
			wg_device_timers(w.n[i].dev, w.now, &w.n[i].udp_out);
		if (live)
			pump();
	}
}

/* sel 0/1/2: a generated packet to P, Q or an address no peer has; else
 * the rest of the record as the IP packet. */
static void op_d_tun(const uint8_t *b, size_t len)
{
	struct node *d = &w.n[NODE_D];
	struct wg_packet *p = &d->tun_in.pkt[d->tun_in.n++];
	uint8_t sel = len > 0 ? b[0] : 0;

	if (sel < 3) {
		make_packet(p, NODE_D, NODE_D, sel == 2 ? 98 : sel + 1, false, 32);
	} else {
		size_t n = len - 1;

		if (n > BUF_LEN - WG_DEVICE_HEADROOM - WG_DEVICE_TAILROOM)
			n = BUF_LEN - WG_DEVICE_HEADROOM - WG_DEVICE_TAILROOM;
		memcpy(p->buf + WG_DEVICE_HEADROOM, b + 1, n);
		p->off = WG_DEVICE_HEADROOM;
		p->len = n;
		p->peer = NULL;
	}
	wg_device_tun_rx(d->dev, &d->tun_in, &d->udp_out, w.now);
	if (d->tun_in.n != 0)
		abort();
}

static void op_initiate(const uint8_t *b, size_t len)
{
	uint8_t who = len > 0 ? b[0] % 4 : 0;
	int from = who < 2 ? NODE_D : (who == 2 ? NODE_P : NODE_Q);
	int to = who < 2 ? NODE_P + who : NODE_D;
	int ret;

	/* Bit 2: as on a new path (the initiation in flight sent again). */
	if (len > 0 && (b[0] & 4))
		ret = wg_device_initiate_on_new_path(w.n[from].dev, public_keys[to], w.now,
						     &w.n[from].udp_out);
	else
		ret = wg_device_initiate(w.n[from].dev, public_keys[to], w.now, &w.n[from].udp_out);
	/* Only a peer D was told to forget can be unknown. */
	if (ret != 0 &&
	    (ret != -ENOENT || from != NODE_D || (w.conf & (to == NODE_P ? CONF_P : CONF_Q))))
		abort();
}

static void run_op(uint8_t op, const uint8_t *b, size_t len)
{
	switch (op % OP_COUNT) {
	case OP_RAW:
		op_raw(b, len);
		break;
	case OP_PEER_SEND:
		op_peer_send(b, len);
		break;
	case OP_DELIVER:
		op_deliver(b, len);
		break;
	case OP_REPLAY:
		op_replay(b, len);
		break;
	case OP_FROM_D:
		op_from_d(b, len);
		break;
	case OP_ADVANCE:
		op_advance(b, len);
		break;
	case OP_D_TUN:
		op_d_tun(b, len);
		break;
	case OP_LOAD:
		wg_device_set_load(w.n[NODE_D].dev, len > 0 ? b[0] : 0);
		break;
	case OP_SET_PEERS:
		set_d_peers(len > 0 ? b[0] : CONF_INITIAL);
		break;
	case OP_INITIATE:
		op_initiate(b, len);
		break;
	default:
		pump();
		break;
	}
	for (int i = 0; i < NODES; i++) {
		check_buffers(i);
		for (size_t k = 0; k < w.n[i].udp_out.n; k++)
			check_bounds(&w.n[i].udp_out.pkt[k]);
	}
}

static void fuzz_init_once(void)
{
	static bool done;

	if (done)
		return;
	if (sodium_init() < 0)
		abort();
	log_set_level(LOG_WARN);
	for (int i = 0; i < NODES; i++) {
		if (keys_public(public_keys[i], PRIVATE[i]) != 0)
			abort();
	}
	done = true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t pos = 0;

	fuzz_init_once();
	world_init();
	for (int r = 0; r < MAX_RECORDS && pos < size; r++) {
		uint8_t op = data[pos++];
		size_t len = 0;

		if (size - pos >= 2) {
			len = (size_t)data[pos] | (size_t)data[pos + 1] << 8;
			pos += 2;
		} else {
			pos = size;
		}
		if (len > size - pos)
			len = size - pos;
		run_op(op, data + pos, len);
		pos += len;
	}
	world_destroy();
	return 0;
}
