#!/bin/bash
# drill: damaged records in the state directory. With the supervisor stopped,
# one attachment record is truncated and another overwritten with garbage.
# At start both are moved aside (into damaged/), each named in the log, and
# the healthy pod is still served (its record kept, CHECK ok, its worker
# adopted), as is a new ADD; the workers of the damaged records' pods, named
# by no record, are killed and logged, not left running unseen, and the new
# pod's worker shares a uid with no live worker.
#
#   $STATE/pods/uid-good/attachments/*.pb    intact
#   $STATE/pods/uid-trunc/attachments/*.pb   truncated to half
#   $STATE/pods/uid-junk/attachments/*.pb    4 KiB of random bytes
#   pods: netns good, trunc, junk, fresh (ts0 each)
source "$(dirname "$0")/../lib/common.sh"
tscni_init damaged

sup_start || tscni_finish
declare -A NSN RES CONF
for p in good trunc junk; do
	ns_new "$p" || tscni_finish
	NSN[$p]=$NS_NAME
	CONF[$p]=$(NETNS=$(ns_path "$NS_NAME") mkconf 1.0.0)
	NETNS=$(ns_path "$NS_NAME") CID=$p cni "${CONF[$p]}" CNI_COMMAND=ADD "CNI_ARGS=K8S_POD_UID=uid-$p"
	expect_ok "ADD $p" || tscni_finish
	RES[$p]=$OUT
done
# Each pod's worker, before the records are damaged: it outlives the
# supervisor, and after the restart no record names it.
declare -A WPID WUID
for p in good trunc junk; do
	WPID[$p]=$(sup_status_json | jq -r --arg c "$p" '[.pods[] | select(.container_id == $c)][0].worker_pid')
	WUID[$p]=$(awk '/^Uid:/ {print $2}' "/proc/${WPID[$p]}/status" 2>/dev/null)
done
echo "# workers: good ${WPID[good]} (uid ${WUID[good]}), trunc ${WPID[trunc]} (uid ${WUID[trunc]}), junk ${WPID[junk]} (uid ${WUID[junk]})"
sup_stop
echo "# record files: $(state_records | tr '\n' ' ')"
TRUNC=$(state_records | grep uid-trunc | head -n 1)
JUNK=$(state_records | grep uid-junk | head -n 1)
if [[ -z $TRUNC || -z $JUNK ]]; then
	fail "no attachment record files found under $STATE/pods/uid-*/attachments/"
	find "$STATE" | sed 's/^/#   /'
	tscni_finish
fi
size=$(stat -c %s "$TRUNC")
truncate -s $((size / 2)) "$TRUNC"
head -c 4096 /dev/urandom >"$JUNK"
log_lines_before=$(wc -l <"$T/sup.log")
sup_start || tscni_finish
sleep 1
newlog=$(tail -n +"$((log_lines_before + 1))" "$T/sup.log")
for f in "$TRUNC" "$JUNK"; do
	b=$(basename "$f")
	check "$(basename "$(dirname "$(dirname "$f")")")/$b moved away from its place" test ! -e "$f"
	if grep -qF "$b" <<<"$newlog"; then
		pass "the log names $b: $(grep -F "$b" <<<"$newlog" | head -n 1)"
	else
		fail "no log line names $b"
	fi
done
damaged=$(find "$STATE/damaged" -type f | wc -l)
check "two files under $STATE/damaged ($damaged; $(find "$STATE/damaged" -type f | tr "\n" " "))" \
	test "$damaged" -ge 2
check "the good pod's record is kept" sup_has_record e2enet good eth0
NETNS=$(ns_path "${NSN[good]}") CID=good cni "$(conf_with_prev "${CONF[good]}" "${RES[good]}")" \
	CNI_COMMAND=CHECK
expect_ok "CHECK of the good pod after the restart" 1
ns_new fresh
NETNS=$(ns_path "$NS_NAME") CID=fresh cni "$(NETNS=$(ns_path "$NS_NAME") mkconf 1.0.0)" CNI_COMMAND=ADD
expect_ok "a new ADD is served"
check "the supervisor is still running" kill -0 "$SUP_PID"
# No live worker goes unseen: those whose records were damaged were killed
# (and said so), the good one adopted, and the new pod's worker does not
# share a uid with a live process of another pod.
# dead PID: no such process, or only its zombie (the old zygote that forked
# it is gone, and whoever inherited it may reap it late).
dead()
{
	[[ ! -e /proc/$1/stat ]] || [[ $(sed -E 's/^.*\) ([A-Za-z]).*/\1/' "/proc/$1/stat") == Z ]]
}
for p in trunc junk; do
	check "the $p pod's worker (${WPID[$p]}), named by no record, is gone" dead "${WPID[$p]}"
	check "the log says the orphan worker ${WPID[$p]} was killed" \
		grep -qE "orphan worker ${WPID[$p]} \\(uid [0-9]+\\) .*killed" "$T/sup.log"
done
check "the good pod's worker was adopted (${WPID[good]})" \
	test "$(sup_status_json | jq -r '[.pods[] | select(.container_id == "good")][0].worker_pid')" == "${WPID[good]}"
fpid=$(sup_status_json | jq -r '[.pods[] | select(.container_id == "fresh")][0].worker_pid')
fuid=$(awk '/^Uid:/ {print $2}' "/proc/$fpid/status" 2>/dev/null)
shared=""
for p in good trunc junk; do
	! dead "${WPID[$p]}" && [[ ${WUID[$p]} == "$fuid" ]] && shared+="$p "
done
check "the new pod's worker $fpid (uid $fuid) shares its uid with no live worker (${shared:-none})" \
	test -z "$shared" -a -n "$fuid"
for p in trunc junk; do
	NETNS=$(ns_path "${NSN[$p]}") CID=$p cni "$(mkconf 1.0.0 'del(.prevResult)')" CNI_COMMAND=DEL
	expect_ok "DEL of the pod whose record was damaged" 1
done
tscni_finish
