/* WireGuard wire format and protocol constants (WireGuard paper §5.4 and §6,
 * and wireguard-go device/constants.go, noise-protocol.go).
 *
 * Every integer on the wire is little-endian. The structs below are the exact
 * wire layout (no padding, checked by _Static_assert): a received message is
 * copied into one by wg_messages_parse(), so nothing ever reads a struct
 * through a misaligned pointer into a UDP buffer. Multi-byte fields hold the
 * little-endian wire value; read them with le32toh()/le64toh().
 *
 * The protocol constants keep the names the paper gives them. */
#ifndef TSCNI_WORKER_WG_WG_MESSAGES_H
#define TSCNI_WORKER_WG_WG_MESSAGES_H

#include <stddef.h>
#include <stdint.h>

/* Noise_IKpsk2 as WireGuard instantiates it. */
#define WG_CONSTRUCTION "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
#define WG_IDENTIFIER	"WireGuard v1 zx2c4 Jason@zx2c4.com"
#define WG_LABEL_MAC1	"mac1----"
#define WG_LABEL_COOKIE "cookie--"

enum wg_message_type {
	WG_MESSAGE_INITIATION = 1,
	WG_MESSAGE_RESPONSE = 2,
	WG_MESSAGE_COOKIE_REPLY = 3,
	WG_MESSAGE_DATA = 4,
};

enum wg_lengths {
	WG_KEY_LEN = 32,
	WG_HASH_LEN = 32,
	WG_AUTHTAG_LEN = 16,
	WG_TIMESTAMP_LEN = 12, /* TAI64N: seconds u64 BE || nanoseconds u32 BE */
	WG_MAC_LEN = 16,
	WG_COOKIE_LEN = 16,
	WG_COOKIE_NONCE_LEN = 24, /* XChaCha20-Poly1305 */
	WG_MESSAGE_INITIATION_LEN = 148,
	WG_MESSAGE_RESPONSE_LEN = 92,
	WG_MESSAGE_COOKIE_REPLY_LEN = 64,
	WG_DATA_HEADER_LEN = 16,
	WG_DATA_MIN_LEN = WG_DATA_HEADER_LEN + WG_AUTHTAG_LEN, /* a keepalive */
	WG_DATA_PADDING_MULTIPLE = 16,
	/* The largest datagram a UDP socket or a DERP frame hands us. */
	WG_MESSAGE_MAX_LEN = 65535,
	/* The largest plaintext that fits a data message of WG_MESSAGE_MAX_LEN. */
	WG_DATA_MAX_PLAINTEXT_LEN = WG_MESSAGE_MAX_LEN - WG_DATA_MIN_LEN,
	/* Ring of 128 64-bit blocks; one block is the slack RFC 6479 needs. */
	WG_REPLAY_RING_BITS = 8192,
	WG_REPLAY_WINDOW_SIZE = WG_REPLAY_RING_BITS - 64,
};

/* Message counters (paper §6.1; wireguard-go constants.go). A counter at or
 * past REJECT_AFTER_MESSAGES is never sent nor accepted; the window size is
 * kept below the limit so a replay window can never wrap. */
#define REKEY_AFTER_MESSAGES  (UINT64_C(1) << 60)
#define REJECT_AFTER_MESSAGES (UINT64_MAX - (UINT64_C(1) << 13))

/* Timers in seconds (paper §6.1), plus the limits wireguard-go adds. */
enum wg_timers {
	REKEY_AFTER_TIME = 120,
	REJECT_AFTER_TIME = 180,
	REKEY_ATTEMPT_TIME = 90,
	REKEY_TIMEOUT = 5,
	KEEPALIVE_TIMEOUT = 10,
	COOKIE_REFRESH_TIME = 120,
	/* A retried initiation waits REKEY_TIMEOUT plus up to this much jitter. */
	REKEY_TIMEOUT_JITTER_MAX_MS = 334,
	MAX_TIMER_HANDSHAKES = REKEY_ATTEMPT_TIME / REKEY_TIMEOUT,
	/* At most this many initiations per second are consumed from one peer. */
	INITIATIONS_PER_SECOND = 50,
	/* Stay "under load" this long after the handshake queue drained. */
	UNDER_LOAD_AFTER_TIME = 1,
	/* wireguard-go: under load when QueueHandshakeSize / 8 are queued. */
	MAX_QUEUED_INCOMING_HANDSHAKES = 1024,
	UNDER_LOAD_QUEUE_LEN = MAX_QUEUED_INCOMING_HANDSHAKES / 8,
};

#define WG_NSEC_PER_SEC UINT64_C(1000000000)

/* Type 1, 148 bytes. */
struct wg_message_initiation {
	uint32_t type; /* little-endian, 1 */
	uint32_t sender_index;
	uint8_t ephemeral[WG_KEY_LEN];
	uint8_t encrypted_static[WG_KEY_LEN + WG_AUTHTAG_LEN];
	uint8_t encrypted_timestamp[WG_TIMESTAMP_LEN + WG_AUTHTAG_LEN];
	uint8_t mac1[WG_MAC_LEN];
	uint8_t mac2[WG_MAC_LEN];
};

/* Type 2, 92 bytes. */
struct wg_message_response {
	uint32_t type; /* 2 */
	uint32_t sender_index;
	uint32_t receiver_index;
	uint8_t ephemeral[WG_KEY_LEN];
	uint8_t encrypted_nothing[WG_AUTHTAG_LEN];
	uint8_t mac1[WG_MAC_LEN];
	uint8_t mac2[WG_MAC_LEN];
};

/* Type 3, 64 bytes. */
struct wg_message_cookie_reply {
	uint32_t type; /* 3 */
	uint32_t receiver_index;
	uint8_t nonce[WG_COOKIE_NONCE_LEN];
	uint8_t encrypted_cookie[WG_COOKIE_LEN + WG_AUTHTAG_LEN];
};

/* Type 4 header; the ciphertext (padded plaintext || tag) follows. */
struct wg_message_data {
	uint32_t type; /* 4 */
	uint32_t receiver_index;
	uint64_t counter; /* little-endian */
};

_Static_assert(sizeof(struct wg_message_initiation) == WG_MESSAGE_INITIATION_LEN,
	       "initiation wire size");
_Static_assert(sizeof(struct wg_message_response) == WG_MESSAGE_RESPONSE_LEN, "response wire size");
_Static_assert(sizeof(struct wg_message_cookie_reply) == WG_MESSAGE_COOKIE_REPLY_LEN,
	       "cookie reply wire size");
_Static_assert(sizeof(struct wg_message_data) == WG_DATA_HEADER_LEN, "data header wire size");
_Static_assert(offsetof(struct wg_message_initiation, mac1) == WG_MESSAGE_INITIATION_LEN - 32,
	       "initiation mac1 offset");
_Static_assert(offsetof(struct wg_message_response, mac1) == WG_MESSAGE_RESPONSE_LEN - 32,
	       "response mac1 offset");
_Static_assert(offsetof(struct wg_message_data, counter) == 8, "data counter offset");

/* One classified message from the wire. Handshake messages are copied whole
 * (aligned, at most 148 bytes); a data message keeps only its decoded header
 * and points into the caller's buffer. */
struct wg_message {
	enum wg_message_type type;
	union {
		struct wg_message_initiation initiation;
		struct wg_message_response response;
		struct wg_message_cookie_reply cookie_reply;
	};
	/* WG_MESSAGE_DATA only, host byte order. */
	uint32_t receiver_index;
	uint64_t counter;
	/* Type 4: the whole datagram (header included); it points into buf. */
	const uint8_t *data;
	size_t data_len;
};

/* Classifies and bounds one datagram read from a UDP socket (or a DERP
 * RecvPacket). The 4-byte type field must be exactly 1..4 (the three high
 * bytes zero); types 1, 2 and 3 must have their exact size, type 4 at least
 * WG_DATA_MIN_LEN and at most WG_MESSAGE_MAX_LEN bytes. Returns the type
 * (> 0), or -EBADMSG with *why set. Nothing is authenticated here: MACs and
 * AEAD tags are checked by wg_cookie and wg_noise / wg_data. */
int wg_messages_parse(struct wg_message *m, const uint8_t *buf, size_t len, const char **why);

#endif
