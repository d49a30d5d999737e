/* WireGuard's handshake: Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s with the
 * construction, identifier and labels of wg_messages.h (WireGuard paper §5.4),
 * TAI64N timestamps, and per-peer replay and flood protection of initiations.
 *
 * This module is the protocol core only: it never draws randomness, reads a
 * clock or allocates. The caller supplies the ephemeral private key
 * (randombytes_buf), the sender index (unique in its index table), the TAI64N
 * timestamp (wg_noise_tai64n_now) and a monotonic `now_ns`; this keeps every
 * step reproducible against wireguard-go's vectors. MAC1/MAC2 are added and
 * checked by wg_cookie; transport messages are sealed by wg_data.
 *
 * Every struct here is embedded by its owner: _init fills it, _destroy wipes
 * every secret in it with sodium_memzero. */
#ifndef TSCNI_WORKER_WG_WG_NOISE_H
#define TSCNI_WORKER_WG_WG_NOISE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wg_messages.h"
#include "wg_replay.h"

/* This device's identity. */
struct wg_noise_static {
	uint8_t private_key[WG_KEY_LEN];
	uint8_t public_key[WG_KEY_LEN];
};

enum wg_handshake_state {
	WG_HANDSHAKE_ZEROED = 0,
	WG_HANDSHAKE_CREATED_INITIATION,
	WG_HANDSHAKE_CONSUMED_INITIATION,
	WG_HANDSHAKE_CREATED_RESPONSE,
	WG_HANDSHAKE_CONSUMED_RESPONSE,
};

/* The handshake state of one peer. One per peer, owned by the peer. */
struct wg_handshake {
	enum wg_handshake_state state;
	uint8_t remote_static[WG_KEY_LEN];
	/* DH(local static, remote static), computed once at _init. */
	uint8_t precomputed_static_static[WG_KEY_LEN];
	uint8_t preshared_key[WG_KEY_LEN];
	uint8_t hash[WG_HASH_LEN];
	uint8_t chaining_key[WG_HASH_LEN];
	uint8_t ephemeral_private[WG_KEY_LEN];
	uint8_t remote_ephemeral[WG_KEY_LEN];
	uint32_t local_index;  /* the index we put in our message */
	uint32_t remote_index; /* the index the peer put in its message */
	/* Newest TAI64N accepted from this peer; older or equal ones are replays. */
	uint8_t latest_timestamp[WG_TIMESTAMP_LEN];
	/* Flood protection: when the last initiation was consumed. */
	uint64_t last_initiation_consumption_ns;
	bool consumed_any_initiation;
};

/* Transport keys of one session (paper §5.4.5), used by wg_data. */
struct wg_keypair {
	uint8_t send_key[WG_KEY_LEN];
	uint8_t recv_key[WG_KEY_LEN];
	uint64_t send_counter; /* the next counter to send */
	struct wg_replay replay;
	uint32_t local_index;  /* receivers address us with this */
	uint32_t remote_index; /* we address the peer with this */
	bool initiator;
	uint64_t created_ns;
};

/* Finds the handshake state of the peer whose static public key an
 * initiation carries; NULL if that key is not a configured peer. */
typedef struct wg_handshake *wg_noise_lookup_fn(void *ctx, const uint8_t public_key[WG_KEY_LEN]);

/* Computes the public key. Returns 0, or -EINVAL if the private key is
 * unusable (the public key would be zero). */
int wg_noise_static_init(struct wg_noise_static *s, const uint8_t private_key[static WG_KEY_LEN]);
void wg_noise_static_destroy(struct wg_noise_static *s);

/* Prepares the handshake with one peer. preshared_key may be NULL (all zero,
 * as Tailscale uses it). Returns 0, or -EINVAL if DH(local, remote) is the
 * all-zero value (a low-order remote key): such a peer never gets a session. */
int wg_noise_handshake_init(struct wg_handshake *hs, const struct wg_noise_static *local,
			    const uint8_t remote_static[static WG_KEY_LEN],
			    const uint8_t *preshared_key);
/* Wipes everything, replay state included. */
void wg_noise_handshake_destroy(struct wg_handshake *hs);
/* Forgets a handshake in progress (keeps keys and replay/flood state). */
void wg_noise_handshake_clear(struct wg_handshake *hs);

/* TAI64N of CLOCK_REALTIME, nanoseconds rounded down to 2^24 ns as
 * wireguard-go does so the timestamp leaks little about the clock. */
void wg_noise_tai64n_now(uint8_t out[static WG_TIMESTAMP_LEN]);
/* The same from explicit Unix time (tests, clocks under control). */
void wg_noise_tai64n_from(uint8_t out[static WG_TIMESTAMP_LEN], uint64_t unix_sec, uint32_t nsec);

/* Initiator, message 1. Fills *msg except mac1/mac2 (zero; wg_cookie adds
 * them) and moves hs to CREATED_INITIATION with hs->local_index =
 * sender_index. Returns 0 or -EINVAL (low-order key); on error hs is cleared
 * and *msg zeroed. */
int wg_noise_create_initiation(struct wg_handshake *hs, const struct wg_noise_static *local,
			       const uint8_t ephemeral_private[static WG_KEY_LEN],
			       uint32_t sender_index,
			       const uint8_t timestamp[static WG_TIMESTAMP_LEN],
			       struct wg_message_initiation *msg);

/* Responder, message 1 (its MAC1, and under load MAC2, already checked).
 * Decrypts the initiator's static key, asks lookup() for that peer's
 * handshake, decrypts the timestamp and refuses replays (a timestamp not
 * newer than the last accepted one) and floods (more than
 * INITIATIONS_PER_SECOND). On success *hs_out is the peer's handshake, now
 * CONSUMED_INITIATION with remote_index set, and 0 is returned. Errors, with
 * *why set and the peer's state untouched: -EBADMSG (decryption failed: wrong
 * static key or corrupt), -ENOKEY (unknown peer), -EINVAL (low-order key),
 * -EALREADY (replayed timestamp), -EBUSY (flood). *hs_out is NULL then. */
int wg_noise_consume_initiation(const struct wg_noise_static *local,
				const struct wg_message_initiation *msg, wg_noise_lookup_fn *lookup,
				void *ctx, uint64_t now_ns, struct wg_handshake **hs_out,
				const char **why);

/* Responder, message 2, after consume_initiation. Fills *msg except the MACs
 * and moves hs to CREATED_RESPONSE. Returns 0, -EINVAL (wrong state or
 * low-order key). */
int wg_noise_create_response(struct wg_handshake *hs,
			     const uint8_t ephemeral_private[static WG_KEY_LEN],
			     uint32_t sender_index, struct wg_message_response *msg);

/* Initiator, message 2. The caller found hs by msg->receiver_index in its
 * index table and checked MAC1. Returns 0 (hs is CONSUMED_RESPONSE) or, with
 * *why set and hs untouched, -EINVAL (hs is not waiting for a response, or
 * the index does not match) or -EBADMSG (authentication failed). */
int wg_noise_consume_response(struct wg_handshake *hs, const struct wg_noise_static *local,
			      const struct wg_message_response *msg, const char **why);

/* Our initiation in flight, set aside while the same handshake state
 * answers a crossing initiation from the peer and put back afterwards, so
 * that the peer's response to it can still complete it. */
struct wg_noise_initiation {
	uint8_t hash[WG_HASH_LEN];
	uint8_t chaining_key[WG_HASH_LEN];
	uint8_t ephemeral_private[WG_KEY_LEN];
	uint32_t local_index;
};

/* Copies hs's initiation to *out and returns true when hs is
 * CREATED_INITIATION; false (nothing copied) otherwise. */
bool wg_noise_initiation_save(const struct wg_handshake *hs, struct wg_noise_initiation *out);
/* Makes hs CREATED_INITIATION with the saved initiation, replacing any other
 * handshake in progress (replay and flood state stay), and wipes *saved. */
void wg_noise_initiation_restore(struct wg_handshake *hs, struct wg_noise_initiation *saved);

/* Splits the finished handshake into transport keys (paper §5.4.5): after
 * consume_response (initiator) or create_response (responder). Fills *kp
 * (counters at 0, empty replay window, created_ns = now_ns) and wipes the
 * handshake's ephemeral secrets (state back to ZEROED). Returns 0 or -EINVAL
 * when hs is in neither state. */
int wg_noise_derive_keypair(struct wg_handshake *hs, struct wg_keypair *kp, uint64_t now_ns);
void wg_noise_keypair_destroy(struct wg_keypair *kp);

/* A peer's sessions (paper §6; wireguard-go Keypairs): `current` sends and
 * receives; `previous` still receives what was in flight when current
 * replaced it; `next` is a responder's new session, which receives but does
 * not send until the initiator's first message on it confirms it
 * (wg_noise_keypairs_received_with). Three embedded slots, no pointers into
 * them, so the struct can be moved; a slot number is -1 when unused.
 *
 * Every function that drops sessions wipes them and writes their local
 * indices to dropped[] (at most 3) with their count in *ndropped, so the
 * caller can release those indices from its index table. */
enum wg_keypairs_limits { WG_KEYPAIR_SLOTS = 3 };

struct wg_keypairs {
	struct wg_keypair slot[WG_KEYPAIR_SLOTS];
	int current, previous, next;
};

void wg_noise_keypairs_init(struct wg_keypairs *kps);
/* Wipes every session (the peer's key changed or the peer left). */
void wg_noise_keypairs_clear(struct wg_keypairs *kps, uint32_t dropped[static WG_KEYPAIR_SLOTS],
			     size_t *ndropped);
/* Installs a copy of kp fresh from wg_noise_derive_keypair (the caller wipes
 * its own). As initiator it becomes current at once (the old current, or an
 * unconfirmed next, becomes previous); as responder it becomes next. */
void wg_noise_keypairs_install(struct wg_keypairs *kps, const struct wg_keypair *kp,
			       uint32_t dropped[static WG_KEYPAIR_SLOTS], size_t *ndropped);
/* The session to send with, or NULL (none, or only an unconfirmed next). */
struct wg_keypair *wg_noise_keypairs_current(struct wg_keypairs *kps);
/* The session whose local index a data message names, or NULL. */
struct wg_keypair *wg_noise_keypairs_find(struct wg_keypairs *kps, uint32_t local_index);
/* Call after a data message authenticated on kp. If kp is `next`, it becomes
 * current (current moves to previous) and true is returned: the handshake is
 * complete and packets waiting for it may go. */
bool wg_noise_keypairs_received_with(struct wg_keypairs *kps, const struct wg_keypair *kp,
				     uint32_t dropped[static WG_KEYPAIR_SLOTS], size_t *ndropped);
/* Drops every session older than 3 * REJECT_AFTER_TIME (wireguard-go zeroes
 * key material then; nothing can use them after REJECT_AFTER_TIME anyway). */
void wg_noise_keypairs_expire(struct wg_keypairs *kps, uint64_t now_ns,
			      uint32_t dropped[static WG_KEYPAIR_SLOTS], size_t *ndropped);

#endif
