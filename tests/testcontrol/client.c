/* See client.h. Blocking sockets, poll(2) for timeouts: a test tool. */
#include "client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <zstd.h>

#include "keys.h"
#include "mem.h"
#include "worker/control/ts2021.h"

struct sbuf {
	uint8_t *p;
	size_t len, cap;
};

static void sbuf_add(struct sbuf *b, const void *p, size_t n)
{
	if (!n)
		return;
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2;
		b->p = xrealloc(b->p, b->cap);
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void sbuf_consume(struct sbuf *b, size_t n)
{
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
}

struct cl_stream {
	bool used, done;
	int32_t id;
	int status;
	struct sbuf req;
	size_t req_off;
	struct sbuf body;
};

struct cl {
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	struct ts2021_client hs;
	struct ts2021_conn conn;
	struct ts2021_reader rd;
	struct ts2021_early early;
	bool early_done;
	nghttp2_session *h2;
	bool dead;
	struct cl_stream st[CL_MAX_STREAMS];
};

static int split_hostport(const char *hp, struct sockaddr_in *sa)
{
	const char *colon = strrchr(hp, ':');
	char host[64];

	if (!colon || (size_t)(colon - hp) >= sizeof(host))
		return -EINVAL;
	memcpy(host, hp, (size_t)(colon - hp));
	host[colon - hp] = '\0';
	*sa = (struct sockaddr_in){.sin_family = AF_INET,
				   .sin_port = htons((uint16_t)strtoul(colon + 1, NULL, 10))};
	return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -EINVAL;
}

static int dial(struct cl *c, const char *hp, bool tls, const char *ca)
{
	struct sockaddr_in sa;

	c->fd = -1;
	if (split_hostport(hp, &sa) < 0)
		return -EINVAL;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -errno;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
	if (!tls)
		return 0;
	c->ctx = SSL_CTX_new(TLS_client_method());
	if (SSL_CTX_load_verify_locations(c->ctx, ca, NULL) != 1)
		return -EINVAL;
	SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
	c->ssl = SSL_new(c->ctx);
	X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), "127.0.0.1");
	SSL_set_fd(c->ssl, c->fd);
	if (SSL_connect(c->ssl) != 1)
		return -EPROTO;
	return 0;
}

static int io_write(struct cl *c, const void *p, size_t n)
{
	if (!c->ssl)
		return write_all(c->fd, p, n);
	while (n) {
		int r = SSL_write(c->ssl, p, (int)n);

		if (r <= 0)
			return -EIO;
		p = (const uint8_t *)p + r;
		n -= (size_t)r;
	}
	return 0;
}

/* > 0 bytes, 0 EOF, -ETIMEDOUT, -EIO. */
static ssize_t io_read(struct cl *c, void *buf, size_t n, int timeout_ms)
{
	struct pollfd p = {.fd = c->fd, .events = POLLIN};
	ssize_t r;

	if (!(c->ssl && SSL_pending(c->ssl))) {
		int pr = poll(&p, 1, timeout_ms);

		if (pr == 0)
			return -ETIMEDOUT;
		if (pr < 0)
			return -errno;
	}
	if (c->ssl) {
		int s = SSL_read(c->ssl, buf, (int)n);

		if (s <= 0)
			return SSL_get_error(c->ssl, s) == SSL_ERROR_ZERO_RETURN ? 0 : -EIO;
		return s;
	}
	r = read(c->fd, buf, n);
	return r < 0 ? -errno : r;
}

static void cl_close_transport(struct cl *c)
{
	if (c->ssl)
		SSL_free(c->ssl);
	if (c->ctx)
		SSL_CTX_free(c->ctx);
	if (c->fd >= 0)
		close(c->fd);
	c->ssl = NULL;
	c->ctx = NULL;
	c->fd = -1;
}

int cl_http(const char *hostport, const char *method, const char *path, const char *body,
	    char **resp, int timeout_ms)
{
	struct cl c = {.fd = -1};
	struct sbuf in = {0};
	char *req, *end, buf[4096];
	int ret, status = 0;
	ssize_t r;

	*resp = NULL;
	ret = dial(&c, hostport, false, NULL);
	if (ret < 0)
		goto out;
	req = xasprintf("%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %zu\r\n"
			"Connection: close\r\n\r\n%s",
			method, path, hostport, body ? strlen(body) : 0, body ? body : "");
	ret = write_all(c.fd, req, strlen(req));
	free(req);
	while (ret == 0 && (r = io_read(&c, buf, sizeof(buf), timeout_ms)) != 0) {
		if (r < 0) {
			ret = (int)r;
			break;
		}
		sbuf_add(&in, buf, (size_t)r);
	}
	if (ret < 0)
		goto out;
	sbuf_add(&in, "", 1);
	end = strstr((char *)in.p, "\r\n\r\n");
	if (!end || sscanf((char *)in.p, "HTTP/1.1 %d", &status) != 1) {
		ret = -EBADMSG;
		goto out;
	}
	*resp = xstrdup(end + 4);
	ret = status;
out:
	free(in.p);
	cl_close_transport(&c);
	return ret;
}

int cl_get_key(const char *hostport, bool tls, const char *ca, uint8_t pub[static 32])
{
	struct cl c = {.fd = -1};
	struct sbuf in = {0};
	char buf[4096], *end;
	json_t *o = NULL;
	ssize_t r;
	int ret;

	ret = dial(&c, hostport, tls, ca);
	if (ret < 0)
		goto out;
	snprintf(buf, sizeof(buf), "GET /key?v=130 HTTP/1.1\r\nHost: %s\r\n\r\n", hostport);
	ret = io_write(&c, buf, strlen(buf));
	while (ret == 0 && (r = io_read(&c, buf, sizeof(buf), 2000)) != 0) {
		if (r < 0) {
			ret = (int)r;
			break;
		}
		sbuf_add(&in, buf, (size_t)r);
	}
	if (ret < 0)
		goto out;
	sbuf_add(&in, "", 1);
	end = strstr((char *)in.p, "\r\n\r\n");
	ret = -EBADMSG;
	if (!end || strncmp((char *)in.p, "HTTP/1.1 200", 12) != 0)
		goto out;
	o = json_loads(end + 4, 0, NULL);
	if (o && json_string_value(json_object_get(o, "publicKey")) &&
	    keys_from_text("mkey", json_string_value(json_object_get(o, "publicKey")), pub) == 0)
		ret = 0;
out:
	json_decref(o);
	free(in.p);
	cl_close_transport(&c);
	return ret;
}

/* ---- HTTP/2 ---- */

static struct cl_stream *by_id(struct cl *c, int32_t id)
{
	for (int i = 0; i < CL_MAX_STREAMS; i++)
		if (c->st[i].used && c->st[i].id == id)
			return &c->st[i];
	return NULL;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
		     void *user)
{
	struct cl_stream *st = by_id(user, f->hd.stream_id);

	if (st && namelen == 7 && memcmp(name, ":status", 7) == 0 && valuelen == 3)
		st->status = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
	return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
		   void *user)
{
	struct cl_stream *st = by_id(user, id);

	if (st)
		sbuf_add(&st->body, data, len);
	return 0;
}

static int on_close(nghttp2_session *s, int32_t id, uint32_t err, void *user)
{
	struct cl_stream *st = by_id(user, id);

	if (st)
		st->done = true;
	return 0;
}

static ssize_t read_req(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
			uint32_t *flags, nghttp2_data_source *src, void *user)
{
	struct cl_stream *st = src->ptr;
	size_t n = st->req.len - st->req_off;

	if (n > length)
		n = length;
	memcpy(buf, st->req.p + st->req_off, n);
	st->req_off += n;
	if (st->req_off == st->req.len)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static int flush(struct cl *c)
{
	const uint8_t *data;
	ssize_t n;

	while ((n = nghttp2_session_mem_send(c->h2, &data)) > 0) {
		size_t cap = ts2021_sealed_len((size_t)n);
		uint8_t *tmp = xmalloc(cap);
		ssize_t m = ts2021_seal(&c->conn.tx, data, (size_t)n, tmp, cap);
		int ret = m < 0 ? (int)m : io_write(c, tmp, (size_t)m);

		free(tmp);
		if (ret < 0)
			return ret;
	}
	return n < 0 ? -EPROTO : 0;
}

static int feed(struct cl *c, const uint8_t *p, size_t len)
{
	while (len) {
		const uint8_t *pt;
		const char *why;
		size_t used, pt_len, consumed = 0;
		int r = ts2021_reader_next(&c->rd, p, len, &used, &pt, &pt_len, &why);

		if (r < 0)
			return -EBADMSG;
		p += used;
		len -= used;
		if (r == 0)
			break;
		if (!c->early_done) {
			r = ts2021_early_feed(&c->early, pt, pt_len, &consumed, &why);
			if (r < 0)
				return -EBADMSG;
			if (r == 0)
				continue;
			c->early_done = true;
			if (!c->early.present) {
				const uint8_t *pass;
				size_t np = ts2021_early_passthrough(&c->early, &pass);

				if (nghttp2_session_mem_recv(c->h2, pass, np) < 0)
					return -EPROTO;
			}
			pt += consumed;
			pt_len -= consumed;
		}
		if (pt_len && nghttp2_session_mem_recv(c->h2, pt, pt_len) < 0)
			return -EPROTO;
	}
	return 0;
}

int cl_pump(struct cl *c, int timeout_ms)
{
	uint8_t buf[16384];
	ssize_t r;
	int ret;

	if (c->dead)
		return -EPIPE;
	ret = flush(c);
	if (ret < 0)
		goto dead;
	r = io_read(c, buf, sizeof(buf), timeout_ms);
	if (r == -ETIMEDOUT)
		return 0;
	if (r <= 0) {
		ret = r == 0 ? -EPIPE : (int)r;
		goto dead;
	}
	ret = feed(c, buf, (size_t)r);
	if (ret == 0)
		ret = flush(c);
	if (ret < 0)
		goto dead;
	return 0;
dead:
	c->dead = true;
	for (int i = 0; i < CL_MAX_STREAMS; i++)
		c->st[i].done = true;
	return ret;
}

int cl_connect(const char *hostport, bool tls, const char *ca, const uint8_t server_pub[static 32],
	       const uint8_t machine_priv[static 32], uint16_t version, struct cl **out)
{
	struct cl *c = xcalloc(1, sizeof(*c));
	uint8_t init[TS2021_INIT_LEN], buf[8192];
	char b64[TS2021_INIT_B64_LEN], *req;
	struct sbuf in = {0};
	nghttp2_session_callbacks *cb;
	const char *why;
	char *end;
	ssize_t r = 0;
	size_t head;
	int ret;

	*out = NULL;
	ts2021_early_init(&c->early);
	ret = dial(c, hostport, tls, ca);
	if (ret < 0)
		goto err;
	ret = ts2021_client_init(&c->hs, version, machine_priv, server_pub);
	if (ret == 0)
		ret = ts2021_client_initiation(&c->hs, init);
	if (ret < 0)
		goto err;
	ts2021_initiation_base64(b64, init);
	req = xasprintf("POST /ts2021 HTTP/1.1\r\nHost: %s\r\nUpgrade: tailscale-control-protocol"
			"\r\nConnection: upgrade\r\nX-Tailscale-Handshake: %s\r\n"
			"Content-Length: 0\r\n\r\n",
			hostport, b64);
	ret = io_write(c, req, strlen(req));
	free(req);
	if (ret < 0)
		goto err;
	for (;;) {
		sbuf_add(&in, "", 1);
		in.len--;
		end = strstr((char *)in.p, "\r\n\r\n");
		if (end)
			break;
		r = io_read(c, buf, sizeof(buf), 2000);
		if (r <= 0) {
			ret = r == 0 ? -EPIPE : (int)r;
			goto err;
		}
		sbuf_add(&in, buf, (size_t)r);
	}
	if (strncmp((char *)in.p, "HTTP/1.1 101", 12) != 0) {
		ret = -EPROTO;
		goto err;
	}
	head = (size_t)(end + 4 - (char *)in.p);
	sbuf_consume(&in, head);
	while ((r = ts2021_client_response(&c->hs, in.p, in.len, &c->conn, &why)) == 0) {
		ssize_t n = io_read(c, buf, sizeof(buf), 2000);

		if (n <= 0) {
			ret = n == 0 ? -EPIPE : (int)n;
			goto err;
		}
		sbuf_add(&in, buf, (size_t)n);
	}
	if (r < 0) {
		ret = (int)r;
		goto err;
	}
	sbuf_consume(&in, (size_t)r);
	ts2021_reader_init(&c->rd, &c->conn.rx);
	nghttp2_session_callbacks_new(&cb);
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
	nghttp2_session_client_new(&c->h2, cb, c);
	nghttp2_session_callbacks_del(cb);
	nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, NULL, 0);
	ret = feed(c, in.p, in.len);
	if (ret == 0)
		ret = flush(c);
	if (ret < 0)
		goto err;
	free(in.p);
	*out = c;
	return 0;
err:
	free(in.p);
	cl_free(c);
	return ret;
}

void cl_free(struct cl *c)
{
	if (!c)
		return;
	if (c->h2)
		nghttp2_session_del(c->h2);
	for (int i = 0; i < CL_MAX_STREAMS; i++) {
		free(c->st[i].req.p);
		free(c->st[i].body.p);
	}
	ts2021_client_destroy(&c->hs);
	ts2021_conn_destroy(&c->conn);
	ts2021_early_destroy(&c->early);
	cl_close_transport(c);
	free(c);
}

bool cl_has_challenge(struct cl *c)
{
	uint8_t chal[32];
	const char *why;

	return c->early_done && ts2021_early_challenge(&c->early, chal, &why) == 0;
}

int cl_post(struct cl *c, const char *path, json_t *body)
{
	char *text = json_dumps(body, JSON_COMPACT);
	nghttp2_nv nva[] = {
		{(uint8_t *)":method", (uint8_t *)"POST", 7, 4, 0},
		{(uint8_t *)":path", (uint8_t *)path, 5, strlen(path), 0},
		{(uint8_t *)":scheme", (uint8_t *)"https", 7, 5, 0},
		{(uint8_t *)":authority", (uint8_t *)"127.0.0.1", 10, 9, 0},
		{(uint8_t *)"content-type", (uint8_t *)"application/json", 12, 16, 0},
	};
	nghttp2_data_provider prov;
	struct cl_stream *st = NULL;
	int slot;

	for (slot = 0; slot < CL_MAX_STREAMS; slot++) {
		if (!c->st[slot].used) {
			st = &c->st[slot];
			break;
		}
	}
	if (!st) {
		free(text);
		return -ENOSPC;
	}
	memset(st, 0, sizeof(*st));
	st->used = true;
	sbuf_add(&st->req, text, strlen(text));
	free(text);
	prov.source.ptr = st;
	prov.read_callback = read_req;
	st->id =
		nghttp2_submit_request(c->h2, NULL, nva, sizeof(nva) / sizeof(nva[0]), &prov, NULL);
	if (st->id < 0) {
		st->used = false;
		return -EPROTO;
	}
	return flush(c) < 0 ? -EIO : slot;
}

int cl_wait(struct cl *c, int slot, const uint8_t **body, size_t *len, int timeout_ms)
{
	struct cl_stream *st = &c->st[slot];
	unsigned long long deadline = now_ms() + (unsigned long long)timeout_ms;

	while (!st->done) {
		if (now_ms() >= deadline)
			return -ETIMEDOUT;
		if (cl_pump(c, 50) < 0 && !st->done)
			return -EPIPE;
	}
	*body = st->body.p;
	*len = st->body.len;
	return st->status;
}

int cl_map_next(struct cl *c, int slot, bool zstd, json_t **msg, int timeout_ms)
{
	struct cl_stream *st = &c->st[slot];
	unsigned long long deadline = now_ms() + (unsigned long long)timeout_ms;

	*msg = NULL;
	for (;;) {
		if (st->body.len >= 4) {
			uint32_t n = (uint32_t)st->body.p[0] | (uint32_t)st->body.p[1] << 8 |
				     (uint32_t)st->body.p[2] << 16 | (uint32_t)st->body.p[3] << 24;

			if (n > 4 << 20)
				return -EMSGSIZE;
			if (st->body.len - 4 >= n) {
				const uint8_t *p = st->body.p + 4;
				char *json = NULL;
				size_t jlen = n;

				if (zstd) {
					unsigned long long size = ZSTD_getFrameContentSize(p, n);

					if (size == ZSTD_CONTENTSIZE_ERROR ||
					    size == ZSTD_CONTENTSIZE_UNKNOWN || size > 16 << 20)
						return -EBADMSG;
					json = xmalloc(size + 1);
					jlen = ZSTD_decompress(json, size, p, n);
					if (ZSTD_isError(jlen)) {
						free(json);
						return -EBADMSG;
					}
					p = (const uint8_t *)json;
				}
				*msg = json_loadb((const char *)p, jlen, 0, NULL);
				free(json);
				sbuf_consume(&st->body, 4 + n);
				return *msg ? 1 : -EBADMSG;
			}
		}
		if (st->done)
			return st->body.len ? -EBADMSG : 0;
		if (now_ms() >= deadline)
			return -ETIMEDOUT;
		if (cl_pump(c, 50) < 0 && !st->done)
			return -EPIPE;
	}
}
