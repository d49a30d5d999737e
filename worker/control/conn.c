/* One connection to control: curl connects it (through a proxy, with TLS
 * when asked); then the socket is ours. It carries either GET /key
 * (CONN_KEY) or the ts2021 upgrade (CONN_NOISE): the HTTP/1.1 request, the
 * answer's head, then the Noise handshake, after which h2.c reads the
 * records. Errors mark the connection dead (client__conn_error) and
 * client__settle decides what follows. */
#include "client_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "log.h"
#include "tls_store.h"

static void on_conn_poll(uv_poll_t *h, int status, int events);

void client__conn_error(struct conn *n, int err, const char *fmt, ...)
{
	va_list ap;

	if (n->dead)
		return;
	n->dead = true;
	n->err = err;
	va_start(ap, fmt);
	vsnprintf(n->msg, sizeof(n->msg), fmt, ap);
	va_end(ap);
}

const char *client__conn_name(const struct conn *n)
{
	if (n->kind == CONN_KEY)
		return "GET /key";
	return n->tls ? "ts2021 over TLS" : "ts2021 over HTTP";
}

/* curl has connected (and done the proxy CONNECT and TLS): the socket is
 * ours from now on. Sends the HTTP/1.1 request. */
void client__conn_connected(struct conn *n)
{
	struct client *c = n->c;
	curl_socket_t fd = CURL_SOCKET_BAD;
	char *req;

	if (curl_easy_getinfo(n->easy, CURLINFO_ACTIVESOCKET, &fd) != CURLE_OK ||
	    fd == CURL_SOCKET_BAD) {
		client__conn_error(n, -EIO, "%s: connected socket unavailable",
				   client__conn_name(n));
		return;
	}
	n->fd = fd;
	n->poll = client__curl_take_poll(c, fd);
	if (!n->poll) {
		n->poll = xcalloc(1, sizeof(*n->poll));
		if (uv_poll_init_socket(c->loop, n->poll, fd) < 0) {
			free(n->poll);
			n->poll = NULL;
			client__conn_error(n, -EIO, "%s: cannot watch the socket",
					   client__conn_name(n));
			return;
		}
	}
	n->poll->data = n;
	n->poll_events = 0;

	if (n->kind == CONN_KEY) {
		req = xasprintf("GET /key?v=%d HTTP/1.1\r\nHost: %s%s%s:%u\r\n"
				"User-Agent: tailscale-cni\r\nAccept: application/json\r\n"
				"Connection: close\r\n\r\n",
				c->capver, strchr(c->srv.host, ':') ? "[" : "", c->srv.host,
				strchr(c->srv.host, ':') ? "]" : "", n->port);
	} else {
		uint8_t init[TS2021_INIT_LEN];
		char b64[TS2021_INIT_B64_LEN];
		int ret;

		ret = ts2021_client_init(&n->hs, (uint16_t)c->capver, c->node.machine_priv,
					 c->srv.server_pub);
		if (ret == 0) {
			n->hs_live = true;
			ret = ts2021_client_initiation(&n->hs, init);
		}
		if (ret < 0) {
			client__conn_error(n, ret,
					   "ts2021: cannot build the handshake (bad server key?)");
			return;
		}
		ts2021_initiation_base64(b64, init);
		req = xasprintf(
			"POST /ts2021 HTTP/1.1\r\nHost: %s%s%s:%u\r\n"
			"User-Agent: tailscale-cni\r\nUpgrade: %s\r\nConnection: upgrade\r\n"
			"X-Tailscale-Handshake: %s\r\nContent-Length: 0\r\n\r\n",
			strchr(c->srv.host, ':') ? "[" : "", c->srv.host,
			strchr(c->srv.host, ':') ? "]" : "", n->port, CLIENT_UPGRADE_PROTO, b64);
	}
	sbuf_add(&n->out, req, strlen(req));
	free(req);
	n->stage = ST_HTTP;
	client__conn_flush(n);
	client__conn_update_poll(n);
}

struct conn *client__conn_new(struct client *c, enum conn_kind kind, bool tls, uint16_t port)
{
	struct conn *n = xcalloc(1, sizeof(*n));
	bool proxied = c->names.use_proxy[tls];
	struct rcache rc;
	char *url;

	n->c = c;
	n->kind = kind;
	n->tls = tls;
	n->port = port;
	n->fd = CURL_SOCKET_BAD;
	n->stage = ST_CONNECT;
	ts2021_early_init(&n->early);
	n->easy = curl_easy_init();
	if (!n->easy)
		abort();
	url = xasprintf("%s://%s%s%s:%u/", tls ? "https" : "http",
			strchr(c->srv.host, ':') ? "[" : "", c->srv.host,
			strchr(c->srv.host, ':') ? "]" : "", port);
	curl_easy_setopt(n->easy, CURLOPT_URL, url);
	free(url);
	curl_easy_setopt(n->easy, CURLOPT_CONNECT_ONLY, 1L);
	curl_easy_setopt(n->easy, CURLOPT_PRIVATE, n);
	curl_easy_setopt(n->easy, CURLOPT_ERRORBUFFER, n->errbuf);
	curl_easy_setopt(n->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(n->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)c->cfg.dial_timeout_ms);
	curl_easy_setopt(n->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	/* No file is read after the sandbox is up: the CA comes from memory,
	 * and the compiled-in CA bundle paths are cleared. */
	curl_easy_setopt(n->easy, CURLOPT_CAINFO, NULL);
	curl_easy_setopt(n->easy, CURLOPT_CAPATH, NULL);
	if (tls) {
		/* The zygote's parsed store, or the bundle not copied (it
		 * outlives the client: client_config). */
		tls_store_curl(n->easy, c->srv.ca_pem, c->srv.ca_pem_len);
		curl_easy_setopt(n->easy, CURLOPT_SSL_VERIFYPEER, 1L);
		curl_easy_setopt(n->easy, CURLOPT_SSL_VERIFYHOST, 2L);
		/* HTTP/1.1 only: an h2 connection cannot be upgraded. */
		curl_easy_setopt(n->easy, CURLOPT_SSL_ENABLE_ALPN, 0L);
	}
	if (proxied) {
		curl_easy_setopt(n->easy, CURLOPT_PROXY,
				 tls ? c->srv.https_proxy : c->srv.http_proxy);
		curl_easy_setopt(n->easy, CURLOPT_HTTPPROXYTUNNEL, 1L);
		rc = c->names.cache[SLOT_PROXY];
	} else {
		/* An empty string: no proxy, and curl does not read the
		 * environment itself. */
		curl_easy_setopt(n->easy, CURLOPT_PROXY, "");
		rc = c->names.cache[SLOT_CONTROL];
		rc.port = port;
	}
	n->resolve_list = client__resolve_entry(&rc);
	if (n->resolve_list)
		curl_easy_setopt(n->easy, CURLOPT_RESOLVE, n->resolve_list);
	if (curl_multi_add_handle(c->curl.multi, n->easy) != CURLM_OK)
		client__conn_error(n, -EIO, "%s: curl refused the connection",
				   client__conn_name(n));
	return n;
}

void client__conn_free(struct conn *n)
{
	struct client *c;
	size_t i;

	if (!n)
		return;
	c = n->c;
	for (i = 0; i < MAX_REQS; i++) {
		struct h2req *r = n->reqs[i];

		if (!r)
			continue;
		if (c->map.stream == r)
			c->map.stream = NULL;
		if (c->lite.req == r)
			c->lite.req = NULL;
		client__req_free(r);
	}
	if (n->h2)
		nghttp2_session_del(n->h2);
	if (n->poll)
		client__close_poll(n->poll);
	if (n->easy) {
		curl_multi_remove_handle(c->curl.multi, n->easy);
		curl_easy_cleanup(n->easy);
	}
	curl_slist_free_all(n->resolve_list);
	if (n->hs_live)
		ts2021_client_destroy(&n->hs);
	ts2021_reader_destroy(&n->rd);
	ts2021_conn_destroy(&n->nc);
	ts2021_early_destroy(&n->early);
	sbuf_free(&n->in);
	sbuf_free(&n->out);
	free(n);
}

void client__conn_update_poll(struct conn *n)
{
	int ev = UV_READABLE;

	if (!n->poll || n->dead)
		return;
	if (n->out.len)
		ev |= UV_WRITABLE;
	if (ev != n->poll_events) {
		n->poll_events = ev;
		uv_poll_start(n->poll, ev, on_conn_poll);
	}
}

void client__conn_flush(struct conn *n)
{
	while (n->out.len && !n->dead) {
		size_t sent = 0;
		CURLcode rc = curl_easy_send(n->easy, n->out.p, n->out.len, &sent);

		if (rc == CURLE_AGAIN)
			break;
		if (rc != CURLE_OK) {
			client__conn_error(n, -EPIPE, "%s: send to %s port %u failed: %s",
					   client__conn_name(n), n->c->srv.host, n->port,
					   curl_easy_strerror(rc));
			return;
		}
		sbuf_consume(&n->out, sent);
	}
}

static void key_body(struct conn *n, const uint8_t *body, size_t len)
{
	struct client *c = n->c;
	const char *why = NULL;

	if (client_parse_key((const char *)body, len, c->srv.server_pub, &why) < 0) {
		client__conn_error(n, -EBADMSG, "GET /key: %s", why);
		return;
	}
	c->srv.have_server_key = true;
	n->stage = ST_DONE;
}

static void conn_input(struct conn *n, bool eof)
{
	struct client *c = n->c;

	if (n->stage == ST_HTTP && !n->head_done) {
		const char *why = NULL;
		ssize_t h =
			client_http_parse_head((const char *)n->in.p, n->in.len, &n->head, &why);

		if (h < 0) {
			client__conn_error(n, (int)h, "%s: bad HTTP answer: %s",
					   client__conn_name(n), why);
			return;
		}
		if (h == 0) {
			if (eof)
				client__conn_error(n, -ECONNRESET,
						   "%s: connection closed before an HTTP answer",
						   client__conn_name(n));
			return;
		}
		n->head_done = true;
		n->head_len = (size_t)h;
		if (n->kind == CONN_KEY) {
			if (n->head.status != 200) {
				client__conn_error(n, -EPROTO, "GET /key: HTTP status %d",
						   n->head.status);
				return;
			}
			if (n->head.chunked) {
				client__conn_error(n, -EPROTO,
						   "GET /key: chunked answer not supported");
				return;
			}
			if (n->head.has_length && n->head.content_length > CLIENT_KEY_MAX_BODY) {
				client__conn_error(n, -EMSGSIZE,
						   "GET /key: answer larger than 64 KiB");
				return;
			}
		} else {
			if (n->head.status != 101) {
				client__conn_error(
					n, -EPROTO,
					"ts2021 upgrade refused by control: HTTP status %d",
					n->head.status);
				return;
			}
			if (!n->head.upgrade_ts2021) {
				client__conn_error(n, -EPROTO,
						   "ts2021 upgrade: 101 without Upgrade: %s",
						   CLIENT_UPGRADE_PROTO);
				return;
			}
			/* The bytes after the head belong to the Noise stream. */
			sbuf_consume(&n->in, n->head_len);
			n->stage = ST_HANDSHAKE;
		}
	}
	if (n->kind == CONN_KEY && n->stage == ST_HTTP && n->head_done) {
		size_t have = n->in.len - n->head_len;

		if (have > CLIENT_KEY_MAX_BODY) {
			client__conn_error(n, -EMSGSIZE, "GET /key: answer larger than 64 KiB");
			return;
		}
		if (n->head.has_length && have >= n->head.content_length)
			key_body(n, n->in.p + n->head_len, (size_t)n->head.content_length);
		else if (eof && n->head.has_length)
			client__conn_error(n, -ECONNRESET, "GET /key: answer truncated");
		else if (eof)
			key_body(n, n->in.p + n->head_len, have);
		return;
	}
	if (n->stage == ST_HANDSHAKE) {
		const char *why = NULL;
		ssize_t k = ts2021_client_response(&n->hs, n->in.p, n->in.len, &n->nc, &why);

		if (k == -ECONNREFUSED) {
			client__conn_error(n, -ECONNREFUSED,
					   "control refused the Noise handshake: %s",
					   n->hs.server_error);
			return;
		}
		if (k < 0) {
			client__conn_error(n, (int)k, "Noise handshake with control failed: %s",
					   why);
			c->srv.have_server_key = false;
			return;
		}
		if (k == 0) {
			if (eof)
				client__conn_error(n, -ECONNRESET,
						   "control closed the connection during the Noise "
						   "handshake (wrong server key from /key?)");
			return;
		}
		sbuf_consume(&n->in, (size_t)k);
		ts2021_client_destroy(&n->hs);
		n->hs_live = false;
		ts2021_reader_init(&n->rd, &n->nc.rx);
		n->stage = ST_OPEN;
		client__h2_start(n);
	}
	if (n->stage == ST_OPEN) {
		client__h2_records(n);
		if (eof && !n->dead)
			client__conn_error(n, -ECONNRESET, "control closed the connection");
	}
}

static void on_conn_poll(uv_poll_t *h, int status, int events)
{
	struct conn *n = h->data;
	struct client *c = n->c;
	uint8_t buf[RECV_CHUNK];

	if (status < 0 && !n->dead)
		client__conn_error(n, status, "%s: socket error: %s", client__conn_name(n),
				   uv_strerror(status));
	if (!n->dead && (events & UV_WRITABLE)) {
		client__conn_flush(n);
	}
	while (!n->dead && ((events & UV_READABLE) || status < 0)) {
		size_t got = 0;
		CURLcode rc = curl_easy_recv(n->easy, buf, sizeof(buf), &got);

		if (rc == CURLE_AGAIN)
			break;
		if (rc != CURLE_OK) {
			client__conn_error(n, -ECONNRESET, "%s: receive from %s port %u failed: %s",
					   client__conn_name(n), c->srv.host, n->port,
					   curl_easy_strerror(rc));
			break;
		}
		if (got == 0) {
			conn_input(n, true);
			if (!n->dead && n->stage != ST_DONE)
				client__conn_error(n, -ECONNRESET, "%s: connection closed",
						   client__conn_name(n));
			break;
		}
		/* Before the Noise records start, bound what we buffer. */
		if (n->stage != ST_OPEN &&
		    n->in.len + got > CLIENT_HTTP_MAX_HEAD + CLIENT_KEY_MAX_BODY + RECV_CHUNK) {
			client__conn_error(n, -EMSGSIZE, "%s: answer too large",
					   client__conn_name(n));
			break;
		}
		sbuf_add(&n->in, buf, got);
		conn_input(n, false);
		if (n->stage == ST_DONE)
			break;
	}
	if (!n->dead)
		client__conn_flush(n);
	client__conn_update_poll(n);
	client__settle(c);
}
