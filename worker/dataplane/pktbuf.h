/* A batch of packet buffers, the unit of work of the data path: the TUN
 * reader (common/tunio.h) fills one with IP packets, the WireGuard engine
 * encrypts them in place and the UDP sender (common/udpio.h) sends them; the
 * other direction runs the same way back.
 *
 * The buffers belong to the caller, who allocates them once at start-up;
 * nothing on the packet path allocates. Each buffer has room in front of the
 * packet for the WireGuard data header and behind it for the padding and the
 * Poly1305 tag, so encryption never moves a packet:
 *
 *   head                 head+off            +len                  head+size
 *   |<- PKTBUF_HEADROOM ->|<------ packet ---->|<- PKTBUF_TAILROOM ->|
 *
 * Readers write at head+off (off is the caller's choice: PKTBUF_HEADROOM for
 * plaintext from the TUN, 0 for ciphertext from UDP) and never past
 * pktbuf_room(); writers send the len bytes at head+off. */
#ifndef TSCNI_WORKER_DATAPLANE_PKTBUF_H
#define TSCNI_WORKER_DATAPLANE_PKTBUF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

enum pktbuf_limits {
	PKTBUF_HEADROOM = 16, /* WireGuard type, receiver index, counter */
	PKTBUF_TAILROOM = 32, /* padding to 16 bytes + 16-byte tag */
	PKTBUF_SIZE = 2048,   /* a buffer of this size holds a 1500-byte MTU packet */
	PKTBUF_BATCH_MAX = 128,
};

/* One packet. addr is the peer's address for UDP (filled by udpio_recv, read
 * by udpio_send); TUN I/O ignores it. */
struct pktbuf {
	uint8_t *head;	    /* caller-owned, size bytes, lives as long as the batch */
	uint32_t size;	    /* bytes at head */
	uint32_t off;	    /* packet start, head + off */
	uint32_t len;	    /* packet length */
	socklen_t addr_len; /* 0 when addr is unset */
	struct sockaddr_storage addr;
};

/* pkt[0..n) hold packets; pkt[n..cap) are free for a reader to fill.
 * cap <= PKTBUF_BATCH_MAX. */
struct pktbuf_batch {
	unsigned n, cap;
	struct pktbuf pkt[PKTBUF_BATCH_MAX];
};

static inline uint8_t *pktbuf_data(const struct pktbuf *p)
{
	return p->head + p->off;
}

/* How many bytes a reader may write at pktbuf_data(p): the tailroom stays
 * free for the WireGuard engine. 0 when off leaves no room. */
static inline size_t pktbuf_room(const struct pktbuf *p)
{
	if (p->size < PKTBUF_TAILROOM || p->off > p->size - PKTBUF_TAILROOM)
		return 0;
	return p->size - PKTBUF_TAILROOM - p->off;
}

/* Gives the whole pages inside [p, p + len) back to the kernel
 * (MADV_DONTNEED: they read as zeros when next touched). For scratch
 * buffers that hold nothing between uses: after a burst of traffic they
 * would otherwise stay resident for the worker's life. */
static inline void pktbuf_release(void *p, size_t len)
{
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t lo = ((uintptr_t)p + page - 1) & ~(page - 1);
	uintptr_t hi = ((uintptr_t)p + len) & ~(page - 1);

	if (p && hi > lo)
		(void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

#endif
