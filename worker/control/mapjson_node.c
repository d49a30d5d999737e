/* tailcfg.Node: the self node and every peer of a MapResponse. */
#include "mapjson_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"

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
	ret = mapjson__get_array(o, field, max, &arr, bad, why);
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
	ret = mapjson__get_array(o, "Capabilities", NETMAP_MAX_CAPS, &list,
				 "bad Capabilities in a node", why);
	if (ret < 0)
		return ret;
	ret = mapjson__get_object(o, "CapMap", NETMAP_MAX_CAPS, &map, "bad CapMap in a node", why);
	if (ret < 0)
		return ret;
	if (json_array_size(list) + json_object_size(map) == 0)
		return 0;
	caps = xcalloc(json_array_size(list) + json_object_size(map), sizeof(*caps));
	for (size_t i = 0; i < json_array_size(list); i++) {
		v = json_array_get(list, i);
		if (!json_is_string(v) || json_string_length(v) > NETMAP_MAX_STR) {
			mapjson__free_strv(caps, cnt);
			*why = "bad Capabilities in a node";
			return -EBADMSG;
		}
		if (!has_cap(caps, cnt, json_string_value(v)))
			caps[cnt++] = xstrdup(json_string_value(v));
	}
	json_object_foreach((json_t *)map, k, v)
	{
		if (strlen(k) > NETMAP_MAX_STR) {
			mapjson__free_strv(caps, cnt);
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
	if (mapjson__parse_id_key(s + sizeof(magic) - 1, INT_MAX, &v) < 0)
		return 0;
	return (int)v;
}

int mapjson__parse_node(const json_t *o, struct netmap_node **out, const char **why)
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
	if ((ret = mapjson__get_int64(o, "ID", 0, INT64_MAX, &n->id, "bad node ID", why)) < 0 ||
	    (ret = mapjson__get_int64(o, "User", INT64_MIN, INT64_MAX, &n->user, "bad node User",
				      why)) < 0)
		goto err;
	free(n->stable_id);
	free(n->name);
	n->stable_id = n->name = NULL;
	if ((ret = mapjson__get_string(o, "StableID", &n->stable_id, "bad node StableID", why)) <
		    0 ||
	    (ret = mapjson__get_string(o, "Name", &n->name, "bad node Name", why)) < 0 ||
	    (ret = mapjson__get_key(o, "Key", "nodekey", n->key, &n->has_key, "bad node Key",
				    why)) < 0 ||
	    (ret = mapjson__get_key(o, "Machine", "mkey", n->machine, &n->has_machine,
				    "bad node Machine", why)) < 0 ||
	    (ret = mapjson__get_key(o, "DiscoKey", "discokey", n->disco, &n->has_disco,
				    "bad node DiscoKey", why)) < 0 ||
	    (ret = mapjson__get_time(o, "KeyExpiry", &n->key_expiry, &n->has_key_expiry,
				     "bad node KeyExpiry", why)) < 0 ||
	    (ret = mapjson__get_bool(o, "Expired", &n->expired, "bad node Expired", why)) < 0 ||
	    (ret = get_prefixes(o, "Addresses", NETMAP_MAX_ADDRESSES, &n->addresses,
				&n->n_addresses, NULL, "bad node Addresses", why)) < 0 ||
	    (ret = get_prefixes(o, "AllowedIPs", NETMAP_MAX_ALLOWED_IPS, &n->allowed_ips,
				&n->n_allowed_ips, &present, "bad node AllowedIPs", why)) < 0 ||
	    (ret = get_prefixes(o, "PrimaryRoutes", NETMAP_MAX_ALLOWED_IPS, &n->primary_routes,
				&n->n_primary_routes, NULL, "bad node PrimaryRoutes", why)) < 0 ||
	    (ret = mapjson__get_array(o, "Endpoints", NETMAP_MAX_ENDPOINTS, &arr,
				      "bad node Endpoints", why)) < 0 ||
	    (ret = mapjson__endpoints_from(arr, &n->endpoints, &n->n_endpoints,
					   "bad node Endpoints", why)) < 0 ||
	    (ret = mapjson__get_int(o, "HomeDERP", 0, INT_MAX, &n->home_derp, "bad node HomeDERP",
				    why)) < 0 ||
	    (ret = mapjson__get_string(o, "DERP", &legacy, "bad node DERP", why)) < 0 ||
	    (ret = mapjson__get_bool(o, "Online", &n->online, "bad node Online", why)) < 0 ||
	    (ret = mapjson__get_time(o, "LastSeen", &n->last_seen, &n->has_last_seen,
				     "bad node LastSeen", why)) < 0 ||
	    (ret = mapjson__get_int(o, "Cap", 0, INT_MAX, &n->cap, "bad node Cap", why)) < 0 ||
	    (ret = mapjson__get_strings(o, "Tags", NETMAP_MAX_TAGS, &n->tags, &n->n_tags,
					"bad node Tags", why)) < 0 ||
	    (ret = parse_caps(o, &n->caps, &n->n_caps, why)) < 0 ||
	    (ret = mapjson__get_bool(o, "MachineAuthorized", &n->machine_authorized,
				     "bad node MachineAuthorized", why)) < 0 ||
	    (ret = mapjson__get_bool(o, "IsWireGuardOnly", &n->is_wireguard_only,
				     "bad node IsWireGuardOnly", why)) < 0 ||
	    (ret = mapjson__get_bool(o, "IsJailed", &n->is_jailed, "bad node IsJailed", why)) < 0 ||
	    (ret = mapjson__get_bool(o, "UnsignedPeerAPIOnly", &unsigned_only,
				     "bad node UnsignedPeerAPIOnly", why)) < 0)
		goto err;
	n->has_online = !mapjson__absent(json_object_get(o, "Online"));
	n->has_masq_addr = !mapjson__absent(json_object_get(o, "SelfNodeV4MasqAddrForThisPeer")) ||
			   !mapjson__absent(json_object_get(o, "SelfNodeV6MasqAddrForThisPeer"));

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
	if (!mapjson__absent(hi) && !json_is_object(hi)) {
		*why = "bad node Hostinfo";
		ret = -EBADMSG;
		goto err;
	}
	v = mapjson__absent(hi) ? NULL : hi;
	free(n->hostname);
	n->hostname = NULL;
	if (v)
		ret = mapjson__get_string(v, "Hostname", &n->hostname, "bad node Hostinfo.Hostname",
					  why);
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

void mapjson__free_nodes(struct netmap_node **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		netmap_node_put(v[i]);
	free(v);
}

int mapjson__get_nodes(const json_t *o, const char *field, struct netmap_node ***out, size_t *n,
		       const char *bad, const char **why)
{
	const json_t *arr;
	struct netmap_node **v;
	size_t cnt;
	int ret;

	*out = NULL;
	*n = 0;
	ret = mapjson__get_array(o, field, NETMAP_MAX_PEERS, &arr, bad, why);
	if (ret < 0 || !arr || !json_array_size(arr))
		return ret;
	cnt = json_array_size(arr);
	v = xcalloc(cnt, sizeof(*v));
	for (size_t i = 0; i < cnt; i++) {
		ret = mapjson__parse_node(json_array_get(arr, i), &v[i], why);
		if (ret < 0) {
			mapjson__free_nodes(v, i);
			return ret;
		}
	}
	*out = v;
	*n = cnt;
	return 0;
}
