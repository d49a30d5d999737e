/* Forced fallbacks for kernel-feature probes (see kfeat.h). */
#include "kfeat.h"

#include <stdlib.h>
#include <string.h>

bool kfeat_fallback_forced(const char *name)
{
	const char *list = getenv("TSCNI_FORCE_FALLBACK");
	size_t len = strlen(name);

	if (!list || !*list)
		return false;
	if (strcmp(list, "all") == 0)
		return true;
	for (const char *p = list; *p;) {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);

		if (n == len && memcmp(p, name, n) == 0)
			return true;
		if (!end)
			break;
		p = end + 1;
	}
	return false;
}
