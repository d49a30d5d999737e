# shellcheck shell=bash
# Helpers for the e2e tests that run a tailnet: tests/testcontrol, the
# supervisor and its workers in a "node" network namespace of the test's own,
# and external peers (Debian's wireguard-go) in other namespaces. Source after
# tests/lib/common.sh and tscni_init.
#
#   netns NODE: lo 127.0.0.1 (testcontrol, its admin API), the supervisor and
#               its workers' UDP sockets, veth ── other namespaces
#   pod netns:  ts0 (made by the supervisor), the pod's processes
#
# Nothing here sends a packet outside the namespaces the test created.

TC=$TSCNI_BUILD_DIR/tests/testcontrol/testcontrol

# node_ns_new [ADDR/LEN]: the node netns (sets NODE_NS and SUP_NETNS, so
# sup_start runs the supervisor in it) with an interface holding ADDR
# (default 10.201.0.1/24): workers announce the node's non-loopback addresses
# as their endpoints, so pods of this node reach each other there.
node_ns_new()
{
	ns_new node || return 1
	NODE_NS=$NS_NAME
	SUP_NETNS=$NODE_NS
	# No dummy driver on every kernel: a veth pair with both ends inside.
	ip -n "$NODE_NS" link add nic0 type veth peer name nic0p || return 1
	ip -n "$NODE_NS" addr add "${1:-10.201.0.1/24}" dev nic0 || return 1
	ip -n "$NODE_NS" link set nic0p up
	ip -n "$NODE_NS" link set nic0 up
}

# --- several nodes: one supervisor each -------------------------------------
#
# The one-node helpers (sup_start, pod_add, pod_del, pod_stat, ...) act on the
# current node: SOCK, STATE, SUP_PID, SUP_NETNS and SUP_LOG. node_use switches
# among named nodes, each with its own socket, state directory and log.
CUR_NODE=""
declare -A NODE_SOCK NODE_STATE NODE_PID NODE_NETNS NODE_LOG

# node_use NAME: makes node NAME current, keeping the current one's settings
# under its name. The first node named takes the test's own $SOCK, $STATE and
# $T/sup.log (what tscni_finish reports on); a later new one gets
# $T/NAME/run/cni.sock, $T/NAME/state and $T/sup-NAME.log, and no netns until
# SUP_NETNS is set.
node_use()
{
	local n=$1

	if [[ -n $CUR_NODE ]]; then
		NODE_SOCK[$CUR_NODE]=$SOCK
		NODE_STATE[$CUR_NODE]=$STATE
		NODE_PID[$CUR_NODE]=$SUP_PID
		NODE_NETNS[$CUR_NODE]=$SUP_NETNS
		NODE_LOG[$CUR_NODE]=${SUP_LOG:-$T/sup.log}
	fi
	if [[ -z ${NODE_SOCK[$n]:-} ]]; then
		if [[ -z $CUR_NODE ]]; then
			NODE_SOCK[$n]=$SOCK
			NODE_STATE[$n]=$STATE
			NODE_LOG[$n]=$T/sup.log
		else
			mkdir -m 0700 "$T/$n" "$T/$n/run" "$T/$n/state" || return 1
			NODE_SOCK[$n]=$T/$n/run/cni.sock
			NODE_STATE[$n]=$T/$n/state
			NODE_LOG[$n]=$T/sup-$n.log
		fi
		NODE_PID[$n]=""
		NODE_NETNS[$n]=""
	fi
	SOCK=${NODE_SOCK[$n]}
	STATE=${NODE_STATE[$n]}
	SUP_PID=${NODE_PID[$n]}
	SUP_NETNS=${NODE_NETNS[$n]}
	SUP_LOG=${NODE_LOG[$n]}
	CUR_NODE=$n
}

# node_stop NAME: stops node NAME's supervisor (SIGTERM, so that a sanitizer's
# exit-time report reaches its log) and fails on any report there. For the
# nodes other than the one tscni_finish stops.
node_stop()
{
	node_use "$1" || return 1
	sup_stop
	if grep -qE 'Sanitizer|runtime error:' "$SUP_LOG" 2>/dev/null; then
		fail "sanitizer report in $(basename "$SUP_LOG"): $(grep -m 3 -E 'Sanitizer|runtime error:' "$SUP_LOG" | tr '\n' ' ')"
	fi
}

# in_ns NS CMD...: CMD in network namespace NS. To start a process in the
# background, call `ip netns exec NS CMD &` itself: `in_ns ... &` makes $! a
# subshell's pid, and killing that leaves CMD running.
in_ns()
{
	local ns=$1
	shift
	ip netns exec "$ns" "$@"
}

# tc_start [ARGS...]: testcontrol in $TC_NS (default $NODE_NS, else the
# test's own netns) on $TC_BIND (default 127.0.0.1), state in $T/tc, on the
# ports of TC_HTTP, TC_HTTPS and TC_ADMIN when set (a restart after tc_stop
# keeps them), else ports 0; extra ARGS go to testcontrol (after ours: e.g.
# --log-level info wins). Sets TC_PID TC_HTTP TC_HTTPS TC_ADMIN TC_CA.
# With TC_API=1 it serves the Tailscale API subset and the Headscale fake too
# (--api, on the port of TC_API_ADDR when set) and sets TC_API_ADDR.
tc_start()
{
	local line i b=${TC_BIND:-127.0.0.1}
	local -a api=()

	[[ -d $T/tc ]] || mkdir -m 0700 "$T/tc"
	: >"$T/tc.out"
	_tc_pre
	[[ ${TC_API:-0} == 1 ]] && api=(--api "${TC_API_ADDR:-$b:0}")
	"${TC_PRE[@]}" "$TC" --state-dir "$T/tc" --http "${TC_HTTP:-$b:0}" \
		--https "${TC_HTTPS:-$b:0}" --admin "${TC_ADMIN:-$b:0}" "${api[@]}" \
		--log-level debug "$@" >"$T/tc.out" 2>>"$T/tc.log" </dev/null &
	TC_PID=$!
	CLEAN_PIDS+=("$TC_PID")
	for ((i = 0; i < 100; i++)); do
		line=$(grep -m1 '^listening ' "$T/tc.out" 2>/dev/null)
		[[ -n $line ]] && break
		kill -0 "$TC_PID" 2>/dev/null || break
		sleep 0.05
	done
	if [[ -z $line ]]; then
		fail "testcontrol starts (log: $(tail -n 5 "$T/tc.log" | tr '\n' ' '))"
		return 1
	fi
	TC_HTTP=$(sed -n 's/.* http=\([^ ]*\).*/\1/p' <<<"$line")
	TC_HTTPS=$(sed -n 's/.* https=\([^ ]*\).*/\1/p' <<<"$line")
	TC_ADMIN=$(sed -n 's/.* admin=\([^ ]*\).*/\1/p' <<<"$line")
	TC_CA=$(sed -n 's/.* ca=\([^ ]*\).*/\1/p' <<<"$line")
	if [[ ${TC_API:-0} == 1 ]]; then
		TC_API_ADDR=$(sed -n 's/.* api=\([^ ]*\).*/\1/p' <<<"$line")
		[[ -n $TC_API_ADDR ]] || {
			fail "testcontrol's listening line names api: $line"
			return 1
		}
	fi
	[[ -n $TC_HTTPS && -n $TC_ADMIN && -f $TC_CA ]] || {
		fail "testcontrol's listening line names https, admin and ca: $line"
		return 1
	}
}

# tc_stop: stops testcontrol by pid (its ports stay in TC_*, for tc_start).
tc_stop()
{
	[[ -n ${TC_PID:-} ]] || return 0
	kill -TERM "$TC_PID" 2>/dev/null
	wait "$TC_PID" 2>/dev/null
	TC_PID=""
}

# _tc_pre: TC_PRE, the prefix running a command in testcontrol's netns
# ($TC_NS, else $NODE_NS, else ours). An array, not a function: `f ... &`
# would make $! a subshell's pid.
_tc_pre()
{
	TC_PRE=()
	[[ -n ${TC_NS:-${NODE_NS:-}} ]] && TC_PRE=(ip netns exec "${TC_NS:-$NODE_NS}")
	return 0
}

# tc_get PATH / tc_post PATH JSON: the admin API (in testcontrol's netns).
tc_get()
{
	_tc_pre
	"${TC_PRE[@]}" curl -sS --max-time 5 "http://$TC_ADMIN$1"
}

tc_post()
{
	_tc_pre
	"${TC_PRE[@]}" curl -sS --max-time 5 -X POST -H 'Content-Type: application/json' \
		--data "$2" "http://$TC_ADMIN$1"
}

# tc_oauth_client JSON: an OAuth client at testcontrol's API (TC_API=1; JSON:
# {scopes, tags, token_lifetime}); sets CL_ID and CL_SECRET.
tc_oauth_client()
{
	local c
	c=$(tc_post /oauth-clients "$1")
	CL_ID=$(jq -r .id <<<"$c")
	CL_SECRET=$(jq -r .secret <<<"$c")
	[[ -n $CL_ID && $CL_ID != null && -n $CL_SECRET && $CL_SECRET != null ]] || {
		fail "testcontrol makes an OAuth client: $c"
		return 1
	}
}

# tc_authkey JSON: mints a pre-auth key with POST /keys JSON and writes it to
# $T/authkey (0600); fails when testcontrol gives none.
tc_authkey()
{
	local key

	key=$(tc_post /keys "$1" | jq -r .key)
	if [[ -z $key || $key == null ]]; then
		fail "testcontrol mints a pre-auth key"
		return 1
	fi
	(umask 077 && printf '%s\n' "$key" >"$T/authkey")
}

# sup_start_tailnet [ARGS...]: the supervisor against testcontrol over https
# with $T/authkey (in $SUP_NETNS when set). The workers trust testcontrol's
# CA alone, or with TC_CA_OPT=--ca-file-add the system's bundle plus it (what
# a deployment's workers hold).
sup_start_tailnet()
{
	sup_start --control-url "https://$TC_HTTPS" --auth-key-file "$T/authkey" \
		"${TC_CA_OPT:---ca-file}" "$TC_CA" --cluster-name e2e "$@"
}

# pod_add I [JQ]: a pod netns tscni-…-p<I> and an ADD (CNI 1.0.0) through the
# real plugin (JQ: a jq filter applied to the network config); sets POD_NS[I],
# POD4[I], POD6[I] (ts0's 100.x and fd7a:) and POD_UID[I] (uid-<pid>-<I>).
declare -a POD_NS POD4 POD6 POD_UID
pod_add()
{
	local i=$1 c

	ns_new "p$i" || return 1
	POD_NS[$i]=$NS_NAME
	POD_UID[$i]=uid-$$-$i
	c=$(mkconf 1.0.0 ".syncTimeout = \"10s\" | ${2:-.}")
	CID="pod-$$-$i" NETNS=$(ns_path "$NS_NAME") cni "$c" CNI_COMMAND=ADD \
		"CNI_ARGS=K8S_POD_NAMESPACE=ns$i;K8S_POD_NAME=web-$i;K8S_POD_UID=uid-$$-$i"
	expect_ok "pod $i: ADD" || return 1
	POD4[$i]=$(jq -r '[.ips[].address | select(startswith("100."))][0] | sub("/.*"; "")' <<<"$OUT")
	POD6[$i]=$(jq -r '[.ips[].address | select(startswith("fd7a:"))][0] | sub("/.*"; "")' <<<"$OUT")
	check "pod $i: a 100.x and an fd7a: address (${POD4[$i]} ${POD6[$i]})" \
		test "${POD4[$i]}" != null -a "${POD6[$i]}" != null
}

# wait_ready I: pod I's worker (pod uid uid-<pid>-<I>) is ready, as the
# supervisor's status says (up to 10 s).
wait_ready()
{
	local k
	for ((k = 0; k < 100; k++)); do
		sup_status_json | jq -e --arg u "uid-$$-$1" \
			'[.pods[]? | select(.pod_uid == $u and .worker_state == "ready")] | length == 1' \
			>/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

# tailnet_two_pods: pods 0 and 1 on the tailnet of the testcontrol already
# started (a reusable ephemeral tag:e2e key, the supervisor, both ADDs); sets
# A and B to their netns. Returns 1 at the first step that fails.
tailnet_two_pods()
{
	local i

	tc_authkey '{"reusable": true, "ephemeral": true, "tags": ["tag:e2e"]}' || return 1
	sup_start_tailnet || return 1
	for i in 0 1; do
		pod_add "$i" || return 1
	done
	A=${POD_NS[0]}
	B=${POD_NS[1]}
}

# pod_del I: DEL of pod I (same config as its ADD).
pod_del()
{
	local i=$1 c

	c=$(mkconf 1.0.0 '.syncTimeout = "10s"')
	CID="pod-$$-$i" NETNS=$(ns_path "${POD_NS[$i]}") cni "$c" CNI_COMMAND=DEL \
		"CNI_ARGS=K8S_POD_NAMESPACE=ns$i;K8S_POD_NAME=web-$i;K8S_POD_UID=uid-$$-$i"
	expect_ok "pod $i: DEL"
}

# recv_start NS PORT FILE: a TCP receiver (busybox nc -l) in NS writing what
# arrives on PORT to FILE, listening when this returns; sets RECV_PID (the
# listener itself). Its stdin is a FIFO this shell holds open: a closed stdin
# would end busybox nc's connection early.
recv_start()
{
	local k

	if [[ ! -p $T/hold ]]; then
		mkfifo -m 0600 "$T/hold" || return 1
		exec 7<>"$T/hold"
	fi
	ip netns exec "$1" busybox nc -l -p "$2" >"$3" <"$T/hold" &
	RECV_PID=$!
	CLEAN_PIDS+=("$RECV_PID")
	for ((k = 0; k < 50; k++)); do
		ip netns exec "$1" ss -Htln "sport = :$2" | grep -q . && return 0
		sleep 0.05
	done
	return 1
}

# recv_wait FILE SIZE: until FILE holds SIZE bytes (10 s at most), then stops
# the receiver.
recv_wait()
{
	local k

	for ((k = 0; k < 1000; k++)); do
		[[ $(stat -c %s "$1" 2>/dev/null || echo 0) -ge $2 ]] && break
		sleep 0.01
	done
	kill "$RECV_PID" 2>/dev/null
	wait "$RECV_PID" 2>/dev/null
}

# pod_stat UID FIELD: a field of pod UID's entry in `status --json` (worker_pid,
# handshakes, peers, filter_drops, configured, ...). STATUS answers with the
# worker's last Stats and asks it for fresh ones: a first STATUS primes them.
pod_stat()
{
	sup_status_json >/dev/null
	sleep 0.2
	sup_status_json | jq -r --arg u "$1" --arg f "$2" \
		'[.pods[] | select(.pod_uid == $u)][0][$f] // empty'
}

# pod_peer UID IP4: pod UID's entry in `status --json` for its peer at tailnet
# address IP4 (its peer_status list: node_key, host_name, path,
# last_handshake_unix, rx_bytes, tx_bytes), one line of JSON, or nothing.
# Primed like pod_stat; the worker's report is at most 1 s old.
pod_peer()
{
	sup_status_json >/dev/null
	sleep 0.2
	sup_status_json | jq -c --arg u "$1" --arg ip "$2" \
		'[.pods[] | select(.pod_uid == $u)][0].peer_status // [] |
		 map(select(.tailnet_ip == $ip))[0] // empty'
}

# peer_wait UID IP4 COND: until pod_peer UID IP4 satisfies the jq condition
# COND (10 s at most); sets PEER to the entry seen last.
peer_wait()
{
	local k

	for ((k = 0; k < 25; k++)); do
		PEER=$(pod_peer "$1" "$2")
		[[ -n $PEER ]] && jq -e "$3" <<<"$PEER" >/dev/null && return 0
		sleep 0.2
	done
	return 1
}

# key_b64 HEX: a 32-byte key from its hex form (after "nodekey:") to
# WireGuard's base64 (wg(8)).
key_b64()
{
	tr 'a-f' 'A-F' <<<"$1" | tr -d '\n' | basenc --base16 -d | base64 -w0
}

# key_hex B64: the other way (for testcontrol's "nodekey:<hex>").
key_hex()
{
	base64 -d <<<"$1" | basenc --base16 -w0 | tr 'A-F' 'a-f'
}

# --- external peers: Debian's wireguard-go, registered in testcontrol --------
#
#   netns NODE  veth wl<i><pid> 10.<202+i>.0.1/24 ── 10.<202+i>.0.2/24  netns W<i>
#                                            wireguard-go device ${WGO_DEV[i]}
#
# Instance i (0 when not given; up to 9) has its own netns, subnet, key file
# ($T/wgo.key for 0, $T/wgo<i>.key else), log and device. Its variables are
# arrays indexed by i — WGO_NS WGO_DEV WGO_PID WGO4 WGO6 WGO_PUB WGO_PUB_HEX —
# so instance 0's read as plain $WGO_NS, $WGO4, ... wireguard-go's UAPI socket
# (/var/run/wireguard/<dev>.sock) is the same in every netns: device names
# carry the test's pid.

WGO_PORT=51820
declare -a WGO_NS WGO_DEV WGO_PID WGO4 WGO6 WGO_PUB WGO_PUB_HEX

# _wgo_name I: "wgo" for instance 0, "wgo<I>" else (files, tags, devices).
_wgo_name()
{
	if [[ ${1:-0} -eq 0 ]]; then echo wgo; else echo "wgo$1"; fi
}

# wgo_ns_new [I]: netns W<i> (sets WGO_NS[i]) joined to $NODE_NS by a veth
# pair on 10.<202+i>.0.0/24. Call it before the pods' ADD: a worker announces
# the node's addresses it finds at start.
wgo_ns_new()
{
	local i=${1:-0} n l="wl${1:-0}$$" r="wr${1:-0}$$"

	n=$(_wgo_name "$i")
	ns_new "$n" || return 1
	WGO_NS[i]=$NS_NAME
	ip -n "$NODE_NS" link add "${l:0:15}" type veth peer name "${r:0:15}" \
		netns "${WGO_NS[i]}" || return 1
	ip -n "$NODE_NS" addr add "10.$((202 + i)).0.1/24" dev "${l:0:15}"
	ip -n "${WGO_NS[i]}" addr add "10.$((202 + i)).0.2/24" dev "${r:0:15}"
	ip -n "$NODE_NS" link set "${l:0:15}" up
	ip -n "${WGO_NS[i]}" link set "${r:0:15}" up
}

# wgo_keys [I]: a fresh key pair: the key file (0600, never on a command line),
# WGO_PUB[i] (base64) and WGO_PUB_HEX[i].
wgo_keys()
{
	local i=${1:-0} f

	f=$T/$(_wgo_name "$i").key
	(umask 077 && wg genkey >"$f") || return 1
	WGO_PUB[i]=$(wg pubkey <"$f")
	WGO_PUB_HEX[i]=$(key_hex "${WGO_PUB[i]}")
}

# wgo_register [TAGS_JSON] [I]: registers instance i as an external node
# (hostname wgo<i>, key WGO_PUB_HEX[i], endpoint 10.<202+i>.0.2:$WGO_PORT);
# sets WGO4[i] and WGO6[i], its tailnet addresses.
wgo_register()
{
	local tags=${1:-[]} i=${2:-0} out

	out=$(tc_post /nodes/register "$(jq -nc --arg k "nodekey:${WGO_PUB_HEX[i]}" \
		--argjson t "$tags" --arg h "$(_wgo_name "$i")" \
		--arg ep "10.$((202 + i)).0.2:$WGO_PORT" \
		'{node_key: $k, hostname: $h, endpoints: [$ep], tags: $t}')")
	WGO4[i]=$(jq -r '[.addresses[] | select(startswith("100."))][0] | sub("/.*"; "")' <<<"$out")
	WGO6[i]=$(jq -r '[.addresses[] | select(startswith("fd7a:"))][0] | sub("/.*"; "")' <<<"$out")
	if [[ -z ${WGO4[i]} || ${WGO4[i]} == null || -z ${WGO6[i]} || ${WGO6[i]} == null ]]; then
		fail "testcontrol registers wireguard-go $i (answer: $out)"
		return 1
	fi
}

# wgo_start [I]: wireguard-go in the foreground (pid WGO_PID[i]) as device
# WGO_DEV[i] in WGO_NS[i] with its key file, port $WGO_PORT, addresses
# WGO4[i]/WGO6[i] and routes to the tailnet's ranges; log $T/wgo<i>.log.
# Peers are added by wgo_peer_pod.
wgo_start()
{
	local i=${1:-0} n k

	n=$(_wgo_name "$i")
	WGO_DEV[i]="$n$$"
	WGO_DEV[i]=${WGO_DEV[i]:0:15}
	ip netns exec "${WGO_NS[i]}" wireguard-go -f "${WGO_DEV[i]}" >>"$T/$n.log" 2>&1 </dev/null &
	WGO_PID[i]=$!
	CLEAN_PIDS+=("${WGO_PID[i]}")
	for ((k = 0; k < 100; k++)); do
		wg show "${WGO_DEV[i]}" >/dev/null 2>&1 && break
		kill -0 "${WGO_PID[i]}" 2>/dev/null || break
		sleep 0.05
	done
	wg set "${WGO_DEV[i]}" private-key "$T/$n.key" listen-port "$WGO_PORT" || {
		fail "wireguard-go ${WGO_DEV[i]} starts (log: $(tail -n 3 "$T/$n.log" | tr '\n' ' '))"
		return 1
	}
	ip -n "${WGO_NS[i]}" addr add "${WGO4[i]}/32" dev "${WGO_DEV[i]}"
	ip -n "${WGO_NS[i]}" addr add "${WGO6[i]}/128" dev "${WGO_DEV[i]}"
	ip -n "${WGO_NS[i]}" link set "${WGO_DEV[i]}" mtu 1280 up
	ip -n "${WGO_NS[i]}" route add 100.64.0.0/10 dev "${WGO_DEV[i]}"
	ip -n "${WGO_NS[i]}" route add fd7a:115c:a1e0::/48 dev "${WGO_DEV[i]}"
}

# wgo_stop [I]: stops wireguard-go i by pid (its device goes with it).
wgo_stop()
{
	local i=${1:-0} k

	kill -TERM "${WGO_PID[i]}" 2>/dev/null
	for ((k = 0; k < 50; k++)); do
		kill -0 "${WGO_PID[i]}" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "${WGO_PID[i]}" 2>/dev/null
	wait "${WGO_PID[i]}" 2>/dev/null
}

# wgo_peer_pod POD [I]: pod POD as wireguard-go i's peer, as the netmap has
# it: its node key and its endpoint on 10.<202+i>.0.0/24 from testcontrol's
# node list (sets POD_KEY_B64[POD]).
declare -a POD_KEY_B64
wgo_peer_pod()
{
	local p=$1 i=${2:-0} node key ep

	node=$(tc_get /nodes | jq -c --arg a "${POD4[$p]}/32" \
		'[.[] | select(.addresses | index($a))][0]')
	key=$(jq -r '.node_key // empty | sub("nodekey:"; "")' <<<"$node")
	ep=$(jq -r --arg net "10.$((202 + i)).0.1:" \
		'[.endpoints[]? | select(startswith($net))][0] // empty' <<<"$node")
	if [[ -z $key || -z $ep ]]; then
		fail "pod $p is in testcontrol's list with an endpoint on 10.$((202 + i)).0.0/24 ($node)"
		return 1
	fi
	POD_KEY_B64[$p]=$(key_b64 "$key")
	wg set "${WGO_DEV[i]}" peer "${POD_KEY_B64[$p]}" endpoint "$ep" \
		allowed-ips "${POD4[$p]}/32,${POD6[$p]}/128"
}

# ns_ping_until NETNS DST: busybox ping from NETNS answered within 20
# one-second tries (the first packets wait for the peer's netmap, disco or
# DERP, and the handshake); the last failure is printed as a comment.
ns_ping_until()
{
	local k out
	for ((k = 0; k < 20; k++)); do
		out=$(ip netns exec "$1" busybox ping -c 1 -W 1 "$2" 2>&1) && return 0
	done
	echo "# last: $(tr '\n' ' ' <<<"$out")"
	return 1
}

# now_ms: wall-clock milliseconds.
now_ms()
{
	echo $((${EPOCHREALTIME/./} / 1000))
}

# Bulk transfers with a check of size and SHA-256 (e2e and interop tests).
# Set SIZE and write $T/big.in (SIZE bytes) first.
same_sha()
{
	[[ $(sha256sum <"$1" | cut -d' ' -f1) == $(sha256sum <"$2" | cut -d' ' -f1) ]]
}

# same_whole GOT SIZE IN OUT: GOT bytes arrived of SIZE, and OUT is IN.
same_whole()
{
	[[ $1 -eq $2 ]] && same_sha "$3" "$4"
}

# transfer FROM_NS TO_NS DST PORT LABEL: $T/big.in from FROM_NS to DST:PORT
# (a receiver in TO_NS); checks the size and SHA-256 and prints Mbit/s.
transfer()
{
	local from=$1 to=$2 dst=$3 port=$4 label=$5 t0 t1 rc got

	rm -f "$T/big.out"
	recv_start "$to" "$port" "$T/big.out" || fail "$label: receiver listens"
	t0=$(now_ms)
	ip netns exec "$from" timeout $((120 * TIME_SCALE)) \
		bash -c "cat '$T/big.in' >/dev/tcp/$dst/$port"
	rc=$?
	recv_wait "$T/big.out" "$SIZE"
	t1=$(now_ms) # the last byte arrived (or the wait gave up)
	got=$(stat -c %s "$T/big.out" 2>/dev/null || echo 0)
	check "$label: the sender finished (exit $rc)" test "$rc" -eq 0
	check "$label: $got of $SIZE bytes arrived, same SHA-256" \
		same_whole "$got" "$SIZE" "$T/big.in" "$T/big.out"
	echo "# $label: $SIZE bytes in $((t1 - t0)) ms =" \
		"$((SIZE * 8 / 1000 / (t1 - t0 > 0 ? t1 - t0 : 1))) Mbit/s"
}
