/* derp.c and derp_http.c against tests/vectors/tailscale/derp.json
 * (frames written by upstream's DERP client and server for fixed keys and
 * nonces) and the capture tests/vectors/captures/cleartext-derp-session (a
 * whole session of genuine tailscaled v1.68.2 nodes with DERP over plain
 * HTTP): the client's frames byte for byte, every event of the server's
 * recorded streams, the upgrade request and answer, and bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "worker/magicsock/derp.c"
#include "worker/magicsock/derp_http.c"
#include "common/keys.h"
#include "tests/unit/vectors.h"

struct conn_vec {
	uint8_t priv[32], pub[32];
	json_t *c2s, *s2c; /* frame arrays */
	uint8_t *c2s_stream, *s2c_stream;
	size_t c2s_len, s2c_len;
};

struct fixture {
	json_t *root;
	uint8_t server_priv[32], server_pub[32], unknown_pub[32];
	struct conn_vec conn[2]; /* A, B */
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *names[2] = {"a", "b"};

	assert_non_null(f);
	f->root = vectors_load("tailscale/derp.json");
	assert_int_equal(vectors_int(f->root, "protocol_version"), DERP_PROTOCOL_VERSION);
	{
		uint8_t magic[8];

		vectors_hex(f->root, "magic", magic, sizeof(magic));
		assert_memory_equal(magic, derp_magic, sizeof(magic));
	}
	vectors_hex(f->root, "server_private", f->server_priv, 32);
	vectors_hex(f->root, "server_public", f->server_pub, 32);
	assert_int_equal(
		keys_from_text("nodekey", vectors_str(f->root, "unknown_c_public"), f->unknown_pub),
		0);
	for (int i = 0; i < 2; i++) {
		struct conn_vec *c = &f->conn[i];
		json_t *cj = vectors_at(f->root, "connections", (size_t)i);
		char key[32];

		snprintf(key, sizeof(key), "client_%s_private", names[i]);
		vectors_hex(f->root, key, c->priv, 32);
		snprintf(key, sizeof(key), "client_%s_public", names[i]);
		vectors_hex(f->root, key, c->pub, 32);
		c->c2s = vectors_get(cj, "client_to_server");
		c->s2c = vectors_get(cj, "server_to_client");
		c->c2s_stream = vectors_hex_alloc(cj, "stream_hex_c2s", &c->c2s_len);
		c->s2c_stream = vectors_hex_alloc(cj, "stream_hex_s2c", &c->s2c_len);
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	for (int i = 0; i < 2; i++) {
		free(f->conn[i].c2s_stream);
		free(f->conn[i].s2c_stream);
	}
	json_decref(f->root);
	free(f);
	return 0;
}

/* Hands out the ClientInfo nonce the vector's frame was sealed with. */
static void vector_nonce(uint8_t nonce[static DERP_NONCE_LEN], void *arg)
{
	memcpy(nonce, arg, DERP_NONCE_LEN);
}

static void client_start(struct derp_client *c, const struct conn_vec *cv, uint8_t nonce[24])
{
	struct derp_client_opts opts = {.nonce_fn = vector_nonce, .nonce_arg = nonce};

	vectors_hex(json_array_get(cv->c2s, 0), "nonce", nonce, DERP_NONCE_LEN);
	assert_int_equal(derp_client_init(c, cv->priv, NULL, &opts), 0);
	assert_memory_equal(c->node_pub, cv->pub, 32);
}

/* Every frame listed in the vectors decodes to its type and length, and the
 * listed frames concatenated are the recorded stream. */
static void test_frames_decode(void **state)
{
	struct fixture *f = *state;

	for (int i = 0; i < 2; i++) {
		json_t *lists[2] = {f->conn[i].c2s, f->conn[i].s2c};
		const uint8_t *streams[2] = {f->conn[i].c2s_stream, f->conn[i].s2c_stream};
		size_t lens[2] = {f->conn[i].c2s_len, f->conn[i].s2c_len};

		for (int d = 0; d < 2; d++) {
			size_t off = 0, k;
			json_t *fr;

			json_array_foreach(lists[d], k, fr)
			{
				struct derp_frame df;
				const char *why = NULL;
				uint8_t buf[256];
				size_t n = vectors_hex_var(fr, "frame", buf, sizeof(buf));
				ssize_t got = derp_frame_decode(buf, n, DERP_MAX_FRAME, &df, &why);

				assert_int_equal(got, (ssize_t)n);
				assert_int_equal(df.type, vectors_int(fr, "type"));
				assert_int_equal(df.len, vectors_int(fr, "length"));
				assert_true(off + n <= lens[d]);
				assert_memory_equal(streams[d] + off, buf, n);
				/* One byte short of the whole frame: wait for more. */
				assert_int_equal(
					derp_frame_decode(buf, n - 1, DERP_MAX_FRAME, &df, &why),
					0);
				off += n;
			}
			assert_int_equal(off, lens[d]);
		}
	}
}

/* Builds what the client sends in the scenario, in its order, from the
 * decoded parts of the vector's frames. */
static void queue_scenario(struct fixture *f, struct derp_client *c, json_t *c2s)
{
	size_t k;
	json_t *fr;

	json_array_foreach(c2s, k, fr)
	{
		const char *name = vectors_str(fr, "name");
		uint8_t dst[32], data[8];

		if (!strcmp(name, "ClientInfo")) {
			assert_int_equal(k, 0); /* queued by the greeting */
		} else if (!strcmp(name, "NotePreferred")) {
			assert_int_equal(derp_client_note_preferred(
						 c, json_is_true(vectors_get(fr, "preferred"))),
					 0);
		} else if (!strcmp(name, "SendPacket")) {
			size_t n;
			uint8_t *pkt = vectors_hex_alloc(fr, "packet", &n);

			vectors_hex(fr, "dst_public", dst, 32);
			assert_true(!memcmp(dst, f->conn[0].pub, 32) ||
				    !memcmp(dst, f->conn[1].pub, 32) ||
				    !memcmp(dst, f->unknown_pub, 32));
			assert_int_equal(derp_client_send_packet(c, 1000, dst, pkt, n), 0);
			free(pkt);
		} else if (!strcmp(name, "Ping")) {
			vectors_hex(fr, "data", data, 8);
			assert_int_equal(derp_client_send_ping(c, data), 0);
		} else if (!strcmp(name, "Pong")) {
			vectors_hex(fr, "data", data, 8);
			assert_int_equal(derp_client_send_pong(c, data), 0);
		} else {
			fail_msg("unexpected client frame %s", name);
		}
	}
}

/* Checks one event against the vector's decoded server frame. */
static void check_event(const struct derp_event *ev, json_t *fr, const uint8_t server_pub[32])
{
	const char *name = vectors_str(fr, "name");
	uint8_t key[32], data[8];

	if (!strcmp(name, "ServerKey")) {
		assert_int_equal(ev->type, DERP_EV_SERVER_KEY);
		vectors_hex(fr, "server_public", key, 32);
		assert_memory_equal(ev->key, key, 32);
		assert_memory_equal(key, server_pub, 32);
	} else if (!strcmp(name, "ServerInfo")) {
		/* {"version":2}: no rate limit. */
		assert_string_equal(vectors_str(fr, "json"), "{\"version\":2}");
		assert_int_equal(ev->type, DERP_EV_SERVER_INFO);
		assert_int_equal(ev->token_bucket_bytes_per_second, 0);
		assert_int_equal(ev->token_bucket_bytes_burst, 0);
	} else if (!strcmp(name, "RecvPacket")) {
		size_t n;
		uint8_t *pkt = vectors_hex_alloc(fr, "packet", &n);

		assert_int_equal(ev->type, DERP_EV_PACKET);
		vectors_hex(fr, "src_public", key, 32);
		assert_memory_equal(ev->key, key, 32);
		assert_int_equal(ev->len, n);
		assert_memory_equal(ev->data, pkt, n);
		free(pkt);
	} else if (!strcmp(name, "Pong")) {
		assert_int_equal(ev->type, DERP_EV_PONG);
		vectors_hex(fr, "data", data, 8);
		assert_memory_equal(ev->ping, data, 8);
	} else if (!strcmp(name, "PeerGone")) {
		assert_int_equal(ev->type, DERP_EV_PEER_GONE);
		vectors_hex(fr, "peer_public", key, 32);
		assert_memory_equal(ev->key, key, 32);
		assert_int_equal(ev->reason, vectors_int(fr, "reason"));
	} else if (!strcmp(name, "KeepAlive")) {
		assert_int_equal(ev->type, DERP_EV_KEEP_ALIVE);
	} else {
		fail_msg("unexpected server frame %s", name);
	}
}

/* Feeds the server's stream in chunks of step bytes and checks each event in
 * order; then the client's whole output equals the recorded client stream. */
static void run_session(struct fixture *f, int i, size_t step)
{
	struct conn_vec *cv = &f->conn[i];
	struct derp_client c;
	struct derp_event ev;
	uint8_t nonce[24];
	const uint8_t *out;
	const char *why = NULL;
	size_t off = 0, next = 0;
	int ret;

	client_start(&c, cv, nonce);
	assert_int_equal(derp_client_pending(&c, &out), 0);
	while (off < cv->s2c_len || next < json_array_size(cv->s2c)) {
		ret = derp_client_next(&c, &ev, &why);
		assert_true(ret >= 0);
		if (ret == 0) {
			size_t n = cv->s2c_len - off < step ? cv->s2c_len - off : step;

			assert_true(n > 0);
			assert_int_equal(derp_client_feed(&c, cv->s2c_stream + off, n), 0);
			off += n;
			continue;
		}
		check_event(&ev, json_array_get(cv->s2c, next), f->server_pub);
		if (ev.type == DERP_EV_SERVER_KEY) {
			assert_int_equal(c.state, DERP_CLIENT_WANT_SERVER_INFO);
			queue_scenario(f, &c, cv->c2s);
		}
		next++;
	}
	assert_int_equal(derp_client_next(&c, &ev, &why), 0);
	assert_int_equal(c.state, DERP_CLIENT_CONNECTED);
	assert_int_equal(c.frames_ignored, 0);
	assert_int_equal(derp_client_pending(&c, &out), cv->c2s_len);
	assert_memory_equal(out, cv->c2s_stream, cv->c2s_len);
	derp_client_sent(&c, 7);
	assert_int_equal(derp_client_pending(&c, &out), cv->c2s_len - 7);
	derp_client_sent(&c, cv->c2s_len);
	assert_int_equal(derp_client_pending(&c, &out), 0);
	derp_client_destroy(&c);
}

static void test_session_a(void **state)
{
	run_session(*state, 0, SIZE_MAX);
	run_session(*state, 0, 1);
	run_session(*state, 0, 7);
}

static void test_session_b(void **state)
{
	run_session(*state, 1, SIZE_MAX);
	run_session(*state, 1, 3);
}

/* ClientInfo on its own, and the server's view of it: the box opens with
 * the server's private key to the JSON upstream marshalled. */
static void test_client_info(void **state)
{
	struct fixture *f = *state;

	for (int i = 0; i < 2; i++) {
		struct conn_vec *cv = &f->conn[i];
		json_t *fr = json_array_get(cv->c2s, 0);
		struct derp_client_opts opts = {0};
		uint8_t want[256], got[DERP_CLIENT_INFO_MAX], nonce[24], msg[128];
		size_t wlen = vectors_hex_var(fr, "frame", want, sizeof(want));
		const char *json = vectors_str(fr, "json");
		ssize_t n;

		vectors_hex(fr, "nonce", nonce, 24);
		n = derp_build_client_info(got, sizeof(got), &opts, cv->priv, cv->pub,
					   f->server_pub, nonce);
		assert_int_equal(n, (ssize_t)wlen);
		assert_memory_equal(got, want, wlen);
		assert_int_equal(crypto_box_open_easy(msg, got + 5 + 32 + 24,
						      (size_t)n - 5 - 32 - 24, nonce, cv->pub,
						      f->server_priv),
				 0);
		assert_int_equal((size_t)n - 5 - 32 - 24 - 16, strlen(json));
		assert_memory_equal(msg, json, strlen(json));
		/* Too small a buffer. */
		assert_int_equal(derp_build_client_info(got, wlen - 1, &opts, cv->priv, cv->pub,
							f->server_pub, nonce),
				 -ENOBUFS);
	}
}

/* The optional fields, in upstream's field order. */
static void test_client_info_options(void **state)
{
	struct fixture *f = *state;
	struct derp_client_opts opts = {.mesh_key = "00ff", .is_prober = true};
	uint8_t frame[DERP_CLIENT_INFO_MAX], nonce[24] = {1}, msg[128];
	const char *want = "{\"meshKey\":\"00ff\",\"version\":2,\"CanAckPings\":true,"
			   "\"IsProber\":true}";
	ssize_t n = derp_build_client_info(frame, sizeof(frame), &opts, f->conn[0].priv,
					   f->conn[0].pub, f->server_pub, nonce);

	assert_true(n > 0);
	assert_int_equal(crypto_box_open_easy(msg, frame + 61, (size_t)n - 61, nonce,
					      f->conn[0].pub, f->server_priv),
			 0);
	assert_int_equal((size_t)n - 61 - 16, strlen(want));
	assert_memory_equal(msg, want, strlen(want));
	/* A mesh key that would need JSON escaping is refused. */
	strcpy(opts.mesh_key, "ab\"cd");
	assert_int_equal(derp_build_client_info(frame, sizeof(frame), &opts, f->conn[0].priv,
						f->conn[0].pub, f->server_pub, nonce),
			 -EINVAL);
	{
		struct derp_client c;

		assert_int_equal(derp_client_init(&c, f->conn[0].priv, NULL, &opts), -EINVAL);
	}
}

/* ---- hand-made server frames ---- */

static size_t put_frame(uint8_t *out, uint8_t type, const void *body, size_t len)
{
	derp_frame_put_header(out, type, (uint32_t)len);
	if (len)
		memcpy(out + 5, body, len);
	return 5 + len;
}

/* A client of A's that has had the vector's greeting. */
static void greeted(struct fixture *f, struct derp_client *c)
{
	uint8_t nonce[24];
	struct derp_event ev;
	const char *why = NULL;

	client_start(c, &f->conn[0], nonce);
	assert_int_equal(derp_client_feed(c, f->conn[0].s2c_stream, 45), 0);
	assert_int_equal(derp_client_next(c, &ev, &why), 1);
	assert_int_equal(ev.type, DERP_EV_SERVER_KEY);
	derp_client_sent(c, SIZE_MAX);
}

/* A ServerInfo frame sealed by the server to A with body json. */
static size_t server_info(struct fixture *f, uint8_t *out, const char *json)
{
	uint8_t body[512];
	size_t jlen = strlen(json);

	assert_true(24 + 16 + jlen <= sizeof(body));
	memset(body, 0x5a, 24);
	assert_int_equal(crypto_box_easy(body + 24, (const uint8_t *)json, jlen, body,
					 f->conn[0].pub, f->server_priv),
			 0);
	return put_frame(out, DERP_FRAME_SERVER_INFO, body, 24 + 16 + jlen);
}

static int feed_next(struct derp_client *c, const uint8_t *b, size_t n, struct derp_event *ev,
		     const char **why)
{
	assert_int_equal(derp_client_feed(c, b, n), 0);
	return derp_client_next(c, ev, why);
}

static void test_server_frames(void **state)
{
	struct fixture *f = *state;
	struct derp_client c;
	struct derp_event ev;
	const char *why = NULL;
	uint8_t buf[256], body[64];
	const uint8_t *out;

	greeted(f, &c);
	/* Ping: the event, and the pong already queued. */
	memcpy(body, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
	assert_int_equal(feed_next(&c, buf, put_frame(buf, DERP_FRAME_PING, body, 8), &ev, &why),
			 1);
	assert_int_equal(ev.type, DERP_EV_PING);
	assert_memory_equal(ev.ping, body, 8);
	assert_int_equal(derp_client_pending(&c, &out), 13);
	assert_memory_equal(out, "\x13\x00\x00\x00\x08\x01\x02\x03\x04\x05\x06\x07\x08", 13);
	derp_client_sent(&c, 13);
	/* Health, empty health, restarting. */
	assert_int_equal(feed_next(&c, buf, put_frame(buf, DERP_FRAME_HEALTH, "dup", 3), &ev, &why),
			 1);
	assert_int_equal(ev.type, DERP_EV_HEALTH);
	assert_int_equal(ev.len, 3);
	assert_memory_equal(ev.data, "dup", 3);
	assert_int_equal(feed_next(&c, buf, put_frame(buf, DERP_FRAME_HEALTH, NULL, 0), &ev, &why),
			 1);
	assert_int_equal(ev.type, DERP_EV_HEALTH);
	assert_int_equal(ev.len, 0);
	memcpy(body, "\x00\x00\x01\xf4\x00\x00\x75\x30", 8);
	assert_int_equal(
		feed_next(&c, buf, put_frame(buf, DERP_FRAME_RESTARTING, body, 8), &ev, &why), 1);
	assert_int_equal(ev.type, DERP_EV_RESTARTING);
	assert_int_equal(ev.reconnect_in_ms, 500);
	assert_int_equal(ev.try_for_ms, 30000);
	/* PeerPresent: key only, with address, with flags. */
	memset(body, 0xcc, 32);
	memset(body + 32, 0, 16);
	body[42] = body[43] = 0xff;
	memcpy(body + 44, "\x0a\x63\x00\x0b\xa2\x29\x03", 7); /* 10.99.0.11:41513, flags 3 */
	for (size_t n = 32; n <= 51; n += 1) {
		if (n != 32 && n != 50 && n != 51)
			continue;
		assert_int_equal(feed_next(&c, buf,
					   put_frame(buf, DERP_FRAME_PEER_PRESENT, body, n), &ev,
					   &why),
				 1);
		assert_int_equal(ev.type, DERP_EV_PEER_PRESENT);
		assert_memory_equal(ev.key, body, 32);
		assert_int_equal(ev.has_addr, n >= 50);
		assert_int_equal(ev.has_flags, n == 51);
		if (n >= 50) {
			assert_memory_equal(ev.addr, body + 32, 16);
			assert_int_equal(ev.port, 0xa229);
		}
		if (n == 51)
			assert_int_equal(ev.flags, 3);
	}
	/* PeerGone without a reason byte (older servers): disconnected. */
	assert_int_equal(
		feed_next(&c, buf, put_frame(buf, DERP_FRAME_PEER_GONE, body, 32), &ev, &why), 1);
	assert_int_equal(ev.type, DERP_EV_PEER_GONE);
	assert_int_equal(ev.reason, DERP_PEER_GONE_DISCONNECTED);
	/* An empty RecvPacket body past the key is a zero-length packet. */
	assert_int_equal(
		feed_next(&c, buf, put_frame(buf, DERP_FRAME_RECV_PACKET, body, 32), &ev, &why), 1);
	assert_int_equal(ev.type, DERP_EV_PACKET);
	assert_int_equal(ev.len, 0);
	assert_int_equal(c.frames_ignored, 0);
	derp_client_destroy(&c);
}

/* What upstream skips: short frames of known types, frames for servers or
 * meshes, a second greeting, unknown types. None ends the connection. */
static void test_ignored_frames(void **state)
{
	struct fixture *f = *state;
	static const struct {
		uint8_t type;
		size_t len;
	} skip[] = {
		{DERP_FRAME_RECV_PACKET, 31},
		{DERP_FRAME_PEER_GONE, 0},
		{DERP_FRAME_PEER_PRESENT, 31},
		{DERP_FRAME_PING, 7},
		{DERP_FRAME_PONG, 0},
		{DERP_FRAME_RESTARTING, 7},
		{DERP_FRAME_SERVER_KEY, 40},
		{DERP_FRAME_CLIENT_INFO, 60},
		{DERP_FRAME_SEND_PACKET, 40},
		{DERP_FRAME_NOTE_PREFERRED, 1},
		{DERP_FRAME_FORWARD_PACKET, 70},
		{DERP_FRAME_WATCH_CONNS, 0},
		{DERP_FRAME_CLOSE_PEER, 32},
		{0x16, 3},
		{0xff, 100},
	};
	struct derp_client c;
	struct derp_event ev;
	const char *why = NULL;
	uint8_t buf[256], body[128] = {0};
	const uint8_t *out;

	greeted(f, &c);
	for (size_t i = 0; i < sizeof(skip) / sizeof(skip[0]); i++) {
		size_t n = put_frame(buf, skip[i].type, body, skip[i].len);

		assert_int_equal(feed_next(&c, buf, n, &ev, &why), 0);
		assert_int_equal(c.frames_ignored, i + 1);
	}
	assert_int_equal(c.state, DERP_CLIENT_WANT_SERVER_INFO);
	assert_int_equal(derp_client_pending(&c, &out), 0); /* no pong for a short ping */
	derp_client_destroy(&c);
}

static void expect_fail(struct derp_client *c, const uint8_t *b, size_t n, int err)
{
	struct derp_event ev;
	const char *why = NULL;
	uint8_t x = 0, ping[8] = {0};

	assert_int_equal(feed_next(c, b, n, &ev, &why), err);
	assert_non_null(why);
	assert_int_equal(c->state, DERP_CLIENT_FAILED);
	/* Failed for good. */
	assert_int_equal(derp_client_next(c, &ev, &why), -ENOTCONN);
	assert_int_equal(derp_client_feed(c, &x, 1), -ENOTCONN);
	assert_int_equal(derp_client_send_ping(c, ping), -ENOTCONN);
}

static void test_bad_greeting(void **state)
{
	struct fixture *f = *state;
	struct derp_client c;
	uint8_t buf[2048] = {0}, nonce[24];

	/* Garbage (an HTTP answer where frames should be): its "length"
	 * is far over the greeting's 1 KiB. */
	client_start(&c, &f->conn[0], nonce);
	expect_fail(&c, (const uint8_t *)"HTTP/1.1 200 OK\r\n", 17, -EMSGSIZE);
	derp_client_destroy(&c);
	/* A frame that is not ServerKey first. */
	client_start(&c, &f->conn[0], nonce);
	expect_fail(&c, buf, put_frame(buf, DERP_FRAME_KEEP_ALIVE, NULL, 0), -EPROTO);
	derp_client_destroy(&c);
}

static void test_bad_greeting_body(void **state)
{
	struct fixture *f = *state;
	struct derp_client c;
	struct derp_event ev;
	const char *why = NULL;
	uint8_t buf[2048] = {0}, nonce[24];

	/* The greeting's header alone is not an error: wait for its body. */
	client_start(&c, &f->conn[0], nonce);
	assert_int_equal(feed_next(&c, f->conn[0].s2c_stream, 5, &ev, &why), 0);
	derp_client_destroy(&c);
	/* 39 bytes: one short of magic and key. */
	client_start(&c, &f->conn[0], nonce);
	memcpy(buf, f->conn[0].s2c_stream, 45);
	buf[4] = 39;
	expect_fail(&c, buf, 44, -EPROTO);
	derp_client_destroy(&c);
	/* Wrong magic. */
	client_start(&c, &f->conn[0], nonce);
	memcpy(buf, f->conn[0].s2c_stream, 45);
	buf[12] ^= 1;
	expect_fail(&c, buf, 45, -EPROTO);
	derp_client_destroy(&c);
	/* A greeting over 1 KiB fails from its header alone. */
	client_start(&c, &f->conn[0], nonce);
	derp_frame_put_header(buf, DERP_FRAME_SERVER_KEY, DERP_MAX_SERVER_KEY + 1);
	expect_fail(&c, buf, 5, -EMSGSIZE);
	derp_client_destroy(&c);
	/* Up to 1 KiB with extra bytes is accepted, as upstream. */
	client_start(&c, &f->conn[0], nonce);
	memcpy(buf, f->conn[0].s2c_stream, 45);
	derp_frame_put_header(buf, DERP_FRAME_SERVER_KEY, DERP_MAX_SERVER_KEY);
	assert_int_equal(feed_next(&c, buf, 5 + DERP_MAX_SERVER_KEY, &ev, &why), 1);
	assert_int_equal(ev.type, DERP_EV_SERVER_KEY);
	derp_client_destroy(&c);
}

static void test_oversized_frame(void **state)
{
	struct fixture *f = *state;
	struct derp_client c;
	struct derp_event ev;
	const char *why = NULL;
	uint8_t hdr[5];

	greeted(f, &c);
	/* Exactly the limit: wait for the body. */
	derp_frame_put_header(hdr, DERP_FRAME_RECV_PACKET, DERP_MAX_FRAME);
	assert_int_equal(feed_next(&c, hdr, 5, &ev, &why), 0);
	derp_client_destroy(&c);
	greeted(f, &c);
	derp_frame_put_header(hdr, DERP_FRAME_RECV_PACKET, DERP_MAX_FRAME + 1);
	expect_fail(&c, hdr, 5, -EMSGSIZE);
	derp_client_destroy(&c);
	greeted(f, &c);
	memset(hdr + 1, 0xff, 4);
	expect_fail(&c, hdr, 5, -EMSGSIZE);
	derp_client_destroy(&c);
}

static void test_bad_server_info(void **state)
{
	struct fixture *f = *state;
	static const char *bad_json[] = {
		"not json",
		"[1]",
		"\"x\"",
		"{\"version\":\"2\"}",
		"{\"version\":2.5}",
		"{\"TokenBucketBytesBurst\":true}",
		"{\"version\":2} x",
		"{",
	};
	struct derp_client c;
	uint8_t buf[512];
	size_t n;

	/* The recorded ServerInfo with one bit of its box flipped. */
	greeted(f, &c);
	memcpy(buf, f->conn[0].s2c_stream + 45, 58);
	buf[5 + 30] ^= 0x40;
	expect_fail(&c, buf, 58, -EBADMSG);
	derp_client_destroy(&c);
	/* B's ServerInfo does not open with A's key. */
	greeted(f, &c);
	expect_fail(&c, f->conn[1].s2c_stream + 45, 58, -EBADMSG);
	derp_client_destroy(&c);
	/* Too short for a nonce; too short for a box. */
	greeted(f, &c);
	expect_fail(&c, buf, put_frame(buf, DERP_FRAME_SERVER_INFO, buf + 100, 23), -EPROTO);
	derp_client_destroy(&c);
	greeted(f, &c);
	expect_fail(&c, buf, put_frame(buf, DERP_FRAME_SERVER_INFO, buf + 100, 39), -EBADMSG);
	derp_client_destroy(&c);
	/* Boxes that open to what Go's json.Unmarshal refuses. */
	for (size_t i = 0; i < sizeof(bad_json) / sizeof(bad_json[0]); i++) {
		greeted(f, &c);
		n = server_info(f, buf, bad_json[i]);
		expect_fail(&c, buf, n, -EPROTO);
		derp_client_destroy(&c);
	}
}

/* ServerInfo variants Go accepts, and the rate limit it can set: the
 * bucket starts full, sends beyond it are dropped, it refills over time. */
static void test_server_info_rate(void **state)
{
	struct fixture *f = *state;
	static const char *ok_json[] = {"null", "{}", "{\"VERSION\":2,\"extra\":[1,{}]}",
					"{\"version\":null}"};
	struct derp_client c;
	struct derp_event ev;
	const char *why = NULL;
	uint8_t buf[512], pkt[100] = {0};
	const uint8_t *out;

	for (size_t i = 0; i < sizeof(ok_json) / sizeof(ok_json[0]); i++) {
		greeted(f, &c);
		assert_int_equal(feed_next(&c, buf, server_info(f, buf, ok_json[i]), &ev, &why), 1);
		assert_int_equal(ev.type, DERP_EV_SERVER_INFO);
		assert_int_equal(c.state, DERP_CLIENT_CONNECTED);
		derp_client_destroy(&c);
	}
	greeted(f, &c);
	assert_int_equal(feed_next(&c, buf,
				   server_info(f, buf,
					       "{\"version\":2,\"tokenbucketbytespersecond\":1000,"
					       "\"TokenBucketBytesBurst\":300}"),
				   &ev, &why),
			 1);
	assert_int_equal(ev.token_bucket_bytes_per_second, 1000);
	assert_int_equal(ev.token_bucket_bytes_burst, 300);
	/* Each send costs 5 + 32 + 100 = 137 tokens: two fit in 300. */
	for (int i = 0; i < 3; i++)
		assert_int_equal(derp_client_send_packet(&c, 5000, f->conn[1].pub, pkt, 100), 0);
	assert_int_equal(c.dropped_by_rate, 1);
	assert_int_equal(derp_client_pending(&c, &out), 2 * 137);
	/* 137 ms later, 137 tokens more (26 were left). */
	assert_int_equal(derp_client_send_packet(&c, 5111, f->conn[1].pub, pkt, 100), 0);
	assert_int_equal(derp_client_pending(&c, &out), 3 * 137);
	assert_int_equal(derp_client_send_packet(&c, 5111, f->conn[1].pub, pkt, 100), 0);
	assert_int_equal(c.dropped_by_rate, 2);
	derp_client_destroy(&c);
}

static void test_send_limits(void **state)
{
	struct fixture *f = *state;
	struct derp_client c;
	uint8_t nonce[24], ping[8] = {0};
	uint8_t *big = calloc(1, DERP_MAX_PACKET + 1);
	const uint8_t *out;

	assert_non_null(big);
	/* Nothing may be sent before ClientInfo. */
	client_start(&c, &f->conn[0], nonce);
	assert_int_equal(derp_client_send_packet(&c, 0, f->conn[1].pub, big, 10), -ENOTCONN);
	assert_int_equal(derp_client_note_preferred(&c, true), -ENOTCONN);
	assert_int_equal(derp_client_send_ping(&c, ping), -ENOTCONN);
	derp_client_destroy(&c);
	greeted(f, &c);
	assert_int_equal(derp_client_send_packet(&c, 0, f->conn[1].pub, big, DERP_MAX_PACKET + 1),
			 -EMSGSIZE);
	assert_int_equal(derp_client_send_packet(&c, 0, f->conn[1].pub, big, DERP_MAX_PACKET), 0);
	assert_int_equal(derp_client_pending(&c, &out), 5 + 32 + DERP_MAX_PACKET);
	/* The send buffer is bounded. */
	for (int i = 0; i < 100; i++) {
		int ret = derp_client_send_packet(&c, 0, f->conn[1].pub, big, DERP_MAX_PACKET);

		if (ret == -ENOBUFS)
			break;
		assert_int_equal(ret, 0);
	}
	assert_int_equal(derp_client_send_packet(&c, 0, f->conn[1].pub, big, DERP_MAX_PACKET),
			 -ENOBUFS);
	assert_true(derp_client_pending(&c, &out) <= DERP_MAX_BUFFERED);
	derp_client_destroy(&c);
	free(big);
}

/* The fast start: the server key is known, ClientInfo goes out at once and
 * the greeting that still arrives is skipped. */
static void test_fast_start(void **state)
{
	struct fixture *f = *state;
	struct conn_vec *cv = &f->conn[0];
	struct derp_client_opts opts = {.nonce_fn = vector_nonce};
	struct derp_client c;
	struct derp_event ev;
	const char *why = NULL;
	uint8_t nonce[24];
	const uint8_t *out;

	vectors_hex(json_array_get(cv->c2s, 0), "nonce", nonce, 24);
	opts.nonce_arg = nonce;
	assert_int_equal(derp_client_init(&c, cv->priv, f->server_pub, &opts), 0);
	assert_int_equal(derp_client_pending(&c, &out), 109);
	assert_memory_equal(out, cv->c2s_stream, 109);
	assert_int_equal(feed_next(&c, cv->s2c_stream, cv->s2c_len, &ev, &why), 1);
	assert_int_equal(ev.type, DERP_EV_SERVER_INFO);
	assert_int_equal(c.frames_ignored, 1);
	derp_client_destroy(&c);
}

/* ---- HTTP upgrade ---- */

static const char reply_101[] =
	"HTTP/1.1 101 Switching Protocols\r\n"
	"Upgrade: DERP\r\n"
	"Connection: Upgrade\r\n"
	"Derp-Version: 2\r\n"
	"Derp-Public-Key: "
	"e3bf3b37400ca4f992092ab4c58fdca32aecbf23e74ec98a490e24c6eecf8960\r\n"
	"\r\n";

static void test_http(void **state)
{
	struct derp_http_reply r;
	const char *why = NULL;
	char buf[512];
	ssize_t n;

	(void)state;
	n = derp_http_request(buf, sizeof(buf), "derp.example.com", true);
	assert_int_equal(n, (ssize_t)strlen(buf));
	assert_string_equal(buf, "GET /derp HTTP/1.1\r\nHost: derp.example.com\r\n"
				 "User-Agent: Go-http-client/1.1\r\nConnection: Upgrade\r\n"
				 "Derp-Fast-Start: 1\r\nUpgrade: DERP\r\n\r\n");
	assert_int_equal(derp_http_request(buf, sizeof(buf), "a b", false), -EINVAL);
	assert_int_equal(derp_http_request(buf, sizeof(buf), "a\r\nX: y", false), -EINVAL);
	assert_int_equal(derp_http_request(buf, sizeof(buf), "", false), -EINVAL);
	assert_int_equal(derp_http_request(buf, 20, "derp.example.com", false), -ENAMETOOLONG);

	/* Every prefix of the answer asks for more; the whole one parses. */
	for (size_t i = 0; i < strlen(reply_101); i++)
		assert_int_equal(derp_http_parse_reply(reply_101, i, &r, &why), 0);
	assert_int_equal(derp_http_parse_reply(reply_101, strlen(reply_101), &r, &why),
			 (ssize_t)strlen(reply_101));
	assert_int_equal(r.status, 101);
	assert_true(r.upgrade_derp && r.connection_upgrade && r.has_version && r.has_public_key);
	assert_int_equal(r.version, 2);
	assert_int_equal(r.public_key[0], 0xe3);
	assert_int_equal(r.public_key[31], 0x60);
}

static void test_http_bad(void **state)
{
	static const struct {
		const char *head;
		int err;
	} cases[] = {
		{"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", -ECONNREFUSED},
		{"HTTP/1.1 101\r\n\r\n", 101},
		{"HTTP/2 101 Switching\r\n\r\n", -EBADMSG},
		{"HTTP/1.1 10x Switching\r\n\r\n", -EBADMSG},
		{"HTTP/1.1 099 x\r\n\r\n", -EBADMSG},
		{"HTTP/1.1 101 x\r\nNoColon\r\n\r\n", -EBADMSG},
		{"HTTP/1.1 101 x\r\n: empty name\r\n\r\n", -EBADMSG},
		{"HTTP/1.1 101 x\r\nBad Name: v\r\n\r\n", -EBADMSG},
		{"HTTP/1.1 101 x\nUpgrade: DERP\r\n\r\n", -EBADMSG},
		{"HTTP/1.1 101 x\r\nDerp-Version: 2a\r\n\r\n", -EBADMSG},
		{"HTTP/1.1 101 x\r\nDerp-Version: 1234\r\n\r\n", -EBADMSG},
		{"HTTP/1.1 101 x\r\nDerp-Public-Key: 00\r\n\r\n", -EBADMSG},
		{"HTTP/1.1 101 x\r\nDerp-Public-Key: "
		 "zzbf3b37400ca4f992092ab4c58fdca32aecbf23e74ec98a490e24c6eecf8960\r\n\r\n",
		 -EBADMSG},
		{"\r\n\r\n", -EBADMSG},
	};
	struct derp_http_reply r;
	const char *why;
	char *big = malloc(DERP_HTTP_MAX_HEAD + 10);

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ssize_t n;

		why = NULL;
		n = derp_http_parse_reply(cases[i].head, strlen(cases[i].head), &r, &why);
		if (cases[i].err > 0) {
			assert_int_equal(n, (ssize_t)strlen(cases[i].head));
			assert_int_equal(r.status, cases[i].err);
			assert_false(r.upgrade_derp || r.has_public_key || r.has_version);
		} else {
			assert_int_equal(n, cases[i].err);
			assert_non_null(why);
		}
	}
	/* No end within the limit: fails without waiting. */
	assert_non_null(big);
	memset(big, 'a', DERP_HTTP_MAX_HEAD + 10);
	assert_int_equal(derp_http_parse_reply(big, DERP_HTTP_MAX_HEAD - 1, &r, &why), 0);
	assert_int_equal(derp_http_parse_reply(big, DERP_HTTP_MAX_HEAD, &r, &why), -EMSGSIZE);
	free(big);
}

/* ---- the capture ---- */

enum { MAX_STREAMS = 16, MAX_SEGS = 128 };

struct seg {
	uint32_t seq;
	const uint8_t *data;
	size_t len;
};

struct stream {
	uint8_t src[4], dst[4];
	uint16_t sport, dport;
	struct seg segs[MAX_SEGS];
	size_t nsegs;
	uint8_t *bytes;
	size_t len;
};

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static struct stream *stream_for(struct stream *s, size_t *n, const uint8_t *ip, uint16_t sport,
				 uint16_t dport)
{
	for (size_t i = 0; i < *n; i++)
		if (!memcmp(s[i].src, ip + 12, 4) && !memcmp(s[i].dst, ip + 16, 4) &&
		    s[i].sport == sport && s[i].dport == dport)
			return &s[i];
	assert_true(*n < MAX_STREAMS);
	memcpy(s[*n].src, ip + 12, 4);
	memcpy(s[*n].dst, ip + 16, 4);
	s[*n].sport = sport;
	s[*n].dport = dport;
	return &s[(*n)++];
}

static int seg_cmp(const void *a, const void *b)
{
	const struct seg *x = a, *y = b;

	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The TCP payloads to or from port in the pcap, one stream per direction,
 * ordered by sequence number without retransmitted duplicates. The capture
 * is a short session: no sequence wrap, no overlapping segments. */
static size_t pcap_streams(const uint8_t *pcap, size_t plen, uint16_t port, struct stream *s)
{
	size_t off = 24, n = 0;

	assert_true(plen >= 24);
	assert_int_equal(pcap[0] | pcap[1] << 8 | pcap[2] << 16 | (uint32_t)pcap[3] << 24,
			 0xa1b2c3d4);
	assert_int_equal(pcap[20], 1); /* Ethernet */
	while (off + 16 <= plen) {
		size_t incl = pcap[off + 8] | pcap[off + 9] << 8 | pcap[off + 10] << 16 |
			      (size_t)pcap[off + 11] << 24;
		const uint8_t *p = pcap + off + 16, *ip, *tcp;
		size_t ihl, tot, doff;
		uint16_t sport, dport;
		struct stream *st;

		assert_true(off + 16 + incl <= plen);
		off += 16 + incl;
		if (incl < 14 + 20 || be16(p + 12) != 0x0800)
			continue;
		ip = p + 14;
		ihl = (size_t)(ip[0] & 15) * 4;
		tot = be16(ip + 2);
		if (ip[9] != 6 || tot > incl - 14 || ihl + 20 > tot)
			continue;
		tcp = ip + ihl;
		sport = be16(tcp);
		dport = be16(tcp + 2);
		doff = (size_t)(tcp[12] >> 4) * 4;
		if ((sport != port && dport != port) || ihl + doff > tot || ihl + doff == tot)
			continue;
		st = stream_for(s, &n, ip, sport, dport);
		assert_true(st->nsegs < MAX_SEGS);
		st->segs[st->nsegs++] = (struct seg){
			.seq = (uint32_t)tcp[4] << 24 | (uint32_t)tcp[5] << 16 | tcp[6] << 8 |
			       tcp[7],
			.data = tcp + doff,
			.len = tot - ihl - doff,
		};
	}
	for (size_t i = 0; i < n; i++) {
		struct stream *st = &s[i];

		qsort(st->segs, st->nsegs, sizeof(st->segs[0]), seg_cmp);
		st->bytes = malloc(64 * 1024);
		assert_non_null(st->bytes);
		for (size_t k = 0; k < st->nsegs; k++) {
			if (k && st->segs[k].seq == st->segs[k - 1].seq)
				continue; /* retransmission */
			if (k)
				assert_int_equal(st->segs[k].seq,
						 st->segs[k - 1].seq + st->segs[k - 1].len);
			assert_true(st->len + st->segs[k].len <= 64 * 1024);
			memcpy(st->bytes + st->len, st->segs[k].data, st->segs[k].len);
			st->len += st->segs[k].len;
		}
	}
	return n;
}

static uint8_t *read_file(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	uint8_t *b = malloc(1 << 20);

	if (!fp)
		fail_msg("cannot open %s", path);
	assert_non_null(b);
	*len = fread(b, 1, 1 << 20, fp);
	assert_true(*len > 0 && *len < (1 << 20));
	fclose(fp);
	return b;
}

/* What the capture's DERP connections carried, per client. */
struct captured_client {
	uint8_t ip[4], node_key[32];
	uint8_t sent_to[8][32], got_from[8][32];
	size_t nsent, ngot;
};

/* The client's side: our upgrade request byte for byte, then ClientInfo,
 * NotePreferred(true) for its home region, and SendPackets. */
static void check_c2s(const struct stream *st, struct captured_client *cc)
{
	char req[256];
	ssize_t rlen = derp_http_request(req, sizeof(req), "10.99.0.2", false);
	size_t off = (size_t)rlen;
	const char *why = NULL;
	struct derp_frame fr = {0};
	unsigned int i = 0;

	assert_true(rlen > 0 && st->len > (size_t)rlen);
	assert_memory_equal(st->bytes, req, (size_t)rlen);
	memcpy(cc->ip, st->src, 4);
	while (off < st->len) {
		ssize_t n = derp_frame_decode(st->bytes + off, st->len - off, DERP_MAX_FRAME, &fr,
					      &why);

		assert_true(n > 0);
		off += (size_t)n;
		if (i == 0) {
			assert_int_equal(fr.type, DERP_FRAME_CLIENT_INFO);
			/* key, nonce, tag and {"version":2,"CanAckPings":true} */
			assert_int_equal(fr.len, 32 + 24 + 16 + 32);
			memcpy(cc->node_key, fr.body, 32);
		} else if (i == 1) {
			assert_int_equal(fr.type, DERP_FRAME_NOTE_PREFERRED);
			assert_int_equal(fr.len, 1);
			assert_int_equal(fr.body[0], 1);
		} else {
			assert_int_equal(fr.type, DERP_FRAME_SEND_PACKET);
			assert_true(fr.len > 32 && fr.len - 32 <= DERP_MAX_PACKET);
			assert_true(cc->nsent < 8);
			memcpy(cc->sent_to[cc->nsent++], fr.body, 32);
		}
		i++;
	}
	assert_int_equal(off, st->len);
	assert_true(i >= 3);
}

/* The server's side: the 101, then ServerKey naming the key the 101 named,
 * ServerInfo, and RecvPackets. The ServerInfo box is sealed to the node's
 * key, whose private half the capture does not hold; its size is that of
 * {"version":2}. */
static void check_s2c(const struct stream *st, struct captured_client *cc)
{
	struct derp_http_reply r;
	const char *why = NULL;
	ssize_t head = derp_http_parse_reply((const char *)st->bytes, st->len, &r, &why);
	size_t off;
	struct derp_frame fr = {0};
	unsigned int i = 0;

	assert_true(head > 0);
	assert_int_equal(r.status, 101);
	assert_true(r.upgrade_derp && r.connection_upgrade && r.has_public_key);
	assert_true(r.has_version);
	assert_int_equal(r.version, DERP_PROTOCOL_VERSION);
	memcpy(cc->ip, st->dst, 4);
	for (off = (size_t)head; off < st->len; i++) {
		ssize_t n = derp_frame_decode(st->bytes + off, st->len - off,
					      i ? DERP_MAX_FRAME : DERP_MAX_SERVER_KEY, &fr, &why);

		assert_true(n > 0);
		off += (size_t)n;
		if (i == 0) {
			assert_int_equal(fr.type, DERP_FRAME_SERVER_KEY);
			assert_int_equal(fr.len, 40);
			assert_memory_equal(fr.body, derp_magic, 8);
			assert_memory_equal(fr.body + 8, r.public_key, 32);
		} else if (i == 1) {
			assert_int_equal(fr.type, DERP_FRAME_SERVER_INFO);
			assert_int_equal(fr.len, 24 + 16 + strlen("{\"version\":2}"));
		} else {
			assert_int_equal(fr.type, DERP_FRAME_RECV_PACKET);
			assert_true(fr.len > 32);
			assert_true(cc->ngot < 8);
			memcpy(cc->got_from[cc->ngot++], fr.body, 32);
		}
	}
	assert_int_equal(off, st->len);
}

static struct captured_client *client_at(struct captured_client *cc, size_t *n, const uint8_t ip[4])
{
	for (size_t i = 0; i < *n; i++)
		if (!memcmp(cc[i].ip, ip, 4))
			return &cc[i];
	memcpy(cc[*n].ip, ip, 4);
	return &cc[(*n)++];
}

static bool known_key(const struct captured_client *cc, size_t n, const uint8_t key[32])
{
	for (size_t i = 0; i < n; i++)
		if (!memcmp(cc[i].node_key, key, 32))
			return true;
	return false;
}

static void test_capture(void **state)
{
	char path[4096];
	struct stream *s = calloc(MAX_STREAMS, sizeof(*s));
	struct captured_client cc[MAX_STREAMS] = {0};
	size_t plen, n, nc = 0;
	uint8_t *pcap, n1_key[32];
	json_t *reg;

	(void)state;
	assert_non_null(s);
	pcap = read_file(vectors_path(path, sizeof(path),
				      "captures/cleartext-derp-session/hub-br0-all.pcap"),
			 &plen);
	n = pcap_streams(pcap, plen, 3340, s);
	assert_int_equal(n, 6); /* three nodes, both directions */
	for (size_t i = 0; i < n; i++) {
		if (s[i].dport == 3340)
			check_c2s(&s[i], client_at(cc, &nc, s[i].src));
		else
			check_s2c(&s[i], client_at(cc, &nc, s[i].dst));
	}
	assert_int_equal(nc, 3);
	/* Every packet went to, and came from, a node connected there. */
	for (size_t i = 0; i < nc; i++) {
		assert_true(cc[i].nsent > 0 && cc[i].ngot > 0);
		for (size_t k = 0; k < cc[i].nsent; k++)
			assert_true(known_key(cc, nc, cc[i].sent_to[k]));
		for (size_t k = 0; k < cc[i].ngot; k++)
			assert_true(known_key(cc, nc, cc[i].got_from[k]));
	}
	/* n1 (10.99.0.11) registered with the node key it gave DERP. */
	reg = vectors_load("captures/cleartext-derp-session/n1-wire-messages/001-RegisterReq.json");
	assert_int_equal(
		keys_from_text("nodekey", vectors_str(vectors_get(reg, "body"), "NodeKey"), n1_key),
		0);
	assert_memory_equal(client_at(cc, &nc, (const uint8_t[4]){10, 99, 0, 11})->node_key, n1_key,
			    32);
	assert_int_equal(nc, 3);
	json_decref(reg);
	for (size_t i = 0; i < n; i++)
		free(s[i].bytes);
	free(s);
	free(pcap);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frames_decode),
		cmocka_unit_test(test_client_info),
		cmocka_unit_test(test_client_info_options),
		cmocka_unit_test(test_session_a),
		cmocka_unit_test(test_session_b),
		cmocka_unit_test(test_fast_start),
		cmocka_unit_test(test_server_frames),
		cmocka_unit_test(test_ignored_frames),
		cmocka_unit_test(test_bad_greeting),
		cmocka_unit_test(test_bad_greeting_body),
		cmocka_unit_test(test_oversized_frame),
		cmocka_unit_test(test_bad_server_info),
		cmocka_unit_test(test_server_info_rate),
		cmocka_unit_test(test_send_limits),
		cmocka_unit_test(test_http),
		cmocka_unit_test(test_http_bad),
		cmocka_unit_test(test_capture),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
