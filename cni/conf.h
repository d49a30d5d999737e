/* The request configuration on stdin (docs/cni-contract.md 2.3, 2.4, 3): the JSON
 * tree, the version, and tailscale-cni's own keys with their defaults. */
#ifndef TSCNI_CNI_CONF_H
#define TSCNI_CNI_CONF_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "args.h"
#include "log.h"

struct cni_error;

enum cni_version {
	CNI_V030 = 0,
	CNI_V031,
	CNI_V040,
	CNI_V100,
	CNI_V110,
	CNI_V_COUNT,
};

/* "0.3.0" ... "1.1.0", indexed by enum cni_version. */
extern const char *const conf_version_names[CNI_V_COUNT];
/* The VERSION answer's list: ["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]. */
#define CONF_SUPPORTED_VERSIONS_JSON "[\"0.3.0\",\"0.3.1\",\"0.4.0\",\"1.0.0\",\"1.1.0\"]"

static inline bool conf_version_is_1x(enum cni_version v)
{
	return v >= CNI_V100;
}

enum conf_limits {
	CONF_MAX_STDIN = 4 * 1024 * 1024, /* above: code 5, not parsed */
	CONF_MAX_DEPTH = 64,
	CONF_MAX_TOKENS = 1 << 18,
	CONF_MAX_TIMEOUT_MS = 60000,
	CONF_SOCKET_PATH_MAX = 107, /* sun_path minus the NUL */
	CONF_STATE_DIR_MAX = 3072,  /* leaves room for "/tombstones/<key name>" */
};

#define CONF_DEFAULT_SOCKET    "/run/tailscale-cni/cni.sock"
#define CONF_DEFAULT_STATE_DIR "/var/lib/tailscale-cni"
#define CONF_DEFAULT_IFNAME    "ts0"
#define CONF_ANNOTATIONS_KEY   "io.kubernetes.cri.pod-annotations"
#define CONF_ANNOTATION_PREFIX "tailscale-cni.io/"
#define CONF_ENABLED_KEY       "tailscale-cni.io/enabled"

/* A parsed request. Every const char * and json_t * below points into root
 * (or at a static default) and lives until conf_destroy(); none is owned. */
struct conf {
	json_t *root; /* owned */
	enum cni_version version;
	const char *cni_version; /* conf_version_names[version] */
	const char *name;	 /* NULL only for VERSION */

	const char *socket_path;
	const char *state_dir;
	const char *interface_name;
	const char *log_file; /* NULL: no file log */
	enum log_level log_level;
	unsigned int add_timeout_ms, del_timeout_ms, check_timeout_ms;
	unsigned int status_timeout_ms, gc_timeout_ms;
	unsigned int sync_timeout_ms;
	bool fail_open;		/* failurePolicy "ignore" */
	bool report_ips;	/* reportIPs */
	bool select_annotation; /* selection "annotation" */
	bool allow_overlap;	/* allowOverlap */

	json_t *prev_result;	/* object or NULL (absent or null) */
	json_t *annotations;	/* runtimeConfig[CONF_ANNOTATIONS_KEY] object, or NULL */
	json_t *gc_attachments; /* the GC list (array), NULL when neither key is present */
};

/* Parses buf (len bytes, not NUL-terminated) for verb. Checks, in order: the
 * bytes are one JSON object within the depth and token caps (code 6);
 * cniVersion is a string (6) naming a supported version (1; details list
 * them) that allows the verb (1: CHECK needs 0.4.0, GC and STATUS 1.1.0);
 * name (7); ipam (2, naming key and value); every tailscale-cni key's type
 * and range (7); prevResult, when present, is an object (6); the GC list's
 * shape (6). An ifname equal to interfaceName is refused (7) when ifname is
 * non-NULL. On success returns 0 and c owns the tree; on failure returns
 * -EINVAL with err filled and c cleared (conf_destroy is still safe), except
 * that c->cni_version stays set once the version was recognised. */
int conf_parse(const char *buf, size_t len, enum cni_verb verb, const char *ifname, struct conf *c,
	       struct cni_error *err);
void conf_destroy(struct conf *c);

/* The supported version named by buf's "cniVersion", or NULL when buf does
 * not parse or names none: for error output before conf_parse succeeded. */
const char *conf_peek_version(const char *buf, size_t len);

/* Exact match against the supported list. Returns 0 or -EINVAL. */
int conf_version_parse(const char *s, enum cni_version *out);

/* Does the pod get ts0? selection "all": yes, unless the pod annotation
 * tailscale-cni.io/enabled is "false" (opt-out); selection "annotation": only
 * when it is "true" (opt-in). */
bool conf_pod_selected(const struct conf *c);

/* Parses a syncTimeout value: a JSON number of seconds, or a string such as
 * "3s", "500ms", "1.5s", "1m". Returns 0 with *ms set, or -EINVAL with *why. */
int conf_duration_ms(const json_t *v, unsigned int *ms, const char **why);

#endif
