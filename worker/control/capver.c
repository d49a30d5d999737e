/* See capver.h. One row per obligation; the promise texts paraphrase the
 * CapabilityVersion history in upstream tailcfg/tailcfg.go. */
#include "capver.h"

static const struct capver_row table[] = {
	{5, "delta map responses: later messages change only what they carry", true,
	 "worker/control/netmap.c netmap_apply"},
	{6, "MapResponse.PacketFilter null means unchanged, [] means empty", true,
	 "worker/control/mapjson_map.c parse_filters, worker/control/netmap.c apply_filters"},
	{7, "FilterRule.SrcIPs holds CIDRs, ranges and *", true,
	 "worker/dataplane/filter_rules.c parse_ip_set"},
	{10, "MapResponse.PeerSeenChange", true,
	 "worker/control/mapjson_map.c parse_id_bools, worker/control/netmap.c apply_peers"},
	{12, "PingRequest is answered", true,
	 "worker/control/request.c: HEAD over Noise; c2n answered 404; other types ignored"},
	{13, "FilterRule.IPProto", true, "worker/dataplane/filter_rules.c parse_protos"},
	{15, "null DNSConfig means unchanged", true, "worker/control/netmap.c netmap_apply"},
	{16, "Node.Online and MapResponse.OnlineChange", true,
	 "worker/control/mapjson_node.c parse_node, worker/control/netmap.c apply_peers"},
	{17, "empty MapResponse.Domain means unchanged", true,
	 "worker/control/mapjson_map.c mapjson_parse_map_response, worker/control/netmap.c "
	 "netmap_apply"},
	{18, "null MapResponse.Node means unchanged", true, "worker/control/netmap.c netmap_apply"},
	{28, "the control protocol is Noise (ts2021)", true,
	 "worker/control/ts2021.c, worker/control/conn.c"},
	{33, "PeersChangedPatch with DERPRegion and Endpoints", true,
	 "worker/control/mapjson_map.c parse_patch, worker/control/netmap.c apply_patch"},
	{36, "PeersChangedPatch Key, DiscoKey, Online, LastSeen, KeyExpiry", true,
	 "worker/control/mapjson_map.c parse_patch, worker/control/netmap.c apply_patch"},
	{38, "PingRequest.URLIsNoise: the HEAD goes over the Noise connection", true,
	 "worker/control/request.c answer_ping"},
	{45, "c2n requests (debug endpoints, later /update, /vip-services, ...)", true,
	 "worker/control/request.c: every c2n request is answered 404, as by a client without it"},
	{49, "EarlyNoise: the server may send an early payload", true,
	 "worker/control/ts2021.c ts2021_early_feed"},
	{53, "Node.Expired is respected and expiry computed from KeyExpiry", true,
	 "worker/control/netmap.c netmap_node_expired, worker/dataplane/dataplane_config.c "
	 "peer_usable"},
	{58, "lite map updates are retried before the map poll is restarted", true,
	 "worker/control/request.c lite_done: a refused lite update is retried on a timer"},
	{59, "Peers[].SelfNodeV4MasqAddrForThisPeer", false,
	 "worker/control/mapjson_node.c parse_node marks has_masq_addr, but the data plane does "
	 "not masquerade our address towards such a peer as upstream does"},
	{65, "incremental DERPMap with HomeParams; null Regions means unchanged", true,
	 "worker/control/netmap.c merge_derpmap"},
	{68, "a Stream:true MapRequest is read-only: Hostinfo and Endpoints go in lite updates",
	 true, "worker/control/request.c client__send_lite"},
	{74, "Node.CapMap instead of Capabilities", true,
	 "worker/control/mapjson_node.c parse_caps"},
	{81, "MapResponse.PacketFilters: named, incremental filters", true,
	 "worker/control/mapjson_map.c parse_filters, worker/control/netmap.c apply_filters"},
	{94, "Node.IsJailed: a jailed peer may not initiate connections to us", true,
	 "worker/dataplane/dataplane_config.c dataplane__config_filter_in: a jailed peer's "
	 "packets meet a shields-up filter"},
	{109, "\"cap:<name>\" entries in FilterRule.SrcIPs", true,
	 "worker/dataplane/filter_rules.c parse_ip_set, worker/dataplane/dataplane_config.c "
	 "caps_collect"},
	{111, "peers carry HomeDERP instead of the legacy DERP string", true,
	 "worker/control/mapjson_node.c parse_node (upgradeNode)"},
	{112, "absent AllowedIPs means the same as Addresses", true,
	 "worker/control/mapjson_node.c parse_node (upgradeNode)"},
	{113, "Hostinfo.IngressEnabled tells control whether Funnel is on", true,
	 "we never run Funnel: the field is left out (false)"},
	{114, "NodeAttrMaxKeyDuration may be set (no client change upstream)", true,
	 "nothing to do"},
	{115, "DERPRegion.NoMeasureNoHome: such regions are not measured or chosen as home", true,
	 "worker/control/netmap.c netmap_derp_region_may_be_home, used by worker/derp_link.c for "
	 "the home choice and the DERP map the supervisor's netcheck measures"},
	{116, "MagicDNS answers AAAA when NodeAttrMagicDNSPeerAAAA is set", true,
	 "we serve no MagicDNS"},
	{117, "MapResponse.DisplayMessages", true, "ignored: a pod has no UI"},
	{118, "Hostinfo.StateEncrypted", true, "left out (unknown)"},
	{119, "Hostinfo.Location.Priority orders routes", true, "we accept no subnet routes"},
	{120, "peer relay disco messages; peers treat us as relay capable", false,
	 "worker/magicsock/disco.c does not handle the relay messages yet"},
	{121, "peer relay endpoint allocation messages", false, "as 120"},
	{124, "crypto routing is mandatory", false, "not done in worker/magicsock yet"},
	{126, "seamless node key renewal", false, "node keys are not renewed"},
	{127, "c2n GET /debug/netmap", true, "worker/control/request.c: answered 404"},
	{137, "/machine/register may answer 429 with Retry-After", true,
	 "worker/control/request.c register_done"},
	{144, "TSMP disco key advertisements after WireGuard handshakes", false, "not sent"},
};

const struct capver_row *capver_table(size_t *n)
{
	*n = sizeof(table) / sizeof(table[0]);
	return table;
}

int capver_claim(void)
{
	size_t n, i;
	const struct capver_row *t = capver_table(&n);
	int claim = CAPVER_FLOOR;

	for (i = 0; i < n; i++) {
		if (t[i].version <= CAPVER_FLOOR)
			continue;
		if (!t[i].met || t[i].version > CAPVER_CEILING)
			return claim;
		claim = t[i].version;
	}
	/* Every row met: nothing above the last row has been checked. */
	return claim;
}

size_t capver_gaps(size_t *idx, size_t cap)
{
	size_t n, i, count = 0;
	const struct capver_row *t = capver_table(&n);
	int claim = capver_claim();

	for (i = 0; i < n && t[i].version <= claim; i++) {
		if (t[i].met)
			continue;
		if (count < cap)
			idx[count] = i;
		count++;
	}
	return count;
}
