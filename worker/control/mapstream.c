/* The map poll stream reader: length prefix, zstd, whole JSON messages. */
#include "mapstream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>
#include <zstd_errors.h>

#include "mem.h"

/* First output buffer for a frame whose content size is unknown or large;
 * it doubles as output arrives, up to max_json. */
enum { MAPSTREAM_FIRST_OUT = 64 << 10 };

/* A decoder is about 96 KiB, all of it written by the first message it
 * decodes, and decoding a large one grows its window buffers to the
 * message's size (700 KiB for 1000 peers). Messages come seconds to a minute
 * apart (keep-alives, deltas): each gets a fresh decoder, freed once it is
 * decoded, so an idle worker holds none (one malloc and a few stores a
 * message; 94 KiB of an idle worker's heap when it was kept). */

/* zstd's smallest window log (ZSTD_WINDOWLOG_ABSOLUTEMIN, behind
 * ZSTD_STATIC_LINKING_ONLY); 30 covers MAPSTREAM_MAX_LIMIT. */
enum { WINDOW_LOG_MIN = 10, WINDOW_LOG_MAX = 30 };

static uint32_t load_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The smallest window log that still admits a single-segment frame of
 * max_json bytes: a frame asking for a larger window is refused by libzstd
 * before it allocates one. */
static int window_log_for(size_t max_json)
{
	int log = WINDOW_LOG_MIN;

	while (log < WINDOW_LOG_MAX && ((size_t)1 << log) < max_json)
		log++;
	return log;
}

/* A decoder refusing windows larger than max_json needs, or NULL. */
static struct ZSTD_DCtx_s *dctx_new(size_t max_json)
{
	ZSTD_DCtx *d = ZSTD_createDCtx();

	if (d && ZSTD_isError(ZSTD_DCtx_setParameter(d, ZSTD_d_windowLogMax,
						     window_log_for(max_json)))) {
		ZSTD_freeDCtx(d);
		d = NULL;
	}
	return d;
}

int mapstream_init(struct mapstream *s, bool zstd, size_t max_frame, size_t max_json)
{
	memset(s, 0, sizeof(*s));
	if (!max_frame)
		max_frame = MAPSTREAM_DEFAULT_MAX_FRAME;
	if (!max_json)
		max_json = MAPSTREAM_DEFAULT_MAX_JSON;
	if (max_frame < MAPSTREAM_MIN_LIMIT || max_frame > MAPSTREAM_MAX_LIMIT ||
	    max_json < MAPSTREAM_MIN_LIMIT || max_json > MAPSTREAM_MAX_LIMIT)
		return -EINVAL;
	s->zstd = zstd;
	s->max_frame = max_frame;
	s->max_json = max_json;
	return 0;
}

void mapstream_destroy(struct mapstream *s)
{
	free(s->body);
	s->body = NULL;
	ZSTD_freeDCtx(s->dctx);
	s->dctx = NULL;
	s->hdr_have = 0;
	s->body_len = s->body_have = 0;
}

bool mapstream_idle(const struct mapstream *s)
{
	return s->hdr_have == 0 && s->body == NULL;
}

/* Decodes s->body (one complete zstd frame, nothing after it) into a
 * NUL-terminated buffer of at most max_json bytes. */
static int decompress(struct mapstream *s, char **json, size_t *json_len, const char **why)
{
	unsigned long long declared = ZSTD_getFrameContentSize(s->body, s->body_len);
	ZSTD_inBuffer in = {.src = s->body, .size = s->body_len, .pos = 0};
	size_t cap, have = 0, ret;
	char *out;

	if (declared == ZSTD_CONTENTSIZE_ERROR) {
		*why = "map message is not a zstd frame";
		return -EBADMSG;
	}
	if (declared != ZSTD_CONTENTSIZE_UNKNOWN && declared > s->max_json) {
		*why = "zstd frame declares more than the decoded size limit";
		return -EMSGSIZE;
	}
	/* The declared size only sizes the first buffer, within the limit; the
	 * decoder below enforces the limit whatever the frame says. */
	cap = MAPSTREAM_FIRST_OUT;
	if (declared != ZSTD_CONTENTSIZE_UNKNOWN && declared < cap)
		cap = (size_t)declared;
	if (cap < MAPSTREAM_MIN_LIMIT)
		cap = MAPSTREAM_MIN_LIMIT; /* never 0: the buffer must be able to grow */
	if (cap > s->max_json)
		cap = s->max_json;
	s->dctx = dctx_new(s->max_json);
	if (!s->dctx) {
		*why = "no memory for a zstd decoder";
		return -ENOMEM;
	}
	out = xmalloc(cap + 1);
	for (;;) {
		ZSTD_outBuffer ob = {.dst = out, .size = cap, .pos = have};
		size_t in_before = in.pos;
		bool progress;

		ret = ZSTD_decompressStream(s->dctx, &ob, &in);
		if (ZSTD_isError(ret)) {
			if (ZSTD_getErrorCode(ret) == ZSTD_error_frameParameter_windowTooLarge) {
				/* We refuse windows larger than the decoded
				 * limit (see window_log_for()). */
				*why = "zstd frame window exceeds the decoded size limit";
				free(out);
				return -EMSGSIZE;
			}
			*why = "corrupt zstd frame in map message";
			goto bad;
		}
		progress = ob.pos > have || in.pos > in_before;
		have = ob.pos;
		if (ret == 0)
			break; /* the frame is complete */
		if (have == cap) {
			if (cap < s->max_json) {
				cap = cap > s->max_json / 2 ? s->max_json : cap * 2;
				out = xrealloc(out, cap + 1);
				continue;
			}
			/* Full at the limit: only input-only steps (a trailing
			 * checksum) may still succeed. */
			if (progress)
				continue;
			*why = "decoded map message exceeds the size limit";
			free(out);
			return -EMSGSIZE;
		}
		if (in.pos == in.size || !progress) {
			*why = "truncated zstd frame in map message";
			goto bad;
		}
	}
	if (in.pos != in.size) {
		*why = "bytes after the zstd frame in map message";
		goto bad;
	}
	if (have == 0) {
		*why = "empty map message";
		goto bad;
	}
	out[have] = '\0';
	*json = out;
	*json_len = have;
	return 0;
bad:
	free(out);
	return -EBADMSG;
}

ssize_t mapstream_feed(struct mapstream *s, const uint8_t *src, size_t len, char **json,
		       size_t *json_len, const char **why)
{
	size_t used = 0, take;
	uint32_t n;
	int ret;

	*json = NULL;
	*json_len = 0;
	if (!s->body) {
		take = MAPSTREAM_HDR_LEN - s->hdr_have;
		if (take > len)
			take = len;
		memcpy(s->hdr + s->hdr_have, src, take);
		s->hdr_have += take;
		used += take;
		if (s->hdr_have < MAPSTREAM_HDR_LEN)
			return (ssize_t)used;
		n = load_le32(s->hdr);
		if (n == 0) {
			*why = "map message of length 0";
			return -EMSGSIZE;
		}
		if (n > s->max_frame) {
			*why = "map message length over the limit";
			return -EMSGSIZE;
		}
		/* n is bounded by max_frame, so this is not a peer-chosen size. */
		s->body = xmalloc((size_t)n + 1);
		s->body_len = n;
		s->body_have = 0;
	}
	take = s->body_len - s->body_have;
	if (take > len - used)
		take = len - used;
	memcpy(s->body + s->body_have, src + used, take);
	s->body_have += take;
	used += take;
	if (s->body_have < s->body_len)
		return (ssize_t)used;

	if (s->zstd) {
		ret = decompress(s, json, json_len, why);
		free(s->body);
		ZSTD_freeDCtx(s->dctx);
		s->dctx = NULL;
	} else {
		/* Raw JSON: hand over the buffer itself. */
		s->body[s->body_len] = '\0';
		*json = (char *)s->body;
		*json_len = s->body_len;
		ret = 0;
	}
	s->body = NULL;
	s->body_len = s->body_have = 0;
	s->hdr_have = 0;
	if (ret < 0)
		return ret;
	return (ssize_t)used;
}
