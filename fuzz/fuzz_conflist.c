/* Fuzz target: a CNI configuration file as the installer reads it from the
 * node's conf dir (installer/conflist.c). The bytes are parsed; a file that
 * parses gets our entry added, printed, parsed back (it must: we would
 * write it), added again (no change: idempotent), removed and compared
 * with the wrap of itself. Any broken promise aborts. No I/O. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "installer/conflist.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char plugin_conf[] = "{\"socket\":\"/run/tailscale-cni/cni.sock\",\"x\":0.1}";
	struct conflist orig, cl, back;
	char why[CONFLIST_WHY_LEN];
	json_t *ours = NULL;
	bool changed;
	size_t len;
	char *text;

	if (size > CONFLIST_MAX_LEN)
		return 0;
	if (conflist_parse((const char *)data, size, &orig, why) < 0)
		return 0;
	if (conflist_ours_new(plugin_conf, strlen(plugin_conf), &ours, why) < 0)
		abort();
	(void)conflist_is_multus(&orig);
	(void)conflist_inline_only(&orig);
	if (conflist_parse((const char *)data, size, &cl, why) < 0)
		abort();
	if (conflist_add(&cl, ours, &changed, why) < 0)
		goto out_cl;
	if (conflist_count_ours(&cl) != 1)
		abort();
	text = conflist_dump(cl.root, &len);
	if (!text)
		abort();
	/* What we would write must read back, shape and all, and need no
	 * second write. */
	if (conflist_parse(text, len, &back, why) < 0 || back.single)
		abort();
	free(text);
	if (conflist_add(&back, ours, &changed, why) < 0 || changed)
		abort();
	if (orig.single && !conflist_is_wrap_of(&back, &orig))
		abort();
	if (conflist_remove(&back, &changed, why) == 0 && conflist_count_ours(&back) != 0)
		abort();
	conflist_destroy(&back);
out_cl:
	conflist_destroy(&cl);
	json_decref(ours);
	conflist_destroy(&orig);
	return 0;
}
