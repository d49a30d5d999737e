#!/usr/bin/env bash
# The main job on a built-in local setup: a "node" network namespace with a
# local tailnet (tests/testcontrol) and the supervisor in it, three "pods"
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
# Nothing leaves these namespaces. Usage (as root): scripts/demo.sh [--keep] [--pods N]
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
out=${TSCNI_OUT:-$src/out}
keep=0
pods=3
while [ $# -gt 0 ]; do
	case $1 in
	--keep) keep=1 ;;
	--pods) pods=$2; shift ;;
	*) echo "usage: $0 [--keep] [--pods N]" >&2; exit 2 ;;
	esac
	shift
done
[ "$(id -u)" -eq 0 ] || { echo "demo.sh: run as root (network namespaces, TUN)" >&2; exit 1; }

"$src/scripts/install-deps.sh"
cmake -S "$src" -B "$out/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$out/build" -j2 --target tailscale-cni tailscale-cni-supervisor \
	tailscale-cni-worker testcontrol >/dev/null
bin="$out/build"
plugin=$(find "$bin/cni" -maxdepth 1 -name tailscale-cni -type f)
supervisor=$(find "$bin/supervisor" -maxdepth 1 -name tailscale-cni-supervisor -type f)
testcontrol="$bin/tests/testcontrol/testcontrol"

tmp=$(mktemp -d /tmp/tscni-demo.XXXXXX)
node=tscni-demo-node-$$
sup_pid=
tc_pid=
cleanup() {
	set +e
	for i in $(seq 1 "$pods"); do ip netns del "tscni-demo-pod$i-$$" 2>/dev/null; done
	[ -n "$sup_pid" ] && kill "$sup_pid" 2>/dev/null && wait "$sup_pid" 2>/dev/null
	[ -n "$tc_pid" ] && kill "$tc_pid" 2>/dev/null && wait "$tc_pid" 2>/dev/null
	ip netns del "$node" 2>/dev/null
	rm -rf "$tmp"
}
if [ $keep -eq 0 ]; then trap cleanup EXIT; fi

mkdir -p "$tmp/bin"
ln -s /usr/lib/cni/bridge /usr/lib/cni/host-local "$tmp/bin/"
ln -s "$plugin" "$tmp/bin/tailscale-cni"
ip netns add "$node"
ip -n "$node" link set lo up

# The local tailnet: testcontrol on the node's loopback with two DERP regions
# (TLS, STUN on the same port numbers), a reusable pre-auth key with a tag
# minted through its admin API, written to a 0600 file.
mkdir -m 0700 "$tmp/tc"
ip netns exec "$node" "$testcontrol" --state-dir "$tmp/tc" --http 127.0.0.1:0 \
	--https 127.0.0.1:0 --admin 127.0.0.1:0 --derp 127.0.0.1:0 --derp 127.0.0.1:0 \
	>"$tmp/tc.out" 2>"$tmp/tc.log" </dev/null &
tc_pid=$!
for _ in $(seq 100); do grep -q '^listening ' "$tmp/tc.out" && break; sleep 0.05; done
line=$(grep -m1 '^listening ' "$tmp/tc.out") || { cat "$tmp/tc.log"; exit 1; }
tc_https=$(sed -n 's/.* https=\([^ ]*\).*/\1/p' <<<"$line")
tc_admin=$(sed -n 's/.* admin=\([^ ]*\).*/\1/p' <<<"$line")
tc_ca=$(sed -n 's/.* ca=\([^ ]*\).*/\1/p' <<<"$line")
(umask 077 && ip netns exec "$node" curl -sS --max-time 5 -X POST \
	-H 'Content-Type: application/json' -d '{"reusable": true, "tags": ["tag:demo"]}' \
	"http://$tc_admin/keys" | jq -r .key >"$tmp/authkey")
echo "== local tailnet: testcontrol at https://$tc_https"

ip netns exec "$node" "$supervisor" run --state-dir "$tmp/state" --socket "$tmp/cni.sock" \
	--node-name demo-node --control-url "https://$tc_https" --ca-file "$tc_ca" \
	--auth-key-file "$tmp/authkey" --cluster-name demo 2>"$tmp/supervisor.log" &
sup_pid=$!
for _ in $(seq 100); do [ -S "$tmp/cni.sock" ] && break; sleep 0.05; done
[ -S "$tmp/cni.sock" ] || { cat "$tmp/supervisor.log"; exit 1; }

bridge_conf='{"cniVersion":"1.0.0","name":"demo","type":"bridge","bridge":"tsdemo0",
 "isGateway":true,"ipam":{"type":"host-local","subnet":"10.99.0.0/24",
 "dataDir":"'"$tmp"'/ipam"}}'
ts_conf() {
	jq -c --argjson prev "$1" '. + {prevResult: $prev}' <<<'{"cniVersion":"1.0.0",
	 "name":"demo","type":"tailscale-cni","socketPath":"'"$tmp"'/cni.sock",
	 "stateDir":"'"$tmp"'/state","syncTimeout":"10s"}'
}
cni() { # cni VERB NETNS CONTAINERID PLUGIN CONF: as a runtime runs a plugin
	local out rc=0
	out=$(CNI_COMMAND=$1 CNI_NETNS=$2 CNI_CONTAINERID=$3 CNI_IFNAME=eth0 CNI_PATH="$tmp/bin" \
		CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=demo;K8S_POD_NAME=pod-$3;K8S_POD_UID=uid-$3" \
		ip netns exec "$node" "$tmp/bin/$4" <<<"$5") || rc=$?
	if [ $rc -ne 0 ]; then
		echo "demo: $4 $1 for $3 failed: $out" >&2
		return $rc
	fi
	printf '%s' "$out"
}

for i in $(seq 1 "$pods"); do
	ns=tscni-demo-pod$i-$$
	ip netns add "$ns"
	prev=$(cni ADD "/var/run/netns/$ns" "c$i" bridge "$bridge_conf")
	result=$(cni ADD "/var/run/netns/$ns" "c$i" tailscale-cni "$(ts_conf "$prev")")
	echo "== pod $i: CNI result"
	jq . <<<"$result"
	echo "== pod $i: ts0 inside the pod"
	ip -n "$ns" -d link show ts0 | head -2
	cni CHECK "/var/run/netns/$ns" "c$i" tailscale-cni "$(ts_conf "$result")" &&
		echo "== pod $i: CHECK passed"
done

# Every pod pings every other pod's Tailscale addresses over ts0.
addr() { ip -n "tscni-demo-pod$1-$$" -$2 -o addr show dev ts0 | awk '{print $4}' | cut -d/ -f1; }
for i in $(seq 1 "$pods"); do
	for j in $(seq 1 "$pods"); do
		[ "$i" = "$j" ] && continue
		for fam in 4 6; do
			a=$(addr "$j" "$fam")
			if ip netns exec "tscni-demo-pod$i-$$" busybox ping -c 1 -W 5 "$a" >/dev/null; then
				echo "== pod $i -> pod $j ($a) over ts0: ok"
			else
				echo "== pod $i -> pod $j ($a) over ts0: FAILED" >&2
				exit 1
			fi
		done
	done
done

echo "== testcontrol's nodes (home DERP region, endpoints)"
ip netns exec "$node" curl -sS --max-time 5 "http://$tc_admin/nodes" |
	jq -r '.[] | "\(.hostname)  \(.addresses | join(" "))  \(.tags | join(","))  derp \(.home_derp // 0)  \(.endpoints // [] | join(" "))"'
echo "== testcontrol's DERP regions (each pod keeps a connection to its home region)"
ip netns exec "$node" curl -sS --max-time 5 "http://$tc_admin/derp" |
	jq -r '.[] | "region \(.region) at \(.host):\(.port): \(.clients | map(select(.preferred)) | length) pods at home"'

echo "== tailscale-cni-supervisor status (per pod, its peers: path, last handshake, bytes)"
# Each status asks the workers for fresh counters: the second shows them.
"$supervisor" status --socket "$tmp/cni.sock" >/dev/null
sleep 1
"$supervisor" status --socket "$tmp/cni.sock"

if [ $keep -eq 1 ]; then
	echo "left running: supervisor pid $sup_pid, state $tmp, node netns $node"
	exit 0
fi
ts_del_conf='{"cniVersion":"1.0.0","name":"demo","type":"tailscale-cni","socketPath":"'"$tmp"'/cni.sock","stateDir":"'"$tmp"'/state"}'
for i in $(seq 1 "$pods"); do
	ns=tscni-demo-pod$i-$$
	cni DEL "/var/run/netns/$ns" "c$i" tailscale-cni "$ts_del_conf"
	cni DEL "/var/run/netns/$ns" "c$i" bridge "$bridge_conf"
	ip -n "$ns" link show ts0 >/dev/null 2>&1 && { echo "ts0 still in pod $i" >&2; exit 1; }
done
echo "== after DEL"
"$supervisor" status --socket "$tmp/cni.sock"
