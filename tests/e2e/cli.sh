#!/bin/bash
# e2e: the command lines as a person meets them. Each message is checked
# exactly: a wrong option names itself and points at --help (no usage dump),
# -h and `help` give the short usage, --help the options without the
# test-only ones, `status --json` answers in JSON even when no supervisor
# runs, the supervisor refuses to start without the capabilities it needs
# and names the missing ones, the plugin names an unknown CNI_COMMAND once,
# scripts/test.sh has a --help.
source "$(dirname "$0")/../lib/common.sh"

tscni_init "cli"
REPO=$(cd "$(dirname "$0")/../.." && pwd)

# run_cmd CMD...: RC, OUT (stdout), ERR (stderr).
run_cmd()
{
	OUT=$("$@" 2>"$T/err")
	RC=$?
	ERR=$(cat "$T/err")
}

# exactly DESC WANT GOT: GOT is WANT, byte for byte.
exactly()
{
	check "$1: '$3'" test "$3" == "$2"
}

run_cmd "$SUP" --bogus
check "supervisor --bogus: exit 1 ($RC)" test "$RC" -eq 1
exactly "supervisor --bogus: one line naming it" \
	"tailscale-cni-supervisor: unknown option '--bogus' (see --help)" "$ERR"
run_cmd "$SUP" run --state-dir
exactly "supervisor --state-dir without a value" \
	"tailscale-cni-supervisor: option '--state-dir' needs a value (see --help)" "$ERR"
run_cmd "$SUP" -x
exactly "supervisor -x" "tailscale-cni-supervisor: unknown option '-x' (see --help)" "$ERR"
run_cmd "$SUP" frob
exactly "supervisor frob" "tailscale-cni-supervisor: unexpected argument 'frob' (commands: run, \
status, roll-workers, install, uninstall, help; see --help)" "$ERR"

for h in -h help; do
	run_cmd "$SUP" $h
	check "supervisor $h: exit 0 ($RC), nothing on stderr" test "$RC" -eq 0 -a -z "$ERR"
	check "supervisor $h: the usage lines and where the options are" \
		bash -c '[[ $(head -1 <<<"$1") == "usage: tailscale-cni-supervisor [run] [options]" &&
			$(tail -1 <<<"$1") == "(--help lists the options)" ]]' _ "$OUT"
	check "supervisor $h: short ($(wc -l <<<"$OUT") lines)" test "$(wc -l <<<"$OUT")" -le 6
done
run_cmd "$SUP" --help
check "supervisor --help: exit 0, the options listed" \
	bash -c '[[ $1 -eq 0 ]] && grep -q -- "--state-dir DIR" <<<"$2" &&
		grep -q -- "--auth-key-env NAME" <<<"$2"' _ "$RC" "$OUT"
check "supervisor --help: no test-only option in it" bash -c '! grep -q -- "--test-" <<<"$1"' _ "$OUT"
run_cmd "$SUP" --version
check "supervisor --version: 'tailscale-cni-supervisor <version>' ($OUT)" \
	bash -c '[[ $1 =~ ^tailscale-cni-supervisor\ [0-9]+\.[0-9]+\.[0-9]+$ ]]' _ "$OUT"

# status with no supervisor behind the socket.
run_cmd "$SUP" status --json --socket "$T/none.sock"
check "status --json, no supervisor: exit 1 ($RC)" test "$RC" -eq 1
exactly "status --json, no supervisor: JSON on stdout" \
	"tailscale-cni-supervisor is not reachable at $T/none.sock: No such file or directory" \
	"$(jq -r .error <<<"$OUT" 2>/dev/null)"
exactly "status --json, no supervisor: nothing on stderr" "" "$ERR"
run_cmd "$SUP" status --socket "$T/none.sock"
exactly "status, no supervisor: the reason on stderr" \
	"tailscale-cni-supervisor is not reachable at $T/none.sock: No such file or directory" "$ERR"
run_cmd "$SUP" status --json --peers --socket "$T/none.sock"
exactly "status --json --peers, no supervisor: JSON on stdout" \
	"tailscale-cni-supervisor is not reachable at $T/none.sock: No such file or directory" \
	"$(jq -r .error <<<"$OUT" 2>/dev/null)"
run_cmd "$SUP" status --help
exactly "status --help: the usage line" \
	"usage: tailscale-cni-supervisor status [--json] [--peers] [--socket PATH]" "$(head -n 1 <<<"$OUT")"
check "status --help: --peers explained" grep -q -- "^  --peers  also one line per peer" <<<"$OUT"
run_cmd "$SUP" status --bogus
exactly "status --bogus" "tailscale-cni-supervisor status: unknown option '--bogus' (see --help)" \
	"$ERR"
run_cmd "$SUP" roll-workers --socket
exactly "roll-workers --socket without a value" \
	"tailscale-cni-supervisor roll-workers: option '--socket' needs a value (see --help)" "$ERR"

run_cmd "$SUP" status --version
exactly "status --version" "tailscale-cni-supervisor $(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$TSCNI_BUILD_DIR/CMakeCache.txt")" "$OUT"
run_cmd "$SUP" roll-workers --version
exactly "roll-workers --version" "tailscale-cni-supervisor $(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$TSCNI_BUILD_DIR/CMakeCache.txt")" "$OUT"

# The worker binary, as a person might run it.
WORKER=$TSCNI_BUILD_DIR/worker/tailscale-cni-worker
VER=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$TSCNI_BUILD_DIR/CMakeCache.txt")
run_cmd "$WORKER" --version
exactly "worker --version" "tailscale-cni-worker $VER" "$OUT"
run_cmd "$WORKER" -h
check "worker -h: usage on stdout, exit 0 ($RC)" bash -c "[[ $RC -eq 0 && '${OUT:0:27}' == 'usage: tailscale-cni-worker' ]]"
run_cmd "$WORKER" --frob
exactly "worker --frob" "tailscale-cni-worker: unknown option '--frob' (see --help)" "$ERR"
run_cmd "$WORKER"
exactly "worker without --zygote" \
	"tailscale-cni-worker: only the supervisor starts me, as --zygote (see --help)" "$ERR"
run_cmd "$WORKER" --zygote --max-forks
exactly "worker --max-forks without a value" \
	"tailscale-cni-worker: --max-forks needs a value (see --help)" "$ERR"

# Privileges: as nobody, and as root without CAP_KILL.
mkdir -m 0777 "$T/np"
run_cmd setpriv --reuid=65534 --regid=65534 --clear-groups "$SUP" run --state-dir "$T/np/state" \
	--socket "$T/np/cni.sock"
check "as nobody: refused (exit $RC)" test "$RC" -eq 1
check "as nobody: the missing capabilities named: ${ERR:0:200}" grep -qF \
	"refusing to start: missing CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_SETUID, CAP_SETGID, CAP_KILL (" \
	<<<"$ERR"
check "as nobody: no socket made" test ! -e "$T/np/cni.sock"
run_cmd capsh --drop=cap_kill -- -c "exec \"\$0\" run --state-dir \"\$1\" --socket \"\$2\"" \
	"$SUP" "$T/np/state2" "$T/np/cni2.sock"
check "root without CAP_KILL: refused naming it: ${ERR:0:120}" grep -qF \
	"refusing to start: missing CAP_KILL (" <<<"$ERR"

# The plugin: an unknown CNI_COMMAND named once.
OUT=$(CNI_COMMAND=FROB "$PLUGIN" <<<'{"cniVersion":"1.0.0","name":"n","type":"tailscale-cni"}' \
	2>"$T/err")
RC=$?
check "plugin CNI_COMMAND=FROB: exit 1 ($RC)" test "$RC" -eq 1
exactly "plugin CNI_COMMAND=FROB: the details" \
	"FROB is not one of ADD, DEL, CHECK, GC, STATUS or VERSION (in upper case)" \
	"$(jq -r .details <<<"$OUT")"
check "plugin CNI_COMMAND=FROB: said once on stderr: $(cat "$T/err")" \
	bash -c '[[ $(grep -o "unknown CNI_COMMAND" "$1" | wc -l) -eq 1 ]]' _ "$T/err"

# scripts/test.sh.
run_cmd bash "$REPO/scripts/test.sh" --help
check "scripts/test.sh --help: exit 0, a usage" \
	bash -c '[[ $1 -eq 0 && $(head -1 <<<"$2") == "usage: scripts/test.sh" ]]' _ "$RC" "$OUT"
run_cmd bash "$REPO/scripts/test.sh" --frob
check "scripts/test.sh --frob: exit 2 ($RC)" test "$RC" -eq 2
exactly "scripts/test.sh --frob" "test.sh: unexpected argument '--frob' (see --help)" "$ERR"
tscni_finish
