/* Unit tests for cni/args.c: the CNI environment and CNI_ARGS. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cni/args.c"

/* A fake environment: NULL-terminated name/value pairs. */
static const char *const *fake_env;

static char *fake_getenv(const char *name)
{
	for (size_t i = 0; fake_env[i]; i += 2) {
		if (strcmp(fake_env[i], name) == 0)
			return (char *)fake_env[i + 1];
	}
	return NULL;
}

static void load(struct cni_env *env, const char *const *vars)
{
	fake_env = vars;
	args_env_load(env, fake_getenv);
}

static void test_verbs(void **state)
{
	static const struct {
		const char *s;
		enum cni_verb v;
	} cases[] = {
		{"ADD", CNI_VERB_ADD},	     {"DEL", CNI_VERB_DEL},
		{"CHECK", CNI_VERB_CHECK},   {"GC", CNI_VERB_GC},
		{"STATUS", CNI_VERB_STATUS}, {"VERSION", CNI_VERB_VERSION},
		{"add", CNI_VERB_UNKNOWN},   {"FOO", CNI_VERB_UNKNOWN},
		{"ADD ", CNI_VERB_UNKNOWN},  {"", CNI_VERB_NONE},
		{NULL, CNI_VERB_NONE},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(args_verb_parse(cases[i].s), cases[i].v);
	assert_string_equal(args_verb_name(CNI_VERB_STATUS), "STATUS");
}

static void test_empty_means_unset(void **state)
{
	static const char *const vars[] = {"CNI_COMMAND", "ADD", "CNI_CONTAINERID", "",
					   "CNI_NETNS",	  "",	 "CNI_IFNAME",	    "eth0",
					   NULL};
	struct cni_env env;

	load(&env, vars);
	assert_int_equal(env.verb, CNI_VERB_ADD);
	assert_null(env.container_id);
	assert_null(env.netns);
	assert_string_equal(env.ifname, "eth0");
	assert_false(env.netns_override);
}

static void test_override(void **state)
{
	static const char *const a[] = {"CNI_NETNS_OVERRIDE", "TRUE", NULL};
	static const char *const b[] = {"CNI_NETNS_OVERRIDE", "1", NULL};
	static const char *const c[] = {"CNI_NETNS_OVERRIDE", "yes", NULL};
	struct cni_env env;

	load(&env, a);
	assert_true(env.netns_override);
	load(&env, b);
	assert_true(env.netns_override);
	load(&env, c);
	assert_false(env.netns_override);
}

static void test_validate_reports_all(void **state)
{
	static const char *const vars[] = {"CNI_COMMAND", "ADD", NULL};
	struct cni_error err = {0};
	struct cni_env env;

	load(&env, vars);
	assert_int_equal(args_env_validate(&env, &err), -EINVAL);
	assert_int_equal(err.code, CNI_ERR_ENV);
	assert_non_null(strstr(err.msg, "CNI_CONTAINERID"));
	assert_non_null(strstr(err.msg, "CNI_NETNS"));
	assert_non_null(strstr(err.msg, "CNI_IFNAME"));
	assert_null(strstr(err.msg, "CNI_PATH")); /* never required */
}

static void test_validate_bad_values(void **state)
{
	static const char *const bad_ids[] = {"-bad/id", "a b", ".x", "x/y"};
	static const char *const bad_ifnames[] = {
		"abcdefghijklmnop", "eth 0", "..", ".", "a/b", "a:b"};
	struct cni_error err;
	struct cni_env env;

	for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
		const char *vars[] = {"CNI_COMMAND", "ADD",	  "CNI_CONTAINERID",
				      bad_ids[i],    "CNI_NETNS", "/var/run/netns/t1",
				      "CNI_IFNAME",  "eth0",	  NULL};

		load(&env, vars);
		assert_int_equal(args_env_validate(&env, &err), -EINVAL);
		assert_int_equal(err.code, CNI_ERR_ENV);
		assert_non_null(strstr(err.msg, "CNI_CONTAINERID"));
		assert_null(strstr(err.msg, "CNI_IFNAME"));
	}
	for (size_t i = 0; i < sizeof(bad_ifnames) / sizeof(bad_ifnames[0]); i++) {
		const char *vars[] = {"CNI_COMMAND", "CHECK",	     "CNI_CONTAINERID",
				      "c1",	     "CNI_NETNS",    "/var/run/netns/t1",
				      "CNI_IFNAME",  bad_ifnames[i], NULL};

		load(&env, vars);
		assert_int_equal(args_env_validate(&env, &err), -EINVAL);
		assert_non_null(strstr(err.msg, "CNI_IFNAME"));
		assert_null(strstr(err.msg, "CNI_CONTAINERID"));
	}
}

static void test_validate_per_verb(void **state)
{
	static const char *const del[] = {
		"CNI_COMMAND", "DEL", "CNI_CONTAINERID", "c1", "CNI_IFNAME", "eth0", NULL};
	static const char *const gc[] = {"CNI_COMMAND", "GC", "CNI_CONTAINERID", "",
					 "CNI_NETNS",	"",   "CNI_IFNAME",	 "",
					 NULL};
	static const char *const st[] = {"CNI_COMMAND", "STATUS", NULL};
	static const char *const ver[] = {"CNI_COMMAND", "VERSION", "CNI_NETNS", "dummy",
					  "CNI_IFNAME",	 "dummy",   NULL};
	static const char *const add[] = {"CNI_COMMAND", "ADD",	      "CNI_CONTAINERID",
					  "c1",		 "CNI_NETNS", "/var/run/netns/t1",
					  "CNI_IFNAME",	 "eth0",      NULL};
	static const char *const foo[] = {"CNI_COMMAND", "FOO", NULL};
	struct cni_error err = {0};
	struct cni_env env;

	load(&env, del); /* CNI_NETNS is optional on DEL */
	assert_int_equal(args_env_validate(&env, &err), 0);
	load(&env, gc);
	assert_int_equal(args_env_validate(&env, &err), 0);
	load(&env, st);
	assert_int_equal(args_env_validate(&env, &err), 0);
	load(&env, ver);
	assert_int_equal(args_env_validate(&env, &err), 0);
	load(&env, add); /* no CNI_PATH: fine */
	assert_int_equal(args_env_validate(&env, &err), 0);
	load(&env, foo);
	assert_int_equal(args_env_validate(&env, &err), -EINVAL);
	assert_int_equal(err.code, CNI_ERR_ENV);
	assert_non_null(strstr(err.details, "FOO"));
}

static void test_args_any_order(void **state)
{
	static const char *const inputs[] = {
		"IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;"
		"K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1",
		"K8S_POD_UID=u-1;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_NAME=p;"
		"K8S_POD_NAMESPACE=ns;IgnoreUnknown=1",
		"K8S_POD_NAME=p;IgnoreUnknown=true;FOO=bar;K8S_POD_NAMESPACE=ns;K8S_POD_UID=u-1;"
		"K8S_POD_INFRA_CONTAINER_ID=abc",
	};

	for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
		struct cni_args a;

		assert_int_equal(args_parse(inputs[i], &a), 0);
		assert_string_equal(a.pod_namespace, "ns");
		assert_string_equal(a.pod_name, "p");
		assert_string_equal(a.pod_uid, "u-1");
		assert_string_equal(a.infra_container_id, "abc");
		assert_true(a.ignore_unknown);
		assert_int_equal(a.malformed, 0);
		args_destroy(&a);
	}
}

static void test_args_lenient(void **state)
{
	struct cni_args a;

	/* Conformance case 22: no UID, an unknown key, any order. */
	assert_int_equal(
		args_parse("K8S_POD_NAME=p;IgnoreUnknown=1;FOO=bar;K8S_POD_NAMESPACE=ns", &a), 0);
	assert_string_equal(a.pod_name, "p");
	assert_string_equal(a.pod_namespace, "ns");
	assert_null(a.pod_uid);
	assert_null(a.infra_container_id);
	args_destroy(&a);

	/* "a=b=c;;x": the first '=' splits, the empty segment is skipped, the
	 * pair without '=' is counted as malformed and ignored. */
	assert_int_equal(args_parse("a=b=c;;x", &a), 0);
	assert_int_equal(a.malformed, 1);
	assert_false(a.ignore_unknown);
	args_destroy(&a);

	/* A K8S_ value must be a name the supervisor accepts. */
	assert_int_equal(args_parse("K8S_POD_NAME=x=y;=v;;K8S_POD_NAMESPACE=my ns", &a), 0);
	assert_null(a.pod_name);
	assert_null(a.pod_namespace);
	assert_int_equal(a.malformed, 3);
	args_destroy(&a);

	/* podman's DEL: MAC= and IP= belong to someone else. */
	assert_int_equal(args_parse("IgnoreUnknown=1;K8S_POD_NAME=c;MAC=aa:bb;IP=10.0.0.2", &a), 0);
	assert_string_equal(a.pod_name, "c");
	assert_int_equal(a.malformed, 0);
	args_destroy(&a);

	assert_int_equal(args_parse(NULL, &a), 0);
	assert_null(a.pod_name);
	args_destroy(&a);
}

static void test_args_bad_values(void **state)
{
	char long_name[300];
	char *s;
	struct cni_args a;

	memset(long_name, 'n', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	s = xasprintf("K8S_POD_NAME=%s;K8S_POD_NAMESPACE=a\tb;K8S_POD_UID=;K8S_POD_NAME=ok",
		      long_name);
	assert_int_equal(args_parse(s, &a), 0);
	/* The too-long name and the tab are refused; the later valid name wins. */
	assert_string_equal(a.pod_name, "ok");
	assert_null(a.pod_namespace);
	assert_null(a.pod_uid);
	assert_int_equal(a.malformed, 3);
	args_destroy(&a);
	free(s);
}

static void test_args_ignore_unknown_values(void **state)
{
	static const struct {
		const char *s;
		bool v;
	} cases[] = {
		{"IgnoreUnknown=1", true},    {"IgnoreUnknown=true", true},
		{"IgnoreUnknown=True", true}, {"IgnoreUnknown=TRUE", true},
		{"IgnoreUnknown=0", false},   {"IgnoreUnknown=false", false},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cni_args a;

		assert_int_equal(args_parse(cases[i].s, &a), 0);
		assert_int_equal(a.ignore_unknown, cases[i].v);
		args_destroy(&a);
	}
}

static void test_args_too_long(void **state)
{
	char *s = xmalloc(ARGS_MAX_LEN + 2);
	struct cni_args a;

	memset(s, 'a', ARGS_MAX_LEN + 1);
	s[ARGS_MAX_LEN + 1] = '\0';
	assert_int_equal(args_parse(s, &a), -E2BIG);
	assert_null(a.pod_name);
	s[ARGS_MAX_LEN] = '\0';
	assert_int_equal(args_parse(s, &a), 0);
	args_destroy(&a);
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verbs),
		cmocka_unit_test(test_empty_means_unset),
		cmocka_unit_test(test_override),
		cmocka_unit_test(test_validate_reports_all),
		cmocka_unit_test(test_validate_bad_values),
		cmocka_unit_test(test_validate_per_verb),
		cmocka_unit_test(test_args_any_order),
		cmocka_unit_test(test_args_lenient),
		cmocka_unit_test(test_args_bad_values),
		cmocka_unit_test(test_args_ignore_unknown_values),
		cmocka_unit_test(test_args_too_long),
	};

	log_init("test", LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
