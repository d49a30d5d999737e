/* Unit tests for cni/result.c: prevResult checks, our entries, and version
 * conversion. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cni/result.c"
#include "validate.h"

#define NETNS "/var/run/netns/cni-0f6b7c1e-1111-2222-3333-444455556666"

/* docs/cni-contract.md 5.3. The output differs from the contract's text in one
 * key only: ts0 carries "mac":"00:00:00:00:00:00", which podman's CNI backend
 * requires on every interface with a sandbox (see result.c). */
static const char prev_53[] =
	"{\"cniVersion\":\"1.1.0\",\"interfaces\":["
	"{\"name\":\"cni0\",\"mac\":\"aa:bb:cc:00:00:01\"},"
	"{\"name\":\"veth1a2b3c4d\",\"mac\":\"aa:bb:cc:00:00:02\"},"
	"{\"name\":\"eth0\",\"mac\":\"aa:bb:cc:00:00:03\",\"sandbox\":\"" NETNS "\"}],"
	"\"ips\":[{\"address\":\"10.244.1.5/24\",\"gateway\":\"10.244.1.1\",\"interface\":2}],"
	"\"routes\":[{\"dst\":\"10.244.0.0/16\",\"gw\":\"10.244.1.1\"},"
	"{\"dst\":\"0.0.0.0/0\",\"gw\":\"10.244.1.1\"}],\"dns\":{}}";

static const char want_53[] =
	"{\"cniVersion\":\"1.1.0\",\"interfaces\":["
	"{\"name\":\"cni0\",\"mac\":\"aa:bb:cc:00:00:01\"},"
	"{\"name\":\"veth1a2b3c4d\",\"mac\":\"aa:bb:cc:00:00:02\"},"
	"{\"name\":\"eth0\",\"mac\":\"aa:bb:cc:00:00:03\",\"sandbox\":\"" NETNS "\"},"
	"{\"name\":\"ts0\",\"mac\":\"00:00:00:00:00:00\",\"mtu\":1280,\"sandbox\":\"" NETNS "\"}],"
	"\"ips\":[{\"address\":\"10.244.1.5/24\",\"gateway\":\"10.244.1.1\",\"interface\":2},"
	"{\"address\":\"100.101.102.103/32\",\"interface\":3},"
	"{\"address\":\"fd7a:115c:a1e0::6501:6667/128\",\"interface\":3}],"
	"\"routes\":[{\"dst\":\"10.244.0.0/16\",\"gw\":\"10.244.1.1\"},"
	"{\"dst\":\"0.0.0.0/0\",\"gw\":\"10.244.1.1\"},"
	"{\"dst\":\"100.64.0.0/10\"},{\"dst\":\"fd7a:115c:a1e0::/48\"}],\"dns\":{}}";

static json_t *load(const char *text)
{
	json_error_t jerr;
	json_t *j = json_loads(text, 0, &jerr);

	if (!j)
		fail_msg("bad test JSON: %s", jerr.text);
	return j;
}

struct ours_buf {
	struct ip_prefix addrs[2], routes[2];
	struct result_ours o;
};

static void ours_53(struct ours_buf *b, bool report_ips)
{
	assert_int_equal(ip_prefix_parse("100.101.102.103/32", false, &b->addrs[0]), 0);
	assert_int_equal(ip_prefix_parse("fd7a:115c:a1e0::6501:6667/128", false, &b->addrs[1]), 0);
	assert_int_equal(ip_prefix_parse("100.64.0.0/10", false, &b->routes[0]), 0);
	assert_int_equal(ip_prefix_parse("fd7a:115c:a1e0::/48", false, &b->routes[1]), 0);
	b->o = (struct result_ours){
		.ifname = "ts0",
		.sandbox = NETNS,
		.mtu = 1280,
		.addrs = b->addrs,
		.n_addrs = 2,
		.routes = b->routes,
		.n_routes = 2,
		.report_ips = report_ips,
	};
}

/* The worked example: same JSON value and the same key and array order. */
static void test_worked_example_11(void **state)
{
	json_t *prev = load(prev_53), *want = load(want_53), *r;
	struct cni_error err;
	struct ours_buf b;
	char *text, *wtext;
	size_t len;

	assert_int_equal(result_check_prev(prev, "eth0", "ts0", false, &err), 0);
	ours_53(&b, true);
	r = result_build(prev, CNI_V110, &b.o);
	assert_true(json_equal(r, want));
	text = result_dump(r, &len);
	wtext = json_dumps(want, JSON_COMPACT);
	assert_int_equal(len, strlen(wtext) + 1);
	assert_memory_equal(text, wtext, strlen(wtext));
	assert_int_equal(text[len - 1], '\n');
	/* prev itself is untouched. */
	assert_int_equal(json_array_size(json_object_get(prev, "interfaces")), 3);
	free(text);
	free(wtext);
	json_decref(r);
	json_decref(want);
	json_decref(prev);
}

/* The same at 0.4.0: every IP gets "version", ts0 has no mtu. */
static void test_worked_example_04(void **state)
{
	static const char *const versions[] = {"4", "4", "6"};
	json_t *prev = load(prev_53), *r, *ips, *ifaces;
	struct ours_buf b;
	size_t i;
	json_t *e;

	ours_53(&b, true);
	r = result_build(prev, CNI_V040, &b.o);
	assert_string_equal(json_string_value(json_object_get(r, "cniVersion")), "0.4.0");
	ips = json_object_get(r, "ips");
	assert_int_equal(json_array_size(ips), 3);
	json_array_foreach(ips, i, e)
		assert_string_equal(json_string_value(json_object_get(e, "version")), versions[i]);
	ifaces = json_object_get(r, "interfaces");
	json_array_foreach(ifaces, i, e) assert_null(json_object_get(e, "mtu"));
	assert_string_equal(json_string_value(json_object_get(json_array_get(ifaces, 3), "name")),
			    "ts0");
	json_decref(r);
	json_decref(prev);
}

static void test_all_versions(void **state)
{
	json_t *prev = load(prev_53);
	struct ours_buf b;

	ours_53(&b, true);
	for (int v = 0; v < CNI_V_COUNT; v++) {
		json_t *r = result_build(prev, (enum cni_version)v, &b.o), *e;
		bool v1x = v >= CNI_V100;
		size_t i;

		assert_string_equal(json_string_value(json_object_get(r, "cniVersion")),
				    conf_version_names[v]);
		json_array_foreach(json_object_get(r, "ips"), i, e)
		{
			assert_int_equal(json_object_get(e, "version") == NULL, v1x);
			if (i > 0)
				assert_int_equal(
					json_integer_value(json_object_get(e, "interface")), 3);
		}
		e = json_array_get(json_object_get(r, "interfaces"), 3);
		assert_int_equal(json_object_get(e, "mtu") != NULL, v1x);
		assert_string_equal(json_string_value(json_object_get(e, "sandbox")), NETNS);
		assert_int_equal(json_array_size(json_object_get(r, "routes")), 4);
		json_decref(r);
	}
	json_decref(prev);
}

/* A 0.4.0-shaped prevResult (with "version" keys) inside a 1.0.0 request. */
static void test_prev_in_other_version(void **state)
{
	json_t *prev = load("{\"cniVersion\":\"0.4.0\",\"interfaces\":[{\"name\":\"eth0\","
			    "\"sandbox\":\"/n\"}],\"ips\":[{\"version\":\"4\",\"address\":"
			    "\"10.1.0.5/24\",\"interface\":0},{\"version\":\"6\",\"address\":"
			    "\"2001:db8::5/64\",\"interface\":0}]}");
	struct ip_prefix a;
	struct result_ours o = {.ifname = "ts0",
				.sandbox = "/n",
				.mtu = 1280,
				.addrs = &a,
				.n_addrs = 1,
				.report_ips = true};
	struct cni_error err;
	json_t *r, *e;
	size_t i;

	assert_int_equal(ip_prefix_parse("100.64.0.1/32", false, &a), 0);
	assert_int_equal(result_check_prev(prev, "eth0", "ts0", false, &err), 0);
	r = result_build(prev, CNI_V100, &o);
	assert_string_equal(json_string_value(json_object_get(r, "cniVersion")), "1.0.0");
	assert_int_equal(json_array_size(json_object_get(r, "ips")), 3);
	json_array_foreach(json_object_get(r, "ips"), i, e)
		assert_null(json_object_get(e, "version"));
	json_decref(r);
	json_decref(prev);
}

/* No interfaces, an IP without index: ts0 becomes interfaces[0]. */
static void test_no_interfaces(void **state)
{
	json_t *prev = load("{\"cniVersion\":\"1.0.0\",\"ips\":[{\"address\":\"10.244.1.5/24\"}]}");
	struct ours_buf b;
	struct cni_error err;
	json_t *r, *ips;

	assert_int_equal(result_check_prev(prev, "eth0", "ts0", false, &err), 0);
	ours_53(&b, true);
	b.o.sandbox = "/var/run/netns/t1";
	r = result_build(prev, CNI_V100, &b.o);
	assert_int_equal(json_array_size(json_object_get(r, "interfaces")), 1);
	ips = json_object_get(r, "ips");
	assert_null(json_object_get(json_array_get(ips, 0), "interface"));
	assert_int_equal(json_integer_value(json_object_get(json_array_get(ips, 1), "interface")),
			 0);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(ips, 2), "interface")),
			 0);
	json_decref(r);
	json_decref(prev);
}

static void test_null_arrays(void **state)
{
	json_t *prev = load("{\"cniVersion\":\"1.0.0\",\"interfaces\":null,\"ips\":null,"
			    "\"routes\":null}");
	struct ours_buf b;
	struct cni_error err;
	json_t *r;

	assert_int_equal(result_check_prev(prev, "eth0", "ts0", false, &err), 0);
	ours_53(&b, true);
	r = result_build(prev, CNI_V100, &b.o);
	assert_int_equal(json_array_size(json_object_get(r, "interfaces")), 1);
	assert_int_equal(json_array_size(json_object_get(r, "ips")), 2);
	assert_int_equal(json_array_size(json_object_get(r, "routes")), 2);
	json_decref(r);
	json_decref(prev);
}

static void test_unknown_keys_preserved(void **state)
{
	json_t *prev = load("{\"cniVersion\":\"1.0.0\",\"x-top\":[1,2],\"interfaces\":[{\"name\":"
			    "\"eth0\",\"x-vendor\":1,\"sandbox\":\"/n\"}],\"ips\":[{\"address\":"
			    "\"10.0.0.2/24\",\"interface\":0,\"x-ip\":{\"a\":\"b\"}}],"
			    "\"routes\":[{\"dst\":\"0.0.0.0/0\",\"mtu\":1400,\"x-r\":true}]}");
	struct ours_buf b;
	json_t *r;

	ours_53(&b, true);
	r = result_build(prev, CNI_V031, &b.o);
	assert_true(json_equal(json_object_get(r, "x-top"), json_object_get(prev, "x-top")));
	assert_int_equal(json_integer_value(json_object_get(
				 json_array_get(json_object_get(r, "interfaces"), 0), "x-vendor")),
			 1);
	assert_non_null(json_object_get(json_array_get(json_object_get(r, "ips"), 0), "x-ip"));
	assert_int_equal(json_integer_value(json_object_get(
				 json_array_get(json_object_get(r, "routes"), 0), "mtu")),
			 1400);
	json_decref(r);
	json_decref(prev);
}

static void test_report_ips_false(void **state)
{
	json_t *prev = load(prev_53), *r;
	struct ours_buf b;

	ours_53(&b, false);
	r = result_build(prev, CNI_V110, &b.o);
	assert_true(json_equal(json_object_get(r, "ips"), json_object_get(prev, "ips")));
	assert_int_equal(json_array_size(json_object_get(r, "interfaces")), 4);
	json_decref(r);
	json_decref(prev);
}

static void test_pass_through(void **state)
{
	json_t *prev = load(prev_53), *r;

	r = result_build(prev, CNI_V110, NULL);
	assert_true(json_equal(r, prev));
	json_decref(r);
	r = result_build(prev, CNI_V031, NULL);
	assert_string_equal(json_string_value(json_object_get(r, "cniVersion")), "0.3.1");
	assert_string_equal(json_string_value(json_object_get(
				    json_array_get(json_object_get(r, "ips"), 0), "version")),
			    "4");
	assert_int_equal(json_array_size(json_object_get(r, "interfaces")), 3);
	json_decref(r);
	json_decref(prev);
	/* No prevResult at all: just the version. */
	r = result_build(NULL, CNI_V100, NULL);
	assert_int_equal(json_object_size(r), 1);
	json_decref(r);
}

/* Addresses pending (no control plane yet): ts0 listed, no new IPs. */
static void test_addresses_pending(void **state)
{
	json_t *prev = load(prev_53), *r;
	struct result_ours o = {.ifname = "ts0", .sandbox = NETNS, .mtu = 1280, .report_ips = true};

	r = result_build(prev, CNI_V100, &o);
	assert_int_equal(json_array_size(json_object_get(r, "interfaces")), 4);
	assert_int_equal(json_array_size(json_object_get(r, "ips")), 1);
	assert_int_equal(json_array_size(json_object_get(r, "routes")), 2);
	json_decref(r);
	json_decref(prev);
}

static void expect_prev(const char *text, const char *ifname, bool allow, unsigned int code)
{
	json_t *prev = load(text);
	struct cni_error err = {0};
	int ret = result_check_prev(prev, "eth0", ifname, allow, &err);

	json_decref(prev);
	if (code == 0) {
		if (ret != 0)
			fail_msg("refused (%u %s) %s", err.code, err.details, text);
		return;
	}
	if (ret == 0)
		fail_msg("accepted %s", text);
	if (err.code != code)
		fail_msg("code %u (%s), want %u, for %s", err.code, err.details, code, text);
}

static void test_check_prev(void **state)
{
	/* Dangling index: 5 with three interfaces. */
	expect_prev("{\"interfaces\":[{\"name\":\"a\"},{\"name\":\"b\"},{\"name\":\"c\"}],"
		    "\"ips\":[{\"address\":\"10.0.0.5/24\",\"interface\":5}]}",
		    "ts0", false, CNI_ERR_CONFIG);
	expect_prev("{\"interfaces\":[{\"name\":\"a\"},{\"name\":\"b\"},{\"name\":\"c\"}],"
		    "\"ips\":[{\"address\":\"10.0.0.5/24\",\"interface\":3}]}",
		    "ts0", false, CNI_ERR_CONFIG);
	expect_prev("{\"interfaces\":[{\"name\":\"a\"},{\"name\":\"b\"},{\"name\":\"c\"}],"
		    "\"ips\":[{\"address\":\"10.0.0.5/24\",\"interface\":2}]}",
		    "ts0", false, 0);
	/* Our name is CNI_IFNAME, or already taken. */
	expect_prev("{}", "eth0", false, CNI_ERR_CONFIG);
	expect_prev("{\"interfaces\":[{\"name\":\"ts0\"}]}", "ts0", false, CNI_ERR_CONFIG);
	/* Decode errors. */
	expect_prev("{\"ips\":[{\"address\":\"10.0.0.5\"}]}", "ts0", false, CNI_ERR_DECODE);
	expect_prev("{\"interfaces\":[{\"name\":\"a\"},{\"name\":\"b\"},{\"name\":\"c\"}],"
		    "\"ips\":[{\"address\":\"10.0.0.5/24\",\"interface\":\"2\"}]}",
		    "ts0", false, CNI_ERR_DECODE);
	expect_prev("{\"interfaces\":[{\"name\":\"a\"}],\"ips\":[{\"address\":\"10.0.0.5/24\","
		    "\"interface\":1.0}]}",
		    "ts0", false, CNI_ERR_DECODE);
	expect_prev("{\"interfaces\":[{\"name\":\"a\"}],\"ips\":[{\"address\":\"10.0.0.5/24\","
		    "\"interface\":-1}]}",
		    "ts0", false, CNI_ERR_DECODE);
	expect_prev("{\"interfaces\":[{\"name\":\"a\"}],\"ips\":[{\"address\":\"10.0.0.5/24\","
		    "\"interface\":1e0}]}",
		    "ts0", false, CNI_ERR_DECODE);
	expect_prev("{\"interfaces\":{}}", "ts0", false, CNI_ERR_DECODE);
	expect_prev("{\"interfaces\":[{\"mac\":\"x\"}]}", "ts0", false, CNI_ERR_DECODE);
	expect_prev("{\"interfaces\":[{\"name\":\"a\",\"sandbox\":1}]}", "ts0", false,
		    CNI_ERR_DECODE);
	expect_prev("{\"ips\":[5]}", "ts0", false, CNI_ERR_DECODE);
	expect_prev("{\"routes\":[{\"gw\":\"10.0.0.1\"}]}", "ts0", false, CNI_ERR_DECODE);
	expect_prev("{\"routes\":[{\"dst\":\"bogus\"}]}", "ts0", false, CNI_ERR_DECODE);
	/* Overlap with the Tailscale ranges. */
	expect_prev("{\"ips\":[{\"address\":\"100.65.0.5/16\"}]}", "ts0", false, CNI_ERR_CONFIG);
	expect_prev("{\"ips\":[{\"address\":\"100.65.0.5/16\"}]}", "ts0", true, 0);
	expect_prev("{\"ips\":[{\"address\":\"fd7a:115c:a1e0:1::5/64\"}]}", "ts0", false,
		    CNI_ERR_CONFIG);
	expect_prev("{\"routes\":[{\"dst\":\"100.0.0.0/8\"}]}", "ts0", false, CNI_ERR_CONFIG);
	expect_prev("{\"routes\":[{\"dst\":\"0.0.0.0/0\"},{\"dst\":\"::/0\"}]}", "ts0", false, 0);
	expect_prev("{\"ips\":[{\"address\":\"100.128.0.1/24\"}],\"routes\":[{\"dst\":"
		    "\"fd7a:115c:a1e1::/48\"}]}",
		    "ts0", false, 0);
}

static void test_clashes(void **state)
{
	json_t *prev = load("{\"ips\":[{\"address\":\"100.65.0.5/16\"}]}");
	struct ip_prefix a;

	assert_int_equal(ip_prefix_parse("100.65.0.5/32", false, &a), 0);
	assert_true(result_clashes(prev, &a, 1));
	assert_int_equal(ip_prefix_parse("100.65.0.6/32", false, &a), 0);
	assert_false(result_clashes(prev, &a, 1));
	assert_false(result_clashes(NULL, &a, 1));
	json_decref(prev);
}

static void test_find_ours(void **state)
{
	json_t *r = load(want_53);
	struct ip_prefix addrs[PREFIX_MAX], want;
	struct cni_error err;
	bool found;
	size_t n;

	assert_int_equal(result_find_ours(r, "ts0", NETNS, &found, addrs, PREFIX_MAX, &n, &err), 0);
	assert_true(found);
	assert_int_equal(n, 2);
	assert_int_equal(ip_prefix_parse("100.101.102.103/32", false, &want), 0);
	assert_true(ip_prefix_equal(&addrs[0], &want));
	assert_int_equal(ip_prefix_parse("fd7a:115c:a1e0::6501:6667/128", false, &want), 0);
	assert_true(ip_prefix_equal(&addrs[1], &want));
	/* Another sandbox: not ours. */
	assert_int_equal(result_find_ours(r, "ts0", "/var/run/netns/other", &found, addrs,
					  PREFIX_MAX, &n, &err),
			 0);
	assert_false(found);
	assert_int_equal(n, 0);
	/* At most max addresses. */
	assert_int_equal(result_find_ours(r, "ts0", NETNS, &found, addrs, 1, &n, &err), -EINVAL);
	json_decref(r);
	r = load(prev_53);
	assert_int_equal(result_find_ours(r, "ts0", NETNS, &found, addrs, PREFIX_MAX, &n, &err), 0);
	assert_false(found);
	json_decref(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_worked_example_11),
		cmocka_unit_test(test_worked_example_04),
		cmocka_unit_test(test_all_versions),
		cmocka_unit_test(test_prev_in_other_version),
		cmocka_unit_test(test_no_interfaces),
		cmocka_unit_test(test_null_arrays),
		cmocka_unit_test(test_unknown_keys_preserved),
		cmocka_unit_test(test_report_ips_false),
		cmocka_unit_test(test_pass_through),
		cmocka_unit_test(test_addresses_pending),
		cmocka_unit_test(test_check_prev),
		cmocka_unit_test(test_clashes),
		cmocka_unit_test(test_find_ours),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
