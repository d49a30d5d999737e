/* Disco against upstream (disco.json): every message built from its listed
 * fields is the listed payload byte for byte, sealed with the listed nonce
 * it is the listed packet, and every packet opens with the receiver's key
 * and parses back to the listed fields. Every parse case, then what must
 * fail: a flipped bit, the wrong key, short or oversized packets, buffers
 * too small; and how the shared UDP socket tells disco from STUN and
 * WireGuard. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "worker/magicsock/disco.c"
#include "tests/unit/vectors.h"
#include "tests/unit/worker/magicsock/disco_text.h"

struct fixture {
	json_t *root;
	uint8_t sender_private[DISCO_KEY_LEN], sender_public[DISCO_KEY_LEN];
	uint8_t receiver_private[DISCO_KEY_LEN], receiver_public[DISCO_KEY_LEN];
	uint8_t node_public[DISCO_NODE_KEY_LEN];
	struct disco_shared at_sender, at_receiver;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	uint8_t derived[DISCO_KEY_LEN];

	assert_non_null(f);
	assert_true(sodium_init() >= 0);
	f->root = vectors_load("tailscale/disco.json");
	vectors_hex(f->root, "sender_disco_private", f->sender_private, DISCO_KEY_LEN);
	vectors_hex(f->root, "receiver_disco_private", f->receiver_private, DISCO_KEY_LEN);
	test_key_text(vectors_str(f->root, "sender_disco_public"), f->sender_public);
	test_key_text(vectors_str(f->root, "receiver_disco_public"), f->receiver_public);
	test_key_text(vectors_str(f->root, "sender_node_public"), f->node_public);
	/* The listed publics are the listed privates' (the keys are right). */
	crypto_scalarmult_base(derived, f->sender_private);
	assert_memory_equal(derived, f->sender_public, DISCO_KEY_LEN);
	crypto_scalarmult_base(derived, f->receiver_private);
	assert_memory_equal(derived, f->receiver_public, DISCO_KEY_LEN);
	assert_int_equal(disco_shared_init(&f->at_sender, f->receiver_public, f->sender_private),
			 0);
	assert_int_equal(disco_shared_init(&f->at_receiver, f->sender_public, f->receiver_private),
			 0);
	/* Both ends derive one key. */
	assert_memory_equal(f->at_sender.key, f->at_receiver.key, sizeof(f->at_sender.key));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	disco_shared_destroy(&f->at_sender);
	disco_shared_destroy(&f->at_receiver);
	json_decref(f->root);
	free(f);
	return 0;
}

static const char *type_name(uint8_t type)
{
	switch (type) {
	case DISCO_PING:
		return "Ping";
	case DISCO_PONG:
		return "Pong";
	case DISCO_CALL_ME_MAYBE:
		return "CallMeMaybe";
	}
	return "?";
}

/* The message the "parsed" object of a vector describes; its endpoints
 * go into eps_raw. */
static void msg_from_parsed(const json_t *parsed, struct disco_msg *m, uint8_t *eps_raw)
{
	const char *type = vectors_str(parsed, "type");

	memset(m, 0, sizeof(*m));
	if (strcmp(type, "Ping") == 0) {
		m->type = DISCO_PING;
		vectors_hex(parsed, "txid", m->ping.txid, DISCO_TXID_LEN);
		test_key_text(vectors_str(parsed, "node_key"), m->ping.node_key);
		m->ping.padding = vectors_int(parsed, "padding");
	} else if (strcmp(type, "Pong") == 0) {
		m->type = DISCO_PONG;
		vectors_hex(parsed, "txid", m->pong.txid, DISCO_TXID_LEN);
		test_addr(vectors_str(parsed, "src"), &m->pong.src);
	} else if (strcmp(type, "CallMeMaybe") == 0) {
		json_t *eps = vectors_get(parsed, "endpoints");
		struct disco_addr a;

		m->type = DISCO_CALL_ME_MAYBE;
		m->cmm.raw = eps_raw;
		m->cmm.n = json_array_size(eps); /* null: none */
		for (size_t i = 0; i < m->cmm.n; i++) {
			test_addr(json_string_value(json_array_get(eps, i)), &a);
			disco_call_me_maybe_fill(eps_raw + i * DISCO_ADDR_WIRE_LEN, &a, 1);
		}
	} else {
		fail_msg("unknown vector type %s", type);
	}
}

/* Compares a parsed message with the vector's fields (parse cases list
 * CallMeMaybe endpoints as a count). */
static void check_parsed(const json_t *want, const struct disco_msg *m)
{
	char buf[DISCO_ADDR_STRLEN];
	uint8_t b[DISCO_NODE_KEY_LEN];

	if (json_object_get(want, "type"))
		assert_string_equal(type_name(m->type), vectors_str(want, "type"));
	switch (m->type) {
	case DISCO_PING:
		vectors_hex(want, "txid", b, DISCO_TXID_LEN);
		assert_memory_equal(m->ping.txid, b, DISCO_TXID_LEN);
		test_key_text(vectors_str(want, "node_key"), b);
		assert_memory_equal(m->ping.node_key, b, DISCO_NODE_KEY_LEN);
		assert_int_equal(m->ping.padding, vectors_int(want, "padding"));
		break;
	case DISCO_PONG:
		vectors_hex(want, "txid", b, DISCO_TXID_LEN);
		assert_memory_equal(m->pong.txid, b, DISCO_TXID_LEN);
		assert_string_equal(disco_addr_format(&m->pong.src, buf, sizeof(buf)),
				    vectors_str(want, "src"));
		break;
	case DISCO_CALL_ME_MAYBE: {
		json_t *eps = vectors_get(want, "endpoints");
		struct disco_addr a;

		if (json_is_integer(eps)) {
			assert_int_equal(m->cmm.n, json_integer_value(eps));
			break;
		}
		assert_int_equal(m->cmm.n, json_array_size(eps));
		for (size_t i = 0; i < m->cmm.n; i++) {
			disco_call_me_maybe_at(&m->cmm, i, &a);
			assert_string_equal(disco_addr_format(&a, buf, sizeof(buf)),
					    json_string_value(json_array_get(eps, i)));
		}
		break;
	}
	default:
		fail_msg("parsed an unknown type %u", m->type);
	}
}

static void test_messages_byte_for_byte(void **state)
{
	struct fixture *f = *state;
	json_t *msgs = vectors_get(f->root, "messages");
	uint8_t payload[256], want[256], nonce[DISCO_NONCE_LEN], eps_raw[256];
	uint8_t pkt[512], opened[256];
	size_t payload_len, pkt_len;
	struct disco_msg m, got;
	const char *why = NULL;
	int n;

	assert_true(json_array_size(msgs) >= 8);
	for (size_t i = 0; i < json_array_size(msgs); i++) {
		json_t *v = json_array_get(msgs, i);

		msg_from_parsed(vectors_get(v, "parsed"), &m, eps_raw);
		/* The payload built from the fields. */
		payload_len = vectors_hex_var(v, "payload", want, sizeof(want));
		n = disco_marshal(&m, payload, sizeof(payload));
		assert_int_equal(n, (int)payload_len);
		assert_memory_equal(payload, want, payload_len);
		/* The packet: sealed alone, and marshalled and sealed in one. */
		vectors_hex(v, "nonce", nonce, DISCO_NONCE_LEN);
		pkt_len = vectors_hex_var(v, "packet", want, sizeof(want));
		assert_int_equal(pkt_len, vectors_int(v, "packet_len"));
		n = disco_seal(&f->at_sender, f->sender_public, nonce, payload, payload_len, pkt,
			       sizeof(pkt));
		assert_int_equal(n, (int)pkt_len);
		assert_memory_equal(pkt, want, pkt_len);
		memset(pkt, 0xaa, sizeof(pkt));
		n = disco_encode(&f->at_sender, f->sender_public, nonce, &m, pkt, sizeof(pkt));
		assert_int_equal(n, (int)pkt_len);
		assert_memory_equal(pkt, want, pkt_len);
		/* The receiver's side: classify, find the sender, open, parse. */
		assert_int_equal(disco_classify(want, pkt_len), DISCO_KIND_DISCO);
		assert_true(disco_looks_like(want, pkt_len));
		assert_memory_equal(disco_sender(want, pkt_len), f->sender_public, DISCO_KEY_LEN);
		n = disco_open(&f->at_receiver, want, pkt_len, opened, sizeof(opened), &why);
		assert_int_equal(n, (int)payload_len);
		assert_memory_equal(opened, payload, payload_len);
		assert_int_equal(disco_parse(opened, (size_t)n, &got, &why), 0);
		assert_int_equal(got.type, m.type);
		assert_int_equal(got.version, 0);
		check_parsed(vectors_get(v, "parsed"), &got);
	}
}

static void test_parse_cases(void **state)
{
	struct fixture *f = *state;
	json_t *cases = vectors_get(f->root, "parse_cases");
	uint8_t payload[256];
	struct disco_msg m;
	size_t len;
	int ret;

	assert_true(json_array_size(cases) >= 9);
	for (size_t i = 0; i < json_array_size(cases); i++) {
		json_t *c = json_array_get(cases, i);
		const char *why = NULL;

		len = vectors_hex_var(c, "payload", payload, sizeof(payload));
		ret = disco_parse(payload, len, &m, &why);
		if (json_is_true(vectors_get(c, "ok"))) {
			assert_int_equal(ret, 0);
			check_parsed(c, &m);
			continue;
		}
		assert_true(ret < 0);
		assert_non_null(why);
		const char *err = vectors_str(c, "error");
		/* Upstream names the unknown type; ours is a static string. */
		if (strncmp(err, "unknown message type", 20) == 0) {
			assert_int_equal(ret, -ENOMSG);
			assert_string_equal(why, "unknown message type");
		} else {
			assert_int_equal(ret, -EBADMSG);
			assert_string_equal(why, err);
		}
	}
}

/* A CallMeMaybe is version 0 to be read; a Ping or Pong of any version is
 * read (upstream ignores the byte for them). */
static void test_versions(void **state)
{
	uint8_t ping[2 + DISCO_TXID_LEN] = {DISCO_PING, 7, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
	uint8_t cmm[2 + DISCO_ADDR_WIRE_LEN] = {
		DISCO_CALL_ME_MAYBE, 0,	       [12] = 0xff, [13] = 0xff,
		[14] = 10,	     [17] = 1, [18] = 0x12, [19] = 0x34};
	struct disco_addr a;
	struct disco_msg m;
	const char *why;
	char buf[DISCO_ADDR_STRLEN];

	(void)state;
	assert_int_equal(disco_parse(ping, sizeof(ping), &m, &why), 0);
	assert_int_equal(m.version, 7);
	assert_int_equal(m.ping.txid[11], 12);
	assert_int_equal(disco_parse(cmm, sizeof(cmm), &m, &why), 0);
	assert_int_equal(m.cmm.n, 1);
	disco_call_me_maybe_at(&m.cmm, 0, &a);
	assert_string_equal(disco_addr_format(&a, buf, sizeof(buf)), "10.0.0.1:4660");
	cmm[1] = 1;
	assert_int_equal(disco_parse(cmm, sizeof(cmm), &m, &why), 0);
	assert_int_equal(m.cmm.n, 0);
	assert_null(m.cmm.raw);
}

static void test_open_refuses(void **state)
{
	struct fixture *f = *state;
	json_t *v = vectors_at(f->root, "messages", 0);
	uint8_t pkt[256], out[256];
	struct disco_shared wrong;
	size_t len = vectors_hex_var(v, "packet", pkt, sizeof(pkt));
	const char *why = NULL;

	/* The receiver opening it needs exactly the payload's room. */
	assert_int_equal(disco_open(&f->at_receiver, pkt, len, out, len - 78 - 1, &why), -EMSGSIZE);
	assert_int_equal(disco_open(&f->at_receiver, pkt, len, out, len - 78, &why),
			 (int)(len - 78));
	/* Every flipped bit anywhere past the sender key fails the box. */
	for (size_t i = DISCO_MIN_CLAIM_LEN; i < len; i++) {
		pkt[i] ^= 0x01;
		why = NULL;
		assert_int_equal(disco_open(&f->at_receiver, pkt, len, out, sizeof(out), &why),
				 -EBADMSG);
		assert_string_equal(why, "disco box does not open");
		pkt[i] ^= 0x01;
	}
	/* A key between other disco keys (a restarted peer) does not open it. */
	assert_int_equal(disco_shared_init(&wrong, f->receiver_public, f->receiver_private), 0);
	assert_int_equal(disco_open(&wrong, pkt, len, out, sizeof(out), &why), -EBADMSG);
	disco_shared_destroy(&wrong);
	/* Too short for a tag, or for the header at all. */
	for (size_t l = 0; l < DISCO_HEADER_LEN + DISCO_BOX_TAG_LEN; l++) {
		why = NULL;
		assert_int_equal(disco_open(&f->at_receiver, pkt, l, out, sizeof(out), &why),
				 -EBADMSG);
		assert_non_null(why);
	}
	/* Beyond any datagram. */
	assert_int_equal(
		disco_open(&f->at_receiver, pkt, DISCO_MAX_PACKET + 1, out, sizeof(out), &why),
		-EMSGSIZE);
	/* A low-order peer key makes no shared key. */
	uint8_t zero[DISCO_KEY_LEN] = {0};
	assert_int_equal(disco_shared_init(&wrong, zero, f->receiver_private), -EINVAL);
}

static void test_classify(void **state)
{
	uint8_t p[128] = {0x54, 0x53, 0xf0, 0x9f, 0x92, 0xac};
	uint8_t stun[20] = {0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42};
	uint8_t wg[148] = {1};

	(void)state;
	/* Magic and a whole sender key claim disco, box or not. */
	assert_int_equal(disco_classify(p, DISCO_MIN_CLAIM_LEN - 1), DISCO_KIND_WIREGUARD);
	assert_int_equal(disco_classify(p, DISCO_MIN_CLAIM_LEN), DISCO_KIND_DISCO);
	assert_null(disco_sender(p, DISCO_MIN_CLAIM_LEN - 1));
	assert_ptr_equal(disco_sender(p, DISCO_MIN_CLAIM_LEN), p + DISCO_MAGIC_LEN);
	/* LooksLikeDiscoWrapper wants the nonce too. */
	assert_false(disco_looks_like(p, DISCO_HEADER_LEN - 1));
	assert_true(disco_looks_like(p, DISCO_HEADER_LEN));
	p[5] = 0xad;
	assert_int_equal(disco_classify(p, sizeof(p)), DISCO_KIND_WIREGUARD);
	assert_int_equal(disco_classify(stun, sizeof(stun)), DISCO_KIND_STUN);
	assert_int_equal(disco_classify(wg, sizeof(wg)), DISCO_KIND_WIREGUARD);
	assert_int_equal(disco_classify(wg, 0), DISCO_KIND_WIREGUARD);
}

static void test_marshal_bounds(void **state)
{
	struct fixture *f = *state;
	uint8_t out[128], nonce[DISCO_NONCE_LEN] = {0};
	struct disco_msg m = {.type = DISCO_PING};

	/* Exactly the room it needs, and one byte less. */
	assert_int_equal(disco_marshal(&m, out, 2 + DISCO_TXID_LEN), 2 + DISCO_TXID_LEN);
	assert_int_equal(disco_marshal(&m, out, 1 + DISCO_TXID_LEN), -EMSGSIZE);
	memcpy(m.ping.node_key, f->node_public, DISCO_NODE_KEY_LEN);
	assert_int_equal(disco_marshal(&m, out, sizeof(out)), 2 + DISCO_PING_LEN);
	m.ping.padding = SIZE_MAX;
	assert_int_equal(disco_marshal(&m, out, sizeof(out)), -EMSGSIZE);
	m.ping.padding = DISCO_MAX_PAYLOAD;
	assert_int_equal(disco_marshal(&m, out, sizeof(out)), -EMSGSIZE);
	m.type = 0x7f;
	assert_int_equal(disco_marshal(&m, out, sizeof(out)), -EINVAL);
	m = (struct disco_msg){.type = DISCO_CALL_ME_MAYBE, .cmm = {.n = 1}};
	assert_int_equal(disco_marshal(&m, out, sizeof(out)), -EINVAL);
	m.cmm.n = DISCO_MAX_ENDPOINTS + 1;
	m.cmm.raw = out;
	assert_int_equal(disco_marshal(&m, out, sizeof(out)), -EMSGSIZE);
	/* A packet that does not fit, and one too large for a datagram. */
	m = (struct disco_msg){.type = DISCO_PONG};
	assert_int_equal(disco_encode(&f->at_sender, f->sender_public, nonce, &m, out,
				      DISCO_HEADER_LEN + DISCO_BOX_TAG_LEN + 2 + DISCO_PONG_LEN),
			 DISCO_HEADER_LEN + DISCO_BOX_TAG_LEN + 2 + DISCO_PONG_LEN);
	assert_int_equal(disco_encode(&f->at_sender, f->sender_public, nonce, &m, out,
				      DISCO_HEADER_LEN + DISCO_BOX_TAG_LEN + 1 + DISCO_PONG_LEN),
			 -EMSGSIZE);
	assert_int_equal(
		disco_encode(&f->at_sender, f->sender_public, nonce, &m, out, DISCO_HEADER_LEN),
		-EMSGSIZE);
	assert_int_equal(disco_seal(&f->at_sender, f->sender_public, nonce, out,
				    DISCO_MAX_PAYLOAD + 1, out, SIZE_MAX),
			 -EMSGSIZE);
	/* A payload longer than any packet is refused before it is read. */
	struct disco_msg got;
	const char *why = NULL;
	assert_int_equal(disco_parse(out, DISCO_MAX_PAYLOAD + 1, &got, &why), -EMSGSIZE);
	assert_non_null(why);
}

static void test_addresses(void **state)
{
	struct sockaddr_storage ss;
	struct disco_addr a, b;
	char buf[DISCO_ADDR_STRLEN];

	(void)state;
	disco_addr_derp(1, &a);
	assert_true(disco_addr_is_derp(&a));
	assert_string_equal(disco_addr_format(&a, buf, sizeof(buf)), "127.3.3.40:1");
	assert_int_equal(disco_addr_to_sockaddr(&a, (struct sockaddr *)&ss, sizeof(ss)),
			 sizeof(struct sockaddr_in));
	assert_int_equal(disco_addr_from_sockaddr((struct sockaddr *)&ss, &b), 0);
	assert_true(disco_addr_equal(&a, &b));
	test_addr("[2001:db8::7]:41641", &a);
	assert_false(disco_addr_is4(&a));
	assert_false(disco_addr_is_derp(&a));
	assert_int_equal(disco_addr_to_sockaddr(&a, (struct sockaddr *)&ss, sizeof(ss)),
			 sizeof(struct sockaddr_in6));
	assert_int_equal(disco_addr_to_sockaddr(&a, (struct sockaddr *)&ss, 8), 0);
	assert_int_equal(disco_addr_from_sockaddr((struct sockaddr *)&ss, &b), 0);
	assert_true(disco_addr_equal(&a, &b));
	assert_string_equal(disco_addr_format(&b, buf, sizeof(buf)), "[2001:db8::7]:41641");
	/* A v4-mapped IPv6 sockaddr (dual-stack socket) is the IPv4 address. */
	test_addr("[::ffff:198.51.100.7]:41641", &a);
	assert_true(disco_addr_is4(&a));
	assert_string_equal(disco_addr_format(&a, buf, sizeof(buf)), "198.51.100.7:41641");
	memset(&a, 0, sizeof(a));
	assert_false(disco_addr_is_valid(&a));
	struct sockaddr un = {.sa_family = AF_UNIX};
	assert_int_equal(disco_addr_from_sockaddr(&un, &b), -EAFNOSUPPORT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_messages_byte_for_byte),
		cmocka_unit_test(test_parse_cases),
		cmocka_unit_test(test_versions),
		cmocka_unit_test(test_open_refuses),
		cmocka_unit_test(test_classify),
		cmocka_unit_test(test_marshal_bounds),
		cmocka_unit_test(test_addresses),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
