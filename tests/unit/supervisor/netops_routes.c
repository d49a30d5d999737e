/* netops_routes_plan without root: which of a worker's route set ts0 gets
 * under each route policy, next to the pod's own networks. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "supervisor/netops_routes.c"

static struct ip_prefix pfx(const char *s)
{
	struct ip_prefix p;

	if (ip_prefix_parse(s, false, &p) != 0)
		fail_msg("bad test vector %s", s);
	return p;
}

/* plan(pol, own[], want[]) into out/res; the texts of out joined by ' '. */
static char joined[4096];
static struct netops_routes_result res;

static const char *plan(const struct netops_route_policy *pol, const char *const *own,
			const char *const *want)
{
	struct ip_prefix o[16], w[32], out[34];
	size_t no = 0, nw = 0, n;

	while (own && own[no]) {
		o[no] = pfx(own[no]);
		no++;
	}
	while (want[nw]) {
		w[nw] = pfx(want[nw]);
		nw++;
	}
	memset(&res, 0, sizeof(res));
	n = netops_routes_plan(w, nw, pol, o, no, out, &res);
	joined[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		char t[IP_PREFIX_STRLEN];

		if (i)
			strcat(joined, " ");
		strcat(joined, ip_prefix_format(&out[i], t, sizeof(t)));
	}
	return joined;
}

static const char *const cluster[] = {"100.64.5.0/24", "10.244.0.0/16", NULL};

/* Defaults: peers' addresses and quad-100; subnet routes are not accepted;
 * a peer address inside the pod's own network is refused, naming it. */
static void test_default(void **state)
{
	static const char *const want[] = {"100.100.100.100/32", "fd7a:115c:a1e0::53/128",
					   "100.64.0.2/32",	 "fd7a:115c:a1e0::2/128",
					   "10.77.0.0/16",	 "100.64.5.0/25",
					   "100.64.5.9/32",	 NULL};
	char t[IP_PREFIX_STRLEN];

	(void)state;
	assert_string_equal(plan(NULL, cluster, want),
			    "100.64.0.2/32 100.100.100.100/32 fd7a:115c:a1e0::2/128 "
			    "fd7a:115c:a1e0::53/128");
	assert_int_equal(res.not_accepted, 2);
	assert_int_equal(res.refused, 1);
	assert_int_equal(res.n_refused_kept, 1);
	assert_string_equal(ip_prefix_format(&res.refused_kept[0].prefix, t, sizeof(t)),
			    "100.64.5.9/32");
	assert_string_equal(ip_prefix_format(&res.refused_kept[0].over, t, sizeof(t)),
			    "100.64.5.0/24");
	assert_non_null(strstr(res.refused_kept[0].why, "own networks"));
}

/* accept_routes: subnet routes, but never over the deny list or the pod's
 * own networks (overlap either way, a default route included). */
static void test_accept_routes(void **state)
{
	static const struct ip_prefix deny[] = {
		{.family = AF_INET, .len = 16, .addr = {10, 78}},
	};
	struct netops_route_policy pol = {.accept_routes = true, .deny = deny, .n_deny = 1};
	static const char *const want[] = {"10.77.0.0/16",
					   "10.78.1.0/24",
					   "100.64.5.0/25",
					   "10.0.0.0/8",
					   "0.0.0.0/0",
					   "192.168.9.0/24",
					   "2001:db8::/32",
					   "fd7a:115c:a1e0:9::/64",
					   NULL};

	(void)state;
	assert_string_equal(plan(&pol, cluster, want),
			    "10.77.0.0/16 192.168.9.0/24 2001:db8::/32 fd7a:115c:a1e0:9::/64");
	assert_int_equal(res.refused, 4);
	assert_int_equal(res.not_accepted, 0);
	assert_non_null(strstr(res.refused_kept[0].why, "deny list"));
	/* At most NETOPS_REFUSED_KEPT named, all counted. */
	assert_int_equal(res.n_refused_kept, NETOPS_REFUSED_KEPT);
}

/* route_all: the two wide routes instead of everything inside the ranges;
 * an own network inside the wide route keeps its longer prefix, one that
 * holds the whole range refuses it. */
static void test_route_all(void **state)
{
	struct netops_route_policy pol = {.route_all = true};
	static const char *const want[] = {"100.100.100.100/32", "fd7a:115c:a1e0::53/128",
					   "100.64.0.2/32",	 "fd7a:115c:a1e0::2/128",
					   "10.77.0.0/16",	 NULL};
	static const char *const big[] = {"100.0.0.0/8", NULL};

	(void)state;
	assert_string_equal(plan(&pol, cluster, want), "100.64.0.0/10 fd7a:115c:a1e0::/48");
	assert_int_equal(res.refused, 0);
	assert_int_equal(res.not_accepted, 1);
	assert_string_equal(plan(&pol, big, want), "fd7a:115c:a1e0::/48");
	assert_int_equal(res.refused, 1);
}

/* Host bits cleared, duplicates once, nonsense refused. */
static void test_normalised(void **state)
{
	struct netops_route_policy pol = {.accept_routes = true};
	static const char *const want[] = {"10.77.3.4/16", "100.64.0.2/32", "100.64.0.2/32", NULL};
	struct ip_prefix w[1], out[3];

	(void)state;
	assert_string_equal(plan(&pol, NULL, want), "10.77.0.0/16 100.64.0.2/32");
	assert_int_equal(res.refused, 0);
	memset(w, 0, sizeof(w));
	w[0].family = AF_INET;
	w[0].len = 33;
	memset(&res, 0, sizeof(res));
	assert_int_equal(netops_routes_plan(w, 1, &pol, NULL, 0, out, &res), 0);
	assert_int_equal(res.refused, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default),
		cmocka_unit_test(test_accept_routes),
		cmocka_unit_test(test_route_all),
		cmocka_unit_test(test_normalised),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
