/* netops without root: the validation rules for workers' requests
 * (docs/design.md §1), interface-name checks, route prefix masking, and the
 * argument checks netops_tun_create makes before touching the kernel. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "supervisor/netops.c"

static struct ip_prefix pfx(const char *s)
{
	struct ip_prefix p;

	if (ip_prefix_parse(s, false, &p) != 0)
		fail_msg("bad test vector %s", s);
	return p;
}

struct vec {
	const char *prefix;
	int want;
};

/* 1..n: what a worker may put on ts0. */
static const struct vec addr_vecs[] = {
	{"100.64.0.0/32", 0},
	{"100.64.0.1/32", 0},
	{"100.101.102.103/32", 0},
	{"100.127.255.255/32", 0},
	{"100.63.255.255/32", -EPERM}, /* one below the range */
	{"100.128.0.0/32", -EPERM},    /* one above */
	{"100.64.0.1/31", -EPERM},     /* not a single address */
	{"100.64.0.0/10", -EPERM},
	{"100.64.0.1/0", -EPERM},
	{"100.100.100.100/32", -EPERM}, /* quad-100 is not a node address */
	{"10.0.0.1/32", -EPERM},
	{"0.0.0.0/32", -EPERM},
	{"255.255.255.255/32", -EPERM},
	{"fd7a:115c:a1e0::1/128", 0},
	{"fd7a:115c:a1e0::/128", 0},
	{"fd7a:115c:a1e0:ffff:ffff:ffff:ffff:ffff/128", 0},
	{"fd7a:115c:a1e0:ab12:4843:cd96:6258:b240/128", 0},
	{"fd7a:115c:a1df:ffff:ffff:ffff:ffff:ffff/128", -EPERM}, /* below */
	{"fd7a:115c:a1e1::/128", -EPERM},			 /* above */
	{"fd7a:115c:a1e0::1/127", -EPERM},
	{"fd7a:115c:a1e0::/48", -EPERM},
	{"fd7a:115c:a1e0::53/128", -EPERM}, /* quad-100's IPv6 */
	{"::1/128", -EPERM},
	{"::ffff:100.64.0.1/128", -EPERM}, /* v4-mapped is not the v4 range */
	{"fe80::1/128", -EPERM},
};

static void test_validate_addr(void **state)
{
	for (size_t i = 0; i < sizeof(addr_vecs) / sizeof(addr_vecs[0]); i++) {
		struct ip_prefix p = pfx(addr_vecs[i].prefix);
		const char *why = NULL;
		int ret = netops_validate_addr(&p, &why);

		if (ret != addr_vecs[i].want)
			fail_msg("addr vector %zu (%s): got %d, want %d", i + 1,
				 addr_vecs[i].prefix, ret, addr_vecs[i].want);
		if (ret < 0 && (!why || !*why))
			fail_msg("addr vector %zu (%s): refused without a reason", i + 1,
				 addr_vecs[i].prefix);
	}
}

/* Routes with and without the operator's extra prefixes. */
struct route_vec {
	const char *prefix;
	int want_plain;
	int want_policy;
};

static const struct route_vec route_vecs[] = {
	{"100.64.0.0/10", 0, 0},
	{"100.64.0.0/9", -EPERM, -EPERM}, /* wider than the range */
	{"100.0.0.0/8", -EPERM, -EPERM},
	{"100.64.0.1/31", 0, 0},
	{"100.64.0.5/32", 0, 0},
	{"100.127.255.255/32", 0, 0},
	{"100.63.255.255/32", -EPERM, -EPERM},
	{"100.128.0.0/32", -EPERM, -EPERM},
	{"100.100.100.100/32", 0, 0},
	{"fd7a:115c:a1e0::/48", 0, 0},
	{"fd7a:115c:a1e0::/47", -EPERM, -EPERM},
	{"fd7a:115c:a1e0::/127", 0, 0},
	{"fd7a:115c:a1e0::53/128", 0, 0},
	{"fd7a:115c:a1e1::/64", -EPERM, -EPERM},
	{"0.0.0.0/0", -EPERM, -EPERM}, /* an exit node needs the operator's word */
	{"::/0", -EPERM, -EPERM},
	{"10.0.0.0/8", -EPERM, 0},	/* exactly an extra prefix */
	{"10.1.2.0/24", -EPERM, 0},	/* inside one */
	{"10.0.0.0/7", -EPERM, -EPERM}, /* wider than one */
	{"11.0.0.0/8", -EPERM, -EPERM},
	{"192.168.7.1/32", -EPERM, 0},
	{"192.168.6.0/24", -EPERM, -EPERM},
	{"2001:db8:1::/48", -EPERM, 0},
	{"2001:db8::/31", -EPERM, -EPERM},
};

static void test_validate_route(void **state)
{
	const struct ip_prefix extras[] = {pfx("10.0.0.0/8"), pfx("192.168.7.0/24"),
					   pfx("2001:db8::/32")};
	const struct netops_policy empty = {0};
	const struct netops_policy policy = {.extra_routes = extras, .n_extra_routes = 3};

	for (size_t i = 0; i < sizeof(route_vecs) / sizeof(route_vecs[0]); i++) {
		struct ip_prefix p = pfx(route_vecs[i].prefix);
		const char *why = NULL;
		int ret;

		ret = netops_validate_route(&p, &empty, &why);
		if (ret != route_vecs[i].want_plain)
			fail_msg("route vector %zu (%s) without policy: got %d, want %d", i + 1,
				 route_vecs[i].prefix, ret, route_vecs[i].want_plain);
		if (ret < 0 && (!why || !*why))
			fail_msg("route vector %zu: refused without a reason", i + 1);
		/* A NULL policy means the same as an empty one. */
		assert_int_equal(netops_validate_route(&p, NULL, &why), ret);
		ret = netops_validate_route(&p, &policy, &why);
		if (ret != route_vecs[i].want_policy)
			fail_msg("route vector %zu (%s) with policy: got %d, want %d", i + 1,
				 route_vecs[i].prefix, ret, route_vecs[i].want_policy);
	}
}

static void test_validate_malformed(void **state)
{
	struct ip_prefix p = {.family = AF_INET, .len = 33, .addr = {100, 64, 0, 1}};
	struct ip_prefix q = {.family = AF_INET6, .len = 129, .addr = {0xfd, 0x7a}};
	struct ip_prefix r = {.family = AF_UNIX, .len = 32, .addr = {100, 64, 0, 1}};
	const char *why = NULL;

	assert_int_equal(netops_validate_addr(&p, &why), -EPERM);
	assert_int_equal(netops_validate_route(&p, NULL, &why), -EPERM);
	assert_string_equal(why, "route prefix length out of range");
	assert_int_equal(netops_validate_addr(&q, &why), -EPERM);
	assert_int_equal(netops_validate_route(&q, NULL, &why), -EPERM);
	assert_int_equal(netops_validate_addr(&r, &why), -EPERM);
	assert_string_equal(why, "address family is neither IPv4 nor IPv6");
	assert_int_equal(netops_validate_route(&r, NULL, &why), -EPERM);
	assert_string_equal(why, "route family is neither IPv4 nor IPv6");
}

static const struct vec ifname_vecs[] = {
	{"ts0", 0},
	{"eth0", 0},
	{"a", 0},
	{"abcdefghijklmno", 0}, /* 15 bytes, the longest */
	{"abcdefghijklmnop", -EINVAL},
	{"", -EINVAL},
	{".", -EINVAL},
	{"..", -EINVAL},
	{"...", 0},
	{"a/b", -EINVAL},
	{"a:b", -EINVAL},
	{"eth%d", -EINVAL},
	{"a b", -EINVAL},
	{"a\tb", -EINVAL},
	{"a\nb", -EINVAL},
	{"a\x7f", -EINVAL},
	{"ts-0_x.y", 0},
};

static void test_check_ifname(void **state)
{
	for (size_t i = 0; i < sizeof(ifname_vecs) / sizeof(ifname_vecs[0]); i++) {
		const char *why = NULL;
		int ret = check_ifname(ifname_vecs[i].prefix, &why);

		if (ret != ifname_vecs[i].want)
			fail_msg("ifname vector %zu: got %d, want %d", i + 1, ret,
				 ifname_vecs[i].want);
		if (ret < 0 && (!why || !*why))
			fail_msg("ifname vector %zu: refused without a reason", i + 1);
	}
}

static void test_mask_host_bits(void **state)
{
	static const struct {
		const char *in, *masked;
	} v[] = {
		{"100.64.3.7/10", "100.64.0.0/10"},
		{"100.127.255.255/10", "100.64.0.0/10"},
		{"100.64.0.7/32", "100.64.0.7/32"},
		{"100.64.0.7/31", "100.64.0.6/31"},
		{"1.2.3.4/0", "0.0.0.0/0"},
		{"fd7a:115c:a1e0:1:2::3/48", "fd7a:115c:a1e0::/48"},
		{"fd7a:115c:a1e0::ffff/127", "fd7a:115c:a1e0::fffe/127"},
		{"fd7a:115c:a1ff::/45", "fd7a:115c:a1f8::/45"},
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct ip_prefix in = pfx(v[i].in), want = pfx(v[i].masked);
		struct nl_addr *a = addr_from_prefix(&in, true);
		size_t alen = in.family == AF_INET ? 4 : 16;

		assert_non_null(a);
		assert_int_equal(nl_addr_get_family(a), in.family);
		assert_int_equal(nl_addr_get_prefixlen(a), in.len);
		assert_int_equal(nl_addr_get_len(a), alen);
		if (memcmp(nl_addr_get_binary_addr(a), want.addr, alen) != 0)
			fail_msg("mask vector %zu: %s did not become %s", i + 1, v[i].in,
				 v[i].masked);
		nl_addr_put(a);
		/* Addresses keep their host bits. */
		a = addr_from_prefix(&in, false);
		assert_non_null(a);
		assert_memory_equal(nl_addr_get_binary_addr(a), in.addr, alen);
		nl_addr_put(a);
	}
}

/* These are refused before any netlink or TUN call, so they need no root. */
static void test_tun_create_arguments(void **state)
{
	const char *why = NULL;
	int fd = 42, ifindex = 42;

	assert_int_equal(netops_tun_create(-1, "bad/name", NULL, NETOPS_MTU, &fd, &ifindex, &why),
			 -EINVAL);
	assert_int_equal(fd, -1);
	assert_int_equal(ifindex, 0);
	assert_non_null(why);
	why = NULL;
	assert_int_equal(netops_tun_create(-1, "ts0", NULL, 1279, &fd, &ifindex, &why), -EINVAL);
	assert_non_null(strstr(why, "MTU"));
	assert_int_equal(netops_tun_create(-1, "ts0", NULL, 65536, &fd, &ifindex, &why), -EINVAL);
	assert_int_equal(netops_tun_create(-1, "", NULL, NETOPS_MTU, &fd, &ifindex, &why), -EINVAL);
	assert_string_equal(why, "interface name is empty");
}

static void test_nl_errors(void **state)
{
	/* The kernel's answers we act on must survive libnl's folding. */
	assert_int_equal(netlink_errno(-nl_syserr2nlerr(EEXIST)), -EEXIST);
	assert_int_equal(netlink_errno(-nl_syserr2nlerr(ENODEV)), -ENODEV);
	assert_int_equal(netlink_errno(-nl_syserr2nlerr(EADDRNOTAVAIL)), -EADDRNOTAVAIL);
	assert_int_equal(netlink_errno(-nl_syserr2nlerr(ESRCH)), -ENOENT);
	assert_int_equal(netlink_errno(-nl_syserr2nlerr(EPERM)), -EPERM);
	assert_int_equal(netlink_errno(-nl_syserr2nlerr(EINVAL)), -EINVAL);
	assert_int_equal(netlink_errno(-nl_syserr2nlerr(EOPNOTSUPP)), -EOPNOTSUPP);
	assert_int_equal(netlink_errno(0), 0);
	assert_int_equal(netlink_errno(-NLE_FAILURE), -EIO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_validate_addr),
		cmocka_unit_test(test_validate_route),
		cmocka_unit_test(test_validate_malformed),
		cmocka_unit_test(test_check_ifname),
		cmocka_unit_test(test_mask_host_bits),
		cmocka_unit_test(test_tun_create_arguments),
		cmocka_unit_test(test_nl_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
