#!/bin/bash
# e2e netcheck: the supervisor measures DERP latencies once per node and the
# pods' home region follows (docs/tailscale-protocol.md §6.5).
#
#   node netns: testcontrol (control, admin, DERP regions 900 and 901 on
#   127.0.0.1, STUN on the same UDP ports), our supervisor (one netcheck
#   UDP socket) and three pods' workers. nftables there (output hook)
#   counts the supervisor's STUN requests per region and drops every UDP
#   datagram to one region's port, so that region never answers STUN.
#
# Checked: with region 900's STUN dropped, all three pods make region 901
# their home (Hostinfo.NetInfo.PreferredDERP: the node's home_derp), though
# 900 comes first in the DERP map, and report a latency for 901 only
# (NetInfo.DERPLatency); the supervisor measures one map for the
# three pods, and sends exactly three probes per region and round, not one
# set per pod; with 901 dropped instead, the pods go back to 900.
source "$(dirname "$0")/../lib/common.sh"

tscni_init "netcheck"
source "$(dirname "$0")/../lib/tailnet.sh"
[[ -x $TC ]] || {
	echo "testcontrol missing: build first" >&2
	exit 1
}
NPODS=3

node_ns_new || tscni_finish
tc_start --derp 127.0.0.1:0 --derp 127.0.0.1:0 || tscni_finish
tc_authkey '{"reusable": true, "ephemeral": true, "tags": ["tag:e2e"]}' || tscni_finish
P900=$(tc_get /derp | jq -r '.[] | select(.region == 900) | .port')
P901=$(tc_get /derp | jq -r '.[] | select(.region == 901) | .port')
check "testcontrol serves regions 900 and 901 ($P900 $P901)" test -n "$P900" -a -n "$P901"
sup_start_tailnet || tscni_finish
NC_PORT=$(sed -n 's/.*netcheck: STUN probes from UDP port \([0-9]*\).*/\1/p' "$T/sup.log" | tail -n1)
check "the supervisor names its netcheck port ($NC_PORT)" test -n "$NC_PORT"

# drop_stun PORT: the ruleset, with datagrams to PORT dropped (the counters
# start from zero each time).
drop_stun()
{
	ip netns exec "$NODE_NS" nft -f - <<NFT
table inet tscni_nc
delete table inet tscni_nc
table inet tscni_nc {
	counter nc900 {}
	counter nc901 {}
	chain out {
		type filter hook output priority 0;
		udp sport $NC_PORT udp dport $P900 counter name nc900
		udp sport $NC_PORT udp dport $P901 counter name nc901
		udp dport $1 drop
	}
}
NFT
}
# probes REGION: the supervisor's STUN requests to REGION so far.
probes()
{
	ip netns exec "$NODE_NS" nft -j list counter inet tscni_nc "nc$1" |
		jq '[.nftables[] | select(.counter) | .counter.packets][0]'
}
# rounds: netcheck rounds the supervisor finished since the ruleset was set.
rounds()
{
	tail -n +"$LOG_MARK" "$T/sup.log" | grep -c 'netcheck: round [0-9]* of a'
}
# home_of ADDR4: the home DERP region control holds for the pod at ADDR4.
home_of()
{
	tc_get /nodes | jq -r --arg a "$1" \
		'[.[] | select(.addresses | index($a + "/32"))][0].home_derp // 0'
}
# latencies ADDR4: the DERPLatency keys control holds for the pod at ADDR4.
latencies()
{
	tc_get /nodes | jq -c --arg a "$1" \
		'[.[] | select(.addresses | index($a + "/32"))][0].derp_latency // {} |
		 with_entries(select(.value > 0)) | keys'
}
# wait_home REGION SECONDS: until every pod's home is REGION.
wait_home()
{
	local k i h
	for ((k = 0; k < $2 * 10; k++)); do
		HOMES=""
		for ((i = 0; i < NPODS; i++)); do
			h=$(home_of "${POD4[$i]}")
			HOMES+="$h "
		done
		[[ $HOMES == "$(printf "$1 %.0s" $(seq $NPODS))" ]] && return 0
		sleep 0.1
	done
	return 1
}

drop_stun "$P900"
LOG_MARK=$(($(wc -l <"$T/sup.log") + 1))
check "STUN to region 900 is dropped in the node netns (nftables)" \
	ip netns exec "$NODE_NS" nft list table inet tscni_nc
T0=$(date +%s)
for ((i = 0; i < NPODS; i++)); do
	pod_add "$i" || tscni_finish
done

check "with 900's STUN dropped, every pod moves home to region 901" wait_home 901 90
echo "# homes: $HOMES; DERP: $(tc_get /derp | jq -c .)"
for ((i = 0; i < NPODS; i++)); do
	check "pod $i reports a latency for region 901 only" \
		test "$(latencies "${POD4[$i]}")" == '["901-v4"]'
done
check "one DERP map measured for the $NPODS pods" \
	test "$(grep -c 'netcheck: measuring a new DERP map' "$T/sup.log")" -eq 1

# Per round, 3 probes to each region from the supervisor's one socket: a
# probe set per pod would be 3 x $NPODS. A round in progress may have sent
# its probes already without having finished. The second round comes 20-30 s
# after the first.
for ((k = 0; k < 450 && $(rounds) < 2; k++)); do
	sleep 0.1
done
r=$(rounds)
n900=$(probes 900)
n901=$(probes 901)
echo "# $r rounds; the supervisor's STUN requests: region 900 $n900, region 901 $n901"
check "netcheck ran at least twice (refreshed)" test "$r" -ge 2
check "3 probes per region and round, not per pod (900: $n900, $r rounds)" \
	test "$n900" -ge $((3 * r)) -a "$n900" -le $((3 * r + 3))
check "3 probes per region and round, not per pod (901: $n901, $r rounds)" \
	test "$n901" -ge $((3 * r)) -a "$n901" -le $((3 * r + 3))
elapsed=$(($(date +%s) - T0))
check "rounds come every 20-30 s, not faster ($r rounds in $elapsed s)" \
	test "$r" -le $((elapsed / 20 + 1))

# --- now region 901 stops answering ------------------------------------------
drop_stun "$P901"
check "with 901's STUN dropped, every pod goes home to region 900" wait_home 900 90
echo "# homes: $HOMES"
check "pod 0 now reports a latency for region 900 only" \
	test "$(latencies "${POD4[0]}")" == '["900-v4"]'

for ((i = 0; i < NPODS; i++)); do
	pod_del "$i"
done
tscni_finish
