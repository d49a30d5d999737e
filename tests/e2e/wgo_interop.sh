#!/bin/bash
# e2e interop: a pod's worker and Debian's wireguard-go, the peer known to the
# worker only through the netmap (testcontrol registers wireguard-go as an
# external node with its key, addresses and endpoint) — the "interop"
# and "pod<->pod" cases.
#
#   netns NODE: testcontrol, the supervisor, the workers' UDP sockets
#        veth 10.202.0.1 ──── 10.202.0.2 netns W: wireguard-go (wgo<pid>)
#   pod netns: ts0 (the worker's TUN), 100.x and fd7a: from control
#
# The supervisor runs with shortened WireGuard timers (--test-wg-timers):
# REKEY_AFTER 2 s, REJECT_AFTER 12 s, REKEY_ATTEMPT 9 s, REKEY_TIMEOUT 1 s,
# KEEPALIVE 2 s, so rekeys happen during a transfer and a silent peer is
# noticed in seconds. wireguard-go keeps the protocol's.
#
#   1. the pod initiates (first packet from the pod), then a fresh
#      wireguard-go initiates (first packet from W);
#   2. ping v4 and v6 both ways;
#   3. 100 MB over TCP each way, same SHA-256;
#   4. rekeys mid-transfer: a slow stream of 100 MB over ~10 s arrives whole
#      while the pod's handshake count rises;
#   5. wireguard-go restarted mid-stream: a new handshake within what the
#      protocol allows, the stream completes whole;
#   6. wireguard-go with a key control does not know: no session either way,
#      nothing crashes; back to the right key, traffic again;
#   7. pod<->pod through the same path (a second pod): pings, 32 MB stream.
source "$(dirname "$0")/../lib/common.sh"

tscni_init "wgointerop"
source "$(dirname "$0")/../lib/tailnet.sh"
for tool in wireguard-go wg busybox sha256sum; do
	command -v "$tool" >/dev/null || {
		echo "wgo_interop: $tool not found" >&2
		exit 1
	}
done

REKEY_AFTER_MS=2000
REKEY_TIMEOUT_MS=1000
KEEPALIVE_MS=2000
# wireguard-go logs each handshake message it sends and receives at this
# level (to $T/wgo.log): who initiated, and what it refused.
export LOG_LEVEL=verbose

node_ns_new || tscni_finish
wgo_ns_new || tscni_finish
tc_start || tscni_finish
tc_authkey '{"reusable": true, "ephemeral": true, "tags": ["tag:e2e"]}' || tscni_finish
sup_start_tailnet --test-wg-timers "$REKEY_AFTER_MS:12000:9000:$REKEY_TIMEOUT_MS:$KEEPALIVE_MS" ||
	tscni_finish
pod_add 0 || tscni_finish
P=${POD_NS[0]}
wgo_keys || tscni_finish
wgo_register '[]' || tscni_finish
wgo_start || tscni_finish
wgo_peer_pod 0 || tscni_finish
echo "# pod 0 ${POD4[0]} ${POD6[0]}; wireguard-go $WGO4 $WGO6 (netns $WGO_NS)"

# ping_until NS DST: up to 20 one-second tries (the first packets wait for
# the netmap and the handshake).
ping_until()
{
	local k
	for ((k = 0; k < 20; k++)); do
		ip netns exec "$1" busybox ping -c 1 -W 1 "$2" >/dev/null 2>&1 && return 0
	done
	return 1
}

# ping3 NS DST: 3 of 3 echo requests answered. (Output captured first: with
# pipefail, grep -q closing a pipe early could fail a good run.)
ping3()
{
	local out
	out=$(ip netns exec "$1" busybox ping -c 3 -W 2 "$2" 2>&1)
	grep -q '3 packets received' <<<"$out"
}

# no_ping NS DST: none of 3 answered.
no_ping()
{
	! ip netns exec "$1" busybox ping -c 3 -W 1 "$2" >/dev/null 2>&1
}

# wgo_last_handshake: wireguard-go's latest handshake with the pod (unix s).
wgo_last_handshake()
{
	wg show "$WGO_DEV" latest-handshakes 2>/dev/null | awk '{print $2; exit}'
}

# wgo_mark: remembers where $T/wgo.log ends; wgo_log prints what came after.
wgo_mark()
{
	WGO_MARK=$(wc -l <"$T/wgo.log" 2>/dev/null || echo 0)
}

wgo_log()
{
	tail -n "+$((WGO_MARK + 1))" "$T/wgo.log" 2>/dev/null
}

# wgo_first_handshake_msg: the first handshake message wireguard-go logged
# since wgo_mark ("Sending handshake initiation", "Received handshake
# initiation", ...).
wgo_first_handshake_msg()
{
	local l
	l=$(wgo_log)
	grep -m1 -oE '(Sending|Received) handshake (initiation|response)' <<<"$l"
}

# wgo_log_has PATTERN: the log since wgo_mark has a line matching PATTERN.
wgo_log_has()
{
	local l
	l=$(wgo_log)
	grep -qE "$1" <<<"$l"
}

wgo_log_lacks()
{
	! wgo_log_has "$1"
}

# --- 1. who initiates ----------------------------------------------------------
for ((k = 0; k < 50; k++)); do
	peers=$(pod_stat "${POD_UID[0]}" peers)
	[[ $peers == 1 ]] && break
	sleep 0.1
done
check "the pod has wireguard-go as its one peer, from the netmap ($peers)" test "$peers" == 1
check "wireguard-go has no handshake before any traffic" test "$(wgo_last_handshake)" == 0
WGO_MARK=0
check "pod initiates: the pod pings wireguard-go at $WGO4" ping_until "$P" "$WGO4"
check "wireguard-go completed a handshake ($(wgo_last_handshake))" \
	test "$(wgo_last_handshake)" -gt 0
hs=$(pod_stat "${POD_UID[0]}" handshakes)
check "the pod's worker counts it (handshakes $hs)" test "${hs:-0}" -ge 1
first=$(wgo_first_handshake_msg)
check "the pod initiated: wireguard-go's first handshake message was '$first'" \
	test "$first" == "Received handshake initiation"

# A fresh wireguard-go has no session: the first packet from W makes it
# initiate, and the worker answers.
wgo_stop
wgo_mark
wgo_start || tscni_finish
wgo_peer_pod 0 || tscni_finish
check "fresh wireguard-go: no handshake yet" test "$(wgo_last_handshake)" == 0
check "wireguard-go initiates: W pings the pod at ${POD4[0]}" ping_until "$WGO_NS" "${POD4[0]}"
check "wireguard-go completed a handshake" test "$(wgo_last_handshake)" -gt 0
first=$(wgo_first_handshake_msg)
check "wireguard-go initiated: its first handshake message was '$first'" \
	test "$first" == "Sending handshake initiation"
check "the worker answered: wireguard-go received a handshake response" \
	wgo_log_has 'Received handshake response'

# --- 2. ping v4 and v6 both ways -----------------------------------------------
check "pod -> wireguard-go $WGO4: 3 of 3" ping3 "$P" "$WGO4"
check "pod -> wireguard-go $WGO6: 3 of 3" ping3 "$P" "$WGO6"
check "wireguard-go -> pod ${POD4[0]}: 3 of 3" ping3 "$WGO_NS" "${POD4[0]}"
check "wireguard-go -> pod ${POD6[0]}: 3 of 3" ping3 "$WGO_NS" "${POD6[0]}"

# --- 3. 100 MB each way ------------------------------------------------------------
SIZE=$((100 * 1000 * 1000))
head -c "$SIZE" /dev/urandom >"$T/big.in"
transfer "$P" "$WGO_NS" "$WGO4" 5001 "100 MB pod -> wireguard-go"
transfer "$WGO_NS" "$P" "${POD4[0]}" 5002 "100 MB wireguard-go -> pod"

# --- 4. rekeys mid-transfer ------------------------------------------------------------
# 40 chunks of 2.5 MB with 0.2 s pauses: at least ~8 s, several REKEY_AFTER
# periods; the producer tees its bytes to a file for the checksum.
slow_producer()
{
	local i
	for ((i = 0; i < 40; i++)); do
		head -c 2500000 /dev/urandom
		sleep 0.2
	done
}
rm -f "$T/slow.out"
recv_start "$WGO_NS" 5003 "$T/slow.out" || fail "rekey stream: receiver listens"
hs0=$(pod_stat "${POD_UID[0]}" handshakes)
wh0=$(wgo_last_handshake)
ip netns exec "$P" timeout $((120 * TIME_SCALE)) \
	bash -c "set -o pipefail; $(declare -f slow_producer); slow_producer | tee '$T/slow.in' >/dev/tcp/$WGO4/5003"
rc=$?
recv_wait "$T/slow.out" 100000000
hs1=$(pod_stat "${POD_UID[0]}" handshakes)
wh1=$(wgo_last_handshake)
check "rekey stream: the sender finished (exit $rc)" test "$rc" -eq 0
check "rekey stream: 100 MB arrived whole (SHA-256 matches)" same_sha "$T/slow.in" "$T/slow.out"
check "rekey stream: the pod's worker rekeyed during it (handshakes $hs0 -> $hs1)" \
	test "${hs1:-0}" -ge $((${hs0:-0} + 2))
check "rekey stream: wireguard-go saw new handshakes ($wh0 -> $wh1)" test "${wh1:-0}" -gt "${wh0:-0}"

# --- 5. wireguard-go restarted mid-stream --------------------------------------------------
# 60 chunks of 1 MB with 0.1 s pauses (~6 s+); wireguard-go is stopped and
# started again (same key, same port, no session) ~1.5 s in. The worker's
# session is then unknown to wireguard-go: the worker notices the silence
# after KEEPALIVE + REKEY_TIMEOUT (or rekeys sooner, its session being older
# than REKEY_AFTER) and initiates; one handshake (plus the retry timer's
# jitter) must be enough. The sender's TCP retransmission timer is capped at
# 1 s in the pod's netns (the kernel's tcp_rto_max_ms), so that its backoff
# during the outage does not hide how soon the path was back.
RTO_CAPPED=0
ip netns exec "$P" sysctl -qw net.ipv4.tcp_rto_max_ms=1000 2>/dev/null && RTO_CAPPED=1
restart_producer()
{
	local i
	for ((i = 0; i < 60; i++)); do
		head -c 1000000 /dev/urandom
		sleep 0.1
	done
}
rm -f "$T/rs.out"
recv_start "$WGO_NS" 5004 "$T/rs.out" || fail "restart stream: receiver listens"
ip netns exec "$P" timeout $((180 * TIME_SCALE)) \
	bash -c "set -o pipefail; $(declare -f restart_producer); restart_producer | tee '$T/rs.in' >/dev/tcp/$WGO4/5004" &
SEND_PID=$!
CLEAN_PIDS+=("$SEND_PID")
sleep 1.2
hs0=$(pod_stat "${POD_UID[0]}" handshakes)
wgo_stop
sleep 0.3
wgo_start || tscni_finish
wgo_peer_pod 0 || tscni_finish
t_up=$(now_ms)
size0=$(stat -c %s "$T/rs.out" 2>/dev/null || echo 0)
t_hs="" t_move=""
limit=$((30000 * TIME_SCALE))
while (($(now_ms) - t_up < limit)); do
	[[ -z $t_hs && $(wgo_last_handshake) -gt 0 ]] && t_hs=$(now_ms)
	[[ -z $t_move && $(stat -c %s "$T/rs.out" 2>/dev/null || echo 0) -gt $size0 ]] &&
		t_move=$(now_ms)
	[[ -n $t_hs && -n $t_move ]] && break
	sleep 0.05
done
hs1=$(pod_stat "${POD_UID[0]}" handshakes)
wait "$SEND_PID"
rc=$?
recv_wait "$T/rs.out" 60000000
# The bound: the silence is noticed KEEPALIVE + REKEY_TIMEOUT after the
# worker's first unanswered send, and one REKEY_TIMEOUT (with up to 1/3 s of
# jitter) is what one handshake may take; 2 s for wireguard-go's start.
bound=$(((KEEPALIVE_MS + 3 * REKEY_TIMEOUT_MS + 2000) * TIME_SCALE))
hs_ms=$((${t_hs:-$((t_up + limit))} - t_up))
mv_ms=$((${t_move:-$((t_up + limit))} - t_up))
echo "# wireguard-go back up: handshake after $hs_ms ms, stream moving after $mv_ms ms"
# Without the cap (an older kernel), TCP's backoff may double the wait.
mv_bound=$bound
[[ $RTO_CAPPED == 1 ]] || mv_bound=$((2 * bound))
check "restart: a new handshake within ${bound} ms of wireguard-go's return ($hs_ms ms)" \
	test -n "$t_hs" -a "$hs_ms" -le "$bound"
check "restart: the stream moved again within ${mv_bound} ms ($mv_ms ms)" \
	test -n "$t_move" -a "$mv_ms" -le "$mv_bound"
check "restart: the worker needed one to three handshakes for it ($hs0 -> $hs1)" \
	test "${hs1:-0}" -ge $((${hs0:-0} + 1)) -a "${hs1:-0}" -le $((${hs0:-0} + 3))
check "restart: the sender finished (exit $rc)" test "$rc" -eq 0
check "restart: 60 MB arrived whole (SHA-256 matches)" same_sha "$T/rs.in" "$T/rs.out"

# --- 6. a key control does not know --------------------------------------------------------
WPID=$(pod_stat "${POD_UID[0]}" worker_pid)
wgo_stop
cp "$T/wgo.key" "$T/wgo.key.right"
RIGHT_PUB=$WGO_PUB RIGHT_PUB_HEX=$WGO_PUB_HEX
wgo_keys || tscni_finish # a new $T/wgo.key; control still has the old key
wgo_mark
wgo_start || tscni_finish
wgo_peer_pod 0 || tscni_finish
hs0=$(pod_stat "${POD_UID[0]}" handshakes)
check "wrong key: the pod's pings to wireguard-go go unanswered" no_ping "$P" "$WGO4"
check "wrong key: wireguard-go's pings to the pod go unanswered" no_ping "$WGO_NS" "${POD4[0]}"
hs1=$(pod_stat "${POD_UID[0]}" handshakes)
check "wrong key: no handshake completed on the worker ($hs0 -> $hs1)" \
	test -n "$hs0" -a "$hs1" == "$hs0"
check "wrong key: no handshake completed on wireguard-go" test "$(wgo_last_handshake)" == 0
# Both sides did try: wireguard-go sent initiations (which the worker
# dropped: the static key is not its peer's) and refused the worker's (their
# MAC1 is keyed with the public key control knows, not this one).
REFUSED='Received packet with invalid mac1|Received invalid initiation message'
check "wrong key: wireguard-go tried to initiate" wgo_log_has 'Sending handshake initiation'
for ((k = 0; k < 50; k++)); do
	wgo_log_has "$REFUSED" && break
	sleep 0.1
done
check "wrong key: the worker's initiations reached wireguard-go and were refused" \
	wgo_log_has "$REFUSED"
check "wrong key: wireguard-go never got a handshake response" \
	wgo_log_lacks 'Received handshake response'
check "wrong key: the worker still runs (pid $WPID)" kill -0 "$WPID"
check "wrong key: the same worker serves the pod" \
	test "$(pod_stat "${POD_UID[0]}" worker_pid)" == "$WPID"
check "wrong key: wireguard-go still runs" kill -0 "$WGO_PID"
wgo_stop
cp "$T/wgo.key.right" "$T/wgo.key"
WGO_PUB=$RIGHT_PUB WGO_PUB_HEX=$RIGHT_PUB_HEX
wgo_start || tscni_finish
wgo_peer_pod 0 || tscni_finish
check "right key again: the pod pings wireguard-go" ping_until "$P" "$WGO4"
check "right key again: wireguard-go pings the pod over IPv6" ping3 "$WGO_NS" "${POD6[0]}"

# --- 7. pod<->pod through the same path ------------------------------------------------------
pod_add 1 || tscni_finish
Q=${POD_NS[1]}
check "pod 0 pings pod 1 at ${POD4[1]}" ping_until "$P" "${POD4[1]}"
check "pod 0 -> pod 1 ${POD6[1]}: 3 of 3" ping3 "$P" "${POD6[1]}"
check "pod 1 -> pod 0 ${POD4[0]}: 3 of 3" ping3 "$Q" "${POD4[0]}"
check "pod 1 -> pod 0 ${POD6[0]}: 3 of 3" ping3 "$Q" "${POD6[0]}"
check "pod 0 still pings wireguard-go" ping3 "$P" "$WGO4"
SIZE=$((32 * 1024 * 1024))
head -c "$SIZE" /dev/urandom >"$T/big.in"
transfer "$P" "$Q" "${POD4[1]}" 5005 "32 MiB pod 0 -> pod 1"

pod_del 0
pod_del 1
tscni_finish
