/* Disco: the messages Tailscale peers exchange to find a direct path, on the
 * shared UDP socket and inside DERP packets (docs/tailscale-protocol.md §7).
 *
 * A disco packet is magic "TS💬" (6) ‖ sender disco public key (32) ‖
 * nonce (24) ‖ NaCl box of the payload under the precomputed key of the
 * two disco keys. The payload is type (1) ‖ version (1) ‖ body:
 *   Ping        TxID (12) ‖ sender node key (32, absent in old peers) ‖ zeros
 *   Pong        TxID (12) ‖ the ping's source seen by the answerer (16 + 2)
 *   CallMeMaybe n × endpoint (16-byte address ‖ 2-byte port), DERP only.
 * Addresses are IPv6, IPv4 as ::ffff:a.b.c.d; ports big-endian.
 *
 * Nothing here touches a socket or allocates: encoding writes into the
 * caller's buffer, parsing points into the caller's bytes. */
#ifndef TSCNI_WORKER_MAGICSOCK_DISCO_H
#define TSCNI_WORKER_MAGICSOCK_DISCO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sockaddr;

enum disco_limits {
	DISCO_MAGIC_LEN = 6,
	DISCO_KEY_LEN = 32,
	DISCO_NONCE_LEN = 24,
	/* What the receive path needs to see before it calls a datagram
	 * disco (magic and sender key) ... */
	DISCO_MIN_CLAIM_LEN = DISCO_MAGIC_LEN + DISCO_KEY_LEN,
	/* ... and the whole clear header, up to the box. */
	DISCO_HEADER_LEN = DISCO_MAGIC_LEN + DISCO_KEY_LEN + DISCO_NONCE_LEN,
	DISCO_BOX_TAG_LEN = 16,
	DISCO_MSG_HEADER_LEN = 2, /* type, version */
	DISCO_TXID_LEN = 12,
	DISCO_NODE_KEY_LEN = 32,
	DISCO_PING_LEN = DISCO_TXID_LEN + DISCO_NODE_KEY_LEN,
	DISCO_ADDR_WIRE_LEN = 18,
	DISCO_PONG_LEN = DISCO_TXID_LEN + DISCO_ADDR_WIRE_LEN,
	/* A datagram never exceeds this; nor does a DERP packet we accept. */
	DISCO_MAX_PACKET = 65535,
	DISCO_MAX_PAYLOAD = DISCO_MAX_PACKET - DISCO_HEADER_LEN - DISCO_BOX_TAG_LEN,
	/* The most endpoints a CallMeMaybe that fits a packet can carry. */
	DISCO_MAX_ENDPOINTS = (DISCO_MAX_PAYLOAD - DISCO_MSG_HEADER_LEN) / DISCO_ADDR_WIRE_LEN,
	/* "[ffff:...:ffff]:65535" and a NUL. */
	DISCO_ADDR_STRLEN = 56,
};

enum disco_type {
	DISCO_PING = 0x01,
	DISCO_PONG = 0x02,
	DISCO_CALL_ME_MAYBE = 0x03,
};

/* An ip:port as disco carries it: 16 address bytes, IPv4 as ::ffff:a.b.c.d,
 * so that one memcmp compares addresses of either family; port in host
 * order. The all-zero value (:: port 0) is "no address". */
struct disco_addr {
	uint8_t ip[16];
	uint16_t port;
};

struct disco_ping {
	uint8_t txid[DISCO_TXID_LEN];
	/* All zero when the sender left it out (peers before 1.16). */
	uint8_t node_key[DISCO_NODE_KEY_LEN];
	/* Zero bytes after the node key (path-MTU probes). Bytes after the
	 * TxID that are too few for a node key count here as well. */
	size_t padding;
};

struct disco_pong {
	uint8_t txid[DISCO_TXID_LEN];
	struct disco_addr src;
};

/* Endpoints stay in the parsed payload: n records of DISCO_ADDR_WIRE_LEN
 * bytes at raw, read one by one with disco_call_me_maybe_at(). */
struct disco_call_me_maybe {
	const uint8_t *raw;
	size_t n;
};

struct disco_msg {
	uint8_t type; /* enum disco_type */
	uint8_t version;
	union {
		struct disco_ping ping;
		struct disco_pong pong;
		struct disco_call_me_maybe cmm;
	};
};

/* The NaCl box key two disco keys share (crypto_box_beforenm). */
struct disco_shared {
	uint8_t key[32];
};

/* Addresses. */
bool disco_addr_is_valid(const struct disco_addr *a);
bool disco_addr_is4(const struct disco_addr *a);
bool disco_addr_equal(const struct disco_addr *a, const struct disco_addr *b);
/* 127.3.3.40:region: the address a peer's DERP region goes by wherever
 * upstream expects an ip:port (a Pong's Src for a ping that came through
 * DERP, a path's DERP fallback). */
void disco_addr_derp(uint16_t region, struct disco_addr *out);
bool disco_addr_is_derp(const struct disco_addr *a);
/* IPv4 a.b.c.d (4 bytes, network order) as ::ffff:a.b.c.d. */
void disco_addr_from4(const uint8_t ip4[4], uint16_t port, struct disco_addr *out);
/* From and to struct sockaddr_in/_in6 (an IPv4-mapped IPv6 sockaddr is
 * taken as the IPv4 address it maps; an IPv4 address is written as
 * sockaddr_in). from: 0 or -EAFNOSUPPORT. to: the sockaddr's length. */
int disco_addr_from_sockaddr(const struct sockaddr *sa, struct disco_addr *out);
size_t disco_addr_to_sockaddr(const struct disco_addr *a, struct sockaddr *sa, size_t cap);
/* "198.51.100.7:41641" or "[2001:db8::7]:41641" into buf (DISCO_ADDR_STRLEN
 * is always enough); returns buf. */
char *disco_addr_format(const struct disco_addr *a, char *buf, size_t n);

/* Classifies a datagram from the shared UDP socket, in the order the
 * receive path must test them (STUN first: a STUN packet may start with
 * anything; then disco; the rest is WireGuard's). A DERP packet has no
 * STUN: use disco_is_claimed() on it. */
enum disco_kind {
	DISCO_KIND_STUN,
	DISCO_KIND_DISCO,
	DISCO_KIND_WIREGUARD,
};
enum disco_kind disco_classify(const uint8_t *p, size_t len);
/* True when p claims to be disco (magic and a whole sender key): the
 * receive path takes it out of the WireGuard stream even if its box then
 * fails to open. */
bool disco_is_claimed(const uint8_t *p, size_t len);
/* Upstream's LooksLikeDiscoWrapper: magic and a whole clear header. */
bool disco_looks_like(const uint8_t *p, size_t len);
/* The sender's disco public key inside p, or NULL when p is not claimed
 * disco. Points into p. */
const uint8_t *disco_sender(const uint8_t *p, size_t len);

/* Keys. init: 0, or -EINVAL when the peer key is a low-order point. */
int disco_shared_init(struct disco_shared *s, const uint8_t peer_public[static DISCO_KEY_LEN],
		      const uint8_t own_private[static DISCO_KEY_LEN]);
/* Wipes the key. */
void disco_shared_destroy(struct disco_shared *s);

/* The payload (type, version 0, body) of m into out. Returns its length,
 * or -EMSGSIZE when it does not fit cap or DISCO_MAX_PAYLOAD, or -EINVAL
 * for an unknown type or a CallMeMaybe with n > 0 and no raw. */
int disco_marshal(const struct disco_msg *m, uint8_t *out, size_t cap);
/* Parses a payload the way upstream's disco.Parse does: the version byte
 * is ignored but for CallMeMaybe (not 0: no endpoints), bytes past a Pong
 * are ignored, a CallMeMaybe whose length is not a multiple of 18 has no
 * endpoints. Returns 0; -EBADMSG for a short message, -ENOMSG for an
 * unknown type (a newer peer: drop it quietly); *why set on failure. m
 * points into p. */
int disco_parse(const uint8_t *p, size_t len, struct disco_msg *m, const char **why);
/* Endpoint i (< cmm->n) of a parsed CallMeMaybe. */
void disco_call_me_maybe_at(const struct disco_call_me_maybe *cmm, size_t i,
			    struct disco_addr *out);
/* Writes n endpoints into buf (n * DISCO_ADDR_WIRE_LEN bytes) in wire form,
 * for a CallMeMaybe to send: cmm->raw = buf, cmm->n = n. */
void disco_call_me_maybe_fill(uint8_t *buf, const struct disco_addr *eps, size_t n);

/* A whole packet as upstream's sendDiscoMessage builds it: magic ‖
 * own_public ‖ nonce ‖ box of payload. The nonce must be fresh for every
 * packet (randombytes_buf). Returns the packet's length, or -EMSGSIZE
 * when it exceeds cap or DISCO_MAX_PACKET. */
int disco_seal(const struct disco_shared *s, const uint8_t own_public[static DISCO_KEY_LEN],
	       const uint8_t nonce[static DISCO_NONCE_LEN], const uint8_t *payload,
	       size_t payload_len, uint8_t *out, size_t cap);
/* disco_marshal then disco_seal. */
int disco_encode(const struct disco_shared *s, const uint8_t own_public[static DISCO_KEY_LEN],
		 const uint8_t nonce[static DISCO_NONCE_LEN], const struct disco_msg *m,
		 uint8_t *out, size_t cap);
/* Opens packet pkt (whose sender the caller looked up with disco_sender()
 * to find s) into out. Returns the payload's length; -EBADMSG when pkt is
 * not a disco packet or too short for a box, -EMSGSIZE when the payload
 * does not fit cap, -EBADMSG when the box does not open (a stale key
 * after a peer restarted: drop it quietly). *why set on failure. */
int disco_open(const struct disco_shared *s, const uint8_t *pkt, size_t len, uint8_t *out,
	       size_t cap, const char **why);

#endif
