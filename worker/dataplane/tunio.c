/* Batched TUN I/O with virtio_net_hdr offloads (see tunio.h). */
#include "tunio.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/if_tun.h>

#include "kfeat.h"
#include "tun.h"
#include "mem.h"

/* Linux 6.2 added UDP segmentation offload to TUN; Debian 12's headers
 * predate it. Older kernels refuse these bits with EINVAL. */
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif

enum {
	IPPROTO_TCP_ = 6,
	IPPROTO_UDP_ = 17,
	TCP_FIN = 0x01,
	TCP_SYN = 0x02,
	TCP_RST = 0x04,
	TCP_PSH = 0x08,
	TCP_URG = 0x20,
	TCP_CWR = 0x80,
	IP4_MF_OFFSET = 0x3fff, /* More Fragments and the fragment offset */
	IP4_DF = 0x4000,
};

struct tunio {
	int fd;
	unsigned offloads;
	bool vnet;	/* frames carry a vnet header (device flag) */
	bool pending;	/* rbuf holds a frame not yet fully segmented */
	unsigned rnext; /* its next segment */
	size_t rlen;	/* its length */
	uint8_t *rbuf;	/* TUNIO_FRAME_MAX bytes, only with vnet */
	struct tunio_plan plan;
	struct tunio_stats stats;
	uint8_t hdr[TUNIO_FRAME_HDR_MAX];
	struct iovec iov[PKTBUF_BATCH_MAX + 1];
};

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* The Internet checksum (RFC 1071) is byte-order independent: summing words
 * as loaded in host order and storing the folded result in host order gives
 * the right bytes on the wire. Regions must start at an even offset from
 * the start of the checksummed data. */
static uint64_t csum_add(uint64_t sum, const uint8_t *p, size_t n)
{
	/* The bulk in 64-bit words, summed with end-around carry (2^64 is 1
	 * modulo 0xffff, so this is the same ones' complement sum), in two
	 * chains that the CPU runs side by side: this loop is a pass over
	 * every byte sent and received. */
	uint64_t a = 0, b = 0, x, y;
	uint32_t w;
	uint16_t h;

	while (n >= 16) {
		memcpy(&x, p, 8);
		memcpy(&y, p + 8, 8);
		a += x;
		a += a < x;
		b += y;
		b += b < y;
		p += 16;
		n -= 16;
	}
	b += a;
	b += b < a;
	sum += (b & 0xffffffffU) + (b >> 32);
	while (n >= 4) {
		memcpy(&w, p, 4);
		sum += w;
		p += 4;
		n -= 4;
	}
	if (n >= 2) {
		memcpy(&h, p, 2);
		sum += h;
		p += 2;
		n -= 2;
	}
	if (n) {
		uint8_t last[2] = {p[0], 0};

		memcpy(&h, last, 2);
		sum += h;
	}
	return sum;
}

/* A 16-bit value in network order as the summing loop sees it. */
static uint64_t csum_be16(uint16_t v)
{
	uint8_t b[2];
	uint16_t h;

	put16(b, v);
	memcpy(&h, b, 2);
	return h;
}

static uint16_t csum_fold(uint64_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

static void csum_store(uint8_t *p, uint16_t folded)
{
	memcpy(p, &folded, 2);
}

/* The pseudo-header of IPv4 (ver 4) or IPv6 packet ip for an upper layer
 * of l4len bytes of protocol proto. */
static uint64_t csum_pseudo(const uint8_t *ip, unsigned ver, uint8_t proto, uint32_t l4len)
{
	uint64_t sum;

	if (ver == 4)
		sum = csum_add(0, ip + 12, 8);
	else
		sum = csum_add(0, ip + 8, 32);
	return sum + csum_be16(proto) + csum_be16((uint16_t)(l4len >> 16)) +
	       csum_be16((uint16_t)l4len);
}

static void ip4_set_csum(uint8_t *ip, size_t iphl)
{
	ip[10] = 0;
	ip[11] = 0;
	csum_store(ip + 10, (uint16_t)~csum_fold(csum_add(0, ip, iphl)));
}

/* Packet bounds the caller promised: off and len inside the buffer. */
static bool pkt_in_bounds(const struct pktbuf *p)
{
	return p->head && p->off <= p->size && p->len <= p->size - p->off;
}

/* ---- Reading: frames into packets ---- */

static int segment_none(const struct tunio_vnet_hdr *h, const uint8_t *pkt, size_t plen,
			struct pktbuf_batch *b, const char **why)
{
	struct pktbuf *p = &b->pkt[b->n];
	uint8_t *out;

	if (plen == 0) {
		*why = "empty packet after the vnet header";
		return -EBADMSG;
	}
	if (plen > pktbuf_room(p)) {
		*why = "packet larger than the buffer";
		return -EMSGSIZE;
	}
	if (h->flags & TUNIO_VNET_F_NEEDS_CSUM) {
		size_t cs = h->csum_start, co = h->csum_offset;

		/* The checksum field must lie inside the checksummed range. */
		if (cs >= plen || plen - cs < 2 || co > plen - cs - 2) {
			*why = "partial checksum outside the packet";
			return -EBADMSG;
		}
		out = pktbuf_data(p);
		memcpy(out, pkt, plen);
		/* The field holds the pseudo-header sum; summing over it completes it. */
		uint16_t c = (uint16_t)~csum_fold(csum_add(0, out + cs, plen - cs));

		csum_store(out + cs + co, c ? c : 0xffff);
	} else {
		memcpy(pktbuf_data(p), pkt, plen);
	}
	p->len = (uint32_t)plen;
	b->n++;
	return 1;
}

/* The headers of a GSO super-packet, which every segment copies and fixes. */
struct super_hdr {
	unsigned ver;
	uint8_t proto;
	size_t iphl, l4hl, hlen; /* IP, transport, both */
	uint32_t seq0;		 /* TCP: the first segment's sequence number */
	uint16_t id0;		 /* IPv4: the first segment's identification */
};

/* Checks the IP and transport headers of super-packet pkt (plen bytes)
 * against its GSO type and fills *s. Returns 0 or -EBADMSG with *why. */
static int super_parse(const uint8_t *pkt, size_t plen, unsigned gso, struct super_hdr *s,
		       const char **why)
{
	if (gso == TUNIO_VNET_GSO_TCPV4 || gso == TUNIO_VNET_GSO_TCPV6) {
		s->proto = IPPROTO_TCP_;
	} else if (gso == TUNIO_VNET_GSO_UDP_L4) {
		s->proto = IPPROTO_UDP_;
	} else {
		*why = "unsupported GSO type";
		return -EBADMSG;
	}
	if (plen < 1) {
		*why = "empty super-packet";
		return -EBADMSG;
	}
	s->ver = pkt[0] >> 4;
	if (s->ver == 4 && gso != TUNIO_VNET_GSO_TCPV6) {
		if (plen < 20) {
			*why = "IPv4 header truncated";
			return -EBADMSG;
		}
		s->iphl = (size_t)(pkt[0] & 0x0f) * 4;
		if (s->iphl < 20 || s->iphl > plen) {
			*why = "IPv4 header length out of range";
			return -EBADMSG;
		}
		if (pkt[9] != s->proto) {
			*why = "IPv4 protocol does not match the GSO type";
			return -EBADMSG;
		}
		if (get16(pkt + 6) & IP4_MF_OFFSET) {
			*why = "fragmented IPv4 super-packet";
			return -EBADMSG;
		}
	} else if (s->ver == 6 && gso != TUNIO_VNET_GSO_TCPV4) {
		if (plen < 40) {
			*why = "IPv6 header truncated";
			return -EBADMSG;
		}
		s->iphl = 40;
		/* Our own stack sends no extension headers on TCP/UDP. */
		if (pkt[6] != s->proto) {
			*why = "IPv6 next header does not match the GSO type";
			return -EBADMSG;
		}
	} else {
		*why = "IP version does not match the GSO type";
		return -EBADMSG;
	}
	if (s->proto == IPPROTO_TCP_) {
		if (plen - s->iphl < 20) {
			*why = "TCP header truncated";
			return -EBADMSG;
		}
		s->l4hl = (size_t)(pkt[s->iphl + 12] >> 4) * 4;
		if (s->l4hl < 20 || s->l4hl > plen - s->iphl) {
			*why = "TCP data offset out of range";
			return -EBADMSG;
		}
	} else {
		s->l4hl = 8;
		if (plen - s->iphl < s->l4hl) {
			*why = "UDP header truncated";
			return -EBADMSG;
		}
	}
	s->hlen = s->iphl + s->l4hl;
	s->seq0 = s->proto == IPPROTO_TCP_ ? get32(pkt + s->iphl + 4) : 0;
	s->id0 = s->ver == 4 ? get16(pkt + 4) : 0;
	return 0;
}

/* Writes segment i of nseg into out: the headers of pkt, fixed for this
 * segment, then chunk payload bytes from offset off, with checksums. */
static void segment_write(uint8_t *out, const uint8_t *pkt, const struct super_hdr *s, size_t i,
			  size_t nseg, size_t off, size_t chunk)
{
	size_t l4len = s->l4hl + chunk;
	uint8_t *l4 = out + s->iphl;

	memcpy(out, pkt, s->hlen);
	memcpy(out + s->hlen, pkt + s->hlen + off, chunk);
	if (s->ver == 4) {
		put16(out + 2, (uint16_t)(s->hlen + chunk));
		put16(out + 4, (uint16_t)(s->id0 + i));
		ip4_set_csum(out, s->iphl);
	} else {
		put16(out + 4, (uint16_t)(l4len));
	}
	if (s->proto == IPPROTO_TCP_) {
		uint8_t fl = l4[13];

		put32(l4 + 4, s->seq0 + (uint32_t)off);
		/* As the kernel's tcp_gso_segment: CWR on the first
		 * segment only, FIN and PSH on the last only. */
		if (i > 0)
			fl &= (uint8_t)~TCP_CWR;
		if (i + 1 < nseg)
			fl &= (uint8_t) ~(TCP_FIN | TCP_PSH);
		l4[13] = fl;
		l4[16] = 0;
		l4[17] = 0;
		uint64_t sum = csum_pseudo(out, s->ver, s->proto, (uint32_t)l4len);

		csum_store(l4 + 16, (uint16_t)~csum_fold(csum_add(sum, l4, l4len)));
	} else {
		put16(l4 + 4, (uint16_t)l4len);
		l4[6] = 0;
		l4[7] = 0;
		uint64_t sum = csum_pseudo(out, s->ver, s->proto, (uint32_t)l4len);
		uint16_t c = (uint16_t)~csum_fold(csum_add(sum, l4, l4len));

		csum_store(l4 + 6, c ? c : 0xffff);
	}
}

int tunio_segment(const uint8_t *frame, size_t len, unsigned *next, struct pktbuf_batch *b,
		  const char **why)
{
	struct tunio_vnet_hdr h;
	struct super_hdr s;
	const uint8_t *pkt;
	size_t plen, payload, nseg;
	unsigned gso, n0 = b->n;
	int ret;

	if (len < TUNIO_VNET_HDR_LEN) {
		*why = "frame shorter than its vnet header";
		return -EBADMSG;
	}
	if (len > TUNIO_FRAME_MAX) {
		*why = "frame longer than 64 KiB";
		return -EBADMSG;
	}
	memcpy(&h, frame, sizeof(h));
	pkt = frame + TUNIO_VNET_HDR_LEN;
	plen = len - TUNIO_VNET_HDR_LEN;
	gso = h.gso_type & (uint8_t)~TUNIO_VNET_GSO_ECN;
	if (b->n >= b->cap)
		return 0;
	if (gso == TUNIO_VNET_GSO_NONE) {
		if (*next > 0)
			return 1;
		int r = segment_none(&h, pkt, plen, b, why);

		if (r == 1)
			*next = 1;
		return r;
	}
	ret = super_parse(pkt, plen, gso, &s, why);
	if (ret < 0)
		return ret;
	payload = plen - s.hlen;
	if (h.gso_size == 0) {
		*why = "GSO size zero";
		return -EBADMSG;
	}
	if (payload == 0) {
		*why = "super-packet without payload";
		return -EBADMSG;
	}
	nseg = (payload + h.gso_size - 1) / h.gso_size;
	if (nseg > TUNIO_MAX_SEGS) {
		*why = "too many segments in a super-packet";
		return -EBADMSG;
	}
	for (size_t i = *next; i < nseg; i++) {
		struct pktbuf *p;
		size_t off = i * h.gso_size;
		size_t chunk = payload - off < h.gso_size ? payload - off : h.gso_size;

		if (b->n >= b->cap) {
			*next = (unsigned)i;
			return 0;
		}
		p = &b->pkt[b->n];
		if (s.hlen + chunk > pktbuf_room(p)) {
			b->n = n0;
			*why = "segment larger than the buffer";
			return -EMSGSIZE;
		}
		segment_write(pktbuf_data(p), pkt, &s, i, nseg, off, chunk);
		p->len = (uint32_t)(s.hlen + chunk);
		b->n++;
	}
	*next = (unsigned)nseg;
	return 1;
}

/* ---- Writing: coalescing plan ---- */

/* What coalescing needs to know of a TCP packet. */
struct tcpv {
	unsigned ver;
	size_t iphl, thl, total, payload;
	uint32_t seq, ack;
	uint8_t flags;
	bool csum_ok;
};

/* Parses a TCP packet that coalescing could take: IPv4 without options and
 * not a fragment, or IPv6 with TCP as the next header. Bounded by len and
 * by the IP length. With verify, csum_ok tells whether the IPv4 header and
 * TCP checksums are right (GRO merges only verified packets). Returns false
 * for anything else. */
static bool tcpv_parse(const uint8_t *ip, size_t len, struct tcpv *t, bool verify)
{
	if (len < 1)
		return false;
	t->ver = ip[0] >> 4;
	if (t->ver == 4) {
		if (len < 20 || (ip[0] & 0x0f) != 5 || ip[9] != IPPROTO_TCP_)
			return false;
		if (get16(ip + 6) & IP4_MF_OFFSET)
			return false;
		t->iphl = 20;
		t->total = get16(ip + 2);
	} else if (t->ver == 6) {
		if (len < 40 || ip[6] != IPPROTO_TCP_)
			return false;
		t->iphl = 40;
		t->total = 40 + (size_t)get16(ip + 4);
	} else {
		return false;
	}
	if (t->total > len || t->total < t->iphl + 20)
		return false;
	const uint8_t *th = ip + t->iphl;

	t->thl = (size_t)(th[12] >> 4) * 4;
	if (t->thl < 20 || t->thl > t->total - t->iphl)
		return false;
	t->payload = t->total - t->iphl - t->thl;
	t->seq = get32(th + 4);
	t->ack = get32(th + 8);
	t->flags = th[13];

	t->csum_ok = false;
	if (verify) {
		size_t l4len = t->total - t->iphl;
		uint64_t s = csum_pseudo(ip, t->ver, IPPROTO_TCP_, (uint32_t)l4len);

		t->csum_ok = csum_fold(csum_add(s, th, l4len)) == 0xffff;
		if (t->ver == 4)
			t->csum_ok = t->csum_ok && csum_fold(csum_add(0, ip, 20)) == 0xffff;
	}
	return true;
}

/* Same addresses and ports. */
static bool same_flow(const uint8_t *a, const struct tcpv *ta, const uint8_t *b,
		      const struct tcpv *tb)
{
	if (ta->ver != tb->ver)
		return false;
	if (ta->ver == 4 ? memcmp(a + 12, b + 12, 8) : memcmp(a + 8, b + 8, 32))
		return false;
	return memcmp(a + ta->iphl, b + tb->iphl, 4) == 0;
}

/* The header fields GRO requires equal within one frame. */
static bool same_headers(const uint8_t *a, const struct tcpv *ta, const uint8_t *b,
			 const struct tcpv *tb)
{
	if (ta->ver == 4) {
		if (a[1] != b[1] || a[8] != b[8] || ((get16(a + 6) ^ get16(b + 6)) & IP4_DF))
			return false;
	} else {
		if (memcmp(a, b, 4) || a[7] != b[7])
			return false;
	}
	if (ta->ack != tb->ack || ta->thl != tb->thl)
		return false;
	return memcmp(a + ta->iphl + 20, b + tb->iphl + 20, ta->thl - 20) == 0;
}

struct flow {
	const uint8_t *ip; /* the leader's packet */
	struct tcpv t;	   /* ... parsed */
	int16_t leader, last;
	uint32_t next_seq;
	size_t total;
	bool final;
};

static bool ends_frame(uint8_t flags)
{
	return flags & (TCP_URG | TCP_PSH | TCP_RST | TCP_SYN | TCP_FIN);
}

static void plan_singles(struct tunio_plan *pl, unsigned n)
{
	pl->n = n;
	for (unsigned i = 0; i < n; i++) {
		pl->next[i] = -1;
		pl->leader[i] = 1;
		pl->count[i] = 1;
		pl->mss[i] = 0;
		pl->or_flags[i] = 0;
	}
}

void tunio_plan_build(struct tunio_plan *pl, const struct pktbuf_batch *b)
{
	struct flow flows[TUNIO_MAX_FLOWS];
	unsigned nflows = 0, n = b->n <= PKTBUF_BATCH_MAX ? b->n : PKTBUF_BATCH_MAX;

	plan_singles(pl, n);
	for (unsigned i = 0; i < n; i++) {
		const struct pktbuf *p = &b->pkt[i];
		const uint8_t *ip;
		struct tcpv t;
		struct flow *f = NULL;

		if (!pkt_in_bounds(p))
			continue;
		ip = pktbuf_data(p);
		if (!tcpv_parse(ip, p->len, &t, true))
			continue;
		/* The most recent frame of this flow, if any. */
		for (unsigned k = nflows; k-- > 0;) {
			if (same_flow(flows[k].ip, &flows[k].t, ip, &t)) {
				f = &flows[k];
				break;
			}
		}
		if (f && !f->final) {
			unsigned L = (unsigned)f->leader;

			if (t.csum_ok && t.payload > 0 && t.payload <= pl->mss[L] &&
			    t.seq == f->next_seq && same_headers(f->ip, &f->t, ip, &t) &&
			    ((t.flags ^ f->t.flags) & (uint8_t) ~(TCP_CWR | TCP_FIN | TCP_PSH)) ==
				    0 &&
			    !(t.flags & TCP_CWR) && f->total + t.payload <= TUNIO_IP_MAX) {
				pl->next[f->last] = (int16_t)i;
				pl->leader[i] = 0;
				pl->count[L]++;
				pl->or_flags[L] |= t.flags & (TCP_FIN | TCP_PSH);
				f->last = (int16_t)i;
				f->total += t.payload;
				f->next_seq += (uint32_t)t.payload;
				f->final = t.payload < pl->mss[L] || ends_frame(t.flags);
				continue;
			}
		}
		/* Not joined: this packet ends the flow's frame, and starts a
		 * new one if it can carry more. */
		if (f)
			f->final = true;
		if (!t.csum_ok || t.payload == 0)
			continue;
		if (!f) {
			if (nflows == TUNIO_MAX_FLOWS)
				continue;
			f = &flows[nflows++];
		}
		f->ip = ip;
		f->t = t;
		f->leader = (int16_t)i;
		f->last = (int16_t)i;
		f->next_seq = t.seq + (uint32_t)t.payload;
		f->total = t.total;
		f->final = ends_frame(t.flags);
		pl->mss[i] = (uint16_t)t.payload;
	}
}

unsigned tunio_plan_frame(const struct tunio_plan *pl, const struct pktbuf_batch *b, unsigned i,
			  bool vnet, uint8_t hdr[static TUNIO_FRAME_HDR_MAX], struct iovec *iov)
{
	const struct pktbuf *p = &b->pkt[i];
	uint8_t *data = pktbuf_data(p);
	struct tunio_vnet_hdr h = {0};
	struct tcpv t;
	size_t hl, total;
	unsigned k;

	if (!vnet) {
		iov[0] = (struct iovec){.iov_base = data, .iov_len = p->len};
		return 1;
	}
	if (pl->count[i] <= 1 || !tcpv_parse(data, p->len, &t, false)) {
		memcpy(hdr, &h, sizeof(h));
		iov[0] = (struct iovec){.iov_base = hdr, .iov_len = TUNIO_VNET_HDR_LEN};
		iov[1] = (struct iovec){.iov_base = data, .iov_len = p->len};
		return 2;
	}
	hl = t.iphl + t.thl;
	total = t.total;
	iov[1] = (struct iovec){.iov_base = data + hl, .iov_len = t.payload};
	k = 2;
	for (int j = pl->next[i]; j >= 0; j = pl->next[j]) {
		const struct pktbuf *q = &b->pkt[j];
		struct tcpv u;

		/* Members were parsed by tunio_plan_build(); this cannot fail. */
		if (!tcpv_parse(pktbuf_data(q), q->len, &u, false))
			break;
		iov[k++] = (struct iovec){.iov_base = pktbuf_data(q) + u.iphl + u.thl,
					  .iov_len = u.payload};
		total += u.payload;
	}

	uint8_t *ip = hdr + TUNIO_VNET_HDR_LEN, *th = ip + t.iphl;

	memcpy(ip, data, hl);
	if (t.ver == 4) {
		put16(ip + 2, (uint16_t)total);
		ip4_set_csum(ip, t.iphl);
	} else {
		put16(ip + 4, (uint16_t)(total - 40));
	}
	th[13] |= pl->or_flags[i];
	/* CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum over
	 * the whole TCP length; the kernel completes it per segment. */
	csum_store(th + 16,
		   csum_fold(csum_pseudo(ip, t.ver, IPPROTO_TCP_, (uint32_t)(total - t.iphl))));
	h.flags = TUNIO_VNET_F_NEEDS_CSUM;
	h.gso_type = t.ver == 4 ? TUNIO_VNET_GSO_TCPV4 : TUNIO_VNET_GSO_TCPV6;
	if (t.flags & TCP_CWR)
		h.gso_type |= TUNIO_VNET_GSO_ECN;
	h.hdr_len = (uint16_t)hl;
	h.gso_size = pl->mss[i];
	h.csum_start = (uint16_t)t.iphl;
	h.csum_offset = 16;
	memcpy(hdr, &h, sizeof(h));
	iov[0] = (struct iovec){.iov_base = hdr, .iov_len = TUNIO_VNET_HDR_LEN + hl};
	return k;
}

/* ---- The fd ---- */

int tunio_create(const char *name, const struct tunio_config *cfg, int *fd_out)
{
	struct ifreq ifr = {0};
	size_t len = strlen(name);
	int fd, ret;

	*fd_out = -1;
	if (len >= sizeof(ifr.ifr_name))
		return -ENAMETOOLONG;
	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	memcpy(ifr.ifr_name, name, len + 1);
	ifr.ifr_flags = tun_iff_flags(fd, cfg->no_vnet_hdr);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	*fd_out = fd;
	return 0;
}

/* Asks for the offloads cfg allows, the largest set the kernel takes. */
static unsigned set_offloads(int fd, const struct tunio_config *cfg)
{
	unsigned int tso = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
	unsigned int none = 0;

	if (!cfg->no_vnet_hdr && !cfg->no_tso && !kfeat_fallback_forced("tun_vnet_hdr")) {
		if (!cfg->no_uso && !kfeat_fallback_forced("tun_uso")) {
			unsigned int uso = tso | TUN_F_USO4 | TUN_F_USO6;

			if (ioctl(fd, TUNSETOFFLOAD, uso) == 0)
				return TUNIO_OFFLOAD_TSO | TUNIO_OFFLOAD_USO;
		}
		if (ioctl(fd, TUNSETOFFLOAD, tso) == 0)
			return TUNIO_OFFLOAD_TSO;
	}
	/* The device may have had offloads from an earlier holder. */
	if (ioctl(fd, TUNSETOFFLOAD, none) < 0)
		return ~0U;
	return 0;
}

int tunio_new(int fd, const struct tunio_config *cfg, struct tunio **out)
{
	struct ifreq ifr = {0};
	struct tunio *t;
	int fl, vnet_sz = TUNIO_VNET_HDR_LEN;
	unsigned off;

	*out = NULL;
	if (ioctl(fd, TUNGETIFF, &ifr) < 0)
		return -errno;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	t = xcalloc(1, sizeof(*t));
	t->fd = fd;
	if (ifr.ifr_flags & IFF_VNET_HDR) {
		if (ioctl(fd, TUNSETVNETHDRSZ, &vnet_sz) < 0) {
			int ret = -errno;

			free(t);
			return ret;
		}
		off = set_offloads(fd, cfg);
		if (off == ~0U) {
			int ret = -errno;

			free(t);
			return ret;
		}
		t->vnet = true;
		t->offloads = TUNIO_OFFLOAD_VNET_HDR | off;
		if (!cfg->no_vnet_hdr && !cfg->no_coalesce &&
		    !kfeat_fallback_forced("tun_vnet_hdr"))
			t->offloads |= TUNIO_OFFLOAD_COALESCE;
		t->rbuf = xmalloc(TUNIO_FRAME_MAX);
	}
	*out = t;
	return 0;
}

void tunio_free(struct tunio *t)
{
	if (!t)
		return;
	free(t->rbuf);
	free(t);
}

void tunio_release(struct tunio *t)
{
	if (t->rbuf && !t->pending)
		pktbuf_release(t->rbuf, TUNIO_FRAME_MAX);
}

unsigned tunio_offloads(const struct tunio *t)
{
	return t->offloads;
}

const struct tunio_stats *tunio_stats(const struct tunio *t)
{
	return &t->stats;
}

int tunio_read(struct tunio *t, struct pktbuf_batch *b)
{
	unsigned n0 = b->n;
	int err = 0;

	if (b->cap > PKTBUF_BATCH_MAX)
		return -EINVAL;
	while (b->n < b->cap) {
		ssize_t r;

		if (t->pending) {
			const char *why = NULL;
			int s = tunio_segment(t->rbuf, t->rlen, &t->rnext, b, &why);

			if (s == 0)
				break;
			t->pending = false;
			if (s < 0)
				t->stats.drops_in++;
			continue;
		}
		if (t->vnet) {
			r = read(t->fd, t->rbuf, TUNIO_FRAME_MAX);
		} else {
			struct pktbuf *p = &b->pkt[b->n];

			if (pktbuf_room(p) == 0) {
				err = -ENOBUFS;
				break;
			}
			r = read(t->fd, pktbuf_data(p), pktbuf_room(p));
		}
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				err = -errno;
			break;
		}
		t->stats.read_calls++;
		if (t->vnet) {
			t->rlen = (size_t)r;
			t->rnext = 0;
			t->pending = true;
			if (r > TUNIO_VNET_HDR_LEN && t->rbuf[1] != TUNIO_VNET_GSO_NONE)
				t->stats.supers_in++;
		} else if (r == 0) {
			t->stats.drops_in++;
		} else {
			b->pkt[b->n].len = (uint32_t)r;
			b->n++;
		}
	}
	t->stats.pkts_in += b->n - n0;
	if (b->n > n0)
		return (int)(b->n - n0);
	return err ? err : -EAGAIN;
}

/* Errors that concern one packet, not the device. */
static bool write_err_is_packet(int e)
{
	return e == EINVAL || e == EAGAIN || e == EWOULDBLOCK || e == EMSGSIZE || e == ENOMEM ||
	       e == ENOBUFS || e == EFAULT;
}

int tunio_write(struct tunio *t, const struct pktbuf_batch *b)
{
	struct tunio_plan *pl = &t->plan;
	unsigned n = b->n <= PKTBUF_BATCH_MAX ? b->n : PKTBUF_BATCH_MAX;

	if (t->offloads & TUNIO_OFFLOAD_COALESCE)
		tunio_plan_build(pl, b);
	else
		plan_singles(pl, n);
	for (unsigned i = 0; i < n; i++) {
		unsigned cnt;
		ssize_t r;

		if (!pl->leader[i])
			continue;
		if (!pkt_in_bounds(&b->pkt[i]) || b->pkt[i].len == 0) {
			t->stats.drops_out++;
			continue;
		}
		cnt = tunio_plan_frame(pl, b, i, t->vnet, t->hdr, t->iov);
		do {
			r = writev(t->fd, t->iov, (int)cnt);
		} while (r < 0 && errno == EINTR);
		t->stats.write_calls++;
		if (r < 0) {
			if (!write_err_is_packet(errno))
				return -errno;
			t->stats.drops_out += pl->count[i];
			continue;
		}
		t->stats.pkts_out += pl->count[i];
		if (pl->count[i] > 1)
			t->stats.supers_out++;
	}
	return 0;
}
