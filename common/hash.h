/* BLAKE2s (libb2) and the constructions Noise and WireGuard build on it:
 * HMAC-BLAKE2s, the Noise HKDF, keyed BLAKE2s MACs. libsodium has only
 * BLAKE2b, which is the wrong hash for both protocols. */
#ifndef TSCNI_COMMON_HASH_H
#define TSCNI_COMMON_HASH_H

#include <stddef.h>
#include <stdint.h>

enum hash_limits { HASH_LEN = 32, HASH_BLOCK_LEN = 64 };

/* out = BLAKE2s-256(a || b); b may be NULL with blen 0. */
void hash_blake2s(uint8_t out[static HASH_LEN], const uint8_t *a, size_t alen, const uint8_t *b,
		  size_t blen);
/* out = HMAC-BLAKE2s(key, in) with a 64-byte block (RFC 2104). keylen <= 64. */
void hash_hmac(uint8_t out[static HASH_LEN], const uint8_t *key, size_t keylen, const uint8_t *in,
	       size_t inlen);
/* Noise HKDF: prk = HMAC(ck, ikm); out1 = HMAC(prk, 0x01);
 * out2 = HMAC(prk, out1 || 0x02); out3 = HMAC(prk, out2 || 0x03).
 * out2 and out3 may be NULL. Intermediate secrets are wiped. */
void hash_hkdf(uint8_t out1[static HASH_LEN], uint8_t *out2, uint8_t *out3,
	       const uint8_t ck[static HASH_LEN], const uint8_t *ikm, size_t ikmlen);
/* Keyed BLAKE2s with an outlen-byte digest (WireGuard MAC1/MAC2: 16). */
void hash_mac(uint8_t *out, size_t outlen, const uint8_t *key, size_t keylen, const uint8_t *in,
	      size_t inlen);

#endif
