#!/bin/bash
# bench: 100 pods join a tailnet at once. Prints
# figures; asserts only that the setup worked (every ADD and DEL exited 0,
# every node registered), never a timing.
#   sudo tests/bench/tailnet_add.sh <build dir> [pods]
#
#   host netns, all on 127.0.0.1                         100 pod netns
#   ┌──────────────────────────────────────────────┐    ┌──────────────────┐
#   │ testcontrol (https, its CA; admin API)        │    │ tb0 .. tb99: ts0 │
#   │   ^ Noise over TLS                            │    │  100.x + fd7a:   │
#   │ tailscale-cni-supervisor --control-url ...    │    └──────────────────┘
#   │   zygote, worker × 100 ─────────────────────────────> ts0 of each pod
#   │ 100 × tailscale-cni ADD (syncTimeout 20s)     │
#   └──────────────────────────────────────────────┘
#
#   ADD latency   exec to exit of the plugin (plugin_run), 100 at once; ADD
#                 waits (up to syncTimeout) for the pod's tailnet addresses.
#   worker PSS    /proc/PID/smaps_rollup of each worker pid listed by
#                 `status --json`: steady = once testcontrol lists every
#                 node (3 samples); peak = the largest of the samples taken
#                 every 2 s over 30 s more of map updates; VmHWM = the
#                 kernel's peak RSS of each worker (/proc/PID/status).
#   peers         the peers in each worker's netmap, when status exposes it.
#   DEL latency   exec to exit, 100 at once (each logs its node out).
export TSCNI_BUILD_DIR=${1:-${TSCNI_BUILD_DIR:-}}
source "$(dirname "$0")/../lib/common.sh"
N=${2:-100}
tscni_init tailbench

source "$(dirname "$0")/../lib/tailnet.sh"
if [[ ! -x $TC ]]; then
	echo "tailnet_add: $TC is missing: build first" >&2
	exit 1
fi
SAMPLE_S=${TAILNET_ADD_SAMPLE_S:-30}
TC_PID=""

now_ms()
{
	date +%s%3N
}

tc_admin()
{
	if [[ $1 == GET ]]; then
		curl -sS --max-time 5 "http://$TC_ADMIN$2"
	else
		curl -sS --max-time 5 -X POST -H 'Content-Type: application/json' \
			--data "$3" "http://$TC_ADMIN$2"
	fi
}

# Nodes testcontrol lists as live (not logged out) with our hostname prefix.
tc_live_count()
{
	tc_admin GET /nodes |
		jq '[.[] | select((.logged_out | not) and (.hostname | startswith("tb-")))] | length'
}

# worker_pids: one worker pid a line, from status --json.
worker_pids()
{
	sup_status_json | jq -r '.pods[] | select(.worker_pid > 0) | .worker_pid'
}

# pss_sample FILE: appends "pid pss_kib" for every worker to FILE.
pss_sample()
{
	local p v
	for p in $(worker_pids); do
		v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null)
		[[ -n $v ]] && echo "$p $v" >>"$1"
	done
}

# stats_line FILE [nosum]: per-worker figures of "pid value" lines: the max
# over the samples of each pid, then min/avg/max of those and their sum (not
# for RSS: shared pages would be counted once per worker).
stats_line()
{
	awk -v nosum="${2:-}" '{ if (!($1 in m) || $2 > m[$1]) m[$1] = $2 } END {
		n = 0; s = 0; lo = -1; hi = 0
		for (p in m) { n++; s += m[p]; if (lo < 0 || m[p] < lo) lo = m[p]; if (m[p] > hi) hi = m[p] }
		if (n == 0) { print "no samples"; exit }
		printf "%d workers, per worker min %d avg %.0f max %d KiB", n, lo, s / n, hi
		if (nosum == "") printf ", sum %.1f MiB", s / 1024 }' "$1"
}

# steady_line FILE SAMPLES: average per sample of "pid value" lines.
steady_line()
{
	awk -v k="$2" '{ s += $2; c[$1] += $2; cn[$1]++ } END {
		n = 0; lo = -1; hi = 0
		for (p in c) { a = c[p] / cn[p]; n++; if (lo < 0 || a < lo) lo = a; if (a > hi) hi = a }
		if (n == 0) { print "no samples"; exit }
		printf "%d workers, per worker min %.0f avg %.0f max %.0f KiB, sum %.1f MiB",
			n, lo, s / NR, hi, s / k / 1024 }' "$1"
}

tc_start --log-level info || tscni_finish
KEY=$(tc_admin POST /keys '{"reusable": true, "ephemeral": true, "tags": ["tag:bench"]}' |
	jq -r .key)
if [[ -z $KEY || $KEY == null ]]; then
	fail "testcontrol mints a pre-auth key"
	tscni_finish
fi
(umask 077 && printf '%s\n' "$KEY" >"$T/authkey")
chmod 0600 "$T/authkey"
sup_start --control-url "https://$TC_HTTPS" --auth-key-file "$T/authkey" --ca-file "$TC_CA" \
	--cluster-name tb --log-level info || tscni_finish

declare -a NSN ADDCONF
for ((i = 0; i < N; i++)); do
	ns_new "tb$i" || {
		fail "netns tb$i"
		tscni_finish
	}
	NSN[i]=$NS_NAME
	ADDCONF[i]=$(NETNS=$(ns_path "$NS_NAME") mkconf 1.0.0 '.syncTimeout = "20s" | .addTimeoutMs = 30000')
done
mkdir -m 0700 "$T/lat" "$T/res"
export CNI_NO_JSON_CHECK=1

# phase VERB: N plugin runs at once; WALL of each in $T/lat/VERB, failures
# in $T/lat/VERB.err, ADD results in $T/res/I.
phase()
{
	local verb=$1 i t0
	t0=$(now_ms)
	for ((i = 0; i < N; i++)); do
		(
			NETNS=$(ns_path "${NSN[i]}")
			CID="tb-$$-$i"
			conf=${ADDCONF[i]}
			[[ $verb == DEL ]] && conf=${DELCONF[i]}
			cni "$conf" CNI_COMMAND="$verb" \
				"CNI_ARGS=K8S_POD_NAMESPACE=ns$i;K8S_POD_NAME=web-$i;K8S_POD_UID=uid-tb-$$-$i"
			echo "$WALL" >>"$T/lat/$verb"
			[[ $verb == ADD ]] && printf '%s' "$OUT" >"$T/res/$i"
			[[ $RC -eq 0 ]] || echo "$i rc=$RC ${OUT:0:200}" >>"$T/lat/$verb.err"
		) &
		BG_PIDS+=($!)
	done
	wait_bg
	echo $(($(now_ms) - t0)) >"$T/lat/$verb.total"
}

# errs VERB: " (the first 3 failures)" if VERB had any.
errs()
{
	[[ -e $T/lat/$1.err ]] && echo " ($(head -n 3 "$T/lat/$1.err" | tr '\n' ';'))"
}

lat_line()
{
	printf '%-4s n=%-4s p50=%-6s p99=%-6s max=%-6s ms  (all %d in %s ms)\n' "$1" \
		"$(wc -l <"$T/lat/$1")" "$(percentile 50 "$T/lat/$1")" "$(percentile 99 "$T/lat/$1")" \
		"$(percentile 100 "$T/lat/$1")" "$N" "$(cat "$T/lat/$1.total")"
}

echo "# $N pods, $(nproc) cores, $(uname -r), testcontrol https on $TC_HTTPS"
phase ADD
both=0
for ((i = 0; i < N; i++)); do
	jq -e '(.interfaces | map(.name) | index("ts0")) as $k | [.ips[]? | select(.interface == $k)
		| .address] | (any(test("^100\\.")) and any(startswith("fd7a:115c:a1e0:")))' \
		"$T/res/$i" >/dev/null 2>&1 && both=$((both + 1))
done
lat_line ADD
echo "# ADD results carrying both Tailscale addresses (100.x and fd7a:): $both of $N"
echo "# reference: an already-running upstream tailscaled took 34 ms from \`tailscale up\`" \
	"to addresses against upstream's testcontrol on this machine"
check "all $N ADDs succeeded$(errs ADD)" test ! -e "$T/lat/ADD.err"

# --- registration, then PSS ------------------------------------------------
t0=$(now_ms)
live=0
for ((k = 0; k < 600; k++)); do
	live=$(tc_live_count) || live=0
	[[ $live -ge $N ]] && break
	sleep 0.2
done
check "testcontrol lists all $N nodes ($live, $(($(now_ms) - t0)) ms after the last ADD)" \
	test "$live" -eq "$N"
nw=$(worker_pids | wc -l)
check "status --json lists $N worker pids ($nw)" test "$nw" -eq "$N"

: >"$T/pss.steady"
for s in 1 2 3; do
	pss_sample "$T/pss.steady"
	sleep 0.5
done
echo "# worker PSS steady (3 samples, averaged): $(steady_line "$T/pss.steady" 3)"
: >"$T/pss.peak"
t0=$(now_ms)
ns=0
while (($(now_ms) - t0 < SAMPLE_S * 1000)); do
	pss_sample "$T/pss.peak"
	ns=$((ns + 1))
	sleep 2
done
echo "# worker PSS peak ($ns samples every 2 s over ${SAMPLE_S} s of map updates, max per" \
	"worker): $(stats_line "$T/pss.peak")"
: >"$T/hwm"
for p in $(worker_pids); do
	v=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null)
	[[ -n $v ]] && echo "$p $v" >>"$T/hwm"
done
echo "# worker VmHWM (the kernel's peak RSS, shared pages included): $(stats_line "$T/hwm" nosum)"
zyg=$(sup_status_json | jq -r .zygote_pid)
echo "# supervisor PSS $(awk '/^Pss:/ {print $2}' "/proc/$SUP_PID/smaps_rollup") KiB, zygote PSS" \
	"$(awk '/^Pss:/ {print $2}' "/proc/$zyg/smaps_rollup" 2>/dev/null) KiB," \
	"testcontrol PSS $(awk '/^Pss:/ {print $2}' "/proc/$TC_PID/smaps_rollup") KiB"

# Peers in each worker's netmap: any numeric per-pod field of status --json
# whose name mentions peers.
js=$(sup_status_json)
pk=$(jq -r '[.pods[0] // {} | to_entries[] | select((.key | test("peer"; "i"))
	and (.value | type == "number")) | .key][0] // empty' <<<"$js")
if [[ -n $pk ]]; then
	echo "# netmap peers per worker (status .$pk): $(jq -r --arg k "$pk" '[.pods[][$k]] |
		"min \(min) max \(max) over \(length) workers"' <<<"$js") (expected $((N - 1)))"
else
	echo "# netmap peers per worker: not exposed by status --json"
fi

# --- DEL -------------------------------------------------------------------
declare -a DELCONF
for ((i = 0; i < N; i++)); do
	# As libcni: the cached ADD result as prevResult (none if ADD failed).
	DELCONF[i]=$(conf_with_prev "${ADDCONF[i]}" "$(cat "$T/res/$i")" 2>/dev/null) ||
		DELCONF[i]=$(mkconf 1.0.0 'del(.prevResult)')
done
phase DEL
lat_line DEL
check "all $N DELs succeeded$(errs DEL)" test ! -e "$T/lat/DEL.err"
check "no auth key in the supervisor's log" bash -c '! grep -qFf "$1" "$2"' _ "$T/authkey" "$T/sup.log"
tscni_finish
