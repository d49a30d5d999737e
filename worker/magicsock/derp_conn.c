/* See derp_conn.h. The life of one attempt:
 *
 *   dial (curl: TCP, TLS) ─► GET /derp ─► 101 ─► DERP frames ─► ... ─► down
 *     ▲                                                                  │
 *     └──────────────────────── backoff timer ◄──────────────────────────┘
 *
 * curl runs in CONNECT_ONLY mode on its own multi handle, driven from our
 * loop (its socket and timer callbacks become a uv_poll_t and a uv_timer_t),
 * so nothing blocks. Once curl has connected, the socket is watched by our
 * own uv_poll_t and bytes move through curl_easy_send / curl_easy_recv (TLS
 * stays curl's); the easy handle stays in the multi handle, as libcurl
 * requires of CONNECT_ONLY transfers.
 *
 * Callbacks into the caller run from read(); each may call derp_conn_send
 * or derp_conn_close, so after each one the connection re-checks whether it
 * is still alive (c->closing), and memory is freed only from the last
 * handle's close callback. */
#include "derp_conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <sodium.h>

#include "log.h"
#include "mem.h"
#include "tls_store.h"

enum {
	CSOCK_MAX = 4,
	/* One read: a TLS record's plaintext at most (16 KiB), which is what
	 * one read of TLS returns anyway; read_all loops until EAGAIN. Larger,
	 * bursts over plain TCP wrote (and so backed) all of it in every
	 * worker: 64 KiB of private memory each, measured. */
	RECV_CHUNK = 16 << 10,
	DIAL_TIMEOUT_MS = 10000,
	BACKOFF_STEP_MS = 10,
	BACKOFF_MAX_MS = 5000,
	BACKOFF_N_MAX = 23,	  /* 23² · 10 ms > BACKOFF_MAX_MS: no need to count on */
	BACKOFF_STABLE_MS = 2000, /* up this long: the next drop is a first failure */
	RESTART_MAX_MS = 60000,
	BAD_STREAK_RESET_MS = 30000,
	PEM_MAX = 16 << 10,
};

enum stage { ST_DIAL, ST_HTTP, ST_DERP, ST_BACKOFF };

struct csock {
	curl_socket_t fd;
	uv_poll_t *poll;
};

struct derp_conn {
	uv_loop_t *loop;
	char *host, *addr, *cert_name;
	uint16_t port;
	bool insecure, pinned, preferred;
	uint8_t pin[32];
	const uint8_t *ca_pem; /* borrowed (derp_conn_config) */
	size_t ca_pem_len;
	uint8_t node_priv[DERP_KEY_LEN];
	derp_conn_packet_fn *on_packet;
	derp_conn_event_fn *on_event;
	derp_conn_down_fn *on_down;
	void *arg;

	enum stage stage;
	CURLM *multi;
	CURL *easy;
	struct curl_slist *resolve;
	char errbuf[CURL_ERROR_SIZE];
	struct csock socks[CSOCK_MAX];
	size_t n_socks;
	uv_poll_t *poll; /* the connected socket, ours */
	int poll_events;
	uv_timer_t curl_timer, timer; /* timer: backoff, or the receive timeout */

	char req[512];
	size_t req_len, req_sent;
	char head[DERP_HTTP_MAX_HEAD];
	size_t head_len;
	uint8_t *rbuf; /* RECV_CHUNK bytes of scratch for reads */
	struct derp_client client;
	bool client_live, up;
	uint64_t up_at; /* when ServerInfo arrived (loop time) */
	/* failures: attempts in a row since a connection lasted
	 * BACKOFF_STABLE_MS; bad_streak: connections in a row the server's
	 * bytes ended (reset by one that lasted BAD_STREAK_RESET_MS). The
	 * backoff follows the larger. */
	unsigned int failures, bad_streak, restart_ms;

	bool closing;
	int handles_open;
	derp_conn_closed_fn *closed_cb;
	void *closed_arg;
};

static void on_poll_closed(uv_handle_t *h)
{
	free(h);
}

static void poll_close(uv_poll_t *p)
{
	if (!p)
		return;
	uv_poll_stop(p);
	uv_close((uv_handle_t *)p, on_poll_closed);
}

static void schedule(struct derp_conn *c, unsigned int ms);

/* Ends the current attempt: everything of it is freed and a new one is
 * scheduled. */
static void attempt_end(struct derp_conn *c)
{
	for (size_t i = 0; i < c->n_socks; i++)
		poll_close(c->socks[i].poll);
	c->n_socks = 0;
	poll_close(c->poll);
	c->poll = NULL;
	c->poll_events = 0;
	if (c->easy) {
		curl_multi_remove_handle(c->multi, c->easy);
		curl_easy_cleanup(c->easy);
		c->easy = NULL;
	}
	curl_slist_free_all(c->resolve);
	c->resolve = NULL;
	if (c->client_live)
		derp_client_destroy(&c->client);
	c->client_live = false;
	c->up = false;
	uv_timer_stop(&c->curl_timer);
	uv_timer_stop(&c->timer);
}

/* The wait before the next dial after `failures` failed attempts in a row
 * (0: the first since a connection lasted), as upstream's DERP client
 * backs off (docs/tailscale-protocol.md §6): min(n² · 10 ms, 5 s) for the
 * n-th failure, times a factor in [0.5, 1.5) so that the pods of a node do
 * not all dial at once. A connection that drops is redialled within 15 ms,
 * and a server back from a restart is found within 7.5 s at worst. rnd: a
 * uniform number below 1000. */
static unsigned int backoff_ms(unsigned int failures, uint32_t rnd)
{
	unsigned int n = failures < BACKOFF_N_MAX ? failures + 1 : BACKOFF_N_MAX;
	unsigned int ms = n * n * BACKOFF_STEP_MS;

	if (ms > BACKOFF_MAX_MS)
		ms = BACKOFF_MAX_MS;
	return ms / 2 + (unsigned int)((uint64_t)ms * (rnd % 1000) / 1000);
}

/* The wait before the next attempt, the current one having ended with err
 * at now (loop time; called before attempt_end, while c->up still says
 * whether it had reached ServerInfo). A server that greets us and then
 * sends bytes we refuse backs off like one that cannot be reached: its
 * streak ends only with a connection that lasted BAD_STREAK_RESET_MS. */
static unsigned int retry_ms(struct derp_conn *c, int err, uint64_t now)
{
	unsigned int ms, n;

	if (c->up && now - c->up_at >= BACKOFF_STABLE_MS)
		c->failures = 0;
	if (c->up && now - c->up_at >= BAD_STREAK_RESET_MS)
		c->bad_streak = 0;
	if (derp_conn_err_is_bad_server(err) && c->bad_streak < BACKOFF_N_MAX)
		c->bad_streak++;
	if (c->restart_ms) {
		ms = c->restart_ms; /* the server said when to come back */
		c->restart_ms = 0;
		return ms;
	}
	n = c->failures > c->bad_streak ? c->failures : c->bad_streak;
	ms = backoff_ms(n, randombytes_uniform(1000));
	if (c->failures < BACKOFF_N_MAX)
		c->failures++;
	return ms;
}

static void conn_down(struct derp_conn *c, int err, const char *why)
{
	unsigned int ms;

	if (c->closing)
		return;
	ms = retry_ms(c, err, uv_now(c->loop));
	attempt_end(c);
	log_debug("DERP %s: down (%s), retry in %u ms", c->host, why, ms);
	schedule(c, ms);
	if (c->on_down)
		c->on_down(c->arg, err, why, ms);
}

/* ---- curl multi on the loop ---- */

static void check_multi(struct derp_conn *c);

static void on_curl_poll(uv_poll_t *h, int status, int events)
{
	struct derp_conn *c = h->data;
	int flags = status < 0 ? CURL_CSELECT_ERR : 0, running;

	flags |= (events & UV_READABLE) ? CURL_CSELECT_IN : 0;
	flags |= (events & UV_WRITABLE) ? CURL_CSELECT_OUT : 0;
	for (size_t i = 0; i < c->n_socks; i++) {
		if (c->socks[i].poll == h) {
			curl_multi_socket_action(c->multi, c->socks[i].fd, flags, &running);
			break;
		}
	}
	check_multi(c);
}

static int curl_sock_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct derp_conn *c = userp;
	struct csock *s = NULL;
	int events = 0;

	(void)e;
	(void)socketp;
	for (size_t i = 0; i < c->n_socks; i++)
		if (c->socks[i].fd == fd)
			s = &c->socks[i];
	if (what == CURL_POLL_REMOVE) {
		if (s) {
			poll_close(s->poll);
			*s = c->socks[--c->n_socks];
		}
		return 0;
	}
	if (!s) {
		if (c->n_socks == CSOCK_MAX)
			return -1;
		s = &c->socks[c->n_socks];
		s->fd = fd;
		s->poll = xcalloc(1, sizeof(*s->poll));
		if (uv_poll_init_socket(c->loop, s->poll, fd) < 0) {
			free(s->poll);
			return -1;
		}
		s->poll->data = c;
		c->n_socks++;
	}
	events |= (what & CURL_POLL_IN) ? UV_READABLE : 0;
	events |= (what & CURL_POLL_OUT) ? UV_WRITABLE : 0;
	uv_poll_start(s->poll, events, on_curl_poll);
	return 0;
}

static void on_curl_timer(uv_timer_t *t)
{
	struct derp_conn *c = t->data;
	int running;

	curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_multi(c);
}

static int curl_timer_cb(CURLM *m, long ms, void *userp)
{
	struct derp_conn *c = userp;

	(void)m;
	if (ms < 0)
		uv_timer_stop(&c->curl_timer);
	else
		uv_timer_start(&c->curl_timer, on_curl_timer, (uint64_t)ms, 0);
	return 0;
}

/* ---- the connected socket ---- */

static void on_sock(uv_poll_t *h, int status, int events);

static void update_poll(struct derp_conn *c)
{
	const uint8_t *out;
	int ev = UV_READABLE;

	if (!c->poll)
		return;
	if (c->req_sent < c->req_len ||
	    (c->stage == ST_DERP && derp_client_pending(&c->client, &out)))
		ev |= UV_WRITABLE;
	if (ev != c->poll_events) {
		c->poll_events = ev;
		uv_poll_start(c->poll, ev, on_sock);
	}
}

/* Sends what is queued: the HTTP request, then DERP frames. */
static int flush(struct derp_conn *c)
{
	for (;;) {
		const uint8_t *p;
		size_t len, sent = 0;
		CURLcode rc;

		if (c->req_sent < c->req_len) {
			p = (const uint8_t *)c->req + c->req_sent;
			len = c->req_len - c->req_sent;
		} else if (c->stage == ST_DERP) {
			len = derp_client_pending(&c->client, &p);
		} else {
			len = 0;
		}
		if (!len)
			break;
		rc = curl_easy_send(c->easy, p, len, &sent);
		if (rc == CURLE_AGAIN)
			break;
		if (rc != CURLE_OK)
			return -EPIPE;
		if (c->req_sent < c->req_len)
			c->req_sent += sent;
		else
			derp_client_sent(&c->client, sent);
	}
	update_poll(c);
	return 0;
}

static void on_rx_timeout(uv_timer_t *t)
{
	conn_down(t->data, -ETIMEDOUT, "nothing received from the DERP server");
}

/* Hands out every event the received bytes make. < 0 ends the attempt. */
static int deliver(struct derp_conn *c, const char **why)
{
	struct derp_event ev;
	int ret = 0;

	while (!c->closing && (ret = derp_client_next(&c->client, &ev, why)) > 0) {
		if (ev.type == DERP_EV_SERVER_KEY && c->preferred) {
			/* As upstream's derphttp client: tell the home region
			 * right after ClientInfo. */
			if (derp_client_note_preferred(&c->client, true) < 0)
				return -ENOBUFS;
		} else if (ev.type == DERP_EV_SERVER_INFO) {
			c->up = true;
			c->up_at = uv_now(c->loop);
			log_info("DERP %s: connected", c->host);
		} else if (ev.type == DERP_EV_RESTARTING) {
			c->restart_ms = ev.reconnect_in_ms < RESTART_MAX_MS ? ev.reconnect_in_ms
									    : RESTART_MAX_MS;
		}
		if (ev.type == DERP_EV_PACKET && c->on_packet)
			c->on_packet(c->arg, ev.key, ev.data, ev.len);
		else if (ev.type != DERP_EV_PACKET && c->on_event)
			c->on_event(c->arg, &ev);
	}
	return c->closing ? 0 : ret;
}

/* The HTTP answer: once its head is complete, the rest is DERP. */
static int http_input(struct derp_conn *c, const uint8_t *p, size_t n, const char **why)
{
	struct derp_http_reply r;
	size_t take = sizeof(c->head) - c->head_len < n ? sizeof(c->head) - c->head_len : n;
	ssize_t head;

	memcpy(c->head + c->head_len, p, take);
	c->head_len += take;
	head = derp_http_parse_reply(c->head, c->head_len, &r, why);
	if (head <= 0)
		return (int)head;
	c->stage = ST_DERP;
	/* What followed the head in this read, then the rest of the read. */
	if (derp_client_feed(&c->client, (const uint8_t *)c->head + head,
			     c->head_len - (size_t)head) < 0 ||
	    derp_client_feed(&c->client, p + take, n - take) < 0) {
		*why = "DERP receive buffer full";
		return -ENOBUFS;
	}
	return deliver(c, why);
}

static void read_all(struct derp_conn *c)
{
	uint8_t *buf = c->rbuf;
	const char *why = "DERP read failed";
	int ret = 0;

	while (!c->closing && ret == 0) {
		size_t n = 0;
		CURLcode rc = curl_easy_recv(c->easy, buf, RECV_CHUNK, &n);

		if (rc == CURLE_AGAIN)
			break;
		if (rc != CURLE_OK || n == 0) {
			ret = -ECONNRESET;
			why = rc == CURLE_OK ? "DERP server closed the connection" : why;
			break;
		}
		uv_timer_start(&c->timer, on_rx_timeout, DERP_RECV_TIMEOUT_MS, 0);
		if (c->stage == ST_HTTP) {
			ret = http_input(c, buf, n, &why);
		} else if (derp_client_feed(&c->client, buf, n) < 0) {
			why = "DERP receive buffer full";
			ret = -ENOBUFS;
		} else {
			ret = deliver(c, &why);
		}
	}
	if (c->closing)
		return;
	if (ret < 0 || (ret = flush(c)) < 0)
		conn_down(c, ret, why);
}

static void on_sock(uv_poll_t *h, int status, int events)
{
	struct derp_conn *c = h->data;

	if (status < 0) {
		conn_down(c, status, "DERP socket error");
		return;
	}
	if (events & UV_READABLE) {
		read_all(c);
		return;
	}
	if (flush(c) < 0)
		conn_down(c, -EPIPE, "DERP send failed");
}

/* The SHA-256 of the leaf certificate's DER, from curl's PEM text of it. */
static int leaf_sha256(struct derp_conn *c, uint8_t out[static 32])
{
	struct curl_certinfo *ci = NULL;
	const char *pem = NULL, *b, *e;
	uint8_t *der;
	size_t der_len = 0;
	int ret = -EBADMSG;

	if (curl_easy_getinfo(c->easy, CURLINFO_CERTINFO, &ci) != CURLE_OK || !ci ||
	    ci->num_of_certs < 1)
		return -EBADMSG;
	for (struct curl_slist *l = ci->certinfo[0]; l; l = l->next)
		if (!strncmp(l->data, "Cert:", 5))
			pem = l->data + 5;
	if (!pem || !(b = strstr(pem, "-----BEGIN CERTIFICATE-----")) ||
	    !(e = strstr(b, "-----END CERTIFICATE-----")))
		return -EBADMSG;
	b += strlen("-----BEGIN CERTIFICATE-----");
	if ((size_t)(e - b) > PEM_MAX)
		return -EBADMSG;
	der = xmalloc(PEM_MAX);
	if (sodium_base642bin(der, PEM_MAX, b, (size_t)(e - b), "\r\n", &der_len, NULL,
			      sodium_base64_VARIANT_ORIGINAL) == 0) {
		crypto_hash_sha256(out, der, der_len);
		ret = 0;
	}
	free(der);
	return ret;
}

/* curl has connected (TCP and TLS): take the socket, check a pinned
 * certificate, send the upgrade request. */
static int connected(struct derp_conn *c, const char **why)
{
	curl_socket_t fd = CURL_SOCKET_BAD;
	uint8_t sum[32];
	ssize_t n;
	int ret;

	if (c->pinned && (leaf_sha256(c, sum) < 0 || sodium_memcmp(sum, c->pin, 32) != 0)) {
		*why = "DERP server certificate does not match its CertName pin";
		return -EPERM;
	}
	if (curl_easy_getinfo(c->easy, CURLINFO_ACTIVESOCKET, &fd) != CURLE_OK ||
	    fd == CURL_SOCKET_BAD) {
		*why = "connected socket unavailable";
		return -EIO;
	}
	for (size_t i = 0; i < c->n_socks; i++) {
		if (c->socks[i].fd == fd) {
			c->poll = c->socks[i].poll;
			c->socks[i] = c->socks[--c->n_socks];
		}
	}
	if (!c->poll) {
		c->poll = xcalloc(1, sizeof(*c->poll));
		if (uv_poll_init_socket(c->loop, c->poll, fd) < 0) {
			free(c->poll);
			c->poll = NULL;
			*why = "cannot watch the DERP socket";
			return -EIO;
		}
	}
	c->poll->data = c;
	c->poll_events = 0;
	uv_poll_stop(c->poll);
	ret = derp_client_init(&c->client, c->node_priv, NULL, NULL);
	if (ret < 0) {
		*why = "bad node key";
		return ret;
	}
	c->client_live = true;
	n = derp_http_request(c->req, sizeof(c->req), c->host, false);
	if (n < 0) {
		*why = "bad DERP host name";
		return (int)n;
	}
	c->req_len = (size_t)n;
	c->req_sent = 0;
	c->head_len = 0;
	c->stage = ST_HTTP;
	uv_timer_start(&c->timer, on_rx_timeout, DERP_RECV_TIMEOUT_MS, 0);
	return flush(c);
}

/* A failed dial as an errno: certificates refused are -EPERM, as a pin
 * that does not match. */
static int dial_error(CURLcode rc)
{
	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
		return -EPERM;
	default:
		return -ECONNREFUSED;
	}
}

static void check_multi(struct derp_conn *c)
{
	CURLMsg *m;
	int left;

	while (!c->closing && c->stage == ST_DIAL && (m = curl_multi_info_read(c->multi, &left))) {
		const char *why = c->errbuf[0] ? c->errbuf : "DERP dial failed";
		int ret;

		if (m->msg != CURLMSG_DONE)
			continue;
		if (m->data.result != CURLE_OK) {
			conn_down(c, dial_error(m->data.result), why);
			return;
		}
		ret = connected(c, &why);
		if (ret < 0) {
			conn_down(c, ret, why);
			return;
		}
	}
}

/* ---- dialling ---- */

static int dial(struct derp_conn *c)
{
	char *url, *line;
	/* The name the certificate must carry: CertName when it names one. */
	const char *tls_name = c->cert_name && !c->pinned ? c->cert_name : c->host;
	bool v6 = c->addr && strchr(c->addr, ':');

	c->easy = curl_easy_init();
	if (!c->easy)
		return -ENOMEM;
	c->errbuf[0] = '\0';
	url = xasprintf("https://%s:%u/", tls_name, c->port);
	curl_easy_setopt(c->easy, CURLOPT_URL, url);
	free(url);
	if (c->addr) {
		line = xasprintf("%s:%u:%s%s%s", tls_name, c->port, v6 ? "[" : "", c->addr,
				 v6 ? "]" : "");
		c->resolve = curl_slist_append(NULL, line);
		free(line);
		if (!c->resolve)
			return -ENOMEM;
		curl_easy_setopt(c->easy, CURLOPT_RESOLVE, c->resolve);
	}
	curl_easy_setopt(c->easy, CURLOPT_CONNECT_ONLY, 1L);
	curl_easy_setopt(c->easy, CURLOPT_ERRORBUFFER, c->errbuf);
	curl_easy_setopt(c->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)DIAL_TIMEOUT_MS);
	curl_easy_setopt(c->easy, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(c->easy, CURLOPT_PROXY, "");
	/* HTTP/1.1 only: the upgrade needs it. */
	curl_easy_setopt(c->easy, CURLOPT_SSL_ENABLE_ALPN, 0L);
	/* No file is read in the sandbox: no compiled-in CA paths. */
	curl_easy_setopt(c->easy, CURLOPT_CAINFO, NULL);
	curl_easy_setopt(c->easy, CURLOPT_CAPATH, NULL);
	if (c->insecure || c->pinned) {
		/* A pin replaces the chain check; it is checked on connect. */
		curl_easy_setopt(c->easy, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(c->easy, CURLOPT_SSL_VERIFYHOST, 0L);
		curl_easy_setopt(c->easy, CURLOPT_CERTINFO, c->pinned ? 1L : 0L);
	} else {
		/* The zygote's parsed store, or the bundle not copied
		 * (c->ca_pem outlives the conn). */
		tls_store_curl(c->easy, (const char *)c->ca_pem, c->ca_pem_len);
		curl_easy_setopt(c->easy, CURLOPT_SSL_VERIFYPEER, 1L);
		curl_easy_setopt(c->easy, CURLOPT_SSL_VERIFYHOST, 2L);
	}
	c->stage = ST_DIAL;
	if (curl_multi_add_handle(c->multi, c->easy) != CURLM_OK)
		return -EIO;
	return 0;
}

static void on_backoff(uv_timer_t *t)
{
	struct derp_conn *c = t->data;
	int ret = dial(c);

	if (ret < 0)
		conn_down(c, ret, "cannot start the DERP dial");
}

static void schedule(struct derp_conn *c, unsigned int ms)
{
	c->stage = ST_BACKOFF;
	uv_timer_start(&c->timer, on_backoff, ms, 0);
}

/* ---- the public side ---- */

static void conn_free(struct derp_conn *c)
{
	sodium_memzero(c->node_priv, sizeof(c->node_priv));
	if (c->multi)
		curl_multi_cleanup(c->multi);
	free(c->host);
	free(c->addr);
	free(c->cert_name);
	free(c->rbuf);
	free(c);
}

static int parse_config(struct derp_conn *c, const struct derp_conn_config *cfg, const char **why)
{
	if (!cfg->host || !cfg->host[0] || !cfg->node_priv) {
		*why = "DERP node without host or node key";
		return -EINVAL;
	}
	if (cfg->cert_name && !strncmp(cfg->cert_name, "sha256-raw:", 11)) {
		size_t got = 0;
		const char *hex = cfg->cert_name + 11;

		if (strlen(hex) != 64 ||
		    sodium_hex2bin(c->pin, 32, hex, 64, NULL, &got, NULL) != 0 || got != 32) {
			*why = "CertName sha256-raw: wants 64 hex digits";
			return -EINVAL;
		}
		c->pinned = true;
	}
	c->host = xstrdup(cfg->host);
	c->addr = cfg->addr && cfg->addr[0] ? xstrdup(cfg->addr) : NULL;
	c->cert_name = cfg->cert_name && cfg->cert_name[0] ? xstrdup(cfg->cert_name) : NULL;
	c->port = cfg->port ? cfg->port : 443;
	c->insecure = cfg->insecure_for_tests;
	c->ca_pem = cfg->ca_pem_len ? cfg->ca_pem : NULL; /* borrowed */
	c->ca_pem_len = c->ca_pem ? cfg->ca_pem_len : 0;
	memcpy(c->node_priv, cfg->node_priv, DERP_KEY_LEN);
	c->preferred = cfg->preferred;
	c->on_packet = cfg->on_packet;
	c->on_event = cfg->on_event;
	c->on_down = cfg->on_down;
	c->arg = cfg->arg;
	return 0;
}

int derp_conn_new(uv_loop_t *loop, const struct derp_conn_config *cfg, struct derp_conn **out,
		  const char **why)
{
	struct derp_conn *c = xcalloc(1, sizeof(*c));
	int ret;

	*out = NULL;
	c->loop = loop;
	c->rbuf = xmalloc(RECV_CHUNK);
	ret = parse_config(c, cfg, why);
	if (ret < 0)
		goto err;
	c->multi = curl_multi_init();
	if (!c->multi)
		abort();
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, curl_sock_cb);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
	uv_timer_init(loop, &c->curl_timer);
	uv_timer_init(loop, &c->timer);
	c->curl_timer.data = c->timer.data = c;
	c->handles_open = 2;
	schedule(c, 0);
	*out = c;
	return 0;
err:
	conn_free(c);
	return ret;
}

int derp_conn_send(struct derp_conn *c, const uint8_t dst[static DERP_KEY_LEN], const uint8_t *pkt,
		   size_t len)
{
	int ret;

	if (c->closing || c->stage != ST_DERP)
		return -ENOTCONN;
	ret = derp_client_send_packet(&c->client, uv_now(c->loop), dst, pkt, len);
	if (ret == 0)
		update_poll(c);
	return ret;
}

void derp_conn_set_preferred(struct derp_conn *c, bool preferred)
{
	c->preferred = preferred;
	if (!c->closing && c->stage == ST_DERP &&
	    derp_client_note_preferred(&c->client, preferred) == 0)
		update_poll(c);
}

bool derp_conn_is_up(const struct derp_conn *c)
{
	return !c->closing && c->up;
}

static void on_handle_closed(uv_handle_t *h)
{
	struct derp_conn *c = h->data;

	if (--c->handles_open == 0) {
		derp_conn_closed_fn *cb = c->closed_cb;
		void *arg = c->closed_arg;

		conn_free(c);
		if (cb)
			cb(arg);
	}
}

void derp_conn_close(struct derp_conn *c, derp_conn_closed_fn *cb, void *arg)
{
	if (!c || c->closing)
		return;
	attempt_end(c);
	c->closing = true;
	c->closed_cb = cb;
	c->closed_arg = arg;
	uv_close((uv_handle_t *)&c->curl_timer, on_handle_closed);
	uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}
