/* testcontrol: a Tailscale control server for the tests and the local demo.
 * Private to tests/testcontrol/. One thread, one poll(2) loop: every object
 * below is owned by the one struct tc_server and touched only from the loop,
 * so nothing here needs a lock.
 *
 *   net.c      listeners, connections, TLS, HTTP/1.1, the ts2021 upgrade,
 *              Noise records and the nghttp2 server session inside them
 *   control.c  nodes, pre-auth keys, /machine/register, /machine/map, the
 *              map streams and their deltas, the packet filter policy
 *   derp.c     DERP regions (TLS relays) and their STUN responders
 *   admin.c    the loopback JSON admin API
 *   api.c      the Tailscale API subset (OAuth, keys, devices) and the
 *              Headscale API fake, on the --api listener
 *   store.c    the state directory: Noise key, state file, test CA
 */
#ifndef TSCNI_TESTCONTROL_TC_H
#define TSCNI_TESTCONTROL_TC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <jansson.h>
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include "worker/control/ts2021.h"

enum tc_limits {
	TC_HTTP_HDR_MAX = 16 << 10, /* HTTP/1.1 request head */
	TC_HTTP_BODY_MAX = 1 << 20, /* admin request body */
	TC_H2_BODY_MAX = 1 << 20,   /* RegisterRequest / MapRequest body */
	TC_OUT_MAX = 64 << 20,	    /* unsent bytes per connection before we drop it */
	TC_MAX_CONNS = 1024,
	TC_HOSTNAME_MAX = 64,
	TC_DOMAIN_MAX = 64,
	TC_KEEPALIVE_MS = 50 * 1000,
	TC_DERP_REGION = 900, /* the first region's id; the next ones count up */
	TC_DERP_REGIONS_MAX = 4,
	TC_DERP_SENT_MAX = 64, /* peers one DERP client is told about when they go */
	TC_DERP_KEEPALIVE_MS = 60 * 1000,
	TC_CAP_PATCH = 33,	    /* PeersChangedPatch understood */
	TC_CAP_READONLY = 68,	    /* streaming requests are read-only */
	TC_CAP_HOMEDERP = 111,	    /* HomeDERP instead of the legacy DERP string */
	TC_CAP_ALLOWEDIPS = 112,    /* absent AllowedIPs means Addresses */
	TC_API_BODY_MAX = 64 << 10, /* Tailscale/Headscale API request body */
	TC_KEYS_MAX = 4096,	    /* pre-auth keys held (admin and API together) */
};

/* A growable byte buffer. */
struct tc_buf {
	uint8_t *p;
	size_t len, cap;
};

void tc_buf_add(struct tc_buf *b, const void *p, size_t n);
void tc_buf_consume(struct tc_buf *b, size_t n);
void tc_buf_free(struct tc_buf *b);

/* A pre-auth key made through the admin API. */
struct tc_key {
	char key[80];
	char id[24];   /* the API's key id ("k…CNTRL"; Headscale: decimal); may be empty */
	char desc[64]; /* the API's description */
	bool reusable, ephemeral, preauthorized, used;
	long long expires; /* unix seconds, 0 = never */
	long long created;
	long long user_id; /* Headscale user owning it, 0 = none */
	json_t *tags;	   /* array of "tag:x" strings, owned */
	struct tc_key *next;
};

/* A node's peer form for one capability class, valid during one push. */
struct tc_node_cache {
	json_t *full;  /* the Node object */
	char *rest;    /* it without the patchable fields, compact sorted JSON */
	json_t *patch; /* the patchable fields */
};

struct tc_node {
	long long id;
	uint8_t node_key[32];
	uint8_t machine[32];
	uint8_t disco[32];
	bool has_disco, has_machine;
	char hostname[TC_HOSTNAME_MAX];
	uint32_t index;	   /* address index: 100.64.0.0 + index */
	json_t *tags;	   /* array, owned */
	json_t *endpoints; /* array of "ip:port", owned */
	json_t *hostinfo;  /* object as the node sent it, owned, may be NULL */
	json_t *addresses; /* external nodes may bring their own; NULL = from index */
	json_t *routes;	   /* subnet routes it serves (PrimaryRoutes), owned, may be NULL */
	int home_derp;
	int cap;
	unsigned int lite_updates; /* lite updates since the process started (not kept) */
	bool ephemeral, authorized, logged_out, external, wg_only;
	long long key_expiry; /* unix seconds, 0 = none */
	/* Tests of a supervisor's checks: the APIs say the key does not
	 * expire while the netmap says it does (POST /nodes/expire's
	 * hide_from_api). Not kept across restarts. */
	bool api_hides_expiry;
	long long created;
	long long last_seen; /* unix seconds: last register or map request */
	long long user_id;   /* Headscale user of the key it registered with, 0 = none */
	int online;	     /* open map streams */
	struct tc_node_cache cache[3];
	struct tc_node *next;
};

/* One HTTP/2 request inside a Noise connection. */
struct tc_h2req {
	int32_t id;
	char path[64];
	char method[8];
	struct tc_buf body;
	struct tc_buf resp; /* bytes not yet taken by nghttp2 */
	bool resp_eof;
	bool deferred;
	struct tc_map *map; /* set for a map stream */
	struct tc_conn *conn;
	struct tc_h2req *next; /* the connection's open requests */
};

/* A streaming map poll. */
struct tc_map {
	struct tc_h2req *req; /* NULL once the HTTP/2 stream is gone */
	long long node_id;
	int version;
	bool zstd;
	json_t *sent;	   /* "<id>" -> {"rest": string, "patch": object} last sent per peer */
	char *last_self;   /* last "Node" sent, compact sorted JSON */
	char *last_filter; /* last "PacketFilter" sent */
	char *last_dns;	   /* last "DNSConfig" sent */
	unsigned long long last_send_ms;
	struct tc_map *next;
};

/* The listeners' kinds (lfd[] and addr[] are indexed by the first
 * TC_LISTENERS); DERP connections come from the regions' listeners. */
enum tc_conn_kind { TC_CONN_HTTP, TC_CONN_HTTPS, TC_CONN_ADMIN, TC_CONN_API, TC_CONN_DERP };
enum { TC_LISTENERS = TC_CONN_DERP };
enum tc_conn_state { TC_ST_TLS, TC_ST_HTTP, TC_ST_NOISE, TC_ST_DERP, TC_ST_HANG, TC_ST_DEAD };

/* One DERP region: a TLS listener for the relay and a UDP socket for STUN on
 * the same port number. */
struct tc_derp_region {
	int id;
	char host[64];
	int port;
	int lfd, ufd; /* -1 while the region is down */
	bool down;
	uint8_t priv[32], pub[32]; /* the region's DERP server key */
	/* Packets relayed since start (across downs): tests tell a direct path
	 * from a relayed one by how little this grows during a transfer. */
	unsigned long long relayed;
};

struct tc_conn {
	struct tc_server *srv;
	int fd;
	enum tc_conn_kind kind;
	enum tc_conn_state state;
	SSL *ssl;
	bool ssl_want_write;
	struct tc_buf in, out;
	bool close_after_flush;
	/* API "slow" fault: nothing is written before this (monotonic ms). */
	unsigned long long hold_until_ms;
	struct ts2021_conn noise;
	struct ts2021_reader reader;
	bool noise_up;
	nghttp2_session *h2;
	struct tc_h2req *reqs;
	/* DERP connections (kind TC_CONN_DERP). */
	int region; /* index into tc_server.derp */
	bool derp_up, derp_preferred;
	uint8_t derp_key[32];
	uint8_t derp_sent_to[TC_DERP_SENT_MAX][32];
	int derp_nsent;
	unsigned long long derp_last_ms, derp_keepalive_ms;
	struct tc_conn *next;
};

/* Test switches set through the admin API. */
struct tc_switches {
	bool hang;	   /* accept, read, never answer */
	bool garbage;	   /* 101, then junk where the Noise response belongs */
	bool truncate;	   /* the next map message is cut in half and its stream ended */
	bool oversize;	   /* the next map message declares a 2 GiB length */
	bool wrong_key;	   /* /key names a key we do not hold */
	bool no_early;	   /* no early payload after the handshake */
	bool derp_garbage; /* DERP relays an oversized frame header instead of packets */
	bool derp_junk;	   /* DERP relays a ServerInfo of junk instead of packets */
};

struct tc_server {
	char *state_dir;
	char *policy_path;
	uint8_t noise_priv[32], noise_pub[32], wrong_pub[32];
	SSL_CTX *ssl_ctx;
	char ca_path[4096];
	int lfd[TC_LISTENERS]; /* indexed by enum tc_conn_kind; -1 = not listening */
	char addr[TC_LISTENERS][64];
	struct tc_conn *conns;
	int nconns;
	struct tc_node *nodes; /* sorted by id */
	struct tc_key *keys;
	struct tc_map *maps;
	long long next_id;
	uint32_t next_index;
	json_t *policy; /* array of {src, dst}, or NULL = allow all */
	struct tc_derp_region derp[TC_DERP_REGIONS_MAX];
	int nderp;
	int derp_keepalive_ms;
	int min_capver;
	int keepalive_ms;
	bool dirty; /* some node changed: push deltas at the end of this loop turn */
	bool stop;
	struct tc_switches sw;
	char domain[TC_DOMAIN_MAX];
	/* DNSConfig as POST /dns set it (owned); NULL: MagicDNS on, no
	 * resolvers ({"Proxied": true, "Domains": [domain]}). */
	json_t *dns;
	struct tc_api *api; /* OAuth clients, tokens, API keys, faults (api.c) */
	bool api_tls;	    /* --api-tls: the API listener speaks TLS */
};

/* One request on the API listener. The strings point into the connection's
 * input buffer and live until the handler returns. */
struct tc_api_req {
	const char *method, *path; /* path with its query string */
	const char *authorization; /* "" when absent */
	const uint8_t *body;
	size_t len;
};

/* net.c */
int net_listen(struct tc_server *s, enum tc_conn_kind kind, const char *hostport);
/* A listening TCP socket on hostport (IPv4 HOST:PORT, PORT 0 for any);
 * *port_out is the port it got. */
int net_listen_fd(const char *hostport, int *fd_out, int *port_out);
/* host (IPv4, IPv6, or [IPv6]) and port as a socket address. 0 or -EINVAL. */
int net_sockaddr(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len);
int net_run(struct tc_server *s);
/* Queues bytes for the peer of c; for Noise connections they are HTTP/2
 * bytes produced by nghttp2 and sealed here. */
void net_send(struct tc_conn *c, const void *p, size_t n);
/* One HTTP/1.1 response, then the connection closes. */
void net_http_reply(struct tc_conn *c, int status, const char *ctype, const char *body);
/* The same with extra header lines (each ending in \r\n, or NULL) and a
 * body of n bytes. */
void net_http_reply_ex(struct tc_conn *c, int status, const char *ctype, const char *headers,
		       const void *body, size_t n);
/* Appends to a request's response body and wakes nghttp2 for it. */
void net_h2_append(struct tc_h2req *r, const void *p, size_t n, bool eof);
void net_h2_respond(struct tc_h2req *r, int status, const char *ctype, const void *body, size_t n,
		    bool eof);
/* Closes the HTTP/2 stream with RST_STREAM (no more bytes). */
void net_h2_reset(struct tc_h2req *r);

/* derp.c */
int derp_region_open(struct tc_server *s, struct tc_derp_region *r);
/* Closes the region's listeners and ends its connections. */
void derp_region_close(struct tc_server *s, struct tc_derp_region *r);
/* GET /derp on a region's listener: the upgrade, then the ServerKey frame. */
void derp_upgrade(struct tc_conn *c, const char *upgrade, bool fast_start);
void derp_input(struct tc_conn *c);
/* c is going away: PeerGone to every client that sent to it. */
void derp_conn_gone(struct tc_conn *c);
void derp_keepalive(struct tc_server *s, unsigned long long now);
void derp_stun_input(struct tc_derp_region *r);
json_t *derp_map(struct tc_server *s);

/* control.c */
void control_handle(struct tc_conn *c, struct tc_h2req *r);
void control_h2_closed(struct tc_h2req *r);
void control_push(struct tc_server *s);
/* Frees the map streams (at exit, after every connection is gone). */
void control_destroy(struct tc_server *s);
void control_keepalive(struct tc_server *s, unsigned long long now);
struct tc_node *control_find_key(struct tc_server *s, const uint8_t key[static 32]);
struct tc_node *control_find_id(struct tc_server *s, long long id);
void control_node_free(struct tc_node *n);
void control_node_remove(struct tc_server *s, struct tc_node *n);
void control_node_insert(struct tc_server *s, struct tc_node *n);
json_t *control_addresses(const struct tc_node *n);
/* The node's StableID ("TESTCTRL<hex id>", the API's nodeId) in out. */
const char *control_stable_id(const struct tc_node *n, char *out, size_t size);
int control_policy_load(struct tc_server *s, json_t *policy, const char **why);

/* admin.c */
void admin_handle(struct tc_conn *c, const char *method, const char *path, const uint8_t *body,
		  size_t n);

/* api.c */
struct tc_api *api_new(void);
void api_free(struct tc_api *a);
void api_handle(struct tc_conn *c, const struct tc_api_req *r);
/* The API's admin routes (/oauth-clients, /headscale/..., /api-faults).
 * True when path was one of them (and answered). */
bool api_admin(struct tc_conn *c, const char *method, const char *path, json_t *req);
/* How many pre-auth keys the server holds. */
size_t api_count_keys(const struct tc_server *s);

/* store.c */
int store_noise_key(struct tc_server *s);
int store_load(struct tc_server *s);
int store_save(struct tc_server *s);
int store_tls(struct tc_server *s);
long long tc_now(void);
void tc_time_format(char out[static 40], long long t);

#endif
