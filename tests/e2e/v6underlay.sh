#!/bin/bash
# e2e IPv6 underlay: two nodes that reach each other only over IPv6 (their
# IPv4 between each other is dropped by the router), so pods on different
# nodes must find and use an IPv6 direct path: disco pings and WireGuard over
# the workers' dual-stack UDP sockets to [2001:db8:...]:port endpoints; then,
# with UDP between the nodes dropped too, DERP over IPv6.
#
#   netns PUB 192.0.2.2 2001:db8:c::2: testcontrol (control over IPv4; DERP
#             region 900 and its STUN on IPv6 only)
#   netns RT  br0 192.0.2.1/24 2001:db8:c::1/64 (PUB), pa 198.51.100.1/24 2001:db8:a::1/64,
#             pb 203.0.113.1/24 2001:db8:b::1/64; forwards both families;
#             nftables drops every IPv4 packet between the two node subnets
#   netns NA  198.51.100.2/24 2001:db8:a::2/64 (supervisor a, pod 0)
#   netns NB  203.0.113.2/24  2001:db8:b::2/64 (supervisor b, pod 1)
#
# Checked: each pod announces an IPv6 endpoint; pods 0 and 1 ping each other
# over ts0 (v4 and v6 tailnet addresses) and move 20 MB with the same SHA-256;
# status shows the peer on a direct path to an IPv6 endpoint, DERP relays
# (almost) nothing of the stream. Part 2: UDP between the nodes dropped as
# well: the pods' home region (IPv6 only) relays their pings and a 5 MB
# stream, status shows the DERP path.
source "$(dirname "$0")/../lib/common.sh"

tscni_init "v6underlay"
source "$(dirname "$0")/../lib/tailnet.sh"
[[ -x $TC ]] || {
	echo "testcontrol missing: build first" >&2
	exit 1
}

ns_new rt || tscni_finish
RT=$NS_NAME
ns_new pub || tscni_finish
PUB=$NS_NAME
ns_new na || tscni_finish
NA=$NS_NAME
ns_new nb || tscni_finish
NB=$NS_NAME

# wire NS RT_IF ADDR4 GW4 [ADDR6 GW6]: a veth pair, wan0 in NS, RT_IF in RT.
wire()
{
	ip -n "$RT" link add "$2" type veth peer name wan0 netns "$1" || return 1
	ip netns exec "$1" sysctl -qw net.ipv6.conf.wan0.accept_dad=0
	ip -n "$1" addr add "$3" dev wan0
	ip -n "$1" link set wan0 up
	ip -n "$1" route add default via "$4"
	if [[ -n ${5:-} ]]; then
		ip -n "$1" addr add "$5" dev wan0 nodad
		ip -n "$1" -6 route add default via "$6"
	fi
	ip -n "$RT" link set "$2" up
}
ip netns exec "$RT" sysctl -qw net.ipv4.ip_forward=1
ip netns exec "$RT" sysctl -qw net.ipv6.conf.all.forwarding=1
ip -n "$RT" link add br0 type bridge || tscni_finish
ip -n "$RT" addr add 192.0.2.1/24 dev br0
ip -n "$RT" link set br0 up
wire "$PUB" pp 192.0.2.2/24 192.0.2.1 2001:db8:c::2/64 2001:db8:c::1 || tscni_finish
ip -n "$RT" link set pp master br0
ip -n "$RT" addr add 2001:db8:c::1/64 dev br0 nodad
wire "$NA" pa 198.51.100.2/24 198.51.100.1 2001:db8:a::2/64 2001:db8:a::1 || tscni_finish
wire "$NB" pb 203.0.113.2/24 203.0.113.1 2001:db8:b::2/64 2001:db8:b::1 || tscni_finish
ip -n "$RT" addr add 198.51.100.1/24 dev pa
ip -n "$RT" addr add 2001:db8:a::1/64 dev pa nodad
ip -n "$RT" addr add 203.0.113.1/24 dev pb
ip -n "$RT" addr add 2001:db8:b::1/64 dev pb nodad
ip netns exec "$RT" nft -f - <<'NFT' || fail "RT's nftables rules load"
table inet tscni_v6u {
	counter v4_between {}
	counter v6_between {}
	chain forward {
		type filter hook forward priority filter;
		ip saddr { 198.51.100.0/24, 203.0.113.0/24 } ip daddr { 198.51.100.0/24, 203.0.113.0/24 } counter name "v4_between" drop
		ip6 saddr { 2001:db8:a::/64, 2001:db8:b::/64 } ip6 daddr { 2001:db8:a::/64, 2001:db8:b::/64 } counter name "v6_between"
	}
}
NFT
check "node A reaches node B over IPv6" ns_ping_until "$NA" 2001:db8:b::2
check "node A does not reach node B over IPv4" \
	bash -c "! ip netns exec '$NA' busybox ping -c 1 -W 1 203.0.113.2 >/dev/null"

# ctr NAME: bytes of RT's named counter (-1 when unreadable).
ctr()
{
	local v
	v=$(ip netns exec "$RT" nft list counter inet tscni_v6u "$1" |
		sed -n 's/.*packets [0-9]* bytes \([0-9]*\).*/\1/p')
	echo "${v:--1}"
}

TC_NS=$PUB TC_BIND=192.0.2.2 TC_ADMIN=127.0.0.1:0
tc_start --derp '[2001:db8:c::2]:0' || tscni_finish
tc_authkey '{"reusable": true, "ephemeral": true, "tags": ["tag:e2e"]}' || tscni_finish
for n in a b; do
	node_use "$n" || tscni_finish
	if [[ $n == a ]]; then SUP_NETNS=$NA; else SUP_NETNS=$NB; fi
	sup_start --control-url "http://$TC_HTTP" --auth-key-file "$T/authkey" \
		--cluster-name e2e --node-name "e2e-$$-$n" || tscni_finish
done
node_use a
pod_add 0 || tscni_finish
node_use b
pod_add 1 || tscni_finish

endpoints_of()
{
	tc_get /nodes | jq -c --arg a "$1/32" '[.[] | select(.addresses | index($a))][0].endpoints // []'
}
for i in 0 1; do
	want=2001:db8:a::2
	((i == 1)) && want=2001:db8:b::2
	for ((k = 0; k < 50; k++)); do
		ep=$(endpoints_of "${POD4[$i]}")
		[[ $ep == *"[$want]:"* ]] && break
		sleep 0.2
	done
	check "pod $i announces its node's IPv6 endpoint ($ep)" grep -qF "[$want]:" <<<"$ep"
done

c4=$(ctr v4_between)
check "pod 0 pings pod 1 (${POD4[1]})" ns_ping_until "${POD_NS[0]}" "${POD4[1]}"
check "pod 0 pings pod 1 (${POD6[1]})" ns_ping_until "${POD_NS[0]}" "${POD6[1]}"
check "pod 1 pings pod 0 (${POD4[0]})" ns_ping_until "${POD_NS[1]}" "${POD4[0]}"
r0=$(tc_get /derp | jq '[.[].relayed] | add')
v0=$(ctr v6_between)
SIZE=$((20 * 1000 * 1000))
head -c "$SIZE" /dev/urandom >"$T/big.in"
transfer "${POD_NS[0]}" "${POD_NS[1]}" "${POD4[1]}" 5200 "pod 0 -> pod 1 (20 MB)"
r1=$(tc_get /derp | jq '[.[].relayed] | add')
v1=$(ctr v6_between)
echo "# 20 MB: $((v1 - v0)) bytes of IPv6 between the nodes, DERP relayed $((r1 - r0)) packets"
check "the stream crossed between the nodes as IPv6 ($((v1 - v0)) bytes)" test $((v1 - v0)) -ge "$SIZE"
check "DERP relayed almost none of it ($((r1 - r0)) packets)" test $((r1 - r0)) -lt $((SIZE / 1280 / 20))
echo "# IPv4 between the nodes meanwhile: $(($(ctr v4_between) - c4)) bytes, all dropped"
node_use a
peer_wait "${POD_UID[0]}" "${POD4[1]}" '.path | startswith("direct [2001:db8:b::2]:")'
rc=$?
check "pod 0's status: pod 1 on a direct IPv6 path ($(jq -r .path <<<"$PEER"))" test $rc -eq 0

# --- 2. no UDP between the nodes: DERP over IPv6 ----------------------------
# Region 900's node has IPv4 "none": connecting at all is over IPv6.
check "both nodes' workers connected to region 900 (IPv6 only)" \
	bash -c "grep -q 'DERP derp900.testcontrol.invalid: connected' '$T/sup.log' &&
		grep -q 'DERP derp900.testcontrol.invalid: connected' '$T/sup-b.log'"
ip netns exec "$RT" nft add rule inet tscni_v6u forward meta l4proto udp \
	ip6 saddr '{ 2001:db8:a::/64, 2001:db8:b::/64 }' ip6 daddr '{ 2001:db8:a::/64, 2001:db8:b::/64 }' drop
r0=$(tc_get /derp | jq '[.[].relayed] | add')
check "pod 0 pings pod 1 through DERP (${POD6[1]})" ns_ping_until "${POD_NS[0]}" "${POD6[1]}"
check "pod 1 pings pod 0 through DERP (${POD4[0]})" ns_ping_until "${POD_NS[1]}" "${POD4[0]}"
SIZE=$((5 * 1000 * 1000))
head -c "$SIZE" /dev/urandom >"$T/big.in"
transfer "${POD_NS[0]}" "${POD_NS[1]}" "${POD4[1]}" 5201 "pod 0 -> pod 1 through DERP (5 MB)"
r1=$(tc_get /derp | jq '[.[].relayed] | add')
echo "# DERP over IPv6 relayed $((r1 - r0)) packets"
check "DERP (IPv6 only) relayed the pings and the stream ($((r1 - r0)) packets)" \
	test $((r1 - r0)) -ge $((SIZE / 1280))
node_use a
peer_wait "${POD_UID[0]}" "${POD4[1]}" '.path | startswith("derp-900")'
rc=$?
check "pod 0's status: pod 1 through DERP region 900 ($(jq -r .path <<<"$PEER"))" test $rc -eq 0

node_use b
pod_del 1
node_stop b
node_use a
pod_del 0
tscni_finish
