/* See annotations.h. */
#include "annotations.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

static bool blank(char c)
{
	return c == ' ' || c == '\t';
}

static bool tag_set_has(const struct tag_set *set, const char *tag)
{
	for (size_t i = 0; i < set->n; i++)
		if (strcmp(set->v[i], tag) == 0)
			return true;
	return false;
}

/* The escaped, bounded form of len bytes of s, for a message: annotation
 * values may hold anything. */
static const char *esc(char *buf, size_t n, const char *s, size_t len)
{
	return log_escape(buf, n, s, len);
}

int annotations_tags_add(struct tag_set *set, const char *list, const struct tag_set *allowed,
			 char *why, size_t why_len)
{
	struct tag_set next = *set;
	const char *p = list;
	char shown[TAG_MAX_LEN + 8];

	for (;;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		char tag[TAG_MAX_LEN + 1];
		const char *reason = NULL;

		while (len && blank(*p)) {
			p++;
			len--;
		}
		while (len && blank(p[len - 1]))
			len--;
		if (len == 0) {
			/* "" alone means no tags; an empty item between
			 * commas is a typo worth naming. */
			if (end || p != list) {
				snprintf(why, why_len, "an empty tag in \"%s\"",
					 esc(shown, sizeof(shown), list, strlen(list)));
				return -EINVAL;
			}
			break;
		}
		if (len > TAG_MAX_LEN) {
			snprintf(why, why_len, "\"%s...\" is longer than %d bytes",
				 esc(shown, 40, p, len), TAG_MAX_LEN);
			return -EINVAL;
		}
		memcpy(tag, p, len);
		tag[len] = '\0';
		if (!valid_tag(tag, &reason)) {
			snprintf(why, why_len, "\"%s\" is not a tag: %s",
				 esc(shown, sizeof(shown), tag, len), reason);
			return -EINVAL;
		}
		if (allowed && !tag_set_has(allowed, tag)) {
			snprintf(why, why_len, "%s is not in --allowed-tags%s", tag,
				 allowed->n ? "" : " (none are allowed)");
			return -EINVAL;
		}
		if (!tag_set_has(&next, tag)) {
			if (next.n == POD_TAGS_MAX) {
				snprintf(why, why_len, "more than %d tags", POD_TAGS_MAX);
				return -EINVAL;
			}
			memcpy(next.v[next.n++], tag, len + 1);
		}
		if (!end)
			break;
		p = end + 1;
	}
	*set = next;
	return 0;
}

int annotations_hostname(const char *value, char out[static HOSTNAME_MAX + 1], char *why,
			 size_t why_len)
{
	size_t len = strnlen(value, HOSTNAME_MAX + 1);
	char shown[HOSTNAME_MAX * 4 + 8];
	bool ok = len >= 1 && len <= HOSTNAME_MAX && value[0] != '-' && value[len - 1] != '-';

	for (size_t i = 0; ok && i < len; i++) {
		char c = value[i];

		ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		     c == '-';
	}
	out[0] = '\0';
	if (!ok) {
		snprintf(why, why_len,
			 "\"%s%s\" is not a DNS label (1 to %d letters, digits and '-', not "
			 "starting or ending with '-')",
			 esc(shown, sizeof(shown), value, len), len > HOSTNAME_MAX ? "..." : "",
			 HOSTNAME_MAX);
		return -EINVAL;
	}
	for (size_t i = 0; i < len; i++)
		out[i] = (value[i] >= 'A' && value[i] <= 'Z') ? (char)(value[i] - 'A' + 'a')
							      : value[i];
	out[len] = '\0';
	return 0;
}

int annotations_parse(Tscni__Annotation *const *anns, size_t n, const struct tag_set *allowed,
		      struct pod_choice *out, char *why, size_t why_len)
{
	static const struct tag_set none;
	const char *tags = NULL, *host = NULL;
	char reason[ANNOTATIONS_WHY_LEN];

	out->tags.n = 0;
	out->hostname[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		if (!anns[i] || !anns[i]->key || !anns[i]->value)
			continue;
		if (strcmp(anns[i]->key, ANNOTATION_TAGS) == 0)
			tags = anns[i]->value;
		else if (strcmp(anns[i]->key, ANNOTATION_HOSTNAME) == 0)
			host = anns[i]->value;
	}
	if (tags && annotations_tags_add(&out->tags, tags, allowed ? allowed : &none, reason,
					 sizeof(reason)) < 0) {
		snprintf(why, why_len, "%s: %s", ANNOTATION_TAGS, reason);
		return -EINVAL;
	}
	if (host && annotations_hostname(host, out->hostname, reason, sizeof(reason)) < 0) {
		out->tags.n = 0;
		snprintf(why, why_len, "%s: %s", ANNOTATION_HOSTNAME, reason);
		return -EINVAL;
	}
	return 0;
}
