/* Unit tests of the engine's per-peer report (worker/dataplane/magic.c
 * dataplane__peers_gather): for each peer of the configuration in use, the
 * path its WireGuard takes now as path_endpoint() would choose it. A disco
 * peer with no proven address goes through its home DERP region while the
 * engine has DERP, nowhere without; a Pong makes its address the path. A
 * peer without a disco key sends to its first endpoint. The report stops at
 * the cap it is given. No sockets: the engine's state is built by hand
 * around a configuration from a netmap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "worker/dataplane/magic.c"

#include "tests/unit/worker/magicsock/disco_text.h"
#include "worker/control/mapjson.h"
#include "worker/magicsock/chan.h"

#define K1  "nodekey:1111111111111111111111111111111111111111111111111111111111111111"
#define K2  "nodekey:2222222222222222222222222222222222222222222222222222222222222222"
#define K3  "nodekey:3333333333333333333333333333333333333333333333333333333333333333"
#define DK2 "discokey:4444444444444444444444444444444444444444444444444444444444444444"
/* Peer 2 speaks disco (home region 900, two endpoints); peer 3 does not. */
#define MAP                                                                                  \
	"{\"Node\":{\"ID\":1,\"Key\":\"" K1 "\",\"Addresses\":[\"100.64.0.1/32\"]},"         \
	"\"Peers\":[{\"ID\":2,\"Key\":\"" K2 "\",\"DiscoKey\":\"" DK2 "\",\"HomeDERP\":900," \
	"\"Endpoints\":[\"198.51.100.2:41641\",\"[2001:db8::2]:41642\"],\"Addresses\":"      \
	"[\"100.64.0.2/32\"]},{\"ID\":3,\"Key\":\"" K3 "\",\"Endpoints\":"                   \
	"[\"198.51.100.3:51820\"],\"Addresses\":[\"100.64.0.3/32\"]}]}"

enum { NOW_MS = 100000 };

static const uint64_t now_ns = (uint64_t)NOW_MS * DP_NS_PER_MS;

/* An engine without I/O: a WireGuard device with the peers of MAP as its
 * configuration in use, and magic.c's state for them. */
static struct dataplane *engine_new(void)
{
	struct dataplane *dp = xcalloc(1, sizeof(*dp));
	struct mapjson_map_response *r = NULL;
	struct wg_device_config wc;
	struct netmap *nm = NULL;
	const char *why = NULL;

	if (sodium_init() < 0)
		fail_msg("sodium_init");
	dp->now_ms = NOW_MS;
	dataplane__magic_init(dp);
	randombytes_buf(dp->disco_priv, WG_KEY_LEN);
	wg_device_config_default(&wc);
	randombytes_buf(wc.private_key, WG_KEY_LEN);
	wc.path = &dataplane__path_ops; /* as dataplane.c sets it */
	wc.path_arg = dp;
	if (wg_device_new(&wc, now_ns, &dp->dev, &why) < 0)
		fail_msg("device: %s", why);
	dp->fs = filter_state_new();
	if (mapjson_parse_map_response(MAP, strlen(MAP), &r, &why) < 0 ||
	    netmap_apply(NULL, r, 1700000000, &nm, &why) < 0 ||
	    dataplane_config_from_netmap(nm, 1700000000, dp->fs, &dp->cur, &why) < 0 ||
	    wg_device_set_peers(dp->dev, dp->cur->peers, dp->cur->n_peers, now_ns, &why) < 0)
		fail_msg("configuration: %s", why);
	mapjson_map_response_free(r);
	netmap_put(nm);
	dataplane__magic_apply(dp, dp->cur);
	return dp;
}

static void engine_free(struct dataplane *dp)
{
	dataplane__magic_free(dp);
	dataplane_config_free(dp->cur);
	wg_device_free(dp->dev);
	filter_state_free(dp->fs);
	if (dp->derp)
		chan_free(dp->derp);
	free(dp->bufs);
	free(dp);
}

/* The batches the engine sends from (tun_in, udp_out), as dataplane.c
 * sets them up; with no UDP socket what goes to UDP is dropped, what goes
 * to DERP waits in dp->derp. */
static void engine_batches(struct dataplane *dp)
{
	dp->bufs = xcalloc(2 * DATAPLANE_BATCH, DP_BUF_LEN);
	dp->tun_in.pkt = dp->slots[0];
	dp->udp_out.pkt = dp->slots[3];
	dp->tun_in.cap = dp->udp_out.cap = DATAPLANE_BATCH;
	for (size_t i = 0; i < DATAPLANE_BATCH; i++) {
		dp->slots[0][i].buf = dp->bufs + i * DP_BUF_LEN;
		dp->slots[0][i].cap = DP_BUF_LEN;
		dp->slots[3][i].buf = dp->bufs + (DATAPLANE_BATCH + i) * DP_BUF_LEN;
		dp->slots[3][i].cap = DP_BUF_LEN;
	}
}

/* The report's entry for the peer whose key starts with byte b. */
static const struct dataplane_peer_info *info_of(const struct dataplane_peer_info *v, size_t n,
						 uint8_t b)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].key[0] == b)
			return &v[i];
	fail_msg("peer %02x not reported", b);
	return NULL;
}

static void assert_direct(const struct dataplane_peer_info *p, const char *addr)
{
	char text[DISCO_ADDR_STRLEN];

	assert_int_equal(p->path, DATAPLANE_PATH_DIRECT);
	assert_string_equal(disco_addr_format(&p->direct, text, sizeof(text)), addr);
}

/* Before any Pong: DERP with it, nowhere without; peer 3 always direct. */
static void test_unproven_disco_peer_takes_derp(void **state)
{
	struct dataplane *dp = engine_new();
	struct dataplane_peer_info v[4];
	size_t n;

	(void)state;
	n = dataplane__peers_gather(dp, now_ns, v, 4);
	assert_int_equal(n, 2);
	assert_int_equal(info_of(v, n, 0x22)->path, DATAPLANE_PATH_NONE);
	assert_direct(info_of(v, n, 0x33), "198.51.100.3:51820");
	/* No handshake yet, nothing sent. */
	assert_int_equal(info_of(v, n, 0x22)->last_handshake_ns, 0);
	assert_int_equal(info_of(v, n, 0x33)->tx_bytes + info_of(v, n, 0x33)->rx_bytes, 0);

	dp->derp = chan_new();
	n = dataplane__peers_gather(dp, now_ns, v, 4);
	assert_int_equal(info_of(v, n, 0x22)->path, DATAPLANE_PATH_DERP);
	assert_int_equal(info_of(v, n, 0x22)->derp_region, 900);
	engine_free(dp);
}

/* A Pong from one of the endpoints pinged: that address is the path,
 * DERP or not. Reporting starts no pings (the report has no side effects). */
static void test_pong_makes_address_the_path(void **state)
{
	struct dataplane *dp = engine_new();
	struct dp_magic_peer *m = dp->mpeers[0];
	struct dataplane_peer_info v[4];
	struct disco_addr src;
	struct path_out out;
	const uint8_t *txid = NULL;
	size_t n;

	(void)state;
	dp->derp = chan_new();
	assert_int_equal(dp->n_mpeers, 1);
	n = dataplane__peers_gather(dp, now_ns, v, 4);
	assert_int_equal(m->path.last_full_ping, 0);
	assert_int_equal(path_on_send(&m->path, NOW_MS, &out), 0);
	test_addr("198.51.100.2:41641", &src);
	for (size_t i = 0; i < out.n; i++)
		if (out.actions[i].type == PATH_SEND_PING &&
		    disco_addr_equal(&out.actions[i].to, &src))
			txid = out.actions[i].txid;
	assert_non_null(txid);
	assert_true(path_on_pong(&m->path, NOW_MS + 20, txid, &src));
	dp->now_ms = NOW_MS + 30;
	n = dataplane__peers_gather(dp, now_ns, v, 4);
	assert_direct(info_of(v, n, 0x22), "198.51.100.2:41641");
	engine_free(dp);
}

/* The configuration of MAP with peer 2's disco key replaced by disco. */
static void reconfigure(struct dataplane *dp, const uint8_t disco[WG_KEY_LEN])
{
	char hex[2 * WG_KEY_LEN + 1], map[sizeof(MAP) + 8];
	struct mapjson_map_response *r = NULL;
	struct netmap *nm = NULL;
	struct dataplane_config *cfg = NULL;
	const char *why = NULL;
	char *at;

	sodium_bin2hex(hex, sizeof(hex), disco, WG_KEY_LEN);
	snprintf(map, sizeof(map), "%s", MAP);
	at = strstr(map, DK2 + strlen("discokey:"));
	assert_non_null(at);
	memcpy(at, hex, 2 * WG_KEY_LEN);
	if (mapjson_parse_map_response(map, strlen(map), &r, &why) < 0 ||
	    netmap_apply(NULL, r, 1700000000, &nm, &why) < 0 ||
	    dataplane_config_from_netmap(nm, 1700000000, dp->fs, &cfg, &why) < 0 ||
	    wg_device_set_peers(dp->dev, cfg->peers, cfg->n_peers, now_ns, &why) < 0)
		fail_msg("configuration: %s", why);
	mapjson_map_response_free(r);
	netmap_put(nm);
	dataplane_config_free(dp->cur);
	dp->cur = cfg;
	dataplane__magic_apply(dp, cfg);
	dataplane__early_disco_run(dp, dp->now_ms * DP_NS_PER_MS);
}

/* A Ping sealed by the disco key priv/pub for our engine. */
static size_t ping_from(const struct dataplane *dp, const uint8_t priv[WG_KEY_LEN],
			const uint8_t pub[WG_KEY_LEN], uint8_t *out, size_t cap)
{
	struct disco_msg msg = {.type = DISCO_PING};
	uint8_t nonce[DISCO_NONCE_LEN];
	struct disco_shared sh;
	int n;

	randombytes_buf(msg.ping.txid, sizeof(msg.ping.txid));
	randombytes_buf(nonce, sizeof(nonce));
	assert_int_equal(disco_shared_init(&sh, dp->disco_pub, priv), 0);
	n = disco_encode(&sh, pub, nonce, &msg, out, cap);
	disco_shared_destroy(&sh);
	assert_true(n > 0);
	return (size_t)n;
}

/* Peer 2 restarted: its Ping under its new disco key comes before the
 * netmap that has the key. It is dropped and counted, then answered when
 * that configuration comes (within DP_EARLY_DISCO_MS): the Pong goes out
 * and the source is confirmed for WireGuard, where before it waited for
 * the peer's next round of pings. One older than DP_EARLY_DISCO_MS is not
 * run. */
static void test_early_disco_answered_after_netmap(void **state)
{
	struct dataplane *dp = engine_new();
	uint8_t priv[WG_KEY_LEN], pub[WG_KEY_LEN], pkt[256];
	struct disco_addr src;
	size_t len;

	(void)state;
	crypto_scalarmult_base(dp->disco_pub, dp->disco_priv);
	randombytes_buf(priv, sizeof(priv));
	crypto_scalarmult_base(pub, priv);
	test_addr("198.51.100.2:41641", &src);

	len = ping_from(dp, priv, pub, pkt, sizeof(pkt));
	disco_rx(dp, pkt, len, &src, NULL, now_ns);
	assert_int_equal(dp->st.disco_in, 0);
	assert_int_equal(dp->st.drops[DATAPLANE_DROP_DISCO_UNKNOWN], 1);
	assert_false(path_accepts_wg(&dp->mpeers[0]->path, &src));

	dp->now_ms = NOW_MS + 300;
	reconfigure(dp, pub);
	assert_int_equal(dp->st.disco_in, 1);
	assert_int_equal(dp->st.disco_out, 1); /* the Pong */
	assert_true(path_accepts_wg(&dp->mpeers[0]->path, &src));
	/* Run once only. */
	reconfigure(dp, pub);
	assert_int_equal(dp->st.disco_in, 1);

	/* Too old: forgotten. */
	randombytes_buf(priv, sizeof(priv));
	crypto_scalarmult_base(pub, priv);
	len = ping_from(dp, priv, pub, pkt, sizeof(pkt));
	disco_rx(dp, pkt, len, &src, NULL, now_ns);
	dp->now_ms += DP_EARLY_DISCO_MS + 1;
	reconfigure(dp, pub);
	assert_int_equal(dp->st.disco_in, 1);
	engine_free(dp);
}

/* The pod sends its first packet to peer 2 (100.64.0.2): staged, and a
 * handshake starts through whatever path there is. */
static void first_packet_to_peer2(struct dataplane *dp)
{
	struct wg_packet *w = &dp->tun_in.pkt[0];
	uint8_t *ip = w->buf + WG_DEVICE_HEADROOM;

	memset(ip, 0, 28);
	ip[0] = 0x45;
	ip[3] = 28;
	ip[8] = 64;
	ip[9] = 1;
	memcpy(ip + 12, (const uint8_t[]){100, 64, 0, 1}, 4);
	memcpy(ip + 16, (const uint8_t[]){100, 64, 0, 2}, 4);
	w->off = WG_DEVICE_HEADROOM;
	w->len = 28;
	dp->tun_in.n = 1;
	wg_device_tun_rx(dp->dev, &dp->tun_in, &dp->udp_out, now_ns);
	dataplane__udp_flush(dp);
}

/* Peer 2's Pong to our ping of 198.51.100.2:41641 comes back after ms. */
static void pong_from_peer2(struct dataplane *dp, uint64_t ms)
{
	struct dp_magic_peer *m = dp->mpeers[0];
	struct disco_pong pong = {0};
	struct disco_addr src;
	bool found = false;

	test_addr("198.51.100.2:41641", &src);
	for (size_t c = 0; c < m->path.n_pings && !found; c++) {
		for (size_t i = 0; i < PATH_PING_CHUNK && !found; i++) {
			const struct path_ping *pg = &m->path.pings[c][i];

			if (pg->used && disco_addr_equal(&pg->to, &src)) {
				memcpy(pong.txid, pg->txid, DISCO_TXID_LEN);
				found = true;
			}
		}
	}
	assert_true(found);
	pong.src = src;
	dp->now_ms = NOW_MS + ms;
	pong_rx(dp, m->disco, &pong, &src, dp->now_ms * DP_NS_PER_MS);
	assert_true(path_proven(&m->path, dp->now_ms));
}

static uint64_t initiations_sent(const struct dataplane *dp)
{
	return wg_device_stats(dp->dev)->handshake_initiations_sent;
}

/* The first packet to a new peer: its initiation goes through DERP (no
 * direct path is proven yet) while disco pings the peer's endpoints. The
 * Pong that proves a direct path a moment later must not start a second
 * initiation: the peer takes only one of two initiations that close
 * together, and when it took the one through DERP, its answer found that
 * handshake replaced, and the packet waited REKEY_TIMEOUT (5 s) for the
 * retry (a first ping lost so in 1 run of scripts/demo.sh in 4). The same
 * initiation goes again on the direct path instead. Without DERP the
 * initiation found no path: the Pong starts one at once. */
static void test_direct_path_keeps_initiation_in_flight(void **state)
{
	struct dataplane *dp = engine_new();
	struct wg_peer_status st;
	const struct chan_pkt *pk;
	size_t initiations = 0;

	(void)state;
	dp->derp = chan_new();
	engine_batches(dp);
	first_packet_to_peer2(dp);
	assert_int_equal(initiations_sent(dp), 1);
	while ((pk = chan_send_peek(dp->derp))) {
		if (pk->len == sizeof(struct wg_message_initiation) && pk->data[0] == 1) {
			assert_int_equal(pk->region, 900);
			initiations++;
		}
		chan_send_done(dp->derp);
	}
	assert_int_equal(initiations, 1);

	pong_from_peer2(dp, 1);
	assert_int_equal(initiations_sent(dp), 1);
	/* The same initiation, on the direct path (not through DERP). */
	assert_int_equal(wg_device_stats(dp->dev)->handshake_initiations_resent, 1);
	assert_null(chan_send_peek(dp->derp));
	assert_int_equal(wg_device_peer_status(dp->dev, dp->mpeers[0]->node, now_ns, &st), 0);
	assert_int_equal(st.staged, 1); /* for the answer to either copy */
	engine_free(dp);

	dp = engine_new();
	engine_batches(dp);
	first_packet_to_peer2(dp);
	assert_int_equal(initiations_sent(dp), 0);
	assert_int_equal(wg_device_stats(dp->dev)->drop_no_path, 1);
	pong_from_peer2(dp, 1);
	assert_int_equal(initiations_sent(dp), 1);
	assert_int_equal(wg_device_stats(dp->dev)->handshake_initiations_resent, 0);
	engine_free(dp);
}

/* The cap bounds the report; no configuration, no peers. */
static void test_cap_and_no_configuration(void **state)
{
	struct dataplane *dp = engine_new();
	struct dataplane_peer_info v[2];
	struct dataplane_config *cfg = dp->cur;

	(void)state;
	assert_int_equal(dataplane__peers_gather(dp, now_ns, v, 1), 1);
	assert_int_equal(dataplane__peers_gather(dp, now_ns, v, 0), 0);
	dp->cur = NULL;
	assert_int_equal(dataplane__peers_gather(dp, now_ns, v, 2), 0);
	dp->cur = cfg;
	engine_free(dp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unproven_disco_peer_takes_derp),
		cmocka_unit_test(test_pong_makes_address_the_path),
		cmocka_unit_test(test_cap_and_no_configuration),
		cmocka_unit_test(test_early_disco_answered_after_netmap),
		cmocka_unit_test(test_direct_path_keeps_initiation_in_flight),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
