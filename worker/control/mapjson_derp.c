/* tailcfg.DERPMap: regions, their nodes and the home parameters. */
#include "mapjson_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include "mem.h"

static int parse_derp_node(const json_t *o, struct netmap_derp_node *dn, const char **why)
{
	int ret;

	if (!json_is_object(o)) {
		*why = "a DERP node is not an object";
		return -EBADMSG;
	}
	if ((ret = mapjson__get_string(o, "Name", &dn->name, "bad DERP node Name", why)) < 0 ||
	    (ret = mapjson__get_int(o, "RegionID", 0, INT_MAX, &dn->region_id,
				    "bad DERP node RegionID", why)) < 0 ||
	    (ret = mapjson__get_string(o, "HostName", &dn->host_name, "bad DERP node HostName",
				       why)) < 0 ||
	    (ret = mapjson__get_string(o, "IPv4", &dn->ipv4, "bad DERP node IPv4", why)) < 0 ||
	    (ret = mapjson__get_string(o, "IPv6", &dn->ipv6, "bad DERP node IPv6", why)) < 0 ||
	    (ret = mapjson__get_int(o, "STUNPort", -1, 65535, &dn->stun_port,
				    "bad DERP node STUNPort", why)) < 0 ||
	    (ret = mapjson__get_bool(o, "STUNOnly", &dn->stun_only, "bad DERP node STUNOnly",
				     why)) < 0 ||
	    (ret = mapjson__get_int(o, "DERPPort", 0, 65535, &dn->derp_port,
				    "bad DERP node DERPPort", why)) < 0 ||
	    (ret = mapjson__get_bool(o, "InsecureForTests", &dn->insecure_for_tests,
				     "bad DERP node InsecureForTests", why)) < 0 ||
	    (ret = mapjson__get_string(o, "STUNTestIP", &dn->stun_test_ip,
				       "bad DERP node STUNTestIP", why)) < 0 ||
	    (ret = mapjson__get_bool(o, "CanPort80", &dn->can_port80, "bad DERP node CanPort80",
				     why)) < 0)
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
	if ((ret = mapjson__get_string(o, "RegionCode", &r->region_code, "bad DERP RegionCode",
				       why)) < 0 ||
	    (ret = mapjson__get_string(o, "RegionName", &r->region_name, "bad DERP RegionName",
				       why)) < 0 ||
	    (ret = mapjson__get_bool(o, "Avoid", &r->avoid, "bad DERP region Avoid", why)) < 0 ||
	    (ret = mapjson__get_bool(o, "NoMeasureNoHome", &r->no_measure_no_home,
				     "bad DERP region NoMeasureNoHome", why)) < 0 ||
	    (ret = mapjson__get_array(o, "Nodes", NETMAP_MAX_DERP_NODES, &nodes,
				      "bad DERP region Nodes", why)) < 0)
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
int mapjson__parse_derpmap(const json_t *o, struct netmap_derpmap **out, const char **why)
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
	if ((ret = mapjson__get_object(o, "Regions", NETMAP_MAX_DERP_REGIONS, &regions,
				       "bad DERPMap Regions", why)) < 0 ||
	    (ret = mapjson__get_bool(o, "OmitDefaultRegions", &d->omit_default_regions,
				     "bad DERPMap OmitDefaultRegions", why)) < 0 ||
	    (ret = mapjson__get_object(o, "HomeParams", 1 << 10, &home, "bad DERPMap HomeParams",
				       why)) < 0)
		goto err;
	if (regions) {
		d->has_regions = true;
		if (json_object_size(regions))
			d->regions = xcalloc(json_object_size(regions), sizeof(*d->regions));
		json_object_foreach((json_t *)regions, k, v)
		{
			if (mapjson__parse_id_key(k, INT_MAX, &id) < 0) {
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
		ret = mapjson__get_object(home, "RegionScore", NETMAP_MAX_DERP_REGIONS, &scores,
					  "bad DERPMap HomeParams.RegionScore", why);
		if (ret < 0)
			goto err;
		if (scores) {
			d->has_region_score = true;
			if (json_object_size(scores))
				d->scores = xcalloc(json_object_size(scores), sizeof(*d->scores));
			json_object_foreach((json_t *)scores, k, v)
			{
				if (mapjson__parse_id_key(k, INT_MAX, &id) < 0 ||
				    !json_is_number(v)) {
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
