/* See control.h. The shape of it:
 *
 *   start ─► resolve names ─► GET /key (unless cached) ─► dial race ─► register
 *     ▲        (caller's cb)     (CONN_KEY)                 plain 80 │ TLS 443
 *     │                                                  (CONN_NOISE, the first
 *     │                                                  to finish Noise wins)
 *     │                                                            │
 *   backoff ◄── any failure ◄── map stream + lite updates ◄────────┘
 *
 * Every libuv callback ends in settle(), the one place where the state
 * machine moves on: I/O callbacks only record what happened (a connection
 * finished its handshake, failed, a response arrived) so that nothing is
 * freed under a caller's feet — nghttp2 and curl callbacks run deep inside
 * their libraries. settle() then frees dead connections, starts the next
 * step, or tears everything down and schedules a reconnect.
 *
 * Connections: libcurl in CONNECT_ONLY mode, driven by curl multi on our
 * loop (CURLMOPT_SOCKETFUNCTION / TIMERFUNCTION into uv_poll / uv_timer).
 * curl does the TCP connect to an address we resolved (CURLOPT_RESOLVE, so
 * its resolver never runs), the HTTP CONNECT through a proxy and TLS with
 * the CA from memory (CURLOPT_CAINFO_BLOB). Once connected the socket is
 * ours: a uv_poll_t watches it and curl_easy_send / curl_easy_recv move the
 * bytes; the easy handle stays in the multi handle, as libcurl requires. */
#include "control.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>
#include <nghttp2/nghttp2.h>
#include <sodium.h>

#include "capver.h"
#include "hash.h"
#include "log.h"
#include "mapjson.h"
#include "mapstream.h"
#include "mem.h"
#include "ts2021.h"

enum {
	HOST_MAX = 256,
	MSG_MAX = 320,
	MAX_SOCKS = 16,
	MAX_REQS = 8,
	RECV_CHUNK = 16384,
	LOGOUT_EXPIRY = 123, /* Unix time tailscaled sends to log out */
	RETRY_AFTER_MAX_S = 3600,
	H2_WINDOW = 4 << 20,
	PING_URL_MAX = 1024,
	SLOT_CONTROL = 0,
	SLOT_PROXY = 1,
	N_SLOTS = 2,
};

static const char upgrade_proto[] = "tailscale-control-protocol";
static const char c2n_not_found[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";

struct sbuf {
	uint8_t *p;
	size_t len, cap;
};

/* Room for n more bytes at b->p + b->len. */
static void sbuf_reserve(struct sbuf *b, size_t n)
{
	size_t cap = b->cap ? b->cap : 1024;

	if (b->len + n <= b->cap)
		return;
	while (cap < b->len + n)
		cap *= 2;
	b->p = xrealloc(b->p, cap);
	b->cap = cap;
}

static void sbuf_add(struct sbuf *b, const void *p, size_t n)
{
	if (!n)
		return;
	sbuf_reserve(b, n);
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void sbuf_consume(struct sbuf *b, size_t n)
{
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
}

static void sbuf_free(struct sbuf *b)
{
	free(b->p);
	*b = (struct sbuf){0};
}

enum conn_kind { CONN_KEY, CONN_NOISE };

enum conn_stage {
	ST_CONNECT,   /* curl is connecting (TCP, proxy CONNECT, TLS) */
	ST_HTTP,      /* our HTTP/1.1 request is out; reading the answer */
	ST_HANDSHAKE, /* 101 seen; waiting for the Noise response */
	ST_OPEN,      /* Noise records carrying HTTP/2 */
	ST_DONE,      /* CONN_KEY: the key was read */
};

enum req_kind { REQ_REGISTER, REQ_LOGOUT, REQ_STREAM, REQ_LITE, REQ_PING };

struct conn;

/* One HTTP/2 request inside the Noise connection. */
struct h2req {
	struct conn *conn;
	enum req_kind kind;
	int32_t id;
	uint8_t *body;
	size_t body_len, body_off;
	int status;
	struct sbuf resp; /* register / logout / error bodies, capped */
	long retry_after; /* seconds from Retry-After, -1 when absent */
	bool closed;
};

struct conn {
	struct control *c;
	enum conn_kind kind;
	bool tls;
	uint16_t port;
	CURL *easy;
	char errbuf[CURL_ERROR_SIZE];
	struct curl_slist *resolve_list;
	curl_socket_t fd;
	uv_poll_t *poll;
	int poll_events;
	enum conn_stage stage;
	struct sbuf in;
	struct sbuf out;
	bool head_done;
	size_t head_len;
	struct control_http_head head;
	struct ts2021_client hs;
	bool hs_live;
	struct ts2021_conn nc;
	struct ts2021_reader rd;
	struct ts2021_early early;
	bool early_done;
	nghttp2_session *h2;
	bool in_recv; /* inside nghttp2_session_mem_recv: no mem_send now */
	struct h2req *reqs[MAX_REQS];
	bool dead;
	int err;
	char msg[MSG_MAX];
};

struct csock {
	curl_socket_t fd;
	uv_poll_t *poll;
};

struct control_resolve {
	struct control *c; /* NULL once the control client is gone */
	int slot;
};

struct rcache {
	char host[HOST_MAX];
	uint16_t port; /* the port curl connects to for this name */
	bool literal;
	struct sockaddr_storage addrs[CONTROL_RESOLVE_MAX_ADDRS];
	size_t n;
	unsigned long long fetched_ms; /* 0: never */
	int last_err;
};

enum phase {
	PH_IDLE,
	PH_RESOLVE,
	PH_KEY,
	PH_DIAL,
	PH_REGISTER,
	PH_RUNNING,
	PH_BACKOFF,
	PH_FATAL,
	PH_LOGGED_OUT,
};

struct control {
	uv_loop_t *loop;
	bool https;
	char host[HOST_MAX];
	uint16_t url_port;
	uint16_t plain_port, tls_port; /* 0: no such attempt */
	char *ca_pem;
	size_t ca_pem_len;
	uint8_t machine_priv[KEY_LEN];
	uint8_t node_priv[KEY_LEN];
	uint8_t node_pub[KEY_LEN];
	uint8_t nl_pub[KEY_LEN];
	uint8_t disco_pub[KEY_LEN];
	char *auth_key;
	char *hostname;
	char **tags;
	size_t n_tags;
	bool ephemeral;
	char log_id[2 * HASH_LEN + 1];
	char *os_version;
	char *http_proxy, *https_proxy, *no_proxy;
	control_resolve_fn *resolve;
	void *resolve_arg;
	control_netmap_fn *on_netmap;
	control_addresses_fn *on_self_addresses;
	control_state_fn *on_state;
	void *cb_arg;
	unsigned int dial_timeout_ms, request_timeout_ms, watchdog_ms, backoff_max_ms;
	unsigned int test_flags;
	int capver;

	CURLM *multi;
	struct csock socks[MAX_SOCKS];
	size_t n_socks;
	uv_timer_t curl_timer, fallback_timer, deadline_timer, watchdog_timer, backoff_timer,
		lite_timer;
	int handles_open;
	bool closing;
	control_closed_fn *closed_cb;
	void *closed_arg;

	struct rcache cache[N_SLOTS];
	bool use_proxy[2]; /* [tls]: whether that kind of attempt goes through a proxy */
	struct control_resolve *resolving[N_SLOTS];

	enum phase phase;
	bool started;
	bool have_server_key;
	uint8_t server_pub[KEY_LEN];
	struct conn *key_conn;
	struct conn *plain, *tls, *noise;
	bool plain_failed, tls_failed;
	int race_err;
	char race_msg[MSG_MAX];
	int race_rank;
	unsigned int attempts;
	uint64_t retry_after_ms; /* a 429's Retry-After for the next backoff */
	const char *deadline_what;

	bool fail_pending, fail_fatal, fail_refetch_key;
	int fail_err;
	char fail_msg[MSG_MAX];

	bool registered; /* control accepted this node key (this process) */
	bool sent_auth;	 /* the register in flight carries the auth key */
	bool logout_wanted;

	struct mapstream ms;
	struct h2req *stream;
	bool stream_fresh; /* no message applied yet on this stream */
	struct netmap *nm;
	struct ip_prefix self_addrs[NETMAP_MAX_ADDRESSES];
	size_t n_self_addrs;
	bool have_self_addrs;

	struct h2req *lite;
	bool lite_dirty, lite_ok;
	unsigned int lite_attempts;

	struct netmap_endpoint eps[CONTROL_MAX_ENDPOINTS];
	int ep_types[CONTROL_MAX_ENDPOINTS];
	size_t n_eps;
	int preferred_derp;

	enum control_status status;
	bool status_sent;
	char last_ping_url[PING_URL_MAX];
};

static void settle(struct control *c);
static void on_deadline(uv_timer_t *t);
static void on_watchdog(uv_timer_t *t);
static void conn_free(struct conn *n);
static void conn_update_poll(struct conn *n);
static void h2_flush(struct conn *n);
static void conn_flush(struct conn *n);

int control_capver(void)
{
	return capver_claim();
}

/* ---- failures ---- */

static void conn_error(struct conn *n, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void conn_error(struct conn *n, int err, const char *fmt, ...)
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

/* Records the failure of the whole attempt; the first one wins (a fatal one
 * replaces a transient one). settle() acts on it. */
static void fail(struct control *c, bool fatal, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void fail(struct control *c, bool fatal, int err, const char *fmt, ...)
{
	va_list ap;

	if (c->fail_pending && (c->fail_fatal || !fatal))
		return;
	c->fail_pending = true;
	c->fail_fatal = fatal;
	c->fail_err = err;
	va_start(ap, fmt);
	vsnprintf(c->fail_msg, sizeof(c->fail_msg), fmt, ap);
	va_end(ap);
}

static void set_status(struct control *c, enum control_status st, int err, const char *msg)
{
	if (c->status_sent && c->status == st && st == CONTROL_UP)
		return;
	c->status = st;
	c->status_sent = true;
	if (c->on_state)
		c->on_state(c->cb_arg, st, err, msg);
}

/* ---- HTTP/1.1 parsing (outside bytes) ---- */

static bool token_eq(const char *a, size_t alen, const char *b)
{
	return alen == strlen(b) && !strncasecmp(a, b, alen);
}

/* Whether the comma-separated header value v (vlen) holds token t. */
static bool value_has_token(const char *v, size_t vlen, const char *t)
{
	size_t i = 0;

	while (i < vlen) {
		size_t s, e;

		while (i < vlen && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		s = i;
		while (i < vlen && v[i] != ',')
			i++;
		e = i;
		while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (e > s && token_eq(v + s, e - s, t))
			return true;
	}
	return false;
}

ssize_t control_http_parse_head(const char *buf, size_t len, struct control_http_head *h,
				const char **why)
{
	const char *end = NULL, *p, *line_end;
	size_t i, scan = len < CONTROL_HTTP_MAX_HEAD ? len : CONTROL_HTTP_MAX_HEAD;
	unsigned long status;

	*h = (struct control_http_head){0};
	for (i = 3; i < scan; i++) {
		if (buf[i - 3] == '\r' && buf[i - 2] == '\n' && buf[i - 1] == '\r' &&
		    buf[i] == '\n') {
			end = buf + i + 1;
			break;
		}
	}
	if (!end) {
		if (len >= CONTROL_HTTP_MAX_HEAD) {
			*why = "HTTP response head larger than 16 KiB";
			return -EMSGSIZE;
		}
		return 0;
	}
	/* Status line: HTTP/1.x SP 3DIGIT [SP reason] CRLF */
	if (end - buf < 14 || memcmp(buf, "HTTP/1.", 7) || (buf[7] != '0' && buf[7] != '1') ||
	    buf[8] != ' ' || !isdigit((unsigned char)buf[9]) || !isdigit((unsigned char)buf[10]) ||
	    !isdigit((unsigned char)buf[11]) || (buf[12] != ' ' && buf[12] != '\r')) {
		*why = "malformed HTTP status line";
		return -EBADMSG;
	}
	status = (unsigned long)(buf[9] - '0') * 100 + (unsigned long)(buf[10] - '0') * 10 +
		 (unsigned long)(buf[11] - '0');
	if (status < 100) {
		*why = "malformed HTTP status line";
		return -EBADMSG;
	}
	h->status = (int)status;
	p = memchr(buf, '\n', (size_t)(end - buf));
	if (!p || p == buf || p[-1] != '\r') {
		*why = "malformed HTTP status line";
		return -EBADMSG;
	}
	p++;
	for (; p < end - 2; p = line_end + 1) {
		const char *colon, *v, *ve;

		line_end = memchr(p, '\n', (size_t)(end - p));
		if (!line_end || line_end == p || line_end[-1] != '\r') {
			*why = "malformed HTTP header line";
			return -EBADMSG;
		}
		colon = memchr(p, ':', (size_t)(line_end - p));
		if (!colon || colon == p) {
			*why = "malformed HTTP header line";
			return -EBADMSG;
		}
		for (v = p; v < colon; v++) {
			if (*v == ' ' || *v == '\t' || (unsigned char)*v < 0x21 ||
			    (unsigned char)*v > 0x7e) {
				*why = "malformed HTTP header name";
				return -EBADMSG;
			}
		}
		v = colon + 1;
		ve = line_end - 1;
		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		if (token_eq(p, (size_t)(colon - p), "Content-Length")) {
			uint64_t n = 0;
			const char *d;

			if (v == ve || ve - v > 19) {
				*why = "bad Content-Length";
				return -EBADMSG;
			}
			for (d = v; d < ve; d++) {
				if (!isdigit((unsigned char)*d)) {
					*why = "bad Content-Length";
					return -EBADMSG;
				}
				n = n * 10 + (uint64_t)(*d - '0');
			}
			if (h->has_length && h->content_length != n) {
				*why = "conflicting Content-Length headers";
				return -EBADMSG;
			}
			h->has_length = true;
			h->content_length = n;
		} else if (token_eq(p, (size_t)(colon - p), "Transfer-Encoding")) {
			if (value_has_token(v, (size_t)(ve - v), "chunked"))
				h->chunked = true;
		} else if (token_eq(p, (size_t)(colon - p), "Upgrade")) {
			if (token_eq(v, (size_t)(ve - v), upgrade_proto))
				h->upgrade_ts2021 = true;
		} else if (token_eq(p, (size_t)(colon - p), "Connection")) {
			if (value_has_token(v, (size_t)(ve - v), "upgrade"))
				h->connection_upgrade = true;
		}
	}
	return end - buf;
}

int control_parse_key(const char *body, size_t len, uint8_t pub[static KEY_LEN], const char **why)
{
	json_error_t jerr;
	json_t *root, *v;
	size_t i;
	int ret = -EBADMSG;

	memset(pub, 0, KEY_LEN);
	if (len > CONTROL_KEY_MAX_BODY) {
		*why = "/key answer larger than 64 KiB";
		return -EBADMSG;
	}
	for (i = 0; i < len && isspace((unsigned char)body[i]); i++)
		;
	if (i < len && isxdigit((unsigned char)body[i])) {
		*why = "/key answered a bare key: a pre-Noise control server is not supported";
		return -EBADMSG;
	}
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root || !json_is_object(root)) {
		*why = "/key answer is not a JSON object";
		goto out;
	}
	v = json_object_get(root, "publicKey");
	if (!json_is_string(v)) {
		*why = "/key answer has no publicKey string";
		goto out;
	}
	if (keys_from_text("mkey", json_string_value(v), pub) < 0) {
		*why = "/key publicKey is not mkey:<64 hex>";
		goto out;
	}
	if (sodium_is_zero(pub, KEY_LEN)) {
		*why = "/key publicKey is the zero key";
		goto out;
	}
	ret = 0;
out:
	json_decref(root);
	return ret;
}

/* ---- URLs, proxies ---- */

static bool is_literal(const char *host)
{
	struct in6_addr a6;
	struct in_addr a4;

	return inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1;
}

/* Loopback, private (RFC 1918, ULA, link-local) or "localhost": upstream
 * skips the 443 attempt for http:// URLs on such hosts. */
static bool is_private_host(const char *host)
{
	struct in6_addr a6;
	struct in_addr a4;

	if (!strcasecmp(host, "localhost"))
		return true;
	if (inet_pton(AF_INET, host, &a4) == 1) {
		uint32_t a = ntohl(a4.s_addr);

		return (a >> 24) == 127 || (a >> 24) == 10 || (a >> 20) == (172 << 4 | 1) ||
		       (a >> 16) == (192 << 8 | 168) || (a >> 16) == (169 << 8 | 254);
	}
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6) || IN6_IS_ADDR_LINKLOCAL(&a6) ||
		       (a6.s6_addr[0] & 0xfe) == 0xfc;
	return false;
}

static int parse_port(const char *s, size_t len, uint16_t *port)
{
	unsigned long v = 0;
	size_t i;

	if (len == 0 || len > 5)
		return -EINVAL;
	for (i = 0; i < len; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -EINVAL;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v == 0 || v > 65535)
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

/* "scheme://host[:port][/]" with host a name, an IPv4 address or [IPv6].
 * *port is 0 when absent. Credentials ("user:pass@") are skipped. */
static int parse_url(const char *url, bool *https, char host[static HOST_MAX], uint16_t *port,
		     bool allow_userinfo, bool allow_no_scheme)
{
	const char *p = url, *end, *at, *h, *he;
	size_t hl;

	*port = 0;
	if (!strncasecmp(p, "https://", 8)) {
		*https = true;
		p += 8;
	} else if (!strncasecmp(p, "http://", 7)) {
		*https = false;
		p += 7;
	} else if (allow_no_scheme && !strstr(p, "://")) {
		*https = false;
	} else {
		return -EINVAL;
	}
	end = p + strcspn(p, "/?#");
	if (*end && strcmp(end, "/"))
		return -EINVAL; /* a path */
	at = memchr(p, '@', (size_t)(end - p));
	if (at) {
		if (!allow_userinfo)
			return -EINVAL;
		p = at + 1;
	}
	if (*p == '[') {
		h = p + 1;
		he = memchr(h, ']', (size_t)(end - h));
		if (!he)
			return -EINVAL;
		p = he + 1;
	} else {
		h = p;
		he = memchr(p, ':', (size_t)(end - p));
		if (!he)
			he = end;
		p = he;
	}
	hl = (size_t)(he - h);
	if (hl == 0 || hl >= HOST_MAX)
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	if (strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:") != hl)
		return -EINVAL;
	if (p < end) {
		if (*p != ':' || parse_port(p + 1, (size_t)(end - p - 1), port) < 0)
			return -EINVAL;
	}
	return 0;
}

/* NO_PROXY: comma or space separated; "*" matches all; an entry matches the
 * host itself or (with or without a leading dot) any name below it. */
static bool no_proxy_match(const char *no_proxy, const char *host)
{
	const char *p = no_proxy;
	size_t hl = strlen(host);

	while (p && *p) {
		size_t l;
		const char *e;

		p += strspn(p, ", ");
		l = strcspn(p, ", ");
		e = p;
		if (l == 0)
			break;
		if (l == 1 && *e == '*')
			return true;
		if (*e == '.') {
			e++;
			l--;
		}
		if (l == hl && !strncasecmp(e, host, l))
			return true;
		if (hl > l && host[hl - l - 1] == '.' && !strncasecmp(host + hl - l, e, l))
			return true;
		p += (e - p) + l;
	}
	return false;
}

void control_config_proxy_from_env(struct control_config *cfg)
{
	const char *v;

	v = getenv("HTTPS_PROXY");
	cfg->https_proxy = v && *v ? v : getenv("https_proxy");
	v = getenv("HTTP_PROXY");
	cfg->http_proxy = v && *v ? v : getenv("http_proxy");
	v = getenv("NO_PROXY");
	cfg->no_proxy = v && *v ? v : getenv("no_proxy");
}

int control_global_init(void)
{
	if (sodium_init() < 0)
		return -EIO;
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -EIO;
}

/* ---- curl multi on libuv ---- */

static void on_poll_closed(uv_handle_t *h)
{
	free(h);
}

static void close_poll(struct control *c, uv_poll_t *p)
{
	(void)c;
	uv_poll_stop(p);
	uv_close((uv_handle_t *)p, on_poll_closed);
}

static struct csock *csock_find(struct control *c, curl_socket_t fd)
{
	size_t i;

	for (i = 0; i < c->n_socks; i++)
		if (c->socks[i].fd == fd)
			return &c->socks[i];
	return NULL;
}

static void csock_drop(struct control *c, struct csock *s)
{
	*s = c->socks[--c->n_socks];
}

static void check_multi(struct control *c);

static void on_curl_poll(uv_poll_t *h, int status, int events)
{
	struct control *c = h->data;
	int flags = 0, running;
	size_t i;

	for (i = 0; i < c->n_socks; i++) {
		if (c->socks[i].poll != h)
			continue;
		if (status < 0)
			flags = CURL_CSELECT_ERR;
		if (events & UV_READABLE)
			flags |= CURL_CSELECT_IN;
		if (events & UV_WRITABLE)
			flags |= CURL_CSELECT_OUT;
		curl_multi_socket_action(c->multi, c->socks[i].fd, flags, &running);
		break;
	}
	check_multi(c);
	settle(c);
}

static int curl_sock_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct control *c = userp;
	struct csock *s = csock_find(c, fd);
	int events = 0;

	if (what == CURL_POLL_REMOVE) {
		if (s) {
			close_poll(c, s->poll);
			csock_drop(c, s);
		}
		return 0;
	}
	if (!s) {
		if (c->n_socks == MAX_SOCKS)
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
	if (what & CURL_POLL_IN)
		events |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		events |= UV_WRITABLE;
	uv_poll_start(s->poll, events, on_curl_poll);
	return 0;
}

static void on_curl_timeout(uv_timer_t *t)
{
	struct control *c = t->data;
	int running;

	curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_multi(c);
	settle(c);
}

static int curl_timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	struct control *c = userp;

	if (timeout_ms < 0)
		uv_timer_stop(&c->curl_timer);
	else
		uv_timer_start(&c->curl_timer, on_curl_timeout, (uint64_t)timeout_ms, 0);
	return 0;
}

/* ---- connections ---- */

static const char *conn_name(const struct conn *n)
{
	if (n->kind == CONN_KEY)
		return "GET /key";
	return n->tls ? "ts2021 over TLS" : "ts2021 over HTTP";
}

static void on_conn_poll(uv_poll_t *h, int status, int events);

/* curl has connected (and done the proxy CONNECT and TLS): the socket is
 * ours from now on. Sends the HTTP/1.1 request. */
static void conn_connected(struct conn *n)
{
	struct control *c = n->c;
	curl_socket_t fd = CURL_SOCKET_BAD;
	struct csock *s;
	char *req;

	if (curl_easy_getinfo(n->easy, CURLINFO_ACTIVESOCKET, &fd) != CURLE_OK ||
	    fd == CURL_SOCKET_BAD) {
		conn_error(n, -EIO, "%s: connected socket unavailable", conn_name(n));
		return;
	}
	n->fd = fd;
	s = csock_find(c, fd);
	if (s) {
		n->poll = s->poll;
		csock_drop(c, s);
	} else {
		n->poll = xcalloc(1, sizeof(*n->poll));
		if (uv_poll_init_socket(c->loop, n->poll, fd) < 0) {
			free(n->poll);
			n->poll = NULL;
			conn_error(n, -EIO, "%s: cannot watch the socket", conn_name(n));
			return;
		}
	}
	n->poll->data = n;
	n->poll_events = 0;

	if (n->kind == CONN_KEY) {
		req = xasprintf("GET /key?v=%d HTTP/1.1\r\nHost: %s%s%s:%u\r\n"
				"User-Agent: tailscale-cni\r\nAccept: application/json\r\n"
				"Connection: close\r\n\r\n",
				c->capver, strchr(c->host, ':') ? "[" : "", c->host,
				strchr(c->host, ':') ? "]" : "", n->port);
	} else {
		uint8_t init[TS2021_INIT_LEN];
		char b64[TS2021_INIT_B64_LEN];
		int ret;

		ret = ts2021_client_init(&n->hs, (uint16_t)c->capver, c->machine_priv,
					 c->server_pub);
		if (ret == 0) {
			n->hs_live = true;
			ret = ts2021_client_initiation(&n->hs, init);
		}
		if (ret < 0) {
			conn_error(n, ret, "ts2021: cannot build the handshake (bad server key?)");
			return;
		}
		ts2021_initiation_base64(b64, init);
		req = xasprintf(
			"POST /ts2021 HTTP/1.1\r\nHost: %s%s%s:%u\r\n"
			"User-Agent: tailscale-cni\r\nUpgrade: %s\r\nConnection: upgrade\r\n"
			"X-Tailscale-Handshake: %s\r\nContent-Length: 0\r\n\r\n",
			strchr(c->host, ':') ? "[" : "", c->host, strchr(c->host, ':') ? "]" : "",
			n->port, upgrade_proto, b64);
	}
	sbuf_add(&n->out, req, strlen(req));
	free(req);
	n->stage = ST_HTTP;
	conn_flush(n);
	conn_update_poll(n);
}

static void check_multi(struct control *c)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(c->multi, &left))) {
		struct conn *n = NULL;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&n);
		if (!n || n->stage != ST_CONNECT)
			continue;
		if (m->data.result == CURLE_OK) {
			conn_connected(n);
		} else {
			conn_error(n,
				   m->data.result == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT
									      : -ECONNREFUSED,
				   "%s: connect to %s port %u failed: %s", conn_name(n), c->host,
				   n->port,
				   n->errbuf[0] ? n->errbuf : curl_easy_strerror(m->data.result));
		}
	}
}

/* Adds "host:port:addr,addr" so that curl never resolves host itself. */
static struct curl_slist *resolve_entry(const struct rcache *rc)
{
	char line[HOST_MAX + 16 + CONTROL_RESOLVE_MAX_ADDRS * (INET6_ADDRSTRLEN + 3)];
	size_t i, off;
	struct curl_slist *l;

	if (rc->literal || rc->n == 0)
		return NULL;
	off = (size_t)snprintf(line, sizeof(line), "%s:%u:", rc->host, rc->port);
	for (i = 0; i < rc->n && off < sizeof(line); i++) {
		char a[INET6_ADDRSTRLEN];
		const struct sockaddr_storage *ss = &rc->addrs[i];

		if (ss->ss_family == AF_INET)
			inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, a,
				  sizeof(a));
		else
			inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, a,
				  sizeof(a));
		off += (size_t)snprintf(line + off, sizeof(line) - off, "%s%s%s%s", i ? "," : "",
					ss->ss_family == AF_INET6 ? "[" : "", a,
					ss->ss_family == AF_INET6 ? "]" : "");
	}
	l = curl_slist_append(NULL, line);
	if (!l)
		abort();
	return l;
}

static struct conn *conn_new(struct control *c, enum conn_kind kind, bool tls, uint16_t port)
{
	struct conn *n = xcalloc(1, sizeof(*n));
	bool proxied = c->use_proxy[tls];
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
	url = xasprintf("%s://%s%s%s:%u/", tls ? "https" : "http", strchr(c->host, ':') ? "[" : "",
			c->host, strchr(c->host, ':') ? "]" : "", port);
	curl_easy_setopt(n->easy, CURLOPT_URL, url);
	free(url);
	curl_easy_setopt(n->easy, CURLOPT_CONNECT_ONLY, 1L);
	curl_easy_setopt(n->easy, CURLOPT_PRIVATE, n);
	curl_easy_setopt(n->easy, CURLOPT_ERRORBUFFER, n->errbuf);
	curl_easy_setopt(n->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(n->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)c->dial_timeout_ms);
	curl_easy_setopt(n->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	/* No file is read after the sandbox is up: the CA comes from memory,
	 * and the compiled-in CA bundle paths are cleared. */
	curl_easy_setopt(n->easy, CURLOPT_CAINFO, NULL);
	curl_easy_setopt(n->easy, CURLOPT_CAPATH, NULL);
	if (tls) {
		struct curl_blob blob = {
			.data = c->ca_pem, .len = c->ca_pem_len, .flags = CURL_BLOB_COPY};

		curl_easy_setopt(n->easy, CURLOPT_CAINFO_BLOB, &blob);
		curl_easy_setopt(n->easy, CURLOPT_SSL_VERIFYPEER, 1L);
		curl_easy_setopt(n->easy, CURLOPT_SSL_VERIFYHOST, 2L);
		/* HTTP/1.1 only: an h2 connection cannot be upgraded. */
		curl_easy_setopt(n->easy, CURLOPT_SSL_ENABLE_ALPN, 0L);
	}
	if (proxied) {
		curl_easy_setopt(n->easy, CURLOPT_PROXY, tls ? c->https_proxy : c->http_proxy);
		curl_easy_setopt(n->easy, CURLOPT_HTTPPROXYTUNNEL, 1L);
		rc = c->cache[SLOT_PROXY];
	} else {
		/* An empty string: no proxy, and curl does not read the
		 * environment itself. */
		curl_easy_setopt(n->easy, CURLOPT_PROXY, "");
		rc = c->cache[SLOT_CONTROL];
		rc.port = port;
	}
	n->resolve_list = resolve_entry(&rc);
	if (n->resolve_list)
		curl_easy_setopt(n->easy, CURLOPT_RESOLVE, n->resolve_list);
	if (curl_multi_add_handle(c->multi, n->easy) != CURLM_OK)
		conn_error(n, -EIO, "%s: curl refused the connection", conn_name(n));
	return n;
}

static void req_free(struct h2req *r)
{
	if (!r)
		return;
	if (r->body) {
		sodium_memzero(r->body, r->body_len); /* a register body holds the auth key */
		free(r->body);
	}
	sbuf_free(&r->resp);
	free(r);
}

static void conn_free(struct conn *n)
{
	struct control *c;
	size_t i;

	if (!n)
		return;
	c = n->c;
	for (i = 0; i < MAX_REQS; i++) {
		struct h2req *r = n->reqs[i];

		if (!r)
			continue;
		if (c->stream == r)
			c->stream = NULL;
		if (c->lite == r)
			c->lite = NULL;
		req_free(r);
	}
	if (n->h2)
		nghttp2_session_del(n->h2);
	if (n->poll)
		close_poll(c, n->poll);
	if (n->easy) {
		curl_multi_remove_handle(c->multi, n->easy);
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

static void conn_update_poll(struct conn *n)
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

static void conn_flush(struct conn *n)
{
	while (n->out.len && !n->dead) {
		size_t sent = 0;
		CURLcode rc = curl_easy_send(n->easy, n->out.p, n->out.len, &sent);

		if (rc == CURLE_AGAIN)
			break;
		if (rc != CURLE_OK) {
			conn_error(n, -EPIPE, "%s: send to %s port %u failed: %s", conn_name(n),
				   n->c->host, n->port, curl_easy_strerror(rc));
			return;
		}
		sbuf_consume(&n->out, sent);
	}
}

/* ---- HTTP/2 inside Noise ---- */

static struct h2req *req_of(struct conn *n, int32_t id)
{
	return nghttp2_session_get_stream_user_data(n->h2, id);
}

static void map_message(struct control *c, const char *json, size_t len);

static int h2_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
			size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
			void *ud)
{
	struct conn *n = ud;
	struct h2req *r;

	if (f->hd.type != NGHTTP2_HEADERS)
		return 0;
	r = req_of(n, f->hd.stream_id);
	if (!r)
		return 0;
	if (namelen == 7 && !memcmp(name, ":status", 7)) {
		int st = 0;
		size_t i;

		for (i = 0; i < valuelen && i < 3; i++)
			st = st * 10 + (isdigit(value[i]) ? value[i] - '0' : 0);
		r->status = st;
	} else if (namelen == 11 && !memcmp(name, "retry-after", 11)) {
		long v = 0;
		size_t i;

		for (i = 0; i < valuelen && i < 7 && isdigit(value[i]); i++)
			v = v * 10 + (value[i] - '0');
		r->retry_after = (i == valuelen && i > 0) ? v : -1;
	}
	return 0;
}

static int h2_on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
		      size_t len, void *ud)
{
	struct conn *n = ud;
	struct control *c = n->c;
	struct h2req *r = req_of(n, id);

	if (!r)
		return 0;
	if (r->kind == REQ_STREAM && r->status == 200) {
		while (len) {
			char *json = NULL;
			size_t jl = 0;
			const char *why = NULL;
			ssize_t k = mapstream_feed(&c->ms, data, len, &json, &jl, &why);

			if (k < 0) {
				fail(c, false, (int)k, "map stream: %s", why);
				return 0;
			}
			data += k;
			len -= (size_t)k;
			if (json) {
				map_message(c, json, jl);
				free(json);
			}
			if (c->fail_pending)
				return 0;
		}
		return 0;
	}
	/* Register answers are <= 1 MiB; for the others (lite update bodies,
	 * error text) the first 4 KiB are plenty. */
	{
		size_t cap = (r->kind == REQ_REGISTER || r->kind == REQ_LOGOUT)
				     ? MAPJSON_MAX_REGISTER_RESPONSE
				     : 4096;
		size_t room = r->resp.len < cap ? cap - r->resp.len : 0;

		if ((r->kind == REQ_REGISTER || r->kind == REQ_LOGOUT) && len > room) {
			fail(c, false, -EMSGSIZE, "register answer larger than 1 MiB");
			return 0;
		}
		sbuf_add(&r->resp, data, len < room ? len : room);
	}
	return 0;
}

static void req_done(struct control *c, struct h2req *r, uint32_t error_code);

static int h2_on_stream_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *ud)
{
	struct conn *n = ud;
	struct h2req *r = req_of(n, id);
	size_t i;

	if (!r)
		return 0;
	for (i = 0; i < MAX_REQS; i++)
		if (n->reqs[i] == r)
			n->reqs[i] = NULL;
	r->closed = true;
	req_done(n->c, r, error_code);
	req_free(r);
	return 0;
}

static ssize_t h2_read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
			    uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	struct h2req *r = src->ptr;
	size_t left = r->body_len - r->body_off;
	size_t k = left < len ? left : len;

	memcpy(buf, r->body + r->body_off, k);
	r->body_off += k;
	if (r->body_off == r->body_len)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)k;
}

static void h2_flush(struct conn *n)
{
	for (;;) {
		const uint8_t *data;
		ssize_t k;
		size_t need;
		ssize_t w;

		if (n->dead || !n->h2 || n->in_recv)
			return;
		k = nghttp2_session_mem_send(n->h2, &data);
		if (k < 0) {
			conn_error(n, -EPROTO, "HTTP/2: %s", nghttp2_strerror((int)k));
			return;
		}
		if (k == 0)
			break;
		need = ts2021_sealed_len((size_t)k);
		sbuf_reserve(&n->out, need);
		w = ts2021_seal(&n->nc.tx, data, (size_t)k, n->out.p + n->out.len, need);
		if (w < 0) {
			conn_error(n, (int)w, "ts2021: cannot seal a record");
			return;
		}
		n->out.len += (size_t)w;
	}
	conn_flush(n);
}

/* Submits a POST (or HEAD when body is NULL and kind is REQ_PING) on the
 * Noise connection. Takes body (heap, len bytes). */
static struct h2req *h2_submit(struct control *c, enum req_kind kind, const char *method,
			       const char *path, char *body, size_t len)
{
	struct conn *n = c->noise;
	struct h2req *r;
	nghttp2_data_provider prd;
	size_t slot;
	int32_t id;
	const nghttp2_nv nva[] = {
		{(uint8_t *)":method", (uint8_t *)method, 7, strlen(method), 0},
		{(uint8_t *)":scheme", (uint8_t *)"https", 7, 5, 0},
		{(uint8_t *)":authority", (uint8_t *)c->host, 10, strlen(c->host), 0},
		{(uint8_t *)":path", (uint8_t *)path, 5, strlen(path), 0},
		{(uint8_t *)"content-type", (uint8_t *)"application/json", 12, 16, 0},
	};

	if (!n || !n->h2 || n->dead) {
		if (body)
			sodium_memzero(body, len);
		free(body);
		return NULL;
	}
	for (slot = 0; slot < MAX_REQS && n->reqs[slot]; slot++)
		;
	if (slot == MAX_REQS) {
		if (body)
			sodium_memzero(body, len);
		free(body);
		log_warn("too many requests in flight on the control connection");
		return NULL;
	}
	r = xcalloc(1, sizeof(*r));
	r->conn = n;
	r->kind = kind;
	r->body = (uint8_t *)body;
	r->body_len = len;
	r->retry_after = -1;
	prd.source.ptr = r;
	prd.read_callback = h2_read_body;
	id = nghttp2_submit_request(n->h2, NULL, nva, body ? 5 : 4, body ? &prd : NULL, r);
	if (id < 0) {
		req_free(r);
		conn_error(n, -EPROTO, "HTTP/2: cannot submit %s: %s", path, nghttp2_strerror(id));
		return NULL;
	}
	r->id = id;
	n->reqs[slot] = r;
	h2_flush(n);
	conn_update_poll(n);
	return r;
}

static int conn_start_h2(struct conn *n)
{
	nghttp2_session_callbacks *cbs;
	nghttp2_settings_entry iv[] = {
		{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100},
		{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_WINDOW},
	};
	int ret;

	if (nghttp2_session_callbacks_new(&cbs) != 0)
		abort();
	nghttp2_session_callbacks_set_on_header_callback(cbs, h2_on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, h2_on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, h2_on_stream_close);
	ret = nghttp2_session_client_new(&n->h2, cbs, n);
	nghttp2_session_callbacks_del(cbs);
	if (ret != 0)
		abort();
	nghttp2_submit_settings(n->h2, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
	nghttp2_session_set_local_window_size(n->h2, NGHTTP2_FLAG_NONE, 0, 4 * H2_WINDOW);
	h2_flush(n);
	return 0;
}

static void h2_feed(struct conn *n, const uint8_t *p, size_t len)
{
	ssize_t k;

	if (!len || n->dead)
		return;
	n->in_recv = true;
	k = nghttp2_session_mem_recv(n->h2, p, len);
	n->in_recv = false;
	if (k < 0)
		conn_error(n, -EPROTO, "HTTP/2 from control: %s", nghttp2_strerror((int)k));
}

/* Decrypted bytes from the server: the early payload, then HTTP/2. */
static void conn_plaintext(struct conn *n, const uint8_t *pt, size_t len)
{
	if (!n->early_done) {
		size_t consumed = 0;
		const char *why = NULL;
		const uint8_t *held;
		size_t nheld;
		int r = ts2021_early_feed(&n->early, pt, len, &consumed, &why);

		if (r < 0) {
			conn_error(n, r, "ts2021 early payload: %s", why);
			return;
		}
		if (r == 0)
			return;
		n->early_done = true;
		if (n->early.present) {
			log_debug("control sent an early payload (%u bytes)", n->early.json_len);
		} else {
			nheld = ts2021_early_passthrough(&n->early, &held);
			h2_feed(n, held, nheld);
		}
		pt += consumed;
		len -= consumed;
	}
	h2_feed(n, pt, len);
}

static void conn_records(struct conn *n)
{
	size_t off = 0;

	while (off < n->in.len && !n->dead) {
		size_t used = 0, ptlen = 0;
		const uint8_t *pt = NULL;
		const char *why = NULL;
		int r = ts2021_reader_next(&n->rd, n->in.p + off, n->in.len - off, &used, &pt,
					   &ptlen, &why);

		off += used;
		if (r < 0) {
			conn_error(n, r, "ts2021 record from control: %s", why);
			break;
		}
		if (r == 1)
			conn_plaintext(n, pt, ptlen);
	}
	n->in.len = 0;
	h2_flush(n);
}

static void key_body(struct conn *n, const uint8_t *body, size_t len)
{
	struct control *c = n->c;
	const char *why = NULL;

	if (control_parse_key((const char *)body, len, c->server_pub, &why) < 0) {
		conn_error(n, -EBADMSG, "GET /key: %s", why);
		return;
	}
	c->have_server_key = true;
	n->stage = ST_DONE;
}

static void conn_input(struct conn *n, bool eof)
{
	struct control *c = n->c;

	if (n->stage == ST_HTTP && !n->head_done) {
		const char *why = NULL;
		ssize_t h =
			control_http_parse_head((const char *)n->in.p, n->in.len, &n->head, &why);

		if (h < 0) {
			conn_error(n, (int)h, "%s: bad HTTP answer: %s", conn_name(n), why);
			return;
		}
		if (h == 0) {
			if (eof)
				conn_error(n, -ECONNRESET,
					   "%s: connection closed before an HTTP answer",
					   conn_name(n));
			return;
		}
		n->head_done = true;
		n->head_len = (size_t)h;
		if (n->kind == CONN_KEY) {
			if (n->head.status != 200) {
				conn_error(n, -EPROTO, "GET /key: HTTP status %d", n->head.status);
				return;
			}
			if (n->head.chunked) {
				conn_error(n, -EPROTO, "GET /key: chunked answer not supported");
				return;
			}
			if (n->head.has_length && n->head.content_length > CONTROL_KEY_MAX_BODY) {
				conn_error(n, -EMSGSIZE, "GET /key: answer larger than 64 KiB");
				return;
			}
		} else {
			if (n->head.status != 101) {
				conn_error(n, -EPROTO,
					   "ts2021 upgrade refused by control: HTTP status %d",
					   n->head.status);
				return;
			}
			if (!n->head.upgrade_ts2021) {
				conn_error(n, -EPROTO, "ts2021 upgrade: 101 without Upgrade: %s",
					   upgrade_proto);
				return;
			}
			/* The bytes after the head belong to the Noise stream. */
			sbuf_consume(&n->in, n->head_len);
			n->stage = ST_HANDSHAKE;
		}
	}
	if (n->kind == CONN_KEY && n->stage == ST_HTTP && n->head_done) {
		size_t have = n->in.len - n->head_len;

		if (have > CONTROL_KEY_MAX_BODY) {
			conn_error(n, -EMSGSIZE, "GET /key: answer larger than 64 KiB");
			return;
		}
		if (n->head.has_length && have >= n->head.content_length)
			key_body(n, n->in.p + n->head_len, (size_t)n->head.content_length);
		else if (eof && n->head.has_length)
			conn_error(n, -ECONNRESET, "GET /key: answer truncated");
		else if (eof)
			key_body(n, n->in.p + n->head_len, have);
		return;
	}
	if (n->stage == ST_HANDSHAKE) {
		const char *why = NULL;
		ssize_t k = ts2021_client_response(&n->hs, n->in.p, n->in.len, &n->nc, &why);

		if (k == -ECONNREFUSED) {
			conn_error(n, -ECONNREFUSED, "control refused the Noise handshake: %s",
				   n->hs.server_error);
			return;
		}
		if (k < 0) {
			conn_error(n, (int)k, "Noise handshake with control failed: %s", why);
			c->have_server_key = false;
			return;
		}
		if (k == 0) {
			if (eof)
				conn_error(n, -ECONNRESET,
					   "control closed the connection during the Noise "
					   "handshake (wrong server key from /key?)");
			return;
		}
		sbuf_consume(&n->in, (size_t)k);
		ts2021_client_destroy(&n->hs);
		n->hs_live = false;
		ts2021_reader_init(&n->rd, &n->nc.rx);
		n->stage = ST_OPEN;
		conn_start_h2(n);
	}
	if (n->stage == ST_OPEN) {
		conn_records(n);
		if (eof && !n->dead)
			conn_error(n, -ECONNRESET, "control closed the connection");
	}
}

static void on_conn_poll(uv_poll_t *h, int status, int events)
{
	struct conn *n = h->data;
	struct control *c = n->c;
	uint8_t buf[RECV_CHUNK];

	if (status < 0 && !n->dead)
		conn_error(n, status, "%s: socket error: %s", conn_name(n), uv_strerror(status));
	if (!n->dead && (events & UV_WRITABLE)) {
		conn_flush(n);
	}
	while (!n->dead && ((events & UV_READABLE) || status < 0)) {
		size_t got = 0;
		CURLcode rc = curl_easy_recv(n->easy, buf, sizeof(buf), &got);

		if (rc == CURLE_AGAIN)
			break;
		if (rc != CURLE_OK) {
			conn_error(n, -ECONNRESET, "%s: receive from %s port %u failed: %s",
				   conn_name(n), c->host, n->port, curl_easy_strerror(rc));
			break;
		}
		if (got == 0) {
			conn_input(n, true);
			if (!n->dead && n->stage != ST_DONE)
				conn_error(n, -ECONNRESET, "%s: connection closed", conn_name(n));
			break;
		}
		/* Before the Noise records start, bound what we buffer. */
		if (n->stage != ST_OPEN &&
		    n->in.len + got > CONTROL_HTTP_MAX_HEAD + CONTROL_KEY_MAX_BODY + RECV_CHUNK) {
			conn_error(n, -EMSGSIZE, "%s: answer too large", conn_name(n));
			break;
		}
		sbuf_add(&n->in, buf, got);
		conn_input(n, false);
		if (n->stage == ST_DONE)
			break;
	}
	if (!n->dead)
		conn_flush(n);
	conn_update_poll(n);
	settle(c);
}

/* ---- requests ---- */

static void fill_hostinfo(struct control *c, struct mapjson_hostinfo *hi)
{
	*hi = (struct mapjson_hostinfo){
		.ipn_version = "1.90.0-tscni",
		.backend_log_id = c->log_id,
		.os = "linux",
		.os_version = c->os_version,
		.hostname = c->hostname,
		.app = "tailscale-cni",
		.container = true,
		.request_tags = (const char *const *)c->tags,
		.n_request_tags = c->n_tags,
		.has_netinfo = c->preferred_derp > 0,
		.preferred_derp = c->preferred_derp,
		.working_udp = c->n_eps > 0,
	};
}

static void send_register(struct control *c)
{
	struct mapjson_hostinfo hi;
	bool logout = c->logout_wanted;
	struct mapjson_register_request rr;
	const char *why = NULL;
	char *json = NULL;
	int ret;

	fill_hostinfo(c, &hi);
	c->sent_auth = !logout && !c->registered && c->auth_key;
	rr = (struct mapjson_register_request){
		.version = c->capver,
		.node_key = c->node_pub,
		.nl_key = c->nl_pub,
		.auth_key = c->sent_auth ? c->auth_key : NULL,
		.expiry = logout ? LOGOUT_EXPIRY : 0,
		.hostinfo = &hi,
		.ephemeral = c->ephemeral,
	};
	ret = mapjson_build_register_request(&rr, &json, &why);
	if (ret < 0) {
		fail(c, true, ret, "cannot build the register request: %s", why);
		return;
	}
	c->phase = PH_REGISTER;
	c->deadline_what = logout ? "control did not answer the logout"
				  : "control did not answer /machine/register";
	uv_timer_start(&c->deadline_timer, on_deadline, c->request_timeout_ms, 0);
	if (!h2_submit(c, logout ? REQ_LOGOUT : REQ_REGISTER, "POST", "/machine/register", json,
		       strlen(json)))
		fail(c, false, -EIO, "cannot send the register request");
}

static char *map_request_json(struct control *c, bool stream)
{
	struct mapjson_hostinfo hi;
	struct mapjson_map_request mr;
	const char *why = NULL;
	char *json = NULL;

	fill_hostinfo(c, &hi);
	mr = (struct mapjson_map_request){
		.version = c->capver,
		.compress = true,
		.keep_alive = stream,
		.node_key = c->node_pub,
		.disco_key = sodium_is_zero(c->disco_pub, KEY_LEN) ? NULL : c->disco_pub,
		.stream = stream,
		.omit_peers = !stream,
		.hostinfo = &hi,
		.endpoints = c->eps,
		.endpoint_types = c->ep_types,
		.n_endpoints = c->n_eps,
	};
	if (mapjson_build_map_request(&mr, &json, &why) < 0) {
		fail(c, true, -EINVAL, "cannot build the map request: %s", why);
		return NULL;
	}
	return json;
}

static void on_lite_timer(uv_timer_t *t);

static void send_lite(struct control *c)
{
	char *json;

	if (c->phase != PH_RUNNING)
		return;
	if (c->test_flags & CONTROL_TEST_NO_LITE) {
		log_info("lite update suppressed (test switch)");
		c->lite_ok = true;
		return;
	}
	if (c->lite) {
		c->lite_dirty = true; /* resent when this one is answered */
		return;
	}
	c->lite_dirty = false;
	json = map_request_json(c, false);
	if (!json)
		return;
	c->lite = h2_submit(c, REQ_LITE, "POST", "/machine/map", json, strlen(json));
	if (c->lite)
		uv_timer_start(&c->lite_timer, on_lite_timer, c->request_timeout_ms, 0);
}

static void start_stream(struct control *c)
{
	char *json = map_request_json(c, true);
	const char *why = NULL;
	int ret;

	if (!json)
		return;
	mapstream_destroy(&c->ms);
	ret = mapstream_init(&c->ms, true, 0, 0);
	if (ret < 0) {
		free(json);
		fail(c, true, ret, "map stream: %s", why ? why : "cannot set up the reader");
		return;
	}
	c->stream_fresh = true;
	c->stream = h2_submit(c, REQ_STREAM, "POST", "/machine/map", json, strlen(json));
	if (!c->stream) {
		fail(c, false, -EIO, "cannot send the map request");
		return;
	}
	uv_timer_start(&c->watchdog_timer, on_watchdog, c->watchdog_ms, 0);
}

static void maybe_up(struct control *c)
{
	if (c->phase == PH_RUNNING && c->nm && !c->stream_fresh && c->lite_ok && !c->fail_pending)
		set_status(c, CONTROL_UP, 0, NULL);
}

/* Escapes control's text for a message. */
static const char *esc(char *buf, size_t n, const char *s)
{
	return log_escape(buf, n, s, strlen(s));
}

static void register_done(struct control *c, struct h2req *r, uint32_t error_code)
{
	struct mapjson_register_response *rr = NULL;
	const char *why = NULL;
	char e[160];
	bool logout = r->kind == REQ_LOGOUT;

	if (error_code || r->status == 0) {
		fail(c, false, -ECONNRESET, "register stream reset by control (HTTP/2 error %u)",
		     error_code);
		return;
	}
	if (r->status == 429) {
		/* Retry-After: seconds; without a usable value, 5-10 s. */
		long s = r->retry_after;

		if (s < 0 || s > RETRY_AFTER_MAX_S)
			s = 5 + (long)randombytes_uniform(6);
		fail(c, false, -EAGAIN,
		     "control is rate limiting registration (429), retry in %ld s", s);
		c->retry_after_ms = (uint64_t)s * 1000;
		return;
	}
	if (r->status != 200) {
		sbuf_add(&r->resp, "", 1);
		fail(c, false, -EPROTO, "register: HTTP status %d: %s", r->status,
		     esc(e, sizeof(e), (const char *)r->resp.p));
		return;
	}
	if (mapjson_parse_register_response((const char *)r->resp.p, r->resp.len, &rr, &why) < 0) {
		fail(c, false, -EBADMSG, "register answer: %s", why);
		return;
	}
	if (rr->error && rr->error[0]) {
		fail(c, true, -EPERM, "control refused %s: %s",
		     logout ? "the logout" : "registration", esc(e, sizeof(e), rr->error));
	} else if (logout) {
		c->phase = PH_LOGGED_OUT;
	} else if (rr->has_node_key_signature) {
		fail(c, true, -EPERM,
		     "tailnet lock (TKA) is enabled on this tailnet: not supported, disable it "
		     "or sign the node");
	} else if (rr->node_key_expired) {
		fail(c, true, -EKEYEXPIRED,
		     "node key expired: re-register with a new node key and auth key");
	} else if (rr->auth_url && rr->auth_url[0]) {
		if (!c->sent_auth && c->auth_key) {
			/* A node control no longer knows: present the auth key. */
			log_info("control does not know this node key: presenting the auth key");
			mapjson_register_response_free(rr);
			c->registered = false;
			send_register(c);
			return;
		}
		fail(c, true, -EACCES,
		     "control server wants interactive login: use a pre-authorized auth key");
	} else if (!rr->machine_authorized) {
		fail(c, true, -EACCES,
		     "node is registered but not authorized by control (awaiting approval): use "
		     "a pre-authorized auth key");
	} else if (c->logout_wanted) {
		/* control_logout() while this register was in flight. */
		c->registered = true;
		send_register(c);
	} else {
		c->registered = true;
		c->phase = PH_RUNNING;
		uv_timer_stop(&c->deadline_timer);
		log_info("registered with control as %s", c->hostname);
		start_stream(c);
		send_lite(c);
	}
	mapjson_register_response_free(rr);
}

static void on_lite_timer(uv_timer_t *t)
{
	struct control *c = t->data;

	if (c->lite) {
		fail(c, false, -ETIMEDOUT, "control did not answer a lite update within %u ms",
		     c->request_timeout_ms);
	} else if (c->phase == PH_RUNNING) {
		send_lite(c);
	}
	settle(c);
}

static void lite_done(struct control *c, struct h2req *r, uint32_t error_code)
{
	c->lite = NULL;
	uv_timer_stop(&c->lite_timer);
	if (error_code == 0 && r->status == 200) {
		c->lite_ok = true;
		c->lite_attempts = 0;
		log_debug("lite update accepted");
		if (c->lite_dirty)
			send_lite(c);
		maybe_up(c);
		return;
	}
	/* Retried before the map poll is restarted (capver 58). */
	c->lite_attempts++;
	{
		uint64_t d = (uint64_t)c->lite_attempts * c->lite_attempts * 10;

		if (d > c->backoff_max_ms)
			d = c->backoff_max_ms;
		log_warn("lite update refused (HTTP status %d, stream error %u); retry in %" PRIu64
			 " ms",
			 r->status, error_code, d);
		uv_timer_start(&c->lite_timer, on_lite_timer, d, 0);
	}
}

static void req_done(struct control *c, struct h2req *r, uint32_t error_code)
{
	char e[160];

	switch (r->kind) {
	case REQ_REGISTER:
	case REQ_LOGOUT:
		register_done(c, r, error_code);
		break;
	case REQ_LITE:
		lite_done(c, r, error_code);
		break;
	case REQ_STREAM:
		c->stream = NULL;
		if (c->phase != PH_RUNNING)
			break;
		if (r->status != 200) {
			sbuf_add(&r->resp, "", 1);
			fail(c, false, -EPROTO, "map poll: HTTP status %d: %s", r->status,
			     esc(e, sizeof(e), (const char *)r->resp.p));
		} else if (!mapstream_idle(&c->ms)) {
			fail(c, false, -EBADMSG,
			     "map stream ended inside a message (truncated message)");
		} else {
			fail(c, false, -ECONNRESET, "map stream ended by control (HTTP/2 error %u)",
			     error_code);
		}
		break;
	case REQ_PING:
		log_debug("ping answer: HTTP status %d", r->status);
		break;
	}
}

/* "https://host/path?q" -> "/path?q"; a bare path stays. NULL if none. */
static const char *url_path(const char *url)
{
	const char *p = strstr(url, "://");

	if (!p)
		return url[0] == '/' ? url : NULL;
	p = strchr(p + 3, '/');
	return p;
}

/* PingRequest: as upstream's clients without the fancier types: a HEAD to
 * the URL for the plain liveness probe; c2n requests get 404; disco, TSMP,
 * ICMP and peerapi pings are not answered (logged). Deduplicated by URL. */
static void answer_ping(struct control *c, const struct mapjson_ping *p)
{
	const char *path;

	if (!p->url || !p->url[0] || !strcmp(p->url, c->last_ping_url))
		return;
	strscpy(c->last_ping_url, p->url, sizeof(c->last_ping_url));
	path = url_path(p->url);
	if (!p->url_is_noise || !path) {
		log_info("PingRequest over plain HTTPS not answered (types \"%s\")",
			 p->types ? p->types : "");
		return;
	}
	if (!p->types || !p->types[0]) {
		h2_submit(c, REQ_PING, "HEAD", path, NULL, 0);
	} else if (!strcmp(p->types, "c2n")) {
		h2_submit(c, REQ_PING, "POST", path, xstrdup(c2n_not_found), strlen(c2n_not_found));
	} else {
		log_info("PingRequest of types \"%s\" not answered", p->types);
	}
}

static bool same_addrs(const struct control *c, const struct netmap_node *self)
{
	size_t i;

	if (!c->have_self_addrs || c->n_self_addrs != self->n_addresses)
		return false;
	for (i = 0; i < self->n_addresses; i++)
		if (!ip_prefix_equal(&c->self_addrs[i], &self->addresses[i]))
			return false;
	return true;
}

static void map_message(struct control *c, const char *json, size_t len)
{
	struct mapjson_map_response *resp = NULL;
	struct netmap *next = NULL;
	const char *why = NULL;
	int ret;

	uv_timer_start(&c->watchdog_timer, on_watchdog, c->watchdog_ms, 0);
	ret = mapjson_parse_map_response(json, len, &resp, &why);
	if (ret < 0) {
		fail(c, false, ret, "map message: %s", why);
		return;
	}
	if (resp->ping)
		answer_ping(c, resp->ping);
	if (resp->has_tka && resp->tka_enabled) {
		fail(c, true, -EPERM,
		     "tailnet lock (TKA) is enabled on this tailnet: not supported, disable it or "
		     "sign the node");
		goto out;
	}
	ret = netmap_apply(c->stream_fresh ? NULL : c->nm, resp, (int64_t)time(NULL), &next, &why);
	if (ret < 0) {
		fail(c, false, ret, "map message: %s", why);
		goto out;
	}
	if (!next)
		goto out; /* a keep-alive before any map */
	if (!c->stream_fresh && next == c->nm) {
		netmap_put(next); /* keep-alive: nothing changed */
		goto out;
	}
	netmap_put(c->nm);
	c->nm = next;
	if (c->stream_fresh) {
		c->stream_fresh = false;
		c->attempts = 0;
	}
	if (next->self && next->self->expired) {
		fail(c, true, -EKEYEXPIRED,
		     "node key expired by control: re-register with a new node key and auth key");
		goto out;
	}
	if (c->on_netmap)
		c->on_netmap(c->cb_arg, next);
	if (next->self && !same_addrs(c, next->self)) {
		size_t n = next->self->n_addresses;

		if (n > NETMAP_MAX_ADDRESSES)
			n = NETMAP_MAX_ADDRESSES;
		memcpy(c->self_addrs, next->self->addresses, n * sizeof(c->self_addrs[0]));
		c->n_self_addrs = n;
		c->have_self_addrs = true;
		if (c->on_self_addresses)
			c->on_self_addresses(c->cb_arg, c->self_addrs, n);
	}
	maybe_up(c);
out:
	mapjson_map_response_free(resp);
}

/* ---- the cycle ---- */

static void on_deadline(uv_timer_t *t)
{
	struct control *c = t->data;

	if (c->phase == PH_RESOLVE || c->phase == PH_KEY || c->phase == PH_DIAL) {
		const char *what = "control did not answer";
		struct conn *n = c->key_conn ? c->key_conn : (c->tls ? c->tls : c->plain);

		if (c->phase == PH_RESOLVE)
			what = "name resolution did not answer";
		else if (n && n->stage == ST_CONNECT)
			what = "could not connect to control";
		else if (n && n->stage == ST_HTTP)
			what = n->kind == CONN_KEY ? "control did not answer GET /key"
						   : "control did not answer the ts2021 upgrade";
		else if (n && n->stage == ST_HANDSHAKE)
			what = "control did not answer the Noise handshake (wrong server key "
			       "from /key?)";
		fail(c, false, -ETIMEDOUT, "%s within %u ms", what, c->dial_timeout_ms);
		if (n && n->stage == ST_HANDSHAKE)
			c->fail_refetch_key = true;
	} else if (c->phase == PH_REGISTER) {
		fail(c, false, -ETIMEDOUT, "%s within %u ms", c->deadline_what,
		     c->request_timeout_ms);
	}
	settle(c);
}

static void on_watchdog(uv_timer_t *t)
{
	struct control *c = t->data;

	fail(c, false, -ETIMEDOUT, "no map message from control for %u ms (watchdog)",
	     c->watchdog_ms);
	settle(c);
}

static void on_fallback(uv_timer_t *t)
{
	struct control *c = t->data;

	if (c->phase == PH_DIAL && !c->tls && !c->tls_failed && c->tls_port) {
		log_debug("port %u has not answered within %d ms: trying TLS on port %u",
			  c->plain_port, CONTROL_FALLBACK_MS, c->tls_port);
		c->tls = conn_new(c, CONN_NOISE, true, c->tls_port);
	}
	settle(c);
}

static void start_dial(struct control *c)
{
	c->phase = PH_DIAL;
	c->plain_failed = c->tls_failed = false;
	c->race_rank = -1;
	if (c->plain_port) {
		c->plain = conn_new(c, CONN_NOISE, false, c->plain_port);
		if (c->tls_port)
			uv_timer_start(&c->fallback_timer, on_fallback, CONTROL_FALLBACK_MS, 0);
	} else {
		c->tls = conn_new(c, CONN_NOISE, true, c->tls_port);
	}
}

/* Whether a name must be resolved here: the control host unless every
 * connection goes through a proxy (which resolves it), the proxy host when
 * one is used. */
static bool slot_needed(const struct control *c, size_t slot)
{
	if (slot == SLOT_PROXY)
		return c->cache[SLOT_PROXY].host[0] != '\0';
	return !(c->use_proxy[0] && c->use_proxy[1]);
}

static void after_resolve(struct control *c)
{
	size_t i;

	for (i = 0; i < N_SLOTS; i++) {
		struct rcache *rc = &c->cache[i];

		if (!slot_needed(c, i) || rc->literal || rc->n)
			continue;
		fail(c, false, rc->last_err ? rc->last_err : -EHOSTUNREACH, "cannot resolve %s: %s",
		     rc->host, strerror(-(rc->last_err ? rc->last_err : -EHOSTUNREACH)));
		return;
	}
	if (c->have_server_key) {
		start_dial(c);
		return;
	}
	c->phase = PH_KEY;
	c->key_conn = conn_new(c, CONN_KEY, c->https, c->url_port);
}

void control_resolve_done(struct control_resolve *req, int status,
			  const struct sockaddr_storage *addrs, size_t n)
{
	struct control *c = req->c;
	struct rcache *rc;
	size_t i, k = 0;

	if (!c) {
		free(req);
		return;
	}
	rc = &c->cache[req->slot];
	c->resolving[req->slot] = NULL;
	free(req);
	if (status == 0) {
		for (i = 0; i < n && k < CONTROL_RESOLVE_MAX_ADDRS; i++) {
			if (addrs[i].ss_family != AF_INET && addrs[i].ss_family != AF_INET6)
				continue;
			rc->addrs[k++] = addrs[i];
		}
	}
	if (k) {
		rc->n = k;
		rc->fetched_ms = now_ms();
		rc->last_err = 0;
	} else {
		/* Keep serving a stale answer: the supervisor may be away. */
		rc->last_err = status < 0 ? status : -EHOSTUNREACH;
		if (rc->n)
			log_warn_r(rc->last_err, "resolve %s failed; using the cached answer",
				   rc->host);
	}
	settle(c);
}

static bool proxy_for(struct control *c, bool tls)
{
	const char *p = tls ? c->https_proxy : c->http_proxy;

	return p && p[0] && !(c->no_proxy && no_proxy_match(c->no_proxy, c->host));
}

static void start_cycle(struct control *c)
{
	struct control_resolve *asked[N_SLOTS];
	size_t i;

	c->phase = PH_RESOLVE;
	c->fail_refetch_key = false;
	uv_timer_start(&c->deadline_timer, on_deadline, c->dial_timeout_ms, 0);
	if (!c->status_sent)
		set_status(c, CONTROL_DOWN, 0, NULL);
	/* One proxy name at most: the https one if TLS is used, else http. */
	c->use_proxy[0] = proxy_for(c, false);
	c->use_proxy[1] = proxy_for(c, true);
	c->cache[SLOT_PROXY].host[0] = '\0';
	if (c->use_proxy[0] || c->use_proxy[1]) {
		const char *p = c->use_proxy[1] ? c->https_proxy : c->http_proxy;
		bool https = false;
		struct rcache *rc = &c->cache[SLOT_PROXY];
		char host[HOST_MAX];
		uint16_t port = 0;

		if (parse_url(p, &https, host, &port, true, true) == 0) {
			if (strcmp(rc->host, host)) {
				*rc = (struct rcache){0};
				strscpy(rc->host, host, sizeof(rc->host));
			}
			rc->port = port ? port : 1080;
			rc->literal = is_literal(host);
		}
		if (c->use_proxy[0] && c->use_proxy[1] && strcmp(c->http_proxy, c->https_proxy))
			log_warn("HTTP_PROXY and HTTPS_PROXY differ: both ts2021 attempts use "
				 "%s's host for name resolution",
				 c->use_proxy[1] ? "HTTPS_PROXY" : "HTTP_PROXY");
	}
	/* Every request is registered before the first is asked, so that an
	 * answer given from inside the callback cannot start the next step
	 * while another name is still missing. */
	for (i = 0; i < N_SLOTS; i++) {
		struct rcache *rc = &c->cache[i];

		asked[i] = NULL;
		if (!slot_needed(c, i) || rc->literal || c->resolving[i])
			continue;
		if (rc->n && now_ms() - rc->fetched_ms < CONTROL_RESOLVE_TTL_MS)
			continue;
		if (!c->resolve) {
			rc->last_err = -ENOSYS;
			continue;
		}
		asked[i] = xcalloc(1, sizeof(*asked[i]));
		asked[i]->c = c;
		asked[i]->slot = (int)i;
		c->resolving[i] = asked[i];
	}
	for (i = 0; i < N_SLOTS; i++)
		if (asked[i])
			c->resolve(c->resolve_arg, c->cache[i].host, asked[i]);
	settle(c);
}

static void on_backoff(uv_timer_t *t)
{
	struct control *c = t->data;

	start_cycle(c);
}

static void teardown(struct control *c)
{
	conn_free(c->key_conn);
	conn_free(c->plain);
	conn_free(c->tls);
	conn_free(c->noise);
	c->key_conn = c->plain = c->tls = c->noise = NULL;
	c->stream = c->lite = NULL;
	uv_timer_stop(&c->fallback_timer);
	uv_timer_stop(&c->deadline_timer);
	uv_timer_stop(&c->watchdog_timer);
	uv_timer_stop(&c->lite_timer);
	mapstream_destroy(&c->ms);
	c->lite_ok = false;
	c->lite_dirty = false;
}

/* Remembers the most telling error of the race: the attempt that got
 * furthest (connect < HTTP < handshake), the later one on a tie. */
static void race_note(struct control *c, struct conn *n)
{
	int rank = (int)n->stage;

	if (rank >= c->race_rank) {
		c->race_rank = rank;
		c->race_err = n->err;
		strscpy(c->race_msg, n->msg, sizeof(c->race_msg));
	}
}

static void settle(struct control *c)
{
	if (c->closing)
		return;
	if (c->phase == PH_RESOLVE && !c->fail_pending && !c->resolving[0] && !c->resolving[1])
		after_resolve(c);
	if (c->key_conn) {
		if (c->key_conn->dead) {
			fail(c, false, c->key_conn->err, "%s", c->key_conn->msg);
		} else if (c->key_conn->stage == ST_DONE) {
			conn_free(c->key_conn);
			c->key_conn = NULL;
			start_dial(c);
		}
	}
	if (c->phase == PH_DIAL && !c->fail_pending) {
		struct conn *won = NULL;

		if (c->plain && c->plain->dead) {
			race_note(c, c->plain);
			if (c->plain->stage == ST_HANDSHAKE)
				c->fail_refetch_key = true;
			conn_free(c->plain);
			c->plain = NULL;
			c->plain_failed = true;
			uv_timer_stop(&c->fallback_timer);
			if (!c->tls && c->tls_port && !c->tls_failed) {
				log_debug("port %u failed: trying TLS on port %u", c->plain_port,
					  c->tls_port);
				c->tls = conn_new(c, CONN_NOISE, true, c->tls_port);
			}
		}
		if (c->tls && c->tls->dead) {
			race_note(c, c->tls);
			if (c->tls->stage == ST_HANDSHAKE)
				c->fail_refetch_key = true;
			conn_free(c->tls);
			c->tls = NULL;
			c->tls_failed = true;
		}
		if (c->plain && c->plain->stage == ST_OPEN)
			won = c->plain;
		else if (c->tls && c->tls->stage == ST_OPEN)
			won = c->tls;
		if (won) {
			uv_timer_stop(&c->fallback_timer);
			if (won == c->plain) {
				conn_free(c->tls);
			} else {
				conn_free(c->plain);
			}
			c->plain = c->tls = NULL;
			c->noise = won;
			log_info("connected to control %s port %u (%s)", c->host, won->port,
				 won->tls ? "TLS" : "plain");
			send_register(c);
		} else if (!c->plain && !c->tls) {
			fail(c, false, c->race_err, "%s", c->race_msg);
		}
	}
	if (c->noise && c->noise->dead)
		fail(c, false, c->noise->err, "%s", c->noise->msg);
	if (c->phase == PH_LOGGED_OUT && !c->fail_pending) {
		teardown(c);
		set_status(c, CONTROL_LOGGED_OUT, 0, "logged out");
		return;
	}
	if (!c->fail_pending)
		return;

	c->fail_pending = false;
	teardown(c);
	if (c->fail_refetch_key)
		c->have_server_key = false;
	if (c->fail_fatal) {
		c->phase = PH_FATAL;
		log_err("%s", c->fail_msg);
		set_status(c, CONTROL_ERROR, c->fail_err, c->fail_msg);
		return;
	}
	{
		uint64_t d;

		if (c->retry_after_ms) {
			d = c->retry_after_ms;
			c->retry_after_ms = 0;
		} else {
			c->attempts++;
			d = (uint64_t)c->attempts * c->attempts * 10;
			if (d > c->backoff_max_ms)
				d = c->backoff_max_ms;
			d = d / 2 + randombytes_uniform((uint32_t)d + 1);
		}
		c->phase = PH_BACKOFF;
		log_warn("%s; reconnecting in %" PRIu64 " ms", c->fail_msg, d);
		set_status(c, CONTROL_DOWN, c->fail_err, c->fail_msg);
		uv_timer_start(&c->backoff_timer, on_backoff, d, 0);
	}
}

/* ---- public ---- */

static char *xstrdup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

int control_new(const struct control_config *cfg, struct control **out, const char **why)
{
	struct control *c;
	uint8_t digest[HASH_LEN];
	size_t i;
	bool https = false;
	char host[HOST_MAX];
	uint16_t port = 0;
	uv_timer_t *timers[6];

	*out = NULL;
	if (!cfg->loop || !cfg->control_url || !cfg->hostname || !cfg->on_state) {
		*why = "loop, control_url, hostname and on_state are required";
		return -EINVAL;
	}
	if (parse_url(cfg->control_url, &https, host, &port, false, false) < 0) {
		*why = "control_url is not http(s)://host[:port]";
		return -EINVAL;
	}
	if (https && (!cfg->ca_pem || !cfg->ca_pem_len)) {
		*why = "an https control URL needs CA certificates";
		return -EINVAL;
	}
	if (cfg->n_tags > CONTROL_MAX_TAGS) {
		*why = "too many tags";
		return -EINVAL;
	}
	if ((cfg->https_proxy && !strncasecmp(cfg->https_proxy, "https://", 8)) ||
	    (cfg->http_proxy && !strncasecmp(cfg->http_proxy, "https://", 8))) {
		*why = "https:// proxies are not supported (use an http:// proxy URL)";
		return -EINVAL;
	}
	c = xcalloc(1, sizeof(*c));
	c->loop = cfg->loop;
	c->https = https;
	strscpy(c->host, host, sizeof(c->host));
	c->url_port = port ? port : (https ? 443 : 80);
	/* Port rules (docs/tailscale-protocol.md §2.2). */
	if (https && !port) {
		c->plain_port = 80;
		c->tls_port = 443;
	} else if (https) {
		c->tls_port = port;
	} else {
		c->plain_port = c->url_port;
		c->tls_port = is_private_host(host) ? 0 : 443;
	}
	if (cfg->http_port)
		c->plain_port = cfg->http_port;
	if (cfg->https_port)
		c->tls_port = cfg->https_port;
	if (!cfg->ca_pem)
		c->tls_port = 0;
	if (cfg->ca_pem) {
		c->ca_pem = xmalloc(cfg->ca_pem_len);
		memcpy(c->ca_pem, cfg->ca_pem, cfg->ca_pem_len);
		c->ca_pem_len = cfg->ca_pem_len;
	}
	memcpy(c->machine_priv, cfg->machine_priv, KEY_LEN);
	memcpy(c->node_priv, cfg->node_priv, KEY_LEN);
	memcpy(c->nl_pub, cfg->nl_pub, KEY_LEN);
	memcpy(c->disco_pub, cfg->disco_pub, KEY_LEN);
	if (keys_public(c->node_pub, c->node_priv) < 0) {
		free(c->ca_pem);
		sodium_memzero(c, sizeof(*c));
		free(c);
		*why = "invalid node key";
		return -EINVAL;
	}
	c->auth_key = xstrdup_or_null(cfg->auth_key && cfg->auth_key[0] ? cfg->auth_key : NULL);
	c->hostname = xstrdup(cfg->hostname);
	c->n_tags = cfg->n_tags;
	c->tags = cfg->n_tags ? xcalloc(cfg->n_tags, sizeof(char *)) : NULL;
	for (i = 0; i < cfg->n_tags; i++)
		c->tags[i] = xstrdup(cfg->tags[i]);
	c->ephemeral = cfg->ephemeral;
	c->registered = cfg->node_registered;
	if (cfg->backend_log_id) {
		strscpy(c->log_id, cfg->backend_log_id, sizeof(c->log_id));
	} else {
		/* Stable per node key, reveals nothing about it. */
		hash_blake2s(digest, (const uint8_t *)"tscni-backend-log-id", 20, c->node_pub,
			     KEY_LEN);
		for (i = 0; i < HASH_LEN; i++)
			snprintf(c->log_id + 2 * i, 3, "%02x", digest[i]);
	}
	c->os_version = xstrdup(cfg->os_version ? cfg->os_version : "");
	c->http_proxy = xstrdup_or_null(cfg->http_proxy);
	c->https_proxy = xstrdup_or_null(cfg->https_proxy);
	c->no_proxy = xstrdup_or_null(cfg->no_proxy);
	c->resolve = cfg->resolve;
	c->resolve_arg = cfg->resolve_arg;
	c->on_netmap = cfg->on_netmap;
	c->on_self_addresses = cfg->on_self_addresses;
	c->on_state = cfg->on_state;
	c->cb_arg = cfg->cb_arg;
	c->dial_timeout_ms = cfg->dial_timeout_ms ? cfg->dial_timeout_ms : CONTROL_DIAL_TIMEOUT_MS;
	c->request_timeout_ms =
		cfg->request_timeout_ms ? cfg->request_timeout_ms : CONTROL_REQUEST_TIMEOUT_MS;
	c->watchdog_ms = cfg->watchdog_ms ? cfg->watchdog_ms : CONTROL_WATCHDOG_MS;
	c->backoff_max_ms = cfg->backoff_max_ms ? cfg->backoff_max_ms : CONTROL_BACKOFF_MAX_MS;
	c->test_flags = cfg->test_flags;
	c->capver = capver_claim();
	strscpy(c->cache[SLOT_CONTROL].host, host, sizeof(c->cache[SLOT_CONTROL].host));
	c->cache[SLOT_CONTROL].literal = is_literal(host);

	c->multi = curl_multi_init();
	if (!c->multi)
		abort();
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, curl_sock_cb);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
	timers[0] = &c->curl_timer;
	timers[1] = &c->fallback_timer;
	timers[2] = &c->deadline_timer;
	timers[3] = &c->watchdog_timer;
	timers[4] = &c->backoff_timer;
	timers[5] = &c->lite_timer;
	for (i = 0; i < 6; i++) {
		uv_timer_init(c->loop, timers[i]);
		timers[i]->data = c;
		c->handles_open++;
	}
	c->preferred_derp = 0;
	*out = c;
	return 0;
}

int control_start(struct control *c)
{
	if (c->started)
		return -EALREADY;
	c->started = true;
	{
		size_t gaps[8], n = capver_gaps(gaps, 8), i, tn;
		const struct capver_row *t = capver_table(&tn);

		for (i = 0; i < n && i < 8; i++)
			log_warn("capability version %d: obligation of %d not met: %s (%s)",
				 c->capver, t[gaps[i]].version, t[gaps[i]].promise, t[gaps[i]].how);
	}
	start_cycle(c);
	return 0;
}

static void lite_changed(struct control *c)
{
	if (c->phase == PH_RUNNING) {
		send_lite(c);
		settle(c);
	}
}

int control_set_endpoints(struct control *c, const struct netmap_endpoint *eps, const int *types,
			  size_t n)
{
	if (n > CONTROL_MAX_ENDPOINTS)
		return -EINVAL;
	if (n == c->n_eps && !memcmp(c->eps, eps, n * sizeof(*eps)) &&
	    !memcmp(c->ep_types, types, n * sizeof(*types)))
		return 0;
	memcpy(c->eps, eps, n * sizeof(*eps));
	memcpy(c->ep_types, types, n * sizeof(*types));
	c->n_eps = n;
	lite_changed(c);
	return 0;
}

void control_set_disco_key(struct control *c, const uint8_t disco_pub[static KEY_LEN])
{
	if (!memcmp(c->disco_pub, disco_pub, KEY_LEN))
		return;
	memcpy(c->disco_pub, disco_pub, KEY_LEN);
	lite_changed(c);
}

void control_set_preferred_derp(struct control *c, int region)
{
	if (region == c->preferred_derp)
		return;
	c->preferred_derp = region;
	lite_changed(c);
}

int control_set_hostname(struct control *c, const char *hostname)
{
	if (!hostname || !hostname[0] || strlen(hostname) > 255)
		return -EINVAL;
	if (!strcmp(hostname, c->hostname))
		return 0;
	free(c->hostname);
	c->hostname = xstrdup(hostname);
	lite_changed(c);
	return 0;
}

void control_logout(struct control *c)
{
	c->logout_wanted = true;
	if (c->phase == PH_RUNNING) {
		send_register(c);
		settle(c);
	} else if (c->phase == PH_BACKOFF || c->phase == PH_IDLE || c->phase == PH_FATAL) {
		uv_timer_stop(&c->backoff_timer);
		c->started = true;
		start_cycle(c);
	}
	/* Otherwise the cycle under way sends the logout once connected
	 * (send_register looks at logout_wanted), or a register in flight is
	 * followed by it: register_done starts the stream only without it. */
}

struct netmap *control_netmap(const struct control *c)
{
	return c->nm;
}

const char *control_transport(const struct control *c)
{
	if (!c->noise || c->noise->dead)
		return NULL;
	return c->noise->tls ? "tls" : "plain";
}

bool control_lite_accepted(const struct control *c)
{
	return c->lite_ok;
}

static void control_free(struct control *c)
{
	size_t i;
	control_closed_fn *cb = c->closed_cb;
	void *arg = c->closed_arg;

	netmap_put(c->nm);
	free(c->ca_pem);
	if (c->auth_key) {
		sodium_memzero(c->auth_key, strlen(c->auth_key));
		free(c->auth_key);
	}
	free(c->hostname);
	for (i = 0; i < c->n_tags; i++)
		free(c->tags[i]);
	free(c->tags);
	free(c->os_version);
	free(c->http_proxy);
	free(c->https_proxy);
	free(c->no_proxy);
	sodium_memzero(c, sizeof(*c));
	free(c);
	if (cb)
		cb(arg);
}

static void on_timer_closed(uv_handle_t *h)
{
	struct control *c = h->data;

	if (--c->handles_open == 0)
		control_free(c);
}

void control_close(struct control *c, control_closed_fn *cb, void *arg)
{
	size_t i;
	uv_timer_t *timers[6] = {&c->curl_timer,     &c->fallback_timer, &c->deadline_timer,
				 &c->watchdog_timer, &c->backoff_timer,	 &c->lite_timer};

	c->closing = true;
	c->closed_cb = cb;
	c->closed_arg = arg;
	for (i = 0; i < N_SLOTS; i++)
		if (c->resolving[i])
			c->resolving[i]->c = NULL; /* freed by control_resolve_done */
	teardown(c);
	curl_multi_cleanup(c->multi);
	c->multi = NULL;
	for (i = 0; i < c->n_socks; i++)
		close_poll(c, c->socks[i].poll);
	c->n_socks = 0;
	for (i = 0; i < 6; i++) {
		uv_timer_stop(timers[i]);
		uv_close((uv_handle_t *)timers[i], on_timer_closed);
	}
}
