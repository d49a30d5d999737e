/* ts2021: Tailscale's control-plane transport. Noise_IK_25519_ChaChaPoly_BLAKE2s
 * with the prologue "Tailscale Control Protocol v<N>", Tailscale's handshake
 * framing (a 101-byte initiation carried base64 in the HTTP upgrade request,
 * a 51-byte response or an error message) and a record layer whose nonce is
 * a BIG-endian counter (unlike the Noise spec and WireGuard).
 *
 * Wire formats (all integers big-endian):
 *   initiation  version u16 | type 1 | len u16 = 96 | e 32 | enc(s) 48 | tag 16
 *   response    type 2 | len u16 = 48 | e 32 | tag 16
 *   error       type 3 | len u16 | ASCII text (unauthenticated)
 *   record      type 4 | len u16 (ciphertext) | ChaCha20-Poly1305(plaintext)
 *               nonce = 00 00 00 00 | counter u64 BE, per direction from 0
 *   early payload (first plaintext bytes from the server, optional)
 *               ff ff ff 'T' 'S' | json len u32 | JSON tailcfg.EarlyNoise
 *
 * Nothing here does I/O: the caller moves bytes, these functions turn them
 * into messages and back. */
#ifndef TSCNI_WORKER_CONTROL_TS2021_H
#define TSCNI_WORKER_CONTROL_TS2021_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "noise.h"

enum ts2021_limits {
	TS2021_HDR_LEN = 3,	 /* type, u16 length */
	TS2021_INIT_HDR_LEN = 5, /* version u16, type, u16 length */
	TS2021_INIT_LEN = 101,
	TS2021_INIT_PAYLOAD_LEN = 96,
	TS2021_INIT_B64_LEN = 137, /* 136 characters of padded base64 + NUL */
	TS2021_RESP_LEN = 51,
	TS2021_RESP_PAYLOAD_LEN = 48,
	TS2021_MAX_FRAME = 4096,
	TS2021_MAX_CIPHERTEXT = TS2021_MAX_FRAME - TS2021_HDR_LEN,    /* 4093 */
	TS2021_MAX_PLAINTEXT = TS2021_MAX_CIPHERTEXT - NOISE_TAG_LEN, /* 4077 */
	TS2021_PROLOGUE_MAX = 34,      /* "Tailscale Control Protocol v65535" + NUL */
	TS2021_SERVER_ERROR_MAX = 200, /* kept of a server's error text */
	TS2021_EARLY_MAGIC_LEN = 5,
	TS2021_EARLY_HDR_LEN = 9,
	/* tailscaled accepts up to 10 MiB; the document is ~90 bytes, and we
	 * refuse to buffer more than this for it. */
	TS2021_EARLY_MAX_JSON = 64 << 10,
};

enum ts2021_msg_type {
	TS2021_MSG_INITIATION = 1,
	TS2021_MSG_RESPONSE = 2,
	TS2021_MSG_ERROR = 3,
	TS2021_MSG_RECORD = 4,
};

struct ts2021_initiation {
	uint8_t version[2];
	uint8_t type;
	uint8_t length[2];
	uint8_t ephemeral[NOISE_KEY_LEN];
	uint8_t machine[NOISE_KEY_LEN + NOISE_TAG_LEN];
	uint8_t tag[NOISE_TAG_LEN];
};
_Static_assert(sizeof(struct ts2021_initiation) == TS2021_INIT_LEN, "initiation is 101 bytes");

struct ts2021_response {
	uint8_t type;
	uint8_t length[2];
	uint8_t ephemeral[NOISE_KEY_LEN];
	uint8_t tag[NOISE_TAG_LEN];
};
_Static_assert(sizeof(struct ts2021_response) == TS2021_RESP_LEN, "response is 51 bytes");

/* One direction of the record layer. */
struct ts2021_cipher {
	uint8_t key[NOISE_KEY_LEN];
	uint64_t counter; /* next nonce; UINT64_MAX means exhausted */
};

/* An established connection's crypto state (no socket). */
struct ts2021_conn {
	struct ts2021_cipher tx;
	struct ts2021_cipher rx;
	uint8_t handshake_hash[NOISE_HASH_LEN];
	uint8_t peer[NOISE_KEY_LEN]; /* server static key, or client machine key */
	uint16_t version;
};

/* Wipes both keys. */
void ts2021_conn_destroy(struct ts2021_conn *c);

/* Writes "Tailscale Control Protocol v<version>" with a NUL; returns its
 * length without the NUL. */
size_t ts2021_prologue(char buf[static TS2021_PROLOGUE_MAX], uint16_t version);

/* Client (initiator). */
struct ts2021_client {
	struct noise_handshake hs;
	uint16_t version;
	/* After -ECONNREFUSED: the start of the server's error text, with
	 * anything but printable ASCII replaced by '?'. Unauthenticated. */
	char server_error[TS2021_SERVER_ERROR_MAX + 1];
};

/* Starts a handshake to the server whose Noise key is server_pub, as the
 * machine machine_priv, claiming protocol (capability) version. A random
 * ephemeral key is drawn; tests may replace it with
 * noise_handshake_set_ephemeral(&c->hs, ...) before ts2021_client_initiation.
 * Returns 0 or -EINVAL. */
int ts2021_client_init(struct ts2021_client *c, uint16_t version,
		       const uint8_t machine_priv[static NOISE_KEY_LEN],
		       const uint8_t server_pub[static NOISE_KEY_LEN]);
void ts2021_client_destroy(struct ts2021_client *c);
/* The 101-byte initiation. 0, -EPROTO if called twice, -EINVAL if the server
 * key has small order. */
int ts2021_client_initiation(struct ts2021_client *c, uint8_t out[static TS2021_INIT_LEN]);
/* Its padded standard base64 (the X-Tailscale-Handshake header value). */
void ts2021_initiation_base64(char out[static TS2021_INIT_B64_LEN],
			      const uint8_t init[static TS2021_INIT_LEN]);
/* Reads the server's answer from the bytes that followed the HTTP 101 header
 * block. > 0: bytes consumed (always TS2021_RESP_LEN), the handshake is done
 * and *conn is ready; the bytes after it are records. 0: need more bytes.
 * < 0 (the client is then unusable): -ECONNREFUSED if the server sent an
 * error message (text in c->server_error; decided from its header alone,
 * without waiting for the text), -EBADMSG for an unexpected type or length
 * or a response that fails authentication, -EPROTO when out of turn. *why is
 * set on every error. */
ssize_t ts2021_client_response(struct ts2021_client *c, const uint8_t *src, size_t len,
			       struct ts2021_conn *conn, const char **why);

/* Server (responder), as controlbase.Server: checks the initiation (size,
 * type, length field in that order), runs the handshake for the version the
 * client claims and writes the response. e_priv is NULL in production (a
 * fresh random ephemeral key) and set only by tests.
 * Returns 0 with resp and *conn filled (conn->peer = client machine key,
 * conn->version = claimed version). -EPROTO: refused, *why is the exact text
 * to send back with ts2021_error_message. -EBADMSG: the initiation does not
 * authenticate (upstream closes without a message); *why says why. */
int ts2021_server_accept(const uint8_t server_priv[static NOISE_KEY_LEN], const uint8_t *init,
			 size_t len, const uint8_t *e_priv, uint8_t resp[static TS2021_RESP_LEN],
			 struct ts2021_conn *conn, const char **why);
/* Decodes an X-Tailscale-Handshake value into out (cap bytes). 0 with *len
 * set, or -EBADMSG for invalid base64 or more than cap bytes. */
int ts2021_initiation_decode(const char *b64, uint8_t *out, size_t cap, size_t *len);
/* Writes an error message (type 3) for text, truncated to 65535 bytes.
 * Returns its length, or -ENOSPC if out (cap bytes) is too small. */
ssize_t ts2021_error_message(uint8_t *out, size_t cap, const char *text);

/* Record layer, sending. ts2021_seal_record seals len <= TS2021_MAX_PLAINTEXT
 * bytes as one record of len + 19 bytes into out (cap bytes); returns its
 * length, -EMSGSIZE, -ENOSPC or -EOVERFLOW (counter exhausted).
 * ts2021_seal splits len bytes into records of at most 4077 plaintext bytes
 * as upstream's Conn.Write does (len 0 gives no record) and returns the
 * bytes written; ts2021_sealed_len says how many that will be. */
ssize_t ts2021_seal_record(struct ts2021_cipher *tx, const uint8_t *pt, size_t len, uint8_t *out,
			   size_t cap);
size_t ts2021_sealed_len(size_t len);
ssize_t ts2021_seal(struct ts2021_cipher *tx, const uint8_t *pt, size_t len, uint8_t *out,
		    size_t cap);

/* Record layer, receiving. Holds at most one partial record
 * (TS2021_MAX_FRAME bytes), whatever the chunking of the input. */
struct ts2021_reader {
	struct ts2021_cipher *rx; /* not owned */
	uint8_t buf[TS2021_MAX_FRAME];
	size_t have;
	bool failed;
};

void ts2021_reader_init(struct ts2021_reader *r, struct ts2021_cipher *rx);
void ts2021_reader_destroy(struct ts2021_reader *r);
/* Takes bytes from src (len) until one record is complete; *consumed says
 * how many were taken. Returns 1 with *pt and *pt_len the decrypted plaintext
 * (possibly 0 bytes; a pointer into r, valid until the next call), 0 when
 * all of src was taken and no record is complete yet, or < 0 (fatal for the
 * connection, every later call fails too): -EBADMSG for a type other than
 * 0x04, a ciphertext shorter than a tag, or a failed decryption; -EMSGSIZE
 * for a frame above TS2021_MAX_FRAME, decided from the header alone;
 * -EOVERFLOW when the counter is exhausted. *why is set on errors. */
int ts2021_reader_next(struct ts2021_reader *r, const uint8_t *src, size_t len, size_t *consumed,
		       const uint8_t **pt, size_t *pt_len, const char **why);

/* Early payload detection on the server->client plaintext stream. The
 * header may be spread over any number of records (upstream sends magic,
 * length and JSON as three). */
enum ts2021_early_state {
	TS2021_EARLY_MAGIC,
	TS2021_EARLY_LENGTH,
	TS2021_EARLY_JSON,
	TS2021_EARLY_DONE,
	TS2021_EARLY_FAILED,
};

struct ts2021_early {
	enum ts2021_early_state state;
	uint8_t hdr[TS2021_EARLY_HDR_LEN];
	size_t hdr_have;
	bool present;
	uint32_t json_len;
	uint8_t *json; /* grows as bytes arrive, never beyond json_len */
	size_t json_have, json_cap;
};

void ts2021_early_init(struct ts2021_early *e);
void ts2021_early_destroy(struct ts2021_early *e);
/* Feeds plaintext. Returns 0 when all of pt was taken and the question is
 * still open; 1 when it is decided: then *consumed bytes of pt belong to the
 * early payload, and the HTTP/2 stream is ts2021_early_passthrough() bytes,
 * then pt + *consumed .. pt + len, then everything later. < 0: -EMSGSIZE
 * (declared JSON length 0 or above TS2021_EARLY_MAX_JSON) with *why set.
 * After 1, further calls return 1 and consume nothing. */
int ts2021_early_feed(struct ts2021_early *e, const uint8_t *pt, size_t len, size_t *consumed,
		      const char **why);
/* After feed returned 1 without an early payload: the bytes that were held
 * back while they still looked like the magic (at most 4). */
size_t ts2021_early_passthrough(const struct ts2021_early *e, const uint8_t **p);
/* After feed returned 1 with e->present: the EarlyNoise JSON's
 * nodeKeyChallenge ("chalpub:<hex>") into chal. 0, -ENOENT when there was no
 * early payload, -EBADMSG (*why set) when the JSON or key is invalid. */
int ts2021_early_challenge(const struct ts2021_early *e, uint8_t chal[static NOISE_KEY_LEN],
			   const char **why);

#endif
