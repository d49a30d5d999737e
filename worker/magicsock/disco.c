/* Disco messages: addresses, classification, payload encoding, the box. */
#include "disco.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <sodium.h>

#include "stun.h"

_Static_assert((int)STUN_TXID_LEN == (int)DISCO_TXID_LEN, "disco and STUN share transaction ids");

/* "TS" and U+1F4AC in UTF-8. */
static const uint8_t MAGIC[DISCO_MAGIC_LEN] = {0x54, 0x53, 0xf0, 0x9f, 0x92, 0xac};
static const uint8_t V4_MAPPED[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
static const uint8_t DERP_MAGIC_IP4[4] = {127, 3, 3, 40};

_Static_assert(sizeof(((struct disco_shared *)0)->key) == crypto_box_BEFORENMBYTES,
	       "disco shared key is a NaCl box precomputed key");
_Static_assert(DISCO_NONCE_LEN == crypto_box_NONCEBYTES, "disco nonce is a NaCl box nonce");
_Static_assert(DISCO_BOX_TAG_LEN == crypto_box_MACBYTES, "disco box tag is Poly1305's");
_Static_assert(DISCO_MAX_PAYLOAD > 0 && DISCO_MAX_ENDPOINTS > 0, "limits");

bool disco_addr_is_valid(const struct disco_addr *a)
{
	static const struct disco_addr zero;

	return memcmp(a, &zero, sizeof(zero)) != 0;
}

bool disco_addr_is4(const struct disco_addr *a)
{
	return memcmp(a->ip, V4_MAPPED, sizeof(V4_MAPPED)) == 0;
}

bool disco_addr_equal(const struct disco_addr *a, const struct disco_addr *b)
{
	return a->port == b->port && memcmp(a->ip, b->ip, sizeof(a->ip)) == 0;
}

void disco_addr_from4(const uint8_t ip4[4], uint16_t port, struct disco_addr *out)
{
	memcpy(out->ip, V4_MAPPED, sizeof(V4_MAPPED));
	memcpy(out->ip + sizeof(V4_MAPPED), ip4, 4);
	out->port = port;
}

void disco_addr_derp(uint16_t region, struct disco_addr *out)
{
	disco_addr_from4(DERP_MAGIC_IP4, region, out);
}

bool disco_addr_is_derp(const struct disco_addr *a)
{
	return disco_addr_is4(a) && memcmp(a->ip + 12, DERP_MAGIC_IP4, 4) == 0;
}

int disco_addr_from_sockaddr(const struct sockaddr *sa, struct disco_addr *out)
{
	memset(out, 0, sizeof(*out));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		disco_addr_from4((const uint8_t *)&in->sin_addr, ntohs(in->sin_port), out);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		/* A mapped address is the IPv4 one: the same 16 bytes. */
		memcpy(out->ip, &in6->sin6_addr, sizeof(out->ip));
		out->port = ntohs(in6->sin6_port);
		return 0;
	}
	return -EAFNOSUPPORT;
}

size_t disco_addr_to_sockaddr(const struct disco_addr *a, struct sockaddr *sa, size_t cap)
{
	if (disco_addr_is4(a)) {
		struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons(a->port)};

		if (cap < sizeof(in))
			return 0;
		memcpy(&in.sin_addr, a->ip + 12, 4);
		memcpy(sa, &in, sizeof(in));
		return sizeof(in);
	}
	struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons(a->port)};

	if (cap < sizeof(in6))
		return 0;
	memcpy(&in6.sin6_addr, a->ip, sizeof(a->ip));
	memcpy(sa, &in6, sizeof(in6));
	return sizeof(in6);
}

char *disco_addr_format(const struct disco_addr *a, char *buf, size_t n)
{
	char ip[INET6_ADDRSTRLEN];

	if (disco_addr_is4(a)) {
		inet_ntop(AF_INET, a->ip + 12, ip, sizeof(ip));
		snprintf(buf, n, "%s:%u", ip, a->port);
	} else {
		inet_ntop(AF_INET6, a->ip, ip, sizeof(ip));
		snprintf(buf, n, "[%s]:%u", ip, a->port);
	}
	return buf;
}

bool disco_is_claimed(const uint8_t *p, size_t len)
{
	/* Four magic bytes already rule out WireGuard, whose first word is a
	 * little-endian 1..4, so a short box is dropped, never passed on. */
	return len >= DISCO_MIN_CLAIM_LEN && memcmp(p, MAGIC, DISCO_MAGIC_LEN) == 0;
}

bool disco_looks_like(const uint8_t *p, size_t len)
{
	return len >= DISCO_HEADER_LEN && memcmp(p, MAGIC, DISCO_MAGIC_LEN) == 0;
}

enum disco_kind disco_classify(const uint8_t *p, size_t len)
{
	if (stun_is(p, len))
		return DISCO_KIND_STUN;
	if (disco_is_claimed(p, len))
		return DISCO_KIND_DISCO;
	return DISCO_KIND_WIREGUARD;
}

const uint8_t *disco_sender(const uint8_t *p, size_t len)
{
	return disco_is_claimed(p, len) ? p + DISCO_MAGIC_LEN : NULL;
}

int disco_shared_init(struct disco_shared *s, const uint8_t peer_public[static DISCO_KEY_LEN],
		      const uint8_t own_private[static DISCO_KEY_LEN])
{
	if (crypto_box_beforenm(s->key, peer_public, own_private) != 0) {
		sodium_memzero(s->key, sizeof(s->key));
		return -EINVAL;
	}
	return 0;
}

void disco_shared_destroy(struct disco_shared *s)
{
	sodium_memzero(s->key, sizeof(s->key));
}

static void put_addr(uint8_t *out, const struct disco_addr *a)
{
	memcpy(out, a->ip, sizeof(a->ip));
	out[16] = (uint8_t)(a->port >> 8);
	out[17] = (uint8_t)a->port;
}

static void get_addr(const uint8_t *in, struct disco_addr *a)
{
	memcpy(a->ip, in, sizeof(a->ip));
	a->port = (uint16_t)(in[16] << 8 | in[17]);
}

static size_t body_len(const struct disco_msg *m)
{
	switch (m->type) {
	case DISCO_PING:
		if (m->ping.padding > DISCO_MAX_PAYLOAD)
			return SIZE_MAX;
		return DISCO_TXID_LEN +
		       (sodium_is_zero(m->ping.node_key, DISCO_NODE_KEY_LEN) ? 0
									     : DISCO_NODE_KEY_LEN) +
		       m->ping.padding;
	case DISCO_PONG:
		return DISCO_PONG_LEN;
	case DISCO_CALL_ME_MAYBE:
		if (m->cmm.n > DISCO_MAX_ENDPOINTS)
			return SIZE_MAX;
		return m->cmm.n * DISCO_ADDR_WIRE_LEN;
	}
	return 0;
}

int disco_marshal(const struct disco_msg *m, uint8_t *out, size_t cap)
{
	size_t body, len;
	uint8_t *d = out + DISCO_MSG_HEADER_LEN;

	if (m->type != DISCO_PING && m->type != DISCO_PONG && m->type != DISCO_CALL_ME_MAYBE)
		return -EINVAL;
	if (m->type == DISCO_CALL_ME_MAYBE && m->cmm.n && !m->cmm.raw)
		return -EINVAL;
	body = body_len(m);
	if (body > DISCO_MAX_PAYLOAD - DISCO_MSG_HEADER_LEN)
		return -EMSGSIZE;
	len = DISCO_MSG_HEADER_LEN + body;
	if (len > cap)
		return -EMSGSIZE;
	/* Upstream writes version 0 for every message it sends. */
	out[0] = m->type;
	out[1] = 0;
	switch (m->type) {
	case DISCO_PING:
		memcpy(d, m->ping.txid, DISCO_TXID_LEN);
		d += DISCO_TXID_LEN;
		if (!sodium_is_zero(m->ping.node_key, DISCO_NODE_KEY_LEN)) {
			memcpy(d, m->ping.node_key, DISCO_NODE_KEY_LEN);
			d += DISCO_NODE_KEY_LEN;
		}
		memset(d, 0, m->ping.padding);
		break;
	case DISCO_PONG:
		memcpy(d, m->pong.txid, DISCO_TXID_LEN);
		put_addr(d + DISCO_TXID_LEN, &m->pong.src);
		break;
	case DISCO_CALL_ME_MAYBE:
		if (body)
			memcpy(d, m->cmm.raw, body);
		break;
	}
	return (int)len;
}

static int parse_ping(const uint8_t *b, size_t len, struct disco_ping *ping, const char **why)
{
	if (len < DISCO_TXID_LEN) {
		*why = "short message";
		return -EBADMSG;
	}
	memcpy(ping->txid, b, DISCO_TXID_LEN);
	memset(ping->node_key, 0, sizeof(ping->node_key));
	ping->padding = len - DISCO_TXID_LEN;
	/* Lax on longer bodies for newer peers: a key if it fits, and the
	 * rest, even a partial key, is padding. */
	if (ping->padding >= DISCO_NODE_KEY_LEN) {
		memcpy(ping->node_key, b + DISCO_TXID_LEN, DISCO_NODE_KEY_LEN);
		ping->padding -= DISCO_NODE_KEY_LEN;
	}
	return 0;
}

static int parse_pong(const uint8_t *b, size_t len, struct disco_pong *pong, const char **why)
{
	if (len < DISCO_PONG_LEN) {
		*why = "short message";
		return -EBADMSG;
	}
	/* Bytes past the address are a newer peer's business. */
	memcpy(pong->txid, b, DISCO_TXID_LEN);
	get_addr(b + DISCO_TXID_LEN, &pong->src);
	return 0;
}

static void parse_call_me_maybe(uint8_t ver, const uint8_t *b, size_t len,
				struct disco_call_me_maybe *cmm)
{
	/* A version we do not know or a ragged list is an empty list, not an
	 * error: the message still means "call me". */
	cmm->raw = NULL;
	cmm->n = 0;
	if (ver != 0 || len == 0 || len % DISCO_ADDR_WIRE_LEN != 0)
		return;
	cmm->raw = b;
	cmm->n = len / DISCO_ADDR_WIRE_LEN;
}

int disco_parse(const uint8_t *p, size_t len, struct disco_msg *m, const char **why)
{
	memset(m, 0, sizeof(*m));
	if (len < DISCO_MSG_HEADER_LEN) {
		*why = "short message";
		return -EBADMSG;
	}
	if (len > DISCO_MAX_PAYLOAD) {
		*why = "message longer than a packet";
		return -EMSGSIZE;
	}
	m->type = p[0];
	m->version = p[1];
	p += DISCO_MSG_HEADER_LEN;
	len -= DISCO_MSG_HEADER_LEN;
	switch (m->type) {
	case DISCO_PING:
		return parse_ping(p, len, &m->ping, why);
	case DISCO_PONG:
		return parse_pong(p, len, &m->pong, why);
	case DISCO_CALL_ME_MAYBE:
		parse_call_me_maybe(m->version, p, len, &m->cmm);
		return 0;
	}
	*why = "unknown message type";
	return -ENOMSG;
}

void disco_call_me_maybe_at(const struct disco_call_me_maybe *cmm, size_t i, struct disco_addr *out)
{
	get_addr(cmm->raw + i * DISCO_ADDR_WIRE_LEN, out);
}

void disco_call_me_maybe_fill(uint8_t *buf, const struct disco_addr *eps, size_t n)
{
	for (size_t i = 0; i < n; i++)
		put_addr(buf + i * DISCO_ADDR_WIRE_LEN, &eps[i]);
}

int disco_seal(const struct disco_shared *s, const uint8_t own_public[static DISCO_KEY_LEN],
	       const uint8_t nonce[static DISCO_NONCE_LEN], const uint8_t *payload,
	       size_t payload_len, uint8_t *out, size_t cap)
{
	size_t len;

	if (payload_len > DISCO_MAX_PAYLOAD)
		return -EMSGSIZE;
	len = DISCO_HEADER_LEN + DISCO_BOX_TAG_LEN + payload_len;
	if (len > cap)
		return -EMSGSIZE;
	memcpy(out, MAGIC, DISCO_MAGIC_LEN);
	memcpy(out + DISCO_MAGIC_LEN, own_public, DISCO_KEY_LEN);
	memcpy(out + DISCO_MAGIC_LEN + DISCO_KEY_LEN, nonce, DISCO_NONCE_LEN);
	/* payload may already sit where the ciphertext goes (disco_encode
	 * seals in place); libsodium allows exactly that overlap. */
	crypto_box_easy_afternm(out + DISCO_HEADER_LEN, payload, payload_len, nonce, s->key);
	return (int)len;
}

int disco_encode(const struct disco_shared *s, const uint8_t own_public[static DISCO_KEY_LEN],
		 const uint8_t nonce[static DISCO_NONCE_LEN], const struct disco_msg *m,
		 uint8_t *out, size_t cap)
{
	size_t room = cap > DISCO_HEADER_LEN + DISCO_BOX_TAG_LEN
			      ? cap - DISCO_HEADER_LEN - DISCO_BOX_TAG_LEN
			      : 0;
	uint8_t *payload = out + DISCO_HEADER_LEN + DISCO_BOX_TAG_LEN;
	int n;

	if (room == 0)
		return -EMSGSIZE;
	/* Marshalled where the ciphertext goes, then sealed in place. */
	n = disco_marshal(m, payload, room);
	if (n < 0)
		return n;
	return disco_seal(s, own_public, nonce, payload, (size_t)n, out, cap);
}

int disco_open(const struct disco_shared *s, const uint8_t *pkt, size_t len, uint8_t *out,
	       size_t cap, const char **why)
{
	size_t plain;

	if (!disco_is_claimed(pkt, len)) {
		*why = "not a disco packet";
		return -EBADMSG;
	}
	if (len < DISCO_HEADER_LEN + DISCO_BOX_TAG_LEN) {
		*why = "disco packet too short for a box";
		return -EBADMSG;
	}
	if (len > DISCO_MAX_PACKET) {
		*why = "disco packet longer than a datagram";
		return -EMSGSIZE;
	}
	plain = len - DISCO_HEADER_LEN - DISCO_BOX_TAG_LEN;
	if (plain > cap) {
		*why = "disco payload larger than the buffer";
		return -EMSGSIZE;
	}
	if (crypto_box_open_easy_afternm(out, pkt + DISCO_HEADER_LEN, len - DISCO_HEADER_LEN,
					 pkt + DISCO_MAGIC_LEN + DISCO_KEY_LEN, s->key) != 0) {
		*why = "disco box does not open";
		return -EBADMSG;
	}
	return (int)plain;
}
