/* tailcfg JSON: MapResponse and RegisterResponse in, requests out. */
#include "mapjson.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <jansson.h>
#include <sodium.h>

#include "filter_rules.h"
#include "mem.h"

/* Go's zero time.Time, 0001-01-01T00:00:00Z, in Unix seconds. */
#define GO_ZERO_TIME (-62135596800LL)

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
static void format_time(int64_t t, char *buf, size_t n)
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

static bool absent(const json_t *v)
{
	return !v || json_is_null(v);
}

static int get_string(const json_t *o, const char *field, char **out, const char *bad,
		      const char **why)
{
	const json_t *v = json_object_get(o, field);

	*out = NULL;
	if (absent(v)) {
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

static int get_bool(const json_t *o, const char *field, bool *out, const char *bad,
		    const char **why)
{
	const json_t *v = json_object_get(o, field);

	*out = false;
	if (absent(v))
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
static int get_int64(const json_t *o, const char *field, int64_t min, int64_t max, int64_t *out,
		     const char *bad, const char **why)
{
	const json_t *v = json_object_get(o, field);

	*out = 0;
	if (absent(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
		*why = bad;
		return -EBADMSG;
	}
	*out = json_integer_value(v);
	return 0;
}

static int get_int(const json_t *o, const char *field, int min, int max, int *out, const char *bad,
		   const char **why)
{
	int64_t v;
	int ret = get_int64(o, field, min, max, &v, bad, why);

	*out = (int)v;
	return ret;
}

/* A key in text form; absent, null and the all-zero key mean "none". */
static int get_key(const json_t *o, const char *field, const char *prefix,
		   uint8_t key[static KEY_LEN], bool *has, const char *bad, const char **why)
{
	static const uint8_t zero[KEY_LEN];
	const json_t *v = json_object_get(o, field);

	memset(key, 0, KEY_LEN);
	*has = false;
	if (absent(v))
		return 0;
	if (!json_is_string(v) || keys_from_text(prefix, json_string_value(v), key) < 0) {
		*why = bad;
		return -EBADMSG;
	}
	*has = memcmp(key, zero, KEY_LEN) != 0;
	return 0;
}

/* A time; absent, null and Go's zero time mean "none". */
static int get_time(const json_t *o, const char *field, int64_t *out, bool *has, const char *bad,
		    const char **why)
{
	const json_t *v = json_object_get(o, field);
	bool zero;

	*out = 0;
	*has = false;
	if (absent(v))
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
static int get_array(const json_t *o, const char *field, size_t max, const json_t **arr,
		     const char *bad, const char **why)
{
	const json_t *v = json_object_get(o, field);

	*arr = NULL;
	if (absent(v))
		return 0;
	if (!json_is_array(v) || json_array_size(v) > max) {
		*why = bad;
		return -EBADMSG;
	}
	*arr = v;
	return 0;
}

static int get_object(const json_t *o, const char *field, size_t max, const json_t **obj,
		      const char *bad, const char **why)
{
	const json_t *v = json_object_get(o, field);

	*obj = NULL;
	if (absent(v))
		return 0;
	if (!json_is_object(v) || json_object_size(v) > max) {
		*why = bad;
		return -EBADMSG;
	}
	*obj = v;
	return 0;
}

static void free_strv(char **v, size_t n)
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
			free_strv(v, i);
			*why = bad;
			return -EBADMSG;
		}
		v[i] = xstrdup(json_string_value(e));
	}
	*out = v;
	*n = cnt;
	return 0;
}

static int get_strings(const json_t *o, const char *field, size_t max, char ***out, size_t *n,
		       const char *bad, const char **why)
{
	const json_t *arr;
	int ret;

	*out = NULL;
	*n = 0;
	ret = get_array(o, field, max, &arr, bad, why);
	if (ret < 0 || !arr)
		return ret;
	return strings_from(arr, out, n, bad, why);
}

/* present: the field was a non-null array (an explicit [] counts). */
static int get_prefixes(const json_t *o, const char *field, size_t max, struct ip_prefix **out,
			size_t *n, bool *present, const char *bad, const char **why)
{
	const json_t *arr;
	size_t cnt;
	int ret;

	*out = NULL;
	*n = 0;
	if (present)
		*present = false;
	ret = get_array(o, field, max, &arr, bad, why);
	if (ret < 0 || !arr)
		return ret;
	if (present)
		*present = true;
	cnt = json_array_size(arr);
	if (!cnt)
		return 0;
	*out = xcalloc(cnt, sizeof(**out));
	for (size_t i = 0; i < cnt; i++) {
		const json_t *e = json_array_get(arr, i);

		if (!json_is_string(e) || ip_prefix_parse(json_string_value(e), false, *out + i)) {
			free(*out);
			*out = NULL;
			*why = bad;
			return -EBADMSG;
		}
	}
	*n = cnt;
	return 0;
}

static int endpoints_from(const json_t *arr, struct netmap_endpoint **out, size_t *n,
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
static int parse_id_key(const char *k, int64_t max, int64_t *out)
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

/* ---- Node ---------------------------------------------------------------- */

static bool has_cap(char **caps, size_t n, const char *c)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(caps[i], c))
			return true;
	return false;
}

/* Capabilities (string list) folded with CapMap's keys, as upstream does
 * for old servers. */
static int parse_caps(const json_t *o, char ***out, size_t *n, const char **why)
{
	const json_t *list, *map, *v;
	const char *k;
	char **caps;
	size_t cnt = 0;
	int ret;

	*out = NULL;
	*n = 0;
	ret = get_array(o, "Capabilities", NETMAP_MAX_CAPS, &list, "bad Capabilities in a node",
			why);
	if (ret < 0)
		return ret;
	ret = get_object(o, "CapMap", NETMAP_MAX_CAPS, &map, "bad CapMap in a node", why);
	if (ret < 0)
		return ret;
	if (json_array_size(list) + json_object_size(map) == 0)
		return 0;
	caps = xcalloc(json_array_size(list) + json_object_size(map), sizeof(*caps));
	for (size_t i = 0; i < json_array_size(list); i++) {
		v = json_array_get(list, i);
		if (!json_is_string(v) || json_string_length(v) > NETMAP_MAX_STR) {
			free_strv(caps, cnt);
			*why = "bad Capabilities in a node";
			return -EBADMSG;
		}
		if (!has_cap(caps, cnt, json_string_value(v)))
			caps[cnt++] = xstrdup(json_string_value(v));
	}
	json_object_foreach((json_t *)map, k, v)
	{
		if (strlen(k) > NETMAP_MAX_STR) {
			free_strv(caps, cnt);
			*why = "bad CapMap in a node";
			return -EBADMSG;
		}
		if (!has_cap(caps, cnt, k))
			caps[cnt++] = xstrdup(k);
	}
	*out = caps;
	*n = cnt;
	return 0;
}

/* The legacy home DERP form: "127.3.3.40:<region>" (the port is the region). */
static int legacy_derp_region(const char *s)
{
	static const char magic[] = "127.3.3.40:";
	int64_t v;

	if (strncmp(s, magic, sizeof(magic) - 1))
		return 0;
	if (parse_id_key(s + sizeof(magic) - 1, INT_MAX, &v) < 0)
		return 0;
	return (int)v;
}

static int parse_node(const json_t *o, struct netmap_node **out, const char **why)
{
	struct netmap_node *n = netmap_node_new();
	const json_t *arr, *hi, *v;
	bool present, unsigned_only;
	char *legacy = NULL;
	int ret = -EBADMSG;

	*out = NULL;
	if (!json_is_object(o)) {
		*why = "a node is not an object";
		goto err;
	}
	if (!json_is_integer(json_object_get(o, "ID"))) {
		*why = "a node has no integer ID";
		goto err;
	}
	if ((ret = get_int64(o, "ID", 0, INT64_MAX, &n->id, "bad node ID", why)) < 0 ||
	    (ret = get_int64(o, "User", INT64_MIN, INT64_MAX, &n->user, "bad node User", why)) < 0)
		goto err;
	free(n->stable_id);
	free(n->name);
	n->stable_id = n->name = NULL;
	if ((ret = get_string(o, "StableID", &n->stable_id, "bad node StableID", why)) < 0 ||
	    (ret = get_string(o, "Name", &n->name, "bad node Name", why)) < 0 ||
	    (ret = get_key(o, "Key", "nodekey", n->key, &n->has_key, "bad node Key", why)) < 0 ||
	    (ret = get_key(o, "Machine", "mkey", n->machine, &n->has_machine, "bad node Machine",
			   why)) < 0 ||
	    (ret = get_key(o, "DiscoKey", "discokey", n->disco, &n->has_disco, "bad node DiscoKey",
			   why)) < 0 ||
	    (ret = get_time(o, "KeyExpiry", &n->key_expiry, &n->has_key_expiry,
			    "bad node KeyExpiry", why)) < 0 ||
	    (ret = get_bool(o, "Expired", &n->expired, "bad node Expired", why)) < 0 ||
	    (ret = get_prefixes(o, "Addresses", NETMAP_MAX_ADDRESSES, &n->addresses,
				&n->n_addresses, NULL, "bad node Addresses", why)) < 0 ||
	    (ret = get_prefixes(o, "AllowedIPs", NETMAP_MAX_ALLOWED_IPS, &n->allowed_ips,
				&n->n_allowed_ips, &present, "bad node AllowedIPs", why)) < 0 ||
	    (ret = get_prefixes(o, "PrimaryRoutes", NETMAP_MAX_ALLOWED_IPS, &n->primary_routes,
				&n->n_primary_routes, NULL, "bad node PrimaryRoutes", why)) < 0 ||
	    (ret = get_array(o, "Endpoints", NETMAP_MAX_ENDPOINTS, &arr, "bad node Endpoints",
			     why)) < 0 ||
	    (ret = endpoints_from(arr, &n->endpoints, &n->n_endpoints, "bad node Endpoints", why)) <
		    0 ||
	    (ret = get_int(o, "HomeDERP", 0, INT_MAX, &n->home_derp, "bad node HomeDERP", why)) <
		    0 ||
	    (ret = get_string(o, "DERP", &legacy, "bad node DERP", why)) < 0 ||
	    (ret = get_bool(o, "Online", &n->online, "bad node Online", why)) < 0 ||
	    (ret = get_time(o, "LastSeen", &n->last_seen, &n->has_last_seen, "bad node LastSeen",
			    why)) < 0 ||
	    (ret = get_int(o, "Cap", 0, INT_MAX, &n->cap, "bad node Cap", why)) < 0 ||
	    (ret = get_strings(o, "Tags", NETMAP_MAX_TAGS, &n->tags, &n->n_tags, "bad node Tags",
			       why)) < 0 ||
	    (ret = parse_caps(o, &n->caps, &n->n_caps, why)) < 0 ||
	    (ret = get_bool(o, "MachineAuthorized", &n->machine_authorized,
			    "bad node MachineAuthorized", why)) < 0 ||
	    (ret = get_bool(o, "IsWireGuardOnly", &n->is_wireguard_only, "bad node IsWireGuardOnly",
			    why)) < 0 ||
	    (ret = get_bool(o, "IsJailed", &n->is_jailed, "bad node IsJailed", why)) < 0 ||
	    (ret = get_bool(o, "UnsignedPeerAPIOnly", &unsigned_only,
			    "bad node UnsignedPeerAPIOnly", why)) < 0)
		goto err;
	n->has_online = !absent(json_object_get(o, "Online"));
	n->has_masq_addr = !absent(json_object_get(o, "SelfNodeV4MasqAddrForThisPeer")) ||
			   !absent(json_object_get(o, "SelfNodeV6MasqAddrForThisPeer"));

	/* upgradeNode: the legacy DERP string, then AllowedIPs. */
	if (n->home_derp == 0)
		n->home_derp = legacy_derp_region(legacy);
	if (!present || unsigned_only) {
		free(n->allowed_ips);
		n->allowed_ips = NULL;
		n->n_allowed_ips = n->n_addresses;
		if (n->n_addresses) {
			n->allowed_ips = xcalloc(n->n_addresses, sizeof(*n->allowed_ips));
			memcpy(n->allowed_ips, n->addresses,
			       n->n_addresses * sizeof(*n->allowed_ips));
		}
	}

	hi = json_object_get(o, "Hostinfo");
	if (!absent(hi) && !json_is_object(hi)) {
		*why = "bad node Hostinfo";
		ret = -EBADMSG;
		goto err;
	}
	v = absent(hi) ? NULL : hi;
	free(n->hostname);
	n->hostname = NULL;
	if (v)
		ret = get_string(v, "Hostname", &n->hostname, "bad node Hostinfo.Hostname", why);
	else
		n->hostname = xstrdup("");
	if (ret < 0)
		goto err;
	free(legacy);
	*out = n;
	return 0;
err:
	free(legacy);
	netmap_node_put(n);
	return ret < 0 ? ret : -EBADMSG;
}

static void free_nodes(struct netmap_node **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		netmap_node_put(v[i]);
	free(v);
}

static int get_nodes(const json_t *o, const char *field, struct netmap_node ***out, size_t *n,
		     const char *bad, const char **why)
{
	const json_t *arr;
	struct netmap_node **v;
	size_t cnt;
	int ret;

	*out = NULL;
	*n = 0;
	ret = get_array(o, field, NETMAP_MAX_PEERS, &arr, bad, why);
	if (ret < 0 || !arr || !json_array_size(arr))
		return ret;
	cnt = json_array_size(arr);
	v = xcalloc(cnt, sizeof(*v));
	for (size_t i = 0; i < cnt; i++) {
		ret = parse_node(json_array_get(arr, i), &v[i], why);
		if (ret < 0) {
			free_nodes(v, i);
			return ret;
		}
	}
	*out = v;
	*n = cnt;
	return 0;
}

/* ---- DERP map ------------------------------------------------------------ */

static int parse_derp_node(const json_t *o, struct netmap_derp_node *dn, const char **why)
{
	int ret;

	if (!json_is_object(o)) {
		*why = "a DERP node is not an object";
		return -EBADMSG;
	}
	if ((ret = get_string(o, "Name", &dn->name, "bad DERP node Name", why)) < 0 ||
	    (ret = get_int(o, "RegionID", 0, INT_MAX, &dn->region_id, "bad DERP node RegionID",
			   why)) < 0 ||
	    (ret = get_string(o, "HostName", &dn->host_name, "bad DERP node HostName", why)) < 0 ||
	    (ret = get_string(o, "IPv4", &dn->ipv4, "bad DERP node IPv4", why)) < 0 ||
	    (ret = get_string(o, "IPv6", &dn->ipv6, "bad DERP node IPv6", why)) < 0 ||
	    (ret = get_int(o, "STUNPort", -1, 65535, &dn->stun_port, "bad DERP node STUNPort",
			   why)) < 0 ||
	    (ret = get_bool(o, "STUNOnly", &dn->stun_only, "bad DERP node STUNOnly", why)) < 0 ||
	    (ret = get_int(o, "DERPPort", 0, 65535, &dn->derp_port, "bad DERP node DERPPort",
			   why)) < 0 ||
	    (ret = get_bool(o, "InsecureForTests", &dn->insecure_for_tests,
			    "bad DERP node InsecureForTests", why)) < 0 ||
	    (ret = get_string(o, "STUNTestIP", &dn->stun_test_ip, "bad DERP node STUNTestIP",
			      why)) < 0 ||
	    (ret = get_bool(o, "CanPort80", &dn->can_port80, "bad DERP node CanPort80", why)) < 0)
		return ret;
	return 0;
}

static int cmp_region(const void *a, const void *b)
{
	const struct netmap_derp_region *x = a, *y = b;

	return (x->region_id > y->region_id) - (x->region_id < y->region_id);
}

static int cmp_score(const void *a, const void *b)
{
	const struct netmap_region_score *x = a, *y = b;

	return (x->region_id > y->region_id) - (x->region_id < y->region_id);
}

static int parse_region(const json_t *o, int64_t id, struct netmap_derp_region *r, const char **why)
{
	const json_t *nodes;
	int ret;

	r->region_id = (int)id;
	if (!json_is_object(o)) {
		*why = "a DERP region is not an object";
		return -EBADMSG;
	}
	if ((ret = get_string(o, "RegionCode", &r->region_code, "bad DERP RegionCode", why)) < 0 ||
	    (ret = get_string(o, "RegionName", &r->region_name, "bad DERP RegionName", why)) < 0 ||
	    (ret = get_bool(o, "Avoid", &r->avoid, "bad DERP region Avoid", why)) < 0 ||
	    (ret = get_bool(o, "NoMeasureNoHome", &r->no_measure_no_home,
			    "bad DERP region NoMeasureNoHome", why)) < 0 ||
	    (ret = get_array(o, "Nodes", NETMAP_MAX_DERP_NODES, &nodes, "bad DERP region Nodes",
			     why)) < 0)
		return ret;
	if (!json_array_size(nodes))
		return 0;
	r->nodes = xcalloc(json_array_size(nodes), sizeof(*r->nodes));
	for (size_t i = 0; i < json_array_size(nodes); i++) {
		r->n_nodes = i + 1; /* so a failure frees what was filled */
		ret = parse_derp_node(json_array_get(nodes, i), &r->nodes[i], why);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/* The DERP map as sent, with has_* saying which parts were present. Regions
 * whose value is null are dropped (upstream guards against Headscale
 * sending them). */
static int parse_derpmap(const json_t *o, struct netmap_derpmap **out, const char **why)
{
	struct netmap_derpmap *d = netmap_derpmap_new();
	const json_t *regions, *home, *scores, *v;
	const char *k;
	int64_t id;
	int ret;

	*out = NULL;
	if (!json_is_object(o)) {
		*why = "DERPMap is not an object";
		ret = -EBADMSG;
		goto err;
	}
	if ((ret = get_object(o, "Regions", NETMAP_MAX_DERP_REGIONS, &regions,
			      "bad DERPMap Regions", why)) < 0 ||
	    (ret = get_bool(o, "OmitDefaultRegions", &d->omit_default_regions,
			    "bad DERPMap OmitDefaultRegions", why)) < 0 ||
	    (ret = get_object(o, "HomeParams", 1 << 10, &home, "bad DERPMap HomeParams", why)) < 0)
		goto err;
	if (regions) {
		d->has_regions = true;
		if (json_object_size(regions))
			d->regions = xcalloc(json_object_size(regions), sizeof(*d->regions));
		json_object_foreach((json_t *)regions, k, v)
		{
			if (parse_id_key(k, INT_MAX, &id) < 0) {
				*why = "bad DERPMap region ID key";
				ret = -EBADMSG;
				goto err;
			}
			if (json_is_null(v))
				continue;
			ret = parse_region(v, id, &d->regions[d->n_regions++], why);
			if (ret < 0)
				goto err;
		}
		if (d->n_regions) /* qsort(NULL, 0) is undefined */
			qsort(d->regions, d->n_regions, sizeof(*d->regions), cmp_region);
	}
	if (home) {
		d->has_home_params = true;
		ret = get_object(home, "RegionScore", NETMAP_MAX_DERP_REGIONS, &scores,
				 "bad DERPMap HomeParams.RegionScore", why);
		if (ret < 0)
			goto err;
		if (scores) {
			d->has_region_score = true;
			if (json_object_size(scores))
				d->scores = xcalloc(json_object_size(scores), sizeof(*d->scores));
			json_object_foreach((json_t *)scores, k, v)
			{
				if (parse_id_key(k, INT_MAX, &id) < 0 || !json_is_number(v)) {
					*why = "bad DERPMap HomeParams.RegionScore entry";
					ret = -EBADMSG;
					goto err;
				}
				d->scores[d->n_scores].region_id = (int)id;
				d->scores[d->n_scores++].score = json_number_value(v);
			}
			if (d->n_scores) /* qsort(NULL, 0) is undefined */
				qsort(d->scores, d->n_scores, sizeof(*d->scores), cmp_score);
		}
	}
	*out = d;
	return 0;
err:
	netmap_derpmap_put(d);
	return ret;
}

/* ---- DNS ----------------------------------------------------------------- */

/* [{"Addr": "..."}] into Addr strings. */
static int resolvers_from(const json_t *arr, char ***out, size_t *n, const char *bad,
			  const char **why)
{
	size_t cnt = json_array_size(arr);
	char **v;

	*out = NULL;
	*n = 0;
	if (!cnt)
		return 0;
	v = xcalloc(cnt, sizeof(*v));
	for (size_t i = 0; i < cnt; i++) {
		const json_t *e = json_array_get(arr, i);
		int ret;

		if (!json_is_object(e)) {
			free_strv(v, i);
			*why = bad;
			return -EBADMSG;
		}
		ret = get_string(e, "Addr", &v[i], bad, why);
		if (ret < 0) {
			free_strv(v, i);
			return ret;
		}
	}
	*out = v;
	*n = cnt;
	return 0;
}

static int get_resolvers(const json_t *o, const char *field, char ***out, size_t *n,
			 const char *bad, const char **why)
{
	const json_t *arr;
	int ret;

	*out = NULL;
	*n = 0;
	ret = get_array(o, field, NETMAP_MAX_DNS_ITEMS, &arr, bad, why);
	if (ret < 0 || !arr)
		return ret;
	return resolvers_from(arr, out, n, bad, why);
}

static int parse_dns(const json_t *o, struct netmap_dns **out, const char **why)
{
	struct netmap_dns *d = netmap_dns_new();
	const json_t *routes, *records, *v;
	const char *k;
	int ret;

	*out = NULL;
	if (!json_is_object(o)) {
		*why = "DNSConfig is not an object";
		ret = -EBADMSG;
		goto err;
	}
	if ((ret = get_resolvers(o, "Resolvers", &d->resolvers, &d->n_resolvers,
				 "bad DNSConfig Resolvers", why)) < 0 ||
	    (ret = get_resolvers(o, "FallbackResolvers", &d->fallback_resolvers,
				 &d->n_fallback_resolvers, "bad DNSConfig FallbackResolvers",
				 why)) < 0 ||
	    (ret = get_strings(o, "Domains", NETMAP_MAX_DNS_ITEMS, &d->domains, &d->n_domains,
			       "bad DNSConfig Domains", why)) < 0 ||
	    (ret = get_strings(o, "CertDomains", NETMAP_MAX_DNS_ITEMS, &d->cert_domains,
			       &d->n_cert_domains, "bad DNSConfig CertDomains", why)) < 0 ||
	    (ret = get_bool(o, "Proxied", &d->proxied, "bad DNSConfig Proxied", why)) < 0 ||
	    (ret = get_object(o, "Routes", NETMAP_MAX_DNS_ITEMS, &routes, "bad DNSConfig Routes",
			      why)) < 0 ||
	    (ret = get_array(o, "ExtraRecords", NETMAP_MAX_DNS_ITEMS, &records,
			     "bad DNSConfig ExtraRecords", why)) < 0)
		goto err;
	if (json_object_size(routes))
		d->routes = xcalloc(json_object_size(routes), sizeof(*d->routes));
	json_object_foreach((json_t *)routes, k, v)
	{
		struct netmap_dns_route *r = &d->routes[d->n_routes];

		if (strlen(k) > NETMAP_MAX_STR || (!json_is_array(v) && !json_is_null(v)) ||
		    json_array_size(v) > NETMAP_MAX_DNS_ITEMS) {
			*why = "bad DNSConfig route";
			ret = -EBADMSG;
			goto err;
		}
		r->suffix = xstrdup(k);
		d->n_routes++;
		ret = resolvers_from(v, &r->resolvers, &r->n_resolvers, "bad DNSConfig route", why);
		if (ret < 0)
			goto err;
	}
	if (json_array_size(records))
		d->extra_records = xcalloc(json_array_size(records), sizeof(*d->extra_records));
	for (size_t i = 0; i < json_array_size(records); i++) {
		struct netmap_dns_record *r = &d->extra_records[i];
		const json_t *e = json_array_get(records, i);

		d->n_extra_records = i + 1;
		if (!json_is_object(e)) {
			*why = "bad DNSConfig ExtraRecords entry";
			ret = -EBADMSG;
			goto err;
		}
		if ((ret = get_string(e, "Name", &r->name, "bad DNSConfig record Name", why)) < 0 ||
		    (ret = get_string(e, "Type", &r->type, "bad DNSConfig record Type", why)) < 0 ||
		    (ret = get_string(e, "Value", &r->value, "bad DNSConfig record Value", why)) <
			    0)
			goto err;
	}
	*out = d;
	return 0;
err:
	netmap_dns_put(d);
	return ret;
}

/* ---- Packet filters ------------------------------------------------------ */

/* A FilterRule list, parsed once here. A list that is not an array of
 * objects refuses the message (bad); one whose rules do not parse is kept
 * with the reason (struct netmap_rules), so that the rest of the message
 * still applies and only the data plane refuses a filter made with it. */
static int rules_parse(const json_t *arr, struct netmap_rules **out, const char *bad,
		       const char **why)
{
	struct netmap_rules *r;

	*out = NULL;
	if (!json_is_array(arr) || json_array_size(arr) > NETMAP_MAX_FILTER_RULES) {
		*why = bad;
		return -EBADMSG;
	}
	for (size_t i = 0; i < json_array_size(arr); i++) {
		if (!json_is_object(json_array_get(arr, i))) {
			*why = bad;
			return -EBADMSG;
		}
	}
	r = netmap_rules_new();
	r->n_sent = json_array_size(arr);
	(void)filter_rules_from_json(arr, &r->rules, &r->warn, &r->bad);
	*out = r;
	return 0;
}

static int parse_filters(const json_t *root, struct mapjson_map_response *r, const char **why)
{
	const json_t *pf = json_object_get(root, "PacketFilter"), *named, *v;
	const char *k;
	int ret;

	if (!absent(pf)) {
		ret = rules_parse(pf, &r->packet_filter, "bad PacketFilter", why);
		if (ret < 0)
			return ret;
	}
	ret = get_object(root, "PacketFilters", NETMAP_MAX_FILTER_NAMES, &named,
			 "bad PacketFilters", why);
	if (ret < 0 || !named)
		return ret;
	r->has_packet_filters = true;
	if (json_object_size(named))
		r->filters = xcalloc(json_object_size(named), sizeof(*r->filters));
	json_object_foreach((json_t *)named, k, v)
	{
		struct mapjson_named_filter *f;

		if (!strcmp(k, "*")) {
			/* Only "*": null means anything; upstream skips the key. */
			if (json_is_null(v))
				r->filters_clear_all = true;
			continue;
		}
		if (strlen(k) > NETMAP_MAX_STR || strlen(k) == 0) {
			*why = "bad PacketFilters name";
			return -EBADMSG;
		}
		f = &r->filters[r->n_filters++];
		f->name = xstrdup(k);
		if (json_is_null(v))
			continue;
		ret = rules_parse(v, &f->rules, "bad PacketFilters entry", why);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/* ---- Deltas -------------------------------------------------------------- */

static int parse_patch(const json_t *o, struct mapjson_peer_change *pc, const char **why)
{
	const json_t *v, *arr;
	bool has;
	int ret;

	if (!json_is_object(o) || !json_is_integer(json_object_get(o, "NodeID"))) {
		*why = "a PeersChangedPatch entry has no integer NodeID";
		return -EBADMSG;
	}
	if ((ret = get_int64(o, "NodeID", 0, INT64_MAX, &pc->node_id, "bad patch NodeID", why)) <
		    0 ||
	    (ret = get_int(o, "DERPRegion", 0, INT_MAX, &pc->derp_region, "bad patch DERPRegion",
			   why)) < 0 ||
	    (ret = get_int(o, "Cap", 0, INT_MAX, &pc->cap, "bad patch Cap", why)) < 0)
		return ret;
	if (pc->derp_region)
		pc->fields |= MAPJSON_PATCH_DERP;
	if (pc->cap)
		pc->fields |= MAPJSON_PATCH_CAP;
	if ((ret = get_array(o, "Endpoints", NETMAP_MAX_ENDPOINTS, &arr, "bad patch Endpoints",
			     why)) < 0)
		return ret;
	if (arr) {
		pc->fields |= MAPJSON_PATCH_ENDPOINTS;
		ret = endpoints_from(arr, &pc->endpoints, &pc->n_endpoints, "bad patch Endpoints",
				     why);
		if (ret < 0)
			return ret;
	}
	if (!absent(json_object_get(o, "Key"))) {
		pc->fields |= MAPJSON_PATCH_KEY;
		if ((ret = get_key(o, "Key", "nodekey", pc->key, &has, "bad patch Key", why)) < 0)
			return ret;
	}
	if (!absent(json_object_get(o, "DiscoKey"))) {
		pc->fields |= MAPJSON_PATCH_DISCO;
		if ((ret = get_key(o, "DiscoKey", "discokey", pc->disco, &has, "bad patch DiscoKey",
				   why)) < 0)
			return ret;
	}
	if (!absent(json_object_get(o, "Online"))) {
		pc->fields |= MAPJSON_PATCH_ONLINE;
		if ((ret = get_bool(o, "Online", &pc->online, "bad patch Online", why)) < 0)
			return ret;
	}
	if (!absent(json_object_get(o, "LastSeen"))) {
		pc->fields |= MAPJSON_PATCH_LAST_SEEN;
		if ((ret = get_time(o, "LastSeen", &pc->last_seen, &has, "bad patch LastSeen",
				    why)) < 0)
			return ret;
	}
	if (!absent(json_object_get(o, "KeyExpiry"))) {
		pc->fields |= MAPJSON_PATCH_KEY_EXPIRY;
		if ((ret = get_time(o, "KeyExpiry", &pc->key_expiry, &pc->has_key_expiry,
				    "bad patch KeyExpiry", why)) < 0)
			return ret;
	}
	v = json_object_get(o, "CapMap");
	if (!absent(v)) {
		const char *k;
		const json_t *cv;

		if (!json_is_object(v) || json_object_size(v) > NETMAP_MAX_CAPS) {
			*why = "bad patch CapMap";
			return -EBADMSG;
		}
		pc->fields |= MAPJSON_PATCH_CAPMAP;
		if (json_object_size(v))
			pc->caps = xcalloc(json_object_size(v), sizeof(*pc->caps));
		json_object_foreach((json_t *)v, k, cv)
		{
			if (strlen(k) > NETMAP_MAX_STR) {
				*why = "bad patch CapMap";
				return -EBADMSG;
			}
			pc->caps[pc->n_caps++] = xstrdup(k);
		}
	}
	return 0;
}

/* {"<NodeID>": bool, ...} */
static int parse_id_bools(const json_t *root, const char *field, struct mapjson_id_bool **out,
			  size_t *n, const char *bad, const char **why)
{
	const json_t *obj, *v;
	const char *k;
	int ret;

	*out = NULL;
	*n = 0;
	ret = get_object(root, field, MAPJSON_MAX_CHANGES, &obj, bad, why);
	if (ret < 0 || !json_object_size(obj))
		return ret;
	*out = xcalloc(json_object_size(obj), sizeof(**out));
	json_object_foreach((json_t *)obj, k, v)
	{
		struct mapjson_id_bool *e = &(*out)[*n];

		if (parse_id_key(k, INT64_MAX, &e->id) < 0 || !json_is_boolean(v)) {
			*why = bad;
			return -EBADMSG;
		}
		e->value = json_is_true(v);
		(*n)++;
	}
	return 0;
}

static int parse_removed(const json_t *root, struct mapjson_map_response *r, const char **why)
{
	const json_t *arr;
	int ret;

	ret = get_array(root, "PeersRemoved", MAPJSON_MAX_CHANGES, &arr, "bad PeersRemoved", why);
	if (ret < 0 || !json_array_size(arr))
		return ret;
	r->peers_removed = xcalloc(json_array_size(arr), sizeof(*r->peers_removed));
	for (size_t i = 0; i < json_array_size(arr); i++) {
		const json_t *e = json_array_get(arr, i);

		if (!json_is_integer(e) || json_integer_value(e) < 0) {
			*why = "bad PeersRemoved entry";
			return -EBADMSG;
		}
		r->peers_removed[r->n_peers_removed++] = json_integer_value(e);
	}
	return 0;
}

static int parse_patches(const json_t *root, struct mapjson_map_response *r, const char **why)
{
	const json_t *arr;
	int ret;

	ret = get_array(root, "PeersChangedPatch", MAPJSON_MAX_CHANGES, &arr,
			"bad PeersChangedPatch", why);
	if (ret < 0 || !json_array_size(arr))
		return ret;
	r->patches = xcalloc(json_array_size(arr), sizeof(*r->patches));
	for (size_t i = 0; i < json_array_size(arr); i++) {
		r->n_patches = i + 1;
		ret = parse_patch(json_array_get(arr, i), &r->patches[i], why);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/* opt.Bool: JSON true/false or the strings "true"/"false"/"". */
static int parse_opt_bool(const json_t *v, bool *has, bool *val, const char **why)
{
	*has = false;
	*val = false;
	if (absent(v))
		return 0;
	if (json_is_boolean(v)) {
		*has = true;
		*val = json_is_true(v);
		return 0;
	}
	if (json_is_string(v)) {
		const char *s = json_string_value(v);

		if (!strcmp(s, ""))
			return 0;
		if (!strcmp(s, "true") || !strcmp(s, "false")) {
			*has = true;
			*val = !strcmp(s, "true");
			return 0;
		}
	}
	*why = "bad CollectServices";
	return -EBADMSG;
}

static int parse_ping(const json_t *o, struct mapjson_ping **out, const char **why)
{
	struct mapjson_ping *p = xcalloc(1, sizeof(*p));
	int ret;

	*out = NULL;
	if (!json_is_object(o)) {
		*why = "PingRequest is not an object";
		ret = -EBADMSG;
		goto err;
	}
	if ((ret = get_string(o, "URL", &p->url, "bad PingRequest URL", why)) < 0 ||
	    (ret = get_string(o, "Types", &p->types, "bad PingRequest Types", why)) < 0 ||
	    (ret = get_string(o, "IP", &p->ip, "bad PingRequest IP", why)) < 0 ||
	    (ret = get_bool(o, "URLIsNoise", &p->url_is_noise, "bad PingRequest URLIsNoise", why)) <
		    0 ||
	    (ret = get_bool(o, "Log", &p->log, "bad PingRequest Log", why)) < 0)
		goto err;
	*out = p;
	return 0;
err:
	free(p->url);
	free(p->types);
	free(p->ip);
	free(p);
	return ret;
}

static json_t *load(const char *json, size_t len, size_t max, const char **why)
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

int mapjson_parse_map_response(const char *json, size_t len, struct mapjson_map_response **out,
			       const char **why)
{
	struct mapjson_map_response *r = xcalloc(1, sizeof(*r));
	const json_t *v;
	json_t *root;
	int ret = -EBADMSG;

	*out = NULL;
	root = load(json, len, (size_t)1 << 30, why);
	if (!root)
		goto err;
	if ((ret = get_bool(root, "KeepAlive", &r->keep_alive, "bad KeepAlive", why)) < 0)
		goto err;
	v = json_object_get(root, "Node");
	if (!absent(v) && (ret = parse_node(v, &r->node, why)) < 0)
		goto err;
	if ((ret = get_nodes(root, "Peers", &r->peers, &r->n_peers, "bad Peers", why)) < 0 ||
	    (ret = get_nodes(root, "PeersChanged", &r->peers_changed, &r->n_peers_changed,
			     "bad PeersChanged", why)) < 0 ||
	    (ret = parse_removed(root, r, why)) < 0 || (ret = parse_patches(root, r, why)) < 0 ||
	    (ret = parse_id_bools(root, "OnlineChange", &r->online_change, &r->n_online_change,
				  "bad OnlineChange", why)) < 0 ||
	    (ret = parse_id_bools(root, "PeerSeenChange", &r->seen_change, &r->n_seen_change,
				  "bad PeerSeenChange", why)) < 0 ||
	    (ret = parse_filters(root, r, why)) < 0)
		goto err;
	v = json_object_get(root, "DERPMap");
	if (!absent(v) && (ret = parse_derpmap(v, &r->derpmap, why)) < 0)
		goto err;
	v = json_object_get(root, "DNSConfig");
	if (!absent(v) && (ret = parse_dns(v, &r->dns, why)) < 0)
		goto err;
	if ((ret = get_string(root, "Domain", &r->domain, "bad Domain", why)) < 0)
		goto err;
	if (!r->domain[0]) {
		free(r->domain);
		r->domain = NULL;
	}
	if ((ret = parse_opt_bool(json_object_get(root, "CollectServices"),
				  &r->has_collect_services, &r->collect_services, why)) < 0 ||
	    (ret = get_time(root, "ControlTime", &r->control_time, &r->has_control_time,
			    "bad ControlTime", why)) < 0)
		goto err;
	v = json_object_get(root, "TKAInfo");
	if (!absent(v)) {
		bool disabled;

		if (!json_is_object(v)) {
			*why = "bad TKAInfo";
			ret = -EBADMSG;
			goto err;
		}
		if ((ret = get_bool(v, "Disabled", &disabled, "bad TKAInfo Disabled", why)) < 0)
			goto err;
		r->has_tka = true;
		r->tka_enabled = !disabled;
	}
	v = json_object_get(root, "PingRequest");
	if (!absent(v) && (ret = parse_ping(v, &r->ping, why)) < 0)
		goto err;
	json_decref(root);
	*out = r;
	return 0;
err:
	json_decref(root);
	mapjson_map_response_free(r);
	return ret < 0 ? ret : -EBADMSG;
}

void mapjson_map_response_free(struct mapjson_map_response *r)
{
	if (!r)
		return;
	netmap_node_put(r->node);
	free_nodes(r->peers, r->n_peers);
	free_nodes(r->peers_changed, r->n_peers_changed);
	free(r->peers_removed);
	for (size_t i = 0; i < r->n_patches; i++) {
		free(r->patches[i].endpoints);
		free_strv(r->patches[i].caps, r->patches[i].n_caps);
	}
	free(r->patches);
	free(r->online_change);
	free(r->seen_change);
	netmap_rules_put(r->packet_filter);
	for (size_t i = 0; i < r->n_filters; i++) {
		free(r->filters[i].name);
		netmap_rules_put(r->filters[i].rules);
	}
	free(r->filters);
	netmap_derpmap_put(r->derpmap);
	netmap_dns_put(r->dns);
	free(r->domain);
	if (r->ping) {
		free(r->ping->url);
		free(r->ping->types);
		free(r->ping->ip);
		free(r->ping);
	}
	free(r);
}

/* ---- RegisterResponse ---------------------------------------------------- */

int mapjson_parse_register_response(const char *json, size_t len,
				    struct mapjson_register_response **out, const char **why)
{
	struct mapjson_register_response *r = xcalloc(1, sizeof(*r));
	const json_t *user, *login, *sig;
	json_t *root;
	int ret = -EBADMSG;

	*out = NULL;
	root = load(json, len, MAPJSON_MAX_REGISTER_RESPONSE, why);
	if (!root)
		goto err;
	if ((ret = get_object(root, "User", 1 << 10, &user, "bad RegisterResponse User", why)) <
		    0 ||
	    (ret = get_object(root, "Login", 1 << 10, &login, "bad RegisterResponse Login", why)) <
		    0)
		goto err;
	if (user && (ret = get_int64(user, "ID", INT64_MIN, INT64_MAX, &r->user_id,
				     "bad RegisterResponse User.ID", why)) < 0)
		goto err;
	if (login)
		ret = get_string(login, "LoginName", &r->login_name,
				 "bad RegisterResponse Login.LoginName", why);
	else
		r->login_name = xstrdup("");
	if (ret < 0)
		goto err;
	if ((ret = get_bool(root, "NodeKeyExpired", &r->node_key_expired,
			    "bad RegisterResponse NodeKeyExpired", why)) < 0 ||
	    (ret = get_bool(root, "MachineAuthorized", &r->machine_authorized,
			    "bad RegisterResponse MachineAuthorized", why)) < 0 ||
	    (ret = get_string(root, "AuthURL", &r->auth_url, "bad RegisterResponse AuthURL", why)) <
		    0 ||
	    (ret = get_string(root, "Error", &r->error, "bad RegisterResponse Error", why)) < 0)
		goto err;
	/* tkatype.MarshaledSignature: base64 bytes; any non-empty value means
	 * tailnet lock wants a re-signature. */
	sig = json_object_get(root, "NodeKeySignature");
	if (!absent(sig)) {
		if (!json_is_string(sig)) {
			*why = "bad RegisterResponse NodeKeySignature";
			ret = -EBADMSG;
			goto err;
		}
		r->has_node_key_signature = json_string_length(sig) > 0;
	}
	json_decref(root);
	*out = r;
	return 0;
err:
	json_decref(root);
	mapjson_register_response_free(r);
	return ret < 0 ? ret : -EBADMSG;
}

void mapjson_register_response_free(struct mapjson_register_response *r)
{
	if (!r)
		return;
	free(r->login_name);
	free(r->auth_url);
	free(r->error);
	free(r);
}

/* ---- Requests ------------------------------------------------------------ */

/* Sets o[k] = v when v is not NULL; jansson refuses invalid UTF-8 (then
 * json_string() returns NULL), which is counted in *bad. */
static void set_str(json_t *o, const char *k, const char *v, int *bad)
{
	json_t *s;

	if (!v)
		return;
	s = json_string(v);
	if (!s || json_object_set_new(o, k, s) < 0)
		(*bad)++;
}

static json_t *key_json(const char *prefix, const uint8_t *key)
{
	char buf[32 + KEY_HEX_LEN + 2];

	return json_string(keys_to_text(prefix, key, buf, sizeof(buf)));
}

static int hostinfo_json(const struct mapjson_hostinfo *hi, json_t **out, const char **why)
{
	json_t *o = json_object();
	int bad = 0;

	*out = NULL;
	set_str(o, "IPNVersion", hi->ipn_version, &bad);
	set_str(o, "BackendLogID", hi->backend_log_id, &bad);
	set_str(o, "OS", hi->os, &bad);
	set_str(o, "OSVersion", hi->os_version, &bad);
	if (hi->container)
		json_object_set_new(o, "Container", json_true());
	set_str(o, "Hostname", hi->hostname, &bad);
	set_str(o, "App", hi->app, &bad);
	if (hi->n_request_tags) {
		json_t *tags = json_array();

		for (size_t i = 0; i < hi->n_request_tags; i++) {
			json_t *t = json_string(hi->request_tags[i]);

			if (!t || json_array_append_new(tags, t) < 0)
				bad++;
		}
		json_object_set_new(o, "RequestTags", tags);
	}
	if (hi->has_netinfo) {
		json_t *ni = json_object(), *lat = json_object();

		json_object_set_new(ni, "WorkingIPv6", json_boolean(hi->working_ipv6));
		json_object_set_new(ni, "WorkingUDP", json_boolean(hi->working_udp));
		json_object_set_new(ni, "PreferredDERP", json_integer(hi->preferred_derp));
		for (size_t i = 0; i < hi->n_derp_latency; i++) {
			char k[32];

			snprintf(k, sizeof(k), "%d-v4", hi->derp_latency_regions[i]);
			json_object_set_new(lat, k, json_real(hi->derp_latency_v4[i]));
		}
		if (json_object_size(lat))
			json_object_set_new(ni, "DERPLatency", lat);
		else
			json_decref(lat);
		json_object_set_new(o, "NetInfo", ni);
	}
	if (bad) {
		json_decref(o);
		*why = "a Hostinfo string is not valid UTF-8";
		return -EINVAL;
	}
	*out = o;
	return 0;
}

/* Serialises o (and frees it) straight into our own buffer: json_dumpb
 * writes no intermediate copy, so after the caller wipes this buffer no
 * stray copy of an auth key is left in freed heap by the serialiser. */
static char *dump(json_t *o)
{
	size_t n = json_dumpb(o, NULL, 0, JSON_COMPACT);
	char *buf;

	if (n == 0)
		abort(); /* an object always serialises to at least "{}" */
	buf = xmalloc(n + 1);
	if (json_dumpb(o, buf, n, JSON_COMPACT) != n)
		abort();
	buf[n] = '\0';
	json_decref(o);
	return buf;
}

int mapjson_build_register_request(const struct mapjson_register_request *req, char **out,
				   const char **why)
{
	static const uint8_t zero[KEY_LEN];
	char when[40];
	json_t *o, *hi = NULL, *auth = NULL, *ak;
	int ret;

	*out = NULL;
	if (!req->node_key || !req->nl_key || !req->hostinfo) {
		*why = "register request needs node key, NL key and Hostinfo";
		return -EINVAL;
	}
	ret = hostinfo_json(req->hostinfo, &hi, why);
	if (ret < 0)
		return ret;
	o = json_object();
	json_object_set_new(o, "Version", json_integer(req->version));
	json_object_set_new(o, "NodeKey", key_json("nodekey", req->node_key));
	json_object_set_new(o, "OldNodeKey",
			    key_json("nodekey", req->old_node_key ? req->old_node_key : zero));
	json_object_set_new(o, "NLKey", key_json("nlpub", req->nl_key));
	if (req->auth_key) {
		ak = json_string(req->auth_key);
		if (!ak) {
			json_decref(hi);
			json_decref(o);
			*why = "auth key is not valid UTF-8";
			return -EINVAL;
		}
		auth = json_object();
		json_object_set_new(auth, "AuthKey", ak);
		json_object_set(o, "Auth", auth);
	}
	format_time(req->expiry ? req->expiry : GO_ZERO_TIME, when, sizeof(when));
	json_object_set_new(o, "Expiry", json_string(when));
	json_object_set_new(o, "Followup", json_string(req->followup ? req->followup : ""));
	json_object_set_new(o, "Hostinfo", hi);
	if (req->ephemeral)
		json_object_set_new(o, "Ephemeral", json_true());
	json_object_set_new(o, "NodeKeySignature", json_null());
	if (auth) {
		/* Wipe jansson's copy of the auth key before it is freed. */
		char *secret = (char *)json_string_value(json_object_get(auth, "AuthKey"));

		*out = dump(o);
		sodium_memzero(secret, strlen(secret));
		json_decref(auth);
	} else {
		*out = dump(o);
	}
	return 0;
}

int mapjson_build_map_request(const struct mapjson_map_request *req, char **out, const char **why)
{
	json_t *o, *hi = NULL;
	int ret;

	*out = NULL;
	if (!req->node_key || !req->hostinfo) {
		*why = "map request needs the node key and Hostinfo";
		return -EINVAL;
	}
	if (req->n_endpoints > NETMAP_MAX_ENDPOINTS) {
		*why = "too many endpoints for a map request";
		return -EINVAL;
	}
	ret = hostinfo_json(req->hostinfo, &hi, why);
	if (ret < 0)
		return ret;
	o = json_object();
	json_object_set_new(o, "Version", json_integer(req->version));
	if (req->compress)
		json_object_set_new(o, "Compress", json_string("zstd"));
	json_object_set_new(o, "KeepAlive", json_boolean(req->keep_alive));
	json_object_set_new(o, "NodeKey", key_json("nodekey", req->node_key));
	if (req->disco_key)
		json_object_set_new(o, "DiscoKey", key_json("discokey", req->disco_key));
	json_object_set_new(o, "Stream", json_boolean(req->stream));
	json_object_set_new(o, "Hostinfo", hi);
	if (req->n_endpoints) {
		json_t *eps = json_array(), *types = json_array();

		for (size_t i = 0; i < req->n_endpoints; i++) {
			char buf[64];

			json_array_append_new(eps, json_string(mapjson_format_endpoint(
							   &req->endpoints[i], buf, sizeof(buf))));
			json_array_append_new(
				types,
				json_integer(req->endpoint_types ? req->endpoint_types[i] : 0));
		}
		json_object_set_new(o, "Endpoints", eps);
		json_object_set_new(o, "EndpointTypes", types);
	}
	if (req->omit_peers)
		json_object_set_new(o, "OmitPeers", json_true());
	*out = dump(o);
	return 0;
}
