#!/bin/bash
# Runtime quirks seen on this machine, one per run:
#   quirks.sh containerd_second_del | podman_del_args | version_dummy | no_leaked_fds
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

if ! declare -F "quirk_$Q" >/dev/null; then
	echo "quirks.sh: no quirk $Q" >&2
	exit 1
fi
"quirk_$Q"
tscni_finish
