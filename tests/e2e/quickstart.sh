#!/usr/bin/env bash
# The README's quick start, run as written on a clean clone: the clone line
# (its URL replaced by this checkout: CI has no network to publish from), then
# the demo command, which must print three pods' Tailscale addresses and every
# ping answered; the test command must be the one .ci/run runs (CI runs it
# itself: running it here would run the suites inside the suites). Then the
# demo's own command line: its argument errors, --keep and --down.
source "$(dirname "$0")/../lib/common.sh"
tscni_init quickstart

src=$TSCNI_SOURCE_DIR
readme=$src/README.md
if ! git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
	echo "SKIP: $src is not a git checkout, so there is nothing to clone"
	exit 77
fi
if [[ -f /run/tscni-demo.kept ]]; then
	echo "SKIP: a demo started with --keep is still up (/run/tscni-demo.kept)"
	exit 77
fi

# The first ```sh block after "## Quick start".
block=$(awk '/^## Quick start/{q=1} q&&/^```sh/{b=1;next} b&&/^```/{exit} b{print}' "$readme")
mapfile -t lines <<<"$block"
check "the quick start is three lines (clone and cd, demo, tests): got ${#lines[@]}" \
	test "${#lines[@]}" -eq 3
clone_line=${lines[0]:-}
demo_line=${lines[1]:-}
test_line=${lines[2]:-}
url=$(grep -oE 'git clone [^ ]+' <<<"$clone_line" | awk '{print $3}')
dir=$(grep -oE 'cd [^ ;&]+$' <<<"$clone_line" | awk '{print $2}')
check "the first line clones ($url) and enters the clone ($dir)" test -n "$url" -a -n "$dir"
check "the demo line runs scripts/demo.sh: '$demo_line'" test "$demo_line" = scripts/demo.sh
check "the test line runs scripts/test.sh: '$test_line'" test "$test_line" = scripts/test.sh
check ".ci/run runs the README's test command" grep -qx "${test_line} || status=1" "$src/.ci/run"

# As a user's shell runs them, in an empty directory; the URL is this checkout
# (the apt-get part stays: git is installed already, so it is quick).
work=$T/user
mkdir "$work"
run_clone=${clone_line//"$url"/"$src"}
if (cd "$work" && bash -ec "$run_clone && pwd" >"$T/clone.out" 2>&1); then
	pass "the clone line ran"
else
	fail "the clone line failed: $(tail -n 5 "$T/clone.out")"
fi
clone=$work/$dir
check "the clone is a checkout of the same commit" \
	test "$(git -C "$clone" rev-parse HEAD 2>/dev/null)" = "$(git -C "$src" rev-parse HEAD)"

start=$(date +%s)
(cd "$clone" && env -u TSCNI_OUT bash -c "$demo_line") >"$T/demo.out" 2>&1
rc=$?
echo "# the demo took $(($(date +%s) - start)) s (exit $rc); its output:"
sed 's/^/#   /' "$T/demo.out"
check "the demo exits 0" test $rc -eq 0
pods=$(grep -cE '^pod[0-9]+ +tscni-demo-pod[0-9]+-[0-9]+ +100\.[0-9.]+ +fd7a:115c:a1e0:[0-9a-f:]+ +4->4$' \
	"$T/demo.out")
check "the demo's table lists three pods with 100.x and fd7a: and 4 of 4 pings each (got $pods)" \
	test "$pods" -eq 3
check "the demo reports 12 of 12 pings" grep -q 'pings: 12 of 12 answered' "$T/demo.out"
check "each step is a progress line with its time" \
	test "$(grep -cE '^\[ *[0-9]+\.[0-9]s\] ' "$T/demo.out")" -ge 9
check "the demo deleted its pods" grep -q 'pods deleted$' "$T/demo.out"
id=$(grep -oE 'netns tscni-demo-node-[0-9]+' "$T/demo.out" | head -1 | grep -oE '[0-9]+$')
check "the demo left no netns of its run ($id)" \
	bash -c "[[ -n '$id' ]] && ! ip netns list | grep -qE '^tscni-demo-.*-$id( |\$)'"

# The command line: errors name the argument.
demo=$clone/scripts/demo.sh
expect_msg() { # expect_msg RC MESSAGE ARGS...: exact stderr and exit code
	local want_rc=$1 want=$2 got rc
	shift 2
	got=$("$demo" "$@" 2>&1 >/dev/null)
	rc=$?
	if [[ $rc -eq $want_rc && $got == "$want" ]]; then
		pass "demo.sh $* -> exit $rc: $got"
	else
		fail "demo.sh $*: exit $rc (want $want_rc), said '$got' (want '$want')"
	fi
}
expect_msg 2 "demo.sh: --pods needs a number of pods (1 to 20)" --pods
expect_msg 2 "demo.sh: --pods 'x' is not a number of pods from 1 to 20" --pods x
expect_msg 2 "demo.sh: --pods '0' is not a number of pods from 1 to 20" --pods 0
expect_msg 2 "demo.sh: unknown argument '--frob' (see --help)" --frob
expect_msg 1 "demo.sh --down: nothing to tear down (/run/tscni-demo.kept not found: no --keep run is left)" --down
check "demo.sh --help prints the usage" bash -c "'$demo' --help | grep -q '^usage: scripts/demo.sh'"
check "demo.sh -h prints the usage" bash -c "'$demo' -h | grep -q '^usage: scripts/demo.sh'"

# --keep leaves it up and says how to look and how to tear down; --down does.
(cd "$clone" && env -u TSCNI_OUT scripts/demo.sh --keep --pods 2) >"$T/keep.out" 2>&1
rc=$?
check "demo.sh --keep --pods 2 exits 0 (output: $T/keep.out)" test $rc -eq 0
check "--keep prints the teardown command" grep -q '^  scripts/demo.sh --down$' "$T/keep.out"
status_cmd=$(grep -m1 -E 'tailscale-cni-supervisor status --socket ' "$T/keep.out" | sed 's/^ *//')
if [[ -n $status_cmd ]] && eval "$status_cmd" >"$T/keep.status" 2>&1 &&
	grep -q '^health: ' "$T/keep.status"; then
	pass "the printed status command works"
else
	fail "the printed status command ('$status_cmd') failed: $(head -3 "$T/keep.status" 2>/dev/null)"
fi
ping_cmd=$(grep -m1 -E 'busybox ping -c 3 ' "$T/keep.out" | sed 's/^ *//')
check "the printed ping command works ($ping_cmd)" bash -c "[[ -n '$ping_cmd' ]] && $ping_cmd >/dev/null"
kept_sup=$(. /run/tscni-demo.kept 2>/dev/null && echo "$sup_pid")
check "the kept run is recorded" test -n "$kept_sup"
(cd "$clone" && scripts/demo.sh --down) >"$T/down.out" 2>&1
check "demo.sh --down exits 0: $(tail -1 "$T/down.out")" test $? -eq 0
check "--down stopped the supervisor ($kept_sup)" bash -c "[[ -n '$kept_sup' ]] && ! kill -0 '$kept_sup' 2>/dev/null"
id=$(grep -oE 'netns tscni-demo-node-[0-9]+' "$T/keep.out" | head -1 | grep -oE '[0-9]+$')
check "--down removed every netns of the kept run ($id)" \
	bash -c "[[ -n '$id' ]] && ! ip netns list | grep -qE '^tscni-demo-.*-$id( |\$)'"
check "--down removed its record" test ! -e /run/tscni-demo.kept
check "--down said what it tore down" grep -q 'torn down: 2 pods' "$T/down.out"
rm -rf "$clone/out"
tscni_finish
