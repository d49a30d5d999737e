/* STUN against upstream (stun.json): requests byte for byte and read back,
 * server responses byte for byte and parsed, the real servers' answers
 * (legacy MAPPED-ADDRESS, both forms, 0x8020, padding, trailing junk,
 * IPv4-mapped IPv6), every error case with upstream's error text, every
 * classification case; then an answer for another transaction and the
 * bounds of every length field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/stun.c"
#include "tests/unit/addr_text.h"
#include "tests/unit/vectors.h"

static void test_ip(const char *s, struct stun_addr *out)
{
	memset(out, 0, sizeof(*out));
	text_ip(s, out->ip);
}

static void test_addr(const char *s, struct stun_addr *out)
{
	text_ip_port(s, out->ip, &out->port);
}

static bool addr_equal(const struct stun_addr *a, const struct stun_addr *b)
{
	return a->port == b->port && memcmp(a->ip, b->ip, sizeof(a->ip)) == 0;
}

static int setup(void **state)
{
	*state = vectors_load("tailscale/stun.json");
	return 0;
}

static int teardown(void **state)
{
	json_decref(*state);
	return 0;
}

/* Parses response hex and checks txid, address and port against v's
 * parsed_* fields. */
static void check_response(const json_t *v)
{
	uint8_t b[256], txid[STUN_TXID_LEN], want_txid[STUN_TXID_LEN];
	struct stun_addr addr, want;
	const char *why = NULL;
	size_t len = vectors_hex_var(v, "response", b, sizeof(b));

	assert_int_equal(stun_is(b, len), json_is_true(vectors_get(v, "is_stun")));
	assert_int_equal(stun_parse_response(b, len, txid, &addr, &why), 0);
	vectors_hex(v, "parsed_txid", want_txid, STUN_TXID_LEN);
	assert_memory_equal(txid, want_txid, STUN_TXID_LEN);
	test_ip(vectors_str(v, "parsed_addr"), &want);
	want.port = (uint16_t)vectors_int(v, "parsed_port");
	assert_true(addr_equal(&addr, &want));
	/* For its own transaction it is taken, for another one refused. */
	assert_int_equal(stun_check_response(b, len, want_txid, &addr, &why), 0);
	assert_true(addr_equal(&addr, &want));
	want_txid[STUN_TXID_LEN - 1] ^= 1;
	why = NULL;
	assert_int_equal(stun_check_response(b, len, want_txid, &addr, &why), -ESRCH);
	assert_string_equal(why, "STUN response for another transaction");
	static const struct stun_addr zero;
	assert_true(addr_equal(&addr, &zero));
}

static void test_requests(void **state)
{
	json_t *reqs = vectors_get(*state, "requests");
	uint8_t txid[STUN_TXID_LEN], got_txid[STUN_TXID_LEN], want[STUN_REQUEST_LEN];
	uint8_t req[STUN_REQUEST_LEN];
	const char *why = NULL;

	assert_true(json_array_size(reqs) >= 2);
	for (size_t i = 0; i < json_array_size(reqs); i++) {
		json_t *v = json_array_get(reqs, i);

		vectors_hex(v, "txid", txid, sizeof(txid));
		vectors_hex(v, "request", want, sizeof(want));
		assert_int_equal(vectors_int(v, "len"), STUN_REQUEST_LEN);
		stun_request(txid, req);
		assert_memory_equal(req, want, STUN_REQUEST_LEN);
		assert_true(stun_is(req, sizeof(req)));
		assert_int_equal(stun_parse_binding_request(req, sizeof(req), got_txid, &why), 0);
		vectors_hex(v, "parse_binding_request_txid", txid, sizeof(txid));
		assert_memory_equal(got_txid, txid, STUN_TXID_LEN);
	}
}

static void test_built_responses(void **state)
{
	json_t *rs = vectors_get(*state, "built_responses");
	uint8_t txid[STUN_TXID_LEN], want[STUN_RESPONSE_MAX], out[STUN_RESPONSE_MAX];
	struct stun_addr mapped;
	size_t len;

	assert_true(json_array_size(rs) >= 4);
	for (size_t i = 0; i < json_array_size(rs); i++) {
		json_t *v = json_array_get(rs, i);

		vectors_hex(v, "txid", txid, sizeof(txid));
		test_addr(vectors_str(v, "mapped"), &mapped);
		len = vectors_hex_var(v, "response", want, sizeof(want));
		assert_int_equal(stun_response(txid, &mapped, out), len);
		assert_memory_equal(out, want, len);
		check_response(v);
	}
}

static void test_real_server_responses(void **state)
{
	json_t *rs = vectors_get(*state, "real_server_responses");

	assert_true(json_array_size(rs) >= 9);
	for (size_t i = 0; i < json_array_size(rs); i++)
		check_response(json_array_get(rs, i));
}

static void test_error_cases(void **state)
{
	json_t *cs = vectors_get(*state, "error_cases");
	uint8_t b[256], txid[STUN_TXID_LEN];
	struct stun_addr addr;
	size_t len;
	int ret;

	assert_true(json_array_size(cs) >= 8);
	for (size_t i = 0; i < json_array_size(cs); i++) {
		json_t *c = json_array_get(cs, i);
		const char *fn = vectors_str(c, "function"), *why = NULL;

		len = vectors_hex_var(c, "input", b, sizeof(b));
		assert_int_equal(stun_is(b, len), json_is_true(vectors_get(c, "is_stun")));
		assert_false(json_is_true(vectors_get(c, "ok")));
		if (strcmp(fn, "stun.ParseBindingRequest") == 0)
			ret = stun_parse_binding_request(b, len, txid, &why);
		else if (strcmp(fn, "stun.ParseResponse") == 0)
			ret = stun_parse_response(b, len, txid, &addr, &why);
		else
			fail_msg("unknown function %s", fn);
		assert_int_equal(ret, -EBADMSG);
		assert_non_null(why);
		assert_string_equal(why, vectors_str(c, "error"));
	}
}

static void test_is_cases(void **state)
{
	json_t *cs = vectors_get(*state, "is_cases");
	uint8_t b[256];
	size_t len;

	assert_true(json_array_size(cs) >= 8);
	for (size_t i = 0; i < json_array_size(cs); i++) {
		json_t *c = json_array_get(cs, i);

		len = vectors_hex_var(c, "input", b, sizeof(b));
		assert_int_equal(stun_is(b, len), json_is_true(vectors_get(c, "is_stun")));
	}
}

/* A response built around one attribute value (type, declared length,
 * then val padded), its header length covering it. */
static size_t one_attr(uint8_t *b, uint16_t type, const uint8_t *val, size_t val_len,
		       size_t declared)
{
	static const uint8_t hdr[STUN_HEADER_LEN] = {
		0x01, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
	size_t padded = (val_len + 3) & ~(size_t)3, len = STUN_HEADER_LEN + 4 + padded;

	memcpy(b, hdr, sizeof(hdr));
	store_be16(b + 2, (uint16_t)(4 + padded));
	store_be16(b + STUN_HEADER_LEN, type);
	store_be16(b + STUN_HEADER_LEN + 2, (uint16_t)declared);
	memset(b + STUN_HEADER_LEN + 4, 0, padded);
	memcpy(b + STUN_HEADER_LEN + 4, val, val_len);
	return len;
}

static void test_bounds(void **state)
{
	/* family, port, address as MAPPED-ADDRESS writes them. */
	static const uint8_t v4[] = {0, 1, 0x12, 0x34, 192, 0, 2, 1};
	static const uint8_t fam3[] = {0, 3, 0x12, 0x34, 192, 0, 2, 1};
	uint8_t b[128], txid[STUN_TXID_LEN];
	struct stun_addr addr;
	const char *why;
	struct stun_addr want;
	size_t len;

	(void)state;
	/* The plain form alone. */
	len = one_attr(b, ATTR_MAPPED_ADDRESS, v4, sizeof(v4), sizeof(v4));
	assert_int_equal(stun_parse_response(b, len, txid, &addr, &why), 0);
	test_addr("192.0.2.1:4660", &want);
	assert_true(addr_equal(&addr, &want));
	/* An address shorter than its family, an unknown family, a value
	 * shorter than the family/port part. */
	for (size_t n = 0; n < sizeof(v4); n++) {
		len = one_attr(b, ATTR_XOR_MAPPED_ADDRESS, v4, n, n);
		why = NULL;
		assert_int_equal(stun_parse_response(b, len, txid, &addr, &why), -EBADMSG);
		assert_string_equal(why, "STUN response has malformed attributes");
		len = one_attr(b, ATTR_MAPPED_ADDRESS, v4, n, n);
		assert_int_equal(stun_parse_response(b, len, txid, &addr, &why), -EBADMSG);
	}
	len = one_attr(b, ATTR_MAPPED_ADDRESS, fam3, sizeof(fam3), sizeof(fam3));
	assert_int_equal(stun_parse_response(b, len, txid, &addr, &why), -EBADMSG);
	/* A declared value length past the end of the packet. */
	len = one_attr(b, ATTR_MAPPED_ADDRESS, v4, sizeof(v4), 0xffff);
	assert_int_equal(stun_parse_response(b, len, txid, &addr, &why), -EBADMSG);
	/* No address at all. */
	len = one_attr(b, ATTR_SOFTWARE, v4, sizeof(v4), sizeof(v4));
	assert_int_equal(stun_parse_response(b, len, txid, &addr, &why), -EBADMSG);
	/* A header length beyond the bytes, and 1..3 stray bytes after the
	 * last attribute inside it. */
	len = one_attr(b, ATTR_MAPPED_ADDRESS, v4, sizeof(v4), sizeof(v4));
	store_be16(b + 2, (uint16_t)(len - STUN_HEADER_LEN + 1));
	assert_int_equal(stun_parse_response(b, len, txid, &addr, &why), -EBADMSG);
	for (size_t extra = 1; extra < 4; extra++) {
		store_be16(b + 2, (uint16_t)(len - STUN_HEADER_LEN + extra));
		assert_int_equal(stun_parse_response(b, len + extra, txid, &addr, &why), -EBADMSG);
	}
	/* Every truncation of a request or a response fails cleanly. */
	uint8_t req[STUN_REQUEST_LEN];
	stun_request(txid, req);
	for (size_t n = 0; n < sizeof(req); n++)
		assert_true(stun_parse_binding_request(req, n, txid, &why) < 0);
	/* Another program's SOFTWARE. */
	req[STUN_HEADER_LEN + 4] = 'T';
	assert_int_equal(stun_parse_binding_request(req, sizeof(req), txid, &why), -EBADMSG);
	assert_string_equal(why, "STUN request came from non-Tailscale software");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_requests),
		cmocka_unit_test(test_built_responses),
		cmocka_unit_test(test_real_server_responses),
		cmocka_unit_test(test_error_cases),
		cmocka_unit_test(test_is_cases),
		cmocka_unit_test(test_bounds),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
