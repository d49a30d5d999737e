/* IP prefixes: parsing bounds, containment, the Tailscale ranges. */
#include "common/ip.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static void test_parse_valid(void **state)
{
	static const struct {
		const char *in;
		bool bare;
		const char *out;
	} cases[] = {
		{"100.64.0.1/32", false, "100.64.0.1/32"},
		{"10.244.1.5/24", false, "10.244.1.5/24"},
		{"0.0.0.0/0", false, "0.0.0.0/0"},
		{"fd7a:115c:a1e0::1234/128", false, "fd7a:115c:a1e0::1234/128"},
		{"::/0", false, "::/0"},
		{"100.100.100.100", true, "100.100.100.100/32"},
		{"fd7a:115c:a1e0::53", true, "fd7a:115c:a1e0::53/128"},
	};
	char buf[IP_PREFIX_STRLEN];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ip_prefix p;

		assert_int_equal(ip_prefix_parse(cases[i].in, cases[i].bare, &p), 0);
		assert_string_equal(ip_prefix_format(&p, buf, sizeof(buf)), cases[i].out);
	}
}

static void test_parse_invalid(void **state)
{
	static const char *const bad[] = {
		"",
		"/32",
		"10.0.0.5",
		"10.0.0.5/33",
		"10.0.0.5/-1",
		"10.0.0.5/+8",
		"10.0.0.5/ 8",
		"10.0.0.5/8x",
		"10.0.0.5/",
		"::1/129",
		"::1/0128",
		"10.0.0/8",
		"fd7a::zz/64",
		"1.2.3.4/32/1",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct ip_prefix p;

		assert_int_equal(ip_prefix_parse(bad[i], false, &p), -EINVAL);
	}
}

static void test_contains_and_overlap(void **state)
{
	struct ip_prefix a, b;

	assert_int_equal(ip_prefix_parse("100.64.0.7/32", false, &a), 0);
	assert_true(ip_prefix_contains(&ip_tailscale_v4, &a));
	assert_int_equal(ip_prefix_parse("100.127.255.255/32", false, &a), 0);
	assert_true(ip_prefix_contains(&ip_tailscale_v4, &a));
	assert_int_equal(ip_prefix_parse("100.128.0.0/32", false, &a), 0);
	assert_false(ip_prefix_contains(&ip_tailscale_v4, &a));
	assert_int_equal(ip_prefix_parse("100.63.255.255/32", false, &a), 0);
	assert_false(ip_prefix_contains(&ip_tailscale_v4, &a));
	/* A wider prefix is not inside, but overlaps. */
	assert_int_equal(ip_prefix_parse("100.0.0.0/8", false, &a), 0);
	assert_false(ip_prefix_contains(&ip_tailscale_v4, &a));
	assert_true(ip_prefix_overlaps(&ip_tailscale_v4, &a));
	/* Some clusters use 100.65.0.0/16 for pods. */
	assert_int_equal(ip_prefix_parse("100.65.0.0/16", false, &b), 0);
	assert_true(ip_prefix_overlaps(&b, &ip_tailscale_v4));
	assert_int_equal(ip_prefix_parse("fd7a:115c:a1e1::1/128", false, &a), 0);
	assert_false(ip_prefix_contains(&ip_tailscale_v6, &a));
	assert_true(ip_prefix_contains(&ip_tailscale_v6, &ip_quad100_v6));
	assert_true(ip_prefix_contains(&ip_tailscale_v4, &ip_quad100_v4));
	/* Families never overlap. */
	assert_int_equal(ip_prefix_parse("::/0", false, &a), 0);
	assert_false(ip_prefix_overlaps(&a, &ip_tailscale_v4));
}

static void test_pb_roundtrip_and_bounds(void **state)
{
	Tscni__IpPrefix m = TSCNI__IP_PREFIX__INIT;
	struct ip_prefix p, q;
	uint8_t five[5] = {1, 2, 3, 4, 5};

	assert_int_equal(ip_prefix_parse("fd7a:115c:a1e0::9/128", false, &p), 0);
	ip_prefix_to_pb(&p, &m);
	assert_int_equal(ip_prefix_from_pb(&m, &q), 0);
	assert_true(ip_prefix_equal(&p, &q));
	m.prefix_len = 129;
	assert_int_equal(ip_prefix_from_pb(&m, &q), -EINVAL);
	m.addr.data = five;
	m.addr.len = 5;
	m.prefix_len = 32;
	assert_int_equal(ip_prefix_from_pb(&m, &q), -EINVAL);
	m.addr.len = 4;
	m.prefix_len = 33;
	assert_int_equal(ip_prefix_from_pb(&m, &q), -EINVAL);
	assert_int_equal(ip_prefix_from_pb(NULL, &q), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_valid),
		cmocka_unit_test(test_parse_invalid),
		cmocka_unit_test(test_contains_and_overlap),
		cmocka_unit_test(test_pb_roundtrip_and_bounds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
