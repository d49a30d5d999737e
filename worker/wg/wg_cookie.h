/* MAC1, MAC2 and cookie replies: WireGuard's DoS mitigation (paper §5.3,
 * §5.4.4 and §5.4.7; wireguard-go device/cookie.go).
 *
 * Every handshake message (initiation, response) ends in mac1 || mac2.
 *   mac1 = MAC(HASH(LABEL_MAC1 || receiver's static public), msg[0 : len-32])
 *   mac2 = MAC(cookie, msg[0 : len-16]), or zeros without a fresh cookie
 * MAC is keyed BLAKE2s with a 16-byte digest. A responder under load answers
 * a message without a valid mac2 by a cookie reply instead of a handshake:
 *   cookie = MAC(secret, source address bytes), the secret renewed every
 *   COOKIE_REFRESH_TIME; the reply carries it sealed with
 *   XChaCha20-Poly1305(HASH(LABEL_COOKIE || responder's static public),
 *   random nonce, AD = the mac1 of the message answered).
 *
 * The checker is this device's half (one per device), the generator the
 * sending half (one per peer). Neither allocates. `src` is the sender's
 * endpoint as wireguard-go encodes it: 4 or 16 address bytes followed by the
 * UDP port little-endian (wg_cookie_endpoint_bytes). */
#ifndef TSCNI_WORKER_WG_WG_COOKIE_H
#define TSCNI_WORKER_WG_WG_COOKIE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wg_messages.h"

enum wg_cookie_limits {
	WG_COOKIE_SECRET_LEN = 32,
	WG_COOKIE_SRC_MAX_LEN = 18, /* IPv6 address + port */
};

struct wg_cookie_checker {
	uint8_t mac1_key[WG_HASH_LEN];
	uint8_t cookie_encryption_key[WG_HASH_LEN];
	uint8_t secret[WG_COOKIE_SECRET_LEN];
	uint64_t secret_birth_ns;
	bool secret_set;
	uint64_t under_load_until_ns;
};

struct wg_cookie_generator {
	uint8_t mac1_key[WG_HASH_LEN];
	uint8_t cookie_decryption_key[WG_HASH_LEN];
	uint8_t last_mac1_sent[WG_MAC_LEN];
	bool have_sent_mac1;
	uint8_t cookie[WG_COOKIE_LEN];
	uint64_t cookie_birth_ns;
	bool have_cookie;
};

/* Encodes an endpoint as wireguard-go's DstToBytes: address (4 or 16 bytes,
 * network order) then port little-endian. addr_len must be 4 or 16. Returns
 * the length written (6 or 18), or -EINVAL. */
int wg_cookie_endpoint_bytes(uint8_t out[static WG_COOKIE_SRC_MAX_LEN], const uint8_t *addr,
			     size_t addr_len, uint16_t port);

/* local_public: this device's static public key. No cookie secret exists
 * until the first cookie reply creates one. */
void wg_cookie_checker_init(struct wg_cookie_checker *c,
			    const uint8_t local_public[static WG_KEY_LEN]);
void wg_cookie_checker_destroy(struct wg_cookie_checker *c);

/* The under-load decision (wireguard-go IsUnderLoad): true while
 * queued_handshakes >= UNDER_LOAD_QUEUE_LEN, and for UNDER_LOAD_AFTER_TIME
 * after the last time it was. */
bool wg_cookie_under_load(struct wg_cookie_checker *c, size_t queued_handshakes, uint64_t now_ns);

/* msg/len: a whole initiation (148) or response (92). Each returns 0 if the
 * MAC is right, -EBADMSG if not, -EINVAL for another length. mac2 is never
 * right when no secret younger than COOKIE_REFRESH_TIME exists. */
int wg_cookie_check_mac1(const struct wg_cookie_checker *c, const uint8_t *msg, size_t len);
int wg_cookie_check_mac2(const struct wg_cookie_checker *c, const uint8_t *msg, size_t len,
			 const uint8_t *src, size_t src_len, uint64_t now_ns);

/* What the receive path does with a handshake message: 0 = process it;
 * -EBADMSG = drop it (mac1 wrong, *why set); -EAGAIN = under load without a
 * valid mac2: answer with wg_cookie_create_reply() and do not process it. */
int wg_cookie_validate(const struct wg_cookie_checker *c, const uint8_t *msg, size_t len,
		       const uint8_t *src, size_t src_len, bool under_load, uint64_t now_ns,
		       const char **why);

/* Builds the cookie reply to handshake message msg/len (its sender index
 * becomes the reply's receiver index) for the sender at src. nonce: 24
 * random bytes from the caller (randombytes_buf). Renews the secret with
 * randombytes_buf first if it is older than COOKIE_REFRESH_TIME. Returns 0
 * or -EINVAL (not an initiation or response). */
int wg_cookie_create_reply(struct wg_cookie_checker *c, const uint8_t *msg, size_t len,
			   const uint8_t *src, size_t src_len, uint64_t now_ns,
			   const uint8_t nonce[static WG_COOKIE_NONCE_LEN],
			   struct wg_message_cookie_reply *reply);

/* peer_public: the static public key of the peer we send to. */
void wg_cookie_generator_init(struct wg_cookie_generator *g,
			      const uint8_t peer_public[static WG_KEY_LEN]);
void wg_cookie_generator_destroy(struct wg_cookie_generator *g);

/* Fills mac1 and mac2 of an outgoing initiation or response in place and
 * remembers mac1 for the cookie reply it may draw. mac2 stays zero unless a
 * cookie younger than COOKIE_REFRESH_TIME is held. Returns 0 or -EINVAL. */
int wg_cookie_add_macs(struct wg_cookie_generator *g, uint8_t *msg, size_t len, uint64_t now_ns);

/* Takes the cookie from a reply to the last message we sent. Returns 0, or
 * -EBADMSG with *why set (nothing sent yet, or the reply does not open). */
int wg_cookie_consume_reply(struct wg_cookie_generator *g,
			    const struct wg_message_cookie_reply *reply, uint64_t now_ns,
			    const char **why);

#endif
