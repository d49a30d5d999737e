#!/bin/bash
# Runtime quirks seen on this machine, one per run:
#   quirks.sh containerd_second_del | podman_del_args | version_dummy | no_leaked_fds |
#             del_leaves_foreign | plugin_errors
#
#   host netns                                       pod netns tscni-quirk...-<pid>-p
#   ┌────────────────────────────────────────┐      ┌──────────────────────┐
#   │ plugin_run ─exec─> tailscale-cni        │      │ lo, ts0 (ours)       │
#   │ tailscale-cni-supervisor $T/run/cni.sock├─────>│                      │
#   └────────────────────────────────────────┘      └──────────────────────┘
#
# containerd_second_del: StopPodSandbox's DEL (netns + cached prevResult),
#   then the netns goes, then RemovePodSandbox's DEL with CNI_NETNS="" and no
#   prevResult: both ok, record and ts0 gone.
# podman_del_args: ADD with podman's CNI_ARGS, DEL with ";MAC=..;IP=.."
#   appended: ok, record gone.
# version_dummy: VERSION as libcni sends it (CNI_NETNS/CNI_IFNAME/CNI_PATH =
#   dummy, stdin {"cniVersion":"1.0.0"}): ok in < 100 ms.
# no_leaked_fds: every verb, success and failure paths: the plugin's stdout
#   and stderr reach EOF when it exits (a runtime waits for EOF). First
#   proves the detector catches a child that keeps them.
# del_leaves_foreign: DEL deletes only the interface its own ADD made
#   (docs/cni-contract.md 4.2): a foreign ts0 that ADD refused (100), a
#   foreign net1, and the live ts0 of another network in the same pod all
#   survive the runtime's cleanup DEL, with the supervisor up, down
#   (tombstone) and back; our own ts0 still goes in each path.
# plugin_errors: a FIFO as CNI_NETNS is refused at once (3); code 100 names
#   interfaceName; a socket not owned by root is refused; an over-long
#   container ID without a pod UID is 4 and a full state directory 11.
source "$(dirname "$0")/../lib/common.sh"

Q=${1:?usage: quirks.sh QUIRK}
tscni_init "quirk-${Q:0:12}"

new_pod()
{
	ns_new "${1:-p}" || return 1
	NS=$NS_NAME
	NETNS=$(ns_path "$NS")
}

records_without()
{
	local recs
	recs=$(sup_records)
	if grep -qxF "$1" <<<"$recs"; then
		fail "$2: the supervisor still holds $1"
	else
		pass "$2: the supervisor holds no $1"
	fi
}

quirk_containerd_second_del()
{
	sup_start || return
	new_pod
	CID=$(head -c 32 /dev/urandom | sha256sum | cut -c1-64)
	local args="K8S_POD_UID=0d3c6a1e-$$;IgnoreUnknown=1;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=$CID;K8S_POD_NAMESPACE=default"
	local conf res
	conf=$(mkconf 1.0.0)
	cni "$conf" CNI_COMMAND=ADD "CNI_ARGS=$args"
	expect_ok "RunPodSandbox ADD" || return
	res=$OUT
	check "ts0 after ADD" has_link "$NS" ts0
	cni "$(conf_with_prev "$conf" "$res")" CNI_COMMAND=DEL "CNI_ARGS=$args"
	expect_ok "StopPodSandbox DEL (netns, cached prevResult)" 1
	check "ts0 gone after the first DEL" bash -c "! ip -n $NS link show ts0 >/dev/null 2>&1"
	records_without "e2enet $CID eth0" "first DEL"
	ip netns del "$NS"
	cni "$(mkconf 1.0.0 'del(.prevResult)')" CNI_COMMAND=DEL CNI_NETNS= "CNI_ARGS=$args"
	expect_ok "RemovePodSandbox DEL (CNI_NETNS empty, no prevResult)" 1
	records_without "e2enet $CID eth0" "second DEL"
	# The same second DEL when the first never happened (a node reboot).
	new_pod q
	CID=$(head -c 32 /dev/urandom | sha256sum | cut -c1-64)
	conf=$(mkconf 1.0.0)
	cni "$conf" CNI_COMMAND=ADD
	expect_ok "ADD (second pod)" || return
	ip netns del "$NS"
	cni "$(mkconf 1.0.0 'del(.prevResult)')" CNI_COMMAND=DEL CNI_NETNS=
	expect_ok "DEL with CNI_NETNS empty after the netns vanished" 1
	records_without "e2enet $CID eth0" "DEL after netns vanished"
}

quirk_podman_del_args()
{
	sup_start || return
	new_pod
	CID=$(head -c 32 /dev/urandom | sha256sum | cut -c1-64)
	local conf res
	conf=$(mkconf 1.0.0)
	cni "$conf" CNI_COMMAND=ADD "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=quirky_podman"
	expect_ok "podman ADD" || return
	res=$OUT
	cni "$(conf_with_prev "$conf" "$res")" CNI_COMMAND=DEL \
		"CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=quirky_podman;MAC=c6:c0:24:d9:e0:19;IP=10.88.0.5"
	expect_ok "podman DEL with ;MAC=..;IP=.." 1
	records_without "e2enet $CID eth0" "podman DEL"
	check "ts0 gone" bash -c "! ip -n $NS link show ts0 >/dev/null 2>&1"
	# podman's `network reload` is DEL then ADD with the same arguments.
	cni "$conf" CNI_COMMAND=ADD "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=quirky_podman;MAC=c6:c0:24:d9:e0:19;IP=10.88.0.5"
	expect_ok "ADD again with MAC= and IP= (network reload)"
	cni "$(conf_with_prev "$conf" "$OUT")" CNI_COMMAND=DEL \
		"CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=quirky_podman;MAC=c6:c0:24:d9:e0:19;IP=10.88.0.5"
	expect_ok "DEL after reload" 1
}

quirk_version_dummy()
{
	local conf=$T/ver.json
	echo '{"cniVersion":"1.0.0"}' >"$conf"
	cni "$conf" CNI_COMMAND=VERSION CNI_CONTAINERID= CNI_NETNS=dummy CNI_IFNAME=dummy CNI_PATH=dummy
	expect_ok "VERSION with dummy env"
	check "supportedVersions" jqe '.supportedVersions == ["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]' <<<"$OUT"
	check "cniVersion non-empty" jqe '.cniVersion | length > 0' <<<"$OUT"
	if [[ $WALL -lt $((100 * TIME_SCALE)) ]]; then
		pass "VERSION took $WALL ms (< 100)"
	else
		fail "VERSION took $WALL ms (>= 100)"
	fi
	cni "$conf" CNI_COMMAND=VERSION CNI_CONTAINERID=dummy CNI_NETNS=dummy CNI_IFNAME=dummy CNI_PATH=dummy
	expect_ok "VERSION with CNI_CONTAINERID=dummy too"
}

# The detector itself: a "plugin" that leaves a child holding its stdout.
detector_selftest()
{
	local fake=$T/fake-plugin
	printf '#!/bin/sh\n(sleep 3) &\necho "{}"\nexit 0\n' >"$fake"
	chmod +x "$fake"
	local report
	report=$("$RUNNER" --stdin /dev/null --stdout "$T/fo" --stderr "$T/fe" --eof-wait-ms 1000 -- "$fake")
	if grep -q 'eof_lag_ms=-1' <<<"$report"; then
		pass "detector sees a child holding stdout ($report)"
	else
		fail "detector missed a child holding stdout: $report"
	fi
}

quirk_no_leaked_fds()
{
	detector_selftest
	sup_start || return
	new_pod
	CID=c-fds
	local conf res
	conf=$(mkconf 1.1.0)
	local -a runs=()
	cni /dev/null CNI_COMMAND=VERSION
	runs+=("VERSION:$LAG")
	cni "$conf" CNI_COMMAND=ADD
	expect_ok "ADD"
	res=$OUT
	runs+=("ADD:$LAG")
	cni "$(conf_with_prev "$conf" "$res")" CNI_COMMAND=CHECK
	expect_ok "CHECK" 1
	runs+=("CHECK:$LAG")
	cni "$(mkconf 1.1.0 'del(.prevResult)')" CNI_COMMAND=STATUS CNI_CONTAINERID= CNI_NETNS= CNI_IFNAME=
	expect_ok "STATUS" 1
	runs+=("STATUS:$LAG")
	cni "$(mkconf 1.1.0 'del(.prevResult) | .["cni.dev/valid-attachments"] = [{containerID: "c-fds", ifname: "eth0"}]')" \
		CNI_COMMAND=GC CNI_CONTAINERID= CNI_NETNS= CNI_IFNAME=
	expect_ok "GC" 1
	runs+=("GC:$LAG")
	cni "$(conf_with_prev "$conf" "$res")" CNI_COMMAND=DEL
	expect_ok "DEL" 1
	runs+=("DEL:$LAG")
	cni "$conf" CNI_COMMAND=ADD CNI_IFNAME=..
	expect_err 4 "ADD with a bad ifname"
	runs+=("ADD-error:$LAG")
	sup_kill9
	cni "$conf" CNI_COMMAND=ADD CNI_CONTAINERID=c-fds2
	expect_err 11 "ADD with the supervisor gone"
	runs+=("ADD-nodaemon:$LAG")
	cni "$(conf_with_prev "$conf" "$res")" CNI_COMMAND=DEL
	expect_ok "DEL with the supervisor gone (tombstone)" 1
	runs+=("DEL-tombstone:$LAG")
	local r bad=0
	for r in "${runs[@]}"; do
		if [[ ${r#*:} -lt 0 || ${r#*:} -gt 100 ]]; then
			fail "${r%%:*}: stdout/stderr open ${r#*:} ms after exit"
			bad=1
		fi
	done
	[[ $bad -eq 0 ]] && pass "pipes reached EOF at exit for every run (${runs[*]})"
}

# ifindex_of NS DEV: the device's ifindex, empty when absent.
ifindex_of()
{
	link_json "$1" "$2" | jq -r '.[0].ifindex // empty'
}

# survives DESC NS DEV IFINDEX: DEV is still in NS with the same ifindex.
survives()
{
	local now
	now=$(ifindex_of "$2" "$3")
	if [[ -n $now && $now == "$4" ]]; then
		pass "$1: $3 in $2 survives (ifindex $4)"
	else
		fail "$1: $3 in $2 was deleted or replaced (ifindex '${now}', was $4)"
	fi
}

wait_tombstones_gone()
{
	local i
	for ((i = 0; i < 100; i++)); do
		[[ -z $(ls -A "$STATE/tombstones" 2>/dev/null) ]] && break
		sleep 0.1
	done
	check "$1: every tombstone processed" test -z "$(ls -A "$STATE/tombstones" 2>/dev/null)"
}

quirk_del_leaves_foreign()
{
	sup_start || return
	local conf conf2 net1conf res ia ib n1
	# Pod A: a foreign TUN named ts0 and a foreign net1.
	new_pod a
	local NSA=$NS NETNSA=$NETNS CIDA=cfa-$$
	ip -n "$NSA" tuntap add dev ts0 mode tun && ip -n "$NSA" tuntap add dev net1 mode tun ||
		{ fail "foreign ts0/net1 in $NSA"; return; }
	ia=$(ifindex_of "$NSA" ts0)
	n1=$(ifindex_of "$NSA" net1)
	CID=$CIDA
	conf=$(mkconf 1.0.0)
	cni "$conf" CNI_COMMAND=ADD
	expect_err 100 "ADD while a foreign ts0 exists"
	cni "$(mkconf 1.0.0 'del(.prevResult)')" CNI_COMMAND=DEL
	expect_ok "cleanup DEL after the refused ADD" 1
	survives "DEL after refused ADD" "$NSA" ts0 "$ia"
	net1conf=$(mkconf 1.0.0 '.interfaceName = "net1"')
	cni "$net1conf" CNI_COMMAND=DEL
	expect_ok "DEL with interfaceName net1" 1
	survives "DEL with interfaceName net1" "$NSA" net1 "$n1"

	# Pod B: attached to e2enet; a second network e2enet2 fails ADD with
	# 100 and its cleanup DEL must not touch e2enet's ts0.
	new_pod b
	local NSB=$NS CIDB=cfb-$$
	CID=$CIDB
	conf=$(mkconf 1.0.0)
	cni "$conf" CNI_COMMAND=ADD
	expect_ok "ADD (network e2enet)" || return
	res=$OUT
	ib=$(ifindex_of "$NSB" ts0)
	check "ts0 carries the alias of its key" \
		test "$(link_json "$NSB" ts0 | jq -r '.[0].ifalias')" == "tailscale-cni e2enet_${CIDB}_eth0"
	conf2=$(mkconf 1.0.0 '.name = "e2enet2"')
	cni "$conf2" CNI_COMMAND=ADD
	expect_err 100 "ADD of a second network with the same interfaceName"
	cni "$(mkconf 1.0.0 '.name = "e2enet2" | del(.prevResult)')" CNI_COMMAND=DEL
	expect_ok "cleanup DEL of the second network" 1
	survives "second network's DEL" "$NSB" ts0 "$ib"
	check "the first network's attachment is still held" sup_has_record e2enet "$CIDB" eth0

	# The same DELs with the supervisor down: tombstones, and nothing of
	# anyone else's deleted, neither now nor when the supervisor is back.
	sup_kill9
	CID=$CIDA
	cni "$(mkconf 1.0.0 'del(.prevResult)')" CNI_COMMAND=DEL
	expect_ok "DEL with the supervisor down (foreign ts0)" 1
	survives "tombstone DEL" "$NSA" ts0 "$ia"
	cni "$net1conf" CNI_COMMAND=DEL
	expect_ok "DEL with the supervisor down (interfaceName net1)" 1
	survives "tombstone DEL" "$NSA" net1 "$n1"
	CID=$CIDB
	cni "$(mkconf 1.0.0 '.name = "e2enet2" | del(.prevResult)')" CNI_COMMAND=DEL
	expect_ok "DEL of the second network with the supervisor down" 1
	survives "second network's tombstone DEL" "$NSB" ts0 "$ib"
	check "tombstones written" test -n "$(ls -A "$STATE/tombstones" 2>/dev/null)"
	sup_start || return
	wait_tombstones_gone "supervisor back"
	survives "after the tombstones" "$NSA" ts0 "$ia"
	survives "after the tombstones" "$NSA" net1 "$n1"
	check "pod B still has a ts0 after the tombstones" has_link "$NSB" ts0
	check "the first network's attachment is still held after the tombstones" \
		sup_has_record e2enet "$CIDB" eth0

	# Our own ts0 still goes when its own DEL arrives with the supervisor
	# down (the plugin deletes it locally), and the record when it is back.
	sup_kill9
	cni "$(conf_with_prev "$conf" "$res")" CNI_COMMAND=DEL
	expect_ok "own DEL with the supervisor down" 1
	check "own ts0 deleted by the tombstone DEL" bash -c "! ip -n $NSB link show ts0 >/dev/null 2>&1"
	sup_start || return
	wait_tombstones_gone "own tombstone"
	records_without "e2enet $CIDB eth0" "own tombstone"
	survives "at the end" "$NSA" ts0 "$ia"
}

quirk_plugin_errors()
{
	sup_start || return
	local conf
	new_pod
	conf=$(mkconf 1.0.0)
	# A FIFO in place of the netns: an open without O_NONBLOCK would wait
	# for a writer until the budget ran out.
	mkfifo "$T/fifo"
	CID=c-fifo
	cni "$conf" CNI_COMMAND=ADD "CNI_NETNS=$T/fifo"
	expect_err 3 "ADD with a FIFO as CNI_NETNS"
	check "FIFO refused in $WALL ms (< 2000)" test "$WALL" -lt $((2000 * TIME_SCALE))

	# Code 100 names the interface that exists, whatever it is called.
	ip -n "$NS" tuntap add dev net1 mode tun || fail "foreign net1 in $NS"
	CID=c-net1
	cni "$(mkconf 1.0.0 '.interfaceName = "net1"')" CNI_COMMAND=ADD
	expect_err 100 "ADD with interfaceName net1 while net1 exists"
	check "the error names net1, not ts0" \
		jqe '(.msg + .details | test("ts0") | not) and (.details | test("net1 exists"))' <<<"$OUT"

	# A socket that is not root's is not the supervisor's.
	chown 65534 "$SOCK"
	CID=c-owner
	cni "$conf" CNI_COMMAND=ADD
	chown 0 "$SOCK"
	expect_err 11 "ADD with the socket owned by uid 65534"
	check "the error says the socket is not owned by root" \
		jqe '.details | test("not owned by root")' <<<"$OUT"
	check "nothing was sent: no ts0" bash -c "! ip -n $NS link show ts0 >/dev/null 2>&1"
	records_without "e2enet c-owner eth0" "socket owned by uid 65534"

	# Without K8S_POD_UID the identity is named after the container ID,
	# which then must fit a file name: code 4 naming CNI_CONTAINERID.
	CID=$(printf 'c%.0s' {1..300})
	cni "$conf" CNI_COMMAND=ADD
	expect_err 4 "ADD with a 300-byte container ID and no K8S_POD_UID"
	check "the error names CNI_CONTAINERID" jqe '.msg | test("CNI_CONTAINERID")' <<<"$OUT"
	cni "$(mkconf 1.0.0 'del(.prevResult)')" CNI_COMMAND=DEL
	expect_ok "DEL with the 300-byte container ID" 1

	# A full state directory is transient (11), not an internal error.
	sup_stop
	mkdir -p "$T/small"
	mount -t tmpfs -o size=1m tmpfs "$T/small" || {
		fail "mount a small tmpfs"
		return
	}
	CLEAN_CMDS+=("umount -l $T/small")
	STATE=$T/small/state
	mkdir -m 0700 "$STATE"
	sup_start || return
	dd if=/dev/zero of="$T/small/fill" bs=4k >/dev/null 2>&1
	CID=c-full
	conf=$(mkconf 1.0.0)
	cni "$conf" CNI_COMMAND=ADD "CNI_ARGS=K8S_POD_UID=uid-full-$$"
	expect_err 11 "ADD with the state directory full"
	check "the error says so, without a repeated word" \
		jqe '(.details | test("No space left")) and (.details | test("pod pod") | not)' <<<"$OUT"
	rm -f "$T/small/fill"
	sup_stop
	umount -l "$T/small"
}

if ! declare -F "quirk_$Q" >/dev/null; then
	echo "quirks.sh: no quirk $Q" >&2
	exit 1
fi
"quirk_$Q"
tscni_finish
