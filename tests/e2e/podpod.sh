#!/bin/bash
# e2e pod<->pod: two pods on one node (two pod netns, one supervisor with
# --control-url, tests/testcontrol) talk over ts0 through their workers' data
# planes (WireGuard over the pods' UDP sockets, the netmap's packet filter).
#
#   1. testcontrol's default policy (allow all): pod A pings pod B's 100.x
#      and fd7a: addresses (busybox ping in A's netns), and a TCP stream from
#      A to B arrives whole (same size, same SHA-256).
#      status --json counts the stream (UDP datagrams), and lists each pod
#      as the other's peer on a direct path (disco's address on the node),
#      with a completed handshake and bytes both ways.
#   2. a policy allowing only tcp:80 to pod B (POST /policy): A connects to
#      B's port 80, not to its port 22 (B listens on both); the change takes
#      effect within 2 s.
# Everything runs inside network namespaces this test creates (the node's
# too). With TSCNI_FORCE_FALLBACK=all (ctest e2e.podpod_fallback) the workers
# run with every offload off.
source "$(dirname "$0")/../lib/common.sh"

tscni_init "podpod"
source "$(dirname "$0")/../lib/tailnet.sh"
[[ -x $TC ]] || {
	echo "testcontrol missing: build first" >&2
	exit 1
}

# The supervisor and testcontrol in a node netns of our own: the workers
# announce that namespace's address (10.201.0.1) as their endpoint.
node_ns_new || tscni_finish
tc_start || tscni_finish
tc_authkey '{"reusable": true, "ephemeral": true, "tags": ["tag:e2e"]}' || tscni_finish
sup_start_tailnet || tscni_finish

declare -a NSN ADDR4 ADDR6
for i in 0 1; do
	pod_add "$i" || tscni_finish
	NSN[$i]=${POD_NS[$i]}
	ADDR4[$i]=${POD4[$i]}
	ADDR6[$i]=${POD6[$i]}
done
A=${NSN[0]}
B=${NSN[1]}

# in_pod NS CMD...: runs CMD in the pod's netns.
in_pod()
{
	local ns=$1
	shift
	ip netns exec "$ns" "$@"
}

# ping_until NS DST: up to 20 one-second tries (the first packets wait for
# the peer's netmap and the handshake).
ping_until()
{
	local k
	for ((k = 0; k < 20; k++)); do
		in_pod "$1" busybox ping -c 1 -W 1 "$2" >/dev/null 2>&1 && return 0
	done
	return 1
}

# --- 1. allow all: ping and a TCP stream ------------------------------------
check "pod A pings pod B at ${ADDR4[1]} over ts0" ping_until "$A" "${ADDR4[1]}"
check "pod A pings pod B at ${ADDR6[1]} over ts0" ping_until "$A" "${ADDR6[1]}"
out=$(in_pod "$A" busybox ping -c 3 -W 2 "${ADDR4[1]}" 2>&1)
check "3 of 3 pings answered ($(grep -o '[0-9]* packets received' <<<"$out"))" \
	grep -q '3 packets received' <<<"$out"

# connects NS DST PORT: a TCP connection from pod NS opens within 3 s.
connects()
{
	in_pod "$1" timeout 3 bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null
}

refused()
{
	! connects "$@"
}

SIZE=$((32 * 1024 * 1024))
head -c "$SIZE" /dev/urandom >"$T/stream.in"
recv_start "$B" 5001 "$T/stream.out" || fail "receiver listens in pod B"
t0=$(date +%s%N)
in_pod "$A" timeout 60 bash -c "cat '$T/stream.in' >/dev/tcp/${ADDR4[1]}/5001"
rc=$?
t1=$(date +%s%N)
recv_wait "$T/stream.out" "$SIZE"
check "the sender in pod A finished (exit $rc)" test "$rc" -eq 0
got=$(stat -c %s "$T/stream.out" 2>/dev/null || echo 0)
check "pod B received $got of $SIZE bytes" test "$got" -eq "$SIZE"
check "the stream's SHA-256 matches" \
	test "$(sha256sum <"$T/stream.in")" == "$(sha256sum <"$T/stream.out")"
ms=$(((t1 - t0) / 1000000))
echo "# $((SIZE / 1048576)) MiB pod A -> pod B over ts0 in $ms ms"

# The data-plane counters in status --json (each status asks the workers for
# fresh Stats: the second answer has them): the stream went out of pod A's
# UDP socket, at least one datagram per 1280-byte packet.
udp_tx_of()
{
	pod_stat "${POD_UID[$1]}" udp_tx_packets
}
for ((k = 0; k < 20; k++)); do
	tx=$(udp_tx_of 0)
	[[ $tx =~ ^[0-9]+$ && $tx -ge $((SIZE / 1280)) ]] && break
	sleep 0.1
done
check "status --json: pod A's udp_tx_packets counts the stream ($tx >= $((SIZE / 1280)))" \
	test "${tx:-0}" -ge $((SIZE / 1280))
rx=$(udp_tx_of 1)
# Pod B sent only TCP's ACKs: at most one per two segments (a tenth with the
# offloads on, whose coalesced writes make the ACKs fewer still).
check "status --json: pod B sent fewer than half as many ($rx)" \
	test "${rx:-0}" -lt $((SIZE / 2560)) -a "${rx:-0}" -gt 0

# Per peer (status's peer_status): each pod reaches the other directly at
# the node's address (10.201.0.1, node_ns_new), after a handshake; pod A's
# WireGuard bytes out hold the whole stream.
direct='.path | startswith("direct 10.201.0.1:")'
peer_wait "${POD_UID[0]}" "${ADDR4[1]}" \
	"($direct) and .last_handshake_unix > 0 and .rx_bytes > 0 and .tx_bytes >= $SIZE"
rc=$?
check "status --json: pod A lists pod B, direct, a handshake, bytes both ways ($PEER)" \
	test $rc -eq 0
peer_wait "${POD_UID[1]}" "${ADDR4[0]}" \
	"($direct) and .last_handshake_unix > 0 and .rx_bytes >= $SIZE and .tx_bytes > 0"
rc=$?
check "status --json: pod B lists pod A the same way ($PEER)" test $rc -eq 0
now=$(date +%s)
hs=$(jq -r .last_handshake_unix <<<"$PEER")
check "the last handshake is a recent Unix time ($hs, now $now)" \
	test "${hs:-0}" -le "$now" -a "${hs:-0}" -gt $((now - 180))
check "status (text) prints a line for the peer" \
	grep -q "^    peer ${ADDR4[0]} .* direct 10.201.0.1:" <<<"$(timeout 10 "$SUP" status --peers --socket "$SOCK")"

# --- 2. only tcp:80 to pod B ------------------------------------------------
# Listeners on 80 and 22 in pod B (busybox nc, persistent: each connection
# runs true and closes).
listen_b()
{
	ip netns exec "$B" busybox nc -ll -p "$1" -e /bin/true </dev/null >/dev/null 2>&1 &
	CLEAN_PIDS+=("$!")
}
listen_b 80
listen_b 22
for ((k = 0; k < 50; k++)); do
	[[ $(in_pod "$B" ss -Htln '( sport = :80 or sport = :22 )' | wc -l) -ge 2 ]] && break
	sleep 0.05
done
check "before the policy: port 22 of pod B connects" connects "$A" "${ADDR4[1]}" 22

# Pod B by its address (its hostname carries a hash suffix: hostname.h).
tc_post /policy '[{"src": ["*"], "dst": ["'"${ADDR4[1]}"':80"]}]' >"$T/policy.out"
check "testcontrol takes the policy ($(head -c 200 "$T/policy.out"))" \
	jqq '.acls | length == 1' <"$T/policy.out"
t0=$(date +%s%3N)
# The new filter reaches pod B's worker with its next netmap: port 22 stops
# connecting (a dropped SYN: the 1 s connect timeout below).
until ! in_pod "$A" timeout 1 bash -c "exec 3<>/dev/tcp/${ADDR4[1]}/22" 2>/dev/null; do
	(($(date +%s%3N) - t0 > 10000)) && break
done
waited=$(($(date +%s%3N) - t0))
check "the policy takes effect within 2 s ($waited ms)" test "$waited" -le $((2000 * TIME_SCALE))
check "with the policy: port 80 of pod B connects" connects "$A" "${ADDR4[1]}" 80
check "with the policy: port 80 of pod B connects over IPv6" connects "$A" "${ADDR6[1]}" 80
check "with the policy: port 22 of pod B does not connect" refused "$A" "${ADDR4[1]}" 22
check "with the policy: port 22 of pod B does not connect over IPv6" refused "$A" "${ADDR6[1]}" 22

for i in 0 1; do
	pod_del "$i"
done
tscni_finish
