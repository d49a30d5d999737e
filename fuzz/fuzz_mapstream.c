/* The map poll stream end to end on arbitrary bytes: the little-endian
 * length prefix, zstd decompression with its limits, the MapResponse JSON
 * parser, and netmap_apply() chaining every message onto the previous
 * snapshot as one stream does.
 *
 * Byte 0 selects the mode: bit 7 set means raw JSON messages (Compress ""),
 * else zstd frames; the low 7 bits + 1 give the chunk size the rest is fed
 * in, so message boundaries fall anywhere inside chunks. Limits are small so
 * that the size checks are reached. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "worker/control/mapjson.h"
#include "worker/control/mapstream.h"
#include "worker/control/netmap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { FUZZ_MAX_FRAME = 64 << 10, FUZZ_MAX_JSON = 256 << 10, FUZZ_NOW = 1800000000 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct netmap *nm = NULL;
	struct mapstream s;
	size_t chunk;

	if (size < 1)
		return 0;
	chunk = (size_t)(data[0] & 0x7f) + 1;
	if (mapstream_init(&s, !(data[0] & 0x80), FUZZ_MAX_FRAME, FUZZ_MAX_JSON) < 0)
		abort();
	data++;
	size--;
	while (size) {
		size_t len = size < chunk ? size : chunk;
		const uint8_t *p = data;
		size_t left = len;

		data += len;
		size -= len;
		while (left) {
			const char *why = NULL;
			char *json = NULL;
			size_t jlen = 0;
			ssize_t n = mapstream_feed(&s, p, left, &json, &jlen, &why);
			struct mapjson_map_response *r = NULL;
			struct netmap *next = NULL;

			if (n < 0) {
				if (!why)
					abort(); /* every error names its reason */
				goto out;
			}
			if ((size_t)n > left || (!json && (size_t)n != left))
				abort();
			p += n;
			left -= (size_t)n;
			if (!json)
				continue;
			if (jlen > FUZZ_MAX_JSON || strlen(json) > jlen)
				abort();
			if (mapjson_parse_map_response(json, jlen, &r, &why) == 0) {
				if (netmap_apply(nm, r, FUZZ_NOW, &next, &why) == 0 && next) {
					netmap_put(nm);
					nm = next;
				}
				mapjson_map_response_free(r);
			}
			free(json);
		}
	}
out:
	mapstream_destroy(&s);
	netmap_put(nm);
	return 0;
}
