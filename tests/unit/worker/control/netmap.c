/* netmap.c: applying MapResponses to immutable snapshots.
 *
 * - tests/vectors/tailscale/mapresponse.json applied message by
 *   message (full map, second full map, PeersChanged, PeersChangedPatch,
 *   OnlineChange/PeerSeenChange, PeersRemoved, PacketFilter, the {} that
 *   upstream makes of an empty PacketFilter, PacketFilters, DERPMap,
 *   DNSConfig, keep-alive), checking the result and that earlier snapshots
 *   never change;
 * - every capture session's MapResponses applied in order and compared with
 *   what that tailscaled made of them (nN-debug-netmap.json);
 * - the delta forms one by one, DERP map merging, packet filter names;
 * - memory: every allocation of netmap.c and mapjson.c is counted (the
 *   allocation functions are redirected below), so a large map's memory
 *   must come back to zero when its snapshots are dropped. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include "common/ip.h"
#include "common/keys.h"

/* Live allocations made by netmap.c and mapjson.c (jansson's own are not
 * counted: they go through jansson's allocator). */
static long live_allocs;

static void *count_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p)
		abort();
	live_allocs++;
	return p;
}

static void *count_xcalloc(size_t nmemb, size_t size)
{
	void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);

	if (!p)
		abort();
	live_allocs++;
	return p;
}

static char *count_xstrdup(const char *s)
{
	char *p = strdup(s);

	if (!p)
		abort();
	live_allocs++;
	return p;
}

static void count_free(void *p)
{
	if (p)
		live_allocs--;
	free(p);
}

#define xmalloc count_xmalloc
#define xcalloc count_xcalloc
#define xstrdup count_xstrdup
#define free	count_free
#include "worker/control/netmap.c"
#include "worker/control/mapjson.c"
#include "worker/control/mapjson_node.c"
#include "worker/control/mapjson_derp.c"
#include "worker/control/mapjson_dns.c"
#include "worker/control/mapjson_map.c"
#include "worker/control/mapjson_register.c"
#include "worker/control/mapjson_request.c"
#undef free
#undef xstrdup
#undef xcalloc
#undef xmalloc
#include "tests/unit/vectors.h"

enum { NOW = 1800000000 }; /* the local clock the tests pretend */

/* Parses json and applies it to prev; fails the test on any error. */
static struct netmap *apply_ok(const struct netmap *prev, const char *json)
{
	struct mapjson_map_response *r = NULL;
	struct netmap *nm = NULL;
	const char *why = NULL;

	if (mapjson_parse_map_response(json, strlen(json), &r, &why))
		fail_msg("parse: %s: %.200s", why, json);
	if (netmap_apply(prev, r, NOW, &nm, &why))
		fail_msg("apply: %s: %.200s", why, json);
	mapjson_map_response_free(r);
	return nm;
}

static const struct netmap_node *peer(const struct netmap *nm, int64_t id)
{
	const struct netmap_node *n = netmap_peer_by_id(nm, id);

	if (!n)
		fail_msg("peer %lld not in the netmap", (long long)id);
	return n;
}

static void endpoint_is(const struct netmap_endpoint *ep, const char *text)
{
	char buf[64];

	assert_string_equal(mapjson_format_endpoint(ep, buf, sizeof(buf)), text);
}

static void prefix_is(const struct ip_prefix *p, const char *text)
{
	char buf[IP_PREFIX_STRLEN];

	assert_string_equal(ip_prefix_format(p, buf, sizeof(buf)), text);
}

static void key_is(const uint8_t key[KEY_LEN], const char *prefix, const char *text)
{
	uint8_t want[KEY_LEN];

	assert_int_equal(keys_from_text(prefix, text, want), 0);
	assert_memory_equal(key, want, KEY_LEN);
}

/* ---- The golden stream ------------------------------------------------------- */

static const char *msg_json(const json_t *msgs, size_t i, const char *name)
{
	const json_t *m = json_array_get(msgs, i);

	assert_string_equal(vectors_str(m, "name"), name);
	return vectors_str(m, "json");
}

static void test_vector_stream(void **state)
{
	json_t *root, *msgs;
	struct netmap *nm[12] = {0};
	const struct netmap_node *n2, *n3, *n3_before;
	long base = live_allocs;

	(void)state;
	root = vectors_load("tailscale/mapresponse.json");
	msgs = json_object_get(root, "messages");
	assert_int_equal(json_array_size(msgs), 12);

	nm[0] = apply_ok(NULL, msg_json(msgs, 0, "full-netmap"));
	assert_int_equal(nm[0]->self->id, 1);
	key_is(nm[0]->self->key, "nodekey",
	       vectors_str(json_array_get(json_object_get(root, "nodes"), 0), "node_public"));
	assert_int_equal(nm[0]->n_peers, 2);
	assert_int_equal(nm[0]->n_by_key, 2);
	for (size_t i = 1; i < 3; i++) {
		uint8_t k[KEY_LEN];

		assert_int_equal(
			keys_from_text(
				"nodekey",
				vectors_str(json_array_get(json_object_get(root, "nodes"), i),
					    "node_public"),
				k),
			0);
		assert_ptr_equal(netmap_peer_by_key(nm[0], k), peer(nm[0], (int64_t)i + 1));
	}
	n2 = peer(nm[0], 2);
	assert_int_equal(n2->home_derp, 1);
	assert_int_equal(n2->n_allowed_ips, 2);
	endpoint_is(&n2->endpoints[0], "198.51.100.11:41641");
	assert_int_equal(nm[0]->derpmap->n_regions, 1);
	assert_int_equal(nm[0]->dns->n_resolvers, 1);
	assert_int_equal(nm[0]->filters->n_named, 1);
	assert_string_equal(nm[0]->filters->named[0].name, "base");
	assert_int_equal(nm[0]->filters->n_rules, 2);
	assert_string_equal(nm[0]->domain, "fake-control.example.net");
	assert_true(nm[0]->has_control_time);
	assert_int_equal(nm[0]->control_time, 1596412800);
	assert_int_equal(nm[0]->clock_skew, 1596412800 - NOW);

	/* testcontrol resends the complete map: n2 gains its route. */
	nm[1] = apply_ok(nm[0], msg_json(msgs, 1, "full-netmap-after-route-change"));
	assert_int_equal(nm[1]->n_peers, 2);
	assert_int_equal(peer(nm[1], 2)->n_allowed_ips, 3);
	prefix_is(&peer(nm[1], 2)->allowed_ips[2], "10.98.2.0/24");
	assert_int_equal(peer(nm[0], 2)->n_allowed_ips, 2); /* the old snapshot stays */

	/* PeersChanged replaces n2 whole; n3 is shared, not copied. */
	nm[2] = apply_ok(nm[1], msg_json(msgs, 2, "peers-changed"));
	assert_int_equal(nm[2]->n_peers, 2);
	n2 = peer(nm[2], 2);
	key_is(n2->disco, "discokey",
	       "discokey:60bb32fcb3b5aa53d3c5418e4a297b9826bf6588d417fbc0be76c80e1d826f22");
	endpoint_is(&n2->endpoints[0], "203.0.113.77:41641");
	assert_ptr_equal(peer(nm[2], 3), peer(nm[1], 3));
	assert_ptr_equal(nm[2]->self, nm[1]->self);
	assert_ptr_equal(nm[2]->derpmap, nm[1]->derpmap);
	assert_ptr_equal(nm[2]->filters, nm[1]->filters);
	assert_ptr_equal(nm[2]->dns, nm[1]->dns);

	/* PeersChangedPatch on n3: copy-on-write. */
	n3_before = peer(nm[2], 3);
	nm[3] = apply_ok(nm[2], msg_json(msgs, 3, "peers-changed-patch"));
	n3 = peer(nm[3], 3);
	assert_ptr_not_equal(n3, n3_before);
	assert_int_equal(n3->home_derp, 2);
	assert_int_equal(n3->n_endpoints, 1);
	endpoint_is(&n3->endpoints[0], "198.51.100.99:41641");
	assert_true(n3->has_online);
	assert_true(n3->online);
	assert_true(n3->has_last_seen);
	assert_int_equal(n3->last_seen, 1785585600);
	assert_memory_equal(n3->key, n3_before->key, KEY_LEN);
	assert_int_equal(n3_before->home_derp, 1);
	assert_int_equal(n3_before->n_endpoints, 2);
	assert_false(n3_before->has_online);
	assert_ptr_equal(peer(nm[3], 2), peer(nm[2], 2));

	/* OnlineChange {"2":false}, PeerSeenChange {"2":true} (= now). */
	nm[4] = apply_ok(nm[3], msg_json(msgs, 4, "online-change"));
	assert_true(peer(nm[4], 2)->has_online);
	assert_false(peer(nm[4], 2)->online);
	assert_true(peer(nm[4], 2)->has_last_seen);
	assert_int_equal(peer(nm[4], 2)->last_seen, NOW);
	assert_false(peer(nm[3], 2)->has_online);

	nm[5] = apply_ok(nm[4], msg_json(msgs, 5, "peers-removed"));
	assert_int_equal(nm[5]->n_peers, 1);
	assert_null(netmap_peer_by_id(nm[5], 3));
	assert_int_equal(nm[5]->n_by_key, 1);
	assert_non_null(netmap_peer_by_id(nm[4], 3));

	nm[6] = apply_ok(nm[5], msg_json(msgs, 6, "packet-filter"));
	assert_int_equal(nm[6]->filters->n_named, 1);
	assert_int_equal(nm[6]->filters->n_rules, 1);
	assert_int_equal(nm[6]->filters->named[0].rules->rules->rules[0].dsts[0].first, 22);
	assert_int_equal(nm[5]->filters->n_rules, 2);

	/* {}: nothing changes, the filter object is the same. */
	nm[7] = apply_ok(nm[6], msg_json(msgs, 7, "packet-filter-empty"));
	assert_ptr_equal(nm[7]->filters, nm[6]->filters);
	assert_int_equal(nm[7]->filters->n_rules, 1);
	assert_ptr_equal(nm[7]->self, nm[6]->self);
	assert_int_equal(nm[7]->n_peers, 1);

	nm[8] = apply_ok(nm[7], msg_json(msgs, 8, "packet-filters-named"));
	assert_int_equal(nm[8]->filters->n_named, 1);
	assert_string_equal(nm[8]->filters->named[0].name, "base");
	assert_int_equal(nm[8]->filters->n_rules, 1);
	{
		const struct filter_rule *fr = &nm[8]->filters->named[0].rules->rules->rules[0];

		/* {"SrcIPs":["*"],"DstPorts":[{"IP":"*","Ports":{"First":0,"Last":65535}}]} */
		assert_int_equal(fr->n_srcs, 2);
		assert_int_equal(fr->n_dsts, 2);
		assert_int_equal(fr->dsts[1].first, 0);
		assert_int_equal(fr->dsts[1].last, 65535);
	}

	nm[9] = apply_ok(nm[8], msg_json(msgs, 9, "derpmap"));
	assert_int_equal(nm[9]->derpmap->n_regions, 2);
	assert_int_equal(nm[9]->derpmap->n_scores, 1);
	assert_int_equal(nm[8]->derpmap->n_regions, 1);

	nm[10] = apply_ok(nm[9], msg_json(msgs, 10, "dnsconfig"));
	assert_int_equal(nm[10]->dns->n_resolvers, 2);
	assert_int_equal(nm[10]->dns->n_routes, 2);
	assert_int_equal(nm[10]->dns->n_extra_records, 1);
	assert_int_equal(nm[9]->dns->n_resolvers, 1);

	/* The keep-alive changes nothing: the same snapshot comes back. */
	nm[11] = apply_ok(nm[10], msg_json(msgs, 11, "keepalive"));
	assert_ptr_equal(nm[11], nm[10]);

	for (size_t i = 0; i < 12; i++)
		netmap_put(nm[i]);
	assert_int_equal(live_allocs, base);
	json_decref(root);
}

/* ---- Captures: what genuine tailscaled made of the same messages ------------- */

/* The region of a debug-netmap peer: HomeDERP, or the legacy DERP string. */
static int debug_home_derp(const json_t *p)
{
	const char *legacy = json_string_value(json_object_get(p, "DERP"));

	if (json_integer_value(json_object_get(p, "HomeDERP")))
		return (int)json_integer_value(json_object_get(p, "HomeDERP"));
	if (legacy && strrchr(legacy, ':'))
		return atoi(strrchr(legacy, ':') + 1);
	return 0;
}

/* nm against tailscaled's `debug netmap` of the same session. wire_peers is
 * the Peers of the last full map applied; it is consulted only for a peer
 * whose debug entry has no home DERP at all: the 1.68.2 node (capability 97)
 * predates HomeDERP and drops it, while we read it (capability >= 111).
 * later: nm comes from a server dump that may be newer than the node's
 * view, so it may hold peers that joined after (n3 in 1.68.2-ctl1.68.2);
 * every peer the node saw must still match exactly. */
static void compare_debug_netmap(const struct netmap *nm, const json_t *dbg,
				 const json_t *wire_peers, bool later, const char *what)
{
	const json_t *peers = json_object_get(dbg, "Peers"), *p, *v;
	size_t i, j;

	if (later ? nm->n_peers < json_array_size(peers) : nm->n_peers != json_array_size(peers))
		fail_msg("%s: %zu peers, tailscaled had %zu", what, nm->n_peers,
			 json_array_size(peers));
	key_is(nm->self->key, "nodekey", vectors_str(json_object_get(dbg, "SelfNode"), "Key"));
	json_array_foreach(peers, i, p)
	{
		uint8_t key[KEY_LEN];
		const struct netmap_node *n;
		int want_derp = debug_home_derp(p);

		assert_int_equal(keys_from_text("nodekey", vectors_str(p, "Key"), key), 0);
		n = netmap_peer_by_key(nm, key);
		if (!n)
			fail_msg("%s: peer %s missing", what, vectors_str(p, "Key"));
		assert_int_equal(n->id, json_integer_value(json_object_get(p, "ID")));
		v = json_object_get(p, "Addresses");
		assert_int_equal(n->n_addresses, json_array_size(v));
		for (j = 0; j < n->n_addresses; j++)
			prefix_is(&n->addresses[j], json_string_value(json_array_get(v, j)));
		v = json_object_get(p, "AllowedIPs");
		assert_int_equal(n->n_allowed_ips, json_array_size(v));
		for (j = 0; j < n->n_allowed_ips; j++)
			prefix_is(&n->allowed_ips[j], json_string_value(json_array_get(v, j)));
		v = json_object_get(p, "Endpoints");
		assert_int_equal(n->n_endpoints, json_array_size(v));
		for (j = 0; j < n->n_endpoints; j++)
			endpoint_is(&n->endpoints[j], json_string_value(json_array_get(v, j)));
		if (!want_derp && wire_peers) {
			const json_t *w;
			size_t k;

			json_array_foreach(wire_peers, k, w)
			{
				if (!strcmp(vectors_str(w, "Key"), vectors_str(p, "Key")))
					want_derp = debug_home_derp(w);
			}
		}
		if (n->home_derp != want_derp)
			fail_msg("%s: peer %s home DERP %d, want %d", what, vectors_str(p, "Key"),
				 n->home_derp, want_derp);
		v = json_object_get(p, "Online");
		assert_int_equal(n->has_online, !json_is_null(v) && v != NULL);
		if (n->has_online)
			assert_int_equal(n->online, json_is_true(v));
		key_is(n->disco, "discokey", vectors_str(p, "DiscoKey"));
	}
}

/* Applies one capture folder's MapResponses in order, as one stream. */
static struct netmap *apply_wire(const char *dir, json_t **last_peers, int *count)
{
	struct dirent **files;
	struct netmap *nm = NULL;
	int n = vectors_list(dir, &files);

	for (int i = 0; i < n; i++) {
		char path[8192];
		json_t *doc;
		char *text;

		snprintf(path, sizeof(path), "%s/%s", dir, files[i]->d_name);
		free(files[i]);
		doc = vectors_load_path(path);
		if (strcmp(vectors_str(doc, "kind"), "MapResponse")) {
			json_decref(doc);
			continue;
		}
		text = json_dumps(json_object_get(doc, "body"), JSON_COMPACT);
		{
			struct netmap *next = apply_ok(nm, text);

			netmap_put(nm);
			nm = next;
		}
		if (json_object_get(json_object_get(doc, "body"), "Peers")) {
			json_decref(*last_peers);
			*last_peers =
				json_incref(json_object_get(json_object_get(doc, "body"), "Peers"));
		}
		(*count)++;
		free(text);
		json_decref(doc);
	}
	free(files);
	return nm;
}

struct capture_counts {
	int streams, messages, compared;
};

/* A capture session's entry: an "n*-wire-messages" folder applied as one
 * stream, or the server's full map for node 1 as a one-message stream; each
 * compared with the node's debug netmap where one was captured. */
static void compare_capture_entry(const char *dir, const char *name, void *arg)
{
	struct capture_counts *c = arg;
	char sub[4900], path[5200];
	json_t *peers = NULL, *dbg;
	struct netmap *nm;

	if (name[0] == 'n' && strstr(name, "-wire-messages")) {
		snprintf(sub, sizeof(sub), "%s/%s", dir, name);
		nm = apply_wire(sub, &peers, &c->messages);
		assert_non_null(nm);
		c->streams++;
		/* The same node's debug netmap, if captured. */
		snprintf(path, sizeof(path), "%s/%.*s-debug-netmap.json", dir,
			 (int)(strchr(name, '-') - name), name);
		if (access(path, R_OK) == 0) {
			dbg = vectors_load_path(path);
			compare_debug_netmap(nm, dbg, peers, false, sub);
			json_decref(dbg);
			c->compared++;
		}
		netmap_put(nm);
		json_decref(peers);
	} else if (!strcmp(name, "server-admin-mapresponse_node_1.json")) {
		/* The server's full map for node 1 against node 1's own view. */
		json_t *doc;
		char *text;

		snprintf(path, sizeof(path), "%s/%s", dir, name);
		doc = vectors_load_path(path);
		text = json_dumps(doc, JSON_COMPACT);
		nm = apply_ok(NULL, text);
		snprintf(path, sizeof(path), "%s/n1-debug-netmap.json", dir);
		dbg = vectors_load_path(path);
		compare_debug_netmap(nm, dbg, json_object_get(doc, "Peers"), true, dir);
		c->compared++;
		json_decref(dbg);
		netmap_put(nm);
		free(text);
		json_decref(doc);
	}
}

static void test_captures(void **state)
{
	struct capture_counts c = {0};
	long before = live_allocs;

	(void)state;
	vectors_each_capture(compare_capture_entry, &c);
	print_message("captures: %d streams, %d MapResponses applied, %d netmaps compared\n",
		      c.streams, c.messages, c.compared);
	assert_int_equal(c.streams, 4);
	assert_int_equal(c.messages, 55);
	assert_int_equal(c.compared, 5);
	assert_int_equal(live_allocs, before);
}

/* ---- Delta forms ---------------------------------------------------------------- */

static const char full_map[] =
	"{\"Node\":{\"ID\":1,\"Key\":\"nodekey:"
	"0101010101010101010101010101010101010101010101010101010101010101\","
	"\"Addresses\":[\"100.64.0.1/32\"]},"
	"\"Peers\":[{\"ID\":2,\"Key\":\"nodekey:"
	"0202020202020202020202020202020202020202020202020202020202020202\","
	"\"Addresses\":[\"100.64.0.2/32\"],\"Endpoints\":[\"10.0.0.2:41641\"],"
	"\"DERP\":\"127.3.3.40:4\",\"Online\":true},"
	"{\"ID\":3,\"Key\":\"nodekey:"
	"0303030303030303030303030303030303030303030303030303030303030303\","
	"\"Addresses\":[\"100.64.0.3/32\"],\"AllowedIPs\":[\"100.64.0.3/32\",\"10.3.0.0/16\"],"
	"\"HomeDERP\":5,\"KeyExpiry\":\"2027-01-15T08:00:00Z\"}],"
	"\"PacketFilter\":[{\"SrcIPs\":[\"100.64.0.2\"],\"DstPorts\":[{\"IP\":\"*\","
	"\"Ports\":{\"First\":22,\"Last\":22}}]}],"
	"\"Domain\":\"example.ts.net\",\"ControlTime\":\"2027-01-15T07:00:00Z\"}";

static void test_first_message(void **state)
{
	struct mapjson_map_response *r = NULL;
	struct netmap *nm = (void *)1;
	const char *why = NULL;
	const char *ka = "{\"KeepAlive\":true}";
	const char *nonode = "{\"Peers\":[{\"ID\":2}]}";

	(void)state;
	/* A keep-alive before the first map: still no netmap. */
	assert_int_equal(mapjson_parse_map_response(ka, strlen(ka), &r, &why), 0);
	assert_int_equal(netmap_apply(NULL, r, NOW, &nm, &why), 0);
	assert_null(nm);
	mapjson_map_response_free(r);
	/* The first real message must carry Node. */
	assert_int_equal(mapjson_parse_map_response(nonode, strlen(nonode), &r, &why), 0);
	nm = (void *)1;
	assert_int_equal(netmap_apply(NULL, r, NOW, &nm, &why), -EBADMSG);
	assert_null(nm);
	assert_string_equal(why, "first map response of the stream has no Node");
	mapjson_map_response_free(r);

	/* A first message with no Peers and no filter: no peers, deny. */
	nm = apply_ok(NULL, "{\"Node\":{\"ID\":1}}");
	assert_int_equal(nm->n_peers, 0);
	assert_int_equal(nm->filters->n_named, 0);
	assert_int_equal(nm->filters->n_rules, 0);
	assert_int_equal(nm->derpmap->n_regions, 0);
	assert_string_equal(nm->domain, "");
	netmap_put(nm);
}

static void test_deltas(void **state)
{
	struct netmap *a, *b, *c, *d, *e, *f;

	(void)state;
	a = apply_ok(NULL, full_map);
	/* Legacy DERP string, AllowedIPs defaulting to Addresses. */
	assert_int_equal(peer(a, 2)->home_derp, 4);
	assert_int_equal(peer(a, 2)->n_allowed_ips, 1);
	prefix_is(&peer(a, 2)->allowed_ips[0], "100.64.0.2/32");
	assert_int_equal(peer(a, 3)->home_derp, 5);
	assert_int_equal(peer(a, 3)->n_allowed_ips, 2);

	/* Removal and insertion in one message; unknown IDs are ignored. */
	b = apply_ok(a,
		     "{\"PeersRemoved\":[2,99],\"PeersChanged\":[{\"ID\":7,\"Key\":"
		     "\"nodekey:0707070707070707070707070707070707070707070707070707070707070707\","
		     "\"Addresses\":[\"100.64.0.7/32\"]}],"
		     "\"PeersChangedPatch\":[{\"NodeID\":42,\"DERPRegion\":9}],"
		     "\"OnlineChange\":{\"42\":true}}");
	assert_int_equal(b->n_peers, 2);
	assert_int_equal(b->peers[0]->id, 3);
	assert_int_equal(b->peers[1]->id, 7);
	assert_null(netmap_peer_by_id(b, 2));
	assert_ptr_equal(peer(b, 3), peer(a, 3));

	/* A non-empty Peers is the complete list; deltas beside it are ignored
	 * (upstream: "Peers precludes all other delta operations"). Duplicate
	 * IDs: the later node wins. */
	c = apply_ok(b, "{\"Peers\":[{\"ID\":5,\"Name\":\"first\"},{\"ID\":4},"
			"{\"ID\":5,\"Name\":\"second\"}],\"PeersRemoved\":[4]}");
	assert_int_equal(c->n_peers, 2);
	assert_int_equal(c->peers[0]->id, 4);
	assert_string_equal(peer(c, 5)->name, "second");
	assert_int_equal(c->n_by_key, 0);

	/* "Peers":[] is not a complete list: nothing changes. */
	d = apply_ok(c, "{\"Peers\":[]}");
	assert_int_equal(d->n_peers, 2);

	/* PeerSeenChange false clears LastSeen; patches set only what they
	 * carry; Key/DiscoKey/KeyExpiry/Cap/CapMap patches. */
	e = apply_ok(b, "{\"PeerSeenChange\":{\"3\":false},\"PeersChangedPatch\":[{\"NodeID\":3,"
			"\"Key\":\"nodekey:"
			"0909090909090909090909090909090909090909090909090909090909090909\","
			"\"DiscoKey\":\"discokey:"
			"0808080808080808080808080808080808080808080808080808080808080808\","
			"\"KeyExpiry\":\"2027-01-15T06:00:00Z\",\"Cap\":120,"
			"\"CapMap\":{\"x\":null}}]}");
	{
		const struct netmap_node *n = peer(e, 3);
		uint8_t k[KEY_LEN];

		assert_false(n->has_last_seen);
		assert_true(n->has_disco);
		assert_int_equal(n->disco[0], 8);
		assert_int_equal(n->key[0], 9);
		assert_int_equal(n->cap, 120);
		assert_int_equal(n->n_caps, 1);
		assert_string_equal(n->caps[0], "x");
		assert_int_equal(n->home_derp, 5);
		assert_int_equal(n->n_allowed_ips, 2);
		/* The key index follows the new key. */
		memset(k, 9, sizeof(k));
		assert_ptr_equal(netmap_peer_by_key(e, k), n);
		memset(k, 3, sizeof(k));
		assert_null(netmap_peer_by_key(e, k));
		assert_ptr_equal(netmap_peer_by_key(b, k), peer(b, 3));
		/* Expiry by the control clock: ControlTime 07:00 = NOW + skew. */
		assert_true(netmap_node_expired(e, n, NOW));
		assert_false(netmap_node_expired(b, peer(b, 3), NOW));
		assert_true(netmap_node_expired(b, peer(b, 3), NOW + 3600));
	}

	/* Keep-alive with ControlTime: a new snapshot, same contents. */
	f = apply_ok(e, "{\"KeepAlive\":true,\"ControlTime\":\"2027-01-15T09:00:00Z\"}");
	assert_ptr_not_equal(f, e);
	assert_ptr_equal(f->self, e->self);
	assert_ptr_equal(peer(f, 3), peer(e, 3));
	assert_ptr_equal(f->filters, e->filters);
	assert_int_equal(f->n_by_key, e->n_by_key);
	assert_int_equal(f->clock_skew, 1799996400 + 7200 - NOW);
	assert_string_equal(f->domain, "example.ts.net");
	/* An empty Domain leaves it; TKA on is recorded; Node replaces self. */
	netmap_put(d);
	d = apply_ok(f, "{\"Domain\":\"\",\"TKAInfo\":{\"Head\":\"h\"},\"Node\":{\"ID\":1,"
			"\"Name\":\"renamed\",\"Expired\":true}}");
	assert_string_equal(d->domain, "example.ts.net");
	assert_true(d->tka_enabled);
	assert_string_equal(d->self->name, "renamed");
	assert_true(netmap_node_expired(d, d->self, NOW));
	assert_false(f->tka_enabled);

	netmap_put(a);
	netmap_put(b);
	netmap_put(c);
	netmap_put(d);
	netmap_put(e);
	netmap_put(f);
	assert_int_equal(live_allocs, 0);
}

static void test_packet_filters(void **state)
{
	struct netmap *a, *b, *c, *d, *e, *f, *g;

	(void)state;
	a = apply_ok(NULL, full_map);
	assert_int_equal(a->filters->n_rules, 1);

	/* PacketFilter: [] empties "base" (deny); absent leaves it. */
	b = apply_ok(a, "{\"PacketFilter\":[]}");
	assert_int_equal(b->filters->n_named, 1);
	assert_int_equal(b->filters->n_rules, 0);
	assert_int_equal(b->filters->named[0].rules->rules->n_rules, 0);
	c = apply_ok(a, "{\"Domain\":\"x\"}");
	assert_ptr_equal(c->filters, a->filters);
	netmap_put(c);
	c = apply_ok(a, "{\"PacketFilter\":null}");
	assert_ptr_equal(c->filters, a->filters);

	/* Named filters sort by name, base included (the effective filter is
	 * their lists in this order); an unchanged list is shared, not parsed
	 * again. */
	d = apply_ok(a, "{\"PacketFilters\":{\"zz\":[{\"SrcIPs\":[\"10.0.0.26\"]}],"
			"\"aa\":[{\"SrcIPs\":[\"10.0.0.1\"]},{\"SrcIPs\":[\"10.0.0.2\"]}],"
			"\"mm\":[]}}");
	assert_int_equal(d->filters->n_named, 4);
	assert_string_equal(d->filters->named[0].name, "aa");
	assert_string_equal(d->filters->named[1].name, "base");
	assert_string_equal(d->filters->named[2].name, "mm");
	assert_string_equal(d->filters->named[3].name, "zz");
	assert_int_equal(d->filters->n_rules, 4);
	assert_ptr_equal(d->filters->named[1].rules, a->filters->named[0].rules);
	assert_int_equal(d->filters->named[0].rules->n_sent, 2);
	assert_int_equal(d->filters->named[0].rules->rules->rules[1].srcs[0].addr[3], 2);
	assert_int_equal(d->filters->named[2].rules->n_sent, 0);
	assert_int_equal(d->filters->named[3].rules->rules->rules[0].srcs[0].addr[3], 26);
	/* null deletes one name; PacketFilter replaces only "base". */
	e = apply_ok(d, "{\"PacketFilters\":{\"zz\":null,\"nope\":null},\"PacketFilter\":[]}");
	assert_int_equal(e->filters->n_named, 3);
	assert_int_equal(e->filters->n_rules, 2);
	assert_string_equal(e->filters->named[1].name, "base");
	assert_int_equal(e->filters->named[1].rules->n_sent, 0);
	assert_ptr_equal(e->filters->named[0].rules, d->filters->named[0].rules);
	/* "*": null clears everything first, then sets what follows. */
	f = apply_ok(e, "{\"PacketFilters\":{\"*\":null,\"new\":[{\"SrcIPs\":[\"10.0.0.14\"]}]}}");
	assert_int_equal(f->filters->n_named, 1);
	assert_string_equal(f->filters->named[0].name, "new");
	assert_int_equal(f->filters->n_rules, 1);
	g = apply_ok(f, "{\"PacketFilters\":{\"*\":null}}");
	assert_int_equal(g->filters->n_named, 0);
	assert_int_equal(g->filters->n_rules, 0);
	/* Earlier snapshots are untouched. */
	assert_int_equal(d->filters->n_named, 4);
	assert_int_equal(a->filters->n_rules, 1);

	netmap_put(a);
	netmap_put(b);
	netmap_put(c);
	netmap_put(d);
	netmap_put(e);
	netmap_put(f);
	netmap_put(g);
	assert_int_equal(live_allocs, 0);
}

static void test_derpmap_merge(void **state)
{
	struct netmap *a, *b, *c, *d, *e;

	(void)state;
	a = apply_ok(NULL, "{\"Node\":{\"ID\":1},\"DERPMap\":{\"OmitDefaultRegions\":true,"
			   "\"Regions\":{\"1\":{\"RegionID\":1,\"RegionCode\":\"one\",\"Nodes\":"
			   "[{\"Name\":\"1a\",\"HostName\":\"d1\"}]}},"
			   "\"HomeParams\":{\"RegionScore\":{\"1\":0.5}}}}");
	assert_true(a->derpmap->omit_default_regions);
	assert_int_equal(a->derpmap->n_scores, 1);

	/* New scores only: regions (and OmitDefaultRegions) stay. */
	b = apply_ok(a, "{\"DERPMap\":{\"HomeParams\":{\"RegionScore\":{\"2\":0.9,\"1\":2}}}}");
	assert_int_equal(b->derpmap->n_regions, 1);
	assert_string_equal(b->derpmap->regions[0].nodes[0].host_name, "d1");
	assert_true(b->derpmap->omit_default_regions);
	assert_int_equal(b->derpmap->n_scores, 2);
	assert_int_equal(b->derpmap->scores[0].region_id, 1);
	assert_true(b->derpmap->scores[0].score == 2.0);

	/* New regions only: regions replaced whole, scores stay. */
	c = apply_ok(b, "{\"DERPMap\":{\"Regions\":{\"3\":{\"RegionCode\":\"three\"},"
			"\"2\":{\"RegionCode\":\"two\"},\"9\":null}}}");
	assert_int_equal(c->derpmap->n_regions, 2);
	assert_int_equal(c->derpmap->regions[0].region_id, 2);
	assert_string_equal(c->derpmap->regions[1].region_code, "three");
	assert_false(c->derpmap->omit_default_regions);
	assert_int_equal(c->derpmap->n_scores, 2);

	/* HomeParams without RegionScore keeps the scores. */
	d = apply_ok(c, "{\"DERPMap\":{\"HomeParams\":{}}}");
	assert_int_equal(d->derpmap->n_scores, 2);
	assert_int_equal(d->derpmap->n_regions, 2);
	/* An empty RegionScore map replaces them with none. */
	e = apply_ok(d, "{\"DERPMap\":{\"HomeParams\":{\"RegionScore\":{}}}}");
	assert_int_equal(e->derpmap->n_scores, 0);
	assert_true(e->derpmap->has_region_score);
	assert_int_equal(a->derpmap->n_regions, 1);

	netmap_put(a);
	netmap_put(b);
	netmap_put(c);
	netmap_put(d);
	netmap_put(e);
	assert_int_equal(live_allocs, 0);
}

/* ---- Memory ------------------------------------------------------------------ */

/* A full map with n peers, each with two addresses, endpoints, a Hostinfo
 * and capabilities. */
static char *big_map(size_t n)
{
	size_t cap = 512 + n * 640, len = 0;
	char *s = malloc(cap);

	assert_non_null(s);
	len += (size_t)snprintf(s + len, cap - len,
				"{\"Node\":{\"ID\":1,\"Addresses\":[\"100.64.0.1/32\"]},"
				"\"Peers\":[");
	for (size_t i = 0; i < n; i++) {
		uint8_t k[KEY_LEN] = {0};
		char kt[80];

		k[0] = (uint8_t)(i >> 8);
		k[1] = (uint8_t)i;
		k[2] = 0xaa;
		keys_to_text("nodekey", k, kt, sizeof(kt));
		len += (size_t)snprintf(
			s + len, cap - len,
			"%s{\"ID\":%zu,\"StableID\":\"S%zu\",\"Name\":\"peer-%zu.example.ts.net.\","
			"\"Key\":\"%s\",\"Addresses\":[\"100.64.%zu.%zu/32\",\"fd7a:115c:a1e0::%zx/"
			"128\"],"
			"\"Endpoints\":[\"192.0.2.%zu:41641\",\"[2001:db8::%zx]:41641\"],"
			"\"HomeDERP\":1,\"Hostinfo\":{\"Hostname\":\"peer-%zu\"},"
			"\"Tags\":[\"tag:k8s\"],\"CapMap\":{\"https\":[],\"funnel\":[]}}",
			i ? "," : "", i + 2, i, i, kt, (i >> 8) & 255, i & 255, i + 2, i & 255,
			i + 2, i);
		assert_true(len < cap);
	}
	snprintf(s + len, cap - len, "]}");
	return s;
}

static void test_memory(void **state)
{
	enum { PEERS = 5000 };
	char *json = big_map(PEERS);
	long base = live_allocs, full, after_delta;
	struct netmap *a, *b;

	(void)state;
	a = apply_ok(NULL, json);
	free(json);
	assert_int_equal(a->n_peers, PEERS);
	assert_int_equal(a->n_by_key, PEERS);
	full = live_allocs - base;
	print_message("memory: %d peers held in %ld allocations\n", PEERS, full);
	assert_true(full > PEERS * 8);

	/* One peer patched: the new snapshot shares every other peer. */
	b = apply_ok(a, "{\"PeersChangedPatch\":[{\"NodeID\":77,\"Endpoints\":[\"1.2.3.4:5\"]}],"
			"\"OnlineChange\":{\"78\":true}}");
	assert_ptr_equal(peer(b, 79), peer(a, 79));
	netmap_put(a);
	after_delta = live_allocs - base;
	/* Dropping the old snapshot returned its private part: what is left is
	 * one map's worth (two patched peers were copied, two old ones freed). */
	assert_true(after_delta <= full);
	assert_true(after_delta > full - 64);
	endpoint_is(&peer(b, 77)->endpoints[0], "1.2.3.4:5");
	netmap_put(b);
	assert_int_equal(live_allocs, base);

	/* The same through a full replacement: everything old goes. */
	json = big_map(PEERS);
	a = apply_ok(NULL, json);
	b = apply_ok(a, json);
	netmap_put(a);
	assert_true(live_allocs - base <= full);
	netmap_put(b);
	free(json);
	assert_int_equal(live_allocs, base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vector_stream),  cmocka_unit_test(test_captures),
		cmocka_unit_test(test_first_message),  cmocka_unit_test(test_deltas),
		cmocka_unit_test(test_packet_filters), cmocka_unit_test(test_derpmap_merge),
		cmocka_unit_test(test_memory),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
