#!/bin/bash
# e2e DERP: two pods whose direct UDP is dropped talk through testcontrol's
# DERP regions (docs/tailscale-protocol.md §6).
#
#   node netns: testcontrol (control, admin, DERP regions 900 and 901 on
#   127.0.0.1), our supervisor and both pods' workers; nftables there drops
#   every UDP datagram, so disco finds no direct path and WireGuard and
#   disco go through DERP (TLS over TCP).
#
# Checked: ADD returns once the pod's worker is connected to its home
# region (which was down when ADD began), and with every region down after
# a bounded wait (5 s); each worker connects to a home region and reports it to control
# (Hostinfo.NetInfo.PreferredDERP: the node's home_derp); ICMP v4 and v6
# both ways between the pods; status --json lists each pod's peer on path
# derp-900; with the home region taken down (POST /derp),
# the workers move to the other region and the pods still reach each other.
source "$(dirname "$0")/../lib/common.sh"

tscni_init "derp"
source "$(dirname "$0")/../lib/tailnet.sh"
[[ -x $TC ]] || {
	echo "testcontrol missing: build first" >&2
	exit 1
}

node_ns_new || tscni_finish
tc_start --derp 127.0.0.1:0 --derp 127.0.0.1:0 || tscni_finish
tc_authkey '{"reusable": true, "ephemeral": true, "tags": ["tag:e2e"]}' || tscni_finish
ip netns exec "$NODE_NS" nft -f - <<'NFT'
table inet tscni_block {
	chain in { type filter hook input priority 0; meta l4proto udp drop; }
}
NFT
check "every UDP datagram into the node netns is dropped (nftables)" \
	ip netns exec "$NODE_NS" nft list table inet tscni_block
sup_start_tailnet || tscni_finish

# home_clients REGION: how many clients have REGION as their home.
home_clients()
{
	tc_get /derp | jq --argjson r "$1" \
		'[.[] | select(.region == $r)][0].clients | map(select(.preferred)) | length'
}

# Ready (and so ADD's answer) waits for the home region: the moment ADD
# returns, the pod is connected to it, reachable through DERP. Pod 0's home
# region is down when its ADD begins and comes back 2 s later.
tc_post /derp '{"region": 900, "up": false}' >/dev/null
(sleep 2 && tc_post /derp '{"region": 900, "up": true}' >/dev/null) &
up_pid=$!
CLEAN_PIDS+=("$up_pid")
t0=$(now_ms)
pod_add 0 || tscni_finish
t1=$(now_ms)
n=$(home_clients 900)
echo "# pod 0's ADD, its home region down for its first 2 s: $((t1 - t0)) ms"
check "ADD waited for the home region to come back ($((t1 - t0)) ms >= 2000)" \
	test $((t1 - t0)) -ge 2000
check "when pod 0's ADD returns it is connected to its home region ($n home clients)" \
	test "$n" -eq 1
wait "$up_pid"
pod_add 1 || tscni_finish
n=$(home_clients 900)
check "when pod 1's ADD returns it is connected to its home region ($n home clients)" \
	test "$n" -eq 2
A=${POD_NS[0]}
B=${POD_NS[1]}

# home_of ADDR4: the home DERP region control holds for the pod at ADDR4.
home_of()
{
	tc_get /nodes | jq -r --arg a "$1" \
		'[.[] | select(.addresses | index($a + "/32"))][0].home_derp // 0'
}
for ((k = 0; k < 100; k++)); do
	h0=$(home_of "${POD4[0]}")
	h1=$(home_of "${POD4[1]}")
	[[ $h0 != 0 && $h1 != 0 ]] && break
	sleep 0.1
done
echo "# home regions: $h0 $h1; DERP: $(tc_get /derp | jq -c .)"
check "both pods report home region 900 to control (PreferredDERP)" \
	test "$h0" == 900 -a "$h1" == 900
check "region 900 has both pods connected, as their home" \
	jqq '[.[] | select(.region == 900)][0].clients | map(select(.preferred)) | length == 2' \
	<<<"$(tc_get /derp)"

check "ICMP v4 through DERP: pod A -> pod B" ns_ping_until "$A" "${POD4[1]}"
check "ICMP v6 through DERP: pod A -> pod B" ns_ping_until "$A" "${POD6[1]}"
check "ICMP v4 through DERP: pod B -> pod A" ns_ping_until "$B" "${POD4[0]}"
check "ICMP v6 through DERP: pod B -> pod A" ns_ping_until "$B" "${POD6[0]}"

# Per peer in status --json: with every datagram dropped the other pod's
# WireGuard goes through the home region, after a handshake there.
for i in 0 1; do
	peer_wait "${POD_UID[i]}" "${POD4[1 - i]}" \
		'.path == "derp-900" and .last_handshake_unix > 0 and .rx_bytes > 0 and .tx_bytes > 0'
	rc=$?
	check "status --json: pod $i lists pod $((1 - i)) through derp-900 ($PEER)" test $rc -eq 0
done

# --- the home region goes down -------------------------------------------------
tc_post /derp '{"region": 900, "up": false}' >/dev/null
for ((k = 0; k < 300; k++)); do
	h0=$(home_of "${POD4[0]}")
	h1=$(home_of "${POD4[1]}")
	[[ $h0 == 901 && $h1 == 901 ]] && break
	sleep 0.1
done
check "with region 900 down, both pods move home to region 901 ($h0 $h1)" \
	test "$h0" == 901 -a "$h1" == 901
check "ICMP v4 through region 901: pod A -> pod B" ns_ping_until "$A" "${POD4[1]}"
check "ICMP v4 through region 901: pod B -> pod A" ns_ping_until "$B" "${POD4[0]}"

# --- no region at all -----------------------------------------------------------
# Ready's wait for DERP is bounded: a pod whose relays are all down still
# gets its network (direct paths need no relay), about 5 s later.
tc_post /derp '{"region": 901, "up": false}' >/dev/null
t0=$(now_ms)
pod_add 2 || tscni_finish
t1=$(now_ms)
echo "# pod 2's ADD with every DERP region down: $((t1 - t0)) ms"
check "with every region down ADD still returns, after the bounded wait ($((t1 - t0)) ms)" \
	test $((t1 - t0)) -ge 4500 -a $((t1 - t0)) -le 9000
check "the worker says it went Ready without its home region" \
	grep -q "home DERP region is not connected after 5000 ms; Ready without it" "$T/sup.log"

pod_del 0
pod_del 1
pod_del 2
tscni_finish
