#!/bin/bash
# interop DNS: MagicDNS names between a pod and a genuine Tailscale v1.68.2
# node, each asking its own quad-100 (100.100.100.100).
#
#   netns ${GP}hub: br0 ─┬─ ${GP}ctl  10.99.0.1    peerctl (testcontrol, DERP, STUN)
#                        ├─ ${GP}n1   10.99.0.11   genuine tailscaled "n1" (tailscale0)
#                        └─ NODE      10.99.0.100  our supervisor and its workers
#   pod netns p0: ts0; /etc/netns/<p0>/resolv.conf names 100.100.100.100
#
# Checked: the pod resolves n1's MagicDNS name (A and AAAA, as the genuine
# node reports it in `tailscale status --json` .Self.DNSName) and its
# address back to that name through our worker; the genuine node resolves
# the pod's name (as it lists the pod's DNSName) to the pod's 100.x address
# through its own quad-100. Upstream's testcontrol sends no DNSConfig: both
# resolvers answer the netmap's names regardless, as tailscaled does.
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/genuine.sh"

genuine_or_skip
tscni_init "dns"
source "$(dirname "$0")/../lib/tailnet.sh"

genuine_one_pod || tscni_finish
P=${POD_NS[0]}
genuine_n1_addrs
check "the genuine node has its tailnet addresses ($n1_4 $n1_6)" test -n "$n1_4" -a -n "$n1_6"
check "the pod and the genuine node know each other" genuine_know_each_other
st=$(genuine_ts 1 status --json 2>/dev/null)
N1=$(jq -r '.Self.DNSName' <<<"$st")
PODNAME=$(jq -r --arg a "${POD4[0]}" '[.Peer[] | select(.TailscaleIPs | index($a))][0].DNSName' <<<"$st")
echo "# n1 is $N1, the pod is $PODNAME (as the genuine node names them)"
# Upstream's testcontrol v1.68.2 names nodes by their host name alone.
check "names from the genuine node's status ($N1, $PODNAME)" \
	bash -c '[[ -n $1 && $1 != null && -n $2 && $2 != null ]]' _ "$N1" "$PODNAME"

mkdir -p "/etc/netns/$P"
CLEAN_CMDS+=("rm -rf /etc/netns/$P")
printf 'nameserver 100.100.100.100\noptions timeout:1 attempts:2\n' >"/etc/netns/$P/resolv.conf"

# in_pod_getent DB NAME: the first address (or name) getent prints in the pod.
in_pod_getent()
{
	ip netns exec "$P" getent "$1" "$2" | awk 'NR == 1 {print $1}'
}

got=$(in_pod_getent ahostsv4 "$N1")
check "the pod resolves $N1 to $n1_4 ($got)" test "$got" == "$n1_4"
got=$(in_pod_getent ahostsv6 "$N1")
check "the pod resolves $N1 to $n1_6 over AAAA ($got)" test "$got" == "$n1_6"
out=$(ip netns exec "$P" getent hosts "$n1_4")
check "the pod's reverse lookup of $n1_4 names ${N1%.} ($out)" grep -qF "${N1%.}" <<<"$out"

# The genuine node asks its own quad-100 (tailscaled answers it on
# tailscale0 through its netstack).
out=$(ip netns exec "${GP}n1" busybox nslookup "$PODNAME" 100.100.100.100 2>&1)
check "the genuine node resolves $PODNAME to ${POD4[0]} ($(tr '\n' ' ' <<<"$out" | head -c 160))" \
	grep -qF "${POD4[0]}" <<<"$out"
# tailscaled v1.68.2 gives a peer's IPv6 address only when the peer has no
# IPv4 one (or with the MagicDNSPeerAAAA capability): no AAAA for the pod.
pod_del 0
tscni_finish
