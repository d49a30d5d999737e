#!/bin/bash
# e2e: the Tailscale API over TLS and the pod's own tags on its minted key
# (testcontrol --api --api-tls: the API on TLS with the https listener's
# test CA, which no system bundle holds).
#   - --ca-file names the test CA: the supervisor's API calls trust it (as
#     the workers' control and DERP do) and keys are minted;
#   - a pod without a tags annotation: its key carries --key-tags
#     (tag:pods), its device exactly that;
#   - a pod annotated tailscale-cni.io/tags: tag:web (in --allowed-tags, owned
#     by the OAuth client): its key carries exactly tag:web, its device too;
#   - a pod annotated tag:db (allowed by the operator, not owned by the
#     client): CNI 104 naming the tags, no device;
#   - tailscale_cni_api_errors_total{kind="refused"} counts that refusal;
#   - without --ca-file the system bundle does not trust the test CA: ADD
#     fails with 105 naming the certificate problem, and
#     tailscale_cni_api_errors_total{kind="unavailable"} counts the attempts.
source "$(dirname "$0")/../lib/common.sh"

tscni_init "authkeys_tls"
source "$(dirname "$0")/../lib/tailnet.sh"

ANN='"io.kubernetes.cri.pod-annotations"'
PORT=$((20000 + ($$ + 5000) % 10000))

node_ns_new || tscni_finish
TC_API=1 tc_start --api-tls || tscni_finish
API="https://$TC_API_ADDR"

# device HOSTPREFIX: the API's device whose hostname starts with HOSTPREFIX
# (the test's own client, over TLS with the test CA), one line of JSON.
device()
{
	local tok
	tok=$(in_ns "$NODE_NS" curl -sS --max-time 5 --cacert "$TC_CA" "$API/api/v2/oauth/token" \
		-d grant_type=client_credentials -d "client_id=$T_ID" -d "client_secret=$T_SECRET" |
		jq -r .access_token)
	in_ns "$NODE_NS" curl -sS --max-time 5 --cacert "$TC_CA" -H "Authorization: Bearer $tok" \
		"$API/api/v2/tailnet/-/devices" |
		jq -c --arg h "$1" '[.devices[] | select(.hostname | startswith($h))][0] // empty'
}

# sup_oauth ARGS...: the supervisor minting keys with client CL_ID.
sup_oauth()
{
	(umask 077 && printf '%s' "$CL_SECRET" >"$T/oauth-secret")
	sup_start --control-url "https://$TC_HTTPS" --cluster-name e2e \
		--oauth-client-id "$CL_ID" --oauth-client-secret-file "$T/oauth-secret" \
		--api-url "$API" --key-tags tag:pods --allowed-tags tag:web,tag:db \
		--metrics-listen "127.0.0.1:$PORT" "$@"
}

# api_errors KIND: tailscale_cni_api_errors_total{kind="KIND"} now.
api_errors()
{
	in_ns "$NODE_NS" curl -sS -m 3 "http://127.0.0.1:$PORT/metrics" |
		awk -v s="tailscale_cni_api_errors_total{kind=\"$1\"}" '$1 == s { print $2; exit }'
}

# add I JQ: an ADD of pod I (its own netns) with the config filter JQ; OUT.
add()
{
	ns_new "p$1" || return 1
	POD_NS[$1]=$NS_NAME
	CID="pod-$$-$1" NETNS=$(ns_path "$NS_NAME") cni \
		"$(mkconf 1.0.0 ".syncTimeout = \"10s\" | $2")" CNI_COMMAND=ADD \
		"CNI_ARGS=K8S_POD_NAMESPACE=ns$1;K8S_POD_NAME=web-$1;K8S_POD_UID=uid-$$-$1"
}

tc_oauth_client '{"scopes": ["devices:core"], "tags": ["tag:pods"]}' || tscni_finish
T_ID=$CL_ID T_SECRET=$CL_SECRET
tc_oauth_client '{"scopes": ["auth_keys", "devices:core"], "tags": ["tag:pods", "tag:web"]}' ||
	tscni_finish
SECRET=$CL_SECRET

# --- --ca-file: the API over TLS is trusted ----------------------------------
sup_oauth --ca-file "$TC_CA" || tscni_finish
check "the metrics start at zero: refused $(api_errors refused)" test "$(api_errors refused)" == 0

add 0 . && expect_ok "pod 0 (no annotation): ADD over the API's TLS" || tscni_finish
d0=$(device e2e-ns0-)
echo "# pod 0's device: $d0"
check "pod 0: its key carried --key-tags (testcontrol minted [tag:pods])" \
	grep -q "minted by client $CL_ID.* tags \[tag:pods\]$" "$T/tc.log"
check "pod 0: its device has exactly tag:pods" jqq '.tags == ["tag:pods"]' <<<"$d0"

add 1 ".runtimeConfig = {$ANN: {\"tailscale-cni.io/tags\": \"tag:web\"}}" &&
	expect_ok "pod 1 (tags annotation tag:web): ADD" || tscni_finish
d1=$(device e2e-ns1-)
echo "# pod 1's device: $d1"
check "pod 1: its device has exactly tag:web" jqq '.tags == ["tag:web"]' <<<"$d1"
check "pod 1: the key minted for it carried tag:web (testcontrol's log)" \
	grep -q "minted by client $CL_ID.* tags \[tag:web\]$" "$T/tc.log"

add 2 ".runtimeConfig = {$ANN: {\"tailscale-cni.io/tags\": \"tag:db\"}}"
expect_err 104 "pod 2 (tag:db, allowed but not the client's): ADD refused" || tscni_finish
echo "# $OUT"
check "pod 2: the message names the tags" grep -q "permit the key's tags.*tag:db" <<<"$OUT"
check "pod 2: no device" test -z "$(device e2e-ns2-)"
check "pod 2: api_errors_total{kind=\"refused\"} counted it ($(api_errors refused))" \
	test "$(api_errors refused)" -ge 1
for i in 0 1; do
	pod_del "$i"
done
pod_del 2
sup_stop

# --- no --ca-file: the system bundle does not hold the test CA --------------
# (control is not reached either; the key is minted before the worker.)
sup_oauth || tscni_finish
add 3 .
expect_err 105 "pod 3: ADD without the test CA fails" || tscni_finish
echo "# $OUT"
check "pod 3: the message names the certificate problem" \
	grep -qiE "API is unavailable.*(certificate|SSL|issuer)" <<<"$OUT"
check "pod 3: api_errors_total{kind=\"unavailable\"} counted the attempts ($(api_errors unavailable))" \
	test "$(api_errors unavailable)" -ge 1
pod_del 3
sup_stop

leak=$(grep -rlaF -e "$SECRET" -e "$T_SECRET" -e tctoken- -e tskey-auth- "$T/sup.log" "$STATE" \
	2>/dev/null)
check "no client secret, token or key in the supervisor's log or state (${leak:-none})" \
	test -z "$leak"
tscni_finish
