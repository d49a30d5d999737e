#!/bin/bash
# e2e worker kill -9 under traffic: pod A pings pod B ten times a second
# over ts0 while pod B's worker is killed with SIGKILL. The supervisor
# respawns it (same ts0, same UDP socket, same node key, a fresh disco key
# and no WireGuard sessions); traffic must be back within about a round
# trip, not after the peers' 15 s WireGuard timeout.
#
#   node netns: testcontrol, our supervisor, both pods' workers
#   pod netns A, B: ts0
#
# Checked: of 150 echoes (15 s), at most 5 lost across the kill; the worker
# was respawned (new pid); printed: echoes lost and the gap.
source "$(dirname "$0")/../lib/common.sh"

tscni_init "wkill9ping"
source "$(dirname "$0")/../lib/tailnet.sh"

node_ns_new || tscni_finish
tc_start || tscni_finish
tc_authkey '{"reusable": true, "ephemeral": true, "tags": ["tag:e2e"]}' || tscni_finish
sup_start_tailnet || tscni_finish
pod_add 0 || tscni_finish
pod_add 1 || tscni_finish
A=${POD_NS[0]}
check "pod A pings pod B" ns_ping_until "$A" "${POD4[1]}"

wpid=$(pod_stat "${POD_UID[1]}" worker_pid)
ip netns exec "$A" busybox ping -i 0.1 -c 150 -W 2 "${POD4[1]}" >"$T/ping.out" 2>&1 &
ping_pid=$!
CLEAN_PIDS+=("$ping_pid")
sleep 3
kill -KILL "$wpid"
wait "$ping_pid"
npid=$(pod_stat "${POD_UID[1]}" worker_pid)
rx=$(grep -oE '[0-9]+ packets received' "$T/ping.out" | cut -d' ' -f1)
# The longest run of missing sequence numbers, in echoes (100 ms each).
gap=$(grep -oE 'seq=[0-9]+' "$T/ping.out" | cut -d= -f2 |
	awk 'NR > 1 && $1 - p - 1 > g { g = $1 - p - 1 } { p = $1 }
		END { if (NR == 0) p = -1; if (149 - p > g) g = 149 - p; print g + 0 }')
echo "# 10/s ping across pod B's worker kill -9: ${rx:-0} of 150 answered," \
	"longest gap $((gap * 100)) ms"
check "pod B's worker was respawned (pid $wpid -> $npid)" \
	test -n "$npid" -a "$npid" != "$wpid" -a "$npid" != 0
check "at most 5 of 150 echoes lost across the kill ($((150 - ${rx:-0})) lost)" \
	test "${rx:-0}" -ge 145

pod_del 0
pod_del 1
tscni_finish
