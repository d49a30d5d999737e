/* noise.c against every Noise_IK / Noise_IKpsk2 _25519_ChaChaPoly_BLAKE2s
 * vector of tests/vectors/noise/ (cacophony and snow): both
 * handshake messages byte for byte from both roles, the handshake hash, and
 * every transport message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "worker/control/noise.c"
#include "tests/unit/vectors.h"

struct totals {
	int vectors, psk_vectors, handshake_msgs, transport_msgs, hashes;
};

/* Runs one vector: initiator and responder side by side. */
static void run_vector(const json_t *v, struct totals *t)
{
	const char *name = vectors_str(v, "protocol_name");
	json_t *psks = json_object_get(v, "init_psks");
	json_t *msgs = json_object_get(v, "messages"), *m;
	enum noise_pattern pattern = NOISE_IK;
	uint8_t is[32], ie[32], irs[32], rsk[32], re[32], psk[32];
	uint8_t ik1[32], ik2[32], rk1[32], rk2[32], ih[32], rh[32];
	struct noise_handshake ini, res;
	struct noise_cipher i_tx, i_rx, r_tx, r_rx;
	uint8_t *ipro, *rpro;
	size_t iprolen, rprolen, i;
	bool use_psk;

	if (strcmp(name, "Noise_IK_25519_ChaChaPoly_BLAKE2s") == 0)
		pattern = NOISE_IK;
	else if (strcmp(name, "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s") == 0)
		pattern = NOISE_IKPSK2;
	else
		fail_msg("unexpected protocol %s in an IK BLAKE2s vector file", name);
	use_psk = pattern == NOISE_IKPSK2;
	if (use_psk) {
		assert_int_equal(json_array_size(psks), 1);
		const char *hex = json_string_value(json_array_get(psks, 0));

		assert_non_null(hex);
		assert_int_equal(vectors_unhex(hex, psk, sizeof(psk)), 32);
		t->psk_vectors++;
	}

	vectors_hex(v, "init_static", is, 32);
	vectors_hex(v, "init_ephemeral", ie, 32);
	vectors_hex(v, "init_remote_static", irs, 32);
	vectors_hex(v, "resp_static", rsk, 32);
	vectors_hex(v, "resp_ephemeral", re, 32);
	ipro = vectors_hex_alloc(v, "init_prologue", &iprolen);
	rpro = vectors_hex_alloc(v, "resp_prologue", &rprolen);

	assert_int_equal(noise_handshake_init(&ini, pattern, true, ipro, iprolen, is, irs,
					      use_psk ? psk : NULL),
			 0);
	assert_int_equal(noise_handshake_init(&res, pattern, false, rpro, rprolen, rsk, NULL,
					      use_psk ? psk : NULL),
			 0);
	noise_handshake_set_ephemeral(&ini, ie);
	noise_handshake_set_ephemeral(&res, re);
	assert_true(json_array_size(msgs) >= 2);

	json_array_foreach(msgs, i, m)
	{
		size_t plen, clen, outlen, gotlen;
		uint8_t *payload = vectors_hex_alloc(m, "payload", &plen);
		uint8_t *want = vectors_hex_alloc(m, "ciphertext", &clen);
		uint8_t out[1024], got[1024];
		const char *why = NULL;
		bool from_ini = i % 2 == 0;
		struct noise_handshake *w = from_ini ? &ini : &res, *r = from_ini ? &res : &ini;

		assert_true(clen <= sizeof(out));
		if (i < 2) {
			assert_int_equal(
				noise_handshake_write(w, payload, plen, out, sizeof(out), &outlen),
				0);
			assert_int_equal(outlen, clen);
			assert_memory_equal(out, want, clen);
			assert_int_equal(noise_handshake_read(r, out, outlen, got, sizeof(got),
							      &gotlen, &why),
					 0);
			t->handshake_msgs++;
			if (i == 0)
				assert_memory_equal(res.rs, ini.s_pub, 32);
			if (i == 1) {
				assert_int_equal(noise_handshake_split(&ini, ik1, ik2, ih), 0);
				assert_int_equal(noise_handshake_split(&res, rk1, rk2, rh), 0);
				/* The initiator's send key is the responder's receive key. */
				assert_memory_equal(ik1, rk2, 32);
				assert_memory_equal(ik2, rk1, 32);
				assert_memory_equal(ih, rh, 32);
				noise_cipher_init(&i_tx, ik1);
				noise_cipher_init(&i_rx, ik2);
				noise_cipher_init(&r_tx, rk1);
				noise_cipher_init(&r_rx, rk2);
			}
		} else {
			struct noise_cipher *tx = from_ini ? &i_tx : &r_tx;
			struct noise_cipher *rx = from_ini ? &r_rx : &i_rx;

			assert_int_equal(
				noise_cipher_encrypt(tx, NULL, 0, payload, plen, out, &outlen), 0);
			assert_int_equal(outlen, clen);
			assert_memory_equal(out, want, clen);
			assert_int_equal(
				noise_cipher_decrypt(rx, NULL, 0, out, outlen, got, &gotlen), 0);
			t->transport_msgs++;
		}
		assert_int_equal(gotlen, plen);
		assert_memory_equal(got, payload, plen);
		free(payload);
		free(want);
	}

	/* Only the cacophony file records the handshake hash. */
	if (json_object_get(v, "handshake_hash")) {
		uint8_t hh[32];

		vectors_hex(v, "handshake_hash", hh, 32);
		assert_memory_equal(ih, hh, 32);
		t->hashes++;
	}

	noise_handshake_destroy(&ini);
	noise_handshake_destroy(&res);
	noise_cipher_destroy(&i_tx);
	noise_cipher_destroy(&i_rx);
	noise_cipher_destroy(&r_tx);
	noise_cipher_destroy(&r_rx);
	free(ipro);
	free(rpro);
	t->vectors++;
}

static void run_file(const char *rel, struct totals *t)
{
	json_t *root = vectors_load(rel);
	json_t *vectors = json_object_get(root, "vectors"), *v;
	size_t i;

	assert_true(json_array_size(vectors) > 0);
	json_array_foreach(vectors, i, v) run_vector(v, t);
	json_decref(root);
}

static void test_cacophony(void **state)
{
	struct totals t = {0};

	(void)state;
	run_file("noise/cacophony-ik-blake2s.json", &t);
	print_message("cacophony: %d vectors (%d psk2), %d handshake, %d transport, %d hashes\n",
		      t.vectors, t.psk_vectors, t.handshake_msgs, t.transport_msgs, t.hashes);
	assert_int_equal(t.hashes, t.vectors);
	assert_true(t.psk_vectors > 0);
}

static void test_snow(void **state)
{
	struct totals t = {0};

	(void)state;
	run_file("noise/snow-ik-blake2s.json", &t);
	print_message("snow: %d vectors, %d handshake, %d transport\n", t.vectors, t.handshake_msgs,
		      t.transport_msgs);
	assert_true(t.vectors > 0 && t.transport_msgs > 0);
}

static void pair(struct noise_handshake *ini, struct noise_handshake *res, uint8_t ipriv[32],
		 uint8_t rpriv[32])
{
	uint8_t rpub[32];

	keys_generate(ipriv);
	keys_generate(rpriv);
	assert_int_equal(keys_public(rpub, rpriv), 0);
	assert_int_equal(noise_handshake_init(ini, NOISE_IK, true, (const uint8_t *)"p", 1, ipriv,
					      rpub, NULL),
			 0);
	assert_int_equal(noise_handshake_init(res, NOISE_IK, false, (const uint8_t *)"p", 1, rpriv,
					      NULL, NULL),
			 0);
}

static void test_tamper(void **state)
{
	struct noise_handshake ini, res;
	uint8_t ipriv[32], rpriv[32], msg[256], pl[64];
	size_t len, plen;
	const char *why = NULL;

	(void)state;
	/* Every flipped bit of message 1 makes the responder refuse it. */
	for (size_t bit = 0; bit < 96 * 8; bit += 7) {
		pair(&ini, &res, ipriv, rpriv);
		assert_int_equal(noise_handshake_write(&ini, NULL, 0, msg, sizeof(msg), &len), 0);
		assert_int_equal(len, 96);
		msg[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		why = NULL;
		assert_int_equal(noise_handshake_read(&res, msg, len, pl, sizeof(pl), &plen, &why),
				 -EBADMSG);
		assert_non_null(why);
		assert_int_equal(res.step, NOISE_STEP_FAILED);
		noise_handshake_destroy(&ini);
		noise_handshake_destroy(&res);
	}

	/* Short message, out of turn, and a different prologue. */
	pair(&ini, &res, ipriv, rpriv);
	assert_int_equal(noise_handshake_write(&ini, NULL, 0, msg, sizeof(msg), &len), 0);
	assert_int_equal(noise_handshake_write(&ini, NULL, 0, msg, sizeof(msg), &len), -EPROTO);
	assert_int_equal(noise_handshake_read(&res, msg, 95, pl, sizeof(pl), &plen, &why),
			 -EBADMSG);
	assert_string_equal(why, "handshake message too short");
	noise_handshake_destroy(&res);
	uint8_t rpub[32];
	assert_int_equal(keys_public(rpub, rpriv), 0);
	assert_int_equal(noise_handshake_init(&res, NOISE_IK, false, (const uint8_t *)"q", 1, rpriv,
					      NULL, NULL),
			 0);
	assert_int_equal(noise_handshake_read(&res, msg, 96, pl, sizeof(pl), &plen, &why),
			 -EBADMSG);
	noise_handshake_destroy(&ini);
	noise_handshake_destroy(&res);

	/* A small-order ephemeral (all zeros) is refused, not mixed in. */
	pair(&ini, &res, ipriv, rpriv);
	assert_int_equal(noise_handshake_write(&ini, NULL, 0, msg, sizeof(msg), &len), 0);
	memset(msg, 0, 32);
	assert_int_equal(noise_handshake_read(&res, msg, len, pl, sizeof(pl), &plen, &why),
			 -EINVAL);
	assert_string_equal(why, "initiator ephemeral key has small order");
	noise_handshake_destroy(&ini);
	noise_handshake_destroy(&res);

	/* Argument checks. */
	assert_int_equal(noise_handshake_init(&ini, NOISE_IK, true, NULL, 0, ipriv, NULL, NULL),
			 -EINVAL);
	assert_int_equal(noise_handshake_init(&ini, NOISE_IKPSK2, true, NULL, 0, ipriv, rpub, NULL),
			 -EINVAL);
	assert_int_equal(noise_handshake_init(&ini, NOISE_IK, false, NULL, 0, ipriv, rpub, NULL),
			 -EINVAL);
}

static void test_cipher(void **state)
{
	struct noise_cipher a, b;
	uint8_t k[32], ct[64], pt[64];
	size_t n, m;

	(void)state;
	keys_generate(k);
	noise_cipher_init(&a, k);
	noise_cipher_init(&b, k);
	assert_int_equal(noise_cipher_encrypt(&a, NULL, 0, (const uint8_t *)"hi", 2, ct, &n), 0);
	assert_int_equal(n, 18);
	ct[0] ^= 1;
	assert_int_equal(noise_cipher_decrypt(&b, NULL, 0, ct, n, pt, &m), -EBADMSG);
	/* A failed decryption does not advance the nonce. */
	assert_int_equal(b.n, 0);
	ct[0] ^= 1;
	assert_int_equal(noise_cipher_decrypt(&b, NULL, 0, ct, n, pt, &m), 0);
	assert_int_equal(m, 2);
	assert_memory_equal(pt, "hi", 2);
	/* Replaying the same message under the next nonce fails. */
	assert_int_equal(noise_cipher_decrypt(&b, NULL, 0, ct, n, pt, &m), -EBADMSG);
	assert_int_equal(noise_cipher_decrypt(&b, NULL, 0, ct, 15, pt, &m), -EBADMSG);
	/* The reserved last nonce is never used. */
	a.n = UINT64_MAX;
	assert_int_equal(noise_cipher_encrypt(&a, NULL, 0, pt, 1, ct, &n), -EOVERFLOW);
	noise_cipher_destroy(&a);
	noise_cipher_destroy(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cacophony),
		cmocka_unit_test(test_snow),
		cmocka_unit_test(test_tamper),
		cmocka_unit_test(test_cipher),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
