/* Transport-data AEAD: libcrypto's ChaCha20-Poly1305 when there is one,
 * libsodium's otherwise (wg_aead.h says why two). */
#include "wg_aead.h"

#include <endian.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include <openssl/evp.h>
#include <sodium.h>

_Static_assert(WG_AEAD_KEY_LEN == crypto_aead_chacha20poly1305_ietf_KEYBYTES, "key");
_Static_assert(WG_AEAD_TAG_LEN == crypto_aead_chacha20poly1305_ietf_ABYTES, "tag");

enum { NONCE_LEN = crypto_aead_chacha20poly1305_ietf_NPUBBYTES };

static pthread_once_t once = PTHREAD_ONCE_INIT;
static EVP_CIPHER *cipher; /* NULL: libsodium */
static pthread_key_t ctx_key;
static atomic_bool force_sodium;

/* One context per thread, set for encryption or decryption on each call
 * (EVP_CipherInit_ex2's enc argument), so a thread that does both needs
 * one. */
static _Thread_local EVP_CIPHER_CTX *thread_ctx;

static void free_ctx(void *p)
{
	EVP_CIPHER_CTX_free(p);
}

static void init_once(void)
{
	if (pthread_key_create(&ctx_key, free_ctx) != 0)
		return;
	cipher = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
}

void wg_aead_init(void)
{
	pthread_once(&once, init_once);
}

void wg_aead_force_sodium(bool on)
{
	atomic_store(&force_sodium, on);
}

static bool use_libcrypto(void)
{
	wg_aead_init();
	return cipher && !atomic_load_explicit(&force_sodium, memory_order_relaxed);
}

const char *wg_aead_backend(void)
{
	return use_libcrypto() ? "libcrypto" : "libsodium";
}

static void make_nonce(uint8_t nonce[static NONCE_LEN], uint64_t counter)
{
	uint64_t le = htole64(counter);

	memset(nonce, 0, 4);
	memcpy(nonce + 4, &le, sizeof(le));
}

static EVP_CIPHER_CTX *get_ctx(void)
{
	EVP_CIPHER_CTX *ctx = thread_ctx;

	if (ctx)
		return ctx;
	ctx = EVP_CIPHER_CTX_new();
	if (!ctx)
		return NULL;
	/* The cipher once; later calls change only key, nonce and
	 * direction. */
	if (EVP_CipherInit_ex2(ctx, cipher, NULL, NULL, 1, NULL) != 1 ||
	    pthread_setspecific(ctx_key, ctx) != 0) {
		EVP_CIPHER_CTX_free(ctx);
		return NULL;
	}
	thread_ctx = ctx;
	return ctx;
}

int wg_aead_seal(const uint8_t key[static WG_AEAD_KEY_LEN], uint64_t counter, uint8_t *buf,
		 size_t len, uint8_t tag[static WG_AEAD_TAG_LEN])
{
	uint8_t nonce[NONCE_LEN];
	EVP_CIPHER_CTX *ctx;
	int out;

	make_nonce(nonce, counter);
	if (!use_libcrypto() || len > INT_MAX) {
		/* libsodium allows the ciphertext to overwrite the
		 * plaintext. */
		crypto_aead_chacha20poly1305_ietf_encrypt_detached(buf, tag, NULL, buf, len, NULL,
								   0, NULL, nonce, key);
		return 0;
	}
	ctx = get_ctx();
	if (!ctx)
		return -ENOMEM;
	if (EVP_CipherInit_ex2(ctx, NULL, key, nonce, 1, NULL) != 1 ||
	    (len && EVP_EncryptUpdate(ctx, buf, &out, buf, (int)len) != 1) ||
	    EVP_EncryptFinal_ex(ctx, buf + len, &out) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, WG_AEAD_TAG_LEN, tag) != 1)
		return -EIO; /* buf may be half sealed: the caller drops it */
	return 0;
}

int wg_aead_open(const uint8_t key[static WG_AEAD_KEY_LEN], uint64_t counter, uint8_t *buf,
		 size_t len, const uint8_t tag[static WG_AEAD_TAG_LEN])
{
	uint8_t nonce[NONCE_LEN];
	EVP_CIPHER_CTX *ctx;
	int out;

	make_nonce(nonce, counter);
	if (!use_libcrypto() || len > INT_MAX) {
		if (crypto_aead_chacha20poly1305_ietf_decrypt_detached(buf, NULL, buf, len, tag,
								       NULL, 0, nonce, key) != 0)
			return -EBADMSG;
		return 0;
	}
	ctx = get_ctx();
	if (!ctx)
		return -ENOMEM;
	/* The tag is checked in EVP_DecryptFinal_ex, after the bytes were
	 * decrypted in place: a forgery leaves garbage in buf, never used. */
	if (EVP_CipherInit_ex2(ctx, NULL, key, nonce, 0, NULL) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, WG_AEAD_TAG_LEN, (void *)tag) != 1 ||
	    (len && EVP_DecryptUpdate(ctx, buf, &out, buf, (int)len) != 1) ||
	    EVP_DecryptFinal_ex(ctx, buf + len, &out) != 1)
		return -EBADMSG;
	return 0;
}
