/* Fuzz target for the packet-filter rules as control sends them
 * (MapResponse.PacketFilter / PacketFilters, parsed by
 * filter_rules_from_json when mapjson reads the message; the netmap keeps
 * the result), then built into a filter as a worker's data-plane
 * configuration does. fuzz_mapjson reaches the same parser through whole
 * map messages. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <jansson.h>

#include "filter.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct filter_rules *rules = NULL;
	struct filter_state *st;
	struct filter *f = NULL;
	const char *warn = NULL, *why = NULL;
	json_t *j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);

	if (!j)
		return 0;
	if (filter_rules_from_json(j, &rules, &warn, &why) == 0) {
		if (rules->rejected && (rules->n_rules || !warn))
			abort(); /* a rejected list keeps nothing and says why */
		/* Whatever parsed must build. */
		st = filter_state_new();
		if (filter_new(&(struct filter_config){.rules = rules}, st, &f, &why) != 0)
			abort();
		filter_free(f);
		filter_state_free(st);
		filter_rules_free(rules);
	} else if (rules || !why) {
		abort(); /* a refusal leaves nothing and says why */
	}
	json_decref(j);
	return 0;
}
