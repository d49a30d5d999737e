/* Fuzz target for the PEM CA bundle check (supervisor/ca_bundle.c
 * ca_bundle_check): a file an operator names (--ca-file, --ca-file-add, the
 * system's bundle). The input is the file. A refusal must say why; an
 * acceptance counts at least one certificate and at most one per
 * CA_PEM_MIN_BLOCK bytes (the shortest block that passes: BEGIN, "MAA=",
 * END). Nothing is kept. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "supervisor/ca_bundle.h"

enum { CA_PEM_MIN_BLOCK = 27 + 4 + 25 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *why = NULL;
	int n = ca_bundle_check((const char *)data, size, &why);

	if (n < 0 && !why)
		abort();
	if (n == 0 || (n > 0 && (size_t)n > size / CA_PEM_MIN_BLOCK))
		abort();
	return 0;
}
