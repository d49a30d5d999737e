/* The C tests' own CA certificate: a self-signed P-256 one (openssl req
 * -x509, CN=unit-ca), PEM. Public test data; one copy for the unit and
 * netns tests that need a parseable certificate. */
#ifndef TSCNI_TESTS_LIB_TEST_CA_H
#define TSCNI_TESTS_LIB_TEST_CA_H

static const char TEST_CA_PEM[] =
	"-----BEGIN CERTIFICATE-----\n"
	"MIIBeTCCAR+gAwIBAgIUKE/p212StSVQ4j7sqdXyT2nb+ugwCgYIKoZIzj0EAwIw\n"
	"EjEQMA4GA1UEAwwHdW5pdC1jYTAeFw0yNjEyMDcxMjM5NTBaFw0zNjEyMDQxMjM5\n"
	"NTBaMBIxEDAOBgNVBAMMB3VuaXQtY2EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC\n"
	"AATvHNWedG1LYqKqILR3bbcvsiVAqcKPhAdJRwkckbfRi3UYZjHXp2KfnGWRX6Eu\n"
	"IIFDmZYRlUESZeHGtEwh9730o1MwUTAdBgNVHQ4EFgQUpLz1SEwOKUq/r+2yuU0Y\n"
	"DpTN/3MwHwYDVR0jBBgwFoAUpLz1SEwOKUq/r+2yuU0YDpTN/3MwDwYDVR0TAQH/\n"
	"BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiEAnfqSxRCHIKlyeE06s1kbiY6NfQ68\n"
	"WcYbOWgEtbvbe38CIC698IWbFY7OJ3D+lW3zZ4jNNpwnZamt9uwvah2qqUyq\n"
	"-----END CERTIFICATE-----\n";

#endif
