/* BLAKE2s, HMAC-BLAKE2s, the Noise HKDF and keyed BLAKE2s against
 * independent reference values (RFC 7693 appendix B, the BLAKE2 reference
 * KAT, and Python's hashlib/hmac for the HMAC and HKDF compositions). The
 * Noise and WireGuard vectors exercise the same functions end to end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/hash.c"
#include "tests/unit/vectors.h"

static void assert_hex(const uint8_t *got, size_t n, const char *want_hex)
{
	uint8_t want[64];

	assert_true(n <= sizeof(want));
	assert_int_equal(vectors_unhex(want_hex, want, sizeof(want)), n);
	assert_memory_equal(got, want, n);
}

static void seq(uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++)
		out[i] = (uint8_t)i;
}

static void test_blake2s(void **state)
{
	uint8_t out[HASH_LEN];

	(void)state;
	/* 1: RFC 7693 appendix B. */
	hash_blake2s(out, (const uint8_t *)"abc", 3, NULL, 0);
	assert_hex(out, HASH_LEN,
		   "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982");
	/* 2: the two-part form hashes the concatenation. */
	hash_blake2s(out, (const uint8_t *)"ab", 2, (const uint8_t *)"cd", 2);
	assert_hex(out, HASH_LEN,
		   "716748cce97a0abc942e1d491bc25102f5b6ff71ee62a86abd605a6c40120169");
	hash_blake2s(out, (const uint8_t *)"abc", 3, (const uint8_t *)"d", 1);
	assert_hex(out, HASH_LEN,
		   "716748cce97a0abc942e1d491bc25102f5b6ff71ee62a86abd605a6c40120169");
}

static void test_mac(void **state)
{
	uint8_t key[32], out[HASH_LEN];

	(void)state;
	seq(key, sizeof(key));
	/* 1: BLAKE2 reference KAT, keyed, empty input. */
	hash_mac(out, 32, key, 32, NULL, 0);
	assert_hex(out, 32, "48a8997da407876b3d79c0d92325ad3b89cbb754d86ab71aee047ad345fd2c49");
	/* 2: 16-byte digest and key, as WireGuard's MAC1 uses. */
	hash_mac(out, 16, key, 16, (const uint8_t *)"hello", 5);
	assert_hex(out, 16, "6a25fa5a331f36d9bda9c0aeca70bc0b");
	/* 3: an empty key is plain BLAKE2s. */
	hash_mac(out, 32, NULL, 0, (const uint8_t *)"abc", 3);
	assert_hex(out, 32, "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982");
}

static void test_hmac(void **state)
{
	uint8_t key[80], out[HASH_LEN];

	(void)state;
	seq(key, sizeof(key));
	/* 1: 32-byte key (the Noise case). */
	hash_hmac(out, key, 32, (const uint8_t *)"The quick brown fox", 19);
	assert_hex(out, HASH_LEN,
		   "22bcaf49c813868721c17ffc23f598e97283f564a578996cb149fad35ed8d00c");
	/* 2: key of exactly one block, empty message. */
	hash_hmac(out, key, 64, NULL, 0);
	assert_hex(out, HASH_LEN,
		   "4a4f8f181c931253202b2d7a77e2a612f65580f4b0d56108f7f275f22b63ae00");
	/* 3: key longer than a block is hashed first. */
	hash_hmac(out, key, 80, (const uint8_t *)"x", 1);
	assert_hex(out, HASH_LEN,
		   "f9d057781a700e2e6c4f44df152a856241f3dc2472e3ed27aa20778ed1c39321");
}

static void test_hkdf(void **state)
{
	static const char *want[3] = {
		"93e2a65883e34ac95485f5d0aa4b09163a4e944dab8cf9406d3a138e362851c6",
		"dd6fae42afdb2a41170f44dc5b885ec4cfd17c8dd324d38b390c548630dd0a83",
		"4125e0adfa9b7e736615e99dde6f3f0b64b949d8b480e82cab2e685dc286e45d",
	};
	const uint8_t *ikm = (const uint8_t *)"input key material";
	uint8_t ck[HASH_LEN], o1[HASH_LEN], o2[HASH_LEN], o3[HASH_LEN];

	(void)state;
	seq(ck, sizeof(ck));
	hash_hkdf(o1, o2, o3, ck, ikm, strlen((const char *)ikm));
	assert_hex(o1, HASH_LEN, want[0]);
	assert_hex(o2, HASH_LEN, want[1]);
	assert_hex(o3, HASH_LEN, want[2]);

	/* Fewer outputs give the same prefixes. */
	memset(o1, 0, sizeof(o1));
	hash_hkdf(o1, NULL, NULL, ck, ikm, strlen((const char *)ikm));
	assert_hex(o1, HASH_LEN, want[0]);
	memset(o3, 0, sizeof(o3));
	hash_hkdf(o1, NULL, o3, ck, ikm, strlen((const char *)ikm));
	assert_hex(o3, HASH_LEN, want[2]);

	/* out1 may alias ck (MixKey overwrites ck in place). */
	uint8_t ck2[HASH_LEN];
	memcpy(ck2, ck, sizeof(ck));
	hash_hkdf(ck2, o2, NULL, ck2, ikm, strlen((const char *)ikm));
	assert_hex(ck2, HASH_LEN, want[0]);
	assert_hex(o2, HASH_LEN, want[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_blake2s),
		cmocka_unit_test(test_mac),
		cmocka_unit_test(test_hmac),
		cmocka_unit_test(test_hkdf),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
