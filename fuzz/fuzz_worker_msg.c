/* Fuzz target for one SOCK_SEQPACKET datagram between supervisor and worker:
 * unpacked and validated as a WorkerMsg (what the supervisor receives from a
 * hostile worker) and as a SupervisorMsg (what a worker receives). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "frame.h"
#include "validate.h"
#include "worker.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A message that validated must validate again after pack and unpack. */
static void repack(const ProtobufCMessage *m, int (*validate)(const void *, const char **))
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = malloc(len ? len : 1);
	ProtobufCMessage *again;
	const char *why;

	if (!buf)
		abort();
	protobuf_c_message_pack(m, buf);
	/* protobuf-c keeps unknown fields, field number 0 included, and
	 * packs them back in a form it may not unpack: that is its business.
	 * What does unpack again must still validate. */
	again = protobuf_c_message_unpack(m->descriptor, NULL, len, buf);
	if (again && validate(again, &why) < 0)
		abort();
	if (again)
		protobuf_c_message_free_unpacked(again, NULL);
	free(buf);
}

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
			repack(&w->base, check_worker);
		tscni__worker_msg__free_unpacked(w, NULL);
	}
	s = tscni__supervisor_msg__unpack(NULL, size, data);
	if (s) {
		if (validate_supervisor_msg(s, &why) == 0)
			repack(&s->base, check_supervisor);
		tscni__supervisor_msg__free_unpacked(s, NULL);
	}
	return 0;
}
