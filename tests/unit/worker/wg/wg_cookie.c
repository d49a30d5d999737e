/* MAC1, MAC2 and the cookie reply against wireguard-go (wireguard.json
 * cookie_case): the responder's cookie for 198.51.100.7:41641, its reply
 * byte for byte, the initiator taking the cookie from it, and the next
 * initiation carrying the captured MAC2. Then what must be dropped: a wrong
 * MAC1, a missing or stale MAC2 under load, a reply that is not for us. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "worker/wg/wg_cookie.c"
#include "worker/wg/wg_noise.h"
#include "tests/unit/vectors.h"

struct fixture {
	json_t *root;
	json_t *cc; /* cookie_case */
	struct wg_noise_static initiator, responder;
	struct wg_cookie_checker checker; /* the responder's */
	struct wg_cookie_generator gen;	  /* the initiator's, towards the responder */
	uint8_t src[WG_COOKIE_SRC_MAX_LEN];
	size_t src_len;
	uint8_t answered[WG_MESSAGE_INITIATION_LEN];
};

static const uint64_t T0 = 1000 * WG_NSEC_PER_SEC;

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	uint8_t k[WG_KEY_LEN];

	assert_non_null(f);
	f->root = vectors_load("tailscale/wireguard.json");
	f->cc = vectors_get(f->root, "cookie_case");
	vectors_hex(f->root, "initiator_static_private", k, sizeof(k));
	assert_int_equal(wg_noise_static_init(&f->initiator, k), 0);
	vectors_hex(f->root, "responder_static_private", k, sizeof(k));
	assert_int_equal(wg_noise_static_init(&f->responder, k), 0);
	wg_cookie_checker_init(&f->checker, f->responder.public_key);
	wg_cookie_generator_init(&f->gen, f->responder.public_key);
	f->src_len = vectors_hex_var(f->cc, "src_bytes_for_mac2", f->src, sizeof(f->src));
	vectors_hex(f->cc, "answered_initiation", f->answered, sizeof(f->answered));
	/* The responder's secret is the one wireguard-go drew, set at T0. */
	vectors_hex(f->cc, "cookie_secret", f->checker.secret, WG_COOKIE_SECRET_LEN);
	f->checker.secret_birth_ns = T0;
	f->checker.secret_set = true;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	json_decref(f->root);
	wg_noise_static_destroy(&f->initiator);
	wg_noise_static_destroy(&f->responder);
	wg_cookie_checker_destroy(&f->checker);
	wg_cookie_generator_destroy(&f->gen);
	free(f);
	return 0;
}

static void test_endpoint_bytes(void **state)
{
	struct fixture *f = *state;
	static const uint8_t v4[4] = {198, 51, 100, 7};
	uint8_t out[WG_COOKIE_SRC_MAX_LEN], v6[16] = {0xfd, 0x7a};

	/* wireguard.json: sender_endpoint 198.51.100.7:41641. */
	assert_string_equal(vectors_str(f->cc, "sender_endpoint"), "198.51.100.7:41641");
	assert_int_equal(wg_cookie_endpoint_bytes(out, v4, 4, 41641), 6);
	assert_int_equal(f->src_len, 6);
	assert_memory_equal(out, f->src, 6);
	assert_int_equal(wg_cookie_endpoint_bytes(out, v6, 16, 0x0102), 18);
	assert_int_equal(out[16], 0x02);
	assert_int_equal(out[17], 0x01);
	assert_int_equal(wg_cookie_endpoint_bytes(out, v4, 5, 1), -EINVAL);
}

/* Every captured handshake message carries a MAC1 our checker accepts, and a
 * one-bit change anywhere before it makes the message drop. */
static void test_mac1_vectors(void **state)
{
	struct fixture *f = *state;
	struct wg_cookie_checker initiator_checker;
	uint8_t msg[WG_MESSAGE_INITIATION_LEN];
	const char *why = NULL;

	wg_cookie_checker_init(&initiator_checker, f->initiator.public_key);
	/* 1: the initiation, checked by the responder. */
	vectors_hex(vectors_at(f->root, "messages", 0), "bytes", msg, WG_MESSAGE_INITIATION_LEN);
	assert_int_equal(wg_cookie_check_mac1(&f->checker, msg, WG_MESSAGE_INITIATION_LEN), 0);
	assert_int_equal(wg_cookie_validate(&f->checker, msg, WG_MESSAGE_INITIATION_LEN, f->src,
					    f->src_len, false, T0, &why),
			 0);
	/* 2: it is not addressed to the initiator. */
	assert_int_equal(wg_cookie_check_mac1(&initiator_checker, msg, WG_MESSAGE_INITIATION_LEN),
			 -EBADMSG);
	/* 3: MAC1 wrong -> dropped, whether or not under load. */
	for (size_t i = 0; i < WG_MESSAGE_INITIATION_LEN - WG_MAC_LEN; i += 13) {
		msg[i] ^= 0x01;
		assert_int_equal(wg_cookie_validate(&f->checker, msg, WG_MESSAGE_INITIATION_LEN,
						    f->src, f->src_len, false, T0, &why),
				 -EBADMSG);
		assert_int_equal(wg_cookie_validate(&f->checker, msg, WG_MESSAGE_INITIATION_LEN,
						    f->src, f->src_len, true, T0, &why),
				 -EBADMSG);
		msg[i] ^= 0x01;
	}
	assert_non_null(strstr(why, "mac1"));
	/* 4: the response, checked by the initiator. */
	vectors_hex(vectors_at(f->root, "messages", 1), "bytes", msg, WG_MESSAGE_RESPONSE_LEN);
	assert_int_equal(wg_cookie_check_mac1(&initiator_checker, msg, WG_MESSAGE_RESPONSE_LEN), 0);
	assert_int_equal(wg_cookie_check_mac1(&f->checker, msg, WG_MESSAGE_RESPONSE_LEN), -EBADMSG);
	/* 5: other lengths are not handshake messages. */
	assert_int_equal(wg_cookie_check_mac1(&f->checker, msg, 64), -EINVAL);
	assert_int_equal(
		wg_cookie_validate(&f->checker, msg, 32, f->src, f->src_len, false, T0, &why),
		-EBADMSG);
	wg_cookie_checker_destroy(&initiator_checker);
}

static void test_cookie_reply_vector(void **state)
{
	struct fixture *f = *state;
	struct wg_message_cookie_reply reply;
	uint8_t nonce[WG_COOKIE_NONCE_LEN], want[WG_MESSAGE_COOKIE_REPLY_LEN];
	uint8_t cookie[WG_COOKIE_LEN], want_cookie[WG_COOKIE_LEN];
	const char *why = NULL;

	/* The cookie wireguard-go derived for this sender. */
	make_cookie(cookie, &f->checker, f->src, f->src_len);
	vectors_hex(f->cc, "cookie", want_cookie, sizeof(want_cookie));
	assert_memory_equal(cookie, want_cookie, WG_COOKIE_LEN);

	/* Under load, the answered initiation (MAC2 zero) draws a cookie reply. */
	assert_int_equal(wg_cookie_validate(&f->checker, f->answered, sizeof(f->answered), f->src,
					    f->src_len, true, T0, &why),
			 -EAGAIN);
	vectors_hex(f->cc, "cookie_reply_nonce", nonce, sizeof(nonce));
	assert_int_equal(wg_cookie_create_reply(&f->checker, f->answered, sizeof(f->answered),
						f->src, f->src_len, T0 + 1, nonce, &reply),
			 0);
	vectors_hex(f->cc, "cookie_reply", want, sizeof(want));
	assert_memory_equal(&reply, want, sizeof(want));
	assert_int_equal(le32toh(reply.receiver_index),
			 vectors_int(vectors_get(f->cc, "cookie_reply_fields"), "receiver_index"));

	/* The initiator sent that initiation (its MAC1 is what we remember)... */
	memcpy(f->gen.last_mac1_sent, f->answered + WG_MESSAGE_INITIATION_LEN - 32, WG_MAC_LEN);
	f->gen.have_sent_mac1 = true;
	/* ...and takes the cookie out of wireguard-go's reply. */
	memcpy(&reply, want, sizeof(want));
	assert_int_equal(wg_cookie_consume_reply(&f->gen, &reply, T0 + 2, &why), 0);
	assert_true(f->gen.have_cookie);
	assert_memory_equal(f->gen.cookie, want_cookie, WG_COOKIE_LEN);

	/* A reply for another message (other MAC1 remembered) does not open. */
	f->gen.last_mac1_sent[0] ^= 1;
	assert_int_equal(wg_cookie_consume_reply(&f->gen, &reply, T0 + 2, &why), -EBADMSG);
	assert_non_null(strstr(why, "cookie reply"));
	/* Nor does one with nothing sent yet. */
	f->gen.have_sent_mac1 = false;
	assert_int_equal(wg_cookie_consume_reply(&f->gen, &reply, T0 + 2, &why), -EBADMSG);
	/* Nor a response-sized message for the reply. */
	assert_int_equal(wg_cookie_create_reply(&f->checker, f->answered, 100, f->src, f->src_len,
						T0, nonce, &reply),
			 -EINVAL);
}

/* The initiator's next initiation (5 s later, new ephemeral and index) with
 * the cookie: rebuilt with wg_noise, its MACs added here, equal to
 * wireguard-go's bytes; the responder accepts its MAC2 under load. */
static void test_mac2_vector(void **state)
{
	struct fixture *f = *state;
	struct wg_handshake hs;
	struct wg_message_initiation init;
	uint8_t raw[WG_KEY_LEN], ts[WG_TIMESTAMP_LEN], want[WG_MESSAGE_INITIATION_LEN];
	uint8_t mac[WG_MAC_LEN];
	const char *why = NULL;

	vectors_hex(f->cc, "cookie", f->gen.cookie, WG_COOKIE_LEN);
	f->gen.have_cookie = true;
	f->gen.cookie_birth_ns = T0;

	/* Upstream clamps the raw random bytes; X25519 clamps the same way. */
	vectors_hex(f->cc, "initiation2_ephemeral_raw_random", raw, sizeof(raw));
	vectors_hex(f->cc, "initiation2_timestamp_tai64n", ts, sizeof(ts));
	assert_int_equal(wg_noise_handshake_init(&hs, &f->initiator, f->responder.public_key, NULL),
			 0);
	assert_int_equal(wg_noise_create_initiation(
				 &hs, &f->initiator, raw,
				 vectors_le32(f->cc, "initiation2_sender_index_random_bytes"), ts,
				 &init),
			 0);
	assert_int_equal(wg_cookie_add_macs(&f->gen, (uint8_t *)&init, sizeof(init),
					    T0 + 5 * WG_NSEC_PER_SEC),
			 0);
	vectors_hex(f->cc, "initiation2_mac1", mac, sizeof(mac));
	assert_memory_equal(init.mac1, mac, WG_MAC_LEN);
	vectors_hex(f->cc, "initiation2_mac2", mac, sizeof(mac));
	assert_memory_equal(init.mac2, mac, WG_MAC_LEN);
	vectors_hex(f->cc, "initiation2_with_mac2", want, sizeof(want));
	assert_memory_equal(&init, want, sizeof(want));

	/* The responder, still under load, lets it through. */
	assert_int_equal(wg_cookie_check_mac2(&f->checker, want, sizeof(want), f->src, f->src_len,
					      T0 + 5 * WG_NSEC_PER_SEC),
			 0);
	assert_int_equal(wg_cookie_validate(&f->checker, want, sizeof(want), f->src, f->src_len,
					    true, T0 + 5 * WG_NSEC_PER_SEC, &why),
			 0);
	/* From another address the cookie is wrong. */
	f->src[3] ^= 1;
	assert_int_equal(wg_cookie_validate(&f->checker, want, sizeof(want), f->src, f->src_len,
					    true, T0 + 5 * WG_NSEC_PER_SEC, &why),
			 -EAGAIN);
	f->src[3] ^= 1;
	/* Once the secret is older than COOKIE_REFRESH_TIME, MAC2 no longer counts. */
	assert_int_equal(wg_cookie_check_mac2(&f->checker, want, sizeof(want), f->src, f->src_len,
					      T0 + (COOKIE_REFRESH_TIME + 1) * WG_NSEC_PER_SEC),
			 -EBADMSG);
	/* And the initiator stops sending a cookie that old. */
	assert_int_equal(wg_cookie_add_macs(&f->gen, (uint8_t *)&init, sizeof(init),
					    T0 + (COOKIE_REFRESH_TIME + 1) * WG_NSEC_PER_SEC),
			 0);
	assert_true(sodium_is_zero(init.mac2, WG_MAC_LEN));
	wg_noise_handshake_destroy(&hs);
}

static void test_secret_rotation(void **state)
{
	struct fixture *f = *state;
	struct wg_message_cookie_reply reply;
	uint8_t nonce[WG_COOKIE_NONCE_LEN] = {0}, old[WG_COOKIE_SECRET_LEN];
	uint64_t later = T0 + (COOKIE_REFRESH_TIME + 1) * WG_NSEC_PER_SEC;

	memcpy(old, f->checker.secret, sizeof(old));
	/* 1: within COOKIE_REFRESH_TIME the secret stays. */
	assert_int_equal(wg_cookie_create_reply(
				 &f->checker, f->answered, sizeof(f->answered), f->src, f->src_len,
				 T0 + COOKIE_REFRESH_TIME * WG_NSEC_PER_SEC, nonce, &reply),
			 0);
	assert_memory_equal(f->checker.secret, old, sizeof(old));
	/* 2: past it a reply draws a new one. */
	assert_int_equal(wg_cookie_create_reply(&f->checker, f->answered, sizeof(f->answered),
						f->src, f->src_len, later, nonce, &reply),
			 0);
	assert_memory_not_equal(f->checker.secret, old, sizeof(old));
	assert_int_equal(f->checker.secret_birth_ns, later);
	/* 3: a checker that never replied has no secret, so no MAC2 is valid. */
	struct wg_cookie_checker fresh;

	wg_cookie_checker_init(&fresh, f->responder.public_key);
	assert_int_equal(wg_cookie_check_mac2(&fresh, f->answered, sizeof(f->answered), f->src,
					      f->src_len, T0),
			 -EBADMSG);
	wg_cookie_checker_destroy(&fresh);
}

static void test_under_load(void **state)
{
	struct fixture *f = *state;

	assert_false(wg_cookie_under_load(&f->checker, 0, T0));
	assert_false(wg_cookie_under_load(&f->checker, UNDER_LOAD_QUEUE_LEN - 1, T0));
	assert_true(wg_cookie_under_load(&f->checker, UNDER_LOAD_QUEUE_LEN, T0));
	/* The queue drained, but load is remembered for UNDER_LOAD_AFTER_TIME. */
	assert_true(wg_cookie_under_load(&f->checker, 0,
					 T0 + UNDER_LOAD_AFTER_TIME * WG_NSEC_PER_SEC - 1));
	assert_false(
		wg_cookie_under_load(&f->checker, 0, T0 + UNDER_LOAD_AFTER_TIME * WG_NSEC_PER_SEC));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_endpoint_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mac1_vectors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cookie_reply_vector, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mac2_vector, setup, teardown),
		cmocka_unit_test_setup_teardown(test_secret_rotation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_under_load, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
