/* The control client's HTTP/1.1 answer parsing: the head of the ts2021
 * upgrade answer (101) and of GET /key, then the /key JSON body. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "worker/control/client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct client_http_head h;
	uint8_t pub[KEY_LEN];
	const char *why = NULL;
	ssize_t n;

	n = client_http_parse_head((const char *)data, size, &h, &why);
	if (n > 0) {
		size_t body = size - (size_t)n;

		if (h.has_length && h.content_length < body)
			body = (size_t)h.content_length;
		client_parse_key((const char *)data + n, body, pub, &why);
	} else {
		client_parse_key((const char *)data, size, pub, &why);
	}
	return 0;
}
