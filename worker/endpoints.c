/* The pod's own endpoints (docs/tailscale-protocol.md §8): the host's
 * reachable addresses with the port of the pod's UDP socket (type local),
 * plus the address STUN saw (type STUN). The host's addresses come from the
 * NETLINK_ROUTE socket the supervisor opened in the host's netns and
 * subscribed to link and address changes: dumped once before the filter
 * loads, dumped again after every change. The worker has no CAP_NET_ADMIN,
 * so the socket can read the host's configuration and change none of it.
 * Each new set goes to control (a lite update) and to the engine (its
 * CallMeMaybe). */
#include "worker.h"

#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "dataplane.h"
#include "disco.h"
#include "ifaddr.h"
#include "mem.h"

enum endpoints_limits {
	NL_BUF_LEN = 32 * 1024,	   /* one datagram: the kernel's dump chunk fits */
	NL_SYNC_TIMEOUT_MS = 2000, /* the first dump, before the filter */
	NL_SETTLE_MS = 200,	   /* changes come in bursts: one dump after */
	EP_TYPE_LOCAL = 1,	   /* tailcfg.EndpointLocal */
	EP_TYPE_STUN = 2,	   /* tailcfg.EndpointSTUN */
};

enum dump_phase { DUMP_IDLE, DUMP_LINKS, DUMP_ADDRS };

struct endpoints {
	struct worker_ctx *ctx;
	int fd;
	uv_poll_t poll;
	uv_timer_t settle;
	uint32_t seq;
	enum dump_phase phase;
	bool again; /* a change arrived during a dump: dump once more */
	struct ifaddr_deny deny;
	struct ifaddr_table next; /* being filled by the dump in progress */
	/* The UDP socket's port and which families it sends. */
	uint16_t port;
	bool v4, v6;
	uint8_t buf[NL_BUF_LEN];
};

/* Control gets eps; the engine too, for its CallMeMaybe. */
static void endpoints_set(struct worker_ctx *ctx, const struct netmap_endpoint *eps,
			  const int *types, size_t n)
{
	struct disco_addr da[DATAPLANE_OWN_EPS] = {0};
	size_t k = 0;

	if (ctx->ctl)
		client_set_endpoints(ctx->ctl, eps, types, n);
	for (size_t i = 0; ctx->dp && i < n && k < DATAPLANE_OWN_EPS; i++, k++) {
		if (eps[i].family == AF_INET)
			disco_addr_from4(eps[i].addr, eps[i].port, &da[k]);
		else
			memcpy(da[k].ip, eps[i].addr, 16);
		da[k].port = eps[i].port;
	}
	if (ctx->dp)
		dataplane_set_endpoints(ctx->dp, da, k);
}

static bool same_ep(const struct netmap_endpoint *a, const struct netmap_endpoint *b)
{
	return a->family == b->family && a->port == b->port &&
	       !memcmp(a->addr, b->addr, a->family == AF_INET ? 4 : 16);
}

/* The local endpoints and the STUN one (unless it is one of them: no NAT)
 * into eps and types (CLIENT_MAX_ENDPOINTS each). Returns how many. */
static size_t compose(const struct worker_ctx *ctx, struct netmap_endpoint *eps, int *types)
{
	size_t n = ctx->n_local_eps;
	bool listed = false;

	_Static_assert((int)IFADDR_ADDRS_MAX < (int)CLIENT_MAX_ENDPOINTS,
		       "room for the STUN endpoint");
	memcpy(eps, ctx->local_eps, n * sizeof(*eps));
	for (size_t i = 0; i < n; i++) {
		types[i] = EP_TYPE_LOCAL;
		listed |= ctx->has_stun_ep && same_ep(&eps[i], &ctx->stun_ep);
	}
	if (ctx->has_stun_ep && !listed) {
		eps[n] = ctx->stun_ep;
		types[n++] = EP_TYPE_STUN;
	}
	return n;
}

static void publish(struct worker_ctx *ctx)
{
	struct netmap_endpoint eps[CLIENT_MAX_ENDPOINTS];
	int types[CLIENT_MAX_ENDPOINTS];

	endpoints_set(ctx, eps, types, compose(ctx, eps, types));
}

/* A finished dump: its addresses with our port are the local endpoints. */
static void dump_done(struct endpoints *e)
{
	struct worker_ctx *ctx = e->ctx;
	struct netmap_endpoint eps[IFADDR_ADDRS_MAX];
	bool same;
	size_t n = 0;

	/* Padding too: the control client compares endpoint lists bytewise. */
	memset(eps, 0, sizeof(eps));
	for (size_t i = 0; i < e->next.n_addrs; i++) {
		const struct ifaddr_addr *a = &e->next.addrs[i];

		if ((a->family == AF_INET && !e->v4) || (a->family == AF_INET6 && !e->v6))
			continue;
		eps[n].family = a->family;
		eps[n].port = e->port;
		memcpy(eps[n++].addr, a->addr, a->family == AF_INET ? 4 : 16);
	}
	if (e->next.dropped)
		log_warn("pod %s: %zu host links or addresses over the bounds (%d, %d) left out",
			 ctx->pod_uid, e->next.dropped, IFADDR_LINKS_MAX, IFADDR_ADDRS_MAX);
	same = n == ctx->n_local_eps;
	for (size_t i = 0; same && i < n; i++)
		same = same_ep(&eps[i], &ctx->local_eps[i]);
	if (same)
		return;
	memcpy(ctx->local_eps, eps, n * sizeof(*eps));
	ctx->n_local_eps = n;
	/* The e2e tests wait for this line. */
	log_info("pod %s: %zu endpoints from the host's interfaces", ctx->pod_uid, n);
	publish(ctx);
}

static int request(struct endpoints *e, uint32_t seq, uint16_t type, const void *body, size_t blen,
		   uint16_t flags)
{
	struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
	uint8_t msg[64];
	struct nlmsghdr h = {
		.nlmsg_len = (uint32_t)(NLMSG_HDRLEN + blen),
		.nlmsg_type = type,
		.nlmsg_flags = (uint16_t)(NLM_F_REQUEST | flags),
		.nlmsg_seq = seq,
	};

	if (NLMSG_HDRLEN + blen > sizeof(msg))
		return -EMSGSIZE;
	memcpy(msg, &h, sizeof(h));
	memcpy(msg + NLMSG_HDRLEN, body, blen);
	if (sendto(e->fd, msg, h.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0)
		return -errno;
	return 0;
}

/* Asks for the next part of a dump: all links, then all addresses (the
 * table keeps an address only on a link it already kept). */
static int dump_request(struct endpoints *e, enum dump_phase phase)
{
	/* Links without their statistics: on a node with many pods most
	 * links are veths, and their counters would be most of the dump
	 * (kernels before RTEXT_FILTER_SKIP_STATS ignore the bit). */
	struct {
		struct ifinfomsg ifi;
		struct rtattr rta;
		uint32_t mask;
	} links = {
		.ifi = {.ifi_family = AF_UNSPEC},
		.rta = {.rta_len = RTA_LENGTH(sizeof(uint32_t)), .rta_type = IFLA_EXT_MASK},
		.mask = RTEXT_FILTER_SKIP_STATS,
	};
	struct rtgenmsg addrs = {.rtgen_family = AF_UNSPEC};
	int ret;

	if (phase == DUMP_LINKS) {
		memset(&e->next, 0, sizeof(e->next));
		ret = request(e, ++e->seq, RTM_GETLINK, &links, sizeof(links), NLM_F_DUMP);
	} else {
		ret = request(e, ++e->seq, RTM_GETADDR, &addrs, sizeof(addrs), NLM_F_DUMP);
	}
	e->phase = ret < 0 ? DUMP_IDLE : phase;
	return ret;
}

static void dump_start(struct endpoints *e)
{
	int ret;

	if (e->phase != DUMP_IDLE) {
		e->again = true;
		return;
	}
	e->again = false;
	ret = dump_request(e, DUMP_LINKS);
	if (ret < 0)
		log_warn_r(ret, "pod %s: ask for the host's links", e->ctx->pod_uid);
}

static void on_settle(uv_timer_t *t)
{
	dump_start(t->data);
}

/* What we know may be stale (notifications dropped, a dump cut short):
 * dump again once things settle. */
static void resync(struct endpoints *e)
{
	e->phase = DUMP_IDLE;
	uv_timer_start(&e->settle, on_settle, NL_SETTLE_MS, 0);
}

/* Can this change notification change our endpoints? Most changes on a
 * busy node are veths of other pods coming and going, with link-local
 * addresses: every worker dumping again for each would cost the node far
 * more than it tells us. Between dumps, e->next is the last dump's table. */
static bool relevant(const struct endpoints *e, const struct ifaddr_msg *m)
{
	switch (m->type) {
	case RTM_NEWLINK:
	case RTM_DELLINK:
		return e->phase != DUMP_IDLE || !m->name[0] || !ifaddr_denied(&e->deny, m->name);
	case RTM_NEWADDR:
	case RTM_DELADDR:
		return m->family && ifaddr_reachable(m->family, m->addr) &&
		       (e->phase != DUMP_IDLE || ifaddr_table_has_link(&e->next, m->index));
	default:
		return false;
	}
}

/* One message: part of our dump, its end, or a change notification. */
static void handle(struct endpoints *e, const struct ifaddr_msg *m)
{
	bool ours = e->phase != DUMP_IDLE && m->seq == e->seq;

	if (!ours) {
		/* A change (or a reply to an older request): dump once it
		 * has settled. */
		if (relevant(e, m))
			uv_timer_start(&e->settle, on_settle, NL_SETTLE_MS, 0);
		return;
	}
	if (m->type == NLMSG_ERROR && m->error < 0) {
		log_warn_r(m->error, "pod %s: the host's %s dump", e->ctx->pod_uid,
			   e->phase == DUMP_LINKS ? "link" : "address");
		resync(e);
		return;
	}
	/* The host changed while the kernel walked its tables. */
	if (m->nl_flags & NLM_F_DUMP_INTR)
		e->again = true;
	if (m->type != NLMSG_DONE) {
		ifaddr_table_add(&e->next, m, &e->deny);
		return;
	}
	if (e->phase == DUMP_LINKS) {
		if (dump_request(e, DUMP_ADDRS) < 0)
			log_warn("pod %s: ask for the host's addresses", e->ctx->pod_uid);
		return;
	}
	e->phase = DUMP_IDLE;
	dump_done(e);
	if (e->again)
		dump_start(e);
}

/* Reads what the socket holds. ENOBUFS: the kernel dropped notifications
 * (our queue overflowed). */
static void drain(struct endpoints *e)
{
	for (int i = 0; i < 64; i++) {
		ssize_t n = recv(e->fd, e->buf, sizeof(e->buf), MSG_DONTWAIT | MSG_TRUNC);
		struct ifaddr_msg m;
		const char *why = "";
		size_t off = 0;
		int ret;

		if (n < 0 && errno == ENOBUFS) {
			resync(e);
			continue;
		}
		if (n < 0)
			return;
		if ((size_t)n > sizeof(e->buf)) {
			log_warn("pod %s: a netlink datagram of %zd bytes cut: dumping again",
				 e->ctx->pod_uid, n);
			resync(e);
			continue;
		}
		while ((ret = ifaddr_next(e->buf, (size_t)n, &off, &m, &why)) > 0)
			handle(e, &m);
		if (ret < 0)
			log_warn("pod %s: netlink: %s", e->ctx->pod_uid, why);
	}
}

static void on_readable(uv_poll_t *h, int status, int events)
{
	(void)events;
	if (status == 0)
		drain(h->data);
}

/* The UDP socket's port, and whether it sends IPv4 (not a v6-only socket)
 * and IPv6. */
static int udp_info(struct endpoints *e, int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		return -errno;
	if (ss.ss_family == AF_INET6) {
		int on = 0;
		socklen_t ol = sizeof(on);

		e->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		e->v6 = true;
		e->v4 = !(getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, &ol) == 0 && on);
		return 0;
	}
	if (ss.ss_family != AF_INET)
		return -EAFNOSUPPORT;
	e->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	e->v4 = true;
	return 0;
}

int endpoints_init(struct worker_ctx *ctx)
{
	struct endpoints *e;
	unsigned long long deadline;
	int ret;

	if (ctx->udp_fd < 0 || ctx->nl_fd < 0) {
		log_info("pod %s: no endpoints from the host's interfaces (%s)", ctx->pod_uid,
			 ctx->udp_fd < 0 ? "no UDP socket" : "no netlink socket");
		return 0;
	}
	/* Its own mapping: of the 32 KiB netlink buffer, only what the
	 * host's dumps fill is ever backed (xmap_zeroed). */
	e = xmap_zeroed(sizeof(*e));
	e->ctx = ctx;
	e->fd = ctx->nl_fd;
	e->deny = ctx->start.deny;
	/* Not 0 and not the last worker's: replies to its requests still
	 * queued on the socket (a respawn keeps it) are not ours. */
	e->seq = (uint32_t)time(NULL) ^ ((uint32_t)getpid() << 16);
	ret = udp_info(e, ctx->udp_fd);
	if (ret < 0) {
		log_warn_r(ret, "pod %s: the UDP socket's address", ctx->pod_uid);
		xmap_free(e, sizeof(*e));
		return 0;
	}
	ctx->endpoints = e;
	uv_timer_init(&ctx->loop, &e->settle);
	e->settle.data = e;
	ret = uv_poll_init(&ctx->loop, &e->poll, e->fd);
	if (ret < 0)
		return ret;
	e->poll.data = e;
	/* The first dump now, so the first lite update carries endpoints. */
	dump_start(e);
	deadline = now_ms() + NL_SYNC_TIMEOUT_MS;
	while (e->phase != DUMP_IDLE && now_ms() < deadline) {
		struct pollfd pfd = {.fd = e->fd, .events = POLLIN};

		if (poll(&pfd, 1, (int)(deadline - now_ms())) > 0)
			drain(e);
	}
	if (e->phase != DUMP_IDLE)
		log_warn("pod %s: the host's addresses: no dump in time", ctx->pod_uid);
	return uv_poll_start(&e->poll, UV_READABLE, on_readable);
}

void worker_endpoints_refresh(struct worker_ctx *ctx)
{
	struct netmap_endpoint e = {0};
	char text[DISCO_ADDR_STRLEN];
	struct sockaddr_storage ss;
	struct disco_addr da;

	if (!ctx->dp || !ctx->ctl || dataplane_stun_addr(ctx->dp, &ss) < 0 ||
	    (ctx->has_stun && memcmp(&ss, &ctx->stun, sizeof(ss)) == 0))
		return;
	ctx->stun = ss;
	ctx->has_stun = true;
	if (disco_addr_from_sockaddr((const struct sockaddr *)&ss, &da) < 0)
		return;
	log_info("pod %s: STUN: our UDP socket is seen at %s", ctx->pod_uid,
		 disco_addr_format(&da, text, sizeof(text)));
	e.port = da.port;
	if (disco_addr_is4(&da)) {
		e.family = AF_INET;
		memcpy(e.addr, da.ip + 12, 4);
	} else {
		e.family = AF_INET6;
		memcpy(e.addr, da.ip, 16);
	}
	ctx->stun_ep = e;
	ctx->has_stun_ep = true;
	publish(ctx);
}

int endpoints_test_newaddr(struct worker_ctx *ctx, char *detail, size_t dlen)
{
	/* An interface index no host has: were the request allowed, the
	 * kernel would answer ENODEV and change nothing. The capability
	 * check comes first, so without CAP_NET_ADMIN it is EPERM. */
	struct {
		struct ifaddrmsg ifa;
		struct rtattr rta;
		uint8_t addr[4];
	} body = {
		.ifa = {.ifa_family = AF_INET, .ifa_prefixlen = 32, .ifa_index = 0x7ffffff0},
		.rta = {.rta_len = RTA_LENGTH(4), .rta_type = IFA_LOCAL},
		.addr = {192, 0, 2, 1},
	};
	struct endpoints *e = ctx->endpoints, *tmp = NULL;
	unsigned long long deadline = now_ms() + NL_SYNC_TIMEOUT_MS;
	const uint32_t seq = 0x7e570001; /* a dump's seq is time-based */
	int ret = -ETIMEDOUT;

	if (ctx->nl_fd < 0) {
		snprintf(detail, dlen, "no netlink socket");
		return -EBADF;
	}
	if (!e) { /* no watcher (no control plane): a buffer of our own */
		e = tmp = xcalloc(1, sizeof(*tmp));
		tmp->ctx = ctx;
		tmp->fd = ctx->nl_fd;
	}
	snprintf(detail, dlen, "no answer from the kernel");
	ret = request(e, seq, RTM_NEWADDR, &body, sizeof(body),
		      NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
	if (ret < 0)
		snprintf(detail, dlen, "send refused: %s", strerror(-ret));
	else
		ret = -ETIMEDOUT; /* until the kernel's answer */
	while (ret == -ETIMEDOUT && now_ms() < deadline) {
		struct pollfd pfd = {.fd = e->fd, .events = POLLIN};
		ssize_t n;
		struct ifaddr_msg m;
		const char *why = "";
		size_t off = 0;

		if (poll(&pfd, 1, (int)(deadline - now_ms())) <= 0)
			continue;
		n = recv(e->fd, e->buf, sizeof(e->buf), MSG_DONTWAIT);
		if (n <= 0)
			continue;
		while (ifaddr_next(e->buf, (size_t)n, &off, &m, &why) > 0) {
			if (m.type == NLMSG_ERROR && m.seq == seq) {
				snprintf(detail, dlen, "%s: %s", m.error ? "refused" : "allowed",
					 strerror(-m.error));
				ret = m.error;
			} else if (!tmp) {
				handle(e, &m); /* the watcher's: not lost */
			}
		}
	}
	free(tmp);
	return ret;
}
