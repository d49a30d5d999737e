/* prevResult checks and the ADD result. */
#include "result.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "error.h"
#include "mem.h"

static const char decode_msg[] = "failed to decode prevResult";

/* The array under key, or NULL when absent or null. *bad is set when the
 * key holds anything else. */
static json_t *opt_array(const json_t *obj, const char *key, bool *bad)
{
	json_t *v = json_object_get(obj, key);

	*bad = false;
	if (!v || json_is_null(v))
		return NULL;
	if (!json_is_array(v)) {
		*bad = true;
		return NULL;
	}
	return v;
}

static bool opt_string_ok(const json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	return !v || json_is_null(v) || json_is_string(v);
}

/* Parses obj[key] as a CIDR prefix. */
static int get_prefix(const json_t *obj, const char *key, struct ip_prefix *p)
{
	json_t *v = json_object_get(obj, key);

	if (!json_is_string(v))
		return -EINVAL;
	return ip_prefix_parse(json_string_value(v), false, p);
}

/* The "interface" index of an IP entry: -1 when absent or null, -2 when it
 * is anything but a non-negative integer. */
static long long ip_index(const json_t *ip)
{
	json_t *v = json_object_get(ip, "interface");

	if (!v || json_is_null(v))
		return -1;
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -2;
	return json_integer_value(v);
}

int result_check_shape(const json_t *prev, size_t *n_ifaces, struct cni_error *err)
{
	json_t *ifaces, *ips, *routes, *e;
	struct ip_prefix p;
	bool bad;
	size_t i;

	*n_ifaces = 0;
	ifaces = opt_array(prev, "interfaces", &bad);
	if (bad)
		return error_set(err, CNI_ERR_DECODE, decode_msg,
				 "prevResult.interfaces must be an array");
	json_array_foreach(ifaces, i, e)
	{
		if (!json_is_object(e) || !json_is_string(json_object_get(e, "name")) ||
		    !opt_string_ok(e, "sandbox"))
			return error_set(err, CNI_ERR_DECODE, decode_msg,
					 "prevResult.interfaces[%zu] must be an object with a "
					 "string \"name\" (and a string \"sandbox\" if any)",
					 i);
	}
	*n_ifaces = json_array_size(ifaces);
	ips = opt_array(prev, "ips", &bad);
	if (bad)
		return error_set(err, CNI_ERR_DECODE, decode_msg,
				 "prevResult.ips must be an array");
	json_array_foreach(ips, i, e)
	{
		if (!json_is_object(e) || get_prefix(e, "address", &p) < 0)
			return error_set(err, CNI_ERR_DECODE, decode_msg,
					 "prevResult.ips[%zu].address must be an address with a "
					 "prefix length, e.g. \"10.0.0.5/24\"",
					 i);
		if (ip_index(e) == -2)
			return error_set(err, CNI_ERR_DECODE, decode_msg,
					 "prevResult.ips[%zu].interface must be a non-negative "
					 "integer",
					 i);
		if (!opt_string_ok(e, "gateway"))
			return error_set(err, CNI_ERR_DECODE, decode_msg,
					 "prevResult.ips[%zu].gateway must be a string", i);
	}
	routes = opt_array(prev, "routes", &bad);
	if (bad)
		return error_set(err, CNI_ERR_DECODE, decode_msg,
				 "prevResult.routes must be an array");
	json_array_foreach(routes, i, e)
	{
		if (!json_is_object(e) || get_prefix(e, "dst", &p) < 0)
			return error_set(err, CNI_ERR_DECODE, decode_msg,
					 "prevResult.routes[%zu].dst must be a CIDR prefix", i);
	}
	return 0;
}

static bool overlaps_tailscale(const struct ip_prefix *p)
{
	return ip_prefix_overlaps(p, &ip_tailscale_v4) || ip_prefix_overlaps(p, &ip_tailscale_v6);
}

int result_check_prev(const json_t *prev, const char *runtime_ifname, const char *our_ifname,
		      bool allow_overlap, struct cni_error *err)
{
	json_t *ifaces, *ips, *routes, *e;
	char buf[IP_PREFIX_STRLEN];
	struct ip_prefix p;
	size_t i, n_ifaces;
	bool bad;

	if (result_check_shape(prev, &n_ifaces, err) < 0)
		return -EINVAL;
	if (strcmp(our_ifname, runtime_ifname) == 0)
		return error_set(err, CNI_ERR_CONFIG, "invalid network configuration",
				 "interfaceName \"%s\" is the primary plugin's CNI_IFNAME",
				 our_ifname);
	ifaces = opt_array(prev, "interfaces", &bad);
	json_array_foreach(ifaces, i, e)
	{
		if (strcmp(json_string_value(json_object_get(e, "name")), our_ifname) == 0)
			return error_set(
				err, CNI_ERR_CONFIG, "invalid network configuration",
				"interfaceName \"%s\" is already prevResult.interfaces[%zu]; "
				"set another interfaceName",
				our_ifname, i);
	}
	ips = opt_array(prev, "ips", &bad);
	json_array_foreach(ips, i, e)
	{
		long long idx = ip_index(e);

		/* Appending ts0 at a dangling index would hand it the
		 * primary's pod IP (go-cni attributes IPs by index). */
		if (idx >= 0 && (unsigned long long)idx >= n_ifaces)
			return error_set(err, CNI_ERR_CONFIG, "inconsistent prevResult",
					 "prevResult.ips[%zu].interface is %lld but there are only "
					 "%zu interfaces",
					 i, idx, n_ifaces);
		get_prefix(e, "address", &p);
		if (!allow_overlap && overlaps_tailscale(&p))
			return error_set(
				err, CNI_ERR_CONFIG, "address range overlap",
				"prevResult.ips[%zu] %s overlaps the Tailscale ranges "
				"100.64.0.0/10 or fd7a:115c:a1e0::/48; set \"allowOverlap\": "
				"true to accept it",
				i, ip_prefix_format(&p, buf, sizeof(buf)));
	}
	routes = opt_array(prev, "routes", &bad);
	json_array_foreach(routes, i, e)
	{
		get_prefix(e, "dst", &p);
		/* A default route contains everything and is fine. */
		if (p.len == 0 || allow_overlap)
			continue;
		if (overlaps_tailscale(&p))
			return error_set(
				err, CNI_ERR_CONFIG, "address range overlap",
				"prevResult.routes[%zu] %s overlaps the Tailscale ranges "
				"100.64.0.0/10 or fd7a:115c:a1e0::/48; set \"allowOverlap\": "
				"true to accept it",
				i, ip_prefix_format(&p, buf, sizeof(buf)));
	}
	return 0;
}

bool result_clashes(const json_t *prev, const struct ip_prefix *addrs, size_t n)
{
	struct ip_prefix p, host;
	json_t *ips, *e;
	size_t i;
	bool bad;

	ips = prev ? opt_array(prev, "ips", &bad) : NULL;
	json_array_foreach(ips, i, e)
	{
		if (get_prefix(e, "address", &p) < 0)
			continue;
		/* The primary's address as a host route: "10.0.0.5/24" clashes
		 * with ours only when it is the same address. */
		host = p;
		host.len = p.family == AF_INET ? 32 : 128;
		for (size_t k = 0; k < n; k++) {
			if (ip_prefix_overlaps(&host, &addrs[k]))
				return true;
		}
	}
	return false;
}

int result_find_ours(const json_t *prev, const char *ifname, const char *sandbox, bool *found,
		     struct ip_prefix *addrs, size_t max, size_t *n, struct cni_error *err)
{
	json_t *ifaces, *ips, *e;
	size_t i, n_ifaces, idx = 0;
	bool bad;

	*found = false;
	*n = 0;
	if (result_check_shape(prev, &n_ifaces, err) < 0)
		return -EINVAL;
	ifaces = opt_array(prev, "interfaces", &bad);
	json_array_foreach(ifaces, i, e)
	{
		json_t *sb = json_object_get(e, "sandbox");

		if (strcmp(json_string_value(json_object_get(e, "name")), ifname) == 0 &&
		    json_is_string(sb) && strcmp(json_string_value(sb), sandbox) == 0) {
			*found = true;
			idx = i;
			break;
		}
	}
	if (!*found)
		return 0;
	ips = opt_array(prev, "ips", &bad);
	json_array_foreach(ips, i, e)
	{
		if (ip_index(e) != (long long)idx)
			continue;
		if (*n == max)
			return error_set(err, CNI_ERR_CONFIG, "inconsistent prevResult",
					 "more than %zu addresses on %s", max, ifname);
		get_prefix(e, "address", &addrs[(*n)++]);
	}
	return 0;
}

/* The array at r[key], created (replacing null) when missing. */
static json_t *ensure_array(json_t *r, const char *key)
{
	json_t *a = json_object_get(r, key);

	if (json_is_array(a))
		return a;
	a = json_array();
	json_object_set_new(r, key, a);
	return a;
}

static void append_ours(json_t *r, bool v1x, const struct result_ours *o)
{
	char buf[IP_PREFIX_STRLEN];
	json_t *ifaces = ensure_array(r, "interfaces");
	size_t idx = json_array_size(ifaces);
	json_t *iface = json_object();

	json_object_set_new(iface, "name", json_string(o->ifname));
	/* A TUN device has no L2 address, and the contract would leave "mac"
	 * out. podman's CNI backend (containers/common libnetwork/cni,
	 * CNIResultToStatus) fails the whole ADD with "invalid MAC address"
	 * unless every interface with a sandbox has a MAC that parses, so ts0
	 * carries the all-zero address. */
	json_object_set_new(iface, "mac", json_string(RESULT_TUN_MAC));
	if (v1x && o->mtu)
		json_object_set_new(iface, "mtu", json_integer(o->mtu));
	json_object_set_new(iface, "sandbox", json_string(o->sandbox));
	json_array_append_new(ifaces, iface);
	if (o->report_ips && o->n_addrs) {
		json_t *ips = ensure_array(r, "ips");

		for (size_t i = 0; i < o->n_addrs; i++) {
			json_t *ip = json_object();

			json_object_set_new(
				ip, "address",
				json_string(ip_prefix_format(&o->addrs[i], buf, sizeof(buf))));
			json_object_set_new(ip, "interface", json_integer((json_int_t)idx));
			json_array_append_new(ips, ip);
		}
	}
	if (o->n_routes) {
		json_t *routes = ensure_array(r, "routes");

		for (size_t i = 0; i < o->n_routes; i++) {
			json_t *rt = json_object();

			json_object_set_new(
				rt, "dst",
				json_string(ip_prefix_format(&o->routes[i], buf, sizeof(buf))));
			json_array_append_new(routes, rt);
		}
	}
}

/* 0.x: every IP carries "version" derived from its address; 1.x: none. */
static void convert_ips(json_t *r, bool v1x)
{
	json_t *ips = json_object_get(r, "ips"), *e;
	struct ip_prefix p;
	size_t i;

	json_array_foreach(ips, i, e)
	{
		if (!json_is_object(e))
			continue;
		if (v1x) {
			json_object_del(e, "version");
			continue;
		}
		if (get_prefix(e, "address", &p) < 0)
			continue;
		json_object_set_new(e, "version", json_string(p.family == AF_INET ? "4" : "6"));
	}
}

json_t *result_build(const json_t *prev, enum cni_version version, const struct result_ours *ours)
{
	bool v1x = conf_version_is_1x(version);
	json_t *r = prev ? json_deep_copy(prev) : json_object();

	if (!r)
		abort();
	json_object_set_new(r, "cniVersion", json_string(conf_version_names[version]));
	if (ours)
		append_ours(r, v1x, ours);
	convert_ips(r, v1x);
	return r;
}

char *result_dump(const json_t *r, size_t *len)
{
	char *text = json_dumps(r, JSON_COMPACT), *out;
	size_t n;

	if (!text)
		abort();
	n = strlen(text);
	out = xmalloc(n + 2);
	memcpy(out, text, n);
	out[n] = '\n';
	out[n + 1] = '\0';
	free(text);
	*len = n + 1;
	return out;
}
