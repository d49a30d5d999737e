#!/bin/bash
# e2e routes: ts0 carries exactly what the tailnet reaches, never the pod's
# own cluster network, even when that network lies inside 100.64.0.0/10.
#
#   netns NODE: testcontrol, the supervisor, bridge tr<pid> 100.64.5.1/24
#        │ veth (Debian's bridge plugin + host-local, the "cluster")
#   pods 0, 1: eth0 100.64.5.x/24 + ts0;  pod 2: ts0 only
#   external nodes registered in testcontrol: a subnet router serving
#   10.77.0.0/16, 100.64.5.0/25 (over the cluster) and 10.78.1.0/24 (denied).
#
#   1. after ADD pod 0 reaches its gateway and pod 1's eth0 (100.64.5.0/24);
#      ts0 holds only the peers' /32 and /128 and quad-100's two routes;
#      pods 0 and 1 ping each other over ts0, v4 and v6;
#   2. a peer joining and leaving adds and removes exactly its routes (timed);
#   3. subnet routes: none without --accept-routes; with it 10.77.0.0/16 is
#      routed, the route over the cluster and the denied one are refused and
#      logged;
#   4. supervisor kill -9: ts0's routes stay; a peer that joined meanwhile is
#      routed once a supervisor is back;
#   5. --route-all: the two wide routes instead, the cluster still reached.
source "$(dirname "$0")/../lib/common.sh"

tscni_init "routes"
source "$(dirname "$0")/../lib/tailnet.sh"
source "$(dirname "$0")/../lib/chain.sh"
[[ -x $TC ]] || {
	echo "testcontrol missing: build first" >&2
	exit 1
}
[[ -x /usr/lib/cni/bridge ]] || {
	echo "SKIP: /usr/lib/cni/bridge missing (containernetworking-plugins)"
	exit 77
}

node_ns_new || tscni_finish
NODE=$NODE_NS
mkdir -p "$T/ipam"
tc_start || tscni_finish
tc_authkey '{"reusable": true, "ephemeral": true, "tags": ["tag:e2e"]}' || tscni_finish
sup_start_tailnet || tscni_finish

chain_confs 1.0.0 clu 100.64.5.0/24 "tr$$"
jq '.syncTimeout = "10s"' "$T/ts-clu.json" >"$T/ts-clu.tmp" && mv "$T/ts-clu.tmp" "$T/ts-clu.json"

# ts_addr NS FAMILY(inet|inet6): ts0's tailnet address in pod NS.
ts_addr()
{
	ip -n "$1" -j addr show dev ts0 | jq -r --arg f "$2" \
		'[.[0].addr_info[] | select(.family == $f) | .local][0]'
}

# ts_routes NS: ts0's routes in the main table, v4 and v6, as sorted CIDRs.
ts_routes()
{
	{
		ip -n "$1" -4 -j route show dev ts0 | jq -r '.[].dst | if test("/") then . else . + "/32" end'
		ip -n "$1" -6 -j route show dev ts0 | jq -r '.[].dst | if test("/") then . else . + "/128" end'
	} | sort
}

# routes_are NS WANT...: ts0's routes are exactly WANT.
routes_are()
{
	local ns=$1
	shift
	[[ "$(ts_routes "$ns")" == "$(printf '%s\n' "$@" | sort)" ]]
}

# wait_for MS CMD...: CMD succeeds within MS ms (polled every 20 ms); sets WAITED.
wait_for()
{
	local limit=$1 t0
	shift
	t0=$(now_ms)
	until "$@"; do
		if (($(now_ms) - t0 > limit)); then
			WAITED=$(($(now_ms) - t0))
			return 1
		fi
		sleep 0.02
	done
	WAITED=$(($(now_ms) - t0))
}

has_route() { ts_routes "$1" | grep -qxF "$2"; }
lacks_route() { ! has_route "$@"; }

# register NAME [ROUTES_JSON]: an external node; sets EXT4 and EXT6.
register()
{
	local key out
	key=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
	out=$(tc_post /nodes/register "$(jq -nc --arg k "nodekey:$key" --arg h "$1" \
		--argjson r "${2:-[]}" '{node_key: $k, hostname: $h, endpoints: ["10.201.0.9:41641"], routes: $r}')")
	EXT4=$(jq -r '[.addresses[] | select(startswith("100."))][0] | sub("/.*"; "")' <<<"$out")
	EXT6=$(jq -r '[.addresses[] | select(startswith("fd7a:"))][0] | sub("/.*"; "")' <<<"$out")
	[[ $EXT4 == 100.* && $EXT6 == fd7a:* ]] || {
		fail "testcontrol registers $1 ($out)"
		return 1
	}
}

declare -a PNS PTS4 PTS6 PETH
for i in 0 1; do
	ns_new "p$i" || tscni_finish
	PNS[$i]=$NS_NAME
	chain_add clu "pod-$$-$i" "$(ns_path "$NS_NAME")" || tscni_finish
	PTS4[$i]=$(ts_addr "$NS_NAME" inet)
	PTS6[$i]=$(ts_addr "$NS_NAME" inet6)
	PETH[$i]=$(ip -n "$NS_NAME" -j addr show dev eth0 | jq -r '[.[0].addr_info[] | select(.family == "inet") | .local][0]')
	check "pod $i: eth0 ${PETH[$i]} in the cluster's 100.64.5.0/24, ts0 ${PTS4[$i]} ${PTS6[$i]}" \
		test "${PETH[$i]%.*}" == 100.64.5 -a "${PTS4[$i]}" != null -a "${PTS6[$i]}" != null
done
A=${PNS[0]}
Q4=100.100.100.100/32
Q6=fd7a:115c:a1e0::53/128

# --- 1. the cluster network stays, ts0 has exactly the peers ----------------
check "pod 0 pings its gateway 100.64.5.1 (cluster range inside 100.64.0.0/10)" \
	in_ns "$A" busybox ping -c 1 -W 2 100.64.5.1
check "pod 0 pings pod 1's eth0 ${PETH[1]}" in_ns "$A" busybox ping -c 1 -W 2 "${PETH[1]}"
check "no wide route on ts0" lacks_route "$A" 100.64.0.0/10
wait_for 3000 routes_are "$A" "${PTS4[1]}/32" "${PTS6[1]}/128" "$Q4" "$Q6"
check "pod 0's ts0: exactly pod 1's /32 and /128 and quad-100's two ($(ts_routes "$A" | tr '\n' ' '))" \
	routes_are "$A" "${PTS4[1]}/32" "${PTS6[1]}/128" "$Q4" "$Q6"
check "the route to 100.64.5.0/24 is still eth0's" \
	grep -q "dev eth0" <<<"$(ip -n "$A" route get 100.64.5.1)"
check "pod 0 pings pod 1 over ts0 (${PTS4[1]})" ns_ping_until "$A" "${PTS4[1]}"
check "pod 0 pings pod 1 over ts0 (${PTS6[1]})" ns_ping_until "$A" "${PTS6[1]}"

# --- 2. a peer joins and leaves ---------------------------------------------
pod_add 2 || tscni_finish
wait_for 3000 routes_are "$A" "${PTS4[1]}/32" "${PTS6[1]}/128" "${POD4[2]}/32" "${POD6[2]}/128" "$Q4" "$Q6"
rc=$?
echo "# peer joined: its routes on pod 0's ts0 ${WAITED} ms after its ADD returned"
check "a joining peer's /32 and /128 appear within 1 s (${WAITED} ms), nothing else changes" \
	test $rc -eq 0 -a "$WAITED" -le $((1000 * TIME_SCALE))
pod_del 2
wait_for 3000 routes_are "$A" "${PTS4[1]}/32" "${PTS6[1]}/128" "$Q4" "$Q6"
rc=$?
echo "# peer left: its routes gone from pod 0's ts0 ${WAITED} ms after its DEL returned"
check "a leaving peer's routes go within 1 s (${WAITED} ms)" \
	test $rc -eq 0 -a "$WAITED" -le $((1000 * TIME_SCALE))

# --- 3. subnet routes ---------------------------------------------------------
register router '["10.77.0.0/16", "100.64.5.0/25", "10.78.1.0/24"]' || tscni_finish
R4=$EXT4 R6=$EXT6
wait_for 3000 has_route "$A" "$R4/32"
check "the subnet router's own /32 is routed ($R4)" has_route "$A" "$R4/32"
check "without --accept-routes no subnet route is on ts0" \
	routes_are "$A" "${PTS4[1]}/32" "${PTS6[1]}/128" "$R4/32" "$R6/128" "$Q4" "$Q6"
check "the worker says 3 subnet routes were not accepted" \
	grep -q "ts0: 6 routes; refused by the supervisor's policy: 0; subnet routes not accepted: 3" "$T/sup.log"

mark=$(wc -l <"$T/sup.log")
sup_kill9
sup_start_tailnet --accept-routes --route-deny 10.78.0.0/16 || tscni_finish
wait_for 5000 has_route "$A" 10.77.0.0/16
check "with --accept-routes 10.77.0.0/16 is routed into ts0 (${WAITED} ms after the restart)" \
	has_route "$A" 10.77.0.0/16
log=$(tail -n +"$((mark + 1))" "$T/sup.log")
check "the route over the cluster (100.64.5.0/25) is not on ts0" lacks_route "$A" 100.64.5.0/25
check "... and its refusal is logged with the network in the way" \
	grep -q "route 100.64.5.0/25 refused: overlaps one of the pod's own networks (100.64.5.0/24)" <<<"$log"
check "the denied route (10.78.1.0/24) is not on ts0" lacks_route "$A" 10.78.1.0/24
check "... and its refusal is logged" \
	grep -q "route 10.78.1.0/24 refused: overlaps the operator's deny list (--route-deny) (10.78.0.0/16)" <<<"$log"
check "pod 0 still pings its gateway" in_ns "$A" busybox ping -c 1 -W 2 100.64.5.1
check "10.77.1.1 goes to ts0, 100.64.5.1 to eth0" \
	bash -c "ip -n $A route get 10.77.1.1 | grep -q 'dev ts0' && ip -n $A route get 100.64.5.1 | grep -q 'dev eth0'"

# --- 4. the supervisor away -------------------------------------------------
before=$(ts_routes "$A")
sup_kill9
register latecomer || tscni_finish
sleep 1.5
check "with no supervisor ts0's routes stay as they were" test "$(ts_routes "$A")" == "$before"
check "... and pod 0 still pings pod 1 over ts0" in_ns "$A" busybox ping -c 1 -W 2 "${PTS4[1]}"
sup_start_tailnet --accept-routes --route-deny 10.78.0.0/16 || tscni_finish
wait_for 5000 has_route "$A" "$EXT4/32"
rc=$?
echo "# the peer that joined while the supervisor was away: routed ${WAITED} ms after its restart"
check "the latecomer's /32 is routed once a supervisor is back (${WAITED} ms)" test $rc -eq 0
check "... and its /128" has_route "$A" "$EXT6/128"

# --- 5. --route-all -----------------------------------------------------------
sup_kill9
sup_start_tailnet --route-all || tscni_finish
wait_for 5000 routes_are "$A" 100.64.0.0/10 fd7a:115c:a1e0::/48
check "with --route-all ts0 has exactly 100.64.0.0/10 and fd7a:115c:a1e0::/48 ($(ts_routes "$A" | tr '\n' ' '))" \
	routes_are "$A" 100.64.0.0/10 fd7a:115c:a1e0::/48
check "pod 0 still pings its gateway (the longer prefix wins)" \
	in_ns "$A" busybox ping -c 1 -W 2 100.64.5.1
check "pod 0 still pings pod 1's eth0" in_ns "$A" busybox ping -c 1 -W 2 "${PETH[1]}"
check "pod 0 pings pod 1 over ts0" ns_ping_until "$A" "${PTS4[1]}"

for i in 0 1; do
	chain_del clu "pod-$$-$i" "$(ns_path "${PNS[$i]}")" ""
done
tscni_finish
