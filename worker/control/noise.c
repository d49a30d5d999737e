/* Noise_IK(psk2)_25519_ChaChaPoly_BLAKE2s: cipher, symmetric and handshake
 * state as the Noise specification (revision 34) defines them. */
#include "noise.h"

#include <errno.h>
#include <string.h>

#include <sodium.h>

#include "hash.h"
#include "keys.h"

_Static_assert((int)NOISE_HASH_LEN == (int)HASH_LEN, "Noise hash length is BLAKE2s-256");
_Static_assert((int)NOISE_KEY_LEN == crypto_aead_chacha20poly1305_ietf_KEYBYTES, "ChaChaPoly key");
_Static_assert(NOISE_NONCE_LEN == crypto_aead_chacha20poly1305_ietf_NPUBBYTES, "IETF nonce");
_Static_assert(NOISE_TAG_LEN == crypto_aead_chacha20poly1305_ietf_ABYTES, "Poly1305 tag");
_Static_assert(NOISE_DH_LEN == crypto_scalarmult_curve25519_BYTES, "X25519 output");

void noise_aead_encrypt(uint8_t *out, const uint8_t key[static NOISE_KEY_LEN],
			const uint8_t nonce[static NOISE_NONCE_LEN], const uint8_t *ad,
			size_t adlen, const uint8_t *in, size_t inlen)
{
	unsigned long long clen;

	crypto_aead_chacha20poly1305_ietf_encrypt(out, &clen, in, inlen, ad, adlen, NULL, nonce,
						  key);
}

int noise_aead_decrypt(uint8_t *out, const uint8_t key[static NOISE_KEY_LEN],
		       const uint8_t nonce[static NOISE_NONCE_LEN], const uint8_t *ad, size_t adlen,
		       const uint8_t *in, size_t inlen)
{
	unsigned long long mlen;

	if (inlen < NOISE_TAG_LEN)
		return -EBADMSG;
	if (crypto_aead_chacha20poly1305_ietf_decrypt(out, &mlen, NULL, in, inlen, ad, adlen, nonce,
						      key) != 0) {
		/* libsodium leaves out untouched on failure; make sure no
		 * caller can mistake stale bytes for plaintext. */
		memset(out, 0, inlen - NOISE_TAG_LEN);
		return -EBADMSG;
	}
	return 0;
}

int noise_dh(uint8_t out[static NOISE_DH_LEN], const uint8_t priv[static NOISE_KEY_LEN],
	     const uint8_t pub[static NOISE_KEY_LEN])
{
	/* libsodium returns -1 when the shared point is all zeros, i.e. pub
	 * has small order; Go's curve25519.X25519 refuses the same case. */
	if (crypto_scalarmult_curve25519(out, priv, pub) != 0) {
		sodium_memzero(out, NOISE_DH_LEN);
		return -EINVAL;
	}
	return 0;
}

/* The Noise ChaChaPoly nonce: 32 zero bits, then n as 64-bit little-endian. */
static void nonce_le(uint8_t nonce[static NOISE_NONCE_LEN], uint64_t n)
{
	memset(nonce, 0, 4);
	for (int i = 0; i < 8; i++)
		nonce[4 + i] = (uint8_t)(n >> (8 * i));
}

void noise_cipher_init(struct noise_cipher *c, const uint8_t *k)
{
	if (k) {
		memcpy(c->k, k, NOISE_KEY_LEN);
		c->has_key = true;
	} else {
		sodium_memzero(c->k, sizeof(c->k));
		c->has_key = false;
	}
	c->n = 0;
}

void noise_cipher_destroy(struct noise_cipher *c)
{
	sodium_memzero(c, sizeof(*c));
}

int noise_cipher_encrypt(struct noise_cipher *c, const uint8_t *ad, size_t adlen, const uint8_t *in,
			 size_t inlen, uint8_t *out, size_t *outlen)
{
	uint8_t nonce[NOISE_NONCE_LEN];

	if (!c->has_key) {
		memmove(out, in, inlen);
		*outlen = inlen;
		return 0;
	}
	/* 2^64 - 1 is reserved by the spec; a session must rekey or end first. */
	if (c->n == UINT64_MAX)
		return -EOVERFLOW;
	nonce_le(nonce, c->n);
	noise_aead_encrypt(out, c->k, nonce, ad, adlen, in, inlen);
	c->n++;
	*outlen = inlen + NOISE_TAG_LEN;
	return 0;
}

int noise_cipher_decrypt(struct noise_cipher *c, const uint8_t *ad, size_t adlen, const uint8_t *in,
			 size_t inlen, uint8_t *out, size_t *outlen)
{
	uint8_t nonce[NOISE_NONCE_LEN];
	int ret;

	*outlen = 0;
	if (!c->has_key) {
		memmove(out, in, inlen);
		*outlen = inlen;
		return 0;
	}
	if (c->n == UINT64_MAX)
		return -EOVERFLOW;
	nonce_le(nonce, c->n);
	ret = noise_aead_decrypt(out, c->k, nonce, ad, adlen, in, inlen);
	if (ret < 0)
		return ret;
	/* The nonce advances only on success, as the spec requires. */
	c->n++;
	*outlen = inlen - NOISE_TAG_LEN;
	return 0;
}

void noise_symmetric_init(struct noise_symmetric *s, const char *protocol_name)
{
	size_t len = strlen(protocol_name);

	if (len <= NOISE_HASH_LEN) {
		memset(s->h, 0, sizeof(s->h));
		memcpy(s->h, protocol_name, len);
	} else {
		hash_blake2s(s->h, (const uint8_t *)protocol_name, len, NULL, 0);
	}
	memcpy(s->ck, s->h, NOISE_HASH_LEN);
	noise_cipher_init(&s->c, NULL);
}

void noise_symmetric_destroy(struct noise_symmetric *s)
{
	sodium_memzero(s, sizeof(*s));
}

void noise_symmetric_mix_hash(struct noise_symmetric *s, const uint8_t *data, size_t len)
{
	hash_blake2s(s->h, s->h, NOISE_HASH_LEN, data, len);
}

void noise_symmetric_mix_key(struct noise_symmetric *s, const uint8_t *ikm, size_t len)
{
	uint8_t k[NOISE_KEY_LEN];

	hash_hkdf(s->ck, k, NULL, s->ck, ikm, len);
	noise_cipher_init(&s->c, k);
	sodium_memzero(k, sizeof(k));
}

void noise_symmetric_mix_key_and_hash(struct noise_symmetric *s, const uint8_t *ikm, size_t len)
{
	uint8_t t[NOISE_HASH_LEN], k[NOISE_KEY_LEN];

	hash_hkdf(s->ck, t, k, s->ck, ikm, len);
	noise_symmetric_mix_hash(s, t, sizeof(t));
	noise_cipher_init(&s->c, k);
	sodium_memzero(t, sizeof(t));
	sodium_memzero(k, sizeof(k));
}

int noise_symmetric_mix_dh(struct noise_symmetric *s, const uint8_t priv[static NOISE_KEY_LEN],
			   const uint8_t pub[static NOISE_KEY_LEN])
{
	uint8_t dh[NOISE_DH_LEN];
	int ret;

	ret = noise_dh(dh, priv, pub);
	if (ret == 0)
		noise_symmetric_mix_key(s, dh, sizeof(dh));
	sodium_memzero(dh, sizeof(dh));
	return ret;
}

int noise_symmetric_encrypt_and_hash(struct noise_symmetric *s, const uint8_t *in, size_t len,
				     uint8_t *out, size_t *outlen)
{
	int ret;

	ret = noise_cipher_encrypt(&s->c, s->h, NOISE_HASH_LEN, in, len, out, outlen);
	if (ret < 0)
		return ret;
	noise_symmetric_mix_hash(s, out, *outlen);
	return 0;
}

int noise_symmetric_decrypt_and_hash(struct noise_symmetric *s, const uint8_t *in, size_t len,
				     uint8_t *out, size_t *outlen)
{
	int ret;

	/* h must be the value before mixing the ciphertext: it is the AD. */
	ret = noise_cipher_decrypt(&s->c, s->h, NOISE_HASH_LEN, in, len, out, outlen);
	if (ret < 0)
		return ret;
	noise_symmetric_mix_hash(s, in, len);
	return 0;
}

void noise_symmetric_split(struct noise_symmetric *s, uint8_t k1[static NOISE_KEY_LEN],
			   uint8_t k2[static NOISE_KEY_LEN])
{
	hash_hkdf(k1, k2, NULL, s->ck, NULL, 0);
}

static const char *protocol_name(enum noise_pattern p)
{
	return p == NOISE_IKPSK2 ? "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
				 : "Noise_IK_25519_ChaChaPoly_BLAKE2s";
}

static void new_ephemeral(struct noise_handshake *hs)
{
	keys_generate(hs->e_priv);
	/* keys_public cannot fail for a clamped scalar. */
	crypto_scalarmult_curve25519_base(hs->e_pub, hs->e_priv);
}

int noise_handshake_init(struct noise_handshake *hs, enum noise_pattern pattern, bool initiator,
			 const uint8_t *prologue, size_t prologue_len,
			 const uint8_t s_priv[static NOISE_KEY_LEN], const uint8_t *rs,
			 const uint8_t *psk)
{
	memset(hs, 0, sizeof(*hs));
	hs->step = NOISE_STEP_FAILED;
	if (pattern != NOISE_IK && pattern != NOISE_IKPSK2)
		return -EINVAL;
	if ((pattern == NOISE_IKPSK2) != (psk != NULL))
		return -EINVAL;
	if (initiator != (rs != NULL))
		return -EINVAL;
	if (prologue_len > NOISE_MAX_MSG_LEN || (prologue_len && !prologue))
		return -EINVAL;

	hs->pattern = pattern;
	hs->initiator = initiator;
	memcpy(hs->s_priv, s_priv, NOISE_KEY_LEN);
	if (crypto_scalarmult_curve25519_base(hs->s_pub, hs->s_priv) != 0) {
		sodium_memzero(hs, sizeof(*hs));
		hs->step = NOISE_STEP_FAILED;
		return -EINVAL;
	}
	if (psk)
		memcpy(hs->psk, psk, NOISE_KEY_LEN);
	new_ephemeral(hs);

	noise_symmetric_init(&hs->ss, protocol_name(pattern));
	noise_symmetric_mix_hash(&hs->ss, prologue, prologue_len);
	/* Pre-message "<- s": both sides hash the responder's static key. */
	if (initiator) {
		memcpy(hs->rs, rs, NOISE_KEY_LEN);
		noise_symmetric_mix_hash(&hs->ss, hs->rs, NOISE_KEY_LEN);
	} else {
		noise_symmetric_mix_hash(&hs->ss, hs->s_pub, NOISE_KEY_LEN);
	}
	hs->step = NOISE_STEP_MSG1;
	return 0;
}

void noise_handshake_set_ephemeral(struct noise_handshake *hs,
				   const uint8_t e_priv[static NOISE_KEY_LEN])
{
	memcpy(hs->e_priv, e_priv, NOISE_KEY_LEN);
	crypto_scalarmult_curve25519_base(hs->e_pub, hs->e_priv);
}

void noise_handshake_destroy(struct noise_handshake *hs)
{
	sodium_memzero(hs, sizeof(*hs));
	hs->step = NOISE_STEP_FAILED;
}

size_t noise_handshake_msg_len(const struct noise_handshake *hs, size_t payload_len)
{
	bool msg1 = hs->step == NOISE_STEP_MSG1;

	return NOISE_KEY_LEN + (msg1 ? NOISE_KEY_LEN + NOISE_TAG_LEN : 0) + payload_len +
	       NOISE_TAG_LEN;
}

/* Token "e" on either side: the key is in the clear, hashed, and in psk
 * modes also mixed into the key (Noise spec section 9.2). */
static void token_e(struct noise_handshake *hs, const uint8_t pub[static NOISE_KEY_LEN])
{
	noise_symmetric_mix_hash(&hs->ss, pub, NOISE_KEY_LEN);
	if (hs->pattern == NOISE_IKPSK2)
		noise_symmetric_mix_key(&hs->ss, pub, NOISE_KEY_LEN);
}

static void handshake_fail(struct noise_handshake *hs)
{
	sodium_memzero(hs, sizeof(*hs));
	hs->step = NOISE_STEP_FAILED;
}

int noise_handshake_write(struct noise_handshake *hs, const uint8_t *payload, size_t payload_len,
			  uint8_t *out, size_t cap, size_t *outlen)
{
	enum noise_step want = hs->initiator ? NOISE_STEP_MSG1 : NOISE_STEP_MSG2;
	size_t need, n, pos = 0;
	int ret;

	*outlen = 0;
	if (hs->step != want)
		return -EPROTO;
	need = noise_handshake_msg_len(hs, payload_len);
	if (payload_len > NOISE_MAX_MSG_LEN || need > NOISE_MAX_MSG_LEN || need > cap)
		return -ENOSPC;

	memcpy(out, hs->e_pub, NOISE_KEY_LEN);
	pos += NOISE_KEY_LEN;
	token_e(hs, hs->e_pub);

	if (hs->initiator) {
		/* -> e, es, s, ss */
		ret = noise_symmetric_mix_dh(&hs->ss, hs->e_priv, hs->rs);
		if (ret < 0)
			goto err;
		ret = noise_symmetric_encrypt_and_hash(&hs->ss, hs->s_pub, NOISE_KEY_LEN, out + pos,
						       &n);
		if (ret < 0)
			goto err;
		pos += n;
		ret = noise_symmetric_mix_dh(&hs->ss, hs->s_priv, hs->rs);
		if (ret < 0)
			goto err;
	} else {
		/* <- e, ee, se [, psk] */
		ret = noise_symmetric_mix_dh(&hs->ss, hs->e_priv, hs->re);
		if (ret < 0)
			goto err;
		ret = noise_symmetric_mix_dh(&hs->ss, hs->e_priv, hs->rs);
		if (ret < 0)
			goto err;
		if (hs->pattern == NOISE_IKPSK2)
			noise_symmetric_mix_key_and_hash(&hs->ss, hs->psk, NOISE_KEY_LEN);
	}
	ret = noise_symmetric_encrypt_and_hash(&hs->ss, payload, payload_len, out + pos, &n);
	if (ret < 0)
		goto err;
	pos += n;

	hs->step = hs->initiator ? NOISE_STEP_MSG2 : NOISE_STEP_DONE;
	*outlen = pos;
	return 0;
err:
	handshake_fail(hs);
	return ret;
}

int noise_handshake_read(struct noise_handshake *hs, const uint8_t *msg, size_t len,
			 uint8_t *payload, size_t cap, size_t *payload_len, const char **why)
{
	enum noise_step want = hs->initiator ? NOISE_STEP_MSG2 : NOISE_STEP_MSG1;
	size_t min, n, pos = 0;
	uint8_t rs[NOISE_KEY_LEN];
	int ret;

	*payload_len = 0;
	if (hs->step != want) {
		*why = "handshake message out of turn";
		return -EPROTO;
	}
	min = noise_handshake_msg_len(hs, 0);
	if (len < min || len > NOISE_MAX_MSG_LEN) {
		*why = len < min ? "handshake message too short" : "handshake message too long";
		ret = -EBADMSG;
		goto err;
	}
	if (len - min > cap) {
		*why = "handshake payload larger than the buffer";
		return -ENOSPC;
	}

	memcpy(hs->re, msg, NOISE_KEY_LEN);
	pos += NOISE_KEY_LEN;
	token_e(hs, hs->re);

	if (!hs->initiator) {
		/* -> e, es, s, ss */
		ret = noise_symmetric_mix_dh(&hs->ss, hs->s_priv, hs->re);
		if (ret < 0) {
			*why = "initiator ephemeral key has small order";
			goto err;
		}
		ret = noise_symmetric_decrypt_and_hash(&hs->ss, msg + pos,
						       NOISE_KEY_LEN + NOISE_TAG_LEN, rs, &n);
		if (ret < 0) {
			*why = "initiator static key does not decrypt";
			goto err;
		}
		pos += NOISE_KEY_LEN + NOISE_TAG_LEN;
		memcpy(hs->rs, rs, NOISE_KEY_LEN);
		ret = noise_symmetric_mix_dh(&hs->ss, hs->s_priv, hs->rs);
		if (ret < 0) {
			*why = "initiator static key has small order";
			goto err;
		}
	} else {
		/* <- e, ee, se [, psk] */
		ret = noise_symmetric_mix_dh(&hs->ss, hs->e_priv, hs->re);
		if (ret < 0) {
			*why = "responder ephemeral key has small order";
			goto err;
		}
		ret = noise_symmetric_mix_dh(&hs->ss, hs->s_priv, hs->re);
		if (ret < 0)
			goto err;
		if (hs->pattern == NOISE_IKPSK2)
			noise_symmetric_mix_key_and_hash(&hs->ss, hs->psk, NOISE_KEY_LEN);
	}
	ret = noise_symmetric_decrypt_and_hash(&hs->ss, msg + pos, len - pos, payload, &n);
	if (ret < 0) {
		*why = "handshake payload does not decrypt";
		goto err;
	}

	hs->step = hs->initiator ? NOISE_STEP_DONE : NOISE_STEP_MSG2;
	*payload_len = n;
	sodium_memzero(rs, sizeof(rs));
	return 0;
err:
	sodium_memzero(rs, sizeof(rs));
	handshake_fail(hs);
	return ret;
}

int noise_handshake_split(struct noise_handshake *hs, uint8_t send[static NOISE_KEY_LEN],
			  uint8_t recv[static NOISE_KEY_LEN], uint8_t *h)
{
	if (hs->step != NOISE_STEP_DONE)
		return -EPROTO;
	if (hs->initiator)
		noise_symmetric_split(&hs->ss, send, recv);
	else
		noise_symmetric_split(&hs->ss, recv, send);
	if (h)
		memcpy(h, hs->ss.h, NOISE_HASH_LEN);
	/* Keep the identities (rs) readable; wipe everything secret. */
	noise_symmetric_destroy(&hs->ss);
	sodium_memzero(hs->e_priv, sizeof(hs->e_priv));
	sodium_memzero(hs->s_priv, sizeof(hs->s_priv));
	sodium_memzero(hs->psk, sizeof(hs->psk));
	return 0;
}
