# shellcheck shell=bash
# Helpers for the benchmarks (tests/bench/): memory of processes sampled every
# 100 ms and CPU time. Source after tests/lib/common.sh; call bench_tick_init
# once after tscni_init. (bench_dataplane_args needs neither: the scripts
# around netns_dataplane call it before they source anything else.)

# bench_dataplane_args BUILD: the argument check of the scripts run as
# `sudo $0 <build dir>` around netns_dataplane (throughput.sh, guard.sh):
# exits 2 with a line on stderr unless BUILD holds tests/netns_dataplane
# and we are root.
bench_dataplane_args()
{
	if [[ -z $1 || ! -x $1/tests/netns_dataplane ]]; then
		echo "usage: sudo $0 <build dir>   (needs \$BUILD/tests/netns_dataplane)" >&2
		exit 2
	fi
	if [[ $EUID -ne 0 ]]; then
		echo "$0: needs root (network namespaces, TUN)" >&2
		exit 2
	fi
}

# bench_tick_init: a FIFO nobody writes, so that `read -t 0.1` on it is a
# sleep without a fork (call after tscni_init).
bench_tick_init()
{
	mkfifo -m 0600 "$T/tick"
}

# pss_of PID: from /proc/PID/smaps_rollup (KiB; 0 when the process is gone)
# sets PSS, USS (Private_Clean + Private_Dirty: what the process alone
# holds, freed when it exits) and ANON (Pss_Anon). No fork (sampled every
# 100 ms).
pss_of()
{
	local key val rest

	PSS=0 USS=0 ANON=0
	[[ -r /proc/$1/smaps_rollup ]] || return 0
	while read -r key val rest; do
		case $key in
		Pss:) PSS=$val ;;
		Private_Clean: | Private_Dirty:) USS=$((USS + val)) ;;
		Pss_Anon:) ANON=$val ;;
		esac
	done <"/proc/$1/smaps_rollup"
}

# sampler FILE: every 100 ms one line "PSS USS ANON" for each pid of the
# array PIDS appended to FILE, until stopped.
sampler()
{
	local out=$1 p line

	exec 9<>"$T/tick"
	while :; do
		line=""
		for p in "${PIDS[@]}"; do
			pss_of "$p"
			line+="$PSS $USS $ANON "
		done
		echo "$line" >>"$out"
		read -r -t 0.1 -u 9 _
	done
}

sample_start()
{
	: >"$1"
	sampler "$1" &
	SAMPLER_PID=$!
	CLEAN_PIDS+=("$SAMPLER_PID")
}

sample_stop()
{
	kill "$SAMPLER_PID" 2>/dev/null
	wait "$SAMPLER_PID" 2>/dev/null
}

# col_max COLUMN FILE...: the largest value of a column: 3*i+1 is process i's
# PSS, 3*i+2 its USS, 3*i+3 its Pss_Anon (i = 0 for worker 0).
col_max()
{
	local c=$1
	shift
	awk -v c="$c" '$c > m { m = $c } END { print m + 0 }' "$@"
}

# cpu_ticks PID: utime + stime of the whole process (clock ticks).
cpu_ticks()
{
	local line rest
	local -a f

	if ! read -r line <"/proc/$1/stat" 2>/dev/null; then
		echo 0
		return
	fi
	rest=${line##*) }
	read -r -a f <<<"$rest"
	# rest starts at field 3 (state): utime is field 14, stime 15.
	echo $((f[11] + f[12]))
}
HZ=$(getconf CLK_TCK)

# smaps_breakdown PID [PREFIX]: where PID's PSS is, from /proc/PID/smaps, one
# line per kind of mapping (KiB, each "PSS / USS", USS the pages PID alone
# maps: what one more such process costs): [heap] (the main arena), the
# other anonymous mappings (thread stacks, the other malloc arenas, large
# mallocs, libraries' bss), [stack], each file-backed object (a library:
# text shared, its relocated data (GOT, .data.rel.ro) private), a memfd. Sorted by PSS, the largest first; PREFIX starts every line
# (default "#   ").
smaps_breakdown()
{
	[[ -r /proc/$1/smaps ]] || return 0
	awk -v pre="${2:-#   }" '
	/^[0-9a-f]+-[0-9a-f]+ / {
		name = $6
		for (i = 7; i <= NF; i++) name = name " " $i
		if (name == "") name = "anonymous (stacks, arenas, big mallocs)"
		sub(/.*\//, "", name)
		cur = name
		next
	}
	$1 == "Pss:" { pss[cur] += $2 }
	$1 == "Private_Clean:" || $1 == "Private_Dirty:" { pa[cur] += $2 }
	END {
		for (k in pss) if (pss[k] > 0) printf "%d\t%d\t%s\n", pss[k], pa[k], k
	}' "/proc/$1/smaps" | sort -rn | awk -F '\t' -v pre="${2:-#   }" -v n=0 '
		{ n++; if (n <= 14) printf "%s%-42s %5d / %5d\n", pre, $3, $1, $2
		  else { op += $1; oa += $2; on++ } }
		END { if (on) printf "%s%-42s %5d / %5d\n", pre, on " more mappings", op, oa }'
}

# heap_sites PID [TOP]: PID's live heap by allocation site (PID runs with
# tests/bench/heap_sites.so preloaded: SUP_PRELOAD): asks for a dump, waits
# for it (up to 10 s) and prints the TOP (default 20) largest sites.
heap_sites()
{
	local req=/tmp/tscni-heap.$1.req out=/tmp/tscni-heap.$1.txt k

	rm -f "$out"
	touch "$req"
	for ((k = 0; k < 50; k++)); do
		[[ -s $out ]] && break
		# A status call makes a worker allocate (its Stats), and the
		# supervisor: the next allocations notice the request.
		sup_status_json >/dev/null 2>&1
		sleep 0.2
	done
	rm -f "$req"
	if [[ ! -s $out ]]; then
		rm -f "$req" "$out"
		echo "#   (no heap dump from $1: is heap_sites.so preloaded?)"
		return 0
	fi
	python3 "$(dirname "${BASH_SOURCE[0]}")/../bench/heap_sites.py" "$out" "${2:-20}" "$1"
	rm -f "$out"
}
