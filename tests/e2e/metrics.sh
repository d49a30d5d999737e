#!/bin/bash
# e2e metrics and health: the supervisor's --metrics-listen port
# (supervisor/metrics.h, supervisor/http_serve.h).
#
#   netns NODE ─────────────────────────────────────────────────────────┐
#   │ lo 127.0.0.1: testcontrol (https, admin)                          │
#   │               supervisor --metrics-listen 127.0.0.1:$PORT ◄─ curl │
#   │ nic0 10.201.0.1 (the workers' endpoints)                          │
#   └── workers ── ts0 in pod netns p0, p1 (ping each other) ───────────┘
#
# 1. /healthz is 200 "ok"; /metrics is Prometheus text 0.0.4 with HELP and
#    TYPE for every family named in docs/design.md §2 (metrics).
# 2. two pods ADDed: pods{state="ready"} 2, ADD counted with its histogram,
#    control connected, peers on a direct path, a recent handshake; their
#    TUN packets and bytes move when they ping each other over ts0.
# 3. bad requests (a 5000-byte header, TLS bytes, POST, an unknown path)
#    get 431, 400, 405, 404, and the supervisor keeps serving; HEAD works.
# 4. 40 idle connections: at most 16 are held, the rest closed at once and
#    counted; the idle ones go after 5 s and /healthz answers again.
# 5. the CNI socket renamed away: /healthz 503 naming it; back: 200.
# 6. every threadpool thread stopped (freeze_threads): /healthz 503 naming
#    the threadpool within 10 s, /metrics still served with
#    threadpool_stuck 1; once the threads go on, 200 again within 3 s.
# 7. DEL of both pods: DEL counted with its histogram, no pod left.
# 8. the zygote killed and unable to start again: /healthz 503 after 10 s,
#    200 once it runs again.
source "$(dirname "$0")/../lib/common.sh"

tscni_init "metrics"
source "$(dirname "$0")/../lib/tailnet.sh"
[[ -x $TC ]] || {
	echo "testcontrol missing: build first" >&2
	exit 1
}
FREEZE=$TSCNI_BUILD_DIR/tests/e2e/freeze_threads

node_ns_new || tscni_finish
# A port nothing listens on in the node's own netns (testcontrol's are
# ephemeral ones, above 32767).
PORT=$((20000 + $$ % 10000))
tc_start || tscni_finish
tc_authkey '{"reusable": true, "ephemeral": true, "tags": ["tag:e2e"]}' || tscni_finish
# No reconciler round during the test: its work queued while the pool's
# threads are frozen (part 6) would stop the loop (see there).
# The worker binary from a copy of our own, which part 8 makes unexecutable.
cp "$TSCNI_BUILD_DIR/worker/tailscale-cni-worker" "$T/worker" || tscni_finish
sup_start_tailnet --metrics-listen "127.0.0.1:$PORT" --reconcile-interval 3600 \
	--worker "$T/worker" || tscni_finish
check "the log names the metrics port" grep -q "metrics and health on http://127.0.0.1:$PORT" \
	"$T/sup.log"

# get PATH [CURL ARGS...]: curl in the node netns; CODE, BODY, CTYPE.
get()
{
	local path=$1
	shift
	CODE=$(ip netns exec "$NODE_NS" curl -sS -m 3 -o "$T/body" -D "$T/headers" \
		-w '%{http_code}' "$@" "http://127.0.0.1:$PORT$path" 2>"$T/curl.err")
	BODY=$(cat "$T/body" 2>/dev/null)
	CTYPE=$(sed -n 's/^[Cc]ontent-[Tt]ype: *\(.*\)\r$/\1/p' "$T/headers" 2>/dev/null)
}

# scrape: /metrics into $T/m (and BODY).
scrape()
{
	get /metrics
	printf '%s\n' "$BODY" >"$T/m"
}

# val SAMPLE: the value of the sample named exactly SAMPLE (name{labels})
# in the last scrape, or nothing.
val()
{
	awk -v s="$1" '$1 == s { print $2; exit }' "$T/m"
}

# pod_val FAMILY POD [EXTRA]: FAMILY{namespace="nsI",pod="web-I"EXTRA}.
pod_val()
{
	val "$1{namespace=\"ns$2\",pod=\"web-$2\"${3:-}}"
}

# wait_val SAMPLE WANT: rescrapes until SAMPLE's value is WANT (10 s at
# most); true when it is.
wait_val()
{
	local k
	for ((k = 0; k < 40; k++)); do
		[[ $(val "$1") == "$2" ]] && return 0
		sleep 0.25
		scrape
	done
	return 1
}

# --- 1. served -------------------------------------------------------------
get /healthz
check "/healthz: 200 ok ($CODE $BODY)" test "$CODE" == 200 -a "$BODY" == ok
scrape
check "/metrics: 200, Content-Type text/plain; version=0.0.4 ($CODE, $CTYPE)" \
	test "$CODE" == 200 -a "${CTYPE%%; charset*}" == "text/plain; version=0.0.4"

# --- 2. two pods, traffic ----------------------------------------------------
for i in 0 1; do
	pod_add "$i" || tscni_finish
	check "pod $i's worker is ready" wait_ready "$i"
done
A=${POD_NS[0]}
check "pod 0 pings pod 1 at ${POD4[1]} over ts0" ns_ping_until "$A" "${POD4[1]}"

FAMILIES="pods attachments jobs_pending cni_requests_total cni_request_duration_seconds
worker_restarts_total worker_adoptions_total control_errors_total zygote_up
zygote_down_seconds zygote_restarts_total threadpool_stuck threadpool_probe_wait_seconds
cni_socket_up ready healthy metrics_connections_refused_total start_time_seconds build_info
pod_tun_bytes_total pod_tun_packets_total pod_udp_packets_total pod_drops_total
pod_handshake_age_seconds pod_peers pod_control_connected pod_worker_respawns_total
metrics_pods_left_off"

# Workers' Stats are asked for every 2 s while the port is served: wait
# until a scrape shows pod 0's ping.
for ((k = 0; k < 40; k++)); do
	scrape
	tx0=$(pod_val tailscale_cni_pod_tun_packets_total 0 ',direction="rx"')
	[[ ${tx0:-0} -gt 0 && -n $(pod_val tailscale_cni_pod_handshake_age_seconds 0) ]] && break
	sleep 0.25
done
missing=""
for f in $FAMILIES; do
	grep -q "^# TYPE tailscale_cni_$f \(gauge\|counter\|histogram\)$" "$T/m" &&
		grep -q "^# HELP tailscale_cni_$f ." "$T/m" || missing+=" $f"
done
check "every family has HELP and TYPE (missing:${missing:- none})" test -z "$missing"
check "every sample line is name{labels} value" \
	bash -c '! grep -vE "^(# (HELP|TYPE) .*|tailscale_cni_[a-z_]+(\{[a-z_]+=\"[^\"]*\"(,[a-z_]+=\"[^\"]*\")*\})? [0-9.+Inf]+)$" "$1"' \
	_ "$T/m"
check "no per-peer label anywhere" bash -c '! grep -qE "(peer|node_key)=" "$1"' _ "$T/m"
check "pods{state=ready} is 2 ($(val 'tailscale_cni_pods{state="ready"}'))" \
	test "$(val 'tailscale_cni_pods{state="ready"}')" == 2
check "attachments{state=ready} is 2" \
	test "$(val 'tailscale_cni_attachments{state="ready"}')" == 2
check "ADD success counted twice" \
	test "$(val 'tailscale_cni_cni_requests_total{verb="ADD",result="success"}')" == 2
check "ADD histogram: count 2, +Inf bucket 2, sum > 0" test \
	"$(val 'tailscale_cni_cni_request_duration_seconds_count{verb="ADD"}')" == 2 -a \
	"$(val 'tailscale_cni_cni_request_duration_seconds_bucket{verb="ADD",le="+Inf"}')" == 2 -a \
	"$(val 'tailscale_cni_cni_request_duration_seconds_sum{verb="ADD"}' | tr -d .0)" != ""
le10=$(val 'tailscale_cni_cni_request_duration_seconds_bucket{verb="ADD",le="10"}')
le005=$(val 'tailscale_cni_cni_request_duration_seconds_bucket{verb="ADD",le="0.005"}')
check "ADD buckets are cumulative (le 0.005: $le005, le 10: $le10)" \
	test "${le005:-9}" -le "${le10:-0}" -a "${le10:-0}" -le 2
for i in 0 1; do
	lab="namespace=\"ns$i\",pod=\"web-$i\""
	check "pod $i: control connected" wait_val "tailscale_cni_pod_control_connected{$lab}" 1
	check "pod $i: one peer, on a direct path" \
		wait_val "tailscale_cni_pod_peers{$lab,path=\"direct\"}" 1
	check "pod $i: no peer without a path" \
		test "$(val "tailscale_cni_pod_peers{$lab,path=\"none\"}")" == 0
done
age=$(pod_val tailscale_cni_pod_handshake_age_seconds 0)
check "pod 0: handshake age is recent (${age:-none} s)" test -n "$age" -a "${age:-999}" -lt 60
check "zygote up, CNI socket up, ready and healthy" test \
	"$(val tailscale_cni_zygote_up)$(val tailscale_cni_cni_socket_up)$(val tailscale_cni_ready)$(val tailscale_cni_healthy)" \
	== 1111

# Traffic moves the counters: 10 more pings of 1000 bytes.
b0=$(pod_val tailscale_cni_pod_tun_bytes_total 0 ',direction="rx"')
p1=$(pod_val tailscale_cni_pod_tun_packets_total 1 ',direction="tx"')
u0=$(pod_val tailscale_cni_pod_udp_packets_total 0 ',direction="tx"')
ip netns exec "$A" busybox ping -c 10 -i 0.1 -s 1000 -W 2 "${POD4[1]}" >/dev/null 2>&1
for ((k = 0; k < 40; k++)); do
	scrape
	b0n=$(pod_val tailscale_cni_pod_tun_bytes_total 0 ',direction="rx"')
	p1n=$(pod_val tailscale_cni_pod_tun_packets_total 1 ',direction="tx"')
	u0n=$(pod_val tailscale_cni_pod_udp_packets_total 0 ',direction="tx"')
	# Each worker's Stats refresh on its own schedule: wait for all three.
	[[ ${b0n:-0} -ge $((${b0:-0} + 10000)) && ${p1n:-0} -ge $((${p1:-0} + 10)) &&
		${u0n:-0} -ge $((${u0:-0} + 10)) ]] && break
	sleep 0.25
done
check "pod 0's ts0 rx bytes grew by the pings ($b0 -> $b0n)" \
	test "${b0n:-0}" -ge $((${b0:-0} + 10000))
check "pod 1's ts0 tx packets grew ($p1 -> $p1n)" test "${p1n:-0}" -ge $((${p1:-0} + 10))
check "pod 0's UDP tx packets grew ($u0 -> $u0n)" test "${u0n:-0}" -ge $((${u0:-0} + 10))

# --- 3. bad requests ---------------------------------------------------------
# raw BYTES: sent as is on a new connection; the status line answered.
raw()
{
	ip netns exec "$NODE_NS" timeout 5 bash -c \
		'exec 3<>/dev/tcp/127.0.0.1/$1 && printf "$2" >&3 && head -n1 <&3 | tr -d "\r"' \
		_ "$PORT" "$1"
}
get /metrics -H "X-Big: $(head -c 5000 /dev/zero | tr '\0' a)"
check "a 5000-byte header: 431 ($CODE)" test "$CODE" == 431
line=$(raw '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n')
check "TLS bytes: 400 ($line)" test "$line" == "HTTP/1.1 400 Bad Request"
line=$(raw 'GET /metrics HTTP/1.1\r\n\r\n')
check "HTTP/1.1 without Host: 400 ($line)" test "$line" == "HTTP/1.1 400 Bad Request"
get /metrics -X POST
check "POST: 405 ($CODE), Allow: GET, HEAD" \
	test "$CODE" == 405 -a -n "$(grep -i '^Allow: GET, HEAD' "$T/headers")"
get /nope
check "an unknown path: 404 ($CODE)" test "$CODE" == 404
# (curl -I writes the headers where the body would go.)
get /healthz -I
check "HEAD /healthz: 200, Content-Length 3, no body ($CODE)" \
	test "$CODE" == 200 -a -n "$(grep -i '^Content-Length: 3' "$T/headers")" -a \
	-z "$(grep -x ok <<<"$BODY")"
get /healthz
check "still serving after the bad requests ($CODE $BODY)" test "$CODE" == 200 -a "$BODY" == ok

# --- 4. the connection cap --------------------------------------------------
scrape
r0=$(val tailscale_cni_metrics_connections_refused_total)
ip netns exec "$NODE_NS" bash -c \
	'for i in $(seq 40); do exec {fd}<>/dev/tcp/127.0.0.1/$1 || exit 1; done; sleep 30' \
	_ "$PORT" </dev/null >/dev/null 2>&1 &
HOLD=$!
CLEAN_PIDS+=("$HOLD")
sleep 1
held=$(ip netns exec "$NODE_NS" ss -Htn state established "sport = :$PORT" | wc -l)
check "40 idle connections: the supervisor holds at most 16 ($held)" test "$held" -le 16 -a "$held" -ge 1
t0=$(now_ms)
while (($(now_ms) - t0 < 8000)); do
	get /healthz
	[[ $CODE == 200 ]] && break
	sleep 0.25
done
t1=$(now_ms)
check "the idle ones closed after 5 s: /healthz answers again ($CODE after $((t1 - t0)) ms)" \
	test "$CODE" == 200 -a $((t1 - t0)) -le 8000
scrape
r1=$(val tailscale_cni_metrics_connections_refused_total)
check "the connections past the cap were counted ($r0 -> $r1)" test "${r1:-0}" -ge $((${r0:-0} + 24))
kill "$HOLD" 2>/dev/null
wait "$HOLD" 2>/dev/null

# --- 5. the CNI socket lost --------------------------------------------------
mv "$SOCK" "$SOCK.away"
get /healthz
check "socket renamed away: 503 naming it ($CODE $BODY)" \
	test "$CODE" == 503 -a -n "$(grep -F "CNI socket $SOCK is gone" <<<"$BODY")"
scrape
check "cni_socket_up 0, healthy 0" test "$(val tailscale_cni_cni_socket_up)$(val tailscale_cni_healthy)" == 00
mv "$SOCK.away" "$SOCK"
get /healthz
check "socket back: 200 ($CODE $BODY)" test "$CODE" == 200

# --- 6. a stuck threadpool ---------------------------------------------------
# freeze N: stops every thread of the supervisor but its loop's
# (freeze_threads, held by fd 8 on the FIFO $T/thawN); true once they are.
freeze()
{
	mkfifo "$T/thaw$1" || return 1
	"$FREEZE" "$SUP_PID" <"$T/thaw$1" >"$T/frozen" 2>&1 &
	FREEZE_PID=$!
	CLEAN_PIDS+=("$FREEZE_PID")
	exec 8>"$T/thaw$1"
	for ((k = 0; k < 50; k++)); do
		grep -q '^frozen [1-9]' "$T/frozen" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

thaw()
{
	exec 8>&-
	wait "$FREEZE_PID" 2>/dev/null
}

# freeze_threads stops the pool's idle threads inside glibc's condition
# variable, where no really stuck thread is (that one is busy in a blocking
# call): a uv_queue_work signalling them can then wait for a stopped waiter,
# and the loop answers nothing at all until the threads go on. Seen on the
# threadpool watch's first job after a freeze about once in ten (on an idle
# supervisor, without a pod or a scrape), and on every later job (hence no
# reconciler here). That is the tool's doing: thaw and freeze again.
for attempt in 1 2 3; do
	freeze "$attempt" || break
	sleep 1.2 # past the watch's next uv_queue_work
	get /healthz
	[[ $CODE != 000 ]] && break
	echo "# freeze $attempt: the loop stopped answering too (a thread stopped in the condvar): again"
	thaw
	sleep 1
done
check "the supervisor's threads but its loop's are stopped, its loop answers ($(cat "$T/frozen"), $CODE)" \
	test "$CODE" != 000 -a -n "$(grep '^frozen [1-9]' "$T/frozen")"
# Bounded by time, not tries: a loop that stopped answering would make
# each try wait for curl's timeout.
t0=$(now_ms)
while (($(now_ms) - t0 < 12000)); do
	get /healthz
	[[ $CODE == 503 ]] && break
	sleep 0.2
done
t1=$(now_ms)
echo "# /healthz $CODE $((t1 - t0)) ms after the pool stopped: $BODY"
check "within 10 s /healthz is 503 naming the threadpool" \
	test "$CODE" == 503 -a -n "$(grep threadpool <<<"$BODY")" -a $((t1 - t0)) -le 10000
scrape
check "/metrics still served: threadpool_stuck 1, ready 0, healthy 0 ($CODE)" test "$CODE" == 200 -a \
	"$(val tailscale_cni_threadpool_stuck)$(val tailscale_cni_ready)$(val tailscale_cni_healthy)" == 100
thaw
t0=$(now_ms)
while (($(now_ms) - t0 < 3000)); do
	get /healthz
	[[ $CODE == 200 ]] && break
	sleep 0.1
done
check "once the threads go on, /healthz is 200 within 3 s ($CODE $BODY)" test "$CODE" == 200

# --- 7. DEL ------------------------------------------------------------------
pod_del 0
pod_del 1
scrape
check "DEL success counted twice" \
	test "$(val 'tailscale_cni_cni_requests_total{verb="DEL",result="success"}')" == 2
check "DEL histogram count 2" \
	test "$(val 'tailscale_cni_cni_request_duration_seconds_count{verb="DEL"}')" == 2
check "no pod left: no per-pod sample, pods ready 0" test \
	"$(grep -c '^tailscale_cni_pod_' "$T/m")" == 0 -a "$(val 'tailscale_cni_pods{state="ready"}')" == 0
get /healthz
check "healthy after the DELs ($CODE)" test "$CODE" == 200

# --- 8. the zygote down ------------------------------------------------------
# Its binary unexecutable, a killed zygote cannot be started again (the
# supervisor retries every second): /healthz turns 503 once it has been
# down for 10 s, and 200 again once it runs.
ZYG=$(sup_status_json | jq -r .zygote_pid)
chmod 0600 "$T/worker"
kill -KILL "$ZYG"
t0=$(now_ms)
while (($(now_ms) - t0 < 15000)); do
	get /healthz
	[[ $CODE == 503 ]] && break
	sleep 0.5
done
t1=$(now_ms)
check "zygote ($ZYG) down: /healthz 503 after 10 to 12 s ($((t1 - t0)) ms: $BODY)" \
	test "$CODE" == 503 -a -n "$(grep 'zygote has been down' <<<"$BODY")" -a \
	$((t1 - t0)) -ge 9500 -a $((t1 - t0)) -le 12500
scrape
check "zygote_up 0, zygote_down_seconds >= 10, restarts counted" test \
	"$(val tailscale_cni_zygote_up)" == 0 -a "$(val tailscale_cni_zygote_down_seconds | cut -d. -f1)" -ge 10 -a \
	"$(val tailscale_cni_zygote_restarts_total)" -ge 1
chmod 0755 "$T/worker"
t0=$(now_ms)
while (($(now_ms) - t0 < 5000)); do
	get /healthz
	[[ $CODE == 200 ]] && break
	sleep 0.2
done
check "the zygote back: /healthz 200 ($CODE)" test "$CODE" == 200
tscni_finish
