#!/bin/bash
# e2e chain, GC and STATUS (cniVersion 1.1.0): two networks, each a conflist
# of bridge + host-local + tailscale-cni, driven as libcni drives them.
#
#   netns NODE                                   pods (one netns each)
#   ┌───────────────────────────────┐           ┌──────────────┐
#   │ bridge ta<pid> 10.244.1.1/24 ─┼── veth ───┤ a1: eth0 ts0 │  network neta
#   │                              ─┼── veth ───┤ a2: eth0 ts0 │  network neta
#   │ bridge tb<pid> 10.244.2.1/24 ─┼── veth ───┤ b1: eth0 ts0 │  network netb
#   └───────────────────────────────┘           └──────────────┘
#   host netns: tailscale-cni-supervisor ($T/run/cni.sock)
#
# GC of neta listing only a1 releases a2 (record and ts0) and nothing of a1
# or of netb's b1. STATUS follows the supervisor: up → ok; killed → code 50
# under failurePolicy "fail", ok under "ignore".
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/chain.sh"

tscni_init chaingc
chain_setup || exit 1
sup_start || tscni_finish
chain_confs 1.1.0 neta 10.244.1.0/24 "ta$$"
chain_confs 1.1.0 netb 10.244.2.0/24 "tb$$"

declare -A POD RES
for p in a1 a2 b1; do
	ns_new "$p"
	POD[$p]=$NS_NAME
	net=neta
	[[ $p == b* ]] && net=netb
	chain_add "$net" "$p" "$(ns_path "${POD[$p]}")" || tscni_finish
	RES[$p]=$R2
	OUT=$R2 check_ts0 "$p" "${POD[$p]}"
done

gcenv=(CNI_COMMAND=GC CNI_CONTAINERID= CNI_NETNS= CNI_IFNAME= CNI_PATH=/usr/lib/cni)
gc=$(mktemp "$T/conf.XXXXXX")
jq '.["cni.dev/valid-attachments"] = [{containerID: "a1", ifname: "eth0"}]' "$T/ts-neta.json" >"$gc"
CNI_IN_NETNS=$NODE cni "$gc" "${gcenv[@]}"
expect_ok "GC neta with [a1]" 1
recs=$(sup_records)
check "a2's record released by GC (records: $(tr '\n' ';' <<<"$recs"))" \
	bash -c '! grep -qx "neta a2 eth0" <<<"$1"' _ "$recs"
check "a1's record kept" grep -qx "neta a1 eth0" <<<"$recs"
check "netb's b1 record kept (other network)" grep -qx "netb b1 eth0" <<<"$recs"
check "a2's ts0 removed" bash -c "! ip -n ${POD[a2]} link show ts0 >/dev/null 2>&1"
check "a1's ts0 kept" has_link "${POD[a1]}" ts0
check "b1's ts0 kept" has_link "${POD[b1]}" ts0
check "a2's eth0 untouched by our GC (not ours)" has_link "${POD[a2]}" eth0
chain_check neta a1 "$(ns_path "${POD[a1]}")" "${RES[a1]}"
chain_check netb b1 "$(ns_path "${POD[b1]}")" "${RES[b1]}"

senv=(CNI_COMMAND=STATUS CNI_CONTAINERID= CNI_NETNS= CNI_IFNAME= CNI_PATH=/usr/lib/cni)
st_fail=$(mktemp "$T/conf.XXXXXX")
st_ign=$(mktemp "$T/conf.XXXXXX")
jq '.failurePolicy = "fail"' "$T/ts-neta.json" >"$st_fail"
jq '.failurePolicy = "ignore"' "$T/ts-neta.json" >"$st_ign"
CNI_IN_NETNS=$NODE cni "$st_fail" "${senv[@]}"
expect_ok "STATUS with the supervisor up (fail policy)" 1
CNI_IN_NETNS=$NODE cni "$st_ign" "${senv[@]}"
expect_ok "STATUS with the supervisor up (ignore policy)" 1
sup_kill9
CNI_IN_NETNS=$NODE cni "$st_fail" "${senv[@]}"
expect_err 50 "STATUS with the supervisor killed, failurePolicy fail" 1.1.0
CNI_IN_NETNS=$NODE cni "$st_ign" "${senv[@]}"
expect_ok "STATUS with the supervisor killed, failurePolicy ignore" 1
sup_start || tscni_finish
CNI_IN_NETNS=$NODE cni "$st_fail" "${senv[@]}"
expect_ok "STATUS after the supervisor restarted" 1

for p in a1 a2 b1; do
	net=neta
	[[ $p == b* ]] && net=netb
	chain_del "$net" "$p" "$(ns_path "${POD[$p]}")" "${RES[$p]}"
done
recs=$(sup_records)
check "no records left after the DELs ($recs)" test -z "$recs"
tscni_finish
