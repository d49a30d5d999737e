#!/bin/bash
# drill: kill -9 of the supervisor while ADDs are in flight.
#
#   host netns                                     16 pod netns
#   ┌──────────────────────────────────────┐      ┌──────────┐
#   │ 16 × tailscale-cni ADD (concurrent)   │ ───> │ k0 .. k15│  ts0 each
#   │ tailscale-cni-supervisor  ← kill -9   │      └──────────┘
#   │ at a random moment, then restarted    │
#   └──────────────────────────────────────┘
#
# After the restart every ADD is retried (what a runtime does for a pod whose
# ADD failed: DEL, then ADD) and must succeed with ts0 in the pod; then all
# pods are DELeted and nothing half-made remains: no ts0, no record, no
# record file, no TUN device left behind in the host netns.
source "$(dirname "$0")/../lib/common.sh"
tscni_init kill9add

N=${TSCNI_DRILL_PODS:-16}
host_tuns()
{
	ip -o link show type tun 2>/dev/null | awk -F': ' '{print $2}' | sort
}
tuns_before=$(host_tuns)
sup_start || tscni_finish
declare -a NSN
for ((i = 0; i < N; i++)); do
	ns_new "k$i" || tscni_finish
	NSN[i]=$NS_NAME
done
mkdir -p "$T/r"
run_add()
{
	local i=$1 tag=$2
	NETNS=$(ns_path "${NSN[i]}")
	CID="k9-$i"
	local conf
	conf=$(mkconf 1.0.0 '.addTimeoutMs = 5000')
	cni "$conf" CNI_COMMAND=ADD "CNI_ARGS=K8S_POD_UID=uid-k9-$i"
	echo "$RC" >"$T/r/$tag.$i"
	[[ $FAILS -eq 0 ]] || echo hygiene >>"$T/r/$tag.$i"
}
for ((i = 0; i < N; i++)); do
	run_add "$i" first &
	BG_PIDS+=($!)
done
# Kill once the supervisor has begun writing records (some ADDs done, others
# in flight), plus a random 0..90 ms.
for ((w = 0; w < 500; w++)); do
	[[ $(state_records | wc -l) -ge $((N / 4)) ]] && break
	sleep 0.01
done
sleep "0.0$((RANDOM % 10))"
echo "# killing the supervisor with $(state_records | wc -l) records written"
sup_kill9
wait_bg
codes=$(cat "$T"/r/first.* | sort | uniq -c | awk '{printf "%s x exit %s; ", $1, $2}')
echo "# first ADDs by exit status: $codes"
check "no ADD died by signal or broke hygiene during the crash" \
	bash -c '! grep -qv "^[01]$" "$@"' _ "$T"/r/first.*
sup_start || tscni_finish
for ((i = 0; i < N; i++)); do
	run_add "$i" retry &
	BG_PIDS+=($!)
done
wait_bg
bad=0
for ((i = 0; i < N; i++)); do
	[[ $(cat "$T/r/retry.$i") == 0 ]] || bad=$((bad + 1))
done
check "every retried ADD succeeded ($bad of $N failed)" test $bad -eq 0
missing=0
for ((i = 0; i < N; i++)); do
	has_link "${NSN[i]}" ts0 || missing=$((missing + 1))
done
check "ts0 in every pod after the retries ($missing missing)" test $missing -eq 0
for ((i = 0; i < N; i++)); do
	(
		NETNS=$(ns_path "${NSN[i]}")
		CID="k9-$i"
		cni "$(mkconf 1.0.0 'del(.prevResult)')" CNI_COMMAND=DEL
		echo "$RC" >"$T/r/del.$i"
	) &
	BG_PIDS+=($!)
done
wait_bg
bad=0
for ((i = 0; i < N; i++)); do
	[[ $(cat "$T/r/del.$i") == 0 ]] || bad=$((bad + 1))
done
check "every DEL succeeded ($bad failed)" test $bad -eq 0
left=0
for ((i = 0; i < N; i++)); do
	has_link "${NSN[i]}" ts0 && left=$((left + 1))
done
check "no ts0 left in any pod ($left)" test $left -eq 0
recs=$(sup_records)
check "no record left (records: $(tr '\n' ';' <<<"$recs"))" test -z "$recs"
check "no attachment record file left ($(state_records | tr '\n' ' '))" test -z "$(state_records)"
# Other tests running in parallel make short-lived TUNs in the host netns
# too: a leftover is one that is new and still there over 1.5 s.
new_tuns=$(comm -13 <(echo "$tuns_before") <(host_tuns))
for ((w = 0; w < 3; w++)); do
	[[ -n $new_tuns ]] || break
	sleep 0.5
	new_tuns=$(comm -12 <(echo "$new_tuns") <(comm -13 <(echo "$tuns_before") <(host_tuns)))
done
check "no TUN device left behind in the host netns ($new_tuns)" test -z "$new_tuns"
tscni_finish
