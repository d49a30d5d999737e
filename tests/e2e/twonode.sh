#!/bin/bash
# e2e two nodes: our own tailnet (tests/testcontrol with two DERP regions and
# their STUN) across a router, node B behind a NAT; every node its own
# supervisor, workers and real CNI plugin; three pods on node A, two on B.
#
#   netns PUB 192.0.2.2: testcontrol (DERP 900 and 901, STUN; control over
#        http: its certificate names loopback only), admin on its 127.0.0.1
#   netns RT  br0 192.0.2.1/24 (bridge: PUB, node A) + lanb 10.99.0.1/24;
#        nftables: B's subnet masqueraded out of br0, nothing new from br0
#        into lanb (a NAT's filter)
#   netns NA  192.0.2.3/24 (public in part 1; its own NAT in part 2)
#   netns NB  10.99.0.2/24 behind RT
#
# 1. Every pair of the 5 pods (10 pairs, 6 across the NAT) pings v4 and v6
#    and moves 50 MB over TCP with the same SHA-256 (about 1 s a pair here;
#    the whole test takes under 2 min on 2 busy cores). Paths are direct:
#    a cross pair's stream crosses RT as UDP between the nodes (RT's
#    nftables counters) and the DERP regions relay almost nothing of any
#    stream (testcontrol's GET /derp "relayed"), and control holds node B's
#    pods' endpoints through the NAT (found by STUN);
#    RT's masquerade keeps a socket's port whatever the destination
#    (endpoint-independent mapping), so disco punches through.
# 2. Hard NATs on both sides (masquerade random,fully-random on RT, the same
#    on node A's own netns with unsolicited UDP dropped, flows of part 1
#    cut): the cross pairs fall back to DERP and stay there, without
#    flapping: 20 s of 10/s pings all answered, no UDP between the nodes
#    delivered, DERP relaying every ping.
# 3. The home DERP region restarted under a 10/s ping between pods across
#    the NATs (POST /derp down, then up): the ping's gap is printed; at most
#    5 s for a 1 s restart, and back within 3 s of the region's return
#    after a 4 s one.
# 4. The home region down for good: the pods move to the other region (the
#    time is printed: a worker gives its home up after 15 s without it) and
#    the ping goes on (its gap is printed).
source "$(dirname "$0")/../lib/common.sh"

tscni_init "twonode"
source "$(dirname "$0")/../lib/tailnet.sh"
[[ -x $TC ]] || {
	echo "testcontrol missing: build first" >&2
	exit 1
}

# --- topology -------------------------------------------------------------
ns_new rt || tscni_finish
RT=$NS_NAME
ns_new pub || tscni_finish
PUB=$NS_NAME
ns_new na || tscni_finish
NA=$NS_NAME
ns_new nb || tscni_finish
NB=$NS_NAME

# wire NS RT_IF ADDR/LEN GW: a veth pair, wan0 in NS (ADDR, default via GW),
# RT_IF in RT.
wire()
{
	ip -n "$RT" link add "$2" type veth peer name wan0 netns "$1" || return 1
	ip -n "$1" addr add "$3" dev wan0
	ip -n "$1" link set wan0 up
	ip -n "$1" route add default via "$4"
	ip -n "$RT" link set "$2" up
}
ip netns exec "$RT" sysctl -qw net.ipv4.ip_forward=1
ip -n "$RT" link add br0 type bridge || tscni_finish
ip -n "$RT" addr add 192.0.2.1/24 dev br0
ip -n "$RT" link set br0 up
wire "$PUB" pp 192.0.2.2/24 192.0.2.1 || tscni_finish
wire "$NA" pa 192.0.2.3/24 192.0.2.1 || tscni_finish
ip -n "$RT" link set pp master br0
ip -n "$RT" link set pa master br0
wire "$NB" lanb 10.99.0.2/24 10.99.0.1 || tscni_finish
ip -n "$RT" addr add 10.99.0.1/24 dev lanb

# RT's NAT. Flows between the nodes are marked (ct mark 1) so that part 2
# can cut them: conntrack keeps a flow's first mapping for its life.
ip netns exec "$RT" nft -f - <<'NFT' || fail "RT's nftables rules load"
table ip tscni_nat {
	counter b2a {}
	counter a2b {}
	chain post {
		type nat hook postrouting priority srcnat;
		ip saddr 10.99.0.0/24 oifname "br0" masquerade
	}
	chain forward {
		type filter hook forward priority filter;
		iifname "br0" oifname "lanb" ct state new drop
		meta l4proto udp ip saddr 10.99.0.0/24 ip daddr 192.0.2.3 ct mark set 1
		meta l4proto udp ip saddr 10.99.0.0/24 ip daddr 192.0.2.3 counter name "b2a"
		meta l4proto udp ip saddr 192.0.2.3 ip daddr 10.99.0.0/24 counter name "a2b"
	}
}
NFT
check "node B reaches PUB through the NAT" \
	ip netns exec "$NB" busybox ping -c 1 -W 2 192.0.2.2 >/dev/null
check "node A does not reach node B's private address" \
	bash -c "! ip netns exec '$NA' busybox ping -c 1 -W 1 10.99.0.2 >/dev/null"

# ctr NS TABLE NAME [bytes]: packets (or bytes) of an nftables named
# counter; -1 when it cannot be read (the checks then fail).
ctr()
{
	local v f=1

	[[ ${4:-} == bytes ]] && f=2
	v=$(ip netns exec "$1" nft list counter ip "$2" "$3" |
		sed -n "s/.*packets \([0-9]*\) bytes \([0-9]*\).*/\\$f/p")
	echo "${v:--1}"
}

# relayed: packets both DERP regions relayed so far.
relayed()
{
	tc_get /derp | jq '[.[].relayed] | add'
}

# --- control, both nodes, five pods ------------------------------------------
TC_NS=$PUB TC_BIND=192.0.2.2 TC_ADMIN=127.0.0.1:0
tc_start --derp 192.0.2.2:0 --derp 192.0.2.2:0 || tscni_finish
tc_authkey '{"reusable": true, "ephemeral": true, "tags": ["tag:e2e"]}' || tscni_finish
for n in a b; do
	node_use "$n" || tscni_finish
	if [[ $n == a ]]; then SUP_NETNS=$NA; else SUP_NETNS=$NB; fi
	sup_start --control-url "http://$TC_HTTP" --auth-key-file "$T/authkey" \
		--cluster-name e2e --node-name "e2e-$$-$n" || tscni_finish
done
declare -A NODE_OF
for i in 0 1 2 3 4; do
	if ((i < 3)); then NODE_OF[$i]=a; else NODE_OF[$i]=b; fi
	node_use "${NODE_OF[$i]}"
	pod_add "$i" || tscni_finish
done

# homes: "h0 h1 h2 h3 h4", each pod's home region in control (0: none yet).
homes()
{
	tc_get /nodes | jq -r --argjson want "$(printf '%s/32\n' "${POD4[@]}" | jq -R . | jq -sc .)" \
		'. as $n | [$want[] | . as $a |
			([$n[] | select(.addresses | index($a))][0].home_derp // 0)] | map(tostring) | join(" ")'
}
for ((k = 0; k < 100; k++)); do
	h=$(homes)
	[[ " $h " != *" 0 "* ]] && break
	sleep 0.2
done
check "every pod reports home region 900 to control ($h)" test "$h" == "900 900 900 900 900"

# endpoints_of ADDR4: the endpoints control holds for the pod at ADDR4.
endpoints_of()
{
	tc_get /nodes | jq -c --arg a "$1/32" \
		'[.[] | select(.addresses | index($a))][0].endpoints // []'
}
for i in 3 4; do
	for ((k = 0; k < 50; k++)); do
		ep=$(endpoints_of "${POD4[$i]}")
		[[ $ep == *'"192.0.2.1:'* ]] && break
		sleep 0.2
	done
	check "pod $i (node B) announces its address through the NAT, found by STUN ($ep)" \
		grep -q '"192.0.2.1:' <<<"$ep"
done

# --- 1. every pair, direct -----------------------------------------------------
SIZE=$((50 * 1000 * 1000))
head -c "$SIZE" /dev/urandom >"$T/big.in"
port=5100
for i in 0 1 2 3 4; do
	for ((j = i + 1; j < 5; j++)); do
		p="pod $i -> pod $j"
		check "$p: ICMP v4" ns_ping_until "${POD_NS[$i]}" "${POD4[$j]}"
		check "$p: ICMP v6" ns_ping_until "${POD_NS[$i]}" "${POD6[$j]}"
		r0=$(relayed)
		c0=$(($(ctr "$RT" tscni_nat a2b bytes) + $(ctr "$RT" tscni_nat b2a bytes)))
		transfer "${POD_NS[$i]}" "${POD_NS[$j]}" "${POD4[$j]}" $((port++)) "$p (50 MB)"
		r1=$(relayed)
		c1=$(($(ctr "$RT" tscni_nat a2b bytes) + $(ctr "$RT" tscni_nat b2a bytes)))
		# A direct path: DERP relays under 5% of the stream's packets.
		check "$p: direct, DERP relayed $((r1 - r0)) packets" \
			test $((r1 - r0)) -lt $((SIZE / 1280 / 20))
		if [[ ${NODE_OF[$i]} != "${NODE_OF[$j]}" ]]; then
			check "$p: $((c1 - c0)) bytes of UDP crossed the NAT between the nodes" \
				test $((c1 - c0)) -ge "$SIZE"
		fi
	done
done

# --- 2. hard NAT on both sides: DERP, no flapping ---------------------------------
ip netns exec "$RT" nft -f - <<'NFT' || fail "RT's hard NAT loads"
flush chain ip tscni_nat post
flush chain ip tscni_nat forward
table ip tscni_nat {
	chain post {
		ip saddr 10.99.0.0/24 oifname "br0" masquerade random,fully-random
	}
	chain forward {
		meta l4proto udp ct mark 1 drop
		iifname "br0" oifname "lanb" ct state new drop
		meta l4proto udp ip saddr 10.99.0.0/24 ip daddr 192.0.2.3 counter name "b2a"
		meta l4proto udp ip saddr 192.0.2.3 ip daddr 10.99.0.0/24 counter name "a2b"
	}
}
NFT
ip netns exec "$NA" nft -f - <<'NFT' || fail "node A's hard NAT loads"
table ip tscni_hard {
	counter from_b {}
	chain post {
		type nat hook postrouting priority srcnat;
		oifname "wan0" meta l4proto udp masquerade random,fully-random
	}
	chain in {
		type filter hook input priority filter;
		iifname "wan0" meta l4proto udp ct state new drop
		iifname "wan0" meta l4proto udp ip saddr 192.0.2.1 counter name "from_b"
	}
}
NFT
t0=$(now_ms)
for i in 0 1 2; do
	for j in 3 4; do
		check "hard NATs: pod $i -> pod $j answers again (through DERP)" \
			ns_ping_until "${POD_NS[$i]}" "${POD4[$j]}"
	done
done
echo "# hard NATs: every cross pair answered again after $(($(now_ms) - t0)) ms"
# Old direct attempts may still be in flight: the count starts 2 s later.
sleep 2
a0=$(ctr "$RT" tscni_nat a2b)
b0=$(ctr "$NA" tscni_hard from_b)
r0=$(relayed)
out=$(ip netns exec "${POD_NS[0]}" busybox ping -i 0.1 -c 200 -W 2 "${POD4[3]}" 2>&1)
got=$(sed -n 's/.* \([0-9]*\) packets received.*/\1/p' <<<"$out")
a1=$(ctr "$RT" tscni_nat a2b)
b1=$(ctr "$NA" tscni_hard from_b)
r1=$(relayed)
echo "# hard NATs, 20 s: $got of 200 pings answered; DERP relayed $((r1 - r0));" \
	"direct UDP delivered: $((a1 - a0)) A->B, $((b1 - b0)) B->A"
check "hard NATs: 200 pings in 20 s, at most 2 lost ($got answered)" test "${got:-0}" -ge 198
check "hard NATs: no UDP between the nodes delivered (no flapping to a dead path)" \
	test $((a1 - a0)) -eq 0 -a $((b1 - b0)) -eq 0
check "hard NATs: DERP relayed every ping and answer ($((r1 - r0)) >= $((2 * ${got:-0})))" \
	test $((r1 - r0)) -ge $((2 * ${got:-0}))

# --- 3. the home region restarted under a 10/s ping ------------------------------
# ping_gap FILE: the longest run of unanswered pings in a busybox ping log,
# in ms (pings every 100 ms).
ping_gap()
{
	sed -n 's/.* seq=\([0-9]*\) .*/\1/p' "$1" | sort -n | awk '
		NR > 1 && $1 - prev > gap { gap = $1 - prev }
		{ prev = $1 } END { print (gap > 0 ? gap : 1) * 100 }'
}

# ping_bg FILE: a 10/s ping from pod 0 to pod 3 in the background (PING_PID).
ping_bg()
{
	ip netns exec "${POD_NS[0]}" busybox ping -i 0.1 -w 120 "${POD4[3]}" >"$1" 2>&1 &
	PING_PID=$!
	CLEAN_PIDS+=("$PING_PID")
}

ping_stop()
{
	kill -INT "$PING_PID" 2>/dev/null
	wait "$PING_PID" 2>/dev/null
}

# A quick restart (1 s) and a slower one (4 s): the worker redials a lost
# region at once and then backs off as upstream does (n² · 10 ms, at most
# 5 s, ±50 %): around 4 s the steps are 1-1.5 s, so the region is found
# again within about 2 s of its return (3 s allowed; the old backoff, 500 ms
# doubling, could take 5.5 s).
for down in 1 4; do
	ping_bg "$T/ping.restart$down"
	sleep 2
	t0=$(now_ms)
	tc_post /derp '{"region": 900, "up": false}' >/dev/null
	sleep "$down"
	tc_post /derp '{"region": 900, "up": true}' >/dev/null
	t1=$(now_ms)
	sleep 6
	ping_stop
	gap=$(ping_gap "$T/ping.restart$down")
	echo "# DERP region 900 restarted (down $((t1 - t0)) ms): the longest ping gap is" \
		"$gap ms, $((gap - (t1 - t0))) ms after the region was back"
	if [[ $down == 1 ]]; then
		check "region 900 restarted in 1 s: the pings recover within 5 s ($gap ms)" \
			test "$gap" -le $((5000 * TIME_SCALE))
	else
		check "region 900 restarted in 4 s: the pings are back within 3 s of its return" \
			test $((gap - (t1 - t0))) -le $((3000 * TIME_SCALE))
	fi
	check "region 900 restarted in $down s: the last second's pings are answered" \
		test "$(tail -n 12 "$T/ping.restart$down" | grep -c ' seq=')" -ge 8
done

# --- 4. the home region down: the pods move to region 901 ---------------------------
ping_bg "$T/ping.failover"
sleep 1
t0=$(now_ms)
tc_post /derp '{"region": 900, "up": false}' >/dev/null
for ((k = 0; k < 300; k++)); do
	h=$(homes)
	[[ $h == "901 901 901 901 901" ]] && break
	sleep 0.1
done
moved=$(($(now_ms) - t0))
echo "# region 900 down: every pod's home is region 901 after $moved ms ($h)"
check "region 900 down: every pod moves home to region 901 ($h)" \
	test "$h" == "901 901 901 901 901"
sleep 3
ping_stop
gap=$(ping_gap "$T/ping.failover")
echo "# region 900 down: the longest ping gap is $gap ms"
check "after the move the pings go on through region 901" \
	test "$(tail -n 25 "$T/ping.failover" | grep -c ' seq=')" -ge 20
for i in 0 1 2; do
	check "region 901: pod $i -> pod 3 answers" ns_ping_until "${POD_NS[$i]}" "${POD4[3]}"
done
check "region 901: pod 4 -> pod 0 answers over IPv6" ns_ping_until "${POD_NS[4]}" "${POD6[0]}"

for i in 0 1 2 3 4; do
	node_use "${NODE_OF[$i]}"
	pod_del "$i"
done
node_stop b
node_use a
tscni_finish
