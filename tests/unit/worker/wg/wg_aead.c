/* The two AEAD implementations (wg_aead.h) against each other: sealed by
 * one, opened by the other, for every length from 0 to 1600 and some large
 * ones, with random keys and counters; the same bytes and tag from both; a
 * flipped bit of ciphertext or tag refused by both; and both threads of a
 * process each with their own context. wg_data.c's test checks both
 * against wireguard-go's vectors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <string.h>

#include "worker/wg/wg_aead.h"

enum { MAX_LEN = 65535 };

static uint8_t plain[MAX_LEN], a[MAX_LEN], b[MAX_LEN];

static void seal_with(bool sodium, const uint8_t *key, uint64_t ctr, uint8_t *buf, size_t len,
		      uint8_t *tag)
{
	wg_aead_force_sodium(sodium);
	assert_int_equal(wg_aead_seal(key, ctr, buf, len, tag), 0);
}

static int open_with(bool sodium, const uint8_t *key, uint64_t ctr, uint8_t *buf, size_t len,
		     const uint8_t *tag)
{
	wg_aead_force_sodium(sodium);
	return wg_aead_open(key, ctr, buf, len, tag);
}

static void check_len(size_t len)
{
	uint8_t key[WG_AEAD_KEY_LEN], ta[WG_AEAD_TAG_LEN], tb[WG_AEAD_TAG_LEN];
	uint64_t ctr;

	randombytes_buf(key, sizeof(key));
	randombytes_buf(&ctr, sizeof(ctr));
	randombytes_buf(plain, len);
	memcpy(a, plain, len);
	memcpy(b, plain, len);
	seal_with(false, key, ctr, a, len, ta);
	seal_with(true, key, ctr, b, len, tb);
	assert_memory_equal(a, b, len);
	assert_memory_equal(ta, tb, sizeof(ta));
	if (len)
		assert_memory_not_equal(a, plain, len);
	/* Each opens what the other sealed. */
	assert_int_equal(open_with(true, key, ctr, a, len, ta), 0);
	assert_memory_equal(a, plain, len);
	assert_int_equal(open_with(false, key, ctr, b, len, tb), 0);
	assert_memory_equal(b, plain, len);
	/* Forgeries: a flipped bit in the text or the tag, another counter. */
	for (int sodium = 0; sodium < 2; sodium++) {
		memcpy(a, plain, len);
		seal_with(sodium, key, ctr, a, len, ta);
		memcpy(b, a, len);
		if (len) {
			b[len / 2] ^= 0x20;
			assert_int_equal(open_with(sodium, key, ctr, b, len, ta), -EBADMSG);
			memcpy(b, a, len);
		}
		ta[len % WG_AEAD_TAG_LEN] ^= 1;
		assert_int_equal(open_with(sodium, key, ctr, b, len, ta), -EBADMSG);
		ta[len % WG_AEAD_TAG_LEN] ^= 1;
		memcpy(b, a, len);
		assert_int_equal(open_with(sodium, key, ctr + 1, b, len, ta), -EBADMSG);
		memcpy(b, a, len);
		assert_int_equal(open_with(sodium, key, ctr, b, len, ta), 0);
		assert_memory_equal(b, plain, len);
	}
}

static void test_backends_agree(void **state)
{
	(void)state;
	print_message("default backend: %s\n", wg_aead_backend());
	for (size_t len = 0; len <= 1600; len++)
		check_len(len);
	check_len(16384);
	check_len(MAX_LEN);
	wg_aead_force_sodium(false);
}

/* RFC 8439 section 2.8.2's example has associated data, which transport data
 * never carries, so the fixed answer here is the all-zero key, counter 0
 * and 64 zero bytes, from libsodium (checked by its own tests). */
static void test_known_answer(void **state)
{
	static const uint8_t key[WG_AEAD_KEY_LEN];
	uint8_t x[64] = {0}, y[64] = {0}, tx[16], ty[16];

	(void)state;
	crypto_aead_chacha20poly1305_ietf_encrypt_detached(y, ty, NULL, y, sizeof(y), NULL, 0, NULL,
							   (const uint8_t[12]){0}, key);
	wg_aead_force_sodium(false);
	assert_int_equal(wg_aead_seal(key, 0, x, sizeof(x), tx), 0);
	assert_memory_equal(x, y, sizeof(x));
	assert_memory_equal(tx, ty, sizeof(tx));
}

struct thread_arg {
	uint8_t key[WG_AEAD_KEY_LEN];
	int failures;
};

static void *thread_main(void *p)
{
	struct thread_arg *t = p;
	uint8_t buf[1500], orig[1500], tag[WG_AEAD_TAG_LEN];

	for (uint64_t ctr = 0; ctr < 2000; ctr++) {
		memset(buf, (int)ctr, sizeof(buf));
		memcpy(orig, buf, sizeof(buf));
		if (wg_aead_seal(t->key, ctr, buf, sizeof(buf), tag) != 0 ||
		    wg_aead_open(t->key, ctr, buf, sizeof(buf), tag) != 0 ||
		    memcmp(buf, orig, sizeof(buf)) != 0)
			t->failures++;
	}
	return NULL;
}

static void test_threads(void **state)
{
	struct thread_arg args[4];
	pthread_t th[4];

	(void)state;
	wg_aead_force_sodium(false);
	for (int i = 0; i < 4; i++) {
		randombytes_buf(args[i].key, sizeof(args[i].key));
		args[i].failures = 0;
		assert_int_equal(pthread_create(&th[i], NULL, thread_main, &args[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(args[i].failures, 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backends_agree),
		cmocka_unit_test(test_known_answer),
		cmocka_unit_test(test_threads),
	};

	if (sodium_init() < 0)
		return 1;
	wg_aead_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
