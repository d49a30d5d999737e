#!/bin/bash
# interop register: a pod joins a tailnet run by genuine Tailscale v1.68.2
# (upstream's testcontrol, with a genuine tailscaled as the other node),
# through the real plugin and our supervisor with --control-url.
#
#   netns ${GP}hub: br0 ─┬─ ${GP}ctl  10.99.0.1    peerctl (testcontrol, DERP, STUN)
#                        ├─ ${GP}n1   10.99.0.11   genuine tailscaled "n1"
#                        └─ NODE      10.99.0.100  our supervisor, its workers' UDP sockets
#   pod netns p0: ts0 (the worker's TUN)
#
# Checked:
#   - ADD gives the pod a 100.64.x and an fd7a: address, on ts0 in the pod;
#   - the genuine control lists the pod's node with those addresses, a disco
#     key and an endpoint on the node's bridge address whose port is a UDP
#     socket bound in the node netns;
#   - `tailscale status --json` of the genuine node lists the pod as a peer
#     (same node key, same two addresses), and its network map has the
#     pod's disco key and endpoints as control lists them;
#   - our `status --json` shows the pod's data plane configured with one peer
#     (the genuine node, the only other node) and our worker's log says so;
#   - the auth key never reaches our supervisor's log;
#   - every RegisterRequest of the pod (logged by the genuine control, run
#     with -v) carries one non-zero tailnet-lock key (NLKey);
#   - DEL removes ts0 from the pod netns and logs the node out: the logout
#     RegisterRequest reaches the genuine control carrying the auth key (it
#     checks the key on every register request, as genuine `tailscale
#     logout` presents it) and is not refused ("invalid authkey").
# Traffic between the genuine node and the pod: tests/interop/traffic.sh.
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/genuine.sh"

genuine_or_skip
tscni_init "register"
source "$(dirname "$0")/../lib/tailnet.sh"

# -v: the genuine control logs every RegisterRequest it gets (reg_requests).
PEERCTL_ARGS=-v genuine_one_pod || tscni_finish
P=${POD_NS[0]}
echo "# pod 0: ${POD4[0]} ${POD6[0]}; our node netns $NODE_NS at $NODE_ADDR"

# --- ts0 in the pod ---------------------------------------------------------
have=$(ip -n "$P" -j addr show dev ts0 scope global 2>/dev/null |
	jq -r '[.[0].addr_info[]? | "\(.local)/\(.prefixlen)"] | sort | join(" ")')
check "ts0 in the pod has 100.64.x and fd7a: addresses from the genuine control ($have)" \
	bash -c '[[ $1 =~ ^100\.(6[4-9]|[7-9][0-9]|1[01][0-9]|12[0-7])\. ]] &&
		[[ $1 == *" fd7a:115c:a1e0:"*"/128" ]] && [[ $1 == "$2/32 $3/128" ]]' _ \
	"$have" "${POD4[0]}" "${POD6[0]}"

# --- the genuine control's node list ------------------------------------------
# pod_node: our pod's entry in peerctl's /nodes (by its 100.x address).
pod_node()
{
	genuine_nodes | jq -c --arg a "${POD4[0]}/32" '[.[] | select(.addresses | index($a))][0] // empty'
}
# The endpoints reach control with the worker's first lite update.
node=""
for ((k = 0; k < 50; k++)); do
	node=$(pod_node)
	jqq '(.endpoints // []) | length > 0' <<<"$node" 2>/dev/null && break
	sleep 0.1
done
echo "# genuine control's entry for the pod: $(jq -c '{name, node_key, disco_key, addresses, endpoints, derp, os}' <<<"$node")"
check "the genuine control lists the pod's node with its two addresses" \
	jqq --arg a "${POD4[0]}/32" --arg b "${POD6[0]}/128" \
	'(.addresses | sort) == ([$a, $b] | sort)' <<<"$node"
check "the genuine control holds a disco key for the pod" \
	jqq '.disco_key | test("^discokey:[0-9a-f]{64}$") and (test("^discokey:0{64}$") | not)' <<<"$node"
n1_disco=$(genuine_nodes | jq -r '[.[] | select(.name == "n1")][0].disco_key')
check "the pod's disco key is its own, not the genuine node's" \
	jqq --arg d "$n1_disco" '.disco_key != $d' <<<"$node"
ep=$(jq -r --arg p "$NODE_ADDR:" '[.endpoints[]? | select(startswith($p))][0] // empty' <<<"$node")
check "the genuine control lists an endpoint of the pod on our node's bridge address ($ep)" \
	test -n "$ep"
check "that endpoint's port is a UDP socket bound in our node netns (${ep##*:})" \
	bash -c 'ip netns exec "$1" ss -Huln | awk "{print \$4}" | grep -q ":$2\$"' _ \
	"$NODE_NS" "${ep##*:}"
POD_KEY=$(jq -r '.node_key // empty' <<<"$node")

# --- the genuine node sees the pod --------------------------------------------
# n1_peer: the pod's entry in n1's `tailscale status --json` (by node key).
n1_peer()
{
	genuine_ts 1 status --json 2>/dev/null |
		jq -c --arg k "$POD_KEY" '[.Peer[]? | select(.PublicKey == $k)][0] // empty'
}
peer=""
for ((k = 0; k < 100; k++)); do
	peer=$(n1_peer)
	[[ -n $peer ]] && break
	sleep 0.1
done
echo "# n1's view of the pod: $(jq -c '{HostName, DNSName, TailscaleIPs, Addrs, CurAddr, Relay, Online}' <<<"$peer" 2>/dev/null)"
check "the genuine node lists the pod as a peer (node key ${POD_KEY:0:24}...)" test -n "$peer"
check "with the pod's two addresses" jqq --arg a "${POD4[0]}" --arg b "${POD6[0]}" \
	'(.TailscaleIPs | sort) == ([$a, $b] | sort)' <<<"$peer"
# Its network map carries what control holds for the pod: the same disco key
# (what its disco pings will be sealed to) and endpoints.
nm=$(genuine_ts 1 debug netmap 2>/dev/null |
	jq -c --arg k "$POD_KEY" '[.Peers[]? | select(.Key == $k)][0] // empty')
check "the genuine node's netmap has the pod's disco key as control lists it" \
	jqq --arg d "$(jq -r .disco_key <<<"$node")" '.DiscoKey == $d' <<<"$nm"
check "the genuine node's netmap has the pod's endpoints as control lists them" \
	jqq --argjson e "$(jq -c '.endpoints | sort' <<<"$node")" '(.Endpoints | sort) == $e' <<<"$nm"
check "the genuine node's netmap names our program (Hostinfo.App)" \
	jqq '.Hostinfo.App == "tailscale-cni"' <<<"$nm"

# --- our side sees the genuine node --------------------------------------------
for ((k = 0; k < 50; k++)); do
	peers=$(pod_stat "${POD_UID[0]}" peers)
	[[ $peers == 1 ]] && break
	sleep 0.1
done
check "our status --json: the pod's data plane has one peer, the genuine node ($peers)" \
	test "$peers" == 1
check "our status --json: the pod's data plane is configured" \
	test "$(pod_stat "${POD_UID[0]}" configured)" == true
check "our worker's log: data plane configured with 1 peer" \
	grep -qE "pod ${POD_UID[0]}: data plane: 1 peers" "$T/sup.log"
check "the auth key never reaches our supervisor's log" \
	bash -c '! grep -qF -- "$(cat "$1")" "$2"' _ "$T/authkey" "$T/sup.log"

# --- what the genuine control was sent -----------------------------------------
# reg_requests: the pod's RegisterRequests as the genuine control logged them
# (testcontrol's Verbose: "Got tailcfg.RegisterRequest: {" and indented JSON
# up to a lone "}"), one JSON object a line.
reg_requests()
{
	awk '/Got tailcfg\.RegisterRequest: \{$/ { j = "{"; on = 1; next }
	     on { j = j $0; if ($0 == "}") { print j; on = 0 } }' "$GRUN/peerctl.log" |
		jq -c --arg k "$POD_KEY" 'select(.NodeKey == $k)'
}
regs=$(reg_requests)
echo "# the pod's RegisterRequests: $(jq -sc 'map({NLKey, Expiry})' <<<"$regs")"
check "the pod registered with the genuine control ($(jq -s length <<<"$regs") requests)" \
	jqq -s 'length > 0' <<<"$regs"
check "its RegisterRequests carry a tailnet-lock key (NLKey), not the zero key" \
	jqq -s 'all(.[]; .NLKey | test("^nlpub:[0-9a-f]{64}$") and (test("^nlpub:0{64}$") | not))' \
	<<<"$regs"
check "one and the same NLKey in all of them" jqq -s 'map(.NLKey) | unique | length == 1' <<<"$regs"

# --- DEL -------------------------------------------------------------------------
pod_del 0
check "after DEL, ts0 is gone from the pod netns" bash -c "! ip -n '$P' link show ts0 >/dev/null 2>&1"
check "after DEL, our status holds no attachment" \
	test "$(sup_status_json | jq '.pods | length')" == 0
# The logout: a RegisterRequest with Expiry in the past (Unix time 123).
logout=$(reg_requests | jq -c 'select(.Expiry == "1970-01-01T00:02:03Z")')
check "after DEL, the pod's logout reached the genuine control" test -n "$logout"
check "the logout carries the auth key, as genuine tailscale logout does" \
	jqq -s --rawfile a "$T/authkey" 'length > 0 and all(.[]; .Auth.AuthKey == ($a | rtrimstr("\n")))' \
	<<<"$logout"
check "the genuine control did not refuse the logout (no \"invalid authkey\")" \
	bash -c '! grep -q "invalid authkey" "$1"' _ "$T/sup.log"
check "our worker's log: the pod logged out" \
	grep -qE "pod ${POD_UID[0]}: logged out" "$T/sup.log"
tscni_finish
