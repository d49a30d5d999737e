#!/usr/bin/env bash
# Installs the Debian 12 packages tailscale-cni needs to build, test and run
# its local setup. Idempotent, and quiet when everything is already there.
set -euo pipefail

packages=(
	# build
	build-essential cmake pkg-config clang protobuf-c-compiler
	# libraries
	libuv1-dev libnl-3-dev libnl-route-3-dev libsodium-dev libb2-dev
	libcurl4-openssl-dev libnghttp2-dev libjansson-dev libzstd-dev libprotobuf-c-dev
	libseccomp-dev libcap-ng-dev libcmocka-dev
	# tests/testcontrol only: its TLS server (libcurl already depends on it)
	libssl-dev
	# tests: sanitizer and fuzzer runtimes, real peers, runtimes, tools
	libclang-rt-14-dev valgrind
	iproute2 util-linux procps jq curl
	wireguard-go wireguard-tools iperf3 containernetworking-plugins
	podman runc busybox-static nftables
)

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
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
