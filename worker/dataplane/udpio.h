/* Batched UDP I/O for the WireGuard data path, with the kernel's UDP
 * offloads:
 *   - sends go out in one sendmmsg(); with UDP GSO (UDP_SEGMENT), a run of
 *     consecutive datagrams to the same address, all of the same size but
 *     the last (which may be shorter), is one message whose iovecs point at
 *     the batch's buffers; the kernel cuts it at the segment size;
 *   - receives come in one recvmmsg(); with UDP GRO (UDP_GRO) the kernel
 *     hands over runs of equal datagrams from one sender as one buffer with
 *     the segment size in a cmsg, which is split here into the batch.
 * Each is switchable (struct udpio_config) and probed at run time, with
 * kfeat_fallback_forced("udp_gso") / ("udp_gro") honoured; the fallback is
 * plain sendmmsg()/recvmmsg() of one datagram per message. A send that the
 * kernel refuses with EIO (a device that cannot checksum for GSO) switches
 * GSO off for good and is retried without it.
 *
 * Works on IPv4, IPv6 and dual-stack sockets (addresses are taken and
 * given as struct sockaddr_storage in each struct pktbuf). The socket is the
 * caller's (the supervisor's) and is not closed here. Nothing allocates on
 * the packet path; GRO receives land in buffers allocated by udpio_new(). */
#ifndef TSCNI_WORKER_DATAPLANE_UDPIO_H
#define TSCNI_WORKER_DATAPLANE_UDPIO_H

#include <stdbool.h>
#include <stdint.h>

#include "pktbuf.h"

enum udpio_limits {
	UDPIO_GSO_MAX_SEGS = 64,     /* UDP_MAX_SEGMENTS of kernels before 6.? */
	UDPIO_GSO_MAX_BYTES = 65000, /* payload of one GSO send, under 64 KiB */
	UDPIO_GRO_BUF = 65536,	     /* one coalesced receive */
	/* With GRO on, each recvmmsg() message needs a 64 KiB buffer, since a
	 * message may be a coalesced run; datagrams that were not coalesced
	 * then come at most gro_slots per call. 2 slots = 128 KiB, up to ~100
	 * datagrams of 1312 bytes: more than one engine batch (64), so a
	 * batch still fills from one call. Datagrams not coalesced (ACKs)
	 * come 2 per call, not 4, yet 4 was no faster, nor 8 than 4
	 * (tests/bench/worker_load.sh: CPU s/GB of the worker receiving the
	 * ACKs and Mbit/s within the noise); each doubling is 128-256 KiB
	 * more touched per worker under load. */
	UDPIO_GRO_SLOTS = 2,
	UDPIO_GRO_SLOTS_MAX = 64,
};

enum udpio_offload {
	UDPIO_OFFLOAD_GSO = 1U << 0,
	UDPIO_OFFLOAD_GRO = 1U << 1,
};

struct udpio_config {
	bool no_gso;
	bool no_gro;
	unsigned gro_slots; /* 0: UDPIO_GRO_SLOTS; at most UDPIO_GRO_SLOTS_MAX */
};

struct udpio_stats {
	uint64_t send_calls, recv_calls; /* sendmmsg / recvmmsg that moved data */
	uint64_t dgrams_out, dgrams_in;	 /* datagrams on the wire */
	uint64_t gso_msgs, gro_msgs;	 /* messages of more than one datagram */
	uint64_t drops_out, drops_in;	 /* refused, truncated or not fitting */
};

struct udpio;

/* Wraps the UDP socket fd (AF_INET or AF_INET6). Enables UDP_GRO unless
 * switched off and probes UDP_SEGMENT. Returns 0 with *out set, or -errno
 * (*out NULL): -EAFNOSUPPORT when fd is not an IPv4/IPv6 datagram socket. */
int udpio_new(int fd, const struct udpio_config *cfg, struct udpio **out);
void udpio_free(struct udpio *u);

/* Gives the GRO buffers' pages back to the kernel unless they hold
 * datagrams not yet handed out (pktbuf_release). */
void udpio_release(struct udpio *u);

unsigned udpio_offloads(const struct udpio *u);
const struct udpio_stats *udpio_stats(const struct udpio *u);

/* Sends b->pkt[0..n), each len bytes at pktbuf_data() to its addr.
 * Returns how many packets were consumed (sent, or dropped because the
 * kernel refused that datagram: unreachable, too big, bad address), from
 * the front; fewer than n when the socket buffer is full (wait for POLLOUT
 * and call again with the rest). Returns -EAGAIN when none could go, or
 * -errno when the socket is unusable. */
int udpio_send(struct udpio *u, const struct pktbuf_batch *b);

/* Receives datagrams into b->pkt[b->n..b->cap), each at pktbuf_data(),
 * with addr/addr_len set. Datagrams larger than pktbuf_room() are dropped
 * and counted. A coalesced receive that does not fit in the batch is kept
 * and continued by the next call. Returns the number added (> 0), -EAGAIN
 * when nothing was ready, or another -errno. Never blocks. */
int udpio_recv(struct udpio *u, struct pktbuf_batch *b);

#endif
