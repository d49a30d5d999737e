/* MAC1/MAC2 and cookie replies. The message layouts put mac1 and mac2 last in
 * both handshake messages, so everything here works on (bytes, length) and
 * finds them from the end, as wireguard-go does. */
#include "wg_cookie.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

#include <sodium.h>

#include "hash.h"

_Static_assert(WG_COOKIE_NONCE_LEN == crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
	       "XChaCha20 nonce");

static bool is_handshake_len(size_t len)
{
	return len == WG_MESSAGE_INITIATION_LEN || len == WG_MESSAGE_RESPONSE_LEN;
}

/* HASH(label || public key): the MAC1 key and the cookie sealing key. */
static void label_key(uint8_t out[static WG_HASH_LEN], const char *label,
		      const uint8_t pub[static WG_KEY_LEN])
{
	hash_blake2s(out, (const uint8_t *)label, strlen(label), pub, WG_KEY_LEN);
}

static void compute_mac1(uint8_t out[static WG_MAC_LEN], const uint8_t key[static WG_HASH_LEN],
			 const uint8_t *msg, size_t len)
{
	hash_mac(out, WG_MAC_LEN, key, WG_HASH_LEN, msg, len - 2 * WG_MAC_LEN);
}

static void compute_mac2(uint8_t out[static WG_MAC_LEN], const uint8_t cookie[static WG_COOKIE_LEN],
			 const uint8_t *msg, size_t len)
{
	hash_mac(out, WG_MAC_LEN, cookie, WG_COOKIE_LEN, msg, len - WG_MAC_LEN);
}

static void make_cookie(uint8_t out[static WG_COOKIE_LEN], const struct wg_cookie_checker *c,
			const uint8_t *src, size_t src_len)
{
	hash_mac(out, WG_COOKIE_LEN, c->secret, sizeof(c->secret), src, src_len);
}

static bool secret_fresh(const struct wg_cookie_checker *c, uint64_t now_ns)
{
	return c->secret_set &&
	       now_ns - c->secret_birth_ns <= COOKIE_REFRESH_TIME * WG_NSEC_PER_SEC;
}

int wg_cookie_endpoint_bytes(uint8_t out[static WG_COOKIE_SRC_MAX_LEN], const uint8_t *addr,
			     size_t addr_len, uint16_t port)
{
	if (addr_len != 4 && addr_len != 16)
		return -EINVAL;
	memcpy(out, addr, addr_len);
	out[addr_len] = (uint8_t)(port & 0xff);
	out[addr_len + 1] = (uint8_t)(port >> 8);
	return (int)addr_len + 2;
}

void wg_cookie_checker_init(struct wg_cookie_checker *c,
			    const uint8_t local_public[static WG_KEY_LEN])
{
	memset(c, 0, sizeof(*c));
	label_key(c->mac1_key, WG_LABEL_MAC1, local_public);
	label_key(c->cookie_encryption_key, WG_LABEL_COOKIE, local_public);
}

void wg_cookie_checker_destroy(struct wg_cookie_checker *c)
{
	sodium_memzero(c, sizeof(*c));
}

bool wg_cookie_under_load(struct wg_cookie_checker *c, size_t queued_handshakes, uint64_t now_ns)
{
	if (queued_handshakes >= UNDER_LOAD_QUEUE_LEN) {
		c->under_load_until_ns = now_ns + UNDER_LOAD_AFTER_TIME * WG_NSEC_PER_SEC;
		return true;
	}
	return c->under_load_until_ns > now_ns;
}

int wg_cookie_check_mac1(const struct wg_cookie_checker *c, const uint8_t *msg, size_t len)
{
	uint8_t mac[WG_MAC_LEN];

	if (!is_handshake_len(len))
		return -EINVAL;
	compute_mac1(mac, c->mac1_key, msg, len);
	return sodium_memcmp(mac, msg + len - 2 * WG_MAC_LEN, WG_MAC_LEN) == 0 ? 0 : -EBADMSG;
}

int wg_cookie_check_mac2(const struct wg_cookie_checker *c, const uint8_t *msg, size_t len,
			 const uint8_t *src, size_t src_len, uint64_t now_ns)
{
	uint8_t cookie[WG_COOKIE_LEN], mac[WG_MAC_LEN];
	int ret;

	if (!is_handshake_len(len))
		return -EINVAL;
	if (!secret_fresh(c, now_ns))
		return -EBADMSG;
	make_cookie(cookie, c, src, src_len);
	compute_mac2(mac, cookie, msg, len);
	ret = sodium_memcmp(mac, msg + len - WG_MAC_LEN, WG_MAC_LEN) == 0 ? 0 : -EBADMSG;
	sodium_memzero(cookie, sizeof(cookie));
	return ret;
}

int wg_cookie_validate(const struct wg_cookie_checker *c, const uint8_t *msg, size_t len,
		       const uint8_t *src, size_t src_len, bool under_load, uint64_t now_ns,
		       const char **why)
{
	if (!is_handshake_len(len)) {
		*why = "not a handshake message";
		return -EBADMSG;
	}
	if (wg_cookie_check_mac1(c, msg, len) != 0) {
		*why = "handshake mac1 is wrong";
		return -EBADMSG;
	}
	if (under_load && wg_cookie_check_mac2(c, msg, len, src, src_len, now_ns) != 0) {
		*why = "under load and mac2 is missing or stale";
		return -EAGAIN;
	}
	return 0;
}

int wg_cookie_create_reply(struct wg_cookie_checker *c, const uint8_t *msg, size_t len,
			   const uint8_t *src, size_t src_len, uint64_t now_ns,
			   const uint8_t nonce[static WG_COOKIE_NONCE_LEN],
			   struct wg_message_cookie_reply *reply)
{
	uint8_t cookie[WG_COOKIE_LEN];
	uint32_t sender;

	memset(reply, 0, sizeof(*reply));
	if (!is_handshake_len(len))
		return -EINVAL;
	if (!secret_fresh(c, now_ns)) {
		randombytes_buf(c->secret, sizeof(c->secret));
		c->secret_birth_ns = now_ns;
		c->secret_set = true;
	}
	make_cookie(cookie, c, src, src_len);

	/* Both handshake messages carry their sender index at offset 4. */
	memcpy(&sender, msg + 4, sizeof(sender));
	reply->type = htole32(WG_MESSAGE_COOKIE_REPLY);
	reply->receiver_index = sender;
	memcpy(reply->nonce, nonce, WG_COOKIE_NONCE_LEN);
	crypto_aead_xchacha20poly1305_ietf_encrypt(
		reply->encrypted_cookie, NULL, cookie, sizeof(cookie), msg + len - 2 * WG_MAC_LEN,
		WG_MAC_LEN, NULL, reply->nonce, c->cookie_encryption_key);
	sodium_memzero(cookie, sizeof(cookie));
	return 0;
}

void wg_cookie_generator_init(struct wg_cookie_generator *g,
			      const uint8_t peer_public[static WG_KEY_LEN])
{
	memset(g, 0, sizeof(*g));
	label_key(g->mac1_key, WG_LABEL_MAC1, peer_public);
	label_key(g->cookie_decryption_key, WG_LABEL_COOKIE, peer_public);
}

void wg_cookie_generator_destroy(struct wg_cookie_generator *g)
{
	sodium_memzero(g, sizeof(*g));
}

int wg_cookie_add_macs(struct wg_cookie_generator *g, uint8_t *msg, size_t len, uint64_t now_ns)
{
	uint8_t *mac1 = msg + len - 2 * WG_MAC_LEN;
	uint8_t *mac2 = msg + len - WG_MAC_LEN;

	if (!is_handshake_len(len))
		return -EINVAL;
	compute_mac1(mac1, g->mac1_key, msg, len);
	memcpy(g->last_mac1_sent, mac1, WG_MAC_LEN);
	g->have_sent_mac1 = true;

	if (g->have_cookie && now_ns - g->cookie_birth_ns <= COOKIE_REFRESH_TIME * WG_NSEC_PER_SEC)
		compute_mac2(mac2, g->cookie, msg, len);
	else
		memset(mac2, 0, WG_MAC_LEN);
	return 0;
}

int wg_cookie_consume_reply(struct wg_cookie_generator *g,
			    const struct wg_message_cookie_reply *reply, uint64_t now_ns,
			    const char **why)
{
	uint8_t cookie[WG_COOKIE_LEN];

	if (!g->have_sent_mac1) {
		*why = "cookie reply but no handshake message was sent";
		return -EBADMSG;
	}
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(
		    cookie, NULL, NULL, reply->encrypted_cookie, sizeof(reply->encrypted_cookie),
		    g->last_mac1_sent, WG_MAC_LEN, reply->nonce, g->cookie_decryption_key) != 0) {
		*why = "cookie reply does not open";
		return -EBADMSG;
	}
	memcpy(g->cookie, cookie, WG_COOKIE_LEN);
	g->cookie_birth_ns = now_ns;
	g->have_cookie = true;
	sodium_memzero(cookie, sizeof(cookie));
	return 0;
}
