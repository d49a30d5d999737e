/* A WireGuard device: our static key, the peers (node keys, not addresses),
 * their sessions and timers, and the three batch stages of the data plane
 * (WireGuard paper §5 and §6, as wireguard-go's device/ runs them, with
 * Tailscale's changes of docs/tailscale-protocol.md §8.2).
 *
 *   TUN  --wg_device_tun_rx-->  encrypted datagrams + handshakes  --> UDP
 *   UDP  --wg_device_udp_rx-->  plaintext packets --> TUN, answers --> UDP
 *   clock --wg_device_timers--> retries, keepalives, rekeys       --> UDP
 *
 * The device never touches a socket, a clock or the system RNG by itself:
 * every stage gets the caller's monotonic `now_ns`, randomness comes from
 * env.random (indices, ephemeral keys, jitter, cookie nonces) and TAI64N
 * timestamps from env.tai64n. Peers are told where to send by the caller's
 * path selector (struct wg_path_ops); a datagram's source address never
 * changes where a peer's packets go (no WireGuard roaming).
 *
 * Nothing on the packet path allocates: packets are sealed and opened in
 * the caller's buffers, which move between batch slots by swapping
 * pointers; packets waiting for a handshake are copied into a pool the
 * device allocated up front. wg_device_set_peers() allocates (peers, the
 * AllowedIPs trie, the index table); call it from the same thread between
 * stages.
 *
 * One thread owns a device: no function here may run concurrently with
 * another on the same device. */
#ifndef TSCNI_WORKER_WG_WG_DEVICE_H
#define TSCNI_WORKER_WG_WG_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "ip.h"
#include "wg_messages.h"

struct wg_device;
struct wg_peer;

/* One packet in a batch. buf/cap are the caller's buffer (never freed by
 * the device); the bytes are buf[off .. off + len). A TUN read should land
 * at off >= WG_DEVICE_HEADROOM so the data header fits in front, with
 * WG_DEVICE_TAILROOM bytes spare behind for padding and tag. addr is the
 * datagram's source (UDP in) or destination (UDP out); peer is set on the
 * way out to the peer the packet belongs to (NULL for cookie replies). */
struct wg_packet {
	uint8_t *buf;
	size_t cap;
	size_t off;
	size_t len;
	struct sockaddr_storage addr;
	struct wg_peer *peer;
};

enum wg_device_limits {
	WG_DEVICE_HEADROOM = WG_DATA_HEADER_LEN,
	WG_DEVICE_TAILROOM = WG_DATA_PADDING_MULTIPLE - 1 + WG_AUTHTAG_LEN,
	/* Endpoints kept per peer from the netmap. */
	WG_PEER_MAX_ENDPOINTS = 8,
	/* Default bound of packets held per peer while it has no session
	 * (wireguard-go MaxStagedPackets) and of the device-wide pool. */
	WG_DEVICE_STAGED_PER_PEER = 128,
	WG_DEVICE_STAGED_POOL = 256,
	/* Size of each pool buffer: an IPv6 packet of the largest TUN MTU
	 * we configure (1500) plus header, padding and tag, rounded up. */
	WG_DEVICE_STAGED_BUF_LEN = 1600,
	/* Initiations from non-peers remembered, and for how long: a retry
	 * comes after REKEY_TIMEOUT (5 s) plus jitter anyway. */
	WG_EARLY_INITIATORS = 8,
};
#define WG_EARLY_INITIATOR_NS (5ull * 1000000000ull)

/* A batch: a fixed array of slots owned by the caller. Slots [0, n) hold
 * packets; every slot [0, cap) always holds a buffer. A stage that emits a
 * packet either writes into the buffer of slot out->n or, to hand over a
 * packet it sealed or opened in place, swaps the two slots' buffers, so no
 * byte is copied and every slot still has a buffer afterwards. Emitted
 * packets' buffers must have cap >= the largest datagram expected. */
struct wg_batch {
	struct wg_packet *pkt;
	size_t n, cap;
};

/* The protocol's timers in nanoseconds. wg_device_config_default() sets
 * the paper's constants; tests shorten them so rekey and expiry paths run
 * in seconds. Each must be > 0, reject_after <= REJECT_AFTER_TIME (the
 * protocol core enforces that one as a hard limit), rekey_after <
 * reject_after, and keepalive + rekey_timeout < reject_after. */
struct wg_device_timers {
	uint64_t rekey_after_ns;   /* REKEY_AFTER_TIME */
	uint64_t reject_after_ns;  /* REJECT_AFTER_TIME */
	uint64_t rekey_attempt_ns; /* REKEY_ATTEMPT_TIME */
	uint64_t rekey_timeout_ns; /* REKEY_TIMEOUT */
	uint64_t keepalive_ns;	   /* KEEPALIVE_TIMEOUT */
	uint64_t jitter_max_ns;	   /* REKEY_TIMEOUT_JITTER_MAX_MS */
};

/* What the device needs from its environment. random fills n bytes (the
 * default is libsodium's randombytes_buf); tai64n writes the current TAI64N
 * (default wg_noise_tai64n_now). A test drives both from its own clock. */
struct wg_device_env {
	void (*random)(void *arg, void *buf, size_t n);
	void (*tai64n)(void *arg, uint8_t out[static WG_TIMESTAMP_LEN]);
	void *arg;
};

/* The path selector: where a peer's datagrams go. endpoint() fills *out
 * (AF_INET or AF_INET6) and returns 0, or returns -EHOSTUNREACH when the
 * peer has no path now (the packet is dropped; handshakes retry on their
 * timer). received() (may be NULL) is told of every authenticated datagram
 * from a peer and its source, for path liveness; it must not change where
 * endpoint() sends. proven() (may be NULL: always) says whether what
 * endpoint() chose is a path known to work now; when it is not, the
 * response to an initiation goes to the initiation's source as well, so
 * that a peer which reached us directly completes even if the path chosen
 * (DERP not yet connected, a stale address) loses it. wg_path_first is
 * this stage's selector: the first of the peer's configured endpoints. */
struct wg_path_ops {
	int (*endpoint)(void *arg, const struct wg_peer *peer, struct sockaddr_storage *out);
	void (*received)(void *arg, const struct wg_peer *peer, const struct sockaddr_storage *src);
	bool (*proven)(void *arg, const struct wg_peer *peer);
};
extern const struct wg_path_ops wg_path_first;

struct wg_device_config {
	uint8_t private_key[WG_KEY_LEN];
	struct wg_device_timers timers;
	struct wg_device_env env;
	const struct wg_path_ops *path; /* NULL = wg_path_first */
	void *path_arg;
	/* The TUN MTU: padding never grows a packet past it (0 = none). */
	size_t mtu;
	size_t staged_per_peer; /* 0 = WG_DEVICE_STAGED_PER_PEER */
	size_t staged_pool;	/* 0 = WG_DEVICE_STAGED_POOL */
};

/* A peer as the netmap describes it. Everything is copied. */
struct wg_peer_config {
	uint8_t public_key[WG_KEY_LEN];
	const uint8_t *preshared_key; /* NULL = 32 zero bytes (Tailscale) */
	const struct ip_prefix *allowed_ips;
	size_t n_allowed_ips;
	const struct sockaddr_storage *endpoints; /* at most WG_PEER_MAX_ENDPOINTS kept */
	size_t n_endpoints;
	uint32_t persistent_keepalive_s; /* 0 = off (Tailscale's default) */
};

struct wg_device_stats {
	uint64_t tx_data, rx_data;   /* data messages sealed / opened */
	uint64_t tx_bytes, rx_bytes; /* plaintext bytes */
	uint64_t tx_keepalives, rx_keepalives;
	uint64_t handshake_initiations_sent, handshake_responses_sent;
	/* Initiations in flight sent again, unchanged, on a new path. */
	uint64_t handshake_initiations_resent;
	uint64_t handshakes_completed; /* sessions derived */
	uint64_t cookie_replies_sent, cookie_replies_received;
	uint64_t drop_no_peer;	     /* TUN packet with no AllowedIPs match */
	uint64_t drop_no_path;	     /* path selector had no endpoint */
	uint64_t drop_staged;	     /* staged packet evicted or unstageable */
	uint64_t drop_batch_full;    /* no free slot in an output batch */
	uint64_t drop_bad_packet;    /* malformed IP packet or datagram */
	uint64_t drop_bad_handshake; /* MAC, decryption, replay, unknown key */
	uint64_t drop_unknown_index; /* receiver index not in the table */
	uint64_t drop_bad_data;	     /* AEAD failure, stale or replayed */
	uint64_t drop_source;	     /* inner source outside AllowedIPs */
};

/* What a test (or a status line) may learn about one peer. */
struct wg_peer_status {
	bool has_session;	/* a current keypair that may send */
	uint32_t session_index; /* its local index (changes on every rekey) */
	uint64_t session_created_ns;
	uint64_t last_handshake_ns; /* 0 = never */
	/* Data messages (keepalives included) as datagrams: bytes of those
	 * opened from the peer and sealed for it, since it was added. */
	uint64_t rx_bytes, tx_bytes;
	uint32_t handshake_attempts;
	size_t staged;
	size_t n_keypairs;
};

void wg_device_config_default(struct wg_device_config *cfg);
/* Checks the timer values of cfg. Returns 0 or -EINVAL with *why set. */
int wg_device_config_check(const struct wg_device_config *cfg, const char **why);

/* Creates a device with no peers. The private key is copied (and wiped
 * from the device on free); the caller wipes its copy. Returns 0 with *out
 * set, or -EINVAL with *why set (bad timers, unusable key); *out is NULL
 * then. */
int wg_device_new(const struct wg_device_config *cfg, uint64_t now_ns, struct wg_device **out,
		  const char **why);
/* Wipes every key and frees everything. NULL does nothing. */
void wg_device_free(struct wg_device *dev);

/* Makes the peer set equal to peers[0..n): a peer whose key is new is
 * created, one whose key is absent is removed (its sessions wiped, its
 * indices released), one that stays keeps its sessions, timers and staged
 * packets while its AllowedIPs, endpoints and keepalive are updated. A
 * changed key is a removal plus a new peer. The AllowedIPs trie is rebuilt.
 * Returns 0, or -EINVAL with *why set (duplicate key, the device's own key,
 * bad prefix); nothing changes then. */
int wg_device_set_peers(struct wg_device *dev, const struct wg_peer_config *peers, size_t n,
			uint64_t now_ns, const char **why);

/* The caller's load signal: how many handshake messages wait in its
 * queues. At UNDER_LOAD_QUEUE_LEN or more (and for UNDER_LOAD_AFTER_TIME
 * after), handshakes without a valid mac2 get a cookie reply instead of an
 * answer. Handshake messages within one udp_rx batch count too. */
void wg_device_set_load(struct wg_device *dev, size_t queued_handshakes);

/* Stage TUN -> UDP. Each packet of `in` is an IP packet; its destination
 * picks the peer by AllowedIPs (no match: dropped). With a usable session
 * it is sealed in place and its slot swapped into `out_udp` with addr = the
 * path's endpoint; without one it is staged and a handshake initiation is
 * emitted into out_udp instead. Packets waiting from earlier calls go first
 * when their session is ready. in->n is 0 afterwards. Returns the number of
 * datagrams added to out_udp. */
size_t wg_device_tun_rx(struct wg_device *dev, struct wg_batch *in, struct wg_batch *out_udp,
			uint64_t now_ns);

/* Stage UDP -> TUN. Each packet of `in` is a datagram with its source in
 * addr. Handshake messages are answered into out_udp (responses, cookie
 * replies, the initiator's first packets); data messages are opened in
 * place and, unless keepalives, checked (the inner source must be in the
 * sending peer's AllowedIPs) and swapped into out_tun trimmed to the IP
 * packet's length. in->n is 0 afterwards. Returns the number of packets
 * added to out_tun. */
size_t wg_device_udp_rx(struct wg_device *dev, struct wg_batch *in, struct wg_batch *out_tun,
			struct wg_batch *out_udp, uint64_t now_ns);

/* Stage clock -> UDP: runs every timer due at now_ns (handshake retries and
 * give-ups, passive and persistent keepalives, handshakes for silent peers,
 * key zeroing) and sends staged packets whose session is ready. Call it at
 * least every few tens of milliseconds. Returns datagrams added. */
size_t wg_device_timers(struct wg_device *dev, uint64_t now_ns, struct wg_batch *out_udp);

/* Starts a handshake with the peer now, into out_udp: an explicit rekey
 * (tests, an operator), so REKEY_TIMEOUT's rate limit does not apply; the
 * usual retries follow on the timer. Returns 0 or -ENOENT. */
int wg_device_initiate(struct wg_device *dev, const uint8_t public_key[static WG_KEY_LEN],
		       uint64_t now_ns, struct wg_batch *out_udp);

/* For a path selector whose first direct path to the peer just appeared:
 * starts a handshake now, into out_udp, as wg_device_initiate does, unless
 * one is in flight (an initiation that left less than REKEY_TIMEOUT ago
 * and is not answered yet). That one is sent again instead, byte for byte,
 * where the path selector says now: the first copy may have gone a way that
 * loses it (DERP the peer is not connected to yet), and the peer answers
 * whichever copy comes first and drops the other as a replay. A new
 * initiation would replace the first's handshake, and the peer takes only
 * one of two initiations that close together (the same whitened TAI64N
 * timestamp, or less than 1/INITIATIONS_PER_SECOND apart): when it took the
 * first, its response would open nothing here any more, and the handshake
 * would wait for the retry timer, REKEY_TIMEOUT (5 s). (wireguard-go never
 * sends a second initiation within REKEY_TIMEOUT; tailscale's magicsock
 * sends each packet both ways while the direct path is not proven.) An
 * attempt that found no path or no room in out_udp is not in flight: a new
 * initiation replaces it at once. Returns 0 or -ENOENT. */
int wg_device_initiate_on_new_path(struct wg_device *dev,
				   const uint8_t public_key[static WG_KEY_LEN], uint64_t now_ns,
				   struct wg_batch *out_udp);

/* Configured peers whose handshake initiation arrived at most
 * WG_EARLY_INITIATOR_NS before now_ns, while they were not peers (a node
 * that restarted learned of us before we of it, and dropped initiations
 * are retried only after REKEY_TIMEOUT): up to max of their keys into
 * keys, each forgotten once returned. The caller starts a handshake with
 * each (wg_device_initiate). Returns how many. The key recorded is the one
 * the initiation names, before it is authenticated: at worst a handshake
 * with a configured peer that did not ask for one. */
size_t wg_device_take_early_initiators(struct wg_device *dev, uint64_t now_ns,
				       uint8_t (*keys)[WG_KEY_LEN], size_t max);

const struct wg_device_stats *wg_device_stats(const struct wg_device *dev);
/* Returns 0 with *st filled, or -ENOENT for an unknown key. */
int wg_device_peer_status(const struct wg_device *dev, const uint8_t public_key[static WG_KEY_LEN],
			  uint64_t now_ns, struct wg_peer_status *st);
size_t wg_device_peer_count(const struct wg_device *dev);

/* For path selectors. The pointer is valid until the peer is removed. */
const uint8_t *wg_peer_public_key(const struct wg_peer *peer);
/* The endpoints from the peer's config; *n their count. */
const struct sockaddr_storage *wg_peer_endpoints(const struct wg_peer *peer, size_t *n);

#endif
