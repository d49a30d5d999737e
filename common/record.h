/* State records on disk: an envelope around one packed protobuf, and atomic
 * file writes (temp file, fsync, rename, fsync directory).
 *
 * Envelope (all big-endian): magic "TSCR" | u8 type | u8 format version (1) |
 * u16 zero | u32 body length | body | 16-byte BLAKE2b-128 of everything
 * before it. A truncated, padded or altered file fails record_open(). */
#ifndef TSCNI_COMMON_RECORD_H
#define TSCNI_COMMON_RECORD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "state.pb-c.h"

enum record_type {
	RECORD_IDENTITY = 1,
	RECORD_ATTACHMENT = 2,
	RECORD_TOMBSTONE = 3,
	RECORD_JOB = 4,
};

enum record_limits {
	RECORD_HDR_LEN = 12,
	RECORD_SUM_LEN = 16,
	RECORD_MAX_BODY = 256 * 1024,
	RECORD_MAX_FILE = RECORD_HDR_LEN + RECORD_MAX_BODY + RECORD_SUM_LEN,
};

/* Wraps body in the envelope. *out is malloc'd (caller frees). */
void record_seal(enum record_type type, const uint8_t *body, size_t len, uint8_t **out,
		 size_t *outlen);
/* Checks the envelope. On success *body points into buf. Returns 0, or
 * -EBADMSG with *why set ("truncated", "bad magic", "checksum mismatch",
 * "wrong record type", ...). */
int record_open(const uint8_t *buf, size_t len, enum record_type want, const uint8_t **body,
		size_t *body_len, const char **why);

/* Writes buf to dirfd/name atomically with the given mode: a temp file
 * ".<name>.tmp.<pid>" in the same directory, fsync, rename, fsync dirfd.
 * Returns 0 or a negative errno; on failure the old file is untouched and no
 * temp file is left. */
int atomic_write_file(int dirfd, const char *name, const void *buf, size_t len, unsigned int mode);
/* The same without either fsync: atomic for every reader and across the
 * writer's death (the page cache keeps it), not across the machine's (the
 * file may then be the old one, or empty: damaged). */
int atomic_write_file_cached(int dirfd, const char *name, const void *buf, size_t len,
			     unsigned int mode);
/* Reads at most max bytes of dirfd/name (O_NOFOLLOW). -EFBIG when larger.
 * *buf is malloc'd. */
int read_small_file(int dirfd, const char *name, size_t max, uint8_t **buf, size_t *len);

/* Typed helpers: pack + seal + atomic write (mode 0600), and read + open +
 * unpack + validate. The read functions return NULL with *err set
 * (-ENOENT when missing, -EBADMSG when damaged, *why naming the fault);
 * free the result with the generated __free_unpacked(m, NULL). */
int record_write_identity(int dirfd, const char *name, const Tscni__Identity *m);
int record_write_attachment(int dirfd, const char *name, const Tscni__Attachment *m);
/* Through atomic_write_file_cached: for a record of what does not outlive
 * the machine either (a ts0 being made). */
int record_write_attachment_cached(int dirfd, const char *name, const Tscni__Attachment *m);
int record_write_tombstone(int dirfd, const char *name, const Tscni__Tombstone *m);
int record_write_job(int dirfd, const char *name, const Tscni__Job *m);
Tscni__Identity *record_read_identity(int dirfd, const char *name, int *err, const char **why);
Tscni__Attachment *record_read_attachment(int dirfd, const char *name, int *err, const char **why);
Tscni__Tombstone *record_read_tombstone(int dirfd, const char *name, int *err, const char **why);
Tscni__Job *record_read_job(int dirfd, const char *name, int *err, const char **why);

/* Same, from a buffer already in memory (fuzz targets, tests). */
Tscni__Identity *record_parse_identity(const uint8_t *buf, size_t len, const char **why);
Tscni__Attachment *record_parse_attachment(const uint8_t *buf, size_t len, const char **why);
Tscni__Tombstone *record_parse_tombstone(const uint8_t *buf, size_t len, const char **why);
Tscni__Job *record_parse_job(const uint8_t *buf, size_t len, const char **why);

/* The file name for an attachment or tombstone key: "<network>_<cid>_<ifname>"
 * when neither network nor container id contains '_' and the result fits in
 * 200 bytes; otherwise "h_" + 64 hex of SHA-256(network NUL cid NUL ifname
 * NUL), so that ("a_b", "c") and ("a", "b_c") never share a file.
 * buf needs RECORD_KEYNAME_LEN bytes. */
enum { RECORD_KEYNAME_LEN = 256 };
char *record_key_filename(const char *network, const char *container_id, const char *ifname,
			  char *buf, size_t n);

#endif
