/* mapjson.c: tailcfg JSON against $TSCNI_SHARED_DIR/vectors: every message
 * of tailscale/mapresponse.json parsed to its listed fields, every
 * MapResponse and RegisterResponse of every capture of genuine tailscaled
 * 1.68.2 sessions parsed, the int64/2^53 and bound cases, the
 * capability-dependent node forms, and the requests we build compared field
 * by field with the RegisterReq/MapRequest tailscaled sent. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "worker/control/mapjson.c"
#include "worker/control/mapjson_node.c"
#include "worker/control/mapjson_derp.c"
#include "worker/control/mapjson_dns.c"
#include "worker/control/mapjson_map.c"
#include "worker/control/mapjson_register.c"
#include "worker/control/mapjson_request.c"
#include "worker/control/mapjson_peers.c"
#include "tests/unit/vectors.h"

static struct mapjson_map_response *parse_ok(const char *json)
{
	struct mapjson_map_response *r = NULL;
	const char *why = NULL;
	int ret = mapjson_parse_map_response(json, strlen(json), &r, &why);

	if (ret)
		fail_msg("parse failed (%s) for %.200s", why ? why : "?", json);
	assert_non_null(r);
	return r;
}

static void parse_bad(const char *json, const char *want_why)
{
	struct mapjson_map_response *r = (void *)1;
	const char *why = NULL;

	if (mapjson_parse_map_response(json, strlen(json), &r, &why) != -EBADMSG)
		fail_msg("accepted: %.200s", json);
	assert_null(r);
	assert_non_null(why);
	if (want_why)
		assert_string_equal(why, want_why);
}

/* The cached parse of json gives what the plain one gives: both fail with
 * the same reason, or both succeed with the same peers (by ID and name). */
static void cached_same(struct mapjson_peer_cache *pc, const char *json)
{
	struct mapjson_map_response *a = NULL, *b = NULL;
	const char *wa = NULL, *wb = NULL;
	int ra = mapjson_parse_map_response(json, strlen(json), &a, &wa);
	int rb = mapjson_parse_map_response_cached(json, strlen(json), pc, &b, &wb);

	if (ra != rb)
		fail_msg("plain %d (%s), cached %d (%s) for %s", ra, wa ? wa : "", rb, wb ? wb : "",
			 json);
	if (ra) {
		assert_null(b);
		assert_string_equal(wa, wb);
		return;
	}
	assert_int_equal(a->n_peers, b->n_peers);
	for (size_t i = 0; i < a->n_peers; i++) {
		assert_int_equal(a->peers[i]->id, b->peers[i]->id);
		assert_string_equal(a->peers[i]->name, b->peers[i]->name);
	}
	assert_int_equal(a->n_peers_changed, b->n_peers_changed);
	assert_int_equal(a->node != NULL, b->node != NULL);
	mapjson_map_response_free(a);
	mapjson_map_response_free(b);
}

/* The cache's count of peers taken from it and parsed, so far. */
static void cache_counts(const struct mapjson_peer_cache *pc, uint64_t hits, uint64_t misses)
{
	assert_int_equal(pc->hits, hits);
	assert_int_equal(pc->misses, misses);
}

/* A full map's peers whose bytes came in the last full map are the nodes
 * parsed then; changed ones are parsed; the cut gives way to the plain
 * parse on anything it does not expect. */
static void test_peer_cache(void **state)
{
	static const char *const odd[] = {
		/* Peers twice, or once with its key escaped: jansson's last wins. */
		"{\"Peers\":[{\"ID\":1,\"Name\":\"a.\"}],\"Peers\":[{\"ID\":2,\"Name\":\"b.\"}]}",
		"{\"Pe\\u0065rs\":[{\"ID\":5,\"Name\":\"e.\"}],\"Peers\":[{\"ID\":6,\"Name\":\"f."
		"\"}]}",
		"{\"Peers\":[{\"ID\":6,\"Name\":\"f.\"}],\"Pe\\u0065rs\":[{\"ID\":5,\"Name\":\"e."
		"\"}]}",
		"{\"Peers\":null}",
		"{\"Peers\":[]}",
		"{\"Peers\":[1,2]}",
		"{\"Peers\":[{\"ID\":1},2]}",
		"{\"Peers\":[{\"ID\":\"x\"}]}",
		"{\"Peers\":[{\"ID\":1}]} x",
		"{\"Peers\":[{\"ID\":1}]",
		"{\"Peers\":[{\"ID\":1,\"Name\":\"a}]\"}]}",
		"{\"Peers\":[{\"ID\":1}}]}",
		"{\"Peers\":[{\"ID\":1,\"Name\":\"q\\\"}],\"}]}",
		"{\"Peers\":[{\"ID\":1}],}",
		"[{\"Peers\":[{\"ID\":1}]}]",
		"{\"Node\":{\"ID\":9},\"Peers\":[{\"ID\":1} , {\"ID\":2}\n]}",
	};
	const char *a = "{\"Peers\":[{\"ID\":1,\"Name\":\"a.\"},{\"ID\":2,\"Name\":\"b.\"},"
			"{\"ID\":3,\"Name\":\"c.\"}]}";
	const char *b = "{\"KeepAlive\":false,\"Peers\":[{\"ID\":3,\"Name\":\"c.\"},"
			"{\"ID\":1,\"Name\":\"a2.\"},{\"ID\":2,\"Name\":\"b.\"}]}";
	struct mapjson_peer_cache *pc = mapjson_peer_cache_new();
	struct mapjson_map_response *ra = NULL, *rb = NULL, *rc = NULL;
	const char *why = NULL;

	(void)state;
	assert_int_equal(mapjson_parse_map_response_cached(a, strlen(a), pc, &ra, &why), 0);
	cache_counts(pc, 0, 3);
	assert_int_equal(mapjson_parse_map_response_cached(b, strlen(b), pc, &rb, &why), 0);
	cache_counts(pc, 2, 4);
	assert_ptr_equal(rb->peers[0], ra->peers[2]); /* c. */
	assert_ptr_equal(rb->peers[2], ra->peers[1]); /* b. */
	assert_string_equal(rb->peers[1]->name, "a2.");
	assert_ptr_not_equal(rb->peers[1], ra->peers[0]);
	/* Held by a response (or a netmap): kept by a trim. */
	mapjson_map_response_free(ra);
	mapjson_peer_cache_trim(pc);
	assert_int_equal(mapjson_parse_map_response_cached(b, strlen(b), pc, &rc, &why), 0);
	cache_counts(pc, 5, 4);
	mapjson_map_response_free(rb);
	mapjson_map_response_free(rc);
	/* Held by nothing else: dropped. */
	mapjson_peer_cache_trim(pc);
	assert_int_equal(mapjson_parse_map_response_cached(b, strlen(b), pc, &rc, &why), 0);
	cache_counts(pc, 5, 7);
	mapjson_map_response_free(rc);
	for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
		cached_same(pc, odd[i]);
		cached_same(pc, odd[i]); /* again, with the cache filled */
	}
	cached_same(NULL, a);
	mapjson_peer_cache_free(pc);
}

static void key_is(const uint8_t key[KEY_LEN], const char *prefix, const char *text)
{
	uint8_t want[KEY_LEN];

	assert_int_equal(keys_from_text(prefix, text, want), 0);
	assert_memory_equal(key, want, KEY_LEN);
}

static void prefix_is(const struct ip_prefix *p, const char *text)
{
	char buf[IP_PREFIX_STRLEN];

	assert_string_equal(ip_prefix_format(p, buf, sizeof(buf)), text);
}

static void endpoint_is(const struct netmap_endpoint *ep, const char *text)
{
	char buf[64];

	assert_string_equal(mapjson_format_endpoint(ep, buf, sizeof(buf)), text);
}

/* A parsed node against the JSON object it came from. */
static void node_matches(const struct netmap_node *n, const json_t *o)
{
	const json_t *v;
	size_t i;

	assert_int_equal(n->id, json_integer_value(json_object_get(o, "ID")));
	assert_string_equal(n->stable_id, vectors_str(o, "StableID"));
	assert_string_equal(n->name, vectors_str(o, "Name"));
	key_is(n->key, "nodekey", vectors_str(o, "Key"));
	if (json_object_get(o, "DiscoKey"))
		key_is(n->disco, "discokey", vectors_str(o, "DiscoKey"));
	if (json_object_get(o, "Machine"))
		key_is(n->machine, "mkey", vectors_str(o, "Machine"));
	v = json_object_get(o, "Addresses");
	assert_int_equal(n->n_addresses, json_array_size(v));
	for (i = 0; i < n->n_addresses; i++)
		prefix_is(&n->addresses[i], json_string_value(json_array_get(v, i)));
	v = json_object_get(o, "AllowedIPs");
	if (!v)
		v = json_object_get(o, "Addresses");
	assert_int_equal(n->n_allowed_ips, json_array_size(v));
	for (i = 0; i < n->n_allowed_ips; i++)
		prefix_is(&n->allowed_ips[i], json_string_value(json_array_get(v, i)));
	v = json_object_get(o, "Endpoints");
	assert_int_equal(n->n_endpoints, json_array_size(v));
	for (i = 0; i < n->n_endpoints; i++)
		endpoint_is(&n->endpoints[i], json_string_value(json_array_get(v, i)));
	if (json_object_get(o, "HomeDERP"))
		assert_int_equal(n->home_derp, json_integer_value(json_object_get(o, "HomeDERP")));
	else if (json_object_get(o, "DERP"))
		assert_int_equal(n->home_derp, atoi(strrchr(vectors_str(o, "DERP"), ':') + 1));
	else
		assert_int_equal(n->home_derp, 0);
	assert_string_equal(n->hostname, vectors_str(json_object_get(o, "Hostinfo"), "Hostname"));
	assert_int_equal(n->machine_authorized,
			 json_is_true(json_object_get(o, "MachineAuthorized")));
}

/* ---- Text forms ---------------------------------------------------------- */

static void test_time(void **state)
{
	static const struct {
		const char *text;
		int64_t sec;
		bool zero;
	} good[] = {
		{"2026-08-01T12:00:00Z", 1785585600, false},
		{"2020-08-03T00:00:00.000000001Z", 1596412800, false},
		{"0001-01-01T00:00:00Z", GO_ZERO_TIME, true},
		{"1970-01-01T00:02:03Z", 123, false},
		{"2026-01-01T01:00:00+01:00", 1767225600, false},
		{"2025-12-31T23:00:00-01:00", 1767225600, false},
		{"2000-02-29T23:59:59Z", 951868799, false},
		{"9999-12-31T23:59:59Z", 253402300799, false},
	};
	static const char *const bad[] = {
		"",
		"2026-08-01",
		"2026-08-01T12:00:00",
		"2026-08-01 12:00:00Z",
		"2026-13-01T12:00:00Z",
		"2026-02-29T12:00:00Z",
		"2026-04-31T12:00:00Z",
		"2026-08-01T24:00:00Z",
		"2026-08-01T12:00:00.Z",
		"2026-08-01T12:00:00.0000000001Z",
		"2026-08-01T12:00:00+0100",
		"2026-08-01T12:00:00Zjunk",
		"+026-08-01T12:00:00Z",
	};
	char buf[40];

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		int64_t sec;
		bool zero;

		assert_int_equal(mapjson_parse_time(good[i].text, &sec, &zero), 0);
		assert_int_equal(sec, good[i].sec);
		assert_int_equal(zero, good[i].zero);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int64_t sec;
		bool zero;

		if (mapjson_parse_time(bad[i], &sec, &zero) != -EINVAL)
			fail_msg("accepted time %s", bad[i]);
	}
	/* Formatting is the inverse for whole seconds, and Go's zero time. */
	mapjson__format_time(GO_ZERO_TIME, buf, sizeof(buf));
	assert_string_equal(buf, "0001-01-01T00:00:00Z");
	mapjson__format_time(123, buf, sizeof(buf));
	assert_string_equal(buf, "1970-01-01T00:02:03Z");
	mapjson__format_time(951868799, buf, sizeof(buf));
	assert_string_equal(buf, "2000-02-29T23:59:59Z");
}

static void test_endpoint(void **state)
{
	static const char *const good[] = {"10.99.0.11:41641", "[2001:db8::1]:7", "0.0.0.0:0",
					   "[::ffff:1.2.3.4]:65535"};
	static const char *const bad[] = {
		"1.2.3.4",	    "[::1]7",	  "1.2.3.4:70000", "::1:5",
		"[fe80::1%eth0]:1", "1.2.3.4:",	  "1.2.3.4:+5",	   ":5",
		"[::1]:000005",	    "1.2.3.4:5 ", "host:80",	   "[1.2.3.4]:5"};
	struct netmap_endpoint ep;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_int_equal(mapjson_parse_endpoint(good[i], &ep), 0);
		endpoint_is(&ep, good[i]);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (mapjson_parse_endpoint(bad[i], &ep) != -EINVAL)
			fail_msg("accepted endpoint %s", bad[i]);
}

/* ---- The golden stream's messages ----------------------------------------- */

static const json_t *message(const json_t *msgs, const char *name)
{
	size_t i;
	json_t *m;

	json_array_foreach(msgs, i, m)
	{
		if (!strcmp(vectors_str(m, "name"), name))
			return m;
	}
	fail_msg("message %s not in mapresponse.json", name);
	return NULL;
}

static json_t *body_of(const json_t *m)
{
	json_error_t err;
	json_t *b = json_loads(vectors_str(m, "json"), 0, &err);

	assert_non_null(b);
	return b;
}

static void test_vector_messages(void **state)
{
	json_t *root = vectors_load("tailscale/mapresponse.json");
	const json_t *msgs = json_object_get(root, "messages"), *m;
	struct mapjson_map_response *r;
	json_t *b, *peers;
	size_t i;

	(void)state;
	/* Every message parses. */
	json_array_foreach(msgs, i, m)
	{
		r = parse_ok(vectors_str(m, "json"));
		mapjson_map_response_free(r);
	}

	/* The full netmaps: self, peers, DERP, DNS, filter, domain, time. */
	for (int k = 0; k < 2; k++) {
		m = message(msgs, k ? "full-netmap-after-route-change" : "full-netmap");
		b = body_of(m);
		r = parse_ok(vectors_str(m, "json"));
		assert_false(r->keep_alive);
		assert_non_null(r->node);
		node_matches(r->node, json_object_get(b, "Node"));
		key_is(r->node->key, "nodekey",
		       vectors_str(json_array_get(json_object_get(root, "nodes"), 0),
				   "node_public"));
		peers = json_object_get(b, "Peers");
		assert_int_equal(r->n_peers, json_array_size(peers));
		assert_int_equal(r->n_peers, 2);
		for (size_t p = 0; p < r->n_peers; p++)
			node_matches(r->peers[p], json_array_get(peers, p));
		assert_non_null(r->derpmap);
		assert_true(r->derpmap->has_regions);
		assert_int_equal(r->derpmap->n_regions, 1);
		assert_int_equal(r->derpmap->regions[0].region_id, 1);
		assert_string_equal(r->derpmap->regions[0].region_code, "test");
		assert_int_equal(r->derpmap->regions[0].n_nodes, 1);
		assert_string_equal(r->derpmap->regions[0].nodes[0].host_name,
				    "derp1a.example.net");
		assert_string_equal(r->derpmap->regions[0].nodes[0].ipv6, "2001:db8::10");
		assert_false(r->derpmap->has_home_params);
		assert_non_null(r->dns);
		assert_int_equal(r->dns->n_resolvers, 1);
		assert_string_equal(r->dns->resolvers[0], "100.100.100.100");
		assert_true(r->dns->proxied);
		assert_int_equal(r->dns->n_domains, 1);
		assert_string_equal(r->dns->domains[0], "tail0000.ts.net");
		assert_int_equal(r->dns->n_cert_domains, 1);
		/* Parsed here, once: "*" is both families' /0, 0-65535 on both. */
		assert_non_null(r->packet_filter);
		assert_int_equal(r->packet_filter->n_sent, 2);
		assert_null(r->packet_filter->bad);
		assert_null(r->packet_filter->warn);
		assert_int_equal(r->packet_filter->rules->n_rules, 2);
		assert_int_equal(r->packet_filter->rules->rules[0].n_srcs, 2);
		assert_int_equal(r->packet_filter->rules->rules[0].srcs[0].len, 0);
		assert_int_equal(r->packet_filter->rules->rules[0].n_dsts, 2);
		assert_int_equal(r->packet_filter->rules->rules[0].dsts[0].last, 65535);
		assert_int_equal(r->packet_filter->rules->rules[1].n_cap_grants, 1);
		assert_false(r->has_packet_filters);
		assert_string_equal(r->domain, "fake-control.example.net");
		assert_true(r->has_collect_services);
		assert_true(r->collect_services);
		assert_true(r->has_control_time);
		assert_int_equal(r->control_time, 1596412800);
		if (k) {
			/* n2's approved subnet route: in AllowedIPs and PrimaryRoutes. */
			const struct netmap_node *n2 = r->peers[0];

			assert_int_equal(n2->id, 2);
			assert_int_equal(n2->n_allowed_ips, 3);
			prefix_is(&n2->allowed_ips[2], "10.98.2.0/24");
			assert_int_equal(n2->n_primary_routes, 1);
			prefix_is(&n2->primary_routes[0], "10.98.2.0/24");
		}
		mapjson_map_response_free(r);
		json_decref(b);
	}

	m = message(msgs, "peers-changed");
	b = body_of(m);
	r = parse_ok(vectors_str(m, "json"));
	assert_null(r->node);
	assert_int_equal(r->n_peers, 0);
	assert_int_equal(r->n_peers_changed, 1);
	node_matches(r->peers_changed[0], json_array_get(json_object_get(b, "PeersChanged"), 0));
	assert_int_equal(r->peers_changed[0]->cap, 130);
	assert_int_equal(r->peers_changed[0]->n_caps, 4);
	assert_null(r->packet_filter);
	assert_null(r->derpmap);
	assert_null(r->dns);
	assert_null(r->domain);
	mapjson_map_response_free(r);
	json_decref(b);

	m = message(msgs, "peers-changed-patch");
	r = parse_ok(vectors_str(m, "json"));
	assert_int_equal(r->n_patches, 1);
	assert_int_equal(r->patches[0].node_id, 3);
	assert_int_equal(r->patches[0].fields, MAPJSON_PATCH_DERP | MAPJSON_PATCH_ENDPOINTS |
						       MAPJSON_PATCH_ONLINE |
						       MAPJSON_PATCH_LAST_SEEN);
	assert_int_equal(r->patches[0].derp_region, 2);
	assert_int_equal(r->patches[0].n_endpoints, 1);
	endpoint_is(&r->patches[0].endpoints[0], "198.51.100.99:41641");
	assert_true(r->patches[0].online);
	assert_int_equal(r->patches[0].last_seen, 1785585600);
	mapjson_map_response_free(r);

	m = message(msgs, "online-change");
	r = parse_ok(vectors_str(m, "json"));
	assert_int_equal(r->n_online_change, 1);
	assert_int_equal(r->online_change[0].id, 2);
	assert_false(r->online_change[0].value);
	assert_int_equal(r->n_seen_change, 1);
	assert_int_equal(r->seen_change[0].id, 2);
	assert_true(r->seen_change[0].value);
	mapjson_map_response_free(r);

	m = message(msgs, "peers-removed");
	r = parse_ok(vectors_str(m, "json"));
	assert_int_equal(r->n_peers_removed, 1);
	assert_int_equal(r->peers_removed[0], 3);
	mapjson_map_response_free(r);

	m = message(msgs, "packet-filter");
	r = parse_ok(vectors_str(m, "json"));
	assert_non_null(r->packet_filter);
	assert_int_equal(r->packet_filter->rules->n_rules, 1);
	{
		const struct filter_rule *fr = &r->packet_filter->rules->rules[0];

		/* "IPProto":[6,1,58] */
		assert_int_equal(fr->protos[0], (1U << 6) | (1U << 1));
		assert_int_equal(fr->protos[1], 1U << (58 - 32));
		assert_int_equal(fr->n_srcs, 2);
		assert_int_equal(fr->dsts[0].first, 22);
		assert_int_equal(fr->dsts[0].last, 22);
	}
	mapjson_map_response_free(r);

	/* Upstream's marshalling drops an empty PacketFilter (omitempty): the
	 * "empty" message really is {}, which changes nothing. */
	m = message(msgs, "packet-filter-empty");
	assert_string_equal(vectors_str(m, "json"), "{}");
	r = parse_ok(vectors_str(m, "json"));
	assert_null(r->packet_filter);
	assert_false(r->has_packet_filters);
	assert_false(r->keep_alive);
	assert_null(r->node);
	mapjson_map_response_free(r);

	m = message(msgs, "packet-filters-named");
	r = parse_ok(vectors_str(m, "json"));
	assert_null(r->packet_filter);
	assert_true(r->has_packet_filters);
	assert_true(r->filters_clear_all);
	assert_int_equal(r->n_filters, 1);
	assert_string_equal(r->filters[0].name, "base");
	assert_int_equal(r->filters[0].rules->n_sent, 1);
	assert_int_equal(r->filters[0].rules->rules->n_rules, 1);
	mapjson_map_response_free(r);

	m = message(msgs, "derpmap");
	r = parse_ok(vectors_str(m, "json"));
	assert_non_null(r->derpmap);
	assert_true(r->derpmap->has_regions);
	assert_int_equal(r->derpmap->n_regions, 2);
	assert_int_equal(r->derpmap->regions[1].region_id, 2);
	assert_string_equal(r->derpmap->regions[1].nodes[0].ipv6, "none");
	assert_int_equal(r->derpmap->regions[1].nodes[0].stun_port, -1);
	assert_int_equal(r->derpmap->regions[1].nodes[0].derp_port, 8443);
	assert_true(r->derpmap->has_home_params);
	assert_true(r->derpmap->has_region_score);
	assert_int_equal(r->derpmap->n_scores, 1);
	assert_int_equal(r->derpmap->scores[0].region_id, 2);
	assert_true(r->derpmap->scores[0].score > 0.89 && r->derpmap->scores[0].score < 0.91);
	mapjson_map_response_free(r);

	m = message(msgs, "dnsconfig");
	r = parse_ok(vectors_str(m, "json"));
	assert_non_null(r->dns);
	assert_int_equal(r->dns->n_resolvers, 2);
	assert_string_equal(r->dns->resolvers[1], "https://dns.example/dns-query");
	assert_int_equal(r->dns->n_routes, 2);
	for (i = 0; i < r->dns->n_routes; i++) {
		if (!strcmp(r->dns->routes[i].suffix, "corp.example.")) {
			assert_int_equal(r->dns->routes[i].n_resolvers, 1);
			assert_string_equal(r->dns->routes[i].resolvers[0], "10.0.0.53");
		} else {
			assert_string_equal(r->dns->routes[i].suffix, "ts.net.");
			assert_int_equal(r->dns->routes[i].n_resolvers, 0);
		}
	}
	assert_int_equal(r->dns->n_domains, 2);
	assert_int_equal(r->dns->n_extra_records, 1);
	assert_string_equal(r->dns->extra_records[0].name, "db.tail0000.ts.net.");
	assert_string_equal(r->dns->extra_records[0].type, "A");
	assert_string_equal(r->dns->extra_records[0].value, "100.64.0.2");
	mapjson_map_response_free(r);

	m = message(msgs, "keepalive");
	r = parse_ok(vectors_str(m, "json"));
	assert_true(r->keep_alive);
	assert_null(r->node);
	mapjson_map_response_free(r);

	/* The uncompressed answer to n2's request is a full map too. */
	b = json_object_get(root, "uncompressed");
	r = parse_ok(vectors_str(b, "json"));
	assert_non_null(r->node);
	assert_int_equal(r->node->id, 2);
	mapjson_map_response_free(r);
	json_decref(root);
}

/* ---- Captures of genuine sessions ------------------------------------------ */

struct capture_counts {
	int files;
	int map_responses;
	int register_responses;
	int peers;
};

/* Parses one captured MapResponse or RegisterResponse (other kinds are
 * passed over) and compares it with the JSON field by field. */
static void parse_capture(const char *path, struct capture_counts *c)
{
	json_t *doc = vectors_load_path(path);
	const char *kind = json_string_value(json_object_get(doc, "kind"));
	json_t *body = kind ? json_object_get(doc, "body") : doc;
	const char *why = NULL;
	char *text;

	c->files++;
	if (kind && strcmp(kind, "MapResponse") && strcmp(kind, "RegisterResponse")) {
		json_decref(doc);
		return;
	}
	text = json_dumps(body, JSON_COMPACT);
	assert_non_null(text);
	if (!kind || !strcmp(kind, "MapResponse")) {
		struct mapjson_map_response *r = NULL;
		const json_t *peers = json_object_get(body, "Peers");

		if (mapjson_parse_map_response(text, strlen(text), &r, &why))
			fail_msg("%s: %s", path, why);
		if (json_object_get(body, "Node"))
			node_matches(r->node, json_object_get(body, "Node"));
		assert_int_equal(r->n_peers, json_array_size(peers));
		for (size_t i = 0; i < r->n_peers; i++)
			node_matches(r->peers[i], json_array_get(peers, i));
		assert_int_equal(r->keep_alive, json_is_true(json_object_get(body, "KeepAlive")));
		c->peers += (int)r->n_peers;
		c->map_responses++;
		mapjson_map_response_free(r);
		/* The same through a peer cache: parsed, then every peer from it. */
		{
			struct mapjson_peer_cache *pc = mapjson_peer_cache_new();

			for (int round = 0; round < 2; round++) {
				if (mapjson_parse_map_response_cached(text, strlen(text), pc, &r,
								      &why))
					fail_msg("%s: cached: %s", path, why);
				assert_int_equal(r->n_peers, json_array_size(peers));
				for (size_t i = 0; i < r->n_peers; i++)
					node_matches(r->peers[i], json_array_get(peers, i));
				mapjson_map_response_free(r);
			}
			cache_counts(pc, json_array_size(peers), json_array_size(peers));
			mapjson_peer_cache_free(pc);
		}
	} else {
		struct mapjson_register_response *r = NULL;

		if (mapjson_parse_register_response(text, strlen(text), &r, &why))
			fail_msg("%s: %s", path, why);
		assert_int_equal(r->user_id, json_integer_value(json_object_get(
						     json_object_get(body, "User"), "ID")));
		assert_string_equal(r->login_name,
				    vectors_str(json_object_get(body, "Login"), "LoginName"));
		assert_true(r->machine_authorized);
		assert_false(r->node_key_expired);
		assert_false(r->has_node_key_signature);
		assert_string_equal(r->auth_url, "");
		assert_string_equal(r->error, "");
		c->register_responses++;
		mapjson_register_response_free(r);
	}
	free(text);
	json_decref(doc);
}

/* A capture session's entry: every file of an "n*-wire-messages" folder, in
 * name order, and every server-admin-mapresponse_*.json. */
static void parse_capture_entry(const char *dir, const char *name, void *arg)
{
	char path[5200], sub[4900];
	struct dirent **files;
	int n;

	if (!strncmp(name, "server-admin-mapresponse_", 25)) {
		snprintf(path, sizeof(path), "%s/%s", dir, name);
		parse_capture(path, arg);
	} else if (name[0] == 'n' && strstr(name, "-wire-messages")) {
		snprintf(sub, sizeof(sub), "%s/%s", dir, name);
		n = vectors_list(sub, &files);
		for (int f = 0; f < n; f++) {
			snprintf(path, sizeof(path), "%s/%s", sub, files[f]->d_name);
			parse_capture(path, arg);
			free(files[f]);
		}
		free(files);
	}
}

static void test_captures(void **state)
{
	struct capture_counts c = {0};

	(void)state;
	vectors_each_capture(parse_capture_entry, &c);
	assert_true(c.files > 50);
	print_message("captures: %d MapResponses (%d peers), %d RegisterResponses\n",
		      c.map_responses, c.peers, c.register_responses);
	/* 55 wire MapResponses and 4 server-side ones, 74 peers among them. */
	assert_int_equal(c.map_responses, 59);
	assert_int_equal(c.register_responses, 4);
	assert_int_equal(c.peers, 74);
}

static void test_register_response_forms(void **state)
{
	struct mapjson_register_response *r = NULL;
	const char *why = NULL;
	const char *s;

	(void)state;
	s = "{\"AuthURL\":\"https://login.example/a/1\",\"MachineAuthorized\":false,"
	    "\"NodeKeyExpired\":true,\"NodeKeySignature\":\"AAEC\",\"Error\":\"key expired\"}";
	assert_int_equal(mapjson_parse_register_response(s, strlen(s), &r, &why), 0);
	assert_string_equal(r->auth_url, "https://login.example/a/1");
	assert_false(r->machine_authorized);
	assert_true(r->node_key_expired);
	assert_true(r->has_node_key_signature);
	assert_string_equal(r->error, "key expired");
	assert_string_equal(r->login_name, "");
	mapjson_register_response_free(r);
	s = "{\"MachineAuthorized\":\"yes\"}";
	assert_int_equal(mapjson_parse_register_response(s, strlen(s), &r, &why), -EBADMSG);
	assert_null(r);
	assert_string_equal(why, "bad RegisterResponse MachineAuthorized");
	s = "[1]";
	assert_int_equal(mapjson_parse_register_response(s, strlen(s), &r, &why), -EBADMSG);
	s = "{\"Error\":";
	assert_int_equal(mapjson_parse_register_response(s, strlen(s), &r, &why), -EBADMSG);
	/* A body over 1 MiB is refused before parsing. */
	assert_int_equal(mapjson_parse_register_response(
				 "{}", (size_t)MAPJSON_MAX_REGISTER_RESPONSE + 1, &r, &why),
			 -EBADMSG);
	assert_string_equal(why, "control JSON document too large");
}

/* ---- int64 and bounds -------------------------------------------------------- */

static void test_int64(void **state)
{
	struct mapjson_map_response *r;

	(void)state;
	/* 2^53 + 1 cannot be represented by a double: it must come through. */
	r = parse_ok("{\"Node\":{\"ID\":9007199254740993,\"User\":9223372036854775807},"
		     "\"PeersRemoved\":[9007199254740995,9223372036854775807],"
		     "\"OnlineChange\":{\"9007199254740997\":true},"
		     "\"PeerSeenChange\":{\"9223372036854775807\":false},"
		     "\"PeersChangedPatch\":[{\"NodeID\":9007199254740999,\"Cap\":130}]}");
	assert_int_equal(r->node->id, 9007199254740993LL);
	assert_int_equal(r->node->user, INT64_MAX);
	assert_int_equal(r->n_peers_removed, 2);
	assert_int_equal(r->peers_removed[0], 9007199254740995LL);
	assert_int_equal(r->peers_removed[1], INT64_MAX);
	assert_int_equal(r->online_change[0].id, 9007199254740997LL);
	assert_int_equal(r->seen_change[0].id, INT64_MAX);
	assert_int_equal(r->patches[0].node_id, 9007199254740999LL);
	assert_int_equal(r->patches[0].fields, MAPJSON_PATCH_CAP);
	mapjson_map_response_free(r);

	parse_bad("{\"Node\":{\"ID\":1e3}}", "a node has no integer ID");
	parse_bad("{\"Node\":{\"ID\":1.0}}", "a node has no integer ID");
	parse_bad("{\"Node\":{\"ID\":\"1\"}}", "a node has no integer ID");
	parse_bad("{\"Node\":{\"ID\":-1}}", "bad node ID");
	parse_bad("{\"Node\":{\"ID\":9223372036854775808}}", "control JSON does not parse");
	parse_bad("{\"Node\":{}}", "a node has no integer ID");
	parse_bad("{\"PeersRemoved\":[9007199254740993.0]}", "bad PeersRemoved entry");
	parse_bad("{\"OnlineChange\":{\"9223372036854775808\":true}}", "bad OnlineChange");
	parse_bad("{\"OnlineChange\":{\"+1\":true}}", "bad OnlineChange");
	parse_bad("{\"OnlineChange\":{\" 1\":true}}", "bad OnlineChange");
	parse_bad("{\"OnlineChange\":{\"1x\":true}}", "bad OnlineChange");
	parse_bad("{\"OnlineChange\":{\"\":true}}", "bad OnlineChange");
	parse_bad("{\"OnlineChange\":{\"1\":1}}", "bad OnlineChange");
	parse_bad("{\"PeerSeenChange\":[1]}", "bad PeerSeenChange");
	parse_bad("{\"DERPMap\":{\"Regions\":{\"-1\":{}}}}", "bad DERPMap region ID key");
	parse_bad("{\"PeersChangedPatch\":[{\"NodeID\":2,\"DERPRegion\":1.5}]}",
		  "bad patch DERPRegion");
}

/* A node with n endpoints "10.0.0.1:<i>". */
static char *node_with_endpoints(size_t n)
{
	size_t cap = 64 + n * 24, len;
	char *s = malloc(cap);

	assert_non_null(s);
	len = (size_t)snprintf(s, cap, "{\"Peers\":[{\"ID\":5,\"Endpoints\":[");
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(s + len, cap - len, "%s\"10.0.0.1:%zu\"", i ? "," : "",
					i + 1);
	snprintf(s + len, cap - len, "]}]}");
	return s;
}

static void test_bounds(void **state)
{
	struct mapjson_map_response *r;
	char *s, *big;
	size_t n;

	(void)state;
	s = node_with_endpoints(NETMAP_MAX_ENDPOINTS);
	r = parse_ok(s);
	assert_int_equal(r->peers[0]->n_endpoints, NETMAP_MAX_ENDPOINTS);
	mapjson_map_response_free(r);
	free(s);
	s = node_with_endpoints(NETMAP_MAX_ENDPOINTS + 1);
	parse_bad(s, "bad node Endpoints");
	free(s);

	/* A string at the limit passes; one byte more fails. */
	n = NETMAP_MAX_STR;
	big = malloc(n + 64);
	assert_non_null(big);
	memcpy(big, "{\"Domain\":\"", 11);
	memset(big + 11, 'd', n);
	strcpy(big + 11 + n, "\"}");
	r = parse_ok(big);
	assert_int_equal(strlen(r->domain), n);
	mapjson_map_response_free(r);
	memset(big + 11, 'd', n + 1);
	strcpy(big + 12 + n, "\"}");
	parse_bad(big, "bad Domain");
	free(big);

	/* Embedded NUL in a string (jansson would need JSON_ALLOW_NUL). */
	parse_bad("{\"Domain\":\"a\\u0000b\"}", NULL);
	parse_bad("{\"Node\":{\"ID\":1,\"Key\":\"nodekey:00\"}}", "bad node Key");
	parse_bad("{\"Node\":{\"ID\":1,\"Key\":\"discokey:"
		  "0000000000000000000000000000000000000000000000000000000000000001\"}}",
		  "bad node Key");
	parse_bad("{\"Node\":{\"ID\":1,\"Addresses\":[\"100.64.0.1\"]}}", "bad node Addresses");
	parse_bad("{\"Node\":{\"ID\":1,\"Addresses\":[\"100.64.0.1/33\"]}}", "bad node Addresses");
	parse_bad("{\"Node\":{\"ID\":1,\"KeyExpiry\":\"tomorrow\"}}", "bad node KeyExpiry");
	parse_bad("{\"Node\":{\"ID\":1,\"Online\":\"true\"}}", "bad node Online");
	parse_bad("{\"Node\":{\"ID\":1,\"Hostinfo\":[]}}", "bad node Hostinfo");
	parse_bad("{\"Peers\":[1]}", "a node is not an object");
	parse_bad("{\"Peers\":{}}", "bad Peers");
	parse_bad("{\"PacketFilter\":{}}", "bad PacketFilter");
	parse_bad("{\"PacketFilter\":[1]}", "bad PacketFilter");
	parse_bad("{\"PacketFilters\":{\"base\":{}}}", "bad PacketFilters entry");
	parse_bad("{\"DNSConfig\":{\"Resolvers\":[\"1.1.1.1\"]}}", "bad DNSConfig Resolvers");
	parse_bad("{\"DNSConfig\":{\"Routes\":{\"x.\":{}}}}", "bad DNSConfig route");
	parse_bad("{\"DERPMap\":{\"Regions\":{\"1\":{\"Nodes\":[{\"DERPPort\":70000}]}}}}",
		  "bad DERP node DERPPort");
	parse_bad("{\"ControlTime\":\"now\"}", "bad ControlTime");
	parse_bad("{\"TKAInfo\":7}", "bad TKAInfo");
	parse_bad("[]", "control JSON is not an object");
	parse_bad("{\"KeepAlive\":true", "control JSON does not parse");
	parse_bad("", "control JSON does not parse");
}

/* ---- Capability-dependent forms ---------------------------------------------- */

static void test_node_forms(void **state)
{
	struct mapjson_map_response *r;

	(void)state;
	/* AllowedIPs absent or null: a copy of Addresses; [] stays empty. */
	r = parse_ok("{\"Peers\":["
		     "{\"ID\":1,\"Addresses\":[\"100.64.0.1/32\",\"fd7a:115c:a1e0::1/128\"]},"
		     "{\"ID\":2,\"Addresses\":[\"100.64.0.2/32\"],\"AllowedIPs\":null},"
		     "{\"ID\":3,\"Addresses\":[\"100.64.0.3/32\"],\"AllowedIPs\":[]},"
		     "{\"ID\":4,\"Addresses\":[\"100.64.0.4/32\"],"
		     "\"AllowedIPs\":[\"100.64.0.4/32\",\"10.0.0.0/8\"]},"
		     "{\"ID\":5,\"Addresses\":[\"100.64.0.5/32\"],"
		     "\"AllowedIPs\":[\"10.0.0.0/8\"],\"UnsignedPeerAPIOnly\":true}]}");
	assert_int_equal(r->n_peers, 5);
	assert_int_equal(r->peers[0]->n_allowed_ips, 2);
	prefix_is(&r->peers[0]->allowed_ips[0], "100.64.0.1/32");
	prefix_is(&r->peers[0]->allowed_ips[1], "fd7a:115c:a1e0::1/128");
	assert_ptr_not_equal(r->peers[0]->allowed_ips, r->peers[0]->addresses);
	assert_int_equal(r->peers[1]->n_allowed_ips, 1);
	prefix_is(&r->peers[1]->allowed_ips[0], "100.64.0.2/32");
	assert_int_equal(r->peers[2]->n_allowed_ips, 0);
	assert_int_equal(r->peers[3]->n_allowed_ips, 2);
	prefix_is(&r->peers[3]->allowed_ips[1], "10.0.0.0/8");
	assert_int_equal(r->peers[4]->n_allowed_ips, 1);
	prefix_is(&r->peers[4]->allowed_ips[0], "100.64.0.5/32");
	mapjson_map_response_free(r);

	/* HomeDERP versus the legacy "127.3.3.40:<region>" string. */
	r = parse_ok("{\"Peers\":["
		     "{\"ID\":1,\"DERP\":\"127.3.3.40:7\"},"
		     "{\"ID\":2,\"HomeDERP\":3},"
		     "{\"ID\":3,\"HomeDERP\":3,\"DERP\":\"127.3.3.40:9\"},"
		     "{\"ID\":4,\"DERP\":\"10.0.0.1:7\"},"
		     "{\"ID\":5,\"DERP\":\"127.3.3.40:x\"},"
		     "{\"ID\":6}]}");
	assert_int_equal(r->peers[0]->home_derp, 7);
	assert_int_equal(r->peers[1]->home_derp, 3);
	assert_int_equal(r->peers[2]->home_derp, 3);
	assert_int_equal(r->peers[3]->home_derp, 0);
	assert_int_equal(r->peers[4]->home_derp, 0);
	assert_int_equal(r->peers[5]->home_derp, 0);
	mapjson_map_response_free(r);

	/* Capabilities and CapMap keys fold together without duplicates; the
	 * zero disco key is "none"; Go's zero KeyExpiry is "never". */
	r = parse_ok(
		"{\"Node\":{\"ID\":1,\"Capabilities\":[\"a\",\"b\",\"a\"],"
		"\"CapMap\":{\"b\":[],\"c\":null},\"Tags\":[\"tag:k8s\"],"
		"\"DiscoKey\":\"discokey:"
		"0000000000000000000000000000000000000000000000000000000000000000\","
		"\"KeyExpiry\":\"0001-01-01T00:00:00Z\","
		"\"SelfNodeV4MasqAddrForThisPeer\":\"100.64.9.9\"},"
		"\"TKAInfo\":{\"Head\":\"x\"},\"CollectServices\":\"false\","
		"\"PingRequest\":{\"URL\":\"https://c/p\",\"Types\":\"c2n\",\"URLIsNoise\":true}}");
	assert_int_equal(r->node->n_caps, 3);
	assert_string_equal(r->node->caps[2], "c");
	assert_int_equal(r->node->n_tags, 1);
	assert_false(r->node->has_disco);
	assert_false(r->node->has_key_expiry);
	assert_true(r->node->has_masq_addr);
	assert_true(r->has_tka);
	assert_true(r->tka_enabled);
	assert_true(r->has_collect_services);
	assert_false(r->collect_services);
	assert_non_null(r->ping);
	assert_string_equal(r->ping->url, "https://c/p");
	assert_string_equal(r->ping->types, "c2n");
	assert_true(r->ping->url_is_noise);
	mapjson_map_response_free(r);

	/* PacketFilter: [] is present and empty; absent and null are absent. */
	r = parse_ok("{\"PacketFilter\":[]}");
	assert_non_null(r->packet_filter);
	assert_int_equal(r->packet_filter->n_sent, 0);
	assert_int_equal(r->packet_filter->rules->n_rules, 0);
	mapjson_map_response_free(r);
	r = parse_ok("{\"PacketFilter\":null}");
	assert_null(r->packet_filter);
	mapjson_map_response_free(r);
	/* Rules that do not parse are kept with the reason (the data plane
	 * refuses them; the rest of the message applies); a skipped entry
	 * leaves a warning. */
	r = parse_ok("{\"PacketFilter\":[{\"SrcIPs\":\"*\"}],\"PacketFilters\":{\"w\":"
		     "[{\"SrcIPs\":[\"1.2.3.4/33\"]}]}}");
	assert_int_equal(r->packet_filter->n_sent, 1);
	assert_null(r->packet_filter->rules);
	assert_non_null(r->packet_filter->bad);
	assert_null(r->filters[0].rules->bad);
	assert_non_null(r->filters[0].rules->warn);
	assert_int_equal(r->filters[0].rules->rules->n_rules, 1);
	mapjson_map_response_free(r);
	r = parse_ok("{\"PacketFilters\":{\"*\":[],\"a\":null}}");
	assert_true(r->has_packet_filters);
	assert_false(r->filters_clear_all);
	assert_int_equal(r->n_filters, 1);
	assert_null(r->filters[0].rules);
	mapjson_map_response_free(r);
	r = parse_ok("{\"DERPMap\":{\"Regions\":{\"1\":null,\"2\":{\"RegionCode\":\"b\"}},"
		     "\"HomeParams\":{}}}");
	assert_int_equal(r->derpmap->n_regions, 1);
	assert_int_equal(r->derpmap->regions[0].region_id, 2);
	assert_true(r->derpmap->has_home_params);
	assert_false(r->derpmap->has_region_score);
	mapjson_map_response_free(r);
}

/* ---- Requests we build -------------------------------------------------------- */

/* The top-level keys of a JSON object, compared as sets. */
static void same_keys(const json_t *ours, const json_t *theirs, const char *what)
{
	const char *k;
	json_t *v;

	json_object_foreach((json_t *)theirs, k, v)
	{
		if (!json_object_get(ours, k))
			fail_msg("%s: we do not send %s", what, k);
	}
	json_object_foreach((json_t *)ours, k, v)
	{
		if (!json_object_get(theirs, k))
			fail_msg("%s: tailscaled does not send %s", what, k);
	}
}

/* Every Hostinfo key we send is one tailscaled sends (we send fewer). */
static void hostinfo_subset(const json_t *ours, const json_t *theirs)
{
	const char *k;
	json_t *v;

	json_object_foreach((json_t *)ours, k, v)
	{
		if (!json_object_get(theirs, k))
			fail_msg("Hostinfo: tailscaled does not send %s", k);
		if (json_typeof(v) != json_typeof(json_object_get(theirs, k)) &&
		    !(json_is_boolean(v) && json_is_boolean(json_object_get(theirs, k))))
			fail_msg("Hostinfo: %s has another type", k);
	}
}

static json_t *capture_body(const char *rel)
{
	char capture[4096];
	json_t *doc, *body;

	snprintf(capture, sizeof(capture), "captures/%s", rel);
	doc = vectors_load(capture);
	body = json_incref(json_object_get(doc, "body"));
	json_decref(doc);
	assert_non_null(body);
	return body;
}

static void text_key(const json_t *o, const char *field, const char *prefix, uint8_t key[KEY_LEN])
{
	assert_int_equal(keys_from_text(prefix, vectors_str(o, field), key), 0);
}

static json_t *parse_built(const char *text)
{
	json_error_t err;
	json_t *o = json_loads(text, 0, &err);

	if (!o)
		fail_msg("we built invalid JSON: %s", err.text);
	return o;
}

static void test_build_register(void **state)
{
	static const char *const dirs[] = {"1.68.2-ctl1.68.2/n3-wire-messages",
					   "1.68.2-nodes_ctl1.102.3/n1-wire-messages",
					   "1.68.2-nodes_ctl1.68.2_derper1.102.3/n1-wire-messages",
					   "cleartext-derp-session/n1-wire-messages"};

	(void)state;
	for (size_t d = 0; d < sizeof(dirs) / sizeof(dirs[0]); d++) {
		char rel[256];
		json_t *want, *ours, *hi_want;
		uint8_t nk[KEY_LEN], old[KEY_LEN], nl[KEY_LEN];
		struct mapjson_hostinfo hi = {0};
		struct mapjson_register_request req = {0};
		const char *why = NULL;
		char *text;

		snprintf(rel, sizeof(rel), "%s/001-RegisterReq.json", dirs[d]);
		want = capture_body(rel);
		hi_want = json_object_get(want, "Hostinfo");
		text_key(want, "NodeKey", "nodekey", nk);
		text_key(want, "OldNodeKey", "nodekey", old);
		text_key(want, "NLKey", "nlpub", nl);
		hi.ipn_version = vectors_str(hi_want, "IPNVersion");
		hi.backend_log_id = vectors_str(hi_want, "BackendLogID");
		hi.os = vectors_str(hi_want, "OS");
		hi.os_version = vectors_str(hi_want, "OSVersion");
		hi.hostname = vectors_str(hi_want, "Hostname");
		hi.container = true;
		req.version = (int)json_integer_value(json_object_get(want, "Version"));
		req.node_key = nk;
		req.old_node_key = old;
		req.nl_key = nl;
		req.auth_key = vectors_str(json_object_get(want, "Auth"), "AuthKey");
		req.expiry = 0;
		req.followup = "";
		req.hostinfo = &hi;
		assert_int_equal(mapjson_build_register_request(&req, &text, &why), 0);
		ours = parse_built(text);
		same_keys(ours, want, "RegisterRequest");
		hostinfo_subset(json_object_get(ours, "Hostinfo"), hi_want);
		/* Every value we set is the one tailscaled sent. */
		for (const char *const *k = (const char *const[]){"NodeKey", "OldNodeKey", "NLKey",
								  "Expiry", "Followup", NULL};
		     *k; k++)
			assert_string_equal(vectors_str(ours, *k), vectors_str(want, *k));
		assert_true(
			json_equal(json_object_get(ours, "Auth"), json_object_get(want, "Auth")));
		assert_true(json_is_null(json_object_get(ours, "NodeKeySignature")));
		assert_true(json_equal(json_object_get(ours, "Version"),
				       json_object_get(want, "Version")));
		assert_true(
			json_equal(json_object_get(json_object_get(ours, "Hostinfo"), "Hostname"),
				   json_object_get(hi_want, "Hostname")));
		json_decref(ours);
		free(text);

		/* Without an auth key (a restart): no Auth; the logout time. */
		req.auth_key = NULL;
		req.old_node_key = NULL;
		req.expiry = 123;
		assert_int_equal(mapjson_build_register_request(&req, &text, &why), 0);
		ours = parse_built(text);
		assert_null(json_object_get(ours, "Auth"));
		assert_string_equal(vectors_str(ours, "Expiry"), "1970-01-01T00:02:03Z");
		assert_string_equal(vectors_str(ours, "OldNodeKey"),
				    "nodekey:0000000000000000000000000000"
				    "000000000000000000000000000000000000");
		json_decref(ours);
		free(text);

		/* A logout presents the auth key again, as tailscale logout does. */
		req.auth_key = "tskey-auth-logout";
		assert_int_equal(mapjson_build_register_request(&req, &text, &why), 0);
		ours = parse_built(text);
		assert_string_equal(vectors_str(json_object_get(ours, "Auth"), "AuthKey"),
				    "tskey-auth-logout");
		assert_string_equal(vectors_str(ours, "Expiry"), "1970-01-01T00:02:03Z");
		json_decref(ours);
		free(text);
		json_decref(want);
	}
}

/* Builds a MapRequest from a captured one's values and compares. */
static void build_like(const char *rel)
{
	json_t *want = capture_body(rel), *ours, *eps, *types;
	json_t *hi_want = json_object_get(want, "Hostinfo");
	json_t *ni_want = json_object_get(hi_want, "NetInfo");
	struct netmap_endpoint ep[NETMAP_MAX_ENDPOINTS];
	int ep_types[NETMAP_MAX_ENDPOINTS];
	uint8_t nk[KEY_LEN], dk[KEY_LEN];
	struct mapjson_hostinfo hi = {0};
	struct mapjson_map_request req = {0};
	const char *why = NULL;
	int region = 0;
	double lat = 0.0123;
	char *text;
	size_t i;

	text_key(want, "NodeKey", "nodekey", nk);
	text_key(want, "DiscoKey", "discokey", dk);
	eps = json_object_get(want, "Endpoints");
	types = json_object_get(want, "EndpointTypes");
	assert_true(json_array_size(eps) <= NETMAP_MAX_ENDPOINTS);
	for (i = 0; i < json_array_size(eps); i++) {
		assert_int_equal(
			mapjson_parse_endpoint(json_string_value(json_array_get(eps, i)), &ep[i]),
			0);
		ep_types[i] = (int)json_integer_value(json_array_get(types, i));
	}
	hi.ipn_version = vectors_str(hi_want, "IPNVersion");
	hi.backend_log_id = vectors_str(hi_want, "BackendLogID");
	hi.os = vectors_str(hi_want, "OS");
	hi.os_version = vectors_str(hi_want, "OSVersion");
	hi.hostname = vectors_str(hi_want, "Hostname");
	hi.container = true;
	if (ni_want) {
		region = (int)json_integer_value(json_object_get(ni_want, "PreferredDERP"));
		hi.has_netinfo = true;
		hi.preferred_derp = region;
		hi.working_udp = json_is_true(json_object_get(ni_want, "WorkingUDP"));
		hi.derp_latency_regions = &region;
		hi.derp_latency_v4 = &lat;
		hi.n_derp_latency = 1;
	}
	req.hostinfo = &hi;
	req.version = (int)json_integer_value(json_object_get(want, "Version"));
	req.compress = !strcmp(vectors_str(want, "Compress"), "zstd");
	req.keep_alive = json_is_true(json_object_get(want, "KeepAlive"));
	req.node_key = nk;
	req.disco_key = dk;
	req.stream = json_is_true(json_object_get(want, "Stream"));
	req.omit_peers = json_is_true(json_object_get(want, "OmitPeers"));
	req.endpoints = ep;
	req.endpoint_types = ep_types;
	req.n_endpoints = json_array_size(eps);
	assert_int_equal(mapjson_build_map_request(&req, &text, &why), 0);
	ours = parse_built(text);
	same_keys(ours, want, rel);
	hostinfo_subset(json_object_get(ours, "Hostinfo"), hi_want);
	if (ni_want)
		hostinfo_subset(json_object_get(json_object_get(ours, "Hostinfo"), "NetInfo"),
				ni_want);
	for (const char *const *k =
		     (const char *const[]){"Version", "Compress", "KeepAlive", "NodeKey",
					   "DiscoKey", "Stream", "OmitPeers", "Endpoints",
					   "EndpointTypes", NULL};
	     *k; k++) {
		const json_t *a = json_object_get(ours, *k), *b = json_object_get(want, *k);

		if ((a || b) && !json_equal(a, b))
			fail_msg("%s: %s differs", rel, *k);
	}
	json_decref(ours);
	free(text);
	json_decref(want);
}

static void test_build_map_request(void **state)
{
	(void)state;
	/* A stream poll before endpoints are known; a lite update with them. */
	build_like("1.68.2-nodes_ctl1.68.2_derper1.102.3/n1-wire-messages/004-MapRequest.json");
	build_like("1.68.2-nodes_ctl1.68.2_derper1.102.3/n1-wire-messages/003-MapRequest.json");
	build_like("1.68.2-nodes_ctl1.68.2_derper1.102.3/n1-wire-messages/019-MapRequest.json");
	build_like("1.68.2-nodes_ctl1.102.3/n1-wire-messages/024-MapRequest.json");
	build_like("1.68.2-ctl1.68.2/n3-wire-messages/013-MapRequest.json");
	build_like("cleartext-derp-session/n1-wire-messages/003-MapRequest.json");
}

static void test_build_errors(void **state)
{
	struct mapjson_hostinfo hi = {.hostname = "bad\xff"};
	uint8_t k[KEY_LEN] = {1};
	struct mapjson_map_request mr = {.node_key = k, .hostinfo = &hi};
	struct mapjson_register_request rr = {.node_key = k, .nl_key = k, .hostinfo = &hi};
	const char *why = NULL;
	char *text = (char *)1;

	(void)state;
	assert_int_equal(mapjson_build_map_request(&mr, &text, &why), -EINVAL);
	assert_null(text);
	assert_string_equal(why, "a Hostinfo string is not valid UTF-8");
	assert_int_equal(mapjson_build_register_request(&rr, &text, &why), -EINVAL);
	hi.hostname = "ok";
	rr.auth_key = "tskey-\xfe";
	assert_int_equal(mapjson_build_register_request(&rr, &text, &why), -EINVAL);
	assert_string_equal(why, "auth key is not valid UTF-8");
	mr.n_endpoints = NETMAP_MAX_ENDPOINTS + 1;
	assert_int_equal(mapjson_build_map_request(&mr, &text, &why), -EINVAL);
	mr.node_key = NULL;
	mr.n_endpoints = 0;
	assert_int_equal(mapjson_build_map_request(&mr, &text, &why), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_time),
		cmocka_unit_test(test_endpoint),
		cmocka_unit_test(test_vector_messages),
		cmocka_unit_test(test_captures),
		cmocka_unit_test(test_register_response_forms),
		cmocka_unit_test(test_int64),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_node_forms),
		cmocka_unit_test(test_peer_cache),
		cmocka_unit_test(test_build_register),
		cmocka_unit_test(test_build_map_request),
		cmocka_unit_test(test_build_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
