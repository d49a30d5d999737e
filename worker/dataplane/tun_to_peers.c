/* TUN -> peers: what the pod sends, read from the TUN in batches, passed
 * through the packet filter (outbound: flows recorded, DNS to quad-100
 * answered by quad100.c, the rest of quad-100 and TSMP dropped), encrypted by WireGuard and sent on
 * the UDP socket(s). The sending half (dataplane__udp_flush) also carries handshakes, keepalives
 * and TSMP answers. */
#include "dataplane.h"

#include <errno.h>
#include <poll.h>
#include <string.h>

#include "dataplane_internal.h"

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

void dataplane__udp_send_batch(struct dataplane *dp, struct wg_batch *b)
{
	bool any = false;

	for (size_t i = 0; i < b->n; i++)
		any |= !dataplane__derp_divert(dp, &b->pkt[i]);
	for (size_t k = 0; k < dp->n_udp && any; k++) {
		struct pktbuf_batch *pb = &dp->pb;

		pb->n = 0;
		pb->cap = DATAPLANE_BATCH;
		for (size_t i = 0; i < b->n; i++) {
			const struct wg_packet *w = &b->pkt[i];
			struct pktbuf *p;
			socklen_t alen = dataplane__sockaddr_len(&w->addr);

			if (!alen || (dp->n_udp > 1 && socket_for(dp, w->addr.ss_family) != k))
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

void dataplane__udp_flush(struct dataplane *dp)
{
	dataplane__udp_send_batch(dp, &dp->disco_out);
	dataplane__udp_send_batch(dp, &dp->udp_out);
}

static bool is_quad100(const struct packet *p)
{
	if (p->version == 4)
		return memcmp(p->dst, ip_quad100_v4.addr, 4) == 0;
	if (p->version == 6)
		return memcmp(p->dst, ip_quad100_v6.addr, 16) == 0;
	return false;
}

/* The filter for what the pod sends: deny-all before the first
 * configuration (outbound, that is the pre-checks alone). */
static const struct filter *filter_out(const struct dataplane *dp)
{
	return dp->cur ? dp->cur->filter : dp->deny_all;
}

int dataplane__tun_to_peers(struct dataplane *dp, uint64_t now, bool *more)
{
	struct wg_batch *b = &dp->tun_in;
	struct pktbuf_batch *pb = &dp->pb;
	const struct filter *f = filter_out(dp);
	size_t kept = 0;
	int r;

	*more = false;
	dataplane__pb_reset(pb, b, PKTBUF_HEADROOM);
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
			if (!dataplane__q100_rx(dp, &p, w->buf + w->off, now))
				dp->st.drops[DATAPLANE_DROP_QUAD100]++;
			continue;
		}
		if (p.proto == PACKET_PROTO_TSMP) {
			dp->st.drops[DATAPLANE_DROP_TSMP_OUT]++;
			continue;
		}
		dataplane__batch_keep(b, i, &kept);
	}
	b->n = kept;
	if (b->n) {
		wg_device_tun_rx(dp->dev, b, &dp->udp_out, now);
		dataplane__udp_flush(dp);
	} else if (dp->disco_out.n) {
		dataplane__udp_send_batch(dp, &dp->disco_out); /* forwarded queries */
	}
	b->n = 0;
	dataplane__q100_flush(dp);
	return 0;
}
