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
set -u
BUILD=${1:-${TSCNI_BUILD_DIR:-}}
if [[ -z $BUILD || ! -x $BUILD/tests/netns_dataplane ]]; then
	echo "usage: sudo $0 <build dir>   (needs \$BUILD/tests/netns_dataplane)" >&2
	exit 2
fi
if [[ $EUID -ne 0 ]]; then
	echo "$0: needs root (network namespaces, TUN)" >&2
	exit 2
fi
for tool in iperf3 wireguard-go wg busybox; do
	if ! command -v "$tool" >/dev/null; then
		echo "$0: $tool not found" >&2
		exit 2
	fi
done

PID=""
cleanup()
{
	# The bench binary tears its namespaces down itself; its children die
	# with it (PR_SET_PDEATHSIG).
	if [[ -n $PID ]] && kill -0 "$PID" 2>/dev/null; then
		kill "$PID"
		wait "$PID" 2>/dev/null
	fi
}
trap cleanup EXIT INT TERM

TSCNI_BENCH=1 "$BUILD/tests/netns_dataplane" &
PID=$!
wait "$PID"
rc=$?
PID=""
exit $rc
