/* The Tailscale hostname of a pod: "<cluster>-<namespace>-<pod>", lower
 * case, only [a-z0-9-], at most 63 characters (one DNS label, which is what
 * MagicDNS makes of it).
 *
 * Mapping: ASCII letters are lowered; every other character outside
 * [a-z0-9-] becomes '-'; runs of '-' collapse into one; leading and trailing
 * '-' are dropped. When that loses information (anything but lowering
 * changed), when the result would exceed 63 characters, or when the caller
 * asks for it, the name is made unique by a suffix "-" + 8 hex characters
 * of BLAKE2s(cluster NUL namespace NUL pod), the base cut so that the whole
 * stays within 63. Different triples that would read the same (namespace
 * "a-b" pod "c" versus namespace "a" pod "b-c") can only be told apart by a
 * caller that sees both: it sets force_suffix for them, and because the
 * hash covers the exact triple the results then differ, deterministically
 * on every node and every restart. */
#ifndef TSCNI_SUPERVISOR_HOSTNAME_H
#define TSCNI_SUPERVISOR_HOSTNAME_H

#include <stdbool.h>
#include <stddef.h>

enum hostname_limits {
	HOSTNAME_MAX = 63,
	HOSTNAME_SUFFIX_HEX = 8,
	HOSTNAME_MAX_INPUT = 1024, /* per part; Kubernetes names are <= 253 */
};

/* Writes the hostname into out (HOSTNAME_MAX + 1 bytes). Returns 0, or
 * -EINVAL with *why set when a part is NULL, empty or longer than
 * HOSTNAME_MAX_INPUT. An empty result after mapping falls back to "pod"
 * plus the suffix. */
int hostname_make(const char *cluster, const char *ns, const char *pod, bool force_suffix,
		  char out[static HOSTNAME_MAX + 1], const char **why);

#endif
