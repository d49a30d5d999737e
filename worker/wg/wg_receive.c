/* The receiving side: stage UDP -> TUN (wg_device_udp_rx). Handshake
 * messages pass the cookie gate (MAC1, and MAC2 under load) and are
 * answered; data messages are opened in place and checked against the
 * sending peer's AllowedIPs (wireguard-go receive.go). */
#include "wg_device_internal.h"

#include <endian.h>
#include <errno.h>
#include <netinet/in.h>
#include <sodium.h>
#include <string.h>

#include "keys.h"
#include "wg_data.h"

/* Crossed initiations: when both sides initiate at once, each consumes the
 * other's initiation, which replaces its own, so each then drops the
 * response to its own and neither session can send; the retransmissions
 * cross again whenever they leave within one one-way delay of each other,
 * and what waits for the session waits for all of it (wireguard-go and the
 * kernel behave so). The side with the greater public key therefore keeps
 * its own initiation: wg_noise_consume_initiation's lookup saves it here,
 * and receive_initiation puts it back once the answer to the peer is made.
 * The peer's response to it then completes the handshake as initiator, and
 * the peer's side, whose handshake was replaced as usual, confirms its
 * responder session on our first message: one session, one round trip.
 * The other side behaves as wireguard-go, which is all a wireguard-go peer
 * needs to complete with us. */
struct initiation_lookup {
	struct wg_device *dev;
	uint64_t now;
	struct wg_noise_initiation ours;
	bool kept;
};

static struct wg_handshake *lookup_handshake(void *ctx, const uint8_t public_key[WG_KEY_LEN])
{
	struct initiation_lookup *l = ctx;
	struct wg_peer *peer = wg_device__find_peer(l->dev, public_key);

	if (!peer) {
		wg_device__note_early_initiator(l->dev, public_key, l->now);
		return NULL;
	}
	l->kept = peer->hs_index_live && peer->hs.local_index == peer->hs_index &&
		  memcmp(l->dev->local.public_key, public_key, WG_KEY_LEN) > 0 &&
		  wg_noise_initiation_save(&peer->hs, &l->ours);
	return &peer->hs;
}

/* The answer to the peer's initiation is made (or failed): our kept
 * initiation takes the handshake state back, else whatever is left of the
 * handshake is forgotten. */
static void initiation_settle(struct wg_peer *peer, struct initiation_lookup *l)
{
	if (l->kept)
		wg_noise_initiation_restore(&peer->hs, &l->ours);
	else
		wg_noise_handshake_clear(&peer->hs);
}

/* The wireguard-go encoding of a source address for cookies. */
static int src_bytes(const struct sockaddr_storage *ss, uint8_t out[static WG_COOKIE_SRC_MAX_LEN])
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

		return wg_cookie_endpoint_bytes(out, (const uint8_t *)&sin->sin_addr, 4,
						ntohs(sin->sin_port));
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

		return wg_cookie_endpoint_bytes(out, sin6->sin6_addr.s6_addr, 16,
						ntohs(sin6->sin6_port));
	}
	return -EINVAL;
}

static void path_received(struct wg_device *dev, struct wg_peer *peer,
			  const struct sockaddr_storage *src)
{
	if (dev->path->received)
		dev->path->received(dev->path_arg, peer, src);
}

/* Handshake answers go where the path selector says; a peer it has no
 * path for yet gets its answer at the source of the message, so a peer
 * that found us first can complete (this does not change where data
 * goes). */
static void answer_to(struct wg_device *dev, struct wg_peer *peer,
		      const struct sockaddr_storage *src, struct sockaddr_storage *to)
{
	if (dev->path->endpoint(dev->path_arg, peer, to) < 0)
		*to = *src;
}

static bool sockaddr_same(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;

		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;

		return x->sin6_port == y->sin6_port &&
		       memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
	}
	return false;
}

/* The response went to `to`; when that is not a proven path, the
 * initiation's source gets a copy (wg_path_ops.proven). The initiator
 * takes the first to arrive; the other finds its handshake index spent. */
static void answer_copy_to_source(struct wg_stage *st, struct wg_peer *peer,
				  const struct wg_packet *resp, const struct sockaddr_storage *src)
{
	struct wg_device *dev = st->dev;
	struct wg_packet *slot;

	if (sockaddr_same(&resp->addr, src) || !dev->path->proven ||
	    dev->path->proven(dev->path_arg, peer))
		return;
	slot = wg_send__out_slot(st);
	if (!slot || slot->cap < resp->len)
		return;
	memcpy(slot->buf, resp->buf + resp->off, resp->len);
	slot->off = 0;
	slot->len = resp->len;
	slot->addr = *src;
	slot->peer = peer;
	st->out_udp->n++;
}

/* Checks MAC1 (and MAC2 under load). Returns 0 to go on, -EBADMSG (drop)
 * or -EAGAIN (a cookie reply was sent instead). */
static int handshake_gate(struct wg_stage *st, const struct wg_packet *pkt, size_t *seen)
{
	struct wg_device *dev = st->dev;
	const uint8_t *msg = pkt->buf + pkt->off;
	uint8_t src[WG_COOKIE_SRC_MAX_LEN], nonce[WG_COOKIE_NONCE_LEN];
	struct wg_message_cookie_reply reply;
	struct wg_packet *slot;
	const char *why = NULL;
	bool under_load;
	int src_len, ret;

	src_len = src_bytes(&pkt->addr, src);
	if (src_len < 0) {
		dev->stats.drop_bad_packet++;
		return -EBADMSG;
	}
	(*seen)++;
	under_load = wg_cookie_under_load(&dev->checker, dev->queued_handshakes + *seen, st->now);
	ret = wg_cookie_validate(&dev->checker, msg, pkt->len, src, (size_t)src_len, under_load,
				 st->now, &why);
	if (ret == -EAGAIN) {
		slot = wg_send__out_slot(st);
		if (!slot || slot->cap < sizeof(reply))
			return -EAGAIN;
		dev->env.random(dev->env.arg, nonce, sizeof(nonce));
		if (wg_cookie_create_reply(&dev->checker, msg, pkt->len, src, (size_t)src_len,
					   st->now, nonce, &reply) < 0)
			return -EAGAIN;
		memcpy(slot->buf, &reply, sizeof(reply));
		slot->off = 0;
		slot->len = sizeof(reply);
		slot->addr = pkt->addr;
		slot->peer = NULL;
		st->out_udp->n++;
		dev->stats.cookie_replies_sent++;
		return -EAGAIN;
	}
	if (ret < 0) {
		dev->stats.drop_bad_handshake++;
		return -EBADMSG;
	}
	return 0;
}

static void receive_initiation(struct wg_stage *st, const struct wg_packet *pkt,
			       const struct wg_message *m)
{
	struct wg_device *dev = st->dev;
	struct initiation_lookup l = {.dev = dev, .now = st->now};
	struct wg_message_response resp;
	struct wg_handshake *hs = NULL;
	struct wg_keypair kp;
	struct sockaddr_storage to;
	uint32_t dropped[WG_KEYPAIR_SLOTS];
	uint8_t eph[WG_KEY_LEN];
	struct wg_packet *slot;
	struct wg_peer *peer;
	const char *why = NULL;
	uint32_t index;
	size_t ndropped;

	if (wg_noise_consume_initiation(&dev->local, &m->initiation, lookup_handshake, &l, st->now,
					&hs, &why) < 0) {
		sodium_memzero(&l.ours, sizeof(l.ours));
		dev->stats.drop_bad_handshake++;
		return;
	}
	peer = container_of(hs, struct wg_peer, hs);
	path_received(dev, peer, &pkt->addr);
	wg_peer__timers_any_authenticated_packet_traversal(st, peer);
	wg_peer__timers_any_authenticated_packet_received(st, peer);

	slot = wg_send__out_slot(st);
	if (!slot || slot->cap < sizeof(resp)) {
		initiation_settle(peer, &l);
		return;
	}
	/* A kept initiation keeps its index. */
	if (peer->hs_index_live && !l.kept) {
		wg_device__index_remove(dev, peer->hs_index);
		peer->hs_index_live = false;
	}
	index = wg_device__index_new(dev, peer);
	dev->env.random(dev->env.arg, eph, sizeof(eph));
	keys_clamp(eph);
	if (wg_noise_create_response(&peer->hs, eph, index, &resp) < 0 ||
	    wg_noise_derive_keypair(&peer->hs, &kp, st->now) < 0) {
		sodium_memzero(eph, sizeof(eph));
		wg_device__index_remove(dev, index);
		initiation_settle(peer, &l);
		dev->stats.drop_bad_handshake++;
		return;
	}
	sodium_memzero(eph, sizeof(eph));
	initiation_settle(peer, &l);
	/* The index now belongs to the new (unconfirmed) session. */
	wg_noise_keypairs_install(wg_peer__keypairs(peer), &kp, dropped, &ndropped);
	wg_noise_keypair_destroy(&kp);
	wg_device__index_release(dev, dropped, ndropped);
	wg_peer__timers_session_derived(st, peer);

	wg_cookie_add_macs(&peer->cookie, (uint8_t *)&resp, sizeof(resp), st->now);
	answer_to(dev, peer, &pkt->addr, &to);
	memcpy(slot->buf, &resp, sizeof(resp));
	slot->off = 0;
	slot->len = sizeof(resp);
	slot->addr = to;
	slot->peer = peer;
	st->out_udp->n++;
	dev->stats.handshake_responses_sent++;
	answer_copy_to_source(st, peer, slot, &pkt->addr);
	wg_peer__timers_any_authenticated_packet_sent(st, peer);
}

static void receive_response(struct wg_stage *st, const struct wg_packet *pkt,
			     const struct wg_message *m)
{
	struct wg_device *dev = st->dev;
	uint32_t index = le32toh(m->response.receiver_index);
	struct wg_index_entry *e = wg_device__index_find(dev, index);
	uint32_t dropped[WG_KEYPAIR_SLOTS];
	struct wg_keypair kp;
	struct wg_peer *peer;
	const char *why = NULL;
	size_t ndropped;

	if (!e || !e->peer->hs_index_live || e->peer->hs.local_index != index) {
		dev->stats.drop_unknown_index++;
		return;
	}
	peer = e->peer;
	if (wg_noise_consume_response(&peer->hs, &dev->local, &m->response, &why) < 0 ||
	    wg_noise_derive_keypair(&peer->hs, &kp, st->now) < 0) {
		dev->stats.drop_bad_handshake++;
		return;
	}
	peer->hs_index_live = false;
	wg_noise_keypairs_install(wg_peer__keypairs(peer), &kp, dropped, &ndropped);
	wg_noise_keypair_destroy(&kp);
	wg_device__index_release(dev, dropped, ndropped);
	path_received(dev, peer, &pkt->addr);
	wg_peer__timers_session_derived(st, peer);
	wg_peer__timers_handshake_complete(st, peer);
	wg_peer__timers_any_authenticated_packet_traversal(st, peer);
	wg_peer__timers_any_authenticated_packet_received(st, peer);
	/* The responder waits for our first message on the new session:
	 * staged packets, or a keepalive. */
	wg_send__keepalive(st, peer);
}

static void receive_cookie_reply(struct wg_stage *st, const struct wg_message *m)
{
	struct wg_device *dev = st->dev;
	struct wg_index_entry *e =
		wg_device__index_find(dev, le32toh(m->cookie_reply.receiver_index));
	const char *why = NULL;

	if (!e) {
		dev->stats.drop_unknown_index++;
		return;
	}
	if (wg_cookie_consume_reply(&e->peer->cookie, &m->cookie_reply, st->now, &why) < 0) {
		dev->stats.drop_bad_handshake++;
		return;
	}
	dev->stats.cookie_replies_received++;
}

/* wireguard-go keepKeyFreshReceiving: an initiator whose session nears
 * REJECT_AFTER_TIME rekeys once, before it dies. */
static void keep_key_fresh_receiving(struct wg_stage *st, struct wg_peer *peer)
{
	struct wg_device *dev = st->dev;
	struct wg_keypair *kp = wg_peer__current(peer);

	if (!kp || !kp->initiator || peer->sent_last_minute_handshake)
		return;
	if (st->now - kp->created_ns <
	    dev->t.reject_after_ns - dev->t.keepalive_ns - dev->t.rekey_timeout_ns)
		return;
	peer->sent_last_minute_handshake = true;
	wg_send__initiation(st, peer, false);
}

/* Opens one data message in place; on success with a packet for TUN,
 * returns true (pkt then holds the IP packet, pkt->peer set). */
static bool receive_data(struct wg_stage *st, struct wg_packet *pkt, const struct wg_message *m)
{
	struct wg_device *dev = st->dev;
	struct wg_index_entry *e = wg_device__index_find(dev, m->receiver_index);
	uint32_t dropped[WG_KEYPAIR_SLOTS];
	const uint8_t *src, *plain;
	struct wg_keypair *kp;
	struct wg_peer *peer;
	const char *why = NULL;
	size_t plain_len, ip_len, ndropped;
	int family;

	if (!e) {
		dev->stats.drop_unknown_index++;
		return false;
	}
	peer = e->peer;
	kp = peer->kps ? wg_noise_keypairs_find(peer->kps, m->receiver_index) : NULL;
	if (!kp) {
		dev->stats.drop_unknown_index++;
		return false;
	}
	if (st->now - kp->created_ns >= dev->t.reject_after_ns ||
	    wg_data_decrypt(kp, st->now, pkt->buf + pkt->off, pkt->len, &plain_len, &why) < 0) {
		dev->stats.drop_bad_data++;
		return false;
	}
	path_received(dev, peer, &pkt->addr);
	peer->rx_bytes += pkt->len; /* the message as it came, authenticated */
	if (wg_noise_keypairs_received_with(peer->kps, kp, dropped, &ndropped)) {
		/* The initiator confirmed our session: it may send now. */
		wg_device__index_release(dev, dropped, ndropped);
		wg_peer__timers_handshake_complete(st, peer);
		if (peer->staged_count > 0)
			wg_peer__staged_list_add(dev, peer);
	}
	keep_key_fresh_receiving(st, peer);
	wg_peer__timers_any_authenticated_packet_traversal(st, peer);
	wg_peer__timers_any_authenticated_packet_received(st, peer);
	if (plain_len == 0) {
		dev->stats.rx_keepalives++;
		return false;
	}
	wg_peer__timers_data_received(st, peer);

	plain = pkt->buf + pkt->off + WG_DATA_HEADER_LEN;
	if (wg_device__ip_header(plain, plain_len, false, &family, &src, &ip_len) < 0) {
		dev->stats.drop_bad_packet++;
		return false;
	}
	if (allowedips_lookup(&dev->aips, family, src) != peer) {
		dev->stats.drop_source++;
		return false;
	}
	pkt->off += WG_DATA_HEADER_LEN;
	pkt->len = ip_len;
	pkt->peer = peer;
	dev->stats.rx_data++;
	dev->stats.rx_bytes += ip_len;
	return true;
}

size_t wg_device_udp_rx(struct wg_device *dev, struct wg_batch *in, struct wg_batch *out_tun,
			struct wg_batch *out_udp, uint64_t now_ns)
{
	struct wg_stage st = {.dev = dev, .out_udp = out_udp, .now = now_ns};
	size_t before = out_tun->n, handshakes = 0;

	for (size_t i = 0; i < in->n; i++) {
		struct wg_packet *pkt = &in->pkt[i];
		const char *why = NULL;
		struct wg_message m;
		int type;

		if (pkt->off > pkt->cap || pkt->len > pkt->cap - pkt->off) {
			dev->stats.drop_bad_packet++;
			continue;
		}
		type = wg_messages_parse(&m, pkt->buf + pkt->off, pkt->len, &why);
		switch (type) {
		case WG_MESSAGE_INITIATION:
			if (handshake_gate(&st, pkt, &handshakes) == 0)
				receive_initiation(&st, pkt, &m);
			break;
		case WG_MESSAGE_RESPONSE:
			if (handshake_gate(&st, pkt, &handshakes) == 0)
				receive_response(&st, pkt, &m);
			break;
		case WG_MESSAGE_COOKIE_REPLY:
			receive_cookie_reply(&st, &m);
			break;
		case WG_MESSAGE_DATA:
			if (!receive_data(&st, pkt, &m))
				break;
			if (out_tun->n == out_tun->cap) {
				dev->stats.drop_batch_full++;
				break;
			}
			wg_device__swap_packets(&out_tun->pkt[out_tun->n], pkt);
			out_tun->n++;
			break;
		default:
			dev->stats.drop_bad_packet++;
			break;
		}
	}
	in->n = 0;
	wg_send__flush_staged(&st);
	return out_tun->n - before;
}
