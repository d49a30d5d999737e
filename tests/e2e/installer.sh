#!/bin/bash
# e2e: `tailscale-cni-supervisor install | uninstall` as the DaemonSet's init
# container runs it, on temporary copies of a node's directories, with the
# configurations real primaries install (tests/vectors/conflists/):
#
#   $T/src/{tailscale-cni,tailscale-cni-worker}   what the image ships
#        │ install
#        ├──> $T/bin/tailscale-cni                  (--cni-bin-dir)
#        ├──> $T/worker/{bin,lib}/...               (--worker-dir: wrapper, elf, libs, loader)
#        └──> $T/conf*/<primary>  + our entry       (--cni-conf-dir, one per case)
#
# Checked: binaries identical and executable, the installed plugin answers
# VERSION, the worker wrapper starts; a primary that appears later is waited
# for; a second run writes nothing; --watch re-adds our entry after the
# primary rewrites its file, and the plugin after it is deleted, and
# SIGTERM uninstalls nothing; a single-plugin .conf is converted and put
# back; the drop-in; uninstall removes exactly ours; broken JSON refused
# with its bytes unchanged; the exact messages of wrong command lines.
source "$(dirname "$0")/../lib/common.sh"

tscni_init "installer"
V=$TSCNI_SOURCE_DIR/tests/vectors/conflists
SRC=$T/src
BIN=$T/bin
WD=$T/worker
mkdir -p "$SRC"
cp "$PLUGIN" "$TSCNI_BUILD_DIR/worker/tailscale-cni-worker" "$SRC/"

# inst CONF_DIR ARGS...: the subcommand with this test's directories;
# RC, ERR (stderr).
inst()
{
	local conf=$1
	shift
	"$SUP" install --cni-bin-dir "$BIN" --cni-conf-dir "$conf" --worker-dir "$WD" \
		--source-dir "$SRC" "$@" 2>"$T/err"
	RC=$?
	ERR=$(cat "$T/err")
}

uninst()
{
	local conf=$1
	shift
	"$SUP" uninstall --cni-bin-dir "$BIN" --cni-conf-dir "$conf" --worker-dir "$WD" "$@" \
		2>"$T/err"
	RC=$?
	ERR=$(cat "$T/err")
}

# ours FILE: how many tailscale-cni entries FILE's plugin list holds.
ours()
{
	jq '[.plugins[] | select(.type == "tailscale-cni")] | length' "$1" 2>/dev/null
}

# same_but_ours ORIG FILE: FILE is ORIG with our entry appended: the same
# top-level keys in the same order, the same values, the same plugins
# before ours.
same_but_ours()
{
	jqf --slurpfile o "$1" '
		(keys_unsorted == ($o[0] | keys_unsorted)) and
		(del(.plugins) == ($o[0] | del(.plugins))) and
		(.plugins[:-1] == $o[0].plugins) and
		(.plugins[-1] == {"type": "tailscale-cni"})' "$2" >/dev/null
}

# jqf ARGS... FILE: jq -e on a file, quiet.
jqf()
{
	jq -e "$@" >/dev/null
}

# wait_for SECONDS CMD...: until CMD succeeds, at most SECONDS.
wait_for()
{
	local i n=$(($1 * 10))
	shift
	for ((i = 0; i < n; i++)); do
		"$@" && return 0
		sleep 0.1
	done
	return 1
}

# put FILE DEST: an atomic replace, as a well-behaved primary does it.
put()
{
	cp "$1" "$(dirname "$2")/.put.$$" && mv -f "$(dirname "$2")/.put.$$" "$2"
}

exactly()
{
	check "$1: '$3'" test "$3" == "$2"
}

# --- wrong command lines: one line naming the flag, pointing at --help.
inst "$T/none" --bogus
exactly "install --bogus" "tailscale-cni-supervisor install: unknown option '--bogus' (see --help)" \
	"$ERR"
check "install --bogus: exit 1" test "$RC" -eq 1
inst "$T/none" --mode frob
exactly "install --mode frob" \
	"tailscale-cni-supervisor install: --mode: 'frob' is not auto, drop-in or conflist" "$ERR"
inst "$T/none" --wait
exactly "install --wait without a value" \
	"tailscale-cni-supervisor install: option '--wait' needs a value (see --help)" "$ERR"
inst "$T/none" --wait -1
exactly "install --wait -1" \
	"tailscale-cni-supervisor install: --wait: '-1' is not a number of seconds from 0 (forever) to 31536000" \
	"$ERR"
uninst "$T/none" --watch
exactly "uninstall --watch" \
	"tailscale-cni-supervisor uninstall: unknown option '--watch' (see --help)" "$ERR"
VER=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$TSCNI_BUILD_DIR/CMakeCache.txt")
exactly "install --version" "tailscale-cni-supervisor $VER" "$("$SUP" install --version)"
exactly "uninstall --version" "tailscale-cni-supervisor $VER" "$("$SUP" uninstall --version)"
"$SUP" install --cni-bin-dir relative 2>"$T/err"
exactly "install with a relative directory" \
	"tailscale-cni-supervisor install: --cni-bin-dir, --cni-conf-dir, --worker-dir and --source-dir must be absolute paths" \
	"$(cat "$T/err")"
echo '{"type": "bridge"}' >"$T/pc.json"
inst "$T/none" --plugin-conf "$T/pc.json"
exactly "install --plugin-conf setting type" \
	"tailscale-cni-supervisor install: --plugin-conf $T/pc.json: sets \"type\" (it is always \"tailscale-cni\")" \
	"$ERR"
check "nothing installed by a refused command line" test ! -e "$BIN/tailscale-cni"
OUT=$("$SUP" install --help)
check "install --help: exit 0, the flags listed" \
	bash -c '[[ $1 -eq 0 ]] && grep -q -- "--cni-conf-dir DIR" <<<"$2" && grep -q -- "--watch" <<<"$2"' \
	_ $? "$OUT"

# --- a primary that appears later (flannel), waited for.
C=$T/conf-flannel
mkdir -p "$C"
"$SUP" install --cni-bin-dir "$BIN" --cni-conf-dir "$C" --worker-dir "$WD" --source-dir "$SRC" \
	--wait 30 2>"$T/wait.err" &
pid=$!
CLEAN_PIDS+=("$pid")
check "binaries installed before any configuration exists" \
	wait_for 10 test -x "$BIN/tailscale-cni" -a -x "$WD/bin/tailscale-cni-worker"
sleep 0.5
check "still waiting; no configuration of its own made" \
	bash -c 'kill -0 "$1" && [[ -z $(ls -A "$2") ]]' _ "$pid" "$C"
put "$V/flannel/10-flannel.conflist" "$C/10-flannel.conflist"
check "the wait ends once flannel's conflist appears" wait_for 10 bash -c '! kill -0 "$1" 2>/dev/null' _ "$pid"
wait "$pid"
rc=$?
check "install exit 0 ($rc)" test "$rc" -eq 0
check "flannel: our entry appended, the rest as it was" \
	same_but_ours "$V/flannel/10-flannel.conflist" "$C/10-flannel.conflist"
check "flannel: mode kept (0644)" test "$(stat -c %a "$C/10-flannel.conflist")" = 644
exactly "no temporary file left" "" "$(find "$C" "$BIN" "$WD" -name '*.tmp.*' -o -name '.new.*')"

# --- the binaries.
check "plugin identical to the image's" cmp -s "$SRC/tailscale-cni" "$BIN/tailscale-cni"
check "plugin mode 0755" test "$(stat -c %a "$BIN/tailscale-cni")" = 755
VER=$(CNI_COMMAND=VERSION "$BIN/tailscale-cni" <<<'{"cniVersion":"1.0.0"}')
check "installed plugin answers VERSION: $VER" jqq '.supportedVersions | index("0.3.1")' <<<"$VER"
check "worker elf identical to the image's" \
	cmp -s "$SRC/tailscale-cni-worker" "$WD/lib/tailscale-cni-worker.elf"
WOUT=$("$WD/bin/tailscale-cni-worker" --help 2>&1)
check "worker wrapper starts the worker: ${WOUT%%$'\n'*}" \
	bash -c '[[ $1 == "usage: tailscale-cni-worker "* ]]' _ "$WOUT"
check "wrapper runs the copied loader with the copied libraries" \
	grep -qF "exec '$WD/lib/ld-" "$WD/bin/tailscale-cni-worker"
check "every library the worker links is in $WD/lib" \
	bash -c 'for l in $(ldd "$1" | awk "/=> \\//{print \$1}"); do [[ -f $2/lib/$l ]] || exit 1; done' \
	_ "$SRC/tailscale-cni-worker" "$WD"

# --- a second run writes nothing.
before=$(stat -c %i:%Y "$C/10-flannel.conflist" "$BIN/tailscale-cni" "$WD/bin/tailscale-cni-worker" \
	"$WD/lib" | tr '\n' ' ')
inst "$C"
check "second run: exit 0 ($RC)" test "$RC" -eq 0
check "second run: says already chained" grep -q "already chained" <<<"$ERR"
after=$(stat -c %i:%Y "$C/10-flannel.conflist" "$BIN/tailscale-cni" "$WD/bin/tailscale-cni-worker" \
	"$WD/lib" | tr '\n' ' ')
exactly "second run: no file replaced" "$before" "$after"
check "second run: our entry once" test "$(ours "$C/10-flannel.conflist")" -eq 1

# --- an upgrade: new binaries replace the old ones by rename.
printf '\0upgrade' >>"$SRC/tailscale-cni"
printf '\0upgrade' >>"$SRC/tailscale-cni-worker"
ino=$(stat -c %i "$BIN/tailscale-cni")
inst "$C"
check "upgrade: exit 0 ($RC)" test "$RC" -eq 0
check "upgrade: the new plugin in place, by rename" \
	bash -c 'cmp -s "$1" "$2" && [[ $(stat -c %i "$2") != "$3" ]]' _ "$SRC/tailscale-cni" \
	"$BIN/tailscale-cni" "$ino"
check "upgrade: the new plugin answers VERSION" \
	jqq '.supportedVersions' <<<"$(CNI_COMMAND=VERSION "$BIN/tailscale-cni" <<<'{"cniVersion":"1.0.0"}')"
check "upgrade: the new worker in lib/, the previous one in lib.old/" \
	bash -c 'cmp -s "$1" "$2/lib/tailscale-cni-worker.elf" && test -f "$2/lib.old/tailscale-cni-worker.elf" &&
		! cmp -s "$1" "$2/lib.old/tailscale-cni-worker.elf"' _ "$SRC/tailscale-cni-worker" "$WD"
WOUT=$("$WD/bin/tailscale-cni-worker" --help 2>&1)
check "upgrade: the wrapper starts the new worker" \
	bash -c '[[ $1 == "usage: tailscale-cni-worker "* ]]' _ "$WOUT"

# --- --watch: the primary rewrites its file; the plugin is deleted.
"$SUP" install --cni-bin-dir "$BIN" --cni-conf-dir "$C" --worker-dir "$WD" --source-dir "$SRC" \
	--watch 2>"$T/watch.err" &
wpid=$!
CLEAN_PIDS+=("$wpid")
check "--watch runs" wait_for 5 grep -q "watching" "$T/watch.err"
put "$V/flannel/10-flannel.conflist" "$C/10-flannel.conflist"
check "--watch: our entry re-added after flannel rewrote its file" \
	wait_for 10 same_but_ours "$V/flannel/10-flannel.conflist" "$C/10-flannel.conflist"
rm -f "$BIN/tailscale-cni"
check "--watch: the plugin put back after it was deleted" wait_for 10 test -x "$BIN/tailscale-cni"
sleep 0.5
check "--watch: our entry still once" test "$(ours "$C/10-flannel.conflist")" -eq 1
kill -TERM "$wpid"
wait "$wpid"
wrc=$?
check "--watch: SIGTERM ends it with exit 0 ($wrc)" test "$wrc" -eq 0
check "--watch: nothing uninstalled on exit" \
	bash -c '[[ -x $1 && $(jq "[.plugins[]|select(.type==\"tailscale-cni\")]|length" "$2") == 1 ]]' \
	_ "$BIN/tailscale-cni" "$C/10-flannel.conflist"

# --- uninstall: exactly ours, config before binaries.
uninst "$C"
check "uninstall: exit 0 ($RC)" test "$RC" -eq 0
check "uninstall: flannel's list as it was (keys, order, values)" \
	jqf --slurpfile o "$V/flannel/10-flannel.conflist" \
	'(. == $o[0]) and (keys_unsorted == ($o[0]|keys_unsorted))' "$C/10-flannel.conflist"
check "uninstall: plugin and worker tree gone" test ! -e "$BIN/tailscale-cni" -a ! -e "$WD"
exactly "uninstall: only flannel's file left" "10-flannel.conflist" "$(ls -A "$C")"
uninst "$C"
check "uninstall again: exit 0 ($RC)" test "$RC" -eq 0

# --- the other primaries: appended once, the rest kept, idempotent.
for f in calico/10-calico.conflist cilium/05-cilium.conflist k3s/10-flannel.conflist; do
	C=$T/conf-${f%%/*}
	mkdir -p "$C"
	cp "$V/$f" "$C/"
	name=$(basename "$f")
	inst "$C" --wait 5
	check "${f%%/*}: exit 0 ($RC)" test "$RC" -eq 0
	check "${f%%/*}: our entry appended, the rest as it was" same_but_ours "$V/$f" "$C/$name"
	before=$(stat -c %i "$C/$name")
	inst "$C"
	check "${f%%/*}: second run replaces nothing" test "$before" = "$(stat -c %i "$C/$name")"
	uninst "$C" --mode conflist
	check "${f%%/*}: uninstall gives the same document back" \
		jqf --slurpfile o "$V/$f" '. == $o[0]' "$C/$name"
done

# --- lexical order: the lowest name is the primary, the other untouched.
C=$T/conf-two
mkdir -p "$C"
cp "$V/cilium/05-cilium.conflist" "$V/flannel/10-flannel.conflist" "$C/"
inst "$C"
check "two files: 05-cilium.conflist chained" test "$(ours "$C/05-cilium.conflist")" -eq 1
check "two files: 10-flannel.conflist untouched" \
	cmp -s "$V/flannel/10-flannel.conflist" "$C/10-flannel.conflist"
uninst "$C"

# --- a single-plugin .conf: converted, and put back by uninstall.
C=$T/conf-bridge
mkdir -p "$C"
cp "$V/bridge/10-mynet.conf" "$C/"
chmod 0640 "$C/10-mynet.conf"
inst "$C"
check "bridge .conf: exit 0 ($RC)" test "$RC" -eq 0
exactly "bridge .conf: the .conf replaced by a .conflist, the original kept aside" \
	"10-mynet.conf.tailscale-cni-orig 10-mynet.conflist" "$(ls -A "$C" | tr '\n' ' ' | sed 's/ $//')"
check "bridge .conf: the list wraps the plugin, ours after it" \
	jqf --slurpfile o "$V/bridge/10-mynet.conf" '
		.cniVersion == $o[0].cniVersion and .name == $o[0].name and
		.plugins[0] == ($o[0] | del(.cniVersion)) and
		.plugins[1] == {"type": "tailscale-cni"} and (.plugins | length) == 2' \
	"$C/10-mynet.conflist"
check "bridge .conf: mode kept (0640)" test "$(stat -c %a "$C/10-mynet.conflist")" = 640
before=$(stat -c %i "$C/10-mynet.conflist")
inst "$C"
check "bridge .conf: second run replaces nothing" test "$before" = "$(stat -c %i "$C/10-mynet.conflist")"
uninst "$C"
check "bridge .conf: uninstall puts the original back byte for byte" \
	cmp -s "$V/bridge/10-mynet.conf" "$C/10-mynet.conf"
exactly "bridge .conf: nothing else left" "10-mynet.conf" "$(ls -A "$C")"

# --- the drop-in, where the network's folder exists.
C=$T/conf-dropin
mkdir -p "$C/cbr0"
cp "$V/flannel/10-flannel.conflist" "$C/"
inst "$C"
check "drop-in: written" jqf '. == {"type": "tailscale-cni"}' "$C/cbr0/90-tailscale-cni.conf"
check "drop-in: flannel's file untouched" cmp -s "$V/flannel/10-flannel.conflist" "$C/10-flannel.conflist"
inst "$C" --mode conflist
check "--mode conflist: in the list, the drop-in removed" \
	bash -c '[[ ! -e $1/cbr0/90-tailscale-cni.conf ]]' _ "$C"
check "--mode conflist: our entry once" test "$(ours "$C/10-flannel.conflist")" -eq 1
inst "$C" --mode drop-in
check "--mode drop-in: the list's entry moved to the drop-in" \
	bash -c '[[ -f $1/cbr0/90-tailscale-cni.conf ]] && cmp -s "$2" "$1/10-flannel.conflist"' \
	_ "$C" "$V/flannel/10-flannel.conflist"
uninst "$C"
check "drop-in: uninstall removes it" test ! -e "$C/cbr0/90-tailscale-cni.conf"

# --- --watch on a drop-in and on a converted .conf; a fight.
C=$T/conf-watch2
mkdir -p "$C/cbr0"
cp "$V/flannel/10-flannel.conflist" "$C/"
"$SUP" install --cni-bin-dir "$BIN" --cni-conf-dir "$C" --worker-dir "$WD" --source-dir "$SRC" \
	--watch 2>"$T/watch2.err" &
wpid=$!
CLEAN_PIDS+=("$wpid")
check "--watch, drop-in: written" wait_for 10 test -f "$C/cbr0/90-tailscale-cni.conf"
rm -f "$C/cbr0/90-tailscale-cni.conf"
check "--watch, drop-in: put back after it was removed" \
	wait_for 10 test -f "$C/cbr0/90-tailscale-cni.conf"
kill -TERM "$wpid"
wait "$wpid"
C=$T/conf-watch3
mkdir -p "$C"
cp "$V/bridge/10-mynet.conf" "$C/"
"$SUP" install --cni-bin-dir "$BIN" --cni-conf-dir "$C" --worker-dir "$WD" --source-dir "$SRC" \
	--watch 2>"$T/watch3.err" &
wpid=$!
CLEAN_PIDS+=("$wpid")
check "--watch, .conf: converted" wait_for 10 test -f "$C/10-mynet.conflist" -a ! -e "$C/10-mynet.conf"
put "$V/bridge/10-mynet.conf" "$C/10-mynet.conf"
check "--watch, .conf rewritten by its owner: converted again, never both left" \
	wait_for 10 bash -c '[[ ! -e $1/10-mynet.conf && $(jq ".plugins|length" "$1/10-mynet.conflist") == 2 ]]' \
	_ "$C"
# A writer that keeps removing our entry: re-added 5 times in 10 minutes
# (one of them the first install), then no more, and said.
for i in 1 2 3 4 5; do
	put "$T/conf-watch3/10-mynet.conf.tailscale-cni-orig" "$C/10-mynet.conf"
	wait_for 10 test ! -e "$C/10-mynet.conf" || break
done
check "--watch: a fight is stopped: our entry not re-added a 6th time" \
	bash -c 'sleep 2; [[ -e $1/10-mynet.conf ]]' _ "$C"
check "--watch: the fight said: $(grep -m1 "another writer" "$T/watch3.err")" \
	grep -q "re-added 5 times in 600 s: another writer keeps removing it" "$T/watch3.err"
kill -TERM "$wpid"
wait "$wpid"

# --- broken JSON and a wrong shape: refused, the bytes unchanged.
for f in broken/10-calico.conflist broken-shape/10-flannel.conflist; do
	C=$T/conf-${f%%/*}
	mkdir -p "$C"
	cp "$V/$f" "$C/"
	inst "$C" --wait 2
	check "${f%%/*}: refused (exit $RC)" test "$RC" -eq 1
	check "${f%%/*}: the error names the file: ${ERR##*$'\n'}" \
		grep -qF "$C/$(basename "$f"): " <<<"$ERR"
	check "${f%%/*}: bytes unchanged" cmp -s "$V/$f" "$C/$(basename "$f")"
	exactly "${f%%/*}: nothing added to the directory" "$(basename "$f")" "$(ls -A "$C")"
done
check "broken: the JSON error says where" grep -q "not valid JSON: line" <<<"$(
	inst "$T/conf-broken" --wait 1
	echo "$ERR"
)"

# --- uninstall beside a broken file that may name us: binaries kept.
C=$T/conf-unsure
mkdir -p "$C"
cp "$V/flannel/10-flannel.conflist" "$C/"
inst "$C"
printf '{"name":"x","plugins":[{"type":"tailscale-cni"}' >"$C/20-x.conflist"
uninst "$C"
check "uninstall beside a broken file naming us: exit 1 ($RC)" test "$RC" -eq 1
check "uninstall beside a broken file naming us: our entry still removed from flannel's" \
	cmp -s <(jq -S . "$V/flannel/10-flannel.conflist") <(jq -S . "$C/10-flannel.conflist")
check "uninstall beside a broken file naming us: plugin and worker kept" \
	test -x "$BIN/tailscale-cni" -a -x "$WD/bin/tailscale-cni-worker"
check "uninstall beside a broken file naming us: says why" \
	grep -q "may still name tailscale-cni: the plugin and the worker stay installed" <<<"$ERR"
printf '{"name":"x",' >"$C/20-x.conflist"
uninst "$C"
check "uninstall beside a broken file not naming us: exit 0 ($RC), binaries gone" \
	test "$RC" -eq 0 -a ! -e "$BIN/tailscale-cni" -a ! -e "$WD"

# --- a --worker-dir whose bin/ or lib/ is not ours (as / or /usr would be).
mkdir -p "$T/fake/bin" "$T/fake/lib"
echo keep >"$T/fake/bin/ls"
echo keep >"$T/fake/lib/libc.so.6"
"$SUP" install --cni-bin-dir "$BIN" --cni-conf-dir "$T/conf-flannel" --worker-dir "$T/fake" \
	--source-dir "$SRC" 2>"$T/err"
RC=$?
check "foreign worker dir: refused (exit $RC)" test "$RC" -eq 1
check "foreign worker dir: says why" grep -q "holds files that are not a worker tree of ours" "$T/err"
"$SUP" uninstall --cni-bin-dir "$T/fake-bin" --cni-conf-dir "$T/conf-empty" --worker-dir "$T/fake" \
	2>"$T/err"
check "foreign worker dir: neither install nor uninstall touched it" \
	bash -c '[[ $(cat "$1/bin/ls" "$1/lib/libc.so.6") == "keep"$'"'"'\n'"'"'"keep" && ! -e $1/bin.old ]]' _ "$T/fake"

# --- no primary within --wait.
mkdir -p "$T/conf-empty"
inst "$T/conf-empty" --wait 1
check "--wait 1 with no primary: exit 1 ($RC)" test "$RC" -eq 1
check "--wait 1 with no primary: says so: ${ERR##*$'\n'}" \
	grep -q "no \*.conflist, \*.conf or \*.json yet after 1 s: nothing chained" <<<"$ERR"
exactly "--wait 1 with no primary: no configuration made" "" "$(ls -A "$T/conf-empty")"

tscni_finish
