#!/bin/bash
# bench: our pods beside genuine Tailscale v1.68.2 nodes, in the same run.
# Prints figures; exits 1 only when the setup fails (a genuine node, our
# supervisor, an ADD, a first ping). Needs the genuine programs
# (TSCNI_PEERS_DIR, tests/lib/genuine.sh); prints one SKIP line without them.
#   sudo TSCNI_PEERS_DIR=<peers> tests/bench/genuine.sh <build dir>
#
#   netns ${GP}hub: br0 ─┬─ ${GP}ctl  10.99.0.1    peerctl (testcontrol, DERP, STUN)
#                        ├─ ${GP}n1   10.99.0.11   genuine tailscaled "n1"
#                        ├─ ${GP}n2   10.99.0.12   genuine tailscaled "n2"
#                        └─ NODE      10.99.0.100  our supervisor, 9 pods' workers
#
# Each worker has 10 peers (the 8 other pods, n1 and n2). Printed:
#   ADD -> first direct ping: pod 0's ADD (exec to exit of the plugin), and
#     from the start of that ADD until `tailscale ping` from n1 gets a pong
#     over a direct path;
#   TCP, iperf3 -t 5, 1 stream, Mbit/s received, each direction:
#     n1 <-> n2 (tailscaled <-> tailscaled), n1 <-> pod 0, pod 0 <-> pod 1,
#     over direct paths, then with every UDP datagram between the nodes
#     dropped (nftables in n1 and in our node netns): the same through the
#     DERP region;
#   PSS (KiB, /proc/PID/smaps_rollup every 100 ms): pod 0's worker idle
#     (10 peers, home DERP connected; the largest of 2 s of samples) and its
#     largest under load (all iperf3 runs), against the goals (1.5 MiB idle,
#     4 MiB under load); n1's tailscaled idle and under load beside it.
export TSCNI_BUILD_DIR=${1:-${TSCNI_BUILD_DIR:-}}
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/genuine.sh"

genuine_or_skip
tscni_init gbench
source "$(dirname "$0")/../lib/tailnet.sh"
source "$(dirname "$0")/../lib/bench.sh"
bench_tick_init

PODS=9
SECS=5

# die MSG: the setup failed.
die()
{
	echo "genuine bench: $*" >&2
	exit 1
}
command -v iperf3 >/dev/null || die "iperf3 not found"

genuine_up 2 && genuine_control && genuine_node 1 && genuine_node 2 && genuine_authkey &&
	genuine_node_ns && sup_start_genuine --log-level info || die "genuine tailnet or supervisor"
N1=${GP}n1
N2=${GP}n2

# ts_ip I FAMILY: genuine node I's tailnet address (4 or 6).
ts_ip()
{
	genuine_ts "$1" ip "-$2" 2>/dev/null | head -n 1
}
n1_4=$(ts_ip 1 4)
n2_4=$(ts_ip 2 4)
[[ -n $n1_4 && -n $n2_4 ]] || die "the genuine nodes have no tailnet addresses"

# --- ADD -> first direct ping -------------------------------------------------
t0=$(now_ms)
pod_add 0 || die "pod 0: ADD"
t_add=$(($(now_ms) - t0))
# DEL at cleanup, while the supervisor runs (workers outlive a supervisor).
CLEAN_CMDS+=("pod_del 0")
first=""
for ((k = 0; k < 100; k++)); do
	if genuine_ts 1 ping -c 1 --timeout 1s "${POD4[0]}" 2>/dev/null |
		grep -qE "^pong from .* via ${NODE_ADDR//./\\.}:[0-9]+ in"; then
		first=$(($(now_ms) - t0))
		break
	fi
done
[[ -n $first ]] || die "no direct pong from pod 0 within 100 tries"
for ((i = 1; i < PODS; i++)); do
	pod_add "$i" || die "pod $i: ADD"
	CLEAN_CMDS+=("pod_del $i")
done
WPID=$(pod_stat "${POD_UID[0]}" worker_pid)
[[ $WPID =~ ^[0-9]+$ ]] || die "no worker pid for pod 0"
TSD=$(cat "$GRUN/n1/tailscaled.pid")
PIDS=("$WPID" "$TSD")

# Every worker knows its 10 peers, and pod 0 reaches each of them.
for ((k = 0; k < 100; k++)); do
	[[ $(pod_stat "${POD_UID[0]}" peers) == $((PODS + 1)) ]] && break
	sleep 0.2
done
peers=$(pod_stat "${POD_UID[0]}" peers)
for dst in "$n1_4" "$n2_4" "${POD4[@]:1}"; do
	ns_ping_until "${POD_NS[0]}" "$dst" >/dev/null || die "pod 0 does not reach $dst"
done

# iperf3_servers: one in each of n1, n2, pod 0 and pod 1 (ip execs iperf3,
# so $! is its pid).
for ns in "$N1" "$N2" "${POD_NS[0]}" "${POD_NS[1]}"; do
	ip netns exec "$ns" iperf3 -s >>"$T/iperf3-s.log" 2>&1 </dev/null &
	CLEAN_PIDS+=("$!")
done
sleep 0.5

# run FROM_NS DST LABEL: iperf3 -c DST from FROM_NS; appends a row.
ROWS=()
run()
{
	local out mbit

	out=$(ip netns exec "$1" timeout $((SECS + 20)) iperf3 -c "$2" -t "$SECS" -J 2>/dev/null)
	mbit=$(jq -r '(.end.sum_received.bits_per_second // 0) / 1e6 | floor' <<<"$out" 2>/dev/null)
	ROWS+=("$(printf '%-34s %6s Mbit/s' "$3" "${mbit:-0}")")
}

# runs VIA: every pair, both directions.
runs()
{
	run "$N1" "$n2_4" "n1 -> n2 (genuine, $1)"
	run "$N2" "$n1_4" "n2 -> n1 (genuine, $1)"
	run "$N1" "${POD4[0]}" "n1 -> pod 0 ($1)"
	run "${POD_NS[0]}" "$n1_4" "pod 0 -> n1 ($1)"
	run "${POD_NS[0]}" "${POD4[1]}" "pod 0 -> pod 1 ($1)"
	run "${POD_NS[1]}" "${POD4[0]}" "pod 1 -> pod 0 ($1)"
}

sleep 1
sample_start "$T/pss.idle"
sleep 2
sample_stop
st=$(genuine_ts 1 status 2>/dev/null | grep -F "${POD4[0]}")
sample_start "$T/pss.load"
runs direct
sample_stop
echo "# n1's view of pod 0 during the direct runs: $st"

# --- DERP: every UDP datagram between the nodes dropped ------------------------
ip netns exec "$NODE_NS" nft -f - <<'NFT'
table inet tscni_block {
	chain in { type filter hook input priority 0; meta l4proto udp drop; }
}
NFT
ip netns exec "$N1" nft -f - <<NFT
table inet tscni_block {
	chain in { type filter hook input priority 0; ip saddr 10.99.0.12 meta l4proto udp drop; }
	chain out { type filter hook output priority 0; ip daddr 10.99.0.12 meta l4proto udp drop; }
}
NFT
# The direct paths lose trust 6.5 s after their last Pong; traffic meanwhile
# makes both sides fall back to DERP.
for ((k = 0; k < 40; k++)); do
	ip netns exec "$N1" busybox ping -c 1 -W 1 "$n2_4" >/dev/null 2>&1
	ip netns exec "$N1" busybox ping -c 1 -W 1 "${POD4[0]}" >/dev/null 2>&1
	ip netns exec "${POD_NS[0]}" busybox ping -c 1 -W 1 "${POD4[1]}" >/dev/null 2>&1
	s=$(genuine_ts 1 status 2>/dev/null)
	grep -F "${POD4[0]}" <<<"$s" | grep -q 'relay "' &&
		grep -F "$n2_4" <<<"$s" | grep -q 'relay "' && break
done
st=$(genuine_ts 1 status 2>/dev/null | grep -F "${POD4[0]}")
sample_start "$T/pss.derp"
runs DERP
sample_stop
echo "# n1's view of pod 0 during the DERP runs: $st"

# --- report ---------------------------------------------------------------------
echo "# genuine bench: our node with $PODS pods (pod 0's worker: $peers peers)," \
	"genuine tailscaled v1.68.2 n1 and n2, peerctl's DERP region; iperf3 -t $SECS, 1 stream"
echo "# ADD of pod 0: $t_add ms; ADD start -> first direct pong to tailscale ping: $first ms"
for r in "${ROWS[@]}"; do
	echo "# $r"
done
echo "# PSS KiB            idle   max under load (goal: 1536 idle, 4096 under load)"
echo "# pod 0's worker   $(col_max 1 "$T/pss.idle")   $(col_max 1 "$T/pss.load" "$T/pss.derp")"
echo "# n1's tailscaled  $(col_max 4 "$T/pss.idle")   $(col_max 4 "$T/pss.load" "$T/pss.derp")"
tscni_finish
