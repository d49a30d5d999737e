/* Unit tests of the data plane's configuration
 * (worker/dataplane/dataplane_config.c): which filter an inbound packet
 * meets. A jailed peer (Node.IsJailed, capability 94) may not open flows to
 * us but its replies to our flows pass; other peers meet the netmap's
 * rules. And what a configuration keeps of each peer for disco. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "worker/dataplane/dataplane_config.c"

#include "worker/control/mapjson.h"

#define K1 "nodekey:1111111111111111111111111111111111111111111111111111111111111111"
#define K2 "nodekey:2222222222222222222222222222222222222222222222222222222222222222"
#define K3 "nodekey:3333333333333333333333333333333333333333333333333333333333333333"
#define SELF                                                                      \
	"\"Node\":{\"ID\":1,\"Key\":\"" K1 "\",\"Addresses\":[\"100.64.0.1/32\"," \
	"\"fd7a:115c:a1e0::1/128\"]}"
/* Peer 2 is jailed, peer 3 is not; both may reach TCP 80 by the rules. */
#define PEERS                                                                          \
	"\"Peers\":[{\"ID\":2,\"Key\":\"" K2 "\",\"IsJailed\":true,\"Addresses\":"     \
	"[\"100.64.0.2/32\",\"fd7a:115c:a1e0::2/128\"]},{\"ID\":3,\"Key\":\"" K3 "\"," \
	"\"Addresses\":[\"100.64.0.3/32\",\"fd7a:115c:a1e0::3/128\"]}]"
#define RULES                                                                          \
	"\"PacketFilter\":[{\"SrcIPs\":[\"*\"],\"DstPorts\":[{\"IP\":\"*\",\"Ports\":" \
	"{\"First\":80,\"Last\":80}}]}]"

/* The configuration of a first MapResponse: 0 with *cfg, or the error of
 * dataplane_config_from_netmap (the message itself must parse and apply). */
static int config_try(const char *json, struct filter_state *fs, struct dataplane_config **cfg,
		      const char **why)
{
	struct mapjson_map_response *r = NULL;
	struct netmap *nm = NULL;
	int ret;

	if (mapjson_parse_map_response(json, strlen(json), &r, why) < 0)
		fail_msg("parse: %s", *why);
	if (netmap_apply(NULL, r, 1700000000, &nm, why) < 0)
		fail_msg("apply: %s", *why);
	ret = dataplane_config_from_netmap(nm, 1700000000, fs, cfg, why);
	mapjson_map_response_free(r);
	netmap_put(nm);
	return ret;
}

static struct dataplane_config *config_of(const char *json, struct filter_state *fs)
{
	struct dataplane_config *cfg = NULL;
	const char *why = NULL;

	if (config_try(json, fs, &cfg, &why) < 0)
		fail_msg("config: %s", why);
	return cfg;
}

/* A TCP segment (flags) from src:40000 to dst:dport, IPv4 or IPv6 by the
 * addresses' form, parsed. */
static void tcp_packet(struct packet *p, uint8_t *buf, const char *src, const char *dst,
		       uint16_t dport, uint8_t flags)
{
	struct ip_prefix s, d;
	const char *why = NULL;
	char a[64];
	size_t len;

	snprintf(a, sizeof(a), "%s/%d", src, strchr(src, ':') ? 128 : 32);
	assert_int_equal(ip_prefix_parse(a, false, &s), 0);
	snprintf(a, sizeof(a), "%s/%d", dst, strchr(dst, ':') ? 128 : 32);
	assert_int_equal(ip_prefix_parse(a, false, &d), 0);
	memset(buf, 0, 80);
	if (s.family == AF_INET) {
		buf[0] = 0x45;
		buf[3] = 40;
		buf[8] = 64;
		buf[9] = 6;
		memcpy(buf + 12, s.addr, 4);
		memcpy(buf + 16, d.addr, 4);
		len = 20;
	} else {
		buf[0] = 0x60;
		buf[5] = 20;
		buf[6] = 6;
		buf[7] = 64;
		memcpy(buf + 8, s.addr, 16);
		memcpy(buf + 24, d.addr, 16);
		len = 40;
	}
	buf[len + 0] = 40000 >> 8;
	buf[len + 1] = 40000 & 0xff;
	buf[len + 2] = dport >> 8;
	buf[len + 3] = dport & 0xff;
	buf[len + 12] = 5 << 4;
	buf[len + 13] = flags;
	assert_int_equal(packet_parse(p, buf, len + 20, &why), 0);
}

static enum filter_verdict verdict(const struct dataplane_config *cfg, const char *src,
				   const char *dst, uint16_t dport, uint8_t flags)
{
	enum filter_reason reason;
	struct packet p;
	uint8_t buf[80];

	tcp_packet(&p, buf, src, dst, dport, flags);
	return filter_run_in(dataplane__config_filter_in(cfg, &p), &p, &reason);
}

enum { SYN = 0x02, ACK = 0x10 };

static void test_jailed_peer_opens_nothing(void **state)
{
	struct filter_state *fs = filter_state_new();
	struct dataplane_config *cfg = config_of("{" SELF "," PEERS "," RULES "}", fs);

	(void)state;
	assert_int_equal(dataplane_config_peer_count(cfg), 2);
	assert_non_null(cfg->jailed_src);
	/* The rule allows TCP 80 from anyone, but not from the jailed peer. */
	assert_int_equal(verdict(cfg, "100.64.0.3", "100.64.0.1", 80, SYN), FILTER_ACCEPT);
	assert_int_equal(verdict(cfg, "100.64.0.2", "100.64.0.1", 80, SYN), FILTER_DROP);
	assert_int_equal(verdict(cfg, "fd7a:115c:a1e0::3", "fd7a:115c:a1e0::1", 80, SYN),
			 FILTER_ACCEPT);
	assert_int_equal(verdict(cfg, "fd7a:115c:a1e0::2", "fd7a:115c:a1e0::1", 80, SYN),
			 FILTER_DROP);
	/* Its side of a flow we opened (TCP non-SYN) still passes. */
	assert_int_equal(verdict(cfg, "100.64.0.2", "100.64.0.1", 5555, ACK), FILTER_ACCEPT);
	/* Nobody may open port 22. */
	assert_int_equal(verdict(cfg, "100.64.0.3", "100.64.0.1", 22, SYN), FILTER_DROP);
	dataplane_config_free(cfg);
	filter_state_free(fs);
}

/* Routes that overlap: the jailed peer 2 routes 10.0.0.0/8, the free peer 3
 * 10.1.0.0/16 inside it. WireGuard delivers a packet from 10.1.2.3 only from
 * peer 3 (the longest match), so it is peer 3's flow and may open port 80;
 * one from 10.2.0.1 is the jailed peer's. */
static void test_jailed_route_overlaps_free_route(void **state)
{
	struct filter_state *fs = filter_state_new();
	struct dataplane_config *cfg = config_of(
		"{" SELF ",\"Peers\":[{\"ID\":2,\"Key\":\"" K2 "\",\"IsJailed\":true,"
		"\"Addresses\":[\"100.64.0.2/32\"],\"AllowedIPs\":[\"100.64.0.2/32\","
		"\"10.0.0.0/8\"]},{\"ID\":3,\"Key\":\"" K3 "\",\"Addresses\":"
		"[\"100.64.0.3/32\"],\"AllowedIPs\":[\"100.64.0.3/32\",\"10.1.0.0/16\"]}]," RULES
		"}",
		fs);

	(void)state;
	assert_int_equal(verdict(cfg, "10.1.2.3", "100.64.0.1", 80, SYN), FILTER_ACCEPT);
	assert_int_equal(verdict(cfg, "10.2.0.1", "100.64.0.1", 80, SYN), FILTER_DROP);
	assert_int_equal(verdict(cfg, "100.64.0.2", "100.64.0.1", 80, SYN), FILTER_DROP);
	dataplane_config_free(cfg);
	filter_state_free(fs);
}

static void test_no_jailed_peer_no_second_filter(void **state)
{
	struct filter_state *fs = filter_state_new();
	struct dataplane_config *cfg =
		config_of("{" SELF ",\"Peers\":[{\"ID\":3,\"Key\":\"" K3 "\",\"Addresses\":"
			  "[\"100.64.0.3/32\"]}]," RULES "}",
			  fs);

	(void)state;
	assert_null(cfg->jailed_src);
	assert_null(cfg->jailed);
	assert_int_equal(verdict(cfg, "100.64.0.3", "100.64.0.1", 80, SYN), FILTER_ACCEPT);
	dataplane_config_free(cfg);
	filter_state_free(fs);
}

/* Named rule lists make one filter, as their concatenation in name order
 * parsed whole would: each list's rules apply; a list upstream rejects
 * (SrcBits) leaves no rule at all; a list that does not parse refuses the
 * configuration, unless a rejected list comes first (parsing stopped
 * there). */
static void test_named_lists_are_one_filter(void **state)
{
	static const char p22[] = "[{\"SrcIPs\":[\"*\"],\"DstPorts\":[{\"IP\":\"*\",\"Ports\":"
				  "{\"First\":22,\"Last\":22}}]}]";
	static const char p80[] = "[{\"SrcIPs\":[\"*\"],\"DstPorts\":[{\"IP\":\"*\",\"Ports\":"
				  "{\"First\":80,\"Last\":80}}]}]";
	static const char rejected[] = "[{\"SrcIPs\":[\"*\"],\"SrcBits\":[8]}]";
	static const char bad[] = "[{\"SrcIPs\":\"*\"}]";
	struct filter_state *fs = filter_state_new();
	struct dataplane_config *cfg;
	const char *why = NULL;
	char json[1024];

	(void)state;
	snprintf(json, sizeof(json), "{" SELF ",\"PacketFilters\":{\"b\":%s,\"a\":%s}}", p80, p22);
	cfg = config_of(json, fs);
	assert_int_equal(verdict(cfg, "100.64.0.3", "100.64.0.1", 22, SYN), FILTER_ACCEPT);
	assert_int_equal(verdict(cfg, "100.64.0.3", "100.64.0.1", 80, SYN), FILTER_ACCEPT);
	assert_int_equal(verdict(cfg, "100.64.0.3", "100.64.0.1", 23, SYN), FILTER_DROP);
	dataplane_config_free(cfg);

	snprintf(json, sizeof(json), "{" SELF ",\"PacketFilters\":{\"b\":%s,\"a\":%s}}", p80,
		 rejected);
	cfg = config_of(json, fs);
	assert_int_equal(verdict(cfg, "100.64.0.3", "100.64.0.1", 80, SYN), FILTER_DROP);
	dataplane_config_free(cfg);

	snprintf(json, sizeof(json), "{" SELF ",\"PacketFilters\":{\"b\":%s,\"a\":%s}}", p80, bad);
	cfg = (void *)1;
	assert_int_equal(config_try(json, fs, &cfg, &why), -EBADMSG);
	assert_null(cfg);
	assert_string_equal(why, "FilterRule field is not an array of allowed size");

	snprintf(json, sizeof(json), "{" SELF ",\"PacketFilters\":{\"b\":%s,\"a\":%s}}", bad,
		 rejected);
	cfg = config_of(json, fs);
	assert_int_equal(verdict(cfg, "100.64.0.3", "100.64.0.1", 80, SYN), FILTER_DROP);
	dataplane_config_free(cfg);
	filter_state_free(fs);
}

#define DK2 "discokey:4444444444444444444444444444444444444444444444444444444444444444"
/* Peer 2 speaks disco and has a home DERP region; peer 3 (an external
 * WireGuard node) has no disco key. */
#define DISCO_PEERS                                                                          \
	"\"Peers\":[{\"ID\":2,\"Key\":\"" K2 "\",\"DiscoKey\":\"" DK2 "\",\"HomeDERP\":900," \
	"\"Endpoints\":[\"198.51.100.2:41641\",\"[2001:db8::2]:41642\"],\"Addresses\":"      \
	"[\"100.64.0.2/32\"]},{\"ID\":3,\"Key\":\"" K3 "\",\"Endpoints\":"                   \
	"[\"198.51.100.3:51820\"],\"Addresses\":[\"100.64.0.3/32\"]}]"

/* Every endpoint of a peer reaches the configuration (disco pings them
 * all), with its disco key and home region; a peer without a disco key
 * makes WireGuard acceptable from any source. */
static void test_disco_endpoints_and_home_derp(void **state)
{
	struct filter_state *fs = filter_state_new();
	struct dataplane_config *cfg = config_of("{" SELF "," DISCO_PEERS "," RULES "}", fs);
	const struct dataplane_disco_peer *d2 = NULL, *d3 = NULL;
	char text[DISCO_ADDR_STRLEN];

	(void)state;
	assert_int_equal(cfg->n_peers, 2);
	for (size_t i = 0; i < cfg->n_peers; i++) {
		if (cfg->peers[i].public_key[0] == 0x22)
			d2 = &cfg->disco[i];
		else
			d3 = &cfg->disco[i];
	}
	assert_non_null(d2);
	assert_non_null(d3);
	assert_true(d2->has_disco);
	assert_int_equal(d2->disco[0], 0x44);
	assert_int_equal(d2->home_derp, 900);
	assert_int_equal(d2->n_eps, 2);
	assert_string_equal(disco_addr_format(&cfg->disco_eps[d2->ep_off], text, sizeof(text)),
			    "198.51.100.2:41641");
	assert_string_equal(disco_addr_format(&cfg->disco_eps[d2->ep_off + 1], text, sizeof(text)),
			    "[2001:db8::2]:41642");
	assert_false(d3->has_disco);
	assert_int_equal(d3->n_eps, 1);
	assert_true(cfg->any_without_disco);
	dataplane_config_free(cfg);
	filter_state_free(fs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_jailed_peer_opens_nothing),
		cmocka_unit_test(test_jailed_route_overlaps_free_route),
		cmocka_unit_test(test_no_jailed_peer_no_second_filter),
		cmocka_unit_test(test_named_lists_are_one_filter),
		cmocka_unit_test(test_disco_endpoints_and_home_derp),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
