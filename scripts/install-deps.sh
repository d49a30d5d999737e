#!/usr/bin/env bash
# Installs the Debian 12 packages tailscale-cni needs. Idempotent, and quiet
# when everything is already there.
#   scripts/install-deps.sh          everything: build, run, every test suite
#   scripts/install-deps.sh --demo   only what scripts/demo.sh needs
set -euo pipefail

demo=(
	# build
	build-essential cmake pkg-config protobuf-c-compiler
	# libraries
	libuv1-dev libnl-3-dev libnl-route-3-dev libsodium-dev libb2-dev
	libcurl4-openssl-dev libnghttp2-dev libjansson-dev libzstd-dev libprotobuf-c-dev
	libseccomp-dev libcap-ng-dev
	# tests/testcontrol, the demo's local tailnet: its TLS server
	libssl-dev
	# the demo's node and pods: netns, the primary CNI plugins, ping, JSON
	iproute2 containernetworking-plugins busybox-static jq curl
)
tests=(
	clang libcmocka-dev
	# sanitizer and fuzzer runtimes, real peers, runtimes, tools
	libclang-rt-14-dev valgrind util-linux procps
	wireguard-go wireguard-tools iperf3 podman runc nftables
	# tests/deploy: the manifest check (standard library only)
	python3
)

case ${1:-} in
"")
	packages=("${demo[@]}" "${tests[@]}")
	# tests/deploy: kubectl renders and decodes deploy/ offline. Debian's
	# kubernetes-client provides it, unless a kubectl from another package
	# is there already (both ship /usr/bin/kubectl).
	command -v kubectl >/dev/null || packages+=(kubernetes-client)
	;;
--demo) packages=("${demo[@]}") ;;
-h | --help | help)
	echo "usage: scripts/install-deps.sh [--demo]  (--demo: only what scripts/demo.sh needs)"
	exit 0
	;;
*)
	echo "install-deps: unexpected argument '$1' (see --help)" >&2
	exit 2
	;;
esac

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: need root to install: ${missing[*]}" >&2
	exit 1
fi
echo "install-deps: installing ${#missing[@]} packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
