/* The ts2021 record reader and early-payload parser on arbitrary bytes.
 *
 * Byte 0 selects the mode and a chunk size:
 *   bit 7 clear: the rest is a server->client record stream, fed to the
 *     reader in chunks of (byte0 & 0x7f) + 1 bytes; every decrypted record
 *     goes to the early-payload parser. Valid records must be sealed with
 *     the fixed key below (the seeds are).
 *   bit 7 set: the rest is plaintext; it is sealed with the fixed key in
 *     records of (byte0 & 0x7f) * 37 + 1 bytes (capped at the maximum), read
 *     back in chunks, and must come back unchanged, so the early-payload
 *     parser sees arbitrary plaintext split at arbitrary record boundaries. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "worker/control/ts2021.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The key the seeds were sealed with: bytes 0x00..0x1f. */
static void fixed_key(struct ts2021_cipher *c)
{
	for (int i = 0; i < NOISE_KEY_LEN; i++)
		c->key[i] = (uint8_t)i;
	c->counter = 0;
}

/* Feeds one decrypted record to the early parser; after the decision, the
 * HTTP/2 bytes are counted and checked to lie inside the record. Returns
 * the number of HTTP/2 bytes this record carried, or -1 to stop. */
static long take_plaintext(struct ts2021_early *early, const uint8_t *pt, size_t len)
{
	const char *why = NULL;
	const uint8_t *pass;
	size_t used = 0;
	int ret;

	if (early->state == TS2021_EARLY_DONE)
		return (long)len;
	ret = ts2021_early_feed(early, pt, len, &used, &why);
	if (ret < 0) {
		if (!why)
			abort();
		return -1;
	}
	if (used > len)
		abort();
	if (ret == 0) {
		if (used != len)
			abort();
		return 0;
	}
	if (ts2021_early_passthrough(early, &pass) > TS2021_EARLY_MAGIC_LEN - 1)
		abort();
	if (early->present && early->json_have != early->json_len)
		abort();
	return (long)(len - used);
}

static void read_stream(const uint8_t *src, size_t len, size_t chunk, struct ts2021_cipher *rx,
			uint8_t *echo, size_t echo_cap, size_t *echo_len)
{
	struct ts2021_reader *r = malloc(sizeof(*r));
	struct ts2021_early early;
	bool early_failed = false;
	size_t pos = 0;

	if (!r)
		abort();
	ts2021_reader_init(r, rx);
	ts2021_early_init(&early);
	while (pos < len) {
		size_t take = len - pos < chunk ? len - pos : chunk;
		size_t off = 0;

		while (off < take) {
			const uint8_t *pt;
			size_t used, plen;
			const char *why = NULL;
			int ret = ts2021_reader_next(r, src + pos + off, take - off, &used, &pt,
						     &plen, &why);

			if (ret < 0) {
				if (!why)
					abort();
				goto out;
			}
			off += used;
			if (ret == 0) {
				if (off != take)
					abort();
				continue;
			}
			if (plen > TS2021_MAX_PLAINTEXT)
				abort();
			if (echo) {
				if (*echo_len + plen > echo_cap)
					abort();
				memcpy(echo + *echo_len, pt, plen);
				*echo_len += plen;
			}
			/* A refused early payload ends that parser, not the
			 * record stream: keep reading to check the records. */
			if (!early_failed && take_plaintext(&early, pt, plen) < 0)
				early_failed = true;
		}
		pos += take;
	}
out:
	ts2021_early_destroy(&early);
	ts2021_reader_destroy(r);
	free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ts2021_cipher tx, rx;
	size_t chunk;

	if (size < 1)
		return 0;
	/* Idempotent; selects libsodium's fast ChaCha20 code paths. */
	if (sodium_init() < 0)
		abort();
	fixed_key(&rx);
	chunk = (size_t)(data[0] & 0x7f) + 1;
	if (!(data[0] & 0x80)) {
		read_stream(data + 1, size - 1, chunk, &rx, NULL, 0, NULL);
		return 0;
	}

	/* Plaintext mode: seal, read back, compare. */
	size_t rec = (size_t)(data[0] & 0x7f) * 37 + 1, n = size - 1, pos = 0, wlen = 0;
	size_t back_len = 0, wire_cap;
	uint8_t *wire, *back;

	if (rec > TS2021_MAX_PLAINTEXT)
		rec = TS2021_MAX_PLAINTEXT;
	wire_cap = n + (n / rec + 1) * (TS2021_HDR_LEN + NOISE_TAG_LEN);
	wire = malloc(wire_cap + 1);
	back = malloc(n + 1);
	if (!wire || !back)
		abort();
	fixed_key(&tx);
	while (pos < n) {
		size_t take = n - pos < rec ? n - pos : rec;
		ssize_t w =
			ts2021_seal_record(&tx, data + 1 + pos, take, wire + wlen, wire_cap - wlen);

		if (w < 0)
			abort();
		wlen += (size_t)w;
		pos += take;
	}
	read_stream(wire, wlen, chunk, &rx, back, n, &back_len);
	/* Every record is authentic, so the reader must return all of it. */
	if (back_len != n || (n && memcmp(back, data + 1, n) != 0))
		abort();
	free(wire);
	free(back);
	return 0;
}
