/* tls_store: the bundle the zygote parses once; what it refuses, which
 * bundles a worker may borrow it for, and the store a TLS context gets. */
#include "worker/tls/tls_store.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/lib/test_ca.h"

/* A memfd holding s (len bytes). */
static int memfd_of(const char *s, size_t len)
{
	int fd = memfd_create("unit-ca", MFD_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, s, len), (ssize_t)len);
	return fd;
}

/* Refusals leave no store: a worker then parses its own bundle. */
static void test_refused(void **state)
{
	const char *why = NULL;
	int fd, p[2];

	(void)state;
	fd = memfd_of("", 0);
	assert_int_equal(tls_store_load(fd, &why), -EINVAL);
	assert_string_equal(why, "the CA fd is not a file of 1 byte to CA_BUNDLE_MAX_LEN");
	close(fd);
	fd = memfd_of("hello\n", 6);
	assert_int_equal(tls_store_load(fd, &why), -EINVAL);
	assert_string_equal(why, "no certificate in the CA bundle");
	close(fd);
	assert_int_equal(pipe(p), 0);
	assert_int_equal(tls_store_load(p[0], &why), -EINVAL);
	close(p[0]);
	close(p[1]);
	assert_int_equal(tls_store_load(-1, &why), -EBADF);
	assert_string_equal(why, "cannot stat the CA fd");
	assert_null(tls_store_pem(TEST_CA_PEM, strlen(TEST_CA_PEM)));
}

static void test_borrow(void **state)
{
	size_t len = strlen(TEST_CA_PEM);
	const char *why = NULL, *got;
	char *copy = strdup(TEST_CA_PEM);
	int fd = memfd_of(TEST_CA_PEM, len);

	(void)state;
	assert_int_equal(tls_store_load(fd, &why), 0);
	close(fd); /* the mapping stays */
	/* The same bytes: the zygote's mapping, not the caller's copy. */
	got = tls_store_pem(copy, len);
	assert_non_null(got);
	assert_ptr_not_equal(got, copy);
	assert_memory_equal(got, TEST_CA_PEM, len);
	/* Other bytes, another length, none: the worker keeps its own. */
	copy[100] ^= 1;
	assert_null(tls_store_pem(copy, len));
	copy[100] ^= 1;
	assert_null(tls_store_pem(copy, len - 1));
	assert_null(tls_store_pem(NULL, 0));
	free(copy);
}

/* The TLS context gets the one shared store: nothing parsed per context. */
static void test_context(void **state)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	(void)state;
	assert_non_null(ctx);
	assert_ptr_not_equal(SSL_CTX_get_cert_store(ctx), shared.store);
	assert_int_equal(set_store(NULL, ctx, NULL), CURLE_OK);
	assert_ptr_equal(SSL_CTX_get_cert_store(ctx), shared.store);
	assert_int_equal(sk_X509_OBJECT_num(X509_STORE_get0_objects(shared.store)), 1);
	SSL_CTX_free(ctx);
	/* The store outlives every context that held it. */
	assert_int_equal(sk_X509_OBJECT_num(X509_STORE_get0_objects(shared.store)), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_borrow),
		cmocka_unit_test(test_context),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
