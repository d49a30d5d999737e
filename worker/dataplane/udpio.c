/* Batched UDP I/O with GSO and GRO (see udpio.h). */
#include "udpio.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "kfeat.h"
#include "mem.h"

#ifndef SOL_UDP
#define SOL_UDP 17
#endif

union udpio_ctl {
	char buf[CMSG_SPACE(sizeof(int))]; /* UDP_SEGMENT (u16) or UDP_GRO (int) */
	struct cmsghdr align;
};

struct udpio {
	int fd;
	unsigned offloads;
	/* Coalesced receives not yet split into a batch: messages gro_i..gro_n
	 * of the slots, the current one from byte gro_off. */
	uint8_t *gro_buf; /* gro_slots * UDPIO_GRO_BUF */
	unsigned gro_n, gro_i;
	size_t gro_off;
	unsigned gro_slots;
	uint32_t gro_len[UDPIO_GRO_SLOTS_MAX];
	uint16_t gro_seg[UDPIO_GRO_SLOTS_MAX];
	struct sockaddr_storage gro_addr[UDPIO_GRO_SLOTS_MAX];
	socklen_t gro_alen[UDPIO_GRO_SLOTS_MAX];
	/* Per-call scratch, kept here so nothing is on the stack or the heap
	 * per packet. */
	struct mmsghdr msgs[PKTBUF_BATCH_MAX];
	struct iovec iov[PKTBUF_BATCH_MAX];
	uint16_t msg_first[PKTBUF_BATCH_MAX], msg_count[PKTBUF_BATCH_MAX];
	union udpio_ctl ctl[PKTBUF_BATCH_MAX];
	struct udpio_stats stats;
};

int udpio_new(int fd, const struct udpio_config *cfg, struct udpio **out)
{
	int domain = 0, type = 0, v = 0;
	socklen_t l = sizeof(domain);
	struct udpio *u;

	*out = NULL;
	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &l) < 0)
		return -errno;
	l = sizeof(type);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) < 0)
		return -errno;
	if ((domain != AF_INET && domain != AF_INET6) || type != SOCK_DGRAM)
		return -EAFNOSUPPORT;
	u = xcalloc(1, sizeof(*u));
	u->fd = fd;
	/* UDP_SEGMENT (4.18) reads back as 0 where it exists. */
	l = sizeof(v);
	if (!cfg->no_gso && !kfeat_fallback_forced("udp_gso") &&
	    getsockopt(fd, SOL_UDP, UDP_SEGMENT, &v, &l) == 0)
		u->offloads |= UDPIO_OFFLOAD_GSO;
	v = !cfg->no_gro && !kfeat_fallback_forced("udp_gro");
	if (setsockopt(fd, SOL_UDP, UDP_GRO, &v, sizeof(v)) == 0 && v)
		u->offloads |= UDPIO_OFFLOAD_GRO;
	u->gro_slots = cfg->gro_slots ? cfg->gro_slots : UDPIO_GRO_SLOTS;
	if (u->gro_slots > UDPIO_GRO_SLOTS_MAX)
		u->gro_slots = UDPIO_GRO_SLOTS_MAX;
	if (u->offloads & UDPIO_OFFLOAD_GRO)
		u->gro_buf = xmalloc((size_t)u->gro_slots * UDPIO_GRO_BUF);
	*out = u;
	return 0;
}

void udpio_free(struct udpio *u)
{
	if (!u)
		return;
	free(u->gro_buf);
	free(u);
}

void udpio_release(struct udpio *u)
{
	if (u->gro_buf && u->gro_i >= u->gro_n)
		pktbuf_release(u->gro_buf, (size_t)u->gro_slots * UDPIO_GRO_BUF);
}

unsigned udpio_offloads(const struct udpio *u)
{
	return u->offloads;
}

const struct udpio_stats *udpio_stats(const struct udpio *u)
{
	return &u->stats;
}

/* ---- Sending ---- */

static bool send_ok(const struct pktbuf *p)
{
	return p->head && p->off <= p->size && p->len <= p->size - p->off && p->len > 0 &&
	       p->addr_len > 0 && p->addr_len <= sizeof(p->addr);
}

static bool same_addr(const struct pktbuf *a, const struct pktbuf *b)
{
	if (a->addr_len != b->addr_len || a->addr.ss_family != b->addr.ss_family)
		return false;
	if (a->addr.ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)&a->addr, *y = (const void *)&b->addr;

		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->addr.ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)&a->addr, *y = (const void *)&b->addr;

		return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
		       memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
	}
	return memcmp(&a->addr, &b->addr, a->addr_len) == 0;
}

/* How many packets from i go in one GSO message: same address, the same
 * length but the last, which may be shorter and ends the run. */
static unsigned gso_run(const struct pktbuf_batch *b, unsigned i, unsigned n)
{
	const struct pktbuf *p = &b->pkt[i];
	size_t total = p->len;
	unsigned cnt = 1;

	while (i + cnt < n && cnt < UDPIO_GSO_MAX_SEGS) {
		const struct pktbuf *q = &b->pkt[i + cnt];

		if (!send_ok(q) || q->len > p->len || total + q->len > UDPIO_GSO_MAX_BYTES ||
		    !same_addr(p, q))
			break;
		total += q->len;
		cnt++;
		if (q->len < p->len)
			break;
	}
	return cnt;
}

/* Errors that concern one datagram (its address, its size), not the socket. */
static bool send_err_is_packet(int e)
{
	return e == EMSGSIZE || e == ENETUNREACH || e == EHOSTUNREACH || e == ENETDOWN ||
	       e == EHOSTDOWN || e == EINVAL || e == EAFNOSUPPORT || e == EPERM || e == EACCES ||
	       e == ECONNREFUSED || e == EDESTADDRREQ || e == ENOBUFS || e == EADDRNOTAVAIL;
}

int udpio_send(struct udpio *u, const struct pktbuf_batch *b)
{
	unsigned n = b->n <= PKTBUF_BATCH_MAX ? b->n : PKTBUF_BATCH_MAX;
	unsigned done = 0, single_until = 0;

	while (done < n) {
		unsigned nm = 0, niov = 0, i = done;
		int r;

		while (i < n) {
			const struct pktbuf *p = &b->pkt[i];
			struct msghdr *mh = &u->msgs[nm].msg_hdr;
			unsigned cnt = 1;

			if (!send_ok(p)) {
				if (nm > 0)
					break; /* send what is before it first */
				u->stats.drops_out++;
				done = ++i;
				continue;
			}
			if ((u->offloads & UDPIO_OFFLOAD_GSO) && i >= single_until)
				cnt = gso_run(b, i, n);
			for (unsigned k = 0; k < cnt; k++)
				u->iov[niov + k] =
					(struct iovec){.iov_base = pktbuf_data(&b->pkt[i + k]),
						       .iov_len = b->pkt[i + k].len};
			*mh = (struct msghdr){.msg_name = (void *)&p->addr,
					      .msg_namelen = p->addr_len,
					      .msg_iov = &u->iov[niov],
					      .msg_iovlen = cnt};
			if (cnt > 1) {
				struct cmsghdr *c = &u->ctl[nm].align;
				uint16_t seg = (uint16_t)p->len;

				memset(&u->ctl[nm], 0, sizeof(u->ctl[nm]));
				mh->msg_control = u->ctl[nm].buf;
				mh->msg_controllen = CMSG_SPACE(sizeof(seg));
				c->cmsg_level = SOL_UDP;
				c->cmsg_type = UDP_SEGMENT;
				c->cmsg_len = CMSG_LEN(sizeof(seg));
				memcpy(CMSG_DATA(c), &seg, sizeof(seg));
			}
			u->msg_first[nm] = (uint16_t)i;
			u->msg_count[nm] = (uint16_t)cnt;
			nm++;
			niov += cnt;
			i += cnt;
		}
		if (nm == 0)
			break;
		do {
			r = sendmmsg(u->fd, u->msgs, nm, MSG_DONTWAIT);
		} while (r < 0 && errno == EINTR);
		if (r > 0) {
			u->stats.send_calls++;
			for (int k = 0; k < r; k++) {
				done += u->msg_count[k];
				u->stats.dgrams_out += u->msg_count[k];
				if (u->msg_count[k] > 1)
					u->stats.gso_msgs++;
			}
			continue;
		}
		/* The first message failed. */
		int e = r < 0 ? errno : EIO;

		if (e == EAGAIN || e == EWOULDBLOCK)
			return done ? (int)done : -EAGAIN;
		if (u->msg_count[0] > 1 && e == EIO) {
			/* The route's device cannot checksum for GSO. */
			u->offloads &= ~(unsigned)UDPIO_OFFLOAD_GSO;
			continue;
		}
		if (!send_err_is_packet(e))
			return done ? (int)done : -e;
		if (u->msg_count[0] > 1) {
			/* E.g. a segment over the path MTU (EINVAL): send this
			 * run one by one, so only the datagrams at fault drop. */
			single_until = u->msg_first[0] + u->msg_count[0];
			continue;
		}
		u->stats.drops_out += u->msg_count[0];
		done += u->msg_count[0];
	}
	return (int)done;
}

/* ---- Receiving ---- */

/* Receives straight into the batch, one datagram per message. */
static int recv_plain(struct udpio *u, struct pktbuf_batch *b)
{
	unsigned m = b->cap - b->n;
	int r;

	for (unsigned k = 0; k < m; k++) {
		struct pktbuf *p = &b->pkt[b->n + k];

		if (pktbuf_room(p) == 0)
			return -ENOBUFS;
		u->iov[k] = (struct iovec){.iov_base = pktbuf_data(p), .iov_len = pktbuf_room(p)};
		u->msgs[k].msg_hdr = (struct msghdr){.msg_name = &p->addr,
						     .msg_namelen = sizeof(p->addr),
						     .msg_iov = &u->iov[k],
						     .msg_iovlen = 1};
	}
	do {
		r = recvmmsg(u->fd, u->msgs, m, MSG_DONTWAIT, NULL);
	} while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	u->stats.recv_calls++;
	/* Keep the good ones packed at the front; a truncated datagram was
	 * larger than its buffer and is dropped. */
	unsigned w = b->n;

	for (int k = 0; k < r; k++) {
		struct pktbuf *src = &b->pkt[b->n + k], *dst = &b->pkt[w];
		size_t len = u->msgs[k].msg_len;

		if ((u->msgs[k].msg_hdr.msg_flags & MSG_TRUNC) || len == 0) {
			u->stats.drops_in++;
			continue;
		}
		if (dst != src) {
			if (len > pktbuf_room(dst)) {
				u->stats.drops_in++;
				continue;
			}
			memcpy(pktbuf_data(dst), pktbuf_data(src), len);
			dst->addr = src->addr;
		}
		dst->addr_len = u->msgs[k].msg_hdr.msg_namelen;
		dst->len = (uint32_t)len;
		u->stats.dgrams_in++;
		w++;
	}
	b->n = w;
	return r;
}

/* Splits held coalesced receives into the batch until it is full. */
static void gro_split(struct udpio *u, struct pktbuf_batch *b)
{
	while (u->gro_i < u->gro_n && b->n < b->cap) {
		unsigned i = u->gro_i;
		const uint8_t *src = u->gro_buf + (size_t)i * UDPIO_GRO_BUF;
		size_t len = u->gro_len[i], left = len - u->gro_off;
		size_t chunk = left < u->gro_seg[i] ? left : u->gro_seg[i];
		struct pktbuf *p = &b->pkt[b->n];

		if (chunk > pktbuf_room(p)) {
			u->stats.drops_in++;
		} else {
			memcpy(pktbuf_data(p), src + u->gro_off, chunk);
			p->len = (uint32_t)chunk;
			p->addr = u->gro_addr[i];
			p->addr_len = u->gro_alen[i];
			b->n++;
			u->stats.dgrams_in++;
		}
		u->gro_off += chunk;
		if (u->gro_off >= len) {
			u->gro_i++;
			u->gro_off = 0;
		}
	}
}

/* Receives up to gro_slots (coalesced) messages into the slots. */
static int recv_gro(struct udpio *u)
{
	int r;

	for (unsigned k = 0; k < u->gro_slots; k++) {
		u->iov[k] = (struct iovec){.iov_base = u->gro_buf + (size_t)k * UDPIO_GRO_BUF,
					   .iov_len = UDPIO_GRO_BUF};
		u->msgs[k].msg_hdr = (struct msghdr){.msg_name = &u->gro_addr[k],
						     .msg_namelen = sizeof(u->gro_addr[k]),
						     .msg_iov = &u->iov[k],
						     .msg_iovlen = 1,
						     .msg_control = u->ctl[k].buf,
						     .msg_controllen = sizeof(u->ctl[k].buf)};
	}
	do {
		r = recvmmsg(u->fd, u->msgs, u->gro_slots, MSG_DONTWAIT, NULL);
	} while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	u->stats.recv_calls++;
	u->gro_n = 0;
	u->gro_i = 0;
	u->gro_off = 0;
	for (int k = 0; k < r; k++) {
		struct msghdr *mh = &u->msgs[k].msg_hdr;
		size_t len = u->msgs[k].msg_len;
		int seg = 0;

		if ((mh->msg_flags & MSG_TRUNC) || len == 0 || len > UDPIO_GRO_BUF) {
			u->stats.drops_in++;
			continue;
		}
		for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
			if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO &&
			    c->cmsg_len >= CMSG_LEN(sizeof(int)))
				memcpy(&seg, CMSG_DATA(c), sizeof(int));
		}
		/* No cmsg: one datagram. A size outside 1..len is treated so too. */
		if (seg <= 0 || (size_t)seg >= len)
			seg = (int)len;
		else
			u->stats.gro_msgs++;
		if (seg > UINT16_MAX) {
			u->stats.drops_in++;
			continue;
		}
		/* Compact into slot gro_n (moving the bytes only if a slot
		 * before was dropped). */
		unsigned d = u->gro_n;

		if (d != (unsigned)k) {
			memmove(u->gro_buf + (size_t)d * UDPIO_GRO_BUF,
				u->gro_buf + (size_t)k * UDPIO_GRO_BUF, len);
			u->gro_addr[d] = u->gro_addr[k];
		}
		u->gro_alen[d] = mh->msg_namelen;
		u->gro_len[d] = (uint32_t)len;
		u->gro_seg[d] = (uint16_t)seg;
		u->gro_n++;
	}
	return r;
}

int udpio_recv(struct udpio *u, struct pktbuf_batch *b)
{
	unsigned n0 = b->n;
	int err = 0;

	if (b->cap > PKTBUF_BATCH_MAX)
		return -EINVAL;
	while (b->n < b->cap) {
		int r;

		if (u->gro_i < u->gro_n) {
			gro_split(u, b);
			continue;
		}
		if (u->offloads & UDPIO_OFFLOAD_GRO) {
			r = recv_gro(u);
			if (r < 0) {
				err = r;
				break;
			}
			gro_split(u, b);
			if ((unsigned)r < u->gro_slots)
				break; /* drained: spare the recvmmsg that would say EAGAIN */
		} else {
			unsigned m = b->cap - b->n;

			r = recv_plain(u, b);
			if (r < 0) {
				err = r;
				break;
			}
			if ((unsigned)r < m)
				break;
		}
	}
	if (b->n > n0)
		return (int)(b->n - n0);
	if (err == -EWOULDBLOCK)
		err = -EAGAIN;
	return err ? err : -EAGAIN;
}
