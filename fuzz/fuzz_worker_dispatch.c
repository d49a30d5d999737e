/* The supervisor's dispatcher for worker messages (supervisor/workers_dispatch.c):
 * the first byte picks the worker's state and test mode, the rest is one
 * SOCK_SEQPACKET datagram as a hostile worker would send it. */
#include <stddef.h>
#include <stdint.h>

#include "log.h"
#include "workers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned int states[] = {
		WORKERS_TS_SPAWNING, WORKERS_TS_HELLO, WORKERS_TS_STARTING,
		WORKERS_TS_READY,    WORKERS_TS_DEAD,
	};
	static int quiet;
	struct worker *w;
	const char *why = "";

	if (!quiet) {
		log_init("fuzz", LOG_ERR);
		quiet = 1;
	}
	if (size < 1)
		return 0;
	w = workers__test_new(states[data[0] % 5], data[0] & 0x80);
	/* Feed the rest as one message, then again as what a worker would send
	 * next: the state the first one left behind matters. */
	if (workers__dispatch(w, data + 1, size - 1, &why) == 0)
		workers__dispatch(w, data + 1, size - 1, &why);
	workers__test_free(w);
	return 0;
}
