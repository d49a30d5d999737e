/* mapstream.c: the map poll body reader against
 * tests/vectors/tailscale/mapresponse.json (testcontrol's real
 * stream, byte for byte, split at every byte), and the limits: lengths at
 * and over the frame limit, decoded sizes at and over the JSON limit with
 * and without a declared content size, corrupt and trailing frames, and
 * the decoder's buffers given back after a large message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <zstd.h>

#include "worker/control/mapstream.c"
#include "tests/unit/vectors.h"

/* Feeds buf in two pieces split at `split`, then checks that exactly the
 * expected messages came out, in order. */
static void feed_split(bool zstd, const uint8_t *buf, size_t len, size_t split,
		       const char *const *want, size_t n_want)
{
	struct mapstream s;
	size_t got = 0;
	const char *why = NULL;

	assert_int_equal(mapstream_init(&s, zstd, 0, 0), 0);
	for (int piece = 0; piece < 2; piece++) {
		const uint8_t *p = piece ? buf + split : buf;
		size_t left = piece ? len - split : split;

		while (left) {
			char *json;
			size_t jlen;
			ssize_t n = mapstream_feed(&s, p, left, &json, &jlen, &why);

			if (n < 0)
				fail_msg("split %zu: %s", split, why);
			assert_true((size_t)n <= left);
			p += n;
			left -= (size_t)n;
			if (!json) {
				assert_int_equal(left, 0);
				continue;
			}
			if (got >= n_want)
				fail_msg("split %zu: more messages than expected", split);
			assert_int_equal(jlen, strlen(want[got]));
			assert_memory_equal(json, want[got], jlen);
			assert_int_equal(json[jlen], '\0');
			free(json);
			got++;
		}
	}
	assert_int_equal(got, n_want);
	assert_true(mapstream_idle(&s));
	mapstream_destroy(&s);
}

/* The whole stream: each message's framing matches the vector (length
 * prefix, frame length) and the stream decodes to exactly the listed JSON
 * documents, wherever the chunks are split. */
static void test_vector_stream(void **state)
{
	json_t *root = vectors_load("tailscale/mapresponse.json");
	json_t *msgs = json_object_get(root, "messages"), *m;
	const char **want;
	size_t n_msgs = json_array_size(msgs), len, off = 0, i;
	uint8_t *stream = vectors_hex_alloc(root, "stream", &len);

	(void)state;
	assert_true(n_msgs >= 12);
	want = calloc(n_msgs, sizeof(*want));
	assert_non_null(want);
	json_array_foreach(msgs, i, m)
	{
		size_t flen, plen;
		uint8_t *framed = vectors_hex_alloc(m, "framed", &flen);
		uint8_t *prefix = vectors_hex_alloc(m, "length_prefix_le", &plen);
		json_int_t zlen = json_integer_value(json_object_get(m, "zstd_frame_len"));

		want[i] = vectors_str(m, "json");
		/* The framed bytes are the prefix, then the frame, in the stream. */
		assert_int_equal(plen, 4);
		assert_memory_equal(framed, prefix, 4);
		assert_int_equal(load_le32(prefix), (uint32_t)zlen);
		assert_int_equal(flen, 4 + (size_t)zlen);
		assert_true(off + flen <= len);
		assert_memory_equal(stream + off, framed, flen);
		off += flen;
		/* Each message alone, byte by byte. */
		{
			struct mapstream s;
			const char *why = NULL;
			char *json = NULL;
			size_t jlen = 0;

			assert_int_equal(mapstream_init(&s, true, 0, 0), 0);
			for (size_t b = 0; b < flen; b++) {
				ssize_t n = mapstream_feed(&s, framed + b, 1, &json, &jlen, &why);

				if (n != 1)
					fail_msg("message %zu byte %zu: %zd %s", i, b, n,
						 why ? why : "");
				if (b + 1 < flen)
					assert_null(json);
			}
			assert_non_null(json);
			assert_string_equal(json, want[i]);
			free(json);
			mapstream_destroy(&s);
		}
		free(framed);
		free(prefix);
	}
	assert_int_equal(off, len);
	for (size_t split = 0; split <= len; split++)
		feed_split(true, stream, len, split, want, n_msgs);
	free(want);
	free(stream);
	json_decref(root);
}

/* The non-streaming Compress:"" answer: the same framing around raw JSON. */
static void test_vector_uncompressed(void **state)
{
	json_t *root = vectors_load("tailscale/mapresponse.json");
	json_t *u = json_object_get(root, "uncompressed");
	size_t len, plen;
	uint8_t *body = vectors_hex_alloc(u, "body", &len);
	uint8_t *prefix = vectors_hex_alloc(u, "length_prefix_le", &plen);
	const char *want[] = {vectors_str(u, "json")};

	(void)state;
	assert_int_equal(load_le32(prefix), strlen(want[0]));
	for (size_t split = 0; split <= len; split++)
		feed_split(false, body, len, split, want, 1);
	free(body);
	free(prefix);
	json_decref(root);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

/* Feeds everything in one call per message; returns the first error or 0,
 * and the number of messages that came out. */
static ssize_t feed_all(struct mapstream *s, const uint8_t *buf, size_t len, size_t *msgs,
			size_t *last_len, const char **why)
{
	*msgs = 0;
	while (len) {
		char *json;
		size_t jlen;
		ssize_t n = mapstream_feed(s, buf, len, &json, &jlen, why);

		if (n < 0)
			return n;
		buf += n;
		len -= (size_t)n;
		if (json) {
			(*msgs)++;
			*last_len = jlen;
			free(json);
		}
	}
	return 0;
}

/* Lengths at the limit pass; over it fail from the 4-byte header alone,
 * before any body byte arrives; zero fails too. */
static void test_frame_limit(void **state)
{
	enum { LIMIT = 1000 };
	uint8_t *msg = malloc(4 + LIMIT + 1);
	struct mapstream s;
	const char *why = NULL;
	size_t msgs = 0, last = 0;
	char *json;
	size_t jlen;

	(void)state;
	assert_non_null(msg);
	/* Exactly LIMIT bytes of raw JSON: {"Domain":"aaaa..."}. */
	put_le32(msg, LIMIT);
	memset(msg + 4, 'a', LIMIT);
	memcpy(msg + 4, "{\"Domain\":\"", 11);
	memcpy(msg + 4 + LIMIT - 2, "\"}", 2);
	assert_int_equal(mapstream_init(&s, false, LIMIT, LIMIT), 0);
	assert_int_equal(feed_all(&s, msg, 4 + LIMIT, &msgs, &last, &why), 0);
	assert_int_equal(msgs, 1);
	assert_int_equal(last, LIMIT);
	mapstream_destroy(&s);

	/* LIMIT + 1: refused on the header, nothing else fed. */
	put_le32(msg, LIMIT + 1);
	assert_int_equal(mapstream_init(&s, false, LIMIT, LIMIT), 0);
	assert_int_equal(mapstream_feed(&s, msg, 3, &json, &jlen, &why), 3);
	assert_null(json);
	why = NULL;
	assert_int_equal(mapstream_feed(&s, msg + 3, 1, &json, &jlen, &why), -EMSGSIZE);
	assert_string_equal(why, "map message length over the limit");
	mapstream_destroy(&s);

	/* The largest u32 and zero, with zstd too. */
	for (int z = 0; z < 2; z++) {
		put_le32(msg, UINT32_MAX);
		assert_int_equal(mapstream_init(&s, z, 0, 0), 0);
		assert_int_equal(mapstream_feed(&s, msg, 4, &json, &jlen, &why), -EMSGSIZE);
		mapstream_destroy(&s);
		put_le32(msg, 0);
		assert_int_equal(mapstream_init(&s, z, 0, 0), 0);
		assert_int_equal(mapstream_feed(&s, msg, 4, &json, &jlen, &why), -EMSGSIZE);
		assert_string_equal(why, "map message of length 0");
		mapstream_destroy(&s);
	}
	/* The default frame limit itself is accepted from the header. */
	put_le32(msg, MAPSTREAM_DEFAULT_MAX_FRAME);
	assert_int_equal(mapstream_init(&s, true, 0, 0), 0);
	assert_int_equal(mapstream_feed(&s, msg, 4, &json, &jlen, &why), 4);
	assert_false(mapstream_idle(&s));
	mapstream_destroy(&s);
	put_le32(msg, MAPSTREAM_DEFAULT_MAX_FRAME + 1);
	assert_int_equal(mapstream_init(&s, true, 0, 0), 0);
	assert_int_equal(mapstream_feed(&s, msg, 4, &json, &jlen, &why), -EMSGSIZE);
	mapstream_destroy(&s);

	assert_int_equal(mapstream_init(&s, true, 1, 0), -EINVAL);
	assert_int_equal(mapstream_init(&s, true, 0, (size_t)MAPSTREAM_MAX_LIMIT + 1), -EINVAL);
	free(msg);
}

/* A framed zstd message of `plain` compressed; with_size false writes a
 * frame without a content size (streaming, as some encoders do). */
static uint8_t *zframe(const char *plain, size_t plen, bool with_size, size_t *out_len)
{
	ZSTD_CCtx *c = ZSTD_createCCtx();
	size_t bound = ZSTD_compressBound(plen), n;
	uint8_t *out = malloc(4 + bound + 64);

	assert_non_null(c);
	assert_non_null(out);
	ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, with_size ? 1 : 0);
	ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
	if (with_size) {
		n = ZSTD_compress2(c, out + 4, bound + 64, plain, plen);
	} else {
		ZSTD_inBuffer in = {plain, plen, 0};
		ZSTD_outBuffer ob = {out + 4, bound + 64, 0};
		size_t rem;

		do {
			rem = ZSTD_compressStream2(c, &ob, &in, ZSTD_e_end);
			assert_false(ZSTD_isError(rem));
		} while (rem);
		n = ob.pos;
		assert_int_equal(ZSTD_getFrameContentSize(out + 4, n), ZSTD_CONTENTSIZE_UNKNOWN);
	}
	assert_false(ZSTD_isError(n));
	ZSTD_freeCCtx(c);
	put_le32(out, (uint32_t)n);
	*out_len = 4 + n;
	return out;
}

static char *json_of(size_t len)
{
	char *s = malloc(len + 1);

	assert_non_null(s);
	memset(s, 'x', len);
	memcpy(s, "{\"Domain\":\"", 11);
	memcpy(s + len - 2, "\"}", 2);
	s[len] = '\0';
	return s;
}

/* Decoded sizes: at the limit pass, one over fails, whether or not the frame
 * declares its size; many times over fails without growing past the limit. */
static void test_decoded_limit(void **state)
{
	enum { LIMIT = 200000 };
	size_t sizes[] = {LIMIT - 1, LIMIT, LIMIT + 1, 4 * LIMIT};

	(void)state;
	for (int with_size = 0; with_size < 2; with_size++) {
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			char *plain = json_of(sizes[i]);
			size_t flen, msgs = 0, last = 0;
			uint8_t *f = zframe(plain, sizes[i], with_size, &flen);
			struct mapstream s;
			const char *why = NULL;
			ssize_t ret;

			assert_int_equal(mapstream_init(&s, true, 0, LIMIT), 0);
			ret = feed_all(&s, f, flen, &msgs, &last, &why);
			if (sizes[i] <= LIMIT) {
				if (ret)
					fail_msg("size %zu with_size %d: %s", sizes[i], with_size,
						 why);
				assert_int_equal(msgs, 1);
				assert_int_equal(last, sizes[i]);
			} else {
				assert_int_equal(ret, -EMSGSIZE);
				assert_int_equal(msgs, 0);
				assert_non_null(why);
			}
			mapstream_destroy(&s);
			free(f);
			free(plain);
		}
	}
}

/* No decoder is held between messages (a large message's window buffers
 * included), and each message still decodes, a large one and a small one
 * after it, with and without a declared content size. */
static void test_no_decoder_kept(void **state)
{
	enum { BIG = 1 << 20, SMALL = 300 };

	(void)state;
	for (int with_size = 0; with_size < 2; with_size++) {
		char *big = json_of(BIG), *small = json_of(SMALL);
		size_t blen, slen, msgs = 0, last = 0;
		uint8_t *fb = zframe(big, BIG, with_size, &blen);
		uint8_t *fs = zframe(small, SMALL, with_size, &slen);
		struct mapstream s;
		const char *why = NULL;

		assert_int_equal(mapstream_init(&s, true, 0, 2 * BIG), 0);
		assert_null(s.dctx);
		assert_int_equal(feed_all(&s, fb, blen, &msgs, &last, &why), 0);
		assert_int_equal(msgs, 1);
		assert_int_equal(last, BIG);
		assert_null(s.dctx);
		assert_int_equal(feed_all(&s, fs, slen, &msgs, &last, &why), 0);
		assert_int_equal(msgs, 1);
		assert_int_equal(last, SMALL);
		assert_null(s.dctx);
		mapstream_destroy(&s);
		free(fb);
		free(fs);
		free(big);
		free(small);
	}
}

/* Not zstd, corrupt, truncated, trailing bytes, two frames in one message:
 * each is -EBADMSG with a reason. */
static void test_bad_frames(void **state)
{
	const char *doc = "{\"KeepAlive\":true}";
	size_t flen, msgs, last;
	uint8_t *f = zframe(doc, strlen(doc), true, &flen);
	uint8_t *buf = malloc(2 * flen + 8);
	struct mapstream s;
	const char *why;
	uint32_t body = (uint32_t)(flen - 4);

	(void)state;
	assert_non_null(buf);
	/* Valid first, to know the baseline works. */
	assert_int_equal(mapstream_init(&s, true, 0, 0), 0);
	assert_int_equal(feed_all(&s, f, flen, &msgs, &last, &why), 0);
	assert_int_equal(msgs, 1);
	mapstream_destroy(&s);

	/* Raw JSON where a zstd frame is expected. */
	put_le32(buf, (uint32_t)strlen(doc));
	memcpy(buf + 4, doc, strlen(doc));
	assert_int_equal(mapstream_init(&s, true, 0, 0), 0);
	why = NULL;
	assert_int_equal(feed_all(&s, buf, 4 + strlen(doc), &msgs, &last, &why), -EBADMSG);
	assert_non_null(why);
	mapstream_destroy(&s);

	/* A flipped byte in the compressed payload (the checksum catches it). */
	memcpy(buf, f, flen);
	buf[flen - 6] ^= 0x55;
	assert_int_equal(mapstream_init(&s, true, 0, 0), 0);
	assert_int_equal(feed_all(&s, buf, flen, &msgs, &last, &why), -EBADMSG);
	mapstream_destroy(&s);

	/* The length covers only part of the frame. */
	memcpy(buf, f, flen);
	put_le32(buf, body - 3);
	assert_int_equal(mapstream_init(&s, true, 0, 0), 0);
	why = NULL;
	assert_int_equal(feed_all(&s, buf, flen - 3, &msgs, &last, &why), -EBADMSG);
	assert_string_equal(why, "truncated zstd frame in map message");
	mapstream_destroy(&s);

	/* Garbage after the frame inside the message. */
	memcpy(buf, f, flen);
	memcpy(buf + flen, "junk", 4);
	put_le32(buf, body + 4);
	assert_int_equal(mapstream_init(&s, true, 0, 0), 0);
	assert_int_equal(feed_all(&s, buf, flen + 4, &msgs, &last, &why), -EBADMSG);
	assert_string_equal(why, "bytes after the zstd frame in map message");
	mapstream_destroy(&s);

	/* Two complete frames in one message. */
	memcpy(buf, f, flen);
	memcpy(buf + flen, f + 4, body);
	put_le32(buf, 2 * body);
	assert_int_equal(mapstream_init(&s, true, 0, 0), 0);
	assert_int_equal(feed_all(&s, buf, 4 + 2 * body, &msgs, &last, &why), -EBADMSG);
	mapstream_destroy(&s);

	/* A frame of nothing (declared content size 0) is an empty message. */
	free(f);
	f = zframe("", 0, true, &flen);
	assert_int_equal(mapstream_init(&s, true, 0, 0), 0);
	why = NULL;
	assert_int_equal(feed_all(&s, f, flen, &msgs, &last, &why), -EBADMSG);
	assert_string_equal(why, "empty map message");
	mapstream_destroy(&s);
	free(f);
	f = zframe(doc, strlen(doc), true, &flen);

	/* A half-received message leaves the stream not idle. */
	assert_int_equal(mapstream_init(&s, true, 0, 0), 0);
	assert_true(mapstream_idle(&s));
	assert_int_equal(feed_all(&s, f, 2, &msgs, &last, &why), 0);
	assert_false(mapstream_idle(&s));
	assert_int_equal(feed_all(&s, f + 2, 4, &msgs, &last, &why), 0);
	assert_false(mapstream_idle(&s));
	mapstream_destroy(&s);
	free(buf);
	free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vector_stream), cmocka_unit_test(test_vector_uncompressed),
		cmocka_unit_test(test_frame_limit),   cmocka_unit_test(test_decoded_limit),
		cmocka_unit_test(test_bad_frames),    cmocka_unit_test(test_no_decoder_kept),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
