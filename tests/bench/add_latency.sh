#!/bin/bash
# bench: ADD as a runtime sees it (the plugin's exec to its exit, the pod's
# Tailscale addresses in the result), one at a time and 10 / 50 / 100 at
# once, against our testcontrol and, when TSCNI_PEERS_DIR has them, against
# the genuine control server (upstream's testcontrol v1.68.2, `peerctl`).
# Prints figures, asserts no timing; checks only that the setup worked.
#   sudo [TSCNI_PEERS_DIR=<peers>] tests/bench/add_latency.sh <build dir>
#   env: ADD_LATENCY_SEQ (sequential ADDs, default 30), ADD_LATENCY_BURSTS
#        (default "10 50 100"), ADD_LATENCY_CONTROLS (default "ours genuine")
#
#   node netns (ours: 127.0.0.1 testcontrol; genuine: on its bridge, 10.99.0.x)
#   ┌───────────────────────────────────────────┐    pod netns al0 .. al99
#   │ tailscale-cni-supervisor, zygote, workers  │──> ts0 with 100.x + fd7a:
#   └───────────────────────────────────────────┘
#   host netns: plugin_run → tailscale-cni ADD (syncTimeout 20s) → cni.sock
#
# Every round uses new pods (new identities: each ADD registers a new node),
# then DELs them all (their nodes log out) before the next round.
#
#   p50/p90/p99/max  plugin_run's wall time, exec to exit (ms)
#   addrs            results with both a 100.x and an fd7a: address on ts0
#   CPU per pod      over the round's ADDs: the supervisor's own CPU (loop and
#                    threadpool) + the zygote's + every new worker's whole
#                    CPU + the plugins' (rusage), divided by the pods; the
#                    control server's beside it
#   idle             after the sequential round, 2 s later: each worker's
#                    PSS and USS (smaps_rollup; USS is what one more pod
#                    costs) with its control session and the round's other
#                    pods as peers, and the supervisor's PSS
#   spans            medians over the round of the supervisor's one line per
#                    ADD ("ADD spans", docs/design.md §4): plugin = the plugin
#                    exec'd alone (VERSION, no socket), socket = wall − total −
#                    plugin, queue = arrival to the threadpool, tun = identity,
#                    records and ts0, spawn = to the worker's Hello, register =
#                    Hello to control's answer to /machine/register (Noise
#                    included), netmap = to the first netmap applied,
#                    addresses = to ts0's addresses set, ready = to Ready
#                    (lite update, routes, home DERP), save = to the reply
export TSCNI_BUILD_DIR=${1:-${TSCNI_BUILD_DIR:-}}
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/bench.sh"
source "$(dirname "$0")/../lib/tailnet.sh"
source "$(dirname "$0")/../lib/genuine.sh"
tscni_init addlat

SEQ=${ADD_LATENCY_SEQ:-30}
BURSTS=${ADD_LATENCY_BURSTS:-"10 50 100"}
CONTROLS=${ADD_LATENCY_CONTROLS:-"ours genuine"}
MAXP=$SEQ
for b in $BURSTS; do
	((b > MAXP)) && MAXP=$b
done
export CNI_NO_JSON_CHECK=1
mkdir -m 0700 "$T/r"

# pods_ns N: pod netns al0 .. al<N-1> (made once, reused by every round).
declare -a PNS=()
pods_ns()
{
	local i
	for ((i = ${#PNS[@]}; i < $1; i++)); do
		ns_new "al$i" || return 1
		PNS[i]=$NS_NAME
	done
}

# run1 DIR I VERB: one plugin run for pod I of the round in DIR; its report
# in DIR/I.VERB, the result in DIR/I.VERB.out.
run1()
{
	local d=$1 i=$2 verb=$3 conf
	conf=$d/$i.conf
	[[ $verb == DEL ]] && conf=$d/$i.delconf
	env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin CNI_COMMAND="$verb" CNI_CONTAINERID="$(<"$d/$i.cid")" \
		CNI_NETNS="/var/run/netns/${PNS[i]}" CNI_IFNAME=eth0 CNI_PATH=/opt/cni/bin \
		"CNI_ARGS=K8S_POD_NAMESPACE=al;K8S_POD_NAME=$(<"$d/$i.name");K8S_POD_UID=$(<"$d/$i.name")" \
		"$RUNNER" --stdin "$conf" --stdout "$d/$i.$verb.out" --stderr "$d/$i.$verb.err" \
		-- "$PLUGIN" >"$d/$i.$verb"
}

# proc_ticks PID: utime + stime (clock ticks), 0 when gone.
worker_pids()
{
	sup_status_json | jq -r '.pods[] | select(.worker_pid > 0) | .worker_pid'
}

# idle_memory DIR N: after 2 s without an ADD, each worker's PSS and USS
# (pss_of) and the supervisor's PSS into DIR/mem: "workers pss_avg pss_max
# uss_avg uss_max sup_pss" (KiB).
idle_memory()
{
	local d=$1 n=$2 p k=0 ps=0 pm=0 us=0 um=0
	sleep 2
	for p in $(worker_pids); do
		pss_of "$p"
		((PSS > 0)) || continue
		k=$((k + 1)) ps=$((ps + PSS)) us=$((us + USS))
		((PSS > pm)) && pm=$PSS
		((USS > um)) && um=$USS
	done
	pss_of "$SUP_PID"
	((k > 0)) && echo "$k $((ps / k)) $pm $((us / k)) $um $PSS" >"$d/mem"
	p=$(worker_pids | tail -n 1)
	[[ -n $p ]] && smaps_breakdown "$p" >"$d/mem_map"
	[[ -n $p && -n ${SUP_PRELOAD:-} ]] && heap_sites "$p" 25 >"$d/mem_heap"
	return 0
}

# round NAME N MODE: N new pods, ADD one at a time (seq) or all at once
# (burst); figures into $T/r/NAME; then every pod DELeted.
round()
{
	local name=$1 n=$2 mode=$3 d=$T/r/$CTL_NAME-$1 i t0 s0 z0 c0 s1 z1 c1 wc=0 pc=0 p zyg
	mkdir -m 0700 "$d"
	for ((i = 0; i < n; i++)); do
		echo "al-$RUNID-$name-$i" >"$d/$i.name"
		echo "al-$RUNID-$name-$i-c" >"$d/$i.cid"
		NETNS=/var/run/netns/${PNS[i]} mkconf 1.0.0 \
			'.syncTimeout = "20s" | .addTimeoutMs = 30000' >"$d/$i.cfile"
		cp "$(<"$d/$i.cfile")" "$d/$i.conf"
	done
	zyg=$(sup_status_json | jq -r .zygote_pid)
	s0=$(cpu_ticks "$SUP_PID") z0=$(cpu_ticks "$zyg") c0=$(cpu_ticks "$CTL_PID")
	t0=$(date +%s%N)
	if [[ $mode == seq ]]; then
		for ((i = 0; i < n; i++)); do
			run1 "$d" "$i" ADD
		done
	else
		BG_PIDS=()
		for ((i = 0; i < n; i++)); do
			run1 "$d" "$i" ADD &
			BG_PIDS+=($!)
		done
		wait_bg
	fi
	echo $((($(date +%s%N) - t0) / 1000000)) >"$d/total_ms"
	s1=$(cpu_ticks "$SUP_PID") z1=$(cpu_ticks "$zyg") c1=$(cpu_ticks "$CTL_PID")
	for p in $(worker_pids); do
		wc=$((wc + $(cpu_ticks "$p")))
	done
	: >"$d/wall"
	: >"$d/addrs"
	for ((i = 0; i < n; i++)); do
		sed -n 's/.*wall_ms=\([0-9]*\).*/\1/p' "$d/$i.ADD" >>"$d/wall"
		pc=$((pc + $(sed -n 's/.*cpu_us=\([0-9]*\).*/\1/p' "$d/$i.ADD")))
		grep -q '^status=exit:0' "$d/$i.ADD" || echo "$i $(head -c 200 "$d/$i.ADD.out")" >>"$d/err"
		jq -e '(.interfaces | map(.name) | index("ts0")) as $k | [.ips[]? |
			select(.interface == $k) | .address] | (any(test("^100\\.")) and
			any(startswith("fd7a:115c:a1e0:")))' "$d/$i.ADD.out" >/dev/null 2>&1 &&
			echo "$i" >>"$d/addrs"
	done
	# CPU in ms per pod: ticks to ms, plugins' microseconds to ms.
	echo "$n $s0 $s1 $z0 $z1 $wc $pc $c0 $c1" | awk -v hz="$HZ" '{
		sup = ($3 - $2) * 1000 / hz; zyg = ($5 - $4) * 1000 / hz; wrk = $6 * 1000 / hz
		plg = $7 / 1000; ctl = ($9 - $8) * 1000 / hz
		printf "%.1f %.1f %.1f %.1f %.1f %.1f\n", (sup + zyg + wrk + plg) / $1,
			sup / $1, zyg / $1, wrk / $1, plg / $1, ctl / $1 }' >"$d/cpu"
	# The supervisor's span lines of this round's pods.
	grep -F "al-$RUNID-$name-" "$SUP_LOG_FILE" | grep -F 'ADD spans' >"$d/spans" || true
	# After the sequential round, every worker idle with its control
	# session and the others as peers: what a node full of pods holds.
	[[ $mode == seq ]] && idle_memory "$d" "$n"
	# DEL all at once, with the ADD result as prevResult (as libcni).
	for ((i = 0; i < n; i++)); do
		if [[ -s $d/$i.ADD.out ]] && jq --slurpfile r "$d/$i.ADD.out" '.prevResult = $r[0]' \
			"$d/$i.conf" >"$d/$i.delconf" 2>/dev/null; then
			:
		else
			jq 'del(.prevResult)' "$d/$i.conf" >"$d/$i.delconf"
		fi
	done
	BG_PIDS=()
	for ((i = 0; i < n; i++)); do
		run1 "$d" "$i" DEL &
		BG_PIDS+=($!)
	done
	wait_bg
	for ((i = 0; i < n; i++)); do
		grep -q '^status=exit:0' "$d/$i.DEL" || echo "$i" >>"$d/delerr"
	done
}

# span_med FILE KEY: the median of KEY=ms over the span lines in FILE.
span_med()
{
	grep -o " $2=[0-9.]*" "$1" | cut -d= -f2 >"$1.$2"
	percentile 50 "$1.$2"
}

report()
{
	local name=$1 n=$2 d=$T/r/$CTL_NAME-$1 k med plug wallmed tot
	local -a cpu
	read -r -a cpu <"$d/cpu"
	printf '%-8s %-9s n=%-4s p50=%-6s p90=%-6s p99=%-6s max=%-6s ms  addrs %s/%s  all in %s ms\n' \
		"$CTL_NAME" "$name" "$(wc -l <"$d/wall")" "$(percentile 50 "$d/wall")" \
		"$(percentile 90 "$d/wall")" "$(percentile 99 "$d/wall")" "$(percentile 100 "$d/wall")" \
		"$(wc -l <"$d/addrs")" "$n" "$(cat "$d/total_ms")"
	printf '%-8s %-9s CPU per pod %s ms (supervisor %s, zygote %s, worker %s, plugin %s); control server %s ms per pod\n' \
		"$CTL_NAME" "$name" "${cpu[@]}"
	if [[ -s $d/mem ]]; then
		local -a mem
		read -r -a mem <"$d/mem"
		printf '%-8s %-9s idle after the round: %s workers (each with its control session and %s peers) PSS avg %s max %s KiB, USS avg %s max %s KiB; supervisor PSS %s KiB\n' \
			"$CTL_NAME" "$name" "${mem[0]}" "$((mem[0] - 1))" "${mem[1]}" "${mem[2]}" \
			"${mem[3]}" "${mem[4]}" "${mem[5]}"
		echo "# the last worker's by mapping (PSS / USS KiB):"
		cat "$d/mem_map"
		if [[ -s $d/mem_heap ]]; then
			echo "# its heap by allocation site:"
			cat "$d/mem_heap"
		fi
	fi
	if [[ ! -s $d/spans ]]; then
		echo "$CTL_NAME $name spans: no \"ADD spans\" line in the supervisor's log"
		return
	fi
	plug=$(percentile 50 "$T/r/plugin_alone")
	wallmed=$(percentile 50 "$d/wall")
	tot=$(span_med "$d/spans" total)
	local line="spans (medians, ms): plugin $plug socket $(awk -v w="$wallmed" -v t="$tot" \
		-v p="$plug" 'BEGIN { s = w - t - p; printf "%.1f", s < 0 ? 0 : s }')"
	for k in queue tun spawn register netmap addresses ready save; do
		med=$(span_med "$d/spans" "$k")
		line+=" $k $med"
	done
	echo "$CTL_NAME $name $line (supervisor total $tot, $(wc -l <"$d/spans") lines)"
}

# rounds: every round against the control server now running.
rounds()
{
	local b
	round seq "$SEQ" seq
	report seq "$SEQ"
	for b in $BURSTS; do
		round "burst$b" "$b" burst
		report "burst$b" "$b"
	done
	local bad=""
	for d in "$T"/r/"$CTL_NAME"-*/; do
		[[ -e $d/err ]] && bad+="$(basename "$d"): $(head -n 2 "$d/err" | tr '\n' ';') "
		[[ -e $d/delerr ]] && bad+="$(basename "$d"): $(wc -l <"$d/delerr") DELs failed "
	done
	check "$CTL_NAME: every ADD and DEL exited 0${bad:+ ($bad)}" test -z "$bad"
}

# The plugin alone: exec to exit for VERSION (no socket), 20 times.
: >"$T/r/plugin_alone"
for ((i = 0; i < 20; i++)); do
	echo '{"cniVersion":"1.0.0"}' >"$T/r/v.json"
	env -i CNI_COMMAND=VERSION "$RUNNER" --stdin "$T/r/v.json" --stdout "$T/r/v.out" \
		--stderr "$T/r/v.err" -- "$PLUGIN" | sed -n 's/.*wall_ms=\([0-9]*\).*/\1/p' \
		>>"$T/r/plugin_alone"
done

# TSCNI_HEAP_SITES=1: every process with tests/bench/heap_sites.so preloaded
# and the workers without their seccomp filter (it would refuse the dump's
# files); the idle figures then print the last worker's heap by allocation
# site. Timings are not comparable with a normal run.
SUP_SANDBOX=()
if [[ ${TSCNI_HEAP_SITES:-} == 1 ]]; then
	SUP_PRELOAD=$TSCNI_BUILD_DIR/tests/bench/heap_sites.so
	[[ -f $SUP_PRELOAD ]] || fail "$SUP_PRELOAD is missing: build the heap_sites target"
	SUP_SANDBOX=(--sandbox none)
fi

echo "# ADD latency: sequential $SEQ, bursts $BURSTS; $(nproc) cores, $(uname -r)"
echo "# plugin alone (VERSION, exec to exit): p50 $(percentile 50 "$T/r/plugin_alone") ms"
pods_ns "$MAXP" || tscni_finish

for ctl in $CONTROLS; do
	RUNID=$$-$ctl
	if [[ $ctl == ours ]]; then
		CTL_NAME=ours
		node_ns_new || tscni_finish
		tc_start --log-level info || tscni_finish
		CTL_PID=$TC_PID
		tc_authkey '{"reusable": true, "ephemeral": true, "tags": ["tag:bench"]}' ||
			tscni_finish
		SUP_LOG_FILE=$T/sup.log
		sup_start_tailnet --log-level info "${SUP_SANDBOX[@]}" || tscni_finish
		rounds
		sup_stop
		tc_stop
		# genuine_node_ns makes a node netns of the same name.
		ip netns del "$NODE_NS" 2>/dev/null
		SUP_NETNS=""
	elif [[ $ctl == genuine ]]; then
		CTL_NAME=genuine
		if [[ -z ${TSCNI_PEERS_DIR:-} || ! -x ${TSCNI_PEERS_DIR:-/nonexistent}/bin/peerctl ]]; then
			echo "# genuine: SKIP: genuine Tailscale peers not found (TSCNI_PEERS_DIR=${TSCNI_PEERS_DIR:-})"
			continue
		fi
		genuine_up 0 && genuine_control && genuine_authkey || tscni_finish
		CTL_PID=$(cat "$GRUN/peerctl.pid")
		genuine_node_ns || tscni_finish
		SUP_LOG=$T/sup-genuine.log
		SUP_LOG_FILE=$SUP_LOG
		sup_start_genuine --log-level info "${SUP_SANDBOX[@]}" || tscni_finish
		rounds
		sup_stop
		SUP_LOG=""
	fi
done
tscni_finish
