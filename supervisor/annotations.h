/* A pod's choices from its annotations (docs/cni-contract.md section 7): the
 * tailscale-cni.io/ annotations the plugin forwarded in the AddRequest, read
 * and checked before an ADD touches anything. Annotations come from anyone
 * who may create pods: every value is bounded and checked, and a tag the
 * operator did not allow (--allowed-tags) is refused by name.
 *
 *   tailscale-cni.io/tags      "tag:web,tag:db": the tags the pod's node asks
 *                              for (Hostinfo.RequestTags); each must be in
 *                              --allowed-tags. Commas separate, blanks
 *                              around a tag are ignored, a repeat counts once.
 *   tailscale-cni.io/hostname  "web-1": the node's hostname instead of
 *                              <cluster>-<namespace>-<pod>; one DNS label
 *                              (letters, digits, '-'; 1..63; no '-' at either
 *                              end), lowered as tailscaled lowers its own.
 *
 * tailscale-cni.io/enabled is the plugin's (cni/conf.c); other keys under
 * the prefix are ignored. */
#ifndef TSCNI_SUPERVISOR_ANNOTATIONS_H
#define TSCNI_SUPERVISOR_ANNOTATIONS_H

#include <stdbool.h>
#include <stddef.h>

#include "cni.pb-c.h"
#include "hostname.h"
#include "validate.h"

#define ANNOTATION_TAGS	    "tailscale-cni.io/tags"
#define ANNOTATION_HOSTNAME "tailscale-cni.io/hostname"

enum annotations_limits {
	ANNOTATIONS_WHY_LEN = 256, /* room for a message naming an escaped value */
};

/* A set of tags, in the order first given, each valid_tag and none twice. */
struct tag_set {
	size_t n;
	char v[POD_TAGS_MAX][TAG_MAX_LEN + 1];
};

/* What a pod's annotations ask for. */
struct pod_choice {
	struct tag_set tags;		 /* n == 0: none asked */
	char hostname[HOSTNAME_MAX + 1]; /* "": the generated one */
};

/* Adds the comma-separated tags of list to set (repeats count once). With
 * allowed non-NULL, each tag must be in allowed. Returns 0, or -EINVAL with
 * why (why_len bytes) naming the tag and what is wrong with it: not a tag
 * (upstream's reason), not in --allowed-tags, an empty item, or more than
 * POD_TAGS_MAX. set is unchanged on failure. */
int annotations_tags_add(struct tag_set *set, const char *list, const struct tag_set *allowed,
			 char *why, size_t why_len);

/* Checks a hostname annotation's value and writes it lowered into out.
 * Returns 0, or -EINVAL with why naming the value. */
int annotations_hostname(const char *value, char out[static HOSTNAME_MAX + 1], char *why,
			 size_t why_len);

/* Reads the pod's choices from the request's annotations (n of them; each
 * with non-NULL key and value, as validate_cni_request leaves them). The
 * last of a repeated key wins. Returns 0 with *out filled, or -EINVAL with
 * why naming the annotation and the value refused. */
int annotations_parse(Tscni__Annotation *const *anns, size_t n, const struct tag_set *allowed,
		      struct pod_choice *out, char *why, size_t why_len);

#endif
