# shellcheck shell=bash
# A conflist driven by hand exactly as libcni does (AddNetworkList,
# CheckNetworkList, DelNetworkList): Debian's bridge (with host-local IPAM)
# first, tailscale-cni second. ADD runs each plugin in order, passing the
# previous result as prevResult; CHECK and DEL give every plugin the final
# result; DEL runs in reverse order. Source after common.sh.
#
#   netns NODE (the runtime's network domain)        netns POD
#   ┌─────────────────────────────────┐              ┌───────────────────────┐
#   │ bridge tb<pid> 10.244.1.1/24 ───┼── veth ──────┼─ eth0 10.244.1.x/24   │
#   │ (bridge + host-local run here,  │              │                       │
#   │  IPAM data in $T/ipam)          │              │ ts0 MTU 1280          │
#   └─────────────────────────────────┘              └─────────▲─────────────┘
#   host netns: tailscale-cni-supervisor ──creates TUN, moves it┘
#
# The bridge plugin here (containernetworking-plugins 1.1.1) speaks CNI up to
# 1.0.0; for a 1.1.0 list it is run at 1.0.0 and tailscale-cni gets its
# 1.0.0-schema result as prevResult (same result schema, see
# docs/cni-contract.md §3 "prevResult can be in a different schema").

# chain_setup: the node netns. Sets NODE.
chain_setup()
{
	ns_new node || return 1
	NODE=$NS_NAME
	mkdir -p "$T/ipam"
}

# chain_confs V NET SUBNET BR: writes $T/bridge-NET.json and $T/ts-NET.json
# (plugin objects of the list, with name and cniVersion injected as libcni
# does). The bridge runs at min(V, 1.0.0).
chain_confs()
{
	local v=$1 net=$2 subnet=$3 br=$4
	local bv=$v
	[[ $v == 1.1.0 ]] && bv=1.0.0
	jq -n --arg v "$bv" --arg n "$net" --arg br "$br" --arg sn "$subnet" --arg d "$T/ipam" '
	{cniVersion: $v, name: $n, type: "bridge", bridge: $br, isGateway: true, ipMasq: false,
	 ipam: {type: "host-local", subnet: $sn, dataDir: $d}}' >"$T/bridge-$net.json"
	jq -n --arg v "$v" --arg n "$net" --arg s "$SOCK" --arg st "$STATE" '
	{cniVersion: $v, name: $n, type: "tailscale-cni", socketPath: $s, stateDir: $st}' \
		>"$T/ts-$net.json"
}

# with_prev CONF RESULT: CONF with prevResult set (new temp file name printed).
with_prev()
{
	local f
	f=$(mktemp "$T/conf.XXXXXX") || return 1
	jq --argjson r "$2" '.prevResult = $r' "$1" >"$f" && echo "$f"
}

# chain_add NET CID NETNS-PATH: ADD bridge then tailscale-cni. Sets R1 (the
# bridge's result), R2 (the final result). Returns 1 if a step failed.
chain_add()
{
	local net=$1 cid=$2 nsp=$3
	CNI_BIN=/usr/lib/cni/bridge CNI_IN_NETNS=$NODE CID=$cid NETNS=$nsp \
		cni "$T/bridge-$net.json" CNI_COMMAND=ADD CNI_PATH=/usr/lib/cni
	expect_ok "[$net/$cid] bridge ADD" || return 1
	R1=$OUT
	CNI_IN_NETNS=$NODE CID=$cid NETNS=$nsp \
		cni "$(with_prev "$T/ts-$net.json" "$R1")" CNI_COMMAND=ADD CNI_PATH=/usr/lib/cni
	expect_ok "[$net/$cid] tailscale-cni ADD" || return 1
	R2=$OUT
}

# chain_check NET CID NETNS-PATH RESULT: CHECK each plugin in order, each
# given the final result (converted to the plugin's version for the bridge).
chain_check()
{
	local net=$1 cid=$2 nsp=$3 res=$4
	local bconf=$T/bridge-$net.json
	bconf=$(with_prev "$bconf" "$(jq -c --arg v "$(jq -r .cniVersion "$bconf")" '.cniVersion = $v' <<<"$res")")
	CNI_BIN=/usr/lib/cni/bridge CNI_IN_NETNS=$NODE CID=$cid NETNS=$nsp \
		cni "$bconf" CNI_COMMAND=CHECK CNI_PATH=/usr/lib/cni
	expect_ok "[$net/$cid] bridge CHECK (sees our ts0 in the result)" 1
	CNI_IN_NETNS=$NODE CID=$cid NETNS=$nsp \
		cni "$(with_prev "$T/ts-$net.json" "$res")" CNI_COMMAND=CHECK CNI_PATH=/usr/lib/cni
	expect_ok "[$net/$cid] tailscale-cni CHECK" 1
}

# chain_del NET CID NETNS-PATH RESULT: DEL in reverse order; RESULT may be
# empty (no cached result).
chain_del()
{
	local net=$1 cid=$2 nsp=$3 res=$4
	local tconf=$T/ts-$net.json bconf=$T/bridge-$net.json
	if [[ -n $res ]]; then
		tconf=$(with_prev "$tconf" "$res")
		bconf=$(with_prev "$bconf" "$(jq -c --arg v "$(jq -r .cniVersion "$bconf")" '.cniVersion = $v' <<<"$res")")
	fi
	CNI_IN_NETNS=$NODE CID=$cid NETNS=$nsp \
		cni "$tconf" CNI_COMMAND=DEL CNI_PATH=/usr/lib/cni
	expect_ok "[$net/$cid] tailscale-cni DEL" 1
	CNI_BIN=/usr/lib/cni/bridge CNI_IN_NETNS=$NODE CID=$cid NETNS=$nsp \
		cni "$bconf" CNI_COMMAND=DEL CNI_PATH=/usr/lib/cni
	expect_ok "[$net/$cid] bridge DEL" 1
}
