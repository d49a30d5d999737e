/* The metrics port's HTTP/1.1 server (http_serve.h): a pure parser of the
 * request head, and the connections on the supervisor's loop. */
#include "http_serve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "mem.h"

/* ---- the request head (bytes from anyone who reaches the port) --------- */

/* RFC 9110 5.6.2: tchar. */
static bool is_tchar(uint8_t c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* A header value's bytes: HTAB, SP, VCHAR, obs-text. */
static bool is_field_byte(uint8_t c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* The next line from off within lim: its end (before CR LF or LF) in *end,
 * the start of the line after it in *next. false when no LF is there yet. */
static bool next_line(const uint8_t *buf, size_t off, size_t lim, size_t *end, size_t *next)
{
	const uint8_t *lf = memchr(buf + off, '\n', lim - off);
	size_t e;

	if (!lf)
		return false;
	e = (size_t)(lf - buf);
	*next = e + 1;
	if (e > off && buf[e - 1] == '\r')
		e--;
	*end = e;
	return true;
}

static ssize_t refuse(int code, const char *msg, int *status, const char **why)
{
	*status = code;
	*why = msg;
	return code == 431 ? -EMSGSIZE : -EBADMSG;
}

/* "METHOD SP target SP HTTP/1.x" in buf[0..end). 0, or refuse()'s. */
static ssize_t request_line(const uint8_t *buf, size_t end, struct http_request *req, int *status,
			    const char **why)
{
	size_t i = 0, m, t0, tlen, q;

	while (i < end && is_tchar(buf[i]))
		i++;
	m = i;
	if (m == 0 || i == end || buf[i] != ' ')
		return refuse(400, "malformed request line", status, why);
	if (m == 3 && !memcmp(buf, "GET", 3))
		req->method = HTTP_GET;
	else if (m == 4 && !memcmp(buf, "HEAD", 4))
		req->method = HTTP_HEAD;
	else if (m <= HTTP_METHOD_MAX)
		return refuse(405, "only GET and HEAD are served", status, why);
	else
		return refuse(400, "method token too long", status, why);
	t0 = ++i;
	while (i < end && buf[i] > 0x20 && buf[i] < 0x7f)
		i++;
	tlen = i - t0;
	if (tlen == 0 || i == end || buf[i] != ' ')
		return refuse(400, "malformed request line", status, why);
	if (buf[t0] != '/')
		return refuse(400, "the request target is not an absolute path", status, why);
	if (tlen > HTTP_PATH_MAX)
		return refuse(414, "request target too long", status, why);
	i++;
	if (end - i != 8 || memcmp(buf + i, "HTTP/", 5) || buf[i + 5] < '0' || buf[i + 5] > '9' ||
	    buf[i + 6] != '.' || buf[i + 7] < '0' || buf[i + 7] > '9')
		return refuse(400, "not an HTTP/1.x request", status, why);
	if (buf[i + 5] != '1')
		return refuse(buf[i + 5] > '1' ? 505 : 400, "only HTTP/1.0 and HTTP/1.1 are served",
			      status, why);
	req->minor = buf[i + 7] - '0';
	if (req->minor > 1)
		req->minor = 1; /* RFC 9112 2.3: a higher minor is 1.1 to us */
	q = 0;
	while (q < tlen && buf[t0 + q] != '?')
		q++;
	memcpy(req->path, buf + t0, q);
	req->path[q] = '\0';
	return 0;
}

/* "name: value" in buf[off..end). 0, or refuse()'s; *host counts Host. */
static ssize_t header_line(const uint8_t *buf, size_t off, size_t end, unsigned int *host,
			   int *status, const char **why)
{
	size_t i = off;

	if (buf[off] == ' ' || buf[off] == '\t')
		return refuse(400, "folded header line (obs-fold)", status, why);
	while (i < end && is_tchar(buf[i]))
		i++;
	if (i == off || i == end || buf[i] != ':')
		return refuse(400, "malformed header line", status, why);
	if (i - off == 4 && !strncasecmp((const char *)buf + off, "host", 4))
		(*host)++;
	for (i++; i < end; i++)
		if (!is_field_byte(buf[i]))
			return refuse(400, "control byte in a header value", status, why);
	return 0;
}

ssize_t http_request_parse(const uint8_t *buf, size_t len, struct http_request *req, int *status,
			   const char **why)
{
	size_t lim = len < HTTP_HEAD_MAX ? len : HTTP_HEAD_MAX;
	size_t end, next, off;
	unsigned int headers = 0, host = 0;
	ssize_t ret;

	memset(req, 0, sizeof(*req));
	*status = 0;
	if (!next_line(buf, 0, lim, &end, &next))
		goto incomplete;
	ret = request_line(buf, end, req, status, why);
	if (ret < 0)
		goto bad;
	for (off = next;; off = next) {
		if (!next_line(buf, off, lim, &end, &next))
			goto incomplete;
		if (end == off)
			break; /* the empty line: the head is whole */
		if (++headers > HTTP_HEADERS_MAX) {
			ret = refuse(431, "too many header lines", status, why);
			goto bad;
		}
		ret = header_line(buf, off, end, &host, status, why);
		if (ret < 0)
			goto bad;
	}
	/* RFC 9112 3.2: exactly one Host in HTTP/1.1. */
	if ((req->minor == 1 && host != 1) || host > 1) {
		ret = refuse(400, "HTTP/1.1 needs exactly one Host header", status, why);
		goto bad;
	}
	return (ssize_t)next;

incomplete:
	if (len < HTTP_HEAD_MAX) {
		memset(req, 0, sizeof(*req));
		return 0;
	}
	ret = refuse(431, "request head longer than 4096 bytes", status, why);
bad:
	memset(req, 0, sizeof(*req));
	return ret;
}

int http_listen_parse(const char *s, struct sockaddr_storage *out, const char **why)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon, *h = s;
	size_t hlen;
	unsigned long port;
	char *e;

	memset(out, 0, sizeof(*out));
	*why = "not ADDR:PORT (an IPv4 literal or a [bracketed] IPv6 literal, port 1-65535)";
	if (strlen(s) > HTTP_LISTEN_MAX_LEN || !(colon = strrchr(s, ':')))
		return -EINVAL;
	hlen = (size_t)(colon - s);
	if (hlen >= 2 && s[0] == '[' && s[hlen - 1] == ']') {
		h = s + 1;
		hlen -= 2;
	} else if (memchr(s, ':', hlen)) {
		return -EINVAL; /* an IPv6 literal without brackets */
	}
	if (hlen == 0 || hlen >= sizeof(host) || colon[1] < '0' || colon[1] > '9')
		return -EINVAL;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	errno = 0;
	port = strtoul(colon + 1, &e, 10);
	if (errno || *e || port < 1 || port > 65535)
		return -EINVAL;
	if (h == s) {
		struct sockaddr_in *a = (struct sockaddr_in *)out;

		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)port);
		if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
			return -EINVAL;
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)out;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
			return -EINVAL;
	}
	*why = NULL;
	return 0;
}

/* ---- the server ------------------------------------------------------- */

enum hconn_state {
	HC_READING, /* the head */
	HC_WRITING, /* the answer */
	HC_LINGER,  /* answered and shut down: reading what is left, dropping it */
};

struct hconn {
	struct hconn *next;
	struct http_server *srv;
	uv_tcp_t tcp;
	enum hconn_state state;
	bool counted; /* in srv->conns (a refused one is not) */
	bool closing;
	uint64_t deadline_ms;
	size_t len;	  /* of buf */
	size_t discarded; /* HC_LINGER */
	uv_write_t wr;
	uv_shutdown_t sd;
	char *out; /* the answer, head and body; freed when the handle closes */
	uint8_t buf[HTTP_HEAD_MAX];
};

struct http_server {
	uv_loop_t *loop;
	uv_tcp_t listener;
	uv_timer_t sweep;
	http_handler_fn *fn;
	void *arg;
	struct hconn *conns;
	unsigned int n_conns;
	unsigned int handles_open;
	bool closing;
	uint64_t refused;
	struct log_ratelimit refuse_log;
	uint8_t scratch[4096]; /* HC_LINGER reads land here */
};

static void server_put(struct http_server *srv)
{
	if (--srv->handles_open == 0)
		free(srv);
}

static void conn_closed(uv_handle_t *h)
{
	struct hconn *c = h->data;
	struct http_server *srv = c->srv;

	free(c->out);
	free(c);
	server_put(srv);
}

static void conn_close(struct hconn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (c->counted) {
		for (struct hconn **pp = &c->srv->conns; *pp; pp = &(*pp)->next) {
			if (*pp == c) {
				*pp = c->next;
				break;
			}
		}
		c->srv->n_conns--;
	}
	uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static const char *reason_phrase(int status)
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
	case 414:
		return "URI Too Long";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 503:
		return "Service Unavailable";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Unknown";
	}
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);

static void on_shutdown(uv_shutdown_t *req, int status)
{
	struct hconn *c = req->data;

	if (c->closing)
		return;
	if (status < 0 || uv_read_start((uv_stream_t *)&c->tcp, NULL, on_read) < 0) {
		conn_close(c);
		return;
	}
	c->state = HC_LINGER;
}

static void on_write(uv_write_t *req, int status)
{
	struct hconn *c = req->data;

	if (c->closing)
		return;
	c->sd.data = c;
	if (status < 0 || uv_shutdown(&c->sd, (uv_stream_t *)&c->tcp, on_shutdown) < 0)
		conn_close(c);
}

/* Sends status, the headers and (unless head_only) the body, then shuts the
 * connection down. Takes body. */
static void respond(struct hconn *c, int status, const char *ctype, char *body, size_t body_len,
		    bool head_only)
{
	uv_buf_t b;
	int n;

	uv_read_stop((uv_stream_t *)&c->tcp);
	c->state = HC_WRITING;
	c->deadline_ms = uv_now(c->srv->loop) + HTTP_TIMEOUT_MS;
	n = snprintf(NULL, 0,
		     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		     "Cache-Control: no-store\r\n%sConnection: close\r\n\r\n",
		     status, reason_phrase(status), ctype, body_len,
		     status == 405 ? "Allow: GET, HEAD\r\n" : "");
	c->out = xmalloc((size_t)n + 1 + (head_only ? 0 : body_len));
	snprintf(c->out, (size_t)n + 1,
		 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		 "Cache-Control: no-store\r\n%sConnection: close\r\n\r\n",
		 status, reason_phrase(status), ctype, body_len,
		 status == 405 ? "Allow: GET, HEAD\r\n" : "");
	if (!head_only && body_len)
		memcpy(c->out + n, body, body_len);
	free(body);
	b = uv_buf_init(c->out, (unsigned int)((size_t)n + (head_only ? 0 : body_len)));
	c->wr.data = c;
	if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, on_write) < 0)
		conn_close(c);
}

/* A bad request: the status and one line saying why. */
static void respond_error(struct hconn *c, int status, const char *why)
{
	char *body = xasprintf("%s: %s\n", reason_phrase(status), why);

	respond(c, status, "text/plain; charset=utf-8", body, strlen(body), false);
}

static void handle(struct hconn *c, const struct http_request *req)
{
	struct http_server *srv = c->srv;
	struct http_response resp = {0};

	srv->fn(srv->arg, req, &resp);
	if (!resp.status) {
		free(resp.body);
		respond_error(c, 500, "no answer");
		return;
	}
	respond(c, resp.status, resp.content_type ? resp.content_type : "text/plain", resp.body,
		resp.body ? resp.body_len : 0, req->method == HTTP_HEAD);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	struct hconn *c = h->data;

	(void)suggested;
	if (c->state == HC_READING)
		*b = uv_buf_init((char *)c->buf + c->len, (unsigned int)(sizeof(c->buf) - c->len));
	else
		*b = uv_buf_init((char *)c->srv->scratch, sizeof(c->srv->scratch));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
	struct hconn *c = s->data;
	struct http_request req;
	const char *why = NULL;
	int status = 0;
	ssize_t ret;

	(void)b;
	if (c->closing || nread == 0)
		return;
	if (nread < 0) {
		conn_close(c); /* EOF or an error: the client is done */
		return;
	}
	if (c->state == HC_LINGER) {
		c->discarded += (size_t)nread;
		if (c->discarded > HTTP_LINGER_MAX)
			conn_close(c);
		return;
	}
	if (c->state != HC_READING)
		return;
	c->len += (size_t)nread;
	ret = http_request_parse(c->buf, c->len, &req, &status, &why);
	if (ret == 0)
		return; /* on_alloc has room: a full buffer is answered 431 */
	if (ret < 0) {
		respond_error(c, status, why);
		return;
	}
	handle(c, &req);
}

/* Closes the connections past their deadline: a head that did not arrive
 * in time, an answer not taken in time, a linger that lasts. */
static void on_sweep(uv_timer_t *t)
{
	struct http_server *srv = t->data;
	uint64_t now = uv_now(srv->loop);
	struct hconn *c, *next;

	for (c = srv->conns; c; c = next) {
		next = c->next;
		if (now >= c->deadline_ms)
			conn_close(c);
	}
}

static void on_connection(uv_stream_t *l, int status)
{
	struct http_server *srv = l->data;
	struct hconn *c;
	uint64_t n;

	if (status < 0 || srv->closing)
		return;
	c = xcalloc(1, sizeof(*c));
	c->srv = srv;
	c->tcp.data = c;
	uv_tcp_init(srv->loop, &c->tcp); /* cannot fail for a TCP handle without flags */
	srv->handles_open++;
	if (uv_accept(l, (uv_stream_t *)&c->tcp) < 0) {
		conn_close(c);
		return;
	}
	if (srv->n_conns >= HTTP_CONNS_MAX) {
		srv->refused++;
		n = log_ratelimit_hit(&srv->refuse_log, now_ms(), 10000);
		if (n)
			log_warn("metrics port: %llu connection(s) closed at once: %d are open",
				 (unsigned long long)n, HTTP_CONNS_MAX);
		conn_close(c);
		return;
	}
	c->counted = true;
	c->next = srv->conns;
	srv->conns = c;
	srv->n_conns++;
	c->deadline_ms = uv_now(srv->loop) + HTTP_TIMEOUT_MS;
	uv_tcp_nodelay(&c->tcp, 1);
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0)
		conn_close(c);
}

static void server_handle_closed(uv_handle_t *h)
{
	server_put(h->data);
}

int http_server_open(uv_loop_t *loop, const struct sockaddr *addr, http_handler_fn *fn, void *arg,
		     struct http_server **out)
{
	struct http_server *srv = xcalloc(1, sizeof(*srv));
	unsigned int flags = addr->sa_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0;
	int ret;

	*out = NULL;
	srv->loop = loop;
	srv->fn = fn;
	srv->arg = arg;
	ret = uv_tcp_init(loop, &srv->listener);
	if (ret < 0) {
		free(srv);
		return ret;
	}
	srv->listener.data = srv;
	uv_timer_init(loop, &srv->sweep);
	srv->sweep.data = srv;
	srv->handles_open = 2;
	ret = uv_tcp_bind(&srv->listener, addr, flags);
	if (ret == 0)
		ret = uv_listen((uv_stream_t *)&srv->listener, 64, on_connection);
	if (ret == 0)
		ret = uv_timer_start(&srv->sweep, on_sweep, HTTP_SWEEP_MS, HTTP_SWEEP_MS);
	if (ret < 0) {
		srv->closing = true;
		uv_close((uv_handle_t *)&srv->listener, server_handle_closed);
		uv_close((uv_handle_t *)&srv->sweep, server_handle_closed);
		return ret;
	}
	*out = srv;
	return 0;
}

uint64_t http_server_refused(const struct http_server *srv)
{
	return srv ? srv->refused : 0;
}

void http_server_close(struct http_server *srv)
{
	if (!srv || srv->closing)
		return;
	srv->closing = true;
	while (srv->conns)
		conn_close(srv->conns);
	uv_close((uv_handle_t *)&srv->listener, server_handle_closed);
	uv_close((uv_handle_t *)&srv->sweep, server_handle_closed);
}
