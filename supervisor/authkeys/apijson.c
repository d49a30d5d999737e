/* Parsers of the Tailscale API's and Headscale's answers
 * (authkeys_internal.h). Bytes from the network: jansson with a length, no
 * duplicate keys, every string copied with a bound. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

#include "authkeys_internal.h"
#include "log.h"

enum apijson_limits {
	APIJSON_SECRET_MAX = 4096, /* a token or a key */
	APIJSON_ID_MAX = 128,
};

static json_t *load(const char *body, size_t len, const char **why)
{
	json_error_t e;
	json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &e);

	if (!j)
		*why = "not JSON";
	else if (!json_is_object(j)) {
		*why = "not a JSON object";
		json_decref(j);
		j = NULL;
	}
	return j;
}

static char *secret_dup(const char *s, size_t n)
{
	char *out = sodium_malloc(n + 1);

	if (out) {
		memcpy(out, s, n);
		out[n] = '\0';
	}
	return out;
}

/* A printable string without spaces or quotes, 1..max bytes. */
static bool token_like(const char *s, size_t n, size_t max)
{
	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] <= ' ' || s[i] > '~' || s[i] == '"' || s[i] == '\\')
			return false;
	return true;
}

int apijson_token(const char *body, size_t len, char **token, unsigned int *expires_in,
		  const char **why)
{
	json_t *j = load(body, len, why), *t, *e;
	int ret = -EBADMSG;

	*token = NULL;
	*expires_in = 0;
	if (!j)
		return -EBADMSG;
	t = json_object_get(j, "access_token");
	e = json_object_get(j, "expires_in");
	if (!json_is_string(t) ||
	    !token_like(json_string_value(t), json_string_length(t), APIJSON_SECRET_MAX)) {
		*why = "access_token missing or not a token";
		goto out;
	}
	if (!json_is_integer(e) || json_integer_value(e) < 1 ||
	    json_integer_value(e) > 366 * 24 * 3600) {
		*why = "expires_in missing or out of range";
		goto out;
	}
	*token = secret_dup(json_string_value(t), json_string_length(t));
	if (!*token) {
		ret = -ENOMEM;
		goto out;
	}
	*expires_in = (unsigned int)json_integer_value(e);
	ret = 0;
out:
	json_decref(j);
	return ret;
}

int apijson_key(const char *body, size_t len, bool headscale, char **key, const char **why)
{
	json_t *j = load(body, len, why), *o, *k;
	int ret = -EBADMSG;

	*key = NULL;
	if (!j)
		return -EBADMSG;
	o = headscale ? json_object_get(j, "preAuthKey") : j;
	k = json_is_object(o) ? json_object_get(o, "key") : NULL;
	if (!json_is_string(k) ||
	    !token_like(json_string_value(k), json_string_length(k), APIJSON_SECRET_MAX)) {
		*why = headscale ? "preAuthKey.key missing or not a key"
				 : "key missing or not a key";
		goto out;
	}
	*key = secret_dup(json_string_value(k), json_string_length(k));
	ret = *key ? 0 : -ENOMEM;
out:
	json_decref(j);
	return ret;
}

void apijson_error_text(const char *body, size_t len, char *out, size_t n)
{
	static const char *const fields[] = {"message", "error_description", "detail", "error",
					     "title"};
	const char *why;
	json_t *j;

	if (n)
		out[0] = '\0';
	j = load(body, len, &why);
	if (!j)
		return;
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		json_t *s = json_object_get(j, fields[i]);

		if (json_is_string(s) && json_string_length(s)) {
			log_escape(out, n, json_string_value(s), json_string_length(s));
			break;
		}
	}
	json_decref(j);
}

/* The device's id as text: Tailscale's nodeId (a string), Headscale's id
 * (a string of digits in protojson, a number accepted). */
static int id_of(json_t *d, bool headscale, char *id, size_t idlen)
{
	json_t *v = json_object_get(d, headscale ? "id" : "nodeId");

	if (json_is_integer(v) && headscale && json_integer_value(v) >= 0) {
		snprintf(id, idlen, "%lld", (long long)json_integer_value(v));
		return 0;
	}
	if (!json_is_string(v) || json_string_length(v) >= idlen ||
	    json_string_length(v) > APIJSON_ID_MAX)
		return -EBADMSG;
	/* The id goes into a URL path: letters, digits, '-', '_' only. */
	for (size_t i = 0; i < json_string_length(v); i++) {
		char ch = json_string_value(v)[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
			return -EBADMSG;
	}
	if (json_string_length(v) == 0)
		return -EBADMSG;
	memcpy(id, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

int apijson_find_device(const char *body, size_t len, bool headscale, const char *nodekey, char *id,
			size_t idlen, const char **why)
{
	json_t *j = load(body, len, why), *list, *d;
	size_t i;
	int ret = 0;

	if (idlen)
		id[0] = '\0';
	if (!j)
		return -EBADMSG;
	list = json_object_get(j, headscale ? "nodes" : "devices");
	if (!json_is_array(list)) {
		*why = headscale ? "nodes missing or not a list" : "devices missing or not a list";
		json_decref(j);
		return -EBADMSG;
	}
	json_array_foreach(list, i, d)
	{
		json_t *k = json_is_object(d) ? json_object_get(d, "nodeKey") : NULL;

		if (!json_is_string(k) || strcmp(json_string_value(k), nodekey) != 0)
			continue;
		if (id_of(d, headscale, id, idlen) < 0) {
			*why = "the device's id is missing or not an id";
			ret = -EBADMSG;
		} else {
			ret = 1;
		}
		break;
	}
	json_decref(j);
	return ret;
}

int apijson_device_nodekey(const char *body, size_t len, bool headscale, char *out, size_t n,
			   const char **why)
{
	json_t *j = load(body, len, why), *d, *k;
	int ret = -EBADMSG;

	if (n)
		out[0] = '\0';
	if (!j)
		return -EBADMSG;
	d = headscale ? json_object_get(j, "node") : j;
	k = json_is_object(d) ? json_object_get(d, "nodeKey") : NULL;
	if (!json_is_string(k) || json_string_length(k) >= n ||
	    !token_like(json_string_value(k), json_string_length(k), n - 1)) {
		*why = "nodeKey missing or not a key";
		goto out;
	}
	memcpy(out, json_string_value(k), json_string_length(k) + 1);
	ret = 0;
out:
	json_decref(j);
	return ret;
}

/* RFC 3339 as the APIs write it: 2006-01-02T15:04:05[.frac](Z|±hh:mm).
 * Go's zero time (year 1) reads as 0, "no expiry". */
static int rfc3339(const char *s, int64_t *out)
{
	int y, mo, d, h, mi, sec, n = 0, oh = 0, om = 0;
	struct tm tm = {0};
	const char *p;
	int64_t t;

	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || n != 19)
		return -EBADMSG;
	p = s + n;
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++)
			;
	if (*p == 'Z' && !p[1]) {
		/* UTC */
	} else if ((*p == '+' || *p == '-') && sscanf(p + 1, "%2d:%2d%n", &oh, &om, &n) == 2 &&
		   n == 5 && !p[6] && oh < 24 && om < 60) {
		if (*p == '-') {
			oh = -oh;
			om = -om;
		}
	} else {
		return -EBADMSG;
	}
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return -EBADMSG;
	if (y <= 1) {
		*out = 0;
		return 0;
	}
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	t = (int64_t)timegm(&tm) - (int64_t)oh * 3600 - (int64_t)om * 60;
	*out = t > 0 ? t : 1; /* before 1970: long expired, never "none" */
	return 0;
}

int apijson_device_expiry(const char *body, size_t len, bool headscale, int64_t *expiry,
			  const char **why)
{
	json_t *j = load(body, len, why), *d, *e;
	int ret = -EBADMSG;

	*expiry = 0;
	if (!j)
		return -EBADMSG;
	d = headscale ? json_object_get(j, "node") : j;
	if (!json_is_object(d)) {
		*why = "device missing";
		goto out;
	}
	/* Tailscale: expires, and keyExpiryDisabled; Headscale: expiry, null
	 * or the zero time when the node does not expire. */
	if (!headscale && json_is_true(json_object_get(d, "keyExpiryDisabled"))) {
		ret = 0;
		goto out;
	}
	e = json_object_get(d, headscale ? "expiry" : "expires");
	if (!e || json_is_null(e)) {
		ret = 0;
		goto out;
	}
	if (!json_is_string(e) || json_string_length(e) > 40 ||
	    rfc3339(json_string_value(e), expiry) < 0) {
		*expiry = 0;
		*why = headscale ? "expiry is not an RFC 3339 time"
				 : "expires is not an RFC 3339 time";
		goto out;
	}
	ret = 0;
out:
	json_decref(j);
	return ret;
}
