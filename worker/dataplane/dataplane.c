/* The worker's data-plane engine (see dataplane.h for the shape and the
 * configuration hand-over). */
#include "dataplane.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "allowedips.h"
#include "log.h"
#include "mem.h"
#include "netmap.h"
#include "packet.h"
#include "pktbuf.h"

_Static_assert((int)PKTBUF_HEADROOM >= (int)WG_DEVICE_HEADROOM,
	       "TUN reads leave room for the header");
_Static_assert((int)PKTBUF_TAILROOM >= (int)WG_DEVICE_TAILROOM, "TUN reads leave room for the tag");

enum dataplane_internal {
	/* One packet buffer: a datagram from a peer whose MTU is up to 1488
	 * (Tailscale's is 1280, wireguard-go's default 1420) with the
	 * WireGuard head- and tailroom. 1536 rather than PKTBUF_SIZE: 132
	 * buffers per batch stage make this a worker's largest allocation. */
	DP_BUF_LEN = 1536,
	DP_LOCAL_SLOTS = 16, /* TSMP answers per UDP batch */
	DP_MAX_PEERS = NETMAP_MAX_PEERS,
	DP_MAX_REKEYS = 8,	/* rekey requests waiting for a wakeup */
	DP_SEND_WAIT_MS = 100,	/* how long a full socket may hold a batch */
	DP_TSMP_PING_LEN = 9,	/* 'p' + 8 data bytes */
	DP_TSMP_DISCO_LEN = 33, /* 'a' + a disco public key */
	DP_IP_TTL = 64,
	DP_TAG_TUN = 0,
	DP_TAG_UDP = 1, /* + socket index */
	DP_TAG_EVENT = 8,
	DP_TAG_TIMER = 9,
};

struct dataplane_config {
	struct wg_peer_config *peers;
	size_t n_peers;
	struct ip_prefix *prefixes;
	struct sockaddr_storage *endpoints;
	struct filter *filter;
	/* Jailed peers (Node.IsJailed) may not open flows to us: packets from
	 * them meet `jailed`, a shields-up filter with the same local prefixes
	 * and state, instead of `filter`. When any peer is jailed, jailed_src
	 * maps every peer's AllowedIPs to &jailed_yes or &jailed_no: the
	 * longest match of a delivered packet's source is the peer that sent
	 * it (WireGuard checked exactly that), so overlapping prefixes of a
	 * jailed and a free peer are told apart. NULL: none jailed. */
	struct allowedips *jailed_src;
	struct filter *jailed;
	struct dataplane_config *retired_next;
};

struct disco_entry {
	uint8_t node[WG_KEY_LEN];
	uint8_t disco[WG_KEY_LEN];
};

struct dataplane {
	int tun_fd;
	int udp_fds[DATAPLANE_MAX_UDP];
	int udp_family[DATAPLANE_MAX_UDP];
	size_t n_udp;
	struct tunio *tio;
	struct udpio *uio[DATAPLANE_MAX_UDP];
	struct wg_device *dev;
	int ep, evfd, tfd;
	uint64_t tick_ns, last_timers;
	struct filter_state *fs;
	struct filter *deny_all;

	/* Configuration hand-over. cur is the engine's alone. */
	struct dataplane_config *cur;
	_Atomic(struct dataplane_config *) pending;
	_Atomic(struct dataplane_config *) retired;
	atomic_bool stop;
	pthread_t thread;
	bool started;

	/* Batches: WireGuard's view (slots) and the I/O view (pb), rebuilt
	 * from the slots before every read or write. */
	uint8_t *bufs;
	struct wg_packet slots[4][DATAPLANE_BATCH];
	struct wg_packet local_slots[DP_LOCAL_SLOTS];
	struct wg_batch tun_in, udp_in, tun_out, udp_out, local;
	struct pktbuf_batch pb;

	struct dataplane_stats st; /* the engine's own copy */

	/* Guarded by lock: the published counters, disco keys, rekeys. */
	pthread_mutex_t lock;
	struct dataplane_stats pub;
	struct disco_entry disco[DATAPLANE_DISCO_MAX];
	size_t n_disco, disco_next;
	uint8_t rekeys[DP_MAX_REKEYS][WG_KEY_LEN];
	size_t n_rekeys;
	atomic_bool rekey_pending;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * WG_NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

static socklen_t sockaddr_len(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return sizeof(struct sockaddr_in);
	if (ss->ss_family == AF_INET6)
		return sizeof(struct sockaddr_in6);
	return 0;
}

/* ---- configurations ------------------------------------------------------ */

void dataplane_config_free(struct dataplane_config *cfg)
{
	if (!cfg)
		return;
	filter_free(cfg->filter);
	filter_free(cfg->jailed);
	if (cfg->jailed_src) {
		allowedips_destroy(cfg->jailed_src);
		free(cfg->jailed_src);
	}
	free(cfg->peers);
	free(cfg->prefixes);
	free(cfg->endpoints);
	free(cfg);
}

size_t dataplane_config_peer_count(const struct dataplane_config *cfg)
{
	return cfg ? cfg->n_peers : 0;
}

static const char jailed_yes, jailed_no;

/* Every peer's AllowedIPs marked jailed or not, and the shields-up filter
 * (upstream's jailedFilter), when any peer is jailed. */
static int jailed_build(struct dataplane_config *cfg, const struct dataplane_peer *peers,
			size_t n_peers, const struct filter_config *fc, struct filter_state *fs,
			const char **why)
{
	struct filter_config shields = *fc;
	bool any = false;
	int ret;

	for (size_t i = 0; i < n_peers; i++)
		any |= peers[i].jailed;
	if (!any)
		return 0;
	cfg->jailed_src = xcalloc(1, sizeof(*cfg->jailed_src));
	allowedips_init(cfg->jailed_src);
	for (size_t i = 0; i < n_peers; i++) {
		for (size_t a = 0; a < peers[i].n_allowed_ips; a++) {
			ret = allowedips_insert(
				cfg->jailed_src, &peers[i].allowed_ips[a],
				(void *)(peers[i].jailed ? &jailed_yes : &jailed_no));
			if (ret < 0) {
				*why = "a peer's AllowedIPs";
				return ret;
			}
		}
	}
	shields.shields_up = true;
	return filter_new(&shields, fs, &cfg->jailed, why);
}

/* The filter for an inbound packet: the jailed one when a jailed peer sent
 * it. */
static const struct filter *config_filter_in(const struct dataplane_config *cfg,
					     const struct packet *p)
{
	if (cfg->jailed_src && (p->version == 4 || p->version == 6) &&
	    allowedips_lookup(cfg->jailed_src, p->version == 4 ? AF_INET : AF_INET6, p->src) ==
		    &jailed_yes)
		return cfg->jailed;
	return cfg->filter;
}

static int config_build(const struct dataplane_peer *peers, size_t n_peers,
			const struct filter_rules *rules, const struct ip_prefix *local,
			size_t n_local, const struct filter_cap_holder *caps, size_t n_caps,
			struct filter_state *fs, struct dataplane_config **out, const char **why)
{
	struct filter_config fc = {
		.rules = rules, .local = local, .n_local = n_local, .caps = caps, .n_caps = n_caps};
	struct dataplane_config *cfg;
	size_t n_pfx = 0, at = 0;
	int ret;

	*out = NULL;
	if (n_peers > DP_MAX_PEERS) {
		*why = "too many peers";
		return -EINVAL;
	}
	for (size_t i = 0; i < n_peers; i++) {
		if (peers[i].n_allowed_ips > NETMAP_MAX_ALLOWED_IPS) {
			*why = "too many AllowedIPs for one peer";
			return -EINVAL;
		}
		n_pfx += peers[i].n_allowed_ips;
		if (peers[i].has_endpoint && !sockaddr_len(&peers[i].endpoint)) {
			*why = "peer endpoint is neither IPv4 nor IPv6";
			return -EINVAL;
		}
	}
	cfg = xcalloc(1, sizeof(*cfg));
	cfg->peers = xcalloc(n_peers ? n_peers : 1, sizeof(*cfg->peers));
	cfg->prefixes = xcalloc(n_pfx ? n_pfx : 1, sizeof(*cfg->prefixes));
	cfg->endpoints = xcalloc(n_peers ? n_peers : 1, sizeof(*cfg->endpoints));
	for (size_t i = 0; i < n_peers; i++) {
		struct wg_peer_config *pc = &cfg->peers[i];

		memcpy(pc->public_key, peers[i].key, WG_KEY_LEN);
		if (peers[i].n_allowed_ips)
			memcpy(&cfg->prefixes[at], peers[i].allowed_ips,
			       peers[i].n_allowed_ips * sizeof(struct ip_prefix));
		pc->allowed_ips = &cfg->prefixes[at];
		pc->n_allowed_ips = peers[i].n_allowed_ips;
		at += peers[i].n_allowed_ips;
		if (peers[i].has_endpoint) {
			cfg->endpoints[i] = peers[i].endpoint;
			pc->endpoints = &cfg->endpoints[i];
			pc->n_endpoints = 1;
		}
	}
	cfg->n_peers = n_peers;
	ret = filter_new(&fc, fs, &cfg->filter, why);
	if (ret < 0) {
		dataplane_config_free(cfg);
		return ret;
	}
	ret = jailed_build(cfg, peers, n_peers, &fc, fs, why);
	if (ret < 0) {
		dataplane_config_free(cfg);
		return ret;
	}
	*out = cfg;
	return 0;
}

/* Parses a JSON array of FilterRule; NULL json gives NULL rules. */
static int rules_parse(const char *json, struct filter_rules **out, const char **why)
{
	const char *warn = NULL;
	json_error_t jerr;
	json_t *j;
	int ret;

	*out = NULL;
	if (!json)
		return 0;
	j = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);
	if (!j) {
		*why = "packet filter rules are not valid JSON";
		return -EBADMSG;
	}
	ret = filter_rules_from_json(j, out, &warn, why);
	json_decref(j);
	if (ret == 0 && warn)
		log_warn("packet filter: %s", warn);
	return ret;
}

int dataplane_config_new(const struct dataplane_peer *peers, size_t n_peers,
			 const char *filter_json, const struct ip_prefix *local, size_t n_local,
			 const struct filter_cap_holder *caps, size_t n_caps,
			 struct filter_state *fs, struct dataplane_config **out, const char **why)
{
	struct filter_rules *rules = NULL;
	int ret;

	*out = NULL;
	ret = rules_parse(filter_json, &rules, why);
	if (ret < 0)
		return ret;
	ret = config_build(peers, n_peers, rules, local, n_local, caps, n_caps, fs, out, why);
	filter_rules_free(rules);
	return ret;
}

static void endpoint_to_sockaddr(const struct netmap_endpoint *e, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (e->family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;

		a->sin_family = AF_INET;
		a->sin_port = htons(e->port);
		memcpy(&a->sin_addr, e->addr, 4);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons(e->port);
		memcpy(&a->sin6_addr, e->addr, 16);
	}
}

static bool peer_usable(const struct netmap *nm, const struct netmap_node *n, int64_t now)
{
	if (!n->has_key || netmap_node_expired(nm, n, now))
		return false;
	return !(nm->self->has_key && sodium_memcmp(n->key, nm->self->key, KEY_LEN) == 0);
}

/* The `cap:` holders among the peers, for the capabilities rules use. */
static struct filter_cap_holder *caps_collect(const struct netmap *nm,
					      const struct filter_rules *rules, size_t *n_out)
{
	struct filter_cap_holder *caps = NULL;
	size_t n = 0;

	*n_out = 0;
	if (!rules)
		return NULL;
	for (int pass = 0; pass < 2; pass++) {
		n = 0;
		for (size_t i = 0; i < nm->n_peers; i++) {
			const struct netmap_node *p = nm->peers[i];

			for (size_t c = 0; c < p->n_caps; c++) {
				if (!filter_rules_uses_cap(rules, p->caps[c]))
					continue;
				for (size_t a = 0; a < p->n_addresses; a++, n++) {
					if (caps)
						caps[n] = (struct filter_cap_holder){
							.cap = p->caps[c], .addr = p->addresses[a]};
				}
			}
		}
		if (pass == 0) {
			if (!n)
				return NULL;
			caps = xcalloc(n, sizeof(*caps));
		}
	}
	*n_out = n;
	return caps;
}

int dataplane_config_from_netmap(const struct netmap *nm, int64_t now, struct filter_state *fs,
				 struct dataplane_config **out, const char **why)
{
	struct filter_rules *rules = NULL;
	struct filter_cap_holder *caps = NULL;
	struct dataplane_peer *peers = NULL;
	size_t n = 0, n_caps = 0;
	int ret;

	*out = NULL;
	if (!nm || !nm->self) {
		*why = "netmap has no self node";
		return -EINVAL;
	}
	ret = rules_parse(nm->filters->rules_json, &rules, why);
	if (ret < 0)
		return ret;
	caps = caps_collect(nm, rules, &n_caps);
	peers = xcalloc(nm->n_peers ? nm->n_peers : 1, sizeof(*peers));
	for (size_t i = 0; i < nm->n_peers; i++) {
		const struct netmap_node *p = nm->peers[i];
		struct dataplane_peer *dp = &peers[n];

		if (!peer_usable(nm, p, now))
			continue;
		memcpy(dp->key, p->key, WG_KEY_LEN);
		dp->allowed_ips = p->allowed_ips;
		dp->n_allowed_ips = p->n_allowed_ips;
		dp->jailed = p->is_jailed;
		if (p->n_endpoints) {
			endpoint_to_sockaddr(&p->endpoints[0], &dp->endpoint);
			dp->has_endpoint = true;
		}
		n++;
	}
	ret = config_build(peers, n, rules, nm->self->addresses, nm->self->n_addresses, caps,
			   n_caps, fs, out, why);
	free(peers);
	free(caps);
	filter_rules_free(rules);
	return ret;
}

/* ---- the hand-over ------------------------------------------------------- */

static void retire(struct dataplane *dp, struct dataplane_config *cfg)
{
	struct dataplane_config *head = atomic_load(&dp->retired);

	do
		cfg->retired_next = head;
	while (!atomic_compare_exchange_weak(&dp->retired, &head, cfg));
}

void dataplane_reclaim(struct dataplane *dp)
{
	struct dataplane_config *c = atomic_exchange(&dp->retired, NULL);

	while (c) {
		struct dataplane_config *next = c->retired_next;

		dataplane_config_free(c);
		c = next;
	}
}

static void wake(struct dataplane *dp)
{
	uint64_t one = 1;

	(void)!write(dp->evfd, &one, sizeof(one));
}

void dataplane_set_config(struct dataplane *dp, struct dataplane_config *cfg)
{
	/* A configuration still pending was never seen by the engine. */
	dataplane_config_free(atomic_exchange(&dp->pending, cfg));
	wake(dp);
	dataplane_reclaim(dp);
}

static void config_apply(struct dataplane *dp, uint64_t now)
{
	struct dataplane_config *cfg = atomic_exchange(&dp->pending, NULL);
	const char *why = "";

	if (!cfg)
		return;
	if (wg_device_set_peers(dp->dev, cfg->peers, cfg->n_peers, now, &why) < 0) {
		log_warn("configuration refused: %s", why);
		dp->st.configs_refused++;
		retire(dp, cfg);
		return;
	}
	if (dp->cur)
		retire(dp, dp->cur);
	dp->cur = cfg;
	dp->st.configs_applied++;
}

static const struct filter *current_filter(const struct dataplane *dp)
{
	return dp->cur ? dp->cur->filter : dp->deny_all;
}

/* The filter for a packet WireGuard delivered: deny-all before the first
 * configuration, else the configuration's for its sender. */
static const struct filter *filter_for_in(const struct dataplane *dp, const struct packet *p)
{
	return dp->cur ? config_filter_in(dp->cur, p) : dp->deny_all;
}

/* Points pb's slots at b's buffers (packets start at off), all empty. */
static void pb_reset(struct pktbuf_batch *pb, const struct wg_batch *b, uint32_t off)
{
	pb->n = 0;
	pb->cap = DATAPLANE_BATCH;
	for (size_t i = 0; i < DATAPLANE_BATCH; i++) {
		pb->pkt[i].head = b->pkt[i].buf;
		pb->pkt[i].size = (uint32_t)b->pkt[i].cap;
		pb->pkt[i].off = off;
		pb->pkt[i].len = 0;
		pb->pkt[i].addr_len = 0;
	}
}

/* ---- counters, disco keys, rekeys ---------------------------------------- */

static unsigned offloads_of(const struct dataplane *dp);

static void stats_publish(struct dataplane *dp)
{
	const struct tunio_stats *ts = tunio_stats(dp->tio);

	dp->st.tun_read_calls = ts->read_calls;
	dp->st.tun_write_calls = ts->write_calls;
	dp->st.udp_send_calls = 0;
	dp->st.udp_recv_calls = 0;
	/* UDP GSO switches itself off for good when the kernel refuses it. */
	dp->st.offloads = offloads_of(dp);
	for (size_t k = 0; k < dp->n_udp; k++) {
		const struct udpio_stats *us = udpio_stats(dp->uio[k]);

		dp->st.udp_send_calls += us->send_calls;
		dp->st.udp_recv_calls += us->recv_calls;
	}
	dp->st.wg = *wg_device_stats(dp->dev);
	pthread_mutex_lock(&dp->lock);
	dp->pub = dp->st;
	pthread_mutex_unlock(&dp->lock);
}

void dataplane_stats(const struct dataplane *dp, struct dataplane_stats *out)
{
	struct dataplane *m = (struct dataplane *)dp;

	pthread_mutex_lock(&m->lock);
	*out = m->pub;
	pthread_mutex_unlock(&m->lock);
}

int dataplane_disco_key(struct dataplane *dp, const uint8_t node_key[static WG_KEY_LEN],
			uint8_t disco[static WG_KEY_LEN])
{
	int ret = -ENOENT;

	pthread_mutex_lock(&dp->lock);
	for (size_t i = 0; i < dp->n_disco; i++) {
		if (memcmp(dp->disco[i].node, node_key, WG_KEY_LEN) == 0) {
			memcpy(disco, dp->disco[i].disco, WG_KEY_LEN);
			ret = 0;
			break;
		}
	}
	pthread_mutex_unlock(&dp->lock);
	return ret;
}

static void disco_store(struct dataplane *dp, const uint8_t *node, const uint8_t *disco)
{
	size_t i;

	pthread_mutex_lock(&dp->lock);
	for (i = 0; i < dp->n_disco; i++) {
		if (memcmp(dp->disco[i].node, node, WG_KEY_LEN) == 0)
			break;
	}
	if (i == dp->n_disco) {
		if (dp->n_disco < DATAPLANE_DISCO_MAX) {
			dp->n_disco++;
		} else {
			i = dp->disco_next;
			dp->disco_next = (dp->disco_next + 1) % DATAPLANE_DISCO_MAX;
		}
	}
	memcpy(dp->disco[i].node, node, WG_KEY_LEN);
	memcpy(dp->disco[i].disco, disco, WG_KEY_LEN);
	pthread_mutex_unlock(&dp->lock);
}

int dataplane_rekey(struct dataplane *dp, const uint8_t key[static WG_KEY_LEN])
{
	pthread_mutex_lock(&dp->lock);
	if (dp->n_rekeys < DP_MAX_REKEYS)
		memcpy(dp->rekeys[dp->n_rekeys++], key, WG_KEY_LEN);
	atomic_store(&dp->rekey_pending, true);
	pthread_mutex_unlock(&dp->lock);
	wake(dp);
	return 0;
}

/* ---- UDP out ------------------------------------------------------------- */

static size_t socket_for(const struct dataplane *dp, int family)
{
	for (size_t k = 0; k < dp->n_udp; k++) {
		if (dp->udp_family[k] == family)
			return k;
	}
	return 0;
}

/* Sends dp->pb on socket k; waits up to DP_SEND_WAIT_MS when the socket
 * buffer is full, then drops what is left. */
static void udp_send_view(struct dataplane *dp, size_t k)
{
	struct pktbuf_batch *pb = &dp->pb;

	while (pb->n) {
		int r = udpio_send(dp->uio[k], pb);

		if (r > 0) {
			dp->st.udp_out_dgrams += (unsigned)r;
			memmove(&pb->pkt[0], &pb->pkt[r],
				(pb->n - (unsigned)r) * sizeof(pb->pkt[0]));
			pb->n -= (unsigned)r;
			continue;
		}
		if (r == -EAGAIN) {
			struct pollfd pfd = {.fd = dp->udp_fds[k], .events = POLLOUT};

			if (poll(&pfd, 1, DP_SEND_WAIT_MS) > 0)
				continue;
		}
		dp->st.drops[DATAPLANE_DROP_UDP_SEND] += pb->n;
		pb->n = 0;
	}
}

static void udp_flush(struct dataplane *dp)
{
	struct wg_batch *b = &dp->udp_out;

	for (size_t k = 0; k < dp->n_udp && b->n; k++) {
		struct pktbuf_batch *pb = &dp->pb;

		pb->n = 0;
		pb->cap = DATAPLANE_BATCH;
		for (size_t i = 0; i < b->n; i++) {
			const struct wg_packet *w = &b->pkt[i];
			struct pktbuf *p;
			socklen_t alen = sockaddr_len(&w->addr);

			if (dp->n_udp > 1 && socket_for(dp, w->addr.ss_family) != k)
				continue;
			p = &pb->pkt[pb->n++];
			p->head = w->buf;
			p->size = (uint32_t)w->cap;
			p->off = (uint32_t)w->off;
			p->len = (uint32_t)w->len;
			p->addr_len = alen;
			memcpy(&p->addr, &w->addr, alen);
		}
		udp_send_view(dp, k);
	}
	b->n = 0;
}

/* ---- helpers on batches -------------------------------------------------- */

/* Moves the packet of slot i to slot *kept (swapping buffers, so every slot
 * keeps one) and advances *kept. */
static void batch_keep(struct wg_batch *b, size_t i, size_t *kept)
{
	if (i != *kept) {
		struct wg_packet *a = &b->pkt[*kept], *c = &b->pkt[i];
		uint8_t *buf = a->buf;
		size_t cap = a->cap;

		a->buf = c->buf;
		a->cap = c->cap;
		a->off = c->off;
		a->len = c->len;
		a->peer = c->peer;
		c->buf = buf;
		c->cap = cap;
	}
	(*kept)++;
}

static bool is_quad100(const struct packet *p)
{
	if (p->version == 4)
		return memcmp(p->dst, ip_quad100_v4.addr, 4) == 0;
	if (p->version == 6)
		return memcmp(p->dst, ip_quad100_v6.addr, 16) == 0;
	return false;
}

/* ---- TUN -> UDP ---------------------------------------------------------- */

/* One batch from the TUN. *more: the batch filled up (more may wait).
 * Returns 0 or a fatal -errno of the TUN. */
static int tun_step(struct dataplane *dp, uint64_t now, bool *more)
{
	struct wg_batch *b = &dp->tun_in;
	struct pktbuf_batch *pb = &dp->pb;
	const struct filter *f = current_filter(dp);
	size_t kept = 0;
	int r;

	*more = false;
	pb_reset(pb, b, PKTBUF_HEADROOM);
	r = tunio_read(dp->tio, pb);
	if (r == -EAGAIN || r == -EINTR)
		return 0;
	if (r < 0)
		return r;
	*more = pb->n == pb->cap;
	for (size_t i = 0; i < pb->n; i++) {
		struct wg_packet *w = &b->pkt[i];
		enum filter_reason reason = FILTER_REASON_NONE;
		const char *why = NULL;
		struct packet p;

		w->off = pb->pkt[i].off;
		w->len = pb->pkt[i].len;
		dp->st.tun_in_pkts++;
		dp->st.tun_in_bytes += w->len;
		(void)packet_parse(&p, w->buf + w->off, w->len, &why);
		if (filter_run_out(f, &p, &reason) != FILTER_ACCEPT) {
			dp->st.filter_drop_out[reason]++;
			continue;
		}
		if (is_quad100(&p)) {
			dp->st.drops[DATAPLANE_DROP_QUAD100]++;
			continue;
		}
		if (p.proto == PACKET_PROTO_TSMP) {
			dp->st.drops[DATAPLANE_DROP_TSMP_OUT]++;
			continue;
		}
		batch_keep(b, i, &kept);
	}
	b->n = kept;
	if (b->n) {
		wg_device_tun_rx(dp->dev, b, &dp->udp_out, now);
		udp_flush(dp);
	}
	b->n = 0;
	return 0;
}

/* ---- TSMP ---------------------------------------------------------------- */

static uint16_t ip4_checksum(const uint8_t *h)
{
	uint32_t sum = 0;

	for (size_t i = 0; i < PACKET_IP4_HDR_LEN; i += 2)
		sum += (uint32_t)(h[i] << 8 | h[i + 1]);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* Writes a TSMP pong for ping p (body at ping) into the next local slot. */
static void tsmp_pong(struct dataplane *dp, const struct packet *p, const uint8_t *ping)
{
	struct wg_packet *w;
	uint8_t *h;
	size_t hl = p->version == 4 ? PACKET_IP4_HDR_LEN : PACKET_IP6_HDR_LEN;
	size_t total = hl + DP_TSMP_PING_LEN;

	if (dp->local.n == dp->local.cap) {
		dp->st.drops[DATAPLANE_DROP_TSMP_IN]++;
		return;
	}
	w = &dp->local.pkt[dp->local.n++];
	w->off = WG_DEVICE_HEADROOM;
	w->len = total;
	w->peer = NULL;
	h = w->buf + w->off;
	memset(h, 0, hl);
	if (p->version == 4) {
		uint16_t c;

		h[0] = 0x45;
		h[2] = (uint8_t)(total >> 8);
		h[3] = (uint8_t)total;
		h[8] = DP_IP_TTL;
		h[9] = PACKET_PROTO_TSMP;
		memcpy(h + 12, p->dst, 4); /* from the pinged address */
		memcpy(h + 16, p->src, 4);
		c = ip4_checksum(h);
		h[10] = (uint8_t)(c >> 8);
		h[11] = (uint8_t)c;
	} else {
		h[0] = 0x60;
		h[5] = DP_TSMP_PING_LEN;
		h[6] = PACKET_PROTO_TSMP;
		h[7] = DP_IP_TTL;
		memcpy(h + 8, p->dst, 16);
		memcpy(h + 24, p->src, 16);
	}
	h[hl] = 'o';
	memcpy(h + hl + 1, ping + 1, DP_TSMP_PING_LEN - 1);
	dp->st.tsmp_pings_answered++;
}

/* A TSMP message from a peer: answered or stored here, never written to the
 * TUN (docs/tailscale-protocol.md §8.4). */
static void tsmp_handle(struct dataplane *dp, const struct wg_packet *w, const struct packet *p)
{
	const uint8_t *ip = w->buf + w->off;
	size_t end = p->len < w->len ? p->len : w->len;
	const uint8_t *body;
	size_t n;

	if (p->l4_off >= end) {
		dp->st.drops[DATAPLANE_DROP_TSMP_IN]++;
		return;
	}
	body = ip + p->l4_off;
	n = end - p->l4_off;
	switch (body[0]) {
	case 'p':
		if (n >= DP_TSMP_PING_LEN) {
			tsmp_pong(dp, p, body);
			return;
		}
		break;
	case 'a':
		if (n >= DP_TSMP_DISCO_LEN && w->peer) {
			disco_store(dp, wg_peer_public_key(w->peer), body + 1);
			dp->st.tsmp_disco_keys++;
			return;
		}
		break;
	case 'o': /* pong: we send no pings yet */
	case '!': /* reject: informational */
		return;
	default:
		break;
	}
	dp->st.drops[DATAPLANE_DROP_TSMP_IN]++;
}

/* ---- UDP -> TUN ---------------------------------------------------------- */

static int udp_step(struct dataplane *dp, size_t k, uint64_t now, bool *more)
{
	struct wg_batch *b = &dp->udp_in, *t = &dp->tun_out;
	struct pktbuf_batch *pb = &dp->pb;
	size_t kept = 0;
	int r;

	*more = false;
	pb_reset(pb, b, 0);
	r = udpio_recv(dp->uio[k], pb);
	if (r < 0) {
		if (r != -EAGAIN && r != -EINTR)
			log_warn_r(r, "UDP receive");
		return 0;
	}
	*more = pb->n == pb->cap;
	for (size_t i = 0; i < pb->n; i++) {
		struct wg_packet *w = &b->pkt[i];
		socklen_t alen = pb->pkt[i].addr_len;

		w->off = pb->pkt[i].off;
		w->len = pb->pkt[i].len;
		if (alen > sizeof(w->addr))
			alen = sizeof(w->addr);
		memcpy(&w->addr, &pb->pkt[i].addr, alen);
	}
	b->n = pb->n;
	dp->st.udp_in_dgrams += b->n;
	wg_device_udp_rx(dp->dev, b, t, &dp->udp_out, now);
	b->n = 0;

	for (size_t i = 0; i < t->n; i++) {
		struct wg_packet *w = &t->pkt[i];
		enum filter_reason reason = FILTER_REASON_NONE;
		const char *why = NULL;
		struct packet p;

		(void)packet_parse(&p, w->buf + w->off, w->len, &why);
		if (filter_run_in(filter_for_in(dp, &p), &p, &reason) != FILTER_ACCEPT) {
			dp->st.filter_drop_in[reason]++;
			continue;
		}
		if (p.proto == PACKET_PROTO_TSMP) {
			tsmp_handle(dp, w, &p);
			continue;
		}
		batch_keep(t, i, &kept);
	}
	t->n = kept;
	if (t->n) {
		pb->n = 0;
		pb->cap = DATAPLANE_BATCH;
		for (size_t i = 0; i < t->n; i++) {
			struct pktbuf *p = &pb->pkt[pb->n++];

			p->head = t->pkt[i].buf;
			p->size = (uint32_t)t->pkt[i].cap;
			p->off = (uint32_t)t->pkt[i].off;
			p->len = (uint32_t)t->pkt[i].len;
			p->addr_len = 0;
			dp->st.tun_out_bytes += p->len;
		}
		dp->st.tun_out_pkts += t->n;
		r = tunio_write(dp->tio, pb);
		t->n = 0;
		if (r < 0)
			return r;
	}
	if (dp->local.n) {
		udp_flush(dp);
		wg_device_tun_rx(dp->dev, &dp->local, &dp->udp_out, now);
		dp->local.n = 0;
	}
	udp_flush(dp);
	return 0;
}

/* ---- the loop ------------------------------------------------------------ */

static void timers_run(struct dataplane *dp, uint64_t now)
{
	dp->last_timers = now;
	udp_flush(dp);
	wg_device_timers(dp->dev, now, &dp->udp_out);
	udp_flush(dp);
	stats_publish(dp);
}

static void rekeys_run(struct dataplane *dp, uint64_t now)
{
	uint8_t keys[DP_MAX_REKEYS][WG_KEY_LEN];
	size_t n;

	pthread_mutex_lock(&dp->lock);
	n = dp->n_rekeys;
	memcpy(keys, dp->rekeys, n * WG_KEY_LEN);
	dp->n_rekeys = 0;
	atomic_store(&dp->rekey_pending, false);
	pthread_mutex_unlock(&dp->lock);
	for (size_t i = 0; i < n; i++) {
		udp_flush(dp);
		(void)wg_device_initiate(dp->dev, keys[i], now, &dp->udp_out);
		udp_flush(dp);
	}
}

/* Config, rekeys and stop: checked at each wakeup and each round. */
static bool control_poll(struct dataplane *dp, uint64_t now)
{
	if (atomic_load_explicit(&dp->pending, memory_order_relaxed))
		config_apply(dp, now);
	if (atomic_load_explicit(&dp->rekey_pending, memory_order_relaxed))
		rekeys_run(dp, now);
	return atomic_load(&dp->stop);
}

int dataplane_run(struct dataplane *dp)
{
	struct itimerspec its = {
		.it_interval = {.tv_sec = (time_t)(dp->tick_ns / WG_NSEC_PER_SEC),
				.tv_nsec = (long)(dp->tick_ns % WG_NSEC_PER_SEC)},
	};
	int ret = 0;

	its.it_value = its.it_interval;
	dp->st.tid = (int)syscall(SYS_gettid);
	if (timerfd_settime(dp->tfd, 0, &its, NULL) < 0)
		return -errno;
	stats_publish(dp);
	while (!control_poll(dp, mono_ns())) {
		struct epoll_event ev[DATAPLANE_MAX_UDP + 3];
		bool tun_more = false, udp_more[DATAPLANE_MAX_UDP] = {false}, busy;
		bool tick = false;
		uint64_t now;
		int n = epoll_wait(dp->ep, ev, (int)(sizeof(ev) / sizeof(ev[0])), -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			break;
		}
		dp->st.wakeups++;
		for (int i = 0; i < n; i++) {
			uint32_t tag = ev[i].data.u32;
			uint64_t v;

			if (tag == DP_TAG_TUN)
				tun_more = true;
			else if (tag >= DP_TAG_UDP && tag < DP_TAG_UDP + DATAPLANE_MAX_UDP)
				udp_more[tag - DP_TAG_UDP] = true;
			else if (tag == DP_TAG_EVENT)
				(void)!read(dp->evfd, &v, sizeof(v));
			else if (tag == DP_TAG_TIMER && read(dp->tfd, &v, sizeof(v)) > 0)
				tick = true;
		}
		now = mono_ns();
		do {
			if (control_poll(dp, now))
				goto out;
			busy = false;
			if (tun_more) {
				ret = tun_step(dp, now, &tun_more);
				if (ret < 0)
					goto out;
				busy |= tun_more;
			}
			for (size_t k = 0; k < dp->n_udp; k++) {
				if (!udp_more[k])
					continue;
				ret = udp_step(dp, k, now, &udp_more[k]);
				if (ret < 0)
					goto out;
				busy |= udp_more[k];
			}
			now = mono_ns();
			if (now - dp->last_timers >= dp->tick_ns)
				tick = true;
			if (tick) {
				timers_run(dp, now);
				tick = false;
			}
		} while (busy);
		stats_publish(dp);
	}
out:
	if (ret < 0) {
		log_err_r(ret, "data plane stopped");
		dp->st.error = ret;
	}
	stats_publish(dp);
	return ret;
}

static void *thread_main(void *arg)
{
	(void)dataplane_run(arg);
	return NULL;
}

int dataplane_start(struct dataplane *dp)
{
	int ret;

	if (dp->started)
		return -EALREADY;
	atomic_store(&dp->stop, false);
	ret = pthread_create(&dp->thread, NULL, thread_main, dp);
	if (ret)
		return -ret;
	dp->started = true;
	return 0;
}

void dataplane_stop(struct dataplane *dp)
{
	atomic_store(&dp->stop, true);
	wake(dp);
	if (dp->started) {
		pthread_join(dp->thread, NULL);
		dp->started = false;
	}
}

/* ---- creation ------------------------------------------------------------ */

static void batch_init(struct wg_batch *b, struct wg_packet *slots, size_t n, uint8_t *bufs)
{
	b->pkt = slots;
	b->n = 0;
	b->cap = n;
	for (size_t i = 0; i < n; i++) {
		slots[i].buf = bufs + i * DP_BUF_LEN;
		slots[i].cap = DP_BUF_LEN;
	}
}

static int epoll_add(int ep, int fd, uint32_t tag)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = tag};

	return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static int socket_family(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -1;
	return ss.ss_family;
}

static unsigned offloads_of(const struct dataplane *dp)
{
	unsigned t = tunio_offloads(dp->tio), o = 0, u = ~0U;

	if (t & TUNIO_OFFLOAD_VNET_HDR)
		o |= DATAPLANE_OFFLOAD_TUN_VNET;
	if (t & TUNIO_OFFLOAD_TSO)
		o |= DATAPLANE_OFFLOAD_TUN_TSO;
	if (t & TUNIO_OFFLOAD_USO)
		o |= DATAPLANE_OFFLOAD_TUN_USO;
	if (t & TUNIO_OFFLOAD_COALESCE)
		o |= DATAPLANE_OFFLOAD_TUN_COALESCE;
	for (size_t k = 0; k < dp->n_udp; k++)
		u &= udpio_offloads(dp->uio[k]);
	if (u & UDPIO_OFFLOAD_GSO)
		o |= DATAPLANE_OFFLOAD_UDP_GSO;
	if (u & UDPIO_OFFLOAD_GRO)
		o |= DATAPLANE_OFFLOAD_UDP_GRO;
	return o;
}

int dataplane_new(const struct dataplane_params *p, struct dataplane **out, const char **why)
{
	struct filter_config none = {0};
	struct wg_device_config wc;
	struct dataplane *dp;
	int ret;

	*out = NULL;
	if (p->tun_fd < 0 || p->n_udp < 1 || p->n_udp > DATAPLANE_MAX_UDP) {
		*why = "data plane needs a TUN fd and one or two UDP sockets";
		return -EINVAL;
	}
	dp = xcalloc(1, sizeof(*dp));
	dp->tun_fd = p->tun_fd;
	dp->n_udp = p->n_udp;
	dp->ep = dp->evfd = dp->tfd = -1;
	dp->tick_ns = p->tick_ns ? p->tick_ns : DATAPLANE_TICK_NS;
	pthread_mutex_init(&dp->lock, NULL);
	atomic_init(&dp->pending, NULL);
	atomic_init(&dp->retired, NULL);
	for (size_t k = 0; k < p->n_udp; k++) {
		dp->udp_fds[k] = p->udp_fds[k];
		dp->udp_family[k] = socket_family(p->udp_fds[k]);
		if (dp->udp_family[k] != AF_INET && dp->udp_family[k] != AF_INET6) {
			*why = "UDP fd is not an IPv4 or IPv6 socket";
			ret = -EAFNOSUPPORT;
			goto err;
		}
		ret = udpio_new(p->udp_fds[k], &p->udp, &dp->uio[k]);
		if (ret < 0) {
			*why = "cannot set up the UDP socket";
			goto err;
		}
	}
	ret = tunio_new(p->tun_fd, &p->tun, &dp->tio);
	if (ret < 0) {
		*why = "cannot set up the TUN fd";
		goto err;
	}
	wg_device_config_default(&wc);
	memcpy(wc.private_key, p->private_key, WG_KEY_LEN);
	if (p->timers)
		wc.timers = *p->timers;
	wc.mtu = p->mtu;
	ret = wg_device_new(&wc, mono_ns(), &dp->dev, why);
	sodium_memzero(wc.private_key, sizeof(wc.private_key));
	if (ret < 0)
		goto err;
	dp->fs = filter_state_new();
	ret = filter_new(&none, dp->fs, &dp->deny_all, why);
	if (ret < 0)
		goto err;

	dp->bufs = xcalloc(4 * DATAPLANE_BATCH + DP_LOCAL_SLOTS, DP_BUF_LEN);
	batch_init(&dp->tun_in, dp->slots[0], DATAPLANE_BATCH, dp->bufs);
	batch_init(&dp->udp_in, dp->slots[1], DATAPLANE_BATCH,
		   dp->bufs + 1 * DATAPLANE_BATCH * DP_BUF_LEN);
	batch_init(&dp->tun_out, dp->slots[2], DATAPLANE_BATCH,
		   dp->bufs + 2 * DATAPLANE_BATCH * DP_BUF_LEN);
	batch_init(&dp->udp_out, dp->slots[3], DATAPLANE_BATCH,
		   dp->bufs + 3 * DATAPLANE_BATCH * DP_BUF_LEN);
	batch_init(&dp->local, dp->local_slots, DP_LOCAL_SLOTS,
		   dp->bufs + 4 * DATAPLANE_BATCH * DP_BUF_LEN);

	dp->ep = epoll_create1(EPOLL_CLOEXEC);
	dp->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	dp->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (dp->ep < 0 || dp->evfd < 0 || dp->tfd < 0) {
		ret = -errno;
		*why = "cannot create epoll, eventfd or timerfd";
		goto err;
	}
	ret = epoll_add(dp->ep, dp->tun_fd, DP_TAG_TUN);
	for (size_t k = 0; ret == 0 && k < dp->n_udp; k++)
		ret = epoll_add(dp->ep, dp->udp_fds[k], DP_TAG_UDP + (uint32_t)k);
	if (ret == 0)
		ret = epoll_add(dp->ep, dp->evfd, DP_TAG_EVENT);
	if (ret == 0)
		ret = epoll_add(dp->ep, dp->tfd, DP_TAG_TIMER);
	if (ret < 0) {
		*why = "cannot watch the TUN or UDP fds";
		goto err;
	}
	dp->st.offloads = offloads_of(dp);
	dp->pub = dp->st;
	*out = dp;
	return 0;
err:
	dataplane_free(dp);
	return ret;
}

struct filter_state *dataplane_filter_state(struct dataplane *dp)
{
	return dp->fs;
}

void dataplane_free(struct dataplane *dp)
{
	if (!dp)
		return;
	if (dp->evfd >= 0)
		dataplane_stop(dp);
	dataplane_config_free(atomic_exchange(&dp->pending, NULL));
	dataplane_reclaim(dp);
	dataplane_config_free(dp->cur);
	filter_free(dp->deny_all);
	wg_device_free(dp->dev);
	filter_state_free(dp->fs);
	tunio_free(dp->tio);
	for (size_t k = 0; k < DATAPLANE_MAX_UDP; k++)
		udpio_free(dp->uio[k]);
	if (dp->ep >= 0)
		close(dp->ep);
	if (dp->evfd >= 0)
		close(dp->evfd);
	if (dp->tfd >= 0)
		close(dp->tfd);
	free(dp->bufs);
	pthread_mutex_destroy(&dp->lock);
	sodium_memzero(dp->disco, sizeof(dp->disco));
	free(dp);
}
