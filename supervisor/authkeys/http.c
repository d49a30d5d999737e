/* libcurl's multi interface on a libuv loop (curl's own multi-uv example,
 * docs/libcurl/libcurl-multi.md): libcurl says which sockets to watch
 * (CURLMOPT_SOCKETFUNCTION → uv_poll) and when to call it back
 * (CURLMOPT_TIMERFUNCTION → uv_timer); each event is handed back with
 * curl_multi_socket_action, and finished transfers are collected after it.
 * Request bodies, headers and answers may hold secrets: every buffer of ours
 * is wiped before it is freed. */
#include "http.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <sodium.h>

#include "log.h"
#include "mem.h"

enum http_limits {
	HTTP_CONNECT_TIMEOUT_MS = 3000,
	HTTP_RETRY_AFTER_MAX_S = 3600,
};

struct sock_ctx {
	uv_poll_t poll;
	curl_socket_t fd;
	struct http *h;
};

struct http {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t timer;
	struct http_xfer *xfers;
	unsigned int open_handles; /* the timer and live polls */
	int closing;
	const char *ca_pem; /* NULL: libcurl's default bundle */
	size_t ca_pem_len;
};

struct http_xfer {
	struct http_xfer *next;
	struct http *h;
	CURL *easy;
	struct curl_slist *headers;
	char *req_body;
	size_t req_len;
	char *buf; /* the answer */
	size_t len, cap, max;
	int truncated;
	unsigned int retry_after_s;
	char errbuf[CURL_ERROR_SIZE];
	http_done_fn *cb;
	void *arg;
};

static void maybe_free(struct http *h)
{
	if (h->closing && h->open_handles == 0) {
		curl_multi_cleanup(h->multi);
		free(h);
	}
}

static void handle_closed(uv_handle_t *hd)
{
	struct http *h = hd->data;

	if (hd->type == UV_POLL) {
		struct sock_ctx *c = (struct sock_ctx *)hd;

		h = c->h;
		free(c);
	}
	h->open_handles--;
	maybe_free(h);
}

static void wipe_free(char *p, size_t n)
{
	if (p) {
		sodium_memzero(p, n);
		free(p);
	}
}

static void xfer_free(struct http_xfer *x)
{
	struct http *h = x->h;

	for (struct http_xfer **pp = &h->xfers; *pp; pp = &(*pp)->next) {
		if (*pp == x) {
			*pp = x->next;
			break;
		}
	}
	curl_multi_remove_handle(h->multi, x->easy);
	curl_easy_cleanup(x->easy);
	for (struct curl_slist *s = x->headers; s; s = s->next)
		sodium_memzero(s->data, strlen(s->data));
	curl_slist_free_all(x->headers);
	wipe_free(x->req_body, x->req_len);
	wipe_free(x->buf, x->cap);
	sodium_memzero(x, sizeof(*x));
	free(x);
}

/* Transfers libcurl has finished: their callbacks, after the easy handle
 * is gone (so a callback may start the next transfer). */
static void collect(struct http *h)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(h->multi, &left))) {
		struct http_xfer *x = NULL;
		struct http_result r = {0};

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
		if (!x)
			continue;
		r.curl_err = (int)m->data.result;
		if (r.curl_err) {
			r.why = x->errbuf[0] ? x->errbuf : curl_easy_strerror(m->data.result);
		} else {
			curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &r.status);
			r.retry_after_s = x->retry_after_s;
		}
		r.body = x->buf ? x->buf : "";
		r.len = x->len;
		r.truncated = x->truncated;
		/* The callback runs with the answer; the easy handle goes first
		 * so that it may start another transfer. */
		curl_multi_remove_handle(h->multi, x->easy);
		x->cb(x->arg, &r);
		xfer_free(x);
	}
}

static void on_poll(uv_poll_t *p, int status, int events)
{
	struct sock_ctx *c = (struct sock_ctx *)p;
	struct http *h = c->h;
	int flags = 0, running;

	if (status < 0)
		flags = CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(h->multi, c->fd, flags, &running);
	collect(h);
}

static void on_timeout(uv_timer_t *t)
{
	struct http *h = t->data;
	int running;

	curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	collect(h);
}

static int on_socket(CURL *easy, curl_socket_t s, int action, void *userp, void *socketp)
{
	struct http *h = userp;
	struct sock_ctx *c = socketp;
	int events = 0;

	(void)easy;
	if (action == CURL_POLL_REMOVE) {
		if (c) {
			uv_poll_stop(&c->poll);
			curl_multi_assign(h->multi, s, NULL);
			uv_close((uv_handle_t *)&c->poll, handle_closed);
		}
		return 0;
	}
	if (h->closing)
		return -1;
	if (!c) {
		c = xcalloc(1, sizeof(*c));
		c->fd = s;
		c->h = h;
		if (uv_poll_init_socket(h->loop, &c->poll, s) < 0) {
			free(c);
			return -1;
		}
		c->poll.data = h;
		h->open_handles++;
		curl_multi_assign(h->multi, s, c);
	}
	if (action & CURL_POLL_IN)
		events |= UV_READABLE;
	if (action & CURL_POLL_OUT)
		events |= UV_WRITABLE;
	uv_poll_start(&c->poll, events, on_poll);
	return 0;
}

static int on_timer(CURLM *multi, long ms, void *userp)
{
	struct http *h = userp;

	(void)multi;
	if (ms < 0)
		uv_timer_stop(&h->timer);
	else
		uv_timer_start(&h->timer, on_timeout, (uint64_t)ms, 0);
	return 0;
}

int http_new(uv_loop_t *loop, struct http **out)
{
	struct http *h;
	int ret;

	*out = NULL;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return -EIO;
	h = xcalloc(1, sizeof(*h));
	h->loop = loop;
	h->multi = curl_multi_init();
	if (!h->multi) {
		free(h);
		return -ENOMEM;
	}
	ret = uv_timer_init(loop, &h->timer);
	if (ret < 0) {
		curl_multi_cleanup(h->multi);
		free(h);
		return ret;
	}
	h->timer.data = h;
	h->open_handles = 1;
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_timer);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
	*out = h;
	return 0;
}

void http_close(struct http *h)
{
	if (!h)
		return;
	while (h->xfers)
		xfer_free(h->xfers); /* REMOVE callbacks close their polls */
	h->closing = 1;
	uv_timer_stop(&h->timer);
	uv_close((uv_handle_t *)&h->timer, handle_closed);
}

void http_abort(struct http_xfer *x)
{
	if (x)
		xfer_free(x);
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *arg)
{
	struct http_xfer *x = arg;
	size_t n = size * nmemb;

	if (x->len + n > x->max) {
		x->truncated = 1;
		return 0; /* CURLE_WRITE_ERROR: the answer is over its bound */
	}
	if (x->len + n + 1 > x->cap) {
		size_t cap = x->cap ? x->cap : 4096;
		char *nb;

		while (cap < x->len + n + 1)
			cap *= 2;
		/* Not realloc: the old buffer (maybe a secret) is wiped. */
		nb = xmalloc(cap);
		if (x->buf)
			memcpy(nb, x->buf, x->len);
		wipe_free(x->buf, x->cap);
		x->buf = nb;
		x->cap = cap;
	}
	memcpy(x->buf + x->len, data, n);
	x->len += n;
	x->buf[x->len] = '\0';
	return n;
}

/* Retry-After: delta-seconds only (RFC 9110 10.2.3 also allows a date,
 * which the APIs we speak do not send: it reads as absent). */
static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	struct http_xfer *x = arg;
	size_t n = size * nmemb;
	static const char name[] = "retry-after:";

	if (n > sizeof(name) && strncasecmp(data, name, sizeof(name) - 1) == 0) {
		unsigned long v = 0;
		size_t i = sizeof(name) - 1;

		while (i < n && (data[i] == ' ' || data[i] == '\t'))
			i++;
		while (i < n && data[i] >= '0' && data[i] <= '9' && v <= HTTP_RETRY_AFTER_MAX_S)
			v = v * 10 + (unsigned long)(data[i++] - '0');
		x->retry_after_s =
			v > HTTP_RETRY_AFTER_MAX_S ? HTTP_RETRY_AFTER_MAX_S : (unsigned int)v;
	}
	return n;
}

void http_set_ca(struct http *h, const char *pem, size_t len)
{
	h->ca_pem = pem;
	h->ca_pem_len = pem ? len : 0;
}

int http_start(struct http *h, const struct http_request *req, http_done_fn *cb, void *arg,
	       struct http_xfer **out)
{
	struct http_xfer *x;
	struct curl_slist *s;

	*out = NULL;
	if (h->closing)
		return -ESHUTDOWN;
	x = xcalloc(1, sizeof(*x));
	x->h = h;
	x->max = req->max_answer;
	x->cb = cb;
	x->arg = arg;
	x->easy = curl_easy_init();
	if (!x->easy) {
		free(x);
		return -ENOMEM;
	}
	curl_easy_setopt(x->easy, CURLOPT_URL, req->url);
	curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
	curl_easy_setopt(x->easy, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(x->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(x->easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(x->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)HTTP_CONNECT_TIMEOUT_MS);
	curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, (long)req->timeout_ms);
	curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(x->easy, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(x->easy, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(x->easy, CURLOPT_USERAGENT, "tailscale-cni-supervisor");
	if (h->ca_pem) {
		struct curl_blob ca = {
			.data = (void *)h->ca_pem, .len = h->ca_pem_len, .flags = CURL_BLOB_COPY};

		curl_easy_setopt(x->easy, CURLOPT_CAINFO_BLOB, &ca);
	}
	curl_easy_setopt(x->easy, CURLOPT_CUSTOMREQUEST, req->method);
	if (strcmp(req->method, "GET") == 0)
		curl_easy_setopt(x->easy, CURLOPT_HTTPGET, 1L);
	s = curl_slist_append(NULL, "Accept: application/json");
	if (req->bearer) {
		char *line = xasprintf("Authorization: Bearer %s", req->bearer);

		s = s ? curl_slist_append(s, line) : NULL;
		sodium_memzero(line, strlen(line));
		free(line);
	}
	if (s && req->content_type) {
		char *line = xasprintf("Content-Type: %s", req->content_type);

		s = curl_slist_append(s, line);
		free(line);
	}
	x->headers = s;
	if (!s) {
		curl_easy_cleanup(x->easy);
		free(x);
		return -ENOMEM;
	}
	curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->headers);
	if (req->body) {
		x->req_len = strlen(req->body);
		x->req_body = xstrdup(req->body);
		curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE, (long)x->req_len);
		curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, x->req_body);
	}
	x->next = h->xfers;
	h->xfers = x;
	if (curl_multi_add_handle(h->multi, x->easy) != CURLM_OK) {
		xfer_free(x);
		return -EIO;
	}
	*out = x;
	return 0;
}
