#!/usr/bin/env bash
# The test command of the README, and what CI runs (.ci/run):
#   1. install the Debian packages (scripts/install-deps.sh)
#   2. build with -Werror and run the unit, netns, e2e, drill, interop and
#      deploy suites (interop: against genuine Tailscale programs where
#      tests/CMakeLists.txt finds them; each such test skips with one line
#      otherwise)
#   3. run the netns suite again with every kernel-feature fallback forced
#   4. build with ASan+UBSan and run the unit and netns suites
#   5. build the libFuzzer targets with clang and run each briefly
# Needs root (TUN, network namespaces). Build trees go under $TSCNI_OUT
# (default ./out). Exits non-zero if any step fails; later steps still run.
set -uo pipefail

case ${1:-} in
-h | --help | help)
	cat <<'EOF2'
usage: scripts/test.sh
  Installs what the tests need (Debian packages), builds with -Werror and runs
  the unit, netns, e2e, drill, interop and deploy suites, the netns suite
  again with every kernel-feature fallback forced, an ASan+UBSan build of the
  unit and netns suites, and each libFuzzer target. Needs root. About 40 minutes on 2
  cores. Environment: TSCNI_OUT (build trees, default ./out), TSCNI_JOBS
  (default 2), TSCNI_FUZZ_SECONDS (per target, default 45).
  One suite by hand: ctest --test-dir out/build -L e2e (labels: unit, netns,
  e2e, drill, interop, deploy, bench).
EOF2
	exit 0
	;;
"") ;;
*)
	echo "test.sh: unexpected argument '$1' (see --help)" >&2
	exit 2
	;;
esac

src=$(cd "$(dirname "$0")/.." && pwd)
out=${TSCNI_OUT:-$src/out}
jobs=${TSCNI_JOBS:-2}
fuzz_seconds=${TSCNI_FUZZ_SECONDS:-45}
failed=()

step() { printf '\n=== %s ===\n' "$*"; }
run() {
	local name=$1
	shift
	"$@" || failed+=("$name")
}

if [ "$(id -u)" -ne 0 ]; then
	echo "test.sh: run as root (TUN devices, network namespaces)" >&2
	exit 1
fi

step "dependencies"
"$src/scripts/install-deps.sh" || exit 1

step "build (-Werror)"
cmake -S "$src" -B "$out/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTSCNI_WERROR=ON \
	-DBUILD_TESTING=ON >/dev/null &&
	cmake --build "$out/build" -j"$jobs" || exit 1

step "unit, netns, e2e, drill, interop, deploy"
run tests ctest --test-dir "$out/build" -L 'unit|netns|e2e|drill|interop|deploy' -j"$jobs" \
	--output-on-failure --timeout 600

step "netns with every kernel-feature fallback forced"
run fallbacks env TSCNI_FORCE_FALLBACK=all ctest --test-dir "$out/build" -L netns \
	-j"$jobs" --output-on-failure

step "ASan+UBSan build: unit and netns"
cmake -S "$src" -B "$out/build-asan" -DCMAKE_BUILD_TYPE=Debug -DTSCNI_WERROR=ON \
	-DTSCNI_SANITIZE=address,undefined -DBUILD_TESTING=ON >/dev/null &&
	cmake --build "$out/build-asan" -j"$jobs" || failed+=(asan-build)
run asan env ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	ctest --test-dir "$out/build-asan" -L 'unit|netns' -j"$jobs" --output-on-failure

step "libFuzzer targets (${fuzz_seconds}s each)"
CC=clang cmake -S "$src" -B "$out/build-fuzz" -DCMAKE_BUILD_TYPE=Debug -DTSCNI_FUZZ=ON \
	-DBUILD_TESTING=ON -DFUZZ_SECONDS="$fuzz_seconds" >/dev/null &&
	cmake --build "$out/build-fuzz" -j"$jobs" || failed+=(fuzz-build)
run fuzz ctest --test-dir "$out/build-fuzz" -L fuzz -j"$jobs" --output-on-failure

if [ ${#failed[@]} -gt 0 ]; then
	echo "FAILED: ${failed[*]}"
	exit 1
fi
echo "all test steps passed"
