#!/bin/bash
# e2e adoption of a worker that never reached control: with the control
# plane down, ADD returns at syncTimeout with ts0 and no addresses; the
# supervisor is stopped (SIGTERM) and started again while the worker is
# still trying. The restarted supervisor adopts that worker (same pid, same
# ts0) instead of taking its ts0 away; once control is back, the worker
# registers, its Ready arrives on the new connection and the pod gets its
# addresses.
#
#   node netns: testcontrol (stopped, then started on the same ports), our
#   supervisor and the pod's worker; pod netns: ts0
source "$(dirname "$0")/../lib/common.sh"

tscni_init "adoptunready"
source "$(dirname "$0")/../lib/tailnet.sh"

node_ns_new || tscni_finish
# Started once for its ports, CA and auth key, then stopped: control is
# unreachable when the pod comes.
tc_start || tscni_finish
tc_authkey '{"reusable": true, "tags": ["tag:e2e"]}' || tscni_finish
tc_stop
sup_start_tailnet || tscni_finish

ns_new p0 || tscni_finish
P=$NS_NAME
c=$(mkconf 1.0.0 '.syncTimeout = "2s"')
CID="pod-$$-0" NETNS=$(ns_path "$P") cni "$c" CNI_COMMAND=ADD \
	"CNI_ARGS=K8S_POD_NAMESPACE=ns0;K8S_POD_NAME=web-0;K8S_POD_UID=uid-$$-0"
expect_ok "ADD with control down returns at syncTimeout" || tscni_finish
CLEAN_CMDS+=("CID=pod-$$-0 NETNS=$(ns_path "$P") cni '$c' CNI_COMMAND=DEL 'CNI_ARGS=K8S_POD_UID=uid-$$-0'")
check "the ADD result lists ts0 without tailnet addresses" \
	jqq '[.ips[]? | select(.address | startswith("100."))] | length == 0' <<<"$OUT"
wpid=$(pod_stat "uid-$$-0" worker_pid)
ifx=$(ip -n "$P" -o link show ts0 | cut -d: -f1)
state=$(pod_stat "uid-$$-0" worker_state)
echo "# worker $wpid ($state), ts0 ifindex $ifx"
check "the worker runs, not Ready ($state)" test -n "$wpid" -a "$state" != ready

sup_stop
check "the worker outlives the supervisor's SIGTERM" kill -0 "$wpid"
sup_start_tailnet || tscni_finish
check "the restarted supervisor adopted the worker that was not Ready" \
	grep -qE "worker $wpid adopted .*not Ready yet" "$T/sup.log"
check "same worker ($(pod_stat "uid-$$-0" worker_pid))" \
	test "$(pod_stat "uid-$$-0" worker_pid)" == "$wpid"
check "same ts0 (ifindex $ifx)" \
	test "$(ip -n "$P" -o link show ts0 | cut -d: -f1)" == "$ifx"
check "ts0 was not taken away" \
	bash -c "! grep -q 'held by a process that was not adopted' '$T/sup.log'"

# Control comes back: the adopted worker registers and its Ready reaches us.
tc_start || tscni_finish
for ((k = 0; k < 200; k++)); do
	a4=$(ip -n "$P" -4 -o addr show dev ts0 | grep -oE '100\.[0-9.]+' | head -n 1)
	[[ -n $a4 && $(pod_stat "uid-$$-0" worker_state) == ready ]] && break
	sleep 0.1
done
check "control back: the adopted worker is Ready and ts0 has ${a4:-no} 100.x address" \
	test -n "$a4" -a "$(pod_stat "uid-$$-0" worker_state)" == ready
check "still the same worker" test "$(pod_stat "uid-$$-0" worker_pid)" == "$wpid"
tscni_finish
