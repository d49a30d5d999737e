/* One peer's paths: which of its ip:ports disco has proven, which one its
 * WireGuard packets take, and when DERP must carry them instead — the
 * decisions upstream's magicsock endpoint makes (docs/tailscale-protocol.md
 * §7.5), without sockets or timers of its own.
 *
 * The caller feeds events with the current time in milliseconds from a
 * monotonic clock (uv_now; never 0, which here means "never") and carries
 * out what comes back in a struct path_out: disco pings, Pongs and
 * CallMeMaybes to send, and for a WireGuard packet the UDP address and/or
 * DERP region to send it to. It calls path_tick() at path_next_deadline().
 * Ping TxIDs come from randombytes_buf (sodium_init() must have run).
 *
 * Kept per peer, each table in chunks allocated as it fills (a peer with
 * two endpoints and no ping in flight holds two chunks' worth, not the
 * bounds below) and never moved, so a pointer to a slot stays valid until
 * the chunk is freed, which happens only at the end of path_tick(),
 * path_reset() and path_set_endpoints() (trailing chunks with nothing in
 * them) and in path_destroy():
 *   - candidate endpoints: from the netmap, from the peer's CallMeMaybe, and
 *     learned from the source of its pings (forgotten 45 s after the last);
 *   - pings in flight, by TxID, each forgotten after 5 s;
 *   - the best address, its latency and until when it alone is trusted
 *     (6.5 s after its last Pong); after that WireGuard goes through DERP
 *     as well, and discovery starts again;
 *   - a heartbeat every 3 s while WireGuard was sent in the last 45 s;
 *   - the ip:ports disco confirmed, the only ones WireGuard is accepted from.
 * A peer without a disco key has no struct path (nothing here applies). */
#ifndef TSCNI_WORKER_MAGICSOCK_PATH_H
#define TSCNI_WORKER_MAGICSOCK_PATH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "disco.h"

enum path_timing {
	/* A Pong later than this does not count; the ping is forgotten. */
	PATH_PING_TIMEOUT_MS = 5000,
	/* An endpoint is pinged again only after this (a CallMeMaybe
	 * excepted: its pings go out at once). */
	PATH_DISCO_PING_INTERVAL_MS = 5000,
	/* How long one Pong makes the best address the only path. */
	PATH_TRUST_UDP_ADDR_MS = 6500,
	PATH_HEARTBEAT_INTERVAL_MS = 3000,
	/* Idle this long: no more heartbeats; learned endpoints expire. */
	PATH_SESSION_ACTIVE_TIMEOUT_MS = 45000,
	/* A working path slower than PATH_GOOD_ENOUGH_LATENCY_MS is
	 * challenged by a full round of pings this often. */
	PATH_UPGRADE_INTERVAL_MS = 60000,
	PATH_GOOD_ENOUGH_LATENCY_MS = 5,
	/* Our own endpoints older than this are re-STUNned before they go in
	 * a CallMeMaybe (the caller's part of PATH_SEND_CALL_ME_MAYBE). */
	PATH_ENDPOINTS_FRESH_MS = 27000,
};

enum path_limits {
	/* Upstream prunes a peer's candidates past 100; we stop at 64. */
	PATH_MAX_ENDPOINTS = 64,
	/* Pings in flight: one per endpoint per 5 s, plus heartbeats. */
	PATH_MAX_PINGS = PATH_MAX_ENDPOINTS + 16,
	/* Source ip:ports WireGuard is accepted from; the oldest goes. */
	PATH_MAX_CONFIRMED = 16,
	/* What one event can ask for: a ping per endpoint, a heartbeat
	 * ping, a CallMeMaybe or a Pong. */
	PATH_MAX_ACTIONS = PATH_MAX_ENDPOINTS + 2,
	/* Slots per chunk and chunks per table: a netmap lists one to three
	 * endpoints for most peers; pings live 5 s. */
	PATH_EP_CHUNK = 4,
	PATH_EP_CHUNKS = PATH_MAX_ENDPOINTS / PATH_EP_CHUNK,
	PATH_PING_CHUNK = 8,
	PATH_PING_CHUNKS = PATH_MAX_PINGS / PATH_PING_CHUNK,
	PATH_CONFIRMED_CHUNK = 4,
	PATH_CONFIRMED_CHUNKS = PATH_MAX_CONFIRMED / PATH_CONFIRMED_CHUNK,
};
_Static_assert(PATH_MAX_ENDPOINTS % PATH_EP_CHUNK == 0, "whole endpoint chunks");
_Static_assert(PATH_MAX_PINGS % PATH_PING_CHUNK == 0, "whole ping chunks");
_Static_assert(PATH_MAX_CONFIRMED % PATH_CONFIRMED_CHUNK == 0, "whole confirmed chunks");

enum path_purpose {
	PATH_PING_DISCOVERY, /* is this path usable? */
	PATH_PING_HEARTBEAT, /* is the best path still there? */
};

enum path_action_type {
	/* A disco Ping with txid to `to` (through DERP region to.port when
	 * disco_addr_is_derp(&to)). If it cannot be sent, path_ping_failed(). */
	PATH_SEND_PING,
	/* A Pong answering txid to `to`, Src = `to`. */
	PATH_SEND_PONG,
	/* A CallMeMaybe with our endpoints through DERP region to.port, once
	 * they are at most PATH_ENDPOINTS_FRESH_MS old (re-STUN first). */
	PATH_SEND_CALL_ME_MAYBE,
};

struct path_action {
	enum path_action_type type;
	enum path_purpose purpose; /* PATH_SEND_PING */
	struct disco_addr to;
	uint8_t txid[DISCO_TXID_LEN];
};

/* Where one WireGuard packet goes: to udp when has_udp, through DERP
 * region derp_region when has_derp; both while the direct path is not
 * trusted; neither when there is no path at all. */
struct path_route {
	bool has_udp, has_derp;
	struct disco_addr udp;
	uint16_t derp_region;
};

struct path_out {
	struct path_route route;
	size_t n;
	struct path_action actions[PATH_MAX_ACTIONS];
};

struct path_endpoint {
	struct disco_addr addr;
	bool used;
	bool from_netmap;	/* listed in the peer's netmap Endpoints */
	bool is_call_me_maybe;	/* in the peer's latest CallMeMaybe */
	uint64_t last_ping;	/* our last ping to it */
	uint64_t last_got_ping; /* learned from the peer's ping at this time */
	uint64_t call_me_maybe_time;
	uint8_t last_got_ping_txid[DISCO_TXID_LEN];
	bool has_latency;
	uint64_t latency_ms; /* of its latest Pong */
};

struct path_ping {
	bool used;
	enum path_purpose purpose;
	uint8_t txid[DISCO_TXID_LEN];
	struct disco_addr to;
	uint64_t at;
};

struct path_confirmed {
	struct disco_addr addr;
	uint64_t at;
};

struct path {
	bool has_derp;
	uint16_t derp_region;
	struct disco_addr best; /* zero: none */
	uint64_t best_latency_ms;
	uint64_t best_at;
	uint64_t trust_best_until;
	uint64_t last_send_ext;	 /* last WireGuard packet to the peer */
	uint64_t last_full_ping; /* last round of pings to every endpoint */
	uint64_t heartbeat_at;	 /* 0: no heartbeat scheduled */
	/* Chunks [0, n_*) are allocated, the rest NULL. */
	struct path_endpoint *eps[PATH_EP_CHUNKS];
	struct path_ping *pings[PATH_PING_CHUNKS];
	struct path_confirmed *confirmed[PATH_CONFIRMED_CHUNKS];
	uint8_t n_eps, n_pings, n_confirmed;
	/* Endpoints refused because eps was full (a bound, seen in stats). */
	uint64_t endpoints_dropped;
};

void path_init(struct path *p);
/* Frees the chunks (the struct itself is the caller's). */
void path_destroy(struct path *p);

/* The peer's home DERP region from the netmap; 0: none. */
void path_set_derp(struct path *p, uint16_t region);
/* The peer's endpoints from the netmap (invalid ones skipped). Endpoints
 * no longer listed go unless they came in a CallMeMaybe or the peer
 * pinged from them in the last PATH_SESSION_ACTIVE_TIMEOUT_MS. */
void path_set_endpoints(struct path *p, uint64_t now, const struct disco_addr *eps, size_t n);
/* The peer's disco key changed (it restarted): forget the best path, the
 * pings in flight and when we last pinged; the endpoints stay. */
void path_reset(struct path *p);
/* Our network changed: no path is known good any more. */
void path_note_connectivity_change(struct path *p);
/* Sending to addr failed in a way that says it is unusable. */
void path_note_bad_endpoint(struct path *p, const struct disco_addr *addr);

/* A Pong proved the best address and its trust has not run out. */
bool path_proven(const struct path *p, uint64_t now);
/* The route for WireGuard at now, without side effects. */
void path_route(const struct path *p, uint64_t now, struct path_route *r);
/* A WireGuard packet is about to go to the peer: out->route says where;
 * out->actions may hold the pings of a new round of discovery. Returns 0,
 * or -ENETUNREACH when there is neither a UDP path nor a DERP region. */
int path_on_send(struct path *p, uint64_t now, struct path_out *out);
/* A disco Pong from src (127.3.3.40:region when via DERP). Returns true
 * when txid was one of this peer's pings in flight (the caller with
 * several peers on one disco key stops asking at the first true). A Pong
 * through UDP for a live endpoint confirms src for this peer: afterwards
 * path_accepts_wg(p, src) holds, and the caller path_unconfirm()s src on
 * its other peers. */
bool path_on_pong(struct path *p, uint64_t now, const uint8_t txid[static DISCO_TXID_LEN],
		  const struct disco_addr *src);
/* A disco Ping from src (127.3.3.40:region when via DERP). src becomes a
 * candidate; when confirm_src, the caller knows unambiguously this peer
 * sent it (its node key or the only peer with that disco key) and src
 * now carries its WireGuard. Returns 0 and a PATH_SEND_PONG in out, or
 * -EALREADY for a duplicate of the previous ping from src (no Pong). */
int path_on_ping(struct path *p, uint64_t now, const struct disco_addr *src,
		 const uint8_t txid[static DISCO_TXID_LEN], bool confirm_src, struct path_out *out);
/* A CallMeMaybe (only ever through DERP, from this peer's node key and
 * disco key): its endpoints replace the previous CallMeMaybe's and all
 * are pinged now. IPv6 link-local endpoints are passed over. */
void path_on_call_me_maybe(struct path *p, uint64_t now, const struct disco_addr *eps, size_t n,
			   struct path_out *out);
/* A ping in out could not be sent: forget it. */
void path_ping_failed(struct path *p, const uint8_t txid[static DISCO_TXID_LEN]);
/* Ping timeouts and the heartbeat; call at path_next_deadline(). */
void path_tick(struct path *p, uint64_t now, struct path_out *out);
/* When path_tick() has something to do next; UINT64_MAX: nothing. */
uint64_t path_next_deadline(const struct path *p);

/* Whether WireGuard from src is this peer's: disco confirmed src for it
 * (a Pong to one of our pings came from src, or the peer's ping did). */
bool path_accepts_wg(const struct path *p, const struct disco_addr *src);
/* Another peer has confirmed src: it is no longer this one's. */
void path_unconfirm(struct path *p, const struct disco_addr *src);

#endif
