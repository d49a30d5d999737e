/* tailcfg JSON: what every message's parser shares (mapjson_internal.h):
 * Go's time and endpoint text forms, the bounded field readers and the
 * document loader. The messages themselves: mapjson_node.c (Node),
 * mapjson_derp.c (DERPMap), mapjson_dns.c (DNSConfig), mapjson_map.c
 * (MapResponse and its deltas), mapjson_register.c (RegisterResponse),
 * mapjson_request.c (the requests we build). */
#include "mapjson_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "mem.h"

/* ---- Time ---------------------------------------------------------------- */

/* Days since 1970-01-01 of a proleptic Gregorian date (month 1..12). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
	int64_t era, doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

/* Reads exactly n decimal digits. */
static bool digits(const char *s, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

int mapjson_parse_time(const char *s, int64_t *sec, bool *is_zero)
{
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int y, mo, d, h, mi, se, oh = 0, om = 0;
	const char *p;
	int64_t t;

	*sec = 0;
	*is_zero = false;
	if (strnlen(s, 64) < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) ||
	    s[7] != '-' || !digits(s + 8, 2, &d) || s[10] != 'T' || !digits(s + 11, 2, &h) ||
	    s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' || !digits(s + 17, 2, &se))
		return -EINVAL;
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || se > 59)
		return -EINVAL;
	if (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
		return -EINVAL;
	p = s + 19;
	if (*p == '.') {
		int nd = 0;

		/* Fractions are kept by Go with up to 9 digits; we keep seconds. */
		for (p++; *p >= '0' && *p <= '9'; p++)
			nd++;
		if (nd == 0 || nd > 9)
			return -EINVAL;
	}
	if (*p == 'Z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		if (!digits(p + 1, 2, &oh) || p[3] != ':' || !digits(p + 4, 2, &om) || oh > 23 ||
		    om > 59)
			return -EINVAL;
		if (*p == '-') {
			oh = -oh;
			om = -om;
		}
		p += 6;
	} else {
		return -EINVAL;
	}
	if (*p)
		return -EINVAL;
	t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
	t -= (int64_t)oh * 3600 + (int64_t)om * 60;
	*sec = t;
	*is_zero = t == GO_ZERO_TIME;
	return 0;
}

/* Go's time.Time MarshalJSON for a whole-second UTC time. */
void mapjson__format_time(int64_t t, char *buf, size_t n)
{
	int64_t days = t / 86400, rem = t % 86400, y;
	int m, d;

	if (rem < 0) {
		rem += 86400;
		days--;
	}
	civil_from_days(days, &y, &m, &d);
	snprintf(buf, n, "%04lld-%02d-%02dT%02d:%02d:%02dZ", (long long)y, m, d, (int)(rem / 3600),
		 (int)(rem / 60 % 60), (int)(rem % 60));
}

/* ---- Endpoints ----------------------------------------------------------- */

int mapjson_parse_endpoint(const char *s, struct netmap_endpoint *ep)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *colon, *hs = s;
	size_t hl;
	unsigned long port;
	char *end;

	memset(ep, 0, sizeof(*ep));
	if (*s == '[') {
		const char *close = strchr(s, ']');

		if (!close || close[1] != ':')
			return -EINVAL;
		hs = s + 1;
		hl = (size_t)(close - hs);
		colon = close + 1;
		ep->family = AF_INET6;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -EINVAL;
		hl = (size_t)(colon - s);
		ep->family = AF_INET;
	}
	if (hl == 0 || hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, hs, hl);
	host[hl] = '\0';
	if (inet_pton(ep->family, host, ep->addr) != 1)
		return -EINVAL;
	if (colon[1] < '0' || colon[1] > '9')
		return -EINVAL;
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno || *end || port > 65535 || end - (colon + 1) > 5)
		return -EINVAL;
	ep->port = (uint16_t)port;
	return 0;
}

char *mapjson_format_endpoint(const struct netmap_endpoint *ep, char *buf, size_t n)
{
	char host[INET6_ADDRSTRLEN];

	if (!inet_ntop(ep->family, ep->addr, host, sizeof(host)))
		host[0] = '\0';
	if (ep->family == AF_INET6)
		snprintf(buf, n, "[%s]:%u", host, (unsigned int)ep->port);
	else
		snprintf(buf, n, "%s:%u", host, (unsigned int)ep->port);
	return buf;
}

/* ---- Field readers ------------------------------------------------------- */
/* Absent and null read as the zero value, as Go's decoder leaves them. Every
 * reader fails with -EBADMSG and a static *why naming the field. */

bool mapjson__absent(const json_t *v)
{
	return !v || json_is_null(v);
}

int mapjson__get_string(const json_t *o, const char *field, char **out, const char *bad,
			const char **why)
{
	const json_t *v = json_object_get(o, field);

	*out = NULL;
	if (mapjson__absent(v)) {
		*out = xstrdup("");
		return 0;
	}
	if (!json_is_string(v) || json_string_length(v) > NETMAP_MAX_STR ||
	    strlen(json_string_value(v)) != json_string_length(v)) {
		*why = bad;
		return -EBADMSG;
	}
	*out = xstrdup(json_string_value(v));
	return 0;
}

int mapjson__get_bool(const json_t *o, const char *field, bool *out, const char *bad,
		      const char **why)
{
	const json_t *v = json_object_get(o, field);

	*out = false;
	if (mapjson__absent(v))
		return 0;
	if (!json_is_boolean(v)) {
		*why = bad;
		return -EBADMSG;
	}
	*out = json_is_true(v);
	return 0;
}

/* An integer in [min, max]; jansson keeps JSON integers as int64, so IDs
 * above 2^53 stay exact. A JSON real is refused, as Go refuses 1.5 or 1e3
 * for an int64 field. */
int mapjson__get_int64(const json_t *o, const char *field, int64_t min, int64_t max, int64_t *out,
		       const char *bad, const char **why)
{
	const json_t *v = json_object_get(o, field);

	*out = 0;
	if (mapjson__absent(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
		*why = bad;
		return -EBADMSG;
	}
	*out = json_integer_value(v);
	return 0;
}

int mapjson__get_int(const json_t *o, const char *field, int min, int max, int *out,
		     const char *bad, const char **why)
{
	int64_t v;
	int ret = mapjson__get_int64(o, field, min, max, &v, bad, why);

	*out = (int)v;
	return ret;
}

/* A key in text form; absent, null and the all-zero key mean "none". */
int mapjson__get_key(const json_t *o, const char *field, const char *prefix,
		     uint8_t key[static KEY_LEN], bool *has, const char *bad, const char **why)
{
	static const uint8_t zero[KEY_LEN];
	const json_t *v = json_object_get(o, field);

	memset(key, 0, KEY_LEN);
	*has = false;
	if (mapjson__absent(v))
		return 0;
	if (!json_is_string(v) || keys_from_text(prefix, json_string_value(v), key) < 0) {
		*why = bad;
		return -EBADMSG;
	}
	*has = memcmp(key, zero, KEY_LEN) != 0;
	return 0;
}

/* A time; absent, null and Go's zero time mean "none". */
int mapjson__get_time(const json_t *o, const char *field, int64_t *out, bool *has, const char *bad,
		      const char **why)
{
	const json_t *v = json_object_get(o, field);
	bool zero;

	*out = 0;
	*has = false;
	if (mapjson__absent(v))
		return 0;
	if (!json_is_string(v) || mapjson_parse_time(json_string_value(v), out, &zero) < 0) {
		*why = bad;
		return -EBADMSG;
	}
	*has = !zero;
	if (zero)
		*out = 0;
	return 0;
}

/* An array of at most max elements; absent/null give NULL. */
int mapjson__get_array(const json_t *o, const char *field, size_t max, const json_t **arr,
		       const char *bad, const char **why)
{
	const json_t *v = json_object_get(o, field);

	*arr = NULL;
	if (mapjson__absent(v))
		return 0;
	if (!json_is_array(v) || json_array_size(v) > max) {
		*why = bad;
		return -EBADMSG;
	}
	*arr = v;
	return 0;
}

int mapjson__get_object(const json_t *o, const char *field, size_t max, const json_t **obj,
			const char *bad, const char **why)
{
	const json_t *v = json_object_get(o, field);

	*obj = NULL;
	if (mapjson__absent(v))
		return 0;
	if (!json_is_object(v) || json_object_size(v) > max) {
		*why = bad;
		return -EBADMSG;
	}
	*obj = v;
	return 0;
}

void mapjson__free_strv(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static int strings_from(const json_t *arr, char ***out, size_t *n, const char *bad,
			const char **why)
{
	size_t i, cnt = json_array_size(arr);
	char **v = cnt ? xcalloc(cnt, sizeof(*v)) : NULL;

	*out = NULL;
	*n = 0;
	for (i = 0; i < cnt; i++) {
		const json_t *e = json_array_get(arr, i);

		if (!json_is_string(e) || json_string_length(e) > NETMAP_MAX_STR ||
		    strlen(json_string_value(e)) != json_string_length(e)) {
			mapjson__free_strv(v, i);
			*why = bad;
			return -EBADMSG;
		}
		v[i] = xstrdup(json_string_value(e));
	}
	*out = v;
	*n = cnt;
	return 0;
}

int mapjson__get_strings(const json_t *o, const char *field, size_t max, char ***out, size_t *n,
			 const char *bad, const char **why)
{
	const json_t *arr;
	int ret;

	*out = NULL;
	*n = 0;
	ret = mapjson__get_array(o, field, max, &arr, bad, why);
	if (ret < 0 || !arr)
		return ret;
	return strings_from(arr, out, n, bad, why);
}

/* present: the field was a non-null array (an explicit [] counts). */

int mapjson__endpoints_from(const json_t *arr, struct netmap_endpoint **out, size_t *n,
			    const char *bad, const char **why)
{
	size_t cnt = json_array_size(arr);

	*out = NULL;
	*n = 0;
	if (!cnt)
		return 0;
	*out = xcalloc(cnt, sizeof(**out));
	for (size_t i = 0; i < cnt; i++) {
		const json_t *e = json_array_get(arr, i);

		if (!json_is_string(e) || mapjson_parse_endpoint(json_string_value(e), *out + i)) {
			free(*out);
			*out = NULL;
			*why = bad;
			return -EBADMSG;
		}
	}
	*n = cnt;
	return 0;
}

/* A decimal NodeID / region map key: digits only, no sign, no spaces. */
int mapjson__parse_id_key(const char *k, int64_t max, int64_t *out)
{
	int64_t v = 0;

	if (!*k || strlen(k) > 19)
		return -EINVAL;
	for (const char *p = k; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		if (v > (max - (*p - '0')) / 10)
			return -EINVAL;
		v = v * 10 + (*p - '0');
	}
	*out = v;
	return 0;
}

json_t *mapjson__load(const char *json, size_t len, size_t max, const char **why)
{
	json_error_t err;
	json_t *root;

	if (len > max) {
		*why = "control JSON document too large";
		return NULL;
	}
	root = json_loadb(json, len, 0, &err);
	if (!root) {
		*why = "control JSON does not parse";
		return NULL;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		*why = "control JSON is not an object";
		return NULL;
	}
	return root;
}
