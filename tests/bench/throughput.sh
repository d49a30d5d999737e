#!/bin/bash
# bench: data-plane throughput of issue 5. Prints figures; fails only when a
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
# Contenders: wireguard-go<->wireguard-go, pod<->pod (our engine at both
# ends), pod<->wireguard-go; ours with every offload on and with every one
# off. iperf3 TCP 1 and 4 streams in both directions (-R) and UDP, 3 s per
# run, median of 3. Printed per row: Mbit/s; CPU seconds per GB moved of
# side A (our engine's data thread from /proc/self/task/<tid>/stat, or
# wireguard-go's whole process); syscalls per GB of our engine (epoll
# wakeups + TUN reads/writes + sendmmsg/recvmmsg that moved data, counted by
# the engine); the largest PSS of the process that runs engine A
# (/proc/self/smaps_rollup, sampled every 100 ms under load); the ratios
# ours / wireguard-go<->wireguard-go from the same run.
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
