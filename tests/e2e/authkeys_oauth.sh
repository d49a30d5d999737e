#!/bin/bash
# e2e: auth keys minted per pod through testcontrol's Tailscale API (--api)
# with an OAuth client, and the pods' devices deleted by cleanup jobs.
#   - ten pods ADD: ten single-use, preauthorized, ephemeral keys tagged
#     tag:pods (testcontrol's log), ten devices with that tag (the API's own
#     device list), one OAuth token fetched and reused;
#   - DEL of each: devices gone and jobs/ empty within 10 s;
#   - non-ephemeral keys (--key-ephemeral false), so a logout keeps the
#     device: DEL returns at once and the cleanup job deletes the device;
#     GC with an empty list: every device deleted;
#   - failure switches (POST /api-faults): 500 and malformed answers → ADD
#     fails with 105 "...API is unavailable", 429 → 105 "...rate limiting",
#     429 once with Retry-After 1 → ADD succeeds after >= 1 s, a slow answer
#     → ADD succeeds while STATUS and another pod's DEL are answered at once,
#     an expired token → 104; with the API failing, DEL returns at once and
#     its job deletes the device once the fault ends;
#   - refusals at configuration: a wrong client secret → 104 naming the
#     credentials (then the secret file rotated: the next ADD works), a client without the auth_keys scope → 104 naming the
#     scope, a tag the client does not own → 104 naming the tags;
#   - a job whose node key is not the device's: the device is kept;
#   - a supervisor restart: adopted pods get no new key;
#   - a short-lived token is fetched again before its end;
#   - a pod added and deleted over and over gets at most 4 keys;
#   - no client secret, token or key in any log, output or state file.
source "$(dirname "$0")/../lib/common.sh"

tscni_init "authkeys"
source "$(dirname "$0")/../lib/tailnet.sh"
JOBREC=$TSCNI_BUILD_DIR/tests/e2e/job_record

node_ns_new || tscni_finish
TC_API=1 tc_start || tscni_finish
API="http://$TC_API_ADDR"

# client JSON: an OAuth client at testcontrol; sets CL_ID and CL_SECRET.
client()
{
	tc_oauth_client "$1" || return 1
	SECRETS+=("$CL_SECRET")
}
SECRETS=()

# api_devices: the API's device list (a token of the test's own client).
api_devices()
{
	local tok
	tok=$(in_ns "$NODE_NS" curl -sS --max-time 5 "$API/api/v2/oauth/token" \
		-d grant_type=client_credentials -d "client_id=$T_ID" -d "client_secret=$T_SECRET" |
		jq -r .access_token)
	in_ns "$NODE_NS" curl -sS --max-time 5 -H "Authorization: Bearer $tok" \
		"$API/api/v2/tailnet/-/devices"
}

# n_devices PREFIX: devices whose hostname starts with PREFIX.
n_devices()
{
	api_devices | jq --arg h "$1" '[.devices[] | select(.hostname | startswith($h))] | length'
}

# wait_devices PREFIX N SECONDS: until N devices match (or the time is up).
wait_devices()
{
	local i
	for ((i = 0; i < $3 * 10; i++)); do
		[[ $(n_devices "$1") == "$2" ]] && return 0
		sleep 0.1
	done
	return 1
}

tokens() { grep -c "OAuth token for client $1" "$T/tc.log"; }
minted() { grep -c "minted by client $1" "$T/tc.log"; }
jobs_left() { find "$STATE/jobs" -name '*.pb' 2>/dev/null | wc -l; }

fault() { tc_post /api-faults "$1" >/dev/null; }

# sup_oauth ARGS...: the supervisor minting keys with client CL_ID.
sup_oauth()
{
	(umask 077 && printf '%s' "$CL_SECRET" >"$T/oauth-secret")
	sup_start --control-url "https://$TC_HTTPS" --ca-file "$TC_CA" --cluster-name e2e \
		--oauth-client-id "$CL_ID" --oauth-client-secret-file "$T/oauth-secret" \
		--api-url "$API" --key-tags tag:pods "$@"
}

# pod_add_err I CODE DESC PATTERN: an ADD of pod I that fails with CODE and a
# message matching PATTERN; then its DEL (as a runtime does).
pod_add_err()
{
	local i=$1 c
	ns_new "p$i" || return 1
	POD_NS[$i]=$NS_NAME
	c=$(mkconf 1.0.0 '.syncTimeout = "10s"')
	CID="pod-$$-$i" NETNS=$(ns_path "$NS_NAME") cni "$c" CNI_COMMAND=ADD \
		"CNI_ARGS=K8S_POD_NAMESPACE=ns$i;K8S_POD_NAME=web-$i;K8S_POD_UID=uid-$$-$i"
	expect_err "$2" "$3" || return 1
	check "$3: the message names the cause ($(jq -c '[.msg, .details]' <<<"$OUT"))" \
		grep -qE "$4" <<<"$OUT"
	pod_del "$i"
}

# readd I: ADD of pod I again, in its netns.
readd()
{
	CID="pod-$$-$1" NETNS=$(ns_path "${POD_NS[$1]}") cni "$(mkconf 1.0.0 '.syncTimeout = "10s"')" \
		CNI_COMMAND=ADD "CNI_ARGS=K8S_POD_NAMESPACE=ns$1;K8S_POD_NAME=web-$1;K8S_POD_UID=uid-$$-$1"
}

# The test's own client reads the device list.
client '{"scopes": ["devices:core"], "tags": ["tag:pods"]}' || tscni_finish
T_ID=$CL_ID T_SECRET=$CL_SECRET

# --- ten pods, one token, ephemeral keys ------------------------------------
client '{"scopes": ["auth_keys", "devices:core"], "tags": ["tag:pods"]}' || tscni_finish
MAIN_ID=$CL_ID MAIN_SECRET=$CL_SECRET
sup_oauth || tscni_finish
for i in $(seq 0 9); do
	pod_add "$i" || tscni_finish
done
check "ten keys minted by the client" test "$(minted "$MAIN_ID")" -eq 10
check "each single-use, ephemeral, preauthorized, tagged" test "$(grep "minted by client $MAIN_ID" \
	"$T/tc.log" | grep -c 'reusable 0, ephemeral 1, preauthorized 1, 1 tags, 300 s')" -eq 10
check "one OAuth token fetched and reused ($(tokens "$MAIN_ID"))" test "$(tokens "$MAIN_ID")" -eq 1
DEVS=$(api_devices)
check "ten devices tagged tag:pods, ephemeral" test "$(jq '[.devices[] |
	select((.hostname | startswith("e2e-ns")) and .tags == ["tag:pods"] and .isEphemeral)] |
	length' <<<"$DEVS")" -eq 10
for i in $(seq 0 9); do
	pod_del "$i" || tscni_finish
done
check "DEL: the ten devices are gone within 10 s" wait_devices e2e-ns 0 10
for ((k = 0; k < 100; k++)); do
	[[ $(jobs_left) == 0 ]] && break
	sleep 0.1
done
check "DEL: every cleanup job done within 10 s ($(jobs_left) left)" test "$(jobs_left)" -eq 0

# --- a supervisor restart: adopted pods get no new key ----------------------
pod_add 10 || tscni_finish
before=$(minted "$MAIN_ID")
sup_stop
sup_oauth || tscni_finish
check "restart: pod 10 adopted and ready" wait_ready 10
check "restart: no key minted for the adopted pod" test "$(minted "$MAIN_ID")" -eq "$before"
pod_del 10
sup_stop

# --- non-ephemeral: the cleanup job deletes the device ----------------------
sup_oauth --key-ephemeral false || tscni_finish
pod_add 11 || tscni_finish
check "non-ephemeral device listed" test "$(n_devices e2e-ns11-)" -eq 1
t0=$(now_ms)
pod_del 11
check "DEL returns at once ($(($(now_ms) - t0)) ms)" test $(($(now_ms) - t0)) -lt 3000
check "the job deletes the non-ephemeral device within 10 s" wait_devices e2e-ns11- 0 10
check "the log says the job deleted it" grep -q "pod uid-$$-11: device nodekey:.* deleted" "$T/sup.log"
# GC with an empty list releases every attachment: their devices go too.
pod_add 24 || tscni_finish
pod_add 25 || tscni_finish
c=$(mkconf 1.1.0 '.["cni.dev/valid-attachments"] = [] | del(.prevResult)')
cni "$c" CNI_COMMAND=GC CNI_CONTAINERID= CNI_NETNS= CNI_IFNAME=
expect_ok "GC with an empty list" 1
check "GC: pods 24 and 25's devices deleted by their jobs within 10 s" wait_devices e2e-ns2 0 10

# --- failure switches --------------------------------------------------------
fault '{"mode": "500"}'
pod_add_err 12 105 "500: ADD fails" "API is unavailable.*500" || tscni_finish
fault '{"mode": "malformed"}'
pod_add_err 13 105 "malformed: ADD fails" "API is unavailable.*malformed" || tscni_finish
fault '{"mode": "429", "retry_after": 1}'
pod_add_err 14 105 "429: ADD fails" "rate limiting.*429" || tscni_finish
fault '{"mode": "429", "retry_after": 1, "count": 1}'
t0=$(now_ms)
pod_add 15 || tscni_finish
check "429 once: the ADD waited Retry-After ($(($(now_ms) - t0)) ms)" test $(($(now_ms) - t0)) -ge 1000
fault '{"mode": "expired-token"}'
pod_add_err 16 104 "expired token: ADD fails" "refused the supervisor's token" || tscni_finish
fault '{"mode": "none"}'
pod_add 17 || tscni_finish
# slow: the ADD's key is held 2.5 s; meanwhile STATUS and pod 17's DEL are
# answered at once.
fault '{"mode": "slow", "delay_ms": 2500, "count": 2}'
pod_add 18 >"$T/slow.out" 2>&1 &
slow_pid=$!
sleep 0.3
t0=$(now_ms)
sup_status_json >/dev/null
pod_del 17
check "slow API: STATUS and another DEL answered at once ($(($(now_ms) - t0)) ms)" \
	test $(($(now_ms) - t0)) -lt 2000
wait "$slow_pid"
# pod_add ran in a background subshell: its netns registration (cleanup) and
# POD_NS[18] (for its DEL) stayed there.
POD_NS[18]=tscni-${TEST_NAME:0:10}-$$-p18
CLEAN_NETNS+=("${POD_NS[18]}")
check "slow API: the ADD succeeds ($(grep -c '^ok' "$T/slow.out") ok)" grep -q "pod 18: ADD" "$T/slow.out"
fault '{"mode": "none"}'
# DEL while the API fails: at once, the job completes after the fault ends.
check "pod 15 listed before the failing DEL" test "$(n_devices e2e-ns15-)" -eq 1
fault '{"mode": "500"}'
t0=$(now_ms)
pod_del 15
check "DEL with the API down returns at once ($(($(now_ms) - t0)) ms)" test $(($(now_ms) - t0)) -lt 3000
sleep 3
check "API down: the device is still there, the job waits ($(jobs_left))" test "$(jobs_left)" -ge 1
fault '{"mode": "none"}'
check "API back: the job deletes the device within 20 s" wait_devices e2e-ns15- 0 20
pod_del 18

# --- a job whose node key is not the device's -------------------------------
pod_add 19 || tscni_finish
pod_add 20 || tscni_finish
DEVS=$(api_devices)
A_ID=$(jq -r '.devices[] | select(.hostname | startswith("e2e-ns19-")) | .nodeId' <<<"$DEVS")
B_KEY=$(jq -r '.devices[] | select(.hostname | startswith("e2e-ns20-")) | .nodeKey' <<<"$DEVS")
sup_stop
"$JOBREC" "$STATE" gone-pod "$A_ID" "$B_KEY"
check "a mismatched job record is written" test -f "$STATE/jobs/device-e2e-mismatch.pb"
sup_oauth --key-ephemeral false || tscni_finish
for ((k = 0; k < 100; k++)); do
	grep -q "pod gone-pod: device not deleted" "$T/sup.log" && break
	sleep 0.1
done
check "mismatch: logged and dropped ($(grep -m1 'pod gone-pod' "$T/sup.log" | cut -c1-200))" \
	grep -q "pod gone-pod: device not deleted: device $A_ID has node key" "$T/sup.log"
check "mismatch: pod 19's device is kept" test "$(n_devices e2e-ns19-)" -eq 1
check "mismatch: pod 20's device is kept" test "$(n_devices e2e-ns20-)" -eq 1
check "mismatch: the job is gone" test ! -e "$STATE/jobs/device-e2e-mismatch.pb"
pod_del 19
pod_del 20
sup_stop

# --- refusals ----------------------------------------------------------------
CL_SECRET=wrong-secret-$$ CL_ID=$MAIN_ID sup_oauth || tscni_finish
pod_add_err 21 104 "wrong client secret" "refused the OAuth client's credentials.*401" ||
	tscni_finish
# The secret file rotated (written aside, renamed over): the next ADD uses it.
(umask 077 && printf '%s' "$MAIN_SECRET" >"$T/oauth-secret.new")
mv "$T/oauth-secret.new" "$T/oauth-secret"
for ((k = 0; k < 100; k++)); do
	grep -q "the key source's secret changed" "$T/sup.log" && break
	sleep 0.1
done
check "the rotated secret is noticed within 10 s" grep -q "the key source's secret changed" "$T/sup.log"
readd 21
expect_ok "pod 21: ADD with the rotated secret" || tscni_finish
pod_del 21
sup_stop
client '{"scopes": ["devices:core"], "tags": ["tag:pods"]}' || tscni_finish
sup_oauth || tscni_finish
pod_add_err 22 104 "no auth_keys scope" "lacks a scope" || tscni_finish
sup_stop
CL_ID=$MAIN_ID CL_SECRET=$MAIN_SECRET sup_oauth --key-tags tag:other || tscni_finish
pod_add_err 23 104 "a tag the client does not own" "permit the key's tags.*tag:other" ||
	tscni_finish
sup_stop

# --- a token refreshed before its end ----------------------------------------
# Tokens of 2 s are used for half their life: pods 1.5 s apart need two.
client '{"scopes": ["auth_keys", "devices:core"], "tags": ["tag:pods"], "token_lifetime": 2}' ||
	tscni_finish
sup_oauth || tscni_finish
pod_add 26 || tscni_finish
check "short-lived token: one fetched for the first pod" test "$(tokens "$CL_ID")" -eq 1
sleep 1.5
pod_add 27 || tscni_finish
check "short-lived token: a fresh one before the next key ($(tokens "$CL_ID"))" \
	test "$(tokens "$CL_ID")" -eq 2
pod_del 26
pod_del 27
sup_stop

# --- at most 4 keys per pod in 10 minutes -----------------------------------
CL_ID=$MAIN_ID CL_SECRET=$MAIN_SECRET sup_oauth || tscni_finish
before=$(minted "$MAIN_ID")
pod_add 28 || tscni_finish
pod_del 28
for k in 2 3 4; do
	readd 28
	expect_ok "pod 28: ADD number $k" || tscni_finish
	pod_del 28
done
check "four keys minted for pod 28" test "$(($(minted "$MAIN_ID") - before))" -eq 4
readd 28
expect_err 105 "a fifth ADD of pod 28" || tscni_finish
check "the message names the bound ($(jq -c '[.msg, .details]' <<<"$OUT"))" \
	grep -q "too many auth keys minted for this pod" <<<"$OUT"
check "no fifth key minted" test "$(($(minted "$MAIN_ID") - before))" -eq 4
pod_del 28
sup_stop

# --- no secret anywhere ------------------------------------------------------
# testcontrol's secrets have fixed prefixes: client secrets tskey-client-,
# tokens tctoken-, minted keys tskey-auth-. None may appear in what the
# supervisor wrote (its log, its state directory, the plugin's outputs).
SECRETS+=("$MAIN_SECRET" tskey-client- tctoken- tskey-auth-)
leak=$(grep -rlaF "${SECRETS[@]/#/-e}" "$T/sup.log" "$STATE" "$T"/*.out 2>/dev/null)
check "no client secret, token or key in the supervisor's log, state or outputs (${leak:-none})" \
	test -z "$leak"
check "testcontrol saw the keys (the patterns are live: $(grep -c 'minted by' "$T/tc.log"))" \
	grep -qa tskey-auth- -r "$T/tc"
tscni_finish
