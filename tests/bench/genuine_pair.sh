# shellcheck shell=bash
# A pair of genuine tailscaled v1.68.2 nodes for the throughput benchmarks
# (throughput.sh, worker_load.sh): the contender users would pick instead of
# our pods, on the same machine in the same run. Source after
# tests/lib/common.sh (tscni_init done), tests/lib/tailnet.sh,
# tests/lib/genuine.sh and tests/lib/bench.sh (bench_tick_init done).
#
#   netns ${GP}hub: br0 ─┬─ ${GP}ctl  10.99.0.1    genuine control (testcontrol, DERP, STUN)
#                        ├─ ${GP}n1   10.99.0.11   tailscaled "n1": side A, iperf3 -c
#                        └─ ${GP}n2   10.99.0.12   tailscaled "n2": side B, iperf3 -s
#
# Both nodes are veth ends on one bridge in their own netns, as our engines'
# node netns are (tests/lib/genuine.sh); their traffic goes tailscale0 ->
# tailscaled -> UDP -> bridge -> UDP -> tailscaled -> tailscale0.

# gpair_available: 0 when TSCNI_PEERS_DIR names the genuine programs; else
# prints one line saying so and returns 1 (the caller runs the rest).
gpair_available()
{
	local b

	if [[ -z ${TSCNI_PEERS_DIR:-} ]]; then
		echo "# genuine tailscaled pair: not run (TSCNI_PEERS_DIR empty: no genuine peers)"
		return 1
	fi
	for b in tailnet.sh bin/tailscaled bin/tailscale bin/peerctl; do
		if [[ ! -x $TSCNI_PEERS_DIR/$b ]]; then
			echo "# genuine tailscaled pair: not run ($TSCNI_PEERS_DIR has no executable $b)"
			return 1
		fi
	done
	command -v iperf3 >/dev/null || {
		echo "# genuine tailscaled pair: not run (no iperf3)"
		return 1
	}
}

# gpair_up: control, n1 and n2 joined, n1 reaching n2 over a direct path,
# iperf3 -s in n2. Sets GA and GB (the nodes' netns), GB4 (n2's tailnet
# IPv4), GPIDS (tailscaled n1 and n2). Returns 1 after saying what failed.
gpair_up()
{
	local k

	genuine_up 2 && genuine_control && genuine_node 1 && genuine_node 2 || {
		echo "# genuine tailscaled pair: setup failed (logs in $T/genuine)"
		return 1
	}
	GA=${GP}n1
	GB=${GP}n2
	GB4=$(genuine_ts 2 ip -4 2>/dev/null | head -n 1)
	GPIDS=("$(cat "$GRUN/n1/tailscaled.pid")" "$(cat "$GRUN/n2/tailscaled.pid")")
	[[ -n $GB4 && ${GPIDS[0]} =~ ^[0-9]+$ && ${GPIDS[1]} =~ ^[0-9]+$ ]] || {
		echo "# genuine tailscaled pair: no address or pid for the nodes"
		return 1
	}
	for ((k = 0; k < 50; k++)); do
		genuine_ts 1 ping -c 1 --timeout 1s "$GB4" 2>/dev/null |
			grep -qE '^pong from .* via 10\.99\.0\.12:[0-9]+ in' && break
	done
	[[ $k -lt 50 ]] || {
		echo "# genuine tailscaled pair: n1 gets no direct pong from n2"
		return 1
	}
	ip netns exec "$GB" iperf3 -s >>"$T/gpair-iperf3-s.log" 2>&1 </dev/null &
	CLEAN_PIDS+=("$!")
	for ((k = 0; k < 50; k++)); do
		ip netns exec "$GB" ss -Htln 'sport = :5201' | grep -q . && return 0
		sleep 0.1
	done
	echo "# genuine tailscaled pair: iperf3 -s does not start in n2"
	return 1
}

# gpair_run SECS UDP ARGS...: one iperf3 -c from n1 to n2 (ARGS: -R, -P 4,
# -u ...; UDP=1 counts what arrived: sent x (1 - loss)). Prints
# "Mbit/s GB cpuA_s_per_GB cpuB_s_per_GB": CPU of each whole tailscaled.
gpair_run()
{
	local secs=$1 udp=$2 a0 b0 a1 b1 sum
	shift 2

	a0=$(cpu_ticks "${GPIDS[0]}")
	b0=$(cpu_ticks "${GPIDS[1]}")
	sum=sum_received
	[[ $udp == 1 ]] && sum=sum
	ip netns exec "$GA" timeout $((secs + 20)) iperf3 -c "$GB4" -t "$secs" "$@" -J \
		>"$T/gpair.json" 2>/dev/null
	a1=$(cpu_ticks "${GPIDS[0]}")
	b1=$(cpu_ticks "${GPIDS[1]}")
	jq -r --arg s "$sum" '.end[$s] // {} |
		"\(.bits_per_second // 0) \(.bytes // 0) \(.lost_percent // 0)"' \
		"$T/gpair.json" 2>/dev/null |
		awk -v da=$((a1 - a0)) -v db=$((b1 - b0)) -v hz="$HZ" '{
			keep = 1 - $3 / 100
			gb = $2 * keep / 1e9
			printf "%.0f %.3f %.2f %.2f\n", $1 * keep / 1e6, gb,
				(gb > 0 ? da / hz / gb : 0), (gb > 0 ? db / hz / gb : 0)
		}
		END { if (NR == 0) print "0 0 0 0" }'
}

# gpair_median3 SECS UDP ARGS...: gpair_run three times; prints the median of
# each column.
gpair_median3()
{
	local k
	local -a r

	for ((k = 0; k < 3; k++)); do
		r+=("$(gpair_run "$@")")
	done
	printf '%s\n' "${r[@]}" | awk '{ for (i = 1; i <= 4; i++) v[i, NR] = $i }
		END {
			for (i = 1; i <= 4; i++) {
				a = v[i, 1]; b = v[i, 2]; c = v[i, 3]
				if ((a <= b && b <= c) || (c <= b && b <= a)) m = b
				else if ((b <= a && a <= c) || (c <= a && a <= b)) m = a
				else m = c
				printf "%s%s", m, i < 4 ? " " : "\n"
			}
		}'
}
