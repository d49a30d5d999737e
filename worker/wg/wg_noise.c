/* Noise_IKpsk2 as WireGuard runs it (paper §5.4.2 - §5.4.5). The variable
 * names follow the paper: C is the chaining key, H the hash, and each step of
 * a message is one line of the paper's pseudo-code, in the same order.
 *
 * Every consume_* works on local copies of C and H and commits them to the
 * peer's state only once the whole message authenticated, so a forged or
 * replayed message never disturbs a handshake in progress. Every temporary
 * secret is wiped before returning. */
#include "wg_noise.h"

#include <endian.h>
#include <errno.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "hash.h"

_Static_assert((int)WG_HASH_LEN == (int)HASH_LEN, "BLAKE2s-256");
_Static_assert(WG_KEY_LEN == crypto_scalarmult_curve25519_BYTES, "X25519 key size");

/* TAI64 labels count from 2^62; wireguard-go adds the 10 s TAI-UTC offset
 * of 1970. */
static const uint64_t TAI64_BASE = (UINT64_C(1) << 62) + 10;
/* Nanoseconds are rounded down to a multiple of 2^24 (about 16.8 ms). */
static const uint32_t TAI64N_WHITENER_MASK = (1U << 24) - 1;

static bool is_zero(const uint8_t *p, size_t len)
{
	return sodium_is_zero(p, len) == 1;
}

/* H = HASH(H || data) */
static void mix_hash(uint8_t h[static WG_HASH_LEN], const uint8_t *data, size_t len)
{
	uint8_t out[WG_HASH_LEN];

	hash_blake2s(out, h, WG_HASH_LEN, data, len);
	memcpy(h, out, WG_HASH_LEN);
}

/* C = KDF1(C, input) */
static void kdf1(uint8_t c[static WG_HASH_LEN], const uint8_t *input, size_t len)
{
	uint8_t out[WG_HASH_LEN];

	hash_hkdf(out, NULL, NULL, c, input, len);
	memcpy(c, out, WG_HASH_LEN);
	sodium_memzero(out, sizeof(out));
}

/* (C, k) = KDF2(C, input) */
static void kdf2(uint8_t c[static WG_HASH_LEN], uint8_t k[static WG_KEY_LEN], const uint8_t *input,
		 size_t len)
{
	uint8_t out[WG_HASH_LEN];

	hash_hkdf(out, k, NULL, c, input, len);
	memcpy(c, out, WG_HASH_LEN);
	sodium_memzero(out, sizeof(out));
}

/* The handshake's AEAD: ChaCha20-Poly1305 under a key used once, nonce 0,
 * the running hash as associated data. */
static void seal(uint8_t *out, const uint8_t key[static WG_KEY_LEN], const uint8_t *in,
		 size_t inlen, const uint8_t h[static WG_HASH_LEN])
{
	static const uint8_t zero_nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES];

	crypto_aead_chacha20poly1305_ietf_encrypt(out, NULL, in, inlen, h, WG_HASH_LEN, NULL,
						  zero_nonce, key);
}

static int open_sealed(uint8_t *out, const uint8_t key[static WG_KEY_LEN], const uint8_t *in,
		       size_t inlen, const uint8_t h[static WG_HASH_LEN])
{
	static const uint8_t zero_nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES];

	if (crypto_aead_chacha20poly1305_ietf_decrypt(out, NULL, NULL, in, inlen, h, WG_HASH_LEN,
						      zero_nonce, key) != 0)
		return -EBADMSG;
	return 0;
}

/* X25519; the all-zero result of a low-order point is refused, as
 * wireguard-go's sharedSecret does. */
static int dh(uint8_t out[static WG_KEY_LEN], const uint8_t priv[static WG_KEY_LEN],
	      const uint8_t pub[static WG_KEY_LEN])
{
	if (crypto_scalarmult_curve25519(out, priv, pub) != 0) {
		sodium_memzero(out, WG_KEY_LEN);
		return -EINVAL;
	}
	return 0;
}

/* C = HASH(CONSTRUCTION); H = HASH(HASH(C || IDENTIFIER) || responder static). */
static void handshake_start(uint8_t c[static WG_HASH_LEN], uint8_t h[static WG_HASH_LEN],
			    const uint8_t responder_static[static WG_KEY_LEN])
{
	static const char construction[] = WG_CONSTRUCTION;
	static const char identifier[] = WG_IDENTIFIER;

	hash_blake2s(c, (const uint8_t *)construction, sizeof(construction) - 1, NULL, 0);
	hash_blake2s(h, c, WG_HASH_LEN, (const uint8_t *)identifier, sizeof(identifier) - 1);
	mix_hash(h, responder_static, WG_KEY_LEN);
}

int wg_noise_static_init(struct wg_noise_static *s, const uint8_t private_key[static WG_KEY_LEN])
{
	memcpy(s->private_key, private_key, WG_KEY_LEN);
	crypto_scalarmult_curve25519_base(s->public_key, s->private_key);
	if (is_zero(s->public_key, WG_KEY_LEN)) {
		wg_noise_static_destroy(s);
		return -EINVAL;
	}
	return 0;
}

void wg_noise_static_destroy(struct wg_noise_static *s)
{
	sodium_memzero(s, sizeof(*s));
}

int wg_noise_handshake_init(struct wg_handshake *hs, const struct wg_noise_static *local,
			    const uint8_t remote_static[static WG_KEY_LEN],
			    const uint8_t *preshared_key)
{
	memset(hs, 0, sizeof(*hs));
	memcpy(hs->remote_static, remote_static, WG_KEY_LEN);
	if (preshared_key)
		memcpy(hs->preshared_key, preshared_key, WG_KEY_LEN);
	if (dh(hs->precomputed_static_static, local->private_key, remote_static) != 0) {
		wg_noise_handshake_destroy(hs);
		return -EINVAL;
	}
	return 0;
}

void wg_noise_handshake_destroy(struct wg_handshake *hs)
{
	sodium_memzero(hs, sizeof(*hs));
}

void wg_noise_handshake_clear(struct wg_handshake *hs)
{
	sodium_memzero(hs->hash, sizeof(hs->hash));
	sodium_memzero(hs->chaining_key, sizeof(hs->chaining_key));
	sodium_memzero(hs->ephemeral_private, sizeof(hs->ephemeral_private));
	sodium_memzero(hs->remote_ephemeral, sizeof(hs->remote_ephemeral));
	hs->local_index = 0;
	hs->remote_index = 0;
	hs->state = WG_HANDSHAKE_ZEROED;
}

void wg_noise_tai64n_from(uint8_t out[static WG_TIMESTAMP_LEN], uint64_t unix_sec, uint32_t nsec)
{
	uint64_t secs = htobe64(TAI64_BASE + unix_sec);
	uint32_t nano = htobe32(nsec & ~TAI64N_WHITENER_MASK);

	memcpy(out, &secs, sizeof(secs));
	memcpy(out + sizeof(secs), &nano, sizeof(nano));
}

void wg_noise_tai64n_now(uint8_t out[static WG_TIMESTAMP_LEN])
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	wg_noise_tai64n_from(out, (uint64_t)ts.tv_sec, (uint32_t)ts.tv_nsec);
}

int wg_noise_create_initiation(struct wg_handshake *hs, const struct wg_noise_static *local,
			       const uint8_t ephemeral_private[static WG_KEY_LEN],
			       uint32_t sender_index,
			       const uint8_t timestamp[static WG_TIMESTAMP_LEN],
			       struct wg_message_initiation *msg)
{
	uint8_t c[WG_HASH_LEN], h[WG_HASH_LEN], k[WG_KEY_LEN], ss[WG_KEY_LEN];
	int ret = -EINVAL;

	memset(msg, 0, sizeof(*msg));
	wg_noise_handshake_clear(hs);
	if (is_zero(hs->precomputed_static_static, WG_KEY_LEN))
		goto out;

	msg->type = htole32(WG_MESSAGE_INITIATION);
	msg->sender_index = htole32(sender_index);
	handshake_start(c, h, hs->remote_static);

	/* msg.ephemeral = E_pub_i; C = KDF1(C, E_pub_i); H = HASH(H || E_pub_i) */
	crypto_scalarmult_curve25519_base(msg->ephemeral, ephemeral_private);
	kdf1(c, msg->ephemeral, WG_KEY_LEN);
	mix_hash(h, msg->ephemeral, WG_KEY_LEN);

	/* (C, k) = KDF2(C, DH(E_priv_i, S_pub_r)); msg.static = AEAD(k, 0, S_pub_i, H) */
	if (dh(ss, ephemeral_private, hs->remote_static) != 0)
		goto out;
	kdf2(c, k, ss, WG_KEY_LEN);
	seal(msg->encrypted_static, k, local->public_key, WG_KEY_LEN, h);
	mix_hash(h, msg->encrypted_static, sizeof(msg->encrypted_static));

	/* (C, k) = KDF2(C, DH(S_priv_i, S_pub_r)); msg.timestamp = AEAD(k, 0, TAI64N, H) */
	kdf2(c, k, hs->precomputed_static_static, WG_KEY_LEN);
	seal(msg->encrypted_timestamp, k, timestamp, WG_TIMESTAMP_LEN, h);
	mix_hash(h, msg->encrypted_timestamp, sizeof(msg->encrypted_timestamp));

	memcpy(hs->chaining_key, c, WG_HASH_LEN);
	memcpy(hs->hash, h, WG_HASH_LEN);
	memcpy(hs->ephemeral_private, ephemeral_private, WG_KEY_LEN);
	hs->local_index = sender_index;
	hs->state = WG_HANDSHAKE_CREATED_INITIATION;
	ret = 0;
out:
	if (ret)
		memset(msg, 0, sizeof(*msg));
	sodium_memzero(c, sizeof(c));
	sodium_memzero(h, sizeof(h));
	sodium_memzero(k, sizeof(k));
	sodium_memzero(ss, sizeof(ss));
	return ret;
}

int wg_noise_consume_initiation(const struct wg_noise_static *local,
				const struct wg_message_initiation *msg, wg_noise_lookup_fn *lookup,
				void *ctx, uint64_t now_ns, struct wg_handshake **hs_out,
				const char **why)
{
	uint8_t c[WG_HASH_LEN], h[WG_HASH_LEN], k[WG_KEY_LEN], ss[WG_KEY_LEN];
	uint8_t remote_static[WG_KEY_LEN], timestamp[WG_TIMESTAMP_LEN];
	struct wg_handshake *hs;
	int ret;

	*hs_out = NULL;
	if (le32toh(msg->type) != WG_MESSAGE_INITIATION) {
		*why = "not a wireguard initiation";
		return -EBADMSG;
	}
	handshake_start(c, h, local->public_key);

	kdf1(c, msg->ephemeral, WG_KEY_LEN);
	mix_hash(h, msg->ephemeral, WG_KEY_LEN);

	/* (C, k) = KDF2(C, DH(S_priv_r, E_pub_i)); S_pub_i = AEAD-open(msg.static) */
	ret = dh(ss, local->private_key, msg->ephemeral);
	if (ret) {
		*why = "initiation ephemeral key is a low-order point";
		goto out;
	}
	kdf2(c, k, ss, WG_KEY_LEN);
	ret = open_sealed(remote_static, k, msg->encrypted_static, sizeof(msg->encrypted_static),
			  h);
	if (ret) {
		*why = "initiation static key does not decrypt";
		goto out;
	}
	mix_hash(h, msg->encrypted_static, sizeof(msg->encrypted_static));

	hs = lookup(ctx, remote_static);
	if (!hs) {
		*why = "initiation from an unknown peer key";
		ret = -ENOKEY;
		goto out;
	}
	if (is_zero(hs->precomputed_static_static, WG_KEY_LEN)) {
		*why = "peer key gives a zero shared secret";
		ret = -EINVAL;
		goto out;
	}

	/* (C, k) = KDF2(C, DH(S_priv_r, S_pub_i)); timestamp = AEAD-open(msg.timestamp) */
	kdf2(c, k, hs->precomputed_static_static, WG_KEY_LEN);
	ret = open_sealed(timestamp, k, msg->encrypted_timestamp, sizeof(msg->encrypted_timestamp),
			  h);
	if (ret) {
		*why = "initiation timestamp does not decrypt";
		goto out;
	}
	mix_hash(h, msg->encrypted_timestamp, sizeof(msg->encrypted_timestamp));

	/* TAI64N is big-endian, so byte order is time order. */
	if (memcmp(timestamp, hs->latest_timestamp, WG_TIMESTAMP_LEN) <= 0) {
		*why = "initiation timestamp is not newer than the last one (replay)";
		ret = -EALREADY;
		goto out;
	}
	if (hs->consumed_any_initiation && now_ns - hs->last_initiation_consumption_ns <=
						   WG_NSEC_PER_SEC / INITIATIONS_PER_SECOND) {
		*why = "initiations from this peer arrive too fast";
		ret = -EBUSY;
		goto out;
	}

	/* Authenticated and fresh: this replaces whatever handshake hs had. */
	wg_noise_handshake_clear(hs);
	memcpy(hs->chaining_key, c, WG_HASH_LEN);
	memcpy(hs->hash, h, WG_HASH_LEN);
	memcpy(hs->remote_ephemeral, msg->ephemeral, WG_KEY_LEN);
	memcpy(hs->latest_timestamp, timestamp, WG_TIMESTAMP_LEN);
	hs->remote_index = le32toh(msg->sender_index);
	hs->last_initiation_consumption_ns = now_ns;
	hs->consumed_any_initiation = true;
	hs->state = WG_HANDSHAKE_CONSUMED_INITIATION;
	*hs_out = hs;
out:
	sodium_memzero(c, sizeof(c));
	sodium_memzero(h, sizeof(h));
	sodium_memzero(k, sizeof(k));
	sodium_memzero(ss, sizeof(ss));
	sodium_memzero(remote_static, sizeof(remote_static));
	sodium_memzero(timestamp, sizeof(timestamp));
	return ret;
}

/* The part both sides of message 2 share, after E_pub_r is known:
 * C = KDF1(C, DH(E, E)); C = KDF1(C, DH(E, S)); (C, T, k) = KDF3(C, Q);
 * H = HASH(H || T). ee and es are the two shared secrets, computed by the
 * caller from its own side's keys. */
static void response_mix(uint8_t c[static WG_HASH_LEN], uint8_t h[static WG_HASH_LEN],
			 uint8_t k[static WG_KEY_LEN], const uint8_t ee[static WG_KEY_LEN],
			 const uint8_t se[static WG_KEY_LEN], const uint8_t psk[static WG_KEY_LEN])
{
	uint8_t out[WG_HASH_LEN], t[WG_HASH_LEN];

	kdf1(c, ee, WG_KEY_LEN);
	kdf1(c, se, WG_KEY_LEN);
	hash_hkdf(out, t, k, c, psk, WG_KEY_LEN);
	memcpy(c, out, WG_HASH_LEN);
	mix_hash(h, t, WG_HASH_LEN);
	sodium_memzero(out, sizeof(out));
	sodium_memzero(t, sizeof(t));
}

int wg_noise_create_response(struct wg_handshake *hs,
			     const uint8_t ephemeral_private[static WG_KEY_LEN],
			     uint32_t sender_index, struct wg_message_response *msg)
{
	uint8_t c[WG_HASH_LEN], h[WG_HASH_LEN], k[WG_KEY_LEN];
	uint8_t ee[WG_KEY_LEN], se[WG_KEY_LEN];
	int ret = -EINVAL;

	memset(msg, 0, sizeof(*msg));
	if (hs->state != WG_HANDSHAKE_CONSUMED_INITIATION)
		return -EINVAL;
	memcpy(c, hs->chaining_key, WG_HASH_LEN);
	memcpy(h, hs->hash, WG_HASH_LEN);

	msg->type = htole32(WG_MESSAGE_RESPONSE);
	msg->sender_index = htole32(sender_index);
	msg->receiver_index = htole32(hs->remote_index);

	/* msg.ephemeral = E_pub_r; C = KDF1(C, E_pub_r); H = HASH(H || E_pub_r) */
	crypto_scalarmult_curve25519_base(msg->ephemeral, ephemeral_private);
	kdf1(c, msg->ephemeral, WG_KEY_LEN);
	mix_hash(h, msg->ephemeral, WG_KEY_LEN);

	if (dh(ee, ephemeral_private, hs->remote_ephemeral) != 0 ||
	    dh(se, ephemeral_private, hs->remote_static) != 0)
		goto out;
	response_mix(c, h, k, ee, se, hs->preshared_key);

	/* msg.empty = AEAD(k, 0, ε, H); H = HASH(H || msg.empty) */
	seal(msg->encrypted_nothing, k, NULL, 0, h);
	mix_hash(h, msg->encrypted_nothing, sizeof(msg->encrypted_nothing));

	memcpy(hs->chaining_key, c, WG_HASH_LEN);
	memcpy(hs->hash, h, WG_HASH_LEN);
	memcpy(hs->ephemeral_private, ephemeral_private, WG_KEY_LEN);
	hs->local_index = sender_index;
	hs->state = WG_HANDSHAKE_CREATED_RESPONSE;
	ret = 0;
out:
	if (ret)
		memset(msg, 0, sizeof(*msg));
	sodium_memzero(c, sizeof(c));
	sodium_memzero(h, sizeof(h));
	sodium_memzero(k, sizeof(k));
	sodium_memzero(ee, sizeof(ee));
	sodium_memzero(se, sizeof(se));
	return ret;
}

int wg_noise_consume_response(struct wg_handshake *hs, const struct wg_noise_static *local,
			      const struct wg_message_response *msg, const char **why)
{
	uint8_t c[WG_HASH_LEN], h[WG_HASH_LEN], k[WG_KEY_LEN];
	uint8_t ee[WG_KEY_LEN], se[WG_KEY_LEN];
	uint8_t nothing[1]; /* the empty plaintext; libsodium wants somewhere to write */
	int ret;

	if (le32toh(msg->type) != WG_MESSAGE_RESPONSE) {
		*why = "not a wireguard response";
		return -EBADMSG;
	}
	if (hs->state != WG_HANDSHAKE_CREATED_INITIATION) {
		*why = "response without an initiation in flight";
		return -EINVAL;
	}
	if (le32toh(msg->receiver_index) != hs->local_index) {
		*why = "response for another initiation";
		return -EINVAL;
	}
	memcpy(c, hs->chaining_key, WG_HASH_LEN);
	memcpy(h, hs->hash, WG_HASH_LEN);

	kdf1(c, msg->ephemeral, WG_KEY_LEN);
	mix_hash(h, msg->ephemeral, WG_KEY_LEN);

	/* The initiator's side of the same two DH values: DH(E_priv_i, E_pub_r)
	 * and DH(S_priv_i, E_pub_r). */
	ret = dh(ee, hs->ephemeral_private, msg->ephemeral);
	if (ret == 0)
		ret = dh(se, local->private_key, msg->ephemeral);
	if (ret) {
		*why = "response ephemeral key is a low-order point";
		goto out;
	}
	response_mix(c, h, k, ee, se, hs->preshared_key);

	ret = open_sealed(nothing, k, msg->encrypted_nothing, sizeof(msg->encrypted_nothing), h);
	if (ret) {
		*why = "response does not authenticate";
		goto out;
	}
	mix_hash(h, msg->encrypted_nothing, sizeof(msg->encrypted_nothing));

	memcpy(hs->chaining_key, c, WG_HASH_LEN);
	memcpy(hs->hash, h, WG_HASH_LEN);
	memcpy(hs->remote_ephemeral, msg->ephemeral, WG_KEY_LEN);
	hs->remote_index = le32toh(msg->sender_index);
	hs->state = WG_HANDSHAKE_CONSUMED_RESPONSE;
out:
	sodium_memzero(c, sizeof(c));
	sodium_memzero(h, sizeof(h));
	sodium_memzero(k, sizeof(k));
	sodium_memzero(ee, sizeof(ee));
	sodium_memzero(se, sizeof(se));
	return ret;
}

bool wg_noise_initiation_save(const struct wg_handshake *hs, struct wg_noise_initiation *out)
{
	if (hs->state != WG_HANDSHAKE_CREATED_INITIATION)
		return false;
	memcpy(out->hash, hs->hash, WG_HASH_LEN);
	memcpy(out->chaining_key, hs->chaining_key, WG_HASH_LEN);
	memcpy(out->ephemeral_private, hs->ephemeral_private, WG_KEY_LEN);
	out->local_index = hs->local_index;
	return true;
}

void wg_noise_initiation_restore(struct wg_handshake *hs, struct wg_noise_initiation *saved)
{
	wg_noise_handshake_clear(hs);
	memcpy(hs->hash, saved->hash, WG_HASH_LEN);
	memcpy(hs->chaining_key, saved->chaining_key, WG_HASH_LEN);
	memcpy(hs->ephemeral_private, saved->ephemeral_private, WG_KEY_LEN);
	hs->local_index = saved->local_index;
	hs->state = WG_HANDSHAKE_CREATED_INITIATION;
	sodium_memzero(saved, sizeof(*saved));
}

int wg_noise_derive_keypair(struct wg_handshake *hs, struct wg_keypair *kp, uint64_t now_ns)
{
	uint8_t t1[WG_KEY_LEN], t2[WG_KEY_LEN];
	bool initiator;

	if (hs->state == WG_HANDSHAKE_CONSUMED_RESPONSE)
		initiator = true;
	else if (hs->state == WG_HANDSHAKE_CREATED_RESPONSE)
		initiator = false;
	else
		return -EINVAL;

	/* (T_send_i = T_recv_r, T_recv_i = T_send_r) = KDF2(C, ε) */
	hash_hkdf(t1, t2, NULL, hs->chaining_key, NULL, 0);
	memset(kp, 0, sizeof(*kp));
	memcpy(kp->send_key, initiator ? t1 : t2, WG_KEY_LEN);
	memcpy(kp->recv_key, initiator ? t2 : t1, WG_KEY_LEN);
	wg_replay_init(&kp->replay);
	kp->local_index = hs->local_index;
	kp->remote_index = hs->remote_index;
	kp->initiator = initiator;
	kp->created_ns = now_ns;

	wg_noise_handshake_clear(hs);
	sodium_memzero(t1, sizeof(t1));
	sodium_memzero(t2, sizeof(t2));
	return 0;
}

void wg_noise_keypair_destroy(struct wg_keypair *kp)
{
	sodium_memzero(kp, sizeof(*kp));
}

void wg_noise_keypairs_init(struct wg_keypairs *kps)
{
	memset(kps, 0, sizeof(*kps));
	kps->current = kps->previous = kps->next = -1;
}

/* Wipes the session in *slot (if any) and reports its index. */
static void drop(struct wg_keypairs *kps, int *slot, uint32_t dropped[static WG_KEYPAIR_SLOTS],
		 size_t *ndropped)
{
	if (*slot < 0)
		return;
	dropped[(*ndropped)++] = kps->slot[*slot].local_index;
	wg_noise_keypair_destroy(&kps->slot[*slot]);
	*slot = -1;
}

void wg_noise_keypairs_clear(struct wg_keypairs *kps, uint32_t dropped[static WG_KEYPAIR_SLOTS],
			     size_t *ndropped)
{
	*ndropped = 0;
	drop(kps, &kps->current, dropped, ndropped);
	drop(kps, &kps->previous, dropped, ndropped);
	drop(kps, &kps->next, dropped, ndropped);
}

void wg_noise_keypairs_install(struct wg_keypairs *kps, const struct wg_keypair *kp,
			       uint32_t dropped[static WG_KEYPAIR_SLOTS], size_t *ndropped)
{
	int free_slot = 0;

	*ndropped = 0;
	if (kp->initiator) {
		/* An unconfirmed next was superseded by our own handshake: keep it
		 * as previous (the peer may already send on it), drop current. */
		drop(kps, &kps->previous, dropped, ndropped);
		if (kps->next >= 0) {
			drop(kps, &kps->current, dropped, ndropped);
			kps->previous = kps->next;
			kps->next = -1;
		} else {
			kps->previous = kps->current;
			kps->current = -1;
		}
	} else {
		/* current keeps sending until the initiator confirms the new one. */
		drop(kps, &kps->next, dropped, ndropped);
		drop(kps, &kps->previous, dropped, ndropped);
	}
	/* At most one slot is still in use here, so a free one exists. */
	while (free_slot == kps->current || free_slot == kps->previous || free_slot == kps->next)
		free_slot++;
	kps->slot[free_slot] = *kp;
	if (kp->initiator)
		kps->current = free_slot;
	else
		kps->next = free_slot;
}

struct wg_keypair *wg_noise_keypairs_current(struct wg_keypairs *kps)
{
	return kps->current >= 0 ? &kps->slot[kps->current] : NULL;
}

struct wg_keypair *wg_noise_keypairs_find(struct wg_keypairs *kps, uint32_t local_index)
{
	const int order[] = {kps->current, kps->previous, kps->next};

	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
		if (order[i] >= 0 && kps->slot[order[i]].local_index == local_index)
			return &kps->slot[order[i]];
	return NULL;
}

bool wg_noise_keypairs_received_with(struct wg_keypairs *kps, const struct wg_keypair *kp,
				     uint32_t dropped[static WG_KEYPAIR_SLOTS], size_t *ndropped)
{
	*ndropped = 0;
	if (kps->next < 0 || kp != &kps->slot[kps->next])
		return false;
	drop(kps, &kps->previous, dropped, ndropped);
	kps->previous = kps->current;
	kps->current = kps->next;
	kps->next = -1;
	return true;
}

void wg_noise_keypairs_expire(struct wg_keypairs *kps, uint64_t now_ns,
			      uint32_t dropped[static WG_KEYPAIR_SLOTS], size_t *ndropped)
{
	int *slots[] = {&kps->current, &kps->previous, &kps->next};

	*ndropped = 0;
	for (size_t i = 0; i < sizeof(slots) / sizeof(slots[0]); i++) {
		if (*slots[i] >= 0 && now_ns - kps->slot[*slots[i]].created_ns >=
					      3 * REJECT_AFTER_TIME * WG_NSEC_PER_SEC)
			drop(kps, slots[i], dropped, ndropped);
	}
}
