/* The WireGuard handshake against wireguard-go's own bytes (wireguard.json):
 * both sides rebuild the captured initiation and response from the listed
 * keys, ephemerals, indices and timestamp, and derive the captured transport
 * keys. Then what must not work: a replayed or older TAI64N, an initiation
 * flood, a wrong static key, an unknown peer, a tampered or misdirected
 * response, low-order keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "worker/wg/wg_noise.c"
#include "worker/wg/wg_cookie.h"
#include "tests/unit/vectors.h"

/* Both sides of the vector handshake, built from wireguard.json. */
struct fixture {
	json_t *root;
	struct wg_noise_static initiator, responder;
	struct wg_handshake i_hs; /* initiator's state for the responder */
	struct wg_handshake r_hs; /* responder's state for the initiator */
	struct wg_cookie_generator i_cookie, r_cookie;
	uint8_t i_eph[WG_KEY_LEN], r_eph[WG_KEY_LEN];
	uint32_t i_index, r_index;
	uint8_t timestamp[WG_TIMESTAMP_LEN];
	uint8_t msg_init[WG_MESSAGE_INITIATION_LEN], msg_resp[WG_MESSAGE_RESPONSE_LEN];
	bool lookup_knows_peer;
};

static struct wg_handshake *lookup(void *ctx, const uint8_t public_key[WG_KEY_LEN])
{
	struct fixture *f = ctx;

	if (!f->lookup_knows_peer || memcmp(public_key, f->r_hs.remote_static, WG_KEY_LEN) != 0)
		return NULL;
	return &f->r_hs;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	uint8_t k[WG_KEY_LEN];

	assert_non_null(f);
	f->root = vectors_load("tailscale/wireguard.json");
	vectors_hex(f->root, "initiator_static_private", k, sizeof(k));
	assert_int_equal(wg_noise_static_init(&f->initiator, k), 0);
	vectors_hex(f->root, "responder_static_private", k, sizeof(k));
	assert_int_equal(wg_noise_static_init(&f->responder, k), 0);
	vectors_hex(f->root, "initiator_ephemeral_private", f->i_eph, WG_KEY_LEN);
	vectors_hex(f->root, "responder_ephemeral_private", f->r_eph, WG_KEY_LEN);
	f->i_index = vectors_le32(f->root, "initiator_sender_index_random_bytes");
	f->r_index = vectors_le32(f->root, "responder_sender_index_random_bytes");
	vectors_hex(f->root, "timestamp_tai64n", f->timestamp, WG_TIMESTAMP_LEN);
	vectors_hex(vectors_at(f->root, "messages", 0), "bytes", f->msg_init, sizeof(f->msg_init));
	vectors_hex(vectors_at(f->root, "messages", 1), "bytes", f->msg_resp, sizeof(f->msg_resp));

	assert_int_equal(
		wg_noise_handshake_init(&f->i_hs, &f->initiator, f->responder.public_key, NULL), 0);
	assert_int_equal(
		wg_noise_handshake_init(&f->r_hs, &f->responder, f->initiator.public_key, NULL), 0);
	wg_cookie_generator_init(&f->i_cookie, f->responder.public_key);
	wg_cookie_generator_init(&f->r_cookie, f->initiator.public_key);
	f->lookup_knows_peer = true;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	json_decref(f->root);
	wg_noise_static_destroy(&f->initiator);
	wg_noise_static_destroy(&f->responder);
	wg_noise_handshake_destroy(&f->i_hs);
	wg_noise_handshake_destroy(&f->r_hs);
	free(f);
	return 0;
}

/* Initiator: message 1, MACs added, compared with wireguard-go's bytes. */
static void make_initiation(struct fixture *f, struct wg_message_initiation *m)
{
	assert_int_equal(wg_noise_create_initiation(&f->i_hs, &f->initiator, f->i_eph, f->i_index,
						    f->timestamp, m),
			 0);
	assert_int_equal(wg_cookie_add_macs(&f->i_cookie, (uint8_t *)m, sizeof(*m), 0), 0);
}

static void test_static_keys(void **state)
{
	struct fixture *f = *state;
	uint8_t want[WG_KEY_LEN];

	vectors_hex(f->root, "initiator_static_public", want, sizeof(want));
	assert_memory_equal(f->initiator.public_key, want, WG_KEY_LEN);
	vectors_hex(f->root, "responder_static_public", want, sizeof(want));
	assert_memory_equal(f->responder.public_key, want, WG_KEY_LEN);
}

static void test_tai64n(void **state)
{
	struct fixture *f = *state;
	uint8_t ts[WG_TIMESTAMP_LEN], later[WG_TIMESTAMP_LEN];

	/* The fake clock of the vectors read 2000-01-01T00:00:00Z. */
	wg_noise_tai64n_from(ts, 946684800, 0);
	assert_memory_equal(ts, f->timestamp, WG_TIMESTAMP_LEN);
	/* Nanoseconds below 2^24 are whitened away; above they count. */
	wg_noise_tai64n_from(later, 946684800, (1U << 24) - 1);
	assert_memory_equal(later, ts, WG_TIMESTAMP_LEN);
	wg_noise_tai64n_from(later, 946684800, 1U << 24);
	assert_true(memcmp(later, ts, WG_TIMESTAMP_LEN) > 0);
	/* The clock is well past 2000. */
	wg_noise_tai64n_now(later);
	assert_true(memcmp(later, ts, WG_TIMESTAMP_LEN) > 0);
}

static void test_handshake_vectors(void **state)
{
	struct fixture *f = *state;
	struct wg_message_initiation init;
	struct wg_message_response resp;
	struct wg_handshake *found = NULL;
	struct wg_keypair ikp, rkp;
	uint8_t want[WG_KEY_LEN];
	const char *why = NULL;

	make_initiation(f, &init);
	assert_memory_equal(&init, f->msg_init, sizeof(f->msg_init));
	assert_int_equal(f->i_hs.state, WG_HANDSHAKE_CREATED_INITIATION);

	assert_int_equal(wg_noise_consume_initiation(&f->responder, &init, lookup, f, 1000000000,
						     &found, &why),
			 0);
	assert_ptr_equal(found, &f->r_hs);
	assert_int_equal(f->r_hs.remote_index, f->i_index);
	assert_memory_equal(f->r_hs.latest_timestamp, f->timestamp, WG_TIMESTAMP_LEN);

	assert_int_equal(wg_noise_create_response(&f->r_hs, f->r_eph, f->r_index, &resp), 0);
	assert_int_equal(wg_cookie_add_macs(&f->r_cookie, (uint8_t *)&resp, sizeof(resp), 0), 0);
	assert_memory_equal(&resp, f->msg_resp, sizeof(f->msg_resp));

	assert_int_equal(wg_noise_consume_response(&f->i_hs, &f->initiator, &resp, &why), 0);
	assert_int_equal(f->i_hs.remote_index, f->r_index);

	assert_int_equal(wg_noise_derive_keypair(&f->i_hs, &ikp, 7), 0);
	assert_int_equal(wg_noise_derive_keypair(&f->r_hs, &rkp, 7), 0);
	vectors_hex(f->root, "initiator_to_responder_key", want, sizeof(want));
	assert_memory_equal(ikp.send_key, want, WG_KEY_LEN);
	assert_memory_equal(rkp.recv_key, want, WG_KEY_LEN);
	vectors_hex(f->root, "responder_to_initiator_key", want, sizeof(want));
	assert_memory_equal(ikp.recv_key, want, WG_KEY_LEN);
	assert_memory_equal(rkp.send_key, want, WG_KEY_LEN);
	assert_true(ikp.initiator);
	assert_false(rkp.initiator);
	assert_int_equal(ikp.local_index, f->i_index);
	assert_int_equal(ikp.remote_index, f->r_index);
	assert_int_equal(rkp.local_index, f->r_index);
	assert_int_equal(rkp.remote_index, f->i_index);
	assert_int_equal(ikp.created_ns, 7);
	assert_int_equal(ikp.send_counter, 0);

	/* The handshake's secrets are gone once split. */
	assert_int_equal(f->i_hs.state, WG_HANDSHAKE_ZEROED);
	assert_true(sodium_is_zero(f->i_hs.chaining_key, WG_HASH_LEN));
	assert_true(sodium_is_zero(f->i_hs.ephemeral_private, WG_KEY_LEN));
	assert_true(sodium_is_zero(f->r_hs.chaining_key, WG_HASH_LEN));
	/* And nothing splits twice. */
	assert_int_equal(wg_noise_derive_keypair(&f->i_hs, &ikp, 7), -EINVAL);
	wg_noise_keypair_destroy(&ikp);
	wg_noise_keypair_destroy(&rkp);
}

/* The captured initiation itself (not our rebuild) is consumed as well. */
static void test_consume_captured_initiation(void **state)
{
	struct fixture *f = *state;
	struct wg_message_initiation init;
	struct wg_handshake *found = NULL;
	const char *why = NULL;

	memcpy(&init, f->msg_init, sizeof(init));
	assert_int_equal(
		wg_noise_consume_initiation(&f->responder, &init, lookup, f, 1, &found, &why), 0);
	assert_ptr_equal(found, &f->r_hs);
	assert_int_equal(f->r_hs.state, WG_HANDSHAKE_CONSUMED_INITIATION);
}

/* The initiator's view of the responder, for an initiation coming the
 * other way. */
static struct wg_handshake *lookup_at_initiator(void *ctx, const uint8_t public_key[WG_KEY_LEN])
{
	struct fixture *f = ctx;

	return memcmp(public_key, f->i_hs.remote_static, WG_KEY_LEN) == 0 ? &f->i_hs : NULL;
}

/* Crossed initiations: the initiator saves its initiation, answers the
 * responder's own initiation with the same handshake state, restores its
 * initiation, and the vector response to it still completes with the
 * vector keys; the consumed initiation's timestamp stays as replay state. */
static void test_initiation_kept_across_crossing(void **state)
{
	struct fixture *f = *state;
	struct wg_message_initiation init, other;
	struct wg_message_response resp, answer;
	struct wg_noise_initiation saved;
	struct wg_handshake *found = NULL;
	struct wg_keypair ikp, rkp, answer_kp;
	uint8_t other_ts[WG_TIMESTAMP_LEN], want[WG_KEY_LEN];
	const char *why = NULL;

	assert_false(wg_noise_initiation_save(&f->i_hs, &saved));
	make_initiation(f, &init);
	assert_true(wg_noise_initiation_save(&f->i_hs, &saved));

	wg_noise_tai64n_from(other_ts, 946684801, 0);
	assert_int_equal(wg_noise_create_initiation(&f->r_hs, &f->responder, f->r_eph, 0x1234,
						    other_ts, &other),
			 0);
	assert_int_equal(wg_noise_consume_initiation(&f->initiator, &other, lookup_at_initiator, f,
						     1, &found, &why),
			 0);
	assert_ptr_equal(found, &f->i_hs);
	assert_int_equal(wg_noise_create_response(&f->i_hs, f->i_eph, 0x5678, &answer), 0);
	assert_int_equal(wg_noise_derive_keypair(&f->i_hs, &answer_kp, 1), 0);
	assert_false(answer_kp.initiator);
	wg_noise_initiation_restore(&f->i_hs, &saved);
	assert_true(sodium_is_zero((const uint8_t *)&saved, sizeof(saved)));
	assert_int_equal(f->i_hs.state, WG_HANDSHAKE_CREATED_INITIATION);
	assert_int_equal(f->i_hs.local_index, f->i_index);
	assert_memory_equal(f->i_hs.latest_timestamp, other_ts, WG_TIMESTAMP_LEN);

	/* The responder drops its own initiation for ours, as wireguard-go. */
	assert_int_equal(
		wg_noise_consume_initiation(&f->responder, &init, lookup, f, 1, &found, &why), 0);
	assert_int_equal(wg_noise_create_response(&f->r_hs, f->r_eph, f->r_index, &resp), 0);
	assert_int_equal(wg_cookie_add_macs(&f->r_cookie, (uint8_t *)&resp, sizeof(resp), 0), 0);
	assert_memory_equal(&resp, f->msg_resp, sizeof(f->msg_resp));
	assert_int_equal(wg_noise_consume_response(&f->i_hs, &f->initiator, &resp, &why), 0);
	assert_int_equal(wg_noise_derive_keypair(&f->i_hs, &ikp, 2), 0);
	assert_int_equal(wg_noise_derive_keypair(&f->r_hs, &rkp, 2), 0);
	vectors_hex(f->root, "initiator_to_responder_key", want, sizeof(want));
	assert_memory_equal(ikp.send_key, want, WG_KEY_LEN);
	assert_memory_equal(rkp.recv_key, want, WG_KEY_LEN);
	assert_true(ikp.initiator);
	assert_int_equal(ikp.local_index, f->i_index);
	assert_int_equal(ikp.remote_index, f->r_index);
	wg_noise_keypair_destroy(&ikp);
	wg_noise_keypair_destroy(&rkp);
	wg_noise_keypair_destroy(&answer_kp);
}

static void test_initiation_replay_refused(void **state)
{
	struct fixture *f = *state;
	struct wg_message_initiation init;
	struct wg_handshake *found = NULL;
	uint8_t older[WG_TIMESTAMP_LEN];
	const char *why = NULL;
	uint64_t now = 5 * WG_NSEC_PER_SEC;

	memcpy(&init, f->msg_init, sizeof(init));
	assert_int_equal(
		wg_noise_consume_initiation(&f->responder, &init, lookup, f, now, &found, &why), 0);
	assert_int_equal(wg_noise_create_response(&f->r_hs, f->r_eph, f->r_index,
						  &(struct wg_message_response){0}),
			 0);

	/* 1: the very same initiation a second later: a replay, state untouched. */
	found = &f->r_hs;
	assert_int_equal(wg_noise_consume_initiation(&f->responder, &init, lookup, f,
						     now + WG_NSEC_PER_SEC, &found, &why),
			 -EALREADY);
	assert_null(found);
	assert_non_null(strstr(why, "replay"));
	assert_int_equal(f->r_hs.state, WG_HANDSHAKE_CREATED_RESPONSE);

	/* 2: a fresh initiation with an older timestamp (clock jumped back). */
	wg_noise_tai64n_from(older, 946684799, 0);
	assert_int_equal(wg_noise_create_initiation(&f->i_hs, &f->initiator, f->i_eph, f->i_index,
						    older, &init),
			 0);
	assert_int_equal(wg_noise_consume_initiation(&f->responder, &init, lookup, f,
						     now + 2 * WG_NSEC_PER_SEC, &found, &why),
			 -EALREADY);

	/* 3: a newer timestamp is accepted. */
	wg_noise_tai64n_from(older, 946684801, 0);
	assert_int_equal(wg_noise_create_initiation(&f->i_hs, &f->initiator, f->i_eph, f->i_index,
						    older, &init),
			 0);
	assert_int_equal(wg_noise_consume_initiation(&f->responder, &init, lookup, f,
						     now + 3 * WG_NSEC_PER_SEC, &found, &why),
			 0);
	assert_memory_equal(f->r_hs.latest_timestamp, older, WG_TIMESTAMP_LEN);
}

static void test_initiation_flood_refused(void **state)
{
	struct fixture *f = *state;
	struct wg_message_initiation init;
	struct wg_handshake *found = NULL;
	uint8_t ts[WG_TIMESTAMP_LEN];
	const char *why = NULL;
	uint64_t now = 100 * WG_NSEC_PER_SEC;
	uint64_t rate = WG_NSEC_PER_SEC / INITIATIONS_PER_SECOND;

	wg_noise_tai64n_from(ts, 1000, 0);
	assert_int_equal(
		wg_noise_create_initiation(&f->i_hs, &f->initiator, f->i_eph, 1, ts, &init), 0);
	assert_int_equal(
		wg_noise_consume_initiation(&f->responder, &init, lookup, f, now, &found, &why), 0);
	/* Newer timestamp, but within 1/50 s of the last one consumed. */
	wg_noise_tai64n_from(ts, 1001, 0);
	assert_int_equal(
		wg_noise_create_initiation(&f->i_hs, &f->initiator, f->i_eph, 2, ts, &init), 0);
	assert_int_equal(wg_noise_consume_initiation(&f->responder, &init, lookup, f, now + rate,
						     &found, &why),
			 -EBUSY);
	assert_int_equal(f->r_hs.remote_index, 1);
	assert_int_equal(wg_noise_consume_initiation(&f->responder, &init, lookup, f,
						     now + rate + 1, &found, &why),
			 0);
	assert_int_equal(f->r_hs.remote_index, 2);
}

/* An initiator that believes the responder has another key: the responder
 * cannot open the static key, so no session. */
static void test_wrong_static_key_no_session(void **state)
{
	struct fixture *f = *state;
	struct wg_noise_static other;
	struct wg_handshake wrong;
	struct wg_message_initiation init;
	struct wg_handshake *found = (struct wg_handshake *)1;
	uint8_t k[WG_KEY_LEN];
	const char *why = NULL;

	memset(k, 0x42, sizeof(k));
	assert_int_equal(wg_noise_static_init(&other, k), 0);
	assert_int_equal(wg_noise_handshake_init(&wrong, &f->initiator, other.public_key, NULL), 0);
	assert_int_equal(wg_noise_create_initiation(&wrong, &f->initiator, f->i_eph, f->i_index,
						    f->timestamp, &init),
			 0);
	assert_int_equal(
		wg_noise_consume_initiation(&f->responder, &init, lookup, f, 1, &found, &why),
		-EBADMSG);
	assert_null(found);
	assert_non_null(strstr(why, "static"));
	assert_int_equal(f->r_hs.state, WG_HANDSHAKE_ZEROED);

	/* A stranger whose static key the responder does not know as a peer. */
	assert_int_equal(wg_noise_handshake_init(&wrong, &other, f->responder.public_key, NULL), 0);
	assert_int_equal(wg_noise_create_initiation(&wrong, &other, f->i_eph, f->i_index,
						    f->timestamp, &init),
			 0);
	assert_int_equal(
		wg_noise_consume_initiation(&f->responder, &init, lookup, f, 1, &found, &why),
		-ENOKEY);
	assert_null(found);

	/* The right initiation, but the peer was removed from the netmap. */
	f->lookup_knows_peer = false;
	memcpy(&init, f->msg_init, sizeof(init));
	assert_int_equal(
		wg_noise_consume_initiation(&f->responder, &init, lookup, f, 1, &found, &why),
		-ENOKEY);

	/* A bit flipped in the encrypted timestamp. */
	f->lookup_knows_peer = true;
	init.encrypted_timestamp[3] ^= 1;
	assert_int_equal(
		wg_noise_consume_initiation(&f->responder, &init, lookup, f, 1, &found, &why),
		-EBADMSG);
	assert_non_null(strstr(why, "timestamp"));
	assert_int_equal(f->r_hs.state, WG_HANDSHAKE_ZEROED);
	wg_noise_handshake_destroy(&wrong);
	wg_noise_static_destroy(&other);
}

static void test_response_checks(void **state)
{
	struct fixture *f = *state;
	struct wg_message_initiation init;
	struct wg_message_response resp;
	struct wg_handshake saved;
	const char *why = NULL;

	/* 1: a response with no initiation in flight. */
	memcpy(&resp, f->msg_resp, sizeof(resp));
	assert_int_equal(wg_noise_consume_response(&f->i_hs, &f->initiator, &resp, &why), -EINVAL);

	make_initiation(f, &init);
	saved = f->i_hs;
	/* 2: addressed to another index. */
	resp.receiver_index = htole32(f->i_index + 1);
	assert_int_equal(wg_noise_consume_response(&f->i_hs, &f->initiator, &resp, &why), -EINVAL);
	/* 3: tampered: it does not authenticate, and the state is untouched. */
	memcpy(&resp, f->msg_resp, sizeof(resp));
	resp.encrypted_nothing[0] ^= 0x80;
	assert_int_equal(wg_noise_consume_response(&f->i_hs, &f->initiator, &resp, &why), -EBADMSG);
	assert_memory_equal(&saved, &f->i_hs, sizeof(saved));
	/* 4: a response made for another initiator's key. */
	memcpy(&resp, f->msg_resp, sizeof(resp));
	resp.ephemeral[5] ^= 1;
	assert_int_not_equal(wg_noise_consume_response(&f->i_hs, &f->initiator, &resp, &why), 0);
	assert_memory_equal(&saved, &f->i_hs, sizeof(saved));
	/* 5: the genuine one still works after all that. */
	memcpy(&resp, f->msg_resp, sizeof(resp));
	assert_int_equal(wg_noise_consume_response(&f->i_hs, &f->initiator, &resp, &why), 0);
	/* 6: and only once. */
	assert_int_equal(wg_noise_consume_response(&f->i_hs, &f->initiator, &resp, &why), -EINVAL);
	/* 7: create_response needs a consumed initiation. */
	assert_int_equal(wg_noise_create_response(&f->i_hs, f->r_eph, 9, &resp), -EINVAL);
}

static void test_low_order_keys(void **state)
{
	struct fixture *f = *state;
	struct wg_handshake hs;
	struct wg_message_initiation init;
	struct wg_handshake *found = NULL;
	struct wg_noise_static s;
	uint8_t zero[WG_KEY_LEN] = {0};
	const char *why = NULL;

	/* 1: a peer whose public key is a low-order point gets no handshake. */
	assert_int_equal(wg_noise_handshake_init(&hs, &f->initiator, zero, NULL), -EINVAL);
	assert_int_equal(
		wg_noise_create_initiation(&hs, &f->initiator, f->i_eph, 1, f->timestamp, &init),
		-EINVAL);
	assert_true(sodium_is_zero((const uint8_t *)&init, sizeof(init)));
	/* 2: an initiation carrying a low-order ephemeral. */
	memcpy(&init, f->msg_init, sizeof(init));
	memset(init.ephemeral, 0, WG_KEY_LEN);
	assert_int_equal(
		wg_noise_consume_initiation(&f->responder, &init, lookup, f, 1, &found, &why),
		-EINVAL);
	/* 3: an all-zero private key still has a public key after clamping; a
	 * private key is never refused for its bytes alone. */
	assert_int_equal(wg_noise_static_init(&s, zero), 0);
	wg_noise_static_destroy(&s);
}

static struct wg_keypair keypair(uint32_t index, bool initiator, uint64_t created)
{
	struct wg_keypair kp = {
		.local_index = index, .initiator = initiator, .created_ns = created};

	memset(kp.send_key, (int)index, WG_KEY_LEN);
	return kp;
}

static uint32_t index_of(struct wg_keypairs *kps, int slot)
{
	assert_true(slot >= 0);
	return kps->slot[slot].local_index;
}

static void test_keypairs_initiator(void **state)
{
	struct wg_keypairs kps;
	struct wg_keypair kp;
	uint32_t dropped[WG_KEYPAIR_SLOTS];
	size_t n = 9;

	wg_noise_keypairs_init(&kps);
	assert_null(wg_noise_keypairs_current(&kps));
	/* 1: the first session sends at once. */
	kp = keypair(1, true, 0);
	wg_noise_keypairs_install(&kps, &kp, dropped, &n);
	assert_int_equal(n, 0);
	assert_int_equal(wg_noise_keypairs_current(&kps)->local_index, 1);
	/* 2: a rekey keeps the old one for receiving. */
	kp = keypair(2, true, 0);
	wg_noise_keypairs_install(&kps, &kp, dropped, &n);
	assert_int_equal(n, 0);
	assert_int_equal(wg_noise_keypairs_current(&kps)->local_index, 2);
	assert_int_equal(index_of(&kps, kps.previous), 1);
	assert_non_null(wg_noise_keypairs_find(&kps, 1));
	/* 3: the next rekey drops the oldest, wiped. */
	kp = keypair(3, true, 0);
	wg_noise_keypairs_install(&kps, &kp, dropped, &n);
	assert_int_equal(n, 1);
	assert_int_equal(dropped[0], 1);
	assert_null(wg_noise_keypairs_find(&kps, 1));
	assert_int_equal(wg_noise_keypairs_find(&kps, 2)->local_index, 2);
	assert_int_equal(wg_noise_keypairs_find(&kps, 3)->send_key[0], 3);
	assert_null(wg_noise_keypairs_find(&kps, 4));
	/* 4: clear wipes all. */
	wg_noise_keypairs_clear(&kps, dropped, &n);
	assert_int_equal(n, 2);
	assert_null(wg_noise_keypairs_current(&kps));
	assert_true(sodium_is_zero((const uint8_t *)kps.slot, sizeof(kps.slot)));
}

static void test_keypairs_responder(void **state)
{
	struct wg_keypairs kps;
	struct wg_keypair kp, *r1, *r2;
	uint32_t dropped[WG_KEYPAIR_SLOTS];
	size_t n = 9;

	wg_noise_keypairs_init(&kps);
	/* 1: a responder's session receives but does not send yet. */
	kp = keypair(10, false, 0);
	wg_noise_keypairs_install(&kps, &kp, dropped, &n);
	assert_null(wg_noise_keypairs_current(&kps));
	r1 = wg_noise_keypairs_find(&kps, 10);
	assert_non_null(r1);
	/* 2: the initiator's first message confirms it. */
	assert_true(wg_noise_keypairs_received_with(&kps, r1, dropped, &n));
	assert_int_equal(n, 0);
	assert_ptr_equal(wg_noise_keypairs_current(&kps), r1);
	assert_false(wg_noise_keypairs_received_with(&kps, r1, dropped, &n));
	/* 3: a new responder session: the old one keeps sending meanwhile. */
	kp = keypair(11, false, 0);
	wg_noise_keypairs_install(&kps, &kp, dropped, &n);
	assert_int_equal(n, 0);
	assert_int_equal(wg_noise_keypairs_current(&kps)->local_index, 10);
	r2 = wg_noise_keypairs_find(&kps, 11);
	assert_true(wg_noise_keypairs_received_with(&kps, r2, dropped, &n));
	assert_int_equal(wg_noise_keypairs_current(&kps)->local_index, 11);
	assert_int_equal(index_of(&kps, kps.previous), 10);
	/* 4: another: installing drops previous, current still sends. */
	kp = keypair(12, false, 0);
	wg_noise_keypairs_install(&kps, &kp, dropped, &n);
	assert_int_equal(n, 1);
	assert_int_equal(dropped[0], 10);
	assert_int_equal(wg_noise_keypairs_current(&kps)->local_index, 11);
	/* 5: our own handshake completes before the peer confirmed 12: 12 stays
	 * for receiving, 11 goes, 13 sends. */
	kp = keypair(13, true, 0);
	wg_noise_keypairs_install(&kps, &kp, dropped, &n);
	assert_int_equal(n, 1);
	assert_int_equal(dropped[0], 11);
	assert_int_equal(wg_noise_keypairs_current(&kps)->local_index, 13);
	assert_int_equal(index_of(&kps, kps.previous), 12);
	assert_int_equal(kps.next, -1);
	/* 6: a message on the old next no longer rotates anything. */
	assert_false(wg_noise_keypairs_received_with(&kps, wg_noise_keypairs_find(&kps, 12),
						     dropped, &n));
	wg_noise_keypairs_clear(&kps, dropped, &n);
}

static void test_keypairs_expire(void **state)
{
	struct wg_keypairs kps;
	struct wg_keypair kp;
	uint32_t dropped[WG_KEYPAIR_SLOTS];
	size_t n = 9;
	uint64_t life = 3 * REJECT_AFTER_TIME * WG_NSEC_PER_SEC;

	wg_noise_keypairs_init(&kps);
	kp = keypair(1, true, 0);
	wg_noise_keypairs_install(&kps, &kp, dropped, &n);
	kp = keypair(2, true, 100);
	wg_noise_keypairs_install(&kps, &kp, dropped, &n);
	wg_noise_keypairs_expire(&kps, life - 1, dropped, &n);
	assert_int_equal(n, 0);
	wg_noise_keypairs_expire(&kps, life, dropped, &n);
	assert_int_equal(n, 1);
	assert_int_equal(dropped[0], 1);
	assert_non_null(wg_noise_keypairs_current(&kps));
	wg_noise_keypairs_expire(&kps, life + 100, dropped, &n);
	assert_int_equal(n, 1);
	assert_null(wg_noise_keypairs_current(&kps));
}

/* Upstream clamps the ephemeral's raw random bytes; the listed private keys
 * are those clamped values, and X25519 clamps the same way. */
static void test_ephemeral_clamping(void **state)
{
	struct fixture *f = *state;
	static const char *const names[][2] = {
		{"initiator_ephemeral_raw_random", "initiator_ephemeral_private"},
		{"responder_ephemeral_raw_random", "responder_ephemeral_private"},
	};

	for (size_t i = 0; i < 2; i++) {
		uint8_t raw[WG_KEY_LEN], priv[WG_KEY_LEN], a[WG_KEY_LEN], b[WG_KEY_LEN];

		vectors_hex(f->root, names[i][0], raw, sizeof(raw));
		vectors_hex(f->root, names[i][1], priv, sizeof(priv));
		assert_memory_not_equal(raw, priv, WG_KEY_LEN);
		raw[0] &= 248;
		raw[31] = (raw[31] & 127) | 64;
		assert_memory_equal(raw, priv, WG_KEY_LEN);
		vectors_hex(f->root, names[i][0], raw, sizeof(raw));
		crypto_scalarmult_curve25519_base(a, raw);
		crypto_scalarmult_curve25519_base(b, priv);
		assert_memory_equal(a, b, WG_KEY_LEN);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_static_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tai64n, setup, teardown),
		cmocka_unit_test_setup_teardown(test_handshake_vectors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_consume_captured_initiation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_initiation_kept_across_crossing, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_initiation_replay_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_initiation_flood_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_static_key_no_session, setup, teardown),
		cmocka_unit_test_setup_teardown(test_response_checks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_low_order_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ephemeral_clamping, setup, teardown),
		cmocka_unit_test(test_keypairs_initiator),
		cmocka_unit_test(test_keypairs_responder),
		cmocka_unit_test(test_keypairs_expire),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
