#!/bin/bash
# deploy.install: `cmake --install` of the build tree into a scratch DESTDIR,
# prefix /usr/local:
#   - exactly three files: the plugin in TSCNI_CNI_BIN_DIR (default
#     /opt/cni/bin, where CNI runtimes look), the supervisor and the worker in
#     <prefix>/bin; each a regular file, mode 0755;
#   - the installed plugin answers CNI VERSION, the installed supervisor its
#     --version;
#   - the installed supervisor finds the installed worker without --worker
#     (its option checks get past the worker to the next check), and names
#     the missing worker once it is removed;
#   - a relative TSCNI_CNI_BIN_DIR is refused at configure time, naming it.
# No root needed; nothing outside the scratch directory is written.
set -u
BUILD=${TSCNI_BUILD_DIR:?run through ctest}
SRC=${TSCNI_SOURCE_DIR:?run through ctest}
T=$(mktemp -d /tmp/tscni-install.XXXXXX)
trap 'rm -rf "$T"' EXIT
passed=0
failed=0
check()
{
	local desc=$1
	shift
	if "$@"; then
		passed=$((passed + 1))
		echo "ok - $desc"
	else
		failed=$((failed + 1))
		echo "FAIL - $desc"
	fi
}

cnibin=$(sed -n 's/^TSCNI_CNI_BIN_DIR:PATH=//p' "$BUILD/CMakeCache.txt")
check "TSCNI_CNI_BIN_DIR is in the cache (${cnibin:-none})" test -n "$cnibin"
out=$(DESTDIR=$T/root cmake --install "$BUILD" --prefix /usr/local 2>&1)
check "cmake --install succeeds" test $? -eq 0 || echo "$out" | sed 's/^/#   /'

want=$(printf '%s\n' "$cnibin/tailscale-cni" /usr/local/bin/tailscale-cni-supervisor \
	/usr/local/bin/tailscale-cni-worker | sort)
got=$(cd "$T/root" && find . -type f -o -type l | sed 's/^\.//' | sort)
check "exactly the plugin, supervisor and worker are installed (got: $(echo $got))" \
	test "$got" == "$want"
for f in $want; do
	check "$f is a regular file, mode 0755 ($(stat -c %F,%a "$T/root$f" 2>&1))" \
		test "$(stat -c %F,%a "$T/root$f" 2>/dev/null)" == "regular file,755"
done

v=$(echo '{}' | env -i CNI_COMMAND=VERSION "$T/root$cnibin/tailscale-cni" 2>&1)
check "the installed plugin answers VERSION ($v)" grep -q '"supportedVersions"' <<<"$v"
SUP=$T/root/usr/local/bin/tailscale-cni-supervisor
v=$("$SUP" --version 2>&1)
check "the installed supervisor runs ($v)" grep -q '^tailscale-cni-supervisor ' <<<"$v"

# The worker is resolved before --run-dir is checked (supervisor/options.c
# check_args): a relative --run-dir stops the start right after it, and the
# message says which of the two failed. Nothing is started either way.
probe()
{
	env -u NODE_NAME "$SUP" run --state-dir "$T/state" --socket "$T/run/cni.sock" \
		--run-dir relative 2>&1
}
out=$(probe)
check "the installed supervisor finds the installed worker without --worker ($out)" \
	grep -q '^--run-dir: an absolute path' <<<"$out"
mv "$T/root/usr/local/bin/tailscale-cni-worker" "$T/worker.moved"
if [[ -x /usr/local/bin/tailscale-cni-worker ]]; then
	echo "# /usr/local/bin/tailscale-cni-worker exists on this machine: the supervisor's"
	echo "# last fallback would find it, so the missing-worker case is not checked"
else
	out=$(probe)
	check "without it, the supervisor names the missing worker ($out)" \
		grep -q '^no tailscale-cni-worker beside this binary' <<<"$out"
fi

# (-DVAR=relative on a PATH variable is made absolute by cmake itself; a
# STRING-typed value reaches the check as given.)
out=$(cmake -S "$SRC" -B "$T/cfg" -DBUILD_TESTING=OFF -DTSCNI_CNI_BIN_DIR:STRING=lib/cni 2>&1)
rc=$?
check "a relative TSCNI_CNI_BIN_DIR is refused (exit $rc)" test $rc -ne 0
check "the refusal names it" grep -q "TSCNI_CNI_BIN_DIR must be an absolute path, not 'lib/cni'" \
	<<<"$out"

echo "$passed passed, $failed failed"
[[ $failed -eq 0 && $passed -gt 0 ]]
