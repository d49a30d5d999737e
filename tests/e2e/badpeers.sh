#!/bin/bash
# e2e bad peers: a pod's worker, under the production seccomp filter, facing
# disco packets it cannot open or that come from no peer, STUN answers to no
# request of its own or that do not parse, and a DERP server that sends a
# 2 GiB frame header (testcontrol's derp_garbage switch), drops each of them,
# counts it by kind in `status --json`, logs one line per kind per 10 s and
# goes on: same worker pid, and the pods still reach each other afterwards.
#
#   netns X   10.209.0.2 ── veth ── 10.209.0.1  netns NODE: testcontrol
#   (bash /dev/udp: the                         (control, DERP region 900 on
#   crafted datagrams)                          127.0.0.1), the supervisor,
#                                               pods A and B's workers
#
# nftables in NODE drops every UDP datagram but those from X, so the pods
# talk through DERP (where derp_garbage can reach them) and nothing but the
# crafted datagrams (no STUN answer either) reaches the workers' sockets:
# every drop counted is one the test sent.
source "$(dirname "$0")/../lib/common.sh"

tscni_init "badpeers"
source "$(dirname "$0")/../lib/tailnet.sh"
[[ -x $TC ]] || {
	echo "testcontrol missing: build first" >&2
	exit 1
}

X_ADDR=10.209.0.2
NODE_X_ADDR=10.209.0.1
LOG_WINDOW_S=10 # the worker's rate limit: one line per kind per 10 s

node_ns_new || tscni_finish
ns_new x || tscni_finish
X_NS=$NS_NAME
ip link add "bx$$" netns "$NODE_NS" type veth peer name eth0 netns "$X_NS" || tscni_finish
ip -n "$NODE_NS" addr add "$NODE_X_ADDR/24" dev "bx$$"
ip -n "$NODE_NS" link set "bx$$" up
ip -n "$X_NS" addr add "$X_ADDR/24" dev eth0
ip -n "$X_NS" link set eth0 up
ip netns exec "$NODE_NS" nft -f - <<NFT
table inet tscni_block {
	chain in {
		type filter hook input priority 0;
		meta nfproto ipv6 meta l4proto udp drop;
		meta nfproto ipv4 meta l4proto udp ip saddr != $X_ADDR drop;
	}
}
NFT
check "UDP into the node netns is dropped unless it comes from netns X (nftables)" \
	ip netns exec "$NODE_NS" nft list table inet tscni_block

tc_start --derp 127.0.0.1:0 || tscni_finish
tailnet_two_pods || tscni_finish
check "ICMP through DERP: pod A -> pod B" ns_ping_until "$A" "${POD4[1]}"
check "ICMP through DERP: pod B -> pod A" ns_ping_until "$B" "${POD4[0]}"

# node_of ADDR4: pod's node in testcontrol's /nodes.
node_of()
{
	tc_get /nodes | jq -c --arg a "$1" '[.[] | select(.addresses | index($a + "/32"))][0]'
}
# A's UDP port (its socket is [::]:port, every endpoint it announced has it)
# and B's disco key, which A knows from the netmap.
for ((k = 0; k < 50; k++)); do
	A_PORT=$(node_of "${POD4[0]}" | jq -r '.endpoints[0] // "" | sub(".*:"; "")')
	B_DISCO=$(node_of "${POD4[1]}" | jq -r '.disco_key // "" | sub("discokey:"; "")')
	[[ -n $A_PORT && ${#B_DISCO} -eq 64 ]] && break
	sleep 0.1
done
check "pod A announced a UDP endpoint (port $A_PORT) and pod B a disco key" \
	test -n "$A_PORT" -a "${#B_DISCO}" -eq 64

A_UID=${POD_UID[0]}
A_PID=$(pod_stat "$A_UID" worker_pid)
B_PID=$(pod_stat "${POD_UID[1]}" worker_pid)
A_RESPAWNS=$(pod_stat "$A_UID" worker_respawns)

# stats UID: the bad-peer counters of pod UID, one line.
stats()
{
	pod_stat "$1" drops >/dev/null
	sup_status_json | jq -c --arg u "$1" '[.pods[] | select(.pod_uid == $u)][0] |
		{disco_unknown_sender, disco_bad_box, stun_bad_txid, stun_malformed,
		 derp_bad_frames}'
}
# delta BEFORE AFTER FIELD: how much FIELD rose.
delta()
{
	echo $(($(jq -r ".$3" <<<"$2") - $(jq -r ".$3" <<<"$1")))
}
# lines_of UID TEXT: the supervisor's log lines of UID's worker with TEXT.
lines_of()
{
	grep -F "pod $1 pid " "$T/sup.log" | grep -cF "$2"
}
# send HEX: one datagram from netns X to pod A's UDP socket. The bytes go to
# a file first: bash's printf flushes its output at some bytes (a newline
# among them), which on a UDP socket would split the datagram; dd then
# reads the whole file and writes it with one write(2).
send()
{
	printf "$(sed 's/../\\x&/g' <<<"$1")" >"$T/dgram"
	# shellcheck disable=SC2016 # expanded by the inner bash
	ip netns exec "$X_NS" bash -c 'exec 3>"/dev/udp/$1/$2" && dd if="$3" bs=65536 status=none >&3' \
		_ "$NODE_X_ADDR" "$A_PORT" "$T/dgram"
}
# rnd N: N random bytes in hex.
rnd()
{
	head -c "$1" /dev/urandom | od -An -tx1 -v | tr -d ' \n'
}
DISCO_MAGIC=5453f09f92ac # "TS💬"
STUN_COOKIE=2112a442

before=$(stats "$A_UID")
echo "# pod A before: $before"

# --- disco and STUN from netns X ------------------------------------------------
# A sealed box from B's disco key that is noise: it cannot open. 3 of them.
for _ in 1 2 3; do
	send "$DISCO_MAGIC$B_DISCO$(rnd 24)$(rnd 48)"
done
# From a disco key no peer has: 2.
for _ in 1 2; do
	send "$DISCO_MAGIC$(rnd 32)$(rnd 24)$(rnd 48)"
done
# A well-formed binding success (0x0101, 12 bytes of XOR-MAPPED-ADDRESS 10.0.0.1:4660) for a
# transaction A never started: 4.
for _ in 1 2 3 4; do
	send "0101000c$STUN_COOKIE$(rnd 12)00200008000133262b12a443"
done
# Malformed: the attribute's value runs past the declared length: 2.
for _ in 1 2; do
	send "01010004$STUN_COOKIE$(rnd 12)0020000800013326"
done

for ((k = 0; k < 50; k++)); do
	after=$(stats "$A_UID")
	[[ $(delta "$before" "$after" stun_malformed) -ge 2 &&
		$(delta "$before" "$after" disco_unknown_sender) -ge 2 ]] && break
	sleep 0.1
done
echo "# pod A after the datagrams: $after"
check "disco with a box that does not open: counted 3" \
	test "$(delta "$before" "$after" disco_bad_box)" -eq 3
check "disco from an unknown disco key: counted 2" \
	test "$(delta "$before" "$after" disco_unknown_sender)" -eq 2
check "STUN for another transaction: counted 4" \
	test "$(delta "$before" "$after" stun_bad_txid)" -eq 4
check "malformed STUN: counted 2" \
	test "$(delta "$before" "$after" stun_malformed)" -eq 2
check "no DERP bad frame yet" test "$(delta "$before" "$after" derp_bad_frames)" -eq 0

sleep 0.5 # the log lines travel worker -> supervisor -> file
for what in "disco whose box does not open" "disco from an unknown disco key" \
	"STUN for another transaction" "malformed STUN"; do
	check "one log line for '$what' within the window ($(lines_of "$A_UID" "$what"))" \
		test "$(lines_of "$A_UID" "$what")" -eq 1
done
check "the line names where the latest came from (netns X's address)" \
	grep -qF "the latest from $X_ADDR:" "$T/sup.log"
check "the first line counts 1 dropped" \
	grep -qF "dropped 1 disco whose box does not open" "$T/sup.log"
check "no key in the log lines (B's disco key)" bash -c "! grep -qi '$B_DISCO' '$T/sup.log'"

# --- DERP: bad frames -------------------------------------------------------------
# derp_phase SWITCH: SWITCH on until pod A's worker has closed a DERP
# connection on a bad frame (B's ICMP is what the server relays to A), then
# off; afterwards the pods reach each other again both ways.
derp_phase()
{
	local sw=$1 k s0 s n

	s0=$(stats "$A_UID")
	check "the DERP server turns bad ($sw on)" \
		jqq ".$sw == true" <<<"$(tc_post /switches "{\"$sw\": true}")"
	for ((k = 0; k < 30; k++)); do
		ip netns exec "$B" busybox ping -c 1 -W 1 "${POD4[0]}" >/dev/null 2>&1
		s=$(stats "$A_UID")
		[[ $(delta "$s0" "$s" derp_bad_frames) -ge 1 ]] && break
	done
	tc_post /switches "{\"$sw\": false}" >/dev/null
	n=$(delta "$s0" "$s" derp_bad_frames)
	check "$sw: pod A's worker closed DERP connections on bad frames ($n)" test "$n" -ge 1
	check "$sw over: ICMP through DERP: pod B -> pod A" ns_ping_until "$B" "${POD4[0]}"
	check "$sw over: ICMP through DERP: pod A -> pod B" ns_ping_until "$A" "${POD4[1]}"
}
A_CONNECTS=$(lines_of "$A_UID" "DERP region 900 connected")

# A ServerInfo frame of junk where a RecvPacket belongs: a box that does not
# open.
t_junk=$(date +%s)
derp_phase derp_junk
check "one log line for the DERP bad frames ($(lines_of "$A_UID" "on a bad frame"))" \
	test "$(lines_of "$A_UID" "on a bad frame")" -eq 1
check "the DERP line names the region and the reason" \
	grep -qF "the latest to region 900: ServerInfo box does not open" "$T/sup.log"

# --- the next window ---------------------------------------------------------------
# A line a window later counts what the window swallowed.
left=$((t_junk + LOG_WINDOW_S + 1 - $(date +%s)))
((left > 0)) && sleep "$left"
send "$DISCO_MAGIC$B_DISCO$(rnd 24)$(rnd 48)"
sleep 0.5
check "a window later, one more line: 2 swallowed + 1 ($(lines_of "$A_UID" "disco whose box does not open"))" \
	grep -qF "dropped 3 disco whose box does not open" "$T/sup.log"

# A 2 GiB frame header (and the packet after it) where a RecvPacket belongs.
derp_phase derp_garbage
check "a second DERP line, the window over ($(lines_of "$A_UID" "on a bad frame"))" \
	test "$(lines_of "$A_UID" "on a bad frame")" -eq 2
check "it names the oversized frame" \
	grep -qF "the latest to region 900: DERP frame longer than allowed" "$T/sup.log"

end=$(stats "$A_UID")
echo "# pod A at the end: $end"
bad=$(delta "$before" "$end" derp_bad_frames)
reconnects=$(($(lines_of "$A_UID" "DERP region 900 connected") - A_CONNECTS))
check "every DERP connection closed on a bad frame was redialled ($bad closed, $reconnects connected)" \
	test "$bad" -ge 2 -a "$bad" -eq "$reconnects"
check "the disco and STUN counters moved only by the one datagram sent since" \
	test "$(jq -c 'del(.derp_bad_frames) | .disco_bad_box -= 1' <<<"$end")" == \
	"$(jq -c 'del(.derp_bad_frames)' <<<"$after")"

check "pod A's worker is the same process ($A_PID)" \
	test "$(pod_stat "$A_UID" worker_pid)" == "$A_PID" -a \
	"$(pod_stat "$A_UID" worker_respawns)" == "$A_RESPAWNS"
check "pod B's worker is the same process ($B_PID)" \
	test "$(pod_stat "${POD_UID[1]}" worker_pid)" == "$B_PID"
check "no worker died by a signal (seccomp or crash)" \
	bash -c "! grep -E 'killed by signal|SIGSYS|seccomp trapped' '$T/sup.log'"

echo "# the bad-peer lines:"
grep -E 'dropped [0-9]+ |on a bad frame' "$T/sup.log" | sed 's/^/#   /'

pod_del 0
pod_del 1
tscni_finish
