/* filter_rules.c: rule lists that Go's decoder would refuse, entries that
 * upstream skips with a warning, and address ranges as prefixes (netipx
 * IPRange.Prefixes). Upstream's MatchesFromFilterRules on single rules is
 * checked against tests/vectors/tailscale/filter.json in filter.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "worker/dataplane/filter_rules.c"

static void test_bad_json(void **state)
{
	static const char *const bad[] = {
		"{}",
		"[1]",
		"[{\"SrcIPs\":\"*\"}]",
		"[{\"SrcIPs\":[1]}]",
		"[{\"SrcIPs\":[\"*\"],\"DstPorts\":[{\"IP\":\"*\",\"Ports\":{\"First\":70000}}]}]",
		"[{\"SrcIPs\":[\"*\"],\"DstPorts\":[{\"IP\":\"*\",\"Ports\":{\"Last\":-1}}]}]",
		"[{\"SrcIPs\":[\"*\"],\"DstPorts\":[{\"IP\":5}]}]",
		"[{\"SrcIPs\":[\"*\"],\"IPProto\":[\"6\"]}]",
		"[{\"SrcIPs\":[\"*\"],\"IPProto\":[6.5]}]",
		"[{\"SrcIPs\":[\"*\"],\"CapGrant\":[1]}]",
	};
	static const struct {
		const char *json;
		size_t n_srcs;
	} warned[] = {
		{"[{\"SrcIPs\":[\"1.2.3.4/33\",\"1.2.3.4\"]}]", 1},
		{"[{\"SrcIPs\":[\"1.2.3.4/08\"]}]", 0},
		{"[{\"SrcIPs\":[\"01.2.3.4\"]}]", 0},
		{"[{\"SrcIPs\":[\"fe80::1%eth0\"]}]", 0},
		{"[{\"SrcIPs\":[\"1.2.3.4-::1\"]}]", 0},
		{"[{\"SrcIPs\":[\"1.2.3.4-1.2.3.5-1.2.3.6\"]}]", 0},
		{"[{\"SrcIPs\":[null, \"::/0\"]}]", 1},
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *j = json_loads(bad[i], 0, NULL);
		struct filter_rules *r = (void *)1;
		const char *warn, *why = NULL;

		assert_non_null(j);
		if (filter_rules_from_json(j, &r, &warn, &why) != -EBADMSG)
			fail_msg("accepted %s", bad[i]);
		assert_null(r);
		assert_non_null(why);
		json_decref(j);
	}
	for (size_t i = 0; i < sizeof(warned) / sizeof(warned[0]); i++) {
		json_t *j = json_loads(warned[i].json, 0, NULL);
		struct filter_rules *r;
		const char *warn, *why;

		assert_int_equal(filter_rules_from_json(j, &r, &warn, &why), 0);
		if (!warn)
			fail_msg("no warning for %s", warned[i].json);
		assert_int_equal(r->n_rules, 1);
		assert_int_equal(r->rules[0].n_srcs, warned[i].n_srcs);
		filter_rules_free(r);
		json_decref(j);
	}
}

static void test_ranges(void **state)
{
	static const struct {
		const char *range;
		const char *want[4];
		size_t n;
	} cases[] = {
		{"0.0.0.0-255.255.255.255", {"0.0.0.0/0"}, 1},
		{"::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", {"::/0"}, 1},
		{"10.0.0.0-10.0.0.0", {"10.0.0.0/32"}, 1},
		{"255.255.255.254-255.255.255.255", {"255.255.255.254/31"}, 1},
		{"10.0.0.255-10.0.1.0", {"10.0.0.255/32", "10.0.1.0/32"}, 2},
		{"::1-::3", {"::1/128", "::2/127"}, 2},
	};
	struct ip_prefix out[RANGE_MAX_PREFIXES];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *cap, *why;
		size_t n;

		assert_int_equal(parse_ip_set(cases[i].range, out, &n, &cap, &why), 0);
		assert_int_equal(n, cases[i].n);
		for (size_t k = 0; k < n; k++) {
			char buf[IP_PREFIX_STRLEN];

			assert_string_equal(ip_prefix_format(&out[k], buf, sizeof(buf)),
					    cases[i].want[k]);
		}
	}
	/* The worst case stays inside the bound. */
	{
		const char *cap, *why;
		size_t n;

		assert_int_equal(parse_ip_set("::1-ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", out,
					      &n, &cap, &why),
				 0);
		assert_int_equal(n, 254);
	}
}

static void test_rejected_list_is_marked(void **state)
{
	json_t *j =
		json_loads("[{\"SrcIPs\":[\"*\"]},{\"SrcIPs\":[\"*\"],\"SrcBits\":[8]}]", 0, NULL);
	struct filter_rules *r;
	const char *warn, *why;

	(void)state;
	assert_int_equal(filter_rules_from_json(j, &r, &warn, &why), 0);
	assert_non_null(warn);
	assert_true(r->rejected);
	assert_int_equal(r->n_rules, 0);
	filter_rules_free(r);
	json_decref(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_json),
		cmocka_unit_test(test_ranges),
		cmocka_unit_test(test_rejected_list_is_marked),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
