/* The CNI network configuration a node's runtime reads (a .conflist, or a
 * single-plugin .conf), as tailscale-cni's installer edits it: parsed with
 * jansson into a document whose key order is kept, checked for the shape
 * libcni accepts, our entry ({"type": "tailscale-cni", ...}) added once or
 * removed, and printed back. No I/O here: installer.c reads and writes the
 * files (docs/cni-contract.md §12.3), fuzz/fuzz_conflist.c feeds it bytes.
 *
 * Every function that can refuse fills why[CONFLIST_WHY_LEN] with a line
 * naming the problem ("line 3, column 5: ...", "plugins[2] has no type"),
 * never with content of the file. */
#ifndef TSCNI_INSTALLER_CONFLIST_H
#define TSCNI_INSTALLER_CONFLIST_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

enum conflist_limits {
	CONFLIST_MAX_LEN = 1 << 20, /* bytes in one configuration file */
	CONFLIST_MAX_PLUGINS = 64,  /* entries in one list */
	CONFLIST_NAME_MAX = 255,    /* a network name: one path component */
	CONFLIST_WHY_LEN = 256,
};

#define CONFLIST_OUR_TYPE "tailscale-cni"

/* A parsed configuration. root owns everything; the strings point into it. */
struct conflist {
	json_t *root;
	bool single;	     /* a .conf: one plugin at the top level */
	const char *name;    /* the network's name */
	const char *version; /* cniVersion, NULL when absent */
	size_t n_plugins;    /* 1 for a single plugin */
};

/* Parses len bytes (at most CONFLIST_MAX_LEN) of a configuration file: an
 * object with a string "name" and either a non-empty "plugins" array of
 * objects that each have a string "type", or (single) a string "type" and
 * no "plugins". Duplicate keys, NUL in strings and numbers jansson cannot
 * hold exactly are refused, since printing them back would change the
 * file's meaning. 0 with *cl filled (conflist_destroy it), or -EINVAL
 * (-EFBIG for too many bytes) with why set and *cl empty. */
int conflist_parse(const char *buf, size_t len, struct conflist *cl,
		   char why[static CONFLIST_WHY_LEN]);
void conflist_destroy(struct conflist *cl);

/* Our entry: {"type": "tailscale-cni"} followed by the keys of the JSON
 * object in buf (the --plugin-conf file, or NULL for none), which must not
 * set "type". 0 with *out (json_decref it), or -EINVAL with why set. */
int conflist_ours_new(const char *buf, size_t len, json_t **out, char why[static CONFLIST_WHY_LEN]);

/* How many entries of type tailscale-cni the list holds. */
size_t conflist_count_ours(const struct conflist *cl);

/* Multus's generated file (a plugin of type multus or multus-shim): never
 * the file to edit (docs/cni-contract.md §12.1). */
bool conflist_is_multus(const struct conflist *cl);

/* "loadOnlyInlinedPlugins": true: libcni reads no drop-in directory. */
bool conflist_inline_only(const struct conflist *cl);

/* Makes ours the list's tailscale-cni entry. Already there and equal: no
 * change. There but different (an upgrade changed --plugin-conf): the
 * first one is replaced where it stands and any later ones removed, so
 * nothing is reordered. Absent: appended after the last plugin. A single
 * plugin is first wrapped into a list, {"cniVersion", "name", "plugins":
 * [the plugin without cniVersion, ours]}, the way Istio and Multus do it.
 * *changed says whether cl now differs from what was parsed. 0, or -E2BIG
 * with why set when the list would exceed CONFLIST_MAX_PLUGINS. */
int conflist_add(struct conflist *cl, const json_t *ours, bool *changed,
		 char why[static CONFLIST_WHY_LEN]);

/* Removes every entry of type tailscale-cni and nothing else. *changed
 * says whether any was removed. 0, or -ENOTEMPTY with why set (and cl
 * unchanged) when nothing else would be left: a list of zero plugins is
 * broken, so such a file is left to whoever made it. */
int conflist_remove(struct conflist *cl, bool *changed, char why[static CONFLIST_WHY_LEN]);

/* Whether the list cl, without our entries, is exactly what conflist_add
 * made of the single plugin orig (so that the original .conf may be put
 * back without losing what another installer added since). */
bool conflist_is_wrap_of(const struct conflist *cl, const struct conflist *orig);

/* The document as the file's new content: 2-space indent, keys in their
 * order, a final newline, reals printed with the fewest digits that read
 * back the same. A NUL-terminated string the caller free()s; *len is its
 * length. NULL only when jansson fails to allocate. */
char *conflist_dump(const json_t *root, size_t *len);

#endif
