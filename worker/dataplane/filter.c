/* The tailnet packet filter: the compiled per-family rule lists, the
 * UDP/SCTP flow cache and the verdicts (rules are parsed in filter_rules.c).
 * Semantics follow upstream wgengine/filter (see filter.h); this file is our
 * own implementation of them. */
#include "filter.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "mem.h"

/* ---- Compiled filter ---------------------------------------------------- */

/* An address as two host-order 64-bit halves (IPv4 in the low 32 bits of
 * lo), and a prefix as a pre-masked address with its mask. */
struct fnet {
	uint64_t hi, lo, mhi, mlo;
};

struct fdst {
	struct fnet net;
	uint16_t first, last;
};

struct fmatch {
	uint32_t protos[8];
	struct fnet *srcs;
	size_t n_srcs;
	struct fnet *cap_srcs; /* addresses holding one of the rule's caps */
	size_t n_cap_srcs;
	struct fdst *dsts;
	size_t n_dsts;
};

struct ffamily {
	struct fmatch *m;
	size_t n;
	struct fnet *local;
	size_t n_local;
};

struct filter {
	struct ffamily fam[2]; /* [0] IPv4, [1] IPv6 */
	struct filter_state *state;
};

static void addr_halves(int family, const uint8_t *a, uint64_t *hi, uint64_t *lo)
{
	if (family == AF_INET) {
		*hi = 0;
		*lo = ((uint64_t)a[0] << 24) | ((uint64_t)a[1] << 16) | ((uint64_t)a[2] << 8) |
		      a[3];
		return;
	}
	*hi = *lo = 0;
	for (int i = 0; i < 8; i++) {
		*hi = (*hi << 8) | a[i];
		*lo = (*lo << 8) | a[8 + i];
	}
}

static struct fnet fnet_from(const struct ip_prefix *p)
{
	struct fnet n;

	addr_halves(p->family, p->addr, &n.hi, &n.lo);
	if (p->family == AF_INET) {
		n.mhi = 0;
		n.mlo = p->len ? (0xffffffffULL << (32 - p->len)) & 0xffffffffULL : 0;
	} else if (p->len <= 64) {
		n.mhi = p->len ? ~0ULL << (64 - p->len) : 0;
		n.mlo = 0;
	} else {
		n.mhi = ~0ULL;
		n.mlo = ~0ULL << (128 - p->len);
	}
	n.hi &= n.mhi;
	n.lo &= n.mlo;
	return n;
}

static bool fnet_contains(const struct fnet *n, uint64_t hi, uint64_t lo)
{
	return (hi & n->mhi) == n->hi && (lo & n->mlo) == n->lo;
}

static bool fnets_contain(const struct fnet *ns, size_t n, uint64_t hi, uint64_t lo)
{
	for (size_t i = 0; i < n; i++)
		if (fnet_contains(&ns[i], hi, lo))
			return true;
	return false;
}

static bool prefix_valid(const struct ip_prefix *p)
{
	return (p->family == AF_INET && p->len <= 32) || (p->family == AF_INET6 && p->len <= 128);
}

static int fam_index(int family)
{
	return family == AF_INET ? 0 : 1;
}

static void fmatch_destroy(struct fmatch *m)
{
	free(m->srcs);
	free(m->cap_srcs);
	free(m->dsts);
}

void filter_free(struct filter *f)
{
	if (!f)
		return;
	for (int i = 0; i < 2; i++) {
		for (size_t k = 0; k < f->fam[i].n; k++)
			fmatch_destroy(&f->fam[i].m[k]);
		free(f->fam[i].m);
		free(f->fam[i].local);
	}
	free(f);
}

/* upstream matchesFamily: the rule's sources and destinations of one family;
 * kept when it has a destination there and a source or a cap: source. */
static void compile_rule(struct ffamily *ff, int family, const struct filter_rule *r,
			 const struct filter_config *cfg)
{
	struct fmatch m = {0};

	memcpy(m.protos, r->protos, sizeof(m.protos));
	for (size_t i = 0; i < r->n_dsts; i++)
		if (r->dsts[i].net.family == family)
			m.n_dsts++;
	for (size_t i = 0; i < r->n_srcs; i++)
		if (r->srcs[i].family == family)
			m.n_srcs++;
	if (m.n_dsts == 0 || (m.n_srcs == 0 && r->n_src_caps == 0))
		return;
	m.dsts = xcalloc(m.n_dsts, sizeof(*m.dsts));
	m.n_dsts = 0;
	for (size_t i = 0; i < r->n_dsts; i++)
		if (r->dsts[i].net.family == family)
			m.dsts[m.n_dsts++] = (struct fdst){
				.net = fnet_from(&r->dsts[i].net),
				.first = r->dsts[i].first,
				.last = r->dsts[i].last,
			};
	if (m.n_srcs) {
		m.srcs = xcalloc(m.n_srcs, sizeof(*m.srcs));
		m.n_srcs = 0;
		for (size_t i = 0; i < r->n_srcs; i++)
			if (r->srcs[i].family == family)
				m.srcs[m.n_srcs++] = fnet_from(&r->srcs[i]);
	}
	/* Resolve cap: sources now: the data path then tests addresses only. */
	for (size_t c = 0; c < r->n_src_caps; c++) {
		for (size_t h = 0; h < cfg->n_caps; h++) {
			const struct filter_cap_holder *ch = &cfg->caps[h];

			if (ch->addr.family != family || !ch->cap ||
			    strcmp(ch->cap, r->src_caps[c]))
				continue;
			m.cap_srcs = xrealloc(m.cap_srcs, (m.n_cap_srcs + 1) * sizeof(*m.cap_srcs));
			m.cap_srcs[m.n_cap_srcs++] = fnet_from(&ch->addr);
		}
	}
	ff->m = xrealloc(ff->m, (ff->n + 1) * sizeof(*ff->m));
	ff->m[ff->n++] = m;
}

int filter_new(const struct filter_config *cfg, struct filter_state *state, struct filter **out,
	       const char **why)
{
	struct filter *f;

	*out = NULL;
	if (!state) {
		*why = "filter state missing";
		return -EINVAL;
	}
	for (size_t i = 0; i < cfg->n_local; i++) {
		if (!prefix_valid(&cfg->local[i])) {
			*why = "local prefix of unknown family or length";
			return -EINVAL;
		}
	}
	for (size_t i = 0; i < cfg->n_caps; i++) {
		if (!prefix_valid(&cfg->caps[i].addr)) {
			*why = "capability holder address of unknown family or length";
			return -EINVAL;
		}
	}
	f = xcalloc(1, sizeof(*f));
	f->state = state;
	for (size_t i = 0; i < cfg->n_local; i++) {
		struct ffamily *ff = &f->fam[fam_index(cfg->local[i].family)];

		ff->local = xrealloc(ff->local, (ff->n_local + 1) * sizeof(*ff->local));
		ff->local[ff->n_local++] = fnet_from(&cfg->local[i]);
	}
	if (cfg->rules && !cfg->shields_up) {
		for (size_t i = 0; i < cfg->rules->n_rules; i++) {
			compile_rule(&f->fam[0], AF_INET, &cfg->rules->rules[i], cfg);
			compile_rule(&f->fam[1], AF_INET6, &cfg->rules->rules[i], cfg);
		}
	}
	*out = f;
	return 0;
}

/* ---- Flow cache --------------------------------------------------------- */

enum flow_limits {
	FLOW_BUCKETS = 1024, /* power of two, twice FILTER_FLOW_MAX */
	FLOW_NONE = 0xffff,
};

/* Addresses as upstream's As16 (IPv4 as ::ffff:a.b.c.d), so a key is the same
 * bytes whichever family wrote it, as in upstream flowtrack.Tuple. */
struct flow_key {
	uint8_t src[16], dst[16];
	uint16_t sport, dport;
	uint8_t proto;
	uint8_t pad[3];
};
_Static_assert(sizeof(struct flow_key) == 40, "flow_key has no hidden padding");

struct flow_entry {
	struct flow_key key;
	uint16_t hnext;	       /* next in the bucket chain */
	uint16_t lprev, lnext; /* LRU list, most recent at lru_head */
	uint16_t bucket;
};

struct filter_state {
	pthread_mutex_t lock; /* guards everything below up to the counters */
	struct flow_entry e[FILTER_FLOW_MAX];
	uint16_t buckets[FLOW_BUCKETS];
	uint16_t lru_head, lru_tail, free_head, n;
	/* e[fresh..] were never used: taken in order once the free list is
	 * empty, so that an idle worker never writes (and so never holds) the
	 * pages of entries it does not need. */
	uint16_t fresh;
	uint8_t hash_key[crypto_shorthash_KEYBYTES];
	/* Counters: relaxed atomics, no lock. */
	atomic_uint_least64_t in_accept, out_accept;
	atomic_uint_least64_t in_drop[FILTER_REASON_COUNT];
	atomic_uint_least64_t out_drop[FILTER_REASON_COUNT];
};

static void flows_reset(struct filter_state *s)
{
	for (size_t i = 0; i < FLOW_BUCKETS; i++)
		s->buckets[i] = FLOW_NONE;
	s->free_head = FLOW_NONE;
	s->fresh = 0;
	s->lru_head = s->lru_tail = FLOW_NONE;
	s->n = 0;
}

/* Its own mapping: an idle worker holds the first page or two of the
 * 26 KiB (xmap_zeroed). */
struct filter_state *filter_state_new(void)
{
	struct filter_state *s = xmap_zeroed(sizeof(*s));

	if (sodium_init() < 0)
		abort();
	randombytes_buf(s->hash_key, sizeof(s->hash_key));
	pthread_mutex_init(&s->lock, NULL);
	flows_reset(s);
	return s;
}

void filter_state_free(struct filter_state *s)
{
	if (!s)
		return;
	pthread_mutex_destroy(&s->lock);
	xmap_free(s, sizeof(*s));
}

void filter_state_flush(struct filter_state *s)
{
	pthread_mutex_lock(&s->lock);
	flows_reset(s);
	pthread_mutex_unlock(&s->lock);
}

static uint16_t flow_bucket(const struct filter_state *s, const struct flow_key *k)
{
	uint8_t h[crypto_shorthash_BYTES];
	uint64_t v;

	/* Keyed SipHash: a peer cannot aim its flows at one chain. */
	crypto_shorthash(h, (const uint8_t *)k, sizeof(*k), s->hash_key);
	memcpy(&v, h, sizeof(v));
	return (uint16_t)(v & (FLOW_BUCKETS - 1));
}

static void lru_unlink(struct filter_state *s, uint16_t i)
{
	struct flow_entry *e = &s->e[i];

	if (e->lprev != FLOW_NONE)
		s->e[e->lprev].lnext = e->lnext;
	else
		s->lru_head = e->lnext;
	if (e->lnext != FLOW_NONE)
		s->e[e->lnext].lprev = e->lprev;
	else
		s->lru_tail = e->lprev;
}

static void lru_push_front(struct filter_state *s, uint16_t i)
{
	struct flow_entry *e = &s->e[i];

	e->lprev = FLOW_NONE;
	e->lnext = s->lru_head;
	if (s->lru_head != FLOW_NONE)
		s->e[s->lru_head].lprev = i;
	s->lru_head = i;
	if (s->lru_tail == FLOW_NONE)
		s->lru_tail = i;
}

static uint16_t flow_find(const struct filter_state *s, const struct flow_key *k, uint16_t b)
{
	for (uint16_t i = s->buckets[b]; i != FLOW_NONE; i = s->e[i].hnext)
		if (!memcmp(&s->e[i].key, k, sizeof(*k)))
			return i;
	return FLOW_NONE;
}

static void flow_evict_oldest(struct filter_state *s)
{
	uint16_t i = s->lru_tail, *pp;

	lru_unlink(s, i);
	for (pp = &s->buckets[s->e[i].bucket]; *pp != i; pp = &s->e[*pp].hnext)
		;
	*pp = s->e[i].hnext;
	s->e[i].hnext = s->free_head;
	s->free_head = i;
	s->n--;
}

/* Caller holds the lock. Upstream flowtrack.Cache.Get: a hit becomes the
 * most recently used entry. */
static bool flow_get(struct filter_state *s, const struct flow_key *k)
{
	uint16_t i = flow_find(s, k, flow_bucket(s, k));

	if (i == FLOW_NONE)
		return false;
	lru_unlink(s, i);
	lru_push_front(s, i);
	return true;
}

/* Caller holds the lock. flowtrack.Cache.Add with MaxEntries 512. */
static void flow_add(struct filter_state *s, const struct flow_key *k)
{
	uint16_t b = flow_bucket(s, k), i = flow_find(s, k, b);

	if (i != FLOW_NONE) {
		lru_unlink(s, i);
		lru_push_front(s, i);
		return;
	}
	if (s->n == FILTER_FLOW_MAX)
		flow_evict_oldest(s);
	if (s->free_head != FLOW_NONE) {
		i = s->free_head;
		s->free_head = s->e[i].hnext;
	} else {
		i = s->fresh++; /* n < FILTER_FLOW_MAX: one is left */
	}
	s->e[i].key = *k;
	s->e[i].bucket = b;
	s->e[i].hnext = s->buckets[b];
	s->buckets[b] = i;
	lru_push_front(s, i);
	s->n++;
}

static void as16(const struct packet *p, const uint8_t *a, uint8_t out[16])
{
	if (p->version == 4) {
		static const uint8_t mapped[12] = {[10] = 0xff, [11] = 0xff};

		memcpy(out, mapped, 12);
		memcpy(out + 12, a, 4);
	} else {
		memcpy(out, a, 16);
	}
}

/* The flow key of (src, dst) as seen in p, or reversed. */
static void flow_key_of(const struct packet *p, bool reverse, struct flow_key *k)
{
	memset(k, 0, sizeof(*k));
	k->proto = p->proto;
	as16(p, reverse ? p->dst : p->src, k->src);
	as16(p, reverse ? p->src : p->dst, k->dst);
	k->sport = reverse ? p->dst_port : p->src_port;
	k->dport = reverse ? p->src_port : p->dst_port;
}

/* ---- Verdicts ----------------------------------------------------------- */

/* For ::ffff:a.b.c.d, netip tests the IPv4 address (Unmap). */
static const uint8_t *v4_of(const struct packet *p, const uint8_t *a)
{
	static const uint8_t mapped[12] = {[10] = 0xff, [11] = 0xff};

	if (p->version == 4)
		return a;
	if (!memcmp(a, mapped, sizeof(mapped)))
		return a + 12;
	return NULL;
}

static bool dst_multicast(const struct packet *p)
{
	const uint8_t *v4 = v4_of(p, p->dst);

	if (v4)
		return (v4[0] & 0xf0) == 0xe0;
	return p->dst[0] == 0xff;
}

/* Link-local unicast other than 169.254.169.254 (GCP metadata/DNS), which
 * upstream allows only as a true IPv4 address. */
static bool dst_link_local_denied(const struct packet *p)
{
	const uint8_t *v4 = v4_of(p, p->dst);

	if (v4) {
		if (v4[0] != 169 || v4[1] != 254)
			return false;
		return !(p->version == 4 && v4[2] == 169 && v4[3] == 254);
	}
	return p->dst[0] == 0xfe && (p->dst[1] & 0xc0) == 0x80;
}

enum pre_result { PRE_ACCEPT, PRE_DROP, PRE_CONTINUE };

/* Upstream pre(): the direction-agnostic checks. */
static enum pre_result pre(const struct packet *p, enum filter_reason *reason)
{
	*reason = FILTER_REASON_NONE;
	if (p->buf_len == 0)
		return PRE_ACCEPT; /* WireGuard keepalive */
	if (p->buf_len < PACKET_IP4_HDR_LEN) {
		*reason = FILTER_REASON_TOO_SHORT;
		return PRE_DROP;
	}
	if (p->proto == PACKET_PROTO_UNKNOWN) {
		*reason = FILTER_REASON_UNKNOWN_PROTOCOL;
		return PRE_DROP;
	}
	if (dst_multicast(p)) {
		*reason = FILTER_REASON_MULTICAST;
		return PRE_DROP;
	}
	if (dst_link_local_denied(p)) {
		*reason = FILTER_REASON_LINK_LOCAL;
		return PRE_DROP;
	}
	if (p->proto == PACKET_PROTO_FRAGMENT)
		return PRE_ACCEPT; /* later fragments carry no ports to judge */
	return PRE_CONTINUE;
}

static bool proto_in(const uint32_t protos[8], uint8_t proto)
{
	return (protos[proto / 32] >> (proto % 32)) & 1;
}

struct addrs {
	uint64_t shi, slo, dhi, dlo;
};

static bool src_matches(const struct fmatch *m, const struct addrs *a)
{
	return fnets_contain(m->srcs, m->n_srcs, a->shi, a->slo) ||
	       fnets_contain(m->cap_srcs, m->n_cap_srcs, a->shi, a->slo);
}

/* upstream matches.match: protocol, source (or cap), destination and port. */
static bool match_full(const struct ffamily *ff, const struct packet *p, const struct addrs *a)
{
	for (size_t i = 0; i < ff->n; i++) {
		const struct fmatch *m = &ff->m[i];

		if (!proto_in(m->protos, p->proto) || !src_matches(m, a))
			continue;
		for (size_t d = 0; d < m->n_dsts; d++) {
			const struct fdst *dst = &m->dsts[d];

			if (fnet_contains(&dst->net, a->dhi, a->dlo) && p->dst_port >= dst->first &&
			    p->dst_port <= dst->last)
				return true;
		}
	}
	return false;
}

/* upstream matchIPsOnly: any rule from src to dst whatever the protocol and
 * port, or any rule (of this family) with a cap: source src holds, whatever
 * the destination. */
static bool match_ips_only(const struct ffamily *ff, const struct addrs *a)
{
	for (size_t i = 0; i < ff->n; i++) {
		const struct fmatch *m = &ff->m[i];

		if (!fnets_contain(m->srcs, m->n_srcs, a->shi, a->slo))
			continue;
		for (size_t d = 0; d < m->n_dsts; d++)
			if (fnet_contains(&m->dsts[d].net, a->dhi, a->dlo))
				return true;
	}
	for (size_t i = 0; i < ff->n; i++)
		if (fnets_contain(ff->m[i].cap_srcs, ff->m[i].n_cap_srcs, a->shi, a->slo))
			return true;
	return false;
}

/* upstream matchProtoAndIPsOnlyIfAllPorts (no cap: sources). */
static bool match_proto_all_ports(const struct ffamily *ff, const struct packet *p,
				  const struct addrs *a)
{
	for (size_t i = 0; i < ff->n; i++) {
		const struct fmatch *m = &ff->m[i];

		if (!proto_in(m->protos, p->proto) ||
		    !fnets_contain(m->srcs, m->n_srcs, a->shi, a->slo))
			continue;
		for (size_t d = 0; d < m->n_dsts; d++) {
			const struct fdst *dst = &m->dsts[d];

			if (dst->first == 0 && dst->last == 65535 &&
			    fnet_contains(&dst->net, a->dhi, a->dlo))
				return true;
		}
	}
	return false;
}

static enum filter_verdict run_in(const struct filter *f, const struct packet *p,
				  enum filter_reason *reason)
{
	const struct ffamily *ff;
	struct flow_key k;
	struct addrs a;
	bool hit;
	int family;

	switch (pre(p, reason)) {
	case PRE_ACCEPT:
		return FILTER_ACCEPT;
	case PRE_DROP:
		return FILTER_DROP;
	case PRE_CONTINUE:
		break;
	}
	family = p->version == 4 ? AF_INET : AF_INET6;
	ff = &f->fam[fam_index(family)];
	addr_halves(family, p->src, &a.shi, &a.slo);
	addr_halves(family, p->dst, &a.dhi, &a.dlo);
	/* A peer may only send to addresses we advertised. */
	if (!fnets_contain(ff->local, ff->n_local, a.dhi, a.dlo)) {
		*reason = FILTER_REASON_NOT_LOCAL;
		return FILTER_DROP;
	}
	/* ICMPv6 inside IPv4 (or the reverse) is just another protocol. */
	if (p->proto == (family == AF_INET ? PACKET_PROTO_ICMP4 : PACKET_PROTO_ICMP6)) {
		if (packet_is_icmp_echo_reply(p) || packet_is_icmp_error(p))
			return FILTER_ACCEPT;
		if (match_ips_only(ff, &a))
			return FILTER_ACCEPT;
		*reason = FILTER_REASON_ACL;
		return FILTER_DROP;
	}
	switch (p->proto) {
	case PACKET_PROTO_TCP:
		/* Only a SYN can open a connection; everything else passes. */
		if (!packet_is_tcp_syn(p) || match_full(ff, p, &a))
			return FILTER_ACCEPT;
		break;
	case PACKET_PROTO_UDP:
	case PACKET_PROTO_SCTP:
		flow_key_of(p, false, &k);
		pthread_mutex_lock(&f->state->lock);
		hit = flow_get(f->state, &k);
		pthread_mutex_unlock(&f->state->lock);
		if (hit || match_full(ff, p, &a))
			return FILTER_ACCEPT;
		break;
	case PACKET_PROTO_TSMP:
		return FILTER_ACCEPT;
	default:
		if (match_proto_all_ports(ff, p, &a))
			return FILTER_ACCEPT;
		break;
	}
	*reason = FILTER_REASON_ACL;
	return FILTER_DROP;
}

enum filter_verdict filter_run_in(const struct filter *f, const struct packet *p,
				  enum filter_reason *reason)
{
	enum filter_verdict v = run_in(f, p, reason);

	if (v == FILTER_ACCEPT)
		atomic_fetch_add_explicit(&f->state->in_accept, 1, memory_order_relaxed);
	else
		atomic_fetch_add_explicit(&f->state->in_drop[*reason], 1, memory_order_relaxed);
	return v;
}

enum filter_verdict filter_run_out(const struct filter *f, const struct packet *p,
				   enum filter_reason *reason)
{
	struct flow_key k;

	switch (pre(p, reason)) {
	case PRE_ACCEPT:
		atomic_fetch_add_explicit(&f->state->out_accept, 1, memory_order_relaxed);
		return FILTER_ACCEPT;
	case PRE_DROP:
		atomic_fetch_add_explicit(&f->state->out_drop[*reason], 1, memory_order_relaxed);
		return FILTER_DROP;
	case PRE_CONTINUE:
		break;
	}
	if (p->proto == PACKET_PROTO_UDP || p->proto == PACKET_PROTO_SCTP) {
		/* Remember the reply's tuple so that it is let back in. */
		flow_key_of(p, true, &k);
		pthread_mutex_lock(&f->state->lock);
		flow_add(f->state, &k);
		pthread_mutex_unlock(&f->state->lock);
	}
	atomic_fetch_add_explicit(&f->state->out_accept, 1, memory_order_relaxed);
	return FILTER_ACCEPT;
}

void filter_state_stats(struct filter_state *s, struct filter_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->in_accept = atomic_load_explicit(&s->in_accept, memory_order_relaxed);
	out->out_accept = atomic_load_explicit(&s->out_accept, memory_order_relaxed);
	for (size_t i = 0; i < FILTER_REASON_COUNT; i++) {
		out->in_drop[i] = atomic_load_explicit(&s->in_drop[i], memory_order_relaxed);
		out->out_drop[i] = atomic_load_explicit(&s->out_drop[i], memory_order_relaxed);
	}
	pthread_mutex_lock(&s->lock);
	out->flows = s->n;
	pthread_mutex_unlock(&s->lock);
}

const char *filter_reason_name(enum filter_reason r)
{
	switch (r) {
	case FILTER_REASON_NONE:
		return "none";
	case FILTER_REASON_TOO_SHORT:
		return "too_short";
	case FILTER_REASON_UNKNOWN_PROTOCOL:
		return "unknown_protocol";
	case FILTER_REASON_MULTICAST:
		return "multicast";
	case FILTER_REASON_LINK_LOCAL:
		return "link_local_unicast";
	case FILTER_REASON_NOT_LOCAL:
		return "destination_not_local";
	case FILTER_REASON_ACL:
		return "acl";
	case FILTER_REASON_COUNT:
		break;
	}
	return "?";
}
