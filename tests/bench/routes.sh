#!/bin/bash
# bench: ts0's routes with 1000 peers. Prints figures; asserts only that the
# setup worked (testcontrol registered every node, the ADD succeeded, ts0
# reached the expected routes), never a timing.
#   sudo tests/bench/routes.sh <build dir> [peers]
#
#   netns NODE: testcontrol on 127.0.0.1 (1000 external nodes registered
#               through its admin API, each with a disco key, as every
#               Tailscale node has, and an endpoint on 10.201.0.9 that
#               nobody answers), tailscale-cni-supervisor, its zygote and
#               the one worker
#   netns pod 1: first, alone, with the first 10 of those nodes as peers
#   netns pod 0: ts0 100.x + fd7a:, one /32 and one /128 per peer and
#                quad-100's two (100.100.100.100, fd7a:115c:a1e0::53)
#
# Printed:
#   10 peers      pod 1's worker's PSS, idle with its control session and
#                 the first 10 nodes as peers (then pod 1 is deleted and its
#                 node removed from testcontrol);
#   registration  how long POST /nodes/register took for the other peers (one
#                 curl process, one request per connection as the admin API
#                 wants);
#   ADD           exec to exit of the plugin (plugin_run) with every peer in
#                 the first netmap;
#   routes        from ADD's return until ts0 holds all 2 x peers + 2 routes
#                 (`ip route show dev ts0 | wc -l`, v4 and v6), and when each
#                 route arrived as the kernel announced it (`ip -ts monitor
#                 route` in the pod's netns, from before the ADD): the first
#                 peer route to the last is how long netops_routes_sync spent
#                 installing them (the supervisor's log has no timestamps);
#   syncs         the supervisor's "ts0's routes: N (+a -r)" debug lines;
#   delta         one more node registered: until its /32 is on ts0; one node
#                 deleted (POST /nodes/delete): until its /32 is gone (both
#                 from when the POST was sent, polled and as announced);
#   memory        the worker's and the supervisor's PSS (smaps_rollup) with
#                 the peers and their routes, beside the 10-peer worker's;
#   sizes         the worker's per-peer structs (tests/bench/peer_sizes,
#                 compiled from the worker's headers): what every peer
#                 costs and what only a peer in use does.
export TSCNI_BUILD_DIR=${1:-${TSCNI_BUILD_DIR:-}}
source "$(dirname "$0")/../lib/common.sh"
N=${2:-1000}
M=$((N < 10 ? N : 10))
tscni_init routesb
source "$(dirname "$0")/../lib/tailnet.sh"
source "$(dirname "$0")/../lib/bench.sh"

for tool in jq curl od; do
	if ! command -v "$tool" >/dev/null; then
		echo "routes: $tool not found" >&2
		exit 1
	fi
done
if [[ ! -x $TC ]]; then
	echo "routes: $TC is missing: build first" >&2
	exit 1
fi

# die MSG: the setup did not work.
die()
{
	fail "routes: $*"
	tscni_finish
}

# counts NS: "<v4 routes> <v6 routes>" on ts0 in NS (main table).
counts()
{
	local a b
	a=$(ip -n "$1" -4 route show dev ts0 2>/dev/null | wc -l)
	b=$(ip -n "$1" -6 route show dev ts0 2>/dev/null | wc -l)
	echo "$a $b"
}

# has_v4 NS ADDR: ADDR/32 is routed into ts0 in NS. (Not `| grep -q`: with
# pipefail, ip killed by SIGPIPE after an early match would read as absent.)
has_v4()
{
	[[ -n $(ip -n "$1" -4 route show exact "$2/32" dev ts0 2>/dev/null) ]]
}

# mon_ms: $T/mon (ip -ts monitor route) as "epoch_ms text" lines in $T/mon.ms.
mon_ms()
{
	paste -d ' ' <(sed -n 's/^\[\([^]]*\)\] .*/\1/p' "$T/mon" | date -f - +%s%3N) \
		<(sed -n 's/^\[[^]]*\] //p' "$T/mon") >"$T/mon.ms"
}

# mon_first FROM_MS REGEX: the first announcement at or after FROM_MS whose
# text matches REGEX, in ms after FROM_MS ("never" if none).
mon_first()
{
	awk -v t="$1" -v re="$2" '$1 >= t { x = $0; sub(/^[0-9]+ /, "", x)
		if (x ~ re) { print $1 - t; f = 1; exit } }
		END { if (!f) print "never" }' "$T/mon.ms"
}

# --- setup: node netns, testcontrol, supervisor --------------------------------
node_ns_new || die "cannot create the node netns"
# Info: testcontrol's debug lines for each registration would slow it down.
tc_start --log-level info || die "testcontrol does not start"
tc_authkey '{"reusable": true, "ephemeral": true, "tags": ["tag:e2e"]}' ||
	die "testcontrol mints no auth key"
# Debug (sup_start's default): the route syncs are logged at debug. With
# TSCNI_HEAP_SITES=1, every process runs with tests/bench/heap_sites.so
# preloaded and the workers without their seccomp filter (it would refuse
# the dump's files): the heaps by allocation site are printed too.
if [[ ${TSCNI_HEAP_SITES:-} == 1 ]]; then
	SUP_PRELOAD=$TSCNI_BUILD_DIR/tests/bench/heap_sites.so
	[[ -f $SUP_PRELOAD ]] || die "$SUP_PRELOAD is missing: build the heap_sites target"
	sup_start_tailnet --sandbox none || die "the supervisor does not start"
else
	sup_start_tailnet || die "the supervisor does not start"
fi

# register FROM TO: external nodes FROM..TO (lines of $T/keys: node key, then
# disco key). One curl process, one request per node (--next between
# them): one config file instead of a fork per node. Sets REG_MS and REG_OK
# (how many answered 200).
register()
{
	awk -v url="http://$TC_ADMIN/nodes/register" -v from="$1" -v to="$2" 'NR >= from && NR <= to {
		if (NR > from) print "next"
		printf "url = \"%s\"\n", url
		printf "header = \"Content-Type: application/json\"\n"
		printf "data = \"{\\\"node_key\\\": \\\"nodekey:%s\\\", ", substr($1, 1, 64)
		printf "\\\"disco_key\\\": \\\"discokey:%s\\\", ", substr($1, 65, 64)
		printf "\\\"hostname\\\": \\\"ext-%d\\\", ", NR
		printf "\\\"endpoints\\\": [\\\"10.201.0.9:%d\\\"]}\"\n", 20000 + NR
		printf "output = \"/dev/null\"\nwrite-out = \"%%{http_code}\\\\n\"\n"
	}' "$T/keys" >"$T/register.curl"
	_tc_pre
	local t0
	t0=$(now_ms)
	"${TC_PRE[@]}" curl -sS --max-time 120 -K "$T/register.curl" >"$T/register.codes" \
		2>"$T/register.err"
	REG_MS=$(($(now_ms) - t0))
	REG_OK=$(grep -c '^200$' "$T/register.codes")
}
# Node and disco keys from /dev/urandom, 64 bytes a node.
od -v -An -tx1 -w64 -N $((64 * N)) /dev/urandom | tr -d ' ' >"$T/keys"

# --- 0. a worker with M peers ----------------------------------------------------
register 1 "$M"
check "testcontrol registered the first $M nodes ($REG_OK answered 200; $(head -c 200 \
	"$T/register.err"))" test "$REG_OK" -eq "$M"
pod_add 1 || die "pod 1: ADD failed"
CLEAN_CMDS+=("pod_del 1")
for ((k = 0; k < 50; k++)); do
	[[ $(pod_stat "${POD_UID[1]}" peers) == "$M" ]] && break
	sleep 0.2
done
# Idle: the first netmap applied, the routes synced, nothing in flight.
sleep 2
W1=$(pod_stat "${POD_UID[1]}" worker_pid)
peers1=$(pod_stat "${POD_UID[1]}" peers)
pss_of "${W1:-0}"
W1_PSS=$PSS W1_USS=$USS W1_ANON=$ANON
echo "# worker with $peers1 peers (pod 1, idle): PSS $W1_PSS KiB  USS $W1_USS KiB" \
	" Pss_Anon $W1_ANON KiB; by mapping (PSS / USS KiB):"
smaps_breakdown "${W1:-0}"
if [[ -n ${SUP_PRELOAD:-} ]]; then
	echo "# its heap by allocation site (KiB, blocks, the first three callers):"
	heap_sites "${W1:-0}"
fi
check "pod 1's worker had the first $M nodes as peers (${peers1:-none})" test "$peers1" = "$M"
pod_del 1
CLEAN_CMDS=()
# Its (ephemeral) node must not be one of pod 0's peers.
for key in $(tc_get /nodes | jq -r '.[] | select(.external | not) | .node_key'); do
	tc_post /nodes/delete "$(jq -nc --arg k "$key" '{node_key: $k}')" >/dev/null
done

# --- 1. N external nodes -------------------------------------------------------
register $((M + 1)) "$N"
echo "# registration: $((N - M)) more external nodes in $REG_MS ms" \
	"($((REG_MS * 1000 / (N - M > 0 ? N - M : 1))) us each, one curl, one connection each);" \
	"$REG_OK answered 200"
check "testcontrol registered all $N nodes ($((M + REG_OK)) answered 200; $(head -c 200 \
	"$T/register.err"))" test "$REG_OK" -eq "$((N - M))"
ext=$(tc_get /nodes | jq '[.[] | select(.external)] | length')
check "testcontrol lists $N external nodes ($ext)" test "$ext" -eq "$N"

# --- 2. ADD with N peers ---------------------------------------------------------
# As pod_add 0, with the kernel's route announcements in the pod's netns
# recorded from before it. "ADD returned" is the clock read just before cni
# plus the plugin's wall time (exec to exit, from plugin_run): cni's own
# work after the exit (reading the files, a few forks) is left out, the few
# ms of fork and exec before the plugin starts are not.
ns_new p0 || die "cannot create the pod netns"
POD_NS[0]=$NS_NAME
POD_UID[0]=uid-$$-0
A=${POD_NS[0]}
conf=$(mkconf 1.0.0 '.syncTimeout = "10s"')
pss_of "$SUP_PID"
sup_pss0=$PSS
ip -n "$A" -ts monitor route >"$T/mon" 2>&1 </dev/null &
MON_PID=$!
CLEAN_PIDS+=("$MON_PID")
sleep 0.2
mark=$(wc -l <"$T/sup.log")
t_exec=$(now_ms)
CNI_NO_JSON_CHECK=1 CID="pod-$$-0" NETNS=$(ns_path "$A") cni "$conf" CNI_COMMAND=ADD \
	"CNI_ARGS=K8S_POD_NAMESPACE=ns0;K8S_POD_NAME=web-0;K8S_POD_UID=uid-$$-0"
t_back=$(now_ms)
read -r c4 c6 < <(counts "$A")
add_wall=$WALL
t_add=$((t_exec + ${WALL:-0}))
CLEAN_CMDS+=("pod_del 0")
expect_ok "pod 0: ADD" || die "the ADD failed"
want=$((N + 1))
echo "# ADD with $N peers: ${add_wall} ms (plugin exec to exit)"
if [[ $c4 -ge $want && $c6 -ge $want ]]; then
	echo "# ts0 held all $((2 * want)) routes ($c4 v4 + $c6 v6) when ADD returned (counted" \
		"$((t_back - t_add)) ms after the plugin's exit)"
else
	t_all=""
	while (($(now_ms) - t_add < 60000)); do
		read -r c4 c6 < <(counts "$A")
		if [[ $c4 -ge $want && $c6 -ge $want ]]; then
			t_all=$(now_ms)
			break
		fi
		sleep 0.02
	done
	echo "# ts0 holds all $((2 * want)) routes ($c4 v4 + $c6 v6)" \
		"${t_all:+$((t_all - t_add)) ms after ADD returned}${t_all:-never (60 s)}"
fi
check "ts0 holds the $N peers' /32 and /128 and quad-100's two ($c4 v4, $c6 v6)" \
	test "$c4" -eq "$want" -a "$c6" -eq "$want"
sleep 0.2
mon_ms
t_end=$(now_ms)
# Relative to the plugin's exit (negative: before it): any route on ts0 in
# the main table, the first peer route (not quad-100's) and the last added.
awk -v t="$t_add" -v t0="$t_exec" -v t1="$t_end" '$1 >= t0 && $1 < t1 && / dev ts0 / &&
	!/ table / && !/^[0-9]+ Deleted/ {
	n++; if (first == "") first = $1
	if (peer == "" && $2 != "100.100.100.100" && $2 != "fd7a:115c:a1e0::53") peer = $1
	last = $1 }
	END {
		if (n == 0) { print "# kernel announcements: no route on ts0"; exit }
		printf "# kernel announcements: %d routes added on ts0 (main table): the first %+d ms, the first" \
			" peer route %+d ms, the last %+d ms after ADD returned: %d ms from the first" \
			" peer route to the last\n", n, first - t, peer - t, last - t, last - peer
	}' "$T/mon.ms"
pss_of "$SUP_PID"
sup_pss1=$PSS
echo "# route syncs the supervisor logged (netops_routes_sync) since the ADD:"
tail -n +"$((mark + 1))" "$T/sup.log" | grep -F "ts0's routes:" | sed 's/.*ts0.s routes: /#   /'

# --- 3. a node joins, a node leaves -------------------------------------------
mark=$(wc -l <"$T/sup.log")
key=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
t0=$(now_ms)
out=$(tc_post /nodes/register "$(jq -nc --arg k "nodekey:$key" \
	'{node_key: $k, hostname: "late", endpoints: ["10.201.0.9:19999"]}')")
t1=$(now_ms)
L4=$(jq -r '[.addresses[]? | select(startswith("100."))][0] // empty | sub("/.*"; "")' <<<"$out")
[[ $L4 == 100.* ]] || die "testcontrol registers one more node ($out)"
until has_v4 "$A" "$L4"; do
	(($(now_ms) - t0 > 10000)) && break
	sleep 0.01
done
t2=$(now_ms)
check "the new node's /32 ($L4) is on ts0" has_v4 "$A" "$L4"
sleep 0.2
mon_ms
echo "# node joined: its /32 on ts0 $((t2 - t0)) ms after the POST was sent (polled)," \
	"$(mon_first "$t0" "^${L4//./\\.} dev ts0 ") ms as announced; the POST answered in" \
	"$((t1 - t0)) ms"

dk=$(head -n 1 "$T/keys" | cut -c 1-64)
D4=$(tc_get /nodes | jq -r --arg k "nodekey:$dk" \
	'[.[] | select(.node_key == $k)][0].addresses // [] | map(select(startswith("100.")))[0] // empty |
	 sub("/.*"; "")')
[[ $D4 == 100.* ]] || die "testcontrol lists the first external node"
t0=$(now_ms)
tc_post /nodes/delete "$(jq -nc --arg k "nodekey:$dk" '{node_key: $k}')" >/dev/null
t1=$(now_ms)
while has_v4 "$A" "$D4"; do
	(($(now_ms) - t0 > 10000)) && break
	sleep 0.01
done
t2=$(now_ms)
check "the deleted node's /32 ($D4) is gone from ts0" test -z \
	"$(ip -n "$A" -4 route show exact "$D4/32" dev ts0 2>/dev/null)"
sleep 0.2
mon_ms
echo "# node deleted: its /32 gone from ts0 $((t2 - t0)) ms after the POST was sent (polled)," \
	"$(mon_first "$t0" "^Deleted ${D4//./\\.} dev ts0 ") ms as announced; the POST answered" \
	"in $((t1 - t0)) ms"
echo "# route syncs the supervisor logged for the two:"
tail -n +"$((mark + 1))" "$T/sup.log" | grep -F "ts0's routes:" | sed 's/.*ts0.s routes: /#   /'
kill "$MON_PID" 2>/dev/null
wait "$MON_PID" 2>/dev/null
read -r c4 c6 < <(counts "$A")
echo "# ts0 now: $c4 v4 + $c6 v6 routes"

# --- 4. memory -------------------------------------------------------------------
WPID=$(pod_stat "${POD_UID[0]}" worker_pid)
[[ $WPID =~ ^[0-9]+$ && -r /proc/$WPID/smaps_rollup ]] ||
	die "no running worker for pod 0 (worker_pid '$WPID')"
peers=$(pod_stat "${POD_UID[0]}" peers)
ZYG=$(sup_status_json | jq -r '.zygote_pid // empty')
for who in worker supervisor zygote; do
	case $who in
	worker) p=$WPID ;;
	supervisor) p=$SUP_PID ;;
	zygote) p=$ZYG ;;
	esac
	pss_of "$p"
	printf '# %-10s pid %-7s PSS %6s KiB  USS %6s KiB  Pss_Anon %6s KiB\n' "$who" "$p" \
		"$PSS" "$USS" "$ANON"
done
echo "# (status: peers=${peers:-?}; $c4 + $c6 routes on ts0; supervisor PSS before the ADD" \
	"$sup_pss0 KiB, after its route sync and before any status call $sup_pss1 KiB)"
pss_of "$WPID"
echo "# worker PSS: $W1_PSS KiB with $M peers (pod 1, alone), $PSS KiB with ${peers:-?}" \
	"(Pss_Anon $W1_ANON and $ANON KiB); by mapping with ${peers:-?} (PSS / USS KiB):"
smaps_breakdown "$WPID"
if [[ -n ${SUP_PRELOAD:-} ]]; then
	echo "# its heap by allocation site (KiB, blocks, the first three callers):"
	heap_sites "$WPID" 25
fi
echo "# supervisor by mapping (PSS / USS KiB):"
smaps_breakdown "$SUP_PID"
if [[ -n ${SUP_PRELOAD:-} ]]; then
	echo "# its heap by allocation site (KiB, blocks, the first three callers):"
	heap_sites "$SUP_PID"
fi
if [[ -x $TSCNI_BUILD_DIR/tests/bench/peer_sizes ]]; then
	echo "# per-peer structs (bytes; tests/bench/peer_sizes):"
	"$TSCNI_BUILD_DIR/tests/bench/peer_sizes" | while read -r name size what; do
		printf '#   %-22s %6s  %s\n' "$name" "$size" "$what"
	done
else
	echo "# per-peer structs: $TSCNI_BUILD_DIR/tests/bench/peer_sizes not built"
fi
# status --json lists every peer of the pod (peer_status): whether its cost
# stays or grows with each call.
for ((k = 0; k < 10; k++)); do
	sup_status_json >/dev/null
done
pss_of "$SUP_PID"
echo "# supervisor PSS after 10 more status --json calls: $PSS KiB (Pss_Anon $ANON KiB)"

pod_del 0
CLEAN_CMDS=()
tscni_finish
