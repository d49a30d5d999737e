#!/bin/bash
# bench: MagicDNS answers per second from one worker. Prints figures; asserts
# only that the setup worked (two pods on the tailnet, quad-100 answering
# the first query of each run), never a rate or a latency.
#   sudo tests/bench/dns.sh <build dir> [seconds] [inflight]
#
#   netns NODE: testcontrol on 127.0.0.1, tailscale-cni-supervisor, its
#               zygote and the two workers
#   netns pod 0: ts0, dns_load ──UDP──> 100.100.100.100:53 and
#                [fd7a:115c:a1e0::53]:53, answered by worker 0 (MagicDNS)
#   netns pod 1: ts0 (its name is what pod 0 asks for)
#
# tests/bench/dns_load keeps INFLIGHT (default 64) queries in flight on one
# UDP socket for SECONDS (default 5), matches answers by ID and counts a
# query lost after 1 s. Runs, each from pod 0:
#   A <pod 1's host>.fake-control.example.net   to 100.100.100.100
#   A nosuch.fake-control.example.net          to 100.100.100.100 (NXDOMAIN)
#   A <pod 1's host>.fake-control.example.net   to fd7a:115c:a1e0::53
# Printed per run: answers/s (while sending), p50/p99/max latency in us
# (send to receive), lost and stray datagrams, the answers' rcodes, and
# worker 0's CPU seconds (utime + stime, /proc/PID/stat) per 1000 answers.
export TSCNI_BUILD_DIR=${1:-${TSCNI_BUILD_DIR:-}}
source "$(dirname "$0")/../lib/common.sh"
SECS=${2:-5}
INFLIGHT=${3:-64}
tscni_init dnsb
source "$(dirname "$0")/../lib/tailnet.sh"
source "$(dirname "$0")/../lib/bench.sh"
DOMAIN=fake-control.example.net
LOAD=$TSCNI_BUILD_DIR/tests/bench/dns_load

for b in "$TC" "$LOAD"; do
	if [[ ! -x $b ]]; then
		echo "dns: $b is missing: build first (cmake --build . --target dns_load)" >&2
		exit 1
	fi
done

# die MSG: the setup did not work.
die()
{
	fail "dns: $*"
	tscni_finish
}

# --- setup: node netns, testcontrol, supervisor, two pods --------------------
node_ns_new || die "cannot create the node netns"
tc_start --log-level info || die "testcontrol does not start"
tailnet_two_pods || die "two pods on the tailnet"
CLEAN_CMDS+=("pod_del 1" "pod_del 0")
NAME1=$(tc_get /nodes | jq -r --arg a "${POD4[1]}/32" '.[] | select(.addresses | index($a)) | .hostname')
[[ -n $NAME1 && $NAME1 != null ]] || die "pod 1's node in testcontrol"
FQDN=$NAME1.$DOMAIN
WPID=$(pod_stat "${POD_UID[0]}" worker_pid)
[[ $WPID =~ ^[0-9]+$ && -r /proc/$WPID/stat ]] || die "no running worker for pod 0 ('$WPID')"
CLEAN_PIDS+=("$WPID")

# The worker answers once it has the netmap: wait for pod 1's name.
for ((k = 0; k < 50; k++)); do
	in_ns "$A" busybox nslookup "$FQDN" 100.100.100.100 2>/dev/null | grep -F "${POD4[1]}" >/dev/null &&
		break
	sleep 0.1
done
check "quad-100 answers $FQDN from pod 0" bash -c \
	"ip netns exec $A busybox nslookup $FQDN 100.100.100.100 2>/dev/null | grep -F ${POD4[1]} >/dev/null"

echo "# dns: dns_load from pod 0, $INFLIGHT queries in flight on one UDP socket, $SECS s each;" \
	"worker 0 pid $WPID; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# pod 1's FQDN: $FQDN"
printf '%-26s %-20s %9s %8s %8s %8s %6s %6s  %-28s %s\n' "query" "server" "answers/s" "p50 us" \
	"p99 us" "max us" "lost" "stray" "rcodes" "worker cpu s/1000"

# run LABEL SERVER NAME WANT: one dns_load run; WANT is the rcode the answers
# must mostly carry (noerror or nxdomain) for the setup to count as working.
run()
{
	local label=$1 server=$2 name=$3 want=$4 c0 c1 line kv
	local -A r

	c0=$(cpu_ticks "$WPID")
	line=$(ip netns exec "$A" "$LOAD" "$server" 53 "$name" A "$SECS" "$INFLIGHT")
	c1=$(cpu_ticks "$WPID")
	for kv in $line; do
		r[${kv%%=*}]=${kv#*=}
	done
	awk -v l="$label" -v s="$server" -v r="${r[rate]:-0}" -v p50="${r[p50_us]:-0}" \
		-v p99="${r[p99_us]:-0}" -v mx="${r[max_us]:-0}" -v lost="${r[lost]:-?}" \
		-v stray="${r[stray]:-?}" -v n="${r[answers]:-0}" -v d=$((c1 - c0)) -v hz="$HZ" \
		-v rc="ok ${r[noerror]:-0} nx ${r[nxdomain]:-0} empty ${r[empty]:-0} other ${r[other_rcode]:-0}" \
		'BEGIN { printf "%-26s %-20s %9d %8d %8d %8d %6s %6s  %-28s %s\n", l, s, r, p50, p99,
			mx, lost, stray, rc, (n > 0 ? sprintf("%.4f", d / hz / n * 1000) : "n/a") }'
	echo "#   $line" >>"$T/runs"
	# Checked after the table.
	CHK_DESC+=("$label to $server: answered, mostly $want (${r[answers]:-0} answers, ${r[lost]:-?} lost)")
	CHK_OK+=("$((${r[answers]:-0} > 0 && ${r[$want]:-0} >= ${r[answers]:-0} / 2))")
}
declare -a CHK_DESC CHK_OK

run "A pod 1's FQDN" 100.100.100.100 "$FQDN" noerror
run "A nosuch.<domain>" 100.100.100.100 "nosuch.$DOMAIN" nxdomain
run "A pod 1's FQDN" fd7a:115c:a1e0::53 "$FQDN" noerror
echo "# dns_load's own lines:"
cat "$T/runs"
for i in "${!CHK_DESC[@]}"; do
	check "${CHK_DESC[$i]}" test "${CHK_OK[$i]}" -eq 1
done
pss_of "$WPID"
echo "# worker 0 after the runs: PSS $PSS KiB, USS $USS KiB"

pod_del 1
pod_del 0
CLEAN_CMDS=()
tscni_finish
