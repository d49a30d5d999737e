/* See hostname.h. */
#include "hostname.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "hash.h"

/* Appends the mapped form of s to buf (len bytes used, cap bytes room).
 * Sets *lossy when a character other than an upper-case letter changed. */
static size_t map_part(char *buf, size_t len, size_t cap, const char *s, bool *lossy)
{
	for (; *s && len < cap; s++) {
		char ch = *s;

		if (ch >= 'A' && ch <= 'Z') {
			ch = (char)(ch - 'A' + 'a');
		} else if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-')) {
			ch = '-';
			*lossy = true;
		}
		if (ch == '-' && (len == 0 || buf[len - 1] == '-')) {
			/* A leading '-' or a run: only a mapped character or a
			 * doubled '-' in the input gets here; both lose information. */
			*lossy = true;
			continue;
		}
		buf[len++] = ch;
	}
	return len;
}

static int check_part(const char *s, const char *name, const char **why)
{
	static const char *const msgs[][2] = {
		{"cluster", "cluster name is empty or too long"},
		{"namespace", "namespace is empty or too long"},
		{"pod", "pod name is empty or too long"},
	};
	size_t i;

	if (s && s[0] && strnlen(s, HOSTNAME_MAX_INPUT + 1) <= HOSTNAME_MAX_INPUT)
		return 0;
	for (i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++)
		if (!strcmp(msgs[i][0], name))
			*why = msgs[i][1];
	return -EINVAL;
}

int hostname_make(const char *cluster, const char *ns, const char *pod, bool force_suffix,
		  char out[static HOSTNAME_MAX + 1], const char **why)
{
	/* Three parts of at most HOSTNAME_MAX_INPUT and two separators. */
	char buf[3 * HOSTNAME_MAX_INPUT + 3];
	uint8_t digest[HASH_LEN];
	bool lossy = false;
	size_t len = 0, cap = sizeof(buf) - 1;
	int ret;

	out[0] = '\0';
	if ((ret = check_part(cluster, "cluster", why)) < 0 ||
	    (ret = check_part(ns, "namespace", why)) < 0 || (ret = check_part(pod, "pod", why)) < 0)
		return ret;

	len = map_part(buf, len, cap, cluster, &lossy);
	buf[len++] = '-';
	len = map_part(buf, len, cap, ns, &lossy);
	buf[len++] = '-';
	len = map_part(buf, len, cap, pod, &lossy);
	/* A part that mapped to nothing or ended in '-' leaves a doubled or
	 * trailing separator: drop it. */
	{
		size_t r = 0, w = 0;

		for (; r < len; r++) {
			if (buf[r] == '-' && (w == 0 || buf[w - 1] == '-'))
				continue;
			buf[w++] = buf[r];
		}
		while (w > 0 && buf[w - 1] == '-')
			w--;
		if (w < len)
			lossy = true;
		len = w;
	}
	buf[len] = '\0';

	if (!lossy && !force_suffix && len > 0 && len <= HOSTNAME_MAX) {
		memcpy(out, buf, len + 1);
		return 0;
	}

	/* The suffix covers the exact triple, separators included, so two
	 * triples that map to the same text still get different names. */
	{
		size_t lc = strlen(cluster), ln = strlen(ns), lp = strlen(pod);
		char raw[3 * HOSTNAME_MAX_INPUT + 3];

		memcpy(raw, cluster, lc + 1);
		memcpy(raw + lc + 1, ns, ln + 1);
		memcpy(raw + lc + 1 + ln + 1, pod, lp);
		hash_blake2s(digest, (const uint8_t *)raw, lc + 1 + ln + 1 + lp, NULL, 0);
	}
	if (len == 0) {
		memcpy(buf, "pod", 4);
		len = 3;
	}
	if (len > HOSTNAME_MAX - 1 - HOSTNAME_SUFFIX_HEX)
		len = HOSTNAME_MAX - 1 - HOSTNAME_SUFFIX_HEX;
	while (len > 0 && buf[len - 1] == '-')
		len--;
	buf[len] = '\0';
	{
		static const char hex[] = "0123456789abcdef";
		size_t i;

		memcpy(out, buf, len);
		out[len++] = '-';
		for (i = 0; i < HOSTNAME_SUFFIX_HEX / 2; i++) {
			out[len++] = hex[digest[i] >> 4];
			out[len++] = hex[digest[i] & 15];
		}
		out[len] = '\0';
	}
	return 0;
}
