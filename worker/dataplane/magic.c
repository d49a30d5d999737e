/* The engine's disco side (docs/tailscale-protocol.md §7): the peers that
 * have a disco key get a struct path (magicsock/path.h) that decides where
 * their WireGuard goes and which ip:ports it is accepted from; disco
 * messages on the UDP socket are opened, answered and fed to it, and the
 * pings it asks for are sent from the engine's tick. Peers without a disco
 * key (an external WireGuard node) keep the plain behaviour: their first
 * endpoint is the path and WireGuard is accepted from any source.
 *
 * Everything here runs on the engine thread. Disco messages are queued in
 * dp->disco_out and leave with the next dataplane__udp_flush(). */
#include "dataplane.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "chan.h"
#include "dataplane_internal.h"
#include "log.h"
#include "mem.h"
#include "stun.h"

enum { DP_NS_PER_MS = 1000000 };

static int node_cmp(const void *a, const void *b)
{
	const struct dp_magic_peer *const *x = a, *const *y = b;

	return memcmp((*x)->node, (*y)->node, WG_KEY_LEN);
}

static struct dp_magic_peer *mpeer_find(const struct dataplane *dp, const uint8_t *node)
{
	size_t lo = 0, hi = dp->n_mpeers;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = memcmp(dp->mpeers[mid]->node, node, WG_KEY_LEN);

		if (c == 0)
			return dp->mpeers[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static void mpeer_free(struct dp_magic_peer *m)
{
	disco_shared_destroy(&m->shared);
	path_destroy(&m->path);
	sodium_memzero(m, sizeof(*m));
	free(m);
}

/* Something changed what path_accepts_wg() or the timers say. */
static void paths_changed(struct dataplane *dp)
{
	dp->wg_ok_valid = false;
	dp->path_deadline = 0;
}

/* ---- sending disco ------------------------------------------------------- */

/* Queues msg for `to` sealed for m. Returns 0, or -EAFNOSUPPORT
 * / what disco_encode() returns. */
static int disco_send(struct dataplane *dp, const struct dp_magic_peer *m,
		      const struct disco_addr *to, const struct disco_msg *msg)
{
	struct wg_batch *b = &dp->disco_out;
	uint8_t nonce[DISCO_NONCE_LEN];
	struct wg_packet *w;
	int n;

	/* dp->pb is free whenever WireGuard or disco asks to send. */
	if (b->n == b->cap)
		dataplane__udp_send_batch(dp, b);
	w = &b->pkt[b->n];
	randombytes_buf(nonce, sizeof(nonce));
	n = disco_encode(&m->shared, dp->disco_pub, nonce, msg, w->buf, w->cap);
	if (n < 0)
		return n;
	if (disco_addr_is_derp(to)) {
		/* Through the peer's node key on that region: the slot's
		 * buffer was only scratch. */
		if (!dp->derp)
			return -ENETUNREACH;
		n = chan_send_push(dp->derp, m->node, to->port, w->buf, (size_t)n);
		if (n == 0)
			dp->st.disco_out++;
		return n;
	}
	memset(&w->addr, 0, sizeof(w->addr));
	if (!disco_addr_to_sockaddr(to, (struct sockaddr *)&w->addr, sizeof(w->addr)))
		return -EAFNOSUPPORT;
	w->off = 0;
	w->len = (size_t)n;
	w->peer = NULL;
	b->n++;
	dp->st.disco_out++;
	return 0;
}

void dataplane_set_endpoints(struct dataplane *dp, const struct disco_addr *eps, size_t n)
{
	if (n > DATAPLANE_OWN_EPS)
		n = DATAPLANE_OWN_EPS;
	pthread_mutex_lock(&dp->lock);
	memcpy(dp->own_eps, eps, n * sizeof(*eps));
	dp->n_own_eps = n;
	pthread_mutex_unlock(&dp->lock);
}

/* A CallMeMaybe with our endpoints to `to` (through DERP): the peer pings
 * them all at once, which opens NAT mappings on both sides. */
static void call_me_maybe_send(struct dataplane *dp, const struct dp_magic_peer *m,
			       const struct disco_addr *to)
{
	uint8_t raw[DATAPLANE_OWN_EPS * DISCO_ADDR_WIRE_LEN];
	struct disco_addr eps[DATAPLANE_OWN_EPS];
	struct disco_msg msg = {.type = DISCO_CALL_ME_MAYBE};
	size_t n;

	pthread_mutex_lock(&dp->lock);
	n = dp->n_own_eps;
	memcpy(eps, dp->own_eps, n * sizeof(*eps));
	pthread_mutex_unlock(&dp->lock);
	if (!n)
		return;
	disco_call_me_maybe_fill(raw, eps, n);
	msg.cmm.raw = raw;
	msg.cmm.n = n;
	(void)disco_send(dp, m, to, &msg);
}

/* Carries out what path.c asked for. A ping that cannot leave (no DERP)
 * fails at once, so path.c does not wait for its Pong. */
static void actions_run(struct dataplane *dp, struct dp_magic_peer *m, const struct path_out *out)
{
	for (size_t i = 0; i < out->n; i++) {
		const struct path_action *a = &out->actions[i];
		struct disco_msg msg = {0};
		int ret;

		if (a->type == PATH_SEND_CALL_ME_MAYBE) {
			call_me_maybe_send(dp, m, &a->to);
			continue;
		}
		if (a->type == PATH_SEND_PING) {
			msg.type = DISCO_PING;
			memcpy(msg.ping.txid, a->txid, DISCO_TXID_LEN);
			memcpy(msg.ping.node_key, dp->node_pub, DISCO_NODE_KEY_LEN);
		} else {
			msg.type = DISCO_PONG;
			memcpy(msg.pong.txid, a->txid, DISCO_TXID_LEN);
			msg.pong.src = a->to;
		}
		ret = disco_send(dp, m, &a->to, &msg);
		if (ret < 0 && a->type == PATH_SEND_PING)
			path_ping_failed(&m->path, a->txid);
	}
	/* Pings in flight have deadlines. */
	if (out->n)
		dp->path_deadline = 0;
}

/* ---- the path selector ---------------------------------------------------- */

/* Where WireGuard goes by path.c's route r: DERP as 127.3.3.40:region, or
 * the UDP address, in *to. While the direct path is not trusted path.c
 * says both; WireGuard takes DERP then (one address per packet here), and
 * the direct path again once a Pong restored trust. Returns false when
 * there is no path. */
static bool route_to(const struct dataplane *dp, const struct path_route *r, struct disco_addr *to)
{
	if (r->has_derp && dp->derp)
		disco_addr_derp(r->derp_region, to);
	else if (r->has_udp)
		*to = r->udp;
	else
		return false;
	return true;
}

static int path_endpoint(void *arg, const struct wg_peer *peer, struct sockaddr_storage *out)
{
	struct dataplane *dp = arg;
	struct dp_magic_peer *m = mpeer_find(dp, wg_peer_public_key(peer));
	struct path_out po;
	struct disco_addr to;
	uint64_t heartbeat;

	if (!m)
		return wg_path_first.endpoint(NULL, peer, out);
	heartbeat = m->path.heartbeat_at;
	(void)path_on_send(&m->path, dp->now_ms, &po);
	actions_run(dp, m, &po);
	if (heartbeat != m->path.heartbeat_at)
		dp->path_deadline = 0;
	if (!route_to(dp, &po.route, &to))
		return -EHOSTUNREACH;
	memset(out, 0, sizeof(*out));
	if (!disco_addr_to_sockaddr(&to, (struct sockaddr *)out, sizeof(*out)))
		return -EHOSTUNREACH;
	return 0;
}

/* A peer without disco has only the endpoints it was configured with. */
static bool path_proven_for(void *arg, const struct wg_peer *peer)
{
	struct dataplane *dp = arg;
	struct dp_magic_peer *m = mpeer_find(dp, wg_peer_public_key(peer));

	return !m || path_proven(&m->path, dp->now_ms);
}

const struct wg_path_ops dataplane__path_ops = {.endpoint = path_endpoint,
						.proven = path_proven_for};

/* ---- configurations ------------------------------------------------------ */

static bool session_with(struct dataplane *dp, const uint8_t *node)
{
	struct wg_peer_status st;

	return wg_device_peer_status(dp->dev, node, dp->now_ms * DP_NS_PER_MS, &st) == 0 &&
	       st.has_session;
}

static void initiate(struct dataplane *dp, const uint8_t *node, uint64_t now_ns)
{
	dataplane__udp_flush(dp);
	(void)wg_device_initiate(dp->dev, node, now_ns, &dp->udp_out);
	dataplane__udp_flush(dp);
}

void dataplane__handshake_owed(struct dataplane *dp, const uint8_t *node, uint64_t now_ns)
{
	struct dp_magic_peer *m = mpeer_find(dp, node);

	if (m)
		m->handshake_wanted = true;
	initiate(dp, node, now_ns);
}

static struct dp_magic_peer *mpeer_take(struct dataplane *dp, const uint8_t *node,
					const struct dataplane_disco_peer *d)
{
	struct dp_magic_peer *m = mpeer_find(dp, node);

	if (m) {
		m->kept = true;
		if (sodium_memcmp(m->disco, d->disco, WG_KEY_LEN) == 0)
			return m;
		/* The peer restarted (a new disco key is a new process):
		 * whatever WireGuard session we hold with it is gone on its
		 * side. Rather than send into it until the 15 s without an
		 * answer that make WireGuard handshake again, handshake now
		 * (magic_apply, once its paths are set). */
		disco_shared_destroy(&m->shared);
		path_reset(&m->path);
		m->handshake_wanted = session_with(dp, node);
	} else {
		m = xcalloc(1, sizeof(*m));
		memcpy(m->node, node, WG_KEY_LEN);
		path_init(&m->path);
	}
	memcpy(m->disco, d->disco, WG_KEY_LEN);
	m->kept = true;
	if (disco_shared_init(&m->shared, d->disco, dp->disco_priv) < 0) {
		/* An old one is freed with the rest of the old set. */
		if (!mpeer_find(dp, node))
			mpeer_free(m);
		else
			m->kept = false;
		return NULL;
	}
	return m;
}

void dataplane__magic_apply(struct dataplane *dp, const struct dataplane_config *cfg)
{
	struct dp_magic_peer **next = xcalloc(cfg->n_peers ? cfg->n_peers : 1, sizeof(*next));
	size_t n = 0;

	for (size_t i = 0; i < dp->n_mpeers; i++)
		dp->mpeers[i]->kept = false;
	for (size_t i = 0; i < cfg->n_peers; i++) {
		const struct dataplane_disco_peer *d = &cfg->disco[i];
		struct dp_magic_peer *m;

		if (!d->has_disco)
			continue;
		m = mpeer_take(dp, cfg->peers[i].public_key, d);
		if (!m) {
			log_warn("a peer's disco key is unusable: no disco with it");
			continue;
		}
		path_set_derp(&m->path, d->home_derp);
		path_set_endpoints(&m->path, dp->now_ms, &cfg->disco_eps[d->ep_off], d->n_eps);
		next[n++] = m;
	}
	for (size_t i = 0; i < n; i++) {
		if (next[i]->handshake_wanted)
			initiate(dp, next[i]->node, dp->now_ms * DP_NS_PER_MS);
	}
	for (size_t i = 0; i < dp->n_mpeers; i++) {
		if (!dp->mpeers[i]->kept)
			mpeer_free(dp->mpeers[i]);
	}
	free(dp->mpeers);
	qsort(next, n, sizeof(*next), node_cmp);
	dp->mpeers = next;
	dp->n_mpeers = n;
	paths_changed(dp);
}

/* ---- receiving ----------------------------------------------------------- */

/* A datagram or DERP packet from a bad or confused peer: dropped and
 * counted, and told in at most one line per kind every
 * DP_BAD_PEER_LOG_MS, since a peer can send as many as it likes. The line
 * names where the latest came from and the parser's reason, never a key. */
static void bad_peer(struct dataplane *dp, enum dataplane_drop kind, const struct disco_addr *src,
		     const char *why)
{
	static const char *const what[DATAPLANE_DROP_COUNT] = {
		[DATAPLANE_DROP_DISCO] = "malformed disco",
		[DATAPLANE_DROP_STUN] = "STUN for another transaction",
		[DATAPLANE_DROP_DISCO_UNKNOWN] = "disco from an unknown disco key",
		[DATAPLANE_DROP_DISCO_BOX] = "disco whose box does not open",
		[DATAPLANE_DROP_STUN_MALFORMED] = "malformed STUN",
	};
	char from[DISCO_ADDR_STRLEN + 16];
	uint64_t n;

	dp->st.drops[kind]++;
	n = log_ratelimit_hit(&dp->bad_log[kind], dp->now_ms, DP_BAD_PEER_LOG_MS);
	if (!n || !what[kind])
		return;
	if (disco_addr_is_derp(src))
		snprintf(from, sizeof(from), "DERP region %u", src->port);
	else
		disco_addr_format(src, from, sizeof(from));
	log_warn("dropped %llu %s since the last such line; the latest from %s: %s",
		 (unsigned long long)n, what[kind], from, why);
}

/* Upstream's peerMap.endpointForIPPort: WireGuard only from an ip:port
 * disco confirmed for some peer, unless a peer without disco is in the
 * configuration (it may send from anywhere). */
static bool wg_source_ok(struct dataplane *dp, const struct disco_addr *src)
{
	if (!dp->cur || dp->cur->any_without_disco)
		return true;
	if (dp->wg_ok_valid && disco_addr_equal(&dp->wg_ok, src))
		return true;
	for (size_t i = 0; i < dp->n_mpeers; i++) {
		if (path_accepts_wg(&dp->mpeers[i]->path, src)) {
			dp->wg_ok = *src;
			dp->wg_ok_valid = true;
			return true;
		}
	}
	return false;
}

/* src now carries m's WireGuard: no other peer's any more. */
static void unconfirm_others(struct dataplane *dp, const struct dp_magic_peer *m,
			     const struct disco_addr *src)
{
	for (size_t i = 0; i < dp->n_mpeers; i++) {
		if (dp->mpeers[i] != m)
			path_unconfirm(&dp->mpeers[i]->path, src);
	}
}

/* The peer's first direct path just appeared: packets staged while it had
 * none need not wait for the handshake retry timer. An initiation that
 * found no path is replaced; one that left (through DERP, a moment ago,
 * which is how the first packet to a new peer goes) is sent again,
 * unchanged, on the direct path. A new one would replace it: the peer
 * takes one of two initiations that close together, and when it took the
 * one through DERP its answer found that handshake replaced here, and the
 * first packet waited 5 s for the retry (wg_device_initiate_on_new_path). */
static void path_up(struct dataplane *dp, struct dp_magic_peer *m, uint64_t now_ns)
{
	struct wg_peer_status st;
	bool owed = m->handshake_wanted;

	m->handshake_wanted = false;
	if (wg_device_peer_status(dp->dev, m->node, now_ns, &st) < 0 ||
	    (!owed && (st.has_session || !st.staged)))
		return;
	dataplane__udp_flush(dp);
	(void)wg_device_initiate_on_new_path(dp->dev, m->node, now_ns, &dp->udp_out);
	dataplane__udp_flush(dp);
}

static void ping_rx(struct dataplane *dp, const uint8_t *sender, const struct disco_ping *ping,
		    const struct disco_addr *src)
{
	struct dp_magic_peer *m = NULL;
	struct path_out out;
	size_t with_key = 0;
	bool confirm;
	int ret;

	for (size_t i = 0; i < dp->n_mpeers; i++) {
		if (sodium_memcmp(dp->mpeers[i]->disco, sender, WG_KEY_LEN) == 0) {
			with_key++;
			if (!m)
				m = dp->mpeers[i];
		}
	}
	confirm = with_key == 1;
	if (!sodium_is_zero(ping->node_key, DISCO_NODE_KEY_LEN)) {
		/* The sender named its node: it must be that peer's disco key. */
		m = mpeer_find(dp, ping->node_key);
		if (!m || sodium_memcmp(m->disco, sender, WG_KEY_LEN) != 0) {
			bad_peer(dp, DATAPLANE_DROP_DISCO, src, "Ping names another node");
			return;
		}
		confirm = true;
	}
	/* A duplicate (-EALREADY) gets no Pong but confirms src all the same. */
	ret = path_on_ping(&m->path, dp->now_ms, src, ping->txid, confirm, &out);
	paths_changed(dp);
	if (confirm && !disco_addr_is_derp(src))
		unconfirm_others(dp, m, src);
	if (ret == 0)
		actions_run(dp, m, &out);
}

static void pong_rx(struct dataplane *dp, const uint8_t *sender, const struct disco_pong *pong,
		    const struct disco_addr *src, uint64_t now_ns)
{
	for (size_t i = 0; i < dp->n_mpeers; i++) {
		struct dp_magic_peer *m = dp->mpeers[i];
		struct path_route before, after;

		if (sodium_memcmp(m->disco, sender, WG_KEY_LEN) != 0)
			continue;
		path_route(&m->path, dp->now_ms, &before);
		if (!path_on_pong(&m->path, dp->now_ms, pong->txid, src))
			continue;
		if (path_accepts_wg(&m->path, src))
			unconfirm_others(dp, m, src);
		paths_changed(dp);
		path_route(&m->path, dp->now_ms, &after);
		if (!before.has_udp && after.has_udp)
			path_up(dp, m, now_ns);
		return;
	}
}

/* A CallMeMaybe through DERP from m: its endpoints are pinged now. */
static void call_me_maybe_rx(struct dataplane *dp, struct dp_magic_peer *m,
			     const struct disco_call_me_maybe *cmm)
{
	struct disco_addr eps[PATH_MAX_ENDPOINTS];
	size_t n = cmm->n < PATH_MAX_ENDPOINTS ? cmm->n : PATH_MAX_ENDPOINTS;
	struct path_out out;

	for (size_t i = 0; i < n; i++)
		disco_call_me_maybe_at(cmm, i, &eps[i]);
	path_on_call_me_maybe(&m->path, dp->now_ms, eps, n, &out);
	actions_run(dp, m, &out);
}

/* The sender of a disco message no peer has may be a peer control has not
 * told us of yet: the message is kept (the oldest goes), the counters
 * still count it as dropped. */
static void early_disco_keep(struct dataplane *dp, const uint8_t *pkt, size_t len,
			     const struct disco_addr *src, const uint8_t *node)
{
	struct dp_early_disco *e = &dp->early_disco[dp->early_disco_next];

	if (len > DP_EARLY_DISCO_LEN || !disco_sender(pkt, len))
		return;
	dp->early_disco_next = (dp->early_disco_next + 1) % DP_EARLY_DISCO;
	e->at_ms = dp->now_ms ? dp->now_ms : 1;
	e->src = *src;
	e->has_node = node != NULL;
	if (node)
		memcpy(e->node, node, WG_KEY_LEN);
	e->len = (uint16_t)len;
	memcpy(e->pkt, pkt, len);
}

/* The peer a disco message is from: through DERP (node set) the node's,
 * if sender is its disco key; else the peer with disco key sender. NULL
 * when none (or sender is NULL: not a disco packet). */
static struct dp_magic_peer *disco_peer(const struct dataplane *dp, const uint8_t *sender,
					const uint8_t *node)
{
	struct dp_magic_peer *m;

	if (!sender)
		return NULL;
	if (node) {
		m = mpeer_find(dp, node);
		return m && sodium_memcmp(m->disco, sender, WG_KEY_LEN) == 0 ? m : NULL;
	}
	for (size_t i = 0; i < dp->n_mpeers; i++) {
		if (sodium_memcmp(dp->mpeers[i]->disco, sender, WG_KEY_LEN) == 0)
			return dp->mpeers[i];
	}
	return NULL;
}

static void disco_rx(struct dataplane *dp, const uint8_t *pkt, size_t len,
		     const struct disco_addr *src, const uint8_t *node, uint64_t now_ns);

void dataplane__early_disco_run(struct dataplane *dp, uint64_t now_ns)
{
	bool ran = false;

	for (size_t i = 0; i < DP_EARLY_DISCO; i++) {
		struct dp_early_disco *e = &dp->early_disco[i];
		struct dp_early_disco copy;

		if (!e->at_ms)
			continue;
		if (dp->now_ms - e->at_ms > DP_EARLY_DISCO_MS) {
			e->at_ms = 0;
			continue;
		}
		if (!disco_peer(dp, disco_sender(e->pkt, e->len), e->has_node ? e->node : NULL))
			continue;
		/* disco_rx may keep another message in this very slot. */
		copy = *e;
		e->at_ms = 0;
		disco_rx(dp, copy.pkt, copy.len, &copy.src, copy.has_node ? copy.node : NULL,
			 now_ns);
		ran = true;
	}
	if (ran)
		dataplane__udp_flush(dp);
}

/* A disco message from src: a datagram (node NULL), or through DERP from
 * the peer with node key `node` (src 127.3.3.40:region), which must be
 * the disco key's owner. */
static void disco_rx(struct dataplane *dp, const uint8_t *pkt, size_t len,
		     const struct disco_addr *src, const uint8_t *node, uint64_t now_ns)
{
	uint8_t payload[DP_BUF_LEN];
	const uint8_t *sender = disco_sender(pkt, len);
	struct dp_magic_peer *m = disco_peer(dp, sender, node);
	const char *why = "";
	struct disco_msg msg;
	int n;

	if (!m) {
		early_disco_keep(dp, pkt, len, src, node);
		bad_peer(
			dp, DATAPLANE_DROP_DISCO_UNKNOWN, src,
			node ? "not the disco key of the node DERP names (kept for the next netmap)"
			     : "no peer has it (kept for the next netmap)");
		return;
	}
	n = disco_open(&m->shared, pkt, len, payload, sizeof(payload), &why);
	if (n < 0) {
		bad_peer(dp, DATAPLANE_DROP_DISCO_BOX, src, why);
		return;
	}
	if (disco_parse(payload, (size_t)n, &msg, &why) < 0) {
		bad_peer(dp, DATAPLANE_DROP_DISCO, src, why);
		return;
	}
	dp->st.disco_in++;
	switch (msg.type) {
	case DISCO_PING:
		ping_rx(dp, sender, &msg.ping, src);
		break;
	case DISCO_PONG:
		pong_rx(dp, sender, &msg.pong, src, now_ns);
		break;
	case DISCO_CALL_ME_MAYBE:
		/* Only through DERP: over UDP upstream ignores it too. */
		if (node)
			call_me_maybe_rx(dp, m, &msg.cmm);
		break;
	default:
		break;
	}
}

/* A STUN answer from src: kept when it is for our transaction, else
 * dropped (an answer to an earlier request, once a newer one is in flight
 * or answered, counts as another transaction's). */
static void stun_rx(struct dataplane *dp, const uint8_t *p, size_t len,
		    const struct disco_addr *src)
{
	struct sockaddr_storage ss;
	struct stun_addr seen;
	struct disco_addr addr;
	const char *why = "STUN response for no request in flight";
	int ret = stun_check_response(p, len, dp->stun_txid, &seen, &why);

	memcpy(addr.ip, seen.ip, sizeof(addr.ip));
	addr.port = seen.port;

	if (ret == -ESRCH || (ret == 0 && !dp->stun_waiting)) {
		bad_peer(dp, DATAPLANE_DROP_STUN, src, why);
		return;
	}
	if (ret < 0 || !disco_addr_is_valid(&addr)) {
		bad_peer(dp, DATAPLANE_DROP_STUN_MALFORMED, src,
			 ret < 0 ? why : "STUN response maps to no usable address");
		return;
	}
	memset(&ss, 0, sizeof(ss));
	if (!disco_addr_to_sockaddr(&addr, (struct sockaddr *)&ss, sizeof(ss)))
		return;
	pthread_mutex_lock(&dp->lock);
	dp->stun_addr = ss;
	dp->has_stun_addr = true;
	pthread_mutex_unlock(&dp->lock);
	dp->stun_waiting = false;
}

/* A binding request to the STUN server when it changed or the last one is
 * DATAPLANE_STUN_INTERVAL_MS old. */
static void stun_tick(struct dataplane *dp)
{
	struct wg_batch *b = &dp->disco_out;
	struct wg_packet *w;
	bool has;

	if (dp->stun_sent_ms && dp->now_ms - dp->stun_sent_ms < DATAPLANE_STUN_INTERVAL_MS &&
	    atomic_load_explicit(&dp->stun_gen, memory_order_relaxed) == dp->stun_seen)
		return;
	pthread_mutex_lock(&dp->lock);
	has = dp->has_stun_server;
	dp->stun_to = dp->stun_server;
	dp->stun_seen = atomic_load(&dp->stun_gen);
	pthread_mutex_unlock(&dp->lock);
	dp->stun_sent_ms = dp->now_ms;
	dp->stun_waiting = has;
	if (!has)
		return;
	if (b->n == b->cap)
		dataplane__udp_send_batch(dp, b);
	w = &b->pkt[b->n++];
	randombytes_buf(dp->stun_txid, sizeof(dp->stun_txid));
	stun_request(dp->stun_txid, w->buf);
	w->off = 0;
	w->len = STUN_REQUEST_LEN;
	w->peer = NULL;
	w->addr = dp->stun_to;
}

void dataplane_set_stun(struct dataplane *dp, const struct sockaddr_storage *server)
{
	pthread_mutex_lock(&dp->lock);
	dp->has_stun_server = server != NULL;
	if (server)
		dp->stun_server = *server;
	dp->has_stun_addr = false;
	atomic_fetch_add(&dp->stun_gen, 1);
	pthread_mutex_unlock(&dp->lock);
}

int dataplane_stun_addr(struct dataplane *dp, struct sockaddr_storage *out)
{
	int ret = -ENOENT;

	pthread_mutex_lock(&dp->lock);
	if (dp->has_stun_addr) {
		*out = dp->stun_addr;
		ret = 0;
	}
	pthread_mutex_unlock(&dp->lock);
	return ret;
}

bool dataplane__magic_rx(struct dataplane *dp, const struct wg_packet *w, uint64_t now_ns)
{
	const uint8_t *p = w->buf + w->off;
	struct disco_addr src;

	dp->now_ms = now_ns / DP_NS_PER_MS;
	if (disco_addr_from_sockaddr((const struct sockaddr *)&w->addr, &src) < 0)
		return false;
	switch (disco_classify(p, w->len)) {
	case DISCO_KIND_STUN:
		stun_rx(dp, p, w->len, &src);
		return true;
	case DISCO_KIND_DISCO:
		disco_rx(dp, p, w->len, &src, NULL, now_ns);
		return true;
	case DISCO_KIND_WIREGUARD:
	default:
		break;
	}
	if (wg_source_ok(dp, &src))
		return false;
	dp->st.drops[DATAPLANE_DROP_WG_SOURCE]++;
	return true;
}

/* ---- DERP ---------------------------------------------------------------- */

void dataplane_set_derp(struct dataplane *dp, struct chan *c)
{
	dp->derp = c;
	chan_set_wake_engine(c, dataplane__wake, dp);
}

bool dataplane__derp_divert(struct dataplane *dp, struct wg_packet *w)
{
	struct disco_addr to;

	if (w->addr.ss_family != AF_INET ||
	    disco_addr_from_sockaddr((const struct sockaddr *)&w->addr, &to) < 0 ||
	    !disco_addr_is_derp(&to))
		return false;
	/* A cookie reply has no peer: it cannot go through DERP. */
	if (!dp->derp || !w->peer ||
	    chan_send_push(dp->derp, wg_peer_public_key(w->peer), to.port, w->buf + w->off,
			   w->len) < 0)
		dp->st.drops[DATAPLANE_DROP_UDP_SEND]++;
	w->addr.ss_family = AF_UNSPEC;
	return true;
}

int dataplane__derp_rx(struct dataplane *dp, uint64_t now_ns)
{
	struct wg_batch *b = &dp->udp_in;
	const struct chan_pkt *pk;
	int ret = 0;

	if (!dp->derp)
		return 0;
	dp->now_ms = now_ns / DP_NS_PER_MS;
	while (ret == 0 && (pk = chan_recv_peek(dp->derp))) {
		struct disco_addr src;

		disco_addr_derp(pk->region, &src);
		if (disco_is_claimed(pk->data, pk->len)) {
			disco_rx(dp, pk->data, pk->len, &src, pk->key, now_ns);
		} else if (mpeer_find(dp, pk->key) || (dp->cur && dp->cur->any_without_disco)) {
			/* WireGuard from a peer the DERP server vouches for. */
			struct wg_packet *w = &b->pkt[b->n++];

			memcpy(w->buf, pk->data, pk->len < w->cap ? pk->len : w->cap);
			w->off = 0;
			w->len = pk->len < w->cap ? pk->len : w->cap;
			memset(&w->addr, 0, sizeof(w->addr));
			disco_addr_to_sockaddr(&src, (struct sockaddr *)&w->addr, sizeof(w->addr));
			dp->st.udp_in_dgrams++;
		} else {
			dp->st.drops[DATAPLANE_DROP_WG_SOURCE]++;
		}
		chan_recv_done(dp->derp);
		if (b->n == b->cap)
			ret = dataplane__peers_deliver(dp, now_ns);
	}
	if (ret == 0 && b->n)
		ret = dataplane__peers_deliver(dp, now_ns);
	return ret;
}

/* ---- timers -------------------------------------------------------------- */

void dataplane__magic_tick(struct dataplane *dp, uint64_t now_ns)
{
	uint64_t next = UINT64_MAX;

	dp->now_ms = now_ns / DP_NS_PER_MS;
	stun_tick(dp);
	if (dp->path_deadline > dp->now_ms)
		return;
	for (size_t i = 0; i < dp->n_mpeers; i++) {
		struct dp_magic_peer *m = dp->mpeers[i];
		uint64_t d = path_next_deadline(&m->path);

		if (d <= dp->now_ms) {
			struct path_out out;

			path_tick(&m->path, dp->now_ms, &out);
			actions_run(dp, m, &out);
			d = path_next_deadline(&m->path);
		}
		if (d < next)
			next = d;
	}
	dp->path_deadline = next;
}

/* ---- the per-peer report ------------------------------------------------- */

/* Where peer i of cfg sends now: what path_endpoint() would answer, without
 * its side effects (no pings start). */
static void peer_path(const struct dataplane *dp, const struct dataplane_config *cfg, size_t i,
		      struct dataplane_peer_info *info)
{
	const struct wg_peer_config *pc = &cfg->peers[i];
	const struct dp_magic_peer *m = mpeer_find(dp, pc->public_key);
	struct path_route r;
	struct disco_addr to;

	info->path = DATAPLANE_PATH_NONE;
	if (!m) {
		/* wg_path_first: the first configured endpoint. */
		if (pc->n_endpoints &&
		    disco_addr_from_sockaddr((const struct sockaddr *)&pc->endpoints[0],
					     &info->direct) == 0)
			info->path = DATAPLANE_PATH_DIRECT;
		return;
	}
	path_route(&m->path, dp->now_ms, &r);
	if (!route_to(dp, &r, &to))
		return;
	if (disco_addr_is_derp(&to)) {
		info->path = DATAPLANE_PATH_DERP;
		info->derp_region = to.port;
	} else {
		info->path = DATAPLANE_PATH_DIRECT;
		info->direct = to;
	}
}

size_t dataplane__peers_gather(const struct dataplane *dp, uint64_t now_ns,
			       struct dataplane_peer_info *out, size_t cap)
{
	const struct dataplane_config *cfg = dp->cur;
	size_t n = 0;

	for (size_t i = 0; cfg && i < cfg->n_peers && n < cap; i++) {
		struct dataplane_peer_info *info = &out[n++];
		struct wg_peer_status st;

		memset(info, 0, sizeof(*info));
		memcpy(info->key, cfg->peers[i].public_key, WG_KEY_LEN);
		peer_path(dp, cfg, i, info);
		/* dp->cur's peers are the device's (config_apply). */
		if (wg_device_peer_status(dp->dev, info->key, now_ns, &st) == 0) {
			info->last_handshake_ns = st.last_handshake_ns;
			info->rx_bytes = st.rx_bytes;
			info->tx_bytes = st.tx_bytes;
		}
	}
	return n;
}

/* ---- lifecycle ----------------------------------------------------------- */

void dataplane__magic_init(struct dataplane *dp)
{
	dp->disco_bufs = xcalloc(DP_DISCO_SLOTS, DP_DISCO_BUF_LEN);
	dp->disco_out.pkt = dp->disco_slots;
	dp->disco_out.n = 0;
	dp->disco_out.cap = DP_DISCO_SLOTS;
	for (size_t i = 0; i < DP_DISCO_SLOTS; i++) {
		dp->disco_slots[i].buf = dp->disco_bufs + i * DP_DISCO_BUF_LEN;
		dp->disco_slots[i].cap = DP_DISCO_BUF_LEN;
	}
}

void dataplane__magic_free(struct dataplane *dp)
{
	for (size_t i = 0; i < dp->n_mpeers; i++)
		mpeer_free(dp->mpeers[i]);
	free(dp->mpeers);
	dp->mpeers = NULL;
	dp->n_mpeers = 0;
	free(dp->disco_bufs);
	dp->disco_bufs = NULL;
}
