/* The WireGuard datagram classifier: every captured wireguard-go message is
 * classified with its fields decoded, and every wrong size, type or
 * reserved byte is refused with a reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "worker/wg/wg_messages.c"
#include "tests/unit/vectors.h"

static void test_vectors(void **state)
{
	json_t *root = vectors_load("tailscale/wireguard.json");
	json_t *msgs = vectors_get(root, "messages");
	json_t *m, *cc = vectors_get(root, "cookie_case");
	struct wg_message msg;
	uint8_t buf[2048];
	const char *why = NULL;
	size_t i, len, counted = 0;

	json_array_foreach(msgs, i, m)
	{
		json_t *fields = vectors_get(m, "fields");
		uint64_t type = vectors_int(m, "type");

		len = vectors_hex_var(m, "bytes", buf, sizeof(buf));
		assert_int_equal(len, vectors_int(m, "len"));
		assert_int_equal(wg_messages_parse(&msg, buf, len, &why), (int)type);
		assert_int_equal(msg.type, type);
		switch (type) {
		case WG_MESSAGE_INITIATION:
			assert_int_equal(le32toh(msg.initiation.sender_index),
					 vectors_int(fields, "sender_index"));
			assert_memory_equal(&msg.initiation, buf, len);
			break;
		case WG_MESSAGE_RESPONSE:
			assert_int_equal(le32toh(msg.response.sender_index),
					 vectors_int(fields, "sender_index"));
			assert_int_equal(le32toh(msg.response.receiver_index),
					 vectors_int(fields, "receiver_index"));
			break;
		case WG_MESSAGE_DATA:
			assert_int_equal(msg.receiver_index, vectors_int(fields, "receiver_index"));
			assert_int_equal(msg.counter, vectors_int(fields, "counter"));
			assert_ptr_equal(msg.data, buf);
			assert_int_equal(msg.data_len, len);
			break;
		default:
			fail_msg("unexpected type %llu in wireguard.json",
				 (unsigned long long)type);
		}
		counted++;
	}
	assert_int_equal(counted, 5);

	len = vectors_hex_var(cc, "cookie_reply", buf, sizeof(buf));
	assert_int_equal(wg_messages_parse(&msg, buf, len, &why), WG_MESSAGE_COOKIE_REPLY);
	assert_int_equal(le32toh(msg.cookie_reply.receiver_index),
			 vectors_int(vectors_get(cc, "cookie_reply_fields"), "receiver_index"));
	len = vectors_hex_var(cc, "initiation2_with_mac2", buf, sizeof(buf));
	assert_int_equal(wg_messages_parse(&msg, buf, len, &why), WG_MESSAGE_INITIATION);
	json_decref(root);
}

static void expect_bad(const uint8_t *buf, size_t len, const char *why_part)
{
	struct wg_message msg;
	const char *why = NULL;

	assert_int_equal(wg_messages_parse(&msg, buf, len, &why), -EBADMSG);
	assert_non_null(why);
	if (!strstr(why, why_part))
		fail_msg("len %zu: reason \"%s\" does not mention \"%s\"", len, why, why_part);
}

static void test_bounds(void **state)
{
	static uint8_t buf[WG_MESSAGE_MAX_LEN + 2];
	struct wg_message msg;
	const char *why = NULL;
	static const struct {
		uint8_t type;
		size_t exact;
		const char *why;
	} fixed[] = {
		{WG_MESSAGE_INITIATION, WG_MESSAGE_INITIATION_LEN, "148"},
		{WG_MESSAGE_RESPONSE, WG_MESSAGE_RESPONSE_LEN, "92"},
		{WG_MESSAGE_COOKIE_REPLY, WG_MESSAGE_COOKIE_REPLY_LEN, "64"},
	};

	/* 1: empty and shorter than the type field. */
	expect_bad(buf, 0, "type field");
	buf[0] = WG_MESSAGE_DATA;
	expect_bad(buf, 3, "type field");
	/* 2: types 1-3 are exactly their size; one byte more or less is refused. */
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		memset(buf, 0, 256);
		buf[0] = fixed[i].type;
		assert_int_equal(wg_messages_parse(&msg, buf, fixed[i].exact, &why), fixed[i].type);
		expect_bad(buf, fixed[i].exact - 1, fixed[i].why);
		expect_bad(buf, fixed[i].exact + 1, fixed[i].why);
		expect_bad(buf, 4, fixed[i].why);
	}
	/* 3: type 4 from 32 bytes (a keepalive) up to 65535. */
	memset(buf, 0, 64);
	buf[0] = WG_MESSAGE_DATA;
	expect_bad(buf, WG_DATA_MIN_LEN - 1, "32");
	expect_bad(buf, WG_DATA_HEADER_LEN, "32");
	assert_int_equal(wg_messages_parse(&msg, buf, WG_DATA_MIN_LEN, &why), WG_MESSAGE_DATA);
	assert_int_equal(wg_messages_parse(&msg, buf, WG_MESSAGE_MAX_LEN, &why), WG_MESSAGE_DATA);
	expect_bad(buf, WG_MESSAGE_MAX_LEN + 1, "65535");
	/* 4: the three upper bytes of the type field are part of the type. */
	for (int b = 1; b < 4; b++) {
		buf[b] = 1;
		expect_bad(buf, WG_DATA_MIN_LEN, "unknown");
		buf[b] = 0;
	}
	/* 5: unknown types, the ML-KEM handshake's 5 and 6 among them. */
	for (unsigned int t = 0; t < 256; t++) {
		if (t >= WG_MESSAGE_INITIATION && t <= WG_MESSAGE_DATA)
			continue;
		buf[0] = (uint8_t)t;
		expect_bad(buf, t == 5 ? 1332 : t == 6 ? 1180 : 148, "unknown");
	}
	/* 6: the header of a data message decodes little-endian. */
	memset(buf, 0, 64);
	buf[0] = WG_MESSAGE_DATA;
	buf[4] = 0x78, buf[5] = 0x56, buf[6] = 0x34, buf[7] = 0x12;
	buf[8] = 0x01, buf[15] = 0x80;
	assert_int_equal(wg_messages_parse(&msg, buf, 40, &why), WG_MESSAGE_DATA);
	assert_int_equal(msg.receiver_index, 0x12345678);
	assert_int_equal(msg.counter, 0x8000000000000001ULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors),
		cmocka_unit_test(test_bounds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
