/* hostname_make: "<cluster>-<namespace>-<pod>", [a-z0-9-], <= 63, and the
 * deterministic suffix for lossy, long or colliding names. */
#include "supervisor/hostname.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

static bool valid_label(const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > HOSTNAME_MAX || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (i = 0; i < n; i++) {
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return false;
		if (s[i] == '-' && i && s[i - 1] == '-')
			return false;
	}
	return true;
}

static void make(const char *c, const char *n, const char *p, bool force, char *out)
{
	const char *why = NULL;

	assert_int_equal(hostname_make(c, n, p, force, out, &why), 0);
	assert_true(valid_label(out));
}

static void test_plain(void **state)
{
	char out[HOSTNAME_MAX + 1];

	make("prod", "default", "web-0", false, out);
	assert_string_equal(out, "prod-default-web-0");
	/* Lower-casing alone loses nothing: no suffix. */
	make("Prod", "Default", "Web-0", false, out);
	assert_string_equal(out, "prod-default-web-0");
}

static void test_lossy_gets_suffix(void **state)
{
	char a[HOSTNAME_MAX + 1], b[HOSTNAME_MAX + 1];

	make("prod.eu", "default", "web_0", false, a);
	assert_int_equal(strncmp(a, "prod-eu-default-web-0-", 22), 0);
	assert_int_equal(strlen(a), 22 + HOSTNAME_SUFFIX_HEX);
	/* Another input mapping to the same text gets another suffix. */
	make("prod-eu", "default", "web.0", false, b);
	assert_int_equal(strncmp(b, "prod-eu-default-web-0-", 22), 0);
	assert_string_not_equal(a, b);
}

static void test_deterministic(void **state)
{
	char a[HOSTNAME_MAX + 1], b[HOSTNAME_MAX + 1];

	make("c", "ns", "pod_x", false, a);
	make("c", "ns", "pod_x", false, b);
	assert_string_equal(a, b);
}

static void test_long_truncated(void **state)
{
	char pod[300], out[HOSTNAME_MAX + 1], out2[HOSTNAME_MAX + 1];

	memset(pod, 'a', sizeof(pod) - 1);
	pod[sizeof(pod) - 1] = '\0';
	make("cluster", "namespace", pod, false, out);
	assert_int_equal(strlen(out), HOSTNAME_MAX);
	pod[0] = 'b';
	make("cluster", "namespace", pod, false, out2);
	assert_string_not_equal(out, out2); /* same prefix, different suffix */
	assert_memory_equal(out, "cluster-namespace-", 18);
}

static void test_exactly_63(void **state)
{
	char pod[64], out[HOSTNAME_MAX + 1];

	/* "c-n-" + 59 = 63: fits, no suffix. */
	memset(pod, 'p', 59);
	pod[59] = '\0';
	make("c", "n", pod, false, out);
	assert_int_equal(strlen(out), 63);
	assert_int_equal(strncmp(out, "c-n-ppp", 7), 0);
	assert_null(strchr(out + 4, '-'));
	/* One more: suffixed and cut. */
	pod[59] = 'p';
	pod[60] = '\0';
	make("c", "n", pod, false, out);
	assert_int_equal(strlen(out), 63);
	assert_non_null(strchr(out + 4, '-'));
}

static void test_ambiguous_split(void **state)
{
	char a[HOSTNAME_MAX + 1], b[HOSTNAME_MAX + 1];

	/* The same text without the suffix; a caller that sees both forces it. */
	make("c", "a-b", "d", false, a);
	make("c", "a", "b-d", false, b);
	assert_string_equal(a, b);
	make("c", "a-b", "d", true, a);
	make("c", "a", "b-d", true, b);
	assert_string_not_equal(a, b);
	assert_int_equal(strncmp(a, "c-a-b-d-", 8), 0);
}

static void test_dashes_and_empty(void **state)
{
	char out[HOSTNAME_MAX + 1];

	make("-c-", "--ns", "p--", false, out);
	assert_int_equal(strncmp(out, "c-ns-p-", 7), 0);
	make("___", "...", "!!!", false, out);
	assert_int_equal(strncmp(out, "pod-", 4), 0);
}

static void test_bad_input(void **state)
{
	char out[HOSTNAME_MAX + 1], big[HOSTNAME_MAX_INPUT + 2];
	const char *why = NULL;

	assert_int_equal(hostname_make(NULL, "n", "p", false, out, &why), -EINVAL);
	assert_string_equal(why, "cluster name is empty or too long");
	assert_int_equal(hostname_make("c", "", "p", false, out, &why), -EINVAL);
	assert_string_equal(why, "namespace is empty or too long");
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(hostname_make("c", "n", big, false, out, &why), -EINVAL);
	assert_string_equal(why, "pod name is empty or too long");
	assert_string_equal(out, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain),
		cmocka_unit_test(test_lossy_gets_suffix),
		cmocka_unit_test(test_deterministic),
		cmocka_unit_test(test_long_truncated),
		cmocka_unit_test(test_exactly_63),
		cmocka_unit_test(test_ambiguous_split),
		cmocka_unit_test(test_dashes_and_empty),
		cmocka_unit_test(test_bad_input),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
