/* Transport data messages against wireguard-go (wireguard.json messages of
 * type 4): sealed in place from the plaintext and the listed key, counter and
 * receiver index, byte for byte; the captured messages opened back. Then the
 * session's limits: replays, tampering, REJECT_AFTER_TIME,
 * REJECT_AFTER_MESSAGES, buffers too small, padding, keepalives, rekey
 * hints. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <sodium.h>

#include "worker/wg/wg_aead.h"
#include "worker/wg/wg_data.c"
#include "tests/unit/vectors.h"

enum { BUF_LEN = 2048 };

static json_t *root;

static int group_setup(void **state)
{
	root = vectors_load("tailscale/wireguard.json");
	return 0;
}

static int group_teardown(void **state)
{
	json_decref(root);
	return 0;
}

/* A keypair seen from `from`'s side with the vector's keys and indices. */
static void keypair_for(struct wg_keypair *kp, const char *from, uint64_t now)
{
	bool initiator = strcmp(from, "initiator") == 0;
	uint8_t i2r[WG_KEY_LEN], r2i[WG_KEY_LEN];
	uint32_t i_index = vectors_le32(root, "initiator_sender_index_random_bytes");
	uint32_t r_index = vectors_le32(root, "responder_sender_index_random_bytes");

	vectors_hex(root, "initiator_to_responder_key", i2r, sizeof(i2r));
	vectors_hex(root, "responder_to_initiator_key", r2i, sizeof(r2i));
	memset(kp, 0, sizeof(*kp));
	memcpy(kp->send_key, initiator ? i2r : r2i, WG_KEY_LEN);
	memcpy(kp->recv_key, initiator ? r2i : i2r, WG_KEY_LEN);
	kp->local_index = initiator ? i_index : r_index;
	kp->remote_index = initiator ? r_index : i_index;
	kp->initiator = initiator;
	kp->created_ns = now;
	wg_replay_init(&kp->replay);
}

/* Every transport message of the capture, sealed by us. */
static void test_encrypt_vectors(void **state)
{
	json_t *msgs = vectors_get(root, "messages");
	size_t i, checked = 0;
	json_t *m;
	uint64_t mtu = vectors_int(root, "tun_mtu");

	json_array_foreach(msgs, i, m)
	{
		struct wg_keypair kp;
		json_t *fields;
		uint8_t buf[BUF_LEN], want[BUF_LEN], key[WG_KEY_LEN];
		size_t plain_len, want_len, msg_len;

		if (vectors_int(m, "type") != WG_MESSAGE_DATA)
			continue;
		fields = vectors_get(m, "fields");
		keypair_for(&kp, vectors_str(m, "from"), 0);
		vectors_hex(fields, "key", key, sizeof(key));
		assert_memory_equal(kp.send_key, key, WG_KEY_LEN);
		kp.send_counter = vectors_int(fields, "counter");
		assert_int_equal(kp.remote_index, vectors_int(fields, "receiver_index"));

		plain_len = vectors_hex_var(fields, "plaintext_ip_packet", buf + WG_DATA_HEADER_LEN,
					    sizeof(buf) - WG_DATA_HEADER_LEN);
		assert_int_equal(wg_data_padding(plain_len, mtu),
				 vectors_int(fields, "padding_zero_bytes"));
		want_len = vectors_hex_var(m, "bytes", want, sizeof(want));
		assert_int_equal(want_len, vectors_int(m, "len"));
		assert_int_equal(wg_data_message_len(plain_len, mtu), want_len);

		assert_int_equal(
			wg_data_encrypt(&kp, 1, buf, sizeof(buf), plain_len, mtu, &msg_len), 0);
		assert_int_equal(msg_len, want_len);
		assert_memory_equal(buf, want, want_len);
		assert_int_equal(kp.send_counter, vectors_int(fields, "counter") + 1);
		checked++;
	}
	/* The capture holds three: initiator counters 0 and 1, responder 0. */
	assert_int_equal(checked, 3);
}

/* Every transport message of the capture, opened by its receiver in capture
 * order, then each one again as a replay. */
static void test_decrypt_vectors(void **state)
{
	json_t *msgs = vectors_get(root, "messages");
	struct wg_keypair at_initiator, at_responder;
	size_t i, checked = 0;
	json_t *m;

	keypair_for(&at_initiator, "initiator", 0);
	keypair_for(&at_responder, "responder", 0);
	for (int pass = 0; pass < 2; pass++) {
		json_array_foreach(msgs, i, m)
		{
			struct wg_keypair *kp;
			json_t *fields;
			uint8_t buf[BUF_LEN], want[BUF_LEN];
			size_t len, want_len, plain_len = 99;
			const char *why = NULL;
			int ret;

			if (vectors_int(m, "type") != WG_MESSAGE_DATA)
				continue;
			fields = vectors_get(m, "fields");
			kp = strcmp(vectors_str(m, "from"), "initiator") == 0 ? &at_responder
									      : &at_initiator;
			len = vectors_hex_var(m, "bytes", buf, sizeof(buf));
			want_len =
				vectors_hex_var(fields, "plaintext_ip_packet", want, sizeof(want));
			ret = wg_data_decrypt(kp, 1, buf, len, &plain_len, &why);
			if (pass == 0) {
				assert_int_equal(ret, 0);
				/* Padding (none here) would follow the IP packet. */
				assert_int_equal(plain_len,
						 want_len +
							 vectors_int(fields, "padding_zero_bytes"));
				assert_memory_equal(buf + WG_DATA_HEADER_LEN, want, want_len);
				checked++;
			} else {
				assert_int_equal(ret, -EALREADY);
				assert_int_equal(plain_len, 0);
			}
		}
	}
	assert_int_equal(checked, 3);
}

static void test_roundtrip_keepalive_and_padding(void **state)
{
	struct wg_keypair tx, rx;
	uint8_t buf[BUF_LEN];
	size_t msg_len, plain_len;
	const char *why = NULL;

	keypair_for(&tx, "initiator", 0);
	keypair_for(&rx, "responder", 0);
	/* 1: keepalive: an empty payload, 32 bytes on the wire. */
	assert_int_equal(wg_data_encrypt(&tx, 0, buf, sizeof(buf), 0, 1420, &msg_len), 0);
	assert_int_equal(msg_len, WG_DATA_MIN_LEN);
	assert_int_equal(wg_data_decrypt(&rx, 0, buf, msg_len, &plain_len, &why), 0);
	assert_int_equal(plain_len, 0);
	/* 2: 17 bytes are padded with 15 zeros. */
	memset(buf + WG_DATA_HEADER_LEN, 0xab, 17);
	assert_int_equal(wg_data_encrypt(&tx, 0, buf, sizeof(buf), 17, 1420, &msg_len), 0);
	assert_int_equal(msg_len, WG_DATA_HEADER_LEN + 32 + WG_AUTHTAG_LEN);
	assert_int_equal(wg_data_decrypt(&rx, 0, buf, msg_len, &plain_len, &why), 0);
	assert_int_equal(plain_len, 32);
	assert_int_equal(buf[WG_DATA_HEADER_LEN + 16], 0xab);
	assert_true(sodium_is_zero(buf + WG_DATA_HEADER_LEN + 17, 15));
	/* 3: padding never goes past the MTU. */
	assert_int_equal(wg_data_padding(1419, 1420), 1);
	assert_int_equal(wg_data_padding(1418, 1420), 2);
	assert_int_equal(wg_data_padding(1420, 1420), 0);
	assert_int_equal(wg_data_padding(1415, 1420), 5);
	assert_int_equal(wg_data_padding(1415, 0), 9);
	assert_int_equal(wg_data_padding(1421, 1420), 15);
}

static void test_tampering_and_misdirection(void **state)
{
	struct wg_keypair tx, rx;
	uint8_t buf[BUF_LEN], copy[BUF_LEN];
	size_t msg_len, plain_len;
	const char *why = NULL;

	keypair_for(&tx, "initiator", 0);
	keypair_for(&rx, "responder", 0);
	memset(buf + WG_DATA_HEADER_LEN, 0x45, 64);
	assert_int_equal(wg_data_encrypt(&tx, 0, buf, sizeof(buf), 64, 0, &msg_len), 0);
	memcpy(copy, buf, msg_len);

	/* 1: any flipped bit in the counter, ciphertext or tag. */
	for (size_t i = 8; i < msg_len; i += 7) {
		memcpy(buf, copy, msg_len);
		buf[i] ^= 0x10;
		assert_int_not_equal(wg_data_decrypt(&rx, 0, buf, msg_len, &plain_len, &why), 0);
		assert_int_equal(plain_len, 0);
	}
	/* 2: the window did not move for any of those. */
	assert_true(wg_replay_check(&rx.replay, 0));
	/* 3: wrong receiver index, wrong type, bad lengths. */
	memcpy(buf, copy, msg_len);
	buf[4] ^= 1;
	assert_int_equal(wg_data_decrypt(&rx, 0, buf, msg_len, &plain_len, &why), -EBADMSG);
	memcpy(buf, copy, msg_len);
	buf[0] = WG_MESSAGE_RESPONSE;
	assert_int_equal(wg_data_decrypt(&rx, 0, buf, msg_len, &plain_len, &why), -EBADMSG);
	memcpy(buf, copy, msg_len);
	assert_int_equal(wg_data_decrypt(&rx, 0, buf, WG_DATA_MIN_LEN - 1, &plain_len, &why),
			 -EBADMSG);
	assert_int_equal(wg_data_decrypt(&rx, 0, buf, msg_len - 1, &plain_len, &why), -EBADMSG);
	/* 4: the key of the other direction does not open it. */
	memcpy(buf, copy, msg_len);
	tx.local_index = rx.local_index;
	assert_int_equal(wg_data_decrypt(&tx, 0, buf, msg_len, &plain_len, &why), -EBADMSG);
	assert_non_null(strstr(why, "authenticate"));
	/* 5: the genuine message still opens. */
	memcpy(buf, copy, msg_len);
	assert_int_equal(wg_data_decrypt(&rx, 0, buf, msg_len, &plain_len, &why), 0);
}

static void test_session_limits(void **state)
{
	struct wg_keypair tx, rx;
	struct wg_message_data hdr;
	uint8_t buf[BUF_LEN];
	size_t msg_len = 1, plain_len;
	const char *why = NULL;
	uint64_t reject = REJECT_AFTER_TIME * WG_NSEC_PER_SEC;

	keypair_for(&tx, "initiator", 0);
	keypair_for(&rx, "responder", 0);
	/* 1: buffer too small for header + padded payload + tag. */
	assert_int_equal(
		wg_data_encrypt(&tx, 0, buf, WG_DATA_HEADER_LEN + 16 + 15, 16, 0, &msg_len),
		-EMSGSIZE);
	assert_int_equal(msg_len, 0);
	assert_int_equal(wg_data_encrypt(&tx, 0, buf, sizeof(buf), WG_DATA_MAX_PLAINTEXT_LEN + 1, 0,
					 &msg_len),
			 -EMSGSIZE);
	assert_int_equal(tx.send_counter, 0);
	/* 2: REJECT_AFTER_TIME: neither side uses the session any more. */
	assert_int_equal(wg_data_encrypt(&tx, reject - 1, buf, sizeof(buf), 0, 0, &msg_len), 0);
	assert_int_equal(wg_data_encrypt(&tx, reject, buf, sizeof(buf), 0, 0, &msg_len), -ESTALE);
	assert_int_equal(wg_data_encrypt(&tx, 0, buf, sizeof(buf), 0, 0, &msg_len), 0);
	assert_int_equal(wg_data_decrypt(&rx, reject, buf, msg_len, &plain_len, &why), -ESTALE);
	assert_int_equal(wg_data_decrypt(&rx, reject - 1, buf, msg_len, &plain_len, &why), 0);
	/* 3: REJECT_AFTER_MESSAGES: the last usable counter goes out, then none. */
	tx.send_counter = REJECT_AFTER_MESSAGES - 1;
	assert_int_equal(wg_data_encrypt(&tx, 0, buf, sizeof(buf), 0, 0, &msg_len), 0);
	memcpy(&hdr, buf, sizeof(hdr));
	assert_int_equal(le64toh(hdr.counter), REJECT_AFTER_MESSAGES - 1);
	assert_int_equal(wg_data_decrypt(&rx, 0, buf, msg_len, &plain_len, &why), 0);
	assert_int_equal(wg_data_encrypt(&tx, 0, buf, sizeof(buf), 0, 0, &msg_len), -ESTALE);
	assert_int_equal(tx.send_counter, REJECT_AFTER_MESSAGES);
}

static void test_rekey_hints(void **state)
{
	struct wg_keypair kp;
	uint64_t s = WG_NSEC_PER_SEC;

	keypair_for(&kp, "initiator", 10 * s);
	assert_false(wg_data_wants_rekey(&kp, 10 * s + REKEY_AFTER_TIME * s - 1));
	assert_true(wg_data_wants_rekey(&kp, 10 * s + REKEY_AFTER_TIME * s));
	assert_false(wg_data_wants_rekey_on_receive(&kp, 10 * s + 164 * s));
	assert_true(wg_data_wants_rekey_on_receive(&kp, 10 * s + 165 * s));
	kp.send_counter = REKEY_AFTER_MESSAGES;
	assert_true(wg_data_wants_rekey(&kp, 10 * s));

	/* The responder leaves time-based rekeying to the initiator. */
	keypair_for(&kp, "responder", 0);
	assert_false(wg_data_wants_rekey(&kp, REJECT_AFTER_TIME * s));
	assert_false(wg_data_wants_rekey_on_receive(&kp, REJECT_AFTER_TIME * s));
	kp.send_counter = REKEY_AFTER_MESSAGES - 1;
	assert_false(wg_data_wants_rekey(&kp, 0));
	kp.send_counter++;
	assert_true(wg_data_wants_rekey(&kp, 0));
}

struct side {
	struct wg_noise_static s;
	struct wg_handshake hs;
	struct wg_keypairs kps;
};

static struct wg_handshake *lookup_side(void *ctx, const uint8_t public_key[WG_KEY_LEN])
{
	struct side *self = ctx;

	return memcmp(public_key, self->hs.remote_static, WG_KEY_LEN) == 0 ? &self->hs : NULL;
}

/* Sends plain_len bytes of `fill` from a to b and checks what arrives. */
static void send_one(struct side *a, struct side *b, size_t plain_len, uint8_t fill)
{
	uint8_t buf[BUF_LEN];
	uint32_t dropped[WG_KEYPAIR_SLOTS];
	struct wg_keypair *rx;
	struct wg_message m;
	size_t msg_len, got, n;
	const char *why = NULL;

	memset(buf + WG_DATA_HEADER_LEN, fill, plain_len);
	assert_int_equal(wg_data_encrypt(wg_noise_keypairs_current(&a->kps), 0, buf, sizeof(buf),
					 plain_len, 1280, &msg_len),
			 0);
	assert_int_equal(wg_messages_parse(&m, buf, msg_len, &why), WG_MESSAGE_DATA);
	rx = wg_noise_keypairs_find(&b->kps, m.receiver_index);
	assert_non_null(rx);
	assert_int_equal(wg_data_decrypt(rx, 0, buf, msg_len, &got, &why), 0);
	assert_true(got >= plain_len && got - plain_len < WG_DATA_PADDING_MULTIPLE);
	for (size_t i = 0; i < plain_len; i++)
		assert_int_equal(buf[WG_DATA_HEADER_LEN + i], fill);
	wg_noise_keypairs_received_with(&b->kps, rx, dropped, &n);
}

/* Random identities and ephemerals: handshakes in both directions, each
 * followed by traffic both ways, sessions rotating as the paper says (the
 * responder sends only once the initiator's first message confirmed). */
static void test_random_sessions(void **state)
{
	for (int round = 0; round < 20; round++) {
		struct side sides[2];
		uint32_t dropped[WG_KEYPAIR_SLOTS];
		size_t n;
		uint8_t k[WG_KEY_LEN];

		for (int i = 0; i < 2; i++) {
			randombytes_buf(k, sizeof(k));
			assert_int_equal(wg_noise_static_init(&sides[i].s, k), 0);
			wg_noise_keypairs_init(&sides[i].kps);
		}
		for (int i = 0; i < 2; i++)
			assert_int_equal(wg_noise_handshake_init(&sides[i].hs, &sides[i].s,
								 sides[!i].s.public_key, NULL),
					 0);
		for (int hsno = 0; hsno < 4; hsno++) {
			struct side *ini = &sides[(round + hsno) % 2],
				    *res = &sides[!((round + hsno) % 2)];
			struct wg_message_initiation init;
			struct wg_message_response resp;
			struct wg_handshake *found;
			struct wg_keypair kp;
			uint8_t ts[WG_TIMESTAMP_LEN];
			const char *why = NULL;
			uint32_t base = (uint32_t)(round * 100 + hsno * 10);

			randombytes_buf(k, sizeof(k));
			wg_noise_tai64n_from(ts, 1700000000 + (uint64_t)hsno, 0);
			assert_int_equal(wg_noise_create_initiation(&ini->hs, &ini->s, k, base + 1,
								    ts, &init),
					 0);
			assert_int_equal(wg_noise_consume_initiation(
						 &res->s, &init, lookup_side, res,
						 (uint64_t)hsno * WG_NSEC_PER_SEC, &found, &why),
					 0);
			randombytes_buf(k, sizeof(k));
			assert_int_equal(wg_noise_create_response(found, k, base + 2, &resp), 0);
			assert_int_equal(wg_noise_derive_keypair(found, &kp, 0), 0);
			wg_noise_keypairs_install(&res->kps, &kp, dropped, &n);
			assert_int_equal(wg_noise_consume_response(&ini->hs, &ini->s, &resp, &why),
					 0);
			assert_int_equal(wg_noise_derive_keypair(&ini->hs, &kp, 0), 0);
			wg_noise_keypairs_install(&ini->kps, &kp, dropped, &n);
			wg_noise_keypair_destroy(&kp);

			/* The initiator sends first (a keepalive will do); then both ways. */
			assert_int_equal(wg_noise_keypairs_current(&ini->kps)->local_index,
					 base + 1);
			send_one(ini, res, (size_t)round * 7 % 100, 0x11);
			assert_int_equal(wg_noise_keypairs_current(&res->kps)->local_index,
					 base + 2);
			send_one(res, ini, 1280, 0x22);
			send_one(ini, res, 1, 0x33);
		}
		for (int i = 0; i < 2; i++) {
			wg_noise_keypairs_clear(&sides[i].kps, dropped, &n);
			wg_noise_handshake_destroy(&sides[i].hs);
			wg_noise_static_destroy(&sides[i].s);
		}
	}
}

/* Every case runs twice: with libcrypto's AEAD (when this machine's OpenSSL
 * has it) and with libsodium's, so both meet wireguard-go's bytes. */
static int group_setup_sodium(void **state)
{
	wg_aead_force_sodium(true);
	return group_setup(state);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encrypt_vectors),
		cmocka_unit_test(test_decrypt_vectors),
		cmocka_unit_test(test_roundtrip_keepalive_and_padding),
		cmocka_unit_test(test_tampering_and_misdirection),
		cmocka_unit_test(test_session_limits),
		cmocka_unit_test(test_rekey_hints),
		cmocka_unit_test(test_random_sessions),
	};

	int failed;

	print_message("AEAD first: %s\n", wg_aead_backend());
	failed = cmocka_run_group_tests_name(wg_aead_backend(), tests, group_setup, group_teardown);
	failed +=
		cmocka_run_group_tests_name("libsodium", tests, group_setup_sodium, group_teardown);
	return failed;
}
