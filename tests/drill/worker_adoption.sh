#!/bin/bash
# drill: re-adoption never trusts a record (the second
# list), and roll-workers replaces every worker with the same ts0.
#
#   pods A B C E F (ts0 + worker each), the supervisor killed with -9, then
#   the records edited with record_edit (sealed like the supervisor's):
#     A  worker pid -> an unrelated live process (sleep), its start time too
#     B, C  their worker identities swapped
#     E  boot id -> another boot's
#     F  untouched: adopted
#   restart (as an upgraded supervisor speaking protocol 1..4) -> A B C E
#   refused, each logged, each given a new worker on a rebuilt ts0; the sleep
#   untouched; F adopted with protocol 3.
#   kill -9, restart speaking only protocol 4 -> the version-1..3 workers are
#   refused ("no common protocol version", logged), none adopted, CHECK
#   answers 103 "worker not running".
#   restart normally -> every pod has a worker again, CHECK passes.
#   roll-workers -> every worker replaced one at a time: new pids, same ts0
#   (ifindex), ts0 never missing in a polled pod, packets still counted.
source "$(dirname "$0")/../lib/common.sh"
tscni_init wadopt

EDIT=$TSCNI_BUILD_DIR/tests/drill/record_edit
[[ -x $EDIT ]] || {
	echo "wadopt: $EDIT is missing: build first" >&2
	exit 1
}
PODS=(A B C E F)
declare -A NSN PID IFX REC ADDRES

now_ms()
{
	date +%s%3N
}

status_pods()
{
	sup_status_json | jq -c '[.pods[] | {cid: .container_id, pid: .worker_pid,
		state: .worker_state, rx: .tun_rx_packets, ifindex: .ifindex}]'
}

pod_field()
{
	jq -r --arg c "wa-$2" ".[] | select(.cid == \$c) | .$3" <<<"$1"
}

# sup_run ARGS...: starts the supervisor and waits until it serves.
sup_run()
{
	sup_start "$@"
}

# all_ready: every pod's worker Ready (polled up to 5 s).
all_ready()
{
	local w js
	for ((w = 0; w < 50; w++)); do
		js=$(status_pods)
		[[ $(jq '[.[] | select(.state == "ready" and .pid > 0)] | length' <<<"$js") \
			-eq ${#PODS[@]} ]] && return 0
		sleep 0.1
	done
	echo "# not all ready: $js"
	return 1
}

# check_pod P: CHECK as libcni sends it, with the cached ADD result.
check_pod()
{
	local p=$1 conf
	conf=$(NETNS=$(ns_path "${NSN[$p]}") mkconf 1.0.0)
	conf=$(conf_with_prev "$conf" "${ADDRES[$p]}")
	NETNS=$(ns_path "${NSN[$p]}") CID="wa-$p" cni "$conf" CNI_COMMAND=CHECK \
		"CNI_ARGS=K8S_POD_UID=uid-wa-$$-$p"
}

snapshot()
{
	local js p
	js=$(status_pods)
	for p in "${PODS[@]}"; do
		PID[$p]=$(pod_field "$js" "$p" pid)
		IFX[$p]=$(pod_field "$js" "$p" ifindex)
	done
}

sup_run || tscni_finish
for p in "${PODS[@]}"; do
	ns_new "$p" || tscni_finish
	NSN[$p]=$NS_NAME
	ip netns exec "$NS_NAME" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
		net.ipv6.conf.default.disable_ipv6=1
	ip -n "$NS_NAME" addr add 192.0.2.1/32 dev lo
	NETNS=$(ns_path "$NS_NAME") CID="wa-$p" cni "$(NETNS=$(ns_path "$NS_NAME") mkconf 1.0.0)" \
		CNI_COMMAND=ADD "CNI_ARGS=K8S_POD_UID=uid-wa-$$-$p"
	[[ $RC -eq 0 ]] || {
		fail "ADD of pod $p: ${OUT:0:300}"
		tscni_finish
	}
	ADDRES[$p]=$OUT
	REC[$p]=$(find "$STATE/pods/uid-wa-$$-$p/attachments" -name '*.pb' | head -1)
done
check "every pod's worker Ready" all_ready
snapshot
# Ready is recorded asynchronously (threadpool): wait for the records.
for ((w = 0; w < 50; w++)); do
	n=0
	for p in "${PODS[@]}"; do
		[[ $("$EDIT" "${REC[$p]}" | cut -d' ' -f1) == "${PID[$p]}" ]] && n=$((n + 1))
	done
	[[ $n -eq ${#PODS[@]} ]] && break
	sleep 0.1
done
check "every record names its worker's pid ($n of ${#PODS[@]})" test "$n" -eq ${#PODS[@]}
echo "# F's record: $("$EDIT" "${REC[F]}")"

# --- hostile records -----------------------------------------------------
sup_kill9
sleep 600 </dev/null >/dev/null 2>&1 &
UNREL=$!
CLEAN_PIDS+=("$UNREL")
UNREL_START=$(awk '{print $22}' "/proc/$UNREL/stat")
"$EDIT" "${REC[A]}" --pid "$UNREL" --start-time "$UNREL_START"
cp "${REC[B]}" "$T/b.pb"
"$EDIT" "${REC[B]}" --worker-from "${REC[C]}"
"$EDIT" "${REC[C]}" --worker-from "$T/b.pb"
"$EDIT" "${REC[E]}" --boot-id 00000000-0000-4000-8000-000000000000
check "records edited (A -> pid $UNREL; B <-> C; E foreign boot)" \
	test "$("$EDIT" "${REC[B]}" | cut -d' ' -f1)" == "${PID[C]}"
mark=$(wc -l <"$T/sup.log")
sup_run --test-worker-proto 1:4 || tscni_finish
check "pods' workers Ready after the restart" all_ready
log=$(tail -n +"$((mark + 1))" "$T/sup.log")
js=$(status_pods)
newpid()
{
	pod_field "$js" "$1" pid
}
check "A: the unrelated process was not adopted (logged)" \
	grep -q "pod uid-wa-$$-A: not adopting the worker recorded as pid $UNREL: the rendezvous peer is not the recorded process" <<<"$log"
check "A: the unrelated process $UNREL is untouched" kill -0 "$UNREL"
check "A: a new worker ($(newpid A), was ${PID[A]}, unrelated $UNREL)" \
	bash -c "[[ $(newpid A) -gt 0 && $(newpid A) != ${PID[A]} && $(newpid A) != $UNREL ]]"
check "B: C's worker not adopted for B (logged)" \
	grep -q "pod uid-wa-$$-B: not adopting the worker recorded as pid ${PID[C]}:" <<<"$log"
check "C: B's worker not adopted for C (logged)" \
	grep -q "pod uid-wa-$$-C: not adopting the worker recorded as pid ${PID[B]}:" <<<"$log"
check "B, C: new workers ($(newpid B), $(newpid C); were ${PID[B]}, ${PID[C]})" \
	bash -c "[[ $(newpid B) != ${PID[B]} && $(newpid B) != ${PID[C]} && \
		$(newpid C) != ${PID[B]} && $(newpid C) != ${PID[C]} ]]"
check "E: a foreign boot id is never adopted (logged)" \
	grep -q "pod uid-wa-$$-E: not adopting the worker recorded as pid ${PID[E]}: the record is from another boot" <<<"$log"
check "E: a new worker ($(newpid E), was ${PID[E]})" test "$(newpid E)" != "${PID[E]}"
check "F: adopted, same pid ($(newpid F))" test "$(newpid F)" == "${PID[F]}"
check "F: adoption logged with protocol 3 by a 1..4 supervisor" \
	grep -q "wa-F.*worker ${PID[F]} adopted (protocol 3)" <<<"$log"
gone=0
for ((w = 0; w < 30; w++)); do
	gone=0
	for p in A B C E; do
		kill -0 "${PID[$p]}" 2>/dev/null || gone=$((gone + 1))
	done
	[[ $gone -eq 4 ]] && break
	sleep 0.1
done
check "the 4 refused workers lost their ts0 and left ($gone of 4)" test "$gone" -eq 4
for p in "${PODS[@]}"; do
	check_pod "$p"
	expect_ok "CHECK of pod $p after the restart"
done

# --- a supervisor that speaks only protocol 4 ---------------------------
snapshot
sup_kill9
mark=$(wc -l <"$T/sup.log")
sup_run --test-worker-proto 4:4 || tscni_finish
sleep 0.5
log=$(tail -n +"$((mark + 1))" "$T/sup.log")
n=$(grep -c "not adopting the worker recorded as pid [0-9]*: hello: no common protocol version" \
	<<<"$log")
check "version 1..3 workers refused by a version-4-only supervisor, each logged ($n of 5)" \
	test "$n" -eq 5
js=$(status_pods)
adopted=0
for p in "${PODS[@]}"; do
	[[ $(newpid "$p") == "${PID[$p]}" ]] && adopted=$((adopted + 1))
done
check "none adopted ($adopted)" test "$adopted" -eq 0
check_pod F
expect_err 103 "CHECK names the missing worker"
check "... as 'worker not running'" grep -q '"worker not running"' <<<"$OUT"
sup_stop

# --- back to a normal supervisor ----------------------------------------
sup_run || tscni_finish
check "a normal supervisor gives every pod a worker again" all_ready
for p in "${PODS[@]}"; do
	check_pod "$p"
	expect_ok "CHECK of pod $p"
done

# --- roll-workers ---------------------------------------------------------
snapshot
: >"$T/gaps"
(
	end=$(($(now_ms) + 3000))
	while [[ $(now_ms) -lt $end ]]; do
		ip -n "${NSN[A]}" link show ts0 >/dev/null 2>&1 || echo "missing" >>"$T/gaps"
	done
) &
LOOP=$!
t0=$(now_ms)
out=$(timeout 60 "$SUP" roll-workers --socket "$SOCK" 2>&1)
rc=$?
roll_ms=$(($(now_ms) - t0))
wait "$LOOP"
echo "# roll-workers ($roll_ms ms): $out"
check "roll-workers succeeded (exit $rc)" test "$rc" -eq 0
check "roll-workers replaced all 5" grep -q "rolled: 5  failed: 0" <<<"$out"
js=$(status_pods)
changed=0 same_ifx=0
for p in "${PODS[@]}"; do
	[[ $(newpid "$p") != "${PID[$p]}" && $(pod_field "$js" "$p" state) == ready ]] &&
		changed=$((changed + 1))
	[[ $(pod_field "$js" "$p" ifindex) == "${IFX[$p]}" ]] && same_ifx=$((same_ifx + 1))
done
check "every worker is a new, Ready process ($changed of 5)" test "$changed" -eq 5
check "every ts0 is the same device ($same_ifx of 5 same ifindex)" test "$same_ifx" -eq 5
check "ts0 never left pod A during the roll ($(wc -l <"$T/gaps") polls without it)" \
	test ! -s "$T/gaps"
ip -n "${NSN[A]}" route add 100.64.0.0/10 dev ts0
ip netns exec "${NSN[A]}" bash -c 'for k in 1 2 3 4 5; do echo -n x >/dev/udp/100.64.0.1/9; done'
rx=""
for ((w = 0; w < 30; w++)); do
	rx=$(status_pods | jq -r '.[] | select(.cid == "wa-A") | .rx')
	[[ $rx == 5 ]] && break
	sleep 0.1
done
check "the rolled worker of A counts its pod's packets ($rx of 5)" test "$rx" == 5

for p in "${PODS[@]}"; do
	NETNS=$(ns_path "${NSN[$p]}") CID="wa-$p" \
		cni "$(NETNS=$(ns_path "${NSN[$p]}") mkconf 1.0.0 'del(.prevResult)')" CNI_COMMAND=DEL
	[[ $RC -eq 0 ]] || fail "DEL of pod $p"
done
check "no attachment record left" test -z "$(state_records)"
tscni_finish
