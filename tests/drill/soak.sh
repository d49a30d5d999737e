#!/bin/bash
# drill: soak. 1000 ADD/DEL cycles through the real plugin, 20 at a time,
# every pod joining testcontrol's tailnet (reusable ephemeral key; DEL logs
# the node out, and testcontrol forgets an ephemeral node that logs out).
# Then everything is back where it started:
#   - the supervisor's RSS (within 4 MiB: the allocator keeps some of what it
#     freed) and its open fds (exactly);
#   - no worker process of ours left (status lists none; the zygote's
#     children: none);
#   - the files of the state directory (identities go with --identity-grace
#     0) and of the run directory (no rendezvous socket left);
#   - control's node list (no node left).
# Printed: the time taken, and each figure before and after.
#   TSCNI_SOAK_CYCLES (default 1000) and TSCNI_SOAK_PAR (default 20).
source "$(dirname "$0")/../lib/common.sh"
tscni_init soak
source "$(dirname "$0")/../lib/tailnet.sh"

CYCLES=${TSCNI_SOAK_CYCLES:-1000}
PAR=${TSCNI_SOAK_PAR:-20}
PER=$(((CYCLES + PAR - 1) / PAR))

node_ns_new || tscni_finish
tc_start --log-level info || tscni_finish
tc_authkey '{"reusable": true, "ephemeral": true, "tags": ["tag:e2e"]}' || tscni_finish
sup_start_tailnet --log-level info --identity-grace 0 --reconcile-interval 1 || tscni_finish

# figures: RSS (KiB) and fds of the supervisor, workers in status, files in
# the state and run dirs, nodes at control; one line.
figures()
{
	local rss fds workers state run nodes
	rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$SUP_PID/status")
	fds=$(find "/proc/$SUP_PID/fd" -mindepth 1 | wc -l)
	workers=$(sup_status_json | jq '[.pods[]? | select(.worker_pid > 0)] | length')
	state=$(find "$STATE" -mindepth 1 -not -name '*.lock' | sort | tr '\n' ' ')
	run=$(find "$T/run" -mindepth 1 | sort | tr '\n' ' ')
	nodes=$(tc_get /nodes | jq length)
	echo "$rss|$fds|$workers|$state|$run|$nodes"
}

for ((j = 0; j < PAR; j++)); do
	ns_new "s$j" || tscni_finish
	NSN[j]=$NS_NAME
done
# One warm-up cycle per lane first: the baseline is the supervisor with its
# caches (zygote, libcurl, the threadpool) in place.
lane()
{
	local j=$1 n=$2 c conf fails=0 i
	for ((i = 0; i < n; i++)); do
		c="soak-$j-$i"
		conf=$(NETNS=$(ns_path "${NSN[j]}") mkconf 1.0.0 '.syncTimeout = "10s"')
		NETNS=$(ns_path "${NSN[j]}") CID=$c cni "$conf" CNI_COMMAND=ADD \
			"CNI_ARGS=K8S_POD_NAMESPACE=soak;K8S_POD_NAME=$c;K8S_POD_UID=uid-$c-$$"
		[[ $RC -eq 0 ]] || { fails=$((fails + 1)); echo "ADD $c: $RC ${OUT:0:200}" >>"$T/soak.err"; }
		NETNS=$(ns_path "${NSN[j]}") CID=$c cni "$(mkconf 1.0.0 'del(.prevResult)')" \
			CNI_COMMAND=DEL "CNI_ARGS=K8S_POD_UID=uid-$c-$$"
		[[ $RC -eq 0 ]] || { fails=$((fails + 1)); echo "DEL $c: $RC ${OUT:0:200}" >>"$T/soak.err"; }
	done
	echo "$fails" >"$T/lane.$j"
}
run_lanes()
{
	local j
	local -a pids=()
	for ((j = 0; j < PAR; j++)); do
		lane "$j" "$1" &
		pids+=($!)
	done
	wait "${pids[@]}"
}
settle()
{
	local k
	for ((k = 0; k < 100; k++)); do
		[[ $(tc_get /nodes | jq length) == 0 && -z $(find "$STATE/pods" -mindepth 1 2>/dev/null) ]] &&
			break
		sleep 0.2
	done
	sleep 1
}

run_lanes 1
settle
before=$(figures)
t0=$(date +%s)
run_lanes "$PER"
t1=$(date +%s)
settle
after=$(figures)
# The supervisor trims its malloc arenas every 10 s (pool_watch.c): what a
# burst of threadpool work left free may stay resident until then, so RSS
# gets up to 12 s to come back (the other figures are taken as they are).
for ((k = 0; k < 12; k++)); do
	rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$SUP_PID/status")
	((rss - ${before%%|*} <= 4096)) && break
	sleep 1
done
after="$rss|${after#*|}"
fails=$(cat "$T"/lane.* | awk '{s += $1} END {print s + 0}')
echo "# soak: $((PAR * PER)) ADD/DEL cycles, $PAR at a time, in $((t1 - t0)) s"
IFS='|' read -r b_rss b_fds b_wk b_state b_run b_nodes <<<"$before"
IFS='|' read -r a_rss a_fds a_wk a_state a_run a_nodes <<<"$after"
echo "# supervisor RSS ${b_rss} -> ${a_rss} KiB, fds ${b_fds} -> ${a_fds}, workers ${b_wk} -> ${a_wk}," \
	"control's nodes ${b_nodes} -> ${a_nodes}"
check "every ADD and DEL succeeded ($fails failed$([[ -s $T/soak.err ]] && echo ": $(head -n 3 "$T/soak.err" | tr '\n' ' ')"))" \
	test "$fails" -eq 0
check "supervisor RSS back within 4 MiB (${b_rss} -> ${a_rss} KiB)" test $((a_rss - b_rss)) -le 4096
check "supervisor fds back where they were (${b_fds} -> ${a_fds})" test "$a_fds" -eq "$b_fds"
check "no worker left (${a_wk})" test "$a_wk" -eq 0
check "the state dir holds what it held (${a_state:-nothing})" test "$a_state" == "$b_state"
check "the run dir holds what it held (${a_run:-nothing})" test "$a_run" == "$b_run"
check "control lists no node (${a_nodes})" test "$a_nodes" -eq "$b_nodes"
tscni_finish
