#!/bin/bash
# e2e endpoints: where a pod's endpoints come from (docs/tailscale-protocol.md
# §8). The supervisor runs in a node netns of our own with
# --endpoint-deny-iface 'blk*' and --udp-port-range LO-(LO+1):
#
#   netns NODE   nic0   10.201.0.1/24 2001:db8:201::1/64   announced
#                cni0   10.202.0.1/24                      never (built-in list)
#                vethe2e0 10.203.0.1/24                    never (built-in list)
#                blk0   10.204.0.1/24                      never (the option)
#                ext1   10.205.0.1/24, added once pod 0 is up: announced within
#                       seconds, and gone again once removed
#                cni0   10.206.0.1/24, added then too: never
#                testcontrol on 127.0.0.1, the supervisor, the workers
#   netns p0, p1, p2     ts0 (the pods)
#
# Checked at testcontrol (admin GET /nodes, learned from lite updates): each
# pod's endpoints carry only the announced addresses, with a port in the
# range; pods 0 and 1 take the range's two ports; after a supervisor kill -9
# and restart (adoption) and a worker kill -9 (respawn from the custody the
# adoption got back) pod 0 keeps its port and still sees address changes; pod 2's ADD then fails with
# a message naming --udp-port-range (code 999: not a supervisor outage, so
# failurePolicy "ignore" does not start the pod without ts0), its DEL succeeds, and once pod
# 1 is gone an ADD of pod 2 gets the port pod 1 had. Every address and
# interface lives in the test's own namespaces.
source "$(dirname "$0")/../lib/common.sh"

tscni_init "endpoints"
source "$(dirname "$0")/../lib/tailnet.sh"
[[ -x $TC ]] || {
	echo "testcontrol missing: build first" >&2
	exit 1
}

# link_up NAME [ADDR]: a veth pair NAME / NAME-p in the node netns, both up,
# ADDR on NAME (no dummy driver on every kernel).
link_up()
{
	ip -n "$NODE_NS" link add "$1" type veth peer name "${1:0:12}-p" || return 1
	ip -n "$NODE_NS" link set "${1:0:12}-p" up
	ip -n "$NODE_NS" link set "$1" up
	[[ -z ${2:-} ]] || ip -n "$NODE_NS" addr add "$2" dev "$1"
}

# pod_eps I: pod I's endpoints at testcontrol, sorted, one JSON array.
pod_eps()
{
	tc_get /nodes | jq -c --arg h "e2e-ns$1-web-$1-" \
		'[.[] | select((.hostname | startswith($h)) and (.logged_out | not))][0].endpoints // []
			| sort'
}

# wait_eps I JQ [SECONDS]: until pod I's endpoints satisfy the jq test JQ.
wait_eps()
{
	local k
	for ((k = 0; k < ${3:-10} * 10; k++)); do
		jqq "$2" <<<"$(pod_eps "$1")" && return 0
		sleep 0.1
	done
	return 1
}

# add_raw I [JQ]: an ADD of pod I that may fail (sets OUT, RC; POD_NS[I]);
# JQ: a jq filter applied to the network config.
add_raw()
{
	local c
	c=$(mkconf 1.0.0 ".syncTimeout = \"10s\" | ${2:-.}")
	CID="pod-$$-$1" NETNS=$(ns_path "${POD_NS[$1]}") cni "$c" CNI_COMMAND=ADD \
		"CNI_ARGS=K8S_POD_NAMESPACE=ns$1;K8S_POD_NAME=web-$1;K8S_POD_UID=uid-$$-$1"
}

node_ns_new || tscni_finish
ip -n "$NODE_NS" addr add 2001:db8:201::1/64 dev nic0 nodad || fail "IPv6 on nic0"
link_up cni0 10.202.0.1/24 || fail "cni0"
link_up vethe2e0 10.203.0.1/24 || fail "vethe2e0"
link_up blk0 10.204.0.1/24 || fail "blk0"
LO=$((40000 + RANDOM % 20000))
HI=$((LO + 1))

tc_start || tscni_finish
tc_authkey '{"reusable": true, "ephemeral": true, "tags": ["tag:e2e"]}' || tscni_finish
sup_start_tailnet --endpoint-deny-iface 'blk*' --udp-port-range "$LO-$HI" || tscni_finish

# --- the pods' first endpoints ---------------------------------------------
declare -a PORT
for i in 0 1; do
	pod_add "$i" || tscni_finish
	check "pod $i: nic0's address among its endpoints" \
		wait_eps "$i" 'any(.[]; startswith("10.201.0.1:"))'
	eps=$(pod_eps "$i")
	PORT[$i]=$(jq -r '[.[] | select(startswith("10.201.0.1:")) | sub(".*:"; "")][0]' <<<"$eps")
	check "pod $i: its port ${PORT[$i]} is in --udp-port-range $LO-$HI" \
		test "${PORT[$i]}" -ge "$LO" -a "${PORT[$i]}" -le "$HI"
	check "pod $i: nic0's IPv6 address with the same port ($eps)" \
		jqq --arg e "[2001:db8:201::1]:${PORT[$i]}" 'index($e) != null' <<<"$eps"
	check "pod $i: nothing from cni0, vethe2e0, blk0, lo or ts0 ($eps)" \
		jqq 'all(.[]; test("^(10\\.20[234]\\.|127\\.|100\\.|\\[fd7a:|\\[fe80:|\\[::1\\])") | not)' <<<"$eps"
done
check "pods 0 and 1 have different ports (${PORT[*]})" test "${PORT[0]}" != "${PORT[1]}"

# --- changes on the node after the pods are up -----------------------------
link_up ext1 10.205.0.1/24 || fail "ext1"
ip -n "$NODE_NS" addr add 10.206.0.1/24 dev cni0 || fail "a second address on cni0"
t0=$(date +%s%N)
wait_eps 0 'any(.[]; startswith("10.205.0.1:"))' 15
ok=$?
ms=$((($(date +%s%N) - t0) / 1000000))
check "pod 0: ext1's new address is announced (after $ms ms): $(pod_eps 0)" test "$ok" -eq 0
check "pod 1 announces it too: $(pod_eps 1)" wait_eps 1 'any(.[]; startswith("10.205.0.1:"))' 5
check "cni0's new address never is: $(pod_eps 0)" \
	jqq 'all(.[]; startswith("10.206.") | not)' <<<"$(pod_eps 0)"
grep -q "pod uid-$$-0: .* endpoints from the host's interfaces" "$T/sup.log" ||
	fail "the worker logs its endpoint changes"
ip -n "$NODE_NS" addr del 10.205.0.1/24 dev ext1
check "pod 0: the address is withdrawn once removed: $(pod_eps 0)" \
	wait_eps 0 'all(.[]; startswith("10.205.") | not) and length > 0' 15

# --- custody: adoption and respawn keep the port and the subscription -----
wpid()
{
	sup_status_json | jq -r --arg u "uid-$$-$1" '.pods[] | select(.pod_uid == $u) | .worker_pid'
}
pid_before=$(wpid 0)
sup_kill9
sup_start_tailnet --endpoint-deny-iface 'blk*' --udp-port-range "$LO-$HI" || tscni_finish
check "supervisor restart: pod 0's worker adopted" wait_ready 0
check "supervisor restart: the same worker ($pid_before)" test "$(wpid 0)" == "$pid_before"
# Killed now, it is respawned from the custody the adoption got back.
kill -KILL "$pid_before"
sleep 0.5
check "worker kill -9: respawned and ready" wait_ready 0
check "worker kill -9: a new process ($(wpid 0))" test "$(wpid 0)" != "$pid_before"
ip -n "$NODE_NS" addr add 10.205.0.9/24 dev ext1 || fail "10.205.0.9 on ext1"
check "the respawned worker sees a new address, with the same port ${PORT[0]}" \
	wait_eps 0 "index(\"10.205.0.9:${PORT[0]}\") != null and index(\"10.201.0.1:${PORT[0]}\") != null"
ip -n "$NODE_NS" addr del 10.205.0.9/24 dev ext1

# --- the range is full ------------------------------------------------------
ns_new p2 || tscni_finish
POD_NS[2]=$NS_NAME
add_raw 2
expect_err 999 "pod 2: ADD with every port of the range taken"
check "the error names the option: $(jq -c '{msg, details}' <<<"$OUT" 2>/dev/null)" \
	jqq '.msg | test("--udp-port-range")' <<<"$OUT"
check "the supervisor's log says so" grep -q "no free UDP port left in --udp-port-range" "$T/sup.log"
pod_del 2
add_raw 2 '.failurePolicy = "ignore"'
expect_err 999 "pod 2: the same with failurePolicy \"ignore\" (no pod without ts0)"
pod_del 2
# Pod 1 goes: its port is free again, and pod 2's next ADD takes it.
pod_del 1
add_raw 2
expect_ok "pod 2: ADD once pod 1's port is free"
wait_eps 2 "index(\"10.201.0.1:${PORT[1]}\") != null"
check "pod 2: it announces pod 1's old port ${PORT[1]}: $(pod_eps 2)" test $? -eq 0
pod_del 2
pod_del 0
tc_stop
tscni_finish
