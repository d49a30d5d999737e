#!/bin/bash
# drill: per-pod workers outlive the supervisor, their own death and the
# zygote's (the first drill).
#
#   host netns                                        N pod netns (default 20)
#   ┌───────────────────────────────────────┐        ┌──────────────────────────┐
#   │ tailscale-cni-supervisor ← kill -9     │        │ ts0 (TUN, MTU 1280)      │
#   │   zygote ← kill -9                     │        │ 100.64.0.0/10 dev ts0    │
#   │   worker × N ← one kill -9 ── TUN fd ──┼──────> │ UDP to 100.64.0.1:9 from │
#   └───────────────────────────────────────┘        │ bash /dev/udp            │
#                                                    └──────────────────────────┘
# Every packet a pod sends into ts0 is read by its worker, which counts it
# (status --json: tun_rx_packets). IPv6 is off in the pods so that the
# kernel sends nothing of its own into ts0 and the counts are exact.
#
#  1. N pods up through the real plugin and supervisor, every worker Ready.
#  2. kill -9 the supervisor: every worker alive; packets sent meanwhile.
#  3. restart: all N adopted (same pids) within 1 s (printed), no packet lost.
#  4. kill -9 one worker: ts0 never leaves the pod (polled in a tight loop),
#     the worker is back within 500 ms on the same ts0 (same ifindex) and
#     counts what the pod sends next.
#  5. kill -9 the zygote: a new one, no worker touched, and it serves an ADD.
#  6. DEL every pod: every worker stopped, no ts0 left.
source "$(dirname "$0")/../lib/common.sh"
tscni_init wkill9

N=${TSCNI_DRILL_PODS:-20}
PKTS=${TSCNI_DRILL_PKTS:-50}
declare -a NSN SENT PIDS

now_ms()
{
	date +%s%3N
}

alive()
{
	[[ ${1:-0} -gt 0 ]] && kill -0 "$1" 2>/dev/null
}

# send NS COUNT: COUNT UDP datagrams from inside NS into ts0.
send()
{
	ip netns exec "$1" bash -c \
		'for ((k = 0; k < $1; k++)); do echo -n x >/dev/udp/100.64.0.1/9 || exit 1; done' \
		_ "$2"
}

# pod_json I: the status entry of pod I (by container id).
status_pods()
{
	sup_status_json | jq -c '[.pods[] | {cid: .container_id, pid: .worker_pid,
		state: .worker_state, rx: .tun_rx_packets, ifindex: .ifindex}]'
}

# wait_counts: until every pod's worker counted SENT[i] packets (the status
# asks the workers for fresh Stats, so it is polled). Returns 1 after 10 s.
wait_counts()
{
	local js want i w
	want=$(for ((i = 0; i < N; i++)); do echo "{\"cid\":\"wk-$i\",\"rx\":${SENT[i]}}"; done |
		jq -sc 'sort_by(.cid)')
	for ((w = 0; w < 100; w++)); do
		js=$(status_pods | jq -c '[.[] | select(.cid | startswith("wk-")) |
			{cid, rx}] | sort_by(.cid)')
		[[ $js == "$want" ]] && return 0
		sleep 0.1
	done
	echo "# counts: want $want"
	echo "#         have $js"
	return 1
}

sup_start || tscni_finish
for ((i = 0; i < N; i++)); do
	ns_new "p$i" || tscni_finish
	NSN[i]=$NS_NAME
	ip netns exec "$NS_NAME" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
		net.ipv6.conf.default.disable_ipv6=1
	ip -n "$NS_NAME" addr add 192.0.2.1/32 dev lo
	NETNS=$(ns_path "$NS_NAME") CID="wk-$i" cni "$(NETNS=$(ns_path "$NS_NAME") mkconf 1.0.0)" \
		CNI_COMMAND=ADD "CNI_ARGS=K8S_POD_UID=uid-wk-$$-$i"
	if [[ $RC -ne 0 ]]; then
		fail "ADD of pod $i: exit $RC: ${OUT:0:300}"
		tscni_finish
	fi
	ip -n "$NS_NAME" route add 100.64.0.0/10 dev ts0 || fail "route in pod $i"
	SENT[i]=0
done
js=$(status_pods)
ready=$(jq '[.[] | select(.state == "ready" and .pid > 0)] | length' <<<"$js")
check "$N pods up, every worker Ready ($ready)" test "$ready" -eq "$N"
for ((i = 0; i < N; i++)); do
	PIDS[i]=$(jq -r --arg c "wk-$i" '.[] | select(.cid == $c) | .pid' <<<"$js")
done
IFX0=$(jq -r '.[] | select(.cid == "wk-0") | .ifindex' <<<"$js")

for ((i = 0; i < N; i++)); do
	send "${NSN[i]}" "$PKTS" && SENT[i]=$((SENT[i] + PKTS))
done
check "every worker counted the $PKTS packets its pod sent" wait_counts

# --- 2. kill -9 the supervisor -----------------------------------------
ZYG=$(sup_status_json | jq -r '.zygote_pid')
sup_kill9
alive=0
for ((i = 0; i < N; i++)); do
	alive "${PIDS[i]}" && alive=$((alive + 1))
done
check "supervisor killed: all $N workers alive ($alive)" test "$alive" -eq "$N"
for ((i = 0; i < N; i++)); do
	send "${NSN[i]}" "$PKTS" && SENT[i]=$((SENT[i] + PKTS))
done
sleep 0.3
alive=0
for ((i = 0; i < N; i++)); do
	alive "${PIDS[i]}" && alive=$((alive + 1))
done
check "no supervisor, $PKTS more packets per pod: all $N workers still alive ($alive)" \
	test "$alive" -eq "$N"
[[ -n $ZYG ]] && for ((w = 0; w < 20; w++)); do
	kill -0 "$ZYG" 2>/dev/null || break
	sleep 0.1
done
check "the old zygote (${ZYG:-none}) left with its supervisor" \
	bash -c "[[ ${ZYG:-0} -gt 0 ]] && ! kill -0 ${ZYG:-0} 2>/dev/null"

# --- 3. restart: adoption ----------------------------------------------
t0=$(now_ms)
"$SUP" run --state-dir "$STATE" --socket "$SOCK" --node-name "e2e-$$" --log-level debug \
	>>"$T/sup.log" 2>&1 </dev/null &
SUP_PID=$!
CLEAN_PIDS+=("$SUP_PID")
adopted_ms=""
for ((w = 0; w < 500; w++)); do
	if [[ -S $SOCK ]] && js=$(timeout 2 "$SUP" status --json --socket "$SOCK" 2>/dev/null); then
		adopted_ms=$(($(now_ms) - t0))
		break
	fi
	sleep 0.01
done
js=$(status_pods)
same=0
for ((i = 0; i < N; i++)); do
	p=$(jq -r --arg c "wk-$i" '.[] | select(.cid == $c and .state == "ready") | .pid' <<<"$js")
	[[ $p == "${PIDS[i]}" ]] && same=$((same + 1))
done
n_adopt=$(grep -c "worker [0-9]* adopted (protocol" "$T/sup.log")
echo "# restart: supervisor serving with every record settled after ${adopted_ms:-never} ms;" \
	"$n_adopt adoptions logged"
check "restart: all $N workers adopted, same pids ($same)" test "$same" -eq "$N"
check "restart: adopted and serving within 1000 ms (${adopted_ms:-never} ms)" \
	test "${adopted_ms:-99999}" -le $((1000 * TIME_SCALE))
check "no packet lost across the supervisor's death" wait_counts

# --- 4. kill -9 one worker ---------------------------------------------
W0=${PIDS[0]}
: >"$T/gaps"
(
	# Tight loop: any moment without ts0 in the pod is written down.
	end=$(($(now_ms) + 1500))
	while [[ $(now_ms) -lt $end ]]; do
		ip -n "${NSN[0]}" link show ts0 >/dev/null 2>&1 || echo "missing $(now_ms)" >>"$T/gaps"
	done
) &
LOOP=$!
sleep 0.2
t0=$(now_ms)
kill -KILL "$W0"
back_ms=""
for ((w = 0; w < 300; w++)); do
	p=$(status_pods | jq -r '.[] | select(.cid == "wk-0" and .state == "ready") | .pid')
	if [[ -n $p && $p != "$W0" && $p != 0 ]]; then
		back_ms=$(($(now_ms) - t0))
		NEW0=$p
		break
	fi
	sleep 0.01
done
wait "$LOOP"
loops=$(wc -l <"$T/gaps")
echo "# worker kill -9: pod 0's new worker ${NEW0:-none} Ready after ${back_ms:-never} ms"
check "worker killed: ts0 never left the pod ($loops polls without it)" test "$loops" -eq 0
check "worker killed: back within 500 ms (${back_ms:-never} ms)" \
	test "${back_ms:-99999}" -le $((500 * TIME_SCALE))
ifx=$(status_pods | jq -r '.[] | select(.cid == "wk-0") | .ifindex')
check "worker killed: same ts0 (ifindex $IFX0 -> $ifx)" test "$ifx" == "$IFX0"
tunfd=$(grep -l '^iff:[[:space:]]*ts0' /proc/"${NEW0:-0}"/fdinfo/* 2>/dev/null | wc -l)
check "the new worker holds the pod's TUN (an fd attached to ts0: $tunfd)" test "$tunfd" -eq 1
PIDS[0]=${NEW0:-0}
# The new worker counts from zero: what the pod sends now.
SENT[0]=0
send "${NSN[0]}" "$PKTS" && SENT[0]=$PKTS
check "the new worker counts the pod's packets" wait_counts
others=0
for ((i = 1; i < N; i++)); do
	alive "${PIDS[i]}" && others=$((others + 1))
done
check "the other $((N - 1)) workers untouched ($others)" test "$others" -eq $((N - 1))

# --- 5. kill -9 the zygote ---------------------------------------------
ZYG=$(sup_status_json | jq -r '.zygote_pid')
check "the supervisor has a zygote (${ZYG:-none})" test "${ZYG:-0}" -gt 0
check "the zygote ($ZYG) is the supervisor's child running --zygote" \
	grep -qx -- --zygote <(tr '\0' '\n' <"/proc/${ZYG:-0}/cmdline")
kill -KILL "${ZYG:-0}"
NZYG=""
for ((w = 0; w < 100; w++)); do
	NZYG=$(sup_status_json | jq -r '.zygote_pid')
	[[ $NZYG -gt 0 && $NZYG != "$ZYG" ]] && break
	NZYG=""
	sleep 0.05
done
check "zygote killed: a new zygote ($ZYG -> ${NZYG:-none})" test -n "$NZYG"
js=$(status_pods)
same=0
for ((i = 0; i < N; i++)); do
	p=$(jq -r --arg c "wk-$i" '.[] | select(.cid == $c and .state == "ready") | .pid' <<<"$js")
	[[ $p == "${PIDS[i]}" ]] && same=$((same + 1))
done
check "zygote killed: no worker touched ($same of $N same and ready)" test "$same" -eq "$N"
ns_new "extra" || tscni_finish
EXTRA=$NS_NAME
NETNS=$(ns_path "$EXTRA") CID="wk-extra" cni "$(NETNS=$(ns_path "$EXTRA") mkconf 1.0.0)" \
	CNI_COMMAND=ADD "CNI_ARGS=K8S_POD_UID=uid-wk-$$-extra"
expect_ok "an ADD after the zygote's restart"
st=$(status_pods | jq -r '.[] | select(.cid == "wk-extra") | "\(.state) \(.pid)"')
check "its worker comes from the new zygote and is Ready ($st)" test "${st%% *}" == ready

# --- 6. DEL everything -------------------------------------------------
for ((i = 0; i < N; i++)); do
	NETNS=$(ns_path "${NSN[i]}") CID="wk-$i" \
		cni "$(NETNS=$(ns_path "${NSN[i]}") mkconf 1.0.0 'del(.prevResult)')" CNI_COMMAND=DEL
	[[ $RC -eq 0 ]] || fail "DEL of pod $i: exit $RC ${OUT:0:200}"
done
NETNS=$(ns_path "$EXTRA") CID="wk-extra" \
	cni "$(NETNS=$(ns_path "$EXTRA") mkconf 1.0.0 'del(.prevResult)')" CNI_COMMAND=DEL
left=0
for ((w = 0; w < 30; w++)); do
	left=0
	for ((i = 0; i < N; i++)); do
		alive "${PIDS[i]}" && left=$((left + 1))
	done
	[[ $left -eq 0 ]] && break
	sleep 0.1
done
check "DEL stopped every worker ($left left)" test "$left" -eq 0
ts0=0
for ((i = 0; i < N; i++)); do
	has_link "${NSN[i]}" ts0 && ts0=$((ts0 + 1))
done
check "no ts0 left after DEL ($ts0)" test "$ts0" -eq 0
check "no attachment record left" test -z "$(state_records)"
tscni_finish
