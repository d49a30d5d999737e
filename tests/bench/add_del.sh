#!/bin/bash
# bench: ADD and DEL latency for 100 pods created concurrently, and STATUS
# latency during that churn. Prints figures; asserts only that every call
# succeeded (a benchmark of failures measures nothing).
#   sudo tests/bench/add_del.sh <build dir> [pods]
#
#   host netns                                      100 pod netns
#   ┌─────────────────────────────────────────┐    ┌────────────────┐
#   │ 100 × tailscale-cni ADD, then 100 × DEL  │──> │ b0 .. b99: ts0 │
#   │ 1 × STATUS loop (sequential) meanwhile   │    └────────────────┘
#   │ tailscale-cni-supervisor                 │
#   └─────────────────────────────────────────┘
# Latency = the plugin's wall time from exec to exit (plugin_run).
export TSCNI_BUILD_DIR=${1:-${TSCNI_BUILD_DIR:-}}
source "$(dirname "$0")/../lib/common.sh"
N=${2:-100}
tscni_init bench

sup_start --log-level info || tscni_finish
declare -a NSN
for ((i = 0; i < N; i++)); do
	ns_new "b$i" || tscni_finish
	NSN[i]=$NS_NAME
done
mkdir -p "$T/lat"

status_loop()
{
	local conf
	conf=$(mkconf 1.1.0 'del(.prevResult)')
	while [[ ! -e $T/lat/stop ]]; do
		cni "$conf" CNI_COMMAND=STATUS CNI_CONTAINERID= CNI_NETNS= CNI_IFNAME=
		echo "$WALL" >>"$T/lat/status"
		[[ $RC -eq 0 ]] || echo "$RC" >>"$T/lat/status.err"
	done
}

# Configs are written before the clock starts, so the timed phase runs only
# plugins (and plugin_run).
declare -a ADDCONF DELCONF
for ((i = 0; i < N; i++)); do
	ADDCONF[i]=$(NETNS=$(ns_path "${NSN[i]}") mkconf 1.0.0)
	DELCONF[i]=$(mkconf 1.0.0 'del(.prevResult)')
done
export CNI_NO_JSON_CHECK=1
status_loop &
SL=$!
CLEAN_PIDS+=("$SL")

phase()
{
	local verb=$1 i
	local t0
	t0=$(date +%s%N)
	for ((i = 0; i < N; i++)); do
		(
			NETNS=$(ns_path "${NSN[i]}")
			CID="bench-$i"
			conf=${ADDCONF[i]}
			[[ $verb == DEL ]] && conf=${DELCONF[i]}
			cni "$conf" CNI_COMMAND="$verb" "CNI_ARGS=K8S_POD_UID=uid-bench-$i"
			echo "$WALL" >>"$T/lat/$verb"
			[[ $RC -eq 0 ]] || echo "$i rc=$RC ${OUT:0:200}" >>"$T/lat/$verb.err"
		) &
		BG_PIDS+=($!)
	done
	wait_bg
	echo $((($(date +%s%N) - t0) / 1000000)) >"$T/lat/$verb.total"
}
phase ADD
present=0
for ((i = 0; i < N; i++)); do
	has_link "${NSN[i]}" ts0 && present=$((present + 1))
done
phase DEL
touch "$T/lat/stop"
wait "$SL"

echo "# $N pods, $(nproc) cores, $(uname -r)"
for v in ADD DEL; do
	printf '%-6s n=%-4s p50=%-6s p99=%-6s max=%-6s ms  (all %d in %s ms)\n' "$v" \
		"$(wc -l <"$T/lat/$v")" "$(percentile 50 "$T/lat/$v")" "$(percentile 99 "$T/lat/$v")" \
		"$(percentile 100 "$T/lat/$v")" "$N" "$(cat "$T/lat/$v.total")"
done
printf '%-6s n=%-4s p50=%-6s p99=%-6s max=%-6s ms  (during the churn)\n' STATUS \
	"$(wc -l <"$T/lat/status")" "$(percentile 50 "$T/lat/status")" \
	"$(percentile 99 "$T/lat/status")" "$(percentile 100 "$T/lat/status")"
check "all $N ADDs succeeded ($(cat "$T/lat/ADD.err" 2>/dev/null | head -n 3 | tr '\n' ';'))" test ! -e "$T/lat/ADD.err"
check "ts0 in all $N pods after the ADDs ($present)" test "$present" -eq "$N"
check "all $N DELs succeeded" test ! -e "$T/lat/DEL.err"
check "every STATUS during the churn succeeded" test ! -e "$T/lat/status.err"
tscni_finish
