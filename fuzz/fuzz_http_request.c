/* Fuzz target for the metrics port's request heads (supervisor/http_serve.c,
 * http_request_parse): bytes from anyone who reaches the port. Every prefix
 * of the input is parsed as the server would see it arrive, and what the
 * parser says is checked against its contract. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "http_serve.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const uint8_t *data, size_t len)
{
	struct http_request req;
	const char *why = NULL;
	int status = -1;
	ssize_t n = http_request_parse(data, len, &req, &status, &why);

	if (n > 0) {
		/* A whole head, within what arrived and the bound, ending in
		 * an empty line; a GET or HEAD of an absolute path. */
		if ((size_t)n > len || n > HTTP_HEAD_MAX || data[n - 1] != '\n' || status != 0 ||
		    req.path[0] != '/' || strlen(req.path) > HTTP_PATH_MAX ||
		    (req.method != HTTP_GET && req.method != HTTP_HEAD) || req.minor > 1)
			abort();
	} else if (n == 0) {
		/* "Need more" only while the bound is not reached. */
		if (len >= HTTP_HEAD_MAX || status != 0)
			abort();
	} else if (!why || (status != 400 && status != 405 && status != 414 && status != 431 &&
			    status != 505)) {
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The whole input, and the prefixes a slow client's reads make
	 * (every one up to 64 bytes, then a few). */
	check(data, size);
	for (size_t i = 0; i < size && i < 64; i++)
		check(data, i);
	for (size_t i = 64; i < size; i += 97)
		check(data, i);
	return 0;
}
