/* BLAKE2s and the HMAC/HKDF constructions Noise and WireGuard use.
 * BLAKE2s itself comes from libb2; everything here only composes it. */
#include "hash.h"

#include <stdlib.h>
#include <string.h>

#include <blake2.h>
#include <sodium.h>

void hash_blake2s(uint8_t out[static HASH_LEN], const uint8_t *a, size_t alen, const uint8_t *b,
		  size_t blen)
{
	blake2s_state s;

	blake2s_init(&s, HASH_LEN);
	blake2s_update(&s, a, alen);
	if (b && blen)
		blake2s_update(&s, b, blen);
	blake2s_final(&s, out, HASH_LEN);
	sodium_memzero(&s, sizeof(s));
}

/* RFC 2104 with BLAKE2s as H and a 64-byte block: H(K ^ opad, H(K ^ ipad, in)).
 * Noise requires exactly this (not BLAKE2s's own keyed mode) for HMAC-HASH. */
void hash_hmac(uint8_t out[static HASH_LEN], const uint8_t *key, size_t keylen, const uint8_t *in,
	       size_t inlen)
{
	uint8_t pad[HASH_BLOCK_LEN] = {0};
	uint8_t inner[HASH_LEN];
	blake2s_state s;

	/* Every caller passes a key of at most one block; a longer one would be
	 * hashed first by RFC 2104, which we do for completeness. */
	if (keylen > HASH_BLOCK_LEN)
		hash_blake2s(pad, key, keylen, NULL, 0);
	else if (keylen)
		memcpy(pad, key, keylen);

	for (size_t i = 0; i < HASH_BLOCK_LEN; i++)
		pad[i] ^= 0x36;
	blake2s_init(&s, HASH_LEN);
	blake2s_update(&s, pad, HASH_BLOCK_LEN);
	if (inlen)
		blake2s_update(&s, in, inlen);
	blake2s_final(&s, inner, HASH_LEN);

	/* Turn ipad into opad: 0x36 ^ 0x5c. */
	for (size_t i = 0; i < HASH_BLOCK_LEN; i++)
		pad[i] ^= 0x36 ^ 0x5c;
	blake2s_init(&s, HASH_LEN);
	blake2s_update(&s, pad, HASH_BLOCK_LEN);
	blake2s_update(&s, inner, HASH_LEN);
	blake2s_final(&s, out, HASH_LEN);

	sodium_memzero(pad, sizeof(pad));
	sodium_memzero(inner, sizeof(inner));
	sodium_memzero(&s, sizeof(s));
}

void hash_hkdf(uint8_t out1[static HASH_LEN], uint8_t *out2, uint8_t *out3,
	       const uint8_t ck[static HASH_LEN], const uint8_t *ikm, size_t ikmlen)
{
	uint8_t prk[HASH_LEN];
	uint8_t t[HASH_LEN + 1];
	uint8_t prev[HASH_LEN];

	hash_hmac(prk, ck, HASH_LEN, ikm, ikmlen);

	t[0] = 0x01;
	hash_hmac(prev, prk, HASH_LEN, t, 1);
	memcpy(out1, prev, HASH_LEN);

	if (out2 || out3) {
		memcpy(t, prev, HASH_LEN);
		t[HASH_LEN] = 0x02;
		hash_hmac(prev, prk, HASH_LEN, t, sizeof(t));
		if (out2)
			memcpy(out2, prev, HASH_LEN);
	}
	if (out3) {
		memcpy(t, prev, HASH_LEN);
		t[HASH_LEN] = 0x03;
		hash_hmac(out3, prk, HASH_LEN, t, sizeof(t));
	}

	sodium_memzero(prk, sizeof(prk));
	sodium_memzero(t, sizeof(t));
	sodium_memzero(prev, sizeof(prev));
}

void hash_mac(uint8_t *out, size_t outlen, const uint8_t *key, size_t keylen, const uint8_t *in,
	      size_t inlen)
{
	blake2s_state s;

	/* Sizes come from our own constants, never from input: anything else
	 * is a bug, and libb2 would leave the state uninitialised. */
	if (outlen == 0 || outlen > HASH_LEN || keylen > HASH_LEN)
		abort();
	/* libb2 refuses an empty key in init_key; keyless BLAKE2s is what an
	 * empty key means. */
	if (keylen)
		blake2s_init_key(&s, outlen, key, keylen);
	else
		blake2s_init(&s, outlen);
	blake2s_update(&s, in, inlen);
	blake2s_final(&s, out, outlen);
	sodium_memzero(&s, sizeof(s));
}
