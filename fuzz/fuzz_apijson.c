/* The key sources' answer parsers (supervisor/authkeys/apijson.c) on
 * arbitrary bytes: the OAuth token, a minted key (Tailscale and Headscale
 * forms), error words, a device list and one device (both forms: its node
 * key and its key expiry). Every
 * secret that comes back is freed; lengths stay within their bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "supervisor/authkeys/authkeys_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *)data, *why = NULL;
	static const char nk[] = "nodekey:"
				 "0202020202020202020202020202020202020202020202020202020202020202";
	char text[160], id[130], key[96];
	unsigned int life;
	int64_t expiry;
	char *s;

	if (size > AUTHKEYS_ANSWER_MAX || sodium_init() < 0)
		return 0;
	if (apijson_token(body, size, &s, &life, &why) == 0) {
		if (!s || !*s || life < 1)
			abort();
		sodium_free(s);
	}
	for (int hs = 0; hs < 2; hs++) {
		if (apijson_key(body, size, hs, &s, &why) == 0) {
			if (!s || !*s)
				abort();
			sodium_free(s);
		}
		if (apijson_find_device(body, size, hs, nk, id, sizeof(id), &why) == 1 &&
		    (strlen(id) == 0 || strlen(id) >= sizeof(id)))
			abort();
		if (apijson_device_nodekey(body, size, hs, key, sizeof(key), &why) == 0 &&
		    strlen(key) >= sizeof(key))
			abort();
		if (apijson_device_expiry(body, size, hs, &expiry, &why) == 0 ? expiry < 0
									      : expiry != 0)
			abort();
	}
	apijson_error_text(body, size, text, sizeof(text));
	if (strlen(text) >= sizeof(text))
		abort();
	return 0;
}
