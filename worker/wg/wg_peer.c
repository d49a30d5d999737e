/* Peers of the device: creation from a netmap entry, teardown, the queue
 * of packets staged while no session exists, and the timer events of
 * wireguard-go's timers.go with their expiry handlers (retransmit
 * handshake, passive keepalive, new handshake, zero key material,
 * persistent keepalive), run by wg_device_timers(). */
#include "wg_device_internal.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"

void wg_peer__staged_list_add(struct wg_device *dev, struct wg_peer *peer)
{
	if (peer->on_staged_list)
		return;
	peer->staged_next = dev->staged_list;
	dev->staged_list = peer;
	peer->on_staged_list = true;
}

void wg_peer__staged_list_remove(struct wg_device *dev, struct wg_peer *peer)
{
	struct wg_peer **pp;

	/* Drained: the ring goes until the next packet is staged. */
	if (peer->staged_count == 0) {
		free(peer->staged);
		peer->staged = NULL;
		peer->staged_head = 0;
	}
	if (!peer->on_staged_list)
		return;
	for (pp = &dev->staged_list; *pp != peer; pp = &(*pp)->staged_next)
		;
	*pp = peer->staged_next;
	peer->staged_next = NULL;
	peer->on_staged_list = false;
}

struct wg_staged *wg_peer__staged_pop(struct wg_peer *peer)
{
	struct wg_staged *s = peer->staged[peer->staged_head];

	peer->staged_head = (peer->staged_head + 1) % peer->dev->staged_per_peer;
	peer->staged_count--;
	return s;
}

void wg_peer__pool_put(struct wg_device *dev, struct wg_staged *s)
{
	sodium_memzero(s->buf, WG_DEVICE_HEADROOM + s->len);
	dev->pool_free[dev->pool_nfree++] = s;
}

static void staged_purge(struct wg_peer *peer)
{
	struct wg_device *dev = peer->dev;

	while (peer->staged_count > 0) {
		wg_peer__pool_put(dev, wg_peer__staged_pop(peer));
		dev->stats.drop_staged++;
	}
	wg_peer__staged_list_remove(dev, peer);
}

/* Copies the packet into the pool and queues it on peer, evicting the
 * peer's oldest packet when its queue (or the pool) is full. */
void wg_peer__stage(struct wg_peer *peer, const struct wg_packet *pkt)
{
	struct wg_device *dev = peer->dev;
	struct wg_staged *s;

	if (pkt->len + WG_DEVICE_HEADROOM + WG_DEVICE_TAILROOM > WG_DEVICE_STAGED_BUF_LEN) {
		dev->stats.drop_staged++;
		return;
	}
	if (peer->staged_count == dev->staged_per_peer ||
	    (dev->pool_nfree == 0 && peer->staged_count > 0)) {
		wg_peer__pool_put(dev, wg_peer__staged_pop(peer));
		dev->stats.drop_staged++;
	}
	if (dev->pool_nfree == 0) {
		dev->stats.drop_staged++;
		return;
	}
	if (!peer->staged)
		peer->staged = xcalloc(dev->staged_per_peer, sizeof(*peer->staged));
	s = dev->pool_free[--dev->pool_nfree];
	s->len = pkt->len;
	memcpy(s->buf + WG_DEVICE_HEADROOM, pkt->buf + pkt->off, pkt->len);
	peer->staged[(peer->staged_head + peer->staged_count) % dev->staged_per_peer] = s;
	peer->staged_count++;
	wg_peer__staged_list_add(dev, peer);
}

void wg_peer__timers_any_authenticated_packet_traversal(struct wg_stage *st, struct wg_peer *peer)
{
	if (peer->persistent_keepalive_s)
		wg_timers_mod(&st->dev->wheel, &peer->persistent_keepalive,
			      st->now + peer->persistent_keepalive_s * WG_NSEC_PER_SEC);
}

void wg_peer__timers_any_authenticated_packet_sent(struct wg_stage *st, struct wg_peer *peer)
{
	wg_timers_del(&st->dev->wheel, &peer->send_keepalive);
}

void wg_peer__timers_any_authenticated_packet_received(struct wg_stage *st, struct wg_peer *peer)
{
	wg_timers_del(&st->dev->wheel, &peer->new_handshake);
}

/* We sent data: if the peer stays silent for KEEPALIVE + REKEY_TIMEOUT,
 * something is wrong and a new handshake is due. */
void wg_peer__timers_data_sent(struct wg_stage *st, struct wg_peer *peer)
{
	struct wg_device *dev = st->dev;

	if (!wg_timers_pending(&peer->new_handshake))
		wg_timers_mod(&dev->wheel, &peer->new_handshake,
			      st->now + dev->t.keepalive_ns + dev->t.rekey_timeout_ns +
				      wg_device__jitter(dev));
}

/* We received data: answer with a keepalive unless we send something
 * within KEEPALIVE_TIMEOUT (the passive keepalive). */
void wg_peer__timers_data_received(struct wg_stage *st, struct wg_peer *peer)
{
	if (!wg_timers_pending(&peer->send_keepalive))
		wg_timers_mod(&st->dev->wheel, &peer->send_keepalive,
			      st->now + st->dev->t.keepalive_ns);
	else
		peer->need_another_keepalive = true;
}

void wg_peer__timers_handshake_initiated(struct wg_stage *st, struct wg_peer *peer)
{
	struct wg_device *dev = st->dev;

	wg_timers_mod(&dev->wheel, &peer->retransmit_handshake,
		      st->now + dev->t.rekey_timeout_ns + wg_device__jitter(dev));
}

void wg_peer__timers_handshake_complete(struct wg_stage *st, struct wg_peer *peer)
{
	wg_timers_del(&st->dev->wheel, &peer->retransmit_handshake);
	peer->handshake_attempts = 0;
	peer->sent_last_minute_handshake = false;
	peer->last_handshake_ns = st->now;
}

void wg_peer__timers_session_derived(struct wg_stage *st, struct wg_peer *peer)
{
	wg_timers_mod(&st->dev->wheel, &peer->zero_key_material,
		      st->now + 3 * st->dev->t.reject_after_ns);
	st->dev->stats.handshakes_completed++;
}

static void expired_retransmit_handshake(struct wg_timer *t, void *ctx)
{
	struct wg_peer *peer = container_of(t, struct wg_peer, retransmit_handshake);
	struct wg_stage *st = ctx;
	struct wg_device *dev = st->dev;
	uint64_t max = dev->t.rekey_attempt_ns / dev->t.rekey_timeout_ns;

	if (peer->handshake_attempts > max) {
		/* Give up: forget what waits, wipe the keys later. */
		wg_timers_del(&dev->wheel, &peer->send_keepalive);
		staged_purge(peer);
		if (!wg_timers_pending(&peer->zero_key_material))
			wg_timers_mod(&dev->wheel, &peer->zero_key_material,
				      st->now + 3 * dev->t.reject_after_ns);
		return;
	}
	peer->handshake_attempts++;
	wg_send__initiation(st, peer, true);
}

static void expired_send_keepalive(struct wg_timer *t, void *ctx)
{
	struct wg_peer *peer = container_of(t, struct wg_peer, send_keepalive);
	struct wg_stage *st = ctx;

	wg_send__keepalive(st, peer);
	if (peer->need_another_keepalive) {
		peer->need_another_keepalive = false;
		wg_timers_mod(&st->dev->wheel, &peer->send_keepalive,
			      st->now + st->dev->t.keepalive_ns);
	}
}

static void expired_new_handshake(struct wg_timer *t, void *ctx)
{
	struct wg_peer *peer = container_of(t, struct wg_peer, new_handshake);

	wg_send__initiation(ctx, peer, false);
}

void wg_peer__zero_keys(struct wg_device *dev, struct wg_peer *peer)
{
	uint32_t dropped[WG_KEYPAIR_SLOTS];
	size_t n;

	if (peer->kps) {
		wg_noise_keypairs_clear(peer->kps, dropped, &n);
		wg_device__index_release(dev, dropped, n);
		sodium_memzero(peer->kps, sizeof(*peer->kps));
		free(peer->kps);
		peer->kps = NULL;
	}
	if (peer->hs_index_live)
		wg_device__index_remove(dev, peer->hs_index);
	peer->hs_index_live = false;
	wg_noise_handshake_clear(&peer->hs);
}

struct wg_keypairs *wg_peer__keypairs(struct wg_peer *peer)
{
	if (!peer->kps) {
		peer->kps = xmalloc(sizeof(*peer->kps));
		wg_noise_keypairs_init(peer->kps);
	}
	return peer->kps;
}

static void expired_zero_key_material(struct wg_timer *t, void *ctx)
{
	struct wg_peer *peer = container_of(t, struct wg_peer, zero_key_material);
	struct wg_stage *st = ctx;

	wg_peer__zero_keys(st->dev, peer);
}

static void expired_persistent_keepalive(struct wg_timer *t, void *ctx)
{
	struct wg_peer *peer = container_of(t, struct wg_peer, persistent_keepalive);

	if (peer->persistent_keepalive_s)
		wg_send__keepalive(ctx, peer);
}

size_t wg_device_timers(struct wg_device *dev, uint64_t now_ns, struct wg_batch *out_udp)
{
	struct wg_stage st = {.dev = dev, .out_udp = out_udp, .now = now_ns};
	size_t before = out_udp->n;

	wg_timers_run(&dev->wheel, now_ns, &st);
	wg_send__flush_staged(&st);
	return out_udp->n - before;
}

void wg_peer__set_config(struct wg_peer *peer, const struct wg_peer_config *pc)
{
	free(peer->allowed_ips);
	peer->allowed_ips = NULL;
	peer->n_allowed_ips = pc->n_allowed_ips;
	if (pc->n_allowed_ips) {
		peer->allowed_ips = xcalloc(pc->n_allowed_ips, sizeof(*peer->allowed_ips));
		memcpy(peer->allowed_ips, pc->allowed_ips,
		       pc->n_allowed_ips * sizeof(*peer->allowed_ips));
	}
	free(peer->endpoints);
	peer->endpoints = NULL;
	peer->n_endpoints = 0;
	for (size_t pass = 0; pass < 2; pass++) {
		size_t n = 0;

		/* Counted first, then copied into an array of that size. */
		for (size_t i = 0; i < pc->n_endpoints && n < WG_PEER_MAX_ENDPOINTS; i++) {
			sa_family_t f = pc->endpoints[i].ss_family;

			if (f != AF_INET && f != AF_INET6)
				continue;
			if (pass == 1)
				peer->endpoints[n] = pc->endpoints[i];
			n++;
		}
		if (n == 0)
			break;
		if (pass == 0)
			peer->endpoints = xcalloc(n, sizeof(*peer->endpoints));
		else
			peer->n_endpoints = n;
	}
	peer->persistent_keepalive_s = pc->persistent_keepalive_s;
}

void wg_peer__free(struct wg_peer *peer)
{
	struct wg_device *dev;

	if (!peer)
		return;
	dev = peer->dev;
	wg_timers_del(&dev->wheel, &peer->retransmit_handshake);
	wg_timers_del(&dev->wheel, &peer->send_keepalive);
	wg_timers_del(&dev->wheel, &peer->new_handshake);
	wg_timers_del(&dev->wheel, &peer->zero_key_material);
	wg_timers_del(&dev->wheel, &peer->persistent_keepalive);
	if (dev->index)
		wg_peer__zero_keys(dev, peer);
	while (peer->staged_count > 0)
		wg_peer__pool_put(dev, wg_peer__staged_pop(peer));
	wg_peer__staged_list_remove(dev, peer);
	wg_noise_handshake_destroy(&peer->hs);
	wg_cookie_generator_destroy(&peer->cookie);
	free(peer->allowed_ips);
	free(peer->endpoints);
	free(peer->staged);
	sodium_memzero(peer, sizeof(*peer));
	free(peer);
}

int wg_peer__new(struct wg_device *dev, const struct wg_peer_config *pc, struct wg_peer **out)
{
	struct wg_peer *peer = xcalloc(1, sizeof(*peer));
	int ret;

	*out = NULL;
	peer->dev = dev;
	memcpy(peer->public_key, pc->public_key, WG_KEY_LEN);
	ret = wg_noise_handshake_init(&peer->hs, &dev->local, pc->public_key, pc->preshared_key);
	if (ret < 0) {
		wg_noise_handshake_destroy(&peer->hs);
		free(peer);
		return ret;
	}
	wg_cookie_generator_init(&peer->cookie, pc->public_key);
	wg_timers_setup(&peer->retransmit_handshake, expired_retransmit_handshake);
	wg_timers_setup(&peer->send_keepalive, expired_send_keepalive);
	wg_timers_setup(&peer->new_handshake, expired_new_handshake);
	wg_timers_setup(&peer->zero_key_material, expired_zero_key_material);
	wg_timers_setup(&peer->persistent_keepalive, expired_persistent_keepalive);
	*out = peer;
	return 0;
}

const uint8_t *wg_peer_public_key(const struct wg_peer *peer)
{
	return peer->public_key;
}

const struct sockaddr_storage *wg_peer_endpoints(const struct wg_peer *peer, size_t *n)
{
	*n = peer->n_endpoints;
	return peer->endpoints;
}
