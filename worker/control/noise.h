/* Noise protocol core for the IK pattern with 25519, ChaChaPoly and BLAKE2s
 * (Noise_IK_25519_ChaChaPoly_BLAKE2s, optionally IKpsk2).
 *
 * Three layers, each usable on its own:
 *   - noise_aead_*: ChaCha20-Poly1305 IETF with a caller-built 12-byte nonce.
 *     Protocols that lay out the nonce differently (ts2021 uses a big-endian
 *     counter, WireGuard a little-endian one) build their nonce themselves.
 *   - struct noise_cipher: the Noise CipherState (key + 64-bit counter, nonce
 *     as the Noise spec lays it out for ChaChaPoly: 4 zero bytes, counter
 *     little-endian).
 *   - struct noise_symmetric: the SymmetricState (ck, h, cipher): MixHash,
 *     MixKey, MixKeyAndHash, EncryptAndHash, DecryptAndHash, Split. WireGuard
 *     builds its own handshake on these.
 *   - struct noise_handshake: the IK message pattern, initiator or responder.
 *
 * Every struct is embedded by its owner (_init/_destroy); _destroy wipes all
 * key material. None of these functions allocate. */
#ifndef TSCNI_WORKER_CONTROL_NOISE_H
#define TSCNI_WORKER_CONTROL_NOISE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum noise_limits {
	NOISE_KEY_LEN = 32,
	NOISE_HASH_LEN = 32,
	NOISE_DH_LEN = 32,
	NOISE_TAG_LEN = 16,
	NOISE_NONCE_LEN = 12,
	NOISE_MAX_MSG_LEN = 65535,
};

/* ChaCha20-Poly1305 IETF. out receives inlen + NOISE_TAG_LEN bytes; out may
 * equal in. ad may be NULL with adlen 0. */
void noise_aead_encrypt(uint8_t *out, const uint8_t key[static NOISE_KEY_LEN],
			const uint8_t nonce[static NOISE_NONCE_LEN], const uint8_t *ad,
			size_t adlen, const uint8_t *in, size_t inlen);
/* out receives inlen - NOISE_TAG_LEN bytes; out may equal in. Returns 0, or
 * -EBADMSG if inlen < NOISE_TAG_LEN or authentication fails (out is then
 * zeroed). */
int noise_aead_decrypt(uint8_t *out, const uint8_t key[static NOISE_KEY_LEN],
		       const uint8_t nonce[static NOISE_NONCE_LEN], const uint8_t *ad, size_t adlen,
		       const uint8_t *in, size_t inlen);

/* X25519 with the all-zero (low-order point) result rejected: 0 or -EINVAL. */
int noise_dh(uint8_t out[static NOISE_DH_LEN], const uint8_t priv[static NOISE_KEY_LEN],
	     const uint8_t pub[static NOISE_KEY_LEN]);

/* Noise CipherState. */
struct noise_cipher {
	uint8_t k[NOISE_KEY_LEN];
	uint64_t n;
	bool has_key;
};

/* Sets k (or no key when k is NULL) and n = 0. */
void noise_cipher_init(struct noise_cipher *c, const uint8_t *k);
void noise_cipher_destroy(struct noise_cipher *c);
/* Without a key both copy in to out unchanged (*outlen = inlen). With a key
 * encrypt writes inlen + 16 bytes, decrypt inlen - 16, and n advances.
 * Return 0, -EBADMSG (authentication, short input), or -EOVERFLOW once the
 * counter reached 2^64 - 1. The caller sizes out. */
int noise_cipher_encrypt(struct noise_cipher *c, const uint8_t *ad, size_t adlen, const uint8_t *in,
			 size_t inlen, uint8_t *out, size_t *outlen);
int noise_cipher_decrypt(struct noise_cipher *c, const uint8_t *ad, size_t adlen, const uint8_t *in,
			 size_t inlen, uint8_t *out, size_t *outlen);

/* Noise SymmetricState. */
struct noise_symmetric {
	uint8_t ck[NOISE_HASH_LEN];
	uint8_t h[NOISE_HASH_LEN];
	struct noise_cipher c;
};

/* InitializeSymmetric(protocol_name): h = name padded with zeros when it
 * fits in 32 bytes, else BLAKE2s(name); ck = h; no key. */
void noise_symmetric_init(struct noise_symmetric *s, const char *protocol_name);
void noise_symmetric_destroy(struct noise_symmetric *s);
void noise_symmetric_mix_hash(struct noise_symmetric *s, const uint8_t *data, size_t len);
/* ck, k = HKDF(ck, ikm); the cipher gets k with n = 0. */
void noise_symmetric_mix_key(struct noise_symmetric *s, const uint8_t *ikm, size_t len);
/* ck, t, k = HKDF(ck, ikm); MixHash(t); the cipher gets k (psk modes). */
void noise_symmetric_mix_key_and_hash(struct noise_symmetric *s, const uint8_t *ikm, size_t len);
/* MixKey(DH(priv, pub)). 0, or -EINVAL for a low-order result. */
int noise_symmetric_mix_dh(struct noise_symmetric *s, const uint8_t priv[static NOISE_KEY_LEN],
			   const uint8_t pub[static NOISE_KEY_LEN]);
/* out gets len (+ 16 when a key is set) bytes, then MixHash(out). */
int noise_symmetric_encrypt_and_hash(struct noise_symmetric *s, const uint8_t *in, size_t len,
				     uint8_t *out, size_t *outlen);
/* out gets len (- 16 when a key is set) bytes; MixHash(in) on success. out
 * must not overlap in. 0 or -EBADMSG. */
int noise_symmetric_decrypt_and_hash(struct noise_symmetric *s, const uint8_t *in, size_t len,
				     uint8_t *out, size_t *outlen);
/* k1, k2 = HKDF(ck, ""): the initiator sends with k1, the responder with k2. */
void noise_symmetric_split(struct noise_symmetric *s, uint8_t k1[static NOISE_KEY_LEN],
			   uint8_t k2[static NOISE_KEY_LEN]);

/* IK handshake: <- s; ... ; -> e, es, s, ss ; <- e, ee, se [, psk]. */
enum noise_pattern {
	NOISE_IK,
	NOISE_IKPSK2,
};

enum noise_step {
	NOISE_STEP_MSG1, /* initiator writes / responder reads message 1 */
	NOISE_STEP_MSG2, /* responder writes / initiator reads message 2 */
	NOISE_STEP_DONE, /* call noise_handshake_split */
	NOISE_STEP_FAILED,
};

struct noise_handshake {
	struct noise_symmetric ss;
	enum noise_pattern pattern;
	enum noise_step step;
	bool initiator;
	uint8_t s_priv[NOISE_KEY_LEN];
	uint8_t s_pub[NOISE_KEY_LEN];
	uint8_t e_priv[NOISE_KEY_LEN];
	uint8_t e_pub[NOISE_KEY_LEN];
	uint8_t rs[NOISE_KEY_LEN]; /* remote static: known to the initiator, learnt by the responder
				    */
	uint8_t re[NOISE_KEY_LEN];
	uint8_t psk[NOISE_KEY_LEN];
};

/* Sets up a handshake. s_priv is our static key; rs is the responder's static
 * public key for the initiator and must be NULL for the responder; psk is
 * required for NOISE_IKPSK2 and must be NULL for NOISE_IK. A random ephemeral
 * key is generated (see noise_handshake_set_ephemeral). Returns 0 or -EINVAL
 * (wrong combination of arguments, or a prologue longer than
 * NOISE_MAX_MSG_LEN). */
int noise_handshake_init(struct noise_handshake *hs, enum noise_pattern pattern, bool initiator,
			 const uint8_t *prologue, size_t prologue_len,
			 const uint8_t s_priv[static NOISE_KEY_LEN], const uint8_t *rs,
			 const uint8_t *psk);
/* Replaces the ephemeral key (tests and vectors only; call before writing
 * the message that carries e). The key is used as given (not clamped). */
void noise_handshake_set_ephemeral(struct noise_handshake *hs,
				   const uint8_t e_priv[static NOISE_KEY_LEN]);
void noise_handshake_destroy(struct noise_handshake *hs);

/* Size of the handshake message that carries payload_len bytes: message 1
 * is 32 + 48 + payload + 16, message 2 is 32 + payload + 16. */
size_t noise_handshake_msg_len(const struct noise_handshake *hs, size_t payload_len);

/* Writes the next handshake message (message 1 as initiator, message 2 as
 * responder) with the given payload into out (cap bytes). Returns 0 with
 * *outlen set, -EPROTO when it is not our turn, -ENOSPC when out is too
 * small or the message would exceed NOISE_MAX_MSG_LEN, -EINVAL for a
 * low-order DH result (the handshake is then failed). */
int noise_handshake_write(struct noise_handshake *hs, const uint8_t *payload, size_t payload_len,
			  uint8_t *out, size_t cap, size_t *outlen);
/* Reads the next handshake message into payload (cap bytes). Returns 0 with
 * *payload_len set, -EPROTO when it is not our turn, -EBADMSG when the
 * message is too short, too long or fails authentication (the handshake is
 * then failed; *why names the reason), -ENOSPC when payload is too small.
 * After message 1 the responder finds the initiator's static key in hs->rs. */
int noise_handshake_read(struct noise_handshake *hs, const uint8_t *msg, size_t len,
			 uint8_t *payload, size_t cap, size_t *payload_len, const char **why);

/* After both messages: our sending and receiving keys (initiator sends with
 * k1, responder with k2) and the handshake hash (h may be NULL). Returns 0 or
 * -EPROTO before the handshake is done. The symmetric state is wiped. */
int noise_handshake_split(struct noise_handshake *hs, uint8_t send[static NOISE_KEY_LEN],
			  uint8_t recv[static NOISE_KEY_LEN], uint8_t *h);

#endif
