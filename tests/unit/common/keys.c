/* keys.c against tests/vectors/tailscale/keys.json, produced by
 * upstream types/key: clamping, X25519 public keys, text forms, parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/keys.c"
#include "tests/unit/vectors.h"

static const char *public_prefix(const char *kind)
{
	static const struct {
		const char *kind, *prefix;
	} map[] = {
		{"node", "nodekey"},
		{"machine", "mkey"},
		{"disco", "discokey"},
		{"challenge", "chalpub"},
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(map[i].kind, kind) == 0)
			return map[i].prefix;
	fail_msg("unknown key kind %s", kind);
	return NULL;
}

static void test_keys(void **state)
{
	json_t *root = vectors_load("tailscale/keys.json");
	json_t *keys = json_object_get(root, "keys"), *k;
	size_t i;
	int checked = 0;

	(void)state;
	assert_true(json_array_size(keys) >= 5);
	json_array_foreach(keys, i, k)
	{
		uint8_t raw[KEY_LEN], priv[KEY_LEN], pub[KEY_LEN], want[KEY_LEN], back[KEY_LEN];
		char text[128], want_json[160];
		const char *prefix = public_prefix(vectors_str(k, "kind"));
		const char *priv_text = json_string_value(json_object_get(k, "private_text"));

		/* Clamping what the generator read gives the stored private key. */
		vectors_hex(k, "raw_random", raw, KEY_LEN);
		keys_clamp(raw);
		vectors_hex(k, "private_raw", priv, KEY_LEN);
		assert_memory_equal(raw, priv, KEY_LEN);

		assert_int_equal(keys_public(pub, priv), 0);
		/* The challenge key has no raw public form in the file; its
		 * text form below still checks it. */
		if (json_object_get(k, "public_raw")) {
			vectors_hex(k, "public_raw", want, KEY_LEN);
			assert_memory_equal(pub, want, KEY_LEN);
		}

		assert_string_equal(keys_to_text(prefix, pub, text, sizeof(text)),
				    vectors_str(k, "public_text"));
		assert_string_equal(text, vectors_str(k, "public_string"));
		assert_int_equal(keys_from_text(prefix, text, back), 0);
		assert_memory_equal(back, pub, KEY_LEN);

		/* The Go JSON form holds the same text. */
		if (json_object_get(k, "json_struct")) {
			const char *js = vectors_str(k, "json_struct");

			snprintf(want_json, sizeof(want_json), "\"%s\"", text);
			if (!strstr(js, want_json))
				fail_msg("%s not in %s", want_json, js);
		}

		if (priv_text) {
			assert_string_equal(keys_to_text("privkey", priv, text, sizeof(text)),
					    priv_text);
			assert_int_equal(keys_from_text("privkey", priv_text, back), 0);
			assert_memory_equal(back, priv, KEY_LEN);
		}
		checked++;
	}
	assert_int_equal(checked, (int)json_array_size(keys));
	json_decref(root);
}

static void test_zero_keys(void **state)
{
	json_t *root = vectors_load("tailscale/keys.json");
	json_t *cases = json_object_get(root, "zero_key_json"), *c;
	static const uint8_t zero[KEY_LEN];
	size_t i;

	(void)state;
	assert_int_equal(json_array_size(cases), 3);
	json_array_foreach(cases, i, c)
	{
		json_error_t err;
		json_t *doc = json_loads(json_string_value(c), 0, &err);
		const char *field;
		json_t *val;
		int n = 0;

		assert_non_null(doc);
		json_object_foreach(doc, field, val)
		{
			const char *s = json_string_value(val);
			char prefix[32], text[128];
			const char *colon = strchr(s, ':');

			assert_non_null(colon);
			assert_true((size_t)(colon - s) < sizeof(prefix));
			memcpy(prefix, s, (size_t)(colon - s));
			prefix[colon - s] = '\0';
			assert_string_equal(keys_to_text(prefix, zero, text, sizeof(text)), s);
			n++;
		}
		assert_int_equal(n, 1);
		json_decref(doc);
	}
	json_decref(root);
}

static const char *type_prefix(const char *go_type)
{
	static const struct {
		const char *type, *prefix;
	} map[] = {
		{"key.NodePublic", "nodekey"},	   {"key.MachinePublic", "mkey"},
		{"key.DiscoPublic", "discokey"},   {"key.NodePrivate", "privkey"},
		{"key.MachinePrivate", "privkey"},
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(map[i].type, go_type) == 0)
			return map[i].prefix;
	fail_msg("unknown go_type %s", go_type);
	return NULL;
}

static void test_parse_cases(void **state)
{
	json_t *root = vectors_load("tailscale/keys.json");
	json_t *cases = json_object_get(root, "parse_cases"), *c;
	size_t i;
	int oks = 0, errs = 0;

	(void)state;
	json_array_foreach(cases, i, c)
	{
		uint8_t got[KEY_LEN], want[KEY_LEN];
		const char *input = vectors_str(c, "input");
		int ret = keys_from_text(type_prefix(vectors_str(c, "go_type")), input, got);

		if (json_is_true(json_object_get(c, "ok"))) {
			if (ret != 0)
				fail_msg("case %zu (%s) rejected", i, input);
			vectors_hex(c, "raw", want, KEY_LEN);
			assert_memory_equal(got, want, KEY_LEN);
			oks++;
		} else {
			if (ret != -EINVAL)
				fail_msg("case %zu (%s) accepted, upstream says %s", i, input,
					 vectors_str(c, "error"));
			errs++;
		}
	}
	assert_true(oks > 0 && errs > 0);
	json_decref(root);
}

static void test_edges(void **state)
{
	uint8_t a[KEY_LEN], b[KEY_LEN], k[KEY_LEN] = {0};
	char small[40], text[128];

	(void)state;
	keys_generate(a);
	keys_generate(b);
	assert_memory_not_equal(a, b, KEY_LEN);
	assert_int_equal(a[0] & 7, 0);
	assert_int_equal(a[31] & 0xc0, 0x40);

	/* Too small a buffer gives "", never a truncated key. */
	assert_string_equal(keys_to_text("nodekey", a, small, sizeof(small)), "");
	/* Exactly strlen(prefix) + 66 fits. */
	assert_int_equal(strlen(keys_to_text("mkey", a, text, 4 + 66)), 4 + 65);

	/* Embedded junk after 64 digits, a bare prefix, an empty string. */
	keys_to_text("nodekey", a, text, sizeof(text));
	strcat(text, " ");
	assert_int_equal(keys_from_text("nodekey", text, k), -EINVAL);
	assert_int_equal(keys_from_text("nodekey", "nodekey:", k), -EINVAL);
	assert_int_equal(keys_from_text("nodekey", "nodekey", k), -EINVAL);
	assert_int_equal(keys_from_text("nodekey", "", k), -EINVAL);
	/* A failed parse leaves the output alone. */
	for (size_t i = 0; i < KEY_LEN; i++)
		assert_int_equal(k[i], 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_zero_keys),
		cmocka_unit_test(test_parse_cases),
		cmocka_unit_test(test_edges),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
