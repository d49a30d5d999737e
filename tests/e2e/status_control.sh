#!/bin/bash
# e2e `tailscale-cni-supervisor status` as an operator reads it (issue 14
# item 6): a pod whose control server is unreachable shows why, in the text
# and in --json, within 10 s, and the view's health is "degraded" (while the
# CNI STATUS verb, which the runtime runs, still succeeds); with a working
# control server the pods read "connected", health is back to ready, rows
# carry hostname, addresses, peers, worker pid and memory, and --peers adds
# one line per peer that plain status leaves out.
#
#   node netns: lo 127.0.0.1 (port 1: nothing listens; later testcontrol),
#               the supervisor and its workers
#   pod netns:  ts0 (one pod in phase 1, two in phase 2)
source "$(dirname "$0")/../lib/common.sh"

tscni_init "statusctl"
source "$(dirname "$0")/../lib/tailnet.sh"

status_text() { timeout 10 "$SUP" status --socket "$SOCK" "$@"; }

node_ns_new || tscni_finish

# --- phase 1: control unreachable ---------------------------------------------
sup_start --control-url http://127.0.0.1:1 --cluster-name e2e || tscni_finish
ns_new p0 || tscni_finish
P0=$NS_NAME
c=$(mkconf 1.0.0 '.syncTimeout = "2s"')
# The ADD waits syncTimeout (2 s) for a Ready that cannot come: it runs in
# the background while both views are polled from its start, so the time
# measured is from the worker's spawn (its first attempt fails at once).
t0=$(date +%s%N)
(
	CID="pod-$$-0" NETNS=$(ns_path "$P0") cni "$c" CNI_COMMAND=ADD \
		"CNI_ARGS=K8S_POD_NAMESPACE=ns0;K8S_POD_NAME=web-0;K8S_POD_UID=uid-$$-0"
	echo "$RC" >"$T/add.rc"
	printf '%s' "$OUT" >"$T/add.out"
) >"$T/add.log" 2>&1 &
add_pid=$!
CLEAN_CMDS+=("CID=pod-$$-0 NETNS=$(ns_path "$P0") cni '$c' CNI_COMMAND=DEL 'CNI_ARGS=K8S_POD_UID=uid-$$-0'")

# Poll both views until each names the reason: control Events carry it to
# the supervisor as the failure happens.
txt="" js="" t_txt="" t_js=""
for ((k = 0; k < 150; k++)); do
	if [[ -z $t_txt ]]; then
		txt=$(status_text 2>/dev/null)
		grep -q '^    control unreachable: .*127\.0\.0\.1' <<<"$txt" && t_txt=$(date +%s%N)
	fi
	if [[ -z $t_js ]]; then
		js=$(sup_status_json)
		jq -e --arg u "uid-$$-0" '.pods[] | select(.pod_uid == $u) |
			.control_state == "retrying" and (.control_reason | test("127\\.0\\.0\\.1"))' \
			<<<"$js" >/dev/null 2>&1 && t_js=$(date +%s%N)
	fi
	[[ -n $t_txt && -n $t_js ]] && break
	sleep 0.1
done
wait "$add_pid"
RC=$(cat "$T/add.rc" 2>/dev/null || echo 255)
OUT=$(cat "$T/add.out" 2>/dev/null)
ERR=""
check "the ADD's run is clean (plugin hygiene)" bash -c "! grep -q '^FAIL' '$T/add.log'"
expect_ok "ADD with control unreachable returns at syncTimeout" || tscni_finish
txt=$(status_text)
s_txt=$(awk -v a="$t0" -v b="${t_txt:-0}" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
s_js=$(awk -v a="$t0" -v b="${t_js:-0}" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
echo "# the reason in status after ${s_txt} s, in status --json after ${s_js} s (from the ADD's start)"
sed 's/^/#   /' <<<"$txt"
check "status (text) names the reason within 10 s (${s_txt} s)" \
	awk -v s="$s_txt" -v t="$t_txt" 'BEGIN { exit !(t != "" && s <= 10) }'
check "status --json names the reason within 10 s (${s_js} s)" \
	awk -v s="$s_js" -v t="$t_js" 'BEGIN { exit !(t != "" && s <= 10) }'
check "text: health degraded, naming 1 of 1 pods" \
	grep -q '^health: degraded (control failing for 1 of 1 pod)' <<<"$txt"
check "text: the pod's row: hostname, no address, retrying, worker starting, memory" \
	grep -qE '^ns0/web-0 +e2e-ns0-web-0-[0-9a-f]{8} +- +retrying +0 +[0-9]+ \(starting\) +[0-9.]+ (KiB|MiB)$' <<<"$txt"
check "text: when the next attempt comes and for how long it has failed" \
	grep -qE '^    control unreachable: .*; retrying (in [0-9]+ s|now) \(failing for [0-9]+ s\)$' <<<"$txt"
js=$(sup_status_json)
check "json: health degraded, control_failing 1, supervisor_health ready" \
	jqq '.health == "degraded" and (.reason | test("control failing for 1 of 1 pod")) and
	     .control_failing == 1 and .control_pods == 1 and .supervisor_health == "ready"' <<<"$js"
check "json: since and (next) retry times, hostname" \
	jqq --arg u "uid-$$-0" '.pods[] | select(.pod_uid == $u) |
	     .control_since_unix > 0 and .control_retry_unix >= 0 and (.hostname | test("^e2e-ns0-web-0-[0-9a-f]{8}$"))' \
	<<<"$js"
check "json: the reason is at most 160 printable bytes" \
	jqq --arg u "uid-$$-0" '.pods[] | select(.pod_uid == $u) |
	     (.control_reason | length <= 160 and test("^[ -~]+$"))' <<<"$js"
# The runtime's STATUS verb does not fail for one pod's control (a failed
# STATUS makes containerd's network NotReady: docs/cni-contract.md 4.5).
st=$(mkconf 1.1.0 '.')
cni "$st" CNI_COMMAND=STATUS
expect_ok "CNI STATUS still succeeds while the pod's control is down"

CID="pod-$$-0" NETNS=$(ns_path "$P0") cni "$c" CNI_COMMAND=DEL \
	"CNI_ARGS=K8S_POD_NAMESPACE=ns0;K8S_POD_NAME=web-0;K8S_POD_UID=uid-$$-0"
expect_ok "DEL of the pod whose control is down"
sup_stop

# --- phase 2: a working control server ----------------------------------------
tc_start || tscni_finish
tc_authkey '{"reusable": true, "ephemeral": true, "tags": ["tag:e2e"]}' || tscni_finish
sup_start_tailnet || tscni_finish
for i in 1 2; do
	pod_add "$i" || tscni_finish
done
for ((k = 0; k < 100; k++)); do
	js=$(sup_status_json)
	jq -e '.health == "ready" and ([.pods[] | select(.control_state == "connected" and
		.peers == 1 and .pss_bytes > 0)] | length == 2)' <<<"$js" >/dev/null 2>&1 && break
	sleep 0.1
done
check "json: both pods connected, one peer each, PSS known; health ready" \
	jqq '.health == "ready" and .control_failing == 0 and
	     ([.pods[] | select(.control_state == "connected" and .control_reason == "" and
	       .peers == 1 and .pss_bytes > 0)] | length == 2)' <<<"$js"
echo "# PSS: $(jq -c '[.pods[] | .pss_bytes]' <<<"$js")"
# A ping makes a handshake, so the peer lines have something to show (the
# worker publishes its per-peer report once a second: poll).
pinged=0
for ((k = 0; k < 20; k++)); do
	in_ns "${POD_NS[1]}" busybox ping -c 1 -W 1 "${POD4[2]}" >/dev/null 2>&1 && { pinged=1; break; }
done
check "pod 1 pings pod 2 over ts0" test $pinged == 1
peer_re="^    peer ${POD4[2]} +e2e-ns2-web-2-[0-9a-f]{8} +\[[A-Za-z0-9+/]{5}\] +(direct|derp-)[^ ]* .*handshake [0-9]+ \([0-9]+s ago\) +rx [0-9]+ tx [0-9]+$"
for ((k = 0; k < 30; k++)); do
	peers=$(status_text --peers)
	grep -qE "$peer_re" <<<"$peers" && break
	sleep 0.2
done
txt=$(status_text)
sed 's/^/#   /' <<<"$peers"
check "text: health ready" grep -q '^health: ready ' <<<"$txt"
check "text: the header's columns" \
	grep -qE '^POD +HOSTNAME +ADDRESSES +CONTROL +PEERS +WORKER +MEMORY$' <<<"$txt"
check "text: pod 1's row: hostname, both addresses, connected, 1 peer, pid, memory" \
	grep -qE "^ns1/web-1 +e2e-ns1-web-1-[0-9a-f]{8} +${POD4[1]} ${POD6[1]} +connected +1 +[0-9]+ +[0-9.]+ (KiB|MiB)$" \
	<<<"$txt"
check "text: columns aligned (CONTROL starts at the same offset on every line)" \
	test "$(awk '/^(POD|ns[12]\/)/ { print index($0, $4 == "CONTROL" ? "CONTROL" : "connected") }' \
		<<<"$txt" | sort -u | wc -l)" == 1
check "text: no control line while connected" \
	bash -c '! grep -q "^    control" <<<"$1"' _ "$txt"
check "plain status lists no peer" bash -c '! grep -q "^    peer " <<<"$1"' _ "$txt"
check "status --peers: pod 1's peer line (pod 2: address, name, path, handshake, bytes)" \
	grep -qE "$peer_re" <<<"$peers"
check "status --peers: one peer line a pod" test "$(grep -c '^    peer ' <<<"$peers")" == 2
tscni_finish
