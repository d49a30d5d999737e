#!/bin/bash
# deploy.image: `podman build -f deploy/Containerfile .` from the repository
# root, when both base images (debian:12, debian:12-slim) are already in
# podman's local storage: the test never pulls (--pull=never), and skips with
# one line (exit 77) otherwise. The apt-get steps inside still need Debian's
# mirror. Checks the image: the three programs in /usr/local/bin with every
# library found, the supervisor's --version, the CA file the ConfigMap names
# (at most 48 KiB, PEM), no compiler, and prints its size. The image is
# removed by its name at the end.
set -u
SRC=${TSCNI_SOURCE_DIR:?run through ctest}
if ! command -v podman >/dev/null; then
	echo "SKIP: podman is not installed"
	exit 77
fi
for base in docker.io/library/debian:12 docker.io/library/debian:12-slim; do
	if ! podman image exists "$base"; then
		echo "SKIP: base image $base is not in podman's local storage (this test never pulls)"
		exit 77
	fi
done
IMG=localhost/tscni-image-test:$$
T=$(mktemp -d /tmp/tscni-image.XXXXXX)
trap 'podman rmi -f "$IMG" >/dev/null 2>&1; rm -rf "$T"' EXIT
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

t0=$SECONDS
(cd "$SRC" && podman build --pull=never --layers=false -f deploy/Containerfile -t "$IMG" .) \
	>"$T/build.log" 2>&1
rc=$?
check "podman build -f deploy/Containerfile . ($((SECONDS - t0)) s)" test $rc -eq 0
if [[ $rc -ne 0 ]]; then
	tail -n 30 "$T/build.log" | sed 's/^/#   /'
	echo "$passed passed, $failed failed"
	exit 1
fi
# Small limits: podman's defaults (and --ulimit host) may exceed the hard
# limits this shell runs under, and runc then cannot start the container.
LIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
run() { podman run --rm "${LIMITS[@]}" --entrypoint /bin/sh "$IMG" -c "$1" 2>&1; }
out=$(run 'ls /usr/local/bin')
check "/usr/local/bin holds the three programs ($(echo $out))" \
	test "$(echo $out)" == "tailscale-cni tailscale-cni-supervisor tailscale-cni-worker"
out=$(run 'ldd /usr/local/bin/* | grep -c "not found"')
check "every library they link is in the image" test "$out" == 0
out=$(podman run --rm "${LIMITS[@]}" "$IMG" --version 2>&1)
check "the entrypoint is the supervisor ($out)" grep -q '^tailscale-cni-supervisor ' <<<"$out"
ca=$(sed -n 's/^ *ca-file: "\(.*\)"/\1/p' "$SRC/deploy/configmap.yaml")
out=$(run "wc -c <'$ca' && grep -c 'BEGIN CERTIFICATE' '$ca'")
check "the ConfigMap's ca-file $ca: PEM of at most 48 KiB ($(echo $out))" \
	test "$(sed -n 1p <<<"$out")" -le 49152 -a "$(sed -n 2p <<<"$out")" -ge 2
out=$(run 'test -x /bin/sleep && echo yes')
check "/bin/sleep is there (deploy/uninstall's waiting container)" test "$out" == yes
out=$(run 'command -v cc gcc cmake; true')
check "no compiler or cmake in the runtime image" test -z "$out"
echo "# image size: $(podman image inspect -f '{{.Size}}' "$IMG") bytes"
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
