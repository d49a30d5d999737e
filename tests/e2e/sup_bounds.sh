#!/bin/bash
# e2e: the supervisor holds up under misbehaving CNI-socket clients and keeps
# its secrets and its socket (docs/design.md §2, "Bounds").
#
#   sup_bounds.sh conns | partial | pipeline | dumpable | second | fdlimit | pool
#
#   host netns
#   ┌──────────────────────────────────────────────────────────┐
#   │ sock_flood ──┐                                            │
#   │ plugin_run ──┼── $T/run/cni.sock ── tailscale-cni-supervisor (A)
#   │ supervisor B ┘   ($T/run/cni.sock.lock)   │ workers ── pod netns
#   └──────────────────────────────────────────────────────────┘
#
# conns: a client that sends verbose STATUS and never reads a reply, and
#   2000 connections that send nothing: the supervisor stays under 32 MB RSS
#   and its connection cap + 64 fds, logs the cap once, and serves an ADD.
# partial: 20 connections each holding half of a 1 MiB frame: closed within
#   15 s, the supervisor's RSS back under 32 MB.
# pipeline: 3000 verbose STATUS written at once on one connection with two
#   pods up: all answered, both workers keep their pid, none is ended.
# dumpable: the supervisor is not dumpable (PR_GET_DUMPABLE, asked through
#   gdb, is 0 where a plain root process says 1) and its core limit is 0.
# second: a second supervisor with another state dir on the live socket
#   refuses to start, the first stays reachable on it; once the first is
#   killed (-9), a new one takes the stale socket over.
# fdlimit: the open-file soft limit is raised to the hard limit; under a hard
#   limit too low for a pod, ADD fails with a clear error and STATUS works.
# pool: every threadpool thread stuck (freeze_threads stops all threads but
#   the loop's): within 10 s health is not-ready naming the threadpool, and
#   the plugin's CNI STATUS fails with code 50 and that reason; once the
#   threads go on, health is ready again within 3 s and STATUS succeeds.
source "$(dirname "$0")/../lib/common.sh"

CASE=${1:?usage: sup_bounds.sh conns|partial|pipeline|dumpable|second|fdlimit|pool}
tscni_init "bounds-$CASE"
FLOOD=$TSCNI_BUILD_DIR/tests/e2e/sock_flood

# conn_max PID: the supervisor's connection cap, proc_limits_conn_max of its
# open-file limit: a quarter of it within [128, 1024].
conn_max()
{
	local n
	n=$(awk '/^Max open files/ { print $4 }' "/proc/$1/limits")
	[[ $n == unlimited ]] && n=$((1 << 30))
	n=$((n / 4))
	((n < 128)) && n=128
	((n > 1024)) && n=1024
	echo "$n"
}

# flood OUT ARGS...: sock_flood ARGS in the background, its report to OUT;
# returns once the report is there (at most 30 s).
flood()
{
	local out=$1 i
	shift
	"$FLOOD" "$@" >"$out" 2>&1 &
	CLEAN_PIDS+=($!)
	for ((i = 0; i < 300; i++)); do
		[[ -s $out ]] && return 0
		sleep 0.1
	done
	return 1
}

rss_kb()
{
	awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

fd_count()
{
	ls "/proc/$1/fd" | wc -l
}

# add_pod TAG: a netns and an ADD through the real plugin; sets NS, NETNS.
add_pod()
{
	ns_new "$1" || return 1
	NS=$NS_NAME
	NETNS=$(ns_path "$NS")
	CID=c-$1
	cni "$(mkconf 1.0.0)" CNI_COMMAND=ADD "CNI_ARGS=K8S_POD_UID=uid-$$-$1;K8S_POD_NAME=$1"
}

case_conns()
{
	local rss0 rss fds out_idle out_noread cap
	sup_start || return
	rss0=$(rss_kb "$SUP_PID")
	cap=$(conn_max "$SUP_PID")
	# The non-reading client writes until the supervisor stops reading
	# it (2 s without room); its connection goes once stalled for 10 s.
	local i
	flood "$T/noread.out" noread "$SOCK" 300000 40
	rss=$(rss_kb "$SUP_PID")
	echo "# $(cat "$T/noread.out"): supervisor RSS ${rss} kB"
	if [[ $SANITIZED -eq 0 ]]; then
		check "supervisor RSS ${rss} kB < 32 MB with a non-reading client" \
			test "$rss" -lt 32768
	fi
	for ((i = 0; i < 150; i++)); do
		grep -q 'CNI connection stalled' "$T/sup.log" && break
		sleep 0.1
	done
	check "the non-reading client's connection is closed within 15 s" \
		grep -q 'CNI connection stalled' "$T/sup.log"
	"$FLOOD" noread "$SOCK" 300000 40 >"$T/noread.out" 2>&1 &
	CLEAN_PIDS+=($!)
	flood "$T/idle.out" idle "$SOCK" 2000 70
	out_noread=$(cat "$T/noread.out")
	out_idle=$(cat "$T/idle.out")
	echo "# supervisor RSS before: ${rss0} kB; noread: $out_noread; idle: $out_idle"
	check "the idle client opened its 2000 connections" grep -qx "opened=2000" "$T/idle.out"
	add_pod p1
	expect_ok "ADD while 2000 idle connections and a non-reading client are open" ||
		echo "# stderr: ${ERR:0:300}"
	rss=$(rss_kb "$SUP_PID")
	fds=$(fd_count "$SUP_PID")
	echo "# supervisor RSS ${rss} kB, ${fds} fds"
	if [[ $SANITIZED -eq 1 ]]; then
		pass "RSS bound not applied to a sanitizer build (${rss} kB)"
	else
		check "supervisor RSS ${rss} kB < 32 MB" test "$rss" -lt 32768
	fi
	check "supervisor fds $fds <= $cap (connection cap) + 64" test "$fds" -le $((cap + 64))
	check "the connection cap is logged once" \
		test "$(grep -c 'idle: the idle ones are closed' "$T/sup.log")" -eq 1
	# The idle ones go after 30 s (their client holds them 70 s).
	local gone=0 end=$((SECONDS + 38))
	while ((SECONDS < end)); do
		if [[ $(fd_count "$SUP_PID") -le 40 ]]; then
			gone=1
			break
		fi
		sleep 0.5
	done
	check "idle connections are closed ($(fd_count "$SUP_PID") fds left)" test $gone -eq 1
	check "STATUS still answered" sup_status_json
}

case_partial()
{
	local rss i
	sup_start || return
	flood "$T/partial.out" partial "$SOCK" 20 60
	echo "# $(cat "$T/partial.out"): supervisor RSS $(rss_kb "$SUP_PID") kB, $(fd_count "$SUP_PID") fds"
	check "20 connections each sent half a frame" grep -qx "opened=20" "$T/partial.out"
	for ((i = 0; i < 150; i++)); do
		[[ $(grep -c 'CNI connection stalled' "$T/sup.log") -ge 20 ]] && break
		sleep 0.1
	done
	check "all 20 closed within 15 s" test "$(grep -c 'CNI connection stalled' "$T/sup.log")" -ge 20
	rss=$(rss_kb "$SUP_PID")
	if [[ $SANITIZED -eq 0 ]]; then
		check "supervisor RSS ${rss} kB < 32 MB after they went" test "$rss" -lt 32768
	fi
	check "STATUS still answered" sup_status_json
}

case_pipeline()
{
	sup_start || return
	add_pod p1
	expect_ok "ADD p1" || return
	add_pod p2
	expect_ok "ADD p2" || return
	local before after out
	before=$(sup_status_json | jq -c '[.pods[] | [.container_id, .worker_pid]] | sort')
	out=$("$FLOOD" pipeline "$SOCK" 3000)
	echo "# $out; workers before: $before"
	check "3000 pipelined verbose STATUS all answered" test "$out" == "sent=3000 replies=3000"
	sleep 1
	after=$(sup_status_json | jq -c '[.pods[] | [.container_id, .worker_pid]] | sort')
	check "both workers keep their pid ($after)" test "$after" == "$before"
	check "no worker was ended" bash -c "! grep -E 'outgoing queue full|killed by signal' '$T/sup.log'"
	check "no worker respawned" jqq '[.pods[].worker_respawns // 0] | all(. == 0)' \
		<<<"$(sup_status_json)"
}

# dumpable PID: PR_GET_DUMPABLE inside PID, asked through gdb (the process
# stops for the call and runs on).
dumpable()
{
	gdb -p "$1" -batch -nx \
		-ex 'print ((int(*)(int,long,long,long,long))prctl)(3,0,0,0,0)' 2>/dev/null |
		sed -n 's/^\$1 = \([0-9]*\)$/\1/p'
}

case_dumpable()
{
	if ! command -v gdb >/dev/null; then
		fail "gdb is needed to ask a process for PR_GET_DUMPABLE"
		return
	fi
	sleep 60 &
	local probe=$! d
	CLEAN_PIDS+=("$probe")
	d=$(dumpable "$probe")
	check "detector: a plain root process is dumpable ('$d')" test "$d" == 1
	sup_start || return
	d=$(dumpable "$SUP_PID")
	check "the supervisor is not dumpable ('$d')" test "$d" == 0
	check "the supervisor's core limit is 0" \
		grep -qE '^Max core file size +0 +0 ' "/proc/$SUP_PID/limits"
	check "the supervisor still answers" sup_status_json
}

case_second()
{
	sup_start || return
	local first=$SUP_PID rc
	mkdir -m 0700 "$T/state2"
	timeout 20 "$SUP" run --state-dir "$T/state2" --socket "$SOCK" --node-name "e2e2-$$" \
		--log-level debug >"$T/sup2.log" 2>&1 </dev/null
	rc=$?
	check "the second supervisor exits with 1 (rc $rc)" test $rc -eq 1
	check "it says why" grep -q 'refusing to start: another supervisor' "$T/sup2.log"
	check "the first still runs" kill -0 "$first"
	check "the socket is still there" test -S "$SOCK"
	check "the first answers on it" sup_status_json
	add_pod p1
	expect_ok "ADD served by the first"
	check "the first served it" grep -q "c-p1" "$T/sup.log"
	# A dead supervisor's socket is stale: the next one takes it over.
	sup_kill9
	check "a stale socket is left" test -S "$SOCK"
	sup_start
	check "a new supervisor takes the stale socket over" sup_status_json
}

case_fdlimit()
{
	# A wrapper sets the limits, then execs the supervisor (same pid).
	local wrap=$T/sup-wrap real=$SUP
	printf '#!/bin/bash\nulimit -Sn "$LIM_SOFT" && ulimit -Hn "$LIM_HARD" && exec %q "$@"\n' \
		"$real" >"$wrap"
	chmod 0755 "$wrap"
	SUP=$wrap LIM_HARD=4096 LIM_SOFT=1024 sup_start || return
	check "soft open-file limit raised to the hard limit" \
		grep -qE '^Max open files +4096 +4096 ' "/proc/$SUP_PID/limits"
	sup_stop
	SUP=$wrap LIM_HARD=150 LIM_SOFT=150 sup_start || return
	add_pod p1
	check "ADD under a 150-fd limit fails (rc $RC)" test "$RC" -eq 1
	check "with a clear error (code 11, open-file limit)" \
		jqq '.code == 11 and (.msg | test("open-file limit"))' <<<"$OUT"
	echo "# $OUT"
	check "STATUS still answered" sup_status_json
	check "no ts0 was made" bash -c "! ip -n $NS link show ts0 >/dev/null 2>&1"
}

# health: the supervisor's health as status --json says it.
health()
{
	sup_status_json | jq -r .health
}

# cni_status: the plugin's CNI STATUS (CNI 1.1.0), result in RC and OUT.
cni_status()
{
	cni "$(mkconf 1.1.0 'del(.prevResult)')" CNI_COMMAND=STATUS CNI_CONTAINERID= \
		CNI_NETNS= CNI_IFNAME=
}

case_pool()
{
	local i h t0 t1 n
	sup_start || return
	add_pod p1
	expect_ok "ADD (the pool's threads are running)" || return
	check "health ready at first" test "$(health)" == ready
	mkfifo "$T/thaw"
	"$TSCNI_BUILD_DIR/tests/e2e/freeze_threads" "$SUP_PID" <"$T/thaw" >"$T/frozen" \
		2>&1 &
	CLEAN_PIDS+=($!)
	exec 7>"$T/thaw"
	for ((i = 0; i < 50; i++)); do
		[[ -s $T/frozen ]] && break
		sleep 0.1
	done
	n=$(sed -n 's/^frozen //p' "$T/frozen")
	check "the supervisor's threads but its loop's are stopped ($(cat "$T/frozen"))" \
		test "${n:-0}" -ge 1
	t0=$(date +%s%3N)
	for ((i = 0; i < 100; i++)); do
		h=$(health)
		[[ $h != ready ]] && break
		sleep 0.1
	done
	t1=$(date +%s%3N)
	echo "# health $h $((t1 - t0)) ms after the pool stopped: $(sup_status_json | jq -r .reason)"
	check "within 10 s health is not-ready" test "$h" == not-ready
	check "status --json names the threadpool" \
		jqq '.reason | test("threadpool")' <<<"$(sup_status_json)"
	cni_status
	check "CNI STATUS fails with code 50 naming the threadpool (rc $RC)" \
		jqq '.code == 50 and (.details | test("threadpool"))' <<<"$OUT"
	echo "# $OUT"
	check "the log says so once" test "$(grep -c 'not ready: every threadpool thread' "$T/sup.log")" -eq 1
	exec 7>&-
	for ((i = 0; i < 30; i++)); do
		h=$(health)
		[[ $h == ready ]] && break
		sleep 0.1
	done
	check "once the threads go on, health is ready again within 3 s" test "$h" == ready
	check "the log says how long the pool was stuck" grep -q 'threadpool free again after' "$T/sup.log"
	cni_status
	expect_ok "CNI STATUS succeeds again" 1
}

"case_$CASE"
tscni_finish
