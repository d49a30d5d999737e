/* quad-100: the MagicDNS resolver at 100.100.100.100:53 and
 * [fd7a:115c:a1e0::53]:53 inside the tunnel's TUN path, as tailscaled's
 * (net/dns/resolver): UDP and TCP queries from the pod are answered from
 * the configuration's table (worker/dns/magicdns.h); other names follow
 * the netmap's DNSConfig: forwarded through the pod's UDP socket to the
 * resolvers of the longest split-DNS route or the default ones (every
 * resolver of the set at once, the first answer wins), or REFUSED when none
 * applies, so a resolver listed after quad-100 in the pod's resolv.conf is
 * asked next.
 *
 * TCP is a small responder, not a stack: a connection is accepted, its
 * length-prefixed queries answered in order, its FIN answered with ours;
 * nothing is retransmitted (the TUN loses nothing) and a client's
 * retransmission is answered with an ACK. Everything here is bounded
 * (DP_Q100_*), allocated on the first query, and runs on the engine
 * thread. */
#include "dataplane.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "dataplane_internal.h"
#include "ip.h"
#include "magicdns.h"
#include "mem.h"
#include "tunio.h"

enum dp_q100_limits {
	DP_Q100_SLOTS = 16, /* reply packets waiting for the TUN write */
	DP_Q100_BUF = 1536, /* one reply packet */
	DP_Q100_TCP = 16,   /* TCP connections */
	DP_Q100_TCP_RX =
		2 * 1200 + 2,	  /* unanswered query bytes of one connection: two full segments */
	DP_Q100_TCP_REPLY = 8192, /* the largest answer over TCP (else TC) */
	DP_Q100_TCP_IDLE_MS = 10000,
	DP_Q100_MSS = 1200, /* fits ts0's MTU of 1280 with IPv6 and TCP headers */
	DP_Q100_FWD = 64,   /* forwarded queries awaiting their answer */
	DP_Q100_FWD_MS = 5000,
	DP_Q100_FWD_TO = 3,	/* resolvers asked per query */
	DP_Q100_UDP_MAX = 1232, /* a reply over UDP (EDNS's safe size) */
	DP_Q100_TTL = 64,
	DP_DNS_PORT = 53,
	DP_OPT_RR_LEN = 11, /* an OPT RR on the root name, no options */
};

struct dp_q100_peer {
	uint8_t version; /* 4 or 6 */
	uint8_t addr[16];
	uint16_t port;
};

struct dp_q100_tcp {
	uint64_t last_ms; /* 0: free */
	uint32_t gen;	  /* changes with every reuse of the slot */
	struct dp_q100_peer peer;
	uint32_t snd_nxt, rcv_nxt;
	uint16_t rx_len;
	uint8_t rx[DP_Q100_TCP_RX];
};

struct dp_q100_fwd {
	uint64_t at_ms; /* 0: free */
	uint16_t up_id, client_id;
	struct sockaddr_storage to[DP_Q100_FWD_TO];
	size_t n_to;
	bool tcp;
	uint16_t conn;
	uint32_t gen;
	struct dp_q100_peer peer;
	uint16_t client_udp_max; /* the largest UDP reply the client takes */
};

struct dp_q100 {
	struct pktbuf_batch out;
	uint8_t *bufs;
	struct dp_q100_tcp tcp[DP_Q100_TCP];
	struct dp_q100_fwd fwd[DP_Q100_FWD];
	uint64_t fwd_until_ms; /* no forward is awaited after this */
	uint32_t gen;
	uint8_t reply[2 + DP_Q100_TCP_REPLY];
};

/* ---- the resolver configuration (from the netmap) ---------------------- */

struct dataplane_dns {
	struct magicdns *table;
	/* Resolver sets: [0] the default ones, [1 + i] split domain i's. */
	struct sockaddr_storage *addrs;
	size_t *set_off, *set_len;
	size_t n_sets;
};

/* "1.2.3.4", "1.2.3.4:53", "2001:db8::1", "[2001:db8::1]:5353"; DoH and
 * DoT URLs and names are not usable from here (false). */
static bool resolver_addr(const char *s, struct sockaddr_storage *out)
{
	char host[64];
	const char *colon = strrchr(s, ':'), *end = s + strlen(s);
	unsigned long port = DP_DNS_PORT;
	struct ip_prefix p;
	size_t n;

	if (s[0] == '[') {
		const char *rb = strchr(s, ']');

		if (!rb)
			return false;
		if (rb[1] == ':')
			port = strtoul(rb + 2, NULL, 10);
		else if (rb[1])
			return false;
		n = (size_t)(rb - s - 1);
		s++;
	} else if (colon && strchr(s, ':') == colon) {
		port = strtoul(colon + 1, NULL, 10);
		n = (size_t)(colon - s);
	} else {
		n = (size_t)(end - s);
	}
	if (n == 0 || n >= sizeof(host) || port == 0 || port > UINT16_MAX)
		return false;
	memcpy(host, s, n);
	host[n] = '\0';
	if (ip_prefix_parse(host, true, &p) < 0)
		return false;
	memset(out, 0, sizeof(*out));
	if (p.family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)out;

		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		memcpy(&sin->sin_addr, p.addr, 4);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		memcpy(&sin6->sin6_addr, p.addr, 16);
	}
	return true;
}

static void add_set(struct dataplane_dns *d, char *const *resolvers, size_t n, size_t *at)
{
	size_t set = d->n_sets++;

	d->set_off[set] = *at;
	for (size_t i = 0; i < n; i++)
		if (resolver_addr(resolvers[i], &d->addrs[*at]))
			(*at)++;
	d->set_len[set] = *at - d->set_off[set];
}

void dataplane__dns_free(struct dataplane_dns *d)
{
	if (!d)
		return;
	magicdns_free(d->table);
	free(d->addrs);
	free(d->set_off);
	free(d->set_len);
	free(d);
}

int dataplane__dns_from_netmap(const struct netmap *nm, struct dataplane_dns **out,
			       const char **why)
{
	const struct netmap_dns *dns = nm->dns;
	struct dataplane_dns *d = xcalloc(1, sizeof(*d));
	struct magicdns_host *hosts = NULL;
	struct magicdns_extra_record *extra = NULL;
	const char **local = NULL, **split = NULL;
	size_t n_hosts = 0, n_local = 0, n_split = 0, n_addrs = 0, at = 0;
	struct magicdns_config cfg = {0};
	int ret;

	*out = NULL;
	/* The self node's and every peer's name, whether or not MagicDNS is
	 * on, as tailscaled (so that quad-100 answers them even when the
	 * tailnet's domain is not the pod's search domain); the domain itself
	 * is ours (NXDOMAIN for the rest) only with MagicDNS (Proxied). */
	hosts = xcalloc(nm->n_peers + 1, sizeof(*hosts));
	for (size_t i = 0; i <= nm->n_peers; i++) {
		const struct netmap_node *n = i ? nm->peers[i - 1] : nm->self;

		if (!n || !n->name[0] || !n->n_addresses)
			continue;
		hosts[n_hosts++] = (struct magicdns_host){
			.name = n->name, .addrs = n->addresses, .n_addrs = n->n_addresses};
	}
	extra = xcalloc(dns->n_extra_records ? dns->n_extra_records : 1, sizeof(*extra));
	for (size_t i = 0; i < dns->n_extra_records; i++)
		extra[i] = (struct magicdns_extra_record){.name = dns->extra_records[i].name,
							  .type = dns->extra_records[i].type,
							  .value = dns->extra_records[i].value};
	local = xcalloc(dns->n_routes + 1, sizeof(*local));
	split = xcalloc(dns->n_routes + 1, sizeof(*split));
	if (dns->proxied && nm->domain[0])
		local[n_local++] = nm->domain;
	d->set_off = xcalloc(dns->n_routes + 1, sizeof(*d->set_off));
	d->set_len = xcalloc(dns->n_routes + 1, sizeof(*d->set_len));
	n_addrs = dns->n_resolvers;
	for (size_t i = 0; i < dns->n_routes; i++)
		n_addrs += dns->routes[i].n_resolvers;
	d->addrs = xcalloc(n_addrs ? n_addrs : 1, sizeof(*d->addrs));
	/* Set 0: the default resolvers (DNSConfig.Resolvers). */
	add_set(d, dns->resolvers, dns->n_resolvers, &at);
	for (size_t i = 0; i < dns->n_routes; i++) {
		const struct netmap_dns_route *r = &dns->routes[i];

		/* A route without resolvers is answered by quad-100 itself. */
		if (!r->n_resolvers) {
			local[n_local++] = r->suffix;
			continue;
		}
		add_set(d, r->resolvers, r->n_resolvers, &at);
		if (d->set_len[d->n_sets - 1])
			split[n_split++] = r->suffix;
		else
			d->n_sets--; /* no resolver we can reach: REFUSED */
	}
	cfg = (struct magicdns_config){
		.hosts = hosts,
		.n_hosts = n_hosts,
		.extra = extra,
		.n_extra = dns->n_extra_records,
		.local_domains = local,
		.n_local_domains = n_local,
		.split = split,
		.n_split = n_split,
		.have_upstream = d->set_len[0] > 0,
	};
	ret = magicdns_new(&cfg, &d->table, NULL, why);
	free(hosts);
	free(extra);
	free(local);
	free(split);
	if (ret < 0) {
		dataplane__dns_free(d);
		return ret;
	}
	*out = d;
	return 0;
}

/* ---- packets to the TUN ------------------------------------------------ */

static uint32_t sum16(const uint8_t *p, size_t n, uint32_t sum)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		sum += (uint32_t)(p[n - 1] << 8);
	return sum;
}

static uint16_t fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

static uint32_t load32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static bool q100_init(struct dataplane *dp)
{
	struct dp_q100 *q;

	if (dp->q100)
		return true;
	q = calloc(1, sizeof(*q));
	if (!q)
		return false;
	q->bufs = malloc((size_t)DP_Q100_SLOTS * DP_Q100_BUF);
	if (!q->bufs) {
		free(q);
		return false;
	}
	q->out.cap = DP_Q100_SLOTS;
	dp->q100 = q;
	return true;
}

void dataplane__q100_free(struct dataplane *dp)
{
	if (!dp->q100)
		return;
	free(dp->q100->bufs);
	free(dp->q100);
	dp->q100 = NULL;
}

void dataplane__q100_flush(struct dataplane *dp)
{
	struct dp_q100 *q = dp->q100;
	int r;

	if (!q || !q->out.n)
		return;
	r = tunio_write(dp->tio, &q->out);
	if (r < 0)
		dp->st.drops[DATAPLANE_DROP_QUAD100] += q->out.n;
	q->out.n = 0;
}

/* The next reply slot (flushing when all are taken), its IP packet built
 * from quad-100 (src) to peer with room for hlen transport header bytes and
 * plen payload bytes at *l4 (filled by the caller). NULL: too big. */
static uint8_t *reply_start(struct dataplane *dp, const struct dp_q100_peer *peer, uint8_t proto,
			    size_t l4len, uint8_t **l4)
{
	struct dp_q100 *q = dp->q100;
	size_t hl = peer->version == 4 ? PACKET_IP4_HDR_LEN : PACKET_IP6_HDR_LEN;
	struct pktbuf *p;
	uint8_t *h;

	if (hl + l4len > DP_Q100_BUF)
		return NULL;
	if (q->out.n == q->out.cap)
		dataplane__q100_flush(dp);
	p = &q->out.pkt[q->out.n++];
	p->head = q->bufs + (size_t)(q->out.n - 1) * DP_Q100_BUF;
	p->size = DP_Q100_BUF;
	p->off = 0;
	p->len = (uint32_t)(hl + l4len);
	p->addr_len = 0;
	h = p->head;
	memset(h, 0, hl);
	if (peer->version == 4) {
		h[0] = 0x45;
		put16(h + 2, (uint16_t)(hl + l4len));
		h[6] = 0x40; /* DF */
		h[8] = DP_Q100_TTL;
		h[9] = proto;
		memcpy(h + 12, ip_quad100_v4.addr, 4);
		memcpy(h + 16, peer->addr, 4);
		put16(h + 10, fold(sum16(h, PACKET_IP4_HDR_LEN, 0)));
	} else {
		h[0] = 0x60;
		put16(h + 4, (uint16_t)l4len);
		h[6] = proto;
		h[7] = DP_Q100_TTL;
		memcpy(h + 8, ip_quad100_v6.addr, 16);
		memcpy(h + 24, peer->addr, 16);
	}
	*l4 = h + hl;
	return h;
}

/* The transport checksum over the pseudo-header, written at csum. */
static void l4_checksum(const struct dp_q100_peer *peer, uint8_t proto, uint8_t *l4, size_t len,
			uint8_t *csum)
{
	uint32_t sum = 0;
	uint8_t ph[4];

	if (peer->version == 4) {
		sum = sum16(ip_quad100_v4.addr, 4, sum);
		sum = sum16(peer->addr, 4, sum);
	} else {
		sum = sum16(ip_quad100_v6.addr, 16, sum);
		sum = sum16(peer->addr, 16, sum);
	}
	ph[0] = 0;
	ph[1] = proto;
	put16(ph + 2, (uint16_t)len);
	sum = sum16(ph, 4, sum);
	put16(csum, 0);
	sum = sum16(l4, len, sum);
	put16(csum, fold(sum));
	if (proto == PACKET_PROTO_UDP && csum[0] == 0 && csum[1] == 0)
		put16(csum, 0xffff);
}

static void udp_reply(struct dataplane *dp, const struct dp_q100_peer *peer, const uint8_t *msg,
		      size_t len)
{
	uint8_t *l4;

	if (!reply_start(dp, peer, PACKET_PROTO_UDP, PACKET_UDP_HDR_LEN + len, &l4)) {
		dp->st.drops[DATAPLANE_DROP_QUAD100]++;
		return;
	}
	put16(l4, DP_DNS_PORT);
	put16(l4 + 2, peer->port);
	put16(l4 + 4, (uint16_t)(PACKET_UDP_HDR_LEN + len));
	memcpy(l4 + PACKET_UDP_HDR_LEN, msg, len);
	l4_checksum(peer, PACKET_PROTO_UDP, l4, PACKET_UDP_HDR_LEN + len, l4 + 6);
	dp->st.dns_answers++;
}

/* One TCP segment of c to its client. */
static void tcp_segment(struct dataplane *dp, struct dp_q100_tcp *c, uint8_t flags,
			const uint8_t *data, size_t len, bool mss_option)
{
	size_t hl = PACKET_TCP_HDR_LEN + (mss_option ? 4 : 0);
	uint8_t *l4;

	if (!reply_start(dp, &c->peer, PACKET_PROTO_TCP, hl + len, &l4))
		return;
	put16(l4, DP_DNS_PORT);
	put16(l4 + 2, c->peer.port);
	put32(l4 + 4, c->snd_nxt);
	put32(l4 + 8, c->rcv_nxt);
	l4[12] = (uint8_t)((hl / 4) << 4);
	l4[13] = flags;
	put16(l4 + 14, 65535);
	put16(l4 + 16, 0);
	put16(l4 + 18, 0);
	if (mss_option) {
		l4[20] = 2;
		l4[21] = 4;
		put16(l4 + 22, DP_Q100_MSS);
	}
	if (len) /* data is NULL for a bare SYN, ACK, FIN or RST */
		memcpy(l4 + hl, data, len);
	l4_checksum(&c->peer, PACKET_PROTO_TCP, l4, hl + len, l4 + 16);
	c->snd_nxt += (uint32_t)len + ((flags & (PACKET_TCP_SYN | PACKET_TCP_FIN)) ? 1 : 0);
}

/* A reset for a segment no connection owns (RFC 9293 3.10.7.1). */
static void tcp_reset(struct dataplane *dp, const struct dp_q100_peer *peer, const uint8_t *th,
		      size_t seglen)
{
	struct dp_q100_tcp c = {.peer = *peer};

	if (th[13] & PACKET_TCP_ACK) {
		c.snd_nxt = load32(th + 8);
		tcp_segment(dp, &c, PACKET_TCP_RST, NULL, 0, false);
	} else {
		/* SYN and FIN each count one in the sequence space. */
		c.rcv_nxt = load32(th + 4) + (uint32_t)seglen +
			    ((th[13] & PACKET_TCP_SYN) ? 1 : 0) +
			    ((th[13] & PACKET_TCP_FIN) ? 1 : 0);
		tcp_segment(dp, &c, PACKET_TCP_RST | PACKET_TCP_ACK, NULL, 0, false);
	}
}

/* msg (with its 2-byte length) on connection c, in segments of at most
 * DP_Q100_MSS bytes. */
static void tcp_send(struct dataplane *dp, struct dp_q100_tcp *c, const uint8_t *msg, size_t len)
{
	for (size_t off = 0; off < len;) {
		size_t n = len - off < DP_Q100_MSS ? len - off : DP_Q100_MSS;

		tcp_segment(dp, c, PACKET_TCP_ACK | PACKET_TCP_PSH, msg + off, n, false);
		off += n;
	}
	dp->st.dns_answers++;
}

/* ---- queries ------------------------------------------------------------- */

static const struct dataplane_dns *dns_cfg(const struct dataplane *dp)
{
	return dp->cur ? dp->cur->dns : NULL;
}

/* The largest UDP reply the client takes: 512, or its EDNS size. */
static uint16_t client_udp_max(const uint8_t *q, size_t len)
{
	/* An OPT RR closes the message of a glibc or dig query: its class
	 * is the size. Anything else: 512. */
	if (len >= 12 + 5 + DP_OPT_RR_LEN && q[10] == 0 && q[11] == 1 && q[len - 11] == 0 &&
	    q[len - 10] == 0 && q[len - 9] == 41) {
		uint16_t size = (uint16_t)(q[len - 8] << 8 | q[len - 7]);

		if (size > DP_Q100_UDP_MAX)
			size = DP_Q100_UDP_MAX;
		return size > 512 ? size : 512;
	}
	return 512;
}

static struct dp_q100_fwd *fwd_slot(struct dp_q100 *q, uint64_t now_ms)
{
	struct dp_q100_fwd *oldest = &q->fwd[0];

	for (size_t i = 0; i < DP_Q100_FWD; i++) {
		struct dp_q100_fwd *f = &q->fwd[i];

		if (!f->at_ms || now_ms - f->at_ms > DP_Q100_FWD_MS)
			return f;
		if (f->at_ms < oldest->at_ms)
			oldest = f;
	}
	return oldest;
}

/* Sends the query to every resolver of its set through the pod's UDP
 * socket(s), with an ID of ours; the answer comes back to
 * dataplane__q100_upstream_rx. Queries larger than a disco slot go
 * unanswered (a DNS query is a few dozen bytes). */
static void forward(struct dataplane *dp, const struct dataplane_dns *d, int set,
		    const uint8_t *msg, size_t len, const struct dp_q100_peer *peer,
		    struct dp_q100_tcp *conn)
{
	struct dp_q100 *q = dp->q100;
	struct wg_batch *b = &dp->disco_out;
	struct dp_q100_fwd *f;
	size_t s = set == MAGICDNS_UPSTREAM_DEFAULT ? 0 : (size_t)set + 1;

	if (set == -1 || s >= d->n_sets || !d->set_len[s] || len > DP_DISCO_BUF_LEN) {
		dp->st.drops[DATAPLANE_DROP_QUAD100]++;
		return;
	}
	f = fwd_slot(q, dp->now_ms);
	memset(f, 0, sizeof(*f));
	f->at_ms = dp->now_ms ? dp->now_ms : 1;
	f->client_id = (uint16_t)(msg[0] << 8 | msg[1]);
	randombytes_buf(&f->up_id, sizeof(f->up_id));
	f->peer = *peer;
	f->client_udp_max = client_udp_max(msg, len);
	if (conn) {
		f->tcp = true;
		f->conn = (uint16_t)(conn - q->tcp);
		f->gen = conn->gen;
	}
	/* Sent with the next flush: the packet view may be in use now. */
	for (size_t i = 0; i < d->set_len[s] && f->n_to < DP_Q100_FWD_TO && b->n < b->cap; i++) {
		struct wg_packet *w = &b->pkt[b->n++];

		memcpy(w->buf, msg, len);
		put16(w->buf, f->up_id);
		w->off = 0;
		w->len = len;
		w->peer = NULL;
		w->addr = d->addrs[d->set_off[s] + i];
		f->to[f->n_to++] = w->addr;
	}
	if (!f->n_to) {
		f->at_ms = 0;
		dp->st.drops[DATAPLANE_DROP_QUAD100]++;
		return;
	}
	q->fwd_until_ms = f->at_ms + DP_Q100_FWD_MS;
	dp->st.dns_forwarded++;
}

/* One DNS message from the pod (over UDP, or one of a TCP connection's). */
static void query(struct dataplane *dp, const uint8_t *msg, size_t len,
		  const struct dp_q100_peer *peer, struct dp_q100_tcp *conn)
{
	const struct dataplane_dns *d = dns_cfg(dp);
	struct dp_q100 *q = dp->q100;
	size_t outlen = 0;
	enum magicdns_verdict v;

	dp->st.dns_queries++;
	v = magicdns_answer(d ? d->table : NULL, msg, len, conn ? MAGICDNS_TCP : 0, q->reply + 2,
			    conn ? DP_Q100_TCP_REPLY : DP_Q100_UDP_MAX, &outlen);
	switch (v) {
	case MAGICDNS_ANSWER:
		if (conn) {
			put16(q->reply, (uint16_t)outlen);
			tcp_send(dp, conn, q->reply, outlen + 2);
		} else {
			udp_reply(dp, peer, q->reply + 2, outlen);
		}
		return;
	case MAGICDNS_FORWARD:
		forward(dp, d, magicdns_upstream(d->table, msg, len), msg, len, peer, conn);
		return;
	case MAGICDNS_DROP:
	default:
		dp->st.drops[DATAPLANE_DROP_QUAD100]++;
		return;
	}
}

static bool same_peer(const struct dp_q100_peer *a, const struct dp_q100_peer *b)
{
	return a->version == b->version && a->port == b->port &&
	       memcmp(a->addr, b->addr, a->version == 4 ? 4 : 16) == 0;
}

static struct dp_q100_tcp *tcp_find(struct dp_q100 *q, const struct dp_q100_peer *peer,
				    uint64_t now_ms)
{
	for (size_t i = 0; i < DP_Q100_TCP; i++) {
		struct dp_q100_tcp *c = &q->tcp[i];

		if (!c->last_ms)
			continue;
		if (now_ms - c->last_ms > DP_Q100_TCP_IDLE_MS) {
			c->last_ms = 0;
			continue;
		}
		if (same_peer(&c->peer, peer))
			return c;
	}
	return NULL;
}

static struct dp_q100_tcp *tcp_new(struct dp_q100 *q, const struct dp_q100_peer *peer,
				   uint64_t now_ms)
{
	struct dp_q100_tcp *c = &q->tcp[0];

	for (size_t i = 0; i < DP_Q100_TCP; i++) {
		if (!q->tcp[i].last_ms || now_ms - q->tcp[i].last_ms > DP_Q100_TCP_IDLE_MS) {
			c = &q->tcp[i];
			break;
		}
		if (q->tcp[i].last_ms < c->last_ms)
			c = &q->tcp[i]; /* all busy: the idlest goes */
	}
	memset(c, 0, sizeof(*c));
	c->gen = ++q->gen;
	c->peer = *peer;
	c->last_ms = now_ms ? now_ms : 1;
	return c;
}

static void tcp_rx(struct dataplane *dp, const struct packet *p, const uint8_t *pkt,
		   const struct dp_q100_peer *peer)
{
	struct dp_q100 *q = dp->q100;
	const uint8_t *th = pkt + p->l4_off;
	size_t end = p->len < p->buf_len ? p->len : p->buf_len;
	size_t seglen = end > p->payload_off ? end - p->payload_off : 0;
	uint8_t fl = th[13];
	struct dp_q100_tcp *c = tcp_find(q, peer, dp->now_ms);
	uint32_t seq = load32(th + 4);

	if (fl & PACKET_TCP_RST) {
		if (c)
			c->last_ms = 0;
		return;
	}
	if ((fl & (PACKET_TCP_SYN | PACKET_TCP_ACK)) == PACKET_TCP_SYN) {
		if (!c || c->rcv_nxt != seq + 1) {
			/* A new connection from the address and port of one
			 * we hold ends that one: kept, it is the one
			 * tcp_find() returns, and the new one would get
			 * only its ACKs until it idles out. */
			if (c)
				c->last_ms = 0;
			c = tcp_new(q, peer, dp->now_ms);
			randombytes_buf(&c->snd_nxt, sizeof(c->snd_nxt));
			c->rcv_nxt = seq + 1;
		} else {
			c->snd_nxt--; /* our SYN-ACK again */
		}
		tcp_segment(dp, c, PACKET_TCP_SYN | PACKET_TCP_ACK, NULL, 0, true);
		return;
	}
	if (!c) {
		/* A bare ACK (the last of a closed connection) needs nothing. */
		if (seglen || (fl & (PACKET_TCP_FIN | PACKET_TCP_SYN)))
			tcp_reset(dp, peer, th, seglen);
		return;
	}
	c->last_ms = dp->now_ms ? dp->now_ms : 1;
	if (seq != c->rcv_nxt) {
		/* A retransmission or a gap: say where we are. */
		if (seglen || (fl & PACKET_TCP_FIN))
			tcp_segment(dp, c, PACKET_TCP_ACK, NULL, 0, false);
		return;
	}
	if (seglen) {
		if (seglen > sizeof(c->rx) - c->rx_len) {
			tcp_segment(dp, c, PACKET_TCP_RST | PACKET_TCP_ACK, NULL, 0, false);
			c->last_ms = 0;
			dp->st.drops[DATAPLANE_DROP_QUAD100]++;
			return;
		}
		memcpy(c->rx + c->rx_len, pkt + p->payload_off, seglen);
		c->rx_len = (uint16_t)(c->rx_len + seglen);
		c->rcv_nxt += (uint32_t)seglen;
	}
	/* Every whole message, in order; an answer carries the ACK. */
	{
		size_t used = 0;
		bool sent = false;

		while (c->rx_len - used >= 2) {
			size_t mlen = (size_t)(c->rx[used] << 8 | c->rx[used + 1]);

			if (c->rx_len - used - 2 < mlen)
				break;
			query(dp, c->rx + used + 2, mlen, peer, c);
			used += 2 + mlen;
			sent = true;
		}
		memmove(c->rx, c->rx + used, c->rx_len - used);
		c->rx_len = (uint16_t)(c->rx_len - used);
		if (fl & PACKET_TCP_FIN) {
			c->rcv_nxt++;
			tcp_segment(dp, c, PACKET_TCP_FIN | PACKET_TCP_ACK, NULL, 0, false);
			c->last_ms = 0; /* its last ACK finds nothing and needs nothing */
			return;
		}
		if (seglen && !sent)
			tcp_segment(dp, c, PACKET_TCP_ACK, NULL, 0, false);
	}
}

bool dataplane__q100_rx(struct dataplane *dp, const struct packet *p, const uint8_t *pkt,
			uint64_t now_ns)
{
	struct dp_q100_peer peer = {.version = p->version, .port = p->src_port};
	size_t end = p->len < p->buf_len ? p->len : p->buf_len;

	if (p->dst_port != DP_DNS_PORT || (p->flags & PACKET_F_FRAGMENT) ||
	    (p->proto != PACKET_PROTO_UDP && p->proto != PACKET_PROTO_TCP) || p->payload_off > end)
		return false;
	if (!q100_init(dp))
		return false;
	dp->now_ms = now_ns / 1000000;
	memcpy(peer.addr, p->src, p->version == 4 ? 4 : 16);
	if (p->proto == PACKET_PROTO_UDP)
		query(dp, pkt + p->payload_off, end - p->payload_off, &peer, NULL);
	else
		tcp_rx(dp, p, pkt, &peer);
	return true;
}

/* ---- answers from upstream ----------------------------------------------- */

/* An address as 16 bytes (IPv4 mapped) and a port: a dual-stack socket
 * reports an IPv4 resolver as ::ffff:a.b.c.d. */
static void addr_key(const struct sockaddr_storage *a, uint8_t out[16], uint16_t *port)
{
	memset(out, 0, 16);
	*port = 0;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a;

		out[10] = out[11] = 0xff;
		memcpy(out + 12, &x->sin_addr, 4);
		*port = x->sin_port;
	} else if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a;

		memcpy(out, &x->sin6_addr, 16);
		*port = x->sin6_port;
	}
}

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	uint8_t ka[16], kb[16];
	uint16_t pa, pb;

	addr_key(a, ka, &pa);
	addr_key(b, kb, &pb);
	return pa && pa == pb && memcmp(ka, kb, 16) == 0;
}

/* The reply's header and question only, with TC: for a UDP client whose
 * limit the upstream answer exceeds. 0 when the question does not parse. */
static size_t truncated(uint8_t *m, size_t len)
{
	size_t o = 12;

	if (len < 12 || m[4] != 0 || m[5] != 1)
		return 0;
	while (o < len && m[o] != 0) {
		if (m[o] >= 0x40)
			return 0; /* a pointer or reserved label type */
		o += 1 + (size_t)m[o];
	}
	/* A name over 255 bytes (RFC 1035 3.1) would make this reply
	 * larger than the client takes. */
	if (o - 12 + 1 > MAGICDNS_WIRE_NAME_MAX)
		return 0;
	o += 1 + 4;
	if (o > len)
		return 0;
	m[2] |= 0x02; /* TC */
	memset(m + 6, 0, 6);
	return o;
}

bool dataplane__q100_upstream_rx(struct dataplane *dp, const struct wg_packet *w, uint64_t now_ns)
{
	struct dp_q100 *q = dp->q100;
	uint8_t *m = w->buf + w->off;
	size_t len = w->len;

	if (q)
		dp->now_ms = now_ns / 1000000;
	if (!q || dp->now_ms > q->fwd_until_ms || len < 12 || !(m[2] & 0x80))
		return false;
	for (size_t i = 0; i < DP_Q100_FWD; i++) {
		struct dp_q100_fwd *f = &q->fwd[i];
		bool from = false;

		/* An entry older than DP_Q100_FWD_MS waits no more (fwd_slot
		 * takes it as free), though a later forward keeps
		 * fwd_until_ms ahead: its client has given up or retried. */
		if (!f->at_ms || dp->now_ms - f->at_ms > DP_Q100_FWD_MS ||
		    f->up_id != (uint16_t)(m[0] << 8 | m[1]))
			continue;
		for (size_t k = 0; k < f->n_to && !from; k++)
			from = same_addr(&f->to[k], &w->addr);
		if (!from)
			continue;
		f->at_ms = 0;
		put16(m, f->client_id);
		if (f->tcp) {
			struct dp_q100_tcp *c = &q->tcp[f->conn];

			if (c->last_ms && c->gen == f->gen && len <= DP_Q100_TCP_REPLY) {
				put16(q->reply, (uint16_t)len);
				memcpy(q->reply + 2, m, len);
				tcp_send(dp, c, q->reply, len + 2);
			}
		} else {
			if (len > f->client_udp_max)
				len = truncated(m, len);
			if (len)
				udp_reply(dp, &f->peer, m, len);
		}
		dataplane__q100_flush(dp);
		return true;
	}
	return false;
}
