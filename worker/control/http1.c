/* The HTTP/1.1 that control speaks before Noise: the head of the answer to
 * GET /key and to the ts2021 upgrade, and the /key body. Both come from the
 * network, so every length is bounded (CLIENT_HTTP_MAX_HEAD,
 * CLIENT_KEY_MAX_BODY); fuzz/fuzz_control_http.c drives both parsers. */
#include "client_internal.h"

#include <ctype.h>
#include <errno.h>
#include <strings.h>

#include <jansson.h>
#include <sodium.h>

static bool token_eq(const char *a, size_t alen, const char *b)
{
	return alen == strlen(b) && !strncasecmp(a, b, alen);
}

/* Whether the comma-separated header value v (vlen) holds token t. */
static bool value_has_token(const char *v, size_t vlen, const char *t)
{
	size_t i = 0;

	while (i < vlen) {
		size_t s, e;

		while (i < vlen && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		s = i;
		while (i < vlen && v[i] != ',')
			i++;
		e = i;
		while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (e > s && token_eq(v + s, e - s, t))
			return true;
	}
	return false;
}

ssize_t client_http_parse_head(const char *buf, size_t len, struct client_http_head *h,
			       const char **why)
{
	const char *end = NULL, *p, *line_end;
	size_t i, scan = len < CLIENT_HTTP_MAX_HEAD ? len : CLIENT_HTTP_MAX_HEAD;
	unsigned long status;

	*h = (struct client_http_head){0};
	for (i = 3; i < scan; i++) {
		if (buf[i - 3] == '\r' && buf[i - 2] == '\n' && buf[i - 1] == '\r' &&
		    buf[i] == '\n') {
			end = buf + i + 1;
			break;
		}
	}
	if (!end) {
		if (len >= CLIENT_HTTP_MAX_HEAD) {
			*why = "HTTP response head larger than 16 KiB";
			return -EMSGSIZE;
		}
		return 0;
	}
	/* Status line: HTTP/1.x SP 3DIGIT [SP reason] CRLF */
	if (end - buf < 14 || memcmp(buf, "HTTP/1.", 7) || (buf[7] != '0' && buf[7] != '1') ||
	    buf[8] != ' ' || !isdigit((unsigned char)buf[9]) || !isdigit((unsigned char)buf[10]) ||
	    !isdigit((unsigned char)buf[11]) || (buf[12] != ' ' && buf[12] != '\r')) {
		*why = "malformed HTTP status line";
		return -EBADMSG;
	}
	status = (unsigned long)(buf[9] - '0') * 100 + (unsigned long)(buf[10] - '0') * 10 +
		 (unsigned long)(buf[11] - '0');
	if (status < 100) {
		*why = "malformed HTTP status line";
		return -EBADMSG;
	}
	h->status = (int)status;
	p = memchr(buf, '\n', (size_t)(end - buf));
	if (!p || p == buf || p[-1] != '\r') {
		*why = "malformed HTTP status line";
		return -EBADMSG;
	}
	p++;
	for (; p < end - 2; p = line_end + 1) {
		const char *colon, *v, *ve;

		line_end = memchr(p, '\n', (size_t)(end - p));
		if (!line_end || line_end == p || line_end[-1] != '\r') {
			*why = "malformed HTTP header line";
			return -EBADMSG;
		}
		colon = memchr(p, ':', (size_t)(line_end - p));
		if (!colon || colon == p) {
			*why = "malformed HTTP header line";
			return -EBADMSG;
		}
		for (v = p; v < colon; v++) {
			if (*v == ' ' || *v == '\t' || (unsigned char)*v < 0x21 ||
			    (unsigned char)*v > 0x7e) {
				*why = "malformed HTTP header name";
				return -EBADMSG;
			}
		}
		v = colon + 1;
		ve = line_end - 1;
		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		if (token_eq(p, (size_t)(colon - p), "Content-Length")) {
			uint64_t n = 0;
			const char *d;

			if (v == ve || ve - v > 19) {
				*why = "bad Content-Length";
				return -EBADMSG;
			}
			for (d = v; d < ve; d++) {
				if (!isdigit((unsigned char)*d)) {
					*why = "bad Content-Length";
					return -EBADMSG;
				}
				n = n * 10 + (uint64_t)(*d - '0');
			}
			if (h->has_length && h->content_length != n) {
				*why = "conflicting Content-Length headers";
				return -EBADMSG;
			}
			h->has_length = true;
			h->content_length = n;
		} else if (token_eq(p, (size_t)(colon - p), "Transfer-Encoding")) {
			if (value_has_token(v, (size_t)(ve - v), "chunked"))
				h->chunked = true;
		} else if (token_eq(p, (size_t)(colon - p), "Upgrade")) {
			if (token_eq(v, (size_t)(ve - v), CLIENT_UPGRADE_PROTO))
				h->upgrade_ts2021 = true;
		} else if (token_eq(p, (size_t)(colon - p), "Connection")) {
			if (value_has_token(v, (size_t)(ve - v), "upgrade"))
				h->connection_upgrade = true;
		}
	}
	return end - buf;
}

int client_parse_key(const char *body, size_t len, uint8_t pub[static KEY_LEN], const char **why)
{
	json_error_t jerr;
	json_t *root, *v;
	size_t i;
	int ret = -EBADMSG;

	memset(pub, 0, KEY_LEN);
	if (len > CLIENT_KEY_MAX_BODY) {
		*why = "/key answer larger than 64 KiB";
		return -EBADMSG;
	}
	for (i = 0; i < len && isspace((unsigned char)body[i]); i++)
		;
	if (i < len && isxdigit((unsigned char)body[i])) {
		*why = "/key answered a bare key: a pre-Noise control server is not supported";
		return -EBADMSG;
	}
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root || !json_is_object(root)) {
		*why = "/key answer is not a JSON object";
		goto out;
	}
	v = json_object_get(root, "publicKey");
	if (!json_is_string(v)) {
		*why = "/key answer has no publicKey string";
		goto out;
	}
	if (keys_from_text("mkey", json_string_value(v), pub) < 0) {
		*why = "/key publicKey is not mkey:<64 hex>";
		goto out;
	}
	if (sodium_is_zero(pub, KEY_LEN)) {
		*why = "/key publicKey is the zero key";
		goto out;
	}
	ret = 0;
out:
	json_decref(root);
	return ret;
}
