#!/bin/bash
# e2e podman: Debian's podman 4.3.1 with its CNI backend (libcni 1.1.2) as a
# real runtime, running a container from a local busybox-static rootfs (no
# image pull) on a conflist bridge + host-local + tailscale-cni.
#
#   host netns                                         container netns
#   ┌──────────────────────────────────────────┐      ┌─────────────────────┐
#   │ podman ── libcni ── exec $T/plugins/*     │      │ busybox sleep       │
#   │ bridge tp<pid> 10.233.<n>.1/24 ───────────┼─veth─┤ eth0 10.233.<n>.x   │
#   │ tailscale-cni-supervisor ($T/run/cni.sock)┼─────>│ ts0 MTU 1280        │
#   └──────────────────────────────────────────┘      └─────────────────────┘
#
# Nothing global is changed: CONTAINERS_CONF points at our containers.conf
# (network_backend cni, runtime runc, pinned default_ulimits, our plugin dir
# and network config dir), and --root/--runroot/--tmpdir keep podman's
# storage and state under $T. podman stop + rm must DEL, which removes the
# supervisor's record.
source "$(dirname "$0")/../lib/common.sh"
tscni_init podman

for b in podman runc busybox nsenter; do
	if ! command -v "$b" >/dev/null; then
		fail "$b is not installed (scripts/ installer provides it)"
		tscni_finish
	fi
done

ROOTFS=$T/rootfs
mkdir -p "$ROOTFS"/{bin,proc,sys,dev,etc,tmp,run} "$T/plugins" "$T/net" "$T/root" "$T/runroot" \
	"$T/tmp" "$T/ipam"
cp /usr/bin/busybox "$ROOTFS/bin/"
for c in sh ip sleep cat; do
	ln -s busybox "$ROOTFS/bin/$c"
done
for f in /usr/lib/cni/*; do
	ln -s "$f" "$T/plugins/"
done
ln -s "$PLUGIN" "$T/plugins/tailscale-cni"

cat >"$T/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "none"
[network]
network_backend = "cni"
cni_plugin_dirs = ["$T/plugins"]
network_config_dir = "$T/net"
CONF
NET="tsnet$$"
BR="tp$$"
SUBNET="10.233.$(($$ % 250)).0/24"
jq -n --arg n "$NET" --arg br "$BR" --arg sn "$SUBNET" --arg d "$T/ipam" --arg s "$SOCK" \
	--arg st "$STATE" '
{cniVersion: "1.0.0", name: $n, plugins: [
	{type: "bridge", bridge: $br, isGateway: true, ipMasq: false,
	 ipam: {type: "host-local", subnet: $sn, dataDir: $d}},
	{type: "tailscale-cni", socketPath: $s, stateDir: $st}
]}' >"$T/net/$NET.conflist"

export CONTAINERS_CONF=$T/containers.conf
PODMAN=(podman --root "$T/root" --runroot "$T/runroot" --tmpdir "$T/tmp" --network-config-dir "$T/net")
NAME="tscni-e2e-$$"
CLEAN_CMDS+=("timeout 30 ${PODMAN[*]} rm -f -t 0 $NAME" "ip link del $BR")

sup_start || tscni_finish

if ! out=$(timeout 120 "${PODMAN[@]}" run -d --name "$NAME" --network "$NET" --rootfs "$ROOTFS" \
	/bin/sleep 600 2>&1); then
	fail "podman run: $out"
	if grep -q 'invalid MAC address' <<<"$out"; then
		# containers/common (podman 4.x) CNIResultToStatus runs
		# net.ParseMAC on the mac of every result interface that has a
		# sandbox; an interface listed without a mac fails the start.
		echo "# podman rejects a result interface with a sandbox but no mac (ts0 needs one for podman)"
	fi
	tail -n 20 "$T/sup.log" | sed 's/^/#   /'
	# A failed start is DEL right after ADD: nothing may be left behind.
	recs=$(sup_records)
	check "after the failed start, no supervisor record is left ($(tr '\n' ';' <<<"$recs"))" \
		test -z "$recs"
	tscni_finish
fi
pass "podman run started $NAME"
CTR_ID=$("${PODMAN[@]}" inspect -f '{{.Id}}' "$NAME")
CTR_PID=$("${PODMAN[@]}" inspect -f '{{.State.Pid}}' "$NAME")
echo "# container $CTR_ID pid $CTR_PID"

lj=$(nsenter -t "$CTR_PID" -n ip -j link show dev ts0 2>/dev/null)
if [[ -n $lj ]]; then
	pass "ts0 inside the container's netns: $(jq -c '.[0] | {ifname, mtu, flags}' <<<"$lj")"
	check "ts0 is UP" jqe '.[0].flags | index("UP")' <<<"$lj"
	check "ts0 MTU 1280" jqe '.[0].mtu == 1280' <<<"$lj"
else
	fail "no ts0 inside the container's netns"
fi
in_ctr=$("${PODMAN[@]}" exec "$NAME" /bin/ip link show ts0 2>&1)
check "busybox ip inside the container sees ts0" grep -q ts0 <<<"$in_ctr"
check "eth0 from the bridge is there too" nsenter -t "$CTR_PID" -n ip link show eth0
recs=$(sup_records)
check "the supervisor holds $NET/$CTR_ID/eth0" grep -qxF "$NET $CTR_ID eth0" <<<"$recs"
rec_files=$(state_records | wc -l)
check "an attachment record file in the state dir" test "$rec_files" -ge 1

out=$(timeout 60 "${PODMAN[@]}" stop -t 1 "$NAME" 2>&1)
check "podman stop ($out)" test $? -eq 0
out=$(timeout 60 "${PODMAN[@]}" rm "$NAME" 2>&1)
check "podman rm ($out)" test $? -eq 0
recs=$(sup_records)
check "DEL removed the supervisor's record (records: $(tr '\n' ';' <<<"$recs"))" \
	bash -c '! grep -qF "$1" <<<"$2"' _ "$CTR_ID" "$recs"
check "no attachment record file left" test -z "$(state_records)"
check "host-local lease released" test "$(find "$T/ipam" -type f -name '10.233.*' | wc -l)" -eq 0
tscni_finish
