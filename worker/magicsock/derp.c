/* DERP client protocol, sans-I/O. See derp.h for the frame format and
 * docs/tailscale-protocol.md for the session: the server greets with its key
 * (ServerKey), the client answers with its node key and a boxed JSON
 * (ClientInfo), the server confirms with a boxed JSON of its own (ServerInfo),
 * then packets flow both ways addressed by node key.
 *
 * The client's reactions mirror upstream's derp.Client: a frame it does not
 * expect from a server (mesh frames, ClientInfo, SendPacket, unknown types)
 * and a frame too short for its type are skipped, not fatal, so that a newer
 * server can add frames; an oversized frame, a bad greeting or a ServerInfo
 * that does not open or parse ends the connection. */
#include "derp.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <sodium.h>

#include "mem.h"

const uint8_t derp_magic[DERP_MAGIC_LEN] = {0x44, 0x45, 0x52, 0x50, 0xf0, 0x9f, 0x94, 0x91};

static uint32_t load_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void store_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

ssize_t derp_frame_decode(const uint8_t *src, size_t len, uint32_t max_body, struct derp_frame *f,
			  const char **why)
{
	uint32_t body;

	if (len < DERP_FRAME_HDR_LEN)
		return 0;
	body = load_be32(src + 1);
	if (body > max_body) {
		*why = "DERP frame longer than allowed";
		return -EMSGSIZE; /* do not wait for bytes that may never come */
	}
	if (len - DERP_FRAME_HDR_LEN < body) /* cannot wrap: len >= header */
		return 0;
	f->type = src[0];
	f->body = src + DERP_FRAME_HDR_LEN;
	f->len = body;
	return DERP_FRAME_HDR_LEN + (ssize_t)body;
}

void derp_frame_put_header(uint8_t hdr[static DERP_FRAME_HDR_LEN], uint8_t type, uint32_t len)
{
	hdr[0] = type;
	store_be32(hdr + 1, len);
}

/* ---- ClientInfo ---- */

static bool valid_mesh_key(const char *k)
{
	size_t n = strnlen(k, DERP_MESH_KEY_MAX + 1);

	if (n > DERP_MESH_KEY_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = k[i];

		if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') ||
		      (ch >= 'A' && ch <= 'F')))
			return false;
	}
	return true;
}

/* The JSON of upstream's clientInfo struct: its fields in declaration order,
 * meshKey and IsProber omitted when empty, CanAckPings always present. */
static int client_info_json(char *buf, size_t cap, const struct derp_client_opts *opts)
{
	int n;

	if (!valid_mesh_key(opts->mesh_key))
		return -EINVAL;
	n = snprintf(buf, cap, "{%s%s%s\"version\":%d,\"CanAckPings\":true%s}",
		     opts->mesh_key[0] ? "\"meshKey\":\"" : "", opts->mesh_key,
		     opts->mesh_key[0] ? "\"," : "", DERP_PROTOCOL_VERSION,
		     opts->is_prober ? ",\"IsProber\":true" : "");
	if (n < 0 || (size_t)n >= cap)
		return -ENOBUFS;
	return n;
}

ssize_t derp_build_client_info(uint8_t *out, size_t cap, const struct derp_client_opts *opts,
			       const uint8_t node_priv[static DERP_KEY_LEN],
			       const uint8_t node_pub[static DERP_KEY_LEN],
			       const uint8_t server_pub[static DERP_KEY_LEN],
			       const uint8_t nonce[static DERP_NONCE_LEN])
{
	char json[128];
	int jlen = client_info_json(json, sizeof(json), opts);
	size_t body;
	uint8_t *p;

	if (jlen < 0)
		return jlen;
	body = DERP_KEY_LEN + DERP_NONCE_LEN + DERP_BOX_TAG_LEN + (size_t)jlen;
	if (cap < DERP_FRAME_HDR_LEN + body)
		return -ENOBUFS;
	derp_frame_put_header(out, DERP_FRAME_CLIENT_INFO, (uint32_t)body);
	p = out + DERP_FRAME_HDR_LEN;
	memcpy(p, node_pub, DERP_KEY_LEN);
	memcpy(p + DERP_KEY_LEN, nonce, DERP_NONCE_LEN);
	/* Go's box.Seal and crypto_box_easy both write tag || ciphertext. */
	if (crypto_box_easy(p + DERP_KEY_LEN + DERP_NONCE_LEN, (const uint8_t *)json,
			    (unsigned long long)jlen, nonce, server_pub, node_priv) != 0)
		return -EINVAL; /* a server key of low order */
	return (ssize_t)(DERP_FRAME_HDR_LEN + body);
}

/* ---- buffers ---- */

/* Room for n more bytes at the end of b, moving the live bytes to the front
 * first; the caller has checked the DERP_MAX_BUFFERED bound. */
static uint8_t *buf_reserve(struct derp_buf *b, size_t n)
{
	if (b->off > 0 && b->cap - b->len < n) {
		memmove(b->p, b->p + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
	}
	if (b->cap - b->len < n) {
		size_t cap = b->cap ? b->cap : 4096;

		while (cap - b->len < n)
			cap *= 2;
		b->p = xrealloc(b->p, cap);
		b->cap = cap;
	}
	return b->p + b->len;
}

static size_t buf_live(const struct derp_buf *b)
{
	return b->len - b->off;
}

static void buf_free(struct derp_buf *b)
{
	free(b->p);
	*b = (struct derp_buf){0};
}

/* Appends a frame of type with body a || b (either may be empty). */
static int queue_frame(struct derp_client *c, uint8_t type, const uint8_t *a, size_t alen,
		       const uint8_t *b, size_t blen)
{
	uint8_t *p;

	if (c->state == DERP_CLIENT_WANT_SERVER_KEY || c->state == DERP_CLIENT_FAILED)
		return -ENOTCONN;
	if (buf_live(&c->out) + DERP_FRAME_HDR_LEN + alen + blen > DERP_MAX_BUFFERED)
		return -ENOBUFS;
	p = buf_reserve(&c->out, DERP_FRAME_HDR_LEN + alen + blen);
	derp_frame_put_header(p, type, (uint32_t)(alen + blen));
	if (alen)
		memcpy(p + DERP_FRAME_HDR_LEN, a, alen);
	if (blen)
		memcpy(p + DERP_FRAME_HDR_LEN + alen, b, blen);
	c->out.len += DERP_FRAME_HDR_LEN + alen + blen;
	return 0;
}

/* ---- the client ---- */

static void random_nonce(uint8_t nonce[static DERP_NONCE_LEN], void *arg)
{
	(void)arg;
	randombytes_buf(nonce, DERP_NONCE_LEN);
}

static int queue_client_info(struct derp_client *c)
{
	uint8_t frame[DERP_CLIENT_INFO_MAX], nonce[DERP_NONCE_LEN];
	ssize_t n;
	uint8_t *p;

	c->opts.nonce_fn(nonce, c->opts.nonce_arg);
	n = derp_build_client_info(frame, sizeof(frame), &c->opts, c->node_priv, c->node_pub,
				   c->server_pub, nonce);
	if (n < 0)
		return (int)n;
	/* ClientInfo is the first frame out: the buffer is empty. */
	p = buf_reserve(&c->out, (size_t)n);
	memcpy(p, frame, (size_t)n);
	c->out.len += (size_t)n;
	return 0;
}

int derp_client_init(struct derp_client *c, const uint8_t node_priv[static DERP_KEY_LEN],
		     const uint8_t *server_pub, const struct derp_client_opts *opts)
{
	int ret;

	*c = (struct derp_client){.state = DERP_CLIENT_WANT_SERVER_KEY};
	if (opts)
		c->opts = *opts;
	if (!c->opts.nonce_fn)
		c->opts.nonce_fn = random_nonce;
	if (!valid_mesh_key(c->opts.mesh_key))
		return -EINVAL;
	memcpy(c->node_priv, node_priv, DERP_KEY_LEN);
	if (crypto_scalarmult_base(c->node_pub, c->node_priv) != 0) {
		ret = -EINVAL;
		goto err;
	}
	if (server_pub) {
		memcpy(c->server_pub, server_pub, DERP_KEY_LEN);
		c->state = DERP_CLIENT_WANT_SERVER_INFO;
		ret = queue_client_info(c);
		if (ret < 0)
			goto err;
	}
	return 0;
err:
	derp_client_destroy(c);
	return ret;
}

void derp_client_destroy(struct derp_client *c)
{
	sodium_memzero(c->node_priv, sizeof(c->node_priv));
	buf_free(&c->in);
	buf_free(&c->out);
	c->state = DERP_CLIENT_FAILED;
}

int derp_client_feed(struct derp_client *c, const uint8_t *data, size_t len)
{
	uint8_t *p;

	if (c->state == DERP_CLIENT_FAILED)
		return -ENOTCONN;
	if (len > DERP_MAX_BUFFERED || buf_live(&c->in) > DERP_MAX_BUFFERED - len)
		return -ENOBUFS;
	p = buf_reserve(&c->in, len);
	if (len)
		memcpy(p, data, len);
	c->in.len += len;
	return 0;
}

static int client_fail(struct derp_client *c, int err)
{
	c->state = DERP_CLIENT_FAILED;
	return err;
}

/* The greeting: magic and the server's key, maybe more for future use. */
static int on_greeting(struct derp_client *c, const struct derp_frame *f, struct derp_event *ev,
		       const char **why)
{
	int ret;

	if (f->type != DERP_FRAME_SERVER_KEY || f->len < DERP_MAGIC_LEN + DERP_KEY_LEN ||
	    memcmp(f->body, derp_magic, DERP_MAGIC_LEN) != 0) {
		*why = "invalid DERP server greeting";
		return -EPROTO;
	}
	memcpy(c->server_pub, f->body + DERP_MAGIC_LEN, DERP_KEY_LEN);
	c->state = DERP_CLIENT_WANT_SERVER_INFO;
	ret = queue_client_info(c);
	if (ret < 0) {
		*why = "cannot seal ClientInfo to the server's key";
		return -EPROTO;
	}
	ev->type = DERP_EV_SERVER_KEY;
	ev->key = c->server_pub;
	return 1;
}

/* A ServerInfo integer field as Go's encoding/json fills an int: absent or
 * null leaves it, anything but an integer fails. */
static int info_int(json_t *v, int64_t *out)
{
	if (json_is_null(v))
		return 0;
	if (!json_is_integer(v))
		return -EPROTO;
	*out = json_integer_value(v);
	return 0;
}

static int parse_server_info_json(const uint8_t *msg, size_t len, struct derp_event *ev,
				  const char **why)
{
	json_error_t jerr;
	json_t *root = json_loadb((const char *)msg, len, JSON_DECODE_ANY, &jerr), *v;
	const char *name;
	int64_t version = 0;
	int ret = 0;

	if (!root || !(json_is_object(root) || json_is_null(root))) {
		*why = "ServerInfo is not a JSON object";
		json_decref(root);
		return -EPROTO;
	}
	/* Go matches field names case-insensitively and keeps the last. */
	json_object_foreach(root, name, v)
	{
		if (!strcasecmp(name, "version"))
			ret = info_int(v, &version);
		else if (!strcasecmp(name, "TokenBucketBytesPerSecond"))
			ret = info_int(v, &ev->token_bucket_bytes_per_second);
		else if (!strcasecmp(name, "TokenBucketBytesBurst"))
			ret = info_int(v, &ev->token_bucket_bytes_burst);
		if (ret < 0) {
			*why = "ServerInfo field is not an integer";
			break;
		}
	}
	json_decref(root);
	return ret;
}

static int on_server_info(struct derp_client *c, const struct derp_frame *f, struct derp_event *ev,
			  const char **why)
{
	size_t mlen;
	uint8_t *msg;
	int ret;

	if (f->len < DERP_NONCE_LEN) {
		*why = "short ServerInfo frame";
		return -EPROTO;
	}
	if (f->len < DERP_NONCE_LEN + DERP_BOX_TAG_LEN) {
		*why = "ServerInfo box does not open with the server's key";
		return -EBADMSG;
	}
	mlen = f->len - DERP_NONCE_LEN - DERP_BOX_TAG_LEN;
	msg = xmalloc(mlen + 1);
	if (crypto_box_open_easy(msg, f->body + DERP_NONCE_LEN, f->len - DERP_NONCE_LEN, f->body,
				 c->server_pub, c->node_priv) != 0) {
		free(msg);
		*why = "ServerInfo box does not open with the server's key";
		return -EBADMSG;
	}
	ev->type = DERP_EV_SERVER_INFO;
	ret = parse_server_info_json(msg, mlen, ev, why);
	free(msg);
	if (ret < 0)
		return ret;
	/* Upstream: no rate means no limiter; a new ServerInfo replaces it. */
	c->rate_bps = ev->token_bucket_bytes_per_second > 0 ? ev->token_bucket_bytes_per_second : 0;
	c->rate_burst = ev->token_bucket_bytes_burst;
	c->tokens = c->rate_burst > 0 ? (double)c->rate_burst : 0;
	c->tokens_at_ms = 0;
	c->state = DERP_CLIENT_CONNECTED;
	return 1;
}

static void on_peer_present(const struct derp_frame *f, struct derp_event *ev)
{
	ev->type = DERP_EV_PEER_PRESENT;
	ev->key = f->body;
	if (f->len >= DERP_KEY_LEN + 18) {
		ev->has_addr = true;
		memcpy(ev->addr, f->body + DERP_KEY_LEN, 16);
		ev->port = (uint16_t)(f->body[DERP_KEY_LEN + 16] << 8 | f->body[DERP_KEY_LEN + 17]);
	}
	if (f->len >= DERP_KEY_LEN + 19) {
		ev->has_flags = true;
		ev->flags = f->body[DERP_KEY_LEN + 18];
	}
}

/* Minimum body length per frame type the client reads; a shorter one is
 * dropped, as upstream logs "[unexpected] dropping short ..." and goes on. */
static uint32_t min_len(uint8_t type)
{
	switch (type) {
	case DERP_FRAME_RECV_PACKET:
	case DERP_FRAME_PEER_GONE:
	case DERP_FRAME_PEER_PRESENT:
		return DERP_KEY_LEN;
	case DERP_FRAME_PING:
	case DERP_FRAME_PONG:
	case DERP_FRAME_RESTARTING:
		return 8;
	default:
		return 0;
	}
}

/* One frame after the greeting. Returns 1 (ev filled), 0 (skipped) or < 0. */
static int on_frame(struct derp_client *c, const struct derp_frame *f, struct derp_event *ev,
		    const char **why)
{
	if (f->len < min_len(f->type)) {
		c->frames_ignored++;
		return 0;
	}
	switch (f->type) {
	case DERP_FRAME_SERVER_INFO:
		return on_server_info(c, f, ev, why);
	case DERP_FRAME_KEEP_ALIVE:
		ev->type = DERP_EV_KEEP_ALIVE;
		return 1;
	case DERP_FRAME_PEER_GONE:
		ev->type = DERP_EV_PEER_GONE;
		ev->key = f->body;
		/* Older servers send no reason byte: disconnected. */
		ev->reason = f->len > DERP_KEY_LEN ? f->body[DERP_KEY_LEN] : 0;
		return 1;
	case DERP_FRAME_PEER_PRESENT:
		on_peer_present(f, ev);
		return 1;
	case DERP_FRAME_RECV_PACKET:
		ev->type = DERP_EV_PACKET;
		ev->key = f->body;
		ev->data = f->body + DERP_KEY_LEN;
		ev->len = f->len - DERP_KEY_LEN;
		return 1;
	case DERP_FRAME_PING:
		/* We declared CanAckPings: every ping gets its pong. */
		ev->type = DERP_EV_PING;
		memcpy(ev->ping, f->body, DERP_PING_LEN);
		if (derp_client_send_pong(c, ev->ping) < 0) {
			*why = "DERP send buffer full";
			return -ENOBUFS;
		}
		return 1;
	case DERP_FRAME_PONG:
		ev->type = DERP_EV_PONG;
		memcpy(ev->ping, f->body, DERP_PING_LEN);
		return 1;
	case DERP_FRAME_HEALTH:
		ev->type = DERP_EV_HEALTH;
		ev->data = f->body;
		ev->len = f->len;
		return 1;
	case DERP_FRAME_RESTARTING:
		ev->type = DERP_EV_RESTARTING;
		ev->reconnect_in_ms = load_be32(f->body);
		ev->try_for_ms = load_be32(f->body + 4);
		return 1;
	default:
		/* A second ServerKey (always, after a fast start), frames only
		 * a server reads, mesh frames and types from the future. */
		c->frames_ignored++;
		return 0;
	}
}

int derp_client_next(struct derp_client *c, struct derp_event *ev, const char **why)
{
	for (;;) {
		struct derp_frame f;
		uint32_t max = c->state == DERP_CLIENT_WANT_SERVER_KEY ? DERP_MAX_SERVER_KEY
								       : DERP_MAX_FRAME;
		ssize_t n;
		int ret;

		if (c->state == DERP_CLIENT_FAILED) {
			*why = "DERP connection failed";
			return -ENOTCONN;
		}
		n = derp_frame_decode(c->in.p + c->in.off, buf_live(&c->in), max, &f, why);
		if (n <= 0)
			return n < 0 ? client_fail(c, (int)n) : 0;
		c->in.off += (size_t)n;
		*ev = (struct derp_event){0};
		if (c->state == DERP_CLIENT_WANT_SERVER_KEY)
			ret = on_greeting(c, &f, ev, why);
		else
			ret = on_frame(c, &f, ev, why);
		if (ret < 0)
			return client_fail(c, ret);
		if (ret > 0)
			return ret;
	}
}

/* Upstream's token bucket (golang.org/x/time/rate): starts full at burst,
 * refills at rate bytes per second, and a send needing more tokens than
 * there are is dropped rather than delayed. */
static bool rate_allow(struct derp_client *c, uint64_t now_ms, size_t n)
{
	if (c->rate_bps <= 0)
		return true;
	if (now_ms > c->tokens_at_ms) {
		if (c->tokens_at_ms)
			c->tokens +=
				(double)(now_ms - c->tokens_at_ms) * (double)c->rate_bps / 1000.0;
		if (c->tokens > (double)c->rate_burst)
			c->tokens = (double)c->rate_burst;
		c->tokens_at_ms = now_ms;
	}
	if ((double)n > c->tokens)
		return false;
	c->tokens -= (double)n;
	return true;
}

int derp_client_send_packet(struct derp_client *c, uint64_t now_ms,
			    const uint8_t dst[static DERP_KEY_LEN], const uint8_t *pkt, size_t len)
{
	if (len > DERP_MAX_PACKET)
		return -EMSGSIZE;
	if (c->state == DERP_CLIENT_WANT_SERVER_KEY || c->state == DERP_CLIENT_FAILED)
		return -ENOTCONN;
	if (!rate_allow(c, now_ms, DERP_FRAME_HDR_LEN + DERP_KEY_LEN + len)) {
		c->dropped_by_rate++;
		return 0;
	}
	return queue_frame(c, DERP_FRAME_SEND_PACKET, dst, DERP_KEY_LEN, pkt, len);
}

int derp_client_note_preferred(struct derp_client *c, bool preferred)
{
	uint8_t b = preferred ? 1 : 0;

	return queue_frame(c, DERP_FRAME_NOTE_PREFERRED, &b, 1, NULL, 0);
}

int derp_client_send_ping(struct derp_client *c, const uint8_t data[static DERP_PING_LEN])
{
	return queue_frame(c, DERP_FRAME_PING, data, DERP_PING_LEN, NULL, 0);
}

int derp_client_send_pong(struct derp_client *c, const uint8_t data[static DERP_PING_LEN])
{
	return queue_frame(c, DERP_FRAME_PONG, data, DERP_PING_LEN, NULL, 0);
}

size_t derp_client_pending(const struct derp_client *c, const uint8_t **buf)
{
	*buf = c->out.p ? c->out.p + c->out.off : NULL;
	return buf_live(&c->out);
}

void derp_client_sent(struct derp_client *c, size_t n)
{
	if (n > buf_live(&c->out))
		n = buf_live(&c->out);
	c->out.off += n;
	if (c->out.off == c->out.len)
		c->out.off = c->out.len = 0;
}
