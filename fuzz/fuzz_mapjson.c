/* The control-plane JSON parsers on arbitrary bytes.
 *
 * Byte 0 selects: 'R' parses the rest as a RegisterResponse; anything else
 * parses it as a MapResponse (packet-filter rules included: mapjson parses
 * them with filter_rules_from_json) and applies it both as the first
 * message of a stream and as a delta onto a small fixed netmap, then checks
 * the lookups and the invariants every snapshot must keep, and builds each
 * snapshot's data-plane configuration (the named rule lists as one
 * filter). The peer cache's parse of the same bytes must agree with the
 * plain one (check_cached). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "worker/control/mapjson.h"
#include "worker/control/netmap.h"
#include "worker/dataplane/dataplane.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { FUZZ_NOW = 1800000000 };

static const char base_map[] =
	"{\"Node\":{\"ID\":1,\"Addresses\":[\"100.64.0.1/32\"]},"
	"\"Peers\":[{\"ID\":2,\"Key\":\"nodekey:"
	"0202020202020202020202020202020202020202020202020202020202020202\","
	"\"Addresses\":[\"100.64.0.2/32\"],\"DERP\":\"127.3.3.40:1\"},"
	"{\"ID\":3,\"Key\":\"nodekey:"
	"0303030303030303030303030303030303030303030303030303030303030303\","
	"\"Addresses\":[\"100.64.0.3/32\"],\"HomeDERP\":2}],"
	"\"DERPMap\":{\"Regions\":{\"1\":{\"RegionID\":1,\"Nodes\":[{\"Name\":\"1a\"}]}}},"
	"\"PacketFilters\":{\"base\":[{\"SrcIPs\":[\"*\"]}],\"extra\":[]}}";

/* Checks what every snapshot promises its readers. */
static void check(const struct netmap *nm)
{
	size_t n_rules = 0;

	if (!nm)
		return;
	if (!nm->self || !nm->derpmap || !nm->dns || !nm->filters || !nm->domain ||
	    nm->n_by_key > nm->n_peers)
		abort();
	for (size_t i = 0; i < nm->filters->n_named; i++) {
		const struct netmap_rules *r = nm->filters->named[i].rules;

		if (!r || !r->rules == !r->bad)
			abort(); /* parsed, or kept with the reason */
		if (i && strcmp(nm->filters->named[i - 1].name, nm->filters->named[i].name) >= 0)
			abort(); /* sorted, unique names */
		n_rules += r->n_sent;
	}
	if (n_rules != nm->filters->n_rules)
		abort();
	for (size_t i = 0; i < nm->n_peers; i++) {
		const struct netmap_node *p = nm->peers[i];

		if (i && nm->peers[i - 1]->id >= p->id)
			abort(); /* sorted, unique IDs */
		if (netmap_peer_by_id(nm, p->id) != p)
			abort();
		if (p->has_key && !netmap_peer_by_key(nm, p->key))
			abort();
		if (!p->name || !p->stable_id || !p->hostname)
			abort();
	}
}

/* A snapshot builds a configuration, or is refused with a reason. */
static void check_config(const struct netmap *nm, struct filter_state *fs)
{
	struct dataplane_config *cfg = NULL;
	const char *why = NULL;

	if (!nm)
		return;
	if (dataplane_config_from_netmap(nm, FUZZ_NOW, fs, &cfg, &why) < 0) {
		if (cfg || !why)
			abort();
		return;
	}
	dataplane_config_free(cfg);
}

/* The peer cache's cut agrees with jansson: the cached parse of json, with
 * an empty cache and then a full one, fails as the plain parse did (ret,
 * why) or gives the same peers. */
static void check_cached(const char *json, size_t len, int ret, const char *why,
			 const struct mapjson_map_response *r)
{
	struct mapjson_peer_cache *pc = mapjson_peer_cache_new();

	for (int round = 0; round < 2; round++) {
		struct mapjson_map_response *c = NULL;
		const char *cwhy = NULL;
		int cret = mapjson_parse_map_response_cached(json, len, pc, &c, &cwhy);

		if (cret != ret || (ret && (c || !cwhy || strcmp(cwhy, why))))
			abort();
		if (!ret) {
			if (c->n_peers != r->n_peers)
				abort();
			for (size_t i = 0; i < r->n_peers; i++)
				if (c->peers[i]->id != r->peers[i]->id ||
				    strcmp(c->peers[i]->name, r->peers[i]->name) ||
				    c->peers[i]->n_endpoints != r->peers[i]->n_endpoints ||
				    memcmp(c->peers[i]->key, r->peers[i]->key,
					   sizeof(r->peers[i]->key)))
					abort();
		}
		mapjson_map_response_free(c);
	}
	mapjson_peer_cache_free(pc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *json = (const char *)data + 1, *why = NULL;
	size_t len;

	if (size < 1)
		return 0;
	len = size - 1;
	if (data[0] == 'R') {
		struct mapjson_register_response *rr = NULL;

		if (mapjson_parse_register_response(json, len, &rr, &why) < 0 && !why)
			abort();
		mapjson_register_response_free(rr);
	} else {
		struct mapjson_map_response *r = NULL, *b = NULL;
		struct netmap *first = NULL, *base = NULL, *delta = NULL;
		struct filter_state *fs;

		int ret = mapjson_parse_map_response(json, len, &r, &why);

		check_cached(json, len, ret, why, r);
		if (ret < 0) {
			if (!why || r)
				abort();
			return 0;
		}
		if (mapjson_parse_map_response(base_map, strlen(base_map), &b, &why) < 0 ||
		    netmap_apply(NULL, b, FUZZ_NOW, &base, &why) < 0)
			abort();
		netmap_apply(NULL, r, FUZZ_NOW, &first, &why);
		netmap_apply(base, r, FUZZ_NOW, &delta, &why);
		check(first);
		check(base);
		check(delta);
		log_set_level(LOG_ERR); /* a skipped rule is logged at WARN */
		fs = filter_state_new();
		check_config(first, fs);
		check_config(delta, fs);
		filter_state_free(fs);
		netmap_put(first);
		netmap_put(delta);
		netmap_put(base);
		mapjson_map_response_free(b);
		mapjson_map_response_free(r);
	}
	return 0;
}
