/* DERP, Tailscale's relay protocol, client side and sans-I/O: bytes from the
 * server go in, events come out, and the frames to send accumulate in an
 * output buffer the transport (derp_conn.c) drains. Nothing here touches a
 * socket or a clock, so the unit tests and the fuzz target drive it with
 * recorded upstream streams. Wire format and the client's reactions follow
 * upstream derp (derp.go, derp_client.go) and derphttp (the HTTP upgrade) at
 * v1.68.2; see docs/tailscale-protocol.md.
 *
 * A frame is type (1 byte) || body length (big-endian uint32) || body. */
#ifndef TSCNI_WORKER_MAGICSOCK_DERP_H
#define TSCNI_WORKER_MAGICSOCK_DERP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum derp_limits {
	DERP_FRAME_HDR_LEN = 5,
	DERP_KEY_LEN = 32,
	DERP_NONCE_LEN = 24,
	DERP_BOX_TAG_LEN = 16,
	DERP_MAGIC_LEN = 8,
	DERP_PING_LEN = 8,
	DERP_PROTOCOL_VERSION = 2,
	/* The largest packet a client sends (upstream MaxPacketSize). */
	DERP_MAX_PACKET = 64 << 10,
	/* The largest frame body a client accepts from the server. */
	DERP_MAX_FRAME = 1 << 20,
	/* The server's greeting (ServerKey) is read with a 1 KiB limit. */
	DERP_MAX_SERVER_KEY = 1 << 10,
	/* The mesh key is 64 hex digits. */
	DERP_MESH_KEY_MAX = 64,
	/* The server sends KeepAlive every 60 s; upstream's client gives up
	 * on a connection silent for 120 s. */
	DERP_KEEPALIVE_MS = 60000,
	DERP_RECV_TIMEOUT_MS = 120000,
	/* Bytes the client buffers unread or unsent before refusing more. */
	DERP_MAX_BUFFERED = 4 << 20,
	/* The HTTP upgrade answer's head. */
	DERP_HTTP_MAX_HEAD = 8192,
	/* The ClientInfo frame with every field set. */
	DERP_CLIENT_INFO_MAX = 256,
};

enum derp_frame_type {
	DERP_FRAME_SERVER_KEY = 0x01,	  /* magic(8) || server public key(32) */
	DERP_FRAME_CLIENT_INFO = 0x02,	  /* client key(32) || nonce(24) || box(JSON) */
	DERP_FRAME_SERVER_INFO = 0x03,	  /* nonce(24) || box(JSON) */
	DERP_FRAME_SEND_PACKET = 0x04,	  /* destination key(32) || packet */
	DERP_FRAME_RECV_PACKET = 0x05,	  /* source key(32) || packet */
	DERP_FRAME_KEEP_ALIVE = 0x06,	  /* empty */
	DERP_FRAME_NOTE_PREFERRED = 0x07, /* 1 byte: 1 = this is the home region */
	DERP_FRAME_PEER_GONE = 0x08,	  /* key(32) [|| reason(1)] */
	DERP_FRAME_PEER_PRESENT = 0x09,	  /* key(32) [|| ip(16) port(2) [|| flags(1)]] */
	DERP_FRAME_FORWARD_PACKET = 0x0a, /* mesh only */
	DERP_FRAME_WATCH_CONNS = 0x10,	  /* mesh only */
	DERP_FRAME_CLOSE_PEER = 0x11,	  /* mesh only */
	DERP_FRAME_PING = 0x12,		  /* 8 bytes, echoed in a Pong */
	DERP_FRAME_PONG = 0x13,		  /* 8 bytes */
	DERP_FRAME_HEALTH = 0x14,	  /* text; empty clears the problem */
	DERP_FRAME_RESTARTING = 0x15,	  /* reconnect_in ms(4) || try_for ms(4) */
};

enum derp_peer_gone_reason {
	DERP_PEER_GONE_DISCONNECTED = 0,
	DERP_PEER_GONE_NOT_HERE = 1,
};

/* "DERP🔑", the ServerKey frame's first eight bytes. */
extern const uint8_t derp_magic[DERP_MAGIC_LEN];

/* One frame in a buffer; body points into it. */
struct derp_frame {
	uint8_t type;
	const uint8_t *body;
	uint32_t len;
};

/* Reads one frame from src. The length in the header alone decides whether
 * the frame can be valid: a body over max_body fails at once, without waiting
 * for bytes that may never come. Returns > 0: bytes consumed (f filled);
 * 0: need more; -EMSGSIZE: body over max_body, *why set. */
ssize_t derp_frame_decode(const uint8_t *src, size_t len, uint32_t max_body, struct derp_frame *f,
			  const char **why);

/* Writes a frame header into hdr. */
void derp_frame_put_header(uint8_t hdr[static DERP_FRAME_HDR_LEN], uint8_t type, uint32_t len);

/* What the client declares in ClientInfo. */
struct derp_client_opts {
	/* Empty for ordinary clients; otherwise the region's mesh key (hex). */
	char mesh_key[DERP_MESH_KEY_MAX + 1];
	bool is_prober;
	/* Fixed nonces for tests; NULL draws the ClientInfo nonce at random. */
	void (*nonce_fn)(uint8_t nonce[static DERP_NONCE_LEN], void *arg);
	void *nonce_arg;
};

/* Builds the ClientInfo frame: the JSON upstream marshals
 * ({"meshKey":..,"version":2,"CanAckPings":true,"IsProber":true}, empty
 * fields left out) sealed with a NaCl box from the node key to the server
 * key under nonce. Returns the frame length (at most DERP_CLIENT_INFO_MAX),
 * -ENOBUFS (cap too small) or -EINVAL (keys that do not make a box). */
ssize_t derp_build_client_info(uint8_t *out, size_t cap, const struct derp_client_opts *opts,
			       const uint8_t node_priv[static DERP_KEY_LEN],
			       const uint8_t node_pub[static DERP_KEY_LEN],
			       const uint8_t server_pub[static DERP_KEY_LEN],
			       const uint8_t nonce[static DERP_NONCE_LEN]);

enum derp_client_state {
	DERP_CLIENT_WANT_SERVER_KEY,  /* the server's greeting has not arrived */
	DERP_CLIENT_WANT_SERVER_INFO, /* ClientInfo is queued or sent */
	DERP_CLIENT_CONNECTED,	      /* ServerInfo opened */
	DERP_CLIENT_FAILED,	      /* a fatal error: close the connection */
};

enum derp_event_type {
	DERP_EV_SERVER_KEY,  /* the greeting arrived; ClientInfo was queued */
	DERP_EV_SERVER_INFO, /* connected; token bucket fields filled */
	DERP_EV_PACKET,	     /* key = source, data/len = packet */
	DERP_EV_KEEP_ALIVE,
	DERP_EV_PEER_GONE,    /* key, reason */
	DERP_EV_PEER_PRESENT, /* key, [ip/port, [flags]] */
	DERP_EV_PING,	      /* ping = data; the Pong is already queued */
	DERP_EV_PONG,	      /* ping = data */
	DERP_EV_HEALTH,	      /* data/len = problem text, len 0 = healthy */
	DERP_EV_RESTARTING,   /* reconnect_in_ms, try_for_ms */
};

/* One thing the server said. Pointers point into the client's input buffer
 * and stay valid until the next derp_client_feed() or derp_client_next(). */
struct derp_event {
	enum derp_event_type type;
	const uint8_t *key;
	const uint8_t *data;
	size_t len;
	uint8_t ping[DERP_PING_LEN];
	uint8_t reason;
	bool has_addr, has_flags;
	uint8_t addr[16]; /* IPv6 or IPv4-mapped, as sent */
	uint16_t port;
	uint8_t flags;
	uint32_t reconnect_in_ms, try_for_ms;
	int64_t token_bucket_bytes_per_second, token_bucket_bytes_burst;
};

/* A growable byte buffer: bytes [off, len) are live. */
struct derp_buf {
	uint8_t *p;
	size_t off, len, cap;
};

struct derp_client {
	enum derp_client_state state;
	uint8_t node_priv[DERP_KEY_LEN], node_pub[DERP_KEY_LEN], server_pub[DERP_KEY_LEN];
	struct derp_client_opts opts;
	struct derp_buf in, out;
	/* The send rate limit the server asked for in ServerInfo (token
	 * bucket; 0 = none) and its state, in bytes and milliseconds. */
	int64_t rate_bps, rate_burst;
	double tokens;
	uint64_t tokens_at_ms;
	uint64_t dropped_by_rate, frames_ignored;
};

/* Sets c up for one connection. server_pub may be NULL: the server's key is
 * learnt from its greeting. With a key (the fast start, where the TLS
 * certificate named it), ClientInfo is queued at once and the greeting is
 * ignored, as upstream does. opts may be NULL. Returns 0 or -EINVAL (a key
 * that is not a valid X25519 key, a mesh key that is not hex). */
int derp_client_init(struct derp_client *c, const uint8_t node_priv[static DERP_KEY_LEN],
		     const uint8_t *server_pub, const struct derp_client_opts *opts);
/* Wipes the keys and frees the buffers; c can be inited again. */
void derp_client_destroy(struct derp_client *c);

/* Appends bytes received from the server. Returns 0, or -ENOBUFS when more
 * than DERP_MAX_BUFFERED would sit unread (call derp_client_next first). */
int derp_client_feed(struct derp_client *c, const uint8_t *data, size_t len);
/* The next event. Frames the client ignores (as upstream: mesh frames,
 * frames only a server reads, short frames, unknown types) are skipped.
 * Returns 1 (ev filled), 0 (need more bytes), or a negative errno with *why
 * set, after which the state is DERP_CLIENT_FAILED and every call fails:
 * -EMSGSIZE (a frame longer than allowed), -EPROTO (not a DERP greeting,
 * bad ServerInfo), -EBADMSG (ServerInfo box does not open). */
int derp_client_next(struct derp_client *c, struct derp_event *ev, const char **why);

/* Queue frames to send. Each returns 0 or a negative errno:
 * -ENOTCONN (ClientInfo not yet queued, or failed), -EMSGSIZE (packet over
 * DERP_MAX_PACKET), -ENOBUFS (DERP_MAX_BUFFERED unsent). A packet beyond the
 * server's rate limit at now_ms is dropped silently, as upstream does, and
 * counted in dropped_by_rate. */
int derp_client_send_packet(struct derp_client *c, uint64_t now_ms,
			    const uint8_t dst[static DERP_KEY_LEN], const uint8_t *pkt, size_t len);
int derp_client_note_preferred(struct derp_client *c, bool preferred);
int derp_client_send_ping(struct derp_client *c, const uint8_t data[static DERP_PING_LEN]);
int derp_client_send_pong(struct derp_client *c, const uint8_t data[static DERP_PING_LEN]);

/* The bytes waiting to be sent (*buf into c, valid until the next call that
 * queues or consumes); derp_client_sent() drops the first n of them. */
size_t derp_client_pending(const struct derp_client *c, const uint8_t **buf);
void derp_client_sent(struct derp_client *c, size_t n);

/* The HTTP/1.1 request that upgrades a connection to DERP, as upstream's
 * derphttp client writes it. With fast_start ("Derp-Fast-Start: 1") the
 * server sends no HTTP answer and DERP frames follow the request at once.
 * host must be a hostname or address without CR, LF or spaces. Returns the
 * length written (without NUL) or -ENAMETOOLONG / -EINVAL. */
ssize_t derp_http_request(char *buf, size_t cap, const char *host, bool fast_start);

/* The answer's head. */
struct derp_http_reply {
	int status;
	bool upgrade_derp, connection_upgrade;
	bool has_version, has_public_key;
	unsigned int version;
	uint8_t public_key[DERP_KEY_LEN];
};
/* Parses the head of the server's answer to derp_http_request. Returns > 0:
 * the head's length (DERP frames may follow in buf); 0: need more;
 * -EMSGSIZE (no end within DERP_HTTP_MAX_HEAD), -EBADMSG (malformed), or
 * -ECONNREFUSED (a well-formed answer that is not 101: r->status tells),
 * *why set. Like upstream, only the status decides; the headers are
 * reported (Derp-Public-Key must be 64 hex digits when present). */
ssize_t derp_http_parse_reply(const char *buf, size_t len, struct derp_http_reply *r,
			      const char **why);

#endif
