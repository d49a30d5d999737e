#!/bin/bash
# e2e chain: Debian's bridge + host-local, then tailscale-cni, driven as
# libcni drives a conflist, with the real supervisor, for one cniVersion:
#   chain.sh 0.4.0|1.0.0|1.1.0
#
#   netns NODE                                        netns POD
#   ┌─────────────────────────────────┐              ┌───────────────────────┐
#   │ bridge tb<pid> 10.244.1.1/24 ───┼── veth ──────┼─ eth0 10.244.1.x/24   │
#   │ plugins exec'd here             │              │ ts0 MTU 1280 (ours)   │
#   └─────────────────────────────────┘              └─────────▲─────────────┘
#   host netns: tailscale-cni-supervisor ($T/run/cni.sock) ─────┘
#
# ADD → the result is the bridge's result plus ts0 (sandbox = the netns path);
# ts0 in the pod, UP, MTU 1280; CHECK passes; DEL (reverse order) removes
# ts0, eth0, the supervisor's record and the host-local lease; DEL again ok.
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/chain.sh"

V=${1:?usage: chain.sh CNI-VERSION}
tscni_init "chain${V//./}"
chain_setup || exit 1
sup_start || tscni_finish
chain_confs "$V" chainnet 10.244.1.0/24 "tb$$"
ns_new pod
POD=$NS_NAME
PODP=$(ns_path "$POD")
CID="chain-$V-$$"

if chain_add chainnet "$CID" "$PODP"; then
	check_add_result "[$V] chain ADD" "$R2" "$V" "$PODP" "$R1"
	check "[$V] the bridge's eth0 is kept in the result" \
		jqe '[.interfaces[] | select(.name == "eth0")] | length == 1' <<<"$R2"
	OUT=$R2 check_ts0 "[$V] chain" "$POD"
	check "[$V] eth0 in the pod" has_link "$POD" eth0
	if sup_has_record chainnet "$CID" eth0; then
		pass "[$V] the supervisor holds chainnet/$CID/eth0"
	else
		fail "[$V] the supervisor holds no record for chainnet/$CID/eth0: $(sup_records | tr '\n' ';')"
	fi
	chain_check chainnet "$CID" "$PODP" "$R2"
	leases_before=$(find "$T/ipam" -type f -name '10.244.*' | wc -l)
	check "[$V] host-local holds a lease" test "$leases_before" -eq 1
	chain_del chainnet "$CID" "$PODP" "$R2"
	check "[$V] ts0 gone after DEL" bash -c "! ip -n $POD link show ts0 >/dev/null 2>&1"
	check "[$V] eth0 gone after DEL" bash -c "! ip -n $POD link show eth0 >/dev/null 2>&1"
	recs=$(sup_records)
	check "[$V] no supervisor record after DEL (records: $recs)" test -z "$recs"
	check "[$V] host-local lease released" \
		test "$(find "$T/ipam" -type f -name '10.244.*' | wc -l)" -eq 0
	check "[$V] no attachment record file left in the state dir" test -z "$(state_records)"
	chain_del chainnet "$CID" "$PODP" "$R2"
	chain_del chainnet "$CID" "$PODP" ""
fi
tscni_finish
