#!/bin/bash
# bench: per-pod workers. Prints figures; asserts only that the
# setup worked (every ADD, every worker Ready, every adoption).
#   sudo tests/bench/workers.sh <build dir> [pods]
#
#   host netns                                       100 pod netns
#   ┌────────────────────────────────────────┐      ┌──────────────────────┐
#   │ tailscale-cni-supervisor                │      │ ts0 ← UDP bursts     │
#   │   zygote, worker × 100 (seccomp) ───────┼────> │ 100.64.0.0/10 → ts0  │
#   └────────────────────────────────────────┘      └──────────────────────┘
#
#   worker PSS    steady: every worker idle after the ADDs, 3 samples;
#                 peak: the largest sample while every pod sends a burst.
#                 /proc/PID/smaps_rollup (PSS: shared pages split among
#                 the processes mapping them).
#   re-adoption   kill -9 of the supervisor, then the time from its start
#                 until it serves STATUS (records loaded, all 100 adopted),
#                 next to the same start with nothing to adopt.
#   respawn       kill -9 of one worker until STATUS shows its successor
#                 Ready (STATUS polled every 5 ms: an upper bound), 10 times.
export TSCNI_BUILD_DIR=${1:-${TSCNI_BUILD_DIR:-}}
source "$(dirname "$0")/../lib/common.sh"
N=${2:-100}
tscni_init benchw
source "$(dirname "$0")/../lib/bench.sh"

now_ms()
{
	date +%s%3N
}

# serve_ms: starts the supervisor (not in a subshell: SUP_PID is ours) and
# sets SERVE_MS to the ms until it answers STATUS.
serve_ms()
{
	local t0 i
	SERVE_MS=""
	t0=$(now_ms)
	"$SUP" run --state-dir "$STATE" --socket "$SOCK" --node-name "bench-$$" --log-level info \
		>>"$T/sup.log" 2>&1 </dev/null &
	SUP_PID=$!
	CLEAN_PIDS+=("$SUP_PID")
	for ((i = 0; i < 2000; i++)); do
		if [[ -S $SOCK ]] && "$SUP" status --socket "$SOCK" >/dev/null 2>&1; then
			SERVE_MS=$(($(now_ms) - t0))
			return 0
		fi
		sleep 0.005
	done
	return 1
}

workers_pss()
{
	local js
	js=$(sup_status_json) || return 1
	jq -r '.pods[].worker_pid' <<<"$js" | while read -r p; do
		awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null
	done
}

# stats FILE SAMPLES: "avg X max Y" per worker and the average total of one
# sample (KiB) of the numbers in FILE, which holds SAMPLES samples.
stats()
{
	awk -v k="$2" '{ s += $1; if ($1 > m) m = $1 } END {
		if (NR) printf "per worker avg %.0f KiB, max %d KiB; all %d workers %.1f MiB",
			s / NR, m, NR / k, s / k / 1024 }' "$1"
}

serve_ms || {
	fail "supervisor starts"
	tscni_finish
}
base_ms=$SERVE_MS
declare -a NSN
for ((i = 0; i < N; i++)); do
	ns_new "w$i" || tscni_finish
	NSN[i]=$NS_NAME
	ip netns exec "$NS_NAME" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
	ip -n "$NS_NAME" addr add 192.0.2.1/32 dev lo
done
t0=$(now_ms)
bad=0
for ((i = 0; i < N; i++)); do
	(
		NETNS=$(ns_path "${NSN[i]}") CID="bw-$i" CNI_NO_JSON_CHECK=1 \
			cni "$(NETNS=$(ns_path "${NSN[i]}") mkconf 1.0.0)" CNI_COMMAND=ADD \
			"CNI_ARGS=K8S_POD_UID=uid-bw-$$-$i"
		exit "$RC"
	) &
	BG_PIDS+=($!)
	if ((i % 10 == 9)); then
		for p in "${BG_PIDS[@]}"; do
			wait "$p" || bad=$((bad + 1))
		done
		BG_PIDS=()
	fi
done
wait_bg
add_ms=$(($(now_ms) - t0))
check "$N ADDs ($bad failed)" test "$bad" -eq 0
ready=$(sup_status_json | jq '[.pods[] | select(.worker_state == "ready")] | length')
check "$N workers Ready ($ready)" test "$ready" -eq "$N"
echo "# $N pods with workers up in $add_ms ms (10 ADDs at a time)"
for ((i = 0; i < N; i++)); do
	ip -n "${NSN[i]}" route add 100.64.0.0/10 dev ts0
done

# --- PSS -----------------------------------------------------------------
sleep 1
: >"$T/pss.steady"
for s in 1 2 3; do
	workers_pss >>"$T/pss.steady"
	sleep 0.3
done
echo "# worker PSS steady (3 samples): $(stats "$T/pss.steady" 3)"
: >"$T/pss.peak"
for ((i = 0; i < N; i++)); do
	ip netns exec "${NSN[i]}" bash -c \
		'for ((k = 0; k < 300; k++)); do echo -n xxxxxxxxxxxxxxxx >/dev/udp/100.64.0.1/9; done' &
	BG_PIDS+=($!)
done
for s in 1 2 3 4 5; do
	workers_pss >"$T/pss.sample"
	cat "$T/pss.sample" >>"$T/pss.peak"
done
wait_bg
workers_pss >>"$T/pss.peak"
echo "# worker PSS during bursts (6 samples, max = peak): $(stats "$T/pss.peak" 6)"
zyg=$(sup_status_json | jq -r .zygote_pid)
pss_of "$SUP_PID"
echo "# zygote PSS: $(awk '/^Pss:/ {print $2}' "/proc/$zyg/smaps_rollup") KiB;" \
	"supervisor PSS: $PSS KiB (USS $USS, Pss_Anon $ANON) with $N pods, by mapping" \
	"(PSS / USS KiB):"
smaps_breakdown "$SUP_PID"

# --- re-adoption -----------------------------------------------------------
before=$(sup_status_json | jq -c '[.pods[] | .worker_pid] | sort')
sup_kill9
mark=$(wc -l <"$T/sup.log")
serve_ms || fail "restart"
adopt_ms=$SERVE_MS
after=$(sup_status_json | jq -c '[.pods[] | select(.worker_state == "ready") | .worker_pid] | sort')
n=$(tail -n +"$((mark + 1))" "$T/sup.log" | grep -c 'adopted (protocol')
check "all $N adopted, same pids ($n adoptions logged)" test "$before" == "$after" -a "$n" -eq "$N"
echo "# re-adoption: supervisor serving ${adopt_ms} ms after its start with $N workers adopted" \
	"(${base_ms} ms with nothing to adopt)"

# --- respawn ---------------------------------------------------------------
: >"$T/respawn"
for ((r = 0; r < 10; r++)); do
	i=$((r * 7 % N))
	old=$(sup_status_json | jq -r --arg c "bw-$i" '.pods[] | select(.container_id == $c) | .worker_pid')
	t0=$(now_ms)
	kill -KILL "$old"
	for ((w = 0; w < 400; w++)); do
		p=$("$SUP" status --json --socket "$SOCK" |
			jq -r --arg c "bw-$i" '.pods[] | select(.container_id == $c and .worker_state == "ready") | .worker_pid')
		if [[ -n $p && $p != "$old" && $p != 0 ]]; then
			echo $(($(now_ms) - t0)) >>"$T/respawn"
			break
		fi
		sleep 0.005
	done
done
check "10 workers respawned ($(wc -l <"$T/respawn"))" test "$(wc -l <"$T/respawn")" -eq 10
echo "# respawn after kill -9 (until STATUS shows it Ready): median $(percentile 50 "$T/respawn") ms," \
	"max $(percentile 100 "$T/respawn") ms"

for ((i = 0; i < N; i++)); do
	(
		NETNS=$(ns_path "${NSN[i]}") CID="bw-$i" CNI_NO_JSON_CHECK=1 \
			cni "$(NETNS=$(ns_path "${NSN[i]}") mkconf 1.0.0 'del(.prevResult)')" CNI_COMMAND=DEL
		exit "$RC"
	) &
	BG_PIDS+=($!)
	((i % 10 == 9)) && wait_bg
done
wait_bg
tscni_finish
