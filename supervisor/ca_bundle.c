/* The CA bundle workers trust (ca_bundle.h). */
#include "ca_bundle.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <sodium.h>

#include "log.h"
#include "mem.h"
#include "validate.h"

static const char PEM_BEGIN[] = "-----BEGIN CERTIFICATE-----";
static const char PEM_END[] = "-----END CERTIFICATE-----";

enum {
	/* A certificate's DER: RSA 4096 with extensions is ~2 KB; a generous
	 * bound keeps the decode buffer on the stack. */
	CA_CERT_DER_MAX = 16 * 1024,
};

/* Where distributions keep the bundle (Go's crypto/x509 root_linux.go). */
static const char *const well_known[] = {
	"/etc/ssl/certs/ca-certificates.crt",		     /* Debian, Ubuntu, Alpine */
	"/etc/pki/tls/certs/ca-bundle.crt",		     /* Fedora, RHEL */
	"/etc/ssl/ca-bundle.pem",			     /* openSUSE */
	"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", /* CentOS, RHEL 7 */
	"/etc/ssl/cert.pem",				     /* Alpine, BSD */
};

static bool is_file(const char *path)
{
	struct stat st;

	return path && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

const char *ca_bundle_default_path(void)
{
#if LIBCURL_VERSION_NUM >= 0x075400
	static char curl_path[4096];
	CURL *easy = curl_easy_init();
	char *p = NULL;

	/* CURLINFO_CAINFO (7.84): the bundle a handle uses when told none. */
	if (easy && curl_easy_getinfo(easy, CURLINFO_CAINFO, &p) == CURLE_OK && p &&
	    strlen(p) < sizeof(curl_path) && is_file(p)) {
		memcpy(curl_path, p, strlen(p) + 1);
		curl_easy_cleanup(easy);
		return curl_path;
	}
	curl_easy_cleanup(easy);
#endif
	for (size_t i = 0; i < sizeof(well_known) / sizeof(well_known[0]); i++)
		if (is_file(well_known[i]))
			return well_known[i];
	return NULL;
}

/* The length a DER SEQUENCE header at der says it spans (header included),
 * or 0 if it is not one. */
static size_t der_seq_len(const uint8_t *der, size_t n)
{
	size_t len = 0, nb;

	if (n < 2 || der[0] != 0x30)
		return 0;
	if (!(der[1] & 0x80))
		return 2 + der[1];
	nb = der[1] & 0x7f;
	if (nb == 0 || nb > 3 || n < 2 + nb)
		return 0;
	for (size_t i = 0; i < nb; i++)
		len = len << 8 | der[2 + i];
	return 2 + nb + len;
}

int ca_bundle_check(const char *buf, size_t len, const char **why)
{
	static uint8_t der[CA_CERT_DER_MAX];
	const char *p = buf, *end = buf + len;
	int n = 0;

	for (;;) {
		const char *b = memmem(p, (size_t)(end - p), PEM_BEGIN, sizeof(PEM_BEGIN) - 1);
		const char *e;
		size_t der_len;

		if (!b)
			break;
		b += sizeof(PEM_BEGIN) - 1;
		e = memmem(b, (size_t)(end - b), PEM_END, sizeof(PEM_END) - 1);
		if (!e) {
			*why = "a BEGIN CERTIFICATE block has no END line";
			return -EBADMSG;
		}
		if (memmem(b, (size_t)(e - b), "-----", 5)) {
			*why = "a BEGIN CERTIFICATE block is not closed before the next";
			return -EBADMSG;
		}
		if (sodium_base642bin(der, sizeof(der), b, (size_t)(e - b), " \t\r\n", &der_len,
				      NULL, sodium_base64_VARIANT_ORIGINAL) != 0) {
			*why = "a certificate's base64 does not decode (or is over 16 KiB)";
			return -EBADMSG;
		}
		if (der_len == 0 || der_seq_len(der, der_len) != der_len) {
			*why = "a certificate is not one DER SEQUENCE";
			return -EBADMSG;
		}
		n++;
		p = e + sizeof(PEM_END) - 1;
	}
	if (n == 0) {
		*why = "not PEM: no \"-----BEGIN CERTIFICATE-----\" block";
		return -EBADMSG;
	}
	return n;
}

/* Appends the file at path to *buf (*len bytes so far, the whole bounded
 * by CA_BUNDLE_MAX_LEN), checked. what is the option for messages. */
static int read_one(const char *what, const char *path, char **buf, size_t *len)
{
	struct stat st;
	const char *why;
	size_t got = 0;
	int fd, ret;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		log_err_r(ret, "%s %s: cannot open", what, path);
		return ret;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		log_err("%s %s: not a regular file", what, path);
		ret = -EINVAL;
		goto out;
	}
	if (st.st_size == 0) {
		log_err("%s %s: empty", what, path);
		ret = -EINVAL;
		goto out;
	}
	if (st.st_size > CA_BUNDLE_MAX_LEN) {
		log_err("%s %s: %lld bytes, over the limit of %d bytes (1 MiB)", what, path,
			(long long)st.st_size, CA_BUNDLE_MAX_LEN);
		ret = -EFBIG;
		goto out;
	}
	if ((size_t)st.st_size > CA_BUNDLE_MAX_LEN - *len) {
		log_err("%s %s: %zu bytes with the certificates before it, over the limit of "
			"%d bytes (1 MiB)",
			what, path, *len + (size_t)st.st_size, CA_BUNDLE_MAX_LEN);
		ret = -EFBIG;
		goto out;
	}
	*buf = xrealloc(*buf, *len + (size_t)st.st_size + 2);
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, *buf + *len + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = n < 0 ? -errno : -EIO;
			log_err_r(ret, "%s %s: cannot read", what, path);
			goto out;
		}
		got += (size_t)n;
	}
	ret = ca_bundle_check(*buf + *len, got, &why);
	if (ret < 0) {
		log_err("%s %s: %s", what, path, why);
		goto out;
	}
	*len += got;
	if ((*buf)[*len - 1] != '\n' && *len < CA_BUNDLE_MAX_LEN)
		(*buf)[(*len)++] = '\n'; /* the next file's BEGIN on its own line */
	(*buf)[*len] = '\0';
	ret = 0;
out:
	close(fd);
	return ret;
}

int ca_bundle_load(const char *replace, const char *add, char **out, size_t *len, const char **src)
{
	const char *base = replace, *what = "--ca-file";
	char *buf = NULL;
	size_t n = 0;
	int ret;

	if (!base) {
		base = ca_bundle_default_path();
		what = "the system CA bundle";
		if (!base) {
			log_err("no system CA bundle (looked at libcurl's default and %s and "
				"others): give --ca-file",
				well_known[0]);
			return -ENOENT;
		}
	}
	ret = read_one(what, base, &buf, &n);
	if (ret == 0 && add)
		ret = read_one("--ca-file-add", add, &buf, &n);
	if (ret < 0) {
		free(buf);
		return ret;
	}
	*out = buf;
	*len = n;
	*src = base;
	return 0;
}
