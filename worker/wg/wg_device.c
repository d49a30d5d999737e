/* The WireGuard device of wg_device.h: lifetime, the peer table (sorted by
 * node key), the receiver-index table, the peer set from a netmap and the
 * AllowedIPs trie, statistics. The stages are wg_send.c (TUN -> UDP) and
 * wg_receive.c (UDP -> TUN); peers, staging and timer events wg_peer.c. The
 * protocol itself (Noise, cookies, replay window, data sealing) is
 * wg_noise, wg_cookie, wg_replay and wg_data; these files decide when each
 * step happens. */
#include "wg_device.h"

#include <errno.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"
#include "wg_device_internal.h"

static void default_random(void *arg, void *buf, size_t n)
{
	(void)arg;
	randombytes_buf(buf, n);
}

static void default_tai64n(void *arg, uint8_t out[static WG_TIMESTAMP_LEN])
{
	(void)arg;
	wg_noise_tai64n_now(out);
}

static int path_first_endpoint(void *arg, const struct wg_peer *peer, struct sockaddr_storage *out)
{
	(void)arg;
	if (peer->n_endpoints == 0)
		return -EHOSTUNREACH;
	*out = peer->endpoints[0];
	return 0;
}

const struct wg_path_ops wg_path_first = {.endpoint = path_first_endpoint};

static uint64_t random_u64(struct wg_device *dev)
{
	uint64_t v;

	dev->env.random(dev->env.arg, &v, sizeof(v));
	return v;
}

uint64_t wg_device__jitter(struct wg_device *dev)
{
	if (dev->t.jitter_max_ns == 0)
		return 0;
	return random_u64(dev) % (dev->t.jitter_max_ns + 1);
}

static int peer_cmp_key(const void *key, const void *elem)
{
	const struct wg_peer *const *p = elem;

	return memcmp(key, (*p)->public_key, WG_KEY_LEN);
}

struct wg_peer *wg_device__find_peer(const struct wg_device *dev, const uint8_t *key)
{
	struct wg_peer **p;

	if (dev->n_peers == 0)
		return NULL;
	p = bsearch(key, dev->peers, dev->n_peers, sizeof(*dev->peers), peer_cmp_key);
	return p ? *p : NULL;
}

/* Linear probing over random keys; deletion shifts the following entries
 * back so no tombstones accumulate. The table holds at most 4 entries per
 * peer and has WG_INDEX_SLOTS_PER_PEER slots per peer, so it is never more
 * than half full. */

struct wg_index_entry *wg_device__index_find(const struct wg_device *dev, uint32_t index)
{
	for (size_t i = index & dev->index_mask;; i = (i + 1) & dev->index_mask) {
		struct wg_index_entry *e = &dev->index[i];

		if (!e->peer)
			return NULL;
		if (e->index == index)
			return e;
	}
}

static void index_put(struct wg_device *dev, uint32_t index, struct wg_peer *peer)
{
	size_t i = index & dev->index_mask;

	while (dev->index[i].peer)
		i = (i + 1) & dev->index_mask;
	dev->index[i].index = index;
	dev->index[i].peer = peer;
	dev->index_used++;
}

void wg_device__index_remove(struct wg_device *dev, uint32_t index)
{
	struct wg_index_entry *e = wg_device__index_find(dev, index);
	size_t hole, i;

	if (!e)
		return;
	hole = (size_t)(e - dev->index);
	dev->index[hole].peer = NULL;
	dev->index_used--;
	for (i = (hole + 1) & dev->index_mask; dev->index[i].peer; i = (i + 1) & dev->index_mask) {
		size_t home = dev->index[i].index & dev->index_mask;

		/* Move entry i into the hole unless its home lies cyclically
		 * in (hole, i], where it is still reachable. */
		if (((i - home) & dev->index_mask) >= ((i - hole) & dev->index_mask)) {
			dev->index[hole] = dev->index[i];
			dev->index[i].peer = NULL;
			hole = i;
		}
	}
}

/* A fresh random index, registered for peer. */
uint32_t wg_device__index_new(struct wg_device *dev, struct wg_peer *peer)
{
	uint32_t index;

	do
		dev->env.random(dev->env.arg, &index, sizeof(index));
	while (wg_device__index_find(dev, index));
	index_put(dev, index, peer);
	return index;
}

void wg_device__index_release(struct wg_device *dev, const uint32_t *dropped, size_t n)
{
	for (size_t i = 0; i < n; i++)
		wg_device__index_remove(dev, dropped[i]);
}

/* Grows the table to hold n_peers (called by set_peers, never on the
 * packet path). */
static void index_reserve(struct wg_device *dev, size_t n_peers)
{
	size_t want = WG_INDEX_MIN_SLOTS, old_slots = dev->index_mask + 1;
	struct wg_index_entry *old = dev->index;

	while (want < n_peers * WG_INDEX_SLOTS_PER_PEER)
		want *= 2;
	if (old && want <= old_slots)
		return;
	dev->index = xcalloc(want, sizeof(*dev->index));
	dev->index_mask = want - 1;
	dev->index_used = 0;
	for (size_t i = 0; old && i < old_slots; i++) {
		if (old[i].peer)
			index_put(dev, old[i].index, old[i].peer);
	}
	free(old);
}

/* IPv4 or IPv6 header: the family, the address at offset addr_off
 * (source or destination) and the packet's true length. Returns 0 or
 * -EBADMSG. */
int wg_device__ip_header(const uint8_t *p, size_t len, bool dst, int *family, const uint8_t **addr,
			 size_t *ip_len)
{
	if (len < 1)
		return -EBADMSG;
	switch (p[0] >> 4) {
	case 4:
		if (len < 20)
			return -EBADMSG;
		*family = AF_INET;
		*ip_len = ((size_t)p[2] << 8) | p[3];
		if (*ip_len < 20 || *ip_len > len)
			return -EBADMSG;
		*addr = p + (dst ? 16 : 12);
		return 0;
	case 6:
		if (len < 40)
			return -EBADMSG;
		*family = AF_INET6;
		*ip_len = 40 + (((size_t)p[4] << 8) | p[5]);
		if (*ip_len > len)
			return -EBADMSG;
		*addr = p + (dst ? 24 : 8);
		return 0;
	default:
		return -EBADMSG;
	}
}

void wg_device__swap_packets(struct wg_packet *a, struct wg_packet *b)
{
	struct wg_packet tmp = *a;

	*a = *b;
	*b = tmp;
}

void wg_device_set_load(struct wg_device *dev, size_t queued_handshakes)
{
	dev->queued_handshakes = queued_handshakes;
}

static int check_peer_config(const struct wg_device *dev, const struct wg_peer_config *pc,
			     const char **why)
{
	if (sodium_memcmp(pc->public_key, dev->local.public_key, WG_KEY_LEN) == 0) {
		*why = "peer has the device's own public key";
		return -EINVAL;
	}
	if (pc->n_allowed_ips && !pc->allowed_ips) {
		*why = "allowed_ips is NULL";
		return -EINVAL;
	}
	if (pc->n_endpoints && !pc->endpoints) {
		*why = "endpoints is NULL";
		return -EINVAL;
	}
	for (size_t i = 0; i < pc->n_allowed_ips; i++) {
		const struct ip_prefix *p = &pc->allowed_ips[i];

		if (!(p->family == AF_INET && p->len <= 32) &&
		    !(p->family == AF_INET6 && p->len <= 128)) {
			*why = "allowed IP prefix with a bad family or length";
			return -EINVAL;
		}
	}
	return 0;
}

static int config_cmp(const void *a, const void *b)
{
	const struct wg_peer_config *const *pa = a, *const *pb = b;

	return memcmp((*pa)->public_key, (*pb)->public_key, WG_KEY_LEN);
}

/* Frees peers made by set_peers that never entered the device's tables. */
static void discard_new_peer(struct wg_peer *p)
{
	wg_noise_handshake_destroy(&p->hs);
	wg_cookie_generator_destroy(&p->cookie);
	free(p->staged);
	free(p->allowed_ips);
	free(p->endpoints);
	sodium_memzero(p, sizeof(*p));
	free(p);
}

int wg_device_set_peers(struct wg_device *dev, const struct wg_peer_config *peers, size_t n,
			uint64_t now_ns, const char **why)
{
	struct wg_stage st = {.dev = dev, .out_udp = NULL, .now = now_ns};
	const struct wg_peer_config **sorted = NULL;
	struct wg_peer **next = NULL;
	bool *fresh = NULL;
	struct allowedips aips;
	size_t i;
	int ret = 0;

	*why = NULL;
	for (i = 0; i < n; i++) {
		ret = check_peer_config(dev, &peers[i], why);
		if (ret < 0)
			return ret;
	}
	sorted = xcalloc(n ? n : 1, sizeof(*sorted));
	for (i = 0; i < n; i++)
		sorted[i] = &peers[i];
	qsort(sorted, n, sizeof(*sorted), config_cmp);
	for (i = 1; i < n; i++) {
		if (memcmp(sorted[i]->public_key, sorted[i - 1]->public_key, WG_KEY_LEN) == 0) {
			*why = "duplicate peer public key";
			ret = -EINVAL;
			goto out;
		}
	}
	/* New peers first, so a failure leaves the device as it was. next[]
	 * follows the sorted order, which is the table's order. */
	next = xcalloc(n ? n : 1, sizeof(*next));
	fresh = xcalloc(n ? n : 1, sizeof(*fresh));
	for (i = 0; i < n; i++) {
		next[i] = wg_device__find_peer(dev, sorted[i]->public_key);
		if (next[i])
			continue;
		ret = wg_peer__new(dev, sorted[i], &next[i]);
		if (ret < 0) {
			*why = "peer key is unusable (low-order point)";
			goto out;
		}
		fresh[i] = true;
	}

	/* Committed from here on. */
	for (i = 0; i < dev->n_peers; i++)
		dev->peers[i]->keep = false;
	allowedips_init(&aips);
	for (i = 0; i < n; i++) {
		next[i]->keep = true;
		wg_peer__set_config(next[i], sorted[i]);
		for (size_t j = 0; j < next[i]->n_allowed_ips; j++)
			allowedips_insert(&aips, &next[i]->allowed_ips[j], next[i]);
	}
	for (i = 0; i < dev->n_peers; i++) {
		if (!dev->peers[i]->keep)
			wg_peer__free(dev->peers[i]);
	}
	free(dev->peers);
	dev->peers = next;
	dev->n_peers = n;
	next = NULL;
	allowedips_destroy(&dev->aips);
	dev->aips = aips;
	index_reserve(dev, n);
	for (i = 0; i < n; i++) {
		struct wg_peer *peer = dev->peers[i];

		if (peer->persistent_keepalive_s)
			wg_peer__timers_any_authenticated_packet_traversal(&st, peer);
		else
			wg_timers_del(&dev->wheel, &peer->persistent_keepalive);
	}
	log_info("%zu peers", n);
out:
	for (i = 0; next && i < n; i++) {
		if (fresh[i] && next[i])
			discard_new_peer(next[i]);
	}
	free(next);
	free(fresh);
	free(sorted);
	return ret;
}

void wg_device_config_default(struct wg_device_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->timers = (struct wg_device_timers){
		.rekey_after_ns = REKEY_AFTER_TIME * WG_NSEC_PER_SEC,
		.reject_after_ns = REJECT_AFTER_TIME * WG_NSEC_PER_SEC,
		.rekey_attempt_ns = REKEY_ATTEMPT_TIME * WG_NSEC_PER_SEC,
		.rekey_timeout_ns = REKEY_TIMEOUT * WG_NSEC_PER_SEC,
		.keepalive_ns = KEEPALIVE_TIMEOUT * WG_NSEC_PER_SEC,
		.jitter_max_ns = REKEY_TIMEOUT_JITTER_MAX_MS * UINT64_C(1000000),
	};
	cfg->mtu = 1280;
}

int wg_device_config_check(const struct wg_device_config *cfg, const char **why)
{
	const struct wg_device_timers *t = &cfg->timers;

	if (!t->rekey_after_ns || !t->reject_after_ns || !t->rekey_attempt_ns ||
	    !t->rekey_timeout_ns || !t->keepalive_ns) {
		*why = "a protocol timer is zero";
		return -EINVAL;
	}
	if (t->reject_after_ns > REJECT_AFTER_TIME * WG_NSEC_PER_SEC) {
		*why = "reject_after exceeds REJECT_AFTER_TIME";
		return -EINVAL;
	}
	if (t->rekey_after_ns >= t->reject_after_ns ||
	    t->keepalive_ns + t->rekey_timeout_ns >= t->reject_after_ns) {
		*why = "rekey_after, keepalive + rekey_timeout must be below reject_after";
		return -EINVAL;
	}
	if (t->rekey_attempt_ns < t->rekey_timeout_ns) {
		*why = "rekey_attempt is shorter than rekey_timeout";
		return -EINVAL;
	}
	if (cfg->staged_per_peer > 65536 || cfg->staged_pool > 65536) {
		*why = "staging bound above 65536";
		return -EINVAL;
	}
	return 0;
}

int wg_device_new(const struct wg_device_config *cfg, uint64_t now_ns, struct wg_device **out,
		  const char **why)
{
	struct wg_device *dev;
	int ret;

	*out = NULL;
	*why = NULL;
	ret = wg_device_config_check(cfg, why);
	if (ret < 0)
		return ret;
	dev = xcalloc(1, sizeof(*dev));
	if (wg_noise_static_init(&dev->local, cfg->private_key) < 0) {
		*why = "private key is unusable";
		free(dev);
		return -EINVAL;
	}
	wg_cookie_checker_init(&dev->checker, dev->local.public_key);
	dev->t = cfg->timers;
	dev->env = cfg->env;
	if (!dev->env.random)
		dev->env.random = default_random;
	if (!dev->env.tai64n)
		dev->env.tai64n = default_tai64n;
	dev->path = cfg->path ? cfg->path : &wg_path_first;
	dev->path_arg = cfg->path_arg;
	dev->mtu = cfg->mtu;
	dev->staged_per_peer =
		cfg->staged_per_peer ? cfg->staged_per_peer : WG_DEVICE_STAGED_PER_PEER;
	dev->pool_len = cfg->staged_pool ? cfg->staged_pool : WG_DEVICE_STAGED_POOL;
	dev->pool = xcalloc(dev->pool_len, sizeof(*dev->pool));
	dev->pool_free = xcalloc(dev->pool_len, sizeof(*dev->pool_free));
	for (size_t i = 0; i < dev->pool_len; i++)
		dev->pool_free[i] = &dev->pool[i];
	dev->pool_nfree = dev->pool_len;
	allowedips_init(&dev->aips);
	index_reserve(dev, 0);
	wg_timers_init(&dev->wheel, WG_DEVICE_TICK_NS, now_ns);
	*out = dev;
	return 0;
}

void wg_device_free(struct wg_device *dev)
{
	if (!dev)
		return;
	for (size_t i = 0; i < dev->n_peers; i++)
		wg_peer__free(dev->peers[i]);
	free(dev->peers);
	allowedips_destroy(&dev->aips);
	free(dev->index);
	sodium_memzero(dev->pool, dev->pool_len * sizeof(*dev->pool));
	free(dev->pool);
	free(dev->pool_free);
	wg_cookie_checker_destroy(&dev->checker);
	wg_noise_static_destroy(&dev->local);
	free(dev);
}

void wg_device__note_early_initiator(struct wg_device *dev, const uint8_t *key, uint64_t now_ns)
{
	for (size_t i = 0; i < WG_EARLY_INITIATORS; i++) {
		if (dev->early[i].at_ns && memcmp(dev->early[i].key, key, WG_KEY_LEN) == 0) {
			dev->early[i].at_ns = now_ns ? now_ns : 1;
			return;
		}
	}
	memcpy(dev->early[dev->early_next].key, key, WG_KEY_LEN);
	dev->early[dev->early_next].at_ns = now_ns ? now_ns : 1;
	dev->early_next = (dev->early_next + 1) % WG_EARLY_INITIATORS;
}

size_t wg_device_take_early_initiators(struct wg_device *dev, uint64_t now_ns,
				       uint8_t (*keys)[WG_KEY_LEN], size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < WG_EARLY_INITIATORS && n < max; i++) {
		if (!dev->early[i].at_ns)
			continue;
		if (now_ns - dev->early[i].at_ns > WG_EARLY_INITIATOR_NS) {
			dev->early[i].at_ns = 0; /* too old: its retry is due anyway */
			continue;
		}
		if (!wg_device__find_peer(dev, dev->early[i].key))
			continue;
		memcpy(keys[n++], dev->early[i].key, WG_KEY_LEN);
		dev->early[i].at_ns = 0;
	}
	return n;
}

const struct wg_device_stats *wg_device_stats(const struct wg_device *dev)
{
	return &dev->stats;
}

size_t wg_device_peer_count(const struct wg_device *dev)
{
	return dev->n_peers;
}

int wg_device_peer_status(const struct wg_device *dev, const uint8_t public_key[static WG_KEY_LEN],
			  uint64_t now_ns, struct wg_peer_status *st)
{
	struct wg_peer *peer = wg_device__find_peer(dev, public_key);
	struct wg_keypair *kp;

	memset(st, 0, sizeof(*st));
	if (!peer)
		return -ENOENT;
	kp = wg_send__keypair(dev, peer, now_ns);
	st->has_session = kp != NULL;
	if (kp) {
		st->session_index = kp->local_index;
		st->session_created_ns = kp->created_ns;
	}
	st->last_handshake_ns = peer->last_handshake_ns;
	st->rx_bytes = peer->rx_bytes;
	st->tx_bytes = peer->tx_bytes;
	st->handshake_attempts = peer->handshake_attempts;
	st->staged = peer->staged_count;
	st->n_keypairs = peer->kps ? (peer->kps->current >= 0) + (peer->kps->previous >= 0) +
					     (peer->kps->next >= 0)
				   : 0;
	return 0;
}
