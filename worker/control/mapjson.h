/* Control-plane JSON (tailcfg) to and from C structs, with jansson.
 *
 * Parsed: MapResponse (into struct mapjson_map_response, applied by
 * netmap_apply()) and RegisterResponse. Built: the RegisterRequest and the
 * MapRequest we send, with the field names tailscaled uses.
 *
 * Every array and string read from the wire is bounded (common/netmap.h
 * enum netmap_limits); integers must be JSON integers (jansson keeps them as
 * int64, never through a double); map keys that are NodeIDs are decimal
 * strings; times are RFC 3339; keys are "nodekey:"/"discokey:"/"mkey:" text.
 * Unknown fields are ignored, as Go's encoding/json does. Packet-filter
 * rules are parsed here, once, into the filter's own structures
 * (filter_rules.h), which the netmap keeps. */
#ifndef TSCNI_WORKER_CONTROL_MAPJSON_H
#define TSCNI_WORKER_CONTROL_MAPJSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keys.h"
#include "netmap.h"

enum mapjson_limits {
	MAPJSON_MAX_REGISTER_RESPONSE = 1 << 20, /* plain JSON body, not framed */
	MAPJSON_MAX_CHANGES = 65536,		 /* each delta list in one message */
};

/* Which fields of a PeersChangedPatch entry were present. */
enum mapjson_patch_fields {
	MAPJSON_PATCH_DERP = 1U << 0,
	MAPJSON_PATCH_CAP = 1U << 1,
	MAPJSON_PATCH_ENDPOINTS = 1U << 2,
	MAPJSON_PATCH_KEY = 1U << 3,
	MAPJSON_PATCH_DISCO = 1U << 4,
	MAPJSON_PATCH_ONLINE = 1U << 5,
	MAPJSON_PATCH_LAST_SEEN = 1U << 6,
	MAPJSON_PATCH_KEY_EXPIRY = 1U << 7,
	MAPJSON_PATCH_CAPMAP = 1U << 8,
};

/* tailcfg.PeerChange. Upstream applies DERPRegion and Cap only when non-zero
 * and the others when non-null; the flags record exactly that. */
struct mapjson_peer_change {
	int64_t node_id;
	unsigned int fields;
	int derp_region;
	int cap;
	struct netmap_endpoint *endpoints;
	size_t n_endpoints;
	uint8_t key[KEY_LEN];
	uint8_t disco[KEY_LEN];
	bool online;
	int64_t last_seen;
	bool has_key_expiry; /* with MAPJSON_PATCH_KEY_EXPIRY: false = zero time */
	int64_t key_expiry;
	char **caps; /* CapMap keys */
	size_t n_caps;
};

/* An OnlineChange / PeerSeenChange entry. */
struct mapjson_id_bool {
	int64_t id;
	bool value;
};

/* A PacketFilters entry; rules NULL means "delete this name". */
struct mapjson_named_filter {
	char *name;
	struct netmap_rules *rules; /* one reference */
};

/* PingRequest (answered by the control client). */
struct mapjson_ping {
	char *url;
	char *types;
	char *ip;
	bool url_is_noise;
	bool log;
};

/* One MapResponse. Absent and null fields are "unchanged" (has_* false or
 * NULL), except where noted. */
struct mapjson_map_response {
	bool keep_alive;
	struct netmap_node *node; /* NULL: unchanged */
	struct netmap_node **peers;
	size_t n_peers; /* > 0: the complete peer list */
	struct netmap_node **peers_changed;
	size_t n_peers_changed;
	int64_t *peers_removed;
	size_t n_peers_removed;
	struct mapjson_peer_change *patches;
	size_t n_patches;
	struct mapjson_id_bool *online_change;
	size_t n_online_change;
	struct mapjson_id_bool *seen_change;
	size_t n_seen_change;
	/* PacketFilter: non-null replaces the "base" filter; [] empties it.
	 * NULL: absent or null (one reference otherwise). */
	struct netmap_rules *packet_filter;
	/* PacketFilters: "*": null clears every name first. */
	bool has_packet_filters;
	bool filters_clear_all;
	struct mapjson_named_filter *filters;
	size_t n_filters;
	struct netmap_derpmap *derpmap; /* the delta as sent; NULL: unchanged */
	struct netmap_dns *dns;		/* NULL: unchanged */
	char *domain;			/* NULL: unchanged ("" is too) */
	bool has_collect_services, collect_services;
	bool has_control_time;
	int64_t control_time;
	bool has_tka, tka_enabled;
	struct mapjson_ping *ping; /* NULL: none */
};

/* Parses one MapResponse document of len bytes. Returns 0 and a response the
 * caller frees with mapjson_map_response_free(), or -EBADMSG with *why
 * naming the bad field (and *out NULL). */
int mapjson_parse_map_response(const char *json, size_t len, struct mapjson_map_response **out,
			       const char **why);
void mapjson_map_response_free(struct mapjson_map_response *r);

/* The largest MapResponse document parsed (the map stream's own limit is
 * lower). */
#define MAPJSON_MAP_MAX ((size_t)1 << 30)

/* Full maps parsed only where their peers changed. A control server that
 * sends whole maps (upstream's testcontrol on every change, Headscale on
 * many) repeats every peer's bytes each time; the cache keeps the nodes of
 * the last full Peers list by a hash of their bytes, and a peer whose bytes
 * come again is that node, not parsed again. One per map stream, used by
 * one thread. */
struct mapjson_peer_cache;
struct mapjson_peer_cache *mapjson_peer_cache_new(void);
void mapjson_peer_cache_free(struct mapjson_peer_cache *c);
/* mapjson_parse_map_response(), with the Peers of a full map taken from c
 * where their bytes match, and c then holding this map's. The result is the
 * same as mapjson_parse_map_response()'s for the same document (a document
 * whose Peers the cut does not find is parsed by it). c NULL: no cache. */
int mapjson_parse_map_response_cached(const char *json, size_t len, struct mapjson_peer_cache *c,
				      struct mapjson_map_response **out, const char **why);
/* Drops the nodes only c still holds (a delta replaced them), so that a
 * stream of deltas after one full map does not keep every replaced peer. */
void mapjson_peer_cache_trim(struct mapjson_peer_cache *c);

/* RegisterResponse: what doLogin decides on. */
struct mapjson_register_response {
	int64_t user_id;
	char *login_name;
	bool node_key_expired;
	bool machine_authorized;
	char *auth_url; /* "" when none */
	bool has_node_key_signature;
	char *error; /* "" when none; control's text, may be shown */
};

int mapjson_parse_register_response(const char *json, size_t len,
				    struct mapjson_register_response **out, const char **why);
void mapjson_register_response_free(struct mapjson_register_response *r);

/* Hostinfo, minimal (docs/tailscale-protocol.md §3.3). NULL strings are left out. */
struct mapjson_hostinfo {
	const char *ipn_version;
	const char *backend_log_id;
	const char *os;
	const char *os_version;
	const char *hostname;
	const char *app;
	bool container;
	const char *const *request_tags;
	size_t n_request_tags;
	bool has_netinfo;
	int preferred_derp;
	bool working_udp;
	bool working_ipv6;
	const int *derp_latency_regions; /* "<region>-v4" latencies, seconds */
	const double *derp_latency_v4;
	size_t n_derp_latency;
};

/* RegisterRequest. auth_key NULL leaves Auth null (a restart). A
 * logout sets expiry to a past Unix time (tailscaled sends 123); 0 sends
 * Go's zero time (server default). */
struct mapjson_register_request {
	int version;
	const uint8_t *node_key;     /* KEY_LEN bytes */
	const uint8_t *old_node_key; /* NULL: the zero key */
	const uint8_t *nl_key;	     /* KEY_LEN bytes (Ed25519 public) */
	const char *auth_key;
	int64_t expiry;
	const char *followup;
	const struct mapjson_hostinfo *hostinfo;
	bool ephemeral;
};

/* MapRequest: a stream poll (stream true) or a lite update (stream false,
 * omit_peers true). */
struct mapjson_map_request {
	int version;
	bool compress; /* "Compress":"zstd" */
	bool keep_alive;
	const uint8_t *node_key;
	const uint8_t *disco_key; /* NULL: left out */
	bool stream;
	bool omit_peers;
	const struct mapjson_hostinfo *hostinfo;
	const struct netmap_endpoint *endpoints;
	const int *endpoint_types; /* parallel to endpoints */
	size_t n_endpoints;
};

/* Build the compact JSON text of a request: 0 and a NUL-terminated string
 * the caller frees, or -EINVAL with *why. The register request carries the
 * auth key: wipe and free the buffer after sending. */
int mapjson_build_register_request(const struct mapjson_register_request *req, char **out,
				   const char **why);
int mapjson_build_map_request(const struct mapjson_map_request *req, char **out, const char **why);

/* Text forms shared with the tests and other modules. */
/* RFC 3339 ("2026-08-01T12:00:00Z", fractions, offsets) to Unix seconds.
 * *is_zero is set for Go's zero time (year 1). 0 or -EINVAL. */
int mapjson_parse_time(const char *s, int64_t *sec, bool *is_zero);
/* "1.2.3.4:5" or "[v6]:5". 0 or -EINVAL. */
int mapjson_parse_endpoint(const char *s, struct netmap_endpoint *ep);
/* Writes "ip:port" / "[ip]:port" into buf (64 bytes is enough). */
char *mapjson_format_endpoint(const struct netmap_endpoint *ep, char *buf, size_t n);

#endif
