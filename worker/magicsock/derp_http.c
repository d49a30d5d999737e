/* The HTTP/1.1 exchange that turns a TCP or TLS connection into a DERP
 * connection: GET /derp with "Upgrade: DERP", answered by "101 Switching
 * Protocols" after which both sides speak DERP frames (derp.h).
 *
 * The request is byte for byte what upstream's derphttp client (Go's
 * net/http writer) sends, so a server or middlebox cannot tell us apart: Host,
 * the Go User-Agent, then the headers in Go's sorted order. With the fast
 * start the request carries "Derp-Fast-Start: 1": the server then writes no
 * HTTP answer at all, and the first bytes back are its ServerKey frame. */
#include "derp.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

enum { HOST_MAX = 300 };

static bool valid_host(const char *host)
{
	size_t n = strnlen(host, HOST_MAX + 1);

	if (n == 0 || n > HOST_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)host[i];

		if (ch <= 0x20 || ch >= 0x7f)
			return false;
	}
	return true;
}

ssize_t derp_http_request(char *buf, size_t cap, const char *host, bool fast_start)
{
	int n;

	if (!valid_host(host))
		return -EINVAL;
	n = snprintf(buf, cap,
		     "GET /derp HTTP/1.1\r\n"
		     "Host: %s\r\n"
		     "User-Agent: Go-http-client/1.1\r\n"
		     "Connection: Upgrade\r\n"
		     "%s"
		     "Upgrade: DERP\r\n"
		     "\r\n",
		     host, fast_start ? "Derp-Fast-Start: 1\r\n" : "");
	if (n < 0 || (size_t)n >= cap)
		return -ENAMETOOLONG;
	return n;
}

/* Whether [s, s+n) equals t, ignoring case. */
static bool span_is(const char *s, size_t n, const char *t)
{
	return n == strlen(t) && strncasecmp(s, t, n) == 0;
}

/* "HTTP/1.x DDD[ reason]" without its CRLF. */
static int parse_status(const char *s, size_t n, int *status)
{
	if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1') || s[8] != ' ')
		return -EBADMSG;
	for (int i = 9; i < 12; i++)
		if (s[i] < '0' || s[i] > '9')
			return -EBADMSG;
	if (n > 12 && s[12] != ' ')
		return -EBADMSG;
	*status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
	return *status >= 100 ? 0 : -EBADMSG;
}

/* One header the reply reports; name and value are trimmed spans. */
static int reply_header(struct derp_http_reply *r, const char *name, size_t nlen, const char *v,
			size_t vlen, const char **why)
{
	if (span_is(name, nlen, "Upgrade")) {
		r->upgrade_derp = span_is(v, vlen, "DERP");
	} else if (span_is(name, nlen, "Connection")) {
		/* Upstream's server writes exactly "Connection: Upgrade". */
		r->connection_upgrade = span_is(v, vlen, "Upgrade");
	} else if (span_is(name, nlen, "Derp-Version")) {
		unsigned int ver = 0;

		if (vlen == 0 || vlen > 3) {
			*why = "bad Derp-Version header";
			return -EBADMSG;
		}
		for (size_t i = 0; i < vlen; i++) {
			if (v[i] < '0' || v[i] > '9') {
				*why = "bad Derp-Version header";
				return -EBADMSG;
			}
			ver = ver * 10 + (unsigned int)(v[i] - '0');
		}
		r->has_version = true;
		r->version = ver;
	} else if (span_is(name, nlen, "Derp-Public-Key")) {
		size_t got = 0;

		if (vlen != 2 * DERP_KEY_LEN ||
		    sodium_hex2bin(r->public_key, DERP_KEY_LEN, v, vlen, NULL, &got, NULL) != 0 ||
		    got != DERP_KEY_LEN) {
			*why = "bad Derp-Public-Key header";
			return -EBADMSG;
		}
		r->has_public_key = true;
	}
	return 0;
}

/* One "Name: value" line without its CRLF. */
static int parse_header_line(struct derp_http_reply *r, const char *s, size_t n, const char **why)
{
	const char *colon = memchr(s, ':', n);
	const char *v, *ve = s + n;

	if (!colon || colon == s) {
		*why = "malformed HTTP header line";
		return -EBADMSG;
	}
	for (const char *p = s; p < colon; p++) {
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
			*why = "malformed HTTP header name";
			return -EBADMSG;
		}
	}
	for (v = colon + 1; v < ve && (*v == ' ' || *v == '\t'); v++)
		;
	while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
		ve--;
	return reply_header(r, s, (size_t)(colon - s), v, (size_t)(ve - v), why);
}

ssize_t derp_http_parse_reply(const char *buf, size_t len, struct derp_http_reply *r,
			      const char **why)
{
	size_t scan = len < DERP_HTTP_MAX_HEAD ? len : DERP_HTTP_MAX_HEAD, end = 0, pos, eol;
	int ret;

	*r = (struct derp_http_reply){0};
	for (size_t i = 3; i < scan; i++) {
		if (buf[i - 3] == '\r' && buf[i - 2] == '\n' && buf[i - 1] == '\r' &&
		    buf[i] == '\n') {
			end = i + 1;
			break;
		}
	}
	if (!end) {
		if (len >= DERP_HTTP_MAX_HEAD) {
			*why = "DERP upgrade answer head too large";
			return -EMSGSIZE;
		}
		return 0;
	}
	/* Every line ends in CRLF; the head ends in an empty line. */
	for (pos = 0; pos < end - 2; pos = eol + 2) {
		const char *nl = memchr(buf + pos, '\n', end - pos);

		eol = (size_t)(nl - buf) - 1;
		if (nl == buf + pos || buf[eol] != '\r') {
			*why = "malformed HTTP line";
			return -EBADMSG;
		}
		if (pos == 0) {
			if (parse_status(buf, eol, &r->status) < 0) {
				*why = "malformed HTTP status line";
				return -EBADMSG;
			}
			continue;
		}
		ret = parse_header_line(r, buf + pos, eol - pos, why);
		if (ret < 0)
			return ret;
	}
	if (r->status != 101) {
		*why = "DERP server refused the upgrade";
		return -ECONNREFUSED;
	}
	return (ssize_t)end;
}
