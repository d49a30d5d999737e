/* ChaCha20-Poly1305 (RFC 8439, the "IETF" construction with a 96-bit nonce)
 * for transport data, the one place the data plane spends most of its CPU.
 *
 * Two implementations of the same function: OpenSSL's libcrypto (already in
 * every worker as libcurl's TLS backend) and libsodium. On this project's
 * machines (x86-64 with AVX-512) libcrypto's is about twice as fast per
 * packet: libsodium 1.0.18 stops at AVX2 for ChaCha20 and SSE2 for Poly1305,
 * libcrypto has AVX-512 ChaCha20 and AVX-512 IFMA Poly1305. libcrypto is used
 * when wg_aead_init found its ChaCha20-Poly1305 (a FIPS-only configuration
 * may lack it), else libsodium. Handshakes and cookies stay on libsodium:
 * they are rare and need BLAKE2s / XChaCha20 that libcrypto does not give.
 *
 * Each thread that seals or opens gets its own cipher context on first use
 * (freed when the thread exits); the context keeps the last key until the
 * next call, in the worker's memory, which is never dumped (sandbox.h). */
#ifndef TSCNI_WORKER_WG_WG_AEAD_H
#define TSCNI_WORKER_WG_WG_AEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum wg_aead_limits {
	WG_AEAD_KEY_LEN = 32,
	WG_AEAD_TAG_LEN = 16,
};

/* Finds libcrypto's cipher once. Call it before a sandbox or a fork (the
 * zygote does): the first lookup may read OpenSSL's configuration file.
 * Safe to call again; later calls do nothing. Without it the first seal or
 * open does the lookup. */
void wg_aead_init(void);

/* "libcrypto" or "libsodium": which implementation seals and opens. */
const char *wg_aead_backend(void);

/* Tests only: use libsodium even when libcrypto's cipher is there. */
void wg_aead_force_sodium(bool on);

/* Encrypts buf/len in place under key and nonce 0^4 || counter LE, with no
 * associated data, and writes the 16-byte tag. Returns 0; -ENOMEM when
 * this thread's first cipher context could not be made (nothing written);
 * -EIO if libcrypto failed midway (buf is then garbage). */
int wg_aead_seal(const uint8_t key[static WG_AEAD_KEY_LEN], uint64_t counter, uint8_t *buf,
		 size_t len, uint8_t tag[static WG_AEAD_TAG_LEN]);

/* Verifies tag and decrypts buf/len in place. Returns 0, -EBADMSG if the
 * message does not authenticate (buf's contents are then undefined) or
 * -ENOMEM as above. */
int wg_aead_open(const uint8_t key[static WG_AEAD_KEY_LEN], uint64_t counter, uint8_t *buf,
		 size_t len, const uint8_t tag[static WG_AEAD_TAG_LEN]);

#endif
