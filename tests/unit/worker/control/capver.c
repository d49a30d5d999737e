/* One test per row of the capability obligation table (worker/control/capver.c):
 * a row marked met is checked against the code that meets it; a row not met
 * must lie above the claim (or be listed as a known gap below the floor).
 * The control client's request.c is included too, to reach the request
 * builders and handlers behind the rows it owns. */
#include "worker/control/capver.c"
#include "worker/control/request.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "worker/dataplane/filter.h"

/* ---- helpers ---- */

static const struct capver_row *row(int version)
{
	size_t n, i;
	const struct capver_row *t = capver_table(&n);

	for (i = 0; i < n; i++)
		if (t[i].version == version)
			return &t[i];
	fail_msg("no row for capability version %d", version);
	return NULL;
}

/* Checks the bookkeeping of a row: met rows at or below the claim, unmet
 * rows above it or listed among the gaps. */
static void check_row(int version, bool want_met)
{
	const struct capver_row *r = row(version);
	size_t gaps[64], n = capver_gaps(gaps, 64), i, tn;
	const struct capver_row *t = capver_table(&tn);
	bool in_gaps = false;

	assert_int_equal(r->met, want_met);
	assert_non_null(r->promise);
	assert_non_null(r->how);
	for (i = 0; i < n; i++)
		if (t[gaps[i]].version == version)
			in_gaps = true;
	if (!r->met && version > CAPVER_FLOOR)
		assert_true(capver_claim() < version);
	if (!r->met && version <= CAPVER_FLOOR)
		assert_true(in_gaps);
	if (r->met)
		assert_false(in_gaps);
}

static struct netmap *apply(struct netmap *prev, const char *json)
{
	struct mapjson_map_response *r = NULL;
	struct netmap *nm = NULL;
	const char *why = NULL;

	if (mapjson_parse_map_response(json, strlen(json), &r, &why) < 0)
		fail_msg("parse: %s", why);
	if (netmap_apply(prev, r, 1700000000, &nm, &why) < 0)
		fail_msg("apply: %s", why);
	mapjson_map_response_free(r);
	netmap_put(prev);
	return nm;
}

static struct mapjson_map_response *parse(const char *json)
{
	struct mapjson_map_response *r = NULL;
	const char *why = NULL;

	if (mapjson_parse_map_response(json, strlen(json), &r, &why) < 0)
		fail_msg("parse: %s", why);
	return r;
}

#define K1    "nodekey:1111111111111111111111111111111111111111111111111111111111111111"
#define K2    "nodekey:2222222222222222222222222222222222222222222222222222222222222222"
#define K3    "nodekey:3333333333333333333333333333333333333333333333333333333333333333"
#define SELF  "\"Node\":{\"ID\":1,\"Key\":\"" K1 "\",\"Addresses\":[\"100.64.0.1/32\"]}"
#define PEER2 "{\"ID\":2,\"Key\":\"" K2 "\",\"Addresses\":[\"100.64.0.2/32\"]}"
#define PEER3 "{\"ID\":3,\"Key\":\"" K3 "\",\"Addresses\":[\"100.64.0.3/32\"]}"

static struct filter_rules *rules(const char *json)
{
	json_t *j = json_loads(json, 0, NULL);
	struct filter_rules *r = NULL;
	const char *warn = NULL, *why = NULL;

	assert_non_null(j);
	assert_int_equal(filter_rules_from_json(j, &r, &warn, &why), 0);
	json_decref(j);
	return r;
}

static void no_state(void *arg, enum client_status st, int err, const char *msg)
{
}

/* A control client that never starts: for the request builders. */
static struct client *idle_client(uv_loop_t *loop)
{
	struct client_config cfg = {
		.loop = loop,
		.control_url = "http://127.0.0.1:9",
		.hostname = "c-ns-p",
		.on_state = no_state,
	};
	struct client *c = NULL;
	const char *why = NULL;

	keys_generate(cfg.machine_priv);
	keys_generate(cfg.node_priv);
	assert_int_equal(client_new(&cfg, &c, &why), 0);
	return c;
}

static void closed(void *arg)
{
	*(bool *)arg = true;
}

static void idle_close(uv_loop_t *loop, struct client *c)
{
	bool done = false;

	client_close(c, closed, &done);
	while (!done)
		uv_run(loop, UV_RUN_ONCE);
}

/* ---- the claim ---- */

static void test_claim(void **state)
{
	size_t n, i;
	const struct capver_row *t = capver_table(&n);

	assert_true(capver_claim() >= CAPVER_FLOOR);
	assert_true(capver_claim() <= CAPVER_CEILING);
	for (i = 1; i < n; i++)
		assert_true(t[i - 1].version < t[i].version);
	/* Everything between the floor and the claim is met. */
	for (i = 0; i < n; i++)
		if (t[i].version > CAPVER_FLOOR && t[i].version <= capver_claim())
			assert_true(t[i].met);
	assert_int_equal(client_capver(), capver_claim());
}

/* ---- one test per row ---- */

static void test_row_5(void **state)
{
	struct netmap *nm;

	check_row(5, true);
	nm = apply(NULL, "{" SELF ",\"Peers\":[" PEER2 "]}");
	nm = apply(nm, "{\"PeersChanged\":[" PEER3 "]}");
	assert_int_equal(nm->n_peers, 2); /* the delta added, the old peer stayed */
	netmap_put(nm);
}

static void test_row_6(void **state)
{
	struct netmap *nm;

	check_row(6, true);
	nm = apply(NULL, "{" SELF ",\"PacketFilter\":[{\"SrcIPs\":[\"*\"],\"DstPorts\":[{\"IP\":"
			 "\"*\",\"Ports\":{\"First\":0,\"Last\":65535}}]}]}");
	assert_int_equal(nm->filters->n_rules, 1);
	nm = apply(nm, "{\"PacketFilter\":null}");
	assert_int_equal(nm->filters->n_rules, 1);
	nm = apply(nm, "{\"PacketFilter\":[]}");
	assert_int_equal(nm->filters->n_rules, 0);
	netmap_put(nm);
}

static void test_row_7(void **state)
{
	struct filter_rules *r;

	check_row(7, true);
	r = rules("[{\"SrcIPs\":[\"100.64.0.0/10\",\"10.0.0.1-10.0.0.9\",\"*\"],\"DstPorts\":[{"
		  "\"IP\":\"*\",\"Ports\":{\"First\":22,\"Last\":22}}]}]");
	assert_int_equal(r->n_rules, 1);
	assert_true(r->rules[0].n_srcs >= 3);
	filter_rules_free(r);
}

static void test_row_10(void **state)
{
	struct netmap *nm;

	check_row(10, true);
	nm = apply(NULL, "{" SELF ",\"Peers\":[" PEER2 "]}");
	nm = apply(nm, "{\"PeerSeenChange\":{\"2\":true}}");
	assert_true(nm->peers[0]->has_last_seen);
	netmap_put(nm);
}

static void test_row_12(void **state)
{
	struct mapjson_map_response *r;

	check_row(12, true);
	r = parse("{\"PingRequest\":{\"URL\":\"https://c.example/machine/ping/1\","
		  "\"URLIsNoise\":true}}");
	assert_non_null(r->ping);
	assert_string_equal(client__url_path(r->ping->url), "/machine/ping/1");
	mapjson_map_response_free(r);
}

static void test_row_13(void **state)
{
	struct filter_rules *r;

	check_row(13, true);
	r = rules("[{\"SrcIPs\":[\"*\"],\"DstPorts\":[{\"IP\":\"*\",\"Ports\":{\"First\":0,"
		  "\"Last\":65535}}],\"IPProto\":[17]}]");
	assert_true(r->rules[0].protos[17 / 32] & (1U << (17 % 32)));
	assert_false(r->rules[0].protos[6 / 32] & (1U << (6 % 32)));
	filter_rules_free(r);
}

static void test_row_15(void **state)
{
	struct netmap *nm;

	check_row(15, true);
	nm = apply(NULL, "{" SELF ",\"DNSConfig\":{\"Domains\":[\"example.ts.net\"]}}");
	assert_int_equal(nm->dns->n_domains, 1);
	nm = apply(nm, "{\"PeersRemoved\":[9]}");
	assert_int_equal(nm->dns->n_domains, 1);
	netmap_put(nm);
}

static void test_row_16(void **state)
{
	struct netmap *nm;

	check_row(16, true);
	nm = apply(NULL, "{" SELF ",\"Peers\":[" PEER2 "]}");
	nm = apply(nm, "{\"OnlineChange\":{\"2\":true}}");
	assert_true(nm->peers[0]->has_online && nm->peers[0]->online);
	nm = apply(nm, "{\"OnlineChange\":{\"2\":false}}");
	assert_false(nm->peers[0]->online);
	netmap_put(nm);
}

static void test_row_17(void **state)
{
	struct netmap *nm;

	check_row(17, true);
	nm = apply(NULL, "{" SELF ",\"Domain\":\"tail.example\"}");
	nm = apply(nm, "{\"Domain\":\"\",\"PeersRemoved\":[9]}");
	assert_string_equal(nm->domain, "tail.example");
	netmap_put(nm);
}

static void test_row_18(void **state)
{
	struct netmap *nm;

	check_row(18, true);
	nm = apply(NULL, "{" SELF "}");
	nm = apply(nm, "{\"PeersRemoved\":[9]}");
	assert_non_null(nm->self);
	assert_int_equal(nm->self->id, 1);
	netmap_put(nm);
}

static void test_row_28(void **state)
{
	char p[TS2021_PROLOGUE_MAX], want[64];

	check_row(28, true);
	ts2021_prologue(p, (uint16_t)capver_claim());
	snprintf(want, sizeof(want), "Tailscale Control Protocol v%d", capver_claim());
	assert_string_equal(p, want);
}

static void test_row_33(void **state)
{
	struct netmap *nm;

	check_row(33, true);
	nm = apply(NULL, "{" SELF ",\"Peers\":[" PEER2 "]}");
	nm = apply(nm, "{\"PeersChangedPatch\":[{\"NodeID\":2,\"DERPRegion\":7,"
		       "\"Endpoints\":[\"192.0.2.1:41641\"]}]}");
	assert_int_equal(nm->peers[0]->home_derp, 7);
	assert_int_equal(nm->peers[0]->n_endpoints, 1);
	netmap_put(nm);
}

static void test_row_36(void **state)
{
	struct netmap *nm;

	check_row(36, true);
	nm = apply(NULL, "{" SELF ",\"Peers\":[" PEER2 "]}");
	nm = apply(nm, "{\"PeersChangedPatch\":[{\"NodeID\":2,\"Key\":\"" K3 "\",\"Online\":true,"
		       "\"KeyExpiry\":\"2030-01-01T00:00:00Z\"}]}");
	assert_int_equal(nm->peers[0]->key[0], 0x33);
	assert_true(nm->peers[0]->online);
	assert_true(nm->peers[0]->has_key_expiry);
	netmap_put(nm);
}

static void test_row_38(void **state)
{
	struct mapjson_map_response *r;

	check_row(38, true);
	r = parse("{\"PingRequest\":{\"URL\":\"/machine/ping/2\",\"URLIsNoise\":true}}");
	assert_true(r->ping->url_is_noise);
	assert_string_equal(client__url_path(r->ping->url), "/machine/ping/2");
	mapjson_map_response_free(r);
}

static void test_row_45(void **state)
{
	struct mapjson_map_response *r;

	check_row(45, true);
	r = parse("{\"PingRequest\":{\"URL\":\"/machine/c2n/3\",\"URLIsNoise\":true,"
		  "\"Types\":\"c2n\"}}");
	assert_string_equal(r->ping->types, "c2n");
	/* The answer is an HTTP/1.1 404 as a client without the handler gives. */
	assert_int_equal(strncmp(c2n_not_found, "HTTP/1.1 404 ", 13), 0);
	mapjson_map_response_free(r);
}

static void test_row_49(void **state)
{
	static const uint8_t early[] = {0xff, 0xff, 0xff, 'T', 'S', 0, 0, 0, 2, '{', '}'};
	struct ts2021_early e;
	size_t used = 0;
	const char *why = NULL;

	check_row(49, true);
	ts2021_early_init(&e);
	assert_int_equal(ts2021_early_feed(&e, early, sizeof(early), &used, &why), 1);
	assert_true(e.present);
	assert_int_equal(used, sizeof(early));
	ts2021_early_destroy(&e);
}

static void test_row_53(void **state)
{
	struct netmap *nm;

	check_row(53, true);
	nm = apply(NULL, "{" SELF ",\"Peers\":[{\"ID\":2,\"Key\":\"" K2 "\",\"Addresses\":["
			 "\"100.64.0.2/32\"],\"KeyExpiry\":\"2001-01-01T00:00:00Z\"},{\"ID\":3,"
			 "\"Key\":\"" K3 "\",\"Expired\":true}]}");
	assert_true(netmap_node_expired(nm, nm->peers[0], 1700000000));
	assert_true(netmap_node_expired(nm, nm->peers[1], 1700000000));
	netmap_put(nm);
}

static void test_row_58(void **state)
{
	uv_loop_t loop;
	struct client *c;
	struct h2req r = {.kind = REQ_LITE, .status = 500};

	check_row(58, true);
	uv_loop_init(&loop);
	c = idle_client(&loop);
	c->phase = PH_RUNNING;
	lite_done(c, &r, 0);
	/* A refused lite update is retried on a timer, not a reconnect. */
	assert_false(c->failure.pending);
	assert_true(uv_is_active((uv_handle_t *)&c->lite.timer));
	idle_close(&loop, c);
	uv_loop_close(&loop);
}

/* Upstream masquerades our source address towards such a peer (its
 * wgcfg.Peer.V4MasqAddr); we only record that control asked for it, so the
 * row is a known gap below the floor. */
static void test_row_59(void **state)
{
	struct netmap *nm;

	check_row(59, false);
	nm = apply(NULL, "{" SELF ",\"Peers\":[{\"ID\":2,\"Key\":\"" K2 "\",\"Addresses\":["
			 "\"100.64.0.2/32\"],\"SelfNodeV4MasqAddrForThisPeer\":\"10.0.0.1\"}]}");
	assert_true(nm->peers[0]->has_masq_addr);
	netmap_put(nm);
}

static void test_row_65(void **state)
{
	struct netmap *nm;

	check_row(65, true);
	nm = apply(NULL, "{" SELF ",\"DERPMap\":{\"Regions\":{\"1\":{\"RegionID\":1,"
			 "\"RegionCode\":\"a\",\"Nodes\":[{\"Name\":\"1a\",\"RegionID\":1,"
			 "\"HostName\":\"d.example\"}]}}}}");
	assert_int_equal(nm->derpmap->n_regions, 1);
	nm = apply(nm, "{\"DERPMap\":{\"HomeParams\":{\"RegionScore\":{\"1\":0.5}}}}");
	assert_int_equal(nm->derpmap->n_regions, 1); /* null Regions: unchanged */
	netmap_put(nm);
}

static void test_row_68(void **state)
{
	uv_loop_t loop;
	struct client *c;
	char *lite, *stream;
	struct netmap_endpoint ep = {.family = AF_INET, .addr = {192, 0, 2, 1}, .port = 41641};
	int type = 1;

	check_row(68, true);
	uv_loop_init(&loop);
	c = idle_client(&loop);
	assert_int_equal(client_set_endpoints(c, &ep, &type, 1), 0);
	lite = map_request_json(c, false);
	stream = map_request_json(c, true);
	assert_non_null(strstr(lite, "\"Stream\":false"));
	assert_non_null(strstr(lite, "\"OmitPeers\":true"));
	assert_non_null(strstr(lite, "192.0.2.1:41641"));
	assert_non_null(strstr(stream, "\"Stream\":true"));
	free(lite);
	free(stream);
	idle_close(&loop, c);
	uv_loop_close(&loop);
}

static void test_row_74(void **state)
{
	struct netmap *nm;
	size_t i;
	bool found = false;

	check_row(74, true);
	nm = apply(NULL, "{\"Node\":{\"ID\":1,\"Key\":\"" K1 "\",\"CapMap\":{\"cap/x\":null}}}");
	for (i = 0; i < nm->self->n_caps; i++)
		if (!strcmp(nm->self->caps[i], "cap/x"))
			found = true;
	assert_true(found);
	netmap_put(nm);
}

static void test_row_81(void **state)
{
	struct netmap *nm;

	check_row(81, true);
	nm = apply(NULL,
		   "{" SELF ",\"PacketFilters\":{\"base\":[{\"SrcIPs\":[\"*\"],\"DstPorts\":"
		   "[{\"IP\":\"*\",\"Ports\":{\"First\":1,\"Last\":1}}]}],\"x\":[{\"SrcIPs\":"
		   "[\"*\"],\"DstPorts\":[{\"IP\":\"*\",\"Ports\":{\"First\":2,\"Last\":2}}]}]}"
		   "}");
	assert_int_equal(nm->filters->n_rules, 2);
	nm = apply(nm, "{\"PacketFilters\":{\"x\":null}}");
	assert_int_equal(nm->filters->n_rules, 1);
	netmap_put(nm);
}

static void test_row_94(void **state)
{
	struct netmap *nm;

	/* The netmap keeps the flag; tests/unit/worker/dataplane/dataplane_config.c
	 * shows a jailed peer's new flows refused and its replies accepted. */
	check_row(94, true);
	nm = apply(NULL, "{" SELF ",\"Peers\":[{\"ID\":2,\"Key\":\"" K2 "\",\"IsJailed\":true,"
			 "\"Addresses\":[\"100.64.0.2/32\"]}]}");
	assert_int_equal(nm->n_peers, 1);
	assert_true(nm->peers[0]->is_jailed);
	netmap_put(nm);
}

static void test_row_109(void **state)
{
	struct filter_rules *r;

	check_row(109, true);
	r = rules("[{\"SrcIPs\":[\"cap:foo\"],\"DstPorts\":[{\"IP\":\"*\",\"Ports\":{\"First\":0,"
		  "\"Last\":65535}}]}]");
	assert_true(filter_rules_uses_cap(r, "foo"));
	filter_rules_free(r);
}

static void test_row_111(void **state)
{
	struct netmap *nm;

	check_row(111, true);
	nm = apply(NULL, "{" SELF ",\"Peers\":[{\"ID\":2,\"Key\":\"" K2 "\",\"HomeDERP\":7},"
			 "{\"ID\":3,\"Key\":\"" K3 "\",\"DERP\":\"127.3.3.40:5\"}]}");
	assert_int_equal(nm->peers[0]->home_derp, 7);
	assert_int_equal(nm->peers[1]->home_derp, 5);
	netmap_put(nm);
}

static void test_row_112(void **state)
{
	struct netmap *nm;

	check_row(112, true);
	nm = apply(NULL, "{" SELF ",\"Peers\":[" PEER2 ",{\"ID\":3,\"Key\":\"" K3 "\","
			 "\"Addresses\":[\"100.64.0.3/32\"],\"AllowedIPs\":[]}]}");
	assert_int_equal(nm->peers[0]->n_allowed_ips, 1);
	assert_int_equal(nm->peers[1]->n_allowed_ips, 0);
	netmap_put(nm);
}

static void test_row_113(void **state)
{
	uv_loop_t loop;
	struct client *c;
	char *json;

	check_row(113, true);
	uv_loop_init(&loop);
	c = idle_client(&loop);
	json = map_request_json(c, false);
	assert_null(strstr(json, "IngressEnabled")); /* no Funnel: false, left out */
	free(json);
	idle_close(&loop, c);
	uv_loop_close(&loop);
}

static void test_row_114(void **state)
{
	struct netmap *nm;

	check_row(114, true);
	/* The node attribute is accepted like any other CapMap key. */
	nm = apply(NULL, "{\"Node\":{\"ID\":1,\"Key\":\"" K1 "\",\"CapMap\":{"
			 "\"max-key-duration\":[3600]}}}");
	assert_int_equal(nm->self->n_caps, 1);
	netmap_put(nm);
}

static void test_row_115(void **state)
{
	struct netmap_derp_node relay = {.region_id = 900}, stun_only = {.stun_only = true};
	struct netmap_derp_region r = {.region_id = 900, .nodes = &relay, .n_nodes = 1};

	check_row(115, true);
	assert_true(netmap_derp_region_may_be_home(&r));
	/* Flagged: neither measured nor home. */
	r.no_measure_no_home = true;
	assert_false(netmap_derp_region_may_be_home(&r));
	r.no_measure_no_home = false;
	r.avoid = true;
	assert_false(netmap_derp_region_may_be_home(&r));
	r.avoid = false;
	r.nodes = &stun_only;
	assert_false(netmap_derp_region_may_be_home(&r));
	r.nodes = &relay;
	r.region_id = 70000;
	assert_false(netmap_derp_region_may_be_home(&r));
}

static void test_row_116(void **state)
{
	check_row(116, true);
}

static void test_row_117(void **state)
{
	struct mapjson_map_response *r;

	check_row(117, true);
	/* Ignored, not refused. */
	r = parse("{\"DisplayMessages\":{\"*\":null}}");
	mapjson_map_response_free(r);
}

static void test_row_118(void **state)
{
	uv_loop_t loop;
	struct client *c;
	char *json;

	check_row(118, true);
	uv_loop_init(&loop);
	c = idle_client(&loop);
	json = map_request_json(c, true);
	assert_null(strstr(json, "StateEncrypted"));
	free(json);
	idle_close(&loop, c);
	uv_loop_close(&loop);
}

static void test_row_119(void **state)
{
	check_row(119, true);
}

static void test_row_120(void **state)
{
	check_row(120, false);
}

static void test_row_121(void **state)
{
	check_row(121, false);
}

static void test_row_124(void **state)
{
	check_row(124, false);
}

static void test_row_126(void **state)
{
	check_row(126, false);
}

static void test_row_127(void **state)
{
	check_row(127, true);
	assert_int_equal(strncmp(c2n_not_found, "HTTP/1.1 404 ", 13), 0);
}

static void test_row_137(void **state)
{
	uv_loop_t loop;
	struct client *c;
	struct h2req r = {.kind = REQ_REGISTER, .status = 429, .retry_after = 7};

	check_row(137, true);
	uv_loop_init(&loop);
	c = idle_client(&loop);
	register_done(c, &r, 0);
	assert_true(c->failure.pending);
	assert_false(c->failure.fatal);
	assert_int_equal(c->retry_after_ms, 7000);
	idle_close(&loop, c);
	uv_loop_close(&loop);
}

static void test_row_144(void **state)
{
	check_row(144, false);
}

static void test_every_row_tested(void **state)
{
	static const int tested[] = {5,	  6,   7,   10,	 12,  13,  15,	16,  17,  18,  28,
				     33,  36,  38,  45,	 49,  53,  58,	59,  65,  68,  74,
				     81,  94,  109, 111, 112, 113, 114, 115, 116, 117, 118,
				     119, 120, 121, 124, 126, 127, 137, 144};
	size_t n, i;
	const struct capver_row *t = capver_table(&n);

	assert_int_equal(n, sizeof(tested) / sizeof(tested[0]));
	for (i = 0; i < n; i++)
		assert_int_equal(t[i].version, tested[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_claim),	cmocka_unit_test(test_every_row_tested),
		cmocka_unit_test(test_row_5),	cmocka_unit_test(test_row_6),
		cmocka_unit_test(test_row_7),	cmocka_unit_test(test_row_10),
		cmocka_unit_test(test_row_12),	cmocka_unit_test(test_row_13),
		cmocka_unit_test(test_row_15),	cmocka_unit_test(test_row_16),
		cmocka_unit_test(test_row_17),	cmocka_unit_test(test_row_18),
		cmocka_unit_test(test_row_28),	cmocka_unit_test(test_row_33),
		cmocka_unit_test(test_row_36),	cmocka_unit_test(test_row_38),
		cmocka_unit_test(test_row_45),	cmocka_unit_test(test_row_49),
		cmocka_unit_test(test_row_53),	cmocka_unit_test(test_row_58),
		cmocka_unit_test(test_row_59),	cmocka_unit_test(test_row_65),
		cmocka_unit_test(test_row_68),	cmocka_unit_test(test_row_74),
		cmocka_unit_test(test_row_81),	cmocka_unit_test(test_row_94),
		cmocka_unit_test(test_row_109), cmocka_unit_test(test_row_111),
		cmocka_unit_test(test_row_112), cmocka_unit_test(test_row_113),
		cmocka_unit_test(test_row_114), cmocka_unit_test(test_row_115),
		cmocka_unit_test(test_row_116), cmocka_unit_test(test_row_117),
		cmocka_unit_test(test_row_118), cmocka_unit_test(test_row_119),
		cmocka_unit_test(test_row_120), cmocka_unit_test(test_row_121),
		cmocka_unit_test(test_row_124), cmocka_unit_test(test_row_126),
		cmocka_unit_test(test_row_127), cmocka_unit_test(test_row_137),
		cmocka_unit_test(test_row_144),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
