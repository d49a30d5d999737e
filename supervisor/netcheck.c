/* The node-wide netcheck: see netcheck.h. A target set ("map") lives in one
 * of NETCHECK_MAPS slots while a worker uses it. Its round sends probe k of
 * every region at k * NETCHECK_PROBE_GAP_MS (to the region's targets in
 * turn, as upstream's probe plan does), ends when every probe is answered
 * or NETCHECK_ROUND_MS after it began, and hands the result to the set's
 * workers; the next round follows after a jittered refresh delay. Probes in
 * flight sit in one table, matched by transaction id and by the address
 * the answer came from. */
#include "netcheck.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "hash.h"
#include "log.h"
#include "mem.h"
#include "stun.h"
#include "validate.h"
#include "worker.pb-c.h"

static const uint8_t V4_MAPPED[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

struct nc_region {
	uint16_t id;
	uint8_t n_targets;
	struct stun_addr targets[NETCHECK_TARGETS_MAX]; /* IPv4 as ::ffff:a.b.c.d */
	uint64_t best_ns;				/* this round; 0: no answer */
	uint32_t latency_ms;				/* the last round's */
};

struct nc_map {
	struct netcheck *nc;
	bool used;
	uint8_t key[HASH_LEN]; /* hash of the target set */
	size_t n_regions;
	struct nc_region regions[NETCHECK_REGIONS_MAX];
	unsigned int users;
	uv_timer_t timer;
	bool in_round;	       /* else waiting for the next one */
	unsigned int phase;    /* probe sets sent this round */
	unsigned int pending;  /* probes of this round in flight */
	unsigned int rounds;   /* completed */
	uint16_t preferred;    /* the last round's */
	bool seen_v4, seen_v6; /* our addresses as the latest answers said */
	uint8_t v4[4], v6[16];
};

struct nc_probe {
	struct nc_map *m; /* NULL: free slot */
	size_t region;	  /* index into m->regions */
	struct stun_addr to;
	uint8_t txid[STUN_TXID_LEN];
	uint64_t sent_ns;
};

struct nc_user {
	struct nc_user *next;
	struct worker *w;
	struct nc_map *m;
};

struct netcheck {
	uv_loop_t *loop;
	netcheck_send_fn *send;
	uv_udp_t sock;
	bool sock_ready; /* tests build a netcheck without one */
	bool dual_stack; /* else IPv4 only: IPv6 targets are skipped */
	int handles_open;
	bool closing;
	struct nc_user *users;
	unsigned int inflight;
	uint64_t probes_sent;			/* for the tests and the log */
	uint64_t start_credit, start_credit_ms; /* new sets' first rounds */
	uint64_t refused;			/* reports beyond NETCHECK_MAPS sets */
	struct nc_map maps[NETCHECK_MAPS];
	struct nc_probe probes[NETCHECK_INFLIGHT];
	uint8_t rbuf[1500];
};

static void on_map_timer(uv_timer_t *t);
static bool start_allowed(struct netcheck *nc);

/* ---- target sets ----------------------------------------------------- */

/* The report as a target set and its key: BLAKE2s over every region id and
 * target in the (validated, increasing) order the worker sent them. */
static void map_from_report(const Tscni__DerpMapReport *rep, struct nc_map *m)
{
	uint8_t buf[NETCHECK_REGIONS_MAX * (3 + NETCHECK_TARGETS_MAX * 18)];
	size_t len = 0;

	m->n_regions = 0;
	for (size_t i = 0; i < rep->n_regions && i < NETCHECK_REGIONS_MAX; i++) {
		const Tscni__DerpRegionTargets *r = rep->regions[i];
		struct nc_region *nr = &m->regions[m->n_regions++];

		*nr = (struct nc_region){.id = (uint16_t)r->region_id};
		buf[len++] = (uint8_t)(r->region_id >> 8);
		buf[len++] = (uint8_t)r->region_id;
		buf[len++] = (uint8_t)r->n_targets;
		for (size_t k = 0; k < r->n_targets && k < NETCHECK_TARGETS_MAX; k++) {
			struct stun_addr *a = &nr->targets[nr->n_targets++];
			const ProtobufCBinaryData *ip = &r->targets[k]->ip;

			if (ip->len == 4) {
				memcpy(a->ip, V4_MAPPED, sizeof(V4_MAPPED));
				memcpy(a->ip + sizeof(V4_MAPPED), ip->data, 4);
			} else {
				memcpy(a->ip, ip->data, 16);
			}
			a->port = (uint16_t)r->targets[k]->port;
			memcpy(buf + len, a->ip, 16);
			buf[len + 16] = (uint8_t)(a->port >> 8);
			buf[len + 17] = (uint8_t)a->port;
			len += 18;
		}
	}
	hash_blake2s(m->key, buf, len, NULL, 0);
}

static struct nc_user *user_find(struct netcheck *nc, const struct worker *w)
{
	for (struct nc_user *u = nc->users; u; u = u->next)
		if (u->w == w)
			return u;
	return NULL;
}

/* Frees m's probes still in flight: their answers are no longer wanted. */
static void probes_drop(struct nc_map *m)
{
	struct netcheck *nc = m->nc;

	for (size_t i = 0; i < NETCHECK_INFLIGHT && m->pending; i++) {
		if (nc->probes[i].m != m)
			continue;
		nc->probes[i].m = NULL;
		nc->inflight--;
		m->pending--;
	}
}

/* Its last user left: the set is measured no more. */
static void map_release(struct nc_map *m)
{
	if (--m->users)
		return;
	uv_timer_stop(&m->timer);
	probes_drop(m);
	m->used = false;
	m->in_round = false;
}

static void user_unlink(struct netcheck *nc, struct nc_user *gone)
{
	for (struct nc_user **pp = &nc->users; *pp; pp = &(*pp)->next) {
		if (*pp == gone) {
			*pp = gone->next;
			break;
		}
	}
	map_release(gone->m);
	free(gone);
}

/* ---- results ------------------------------------------------------------ */

/* What m's last round found, to one worker. */
static void report_send(struct nc_map *m, struct worker *w)
{
	Tscni__NetcheckReport rep = TSCNI__NETCHECK_REPORT__INIT;
	Tscni__RegionLatency lat[NETCHECK_REGIONS_MAX], *ptrs[NETCHECK_REGIONS_MAX];

	for (size_t i = 0; i < m->n_regions; i++) {
		tscni__region_latency__init(&lat[i]);
		lat[i].region_id = m->regions[i].id;
		lat[i].latency_ms = m->regions[i].latency_ms;
		ptrs[i] = &lat[i];
	}
	rep.regions = ptrs;
	rep.n_regions = m->n_regions;
	rep.preferred_region = m->preferred;
	if (m->seen_v4)
		rep.global_v4 = (ProtobufCBinaryData){.len = 4, .data = m->v4};
	if (m->seen_v6)
		rep.global_v6 = (ProtobufCBinaryData){.len = 16, .data = m->v6};
	(void)m->nc->send(w, &rep);
}

/* Milliseconds as the report carries them: rounded up, so that an answer
 * on loopback is 1 and never reads as "no answer". */
static uint32_t to_ms(uint64_t ns)
{
	uint64_t ms = (ns + 999999) / 1000000;

	return ms > NETCHECK_LATENCY_MAX_MS ? NETCHECK_LATENCY_MAX_MS : (uint32_t)ms;
}

static uint64_t refresh_delay(void)
{
	return NETCHECK_REFRESH_MIN_MS +
	       randombytes_uniform(NETCHECK_REFRESH_MAX_MS - NETCHECK_REFRESH_MIN_MS + 1);
}

/* The round is over: latencies, the preferred region (the lowest RTT; the
 * lower id on a tie), every user told, the next round scheduled. */
static void round_end(struct nc_map *m)
{
	uint64_t best = 0;

	probes_drop(m);
	m->preferred = 0;
	for (size_t i = 0; i < m->n_regions; i++) {
		struct nc_region *r = &m->regions[i];

		r->latency_ms = r->best_ns ? to_ms(r->best_ns) : 0;
		if (r->best_ns && (!best || r->best_ns < best)) {
			best = r->best_ns;
			m->preferred = r->id;
		}
	}
	m->in_round = false;
	m->rounds++;
	log_debug("netcheck: round %u of a %zu-region map, %u users: preferred region %u",
		  m->rounds, m->n_regions, m->users, m->preferred);
	for (struct nc_user *u = m->nc->users; u; u = u->next)
		if (u->m == m)
			report_send(m, u->w);
	uv_timer_start(&m->timer, on_map_timer, refresh_delay(), 0);
}

/* ---- probes ------------------------------------------------------------- */

static int xmit(struct netcheck *nc, const struct stun_addr *to, const uint8_t *buf, size_t len)
{
	struct sockaddr_storage ss = {0};
	uv_buf_t b = uv_buf_init((char *)buf, (unsigned int)len);
	bool v4 = memcmp(to->ip, V4_MAPPED, sizeof(V4_MAPPED)) == 0;

	if (!nc->sock_ready)
		return 0; /* tests: counted, not sent */
	if (nc->dual_stack) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

		in6->sin6_family = AF_INET6;
		memcpy(&in6->sin6_addr, to->ip, 16);
		in6->sin6_port = htons(to->port);
	} else if (v4) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;

		in->sin_family = AF_INET;
		memcpy(&in->sin_addr, to->ip + 12, 4);
		in->sin_port = htons(to->port);
	} else {
		return -EAFNOSUPPORT;
	}
	return uv_udp_try_send(&nc->sock, &b, 1, (const struct sockaddr *)&ss);
}

/* Probe number m->phase of every region, to its targets in turn. A full
 * in-flight table skips the rest of the set (those regions simply count
 * fewer probes this round). */
static void probes_send(struct nc_map *m)
{
	struct netcheck *nc = m->nc;
	size_t slot = 0;

	for (size_t i = 0; i < m->n_regions; i++) {
		struct nc_region *r = &m->regions[i];
		uint8_t req[STUN_REQUEST_LEN];
		struct nc_probe *p;

		while (slot < NETCHECK_INFLIGHT && nc->probes[slot].m)
			slot++;
		if (slot == NETCHECK_INFLIGHT) {
			log_debug("netcheck: %u probes in flight: skipping", nc->inflight);
			return;
		}
		p = &nc->probes[slot];
		*p = (struct nc_probe){
			.m = m,
			.region = i,
			.to = r->targets[m->phase % r->n_targets],
			.sent_ns = uv_hrtime(),
		};
		randombytes_buf(p->txid, sizeof(p->txid));
		stun_request(p->txid, req);
		if (xmit(nc, &p->to, req, sizeof(req)) < 0) {
			p->m = NULL;
			continue;
		}
		nc->inflight++;
		nc->probes_sent++;
		m->pending++;
	}
}

static void round_start(struct nc_map *m)
{
	m->in_round = true;
	m->phase = 0;
	for (size_t i = 0; i < m->n_regions; i++)
		m->regions[i].best_ns = 0;
	probes_send(m);
	m->phase = 1;
	uv_timer_start(&m->timer, on_map_timer, NETCHECK_PROBE_GAP_MS, 0);
}

/* Between rounds: the next one. In a round: the next probe set, or, after
 * the last, the end of the round. */
static void on_map_timer(uv_timer_t *t)
{
	struct nc_map *m = t->data;

	if (!m->used)
		return;
	if (!m->in_round) {
		/* A refresh, or a new set's first round once a credit is in. */
		if (m->rounds || start_allowed(m->nc))
			round_start(m);
		else
			uv_timer_start(&m->timer, on_map_timer, NETCHECK_START_EVERY_MS, 0);
		return;
	}
	if (m->phase < NETCHECK_PROBES) {
		probes_send(m);
		m->phase++;
		uv_timer_start(&m->timer, on_map_timer,
			       m->phase < NETCHECK_PROBES
				       ? NETCHECK_PROBE_GAP_MS
				       : NETCHECK_ROUND_MS -
						 (NETCHECK_PROBES - 1) * NETCHECK_PROBE_GAP_MS,
			       0);
		return;
	}
	round_end(m);
}

/* An answer from `from` (IPv4 as ::ffff:a.b.c.d). Only a success response
 * for a probe in flight, from the address that probe went to, counts. */
static void on_answer(struct netcheck *nc, const uint8_t *b, size_t len,
		      const struct stun_addr *from, uint64_t now_ns)
{
	uint8_t txid[STUN_TXID_LEN];
	struct stun_addr seen;
	const char *why = "";
	struct nc_probe *p = NULL;
	struct nc_map *m;

	if (stun_parse_response(b, len, txid, &seen, &why) < 0)
		return;
	for (size_t i = 0; i < NETCHECK_INFLIGHT && !p; i++)
		if (nc->probes[i].m && !memcmp(nc->probes[i].txid, txid, STUN_TXID_LEN))
			p = &nc->probes[i];
	if (!p || memcmp(p->to.ip, from->ip, 16) != 0 || p->to.port != from->port)
		return;
	m = p->m;
	p->m = NULL;
	nc->inflight--;
	m->pending--;
	if (now_ns > p->sent_ns) {
		struct nc_region *r = &m->regions[p->region];
		uint64_t rtt = now_ns - p->sent_ns;

		if (!r->best_ns || rtt < r->best_ns)
			r->best_ns = rtt;
	}
	if (!memcmp(seen.ip, V4_MAPPED, sizeof(V4_MAPPED))) {
		memcpy(m->v4, seen.ip + 12, 4);
		m->seen_v4 = true;
	} else {
		memcpy(m->v6, seen.ip, 16);
		m->seen_v6 = true;
	}
	if (m->in_round && m->phase == NETCHECK_PROBES && !m->pending) {
		uv_timer_stop(&m->timer);
		round_end(m);
	}
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct netcheck *nc = h->data;

	(void)suggested;
	*buf = uv_buf_init((char *)nc->rbuf, sizeof(nc->rbuf));
}

static void on_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *buf, const struct sockaddr *sa,
		    unsigned int flags)
{
	struct netcheck *nc = h->data;
	struct stun_addr from = {0};

	if (n <= 0 || !sa || (flags & UV_UDP_PARTIAL))
		return;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		memcpy(from.ip, V4_MAPPED, sizeof(V4_MAPPED));
		memcpy(from.ip + 12, &in->sin_addr, 4);
		from.port = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		memcpy(from.ip, &in6->sin6_addr, 16);
		from.port = ntohs(in6->sin6_port);
	} else {
		return;
	}
	on_answer(nc, (const uint8_t *)buf->base, (size_t)n, &from, uv_hrtime());
}

/* ---- workers ------------------------------------------------------------ */

/* A credit for a new set's first round (netcheck.h). */
static bool start_allowed(struct netcheck *nc)
{
	uint64_t now = uv_now(nc->loop), cap = NETCHECK_START_BURST * NETCHECK_START_EVERY_MS;

	nc->start_credit += now - nc->start_credit_ms;
	if (nc->start_credit > cap)
		nc->start_credit = cap;
	nc->start_credit_ms = now;
	if (nc->start_credit < NETCHECK_START_EVERY_MS)
		return false;
	nc->start_credit -= NETCHECK_START_EVERY_MS;
	return true;
}

/* The slot holding key, else a free one (initialised from cand), else NULL. */
static struct nc_map *map_get(struct netcheck *nc, const struct nc_map *cand, bool *fresh)
{
	struct nc_map *free_slot = NULL;

	*fresh = false;
	for (size_t i = 0; i < NETCHECK_MAPS; i++) {
		struct nc_map *m = &nc->maps[i];

		if (m->used && !memcmp(m->key, cand->key, HASH_LEN))
			return m;
		if (!m->used && !free_slot)
			free_slot = m;
	}
	if (!free_slot)
		return NULL;
	memcpy(free_slot->key, cand->key, HASH_LEN);
	free_slot->n_regions = cand->n_regions;
	memcpy(free_slot->regions, cand->regions, cand->n_regions * sizeof(cand->regions[0]));
	free_slot->used = true;
	free_slot->users = 0;
	free_slot->rounds = 0;
	free_slot->preferred = 0;
	free_slot->seen_v4 = free_slot->seen_v6 = false;
	*fresh = true;
	return free_slot;
}

void netcheck_request(struct worker *w, const struct Tscni__DerpMapReport *rep, void *arg)
{
	struct netcheck *nc = arg;
	struct nc_user *u = user_find(nc, w);
	struct nc_map *cand, *m;
	bool fresh;

	if (nc->closing)
		return;
	cand = xcalloc(1, sizeof(*cand));
	map_from_report(rep, cand);
	if (u && !memcmp(u->m->key, cand->key, HASH_LEN)) {
		/* The same map again (a new supervisor adopted it): the
		 * last result, if any, at once. */
		if (u->m->rounds)
			report_send(u->m, w);
		free(cand);
		return;
	}
	if (u)
		user_unlink(nc, u);
	m = cand->n_regions ? map_get(nc, cand, &fresh) : NULL;
	free(cand);
	if (!m && rep->n_regions) {
		/* A worker may send this at its message rate: the 1st, 2nd,
		 * 4th, 8th... time only. */
		nc->refused++;
		if (!(nc->refused & (nc->refused - 1)))
			log_warn("pod %s: netcheck: %d DERP maps measured already: this one is "
				 "not (%llu times)",
				 workers_pod_uid(w), NETCHECK_MAPS,
				 (unsigned long long)nc->refused);
	}
	if (!m)
		return;
	u = xcalloc(1, sizeof(*u));
	u->w = w;
	u->m = m;
	u->next = nc->users;
	nc->users = u;
	m->users++;
	if (fresh)
		log_debug("pod %s: netcheck: measuring a new DERP map (%zu regions)",
			  workers_pod_uid(w), m->n_regions);
	if (fresh && start_allowed(nc))
		round_start(m);
	else if (fresh)
		uv_timer_start(&m->timer, on_map_timer, NETCHECK_START_EVERY_MS, 0);
	else if (m->rounds)
		report_send(m, w);
}

void netcheck_forget(struct netcheck *nc, const struct worker *w)
{
	struct nc_user *u = nc ? user_find(nc, w) : NULL;

	if (u)
		user_unlink(nc, u);
}

/* ---- lifetime ----------------------------------------------------------- */

static void on_closed(uv_handle_t *h)
{
	struct netcheck *nc = h->data;

	if (--nc->handles_open == 0)
		free(nc);
}

static struct netcheck *alloc(uv_loop_t *loop, netcheck_send_fn *send)
{
	struct netcheck *nc = xcalloc(1, sizeof(*nc));

	nc->loop = loop;
	nc->send = send;
	nc->start_credit = NETCHECK_START_BURST * NETCHECK_START_EVERY_MS;
	nc->start_credit_ms = uv_now(loop);
	for (size_t i = 0; i < NETCHECK_MAPS; i++) {
		struct nc_map *m = &nc->maps[i];

		m->nc = nc;
		uv_timer_init(loop, &m->timer); /* cannot fail */
		m->timer.data = m;
		nc->handles_open++;
	}
	return nc;
}

/* An fd bound to port 0 of every address: IPv6 and, through mapped
 * addresses, IPv4 (v6 true), or IPv4 only. */
static int sock_bind(bool v6)
{
	struct sockaddr_in6 any6 = {.sin6_family = AF_INET6};
	struct sockaddr_in any4 = {.sin_family = AF_INET};
	int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int off = 0, ret;

	if (fd < 0)
		return -errno;
	if ((v6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off)) < 0) ||
	    bind(fd, v6 ? (struct sockaddr *)&any6 : (struct sockaddr *)&any4,
		 v6 ? sizeof(any6) : sizeof(any4)) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	return fd;
}

/* A dual-stack socket when the host has IPv6, else an IPv4 one. */
static int sock_open(struct netcheck *nc)
{
	struct sockaddr_storage ss;
	int fd, ret, len = sizeof(ss);

	fd = sock_bind(true);
	nc->dual_stack = fd >= 0;
	if (fd < 0)
		fd = sock_bind(false);
	if (fd < 0)
		return fd;
	uv_udp_init(nc->loop, &nc->sock); /* cannot fail without flags */
	nc->sock.data = nc;
	nc->handles_open++;
	ret = uv_udp_open(&nc->sock, fd);
	if (ret < 0) {
		close(fd);
		return ret;
	}
	ret = uv_udp_recv_start(&nc->sock, on_alloc, on_recv);
	if (ret < 0)
		return ret;
	nc->sock_ready = true;
	if (uv_udp_getsockname(&nc->sock, (struct sockaddr *)&ss, &len) == 0)
		log_info("netcheck: STUN probes from UDP port %u (%s)",
			 ntohs(((struct sockaddr_in *)&ss)->sin_port),
			 nc->dual_stack ? "IPv4 and IPv6" : "IPv4 only");
	return 0;
}

int netcheck_new(uv_loop_t *loop, netcheck_send_fn *send, struct netcheck **out)
{
	struct netcheck *nc = alloc(loop, send);
	int ret = sock_open(nc);

	*out = NULL;
	if (ret < 0) {
		log_err_r(ret, "netcheck: open the STUN socket");
		netcheck_free(nc);
		return ret;
	}
	*out = nc;
	return 0;
}

void netcheck_free(struct netcheck *nc)
{
	if (!nc)
		return;
	nc->closing = true;
	while (nc->users)
		user_unlink(nc, nc->users);
	for (size_t i = 0; i < NETCHECK_MAPS; i++) {
		/* A timer's data is its map; on_closed counts on nc. */
		nc->maps[i].timer.data = nc;
		uv_close((uv_handle_t *)&nc->maps[i].timer, on_closed);
	}
	if (nc->handles_open > NETCHECK_MAPS)
		uv_close((uv_handle_t *)&nc->sock, on_closed);
}
