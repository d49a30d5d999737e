/* The sending side: stage TUN -> UDP (wg_device_tun_rx), handshake
 * initiations, keepalives, staged packets, and the send-side rekey rule
 * (wireguard-go send.go). */
#include "wg_device_internal.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

#include "keys.h"
#include "wg_data.h"

struct wg_packet *wg_send__out_slot(struct wg_stage *st)
{
	struct wg_batch *b = st->out_udp;

	if (!b || b->n == b->cap) {
		st->dev->stats.drop_batch_full++;
		return NULL;
	}
	return &b->pkt[b->n];
}

/* The session that may seal now, or NULL. The protocol core's own limits
 * are the paper's constants; the device's (possibly shortened) ones are
 * applied here. */
struct wg_keypair *wg_send__keypair(const struct wg_device *dev, struct wg_peer *peer, uint64_t now)
{
	struct wg_keypair *kp = wg_peer__current(peer);

	if (!kp || now - kp->created_ns >= dev->t.reject_after_ns ||
	    kp->send_counter >= REJECT_AFTER_MESSAGES)
		return NULL;
	return kp;
}

static int path_endpoint(struct wg_device *dev, const struct wg_peer *peer,
			 struct sockaddr_storage *out)
{
	int ret = dev->path->endpoint(dev->path_arg, peer, out);

	if (ret < 0)
		dev->stats.drop_no_path++;
	return ret;
}

/* Emits a handshake initiation (wireguard-go SendHandshakeInitiation).
 * Not more than one per REKEY_TIMEOUT; retries come from the
 * retransmit timer with is_retry set. */
void wg_send__initiation(struct wg_stage *st, struct wg_peer *peer, bool is_retry)
{
	struct wg_device *dev = st->dev;
	struct wg_message_initiation msg;
	uint8_t eph[WG_KEY_LEN], ts[WG_TIMESTAMP_LEN];
	struct sockaddr_storage to;
	struct wg_packet *slot;
	uint32_t index;

	if (!is_retry)
		peer->handshake_attempts = 0;
	if (peer->initiation_sent &&
	    st->now - peer->last_initiation_sent_ns < dev->t.rekey_timeout_ns)
		return;
	peer->initiation_sent = true;
	peer->last_initiation_sent_ns = st->now;
	peer->initiation_out = false;
	/* Whatever happens below, retry on the timer. */
	wg_peer__timers_handshake_initiated(st, peer);
	if (path_endpoint(dev, peer, &to) < 0)
		return;
	slot = wg_send__out_slot(st);
	if (!slot || slot->cap < sizeof(msg))
		return;

	if (peer->hs_index_live)
		wg_device__index_remove(dev, peer->hs_index);
	index = wg_device__index_new(dev, peer);
	peer->hs_index = index;
	peer->hs_index_live = true;
	dev->env.random(dev->env.arg, eph, sizeof(eph));
	keys_clamp(eph);
	dev->env.tai64n(dev->env.arg, ts);
	if (wg_noise_create_initiation(&peer->hs, &dev->local, eph, index, ts, &msg) < 0) {
		wg_device__index_remove(dev, index);
		peer->hs_index_live = false;
		sodium_memzero(eph, sizeof(eph));
		return;
	}
	sodium_memzero(eph, sizeof(eph));
	wg_cookie_add_macs(&peer->cookie, (uint8_t *)&msg, sizeof(msg), st->now);
	memcpy(slot->buf, &msg, sizeof(msg));
	slot->off = 0;
	slot->len = sizeof(msg);
	slot->addr = to;
	slot->peer = peer;
	st->out_udp->n++;
	peer->initiation_out = true;
	memcpy(peer->initiation_msg, &msg, sizeof(msg));
	dev->stats.handshake_initiations_sent++;
	wg_peer__timers_any_authenticated_packet_traversal(st, peer);
	wg_peer__timers_any_authenticated_packet_sent(st, peer);
}

/* wireguard-go keepKeyFreshSending: the initiator rekeys an old session,
 * either side one that sent REKEY_AFTER_MESSAGES. */
static void keep_key_fresh_sending(struct wg_stage *st, struct wg_peer *peer,
				   const struct wg_keypair *kp)
{
	if (kp->send_counter >= REKEY_AFTER_MESSAGES ||
	    (kp->initiator && st->now - kp->created_ns >= st->dev->t.rekey_after_ns))
		wg_send__initiation(st, peer, false);
}

/* Seals the plaintext at pkt->buf + pkt->off (pkt->off >= HEADROOM) in
 * place and fills in the datagram's destination. Returns 0 or -errno (the
 * packet is then not sent; -ESTALE: the session can no longer send). */
static int seal(struct wg_stage *st, struct wg_peer *peer, struct wg_keypair *kp,
		struct wg_packet *pkt, const struct sockaddr_storage *to)
{
	struct wg_device *dev = st->dev;
	size_t start = pkt->off - WG_DEVICE_HEADROOM, msg_len;
	size_t plain = pkt->len;
	int ret;

	ret = wg_data_encrypt(kp, st->now, pkt->buf + start, pkt->cap - start, plain, dev->mtu,
			      &msg_len);
	if (ret < 0)
		return ret;
	pkt->off = start;
	pkt->len = msg_len;
	pkt->addr = *to;
	pkt->peer = peer;
	peer->tx_bytes += msg_len;
	if (plain == 0) {
		dev->stats.tx_keepalives++;
	} else {
		dev->stats.tx_data++;
		dev->stats.tx_bytes += plain;
		wg_peer__timers_data_sent(st, peer);
	}
	wg_peer__timers_any_authenticated_packet_traversal(st, peer);
	wg_peer__timers_any_authenticated_packet_sent(st, peer);
	return 0;
}

/* Sends the peer's staged packets, oldest first, while it has a session
 * and out_udp has room (wireguard-go SendStagedPackets). Without a session
 * it starts a handshake instead. */
void wg_send__staged(struct wg_stage *st, struct wg_peer *peer)
{
	struct wg_device *dev = st->dev;
	struct wg_keypair *kp = wg_send__keypair(dev, peer, st->now);
	struct sockaddr_storage to;

	if (peer->staged_count == 0) {
		wg_peer__staged_list_remove(dev, peer);
		return;
	}
	if (!kp) {
		wg_send__initiation(st, peer, false);
		return;
	}
	if (path_endpoint(dev, peer, &to) < 0) {
		/* No way to send them: dropped, counted as no path. */
		dev->stats.drop_no_path += peer->staged_count - 1;
		while (peer->staged_count > 0)
			wg_peer__pool_put(dev, wg_peer__staged_pop(peer));
		wg_peer__staged_list_remove(dev, peer);
		return;
	}
	while (peer->staged_count > 0) {
		struct wg_staged *s = peer->staged[peer->staged_head];
		size_t need = WG_DEVICE_HEADROOM + s->len + WG_DEVICE_TAILROOM;
		struct wg_packet *slot = wg_send__out_slot(st);

		if (!slot) {
			/* Counted as batch-full once; the rest wait for the next
			 * stage call. */
			return;
		}
		wg_peer__staged_pop(peer);
		if (slot->cap < need) {
			dev->stats.drop_staged++;
			wg_peer__pool_put(dev, s);
			continue;
		}
		memcpy(slot->buf + WG_DEVICE_HEADROOM, s->buf + WG_DEVICE_HEADROOM, s->len);
		slot->off = WG_DEVICE_HEADROOM;
		slot->len = s->len;
		wg_peer__pool_put(dev, s);
		if (seal(st, peer, kp, slot, &to) < 0) {
			dev->stats.drop_staged++;
			continue;
		}
		st->out_udp->n++;
	}
	wg_peer__staged_list_remove(dev, peer);
	keep_key_fresh_sending(st, peer, kp);
}

/* A keepalive: an empty data message (wireguard-go SendKeepalive, which
 * sends the staged packets instead when there are any). */
void wg_send__keepalive(struct wg_stage *st, struct wg_peer *peer)
{
	struct wg_device *dev = st->dev;
	struct wg_keypair *kp;
	struct sockaddr_storage to;
	struct wg_packet *slot;

	if (peer->staged_count > 0) {
		wg_send__staged(st, peer);
		return;
	}
	kp = wg_send__keypair(dev, peer, st->now);
	if (!kp) {
		wg_send__initiation(st, peer, false);
		return;
	}
	if (path_endpoint(dev, peer, &to) < 0)
		return;
	slot = wg_send__out_slot(st);
	if (!slot || slot->cap < WG_DATA_MIN_LEN)
		return;
	slot->off = WG_DEVICE_HEADROOM;
	slot->len = 0;
	if (seal(st, peer, kp, slot, &to) == 0)
		st->out_udp->n++;
}

void wg_send__flush_staged(struct wg_stage *st)
{
	struct wg_peer *peer = st->dev->staged_list, *next;

	for (; peer; peer = next) {
		next = peer->staged_next;
		if (wg_send__keypair(st->dev, peer, st->now))
			wg_send__staged(st, peer);
	}
}

size_t wg_device_tun_rx(struct wg_device *dev, struct wg_batch *in, struct wg_batch *out_udp,
			uint64_t now_ns)
{
	struct wg_stage st = {.dev = dev, .out_udp = out_udp, .now = now_ns};
	size_t before = out_udp->n;

	wg_send__flush_staged(&st);
	for (size_t i = 0; i < in->n; i++) {
		struct wg_packet *pkt = &in->pkt[i];
		const uint8_t *dst;
		struct wg_keypair *kp;
		struct sockaddr_storage to;
		struct wg_packet *slot;
		struct wg_peer *peer;
		size_t ip_len;
		int family;

		if (pkt->off < WG_DEVICE_HEADROOM || pkt->off > pkt->cap ||
		    pkt->len > pkt->cap - pkt->off ||
		    wg_device__ip_header(pkt->buf + pkt->off, pkt->len, true, &family, &dst,
					 &ip_len) < 0) {
			dev->stats.drop_bad_packet++;
			continue;
		}
		peer = allowedips_lookup(&dev->aips, family, dst);
		if (!peer) {
			dev->stats.drop_no_peer++;
			continue;
		}
		kp = wg_send__keypair(dev, peer, now_ns);
		if (!kp || peer->staged_count > 0) {
			/* Keep order behind what already waits. */
			wg_peer__stage(peer, pkt);
			wg_send__staged(&st, peer);
			continue;
		}
		if (path_endpoint(dev, peer, &to) < 0)
			continue;
		slot = wg_send__out_slot(&st);
		if (!slot)
			continue;
		if (pkt->cap - pkt->off - pkt->len < WG_DEVICE_TAILROOM) {
			dev->stats.drop_bad_packet++;
			continue;
		}
		if (seal(&st, peer, kp, pkt, &to) < 0) {
			/* -ESTALE: the core's hard limits; wait for a new session. */
			wg_peer__stage(peer, pkt);
			wg_send__initiation(&st, peer, false);
			continue;
		}
		wg_device__swap_packets(slot, pkt);
		out_udp->n++;
		keep_key_fresh_sending(&st, peer, kp);
	}
	in->n = 0;
	return out_udp->n - before;
}

int wg_device_initiate(struct wg_device *dev, const uint8_t public_key[static WG_KEY_LEN],
		       uint64_t now_ns, struct wg_batch *out_udp)
{
	struct wg_stage st = {.dev = dev, .out_udp = out_udp, .now = now_ns};
	struct wg_peer *peer = wg_device__find_peer(dev, public_key);

	if (!peer)
		return -ENOENT;
	peer->initiation_sent = false; /* lifts the once-per-REKEY_TIMEOUT limit */
	wg_send__initiation(&st, peer, false);
	return 0;
}

/* Whether the peer's latest initiation left less than REKEY_TIMEOUT ago
 * and its handshake still waits for the response (no response consumed,
 * not replaced by the peer's own initiation). */
static bool initiation_in_flight(const struct wg_device *dev, const struct wg_peer *peer,
				 uint64_t now)
{
	return peer->initiation_out && peer->hs_index_live &&
	       peer->hs.local_index == peer->hs_index &&
	       now - peer->last_initiation_sent_ns < dev->t.rekey_timeout_ns;
}

/* The initiation in flight, unchanged, where the path selector says now. */
static void resend_initiation(struct wg_stage *st, struct wg_peer *peer)
{
	struct wg_device *dev = st->dev;
	struct sockaddr_storage to;
	struct wg_packet *slot;

	if (path_endpoint(dev, peer, &to) < 0)
		return;
	slot = wg_send__out_slot(st);
	if (!slot || slot->cap < sizeof(peer->initiation_msg))
		return;
	memcpy(slot->buf, peer->initiation_msg, sizeof(peer->initiation_msg));
	slot->off = 0;
	slot->len = sizeof(peer->initiation_msg);
	slot->addr = to;
	slot->peer = peer;
	st->out_udp->n++;
	dev->stats.handshake_initiations_resent++;
}

int wg_device_initiate_on_new_path(struct wg_device *dev,
				   const uint8_t public_key[static WG_KEY_LEN], uint64_t now_ns,
				   struct wg_batch *out_udp)
{
	struct wg_stage st = {.dev = dev, .out_udp = out_udp, .now = now_ns};
	struct wg_peer *peer = wg_device__find_peer(dev, public_key);

	if (!peer)
		return -ENOENT;
	if (initiation_in_flight(dev, peer, now_ns)) {
		resend_initiation(&st, peer);
		return 0;
	}
	/* The last attempt found no path (or no room): this one need not
	 * wait for the retry timer. */
	peer->initiation_sent = false;
	wg_send__initiation(&st, peer, false);
	return 0;
}
