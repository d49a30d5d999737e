/* Private to common/wg/wg_device.c, wg_peer.c, wg_send.c and wg_receive.c:
 * the device's and peers' state and the helpers these files share (the
 * double underscore marks them folder-private). Nothing outside
 * common/wg/ includes this; everyone else sees wg_device.h. */
#ifndef TSCNI_WORKER_WG_WG_DEVICE_INTERNAL_H
#define TSCNI_WORKER_WG_WG_DEVICE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "allowedips.h"
#include "wg_cookie.h"
#include "wg_device.h"
#include "wg_noise.h"
#include "wg_timers.h"

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

enum wg_device_internal_limits {
	/* Wheel resolution: 1 ms is well below the shortest timer (jitter). */
	WG_DEVICE_TICK_NS = 1000000,
	/* Index slots per peer: one handshake in flight + three sessions,
	 * doubled so linear probing stays short. */
	WG_INDEX_SLOTS_PER_PEER = 8,
	WG_INDEX_MIN_SLOTS = 64,
};

/* A packet waiting for its peer's session: a copy of the plaintext at
 * buf + WG_DEVICE_HEADROOM, from the device's pool. */
struct wg_staged {
	size_t len;
	uint8_t buf[WG_DEVICE_STAGED_BUF_LEN];
};

struct wg_peer {
	struct wg_device *dev;
	uint8_t public_key[WG_KEY_LEN];
	struct wg_handshake hs;
	struct wg_cookie_generator cookie;
	/* The sessions (3.4 KB with their replay windows): allocated with
	 * the first (wg_peer__keypairs), freed by wg_peer__zero_keys. Most
	 * peers of a large tailnet never have one. */
	struct wg_keypairs *kps;
	/* hs.local_index is in the index table on behalf of the handshake
	 * (not yet handed to a keypair, which then owns it). */
	bool hs_index_live;
	/* That index: hs.local_index is wiped when a peer's initiation
	 * replaces our handshake, so the table entry is tracked here. */
	uint32_t hs_index;

	struct ip_prefix *allowed_ips;
	size_t n_allowed_ips;
	/* At most WG_PEER_MAX_ENDPOINTS, allocated to size; NULL: none. */
	struct sockaddr_storage *endpoints;
	size_t n_endpoints;
	uint32_t persistent_keepalive_s;

	/* Timers (wireguard-go names). */
	struct wg_timer retransmit_handshake, send_keepalive, new_handshake, zero_key_material,
		persistent_keepalive;
	uint32_t handshake_attempts;
	bool need_another_keepalive;
	bool sent_last_minute_handshake;
	bool initiation_sent;
	uint64_t last_initiation_sent_ns;
	/* The latest initiation went into out_udp (it did not stop at "no
	 * path" or a full batch): its response may be on its way. Its bytes,
	 * for wg_device_initiate_on_new_path. */
	bool initiation_out;
	uint8_t initiation_msg[WG_MESSAGE_INITIATION_LEN];
	uint64_t last_handshake_ns;
	/* Wire bytes of the data messages (keepalives too) this peer's
	 * sessions opened and sealed: wg_peer_status's rx/tx_bytes. */
	uint64_t rx_bytes, tx_bytes;

	/* Staged packets: a ring of staged_per_peer pool entries, oldest at
	 * staged_head, allocated with the first packet staged and freed once
	 * drained (wg_peer__staged_list_remove): NULL while none waits. */
	struct wg_staged **staged;
	size_t staged_head, staged_count;
	/* On dev's list of peers with staged packets. */
	struct wg_peer *staged_next;
	bool on_staged_list;

	bool keep; /* set_peers bookkeeping */
};

struct wg_index_entry {
	uint32_t index;
	struct wg_peer *peer; /* NULL = free */
};

struct wg_device {
	struct wg_noise_static local;
	struct wg_cookie_checker checker;
	struct wg_device_timers t;
	struct wg_device_env env;
	const struct wg_path_ops *path;
	void *path_arg;
	size_t mtu;
	size_t queued_handshakes;

	/* Peers sorted by public key. */
	struct wg_peer **peers;
	size_t n_peers;
	struct allowedips aips;

	struct wg_index_entry *index;
	size_t index_mask; /* slots - 1, a power of two minus one */
	size_t index_used;

	struct wg_staged *pool;
	struct wg_staged **pool_free;
	size_t pool_len, pool_nfree;
	size_t staged_per_peer;
	struct wg_peer *staged_list;

	struct wg_timer_wheel wheel;
	struct wg_device_stats stats;

	/* Static keys of initiations from nodes that were not peers (yet),
	 * the oldest overwritten: wg_device_take_early_initiators. */
	struct {
		uint8_t key[WG_KEY_LEN];
		uint64_t at_ns; /* 0: free */
	} early[WG_EARLY_INITIATORS];
	size_t early_next;
};

/* The stage running now: its output batch and clock, for the helpers and
 * the timer callbacks. */
struct wg_stage {
	struct wg_device *dev;
	struct wg_batch *out_udp;
	uint64_t now;
};

/* wg_device.c: tables and helpers. */
/* An initiation from key, not a peer, was received at now_ns. */
void wg_device__note_early_initiator(struct wg_device *dev, const uint8_t *key, uint64_t now_ns);
/* Random 0..jitter_max_ns from env.random. */
uint64_t wg_device__jitter(struct wg_device *dev);
/* The peer with that node key, or NULL (binary search). */
struct wg_peer *wg_device__find_peer(const struct wg_device *dev, const uint8_t *key);
/* The receiver-index table: index_new draws a random index not in use and
 * registers it for peer; index_remove/index_release forget indices (those
 * the protocol core reports as dropped); index_find returns NULL for an
 * index not in the table. */
struct wg_index_entry *wg_device__index_find(const struct wg_device *dev, uint32_t index);
void wg_device__index_remove(struct wg_device *dev, uint32_t index);
uint32_t wg_device__index_new(struct wg_device *dev, struct wg_peer *peer);
void wg_device__index_release(struct wg_device *dev, const uint32_t *dropped, size_t n);
/* The family, the source (dst false) or destination address and the true
 * length of the IPv4/IPv6 packet p/len. Returns 0 or -EBADMSG (not IP,
 * truncated, or a length field beyond len). */
int wg_device__ip_header(const uint8_t *p, size_t len, bool dst, int *family, const uint8_t **addr,
			 size_t *ip_len);
/* Exchanges two batch slots, buffers included (the zero-copy hand-over). */
void wg_device__swap_packets(struct wg_packet *a, struct wg_packet *b);

/* wg_peer.c: peer lifetime, staging, timer events (wireguard-go timers.go). */
/* The device keeps a list of peers with staged packets; stage copies a
 * packet into the pool (evicting the peer's oldest when full), staged_pop
 * and pool_put hand pool entries back and forth; staged_list_remove also
 * frees the peer's ring when nothing is staged. */
void wg_peer__staged_list_add(struct wg_device *dev, struct wg_peer *peer);
void wg_peer__staged_list_remove(struct wg_device *dev, struct wg_peer *peer);
struct wg_staged *wg_peer__staged_pop(struct wg_peer *peer);
void wg_peer__pool_put(struct wg_device *dev, struct wg_staged *s);
void wg_peer__stage(struct wg_peer *peer, const struct wg_packet *pkt);
/* The events of wireguard-go's timers.go, each arming or disarming the
 * peer's timers as the paper's §6 asks. */
void wg_peer__timers_any_authenticated_packet_traversal(struct wg_stage *st, struct wg_peer *peer);
void wg_peer__timers_any_authenticated_packet_sent(struct wg_stage *st, struct wg_peer *peer);
void wg_peer__timers_any_authenticated_packet_received(struct wg_stage *st, struct wg_peer *peer);
void wg_peer__timers_data_sent(struct wg_stage *st, struct wg_peer *peer);
void wg_peer__timers_data_received(struct wg_stage *st, struct wg_peer *peer);
void wg_peer__timers_handshake_initiated(struct wg_stage *st, struct wg_peer *peer);
void wg_peer__timers_handshake_complete(struct wg_stage *st, struct wg_peer *peer);
void wg_peer__timers_session_derived(struct wg_stage *st, struct wg_peer *peer);
/* Wipes every session and the handshake, releasing their indices; the
 * sessions' memory goes too (no pointer to a keypair may be held). */
void wg_peer__zero_keys(struct wg_device *dev, struct wg_peer *peer);
/* The peer's sessions, allocated (empty) if it had none. */
struct wg_keypairs *wg_peer__keypairs(struct wg_peer *peer);
/* Its current session, or NULL (none, or no sessions at all). */
static inline struct wg_keypair *wg_peer__current(struct wg_peer *peer)
{
	return peer->kps ? wg_noise_keypairs_current(peer->kps) : NULL;
}
/* Copies AllowedIPs, endpoints and keepalive from pc (allocates). */
void wg_peer__set_config(struct wg_peer *peer, const struct wg_peer_config *pc);
/* Disarms the timers, releases indices and staged packets, wipes, frees.
 * NULL does nothing. */
void wg_peer__free(struct wg_peer *peer);
/* A peer with no sessions, not yet in any table. Returns 0, or -EINVAL
 * for a low-order public key (*out NULL). */
int wg_peer__new(struct wg_device *dev, const struct wg_peer_config *pc, struct wg_peer **out);

/* wg_send.c: what goes out. */
/* The next free slot of the stage's out_udp, or NULL (counted as
 * drop_batch_full). The caller increments out_udp->n once it filled it. */
struct wg_packet *wg_send__out_slot(struct wg_stage *st);
/* The session that may seal now under the device's (possibly shortened)
 * REJECT_AFTER_TIME, or NULL. */
struct wg_keypair *wg_send__keypair(const struct wg_device *dev, struct wg_peer *peer,
				    uint64_t now);
/* A handshake initiation into out_udp, at most one per REKEY_TIMEOUT;
 * is_retry keeps the attempt count (the retransmit timer). */
void wg_send__initiation(struct wg_stage *st, struct wg_peer *peer, bool is_retry);
/* Seals and emits the peer's staged packets while out_udp has room, or
 * starts a handshake when there is no session. keepalive: the staged
 * packets if any, else an empty data message. flush_staged: staged
 * packets of every peer that has a session now. */
void wg_send__staged(struct wg_stage *st, struct wg_peer *peer);
void wg_send__keepalive(struct wg_stage *st, struct wg_peer *peer);
void wg_send__flush_staged(struct wg_stage *st);

#endif
