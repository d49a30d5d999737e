/* ts2021 handshake framing, record layer and early payload. See ts2021.h
 * for the wire formats; upstream reference: tailscale control/controlbase
 * and control/ts2021. */
#include "ts2021.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "keys.h"
#include "mem.h"

_Static_assert(offsetof(struct ts2021_initiation, ephemeral) == TS2021_INIT_HDR_LEN,
	       "Noise message 1 follows the 5-byte header");
_Static_assert(offsetof(struct ts2021_response, ephemeral) == TS2021_HDR_LEN,
	       "Noise message 2 follows the 3-byte header");
_Static_assert(TS2021_INIT_LEN - TS2021_INIT_HDR_LEN == TS2021_INIT_PAYLOAD_LEN, "init");
_Static_assert(TS2021_RESP_LEN - TS2021_HDR_LEN == TS2021_RESP_PAYLOAD_LEN, "resp");

static const uint8_t early_magic[TS2021_EARLY_MAGIC_LEN] = {0xff, 0xff, 0xff, 'T', 'S'};

static uint16_t load_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void store_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static uint32_t load_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* 4 zero bytes, then the counter big-endian: ts2021's layout, where the
 * Noise spec (and WireGuard) put a little-endian counter. */
static void nonce_be(uint8_t nonce[static NOISE_NONCE_LEN], uint64_t counter)
{
	memset(nonce, 0, 4);
	for (int i = 0; i < 8; i++)
		nonce[4 + i] = (uint8_t)(counter >> (56 - 8 * i));
}

void ts2021_conn_destroy(struct ts2021_conn *c)
{
	sodium_memzero(c, sizeof(*c));
}

size_t ts2021_prologue(char buf[static TS2021_PROLOGUE_MAX], uint16_t version)
{
	int n = snprintf(buf, TS2021_PROLOGUE_MAX, "Tailscale Control Protocol v%u",
			 (unsigned int)version);

	return (size_t)n;
}

static void set_cipher(struct ts2021_cipher *c, const uint8_t key[static NOISE_KEY_LEN])
{
	memcpy(c->key, key, NOISE_KEY_LEN);
	c->counter = 0;
}

/* Moves a finished handshake's keys into conn and wipes the handshake. */
static int finish(struct noise_handshake *hs, struct ts2021_conn *conn, uint16_t version)
{
	uint8_t tx[NOISE_KEY_LEN], rx[NOISE_KEY_LEN];
	int ret;

	memset(conn, 0, sizeof(*conn));
	ret = noise_handshake_split(hs, tx, rx, conn->handshake_hash);
	if (ret == 0) {
		set_cipher(&conn->tx, tx);
		set_cipher(&conn->rx, rx);
		memcpy(conn->peer, hs->rs, NOISE_KEY_LEN);
		conn->version = version;
	}
	sodium_memzero(tx, sizeof(tx));
	sodium_memzero(rx, sizeof(rx));
	noise_handshake_destroy(hs);
	return ret;
}

int ts2021_client_init(struct ts2021_client *c, uint16_t version,
		       const uint8_t machine_priv[static NOISE_KEY_LEN],
		       const uint8_t server_pub[static NOISE_KEY_LEN])
{
	char prologue[TS2021_PROLOGUE_MAX];
	size_t plen = ts2021_prologue(prologue, version);

	memset(c, 0, sizeof(*c));
	c->version = version;
	return noise_handshake_init(&c->hs, NOISE_IK, true, (const uint8_t *)prologue, plen,
				    machine_priv, server_pub, NULL);
}

void ts2021_client_destroy(struct ts2021_client *c)
{
	noise_handshake_destroy(&c->hs);
	sodium_memzero(c, sizeof(*c));
	c->hs.step = NOISE_STEP_FAILED;
}

int ts2021_client_initiation(struct ts2021_client *c, uint8_t out[static TS2021_INIT_LEN])
{
	struct ts2021_initiation *m = (struct ts2021_initiation *)out;
	size_t n;
	int ret;

	if (c->hs.step != NOISE_STEP_MSG1)
		return -EPROTO;
	memset(out, 0, TS2021_INIT_LEN);
	store_be16(m->version, c->version);
	m->type = TS2021_MSG_INITIATION;
	store_be16(m->length, TS2021_INIT_PAYLOAD_LEN);
	/* e ‖ enc(s) ‖ tag is exactly Noise message 1 with an empty payload. */
	ret = noise_handshake_write(&c->hs, NULL, 0, out + TS2021_INIT_HDR_LEN,
				    TS2021_INIT_PAYLOAD_LEN, &n);
	if (ret < 0)
		return ret;
	if (n != TS2021_INIT_PAYLOAD_LEN)
		return -EPROTO;
	return 0;
}

void ts2021_initiation_base64(char out[static TS2021_INIT_B64_LEN],
			      const uint8_t init[static TS2021_INIT_LEN])
{
	sodium_bin2base64(out, TS2021_INIT_B64_LEN, init, TS2021_INIT_LEN,
			  sodium_base64_VARIANT_ORIGINAL);
}

static void copy_printable(char *dst, size_t cap, const uint8_t *src, size_t len)
{
	size_t n = len < cap - 1 ? len : cap - 1;

	for (size_t i = 0; i < n; i++)
		dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? (char)src[i] : '?';
	dst[n] = '\0';
}

ssize_t ts2021_client_response(struct ts2021_client *c, const uint8_t *src, size_t len,
			       struct ts2021_conn *conn, const char **why)
{
	const struct ts2021_response *m = (const struct ts2021_response *)src;
	uint8_t payload[1];
	size_t plen;
	int ret;

	if (c->hs.step != NOISE_STEP_MSG2) {
		*why = "handshake response out of turn";
		return -EPROTO;
	}
	if (len < TS2021_HDR_LEN)
		return 0;
	if (m->type == TS2021_MSG_ERROR) {
		size_t tlen = load_be16(m->length), have = len - TS2021_HDR_LEN;

		copy_printable(c->server_error, sizeof(c->server_error), src + TS2021_HDR_LEN,
			       have < tlen ? have : tlen);
		*why = "server refused the handshake";
		ret = -ECONNREFUSED;
		goto err;
	}
	if (m->type != TS2021_MSG_RESPONSE) {
		*why = "unexpected handshake response type";
		ret = -EBADMSG;
		goto err;
	}
	if (load_be16(m->length) != TS2021_RESP_PAYLOAD_LEN) {
		*why = "wrong handshake response length";
		ret = -EBADMSG;
		goto err;
	}
	if (len < TS2021_RESP_LEN)
		return 0;
	ret = noise_handshake_read(&c->hs, src + TS2021_HDR_LEN, TS2021_RESP_PAYLOAD_LEN, payload,
				   sizeof(payload), &plen, why);
	if (ret < 0) {
		ret = -EBADMSG;
		goto err;
	}
	ret = finish(&c->hs, conn, c->version);
	if (ret < 0) {
		*why = "handshake did not finish";
		goto err;
	}
	return TS2021_RESP_LEN;
err:
	noise_handshake_destroy(&c->hs);
	return ret;
}

int ts2021_server_accept(const uint8_t server_priv[static NOISE_KEY_LEN], const uint8_t *init,
			 size_t len, const uint8_t *e_priv, uint8_t resp[static TS2021_RESP_LEN],
			 struct ts2021_conn *conn, const char **why)
{
	const struct ts2021_initiation *m = (const struct ts2021_initiation *)init;
	struct ts2021_response *r = (struct ts2021_response *)resp;
	char prologue[TS2021_PROLOGUE_MAX];
	struct noise_handshake hs;
	uint8_t payload[1];
	uint16_t version;
	size_t n;
	int ret;

	memset(conn, 0, sizeof(*conn));
	memset(resp, 0, TS2021_RESP_LEN);
	/* The same checks, in the same order and words, as upstream, so a
	 * client sees the same error from us as from Tailscale. */
	if (len != TS2021_INIT_LEN) {
		*why = "wrong handshake initiation size";
		return -EPROTO;
	}
	if (m->type != TS2021_MSG_INITIATION) {
		*why = "unexpected handshake message type";
		return -EPROTO;
	}
	if (load_be16(m->length) != TS2021_INIT_PAYLOAD_LEN) {
		*why = "wrong handshake initiation length";
		return -EPROTO;
	}
	/* Any version is accepted here; the caller decides what to serve. */
	version = load_be16(m->version);
	n = ts2021_prologue(prologue, version);
	ret = noise_handshake_init(&hs, NOISE_IK, false, (const uint8_t *)prologue, n, server_priv,
				   NULL, NULL);
	if (ret < 0) {
		*why = "invalid server key";
		return ret;
	}
	if (e_priv)
		noise_handshake_set_ephemeral(&hs, e_priv);

	ret = noise_handshake_read(&hs, init + TS2021_INIT_HDR_LEN, TS2021_INIT_PAYLOAD_LEN,
				   payload, sizeof(payload), &n, why);
	if (ret < 0) {
		ret = -EBADMSG;
		goto out;
	}
	r->type = TS2021_MSG_RESPONSE;
	store_be16(r->length, TS2021_RESP_PAYLOAD_LEN);
	ret = noise_handshake_write(&hs, NULL, 0, resp + TS2021_HDR_LEN, TS2021_RESP_PAYLOAD_LEN,
				    &n);
	if (ret < 0) {
		*why = "cannot write the handshake response";
		ret = -EBADMSG;
		goto out;
	}
	ret = finish(&hs, conn, version);
	if (ret < 0)
		*why = "handshake did not finish";
out:
	if (ret < 0)
		memset(resp, 0, TS2021_RESP_LEN);
	noise_handshake_destroy(&hs);
	return ret;
}

int ts2021_initiation_decode(const char *b64, uint8_t *out, size_t cap, size_t *len)
{
	*len = 0;
	if (sodium_base642bin(out, cap, b64, strlen(b64), NULL, len, NULL,
			      sodium_base64_VARIANT_ORIGINAL) != 0) {
		*len = 0;
		return -EBADMSG;
	}
	return 0;
}

ssize_t ts2021_error_message(uint8_t *out, size_t cap, const char *text)
{
	size_t n = strlen(text);

	if (n > UINT16_MAX)
		n = UINT16_MAX;
	if (cap < TS2021_HDR_LEN + n)
		return -ENOSPC;
	out[0] = TS2021_MSG_ERROR;
	store_be16(out + 1, (uint16_t)n);
	memcpy(out + TS2021_HDR_LEN, text, n);
	return (ssize_t)(TS2021_HDR_LEN + n);
}

ssize_t ts2021_seal_record(struct ts2021_cipher *tx, const uint8_t *pt, size_t len, uint8_t *out,
			   size_t cap)
{
	uint8_t nonce[NOISE_NONCE_LEN];

	if (len > TS2021_MAX_PLAINTEXT)
		return -EMSGSIZE;
	if (cap < TS2021_HDR_LEN + len + NOISE_TAG_LEN)
		return -ENOSPC;
	if (tx->counter == UINT64_MAX)
		return -EOVERFLOW;
	out[0] = TS2021_MSG_RECORD;
	store_be16(out + 1, (uint16_t)(len + NOISE_TAG_LEN));
	nonce_be(nonce, tx->counter);
	noise_aead_encrypt(out + TS2021_HDR_LEN, tx->key, nonce, NULL, 0, pt, len);
	tx->counter++;
	return (ssize_t)(TS2021_HDR_LEN + len + NOISE_TAG_LEN);
}

size_t ts2021_sealed_len(size_t len)
{
	size_t records = (len + TS2021_MAX_PLAINTEXT - 1) / TS2021_MAX_PLAINTEXT;

	return len + records * (TS2021_HDR_LEN + NOISE_TAG_LEN);
}

ssize_t ts2021_seal(struct ts2021_cipher *tx, const uint8_t *pt, size_t len, uint8_t *out,
		    size_t cap)
{
	size_t pos = 0;

	/* Check the room first so a short buffer never leaves the counter
	 * advanced past records the caller did not get. */
	if (cap < ts2021_sealed_len(len))
		return -ENOSPC;
	while (len > 0) {
		size_t chunk = len < TS2021_MAX_PLAINTEXT ? len : TS2021_MAX_PLAINTEXT;
		ssize_t n = ts2021_seal_record(tx, pt, chunk, out + pos, cap - pos);

		if (n < 0)
			return n;
		pos += (size_t)n;
		pt += chunk;
		len -= chunk;
	}
	return (ssize_t)pos;
}

void ts2021_reader_init(struct ts2021_reader *r, struct ts2021_cipher *rx)
{
	memset(r, 0, sizeof(*r));
	r->rx = rx;
}

void ts2021_reader_destroy(struct ts2021_reader *r)
{
	sodium_memzero(r, sizeof(*r));
}

/* Validates the 3-byte header in r->buf: 0 or a fatal error. */
static int check_header(const uint8_t *hdr, size_t *frame_len, const char **why)
{
	size_t clen = load_be16(hdr + 1);

	if (hdr[0] != TS2021_MSG_RECORD) {
		*why = "record has a type other than 0x04";
		return -EBADMSG;
	}
	if (clen > TS2021_MAX_CIPHERTEXT) {
		*why = "record larger than 4096 bytes";
		return -EMSGSIZE;
	}
	if (clen < NOISE_TAG_LEN) {
		*why = "record shorter than its tag";
		return -EBADMSG;
	}
	*frame_len = TS2021_HDR_LEN + clen;
	return 0;
}

int ts2021_reader_next(struct ts2021_reader *r, const uint8_t *src, size_t len, size_t *consumed,
		       const uint8_t **pt, size_t *pt_len, const char **why)
{
	uint8_t nonce[NOISE_NONCE_LEN];
	size_t frame_len = 0, take;
	int ret;

	*consumed = 0;
	*pt = NULL;
	*pt_len = 0;
	if (r->failed) {
		*why = "record stream already failed";
		return -EBADMSG;
	}

	/* Header first, so a frame that can never be valid is refused before
	 * waiting for its body. */
	if (r->have < TS2021_HDR_LEN) {
		take = TS2021_HDR_LEN - r->have;
		if (take > len)
			take = len;
		memcpy(r->buf + r->have, src, take);
		r->have += take;
		*consumed += take;
		if (r->have < TS2021_HDR_LEN)
			return 0;
	}
	ret = check_header(r->buf, &frame_len, why);
	if (ret < 0)
		goto err;

	take = frame_len - r->have;
	if (take > len - *consumed)
		take = len - *consumed;
	memcpy(r->buf + r->have, src + *consumed, take);
	r->have += take;
	*consumed += take;
	if (r->have < frame_len)
		return 0;

	if (r->rx->counter == UINT64_MAX) {
		*why = "receive counter exhausted";
		ret = -EOVERFLOW;
		goto err;
	}
	nonce_be(nonce, r->rx->counter);
	/* Decrypt in place; the plaintext then sits right after the header. */
	ret = noise_aead_decrypt(r->buf + TS2021_HDR_LEN, r->rx->key, nonce, NULL, 0,
				 r->buf + TS2021_HDR_LEN, frame_len - TS2021_HDR_LEN);
	if (ret < 0) {
		*why = "record does not decrypt";
		goto err;
	}
	r->rx->counter++;
	*pt = r->buf + TS2021_HDR_LEN;
	*pt_len = frame_len - TS2021_HDR_LEN - NOISE_TAG_LEN;
	/* The next call starts a new frame; the plaintext stays readable
	 * until then. */
	r->have = 0;
	return 1;
err:
	r->failed = true;
	sodium_memzero(r->buf, sizeof(r->buf));
	r->have = 0;
	return ret;
}

void ts2021_early_init(struct ts2021_early *e)
{
	memset(e, 0, sizeof(*e));
	e->state = TS2021_EARLY_MAGIC;
}

void ts2021_early_destroy(struct ts2021_early *e)
{
	free(e->json);
	memset(e, 0, sizeof(*e));
	e->state = TS2021_EARLY_FAILED;
}

int ts2021_early_feed(struct ts2021_early *e, const uint8_t *pt, size_t len, size_t *consumed,
		      const char **why)
{
	size_t i = 0;

	*consumed = 0;
	if (e->state == TS2021_EARLY_FAILED) {
		*why = "early payload already failed";
		return -EBADMSG;
	}
	if (e->state == TS2021_EARLY_DONE)
		return 1;

	/* Magic: decide at the first byte that differs, so HTTP/2 is never
	 * held back longer than needed (its first byte is never 0xff). */
	while (e->state == TS2021_EARLY_MAGIC && i < len) {
		if (pt[i] != early_magic[e->hdr_have]) {
			e->state = TS2021_EARLY_DONE;
			*consumed = i;
			return 1;
		}
		e->hdr[e->hdr_have++] = pt[i++];
		if (e->hdr_have == TS2021_EARLY_MAGIC_LEN) {
			e->present = true;
			e->state = TS2021_EARLY_LENGTH;
		}
	}
	while (e->state == TS2021_EARLY_LENGTH && i < len) {
		e->hdr[e->hdr_have++] = pt[i++];
		if (e->hdr_have < TS2021_EARLY_HDR_LEN)
			continue;
		e->json_len = load_be32(e->hdr + TS2021_EARLY_MAGIC_LEN);
		if (e->json_len == 0 || e->json_len > TS2021_EARLY_MAX_JSON) {
			*why = e->json_len ? "early payload larger than 64 KiB"
					   : "early payload is empty";
			e->state = TS2021_EARLY_FAILED;
			*consumed = i;
			return -EMSGSIZE;
		}
		e->state = TS2021_EARLY_JSON;
	}
	if (e->state == TS2021_EARLY_JSON && i < len) {
		size_t want = e->json_len - e->json_have, take = len - i;

		if (take > want)
			take = want;
		/* Grow with what actually arrived, never to the declared
		 * size up front. */
		if (e->json_have + take > e->json_cap) {
			size_t cap = e->json_cap ? 2 * e->json_cap : 256;

			if (cap < e->json_have + take)
				cap = e->json_have + take;
			if (cap > e->json_len)
				cap = e->json_len;
			e->json = xrealloc(e->json, cap);
			e->json_cap = cap;
		}
		memcpy(e->json + e->json_have, pt + i, take);
		e->json_have += take;
		i += take;
		if (e->json_have == e->json_len)
			e->state = TS2021_EARLY_DONE;
	}
	*consumed = i;
	return e->state == TS2021_EARLY_DONE ? 1 : 0;
}

size_t ts2021_early_passthrough(const struct ts2021_early *e, const uint8_t **p)
{
	*p = e->hdr;
	if (e->state != TS2021_EARLY_DONE || e->present)
		return 0;
	return e->hdr_have;
}

int ts2021_early_challenge(const struct ts2021_early *e, uint8_t chal[static NOISE_KEY_LEN],
			   const char **why)
{
	json_error_t err;
	json_t *doc;
	const char *s;
	int ret = -EBADMSG;

	if (e->state != TS2021_EARLY_DONE || !e->present)
		return -ENOENT;
	doc = json_loadb((const char *)e->json, e->json_len, JSON_REJECT_DUPLICATES, &err);
	if (!doc) {
		*why = "early payload is not JSON";
		return -EBADMSG;
	}
	s = json_string_value(json_object_get(doc, "nodeKeyChallenge"));
	if (!s) {
		*why = "early payload has no nodeKeyChallenge string";
		goto out;
	}
	if (keys_from_text("chalpub", s, chal) < 0) {
		*why = "nodeKeyChallenge is not chalpub:<64 hex>";
		goto out;
	}
	ret = 0;
out:
	json_decref(doc);
	return ret;
}
