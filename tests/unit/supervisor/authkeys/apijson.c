/* The key sources' answer parsers: the forms the Tailscale API and Headscale
 * send (docs/tailscale-protocol.md §10, tests/testcontrol/README.md), and
 * what is refused. */
#include "supervisor/authkeys/apijson.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#define NK "nodekey:0202020202020202020202020202020202020202020202020202020202020202"

static int len_of(const char *s)
{
	return (int)strlen(s);
}

static void token(void **state)
{
	const char *ok = "{\"access_token\":\"tctoken-ab\",\"token_type\":\"Bearer\","
			 "\"expires_in\":3600}";
	const char *why = NULL;
	unsigned int life;
	char *t;

	(void)state;
	assert_int_equal(sodium_init() < 0, 0);
	assert_int_equal(apijson_token(ok, strlen(ok), &t, &life, &why), 0);
	assert_string_equal(t, "tctoken-ab");
	assert_int_equal(life, 3600);
	sodium_free(t);
	/* Cut in half (testcontrol's malformed switch): not JSON. */
	assert_int_equal(apijson_token(ok, strlen(ok) / 2, &t, &life, &why), -EBADMSG);
	assert_string_equal(why, "not JSON");
	assert_null(t);
	assert_int_equal(
		apijson_token("{\"access_token\":\"a b\",\"expires_in\":1}", 37, &t, &life, &why),
		-EBADMSG);
	assert_string_equal(why, "access_token missing or not a token");
	assert_int_equal(
		apijson_token("{\"access_token\":\"ab\",\"expires_in\":0}", 36, &t, &life, &why),
		-EBADMSG);
	assert_string_equal(why, "expires_in missing or out of range");
	assert_int_equal(apijson_token("[1]", 3, &t, &life, &why), -EBADMSG);
	assert_string_equal(why, "not a JSON object");
}

static void key(void **state)
{
	const char *ts = "{\"id\":\"k1\",\"key\":\"tskey-auth-k1-x\"}";
	const char *hs = "{\"preAuthKey\":{\"id\":\"1\",\"key\":\"hskey-auth-x\"}}";
	const char *why = NULL;
	char *k;

	(void)state;
	assert_int_equal(apijson_key(ts, strlen(ts), false, &k, &why), 0);
	assert_string_equal(k, "tskey-auth-k1-x");
	sodium_free(k);
	assert_int_equal(apijson_key(hs, strlen(hs), true, &k, &why), 0);
	assert_string_equal(k, "hskey-auth-x");
	sodium_free(k);
	assert_int_equal(apijson_key(ts, strlen(ts), true, &k, &why), -EBADMSG);
	assert_string_equal(why, "preAuthKey.key missing or not a key");
	assert_int_equal(apijson_key("{\"key\":\"a\",\"key\":\"b\"}", 21, false, &k, &why),
			 -EBADMSG); /* duplicate keys */
}

static void errors(void **state)
{
	char out[64];
	const char *a = "{\"message\":\"requested tags [tag:x] are invalid\"}";
	const char *b = "{\"error\":\"invalid_client\",\"error_description\":\"wrong\"}";
	const char *c = "{\"title\":\"Unauthorized\",\"status\":401,\"detail\":\"no\\nkey\"}";

	(void)state;
	apijson_error_text(a, strlen(a), out, sizeof(out));
	assert_string_equal(out, "requested tags [tag:x] are invalid");
	apijson_error_text(b, strlen(b), out, sizeof(out));
	assert_string_equal(out, "wrong");
	apijson_error_text(c, strlen(c), out, sizeof(out));
	assert_string_equal(out, "no\\x0akey"); /* escaped for a log line */
	apijson_error_text("oops", 4, out, sizeof(out));
	assert_string_equal(out, "");
}

static void devices(void **state)
{
	const char *ts = "{\"devices\":[{\"nodeId\":\"nA\",\"nodeKey\":\"nodekey:01\"},"
			 "{\"nodeId\":\"nB\",\"nodeKey\":\"" NK "\"}]}";
	const char *hs = "{\"nodes\":[{\"id\":\"7\",\"nodeKey\":\"" NK "\"}]}";
	const char *hsn = "{\"nodes\":[{\"id\":7,\"nodeKey\":\"" NK "\"}]}";
	const char *bad = "{\"devices\":[{\"nodeId\":\"../x\",\"nodeKey\":\"" NK "\"}]}";
	const char *one = "{\"node\":{\"id\":\"7\",\"nodeKey\":\"" NK "\"}}";
	const char *why = NULL;
	char id[32], k[96];

	(void)state;
	assert_int_equal(apijson_find_device(ts, strlen(ts), false, NK, id, sizeof(id), &why), 1);
	assert_string_equal(id, "nB");
	assert_int_equal(
		apijson_find_device(ts, strlen(ts), false, "nodekey:03", id, sizeof(id), &why), 0);
	assert_int_equal(apijson_find_device(hs, strlen(hs), true, NK, id, sizeof(id), &why), 1);
	assert_string_equal(id, "7");
	assert_int_equal(apijson_find_device(hsn, strlen(hsn), true, NK, id, sizeof(id), &why), 1);
	assert_string_equal(id, "7");
	/* An id that is not [A-Za-z0-9_-] never reaches a URL. */
	assert_int_equal(apijson_find_device(bad, strlen(bad), false, NK, id, sizeof(id), &why),
			 -EBADMSG);
	assert_int_equal(apijson_find_device(hs, strlen(hs), false, NK, id, sizeof(id), &why),
			 -EBADMSG);
	assert_string_equal(why, "devices missing or not a list");
	assert_int_equal(apijson_device_nodekey(one, strlen(one), true, k, sizeof(k), &why), 0);
	assert_string_equal(k, NK);
	assert_int_equal(apijson_device_nodekey(one, strlen(one), false, k, sizeof(k), &why),
			 -EBADMSG);
	assert_int_equal(apijson_device_nodekey(one, strlen(one), true, k, 20, &why), -EBADMSG);
	assert_int_equal(len_of(k), 0);
}

/* A device's key expiry: RFC 3339 with or without fractions and offsets;
 * keyExpiryDisabled, null, absent and Go's zero time mean none (0); a time
 * before 1970 is long expired, never none; bad times are refused. */
static void expiry(void **state)
{
	static const struct {
		const char *body;
		bool hs;
		int ret;
		int64_t expiry;
	} v[] = {
		/* 0 */ {"{\"expires\":\"2026-12-07T15:00:00Z\"}", false, 0, 1796655600},
		/* 1 */ {"{\"expires\":\"2026-12-07T15:00:00.123456789Z\"}", false, 0, 1796655600},
		/* 2 */ {"{\"expires\":\"2026-12-07T16:30:00+01:30\"}", false, 0, 1796655600},
		/* 3 */ {"{\"expires\":\"2026-12-07T13:00:00-02:00\"}", false, 0, 1796655600},
		/* 4 */
		{"{\"expires\":\"2026-12-07T15:00:00Z\",\"keyExpiryDisabled\":true}", false, 0, 0},
		/* 5 */ {"{\"expires\":\"0001-01-01T00:00:00Z\"}", false, 0, 0},
		/* 6 */ {"{\"expires\":null}", false, 0, 0},
		/* 7 */ {"{}", false, 0, 0},
		/* 8 */ {"{\"expires\":\"1960-01-01T00:00:00Z\"}", false, 0, 1},
		/* 9 */ {"{\"expires\":\"2026-12-07 15:00:00Z\"}", false, -EBADMSG, 0},
		/* 10 */ {"{\"expires\":\"2026-13-07T15:00:00Z\"}", false, -EBADMSG, 0},
		/* 11 */ {"{\"expires\":\"2026-12-07T15:00:00\"}", false, -EBADMSG, 0},
		/* 12 */ {"{\"expires\":\"2026-12-07T15:00:00Zjunk\"}", false, -EBADMSG, 0},
		/* 13 */ {"{\"expires\":1796655600}", false, -EBADMSG, 0},
		/* 14 */ {"{\"node\":{\"expiry\":\"2026-12-07T15:00:00Z\"}}", true, 0, 1796655600},
		/* 15 */ {"{\"node\":{\"expiry\":null}}", true, 0, 0},
		/* 16 */ {"{\"node\":{\"expiry\":\"0001-01-01T00:00:00Z\"}}", true, 0, 0},
		/* 17 */ {"{\"expiry\":\"2026-12-07T15:00:00Z\"}", true, -EBADMSG, 0},
		/* 18 */ {"[1]", false, -EBADMSG, 0},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		const char *why = NULL;
		int64_t e = -5;
		int ret = apijson_device_expiry(v[i].body, strlen(v[i].body), v[i].hs, &e, &why);

		if (ret != v[i].ret || e != v[i].expiry)
			fail_msg("vector %zu: ret %d expiry %lld, want %d %lld", i, ret,
				 (long long)e, v[i].ret, (long long)v[i].expiry);
		if (ret < 0 && !why)
			fail_msg("vector %zu: no reason", i);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(expiry), cmocka_unit_test(token),   cmocka_unit_test(key),
		cmocka_unit_test(errors), cmocka_unit_test(devices),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
