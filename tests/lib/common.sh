# shellcheck shell=bash
# Shared helpers for the e2e, drill and bench scripts. Source it, then call
# tscni_init. Everything a test starts lives under $T (a fresh temp dir), every
# process is stopped by pid and every netns deleted by the EXIT trap.
#
#   host netns ── tailscale-cni (via plugin_run) ──unix socket── supervisor | stub_daemon
#        │                                          $T/run/cni.sock   state: $T/state
#        └── ip netns tscni-<test>-<pid>-<tag> ... (pods; ts0 appears inside)
#
# Results: every check prints "ok - ..." or "FAIL - ...", and tscni_finish
# exits 1 if any check failed.

set -u
set -o pipefail

TSCNI_BUILD_DIR=${TSCNI_BUILD_DIR:-}
TSCNI_SOURCE_DIR=${TSCNI_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# What ADD reports for ts0's addresses: "none" until the control-plane issue
# lands (ts0 in interfaces, no new ips entries), "tailscale" once addresses
# are given out (two new ips, inside the Tailscale ranges, interface = ts0).
TSCNI_E2E_ADDRESSES=${TSCNI_E2E_ADDRESSES:-none}
ALL_VERSIONS="0.3.0 0.3.1 0.4.0 1.0.0 1.1.0"

T=""
FAILS=0
CHECKS=0
CLEAN_PIDS=()
CLEAN_NETNS=()
CLEAN_FILES=()
# Shell commands run first at cleanup (e.g. podman rm -f), each by eval.
CLEAN_CMDS=()
SUP_PID=""
SUP_NETNS=""
STUB_PID=""

# tscni_init NAME: sets the binaries, $T, $SOCK, $STATE and the EXIT trap.
tscni_init()
{
	local name=$1

	if [[ $EUID -ne 0 ]]; then
		echo "$name: needs root (netns, TUN)" >&2
		exit 1
	fi
	if [[ -z $TSCNI_BUILD_DIR ]]; then
		echo "$name: TSCNI_BUILD_DIR is not set (run through ctest, or pass the build dir)" >&2
		exit 1
	fi
	PLUGIN=$TSCNI_BUILD_DIR/cni/tailscale-cni
	SUP=$TSCNI_BUILD_DIR/supervisor/tailscale-cni-supervisor
	STUB=$TSCNI_BUILD_DIR/tests/e2e/stub_daemon
	RUNNER=$TSCNI_BUILD_DIR/tests/e2e/plugin_run
	local b
	for b in "$PLUGIN" "$SUP" "$STUB" "$RUNNER"; do
		if [[ ! -x $b ]]; then
			echo "$name: $b is missing: build first" >&2
			exit 1
		fi
	done
	# Sanitizer builds run several times slower and ASan's shadow memory
	# inflates RSS: time bounds are scaled and RSS bounds not applied.
	SANITIZED=0
	TIME_SCALE=1
	if grep -q '^TSCNI_SANITIZE:STRING=.\+' "$TSCNI_BUILD_DIR/CMakeCache.txt" 2>/dev/null; then
		SANITIZED=1
		TIME_SCALE=3
	fi
	T=$(mktemp -d "/tmp/tscni-$name.XXXXXX")
	chmod 0700 "$T"
	mkdir -m 0700 "$T/run" "$T/state"
	SOCK=$T/run/cni.sock
	STATE=$T/state
	TEST_NAME=$name
	trap tscni_cleanup EXIT
	# A plain signal would skip the EXIT trap: turn it into an exit.
	trap 'exit 129' HUP
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

# Stops every process we started (TERM, then KILL after 3 s) and deletes
# every netns and file we made. Keeps $T when a check failed, for the logs.
tscni_cleanup()
{
	local rc=$?
	local p n i

	for n in "${CLEAN_CMDS[@]}"; do
		eval "$n" >/dev/null 2>&1
	done
	for p in "${CLEAN_PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null
	done
	for p in "${CLEAN_PIDS[@]}"; do
		for ((i = 0; i < 30; i++)); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	# Whatever still runs inside our namespaces (a listener started from a
	# subshell, workers of a node netns whose pods were not deleted) is
	# ours too: killed by pid before the namespace goes.
	for n in "${CLEAN_NETNS[@]}"; do
		for p in $(ip netns pids "$n" 2>/dev/null); do
			kill -KILL "$p" 2>/dev/null
		done
	done
	for n in "${CLEAN_NETNS[@]}"; do
		ip netns del "$n" 2>/dev/null
	done
	for n in "${CLEAN_FILES[@]}"; do
		rm -f "$n"
	done
	if [[ $FAILS -eq 0 && $rc -eq 0 ]]; then
		rm -rf "$T"
	else
		echo "# $TEST_NAME: logs kept in $T"
		if [[ -f $T/sup.log ]]; then
			echo "# --- last lines of the supervisor log ($T/sup.log):"
			tail -n 30 "$T/sup.log" | sed 's/^/#   /'
		fi
	fi
}

# jqe ARGS...: jq -e on stdin that also fails on empty input (jq 1.6 -e
# exits 0 when there is no input at all, which would let a missing result
# pass every check).
jqe()
{
	local input
	input=$(cat)
	[[ -n ${input//[[:space:]]/} ]] || return 1
	jq -e "$@" <<<"$input"
}

# jqq ARGS...: jqe without printing the value.
jqq()
{
	jqe "$@" >/dev/null
}

pass()
{
	CHECKS=$((CHECKS + 1))
	echo "ok - $*"
}

fail()
{
	CHECKS=$((CHECKS + 1))
	FAILS=$((FAILS + 1))
	echo "FAIL - $*"
}

# check DESC CMD...: runs CMD, records ok/FAIL.
check()
{
	local desc=$1
	shift
	if "$@"; then
		pass "$desc"
	else
		fail "$desc"
	fi
}

tscni_finish()
{
	# No daemon of ours keeps a pod netns open (docs/cni-contract.md §1.4: a held
	# netns makes the runtime's removal fail with EBUSY).
	local n ino pid fd held=""
	for n in "${CLEAN_NETNS[@]}"; do
		ino=$(stat -L -c %i "/var/run/netns/$n" 2>/dev/null) || continue
		for pid in $SUP_PID $STUB_PID; do
			for fd in /proc/"$pid"/fd/*; do
				[[ $(readlink "$fd" 2>/dev/null) == "net:[$ino]" ]] && held+="$n(pid $pid) "
			done
		done
	done
	if [[ -n $held ]]; then
		fail "a daemon of ours holds pod netns open: $held"
	fi
	# Stop our daemons first so that a sanitizer's exit-time report (leaks)
	# reaches the logs, then look for any report there.
	sup_stop
	stub_stop
	local f
	for f in "$T/sup.log" "$T/stub.err"; do
		if [[ -f $f ]] && grep -qE 'Sanitizer|runtime error:' "$f"; then
			fail "sanitizer report in $(basename "$f"): $(grep -m 3 -E 'Sanitizer|runtime error:' "$f" | tr '\n' ' ')"
		fi
	done
	if [[ $FAILS -gt 0 ]]; then
		echo "# $TEST_NAME: $FAILS of $CHECKS checks failed"
		exit 1
	fi
	if [[ $CHECKS -eq 0 ]]; then
		echo "# $TEST_NAME: no check ran"
		exit 1
	fi
	echo "# $TEST_NAME: all $CHECKS checks passed"
	exit 0
}

# ns_new TAG: creates netns tscni-<test>-<pid>-TAG, registers it for
# deletion and sets NS_NAME (not run in $(...): the registration would be lost).
ns_new()
{
	local n="tscni-${TEST_NAME:0:10}-$$-$1"

	NS_NAME=""
	ip netns add "$n" || return 1
	CLEAN_NETNS+=("$n")
	ip -n "$n" link set lo up
	NS_NAME=$n
}

ns_path()
{
	echo "/var/run/netns/$1"
}

# ns_add_eth0 NS ADDR/LEN GW: a veth pair, eth0 inside NS with ADDR and a
# default route via GW, the peer left down in the host.
ns_add_eth0()
{
	local ns=$1 addr=$2 gw=$3
	local peer="ve${$}${RANDOM}"

	peer=${peer:0:15}
	ip link add "$peer" type veth peer name eth0 netns "$ns" || return 1
	ip -n "$ns" addr add "$addr" dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "$ns" route add default via "$gw" dev eth0 onlink
}

# --- daemons -------------------------------------------------------------

wait_socket()
{
	local path=$1 pid=$2 i

	for ((i = 0; i < 100; i++)); do
		if [[ -S $path ]]; then
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			return 1
		fi
		sleep 0.1
	done
	return 1
}

# sup_start [ARGS...]: starts the real supervisor on $SOCK with $STATE,
# logging to $T/sup.log (appended across restarts). Fails the test if it
# does not serve within 10 s.
# sup_start ARGS...: the supervisor (in netns $SUP_NETNS when set: the plugin
# still reaches it through the socket's path), logging to $SUP_LOG when set;
# with SUP_PRELOAD, it (and so the zygote and the workers) runs with that
# LD_PRELOAD (tests/bench/heap_sites.c).
sup_start()
{
	local -a pre=()

	[[ -n ${SUP_NETNS:-} ]] && pre=(ip netns exec "$SUP_NETNS")
	[[ -n ${SUP_PRELOAD:-} ]] && pre+=(env "LD_PRELOAD=$SUP_PRELOAD")
	"${pre[@]}" "$SUP" run --state-dir "$STATE" --socket "$SOCK" --node-name "e2e-$$" \
		--log-level debug "$@" >>"${SUP_LOG:-$T/sup.log}" 2>&1 </dev/null &
	SUP_PID=$!
	CLEAN_PIDS+=("$SUP_PID")
	# A socket file may be left from a killed supervisor: wait until this
	# one answers STATUS, not merely until the file exists.
	local i up=0
	for ((i = 0; i < 100; i++)); do
		kill -0 "$SUP_PID" 2>/dev/null || break
		if [[ -S $SOCK ]] && timeout 2 "$SUP" status --socket "$SOCK" >/dev/null 2>&1; then
			up=1
			break
		fi
		sleep 0.1
	done
	if [[ $up -eq 0 ]]; then
		echo "# supervisor did not come up; log:"
		tail -n 20 "${SUP_LOG:-$T/sup.log}" | sed 's/^/#   /'
		fail "supervisor starts and serves $SOCK"
		return 1
	fi
	return 0
}

# sup_stop: SIGTERM and wait (clean shutdown).
sup_stop()
{
	[[ -n $SUP_PID ]] || return 0
	kill -TERM "$SUP_PID" 2>/dev/null
	local i
	for ((i = 0; i < 50; i++)); do
		kill -0 "$SUP_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$SUP_PID" 2>/dev/null
	wait "$SUP_PID" 2>/dev/null
	SUP_PID=""
}

# sup_kill9: SIGKILL, as a crash.
sup_kill9()
{
	[[ -n $SUP_PID ]] || return 0
	kill -KILL "$SUP_PID" 2>/dev/null
	wait "$SUP_PID" 2>/dev/null
	SUP_PID=""
}

# sup_status_json: the supervisor's status --json on stdout.
sup_status_json()
{
	timeout 10 "$SUP" status --json --socket "$SOCK"
}

# sup_records: one "network containerid ifname" line per attachment the
# supervisor holds, sorted. Returns 1 if status failed.
sup_records()
{
	local js
	js=$(sup_status_json) || return 1
	jq -r '(.pods // .pod // [])[] |
		"\(.key.network // .network) \(.key.container_id // .key.containerId // .container_id // .containerId) \(.key.ifname // .ifname)"' \
		<<<"$js" | sort
}

sup_has_record()
{
	sup_records | grep -qxF "$1 $2 $3"
}

# Files under the state dir that hold attachment records.
state_records()
{
	find "$STATE/pods" -path '*/attachments/*' -type f 2>/dev/null | sort
}

# stub_start MODE [ARGS...]: stub_daemon on $SOCK; its log is $T/stub.log
# and its key table $T/stub.table.
stub_start()
{
	local mode=$1
	shift
	: >"$T/stub.log"
	"$STUB" --socket "$SOCK" --log "$T/stub.log" --table "$T/stub.table" --mode "$mode" \
		"$@" >>"$T/stub.err" 2>&1 </dev/null &
	STUB_PID=$!
	CLEAN_PIDS+=("$STUB_PID")
	if ! wait_socket "$SOCK" "$STUB_PID"; then
		cat "$T/stub.err" 2>/dev/null | sed 's/^/#   /'
		fail "stub_daemon starts on $SOCK"
		return 1
	fi
}

stub_stop()
{
	[[ -n $STUB_PID ]] || return 0
	kill -TERM "$STUB_PID" 2>/dev/null
	local i
	for ((i = 0; i < 20; i++)); do
		kill -0 "$STUB_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$STUB_PID" 2>/dev/null
	wait "$STUB_PID" 2>/dev/null
	STUB_PID=""
}

stub_connections()
{
	grep -c '^connect$' "$T/stub.log" 2>/dev/null || true
}

stub_table()
{
	cat "$T/stub.table" 2>/dev/null
}

# --- running the plugin --------------------------------------------------

# cni CONF [VAR=VAL | -VAR]...: runs the plugin as a runtime does, with the
# default env CNI_CONTAINERID=$CID CNI_NETNS=$NETNS CNI_IFNAME=eth0
# CNI_PATH=/opt/cni/bin changed by the arguments (-VAR removes VAR). The
# command is taken from CNI_COMMAND=... among the arguments. Sets RC (exit
# status, or 128+signal), SIG, WALL (ms), LAG (ms the pipes stayed open after
# exit), RSS (KiB), OUT (stdout), ERR (stderr). Checks process hygiene on
# every run: stdout empty or exactly one JSON object, exit 0 or 1 and never a
# signal, pipes at EOF when the process exits.
# PLUGIN_RUN_OPTS (array) adds options to plugin_run (e.g. --kill-after-ms).
# CNI_BIN runs another plugin than ours (e.g. /usr/lib/cni/bridge), and
# CNI_IN_NETNS runs it inside that netns (ip netns exec), as a runtime whose
# network domain is that netns.
PLUGIN_RUN_OPTS=()
EXPECT_SIGNAL=""
cni()
{
	local conf=$1
	shift
	local -A env=([CNI_CONTAINERID]="${CID:-c1}" [CNI_NETNS]="${NETNS:-}"
		[CNI_IFNAME]=eth0 [CNI_PATH]=/opt/cni/bin)
	local a
	for a in "$@"; do
		if [[ $a == -* ]]; then
			unset "env[${a#-}]"
		else
			env[${a%%=*}]=${a#*=}
		fi
	done
	local -a envv=(PATH=/usr/sbin:/usr/bin:/sbin:/bin)
	for a in "${!env[@]}"; do
		envv+=("$a=${env[$a]}")
	done
	local tag="$BASHPID.$RANDOM$RANDOM"
	local report
	local -a pre=()
	[[ -n ${CNI_IN_NETNS:-} ]] && pre=(ip netns exec "$CNI_IN_NETNS")
	report=$(env -i "${envv[@]}" "${pre[@]}" "$RUNNER" "${PLUGIN_RUN_OPTS[@]}" --stdin "$conf" \
		--stdout "$T/out.$tag" --stderr "$T/err.$tag" -- "${CNI_BIN:-$PLUGIN}")
	OUT=$(cat "$T/out.$tag")
	ERR=$(cat "$T/err.$tag")
	rm -f "$T/out.$tag" "$T/err.$tag"
	local status=${report#status=}
	status=${status%% *}
	WALL=$(sed -n 's/.*wall_ms=\([0-9-]*\).*/\1/p' <<<"$report")
	LAG=$(sed -n 's/.*eof_lag_ms=\([0-9-]*\).*/\1/p' <<<"$report")
	RSS=$(sed -n 's/.*maxrss_kb=\([0-9-]*\).*/\1/p' <<<"$report")
	SIG=""
	case $status in
	exit:*) RC=${status#exit:} ;;
	signal:*)
		SIG=${status#signal:}
		RC=$((128 + SIG))
		;;
	*)
		RC=255
		fail "plugin_run report unreadable: '$report'"
		return 0
		;;
	esac
	local verb
	verb="$(basename "${CNI_BIN:-$PLUGIN}") ${env[CNI_COMMAND]:-none}"
	# Hygiene, docs/cni-contract.md §11 last paragraph.
	if [[ -n $SIG ]]; then
		if [[ $EXPECT_SIGNAL != "$SIG" ]]; then
			fail "hygiene($verb): plugin died by signal $SIG (stderr: ${ERR:0:300})"
		fi
	elif [[ $RC -ne 0 && $RC -ne 1 ]]; then
		fail "hygiene($verb): exit status $RC (only 0 or 1 allowed)"
	fi
	if grep -qE 'Sanitizer|runtime error:' <<<"$ERR"; then
		fail "$verb: sanitizer report on stderr: $(grep -m 3 -E 'Sanitizer|runtime error:' <<<"$ERR" | tr '\n' ' ')"
	fi
	if [[ -z $SIG ]]; then
		if [[ $LAG -lt 0 || $LAG -gt 500 ]]; then
			fail "hygiene($verb): stdout/stderr still open ${LAG} ms after exit (a child kept them)"
		fi
		# The bench sets CNI_NO_JSON_CHECK=1 so that jq does not compete for
		# the CPU with the plugins being timed.
		if [[ -n $OUT && ${CNI_NO_JSON_CHECK:-0} != 1 ]] &&
			! jqe -s 'length == 1 and (.[0] | type == "object")' <<<"$OUT" >/dev/null 2>&1; then
			fail "hygiene($verb): stdout is not exactly one JSON object: ${OUT:0:300}"
		fi
		if [[ $RC -eq 1 && -z $OUT ]]; then
			fail "hygiene($verb): failed with empty stdout (stderr: ${ERR:0:300})"
		fi
	fi
	return 0
}

# expect_ok DESC: last run exited 0. For verbs with no result, pass
# empty=1 as second argument to also require empty stdout.
expect_ok()
{
	local desc=$1 empty=${2:-0}
	if [[ $RC -ne 0 ]]; then
		fail "$desc: exit $RC, stdout: ${OUT:0:400} stderr: ${ERR:0:300}"
		return 1
	fi
	if [[ $empty == 1 && -n $OUT ]]; then
		fail "$desc: stdout should be empty, got: ${OUT:0:300}"
		return 1
	fi
	pass "$desc"
}

# expect_err CODE DESC [VERSION]: exit 1, one error object with that code, a
# non-empty msg, and cniVersion = VERSION when given.
expect_err()
{
	local code=$1 desc=$2 ver=${3:-}
	if [[ $RC -ne 1 ]]; then
		fail "$desc: want err $code, got exit $RC, stdout: ${OUT:0:300} stderr: ${ERR:0:200}"
		return 1
	fi
	local got
	got=$(jq -r '.code // "none"' <<<"$OUT" 2>/dev/null)
	if [[ $got != "$code" ]]; then
		fail "$desc: want code $code, got $got: ${OUT:0:300}"
		return 1
	fi
	if ! jqe '(.msg | type == "string") and (.msg | length > 0)' <<<"$OUT" >/dev/null; then
		fail "$desc: error has no msg: $OUT"
		return 1
	fi
	if [[ -n $ver ]] && ! jqe --arg v "$ver" '.cniVersion == $v' <<<"$OUT" >/dev/null; then
		fail "$desc: error cniVersion is not $ver: $OUT"
		return 1
	fi
	pass "$desc (err $code)"
}

# --- configurations ------------------------------------------------------

# The prevResult of docs/cni-contract.md §5.3 for version V and sandbox path P:
# 0.x shaped (ips[].version) for 0.3.0/0.3.1/0.4.0, 1.x shaped otherwise.
prev_result()
{
	local v=$1 sb=$2
	jq -n --arg v "$v" --arg sb "$sb" '
	{
		cniVersion: $v,
		interfaces: [
			{name: "cni0", mac: "aa:bb:cc:00:00:01"},
			{name: "veth1a2b3c4d", mac: "aa:bb:cc:00:00:02"},
			{name: "eth0", mac: "aa:bb:cc:00:00:03", sandbox: $sb}
		],
		ips: [{address: "10.244.1.5/24", gateway: "10.244.1.1", interface: 2}],
		routes: [{dst: "10.244.0.0/16", gw: "10.244.1.1"}, {dst: "0.0.0.0/0", gw: "10.244.1.1"}],
		dns: {}
	}
	| if ($v | startswith("0.")) then .ips |= map(. + {version: "4"}) else . end'
}

# mkconf V [JQ-FILTER]: writes a request config for version V (name e2enet,
# our socket and state dir, the §5.3 prevResult with sandbox $NETNS), then
# applies JQ-FILTER; prints the file name.
mkconf()
{
	local v=$1 filter=${2:-.}
	local f
	f=$(mktemp "$T/conf.XXXXXX") || return 1
	local prev
	prev=$(prev_result "$v" "${NETNS:-}")
	jq -n --arg v "$v" --arg sock "$SOCK" --arg st "$STATE" --argjson prev "$prev" '
	{
		cniVersion: $v, name: "e2enet", type: "tailscale-cni",
		socketPath: $sock, stateDir: $st, prevResult: $prev
	}' | jq "$filter" >"$f" || return 1
	echo "$f"
}

# conf_from_result CONF RESULT: CONF with prevResult replaced by RESULT (for
# CHECK and DEL, as libcni passes the cached ADD result).
conf_with_prev()
{
	local conf=$1 res=$2
	local f
	f=$(mktemp "$T/conf.XXXXXX") || return 1
	jq --argjson r "$res" '.prevResult = $r' "$conf" >"$f" && echo "$f"
}

# --- checks on results and netns -----------------------------------------

# check_add_result DESC RESULT VERSION SANDBOX PREV [IFC]: the result is PREV
# plus our ts0 (docs/cni-contract.md §5.2, §11 case 32): same interfaces/ips/routes/
# dns prefix, ts0 appended with sandbox byte for byte, new ips per
# TSCNI_E2E_ADDRESSES, version keys per schema. Prints FAIL lines naming
# each mismatch; returns 1 if any.
check_add_result()
{
	local desc=$1 res=$2 v=$3 sb=$4 prev=$5 ifc=${6:-ts0}
	local bad=0 why
	local -a rules=(
		'.cniVersion == $v|cniVersion equals the request'\''s'
		'(.interfaces // []) as $i | ($prev.interfaces // []) as $p | ($i[0:($p|length)] == $p)|prevResult interfaces kept in order'
		'(.interfaces | length) == (($prev.interfaces // []) | length) + 1|exactly one interface appended'
		'.interfaces[-1].name == $ifc|last interface is the interface name'
		'.interfaces[-1].sandbox == $sb|ts0 sandbox equals CNI_NETNS byte for byte'
		'(.interfaces[-1].mac // "00:00:00:00:00:00") | test("^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")|ts0 mac absent or a well-formed MAC'
		'(.ips // []) as $i | ($prev.ips // []) as $p | ($i[0:($p|length)] | map(del(.version))) == ($p | map(del(.version)))|prevResult ips kept in order'
		'(.routes // []) as $r | ($prev.routes // []) as $p | $r[0:($p|length)] == $p|prevResult routes kept in order'
		'(.dns // {}) == ($prev.dns // {})|dns unchanged'
		'[(.routes // [])[(($prev.routes // []) | length):][] | .dst] | all(. != "0.0.0.0/0" and . != "::/0")|no default route added'
		'[(.routes // [])[(($prev.routes // []) | length):][] | .dst] | all(test("^100\\.(6[4-9]|[7-9][0-9]|1[01][0-9]|12[0-7])\\.") or startswith("fd7a:115c:a1e0:"))|added routes only inside the Tailscale ranges'
	)
	if [[ $v == 0.* ]]; then
		rules+=('[(.ips // [])[] | has("version")] | all|0.x: every ips entry has version'
			'(.interfaces[-1] | has("mtu") | not)|0.x: ts0 has no mtu')
	else
		rules+=('[(.ips // [])[] | has("version")] | any | not|1.x: no ips entry has version')
	fi
	local new
	new=$(jq --argjson prev "$prev" '((.ips // []) | length) - (($prev.ips // []) | length)' <<<"$res" 2>/dev/null)
	if [[ $TSCNI_E2E_ADDRESSES == none ]]; then
		rules+=('((.ips // []) | length) == (($prev.ips // []) | length)|no Tailscale addresses yet (addresses to follow)')
	else
		rules+=('((.ips // []) | length) == (($prev.ips // []) | length) + 2|exactly two new ips')
	fi
	if [[ ${new:-0} -gt 0 ]]; then
		rules+=('(.interfaces | length - 1) as $x | [(.ips)[(($prev.ips // []) | length):][] | .interface == $x] | all|new ips point at ts0'\''s index'
			'[(.ips)[(($prev.ips // []) | length):][] | .address | (test("^100\\.(6[4-9]|[7-9][0-9]|1[01][0-9]|12[0-7])\\.[0-9]+\\.[0-9]+/32$") or test("^fd7a:115c:a1e0:[0-9a-f:]*/128$"))] | all|new ips inside 100.64.0.0/10 or fd7a:115c:a1e0::/48'
			'[(.ips)[(($prev.ips // []) | length):][] | .address] | (unique | length) == length|new ips distinct')
	fi
	local r expr
	for r in "${rules[@]}"; do
		expr=${r%|*}
		why=${r##*|}
		if ! jqe --arg v "$v" --arg sb "$sb" --arg ifc "$ifc" --argjson prev "$prev" \
			"$expr" <<<"$res" >/dev/null 2>&1; then
			fail "$desc: $why; result: ${res:0:600}"
			bad=1
		fi
	done
	[[ $bad -eq 0 ]] && pass "$desc: result is prevResult plus $ifc"
	return $bad
}

# link_json NS DEV: ip -j link show (empty when absent).
link_json()
{
	ip -n "$1" -j link show dev "$2" 2>/dev/null
}

has_link()
{
	ip -n "$1" link show dev "$2" >/dev/null 2>&1
}

# check_ts0 DESC NS [ADDRS-JSON]: ts0 exists in NS, is UP, MTU 1280 and carries
# exactly the given addresses (a JSON array of "addr/len"; default: the new
# ips of $OUT, i.e. none until addresses exist).
check_ts0()
{
	local desc=$1 ns=$2 ifc=${3:-ts0}
	local lj
	lj=$(link_json "$ns" "$ifc")
	if [[ -z $lj ]]; then
		fail "$desc: $ifc missing in netns $ns"
		return 1
	fi
	local bad=0
	jqe '.[0].flags | index("UP")' <<<"$lj" >/dev/null || {
		fail "$desc: $ifc not UP: $lj"
		bad=1
	}
	jqe '.[0].mtu == 1280' <<<"$lj" >/dev/null || {
		fail "$desc: $ifc MTU is not 1280: $lj"
		bad=1
	}
	# Global addresses on ts0 must be exactly those ADD reported.
	local want have
	want=$(jq -c --arg n "$ifc" '(.interfaces | map(.name) | index($n)) as $x |
		[(.ips // [])[] | select(.interface == $x) | .address] | sort' <<<"$OUT" 2>/dev/null)
	have=$(ip -n "$ns" -j addr show dev "$ifc" scope global 2>/dev/null |
		jq -c '[.[0].addr_info[]? | "\(.local)/\(.prefixlen)"] | sort')
	if [[ -n $want && $want != "$have" ]]; then
		fail "$desc: $ifc addresses $have, ADD reported $want"
		bad=1
	fi
	[[ $bad -eq 0 ]] && pass "$desc: $ifc in $ns, UP, MTU 1280, addresses $have"
	return $bad
}

# Background jobs of a test are waited for by pid (wait_bg), never with a
# bare `wait`, which would also wait for the supervisor.
BG_PIDS=()
wait_bg()
{
	local p
	for p in "${BG_PIDS[@]}"; do
		wait "$p"
	done
	BG_PIDS=()
}

# percentile P FILE: the P-th percentile (nearest rank) of the numbers in FILE.
percentile()
{
	sort -n "$2" | awk -v p="$1" '{ a[NR] = $1 } END {
		if (NR == 0) { print "n/a"; exit }
		i = int((p / 100) * NR + 0.999999); if (i < 1) i = 1; if (i > NR) i = NR; print a[i] }'
}
