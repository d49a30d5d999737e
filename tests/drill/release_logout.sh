#!/bin/bash
# drill: every way a pod goes logs its node out of control. Four pods joined
# to testcontrol with an ephemeral key (a logged-out ephemeral node is
# deleted, so "listed" is a yes/no question):
#   pod 0: its netns deleted (ip netns del, no DEL) while the supervisor runs;
#   pod 1: DEL while the supervisor is down (kill -9): the plugin leaves a
#          tombstone and removes ts0;
#   pod 2: its netns deleted while the supervisor is down;
#   pod 3: stays.
# Checked: pod 0's node is gone from control within 10 s; pods 1 and 2's
# within 10 s of the supervisor being back; pod 3 is still listed and ready;
# no rendezvous socket is left for pods 0-2; their identities are gone after
# the grace (--identity-grace 3). Printed: how long each logout took.
source "$(dirname "$0")/../lib/common.sh"

tscni_init "rlogout"
source "$(dirname "$0")/../lib/tailnet.sh"

GRACE=3
node_ns_new || tscni_finish
tc_start || tscni_finish
tc_authkey '{"reusable": true, "ephemeral": true, "tags": ["tag:e2e"]}' || tscni_finish
sup_start_tailnet --identity-grace "$GRACE" --reconcile-interval 1 || tscni_finish
for i in 0 1 2 3; do
	pod_add "$i" || tscni_finish
done

# listed I: pod I's node is at control (its hostname is e2e-nsI-web-I-...).
listed()
{
	tc_get /nodes | jq -e --arg h "e2e-ns$1-web-$1-" \
		'any(.[]; (.hostname | startswith($h)) and (.logged_out | not))' >/dev/null
}
# gone_within I S: pod I's node leaves control within S seconds; prints ms.
gone_within()
{
	local i=$1 t0 k
	t0=$(now_ms)
	for ((k = 0; k < $2 * 10; k++)); do
		listed "$i" || {
			echo $(($(now_ms) - t0))
			return 0
		}
		sleep 0.1
	done
	return 1
}

for i in 0 1 2 3; do
	check "pod $i: its node is listed at control" listed "$i"
done

# Pod 0: netns gone under a running supervisor.
ip netns del "${POD_NS[0]}"
ms=$(gone_within 0 10)
check "pod 0 (netns deleted): node gone from control within 10 s (${ms:-not} ms)" test -n "$ms"
# Whichever sees it first logs the node out: the worker (its TUN read fails)
# or the reconciler (the netns path is gone).
check "the log says the node was logged out" \
	grep -qE "pod ${POD_UID[0]}: .*TUN gone.*logging the node out|pod ${POD_UID[0]} .*netns .* gone without DEL: released" \
	"$T/sup.log"

# Pods 1 and 2: the supervisor is down while one is DELeted and the other's
# netns goes.
sup_kill9
CID="pod-$$-1" NETNS=$(ns_path "${POD_NS[1]}") cni "$(mkconf 1.0.0 'del(.prevResult)')" \
	CNI_COMMAND=DEL "CNI_ARGS=K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=web-1;K8S_POD_UID=${POD_UID[1]}"
expect_ok "pod 1: DEL with the supervisor down (tombstone)" 1
ip netns del "${POD_NS[2]}"
sleep 1
sup_start_tailnet --identity-grace "$GRACE" --reconcile-interval 1 || tscni_finish
for i in 1 2; do
	ms=$(gone_within "$i" 10)
	check "pod $i: node gone from control within 10 s of the supervisor's return (${ms:-not} ms)" \
		test -n "$ms"
done
check "pod 3: still listed" listed 3
check "pod 3: still ready" wait_ready 3

for ((k = 0; k < 100; k++)); do
	left=$(find "$STATE/pods" -mindepth 1 -maxdepth 1 -name 'uid-*' ! -name "${POD_UID[3]}" | wc -l)
	[[ $left -eq 0 ]] && break
	sleep 0.1
done
check "the gone pods' identities are removed after the grace ($left left)" test "$left" -eq 0
socks=$(find "$T/run/workers" -name '*.sock' | sort | tr '\n' ' ')
check "only pod 3's rendezvous socket is in the run dir ($socks)" \
	test "$socks" = "$T/run/workers/${POD_UID[3]}.sock "
pod_del 3
tscni_finish
