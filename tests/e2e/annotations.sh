#!/bin/bash
# e2e per-pod choices from pod annotations (docs/cni-contract.md §7), through
# the real plugin (runtimeConfig["io.kubernetes.cri.pod-annotations"]), the
# supervisor with --allowed-tags and testcontrol:
#
#   node netns: testcontrol (admin /nodes), our supervisor, the workers
#   pod netns p0..p5: ts0 where a pod gets one
#
#   p0  tailscale-cni.io/tags: "tag:web"          -> node tagged exactly tag:web
#   p1  tags "tag:web,tag:admin" (admin not allowed) -> code 102 naming tag:admin;
#       no node, no record, no identity, no ts0, no worker
#   p2  tailscale-cni.io/hostname: "Web-Two"      -> node "web-two", the key's tags
#   p3  hostname "bad_name"                        -> code 102 naming it, nothing made
#   p4  tailscale-cni.io/enabled: "false" (selection "all") -> prevResult only, no ts0
#   then the supervisor is killed (-9) and restarted without --allowed-tags:
#   p0's worker is adopted, p0's worker respawned after a kill -9, and still
#   no new node and p0's node keeps exactly tag:web.
source "$(dirname "$0")/../lib/common.sh"

tscni_init "annotations"
source "$(dirname "$0")/../lib/tailnet.sh"

ANN='"io.kubernetes.cri.pod-annotations"'

# nodes: testcontrol's node list as a JSON array.
nodes()
{
	tc_get /nodes | jq -c 'if type == "array" then . else .nodes end'
}

# node_of IP4: the node holding tailnet address IP4, one line of JSON.
node_of()
{
	nodes | jq -c --arg a "$1" \
		'map(select(any(.addresses[]; . == $a or startswith($a + "/"))))[0] // empty'
}

# add_refused I JQ: an ADD of pod I that must fail; OUT holds the error.
add_refused()
{
	local i=$1 c

	ns_new "p$i" || return 1
	POD_NS[$i]=$NS_NAME
	c=$(mkconf 1.0.0 ".syncTimeout = \"10s\" | $2")
	CID="pod-$$-$i" NETNS=$(ns_path "$NS_NAME") cni "$c" CNI_COMMAND=ADD \
		"CNI_ARGS=K8S_POD_NAMESPACE=ns$i;K8S_POD_NAME=web-$i;K8S_POD_UID=uid-$$-$i"
}

# has_record I / no_record I: an attachment record of pod I's container is /
# is not in the state dir.
has_record()
{
	state_records | grep -q "pod-$$-$1"
}

no_record()
{
	! has_record "$1"
}

# nothing_made I: pod I has no record, identity, ts0 or worker.
nothing_made()
{
	local i=$1

	check "pod $i: no attachment record" no_record "$i"
	check "pod $i: no identity" test ! -e "$STATE/pods/uid-$$-$i"
	check "pod $i: the supervisor holds nothing for it" \
		test -z "$(sup_status_json | jq -r --arg u "uid-$$-$i" '.pods[]? | select(.pod_uid == $u) | .pod_uid')"
	check "pod $i: no ts0" bash -c "! ip -n '${POD_NS[$i]}' link show ts0 >/dev/null 2>&1"
}

node_ns_new || tscni_finish
tc_start || tscni_finish
tc_authkey '{"reusable": true, "tags": ["tag:e2e"]}' || tscni_finish
# The allowed set from two options, one a list.
sup_start_tailnet --allowed-tags tag:web,tag:db --allowed-tags tag:cache || tscni_finish

# p0: an allowed tag.
pod_add 0 ".runtimeConfig = {$ANN: {\"tailscale-cni.io/tags\": \"tag:web\"}}" || tscni_finish
n0=$(node_of "${POD4[0]}")
echo "# pod 0's node: $n0"
check "pod 0: its node has exactly tag:web" jqq '.tags == ["tag:web"]' <<<"$n0"
check "pod 0: its worker asked for exactly tag:web" jqq '.request_tags == ["tag:web"]' <<<"$n0"
count=$(nodes | jq length)
check "pod 0: its attachment record is in the state dir (as no_record looks)" has_record 0

# p1: a tag outside --allowed-tags.
add_refused 1 ".runtimeConfig = {$ANN: {\"tailscale-cni.io/tags\": \"tag:web,tag:admin\"}}"
expect_err 102 "pod 1: ADD with tag:admin refused"
echo "# $OUT"
check "pod 1: the error names tag:admin and --allowed-tags" \
	grep -q 'tag:admin is not in --allowed-tags' <<<"$OUT"
nothing_made 1
check "pod 1: no node registered ($(nodes | jq length) nodes, $count before)" \
	test "$(nodes | jq length)" == "$count"

# p2: a hostname, no tags annotation (the auth key's tags apply).
pod_add 2 ".runtimeConfig = {$ANN: {\"tailscale-cni.io/hostname\": \"Web-Two\"}}" || tscni_finish
n2=$(node_of "${POD4[2]}")
echo "# pod 2's node: $n2"
check "pod 2: its node is named web-two" jqq '.hostname == "web-two"' <<<"$n2"
check "pod 2: its node has the auth key's tags" jqq '.tags == ["tag:e2e"]' <<<"$n2"

# p3: a hostname that is no DNS label.
add_refused 3 ".runtimeConfig = {$ANN: {\"tailscale-cni.io/hostname\": \"bad_name\"}}"
expect_err 102 "pod 3: ADD with hostname bad_name refused"
echo "# $OUT"
check "pod 3: the error names the hostname" grep -q 'bad_name.*is not a DNS label' <<<"$OUT"
nothing_made 3

# p4: opting out under selection "all".
add_refused 4 ".runtimeConfig = {$ANN: {\"tailscale-cni.io/enabled\": \"false\"}}"
expect_ok "pod 4: ADD of an opted-out pod succeeds"
check "pod 4: the result has no tailnet address" \
	jqq '[.ips[]? | select(.address | startswith("100.") or startswith("fd7a:"))] | length == 0' <<<"$OUT"
nothing_made 4

count=$(nodes | jq length)
# kill -9 and a restart without --allowed-tags: the adopted pod keeps its
# node and tags (the supervisor asks for no new ones).
wpid=$(pod_stat "uid-$$-0" worker_pid)
sup_kill9
sup_start_tailnet || tscni_finish
check "pod 0: worker $wpid adopted after kill -9" grep -qE "worker $wpid adopted" "$T/sup.log"
check "pod 0: same worker" test "$(pod_stat "uid-$$-0" worker_pid)" == "$wpid"
# A respawn re-registers with the recorded identity (node key known: no auth key).
kill -KILL "$wpid"
for ((k = 0; k < 100; k++)); do
	npid=$(pod_stat "uid-$$-0" worker_pid)
	[[ -n $npid && $npid != "$wpid" && $(pod_stat "uid-$$-0" worker_state) == ready ]] && break
	sleep 0.1
done
check "pod 0: worker respawned and ready ($wpid -> ${npid:-none})" \
	test -n "$npid" -a "$npid" != "$wpid"
n0b=$(node_of "${POD4[0]}")
echo "# pod 0's node now: $n0b"
# The restarted supervisor has no --allowed-tags: the respawn's tags come
# from the identity record, and the respawned worker asked for them again.
check "pod 0: the respawned worker asked for tag:web (RequestTags)" \
	jqq '.request_tags == ["tag:web"]' <<<"$n0b"
check "pod 0: same node ($(jq -r .id <<<"$n0") -> $(jq -r .id <<<"$n0b"))" \
	test "$(jq -r .id <<<"$n0b")" == "$(jq -r .id <<<"$n0")"
check "pod 0: still exactly tag:web" jqq '.tags == ["tag:web"]' <<<"$n0b"
check "no new node after restart and respawn ($(nodes | jq length), $count before)" \
	test "$(nodes | jq length)" == "$count"

pod_del 0
pod_del 2
tscni_finish
