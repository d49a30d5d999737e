#!/bin/bash
# e2e policy: testcontrol's policy allows only tag:web -> the pod's port 80
# (the filter end to end). The pod (tag:pod) is the destination;
# two external peers, Debian's wireguard-go in namespaces of their own, are
# the sources: W carries tag:web, W2 carries tag:other.
#
#   netns W  (tag:web)   10.202.0.2 ──veth── 10.202.0.1 ┐
#                                                       ├ netns NODE: testcontrol,
#   netns W2 (tag:other) 10.203.0.2 ──veth── 10.203.0.1 ┘ supervisor, the pod's
#                                                         worker (UDP socket)
#   pod netns: ts0, listeners on TCP 80 (keeps what arrives) and 22
#
#   1. [{"src": ["tag:web"], "dst": ["tag:pod:80"]}]: W opens TCP 80 (v4 and
#      v6), not 22; W2 (tunnel up: the pod pings it) cannot open 80; UDP from
#      W reaches the pod's stack on port 80 (default protocols) but not on
#      7002; filter_drops rises.
#   2. The pod's own outbound flows get replies: TCP to W both ways, UDP to W
#      and W's UDP back (iperf3 -u -R: replies through the flow cache), pings
#      to W and W2 answered. Inbound echo requests follow upstream (§5.2 of
#      docs/tailscale-protocol.md): accepted when a rule allows src -> dst by IP
#      alone, so W's ping is answered and W2's is not.
#   3. With a slow TCP stream from W to the pod's port 80 running: a policy
#      also allowing 22 takes effect within 2 s, the original one again
#      within 2 s (measured: connect attempts every 100 ms).
#   4. A policy whose rule selects no source (tag:nobody: testcontrol drops
#      the rule, the pod gets an empty filter = deny all new inbound): W
#      cannot open 80 within 2 s, W's ping goes unanswered; the pod's
#      outbound still gets replies and the stream of 3, an established flow,
#      keeps flowing (TCP non-SYN passes) and arrives whole (SHA-256).
# Everything runs inside network namespaces this test creates.
source "$(dirname "$0")/../lib/common.sh"

tscni_init policy
source "$(dirname "$0")/../lib/tailnet.sh"
[[ -x $TC ]] || {
	echo "testcontrol missing: build first" >&2
	exit 1
}

POLICY_WEB80='[{"src": ["tag:web"], "dst": ["tag:pod:80"]}]'
POLICY_WEB80_22='[{"src": ["tag:web"], "dst": ["tag:pod:22", "tag:pod:80"]}]'
POLICY_NOBODY='[{"src": ["tag:nobody"], "dst": ["tag:pod:80"]}]'

# policy_post DESC JSON: POST /policy and check testcontrol's answer (the
# rules it keeps, as given).
policy_post()
{
	local out

	out=$(tc_post /policy "$2")
	check "$1: testcontrol takes the policy (${out:0:200})" \
		jqe --argjson p "$2" '.acls == $p' <<<"$out" >/dev/null
}

# tcp_open NS ADDR PORT SECS: a TCP connection from netns NS opens within SECS.
tcp_open()
{
	ip netns exec "$1" timeout "$4" bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$2" "$3" 2>/dev/null
}

# opens NS ADDR PORT: within 3 s. refused NS ADDR PORT: not within 2 s (a
# dropped SYN is retransmitted after 1 s: two SYNs went unanswered).
opens()
{
	tcp_open "$1" "$2" "$3" 3
}

refused()
{
	! tcp_open "$1" "$2" "$3" 2
}

# opens_until NS ADDR PORT: up to 20 s of tries (the first packets wait for
# the netmap and the WireGuard handshake).
opens_until()
{
	local end=$(($(now_ms) + 20000 * TIME_SCALE))

	while (($(now_ms) < end)); do
		tcp_open "$1" "$2" "$3" 2 && return 0
		sleep 0.2
	done
	return 1
}

# ping_until NS DST: up to 20 one-second tries.
ping_until()
{
	local k

	for ((k = 0; k < 20 * TIME_SCALE; k++)); do
		ip netns exec "$1" busybox ping -c 1 -W 1 "$2" >/dev/null 2>&1 && return 0
	done
	return 1
}

# no_echo NS DST: three echo requests, none answered.
no_echo()
{
	! ip netns exec "$1" busybox ping -c 3 -W 1 "$2" >/dev/null 2>&1
}

# snmp NS PROTO FIELD: a counter of /proc/net/snmp in netns NS (Udp NoPorts).
snmp()
{
	ip netns exec "$1" awk -v p="$2:" -v f="$3" '$1 == p {
		if (!n++) { for (i = 2; i <= NF; i++) h[i] = $i } else { for (i = 2; i <= NF; i++) if (h[i] == f) print $i } }' \
		/proc/net/snmp
}

# udp_send NS ADDR PORT: three datagrams from netns NS.
udp_send()
{
	local k

	for k in 1 2 3; do
		ip netns exec "$1" bash -c 'echo "datagram $2" >"/dev/udp/$0/$1"' "$2" "$3" "$k"
	done
}

# filter_drops: the pod's worker's filter_drops counter (status --json), read
# until two readings agree (the worker's Stats arrive after STATUS asks).
filter_drops()
{
	local a b k

	a=$(pod_stat "${POD_UID[0]}" filter_drops)
	for ((k = 0; k < 10; k++)); do
		b=$(pod_stat "${POD_UID[0]}" filter_drops)
		[[ $a == "$b" ]] && break
		a=$b
	done
	echo "$a"
}

# probe_series WANT NS ADDR PORT T0: starts a TCP connect from NS to ADDR:PORT
# every 100 ms, each in the background with a 0.9 s timeout (below the 1 s SYN
# retransmission: one SYN per attempt), until three attempts had the outcome
# WANT (ok or no) or 10 s pass. Sets DELAY to the ms from T0 to the start of
# the first attempt from which on every attempt had outcome WANT (-1 if the
# last one did not), PROBES to how many attempts ran and UNANSWERED to how
# many did not connect (each sent one SYN).
probe_series()
{
	local want=$1 ns=$2 addr=$3 port=$4 t0=$5 f k s
	local end=$(($(now_ms) + 10000 * TIME_SCALE))
	local -a pids=()

	f=$(mktemp "$T/probes.XXXXXX")
	while (($(now_ms) < end)); do
		(
			s=$(now_ms)
			if tcp_open "$ns" "$addr" "$port" 0.9; then
				echo "$s ok" >>"$f"
			else
				echo "$s no" >>"$f"
			fi
		) &
		pids+=("$!")
		sleep 0.1
		[[ $(grep -c " $want\$" "$f") -ge 3 ]] && break
	done
	for k in "${pids[@]}"; do
		wait "$k"
	done
	PROBES=${#pids[@]}
	UNANSWERED=$(grep -c ' no$' "$f")
	DELAY=$(sort -n "$f" | awk -v w="$want" -v t0="$t0" '
		$2 == w { if (first == "") first = $1 } $2 != w { first = "" }
		END { print (first == "" ? -1 : first - t0) }')
	echo "# probes to $addr:$port (start ms since the POST, outcome):" \
		"$(sort -n "$f" | awk -v t0="$t0" '{ printf "%s%d=%s", (NR > 1 ? " " : ""), $1 - t0, $2 }')"
}

# --- set-up ----------------------------------------------------------------

node_ns_new || tscni_finish
wgo_ns_new || tscni_finish
wgo_ns_new 1 || tscni_finish  # W2: a second wireguard-go, tag:other
tc_start || tscni_finish
# The policy is in place before the pod joins: its first netmap carries it.
policy_post "tag:web -> tag:pod:80" "$POLICY_WEB80"
tc_authkey '{"reusable": true, "ephemeral": true, "tags": ["tag:pod"]}' || tscni_finish
sup_start_tailnet || tscni_finish
pod_add 0 || tscni_finish
P=${POD_NS[0]}
wgo_keys || tscni_finish
wgo_register '["tag:web"]' || tscni_finish
wgo_start || tscni_finish
wgo_peer_pod 0 || tscni_finish
wgo_keys 1 || tscni_finish
wgo_register '["tag:other"]' 1 || tscni_finish
wgo_start 1 || tscni_finish
check "W2 has the pod as its peer" wgo_peer_pod 0 1
echo "# pod ${POD4[0]} ${POD6[0]}; W (tag:web) $WGO4 $WGO6; W2 (tag:other) ${WGO4[1]} ${WGO6[1]}"

# Handlers for busybox nc -e: the pod's port 80 keeps each connection's bytes
# in a file of its own; W's port 7000 answers one line with "echo:<line>".
cat >"$T/keep80.sh" <<EOF
#!/bin/sh
exec cat >"\$(mktemp "$T/p80.XXXXXX")"
EOF
cat >"$T/echo.sh" <<'EOF'
#!/bin/sh
read -r l && printf 'echo:%s\n' "$l"
EOF
chmod 0700 "$T/keep80.sh" "$T/echo.sh"

# listen NS PORT PROG: a persistent busybox nc listener in NS (its pid in
# CLEAN_PIDS), listening when this returns.
listen()
{
	local k

	ip netns exec "$1" busybox nc -ll -p "$2" -e "$3" </dev/null >/dev/null 2>&1 &
	CLEAN_PIDS+=("$!")
	for ((k = 0; k < 50; k++)); do
		ip netns exec "$1" ss -Htln "sport = :$2" | grep -q . && return 0
		sleep 0.05
	done
	return 1
}
check "the pod listens on TCP 80" listen "$P" 80 "$T/keep80.sh"
check "the pod listens on TCP 22" listen "$P" 22 /bin/true
check "W listens on TCP 7000" listen "$WGO_NS" 7000 "$T/echo.sh"

# --- 1. only tag:web -> pod:80 -----------------------------------------------
check "W (tag:web) opens TCP ${POD4[0]}:80" opens_until "$WGO_NS" "${POD4[0]}" 80
check "W opens TCP [${POD6[0]}]:80" opens "$WGO_NS" "${POD6[0]}" 80
drops0=$(filter_drops)
check "W cannot open TCP ${POD4[0]}:22" refused "$WGO_NS" "${POD4[0]}" 22
check "W cannot open TCP [${POD6[0]}]:22" refused "$WGO_NS" "${POD6[0]}" 22
check "the tunnel to W2 works: the pod pings W2 at ${WGO4[1]}" ping_until "$P" "${WGO4[1]}"
check "W2 (tag:other) cannot open TCP ${POD4[0]}:80" refused "${WGO_NS[1]}" "${POD4[0]}" 80
check "W2 cannot open TCP [${POD6[0]}]:80" refused "${WGO_NS[1]}" "${POD6[0]}" 80
# UDP from W: port 80 is allowed (the rule names no protocol: TCP, UDP and
# ICMP), 7002 is not. The pod has no UDP socket on either: a datagram that
# reaches its stack counts in Udp NoPorts.
n0=$(snmp "$P" Udp NoPorts)
udp_send "$WGO_NS" "${POD4[0]}" 7002
sleep 0.5
n1=$(snmp "$P" Udp NoPorts)
check "UDP from W to the pod's port 7002 is dropped (Udp NoPorts $n0 -> $n1)" \
	test "$n1" -eq "$n0"
udp_send "$WGO_NS" "${POD4[0]}" 80
sleep 0.5
n2=$(snmp "$P" Udp NoPorts)
check "UDP from W to the pod's port 80 reaches the pod (Udp NoPorts $n1 -> $n2)" \
	test "$n2" -ge $((n1 + 3))
drops1=$(filter_drops)
check "filter_drops rose ($drops0 -> $drops1)" test "${drops1:-0}" -gt "${drops0:-0}"

# --- 2. the pod's own outbound flows get replies ----------------------------
got=$(ip netns exec "$P" timeout 5 bash -c 'exec 3<>"/dev/tcp/$0/7000" &&
	echo "hello-$1" >&3 && read -r l <&3 && echo "$l"' "$WGO4" "$$" 2>/dev/null)
check "the pod's TCP to W:7000 goes both ways (got '$got')" test "$got" == "echo:hello-$$"
got=$(ip netns exec "$P" timeout 5 bash -c 'exec 3<>"/dev/tcp/$0/7000" &&
	echo "hello6-$1" >&3 && read -r l <&3 && echo "$l"' "$WGO6" "$$" 2>/dev/null)
check "the pod's TCP to [W]:7000 goes both ways (got '$got')" test "$got" == "echo:hello6-$$"
check "the pod pings W at $WGO4" ping_until "$P" "$WGO4"
check "the pod pings W at $WGO6" ping_until "$P" "$WGO6"
# UDP: iperf3 -u -R, W's datagrams back to the pod pass by the flow cache
# (the pod's own datagram to W opened the flow).
ip netns exec "$WGO_NS" iperf3 -s -1 -p 7001 >"$T/iperf-s.log" 2>&1 </dev/null &
IPERF_PID=$!
CLEAN_PIDS+=("$IPERF_PID")
for ((k = 0; k < 50; k++)); do
	ip netns exec "$WGO_NS" ss -Htln "sport = :7001" | grep -q . && break
	sleep 0.05
done
ip netns exec "$P" timeout $((20 * TIME_SCALE)) iperf3 -c "$WGO4" -p 7001 -u -R -b 2M -t 1 \
	-l 1000 -J >"$T/iperf-c.json" 2>&1 </dev/null
udp_got=$(jq -r '(.end.sum.packets // 0) - (.end.sum.lost_packets // 0)' "$T/iperf-c.json" 2>/dev/null)
check "UDP from W back to the pod (iperf3 -u -R): ${udp_got:-none} datagrams received" \
	test "${udp_got:-0}" -gt 100
wait "$IPERF_PID" 2>/dev/null
# Echo requests in: upstream accepts them when a rule allows src -> dst by IP
# alone (ports ignored): W is a source of the rule, W2 is not.
check "W's ping to the pod is answered (W is a source of a rule to it)" \
	ping_until "$WGO_NS" "${POD4[0]}"
check "W2's pings to the pod are not answered (no rule from W2)" no_echo "${WGO_NS[1]}" "${POD4[0]}"
check "W2's pings to the pod's IPv6 are not answered" no_echo "${WGO_NS[1]}" "${POD6[0]}"

# --- 3. a policy change within 2 s, the allowed stream keeps flowing --------
# A slow producer in W: 4 KiB every 100 ms to the pod's port 80 until
# $T/stream.stop exists; it keeps a copy of what it sent.
: >"$T/stream.sent"
ip netns exec "$WGO_NS" bash -c '
	exec 3<>"/dev/tcp/$0/80" || exit 1
	while [[ ! -e $1/stream.stop ]]; do
		head -c 4096 /dev/urandom >"$1/chunk" || exit 3
		cat "$1/chunk" >&3 || exit 2
		cat "$1/chunk" >>"$1/stream.sent"
		sleep 0.1
	done
	exec 3>&-' "${POD4[0]}" "$T" 2>"$T/stream.err" &
STREAM_PID=$!
CLEAN_PIDS+=("$STREAM_PID")
# stream_file: the pod's p80 file with the most bytes (the stream's).
stream_file()
{
	ls -S "$T"/p80.* 2>/dev/null | head -n 1
}
for ((k = 0; k < 100; k++)); do
	f=$(stream_file)
	[[ -n $f && $(stat -c %s "$f") -ge 8192 ]] && break
	sleep 0.1
done
check "the stream from W to the pod's port 80 flows ($(stat -c %s "$(stream_file)" 2>/dev/null) bytes so far)" \
	test "$(stat -c %s "$(stream_file)" 2>/dev/null || echo 0)" -ge 8192

drops_a=$(filter_drops)
t0=$(now_ms)
policy_post "also tag:pod:22" "$POLICY_WEB80_22"
probe_series ok "$WGO_NS" "${POD4[0]}" 22 "$t0"
syns=$UNANSWERED
echo "# allowing 22 took effect after $DELAY ms ($PROBES attempts)"
check "allowing 22 takes effect within $((2000 * TIME_SCALE)) ms ($DELAY ms)" \
	test "$DELAY" -ge 0 -a "$DELAY" -le $((2000 * TIME_SCALE))
check "with 22 allowed: W opens TCP [${POD6[0]}]:22" opens "$WGO_NS" "${POD6[0]}" 22
check "with 22 allowed: W2 still cannot open TCP ${POD4[0]}:22" refused "${WGO_NS[1]}" "${POD4[0]}" 22

t0=$(now_ms)
policy_post "back to tag:pod:80 only" "$POLICY_WEB80"
probe_series no "$WGO_NS" "${POD4[0]}" 22 "$t0"
syns=$((syns + UNANSWERED))
echo "# refusing 22 again took effect after $DELAY ms ($PROBES attempts)"
check "refusing 22 again takes effect within $((2000 * TIME_SCALE)) ms ($DELAY ms)" \
	test "$DELAY" -ge 0 -a "$DELAY" -le $((2000 * TIME_SCALE))
check "W cannot open TCP [${POD6[0]}]:22 again" refused "$WGO_NS" "${POD6[0]}" 22
check "W still opens TCP ${POD4[0]}:80" opens "$WGO_NS" "${POD4[0]}" 80
check "the stream is still running through both changes" kill -0 "$STREAM_PID"
# What the filter dropped meanwhile: the unanswered SYNs to 22 (one per probe,
# two per `refused`: W over IPv6 and W2), none of the stream's packets.
syns=$((syns + 4))
drops_b=$(filter_drops)
check "the filter dropped only the refused SYNs meanwhile ($((drops_b - drops_a)) drops, <= $syns SYNs)" \
	test $((drops_b - drops_a)) -le "$syns" -a $((drops_b - drops_a)) -gt 0

# --- 4. deny all: the rule selects no source --------------------------------
t0=$(now_ms)
policy_post "tag:nobody -> tag:pod:80" "$POLICY_NOBODY"
probe_series no "$WGO_NS" "${POD4[0]}" 80 "$t0"
echo "# deny-all took effect after $DELAY ms ($PROBES attempts)"
check "deny-all takes effect within $((2000 * TIME_SCALE)) ms ($DELAY ms)" \
	test "$DELAY" -ge 0 -a "$DELAY" -le $((2000 * TIME_SCALE))
check "deny-all: W cannot open TCP [${POD6[0]}]:80" refused "$WGO_NS" "${POD6[0]}" 80
check "deny-all: W's pings to the pod are not answered" no_echo "$WGO_NS" "${POD4[0]}"
check "deny-all: the pod still pings W (echo replies pass)" ping_until "$P" "$WGO4"
got=$(ip netns exec "$P" timeout 5 bash -c 'exec 3<>"/dev/tcp/$0/7000" &&
	echo "deny-$1" >&3 && read -r l <&3 && echo "$l"' "$WGO4" "$$" 2>/dev/null)
check "deny-all: the pod's TCP to W:7000 still goes both ways (got '$got')" \
	test "$got" == "echo:deny-$$"

# The stream, established before all three changes, ends now: it must
# arrive whole.
sent0=$(stat -c %s "$T/stream.sent")
sleep 0.5
sent1=$(stat -c %s "$T/stream.sent")
check "deny-all: the established stream keeps flowing ($sent0 -> $sent1 bytes sent)" \
	test "$sent1" -gt "$sent0"
# The sender's TCP state, for the log: retransmissions (retrans:now/total; a
# spurious one, e.g. a tail-loss probe, comes back as a D-SACK: dsack_dups).
ip netns exec "$WGO_NS" ss -tinH state established "( dport = :80 )" >"$T/stream.ss"
echo "# W's stream socket:$(tr -s ' \t\n' ' ' <"$T/stream.ss" |
	grep -oE ' (rtt|retrans|bytes_retrans|lost|dsack_dups|data_segs_out):[^ ]*' | tr -d '\n')"
touch "$T/stream.stop"
wait "$STREAM_PID"
rc=$?
check "the stream's producer ended cleanly (exit $rc$([[ -s $T/stream.err ]] && echo ", $(head -c 200 "$T/stream.err")"))" \
	test "$rc" -eq 0
want=$(stat -c %s "$T/stream.sent")
for ((k = 0; k < 50; k++)); do
	[[ $(stat -c %s "$(stream_file)" 2>/dev/null) -ge $want ]] && break
	sleep 0.1
done
got=$(stat -c %s "$(stream_file)" 2>/dev/null || echo 0)
echo "# the stream carried $want bytes through three policy changes"
check "the pod received the whole stream ($got of $want bytes)" test "$got" -eq "$want"
check "the stream's SHA-256 matches" \
	test "$(sha256sum <"$T/stream.sent")" == "$(sha256sum <"$(stream_file)")"

pod_del 0
tscni_finish
