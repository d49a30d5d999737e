/* Unit tests of Stats.peer (worker/peer_status.c): the engine's per-peer
 * report with the netmap's names and addresses, in the shape the
 * supervisor's checks accept. A known peer gets its tailnet IPv4 and the
 * first label of its MagicDNS name (else its Hostinfo.Hostname, cleaned);
 * the node key's short form is upstream's; paths keep their address or
 * region; a handshake's monotonic time becomes Unix seconds; at most
 * PEER_STATUS_MAX entries, the rest counted. Every result packs, unpacks
 * and passes validate_worker_msg. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "worker/peer_status.c"

#include "tests/unit/worker/magicsock/disco_text.h"
#include "worker/control/mapjson.h"

#define K1	  "nodekey:1111111111111111111111111111111111111111111111111111111111111111"
#define K2	  "nodekey:2222222222222222222222222222222222222222222222222222222222222222"
#define K3	  "nodekey:3333333333333333333333333333333333333333333333333333333333333333"
#define K5	  "nodekey:5555555555555555555555555555555555555555555555555555555555555555"
#define LONG_NAME "abcdefghij0123456789abcdefghij0123456789abcdefghij0123456789abcdefghij"
/* Peer 2 has a MagicDNS name; peer 3 only a Hostinfo.Hostname with bytes a
 * name may not hold; peer 5 a name that starts with '-' and a long host
 * name. Peer 4 is not in the map. */
#define MAP                                                                                        \
	"{\"Node\":{\"ID\":1,\"Key\":\"" K1 "\",\"Addresses\":[\"100.64.0.1/32\"]},"               \
	"\"Peers\":[{\"ID\":2,\"Key\":\"" K2 "\",\"Name\":\"web-1.tail1234.ts.net.\","             \
	"\"Addresses\":[\"fd7a:115c:a1e0::2/128\",\"100.64.0.2/32\"]},"                            \
	"{\"ID\":3,\"Key\":\"" K3 "\",\"Hostinfo\":{\"Hostname\":\"Bob's phone\"},"                \
	"\"Addresses\":[\"100.64.0.3/32\"]},{\"ID\":5,\"Key\":\"" K5 "\",\"Name\":\"-x.ts.net.\"," \
	"\"Hostinfo\":{\"Hostname\":\"" LONG_NAME "\"}}]}"

enum { NOW_UNIX = 1700000000 };
static const uint64_t now_mono = 12500000000ULL; /* 12.5 s */

static struct netmap *netmap_of(const char *json)
{
	struct mapjson_map_response *r = NULL;
	struct netmap *nm = NULL;
	const char *why = NULL;

	if (mapjson_parse_map_response(json, strlen(json), &r, &why) < 0 ||
	    netmap_apply(NULL, r, NOW_UNIX, &nm, &why) < 0)
		fail_msg("netmap: %s", why);
	mapjson_map_response_free(r);
	return nm;
}

static struct dataplane_peer_info info(uint8_t b, enum dataplane_path path, const char *direct,
				       uint16_t region)
{
	struct dataplane_peer_info v = {.path = path, .derp_region = region};

	memset(v.key, b, sizeof(v.key));
	if (direct)
		test_addr(direct, &v.direct);
	return v;
}

/* s packs into a WorkerMsg that unpacks and passes the supervisor's checks. */
static void assert_valid(Tscni__Stats *s)
{
	Tscni__WorkerMsg m = TSCNI__WORKER_MSG__INIT;
	Tscni__WorkerMsg *u;
	uint8_t *buf;
	size_t len;
	const char *why = NULL;

	m.body_case = TSCNI__WORKER_MSG__BODY_STATS;
	m.stats = s;
	len = tscni__worker_msg__get_packed_size(&m);
	assert_true(len <= WMSG_MAX_LEN);
	buf = xmalloc(len);
	tscni__worker_msg__pack(&m, buf);
	u = tscni__worker_msg__unpack(NULL, len, buf);
	assert_non_null(u);
	if (validate_worker_msg(u, &why) < 0)
		fail_msg("validate: %s", why);
	assert_int_equal(u->stats->n_peer, s->n_peer);
	tscni__worker_msg__free_unpacked(u, NULL);
	free(buf);
}

static void test_peers_with_names_paths_and_times(void **state)
{
	struct netmap *nm = netmap_of(MAP);
	struct dataplane_peer_info v[5] = {
		info(0x22, DATAPLANE_PATH_DIRECT, "198.51.100.2:41641", 0),
		info(0x33, DATAPLANE_PATH_DERP, NULL, 900),
		info(0x44, DATAPLANE_PATH_DIRECT, "[2001:db8::4]:41642", 0),
		info(0x55, DATAPLANE_PATH_NONE, NULL, 0),
		/* A DERP path without a region is no path at all. */
		info(0x22, DATAPLANE_PATH_DERP, NULL, 0),
	};
	Tscni__Stats s = TSCNI__STATS__INIT;
	struct peer_status_buf *b;
	Tscni__PeerStatus *p;

	(void)state;
	v[0].last_handshake_ns = 5000000000ULL; /* 7.5 s ago */
	v[0].rx_bytes = 1234;
	v[0].tx_bytes = 5678;
	b = peer_status_fill(&s, v, 5, 300, nm, NOW_UNIX, now_mono);
	assert_non_null(b);
	assert_int_equal(s.n_peer, 5);
	assert_int_equal(s.peers_left_off, 295);

	p = s.peer[0];
	/* base64 of 22 22 22 ... is "IiIi...". */
	assert_string_equal(p->node_key, "[IiIiI]");
	assert_string_equal(p->host_name, "web-1");
	assert_int_equal(p->tailnet_ipv4.len, 4);
	assert_memory_equal(p->tailnet_ipv4.data, "\x64\x40\x00\x02", 4);
	assert_int_equal(p->path, TSCNI__PEER_PATH__PEER_PATH_DIRECT);
	assert_int_equal(p->direct_ip.len, 4);
	assert_memory_equal(p->direct_ip.data, "\xc6\x33\x64\x02", 4);
	assert_int_equal(p->direct_port, 41641);
	assert_int_equal(p->last_handshake_unix, NOW_UNIX - 7);
	assert_int_equal(p->rx_bytes, 1234);
	assert_int_equal(p->tx_bytes, 5678);

	p = s.peer[1];
	assert_string_equal(p->host_name, "Bob-s-phone");
	assert_int_equal(p->path, TSCNI__PEER_PATH__PEER_PATH_DERP);
	assert_int_equal(p->derp_region, 900);
	assert_int_equal(p->direct_ip.len, 0);
	assert_int_equal(p->last_handshake_unix, 0);

	p = s.peer[2];
	assert_string_equal(p->host_name, "");
	assert_int_equal(p->tailnet_ipv4.len, 0);
	assert_int_equal(p->direct_ip.len, 16);
	assert_int_equal(p->direct_port, 41642);

	/* Not a name: "-x"; the MagicDNS label is preferred even so. */
	p = s.peer[3];
	assert_string_equal(p->host_name, "");
	assert_int_equal(p->path, TSCNI__PEER_PATH__PEER_PATH_NONE);
	assert_int_equal(s.peer[4]->path, TSCNI__PEER_PATH__PEER_PATH_NONE);
	assert_int_equal(s.peer[4]->derp_region, 0);
	assert_valid(&s);
	peer_status_free(b);
	netmap_put(nm);
}

/* Without a name, the Hostinfo.Hostname, cut to one DNS label's length. */
static void test_long_host_name_is_cut(void **state)
{
	struct netmap *nm = netmap_of("{\"Node\":{\"ID\":1,\"Key\":\"" K1
				      "\"},\"Peers\":[{\"ID\":5,\"Key\":\"" K5 "\","
				      "\"Hostinfo\":{\"Hostname\":\"" LONG_NAME "\"}}]}");
	struct dataplane_peer_info v = info(0x55, DATAPLANE_PATH_NONE, NULL, 0);
	Tscni__Stats s = TSCNI__STATS__INIT;
	struct peer_status_buf *b;

	(void)state;
	b = peer_status_fill(&s, &v, 1, 1, nm, NOW_UNIX, now_mono);
	assert_int_equal(strlen(s.peer[0]->host_name), PEER_HOST_MAX_LEN);
	assert_memory_equal(s.peer[0]->host_name, LONG_NAME, PEER_HOST_MAX_LEN);
	assert_int_equal(s.peers_left_off, 0);
	assert_valid(&s);
	peer_status_free(b);
	netmap_put(nm);
}

/* More than PEER_STATUS_MAX: the rest counted; no netmap: no names; none:
 * no buffer. The largest Stats still fits a worker message. */
static void test_bounds(void **state)
{
	struct dataplane_peer_info *v = xcalloc(PEER_STATUS_MAX + 10, sizeof(*v));
	Tscni__Stats s = TSCNI__STATS__INIT;
	struct peer_status_buf *b;

	(void)state;
	for (size_t i = 0; i < PEER_STATUS_MAX + 10; i++) {
		v[i] = info((uint8_t)i, DATAPLANE_PATH_DIRECT, "[2001:db8::ffff]:65535", 0);
		v[i].last_handshake_ns = now_mono;
		v[i].rx_bytes = v[i].tx_bytes = UINT64_MAX;
	}
	b = peer_status_fill(&s, v, PEER_STATUS_MAX + 10, 1000, NULL, NOW_UNIX, now_mono);
	assert_int_equal(s.n_peer, PEER_STATUS_MAX);
	assert_int_equal(s.peers_left_off, 1000 - PEER_STATUS_MAX);
	assert_string_equal(s.peer[7]->host_name, "");
	assert_int_equal(s.peer[7]->last_handshake_unix, NOW_UNIX);
	assert_valid(&s);
	peer_status_free(b);

	assert_null(peer_status_fill(&s, v, 0, 3, NULL, NOW_UNIX, now_mono));
	assert_int_equal(s.n_peer, 0);
	assert_null(s.peer);
	assert_int_equal(s.peers_left_off, 3);
	peer_status_free(NULL);
	free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_peers_with_names_paths_and_times),
		cmocka_unit_test(test_long_host_name_is_cut),
		cmocka_unit_test(test_bounds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
