#!/bin/bash
# bench: memory and CPU of the REAL worker under load (the bound: "memory under
# load <= 4 MiB PSS per worker"). Prints figures; exits 1 only when the path
# cannot be set up (supervisor, testcontrol, the two pods, the first ping).
#   sudo tests/bench/worker_load.sh <build dir>
#   TSCNI_BUILD_DIR=<build dir> bash tests/bench/worker_load.sh
#
#   netns NODE: testcontrol on 127.0.0.1, tailscale-cni-supervisor, its
#               zygote and the two workers (their UDP sockets on 10.201.0.1)
#   netns pod 0: ts0 100.x   <== WireGuard, worker 0 <-> worker 1 ==>
#   netns pod 1: ts0 100.y   (iperf3 -s here, iperf3 -c in pod 0)
#
# Two pods on one node through the real plugin, supervisor and testcontrol
# (tests/lib/tailnet.sh); pod 0 pings pod 1's 100.x first (up to 20 s: the
# first packets wait for the netmap and the handshake). Then three iperf3
# runs of 10 s from pod 0 to pod 1's 100.x: 1 stream, 4 streams (-P 4),
# 1 stream the other way (-R). Printed:
#   per run: Mbit/s received, GB moved, and per worker the CPU seconds per
#     GB (utime + stime of the whole worker process, /proc/<pid>/stat, over
#     the run) and the largest PSS seen during the run;
#   per process (worker 0, worker 1, supervisor, zygote): PSS in KiB from
#     /proc/<pid>/smaps_rollup sampled every 100 ms: idle (the largest of
#     1 s of samples before the first run), max under load (over all three
#     runs) and after load (the largest of 1 s of samples, 1 s after the
#     last run); the goal, 4096 KiB per worker, next to the workers';
#     and the largest USS (private pages only) and Pss_Anon under load;
#   worker 0's PSS and USS by mapping (tests/lib/bench.sh smaps_breakdown),
#     idle before the runs and after them.
# PSS splits each shared page among the processes that map it: the
# libraries' pages (libcrypto alone is ~0.7-0.9 MiB of a worker's PSS here)
# are shared by the zygote, both workers and, while it runs, iperf3 (which
# maps libcrypto too), so PSS moves by a few hundred KiB with who else runs;
# on a node with more pods it is lower. USS is what one more pod costs.
# With TSCNI_FORCE_FALLBACK in the environment (e.g. =all) the workers run
# with those offloads off; the header says which. TSCNI_WLOAD_SECS sets the
# seconds per run (default 10).
# Then, when TSCNI_PEERS_DIR names the genuine Tailscale programs (else one
# line says it is not run): two genuine tailscaled v1.68.2 nodes on one
# bridge (tests/bench/genuine_pair.sh) through the same three runs, printed
# the same way (CPU s/GB of each whole tailscaled, tailscaled A's largest
# PSS), and per run the ratio ours / tailscaled (Mbit/s) and each side's
# CPU s/GB next to each other.
export TSCNI_BUILD_DIR=${1:-${TSCNI_BUILD_DIR:-}}
source "$(dirname "$0")/../lib/common.sh"
tscni_init wload
source "$(dirname "$0")/../lib/tailnet.sh"

SECS=${TSCNI_WLOAD_SECS:-10}
GOAL_KIB=4096

for tool in iperf3 busybox jq curl; do
	if ! command -v "$tool" >/dev/null; then
		echo "worker_load: $tool not found" >&2
		exit 1
	fi
done
if [[ ! -x $TC ]]; then
	echo "worker_load: $TC is missing: build first" >&2
	exit 1
fi

# die MSG: the path could not be set up.
die()
{
	echo "worker_load: $*" >&2
	exit 1
}

# --- setup: node netns, testcontrol, supervisor, two pods --------------------
node_ns_new || die "cannot create the node netns"
tc_start || die "testcontrol does not start"
tc_authkey '{"reusable": true, "ephemeral": true, "tags": ["tag:e2e"]}' ||
	die "testcontrol mints no auth key"
# Info, not debug: the supervisor's log must not cost CPU under load.
sup_start_tailnet --log-level info || die "the supervisor does not start"
for i in 0 1; do
	pod_add "$i" || die "pod $i: ADD failed (output: ${OUT:0:300} ${ERR:0:300})"
	# DEL at cleanup, while the supervisor still runs: the workers outlive
	# a supervisor (they wait for adoption), not their pod.
	CLEAN_CMDS+=("pod_del $i")
done
A=${POD_NS[0]}
B=${POD_NS[1]}
DST=${POD4[1]}

pinged=0
for ((k = 0; k < 20; k++)); do
	if in_ns "$A" busybox ping -c 1 -W 1 "$DST" >/dev/null 2>&1; then
		pinged=1
		break
	fi
done
[[ $pinged -eq 1 ]] || die "pod 0 does not reach pod 1 at $DST within 20 s"

declare -a WPID
for i in 0 1; do
	WPID[i]=$(pod_stat "${POD_UID[$i]}" worker_pid)
	[[ ${WPID[$i]} =~ ^[0-9]+$ && -r /proc/${WPID[$i]}/stat ]] ||
		die "no running worker for pod $i (worker_pid '${WPID[$i]}')"
	# A backstop: the DEL at cleanup ends it; this by pid if it did not.
	CLEAN_PIDS+=("${WPID[$i]}")
done
ZYG=$(sup_status_json | jq -r '.zygote_pid // empty')
[[ $ZYG =~ ^[0-9]+$ ]] || die "no zygote pid in status --json"
PIDS=("${WPID[0]}" "${WPID[1]}" "$SUP_PID" "$ZYG")
NAMES=("worker 0" "worker 1" "supervisor" "zygote")

# Not through in_ns (a function: $! would be a subshell's pid); ip execs
# iperf3, so $! is the server's own pid.
ip netns exec "$B" iperf3 -s >"$T/iperf3-s.log" 2>&1 </dev/null &
SRV_PID=$!
CLEAN_PIDS+=("$SRV_PID")
for ((k = 0; k < 50; k++)); do
	in_ns "$B" ss -Htln 'sport = :5201' | grep -q . && break
	sleep 0.1
done
kill -0 "$SRV_PID" 2>/dev/null || die "iperf3 -s does not start in pod 1"

# --- sampling (tests/lib/bench.sh) ---------------------------------------------
source "$(dirname "$0")/../lib/bench.sh"
bench_tick_init

# --- the runs ----------------------------------------------------------------
echo "# worker_load: 2 pods on one node, iperf3 -t $SECS pod 0 -> pod 1 at $DST over ts0"
echo "# workers: pid ${WPID[0]} and ${WPID[1]}; supervisor $SUP_PID; zygote $ZYG;" \
	"offload fallbacks forced: ${TSCNI_FORCE_FALLBACK:-none}"

sleep 1
sample_start "$T/pss.idle"
sleep 1
sample_stop
smaps_breakdown "${WPID[0]}" "#   " >"$T/smaps.idle"

RUN_NAMES=("tcp 1 stream 0->1" "tcp 4 streams 0->1" "tcp 1 stream 1->0 (-R)")
RUN_ARGS=("" "-P 4" "-R")
declare -a LOAD_FILES
printf '%-24s %9s %8s  %-34s %s\n' "run" "Mbit/s" "GB" "worker 0: cpu s/GB, PSS max KiB" \
	"worker 1: cpu s/GB, PSS max KiB"
for r in 0 1 2; do
	lf=$T/pss.load$r
	LOAD_FILES+=("$lf")
	c0=$(cpu_ticks "${WPID[0]}")
	c1=$(cpu_ticks "${WPID[1]}")
	sample_start "$lf"
	# shellcheck disable=SC2086 # RUN_ARGS are words on purpose
	timeout $((SECS + 30)) ip netns exec "$A" iperf3 -c "$DST" -t "$SECS" ${RUN_ARGS[$r]} -J \
		>"$T/iperf.$r.json" 2>"$T/iperf.$r.err"
	rc=$?
	sample_stop
	d0=$(($(cpu_ticks "${WPID[0]}") - c0))
	d1=$(($(cpu_ticks "${WPID[1]}") - c1))
	read -r bps bytes < <(jq -r \
		'"\(.end.sum_received.bits_per_second // 0) \(.end.sum_received.bytes // 0)"' \
		"$T/iperf.$r.json" 2>/dev/null)
	bps=${bps:-0}
	bytes=${bytes:-0}
	if [[ $rc -ne 0 ]]; then
		echo "# ${RUN_NAMES[$r]}: iperf3 exit $rc: $(jq -r '.error // empty' \
			"$T/iperf.$r.json" 2>/dev/null) $(head -c 200 "$T/iperf.$r.err")"
	fi
	awk -v n="${RUN_NAMES[$r]}" -v bps="$bps" -v by="$bytes" -v d0="$d0" -v d1="$d1" \
		-v hz="$HZ" -v p0="$(col_max 1 "$lf")" -v p1="$(col_max 4 "$lf")" 'BEGIN {
		gb = by / 1e9
		c0 = gb > 0 ? d0 / hz / gb : 0
		c1 = gb > 0 ? d1 / hz / gb : 0
		printf "%-24s %9.0f %8.2f  %-34s %s\n", n, bps / 1e6, gb,
			sprintf("%.2f, %d", c0, p0), sprintf("%.2f, %d", c1, p1)
	}' | tee -a "$T/ours"
done

sleep 1
sample_start "$T/pss.after"
sleep 1
sample_stop
smaps_breakdown "${WPID[0]}" "#   " >"$T/smaps.after"

echo
printf '%-12s %8s %8s %12s %8s %9s %10s\n' "PSS KiB" "pid" "idle" "max (load)" "after" \
	"USS max" "anon max"
for c in 0 1 2 3; do
	note=""
	k=$((3 * c + 1))
	if [[ $c -lt 2 ]]; then
		m=$(col_max "$k" "${LOAD_FILES[@]}")
		if [[ $m -le $GOAL_KIB ]]; then
			note="  goal <= $GOAL_KIB: met"
		else
			note="  goal <= $GOAL_KIB: over by $((m - GOAL_KIB))"
		fi
	fi
	printf '%-12s %8s %8s %12s %8s %9s %10s%s\n' "${NAMES[$c]}" "${PIDS[$c]}" \
		"$(col_max "$k" "$T/pss.idle")" \
		"$(col_max "$k" "${LOAD_FILES[@]}")" \
		"$(col_max "$k" "$T/pss.after")" \
		"$(col_max $((k + 1)) "${LOAD_FILES[@]}")" \
		"$(col_max $((k + 2)) "${LOAD_FILES[@]}")" "$note"
done
echo "# samples: idle $(wc -l <"$T/pss.idle"), under load" \
	"$(cat "${LOAD_FILES[@]}" | wc -l), after $(wc -l <"$T/pss.after") (every 100 ms)"
echo "# worker 0 by mapping, idle before the runs (PSS / USS KiB):"
cat "$T/smaps.idle"
echo "# worker 0 by mapping, after the runs (PSS / USS KiB):"
cat "$T/smaps.after"

# The iperf3 server, by pid; the pods are DELeted by the EXIT trap
# (CLEAN_CMDS), then the supervisor and testcontrol stopped.
kill "$SRV_PID" 2>/dev/null
wait "$SRV_PID" 2>/dev/null

# --- genuine tailscaled <-> tailscaled, the same runs --------------------------
echo
source "$(dirname "$0")/../lib/genuine.sh"
source "$(dirname "$0")/genuine_pair.sh"
gpair_available || exit 0
gpair_up || exit 1
echo "# genuine tailscaled v1.68.2 pair, n1 -> n2 on one bridge; cpu: whole tailscaled"
printf '%-24s %9s %8s  %-34s %s\n' "run" "Mbit/s" "GB" "tailscaled A: cpu s/GB, PSS max KiB" \
	"tailscaled B: cpu s/GB"
PIDS=("${GPIDS[0]}" "${GPIDS[1]}")
for r in 0 1 2; do
	sample_start "$T/gpss.$r"
	# shellcheck disable=SC2086 # RUN_ARGS are words on purpose
	read -r mbit gb ca cb < <(gpair_run "$SECS" 0 ${RUN_ARGS[$r]})
	sample_stop
	printf '%-24s %9s %8s  %-34s %s\n' "${RUN_NAMES[$r]}" "$mbit" "$gb" \
		"$ca, $(col_max 1 "$T/gpss.$r")" "$cb" | tee -a "$T/theirs"
done
echo
echo "# ours / tailscaled, same run: Mbit/s ratio; CPU s/GB side A (worker 0 | tailscaled n1)," \
	"side B (worker 1 | tailscaled n2)"
# Both tables: name (24 columns), Mbit/s, GB, "cpuA," PSS, cpuB.
paste -d '\n' "$T/ours" "$T/theirs" | awk '{
	name = substr($0, 1, 24)
	split(substr($0, 25), f, /[ ,]+/)
	if (NR % 2) { n = name; m = f[2]; a = f[4]; b = f[6]; next }
	printf "%-24s %6.2fx   side A %5s | %5s s/GB   side B %5s | %5s s/GB\n", n,
		(f[2] > 0 ? m / f[2] : 0), a, f[4], b, f[6]
}'
exit 0
