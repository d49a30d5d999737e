#!/bin/bash
# drill: a pod's netns deleted without DEL (ip netns del). The supervisor's
# reconciler (--reconcile-interval 5) must notice within 30 s: no process of
# ours holds that netns any more, and its record is gone. Other pods stay.
#
#   host netns                                    pods
#   ┌───────────────────────────────────┐        ┌──────────────┐
#   │ supervisor --reconcile-interval 5  │ ─────> │ gone (ip netns del, no DEL)
#   │                                    │ ─────> │ stay         │
#   └───────────────────────────────────┘        └──────────────┘
source "$(dirname "$0")/../lib/common.sh"
tscni_init netnsgone

sup_start --reconcile-interval 5 || tscni_finish
declare -A NSN
for p in gone stay; do
	ns_new "$p" || tscni_finish
	NSN[$p]=$NS_NAME
	NETNS=$(ns_path "$NS_NAME") CID=$p cni "$(NETNS=$(ns_path "$NS_NAME") mkconf 1.0.0)" \
		CNI_COMMAND=ADD "CNI_ARGS=K8S_POD_UID=uid-$p"
	expect_ok "ADD $p" || tscni_finish
done
INO=$(stat -L -c %i "$(ns_path "${NSN[gone]}")")
echo "# netns ${NSN[gone]} inode $INO"

# Our processes: the supervisor and everything below it.
our_pids()
{
	local p=$SUP_PID
	echo "$p"
	pgrep -P "$p" 2>/dev/null
	local c
	for c in $(pgrep -P "$p" 2>/dev/null); do
		pgrep -P "$c" 2>/dev/null
	done
}
# Does any of our processes hold net namespace INO (as its netns or by fd)?
holders()
{
	local pid
	for pid in $(our_pids); do
		if lsns -t net -n -o NS,PID 2>/dev/null | awk -v i="$INO" -v p="$pid" '$1 == i && $2 == p' | grep -q .; then
			echo "$pid(lsns)"
		fi
		local fd
		for fd in /proc/"$pid"/fd/*; do
			if [[ $(readlink "$fd" 2>/dev/null) == "net:[$INO]" ]]; then
				echo "$pid(fd)"
				break
			fi
		done
	done
}
ip netns del "${NSN[gone]}"
start=$(date +%s)
ok=0
for ((i = 0; i < 60; i++)); do
	h=$(holders)
	if [[ -z $h ]] && ! sup_has_record e2enet gone eth0; then
		ok=1
		break
	fi
	sleep 0.5
done
took=$(($(date +%s) - start))
if [[ $ok -eq 1 ]]; then
	pass "within ${took} s: no process of ours holds the netns and its record is gone"
else
	fail "after ${took} s: holders: '$h'; records: $(sup_records | tr '\n' ';')"
fi
lsns_all=$(lsns -t net -n -o NS,PID 2>/dev/null | awk -v i="$INO" '$1 == i')
check "lsns shows no process in the deleted netns ($lsns_all)" test -z "$lsns_all"
check "the other pod's record is kept" sup_has_record e2enet stay eth0
check "the other pod's ts0 is kept" has_link "${NSN[stay]}" ts0
check "the deleted pod's record file is gone" \
	bash -c '! grep -q uid-gone <<<"$1"' _ "$(state_records)"
tscni_finish
