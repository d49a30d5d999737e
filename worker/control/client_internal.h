/* What the files of the control client (client.h) share, and nothing
 * outside this folder includes. The shape of it:
 *
 *   start ─► resolve names ─► GET /key (unless cached) ─► dial race ─► register
 *     ▲        (caller's cb)     (CONN_KEY)                 plain 80 │ TLS 443
 *     │                                                  (CONN_NOISE, the first
 *     │                                                  to finish Noise wins)
 *     │                                                            │
 *   backoff ◄── any failure ◄── map stream + lite updates ◄────────┘
 *
 * Every libuv callback ends in client__settle(), the one place where the
 * state machine moves on: I/O callbacks only record what happened (a
 * connection finished its handshake, failed, a response arrived) so that
 * nothing is freed under a caller's feet — nghttp2 and curl callbacks run
 * deep inside their libraries. client__settle() then frees dead connections,
 * starts the next step, or tears everything down and schedules a reconnect.
 *
 * The files, one concern each:
 *   http1.c    the HTTP/1.1 answer head and the /key body (outside bytes);
 *   url.c      control and proxy URLs, NO_PROXY, the ts2021 port rules;
 *   resolve.c  the name cache and the caller's resolver;
 *   curl_uv.c  curl multi driven on the libuv loop;
 *   conn.c     one connection: curl connect, HTTP/1.1, the Noise handshake;
 *   h2.c       Noise records carrying HTTP/2 (nghttp2), one h2req a stream;
 *   request.c  register, the map stream, lite updates, pings;
 *   client.c   the cycle (client__settle) and the public functions. */
#ifndef TSCNI_WORKER_CONTROL_CLIENT_INTERNAL_H
#define TSCNI_WORKER_CONTROL_CLIENT_INTERNAL_H

#include "client.h"

#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <nghttp2/nghttp2.h>

#include "hash.h"
#include "mapstream.h"
#include "mem.h"
#include "ts2021.h"

enum client_internal_limits {
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

/* The Upgrade token of the ts2021 HTTP request and answer. */
#define CLIENT_UPGRADE_PROTO "tailscale-control-protocol"

/* A growing byte buffer (connection input and output, answer bodies). */
struct sbuf {
	uint8_t *p;
	size_t len, cap;
};

/* Room for n more bytes at b->p + b->len. */
static inline void sbuf_reserve(struct sbuf *b, size_t n)
{
	size_t cap = b->cap ? b->cap : 1024;

	if (b->len + n <= b->cap)
		return;
	while (cap < b->len + n)
		cap *= 2;
	b->p = xrealloc(b->p, cap);
	b->cap = cap;
}

static inline void sbuf_add(struct sbuf *b, const void *p, size_t n)
{
	if (!n)
		return;
	sbuf_reserve(b, n);
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static inline void sbuf_consume(struct sbuf *b, size_t n)
{
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
}

static inline void sbuf_free(struct sbuf *b)
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

/* One connection to control (or through a proxy to it). curl connects it;
 * then the socket is ours (conn.c). */
struct conn {
	struct client *c;
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
	/* The HTTP/1.1 answer (GET /key, or the 101 of the upgrade). */
	bool head_done;
	size_t head_len;
	struct client_http_head head;
	/* Noise: the handshake, then the transport keys and record reader. */
	struct ts2021_client hs;
	bool hs_live;
	struct ts2021_conn nc;
	struct ts2021_reader rd;
	struct ts2021_early early;
	bool early_done;
	/* HTTP/2 inside the records. */
	nghttp2_session *h2;
	bool in_recv; /* inside nghttp2_session_mem_recv: no mem_send now */
	struct h2req *reqs[MAX_REQS];
	/* Set once by client__conn_error; client__settle acts on it. */
	bool dead;
	int err;
	char msg[MSG_MAX];
};

/* A socket curl asked us to watch while it connects. */
struct csock {
	curl_socket_t fd;
	uv_poll_t *poll;
};

struct client_resolve {
	struct client *c; /* NULL once the control client is gone */
	int slot;
};

/* One name to resolve (control's host, or the proxy's) and its answer. */
struct rcache {
	char host[HOST_MAX];
	uint16_t port; /* the port curl connects to for this name */
	bool literal;
	struct sockaddr_storage addrs[CLIENT_RESOLVE_MAX_ADDRS];
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

/* Where control is and how to reach it; fixed by client_new, except the
 * server key, which is fetched again when the handshake says it is stale. */
struct client_server {
	bool https;
	char host[HOST_MAX];
	uint16_t url_port;
	uint16_t plain_port, tls_port; /* 0: no such attempt */
	const char *ca_pem;	       /* borrowed (client_config) */
	size_t ca_pem_len;
	char *http_proxy, *https_proxy, *no_proxy;
	bool have_server_key;
	uint8_t server_pub[KEY_LEN];
};

/* This node: its keys and what Hostinfo and the map requests say of it.
 * The setters change disco_pub, hostname, the endpoints and the DERP
 * region, and each change is sent in a lite update. */
struct client_node {
	uint8_t machine_priv[KEY_LEN];
	uint8_t node_priv[KEY_LEN];
	uint8_t node_pub[KEY_LEN];
	uint8_t nl_pub[KEY_LEN];
	uint8_t disco_pub[KEY_LEN];
	uint8_t old_node_pub[KEY_LEN]; /* all zero: no rotation */
	char *auth_key;
	char *hostname;
	char **tags;
	size_t n_tags;
	bool ephemeral;
	char log_id[2 * HASH_LEN + 1];
	char *os_version;
	struct netmap_endpoint eps[CLIENT_MAX_ENDPOINTS];
	int ep_types[CLIENT_MAX_ENDPOINTS];
	size_t n_eps;
	int preferred_derp;
	int derp_lat_regions[CLIENT_MAX_DERP_LATENCY];
	double derp_lat_secs[CLIENT_MAX_DERP_LATENCY];
	size_t n_derp_lat;
};

/* The caller's callbacks and time limits, from struct client_config. */
struct client_settings {
	client_resolve_fn *resolve;
	void *resolve_arg;
	client_netmap_fn *on_netmap;
	client_addresses_fn *on_self_addresses;
	client_state_fn *on_state;
	void *cb_arg;
	unsigned int dial_timeout_ms, request_timeout_ms, watchdog_ms, backoff_max_ms;
	unsigned int test_flags;
};

/* curl multi on the loop (curl_uv.c): the sockets curl watches while it
 * connects, and its timer. */
struct curl_uv {
	CURLM *multi;
	struct csock socks[MAX_SOCKS];
	size_t n_socks;
	uv_timer_t timer;
};

/* The names to resolve (resolve.c). */
struct client_names {
	struct rcache cache[N_SLOTS];
	bool use_proxy[2]; /* [tls]: whether that kind of attempt goes through a proxy */
	struct client_resolve *resolving[N_SLOTS];
};

/* The connections of one cycle: GET /key, the plain and TLS attempts of the
 * dial race, and the Noise connection that won it. */
struct client_dial {
	struct conn *key_conn;
	struct conn *plain, *tls, *noise;
	bool plain_failed, tls_failed;
	int race_err;
	char race_msg[MSG_MAX];
	int race_rank;
	uv_timer_t fallback_timer;
};

/* The failure of the cycle under way, recorded by client__fail. */
struct client_failure {
	bool pending, fatal, refetch_key;
	int err;
	int phase; /* enum client_phase when it was recorded (client_failure_kind) */
	char msg[MSG_MAX];
};

/* The map stream and what it delivered. */
struct client_map {
	struct mapstream ms;
	struct h2req *stream;
	bool stream_fresh; /* no message applied yet on this stream */
	struct netmap *nm;
	struct mapjson_peer_cache *peers; /* the last full map's peers, NULL until one */
	struct ip_prefix self_addrs[NETMAP_MAX_ADDRESSES];
	size_t n_self_addrs;
	bool have_self_addrs;
	char last_ping_url[PING_URL_MAX];
	uv_timer_t watchdog_timer;
};

/* Lite updates (Stream false, OmitPeers true). After a (re)registration
 * they wait for the stream's first map, up to CLIENT_LITE_HOLD_MS: that map
 * brings the home DERP region, so the first lite carries it instead of a
 * second lite following the first. A control server tells every other node
 * of each one (upstream's testcontrol sends each a whole map), so one lite
 * fewer per pod start is one map fewer for every node of the tailnet. */
struct client_lite {
	struct h2req *req; /* the one in flight */
	bool dirty, ok;
	uint64_t hold_until; /* uv_now(): held while the stream is fresh until then */
	unsigned int attempts;
	uv_timer_t timer;
};

struct client {
	uv_loop_t *loop;
	int capver;
	struct client_server srv;
	struct client_node node;
	struct client_settings cfg;
	struct curl_uv curl;
	struct client_names names;
	struct client_dial dial;
	struct client_failure failure;
	struct client_map map;
	struct client_lite lite;

	/* The cycle. */
	enum phase phase;
	bool started;
	unsigned int attempts;
	uint64_t retry_after_ms; /* a 429's Retry-After for the next backoff */
	const char *deadline_what;
	uv_timer_t deadline_timer, backoff_timer;
	bool registered;	/* control accepted this node key (this process) */
	uint64_t registered_ns; /* uv_hrtime of the first such answer, 0 */
	bool sent_auth;		/* the register in flight carries the auth key */
	bool logout_wanted;
	enum client_status status;
	bool status_sent;

	int handles_open;
	bool closing;
	client_closed_fn *closed_cb;
	void *closed_arg;
};

/* client.c: the cycle. */
/* Records the failure of the whole attempt; the first one wins (a fatal one
 * replaces a transient one). client__settle() acts on it. */
void client__fail(struct client *c, bool fatal, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void client__set_status(struct client *c, enum client_status st, int err, const char *msg);
/* Moves the state machine on; every libuv callback ends here. */
void client__settle(struct client *c);
/* The deadline_timer callback (dial and register deadlines). */
void client__on_deadline(uv_timer_t *t);

/* url.c */
bool client__is_literal(const char *host);
/* "scheme://host[:port][/]" with host a name, an IPv4 address or [IPv6].
 * *port is 0 when absent. Credentials ("user:pass@") are skipped when
 * allow_userinfo; a URL without a scheme is http when allow_no_scheme.
 * 0 or -EINVAL. */
int client__parse_url(const char *url, bool *https, char host[static HOST_MAX], uint16_t *port,
		      bool allow_userinfo, bool allow_no_scheme);
/* Sets srv's ports from its URL and the config's overrides. */
void client__server_ports(struct client_server *srv, uint16_t port,
			  const struct client_config *cfg);
/* Whether an attempt over TLS (or plain) goes through a proxy. */
bool client__proxy_for(const struct client *c, bool tls);
/* "https://host/path?q" -> "/path?q"; a bare path stays. NULL if none. */
const char *client__url_path(const char *url);

/* resolve.c */
/* Chooses the proxy and asks the caller for every name that is neither
 * a literal nor fresh in the cache; answers may come from inside. */
void client__resolve_start(struct client *c);
/* Once nothing is being resolved: 0 when every needed name has addresses,
 * else -EHOSTUNREACH (or the resolver's error) after client__fail. */
int client__resolve_check(struct client *c);
/* "host:port:addr,addr" for CURLOPT_RESOLVE, so that curl never resolves
 * host itself; NULL for a literal or an empty answer. */
struct curl_slist *client__resolve_entry(const struct rcache *rc);

/* curl_uv.c */
void client__curl_init(struct client *c);
/* Cleans the multi handle up and closes the polls of the sockets curl
 * still had (the timer is closed with the others by client_close). */
void client__curl_close(struct client *c);
/* Hands fd's poll handle over from curl's list to the caller; NULL when
 * curl was not watching fd. */
uv_poll_t *client__curl_take_poll(struct client *c, curl_socket_t fd);
/* Stops and closes a poll handle; its memory goes in the close callback. */
void client__close_poll(uv_poll_t *p);

/* conn.c */
struct conn *client__conn_new(struct client *c, enum conn_kind kind, bool tls, uint16_t port);
void client__conn_free(struct conn *n);
const char *client__conn_name(const struct conn *n);
/* Marks n dead with its error; the first one wins. */
void client__conn_error(struct conn *n, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* curl has connected n: the socket is ours; sends the HTTP/1.1 request. */
void client__conn_connected(struct conn *n);
void client__conn_update_poll(struct conn *n);
void client__conn_flush(struct conn *n);

/* h2.c */
/* Starts the HTTP/2 session once the Noise handshake is done. */
void client__h2_start(struct conn *n);
/* Opens the Noise records buffered in n->in and feeds them to HTTP/2. */
void client__h2_records(struct conn *n);
/* Submits a POST (or HEAD when body is NULL and kind is REQ_PING) on the
 * Noise connection. Takes body (heap, len bytes). NULL when it cannot. */
struct h2req *client__h2_submit(struct client *c, enum req_kind kind, const char *method,
				const char *path, char *body, size_t len);
void client__req_free(struct h2req *r);

/* request.c */
/* Sends the RegisterRequest (the logout when logout_wanted). */
void client__send_register(struct client *c);
void client__send_lite(struct client *c);
/* A request ended (its stream closed): acts on the answer. */
void client__req_done(struct client *c, struct h2req *r, uint32_t error_code);
/* One message of the map stream. */
void client__map_message(struct client *c, const char *json, size_t len);

#endif
