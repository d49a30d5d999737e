/* Fuzz target for the TUN frame parser and the TCP coalescer (common/tunio.h).
 *
 * The first byte chooses the mode:
 *  - even: the rest is one frame as read from a TUN with IFF_VNET_HDR
 *    (virtio_net_hdr + packet) and is cut by tunio_segment() into batches
 *    of 1..8 free slots, resuming until it is done or refused. Every packet
 *    must fit its buffer, the batch never overflows, and an error names why.
 *  - odd: the rest is a sequence of packets, each behind a 2-byte length,
 *    as the WireGuard engine would hand them to tunio_write(). They are
 *    planned and rendered as frames; every frame of several packets, cut
 *    again by tunio_segment(), must give back each member's payload.
 * Buffers are static; nothing is allocated. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "worker/dataplane/pktbuf.h"
#include "worker/dataplane/tunio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t bufs[2][PKTBUF_BATCH_MAX][PKTBUF_SIZE];
static uint8_t frame[TUNIO_FRAME_MAX];
static struct pktbuf_batch in, out;
static struct tunio_plan plan;

static void batch_init(struct pktbuf_batch *b, int which, unsigned cap)
{
	memset(b, 0, sizeof(*b));
	b->cap = cap;
	for (unsigned i = 0; i < PKTBUF_BATCH_MAX; i++) {
		b->pkt[i].head = bufs[which][i];
		b->pkt[i].size = PKTBUF_SIZE;
		b->pkt[i].off = PKTBUF_HEADROOM;
	}
}

static void check_batch(const struct pktbuf_batch *b)
{
	if (b->n > b->cap)
		abort();
	for (unsigned i = 0; i < b->n; i++)
		if (b->pkt[i].len == 0 || b->pkt[i].len > pktbuf_room(&b->pkt[i]))
			abort();
}

static void fuzz_segment(const uint8_t *data, size_t size, unsigned cap)
{
	unsigned next = 0, rounds = 0;
	int r;

	do {
		const char *why = NULL;

		batch_init(&out, 1, cap);
		r = tunio_segment(data, size, &next, &out, &why);
		if (r < 0 && (!why || (r != -EBADMSG && r != -EMSGSIZE) || out.n != 0))
			abort();
		if (r == 0 && out.n != out.cap)
			abort();
		check_batch(&out);
		if (++rounds > TUNIO_MAX_SEGS + 1)
			abort(); /* resuming must make progress */
	} while (r == 0);
}

/* The TCP payload of an IP packet (tunio_plan_frame() cut only well-formed
 * ones into frames; this mirrors the offsets it used). */
static void tcp_payload(const uint8_t *ip, const uint8_t **p, size_t *n)
{
	size_t iphl = (ip[0] >> 4) == 4 ? 20 : 40;
	size_t total = (ip[0] >> 4) == 4 ? (size_t)(ip[2] << 8 | ip[3])
					 : 40 + (size_t)(ip[4] << 8 | ip[5]);
	size_t hl = iphl + (size_t)(ip[iphl + 12] >> 4) * 4;

	*p = ip + hl;
	*n = total - hl;
}

static void fuzz_coalesce(const uint8_t *data, size_t size)
{
	batch_init(&in, 0, PKTBUF_BATCH_MAX);
	while (size >= 2 && in.n < PKTBUF_BATCH_MAX) {
		size_t len = (size_t)(data[0] << 8 | data[1]) %
			     (PKTBUF_SIZE - PKTBUF_HEADROOM - PKTBUF_TAILROOM + 1);

		data += 2;
		size -= 2;
		if (len > size)
			len = size;
		memcpy(pktbuf_data(&in.pkt[in.n]), data, len);
		in.pkt[in.n].len = (uint32_t)len;
		in.n++;
		data += len;
		size -= len;
	}
	tunio_plan_build(&plan, &in);
	for (unsigned i = 0; i < in.n; i++) {
		uint8_t hdr[TUNIO_FRAME_HDR_MAX];
		struct iovec iov[PKTBUF_BATCH_MAX + 1];
		unsigned n, next = 0, k = 0;
		size_t len = 0;
		const char *why = NULL;

		if (!plan.leader[i] || plan.count[i] < 2)
			continue;
		n = tunio_plan_frame(&plan, &in, i, true, hdr, iov);
		for (unsigned j = 0; j < n; j++) {
			if (len + iov[j].iov_len > sizeof(frame))
				abort();
			memcpy(frame + len, iov[j].iov_base, iov[j].iov_len);
			len += iov[j].iov_len;
		}
		batch_init(&out, 1, PKTBUF_BATCH_MAX);
		if (tunio_segment(frame, len, &next, &out, &why) != 1 || out.n != plan.count[i])
			abort();
		for (int j = (int)i; j >= 0; j = plan.next[j], k++) {
			const uint8_t *a, *b;
			size_t an, bn;

			tcp_payload(pktbuf_data(&out.pkt[k]), &a, &an);
			tcp_payload(pktbuf_data(&in.pkt[j]), &b, &bn);
			if (an != bn || memcmp(a, b, an) != 0)
				abort();
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2 || size > TUNIO_FRAME_MAX + 2)
		return 0;
	if ((data[0] & 1) == 0)
		fuzz_segment(data + 2, size - 2, 1 + data[1] % 8);
	else
		fuzz_coalesce(data + 1, size - 1);
	return 0;
}
