#!/bin/bash
# deploy.caps_podman: the DaemonSet's capability list, tried for real. The
# supervisor runs in a podman container (runc) as the DaemonSet runs it, but
# WITHOUT --privileged: --cap-drop=all plus exactly the capabilities.add of
# the supervisor container in deploy/ (read from `kubectl kustomize deploy/`),
# podman's default seccomp profile (the manifest says RuntimeDefault),
# AppArmor unconfined, /dev/net/tun bind-mounted as the hostPath volume is,
# hostPID, /run/netns rslave, a cgroup namespace of its own (what runtimes
# give unprivileged containers on cgroup v2), and --host-mntns onto a process
# of the host.
#   - with the list: two pods on testcontrol's tailnet through the
#     containerised supervisor, their workers Ready (sandboxed: own uid,
#     seccomp, empty root), the zygote in the host's mount and cgroup
#     namespaces and out of the container's cgroup, and a ping from one pod
#     to the other over ts0;
#   - without SYS_PTRACE, SYS_CHROOT or SETPCAP (each beyond the start check):
#     no pod gets a Ready worker, so each is needed, and the log says why;
#   - without KILL (one of the start check's): refused, naming CAP_KILL.
# Nothing global is changed: podman's storage and config live under $T.
source "$(dirname "$0")/../lib/common.sh"
tscni_init capspodman
source "$(dirname "$0")/../lib/tailnet.sh"

WORKER_BIN=$TSCNI_BUILD_DIR/worker/tailscale-cni-worker
for b in podman runc busybox ldd kubectl jq capsh; do
	if ! command -v "$b" >/dev/null; then
		fail "$b is not installed"
		tscni_finish
	fi
done

# --- what the manifest asks for -----------------------------------------
spec=$(KUBECONFIG=/dev/null kubectl kustomize "$TSCNI_SOURCE_DIR/deploy" |
	KUBECONFIG=/dev/null kubectl label --local -f - -o json tscni.io/x=1 |
	jq -c 'select(.kind == "DaemonSet") | .spec.template.spec.containers[] |
		select(.name == "supervisor") | .securityContext')
CAPS=($(jq -r '.capabilities.add[]' <<<"$spec"))
check "the manifest's supervisor capabilities: ${CAPS[*]}" test ${#CAPS[@]} -gt 0
check "the manifest drops every other capability" jqq '.capabilities.drop == ["ALL"]' \
	<<<"$spec"
check "the manifest's seccomp profile is RuntimeDefault (podman's default here)" \
	jqq '.seccompProfile.type == "RuntimeDefault"' <<<"$spec"
check "the manifest's AppArmor profile is Unconfined" \
	jqq '.appArmorProfile.type == "Unconfined"' <<<"$spec"

# --- a minimal rootfs: the supervisor, the libraries ldd names, busybox sh.
ROOTFS=$T/rootfs
mkdir -p "$ROOTFS"/{bin,proc,sys,dev/net,etc/tailscale-cni/auth,tmp,run/netns,usr/local/bin} \
	"$T/root" "$T/runroot" "$T/tmp" "$T/log"
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
events_logger = "none"
CONF
export CONTAINERS_CONF=$T/containers.conf
PODMAN=(podman --root "$T/root" --runroot "$T/runroot" --tmpdir "$T/tmp")

# The DaemonSet passes /proc/1/ns/mnt. Where pid 1 is not the host's init
# (a sandbox agent here, whose /proc/1/ns refuses even root), this shell, a
# process in the host's mount namespace holding every capability as init
# does, stands in: opening it from the container needs the same SYS_PTRACE.
HOST_MNTNS=/proc/1/ns/mnt
if [[ "$(readlink /proc/1/ns/mnt 2>/dev/null)" != "$(readlink /proc/self/ns/mnt)" ]]; then
	HOST_MNTNS=/proc/$$/ns/mnt
	echo "# /proc/1/ns/mnt is not readable or not ours: --host-mntns $HOST_MNTNS"
fi

node_ns_new || tscni_finish
tc_start || tscni_finish
tc_authkey '{"reusable": true, "ephemeral": true, "tags": ["tag:e2e"]}' || tscni_finish
mkdir -m 0700 "$T/auth"
mv "$T/authkey" "$T/auth/authkey"

NAME=tscni-capspodman-$$
N_CTR=0
# ctr_start LOG CAP...: the supervisor in a new container with exactly CAPs;
# sets CTR (its name). Returns 0 once it serves $SOCK, 1 if it does not
# within 10 s (LOG holds its output).
ctr_start()
{
	local log=$1 out i capargs=()
	shift
	for c in "$@"; do
		capargs+=(--cap-add "$c")
	done
	CTR=$NAME-$((N_CTR++))
	CLEAN_CMDS+=("timeout 30 ${PODMAN[*]} rm -f -t 0 $CTR")
	rm -rf "$STATE" "$T/run"
	mkdir -m 0700 "$STATE" "$T/run"
	out=$(timeout 120 "${PODMAN[@]}" run -d --name "$CTR" --pid=host \
		--network "ns:/var/run/netns/$NODE_NS" --cgroupns=private \
		--cap-drop=all "${capargs[@]}" \
		--security-opt apparmor=unconfined \
		-v /dev/net/tun:/dev/net/tun -v /run/netns:/run/netns:rslave \
		-v "$STATE:$STATE" -v "$T/run:$T/run" -v "$T/log:/log" \
		-v "$T/auth:/etc/tailscale-cni/auth:ro" -v "$TC_CA:/etc/tailscale-cni/ca.pem:ro" \
		-v /etc/machine-id:/etc/machine-id:ro \
		--rootfs "$ROOTFS" /bin/sh -c "exec /usr/local/bin/tailscale-cni-supervisor run \
			--state-dir $STATE --socket $SOCK --node-name e2e-$$ --log-level debug \
			--host-mntns $HOST_MNTNS --worker $WORKER_BIN \
			--control-url https://$TC_HTTPS --ca-file /etc/tailscale-cni/ca.pem \
			--auth-key-file /etc/tailscale-cni/auth/authkey --cluster-name e2e \
			>>/log/$log 2>&1" 2>&1)
	if [[ $? -ne 0 ]]; then
		fail "podman run $CTR: $out"
		return 1
	fi
	for ((i = 0; i < 100; i++)); do
		timeout 2 "$SUP" status --socket "$SOCK" >/dev/null 2>&1 && return 0
		[[ $("${PODMAN[@]}" inspect -f '{{.State.Running}}' "$CTR" 2>/dev/null) == true ]] ||
			return 1
		sleep 0.1
	done
	return 1
}

ctr_stop()
{
	timeout 60 "${PODMAN[@]}" rm -f -t 5 "$CTR" >/dev/null 2>&1
}

# cgroup_of PID: PID's cgroup in one hierarchy (pids, cpu, else cgroup2),
# as this shell (the host's cgroup namespace) sees it.
cgroup_of()
{
	{ grep -m1 -E '^[0-9]+:(pids|cpu,cpuacct|cpu):' "/proc/$1/cgroup" ||
		grep -m1 '^0::' "/proc/$1/cgroup"; } 2>/dev/null | cut -d: -f3
}

# ready_workers: how many pods the supervisor reports with a Ready worker.
ready_workers()
{
	timeout 10 "$SUP" status --json --socket "$SOCK" 2>/dev/null |
		jq '[.pods[]? | select(.worker_state == "ready")] | length' 2>/dev/null || echo 0
}

# --- the manifest's list: a working tailnet --------------------------------
if ctr_start ctr.log "${CAPS[@]}"; then
	pass "the supervisor serves in a container with only ${CAPS[*]}"
	CPID=$("${PODMAN[@]}" inspect -f '{{.State.Pid}}' "$CTR")
	eff=$(capsh --decode="$(awk '/^CapEff/ {print $2}' "/proc/$CPID/status")" |
		sed 's/.*=//' | tr ',' '\n' | sort | tr '\n' ' ')
	want=$(printf 'cap_%s\n' "${CAPS[@],,}" | sort | tr '\n' ' ')
	check "its effective capabilities are exactly those ($eff)" test "$eff" == "$want"
	check "the supervisor runs under a seccomp filter (podman's default profile)" \
		grep -qE '^Seccomp:[[:space:]]+2' "/proc/$CPID/status"
	pod_add 0 || tscni_finish
	pod_add 1 || tscni_finish
	check "pod 0's worker is Ready" wait_ready 0
	check "pod 1's worker is Ready" wait_ready 1
	ZYG=$(timeout 5 "$SUP" status --json --socket "$SOCK" | jq -r .zygote_pid)
	check "the zygote runs in the host's mount namespace, not the container's" \
		test "$(readlink "/proc/${ZYG:-0}/ns/mnt")" == "$(readlink /proc/self/ns/mnt)" -a \
		"$(readlink "/proc/$CPID/ns/mnt")" != "$(readlink /proc/self/ns/mnt)"
	check "the zygote runs in the host's cgroup namespace, the container in its own" \
		test "$(readlink "/proc/${ZYG:-0}/ns/cgroup")" == "$(readlink /proc/self/ns/cgroup)" -a \
		"$(readlink "/proc/$CPID/ns/cgroup")" != "$(readlink /proc/self/ns/cgroup)"
	ctr_cg=$(cgroup_of "$CPID")
	zyg_cg=$(cgroup_of "${ZYG:-0}")
	check "the zygote left the container's cgroup ($zyg_cg, container $ctr_cg)" \
		test -n "$zyg_cg" -a -n "$ctr_cg" -a "${zyg_cg#"$ctr_cg"}" == "$zyg_cg"
	check "pod 0 pings pod 1 over the tailnet (${POD4[1]})" \
		ns_ping_until "${POD_NS[0]}" "${POD4[1]}"
	pod_del 0
	pod_del 1
else
	fail "the supervisor serves in a container with only ${CAPS[*]}"
	tail -n 20 "$T/log/ctr.log" | sed 's/^/#   /'
fi
ctr_stop

# --- each capability beyond the start check is needed ---------------------
# What each one's absence breaks, as the log says it.
declare -A WHY=(
	[SYS_PTRACE]="--host-mntns: '[^']*' is not a readable absolute path"
	[SYS_CHROOT]="zygote: enter the mount namespace [^ ]*: Operation not permitted"
	[SETPCAP]="sandbox: capng_change_id \\(uid, groups, bounding set\\): Operation not permitted"
)
i=2
for cap in SYS_PTRACE SYS_CHROOT SETPCAP; do
	if [[ " ${CAPS[*]} " != *" $cap "* ]]; then
		fail "$cap is not in the manifest's list"
		continue
	fi
	rest=()
	for c in "${CAPS[@]}"; do
		[[ $c == "$cap" ]] || rest+=("$c")
	done
	log=ctr-no-$cap.log
	ready=0
	if ctr_start "$log" "${rest[@]}"; then
		ns_new "p$i" || tscni_finish
		POD_NS[$i]=$NS_NAME
		CID="pod-$$-$i" NETNS=$(ns_path "$NS_NAME") cni "$(mkconf 1.0.0 '.syncTimeout = "3s"')" \
			CNI_COMMAND=ADD "CNI_ARGS=K8S_POD_NAMESPACE=ns$i;K8S_POD_NAME=web-$i;K8S_POD_UID=uid-$$-$i"
		sleep 3
		ready=$(ready_workers)
		i=$((i + 1))
	fi
	check "without $cap no pod gets a Ready worker ($ready)" test "$ready" -eq 0
	check "without $cap the log says why: $(grep -m1 -E -e "${WHY[$cap]}" "$T/log/$log" |
		cut -c1-200)" grep -qE -e "${WHY[$cap]}" "$T/log/$log"
	ctr_stop
done

# --- the start check ------------------------------------------------------
rest=()
for c in "${CAPS[@]}"; do
	[[ $c == KILL ]] || rest+=("$c")
done
if ctr_start ctr-no-KILL.log "${rest[@]}"; then
	fail "without KILL the supervisor refuses to start"
else
	check "without KILL the supervisor refuses to start, naming CAP_KILL" \
		grep -q "refusing to start: missing CAP_KILL" "$T/log/ctr-no-KILL.log"
fi
ctr_stop
tscni_finish
