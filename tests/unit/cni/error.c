/* Unit tests for cni/error.c: the CNI error object. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cni/error.c"

static json_t *parse_line(const char *text, size_t len)
{
	json_error_t jerr;

	assert_true(len > 0);
	assert_int_equal(text[len - 1], '\n');
	assert_int_equal(strlen(text), len);
	return json_loadb(text, len - 1, 0, &jerr);
}

static void test_format_fields(void **state)
{
	struct cni_error e;
	size_t len;
	char *text;
	json_t *j;

	assert_int_equal(error_set(&e, CNI_ERR_TRY_AGAIN, "tailscale-cni supervisor unavailable",
				   "connect %s: %s", "/run/x.sock", "No such file"),
			 -EINVAL);
	text = error_format(&e, "0.4.0", &len);
	j = parse_line(text, len);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "cniVersion")), "0.4.0");
	assert_int_equal(json_integer_value(json_object_get(j, "code")), 11);
	assert_true(json_is_integer(json_object_get(j, "code")));
	assert_string_equal(json_string_value(json_object_get(j, "msg")),
			    "tailscale-cni supervisor unavailable");
	assert_string_equal(json_string_value(json_object_get(j, "details")),
			    "connect /run/x.sock: No such file");
	assert_int_equal(json_object_size(j), 4);
	json_decref(j);
	free(text);
}

static void test_format_no_details_default_version(void **state)
{
	struct cni_error e;
	size_t len;
	char *text;
	json_t *j;

	error_set(&e, CNI_ERR_CONFIG, "invalid network configuration", NULL);
	text = error_format(&e, NULL, &len);
	j = parse_line(text, len);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "cniVersion")), "1.1.0");
	assert_null(json_object_get(j, "details"));
	assert_int_equal(json_integer_value(json_object_get(j, "code")), 7);
	json_decref(j);
	free(text);
}

static void test_format_bad_utf8_still_parses(void **state)
{
	struct cni_error e;
	size_t len;
	char *text;
	json_t *j;

	error_set(&e, 102, "refused", "%s", "quota \xff\xfe exceeded \"x\"");
	text = error_format(&e, "1.0.0", &len);
	j = parse_line(text, len);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "details")),
			    "quota ?? exceeded \"x\"");
	json_decref(j);
	free(text);
}

static void test_set_truncates(void **state)
{
	struct cni_error e;
	char big[5000];

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	error_set(&e, 999, big, "%s", big);
	assert_int_equal(strlen(e.msg), sizeof(e.msg) - 1);
	assert_int_equal(strlen(e.details), sizeof(e.details) - 1);
	assert_int_equal(e.code, 999);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format_fields),
		cmocka_unit_test(test_format_no_details_default_version),
		cmocka_unit_test(test_format_bad_utf8_still_parses),
		cmocka_unit_test(test_set_truncates),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
