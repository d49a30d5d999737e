/* ts2021.c against tests/vectors/tailscale/ts2021.json, recorded
 * from upstream tailscale (controlbase, controlhttp, ts2021): the initiation
 * and response byte for byte from both roles, transport keys, records with
 * the big-endian nonce (the second record is the one a little-endian nonce
 * gets wrong), the early payload spread over three records, and upstream's
 * handshake error messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "worker/control/ts2021.c"
#include "tests/unit/vectors.h"

struct fixture {
	json_t *root;
	uint16_t version;
	uint8_t machine_priv[32], machine_pub[32], client_e[32];
	uint8_t server_priv[32], server_pub[32], server_e[32];
	uint8_t c2s[32], s2c[32], hh[32];
	uint8_t init[TS2021_INIT_LEN], resp[TS2021_RESP_LEN];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	uint8_t raw[32];

	assert_non_null(f);
	f->root = vectors_load("tailscale/ts2021.json");
	f->version = (uint16_t)json_integer_value(json_object_get(f->root, "protocol_version"));
	assert_int_equal(f->version, 130);
	vectors_hex(f->root, "client_machine_private", f->machine_priv, 32);
	vectors_hex(f->root, "client_machine_public", f->machine_pub, 32);
	vectors_hex(f->root, "client_ephemeral_private", f->client_e, 32);
	vectors_hex(f->root, "server_static_private", f->server_priv, 32);
	vectors_hex(f->root, "server_static_public", f->server_pub, 32);
	vectors_hex(f->root, "server_ephemeral_private", f->server_e, 32);
	vectors_hex(f->root, "c2s_key", f->c2s, 32);
	vectors_hex(f->root, "s2c_key", f->s2c, 32);
	vectors_hex(f->root, "handshake_hash", f->hh, 32);
	vectors_hex(f->root, "initiation", f->init, TS2021_INIT_LEN);
	vectors_hex(f->root, "response", f->resp, TS2021_RESP_LEN);

	/* The ephemerals are upstream's clamped versions of the raw bytes. */
	vectors_hex(f->root, "client_ephemeral_raw_random", raw, 32);
	keys_clamp(raw);
	assert_memory_equal(raw, f->client_e, 32);
	vectors_hex(f->root, "server_ephemeral_raw_random", raw, 32);
	keys_clamp(raw);
	assert_memory_equal(raw, f->server_e, 32);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	json_decref(f->root);
	free(f);
	return 0;
}

/* Client side of the vector handshake; conn gets the client's keys. */
static void client_handshake(struct fixture *f, struct ts2021_conn *conn)
{
	struct ts2021_client c;
	uint8_t init[TS2021_INIT_LEN];
	const char *why = NULL;

	assert_int_equal(ts2021_client_init(&c, f->version, f->machine_priv, f->server_pub), 0);
	noise_handshake_set_ephemeral(&c.hs, f->client_e);
	assert_int_equal(ts2021_client_initiation(&c, init), 0);
	assert_memory_equal(init, f->init, TS2021_INIT_LEN);
	assert_int_equal(ts2021_client_response(&c, f->resp, TS2021_RESP_LEN, conn, &why),
			 TS2021_RESP_LEN);
	ts2021_client_destroy(&c);
}

static void server_handshake(struct fixture *f, struct ts2021_conn *conn)
{
	uint8_t resp[TS2021_RESP_LEN];
	const char *why = NULL;

	assert_int_equal(ts2021_server_accept(f->server_priv, f->init, TS2021_INIT_LEN, f->server_e,
					      resp, conn, &why),
			 0);
	assert_memory_equal(resp, f->resp, TS2021_RESP_LEN);
}

static void test_prologue(void **state)
{
	struct fixture *f = *state;
	char buf[TS2021_PROLOGUE_MAX];

	assert_int_equal(ts2021_prologue(buf, f->version),
			 strlen(vectors_str(f->root, "prologue")));
	assert_string_equal(buf, vectors_str(f->root, "prologue"));
	assert_int_equal(ts2021_prologue(buf, 65535), TS2021_PROLOGUE_MAX - 1);
	assert_string_equal(buf, "Tailscale Control Protocol v65535");
}

static void test_handshake(void **state)
{
	struct fixture *f = *state;
	struct ts2021_client c;
	struct ts2021_conn cc, sc;
	uint8_t init[TS2021_INIT_LEN], resp[TS2021_RESP_LEN];
	char b64[TS2021_INIT_B64_LEN];
	const char *why = NULL;

	/* Initiation, and its header form. */
	assert_int_equal(ts2021_client_init(&c, f->version, f->machine_priv, f->server_pub), 0);
	noise_handshake_set_ephemeral(&c.hs, f->client_e);
	assert_int_equal(ts2021_client_initiation(&c, init), 0);
	assert_memory_equal(init, f->init, TS2021_INIT_LEN);
	assert_int_equal(ts2021_client_initiation(&c, init), -EPROTO);
	ts2021_initiation_base64(b64, init);
	assert_string_equal(b64, vectors_str(f->root, "x_tailscale_handshake"));
	/* ...and the header form decodes back. */
	uint8_t dec[TS2021_INIT_LEN + 8];
	size_t declen;
	assert_int_equal(ts2021_initiation_decode(b64, dec, sizeof(dec), &declen), 0);
	assert_int_equal(declen, TS2021_INIT_LEN);
	assert_memory_equal(dec, f->init, TS2021_INIT_LEN);
	assert_int_equal(ts2021_initiation_decode(b64, dec, 100, &declen), -EBADMSG);
	assert_int_equal(ts2021_initiation_decode("not base64!", dec, sizeof(dec), &declen),
			 -EBADMSG);

	/* Server: the same response, the client's machine key learnt. */
	assert_int_equal(ts2021_server_accept(f->server_priv, init, TS2021_INIT_LEN, f->server_e,
					      resp, &sc, &why),
			 0);
	assert_memory_equal(resp, f->resp, TS2021_RESP_LEN);
	assert_memory_equal(sc.peer, f->machine_pub, 32);
	assert_int_equal(sc.version, 130);
	assert_memory_equal(sc.handshake_hash, f->hh, 32);
	assert_memory_equal(sc.rx.key, f->c2s, 32);
	assert_memory_equal(sc.tx.key, f->s2c, 32);

	/* Client: the response arrives one byte at a time. */
	for (size_t i = 0; i < TS2021_RESP_LEN - 1; i++)
		assert_int_equal(ts2021_client_response(&c, resp, i, &cc, &why), 0);
	assert_int_equal(ts2021_client_response(&c, resp, TS2021_RESP_LEN, &cc, &why),
			 TS2021_RESP_LEN);
	assert_memory_equal(cc.handshake_hash, f->hh, 32);
	assert_memory_equal(cc.tx.key, f->c2s, 32);
	assert_memory_equal(cc.rx.key, f->s2c, 32);
	assert_memory_equal(cc.peer, f->server_pub, 32);
	assert_int_equal(cc.tx.counter, 0);
	assert_int_equal(ts2021_client_response(&c, resp, TS2021_RESP_LEN, &cc, &why), -EPROTO);
	ts2021_client_destroy(&c);
	ts2021_conn_destroy(&cc);
	ts2021_conn_destroy(&sc);
}

static void test_handshake_tamper(void **state)
{
	struct fixture *f = *state;
	struct ts2021_client c;
	struct ts2021_conn conn;
	uint8_t init[TS2021_INIT_LEN], resp[TS2021_RESP_LEN];
	const char *why = NULL;

	/* A flipped bit anywhere in the Noise part of the initiation fails
	 * authentication on the server (no error message is sent). */
	for (size_t i = TS2021_INIT_HDR_LEN; i < TS2021_INIT_LEN; i += 5) {
		memcpy(init, f->init, sizeof(init));
		init[i] ^= 0x10;
		why = NULL;
		assert_int_equal(ts2021_server_accept(f->server_priv, init, sizeof(init), NULL,
						      resp, &conn, &why),
				 -EBADMSG);
		assert_non_null(why);
	}
	/* The version is bound through the prologue. */
	memcpy(init, f->init, sizeof(init));
	init[1] ^= 1;
	assert_int_equal(
		ts2021_server_accept(f->server_priv, init, sizeof(init), NULL, resp, &conn, &why),
		-EBADMSG);

	/* A flipped bit in the response fails on the client. */
	for (size_t i = TS2021_HDR_LEN; i < TS2021_RESP_LEN; i += 3) {
		memcpy(resp, f->resp, sizeof(resp));
		resp[i] ^= 0x01;
		assert_int_equal(ts2021_client_init(&c, f->version, f->machine_priv, f->server_pub),
				 0);
		noise_handshake_set_ephemeral(&c.hs, f->client_e);
		assert_int_equal(ts2021_client_initiation(&c, init), 0);
		assert_int_equal(ts2021_client_response(&c, resp, sizeof(resp), &conn, &why),
				 -EBADMSG);
		ts2021_client_destroy(&c);
	}
	/* Wrong type and wrong length are decided from the header. */
	static const uint8_t bad_type[] = {0x04, 0x00, 0x30};
	static const uint8_t bad_len[] = {0x02, 0x00, 0x31};
	const uint8_t *bad[] = {bad_type, bad_len};
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(ts2021_client_init(&c, f->version, f->machine_priv, f->server_pub),
				 0);
		assert_int_equal(ts2021_client_initiation(&c, init), 0);
		assert_int_equal(ts2021_client_response(&c, bad[i], 3, &conn, &why), -EBADMSG);
		ts2021_client_destroy(&c);
	}
}

static void test_handshake_errors(void **state)
{
	struct fixture *f = *state;
	json_t *cases = json_object_get(f->root, "handshake_errors"), *e;
	size_t i;

	assert_int_equal(json_array_size(cases), 3);
	json_array_foreach(cases, i, e)
	{
		size_t ilen, wlen;
		uint8_t *init = vectors_hex_alloc(e, "initiation", &ilen);
		uint8_t *wrote = vectors_hex_alloc(e, "server_wrote", &wlen);
		uint8_t resp[TS2021_RESP_LEN], msg[256], tmp[TS2021_INIT_LEN];
		struct ts2021_conn conn;
		struct ts2021_client c;
		const char *why = NULL;
		char quoted[128];
		ssize_t n;

		assert_int_equal(
			ts2021_server_accept(f->server_priv, init, ilen, NULL, resp, &conn, &why),
			-EPROTO);
		/* Upstream's error is `refused client handshake: "<text>"`. */
		snprintf(quoted, sizeof(quoted), "\"%s\"", why);
		assert_non_null(strstr(vectors_str(e, "server_error"), quoted));
		n = ts2021_error_message(msg, sizeof(msg), why);
		assert_int_equal(n, wlen);
		assert_memory_equal(msg, wrote, wlen);

		/* The client reports it with the server's text, from any
		 * prefix that holds the header. */
		assert_int_equal(ts2021_client_init(&c, f->version, f->machine_priv, f->server_pub),
				 0);
		assert_int_equal(ts2021_client_initiation(&c, tmp), 0);
		assert_int_equal(ts2021_client_response(&c, wrote, wlen, &conn, &why),
				 -ECONNREFUSED);
		assert_memory_equal(c.server_error, wrote + 3, wlen - 3);
		assert_int_equal(strlen(c.server_error), wlen - 3);
		ts2021_client_destroy(&c);
		free(init);
		free(wrote);
	}
	/* A too-small buffer for an error message. */
	uint8_t small[5];
	assert_int_equal(ts2021_error_message(small, sizeof(small), "long text"), -ENOSPC);
}

/* Records in session 2 for one direction: sealing each write reproduces the
 * recorded records byte for byte; reading the whole stream back in chunks
 * of every size gives the plaintexts. */
static void check_direction(json_t *writes, json_t *records, struct ts2021_cipher *tx,
			    struct ts2021_cipher *rx)
{
	size_t nrec = json_array_size(records), stream_len = 0, wi;
	uint8_t *stream = NULL, *want_pt = NULL;
	size_t want_pt_len = 0;
	json_t *w;

	assert_true(nrec >= 2);
	json_array_foreach(writes, wi, w)
	{
		size_t wlen = (size_t)json_integer_value(w), pos = 0, rpos = 0, ri;
		uint8_t *pt = malloc(wlen + 1), *want_rec = malloc(ts2021_sealed_len(wlen) + 1);
		uint8_t *out = malloc(ts2021_sealed_len(wlen) + 1);
		json_t *r;

		assert_non_null(pt);
		assert_non_null(want_rec);
		assert_non_null(out);
		json_array_foreach(records, ri, r)
		{
			size_t plen, rlen;
			uint8_t *p, *rec;

			if ((size_t)json_integer_value(json_object_get(r, "write_index")) != wi)
				continue;
			assert_int_equal(json_integer_value(json_object_get(r, "counter")), ri);
			p = vectors_hex_alloc(r, "plaintext", &plen);
			rec = vectors_hex_alloc(r, "record", &rlen);
			assert_int_equal(plen,
					 json_integer_value(json_object_get(r, "plaintext_len")));
			assert_int_equal(rlen,
					 json_integer_value(json_object_get(r, "record_len")));
			assert_true(pos + plen <= wlen);
			memcpy(pt + pos, p, plen);
			memcpy(want_rec + rpos, rec, rlen);
			pos += plen;
			rpos += rlen;
			free(p);
			free(rec);
		}
		assert_int_equal(pos, wlen);
		assert_int_equal(rpos, ts2021_sealed_len(wlen));
		/* A buffer one byte short is refused without using a nonce. */
		uint64_t before = tx->counter;
		assert_int_equal(ts2021_seal(tx, pt, wlen, out, rpos - 1), -ENOSPC);
		assert_int_equal(tx->counter, before);
		assert_int_equal(ts2021_seal(tx, pt, wlen, out, rpos), rpos);
		assert_memory_equal(out, want_rec, rpos);

		stream = realloc(stream, stream_len + rpos);
		want_pt = realloc(want_pt, want_pt_len + wlen);
		assert_non_null(stream);
		assert_non_null(want_pt);
		memcpy(stream + stream_len, want_rec, rpos);
		memcpy(want_pt + want_pt_len, pt, wlen);
		stream_len += rpos;
		want_pt_len += wlen;
		free(pt);
		free(want_rec);
		free(out);
	}

	static const size_t chunks[] = {1, 2, 3, 5, 19, 100, 4095, 4096, 4097, 1 << 20};
	for (size_t ci = 0; ci < sizeof(chunks) / sizeof(chunks[0]); ci++) {
		struct ts2021_cipher c = *rx;
		struct ts2021_reader *rd = malloc(sizeof(*rd));
		uint8_t *got = malloc(want_pt_len + 1);
		size_t got_len = 0, pos = 0, nrecords = 0;

		assert_non_null(rd);
		assert_non_null(got);
		ts2021_reader_init(rd, &c);
		while (pos < stream_len) {
			size_t take = stream_len - pos < chunks[ci] ? stream_len - pos : chunks[ci];
			size_t off = 0;

			while (off < take) {
				const uint8_t *pt;
				size_t used, plen;
				const char *why = NULL;
				int ret = ts2021_reader_next(rd, stream + pos + off, take - off,
							     &used, &pt, &plen, &why);

				if (ret < 0)
					fail_msg("chunk %zu: %s", chunks[ci], why);
				off += used;
				if (ret == 1) {
					assert_true(got_len + plen <= want_pt_len);
					memcpy(got + got_len, pt, plen);
					got_len += plen;
					nrecords++;
				} else {
					assert_int_equal(off, take);
				}
			}
			pos += take;
		}
		assert_int_equal(nrecords, nrec);
		assert_int_equal(got_len, want_pt_len);
		assert_memory_equal(got, want_pt, want_pt_len);
		assert_int_equal(c.counter, nrec);
		ts2021_reader_destroy(rd);
		free(rd);
		free(got);
	}
	*rx = (struct ts2021_cipher){0};
	free(stream);
	free(want_pt);
}

static void test_transport(void **state)
{
	struct fixture *f = *state;
	json_t *s2 = json_object_get(f->root, "session2_transport");
	struct ts2021_conn cc, sc;

	assert_non_null(s2);
	client_handshake(f, &cc);
	server_handshake(f, &sc);
	check_direction(json_object_get(s2, "client_to_server_writes"),
			json_object_get(s2, "client_to_server_records"), &cc.tx, &sc.rx);
	check_direction(json_object_get(s2, "server_to_client_writes"),
			json_object_get(s2, "server_to_client_records"), &sc.tx, &cc.rx);
	ts2021_conn_destroy(&cc);
	ts2021_conn_destroy(&sc);
}

/* Session 1 as the client sees it: the bytes after the HTTP headers are the
 * response, then three early-payload records, then HTTP/2. Fed in chunks of
 * several sizes through response, record reader and early parser. */
static void test_early_payload(void **state)
{
	struct fixture *f = *state;
	json_t *s1 = json_object_get(f->root, "session1_early_payload");
	json_t *recs = json_object_get(s1, "server_to_client_records"), *r;
	size_t stream_len, h2_len, ri;
	uint8_t *stream = vectors_hex_alloc(s1, "server_stream_after_http_headers", &stream_len);
	uint8_t *want_h2 = vectors_hex_alloc(s1, "http2_bytes_read_after_early_payload", &h2_len);
	uint8_t want_chal[32];
	struct ts2021_conn sc;

	assert_int_equal(keys_from_text("chalpub", vectors_str(s1, "challenge_public"), want_chal),
			 0);

	/* Server side: sealing the recorded plaintexts gives the records. */
	server_handshake(f, &sc);
	json_array_foreach(recs, ri, r)
	{
		size_t plen, rlen;
		uint8_t *p = vectors_hex_alloc(r, "plaintext", &plen),
			*rec = vectors_hex_alloc(r, "record", &rlen);
		uint8_t out[TS2021_MAX_FRAME];

		assert_int_equal(json_integer_value(json_object_get(r, "counter")), ri);
		assert_int_equal(ts2021_seal_record(&sc.tx, p, plen, out, sizeof(out)), rlen);
		assert_memory_equal(out, rec, rlen);
		free(p);
		free(rec);
	}
	assert_int_equal(json_array_size(recs), 4);
	ts2021_conn_destroy(&sc);

	static const size_t chunks[] = {1, 2, 4, 7, 51, 52, 1000};
	for (size_t ci = 0; ci < sizeof(chunks) / sizeof(chunks[0]); ci++) {
		struct ts2021_client c;
		struct ts2021_conn cc;
		struct ts2021_reader *rd = malloc(sizeof(*rd));
		struct ts2021_early early;
		uint8_t init[TS2021_INIT_LEN], hold[TS2021_RESP_LEN], h2[256], chal[32];
		size_t hold_len = 0, pos = 0, h2_got = 0;
		bool handshaken = false, decided = false;
		const char *why = NULL;

		assert_non_null(rd);
		assert_int_equal(ts2021_client_init(&c, f->version, f->machine_priv, f->server_pub),
				 0);
		noise_handshake_set_ephemeral(&c.hs, f->client_e);
		assert_int_equal(ts2021_client_initiation(&c, init), 0);
		ts2021_early_init(&early);

		while (pos < stream_len) {
			size_t take = stream_len - pos < chunks[ci] ? stream_len - pos : chunks[ci];
			const uint8_t *src = stream + pos;

			pos += take;
			if (!handshaken) {
				/* The caller keeps bytes until the response is whole. */
				size_t room = TS2021_RESP_LEN - hold_len;
				size_t n = take < room ? take : room;
				ssize_t ret;

				memcpy(hold + hold_len, src, n);
				hold_len += n;
				ret = ts2021_client_response(&c, hold, hold_len, &cc, &why);
				if (ret == 0)
					continue;
				assert_int_equal(ret, TS2021_RESP_LEN);
				handshaken = true;
				ts2021_reader_init(rd, &cc.rx);
				src += n;
				take -= n;
			}
			while (take > 0) {
				const uint8_t *pt;
				size_t used, plen, eused;
				int ret =
					ts2021_reader_next(rd, src, take, &used, &pt, &plen, &why);

				assert_true(ret >= 0);
				src += used;
				take -= used;
				if (ret == 0)
					continue;
				if (!decided) {
					ret = ts2021_early_feed(&early, pt, plen, &eused, &why);
					assert_true(ret >= 0);
					if (ret == 0) {
						assert_int_equal(eused, plen);
						continue;
					}
					decided = true;
					const uint8_t *pass;
					assert_int_equal(ts2021_early_passthrough(&early, &pass),
							 0);
					pt += eused;
					plen -= eused;
				}
				assert_true(h2_got + plen <= sizeof(h2));
				memcpy(h2 + h2_got, pt, plen);
				h2_got += plen;
			}
		}
		assert_true(handshaken && decided);
		assert_true(early.present);
		assert_int_equal(early.json_len, strlen(vectors_str(s1, "json")));
		assert_memory_equal(early.json, vectors_str(s1, "json"), early.json_len);
		assert_int_equal(ts2021_early_challenge(&early, chal, &why), 0);
		assert_memory_equal(chal, want_chal, 32);
		assert_int_equal(h2_got, h2_len);
		assert_memory_equal(h2, want_h2, h2_len);
		assert_int_equal(cc.rx.counter, 4);

		ts2021_early_destroy(&early);
		ts2021_reader_destroy(rd);
		free(rd);
		ts2021_conn_destroy(&cc);
		ts2021_client_destroy(&c);
	}
	free(stream);
	free(want_h2);
}

static void test_early_absent(void **state)
{
	/* HTTP/2 SETTINGS straight away: decided at the first byte. */
	static const uint8_t settings[] = {0x00, 0x00, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00};
	struct ts2021_early e;
	const uint8_t *pass;
	const char *why = NULL;
	size_t used;
	uint8_t chal[32];

	(void)state;
	ts2021_early_init(&e);
	assert_int_equal(ts2021_early_feed(&e, settings, sizeof(settings), &used, &why), 1);
	assert_int_equal(used, 0);
	assert_false(e.present);
	assert_int_equal(ts2021_early_passthrough(&e, &pass), 0);
	assert_int_equal(ts2021_early_challenge(&e, chal, &why), -ENOENT);
	/* Decided: later input is not looked at. */
	assert_int_equal(ts2021_early_feed(&e, settings, sizeof(settings), &used, &why), 1);
	assert_int_equal(used, 0);
	ts2021_early_destroy(&e);

	/* A partial magic across records, then a difference: the held bytes
	 * come back for HTTP/2, the differing byte is not consumed. */
	static const uint8_t a[] = {0xff, 0xff}, b[] = {0xff, 'T', 'X', 0x01};
	ts2021_early_init(&e);
	assert_int_equal(ts2021_early_feed(&e, a, sizeof(a), &used, &why), 0);
	assert_int_equal(used, 2);
	assert_int_equal(ts2021_early_feed(&e, b, sizeof(b), &used, &why), 1);
	assert_int_equal(used, 2);
	assert_int_equal(ts2021_early_passthrough(&e, &pass), 4);
	assert_memory_equal(pass, "\xff\xff\xffT", 4);
	ts2021_early_destroy(&e);

	/* Empty records change nothing. */
	ts2021_early_init(&e);
	assert_int_equal(ts2021_early_feed(&e, NULL, 0, &used, &why), 0);
	assert_int_equal(used, 0);
	ts2021_early_destroy(&e);
}

static void test_early_bounds(void **state)
{
	struct ts2021_early e;
	const char *why = NULL;
	size_t used;
	uint8_t chal[32];

	(void)state;
	/* Declared length above the cap: refused from the header alone. */
	static const uint8_t big[] = {0xff, 0xff, 0xff, 'T', 'S', 0x00, 0x01, 0x00, 0x01};
	ts2021_early_init(&e);
	assert_int_equal(ts2021_early_feed(&e, big, sizeof(big), &used, &why), -EMSGSIZE);
	assert_non_null(why);
	assert_int_equal(ts2021_early_feed(&e, big, 1, &used, &why), -EBADMSG);
	ts2021_early_destroy(&e);

	static const uint8_t zero[] = {0xff, 0xff, 0xff, 'T', 'S', 0, 0, 0, 0};
	ts2021_early_init(&e);
	assert_int_equal(ts2021_early_feed(&e, zero, sizeof(zero), &used, &why), -EMSGSIZE);
	ts2021_early_destroy(&e);

	/* Exactly the cap is accepted and fed in pieces; memory grows only
	 * as bytes arrive. */
	static const uint8_t cap[] = {0xff, 0xff, 0xff, 'T', 'S', 0x00, 0x01, 0x00, 0x00};
	static uint8_t body[TS2021_EARLY_MAX_JSON];
	ts2021_early_init(&e);
	assert_int_equal(ts2021_early_feed(&e, cap, sizeof(cap), &used, &why), 0);
	assert_int_equal(ts2021_early_feed(&e, body, 10, &used, &why), 0);
	assert_true(e.json_cap < 1024);
	assert_int_equal(ts2021_early_feed(&e, body, sizeof(body), &used, &why), 1);
	assert_int_equal(used, sizeof(body) - 10);
	assert_true(e.present);
	/* Not JSON: the challenge getter says so. */
	assert_int_equal(ts2021_early_challenge(&e, chal, &why), -EBADMSG);
	ts2021_early_destroy(&e);

	/* JSON without a proper key. */
	static const char js[] = "{\"nodeKeyChallenge\":\"nodekey:00\"}";
	uint8_t hdr[9] = {0xff, 0xff, 0xff, 'T', 'S', 0, 0, 0, sizeof(js) - 1};
	ts2021_early_init(&e);
	assert_int_equal(ts2021_early_feed(&e, hdr, sizeof(hdr), &used, &why), 0);
	assert_int_equal(ts2021_early_feed(&e, (const uint8_t *)js, sizeof(js) - 1, &used, &why),
			 1);
	assert_int_equal(ts2021_early_challenge(&e, chal, &why), -EBADMSG);
	assert_string_equal(why, "nodeKeyChallenge is not chalpub:<64 hex>");
	ts2021_early_destroy(&e);
}

static void test_reader_errors(void **state)
{
	struct fixture *f = *state;
	struct ts2021_conn cc, sc;
	struct ts2021_reader *rd = malloc(sizeof(*rd));
	uint8_t rec[64];
	const uint8_t *pt;
	size_t used, plen;
	const char *why = NULL;
	ssize_t n;

	assert_non_null(rd);
	client_handshake(f, &cc);
	server_handshake(f, &sc);

	/* Oversized frame: refused after 3 bytes, without waiting. */
	static const uint8_t big[] = {0x04, 0x0f, 0xfe};
	ts2021_reader_init(rd, &sc.rx);
	assert_int_equal(ts2021_reader_next(rd, big, 2, &used, &pt, &plen, &why), 0);
	assert_int_equal(ts2021_reader_next(rd, big + 2, 1, &used, &pt, &plen, &why), -EMSGSIZE);
	assert_string_equal(why, "record larger than 4096 bytes");
	/* Every later call fails too. */
	assert_int_equal(ts2021_reader_next(rd, big, 3, &used, &pt, &plen, &why), -EBADMSG);

	/* The maximum is fine as far as the header goes. */
	static const uint8_t max[] = {0x04, 0x0f, 0xfd};
	ts2021_reader_init(rd, &sc.rx);
	assert_int_equal(ts2021_reader_next(rd, max, 3, &used, &pt, &plen, &why), 0);

	static const uint8_t type[] = {0x03, 0x00, 0x10};
	ts2021_reader_init(rd, &sc.rx);
	assert_int_equal(ts2021_reader_next(rd, type, 3, &used, &pt, &plen, &why), -EBADMSG);
	static const uint8_t tiny[] = {0x04, 0x00, 0x0f};
	ts2021_reader_init(rd, &sc.rx);
	assert_int_equal(ts2021_reader_next(rd, tiny, 3, &used, &pt, &plen, &why), -EBADMSG);

	/* An empty record is valid and yields 0 plaintext bytes. */
	n = ts2021_seal_record(&cc.tx, NULL, 0, rec, sizeof(rec));
	assert_int_equal(n, 19);
	ts2021_reader_init(rd, &sc.rx);
	assert_int_equal(ts2021_reader_next(rd, rec, (size_t)n, &used, &pt, &plen, &why), 1);
	assert_int_equal(plen, 0);
	assert_int_equal(used, 19);

	/* A tampered record fails and poisons the reader. */
	n = ts2021_seal_record(&cc.tx, (const uint8_t *)"hello", 5, rec, sizeof(rec));
	rec[5] ^= 1;
	assert_int_equal(ts2021_reader_next(rd, rec, (size_t)n, &used, &pt, &plen, &why), -EBADMSG);
	assert_string_equal(why, "record does not decrypt");
	rec[5] ^= 1;
	assert_int_equal(ts2021_reader_next(rd, rec, (size_t)n, &used, &pt, &plen, &why), -EBADMSG);

	/* Sender limits. */
	uint8_t big_pt[TS2021_MAX_PLAINTEXT + 1] = {0};
	uint8_t out[TS2021_MAX_FRAME + 64];
	assert_int_equal(ts2021_seal_record(&cc.tx, big_pt, sizeof(big_pt), out, sizeof(out)),
			 -EMSGSIZE);
	assert_int_equal(ts2021_seal_record(&cc.tx, big_pt, TS2021_MAX_PLAINTEXT, out, sizeof(out)),
			 TS2021_MAX_FRAME);
	assert_int_equal(ts2021_sealed_len(0), 0);
	assert_int_equal(ts2021_seal(&cc.tx, big_pt, 0, out, 0), 0);
	cc.tx.counter = UINT64_MAX;
	assert_int_equal(ts2021_seal_record(&cc.tx, big_pt, 1, out, sizeof(out)), -EOVERFLOW);

	/* The receiver refuses the reserved counter too. */
	sc.rx.counter = UINT64_MAX;
	cc.tx.counter = 0;
	n = ts2021_seal_record(&cc.tx, (const uint8_t *)"x", 1, rec, sizeof(rec));
	ts2021_reader_init(rd, &sc.rx);
	assert_int_equal(ts2021_reader_next(rd, rec, (size_t)n, &used, &pt, &plen, &why),
			 -EOVERFLOW);

	/* The nonce is big-endian: a record sealed at counter 1 opens only
	 * with the big-endian nonce 00000000 0000000000000001. */
	cc.tx.counter = 1;
	n = ts2021_seal_record(&cc.tx, (const uint8_t *)"x", 1, rec, sizeof(rec));
	uint8_t nonce[NOISE_NONCE_LEN] = {0}, dec[1];
	nonce[11] = 1;
	assert_int_equal(noise_aead_decrypt(dec, cc.tx.key, nonce, NULL, 0, rec + 3, (size_t)n - 3),
			 0);
	nonce[11] = 0;
	nonce[4] = 1;
	assert_int_equal(noise_aead_decrypt(dec, cc.tx.key, nonce, NULL, 0, rec + 3, (size_t)n - 3),
			 -EBADMSG);

	ts2021_reader_destroy(rd);
	free(rd);
	ts2021_conn_destroy(&cc);
	ts2021_conn_destroy(&sc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_prologue),	 cmocka_unit_test(test_handshake),
		cmocka_unit_test(test_handshake_tamper), cmocka_unit_test(test_handshake_errors),
		cmocka_unit_test(test_transport),	 cmocka_unit_test(test_early_payload),
		cmocka_unit_test(test_early_absent),	 cmocka_unit_test(test_early_bounds),
		cmocka_unit_test(test_reader_errors),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, setup, teardown);
}
