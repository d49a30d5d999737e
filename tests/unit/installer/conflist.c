/* Unit tests for installer/conflist.c: our entry in a CNI configuration,
 * over the real configurations of tests/vectors/conflists/ (flannel,
 * Calico, Cilium, k3s, a single-plugin .conf) and broken ones. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "installer/conflist.c"
#include "tests/unit/vectors.h"

/* The file tests/vectors/conflists/<rel> (a new buffer; *len its length). */
static char *load_text(const char *rel, size_t *len)
{
	char path[4096], sub[256];
	FILE *f;
	char *buf = malloc(CONFLIST_MAX_LEN + 1);

	assert_non_null(buf);
	snprintf(sub, sizeof(sub), "conflists/%s", rel);
	vectors_path(path, sizeof(path), sub);
	f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open %s", path);
	*len = fread(buf, 1, CONFLIST_MAX_LEN, f);
	fclose(f);
	buf[*len] = '\0';
	return buf;
}

static const char *const good[] = {
	"flannel/10-flannel.conflist", "calico/10-calico.conflist", "cilium/05-cilium.conflist",
	"k3s/10-flannel.conflist",     "bridge/10-mynet.conf",
};

static json_t *ours_from(const char *text)
{
	char why[CONFLIST_WHY_LEN];
	json_t *o;

	assert_int_equal(conflist_ours_new(text, text ? strlen(text) : 0, &o, why), 0);
	return o;
}

/* The keys of an object, in order, joined by ','. */
static void keys_of(const json_t *obj, char *out, size_t n)
{
	const char *key;
	json_t *v;

	out[0] = '\0';
	json_object_foreach((json_t *)obj, key, v)
	{
		strncat(out, key, n - strlen(out) - 1);
		strncat(out, ",", n - strlen(out) - 1);
	}
}

/* Every fixture: ours appended once after everything else, the rest kept
 * (the same plugins in the same order, the same top-level keys in the same
 * order, the values unchanged); a second add changes nothing; removal
 * gives back exactly what was parsed, printed byte for byte the same. */
static void test_fixtures_add_remove(void **state)
{
	json_t *ours = ours_from("{\"socket\": \"/run/tailscale-cni/cni.sock\"}");

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct conflist orig, cl, again;
		char why[CONFLIST_WHY_LEN], k1[512], k2[512];
		size_t len, dlen, dlen2, olen;
		char *text = load_text(good[i], &len), *dumped, *dumped2, *odump;
		bool changed;
		json_t *plugins, *oplugins;

		print_message("# %s\n", good[i]);
		assert_int_equal(conflist_parse(text, len, &orig, why), 0);
		assert_int_equal(conflist_parse(text, len, &cl, why), 0);
		assert_int_equal(conflist_count_ours(&cl), 0);
		assert_false(conflist_is_multus(&cl));
		assert_int_equal(conflist_add(&cl, ours, &changed, why), 0);
		assert_true(changed);
		assert_false(cl.single);
		assert_int_equal(conflist_count_ours(&cl), 1);
		plugins = json_object_get(cl.root, "plugins");
		assert_int_equal(json_array_size(plugins), orig.n_plugins + 1);
		assert_true(json_equal(json_array_get(plugins, orig.n_plugins), ours));
		if (orig.single) {
			/* Wrapped: cniVersion and name moved up, the plugin
			 * otherwise whole. */
			json_t *p = json_deep_copy(orig.root);

			json_object_del(p, "cniVersion");
			assert_true(json_equal(json_array_get(plugins, 0), p));
			json_decref(p);
			assert_string_equal(cl.name, orig.name);
			assert_string_equal(cl.version, orig.version);
			assert_true(conflist_is_wrap_of(&cl, &orig));
		} else {
			oplugins = json_object_get(orig.root, "plugins");
			for (size_t j = 0; j < orig.n_plugins; j++)
				assert_true(json_equal(json_array_get(plugins, j),
						       json_array_get(oplugins, j)));
			keys_of(orig.root, k1, sizeof(k1));
			keys_of(cl.root, k2, sizeof(k2));
			assert_string_equal(k1, k2);
			for (size_t j = 0; j < orig.n_plugins; j++) {
				keys_of(json_array_get(oplugins, j), k1, sizeof(k1));
				keys_of(json_array_get(plugins, j), k2, sizeof(k2));
				assert_string_equal(k1, k2);
			}
			assert_false(conflist_is_wrap_of(&cl, &orig));
		}

		/* Idempotent: what we wrote, read back, needs no write. */
		dumped = conflist_dump(cl.root, &dlen);
		assert_non_null(dumped);
		assert_int_equal(dumped[dlen - 1], '\n');
		assert_int_equal(conflist_parse(dumped, dlen, &again, why), 0);
		assert_int_equal(conflist_add(&again, ours, &changed, why), 0);
		assert_false(changed);
		dumped2 = conflist_dump(again.root, &dlen2);
		assert_int_equal(dlen, dlen2);
		assert_memory_equal(dumped, dumped2, dlen);

		/* Removal: exactly ours goes. */
		assert_int_equal(conflist_remove(&again, &changed, why), 0);
		assert_true(changed);
		assert_int_equal(conflist_count_ours(&again), 0);
		if (!orig.single) {
			odump = conflist_dump(orig.root, &olen);
			free(dumped2);
			dumped2 = conflist_dump(again.root, &dlen2);
			assert_int_equal(olen, dlen2);
			assert_memory_equal(odump, dumped2, olen);
			free(odump);
		}
		assert_int_equal(conflist_remove(&again, &changed, why), 0);
		assert_false(changed);

		free(dumped);
		free(dumped2);
		free(text);
		conflist_destroy(&again);
		conflist_destroy(&cl);
		conflist_destroy(&orig);
	}
	json_decref(ours);
}

/* Broken JSON and a wrong shape: refused, the problem named. */
static void test_fixtures_broken(void **state)
{
	static const struct {
		const char *rel;
		const char *why;
	} cases[] = {
		{"broken/10-calico.conflist", "not valid JSON: line "},
		{"broken-shape/10-flannel.conflist", "\"plugins\" is not a non-empty array"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct conflist cl;
		char why[CONFLIST_WHY_LEN] = "";
		size_t len;
		char *text = load_text(cases[i].rel, &len);

		assert_int_equal(conflist_parse(text, len, &cl, why), -EINVAL);
		assert_null(cl.root);
		if (!strstr(why, cases[i].why))
			fail_msg("%s: '%s' does not say '%s'", cases[i].rel, why, cases[i].why);
		free(text);
	}
}

/* Numbered shapes that are refused, each with the line it gets. */
static void test_shapes_refused(void **state)
{
	static const struct {
		const char *text;
		const char *why;
	} cases[] = {
		/* 0 */ {"[]", "the top level is not a JSON object"},
		/* 1 */ {"{\"plugins\":[{\"type\":\"a\"}]}", "no \"name\" string"},
		/* 2 */ {"{\"name\":\"n\",\"plugins\":[]}", "\"plugins\" is not a non-empty array"},
		/* 3 */ {"{\"name\":\"n\",\"plugins\":[{\"type\":\"a\"},{}]}", "plugins[1] has no"},
		/* 4 */ {"{\"name\":\"n\",\"plugins\":[1]}", "plugins[0] is not an object"},
		/* 5 */ {"{\"name\":\"n\"}", "neither a \"plugins\" list nor a single plugin"},
		/* 6 */ {"{\"name\":\"n\",\"name\":\"m\",\"type\":\"a\"}", "duplicate"},
		/* 7 */
		{"{\"name\":\"n\",\"cniVersion\":1,\"type\":\"a\"}", "\"cniVersion\" is not"},
		/* 8 */ {"", "empty"},
		/* 9 */ {"{\"name\":\"n\",\"type\":\"a\"} x", "not valid JSON"},
		/* 10 */ {"{\"name\":\"a\\u0000b\",\"type\":\"a\"}", "not valid JSON"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct conflist cl;
		char why[CONFLIST_WHY_LEN] = "";

		assert_int_equal(conflist_parse(cases[i].text, strlen(cases[i].text), &cl, why),
				 -EINVAL);
		if (!strstr(why, cases[i].why))
			fail_msg("case %zu: '%s' does not say '%s'", i, why, cases[i].why);
	}
}

static void test_too_large(void **state)
{
	struct conflist cl;
	char why[CONFLIST_WHY_LEN];

	assert_int_equal(conflist_parse("{}", CONFLIST_MAX_LEN + 1, &cl, why), -EFBIG);
	assert_non_null(strstr(why, "larger than"));
}

/* Ours already there with other keys (an upgrade changed --plugin-conf):
 * replaced where it stands, later duplicates dropped, nothing reordered. */
static void test_update_in_place(void **state)
{
	const char *text = "{\"name\":\"n\",\"cniVersion\":\"1.0.0\",\"plugins\":["
			   "{\"type\":\"a\"},{\"type\":\"tailscale-cni\",\"old\":1},"
			   "{\"type\":\"b\"},{\"type\":\"tailscale-cni\"}]}";
	json_t *ours = ours_from("{\"new\": 2}");
	struct conflist cl;
	char why[CONFLIST_WHY_LEN];
	bool changed;
	json_t *p;

	assert_int_equal(conflist_parse(text, strlen(text), &cl, why), 0);
	assert_int_equal(conflist_count_ours(&cl), 2);
	assert_int_equal(conflist_add(&cl, ours, &changed, why), 0);
	assert_true(changed);
	p = json_object_get(cl.root, "plugins");
	assert_int_equal(json_array_size(p), 3);
	assert_string_equal(json_string_value(json_object_get(json_array_get(p, 0), "type")), "a");
	assert_true(json_equal(json_array_get(p, 1), ours));
	assert_string_equal(json_string_value(json_object_get(json_array_get(p, 2), "type")), "b");
	/* Ours not last (an operator put it there): left where it is. */
	assert_int_equal(conflist_add(&cl, ours, &changed, why), 0);
	assert_false(changed);
	conflist_destroy(&cl);
	json_decref(ours);
}

static void test_remove_only_ours_refused(void **state)
{
	const char *text = "{\"name\":\"n\",\"plugins\":[{\"type\":\"tailscale-cni\"}]}";
	struct conflist cl;
	char why[CONFLIST_WHY_LEN];
	bool changed;

	assert_int_equal(conflist_parse(text, strlen(text), &cl, why), 0);
	assert_int_equal(conflist_remove(&cl, &changed, why), -ENOTEMPTY);
	assert_false(changed);
	assert_int_equal(conflist_count_ours(&cl), 1);
	conflist_destroy(&cl);
}

static void test_plugin_conf(void **state)
{
	char why[CONFLIST_WHY_LEN], keys[128];
	json_t *o;

	o = ours_from(NULL);
	assert_int_equal(json_object_size(o), 1);
	json_decref(o);
	o = ours_from("{\"b\": 1, \"a\": {\"x\": true}}");
	keys_of(o, keys, sizeof(keys));
	assert_string_equal(keys, "type,b,a,");
	json_decref(o);
	assert_int_equal(conflist_ours_new("{\"type\":\"x\"}", 12, &o, why), -EINVAL);
	assert_null(o);
	assert_non_null(strstr(why, "sets \"type\""));
	assert_int_equal(conflist_ours_new("[1]", 3, &o, why), -EINVAL);
	assert_non_null(strstr(why, "not a JSON object"));
	assert_int_equal(conflist_ours_new("{", 1, &o, why), -EINVAL);
	assert_non_null(strstr(why, "not valid JSON"));
}

/* Reals come back as written (jansson's default would print 0.1 as
 * 0.10000000000000001); integers stay integers. */
static void test_reals(void **state)
{
	const char *text = "{\"name\":\"n\",\"plugins\":[{\"type\":\"a\",\"r\":0.1,\"i\":1450,"
			   "\"e\":1e-7}]}";
	struct conflist cl;
	char why[CONFLIST_WHY_LEN], *d;
	size_t len;

	assert_int_equal(conflist_parse(text, strlen(text), &cl, why), 0);
	d = conflist_dump(cl.root, &len);
	assert_non_null(strstr(d, "\"r\": 0.1,"));
	assert_non_null(strstr(d, "\"i\": 1450,"));
	assert_non_null(strstr(d, "\"e\": 1e-7"));
	free(d);
	conflist_destroy(&cl);
}

static void test_multus_and_inline(void **state)
{
	const char *m = "{\"name\":\"multus-cni-network\",\"cniVersion\":\"0.3.1\",\"plugins\":"
			"[{\"type\":\"multus-shim\"}]}";
	const char *i = "{\"name\":\"n\",\"loadOnlyInlinedPlugins\":true,\"plugins\":"
			"[{\"type\":\"a\"}]}";
	struct conflist cl;
	char why[CONFLIST_WHY_LEN];

	assert_int_equal(conflist_parse(m, strlen(m), &cl, why), 0);
	assert_true(conflist_is_multus(&cl));
	assert_false(conflist_inline_only(&cl));
	conflist_destroy(&cl);
	assert_int_equal(conflist_parse(i, strlen(i), &cl, why), 0);
	assert_false(conflist_is_multus(&cl));
	assert_true(conflist_inline_only(&cl));
	conflist_destroy(&cl);
}

/* A single plugin that is ours alone: refused (we only chain). */
static void test_single_ours_refused(void **state)
{
	const char *text = "{\"name\":\"n\",\"type\":\"tailscale-cni\"}";
	json_t *ours = ours_from(NULL);
	struct conflist cl;
	char why[CONFLIST_WHY_LEN];
	bool changed;

	assert_int_equal(conflist_parse(text, strlen(text), &cl, why), 0);
	assert_int_equal(conflist_add(&cl, ours, &changed, why), -EINVAL);
	assert_false(changed);
	conflist_destroy(&cl);
	json_decref(ours);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixtures_add_remove),
		cmocka_unit_test(test_fixtures_broken),
		cmocka_unit_test(test_shapes_refused),
		cmocka_unit_test(test_too_large),
		cmocka_unit_test(test_update_in_place),
		cmocka_unit_test(test_remove_only_ours_refused),
		cmocka_unit_test(test_plugin_conf),
		cmocka_unit_test(test_reals),
		cmocka_unit_test(test_multus_and_inline),
		cmocka_unit_test(test_single_ours_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
