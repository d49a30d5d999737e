/* What the data plane's files share and nothing outside this folder sees:
 * the engine's state, a configuration's layout, and the helpers named
 * dataplane__* (the engine in dataplane.c, configurations in
 * dataplane_config.c, one file per direction of the packet path:
 * tun_to_peers.c and peers_to_tun.c). Everything here runs on the engine
 * thread unless its comment says otherwise. */
#ifndef TSCNI_WORKER_DATAPLANE_DATAPLANE_INTERNAL_H
#define TSCNI_WORKER_DATAPLANE_DATAPLANE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "dataplane.h"
#include "disco.h"
#include "log.h"
#include "netmap.h"
#include "path.h"
#include "packet.h"
#include "pktbuf.h"

struct allowedips;
struct chan;

enum dataplane_internal {
	/* One packet buffer: a datagram from a peer whose MTU is up to 1488
	 * (Tailscale's is 1280, wireguard-go's default 1420) with the
	 * WireGuard head- and tailroom. 1536 rather than PKTBUF_SIZE: 132
	 * buffers per batch stage make this a worker's largest allocation. */
	DP_BUF_LEN = 1536,
	/* After this long without a packet from the TUN or a UDP socket the
	 * batch buffers go back to the kernel (release_idle()). */
	DP_IDLE_RELEASE_NS = 1000000000,
	/* After as long without a packet across ts0, the timers run every
	 * DATAPLANE_IDLE_TICK_NS (dataplane.h) instead of every tick_ns. */
	DP_LOCAL_SLOTS = 16, /* TSMP answers per UDP batch */
	DP_MAX_PEERS = NETMAP_MAX_PEERS,
	DP_MAX_REKEYS = 8,     /* rekey requests waiting for a wakeup */
	DP_SEND_WAIT_MS = 100, /* how long a full socket may hold a batch */
	/* Disco messages waiting to be sent, each in a small buffer: a Ping
	 * or a Pong is about 120 bytes. */
	DP_DISCO_SLOTS = 32,
	DP_DISCO_BUF_LEN = 512,
	DP_BAD_PEER_LOG_MS = 10000,
	/* Disco from a key no peer has (yet): the last DP_EARLY_DISCO of at
	 * most DP_EARLY_DISCO_LEN bytes, kept DP_EARLY_DISCO_MS (a Ping's
	 * life at its sender, PATH_PING_TIMEOUT_MS). */
	DP_EARLY_DISCO = 8,
	DP_EARLY_DISCO_LEN = 256,
	DP_EARLY_DISCO_MS = 5000,
};

/* A disco message that came before the configuration naming its sender:
 * a restarted peer pings us as soon as control tells it of us, which can
 * be before control's news of it reaches us. Run again once a
 * configuration makes the sender a peer (magic.c), its Ping is answered
 * while the sender still waits for the Pong, not 5 s later at its next
 * round. */
struct dp_early_disco {
	uint64_t at_ms; /* 0: free */
	struct disco_addr src;
	bool has_node; /* through DERP from node */
	uint8_t node[WG_KEY_LEN];
	uint16_t len;
	uint8_t pkt[DP_EARLY_DISCO_LEN];
};

/* A peer's disco side in a configuration: its key, its home DERP region
 * and its endpoints (eps[ep_off .. ep_off + n_eps) of the configuration). */
struct dataplane_disco_peer {
	bool has_disco;
	uint8_t disco[WG_KEY_LEN];
	uint16_t home_derp;
	size_t ep_off, n_eps;
};

/* The engine's state for a peer with a disco key, kept across
 * configurations while its node key stays (magic.c). */
struct dp_magic_peer {
	uint8_t node[WG_KEY_LEN];
	uint8_t disco[WG_KEY_LEN];
	struct disco_shared shared;
	bool kept; /* in the configuration being applied */
	/* A handshake is owed to the peer (it restarted, or it initiated
	 * before it was a peer): started at once, and its initiation sent
	 * again when the first direct path appears, since the first may have
	 * had no route (or a new one started, if it found none). */
	bool handshake_wanted;
	struct path path;
};

struct dataplane_config {
	struct wg_peer_config *peers;
	size_t n_peers;
	struct ip_prefix *prefixes;
	struct sockaddr_storage *endpoints;
	struct filter *filter;
	/* Per peer, in peers' order; disco_eps holds their endpoints. */
	struct dataplane_disco_peer *disco;
	struct disco_addr *disco_eps;
	bool any_without_disco; /* WireGuard is then accepted from anywhere */
	/* Jailed peers (Node.IsJailed) may not open flows to us: packets from
	 * them meet `jailed`, a shields-up filter with the same local prefixes
	 * and state, instead of `filter`. When any peer is jailed, jailed_src
	 * maps every peer's AllowedIPs to &jailed_yes or &jailed_no: the
	 * longest match of a delivered packet's source is the peer that sent
	 * it (WireGuard checked exactly that), so overlapping prefixes of a
	 * jailed and a free peer are told apart. NULL: none jailed. */
	struct allowedips *jailed_src;
	struct filter *jailed;
	/* quad-100's names and resolvers (quad100.c); NULL: REFUSED for
	 * everything but quad-100's own names. */
	struct dataplane_dns *dns;
	struct dataplane_config *retired_next;
};

struct disco_entry {
	uint8_t node[WG_KEY_LEN];
	uint8_t disco[WG_KEY_LEN];
};

struct dataplane {
	int tun_fd;
	int udp_fds[DATAPLANE_MAX_UDP];
	int udp_family[DATAPLANE_MAX_UDP];
	size_t n_udp;
	struct tunio *tio;
	struct udpio *uio[DATAPLANE_MAX_UDP];
	struct wg_device *dev;
	/* Our keys: disco (both halves) and node (public, in our pings). */
	uint8_t disco_priv[WG_KEY_LEN], disco_pub[WG_KEY_LEN];
	uint8_t node_pub[WG_KEY_LEN];
	int ep, evfd, tfd;
	uint64_t tick_ns, last_timers;
	struct filter_state *fs;
	struct filter *deny_all;

	/* Configuration hand-over. cur is the engine's alone. */
	struct dataplane_config *cur;
	_Atomic(struct dataplane_config *) pending;
	_Atomic(struct dataplane_config *) retired;
	atomic_bool stop;
	pthread_t thread;
	bool started;

	/* Batches: WireGuard's view (slots) and the I/O view (pb), rebuilt
	 * from the slots before every read or write. */
	uint8_t *bufs;
	struct wg_packet slots[4][DATAPLANE_BATCH];
	struct wg_packet local_slots[DP_LOCAL_SLOTS];
	struct wg_batch tun_in, udp_in, tun_out, udp_out, local;
	struct pktbuf_batch pb;
	uint64_t io_ns;			/* the last wake-up with TUN or UDP input */
	uint64_t active_ns;		/* when packets last crossed ts0 */
	uint64_t active_in, active_out; /* st.tun_in_pkts / tun_out_pkts then */
	uint64_t timer_period;		/* the timerfd's now: tick_ns or DATAPLANE_IDLE_TICK_NS */
	bool bufs_touched;		/* input since the buffers were last released */

	struct dataplane_stats st; /* the engine's own copy */

	/* Disco (magic.c): the peers with a disco key, sorted by node key;
	 * messages waiting to be sent; the engine's clock in ms for path.c. */
	struct chan *derp; /* packets to and from DERP; NULL: none */
	struct dp_magic_peer **mpeers;
	size_t n_mpeers;
	uint8_t *disco_bufs;
	struct wg_packet disco_slots[DP_DISCO_SLOTS];
	struct wg_batch disco_out;
	uint64_t now_ms;
	uint64_t path_deadline; /* earliest path_next_deadline of mpeers */
	/* The engine's STUN transaction: the server it asked (of generation
	 * stun_seen), when, and the TxID an answer must carry. */
	unsigned stun_seen;
	uint64_t stun_sent_ms;
	bool stun_waiting;
	struct sockaddr_storage stun_to;
	uint8_t stun_txid[12];
	bool wg_ok_valid; /* wg_ok was accepted and nothing changed since */
	struct disco_addr wg_ok;
	/* One log line per kind of bad disco or STUN per
	 * DP_BAD_PEER_LOG_MS (the counters count every one). */
	struct log_ratelimit bad_log[DATAPLANE_DROP_COUNT];
	/* timer_adapt's failures to re-arm the tick: one line per
	 * DP_BAD_PEER_LOG_MS, as the period stays unrecorded and every round
	 * would try again. */
	struct log_ratelimit timer_log;
	struct dp_early_disco early_disco[DP_EARLY_DISCO];
	size_t early_disco_next;

	/* Guarded by lock: the published counters, disco keys, rekeys. */
	pthread_mutex_t lock;
	struct dataplane_stats pub;
	struct disco_entry disco[DATAPLANE_DISCO_MAX];
	size_t n_disco, disco_next;
	/* STUN (magic.c): the server (has_stun_server; stun_gen counts
	 * changes) and the answer (has_stun_addr). */
	bool has_stun_server, has_stun_addr;
	atomic_uint stun_gen; /* read by the engine without the lock */
	struct sockaddr_storage stun_server, stun_addr;
	struct disco_addr own_eps[DATAPLANE_OWN_EPS];
	size_t n_own_eps;
	uint8_t rekeys[DP_MAX_REKEYS][WG_KEY_LEN];
	size_t n_rekeys;
	atomic_bool rekey_pending;
	/* The per-peer report (dataplane_peers): peers_pub is replaced (and
	 * grown) only by the engine, under lock. */
	struct dataplane_peer_info *peers_pub;
	size_t n_peers_pub, peers_pub_cap, peers_total;
	/* The engine's: when it last published them; a new configuration. */
	uint64_t peers_published_ms;
	bool peers_stale;
	/* quad-100 (quad100.c): allocated with the first query. */
	struct dp_q100 *q100;
};

static inline socklen_t dataplane__sockaddr_len(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return sizeof(struct sockaddr_in);
	if (ss->ss_family == AF_INET6)
		return sizeof(struct sockaddr_in6);
	return 0;
}

/* ---- dataplane_config.c ---- */

/* The filter of cfg for an inbound packet: the jailed one when a jailed
 * peer sent it. */
const struct filter *dataplane__config_filter_in(const struct dataplane_config *cfg,
						 const struct packet *p);

/* ---- dataplane.c ---- */

/* Points pb's slots at b's buffers (packets start at off), all empty. */
void dataplane__pb_reset(struct pktbuf_batch *pb, const struct wg_batch *b, uint32_t off);
/* Moves the packet of slot i (with its address) to slot *kept (swapping
 * buffers, so every slot keeps one) and advances *kept. */
void dataplane__batch_keep(struct wg_batch *b, size_t i, size_t *kept);
/* Wakes the engine (an eventfd write; any thread; arg: the engine). */
void dataplane__wake(void *arg);
/* Remembers the disco key a peer advertised (any thread; takes dp->lock). */
void dataplane__disco_store(struct dataplane *dp, const uint8_t *node, const uint8_t *disco);

/* ---- tun_to_peers.c ---- */

/* One batch from the TUN: filtered, encrypted and sent. *more: the batch
 * filled up (more may wait). Returns 0 or a fatal -errno of the TUN. */
int dataplane__tun_to_peers(struct dataplane *dp, uint64_t now, bool *more);
/* Sends what WireGuard left in dp->udp_out (datagrams to peers, handshakes,
 * keepalives), each on the socket of its family; empties dp->udp_out. */
void dataplane__udp_flush(struct dataplane *dp);
/* Sends batch b (disco messages, or udp_out) and empties it; uses dp->pb. */
void dataplane__udp_send_batch(struct dataplane *dp, struct wg_batch *b);

/* ---- quad100.c ---- */

struct dataplane_dns;
struct dp_q100;
/* quad-100's names (MagicDNS, when DNSConfig.Proxied) and resolvers from
 * nm's DNSConfig. 0 or -E2BIG with *why (a netmap over the table's bounds). */
int dataplane__dns_from_netmap(const struct netmap *nm, struct dataplane_dns **out,
			       const char **why);
void dataplane__dns_free(struct dataplane_dns *d);
/* A packet from the pod to quad-100 (p parsed from pkt): true when it was
 * DNS (UDP or TCP port 53) and is handled; replies wait for
 * dataplane__q100_flush, forwarded queries for the next UDP flush. */
bool dataplane__q100_rx(struct dataplane *dp, const struct packet *p, const uint8_t *pkt,
			uint64_t now_ns);
/* Writes the replies waiting to the TUN. */
void dataplane__q100_flush(struct dataplane *dp);
/* A datagram from UDP: true when it is an upstream resolver's answer to a
 * query we forwarded (then sent on to the pod). */
bool dataplane__q100_upstream_rx(struct dataplane *dp, const struct wg_packet *w, uint64_t now_ns);
void dataplane__q100_free(struct dataplane *dp);

/* ---- magic.c ---- */

/* The path selector the engine gives WireGuard (arg: the engine). */
extern const struct wg_path_ops dataplane__path_ops;
/* Takes the peers of the configuration just applied (allocates). */
void dataplane__magic_apply(struct dataplane *dp, const struct dataplane_config *cfg);
/* Disco kept by disco_rx for a sender no peer had: run now for the
 * senders the configuration just applied knows; older ones go. */
void dataplane__early_disco_run(struct dataplane *dp, uint64_t now_ns);
/* A handshake with the peer `node` now (and, for a peer with disco, its
 * initiation again on the first direct path that appears). */
void dataplane__handshake_owed(struct dataplane *dp, const uint8_t *node, uint64_t now_ns);
/* A datagram from UDP: disco and STUN are handled here, WireGuard from
 * an ip:port no peer may send from is dropped. Returns true when the
 * datagram is consumed (not WireGuard for the device). */
bool dataplane__magic_rx(struct dataplane *dp, const struct wg_packet *w, uint64_t now_ns);
/* Packets from DERP (dp->derp): disco handled, WireGuard delivered.
 * Returns 0 or a fatal -errno of the TUN. */
int dataplane__derp_rx(struct dataplane *dp, uint64_t now_ns);
/* Whether w goes through DERP (its address is 127.3.3.40:region): then it
 * is handed to the control thread (or dropped) and its address cleared. */
bool dataplane__derp_divert(struct dataplane *dp, struct wg_packet *w);
/* Path timers (pings, heartbeats); from the engine's tick. */
void dataplane__magic_tick(struct dataplane *dp, uint64_t now_ns);
/* The first cap peers of the configuration in use (none before one), as
 * they are now, into out; returns how many. */
size_t dataplane__peers_gather(const struct dataplane *dp, uint64_t now_ns,
			       struct dataplane_peer_info *out, size_t cap);
/* Sets up the disco queue (allocates) / frees everything of magic.c. */
void dataplane__magic_init(struct dataplane *dp);
void dataplane__magic_free(struct dataplane *dp);

/* ---- peers_to_tun.c ---- */

/* One batch from UDP socket k: decrypted, filtered, TSMP answered here, the
 * rest written to the TUN. *more: the batch filled up. Returns 0 or a fatal
 * -errno of the TUN. */
int dataplane__peers_to_tun(struct dataplane *dp, size_t k, uint64_t now, bool *more);
/* The second half: the WireGuard datagrams in dp->udp_in (from UDP or
 * DERP) decrypted, filtered and written to the TUN; answers sent. Returns
 * 0 or a fatal -errno of the TUN. */
int dataplane__peers_deliver(struct dataplane *dp, uint64_t now);

#endif
