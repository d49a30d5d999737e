#!/bin/bash
# interop traffic: a pod and a genuine Tailscale v1.68.2 node exchange
# packets over a direct path disco found, then through DERP when direct
# UDP is dropped (docs/tailscale-protocol.md §6, §7).
#
#   netns ${GP}hub: br0 ─┬─ ${GP}ctl  10.99.0.1    peerctl (testcontrol, DERP, STUN)
#                        ├─ ${GP}n1   10.99.0.11   genuine tailscaled "n1"
#                        └─ NODE      10.99.0.100  our supervisor, its workers' UDP sockets
#   pod netns p0: ts0 (the worker's TUN)
#
# Checked:
#   - ICMP echo over IPv4 and IPv6, genuine node -> pod and pod -> genuine
#     node (its tailscale0);
#   - `tailscale ping` (a disco ping to the pod's endpoints) gets a pong from
#     the pod over a direct path, and `tailscale status` shows the pod direct;
#   - TCP, 50 MB each way over that path, same size and SHA-256 (Mbit/s printed);
#   - with UDP between the two nodes dropped (nftables in the genuine node's
#     netns): the pod's home DERP region carries the traffic (`relay` in
#     `tailscale status`), ICMP both ways, disco pongs via DERP;
#   - the worker's STUN request to the home region's STUN port is answered;
#   - our CallMeMaybe reaches the genuine node through DERP;
#   - TCP, 50 MB each way through DERP, same size and SHA-256;
#   - UDP unblocked: direct again within 10 s (the time is printed);
#   - our supervisor killed with SIGKILL and restarted during a 10/s ping
#     from the genuine node: every echo answered, the same worker adopted;
#   - the worker killed with SIGKILL: respawned, the same node at control,
#     ICMP both ways and a direct disco path again.
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/genuine.sh"

genuine_or_skip
tscni_init "traffic"
source "$(dirname "$0")/../lib/tailnet.sh"

genuine_one_pod || tscni_finish
P=${POD_NS[0]}
N1=${GP}n1
echo "# pod 0: ${POD4[0]} ${POD6[0]}; our node netns $NODE_NS at $NODE_ADDR"

# The genuine node's tailnet addresses, once control told it its own.
genuine_n1_addrs
echo "# n1: $n1_4 $n1_6"
check "the genuine node has its tailnet addresses" test -n "$n1_4" -a -n "$n1_6"

# Both sides must know each other before the first packet: our data plane
# has its peer, the genuine node lists the pod.
genuine_know_each_other

check "ICMP v4: genuine node -> pod (${POD4[0]})" ns_ping_until "$N1" "${POD4[0]}"
check "ICMP v6: genuine node -> pod (${POD6[0]})" ns_ping_until "$N1" "${POD6[0]}"
check "ICMP v4: pod -> genuine node ($n1_4)" ns_ping_until "$P" "$n1_4"
check "ICMP v6: pod -> genuine node ($n1_6)" ns_ping_until "$P" "$n1_6"

out=$(genuine_ts 1 ping -c 5 --timeout 3s "${POD4[0]}" 2>&1)
echo "# tailscale ping: $(tr '\n' ' ' <<<"$out")"
check "tailscale ping (disco) gets a pong from the pod over a direct path" \
	grep -qE "^pong from .* via ${NODE_ADDR//./\\.}:[0-9]+ in" <<<"$out"
st=$(genuine_ts 1 status 2>/dev/null | grep -F "${POD4[0]}")
echo "# tailscale status: $st"
check "tailscale status shows the pod direct at our node's address" \
	grep -qE "direct ${NODE_ADDR//./\\.}:[0-9]+" <<<"$st"

# TCP, 50 MB each way over the direct path, whole and in order.
SIZE=$((50 * 1000 * 1000))
head -c "$SIZE" /dev/urandom >"$T/big.in"
transfer "$P" "$N1" "$n1_4" 5001 "TCP 50 MB pod -> genuine node"
transfer "$N1" "$P" "${POD4[0]}" 5002 "TCP 50 MB genuine node -> pod"

# The engine asks the home region's STUN port (peerctl's, 10.99.0.1:3478)
# where its socket is seen: from our node's bridge address (no NAT here).
check "STUN: the worker learns its reflexive address from the DERP region's STUN port" \
	grep -qE "STUN: our UDP socket is seen at ${NODE_ADDR//./\\.}:[0-9]+" "$T/sup.log"

# --- DERP: direct UDP between the two dropped ------------------------------
# nftables in the genuine node's netns (the test's own) drops every UDP
# datagram between it and our node; DERP (TCP to the control netns) stays.
ip netns exec "$N1" nft -f - <<NFT
table inet tscni_block {
	chain in { type filter hook input priority 0; ip saddr $NODE_ADDR meta l4proto udp drop; }
	chain out { type filter hook output priority 0; ip daddr $NODE_ADDR meta l4proto udp drop; }
}
NFT
check "direct UDP between the genuine node and ours is dropped (nftables in n1)" \
	ip netns exec "$N1" nft list table inet tscni_block

# relay_until: the genuine node's status shows the pod through DERP within
# 40 s (its direct path loses trust 6.5 s after the last Pong), while ICMP
# keeps the path in use.
relay_until()
{
	local k
	for ((k = 0; k < 40; k++)); do
		ip netns exec "$N1" busybox ping -c 1 -W 1 "${POD4[0]}" >/dev/null 2>&1
		genuine_ts 1 status 2>/dev/null | grep -F "${POD4[0]}" | grep -q 'relay "' && return 0
	done
	return 1
}
check "the genuine node reaches the pod through DERP (relay in tailscale status)" relay_until
st=$(genuine_ts 1 status 2>/dev/null | grep -F "${POD4[0]}")
echo "# tailscale status: $st"
check "ICMP v4 through DERP: genuine node -> pod" ns_ping_until "$N1" "${POD4[0]}"
check "ICMP v6 through DERP: pod -> genuine node" ns_ping_until "$P" "$n1_6"
out=$(genuine_ts 1 ping -c 3 --timeout 3s "${POD4[0]}" 2>&1)
echo "# tailscale ping: $(tr '\n' ' ' <<<"$out")"
check "tailscale ping gets a pong from the pod via DERP" grep -q "via DERP" <<<"$out"
# Our engine, sending through DERP without a trusted direct path, asks the
# genuine node to ping its endpoints (tailscaled's client metric counts it).
cmm=$(genuine_ts 1 debug metrics 2>/dev/null | awk '$1 == "magicsock_disco_recv_callmemaybe" {print $2}')
echo "# CallMeMaybe received by the genuine node: ${cmm:-none}"
check "the genuine node got our CallMeMaybe through DERP" test "${cmm:-0}" -gt 0

# TCP through DERP: the same 50 MB each way, relayed by the home region.
transfer "$P" "$N1" "$n1_4" 5003 "TCP 50 MB through DERP pod -> genuine node"
transfer "$N1" "$P" "${POD4[0]}" 5004 "TCP 50 MB through DERP genuine node -> pod"
st=$(genuine_ts 1 status 2>/dev/null | grep -F "${POD4[0]}")
check "after the transfers the genuine node still relays to the pod" grep -q 'relay "' <<<"$st"

# --- direct again: the block lifted ----------------------------------------
# With traffic flowing (a ping every 200 ms), disco's next round of pings
# (every 5 s while a peer is in use over DERP) finds the direct path again.
direct_until()
{
	local k
	for ((k = 0; k < 50; k++)); do
		ip netns exec "$N1" busybox ping -c 1 -W 1 "${POD4[0]}" >/dev/null 2>&1
		genuine_ts 1 status 2>/dev/null | grep -F "${POD4[0]}" |
			grep -qE "direct ${NODE_ADDR//./\\.}:[0-9]+" && return 0
		sleep 0.2
	done
	return 1
}
ip netns exec "$N1" nft delete table inet tscni_block
t0=$(now_ms)
direct_until
rc=$?
t1=$(now_ms)
echo "# direct again $((t1 - t0)) ms after UDP was unblocked"
check "unblocked: the genuine node reaches the pod directly again" test $rc -eq 0
check "unblocked: direct again within 10 s ($((t1 - t0)) ms)" test $((t1 - t0)) -le 10000

# --- supervisor kill -9 during a 10/s ping from the genuine node ------------
# Workers own the pod's traffic; the supervisor's death and its restart
# (which re-adopts them) must not lose one echo.
wpid=$(pod_stat "${POD_UID[0]}" worker_pid)
ip netns exec "$N1" busybox ping -i 0.1 -c 100 -W 2 "${POD4[0]}" >"$T/ping10.out" 2>&1 &
ping_pid=$!
CLEAN_PIDS+=("$ping_pid")
sleep 2
sup_kill9
sleep 1
sup_start_genuine
wait "$ping_pid"
rx=$(grep -oE '[0-9]+ packets received' "$T/ping10.out" | cut -d' ' -f1)
echo "# 10/s ping across supervisor kill -9 + restart: $(tail -n 2 "$T/ping10.out" | tr '\n' ' ')"
check "supervisor kill -9 and restart during a 10/s ping: 100 of 100 answered" test "${rx:-0}" -eq 100
check "the restarted supervisor adopted the same worker (pid $wpid)" \
	test "$(pod_stat "${POD_UID[0]}" worker_pid)" == "$wpid"

# --- worker kill -9: the supervisor respawns it ---------------------------------
# The new process resumes the same node (its keys are kept by the
# supervisor; control is not asked to register it again) with a fresh disco
# key, and the genuine node finds the pod again.
kill -KILL "$wpid"
t0=$(now_ms)
for ((k = 0; k < 100; k++)); do
	npid=$(pod_stat "${POD_UID[0]}" worker_pid)
	[[ -n $npid && $npid != "$wpid" && $npid != 0 ]] && break
	sleep 0.1
done
check "the supervisor respawned the killed worker (pid $wpid -> $npid)" \
	test -n "$npid" -a "$npid" != "$wpid" -a "$npid" != 0
check "ICMP v4 after the respawn: genuine node -> pod" ns_ping_until "$N1" "${POD4[0]}"
echo "# genuine node -> pod answered again $(($(now_ms) - t0)) ms after the worker's SIGKILL"
check "ICMP v6 after the respawn: pod -> genuine node" ns_ping_until "$P" "$n1_6"
n=$(genuine_nodes | jq --arg a "${POD4[0]}/32" '[.[] | select(.addresses | index($a))] | length')
check "control still lists the pod as one node ($n)" test "$n" -eq 1
out=$(genuine_ts 1 ping -c 5 --timeout 3s "${POD4[0]}" 2>&1)
echo "# tailscale ping: $(tr '\n' ' ' <<<"$out")"
check "tailscale ping reaches the respawned worker over a direct path" \
	grep -qE "^pong from .* via ${NODE_ADDR//./\\.}:[0-9]+ in" <<<"$out"

pod_del 0
tscni_finish
