/* Batched packet I/O on a TUN fd, with the kernel's offloads.
 *
 * With IFF_VNET_HDR on the device every read and write carries a 10-byte
 * virtio_net_hdr in front of the packet, and TUNSETOFFLOAD lets the kernel
 * hand us TCP (TSO4/TSO6) and UDP (USO4/USO6) super-packets of up to 64 KiB
 * with a partial checksum: one read() then yields dozens of packets, which
 * tunio_segment() cuts into MTU-sized IP packets with their own headers and
 * checksums. On the way back, consecutive in-order TCP segments of one flow
 * are coalesced into one super-packet (the rules of the kernel's GRO) and
 * written with one writev(); the receiving stack takes it whole.
 *
 * Each offload can be switched off (struct tunio_config) and each is probed
 * at run time with kfeat_fallback_forced() honoured:
 *   "tun_vnet_hdr"  no TSO on reads, no coalescing on writes (plain packets)
 *   "tun_uso"       no UDP super-packets (kernels before 6.2 lack them)
 * The fallback is one read() or write() per packet.
 *
 * Nothing here allocates on the packet path: the packets live in the
 * caller's struct pktbuf_batch; the tunio keeps one 64 KiB read buffer. */
#ifndef TSCNI_WORKER_DATAPLANE_TUNIO_H
#define TSCNI_WORKER_DATAPLANE_TUNIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "pktbuf.h"

/* The virtio_net_hdr as TUN reads and writes it (legacy layout, host byte
 * order, which is what TUN uses unless TUNSETVNETBE/LE changed it). */
struct tunio_vnet_hdr {
	uint8_t flags;	      /* TUNIO_VNET_F_* */
	uint8_t gso_type;     /* TUNIO_VNET_GSO_* */
	uint16_t hdr_len;     /* IP + transport header length (advisory; we parse) */
	uint16_t gso_size;    /* payload bytes per segment */
	uint16_t csum_start;  /* where the checksummed range starts */
	uint16_t csum_offset; /* where, from csum_start, the checksum goes */
};
_Static_assert(sizeof(struct tunio_vnet_hdr) == 10, "virtio_net_hdr is 10 bytes");

enum tunio_vnet {
	TUNIO_VNET_F_NEEDS_CSUM = 1U << 0,
	TUNIO_VNET_F_DATA_VALID = 1U << 1,
	TUNIO_VNET_GSO_NONE = 0,
	TUNIO_VNET_GSO_TCPV4 = 1,
	TUNIO_VNET_GSO_UDP = 3, /* UFO (IP fragmentation): refused */
	TUNIO_VNET_GSO_TCPV6 = 4,
	TUNIO_VNET_GSO_UDP_L4 = 5, /* USO */
	TUNIO_VNET_GSO_ECN = 0x80,
};

enum tunio_limits {
	TUNIO_VNET_HDR_LEN = 10,
	TUNIO_IP_MAX = 65535,				     /* largest super-packet */
	TUNIO_FRAME_MAX = TUNIO_VNET_HDR_LEN + TUNIO_IP_MAX, /* one TUN read */
	/* A super-packet cut into more segments than this is refused (TCP's
	 * smallest MSS makes ~1400 out of 64 KiB; real ones make ~50). */
	TUNIO_MAX_SEGS = 2048,
	/* vnet header + IPv6 (40) or IPv4 (20, no options when coalescing) +
	 * TCP with options (60). */
	TUNIO_FRAME_HDR_MAX = TUNIO_VNET_HDR_LEN + 40 + 60,
	TUNIO_MAX_FLOWS = 32, /* TCP flows coalesced at once per batch */
};

/* The offloads in use (tunio_offloads()). */
enum tunio_offload {
	TUNIO_OFFLOAD_VNET_HDR = 1U << 0, /* the device carries virtio_net_hdr */
	TUNIO_OFFLOAD_TSO = 1U << 1,	  /* the kernel sends TCP super-packets */
	TUNIO_OFFLOAD_USO = 1U << 2,	  /* ... and UDP super-packets */
	TUNIO_OFFLOAD_COALESCE = 1U << 3, /* TCP coalescing on writes */
};

/* Off switches; all false is "every offload the kernel offers". */
struct tunio_config {
	bool no_vnet_hdr; /* no IFF_VNET_HDR: plain packets both ways */
	bool no_tso;	  /* header kept, but no super-packets on reads */
	bool no_uso;	  /* no UDP super-packets on reads */
	bool no_coalesce; /* one write per packet */
};

struct tunio_stats {
	uint64_t read_calls, write_calls; /* syscalls that moved data */
	uint64_t pkts_in, pkts_out;	  /* IP packets */
	uint64_t supers_in, supers_out;	  /* super-packets read / written */
	uint64_t drops_in, drops_out;	  /* malformed, or refused by the kernel */
};

struct tunio;

/* Opens /dev/net/tun and creates or attaches the device name with
 * tun_iff_flags() (common/tun.h). *fd_out is an O_CLOEXEC | O_NONBLOCK fd, -1 on
 * failure. Returns 0 or -errno. */
int tunio_create(const char *name, const struct tunio_config *cfg, int *fd_out);

/* Wraps fd (a TUN fd, not taken over: the caller still closes it), setting
 * O_NONBLOCK and the offloads cfg allows and the kernel accepts (see
 * tunio_offloads()). The device's own flags decide whether frames carry a
 * vnet header. Returns 0 with *out set, or -errno (*out NULL). */
int tunio_new(int fd, const struct tunio_config *cfg, struct tunio **out);
void tunio_free(struct tunio *t);

/* Gives the read buffer's pages back to the kernel unless it holds a
 * super-packet not yet segmented (pktbuf_release). */
void tunio_release(struct tunio *t);

unsigned tunio_offloads(const struct tunio *t);
const struct tunio_stats *tunio_stats(const struct tunio *t);

/* Reads packets into b->pkt[b->n..b->cap), each at pktbuf_data() and at
 * most pktbuf_room() bytes, until the batch is full or a read would block.
 * A super-packet that does not fit in the batch is kept and continued by
 * the next call. Malformed frames are dropped and counted.
 * Returns the number of packets added (> 0), -EAGAIN when none was ready,
 * or another -errno from read() (e.g. -EBADFD when the namespace is gone). */
int tunio_read(struct tunio *t, struct pktbuf_batch *b);

/* Writes the packets b->pkt[0..n) in order (per flow), coalescing TCP
 * segments when that offload is on. Packets the kernel refuses (EINVAL and
 * the like) are dropped and counted. Returns 0, or -errno from a write that
 * says the device is unusable (EBADFD, EBADF, EIO, ...). */
int tunio_write(struct tunio *t, const struct pktbuf_batch *b);

/* Pure functions, for tests and fuzzing. */

/* Cuts one frame (vnet header + packet, as read from the TUN) into IP
 * packets appended to b. *next is the first segment to produce (0 for a new
 * frame) and is advanced. Returns 1 when the frame is done, 0 when b filled
 * up first (call again with the same *next), or -EBADMSG / -EMSGSIZE (a
 * segment larger than pktbuf_room()) with *why set; b->n is then as on
 * entry. Never reads outside frame[0..len). */
int tunio_segment(const uint8_t *frame, size_t len, unsigned *next, struct pktbuf_batch *b,
		  const char **why);

/* A coalescing plan for one batch: packets are grouped into frames; each
 * frame is written at the position of its first packet (the leader). */
struct tunio_plan {
	unsigned n;
	int16_t next[PKTBUF_BATCH_MAX];	    /* next member of the same frame, -1 at the end */
	uint8_t leader[PKTBUF_BATCH_MAX];   /* 1 when the packet starts a frame */
	uint16_t count[PKTBUF_BATCH_MAX];   /* at a leader: packets in its frame */
	uint16_t mss[PKTBUF_BATCH_MAX];	    /* at a leader: payload of its first packet */
	uint8_t or_flags[PKTBUF_BATCH_MAX]; /* at a leader: FIN/PSH of later members */
};

/* Groups b->pkt[0..n) by the rules of the kernel's TCP GRO: same addresses
 * and ports, IPv4 without options or IPv6 without extension headers, same
 * TOS/TTL/DF (v4) or first word and hop limit (v6), same ACK number and TCP
 * options, flags equal but for CWR/FIN/PSH (no CWR after the first), valid
 * checksums, seq following on, payload 1..mss where a shorter one or one
 * with URG/PSH/RST/SYN/FIN ends the frame, at most TUNIO_IP_MAX bytes.
 * A packet of a flow that cannot join ends that flow's frame. */
void tunio_plan_build(struct tunio_plan *pl, const struct pktbuf_batch *b);

/* The frame led by packet i as an iovec list; the rest point into b. With
 * vnet, iov[0] is hdr: the vnet header (zero for a single packet), and for
 * a frame of several packets the IP/TCP headers rewritten for the whole
 * (lengths, IPv4 checksum, FIN/PSH of the last member, the pseudo-header sum
 * for CHECKSUM_PARTIAL); without vnet the one iovec is the packet. iov needs
 * PKTBUF_BATCH_MAX + 1 entries. Returns the number of iovecs. */
unsigned tunio_plan_frame(const struct tunio_plan *pl, const struct pktbuf_batch *b, unsigned i,
			  bool vnet, uint8_t hdr[static TUNIO_FRAME_HDR_MAX], struct iovec *iov);

#endif
