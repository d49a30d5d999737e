/* The worker's DERP connections, on the control thread's loop
 * (docs/tailscale-protocol.md §6): one to the home region, reported to
 * control as Hostinfo.NetInfo.PreferredDERP, and one to each other region
 * a peer's packets must reach, opened on demand and closed when idle.
 * Packets cross to and from the engine through a struct chan.
 *
 * Home: before any measurement, the first region of the DERP map that may
 * be one. The worker sends the supervisor its map's STUN targets (a
 * DerpMapReport) whenever the map changes, and the supervisor's node-wide
 * netcheck answers with latencies (a NetcheckReport, supervisor/netcheck.h):
 * home then follows the measured best region with upstream's stickiness
 * (magicsock/home.h), and the latencies go to control as
 * NetInfo.DERPLatency. When the home connection stays down for
 * DERP_LINK_HOME_DOWN_MS the next region that may be home takes over. */
#include "worker.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "chan.h"
#include "client.h"
#include "dataplane.h"
#include "derp_conn.h"
#include "home.h"
#include "log.h"
#include "mem.h"
#include "netmap.h"

enum derp_link_limits {
	DERP_LINK_CONNS = 8,		/* regions connected at once */
	DERP_LINK_TICK_MS = 1000,	/* failover and idle checks */
	DERP_LINK_HOME_DOWN_MS = 15000, /* home down this long: another region */
	DERP_LINK_IDLE_MS = 60000,	/* a peer's region unused this long: closed */
	DERP_LINK_BAD_LOG_MS = 10000,	/* one line about bad servers this often */
};

struct derp_link_conn {
	struct derp_link *dl;
	uint16_t region; /* 0: free slot */
	struct derp_conn *c;
	uint64_t last_used; /* a packet sent (not home) */
	uint64_t last_up;   /* seen connected, or opened */
	uint64_t last_rx;   /* a packet received through it */
};

struct derp_link {
	struct worker_ctx *ctx;
	struct chan *chan;
	uv_async_t async;
	uv_timer_t timer;
	struct netmap_derpmap *map; /* a reference; NULL before the first netmap */
	uint16_t home;		    /* 0: none yet */
	uint8_t node_priv[KEY_LEN];
	const uint8_t *ca_pem; /* ctx->ca_pem */
	size_t ca_pem_len;
	struct derp_link_conn conns[DERP_LINK_CONNS];
	/* Connections closed because the server sent a bad frame. */
	uint64_t bad_frames;
	struct log_ratelimit bad_log;
	/* The regions of our last DerpMapReport, in its order; a
	 * NetcheckReport for another set is stale and ignored. */
	uint16_t reported[NETCHECK_REGIONS_MAX];
	size_t n_reported;
};

static const struct netmap_derp_region *region_find(const struct derp_link *dl, uint16_t id)
{
	for (size_t i = 0; dl->map && i < dl->map->n_regions; i++) {
		if (dl->map->regions[i].region_id == id)
			return &dl->map->regions[i];
	}
	return NULL;
}

/* Its first node that relays (not STUN only). */
static const struct netmap_derp_node *region_node(const struct netmap_derp_region *r)
{
	for (size_t i = 0; r && i < r->n_nodes; i++) {
		if (!r->nodes[i].stun_only)
			return &r->nodes[i];
	}
	return NULL;
}

/* The address to dial: the node's IPv4, else its IPv6, else its host name
 * when that is an address literal; NULL lets libcurl resolve the name. */
static const char *node_addr(const struct netmap_derp_node *n)
{
	uint8_t buf[16];

	if (n->ipv4 && n->ipv4[0] && strcmp(n->ipv4, "none") != 0)
		return n->ipv4;
	if (n->ipv6 && n->ipv6[0] && strcmp(n->ipv6, "none") != 0)
		return n->ipv6;
	if (inet_pton(AF_INET, n->host_name, buf) == 1 ||
	    inet_pton(AF_INET6, n->host_name, buf) == 1)
		return n->host_name;
	return NULL;
}

static void on_packet(void *arg, const uint8_t src[static DERP_KEY_LEN], const uint8_t *pkt,
		      size_t len)
{
	struct derp_link_conn *lc = arg;

	lc->last_rx = uv_now(&lc->dl->ctx->loop);
	/* A full ring drops it (counted by the channel). */
	(void)chan_recv_push(lc->dl->chan, src, lc->region, pkt, len);
}

static void on_event(void *arg, const struct derp_event *ev)
{
	struct derp_link_conn *lc = arg;

	if (ev->type == DERP_EV_SERVER_INFO) {
		lc->last_up = uv_now(&lc->dl->ctx->loop);
		log_info("pod %s: DERP region %u connected%s", lc->dl->ctx->pod_uid, lc->region,
			 lc->region == lc->dl->home ? " (home)" : "");
		if (lc->region == lc->dl->home)
			worker_maybe_ready(lc->dl->ctx);
	}
}

static void on_down(void *arg, int err, const char *why, unsigned int retry_ms)
{
	struct derp_link_conn *lc = arg;
	struct derp_link *dl = lc->dl;
	uint64_t n;

	log_debug("pod %s: DERP region %u down (%d: %s), retry in %u ms", dl->ctx->pod_uid,
		  lc->region, err, why, retry_ms);
	if (!derp_conn_err_is_bad_server(err))
		return;
	/* A server can do this at every reconnect: counted each time,
	 * told once per DERP_LINK_BAD_LOG_MS. */
	dl->bad_frames++;
	n = log_ratelimit_hit(&dl->bad_log, uv_now(&dl->ctx->loop), DERP_LINK_BAD_LOG_MS);
	if (n)
		log_warn("pod %s: closed %llu DERP connections on a bad frame since the last such "
			 "line; the latest to region %u: %s; retry in %u ms",
			 dl->ctx->pod_uid, (unsigned long long)n, lc->region, why, retry_ms);
}

uint64_t derp_link_bad_frames(const struct derp_link *dl)
{
	return dl ? dl->bad_frames : 0;
}

static void conn_close(struct derp_link_conn *lc)
{
	derp_conn_close(lc->c, NULL, NULL);
	lc->c = NULL;
	lc->region = 0;
}

static struct derp_link_conn *conn_find(struct derp_link *dl, uint16_t region)
{
	for (size_t i = 0; i < DERP_LINK_CONNS; i++) {
		if (dl->conns[i].region == region)
			return &dl->conns[i];
	}
	return NULL;
}

/* The connection to region, opened if needed; NULL when the region is not
 * in the map or every slot is taken. */
static struct derp_link_conn *conn_get(struct derp_link *dl, uint16_t region)
{
	struct derp_link_conn *lc = conn_find(dl, region);
	const struct netmap_derp_node *n;
	struct derp_conn_config cfg;
	const char *why = "";

	if (lc)
		return lc;
	n = region_node(region_find(dl, region));
	lc = conn_find(dl, 0);
	if (!n || !lc)
		return NULL;
	cfg = (struct derp_conn_config){
		.host = n->host_name,
		.addr = node_addr(n),
		.port = n->derp_port > 0 && n->derp_port <= UINT16_MAX ? (uint16_t)n->derp_port : 0,
		.insecure_for_tests = n->insecure_for_tests,
		.ca_pem = dl->ca_pem,
		.ca_pem_len = dl->ca_pem_len,
		.node_priv = dl->node_priv,
		.preferred = region == dl->home,
		.on_packet = on_packet,
		.on_event = on_event,
		.on_down = on_down,
		.arg = lc,
	};
	if (derp_conn_new(&dl->ctx->loop, &cfg, &lc->c, &why) < 0) {
		log_warn("pod %s: DERP region %u: %s", dl->ctx->pod_uid, region, why);
		return NULL;
	}
	lc->dl = dl;
	lc->region = region;
	lc->last_used = lc->last_up = uv_now(&dl->ctx->loop);
	return lc;
}

static bool may_be_home(const struct netmap_derp_region *r)
{
	return netmap_derp_region_may_be_home(r);
}

/* The first region after `after` (wrapping) that may be home. */
static uint16_t next_home(const struct derp_link *dl, uint16_t after)
{
	size_t n = dl->map ? dl->map->n_regions : 0, start = 0;

	for (size_t i = 0; i < n; i++) {
		if (dl->map->regions[i].region_id == after)
			start = i + 1;
	}
	for (size_t k = 0; k < n; k++) {
		const struct netmap_derp_region *r = &dl->map->regions[(start + k) % n];

		if (may_be_home(r))
			return (uint16_t)r->region_id;
	}
	return 0;
}

/* The engine asks region's STUN port where it is seen from (its first
 * node with STUN and an IPv4 address). */
static void stun_set(struct derp_link *dl, uint16_t region)
{
	const struct netmap_derp_region *r = region_find(dl, region);
	struct sockaddr_in *in;
	struct sockaddr_storage ss;

	for (size_t i = 0; r && i < r->n_nodes; i++) {
		const struct netmap_derp_node *n = &r->nodes[i];
		const char *a = node_addr(n);

		memset(&ss, 0, sizeof(ss));
		in = (struct sockaddr_in *)&ss;
		if (n->stun_port < 0 || n->stun_port > UINT16_MAX || !a ||
		    inet_pton(AF_INET, a, &in->sin_addr) != 1)
			continue;
		in->sin_family = AF_INET;
		in->sin_port = htons(n->stun_port ? (uint16_t)n->stun_port : 3478);
		dataplane_set_stun(dl->ctx->dp, &ss);
		return;
	}
	dataplane_set_stun(dl->ctx->dp, NULL);
}

static void home_set(struct derp_link *dl, uint16_t region)
{
	struct derp_link_conn *old = dl->home ? conn_find(dl, dl->home) : NULL, *lc;

	if (!region || region == dl->home)
		return;
	if (old)
		derp_conn_set_preferred(old->c, false);
	dl->home = region;
	lc = conn_get(dl, region);
	if (lc) {
		derp_conn_set_preferred(lc->c, true);
		lc->last_up = uv_now(&dl->ctx->loop);
	}
	stun_set(dl, region);
	log_info("pod %s: DERP home region %u", dl->ctx->pod_uid, region);
	if (dl->ctx->ctl)
		client_set_preferred_derp(dl->ctx->ctl, region);
}

void derp_link_netmap(struct derp_link *dl, const struct netmap *nm)
{
	if (!dl || !nm->derpmap)
		return;
	if (dl->map != nm->derpmap) {
		struct netmap_derpmap *old = dl->map;

		dl->map = netmap_derpmap_get(nm->derpmap);
		if (old)
			netmap_derpmap_put(old);
		derp_link_report_map(dl);
	}
	if (!dl->home || !region_find(dl, dl->home))
		home_set(dl, next_home(dl, 0));
}

/* A region's STUN targets into t (ips backing their bytes): its nodes'
 * IPv4 and IPv6 literals, never a name (the supervisor resolves nothing for
 * this), at most NETCHECK_TARGETS_MAX, each one the supervisor accepts.
 * Returns how many. */
static size_t region_targets(const struct netmap_derp_region *r,
			     Tscni__StunTarget t[static NETCHECK_TARGETS_MAX],
			     uint8_t ips[static NETCHECK_TARGETS_MAX][16])
{
	size_t k = 0;

	for (size_t j = 0; j < r->n_nodes && k < NETCHECK_TARGETS_MAX; j++) {
		const struct netmap_derp_node *n = &r->nodes[j];
		const char *lit[2] = {n->ipv4, n->ipv6};
		uint32_t port = n->stun_port ? (uint32_t)n->stun_port : 3478;

		if (n->stun_port < 0 || n->stun_port > UINT16_MAX)
			continue;
		for (int f = 0; f < 2 && k < NETCHECK_TARGETS_MAX; f++) {
			size_t len = f ? 16 : 4;

			if (!lit[f] || inet_pton(f ? AF_INET6 : AF_INET, lit[f], ips[k]) != 1 ||
			    !valid_stun_target(ips[k], len, port))
				continue;
			tscni__stun_target__init(&t[k]);
			t[k].ip = (ProtobufCBinaryData){.len = len, .data = ips[k]};
			t[k].port = port;
			k++;
		}
	}
	return k;
}

void derp_link_report_map(struct derp_link *dl)
{
	Tscni__WorkerMsg m = TSCNI__WORKER_MSG__INIT;
	Tscni__DerpMapReport rep = TSCNI__DERP_MAP_REPORT__INIT;
	Tscni__DerpRegionTargets regs[NETCHECK_REGIONS_MAX], *rp[NETCHECK_REGIONS_MAX];
	Tscni__StunTarget t[NETCHECK_REGIONS_MAX][NETCHECK_TARGETS_MAX];
	Tscni__StunTarget *tp[NETCHECK_REGIONS_MAX][NETCHECK_TARGETS_MAX];
	uint8_t ips[NETCHECK_REGIONS_MAX][NETCHECK_TARGETS_MAX][16];
	size_t n = 0;

	if (!dl || !dl->map)
		return;
	for (size_t i = 0; i < dl->map->n_regions && n < NETCHECK_REGIONS_MAX; i++) {
		const struct netmap_derp_region *r = &dl->map->regions[i];
		size_t k;

		/* Increasing ids, as the supervisor requires. */
		if (!may_be_home(r) || (n && r->region_id <= dl->reported[n - 1]))
			continue;
		k = region_targets(r, t[n], ips[n]);
		if (!k)
			continue;
		tscni__derp_region_targets__init(&regs[n]);
		for (size_t j = 0; j < k; j++)
			tp[n][j] = &t[n][j];
		regs[n].region_id = (uint32_t)r->region_id;
		regs[n].targets = tp[n];
		regs[n].n_targets = k;
		rp[n] = &regs[n];
		dl->reported[n++] = (uint16_t)r->region_id;
	}
	dl->n_reported = n;
	rep.regions = rp;
	rep.n_regions = n;
	m.body_case = TSCNI__WORKER_MSG__BODY_DERP_MAP_REPORT;
	m.derp_map_report = &rep;
	if (dl->ctx->ctl_open && ipc_send(WORKER_FD_CTL, &m) < 0)
		log_warn("pod %s: DERP map report not sent", dl->ctx->pod_uid);
}

void derp_link_netcheck(struct derp_link *dl, const Tscni__NetcheckReport *r)
{
	struct home_choice c = {.cur = dl ? dl->home : 0};
	int ids[NETCHECK_REGIONS_MAX];
	double secs[NETCHECK_REGIONS_MAX];
	const struct derp_link_conn *lc;
	size_t n = 0;
	uint16_t home;

	if (!dl)
		return;
	/* Measured for another map than ours now: it waits for the next. */
	if (r->n_regions != dl->n_reported)
		return;
	for (size_t i = 0; i < r->n_regions; i++)
		if (r->regions[i]->region_id != dl->reported[i])
			return;
	for (size_t i = 0; i < r->n_regions; i++) {
		uint16_t id = (uint16_t)r->regions[i]->region_id;
		uint32_t ms = r->regions[i]->latency_ms;

		if (ms) {
			ids[n] = id;
			secs[n++] = ms / 1000.0;
		}
		if (id == c.cur)
			c.cur_ms = ms;
		if (id == r->preferred_region && ms) {
			c.best = id;
			c.best_ms = ms;
		}
	}
	lc = c.cur ? conn_find(dl, c.cur) : NULL;
	c.cur_heard =
		lc && lc->last_rx && uv_now(&dl->ctx->loop) - lc->last_rx < HOME_HEARD_RECENT_MS;
	if (dl->ctx->ctl)
		client_set_derp_latency(dl->ctx->ctl, ids, secs, n);
	home = home_pick(&c);
	if (home != dl->home) {
		log_info("pod %s: netcheck: home region %u (%u ms) instead of %u (%u ms)",
			 dl->ctx->pod_uid, home, c.best_ms, c.cur, c.cur_ms);
		home_set(dl, home);
	}
}

/* The engine queued packets for DERP. */
static void on_async(uv_async_t *h)
{
	struct derp_link *dl = h->data;
	const struct chan_pkt *pk;

	while ((pk = chan_send_peek(dl->chan))) {
		struct derp_link_conn *lc = conn_get(dl, pk->region);

		/* Not connected (yet): dropped, as upstream drops it;
		 * WireGuard and disco retry. */
		if (lc) {
			(void)derp_conn_send(lc->c, pk->key, pk->data, pk->len);
			lc->last_used = uv_now(&dl->ctx->loop);
		}
		chan_send_done(dl->chan);
	}
}

static void wake_control(void *arg)
{
	uv_async_send(arg);
}

static void on_tick(uv_timer_t *t)
{
	struct derp_link *dl = t->data;
	uint64_t now = uv_now(&dl->ctx->loop);

	worker_endpoints_refresh(dl->ctx);
	for (size_t i = 0; i < DERP_LINK_CONNS; i++) {
		struct derp_link_conn *lc = &dl->conns[i];

		if (!lc->region)
			continue;
		if (derp_conn_is_up(lc->c))
			lc->last_up = now;
		if (lc->region == dl->home) {
			if (now - lc->last_up >= DERP_LINK_HOME_DOWN_MS) {
				log_warn("pod %s: DERP home region %u down for %u s",
					 dl->ctx->pod_uid, lc->region,
					 DERP_LINK_HOME_DOWN_MS / 1000);
				home_set(dl, next_home(dl, dl->home));
			}
		} else if (now - lc->last_used >= DERP_LINK_IDLE_MS) {
			conn_close(lc);
		}
	}
}

enum derp_home_state derp_link_home_state(const struct derp_link *dl)
{
	if (!dl->home)
		return DERP_HOME_NONE;
	for (size_t i = 0; i < DERP_LINK_CONNS; i++) {
		if (dl->conns[i].region == dl->home && dl->conns[i].c &&
		    derp_conn_is_up(dl->conns[i].c))
			return DERP_HOME_UP;
	}
	return DERP_HOME_CONNECTING;
}

int derp_link_new(struct worker_ctx *ctx, struct chan *chan, struct derp_link **out)
{
	struct derp_link *dl = xcalloc(1, sizeof(*dl));
	int ret;

	dl->ctx = ctx;
	dl->chan = chan;
	memcpy(dl->node_priv, ctx->start.node_private, KEY_LEN);
	dl->ca_pem = (const uint8_t *)ctx->ca_pem; /* the process's: borrowed */
	dl->ca_pem_len = ctx->ca_pem_len;
	ret = uv_async_init(&ctx->loop, &dl->async, on_async);
	if (ret == 0)
		ret = uv_timer_init(&ctx->loop, &dl->timer);
	if (ret < 0)
		return ret; /* the worker exits: a registered handle stays */
	dl->async.data = dl;
	dl->timer.data = dl;
	chan_set_wake_control(chan, wake_control, &dl->async);
	*out = dl;
	return uv_timer_start(&dl->timer, on_tick, DERP_LINK_TICK_MS, DERP_LINK_TICK_MS);
}
