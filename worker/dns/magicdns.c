/* MagicDNS: the table of names built from the netmap, and the answers
 * quad-100 gives from it (see magicdns.h for what is answered how). */
#include "magicdns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "dns_wire.h"
#include "mem.h"

/* A name of the table and its addresses, addrs[first .. first + n) in the
 * order they were given (the first A is the one tailscaled would give). */
struct mdns_name {
	uint32_t off; /* wire form at arena + off, case as given */
	uint8_t len;
	uint32_t first, n;
};

/* An address and the name a PTR query for it gets. */
struct mdns_rev {
	struct ip_prefix addr;
	uint32_t name;
};

struct mdns_domain {
	uint32_t off;
	uint8_t len;
	uint32_t index; /* split domains: the caller's index */
};

/* Immutable once built: magicdns_answer() only reads it. names is sorted
 * by name_cmp(), rev by addr_cmp(); domains keep the order given. */
struct magicdns {
	uint8_t *arena;
	struct mdns_name *names;
	size_t n_names;
	struct ip_prefix *addrs;
	struct mdns_rev *rev;
	size_t n_rev;
	struct mdns_domain *domains;
	size_t n_domains;
	struct mdns_domain *split; /* split-DNS suffixes with their own resolvers */
	size_t n_split;
	bool have_upstream;
};

/* "magicdns.localhost-tailscale-daemon.": tailscaled's name for quad-100,
 * the answer to a PTR query for its addresses and back. */
static const uint8_t symbolic_name[] = "\x08"
				       "magicdns"
				       "\x1a"
				       "localhost-tailscale-daemon";
static const struct ip_prefix quad100[] = {
	{.family = AF_INET, .len = 32, .addr = {100, 100, 100, 100}},
	{.family = AF_INET6, .len = 128, .addr = {0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0, [15] = 0x53}},
};
/* fd7a:115c:a1e0:ab12:4843:cd96:6200::/104, where control maps each
 * 100.x.y.z to an IPv6 address (tsaddr.Tailscale4To6Range). */
static const uint8_t range_4to6[13] = {0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0, 0xab,
				       0x12, 0x48, 0x43, 0xcd, 0x96, 0x62};

/* Names. A wire name here is always well formed: the table's were built by
 * name_to_wire(), a query's checked by dns_wire_parse_query(). */

static uint8_t fold(uint8_t c)
{
	return c >= 'A' && c <= 'Z' ? (uint8_t)(c - 'A' + 'a') : c;
}

/* Orders wire names without regard to ASCII case. Length bytes (at most
 * 63) are below 'A' and never folded, so two names compare equal exactly
 * when they have the same labels. */
static int name_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	size_t n = alen < blen ? alen : blen;

	for (size_t i = 0; i < n; i++) {
		uint8_t ca = fold(a[i]), cb = fold(b[i]);

		if (ca != cb)
			return ca < cb ? -1 : 1;
	}
	return (alen > blen) - (alen < blen);
}

static bool label_is(const uint8_t *label, const char *want)
{
	size_t n = strlen(want);

	return label[0] == n && name_cmp(label + 1, n, (const uint8_t *)want, n) == 0;
}

/* True when name is dom or lies under it (label-wise). */
static bool name_in(const uint8_t *name, size_t len, const uint8_t *dom, size_t dlen)
{
	for (size_t p = 0;; p += 1 + (size_t)name[p]) {
		if (len - p == dlen && name_cmp(name + p, dlen, dom, dlen) == 0)
			return true;
		if (name[p] == 0)
			return false;
	}
}

static size_t count_labels(const uint8_t *name)
{
	size_t n = 0;

	for (size_t p = 0; name[p]; p += 1 + (size_t)name[p])
		n++;
	return n;
}

/* "peer1.tail1234.ts.net." (the trailing dot optional) into wire form in
 * out. Returns the wire length, or 0 when s is no usable name: empty, an
 * empty label, a label over 63 bytes, over 253 bytes in all. "." is the
 * root, allowed only where allow_root says so (a local domain). */
static size_t name_to_wire(const char *s, uint8_t out[static DNS_NAME_MAX], bool allow_root)
{
	size_t n, o = 0, start = 0;

	if (!s || !*s)
		return 0;
	n = strnlen(s, MAGICDNS_NAME_MAX + 2);
	if (s[n - 1] == '.')
		n--;
	if (n == 0) {
		if (!allow_root)
			return 0;
		out[0] = 0;
		return 1;
	}
	if (n > MAGICDNS_NAME_MAX)
		return 0;
	for (size_t i = 0; i <= n; i++) {
		size_t l;

		if (i < n && s[i] != '.')
			continue;
		l = i - start;
		if (l == 0 || l > MAGICDNS_LABEL_MAX)
			return 0;
		out[o++] = (uint8_t)l;
		memcpy(out + o, s + start, l);
		o += l;
		start = i + 1;
	}
	out[o++] = 0;
	return o; /* n + 2 <= DNS_NAME_MAX */
}

/* Addresses. Unused bytes of an IPv4 address are zero, so addr_cmp() can
 * compare all 16. */

static int addr_cmp(const struct ip_prefix *a, const struct ip_prefix *b)
{
	if (a->family != b->family)
		return a->family < b->family ? -1 : 1;
	return memcmp(a->addr, b->addr, sizeof(a->addr));
}

static bool addr_from_prefix(const struct ip_prefix *p, struct ip_prefix *out)
{
	memset(out, 0, sizeof(*out));
	if (p->family == AF_INET && p->len == 32) {
		memcpy(out->addr, p->addr, 4);
	} else if (p->family == AF_INET6 && p->len == 128) {
		memcpy(out->addr, p->addr, 16);
	} else {
		return false;
	}
	out->family = p->family;
	out->len = p->len;
	return true;
}

/* An extra record's value: an address as text, nothing else (no prefix
 * length, no zone). */
static bool addr_parse(const char *s, struct ip_prefix *out)
{
	memset(out, 0, sizeof(*out));
	if (!s)
		return false;
	if (inet_pton(AF_INET, s, out->addr) == 1) {
		out->family = AF_INET;
		out->len = 32;
		return true;
	}
	if (inet_pton(AF_INET6, s, out->addr) == 1) {
		out->family = AF_INET6;
		out->len = 128;
		return true;
	}
	return false;
}

/* Building the table. */

/* One (name, address) pair as given; seq is its place in the input,
 * hosts before extra records. */
struct build_rec {
	const uint8_t *arena_base; /* for sorting: rec name at *arena_base + off */
	uint32_t off;
	uint8_t len;
	uint32_t seq;
	struct ip_prefix addr;
};

struct arena {
	uint8_t *buf;
	size_t len, cap;
};

static uint32_t arena_add(struct arena *a, const uint8_t *p, size_t n)
{
	size_t off = a->len;

	if (a->cap - a->len < n) {
		size_t cap = a->cap ? a->cap : 4096;

		while (cap - a->len < n)
			cap *= 2;
		a->buf = xrealloc(a->buf, cap);
		a->cap = cap;
	}
	memcpy(a->buf + off, p, n);
	a->len += n;
	/* At most (MAGICDNS_MAX_RECORDS + MAGICDNS_MAX_DOMAINS) names of
	 * DNS_NAME_MAX bytes: well inside 32 bits. */
	return (uint32_t)off;
}

/* qsort has no context argument; the arena is reached through each
 * record, set once the arena stops moving. */
static const uint8_t *rec_name(const struct build_rec *r)
{
	return r->arena_base + r->off;
}

/* By name, then address, then input order: the first of each run of equal
 * (name, address) is the one to keep. */
static int rec_cmp_dedupe(const void *pa, const void *pb)
{
	const struct build_rec *a = pa, *b = pb;
	int c = name_cmp(rec_name(a), a->len, rec_name(b), b->len);

	if (c == 0)
		c = addr_cmp(&a->addr, &b->addr);
	if (c == 0)
		c = (a->seq > b->seq) - (a->seq < b->seq);
	return c;
}

/* By name, then input order: each name's addresses in the order given. */
static int rec_cmp_name(const void *pa, const void *pb)
{
	const struct build_rec *a = pa, *b = pb;
	int c = name_cmp(rec_name(a), a->len, rec_name(b), b->len);

	if (c == 0)
		c = (a->seq > b->seq) - (a->seq < b->seq);
	return c;
}

struct build_rev {
	struct ip_prefix addr;
	uint32_t name, seq;
};

static int rev_cmp_build(const void *pa, const void *pb)
{
	const struct build_rev *a = pa, *b = pb;
	int c = addr_cmp(&a->addr, &b->addr);

	if (c == 0)
		c = (a->seq > b->seq) - (a->seq < b->seq);
	return c;
}

/* Gathers the usable (name, address) pairs of cfg into recs (room for
 * every address cfg lists) and their names into the arena. Returns how
 * many; counts the unusable in *bad. */
static size_t gather(const struct magicdns_config *cfg, struct arena *arena, struct build_rec *recs,
		     size_t *bad)
{
	uint8_t wire[DNS_NAME_MAX];
	size_t n = 0;
	uint32_t seq = 0;

	for (size_t i = 0; i < cfg->n_hosts; i++) {
		const struct magicdns_host *h = &cfg->hosts[i];
		size_t len;
		uint32_t off;

		/* A node without addresses has no records (tailscaled
		 * skips it too); that is not an error. */
		if (h->n_addrs == 0)
			continue;
		len = name_to_wire(h->name, wire, false);
		if (!len) {
			(*bad)++;
			continue;
		}
		off = arena_add(arena, wire, len);
		for (size_t j = 0; j < h->n_addrs; j++) {
			struct build_rec *r = &recs[n];

			if (!addr_from_prefix(&h->addrs[j], &r->addr)) {
				(*bad)++;
				continue;
			}
			r->off = off;
			r->len = (uint8_t)len;
			r->seq = seq++;
			n++;
		}
	}
	for (size_t i = 0; i < cfg->n_extra; i++) {
		const struct magicdns_extra_record *e = &cfg->extra[i];
		const char *type = e->type ? e->type : "";
		struct build_rec *r = &recs[n];
		size_t len;

		/* tailscaled takes the family from the value whatever the
		 * type says, and skips other types. */
		if ((strcmp(type, "") != 0 && strcmp(type, "A") != 0 &&
		     strcmp(type, "AAAA") != 0) ||
		    !addr_parse(e->value, &r->addr) ||
		    !(len = name_to_wire(e->name, wire, false))) {
			(*bad)++;
			continue;
		}
		r->off = arena_add(arena, wire, len);
		r->len = (uint8_t)len;
		r->seq = seq++;
		n++;
	}
	return n;
}

/* Turns recs[0..n) into m->names and m->addrs, dropping repeated
 * addresses of one name, then m->rev. recs is reordered. */
static void index_records(struct magicdns *m, struct build_rec *recs, size_t n)
{
	struct build_rev *rev;
	size_t kept = 0;

	for (size_t i = 0; i < n; i++)
		recs[i].arena_base = m->arena;
	qsort(recs, n, sizeof(*recs), rec_cmp_dedupe);
	for (size_t i = 0; i < n; i++) {
		const struct build_rec *prev = kept > 0 ? &recs[kept - 1] : NULL;

		if (prev && addr_cmp(&prev->addr, &recs[i].addr) == 0 &&
		    name_cmp(rec_name(prev), prev->len, rec_name(&recs[i]), recs[i].len) == 0)
			continue;
		recs[kept++] = recs[i];
	}
	qsort(recs, kept, sizeof(*recs), rec_cmp_name);

	m->names = xcalloc(kept ? kept : 1, sizeof(*m->names));
	m->addrs = xcalloc(kept ? kept : 1, sizeof(*m->addrs));
	rev = xcalloc(kept ? kept : 1, sizeof(*rev));
	for (size_t i = 0; i < kept; i++) {
		struct mdns_name *nm;

		if (i == 0 || name_cmp(rec_name(&recs[i - 1]), recs[i - 1].len, rec_name(&recs[i]),
				       recs[i].len) != 0) {
			nm = &m->names[m->n_names++];
			nm->off = recs[i].off;
			nm->len = recs[i].len;
			nm->first = (uint32_t)i;
		}
		nm = &m->names[m->n_names - 1];
		nm->n++;
		m->addrs[i] = recs[i].addr;
		rev[i] = (struct build_rev){
			.addr = recs[i].addr,
			.name = (uint32_t)(m->n_names - 1),
			.seq = recs[i].seq,
		};
	}

	/* An address given for several names answers PTR with the first. */
	qsort(rev, kept, sizeof(*rev), rev_cmp_build);
	m->rev = xcalloc(kept ? kept : 1, sizeof(*m->rev));
	for (size_t i = 0; i < kept; i++) {
		if (m->n_rev > 0 && addr_cmp(&m->rev[m->n_rev - 1].addr, &rev[i].addr) == 0)
			continue;
		m->rev[m->n_rev++] = (struct mdns_rev){.addr = rev[i].addr, .name = rev[i].name};
	}
	free(rev);
}

int magicdns_new(const struct magicdns_config *cfg, struct magicdns **out, size_t *skipped,
		 const char **why)
{
	struct arena arena = {0};
	struct build_rec *recs;
	struct magicdns *m;
	size_t total = 0, bad = 0, n;
	uint8_t wire[DNS_NAME_MAX];

	*out = NULL;
	if (skipped)
		*skipped = 0;
	/* Sizes come from the netmap: capped before anything is allocated. */
	for (size_t i = 0; i < cfg->n_hosts; i++) {
		if (cfg->hosts[i].n_addrs > MAGICDNS_MAX_RECORDS - total) {
			*why = "more MagicDNS records than MAGICDNS_MAX_RECORDS";
			return -E2BIG;
		}
		total += cfg->hosts[i].n_addrs;
	}
	if (cfg->n_extra > MAGICDNS_MAX_RECORDS - total) {
		*why = "more MagicDNS records than MAGICDNS_MAX_RECORDS";
		return -E2BIG;
	}
	total += cfg->n_extra;
	if (cfg->n_local_domains > MAGICDNS_MAX_DOMAINS || cfg->n_split > MAGICDNS_MAX_DOMAINS) {
		*why = "more MagicDNS local domains than MAGICDNS_MAX_DOMAINS";
		return -E2BIG;
	}

	m = xcalloc(1, sizeof(*m));
	m->have_upstream = cfg->have_upstream;
	recs = xcalloc(total ? total : 1, sizeof(*recs));
	n = gather(cfg, &arena, recs, &bad);
	m->domains = xcalloc(cfg->n_local_domains ? cfg->n_local_domains : 1, sizeof(*m->domains));
	for (size_t i = 0; i < cfg->n_local_domains; i++) {
		size_t len = name_to_wire(cfg->local_domains[i], wire, true);

		if (!len) {
			bad++;
			continue;
		}
		m->domains[m->n_domains++] = (struct mdns_domain){
			.off = arena_add(&arena, wire, len),
			.len = (uint8_t)len,
		};
	}
	m->split = xcalloc(cfg->n_split ? cfg->n_split : 1, sizeof(*m->split));
	for (size_t i = 0; i < cfg->n_split; i++) {
		size_t len = name_to_wire(cfg->split[i], wire, true);

		if (!len) {
			bad++;
			continue;
		}
		m->split[m->n_split++] = (struct mdns_domain){
			.off = arena_add(&arena, wire, len),
			.len = (uint8_t)len,
			.index = (uint32_t)i,
		};
	}
	m->arena = arena.buf; /* no longer moves */
	index_records(m, recs, n);
	free(recs);
	if (skipped)
		*skipped = bad;
	*out = m;
	return 0;
}

void magicdns_free(struct magicdns *m)
{
	if (!m)
		return;
	free(m->arena);
	free(m->names);
	free(m->addrs);
	free(m->rev);
	free(m->domains);
	free(m->split);
	free(m);
}

/* Lookups. */

static const struct mdns_name *find_name(const struct magicdns *m, const uint8_t *name, size_t len)
{
	size_t lo = 0, hi = m->n_names;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct mdns_name *nm = &m->names[mid];
		int c = name_cmp(name, len, m->arena + nm->off, nm->len);

		if (c == 0)
			return nm;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* A single label ("peer1.") under each local domain in turn, as
 * tailscaled answers a node's short name. */
static const struct mdns_name *find_bare(const struct magicdns *m, const uint8_t *name)
{
	uint8_t full[DNS_NAME_MAX];
	size_t label = 1 + (size_t)name[0];

	memcpy(full, name, label);
	for (size_t i = 0; i < m->n_domains; i++) {
		const struct mdns_domain *d = &m->domains[i];
		const struct mdns_name *nm;

		if (label + d->len > DNS_NAME_MAX)
			continue;
		memcpy(full + label, m->arena + d->off, d->len);
		nm = find_name(m, full, label + d->len);
		if (nm)
			return nm;
	}
	return NULL;
}

static bool in_local_domain(const struct magicdns *m, const uint8_t *name, size_t len)
{
	for (size_t i = 0; i < m->n_domains; i++) {
		const struct mdns_domain *d = &m->domains[i];

		if (name_in(name, len, m->arena + d->off, d->len))
			return true;
	}
	return false;
}

/* The split domain with the longest suffix of name, or -1. */
static int split_for(const struct magicdns *m, const uint8_t *name, size_t len)
{
	int best = -1;
	uint8_t best_len = 0;

	for (size_t i = 0; i < m->n_split; i++) {
		const struct mdns_domain *d = &m->split[i];

		if (d->len > best_len && name_in(name, len, m->arena + d->off, d->len)) {
			best = (int)d->index;
			best_len = d->len;
		}
	}
	return best;
}

/* The name for a PTR answer for addr, or NULL. */
static const uint8_t *find_ptr(const struct magicdns *m, const struct ip_prefix *addr, size_t *len)
{
	size_t lo = 0, hi = m->n_rev;

	for (size_t i = 0; i < sizeof(quad100) / sizeof(quad100[0]); i++) {
		if (addr_cmp(addr, &quad100[i]) == 0) {
			*len = sizeof(symbolic_name);
			return symbolic_name;
		}
	}
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = addr_cmp(addr, &m->rev[mid].addr);

		if (c == 0) {
			const struct mdns_name *nm = &m->names[m->rev[mid].name];

			*len = nm->len;
			return m->arena + nm->off;
		}
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* d.c.b.a.in-addr.arpa. (decimal octets without leading zeros, as Go's
 * netip.ParseAddr wants them) or the 32 nibbles of ip6.arpa., least
 * significant first. Anything else, a partial reverse zone included, is no
 * address. */
static bool parse_reverse(const uint8_t *name, struct ip_prefix *out)
{
	const uint8_t *labels[35];
	size_t n = 0;

	memset(out, 0, sizeof(*out));
	for (size_t p = 0; name[p]; p += 1 + (size_t)name[p]) {
		if (n == sizeof(labels) / sizeof(labels[0]))
			return false;
		labels[n++] = name + p;
	}
	if (n == 6 && label_is(labels[4], "in-addr") && label_is(labels[5], "arpa")) {
		for (size_t i = 0; i < 4; i++) {
			const uint8_t *l = labels[i];
			unsigned int v = 0;

			if (l[0] < 1 || l[0] > 3 || (l[0] > 1 && l[1] == '0'))
				return false;
			for (size_t j = 1; j <= l[0]; j++) {
				if (l[j] < '0' || l[j] > '9')
					return false;
				v = v * 10 + (l[j] - '0');
			}
			if (v > 255)
				return false;
			out->addr[3 - i] = (uint8_t)v;
		}
		out->family = AF_INET;
		out->len = 32;
		return true;
	}
	if (n == 34 && label_is(labels[32], "ip6") && label_is(labels[33], "arpa")) {
		for (size_t i = 0; i < 32; i++) {
			uint8_t c, v;

			if (labels[i][0] != 1)
				return false;
			c = fold(labels[i][1]);
			if (c >= '0' && c <= '9')
				v = c - '0';
			else if (c >= 'a' && c <= 'f')
				v = c - 'a' + 10;
			else
				return false;
			out->addr[15 - i / 2] |= i % 2 ? (uint8_t)(v << 4) : v;
		}
		out->family = AF_INET6;
		out->len = 128;
		return true;
	}
	return false;
}

static bool in_tailscale_range(const struct ip_prefix *a)
{
	return ip_prefix_contains(a->family == AF_INET ? &ip_tailscale_v4 : &ip_tailscale_v6, a);
}

/* RFC 6763's five browsing names (b, db, r, dr, lb ._dns-sd._udp.):
 * tailscaled sends these upstream even under a reverse zone of ours. */
static bool is_bonjour(const uint8_t *name)
{
	static const char *const first[] = {"b", "db", "r", "dr", "lb"};
	const uint8_t *second, *third;
	bool match = false;

	for (size_t i = 0; i < sizeof(first) / sizeof(first[0]); i++)
		match |= label_is(name, first[i]);
	if (!match)
		return false;
	second = name + 1 + name[0];
	if (!label_is(second, "_dns-sd"))
		return false;
	third = second + 1 + second[0];
	return label_is(third, "_udp");
}

/* Resolution: what the table says about a query, before any bytes. */

struct resolution {
	bool ours;		       /* false: forward, or REFUSED without upstream */
	uint8_t rcode;		       /* ours: NOERROR, NXDOMAIN or NOTIMP */
	const struct ip_prefix *addrs; /* candidates for A, AAAA, ANY */
	size_t n_addrs;
	const uint8_t *ptr; /* the PTR answer's name, wire form */
	size_t ptr_len;
};

static void resolve_known(const struct dns_query *dq, const struct ip_prefix *addrs, size_t n,
			  struct resolution *r)
{
	r->ours = true;
	switch (dq->qtype) {
	case DNS_TYPE_NS:
	case DNS_TYPE_SOA:
	case DNS_TYPE_AXFR:
	case DNS_TYPE_HINFO:
		/* As tailscaled: types about delegation and zones. */
		r->rcode = DNS_RCODE_NOTIMP;
		return;
	}
	r->rcode = DNS_RCODE_NOERROR;
	if (dq->qclass != DNS_CLASS_IN && dq->qclass != DNS_CLASS_ANY)
		return;
	r->addrs = addrs;
	r->n_addrs = n;
}

static void resolve_name(const struct magicdns *m, const struct dns_query *dq, struct resolution *r)
{
	const uint8_t *name = dq->qname;
	size_t len = dq->qname_len, labels = count_labels(name);
	const struct mdns_name *nm;

	/* RFC 7686: .onion never resolves through DNS. */
	if (labels >= 2) {
		const uint8_t *last = name;

		for (size_t i = 1; i < labels; i++)
			last += 1 + last[0];
		if (label_is(last, "onion")) {
			r->ours = true;
			r->rcode = DNS_RCODE_NXDOMAIN;
			return;
		}
	}
	if (name_cmp(name, len, symbolic_name, sizeof(symbolic_name)) == 0) {
		resolve_known(dq, quad100, sizeof(quad100) / sizeof(quad100[0]), r);
		return;
	}
	nm = find_name(m, name, len);
	if (!nm && labels == 1)
		nm = find_bare(m, name);
	if (nm) {
		resolve_known(dq, m->addrs + nm->first, nm->n, r);
		return;
	}
	if (in_local_domain(m, name, len)) {
		r->ours = true;
		r->rcode = DNS_RCODE_NXDOMAIN;
	}
}

static void resolve(const struct magicdns *m, const struct dns_query *dq, struct resolution *r)
{
	struct ip_prefix addr;

	memset(r, 0, sizeof(*r));
	if (dq->qtype == DNS_TYPE_PTR) {
		if (is_bonjour(dq->qname))
			return;
		/* A PTR query for a name that is no address (tailscaled
		 * forwards these) is asked like any other type, so one for a
		 * name of ours does not leave the node. */
		if (parse_reverse(dq->qname, &addr)) {
			if (addr.family == AF_INET6 &&
			    memcmp(addr.addr, range_4to6, sizeof(range_4to6)) == 0) {
				struct ip_prefix v4 = {
					.family = AF_INET,
					.len = 32,
					.addr = {100, addr.addr[13], addr.addr[14], addr.addr[15]},
				};

				r->ptr = find_ptr(m, &v4, &r->ptr_len);
			}
			if (!r->ptr)
				r->ptr = find_ptr(m, &addr, &r->ptr_len);
			if (r->ptr) {
				r->ours = true;
				r->rcode = DNS_RCODE_NOERROR;
			} else if (in_tailscale_range(&addr) ||
				   in_local_domain(m, dq->qname, dq->qname_len)) {
				r->ours = true;
				r->rcode = DNS_RCODE_NXDOMAIN;
			}
			return;
		}
	}
	resolve_name(m, dq, r);
}

/* Replies. */

static size_t reply_limit(const struct dns_query *dq, unsigned int flags, size_t outcap)
{
	size_t limit = MAGICDNS_UDP_MIN;

	if (flags & MAGICDNS_TCP) {
		limit = MAGICDNS_TCP_MAX;
	} else if (dq->edns) {
		/* RFC 6891 §6.2.3: below 512 means 512. Above our own size
		 * the reply would not fit the tunnel unfragmented. */
		limit = dq->edns_size;
		if (limit < MAGICDNS_UDP_MIN)
			limit = MAGICDNS_UDP_MIN;
		if (limit > MAGICDNS_EDNS_SIZE)
			limit = MAGICDNS_EDNS_SIZE;
	}
	return limit < outcap ? limit : outcap;
}

static void put_rr_head(struct dns_writer *w, uint16_t type, uint16_t rdlen)
{
	dns_wire_put16(w, DNS_PTR_POINTER); /* the question's name, as asked */
	dns_wire_put16(w, type);
	dns_wire_put16(w, DNS_CLASS_IN);
	dns_wire_put32(w, MAGICDNS_TTL);
	dns_wire_put16(w, rdlen);
}

/* Returns the number of answers written (all of them unless w overflowed). */
static size_t put_answers(struct dns_writer *w, const struct dns_query *dq,
			  const struct resolution *r)
{
	bool want4 = dq->qtype == DNS_TYPE_A || dq->qtype == DNS_TYPE_ANY;
	bool want6 = dq->qtype == DNS_TYPE_AAAA || dq->qtype == DNS_TYPE_ANY;
	size_t an = 0;

	if (r->ptr) {
		put_rr_head(w, DNS_TYPE_PTR, (uint16_t)r->ptr_len);
		dns_wire_put(w, r->ptr, r->ptr_len);
		an++;
	}
	for (size_t i = 0; i < r->n_addrs && !w->overflow; i++) {
		const struct ip_prefix *a = &r->addrs[i];

		if (a->family == AF_INET && want4) {
			put_rr_head(w, DNS_TYPE_A, 4);
			dns_wire_put(w, a->addr, 4);
			an++;
		} else if (a->family == AF_INET6 && want6) {
			put_rr_head(w, DNS_TYPE_AAAA, 16);
			dns_wire_put(w, a->addr, 16);
			an++;
		}
	}
	return an;
}

/* Writes the reply for a parsed query: header, question, answers, OPT.
 * If the answers do not fit, header and question with TC; if not even
 * those, the header alone. Returns its length, 0 if nothing fits. */
static size_t compose(const struct dns_query *dq, const uint8_t *q, unsigned int flags,
		      uint16_t rcode, bool aa, const struct resolution *r, uint8_t *out,
		      size_t outcap)
{
	size_t limit = reply_limit(dq, flags, outcap);
	size_t opt_len = dq->edns ? DNS_OPT_LEN : 0;
	size_t qlen = dq->question_end - DNS_HEADER_LEN;
	uint16_t hflags = DNS_FLAG_QR | (dq->flags & DNS_FLAG_RD) | (rcode & DNS_FLAG_RCODE);
	struct dns_writer w = {.buf = out};
	size_t an;

	/* As tailscaled: recursion is available to whoever desires it. */
	if (dq->flags & DNS_FLAG_RD)
		hflags |= DNS_FLAG_RA;
	if (aa)
		hflags |= DNS_FLAG_AA;
	if (limit >= DNS_HEADER_LEN + opt_len) {
		w.cap = limit - opt_len;
		dns_wire_put_header(&w, dq->id, hflags, 1, 0, 0, dq->edns ? 1 : 0);
		dns_wire_put(&w, q + DNS_HEADER_LEN, qlen);
		an = r ? put_answers(&w, dq, r) : 0;
		if (!w.overflow && an <= UINT16_MAX) {
			dns_wire_set_ancount(&w, (uint16_t)an);
			goto opt;
		}
		w.len = 0;
		w.overflow = false;
		dns_wire_put_header(&w, dq->id, hflags | DNS_FLAG_TC, 1, 0, 0, dq->edns ? 1 : 0);
		dns_wire_put(&w, q + DNS_HEADER_LEN, qlen);
		if (!w.overflow)
			goto opt;
	}
	if (limit < DNS_HEADER_LEN)
		return 0;
	w.len = 0;
	w.overflow = false;
	w.cap = limit;
	dns_wire_put_header(&w, dq->id, hflags | DNS_FLAG_TC, 0, 0, 0, 0);
	return w.len;
opt:
	w.cap = limit;
	if (dq->edns)
		dns_wire_put_opt(&w, MAGICDNS_EDNS_SIZE, (uint8_t)(rcode >> 4), dq->edns_do);
	return w.len;
}

/* FORMERR and NOTIMP: the header alone, its opcode and RD copied. */
static size_t header_only(const struct dns_query *dq, uint16_t rcode, uint8_t *out, size_t outcap)
{
	uint16_t hflags = DNS_FLAG_QR | (dq->flags & (DNS_FLAG_OPCODE | DNS_FLAG_RD)) | rcode;
	struct dns_writer w = {.buf = out, .cap = outcap};

	if (outcap < DNS_HEADER_LEN)
		return 0; /* and out untouched */
	if (dq->flags & DNS_FLAG_RD)
		hflags |= DNS_FLAG_RA;
	dns_wire_put_header(&w, dq->id, hflags, 0, 0, 0, 0);
	return w.len;
}

enum magicdns_verdict magicdns_answer(const struct magicdns *m, const uint8_t *q, size_t qlen,
				      unsigned int flags, uint8_t *out, size_t outcap,
				      size_t *outlen)
{
	static const struct magicdns empty = {0};
	struct dns_query dq;
	struct resolution r;
	const char *why = NULL;
	size_t n = 0;

	*outlen = 0;
	if (!m)
		m = &empty;
	switch (dns_wire_parse_query(q, qlen, &dq, &why)) {
	case DNS_PARSE_DROP:
		return MAGICDNS_DROP;
	case DNS_PARSE_FORMERR:
		n = header_only(&dq, DNS_RCODE_FORMERR, out, outcap);
		break;
	case DNS_PARSE_NOTIMP:
		n = header_only(&dq, DNS_RCODE_NOTIMP, out, outcap);
		break;
	case DNS_PARSE_OK:
		if (dq.edns && dq.edns_version != 0) {
			n = compose(&dq, q, flags, DNS_RCODE_BADVERS, false, NULL, out, outcap);
			break;
		}
		resolve(m, &dq, &r);
		if (r.ours) {
			n = compose(&dq, q, flags, r.rcode, true, &r, out, outcap);
			break;
		}
		if (m->have_upstream || split_for(m, dq.qname, dq.qname_len) >= 0)
			return MAGICDNS_FORWARD;
		n = compose(&dq, q, flags, DNS_RCODE_REFUSED, false, NULL, out, outcap);
		break;
	}
	if (n == 0)
		return MAGICDNS_DROP;
	*outlen = n;
	return MAGICDNS_ANSWER;
}

int magicdns_upstream(const struct magicdns *m, const uint8_t *q, size_t qlen)
{
	struct dns_query dq;
	const char *why = NULL;
	int i;

	if (!m || dns_wire_parse_query(q, qlen, &dq, &why) != DNS_PARSE_OK)
		return -1;
	i = split_for(m, dq.qname, dq.qname_len);
	if (i >= 0)
		return i;
	return m->have_upstream ? MAGICDNS_UPSTREAM_DEFAULT : -1;
}
