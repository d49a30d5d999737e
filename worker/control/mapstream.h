/* The map poll response body: a sequence of messages, each a little-endian
 * u32 length followed by that many bytes of one MapResponse, either one
 * complete zstd frame (MapRequest "Compress":"zstd") or raw JSON.
 *
 * The reader is fed arbitrary chunks (messages do not align with HTTP/2 DATA
 * frames or Noise records) and hands back whole JSON documents. Whether a
 * length can ever be valid is decided from the 4-byte header alone; the
 * decompressed size is capped while decoding, whatever the frame declares.
 * Each message is its own zstd frame: no decoder state carries over. */
#ifndef TSCNI_WORKER_CONTROL_MAPSTREAM_H
#define TSCNI_WORKER_CONTROL_MAPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum mapstream_limits {
	MAPSTREAM_HDR_LEN = 4,
	/* Large tailnets send multi-megabyte first maps. */
	MAPSTREAM_DEFAULT_MAX_FRAME = 8 << 20, /* bytes on the wire per message */
	MAPSTREAM_DEFAULT_MAX_JSON = 32 << 20, /* bytes after decompression */
	MAPSTREAM_MIN_LIMIT = 16,
	MAPSTREAM_MAX_LIMIT = 1 << 30,
};

struct ZSTD_DCtx_s;

struct mapstream {
	bool zstd;
	size_t max_frame;
	size_t max_json;
	uint8_t hdr[MAPSTREAM_HDR_LEN];
	size_t hdr_have;
	uint8_t *body; /* the current message, once its header is complete */
	size_t body_len;
	size_t body_have;
	struct ZSTD_DCtx_s *dctx; /* only while a message is decoded */
};

/* zstd: messages are zstd frames (else raw JSON). max_frame bounds the
 * length prefix, max_json the decoded size; 0 picks the defaults. Returns 0
 * or -EINVAL (a limit outside [MAPSTREAM_MIN_LIMIT, MAPSTREAM_MAX_LIMIT]),
 * -ENOMEM. */
int mapstream_init(struct mapstream *s, bool zstd, size_t max_frame, size_t max_json);
/* Frees the buffers; safe on a zeroed or already destroyed struct. */
void mapstream_destroy(struct mapstream *s);

/* Consumes bytes from src up to and including the end of the next complete
 * message. Returns the number of bytes consumed (>= 0); when a message was
 * completed, *json is a NUL-terminated document of *json_len bytes that the
 * caller frees, else *json is NULL and all len bytes were consumed.
 * Errors (-EMSGSIZE: length 0 or over max_frame, decided from the header
 * alone, or decoded size over max_json; -EBADMSG: not one valid zstd frame)
 * set *why; the stream is then unusable. */
ssize_t mapstream_feed(struct mapstream *s, const uint8_t *src, size_t len, char **json,
		       size_t *json_len, const char **why);

/* True between messages (no partial header or body buffered): the end of the
 * HTTP body is clean only here. */
bool mapstream_idle(const struct mapstream *s);

#endif
