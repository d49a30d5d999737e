/* Shared by the protobuf fuzz targets (fuzz_cni_frame.c, fuzz_worker_msg.c):
 * a message that validated must validate again after pack and unpack. */
#ifndef TSCNI_FUZZ_REPACK_H
#define TSCNI_FUZZ_REPACK_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <protobuf-c/protobuf-c.h>

/* The validator of m's type, called through a const void * wrapper. */
typedef int repack_validate_fn(const void *m, const char **why);

/* Packs m, unpacks the bytes again and aborts when what unpacks does not
 * validate. */
static inline void repack_check(const ProtobufCMessage *m, repack_validate_fn *validate)
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

#endif
