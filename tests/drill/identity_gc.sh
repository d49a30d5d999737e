#!/bin/bash
# drill: nothing of a pod is left behind once it is gone. Two pods; pod
# "gone" is deleted, pod "stays" keeps its attachment. The supervisor runs
# with --identity-grace 3 (seconds) and --reconcile-interval 1:
#   - right after the DEL, the gone pod's identity (its keys) is still there
#     (a sandbox re-created for the same pod UID within the grace keeps its
#     node), and its worker's rendezvous socket is gone from the run dir;
#   - after the grace, pods/uid-gone (identity.pb and all) is removed, the
#     log says so, and the staying pod's identity is untouched;
#   - a pod deleted while the supervisor is down (tombstone): the restarted
#     supervisor releases it and removes its identity after the grace; no
#     rendezvous socket is left in the run dir.
source "$(dirname "$0")/../lib/common.sh"
tscni_init idgc

GRACE=3
sup_start --identity-grace "$GRACE" --reconcile-interval 1 || tscni_finish
declare -A NSN CONF
for p in gone stays; do
	ns_new "$p" || tscni_finish
	NSN[$p]=$NS_NAME
	CONF[$p]=$(NETNS=$(ns_path "$NS_NAME") mkconf 1.0.0)
	NETNS=$(ns_path "$NS_NAME") CID=$p cni "${CONF[$p]}" CNI_COMMAND=ADD "CNI_ARGS=K8S_POD_UID=uid-$p"
	expect_ok "ADD $p" || tscni_finish
done
check "both pods have an identity" test -f "$STATE/pods/uid-gone/identity.pb" -a \
	-f "$STATE/pods/uid-stays/identity.pb"
socks=$(find "$T/run/workers" -name '*.sock' | wc -l)
check "each worker has its rendezvous socket ($socks)" test "$socks" -eq 2

NETNS=$(ns_path "${NSN[gone]}") CID=gone cni "$(mkconf 1.0.0 'del(.prevResult)')" CNI_COMMAND=DEL
expect_ok "DEL gone" 1
t0=$(date +%s%3N)
check "right after the DEL the identity is kept (the grace)" test -f "$STATE/pods/uid-gone/identity.pb"
check "the gone pod's rendezvous socket left the run dir" test ! -e "$T/run/workers/uid-gone.sock"
for ((k = 0; k < 100; k++)); do
	[[ -e $STATE/pods/uid-gone ]] || break
	sleep 0.1
done
t1=$(date +%s%3N)
echo "# identity of the gone pod removed $((t1 - t0)) ms after its DEL (grace ${GRACE} s)"
check "after the grace pods/uid-gone is removed" test ! -e "$STATE/pods/uid-gone"
check "not before the grace ($((t1 - t0)) ms)" test $((t1 - t0)) -ge $((GRACE * 1000 - 500))
check "the log says so" grep -q "pod uid-gone: gone for $GRACE s or more: its identity" "$T/sup.log"
check "the staying pod's identity is untouched" test -f "$STATE/pods/uid-stays/identity.pb"

# The staying pod is deleted while the supervisor is down (the plugin
# leaves a tombstone): the restarted supervisor releases it, and its
# identity goes after the grace as well.
sup_stop
NETNS=$(ns_path "${NSN[stays]}") CID=stays cni "$(mkconf 1.0.0 'del(.prevResult)')" CNI_COMMAND=DEL
expect_ok "DEL stays, the supervisor down (tombstone)" 1
sup_start --identity-grace "$GRACE" --reconcile-interval 1 || tscni_finish
check "after the restart the identity is still there (its grace began)" \
	test -f "$STATE/pods/uid-stays/identity.pb"
for ((k = 0; k < 100; k++)); do
	[[ -e $STATE/pods/uid-stays ]] || break
	sleep 0.1
done
check "then it is removed after the grace" test ! -e "$STATE/pods/uid-stays"
left=$(find "$STATE/pods" -mindepth 1 | wc -l)
check "nothing is left under pods/ ($left entries)" test "$left" -eq 0
socks=$(find "$T/run/workers" -name '*.sock' | wc -l)
check "no rendezvous socket is left in the run dir ($socks)" test "$socks" -eq 0
tscni_finish
