/* Fuzz target for one SOCK_SEQPACKET datagram between supervisor and worker:
 * unpacked and validated as a WorkerMsg (what the supervisor receives from a
 * hostile worker) and as a SupervisorMsg (what a worker receives). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "frame.h"
#include "validate.h"
#include "worker.pb-c.h"

#include "repack.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int check_worker(const void *m, const char **why)
{
	return validate_worker_msg(m, why);
}

static int check_supervisor(const void *m, const char **why)
{
	return validate_supervisor_msg(m, why);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *why = NULL;
	Tscni__WorkerMsg *w;
	Tscni__SupervisorMsg *s;

	/* seqpacket_recv() never hands over a longer datagram. */
	if (size > WMSG_MAX_LEN)
		return 0;
	w = tscni__worker_msg__unpack(NULL, size, data);
	if (w) {
		if (validate_worker_msg(w, &why) == 0)
			repack_check(&w->base, check_worker);
		tscni__worker_msg__free_unpacked(w, NULL);
	}
	s = tscni__supervisor_msg__unpack(NULL, size, data);
	if (s) {
		if (validate_supervisor_msg(s, &why) == 0)
			repack_check(&s->base, check_supervisor);
		tscni__supervisor_msg__free_unpacked(s, NULL);
	}
	return 0;
}
