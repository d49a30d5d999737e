/* Fuzz target for state records (common/record.c): the same bytes are
 * offered as each record type, exactly as state_load() reads a file. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"
#include "validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What parsed must pack, seal and parse again: a record the supervisor
 * accepts once it must accept after writing it back. */
static void reseal(const ProtobufCMessage *m, enum record_type type)
{
	size_t len = protobuf_c_message_get_packed_size(m), slen;
	uint8_t *packed = malloc(len ? len : 1), *sealed;
	const uint8_t *body;
	size_t blen;
	const char *why;
	void *again = NULL;

	if (!packed)
		abort();
	protobuf_c_message_pack(m, packed);
	record_seal(type, packed, len, &sealed, &slen);
	if (record_open(sealed, slen, type, &body, &blen, &why) < 0)
		abort();
	switch (type) {
	case RECORD_IDENTITY:
		again = record_parse_identity(sealed, slen, &why);
		break;
	case RECORD_ATTACHMENT:
		again = record_parse_attachment(sealed, slen, &why);
		break;
	case RECORD_TOMBSTONE:
		again = record_parse_tombstone(sealed, slen, &why);
		break;
	case RECORD_JOB:
		again = record_parse_job(sealed, slen, &why);
		break;
	}
	/* protobuf-c may pack unknown fields (field number 0 among them) in a
	 * form it does not unpack; what does unpack must validate again. */
	if (!again && strcmp(why, "protobuf does not unpack"))
		abort();
	if (again)
		protobuf_c_message_free_unpacked(again, NULL);
	free(sealed);
	free(packed);
}

/* Parses buf as each record type; whatever parses must reseal. */
static void parse_all(const uint8_t *buf, size_t size)
{
	const char *why = NULL;
	Tscni__Identity *id;
	Tscni__Attachment *att;
	Tscni__Tombstone *tomb;
	Tscni__Job *job;

	id = record_parse_identity(buf, size, &why);
	if (id) {
		reseal(&id->base, RECORD_IDENTITY);
		tscni__identity__free_unpacked(id, NULL);
	}
	att = record_parse_attachment(buf, size, &why);
	if (att) {
		reseal(&att->base, RECORD_ATTACHMENT);
		tscni__attachment__free_unpacked(att, NULL);
	}
	tomb = record_parse_tombstone(buf, size, &why);
	if (tomb) {
		reseal(&tomb->base, RECORD_TOMBSTONE);
		tscni__tombstone__free_unpacked(tomb, NULL);
	}
	job = record_parse_job(buf, size, &why);
	if (job) {
		reseal(&job->base, RECORD_JOB);
		tscni__job__free_unpacked(job, NULL);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *sealed;
	size_t slen;

	if (size > RECORD_MAX_FILE)
		return 0;
	/* As a whole file: the envelope checks. */
	parse_all(data, size);
	/* As the body of a well-formed envelope, so mutations get past the
	 * checksum to protobuf-c and the validators. */
	if (size <= RECORD_MAX_BODY) {
		for (int type = RECORD_IDENTITY; type <= RECORD_JOB; type++) {
			record_seal((enum record_type)type, data, size, &sealed, &slen);
			parse_all(sealed, slen);
			free(sealed);
		}
	}
	return 0;
}
