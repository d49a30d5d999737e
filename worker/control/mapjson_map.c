/* tailcfg.MapResponse: the full map and its deltas (PeersChanged,
 * PeersChangedPatch, PeersRemoved, OnlineChange, PeerSeenChange), packet
 * filters, PingRequest; the Node, DERPMap and DNSConfig parts are read by
 * mapjson_node.c, mapjson_derp.c and mapjson_dns.c. */
#include "mapjson_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "filter_rules.h"
#include "mem.h"

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

	if (!mapjson__absent(pf)) {
		ret = rules_parse(pf, &r->packet_filter, "bad PacketFilter", why);
		if (ret < 0)
			return ret;
	}
	ret = mapjson__get_object(root, "PacketFilters", NETMAP_MAX_FILTER_NAMES, &named,
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
	if ((ret = mapjson__get_int64(o, "NodeID", 0, INT64_MAX, &pc->node_id, "bad patch NodeID",
				      why)) < 0 ||
	    (ret = mapjson__get_int(o, "DERPRegion", 0, INT_MAX, &pc->derp_region,
				    "bad patch DERPRegion", why)) < 0 ||
	    (ret = mapjson__get_int(o, "Cap", 0, INT_MAX, &pc->cap, "bad patch Cap", why)) < 0)
		return ret;
	if (pc->derp_region)
		pc->fields |= MAPJSON_PATCH_DERP;
	if (pc->cap)
		pc->fields |= MAPJSON_PATCH_CAP;
	if ((ret = mapjson__get_array(o, "Endpoints", NETMAP_MAX_ENDPOINTS, &arr,
				      "bad patch Endpoints", why)) < 0)
		return ret;
	if (arr) {
		pc->fields |= MAPJSON_PATCH_ENDPOINTS;
		ret = mapjson__endpoints_from(arr, &pc->endpoints, &pc->n_endpoints,
					      "bad patch Endpoints", why);
		if (ret < 0)
			return ret;
	}
	if (!mapjson__absent(json_object_get(o, "Key"))) {
		pc->fields |= MAPJSON_PATCH_KEY;
		if ((ret = mapjson__get_key(o, "Key", "nodekey", pc->key, &has, "bad patch Key",
					    why)) < 0)
			return ret;
	}
	if (!mapjson__absent(json_object_get(o, "DiscoKey"))) {
		pc->fields |= MAPJSON_PATCH_DISCO;
		if ((ret = mapjson__get_key(o, "DiscoKey", "discokey", pc->disco, &has,
					    "bad patch DiscoKey", why)) < 0)
			return ret;
	}
	if (!mapjson__absent(json_object_get(o, "Online"))) {
		pc->fields |= MAPJSON_PATCH_ONLINE;
		if ((ret = mapjson__get_bool(o, "Online", &pc->online, "bad patch Online", why)) <
		    0)
			return ret;
	}
	if (!mapjson__absent(json_object_get(o, "LastSeen"))) {
		pc->fields |= MAPJSON_PATCH_LAST_SEEN;
		if ((ret = mapjson__get_time(o, "LastSeen", &pc->last_seen, &has,
					     "bad patch LastSeen", why)) < 0)
			return ret;
	}
	if (!mapjson__absent(json_object_get(o, "KeyExpiry"))) {
		pc->fields |= MAPJSON_PATCH_KEY_EXPIRY;
		if ((ret = mapjson__get_time(o, "KeyExpiry", &pc->key_expiry, &pc->has_key_expiry,
					     "bad patch KeyExpiry", why)) < 0)
			return ret;
	}
	v = json_object_get(o, "CapMap");
	if (!mapjson__absent(v)) {
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
	ret = mapjson__get_object(root, field, MAPJSON_MAX_CHANGES, &obj, bad, why);
	if (ret < 0 || !json_object_size(obj))
		return ret;
	*out = xcalloc(json_object_size(obj), sizeof(**out));
	json_object_foreach((json_t *)obj, k, v)
	{
		struct mapjson_id_bool *e = &(*out)[*n];

		if (mapjson__parse_id_key(k, INT64_MAX, &e->id) < 0 || !json_is_boolean(v)) {
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

	ret = mapjson__get_array(root, "PeersRemoved", MAPJSON_MAX_CHANGES, &arr,
				 "bad PeersRemoved", why);
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

	ret = mapjson__get_array(root, "PeersChangedPatch", MAPJSON_MAX_CHANGES, &arr,
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
	if (mapjson__absent(v))
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
	if ((ret = mapjson__get_string(o, "URL", &p->url, "bad PingRequest URL", why)) < 0 ||
	    (ret = mapjson__get_string(o, "Types", &p->types, "bad PingRequest Types", why)) < 0 ||
	    (ret = mapjson__get_string(o, "IP", &p->ip, "bad PingRequest IP", why)) < 0 ||
	    (ret = mapjson__get_bool(o, "URLIsNoise", &p->url_is_noise,
				     "bad PingRequest URLIsNoise", why)) < 0 ||
	    (ret = mapjson__get_bool(o, "Log", &p->log, "bad PingRequest Log", why)) < 0)
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

int mapjson_parse_map_response(const char *json, size_t len, struct mapjson_map_response **out,
			       const char **why)
{
	struct mapjson_map_response *r = xcalloc(1, sizeof(*r));
	const json_t *v;
	json_t *root;
	int ret = -EBADMSG;

	*out = NULL;
	root = mapjson__load(json, len, MAPJSON_MAP_MAX, why);
	if (!root)
		goto err;
	if ((ret = mapjson__get_bool(root, "KeepAlive", &r->keep_alive, "bad KeepAlive", why)) < 0)
		goto err;
	v = json_object_get(root, "Node");
	if (!mapjson__absent(v) && (ret = mapjson__parse_node(v, &r->node, why)) < 0)
		goto err;
	if ((ret = mapjson__get_nodes(root, "Peers", &r->peers, &r->n_peers, "bad Peers", why)) <
		    0 ||
	    (ret = mapjson__get_nodes(root, "PeersChanged", &r->peers_changed, &r->n_peers_changed,
				      "bad PeersChanged", why)) < 0 ||
	    (ret = parse_removed(root, r, why)) < 0 || (ret = parse_patches(root, r, why)) < 0 ||
	    (ret = parse_id_bools(root, "OnlineChange", &r->online_change, &r->n_online_change,
				  "bad OnlineChange", why)) < 0 ||
	    (ret = parse_id_bools(root, "PeerSeenChange", &r->seen_change, &r->n_seen_change,
				  "bad PeerSeenChange", why)) < 0 ||
	    (ret = parse_filters(root, r, why)) < 0)
		goto err;
	v = json_object_get(root, "DERPMap");
	if (!mapjson__absent(v) && (ret = mapjson__parse_derpmap(v, &r->derpmap, why)) < 0)
		goto err;
	v = json_object_get(root, "DNSConfig");
	if (!mapjson__absent(v) && (ret = mapjson__parse_dns(v, &r->dns, why)) < 0)
		goto err;
	if ((ret = mapjson__get_string(root, "Domain", &r->domain, "bad Domain", why)) < 0)
		goto err;
	if (!r->domain[0]) {
		free(r->domain);
		r->domain = NULL;
	}
	if ((ret = parse_opt_bool(json_object_get(root, "CollectServices"),
				  &r->has_collect_services, &r->collect_services, why)) < 0 ||
	    (ret = mapjson__get_time(root, "ControlTime", &r->control_time, &r->has_control_time,
				     "bad ControlTime", why)) < 0)
		goto err;
	v = json_object_get(root, "TKAInfo");
	if (!mapjson__absent(v)) {
		bool disabled;

		if (!json_is_object(v)) {
			*why = "bad TKAInfo";
			ret = -EBADMSG;
			goto err;
		}
		if ((ret = mapjson__get_bool(v, "Disabled", &disabled, "bad TKAInfo Disabled",
					     why)) < 0)
			goto err;
		r->has_tka = true;
		r->tka_enabled = !disabled;
	}
	v = json_object_get(root, "PingRequest");
	if (!mapjson__absent(v) && (ret = parse_ping(v, &r->ping, why)) < 0)
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
	mapjson__free_nodes(r->peers, r->n_peers);
	mapjson__free_nodes(r->peers_changed, r->n_peers_changed);
	free(r->peers_removed);
	for (size_t i = 0; i < r->n_patches; i++) {
		free(r->patches[i].endpoints);
		mapjson__free_strv(r->patches[i].caps, r->patches[i].n_caps);
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
