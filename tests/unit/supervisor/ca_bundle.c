/* ca_bundle_check: what passes for a PEM CA bundle; and ca_bundle_load's
 * bounds on a file (missing, empty, too big, not PEM). */
#include "supervisor/ca_bundle.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "tests/lib/test_ca.h"

static int check(const char *s, const char **why)
{
	*why = NULL;
	return ca_bundle_check(s, strlen(s), why);
}

static void test_good(void **state)
{
	char buf[4096];
	const char *why;

	(void)state;
	assert_int_equal(check(TEST_CA_PEM, &why), 1);
	/* Comments and other text around the blocks. */
	snprintf(buf, sizeof(buf), "# Root One\n%s\nsome text\n# Root Two\n%s", TEST_CA_PEM,
		 TEST_CA_PEM);
	assert_int_equal(check(buf, &why), 2);
}

static void test_crlf(void **state)
{
	char buf[4096];
	size_t o = 0;
	const char *why;

	(void)state;
	for (const char *p = TEST_CA_PEM; *p; p++) {
		if (*p == '\n')
			buf[o++] = '\r';
		buf[o++] = *p;
	}
	buf[o] = '\0';
	assert_int_equal(check(buf, &why), 1);
}

static void test_not_pem(void **state)
{
	const char *why;

	(void)state;
	assert_int_equal(check("hello\n", &why), -EBADMSG);
	assert_string_equal(why, "not PEM: no \"-----BEGIN CERTIFICATE-----\" block");
	assert_int_equal(
		check("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", &why),
		-EBADMSG);
	assert_string_equal(why, "not PEM: no \"-----BEGIN CERTIFICATE-----\" block");
}

static void test_broken_blocks(void **state)
{
	char buf[4096];
	const char *why;

	(void)state;
	/* Cut before its END line. */
	snprintf(buf, sizeof(buf), "%.*s", (int)(strlen(TEST_CA_PEM) - 30), TEST_CA_PEM);
	assert_int_equal(check(buf, &why), -EBADMSG);
	assert_string_equal(why, "a BEGIN CERTIFICATE block has no END line");
	/* A second BEGIN before the first's END. */
	snprintf(buf, sizeof(buf), "-----BEGIN CERTIFICATE-----\nMAA=\n%s", TEST_CA_PEM);
	assert_int_equal(check(buf, &why), -EBADMSG);
	assert_string_equal(why, "a BEGIN CERTIFICATE block is not closed before the next");
	/* Not base64. */
	assert_int_equal(
		check("-----BEGIN CERTIFICATE-----\nM!A=\n-----END CERTIFICATE-----\n", &why),
		-EBADMSG);
	assert_string_equal(why, "a certificate's base64 does not decode (or is over 16 KiB)");
	/* Base64 of text, not DER. */
	assert_int_equal(check("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n"
			       "-----END CERTIFICATE-----\n",
			       &why),
			 -EBADMSG);
	assert_string_equal(why, "a certificate is not one DER SEQUENCE");
	/* A block with nothing in it. */
	assert_int_equal(check("-----BEGIN CERTIFICATE-----\n\n-----END CERTIFICATE-----\n", &why),
			 -EBADMSG);
	assert_string_equal(why, "a certificate is not one DER SEQUENCE");
	/* The shortest block that passes: an empty SEQUENCE. */
	assert_int_equal(check("-----BEGIN CERTIFICATE-----MAA=-----END CERTIFICATE-----", &why),
			 1);
	/* A SEQUENCE whose length says more than is there (30 82 01 00 + 2). */
	assert_int_equal(check("-----BEGIN CERTIFICATE-----\nMIIBAAAA\n"
			       "-----END CERTIFICATE-----\n",
			       &why),
			 -EBADMSG);
	assert_string_equal(why, "a certificate is not one DER SEQUENCE");
	/* The second of two is bad: the whole is refused. */
	snprintf(buf, sizeof(buf),
		 "%s-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
		 TEST_CA_PEM);
	assert_int_equal(check(buf, &why), -EBADMSG);
}

static void test_der_len(void **state)
{
	const uint8_t short_form[] = {0x30, 0x02, 0x05, 0x00};
	const uint8_t long_form[] = {0x30, 0x81, 0x01, 0x00};
	const uint8_t not_seq[] = {0x31, 0x02, 0x05, 0x00};
	const uint8_t indefinite[] = {0x30, 0x80, 0x00, 0x00};

	(void)state;
	assert_int_equal(der_seq_len(short_form, sizeof(short_form)), 4);
	assert_int_equal(der_seq_len(long_form, sizeof(long_form)), 4);
	assert_int_equal(der_seq_len(not_seq, sizeof(not_seq)), 0);
	assert_int_equal(der_seq_len(indefinite, sizeof(indefinite)), 0);
	assert_int_equal(der_seq_len(short_form, 1), 0);
}

/* path gets exactly len bytes of data. */
static void write_file(const char *path, const char *data, size_t len)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	fclose(f);
}

static void test_load(void **state)
{
	char dir[] = "/tmp/tscni-ca-unit.XXXXXX", a[64], b[64], big[64], empty[64], cmd[128];
	const char *src;
	char *out = NULL, *blob;
	size_t len;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(a, sizeof(a), "%s/a.pem", dir);
	snprintf(b, sizeof(b), "%s/b.pem", dir);
	snprintf(big, sizeof(big), "%s/big.pem", dir);
	snprintf(empty, sizeof(empty), "%s/empty.pem", dir);
	/* No final newline: one is put between the two files. */
	write_file(a, TEST_CA_PEM, strlen(TEST_CA_PEM) - 1);
	write_file(b, TEST_CA_PEM, strlen(TEST_CA_PEM));
	write_file(empty, "", 0);
	blob = xmalloc(CA_BUNDLE_MAX_LEN + 1);
	memset(blob, '#', CA_BUNDLE_MAX_LEN + 1);
	write_file(big, blob, CA_BUNDLE_MAX_LEN + 1);

	assert_int_equal(ca_bundle_load(a, b, &out, &len, &src), 0);
	assert_string_equal(src, a);
	assert_int_equal(len, 2 * strlen(TEST_CA_PEM));
	assert_int_equal(ca_bundle_check(out, len, &src), 2);
	free(out);
	out = NULL;
	assert_int_equal(ca_bundle_load(empty, NULL, &out, &len, &src), -EINVAL);
	assert_int_equal(ca_bundle_load(big, NULL, &out, &len, &src), -EFBIG);
	assert_int_equal(ca_bundle_load(dir, NULL, &out, &len, &src), -EINVAL);
	snprintf(big, sizeof(big), "%s/missing.pem", dir);
	assert_int_equal(ca_bundle_load(big, NULL, &out, &len, &src), -ENOENT);
	assert_int_equal(ca_bundle_load(a, big, &out, &len, &src), -ENOENT);
	/* Exactly the limit with what comes before: a file of
	 * CA_BUNDLE_MAX_LEN - strlen(TEST_CA_PEM) + 1 after TEST_CA_PEM is over. */
	memcpy(blob, TEST_CA_PEM, strlen(TEST_CA_PEM));
	snprintf(big, sizeof(big), "%s/fill.pem", dir);
	write_file(big, blob, CA_BUNDLE_MAX_LEN - strlen(TEST_CA_PEM) + 1);
	assert_int_equal(ca_bundle_load(b, big, &out, &len, &src), -EFBIG);
	write_file(big, blob, CA_BUNDLE_MAX_LEN - strlen(TEST_CA_PEM));
	assert_int_equal(ca_bundle_load(b, big, &out, &len, &src), 0);
	assert_int_equal(len, CA_BUNDLE_MAX_LEN);
	free(out);
	free(blob);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),	cmocka_unit_test(test_crlf),
		cmocka_unit_test(test_not_pem), cmocka_unit_test(test_broken_blocks),
		cmocka_unit_test(test_der_len), cmocka_unit_test(test_load),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
