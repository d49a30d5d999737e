#!/bin/bash
# bench: data-plane throughput. Prints figures; fails only when a
# contender could not be set up (no path through it).
#   sudo tests/bench/throughput.sh <build dir>
#
# One fixed topology for every contender, built by tests/netns/dataplane.c
# (netns_dataplane with TSCNI_BENCH=1):
#
#   pod netns A: ts0 ─ engine A ─┐                 ┌─ engine B ─ ts0: pod netns B
#                      node netns A ── veth pair ── node netns B
#   (wireguard-go runs in the node netns instead of a pod + engine)
#
# Rows (every one built afresh; ours = our engine in both pods, or in pod A
# facing wireguard-go):
#   wireguard-go<->wireguard-go
#   pod<->pod offloads on          every offload the kernel offers
#   pod<->pod TUN TSO off          tunio_config.no_tso (vnet header kept)
#   pod<->pod TUN coalesce off     tunio_config.no_coalesce
#   pod<->pod UDP GSO off          udpio_config.no_gso
#   pod<->pod UDP GRO off          udpio_config.no_gro
#   pod<->pod offloads off         all of them, the TUN without a vnet header
#                                  (TSCNI_FORCE_FALLBACK, as CI's fallback run)
#   pod<->wireguard-go on / off
# The single-offload switches go to both engines through struct
# dataplane_params .tun/.udp.
# Cases: iperf3 from A to B, TCP 1 and 4 streams in both directions (-R) and
# UDP (-b 0, 1200-byte datagrams); 3 s per run, each figure the median of 3
# runs; every row runs every case (about 7.5 minutes on 2 cores, printed).
#
# Printed per row and case: Mbit/s received (UDP: sent x (1 - loss)); CPU
# seconds per GB moved of side A (our engine's data thread from
# /proc/<pid>/task/<tid>/stat, or wireguard-go's whole process); for our
# engine A the syscalls per GB (epoll wakeups + TUN reads/writes +
# sendmmsg/recvmmsg that moved data, counted by the engine).
# Printed per row and engine of ours: the offloads it ended up with
# (dataplane_stats.offloads: vnet tso uso coalesce gso gro, each + or -),
# MISSING/UNEXPECTED naming any that differ from what the row asked for,
# and their effect over the row: IP packets per TUN read and per TUN write,
# datagrams per sendmmsg and per recvmmsg.
# Printed per row: the largest PSS of the process running engine A
# (/proc/self/smaps_rollup, sampled every 100 ms under load), or
# wireguard-go A's PSS after the load. (The real worker's PSS under load:
# tests/bench/worker_load.sh.)
# At the end: ours / wireguard-go<->wireguard-go per case, same run ("-":
# no figure to divide), and the wall time.
# Then, when TSCNI_PEERS_DIR names the genuine Tailscale programs (else one
# line says it is not run), the contender users would pick instead: two
# genuine tailscaled v1.68.2 nodes, each in a netns of its own on one bridge
# (tests/bench/genuine_pair.sh), the same cases (3 s, median of 3), printed
# as "tailscaled<->tailscaled <case> Mbit/s cpu A s/GB B s/GB" with the CPU
# of each whole tailscaled process, tailscaled A's largest PSS, and the
# ratio pod<->pod offloads on / tailscaled<->tailscaled per case (about 1
# more minute). TSCNI_BENCH_ROWS / TSCNI_BENCH_CASES (comma-separated
# indices, tests/netns/dataplane.c) run only some rows and cases.
set -u
source "$(dirname "$0")/../lib/bench.sh"
BUILD=${1:-${TSCNI_BUILD_DIR:-}}
bench_dataplane_args "$BUILD"
for tool in iperf3 wireguard-go wg busybox; do
	if ! command -v "$tool" >/dev/null; then
		echo "$0: $tool not found" >&2
		exit 2
	fi
done

PID=""
OUT=$(mktemp /tmp/tscni-tput.XXXXXX)
cleanup()
{
	# The bench binary tears its namespaces down itself; its children die
	# with it (PR_SET_PDEATHSIG).
	if [[ -n $PID ]] && kill -0 "$PID" 2>/dev/null; then
		kill "$PID"
		wait "$PID" 2>/dev/null
	fi
	rm -f "$OUT"
}
trap cleanup EXIT INT TERM

TSCNI_BENCH=1 "$BUILD/tests/netns_dataplane" > >(tee "$OUT") &
PID=$!
wait "$PID"
rc=$?
PID=""
sleep 0.2 # tee's last lines

# --- genuine tailscaled <-> tailscaled, the same cases -----------------------
export TSCNI_BUILD_DIR=$BUILD
source "$(dirname "$0")/genuine_pair.sh"
echo
gpair_available || exit $rc
OURS=$(cat "$OUT")
rm -f "$OUT"
trap - EXIT INT TERM
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tailnet.sh"
source "$(dirname "$0")/../lib/genuine.sh"
tscni_init tput
bench_tick_init
gpair_up || exit 1
CASES=("tcp 1 A->B" "tcp 1 B->A (-R)" "tcp 4 A->B" "tcp 4 B->A (-R)" "udp A->B")
CASE_ARGS=("0" "0 -R" "0 -P 4" "0 -P 4 -R" "1 -u -b 0 -l 1200")
declare -A GMBIT
echo "genuine tailscaled v1.68.2 pair, two node netns on one bridge; cpu: whole tailscaled"
# shellcheck disable=SC2034 # read by sampler (tests/lib/bench.sh)
PIDS=("${GPIDS[0]}")
sample_start "$T/gpair.pss"
for c in "${!CASES[@]}"; do
	[[ -z ${TSCNI_BENCH_CASES:-} || ,$TSCNI_BENCH_CASES, == *,$c,* ]] || continue
	# shellcheck disable=SC2086 # the case's arguments are words on purpose
	read -r mbit _ ca cb < <(gpair_median3 3 ${CASE_ARGS[$c]})
	GMBIT[$c]=$mbit
	printf '%-27s %-16s %7s Mbit/s  cpu %6s s/GB  B %6s s/GB\n' "tailscaled<->tailscaled" \
		"${CASES[$c]}" "$mbit" "$ca" "$cb"
done
sample_stop
printf '%-27s PSS of tailscaled A under load: max %s kB\n' "tailscaled<->tailscaled" \
	"$(col_max 1 "$T/gpair.pss")"

echo
echo "ratio pod<->pod offloads on / tailscaled<->tailscaled (same run; - = no figure):"
for c in "${!CASES[@]}"; do
	[[ -z ${TSCNI_BENCH_CASES:-} || ,$TSCNI_BENCH_CASES, == *,$c,* ]] || continue
	ours=$(awk -v c="${CASES[$c]}" 'substr($0, 1, 27) ~ /^pod<->pod offloads on +$/ &&
		substr($0, 29, 16) == sprintf("%-16s", c) && match($0, /[0-9]+ Mbit\/s/) {
		print substr($0, RSTART, RLENGTH - 7) }' <<<"$OURS" |
		head -n 1)
	g=${GMBIT[$c]:-}
	if [[ -n $ours && -n $g && $g != 0 ]]; then
		printf '%-16s %7s / %7s = %.2fx\n' "${CASES[$c]}" "$ours" "$g" \
			"$(awk -v a="$ours" -v b="$g" 'BEGIN { print a / b }')"
	else
		printf '%-16s %s\n' "${CASES[$c]}" "-"
	fi
done
exit $rc
