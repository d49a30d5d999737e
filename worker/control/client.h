/* The ts2021 control client: one Tailscale node's conversation with its
 * control server, driven on ONE libuv loop that the caller owns (the
 * worker's control thread). It starts no thread and opens no file after
 * client_global_init(): names are resolved by a caller-supplied callback
 * (the worker forwards them to the supervisor over fd 3) with a small cache
 * here, so reconnects work while the supervisor is away; TLS trusts CA
 * certificates handed over in memory.
 *
 * What it does (docs/tailscale-protocol.md §2-§4):
 *   GET /key (<= 64 KiB) over the control URL's scheme;
 *   the ts2021 upgrade: plain HTTP to port 80 (or the http:// URL's port),
 *     TLS to 443 (or the https:// URL's port) started when the plain
 *     attempt has not completed the handshake within 500 ms or has failed;
 *     HTTPS_PROXY / HTTP_PROXY / NO_PROXY honoured by an HTTP CONNECT
 *     through the proxy (libcurl, CONNECT_ONLY, driven by curl multi);
 *   the Noise IK handshake, the early payload, then HTTP/2 with prior
 *     knowledge (nghttp2 client session) inside the Noise records;
 *   POST /machine/register with the auth key; POST /machine/map with
 *     Stream, KeepAlive and zstd, read through mapstream.c, applied by
 *     netmap.c; a "lite" update (Stream false, OmitPeers true) after
 *     every (re)register and stream start and whenever endpoints, the disco
 *     key, the preferred DERP region or Hostinfo change;
 *   reconnects with jittered exponential backoff (at most 30 s) and a 120 s
 *     watchdog on the stream; PingRequests answered (HEAD over Noise; c2n
 *     answered 404, as by a client without c2n); logout.
 *
 * Every failure is logged here, once, as one line naming the fault, and
 * handed to on_state with the same text: the caller need not log it again.
 *
 * Callbacks run on the loop thread: from libuv callbacks, and also from
 * inside client_resolve_done(), client_set_*() and client_logout(). A
 * callback must not call client_close(); it may call the setters.
 *
 * The implementation is one file per concern; client_internal.h lists them. */
#ifndef TSCNI_WORKER_CONTROL_CLIENT_H
#define TSCNI_WORKER_CONTROL_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <uv.h>

#include "ip.h"
#include "keys.h"
#include "netmap.h"
#include "validate.h"

struct client;
struct client_resolve;

enum client_limits {
	CLIENT_KEY_MAX_BODY = 64 << 10,	   /* GET /key answer body */
	CLIENT_HTTP_MAX_HEAD = 16 << 10,   /* HTTP/1.1 status line + headers */
	CLIENT_FALLBACK_MS = 500,	   /* start TLS if plain has not succeeded */
	CLIENT_DIAL_TIMEOUT_MS = 10000,	   /* /key + dial + upgrade + Noise */
	CLIENT_REQUEST_TIMEOUT_MS = 30000, /* register, lite update, logout */
	/* After a (re)registration the first lite update waits this long for
	 * the stream's first map, so that it carries the home DERP region. */
	CLIENT_LITE_HOLD_MS = 250,
	CLIENT_WATCHDOG_MS = 120000, /* no map message for this long */
	CLIENT_BACKOFF_MAX_MS = 30000,
	CLIENT_RESOLVE_TTL_MS = 300000, /* cached names are refreshed after */
	CLIENT_RESOLVE_MAX_ADDRS = 8,
	CLIENT_MAX_ENDPOINTS = NETMAP_MAX_ENDPOINTS,
	CLIENT_MAX_DERP_LATENCY = 64, /* NetInfo.DERPLatency entries (a netcheck's regions) */
	CLIENT_MAX_TAGS = 64,	      /* POD_TAGS_MAX (common/validate.h) */
};

/* on_state's status. DOWN: not connected, retrying (err/msg say why, or 0
 * and NULL while starting). UP: the first netmap was applied and the first
 * lite update accepted. ERROR: fatal, no retry (interactive login wanted,
 * auth key refused, node not authorized, node key expired, tailnet lock);
 * msg says what to do. LOGGED_OUT: client_logout() finished. */
enum client_status {
	CLIENT_DOWN,
	CLIENT_UP,
	CLIENT_ERROR,
	CLIENT_LOGGED_OUT,
};

/* Test switches (struct client_config.test_flags). */
enum client_test_flags {
	CLIENT_TEST_NO_LITE = START_TEST_NO_LITE, /* never send lite updates (the negative test) */
};

/* Name resolution. The control client calls resolve(arg, host, req) for a
 * name that is not an IP literal and not fresh in its cache; the callee
 * answers exactly once, from inside the call or later on the loop thread,
 * with client_resolve_done(req, ...). req stays valid until then, even if
 * the control client was closed meanwhile. */
typedef void client_resolve_fn(void *arg, const char *host, struct client_resolve *req);
/* status 0 with n >= 1 addresses (sockaddr_in / sockaddr_in6; the port is
 * ignored), or a negative errno. At most CLIENT_RESOLVE_MAX_ADDRS are used. */
void client_resolve_done(struct client_resolve *req, int status,
			 const struct sockaddr_storage *addrs, size_t n);

/* nm is borrowed for the call: take netmap_get() to keep it. */
typedef void client_netmap_fn(void *arg, struct netmap *nm);
typedef void client_addresses_fn(void *arg, const struct ip_prefix *addrs, size_t n);
typedef void client_state_fn(void *arg, enum client_status status, int err, const char *msg);

struct client_config {
	uv_loop_t *loop;
	/* "https://host[:port]" or "http://host[:port]", no path. */
	const char *control_url;
	/* PEM CA certificates for https, borrowed: they must outlive the
	 * client (a full bundle is ~220 KB). NULL: https is refused. */
	const char *ca_pem;
	size_t ca_pem_len;
	/* Private keys (copied, wiped on close). */
	uint8_t machine_priv[KEY_LEN];
	uint8_t node_priv[KEY_LEN];
	/* Ed25519 tailnet-lock public key; all zero (the worker leaves it
	 * so): derived from node_priv (nlkey.h). */
	uint8_t nl_pub[KEY_LEN];
	uint8_t disco_pub[KEY_LEN];
	/* Key rotation: the node key registered before node_priv, sent as
	 * OldNodeKey with the auth key, so that control keeps the node and its
	 * addresses. All zero: none. */
	uint8_t old_node_pub[KEY_LEN];
	/* Auth key for the first registration and the logout (copied,
	 * wiped); NULL: none. */
	const char *auth_key;
	const char *hostname;
	const char *const *tags; /* Hostinfo.RequestTags */
	size_t n_tags;
	bool ephemeral;
	/* The node key was registered before (persisted state): register
	 * without the auth key first, as tailscaled does on a restart; the key
	 * is presented only if control then asks for a login (AuthURL). */
	bool node_registered;
	const char *backend_log_id; /* 64 hex; NULL: derived from the node key */
	const char *os_version;	    /* NULL: "" */
	/* Proxies as in the environment ("http://[user:pass@]host:port");
	 * NULL: none. client_config_proxy_from_env() fills them. */
	const char *http_proxy;
	const char *https_proxy;
	const char *no_proxy;
	client_resolve_fn *resolve;
	void *resolve_arg;
	client_netmap_fn *on_netmap;
	client_addresses_fn *on_self_addresses;
	client_state_fn *on_state;
	void *cb_arg;
	/* 0: defaults (tests shorten them). */
	unsigned int dial_timeout_ms;
	unsigned int request_timeout_ms;
	unsigned int watchdog_ms;
	unsigned int backoff_max_ms;
	/* Port overrides for the ts2021 dial (upstream's Dialer.HTTPPort and
	 * HTTPSPort): 0 = from the URL rules. */
	uint16_t http_port;
	uint16_t https_port;
	unsigned int test_flags;
};

/* Once per process, before any thread or sandbox: curl_global_init. 0 or
 * -EIO. */
int client_global_init(void);
/* Reads HTTPS_PROXY/https_proxy, HTTP_PROXY/http_proxy, NO_PROXY/no_proxy
 * into cfg (pointers into the environment). */
void client_config_proxy_from_env(struct client_config *cfg);

/* Creates a client; nothing happens before client_start(). 0 or -EINVAL
 * with *why set (bad URL, missing callback, https without CA). */
int client_new(const struct client_config *cfg, struct client **out, const char **why);
/* Starts connecting (asynchronously). 0 or -EALREADY. */
int client_start(struct client *c);

/* Changes that go to control in a lite update. Endpoints and types are
 * parallel arrays (tailcfg.EndpointType numbers); n <= CLIENT_MAX_ENDPOINTS.
 * 0 or -EINVAL. Nothing is sent when the value did not change. */
int client_set_endpoints(struct client *c, const struct netmap_endpoint *eps, const int *types,
			 size_t n);
void client_set_disco_key(struct client *c, const uint8_t disco_pub[static KEY_LEN]);
void client_set_preferred_derp(struct client *c, int region);
/* The last netcheck's latencies (Hostinfo.NetInfo.DERPLatency, "<region>-v4"
 * in seconds; n <= CLIENT_MAX_DERP_LATENCY, more are cut). As upstream's
 * NetInfo comparison ignores latencies, a change alone sends nothing: the
 * values ride with the next update, except the first set, which is sent. */
void client_set_derp_latency(struct client *c, const int *regions, const double *secs, size_t n);
/* Hostinfo.Hostname changed (the rest of Hostinfo is fixed). 0 or -EINVAL. */
int client_set_hostname(struct client *c, const char *hostname);

/* Logs the node out (RegisterRequest with Expiry in the past; an ephemeral
 * node is deleted at once) and stops: on_state(LOGGED_OUT) or
 * on_state(ERROR) follows. Connects first if needed (also after a fatal
 * error); does nothing once logged out. The logout carries the auth key, as
 * genuine `tailscale logout` does (control may check it on every register
 * request): auth_key (copied, wiped) when not NULL or "", else the one
 * client_config gave, if any. */
void client_logout(struct client *c, const char *auth_key);

/* The current netmap (borrowed; NULL before the first map) and whether the
 * last lite update was accepted. */
struct netmap *client_netmap(const struct client *c);
bool client_lite_accepted(const struct client *c);
/* When control first accepted this process's registration (uv_hrtime,
 * CLOCK_MONOTONIC ns), 0 before: the worker's Ready reports it. */
uint64_t client_registered_ns(const struct client *c);
/* How the current Noise connection runs: "plain" (HTTP upgrade on the
 * plain port), "tls" (on the TLS port) or NULL when not connected. */
const char *client_transport(const struct client *c);
/* While not connected and waiting for the next attempt: the ms until it
 * starts (at least 1). 0 when an attempt is under way, when connected, and
 * after a fatal error. on_state(DOWN) can ask: the wait is set by then. */
uint64_t client_retry_in_ms(const struct client *c);
/* What the last failure interrupted, for a person: "unreachable"
 * (resolving the name, GET /key, dialling), "registration failed",
 * "connection lost" (the map stream or a request on the running
 * connection), "refused" (fatal: on_state(ERROR)); NULL while connected or
 * before any failure. A static string. */
const char *client_failure_kind(const struct client *c);
/* The capability version sent everywhere (capver.h). */
int client_capver(void);

/* Closes every handle; cb(arg) runs once the memory is gone (no callback
 * runs after client_close returns). */
typedef void client_closed_fn(void *arg);
void client_close(struct client *c, client_closed_fn *cb, void *arg);

/* Parsers of outside bytes, exported for the fuzz target and tests. */
struct client_http_head {
	int status;
	bool has_length;
	uint64_t content_length;
	bool chunked;
	bool upgrade_ts2021; /* Upgrade: tailscale-control-protocol */
	bool connection_upgrade;
};
/* Parses an HTTP/1.1 response head from buf. > 0: its length (up to and
 * including the blank line); 0: need more (and len < CLIENT_HTTP_MAX_HEAD);
 * < 0: -EBADMSG (malformed status line or header, bad Content-Length) or
 * -EMSGSIZE (no end within CLIENT_HTTP_MAX_HEAD), *why set. */
ssize_t client_http_parse_head(const char *buf, size_t len, struct client_http_head *h,
			       const char **why);
/* The /key answer: JSON {"publicKey":"mkey:<hex>", ...}. 0 or -EBADMSG
 * (*why: not JSON, a bare key from a pre-Noise server, bad key). */
int client_parse_key(const char *body, size_t len, uint8_t pub[static KEY_LEN], const char **why);

#endif
