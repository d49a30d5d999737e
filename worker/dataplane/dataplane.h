/* The worker's data-plane engine: TUN <-> WireGuard <-> UDP in batches,
 * with the kernel's offloads and the tailnet packet filter (docs/design.md §1).
 *
 * One engine runs on ONE thread of its own (dataplane_run(), or
 * dataplane_start() which makes that thread). Each wakeup of its epoll
 * (TUN, the UDP socket(s), an eventfd for configuration changes and stop,
 * a timerfd for the WireGuard timers):
 *
 *   TUN --tunio_read--> parse + filter_run_out (flow cache; quad-100 and
 *       TSMP from the pod are dropped) --wg_device_tun_rx--> udpio_send
 *   UDP --udpio_recv--> disco answered here (magic.c), WireGuard from an
 *       ip:port disco did not confirm dropped --> wg_device_udp_rx -->
 *       parse + filter_run_in -->
 *       TSMP (IP protocol 99) answered or stored here, never written to ts0
 *       --> tunio_write (TCP coalescing)
 *
 * Where a peer's datagrams go: for a peer with a disco key, its path state
 * (magicsock/path.h), fed by disco pings and pongs the engine exchanges on
 * the same socket and by its tick; for one without, its first endpoint.
 *
 * Buffers are allocated once by dataplane_new(); nothing on the packet path
 * allocates.
 *
 * Configuration: a struct dataplane_config is immutable once built (peers
 * with keys, AllowedIPs and endpoints, plus a built filter). Another thread
 * publishes one with dataplane_set_config(): one atomic pointer exchange
 * and an eventfd write. At its next wakeup the engine takes the pointer,
 * applies the peers with wg_device_set_peers() and switches to the new
 * filter; the configuration it replaced is pushed onto a lock-free
 * "retired" list. The engine never frees a configuration: the publishing
 * thread frees the retired ones at its next dataplane_set_config() (or
 * dataplane_reclaim()), when the engine has provably stopped using them
 * (it retires a configuration only after it switched away from it). A
 * configuration published but never taken (replaced by a newer one before
 * a wakeup) is freed by the publisher directly. dataplane_free() frees the
 * rest. Until the first configuration the filter denies every inbound flow
 * and there are no peers.
 *
 * Counters: the engine keeps its own and copies them, under a mutex taken
 * once per wakeup and once per timer tick (never per packet), into a
 * published snapshot; dataplane_stats() copies that snapshot from any
 * thread. Per peer (path, last handshake, bytes) the same, but from the
 * tick only: once every DATAPLANE_PEERS_PUBLISH_MS and right after a new
 * configuration, for dataplane_peers(). */
#ifndef TSCNI_WORKER_DATAPLANE_DATAPLANE_H
#define TSCNI_WORKER_DATAPLANE_DATAPLANE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "disco.h"
#include "filter.h"
#include "ip.h"
#include "tunio.h"
#include "udpio.h"
#include "wg_device.h"

struct chan;
struct netmap;
struct dataplane;
struct dataplane_config;

enum dataplane_limits {
	DATAPLANE_MAX_UDP = 2, /* e.g. one IPv4 and one IPv6 socket */
	/* Packets per batch. The four stages' buffers (4 x 1536 bytes per
	 * packet) are the largest part of what a worker touches under load.
	 * 128 was 3-5% faster in tests/bench/worker_load.sh than 64 for 430
	 * KiB more per worker; 48 was as fast as 64 (CPU s/GB of the whole
	 * worker 1.90 vs 1.98, means of alternated runs) for 112 KiB less
	 * (USS under load 1464 vs 1576 KiB); 32 cost 5-15% more CPU s/GB.
	 * A TUN super-packet of ~50 segments spans two batches (tunio_read
	 * resumes it). */
	DATAPLANE_BATCH = 48,
	DATAPLANE_DISCO_MAX = 256,    /* disco keys remembered (oldest replaced) */
	DATAPLANE_OWN_EPS = 16,	      /* in a CallMeMaybe */
	DATAPLANE_TICK_NS = 20000000, /* default timerfd period: 20 ms */
	/* The period after 1 s without a packet across ts0: an idle worker's
	 * timers wake it 4 times a second, not 50. WireGuard's and disco's timers are
	 * seconds long; a quarter of a second late is within their slack. */
	DATAPLANE_IDLE_TICK_NS = 250000000,
	/* STUN again this often (upstream re-STUNs every 20-26 s). */
	DATAPLANE_STUN_INTERVAL_MS = 20000,
	/* Peers dataplane_peers() reports (the status command's bound). */
	DATAPLANE_PEERS_REPORTED = 256,
	/* How often the engine refreshes that report. */
	DATAPLANE_PEERS_PUBLISH_MS = 1000,
};

/* Why the engine dropped a packet (its own reasons; the filter's reasons are
 * in filter_drop_in/out, WireGuard's in struct wg_device_stats). */
enum dataplane_drop {
	DATAPLANE_DROP_BAD_PACKET = 0, /* not a parsable IPv4/IPv6 packet */
	DATAPLANE_DROP_QUAD100,	       /* from the pod to 100.100.100.100 / ::53 */
	DATAPLANE_DROP_TSMP_OUT,       /* TSMP from the pod (only we speak it) */
	DATAPLANE_DROP_TSMP_IN,	       /* TSMP we do not answer (unknown, short) */
	DATAPLANE_DROP_UDP_SEND,       /* socket full for too long, or refused */
	DATAPLANE_DROP_WG_SOURCE,      /* WireGuard from an ip:port disco did not confirm */
	DATAPLANE_DROP_DISCO,	       /* disco malformed once opened, or naming another node */
	DATAPLANE_DROP_STUN,	       /* STUN that answers no request of ours (wrong TxID) */
	DATAPLANE_DROP_DISCO_UNKNOWN,  /* disco from a disco key no peer of the netmap has */
	DATAPLANE_DROP_DISCO_BOX,      /* disco from a known key whose box does not open */
	DATAPLANE_DROP_STUN_MALFORMED, /* STUN that is no binding success we can read */
	DATAPLANE_DROP_COUNT,
};

struct dataplane_stats {
	uint64_t tun_in_pkts, tun_in_bytes;   /* read from TUN (after segmentation) */
	uint64_t tun_out_pkts, tun_out_bytes; /* written to TUN (before coalescing) */
	uint64_t udp_out_dgrams, udp_in_dgrams;
	uint64_t drops[DATAPLANE_DROP_COUNT];
	uint64_t filter_drop_in[FILTER_REASON_COUNT];
	uint64_t filter_drop_out[FILTER_REASON_COUNT];
	uint64_t tsmp_pings_answered, tsmp_disco_keys;
	/* quad-100 (quad100.c): queries from the pod, answers written back
	 * (ours and upstream's), queries forwarded upstream. */
	uint64_t dns_queries, dns_answers, dns_forwarded;
	uint64_t disco_in, disco_out; /* disco messages opened / sent */
	uint64_t configs_applied, configs_refused;
	uint64_t wakeups;	  /* epoll_wait returns */
	uint64_t buf_releases;	  /* buffers given back after DP_IDLE_RELEASE_NS idle */
	uint64_t timer_period_ns; /* the timer's period now: tick_ns, or 250 ms when idle */
	uint64_t tun_read_calls, tun_write_calls; /* from tunio_stats */
	uint64_t udp_send_calls, udp_recv_calls;  /* from udpio_stats */
	unsigned offloads;			  /* DATAPLANE_OFFLOAD_* in use */
	int tid;				  /* the engine thread (0 before it runs) */
	int error;				  /* -errno that stopped the engine, else 0 */
	struct wg_device_stats wg;		  /* copied at each wakeup */
};

/* Where a peer's WireGuard packets go now. */
enum dataplane_path {
	DATAPLANE_PATH_NONE = 0, /* nowhere: they are dropped */
	DATAPLANE_PATH_DIRECT,	 /* UDP to direct (disco's choice, or the first endpoint) */
	DATAPLANE_PATH_DERP,	 /* through DERP region derp_region */
};

/* One peer of the configuration in use, as dataplane_peers() reports it. */
struct dataplane_peer_info {
	uint8_t key[WG_KEY_LEN]; /* its node key */
	enum dataplane_path path;
	struct disco_addr direct;    /* DATAPLANE_PATH_DIRECT */
	uint16_t derp_region;	     /* DATAPLANE_PATH_DERP */
	uint64_t last_handshake_ns;  /* CLOCK_MONOTONIC of the last one; 0: never */
	uint64_t rx_bytes, tx_bytes; /* wg_peer_status's: data messages' wire bytes */
};

/* The offloads in use, as one bit set. */
enum dataplane_offload {
	DATAPLANE_OFFLOAD_TUN_VNET = 1U << 0,
	DATAPLANE_OFFLOAD_TUN_TSO = 1U << 1,
	DATAPLANE_OFFLOAD_TUN_USO = 1U << 2,
	DATAPLANE_OFFLOAD_TUN_COALESCE = 1U << 3,
	DATAPLANE_OFFLOAD_UDP_GSO = 1U << 4,
	DATAPLANE_OFFLOAD_UDP_GRO = 1U << 5,
};

struct dataplane_params {
	int tun_fd;			       /* not taken over: the caller closes it */
	int udp_fds[DATAPLANE_MAX_UDP];	       /* not taken over either */
	size_t n_udp;			       /* 1 or 2 */
	uint8_t private_key[WG_KEY_LEN];       /* our node key: copied, caller wipes */
	uint8_t disco_private[WG_KEY_LEN];     /* our disco key: copied, caller wipes */
	size_t mtu;			       /* the TUN MTU (0: no padding limit) */
	struct tunio_config tun;	       /* offload switches */
	struct udpio_config udp;	       /* offload switches */
	const struct wg_device_timers *timers; /* NULL: the protocol's; tests shorten */
	uint64_t tick_ns;		       /* timer period; 0: DATAPLANE_TICK_NS */
};

/* One peer of a configuration. */
struct dataplane_peer {
	uint8_t key[WG_KEY_LEN];
	const struct ip_prefix *allowed_ips;
	size_t n_allowed_ips;
	/* All its endpoints (AF_INET or AF_INET6; copied): with a disco key
	 * they are the candidates disco pings, without one the first is
	 * the path and WireGuard is accepted from anywhere (an external
	 * WireGuard node such as wireguard-go). */
	const struct sockaddr_storage *endpoints;
	size_t n_endpoints;
	bool has_disco;
	uint8_t disco[WG_KEY_LEN]; /* Node.DiscoKey */
	uint16_t home_derp;	   /* its home DERP region; 0: none */
	bool jailed;		   /* Node.IsJailed: may not open flows to us (shields up) */
};

/* Builds an immutable configuration: peers (copied), and a filter built
 * from rules (NULL = no rules, deny every new inbound flow; the caller
 * keeps them) for our local prefixes, sharing state fs
 * (dataplane_filter_state()). caps may be NULL. Returns 0 with *out set, or
 * -EINVAL with *why set (too many peers, a bad prefix or endpoint); *out is
 * NULL then. */
int dataplane_config_new(const struct dataplane_peer *peers, size_t n_peers,
			 const struct filter_rules *rules, const struct ip_prefix *local,
			 size_t n_local, const struct filter_cap_holder *caps, size_t n_caps,
			 struct filter_state *fs, struct dataplane_config **out, const char **why);

/* The configuration of a netmap snapshot: its peers that have a node key
 * and are not expired at `now` (Unix seconds; netmap_node_expired), other
 * than ourselves, each with its AllowedIPs (mapjson already filled absent
 * ones from Addresses), its endpoints, disco key and home DERP region; the filter from
 * the snapshot's packet filter rules (no named filter: deny all) for our
 * addresses (self->addresses), with `cap:` sources resolved from the peers'
 * capabilities. Same results as dataplane_config_new(), and -EBADMSG with
 * *why when the rules, all names together, are more than FILTER_MAX_RULES
 * or include a list that did not parse (struct netmap_rules). */
int dataplane_config_from_netmap(const struct netmap *nm, int64_t now, struct filter_state *fs,
				 struct dataplane_config **out, const char **why);

/* Frees a configuration that was never published. NULL does nothing. */
void dataplane_config_free(struct dataplane_config *cfg);
size_t dataplane_config_peer_count(const struct dataplane_config *cfg);

/* Packets through DERP go to and come from c (magicsock/chan.h; the
 * control thread holds the DERP connections). Before dataplane_start();
 * the caller keeps c and frees it after dataplane_free(). */
void dataplane_set_derp(struct dataplane *dp, struct chan *c);

/* Our own endpoints, for the CallMeMaybe the engine sends a peer through
 * DERP when path.c asks (the first DATAPLANE_OWN_EPS are kept).
 * Any thread. */
void dataplane_set_endpoints(struct dataplane *dp, const struct disco_addr *eps, size_t n);

/* The STUN server the engine asks, every DATAPLANE_STUN_INTERVAL_MS, where
 * the pod's UDP socket is seen from outside (the home DERP region's STUN
 * port); NULL: none. Any thread. */
void dataplane_set_stun(struct dataplane *dp, const struct sockaddr_storage *server);
/* That reflexive address (AF_INET or AF_INET6, port in network order).
 * Returns 0 with *out set, or -ENOENT before the first answer. Any thread. */
int dataplane_stun_addr(struct dataplane *dp, struct sockaddr_storage *out);

/* Creates an engine (not running yet). Returns 0 with *out set, or -errno
 * with *why set (bad fds, timers, key; epoll/eventfd/timerfd failure). */
int dataplane_new(const struct dataplane_params *p, struct dataplane **out, const char **why);

/* The filter state (flow cache) configurations for this engine must use. */
struct filter_state *dataplane_filter_state(struct dataplane *dp);

/* Publishes cfg (ownership passes to the engine) and frees retired
 * configurations. From one control thread at a time; never blocks on the
 * engine. */
void dataplane_set_config(struct dataplane *dp, struct dataplane_config *cfg);
/* Frees retired configurations only. */
void dataplane_reclaim(struct dataplane *dp);

/* Runs the engine on the calling thread until dataplane_stop() or a fatal
 * error of the TUN (e.g. -EBADFD: the pod's namespace is gone). Returns 0
 * after a stop, or that -errno. */
int dataplane_run(struct dataplane *dp);

/* Runs dataplane_run() on a thread of its own. Returns 0 or -errno. */
int dataplane_start(struct dataplane *dp);
/* Asks the engine to stop (from any thread: an atomic store and an eventfd
 * write; the engine finishes the batch in hand) and, when dataplane_start()
 * made its thread, joins it. */
void dataplane_stop(struct dataplane *dp);
/* Stops and joins if needed, wipes the key and frees everything. */
void dataplane_free(struct dataplane *dp);

void dataplane_stats(const struct dataplane *dp, struct dataplane_stats *out);

/* Copies the engine's latest per-peer report (at most
 * DATAPLANE_PEERS_PUBLISH_MS old; the configuration's first
 * DATAPLANE_PEERS_REPORTED peers, in its order) into out[0..cap). Returns
 * how many were copied; *total is the number of peers of that
 * configuration (more than the copies when the report or cap cut it).
 * Any thread. */
size_t dataplane_peers(const struct dataplane *dp, struct dataplane_peer_info *out, size_t cap,
		       size_t *total);

/* The disco key a peer advertised over TSMP ('a'), for the disco issue.
 * Returns 0 with disco set, or -ENOENT. */
int dataplane_disco_key(struct dataplane *dp, const uint8_t node_key[static WG_KEY_LEN],
			uint8_t disco[static WG_KEY_LEN]);

/* Asks the engine to start a handshake with peer `key` at its next wakeup
 * (an explicit rekey: tests and operators; an unknown key does nothing).
 * At most 8 requests wait at a time; more are dropped. Returns 0. */
int dataplane_rekey(struct dataplane *dp, const uint8_t key[static WG_KEY_LEN]);

#endif
