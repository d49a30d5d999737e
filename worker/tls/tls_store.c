/* The CA bundle parsed once in the zygote (tls_store.h). */
#include "tls_store.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "validate.h"

static struct {
	const char *pem; /* the mapping, read-only */
	size_t len;
	X509_STORE *store;
} shared;

/* Every certificate of the bundle into store. Each one's extensions are
 * decoded now (X509_check_purpose fills the cache that verification would
 * otherwise write into the shared page of every worker). Returns how many. */
static int add_all(X509_STORE *store, const char *pem, size_t len)
{
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	X509 *x;
	int n = 0;

	if (!bio)
		return -ENOMEM;
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
		X509_check_purpose(x, -1, 0);
		if (X509_STORE_add_cert(store, x) == 1)
			n++;
		X509_free(x);
	}
	ERR_clear_error(); /* the end of the bundle reads as "no start line" */
	BIO_free(bio);
	return n;
}

int tls_store_load(int fd, const char **why)
{
	X509_STORE *store;
	struct stat st;
	void *map;
	int n;

	if (fstat(fd, &st) < 0) {
		*why = "cannot stat the CA fd";
		return -errno;
	}
	if (!S_ISREG(st.st_mode) || st.st_size < 1 || st.st_size > CA_BUNDLE_MAX_LEN) {
		*why = "the CA fd is not a file of 1 byte to CA_BUNDLE_MAX_LEN";
		return -EINVAL;
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		*why = "cannot map the CA fd";
		return -errno;
	}
	store = X509_STORE_new();
	if (!store) {
		munmap(map, (size_t)st.st_size);
		*why = "X509_STORE_new";
		return -ENOMEM;
	}
	n = add_all(store, map, (size_t)st.st_size);
	if (n <= 0) {
		X509_STORE_free(store);
		munmap(map, (size_t)st.st_size);
		*why = "no certificate in the CA bundle";
		return n < 0 ? n : -EINVAL;
	}
	/* Sorted now, not by the first lookup of each worker (which would
	 * write the shared stack). */
	sk_X509_OBJECT_sort(X509_STORE_get0_objects(store));
	shared.pem = map;
	shared.len = (size_t)st.st_size;
	shared.store = store;
	return 0;
}

const char *tls_store_pem(const char *pem, size_t len)
{
	if (!shared.store || !pem || len != shared.len || memcmp(pem, shared.pem, len))
		return NULL;
	return shared.pem;
}

/* CURLOPT_SSL_CTX_FUNCTION: the shared store replaces the context's own
 * (empty: no CAINFO, no CAPATH), one more reference, nothing parsed. */
static CURLcode set_store(CURL *easy, void *ssl_ctx, void *arg)
{
	(void)easy;
	(void)arg;
	SSL_CTX_set1_cert_store(ssl_ctx, shared.store);
	return CURLE_OK;
}

CURLcode tls_store_curl(CURL *easy, const char *pem, size_t len)
{
	struct curl_blob blob = {.data = (void *)pem, .len = len, .flags = CURL_BLOB_NOCOPY};

	if (shared.store && pem == shared.pem && len == shared.len) {
		CURLcode rc = curl_easy_setopt(easy, CURLOPT_SSL_CTX_FUNCTION, set_store);

		return rc ? rc : curl_easy_setopt(easy, CURLOPT_SSL_CTX_DATA, NULL);
	}
	return curl_easy_setopt(easy, CURLOPT_CAINFO_BLOB, &blob);
}

/* OpenSSL fetches and caches the ciphers, digests and signature algorithms
 * of its default provider at the first SSL_CTX_new. Done here, the cache is
 * the zygote's pages, shared by every worker; done in each worker's first
 * TLS connection, it was ~56 KiB of private heap per worker (the CPU it
 * saves was within the noise of add_latency.sh). The context (no secret: no key, no session) is
 * freed at once. OpenSSL's random generator reseeds in each worker: it
 * compares getpid() with the pid it was seeded in. */
void tls_store_warm(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	SSL_CTX_free(ctx);
	ERR_clear_error();
}
