#!/bin/bash
# e2e: the CA certificates workers trust (issue 13 item 1). testcontrol
# serves https with its own test CA (ca=PATH in its listening line).
#   a. --ca-file: a copy of the system bundle with the test CA appended
#      (> 200 KB, more than one worker message): a pod registers over https
#      (the ADD returns its addresses);
#   b. no --ca-file: the system bundle (libcurl's default) is trusted, the
#      test CA is not: the ADD returns at syncTimeout without addresses and
#      the pod's control_reason is libcurl's certificate error ("SSL
#      certificate problem: self-signed certificate in certificate chain");
#   c. --ca-file-add with the test CA on top of the system bundle: a pod
#      registers;
#   d. bad files refused, each with its exact message: missing, empty, not
#      PEM, over 1 MiB, and a bundle that the addition takes over 1 MiB.
source "$(dirname "$0")/../lib/common.sh"

tscni_init "cabundle"
source "$(dirname "$0")/../lib/tailnet.sh"

SYS=/etc/ssl/certs/ca-certificates.crt
if [[ ! -f $SYS ]]; then
	fail "no system CA bundle at $SYS (Debian's ca-certificates)"
	tscni_finish
fi

node_ns_new || tscni_finish
tc_start || tscni_finish
tc_authkey '{"reusable": true, "ephemeral": true, "tags": ["tag:e2e"]}' || tscni_finish
URL=https://$TC_HTTPS

# --- a: a bundle-sized --ca-file -------------------------------------------
cat "$SYS" "$TC_CA" >"$T/bundle.pem"
sz=$(stat -c %s "$T/bundle.pem")
check "the bundle is over 200 KB ($sz bytes)" test "$sz" -gt 200000
sup_start --control-url "$URL" --auth-key-file "$T/authkey" --ca-file "$T/bundle.pem" \
	--cluster-name e2e || tscni_finish
check "the log names the bundle and its size" \
	grep -q "workers trust the CA certificates of $T/bundle.pem ($sz bytes)" "$T/sup.log"
pod_add 0 || tscni_finish
wait_ready 0
check "pod 0: control connected over https" jqq --arg u "uid-$$-0" \
	'.pods[] | select(.pod_uid == $u) | .control_state == "connected"' <<<"$(sup_status_json)"
# The zygote parsed the bundle once (worker/tls/tls_store.h): the worker maps
# the zygote's sealed copy and holds no bundle of its own on its heap.
wpid=$(pod_stat "uid-$$-0" worker_pid)
check "the worker inherits the zygote's parsed bundle (memfd:tscni-ca mapped)" \
	grep -q "memfd:tscni-ca" "/proc/${wpid:-0}/maps"
check "the zygote parsed the bundle without a warning" \
	bash -c '! grep -q "CA bundle on fd" "$1"' _ "$T/sup.log"
pod_del 0
sup_stop

# --- b: the default trust does not include the test CA ------------------------
sup_start --control-url "$URL" --auth-key-file "$T/authkey" --cluster-name e2e || tscni_finish
check "the log names the system bundle" \
	grep -q "workers trust the CA certificates of $SYS (" "$T/sup.log"
ns_new p1 || tscni_finish
POD_NS[1]=$NS_NAME
c=$(mkconf 1.0.0 '.syncTimeout = "3s"')
CID="pod-$$-1" NETNS=$(ns_path "$NS_NAME") cni "$c" CNI_COMMAND=ADD \
	"CNI_ARGS=K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=web-1;K8S_POD_UID=uid-$$-1"
expect_ok "ADD with an untrusted control certificate returns at syncTimeout"
check "  ... without a 100.x address" bash -c '! jq -e "[.ips[]?.address | select(startswith(\"100.\"))] | length > 0" <<<"$1" >/dev/null' _ "$OUT"
reason=""
for ((k = 0; k < 100; k++)); do
	reason=$(sup_status_json | jq -r --arg u "uid-$$-1" '.pods[] | select(.pod_uid == $u) | .control_reason')
	[[ $reason == *"SSL certificate problem"* ]] && break
	sleep 0.1
done
# libcurl's words (OpenSSL's): testcontrol sends its CA in the chain.
check "status names the certificate problem: $reason" grep -qE \
	"SSL certificate problem: (self-signed certificate in certificate chain|unable to get local issuer certificate)" \
	<<<"$reason"
pod_del 1
sup_stop

# --- c: --ca-file-add on top of the system bundle -----------------------------
sup_start --control-url "$URL" --auth-key-file "$T/authkey" --ca-file-add "$TC_CA" \
	--cluster-name e2e || tscni_finish
check "the log names the system bundle and the addition" \
	grep -q "workers trust the CA certificates of $SYS and $TC_CA (" "$T/sup.log"
pod_add 2 || tscni_finish
pod_del 2
sup_stop

# --- d: bad files --------------------------------------------------------------
# refused MSG ARGS...: the supervisor refuses to start with ARGS and prints
# MSG (fixed string).
refused()
{
	local msg=$1 out rc
	shift
	out=$(timeout 20 "$SUP" run --state-dir "$T/state-refuse" --socket "$T/run/refuse.sock" \
		--node-name "e2e-$$" --control-url "$URL" "$@" 2>&1 </dev/null)
	rc=$?
	check "refused (exit $rc): $msg" test "$rc" -ne 0
	check "  ... says so: $(grep -m1 -e 'ca-file' -e 'CA bundle' <<<"$out" | cut -c1-200)" \
		grep -qF -- "$msg" <<<"$out"
}
: >"$T/empty.pem"
printf 'hello, not a certificate\n' >"$T/text.pem"
{
	echo "-----BEGIN CERTIFICATE-----"
	echo "bm90IGEgY2VydGlmaWNhdGU="
	echo "-----END CERTIFICATE-----"
} >"$T/notder.pem"
head -c 1048577 /dev/zero | tr '\0' 'A' >"$T/big.pem"
head -c 900000 /dev/zero | tr '\0' '#' >"$T/nearly.pem"
cat "$TC_CA" >>"$T/nearly.pem"
refused "--ca-file $T/missing.pem: cannot open: No such file or directory" --ca-file "$T/missing.pem"
refused "--ca-file $T/empty.pem: empty" --ca-file "$T/empty.pem"
refused "--ca-file $T/text.pem: not PEM: no \"-----BEGIN CERTIFICATE-----\" block" \
	--ca-file "$T/text.pem"
refused "--ca-file $T/notder.pem: a certificate is not one DER SEQUENCE" --ca-file "$T/notder.pem"
refused "--ca-file $T/big.pem: 1048577 bytes, over the limit of 1048576 bytes (1 MiB)" \
	--ca-file "$T/big.pem"
nl=$([[ $(tail -c1 "$SYS" | od -An -c | tr -d ' ') == '\n' ]] && echo 0 || echo 1)
refused "--ca-file-add $T/nearly.pem: $(($(stat -c %s "$SYS") + nl + $(stat -c %s "$T/nearly.pem"))) bytes with the certificates before it, over the limit of 1048576 bytes (1 MiB)" \
	--ca-file-add "$T/nearly.pem"
refused "--ca-file-add $T/missing.pem: cannot open: No such file or directory" \
	--ca-file-add "$T/missing.pem"
tscni_finish
