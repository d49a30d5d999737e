# shellcheck shell=bash
# Helpers for the interop tests: a tailnet of genuine Tailscale v1.68.2
# programs (upstream's testcontrol with DERP and STUN, tailscaled, the
# tailscale CLI) from $TSCNI_PEERS_DIR, brought up by its tailnet.sh in
# network namespaces of the test's own, with our supervisor's node netns on
# the same bridge. Source with tests/lib/common.sh and tests/lib/tailnet.sh;
# call genuine_or_skip before tscni_init (the SKIP line must be all it prints).
#
#   netns ${GP}hub: br0 ─┬─ ${GP}ctl  10.99.0.1    peerctl: control http://10.99.0.1,
#                        │                         DERP :443, STUN :3478, admin 127.0.0.1:8081
#                        ├─ ${GP}n1   10.99.0.11   genuine tailscaled (tailscale0, UDP 41641)
#                        ├─ ...
#                        └─ $NODE_NS  10.99.0.100  our supervisor and its workers
#   pod netns: ts0 (made by the supervisor)
#
# GP is tscni-g<pid>- and the genuine tailnet's state and logs are in
# $T/genuine (tailscaled's in $T/genuine/n<I>/tailscaled.log). The EXIT trap
# runs `tailnet.sh down`: every genuine process stopped by its pid file, every
# ${GP}* netns deleted. Nothing here reaches an address outside these
# namespaces (the bridge has no route out).

# genuine_or_skip: without genuine peers (TSCNI_PEERS_DIR empty) prints one
# SKIP line and exits 0; ctest marks the test skipped by that line
# (SKIP_REGULAR_EXPRESSION, tests/interop/CMakeLists.txt). A directory that
# is named but lacks the programs is a broken setup: exit 1.
genuine_or_skip()
{
	local b

	if [[ -z ${TSCNI_PEERS_DIR:-} ]]; then
		echo "SKIP: genuine Tailscale peers not found (TSCNI_PEERS_DIR empty)"
		exit 0
	fi
	for b in tailnet.sh bin/tailscaled bin/tailscale bin/peerctl; do
		if [[ ! -x $TSCNI_PEERS_DIR/$b ]]; then
			echo "TSCNI_PEERS_DIR=$TSCNI_PEERS_DIR has no executable $b" >&2
			exit 1
		fi
	done
}

# gtn ARGS...: the peers' tailnet.sh with this test's prefix and folder.
gtn()
{
	P=$GP RUN=$GRUN "$TSCNI_PEERS_DIR/tailnet.sh" "$@"
}

# genuine_up N: the hub, the control netns and N genuine node netns; the
# tailnet is taken down at exit. Call after tscni_init.
genuine_up()
{
	GP="tscni-g$$-"
	GRUN=$T/genuine
	mkdir -m 0700 "$GRUN"
	CLEAN_CMDS+=("gtn down")
	gtn up "$1" >>"$GRUN/tailnet.out" 2>&1 || {
		fail "genuine tailnet: namespaces up ($(tail -n 3 "$GRUN/tailnet.out" | tr '\n' ' '))"
		return 1
	}
}

# genuine_control: peerctl (testcontrol v1.68.2, DERP, STUN) in ${GP}ctl.
genuine_control()
{
	local out

	out=$(gtn control 2>&1)
	if ! grep -q '^listening control=' <<<"$out"; then
		fail "genuine control starts (log: $(tail -n 3 "$GRUN/peerctl.log" 2>/dev/null | tr '\n' ' '))"
		return 1
	fi
}

# genuine_node I [ARGS...]: tailscaled in ${GP}n<I>, `tailscale up` against
# the genuine control with its auth key (ARGS go to `tailscale up`).
genuine_node()
{
	local i=$1
	shift
	gtn node "$i" "$@" >>"$GRUN/tailnet.out" 2>&1 || {
		fail "genuine node n$i joins (log: $(tail -n 3 "$GRUN/n$i/tailscaled.log" 2>/dev/null | tr '\n' ' '))"
		return 1
	}
}

# genuine_ts I ARGS...: the genuine tailscale CLI of node I.
genuine_ts()
{
	gtn ts "$@"
}

# genuine_authkey: the genuine control's pre-auth key into $T/authkey (0600;
# never on a command line of ours, never printed).
genuine_authkey()
{
	local key

	key=$(gtn authkey 2>/dev/null)
	if [[ -z $key || $key == null ]]; then
		fail "the genuine control hands out its auth key"
		return 1
	fi
	(umask 077 && printf '%s\n' "$key" >"$T/authkey")
}

# genuine_nodes [full]: the genuine control's node list (JSON array).
genuine_nodes()
{
	gtn nodes "$@"
}

# genuine_node_ns: a node netns for our supervisor on the genuine bridge
# (sets NODE_NS, SUP_NETNS and NODE_ADDR, its address there). Call it before
# the supervisor starts: workers announce the addresses the node has then.
genuine_node_ns()
{
	# Made by tailnet.sh itself: its check for an existing netns (ip netns
	# list | grep -q under pipefail) can take a present one for absent when
	# the list is long, and then fails creating it again.
	NODE_NS="tscni-${TEST_NAME:0:10}-$$-node"
	CLEAN_NETNS+=("$NODE_NS")
	SUP_NETNS=$NODE_NS
	NODE_ADDR=$(gtn join "$NODE_NS" 2>>"$GRUN/tailnet.out")
	[[ $NODE_ADDR =~ ^10\.99\.0\.[0-9]+$ ]] || {
		fail "our node netns joins the genuine bridge ($NODE_ADDR)"
		return 1
	}
}

# sup_start_genuine [ARGS...]: our supervisor in $NODE_NS against the genuine
# control over plain HTTP with $T/authkey.
sup_start_genuine()
{
	sup_start --control-url http://10.99.0.1 --auth-key-file "$T/authkey" \
		--cluster-name interop "$@"
}

# genuine_one_pod: the genuine tailnet with control and node n1, our node
# netns and supervisor on its bridge, and pod 0 added (pod_add). Returns 1
# after the first step that failed (each has said what).
genuine_one_pod()
{
	genuine_up 1 && genuine_control && genuine_node 1 && genuine_authkey &&
		genuine_node_ns && sup_start_genuine && pod_add 0
}

# genuine_n1_addrs: n1_4 and n1_6, the genuine node n1's tailnet addresses,
# once control told it its own (up to 10 s; empty when it did not).
genuine_n1_addrs()
{
	local k ips

	n1_4="" n1_6=""
	for ((k = 0; k < 100; k++)); do
		ips=$(genuine_ts 1 ip 2>/dev/null | tr '\n' ' ')
		n1_4=$(tr ' ' '\n' <<<"$ips" | grep -m1 '^100\.')
		n1_6=$(tr ' ' '\n' <<<"$ips" | grep -m1 '^fd7a:')
		[[ -n $n1_4 && -n $n1_6 ]] && return 0
		sleep 0.1
	done
}

# genuine_know_each_other: until pod 0's data plane has its one peer and n1
# lists pod 0 (up to 10 s): both must know the other before the first packet.
genuine_know_each_other()
{
	local k

	for ((k = 0; k < 100; k++)); do
		[[ $(pod_stat "${POD_UID[0]}" peers) == 1 ]] &&
			genuine_ts 1 status --json 2>/dev/null |
			jq -e --arg a "${POD4[0]}" \
				'[.Peer[]? | select(.TailscaleIPs | index($a))] | length == 1' \
				>/dev/null && return 0
		sleep 0.1
	done
}
