/* Peers -> TUN: datagrams from the UDP socket(s), decrypted by WireGuard,
 * passed through the packet filter (inbound: the jailed peers' filter for
 * their packets), TSMP answered or stored here (never written to the TUN),
 * the rest written to the TUN in batches (TCP coalescing). */
#include "dataplane.h"

#include <errno.h>
#include <string.h>

#include "dataplane_internal.h"
#include "log.h"

enum {
	DP_TSMP_PING_LEN = 9,	/* 'p' + 8 data bytes */
	DP_TSMP_DISCO_LEN = 33, /* 'a' + a disco public key */
	DP_IP_TTL = 64,
};

/* The filter for a packet WireGuard delivered: deny-all before the first
 * configuration, else the configuration's for its sender. */
static const struct filter *filter_in(const struct dataplane *dp, const struct packet *p)
{
	return dp->cur ? dataplane__config_filter_in(dp->cur, p) : dp->deny_all;
}

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
			dataplane__disco_store(dp, wg_peer_public_key(w->peer), body + 1);
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

int dataplane__peers_to_tun(struct dataplane *dp, size_t k, uint64_t now, bool *more)
{
	struct wg_batch *b = &dp->udp_in;
	struct pktbuf_batch *pb = &dp->pb;
	size_t kept = 0;
	int r;

	*more = false;
	dataplane__pb_reset(pb, b, 0);
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
	/* pb is free again: disco may send (dataplane__udp_flush). */
	for (size_t i = 0; i < b->n; i++) {
		if (dataplane__q100_upstream_rx(dp, &b->pkt[i], now))
			continue;
		if (!dataplane__magic_rx(dp, &b->pkt[i], now))
			dataplane__batch_keep(b, i, &kept);
	}
	b->n = kept;
	return dataplane__peers_deliver(dp, now);
}

int dataplane__peers_deliver(struct dataplane *dp, uint64_t now)
{
	struct wg_batch *b = &dp->udp_in, *t = &dp->tun_out;
	struct pktbuf_batch *pb = &dp->pb;
	size_t kept = 0;
	int r;

	wg_device_udp_rx(dp->dev, b, t, &dp->udp_out, now);
	b->n = 0;

	for (size_t i = 0; i < t->n; i++) {
		struct wg_packet *w = &t->pkt[i];
		enum filter_reason reason = FILTER_REASON_NONE;
		const char *why = NULL;
		struct packet p;

		(void)packet_parse(&p, w->buf + w->off, w->len, &why);
		if (filter_run_in(filter_in(dp, &p), &p, &reason) != FILTER_ACCEPT) {
			dp->st.filter_drop_in[reason]++;
			continue;
		}
		if (p.proto == PACKET_PROTO_TSMP) {
			tsmp_handle(dp, w, &p);
			continue;
		}
		dataplane__batch_keep(t, i, &kept);
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
		dataplane__udp_flush(dp);
		wg_device_tun_rx(dp->dev, &dp->local, &dp->udp_out, now);
		dp->local.n = 0;
	}
	dataplane__udp_flush(dp);
	return 0;
}
