/* The network map: what the control server told this node about itself, its
 * peers, DERP, DNS and the packet filter, as immutable C snapshots.
 *
 * A map poll stream delivers one full MapResponse and then deltas. The
 * control thread parses each message (common/mapjson.h) and calls
 * netmap_apply() with the previous snapshot; the result is a NEW snapshot
 * that the control thread publishes with one pointer swap. Readers (the data
 * thread) never see a snapshot change under them: every object reachable from
 * a snapshot is read-only once netmap_apply() has returned it.
 *
 * Unchanged peers, the DERP map, the DNS config and the packet filters are
 * shared between consecutive snapshots by reference counts (atomic, so the
 * last reference may be dropped on any thread). netmap_put() on a snapshot
 * returns every byte that no newer snapshot still shares.
 *
 * All delta state is per stream (upstream control/controlclient/map.go
 * creates a fresh mapSession per poll): at the start of a stream, pass
 * prev == NULL and the first message is the complete picture. */
#ifndef TSCNI_WORKER_CONTROL_NETMAP_H
#define TSCNI_WORKER_CONTROL_NETMAP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ip.h"
#include "keys.h"

struct filter_rules;
struct mapjson_map_response;

/* Bounds on everything a control server can make us store. A message that
 * exceeds one is rejected whole (mapjson names the field). */
enum netmap_limits {
	NETMAP_MAX_PEERS = 65536,
	NETMAP_MAX_ADDRESSES = 64,	/* Node.Addresses */
	NETMAP_MAX_ALLOWED_IPS = 16384, /* subnet routers can carry many routes */
	NETMAP_MAX_ENDPOINTS = 64,
	NETMAP_MAX_TAGS = 64,
	NETMAP_MAX_CAPS = 512, /* Capabilities + CapMap keys */
	NETMAP_MAX_STR = 4096, /* any single string we keep */
	NETMAP_MAX_DERP_REGIONS = 1024,
	NETMAP_MAX_DERP_NODES = 64,  /* per region */
	NETMAP_MAX_DNS_ITEMS = 1024, /* resolvers, routes, domains, records each */
	NETMAP_MAX_FILTER_NAMES = 256,
	NETMAP_MAX_FILTER_RULES = 65536, /* per named filter */
};

/* A UDP endpoint "ip:port" / "[ip6]:port". */
struct netmap_endpoint {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
	uint16_t port;
};

/* One node (self or peer), after upstream's upgradeNode normalisation:
 * HomeDERP filled from the legacy "DERP":"127.3.3.40:<region>" string when
 * it was 0, AllowedIPs copied from Addresses when absent or null (an explicit
 * [] stays empty) and when UnsignedPeerAPIOnly is set. */
struct netmap_node {
	atomic_int refs;
	int64_t id;
	int64_t user;
	char *stable_id; /* never NULL ("" when absent) */
	char *name;	 /* FQDN with trailing dot, never NULL */
	char *hostname;	 /* Hostinfo.Hostname, never NULL */
	uint8_t key[KEY_LEN];
	uint8_t machine[KEY_LEN];
	uint8_t disco[KEY_LEN];
	bool has_key, has_machine, has_disco;
	bool has_key_expiry; /* false: absent or Go's zero time = never */
	int64_t key_expiry;  /* Unix seconds */
	bool expired;
	struct ip_prefix *addresses;
	size_t n_addresses;
	struct ip_prefix *allowed_ips;
	size_t n_allowed_ips;
	struct ip_prefix *primary_routes;
	size_t n_primary_routes;
	struct netmap_endpoint *endpoints;
	size_t n_endpoints;
	int home_derp; /* 0 = none */
	bool has_online, online;
	bool has_last_seen;
	int64_t last_seen; /* Unix seconds */
	int cap;	   /* the peer's capability version */
	char **tags;
	size_t n_tags;
	char **caps; /* Capabilities folded with the CapMap keys, deduplicated */
	size_t n_caps;
	bool machine_authorized;
	bool is_wireguard_only;
	bool is_jailed;
	bool has_masq_addr; /* SelfNodeV4/V6MasqAddrForThisPeer set (not honoured: capver 59) */
};

struct netmap_derp_node {
	char *name;
	int region_id;
	char *host_name;
	char *ipv4; /* "" = resolve host_name; "none" = no IPv4 */
	char *ipv6;
	int stun_port; /* 0 = 3478, -1 = disabled */
	bool stun_only;
	int derp_port; /* 0 = 443 */
	bool insecure_for_tests;
	char *stun_test_ip;
	bool can_port80;
};

struct netmap_derp_region {
	int region_id;
	char *region_code;
	char *region_name;
	bool avoid;
	bool no_measure_no_home;
	struct netmap_derp_node *nodes;
	size_t n_nodes;
};

/* Whether region r may be measured and chosen as home: not Avoid, not
 * NoMeasureNoHome (capability version 115), a node that relays (not STUN
 * only), an id that is a DERP region number (1..65535). */
bool netmap_derp_region_may_be_home(const struct netmap_derp_region *r);

struct netmap_region_score {
	int region_id;
	double score;
};

/* The DERP map after upstream's merge rules. Regions are sorted by ID. As a
 * parsed delta, has_regions/has_home_params/has_region_score say which parts
 * were present; after a merge they say which parts are known. */
struct netmap_derpmap {
	atomic_int refs;
	bool has_regions;
	struct netmap_derp_region *regions;
	size_t n_regions;
	bool omit_default_regions;
	bool has_home_params;
	bool has_region_score;
	struct netmap_region_score *scores;
	size_t n_scores;
};

struct netmap_dns_route {
	char *suffix;	  /* "corp.example." */
	char **resolvers; /* empty: answered by 100.100.100.100 itself */
	size_t n_resolvers;
};

struct netmap_dns_record {
	char *name;
	char *type; /* "" means A/AAAA by the value's family */
	char *value;
};

/* DNSConfig as a later MagicDNS needs it; replaced whole by each message
 * that carries one. Resolvers are kept as their Addr strings. */
struct netmap_dns {
	atomic_int refs;
	char **resolvers;
	size_t n_resolvers;
	char **fallback_resolvers;
	size_t n_fallback_resolvers;
	struct netmap_dns_route *routes;
	size_t n_routes;
	char **domains;
	size_t n_domains;
	char **cert_domains;
	size_t n_cert_domains;
	struct netmap_dns_record *extra_records;
	size_t n_extra_records;
	bool proxied;
};

/* One list of tailcfg.FilterRule, parsed once when its message arrived
 * (filter_rules_from_json) and shared by reference between that message
 * and every snapshot that keeps it.
 *
 * A list whose rules do not parse still arrives: the rest of the message
 * (peers, DERP, DNS) applies, and only a data-plane configuration that
 * includes the list is refused, with `bad`. */
struct netmap_rules {
	atomic_int refs;
	size_t n_sent;		    /* rules as control sent them */
	struct filter_rules *rules; /* NULL exactly when bad is set */
	const char *bad;	    /* why the rules do not parse (static) */
	const char *warn;	    /* the first entry left out, or NULL (static) */
};

/* One named packet filter. */
struct netmap_filter {
	char *name;
	struct netmap_rules *rules; /* never NULL */
};

/* The named packet filters, sorted by name: their concatenation in name
 * order is the effective filter (upstream sorts names the same way). No
 * names at all means deny every new inbound flow. */
struct netmap_filters {
	atomic_int refs;
	struct netmap_filter *named;
	size_t n_named;
	size_t n_rules; /* rules sent, all names together */
};

/* One snapshot. Peers are sorted by ID; by_key holds the same pointers
 * sorted by node key (peers without a key are left out of it). */
struct netmap {
	atomic_int refs;
	struct netmap_node *self;
	struct netmap_node **peers;
	size_t n_peers;
	struct netmap_node **by_key;
	size_t n_by_key;
	struct netmap_derpmap *derpmap; /* never NULL: empty when control sent none */
	struct netmap_dns *dns;		/* never NULL */
	struct netmap_filters *filters; /* never NULL */
	char *domain;			/* never NULL */
	bool has_control_time;
	int64_t control_time; /* Unix seconds, from the last ControlTime */
	int64_t clock_skew;   /* control time - local time when it arrived (s) */
	bool collect_services;
	bool tka_enabled; /* TKAInfo said tailnet lock is on */
};

/* References. _get returns its argument; _put(NULL) does nothing; the last
 * _put frees the object and drops what it references. */
struct netmap *netmap_get(struct netmap *nm);
void netmap_put(struct netmap *nm);
struct netmap_node *netmap_node_get(struct netmap_node *n);
void netmap_node_put(struct netmap_node *n);
struct netmap_derpmap *netmap_derpmap_get(struct netmap_derpmap *d);
void netmap_derpmap_put(struct netmap_derpmap *d);
struct netmap_dns *netmap_dns_get(struct netmap_dns *d);
void netmap_dns_put(struct netmap_dns *d);
struct netmap_filters *netmap_filters_get(struct netmap_filters *f);
void netmap_filters_put(struct netmap_filters *f);
struct netmap_rules *netmap_rules_get(struct netmap_rules *r);
void netmap_rules_put(struct netmap_rules *r);

/* A new node with refs 1, empty strings and no lists (for parsers). */
struct netmap_node *netmap_node_new(void);
/* A new, empty DERP map / DNS config / rule list with refs 1 (for parsers). */
struct netmap_derpmap *netmap_derpmap_new(void);
struct netmap_dns *netmap_dns_new(void);
struct netmap_rules *netmap_rules_new(void);

/* Applies one parsed MapResponse to prev (NULL at the start of a stream)
 * and sets *out to the resulting snapshot, which the caller owns (one
 * reference). prev and resp are not modified; resp's nodes are shared by
 * reference, so resp may be freed afterwards. now is the local wall clock
 * (Unix seconds), used for PeerSeenChange and the control clock skew.
 *
 * A keep-alive that carries nothing else leaves the map as it was:
 * *out = netmap_get(prev) (so *out == prev), or NULL when prev is NULL.
 * Returns 0, or -EBADMSG with *why set (the first non-keep-alive message of
 * a stream has no Node; too many peers); *out is NULL on failure. */
int netmap_apply(const struct netmap *prev, const struct mapjson_map_response *resp, int64_t now,
		 struct netmap **out, const char **why);

/* Peer lookups: NULL when absent. The pointer lives as long as nm. */
const struct netmap_node *netmap_peer_by_id(const struct netmap *nm, int64_t id);
const struct netmap_node *netmap_peer_by_key(const struct netmap *nm,
					     const uint8_t key[static KEY_LEN]);

/* True when node n must not be used: Expired set by control, or its key
 * expiry has passed by the control server's clock (local now + skew). */
bool netmap_node_expired(const struct netmap *nm, const struct netmap_node *n, int64_t now);

#endif
