/* Listeners and connections. Each connection moves through
 *   TLS (https only) -> HTTP (one HTTP/1.1 request) -> NOISE (after a 101)
 * and ends DEAD. A Noise connection carries an nghttp2 server session: bytes
 * from the peer are opened record by record (ts2021_reader) and fed to
 * nghttp2; whatever nghttp2 wants to send is sealed into records and queued.
 * Everything runs on the one poll loop in net_run. */
#include "tc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <sodium.h>

#include "keys.h"
#include "log.h"
#include "mem.h"

extern volatile int tc_signalled;

void tc_buf_add(struct tc_buf *b, const void *p, size_t n)
{
	if (n == 0)
		return;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;

		while (cap < b->len + n)
			cap *= 2;
		b->p = xrealloc(b->p, cap);
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

void tc_buf_consume(struct tc_buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
}

void tc_buf_free(struct tc_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

int net_sockaddr(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len)
{
	char h[64];
	size_t n = strlen(host);

	memset(ss, 0, sizeof(*ss));
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
		host++;
		n -= 2;
	}
	if (n >= sizeof(h))
		return -EINVAL;
	memcpy(h, host, n);
	h[n] = '\0';
	if (inet_pton(AF_INET, h, &((struct sockaddr_in *)ss)->sin_addr) == 1) {
		ss->ss_family = AF_INET;
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
		*len = sizeof(struct sockaddr_in);
		return 0;
	}
	if (inet_pton(AF_INET6, h, &((struct sockaddr_in6 *)ss)->sin6_addr) == 1) {
		ss->ss_family = AF_INET6;
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
		*len = sizeof(struct sockaddr_in6);
		return 0;
	}
	return -EINVAL;
}

int net_listen_fd(const char *hostport, int *fd_out, int *port_out)
{
	struct sockaddr_storage sa;
	socklen_t salen;
	const char *colon = strrchr(hostport, ':');
	char host[64], *end;
	unsigned long port;
	int fd, one = 1;

	*fd_out = -1;
	if (!colon || (size_t)(colon - hostport) >= sizeof(host))
		return -EINVAL;
	memcpy(host, hostport, (size_t)(colon - hostport));
	host[colon - hostport] = '\0';
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno || *end || end == colon + 1 || port > 65535 ||
	    net_sockaddr(host, (int)port, &sa, &salen) < 0)
		return -EINVAL;
	fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, salen) < 0 || listen(fd, 128) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &salen) < 0) {
		int ret = -errno;

		close(fd);
		return ret;
	}
	*fd_out = fd;
	*port_out = sa.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&sa)->sin_port)
					    : ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
	return 0;
}

int net_listen(struct tc_server *s, enum tc_conn_kind kind, const char *hostport)
{
	int port, ret = net_listen_fd(hostport, &s->lfd[kind], &port);

	if (ret < 0)
		return ret;
	snprintf(s->addr[kind], sizeof(s->addr[kind]), "%.*s:%d",
		 (int)(strrchr(hostport, ':') - hostport), hostport, port);
	return 0;
}

/* ---- sending ---- */

static void conn_fail(struct tc_conn *c, const char *what)
{
	if (c->state != TC_ST_DEAD)
		log_info("connection fd %d closed: %s", c->fd, what);
	c->state = TC_ST_DEAD;
}

static void raw_send(struct tc_conn *c, const void *p, size_t n)
{
	if (c->out.len + n > TC_OUT_MAX) {
		conn_fail(c, "peer does not read (send buffer full)");
		return;
	}
	tc_buf_add(&c->out, p, n);
}

/* Seals plaintext into Noise records and queues them. */
static void noise_send(struct tc_conn *c, const void *p, size_t n)
{
	size_t cap = ts2021_sealed_len(n);
	uint8_t *tmp;
	ssize_t r;

	if (n == 0)
		return;
	tmp = xmalloc(cap);
	r = ts2021_seal(&c->noise.tx, p, n, tmp, cap);
	if (r < 0)
		conn_fail(c, "cannot seal a record");
	else
		raw_send(c, tmp, (size_t)r);
	free(tmp);
}

void net_send(struct tc_conn *c, const void *p, size_t n)
{
	if (c->noise_up)
		noise_send(c, p, n);
	else
		raw_send(c, p, n);
}

static void h2_flush(struct tc_conn *c)
{
	const uint8_t *data;
	ssize_t n;

	if (!c->h2 || c->state != TC_ST_NOISE)
		return;
	while ((n = nghttp2_session_mem_send(c->h2, &data)) > 0)
		noise_send(c, data, (size_t)n);
	if (n < 0)
		conn_fail(c, nghttp2_strerror((int)n));
	else if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2))
		c->close_after_flush = true;
}

/* ---- HTTP/1.1 ---- */

static const char *status_text(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 409:
		return "Conflict";
	case 413:
		return "Payload Too Large";
	case 429:
		return "Too Many Requests";
	case 500:
		return "Internal Server Error";
	case 503:
		return "Service Unavailable";
	default:
		return "Error";
	}
}

void net_http_reply_ex(struct tc_conn *c, int status, const char *ctype, const char *headers,
		       const void *body, size_t n)
{
	char *head = xasprintf("HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			       "%sConnection: close\r\n\r\n",
			       status, status_text(status), ctype, n, headers ? headers : "");

	raw_send(c, head, strlen(head));
	raw_send(c, body, n);
	free(head);
	c->close_after_flush = true;
}

void net_http_reply(struct tc_conn *c, int status, const char *ctype, const char *body)
{
	net_http_reply_ex(c, status, ctype, NULL, body, body ? strlen(body) : 0);
}

struct http_req {
	char method[16];
	char path[256];
	char upgrade[64];
	char handshake[256];
	char authorization[1024];
	bool fast_start; /* Derp-Fast-Start: 1 */
	long content_length;
	size_t head_len;
};

/* Parses one request head. 1 when complete, 0 when more bytes are needed,
 * -EBADMSG (with *why) for a request we will not serve. */
static int http_parse(const struct tc_buf *in, struct http_req *r, const char **why)
{
	const char *p = (const char *)in->p, *end, *line, *next;
	size_t len = in->len;

	memset(r, 0, sizeof(*r));
	if (len == 0)
		return 0;
	end = memmem(p, len, "\r\n\r\n", 4);
	if (!end) {
		if (len > TC_HTTP_HDR_MAX) {
			*why = "request head too long";
			return -EBADMSG;
		}
		return 0;
	}
	r->head_len = (size_t)(end - p) + 4;
	line = p;
	next = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
	if (sscanf(line, "%15s %255s HTTP/1.", r->method, r->path) != 2) {
		*why = "bad request line";
		return -EBADMSG;
	}
	for (line = next + 2; line < end; line = next + 2) {
		const char *colon, *v;
		size_t nlen, vlen;

		next = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
		colon = memchr(line, ':', (size_t)(next - line));
		if (!colon) {
			*why = "header without a colon";
			return -EBADMSG;
		}
		nlen = (size_t)(colon - line);
		for (v = colon + 1; v < next && (*v == ' ' || *v == '\t'); v++)
			;
		vlen = (size_t)(next - v);
#define HDR_IS(name) (nlen == strlen(name) && strncasecmp(line, name, nlen) == 0)
		if (HDR_IS("upgrade")) {
			if (vlen >= sizeof(r->upgrade))
				vlen = sizeof(r->upgrade) - 1;
			memcpy(r->upgrade, v, vlen);
		} else if (HDR_IS("authorization")) {
			if (vlen >= sizeof(r->authorization)) {
				*why = "Authorization header too long";
				return -EBADMSG;
			}
			memcpy(r->authorization, v, vlen);
		} else if (HDR_IS("derp-fast-start")) {
			r->fast_start = vlen == 1 && *v == '1';
		} else if (HDR_IS("x-tailscale-handshake")) {
			if (vlen >= sizeof(r->handshake)) {
				*why = "X-Tailscale-Handshake too long";
				return -EBADMSG;
			}
			memcpy(r->handshake, v, vlen);
		} else if (HDR_IS("content-length")) {
			char num[16] = "", *e;

			if (vlen >= sizeof(num)) {
				*why = "bad Content-Length";
				return -EBADMSG;
			}
			memcpy(num, v, vlen);
			errno = 0;
			r->content_length = strtol(num, &e, 10);
			if (errno || *e || e == num || r->content_length < 0) {
				*why = "bad Content-Length";
				return -EBADMSG;
			}
		}
#undef HDR_IS
	}
	return 1;
}

static void serve_key(struct tc_conn *c)
{
	char pub[80], *body;
	const uint8_t *key = c->srv->sw.wrong_key ? c->srv->wrong_pub : c->srv->noise_pub;

	keys_to_text("mkey", key, pub, sizeof(pub));
	body = xasprintf("{\"legacyPublicKey\":\"mkey:%064d\",\"publicKey\":\"%s\"}", 0, pub);
	net_http_reply(c, 200, "application/json", body);
	free(body);
}

static void h2_start(struct tc_conn *c);
static void noise_input(struct tc_conn *c);

static void early_payload(struct tc_conn *c)
{
	static const uint8_t magic[5] = {0xff, 0xff, 0xff, 'T', 'S'};
	uint8_t chal_priv[32], chal_pub[32], len[4];
	char text[80], *json;
	size_t n;

	keys_generate(chal_priv);
	keys_public(chal_pub, chal_priv);
	sodium_memzero(chal_priv, sizeof(chal_priv));
	json = xasprintf("{\"nodeKeyChallenge\":\"%s\"}",
			 keys_to_text("chalpub", chal_pub, text, sizeof(text)));
	n = strlen(json);
	len[0] = (uint8_t)(n >> 24);
	len[1] = (uint8_t)(n >> 16);
	len[2] = (uint8_t)(n >> 8);
	len[3] = (uint8_t)n;
	/* Three records, as upstream's writer sends them. */
	noise_send(c, magic, sizeof(magic));
	noise_send(c, len, sizeof(len));
	noise_send(c, json, n);
	free(json);
}

static void serve_upgrade(struct tc_conn *c, const struct http_req *r)
{
	static const char ok[] = "HTTP/1.1 101 Switching Protocols\r\n"
				 "Upgrade: tailscale-control-protocol\r\n"
				 "Connection: upgrade\r\n\r\n";
	struct tc_server *s = c->srv;
	uint8_t init[TS2021_INIT_LEN + 64], resp[TS2021_RESP_LEN], err[256];
	const char *why = NULL;
	size_t len;
	ssize_t n;
	int ret;

	if (strcasecmp(r->upgrade, "tailscale-control-protocol") != 0) {
		net_http_reply(c, 400, "text/plain", "missing or wrong Upgrade header\n");
		return;
	}
	if (!r->handshake[0] ||
	    ts2021_initiation_decode(r->handshake, init, sizeof(init), &len) < 0) {
		net_http_reply(c, 400, "text/plain", "invalid X-Tailscale-Handshake header\n");
		return;
	}
	raw_send(c, ok, sizeof(ok) - 1);
	if (s->sw.garbage) {
		uint8_t junk[64];

		randombytes_buf(junk, sizeof(junk));
		junk[0] = 0x7e; /* never a valid message type */
		raw_send(c, junk, sizeof(junk));
		log_info("switch garbage: sent junk instead of the Noise response");
		c->close_after_flush = true;
		return;
	}
	ret = ts2021_server_accept(s->noise_priv, init, len, NULL, resp, &c->noise, &why);
	if (ret == 0 && c->noise.version < s->min_capver) {
		char text[64];

		snprintf(text, sizeof(text), "unsupported client version %u", c->noise.version);
		why = text;
		n = ts2021_error_message(err, sizeof(err), why);
		raw_send(c, err, (size_t)n);
		log_info("ts2021: refused: %s", why);
		ts2021_conn_destroy(&c->noise);
		c->close_after_flush = true;
		return;
	}
	if (ret == -EPROTO) {
		n = ts2021_error_message(err, sizeof(err), why);
		if (n > 0)
			raw_send(c, err, (size_t)n);
		log_info("ts2021: refused: %s", why);
		c->close_after_flush = true;
		return;
	}
	if (ret < 0) {
		/* As upstream: an initiation that does not authenticate gets no answer. */
		log_info("ts2021: handshake failed: %s", why);
		c->close_after_flush = true;
		return;
	}
	raw_send(c, resp, sizeof(resp));
	ts2021_reader_init(&c->reader, &c->noise.rx);
	c->noise_up = true;
	c->state = TC_ST_NOISE;
	if (!s->sw.no_early)
		early_payload(c);
	h2_start(c);
}

static void http_input(struct tc_conn *c)
{
	struct http_req r;
	const char *why = NULL;
	int ret = http_parse(&c->in, &r, &why);

	if (ret == 0)
		return;
	if (ret < 0) {
		net_http_reply(c, 400, "text/plain", why);
		c->state = TC_ST_HANG;
		return;
	}
	if (c->kind == TC_CONN_API) {
		struct tc_api_req ar = {
			.method = r.method, .path = r.path, .authorization = r.authorization};

		if (r.content_length > TC_API_BODY_MAX) {
			net_http_reply(c, 413, "application/json",
				       "{\"message\":\"request body over 65536 bytes\"}\n");
			c->state = TC_ST_HANG;
			return;
		}
		if (c->in.len - r.head_len < (size_t)r.content_length)
			return;
		c->state = TC_ST_HANG; /* one request per connection */
		ar.body = c->in.p + r.head_len;
		ar.len = (size_t)r.content_length;
		api_handle(c, &ar);
		sodium_memzero(r.authorization, sizeof(r.authorization));
		sodium_memzero(c->in.p, c->in.len); /* it held secrets */
		tc_buf_consume(&c->in, c->in.len);
		return;
	}
	if (c->kind == TC_CONN_ADMIN) {
		if (r.content_length > TC_HTTP_BODY_MAX) {
			net_http_reply(c, 413, "text/plain", "body too large\n");
			c->state = TC_ST_HANG;
			return;
		}
		if (c->in.len - r.head_len < (size_t)r.content_length)
			return;
		c->state = TC_ST_HANG; /* one request per connection */
		admin_handle(c, r.method, r.path, c->in.p + r.head_len, (size_t)r.content_length);
		tc_buf_consume(&c->in, c->in.len);
		return;
	}
	if (c->srv->sw.hang) {
		log_info("switch hang: request %s %s left unanswered", r.method, r.path);
		c->state = TC_ST_HANG;
		return;
	}
	tc_buf_consume(&c->in, r.head_len);
	if (c->kind == TC_CONN_DERP) {
		c->state = TC_ST_HANG;
		if (strcmp(r.method, "GET") == 0 && strcmp(r.path, "/derp") == 0) {
			derp_upgrade(c, r.upgrade, r.fast_start);
			if (c->state == TC_ST_DERP && c->in.len)
				derp_input(c);
		} else if (strcmp(r.method, "GET") == 0 && strcmp(r.path, "/derp/probe") == 0) {
			net_http_reply(c, 200, "text/plain", "");
		} else {
			net_http_reply(c, 404, "text/plain", "not found\n");
		}
		return;
	}
	if (strcmp(r.method, "GET") == 0 && strncmp(r.path, "/key", 4) == 0 &&
	    (r.path[4] == '\0' || r.path[4] == '?')) {
		c->state = TC_ST_HANG;
		serve_key(c);
	} else if (strcmp(r.method, "POST") == 0 && strcmp(r.path, "/ts2021") == 0) {
		c->state = TC_ST_HANG;
		serve_upgrade(c, &r);
		if (c->state == TC_ST_NOISE && c->in.len)
			noise_input(c);
	} else {
		c->state = TC_ST_HANG;
		net_http_reply(c, 404, "text/plain", "not found\n");
	}
}

/* ---- HTTP/2 inside Noise ---- */

static ssize_t h2_read_body(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
			    size_t length, uint32_t *flags, nghttp2_data_source *source, void *user)
{
	struct tc_h2req *r = source->ptr;
	size_t n = r->resp.len < length ? r->resp.len : length;

	memcpy(buf, r->resp.p, n);
	tc_buf_consume(&r->resp, n);
	if (r->resp.len == 0 && r->resp_eof) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		return (ssize_t)n;
	}
	if (n == 0) {
		r->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	return (ssize_t)n;
}

void net_h2_respond(struct tc_h2req *r, int status, const char *ctype, const void *body, size_t n,
		    bool eof)
{
	char st[8];
	nghttp2_nv nva[2] = {
		{(uint8_t *)":status", (uint8_t *)st, 7, 0, NGHTTP2_NV_FLAG_NONE},
		{(uint8_t *)"content-type", (uint8_t *)ctype, 12, strlen(ctype),
		 NGHTTP2_NV_FLAG_NONE},
	};
	nghttp2_data_provider prov = {.source.ptr = r, .read_callback = h2_read_body};

	snprintf(st, sizeof(st), "%d", status);
	nva[0].valuelen = strlen(st);
	tc_buf_add(&r->resp, body, n);
	r->resp_eof = eof;
	nghttp2_submit_response(r->conn->h2, r->id, nva, 2, &prov);
}

void net_h2_append(struct tc_h2req *r, const void *p, size_t n, bool eof)
{
	tc_buf_add(&r->resp, p, n);
	if (eof)
		r->resp_eof = true;
	if (r->deferred) {
		r->deferred = false;
		nghttp2_session_resume_data(r->conn->h2, r->id);
	}
}

void net_h2_reset(struct tc_h2req *r)
{
	nghttp2_submit_rst_stream(r->conn->h2, NGHTTP2_FLAG_NONE, r->id, NGHTTP2_CANCEL);
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user)
{
	struct tc_conn *c = user;
	struct tc_h2req *r;

	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	r = xcalloc(1, sizeof(*r));
	r->id = frame->hd.stream_id;
	r->conn = c;
	r->next = c->reqs;
	c->reqs = r;
	nghttp2_session_set_stream_user_data(session, r->id, r);
	return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
		     void *user)
{
	struct tc_h2req *r = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);

	if (!r)
		return 0;
	if (namelen == 5 && memcmp(name, ":path", 5) == 0 && valuelen < sizeof(r->path)) {
		memcpy(r->path, value, valuelen);
		r->path[valuelen] = '\0';
	} else if (namelen == 7 && memcmp(name, ":method", 7) == 0 &&
		   valuelen < sizeof(r->method)) {
		memcpy(r->method, value, valuelen);
		r->method[valuelen] = '\0';
	}
	return 0;
}

static int on_data(nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data,
		   size_t len, void *user)
{
	struct tc_h2req *r = nghttp2_session_get_stream_user_data(session, stream_id);

	if (!r)
		return 0;
	if (r->body.len + len > TC_H2_BODY_MAX) {
		log_info("h2 stream %d: request body over %d bytes", stream_id, TC_H2_BODY_MAX);
		nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, stream_id,
					  NGHTTP2_REFUSED_STREAM);
		return 0;
	}
	tc_buf_add(&r->body, data, len);
	return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user)
{
	struct tc_h2req *r;

	if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
	    !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	r = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	if (r && r->body.len <= TC_H2_BODY_MAX)
		control_handle(r->conn, r);
	return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
			   void *user)
{
	struct tc_h2req *r = nghttp2_session_get_stream_user_data(session, stream_id);

	if (!r)
		return 0;
	nghttp2_session_set_stream_user_data(session, stream_id, NULL);
	for (struct tc_h2req **pp = &r->conn->reqs; *pp; pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	}
	control_h2_closed(r);
	tc_buf_free(&r->body);
	tc_buf_free(&r->resp);
	free(r);
	return 0;
}

static void h2_start(struct tc_conn *c)
{
	nghttp2_session_callbacks *cb;
	nghttp2_settings_entry iv[] = {
		{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100},
		{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20},
	};

	nghttp2_session_callbacks_new(&cb);
	nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
	nghttp2_session_server_new(&c->h2, cb, c);
	nghttp2_session_callbacks_del(cb);
	nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
	h2_flush(c);
}

static void noise_input(struct tc_conn *c)
{
	size_t off = 0;

	while (off < c->in.len && c->state == TC_ST_NOISE) {
		const uint8_t *pt;
		const char *why = NULL;
		size_t used = 0, pt_len = 0;
		ssize_t fed;
		int ret;

		ret = ts2021_reader_next(&c->reader, c->in.p + off, c->in.len - off, &used, &pt,
					 &pt_len, &why);
		off += used;
		if (ret < 0) {
			conn_fail(c, why);
			break;
		}
		if (ret == 0)
			break;
		fed = nghttp2_session_mem_recv(c->h2, pt, pt_len);
		if (fed < 0) {
			conn_fail(c, nghttp2_strerror((int)fed));
			break;
		}
	}
	tc_buf_consume(&c->in, off);
	h2_flush(c);
}

/* ---- connection I/O ---- */

/* Accepts every pending connection on lfd; region is the DERP region's
 * index for TC_CONN_DERP. */
static void conn_new(struct tc_server *s, int lfd, enum tc_conn_kind kind, int region)
{
	struct tc_conn *c;
	int fd, one = 1;

	for (;;) {
		fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		if (s->nconns >= TC_MAX_CONNS) {
			log_warn("over %d connections: refusing one", TC_MAX_CONNS);
			close(fd);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c = xcalloc(1, sizeof(*c));
		c->srv = s;
		c->fd = fd;
		c->kind = kind;
		c->region = region;
		c->state = TC_ST_HTTP;
		if (kind == TC_CONN_HTTPS || kind == TC_CONN_DERP ||
		    (kind == TC_CONN_API && s->api_tls)) {
			c->ssl = SSL_new(s->ssl_ctx);
			SSL_set_fd(c->ssl, fd);
			SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
						     SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
			SSL_set_accept_state(c->ssl);
			c->state = TC_ST_TLS;
		}
		c->next = s->conns;
		s->conns = c;
		s->nconns++;
	}
}

static void conn_free(struct tc_server *s, struct tc_conn *c)
{
	if (c->kind == TC_CONN_DERP)
		derp_conn_gone(c);
	/* nghttp2_session_del does not call on_stream_close: detach the
	 * requests still open ourselves. */
	while (c->reqs) {
		struct tc_h2req *r = c->reqs;

		c->reqs = r->next;
		control_h2_closed(r);
		tc_buf_free(&r->body);
		tc_buf_free(&r->resp);
		free(r);
	}
	if (c->h2)
		nghttp2_session_del(c->h2);
	if (c->noise_up)
		ts2021_reader_destroy(&c->reader);
	ts2021_conn_destroy(&c->noise);
	if (c->ssl)
		SSL_free(c->ssl);
	close(c->fd);
	tc_buf_free(&c->in);
	tc_buf_free(&c->out);
	s->nconns--;
	free(c);
}

static void conn_read(struct tc_conn *c)
{
	uint8_t buf[16384];
	ssize_t n;

	for (;;) {
		if (c->ssl) {
			int r = SSL_read(c->ssl, buf, sizeof(buf));

			if (r <= 0) {
				int e = SSL_get_error(c->ssl, r);

				if (e == SSL_ERROR_WANT_READ)
					break;
				if (e == SSL_ERROR_WANT_WRITE) {
					c->ssl_want_write = true;
					break;
				}
				conn_fail(c, e == SSL_ERROR_ZERO_RETURN ? "peer closed"
									: "TLS read failed");
				return;
			}
			n = r;
		} else {
			n = read(c->fd, buf, sizeof(buf));
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				break;
			if (n <= 0) {
				conn_fail(c, n == 0 ? "peer closed" : "read failed");
				return;
			}
		}
		if (c->state == TC_ST_HANG)
			continue; /* not listening any more */
		if (c->in.len + (size_t)n > TC_HTTP_HDR_MAX + TC_HTTP_BODY_MAX + 4096 &&
		    c->state != TC_ST_NOISE && c->state != TC_ST_DERP) {
			conn_fail(c, "request too large");
			return;
		}
		tc_buf_add(&c->in, buf, (size_t)n);
	}
	if (c->state == TC_ST_HTTP)
		http_input(c);
	else if (c->state == TC_ST_NOISE)
		noise_input(c);
	else if (c->state == TC_ST_DERP)
		derp_input(c);
}

static bool held(struct tc_conn *c)
{
	if (c->hold_until_ms && now_ms() < c->hold_until_ms)
		return true;
	c->hold_until_ms = 0;
	return false;
}

static void conn_write(struct tc_conn *c)
{
	if (held(c))
		return;
	while (c->out.len) {
		ssize_t n;

		if (c->ssl) {
			int r = SSL_write(c->ssl, c->out.p,
					  (int)(c->out.len > 1 << 20 ? 1 << 20 : c->out.len));

			if (r <= 0) {
				int e = SSL_get_error(c->ssl, r);

				if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
					return;
				conn_fail(c, "TLS write failed");
				return;
			}
			n = r;
		} else {
			n = write(c->fd, c->out.p, c->out.len);
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				return;
			if (n < 0) {
				conn_fail(c, "write failed");
				return;
			}
		}
		tc_buf_consume(&c->out, (size_t)n);
	}
	if (c->close_after_flush) {
		if (c->ssl)
			SSL_shutdown(c->ssl); /* close_notify: a clean end for the client */
		shutdown(c->fd, SHUT_WR);
		c->state = TC_ST_DEAD;
	}
}

static void conn_io(struct tc_conn *c, short revents)
{
	if (c->state == TC_ST_TLS) {
		int r = SSL_do_handshake(c->ssl);

		if (r != 1) {
			int e = SSL_get_error(c->ssl, r);

			c->ssl_want_write = e == SSL_ERROR_WANT_WRITE;
			if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
				conn_fail(c, "TLS handshake failed");
			return;
		}
		c->ssl_want_write = false;
		c->state = TC_ST_HTTP;
	}
	if (revents & (POLLIN | POLLHUP | POLLERR))
		conn_read(c);
	if (c->ssl && SSL_pending(c->ssl))
		conn_read(c);
	if (c->state != TC_ST_DEAD)
		conn_write(c);
}

int net_run(struct tc_server *s)
{
	enum { LISTENERS = TC_LISTENERS + 2 * TC_DERP_REGIONS_MAX };
	struct pollfd *pfd = xcalloc(TC_MAX_CONNS + LISTENERS, sizeof(*pfd));
	struct tc_conn **who = xcalloc(TC_MAX_CONNS + LISTENERS, sizeof(*who));

	while (!tc_signalled) {
		nfds_t n = 0;
		int r, timeout = 500;

		/* Slots 0..LISTENERS-1: control listeners, then each region's
		 * TLS listener and STUN socket (-1, ignored by poll, while down). */
		for (int k = 0; k < TC_LISTENERS; k++) {
			pfd[n] = (struct pollfd){.fd = s->lfd[k], .events = POLLIN};
			who[n++] = NULL;
		}
		for (int i = 0; i < TC_DERP_REGIONS_MAX; i++) {
			bool on = i < s->nderp && !s->derp[i].down;

			pfd[n] = (struct pollfd){.fd = on ? s->derp[i].lfd : -1, .events = POLLIN};
			who[n++] = NULL;
			pfd[n] = (struct pollfd){.fd = on ? s->derp[i].ufd : -1, .events = POLLIN};
			who[n++] = NULL;
		}
		for (struct tc_conn *c = s->conns; c; c = c->next) {
			short ev = POLLIN;

			if (held(c)) {
				/* A slow answer: wake when it is due, not on POLLOUT. */
				unsigned long long left = c->hold_until_ms - now_ms();

				if (left < (unsigned long long)timeout)
					timeout = (int)left + 1;
			} else if (c->out.len || c->ssl_want_write) {
				ev |= POLLOUT;
			}
			pfd[n] = (struct pollfd){.fd = c->fd, .events = ev};
			who[n++] = c;
		}
		r = poll(pfd, n, timeout);
		if (r < 0 && errno != EINTR) {
			log_err_r(-errno, "poll");
			break;
		}
		for (nfds_t i = 0; r > 0 && i < n; i++) {
			if (!pfd[i].revents)
				continue;
			if (i < TC_LISTENERS)
				conn_new(s, s->lfd[i], (enum tc_conn_kind)i, 0);
			else if (i < LISTENERS && (i - TC_LISTENERS) % 2 == 0)
				conn_new(s, pfd[i].fd, TC_CONN_DERP, (int)(i - TC_LISTENERS) / 2);
			else if (i < LISTENERS)
				derp_stun_input(&s->derp[(i - TC_LISTENERS) / 2]);
			else
				conn_io(who[i], pfd[i].revents);
		}
		for (struct tc_conn **pp = &s->conns; *pp;) {
			struct tc_conn *c = *pp;

			if (c->state == TC_ST_DEAD) {
				*pp = c->next;
				conn_free(s, c);
			} else {
				pp = &c->next;
			}
		}
		derp_keepalive(s, now_ms());
		if (!s->sw.hang) {
			control_keepalive(s, now_ms());
			if (s->dirty)
				control_push(s);
		}
		/* Bytes nghttp2 produced while another connection was handled. */
		for (struct tc_conn *c = s->conns; c; c = c->next) {
			h2_flush(c);
			if (c->state != TC_ST_DEAD && c->out.len)
				conn_write(c);
		}
	}
	while (s->conns) {
		struct tc_conn *c = s->conns;

		s->conns = c->next;
		conn_free(s, c);
	}
	control_destroy(s);
	free(pfd);
	free(who);
	return 0;
}
