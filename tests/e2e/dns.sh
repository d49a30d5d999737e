#!/bin/bash
# e2e MagicDNS: a pod whose resolver is quad-100 resolves the tailnet's
# names through its worker (tests/testcontrol sends DNSConfig with MagicDNS
# on, domain fake-control.example.net).
#
#   netns NODE: testcontrol, the supervisor, tests/e2e/dns_upstream on 10.201.0.1:53
#               (default upstream) and :5353 (split DNS for corp.example)
#   pods 0, 1 (ts0 only); pod 0's /etc/netns/<ns>/resolv.conf names
#   100.100.100.100 (ip netns exec bind-mounts it over /etc/resolv.conf)
#
#   1. getent: pod 1 by FQDN and by short name (search domain), v4 and v6;
#      reverse lookups of its 100.x and fd7a: addresses; quad-100 over IPv6;
#   2. an outside name is REFUSED while DNSConfig has no resolvers;
#   3. a DNS query over TCP to quad-100 (bash /dev/tcp) is answered;
#   4. DNSConfig with a resolver: outside names are forwarded through the
#      worker (answered by dns_upstream in the node netns); a split-DNS route sends
#      corp.example to its own resolver; others are REFUSED without a
#      default;
#   5. a peer that leaves stops resolving within 2 s.
source "$(dirname "$0")/../lib/common.sh"

tscni_init "dns"
source "$(dirname "$0")/../lib/tailnet.sh"
[[ -x $TC ]] || {
	echo "testcontrol missing: build first" >&2
	exit 1
}
DOMAIN=fake-control.example.net

node_ns_new || tscni_finish
tc_start || tscni_finish
tailnet_two_pods || tscni_finish
NAME1=$(tc_get /nodes | jq -r --arg a "${POD4[1]}/32" '.[] | select(.addresses | index($a)) | .hostname')
check "pod 1's node in testcontrol ($NAME1)" test -n "$NAME1" -a "$NAME1" != null

mkdir -p "/etc/netns/$A"
CLEAN_CMDS+=("rm -rf /etc/netns/$A")
printf 'nameserver 100.100.100.100\nsearch %s\noptions timeout:1 attempts:1\n' "$DOMAIN" \
	>"/etc/netns/$A/resolv.conf"

# resolves NAME FAMILY(ahostsv4|ahostsv6) WANT: pod 0 resolves NAME to WANT.
resolves()
{
	[[ "$(in_ns "$A" getent "$2" "$1" | awk 'NR == 1 {print $1}')" == "$3" ]]
}

# --- 1. names, short names, reverse ------------------------------------------
for ((k = 0; k < 50; k++)); do
	resolves "$NAME1.$DOMAIN" ahostsv4 "${POD4[1]}" && break
	sleep 0.1
done
check "pod 0 resolves $NAME1.$DOMAIN to ${POD4[1]}" resolves "$NAME1.$DOMAIN" ahostsv4 "${POD4[1]}"
check "... and to ${POD6[1]} (AAAA)" resolves "$NAME1.$DOMAIN" ahostsv6 "${POD6[1]}"
check "the short name $NAME1 resolves (search domain)" resolves "$NAME1" ahostsv4 "${POD4[1]}"
check "... and over AAAA" resolves "$NAME1" ahostsv6 "${POD6[1]}"
check "the FQDN with a trailing dot resolves" resolves "$NAME1.$DOMAIN." ahostsv4 "${POD4[1]}"
check "upper case resolves too" resolves "${NAME1^^}.${DOMAIN^^}" ahostsv4 "${POD4[1]}"
out=$(in_ns "$A" getent hosts "${POD4[1]}")
check "reverse lookup of ${POD4[1]}: $out" grep -q "$NAME1.$DOMAIN" <<<"$out"
out=$(in_ns "$A" getent hosts "${POD6[1]}")
check "reverse lookup of ${POD6[1]}: $out" grep -q "$NAME1.$DOMAIN" <<<"$out"
out=$(in_ns "$A" busybox nslookup "$NAME1.$DOMAIN" fd7a:115c:a1e0::53 2>&1)
check "quad-100 answers over IPv6 too (fd7a:115c:a1e0::53)" grep -q "${POD4[1]}" <<<"$out"
out=$(in_ns "$A" busybox nslookup "nosuch.$DOMAIN" 100.100.100.100 2>&1)
check "an unknown name in the tailnet's domain is NXDOMAIN" grep -q "NXDOMAIN" <<<"$out"

# --- 2. outside names without resolvers -------------------------------------
out=$(in_ns "$A" busybox nslookup example.com 100.100.100.100 2>&1)
check "example.com is REFUSED with no resolver in DNSConfig ($(tr '\n' ' ' <<<"$out" | head -c 120))" \
	grep -q "REFUSED" <<<"$out"

# --- 3. TCP -----------------------------------------------------------------
# tcp_query NAME: an A query over TCP to quad-100 from pod 0; prints the
# answer's last 4 bytes as a dotted address.
tcp_query()
{
	local name=$1 q="" label len
	q+='\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00'
	IFS=. read -ra labels <<<"$name"
	for label in "${labels[@]}"; do
		q+=$(printf '\\x%02x' "${#label}")$label
	done
	q+='\x00\x00\x01\x00\x01'
	len=$(printf "$q" | wc -c)
	in_ns "$A" timeout 5 bash -c "exec 3<>/dev/tcp/100.100.100.100/53;
		printf '$(printf '\\x%02x\\x%02x' $((len >> 8)) $((len & 255)))$q' >&3;
		timeout 1 cat <&3" |
		od -An -tu1 | tr -s ' \n' ' ' | awk '{print $(NF-3) "." $(NF-2) "." $(NF-1) "." $NF}'
}
got=$(tcp_query "$NAME1.$DOMAIN")
check "an A query over TCP is answered ($got)" test "$got" == "${POD4[1]}"

# --- 4. forwarding and split DNS --------------------------------------------
UPSTREAM=$TSCNI_BUILD_DIR/tests/e2e/dns_upstream
# upstream_start PORT NAME=IP...: a resolver on 10.201.0.1:PORT in the node netns.
upstream_start()
{
	local port=$1 k
	shift
	ip netns exec "$NODE_NS" "$UPSTREAM" 10.201.0.1 "$port" "$@" >"$T/upstream-$port.out" 2>&1 &
	CLEAN_PIDS+=("$!")
	for ((k = 0; k < 50; k++)); do
		grep -q listening "$T/upstream-$port.out" && return 0
		sleep 0.05
	done
	fail "upstream resolver on port $port starts ($(cat "$T/upstream-$port.out"))"
}
upstream_start 53 upstream.example=10.9.8.7
upstream_start 5353 db.corp.example=10.9.8.8
tc_post /dns "$(jq -nc --arg d "$DOMAIN" '{Proxied: true, Domains: [$d],
	Resolvers: [{Addr: "10.201.0.1"}], Routes: {"corp.example.": [{Addr: "10.201.0.1:5353"}]}}')" >/dev/null
for ((k = 0; k < 50; k++)); do
	resolves upstream.example ahostsv4 10.9.8.7 && break
	sleep 0.1
done
check "an outside name is forwarded to DNSConfig's resolver (upstream.example -> 10.9.8.7)" \
	resolves upstream.example ahostsv4 10.9.8.7
check "a split-DNS name goes to its route's resolver (db.corp.example -> 10.9.8.8)" \
	resolves db.corp.example ahostsv4 10.9.8.8
check "tailnet names still answered locally" resolves "$NAME1.$DOMAIN" ahostsv4 "${POD4[1]}"
tc_post /dns "$(jq -nc --arg d "$DOMAIN" '{Proxied: true, Domains: [$d],
	Routes: {"corp.example.": [{Addr: "10.201.0.1:5353"}]}}')" >/dev/null
for ((k = 0; k < 50; k++)); do
	out=$(in_ns "$A" busybox nslookup upstream.example 100.100.100.100 2>&1)
	grep -q REFUSED <<<"$out" && break
	sleep 0.1
done
check "without default resolvers an outside name is REFUSED again" grep -q REFUSED <<<"$out"
check "... while the split-DNS route still forwards" resolves db.corp.example ahostsv4 10.9.8.8

# status --json counts pod 0's quad-100 traffic (each status asks for fresh
# Stats: the second answer has them).
sup_status_json >/dev/null
st=$(sup_status_json | jq -c --arg u "${POD_UID[0]}" '.pods[] | select(.pod_uid == $u) |
	{dns_queries, dns_answers, dns_forwarded}')
check "status --json: pod 0's quad-100 counters ($st)" \
	jqq '.dns_queries >= 20 and .dns_answers >= 20 and .dns_forwarded >= 2 and
		.dns_answers <= .dns_queries' <<<"$st"

# --- 5. a peer leaves ---------------------------------------------------------
pod_del 1
t0=$(now_ms)
while resolves "$NAME1.$DOMAIN" ahostsv4 "${POD4[1]}"; do
	(($(now_ms) - t0 > 5000)) && break
	sleep 0.05
done
gone=$(($(now_ms) - t0))
echo "# pod 1 stopped resolving ${gone} ms after its DEL returned"
check "a peer that left stops resolving within 2 s ($gone ms)" test "$gone" -le $((2000 * TIME_SCALE))

pod_del 0
tscni_finish
