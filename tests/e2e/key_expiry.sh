#!/bin/bash
# e2e: key expiry while pods run (docs/design.md "Key expiry"), with keys
# minted through testcontrol's Tailscale API (an OAuth client, --api).
#   1. two pods ping each other; nodes whose key does not expire (testcontrol
#      gives none by default, as tagged nodes) never ask for re-auth;
#   2. pod A's node key expired by testcontrol (POST /nodes/{id}/expire)
#      while A pings B every 100 ms: A's worker asks, the supervisor confirms
#      the expiry through the API (GET the device), mints one key, rotates
#      A's node key; A re-registers with OldNodeKey and keeps its node, its
#      100.x and fd7a: addresses; pings flow again (figures: pings lost, the
#      longest gap, the time from the expiry to the node's new key);
#   3. A's key expired again at once: refused as rate limited (logged, no
#      key minted), then rotated once the pod's interval has passed;
#   4. an unconfirmed request: pod B's netmap says its key expires in 10 min
#      while the API says it does not expire (hide_from_api): the request is
#      refused and logged, no key minted, B keeps its node key;
#   5. before expiry: B's key set to expire in 20 min (within the margin):
#      rotated before it ever expires, pings flow;
#   6. a supervisor restart: the adopted pods get no new key; A's key
#      expired then is rotated by the new supervisor (the adopted worker);
#   7. a pod whose minted key expired before it registered (testcontrol's
#      expired-keys fault): its ADD fails naming the cause, the runtime's
#      retry gets a fresh key and the pod its node;
#   7b. the same supervisor with a static key: an expiry rotated with the
#      static key handed again (nothing to confirm, only the limits);
#   8. no key, secret or token in the supervisor's log, state, the outputs or
#      any process's argv.
source "$(dirname "$0")/../lib/common.sh"

tscni_init "keyexp"
source "$(dirname "$0")/../lib/tailnet.sh"

node_ns_new || tscni_finish
TC_API=1 tc_start || tscni_finish
API="http://$TC_API_ADDR"

tc_oauth_client '{"scopes": ["auth_keys", "devices:core"], "tags": ["tag:pods"]}' || tscni_finish
(umask 077 && printf '%s' "$CL_SECRET" >"$T/oauth-secret")
sup_oauth()
{
	sup_start --control-url "https://$TC_HTTPS" --ca-file "$TC_CA" --cluster-name e2e \
		--oauth-client-id "$CL_ID" --oauth-client-secret-file "$T/oauth-secret" \
		--api-url "$API" --key-tags tag:pods
}
sup_oauth || tscni_finish

minted() { grep -c "minted by client $CL_ID" "$T/tc.log"; }
rotated() { grep -c "$1.*node key rotated" "$T/sup.log"; }
refusals() { grep -c "$1.*re-authentication refused ($2" "$T/sup.log"; }
asks() { grep -c "pod $1 .*asking the supervisor for re-authentication" "$T/sup.log"; }

# node_of ADDR: testcontrol's node holding ADDR (its JSON).
node_of()
{
	tc_get /nodes | jq -c --arg a "$1" '[.[] | select(.addresses | map(sub("/.*"; "")) |
		index($a))][0]'
}

for i in 0 1; do
	pod_add "$i" || tscni_finish
done
A=${POD_NS[0]} B=${POD_NS[1]}
check "pod A pings pod B" ns_ping_until "$A" "${POD4[1]}"
check "pod B pings pod A" ns_ping_until "$B" "${POD4[0]}"
N0=$(node_of "${POD4[0]}")
N1=$(node_of "${POD4[1]}")
ID0=$(jq -r .id <<<"$N0") ID1=$(jq -r .id <<<"$N1")
KEY0=$(jq -r .node_key <<<"$N0") KEY1=$(jq -r .node_key <<<"$N1")
check "testcontrol knows both nodes ($ID0 $ID1)" test "$ID0" != null -a "$ID1" != null
sleep 2
check "no re-auth asked by nodes whose key does not expire" \
	test "$(asks "uid-$$-0")" -eq 0 -a "$(asks "uid-$$-1")" -eq 0
M0=$(minted)

# pinger NS DST SECS OUT: 10 pings a second from NS for SECS, in the
# background (PING_PID).
pinger()
{
	ip netns exec "$1" busybox ping -i 0.1 -w "$3" "$2" >"$4" 2>&1 &
	PING_PID=$!
	CLEAN_PIDS+=("$PING_PID")
}
# ping_figures OUT: "sent received lost gap_ms" from a busybox ping output.
ping_figures()
{
	local sent recv gap
	sent=$(sed -n 's/^\([0-9]*\) packets transmitted.*/\1/p' "$1")
	recv=$(sed -n 's/.* \([0-9]*\) packets received.*/\1/p' "$1")
	gap=$(grep -o 'seq=[0-9]*' "$1" | cut -d= -f2 | awk 'NR > 1 && $1 - p > g { g = $1 - p }
		{ p = $1 } END { print (g > 0 ? g - 1 : 0) * 100 }')
	echo "${sent:-0} ${recv:-0} $((${sent:-0} - ${recv:-0})) ${gap:-0}"
}
# wait_new_key ID OLDKEY SECS: until testcontrol's node ID has another node
# key and is not expired; sets NEWNODE.
wait_new_key()
{
	local k
	for ((k = 0; k < $3 * 10; k++)); do
		NEWNODE=$(tc_get /nodes | jq -c --argjson i "$1" '[.[] | select(.id == $i)][0]')
		[[ $(jq -r .node_key <<<"$NEWNODE") != "$2" &&
			$(jq -r .expired <<<"$NEWNODE") == false ]] && return 0
		sleep 0.1
	done
	return 1
}
# same_addrs NS V4 V6: ts0 in NS still has both addresses.
same_addrs()
{
	local a
	a=$(ip -n "$1" -j addr show dev ts0 | jq -r '.[0].addr_info[].local')
	grep -qx "$2" <<<"$a" && grep -qx "$3" <<<"$a"
}

# --- 2. A's key expires while it pings B -------------------------------------
pinger "$A" "${POD4[1]}" 30 "$T/ping-expired.out"
sleep 3
t0=$(now_ms)
tc_post "/nodes/$ID0/expire" '{}' >/dev/null
check "A's node gets a new key and is not expired (within 20 s)" wait_new_key "$ID0" "$KEY0" 20
t1=$(now_ms)
wait "$PING_PID"
read -r sent recv lost gap < <(ping_figures "$T/ping-expired.out")
echo "# expired key: re-registered with a new node key $((t1 - t0)) ms after the expiry;" \
	"pings A->B: $sent sent, $lost lost, longest gap $gap ms"
check "A's node keeps its id and addresses ($(jq -c .addresses <<<"$NEWNODE"))" \
	test "$(jq -c .addresses <<<"$NEWNODE")" == "$(jq -c .addresses <<<"$N0")"
check "ts0 in pod A keeps ${POD4[0]} and ${POD6[0]}" same_addrs "$A" "${POD4[0]}" "${POD6[0]}"
check "one key minted for the rotation" test "$(($(minted) - M0))" -eq 1
check "the supervisor logged the rotation" test "$(rotated "uid-$$-0")" -eq 1
check "testcontrol saw OldNodeKey with an auth key" \
	grep -q "node $ID0 .*rotated its node key with an auth key" "$T/tc.log"
check "pings flow after the rotation ($recv of $sent answered)" \
	test "$recv" -gt 0 -a "$lost" -lt "$sent"
check "pod A pings pod B at ${POD6[1]} after it" ns_ping_until "$A" "${POD6[1]}"
check "pod B pings pod A at ${POD4[0]} after it" ns_ping_until "$B" "${POD4[0]}"
KEY0=$(jq -r .node_key <<<"$NEWNODE")

# --- 3. again at once: rate limited, later rotated ----------------------------
M1=$(minted)
tc_post "/nodes/$ID0/expire" '{}' >/dev/null
for ((k = 0; k < 300; k++)); do
	[[ $(refusals "uid-$$-0" "rate limited") -ge 1 ]] && break
	sleep 0.1
done
check "a second expiry within the interval: refused as rate limited, logged" \
	test "$(refusals "uid-$$-0" "rate limited")" -ge 1
check "no key minted for it" test "$(minted)" -eq "$M1"
check "after the interval: rotated again (within 100 s)" wait_new_key "$ID0" "$KEY0" 100
check "one key minted for it" test "$(($(minted) - M1))" -eq 1
check "A pings B after the second rotation" ns_ping_until "$A" "${POD4[1]}"

# --- 4. an expiry the key source does not confirm -----------------------------
M2=$(minted)
tc_post "/nodes/$ID1/expire" '{"in": 600, "hide_from_api": true}' >/dev/null
for ((k = 0; k < 300; k++)); do
	[[ $(refusals "uid-$$-1" "the key source says the node key does not expire") -ge 1 ]] &&
		break
	sleep 0.1
done
check "B's worker asked (its netmap says the key expires in 10 min)" \
	test "$(asks "uid-$$-1")" -ge 1
check "the unconfirmed request is refused and logged" \
	test "$(refusals "uid-$$-1" "the key source says the node key does not expire")" -ge 1
check "no key minted for it" test "$(minted)" -eq "$M2"
check "B keeps its node key" test "$(node_of "${POD4[1]}" | jq -r .node_key)" == "$KEY1"

# --- 5. before expiry: rotated within the margin -------------------------------
pinger "$A" "${POD4[1]}" 30 "$T/ping-soon.out"
sleep 3
t0=$(now_ms)
tc_post "/nodes/$ID1/expire" '{"in": 1200}' >/dev/null
check "B's node gets a new key before its key expires (within 15 s)" \
	wait_new_key "$ID1" "$KEY1" 15
t1=$(now_ms)
wait "$PING_PID"
read -r sent recv lost gap < <(ping_figures "$T/ping-soon.out")
echo "# key expiring in 20 min: new node key $((t1 - t0)) ms after control said so" \
	"(a request goes 11 s after the previous one at the soonest); pings A->B: $sent sent," \
	"$lost lost," \
	"longest gap $gap ms"
check "B keeps its addresses" \
	test "$(jq -c .addresses <<<"$NEWNODE")" == "$(jq -c .addresses <<<"$N1")"
check "ts0 in pod B keeps ${POD4[1]} and ${POD6[1]}" same_addrs "$B" "${POD4[1]}" "${POD6[1]}"
check "pings flow after it ($recv of $sent answered)" test "$recv" -gt 0 -a "$lost" -lt "$sent"

# --- 6. a supervisor restart ------------------------------------------------------
M3=$(minted)
KEY0=$(node_of "${POD4[0]}" | jq -r .node_key)
sup_stop
sup_oauth || tscni_finish
check "restart: pods A and B adopted and ready" wait_ready 0
check "restart: pod B too" wait_ready 1
check "restart: no key minted for the adopted pods" test "$(minted)" -eq "$M3"
tc_post "/nodes/$ID0/expire" '{}' >/dev/null
check "restart: A's expired key rotated through the new supervisor (within 20 s)" \
	wait_new_key "$ID0" "$KEY0" 20
check "restart: one key minted for it" test "$(($(minted) - M3))" -eq 1
check "restart: A keeps its addresses" \
	test "$(jq -c .addresses <<<"$NEWNODE")" == "$(jq -c .addresses <<<"$N0")"
check "restart: A pings B after it" ns_ping_until "$A" "${POD4[1]}"

# --- 7. a key that expired before its pod registered --------------------------------
tc_post /api-faults '{"mode": "expired-keys"}' >/dev/null
ns_new p2 || tscni_finish
POD_NS[2]=$NS_NAME
add2()
{
	CID="pod-$$-2" NETNS=$(ns_path "${POD_NS[2]}") cni "$(mkconf 1.0.0 '.syncTimeout = "10s"')" \
		CNI_COMMAND=ADD "CNI_ARGS=K8S_POD_NAMESPACE=ns2;K8S_POD_NAME=web-2;K8S_POD_UID=uid-$$-2"
}
M4=$(minted)
add2
expect_err 102 "ADD with a key that expired before the node registered"
check "the error names control's reason ($(jq -c '[.msg, .details]' <<<"$OUT"))" \
	grep -q "authkey expired" <<<"$OUT"
pod_del 2
tc_post /api-faults '{"mode": "none"}' >/dev/null
add2
expect_ok "the runtime's retry: ADD"
check "the retry got a fresh key ($(($(minted) - M4)) minted in all)" \
	test "$(($(minted) - M4))" -eq 2
check "pod 2 has a 100.x address" \
	test "$(jq -r '[.ips[].address | select(startswith("100."))] | length' <<<"$OUT")" -eq 1
pod_del 2

# --- 7b. a static key: nothing to confirm, handed again under the limits ---------
sup_stop
tc_authkey '{"reusable": true, "tags": ["tag:pods"]}' || tscni_finish
STATIC=$(cat "$T/authkey")
sup_start_tailnet || tscni_finish
check "static: pod A adopted and ready" wait_ready 0
KEY0=$(node_of "${POD4[0]}" | jq -r .node_key)
M5=$(minted)
tc_post "/nodes/$ID0/expire" '{}' >/dev/null
check "static: A's expired key rotated with the static key (within 20 s)" \
	wait_new_key "$ID0" "$KEY0" 20
check "static: the log says nothing confirmed it" \
	grep -q "uid-$$-0.*confirmed by nothing (a static key" "$T/sup.log"
check "static: nothing minted" test "$(minted)" -eq "$M5"
check "static: A keeps its addresses" \
	test "$(jq -c .addresses <<<"$NEWNODE")" == "$(jq -c .addresses <<<"$N0")"
check "static: A pings B after it" ns_ping_until "$A" "${POD4[1]}"

# --- 8. no secret anywhere ------------------------------------------------------
argv=$(for p in $(pgrep -u 0 -f tailscale-cni) $(pgrep -f 'tailscale-cni-worker'); do
	tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null
	echo
done)
check "no key in any tailscale-cni process's argv" \
	test -z "$(grep -aF -e tskey- -e tctoken- -e "$CL_SECRET" -e "$STATIC" <<<"$argv")"
leak=$(grep -rlaF -e "$CL_SECRET" -e "$STATIC" -e tskey-client- -e tctoken- -e tskey-auth- \
	"$T/sup.log" "$STATE" "$T"/*.out 2>/dev/null)
check "no client secret, token or key in the supervisor's log, state or outputs (${leak:-none})" \
	test -z "$leak"
check "testcontrol saw the keys (the patterns are live)" grep -qa tskey-auth- -r "$T/tc"

for i in 0 1; do
	pod_del "$i"
done
tscni_finish
