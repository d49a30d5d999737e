/* curl multi driven on the client's libuv loop: curl's sockets are
 * watched with uv_poll_t (CURLMOPT_SOCKETFUNCTION) and its timeouts with a
 * uv_timer_t (CURLMOPT_TIMERFUNCTION). curl does the TCP connect to an
 * address we resolved, the HTTP CONNECT through a proxy and TLS; when a
 * connect finishes, conn.c takes the socket over (client__curl_take_poll)
 * and moves the bytes itself with curl_easy_send / curl_easy_recv, the easy
 * handle staying in the multi handle, as libcurl requires. */
#include "client_internal.h"

#include <errno.h>

static void on_poll_closed(uv_handle_t *h)
{
	free(h);
}

void client__close_poll(uv_poll_t *p)
{
	uv_poll_stop(p);
	uv_close((uv_handle_t *)p, on_poll_closed);
}

static struct csock *csock_find(struct client *c, curl_socket_t fd)
{
	size_t i;

	for (i = 0; i < c->curl.n_socks; i++)
		if (c->curl.socks[i].fd == fd)
			return &c->curl.socks[i];
	return NULL;
}

static void csock_drop(struct client *c, struct csock *s)
{
	*s = c->curl.socks[--c->curl.n_socks];
}

static void check_multi(struct client *c)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(c->curl.multi, &left))) {
		struct conn *n = NULL;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&n);
		if (!n || n->stage != ST_CONNECT)
			continue;
		if (m->data.result == CURLE_OK) {
			client__conn_connected(n);
		} else {
			client__conn_error(
				n,
				m->data.result == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT
									   : -ECONNREFUSED,
				"%s: connect to %s port %u failed: %s", client__conn_name(n),
				c->srv.host, n->port,
				n->errbuf[0] ? n->errbuf : curl_easy_strerror(m->data.result));
		}
	}
}

static void on_curl_poll(uv_poll_t *h, int status, int events)
{
	struct client *c = h->data;
	int flags = 0, running;
	size_t i;

	for (i = 0; i < c->curl.n_socks; i++) {
		if (c->curl.socks[i].poll != h)
			continue;
		if (status < 0)
			flags = CURL_CSELECT_ERR;
		if (events & UV_READABLE)
			flags |= CURL_CSELECT_IN;
		if (events & UV_WRITABLE)
			flags |= CURL_CSELECT_OUT;
		curl_multi_socket_action(c->curl.multi, c->curl.socks[i].fd, flags, &running);
		break;
	}
	check_multi(c);
	client__settle(c);
}

static int curl_sock_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct client *c = userp;
	struct csock *s = csock_find(c, fd);
	int events = 0;

	if (what == CURL_POLL_REMOVE) {
		if (s) {
			client__close_poll(s->poll);
			csock_drop(c, s);
		}
		return 0;
	}
	if (!s) {
		if (c->curl.n_socks == MAX_SOCKS)
			return -1;
		s = &c->curl.socks[c->curl.n_socks];
		s->fd = fd;
		s->poll = xcalloc(1, sizeof(*s->poll));
		if (uv_poll_init_socket(c->loop, s->poll, fd) < 0) {
			free(s->poll);
			return -1;
		}
		s->poll->data = c;
		c->curl.n_socks++;
	}
	if (what & CURL_POLL_IN)
		events |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		events |= UV_WRITABLE;
	uv_poll_start(s->poll, events, on_curl_poll);
	return 0;
}

static void on_curl_timeout(uv_timer_t *t)
{
	struct client *c = t->data;
	int running;

	curl_multi_socket_action(c->curl.multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_multi(c);
	client__settle(c);
}

static int curl_timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	struct client *c = userp;

	if (timeout_ms < 0)
		uv_timer_stop(&c->curl.timer);
	else
		uv_timer_start(&c->curl.timer, on_curl_timeout, (uint64_t)timeout_ms, 0);
	return 0;
}

uv_poll_t *client__curl_take_poll(struct client *c, curl_socket_t fd)
{
	struct csock *s = csock_find(c, fd);
	uv_poll_t *p;

	if (!s)
		return NULL;
	p = s->poll;
	csock_drop(c, s);
	return p;
}

void client__curl_init(struct client *c)
{
	c->curl.multi = curl_multi_init();
	if (!c->curl.multi)
		abort();
	curl_multi_setopt(c->curl.multi, CURLMOPT_SOCKETFUNCTION, curl_sock_cb);
	curl_multi_setopt(c->curl.multi, CURLMOPT_SOCKETDATA, c);
	curl_multi_setopt(c->curl.multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb);
	curl_multi_setopt(c->curl.multi, CURLMOPT_TIMERDATA, c);
}

void client__curl_close(struct client *c)
{
	size_t i;

	curl_multi_cleanup(c->curl.multi);
	c->curl.multi = NULL;
	for (i = 0; i < c->curl.n_socks; i++)
		client__close_poll(c->curl.socks[i].poll);
	c->curl.n_socks = 0;
}
