/* The CA bundle parsed once, in the zygote, before any fork.
 *
 * The supervisor hands the zygote the bundle it sends every worker (a sealed
 * memfd on the zygote's fd 4, `--ca-fd 4`). The zygote maps it read-only and
 * parses it into one X509_STORE; each worker, a fork, inherits both. A
 * worker whose Start carried the same bytes borrows the zygote's mapping as
 * its ca_pem (tls_store_pem), and its curl handles get the store through
 * CURLOPT_SSL_CTX_FUNCTION instead of a CAINFO blob that OpenSSL would parse
 * again into every TLS context (tls_store_curl). Nothing is copied: the
 * pages stay the zygote's, shared by every worker. A worker whose bundle
 * differs (a zygote from before the supervisor restarted with another
 * --ca-file) parses its own, as before. */
#pragma once

#include <curl/curl.h>
#include <stddef.h>

/* Zygote, single-threaded, before any fork: maps fd's bytes (a regular file
 * or memfd of 1 byte to CA_BUNDLE_MAX_LEN) and parses every certificate.
 * Returns 0, or a negative errno with *why set; on failure there is no
 * shared store and workers parse their own. fd stays open (the zygote
 * re-execs with it). */
int tls_store_load(int fd, const char **why);

/* The zygote's bundle when pem/len are the same bytes, else NULL. */
const char *tls_store_pem(const char *pem, size_t len);

/* Sets easy's trust anchors to pem/len: the shared store when pem is
 * tls_store_pem's, else a CAINFO blob (not copied: pem outlives easy). */
CURLcode tls_store_curl(CURL *easy, const char *pem, size_t len);

/* Zygote, before any fork: one TLS context made and freed, so that OpenSSL's
 * caches of its algorithms are filled once, in pages every worker shares. */
void tls_store_warm(void);
