#!/bin/bash
# e2e: the pre-auth key as Kubernetes hands it over. testcontrol mints two
# keys, one tagged tag:first, one tag:rotated.
#   - a directory laid out as kubelet lays out a Secret volume (authkey ->
#     ..data/authkey, ..data -> ..<timestamp>, the file 0644 as the default
#     defaultMode makes it): the supervisor starts with
#     --auth-key-file DIR/authkey, a pod registers with tag:first;
#   - rotation as kubelet does it (a new timestamped dir, ..data swapped
#     atomically): within 10 s the log says the secret changed, and the next
#     pod registers with tag:rotated; the first pod keeps its node;
#   - refused, with the reason and without the key: a chain ending in a file
#     owned by another user, a Secret directory others may write to, a plain
#     0644 file outside a Secret volume;
#   - --auth-key-env NAME: a pod registers; the key is not left in the
#     supervisor's /proc/<pid>/environ, nor in the zygote's or a worker's.
# No key reaches any log.
source "$(dirname "$0")/../lib/common.sh"

tscni_init "authsecret"
source "$(dirname "$0")/../lib/tailnet.sh"

node_ns_new || tscni_finish
tc_start || tscni_finish
tc_authkey '{"reusable": true, "ephemeral": true, "tags": ["tag:first"]}' || tscni_finish
K1=$(cat "$T/authkey")
tc_authkey '{"reusable": true, "ephemeral": true, "tags": ["tag:rotated"]}' || tscni_finish
K2=$(cat "$T/authkey")
rm -f "$T/authkey"

# secret_write DIR STAMP KEY MODE: kubelet's atomic writer: the files in a
# new DIR/..STAMP, then DIR/..data swapped to it (rename over the link),
# DIR/authkey -> ..data/authkey.
secret_write()
{
	local d=$1 s=..$2
	mkdir -p "$d/$s"
	printf '%s' "$3" >"$d/$s/authkey"
	chmod "$4" "$d/$s/authkey"
	ln -s "$s" "$d/..data_tmp"
	mv -T "$d/..data_tmp" "$d/..data"
	[[ -L $d/authkey ]] || ln -s ..data/authkey "$d/authkey"
}

# tags_of I: pod I's node's tags at testcontrol, as one line.
tags_of()
{
	tc_get /nodes | jq -r --arg h "e2e-ns$1-web-$1-" \
		'[.[] | select(.hostname | startswith($h)) | .tags[]] | join(",")'
}

# refused DESC ARGS...: the supervisor refuses to start with ARGS; its
# output names the fault (grep -E PATTERN in $PAT) and holds no key.
refused()
{
	local desc=$1 out rc
	shift
	out=$(timeout 20 "$SUP" run --state-dir "$T/state-refuse" --socket "$T/run/refuse.sock" \
		--node-name "e2e-$$" --control-url "https://$TC_HTTPS" --ca-file "$TC_CA" "$@" \
		2>&1 </dev/null)
	rc=$?
	check "$desc: refused (exit $rc)" test "$rc" -ne 0
	check "$desc: the reason is given: $(grep -E -m1 "$PAT" <<<"$out" | cut -c1-240)" \
		grep -qE "$PAT" <<<"$out"
	check "$desc: no key in what it printed" bash -c '! grep -qF -e "$1" -e "$2" <<<"$3"' _ \
		"$K1" "$K2" "$out"
}

SEC=$T/secret
mkdir -m 0755 "$SEC"
secret_write "$SEC" 2026_12_07_05_00_00.000000001 "$K1" 0644
sup_start --control-url "https://$TC_HTTPS" --auth-key-file "$SEC/authkey" --ca-file "$TC_CA" \
	--cluster-name e2e || tscni_finish
pod_add 0 || tscni_finish
check "pod 0 registered with the Secret's key (tags: $(tags_of 0))" test "$(tags_of 0)" == tag:first

secret_write "$SEC" 2026_12_07_05_01_00.000000002 "$K2" 0644
rm -rf "$SEC/..2026_12_07_05_00_00.000000001"
for ((i = 0; i < 100; i++)); do
	grep -q "the secret changed" "$T/sup.log" && break
	sleep 0.1
done
check "the rotation is noticed within 10 s" grep -q "auth-key-file $SEC/authkey: the secret changed" \
	"$T/sup.log"
pod_add 1 || tscni_finish
check "pod 1 registered with the rotated key (tags: $(tags_of 1))" test "$(tags_of 1)" == tag:rotated
check "pod 0 keeps its node (tags: $(tags_of 0))" test "$(tags_of 0)" == tag:first
pod_del 0
pod_del 1
t0=$(now_ms)
sup_stop
check "SIGTERM stops the supervisor watching the key file ($(($(now_ms) - t0)) ms)" \
	grep -q "run: stopped" "$T/sup.log"

# Refusals.
secret_write "$T/other" 2026_12_07_05_00_00.000000003 "$K1" 0600
chown 65534 "$T/other/..2026_12_07_05_00_00.000000003/authkey"
PAT="owned by uid 65534"
refused "a chain ending in a file owned by another user" --auth-key-file "$T/other/authkey"
secret_write "$T/loose" 2026_12_07_05_00_00.000000004 "$K1" 0600
chmod 0777 "$T/loose"
PAT="loose is a directory others may write to"
refused "a Secret directory others may write to" --auth-key-file "$T/loose/authkey"
printf '%s\n' "$K1" >"$T/plain.644"
chmod 0644 "$T/plain.644"
PAT="mode 0644: others may read it"
refused "a plain 0644 file outside a Secret volume" --auth-key-file "$T/plain.644"
PAT="TSCNI_NO_SUCH_KEY: the environment variable is not set"
refused "an unset --auth-key-env variable" --auth-key-env TSCNI_NO_SUCH_KEY

# The key from the environment.
TSCNI_E2E_KEY=$K1 sup_start --control-url "https://$TC_HTTPS" --auth-key-env TSCNI_E2E_KEY \
	--ca-file "$TC_CA" --cluster-name e2e || tscni_finish
pod_add 2 || tscni_finish
check "pod 2 registered with the key from the environment (tags: $(tags_of 2))" \
	test "$(tags_of 2)" == tag:first
check "the key is not left in /proc/<supervisor>/environ" \
	bash -c '! tr "\0" "\n" <"/proc/$1/environ" | grep -qF -- "$2"' _ "$SUP_PID" "$K1"
# Nor in the environment the zygote was exec'd with, which every worker
# forked from it shows too: the supervisor takes it out before the zygote
# starts.
zyg=$(sup_status_json | jq -r .zygote_pid)
wrk=$(sup_status_json | jq -r '[.pods[] | select(.worker_pid > 0)][0].worker_pid')
for p in "$zyg" "$wrk"; do
	check "the key is not in /proc/$p/environ (the zygote's and pod 2's worker's)" \
		bash -c '[[ -r /proc/$1/environ ]] && ! tr "\0" "\n" <"/proc/$1/environ" |
			grep -qF -- "$2"' _ "$p" "$K1"
done
pod_del 2
check "no key in the supervisor's log" bash -c '! grep -qF -e "$1" -e "$2" "$3"' _ "$K1" "$K2" \
	"$T/sup.log"
tscni_finish
