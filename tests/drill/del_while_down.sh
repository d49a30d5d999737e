#!/bin/bash
# drill: DEL while the supervisor is down leaves a tombstone, and the next
# supervisor start carries the DEL out.
#
#   host netns                                      pods
#   ┌─────────────────────────────────────┐        ┌────────────┐
#   │ supervisor (killed -9, later again)  │ ─────> │ d1 d2 keep │
#   │ $STATE/tombstones/<net>_<cid>_eth0   │        └────────────┘
#   └─────────────────────────────────────┘
#
# d1 is DELeted with a stale socket (ECONNREFUSED), d2 with the socket file
# gone (ENOENT): both DELs succeed fast and leave tombstones. At start the
# supervisor releases d1 and d2 (record, ts0, tombstone gone) and keeps the
# pod that was never DELeted.
source "$(dirname "$0")/../lib/common.sh"
tscni_init delwhiledown

sup_start || tscni_finish
declare -A NSN
for p in d1 d2 keep; do
	ns_new "$p" || tscni_finish
	NSN[$p]=$NS_NAME
	NETNS=$(ns_path "$NS_NAME") CID=$p cni "$(NETNS=$(ns_path "$NS_NAME") mkconf 1.0.0)" \
		CNI_COMMAND=ADD "CNI_ARGS=K8S_POD_UID=uid-$p"
	expect_ok "ADD $p" || tscni_finish
done
sup_kill9
check "stale socket left by the crash" test -S "$SOCK"
NETNS=$(ns_path "${NSN[d1]}") CID=d1 cni "$(mkconf 1.0.0 'del(.prevResult)')" CNI_COMMAND=DEL
expect_ok "DEL d1 with a stale socket" 1
check "DEL d1 within 1 s ($WALL ms)" test "$WALL" -le 1000
rm -f "$SOCK"
NETNS=$(ns_path "${NSN[d2]}") CID=d2 cni "$(mkconf 1.0.0 'del(.prevResult)')" CNI_COMMAND=DEL
expect_ok "DEL d2 with the socket gone" 1
check "DEL d2 within 1 s ($WALL ms)" test "$WALL" -le 1000
for p in d1 d2; do
	check "tombstone for $p" test -f "$STATE/tombstones/e2enet_${p}_eth0"
	check "no ts0 in $p after DEL" bash -c "! ip -n ${NSN[$p]} link show ts0 >/dev/null 2>&1"
done
check "tombstones are not world-readable" \
	bash -c '[[ -z $(find "$1/tombstones" -type f -perm /044) ]]' _ "$STATE"
sup_start || tscni_finish
for ((i = 0; i < 50; i++)); do
	[[ -z $(ls -A "$STATE/tombstones" 2>/dev/null) ]] && break
	sleep 0.1
done
check "tombstones processed at start ($(ls "$STATE/tombstones" 2>/dev/null | tr '\n' ' '))" \
	test -z "$(ls -A "$STATE/tombstones" 2>/dev/null)"
recs=$(sup_records)
check "d1 released" bash -c '! grep -q "^e2enet d1 " <<<"$1"' _ "$recs"
check "d2 released" bash -c '! grep -q "^e2enet d2 " <<<"$1"' _ "$recs"
check "the pod never DELeted is kept (records: $(tr '\n' ';' <<<"$recs"))" grep -qx "e2enet keep eth0" <<<"$recs"
check "d1's and d2's record files gone" \
	bash -c '! grep -q -e uid-d1 -e uid-d2 <<<"$1"' _ "$(state_records)"
tscni_finish
