#!/bin/bash
# interop NAT: a pod on a node behind a NAT reaches a genuine Tailscale
# v1.68.2 node directly, the way tailscaled nodes traverse NATs: STUN tells
# the worker the address its UDP socket is seen at, CallMeMaybe through DERP
# makes both sides ping at once, and the NAT's mapping lets the answers in
# (docs/tailscale-protocol.md §7, §8).
#
#   netns ${GP}hub: br0 ─┬─ ${GP}ctl  10.99.0.1    peerctl (testcontrol, DERP, STUN)
#                        ├─ ${GP}n1   10.99.0.11   genuine tailscaled "n1"
#                        └─ ROUTER    10.99.0.1xx  nftables masquerade of 192.168.77.0/24
#                             └─ lan0 192.168.77.1 ── NODE eth0 192.168.77.2: our
#                                                     supervisor and its workers
#   pod netns p0: ts0 (the worker's TUN)
#
# Checked: the worker's STUN answer names the router's address (so the pod
# is behind a NAT and knows it); ICMP v4 and v6 both ways; `tailscale ping`
# gets pongs over a direct path through the router's address, and
# `tailscale status` shows the pod direct there; TCP 10 MB each way whole.
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/genuine.sh"

genuine_or_skip
tscni_init "nat"
source "$(dirname "$0")/../lib/tailnet.sh"

genuine_up 1 && genuine_control && genuine_node 1 && genuine_authkey || tscni_finish
N1=${GP}n1

# The router: on the genuine bridge (tailnet.sh join makes its netns), with
# a LAN towards our node netns and a masquerade of the LAN's addresses.
ROUTER_NS="tscni-nat-$$-rtr"
CLEAN_NETNS+=("$ROUTER_NS")
ROUTER_ADDR=$(gtn join "$ROUTER_NS" 2>>"$GRUN/tailnet.out")
check "the router joins the genuine bridge ($ROUTER_ADDR)" \
	grep -qE '^10\.99\.0\.[0-9]+$' <<<"$ROUTER_ADDR" || tscni_finish
ns_new node || tscni_finish
NODE_NS=$NS_NAME
SUP_NETNS=$NODE_NS
NODE_ADDR=192.168.77.2
ip -n "$ROUTER_NS" link add lan0 type veth peer name eth0 netns "$NODE_NS"
ip -n "$ROUTER_NS" addr add 192.168.77.1/24 dev lan0
ip -n "$ROUTER_NS" link set lan0 up
ip -n "$NODE_NS" addr add "$NODE_ADDR/24" dev eth0
ip -n "$NODE_NS" link set eth0 up
ip -n "$NODE_NS" route add default via 192.168.77.1
ip netns exec "$ROUTER_NS" sysctl -qw net.ipv4.ip_forward=1
ip netns exec "$ROUTER_NS" nft -f - <<'NFT'
table ip tscni_nat {
	chain post { type nat hook postrouting priority srcnat; oifname "eth0" ip saddr 192.168.77.0/24 masquerade; }
}
NFT
check "the router masquerades the node's LAN" ip netns exec "$ROUTER_NS" nft list table ip tscni_nat
check "our node reaches the genuine control through the NAT" \
	ip netns exec "$NODE_NS" busybox ping -c 1 -W 2 10.99.0.1

sup_start_genuine || tscni_finish
pod_add 0 || tscni_finish
P=${POD_NS[0]}
echo "# pod 0: ${POD4[0]} ${POD6[0]}; our node $NODE_ADDR behind $ROUTER_ADDR"

genuine_n1_addrs
genuine_know_each_other

# The engine STUNs its home region on its next tick after DERP is up.
stun_seen()
{
	local k
	for ((k = 0; k < 100; k++)); do
		grep -qE "STUN: our UDP socket is seen at ${ROUTER_ADDR//./\\.}:[0-9]+" "$T/sup.log" &&
			return 0
		sleep 0.1
	done
	return 1
}
check "STUN: the worker learns it is seen at the router's address" stun_seen
check "ICMP v4: pod -> genuine node ($n1_4)" ns_ping_until "$P" "$n1_4"
check "ICMP v6: pod -> genuine node ($n1_6)" ns_ping_until "$P" "$n1_6"
check "ICMP v4: genuine node -> pod (${POD4[0]})" ns_ping_until "$N1" "${POD4[0]}"
check "ICMP v6: genuine node -> pod (${POD6[0]})" ns_ping_until "$N1" "${POD6[0]}"

# direct_until: `tailscale ping` answered over the router's address (the
# first rounds may still go through DERP while both sides punch).
direct_until()
{
	local k
	for ((k = 0; k < 10; k++)); do
		out=$(genuine_ts 1 ping -c 5 --timeout 3s "${POD4[0]}" 2>&1)
		grep -qE "^pong from .* via ${ROUTER_ADDR//./\\.}:[0-9]+ in" <<<"$out" && return 0
		sleep 1
	done
	return 1
}
t0=$(now_ms)
direct_until
rc=$?
echo "# tailscale ping: $(tr '\n' ' ' <<<"$out")"
echo "# direct through the NAT $(($(now_ms) - t0)) ms after tailscale ping began"
check "tailscale ping gets a pong over a direct path through the NAT" test $rc -eq 0
st=$(genuine_ts 1 status 2>/dev/null | grep -F "${POD4[0]}")
echo "# tailscale status: $st"
check "tailscale status shows the pod direct at the router's address" \
	grep -qE "direct ${ROUTER_ADDR//./\\.}:[0-9]+" <<<"$st"

SIZE=$((10 * 1000 * 1000))
head -c "$SIZE" /dev/urandom >"$T/big.in"
transfer "$P" "$N1" "$n1_4" 5001 "TCP 10 MB pod behind NAT -> genuine node"
transfer "$N1" "$P" "${POD4[0]}" 5002 "TCP 10 MB genuine node -> pod behind NAT"

pod_del 0
tscni_finish
