/* Unit tests for cni/conf.c: the request configuration. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cni/conf.c"

static int parse(const char *text, enum cni_verb verb, const char *ifname, struct conf *c,
		 struct cni_error *err)
{
	*err = (struct cni_error){0};
	return conf_parse(text, strlen(text), verb, ifname, c, err);
}

/* Parses text for ADD and expects failure with code. */
static void expect_code(const char *text, unsigned int code)
{
	struct cni_error err;
	struct conf c;

	if (parse(text, CNI_VERB_ADD, "eth0", &c, &err) == 0) {
		conf_destroy(&c);
		fail_msg("accepted: %s", text);
	}
	if (err.code != code)
		fail_msg("code %u (%s: %s), want %u, for %s", err.code, err.msg, err.details, code,
			 text);
	assert_true(err.msg[0] != '\0');
	assert_null(c.root);
}

static void test_defaults(void **state)
{
	struct cni_error err;
	struct conf c;

	assert_int_equal(
		parse("{\"cniVersion\":\"1.1.0\",\"name\":\"n1\",\"type\":\"tailscale-cni\"}",
		      CNI_VERB_ADD, "eth0", &c, &err),
		0);
	assert_int_equal(c.version, CNI_V110);
	assert_string_equal(c.cni_version, "1.1.0");
	assert_string_equal(c.name, "n1");
	assert_string_equal(c.socket_path, "/run/tailscale-cni/cni.sock");
	assert_string_equal(c.state_dir, "/var/lib/tailscale-cni");
	assert_string_equal(c.interface_name, "ts0");
	assert_null(c.log_file);
	assert_int_equal(c.add_timeout_ms, 20000);
	assert_int_equal(c.del_timeout_ms, 5000);
	assert_int_equal(c.check_timeout_ms, 5000);
	assert_int_equal(c.status_timeout_ms, 1000);
	assert_int_equal(c.gc_timeout_ms, 25000);
	assert_int_equal(c.sync_timeout_ms, 3000);
	assert_false(c.fail_open);
	assert_true(c.report_ips);
	assert_false(c.select_annotation);
	assert_true(c.allow_overlap);
	assert_null(c.prev_result);
	assert_null(c.annotations);
	assert_true(conf_pod_selected(&c));
	conf_destroy(&c);
}

static void test_every_key(void **state)
{
	static const char text[] =
		"{\"cniVersion\":\"0.3.1\",\"name\":\"net.a_b-c\",\"type\":\"tailscale-cni\","
		"\"socketPath\":\"/tmp/x/cni.sock\",\"stateDir\":\"/tmp/state\","
		"\"interfaceName\":\"tail0\",\"addTimeoutMs\":30000,\"delTimeoutMs\":7000,"
		"\"checkTimeoutMs\":4000,\"statusTimeoutMs\":500,\"gcTimeoutMs\":20000,"
		"\"failurePolicy\":\"ignore\",\"reportIPs\":false,\"syncTimeout\":\"1500ms\","
		"\"selection\":\"annotation\",\"logLevel\":\"debug\",\"logFile\":\"/tmp/p.log\","
		"\"allowOverlap\":false,\"foo\":{\"bar\":1},\"capabilities\":{\"x\":true},"
		"\"args\":{\"cni\":{}}}";
	struct cni_error err;
	struct conf c;

	assert_int_equal(parse(text, CNI_VERB_ADD, "eth0", &c, &err), 0);
	assert_int_equal(c.version, CNI_V031);
	assert_string_equal(c.name, "net.a_b-c");
	assert_string_equal(c.socket_path, "/tmp/x/cni.sock");
	assert_string_equal(c.state_dir, "/tmp/state");
	assert_string_equal(c.interface_name, "tail0");
	assert_string_equal(c.log_file, "/tmp/p.log");
	assert_int_equal(c.log_level, LOG_DEBUG);
	assert_int_equal(c.add_timeout_ms, 30000);
	assert_int_equal(c.del_timeout_ms, 7000);
	assert_int_equal(c.check_timeout_ms, 4000);
	assert_int_equal(c.status_timeout_ms, 500);
	assert_int_equal(c.gc_timeout_ms, 20000);
	assert_int_equal(c.sync_timeout_ms, 1500);
	assert_true(c.fail_open);
	assert_false(c.report_ips);
	assert_true(c.select_annotation);
	assert_false(c.allow_overlap);
	conf_destroy(&c);
}

static void test_versions(void **state)
{
	static const char *const ok[] = {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};
	char text[128];

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct cni_error err;
		struct conf c;

		snprintf(text, sizeof(text), "{\"cniVersion\":\"%s\",\"name\":\"n\"}", ok[i]);
		assert_int_equal(parse(text, CNI_VERB_ADD, "eth0", &c, &err), 0);
		assert_int_equal(c.version, (enum cni_version)i);
		assert_string_equal(c.cni_version, ok[i]);
		conf_destroy(&c);
	}
	expect_code("{\"cniVersion\":\"9.9.9\",\"name\":\"n\"}", CNI_ERR_VERSION);
	expect_code("{\"cniVersion\":\"1.0\",\"name\":\"n\"}", CNI_ERR_VERSION);
	expect_code("{\"cniVersion\":\"1.0.0-rc1\",\"name\":\"n\"}", CNI_ERR_VERSION);
	expect_code("{\"cniVersion\":\"0.2.0\",\"name\":\"n\"}", CNI_ERR_VERSION);
	expect_code("{\"name\":\"n\"}", CNI_ERR_VERSION);
	expect_code("{\"cniVersion\":1,\"name\":\"n\"}", CNI_ERR_DECODE);
}

static void test_version_details_list_supported(void **state)
{
	static const char text[] = "{\"cniVersion\":\"9.9.9\",\"name\":\"n\"}";
	struct cni_error err;
	struct conf c;

	assert_int_equal(parse(text, CNI_VERB_ADD, "eth0", &c, &err), -EINVAL);
	assert_non_null(strstr(err.details, "0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"));
	assert_non_null(strstr(err.details, "9.9.9"));
	assert_null(c.cni_version);
}

static void test_verb_gates(void **state)
{
	struct cni_error err;
	struct conf c;

	assert_int_equal(parse("{\"cniVersion\":\"0.3.1\",\"name\":\"n\"}", CNI_VERB_CHECK, "eth0",
			       &c, &err),
			 -EINVAL);
	assert_int_equal(err.code, CNI_ERR_VERSION);
	/* The version was recognised: errors can carry it. */
	assert_string_equal(c.cni_version, "0.3.1");
	assert_int_equal(parse("{\"cniVersion\":\"0.4.0\",\"name\":\"n\"}", CNI_VERB_CHECK, "eth0",
			       &c, &err),
			 0);
	conf_destroy(&c);
	assert_int_equal(
		parse("{\"cniVersion\":\"1.0.0\",\"name\":\"n\"}", CNI_VERB_GC, NULL, &c, &err),
		-EINVAL);
	assert_int_equal(err.code, CNI_ERR_VERSION);
	assert_int_equal(
		parse("{\"cniVersion\":\"1.0.0\",\"name\":\"n\"}", CNI_VERB_STATUS, NULL, &c, &err),
		-EINVAL);
	assert_int_equal(err.code, CNI_ERR_VERSION);
	assert_int_equal(
		parse("{\"cniVersion\":\"1.1.0\",\"name\":\"n\"}", CNI_VERB_STATUS, NULL, &c, &err),
		0);
	conf_destroy(&c);
}

static void test_decode_errors(void **state)
{
	struct cni_error err;
	struct conf c;
	char *deep;

	assert_int_equal(conf_parse("", 0, CNI_VERB_ADD, "eth0", &c, &err), -EINVAL);
	assert_int_equal(err.code, CNI_ERR_DECODE);
	expect_code("{\"cniVersion\":\"1.0.0\",", CNI_ERR_DECODE);
	expect_code("[]", CNI_ERR_DECODE);
	expect_code("not json", CNI_ERR_DECODE);
	expect_code("{\"cniVersion\":\"1.0.0\",\"name\":\"n\"} trailing", CNI_ERR_DECODE);
	expect_code("{\"cniVersion\":\"1.0.0\",\"name\":\"a\\u0000b\"}", CNI_ERR_DECODE);
	expect_code("{\"cniVersion\":\"1.0.0\",\"name\":\"\xc3\x28\"}", CNI_ERR_DECODE);
	expect_code("{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"prevResult\":[]}", CNI_ERR_DECODE);
	/* A raw NUL inside the buffer. */
	assert_int_equal(conf_parse("{\"cniVersion\":\"1.0.0\",\0\"name\":\"n\"}", 34, CNI_VERB_ADD,
				    "eth0", &c, &err),
			 -EINVAL);
	assert_int_equal(err.code, CNI_ERR_DECODE);
	/* 65 levels of nesting. */
	deep = xmalloc(200);
	strcpy(deep, "{\"x\":");
	for (int i = 0; i < 64; i++)
		strcat(deep, "[");
	strcat(deep, "1");
	for (int i = 0; i < 64; i++)
		strcat(deep, "]");
	strcat(deep, "}");
	expect_code(deep, CNI_ERR_DECODE);
	free(deep);
}

static void test_escapes_decoded(void **state)
{
	struct cni_error err;
	struct conf c;

	/* Go escapes <, > and &, and may emit surrogate pairs. */
	assert_int_equal(
		parse("{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"runtimeConfig\":{"
		      "\"io.kubernetes.cri.pod-annotations\":{\"tailscale-cni.io/enabled\":"
		      "\"tr\\u0075e\",\"a\":\"\\u003c\\ud83d\\ude00\"}},"
		      "\"selection\":\"annotation\"}",
		      CNI_VERB_ADD, "eth0", &c, &err),
		0);
	assert_true(conf_pod_selected(&c));
	assert_string_equal(json_string_value(json_object_get(c.annotations, "a")),
			    "<\xf0\x9f\x98\x80");
	conf_destroy(&c);
}

static void test_duplicate_keys_last_wins(void **state)
{
	struct cni_error err;
	struct conf c;

	assert_int_equal(parse("{\"cniVersion\":\"1.0.0\",\"name\":\"a\",\"name\":\"b\"}",
			       CNI_VERB_ADD, "eth0", &c, &err),
			 0);
	assert_string_equal(c.name, "b");
	conf_destroy(&c);
}

static void test_name(void **state)
{
	expect_code("{\"cniVersion\":\"1.0.0\"}", CNI_ERR_CONFIG);
	expect_code("{\"cniVersion\":\"1.0.0\",\"name\":\"my net\"}", CNI_ERR_CONFIG);
	expect_code("{\"cniVersion\":\"1.0.0\",\"name\":\"-n\"}", CNI_ERR_CONFIG);
	expect_code("{\"cniVersion\":\"1.0.0\",\"name\":5}", CNI_ERR_CONFIG);
}

static void test_bad_values(void **state)
{
	static const char *const bad[] = {
		"\"socketPath\":\"relative.sock\"",
		"\"socketPath\":5",
		"\"socketPath\":\"/run/../etc/x.sock\"",
		"\"socketPath\":\"/"
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock\"",
		"\"stateDir\":\"var/lib\"",
		"\"logFile\":\"plugin.log\"",
		"\"interfaceName\":\"\"",
		"\"interfaceName\":\"abcdefghijklmnop\"",
		"\"interfaceName\":\"ts 0\"",
		"\"interfaceName\":\"eth0\"",
		"\"interfaceName\":7",
		"\"addTimeoutMs\":0",
		"\"addTimeoutMs\":60001",
		"\"addTimeoutMs\":1.5",
		"\"addTimeoutMs\":\"100\"",
		"\"delTimeoutMs\":-1",
		"\"checkTimeoutMs\":true",
		"\"statusTimeoutMs\":0",
		"\"gcTimeoutMs\":1e3",
		"\"failurePolicy\":\"open\"",
		"\"failurePolicy\":true",
		"\"reportIPs\":\"true\"",
		"\"reportIPs\":1",
		"\"allowOverlap\":\"yes\"",
		"\"selection\":\"some\"",
		"\"logLevel\":\"loud\"",
		"\"logLevel\":3",
		"\"syncTimeout\":\"3\"",
		"\"syncTimeout\":\"3h\"",
		"\"syncTimeout\":\"s\"",
		"\"syncTimeout\":\"1.s\"",
		"\"syncTimeout\":-1",
		"\"syncTimeout\":25",
		"\"syncTimeout\":true",
		"\"syncTimeout\":\"20s\"",
		"\"addTimeoutMs\":2000,\"syncTimeout\":2",
	};
	char text[512];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "{\"cniVersion\":\"1.0.0\",\"name\":\"n\",%s}",
			 bad[i]);
		expect_code(text, CNI_ERR_CONFIG);
	}
}

static void test_ipam_unsupported(void **state)
{
	static const char text[] = "{\"cniVersion\":\"1.0.0\",\"name\":\"n\","
				   "\"ipam\":{\"type\":\"host-local\"}}";
	struct cni_error err;
	struct conf c;

	assert_int_equal(parse(text, CNI_VERB_ADD, "eth0", &c, &err), -EINVAL);
	assert_int_equal(err.code, CNI_ERR_UNSUPPORTED_FIELD);
	assert_non_null(strstr(err.msg, "ipam"));
	assert_non_null(strstr(err.details, "host-local"));
}

static void test_sync_timeout_forms(void **state)
{
	static const struct {
		const char *v;
		unsigned int ms;
	} cases[] = {
		{"3", 3000},	    {"0.5", 500},  {"\"3s\"", 3000}, {"\"500ms\"", 500},
		{"\"1.5s\"", 1500}, {"\"0s\"", 0}, {"1", 1000},	     {"\"0.25s\"", 250},
	};
	char text[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cni_error err;
		struct conf c;

		snprintf(text, sizeof(text),
			 "{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"syncTimeout\":%s}",
			 cases[i].v);
		assert_int_equal(parse(text, CNI_VERB_ADD, "eth0", &c, &err), 0);
		assert_int_equal(c.sync_timeout_ms, cases[i].ms);
		conf_destroy(&c);
	}
}

static void test_sync_default_yields_to_short_add(void **state)
{
	struct cni_error err;
	struct conf c;

	assert_int_equal(parse("{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"addTimeoutMs\":2000}",
			       CNI_VERB_ADD, "eth0", &c, &err),
			 0);
	assert_int_equal(c.add_timeout_ms, 2000);
	assert_true(c.sync_timeout_ms < 2000);
	conf_destroy(&c);
}

static void test_null_means_default(void **state)
{
	struct cni_error err;
	struct conf c;

	assert_int_equal(parse("{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"socketPath\":null,"
			       "\"ipam\":null,\"prevResult\":null}",
			       CNI_VERB_ADD, "eth0", &c, &err),
			 0);
	assert_string_equal(c.socket_path, CONF_DEFAULT_SOCKET);
	assert_null(c.prev_result);
	conf_destroy(&c);
}

/* Opt-in under selection "annotation", opt-out under "all" (only the string
 * "false" opts out; anything else leaves the pod selected). */
static void test_selection(void **state)
{
	static const struct {
		const char *rc;
		bool opt_in, all;
	} cases[] = {
		{"", false, true},
		{",\"runtimeConfig\":{}", false, true},
		{",\"runtimeConfig\":[]", false, true},
		{",\"runtimeConfig\":{\"io.kubernetes.cri.pod-annotations\":{}}", false, true},
		{",\"runtimeConfig\":{\"io.kubernetes.cri.pod-annotations\":"
		 "{\"tailscale-cni.io/enabled\":\"false\"}}",
		 false, false},
		{",\"runtimeConfig\":{\"io.kubernetes.cri.pod-annotations\":"
		 "{\"tailscale-cni.io/enabled\":false}}",
		 false, true},
		{",\"runtimeConfig\":{\"io.kubernetes.cri.pod-annotations\":"
		 "{\"tailscale-cni.io/enabled\":\"False\"}}",
		 false, true},
		{",\"runtimeConfig\":{\"io.kubernetes.cri.pod-annotations\":"
		 "{\"tailscale-cni.io/enabled\":true}}",
		 false, true},
		{",\"runtimeConfig\":{\"io.kubernetes.cri.pod-annotations\":"
		 "{\"tailscale-cni.io/enabled\":\"true\"}}",
		 true, true},
	};
	char text[512];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (int all = 0; all < 2; all++) {
			struct cni_error err;
			struct conf c;

			snprintf(text, sizeof(text),
				 "{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"selection\":\"%s\"%s}",
				 all ? "all" : "annotation", cases[i].rc);
			assert_int_equal(parse(text, CNI_VERB_ADD, "eth0", &c, &err), 0);
			print_message("case %zu, selection %s\n", i, all ? "all" : "annotation");
			assert_int_equal(conf_pod_selected(&c),
					 all ? cases[i].all : cases[i].opt_in);
			conf_destroy(&c);
		}
	}
}

static void test_gc_list(void **state)
{
	struct cni_error err;
	struct conf c;

	assert_int_equal(
		parse("{\"cniVersion\":\"1.1.0\",\"name\":\"n\"}", CNI_VERB_GC, NULL, &c, &err), 0);
	assert_null(c.gc_attachments);
	conf_destroy(&c);

	assert_int_equal(parse("{\"cniVersion\":\"1.1.0\",\"name\":\"n\",\"cni.dev/attachments\":"
			       "[{\"containerID\":\"A\",\"ifname\":\"eth0\"}]}",
			       CNI_VERB_GC, NULL, &c, &err),
			 0);
	assert_int_equal(json_array_size(c.gc_attachments), 1);
	conf_destroy(&c);

	/* Both keys: the spec's name wins. */
	assert_int_equal(parse("{\"cniVersion\":\"1.1.0\",\"name\":\"n\",\"cni.dev/attachments\":"
			       "[],\"cni.dev/valid-attachments\":[{\"containerID\":\"A\","
			       "\"ifname\":\"eth0\"},{\"containerID\":\"B\",\"ifname\":\"eth1\"}]}",
			       CNI_VERB_GC, NULL, &c, &err),
			 0);
	assert_int_equal(json_array_size(c.gc_attachments), 2);
	conf_destroy(&c);

	assert_int_equal(parse("{\"cniVersion\":\"1.1.0\",\"name\":\"n\","
			       "\"cni.dev/valid-attachments\":[]}",
			       CNI_VERB_GC, NULL, &c, &err),
			 0);
	assert_non_null(c.gc_attachments);
	assert_int_equal(json_array_size(c.gc_attachments), 0);
	conf_destroy(&c);

	assert_int_equal(parse("{\"cniVersion\":\"1.1.0\",\"name\":\"n\","
			       "\"cni.dev/valid-attachments\":[{\"containerID\":\"A\"}]}",
			       CNI_VERB_GC, NULL, &c, &err),
			 -EINVAL);
	assert_int_equal(err.code, CNI_ERR_DECODE);
	assert_int_equal(parse("{\"cniVersion\":\"1.1.0\",\"name\":\"n\","
			       "\"cni.dev/valid-attachments\":{}}",
			       CNI_VERB_GC, NULL, &c, &err),
			 -EINVAL);
	assert_int_equal(err.code, CNI_ERR_DECODE);
}

static void test_peek_version(void **state)
{
	static const char a[] = "{\"cniVersion\":\"0.4.0\",\"name\":\"bad name\"}";
	static const char b[] = "{\"cniVersion\":\"2.0.0\"}";
	static const char d[] = "{\"cniVersion\":";

	assert_string_equal(conf_peek_version(a, strlen(a)), "0.4.0");
	assert_null(conf_peek_version(b, strlen(b)));
	assert_null(conf_peek_version(d, strlen(d)));
	assert_null(conf_peek_version("", 0));
}

static void test_large_annotations(void **state)
{
	/* Conformance 16: a 1 MiB config with 256 KiB of annotations parses. */
	size_t cap = 1300 * 1024, off = 0;
	char *text = xmalloc(cap);
	struct cni_error err;
	struct conf c;

	off += (size_t)snprintf(text + off, cap - off,
				"{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"runtimeConfig\":{"
				"\"io.kubernetes.cri.pod-annotations\":{");
	for (int i = 0; i < 4096; i++)
		off += (size_t)snprintf(text + off, cap - off, "%s\"k%d\":\"%060d\"", i ? "," : "",
					i, i);
	off += (size_t)snprintf(text + off, cap - off, "}},\"pad\":\"");
	while (off < 1024 * 1024)
		text[off++] = 'x';
	off += (size_t)snprintf(text + off, cap - off, "\"}");
	assert_int_equal(conf_parse(text, off, CNI_VERB_ADD, "eth0", &c, &err), 0);
	assert_int_equal(json_object_size(c.annotations), 4096);
	conf_destroy(&c);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_every_key),
		cmocka_unit_test(test_versions),
		cmocka_unit_test(test_version_details_list_supported),
		cmocka_unit_test(test_verb_gates),
		cmocka_unit_test(test_decode_errors),
		cmocka_unit_test(test_escapes_decoded),
		cmocka_unit_test(test_duplicate_keys_last_wins),
		cmocka_unit_test(test_name),
		cmocka_unit_test(test_bad_values),
		cmocka_unit_test(test_ipam_unsupported),
		cmocka_unit_test(test_sync_timeout_forms),
		cmocka_unit_test(test_sync_default_yields_to_short_add),
		cmocka_unit_test(test_null_means_default),
		cmocka_unit_test(test_selection),
		cmocka_unit_test(test_gc_list),
		cmocka_unit_test(test_peek_version),
		cmocka_unit_test(test_large_annotations),
	};

	log_init("test", LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
