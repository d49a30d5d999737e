/* The runtime's CNI configuration directory, as the installer reads and
 * edits it (docs/cni-contract.md §12.1-12.3, 12.7):
 *
 * - The primary configuration is the file libcni picks: the lowest name,
 *   in byte order, among *.conf, *.conflist and *.json. A .conflist must
 *   hold a "plugins" list; a .conf or .json one plugin (containerd and
 *   CRI-O decide by the extension). If that file is broken or has another
 *   shape it is refused, named, and nothing is written: containerd would
 *   fail on it anyway, and guessing past it could chain us into a network
 *   the runtime does not use.
 * - Multus's generated file is never edited (it regenerates it).
 * - Where our entry goes (mode): a drop-in <dir>/<network>/90-tailscale-cni.conf
 *   holding only our plugin (libcni >= 1.3 appends such files to the list;
 *   older runtimes silently ignore them), or the primary's own plugin list.
 *   A runtime's libcni version cannot be read from the node, so "auto"
 *   uses the drop-in only where the folder <dir>/<network>/ already exists
 *   (the operator or another chained plugin uses drop-ins there), the
 *   primary is a .conflist and it does not set loadOnlyInlinedPlugins;
 *   otherwise it edits the list. The other place is cleaned, so our plugin
 *   never runs twice.
 * - A single-plugin .conf (or .json) X is converted: X's original bytes are
 *   kept as X.tailscale-cni-orig (a name runtimes ignore), the list is
 *   written as <X without extension>.conflist, and only then X is removed.
 *   Both files never stay: X.conf sorts before X.conflist, so a runtime
 *   would keep reading the unchained X. Uninstall puts X back when the list
 *   is still exactly what we made of it. */
#ifndef TSCNI_INSTALLER_CONFDIR_H
#define TSCNI_INSTALLER_CONFDIR_H

#include <limits.h>
#include <stdbool.h>

#include <jansson.h>

#include "conflist.h"

enum confdir_mode { CONFDIR_AUTO, CONFDIR_DROPIN, CONFDIR_CONFLIST };

enum confdir_limits {
	CONFDIR_MAX_ENTRIES = 4096, /* directory entries read */
	CONFDIR_MAX_FILES = 256,    /* configuration files among them */
	CONFDIR_WHY_LEN = PATH_MAX + CONFLIST_WHY_LEN,
};

#define CONFDIR_DROPIN_FILE "90-tailscale-cni.conf"
#define CONFDIR_ORIG_SUFFIX ".tailscale-cni-orig"

/* What confdir_apply did: the file that now holds our entry, whether it
 * was written, and whether it is a drop-in. */
struct confdir_result {
	char file[PATH_MAX];
	bool written;
	bool dropin;
};

/* Checks that the plugin supports the list's cniVersion (version may be
 * NULL: no version named). 0, or -ENOTSUP with why set. */
typedef int confdir_version_fn(void *arg, const char *version, char why[static CONFLIST_WHY_LEN]);

/* Makes sure the primary configuration of dir chains ours (a JSON object
 * from conflist_ours_new). 0 with *res filled; -ENOENT when dir holds no
 * configuration yet (or does not exist), -EAGAIN when files kept moving
 * under three scans: wait, never create one;
 * -EINVAL when the primary is refused, -ENOTSUP when the plugin does not
 * support its version, or another -errno; why names the file and the
 * problem on every failure. check may be NULL. */
int confdir_apply(const char *dir, enum confdir_mode mode, const json_t *ours,
		  confdir_version_fn *check, void *check_arg, struct confdir_result *res,
		  char why[static CONFDIR_WHY_LEN]);

/* Removes our entry from every configuration file of dir that has one and
 * our drop-in from every network folder (only the drop-ins in
 * CONFDIR_DROPIN mode, only the lists in CONFDIR_CONFLIST mode), restoring
 * a converted .conf. *clean is false when a file could not be read or
 * edited, so some configuration may still name the plugin: the caller
 * then keeps the binaries. 0 or -errno (each problem logged). */
int confdir_remove(const char *dir, enum confdir_mode mode, bool *clean);

#endif
