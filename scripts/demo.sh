#!/usr/bin/env bash
# The main job on a built-in local setup: a "node" network namespace with a
# local tailnet (tests/testcontrol) and the supervisor in it, N "pods"
# (network namespaces) attached the way a container runtime attaches them,
# chained CNI: Debian's bridge + host-local as the primary plugin, then
# tailscale-cni. Each pod becomes a node of the local tailnet with its own
# 100.x and fd7a: addresses on ts0, connected to its home region of the
# tailnet's two DERP regions, and the pods ping each other over ts0.
#
#   node netns tscni-demo-node-<pid>          pod netns tscni-demo-pod<i>-<pid>
#   +----------------------------------+      +---------------------------+
#   | testcontrol 127.0.0.1 (tailnet)  |      | eth0 10.99.0.x/24         |
#   | tailscale-cni-supervisor         |      | ts0  100.x/32, fd7a:../128|
#   |   + one sandboxed worker per pod |      |  (TUN carried by the pod's|
#   | bridge tsdemo0 10.99.0.1/24 ------veth-->|   worker: WireGuard)      |
#   +----------------------------------+      +---------------------------+
# Nothing leaves these namespaces.
set -euo pipefail

usage() {
	cat <<'EOF'
usage: scripts/demo.sh [--pods N] [--keep] [--verbose]
       scripts/demo.sh --down
  Builds tailscale-cni, starts a local tailnet and a supervisor in a "node"
  network namespace, attaches N pods (default 3) through CNI, pings every pod
  from every other over ts0, prints a table, then deletes the pods and stops.
  --pods N    how many pods, 1 to 20
  --keep      leave everything running and print how to look at it
  --down      tear down what a --keep run left running
  --verbose   also print each raw CNI result, the control server's nodes and
              DERP regions, and each pod's peers
  Needs root (network namespaces, TUN). Installs the Debian packages it needs
  (scripts/install-deps.sh --demo). Build tree: $TSCNI_OUT (default ./out).
EOF
}

src=$(cd "$(dirname "$0")/.." && pwd)
# Absolute: the plugin is linked into a temporary bin directory by path.
out=$(realpath -m -- "${TSCNI_OUT:-$src/out}")
kept=/run/tscni-demo.kept # what a --keep run left, for --down
keep=0
verbose=0
down=0
pods=3
while [ $# -gt 0 ]; do
	case $1 in
	--keep) keep=1 ;;
	--verbose) verbose=1 ;;
	--down) down=1 ;;
	--pods)
		if [ $# -lt 2 ]; then
			echo "demo.sh: --pods needs a number of pods (1 to 20)" >&2
			exit 2
		fi
		pods=$2
		shift
		;;
	--pods=*) pods=${1#--pods=} ;;
	-h | --help | help)
		usage
		exit 0
		;;
	*)
		echo "demo.sh: unknown argument '$1' (see --help)" >&2
		exit 2
		;;
	esac
	shift
done
if ! [[ $pods =~ ^[0-9]+$ ]] || [ "$pods" -lt 1 ] || [ "$pods" -gt 20 ]; then
	echo "demo.sh: --pods '$pods' is not a number of pods from 1 to 20" >&2
	exit 2
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "demo.sh: run me as root: I create network namespaces and TUN devices" \
		"(on Debian 12 as root there is no sudo; use a root shell)" >&2
	exit 1
fi

t0=$(date +%s%N)
say() { # a progress line with the time since the start
	local ms=$((($(date +%s%N) - t0) / 1000000))
	printf '[%3d.%ds] %s\n' $((ms / 1000)) $((ms % 1000 / 100)) "$*"
}

# ---- tear down: the pods through CNI DEL, then the processes by pid ----

# The variables teardown needs; a --keep run writes them to $kept.
tmp= node= sup_pid= tc_pid= run_id=$$
teardown() {
	set +e
	local i ns
	if [ -n "$tmp" ] && [ -S "$tmp/cni.sock" ]; then
		for i in $(seq 1 "$pods"); do
			ns=tscni-demo-pod$i-$run_id
			[ -e "/var/run/netns/$ns" ] || continue
			cni DEL "/var/run/netns/$ns" "c$i" tailscale-cni "$(ts_del_conf)" >/dev/null
			cni DEL "/var/run/netns/$ns" "c$i" bridge "$(bridge_conf)" >/dev/null
		done
	fi
	for i in $(seq 1 "$pods"); do ip netns del "tscni-demo-pod$i-$run_id" 2>/dev/null; done
	if [ -n "$sup_pid" ] && kill "$sup_pid" 2>/dev/null; then
		for _ in $(seq 50); do kill -0 "$sup_pid" 2>/dev/null || break; sleep 0.1; done
	fi
	if [ -n "$tc_pid" ] && kill "$tc_pid" 2>/dev/null; then
		for _ in $(seq 50); do kill -0 "$tc_pid" 2>/dev/null || break; sleep 0.1; done
	fi
	[ -n "$node" ] && ip netns del "$node" 2>/dev/null
	[ -n "$tmp" ] && rm -rf "$tmp"
	return 0
}

bridge_conf() {
	printf '%s' '{"cniVersion":"1.0.0","name":"demo","type":"bridge","bridge":"tsdemo0",
	 "isGateway":true,"ipam":{"type":"host-local","subnet":"10.99.0.0/24",
	 "dataDir":"'"$tmp"'/ipam"}}'
}
ts_conf() { # ts_conf PREVRESULT: the chained plugin's config as a runtime passes it
	jq -c --argjson prev "$1" '. + {prevResult: $prev}' <<<'{"cniVersion":"1.0.0",
	 "name":"demo","type":"tailscale-cni","socketPath":"'"$tmp"'/cni.sock",
	 "stateDir":"'"$tmp"'/state","syncTimeout":"10s"}'
}
ts_del_conf() {
	printf '%s' '{"cniVersion":"1.0.0","name":"demo","type":"tailscale-cni","socketPath":"'"$tmp"'/cni.sock","stateDir":"'"$tmp"'/state"}'
}
cni() { # cni VERB NETNS CONTAINERID PLUGIN CONF: as a runtime runs a plugin
	local out rc=0 id=$3
	out=$(CNI_COMMAND=$1 CNI_NETNS=$2 CNI_CONTAINERID=$id CNI_IFNAME=eth0 CNI_PATH="$tmp/bin" \
		CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=demo;K8S_POD_NAME=pod-$id;K8S_POD_UID=uid-$id" \
		ip netns exec "$node" "$tmp/bin/$4" <<<"$5") || rc=$?
	if [ $rc -ne 0 ]; then
		echo "demo.sh: $4 $1 for pod-$id failed (exit $rc): $out" >&2
		return $rc
	fi
	printf '%s' "$out"
}

if [ $down -eq 1 ]; then
	if [ ! -f "$kept" ]; then
		echo "demo.sh --down: nothing to tear down ($kept not found: no --keep run is left)" >&2
		exit 1
	fi
	# shellcheck source=/dev/null
	. "$kept"
	t0=$(date +%s%N)
	teardown
	rm -f "$kept"
	say "torn down: $pods pods, supervisor pid $sup_pid, testcontrol pid $tc_pid, netns $node"
	exit 0
fi

if [ ! -c /dev/net/tun ]; then
	echo "demo.sh: /dev/net/tun is missing: load the tun module (modprobe tun) or, in a" \
		"container, pass the device through (--device /dev/net/tun)" >&2
	exit 1
fi
if [ -f "$kept" ]; then
	echo "demo.sh: a --keep run is still up ($kept): scripts/demo.sh --down first" >&2
	exit 1
fi

# ---- 1. packages, 2. build ----
say "checking the Debian packages the demo needs"
"$src/scripts/install-deps.sh" --demo
mkdir -p "$out"
build_log=$out/demo-build.log
testing=OFF
if pkg-config --exists cmocka 2>/dev/null; then testing=ON; fi # keep a test build's tree whole
say "building the plugin, supervisor, worker and testcontrol into $out/build (log: $build_log)"
if ! { cmake -S "$src" -B "$out/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	-DBUILD_TESTING=$testing && cmake --build "$out/build" -j"$(nproc)" --target \
	tailscale-cni tailscale-cni-supervisor tailscale-cni-worker testcontrol; } \
	>"$build_log" 2>&1; then
	tail -n 30 "$build_log" >&2
	echo "demo.sh: the build failed; the whole log is $build_log" >&2
	exit 1
fi
bin="$out/build"
plugin="$bin/cni/tailscale-cni"
supervisor="$bin/supervisor/tailscale-cni-supervisor"
testcontrol="$bin/tests/testcontrol/testcontrol"
say "built"

# ---- 3. the local tailnet and the supervisor in the node namespace ----
tmp=$(mktemp -d /tmp/tscni-demo.XXXXXX)
node=tscni-demo-node-$$
if [ $keep -eq 0 ]; then trap teardown EXIT; else trap 'teardown; rm -f "$kept"' ERR; fi
mkdir -p "$tmp/bin"
ln -s /usr/lib/cni/bridge /usr/lib/cni/host-local "$tmp/bin/"
ln -s "$plugin" "$tmp/bin/tailscale-cni"
ip netns add "$node"
ip -n "$node" link set lo up

# testcontrol on the node's loopback with two DERP regions (TLS, STUN on the
# same port numbers), a reusable pre-auth key with a tag minted through its
# admin API, written to a 0600 file.
mkdir -m 0700 "$tmp/tc"
ip netns exec "$node" "$testcontrol" --state-dir "$tmp/tc" --http 127.0.0.1:0 \
	--https 127.0.0.1:0 --admin 127.0.0.1:0 --derp 127.0.0.1:0 --derp 127.0.0.1:0 \
	>"$tmp/tc.out" 2>"$tmp/tc.log" </dev/null &
tc_pid=$!
for _ in $(seq 100); do grep -q '^listening ' "$tmp/tc.out" && break; sleep 0.05; done
line=$(grep -m1 '^listening ' "$tmp/tc.out") || {
	cat "$tmp/tc.log" >&2
	echo "demo.sh: testcontrol did not start" >&2
	exit 1
}
tc_https=$(sed -n 's/.* https=\([^ ]*\).*/\1/p' <<<"$line")
tc_admin=$(sed -n 's/.* admin=\([^ ]*\).*/\1/p' <<<"$line")
tc_ca=$(sed -n 's/.* ca=\([^ ]*\).*/\1/p' <<<"$line")
(umask 077 && ip netns exec "$node" curl -sS --max-time 5 -X POST \
	-H 'Content-Type: application/json' -d '{"reusable": true, "tags": ["tag:demo"]}' \
	"http://$tc_admin/keys" | jq -r .key >"$tmp/authkey")
say "local tailnet up: testcontrol at https://$tc_https, 2 DERP regions (netns $node)"

ip netns exec "$node" "$supervisor" run --state-dir "$tmp/state" --socket "$tmp/cni.sock" \
	--node-name demo-node --control-url "https://$tc_https" --ca-file "$tc_ca" \
	--auth-key-file "$tmp/authkey" --cluster-name demo 2>"$tmp/supervisor.log" &
sup_pid=$!
for _ in $(seq 100); do [ -S "$tmp/cni.sock" ] && break; sleep 0.05; done
[ -S "$tmp/cni.sock" ] || {
	cat "$tmp/supervisor.log" >&2
	echo "demo.sh: the supervisor did not start" >&2
	exit 1
}
say "supervisor running (pid $sup_pid, log $tmp/supervisor.log)"

# ---- 4. the pods: bridge + host-local, then tailscale-cni, then CHECK ----
declare -a v4 v6 okpings
for i in $(seq 1 "$pods"); do
	ns=tscni-demo-pod$i-$$
	ip netns add "$ns"
	a=$(date +%s%N)
	prev=$(cni ADD "/var/run/netns/$ns" "c$i" bridge "$(bridge_conf)")
	result=$(cni ADD "/var/run/netns/$ns" "c$i" tailscale-cni "$(ts_conf "$prev")")
	ms=$((($(date +%s%N) - a) / 1000000))
	v4[i]=$(jq -r '[.ips[].address | select(startswith("100."))][0] // "-" | sub("/.*"; "")' \
		<<<"$result")
	v6[i]=$(jq -r '[.ips[].address | select(startswith("fd7a:"))][0] // "-" | sub("/.*"; "")' \
		<<<"$result")
	cni CHECK "/var/run/netns/$ns" "c$i" tailscale-cni "$(ts_conf "$result")" >/dev/null
	say "pod $i: ADD in $ms ms (bridge + tailscale-cni), CHECK passed: ts0 ${v4[i]} ${v6[i]}"
	if [ $verbose -eq 1 ]; then
		echo "--- pod $i: the CNI result"
		jq . <<<"$result"
		ip -n "$ns" -d link show ts0 | head -2
	fi
done

# ---- 5. routes: ts0 carries exactly the peers' addresses, each added as the
# pod's worker learns of a peer from control (about 0.1 s after its ADD) ----
for i in $(seq 1 "$pods"); do
	for _ in $(seq 100); do
		routes=$(ip -n "tscni-demo-pod$i-$$" route show dev ts0)
		missing=0
		for j in $(seq 1 "$pods"); do
			[ "$i" = "$j" ] || grep -q "^${v4[j]} " <<<"$routes" || missing=1
		done
		[ $missing -eq 0 ] && break
		sleep 0.05
	done
done
say "routes: each pod's ts0 routes its $((pods - 1)) peers' addresses"

# ---- 6. every pod pings every other pod's Tailscale addresses over ts0 ----
say "pinging: every pod -> every other pod's 100.x and fd7a: over ts0"
total=0
failed=0
for i in $(seq 1 "$pods"); do
	okpings[i]=0
	for j in $(seq 1 "$pods"); do
		[ "$i" = "$j" ] && continue
		for a in "${v4[j]}" "${v6[j]}"; do
			total=$((total + 1))
			if ip netns exec "tscni-demo-pod$i-$$" busybox ping -c 1 -W 5 "$a" >/dev/null 2>&1; then
				okpings[i]=$((okpings[i] + 1))
			else
				failed=$((failed + 1))
				echo "demo.sh: pod $i -> pod $j ($a) over ts0: no answer in 5 s" >&2
			fi
		done
	done
done
say "pings: $((total - failed)) of $total answered"

echo
printf '%-6s %-22s %-15s %-39s %s\n' POD NETNS 'TS0 IPV4' 'TS0 IPV6' 'PINGS SENT->ANSWERED'
for i in $(seq 1 "$pods"); do
	printf '%-6s %-22s %-15s %-39s %s\n' "pod$i" "tscni-demo-pod$i-$$" "${v4[i]}" "${v6[i]}" \
		"$((2 * (pods - 1)))->${okpings[i]}"
done
echo

if [ $verbose -eq 1 ]; then
	echo "--- testcontrol's nodes (home DERP region, endpoints)"
	ip netns exec "$node" curl -sS --max-time 5 "http://$tc_admin/nodes" |
		jq -r '.[] | "\(.hostname)  \(.addresses | join(" "))  \(.tags | join(","))  derp \(.home_derp // 0)  \(.endpoints // [] | join(" "))"'
	echo "--- testcontrol's DERP regions"
	ip netns exec "$node" curl -sS --max-time 5 "http://$tc_admin/derp" |
		jq -r '.[] | "region \(.region) at \(.host):\(.port): \(.clients | map(select(.preferred)) | length) pods at home"'
fi
# Each status asks the workers for fresh counters: the second shows them.
"$supervisor" status --socket "$tmp/cni.sock" >/dev/null
sleep 1
echo "--- tailscale-cni-supervisor status"
if [ $verbose -eq 1 ]; then
	"$supervisor" status --peers --socket "$tmp/cni.sock"
else
	"$supervisor" status --socket "$tmp/cni.sock"
fi
echo

if [ $failed -gt 0 ]; then
	echo "demo.sh: $failed of $total pings failed (supervisor log: $tmp/supervisor.log)" >&2
	exit 1
fi

if [ $keep -eq 1 ]; then
	{
		printf 'tmp=%q node=%q sup_pid=%q tc_pid=%q run_id=%q pods=%q\n' "$tmp" "$node" \
			"$sup_pid" "$tc_pid" "$$" "$pods"
	} >"$kept"
	trap - ERR
	say "left running (--keep). To look at it:"
	cat <<EOF
  ip netns exec tscni-demo-pod1-$$ ip addr show ts0              # a pod's ts0
  ip netns exec tscni-demo-pod1-$$ ip route show dev ts0         # its routes: exactly the peers
  ip netns exec tscni-demo-pod1-$$ busybox ping -c 3 ${v4[$((pods > 1 ? 2 : 1))]}
  $supervisor status --socket $tmp/cni.sock
  $supervisor status --peers --socket $tmp/cni.sock              # each pod's peers: path, handshake, bytes
  $supervisor status --json --socket $tmp/cni.sock | jq .
  less $tmp/supervisor.log                                        # the supervisor's log
To tear it down (CNI DEL for each pod, then the supervisor and testcontrol):
  scripts/demo.sh --down
EOF
	exit 0
fi

say "deleting the pods through CNI DEL"
for i in $(seq 1 "$pods"); do
	ns=tscni-demo-pod$i-$$
	cni DEL "/var/run/netns/$ns" "c$i" tailscale-cni "$(ts_del_conf)" >/dev/null
	cni DEL "/var/run/netns/$ns" "c$i" bridge "$(bridge_conf)" >/dev/null
	if ip -n "$ns" link show ts0 >/dev/null 2>&1; then
		echo "demo.sh: ts0 is still in pod $i after DEL" >&2
		exit 1
	fi
done
say "done: $pods pods attached, $((total - failed))/$total pings over ts0, pods deleted"
