#!/bin/bash
# drill: the supervisor in a real container, as the DaemonSet runs it, then
# the container killed and removed: every worker keeps running and a new
# container re-adopts them (the last part of the kill -9 drill).
#
#   host                                            container (podman + runc)
#   ┌────────────────────────────────────┐         ┌──────────────────────────────┐
#   │ tailscale-cni (plugin) ── ADD ──────┼─socket─>│ tailscale-cni-supervisor     │
#   │ pods: ip netns tscni-wpodman-<pid>-* │         │   --pid=host --network=host  │
#   │   ts0 <── TUN fd ── worker × N ─────┼─────────┤   --privileged               │
#   │ zygote + workers: the host's binary  │<─setns──┤   --host-mntns /proc/1/ns/mnt│
#   │   $WORKER_BIN, in the host's mount   │  + exec │   --worker $WORKER_BIN       │
#   │   namespace, in the cgroup           │         │   state dir, run dir, netns  │
#   │   tailscale-cni/zygote (not the      │         │   (rslave) bind-mounted; NO  │
#   │   container's)                       │         │   /sys/fs/cgroup mount       │
#   │                                      │         │ rootfs: the supervisor + ldd │
#   └────────────────────────────────────┘         └──────────────────────────────┘
#
# The worker binary is not in the container at all: the supervisor enters the
# host's mount namespace (hostPID: /proc/1/ns/mnt) between fork and exec, so
# the zygote runs the binary installed on the host and sees the host's
# /sys/fs/cgroup, where it leaves the container's cgroup without any cgroupfs
# mounted into the container.
#
# Nothing global is changed: CONTAINERS_CONF points at our containers.conf
# and --root/--runroot/--tmpdir keep podman's storage under $T.
source "$(dirname "$0")/../lib/common.sh"
tscni_init wpodman

N=${TSCNI_DRILL_PODS:-4}
WORKER_BIN=$TSCNI_BUILD_DIR/worker/tailscale-cni-worker
for b in podman runc busybox ldd; do
	if ! command -v "$b" >/dev/null; then
		fail "$b is not installed"
		tscni_finish
	fi
done

# --- a minimal rootfs: the supervisor, the libraries ldd names, busybox sh.
ROOTFS=$T/rootfs
mkdir -p "$ROOTFS"/{bin,proc,sys,dev,etc,tmp,run/netns,usr/local/bin,log} "$T/root" \
	"$T/runroot" "$T/tmp"
cp /usr/bin/busybox "$ROOTFS/bin/"
ln -s busybox "$ROOTFS/bin/sh"
mkdir -p "$ROOTFS/var"
ln -s ../run "$ROOTFS/var/run"
cp "$SUP" "$ROOTFS/usr/local/bin/"
for lib in $(ldd "$SUP" | awk '/=> \//{print $3} /^\t\//{print $1}' | sort -u); do
	cp -L --parents "$lib" "$ROOTFS/"
done
touch "$ROOTFS/etc/machine-id"
chmod -R a+rX "$ROOTFS"

cat >"$T/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "none"
CONF
export CONTAINERS_CONF=$T/containers.conf
PODMAN=(podman --root "$T/root" --runroot "$T/runroot" --tmpdir "$T/tmp")
NAME="tscni-wpodman-$$"
CLEAN_CMDS+=("timeout 30 ${PODMAN[*]} rm -f -t 0 $NAME-1" "timeout 30 ${PODMAN[*]} rm -f -t 0 $NAME-2")

# ctr_run NAME: the DaemonSet's flags, the supervisor as the container's
# process (sh execs it), its log in $T/ctr.log. Waits until it serves.
ctr_run()
{
	local out i
	out=$(timeout 120 "${PODMAN[@]}" run -d --name "$1" --pid=host --network=host --privileged \
		--cgroupns=host \
		-v "$STATE:$STATE" -v "$T/run:$T/run" -v /run/netns:/run/netns:rslave \
		-v /etc/machine-id:/etc/machine-id:ro -v "$T:/log" \
		--rootfs "$ROOTFS" /bin/sh -c "exec /usr/local/bin/tailscale-cni-supervisor run \
			--state-dir $STATE --socket $SOCK --node-name e2e-$$ --log-level debug \
			--host-mntns $HOST_MNTNS --worker $WORKER_BIN \
			>>/log/ctr.log 2>&1" 2>&1)
	if [[ $? -ne 0 ]]; then
		fail "podman run $1: $out"
		return 1
	fi
	for ((i = 0; i < 100; i++)); do
		timeout 2 "$SUP" status --socket "$SOCK" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	fail "the supervisor in $1 does not serve $SOCK"
	tail -n 20 "$T/ctr.log" | sed 's/^/#   /'
	return 1
}

status_pods()
{
	timeout 10 "$SUP" status --json --socket "$SOCK" |
		jq -c '[.pods[] | {cid: .container_id, pid: .worker_pid, state: .worker_state}]'
}

# The help is read whole first: grep -q stops at the match, and a help
# longer than stdio's buffer then ends the supervisor's second write with
# SIGPIPE, which pipefail reports as a failure.
sup_help=$("$SUP" --help 2>&1)
if ! grep -q -- --host-mntns <<<"$sup_help"; then
	fail "$SUP has no --host-mntns option (supervisor/main.c must pass it to workers_config)"
	tscni_finish
fi
# The DaemonSet passes /proc/1/ns/mnt. Where pid 1 is not the host's init
# (on this test machine it is a sandbox agent whose /proc/1/ns refuses even
# root), this shell, a process in the host's mount namespace, stands in.
HOST_MNTNS=/proc/1/ns/mnt
if [[ "$(readlink /proc/1/ns/mnt 2>/dev/null)" != "$(readlink /proc/self/ns/mnt)" ]]; then
	HOST_MNTNS=/proc/$$/ns/mnt
	echo "# /proc/1/ns/mnt is not readable or not ours: --host-mntns $HOST_MNTNS"
fi
check "the worker binary is not in the container's rootfs" \
	test ! -e "$ROOTFS$WORKER_BIN" -a ! -e "$ROOTFS/usr/local/bin/$(basename "$WORKER_BIN")"
ctr_run "$NAME-1" || tscni_finish
CPID=$("${PODMAN[@]}" inspect -f '{{.State.Pid}}' "$NAME-1")
check "the supervisor runs in the container (pid $CPID, host pid namespace)" \
	test "$(readlink "/proc/$CPID/exe")" == "$ROOTFS/usr/local/bin/tailscale-cni-supervisor" -o \
	"$(tr '\0' ' ' <"/proc/$CPID/cmdline" | cut -d' ' -f1)" == /usr/local/bin/tailscale-cni-supervisor
declare -a NSN PIDS
alive()
{
	[[ ${1:-0} -gt 0 ]] && kill -0 "$1" 2>/dev/null
}
for ((i = 0; i < N; i++)); do
	ns_new "p$i" || tscni_finish
	NSN[i]=$NS_NAME
	NETNS=$(ns_path "$NS_NAME") CID="wp-$i" cni "$(NETNS=$(ns_path "$NS_NAME") mkconf 1.0.0)" \
		CNI_COMMAND=ADD "CNI_ARGS=K8S_POD_UID=uid-wp-$$-$i"
	[[ $RC -eq 0 ]] || fail "ADD of pod $i through the containerised supervisor: ${OUT:0:300}"
done
js=$(status_pods)
for ((i = 0; i < N; i++)); do
	PIDS[i]=$(jq -r --arg c "wp-$i" '.[] | select(.cid == $c and .state == "ready") | .pid' <<<"$js")
done
ready=$(jq '[.[] | select(.state == "ready")] | length' <<<"$js")
check "$N pods with a Ready worker ($ready)" test "$ready" -eq "$N"
ZYG=$(timeout 5 "$SUP" status --json --socket "$SOCK" | jq -r .zygote_pid)
host_mnt=$(readlink /proc/self/ns/mnt)
ctr_mnt=$(readlink "/proc/$CPID/ns/mnt")
zyg_mnt=$(readlink "/proc/${ZYG:-0}/ns/mnt")
w_exe=$(readlink "/proc/${ZYG:-0}/exe")
echo "# mount namespaces: host $host_mnt, container $ctr_mnt, zygote $zyg_mnt ($w_exe)"
check "the container has a mount namespace of its own" test "$ctr_mnt" != "$host_mnt"
check "the zygote runs in the host's mount namespace ($zyg_mnt)" test "$zyg_mnt" == "$host_mnt"
check "the zygote runs the host's binary ($w_exe)" test "$w_exe" == "$(readlink -f "$WORKER_BIN")"
ctr_cg=$(grep -m1 -E '^[0-9]+:(cpu,cpuacct|cpu|pids):' "/proc/$CPID/cgroup" | cut -d: -f3)
zyg_cg=$(grep -m1 -E '^[0-9]+:(cpu,cpuacct|cpu|pids):' "/proc/${ZYG:-0}/cgroup" | cut -d: -f3)
w_cg=$(grep -m1 -E '^[0-9]+:(cpu,cpuacct|cpu|pids):' "/proc/${PIDS[0]:-0}/cgroup" | cut -d: -f3)
echo "# cgroups: container $ctr_cg, zygote $zyg_cg, worker $w_cg"
check "the zygote left the container's cgroup ($zyg_cg vs $ctr_cg)" \
	bash -c "[[ -n '$zyg_cg' && '$zyg_cg' != '$ctr_cg'* ]]"
check "a worker is outside the container's cgroup ($w_cg)" \
	bash -c "[[ -n '$w_cg' && '$w_cg' != '$ctr_cg'* ]]"

out=$(timeout 60 "${PODMAN[@]}" kill "$NAME-1" 2>&1) || fail "podman kill: $out"
out=$(timeout 60 "${PODMAN[@]}" rm -f -t 0 "$NAME-1" 2>&1) || fail "podman rm: $out"
for ((w = 0; w < 50; w++)); do
	kill -0 "$CPID" 2>/dev/null || break
	sleep 0.1
done
check "container killed and removed: its supervisor ($CPID) is gone" \
	bash -c "! kill -0 $CPID 2>/dev/null"
sleep 0.5
alive=0 ts0=0
for ((i = 0; i < N; i++)); do
	alive "${PIDS[i]}" && alive=$((alive + 1))
	has_link "${NSN[i]}" ts0 && ts0=$((ts0 + 1))
done
check "every worker keeps running ($alive of $N)" test "$alive" -eq "$N"
check "every ts0 stays in its pod ($ts0 of $N)" test "$ts0" -eq "$N"

t0=$(date +%s%3N)
ctr_run "$NAME-2" || tscni_finish
ms=$(($(date +%s%3N) - t0))
js=$(status_pods)
same=0
for ((i = 0; i < N; i++)); do
	p=$(jq -r --arg c "wp-$i" '.[] | select(.cid == $c and .state == "ready") | .pid' <<<"$js")
	[[ $p == "${PIDS[i]}" ]] && same=$((same + 1))
done
echo "# a new container served after $ms ms (podman run included)"
check "a new container re-adopted every worker, same pids ($same of $N)" test "$same" -eq "$N"
check "adoptions logged ($(grep -c 'adopted (protocol' "$T/ctr.log"))" \
	test "$(grep -c 'adopted (protocol' "$T/ctr.log")" -eq "$N"

for ((i = 0; i < N; i++)); do
	NETNS=$(ns_path "${NSN[i]}") CID="wp-$i" \
		cni "$(NETNS=$(ns_path "${NSN[i]}") mkconf 1.0.0 'del(.prevResult)')" CNI_COMMAND=DEL
	[[ $RC -eq 0 ]] || fail "DEL of pod $i"
done
left=0
for ((w = 0; w < 30; w++)); do
	left=0
	for ((i = 0; i < N; i++)); do
		alive "${PIDS[i]}" && left=$((left + 1))
	done
	[[ $left -eq 0 ]] && break
	sleep 0.1
done
check "DEL stopped every worker ($left left)" test "$left" -eq 0
timeout 60 "${PODMAN[@]}" rm -f -t 5 "$NAME-2" >/dev/null 2>&1
if grep -qE 'Sanitizer|runtime error:' "$T/ctr.log"; then
	fail "sanitizer report in ctr.log: $(grep -m 3 -E 'Sanitizer|runtime error:' "$T/ctr.log" | tr '\n' ' ')"
fi
tscni_finish
