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

# in_ns NS CMD...: CMD in network namespace NS. To start a process in the
# background, call `ip netns exec NS CMD &` itself: `in_ns ... &` makes $! a
# subshell's pid, and killing that leaves CMD running.
in_ns()
{
	local ns=$1
	shift
	ip netns exec "$ns" "$@"
}

# tc_start [ARGS...]: testcontrol on 127.0.0.1 of $NODE_NS (of the test's own
# netns without one), state in $T/tc, on the ports of TC_HTTP, TC_HTTPS and
# TC_ADMIN when set (a restart after tc_stop keeps them), else ports 0; extra
# ARGS go to testcontrol (after ours: e.g. --log-level info wins). Sets TC_PID
# TC_HTTP TC_HTTPS TC_ADMIN TC_CA.
tc_start()
{
	local line i
	local -a pre=()

	[[ -n ${NODE_NS:-} ]] && pre=(ip netns exec "$NODE_NS")
	[[ -d $T/tc ]] || mkdir -m 0700 "$T/tc"
	: >"$T/tc.out"
	"${pre[@]}" "$TC" --state-dir "$T/tc" --http "${TC_HTTP:-127.0.0.1:0}" \
		--https "${TC_HTTPS:-127.0.0.1:0}" --admin "${TC_ADMIN:-127.0.0.1:0}" \
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

# tc_get PATH / tc_post PATH JSON: the admin API (in $NODE_NS when set).
tc_get()
{
	local -a pre=()

	[[ -n ${NODE_NS:-} ]] && pre=(ip netns exec "$NODE_NS")
	"${pre[@]}" curl -sS --max-time 5 "http://$TC_ADMIN$1"
}

tc_post()
{
	local -a pre=()

	[[ -n ${NODE_NS:-} ]] && pre=(ip netns exec "$NODE_NS")
	"${pre[@]}" curl -sS --max-time 5 -X POST -H 'Content-Type: application/json' \
		--data "$2" "http://$TC_ADMIN$1"
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
# with $T/authkey (in $SUP_NETNS when set).
sup_start_tailnet()
{
	sup_start --control-url "https://$TC_HTTPS" --auth-key-file "$T/authkey" \
		--ca-file "$TC_CA" --cluster-name e2e "$@"
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

# pod_del I: DEL of pod I (same config as its ADD).
pod_del()
{
	local i=$1 c

	c=$(mkconf 1.0.0 '.syncTimeout = "10s"')
	CID="pod-$$-$i" NETNS=$(ns_path "${POD_NS[$i]}") cni "$c" CNI_COMMAND=DEL \
		"CNI_ARGS=K8S_POD_NAMESPACE=ns$i;K8S_POD_NAME=web-$i;K8S_POD_UID=uid-$$-$i"
	expect_ok "pod $i: DEL"
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

# --- an external peer: Debian's wireguard-go, registered in testcontrol -----
#
#   netns NODE  veth wl<pid> 10.202.0.1/24 ──── 10.202.0.2/24 wr<pid>  netns W
#                                            wireguard-go device $WGO_DEV
#
# wireguard-go's UAPI socket (/var/run/wireguard/<dev>.sock) is the same in
# every netns: device names carry the test's pid.

WGO_PORT=51820

# wgo_ns_new: netns W (sets WGO_NS) joined to $NODE_NS by a veth pair.
wgo_ns_new()
{
	local l="wl$$" r="wr$$"

	ns_new wgo || return 1
	WGO_NS=$NS_NAME
	ip -n "$NODE_NS" link add "${l:0:15}" type veth peer name "${r:0:15}" netns "$WGO_NS" ||
		return 1
	ip -n "$NODE_NS" addr add 10.202.0.1/24 dev "${l:0:15}"
	ip -n "$WGO_NS" addr add 10.202.0.2/24 dev "${r:0:15}"
	ip -n "$NODE_NS" link set "${l:0:15}" up
	ip -n "$WGO_NS" link set "${r:0:15}" up
}

# wgo_keys: a fresh key pair for wireguard-go: $T/wgo.key (0600, never on a
# command line), WGO_PUB (base64) and WGO_PUB_HEX.
wgo_keys()
{
	(umask 077 && wg genkey >"$T/wgo.key") || return 1
	WGO_PUB=$(wg pubkey <"$T/wgo.key")
	WGO_PUB_HEX=$(key_hex "$WGO_PUB")
}

# wgo_register [TAGS_JSON] [KEY_HEX]: registers wireguard-go as an external
# node (key KEY_HEX, default WGO_PUB_HEX; endpoint 10.202.0.2:$WGO_PORT);
# sets WGO4 and WGO6, its tailnet addresses.
wgo_register()
{
	local tags=${1:-[]} key=${2:-$WGO_PUB_HEX} out

	out=$(tc_post /nodes/register "$(jq -nc --arg k "nodekey:$key" --argjson t "$tags" \
		--arg ep "10.202.0.2:$WGO_PORT" \
		'{node_key: $k, hostname: "wgo", endpoints: [$ep], tags: $t}')")
	WGO4=$(jq -r '[.addresses[] | select(startswith("100."))][0] | sub("/.*"; "")' <<<"$out")
	WGO6=$(jq -r '[.addresses[] | select(startswith("fd7a:"))][0] | sub("/.*"; "")' <<<"$out")
	if [[ -z $WGO4 || $WGO4 == null || -z $WGO6 || $WGO6 == null ]]; then
		fail "testcontrol registers wireguard-go (answer: $out)"
		return 1
	fi
}

# wgo_start: wireguard-go (foreground, its pid in WGO_PID) as $WGO_DEV in
# $WGO_NS with $T/wgo.key, port $WGO_PORT, addresses WGO4/WGO6 and routes to
# the tailnet's ranges. Peers are added by wgo_peer_pod.
wgo_start()
{
	local i

	WGO_DEV="wgo$$"
	WGO_DEV=${WGO_DEV:0:15}
	ip netns exec "$WGO_NS" wireguard-go -f "$WGO_DEV" >>"$T/wgo.log" 2>&1 </dev/null &
	WGO_PID=$!
	CLEAN_PIDS+=("$WGO_PID")
	for ((i = 0; i < 100; i++)); do
		wg show "$WGO_DEV" >/dev/null 2>&1 && break
		kill -0 "$WGO_PID" 2>/dev/null || break
		sleep 0.05
	done
	wg set "$WGO_DEV" private-key "$T/wgo.key" listen-port "$WGO_PORT" || {
		fail "wireguard-go $WGO_DEV starts (log: $(tail -n 3 "$T/wgo.log" | tr '\n' ' '))"
		return 1
	}
	ip -n "$WGO_NS" addr add "$WGO4/32" dev "$WGO_DEV"
	ip -n "$WGO_NS" addr add "$WGO6/128" dev "$WGO_DEV"
	ip -n "$WGO_NS" link set "$WGO_DEV" mtu 1280 up
	ip -n "$WGO_NS" route add 100.64.0.0/10 dev "$WGO_DEV"
	ip -n "$WGO_NS" route add fd7a:115c:a1e0::/48 dev "$WGO_DEV"
}

# wgo_stop: stops wireguard-go by pid (its device goes with it).
wgo_stop()
{
	local i

	kill -TERM "$WGO_PID" 2>/dev/null
	for ((i = 0; i < 50; i++)); do
		kill -0 "$WGO_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$WGO_PID" 2>/dev/null
	wait "$WGO_PID" 2>/dev/null
}

# wgo_peer_pod I: pod I as wireguard-go's peer, as the netmap has it: its node
# key and its endpoint on 10.202.0.0/24 from testcontrol's node list.
wgo_peer_pod()
{
	local i=$1 node key ep

	node=$(tc_get /nodes | jq -c --arg a "${POD4[$i]}/32" \
		'[.[] | select(.addresses | index($a))][0]')
	key=$(jq -r '.node_key // empty | sub("nodekey:"; "")' <<<"$node")
	ep=$(jq -r '[.endpoints[]? | select(startswith("10.202.0.1:"))][0] // empty' <<<"$node")
	if [[ -z $key || -z $ep ]]; then
		fail "pod $i is in testcontrol's list with an endpoint on 10.202.0.0/24 ($node)"
		return 1
	fi
	POD_KEY_B64[$i]=$(key_b64 "$key")
	wg set "$WGO_DEV" peer "${POD_KEY_B64[$i]}" endpoint "$ep" \
		allowed-ips "${POD4[$i]}/32,${POD6[$i]}/128"
}
declare -a POD_KEY_B64
