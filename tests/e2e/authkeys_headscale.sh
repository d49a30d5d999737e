#!/bin/bash
# e2e: auth keys minted per pod through testcontrol's Headscale API fake
# (--api: /api/v1), --headscale-api-url/-api-key-file/-user.
#   - two pods ADD: two single-use pre-auth keys for user "pods" tagged
#     tag:pods (testcontrol's log), two nodes listed by GET /api/v1/node with
#     that tag;
#   - DEL: each node deleted by its cleanup job within 10 s (the keys are
#     not ephemeral, so the logout alone keeps the node);
#   - pod 0's node key expired by testcontrol: the supervisor confirms the
#     expiry through GET /api/v1/node/{id}, mints one more pre-auth key, and
#     the node re-registers with OldNodeKey: same node id and addresses, a
#     new node key; the DEL's job then deletes the node by its new key;
#   - a wrong API key → ADD fails with 104 naming Headscale's refusal;
#   - the API key is given by environment (--headscale-api-key-env) too;
#   - no API key or pre-auth key in the supervisor's log, state or outputs.
source "$(dirname "$0")/../lib/common.sh"

tscni_init "authkeyshs"
source "$(dirname "$0")/../lib/tailnet.sh"

node_ns_new || tscni_finish
TC_API=1 tc_start || tscni_finish
API="http://$TC_API_ADDR"

tc_post /headscale/users '{"name": "pods"}' >/dev/null
HSKEY=$(tc_post /headscale/apikeys '' | jq -r .key)
check "testcontrol makes a Headscale API key" grep -q '^hskey-api-' <<<"$HSKEY"
(umask 077 && printf '%s\n' "$HSKEY" >"$T/hs-key")

hs_nodes()
{
	in_ns "$NODE_NS" curl -sS --max-time 5 -H "Authorization: Bearer $HSKEY" "$API/api/v1/node"
}

# n_nodes PREFIX: nodes whose name starts with PREFIX and carry tag:pods.
n_nodes()
{
	hs_nodes | jq --arg h "$1" '[.nodes[] | select((.name | startswith($h)) and
		(.tags | index("tag:pods")))] | length'
}

wait_nodes()
{
	local i
	for ((i = 0; i < $3 * 10; i++)); do
		[[ $(n_nodes "$1") == "$2" ]] && return 0
		sleep 0.1
	done
	return 1
}

sup_hs()
{
	sup_start --control-url "https://$TC_HTTPS" --ca-file "$TC_CA" --cluster-name e2e \
		--headscale-api-url "$API" --headscale-user pods --key-tags tag:pods \
		--key-ephemeral false "$@"
}

sup_hs --headscale-api-key-file "$T/hs-key" || tscni_finish
pod_add 0 || tscni_finish
pod_add 1 || tscni_finish
check "two pre-auth keys for user pods, single-use, tagged ($(grep -c 'headscale pre-auth key' "$T/tc.log"))" \
	test "$(grep 'headscale pre-auth key' "$T/tc.log" | grep -c 'reusable 0, ephemeral 0, 1 tags')" -eq 2
check "two nodes listed with tag:pods" test "$(n_nodes e2e-ns)" -eq 2

# Key expiry: pod 0's node by its address.
hs_node0() { hs_nodes | jq -c --arg a "${POD4[0]}" '[.nodes[] | select(.ipAddresses | index($a))][0]'; }
N0=$(hs_node0)
ID0=$(jq -r .id <<<"$N0")
K0=$(jq -r .nodeKey <<<"$N0")
KEYS0=$(grep -c 'headscale pre-auth key' "$T/tc.log")
tc_post "/nodes/$ID0/expire" '{}' >/dev/null
for ((k = 0; k < 200; k++)); do
	N0b=$(hs_node0)
	[[ $(jq -r .nodeKey <<<"$N0b") != "$K0" && $(jq -r .expiry <<<"$N0b") == null ]] && break
	sleep 0.1
done
check "expiry: pod 0's node has a new node key (within 20 s)" \
	test "$(jq -r .nodeKey <<<"$N0b")" != "$K0"
check "expiry: same node id and addresses ($(jq -c .ipAddresses <<<"$N0b"))" \
	test "$(jq -c '[.id, .ipAddresses]' <<<"$N0b")" == "$(jq -c '[.id, .ipAddresses]' <<<"$N0")"
check "expiry: one more pre-auth key" \
	test "$(grep -c 'headscale pre-auth key' "$T/tc.log")" -eq $((KEYS0 + 1))
check "expiry: confirmed by the key source (the supervisor's log)" \
	grep -q "uid-$$-0.*node key expired, confirmed by the key source" "$T/sup.log"
pod_del 0
pod_del 1
check "DEL: both nodes deleted by their jobs within 10 s" wait_nodes e2e-ns 0 10
check "the log says the jobs deleted them" test "$(grep -c 'device nodekey:.* deleted' "$T/sup.log")" -eq 2
sup_stop

# The key from the environment; then a wrong one.
HS_KEY_VAR=$HSKEY sup_hs --headscale-api-key-env HS_KEY_VAR || tscni_finish
pod_add 2 || tscni_finish
check "API key from the environment: node listed" test "$(n_nodes e2e-ns2-)" -eq 1
pod_del 2
check "its node deleted within 10 s" wait_nodes e2e-ns2- 0 10
sup_stop
HS_KEY_VAR=hskey-api-wrong-$$ sup_hs --headscale-api-key-env HS_KEY_VAR || tscni_finish
ns_new p3 || tscni_finish
POD_NS[3]=$NS_NAME
CID="pod-$$-3" NETNS=$(ns_path "$NS_NAME") cni "$(mkconf 1.0.0 '.syncTimeout = "10s"')" \
	CNI_COMMAND=ADD "CNI_ARGS=K8S_POD_NAMESPACE=ns3;K8S_POD_NAME=web-3;K8S_POD_UID=uid-$$-3"
expect_err 104 "wrong API key: ADD fails"
check "the message names Headscale's refusal ($(jq -c '[.msg, .details]' <<<"$OUT"))" \
	grep -q "Headscale refused the API key.*401" <<<"$OUT"
pod_del 3
sup_stop

leak=$(grep -rlaF -e "$HSKEY" -e hskey-auth- -e hskey-api- "$T/sup.log" "$STATE" 2>/dev/null)
check "no API key or pre-auth key in the supervisor's log or state (${leak:-none})" test -z "$leak"
check "testcontrol saw the pre-auth keys (the pattern is live)" grep -qa hskey-auth- -r "$T/tc"
tscni_finish
