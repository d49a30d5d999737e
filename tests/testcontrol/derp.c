/* testcontrol's DERP regions: one TLS listener per region relaying packets
 * between the clients connected to it, and a STUN responder on the same port
 * number over UDP. Enough of upstream's derp server (derp/derp_server.go) for
 * a client to be tested against: the HTTP upgrade with and without fast
 * start, ServerKey, ClientInfo/ServerInfo sealed with NaCl box, SendPacket ->
 * RecvPacket, NotePreferred, Ping/Pong, KeepAlive, PeerGone when a client
 * someone sent to goes away or is not here. Regions can be taken down and
 * brought back through the admin API, and a switch makes a region send
 * garbage, so clients are tested for failover and bad servers.
 *
 * Frames: type (1 byte), length (big-endian u32), body. Nothing here ever
 * waits for more than DERP_FRAME_MAX bytes of one frame. */
#include "tc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "log.h"
#include "mem.h"

enum derp_frame {
	DERP_SERVER_KEY = 0x01,
	DERP_CLIENT_INFO = 0x02,
	DERP_SERVER_INFO = 0x03,
	DERP_SEND_PACKET = 0x04,
	DERP_RECV_PACKET = 0x05,
	DERP_KEEP_ALIVE = 0x06,
	DERP_NOTE_PREFERRED = 0x07,
	DERP_PEER_GONE = 0x08,
	DERP_FORWARD_PACKET = 0x0a,
	DERP_WATCH_CONNS = 0x10,
	DERP_CLOSE_PEER = 0x11,
	DERP_PING = 0x12,
	DERP_PONG = 0x13,
};

enum derp_limits {
	DERP_HDR_LEN = 5,
	DERP_KEY_LEN = 32,
	DERP_NONCE_LEN = crypto_box_NONCEBYTES,
	DERP_MAX_PACKET = 64 << 10,			 /* upstream MaxPacketSize */
	DERP_FRAME_MAX = DERP_KEY_LEN + DERP_MAX_PACKET, /* the largest frame we take */
	DERP_CLIENT_INFO_MAX = 256 << 10,		 /* upstream's bound on ClientInfo */
	DERP_PEER_GONE_DISCONNECTED = 0,
	DERP_PEER_GONE_NOT_HERE = 1,
	DERP_PING_LEN = 8,
	STUN_HDR_LEN = 20,
	STUN_BINDING_REQUEST = 0x0001,
	STUN_BINDING_SUCCESS = 0x0101,
	STUN_ATTR_XOR_MAPPED = 0x0020,
};

static const uint8_t server_magic[8] = {'D', 'E', 'R', 'P', 0xf0, 0x9f, 0x94, 0x91};
static const uint8_t disco_magic[6] = {'T', 'S', 0xf0, 0x9f, 0x92, 0xac};
static const uint32_t stun_cookie = 0x2112a442;

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Queues one frame whose body is a || b. */
static void send_frame(struct tc_conn *c, uint8_t type, const void *a, size_t alen, const void *b,
		       size_t blen)
{
	uint8_t hdr[DERP_HDR_LEN];

	hdr[0] = type;
	put_be32(hdr + 1, (uint32_t)(alen + blen));
	net_send(c, hdr, sizeof(hdr));
	if (alen)
		net_send(c, a, alen);
	if (blen)
		net_send(c, b, blen);
}

static struct tc_derp_region *region_of(const struct tc_conn *c)
{
	return &c->srv->derp[c->region];
}

/* ---- regions ---- */

int derp_region_open(struct tc_server *s, struct tc_derp_region *r)
{
	struct sockaddr_storage sa;
	socklen_t salen;
	char hostport[96];
	int ret;

	snprintf(hostport, sizeof(hostport), strchr(r->host, ':') ? "[%s]:%d" : "%s:%d", r->host,
		 r->port);
	ret = net_listen_fd(hostport, &r->lfd, &r->port);
	if (ret < 0)
		return ret;
	if (net_sockaddr(r->host, r->port, &sa, &salen) < 0)
		return -EINVAL;
	r->ufd = socket(sa.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (r->ufd < 0)
		return -errno;
	if (bind(r->ufd, (struct sockaddr *)&sa, salen) < 0) {
		ret = -errno;
		close(r->ufd);
		r->ufd = -1;
		close(r->lfd);
		r->lfd = -1;
		return ret;
	}
	r->down = false;
	return 0;
}

void derp_region_close(struct tc_server *s, struct tc_derp_region *r)
{
	if (r->lfd >= 0)
		close(r->lfd);
	if (r->ufd >= 0)
		close(r->ufd);
	r->lfd = r->ufd = -1;
	r->down = true;
	for (struct tc_conn *c = s->conns; c; c = c->next)
		if (c->kind == TC_CONN_DERP && &s->derp[c->region] == r)
			c->state = TC_ST_DEAD;
}

/* ---- the relay ---- */

static struct tc_conn *find_client(struct tc_server *s, int region, const uint8_t *key)
{
	for (struct tc_conn *c = s->conns; c; c = c->next)
		if (c->kind == TC_CONN_DERP && c->region == region && c->derp_up &&
		    c->state == TC_ST_DERP && memcmp(c->derp_key, key, DERP_KEY_LEN) == 0)
			return c;
	return NULL;
}

void derp_upgrade(struct tc_conn *c, const char *upgrade, bool fast_start)
{
	struct tc_derp_region *r = region_of(c);
	uint8_t body[sizeof(server_magic) + DERP_KEY_LEN];

	if (strcasecmp(upgrade, "derp") != 0) {
		net_http_reply(c, 426, "text/plain", "DERP requires connection upgrade\n");
		return;
	}
	if (!fast_start) {
		char hex[2 * DERP_KEY_LEN + 1], *head;

		sodium_bin2hex(hex, sizeof(hex), r->pub, DERP_KEY_LEN);
		head = xasprintf("HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\n"
				 "Connection: Upgrade\r\nDerp-Version: 2\r\n"
				 "Derp-Public-Key: %s\r\n\r\n",
				 hex);
		net_send(c, head, strlen(head));
		free(head);
	}
	memcpy(body, server_magic, sizeof(server_magic));
	memcpy(body + sizeof(server_magic), r->pub, DERP_KEY_LEN);
	send_frame(c, DERP_SERVER_KEY, body, sizeof(body), NULL, 0);
	c->state = TC_ST_DERP;
	c->derp_last_ms = now_ms();
}

/* ClientInfo: the client's public key, a nonce and a box of JSON sealed to
 * the region's key. Answers with ServerInfo and makes the client reachable. */
static int client_info(struct tc_conn *c, const uint8_t *p, size_t len, const char **why)
{
	struct tc_derp_region *r = region_of(c);
	static const char info[] = "{\"version\":2,\"tokenBucketBytesPerSecond\":0,"
				   "\"tokenBucketBytesBurst\":0}";
	uint8_t nonce[DERP_NONCE_LEN], sealed[sizeof(info) - 1 + crypto_box_MACBYTES];
	const uint8_t *box = p + DERP_KEY_LEN + DERP_NONCE_LEN;
	size_t boxlen;
	uint8_t *plain;
	struct tc_conn *old;
	json_t *j;

	if (len < DERP_KEY_LEN + DERP_NONCE_LEN + crypto_box_MACBYTES) {
		*why = "ClientInfo too short";
		return -EBADMSG;
	}
	boxlen = len - DERP_KEY_LEN - DERP_NONCE_LEN;
	plain = xmalloc(boxlen);
	if (crypto_box_open_easy(plain, box, boxlen, p + DERP_KEY_LEN, p, r->priv) != 0) {
		free(plain);
		*why = "ClientInfo does not open with the client's key";
		return -EBADMSG;
	}
	j = json_loadb((const char *)plain, boxlen - crypto_box_MACBYTES, 0, NULL);
	free(plain);
	if (!json_is_object(j)) {
		json_decref(j);
		*why = "ClientInfo is not a JSON object";
		return -EBADMSG;
	}
	json_decref(j);
	/* A client that reconnects replaces its old connection, as upstream's
	 * newest-wins rule has it. */
	old = find_client(c->srv, c->region, p);
	if (old)
		old->state = TC_ST_DEAD;
	memcpy(c->derp_key, p, DERP_KEY_LEN);
	randombytes_buf(nonce, sizeof(nonce));
	if (crypto_box_easy(sealed, (const uint8_t *)info, sizeof(info) - 1, nonce, c->derp_key,
			    r->priv) != 0) {
		*why = "ClientInfo names a key no box can be sealed to";
		return -EBADMSG;
	}
	send_frame(c, DERP_SERVER_INFO, nonce, sizeof(nonce), sealed, sizeof(sealed));
	c->derp_up = true;
	log_debug("derp region %d: client connected", r->id);
	return 0;
}

static void note_sent_to(struct tc_conn *c, const uint8_t *dst)
{
	for (int i = 0; i < c->derp_nsent; i++)
		if (memcmp(c->derp_sent_to[i], dst, DERP_KEY_LEN) == 0)
			return;
	if (c->derp_nsent < TC_DERP_SENT_MAX)
		memcpy(c->derp_sent_to[c->derp_nsent++], dst, DERP_KEY_LEN);
}

static void send_packet(struct tc_conn *c, const uint8_t *p, size_t len)
{
	struct tc_conn *dst = find_client(c->srv, c->region, p);
	const uint8_t *payload = p + DERP_KEY_LEN;
	size_t plen = len - DERP_KEY_LEN;

	if (!dst) {
		/* Upstream answers a disco packet for a client that is not here
		 * with PeerGone(not here), so the sender stops trying this way. */
		if (plen >= sizeof(disco_magic) &&
		    !memcmp(payload, disco_magic, sizeof(disco_magic))) {
			uint8_t reason = DERP_PEER_GONE_NOT_HERE;

			send_frame(c, DERP_PEER_GONE, p, DERP_KEY_LEN, &reason, 1);
		}
		return;
	}
	note_sent_to(c, p);
	if (c->srv->sw.derp_garbage) {
		static const uint8_t junk[DERP_HDR_LEN] = {0x7e, 0x7f, 0xff, 0xff, 0xff};

		/* A frame header no client may accept (2 GiB), then noise. */
		net_send(dst, junk, sizeof(junk));
		net_send(dst, payload, plen);
		return;
	}
	if (c->srv->sw.derp_junk) {
		/* A frame of a length any client reads whose body is junk: a
		 * ServerInfo (nonce and box) that was never sealed. */
		send_frame(dst, DERP_SERVER_INFO, payload, plen, NULL, 0);
		return;
	}
	send_frame(dst, DERP_RECV_PACKET, c->derp_key, DERP_KEY_LEN, payload, plen);
	region_of(c)->relayed++;
}

/* One whole frame. < 0 ends the connection. */
static int frame(struct tc_conn *c, uint8_t type, const uint8_t *p, size_t len, const char **why)
{
	if (!c->derp_up) {
		if (type != DERP_CLIENT_INFO) {
			*why = "first frame is not ClientInfo";
			return -EBADMSG;
		}
		return client_info(c, p, len, why);
	}
	switch (type) {
	case DERP_SEND_PACKET:
		if (len < DERP_KEY_LEN) {
			*why = "SendPacket shorter than a key";
			return -EBADMSG;
		}
		send_packet(c, p, len);
		return 0;
	case DERP_NOTE_PREFERRED:
		if (len != 1) {
			*why = "NotePreferred is not one byte";
			return -EBADMSG;
		}
		c->derp_preferred = p[0] != 0;
		return 0;
	case DERP_PING:
		if (len != DERP_PING_LEN) {
			*why = "Ping is not 8 bytes";
			return -EBADMSG;
		}
		send_frame(c, DERP_PONG, p, len, NULL, 0);
		return 0;
	case DERP_FORWARD_PACKET:
	case DERP_WATCH_CONNS:
	case DERP_CLOSE_PEER:
		*why = "mesh frame from a client without the mesh key";
		return -EPERM;
	default:
		/* Pong, and types this server does not know: skipped, as upstream. */
		return 0;
	}
}

void derp_input(struct tc_conn *c)
{
	while (c->state == TC_ST_DERP && c->in.len >= DERP_HDR_LEN) {
		uint8_t type = c->in.p[0];
		uint32_t len = get_be32(c->in.p + 1);
		size_t max = c->derp_up ? DERP_FRAME_MAX : DERP_CLIENT_INFO_MAX;
		const char *why = NULL;

		if (len > max) {
			log_info("derp region %d: frame of %u bytes refused", region_of(c)->id,
				 len);
			c->state = TC_ST_DEAD;
			return;
		}
		if (c->in.len - DERP_HDR_LEN < len)
			return;
		if (frame(c, type, c->in.p + DERP_HDR_LEN, len, &why) < 0) {
			log_info("derp region %d: %s", region_of(c)->id, why);
			c->state = TC_ST_DEAD;
			return;
		}
		tc_buf_consume(&c->in, DERP_HDR_LEN + len);
		c->derp_last_ms = now_ms();
	}
}

void derp_conn_gone(struct tc_conn *c)
{
	uint8_t reason = DERP_PEER_GONE_DISCONNECTED;

	if (!c->derp_up)
		return;
	for (struct tc_conn *o = c->srv->conns; o; o = o->next) {
		if (o == c || o->kind != TC_CONN_DERP || o->region != c->region || !o->derp_up ||
		    o->state != TC_ST_DERP)
			continue;
		for (int i = 0; i < o->derp_nsent; i++)
			if (memcmp(o->derp_sent_to[i], c->derp_key, DERP_KEY_LEN) == 0) {
				send_frame(o, DERP_PEER_GONE, c->derp_key, DERP_KEY_LEN, &reason,
					   1);
				break;
			}
	}
}

void derp_keepalive(struct tc_server *s, unsigned long long now)
{
	for (struct tc_conn *c = s->conns; c; c = c->next) {
		if (c->kind != TC_CONN_DERP || c->state != TC_ST_DERP)
			continue;
		if (now - c->derp_keepalive_ms >= (unsigned long long)s->derp_keepalive_ms) {
			send_frame(c, DERP_KEEP_ALIVE, NULL, 0, NULL, 0);
			c->derp_keepalive_ms = now;
		}
	}
}

/* ---- STUN ---- */

/* Answers one binding request with XOR-MAPPED-ADDRESS (RFC 8489); anything
 * else is dropped. */
void derp_stun_input(struct tc_derp_region *r)
{
	uint8_t in[1500], out[STUN_HDR_LEN + 24];
	struct sockaddr_storage from;
	socklen_t flen = sizeof(from);
	ssize_t n;

	for (;;) {
		n = recvfrom(r->ufd, in, sizeof(in), 0, (struct sockaddr *)&from, &flen);
		if (n < 0)
			return;
		if (n < STUN_HDR_LEN || get_be32(in + 4) != stun_cookie ||
		    ((uint32_t)in[0] << 8 | in[1]) != STUN_BINDING_REQUEST ||
		    STUN_HDR_LEN + ((size_t)in[2] << 8 | in[3]) != (size_t)n)
			continue;
		memset(out, 0, sizeof(out));
		out[0] = STUN_BINDING_SUCCESS >> 8;
		out[1] = STUN_BINDING_SUCCESS & 0xff;
		memcpy(out + 4, in + 4, 16); /* cookie and transaction id */
		out[STUN_HDR_LEN + 1] = STUN_ATTR_XOR_MAPPED;
		if (from.ss_family == AF_INET) {
			const struct sockaddr_in *f4 = (const struct sockaddr_in *)&from;
			uint16_t port = ntohs(f4->sin_port) ^ (uint16_t)(stun_cookie >> 16);
			uint32_t addr = ntohl(f4->sin_addr.s_addr) ^ stun_cookie;

			out[3] = 12;
			out[STUN_HDR_LEN + 3] = 8;
			out[STUN_HDR_LEN + 5] = 0x01; /* IPv4 */
			out[STUN_HDR_LEN + 6] = (uint8_t)(port >> 8);
			out[STUN_HDR_LEN + 7] = (uint8_t)port;
			put_be32(out + STUN_HDR_LEN + 8, addr);
		} else {
			/* IPv6: the address XORed with the cookie and the
			 * transaction id (RFC 8489 14.2). */
			const struct sockaddr_in6 *f6 = (const struct sockaddr_in6 *)&from;
			uint16_t port = ntohs(f6->sin6_port) ^ (uint16_t)(stun_cookie >> 16);

			out[3] = 24;
			out[STUN_HDR_LEN + 3] = 20;
			out[STUN_HDR_LEN + 5] = 0x02;
			out[STUN_HDR_LEN + 6] = (uint8_t)(port >> 8);
			out[STUN_HDR_LEN + 7] = (uint8_t)port;
			for (int i = 0; i < 16; i++)
				out[STUN_HDR_LEN + 8 + i] = f6->sin6_addr.s6_addr[i] ^ in[4 + i];
		}
		sendto(r->ufd, out, STUN_HDR_LEN + (size_t)out[3], 0, (struct sockaddr *)&from,
		       flen);
		flen = sizeof(from);
	}
}

/* ---- the DERP map ---- */

json_t *derp_map(struct tc_server *s)
{
	json_t *regions = json_object();

	for (int i = 0; i < s->nderp; i++) {
		const struct tc_derp_region *r = &s->derp[i];
		char id[16], code[16], name[16];

		bool v6 = strchr(r->host, ':') != NULL;
		char host[64];

		snprintf(id, sizeof(id), "%d", r->id);
		snprintf(code, sizeof(code), "test%d", i + 1);
		snprintf(name, sizeof(name), "%da", r->id);
		/* An IPv6-only region is dialled by name, as real DERP maps
		 * are, with its literal in IPv6: a URL cannot carry a bare
		 * IPv6 host name. */
		if (v6)
			snprintf(host, sizeof(host), "derp%d.testcontrol.invalid", r->id);
		else
			snprintf(host, sizeof(host), "%s", r->host);
		json_object_set_new(
			regions, id,
			json_pack("{s:i, s:s, s:s, s:[{s:s, s:i, s:s, s:s, s:s, s:i, s:i, s:b}]}",
				  "RegionID", r->id, "RegionCode", code, "RegionName",
				  "testcontrol DERP", "Nodes", "Name", name, "RegionID", r->id,
				  "HostName", host, "IPv4", v6 ? "none" : r->host, "IPv6",
				  v6 ? r->host : "none", "STUNPort", r->port, "DERPPort", r->port,
				  "InsecureForTests", 1));
	}
	return json_pack("{s:o}", "Regions", regions);
}
